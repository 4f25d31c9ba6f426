//! Friction: the steps where customers fail, repeat, wait, jump channel, turn negative or
//! give up, ranked by a transparent score with evidence and root causes.
//!
//! Per event of a case (definitions in `docs/diagnostics.md`, windows in [`SignalParams`]):
//!
//! - **failure**: outcome `failure`;
//! - **repeat contact**: an assisted contact (an event on an assisted channel carrying an
//!   outcome and a topic) followed in the case by another assisted contact on the same topic
//!   within the repeat window — the first-contact-resolution miss;
//! - **loop**: the same step occurred earlier in the case within the loop window;
//! - **channel jump**: a failure followed by an event on another channel within the jump
//!   window;
//! - **abandonment**: the case ends within the abandonment window after the event and
//!   neither the event nor any later one of the case is a goal (outcome success or
//!   resolved, or a configured goal activity);
//! - **long wait**: `wait_seconds` above the long-wait factor times the median wait of the
//!   event's channel (over the query's events);
//! - **negative sentiment**: `sentiment` below the threshold.
//!
//! Per step, each signal's **rate** is its flagged events over its eligible events (repeat
//! contacts over assisted contacts, long waits over events with a wait, negative sentiment
//! over events with a sentiment, the others over all events of the step). **Severity** is
//! the weighted sum of the rates and the **score** is severity × affected customers
//! (customers with at least one flagged event at the step): how much friction, times how
//! many people meet it.

pub(crate) mod signals;

use crate::case::Prepared;
use crate::query::format_duration;
use crate::root_cause::{
    root_causes, CustomerLabels, RootCause, RootCauseDimension, RootCauseOptions,
};
use crate::stats::{micros_to_seconds, quantile};
use crate::EngineError;
use omnitrail_model::journeys::ScanSpec;
use serde::Serialize;
pub use signals::SignalParams;
use signals::*;

/// Signal weights in the severity; all ≥ 0.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct FrictionWeights {
    pub failure: f64,
    pub repeat_contact: f64,
    pub loops: f64,
    pub channel_jump: f64,
    pub abandonment: f64,
    pub long_wait: f64,
    pub negative_sentiment: f64,
}

impl Default for FrictionWeights {
    /// Outcomes customers feel directly weigh 1; loops and abandonment, which also mark
    /// harmless retries and the natural end of a visit, weigh half.
    fn default() -> Self {
        FrictionWeights {
            failure: 1.0,
            repeat_contact: 1.0,
            loops: 0.5,
            channel_jump: 1.0,
            abandonment: 0.5,
            long_wait: 1.0,
            negative_sentiment: 1.0,
        }
    }
}

impl FrictionWeights {
    pub(crate) fn as_array(&self) -> [f64; 7] {
        [
            self.failure,
            self.repeat_contact,
            self.loops,
            self.channel_jump,
            self.abandonment,
            self.long_wait,
            self.negative_sentiment,
        ]
    }

    /// Sets one weight written as `SIGNAL=WEIGHT` (e.g. `long_wait=2`), as the CLI's
    /// `--weight` and the API's `weight` parameter take it.
    pub fn set_text(&mut self, text: &str) -> Result<(), EngineError> {
        let bad = |reason: String| EngineError::InvalidOption {
            option: "weight",
            reason,
        };
        let (signal, weight) = text
            .split_once('=')
            .ok_or_else(|| bad(format!("expected SIGNAL=WEIGHT, got '{text}'")))?;
        let weight: f64 = weight
            .trim()
            .parse()
            .map_err(|_| bad(format!("{text}: '{}' is not a number", weight.trim())))?;
        self.set(signal.trim(), weight)
    }

