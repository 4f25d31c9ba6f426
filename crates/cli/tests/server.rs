//! End to end: `omnitrail serve` on port 0 — collectors, keys made and revoked by the CLI
//! while it runs, the query API, graceful shutdown on SIGTERM, and the data afterwards
//! through the CLI. Also `omnitrail demo` going on to serve.

mod common;
mod serving;

use common::{ok_json, ok_stdout};
use serde_json::{json, Value};
use serving::{create_key, get, post, start};
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn canonical(id: &str, email: &str, activity: &str, at: &str) -> String {
    json!({"event_id": id, "timestamp": at, "identifiers": {"email": email},
           "channel": "web", "activity": activity})
    .to_string()
}

#[test]
fn serve_ingests_answers_queries_sees_cli_keys_and_stops_gracefully() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let write = create_key(&data, "write");
    let secret = create_key(&data, "secret");
    let server = start(&data, &["serve"]);
    let url = server.url.clone();

    let (status, health) = get(&format!("{url}/healthz"), "");
    assert_eq!((status, health["status"].as_str()), (200, Some("ok")));

    let ndjson = [
        canonical(
            "e1",
            "ana@example.com",
            "login_failed",
            "2026-02-01T10:00:00Z",
        ),
        canonical(
            "e2",
            "ana@example.com",
            "call_started",
            "2026-02-01T10:20:00Z",
        ),
        "{broken".to_string(),
    ]
    .join("\n");
    let (status, receipt) = post(&format!("{url}/v1/events"), &write, ndjson);
    assert_eq!(status, 200, "{receipt}");
    assert_eq!(
        (
            receipt["stored"].as_u64(),
            receipt["rejected"][0]["code"].as_str()
        ),
        (Some(2), Some("invalid_json"))
    );

    let segment = json!({"batch": [
        {"type": "identify", "userId": "u-ana", "traits": {"email": "ana@example.com"}, "messageId": "s1"},
        {"type": "track", "userId": "u-ana", "event": "complaint", "messageId": "s2",
         "context": {"channel": "social"}, "timestamp": "2026-02-01T11:00:00Z"},
    ]});
    let (status, receipt) = post(&format!("{url}/v1/batch"), &write, segment.to_string());
    assert_eq!(
        (status, receipt["stored"].as_u64()),
        (200, Some(2)),
        "{receipt}"
    );

    // A key made by the CLI while the server runs works at once.
    let fresh = create_key(&data, "write");
    let one = canonical("e3", "ben@example.com", "login", "2026-02-02T09:00:00Z");
    let (status, _) = post(&format!("{url}/v1/events"), &fresh, format!("[{one}]"));
    assert_eq!(status, 200);
    // Revoked by the CLI, it stops working within the key cache time.
    let prefix = &fresh[..12];
    ok_stdout(&data, &["keys", "revoke", prefix]);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, _) = post(&format!("{url}/v1/events"), &fresh, format!("[{one}]"));
        if status == 401 {
            break;
        }
        assert_eq!(status, 200);
        assert!(Instant::now() < deadline, "a revoked key kept working");
        std::thread::sleep(Duration::from_millis(200));
    }
    let keys = ok_json(&data, &["keys", "list", "--format", "json"]);
    let listed = keys.to_string();
    assert!(!listed.contains(&write) && !listed.contains(&secret) && !listed.contains(&fresh));
    assert_eq!(keys.as_array().unwrap().len(), 3);

    let (status, view) = get(
        &format!("{url}/api/v1/customers/ana%40example.com"),
        &secret,
    );
    assert_eq!(status, 200, "{view}");
    assert_eq!(view["events"], 4, "{view}");
    let (status, err) = get(&format!("{url}/api/v1/customers/nobody"), &secret);
    assert_eq!((status, err["code"].as_str()), (404, Some("not_found")));
    let (status, map) = get(&format!("{url}/api/v1/analyses/map?by=channel"), &secret);
    assert_eq!(status, 200);
    assert_eq!(map["totals"]["events"], 5);
    let (status, doc) = get(&format!("{url}/openapi.json"), "");
    assert_eq!(status, 200);
    assert_eq!(
        doc,
        serde_json::from_str::<Value>(&ok_stdout(&data, &["openapi"])).unwrap()
    );

    let (status, out, err) = server.stop();
    assert!(status.success(), "{status}: {err}");
    assert!(
        err.contains("stopped: every acknowledged event is stored"),
        "{err}"
    );
    assert!(out.trim().is_empty(), "{out}");

    // The data dir is free again: the CLI reads what the server stored.
    let stats = ok_json(&data, &["stats", "--format", "json"]);
    assert_eq!(stats["events"], 5);
    assert_eq!(stats["dead_letters"], 1);
    let view = ok_json(&data, &["customer", "u-ana", "--format", "json"]);
    assert_eq!(view["events"], 4);
}

