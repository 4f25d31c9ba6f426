//! Failing fsyncs and damaged files. An fsync error is fatal for the ingest log (the store
//! refuses writes until reopened) and nothing unsynced is ever acknowledged; a failed
//! compaction loses and duplicates nothing; damaged metadata is a clear error, not a panic.

mod common;

use common::{
    assert_ids_exactly_once, numbered, open, options, segment_files, EventExt, FlakyDisk, NoSync, P,
};
use omnitrail_model::ProjectId;
use omnitrail_store::{ScanSpec, Store, StoreError, StoreOptions};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

fn batch_ids(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}{i}")).collect()
}

#[test]
fn failed_log_fsync_poisons_the_store_and_nothing_unsynced_is_acknowledged() {
    for k in 0..4u64 {
        let dir = tempfile::tempdir().expect("temp dir");
        let disk = FlakyDisk::healthy();
        let store = Store::open(dir.path(), options(4, disk.clone())).expect("open");
        let mut acked = Vec::new();
        store
            .ingest(P, numbered("b0-", 10))
            .expect("healthy ingest");
        acked.extend(batch_ids("b0-", 10));

        // Each single-threaded ingest takes exactly one log fsync: batch k + 1 fails.
        disk.fail_file_syncs_after(k);
        let mut failed = None;
        for b in 1..=k + 1 {
            let prefix = format!("b{b}-");
            match store.ingest(P, numbered(&prefix, 10)) {
                Ok(out) => {
                    assert_eq!(out.stored, 10);
                    acked.extend(batch_ids(&prefix, 10));
                }
                Err(e) => {
                    // The leader's fsync error reaches every waiter, itself included, as Poisoned.
                    assert!(
                        matches!(e, StoreError::Fsync { .. } | StoreError::Poisoned(_))
                            && e.to_string().contains("injected fsync failure"),
                        "k={k}: expected the fsync error, got {e}"
                    );
                    failed = Some(prefix);
                    break;
                }
            }
        }
        let failed = failed.unwrap_or_else(|| panic!("k={k}: batch {} should have failed", k + 1));
        assert_eq!(failed, format!("b{}-", k + 1), "k={k}: the failing batch");

        // Poisoned: no more writes, even after the disk recovers, until a reopen.
        disk.heal();
        let again = store.ingest(P, numbered("later-", 1));
        assert!(
            matches!(again, Err(StoreError::Poisoned(_))),
            "k={k}: ingest after a failed fsync: {again:?}"
        );
        let retry = store.ingest(P, numbered(&failed, 10));
        assert!(
            matches!(retry, Err(StoreError::Poisoned(_))),
            "k={k}: retry before reopen: {retry:?}"
        );
        assert!(
            store.compact().is_err(),
            "k={k}: compaction of a poisoned store must fail"
        );
        // Reads show only acknowledged events.
        assert_ids_exactly_once(
            &store,
            &acked,
            &format!("k={k}: reads of the poisoned store"),
        );
        drop(store);

        // Worst case: the power went out too, taking every byte that was never fsynced.
        disk.lose_unsynced_log_data(dir.path());
        let store = open(dir.path());
        assert_ids_exactly_once(
            &store,
            &acked,
            &format!("k={k}: after power loss and reopen"),
        );
        // Retrying the failed batch is safe and complete.
        let out = store
            .ingest(P, numbered(&failed, 10))
            .expect("retry after reopen");
        assert_eq!(out.stored + out.duplicates, 10);
        acked.extend(batch_ids(&failed, 10));
        assert_ids_exactly_once(&store, &acked, &format!("k={k}: after the retry"));
    }
}

/// When the failing fsync did reach the disk's page cache (no power loss), the failed
/// batch may come back on reopen, but never twice, and a retry is still exact.
#[test]
fn failed_batch_written_but_not_synced_is_never_duplicated() {
    let dir = tempfile::tempdir().expect("temp dir");
    let disk = FlakyDisk::healthy();
    let store = Store::open(dir.path(), options(4, disk.clone())).expect("open");
    store.ingest(P, numbered("ok-", 5)).expect("ingest");
    disk.fail_file_syncs_after(0);
    assert!(store.ingest(P, numbered("failed-", 5)).is_err());
    drop(store);
    let store = open(dir.path());
    store.ingest(P, numbered("failed-", 5)).expect("retry");
    let mut all = batch_ids("ok-", 5);
    all.extend(batch_ids("failed-", 5));
    assert_ids_exactly_once(&store, &all, "after reopen and retry");
}

