//! Per-event friction signals, shared by friction, root cause, channel performance and the
//! journey-map grid.
//!
//! [`Signals::new`] resolves, once per partition, the columns and small lookup tables the
//! signals need (outcome class per dictionary code, assisted and bot channels and goal
//! activities per code, the long-wait threshold per channel) and runs the one extra pass the
//! long-wait signal needs (each channel's median wait). [`Signals::flags`] then marks every
//! event of a case with a bit set in a reusable buffer: two linear passes over the case, no
//! allocation and no string compare per event.

use crate::case::{Case, Prepared};
use crate::stats::quantile;
use omnitrail_model::journeys::{Codes, Journeys, Nums, PropertyColumn};
use omnitrail_model::Outcome;
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

/// Signal bits: the event failed (outcome `failure`).
pub(crate) const FAILURE: u16 = 1;
/// An assisted contact followed by another on the same topic within the repeat window.
pub(crate) const REPEAT: u16 = 1 << 1;
/// The same step occurred earlier in the case within the loop window.
pub(crate) const LOOP: u16 = 1 << 2;
/// A failure followed by an event on another channel within the jump window.
pub(crate) const JUMP: u16 = 1 << 3;
/// The case ends within the abandonment window after the event, with no goal from it on.
pub(crate) const ABANDON: u16 = 1 << 4;
/// `wait_seconds` above the long-wait factor times the channel's median wait.
pub(crate) const LONG_WAIT: u16 = 1 << 5;
/// `sentiment` below the negative threshold.
pub(crate) const NEGATIVE: u16 = 1 << 6;
/// Outcome success or resolved (a goal by outcome, not by activity).
pub(crate) const RESOLVED: u16 = 1 << 7;
/// Any of the seven signals.
pub(crate) const ANY_SIGNAL: u16 = 0x7f;
/// Evidence bits: an assisted contact (assisted channel, outcome and topic).
pub(crate) const CONTACT: u16 = 1 << 8;
pub(crate) const HAS_WAIT: u16 = 1 << 9;
pub(crate) const HAS_SENTIMENT: u16 = 1 << 10;
/// A goal event: outcome success or resolved, or a configured goal activity.
pub(crate) const GOAL: u16 = 1 << 11;
/// `sentiment` above the positive threshold.
pub(crate) const POSITIVE: u16 = 1 << 12;
pub(crate) const HAS_OUTCOME: u16 = 1 << 13;
/// An event on a bot channel (chatbot, IVR).
pub(crate) const BOT: u16 = 1 << 14;
/// An event on an assisted (human) channel, whether or not it is a contact.
pub(crate) const ASSISTED_CHANNEL: u16 = 1 << 15;

/// The seven signals in report order, with their bits.
pub(crate) const SIGNAL_BITS: [u16; 7] =
    [FAILURE, REPEAT, LOOP, JUMP, ABANDON, LONG_WAIT, NEGATIVE];

/// Fixed-point scale for sentiment sums: integer sums are exact and so independent of how
/// the work was split (f64 sums are not associative).
pub(crate) const SENTIMENT_SCALE: f64 = 1e9;

pub(crate) fn fixed_sentiment(v: f64) -> i64 {
    (v * SENTIMENT_SCALE).round() as i64
}

/// Seconds to whole microseconds, so waits go through the integer quantile code.
pub(crate) fn seconds_to_micros(v: f64) -> i64 {
    (v * 1e6).round() as i64
}

/// Outcome classes per dictionary code.
const NO_OUTCOME: u8 = 0;
const OUTCOME_FAILURE: u8 = 1;
const OUTCOME_GOAL: u8 = 2;
const OUTCOME_OTHER: u8 = 3;

/// What the signals are measured with.
#[derive(Clone, Debug, PartialEq)]
pub struct SignalParams {
    /// Repeat contact: the next assisted contact on the same topic within this (µs).
    pub repeat_window: i64,
    /// Loop: the same step again within this (µs).
    pub loop_window: i64,
    /// Channel jump: another channel within this after a failure (µs).
    pub jump_window: i64,
    /// Abandonment: the case ends within this after the event (µs).
    pub abandon_window: i64,
    /// Long wait: `wait_seconds` above this many times the channel's median wait.
    pub long_wait_factor: f64,
    /// Negative sentiment: below this.
    pub negative_sentiment: f64,
    /// Positive sentiment (journey-map opportunities): above this.
    pub positive_sentiment: f64,
    /// Channels whose contacts are human-assisted.
    pub assisted_channels: Vec<String>,
    /// Channels that are bots (chatbot, IVR).
    pub bot_channels: Vec<String>,
    /// Activities that count as reaching a goal, besides outcome success or resolved.
    pub goal_activities: Vec<String>,
}

