//! Personas: customers clustered by behaviour (k-means on standardized features), each
//! named by what sets it apart. See `docs/personas.md`.
//!
//! 1. **Features**, one fold over whole customer journeys ([`persona_features`]): the share
//!    of events per channel (outbound email, SMS and push left out), events and assisted
//!    contacts per month, assisted share, failure rate, mean sentiment and the activity
//!    profile (events per activity per month, after Song, Günther and van der Aalst's trace
//!    profiles) — clustered — and repeat-contact rate, value per month and conversion —
//!    profiled only.
//! 2. **Standardization**: per-month rates as `ln(1 + x)`, then each feature to z-scores over
//!    all customers (a constant feature becomes 0); the activity profile as a block weighs
//!    as much as the channel block in distances.
//! 3. **k-means** with k-means++ seeding on a deterministic sample (at most
//!    [`PersonaOptions::sample`] customers), several restarts keeping the lowest inertia;
//!    with no k given, every k of the range is tried and the one with the best silhouette
//!    (on a smaller deterministic sample) wins.
//! 4. **Assignment**: every customer to the nearest centroid; profiles are the members'
//!    means in original units.
//! 5. **Naming** by the clustered features whose members' mean z-scores are largest in
//!    magnitude, e.g. `phone 4.1×, ivr 3.0×`, with a short key (`phone-ivr`) for `--persona`.
//!
//! Random choices come from SplitMix64 streams seeded from [`PersonaOptions::seed`]; all
//! sums over points are taken in a fixed chunk order, so results do not depend on threads.

use crate::case::{Case, Prepared};
use crate::query::{CaseSplit, Query, StepDimension};
use crate::{EngineError, Stages};
use omnitrail_model::journeys::{Codes, Journeys, Nums, PropertyColumn, ScanSpec};
use omnitrail_model::CustomerId;
use rayon::prelude::*;
use serde::Serialize;
use std::sync::Arc;

const DAY: i64 = 86_400_000_000;
const MONTH: i64 = 30 * DAY;
/// Points per parallel work unit in k-means; fixed so sums never depend on thread count.
const CHUNK: usize = 4096;

/// Channels whose contacts are assisted by a person even without an `agent` property.
pub const ASSISTED_CHANNELS: [&str; 3] = ["chat", "phone", "store"];

#[derive(Clone, Debug, PartialEq)]
pub struct PersonaOptions {
    /// The number of personas; `None` chooses it by silhouette over `k_range`.
    pub k: Option<usize>,
    pub k_min: usize,
    pub k_max: usize,
    pub seed: u64,
    /// k-means runs on at most this many customers (a deterministic sample), then every
    /// customer is assigned to the nearest centroid.
    pub sample: usize,
    /// The silhouette of each candidate k is computed on at most this many customers.
    pub silhouette_sample: usize,
    /// k-means runs per k; the lowest inertia wins.
    pub restarts: usize,
    pub max_iterations: usize,
    /// The activity that makes a customer converted.
    pub purchase_activity: String,
    /// An assisted contact followed by another on the same topic within this (µs) is a
    /// repeat contact.
    pub repeat_window: i64,
    /// The activity profile holds at most this many activities, the most frequent (ties by
    /// name): it bounds the table's width on logs with thousands of distinct activities.
    pub max_activities: usize,
}

impl Default for PersonaOptions {
    fn default() -> Self {
        PersonaOptions {
            k: None,
            k_min: 2,
            k_max: 8,
            seed: 42,
            sample: 50_000,
            silhouette_sample: 2_000,
            restarts: 4,
            max_iterations: 100,
            purchase_activity: "purchase".to_string(),
            repeat_window: 7 * DAY,
            max_activities: 64,
        }
    }
}

impl PersonaOptions {
    fn check(&self) -> Result<(), EngineError> {
        let bad = |option, reason: String| Err(EngineError::InvalidOption { option, reason });
        if let Some(k) = self.k {
            if k < 1 {
                return bad("k", "need at least one persona".into());
            }
        } else if self.k_min < 2 || self.k_max < self.k_min {
            return bad(
                "k range",
                format!(
                    "{}..={} is not a range of at least 2 personas (silhouette needs 2 or more)",
                    self.k_min, self.k_max
                ),
            );
        }
        if self.sample < 2 || self.silhouette_sample < 2 {
            return bad("sample", "samples need at least 2 customers".into());
        }
        if self.restarts == 0 || self.max_iterations == 0 {
            return bad("restarts", "need at least one run and one iteration".into());
        }
        Ok(())
    }
}

/// The property columns persona features read.
pub const PERSONA_PROPERTIES: [&str; 5] = ["agent", "outcome", "sentiment", "topic", "value"];

/// The columns personas read beyond the query's own.
pub fn personas_scan(query: &Query) -> ScanSpec {
    let mut spec = Prepared::required_scan(query);
    spec.properties
        .extend(PERSONA_PROPERTIES.iter().map(|p| p.to_string()));
    spec.properties.sort();
    spec.properties.dedup();
    spec
}

/// The groups of features that are weighted as one in distances (see [`cluster`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FeatureBlock {
    /// Shares of the customer's events per (inbound) channel.
    Channels,
    /// Rates: activity, assisted contacts, failures, sentiment, …
    Behaviour,
    /// The activity profile: the customer's events per activity per month.
    Activities,
}

/// How a feature takes part: clustered features define the personas; the others are
/// profiled per persona (their mean) but left out of distances. Per-month rates are
/// clustered on `ln(1 + x)`, so a few very busy customers do not stretch the scale.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct FeatureKind {
    pub block: FeatureBlock,
    pub clustered: bool,
    pub log: bool,
}

/// Per-customer features in original units, row-major: customer `i`'s values are
/// `values[i * names.len()..(i + 1) * names.len()]`. Customers in id order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FeatureTable {
    pub names: Vec<String>,
    pub kinds: Vec<FeatureKind>,
    pub customers: Vec<CustomerId>,
    pub values: Vec<f64>,
}

impl FeatureTable {
    pub fn dim(&self) -> usize {
        self.names.len()
    }

