//! Identity snapshots: opening from a snapshot file plus the identity rows written after it
//! resolves exactly as a rebuild from every row, whatever the file's state (current, behind,
//! missing, damaged, older than an erase).

mod common;

use common::{at, id, open, snapshot_file, P};
use omnitrail_app::customer::TimelineQuery;
use omnitrail_app::{App, Incoming};
use omnitrail_model::{Channel, Event, IdentifierKind};

/// Links that arrive after the snapshot: two demo customers' emails joined by one CRM
/// event, and a new person with two identifiers.
fn later_links() -> Vec<Event> {
    let link = Event::new(
        at("2026-11-20T10:00:00Z"),
        id(IdentifierKind::CrmId, "crm-late-1"),
        Channel::Store,
        "crm_record_updated",
    )
    .with_identifier(id(IdentifierKind::Email, "late.one@example.com"))
    .with_identifier(id(IdentifierKind::Phone, "+15559990001"));
    let call = Event::new(
        at("2026-11-20T11:00:00Z"),
        id(IdentifierKind::Phone, "+15559990001"),
        Channel::Phone,
        "call_started",
    );
    vec![link, call]
}

/// What identity resolution decides, as analyses and agents see it.
fn resolution(app: &App) -> String {
    let journeys = app.journeys(P, &Default::default()).expect("journeys");
    let customers: Vec<Vec<u64>> = journeys
        .iter()
        .map(|j| j.customers.iter().map(|c| c.0).collect())
        .collect();
    let views: Vec<String> = ["c1", "c7", "c42", "late.one@example.com", "+15559990001"]
        .iter()
        .map(
            |who| match app.customer(P, who, &TimelineQuery::default()) {
                Ok(v) => format!(
                    "{who}: {} {:?} {:?} {}",
                    v.customer_id, v.identifiers, v.links, v.events
                ),
                Err(e) => format!("{who}: {e}"),
            },
        )
        .collect();
    format!("{customers:?}\n{}", views.join("\n"))
}

#[test]
fn snapshot_plus_later_rows_resolves_exactly_as_a_rebuild() {
    let dir = tempfile::tempdir().expect("temp dir");
    common::demo(dir.path(), 200);
    assert!(
        snapshot_file(dir.path()).exists(),
        "the demo's compaction wrote one"
    );
    {
        // Rows after the snapshot: new evidence, new keys, and a revocation (unmerge).
        let app = open(dir.path());
        let receipt = app
            .ingest(P, later_links().into_iter().map(Incoming::Event).collect())
            .expect("ingest");
        assert!(receipt.rejected.is_empty(), "{:?}", receipt.rejected);
        app.unmerge(P, "phone:+15559990001").expect("unmerge");
    }
    let from_snapshot = resolution(&open(dir.path()));
    std::fs::remove_file(snapshot_file(dir.path())).expect("remove snapshot");
    let rebuilt = resolution(&open(dir.path()));
    assert_eq!(from_snapshot, rebuilt);
    assert!(
        snapshot_file(dir.path()).exists(),
        "a rebuild writes a snapshot so the next open is fast"
    );
    assert_eq!(
        resolution(&open(dir.path())),
        rebuilt,
        "from the new snapshot"
    );
}

#[test]
fn damaged_snapshot_is_rebuilt_from_the_database_and_replaced() {
    let dir = tempfile::tempdir().expect("temp dir");
    common::demo(dir.path(), 200);
    let expected = resolution(&open(dir.path()));
    let good = std::fs::read(snapshot_file(dir.path())).expect("snapshot");
    let damages: Vec<Vec<u8>> = vec![
        good[..good.len() / 2].to_vec(),
        {
            let mut b = good.clone();
            let middle = b.len() / 2;
            b[middle] ^= 0xff;
            b
        },
        Vec::new(),
    ];
    for damaged in damages {
        std::fs::write(snapshot_file(dir.path()), &damaged).expect("damage");
        assert_eq!(resolution(&open(dir.path())), expected);
        let rewritten = std::fs::read(snapshot_file(dir.path())).expect("rewritten");
        assert_ne!(rewritten, damaged, "the damaged file was replaced");
    }
}

#[test]
fn erase_removes_the_snapshot_and_a_stale_one_is_never_used() {
    let dir = tempfile::tempdir().expect("temp dir");
    common::demo(dir.path(), 200);
    let old = std::fs::read(snapshot_file(dir.path())).expect("snapshot");
    let erased_email = {
        let app = open(dir.path());
        let view = app
            .customer(P, "c42", &TimelineQuery::default())
            .expect("c42");
        let email = view
            .identifiers
            .iter()
            .find(|i| i.kind == "email")
            .expect("an email")
            .value
            .clone();
        app.erase(P, &format!("email:{email}"), "test")
            .expect("erase");
        email
    };
    if let Ok(bytes) = std::fs::read(snapshot_file(dir.path())) {
        let needle = erased_email.as_bytes();
        assert!(
            !bytes.windows(needle.len()).any(|w| w == needle),
            "a snapshot written after the erase holds no erased identifier"
        );
    }
    // Put the pre-erase snapshot back, as a restore from an old backup would: its epoch is
    // older than the database's, so it is ignored.
    std::fs::write(snapshot_file(dir.path()), &old).expect("stale snapshot");
    let app = open(dir.path());
    assert!(matches!(
        app.customer(P, &erased_email, &TimelineQuery::default()),
        Err(omnitrail_app::AppError::CustomerNotFound(_))
    ));
}

#[test]
fn a_snapshot_settled_under_other_guardrails_resolves_as_a_rebuild_under_todays() {
    let dir = tempfile::tempdir().expect("temp dir");
    common::demo(dir.path(), 200);
    // Weak kinds the demo settled without: links through them alone are refused now.
    std::fs::write(
        dir.path().join("omnitrail.toml"),
        "[identity]\nweak = [\"email\", \"anonymous_id\", \"crm_id\"]\n",
    )
    .expect("config");
    let from_snapshot = resolution(&open(dir.path()));
    std::fs::remove_file(snapshot_file(dir.path())).expect("remove snapshot");
    let rebuilt = resolution(&open(dir.path()));
    assert_eq!(from_snapshot, rebuilt);
    std::fs::remove_file(dir.path().join("omnitrail.toml")).expect("config");
    std::fs::remove_file(snapshot_file(dir.path())).expect("remove snapshot");
    assert_ne!(
        resolution(&open(dir.path())),
        rebuilt,
        "the limits changed what resolves"
    );
}