/// Group commit: concurrent ingests share fsyncs. When one fails, every ingest waiting on
/// it fails too, and whatever was acknowledged survives the loss of unsynced data.
#[test]
fn failed_group_commit_fails_every_waiter() {
    for k in [0u64, 3, 10] {
        let dir = tempfile::tempdir().expect("temp dir");
        let disk = FlakyDisk::healthy();
        let store = Store::open(dir.path(), options(4, disk.clone())).expect("open");
        disk.fail_file_syncs_after(k);
        let acked = Mutex::new(Vec::new());
        std::thread::scope(|s| {
            for t in 0..4 {
                let (store, acked) = (&store, &acked);
                s.spawn(move || {
                    for b in 0.. {
                        let prefix = format!("t{t}-b{b}-");
                        match store.ingest(P, numbered(&prefix, 20)) {
                            Ok(_) => acked.lock().expect("lock").extend(batch_ids(&prefix, 20)),
                            Err(StoreError::Fsync { .. } | StoreError::Poisoned(_)) => break,
                            Err(e) => panic!("unexpected error: {e}"),
                        }
                    }
                });
            }
        });
        let acked = acked.into_inner().expect("lock");
        drop(store);
        disk.lose_unsynced_log_data(dir.path());
        let store = open(dir.path());
        assert_ids_exactly_once(
            &store,
            &acked,
            &format!(
                "k={k}: {} acknowledged events after power loss",
                acked.len()
            ),
        );
    }
}

#[derive(Clone, Copy, Debug)]
enum SyncKind {
    File,
    Dir,
}

#[derive(Clone, Copy, Debug)]
enum Then {
    /// Drop the store right after the failed compaction and reopen.
    Reopen,
    /// Heal the disk and keep using the same store: ingest, compact again, reopen.
    CarryOn,
}

/// A store with one compacted batch, a second batch in the log, three partitions and at
/// most one segment per partition: the next compaction writes segments, an index run and
/// a manifest, deletes the log, then merges partitions.
fn store_before_second_compaction(dir: &Path, disk: Arc<FlakyDisk>) -> Store {
    let store = Store::open(
        dir,
        StoreOptions {
            partitions: 3,
            durability: disk,
            auto_compact_events: usize::MAX,
            max_segments_per_partition: 1,
            ..StoreOptions::default()
        },
    )
    .expect("open");
    store.set_placer(common::rule_placer(pairs, 0));
    store.ingest(P, numbered("a-", 20)).expect("ingest");
    store.compact().expect("first compaction");
    // New users too, so the second compaction places keys (and writes a placement run).
    let mut b = numbered("b-", 20);
    b.extend(
        (0..6).map(|i| common::ev(&format!("w{i}"), "web", "view", i).event_id(&format!("w-{i}"))),
    );
    store.ingest(P, b).expect("ingest");
    store
}

/// Joins keys two by two: an even key belongs to the odd one below it.
fn pairs(key: u64, _: u64) -> u64 {
    if key.is_multiple_of(2) {
        key - 1
    } else {
        key
    }
}

/// Opens an existing data dir with a healthy disk, skipping real fsyncs (speed).
fn reopen(dir: &Path) -> Store {
    let store = Store::open(dir, options(3, Arc::new(NoSync))).expect("reopen");
    store.set_placer(common::rule_placer(pairs, 0));
    store
}

fn syncs(disk: &FlakyDisk, kind: SyncKind) -> u64 {
    match kind {
        SyncKind::File => disk.file_syncs.load(Ordering::SeqCst),
        SyncKind::Dir => disk.dir_syncs.load(Ordering::SeqCst),
    }
}

/// After a failed write and a reopen (`store`): every acknowledged event is there once and
/// journeys read right under `rule`; `redo` then succeeds, and after another reopen the same
/// holds with no orphans left.
fn recovers(
    dir: &Path,
    store: Store,
    want: &[String],
    rule: fn(u64, u64) -> u64,
    case: &str,
    redo: impl Fn(&Store) -> Result<(), StoreError>,
) {
    assert_ids_exactly_once(&store, want, &format!("{case}: after reopen"));
    common::assert_resolved(&store, P, rule, 0, &format!("{case}: after reopen"));
    redo(&store).unwrap_or_else(|e| panic!("{case}: done again after reopen: {e}"));
    drop(store);
    let store = reopen(dir);
    assert_ids_exactly_once(&store, want, &format!("{case}: done again and reopened"));
    common::assert_resolved(
        &store,
        P,
        rule,
        0,
        &format!("{case}: done again and reopened"),
    );
    assert!(
        store.open_report().removed_orphans.is_empty(),
        "{case}: a clean write leaves no orphans"
    );
}

