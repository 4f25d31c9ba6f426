//! Conformance: how actual journeys follow a designed journey.
//!
//! A designed journey ([`DesignedJourney`], read from YAML or JSON by the app) is an ordered
//! list of steps, each one activity or a set of alternative activities, optional or not, with
//! the channels it may happen on and the longest time allowed since the previous step; one
//! step is the goal (by default the last). [`Design::new`] checks it.
//!
//! Per case (journey instance; the whole customer by default):
//!
//! - **In scope**: the case has an event of an *entry step*: the first step, or, when the
//!   first steps are optional, any step up to and including the first required one. The
//!   journey instance starts at the first such event; designed events before it are not
//!   part of it.
//! - **The instance** runs from that entry event to the first event of the goal step after
//!   it (inclusive), or to the end of the case when the goal is never reached: what comes
//!   after the goal is life after the journey, not a deviation from it.
//! - Only events of designed activities take part. Per step of the design:
//!   - *missing*: a required step with no event in the instance;
//!   - *out of order*: a step whose first event is not in the longest in-design-order
//!     subsequence of the steps' first events (among several longest, the one with the
//!     smallest step positions is kept, so `a c b d` marks `c`, the step done too early);
//!   - *repeated*: more than one event of the step;
//!   - *unexpected channel*: an event of the step on a channel the step does not allow;
//!   - *time limit breached*: the step's first event came later than its `within` after the
//!     first event of the nearest earlier step (in design order) that happened.
//! - **Fitness** in [0, 1]: the mean over the steps that are required or happened of a step
//!   score: 0 for a missing step, otherwise 1 minus a quarter per deviation class the step
//!   shows (out of order, repeated, unexpected channel, time limit). A case *conforms* when
//!   it has no deviation at all (fitness 1).
//! - **Impact**, conforming vs deviating cases: goal reached, mean sentiment (each case's mean
//!   `sentiment` over its events from the entry on, averaged over cases that have one), and
//!   the median duration from the entry to the goal (or to the last designed event when the
//!   goal was not reached).
//!
//! One pass of [`Prepared::fold_cases`] into a mergeable partial; floating-point sums are
//! taken over sorted values at the end, so the result does not depend on partitioning.

use crate::case::{Case, Prepared};
use crate::query::{parse_duration, CaseSplit, Query, StepDimension};
use crate::stats::{micros_to_seconds, quantile};
use crate::{EngineError, Stages};
use omnitrail_model::journeys::{Journeys, PropertyColumn, ScanSpec};
use omnitrail_model::CustomerId;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

/// Designs have at most this many steps (deviations are kept in one bit set per class).
pub const MAX_DESIGN_STEPS: usize = 64;

/// How many example customers each deviation class lists (the smallest ids).
pub const DEFAULT_EXAMPLES: usize = 5;

const NO_STEP: u32 = u32::MAX;

/// The deviation classes, in the order results list them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Deviation {
    Missing,
    OutOfOrder,
    Repeated,
    UnexpectedChannel,
    TimeLimitBreached,
}

impl Deviation {
    pub const ALL: [Deviation; 5] = [
        Deviation::Missing,
        Deviation::OutOfOrder,
        Deviation::Repeated,
        Deviation::UnexpectedChannel,
        Deviation::TimeLimitBreached,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Deviation::Missing => "missing",
            Deviation::OutOfOrder => "out_of_order",
            Deviation::Repeated => "repeated",
            Deviation::UnexpectedChannel => "unexpected_channel",
            Deviation::TimeLimitBreached => "time_limit_breached",
        }
    }
}

/// A designed journey as written in a file (YAML or JSON); see `docs/designed-journeys.md`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DesignedJourney {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The goal step's name; the last step when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub goal: Option<String>,
    pub steps: Vec<DesignedStep>,
}

/// One step as written: `activity` is one activity or a list of alternatives.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DesignedStep {
    /// Defaults to the activity (alternatives joined with `|`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub activity: Activities,
    #[serde(default)]
    pub optional: bool,
    /// Allowed channels; any channel when absent or empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub channels: Vec<String>,
    /// Longest time since the previous step that happened, e.g. `30m`, `2d` or `1d 12h`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub within: Option<String>,
}

/// One activity, or alternatives any of which makes the step.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Activities {
    One(String),
    Any(Vec<String>),
}

