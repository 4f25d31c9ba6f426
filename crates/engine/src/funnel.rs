//! Funnels: how far cases get through an ordered list of steps.
//!
//! The rules (also in `docs/api-json.md`, "funnel"):
//!
//! - A **step** is a value of the query's step dimension (`cart`) or an event filter
//!   (`channel = 'web' and activity = 'cart'`); an event may match several steps.
//! - An **attempt** starts at an event matching step 1 (`any-order`: matching any step) and
//!   takes, for each next step, the earliest event that qualifies: in `ordered` mode any
//!   later event (other events may come between), in `strict` mode only the very next
//!   event of the case. In `any-order` mode each step needs its own event, in any order,
//!   from the start on; the attempt reaches `k` when `k` distinct steps can be given
//!   distinct events. Events after the **window** (the start's time plus the window,
//!   inclusive) do not count. An attempt's *reach* is how many steps it completes.
//! - An **exclusion** event is one that matches an exclusion step and no funnel step. An
//!   attempt with an exclusion event strictly between its first step's event and the event
//!   of the last step it reaches is disqualified: it does not count at all (other attempts
//!   of the case still may). In `strict` mode no event lies between steps, so exclusions
//!   never apply.
//! - Each case counts once, with its **best attempt**: the one that reaches furthest, the
//!   earliest-starting among equals (as Mixpanel and PostHog do). A case with no qualified
//!   attempt reaches step 0. Time to convert (first to last step) and the breakdown value
//!   come from the best attempt.
//! - **Customers**: a customer reaches step `k` when one of their cases does; a customer
//!   *dropped at* step `k` reached `k − 1` at most (at step 1: never entered the funnel).
//! - **Breakdown**: by an event property, the value on the best attempt's first event; by
//!   a trait, the customer's current value (the last one their journey carries). Cases
//!   without a value fall in the `null` group.

use crate::case::{Case, Prepared};
use crate::expr::{CompiledFilter, EventFilter, ExprError};
use crate::query::Query;
use crate::stats::{micros_to_seconds, quantile};
use crate::{EngineError, Stages};
use omnitrail_model::journeys::{Journeys, PropertyColumn, ScanSpec};
use omnitrail_model::CustomerId;
use rayon::prelude::*;
use serde::Serialize;
use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::str::FromStr;

/// The most steps (and, separately, exclusion steps) a funnel may have.
pub const MAX_FUNNEL_STEPS: usize = 32;
/// The most dropped customers one page may list.
pub const MAX_DROPPED_PAGE: usize = 10_000;

const MINUTE: i64 = 60_000_000;
const HOUR: i64 = 60 * MINUTE;
const DAY: i64 = 24 * HOUR;
/// Upper bounds (exclusive, µs) of the time-to-convert histogram buckets; a last bucket
/// holds everything longer.
const BUCKETS: [(i64, &str); 9] = [
    (MINUTE, "< 1m"),
    (5 * MINUTE, "1m-5m"),
    (15 * MINUTE, "5m-15m"),
    (HOUR, "15m-1h"),
    (6 * HOUR, "1h-6h"),
    (DAY, "6h-1d"),
    (3 * DAY, "1d-3d"),
    (7 * DAY, "3d-7d"),
    (30 * DAY, "7d-30d"),
];
const LAST_BUCKET: &str = ">= 30d";

/// One funnel step (or exclusion step).
#[derive(Clone, Debug, PartialEq)]
pub enum FunnelStep {
    /// A value of the query's step dimension.
    Value(String),
    Filter(EventFilter),
}

impl FunnelStep {
    /// Text that reads as an event filter is a filter (`channel = 'web'`); other text is a
    /// step value (`cart`, `phone:call`, `iOS 17`). Text with an operator, a quote or a
    /// parenthesis was meant as a filter, so a syntax error there is reported rather than
    /// taken as a value; `value:TEXT` forces a value.
    pub fn parse(text: &str) -> Result<FunnelStep, ExprError> {
        if let Some(v) = text.strip_prefix("value:") {
            return Ok(FunnelStep::Value(v.to_string()));
        }
        match EventFilter::parse(text) {
            Ok(f) => Ok(FunnelStep::Filter(f)),
            Err(e) if text.contains(['=', '<', '>', '!', '\'', '"', '(', ')']) => Err(e),
            Err(_) => Ok(FunnelStep::Value(text.trim().to_string())),
        }
    }

    /// How results name the step: the value, or the filter as written.
    pub fn label(&self) -> String {
        match self {
            FunnelStep::Value(v) => v.clone(),
            FunnelStep::Filter(f) => f.source().trim().to_string(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FunnelMode {
    Strict,
    Ordered,
    AnyOrder,
}

impl FromStr for FunnelMode {
    type Err = EngineError;
    fn from_str(s: &str) -> Result<Self, EngineError> {
        match s.trim() {
            "strict" => Ok(FunnelMode::Strict),
            "ordered" => Ok(FunnelMode::Ordered),
            "any-order" => Ok(FunnelMode::AnyOrder),
            other => Err(EngineError::InvalidOption {
                option: "mode",
                reason: format!(
                    "unknown funnel mode '{other}' (expected strict, ordered or any-order)"
                ),
            }),
        }
    }
}

impl fmt::Display for FunnelMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FunnelMode::Strict => "strict",
            FunnelMode::Ordered => "ordered",
            FunnelMode::AnyOrder => "any-order",
        })
    }
}

/// What to split funnel results by.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Breakdown {
    Property(String),
    Trait(String),
}

