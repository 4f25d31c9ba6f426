//! Process map: the directly-follows graph of steps over cases.
//!
//! Nodes carry their events, distinct customers, and how many cases start and end there;
//! edges (`a → b`: step `b` directly follows step `a` in a case) carry their count, distinct
//! customers and exact transition times (median, mean, p90 in seconds). Self-loops are edges
//! like any other.
//!
//! Simplification (Disco-style sliders), applied after the exact map is computed:
//! 1. Nodes: sorted by events (descending, then name), the shortest prefix whose events reach
//!    `node_coverage` % of all events is kept (at least one node).
//! 2. Edges between kept nodes: sorted by count (descending, then names), the shortest prefix
//!    whose count reaches `edge_coverage` % of the transitions among kept nodes is kept.
//! 3. Connectivity: each kept node also keeps its most frequent incoming and its most
//!    frequent outgoing edge among kept nodes, so no node with connections is left hanging.
//!
//! Transitions into or out of hidden nodes are dropped, not bridged. Totals always describe
//! the full map; `simplification` says what was hidden.
//!
//! Two passes over the cases: pass 1 counts nodes and edges and builds a log-scale histogram
//! of transition times per edge; pass 2 keeps only the times in the histogram buckets that
//! hold the median's and p90's ranks, among which the exact values are selected. So the
//! percentiles are exact without holding every transition time in memory.

use crate::case::{Case, Prepared};
use crate::stats::{
    log_bucket, micros_to_seconds, BucketFilter, DurationSummary, RankPlan, LOG_BUCKETS,
};
use crate::EngineError;
use rayon::prelude::*;
use serde::Serialize;
use std::collections::HashMap;

/// Steps up to this many get a dense steps² edge table; bigger alphabets use a hash map.
const DENSE_STEPS: usize = 256;

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MapOptions {
    /// Percent of events the kept nodes must cover, in (0, 100].
    pub node_coverage: f64,
    /// Percent of transitions among kept nodes the kept edges must cover, in (0, 100].
    pub edge_coverage: f64,
}