impl Activities {
    pub fn list(&self) -> Vec<String> {
        match self {
            Activities::One(a) => vec![a.clone()],
            Activities::Any(v) => v.clone(),
        }
    }
}

/// A checked design: what the analysis runs on.
#[derive(Clone, Debug, PartialEq)]
pub struct Design {
    pub name: String,
    pub steps: Vec<Step>,
    /// Index of the goal step.
    pub goal: usize,
    /// Steps 0..=entry_last can open the journey.
    pub entry_last: usize,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Step {
    pub name: String,
    pub activities: Vec<String>,
    pub optional: bool,
    /// Allowed channels; empty allows every channel.
    pub channels: Vec<String>,
    /// µs.
    pub within: Option<i64>,
}

/// Sums the parts of a compound duration such as `1d 12h`.
fn parse_compound_duration(text: &str) -> Result<i64, EngineError> {
    let mut total: i64 = 0;
    let mut parts = 0;
    for part in text.split_whitespace() {
        total = total.checked_add(parse_duration(part)?).ok_or_else(|| {
            EngineError::InvalidDuration {
                input: text.to_string(),
                reason: "duration too large".to_string(),
            }
        })?;
        parts += 1;
    }
    if parts == 0 {
        return Err(EngineError::InvalidDuration {
            input: text.to_string(),
            reason: "empty duration".to_string(),
        });
    }
    Ok(total)
}

impl Design {
    /// Checks a written design: at least one step, at most [`MAX_DESIGN_STEPS`], every step
    /// with at least one activity, no activity in two steps, unique step names, durations
    /// that parse and are positive, a goal that names a step.
    pub fn new(written: &DesignedJourney) -> Result<Design, EngineError> {
        let name = written.name.trim().to_string();
        let bad = |reason: String| EngineError::InvalidDesign {
            design: if name.is_empty() {
                "(unnamed)".to_string()
            } else {
                name.clone()
            },
            reason,
        };
        if name.is_empty() {
            return Err(bad("the design needs a name".into()));
        }
        if written.steps.is_empty() {
            return Err(bad("the design has no steps".into()));
        }
        if written.steps.len() > MAX_DESIGN_STEPS {
            return Err(bad(format!(
                "{} steps, at most {MAX_DESIGN_STEPS} are supported",
                written.steps.len()
            )));
        }
        let mut steps = Vec::with_capacity(written.steps.len());
        let mut owner: HashMap<String, usize> = HashMap::new();
        let mut names: HashMap<String, usize> = HashMap::new();
        for (i, s) in written.steps.iter().enumerate() {
            let activities: Vec<String> = s
                .activity
                .list()
                .into_iter()
                .map(|a| a.trim().to_string())
                .collect();
            if activities.is_empty() || activities.iter().any(String::is_empty) {
                return Err(bad(format!("step {} has an empty activity", i + 1)));
            }
            let step_name = s
                .name
                .as_ref()
                .map(|n| n.trim().to_string())
                .filter(|n| !n.is_empty())
                .unwrap_or_else(|| activities.join("|"));
            for a in &activities {
                if let Some(&j) = owner.get(a) {
                    return Err(bad(format!(
                        "activity '{a}' is in step {} and step {}; an activity can make only one step",
                        j + 1,
                        i + 1
                    )));
                }
                owner.insert(a.clone(), i);
            }
            if let Some(&j) = names.get(&step_name) {
                return Err(bad(format!(
                    "steps {} and {} are both named '{step_name}'",
                    j + 1,
                    i + 1
                )));
            }
            names.insert(step_name.clone(), i);
            let within = match &s.within {
                Some(w) => {
                    let micros = parse_compound_duration(w)
                        .map_err(|e| bad(format!("step '{step_name}': within: {e}")))?;
                    if micros <= 0 {
                        return Err(bad(format!(
                            "step '{step_name}': within must be longer than zero"
                        )));
                    }
                    Some(micros)
                }
                None => None,
            };
            let mut channels: Vec<String> = s
                .channels
                .iter()
                .map(|c| c.trim().to_string())
                .filter(|c| !c.is_empty())
                .collect();
            channels.sort();
            channels.dedup();
            steps.push(Step {
                name: step_name,
                activities,
                optional: s.optional,
                channels,
                within,
            });
        }
        let goal = match &written.goal {
            Some(g) => *names.get(g.trim()).ok_or_else(|| {
                bad(format!(
                    "the goal '{g}' is not a step; steps are {}",
                    steps
                        .iter()
                        .map(|s| format!("'{}'", s.name))
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })?,
            None => steps.len() - 1,
        };
        let entry_last = steps
            .iter()
            .position(|s| !s.optional)
            .unwrap_or(steps.len() - 1);
        Ok(Design {
            name,
            steps,
            goal,
            entry_last,
        })
    }

    /// The step an activity makes, if any.
    pub fn step_of(&self, activity: &str) -> Option<usize> {
        self.steps
            .iter()
            .position(|s| s.activities.iter().any(|a| a == activity))
    }

    /// Whether step `step` allows `channel`.
    pub fn allows(&self, step: usize, channel: &str) -> bool {
        let c = &self.steps[step].channels;
        c.is_empty() || c.iter().any(|x| x == channel)
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct ConformanceOptions {
    pub design: Design,
    /// Example customers listed per deviation class.
    pub examples: usize,
}

impl ConformanceOptions {
    pub fn new(design: Design) -> ConformanceOptions {
        ConformanceOptions {
            design,
            examples: DEFAULT_EXAMPLES,
        }
    }
}

/// The columns conformance reads beyond the query's own: `sentiment`, for the impact.
pub fn conformance_scan(query: &Query) -> ScanSpec {
    let mut spec = Prepared::required_scan(query);
    spec.properties.push("sentiment".to_string());
    spec.properties.sort();
    spec.properties.dedup();
    spec
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Conformance {
    pub design: String,
    /// The case split, e.g. `customer`.
    pub case: String,
    pub goal: String,
    pub totals: ConformanceTotals,
    pub fitness: FitnessSummary,
    /// One entry per deviation class, in [`Deviation::ALL`] order.
    pub deviations: Vec<DeviationCount>,
    /// One entry per designed step, in design order.
    pub steps: Vec<StepConformance>,
    pub impact: Impact,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct ConformanceTotals {
    /// Cases (journey instances) in scope.
    pub cases: u64,
    /// Distinct customers with a case in scope.
    pub customers: u64,
    pub conforming: u64,
    /// Conforming share of cases in scope (0 when none).
    pub conformance_rate: f64,
    pub deviating: u64,
    pub goal_reached: u64,
    pub goal_reached_rate: f64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct FitnessSummary {
    pub mean: Option<f64>,
    pub min: Option<f64>,
    pub p25: Option<f64>,
    pub median: Option<f64>,
    pub p75: Option<f64>,
    /// Cases by fitness: [0, .25), [.25, .5), [.5, .75), [.75, 1), exactly 1.
    pub histogram: Vec<FitnessBucket>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FitnessBucket {
    pub label: String,
    pub cases: u64,
    pub share: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DeviationCount {
    pub class: Deviation,
    /// Cases showing the class at any step.
    pub cases: u64,
    /// Of cases in scope.
    pub share: f64,
    /// The smallest customer ids with the class.
    pub examples: Vec<CustomerId>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StepConformance {
    pub step: String,
    pub activities: Vec<String>,
    pub optional: bool,
    pub channels: Vec<String>,
    pub within_s: Option<f64>,
    /// Cases in scope in which the step happened.
    pub reached: u64,
    pub reached_share: f64,
    /// Cases per deviation class at this step, in [`Deviation::ALL`] order.
    pub deviations: Vec<StepDeviation>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StepDeviation {
    pub class: Deviation,
    pub cases: u64,
    pub share: f64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Impact {
    pub conforming: GroupImpact,
    pub deviating: GroupImpact,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct GroupImpact {
    pub cases: u64,
    pub goal_reached: u64,
    pub goal_reached_rate: Option<f64>,
    /// Cases with at least one sentiment value from the entry on.
    pub with_sentiment: u64,
    pub mean_sentiment: Option<f64>,
    pub median_duration_s: Option<f64>,
}

/// What one case shows against the design: the building block of the aggregate, public so
/// that callers (and tests) can look at single journeys.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CaseConformance {
    /// Per deviation class (in [`Deviation::ALL`] order), a bit per designed step.
    pub deviations: [u64; 5],
    /// Bit per designed step that happened.
    pub reached: u64,
    pub fitness: f64,
    pub goal_reached: bool,
    /// µs from the entry to the goal (or the last designed event).
    pub duration: i64,
    /// Mean sentiment from the entry on, if any event there has one.
    pub sentiment: Option<f64>,
}

impl CaseConformance {
    pub fn conforms(&self) -> bool {
        self.deviations.iter().all(|&d| d == 0)
    }
}

/// One event as the per-case evaluation sees it.
#[derive(Clone, Copy, Debug)]
pub struct DesignEvent {
    /// Designed step, or `None` for other activities.
    pub step: Option<usize>,
    pub ts: i64,
    /// Whether the step allows the event's channel (ignored without a step).
    pub channel_ok: bool,
    pub sentiment: Option<f64>,
}

/// Reusable buffers for [`evaluate`].
#[derive(Default)]
pub struct Scratch {
    count: Vec<u32>,
    first_ts: Vec<i64>,
    order: Vec<usize>,
    best_len: Vec<u32>,
    best_next: Vec<usize>,
}

/// Evaluates one case (events in time order) against `design`; `None` when out of scope.
pub fn evaluate(
    design: &Design,
    events: impl Iterator<Item = DesignEvent> + Clone,
    scratch: &mut Scratch,
) -> Option<CaseConformance> {
    let n = design.steps.len();
    let mut it = events.clone().enumerate();
    let entry = loop {
        let (k, e) = it.next()?;
        if e.step.is_some_and(|s| s <= design.entry_last) {
            break k;
        }
    };
    let Scratch {
        count,
        first_ts,
        order,
        best_len,
        best_next,
    } = scratch;
    count.clear();
    count.resize(n, 0);
    first_ts.clear();
    first_ts.resize(n, 0);
    order.clear();
    let mut out = CaseConformance::default();
    let mut entry_ts = 0;
    let mut last_designed_ts = 0;
    let mut in_instance = true;
    let (mut sentiment_sum, mut sentiment_n) = (0.0f64, 0u64);
    for (k, e) in events.enumerate().skip(entry) {
        if let Some(v) = e.sentiment {
            sentiment_sum += v;
            sentiment_n += 1;
        }
        if k == entry {
            entry_ts = e.ts;
        }
        let Some(s) = e.step else { continue };
        if !in_instance {
            continue;
        }
        if count[s] == 0 {
            first_ts[s] = e.ts;
            order.push(s);
        }
        count[s] += 1;
        last_designed_ts = e.ts;
        if !e.channel_ok {
            out.deviations[3] |= 1 << s;
        }
        if s == design.goal {
            out.goal_reached = true;
            in_instance = false;
        }
    }
    out.sentiment = (sentiment_n > 0).then(|| sentiment_sum / sentiment_n as f64);
    out.duration = last_designed_ts - entry_ts;
    for (s, step) in design.steps.iter().enumerate() {
        if count[s] > 0 {
            out.reached |= 1 << s;
        } else if !step.optional {
            out.deviations[0] |= 1 << s;
        }
        if count[s] > 1 {
            out.deviations[2] |= 1 << s;
        }
    }
    // Out of order: the steps (in first-occurrence order) not in the longest increasing run
    // of design positions; among equally long ones the lexicographically smallest is kept.
    // Walking backwards, best_len[i] is the longest increasing run starting at i, and
    // best_next[i] its smallest possible next element (positions are distinct, so comparing
    // runs lexicographically comes down to their next element).
    let m = order.len();
    best_len.clear();
    best_len.resize(m, 1);
    best_next.clear();
    best_next.resize(m, usize::MAX);
    for i in (0..m).rev() {
        for j in i + 1..m {
            if order[j] > order[i] {
                let cand = best_len[j] + 1;
                if cand > best_len[i] || (cand == best_len[i] && order[j] < order[best_next[i]]) {
                    best_len[i] = cand;
                    best_next[i] = j;
                }
            }
        }
    }
    let mut start = usize::MAX;
    for i in 0..m {
        if start == usize::MAX
            || best_len[i] > best_len[start]
            || (best_len[i] == best_len[start] && order[i] < order[start])
        {
            start = i;
        }
    }
    let mut kept: u64 = 0;
    let mut at = start;
    while at != usize::MAX && at < m {
        kept |= 1 << order[at];
        at = best_next[at];
    }
    out.deviations[1] = out.reached & !kept;
    // Time limits, from the nearest earlier step (in design order) that happened.
    for (s, step) in design.steps.iter().enumerate() {
        let Some(limit) = step.within else { continue };
        if count[s] == 0 {
            continue;
        }
        if let Some(prev) = (0..s).rev().find(|&p| count[p] > 0) {
            let gap = first_ts[s] - first_ts[prev];
            if gap > limit {
                out.deviations[4] |= 1 << s;
            }
        }
    }
    let mut total = 0.0;
    let mut considered = 0u32;
    for (s, step) in design.steps.iter().enumerate() {
        let bit = 1u64 << s;
        if out.reached & bit != 0 {
            let classes = out.deviations[1..]
                .iter()
                .filter(|&&d| d & bit != 0)
                .count();
            total += 1.0 - 0.25 * classes as f64;
            considered += 1;
        } else if !step.optional {
            considered += 1;
        }
    }
    out.fitness = if considered == 0 {
        1.0
    } else {
        total / f64::from(considered)
    };
    Some(out)
}

/// Per partition: global step code → designed step, and channel code → bit set of the steps
/// that allow it.
struct Tables {
    step_of: Vec<u32>,
    allowed: Vec<Vec<u64>>,
}

#[derive(Clone)]
struct Partial {
    steps: usize,
    examples: usize,
    cases: u64,
    customers: u64,
    last_customer: u64,
    conforming: u64,
    goal_reached: [u64; 2],
    class_cases: [u64; 5],
    step_class: Vec<[u64; 5]>,
    step_reached: Vec<u64>,
    fitness: Vec<f64>,
    sentiment: [Vec<f64>; 2],
    durations: [Vec<i64>; 2],
    example_ids: [Vec<CustomerId>; 5],
}

impl Partial {
    fn new(steps: usize, examples: usize) -> Partial {
        Partial {
            steps,
            examples,
            cases: 0,
            customers: 0,
            last_customer: 0,
            conforming: 0,
            goal_reached: [0; 2],
            class_cases: [0; 5],
            step_class: vec![[0; 5]; steps],
            step_reached: vec![0; steps],
            fitness: Vec::new(),
            sentiment: [Vec::new(), Vec::new()],
            durations: [Vec::new(), Vec::new()],
            example_ids: Default::default(),
        }
    }

    fn add(&mut self, case: &Case<'_>, c: &CaseConformance) {
        let stamp = Prepared::customer_stamp(case);
        self.cases += 1;
        if self.last_customer != stamp {
            self.last_customer = stamp;
            self.customers += 1;
        }
        let group = usize::from(!c.conforms());
        if group == 0 {
            self.conforming += 1;
        }
        self.goal_reached[group] += u64::from(c.goal_reached);
        for (class, &bits) in c.deviations.iter().enumerate() {
            if bits != 0 {
                self.class_cases[class] += 1;
                keep_smallest(&mut self.example_ids[class], case.customer, self.examples);
            }
        }
        for s in 0..self.steps {
            let bit = 1u64 << s;
            self.step_reached[s] += u64::from(c.reached & bit != 0);
            for (class, &bits) in c.deviations.iter().enumerate() {
                self.step_class[s][class] += u64::from(bits & bit != 0);
            }
        }
        self.fitness.push(c.fitness);
        if let Some(v) = c.sentiment {
            self.sentiment[group].push(v);
        }
        self.durations[group].push(c.duration);
    }

    fn merge(mut self, other: Partial) -> Partial {
        self.cases += other.cases;
        self.customers += other.customers;
        self.conforming += other.conforming;
        for g in 0..2 {
            self.goal_reached[g] += other.goal_reached[g];
            self.sentiment[g].extend_from_slice(&other.sentiment[g]);
            self.durations[g].extend_from_slice(&other.durations[g]);
        }
        for c in 0..5 {
            self.class_cases[c] += other.class_cases[c];
            for &id in &other.example_ids[c] {
                keep_smallest(&mut self.example_ids[c], id, self.examples);
            }
        }
        for (a, b) in self.step_class.iter_mut().zip(&other.step_class) {
            for c in 0..5 {
                a[c] += b[c];
            }
        }
        for (a, b) in self.step_reached.iter_mut().zip(&other.step_reached) {
            *a += b;
        }
        self.fitness.extend_from_slice(&other.fitness);
        self
    }
}

/// Keeps the `limit` smallest ids, sorted, without duplicates.
fn keep_smallest(ids: &mut Vec<CustomerId>, id: CustomerId, limit: usize) {
    if limit == 0 {
        return;
    }
    match ids.binary_search(&id) {
        Ok(_) => {}
        Err(at) if at < limit => {
            ids.insert(at, id);
            ids.truncate(limit);
        }
        Err(_) => {}
    }
}

/// Sum of values in sorted order: the same bits whatever order they were gathered in.
pub(crate) fn stable_sum(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values.iter().sum()
}

fn share(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

/// Quantile of f64 values by the same interpolation as [`quantile`].
fn quantile_f64(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let last = sorted.len() - 1;
    let pos = q.clamp(0.0, 1.0) * last as f64;
    let lo = pos.floor() as usize;
    let frac = pos - pos.floor();
    let v = sorted[lo];
    Some(if frac > 0.0 {
        v + (sorted[(lo + 1).min(last)] - v) * frac
    } else {
        v
    })
}

/// Conformance of the prepared query's cases to the design. The caller prepares with any
/// step dimension; designed steps match on activities, so this binds its own view of the
/// query's partitions by activity.
pub fn conformance(
    partitions: &[Arc<Journeys>],
    stages: &Stages,
    query: &Query,
    options: &ConformanceOptions,
) -> Result<Conformance, EngineError> {
    let prepared = Prepared::with(
        partitions,
        stages,
        query,
        &StepDimension::Activity,
        &query.case,
    )?;
    Ok(conformance_prepared(&prepared, options))
}

/// Conformance over cases already prepared by activity ([`StepDimension::Activity`]).
pub fn conformance_prepared(prepared: &Prepared<'_>, options: &ConformanceOptions) -> Conformance {
    let design = &options.design;
    let n = design.steps.len();
    let step_of: Vec<u32> = prepared
        .step_names()
        .iter()
        .map(|a| design.step_of(a).map_or(NO_STEP, |s| s as u32))
        .collect();
    let allowed: Vec<Vec<u64>> = prepared
        .partitions()
        .iter()
        .map(|j| {
            j.channels
                .values
                .iter()
                .map(|c| {
                    (0..n)
                        .filter(|&s| design.allows(s, c))
                        .fold(0u64, |m, s| m | 1 << s)
                })
                .collect()
        })
        .collect();
    let tables = Tables { step_of, allowed };
    let partial = prepared.fold_cases(
        || (Partial::new(n, options.examples), Scratch::default()),
        |(acc, scratch), case| {
            let j = case.journeys;
            let allowed = &tables.allowed[case.partition_index];
            let sentiment = match j.properties.get("sentiment") {
                Some(PropertyColumn::Num(v)) => Some(v),
                _ => None,
            };
            let events = case.events.iter().zip(case.steps).map(|(&e, &code)| {
                let e = e as usize;
                let s = tables.step_of[code as usize];
                let step = (s != NO_STEP).then_some(s as usize);
                DesignEvent {
                    step,
                    ts: j.ts[e],
                    channel_ok: step.is_none_or(|s| allowed[j.channel[e] as usize] >> s & 1 == 1),
                    sentiment: sentiment.map(|v| v.get(e)).filter(|v| !v.is_nan()),
                }
            });
            if let Some(c) = evaluate(design, events, scratch) {
                acc.add(case, &c);
            }
        },
        |(a, s), (b, _)| (a.merge(b), s),
    );
    finish(prepared.case_split(), options, partial.0)
}

fn finish(case: &CaseSplit, options: &ConformanceOptions, mut p: Partial) -> Conformance {
    let design = &options.design;
    let cases = p.cases;
    let deviating = cases - p.conforming;
    let totals = ConformanceTotals {
        cases,
        customers: p.customers,
        conforming: p.conforming,
        conformance_rate: share(p.conforming, cases),
        deviating,
        goal_reached: p.goal_reached[0] + p.goal_reached[1],
        goal_reached_rate: share(p.goal_reached[0] + p.goal_reached[1], cases),
    };
    let mut fit = std::mem::take(&mut p.fitness);
    let sum = stable_sum(&mut fit);
    let labels = ["0–25%", "25–50%", "50–75%", "75–<100%", "100%"];
    let mut buckets = [0u64; 5];
    for &f in &fit {
        let b = if f >= 1.0 {
            4
        } else {
            ((f * 4.0).floor() as usize).min(3)
        };
        buckets[b] += 1;
    }
    let fitness = FitnessSummary {
        mean: (!fit.is_empty()).then(|| sum / fit.len() as f64),
        min: fit.first().copied(),
        p25: quantile_f64(&fit, 0.25),
        median: quantile_f64(&fit, 0.5),
        p75: quantile_f64(&fit, 0.75),
        histogram: labels
            .iter()
            .zip(buckets)
            .map(|(l, c)| FitnessBucket {
                label: l.to_string(),
                cases: c,
                share: share(c, cases),
            })
            .collect(),
    };
    let deviations = Deviation::ALL
        .iter()
        .enumerate()
        .map(|(c, &class)| DeviationCount {
            class,
            cases: p.class_cases[c],
            share: share(p.class_cases[c], cases),
            examples: std::mem::take(&mut p.example_ids[c]),
        })
        .collect();
    let steps = design
        .steps
        .iter()
        .enumerate()
        .map(|(s, step)| StepConformance {
            step: step.name.clone(),
            activities: step.activities.clone(),
            optional: step.optional,
            channels: step.channels.clone(),
            within_s: step.within.map(|w| micros_to_seconds(w as f64)),
            reached: p.step_reached[s],
            reached_share: share(p.step_reached[s], cases),
            deviations: Deviation::ALL
                .iter()
                .enumerate()
                .map(|(c, &class)| StepDeviation {
                    class,
                    cases: p.step_class[s][c],
                    share: share(p.step_class[s][c], cases),
                })
                .collect(),
        })
        .collect();
    let group_counts = [p.conforming, deviating];
    let mut groups = (0..2).map(|g| {
        let mut sentiment = std::mem::take(&mut p.sentiment[g]);
        let n = sentiment.len();
        let sum = stable_sum(&mut sentiment);
        GroupImpact {
            cases: group_counts[g],
            goal_reached: p.goal_reached[g],
            goal_reached_rate: (group_counts[g] > 0)
                .then(|| share(p.goal_reached[g], group_counts[g])),
            with_sentiment: n as u64,
            mean_sentiment: (n > 0).then(|| sum / n as f64),
            median_duration_s: quantile(&mut p.durations[g], 0.5).map(micros_to_seconds),
        }
    });
    let impact = Impact {
        conforming: groups.next().unwrap_or_default(),
        deviating: groups.next().unwrap_or_default(),
    };
    Conformance {
        design: design.name.clone(),
        case: case.to_string(),
        goal: design.steps[design.goal].name.clone(),
        totals,
        fitness,
        deviations,
        steps,
        impact,
    }
}

/// Activities named by the design, sorted: what a caller may want to check exist in the data.
pub fn design_activities(design: &Design) -> BTreeSet<&str> {
    design
        .steps
        .iter()
        .flat_map(|s| s.activities.iter().map(String::as_str))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn design(yaml_like: &[(&str, bool, &[&str], Option<&str>)]) -> Design {
        Design::new(&DesignedJourney {
            name: "t".into(),
            description: None,
            goal: None,
            steps: yaml_like
                .iter()
                .map(|(a, optional, channels, within)| DesignedStep {
                    name: None,
                    activity: Activities::One(a.to_string()),
                    optional: *optional,
                    channels: channels.iter().map(|c| c.to_string()).collect(),
                    within: within.map(str::to_string),
                })
                .collect(),
        })
        .unwrap()
    }

    fn run(d: &Design, seq: &[(&str, i64, bool)]) -> Option<CaseConformance> {
        let events: Vec<DesignEvent> = seq
            .iter()
            .map(|&(a, ts, ok)| DesignEvent {
                step: d.step_of(a),
                ts,
                channel_ok: ok,
                sentiment: None,
            })
            .collect();
        evaluate(d, events.iter().copied(), &mut Scratch::default())
    }

    #[test]
    fn out_of_order_keeps_the_smallest_longest_run() {
        let d = design(&[
            ("a", false, &[], None),
            ("b", false, &[], None),
            ("c", false, &[], None),
            ("d", false, &[], None),
        ]);
        let c = run(
            &d,
            &[
                ("a", 0, true),
                ("c", 1, true),
                ("b", 2, true),
                ("d", 3, true),
            ],
        )
        .unwrap();
        assert_eq!(c.deviations[1], 0b0100, "c was done too early");
        assert_eq!(c.fitness, (1.0 + 1.0 + 0.75 + 1.0) / 4.0);
        // The goal ends the instance: what follows it is not part of the journey.
        let c = run(
            &d,
            &[
                ("a", 0, true),
                ("d", 1, true),
                ("b", 2, true),
                ("c", 3, true),
            ],
        )
        .unwrap();
        assert_eq!(c.deviations[..2], [0b0110, 0]);
        assert!(c.goal_reached);
        let d = design(&[
            ("a", false, &[], None),
            ("b", false, &[], None),
            ("c", false, &[], None),
            ("d", false, &[], None),
            ("e", false, &[], None),
        ]);
        let seq = [
            ("a", 0, true),
            ("d", 1, true),
            ("b", 2, true),
            ("c", 3, true),
            ("e", 4, true),
        ];
        let c = run(&d, &seq).unwrap();
        assert_eq!(c.deviations[..2], [0, 0b01000], "d was done too early");
    }

    #[test]
    fn scope_window_and_classes() {
        let d = design(&[
            ("a", false, &["web"], None),
            ("b", true, &[], Some("1h")),
            ("c", false, &[], Some("30m")),
        ]);
        // Not in scope: no entry.
        assert!(run(&d, &[("b", 0, true), ("c", 1, true)]).is_none());
        // A designed event before the entry is ignored; after the goal too.
        let c = run(
            &d,
            &[
                ("c", 0, true),
                ("a", 10, true),
                ("c", 20, true),
                ("c", 30, true),
            ],
        )
        .unwrap();
        assert!(c.conforms() && c.goal_reached, "{c:?}");
        assert_eq!(c.duration, 10);
        // Repeated a on a wrong channel, c late after a (b missing but optional).
        let hour = 3_600_000_000;
        let c = run(&d, &[("a", 0, false), ("a", 1, true), ("c", hour, true)]).unwrap();
        assert_eq!(c.deviations, [0, 0, 0b001, 0b001, 0b100]);
        assert_eq!(c.fitness, (0.5 + 0.75) / 2.0);
        // Goal never reached: c is missing.
        let c = run(&d, &[("a", 0, true), ("b", 1, true)]).unwrap();
        assert_eq!(c.deviations[0], 0b100);
        assert!(!c.goal_reached);
        assert_eq!(c.fitness, 2.0 / 3.0);
    }

    #[test]
    fn designs_are_checked() {
        let step = |a: &str| DesignedStep {
            name: None,
            activity: Activities::One(a.into()),
            optional: false,
            channels: vec![],
            within: None,
        };
        let mut w = DesignedJourney {
            name: "x".into(),
            description: None,
            goal: None,
            steps: vec![step("a"), step("a")],
        };
        let e = Design::new(&w).unwrap_err().to_string();
        assert!(e.contains("'a' is in step 1 and step 2"), "{e}");
        w.steps[1] = step("b");
        w.goal = Some("z".into());
        let e = Design::new(&w).unwrap_err().to_string();
        assert!(e.contains("goal 'z' is not a step"), "{e}");
        w.goal = Some("a".into());
        w.steps[1].within = Some("2x".into());
        let e = Design::new(&w).unwrap_err().to_string();
        assert!(e.contains("step 'b': within"), "{e}");
        w.steps[1].within = Some("1d 12h".into());
        let d = Design::new(&w).unwrap();
        assert_eq!(d.steps[1].within, Some(36 * 3_600_000_000));
        assert_eq!(d.goal, 0);
        w.steps.clear();
        assert!(Design::new(&w).is_err());
    }

    #[test]
    fn examples_keep_the_smallest_ids() {
        let mut v = Vec::new();
        for id in [9, 3, 7, 3, 1, 8] {
            keep_smallest(&mut v, CustomerId(id), 3);
        }
        assert_eq!(v, [CustomerId(1), CustomerId(3), CustomerId(7)]);
    }
}
