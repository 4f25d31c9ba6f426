//! Lifecycle: how many customers are new, active, returning, quiet, at risk of churning or
//! dormant, period by period, and how they move between those states.
//!
//! Over each customer's whole journey (after the time range, the event filter and the
//! segment; the step dimension and case split do not apply). Periods are UTC calendar
//! months or ISO weeks (Monday to Monday) from the period of the first event to the period
//! of the **horizon** (the query's `to`, else just after the last event). A customer has a
//! state in every period from the one of their first event on, decided with what is known
//! at the period's end (the horizon, for the last period), exclusive and in this order:
//!
//! - **new**: their first event is in the period;
//! - **returning**: events in the period, and the first of them comes at least
//!   `dormant_after` after the customer's previous event;
//! - **active**: other customers with events in the period;
//! - **dormant**: no event in the period, and the last event lies at least `dormant_after`
//!   before the period's end;
//! - **churn_risk**: no event in the period, and the time since the last event exceeds
//!   `risk_factor` × the customer's mean gap between events so far (two events at least);
//! - **quiet**: the others without events in the period.
//!
//! Transitions count, over every pair of consecutive periods, customers by (state in the
//! first, state in the second).

use crate::case::Prepared;
use crate::query::{format_duration, CaseSplit, Query, StepDimension};
use crate::{EngineError, Stages};
use omnitrail_model::journeys::Journeys;
use omnitrail_model::Timestamp;
use serde::Serialize;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

const DAY: i64 = 86_400_000_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Period {
    Week,
    Month,
}

impl FromStr for Period {
    type Err = EngineError;
    fn from_str(s: &str) -> Result<Self, EngineError> {
        match s.trim() {
            "week" => Ok(Period::Week),
            "month" => Ok(Period::Month),
            other => Err(EngineError::InvalidOption {
                option: "period",
                reason: format!("unknown period '{other}' (expected week or month)"),
            }),
        }
    }
}

impl fmt::Display for Period {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Period::Week => "week",
            Period::Month => "month",
        })
    }
}

impl Period {
    /// The index of the period holding `ts` (months since year 0, or weeks since the
    /// Monday before the epoch).
    pub fn index(self, ts: i64) -> i64 {
        match self {
            Period::Month => {
                let (y, m, ..) = Timestamp::from_micros(ts).civil();
                y * 12 + i64::from(m) - 1
            }
            // 1970-01-01 was a Thursday: day -3 is a Monday.
            Period::Week => (ts.div_euclid(DAY) + 3).div_euclid(7),
        }
    }

    /// Start (µs) of the period with this index.
    pub fn start(self, index: i64) -> i64 {
        match self {
            Period::Month => {
                let y = index.div_euclid(12);
                let m = index.rem_euclid(12) as u32 + 1;
                Timestamp::from_civil(y, m, 1, 0, 0, 0, 0).map_or(i64::MAX, Timestamp::as_micros)
            }
            Period::Week => (index * 7 - 3) * DAY,
        }
    }