    pub fn row(&self, i: usize) -> &[f64] {
        let d = self.dim();
        &self.values[i * d..(i + 1) * d]
    }
}

/// Channels the company sends on (notifications, bills and campaigns by email, SMS, push):
/// they follow the company's calendar, not the customer's choices, so they are left out of
/// the channel mix (their events still count in events per month and in the activity
/// profile).
pub const OUTBOUND_CHANNELS: [&str; 3] = ["email", "push", "sms"];

/// The behaviour features after the per-channel shares, in this order, with how each takes
/// part. The activity profile (`activity:<name>`) follows them.
pub const BEHAVIOUR_FEATURES: [(&str, FeatureKind); 9] = [
    ("events_per_month", CLUSTERED_LOG),
    ("assisted_share", CLUSTERED),
    ("contacts_per_month", CLUSTERED_LOG),
    ("failure_rate", CLUSTERED),
    ("repeat_contact_rate", PROFILED),
    ("sentiment", CLUSTERED),
    ("value_per_month", PROFILED),
    ("conversion", PROFILED),
    ("active_days_per_month", CLUSTERED_LOG),
];

const CHANNEL_SHARE: FeatureKind = FeatureKind {
    block: FeatureBlock::Channels,
    clustered: true,
    log: false,
};
const ACTIVITY_RATE: FeatureKind = FeatureKind {
    block: FeatureBlock::Activities,
    clustered: true,
    log: true,
};
const CLUSTERED: FeatureKind = FeatureKind {
    block: FeatureBlock::Behaviour,
    clustered: true,
    log: false,
};
const CLUSTERED_LOG: FeatureKind = FeatureKind {
    block: FeatureBlock::Behaviour,
    clustered: true,
    log: true,
};
const PROFILED: FeatureKind = FeatureKind {
    block: FeatureBlock::Behaviour,
    clustered: false,
    log: false,
};

/// A partition's columns as the feature fold reads them.
struct Cols<'j> {
    purchase: Option<u32>,
    assisted_channel: Vec<bool>,
    outbound_channel: Vec<bool>,
    /// The partition's activity code → index into the global activity alphabet, so the
    /// per-event work is one lookup.
    activity: Vec<u32>,
    agent: Option<&'j Codes>,
    outcome: Option<(&'j Codes, u32)>,
    sentiment: Option<&'j Nums>,
    topic: Option<&'j Codes>,
    value: Option<&'j Nums>,
}

fn text_codes<'j>(j: &'j Journeys, name: &str) -> Option<&'j Codes> {
    match j.properties.get(name) {
        Some(PropertyColumn::Text { codes, .. }) => Some(codes),
        _ => None,
    }
}

fn nums<'j>(j: &'j Journeys, name: &str) -> Option<&'j Nums> {
    match j.properties.get(name) {
        Some(PropertyColumn::Num(v)) => Some(v),
        _ => None,
    }
}