#[test]
fn failed_fsync_during_compaction_loses_and_duplicates_nothing() {
    let mut runs = 0;
    for kind in [SyncKind::Dir, SyncKind::File] {
        // How many fsyncs of this kind a healthy second compaction does.
        let dir = tempfile::tempdir().expect("temp dir");
        let disk = FlakyDisk::healthy();
        let store = store_before_second_compaction(dir.path(), disk.clone());
        let before = syncs(&disk, kind);
        let report = store.compact().expect("healthy compaction");
        assert!(
            report.segments_merged > 0,
            "the setup must exercise merges: {report:?}"
        );
        let total = syncs(&disk, kind) - before;
        assert!(
            total >= 8,
            "{kind:?}: a compaction with merges does several fsyncs, saw {total}"
        );

        for k in 0..total {
            for then in [Then::Reopen, Then::CarryOn] {
                runs += 1;
                let case = format!("{kind:?} fsync #{} of {total} fails, then {then:?}", k + 1);
                let dir = tempfile::tempdir().expect("temp dir");
                let disk = FlakyDisk::healthy();
                let store = store_before_second_compaction(dir.path(), disk.clone());
                match kind {
                    SyncKind::File => disk.fail_file_syncs_after(k),
                    SyncKind::Dir => disk.fail_dir_syncs_after(k),
                }
                let err = store.compact().expect_err(&case);
                assert!(matches!(err, StoreError::Fsync { .. }), "{case}: {err}");
                disk.heal();
                let mut want = batch_ids("a-", 20);
                want.extend(batch_ids("b-", 20));
                want.extend((0..6).map(|i| format!("w-{i}")));
                let store = match then {
                    Then::Reopen => {
                        drop(store);
                        reopen(dir.path())
                    }
                    Then::CarryOn => match store.ingest(P, numbered("c-", 20)) {
                        // Disk and manifest may disagree after a failed compaction: the
                        // store refuses writes until a reopen trusts the disk again.
                        Err(StoreError::Poisoned(_)) => {
                            drop(store);
                            reopen(dir.path())
                        }
                        other => panic!(
                            "{case}: a failed compaction must poison the store, got {other:?}"
                        ),
                    },
                };
                recovers(dir.path(), store, &want, pairs, &case, |s| {
                    s.compact().map(drop)
                });
            }
        }
    }
    assert!(
        runs >= 32,
        "expected a run per fsync of a compaction, got {runs}"
    );
}

fn expect_open_error(dir: &Path) -> StoreError {
    match Store::open(dir, StoreOptions::default()) {
        Err(e) => e,
        Ok(_) => panic!("open of {} should fail", dir.display()),
    }
}

#[test]
fn corrupt_manifest_is_a_clear_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = open(dir.path());
    store.ingest(P, numbered("e", 10)).expect("ingest");
    store.compact().expect("compact");
    drop(store);
    let manifest = dir.path().join("MANIFEST.json");
    let good = std::fs::read_to_string(&manifest).expect("read manifest");
    let cases = [
        ("garbage", "{not json".to_string()),
        ("empty", String::new()),
        ("truncated", good[..good.len() / 2].to_string()),
        (
            "future format",
            good.replacen("\"format_version\": 3", "\"format_version\": 99", 1),
        ),
        (
            "format 1 (keys by any known identifier)",
            good.replacen("\"format_version\": 3", "\"format_version\": 1", 1),
        ),
    ];
    for (what, text) in cases {
        assert_ne!(text, good, "{what}: the case must change the manifest");
        std::fs::write(&manifest, &text).expect("write manifest");
        match expect_open_error(dir.path()) {
            StoreError::Corrupt { path, reason } => {
                assert_eq!(
                    path, manifest,
                    "{what}: error names the manifest ({reason})"
                );
                let message = StoreError::Corrupt { path, reason }.to_string();
                assert!(
                    message.contains("MANIFEST.json"),
                    "{what}: message '{message}'"
                );
            }
            other => panic!("{what}: expected StoreError::Corrupt, got {other}"),
        }
        assert!(
            !segment_files(dir.path()).is_empty(),
            "{what}: a refused open deletes no segments"
        );
    }
    std::fs::write(&manifest, &good).expect("restore manifest");
    assert_ids_exactly_once(&open(dir.path()), &batch_ids("e", 10), "restored manifest");
}