    /// `2025-03` for a month, the Monday `2025-03-03` for a week.
    pub fn label(self, index: i64) -> String {
        let (y, m, d, ..) = Timestamp::from_micros(self.start(index)).civil();
        match self {
            Period::Month => format!("{y:04}-{m:02}"),
            Period::Week => format!("{y:04}-{m:02}-{d:02}"),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LifecycleOptions {
    pub period: Period,
    /// No event for at least this long (µs) is dormancy.
    pub dormant_after: i64,
    /// Churn risk: quiet for more than this many times the customer's mean gap.
    pub risk_factor: f64,
}

impl Default for LifecycleOptions {
    fn default() -> Self {
        LifecycleOptions {
            period: Period::Month,
            dormant_after: 60 * DAY,
            risk_factor: 2.0,
        }
    }
}

/// Lifecycle states, in report order.
pub const STATES: [&str; 6] = [
    "new",
    "active",
    "returning",
    "quiet",
    "churn_risk",
    "dormant",
];
const NEW: usize = 0;
const ACTIVE: usize = 1;
const RETURNING: usize = 2;
const QUIET: usize = 3;
const CHURN_RISK: usize = 4;
const DORMANT: usize = 5;

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Lifecycle {
    pub period: Period,
    pub dormant_after: String,
    pub risk_factor: f64,
    pub totals: LifecycleTotals,
    pub periods: Vec<LifecyclePeriod>,
    /// Nonzero transitions, by customers descending, then from, to (in state order).
    pub transitions: Vec<Transition>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct LifecycleTotals {
    pub customers: u64,
    /// Customers dormant in at least one period.
    pub ever_dormant: u64,
    pub ever_returning: u64,
    pub ever_churn_risk: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LifecyclePeriod {
    /// `2025-03`, or a week's Monday `2025-03-03`.
    pub period: String,
    pub new: u64,
    pub active: u64,
    pub returning: u64,
    pub quiet: u64,
    pub churn_risk: u64,
    pub dormant: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Transition {
    pub from: String,
    pub to: String,
    pub customers: u64,
}

struct Partial {
    counts: Vec<[u64; 6]>,
    transitions: [[u64; 6]; 6],
    customers: u64,
    ever: [u64; 6],
}

/// Lifecycle states per period of the query's customers.
pub fn lifecycle(
    partitions: &[Arc<Journeys>],
    stages: &Stages,
    query: &Query,
    options: &LifecycleOptions,
) -> Result<Lifecycle, EngineError> {
    if options.dormant_after <= 0 {
        return Err(EngineError::InvalidOption {
            option: "dormant_after",
            reason: "must be longer than zero".to_string(),
        });
    }
    if !(options.risk_factor.is_finite() && options.risk_factor > 0.0) {
        return Err(EngineError::InvalidOption {
            option: "risk_factor",
            reason: "must be a number above zero".to_string(),
        });
    }
    let prepared = Prepared::with(
        partitions,
        stages,
        query,
        &StepDimension::Activity,
        &CaseSplit::Customer,
    )?;
    let (min, max) = prepared.fold_cases(
        || (i64::MAX, i64::MIN),
        |acc, case| {
            acc.0 = acc.0.min(case.ts(0));
            acc.1 = acc.1.max(case.ts(case.len() - 1));
        },
        |a, b| (a.0.min(b.0), a.1.max(b.1)),
    );
    let period = options.period;
    let empty = Lifecycle {
        period,
        dormant_after: format_duration(options.dormant_after),
        risk_factor: options.risk_factor,
        totals: LifecycleTotals::default(),
        periods: Vec::new(),
        transitions: Vec::new(),
    };
    if min > max {
        return Ok(empty);
    }
    let horizon = query
        .to
        .unwrap_or(max.saturating_add(1))
        .max(max.saturating_add(1));
    let first_period = period.index(min);
    let last_period = period.index(horizon - 1);
    let np = (last_period - first_period + 1) as usize;
    let starts: Vec<i64> = (first_period..=last_period + 1)
        .map(|i| period.start(i))
        .collect();
    let d = options.dormant_after;
    let risk = options.risk_factor;
    let p = prepared.fold_cases(
        || Partial {
            counts: vec![[0; 6]; np],
            transitions: [[0; 6]; 6],
            customers: 0,
            ever: [0; 6],
        },
        |acc, case| {
            acc.customers += 1;
            let n = case.len();
            let first = (period.index(case.ts(0)) - first_period) as usize;
            let mut seen = [false; 6];
            let mut prev_state = usize::MAX;
            let mut i = 0; // first event at or after the period's start
            for (pi, window) in starts.windows(2).enumerate().skip(first) {
                let (start, end) = (window[0], window[1]);
                while i < n && case.ts(i) < start {
                    i += 1;
                }
                let mut i1 = i;
                while i1 < n && case.ts(i1) < end {
                    i1 += 1;
                }
                let state = if i1 > i {
                    if pi == first {
                        NEW
                    } else if case.ts(i) - case.ts(i - 1) >= d {
                        RETURNING
                    } else {
                        ACTIVE
                    }
                } else {
                    let since = end.min(horizon) - case.ts(i - 1);
                    if since >= d {
                        DORMANT
                    } else if i >= 2
                        && since as f64
                            > risk * (case.ts(i - 1) - case.ts(0)) as f64 / (i - 1) as f64
                    {
                        CHURN_RISK
                    } else {
                        QUIET
                    }
                };
                acc.counts[pi][state] += 1;
                seen[state] = true;
                if prev_state != usize::MAX {
                    acc.transitions[prev_state][state] += 1;
                }
                prev_state = state;
                i = i1;
            }
            for (e, s) in acc.ever.iter_mut().zip(seen) {
                *e += u64::from(s);
            }
        },
        |mut a, b| {
            for (x, y) in a.counts.iter_mut().zip(&b.counts) {
                for s in 0..6 {
                    x[s] += y[s];
                }
            }
            for f in 0..6 {
                for t in 0..6 {
                    a.transitions[f][t] += b.transitions[f][t];
                }
            }
            for s in 0..6 {
                a.ever[s] += b.ever[s];
            }
            a.customers += b.customers;
            a
        },
    );
    let periods = p
        .counts
        .iter()
        .enumerate()
        .map(|(i, c)| LifecyclePeriod {
            period: period.label(first_period + i as i64),
            new: c[NEW],
            active: c[ACTIVE],
            returning: c[RETURNING],
            quiet: c[QUIET],
            churn_risk: c[CHURN_RISK],
            dormant: c[DORMANT],
        })
        .collect();
    let mut transitions: Vec<(usize, usize, u64)> = (0..6)
        .flat_map(|f| (0..6).map(move |t| (f, t)))
        .map(|(f, t)| (f, t, p.transitions[f][t]))
        .filter(|&(_, _, n)| n > 0)
        .collect();
    transitions.sort_by(|a, b| b.2.cmp(&a.2).then_with(|| (a.0, a.1).cmp(&(b.0, b.1))));
    Ok(Lifecycle {
        totals: LifecycleTotals {
            customers: p.customers,
            ever_dormant: p.ever[DORMANT],
            ever_returning: p.ever[RETURNING],
            ever_churn_risk: p.ever[CHURN_RISK],
        },
        periods,
        transitions: transitions
            .into_iter()
            .map(|(f, t, n)| Transition {
                from: STATES[f].to_string(),
                to: STATES[t].to_string(),
                customers: n,
            })
            .collect(),
        ..empty
    })
}
