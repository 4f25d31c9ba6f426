//! `stats` from counts (the manifest's per-segment counts, the log tail, the identity graph)
//! against a brute-force reference that reads every event through the resolved journeys —
//! with merges in the log tail, after an erase, from a manifest written before segments
//! carried counts, and in a reader.

mod common;

use common::{at, id, options, P};
use omnitrail_app::{App, Incoming, Stats};
use omnitrail_model::{Channel, Event, IdentifierKind, Timestamp};
use omnitrail_store::ScanSpec;
use std::collections::BTreeMap;

/// What every event says, read one by one.
#[derive(Debug, PartialEq)]
struct Counted {
    events: u64,
    customers: u64,
    first: Option<Timestamp>,
    last: Option<Timestamp>,
    channels: BTreeMap<String, u64>,
    activities: BTreeMap<String, u64>,
}

fn reference(app: &App) -> (Counted, f64) {
    let mut c = Counted {
        events: 0,
        customers: 0,
        first: None,
        last: None,
        channels: BTreeMap::new(),
        activities: BTreeMap::new(),
    };
    let mut bytes = 0;
    for j in app.journeys(P, &ScanSpec::default()).expect("journeys") {
        bytes += j.heap_bytes();
        c.customers += j.customers.len() as u64;
        for i in 0..j.ts.len() {
            c.events += 1;
            let t = Timestamp::from_micros(j.ts[i]);
            c.first = Some(c.first.map_or(t, |f| f.min(t)));
            c.last = Some(c.last.map_or(t, |l| l.max(t)));
            *c.channels
                .entry(j.channels.values[j.channel[i] as usize].to_string())
                .or_default() += 1;
            *c.activities
                .entry(j.activities.values[j.activity.get(i) as usize].to_string())
                .or_default() += 1;
        }
    }
    let per_event = if c.events == 0 {
        0.0
    } else {
        bytes as f64 / c.events as f64
    };
    (c, per_event)
}

fn counted(s: &Stats) -> Counted {
    Counted {
        events: s.events,
        customers: s.customers,
        first: s.first_event,
        last: s.last_event,
        channels: s.by_channel.iter().cloned().collect(),
        activities: s.by_activity.iter().cloned().collect(),
    }
}

fn check(app: &App, context: &str) {
    let stats = app.stats(P).expect("stats");
    let (expected, bytes) = reference(app);
    assert_eq!(counted(&stats), expected, "{context}");
    // Dictionaries are counted per stored partition, and a merge may move a customer's
    // events to another: on more than a handful of events the estimate is within 1%.
    assert!(
        stats.events < 1000 || (stats.journey_bytes_per_event - bytes).abs() < bytes / 100.0,
        "{context}: {} vs {bytes} bytes per event",
        stats.journey_bytes_per_event
    );
}

/// A new person, then a link that merges them into a demo customer (likely of another
/// partition), with activities the demo has not: all in the log tail.
fn tail_events() -> Vec<Incoming> {
    let alone = Event::new(
        at("2027-01-05T08:00:00Z"),
        id(IdentifierKind::Email, "new.person@example.com"),
        Channel::Email,
        "newsletter_opened",
    );
    let link = Event::new(
        at("2026-11-20T10:00:00Z"),
        id(IdentifierKind::CrmId, "crm-stats-1"),
        Channel::Store,
        "loyalty_card_issued",
    )
    .with_identifier(id(IdentifierKind::UserId, "u-0000003"))
    .with_identifier(id(IdentifierKind::Email, "new.person@example.com"));
    vec![Incoming::Event(alone), Incoming::Event(link)]
}

