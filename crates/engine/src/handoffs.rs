//! Handoffs: department-to-department transfers and how long they take.
//!
//! Within each case, the events carrying a `department` are taken in order; two consecutive
//! ones (events without a department may lie between them) whose departments differ are a
//! handoff `from → to` when the second comes at most `window` after the first. Per pair:
//! handoffs, distinct customers and the exact median time between the two events. Per
//! department: events, customers, handoffs out and in.

use crate::case::Prepared;
use crate::friction::signals::{text_codes, GlobalCodes, NONE};
use crate::query::format_duration;
use crate::stats::median_seconds;
use crate::EngineError;
use omnitrail_model::journeys::{Codes, ScanSpec};
use serde::Serialize;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HandoffOptions {
    /// Longest time (µs) between the two events of a handoff; above 0.
    pub window: i64,
}

impl Default for HandoffOptions {
    fn default() -> Self {
        HandoffOptions {
            window: 86_400_000_000,
        }
    }
}

/// The columns handoffs read.
pub fn handoffs_scan() -> ScanSpec {
    ScanSpec {
        properties: vec!["department".into()],
        traits: Vec::new(),
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Handoffs {
    pub case: String,
    pub window: String,
    pub totals: HandoffTotals,
    /// By events descending, then name.
    pub departments: Vec<Department>,
    /// By handoffs descending, then from, to.
    pub handoffs: Vec<Handoff>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct HandoffTotals {
    /// Events with a department.
    pub events: u64,
    pub customers: u64,
    pub handoffs: u64,
    pub customers_handed_off: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Department {
    pub department: String,
    pub events: u64,
    pub customers: u64,
    pub handoffs_out: u64,
    pub handoffs_in: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Handoff {
    pub from: String,
    pub to: String,
    pub handoffs: u64,
    pub customers: u64,
    pub median_s: f64,
}

#[derive(Clone, Default)]
struct Pair {
    count: u64,
    customers: u64,
    last: u64,
    gaps: Vec<i64>,
}

struct Partial {
    events: Vec<u64>,
    customers: Vec<u64>,
    last: Vec<u64>,
    pairs: Vec<Pair>,
    total_customers: u64,
    total_last: u64,
    handed: u64,
    handed_last: u64,
}

/// The department handoff matrix of the prepared query's cases.
pub fn handoffs(
    prepared: &Prepared<'_>,
    options: &HandoffOptions,
) -> Result<Handoffs, EngineError> {
    if options.window <= 0 {
        return Err(EngineError::InvalidOption {
            option: "window",
            reason: "must be longer than zero".to_string(),
        });
    }
    let partitions = prepared.partitions();
    let global = GlobalCodes::text(partitions, |j| j.properties.get("department"));
    let columns: Vec<Option<&Codes>> = partitions
        .iter()
        .map(|j| text_codes(j.properties.get("department")))
        .collect();
    let n = global.names.len();
    let window = options.window;
    let p = prepared.fold_cases(
        || Partial {
            events: vec![0; n],
            customers: vec![0; n],
            last: vec![0; n],
            pairs: vec![Pair::default(); n * n],
            total_customers: 0,
            total_last: 0,
            handed: 0,
            handed_last: 0,
        },
        |acc, case| {
            let Some(col) = columns[case.partition_index] else {
                return;
            };
            let table = &global.tables[case.partition_index];
            let stamp = Prepared::customer_stamp(case);
            let mut prev: Option<(usize, i64)> = None;
            for (k, &e) in case.events.iter().enumerate() {
                let d = table[col.get(e as usize) as usize];
                if d == NONE {
                    continue;
                }
                let d = d as usize;
                let t = case.ts(k);
                acc.events[d] += 1;
                if acc.last[d] != stamp {
                    acc.last[d] = stamp;
                    acc.customers[d] += 1;
                }
                if acc.total_last != stamp {
                    acc.total_last = stamp;
                    acc.total_customers += 1;
                }
                if let Some((from, at)) = prev {
                    if from != d && t - at <= window {
                        let pair = &mut acc.pairs[from * n + d];
                        pair.count += 1;
                        pair.gaps.push(t - at);
                        if pair.last != stamp {
                            pair.last = stamp;
                            pair.customers += 1;
                        }
                        if acc.handed_last != stamp {
                            acc.handed_last = stamp;
                            acc.handed += 1;
                        }
                    }
                }
                prev = Some((d, t));
            }
        },
        |mut a, b| {
            for i in 0..n {
                a.events[i] += b.events[i];
                a.customers[i] += b.customers[i];
            }
            for (x, y) in a.pairs.iter_mut().zip(b.pairs) {
                x.count += y.count;
                x.customers += y.customers;
                x.gaps.extend(y.gaps);
            }
            a.total_customers += b.total_customers;
            a.handed += b.handed;
            a
        },
    );
    let mut out_in = vec![(0u64, 0u64); n];
    let mut list = Vec::new();
    for (i, mut pair) in p.pairs.into_iter().enumerate() {
        if pair.count == 0 {
            continue;
        }
        let (from, to) = (i / n, i % n);
        out_in[from].0 += pair.count;
        out_in[to].1 += pair.count;
        list.push(Handoff {
            from: global.names[from].clone(),
            to: global.names[to].clone(),
            handoffs: pair.count,
            customers: pair.customers,
            median_s: median_seconds(&mut pair.gaps),
        });
    }
    list.sort_by(|a, b| {
        b.handoffs
            .cmp(&a.handoffs)
            .then_with(|| a.from.cmp(&b.from))
            .then_with(|| a.to.cmp(&b.to))
    });
    let mut departments: Vec<Department> = (0..n)
        .filter(|&d| p.events[d] > 0)
        .map(|d| Department {
            department: global.names[d].clone(),
            events: p.events[d],
            customers: p.customers[d],
            handoffs_out: out_in[d].0,
            handoffs_in: out_in[d].1,
        })
        .collect();
    departments.sort_by(|a, b| {
        b.events
            .cmp(&a.events)
            .then_with(|| a.department.cmp(&b.department))
    });
    Ok(Handoffs {
        case: prepared.case_split().to_string(),
        window: format_duration(window),
        totals: HandoffTotals {
            events: p.events.iter().sum(),
            customers: p.total_customers,
            handoffs: list.iter().map(|h| h.handoffs).sum(),
            customers_handed_off: p.handed,
        },
        departments,
        handoffs: list,
    })
}
