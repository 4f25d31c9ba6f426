//! Readers beside the writer: a read-only store is a fixed snapshot (manifest, pinned
//! segments, the log records written after it) that the writer's compactions and merges
//! cannot take away, and it changes nothing on disk.

mod common;

use common::{event_ids, log_files, numbered, segment_files, P};
use omnitrail_store::{ScanSpec, Store, StoreError, StoreOptions};
use std::io::Write;

fn crowded() -> StoreOptions {
    // Two partitions of at most two segments: every other compaction merges.
    StoreOptions {
        partitions: 2,
        max_segments_per_partition: 2,
        ..StoreOptions::default()
    }
}

fn journey_events(store: &Store) -> usize {
    (0..store.partitions())
        .map(|p| {
            store
                .journeys(P, p, &ScanSpec::default())
                .expect("journeys")
                .events()
        })
        .sum()
}

#[test]
fn a_reader_keeps_its_snapshot_while_the_writer_compacts_and_merges() {
    let dir = tempfile::tempdir().expect("temp dir");
    let writer = Store::open(dir.path(), crowded()).expect("open writer");
    writer.ingest(P, numbered("a-", 50)).expect("ingest");
    writer.compact().expect("compact");
    writer.ingest(P, numbered("b-", 20)).expect("ingest");

    let reader = Store::open_read_only(dir.path(), StoreOptions::default()).expect("reader");
    assert!(reader.is_read_only());
    let snapshot = event_ids(&reader);
    assert_eq!(snapshot.len(), 70, "compacted and logged events alike");
    let pinned = segment_files(dir.path());

    for round in 0..4 {
        writer
            .ingest(P, numbered(&format!("r{round}-"), 15))
            .expect("ingest");
        writer.compact().expect("compact");
    }
    assert!(
        pinned.iter().any(|f| !f.exists()),
        "merges deleted a segment the reader opened"
    );
    assert_eq!(
        event_ids(&reader),
        snapshot,
        "the reader's snapshot is fixed"
    );
    assert_eq!(journey_events(&reader), 70);
    assert_eq!(reader.event_count(P), 70);

    let later = Store::open_read_only(dir.path(), StoreOptions::default()).expect("reader");
    assert_eq!(
        event_ids(&later).len(),
        130,
        "a new reader sees what came since"
    );
    assert_eq!(journey_events(&later), 130);
}

#[test]
fn a_reader_refuses_every_write() {
    let dir = tempfile::tempdir().expect("temp dir");
    let writer = Store::open(dir.path(), crowded()).expect("open writer");
    writer.ingest(P, numbered("a-", 5)).expect("ingest");
    let reader = Store::open_read_only(dir.path(), StoreOptions::default()).expect("reader");
    assert!(matches!(
        reader.ingest(P, numbered("x-", 1)),
        Err(StoreError::ReadOnly(_))
    ));
    assert!(matches!(reader.compact(), Err(StoreError::ReadOnly(_))));
    assert!(
        reader
            .meta()
            .set_setting("reader.probe", "1")
            .expect_err("query_only")
            .to_string()
            .contains("readonly"),
        "the metadata database refuses writes"
    );
    drop(writer);
    assert_eq!(event_ids(&reader).len(), 5);
}

#[test]
fn a_reader_leaves_a_torn_tail_and_the_lock_to_the_writer() {
    let dir = tempfile::tempdir().expect("temp dir");
    {
        let writer = Store::open(dir.path(), crowded()).expect("open writer");
        writer.ingest(P, numbered("a-", 12)).expect("ingest");
    }
    // Half a frame at the end of the log, as a write cut short leaves it.
    let log = log_files(dir.path()).pop().expect("a log file");
    std::fs::OpenOptions::new()
        .append(true)
        .open(&log)
        .and_then(|mut f| f.write_all(&[0x2a, 0, 0, 0, 1, 2]))
        .expect("tear the log");
    let torn_len = std::fs::metadata(&log).expect("log").len();

    let reader = Store::open_read_only(dir.path(), StoreOptions::default()).expect("reader");
    assert_eq!(
        event_ids(&reader).len(),
        12,
        "every whole record, none torn"
    );
    assert_eq!(
        std::fs::metadata(&log).expect("log").len(),
        torn_len,
        "a reader cuts nothing"
    );
    // The reader holds no lock: a writer opens beside it and repairs the tail.
    let writer = Store::open(dir.path(), crowded()).expect("writer beside a reader");
    assert!(writer.open_report().cut_tail.is_some());
    writer.ingest(P, numbered("b-", 3)).expect("ingest");
    assert_eq!(event_ids(&reader).len(), 12);
}

#[test]
fn a_reader_of_a_dir_no_writer_has_made_needs_a_writer() {
    let dir = tempfile::tempdir().expect("temp dir");
    match Store::open_read_only(dir.path(), StoreOptions::default()) {
        Err(StoreError::NeedsWriter(why)) => assert!(why.contains("no manifest"), "{why}"),
        Err(e) => panic!("expected NeedsWriter, got {e}"),
        Ok(_) => panic!("an empty dir has nothing to read"),
    }
    assert!(
        std::fs::read_dir(dir.path()).expect("dir").next().is_none(),
        "nothing was created"
    );
}