/// Runs `f`, turning a panic into a test failure that says what panicked.
fn no_panic<T>(what: &str, f: impl FnOnce() -> T) -> T {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))
        .unwrap_or_else(|_| panic!("{what} panicked"))
}

#[test]
fn corrupt_segment_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = open(dir.path());
    store.ingest(P, numbered("e", 200)).expect("ingest");
    store.compact().expect("compact");
    let manifest = store.manifest();
    drop(store);
    let victim = &manifest.segments[0];
    let victim_path = dir.path().join(&victim.file);
    let good = std::fs::read(&victim_path).expect("read segment");
    let mut garbled_footer = good.clone();
    let n = garbled_footer.len();
    garbled_footer[n - 8..n - 4].copy_from_slice(&u32::MAX.to_le_bytes());
    let cases = [
        ("truncated to half", good[..good.len() / 2].to_vec()),
        ("footer length garbled", garbled_footer),
        (
            "not parquet at all",
            b"hello, I am not a parquet file".to_vec(),
        ),
        ("empty", Vec::new()),
    ];
    for (what, bytes) in cases {
        std::fs::write(&victim_path, &bytes).expect("damage segment");
        let store = open(dir.path());
        let journeys = no_panic(what, || {
            store.journeys(P, victim.partition, &ScanSpec::default())
        });
        let err = journeys
            .err()
            .unwrap_or_else(|| panic!("{what}: journeys of a corrupt segment must fail"));
        assert!(
            err.to_string().contains(&victim.file),
            "{what}: error '{err}' names the segment"
        );
        let records = no_panic(what, || store.records(P));
        assert!(records.is_err(), "{what}: records() must fail too");
        for s in manifest
            .segments
            .iter()
            .filter(|s| s.partition != victim.partition)
        {
            store
                .journeys(P, s.partition, &ScanSpec::default())
                .unwrap_or_else(|e| panic!("{what}: partition {} is intact: {e}", s.partition));
        }
    }
    std::fs::remove_file(&victim_path).expect("remove segment");
    let store = open(dir.path());
    let err = store
        .journeys(P, victim.partition, &ScanSpec::default())
        .expect_err("missing segment");
    assert!(
        matches!(err, StoreError::Io { .. }),
        "a missing segment is an IO error naming it: {err}"
    );
}

#[test]
fn orphan_files_are_removed_on_open() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = open(dir.path());
    store.ingest(P, numbered("e", 50)).expect("ingest");
    store.compact().expect("compact");
    drop(store);
    let live_segments = segment_files(dir.path());
    let segment = &live_segments[0];
    let index = dir.path().join(&open(dir.path()).manifest().index_runs[0]);
    // What crashed compactions leave: segments and index runs no manifest names, temp files.
    let orphans: BTreeSet<PathBuf> = [
        segment.with_file_name("000000099999.parquet"),
        dir.path().join("segments/1/p999/000000099998.parquet"),
        index.with_file_name("000000099997.idx"),
        index.with_file_name("000000099997.tmp"),
        dir.path().join("MANIFEST.tmp"),
    ]
    .into_iter()
    .collect();
    for o in &orphans {
        std::fs::create_dir_all(o.parent().expect("parent")).expect("mkdir");
        std::fs::copy(
            if o.extension().is_some_and(|x| x == "parquet") {
                segment
            } else {
                &index
            },
            o,
        )
        .expect("copy");
    }
    let store = open(dir.path());
    let removed: BTreeSet<PathBuf> = store
        .open_report()
        .removed_orphans
        .iter()
        .cloned()
        .collect();
    assert_eq!(
        removed, orphans,
        "open removes and reports exactly the orphans"
    );
    for o in &orphans {
        assert!(!o.exists(), "{} still exists", o.display());
    }
    assert_eq!(
        segment_files(dir.path()),
        live_segments,
        "live segments stay"
    );
    assert_ids_exactly_once(&store, &batch_ids("e", 50), "data after orphan removal");
    drop(store);
    assert!(
        open(dir.path()).open_report().removed_orphans.is_empty(),
        "nothing left to remove"
    );
}

