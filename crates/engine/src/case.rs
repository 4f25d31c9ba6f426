//! Cases (journey instances) and the prepared query that enumerates them.
//!
//! [`Prepared::new`] does the per-partition work once: global step codes (sorted by name so
//! they are deterministic), a small table per partition from its dictionary codes to global
//! step codes, and the compiled filter and segment. [`Prepared::fold_cases`] then walks every
//! customer in parallel chunks and hands each case to the analysis without allocating per
//! event.

use crate::expr::{CompiledFilter, CompiledSegment};
use crate::query::{required_scan, CaseSplit, Query, StepDimension};
use crate::{EngineError, Stages};
use omnitrail_model::journeys::{Codes, Journeys, Nums, PropertyColumn, ScanSpec};
use omnitrail_model::CustomerId;
use rayon::prelude::*;
use std::collections::{BTreeSet, HashMap};
use std::ops::Range;
use std::sync::Arc;

/// Marks an event that has no step (a step property it lacks, an activity with no stage).
const NO_STEP: u32 = u32::MAX;

/// Chunks of about this many events are the unit of parallel work: small enough to spread a
/// big partition over every core, big enough that per-chunk partials stay cheap to merge.
const CHUNK_EVENTS: usize = 1 << 16;

/// A dense pair table is used for touchpoints while activities × channels stays this small.
const MAX_PAIR_TABLE: usize = 1 << 22;

/// One case: a customer's events (or one journey instance of them) after the time range and
/// the event filter, in time order, with each event's global step code.
#[derive(Clone, Copy, Debug)]
pub struct Case<'a> {
    pub customer: CustomerId,
    /// The customer's position in `journeys.customers`.
    pub customer_index: usize,
    pub journeys: &'a Journeys,
    /// Event indices into `journeys`, in time order.
    pub events: &'a [u32],
    /// Global step code per event (index into [`Prepared::step_names`]), same length.
    pub steps: &'a [u32],
    /// Which of the prepared partitions `journeys` is.
    pub partition_index: usize,
}

impl Case<'_> {
    pub fn len(&self) -> usize {
        self.events.len()
    }

    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// Timestamp (µs) of the case's `k`-th event.
    pub fn ts(&self, k: usize) -> i64 {
        self.journeys.ts[self.events[k] as usize]
    }

    pub fn channel_name(&self, k: usize) -> &str {
        let j = self.journeys;
        &j.channels.values[j.channel[self.events[k] as usize] as usize]
    }

    pub fn activity_name(&self, k: usize) -> &str {
        let j = self.journeys;
        &j.activities.values[j.activity.get(self.events[k] as usize) as usize]
    }

    /// Last minus first timestamp, in µs (0 for a single event).
    pub fn duration(&self) -> i64 {
        match self.events.len() {
            0 => 0,
            n => self.ts(n - 1) - self.ts(0),
        }
    }
}

/// How one partition's events map to global step codes.
enum StepMap {
    Activity(Vec<u32>),
    Channel(Vec<u32>),
    /// `table[activity * channels + channel]`.
    Pair {
        table: Vec<u32>,
        channels: usize,
    },
    /// Text property: `table[code]`, code 0 (missing) maps to `NO_STEP`.
    Text {
        property: String,
        table: Vec<u32>,
    },
    /// Numeric property values or oversized touchpoint alphabets: a code per event.
    PerEvent(Vec<u32>),
    /// The partition lacks the step property altogether.
    Nothing,
}

/// How one partition's events key a property case split.
enum CaseKey {
    None,
    Text(String),
    Num(String),
    /// The partition lacks the case property: no event is in any case.
    Missing,
}

