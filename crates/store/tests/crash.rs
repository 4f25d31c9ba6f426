//! Crash test: a child process ingests (and compacts) as fast as it can and is killed with
//! SIGKILL at a random moment, again and again on the same data dir. After every kill the
//! store must open and hold every acknowledged event exactly once.
//!
//! The test binary is its own child: `crash_cycles_keep_every_acknowledged_event` runs
//! itself with `--exact crash_child --include-ignored` and the data dir in the environment.
//! The child prints `ACK <event id>` for every event an ingest stored as new, after the
//! ingest returned, so each complete line is an acknowledged event.
//!
//! OMNITRAIL_CRASH_CYCLES raises the cycle count (20 by default); OMNITRAIL_CRASH_SEED
//! replays a run (the seed is printed).

mod common;

use common::{ev, id_counts, EventExt, P};
use omnitrail_model::{CustomerId, Event, IdentifierKind};
use omnitrail_store::{OsDurability, Store, StoreOptions};
use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

const CHILD_ENV: &str = "OMNITRAIL_CRASH_CHILD";
const DIR_ENV: &str = "OMNITRAIL_CRASH_DIR";
const CYCLE_ENV: &str = "OMNITRAIL_CRASH_CYCLE";
const SEED_ENV: &str = "OMNITRAIL_CRASH_SEED";

/// splitmix64: small, seedable, good enough to pick batch sizes and delays.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
}

fn store_options() -> StoreOptions {
    StoreOptions {
        partitions: 4,
        durability: Arc::new(OsDurability),
        // Small enough that automatic compactions and segment merges happen mid-run.
        auto_compact_events: 4_000,
        max_segments_per_partition: 2,
        ..StoreOptions::default()
    }
}

/// The customer of a key in a cycle: keys joined in runs of 2, 3 or 4.
fn joined(key: u64, cycle: u64) -> u64 {
    let run = 2 + cycle % 3;
    (key - key % run).max(1)
}

fn crash_event(rng: &mut Rng, event_id: &str, n: u64) -> Event {
    // A few hundred customers, some reached by email as well, so identities link.
    let user = format!("u{}", rng.range(0, 300));
    let e = ev(
        &user,
        ["web", "phone", "email"][(n % 3) as usize],
        "step",
        rng.range(0, 3600) as i64,
    )
    .event_id(event_id);
    if rng.range(0, 4) == 0 {
        let email = format!("{user}@example.com");
        e.also(common::id(IdentifierKind::Email, &email))
    } else {
        e
    }
}