impl<'j> Cols<'j> {
    fn new(j: &'j Journeys, purchase: &str, alphabet: &[&str]) -> Cols<'j> {
        let outcome = match j.properties.get("outcome") {
            Some(PropertyColumn::Text { codes, dict }) => Some((
                codes,
                // Text codes are dictionary index + 1; u32::MAX never matches.
                dict.get("failure").map_or(u32::MAX, |c| c + 1),
            )),
            _ => None,
        };
        Cols {
            purchase: j.activities.get(purchase),
            assisted_channel: j
                .channels
                .values
                .iter()
                .map(|c| ASSISTED_CHANNELS.contains(&c.as_str()))
                .collect(),
            outbound_channel: j
                .channels
                .values
                .iter()
                .map(|c| OUTBOUND_CHANNELS.contains(&c.as_str()))
                .collect(),
            activity: j
                .activities
                .values
                .iter()
                .map(|a| {
                    alphabet
                        .binary_search(&a.as_str())
                        .expect("the alphabet holds every partition's activities")
                        as u32
                })
                .collect(),
            agent: text_codes(j, "agent"),
            outcome,
            sentiment: nums(j, "sentiment"),
            topic: text_codes(j, "topic"),
            value: nums(j, "value"),
        }
    }
}

/// Reusable per-chunk buffers of the feature fold.
#[derive(Default)]
struct FeatureScratch {
    /// Assisted contacts with a topic: (topic, time, followed by a repeat).
    recent: Vec<(u32, i64, bool)>,
    channel_counts: Vec<f64>,
    /// Events per global activity (all zero between customers) and the activities touched.
    activity_counts: Vec<u32>,
    touched: Vec<u32>,
}

/// One customer's features into `out` and its activity counts, as (global activity, events)
/// sorted by activity, onto `activities`; `slot[channel step]` is the channel's column, if
/// it has one. Returns the customer's active months.
fn customer_features(
    case: &Case<'_>,
    cols: &Cols<'_>,
    slot: &[Option<usize>],
    repeat_window: i64,
    scratch: &mut FeatureScratch,
    out: &mut [f64],
    activities: &mut Vec<(u32, u32)>,
) -> f64 {
    let FeatureScratch {
        recent,
        channel_counts,
        activity_counts,
        touched,
    } = scratch;
    channel_counts.clear();
    channel_counts.resize(slot.len(), 0.0);
    let j = case.journeys;
    let n = case.events.len() as f64;
    let (mut assisted, mut with_outcome, mut failures) = (0u64, 0u64, 0u64);
    let (mut sentiment_sum, mut sentiment_n) = (0.0, 0u64);
    let mut value = 0.0;
    let mut converted = false;
    // Days with an event the customer started (events are in time order).
    let (mut active_days, mut last_day, mut started) = (0u64, i64::MIN, 0u64);
    recent.clear();
    for (&e, &channel_step) in case.events.iter().zip(case.steps) {
        let e = e as usize;
        if !cols.outbound_channel[j.channel[e] as usize] {
            started += 1;
            let day = j.ts[e].div_euclid(DAY);
            if day != last_day {
                active_days += 1;
                last_day = day;
            }
        }
        channel_counts[channel_step as usize] += 1.0;
        let a = cols.activity[j.activity.get(e) as usize];
        if activity_counts[a as usize] == 0 {
            touched.push(a);
        }
        activity_counts[a as usize] += 1;
        let is_assisted = cols.assisted_channel[j.channel[e] as usize]
            || cols.agent.is_some_and(|a| a.get(e) != 0);
        if is_assisted {
            assisted += 1;
            if let Some(topic) = cols.topic.map(|t| t.get(e)).filter(|&t| t != 0) {
                let ts = j.ts[e];
                for r in recent.iter_mut().rev() {
                    if ts - r.1 > repeat_window {
                        break;
                    }
                    if r.0 == topic {
                        r.2 = true;
                    }
                }
                recent.push((topic, ts, false));
            }
        }
        if let Some((codes, failure)) = cols.outcome {
            if codes.get(e) != 0 {
                with_outcome += 1;
                failures += u64::from(codes.get(e) == failure);
            }
        }
        if let Some(v) = cols.sentiment.map(|s| s.get(e)).filter(|v| !v.is_nan()) {
            sentiment_sum += v;
            sentiment_n += 1;
        }
        if let Some(v) = cols.value.map(|s| s.get(e)).filter(|v| !v.is_nan()) {
            value += v;
        }
        converted |= cols.purchase == Some(j.activity.get(e));
    }
    touched.sort_unstable();
    for &a in touched.iter() {
        activities.push((a, activity_counts[a as usize]));
        activity_counts[a as usize] = 0;
    }
    touched.clear();
    let channels = slot.iter().flatten().count();
    for (c, s) in slot.iter().enumerate() {
        if let Some(s) = s {
            out[*s] = channel_counts[c] / n;
        }
    }
    // At least a month, so that a customer seen for a day is not read as hyperactive.
    let months = (case.duration().max(MONTH)) as f64 / MONTH as f64;
    let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { 0.0 };
    let b = &mut out[channels..];
    b[0] = started as f64 / months;
    b[1] = assisted as f64 / n;
    b[2] = assisted as f64 / months;
    b[3] = ratio(failures as f64, with_outcome as f64);
    b[4] = ratio(
        recent.iter().filter(|r| r.2).count() as f64,
        recent.len() as f64,
    );
    // No sentiment at all reads as neutral.
    b[5] = ratio(sentiment_sum, sentiment_n as f64);
    b[6] = value / months;
    b[7] = f64::from(u8::from(converted));
    b[8] = active_days as f64 / months;
    months
}

/// One fold's output: per customer its id, its channel and behaviour features, how many
/// (global activity, events) pairs it has in `activities`, and its active months.
#[derive(Default)]
struct FoldOut {
    ids: Vec<CustomerId>,
    values: Vec<f64>,
    pairs: Vec<u32>,
    activities: Vec<(u32, u32)>,
    /// Active months (see [`customer_features`]), for the activity rates.
    months: Vec<f64>,
}

/// Every customer's features over the query's events (whole customers; the query's step
/// dimension and case split do not apply): channel shares, behaviour features, then the
/// activity profile — the customer's events per activity per active month, for the (at most
/// [`PersonaOptions::max_activities`]) most frequent activities, by name.
pub fn persona_features(
    partitions: &[Arc<Journeys>],
    stages: &Stages,
    query: &Query,
    options: &PersonaOptions,
) -> Result<FeatureTable, EngineError> {
    let prepared = Prepared::with(
        partitions,
        stages,
        query,
        &StepDimension::Channel,
        &CaseSplit::Customer,
    )?;
    let mut names = Vec::new();
    let slot: Vec<Option<usize>> = prepared
        .step_names()
        .iter()
        .map(|c| {
            (!OUTBOUND_CHANNELS.contains(&c.as_str())).then(|| {
                names.push(format!("channel:{c}"));
                names.len() - 1
            })
        })
        .collect();
    let mut kinds = vec![CHANNEL_SHARE; names.len()];
    names.extend(BEHAVIOUR_FEATURES.iter().map(|(s, _)| s.to_string()));
    kinds.extend(BEHAVIOUR_FEATURES.iter().map(|(_, k)| *k));
    let base = names.len();
    // Every partition's activities, by name: the global codes of the profile.
    let mut alphabet: Vec<&str> = partitions
        .iter()
        .flat_map(|j| j.activities.values.iter().map(String::as_str))
        .collect();
    alphabet.sort_unstable();
    alphabet.dedup();
    let cols: Vec<Cols<'_>> = partitions
        .iter()
        .map(|j| Cols::new(j, &options.purchase_activity, &alphabet))
        .collect();
    type Acc = (FoldOut, FeatureScratch, Vec<f64>);
    let (out, _, _) = prepared.fold_cases(
        || -> Acc {
            let scratch = FeatureScratch {
                activity_counts: vec![0; alphabet.len()],
                ..FeatureScratch::default()
            };
            (FoldOut::default(), scratch, vec![0.0; base])
        },
        |(out, scratch, row): &mut Acc, case| {
            let before = out.activities.len();
            let months = customer_features(
                case,
                &cols[case.partition_index],
                &slot,
                options.repeat_window,
                scratch,
                row,
                &mut out.activities,
            );
            out.ids.push(case.customer);
            out.values.extend_from_slice(row);
            out.pairs.push((out.activities.len() - before) as u32);
            out.months.push(months);
        },
        |mut a, b| {
            a.0.ids.extend(b.0.ids);
            a.0.values.extend(b.0.values);
            a.0.pairs.extend(b.0.pairs);
            a.0.activities.extend(b.0.activities);
            a.0.months.extend(b.0.months);
            a
        },
    );
    // The profile's activities: the most frequent (ties by name), then in name order.
    let mut totals = vec![0u64; alphabet.len()];
    for &(a, m) in &out.activities {
        totals[a as usize] += u64::from(m);
    }
    let mut kept: Vec<usize> = (0..alphabet.len()).filter(|&a| totals[a] > 0).collect();
    kept.sort_by(|&a, &b| totals[b].cmp(&totals[a]).then(a.cmp(&b)));
    kept.truncate(options.max_activities);
    kept.sort_unstable();
    let mut column = vec![usize::MAX; alphabet.len()];
    for (x, &a) in kept.iter().enumerate() {
        column[a] = base + x;
        names.push(format!("activity:{}", alphabet[a]));
        kinds.push(ACTIVITY_RATE);
    }
    let d = names.len();
    let mut starts = Vec::with_capacity(out.pairs.len() + 1);
    starts.push(0usize);
    for &p in &out.pairs {
        starts.push(starts.last().copied().unwrap_or(0) + p as usize);
    }
    // Customer id order, whatever the partitioning.
    let mut order: Vec<usize> = (0..out.ids.len()).collect();
    order.sort_by_key(|&i| out.ids[i]);
    let mut values = vec![0.0; order.len() * d];
    for (row, &i) in values.chunks_exact_mut(d.max(1)).zip(&order) {
        row[..base].copy_from_slice(&out.values[i * base..(i + 1) * base]);
        for &(a, m) in &out.activities[starts[i]..starts[i + 1]] {
            if column[a as usize] != usize::MAX {
                row[column[a as usize]] = f64::from(m) / out.months[i];
            }
        }
    }
    Ok(FeatureTable {
        names,
        kinds,
        customers: order.iter().map(|&i| out.ids[i]).collect(),
        values,
    })
}

/// A SplitMix64 stream: tiny, fast and fully specified, so a seed means the same numbers in
/// every version.
#[derive(Clone, Debug)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> SplitMix64 {
        SplitMix64(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1) with 53 random bits.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in `0..n` (n > 0), without modulo bias worth noticing for n ≪ 2⁶⁴.
    pub fn below(&mut self, n: usize) -> usize {
        ((u128::from(self.next_u64()) * n as u128) >> 64) as usize
    }
}

