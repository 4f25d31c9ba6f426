//! Measures the identity graph at scale: observe rates in time order, in random order and
//! in batches, snapshot and restore times, and memory.
//!
//! `cargo run -p omnitrail-identity --release --example scale [customers] [phase]`
//! (default 1,000,000 customers: 5M evidence over about 3.5M identifiers; `phase` is one of
//! `time`, `keys`, `reverse`, `batch`, `restore` to run only that one, for profiling).

use omnitrail_identity::{Evidence, Guardrails, IdentityGraph, Snapshot, Source};
use omnitrail_model::{CustomerId, Identifier, IdentifierKind, Timestamp};
use std::time::Instant;

const PHASES: u64 = 5;
const DEVICES: u64 = 10_000;

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

fn ident(kind: IdentifierKind, value: String) -> Identifier {
    Identifier { kind, value }
}

/// Evidence number `idx` of `n` customers; in time order when `idx` increases. Each customer
/// browses anonymously, logs in with an email, is identified with a user id or phone, and
/// some share one of a pool of devices (or send a junk anonymous id).
fn evidence(idx: u64, n: u64) -> (Evidence, Vec<(Identifier, CustomerId)>) {
    let (phase, c) = (idx / n, idx % n);
    let r = splitmix(c);
    let a1 = ident(IdentifierKind::AnonymousId, format!("{:016x}-a1", r));
    let a2 = (r & 1 == 0).then(|| ident(IdentifierKind::AnonymousId, format!("{:016x}-a2", r)));
    let email = ident(IdentifierKind::Email, format!("c{c}@mail.example"));
    let strong = if r & 2 == 0 {
        ident(IdentifierKind::UserId, format!("user-{c}"))
    } else {
        ident(
            IdentifierKind::Phone,
            format!("+1{:010}", 2_000_000_000 + c),
        )
    };
    let ids = match phase {
        0 => vec![a1],
        1 => vec![a1, email],
        2 => vec![email, strong],
        3 => match a2 {
            Some(a2) => vec![a2, strong],
            None => vec![email, strong, a1],
        },
        _ if c % 100 == 0 => vec![
            email,
            ident(IdentifierKind::AnonymousId, "undefined".into()),
        ],
        _ if r % 10 < 3 => vec![
            a1,
            ident(
                IdentifierKind::DeviceId,
                format!("dev-{}", (r >> 8) % DEVICES),
            ),
        ],
        _ => vec![email],
    };
    // The store's write-time key of each identifier: unique per identifier.
    let key = |id: &Identifier| {
        let slot = match (&id.kind, id.value.ends_with("-a2")) {
            (IdentifierKind::AnonymousId, false) => 0,
            (IdentifierKind::AnonymousId, true) => 1,
            (IdentifierKind::Email, _) => 2,
            (IdentifierKind::UserId | IdentifierKind::Phone, _) => 3,
            _ => 4,
        };
        CustomerId(c * 8 + slot)
    };
    let keys = ids.iter().map(|i| (i.clone(), key(i))).collect();
    let e = Evidence {
        source: if phase == 2 {
            Source::Identify
        } else {
            Source::Event
        },
        at: Timestamp::from_secs(1_700_000_000 + (phase * n + c) as i64),
        event: Some(format!("seq:{idx}")),
        identifiers: ids,
    };
    (e, keys)
}

fn rss_mb() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .map_or(0, |kb| kb / 1024)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Nanoseconds this thread has run on a CPU: unlike wall time, not inflated when other
/// processes share the machine.
fn cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}

struct Clock {
    wall: Instant,
    cpu: u64,
}

fn start() -> Clock {
    Clock {
        wall: Instant::now(),
        cpu: cpu_ns(),
    }
}

fn rate(n: u64, c: Clock) -> String {
    let wall = c.wall.elapsed().as_secs_f64();
    let cpu = cpu_ns().saturating_sub(c.cpu) as f64 / 1e9;
    format!(
        "{wall:.2} s wall, {cpu:.2} s cpu, {:.0}k/s of cpu time",
        n as f64 / cpu.max(1e-9) / 1000.0
    )
}

