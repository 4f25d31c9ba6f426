//! Channel switching: who jumps from which channel to which.
//!
//! Over each customer's whole journey (after the time range, the event filter and the
//! segment; the query's step dimension and case split do not apply), two consecutive events
//! on different channels are a switch `from → to` when the second comes at most `window`
//! after the first. Per pair: switches, distinct customers and the exact median gap. Per
//! channel: events and distinct customers, for context.

use crate::case::Prepared;
use crate::query::{format_duration, CaseSplit, Query, StepDimension};
use crate::stats::median_seconds;
use crate::{EngineError, Stages};
use omnitrail_model::journeys::Journeys;
use rayon::prelude::*;
use serde::Serialize;
use std::sync::Arc;

/// Channels up to this many get a dense pair table; more use a sorted list of pairs.
const DENSE_CHANNELS: usize = 256;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChannelOptions {
    /// Longest gap (µs) between two events that still counts as a switch; above 0.
    pub window: i64,
}

impl Default for ChannelOptions {
    fn default() -> Self {
        ChannelOptions {
            window: 24 * 3600 * 1_000_000,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ChannelSwitching {
    /// The window, e.g. `1d`.
    pub window: String,
    pub totals: ChannelTotals,
    /// Per channel, by events descending then name.
    pub channels: Vec<ChannelUse>,
    /// Per switch pair, by switches descending then from, to.
    pub switches: Vec<ChannelSwitch>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct ChannelTotals {
    pub events: u64,
    pub customers: u64,
    pub switches: u64,
    /// Customers with at least one switch.
    pub switching_customers: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ChannelUse {
    pub channel: String,
    pub events: u64,
    pub customers: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ChannelSwitch {
    pub from: String,
    pub to: String,
    pub switches: u64,
    pub customers: u64,
    pub median_gap_s: f64,
}

#[derive(Default)]
struct PairAcc {
    switches: u64,
    customers: u64,
    last_customer: u64,
    gaps: Vec<i64>,
}

struct Partial {
    n: usize,
    events: Vec<u64>,
    customers: Vec<u64>,
    last: Vec<u64>,
    /// Dense `from * n + to` when `n` is small, else keyed by that index.
    pairs: Vec<PairAcc>,
    sparse: std::collections::HashMap<usize, PairAcc>,
    total_customers: u64,
    switching_customers: u64,
}

impl Partial {
    fn new(n: usize) -> Partial {
        let dense = if n <= DENSE_CHANNELS { n * n } else { 0 };
        Partial {
            n,
            events: vec![0; n],
            customers: vec![0; n],
            last: vec![0; n],
            pairs: (0..dense).map(|_| PairAcc::default()).collect(),
            sparse: Default::default(),
            total_customers: 0,
            switching_customers: 0,
        }
    }

    fn pair(&mut self, index: usize) -> &mut PairAcc {
        if self.pairs.is_empty() {
            self.sparse.entry(index).or_default()
        } else {
            &mut self.pairs[index]
        }
    }

    fn merge(mut self, other: Partial) -> Partial {
        for c in 0..self.n {
            self.events[c] += other.events[c];
            self.customers[c] += other.customers[c];
        }
        for (a, b) in self.pairs.iter_mut().zip(other.pairs) {
            merge_pair(a, b);
        }
        for (k, b) in other.sparse {
            merge_pair(self.sparse.entry(k).or_default(), b);
        }
        self.total_customers += other.total_customers;
        self.switching_customers += other.switching_customers;
        self
    }
}

fn merge_pair(a: &mut PairAcc, b: PairAcc) {
    a.switches += b.switches;
    a.customers += b.customers;
    if a.gaps.len() < b.gaps.len() {
        let mut b_gaps = b.gaps;
        b_gaps.extend_from_slice(&a.gaps);
        a.gaps = b_gaps;
    } else {
        a.gaps.extend(b.gaps);
    }
}

/// The channel-switch matrix of the query's customers.
pub fn channel_switching(
    partitions: &[Arc<Journeys>],
    stages: &Stages,
    query: &Query,
    options: &ChannelOptions,
) -> Result<ChannelSwitching, EngineError> {
    if options.window <= 0 {
        return Err(EngineError::InvalidOption {
            option: "window",
            reason: "must be longer than zero".to_string(),
        });
    }
    let prepared = Prepared::with(
        partitions,
        stages,
        query,
        &StepDimension::Channel,
        &CaseSplit::Customer,
    )?;
    let names = prepared.step_names();
    let n = names.len();
    let window = options.window;
    let partial = prepared.fold_cases(
        || Partial::new(n),
        |p, case| {
            let stamp = Prepared::customer_stamp(case);
            p.total_customers += 1;
            for &c in case.steps {
                let c = c as usize;
                p.events[c] += 1;
                if p.last[c] != stamp {
                    p.last[c] = stamp;
                    p.customers[c] += 1;
                }
            }
            let mut switched = false;
            for k in 1..case.steps.len() {
                let (a, b) = (case.steps[k - 1] as usize, case.steps[k] as usize);
                if a == b {
                    continue;
                }
                let gap = case.ts(k) - case.ts(k - 1);
                if gap > window {
                    continue;
                }
                switched = true;
                let acc = p.pair(a * n + b);
                acc.switches += 1;
                if acc.last_customer != stamp {
                    acc.last_customer = stamp;
                    acc.customers += 1;
                }
                acc.gaps.push(gap);
            }
            p.switching_customers += u64::from(switched);
        },
        Partial::merge,
    );

    let mut channels: Vec<ChannelUse> = (0..n)
        .filter(|&c| partial.events[c] > 0)
        .map(|c| ChannelUse {
            channel: names[c].clone(),
            events: partial.events[c],
            customers: partial.customers[c],
        })
        .collect();
    channels.sort_by(|a, b| {
        b.events
            .cmp(&a.events)
            .then_with(|| a.channel.cmp(&b.channel))
    });
    let totals_events = partial.events.iter().sum();
    let pairs: Vec<(usize, PairAcc)> = if partial.pairs.is_empty() {
        partial.sparse.into_iter().collect()
    } else {
        partial
            .pairs
            .into_iter()
            .enumerate()
            .filter(|(_, p)| p.switches > 0)
            .collect()
    };
    let mut switches: Vec<ChannelSwitch> = pairs
        .into_par_iter()
        .map(|(i, mut acc)| ChannelSwitch {
            from: names[i / n].clone(),
            to: names[i % n].clone(),
            switches: acc.switches,
            customers: acc.customers,
            median_gap_s: median_seconds(&mut acc.gaps),
        })
        .collect();
    switches.sort_by(|a, b| {
        b.switches
            .cmp(&a.switches)
            .then_with(|| a.from.cmp(&b.from))
            .then_with(|| a.to.cmp(&b.to))
    });
    Ok(ChannelSwitching {
        window: format_duration(window),
        totals: ChannelTotals {
            events: totals_events,
            customers: partial.total_customers,
            switches: switches.iter().map(|s| s.switches).sum(),
            switching_customers: partial.switching_customers,
        },
        channels,
        switches,
    })
}