/// `m` distinct indices of `0..n` (all of them, in order, when `m >= n`), chosen by a
/// partial Fisher–Yates shuffle and returned sorted.
pub fn sample_indices(n: usize, m: usize, seed: u64) -> Vec<usize> {
    if m >= n {
        return (0..n).collect();
    }
    let mut rng = SplitMix64::new(seed);
    // Sparse swaps: only the touched positions are stored.
    let mut swapped: std::collections::HashMap<usize, usize> = std::collections::HashMap::new();
    let mut out = Vec::with_capacity(m);
    for i in 0..m {
        let j = i + rng.below(n - i);
        let vi = *swapped.get(&i).unwrap_or(&i);
        let vj = *swapped.get(&j).unwrap_or(&j);
        swapped.insert(j, vi);
        out.push(vj);
    }
    out.sort_unstable();
    out
}

/// Squared Euclidean distance.
#[inline]
pub fn dist2(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum()
}

/// The nearest centroid (lowest index on ties) and the squared distance to it.
#[inline]
pub fn nearest(point: &[f64], centroids: &[f64], dim: usize) -> (usize, f64) {
    let mut best = (0, f64::INFINITY);
    for (c, centroid) in centroids.chunks_exact(dim).enumerate() {
        let d = dist2(point, centroid);
        if d < best.1 {
            best = (c, d);
        }
    }
    best
}

/// Every point's nearest centroid, in parallel.
pub fn assign(points: &[f64], dim: usize, centroids: &[f64]) -> Vec<u32> {
    points
        .par_chunks(dim * CHUNK)
        .flat_map_iter(|chunk| {
            chunk
                .chunks_exact(dim)
                .map(|p| nearest(p, centroids, dim).0 as u32)
        })
        .collect()
}

#[derive(Clone, Debug, PartialEq)]
pub struct KMeans {
    /// k × dim, row-major.
    pub centroids: Vec<f64>,
    pub labels: Vec<u32>,
    /// Sum of squared distances to the assigned centroids.
    pub inertia: f64,
    pub iterations: usize,
}

/// k-means++ seeding: the first centroid uniformly, each next one with probability
/// proportional to the squared distance to the nearest centroid so far.
fn seed_centroids(points: &[f64], dim: usize, k: usize, rng: &mut SplitMix64) -> Vec<f64> {
    let n = points.len() / dim;
    let mut centroids = Vec::with_capacity(k * dim);
    let first = rng.below(n);
    centroids.extend_from_slice(&points[first * dim..(first + 1) * dim]);
    let mut d2: Vec<f64> = points
        .chunks_exact(dim)
        .map(|p| dist2(p, &centroids[..dim]))
        .collect();
    for _ in 1..k {
        let total: f64 = d2.iter().sum();
        let pick = if total > 0.0 {
            let target = rng.next_f64() * total;
            let mut acc = 0.0;
            let mut chosen = n - 1;
            for (i, &d) in d2.iter().enumerate() {
                acc += d;
                if acc > target {
                    chosen = i;
                    break;
                }
            }
            chosen
        } else {
            // Every point sits on a centroid already: any point will do.
            rng.below(n)
        };
        let c = points[pick * dim..(pick + 1) * dim].to_vec();
        for (p, d) in points.chunks_exact(dim).zip(d2.iter_mut()) {
            *d = d.min(dist2(p, &c));
        }
        centroids.extend_from_slice(&c);
    }
    centroids
}

/// One chunk's part of a Lloyd step: labels, per-cluster coordinate sums and sizes, inertia.
type ChunkStep = (Vec<u32>, Vec<f64>, Vec<u64>, f64);

