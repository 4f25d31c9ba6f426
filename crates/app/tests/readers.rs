//! A reader's app beside the writer's ([`App::open_read_only`]): it resolves exactly as
//! the writer does at its snapshot, keeps that snapshot while the writer goes on, writes
//! nothing (no identity snapshot, no rows), and refuses every write.

mod common;

use common::{at, id, options, P};
use omnitrail_app::customer::TimelineQuery;
use omnitrail_app::{App, Incoming};
use omnitrail_model::{Channel, Event, IdentifierKind};
use std::path::Path;

/// A new person whose phone call joins through a CRM record: a link in the log tail.
fn linked_person() -> Vec<Incoming> {
    let crm = Event::new(
        at("2026-11-20T10:00:00Z"),
        id(IdentifierKind::CrmId, "crm-reader-1"),
        Channel::Store,
        "crm_record_updated",
    )
    .with_identifier(id(IdentifierKind::Phone, "+15559990002"));
    let call = Event::new(
        at("2026-11-20T11:00:00Z"),
        id(IdentifierKind::Phone, "+15559990002"),
        Channel::Phone,
        "call_started",
    );
    vec![Incoming::Event(crm), Incoming::Event(call)]
}

/// What analyses and agents see.
fn resolution(app: &App) -> String {
    let stats = app.stats(P).expect("stats");
    let views: Vec<String> = ["c1", "c42", "crm-reader-1"]
        .iter()
        .map(
            |who| match app.customer(P, who, &TimelineQuery::default()) {
                Ok(v) => format!("{who}: {} {:?} {}", v.customer_id, v.identifiers, v.events),
                Err(e) => format!("{who}: {e}"),
            },
        )
        .collect();
    format!(
        "{} events, {} customers\n{}",
        stats.events,
        stats.customers,
        views.join("\n")
    )
}