#[test]
fn second_open_of_a_data_dir_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let first = open(dir.path());
    match Store::open(dir.path(), StoreOptions::default()) {
        Err(StoreError::Locked(path)) => assert_eq!(path, dir.path()),
        Err(e) => panic!("expected StoreError::Locked, got {e}"),
        Ok(_) => panic!("two stores must not share a data dir"),
    }
    first
        .ingest(P, numbered("e", 3))
        .expect("the first store keeps working");
    drop(first);
    let second = Store::open(dir.path(), options(4, Arc::new(NoSync)))
        .expect("open after the first is gone");
    assert_ids_exactly_once(&second, &batch_ids("e", 3), "data of the first store");
    assert_eq!(
        second.records(ProjectId(2)).expect("records").len(),
        0,
        "other projects are empty"
    );
}

#[test]
fn missing_manifest_with_segments_refuses_to_open_and_deletes_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = common::open(dir.path());
    store.ingest(P, numbered("m-", 10)).expect("ingest");
    store.compact().expect("compact");
    drop(store);
    let segments = common::segment_files(dir.path());
    assert!(!segments.is_empty());
    std::fs::remove_file(dir.path().join("MANIFEST.json")).expect("remove manifest");
    let err = Store::open(dir.path(), StoreOptions::default())
        .err()
        .expect("open must refuse");
    assert!(
        matches!(&err, StoreError::Corrupt { path, .. } if path.ends_with("MANIFEST.json")),
        "{err}"
    );
    assert_eq!(
        common::segment_files(dir.path()),
        segments,
        "no segment may be deleted as an orphan"
    );
}

#[test]
fn a_whole_but_wrong_log_header_is_corruption_not_a_torn_tail() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = common::open(dir.path());
    store.ingest(P, numbered("h-", 5)).expect("ingest");
    drop(store);
    let log = common::log_files(dir.path()).pop().expect("a log file");
    let mut bytes = std::fs::read(&log).expect("read log");
    let before = bytes.clone();
    bytes[0] ^= 0xFF;
    std::fs::write(&log, &bytes).expect("damage header");
    let err = Store::open(dir.path(), StoreOptions::default())
        .err()
        .expect("open must refuse");
    assert!(
        matches!(&err, StoreError::Corrupt { path, .. } if *path == log),
        "{err}"
    );
    assert_eq!(
        std::fs::read(&log).expect("read log").len(),
        before.len(),
        "the damaged file is left as it was"
    );
}

fn snapshot_path(dir: &Path) -> PathBuf {
    dir.join("identity").join(format!("{}.snapshot", P.0))
}

