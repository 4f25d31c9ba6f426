//! Torn and corrupt ingest logs. The last log file may end in a torn or garbled frame (a
//! crash mid-write): opening cuts it and keeps every whole frame before it. A closed log
//! file was fsynced before the next one was started, so damage there is corruption, and
//! opening refuses the data dir rather than dropping acknowledged events.
//!
//! Log format (see src/log.rs): 8-byte magic, then frames `len u32 LE | crc32 u32 LE | payload`.

mod common;

use common::{assert_ids_exactly_once, log_files, numbered, options, FlakyDisk, P};
use omnitrail_store::{OpenReport, Store, StoreError, StoreOptions};
use std::path::{Path, PathBuf};

const MAGIC_LEN: usize = 8;
const EVENTS: usize = 5;

/// (start, end) byte ranges of the frames of a log file, read independently of the store.
fn frames(bytes: &[u8]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut pos = MAGIC_LEN;
    while pos < bytes.len() {
        let len = u32::from_le_bytes(bytes[pos..pos + 4].try_into().expect("4 bytes")) as usize;
        out.push((pos, pos + 8 + len));
        pos += 8 + len;
    }
    assert_eq!(pos, bytes.len(), "test log ends on a frame boundary");
    out
}

fn ids(range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| format!("t{i}")).collect()
}

/// A data dir whose single log file holds `EVENTS` frames (one event each), and that file.
fn logged_store() -> (tempfile::TempDir, PathBuf, Vec<u8>) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open(dir.path(), StoreOptions::default()).expect("open");
    for e in numbered("t", EVENTS) {
        store.ingest(P, vec![e]).expect("ingest");
    }
    drop(store);
    let logs = log_files(dir.path());
    assert_eq!(logs.len(), 1, "one log file before any compaction");
    let bytes = std::fs::read(&logs[0]).expect("read log");
    assert_eq!(frames(&bytes).len(), EVENTS, "one frame per event");
    (dir, logs[0].clone(), bytes)
}

/// Writes `damaged` over the log, opens the store and checks that exactly the first
/// `survivors` events are there and the open report says what was cut.
fn open_damaged(
    dir: &Path,
    log: &Path,
    damaged: &[u8],
    survivors: usize,
    cut_bytes: u64,
    why: &str,
) -> Store {
    std::fs::write(log, damaged).expect("write damaged log");
    let store = Store::open(dir, StoreOptions::default())
        .unwrap_or_else(|e| panic!("a damaged last log file must not stop open ({why}): {e}"));
    let report: &OpenReport = store.open_report();
    if cut_bytes == 0 {
        assert_eq!(report.cut_tail, None, "{why}: nothing to cut");
    } else {
        let (path, cut, reason) = report
            .cut_tail
            .as_ref()
            .unwrap_or_else(|| panic!("{why}: open should report a cut tail"));
        assert_eq!(path, log, "{why}: cut file");
        assert_eq!(*cut, cut_bytes, "{why}: bytes cut ({reason})");
    }
    assert_eq!(report.replayed, survivors as u64, "{why}: replayed events");
    assert_ids_exactly_once(&store, &ids(0..survivors), why);
    store
}

/// After a repair the store takes new events, and they and the survivors outlive a reopen.
fn assert_repaired_store_works(dir: &Path, store: Store, survivors: usize) {
    store
        .ingest(P, numbered("after-repair-", 3))
        .expect("ingest after repair");
    drop(store);
    let store = Store::open(dir, StoreOptions::default()).expect("reopen after repair");
    assert_eq!(
        store.open_report().cut_tail,
        None,
        "a repaired log stays repaired"
    );
    let mut want = ids(0..survivors);
    want.extend((0..3).map(|i| format!("after-repair-{i}")));
    assert_ids_exactly_once(&store, &want, "after repair and reopen");
}