const MINUTE: i64 = 60_000_000;
const HOUR: i64 = 60 * MINUTE;
const DAY: i64 = 24 * HOUR;

impl Default for SignalParams {
    fn default() -> Self {
        SignalParams {
            repeat_window: 7 * DAY,
            loop_window: HOUR,
            jump_window: HOUR,
            abandon_window: HOUR,
            long_wait_factor: 3.0,
            negative_sentiment: -0.3,
            positive_sentiment: 0.3,
            assisted_channels: ["phone", "chat", "store"].map(String::from).to_vec(),
            bot_channels: ["chatbot", "ivr"].map(String::from).to_vec(),
            goal_activities: Vec::new(),
        }
    }
}

impl SignalParams {
    /// Checks the windows and thresholds; `what` names the analysis in errors.
    pub(crate) fn validate(&self) -> Result<(), crate::EngineError> {
        let bad = |option: &'static str, reason: &str| crate::EngineError::InvalidOption {
            option,
            reason: reason.to_string(),
        };
        for (option, w) in [
            ("repeat_window", self.repeat_window),
            ("loop_window", self.loop_window),
            ("jump_window", self.jump_window),
            ("abandon_window", self.abandon_window),
        ] {
            if w <= 0 {
                return Err(bad(option, "must be longer than zero"));
            }
        }
        if !(self.long_wait_factor.is_finite() && self.long_wait_factor > 0.0) {
            return Err(bad("long_wait_factor", "must be a number above zero"));
        }
        if !(-1.0..=1.0).contains(&self.negative_sentiment) {
            return Err(bad("negative_sentiment", "must be in [-1, 1]"));
        }
        if !(-1.0..=1.0).contains(&self.positive_sentiment) {
            return Err(bad("positive_sentiment", "must be in [-1, 1]"));
        }
        Ok(())
    }
}

/// One sorted alphabet over every partition and each partition's table from its local codes.
pub(crate) struct GlobalCodes {
    pub names: Vec<String>,
    /// `tables[partition][local code]` = global code, or `u32::MAX` for no value.
    pub tables: Vec<Vec<u32>>,
}

pub(crate) const NONE: u32 = u32::MAX;

impl GlobalCodes {
    /// `values(j)` lists partition `j`'s local values in code order; `None` entries (such
    /// as code 0, "missing", of a text property) map to [`NONE`].
    pub(crate) fn build<'j>(
        partitions: &'j [Arc<Journeys>],
        values: impl Fn(&'j Journeys) -> Vec<Option<&'j str>>,
    ) -> GlobalCodes {
        let local: Vec<Vec<Option<&str>>> = partitions.iter().map(|j| values(j)).collect();
        let names: Vec<String> = local
            .iter()
            .flatten()
            .flatten()
            .copied()
            .collect::<BTreeSet<&str>>()
            .into_iter()
            .map(str::to_string)
            .collect();
        let index: HashMap<&str, u32> = names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.as_str(), i as u32))
            .collect();
        let tables = local
            .iter()
            .map(|vals| vals.iter().map(|v| v.map_or(NONE, |v| index[v])).collect())
            .collect();
        GlobalCodes { names, tables }
    }

    /// Global channel codes.
    pub(crate) fn channels(partitions: &[Arc<Journeys>]) -> GlobalCodes {
        GlobalCodes::build(partitions, |j| {
            j.channels.values.iter().map(|v| Some(v.as_str())).collect()
        })
    }

    /// Global codes of a text column (a property or a trait); partitions without it, or
    /// with a numeric column of that name, contribute nothing.
    pub(crate) fn text(
        partitions: &[Arc<Journeys>],
        column: impl Fn(&Journeys) -> Option<&PropertyColumn>,
    ) -> GlobalCodes {
        GlobalCodes::build(partitions, |j| match column(j) {
            Some(PropertyColumn::Text { dict, .. }) => std::iter::once(None)
                .chain(dict.values.iter().map(|v| Some(v.as_str())))
                .collect(),
            _ => Vec::new(),
        })
    }
}

/// A text column's codes, if the partition has it as text.
pub(crate) fn text_codes(col: Option<&PropertyColumn>) -> Option<&Codes> {
    match col {
        Some(PropertyColumn::Text { codes, .. }) => Some(codes),
        _ => None,
    }
}

/// A numeric column's values, if the partition has it as numbers.
pub(crate) fn num_values(col: Option<&PropertyColumn>) -> Option<&Nums> {
    match col {
        Some(PropertyColumn::Num(v)) => Some(v),
        _ => None,
    }
}