impl FromStr for Breakdown {
    type Err = EngineError;
    fn from_str(s: &str) -> Result<Self, EngineError> {
        let bad = |reason: &str| EngineError::InvalidOption {
            option: "breakdown",
            reason: format!("'{s}': {reason}"),
        };
        let (kind, name) = s
            .trim()
            .split_once(':')
            .ok_or_else(|| bad("expected property:NAME or trait:NAME"))?;
        let name = name.trim();
        if name.is_empty() {
            return Err(bad("the name after ':' is empty"));
        }
        match kind {
            "property" => Ok(Breakdown::Property(name.to_string())),
            "trait" => Ok(Breakdown::Trait(name.to_string())),
            _ => Err(bad("expected property:NAME or trait:NAME")),
        }
    }
}

impl fmt::Display for Breakdown {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Breakdown::Property(p) => write!(f, "property:{p}"),
            Breakdown::Trait(t) => write!(f, "trait:{t}"),
        }
    }
}

/// Which dropped customers to list: those who dropped at `step` (1-based), sorted by id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DroppedPage {
    pub step: usize,
    pub offset: usize,
    pub limit: usize,
}

#[derive(Clone, Debug, PartialEq)]
pub struct FunnelOptions {
    pub steps: Vec<FunnelStep>,
    pub mode: FunnelMode,
    pub exclusions: Vec<FunnelStep>,
    /// Conversion window in µs from the first step's event; `None`: the whole case.
    pub window: Option<i64>,
    pub breakdown: Option<Breakdown>,
    pub dropped: Option<DroppedPage>,
}