impl Default for MapOptions {
    fn default() -> Self {
        MapOptions {
            node_coverage: 100.0,
            edge_coverage: 100.0,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ProcessMap {
    /// The step dimension, e.g. `activity` or `property:os`.
    pub step: String,
    /// The case split, e.g. `customer` or `gap:30m`.
    pub case: String,
    pub totals: MapTotals,
    /// Kept nodes, by events descending then step name.
    pub nodes: Vec<MapNode>,
    /// Kept edges, by count descending then from, to.
    pub edges: Vec<MapEdge>,
    pub simplification: Simplification,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct MapTotals {
    pub events: u64,
    pub cases: u64,
    pub customers: u64,
    pub transitions: u64,
    pub steps: u64,
    pub edges: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MapNode {
    pub step: String,
    pub events: u64,
    pub customers: u64,
    /// Cases whose first step this is.
    pub starts: u64,
    /// Cases whose last step this is.
    pub ends: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MapEdge {
    pub from: String,
    pub to: String,
    pub count: u64,
    pub customers: u64,
    #[serde(flatten)]
    pub duration: DurationSummary,
}

#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Simplification {
    pub node_coverage: f64,
    pub edge_coverage: f64,
    pub hidden_nodes: u64,
    pub hidden_edges: u64,
}

/// One edge's pass-1 counters, side by side so a transition touches one cache line.
#[derive(Clone, Copy)]
struct Counter {
    count: u64,
    customers: u64,
    last_customer: u64,
    /// Row of `hist` holding the edge's [`log_bucket`] counts; `u32::MAX` until first seen.
    hist_row: u32,
    /// Sum of transition times (µs), for the exact mean.
    sum: i128,
}

const EMPTY: Counter = Counter {
    count: 0,
    customers: 0,
    last_customer: 0,
    hist_row: u32::MAX,
    sum: 0,
};

/// Pass-1 edge counters indexed by an edge slot.
struct EdgeTable {
    steps: usize,
    /// Slot by edge for big alphabets; small ones use `from * steps + to` directly.
    sparse: Option<HashMap<(u32, u32), u32>>,
    /// Edge of each slot (sparse tables only).
    keys: Vec<(u32, u32)>,
    counters: Vec<Counter>,
    /// Counts modulo 2¹⁶: 16-bit counters halve the histograms' cache footprint, which
    /// every transition touches; `wraps` counts the rare carries by histogram index.
    hist: Vec<u16>,
    wraps: HashMap<usize, u64>,
}

impl EdgeTable {
    fn new(steps: usize) -> EdgeTable {
        let dense = steps <= DENSE_STEPS;
        let slots = if dense { steps * steps } else { 0 };
        EdgeTable {
            steps,
            sparse: (!dense).then(HashMap::new),
            keys: Vec::new(),
            counters: vec![EMPTY; slots],
            hist: Vec::new(),
            wraps: HashMap::new(),
        }
    }

    #[inline]
    fn slot(&mut self, a: u32, b: u32) -> usize {
        match &mut self.sparse {
            None => a as usize * self.steps + b as usize,
            Some(map) => {
                let next = self.keys.len() as u32;
                let slot = *map.entry((a, b)).or_insert(next);
                if slot == next {
                    self.keys.push((a, b));
                    self.counters.push(EMPTY);
                }
                slot as usize
            }
        }
    }

    fn key(&self, slot: usize) -> (u32, u32) {
        match self.sparse {
            None => ((slot / self.steps) as u32, (slot % self.steps) as u32),
            Some(_) => self.keys[slot],
        }
    }

    /// Index in `hist` of the slot's first bucket; the row is created empty on first use.
    #[inline]
    fn hist_start(&mut self, slot: usize) -> usize {
        let mut row = self.counters[slot].hist_row;
        if row == u32::MAX {
            row = (self.hist.len() / LOG_BUCKETS) as u32;
            self.hist.resize(self.hist.len() + LOG_BUCKETS, 0);
            self.counters[slot].hist_row = row;
        }
        row as usize * LOG_BUCKETS
    }

    /// Adds `n` to histogram entry `i`.
    fn hist_add(&mut self, i: usize, n: u64) {
        let total = u64::from(self.hist[i]) + n;
        self.hist[i] = (total & 0xffff) as u16;
        if total >> 16 > 0 {
            *self.wraps.entry(i).or_default() += total >> 16;
        }
    }

    /// The slot's full bucket counts (empty if it has none).
    fn hist(&self, slot: usize) -> Vec<u64> {
        match self.counters[slot].hist_row {
            u32::MAX => Vec::new(),
            row => {
                let start = row as usize * LOG_BUCKETS;
                (start..start + LOG_BUCKETS)
                    .map(|i| {
                        u64::from(self.hist[i]) + (self.wraps.get(&i).copied().unwrap_or(0) << 16)
                    })
                    .collect()
            }
        }
    }

    #[inline]
    fn add(&mut self, a: u32, b: u32, stamp: u64, gap: i64) {
        let slot = self.slot(a, b);
        self.add_at(slot, stamp, gap);
    }

    #[inline(always)]
    fn add_at(&mut self, slot: usize, stamp: u64, gap: i64) {
        let c = &mut self.counters[slot];
        c.count += 1;
        c.customers += u64::from(c.last_customer != stamp);
        c.last_customer = stamp;
        c.sum += i128::from(gap);
        let mut row = c.hist_row;
        if row == u32::MAX {
            row = (self.hist.len() / LOG_BUCKETS) as u32;
            self.hist.resize(self.hist.len() + LOG_BUCKETS, 0);
            c.hist_row = row;
        }
        let i = row as usize * LOG_BUCKETS + log_bucket(gap);
        let h = &mut self.hist[i];
        *h = h.wrapping_add(1);
        if *h == 0 {
            *self.wraps.entry(i).or_default() += 1;
        }
    }

    fn merge(&mut self, other: &EdgeTable) {
        for (o, theirs) in other.counters.iter().enumerate() {
            if theirs.count == 0 {
                continue;
            }
            let (a, b) = other.key(o);
            let slot = self.slot(a, b);
            let mine = &mut self.counters[slot];
            mine.count += theirs.count;
            mine.customers += theirs.customers;
            mine.sum += theirs.sum;
            let hist = other.hist(o);
            if !hist.is_empty() {
                let start = self.hist_start(slot);
                for (b, &n) in hist.iter().enumerate() {
                    if n > 0 {
                        self.hist_add(start + b, n);
                    }
                }
            }
        }
    }
}

/// Pass 1: nodes, starts, ends, and per edge its counters and time histogram.
struct Partial {
    steps: usize,
    node_customers: Vec<u64>,
    node_last: Vec<u64>,
    starts: Vec<u64>,
    ends: Vec<u64>,
    edges: EdgeTable,
    events: u64,
    cases: u64,
    customers: u64,
    last_customer: u64,
}

/// One edge after pass 1.
struct EdgeStats {
    count: u64,
    customers: u64,
    sum: i128,
    plan: RankPlan,
}

impl Partial {
    fn new(steps: usize) -> Partial {
        Partial {
            steps,
            node_customers: vec![0; steps],
            node_last: vec![0; steps],
            starts: vec![0; steps],
            ends: vec![0; steps],
            edges: EdgeTable::new(steps),
            events: 0,
            cases: 0,
            customers: 0,
            last_customer: 0,
        }
    }

    fn add(&mut self, case: &Case<'_>) {
        let stamp = Prepared::customer_stamp(case);
        let steps = case.steps;
        self.cases += 1;
        self.events += steps.len() as u64;
        if self.last_customer != stamp {
            self.last_customer = stamp;
            self.customers += 1;
        }
        // A node's events are its starts plus its incoming transitions (summed at the end),
        // so only distinct customers are counted per event.
        let (node_last, node_customers) = (&mut self.node_last[..], &mut self.node_customers[..]);
        for &s in steps {
            // Branch-free: whether a step was seen before in this case is unpredictable.
            let s = s as usize;
            node_customers[s] += u64::from(node_last[s] != stamp);
            node_last[s] = stamp;
        }
        self.starts[steps[0] as usize] += 1;
        self.ends[steps[steps.len() - 1] as usize] += 1;
        let ts = &case.journeys.ts;
        let edges = &mut self.edges;
        let mut prev_ts = ts[case.events[0] as usize];
        // The dense case gets its own loop: no slot lookup branch per transition.
        if edges.sparse.is_none() {
            let n = edges.steps;
            for k in 1..steps.len() {
                let t = ts[case.events[k] as usize];
                let slot = steps[k - 1] as usize * n + steps[k] as usize;
                edges.add_at(slot, stamp, t - prev_ts);
                prev_ts = t;
            }
        } else {
            for k in 1..steps.len() {
                let t = ts[case.events[k] as usize];
                edges.add(steps[k - 1], steps[k], stamp, t - prev_ts);
                prev_ts = t;
            }
        }
    }

    fn merge(mut self, other: Partial) -> Partial {
        for s in 0..self.steps {
            self.node_customers[s] += other.node_customers[s];
            self.starts[s] += other.starts[s];
            self.ends[s] += other.ends[s];
        }
        self.edges.merge(&other.edges);
        self.events += other.events;
        self.cases += other.cases;
        self.customers += other.customers;
        self
    }

    /// Every edge with its stats and quantile plan, sorted by (from, to) codes.
    fn into_edges(self) -> Vec<((u32, u32), EdgeStats)> {
        let t = &self.edges;
        let mut edges: Vec<((u32, u32), EdgeStats)> = t
            .counters
            .iter()
            .enumerate()
            .filter(|(_, c)| c.count > 0)
            .map(|(slot, c)| {
                (
                    t.key(slot),
                    EdgeStats {
                        count: c.count,
                        customers: c.customers,
                        sum: c.sum,
                        plan: RankPlan::new(&t.hist(slot), &[0.5, 0.9]),
                    },
                )
            })
            .collect();
        edges.sort_unstable_by_key(|&(k, _)| k);
        edges
    }
}

/// Pass 2: the transition times each edge's quantile plan asks for.
struct Gather<'p> {
    /// Edge index by `from * steps + to` (dense) or by pair.
    index: &'p EdgeIndex,
    filters: &'p [BucketFilter],
    kept: Vec<Vec<i64>>,
}

enum EdgeIndex {
    Dense(Vec<u32>, usize),
    Sparse(HashMap<(u32, u32), u32>),
}

impl Gather<'_> {
    fn add(&mut self, case: &Case<'_>) {
        // Copy the reference out so the lookups do not borrow `self`.
        let index: &EdgeIndex = self.index;
        match index {
            EdgeIndex::Dense(v, n) => self.keep(case, |a, b| v[a as usize * n + b as usize]),
            EdgeIndex::Sparse(m) => self.keep(case, |a, b| m[&(a, b)]),
        }
    }

    #[inline(always)]
    fn keep(&mut self, case: &Case<'_>, edge: impl Fn(u32, u32) -> u32) {
        let ts = &case.journeys.ts;
        let (steps, events) = (case.steps, case.events);
        for k in 1..steps.len() {
            let e = edge(steps[k - 1], steps[k]) as usize;
            let gap = ts[events[k] as usize] - ts[events[k - 1] as usize];
            if self.filters[e].wants(gap) {
                self.kept[e].push(gap);
            }
        }
    }

    fn merge(mut self, other: Gather<'_>) -> Self {
        for (a, b) in self.kept.iter_mut().zip(other.kept) {
            a.extend(b);
        }
        self
    }
}

fn check_coverage(option: &'static str, value: f64) -> Result<(), EngineError> {
    if value > 0.0 && value <= 100.0 {
        Ok(())
    } else {
        Err(EngineError::InvalidOption {
            option,
            reason: format!("{value} is not a percentage in (0, 100]"),
        })
    }
}

/// The process map of the prepared query's cases.
pub fn process_map(
    prepared: &Prepared<'_>,
    options: &MapOptions,
) -> Result<ProcessMap, EngineError> {
    check_coverage("node coverage", options.node_coverage)?;
    check_coverage("edge coverage", options.edge_coverage)?;
    let names = prepared.step_names();
    let n = names.len();
    let partial = prepared.fold_cases(|| Partial::new(n), Partial::add, Partial::merge);

    let totals_base = (partial.events, partial.cases, partial.customers);
    // Exact median and p90 per edge without keeping every transition time: plan from the
    // histograms, then a second pass keeps only the times in the planned buckets.
    let mut node_events = partial.starts.clone();
    let node_customers = partial.node_customers.clone();
    let (starts, ends) = (partial.starts.clone(), partial.ends.clone());
    let edge_list = partial.into_edges();
    for ((_, b), e) in &edge_list {
        node_events[*b as usize] += e.count;
    }
    let mut nodes: Vec<MapNode> = (0..n)
        .filter(|&s| node_events[s] > 0)
        .map(|s| MapNode {
            step: names[s].clone(),
            events: node_events[s],
            customers: node_customers[s],
            starts: starts[s],
            ends: ends[s],
        })
        .collect();
    nodes.sort_by(|a, b| b.events.cmp(&a.events).then_with(|| a.step.cmp(&b.step)));
    let index = if n <= DENSE_STEPS {
        let mut v = vec![u32::MAX; n * n];
        for (i, ((a, b), _)) in edge_list.iter().enumerate() {
            v[*a as usize * n + *b as usize] = i as u32;
        }
        EdgeIndex::Dense(v, n)
    } else {
        EdgeIndex::Sparse(
            edge_list
                .iter()
                .enumerate()
                .map(|(i, (k, _))| (*k, i as u32))
                .collect(),
        )
    };
    let filters: Vec<BucketFilter> = edge_list.iter().map(|(_, e)| e.plan.filter()).collect();
    let gathered = prepared.fold_cases(
        || Gather {
            index: &index,
            filters: &filters,
            kept: vec![Vec::new(); filters.len()],
        },
        Gather::add,
        Gather::merge,
    );
    let mut edges: Vec<MapEdge> = edge_list
        .into_par_iter()
        .zip(gathered.kept.into_par_iter())
        .map(|(((a, b), acc), mut kept)| {
            let q = acc.plan.finish(&mut kept);
            MapEdge {
                from: names[a as usize].clone(),
                to: names[b as usize].clone(),
                count: acc.count,
                customers: acc.customers,
                duration: DurationSummary {
                    median_s: micros_to_seconds(q[0]),
                    mean_s: micros_to_seconds(acc.sum as f64 / acc.count as f64),
                    p90_s: micros_to_seconds(q[1]),
                },
            }
        })
        .collect();
    edges.sort_by(|a, b| {
        b.count
            .cmp(&a.count)
            .then_with(|| a.from.cmp(&b.from))
            .then_with(|| a.to.cmp(&b.to))
    });

    let totals = MapTotals {
        events: totals_base.0,
        cases: totals_base.1,
        customers: totals_base.2,
        transitions: edges.iter().map(|e| e.count).sum(),
        steps: nodes.len() as u64,
        edges: edges.len() as u64,
    };
    let (nodes, edges) = simplify(nodes, edges, options);
    Ok(ProcessMap {
        step: prepared.step_dimension().to_string(),
        case: prepared.case_split().to_string(),
        simplification: Simplification {
            node_coverage: options.node_coverage,
            edge_coverage: options.edge_coverage,
            hidden_nodes: totals.steps - nodes.len() as u64,
            hidden_edges: totals.edges - edges.len() as u64,
        },
        totals,
        nodes,
        edges,
    })
}

/// Applies the coverage rule of the module docs to nodes and edges already sorted by
/// frequency.
fn simplify(
    nodes: Vec<MapNode>,
    edges: Vec<MapEdge>,
    options: &MapOptions,
) -> (Vec<MapNode>, Vec<MapEdge>) {
    if options.node_coverage >= 100.0 && options.edge_coverage >= 100.0 {
        return (nodes, edges);
    }
    let total_events: u64 = nodes.iter().map(|n| n.events).sum();
    let mut kept_nodes = Vec::new();
    let mut covered = 0u64;
    for node in nodes {
        if !kept_nodes.is_empty() && reaches(covered, total_events, options.node_coverage) {
            break;
        }
        covered += node.events;
        kept_nodes.push(node);
    }
    let kept: std::collections::HashSet<&str> =
        kept_nodes.iter().map(|n| n.step.as_str()).collect();
    let candidates: Vec<MapEdge> = edges
        .into_iter()
        .filter(|e| kept.contains(e.from.as_str()) && kept.contains(e.to.as_str()))
        .collect();
    let total: u64 = candidates.iter().map(|e| e.count).sum();
    let mut keep = vec![false; candidates.len()];
    let mut covered = 0u64;
    for (i, e) in candidates.iter().enumerate() {
        if reaches(covered, total, options.edge_coverage) {
            break;
        }
        covered += e.count;
        keep[i] = true;
    }
    // Candidates are sorted by count, so the first edge seen into (out of) a node is its
    // most frequent one.
    let mut has_in = std::collections::HashSet::new();
    let mut has_out = std::collections::HashSet::new();
    for (i, e) in candidates.iter().enumerate() {
        if has_in.insert(e.to.as_str()) {
            keep[i] = true;
        }
        if has_out.insert(e.from.as_str()) {
            keep[i] = true;
        }
    }
    let kept_edges = candidates
        .iter()
        .zip(&keep)
        .filter(|(_, &k)| k)
        .map(|(e, _)| e.clone())
        .collect();
    (kept_nodes, kept_edges)
}

/// Whether `covered` out of `total` reaches `percent` %.
fn reaches(covered: u64, total: u64, percent: f64) -> bool {
    covered as f64 * 100.0 >= total as f64 * percent
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sixteen_bit_histograms_carry_past_65535() {
        for steps in [3, DENSE_STEPS + 1] {
            let mut a = EdgeTable::new(steps);
            let mut b = EdgeTable::new(steps);
            for i in 0..70_000u64 {
                a.add(1, 2, i + 1, 5);
                b.add(1, 2, i + 1, 5);
            }
            b.add(2, 1, 1, 1_000_000);
            a.merge(&b);
            let slot = a.slot(1, 2);
            let hist = a.hist(slot);
            assert_eq!(hist[log_bucket(5)], 140_000, "{steps} steps");
            assert_eq!(hist.iter().sum::<u64>(), 140_000);
            assert_eq!(a.counters[slot].count, 140_000);
            let back = a.slot(2, 1);
            assert_eq!(a.hist(back)[log_bucket(1_000_000)], 1);
        }
    }
}