/// One partition's resolved columns and tables.
pub(crate) struct PartSignals<'j> {
    outcome: Option<&'j Codes>,
    outcome_class: Vec<u8>,
    pub topic: Option<&'j Codes>,
    topics: usize,
    pub sentiment: Option<&'j Nums>,
    pub wait: Option<&'j Nums>,
    /// `duration_seconds` (handle time), when loaded.
    pub duration: Option<&'j Nums>,
    assisted: Vec<bool>,
    bot: Vec<bool>,
    goal_activity: Vec<bool>,
    /// Local channel code → global channel code.
    pub channel_global: Vec<u32>,
    /// Local channel code → the wait (seconds) above which a wait is long.
    wait_threshold: Vec<f64>,
}

/// The signals bound to prepared partitions.
pub(crate) struct Signals<'a> {
    pub params: SignalParams,
    pub parts: Vec<PartSignals<'a>>,
    pub channels: GlobalCodes,
    /// Median wait (µs) per global channel, `None` where no event of it has a wait.
    pub channel_median_wait: Vec<Option<f64>>,
    steps: usize,
    max_topics: usize,
}

/// Reusable per-fold buffers for [`Signals::flags`].
#[derive(Default)]
pub(crate) struct CaseBuf {
    pub flags: Vec<u16>,
    next_diff: Vec<u32>,
    topic_next: Vec<i64>,
    topic_case: Vec<u64>,
    step_last: Vec<i64>,
    step_case: Vec<u64>,
    case_no: u64,
}