#[test]
fn truncated_log_keeps_exactly_the_whole_frames() {
    let (dir, log, bytes) = logged_store();
    let frames = frames(&bytes);
    let (last_start, _) = frames[EVENTS - 1];
    // Every offset inside the last frame and inside the magic, plus a few inside earlier frames.
    let mut cuts: Vec<usize> = (last_start..bytes.len()).chain(0..MAGIC_LEN).collect();
    cuts.extend(frames.iter().map(|&(s, e)| (s + e) / 2));
    cuts.extend([frames[1].0 + 3, frames[2].0]);
    for cut in cuts {
        let survivors = frames.iter().filter(|&&(_, end)| end <= cut).count();
        let whole = frames
            .iter()
            .map(|&(_, end)| end)
            .filter(|&end| end <= cut)
            .max();
        // Inside the magic everything is cut (an empty file is simply a fresh log).
        let cut_bytes = if cut < MAGIC_LEN {
            cut
        } else {
            cut - whole.unwrap_or(MAGIC_LEN)
        };
        let store = open_damaged(
            dir.path(),
            &log,
            &bytes[..cut],
            survivors,
            cut_bytes as u64,
            &format!("log cut at byte {cut} of {}", bytes.len()),
        );
        drop(store);
    }
    // Finally: cut inside the last frame, then show the repaired store works.
    let store = open_damaged(
        dir.path(),
        &log,
        &bytes[..bytes.len() - 1],
        EVENTS - 1,
        (bytes.len() - 1 - last_start) as u64,
        "last byte missing",
    );
    assert_repaired_store_works(dir.path(), store, EVENTS - 1);
}

#[test]
fn corrupt_last_frame_is_cut_and_earlier_frames_kept() {
    let (dir, log, bytes) = logged_store();
    let (start, end) = frames(&bytes)[EVENTS - 1];
    // Every byte of the last frame: length, checksum and payload.
    for pos in start..end {
        let mut damaged = bytes.clone();
        damaged[pos] ^= 0xFF;
        let why = format!("byte {pos} of the last frame ({start}..{end}) flipped");
        let store = open_damaged(
            dir.path(),
            &log,
            &damaged,
            EVENTS - 1,
            (end - start) as u64,
            &why,
        );
        if pos >= start + 8 {
            let reason = &store.open_report().cut_tail.as_ref().expect("cut").2;
            assert!(
                reason.contains("checksum mismatch"),
                "{why}: reason was '{reason}'"
            );
        }
        if pos + 1 == end {
            assert_repaired_store_works(dir.path(), store, EVENTS - 1);
        }
    }
}

#[test]
fn garbage_after_the_last_frame_is_cut() {
    let (dir, log, bytes) = logged_store();
    let (first_start, first_end) = frames(&bytes)[0];
    let mut bad_copy = bytes[first_start..first_end].to_vec();
    *bad_copy.last_mut().expect("payload") ^= 0x55;
    let mut long_claim = 100u32.to_le_bytes().to_vec();
    long_claim.extend([0u8; 20]);
    let garbage: Vec<(&str, Vec<u8>)> = vec![
        ("3 zero bytes (torn frame header)", vec![0; 3]),
        ("16 zero bytes (zero length)", vec![0; 16]),
        ("0xFF bytes (absurd length)", vec![0xFF; 12]),
        ("a header promising more bytes than follow", long_claim),
        ("a copy of a frame with a bad checksum", bad_copy),
        ("text", b"not a log frame at all, just text\n".to_vec()),
    ];
    for (what, junk) in garbage {
        let mut damaged = bytes.clone();
        damaged.extend(&junk);
        let store = open_damaged(dir.path(), &log, &damaged, EVENTS, junk.len() as u64, what);
        assert_repaired_store_works(dir.path(), store, EVENTS);
        // The repaired store appended events to the log; start the next case from the original.
        assert_eq!(
            log_files(dir.path()),
            std::slice::from_ref(&log),
            "still a single log file"
        );
        std::fs::write(&log, &bytes).expect("restore log");
    }
}

