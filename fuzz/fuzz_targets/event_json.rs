//! Canonical event JSON, as the native collector and NDJSON import read it: any bytes must
//! give an event or a validation error, and a valid event must survive its own JSON form.
#![no_main]

use libfuzzer_sys::fuzz_target;
use omnitrail_model::Event;

fuzz_target!(|data: &[u8]| {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    let Ok(mut event) = Event::from_json(&value) else {
        return;
    };
    if event.normalize().is_err() {
        return;
    }
    let mut again = Event::from_json(&event.to_json()).expect("a normalized event reads back");
    again.normalize().expect("a normalized event stays valid");
    assert_eq!(
        again.to_json(),
        event.to_json(),
        "json round trip changed the event"
    );
});
