//! Replays the fuzz corpora (`fuzz/corpus/<target>`) through the same functions the fuzz
//! targets call, as an ordinary test: a crash a fuzz run found and whose input was added to
//! the corpus stays fixed without a nightly toolchain. The rule target's corpus is replayed
//! by the triggers crate's tests (`crates/triggers/tests/fuzz_corpus.rs`).

use omnitrail_app::analysis::engine::expr::{EventFilter, Segment};
use omnitrail_app::import::{self, Format, ImportOptions};
use omnitrail_model::{Event, Timestamp};
use omnitrail_server::segment::{map_message, merge_batch_defaults};
use serde_json::Value;
use std::path::{Path, PathBuf};

fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "{} is empty", dir.display());
    files
        .into_iter()
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap();
            (p, bytes)
        })
        .collect()
}

#[test]
fn event_json_corpus() {
    for (_, data) in corpus("event_json") {
        let Ok(value) = serde_json::from_slice::<Value>(&data) else {
            continue;
        };
        let Ok(mut event) = Event::from_json(&value) else {
            continue;
        };
        if event.normalize().is_err() {
            continue;
        }
        let mut again = Event::from_json(&event.to_json()).unwrap();
        again.normalize().unwrap();
        assert_eq!(again.to_json(), event.to_json());
    }
}

#[test]
fn segment_payload_corpus() {
    let received = Timestamp::from_micros(1_764_000_000_000_000);
    for (_, data) in corpus("segment_payload") {
        let Ok(Value::Object(body)) = serde_json::from_slice::<Value>(&data) else {
            continue;
        };
        let context = body.get("context").and_then(Value::as_object);
        let integrations = body.get("integrations").and_then(Value::as_object);
        match body.get("batch") {
            Some(Value::Array(items)) => {
                for item in items {
                    if let Value::Object(msg) = item {
                        let mut msg = msg.clone();
                        merge_batch_defaults(&mut msg, context, integrations, body.get("sentAt"));
                        let _ = map_message(&msg, None, received);
                    }
                }
            }
            _ => {
                let _ = map_message(&body, None, received);
            }
        }
    }
}

fn read_all(target: &str, format: Format, extension: &str) {
    let dir = tempfile::tempdir().unwrap();
    for (i, (_, data)) in corpus(target).into_iter().enumerate() {
        let path = dir.path().join(format!("{i}.{extension}"));
        std::fs::write(&path, data).unwrap();
        let opts = ImportOptions {
            format: Some(format),
            ..ImportOptions::default()
        };
        if let Ok(mut reader) = import::open(&path, &opts) {
            while let Ok(Some(_)) = reader.next_batch(1024) {}
        }
    }
}

#[test]
fn csv_reader_corpus() {
    read_all("csv_reader", Format::Csv, "csv");
}

#[test]
fn xes_reader_corpus() {
    read_all("xes_reader", Format::Xes, "xes");
}

#[test]
fn expression_corpus() {
    for (_, data) in corpus("expression") {
        if let Ok(text) = std::str::from_utf8(&data) {
            let _ = EventFilter::parse(text);
            let _ = Segment::parse(text);
        }
    }
}
