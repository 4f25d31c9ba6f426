//! Segment HTTP Tracking API payloads, as `/v1/batch` maps them: any JSON must map to an
//! event, a link, a skip or a validation error.
#![no_main]

use libfuzzer_sys::fuzz_target;
use omnitrail_model::Timestamp;
use omnitrail_server::segment::{map_message, merge_batch_defaults};
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let Ok(Value::Object(body)) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let received = Timestamp::from_micros(1_764_000_000_000_000);
    let context = body.get("context").and_then(Value::as_object);
    let integrations = body.get("integrations").and_then(Value::as_object);
    let sent_at = body.get("sentAt");
    match body.get("batch") {
        Some(Value::Array(items)) => {
            for item in items {
                if let Value::Object(msg) = item {
                    let mut msg = msg.clone();
                    merge_batch_defaults(&mut msg, context, integrations, sent_at);
                    let _ = map_message(&msg, None, received);
                }
            }
        }
        _ => {
            let _ = map_message(&body, None, received);
        }
    }
});