/// The child: ingest until killed. Not a test of its own (it returns at once unless spawned).
#[test]
#[ignore = "child process of crash_cycles_keep_every_acknowledged_event"]
fn crash_child() {
    if std::env::var_os(CHILD_ENV).is_none() {
        return;
    }
    let env = |name: &str| std::env::var(name).unwrap_or_else(|_| panic!("{name} not set"));
    let dir = env(DIR_ENV);
    let cycle: u64 = env(CYCLE_ENV).parse().expect("cycle");
    let seed: u64 = env(SEED_ENV).parse().expect("seed");
    let mut rng = Rng(seed ^ cycle.wrapping_mul(0x2545_F491_4F6C_DD1D));
    let store = Store::open(Path::new(&dir), store_options()).expect("child: open store");
    // Each cycle joins keys by another rule, so placements of earlier cycles move.
    store.set_placer(common::rule_placer(joined, cycle));
    let mut out = std::io::stdout().lock();
    // libtest has just printed "test crash_child ... " without a newline: start a fresh line.
    writeln!(out, "\nOPENED")
        .and_then(|()| out.flush())
        .expect("stdout");

    let started = Instant::now();
    let mut counter = 0u64;
    let mut mine: Vec<String> = Vec::new();
    // Bounded in case the parent died; normally SIGKILL ends this loop.
    while started.elapsed() < Duration::from_secs(30) {
        let size = rng.range(1, 500);
        let mut ids: Vec<String> = (0..size)
            .map(|_| {
                counter += 1;
                format!("c{cycle}-{}", counter - 1)
            })
            .collect();
        // Re-send a few ids: acknowledged earlier in this cycle, or maybe stored by an earlier one.
        for _ in 0..rng.range(0, 3) {
            let again = if !mine.is_empty() && rng.range(0, 1) == 0 {
                mine[rng.range(0, mine.len() as u64 - 1) as usize].clone()
            } else if cycle > 0 {
                format!("c{}-{}", rng.range(0, cycle - 1), rng.range(0, 100))
            } else {
                continue;
            };
            let at = rng.range(0, ids.len() as u64) as usize;
            ids.insert(at, again);
        }
        let events: Vec<Event> = ids
            .iter()
            .enumerate()
            .map(|(i, id)| crash_event(&mut rng, id, i as u64))
            .collect();
        let outcome = store.ingest(P, events).expect("child: ingest");
        for (id, customer) in ids.iter().zip(&outcome.customers) {
            if customer.is_some() {
                writeln!(out, "ACK {id}").expect("stdout");
                mine.push(id.clone());
            }
        }
        out.flush().expect("stdout");
        if rng.range(0, 7) == 0 {
            writeln!(out, "COMPACTING")
                .and_then(|()| out.flush())
                .expect("stdout");
            store.compact().expect("child: compact");
            // Now and then the keys placed by earlier cycles' rules are re-filed under
            // this cycle's: a kill may land while segments are rewritten for it.
            if rng.range(0, 2) == 0 {
                let overlay: HashMap<CustomerId, CustomerId> = (1..=store.allocated_keys())
                    .map(|k| (CustomerId(k), CustomerId(joined(k, cycle))))
                    .filter(|(k, c)| k != c)
                    .collect();
                writeln!(out, "RE-PLACING")
                    .and_then(|()| out.flush())
                    .expect("stdout");
                store
                    .re_place(P, Arc::new(overlay))
                    .expect("child: re-place");
            }
        }
    }
}

/// Only complete lines count: the last one may have been cut by the kill.
fn read_complete_lines(pipe: impl Read, lines: mpsc::Sender<String>) {
    let mut reader = BufReader::new(pipe);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf) {
            Ok(0) | Err(_) => return,
            Ok(_) if buf.ends_with(b"\n") => {
                let line = String::from_utf8_lossy(&buf[..buf.len() - 1]).into_owned();
                if lines.send(line).is_err() {
                    return;
                }
            }
            Ok(_) => return, // a partial last line
        }
    }
}

#[derive(Default, Debug)]
struct Stats {
    acked: usize,
    killed_while_opening: usize,
    compactions_started: usize,
    re_placements_started: usize,
    torn_tails_cut: usize,
    orphan_cleanups: usize,
}