/// One Lloyd run from k-means++ seeds. Empty clusters take the point farthest from its
/// centroid, so k clusters stay k.
fn lloyd(points: &[f64], dim: usize, k: usize, max_iterations: usize, seed: u64) -> KMeans {
    let n = points.len() / dim;
    let mut rng = SplitMix64::new(seed);
    let mut centroids = seed_centroids(points, dim, k, &mut rng);
    let mut labels = vec![u32::MAX; n];
    let mut iterations = 0;
    loop {
        iterations += 1;
        // Assignment and per-chunk sums in parallel; the chunk sums are added in order.
        let parts: Vec<ChunkStep> = points
            .par_chunks(dim * CHUNK)
            .map(|chunk| {
                let mut sums = vec![0.0; k * dim];
                let mut counts = vec![0u64; k];
                let mut inertia = 0.0;
                let mut ls = Vec::with_capacity(chunk.len() / dim);
                for p in chunk.chunks_exact(dim) {
                    let (c, d) = nearest(p, &centroids, dim);
                    ls.push(c as u32);
                    counts[c] += 1;
                    inertia += d;
                    for (s, x) in sums[c * dim..(c + 1) * dim].iter_mut().zip(p) {
                        *s += x;
                    }
                }
                (ls, sums, counts, inertia)
            })
            .collect();
        let mut sums = vec![0.0; k * dim];
        let mut counts = vec![0u64; k];
        let mut changed = false;
        let mut at = 0;
        for (ls, s, c, _) in &parts {
            for (a, b) in sums.iter_mut().zip(s) {
                *a += b;
            }
            for (a, b) in counts.iter_mut().zip(c) {
                *a += b;
            }
            for &l in ls {
                changed |= labels[at] != l;
                labels[at] = l;
                at += 1;
            }
        }
        if !changed || iterations >= max_iterations {
            let inertia = parts.iter().map(|p| p.3).sum();
            return KMeans {
                centroids,
                labels,
                inertia,
                iterations,
            };
        }
        for c in 0..k {
            if counts[c] > 0 {
                for x in 0..dim {
                    centroids[c * dim + x] = sums[c * dim + x] / counts[c] as f64;
                }
            }
        }
        for c in 0..k {
            if counts[c] == 0 {
                // The point farthest from its own centroid (lowest index on ties).
                let (far, _) =
                    points
                        .chunks_exact(dim)
                        .enumerate()
                        .fold((0, -1.0), |best, (i, p)| {
                            let l = labels[i] as usize;
                            let d = dist2(p, &centroids[l * dim..(l + 1) * dim]);
                            if d > best.1 {
                                (i, d)
                            } else {
                                best
                            }
                        });
                centroids[c * dim..(c + 1) * dim]
                    .copy_from_slice(&points[far * dim..(far + 1) * dim]);
                labels[far] = c as u32;
            }
        }
    }
}

/// k-means with `restarts` runs from different k-means++ seeds; the lowest inertia wins
/// (the earliest run on ties). `k` is capped by the number of points.
pub fn kmeans(
    points: &[f64],
    dim: usize,
    k: usize,
    seed: u64,
    restarts: usize,
    max_iterations: usize,
) -> KMeans {
    let n = points.len() / dim.max(1);
    let k = k.min(n).max(1);
    let mut best: Option<KMeans> = None;
    for r in 0..restarts.max(1) {
        let run_seed =
            SplitMix64::new(seed ^ (r as u64).wrapping_mul(0xA24B_AED4_963E_E407)).next_u64();
        let run = lloyd(points, dim, k, max_iterations, run_seed);
        if best.as_ref().is_none_or(|b| run.inertia < b.inertia) {
            best = Some(run);
        }
    }
    best.expect("at least one run")
}

