//! Readers beside a server: while `omnitrail serve` ingests (and compacts, and merges
//! segments) on a data dir, read-only commands on the same dir answer from a consistent
//! snapshot: a prefix of what the server stored, never a gap, never a half-applied
//! compaction. Writers stay exclusive.

mod common;
mod serving;

use common::{failure, ok_json};
use serde_json::{json, Value};
use serving::{create_key, start};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

const BATCH: u64 = 40;
const CUSTOMERS: u64 = 4;
/// Event `n` happens `n` seconds after this (Unix seconds); the customer view shows no
/// custom properties, so its time is what tells events apart.
const MARCH_1_2026: u64 = 1_772_323_200;

/// Event `n` belongs to customer `n % 4`. Its first event carries its user id and an
/// anonymous id (a link); every third of the later ones carries the anonymous id alone,
/// so the customer view must merge through the link the metadata database holds.
fn message(n: u64) -> Value {
    let k = n % CUSTOMERS;
    let at = format!(
        "2026-03-{:02}T{:02}:{:02}:{:02}Z",
        1 + n / 86_400,
        (n / 3600) % 24,
        (n / 60) % 60,
        n % 60
    );
    let mut m = json!({
        "type": "track", "event": "step", "messageId": format!("m-{n}"),
        "timestamp": at, "anonymousId": format!("a-{k}"),
    });
    if (n / CUSTOMERS) % 3 != 2 {
        m["userId"] = json!(format!("r-{k}"));
    }
    m
}

/// Events of customer `k` among the first `count` events.
fn events_of(k: u64, count: u64) -> u64 {
    (count + CUSTOMERS - 1 - k) / CUSTOMERS
}

fn manifest_version(data: &std::path::Path) -> u64 {
    let text = std::fs::read_to_string(data.join("MANIFEST.json")).expect("manifest");
    let m: Value = serde_json::from_str(&text).expect("manifest json");
    m["version"].as_u64().expect("version")
}

#[test]
fn read_only_commands_see_a_consistent_prefix_while_the_server_ingests() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let key = create_key(&data, "write");
    // Compacting every few batches puts compactions and merges under the readers.
    let server = start(&data, &["serve", "--compact-after", "100"]);
    let version_at_start = manifest_version(&data);

    let acked = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let sender = {
        let (url, key, acked, stop) =
            (server.url.clone(), key.clone(), acked.clone(), stop.clone());
        std::thread::spawn(move || {
            let client = serving::client();
            let mut next = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let batch: Vec<Value> = (next..next + BATCH).map(message).collect();
                let r = client
                    .post(format!("{url}/v1/batch"))
                    .basic_auth(&key, Some(""))
                    .json(&json!({ "batch": batch }))
                    .send()
                    .expect("batch request");
                // A backlog waiting for compaction is refused with a retry hint.
                if r.status().as_u16() == 503 {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                    continue;
                }
                assert_eq!(r.status().as_u16(), 200, "{}", r.text().unwrap_or_default());
                next += BATCH;
                acked.store(next, Ordering::SeqCst);
            }
        })
    };

    // One batch at a time: whatever a command saw, at most one batch was unanswered.
    let within = |what: &str, seen: u64, before: u64, after: u64| {
        assert!(
            before <= seen && seen <= after + BATCH,
            "{what}: saw {seen} events, but {before} were acknowledged before the command and {after} after it"
        );
    };
    let mut rounds = 0;
    while rounds < 8 || manifest_version(&data) < version_at_start + 4 {
        assert!(rounds < 200, "the server never compacted under the readers");
        let before = acked.load(Ordering::SeqCst);
        let stats = ok_json(&data, &["stats", "--format", "json"]);
        within(
            "stats",
            stats["events"].as_u64().expect("events"),
            before,
            acked.load(Ordering::SeqCst),
        );

        let before = acked.load(Ordering::SeqCst);
        let map = ok_json(&data, &["map", "--format", "json"]);
        let after = acked.load(Ordering::SeqCst);
        let events = map["totals"]["events"].as_u64().expect("map events");
        within("map", events, before, after);
        if before > 0 {
            assert_eq!(
                map["totals"]["customers"].as_u64(),
                Some(events.min(CUSTOMERS)),
                "anonymous-only events resolve through the stored links: {map}"
            );
        }

        let before = acked.load(Ordering::SeqCst);
        let view = ok_json(
            &data,
            &["customer", "r-1", "--limit", "100000", "--format", "json"],
        );
        let after = acked.load(Ordering::SeqCst);
        let mut seen: Vec<u64> = view["timeline"]["entries"]
            .as_array()
            .expect("timeline")
            .iter()
            .filter(|e| e["kind"] == "event")
            .map(|e| e["at"].as_u64().expect("at") / 1_000_000 - MARCH_1_2026)
            .collect();
        seen.sort_unstable();
        let prefix: Vec<u64> = (0..seen.len() as u64).map(|i| 1 + i * CUSTOMERS).collect();
        assert_eq!(
            seen, prefix,
            "the customer's events are a prefix, without gaps"
        );
        let count = seen.len() as u64;
        assert!(
            events_of(1, before) <= count && count <= events_of(1, after + BATCH),
            "customer view: {count} events of r-1, acknowledged {before}..{after}"
        );
        rounds += 1;
    }

    // Writers stay exclusive while the server holds the data dir.
    let refused = failure(
        &data,
        &["note", "add", "r-1", "--text", "hello", "--author", "t"],
    );
    assert!(
        refused.contains("in use by another omnitrail process"),
        "{refused}"
    );

    stop.store(true, Ordering::Relaxed);
    sender.join().expect("sender");
    let total = acked.load(Ordering::SeqCst);
    let (status, _, err) = server.stop();
    assert!(status.success(), "server: {err}");
    let stats = ok_json(&data, &["stats", "--format", "json"]);
    assert_eq!(stats["events"].as_u64(), Some(total));
}