    /// Sets one weight by its signal name (as in the JSON and `[friction.weights]`).
    pub fn set(&mut self, signal: &str, weight: f64) -> Result<(), EngineError> {
        if !(weight.is_finite() && weight >= 0.0) {
            return Err(EngineError::InvalidOption {
                option: "weights",
                reason: format!("weight of {signal} must be a number ≥ 0, got {weight}"),
            });
        }
        let slot = match signal {
            "failure" => &mut self.failure,
            "repeat_contact" => &mut self.repeat_contact,
            "loops" => &mut self.loops,
            "channel_jump" => &mut self.channel_jump,
            "abandonment" => &mut self.abandonment,
            "long_wait" => &mut self.long_wait,
            "negative_sentiment" => &mut self.negative_sentiment,
            other => {
                return Err(EngineError::InvalidOption {
                    option: "weights",
                    reason: format!(
                        "unknown signal '{other}' (expected one of {})",
                        SIGNAL_NAMES.join(", ")
                    ),
                })
            }
        };
        *slot = weight;
        Ok(())
    }
}

/// The signal names, in report order.
pub const SIGNAL_NAMES: [&str; 7] = [
    "failure",
    "repeat_contact",
    "loops",
    "channel_jump",
    "abandonment",
    "long_wait",
    "negative_sentiment",
];

#[derive(Clone, Debug, PartialEq)]
pub struct FrictionOptions {
    pub signals: SignalParams,
    pub weights: FrictionWeights,
    /// How many points to list (the best-scored).
    pub top: usize,
    /// Root causes are computed for this many of the top points.
    pub explain: usize,
    pub root_cause: RootCauseOptions,
}

impl Default for FrictionOptions {
    fn default() -> Self {
        FrictionOptions {
            signals: SignalParams::default(),
            weights: FrictionWeights::default(),
            top: 20,
            explain: 5,
            root_cause: RootCauseOptions::default(),
        }
    }
}