#[test]
fn identity_snapshot_reads_back_and_damage_of_any_kind_is_named() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = open(dir.path());
    assert!(store.read_identity_snapshot(P).expect("read").is_none());
    let at = store.meta().identity_revision(P).expect("revision");
    let head = b"a summary".to_vec();
    let payload: Vec<u8> = (0..5000u32).flat_map(|i| i.to_le_bytes()).collect();
    assert!(store
        .write_identity_snapshot(P, at, &[&head, &[], &payload])
        .expect("write"));
    let back = store
        .read_identity_snapshot(P)
        .expect("read")
        .expect("there");
    assert_eq!(
        (back.at, back.sections(), back.is_version_1()),
        (at, 3, false)
    );
    assert_eq!(back.section(0).expect("head"), head);
    assert_eq!(back.section(1).expect("empty"), b"");
    assert_eq!(back.section(2).expect("payload"), payload);
    drop(back);

    let good = std::fs::read(snapshot_path(dir.path())).expect("file");
    // Header, then per section: length, CRC, bytes.
    let payload_at = 32 + 12 + head.len() + 12 + 12;
    // (damage, what the error names, the section that names it: None when opening does)
    let damaged: Vec<(&str, Vec<u8>, Option<usize>)> = vec![
        ("shorter than its header", good[..20].to_vec(), None),
        (
            "too short for its section 2",
            good[..good.len() - 7].to_vec(),
            None,
        ),
        ("sections end at", [good.as_slice(), b"tail"].concat(), None),
        (
            "header checksum mismatch",
            {
                let mut b = good.clone();
                b[10] ^= 0x01;
                b
            },
            None,
        ),
        (
            "section 2 checksum mismatch",
            {
                let mut b = good.clone();
                b[payload_at + 100] ^= 0x40;
                b
            },
            Some(2),
        ),
        (
            "section 0 checksum mismatch",
            {
                let mut b = good.clone();
                b[32 + 12 + 2] ^= 0x40;
                b
            },
            Some(0),
        ),
        (
            "bad magic",
            {
                let mut b = good.clone();
                b[0] = b'X';
                b
            },
            None,
        ),
    ];
    for (why, bytes, section) in damaged {
        std::fs::write(snapshot_path(dir.path()), &bytes).expect("damage");
        let err = match (store.read_identity_snapshot(P), section) {
            (Err(e), None) => e,
            (Ok(Some(snap)), Some(i)) => {
                for other in (0..snap.sections()).filter(|&o| o != i) {
                    snap.section(other).expect("the other sections are whole");
                }
                match snap.section(i) {
                    Err(e) => e,
                    Ok(_) => panic!("{why}: a damaged section was accepted"),
                }
            }
            (Err(e), Some(_)) => panic!("{why}: opening failed, not the section: {e}"),
            (Ok(_), _) => panic!("{why}: a damaged snapshot was accepted"),
        };
        match err {
            StoreError::Corrupt { reason, .. } => assert!(reason.contains(why), "{why}: {reason}"),
            e => panic!("{why}: unexpected error {e}"),
        }
    }
}

#[test]
fn identity_snapshots_of_version_1_still_read_as_one_section() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = open(dir.path());
    let at = store.meta().identity_revision(P).expect("revision");
    let payload = b"a graph of before sections".to_vec();
    let mut bytes = b"OTIDS\0\0\x01".to_vec();
    bytes.extend_from_slice(&at.rev.to_le_bytes());
    bytes.extend_from_slice(&at.epoch.to_le_bytes());
    bytes.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    bytes.extend_from_slice(&payload);
    let crc = crc32fast::hash(&bytes);
    bytes.extend_from_slice(&crc.to_le_bytes());
    std::fs::create_dir_all(snapshot_path(dir.path()).parent().expect("dir")).expect("dir");
    std::fs::write(snapshot_path(dir.path()), &bytes).expect("write");
    let back = store
        .read_identity_snapshot(P)
        .expect("read")
        .expect("there");
    assert_eq!(
        (back.at, back.sections(), back.is_version_1()),
        (at, 1, true)
    );
    assert_eq!(back.section(0).expect("payload"), payload);
    drop(back);
    let last = bytes.len() - 6;
    bytes[last] ^= 0x20;
    std::fs::write(snapshot_path(dir.path()), &bytes).expect("damage");
    match store.read_identity_snapshot(P) {
        Err(StoreError::Corrupt { reason, .. }) => assert!(reason.contains("checksum mismatch")),
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("a damaged version-1 snapshot was accepted"),
    }
}

#[test]
fn failed_identity_snapshot_fsync_keeps_the_previous_snapshot_whole() {
    let dir = tempfile::tempdir().expect("temp dir");
    let disk = FlakyDisk::healthy();
    let store = Store::open(dir.path(), options(4, disk.clone())).expect("open");
    let at = store.meta().identity_revision(P).expect("revision");
    store
        .write_identity_snapshot(P, at, &[b"first"])
        .expect("healthy write");
    disk.fail_file_syncs_after(0);
    let err = store
        .write_identity_snapshot(P, at, &[b"second, never synced"])
        .expect_err("the fsync fails");
    assert!(err.to_string().contains("injected fsync failure"), "{err}");
    disk.heal();
    let back = store
        .read_identity_snapshot(P)
        .expect("read")
        .expect("there");
    assert_eq!(
        back.section(0).expect("whole"),
        b"first",
        "the old snapshot stands"
    );
    drop(store);
    // The temp file the failed write left is removed on open, and reported.
    let store = Store::open(dir.path(), options(4, disk)).expect("reopen");
    assert!(
        store
            .open_report()
            .removed_orphans
            .iter()
            .any(|p| p.extension().is_some_and(|x| x == "tmp")),
        "{:?}",
        store.open_report()
    );
    let back = store
        .read_identity_snapshot(P)
        .expect("read")
        .expect("there");
    assert_eq!(back.section(0).expect("whole"), b"first");
}

