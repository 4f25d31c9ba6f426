//! Paths: what cases do after (forward) or before (backward) an anchor step.
//!
//! A *path* starts at an occurrence of the anchor step in a case: its first occurrence, or
//! every occurrence (`AnchorOccurrence::Every`; paths may then overlap). Position 0 is the
//! anchor; position `k` (forward) is the `k`-th event after it, or (backward) the `k`-th
//! before it, written `-k`. Steps are taken as they are: a step may repeat (loops are
//! kept) and cases are not cut into sessions unless the query's case split does so. A path
//! that runs out of events before position `k` *ended* there: the case's journey ended
//! (forward) or began (backward).
//!
//! At each position the `top` most frequent steps get their own node and the rest share one
//! "other" node. Nodes count paths and distinct customers; links count paths between
//! consecutive positions. Two passes keep every figure exact: the first counts steps per
//! position to choose the top ones, the second counts nodes, customers and links with that
//! grouping (distinct customers of an "other" node cannot be derived from per-step counts).

use crate::case::{Case, Prepared};
use crate::EngineError;
use serde::Serialize;
use std::collections::HashMap;

/// The most positions a path may look ahead or back.
pub const MAX_PATH_STEPS: usize = 100;
/// The most nodes per position besides "other".
pub const MAX_PATH_TOP: usize = 1000;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PathDirection {
    Forward,
    Backward,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AnchorOccurrence {
    /// Each case's first occurrence of the anchor.
    First,
    /// Every occurrence of the anchor.
    Every,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PathOptions {
    /// A step value in the query's step dimension.
    pub anchor: String,
    pub direction: PathDirection,
    pub occurrence: AnchorOccurrence,
    /// Positions after (or before) the anchor, 1 to [`MAX_PATH_STEPS`].
    pub steps: usize,
    /// Nodes per position besides "other", 1 to [`MAX_PATH_TOP`].
    pub top: usize,
}

impl PathOptions {
    pub fn new(anchor: impl Into<String>) -> PathOptions {
        PathOptions {
            anchor: anchor.into(),
            direction: PathDirection::Forward,
            occurrence: AnchorOccurrence::First,
            steps: 5,
            top: 5,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Paths {
    /// The step dimension (`activity`, `channel`, …) and case split the paths are over.
    pub step: String,
    pub case: String,
    pub anchor: String,
    pub direction: PathDirection,
    pub occurrence: AnchorOccurrence,
    pub steps: usize,
    pub top: usize,
    /// Paths (anchor occurrences) and their distinct customers.
    pub paths: u64,
    pub customers: u64,
    /// Positions 0, 1, … `steps` (forward) or 0, -1, … `-steps` (backward), all listed.
    pub positions: Vec<PathPosition>,
    /// Between consecutive positions, nearest the anchor first, then count descending,
    /// then names.
    pub links: Vec<PathLink>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PathPosition {
    pub position: i64,
    /// Paths that reach this position.
    pub paths: u64,
    /// Paths that reached the previous position but ended before this one (0 at the anchor).
    pub ended: u64,
    /// Count descending, then step name; "other" last.
    pub nodes: Vec<PathNode>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PathNode {
    /// The step, or `null` for the "other" node.
    pub step: Option<String>,
    /// How many distinct steps the node stands for: 1, or more for "other".
    pub grouped_steps: u64,
    pub count: u64,
    pub customers: u64,
    /// Paths whose case has no event past this node (the journey ended, or began).
    pub ended: u64,
}

/// Paths going from one node to the next in time order (backward too: from position `-k`
/// to `-k + 1`), so a Sankey diagram flows the same way in both directions.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PathLink {
    pub from_position: i64,
    /// Step names; `null` is that position's "other" node.
    pub from: Option<String>,
    pub to_position: i64,
    pub to: Option<String>,
    pub count: u64,
}

/// Anchor indices in a case, in order, per the occurrence rule.
fn anchors<'c>(
    case: &'c Case<'_>,
    anchor: u32,
    occurrence: AnchorOccurrence,
) -> impl Iterator<Item = usize> + 'c {
    let mut found = false;
    case.steps
        .iter()
        .enumerate()
        .filter(move |&(_, &s)| {
            if s != anchor || (found && occurrence == AnchorOccurrence::First) {
                return false;
            }
            found = true;
            true
        })
        .map(|(i, _)| i)
}

/// The case index `k` positions from anchor `a`, if the case has one.
fn at(a: usize, k: usize, len: usize, direction: PathDirection) -> Option<usize> {
    match direction {
        PathDirection::Forward => Some(a + k).filter(|&i| i < len),
        PathDirection::Backward => a.checked_sub(k),
    }
}

/// Above this many distinct steps, per-position counts are sparse (a partial per chunk of
/// customers would otherwise hold a mostly empty array per position).
const DENSE_STEPS: usize = 4096;

/// How often each step code occurs at one position.
#[derive(Clone)]
enum StepCounts {
    Dense(Vec<u64>),
    Sparse(HashMap<u32, u64>),
}

impl StepCounts {
    fn new(alphabet: usize) -> StepCounts {
        if alphabet <= DENSE_STEPS {
            StepCounts::Dense(vec![0; alphabet])
        } else {
            StepCounts::Sparse(HashMap::new())
        }
    }

    fn add(&mut self, code: u32, count: u64) {
        match self {
            StepCounts::Dense(v) => v[code as usize] += count,
            StepCounts::Sparse(m) => *m.entry(code).or_insert(0) += count,
        }
    }

    fn merge(&mut self, other: StepCounts) {
        match other {
            StepCounts::Dense(v) => {
                for (code, c) in v.into_iter().enumerate().filter(|&(_, c)| c > 0) {
                    self.add(code as u32, c);
                }
            }
            StepCounts::Sparse(m) => {
                for (code, c) in m {
                    self.add(code, c);
                }
            }
        }
    }

    /// `(code, count)` for the steps that occur.
    fn into_counts(self) -> Vec<(u32, u64)> {
        match self {
            StepCounts::Dense(v) => v
                .into_iter()
                .enumerate()
                .filter(|&(_, c)| c > 0)
                .map(|(code, c)| (code as u32, c))
                .collect(),
            StepCounts::Sparse(m) => m.into_iter().collect(),
        }
    }
}

/// Per position, which steps have their own node: `(code, group)` sorted by code; any other
/// code goes to group `top_codes.len()`, the "other" node.
struct Grouping {
    top_codes: Vec<(u32, usize)>,
    /// Names in group order (count descending, then name).
    names: Vec<String>,
    /// Distinct steps in "other" (0 when there is no "other" node).
    other_steps: u64,
}

impl Grouping {
    fn group(&self, code: u32) -> usize {
        match self.top_codes.binary_search_by_key(&code, |&(c, _)| c) {
            Ok(i) => self.top_codes[i].1,
            Err(_) => self.top_codes.len(),
        }
    }

    fn width(&self) -> usize {
        self.names.len() + usize::from(self.other_steps > 0)
    }
}

#[derive(Clone, Copy, Default)]
struct NodeAcc {
    count: u64,
    customers: u64,
    last_customer: u64,
    ended: u64,
}

impl NodeAcc {
    fn add(&mut self, stamp: u64) {
        self.count += 1;
        if self.last_customer != stamp {
            self.last_customer = stamp;
            self.customers += 1;
        }
    }

    /// Customers of different partials are different (a customer's cases are folded in one
    /// chunk), so distinct counts add.
    fn merge(&mut self, o: &NodeAcc) {
        self.count += o.count;
        self.customers += o.customers;
        self.ended += o.ended;
    }
}

struct Acc {
    paths: u64,
    customers: u64,
    last_customer: u64,
    /// `nodes[k][group]`.
    nodes: Vec<Vec<NodeAcc>>,
    /// `links[k][from_group * width(k) + to_group]`, for k ≥ 1.
    links: Vec<Vec<u64>>,
}

pub fn paths(prepared: &Prepared<'_>, options: &PathOptions) -> Result<Paths, EngineError> {
    if options.steps == 0 || options.steps > MAX_PATH_STEPS {
        return Err(EngineError::InvalidOption {
            option: "steps",
            reason: format!(
                "must be between 1 and {MAX_PATH_STEPS}, got {}",
                options.steps
            ),
        });
    }
    if options.top == 0 || options.top > MAX_PATH_TOP {
        return Err(EngineError::InvalidOption {
            option: "top",
            reason: format!("must be between 1 and {MAX_PATH_TOP}, got {}", options.top),
        });
    }
    let names = prepared.step_names();
    let n = options.steps;
    let sign = match options.direction {
        PathDirection::Forward => 1,
        PathDirection::Backward => -1,
    };
    let mut result = Paths {
        step: prepared.step_dimension().to_string(),
        case: prepared.case_split().to_string(),
        anchor: options.anchor.clone(),
        direction: options.direction,
        occurrence: options.occurrence,
        steps: n,
        top: options.top,
        paths: 0,
        customers: 0,
        positions: (0..=n)
            .map(|k| PathPosition {
                position: sign * k as i64,
                paths: 0,
                ended: 0,
                nodes: Vec::new(),
            })
            .collect(),
        links: Vec::new(),
    };
    // A step that occurs nowhere is not an error: the selection simply has no such paths.
    let Ok(anchor) = names.binary_search(&options.anchor) else {
        return Ok(result);
    };
    let anchor = anchor as u32;
    let (direction, occurrence) = (options.direction, options.occurrence);

    // Pass 1: how often each step occurs at each position.
    let alphabet = names.len();
    let counts = prepared.fold_cases(
        || vec![StepCounts::new(alphabet); n + 1],
        |acc, case| {
            for a in anchors(case, anchor, occurrence) {
                for (k, slot) in acc.iter_mut().enumerate().skip(1) {
                    let Some(i) = at(a, k, case.len(), direction) else {
                        break;
                    };
                    slot.add(case.steps[i], 1);
                }
            }
        },
        |mut a, b| {
            for (x, y) in a.iter_mut().zip(b) {
                x.merge(y);
            }
            a
        },
    );
    let groupings: Vec<Grouping> = counts
        .into_iter()
        .map(StepCounts::into_counts)
        .enumerate()
        .map(|(k, by_step)| {
            if k == 0 {
                return Grouping {
                    top_codes: vec![(anchor, 0)],
                    names: vec![options.anchor.clone()],
                    other_steps: 0,
                };
            }
            let mut ranked = by_step;
            ranked.sort_by(|a, b| {
                b.1.cmp(&a.1)
                    .then_with(|| names[a.0 as usize].cmp(&names[b.0 as usize]))
            });
            let kept = ranked.len().min(options.top);
            let mut top_codes: Vec<(u32, usize)> = ranked[..kept]
                .iter()
                .enumerate()
                .map(|(g, &(c, _))| (c, g))
                .collect();
            let names = ranked[..kept]
                .iter()
                .map(|&(c, _)| names[c as usize].clone())
                .collect();
            top_codes.sort_unstable();
            Grouping {
                top_codes,
                names,
                other_steps: (ranked.len() - kept) as u64,
            }
        })
        .collect();

    // Pass 2: nodes, distinct customers and links under that grouping.
    let acc = prepared.fold_cases(
        || Acc {
            paths: 0,
            customers: 0,
            last_customer: 0,
            nodes: groupings
                .iter()
                .map(|g| vec![NodeAcc::default(); g.width()])
                .collect(),
            links: groupings
                .iter()
                .enumerate()
                .map(|(k, g)| {
                    if k == 0 {
                        Vec::new()
                    } else {
                        vec![0; groupings[k - 1].width() * g.width()]
                    }
                })
                .collect(),
        },
        |acc, case| {
            let stamp = Prepared::customer_stamp(case);
            for a in anchors(case, anchor, occurrence) {
                acc.paths += 1;
                if acc.last_customer != stamp {
                    acc.last_customer = stamp;
                    acc.customers += 1;
                }
                acc.nodes[0][0].add(stamp);
                let (mut prev, mut reached) = (0, 0);
                for (k, grouping) in groupings.iter().enumerate().skip(1) {
                    let Some(i) = at(a, k, case.len(), direction) else {
                        break;
                    };
                    let g = grouping.group(case.steps[i]);
                    acc.nodes[k][g].add(stamp);
                    acc.links[k][prev * grouping.width() + g] += 1;
                    (prev, reached) = (g, k);
                }
                // The path's last node ended it when the case has no event one step further.
                if at(a, reached + 1, case.len(), direction).is_none() {
                    acc.nodes[reached][prev].ended += 1;
                }
            }
        },
        |mut a, b| {
            a.paths += b.paths;
            a.customers += b.customers;
            for (x, y) in a.nodes.iter_mut().zip(&b.nodes) {
                for (p, q) in x.iter_mut().zip(y) {
                    p.merge(q);
                }
            }
            for (x, y) in a.links.iter_mut().zip(&b.links) {
                for (p, q) in x.iter_mut().zip(y) {
                    *p += q;
                }
            }
            a
        },
    );

    result.paths = acc.paths;
    result.customers = acc.customers;
    let node_name = |k: usize, g: usize| groupings[k].names.get(g).cloned();
    for (k, (pos, (nodes, grouping))) in result
        .positions
        .iter_mut()
        .zip(acc.nodes.iter().zip(&groupings))
        .enumerate()
    {
        // Group order is count descending then name, with "other" last, as listed.
        pos.nodes = nodes
            .iter()
            .enumerate()
            .filter(|(_, node)| node.count > 0)
            .map(|(g, node)| PathNode {
                step: node_name(k, g),
                grouped_steps: if g < grouping.names.len() {
                    1
                } else {
                    grouping.other_steps
                },
                count: node.count,
                customers: node.customers,
                ended: node.ended,
            })
            .collect();
        pos.paths = nodes.iter().map(|x| x.count).sum();
    }
    for (k, (grouping, links)) in groupings.iter().zip(&acc.links).enumerate().skip(1) {
        result.positions[k].ended = result.positions[k - 1].paths - result.positions[k].paths;
        let width = grouping.width();
        let start = result.links.len();
        for (cell, &count) in links.iter().enumerate() {
            if count > 0 {
                let (outer, inner) = (node_name(k, cell % width), node_name(k - 1, cell / width));
                let (outer_pos, inner_pos) = (sign * k as i64, sign * (k as i64 - 1));
                result.links.push(match options.direction {
                    PathDirection::Forward => PathLink {
                        from_position: inner_pos,
                        from: inner,
                        to_position: outer_pos,
                        to: outer,
                        count,
                    },
                    PathDirection::Backward => PathLink {
                        from_position: outer_pos,
                        from: outer,
                        to_position: inner_pos,
                        to: inner,
                        count,
                    },
                });
            }
        }
        // "other" (None) sorts after every name.
        let key = |s: &Option<String>| (s.is_none(), s.clone());
        result.links[start..].sort_by(|a, b| {
            b.count
                .cmp(&a.count)
                .then_with(|| key(&a.from).cmp(&key(&b.from)))
                .then_with(|| key(&a.to).cmp(&key(&b.to)))
        });
    }
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dense_and_sparse_step_counts_agree() {
        let adds = [(3u32, 2u64), (0, 1), (3, 5), (9, 1)];
        let mut results = Vec::new();
        for mut counts in [
            StepCounts::Dense(vec![0; 10]),
            StepCounts::Sparse(HashMap::new()),
        ] {
            let mut other = StepCounts::new(10);
            for &(code, c) in &adds {
                counts.add(code, c);
                other.add(code, 1);
            }
            counts.merge(other);
            let mut listed = counts.into_counts();
            listed.sort_unstable();
            results.push(listed);
        }
        assert_eq!(results[0], [(0, 2), (3, 9), (9, 2)]);
        assert_eq!(results[0], results[1]);
    }
}