fn files_under(dir: &Path) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("dir").flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if !p.ends_with("meta.sqlite-shm") {
                let len = e.metadata().expect("metadata").len();
                out.push((p.display().to_string(), len));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn a_reader_resolves_as_the_writer_and_keeps_its_snapshot() {
    let dir = tempfile::tempdir().expect("temp dir");
    let writer = common::demo(dir.path(), 150);
    // In the log, not yet in any identity snapshot.
    let receipt = writer.ingest(P, linked_person()).expect("ingest");
    assert_eq!(receipt.stored, 2);
    let expected = resolution(&writer);
    assert!(expected.contains("crm-reader-1: "), "{expected}");

    let reader = App::open_read_only(dir.path(), options()).expect("reader");
    assert_eq!(resolution(&reader), expected);

    // The writer goes on; the reader's answers do not move.
    let more = Event::new(
        at("2026-11-20T12:00:00Z"),
        id(IdentifierKind::Phone, "+15559990002"),
        Channel::Phone,
        "call_ended",
    );
    writer
        .ingest(P, vec![Incoming::Event(more)])
        .expect("ingest");
    writer.compact().expect("compact");
    assert_eq!(resolution(&reader), expected);
    let fresh = App::open_read_only(dir.path(), options()).expect("reader");
    assert_eq!(resolution(&fresh), resolution(&writer));
    assert_ne!(resolution(&fresh), expected);
}

#[test]
fn a_reader_writes_nothing_and_refuses_writes() {
    let dir = tempfile::tempdir().expect("temp dir");
    {
        let writer = common::demo(dir.path(), 80);
        writer.ingest(P, linked_person()).expect("ingest");
    }
    // Without an identity snapshot a reader rebuilds from every row, and keeps it to itself.
    let snapshot = common::snapshot_file(dir.path());
    std::fs::remove_file(&snapshot).expect("remove the snapshot");
    let before = files_under(dir.path());
    let reader = App::open_read_only(dir.path(), options()).expect("reader");
    let seen = resolution(&reader);
    assert!(seen.contains("crm-reader-1: "), "{seen}");

    let refused = reader
        .ingest(P, linked_person())
        .expect_err("a reader takes no events")
        .to_string();
    assert!(refused.contains("open for reading only"), "{refused}");
    assert!(reader.compact().is_err());
    assert!(reader.unmerge(P, "phone:+15559990002").is_err());
    assert!(reader
        .link(
            P,
            omnitrail_identity::Source::Alias,
            vec![
                id(IdentifierKind::Email, "x@example.com"),
                id(IdentifierKind::Phone, "+15559990003"),
            ],
            at("2026-11-20T12:00:00Z"),
        )
        .is_err());
    assert_eq!(
        resolution(&reader),
        seen,
        "nothing a refused write did stayed"
    );
    drop(reader);
    assert_eq!(files_under(dir.path()), before, "the data dir is as it was");
    assert!(!snapshot.exists());
}

/// Every customer of the resolved journeys, with its events.
fn journeys(app: &App) -> Vec<(u64, u32)> {
    let mut out: Vec<(u64, u32)> = app
        .journeys(P, &Default::default())
        .expect("journeys")
        .iter()
        .flat_map(|j| {
            j.customers
                .iter()
                .enumerate()
                .map(|(i, c)| (c.0, j.offsets[i + 1] - j.offsets[i]))
                .collect::<Vec<_>>()
        })
        .collect();
    out.sort_unstable();
    out
}

#[test]
fn analyses_on_a_settled_snapshot_read_its_overlay_and_not_the_graph() {
    let dir = tempfile::tempdir().expect("temp dir");
    let writer = common::demo(dir.path(), 150);
    let expected = journeys(&writer);
    assert!(
        expected.len() < 150 * 3,
        "the demo's keys merge into customers"
    );

    let reader = App::open_read_only(dir.path(), options()).expect("reader");
    assert_eq!(journeys(&reader), expected);
    assert_eq!(reader.stats(P).expect("stats").customers, 150);
    assert!(
        !reader.identity_graphs_loaded(),
        "the overlay came from the snapshot"
    );

    // A link the snapshot does not hold: the graph must be read.
    writer.ingest(P, linked_person()).expect("ingest");
    let expected = journeys(&writer);
    let reader = App::open_read_only(dir.path(), options()).expect("reader");
    assert_eq!(journeys(&reader), expected);
    assert!(reader.identity_graphs_loaded());

    // A damaged overlay section is not trusted: the graph answers instead.
    writer.compact().expect("compact");
    drop(writer);
    let path = common::snapshot_file(dir.path());
    let mut bytes = std::fs::read(&path).expect("snapshot");
    // Header (32 bytes), the summary section (length, CRC, bytes), then the overlay's.
    let summary = u64::from_le_bytes(bytes[32..40].try_into().expect("8 bytes")) as usize;
    let overlay_at = 32 + 12 + summary + 12;
    bytes[overlay_at + 5] ^= 0x10;
    std::fs::write(&path, &bytes).expect("damage");
    let reader = App::open_read_only(dir.path(), options()).expect("reader");
    assert_eq!(journeys(&reader), expected);
    assert!(reader.identity_graphs_loaded());
}

#[test]
fn customer_views_on_a_settled_snapshot_cut_their_component_out_of_the_image() {
    let dir = tempfile::tempdir().expect("temp dir");
    let writer = common::demo(dir.path(), 150);
    let page = TimelineQuery::default();
    let mut lookups: Vec<String> = (1..=150).step_by(7).map(|c| format!("c{c}")).collect();
    let merged = writer.customer(P, "c42", &page).expect("c42");
    assert!(merged.links.len() > 1, "the demo's customers are linked");
    lookups.extend(merged.identifiers.iter().map(|i| i.value.clone()));
    lookups.push("nobody@example.com".into());
    let view = |app: &App| -> Vec<String> {
        lookups
            .iter()
            .map(|who| match app.customer(P, who, &page) {
                Ok(v) => format!("{v:?}"),
                Err(e) => format!("{who}: {e}"),
            })
            .collect()
    };
    let expected = view(&writer);
    assert!(expected.iter().any(|v| v.contains("evidence")));

    let reader = App::open_read_only(dir.path(), options()).expect("reader");
    assert_eq!(view(&reader), expected);
    assert!(
        !reader.identity_graphs_loaded(),
        "the views came from the snapshot's image"
    );

    // A damaged image is not trusted: the graph answers, the same.
    drop(writer);
    let path = common::snapshot_file(dir.path());
    let mut bytes = std::fs::read(&path).expect("snapshot");
    // The image is the last section.
    let inside = bytes.len() - 100;
    bytes[inside] ^= 0x10;
    std::fs::write(&path, &bytes).expect("damage");
    let reader = App::open_read_only(dir.path(), options()).expect("reader");
    assert_eq!(view(&reader), expected);
    assert!(reader.identity_graphs_loaded());
}