impl FunnelOptions {
    pub fn new(steps: Vec<FunnelStep>) -> FunnelOptions {
        FunnelOptions {
            steps,
            mode: FunnelMode::Ordered,
            exclusions: Vec::new(),
            window: None,
            breakdown: None,
            dropped: None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Funnel {
    pub step: String,
    pub case: String,
    pub mode: FunnelMode,
    pub window_s: Option<f64>,
    pub exclusions: Vec<String>,
    /// Cases and distinct customers in the selection, whether they entered or not.
    pub cases: u64,
    pub customers: u64,
    pub steps: Vec<FunnelStepResult>,
    pub time_to_convert: TimeToConvert,
    pub breakdown: Option<FunnelBreakdown>,
    pub dropped: Option<DroppedCustomers>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FunnelStepResult {
    /// 1-based.
    pub index: usize,
    pub label: String,
    /// Cases and distinct customers that reach this step.
    pub cases: u64,
    pub customers: u64,
    /// `cases / cases at the previous step` (at step 1: of all cases); `null` when that is 0.
    pub conversion_from_previous: Option<f64>,
    /// `cases / cases at step 1`; `null` when no case entered.
    pub conversion_from_first: Option<f64>,
    /// Reached the previous step (at step 1: are in the selection) but not this one.
    pub dropped_cases: u64,
    pub dropped_customers: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TimeToConvert {
    /// Cases that reached the last step.
    pub converted: u64,
    pub median_s: Option<f64>,
    pub p90_s: Option<f64>,
    pub mean_s: Option<f64>,
    pub histogram: Vec<HistogramBucket>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct HistogramBucket {
    pub label: String,
    /// `from_s <= time < to_s`; `to_s` is `null` for the last bucket.
    pub from_s: f64,
    pub to_s: Option<f64>,
    pub cases: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FunnelBreakdown {
    pub by: String,
    /// Groups with at least one case at step 1, by cases at step 1 descending, then value;
    /// the `null` group last.
    pub groups: Vec<FunnelGroup>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FunnelGroup {
    pub value: Option<String>,
    pub steps: Vec<FunnelStepResult>,
    pub time_to_convert: TimeToConvert,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DroppedCustomers {
    pub step: usize,
    /// All customers who dropped at `step`; `customers` is the requested page of them.
    pub total: u64,
    pub offset: usize,
    pub limit: usize,
    pub customers: Vec<CustomerId>,
}

/// The columns a funnel needs: the query's, plus what filter steps, exclusions and the
/// breakdown read.
pub fn funnel_scan(query: &Query, options: &FunnelOptions) -> ScanSpec {
    let mut spec = Prepared::required_scan(query);
    for step in options.steps.iter().chain(&options.exclusions) {
        if let FunnelStep::Filter(f) = step {
            spec.properties.extend(f.referenced_properties());
            spec.traits.extend(f.referenced_traits());
        }
    }
    match &options.breakdown {
        Some(Breakdown::Property(p)) => spec.properties.push(p.clone()),
        Some(Breakdown::Trait(t)) => spec.traits.push(t.clone()),
        None => {}
    }
    spec.properties.sort();
    spec.properties.dedup();
    spec.traits.sort();
    spec.traits.dedup();
    spec
}

/// A step resolved for matching: a global step code (`None`: the value occurs nowhere) or
/// the index of its filter among the compiled ones.
#[derive(Clone, Copy)]
enum Matcher {
    Code(Option<u32>),
    Filter(usize),
}

/// How one partition's breakdown values map to global group ids (0 is "no value").
enum GroupTable {
    Absent,
    Text(Vec<u32>),
    /// Sorted by value.
    Num(Vec<(f64, u32)>),
}

impl GroupTable {
    fn lookup(&self, col: Option<&PropertyColumn>, e: usize) -> u32 {
        match (self, col) {
            (GroupTable::Text(t), Some(PropertyColumn::Text { codes, .. })) => {
                t[codes.get(e) as usize]
            }
            (GroupTable::Num(sorted), Some(PropertyColumn::Num(v))) if !v.get(e).is_nan() => sorted
                .binary_search_by(|(x, _)| x.total_cmp(&v.get(e)))
                .map_or(0, |i| sorted[i].1),
            _ => 0,
        }
    }
}

/// Reusable per-case buffers.
#[derive(Default)]
struct Scratch {
    masks: Vec<u32>,
    /// `excluded[i]`: the number of exclusion events before case event `i`.
    excluded: Vec<u32>,
    /// Per step, a forward-only cursor for the first event matching it at or after a
    /// position. Greedy chains are monotone in their start (a later start never matches a
    /// step earlier), so each cursor moves over a case once, whatever the number of starts.
    cursor: [usize; MAX_FUNNEL_STEPS],
    /// One-pass ordered search ([`Plan::best_ordered`]): each step-1 event seen, as its
    /// deadline and case position.
    starts: Vec<(i64, u32)>,
    /// Per level `k` (attempts that completed steps `1..=k` and wait for step `k + 1`), the
    /// range of `starts` holding them and the step-`k` event of the earliest of them. Only
    /// levels marked occupied are meaningful, so nothing is reset between cases.
    lo: [u32; MAX_FUNNEL_STEPS],
    hi: [u32; MAX_FUNNEL_STEPS],
    last: [u32; MAX_FUNNEL_STEPS],
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Attempt {
    reach: usize,
    first: usize,
    last: usize,
}

#[derive(Default)]
struct GroupAcc {
    case_reach: Vec<u64>,
    customer_reach: Vec<u64>,
    durations: Vec<i64>,
}

impl GroupAcc {
    fn new(n: usize) -> GroupAcc {
        GroupAcc {
            case_reach: vec![0; n + 1],
            customer_reach: vec![0; n + 1],
            durations: Vec::new(),
        }
    }

    fn merge(&mut self, o: GroupAcc) {
        add(&mut self.case_reach, &o.case_reach);
        add(&mut self.customer_reach, &o.customer_reach);
        self.durations.extend(o.durations);
    }
}

fn add(a: &mut [u64], b: &[u64]) {
    for (x, y) in a.iter_mut().zip(b) {
        *x += y;
    }
}

/// The customer whose cases are being folded: flushed when the next customer starts, and
/// at merge (a customer's cases never span partials).
struct Pending {
    stamp: u64,
    customer: CustomerId,
    reach: usize,
    groups: Vec<(u32, usize)>,
}

struct Acc {
    n: usize,
    dropped_step: Option<usize>,
    cases: u64,
    customers: u64,
    all: GroupAcc,
    groups: HashMap<u32, GroupAcc>,
    dropped: Vec<CustomerId>,
    pending: Option<Pending>,
    scratch: Scratch,
}

impl Acc {
    fn new(n: usize, dropped_step: Option<usize>) -> Acc {
        Acc {
            n,
            dropped_step,
            cases: 0,
            customers: 0,
            all: GroupAcc::new(n),
            groups: HashMap::new(),
            dropped: Vec::new(),
            pending: None,
            scratch: Scratch::default(),
        }
    }

    fn flush(&mut self) {
        let Some(p) = self.pending.take() else {
            return;
        };
        self.customers += 1;
        self.all.customer_reach[p.reach] += 1;
        if self.dropped_step.is_some_and(|k| p.reach + 1 == k) {
            self.dropped.push(p.customer);
        }
        for (g, r) in p.groups {
            let n = self.n;
            self.groups
                .entry(g)
                .or_insert_with(|| GroupAcc::new(n))
                .customer_reach[r] += 1;
        }
    }

    fn merge(mut self, mut o: Acc) -> Acc {
        self.flush();
        o.flush();
        self.cases += o.cases;
        self.customers += o.customers;
        self.all.merge(o.all);
        for (g, acc) in o.groups {
            let n = self.n;
            self.groups
                .entry(g)
                .or_insert_with(|| GroupAcc::new(n))
                .merge(acc);
        }
        self.dropped.extend(o.dropped);
        self
    }
}

/// Everything fixed for one run: matchers, compiled filters and breakdown tables.
struct Plan<'p> {
    mode: FunnelMode,
    window: Option<i64>,
    n: usize,
    /// Per global step code, the bits of the value steps it matches: one lookup per event.
    code_masks: Vec<u32>,
    /// `(bit, filter)` for each filter step.
    filter_steps: Vec<(usize, usize)>,
    /// Per global step code, whether a value exclusion matches it.
    code_excluded: Vec<bool>,
    filter_exclusions: Vec<usize>,
    /// Whether any exclusion step can match an event.
    excludes: bool,
    /// Whether [`Plan::best_ordered`] applies: ordered mode without exclusions.
    one_pass: bool,
    /// Per partition, the compiled filters the steps and exclusions point at.
    filters: Vec<Vec<CompiledFilter>>,
    breakdown: Option<&'p Breakdown>,
    group_tables: Vec<GroupTable>,
}

impl Plan<'_> {
    fn new<'p>(
        options: &'p FunnelOptions,
        step_count: usize,
        steps: &[Matcher],
        exclusions: &[Matcher],
        filters: Vec<Vec<CompiledFilter>>,
        group_tables: Vec<GroupTable>,
    ) -> Plan<'p> {
        let mut code_masks = vec![0u32; step_count];
        let mut filter_steps = Vec::new();
        for (k, m) in steps.iter().enumerate() {
            match *m {
                Matcher::Code(Some(c)) => code_masks[c as usize] |= 1 << k,
                Matcher::Code(None) => {}
                Matcher::Filter(f) => filter_steps.push((k, f)),
            }
        }
        let mut code_excluded = vec![false; step_count];
        let mut filter_exclusions = Vec::new();
        for m in exclusions {
            match *m {
                Matcher::Code(Some(c)) => code_excluded[c as usize] = true,
                Matcher::Code(None) => {}
                Matcher::Filter(f) => filter_exclusions.push(f),
            }
        }
        let excludes = !filter_exclusions.is_empty() || code_excluded.contains(&true);
        Plan {
            mode: options.mode,
            window: options.window,
            n: steps.len(),
            code_masks,
            filter_steps,
            code_excluded,
            filter_exclusions,
            excludes,
            one_pass: options.mode == FunnelMode::Ordered && !excludes,
            filters,
            breakdown: options.breakdown.as_ref(),
            group_tables,
        }
    }

    /// The case's best attempt, by the one-pass search where it applies (ordered mode
    /// without exclusions) and by trying each start otherwise.
    fn evaluate(&self, case: &Case<'_>, s: &mut Scratch) -> Option<Attempt> {
        if self.one_pass {
            let codes = &self.code_masks;
            if self.filter_steps.is_empty() {
                return self.best_ordered(case, s, |i| codes[case.steps[i] as usize]);
            }
            let filters = &self.filters[case.partition_index];
            return self.best_ordered(case, s, |i| {
                let e = case.events[i] as usize;
                let mut mask = codes[case.steps[i] as usize];
                for &(k, f) in &self.filter_steps {
                    if filters[f].matches(e) {
                        mask |= 1 << k;
                    }
                }
                mask
            });
        }
        self.prepare(case, s);
        self.best(case, s)
    }

    /// [`Plan::best`] for ordered mode without exclusions, in one pass over the case.
    ///
    /// Attempts that have completed the same steps and wait for the same next step take the
    /// same next event (the earliest later one matching it), so they move together: per
    /// level `k` there is one group, and an event matching step `k + 1` lifts the whole
    /// group to level `k + 1`, except the attempts whose window ended before it, which stop
    /// at `k`. New starts join level 1 and groups only merge upwards, so a higher level
    /// holds only earlier starts and each group is a contiguous run of `starts`. Windows
    /// grow with the start, so the stopped attempts are the run's prefix, and the earliest
    /// of them stands for them all (same reach). Entries between runs are stopped attempts
    /// whose windows ended before the current event, so a merged run's prefix check skips
    /// them as well. The first attempt to complete every step is the earliest one to do so,
    /// because all earlier starts are either in its group or have stopped.
    ///
    /// `mask(i)`: the steps case event `i` matches, bit `k` for step `k + 1`.
    fn best_ordered(
        &self,
        case: &Case<'_>,
        s: &mut Scratch,
        mask: impl Fn(usize) -> u32,
    ) -> Option<Attempt> {
        let n = self.n;
        let len = case.len();
        if len == 0 {
            return None;
        }
        // Whether no window can cut an attempt: the whole case lies within one window of its
        // first event. Read for every case, ahead of the scans: the loads then overlap them
        // and walk the timestamps in order, which the hardware prefetches, where reading
        // them only for cases that start the funnel misses the cache nearly every time.
        let fits = self
            .window
            .is_none_or(|w| case.ts(len - 1) <= case.ts(0).saturating_add(w));
        // Most cases never start the funnel: find the first start before any bookkeeping.
        let first = (0..len).find(|&i| mask(i) & 1 != 0)?;
        // The first start's attempt, ignoring the window. A later start's greedy matches
        // come no earlier, so no attempt completes more steps; if the window does not cut
        // this one, it is the best. That settles most cases with no timestamps beyond those
        // read for `fits`.
        let (mut reach, mut at) = (1, first);
        for i in first + 1..len {
            if reach == n {
                break;
            }
            if mask(i) >> reach & 1 != 0 {
                reach += 1;
                at = i;
            }
        }
        if at == first
            || fits
            || self
                .window
                .is_none_or(|w| case.ts(at) <= case.ts(first).saturating_add(w))
        {
            return Some(Attempt {
                reach,
                first,
                last: at,
            });
        }
        let Scratch {
            starts,
            lo,
            hi,
            last,
            ..
        } = s;
        starts.clear();
        // Bit `k`: level `k` has a group.
        let mut occupied = 0u32;
        // (reach, position in `starts`, last event) of the best stopped attempt so far.
        let mut best: Option<(usize, u32, u32)> = None;
        let mut stop = |reach: usize, start: u32, at: u32| {
            if best.is_none_or(|(r, p, _)| reach > r || (reach == r && start < p)) {
                best = Some((reach, start, at));
            }
        };
        for i in first..len {
            let m = mask(i);
            // Level `k` waits for step `k + 1`, which is bit `k` of the mask.
            let mut advance = occupied & m;
            if advance == 0 && m & 1 == 0 {
                continue;
            }
            let t = case.ts(i);
            // Highest level first, so one event serves each attempt for one step only.
            while advance != 0 {
                let k = (u32::BITS - 1 - advance.leading_zeros()) as usize;
                advance &= !(1 << k);
                occupied &= !(1 << k);
                let (mut l, h) = (lo[k], hi[k]);
                if starts[l as usize].0 < t {
                    stop(k, l, last[k]);
                    while l < h && starts[l as usize].0 < t {
                        l += 1;
                    }
                    if l == h {
                        continue;
                    }
                }
                if k + 1 == n {
                    return Some(Attempt {
                        reach: n,
                        first: starts[l as usize].1 as usize,
                        last: i,
                    });
                }
                let up = k + 1;
                if occupied & (1 << up) == 0 {
                    occupied |= 1 << up;
                    lo[up] = l;
                    last[up] = i as u32;
                }
                hi[up] = h;
            }
            if m & 1 != 0 {
                let p = starts.len() as u32;
                starts.push((
                    self.window.map_or(i64::MAX, |w| t.saturating_add(w)),
                    i as u32,
                ));
                if occupied & 2 == 0 {
                    occupied |= 2;
                    lo[1] = p;
                    last[1] = i as u32;
                }
                hi[1] = p + 1;
            }
        }
        while occupied != 0 {
            let k = (u32::BITS - 1 - occupied.leading_zeros()) as usize;
            occupied &= !(1 << k);
            stop(k, lo[k], last[k]);
        }
        best.map(|(reach, p, at)| Attempt {
            reach,
            first: starts[p as usize].1 as usize,
            last: at as usize,
        })
    }

    /// Fills the per-event step masks (and, with exclusions, their prefix counts) for
    /// `case`, and rewinds the step cursors.
    fn prepare(&self, case: &Case<'_>, s: &mut Scratch) {
        let len = case.len();
        let filters = &self.filters[case.partition_index];
        s.masks.clear();
        for (&code, &e) in case.steps.iter().zip(case.events) {
            let mut mask = self.code_masks[code as usize];
            for &(k, f) in &self.filter_steps {
                if filters[f].matches(e as usize) {
                    mask |= 1 << k;
                }
            }
            s.masks.push(mask);
        }
        s.excluded.clear();
        if self.excludes {
            s.excluded.push(0);
            let mut before = 0;
            for i in 0..len {
                let e = case.events[i] as usize;
                let excluded = s.masks[i] == 0
                    && (self.code_excluded[case.steps[i] as usize]
                        || self
                            .filter_exclusions
                            .iter()
                            .any(|&f| filters[f].matches(e)));
                before += u32::from(excluded);
                s.excluded.push(before);
            }
        }
        s.cursor = [0; MAX_FUNNEL_STEPS];
    }

    fn deadline(&self, case: &Case<'_>, first: usize) -> i64 {
        self.window
            .map_or(i64::MAX, |w| case.ts(first).saturating_add(w))
    }

    /// The attempt starting at case event `first`, without the exclusion check, and whether
    /// the window cut it short (as opposed to the case running out of matching events).
    fn attempt(&self, case: &Case<'_>, s: &mut Scratch, first: usize) -> (Attempt, bool) {
        let n = self.n;
        let len = case.len();
        let deadline = self.deadline(case, first);
        let mut a = Attempt {
            reach: 1,
            first,
            last: first,
        };
        let mut cut = false;
        match self.mode {
            FunnelMode::Strict => {
                for k in 1..n {
                    let i = a.last + 1;
                    if i >= len || s.masks[i] >> k & 1 == 0 {
                        break;
                    }
                    if case.ts(i) > deadline {
                        cut = true;
                        break;
                    }
                    a = Attempt {
                        reach: k + 1,
                        first,
                        last: i,
                    };
                }
            }
            FunnelMode::Ordered => {
                for k in 1..n {
                    let c = &mut s.cursor[k];
                    *c = (*c).max(a.last + 1);
                    while *c < len && s.masks[*c] >> k & 1 == 0 {
                        *c += 1;
                    }
                    let i = *c;
                    if i == len {
                        break;
                    }
                    if case.ts(i) > deadline {
                        cut = true;
                        break;
                    }
                    a = Attempt {
                        reach: k + 1,
                        first,
                        last: i,
                    };
                }
            }
            FunnelMode::AnyOrder => {
                // Bipartite matching of steps to events, grown one event at a time: an
                // augmenting path keeps every matched event matched, so `first` stays in.
                let mut owner = [u32::MAX; MAX_FUNNEL_STEPS];
                let mut size = 0;
                for i in first..len {
                    if size == n {
                        break;
                    }
                    if case.ts(i) > deadline {
                        cut = true;
                        break;
                    }
                    if s.masks[i] != 0 && augment(i, &s.masks, &mut owner, &mut 0) {
                        size += 1;
                        a = Attempt {
                            reach: size,
                            first,
                            last: i,
                        };
                    }
                }
            }
        }
        (a, cut)
    }

    fn disqualified(&self, s: &Scratch, a: &Attempt) -> bool {
        !s.excluded.is_empty()
            && a.last > a.first + 1
            && s.excluded[a.last] > s.excluded[a.first + 1]
    }

    /// The case's best attempt: furthest, then earliest.
    fn best(&self, case: &Case<'_>, s: &mut Scratch) -> Option<Attempt> {
        let n = self.n;
        let start_mask = if self.mode == FunnelMode::AnyOrder {
            u32::MAX
        } else {
            1
        };
        let mut best: Option<Attempt> = None;
        for first in 0..case.len() {
            if s.masks[first] & start_mask == 0 {
                continue;
            }
            let (a, cut) = self.attempt(case, s, first);
            if self.disqualified(s, &a) {
                continue;
            }
            if best.is_none_or(|b| a.reach > b.reach) {
                best = Some(a);
            }
            // A later start sees only later events: in ordered mode its greedy matches come
            // no earlier, in any-order mode it has a subset of the events. So once an attempt
            // ran out of events rather than time, none after it reaches further.
            let exhausted = !cut && self.mode != FunnelMode::Strict;
            if a.reach == n || exhausted {
                break;
            }
        }
        best
    }

    fn group(&self, case: &Case<'_>, first: usize, p: usize) -> u32 {
        let j = case.journeys;
        match self.breakdown {
            None => 0,
            Some(Breakdown::Property(name)) => {
                self.group_tables[p].lookup(j.properties.get(name), case.events[first] as usize)
            }
            Some(Breakdown::Trait(name)) => {
                let col = j.traits.get(name);
                // The current value: the last one present anywhere in the customer's journey.
                j.customer_range(case.customer_index)
                    .rev()
                    .map(|e| self.group_tables[p].lookup(col, e))
                    .find(|&g| g != 0)
                    .unwrap_or(0)
            }
        }
    }
}

/// Kuhn's augmenting path from event `i`: gives it a step, moving other events to other
/// steps as needed. `visited` marks steps tried in this search.
fn augment(
    i: usize,
    masks: &[u32],
    owner: &mut [u32; MAX_FUNNEL_STEPS],
    visited: &mut u32,
) -> bool {
    let mut m = masks[i] & !*visited;
    while m != 0 {
        let k = m.trailing_zeros() as usize;
        m &= m - 1;
        *visited |= 1 << k;
        if owner[k] == u32::MAX || augment(owner[k] as usize, masks, owner, visited) {
            owner[k] = i as u32;
            return true;
        }
    }
    false
}

fn resolve(
    prepared: &Prepared<'_>,
    steps: &[FunnelStep],
    filters: &mut Vec<EventFilter>,
) -> Vec<Matcher> {
    steps
        .iter()
        .map(|s| match s {
            FunnelStep::Value(v) => Matcher::Code(
                prepared
                    .step_names()
                    .binary_search(v)
                    .ok()
                    .map(|c| c as u32),
            ),
            FunnelStep::Filter(f) => {
                filters.push(f.clone());
                Matcher::Filter(filters.len() - 1)
            }
        })
        .collect()
}

/// Global breakdown values (sorted; group id = position + 1) and each partition's table.
fn group_tables(
    partitions: &[std::sync::Arc<Journeys>],
    by: &Breakdown,
) -> (Vec<String>, Vec<GroupTable>) {
    fn column<'j>(j: &'j Journeys, by: &Breakdown) -> Option<&'j PropertyColumn> {
        match by {
            Breakdown::Property(p) => j.properties.get(p),
            Breakdown::Trait(t) => j.traits.get(t),
        }
    }
    let local: Vec<Vec<String>> = partitions
        .par_iter()
        .map(|j| match column(j, by) {
            Some(PropertyColumn::Text { dict, .. }) => dict.values.clone(),
            Some(PropertyColumn::Num(v)) => {
                let mut vals: Vec<f64> = v.iter().filter(|x| !x.is_nan()).collect();
                vals.sort_by(f64::total_cmp);
                vals.dedup_by(|a, b| a.total_cmp(b).is_eq());
                vals.iter().map(|x| format!("{x}")).collect()
            }
            None => Vec::new(),
        })
        .collect();
    let names: Vec<String> = local
        .iter()
        .flatten()
        .cloned()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let id = |v: &str| {
        names
            .binary_search_by(|n| n.as_str().cmp(v))
            .map_or(0, |i| i as u32 + 1)
    };
    let tables = partitions
        .iter()
        .map(|j| match column(j, by) {
            Some(PropertyColumn::Text { dict, .. }) => GroupTable::Text(
                std::iter::once(0)
                    .chain(dict.values.iter().map(|v| id(v)))
                    .collect(),
            ),
            Some(PropertyColumn::Num(v)) => {
                let mut vals: Vec<f64> = v.iter().filter(|x| !x.is_nan()).collect();
                vals.sort_by(f64::total_cmp);
                vals.dedup_by(|a, b| a.total_cmp(b).is_eq());
                GroupTable::Num(vals.into_iter().map(|x| (x, id(&format!("{x}")))).collect())
            }
            None => GroupTable::Absent,
        })
        .collect();
    (names, tables)
}

fn step_results(
    labels: &[String],
    case_reach: &[u64],
    customer_reach: &[u64],
) -> Vec<FunnelStepResult> {
    let n = labels.len();
    // Cumulative: reaching at least k.
    let at_least = |exact: &[u64]| {
        let mut c = vec![0u64; n + 2];
        for k in (0..=n).rev() {
            c[k] = c[k + 1] + exact[k];
        }
        c
    };
    let cases = at_least(case_reach);
    let customers = at_least(customer_reach);
    let ratio = |a: u64, b: u64| (b > 0).then(|| a as f64 / b as f64);
    (1..=n)
        .map(|k| FunnelStepResult {
            index: k,
            label: labels[k - 1].clone(),
            cases: cases[k],
            customers: customers[k],
            conversion_from_previous: ratio(cases[k], cases[k - 1]),
            conversion_from_first: ratio(cases[k], cases[1]),
            dropped_cases: case_reach[k - 1],
            dropped_customers: customer_reach[k - 1],
        })
        .collect()
}

fn time_to_convert(mut durations: Vec<i64>) -> TimeToConvert {
    let mut counts = [0u64; BUCKETS.len() + 1];
    for &d in &durations {
        counts[BUCKETS
            .iter()
            .position(|&(hi, _)| d < hi)
            .unwrap_or(BUCKETS.len())] += 1;
    }
    let mut from = 0;
    let mut histogram = Vec::with_capacity(counts.len());
    for (i, &cases) in counts.iter().enumerate() {
        let (to, label) = BUCKETS
            .get(i)
            .map_or((None, LAST_BUCKET), |&(hi, l)| (Some(hi), l));
        histogram.push(HistogramBucket {
            label: label.to_string(),
            from_s: micros_to_seconds(from as f64),
            to_s: to.map(|t| micros_to_seconds(t as f64)),
            cases,
        });
        from = to.unwrap_or(from);
    }
    let mean = (!durations.is_empty()).then(|| {
        let sum: i128 = durations.iter().map(|&d| i128::from(d)).sum();
        micros_to_seconds(sum as f64 / durations.len() as f64)
    });
    TimeToConvert {
        converted: durations.len() as u64,
        median_s: quantile(&mut durations, 0.5).map(micros_to_seconds),
        p90_s: quantile(&mut durations, 0.9).map(micros_to_seconds),
        mean_s: mean,
        histogram,
    }
}

fn validate(options: &FunnelOptions) -> Result<(), EngineError> {
    let bad =
        |option: &'static str, reason: String| Err(EngineError::InvalidOption { option, reason });
    let n = options.steps.len();
    if !(2..=MAX_FUNNEL_STEPS).contains(&n) {
        return bad(
            "step",
            format!("a funnel needs 2 to {MAX_FUNNEL_STEPS} steps, got {n}"),
        );
    }
    if options.exclusions.len() > MAX_FUNNEL_STEPS {
        return bad(
            "exclude",
            format!("at most {MAX_FUNNEL_STEPS} exclusion steps"),
        );
    }
    for s in options.steps.iter().chain(&options.exclusions) {
        if matches!(s, FunnelStep::Value(v) if v.is_empty()) {
            return bad("step", "a step value is empty".to_string());
        }
    }
    if options.window.is_some_and(|w| w <= 0) {
        return bad("window", "must be longer than zero".to_string());
    }
    if let Some(d) = options.dropped {
        if !(1..=n).contains(&d.step) {
            return bad(
                "dropped-at",
                format!("must be a step number from 1 to {n}, got {}", d.step),
            );
        }
        if d.limit == 0 || d.limit > MAX_DROPPED_PAGE {
            return bad(
                "limit",
                format!("must be between 1 and {MAX_DROPPED_PAGE}, got {}", d.limit),
            );
        }
    }
    Ok(())
}

/// Runs the funnel over the prepared cases. `stages` resolves `stage` in filter steps.
pub fn funnel(
    prepared: &Prepared<'_>,
    stages: &Stages,
    options: &FunnelOptions,
) -> Result<Funnel, EngineError> {
    validate(options)?;
    let n = options.steps.len();
    let mut filters = Vec::new();
    let steps = resolve(prepared, &options.steps, &mut filters);
    let exclusions = resolve(prepared, &options.exclusions, &mut filters);
    let partitions = prepared.partitions();
    let compiled = partitions
        .par_iter()
        .map(|j| {
            filters
                .iter()
                .map(|f| {
                    f.compile(j, stages)
                        .map_err(|e| EngineError::InvalidOption {
                            option: "step",
                            reason: format!("{}: {e}", f.source()),
                        })
                })
                .collect::<Result<Vec<_>, _>>()
        })
        .collect::<Result<Vec<_>, _>>()?;
    let (group_names, tables) = match &options.breakdown {
        Some(by) => group_tables(partitions, by),
        None => (Vec::new(), Vec::new()),
    };
    let plan = Plan::new(
        options,
        prepared.step_names().len(),
        &steps,
        &exclusions,
        compiled,
        tables,
    );
    let dropped_step = options.dropped.map(|d| d.step);

    let mut acc = prepared.fold_cases(
        || Acc::new(n, dropped_step),
        |acc, case| {
            let stamp = Prepared::customer_stamp(case);
            if acc.pending.as_ref().is_some_and(|p| p.stamp != stamp) {
                acc.flush();
            }
            let pending = acc.pending.get_or_insert_with(|| Pending {
                stamp,
                customer: case.customer,
                reach: 0,
                groups: Vec::new(),
            });
            acc.cases += 1;
            let best = plan.evaluate(case, &mut acc.scratch);
            let reach = best.map_or(0, |a| a.reach);
            acc.all.case_reach[reach] += 1;
            pending.reach = pending.reach.max(reach);
            let Some(a) = best else {
                return;
            };
            let duration = (reach == n).then(|| case.ts(a.last) - case.ts(a.first));
            if let Some(d) = duration {
                acc.all.durations.push(d);
            }
            if plan.breakdown.is_some() {
                let g = plan.group(case, a.first, case.partition_index);
                match pending.groups.iter_mut().find(|(x, _)| *x == g) {
                    Some((_, r)) => *r = (*r).max(reach),
                    None => pending.groups.push((g, reach)),
                }
                let group = acc.groups.entry(g).or_insert_with(|| GroupAcc::new(n));
                group.case_reach[reach] += 1;
                if let Some(d) = duration {
                    group.durations.push(d);
                }
            }
        },
        Acc::merge,
    );
    acc.flush();

    let labels: Vec<String> = options.steps.iter().map(FunnelStep::label).collect();
    let breakdown = options.breakdown.as_ref().map(|by| {
        let mut groups: Vec<(u32, GroupAcc)> = acc.groups.drain().collect();
        groups.retain(|(_, g)| g.case_reach[1..].iter().sum::<u64>() > 0);
        let entered = |g: &GroupAcc| g.case_reach[1..].iter().sum::<u64>();
        groups.sort_by(|(a, x), (b, y)| {
            entered(y)
                .cmp(&entered(x))
                .then_with(|| (*a == 0).cmp(&(*b == 0)))
                .then_with(|| a.cmp(b))
        });
        FunnelBreakdown {
            by: by.to_string(),
            groups: groups
                .into_iter()
                .map(|(g, acc)| FunnelGroup {
                    value: (g > 0).then(|| group_names[g as usize - 1].clone()),
                    steps: step_results(&labels, &acc.case_reach, &acc.customer_reach),
                    time_to_convert: time_to_convert(acc.durations),
                })
                .collect(),
        }
    });
    let dropped = options.dropped.map(|d| {
        acc.dropped.sort_unstable();
        let total = acc.dropped.len();
        DroppedCustomers {
            step: d.step,
            total: total as u64,
            offset: d.offset,
            limit: d.limit,
            customers: acc
                .dropped
                .iter()
                .skip(d.offset)
                .take(d.limit)
                .copied()
                .collect(),
        }
    });
    Ok(Funnel {
        step: prepared.step_dimension().to_string(),
        case: prepared.case_split().to_string(),
        mode: options.mode,
        window_s: options.window.map(|w| micros_to_seconds(w as f64)),
        exclusions: options.exclusions.iter().map(FunnelStep::label).collect(),
        cases: acc.cases,
        customers: acc.customers,
        steps: step_results(&labels, &acc.all.case_reach, &acc.all.customer_reach),
        time_to_convert: time_to_convert(std::mem::take(&mut acc.all.durations)),
        breakdown,
        dropped,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use omnitrail_model::journeys::Dictionary;
    use omnitrail_model::ProjectId;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    const CODES: u32 = 4;

    /// The one-pass ordered search against trying every start, on one case of step codes
    /// `0..CODES` at the given times; returns the attempt as (reach, first, last).
    fn compare(
        steps: &[u32],
        codes: &[u32],
        gaps: &[i64],
        window: Option<i64>,
    ) -> Option<(usize, usize, usize)> {
        let mut ts = Vec::with_capacity(gaps.len());
        let mut t = 0;
        for &g in gaps {
            t += g;
            ts.push(t);
        }
        let j = Journeys {
            project: ProjectId::DEFAULT,
            partition: 0,
            customers: vec![CustomerId(1)],
            offsets: vec![0, ts.len() as u32],
            activity: vec![0; ts.len()].into(),
            activities: Dictionary::default(),
            channel: vec![0; ts.len()],
            channels: Dictionary::default(),
            ts,
            properties: BTreeMap::new(),
            traits: BTreeMap::new(),
        };
        let events: Vec<u32> = (0..codes.len() as u32).collect();
        let case = Case {
            customer: CustomerId(1),
            customer_index: 0,
            journeys: &j,
            events: &events,
            steps: codes,
            partition_index: 0,
        };
        let options = FunnelOptions {
            window,
            ..FunnelOptions::new(Vec::new())
        };
        let matchers: Vec<Matcher> = steps.iter().map(|&c| Matcher::Code(Some(c))).collect();
        let plan = Plan::new(
            &options,
            CODES as usize,
            &matchers,
            &[],
            vec![Vec::new()],
            Vec::new(),
        );
        assert!(plan.one_pass);
        let mut s = Scratch::default();
        let fast = plan.evaluate(&case, &mut s);
        plan.prepare(&case, &mut s);
        let slow = plan.best(&case, &mut s);
        assert_eq!(
            fast, slow,
            "steps {steps:?} codes {codes:?} gaps {gaps:?} window {window:?}"
        );
        fast.map(|a| (a.reach, a.first, a.last))
    }

    #[test]
    fn one_pass_keeps_the_earliest_furthest_attempt() {
        // The first start is cut by the window; a later one completes.
        assert_eq!(
            compare(&[0, 1, 2], &[0, 1, 0, 1, 2], &[0, 1, 1, 1, 5], Some(6)),
            Some((3, 2, 4))
        );
        // Two starts wait for step 2 together; only the later one still has time for it.
        assert_eq!(
            compare(&[0, 1, 2], &[0, 0, 1, 2], &[0, 3, 2, 1], Some(4)),
            Some((3, 1, 3))
        );
        // One event serves two steps of different attempts, never two of the same.
        assert_eq!(
            compare(&[0, 0, 0], &[0, 0, 0, 0], &[0, 1, 9, 1], Some(2)),
            Some((2, 0, 1))
        );
        // A start stopped at step 1 lies between two groups that merge at step 2; the next
        // step skips it along with the earlier group's stopped start.
        assert_eq!(
            compare(
                &[0, 1, 2, 3],
                &[0, 1, 0, 0, 1, 2, 3],
                &[0, 1, 1, 6, 1, 1, 1],
                Some(5),
            ),
            Some((4, 3, 6))
        );
        // No start, and no window.
        assert_eq!(compare(&[1, 2], &[0, 2, 3], &[0, 1, 1], None), None);
        assert_eq!(
            compare(&[1, 2], &[1, 0, 1, 2], &[0, 9, 9, 9], None),
            Some((2, 0, 3))
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3000))]

        #[test]
        fn one_pass_equals_trying_every_start(
            steps in proptest::collection::vec(0..CODES, 2..6),
            case in proptest::collection::vec(
                (0..CODES, prop_oneof![Just(0i64), Just(1), Just(3), 0..12i64]),
                1..40,
            ),
            window in proptest::option::of(1..10i64),
        ) {
            let (codes, gaps): (Vec<u32>, Vec<i64>) = case.into_iter().unzip();
            compare(&steps, &codes, &gaps, window);
        }
    }
}
