//! The emotion curve: mean sentiment along the journey, by stage and by step position.
//!
//! Events without a `sentiment` are skipped (each point reports its `n`). Per **stage**
//! (in configured order): the mean over events whose activity maps to the stage. Per
//! **position** `k` (1..=K): the mean over the `k`-th event of every case, counting every
//! event of the case (with or without sentiment) for the position. The **drop** is the
//! most negative change between consecutive points that both have a mean (a point without
//! one is skipped over); none when the curve never falls. Sums are fixed-point integers, so
//! means do not depend on how the work was split.

use crate::case::Prepared;
use crate::friction::signals::{fixed_sentiment, num_values, SENTIMENT_SCALE};
use crate::{EngineError, Stages};
use omnitrail_model::journeys::{Nums, ScanSpec};
use serde::Serialize;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EmotionOptions {
    /// Positions reported: 1..=positions.
    pub positions: usize,
}

impl Default for EmotionOptions {
    fn default() -> Self {
        EmotionOptions { positions: 20 }
    }
}

/// The columns the emotion curve reads.
pub fn emotion_scan() -> ScanSpec {
    ScanSpec {
        properties: vec!["sentiment".into()],
        traits: Vec::new(),
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct EmotionCurve {
    pub totals: EmotionTotals,
    /// Configured stages in order (every stage, `mean` null where no event has sentiment).
    pub stages: Vec<EmotionPoint>,
    /// Positions 1..=K.
    pub positions: Vec<EmotionPoint>,
    pub stage_drop: Option<EmotionDrop>,
    pub position_drop: Option<EmotionDrop>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct EmotionTotals {
    pub events: u64,
    pub cases: u64,
    /// Events with a sentiment.
    pub n: u64,
    pub mean: Option<f64>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct EmotionPoint {
    /// The stage name, or the position (`1`, `2`, …).
    pub label: String,
    pub n: u64,
    pub mean: Option<f64>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct EmotionDrop {
    pub from: String,
    pub to: String,
    /// `mean(to) − mean(from)`, below zero.
    pub change: f64,
}

#[derive(Clone, Default)]
struct Partial {
    events: u64,
    cases: u64,
    n: u64,
    sum: i128,
    stage_n: Vec<u64>,
    stage_sum: Vec<i128>,
    pos_n: Vec<u64>,
    pos_sum: Vec<i128>,
}

fn points(labels: impl Iterator<Item = String>, n: &[u64], sum: &[i128]) -> Vec<EmotionPoint> {
    labels
        .zip(n.iter().zip(sum))
        .map(|(label, (&n, &s))| EmotionPoint {
            label,
            n,
            mean: (n > 0).then(|| s as f64 / SENTIMENT_SCALE / n as f64),
        })
        .collect()
}

fn biggest_drop(points: &[EmotionPoint]) -> Option<EmotionDrop> {
    let mut best: Option<EmotionDrop> = None;
    let mut prev: Option<&EmotionPoint> = None;
    for p in points.iter().filter(|p| p.mean.is_some()) {
        if let (Some(a), Some(b)) = (prev.and_then(|q| q.mean), p.mean) {
            let change = b - a;
            if change < 0.0 && best.as_ref().is_none_or(|d| change < d.change) {
                best = Some(EmotionDrop {
                    from: prev.map(|q| q.label.clone()).unwrap_or_default(),
                    to: p.label.clone(),
                    change,
                });
            }
        }
        prev = Some(p);
    }
    best
}

/// The emotion curve of the prepared query; `stages` gives the stage order and mapping.
pub fn emotion_curve(
    prepared: &Prepared<'_>,
    stages: &Stages,
    options: &EmotionOptions,
) -> Result<EmotionCurve, EngineError> {
    if options.positions == 0 {
        return Err(EngineError::InvalidOption {
            option: "positions",
            reason: "must be at least 1".to_string(),
        });
    }
    let ns = stages.names().len();
    let k = options.positions;
    let partitions = prepared.partitions();
    // Per partition: activity code → stage index (or none).
    let stage_of: Vec<Vec<u32>> = partitions
        .iter()
        .map(|j| {
            j.activities
                .values
                .iter()
                .map(|a| stages.stage_index(a).map_or(u32::MAX, |i| i as u32))
                .collect()
        })
        .collect();
    let sentiment: Vec<Option<&Nums>> = partitions
        .iter()
        .map(|j| num_values(j.properties.get("sentiment")))
        .collect();
    let p = prepared.fold_cases(
        || Partial {
            stage_n: vec![0; ns],
            stage_sum: vec![0; ns],
            pos_n: vec![0; k],
            pos_sum: vec![0; k],
            ..Partial::default()
        },
        |acc, case| {
            acc.cases += 1;
            acc.events += case.events.len() as u64;
            let Some(s) = sentiment[case.partition_index] else {
                return;
            };
            let table = &stage_of[case.partition_index];
            let j = case.journeys;
            for (pos, &e) in case.events.iter().enumerate() {
                let v = s.get(e as usize);
                if v.is_nan() {
                    continue;
                }
                let x = i128::from(fixed_sentiment(v));
                acc.n += 1;
                acc.sum += x;
                let st = table[j.activity.get(e as usize) as usize];
                if st != u32::MAX {
                    acc.stage_n[st as usize] += 1;
                    acc.stage_sum[st as usize] += x;
                }
                if pos < k {
                    acc.pos_n[pos] += 1;
                    acc.pos_sum[pos] += x;
                }
            }
        },
        |mut a, b| {
            a.events += b.events;
            a.cases += b.cases;
            a.n += b.n;
            a.sum += b.sum;
            for i in 0..ns {
                a.stage_n[i] += b.stage_n[i];
                a.stage_sum[i] += b.stage_sum[i];
            }
            for i in 0..k {
                a.pos_n[i] += b.pos_n[i];
                a.pos_sum[i] += b.pos_sum[i];
            }
            a
        },
    );
    let stage_points = points(stages.names().iter().cloned(), &p.stage_n, &p.stage_sum);
    let position_points = points((1..=k).map(|i| i.to_string()), &p.pos_n, &p.pos_sum);
    Ok(EmotionCurve {
        totals: EmotionTotals {
            events: p.events,
            cases: p.cases,
            n: p.n,
            mean: (p.n > 0).then(|| p.sum as f64 / SENTIMENT_SCALE / p.n as f64),
        },
        stage_drop: biggest_drop(&stage_points),
        position_drop: biggest_drop(&position_points),
        stages: stage_points,
        positions: position_points,
    })
}