#[test]
fn damaged_placement_run_is_rebuilt_from_the_segments() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = store_before_second_compaction(dir.path(), FlakyDisk::healthy());
    store.compact().expect("compact");
    drop(store);
    for (what, damage) in [
        (
            "flipped byte",
            (|b: &mut Vec<u8>| b[40] ^= 1) as fn(&mut Vec<u8>),
        ),
        ("cut short", |b: &mut Vec<u8>| b.truncate(b.len() / 2)),
    ] {
        let runs: Vec<PathBuf> = std::fs::read_dir(dir.path().join("index"))
            .expect("index dir")
            .map(|e| e.expect("entry").path())
            .filter(|p| p.extension().is_some_and(|x| x == "place"))
            .collect();
        assert!(
            !runs.is_empty(),
            "{what}: keys joined by the placer leave a placement run"
        );
        for run in &runs {
            let mut bytes = std::fs::read(run).expect("read run");
            damage(&mut bytes);
            std::fs::write(run, &bytes).expect("damage run");
        }
        let store = reopen(dir.path());
        common::assert_resolved(&store, P, pairs, 0, &format!("{what}: read from segments"));
        // The next compaction writes the placement whole again.
        store.ingest(P, numbered(what, 3)).expect("ingest");
        store.compact().expect("compact");
        drop(store);
        let store = reopen(dir.path());
        common::assert_resolved(&store, P, pairs, 0, &format!("{what}: after compaction"));
        for run in &store.manifest().placement_runs {
            let path = dir.path().join(&run.file);
            let bytes = std::fs::read(&path).expect("read run");
            omnitrail_store::placement::read_run(&path, &bytes)
                .unwrap_or_else(|e| panic!("{what}: the rewritten run reads: {e}"));
        }
        drop(store);
    }
}

/// Joins keys three by three: the customer is the first of each run of three.
fn triples(key: u64, _: u64) -> u64 {
    (key - key % 3).max(1)
}

#[test]
fn failed_fsync_during_re_placement_loses_and_misfiles_nothing() {
    let overlay = |store: &Store| {
        let records = store.records(P).expect("records");
        let o: std::collections::HashMap<_, _> = records
            .iter()
            .map(|r| {
                (
                    r.customer,
                    omnitrail_model::CustomerId(triples(r.customer.0, 0)),
                )
            })
            .filter(|(k, c)| k != c)
            .collect();
        Arc::new(o)
    };
    let mut want = batch_ids("a-", 20);
    want.extend(batch_ids("b-", 20));
    want.extend((0..6).map(|i| format!("w-{i}")));
    for kind in [SyncKind::Dir, SyncKind::File] {
        let dir = tempfile::tempdir().expect("temp dir");
        let disk = FlakyDisk::healthy();
        let store = store_before_second_compaction(dir.path(), disk.clone());
        store.compact().expect("compact");
        let before = syncs(&disk, kind);
        let moved = store
            .re_place(P, overlay(&store))
            .expect("healthy re-placement");
        assert!(
            moved > 0,
            "keys placed two by two move when joined three by three"
        );
        common::assert_resolved(&store, P, triples, 0, &format!("{kind:?}: re-placed"));
        let total = syncs(&disk, kind) - before;
        assert!(total >= 2, "{kind:?}: a re-placement fsyncs, saw {total}");
        for k in 0..total {
            let case = format!(
                "{kind:?} fsync #{} of {total} of a re-placement fails",
                k + 1
            );
            let dir = tempfile::tempdir().expect("temp dir");
            let disk = FlakyDisk::healthy();
            let store = store_before_second_compaction(dir.path(), disk.clone());
            store.compact().expect("compact");
            match kind {
                SyncKind::File => disk.fail_file_syncs_after(k),
                SyncKind::Dir => disk.fail_dir_syncs_after(k),
            }
            let err = store.re_place(P, overlay(&store)).expect_err(&case);
            assert!(matches!(err, StoreError::Fsync { .. }), "{case}: {err}");
            disk.heal();
            drop(store);
            let store = reopen(dir.path());
            recovers(dir.path(), store, &want, triples, &case, |s| {
                s.re_place(P, overlay(s)).map(drop)
            });
        }
    }
}