#[test]
fn stats_from_counts_equal_a_count_of_every_event() {
    let dir = tempfile::tempdir().expect("temp dir");
    let app = common::demo(dir.path(), 300);
    check(&app, "the compacted demo");
    let before = app.stats(P).expect("stats");
    app.ingest(P, tail_events()).expect("ingest");
    check(&app, "with merges and new activities in the log tail");
    let after = app.stats(P).expect("stats");
    assert_eq!(after.events, before.events + 2);
    assert_eq!(after.customers, before.customers, "the new person merged");
    app.compact().expect("compact");
    check(&app, "compacted again");
    drop(app);
    // Fresh: customers come from the snapshot's summary, no graph is read first.
    let app = App::open(dir.path(), options()).expect("reopen");
    check(&app, "reopened after a compaction");
    app.erase(P, "email:new.person@example.com", "test")
        .expect("erase");
    check(&app, "after an erase");
    drop(app);
    let app = App::open(dir.path(), options()).expect("reopen");
    check(&app, "reopened after an erase, without a snapshot");
    app.compact().expect("compact");
    let reader = App::open_read_only(dir.path(), options()).expect("reader");
    check(&reader, "a reader");
}

#[test]
fn a_snapshot_settled_under_other_guardrails_does_not_count_customers() {
    let dir = tempfile::tempdir().expect("temp dir");
    let event = |ids: &[(IdentifierKind, &str)], minute: u32| {
        let mut e = Event::new(
            at(&format!("2026-11-20T10:{minute:02}:00Z")),
            id(ids[0].0.clone(), ids[0].1),
            Channel::Web,
            "page_viewed",
        );
        for (kind, value) in &ids[1..] {
            e = e.with_identifier(id(kind.clone(), value));
        }
        Incoming::Event(e)
    };
    {
        let app = App::open(dir.path(), options()).expect("open");
        // Three keys (one per identifier seen alone), then two links joining them.
        let batch = vec![
            event(&[(IdentifierKind::UserId, "ana")], 0),
            event(&[(IdentifierKind::Email, "ana@one.example")], 1),
            event(&[(IdentifierKind::Email, "ana@two.example")], 2),
            event(
                &[
                    (IdentifierKind::UserId, "ana"),
                    (IdentifierKind::Email, "ana@one.example"),
                ],
                3,
            ),
            event(
                &[
                    (IdentifierKind::UserId, "ana"),
                    (IdentifierKind::Email, "ana@two.example"),
                ],
                4,
            ),
        ];
        app.ingest(P, batch).expect("ingest");
        app.compact().expect("compact");
        assert_eq!(app.stats(P).expect("stats").customers, 1);
    }
    // One email per customer: the second link is refused, and a customer splits off.
    std::fs::write(
        dir.path().join("omnitrail.toml"),
        "[identity]\nlimits = { email = 1 }\n",
    )
    .expect("config");
    let app = App::open(dir.path(), options()).expect("reopen");
    assert_eq!(app.stats(P).expect("stats").customers, 2);
    check(&app, "stricter limits");
}

#[test]
fn segments_of_a_manifest_before_counts_are_counted_from_their_columns() {
    let dir = tempfile::tempdir().expect("temp dir");
    let expected = {
        let app = common::demo(dir.path(), 300);
        app.ingest(P, tail_events()).expect("ingest");
        app.stats(P).expect("stats")
    };
    // The manifest as builds before segment counts wrote it.
    let path = dir.path().join("MANIFEST.json");
    let mut manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).expect("manifest")).expect("json");
    for s in manifest["segments"].as_array_mut().expect("segments") {
        s.as_object_mut()
            .expect("segment")
            .remove("counts")
            .expect("counts");
    }
    let old = serde_json::to_vec_pretty(&manifest).expect("json");
    std::fs::write(&path, &old).expect("write manifest");

    let reader = App::open_read_only(dir.path(), options()).expect("reader");
    assert_eq!(
        counted(&reader.stats(P).expect("stats")),
        counted(&expected)
    );
    check(&reader, "a reader of the old manifest");
    drop(reader);
    assert_eq!(
        std::fs::read(&path).expect("manifest"),
        old,
        "a reader rewrites nothing"
    );
    let app = App::open(dir.path(), options()).expect("open");
    assert_eq!(counted(&app.stats(P).expect("stats")), counted(&expected));
}
