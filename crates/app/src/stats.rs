//! `omnitrail stats`: what the data dir holds.

use crate::{AppError, Config};
use omnitrail_model::{ProjectId, Timestamp};
use omnitrail_store::{Journeys, Store};
use rayon::prelude::*;
use std::collections::BTreeMap;
use std::sync::Arc;

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Stats {
    pub events: u64,
    pub customers: u64,
    pub first_event: Option<Timestamp>,
    pub last_event: Option<Timestamp>,
    /// Sorted by count, largest first, then by name.
    pub by_channel: Vec<(String, u64)>,
    pub by_activity: Vec<(String, u64)>,
    /// In configured stage order; activities without a stage are counted under "unmapped".
    pub by_stage: Vec<(String, u64)>,
    pub storage_bytes: u64,
    pub segments: u64,
    /// Events still in the ingest log, waiting for compaction.
    pub uncompacted_events: u64,
    pub dead_letters: u64,
    /// Memory the columnar journeys of this project take, per event.
    pub journey_bytes_per_event: f64,
}

#[derive(Default)]
struct Partial {
    events: u64,
    customers: u64,
    min_ts: Option<i64>,
    max_ts: Option<i64>,
    channels: BTreeMap<String, u64>,
    activities: BTreeMap<String, u64>,
    heap_bytes: u64,
}

impl Partial {
    fn merge(mut self, other: Partial) -> Partial {
        self.events += other.events;
        self.customers += other.customers;
        self.min_ts = min_opt(self.min_ts, other.min_ts);
        self.max_ts = max_opt(self.max_ts, other.max_ts);
        for (k, v) in other.channels {
            *self.channels.entry(k).or_default() += v;
        }
        for (k, v) in other.activities {
            *self.activities.entry(k).or_default() += v;
        }
        self.heap_bytes += other.heap_bytes;
        self
    }
}

fn min_opt(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn max_opt(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

fn by_count(map: BTreeMap<String, u64>) -> Vec<(String, u64)> {
    let mut v: Vec<_> = map.into_iter().collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    v
}

/// Stats over `partitions`, the project's journeys with identity merges applied.
pub fn compute(
    store: &Store,
    config: &Config,
    project: ProjectId,
    partitions: &[Arc<Journeys>],
) -> Result<Stats, AppError> {
    let total = partitions
        .par_iter()
        .map(|j| -> Result<Partial, AppError> {
            let mut part = Partial {
                events: j.events() as u64,
                customers: j.customers.len() as u64,
                min_ts: j.ts.iter().copied().min(),
                max_ts: j.ts.iter().copied().max(),
                heap_bytes: j.heap_bytes() as u64,
                ..Partial::default()
            };
            let mut act = vec![0u64; j.activities.len()];
            for &a in &j.activity {
                act[a as usize] += 1;
            }
            let mut ch = vec![0u64; j.channels.len()];
            for &c in &j.channel {
                ch[c as usize] += 1;
            }
            part.activities = j.activities.values.iter().cloned().zip(act).collect();
            part.channels = j.channels.values.iter().cloned().zip(ch).collect();
            Ok(part)
        })
        .try_reduce(Partial::default, |a, b| Ok(a.merge(b)))?;

    let mut stages: Vec<(String, u64)> = config.stages.iter().map(|s| (s.clone(), 0)).collect();
    let mut unmapped = 0;
    for (activity, n) in &total.activities {
        match config.stage_of(activity) {
            Some(stage) => {
                if let Some(entry) = stages.iter_mut().find(|(s, _)| s == stage) {
                    entry.1 += n;
                }
            }
            None => unmapped += n,
        }
    }
    if unmapped > 0 {
        stages.push(("unmapped".into(), unmapped));
    }
    let manifest = store.manifest();
    Ok(Stats {
        events: total.events,
        customers: total.customers,
        first_event: total.min_ts.map(Timestamp::from_micros),
        last_event: total.max_ts.map(Timestamp::from_micros),
        by_channel: by_count(total.channels),
        by_activity: by_count(total.activities),
        by_stage: stages,
        storage_bytes: store.storage_bytes(),
        segments: manifest
            .segments
            .iter()
            .filter(|s| s.project == project)
            .count() as u64,
        uncompacted_events: store.uncompacted_events() as u64,
        dead_letters: store.meta().dead_letter_count(project)?,
        journey_bytes_per_event: if total.events == 0 {
            0.0
        } else {
            total.heap_bytes as f64 / total.events as f64
        },
    })
}