/// The columns friction reads: the signals' properties plus, when root causes are asked
/// for (`explain > 0`), the candidate properties and traits.
pub fn friction_scan(options: &FrictionOptions) -> ScanSpec {
    let mut properties: Vec<String> = SIGNAL_PROPERTIES.map(String::from).to_vec();
    let explain = options.explain > 0;
    if explain {
        properties.extend(options.root_cause.properties.iter().cloned());
    }
    properties.sort();
    properties.dedup();
    let mut traits = if explain {
        options.root_cause.traits.clone()
    } else {
        Vec::new()
    };
    traits.sort();
    traits.dedup();
    ScanSpec { properties, traits }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Friction {
    /// The step dimension, e.g. `touchpoint`.
    pub step: String,
    pub case: String,
    pub settings: FrictionSettings,
    pub totals: FrictionTotals,
    /// Ranked by score (descending), then step name; only steps with a score above zero.
    pub points: Vec<FrictionPoint>,
    /// The candidate root-cause dimensions and whether each was used; empty when no point
    /// is explained.
    pub root_cause_dimensions: Vec<RootCauseDimension>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FrictionSettings {
    pub weights: FrictionWeights,
    pub repeat_window: String,
    pub loop_window: String,
    pub jump_window: String,
    pub abandon_window: String,
    pub long_wait_factor: f64,
    pub negative_sentiment: f64,
    pub assisted_channels: Vec<String>,
    pub goal_activities: Vec<String>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct FrictionTotals {
    pub events: u64,
    pub customers: u64,
    pub steps: u64,
    /// Steps with a score above zero.
    pub friction_points: u64,
    /// Customers with at least one flagged event anywhere.
    pub affected_customers: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FrictionPoint {
    pub rank: usize,
    /// The step as the dimension names it, e.g. `mobile_app:login_failed`.
    pub step: String,
    pub score: f64,
    pub severity: f64,
    pub events: u64,
    pub customers: u64,
    pub affected_customers: u64,
    pub signals: FrictionSignals,
    /// p90 of the step's `wait_seconds`.
    pub wait_p90_s: Option<f64>,
    /// The norm it is compared with: the mean, over the step's events with a wait, of
    /// their channel's median wait (the channel's median when the step has one channel).
    pub wait_norm_s: Option<f64>,
    /// `wait_p90_s / wait_norm_s`.
    pub wait_ratio: Option<f64>,
    pub mean_sentiment: Option<f64>,
    /// Up to five affected customers, smallest ids first.
    pub examples: Vec<u64>,
    /// Over-represented values among the affected (only for the first `explain` points).
    pub root_causes: Vec<RootCause>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct FrictionSignals {
    pub failure: Signal,
    pub repeat_contact: Signal,
    pub loops: Signal,
    pub channel_jump: Signal,
    pub abandonment: Signal,
    pub long_wait: Signal,
    pub negative_sentiment: Signal,
}

impl FrictionSignals {
    /// Each signal in [`SIGNAL_NAMES`] order.
    pub fn as_array(&self) -> [&Signal; 7] {
        [
            &self.failure,
            &self.repeat_contact,
            &self.loops,
            &self.channel_jump,
            &self.abandonment,
            &self.long_wait,
            &self.negative_sentiment,
        ]
    }

    /// The signal that adds the most to the severity (weight × rate), the first in
    /// [`SIGNAL_NAMES`] order on a tie; `None` when nothing is flagged.
    pub fn strongest(&self, weights: &FrictionWeights) -> Option<&'static str> {
        let mut best: Option<(&'static str, f64)> = None;
        for ((name, w), s) in SIGNAL_NAMES
            .iter()
            .zip(weights.as_array())
            .zip(self.as_array())
        {
            let part = w * s.rate;
            if part > 0.0 && best.is_none_or(|(_, b)| part > b) {
                best = Some((name, part));
            }
        }
        best.map(|(name, _)| name)
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Signal {
    /// Flagged events.
    pub events: u64,
    /// Events the rate is over.
    pub eligible: u64,
    pub rate: f64,
    /// Distinct customers with a flagged event.
    pub customers: u64,
}

/// A step's counters; merged partials add up.
#[derive(Clone, Debug, Default)]
pub(crate) struct StepAcc {
    pub events: u64,
    pub customers: u64,
    last_customer: u64,
    pub flagged: [u64; 7],
    pub signal_customers: [u64; 7],
    signal_last: [u64; 7],
    pub affected_customers: u64,
    affected_last: u64,
    pub contacts: u64,
    pub with_wait: u64,
    pub with_sentiment: u64,
    pub goal_events: u64,
    pub positive: u64,
    pub sentiment_sum: i128,
    /// Sum of twice the channel medians (µs) of the events with a wait, for the norm: a
    /// median of whole microseconds is a multiple of ½, so twice it is an exact integer
    /// and the sum does not depend on how the work was split.
    norm_sum: i128,
    pub waits: Vec<i64>,
    pub examples: Vec<u64>,
}

/// Keeps the five smallest distinct ids.
fn add_example(examples: &mut Vec<u64>, id: u64) {
    if examples.len() == 5 && id >= examples[4] {
        return;
    }
    if let Err(at) = examples.binary_search(&id) {
        examples.insert(at, id);
        examples.truncate(5);
    }
}

impl StepAcc {
    fn merge(&mut self, o: StepAcc) {
        self.events += o.events;
        self.customers += o.customers;
        for i in 0..7 {
            self.flagged[i] += o.flagged[i];
            self.signal_customers[i] += o.signal_customers[i];
        }
        self.affected_customers += o.affected_customers;
        self.contacts += o.contacts;
        self.with_wait += o.with_wait;
        self.with_sentiment += o.with_sentiment;
        self.goal_events += o.goal_events;
        self.positive += o.positive;
        self.sentiment_sum += o.sentiment_sum;
        self.norm_sum += o.norm_sum;
        self.waits.extend(o.waits);
        for id in o.examples {
            add_example(&mut self.examples, id);
        }
    }
}

struct Partial {
    steps: Vec<StepAcc>,
    events: u64,
    customers: u64,
    last_customer: u64,
    affected: u64,
    affected_last: u64,
    buf: CaseBuf,
}

/// Per-step signal counters over every case of the query.
pub(crate) fn step_stats(
    prepared: &Prepared<'_>,
    signals: &Signals<'_>,
) -> (Vec<StepAcc>, FrictionTotals) {
    let n = prepared.step_names().len();
    let medians = &signals.channel_median_wait;
    let p = prepared.fold_cases(
        || Partial {
            steps: vec![StepAcc::default(); n],
            events: 0,
            customers: 0,
            last_customer: 0,
            affected: 0,
            affected_last: 0,
            buf: CaseBuf::default(),
        },
        |acc, case| {
            signals.flags(case, &mut acc.buf);
            let stamp = Prepared::customer_stamp(case);
            if acc.last_customer != stamp {
                acc.last_customer = stamp;
                acc.customers += 1;
            }
            acc.events += case.events.len() as u64;
            let part = &signals.parts[case.partition_index];
            let j = case.journeys;
            for (k, (&e, &s)) in case.events.iter().zip(case.steps).enumerate() {
                let f = acc.buf.flags[k];
                let st = &mut acc.steps[s as usize];
                st.events += 1;
                if st.last_customer != stamp {
                    st.last_customer = stamp;
                    st.customers += 1;
                }
                st.contacts += u64::from(f & CONTACT != 0);
                st.goal_events += u64::from(f & GOAL != 0);
                if f & HAS_SENTIMENT != 0 {
                    st.with_sentiment += 1;
                    st.positive += u64::from(f & POSITIVE != 0);
                    let v = part.sentiment.map_or(0.0, |c| c.get(e as usize));
                    st.sentiment_sum += i128::from(fixed_sentiment(v));
                }
                if f & HAS_WAIT != 0 {
                    st.with_wait += 1;
                    let v = part.wait.map_or(0.0, |c| c.get(e as usize));
                    st.waits.push(seconds_to_micros(v));
                    let g = part.channel_global[j.channel[e as usize] as usize] as usize;
                    st.norm_sum += (medians[g].unwrap_or(0.0) * 2.0).round() as i128;
                }
                if f & ANY_SIGNAL == 0 {
                    continue;
                }
                for (i, bit) in SIGNAL_BITS.iter().enumerate() {
                    if f & bit != 0 {
                        st.flagged[i] += 1;
                        if st.signal_last[i] != stamp {
                            st.signal_last[i] = stamp;
                            st.signal_customers[i] += 1;
                        }
                    }
                }
                if st.affected_last != stamp {
                    st.affected_last = stamp;
                    st.affected_customers += 1;
                    add_example(&mut st.examples, case.customer.0);
                }
                if acc.affected_last != stamp {
                    acc.affected_last = stamp;
                    acc.affected += 1;
                }
            }
        },
        |mut a, b| {
            for (x, y) in a.steps.iter_mut().zip(b.steps) {
                x.merge(y);
            }
            a.events += b.events;
            a.customers += b.customers;
            a.affected += b.affected;
            a
        },
    );
    let totals = FrictionTotals {
        events: p.events,
        customers: p.customers,
        steps: p.steps.iter().filter(|s| s.events > 0).count() as u64,
        friction_points: 0,
        affected_customers: p.affected,
    };
    (p.steps, totals)
}

fn rate(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

impl StepAcc {
    /// Eligible events per signal, in [`SIGNAL_NAMES`] order.
    fn eligible(&self) -> [u64; 7] {
        [
            self.events,
            self.contacts,
            self.events,
            self.events,
            self.events,
            self.with_wait,
            self.with_sentiment,
        ]
    }

    /// Each signal's rate, in [`SIGNAL_NAMES`] order.
    pub(crate) fn rates(&self) -> [f64; 7] {
        let eligible = self.eligible();
        std::array::from_fn(|i| rate(self.flagged[i], eligible[i]))
    }

    pub(crate) fn severity(&self, weights: &FrictionWeights) -> f64 {
        let rates = self.rates();
        weights
            .as_array()
            .iter()
            .zip(rates)
            .map(|(w, r)| w * r)
            .sum()
    }

    pub(crate) fn score(&self, weights: &FrictionWeights) -> f64 {
        self.severity(weights) * self.affected_customers as f64
    }

    pub(crate) fn mean_sentiment(&self) -> Option<f64> {
        (self.with_sentiment > 0)
            .then(|| self.sentiment_sum as f64 / SENTIMENT_SCALE / self.with_sentiment as f64)
    }

    fn point(&mut self, step: &str, weights: &FrictionWeights) -> FrictionPoint {
        let eligible = self.eligible();
        let sig = |i: usize| Signal {
            events: self.flagged[i],
            eligible: eligible[i],
            rate: rate(self.flagged[i], eligible[i]),
            customers: self.signal_customers[i],
        };
        let signals = FrictionSignals {
            failure: sig(0),
            repeat_contact: sig(1),
            loops: sig(2),
            channel_jump: sig(3),
            abandonment: sig(4),
            long_wait: sig(5),
            negative_sentiment: sig(6),
        };
        let p90 = quantile(&mut self.waits, 0.9).map(micros_to_seconds);
        let norm = (self.with_wait > 0)
            .then(|| micros_to_seconds(self.norm_sum as f64 / 2.0 / self.with_wait as f64));
        let ratio = match (p90, norm) {
            (Some(p), Some(n)) if n > 0.0 => Some(p / n),
            _ => None,
        };
        FrictionPoint {
            rank: 0,
            step: step.to_string(),
            score: self.score(weights),
            severity: self.severity(weights),
            events: self.events,
            customers: self.customers,
            affected_customers: self.affected_customers,
            signals,
            wait_p90_s: p90,
            wait_norm_s: norm,
            wait_ratio: ratio,
            mean_sentiment: self.mean_sentiment(),
            examples: self.examples.clone(),
            root_causes: Vec::new(),
        }
    }
}

/// Step codes with a score above zero, best first (score descending, then name).
pub(crate) fn ranked(stats: &[StepAcc], names: &[String], weights: &FrictionWeights) -> Vec<u32> {
    let mut codes: Vec<(u32, f64)> = stats
        .iter()
        .enumerate()
        .map(|(i, s)| (i as u32, s.score(weights)))
        .filter(|&(_, score)| score > 0.0)
        .collect();
    codes.sort_by(|a, b| {
        b.1.total_cmp(&a.1)
            .then_with(|| names[a.0 as usize].cmp(&names[b.0 as usize]))
    });
    codes.into_iter().map(|(c, _)| c).collect()
}

pub(crate) fn validate(options: &FrictionOptions) -> Result<(), EngineError> {
    options.signals.validate()?;
    for (name, w) in SIGNAL_NAMES.iter().zip(options.weights.as_array()) {
        if !(w.is_finite() && w >= 0.0) {
            return Err(EngineError::InvalidOption {
                option: "weights",
                reason: format!("weight of {name} must be a number ≥ 0, got {w}"),
            });
        }
    }
    Ok(())
}

/// Friction points of the prepared query, ranked, with root causes for the first
/// `options.explain`. `extra` adds customer-level root-cause dimensions (e.g. personas).
pub fn friction(
    prepared: &Prepared<'_>,
    options: &FrictionOptions,
    extra: &[CustomerLabels],
) -> Result<Friction, EngineError> {
    validate(options)?;
    let signals = Signals::new(prepared, &options.signals);
    let (mut stats, mut totals) = step_stats(prepared, &signals);
    let names = prepared.step_names();
    let order = ranked(&stats, names, &options.weights);
    totals.friction_points = order.len() as u64;
    let listed: Vec<u32> = order.iter().copied().take(options.top).collect();
    let explained: Vec<u32> = listed.iter().copied().take(options.explain).collect();
    // Without points to explain the candidate columns are not loaded (see friction_scan).
    let (causes, dimensions) = if explained.is_empty() {
        (Vec::new(), Vec::new())
    } else {
        root_causes(prepared, &signals, &explained, &options.root_cause, extra)
    };
    let mut points: Vec<FrictionPoint> = listed
        .iter()
        .enumerate()
        .map(|(i, &c)| {
            let mut p = stats[c as usize].point(&names[c as usize], &options.weights);
            p.rank = i + 1;
            p
        })
        .collect();
    for (p, c) in points.iter_mut().zip(causes) {
        p.root_causes = c;
    }
    let s = &options.signals;
    Ok(Friction {
        step: prepared.step_dimension().to_string(),
        case: prepared.case_split().to_string(),
        settings: FrictionSettings {
            weights: options.weights,
            repeat_window: format_duration(s.repeat_window),
            loop_window: format_duration(s.loop_window),
            jump_window: format_duration(s.jump_window),
            abandon_window: format_duration(s.abandon_window),
            long_wait_factor: s.long_wait_factor,
            negative_sentiment: s.negative_sentiment,
            assisted_channels: s.assisted_channels.clone(),
            goal_activities: s.goal_activities.clone(),
        },
        totals,
        points,
        root_cause_dimensions: dimensions,
    })
}
