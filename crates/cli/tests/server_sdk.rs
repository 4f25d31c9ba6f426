//! A real Segment SDK against `omnitrail serve`: `segment-analytics-python` from PyPI, its
//! `host` pointed at the server, sends page, identify, track and alias calls; they appear,
//! merged into one customer, in the customer view through the API and through
//! `omnitrail customer`.
//!
//! `./scripts/test` installs the SDK into a virtualenv and sets `OMNITRAIL_SDK_PYTHON` to
//! its interpreter. Without it the test is skipped, except in CI (`CI=true`), where it fails.

mod common;
mod serving;

use common::ok_json;
use serving::{create_key, get, start};
use std::process::Command;

const SCRIPT: &str = r#"
import sys
import segment.analytics as analytics

host, key = sys.argv[1], sys.argv[2]
analytics.write_key = key
analytics.host = host
analytics.sync_mode = True   # every call is one POST /v1/batch; errors raise
analytics.max_retries = 0

analytics.page(anonymous_id="anon-sdk-1", name="Pricing", properties={"path": "/pricing"})
analytics.identify("sdk-user-1", {"email": "sdk.ana@example.com", "plan": "premium"},
                   anonymous_id="anon-sdk-1")
analytics.track("sdk-user-1", "payment_failed", {"value": 40, "outcome": "failure"})
analytics.track(anonymous_id="anon-sdk-2", event="ad_clicked")
analytics.alias("anon-sdk-2", "sdk-user-1")
analytics.flush()
print("sent")
"#;

fn sdk_python() -> Option<String> {
    match std::env::var("OMNITRAIL_SDK_PYTHON") {
        Ok(p) if !p.is_empty() => Some(p),
        _ if std::env::var("CI").is_ok_and(|v| v == "true") => panic!(
            "OMNITRAIL_SDK_PYTHON is not set: ./scripts/test installs segment-analytics-python \
             and sets it; in CI the SDK test must run"
        ),
        _ => {
            eprintln!("skipping: OMNITRAIL_SDK_PYTHON is not set (./scripts/test sets it)");
            None
        }
    }
}

#[test]
fn segment_python_sdk_calls_merge_into_one_customer() {
    let Some(python) = sdk_python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let write = create_key(&data, "write");
    let secret = create_key(&data, "secret");
    let server = start(&data, &["serve"]);
    let script = dir.path().join("send.py");
    std::fs::write(&script, SCRIPT).unwrap();
    let out = Command::new(&python)
        .arg(&script)
        .arg(&server.url)
        .arg(&write)
        .output()
        .expect("python runs");
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("sent"),
        "the SDK failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    let (status, view) = get(
        &format!(
            "{}/api/v1/customers/email:sdk.ana%40example.com",
            server.url
        ),
        &secret,
    );
    assert_eq!(status, 200, "{view}");
    check_view(&view);
    let (status, same) = get(
        &format!("{}/api/v1/customers/anon-sdk-2", server.url),
        &secret,
    );
    assert_eq!(status, 200);
    assert_eq!(
        same["customer_id"], view["customer_id"],
        "the alias merged them"
    );

    let (status, _, err) = server.stop();
    assert!(status.success(), "{err}");
    let cli_view = ok_json(
        &data,
        &["customer", "sdk.ana@example.com", "--format", "json"],
    );
    check_view(&cli_view);
    assert_eq!(cli_view["customer_id"], view["customer_id"]);
}

fn check_view(view: &serde_json::Value) {
    assert_eq!(view["events"], 4, "{view}");
    let ids: Vec<String> = view["identifiers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            format!(
                "{}:{}",
                i["kind"].as_str().unwrap(),
                i["value"].as_str().unwrap()
            )
        })
        .collect();
    for id in [
        "user_id:sdk-user-1",
        "anonymous_id:anon-sdk-1",
        "anonymous_id:anon-sdk-2",
        "email:sdk.ana@example.com",
    ] {
        assert!(ids.contains(&id.to_string()), "{id} not in {ids:?}");
    }
    let mut activities: Vec<&str> = view["timeline"]["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["activity"].as_str().unwrap())
        .collect();
    activities.sort();
    assert_eq!(
        activities,
        ["Pricing", "ad_clicked", "identify", "payment_failed"]
    );
    // analytics-python is a server-side library: its events are on channel `other`.
    assert!(view["timeline"]["entries"]
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["channel"] == "other"));
    let traits: Vec<&str> = view["traits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert!(traits.contains(&"plan"), "{traits:?}");
}