impl<'a> Signals<'a> {
    pub(crate) fn new(prepared: &Prepared<'a>, params: &SignalParams) -> Signals<'a> {
        let partitions = prepared.partitions();
        let channels = GlobalCodes::channels(partitions);
        let mut parts: Vec<PartSignals<'a>> = partitions
            .iter()
            .zip(&channels.tables)
            .map(|(j, channel_global)| part_signals(j, params, channel_global.clone()))
            .collect();
        let n = channels.names.len();
        // The long-wait norm: each channel's exact median wait over the query's events.
        let waits = prepared.fold_cases(
            || vec![Vec::<i64>::new(); n],
            |acc, case| {
                let p = &parts[case.partition_index];
                let Some(w) = p.wait else { return };
                let j = case.journeys;
                for &e in case.events {
                    let v = w.get(e as usize);
                    if !v.is_nan() {
                        acc[p.channel_global[j.channel[e as usize] as usize] as usize]
                            .push(seconds_to_micros(v));
                    }
                }
            },
            |mut a, b| {
                for (x, y) in a.iter_mut().zip(b) {
                    x.extend(y);
                }
                a
            },
        );
        let channel_median_wait: Vec<Option<f64>> = waits
            .into_iter()
            .map(|mut v| quantile(&mut v, 0.5))
            .collect();
        for p in &mut parts {
            p.wait_threshold = p
                .channel_global
                .iter()
                .map(|&g| match channel_median_wait[g as usize] {
                    Some(m) => params.long_wait_factor * m / 1e6,
                    None => f64::INFINITY,
                })
                .collect();
        }
        let max_topics = parts.iter().map(|p| p.topics).max().unwrap_or(0);
        Signals {
            params: params.clone(),
            parts,
            channels,
            channel_median_wait,
            steps: prepared.step_names().len(),
            max_topics,
        }
    }

    /// Marks every event of `case` in `buf.flags` (same order as `case.events`).
    pub(crate) fn flags(&self, case: &Case<'_>, buf: &mut CaseBuf) {
        let p = &self.parts[case.partition_index];
        let prm = &self.params;
        let j = case.journeys;
        let n = case.events.len();
        if buf.step_last.len() < self.steps {
            buf.step_last.resize(self.steps, 0);
            buf.step_case.resize(self.steps, 0);
        }
        if buf.topic_next.len() < self.max_topics {
            buf.topic_next.resize(self.max_topics, 0);
            buf.topic_case.resize(self.max_topics, 0);
        }
        buf.case_no += 1;
        let cn = buf.case_no;
        buf.flags.clear();
        buf.flags.resize(n, 0);
        buf.next_diff.clear();
        buf.next_diff.resize(n, NONE);
        let ts = &j.ts;
        // Forward: what each event is, and loops (the same step within the loop window).
        for k in 0..n {
            let e = case.events[k] as usize;
            let t = ts[e];
            let mut f = 0u16;
            if let Some(o) = p.outcome {
                match p.outcome_class[o.get(e) as usize] {
                    NO_OUTCOME => {}
                    OUTCOME_FAILURE => f |= HAS_OUTCOME | FAILURE,
                    OUTCOME_GOAL => f |= HAS_OUTCOME | GOAL | RESOLVED,
                    _ => f |= HAS_OUTCOME,
                }
            }
            if p.goal_activity[j.activity.get(e) as usize] {
                f |= GOAL;
            }
            let ch = j.channel[e] as usize;
            if let Some(s) = p.sentiment {
                let v = s.get(e);
                if !v.is_nan() {
                    f |= HAS_SENTIMENT;
                    if v < prm.negative_sentiment {
                        f |= NEGATIVE;
                    }
                    if v > prm.positive_sentiment {
                        f |= POSITIVE;
                    }
                }
            }
            if let Some(w) = p.wait {
                let v = w.get(e);
                if !v.is_nan() {
                    f |= HAS_WAIT;
                    if v > p.wait_threshold[ch] {
                        f |= LONG_WAIT;
                    }
                }
            }
            if p.bot[ch] {
                f |= BOT;
            }
            if p.assisted[ch] {
                f |= ASSISTED_CHANNEL;
                if f & HAS_OUTCOME != 0 && p.topic.is_some_and(|tc| tc.get(e) != 0) {
                    f |= CONTACT;
                }
            }
            let s = case.steps[k] as usize;
            if buf.step_case[s] == cn && t - buf.step_last[s] <= prm.loop_window {
                f |= LOOP;
            }
            buf.step_case[s] = cn;
            buf.step_last[s] = t;
            buf.flags[k] = f;
        }
        // Backward: channel jumps, abandonment and repeat contacts look ahead.
        let last_ts = ts[case.events[n - 1] as usize];
        let mut goal_ahead = false;
        for k in (0..n).rev() {
            let e = case.events[k] as usize;
            let t = ts[e];
            if k + 1 < n {
                let e1 = case.events[k + 1] as usize;
                buf.next_diff[k] = if j.channel[e1] != j.channel[e] {
                    (k + 1) as u32
                } else {
                    buf.next_diff[k + 1]
                };
            }
            let mut f = buf.flags[k];
            if f & FAILURE != 0 {
                let nd = buf.next_diff[k];
                if nd != NONE && ts[case.events[nd as usize] as usize] - t <= prm.jump_window {
                    f |= JUMP;
                }
            }
            goal_ahead |= f & GOAL != 0;
            if !goal_ahead && last_ts - t <= prm.abandon_window {
                f |= ABANDON;
            }
            if f & CONTACT != 0 {
                let topic = p.topic.map_or(0, |tc| tc.get(e)) as usize;
                if buf.topic_case[topic] == cn && buf.topic_next[topic] - t <= prm.repeat_window {
                    f |= REPEAT;
                }
                buf.topic_case[topic] = cn;
                buf.topic_next[topic] = t;
            }
            buf.flags[k] = f;
        }
    }
}

fn part_signals<'j>(
    j: &'j Journeys,
    params: &SignalParams,
    channel_global: Vec<u32>,
) -> PartSignals<'j> {
    let outcome = j.properties.get("outcome");
    let outcome_class = match outcome {
        Some(PropertyColumn::Text { dict, .. }) => std::iter::once(NO_OUTCOME)
            .chain(dict.values.iter().map(|v| match Outcome::parse(v) {
                Some(Outcome::Failure) => OUTCOME_FAILURE,
                Some(Outcome::Success | Outcome::Resolved) => OUTCOME_GOAL,
                _ => OUTCOME_OTHER,
            }))
            .collect(),
        _ => Vec::new(),
    };
    let topic_col = j.properties.get("topic");
    let topics = match topic_col {
        Some(PropertyColumn::Text { dict, .. }) => dict.len() + 1,
        _ => 0,
    };
    let in_list = |list: &[String], v: &str| list.iter().any(|x| x == v);
    PartSignals {
        outcome: text_codes(outcome),
        outcome_class,
        topic: text_codes(topic_col),
        topics,
        sentiment: num_values(j.properties.get("sentiment")),
        wait: num_values(j.properties.get("wait_seconds")),
        duration: num_values(j.properties.get("duration_seconds")),
        assisted: j
            .channels
            .values
            .iter()
            .map(|c| in_list(&params.assisted_channels, c))
            .collect(),
        bot: j
            .channels
            .values
            .iter()
            .map(|c| in_list(&params.bot_channels, c))
            .collect(),
        goal_activity: j
            .activities
            .values
            .iter()
            .map(|a| in_list(&params.goal_activities, a))
            .collect(),
        channel_global,
        wait_threshold: vec![f64::INFINITY; j.channels.len()],
    }
}

/// The property columns the signals read.
pub(crate) const SIGNAL_PROPERTIES: [&str; 4] = ["outcome", "sentiment", "topic", "wait_seconds"];