/// Mean silhouette of a labelling: per point (b − a) / max(a, b), a the mean distance to
/// its own cluster, b the lowest mean distance to another cluster; 0 for points alone in
/// their cluster. Exact, O(n²): callers pass a sample.
pub fn silhouette(points: &[f64], dim: usize, labels: &[u32], k: usize) -> f64 {
    let n = labels.len();
    if n < 2 || k < 2 {
        return 0.0;
    }
    let mut sizes = vec![0u64; k];
    for &l in labels {
        sizes[l as usize] += 1;
    }
    let scores: Vec<f64> = (0..n)
        .into_par_iter()
        .with_min_len(64)
        .map(|i| {
            let own = labels[i] as usize;
            if sizes[own] <= 1 {
                return 0.0;
            }
            let p = &points[i * dim..(i + 1) * dim];
            let mut sums = vec![0.0; k];
            for (j, q) in points.chunks_exact(dim).enumerate() {
                if j != i {
                    sums[labels[j] as usize] += dist2(p, q).sqrt();
                }
            }
            let a = sums[own] / (sizes[own] - 1) as f64;
            let b = (0..k)
                .filter(|&c| c != own && sizes[c] > 0)
                .map(|c| sums[c] / sizes[c] as f64)
                .fold(f64::INFINITY, f64::min);
            if !b.is_finite() {
                return 0.0;
            }
            let m = a.max(b);
            if m == 0.0 {
                0.0
            } else {
                (b - a) / m
            }
        })
        .collect();
    scores.iter().sum::<f64>() / n as f64
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Personas {
    /// Customers clustered.
    pub customers: u64,
    pub k: usize,
    pub seed: u64,
    /// Customers k-means ran on (the rest were assigned to the nearest centroid).
    pub sampled: u64,
    /// How k was chosen: `given` or `silhouette`.
    pub k_choice: String,
    /// Silhouette (and inertia) per candidate k, when k was chosen.
    pub candidates: Vec<KCandidate>,
    /// Population mean and standard deviation per feature.
    pub features: Vec<FeatureStats>,
    /// By size, largest first.
    pub personas: Vec<Persona>,
    /// Every clustered customer's persona, by index into `personas`.
    #[serde(skip)]
    pub assignment: Assignment,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Assignment {
    /// In id order.
    pub customers: Vec<CustomerId>,
    pub personas: Vec<u32>,
}

impl Assignment {
    /// The customers of persona `index`.
    pub fn members(&self, index: usize) -> Vec<CustomerId> {
        self.customers
            .iter()
            .zip(&self.personas)
            .filter(|(_, &p)| p as usize == index)
            .map(|(&c, _)| c)
            .collect()
    }

    pub fn persona_of(&self, customer: CustomerId) -> Option<usize> {
        self.customers
            .binary_search(&customer)
            .ok()
            .map(|i| self.personas[i] as usize)
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct KCandidate {
    pub k: usize,
    pub silhouette: f64,
    pub inertia: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FeatureStats {
    pub feature: String,
    /// Whether it takes part in distances (otherwise it is only profiled).
    pub clustered: bool,
    pub block: FeatureBlock,
    /// Clustered as `ln(1 + x)`.
    pub log: bool,
    /// Population mean in original units.
    pub mean: f64,
    /// Standard deviation of the clustered form.
    pub std: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Persona {
    /// 1-based, by size.
    pub index: usize,
    /// Short unique key for `--persona`, e.g. `phone-ivr` or `low-events_per_month`.
    pub key: String,
    /// From the most distinguishing features, e.g. `phone 4.1×, ivr 3.0×`.
    pub name: String,
    pub customers: u64,
    pub share: f64,
    /// Every feature's mean over the members in original units, with the population mean
    /// and the members' mean z-score.
    pub profile: Vec<FeatureValue>,
    /// The features that set it apart most (|z| largest first), at most three.
    pub distinguishing: Vec<FeatureValue>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FeatureValue {
    pub feature: String,
    pub value: f64,
    /// Population mean of the feature.
    pub population: f64,
    /// The members' mean standardized value.
    pub z: f64,
}

/// Standardizes columns in place to z-scores over all rows (population mean and standard
/// deviation); a column without variance becomes 0. Returns (mean, std) per column.
pub fn standardize(values: &mut [f64], dim: usize) -> Vec<(f64, f64)> {
    let n = values.len() / dim.max(1);
    if n == 0 {
        return vec![(0.0, 0.0); dim];
    }
    let means: Vec<f64> = column_sums(values, dim, &|_, v| v)
        .into_iter()
        .map(|s| s / n as f64)
        .collect();
    let stds: Vec<f64> = column_sums(values, dim, &|x, v| (v - means[x]) * (v - means[x]))
        .into_iter()
        .map(|s| (s / n as f64).sqrt())
        .collect();
    values.par_chunks_mut(dim * CHUNK).for_each(|chunk| {
        for row in chunk.chunks_exact_mut(dim) {
            for (x, v) in row.iter_mut().enumerate() {
                // A constant feature carries no information: 0 keeps it out of distances.
                *v = if stds[x] > 1e-12 {
                    (*v - means[x]) / stds[x]
                } else {
                    0.0
                };
            }
        }
    });
    means.into_iter().zip(stds).collect()
}

/// Per column, the sum of `f(column, value)` over rows, summed in fixed chunks added in
/// order (the same bits for any thread count).
fn column_sums(values: &[f64], dim: usize, f: &(dyn Fn(usize, f64) -> f64 + Sync)) -> Vec<f64> {
    let parts: Vec<Vec<f64>> = values
        .par_chunks(dim * CHUNK)
        .map(|chunk| {
            let mut s = vec![0.0; dim];
            for row in chunk.chunks_exact(dim) {
                for (x, (acc, &v)) in s.iter_mut().zip(row).enumerate() {
                    *acc += f(x, v);
                }
            }
            s
        })
        .collect();
    let mut s = vec![0.0; dim];
    for p in parts {
        for (a, b) in s.iter_mut().zip(p) {
            *a += b;
        }
    }
    s
}

/// Short human label of a feature for persona names.
fn label(feature: &str) -> String {
    if let Some(c) = feature
        .strip_prefix("channel:")
        .or_else(|| feature.strip_prefix("activity:"))
    {
        return c.to_string();
    }
    match feature {
        "events_per_month" => "activity",
        "assisted_share" => "assisted",
        "contacts_per_month" => "contacts",
        "failure_rate" => "failures",
        "repeat_contact_rate" => "repeat contacts",
        "sentiment" => "sentiment",
        "value_per_month" => "spend",
        "conversion" => "conversion",
        "active_days_per_month" => "active days",
        other => other,
    }
    .to_string()
}

/// `phone 4.1×` (ratio to the population mean), or `sentiment -0.42` for features whose
/// mean is not positive.
fn describe(f: &FeatureValue) -> String {
    if f.feature == "sentiment" || f.population <= 1e-12 {
        format!("{} {:+.2}", label(&f.feature), f.value)
    } else {
        format!("{} {:.1}×", label(&f.feature), f.value / f.population)
    }
}

fn slug(f: &FeatureValue) -> String {
    let base: String = label(&f.feature)
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    if f.z < 0.0 {
        format!("low_{base}")
    } else {
        base
    }
}

/// Per clustered feature, the factor on its z-score in distances. Channel and behaviour
/// features count one z-score each. The activity profile is many correlated columns (a call
/// is `call_started`, `ivr_menu`, `call_ended` at once): at one z-score each it would drown
/// the rest, so the block as a whole gets the weight (total variance) of the channel block,
/// the other profile of the same events — where customers go and what they do weigh alike.
fn distance_weights(kinds: &[FeatureKind], stats: &[(f64, f64)], clustered: &[usize]) -> Vec<f64> {
    // Only features with variance take part (constant ones are 0 after standardization).
    let varying = |block: FeatureBlock| {
        clustered
            .iter()
            .filter(|&&x| kinds[x].block == block && stats[x].1 > 1e-12)
            .count()
    };
    let channels = varying(FeatureBlock::Channels).max(1);
    let activities = varying(FeatureBlock::Activities).max(1);
    let activity_weight = (channels as f64 / activities as f64).sqrt();
    clustered
        .iter()
        .map(|&x| match kinds[x].block {
            FeatureBlock::Activities => activity_weight,
            FeatureBlock::Channels | FeatureBlock::Behaviour => 1.0,
        })
        .collect()
}

/// Clusters the features into personas. See the module documentation.
pub fn cluster(table: &FeatureTable, options: &PersonaOptions) -> Result<Personas, EngineError> {
    options.check()?;
    let n = table.customers.len();
    let dim = table.dim();
    // Every feature standardized (for profiles and names); distances use the clustered ones.
    let mut z: Vec<f64> = table
        .values
        .chunks_exact(dim.max(1))
        .flat_map(|row| {
            row.iter()
                .zip(&table.kinds)
                .map(|(&v, k)| if k.log { v.max(0.0).ln_1p() } else { v })
        })
        .collect();
    let stats = standardize(&mut z, dim);
    let clustered: Vec<usize> = (0..dim).filter(|&x| table.kinds[x].clustered).collect();
    let dc = clustered.len().max(1);
    let weights = distance_weights(&table.kinds, &stats, &clustered);
    let zc: Vec<f64> = z
        .chunks_exact(dim.max(1))
        .flat_map(|row| clustered.iter().zip(&weights).map(|(&x, w)| row[x] * w))
        .collect();
    let k_choice = if options.k.is_some() {
        "given"
    } else {
        "silhouette"
    }
    .to_string();
    if n == 0 || clustered.is_empty() {
        return Ok(Personas {
            customers: n as u64,
            k: 0,
            seed: options.seed,
            sampled: 0,
            k_choice,
            candidates: Vec::new(),
            features: Vec::new(),
            personas: Vec::new(),
            assignment: Assignment::default(),
        });
    }
    let pick = |idx: &[usize]| -> Vec<f64> {
        let mut out = Vec::with_capacity(idx.len() * dc);
        for &i in idx {
            out.extend_from_slice(&zc[i * dc..(i + 1) * dc]);
        }
        out
    };
    let sample_idx = sample_indices(n, options.sample, options.seed);
    let sample = pick(&sample_idx);
    let (k, candidates) = match options.k {
        Some(k) => (k.min(n), Vec::new()),
        None => {
            // Candidates are judged on a smaller sample: silhouette is quadratic.
            let small_idx = sample_indices(n, options.silhouette_sample, options.seed ^ 0x5151);
            let small = pick(&small_idx);
            let mut candidates = Vec::new();
            for k in options.k_min..=options.k_max.min(small_idx.len()) {
                let run = kmeans(
                    &small,
                    dc,
                    k,
                    options.seed,
                    options.restarts,
                    options.max_iterations,
                );
                candidates.push(KCandidate {
                    k,
                    silhouette: silhouette(&small, dc, &run.labels, k),
                    inertia: run.inertia,
                });
            }
            // The best silhouette; the smaller k on ties.
            let best = candidates
                .iter()
                .fold(None::<&KCandidate>, |best, c| match best {
                    Some(b) if b.silhouette >= c.silhouette => Some(b),
                    _ => Some(c),
                })
                .map_or(1, |c| c.k);
            (best, candidates)
        }
    };
    let run = kmeans(
        &sample,
        dc,
        k,
        options.seed,
        options.restarts,
        options.max_iterations,
    );
    let k = run.centroids.len() / dc;
    let labels = assign(&zc, dc, &run.centroids);
    // Per cluster: size, and sums of raw values and of z-scores over all its members.
    let mut sizes = vec![0u64; k];
    let mut raw_sums = vec![0.0; k * dim];
    let mut z_sums = vec![0.0; k * dim];
    for (i, &l) in labels.iter().enumerate() {
        let l = l as usize;
        sizes[l] += 1;
        for x in 0..dim {
            raw_sums[l * dim + x] += table.values[i * dim + x];
            z_sums[l * dim + x] += z[i * dim + x];
        }
    }
    let population: Vec<f64> = column_sums(&table.values, dim, &|_, v| v)
        .into_iter()
        .map(|s| s / n as f64)
        .collect();
    // Largest first; ties by centroid so the order never depends on seeding accidents.
    let mut order: Vec<usize> = (0..k).collect();
    order.sort_by(|&a, &b| {
        sizes[b].cmp(&sizes[a]).then_with(|| {
            run.centroids[a * dc..(a + 1) * dc]
                .iter()
                .zip(&run.centroids[b * dc..(b + 1) * dc])
                .map(|(x, y)| x.total_cmp(y))
                .find(|o| o.is_ne())
                .unwrap_or(std::cmp::Ordering::Equal)
        })
    });
    let mut rank = vec![0u32; k];
    for (r, &c) in order.iter().enumerate() {
        rank[c] = r as u32;
    }
    let mut used_keys: Vec<String> = Vec::new();
    let personas: Vec<Persona> = order
        .iter()
        .enumerate()
        .map(|(r, &c)| {
            let size = sizes[c].max(1) as f64;
            let profile: Vec<FeatureValue> = (0..dim)
                .map(|x| FeatureValue {
                    feature: table.names[x].clone(),
                    value: raw_sums[c * dim + x] / size,
                    population: population[x],
                    z: z_sums[c * dim + x] / size,
                })
                .collect();
            // Names come from what defines the clusters: the clustered features.
            let mut by_z: Vec<usize> = clustered.clone();
            by_z.sort_by(|&a, &b| {
                profile[b]
                    .z
                    .abs()
                    .total_cmp(&profile[a].z.abs())
                    .then(a.cmp(&b))
            });
            let distinguishing: Vec<FeatureValue> =
                by_z.iter().take(3).map(|&x| profile[x].clone()).collect();
            let top: Vec<&FeatureValue> = distinguishing.iter().take(2).collect();
            let name = top
                .iter()
                .map(|f| describe(f))
                .collect::<Vec<_>>()
                .join(", ");
            let base = top.iter().map(|f| slug(f)).collect::<Vec<_>>().join("-");
            let mut key = base.clone();
            let mut suffix = 2;
            while used_keys.contains(&key) {
                key = format!("{base}-{suffix}");
                suffix += 1;
            }
            used_keys.push(key.clone());
            Persona {
                index: r + 1,
                key,
                name,
                customers: sizes[c],
                share: sizes[c] as f64 / n as f64,
                profile,
                distinguishing,
            }
        })
        .collect();
    let features = table
        .names
        .iter()
        .enumerate()
        .map(|(x, name)| FeatureStats {
            feature: name.clone(),
            clustered: table.kinds[x].clustered,
            block: table.kinds[x].block,
            log: table.kinds[x].log,
            mean: population[x],
            // Of the clustered form (after the log, for per-month rates).
            std: stats[x].1,
        })
        .collect();
    Ok(Personas {
        customers: n as u64,
        k,
        seed: options.seed,
        sampled: sample_idx.len() as u64,
        k_choice,
        candidates,
        features,
        personas,
        assignment: Assignment {
            customers: table.customers.clone(),
            personas: labels.iter().map(|&l| rank[l as usize]).collect(),
        },
    })
}

/// Features, then clusters: personas of the query's customers.
pub fn personas(
    partitions: &[Arc<Journeys>],
    stages: &Stages,
    query: &Query,
    options: &PersonaOptions,
) -> Result<Personas, EngineError> {
    options.check()?;
    let table = persona_features(partitions, stages, query, options)?;
    cluster(&table, options)
}

/// Adjusted Rand index of two labellings of the same items (Hubert and Arabie): 1 for
/// identical partitions, about 0 for independent ones.
pub fn adjusted_rand_index(a: &[u32], b: &[u32]) -> f64 {
    assert_eq!(a.len(), b.len(), "labellings of different lengths");
    let n = a.len() as u64;
    let mut table: std::collections::BTreeMap<(u32, u32), u64> = Default::default();
    let mut rows: std::collections::BTreeMap<u32, u64> = Default::default();
    let mut cols: std::collections::BTreeMap<u32, u64> = Default::default();
    for (&x, &y) in a.iter().zip(b) {
        *table.entry((x, y)).or_default() += 1;
        *rows.entry(x).or_default() += 1;
        *cols.entry(y).or_default() += 1;
    }
    let c2 = |m: u64| (m * m.saturating_sub(1) / 2) as f64;
    let index: f64 = table.values().map(|&m| c2(m)).sum();
    let sa: f64 = rows.values().map(|&m| c2(m)).sum();
    let sb: f64 = cols.values().map(|&m| c2(m)).sum();
    let total = c2(n);
    if total == 0.0 {
        return 1.0;
    }
    let expected = sa * sb / total;
    let max = (sa + sb) / 2.0;
    if max == expected {
        return 1.0;
    }
    (index - expected) / (max - expected)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pair counting by brute force: agreements over all pairs, adjusted as in Hubert and
    /// Arabie's definition.
    fn ari_brute(a: &[u32], b: &[u32]) -> f64 {
        let n = a.len();
        let (mut both, mut only_a, mut only_b, mut pairs) = (0f64, 0f64, 0f64, 0f64);
        for i in 0..n {
            for j in i + 1..n {
                let sa = a[i] == a[j];
                let sb = b[i] == b[j];
                pairs += 1.0;
                both += f64::from(u8::from(sa && sb));
                only_a += f64::from(u8::from(sa));
                only_b += f64::from(u8::from(sb));
            }
        }
        let expected = only_a * only_b / pairs;
        let max = (only_a + only_b) / 2.0;
        if max == expected {
            return 1.0;
        }
        (both - expected) / (max - expected)
    }

    #[test]
    fn ari_matches_pair_counting() {
        let cases: [(&[u32], &[u32]); 5] = [
            (&[0, 0, 1, 1], &[1, 1, 0, 0]),
            (&[0, 0, 0, 1, 1, 1], &[0, 0, 1, 1, 2, 2]),
            (&[0, 1, 2, 0, 1, 2, 0], &[0, 0, 0, 1, 1, 1, 2]),
            (&[0, 0, 1, 2, 2, 2, 3], &[1, 1, 1, 0, 0, 2, 2]),
            (&[5, 5, 5, 5], &[1, 2, 3, 4]),
        ];
        for (a, b) in cases {
            let got = adjusted_rand_index(a, b);
            let want = ari_brute(a, b);
            assert!((got - want).abs() < 1e-12, "{a:?} {b:?}: {got} vs {want}");
        }
        assert_eq!(adjusted_rand_index(&[0, 0, 1, 1], &[1, 1, 0, 0]), 1.0);
        // Known value (scikit-learn's documentation example): 0.5714…
        let v = adjusted_rand_index(&[0, 0, 1, 1], &[0, 0, 1, 2]);
        assert!((v - 0.571_428_571_428_571_4).abs() < 1e-12, "{v}");
    }

    #[test]
    fn samples_are_distinct_sorted_and_seeded() {
        let s = sample_indices(1000, 100, 7);
        assert_eq!(s.len(), 100);
        assert!(s.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(s, sample_indices(1000, 100, 7));
        assert_ne!(s, sample_indices(1000, 100, 8));
        assert_eq!(sample_indices(5, 10, 1), vec![0, 1, 2, 3, 4]);
    }

    #[test]
    fn kmeans_finds_separated_blobs_and_silhouette_prefers_their_k() {
        let mut rng = SplitMix64::new(3);
        let centres = [(0.0, 0.0), (10.0, 0.0), (0.0, 10.0)];
        let mut points = Vec::new();
        let mut truth = Vec::new();
        for i in 0..300 {
            let (x, y) = centres[i % 3];
            points.push(x + rng.next_f64() - 0.5);
            points.push(y + rng.next_f64() - 0.5);
            truth.push((i % 3) as u32);
        }
        let run = kmeans(&points, 2, 3, 1, 3, 100);
        assert_eq!(adjusted_rand_index(&run.labels, &truth), 1.0);
        let s3 = silhouette(&points, 2, &run.labels, 3);
        let run2 = kmeans(&points, 2, 2, 1, 3, 100);
        let s2 = silhouette(&points, 2, &run2.labels, 2);
        assert!(s3 > 0.9 && s3 > s2, "{s3} vs {s2}");
        assert_eq!(assign(&points, 2, &run.centroids), run.labels);
    }

    #[test]
    fn standardize_gives_zero_mean_unit_std_and_zero_for_constants() {
        let mut v = vec![1.0, 5.0, 3.0, 5.0, 5.0, 5.0];
        let s = standardize(&mut v, 2);
        assert_eq!(s[0].0, 3.0);
        assert_eq!(s[1], (5.0, 0.0));
        let col0: Vec<f64> = v.iter().step_by(2).copied().collect();
        assert!((col0.iter().sum::<f64>()).abs() < 1e-12);
        assert!(v.iter().skip(1).step_by(2).all(|&x| x == 0.0));
    }
}
