//! Variants: the most frequent whole-case step sequences.
//!
//! Each case's full step sequence is one variant. Per variant: cases, distinct customers,
//! share of all cases, median case duration (last event minus first, seconds), and outcome:
//! a case's outcome is the value of the `outcome` property on its last event that has one;
//! the case counts as a success when that value is `success` or `resolved`. Cases without
//! any outcome count in `count` but neither in `with_outcome` nor in `successes`, and
//! `success_share` is `successes / count`.

use crate::case::{Case, Prepared};
use crate::query::Query;
use crate::stats::median_seconds;
use crate::EngineError;
use omnitrail_model::journeys::{Journeys, PropertyColumn, ScanSpec};
use rayon::prelude::*;
use serde::Serialize;
use std::collections::HashMap;

/// The property holding a case's outcome (DESIGN.md §2 "outcome").
pub const OUTCOME: &str = "outcome";
/// Up to this many listed variants, pass 2 finds a case's variant by a linear scan.
const LINEAR_LOOKUP: usize = 16;

/// Outcome values that count as a success.
pub const SUCCESS_OUTCOMES: [&str; 2] = ["success", "resolved"];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VariantOptions {
    /// How many variants to list (the most frequent first); at least 1.
    pub top: usize,
}

impl Default for VariantOptions {
    fn default() -> Self {
        VariantOptions { top: 20 }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Variants {
    pub step: String,
    pub case: String,
    pub total_cases: u64,
    /// Distinct variants among all cases, listed or not.
    pub total_variants: u64,
    /// The `top` most frequent, by count descending then step sequence.
    pub variants: Vec<Variant>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Variant {
    pub steps: Vec<String>,
    pub count: u64,
    pub customers: u64,
    /// `count / total_cases`.
    pub share: f64,
    pub median_duration_s: f64,
    pub with_outcome: u64,
    pub successes: u64,
    pub success_share: f64,
}

/// The columns variants need: the query's, plus the outcome property.
pub fn variants_scan(query: &Query) -> ScanSpec {
    let mut spec = Prepared::required_scan(query);
    if !spec.properties.iter().any(|p| p == OUTCOME) {
        spec.properties.push(OUTCOME.to_string());
        spec.properties.sort();
    }
    spec
}

/// Hashes a step sequence: multiply-rotate over the codes. The codes come from our own
/// dictionaries, so a DoS-resistant hash would buy nothing and cost a lot per case.
fn hash_seq(seq: &[u32]) -> u64 {
    let mut h = seq.len() as u64;
    for &s in seq {
        h = (h.rotate_left(5) ^ u64::from(s)).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
    h ^ (h >> 29)
}

/// Counters of one variant; its sequence lives in the table's arena.
#[derive(Clone, Copy)]
struct Rec {
    start: usize,
    len: usize,
    hash: u64,
    count: u64,
    customers: u64,
    last_customer: u64,
    with_outcome: u64,
    successes: u64,
}

/// Distinct step sequences with their counters: sequences are stored end to end in one
/// arena and found through an open-addressing index, so a new variant costs no allocation
/// of its own (there can be about as many variants as cases).
struct VariantTable {
    arena: Vec<u32>,
    recs: Vec<Rec>,
    /// `rec index + 1`, 0 for an empty slot; the length is a power of two.
    slots: Vec<u32>,
}

impl VariantTable {
    fn new() -> VariantTable {
        VariantTable {
            arena: Vec::new(),
            recs: Vec::new(),
            slots: vec![0; 1024],
        }
    }

    fn seq(&self, r: &Rec) -> &[u32] {
        &self.arena[r.start..r.start + r.len]
    }

    /// The record of `seq`, inserted with zero counts if new.
    fn entry(&mut self, seq: &[u32], hash: u64) -> &mut Rec {
        if (self.recs.len() + 1) * 2 > self.slots.len() {
            self.grow();
        }
        let mask = self.slots.len() - 1;
        let mut i = hash as usize & mask;
        loop {
            match self.slots[i] {
                0 => {
                    let start = self.arena.len();
                    self.arena.extend_from_slice(seq);
                    self.recs.push(Rec {
                        start,
                        len: seq.len(),
                        hash,
                        count: 0,
                        customers: 0,
                        last_customer: 0,
                        with_outcome: 0,
                        successes: 0,
                    });
                    self.slots[i] = self.recs.len() as u32;
                    return self.recs.last_mut().expect("just pushed");
                }
                r => {
                    let rec = &self.recs[r as usize - 1];
                    if rec.hash == hash && self.seq(rec) == seq {
                        return &mut self.recs[r as usize - 1];
                    }
                }
            }
            i = (i + 1) & mask;
        }
    }

    fn grow(&mut self) {
        let mut slots = vec![0u32; self.slots.len() * 2];
        let mask = slots.len() - 1;
        for (k, r) in self.recs.iter().enumerate() {
            let mut i = r.hash as usize & mask;
            while slots[i] != 0 {
                i = (i + 1) & mask;
            }
            slots[i] = k as u32 + 1;
        }
        self.slots = slots;
    }

    fn merge(self, other: VariantTable) -> VariantTable {
        let (mut big, small) = if self.recs.len() >= other.recs.len() {
            (self, other)
        } else {
            (other, self)
        };
        for r in &small.recs {
            let acc = big.entry(small.seq(r), r.hash);
            acc.count += r.count;
            acc.customers += r.customers;
            acc.with_outcome += r.with_outcome;
            acc.successes += r.successes;
        }
        big
    }
}

/// Per partition: for each code of its outcome column, whether it is an outcome at all and
/// whether it is a success.
enum OutcomeTable {
    Text(Vec<(bool, bool)>),
    Num,
    Missing,
}

fn outcome_table(j: &Journeys) -> OutcomeTable {
    match j.properties.get(OUTCOME) {
        Some(PropertyColumn::Text { dict, .. }) => {
            let mut t = vec![(false, false)];
            t.extend(
                dict.values
                    .iter()
                    .map(|v| (true, SUCCESS_OUTCOMES.contains(&v.as_str()))),
            );
            OutcomeTable::Text(t)
        }
        Some(PropertyColumn::Num(_)) => OutcomeTable::Num,
        None => OutcomeTable::Missing,
    }
}

/// (has an outcome, is a success) for a case, from its last event with an outcome.
fn case_outcome(case: &Case<'_>, table: &OutcomeTable) -> (bool, bool) {
    let j = case.journeys;
    match (table, j.properties.get(OUTCOME)) {
        (OutcomeTable::Text(t), Some(PropertyColumn::Text { codes, .. })) => case
            .events
            .iter()
            .rev()
            .map(|&e| t[codes.get(e as usize) as usize])
            .find(|&(has, _)| has)
            .unwrap_or((false, false)),
        (OutcomeTable::Num, Some(PropertyColumn::Num(v))) => {
            let has = case.events.iter().any(|&e| !v.get(e as usize).is_nan());
            (has, false)
        }
        _ => (false, false),
    }
}

pub fn variants(
    prepared: &Prepared<'_>,
    options: &VariantOptions,
) -> Result<Variants, EngineError> {
    if options.top == 0 {
        return Err(EngineError::InvalidOption {
            option: "top",
            reason: "must list at least one variant".to_string(),
        });
    }
    let outcomes: Vec<OutcomeTable> = prepared
        .partitions()
        .iter()
        .map(|j| outcome_table(j))
        .collect();
    // Pass 1: counts of every variant.
    let table = prepared.fold_cases(
        VariantTable::new,
        |t, case| {
            let stamp = Prepared::customer_stamp(case);
            let (has, success) = case_outcome(case, &outcomes[case.partition_index]);
            let acc = t.entry(case.steps, hash_seq(case.steps));
            acc.count += 1;
            if acc.last_customer != stamp {
                acc.last_customer = stamp;
                acc.customers += 1;
            }
            acc.with_outcome += u64::from(has);
            acc.successes += u64::from(success);
        },
        VariantTable::merge,
    );
    let total_cases: u64 = table.recs.iter().map(|r| r.count).sum();
    let total_variants = table.recs.len() as u64;
    let names = prepared.step_names();

    // The top variants: by count, then by the step names (not codes) so the order reads
    // naturally.
    let by_names = |a: &Rec, b: &Rec| {
        let name = |s: &u32| names[*s as usize].as_str();
        table
            .seq(a)
            .iter()
            .map(name)
            .cmp(table.seq(b).iter().map(name))
    };
    let cmp = |a: &Rec, b: &Rec| b.count.cmp(&a.count).then_with(|| by_names(a, b));
    let mut top: Vec<Rec> = table.recs.clone();
    let n = options.top.min(top.len());
    if n < top.len() {
        top.select_nth_unstable_by(n, cmp);
        top.truncate(n);
    }
    top.sort_by(cmp);

    // Pass 2: case durations of the top variants only, for their medians. Looked up by hash
    // among a handful of sequences, then confirmed by comparing the steps.
    let wanted: Vec<(u64, &[u32])> = top.iter().map(|r| (r.hash, table.seq(r))).collect();
    let mut by_hash: HashMap<u64, Vec<usize>> = HashMap::new();
    if wanted.len() > LINEAR_LOOKUP {
        for (i, &(h, _)) in wanted.iter().enumerate() {
            by_hash.entry(h).or_default().push(i);
        }
    }
    let durations = prepared.fold_cases(
        || vec![Vec::new(); wanted.len()],
        |d, case| {
            let h = hash_seq(case.steps);
            let hit = |&i: &usize| wanted[i].0 == h && wanted[i].1 == case.steps;
            let found = if wanted.len() <= LINEAR_LOOKUP {
                (0..wanted.len()).find(hit)
            } else {
                by_hash.get(&h).and_then(|c| c.iter().copied().find(hit))
            };
            if let Some(i) = found {
                d[i].push(case.duration());
            }
        },
        |mut a, b| {
            for (x, y) in a.iter_mut().zip(b) {
                x.extend(y);
            }
            a
        },
    );
    let variants = top
        .iter()
        .zip(durations)
        .collect::<Vec<_>>()
        .into_par_iter()
        .map(|(r, mut d)| Variant {
            steps: table
                .seq(r)
                .iter()
                .map(|&s| names[s as usize].clone())
                .collect(),
            count: r.count,
            customers: r.customers,
            share: r.count as f64 / total_cases as f64,
            median_duration_s: median_seconds(&mut d),
            with_outcome: r.with_outcome,
            successes: r.successes,
            success_share: r.successes as f64 / r.count as f64,
        })
        .collect();
    Ok(Variants {
        step: prepared.step_dimension().to_string(),
        case: prepared.case_split().to_string(),
        total_cases,
        total_variants,
        variants,
    })
}
