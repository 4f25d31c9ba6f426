//! `omnitrail customer`, `note` and `unmerge` end to end: an NDJSON file where one person
//! appears under four identities is imported, and the phone number as an agent hears it
//! finds her whole story.

mod common;

use common::{ok_stdout as ok, omnitrail};
use serde_json::Value;

/// Ana as four identities: an anonymous web visitor who logs in with her email, a phone
/// number a CRM event attaches to that email, and a twitter handle another CRM event links.
const ANA: &str = r#"{"timestamp":"2026-03-01T09:00:00Z","identifiers":{"anonymous_id":"a-91"},"channel":"web","activity":"product_viewed"}
{"timestamp":"2026-03-01T09:05:00Z","identifiers":{"anonymous_id":"a-91","email":"ana@example.com"},"channel":"web","activity":"login","traits":{"plan":"premium"}}
{"timestamp":"2026-03-02T10:00:00Z","identifiers":{"email":"ana@example.com","phone":"+1 (555) 123-4567","crm_id":"CRM-7"},"channel":"other","activity":"crm_record_updated"}
{"timestamp":"2026-03-03T08:00:00Z","identifiers":{"phone":"+15551234567"},"channel":"phone","activity":"call_started"}
{"timestamp":"2026-03-04T12:00:00Z","identifiers":{"crm_id":"CRM-7","social:twitter":"@ana_b"},"channel":"other","activity":"crm_record_updated"}
{"timestamp":"2026-03-05T14:02:00Z","identifiers":{"email":"ana@example.com"},"channel":"web","activity":"payment_failed","properties":{"outcome":"failure"}}
{"timestamp":"2026-03-05T14:42:00Z","identifiers":{"social:twitter":"@ana_b"},"channel":"social","activity":"complaint","properties":{"sentiment":-0.8}}
{"timestamp":"2026-03-05T15:00:00Z","identifiers":{"email":"ben@example.com"},"channel":"web","activity":"login"}
"#;

fn imported() -> tempfile::TempDir {
    let data = tempfile::tempdir().expect("temp dir");
    let file = data.path().join("ana.ndjson");
    std::fs::write(&file, ANA).expect("write fixture");
    ok(data.path(), &["import", file.to_str().expect("utf-8 path")]);
    data
}

#[test]
fn phone_as_heard_finds_one_customer_across_four_channels_with_link_evidence() {
    let data = imported();
    let v: Value = serde_json::from_str(&ok(
        data.path(),
        &["customer", "+1 555 123 4567", "--format", "json"],
    ))
    .expect("json");
    assert_eq!(v["events"], 7, "{v:#}");
    let entries = v["timeline"]["entries"].as_array().expect("entries");
    let channels: Vec<&str> = entries
        .iter()
        .map(|e| e["channel"].as_str().unwrap())
        .collect();
    assert_eq!(
        channels,
        ["social", "web", "other", "phone", "other", "web", "web"],
        "newest first across every channel"
    );
    let merged = v["links"]
        .as_array()
        .expect("links")
        .iter()
        .filter(|l| l["decision"] == "merged")
        .count();
    assert_eq!(merged, 3, "login, then each CRM event: {:#}", v["links"]);
    let stats: Value =
        serde_json::from_str(&ok(data.path(), &["stats", "--format", "json"])).expect("json");
    assert_eq!(stats["customers"], 2, "ana and ben");

    let table = ok(data.path(), &["customer", "+1 555 123 4567"]);
    assert!(table.contains("links (evidence)"), "{table}");
    assert!(table.contains("social:twitter:ana_b"), "{table}");
}

#[test]
fn notes_added_edited_and_listed_from_the_cli() {
    let data = imported();
    let added = ok(
        data.path(),
        &[
            "note",
            "add",
            "ana@example.com",
            "--text",
            "wants a callback",
            "--author",
            "agent-7",
        ],
    );
    assert!(added.starts_with("added note 1"), "{added}");
    ok(data.path(), &["note", "edit", "1", "--text", "called back"]);
    let listed = ok(data.path(), &["note", "list", "social:twitter:ana_b"]);
    assert!(listed.contains("agent-7: called back"), "{listed}");
    let out = omnitrail(data.path(), &["note", "edit", "9", "--text", "x"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("has no note 9"));
}

#[test]
fn unknown_and_ambiguous_identifiers_are_clear_errors() {
    let data = imported();
    let out = omnitrail(data.path(), &["customer", "nobody@example.com"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no customer has the identifier 'nobody@example.com'"),
        "{err}"
    );
}

#[test]
fn unmerge_splits_a_wrong_link() {
    let data = imported();
    ok(data.path(), &["unmerge", "social:twitter:ana_b"]);
    let v: Value = serde_json::from_str(&ok(
        data.path(),
        &["customer", "ana@example.com", "--format", "json"],
    ))
    .expect("json");
    assert_eq!(v["events"], 6, "the complaint left with the handle");
}