/// Observes evidence in the given order; with `keys`, also keys each primary identifier
/// as the store would (`primary` + `set_key` per evidence).
fn build(order: impl Iterator<Item = u64>, n: u64, label: &str, keys: bool) -> IdentityGraph {
    let mut g = IdentityGraph::new(Guardrails::default());
    // Evidence is generated up front so that only the graph's work is timed.
    let input: Vec<(Evidence, Vec<(Identifier, CustomerId)>)> =
        order.map(|i| evidence(i, n)).collect();
    let total = input.len() as u64;
    let t = start();
    let mut keyed = 0u64;
    for (e, candidates) in input {
        let primary = if keys {
            g.primary(&e.identifiers).cloned()
        } else {
            None
        };
        g.observe(e);
        if let Some(p) = primary {
            let key = candidates.iter().find(|(i, _)| *i == p).map(|(_, k)| *k);
            if let Some(k) = key {
                g.set_key(&p, k).expect("keys are unique per identifier");
                keyed += 1;
            }
        }
    }
    println!(
        "{label}: {total} evidence, {keyed} set_key: {}",
        rate(total, t)
    );
    g
}

fn main() {
    let n: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let phase = std::env::args().nth(2).unwrap_or_else(|| "all".into());
    let run = |p: &str| phase == "all" || phase == p;
    let total = n * PHASES;
    println!("{n} customers, {total} evidence");

    if run("time") {
        drop(build(0..total, n, "observe, time order", false));
    }
    let g = build(0..total, n, "observe + primary + set_key, time order", true);
    let stats = g.stats();
    println!(
        "graph: {} identifiers, {} evidence, {} clusters, {} refused, {} keys; heap ≈ {} MB",
        stats.identifiers,
        stats.evidence,
        stats.clusters,
        stats.refused_evidence,
        stats.keys,
        g.heap_bytes() >> 20
    );
    let expected = g.clusters().len();
    if phase == "time" || phase == "keys" {
        return;
    }

    if run("restore") {
        let t = start();
        let snapshot = g.snapshot();
        println!("snapshot: {}", rate(total, t));
        let t = start();
        let bytes = postcard::to_allocvec(&snapshot).expect("snapshot serializes");
        println!(
            "postcard encode: {} ({} MB)",
            rate(total, t),
            bytes.len() >> 20
        );
        drop(snapshot);
        let t = start();
        let snapshot: Snapshot = postcard::from_bytes(&bytes).expect("snapshot decodes");
        println!("postcard decode: {}", rate(total, t));
        drop(bytes);
        let t = start();
        let restored = IdentityGraph::restore(Guardrails::default(), snapshot);
        println!("restore: {}", rate(total, t));
        assert_eq!(restored.clusters().len(), expected);
        let (rss2, hwm) = rss_mb();
        println!(
            "after restore: RSS {rss2} MB, peak {hwm} MB, graph heap ≈ {} MB",
            restored.heap_bytes() >> 20
        );
    }
    drop(g);

    // Latest evidence first: every evidence sorts before what its component holds.
    if run("reverse") {
        let g = build((0..total).rev(), n, "observe, reverse time order", false);
        assert_eq!(g.clusters().len(), expected);
    }
    if !run("batch") {
        return;
    }

    // A random permutation, observed in batches of 100k.
    let mut order: Vec<u64> = (0..total).collect();
    for i in (1..order.len()).rev() {
        let j = (splitmix(i as u64) % (i as u64 + 1)) as usize;
        order.swap(i, j);
    }
    let input: Vec<Evidence> = order.iter().map(|&i| evidence(i, n).0).collect();
    let mut g = IdentityGraph::new(Guardrails::default());
    let t = start();
    let mut it = input.into_iter();
    loop {
        let chunk: Vec<Evidence> = it.by_ref().take(100_000).collect();
        if chunk.is_empty() {
            break;
        }
        g.observe_batch(chunk);
    }
    println!(
        "observe_batch, random order, 100k per batch: {}",
        rate(total, t)
    );
    assert_eq!(g.clusters().len(), expected);
}