struct PartitionPlan {
    steps: StepMap,
    case_key: CaseKey,
    filter: Option<CompiledFilter>,
    segment: Option<CompiledSegment>,
    /// Which customers (by index) the query's customer set keeps; `None` keeps everyone.
    members: Option<Vec<bool>>,
    /// Every event's global step code, when no filter or case key can drop events: cases
    /// are then slices of it, and every analysis pass over the query skips the mapping.
    codes: Option<Vec<u32>>,
    /// Whether `codes` holds events without a step.
    has_skip: bool,
}

/// A contiguous run of customers of one partition: the unit of parallel work.
struct Chunk {
    partition: usize,
    customers: Range<usize>,
}

/// A query bound to the partitions it runs over, ready to enumerate cases.
pub struct Prepared<'a> {
    partitions: &'a [Arc<Journeys>],
    plans: Vec<PartitionPlan>,
    step_names: Vec<String>,
    step: StepDimension,
    case: CaseSplit,
    from: i64,
    to: i64,
    chunks: Vec<Chunk>,
    /// `iota[i] == i`, as long as the largest partition: event indices of contiguous cases.
    iota: Vec<u32>,
}

/// Reusable per-chunk buffers, so walking customers allocates nothing per event.
#[derive(Default)]
struct Buffers {
    events: Vec<u32>,
    steps: Vec<u32>,
    keys: Vec<u64>,
    scratch: Scratch,
}

/// Buffers for splitting one customer's events into cases.
#[derive(Default)]
struct Scratch {
    order: Vec<u32>,
    ranks: Vec<(u64, u32)>,
    sorted_events: Vec<u32>,
    sorted_steps: Vec<u32>,
    out_events: Vec<u32>,
    out_steps: Vec<u32>,
}

/// A partition's step codes with the columns resolved once per chunk, so the per-event loop
/// is an array lookup.
enum StepSource<'j> {
    Codes32 {
        codes: &'j [u32],
        table: &'j [u32],
    },
    Codes16 {
        codes: &'j [u16],
        table: &'j [u32],
    },
    Codes8 {
        codes: &'j [u8],
        table: &'j [u32],
    },
    Pair {
        activity: &'j Codes,
        channel: &'j [u16],
        table: &'j [u32],
        channels: usize,
    },
    PerEvent(&'j [u32]),
    Nothing,
}

impl<'j> StepSource<'j> {
    /// Steps by a dictionary-coded column, in its width.
    fn codes(codes: &'j Codes, table: &'j [u32]) -> StepSource<'j> {
        match codes {
            Codes::U8(codes) => StepSource::Codes8 { codes, table },
            Codes::U16(codes) => StepSource::Codes16 { codes, table },
            Codes::U32(codes) => StepSource::Codes32 { codes, table },
        }
    }

    #[inline]
    fn step(&self, e: usize) -> u32 {
        match self {
            StepSource::Codes32 { codes, table } => table[codes[e] as usize],
            StepSource::Codes16 { codes, table } => table[codes[e] as usize],
            StepSource::Codes8 { codes, table } => table[codes[e] as usize],
            StepSource::Pair {
                activity,
                channel,
                table,
                channels,
            } => table[activity.get(e) as usize * channels + channel[e] as usize],
            StepSource::PerEvent(t) => t[e],
            StepSource::Nothing => NO_STEP,
        }
    }
}

impl StepSource<'_> {
    /// Every event's step, with the dispatch hoisted out of the loop.
    fn all(&self, events: usize) -> Vec<u32> {
        match self {
            StepSource::Codes32 { codes, table } => {
                codes.iter().map(|&c| table[c as usize]).collect()
            }
            StepSource::Codes16 { codes, table } => {
                codes.iter().map(|&c| table[c as usize]).collect()
            }
            StepSource::Codes8 { codes, table } => {
                codes.iter().map(|&c| table[c as usize]).collect()
            }
            StepSource::Pair {
                activity,
                channel,
                table,
                channels,
            } => activity
                .iter()
                .zip(channel.iter())
                .map(|(a, &c)| table[a as usize * channels + c as usize])
                .collect(),
            StepSource::PerEvent(t) => t.to_vec(),
            StepSource::Nothing => vec![NO_STEP; events],
        }
    }
}