#[test]
fn sigterm_during_ingest_acknowledges_only_what_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let write = create_key(&data, "write");
    let server = start(&data, &["serve"]);
    let url = server.url.clone();
    let acked: Arc<Mutex<BTreeSet<String>>> = Arc::default();
    let senders: Vec<_> = (0..4)
        .map(|w| {
            let (url, write, acked) = (url.clone(), write.clone(), acked.clone());
            std::thread::spawn(move || {
                let client = serving::client();
                for b in 0..10_000 {
                    let ids: Vec<String> = (0..50).map(|i| format!("g{w}-{b}-{i}")).collect();
                    let batch: Vec<Value> = ids
                        .iter()
                        .map(|id| json!({"type": "track", "userId": format!("u{w}"), "event": "tick", "messageId": id}))
                        .collect();
                    let sent = client
                        .post(format!("{url}/v1/batch"))
                        .basic_auth(&write, Some(""))
                        .json(&json!({ "batch": batch }))
                        .send();
                    match sent {
                        Ok(r) if r.status().as_u16() == 200 => {
                            acked.lock().unwrap().extend(ids);
                        }
                        // Refused or cut off by the shutdown: not acknowledged.
                        _ => return,
                    }
                }
            })
        })
        .collect();
    // Let the senders get going, then ask the server to stop while they send.
    let deadline = Instant::now() + Duration::from_secs(30);
    while acked.lock().unwrap().len() < 2_000 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let (status, _, err) = server.stop();
    for s in senders {
        s.join().unwrap();
    }
    assert!(status.success(), "{status}: {err}");
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() >= 2_000, "only {} acknowledged", acked.len());
    let stats = ok_json(&data, &["stats", "--format", "json"]);
    let stored = stats["events"].as_u64().unwrap();
    assert!(
        stored >= acked.len() as u64,
        "{stored} stored < {} acknowledged",
        acked.len()
    );
    // Every acknowledged event is there.
    for w in 0..4 {
        let view = ok_json(
            &data,
            &[
                "customer",
                &format!("user_id:u{w}"),
                "--format",
                "json",
                "--limit",
                "0",
            ],
        );
        let theirs = acked
            .iter()
            .filter(|id| id.starts_with(&format!("g{w}-")))
            .count() as u64;
        assert!(
            view["events"].as_u64().unwrap_or(0) >= theirs,
            "u{w}: {view}"
        );
    }
}

#[test]
fn demo_generates_prints_keys_and_serves() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = start(&data, &["demo", "--customers", "40", "--seed", "5"]);
    let banner = server.banner.join("");
    let key = |label: &str| -> String {
        banner
            .lines()
            .find_map(|l| l.strip_prefix(label))
            .unwrap_or_else(|| panic!("no '{label}' in {banner}"))
            .trim()
            .to_string()
    };
    let write = key("write key (send events):");
    let secret = key("secret key (query API):");
    assert!(
        write.starts_with("otw_") && secret.starts_with("ots_"),
        "{banner}"
    );
    let url = server.url.clone();
    let (status, stats) = get(&format!("{url}/api/v1/stats"), &secret);
    assert_eq!(status, 200);
    assert!(stats["events"].as_u64().unwrap() > 40 * 20, "{stats}");
    let (status, view) = get(
        &format!("{url}/api/v1/customers/crm_id:crm-00000007"),
        &secret,
    );
    assert_eq!(status, 200, "{view}");
    let (status, _) = get(&format!("{url}/api/v1/stats"), &write);
    assert_eq!(status, 403);
    let (status, _, err) = server.stop();
    assert!(status.success(), "{err}");
}