#[test]
fn crash_cycles_keep_every_acknowledged_event() {
    let cycles: u64 = std::env::var("OMNITRAIL_CRASH_CYCLES")
        .map_or(20, |v| v.parse().expect("OMNITRAIL_CRASH_CYCLES"));
    let seed: u64 = std::env::var(SEED_ENV).map_or_else(
        |_| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .expect("clock")
                .as_nanos() as u64
        },
        |v| v.parse().expect("OMNITRAIL_CRASH_SEED"),
    );
    eprintln!("crash test: {cycles} cycles, OMNITRAIL_CRASH_SEED={seed}");
    let mut rng = Rng(seed);
    let dir = tempfile::tempdir().expect("temp dir");
    let exe = std::env::current_exe().expect("test binary");
    let mut acked: HashSet<String> = HashSet::new();
    let mut stats = Stats::default();

    for cycle in 0..cycles {
        let cycle_started = Instant::now();
        let acked_before = stats.acked;
        let mut child = Command::new(&exe)
            .args([
                "crash_child",
                "--exact",
                "--include-ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, "1")
            .env(DIR_ENV, dir.path())
            .env(CYCLE_ENV, cycle.to_string())
            .env(SEED_ENV, seed.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn child");
        let (tx, rx) = mpsc::channel();
        let stdout = child.stdout.take().expect("stdout");
        let reader = std::thread::spawn(move || read_complete_lines(stdout, tx));
        let mut stderr = child.stderr.take().expect("stderr");
        let stderr_reader = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = stderr.read_to_string(&mut s);
            s
        });

        let mut lines = Vec::new();
        // Most kills land while ingesting or compacting; some while the store is opening.
        if rng.range(0, 4) == 0 {
            std::thread::sleep(Duration::from_millis(rng.range(0, 40)));
        } else {
            let deadline = Instant::now() + Duration::from_secs(30);
            while let Ok(line) = rx.recv_timeout(deadline.saturating_duration_since(Instant::now()))
            {
                let opened = line == "OPENED";
                lines.push(line);
                if opened {
                    break;
                }
            }
            std::thread::sleep(Duration::from_millis(rng.range(5, 300)));
        }
        let _ = child.kill(); // SIGKILL; fails only if the child already exited
        let status = child.wait().expect("wait for child");
        reader.join().expect("stdout reader");
        lines.extend(rx.try_iter());
        let child_stderr = stderr_reader.join().expect("stderr reader");
        assert!(
            status.signal() == Some(9) || status.success(),
            "cycle {cycle}: child failed ({status}):\n{child_stderr}"
        );

        if !lines.iter().any(|l| l == "OPENED") {
            stats.killed_while_opening += 1;
        }
        for line in &lines {
            if let Some(id) = line.strip_prefix("ACK ") {
                assert!(
                    acked.insert(id.to_string()),
                    "cycle {cycle}: event {id} acknowledged as new twice"
                );
                stats.acked += 1;
            } else if line == "COMPACTING" {
                stats.compactions_started += 1;
            } else if line == "RE-PLACING" {
                stats.re_placements_started += 1;
            }
        }

        let store = Store::open(dir.path(), store_options())
            .unwrap_or_else(|e| panic!("cycle {cycle}: open after SIGKILL failed: {e}"));
        let report = store.open_report();
        stats.torn_tails_cut += usize::from(report.cut_tail.is_some());
        stats.orphan_cleanups += usize::from(!report.removed_orphans.is_empty());
        verify(&store, &acked, cycle);
        // Placements written before the kill read as customers are now, whatever the rule.
        common::assert_resolved(&store, P, joined, cycle + 1, &format!("cycle {cycle}"));
        // The store takes new writes after the crash.
        let probe = format!("probe-{cycle}");
        let out = store
            .ingest(P, vec![ev("probe", "web", "probe", 0).event_id(&probe)])
            .expect("ingest after crash");
        assert_eq!(out.stored, 1, "cycle {cycle}: probe event stored");
        acked.insert(probe);
        verify(&store, &acked, cycle);
        eprintln!(
            "cycle {cycle}: {} new acks, {} events stored, {:?}",
            stats.acked - acked_before,
            acked.len(),
            cycle_started.elapsed()
        );
    }
    eprintln!(
        "crash test: {cycles} cycles, {stats:?}, {} events in the store",
        acked.len()
    );
    assert!(
        stats.acked > 0,
        "no child acknowledged anything: the test tested nothing"
    );
}

fn verify(store: &Store, acked: &HashSet<String>, cycle: u64) {
    let records = store
        .records(P)
        .unwrap_or_else(|e| panic!("cycle {cycle}: records: {e}"));
    let counts = id_counts(&records);
    let repeated: Vec<_> = counts.iter().filter(|(_, &n)| n > 1).take(10).collect();
    assert!(
        repeated.is_empty(),
        "cycle {cycle}: event ids stored more than once: {repeated:?}"
    );
    let missing: Vec<_> = acked
        .iter()
        .filter(|id| !counts.contains_key(*id))
        .take(10)
        .collect();
    assert!(
        missing.is_empty(),
        "cycle {cycle}: acknowledged events lost: {missing:?}"
    );
    let seqs: HashSet<u64> = records.iter().map(|r| r.seq).collect();
    assert_eq!(
        seqs.len(),
        records.len(),
        "cycle {cycle}: sequence numbers are unique"
    );
}