/// Two log files through the public API: a compaction that fails after starting a new log
/// (a segment directory fsync fails) leaves the old one sealed, next to the new active one
/// that the reopened store appends to.
fn store_with_a_closed_log() -> (tempfile::TempDir, PathBuf, Vec<String>) {
    let dir = tempfile::tempdir().expect("temp dir");
    let disk = FlakyDisk::healthy();
    let store = Store::open(dir.path(), options(4, disk.clone())).expect("open");
    store.ingest(P, numbered("old-", 5)).expect("ingest");
    // The new log file takes one directory fsync; the segment directory is the next one.
    disk.fail_dir_syncs_after(1);
    assert!(
        store.compact().is_err(),
        "compaction should fail on the injected fsync error"
    );
    // The failed compaction poisoned the store; a reopen picks up both log files.
    drop(store);
    disk.heal();
    let store = Store::open(dir.path(), options(4, disk.clone())).expect("reopen");
    store
        .ingest(P, numbered("new-", 3))
        .expect("ingest after reopening");
    drop(store);
    let logs = log_files(dir.path());
    assert_eq!(logs.len(), 2, "a sealed log and the active one: {logs:?}");
    let mut all: Vec<String> = (0..5).map(|i| format!("old-{i}")).collect();
    all.extend((0..3).map(|i| format!("new-{i}")));
    let store = Store::open(dir.path(), StoreOptions::default()).expect("open with a sealed log");
    assert_ids_exactly_once(&store, &all, "sealed + active log");
    drop(store);
    (dir, logs[0].clone(), all)
}

#[test]
fn damage_in_a_closed_log_file_stops_open() {
    let (dir, closed, all) = store_with_a_closed_log();
    let pristine = std::fs::read(&closed).expect("read closed log");
    let (start, end) = frames(&pristine)[2];
    let mut flipped = pristine.clone();
    flipped[start + 10] ^= 0xFF;
    let mut last_flipped = pristine.clone();
    *last_flipped.last_mut().expect("bytes") ^= 0x01;
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("a flipped payload byte in a middle frame", flipped),
        ("a flipped byte in its last frame", last_flipped),
        (
            "truncated inside a frame",
            pristine[..(start + end) / 2].to_vec(),
        ),
        (
            "garbage appended",
            [pristine.clone(), vec![0xAB; 9]].concat(),
        ),
    ];
    for (what, damaged) in cases {
        std::fs::write(&closed, &damaged).expect("damage closed log");
        match Store::open(dir.path(), StoreOptions::default()) {
            Err(StoreError::Corrupt { path, reason }) => {
                assert_eq!(path, closed, "{what}: the error names the damaged file");
                assert!(
                    reason.contains("closed log file"),
                    "{what}: reason '{reason}'"
                );
            }
            Err(other) => panic!("{what}: expected StoreError::Corrupt, got {other}"),
            Ok(_) => panic!("{what}: open must refuse a corrupt closed log file"),
        }
        assert_eq!(
            std::fs::read(&closed).expect("read"),
            damaged,
            "{what}: a refused open changes nothing"
        );
        let message = match Store::open(dir.path(), StoreOptions::default()) {
            Err(e) => e.to_string(),
            Ok(_) => unreachable!("checked above"),
        };
        let name = closed
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        assert!(
            message.contains(&name),
            "{what}: message '{message}' names {name}"
        );
    }
    // Restoring the file (say, from a backup) brings everything back.
    std::fs::write(&closed, &pristine).expect("restore");
    let store = Store::open(dir.path(), StoreOptions::default()).expect("open restored");
    assert_ids_exactly_once(&store, &all, "restored closed log");
    store.compact().expect("compact");
    drop(store);
    assert_eq!(
        log_files(dir.path()).len(),
        1,
        "compaction retires the sealed log"
    );
    let store = Store::open(dir.path(), StoreOptions::default()).expect("reopen");
    assert_ids_exactly_once(&store, &all, "after compaction and reopen");
}