/// A partition's case-split key column, resolved once per chunk.
enum KeySource<'j> {
    None,
    Text(&'j Codes),
    Num(&'j Nums),
}

impl KeySource<'_> {
    /// The event's case key; `None` when the event has no value and so is in no case.
    #[inline]
    fn key(&self, e: usize) -> Option<u64> {
        match self {
            KeySource::None => Some(0),
            KeySource::Text(codes) => {
                let code = codes.get(e);
                (code != 0).then_some(u64::from(code))
            }
            KeySource::Num(v) => {
                let value = v.get(e);
                (!value.is_nan()).then(|| value.to_bits())
            }
        }
    }
}

impl<'a> Prepared<'a> {
    pub fn new(
        partitions: &'a [Arc<Journeys>],
        stages: &Stages,
        query: &Query,
    ) -> Result<Prepared<'a>, EngineError> {
        Prepared::with(partitions, stages, query, &query.step, &query.case)
    }

    /// Like [`Prepared::new`] with the step dimension and case split replaced, for analyses
    /// defined on a fixed dimension (channel switching is on channels of whole journeys).
    pub fn with(
        partitions: &'a [Arc<Journeys>],
        stages: &Stages,
        query: &Query,
        step: &StepDimension,
        case: &CaseSplit,
    ) -> Result<Prepared<'a>, EngineError> {
        if let (Some(from), Some(to)) = (query.from, query.to) {
            if from >= to {
                return Err(EngineError::EmptyTimeRange { from, to });
            }
        }
        // Local step names per partition, then one sorted global alphabet.
        let locals: Vec<LocalSteps> = partitions
            .par_iter()
            .map(|j| local_steps(j, stages, step))
            .collect();
        let mut all = BTreeSet::new();
        for l in &locals {
            all.extend(l.names.iter().map(String::as_str));
        }
        let step_names: Vec<String> = all.into_iter().map(str::to_string).collect();
        let global: HashMap<&str, u32> = step_names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.as_str(), i as u32))
            .collect();

        let plans = partitions
            .par_iter()
            .zip(locals.into_par_iter())
            .enumerate()
            .map(|(index, (j, local))| {
                let filter = match &query.filter {
                    Some(f) => Some(f.compile(j, stages).map_err(|e| EngineError::Filter {
                        partition: index,
                        reason: e.to_string(),
                    })?),
                    None => None,
                };
                let segment =
                    match &query.segment {
                        Some(s) => Some(s.compile(j, stages, query.now).map_err(|e| {
                            EngineError::Segment {
                                partition: index,
                                reason: e.to_string(),
                            }
                        })?),
                        None => None,
                    };
                let members = query
                    .customers
                    .as_ref()
                    .map(|set| j.customers.iter().map(|&c| set.contains(c)).collect());
                let steps = local.into_map(&global);
                let filtered = filter.as_ref().is_some_and(|f| !f.always_matches());
                let codes = (!filtered && !matches!(case, CaseSplit::Property(_)))
                    .then(|| steps.source(j).all(j.events()));
                let has_skip = codes.as_ref().is_some_and(|c| c.contains(&NO_STEP));
                Ok(PartitionPlan {
                    steps,
                    case_key: case_key(j, case),
                    filter,
                    segment,
                    members,
                    codes,
                    has_skip,
                })
            })
            .collect::<Result<Vec<_>, EngineError>>()?;

        let mut chunks = Vec::new();
        for (p, j) in partitions.iter().enumerate() {
            let mut start = 0;
            while start < j.customers.len() {
                let first_event = j.offsets[start] as usize;
                let mut end = start + 1;
                while end < j.customers.len()
                    && (j.offsets[end] as usize) - first_event < CHUNK_EVENTS
                {
                    end += 1;
                }
                chunks.push(Chunk {
                    partition: p,
                    customers: start..end,
                });
                start = end;
            }
        }

        Ok(Prepared {
            partitions,
            plans,
            step_names,
            step: step.clone(),
            case: case.clone(),
            from: query.from.unwrap_or(i64::MIN),
            to: query.to.unwrap_or(i64::MAX),
            chunks,
            iota: (0..partitions.iter().map(|j| j.events()).max().unwrap_or(0) as u32).collect(),
        })
    }

    /// Global step code → name, sorted by name.
    pub fn step_names(&self) -> &[String] {
        &self.step_names
    }

    pub fn partitions(&self) -> &'a [Arc<Journeys>] {
        self.partitions
    }

    /// The step dimension the cases' step codes are in.
    pub fn step_dimension(&self) -> &StepDimension {
        &self.step
    }

    pub fn case_split(&self) -> &CaseSplit {
        &self.case
    }

    /// A number unique to the customer of `case` among all prepared partitions: partials
    /// count distinct customers by comparing it with the last one they saw, which works
    /// because a customer's cases are folded one after another in the same chunk.
    pub fn customer_stamp(case: &Case<'_>) -> u64 {
        ((case.partition_index as u64) << 32 | case.customer_index as u64) + 1
    }

    /// The property and trait columns the query needs loaded.
    pub fn required_scan(query: &Query) -> ScanSpec {
        required_scan(query)
    }

    /// Folds every non-empty case into a partial result, in parallel over chunks of
    /// customers, and merges the partials in chunk order. `merge` must be associative and
    /// agree with `fold` (merging two partials equals folding both runs of cases into one);
    /// then the result does not depend on how the work was split.
    pub fn fold_cases<P: Send>(
        &self,
        init: impl Fn() -> P + Sync + Send,
        fold: impl Fn(&mut P, &Case<'_>) + Sync + Send,
        merge: impl Fn(P, P) -> P + Sync + Send,
    ) -> P {
        // Each rayon fold walks a contiguous run of chunks with one partial and one set of
        // buffers; reduce merges neighbouring partials, so the order of merging is fixed.
        // A few runs per thread: enough to balance load, few enough that partials (which can
        // hold sizeable tables) stay cheap to create and merge.
        let min_len = (self.chunks.len() / (4 * rayon::current_num_threads())).max(1);
        self.chunks
            .par_iter()
            .with_min_len(min_len)
            .fold(
                || (init(), Buffers::default()),
                |(mut acc, mut buf), chunk| {
                    self.walk_chunk(chunk, &mut buf, &mut |case| fold(&mut acc, case));
                    (acc, buf)
                },
            )
            .map(|(acc, _)| acc)
            .reduce_with(&merge)
            .unwrap_or_else(&init)
    }

    fn walk_chunk(&self, chunk: &Chunk, buf: &mut Buffers, emit: &mut dyn FnMut(&Case<'_>)) {
        let j: &Journeys = &self.partitions[chunk.partition];
        let plan = &self.plans[chunk.partition];
        let steps = plan.steps.source(j);
        let keys = match &plan.case_key {
            CaseKey::None => KeySource::None,
            CaseKey::Text(p) => match j.properties.get(p) {
                Some(PropertyColumn::Text { codes, .. }) => KeySource::Text(codes),
                _ => return,
            },
            CaseKey::Num(p) => match j.properties.get(p) {
                Some(PropertyColumn::Num(v)) => KeySource::Num(v),
                _ => return,
            },
            CaseKey::Missing => return,
        };
        let filter = plan.filter.as_ref().filter(|f| !f.always_matches());
        if filter.is_some_and(|f| f.never_matches()) {
            return;
        }
        // Without a filter or a case key, a customer's events in the time range are a
        // contiguous run: the case's event indices are a slice of `iota`, no copying.
        let direct = filter.is_none() && matches!(keys, KeySource::None);
        let Buffers {
            events: event_buf,
            steps: step_buf,
            keys: key_buf,
            scratch,
        } = buf;
        for ci in chunk.customers.clone() {
            if plan.members.as_ref().is_some_and(|m| !m[ci]) {
                continue;
            }
            if let Some(seg) = &plan.segment {
                if !seg.matches(ci) {
                    continue;
                }
            }
            let range = j.customer_range(ci);
            let (lo, hi) = if self.from == i64::MIN && self.to == i64::MAX {
                (range.start, range.end)
            } else {
                let ts = &j.ts[range.clone()];
                (
                    range.start + ts.partition_point(|&t| t < self.from),
                    range.start + ts.partition_point(|&t| t < self.to),
                )
            };
            if lo == hi {
                continue;
            }
            step_buf.clear();
            key_buf.clear();
            if let (true, Some(codes)) = (direct, &plan.codes) {
                let steps = &codes[lo..hi];
                let any_skip = plan.has_skip && steps.contains(&NO_STEP);
                let who = Who {
                    journeys: j,
                    customer_index: ci,
                    partition_index: chunk.partition,
                };
                self.split(who, &self.iota[lo..hi], steps, &[], any_skip, scratch, emit);
                continue;
            }
            let mut any_skip = false;
            let events: &[u32] = if direct {
                step_buf.extend((lo..hi).map(|e| {
                    let s = steps.step(e);
                    any_skip |= s == NO_STEP;
                    s
                }));
                &self.iota[lo..hi]
            } else {
                event_buf.clear();
                for e in lo..hi {
                    if filter.is_some_and(|f| !f.matches(e)) {
                        continue;
                    }
                    let Some(key) = keys.key(e) else { continue };
                    let s = steps.step(e);
                    any_skip |= s == NO_STEP;
                    event_buf.push(e as u32);
                    step_buf.push(s);
                    key_buf.push(key);
                }
                event_buf
            };
            if events.is_empty() {
                continue;
            }
            let who = Who {
                journeys: j,
                customer_index: ci,
                partition_index: chunk.partition,
            };
            self.split(who, events, step_buf, key_buf, any_skip, scratch, emit);
        }
    }

    /// Cuts one customer's remaining events into cases and emits each non-empty one.
    #[allow(clippy::too_many_arguments)]
    fn split(
        &self,
        who: Who<'_>,
        events: &[u32],
        steps: &[u32],
        keys: &[u64],
        any_skip: bool,
        scratch: &mut Scratch,
        emit: &mut dyn FnMut(&Case<'_>),
    ) {
        let Scratch {
            order,
            ranks,
            sorted_events,
            sorted_steps,
            out_events,
            out_steps,
        } = scratch;
        let j = who.journeys;
        let mut send = |events: &[u32], steps: &[u32]| {
            // Events without a step leave the case; only then is a copy needed.
            let (events, steps) = if any_skip {
                out_events.clear();
                out_steps.clear();
                for (&e, &s) in events.iter().zip(steps) {
                    if s != NO_STEP {
                        out_events.push(e);
                        out_steps.push(s);
                    }
                }
                (&out_events[..], &out_steps[..])
            } else {
                (events, steps)
            };
            if !events.is_empty() {
                emit(&Case {
                    customer: j.customers[who.customer_index],
                    customer_index: who.customer_index,
                    journeys: j,
                    events,
                    steps,
                    partition_index: who.partition_index,
                });
            }
        };
        match &self.case {
            CaseSplit::Customer => send(events, steps),
            CaseSplit::Gap(gap) => {
                let mut start = 0;
                for k in 1..=events.len() {
                    if k == events.len()
                        || j.ts[events[k] as usize] - j.ts[events[k - 1] as usize] > *gap
                    {
                        send(&events[start..k], &steps[start..k]);
                        start = k;
                    }
                }
            }
            CaseSplit::Property(_) => {
                // Rank each value by its first event, then lay events out case by case (a
                // stable sort keeps time order inside a case).
                ranks.clear();
                for &k in keys {
                    if !ranks.iter().any(|&(v, _)| v == k) {
                        let r = ranks.len() as u32;
                        ranks.push((k, r));
                    }
                }
                if ranks.len() == 1 {
                    send(events, steps);
                    return;
                }
                ranks.sort_unstable();
                let rank_of = |k: u64| {
                    let at = ranks
                        .binary_search_by_key(&k, |&(v, _)| v)
                        .expect("every case key was ranked above");
                    ranks[at].1
                };
                order.clear();
                order.extend(0..events.len() as u32);
                order.sort_by_key(|&i| rank_of(keys[i as usize]));
                sorted_events.clear();
                sorted_steps.clear();
                for &i in order.iter() {
                    sorted_events.push(events[i as usize]);
                    sorted_steps.push(steps[i as usize]);
                }
                let mut start = 0;
                for k in 1..=order.len() {
                    if k == order.len() || keys[order[k] as usize] != keys[order[k - 1] as usize] {
                        send(&sorted_events[start..k], &sorted_steps[start..k]);
                        start = k;
                    }
                }
            }
        }
    }
}

/// Whose events a split is cutting.
#[derive(Clone, Copy)]
struct Who<'j> {
    journeys: &'j Journeys,
    customer_index: usize,
    partition_index: usize,
}

/// A partition's step names and how its events reach them, before global codes exist.
struct LocalSteps {
    names: Vec<String>,
    kind: LocalKind,
}

enum LocalKind {
    /// `codes[local]` indexes `names` (or is `NO_STEP`); local = activity/channel/text code.
    Activity(Vec<u32>),
    Channel(Vec<u32>),
    Pair(Vec<u32>, usize),
    Text(String, Vec<u32>),
    PerEvent(Vec<u32>),
    Nothing,
}

impl LocalSteps {
    fn into_map(self, global: &HashMap<&str, u32>) -> StepMap {
        let names = &self.names;
        let to_global = |codes: Vec<u32>| -> Vec<u32> {
            codes
                .into_iter()
                .map(|c| {
                    if c == NO_STEP {
                        NO_STEP
                    } else {
                        global[names[c as usize].as_str()]
                    }
                })
                .collect()
        };
        match self.kind {
            LocalKind::Activity(c) => StepMap::Activity(to_global(c)),
            LocalKind::Channel(c) => StepMap::Channel(to_global(c)),
            LocalKind::Pair(c, channels) => StepMap::Pair {
                table: to_global(c),
                channels,
            },
            LocalKind::Text(property, c) => StepMap::Text {
                property,
                table: to_global(c),
            },
            LocalKind::PerEvent(c) => StepMap::PerEvent(to_global(c)),
            LocalKind::Nothing => StepMap::Nothing,
        }
    }
}

impl StepMap {
    fn source<'j>(&'j self, j: &'j Journeys) -> StepSource<'j> {
        match self {
            StepMap::Activity(table) => StepSource::codes(&j.activity, table),
            StepMap::Channel(table) => StepSource::Codes16 {
                codes: &j.channel,
                table,
            },
            StepMap::Pair { table, channels } => StepSource::Pair {
                activity: &j.activity,
                channel: &j.channel,
                table,
                channels: *channels,
            },
            StepMap::Text { property, table } => match j.properties.get(property) {
                Some(PropertyColumn::Text { codes, .. }) => StepSource::codes(codes, table),
                _ => StepSource::Nothing,
            },
            StepMap::PerEvent(t) => StepSource::PerEvent(t),
            StepMap::Nothing => StepSource::Nothing,
        }
    }
}

/// Deduplicates names in first-seen order; returns each input's index into the names.
fn intern(names: &mut Vec<String>, index: &mut HashMap<String, u32>, name: String) -> u32 {
    if let Some(&c) = index.get(&name) {
        return c;
    }
    let c = names.len() as u32;
    index.insert(name.clone(), c);
    names.push(name);
    c
}

/// A number as a step name: integers without a fraction, others as Rust prints them.
pub(crate) fn number_name(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

fn local_steps(j: &Journeys, stages: &Stages, step: &StepDimension) -> LocalSteps {
    let mut names = Vec::new();
    let mut index = HashMap::new();
    let kind = match step {
        StepDimension::Activity => LocalKind::Activity(
            j.activities
                .values
                .iter()
                .map(|a| intern(&mut names, &mut index, a.clone()))
                .collect(),
        ),
        StepDimension::Channel => LocalKind::Channel(
            j.channels
                .values
                .iter()
                .map(|c| intern(&mut names, &mut index, c.clone()))
                .collect(),
        ),
        StepDimension::Stage => LocalKind::Activity(
            j.activities
                .values
                .iter()
                .map(|a| match stages.stage_of(a) {
                    Some(s) => intern(&mut names, &mut index, s.to_string()),
                    None => NO_STEP,
                })
                .collect(),
        ),
        StepDimension::Touchpoint => {
            let (na, nc) = (j.activities.len(), j.channels.len());
            let name = |a: u32, c: u16| {
                format!(
                    "{}:{}",
                    j.channels.values[c as usize], j.activities.values[a as usize]
                )
            };
            if na * nc <= MAX_PAIR_TABLE {
                // Only pairs that occur get a name, so the alphabet stays what the data holds.
                let mut seen = vec![false; na * nc];
                for (a, &c) in j.activity.iter().zip(&j.channel) {
                    seen[a as usize * nc + c as usize] = true;
                }
                let table = seen
                    .iter()
                    .enumerate()
                    .map(|(i, &s)| {
                        if s {
                            intern(
                                &mut names,
                                &mut index,
                                name((i / nc) as u32, (i % nc) as u16),
                            )
                        } else {
                            NO_STEP
                        }
                    })
                    .collect();
                LocalKind::Pair(table, nc)
            } else {
                let mut pairs: HashMap<(u32, u16), u32> = HashMap::new();
                let per_event = j
                    .activity
                    .iter()
                    .zip(&j.channel)
                    .map(|(a, &c)| {
                        *pairs
                            .entry((a, c))
                            .or_insert_with(|| intern(&mut names, &mut index, name(a, c)))
                    })
                    .collect();
                LocalKind::PerEvent(per_event)
            }
        }
        StepDimension::Property(p) => match j.properties.get(p) {
            Some(PropertyColumn::Text { dict, .. }) => {
                let mut table = vec![NO_STEP];
                table.extend(
                    dict.values
                        .iter()
                        .map(|v| intern(&mut names, &mut index, v.clone())),
                );
                LocalKind::Text(p.clone(), table)
            }
            Some(PropertyColumn::Num(values)) => {
                let mut by_bits: HashMap<u64, u32> = HashMap::new();
                let per_event = values
                    .iter()
                    .map(|v| {
                        if v.is_nan() {
                            NO_STEP
                        } else {
                            *by_bits
                                .entry(v.to_bits())
                                .or_insert_with(|| intern(&mut names, &mut index, number_name(v)))
                        }
                    })
                    .collect();
                LocalKind::PerEvent(per_event)
            }
            None => LocalKind::Nothing,
        },
    };
    LocalSteps { names, kind }
}

fn case_key(j: &Journeys, case: &CaseSplit) -> CaseKey {
    match case {
        CaseSplit::Customer | CaseSplit::Gap(_) => CaseKey::None,
        CaseSplit::Property(p) => match j.properties.get(p) {
            Some(PropertyColumn::Text { .. }) => CaseKey::Text(p.clone()),
            Some(PropertyColumn::Num(_)) => CaseKey::Num(p.clone()),
            None => CaseKey::Missing,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{Fixture, BASE};

    /// Every case as (customer, step names), in fold order.
    fn cases(parts: &[Arc<Journeys>], query: &Query) -> Vec<(u64, Vec<String>)> {
        let prepared = Prepared::new(parts, &Stages::default(), query).unwrap();
        let names = prepared.step_names().to_vec();
        prepared.fold_cases(
            Vec::new,
            |acc, case| {
                assert_eq!(case.events.len(), case.steps.len());
                acc.push((
                    case.customer.0,
                    case.steps
                        .iter()
                        .map(|&s| names[s as usize].clone())
                        .collect(),
                ))
            },
            |mut a, b| {
                a.extend(b);
                a
            },
        )
    }

    fn strs(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    const FIXTURE: &str = "\
        ana: view@0 > cart@5m{ticket=t1} > buy@2h{ticket=t2} > help@+1m{ticket=t1}\n\
        bob: phone:call@0 > web:view@1d\n\
        cyd: view@0{os=iOS} > buy@1m\n";

    #[test]
    fn whole_journeys_with_global_sorted_codes() {
        let f = Fixture::parse(FIXTURE);
        let parts = f.partitions(2);
        let got = cases(&parts, &Query::new(0));
        assert_eq!(
            got,
            [
                (1, strs(&["view", "cart", "buy", "help"])),
                (3, strs(&["view", "buy"])),
                (2, strs(&["call", "view"])),
            ]
        );
        let prepared = Prepared::new(&parts, &Stages::default(), &Query::new(0)).unwrap();
        assert_eq!(
            prepared.step_names(),
            strs(&["buy", "call", "cart", "help", "view"])
        );
    }

    #[test]
    fn gap_and_property_splits() {
        let f = Fixture::parse(FIXTURE);
        let parts = f.partitions(1);
        let mut q = Query::new(0);
        q.case = "gap:30m".parse().unwrap();
        assert_eq!(
            cases(&parts, &q),
            [
                (1, strs(&["view", "cart"])),
                (1, strs(&["buy", "help"])),
                (2, strs(&["call"])),
                (2, strs(&["view"])),
                (3, strs(&["view", "buy"])),
            ]
        );
        q.case = "property:ticket".parse().unwrap();
        assert_eq!(
            cases(&parts, &q),
            [(1, strs(&["cart", "help"])), (1, strs(&["buy"]))]
        );
    }

    #[test]
    fn dimensions_time_range_and_skipped_events() {
        let f = Fixture::parse(FIXTURE);
        let parts = f.partitions(3);
        let mut q = Query::new(0);
        q.step = StepDimension::Touchpoint;
        q.from = Some(BASE + 1);
        q.to = Some(BASE + 86_400_000_000);
        assert_eq!(
            cases(&parts, &q),
            [
                (1, strs(&["web:cart", "web:buy", "web:help"])),
                (3, strs(&["web:buy"])),
            ]
        );
        q.step = StepDimension::Property("os".into());
        q.from = None;
        assert_eq!(cases(&parts, &q), [(3, strs(&["iOS"]))]);
        q.from = Some(BASE);
        q.to = Some(BASE);
        assert!(Prepared::new(&parts, &Stages::default(), &q).is_err());
    }

    #[test]
    fn stages_skip_unmapped_activities() {
        let f = Fixture::parse(FIXTURE);
        let parts = f.partitions(2);
        let mut stages = Stages::new(vec!["consideration".into(), "purchase".into()]);
        stages.assign("view", "consideration").unwrap();
        stages.assign("buy", "purchase").unwrap();
        let mut q = Query::new(0);
        q.step = StepDimension::Stage;
        let p = Prepared::new(&parts, &stages, &q).unwrap();
        assert_eq!(p.step_names(), strs(&["consideration", "purchase"]));
        let n = p.fold_cases(|| 0usize, |n, c| *n += c.len(), |a, b| a + b);
        assert_eq!(n, 5);
    }
}
