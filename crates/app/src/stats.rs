//! `omnitrail stats`: what the data dir holds.

use crate::{AppError, Config};
use omnitrail_model::{ProjectId, Timestamp};
use omnitrail_store::{EventSummary, Store};
use std::collections::BTreeMap;

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
    /// Memory the columnar journeys of this project take, per event, estimated from the
    /// counts (dictionaries as the stored partitions hold them).
    pub journey_bytes_per_event: f64,
}

fn by_count(map: BTreeMap<String, u64>) -> Vec<(String, u64)> {
    let mut v: Vec<_> = map.into_iter().collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    v
}

/// What a dictionary of these names takes ([`omnitrail_store::Dictionary::heap_bytes`]).
fn dictionary_bytes<'a>(names: impl Iterator<Item = &'a String>) -> u64 {
    names.map(|n| 2 * (n.len() as u64 + 24) + 8).sum()
}

/// The memory the columnar journeys of `summary`'s events take without properties
/// (`Journeys::heap_bytes`): per event its time and channel code and its activity code in
/// the width its partition's activities need; per customer its id and offset; per
/// partition an end offset and its dictionaries.
fn journey_bytes(summary: &EventSummary, customers: u64, partitions: u32) -> u64 {
    let per_partition: u64 = summary
        .partitions
        .values()
        .map(|c| {
            let events: u64 = c.activities.values().sum();
            let width = match c.activities.len() {
                0..=256 => 1,
                257..=65_536 => 2,
                _ => 4,
            };
            events * width
                + dictionary_bytes(c.channels.keys())
                + dictionary_bytes(c.activities.keys())
        })
        .sum();
    summary.events * (8 + 2) + customers * (8 + 4) + u64::from(partitions) * 4 + per_partition
}

/// Stats from a project's event counts ([`Store::event_summary`]) and its number of
/// customers: no event is read.
pub fn compute(
    store: &Store,
    config: &Config,
    project: ProjectId,
    summary: &EventSummary,
    customers: u64,
) -> Result<Stats, AppError> {
    let totals = summary.totals();
    let mut stages: Vec<(String, u64)> = config.stages.iter().map(|s| (s.clone(), 0)).collect();
    let mut unmapped = 0;
    for (activity, n) in &totals.activities {
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
        events: summary.events,
        customers,
        first_event: summary.min_ts.map(Timestamp::from_micros),
        last_event: summary.max_ts.map(Timestamp::from_micros),
        by_channel: by_count(totals.channels),
        by_activity: by_count(totals.activities),
        by_stage: stages,
        storage_bytes: store.storage_bytes(),
        segments: manifest
            .segments
            .iter()
            .filter(|s| s.project == project)
            .count() as u64,
        uncompacted_events: store.uncompacted_events() as u64,
        dead_letters: store.meta().dead_letter_count(project)?,
        journey_bytes_per_event: if summary.events == 0 {
            0.0
        } else {
            journey_bytes(summary, customers, manifest.partitions) as f64 / summary.events as f64
        },
    })
}
