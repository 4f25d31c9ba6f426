//! The crash test: `omnitrail serve` is SIGKILLed while several clients send batches, over
//! many cycles. Batches that got no answer are sent again after the restart, as SDKs
//! retry. At the end every event that was acknowledged with a 200 is stored, every event
//! sent is stored once the retries succeed, and none is stored twice.
//!
//! Cycles: `OMNITRAIL_CRASH_CYCLES` (default 10).

mod serving;

use omnitrail_app::{App, AppOptions};
use omnitrail_model::ProjectId;
use serde_json::{json, Value};
use serving::{create_key, start};
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const SENDERS: usize = 3;
const BATCH: usize = 100;

#[derive(Default)]
struct Ledger {
    /// Message ids of batches answered with 200.
    acked: BTreeSet<String>,
    /// Batches sent without an answer (the server died, or refused while starting).
    in_doubt: Vec<Vec<String>>,
    sent: BTreeSet<String>,
}

fn batch_body(ids: &[String]) -> Value {
    let batch: Vec<Value> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| {
            json!({"type": "track", "userId": format!("crash-{}", i % 7), "event": "tick",
                   "messageId": id, "properties": {"n": i}})
        })
        .collect();
    json!({ "batch": batch })
}

/// Sends one batch; true when it was acknowledged.
fn send(client: &reqwest::blocking::Client, url: &str, key: &str, ids: &[String]) -> bool {
    client
        .post(format!("{url}/v1/batch"))
        .basic_auth(key, Some(""))
        .json(&batch_body(ids))
        .send()
        .is_ok_and(|r| r.status().as_u16() == 200)
}

/// One cycle: retry what is in doubt, then send new batches from several threads until
/// `stop` is set. Returns when every sender has stopped.
fn run_senders(
    url: &str,
    key: &str,
    cycle: usize,
    ledger: &Arc<Mutex<Ledger>>,
    stop: &Arc<std::sync::atomic::AtomicBool>,
) -> Vec<std::thread::JoinHandle<()>> {
    use std::sync::atomic::Ordering;
    let retries = std::mem::take(&mut ledger.lock().unwrap().in_doubt);
    (0..SENDERS)
        .map(|w| {
            let (url, key, ledger, stop) = (
                url.to_string(),
                key.to_string(),
                ledger.clone(),
                stop.clone(),
            );
            let mine: Vec<Vec<String>> = retries.iter().skip(w).step_by(SENDERS).cloned().collect();
            std::thread::spawn(move || {
                let client = serving::client();
                let mut queue = mine;
                let mut b = 0;
                loop {
                    let ids = match queue.pop() {
                        Some(ids) => ids,
                        None if stop.load(Ordering::Relaxed) => return,
                        None => {
                            b += 1;
                            let ids: Vec<String> = (0..BATCH)
                                .map(|i| format!("c{cycle}-w{w}-b{b}-{i}"))
                                .collect();
                            ledger.lock().unwrap().sent.extend(ids.iter().cloned());
                            ids
                        }
                    };
                    if send(&client, &url, &key, &ids) {
                        ledger.lock().unwrap().acked.extend(ids);
                    } else {
                        // No answer: the server is gone. Keep the batch for after the
                        // restart, with what this sender had not sent yet.
                        let mut l = ledger.lock().unwrap();
                        l.in_doubt.push(ids);
                        l.in_doubt.extend(queue);
                        return;
                    }
                }
            })
        })
        .collect()
}

#[test]
fn sigkill_during_ingest_loses_no_acknowledged_event_and_stores_none_twice() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let cycles: usize = std::env::var("OMNITRAIL_CRASH_CYCLES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(10);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let key = create_key(&data, "write");
    let ledger: Arc<Mutex<Ledger>> = Arc::default();
    for cycle in 0..cycles {
        let server = start(&data, &["serve"]);
        let stop = Arc::new(AtomicBool::new(false));
        let acked_before = ledger.lock().unwrap().acked.len();
        let senders = run_senders(&server.url, &key, cycle, &ledger, &stop);
        // Kill at a different moment each cycle, once this cycle has had acknowledgements.
        let wait = Duration::from_millis(100 + (cycle as u64 * 7919) % 400);
        let deadline = Instant::now() + Duration::from_secs(60);
        while ledger.lock().unwrap().acked.len() == acked_before && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        std::thread::sleep(wait);
        server.kill();
        stop.store(true, Ordering::Relaxed);
        for s in senders {
            s.join().unwrap();
        }
        assert!(
            ledger.lock().unwrap().acked.len() > acked_before,
            "cycle {cycle}: nothing was acknowledged"
        );
    }
    // A last, clean run sends what is still in doubt.
    let server = start(&data, &["serve"]);
    let stop = Arc::new(AtomicBool::new(true));
    for s in run_senders(&server.url, &key, cycles, &ledger, &stop) {
        s.join().unwrap();
    }
    let (status, _, err) = server.stop();
    assert!(status.success(), "{err}");

    let ledger = ledger.lock().unwrap();
    assert!(ledger.in_doubt.is_empty(), "batches left unsent");
    let app = App::open(&data, AppOptions::default()).expect("open the data dir");
    let records = app
        .store()
        .records(ProjectId::DEFAULT)
        .expect("read events");
    let ids: Vec<String> = records
        .iter()
        .map(|r| {
            r.event
                .event_id
                .as_deref()
                .expect("every event has an id")
                .to_string()
        })
        .collect();
    let unique: BTreeSet<&str> = ids.iter().map(|s| s.trim_start_matches("seg-")).collect();
    assert_eq!(unique.len(), ids.len(), "an event is stored twice");
    let missing: Vec<&String> = ledger
        .acked
        .iter()
        .filter(|id| !unique.contains(id.as_str()))
        .take(5)
        .collect();
    assert!(
        missing.is_empty(),
        "acknowledged but not stored: {missing:?}"
    );
    assert_eq!(
        ids.len(),
        ledger.sent.len(),
        "every sent event is stored once retries succeed"
    );
    assert_eq!(ledger.acked, ledger.sent);
}
