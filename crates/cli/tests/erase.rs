//! `omnitrail erase`, `suppressions` and `audit` end to end: a person under four
//! identities is imported, erased by her phone number, kept out by suppression, let back
//! in by lifts; no file of the data dir holds her email afterwards.

mod common;

use common::{failure, ok_json, ok_stdout as ok};

const ANA: &str = r#"{"event_id":"a1","timestamp":"2026-03-01T09:00:00Z","identifiers":{"anonymous_id":"a-91"},"channel":"web","activity":"product_viewed"}
{"event_id":"a2","timestamp":"2026-03-01T09:05:00Z","identifiers":{"anonymous_id":"a-91","email":"ana.erased@example.com"},"channel":"web","activity":"login","traits":{"plan":"premium"}}
{"event_id":"a3","timestamp":"2026-03-02T10:00:00Z","identifiers":{"email":"ana.erased@example.com","phone":"+1 (555) 123-4567"},"channel":"other","activity":"crm_record_updated"}
{"event_id":"a4","timestamp":"2026-03-03T08:00:00Z","identifiers":{"phone":"+15551234567"},"channel":"phone","activity":"call_started"}
{"event_id":"b1","timestamp":"2026-03-05T15:00:00Z","identifiers":{"email":"ben@example.com"},"channel":"web","activity":"login"}
"#;

fn files_holding(dir: &std::path::Path, needle: &[u8]) -> Vec<String> {
    let mut hits = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if std::fs::read(&p)
                .unwrap()
                .windows(needle.len())
                .any(|w| w == needle)
            {
                hits.push(p.display().to_string());
            }
        }
    }
    hits
}

#[test]
fn erase_suppress_lift_and_audit() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let file = root.path().join("ana.ndjson");
    std::fs::write(&file, ANA).unwrap();
    ok(&data, &["import", file.to_str().unwrap()]);

    let receipt = ok_json(&data, &["erase", "+1 555 123 4567", "--format", "json"]);
    let counts = &receipt["counts"];
    assert_eq!(
        counts["log_events"].as_u64().unwrap() + counts["segment_events"].as_u64().unwrap(),
        4
    );
    assert_eq!(receipt["identifier_hashes"].as_array().unwrap().len(), 3);
    assert!(receipt["actor"].as_str().unwrap().starts_with("cli:"));
    assert!(files_holding(&data, b"ana.erased@example.com").is_empty());
    assert!(files_holding(&data, b"15551234567").is_empty());
    let err = failure(&data, &["customer", "email:ana.erased@example.com"]);
    assert!(err.contains("no customer"), "{err}");
    ok(&data, &["customer", "email:ben@example.com"]);

    // Suppressed: importing her again stores nothing of her.
    let summary = ok(&data, &["import", file.to_str().unwrap()]);
    assert!(summary.contains('4'), "{summary}");
    assert!(files_holding(&data, b"ana.erased@example.com").is_empty());
    let list = ok_json(&data, &["suppressions", "list", "--format", "json"]);
    assert_eq!(list.as_array().unwrap().len(), 3);

    for hash in receipt["identifier_hashes"].as_array().unwrap() {
        let out = ok(&data, &["suppressions", "lift", hash.as_str().unwrap()]);
        assert!(out.contains("lifted 1"), "{out}");
    }
    let out = ok(
        &data,
        &["suppressions", "lift", "email:ana.erased@example.com"],
    );
    assert!(out.contains("nothing lifted"), "{out}");
    ok(&data, &["import", file.to_str().unwrap()]);
    ok(&data, &["customer", "email:ana.erased@example.com"]);

    let audit = ok_json(&data, &["audit", "--format", "json"]);
    let actions: Vec<&str> = audit
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["erase", "lift", "lift", "lift"]);
    let table = ok(&data, &["audit"]);
    assert!(table.contains("erase"), "{table}");
}
