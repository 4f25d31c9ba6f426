//! Times the funnel on synthetic journeys shaped like `bench/engine_bench.py`'s: 10M events of
//! 1M customers over 30 activities from a skewed Markov chain, geometric journey lengths,
//! log-normal gaps (median 20 minutes), 16 partitions; a 4-step ordered funnel with a 7-day
//! window along the chain's most likely walk.
//!
//! `cargo run --release -p omnitrail-engine --example funnel_timing [EVENTS CUSTOMERS]`

use omnitrail_engine::funnel::{funnel, FunnelMode, FunnelOptions, FunnelStep};
use omnitrail_engine::{Prepared, Query, Stages};
use omnitrail_model::journeys::{Dictionary, Journeys};
use omnitrail_model::{CustomerId, ProjectId};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

const ACTIVITIES: usize = 30;
const CHANNELS: usize = 8;
const PARTITIONS: usize = 16;

/// SplitMix64: deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn normal(&mut self) -> f64 {
        let (u, v) = (self.unit().max(1e-300), self.unit());
        (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
    }
    fn pick(&mut self, cum: &[f64]) -> usize {
        let u = self.unit();
        cum.iter().position(|&c| u < c).unwrap_or(cum.len() - 1)
    }
}

/// Sparse skewed weights (a stand-in for a Dirichlet with a small concentration).
fn cumulative(rng: &mut Rng, n: usize, sharp: f64) -> Vec<f64> {
    let w: Vec<f64> = (0..n).map(|_| rng.unit().powf(sharp)).collect();
    let total: f64 = w.iter().sum();
    let mut acc = 0.0;
    w.iter()
        .map(|x| {
            acc += x / total;
            acc
        })
        .collect()
}

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse().expect("EVENTS CUSTOMERS as numbers"))
        .collect();
    let events = args.first().copied().unwrap_or(10_000_000);
    let customers = args.get(1).copied().unwrap_or(1_000_000);
    let mut rng = Rng(42);
    let start: Vec<f64> = {
        let w: Vec<f64> = (1..=ACTIVITIES)
            .map(|i| 1.0 / (i as f64).powf(1.3))
            .collect();
        let total: f64 = w.iter().sum();
        let mut acc = 0.0;
        w.iter()
            .map(|x| {
                acc += x / total;
                acc
            })
            .collect()
    };
    let trans: Vec<Vec<f64>> = (0..ACTIVITIES)
        .map(|_| cumulative(&mut rng, ACTIVITIES, 6.0))
        .collect();
    let chans: Vec<Vec<f64>> = (0..ACTIVITIES)
        .map(|_| cumulative(&mut rng, CHANNELS, 3.0))
        .collect();
    // The funnel: the most likely walk from the most common first activity.
    let mut steps = vec![0usize];
    while steps.len() < 4 {
        let row = &trans[*steps.last().unwrap()];
        let best = (0..ACTIVITIES)
            .filter(|a| !steps.contains(a))
            .max_by(|&a, &b| {
                let p = |k: usize| row[k] - if k == 0 { 0.0 } else { row[k - 1] };
                p(a).total_cmp(&p(b))
            })
            .unwrap();
        steps.push(best);
    }

    let p_stop = customers as f64 / events as f64;
    let mut parts: Vec<Journeys> = (0..PARTITIONS)
        .map(|p| {
            let mut activities = Dictionary::default();
            for a in 0..ACTIVITIES {
                activities.code(&format!("a{a:02}"));
            }
            let mut channels = Dictionary::default();
            for c in 0..CHANNELS {
                channels.code(&format!("ch{c}"));
            }
            Journeys {
                project: ProjectId::DEFAULT,
                partition: p as u32,
                customers: Vec::new(),
                offsets: vec![0],
                ts: Vec::new(),
                activity: Default::default(),
                activities,
                channel: Vec::new(),
                channels,
                properties: BTreeMap::new(),
                traits: BTreeMap::new(),
            }
        })
        .collect();
    for c in 0..customers {
        let j = &mut parts[c % PARTITIONS];
        j.customers.push(CustomerId(c as u64 + 1));
        let mut len = 1;
        while rng.unit() > p_stop {
            len += 1;
        }
        let mut t = 1_704_067_200_000_000 + (rng.unit() * 365.0 * 86_400e6) as i64;
        let mut a = start
            .partition_point(|&x| x <= rng.unit())
            .min(ACTIVITIES - 1);
        for k in 0..len {
            if k > 0 {
                a = rng.pick(&trans[a]);
                let gap = (1200f64.ln() + 2.0 * rng.normal()).exp().max(1.0) as i64;
                t += gap * 1_000_000;
            }
            j.ts.push(t);
            j.activity.push(a as u32);
            j.channel.push(rng.pick(&chans[a]) as u16);
        }
        j.offsets.push(j.ts.len() as u32);
    }
    let parts: Vec<Arc<Journeys>> = parts.into_iter().map(Arc::new).collect();
    let total: usize = parts.iter().map(|j| j.events()).sum();
    let names: Vec<String> = steps.iter().map(|s| format!("a{s:02}")).collect();
    eprintln!("{total} events, {customers} customers, funnel {names:?}");

    let stages = Stages::default();
    let query = Query::new(0);
    let options = FunnelOptions {
        mode: FunnelMode::Ordered,
        window: Some(7 * 86_400_000_000),
        ..FunnelOptions::new(names.iter().map(|n| FunnelStep::Value(n.clone())).collect())
    };
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        (v[v.len() / 2], v[0])
    };
    let runs: usize = std::env::var("RUNS").map_or(5, |r| r.parse().unwrap());
    let mut whole = Vec::new();
    let mut only = Vec::new();
    let mut walk = Vec::new();
    let mut result = None;
    for _ in 0..runs {
        let t = Instant::now();
        let prepared = Prepared::new(&parts, &stages, &query).unwrap();
        let t_prep = t.elapsed().as_secs_f64();
        let f = funnel(&prepared, &stages, &options).unwrap();
        whole.push(t.elapsed().as_secs_f64());
        only.push(t.elapsed().as_secs_f64() - t_prep);
        let t = Instant::now();
        let n = prepared.fold_cases(|| 0usize, |n, c| *n += c.len(), |a, b| a + b);
        walk.push(t.elapsed().as_secs_f64());
        assert_eq!(n, total);
        if std::env::var_os("FLOOR").is_some() {
            let t = Instant::now();
            let x = prepared.fold_cases(
                || 0i64,
                |n, c| *n += (0..c.len()).map(|i| c.ts(i)).fold(0i64, i64::wrapping_add),
                i64::wrapping_add,
            );
            let t_ts = t.elapsed().as_secs_f64();
            let t = Instant::now();
            let y = prepared.fold_cases(
                || 0u64,
                |n, c| *n += c.steps.iter().map(|&s| u64::from(s)).sum::<u64>(),
                |a, b| a + b,
            );
            eprintln!(
                "floor: all ts {t_ts:.4}s, all codes {:.4}s ({x} {y})",
                t.elapsed().as_secs_f64()
            );
        }
        result = Some(f);
    }
    let f = result.unwrap();
    let reached: Vec<(u64, u64)> = f.steps.iter().map(|s| (s.cases, s.customers)).collect();
    println!(
        "steps (cases, customers) {reached:?}; converted {} median {:?} p90 {:?} mean {:?}",
        f.time_to_convert.converted,
        f.time_to_convert.median_s,
        f.time_to_convert.p90_s,
        f.time_to_convert.mean_s
    );
    println!(
        "(median, min) of {runs}: prepare+funnel {:.4?}s, funnel {:.4?}s, empty case walk {:.4?}s",
        median(whole),
        median(only),
        median(walk)
    );
}
