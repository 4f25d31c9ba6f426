//! The journey-map grid: stages × channels, the classic journey-map picture generated from
//! behaviour.
//!
//! Stages come from the configured activity → stage mapping (events of unmapped activities
//! are left out of the grid). Over the query's cases:
//!
//! - **cells** (stage × channel): events, distinct customers, mean sentiment (n);
//! - per stage: events, customers, mean sentiment, and
//!   - **conversion to the next stage**: customers with a case in which an event of the next
//!     stage (in configured order) comes after the case's first event of this stage, over
//!     customers with an event of this stage (none for the last stage);
//!   - **median time in stage**: per case with events in the stage, last minus first event
//!     of the stage; the exact median over those cases, in seconds;
//!   - **pain points**: the stage's touchpoints (by activity) that are friction points,
//!     best friction score first (the friction analysis by touchpoint with the same
//!     settings), up to `top`;
//!   - **opportunities**: the stage's other touchpoints ranked by
//!     `(goal rate + positive-sentiment rate) × customers`, up to `top`: where things go
//!     well for many people (goal rate = events with a goal outcome or goal activity over
//!     events; positive rate = events with sentiment above the positive threshold over
//!     events with a sentiment).

use crate::case::Prepared;
use crate::friction::signals::*;
use crate::friction::{ranked, step_stats, validate, FrictionOptions};
use crate::query::{CaseSplit, Query, StepDimension};
use crate::stats::median_seconds;
use crate::{EngineError, Stages};
use omnitrail_model::journeys::{Journeys, Nums, ScanSpec};
use serde::Serialize;
use std::sync::Arc;

#[derive(Clone, Debug, PartialEq)]
pub struct JourneyMapOptions {
    pub friction: FrictionOptions,
    /// Pain points and opportunities listed per stage.
    pub top: usize,
}

impl Default for JourneyMapOptions {
    fn default() -> Self {
        JourneyMapOptions {
            friction: FrictionOptions::default(),
            top: 3,
        }
    }
}

/// The columns the grid reads (its friction needs no root-cause columns).
pub fn journey_map_scan() -> ScanSpec {
    ScanSpec {
        properties: SIGNAL_PROPERTIES.map(String::from).to_vec(),
        traits: Vec::new(),
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct JourneyMap {
    pub case: String,
    /// Stage names in order.
    pub stages: Vec<String>,
    /// Channels with an event in a stage, by events descending then name.
    pub channels: Vec<String>,
    pub totals: JourneyMapTotals,
    /// One row per stage.
    pub rows: Vec<StageRow>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct JourneyMapTotals {
    /// Events of mapped activities.
    pub events: u64,
    pub customers: u64,
    /// Events left out because their activity has no stage.
    pub unmapped_events: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StageRow {
    pub stage: String,
    pub events: u64,
    pub customers: u64,
    pub mean_sentiment: Option<f64>,
    pub sentiment_n: u64,
    /// Customers who went on to the next stage (none for the last stage).
    pub converted: Option<u64>,
    pub conversion: Option<f64>,
    pub median_time_in_stage_s: Option<f64>,
    /// Cells of this stage, in the order of [`JourneyMap::channels`] (zeros included).
    pub cells: Vec<Cell>,
    pub pain_points: Vec<PainPoint>,
    pub opportunities: Vec<Opportunity>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Cell {
    pub channel: String,
    pub events: u64,
    pub customers: u64,
    pub mean_sentiment: Option<f64>,
    pub sentiment_n: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PainPoint {
    pub touchpoint: String,
    pub score: f64,
    pub affected_customers: u64,
    /// The signal with the highest weighted rate.
    pub main_signal: String,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Opportunity {
    pub touchpoint: String,
    pub score: f64,
    pub customers: u64,
    pub goal_rate: f64,
    pub positive_rate: Option<f64>,
}

#[derive(Clone, Copy, Default)]
struct CellAcc {
    events: u64,
    customers: u64,
    last: u64,
    sentiment_n: u64,
    sentiment_sum: i128,
}

impl CellAcc {
    fn merge(&mut self, o: &CellAcc) {
        self.events += o.events;
        self.customers += o.customers;
        self.sentiment_n += o.sentiment_n;
        self.sentiment_sum += o.sentiment_sum;
    }

    fn mean(&self) -> Option<f64> {
        (self.sentiment_n > 0)
            .then(|| self.sentiment_sum as f64 / SENTIMENT_SCALE / self.sentiment_n as f64)
    }
}

struct Partial {
    cells: Vec<CellAcc>,
    stages: Vec<CellAcc>,
    converted: Vec<u64>,
    converted_last: Vec<u64>,
    durations: Vec<Vec<i64>>,
    customers: u64,
    last: u64,
    unmapped: u64,
    first: Vec<i64>,
    last_ts: Vec<i64>,
}

/// The grid over the query's cases; its steps are touchpoints whatever the query's step.
pub fn journey_map(
    partitions: &[Arc<Journeys>],
    stages: &Stages,
    query: &Query,
    options: &JourneyMapOptions,
) -> Result<JourneyMap, EngineError> {
    validate(&options.friction)?;
    let case: CaseSplit = query.case.clone();
    let prepared = Prepared::with(partitions, stages, query, &StepDimension::Touchpoint, &case)?;
    let ns = stages.names().len();
    let channels = GlobalCodes::channels(partitions);
    let nc = channels.names.len();
    let stage_of: Vec<Vec<u32>> = partitions
        .iter()
        .map(|j| {
            j.activities
                .values
                .iter()
                .map(|a| stages.stage_index(a).map_or(NONE, |i| i as u32))
                .collect()
        })
        .collect();
    let sentiment: Vec<Option<&Nums>> = partitions
        .iter()
        .map(|j| num_values(j.properties.get("sentiment")))
        .collect();
    let p = prepared.fold_cases(
        || Partial {
            cells: vec![CellAcc::default(); ns * nc],
            stages: vec![CellAcc::default(); ns],
            converted: vec![0; ns],
            converted_last: vec![0; ns],
            durations: vec![Vec::new(); ns],
            customers: 0,
            last: 0,
            unmapped: 0,
            first: vec![i64::MAX; ns],
            last_ts: vec![i64::MIN; ns],
        },
        |acc, case| {
            let stamp = Prepared::customer_stamp(case);
            let pi = case.partition_index;
            let j = case.journeys;
            let table = &stage_of[pi];
            let chan = &channels.tables[pi];
            let sent = sentiment[pi];
            acc.first.iter_mut().for_each(|x| *x = i64::MAX);
            acc.last_ts.iter_mut().for_each(|x| *x = i64::MIN);
            let mut mapped = false;
            for &e in case.events {
                let e = e as usize;
                let s = table[j.activity.get(e) as usize];
                if s == NONE {
                    acc.unmapped += 1;
                    continue;
                }
                mapped = true;
                let s = s as usize;
                let t = j.ts[e];
                acc.first[s] = acc.first[s].min(t);
                acc.last_ts[s] = acc.last_ts[s].max(t);
                let v = sent.map_or(f64::NAN, |c| c.get(e));
                for cell in [
                    &mut acc.cells[s * nc + chan[j.channel[e] as usize] as usize],
                    &mut acc.stages[s],
                ] {
                    cell.events += 1;
                    if cell.last != stamp {
                        cell.last = stamp;
                        cell.customers += 1;
                    }
                    if !v.is_nan() {
                        cell.sentiment_n += 1;
                        cell.sentiment_sum += i128::from(fixed_sentiment(v));
                    }
                }
            }
            if !mapped {
                return;
            }
            if acc.last != stamp {
                acc.last = stamp;
                acc.customers += 1;
            }
            for s in 0..ns {
                if acc.first[s] == i64::MAX {
                    continue;
                }
                acc.durations[s].push(acc.last_ts[s] - acc.first[s]);
                if s + 1 < ns && acc.last_ts[s + 1] > acc.first[s] && acc.converted_last[s] != stamp
                {
                    acc.converted_last[s] = stamp;
                    acc.converted[s] += 1;
                }
            }
        },
        |mut a, b| {
            for (x, y) in a.cells.iter_mut().zip(&b.cells) {
                x.merge(y);
            }
            for (x, y) in a.stages.iter_mut().zip(&b.stages) {
                x.merge(y);
            }
            for s in 0..ns {
                a.converted[s] += b.converted[s];
            }
            for (x, y) in a.durations.iter_mut().zip(b.durations) {
                x.extend(y);
            }
            a.customers += b.customers;
            a.unmapped += b.unmapped;
            a
        },
    );

    // Pain points and opportunities from the touchpoint friction statistics.
    let signals = Signals::new(&prepared, &options.friction.signals);
    let (stats, _) = step_stats(&prepared, &signals);
    let names = prepared.step_names();
    let weights = &options.friction.weights;
    let stage_of_step = |step: &str| {
        step.split_once(':')
            .and_then(|(_, activity)| stages.stage_index(activity))
    };
    let mut pains: Vec<Vec<PainPoint>> = vec![Vec::new(); ns];
    for code in ranked(&stats, names, weights) {
        let name = &names[code as usize];
        let Some(s) = stage_of_step(name) else {
            continue;
        };
        if pains[s].len() >= options.top {
            continue;
        }
        let st = &stats[code as usize];
        let w = weights.as_array();
        let rates = st.rates();
        let main = (0..7)
            .max_by(|&a, &b| {
                (w[a] * rates[a])
                    .total_cmp(&(w[b] * rates[b]))
                    .then_with(|| b.cmp(&a))
            })
            .unwrap_or(0);
        pains[s].push(PainPoint {
            touchpoint: name.clone(),
            score: st.score(weights),
            affected_customers: st.affected_customers,
            main_signal: crate::friction::SIGNAL_NAMES[main].to_string(),
        });
    }
    let mut opportunities: Vec<Vec<Opportunity>> = vec![Vec::new(); ns];
    for (code, st) in stats.iter().enumerate() {
        let name = &names[code];
        let Some(s) = stage_of_step(name) else {
            continue;
        };
        if st.events == 0 || pains[s].iter().any(|p| &p.touchpoint == name) {
            continue;
        }
        let goal_rate = st.goal_events as f64 / st.events as f64;
        let positive_rate =
            (st.with_sentiment > 0).then(|| st.positive as f64 / st.with_sentiment as f64);
        let score = (goal_rate + positive_rate.unwrap_or(0.0)) * st.customers as f64;
        if score > 0.0 {
            opportunities[s].push(Opportunity {
                touchpoint: name.clone(),
                score,
                customers: st.customers,
                goal_rate,
                positive_rate,
            });
        }
    }
    for o in &mut opportunities {
        o.sort_by(|a, b| {
            b.score
                .total_cmp(&a.score)
                .then_with(|| a.touchpoint.cmp(&b.touchpoint))
        });
        o.truncate(options.top);
    }

    // Channels that occur in the grid, by events.
    let mut channel_events: Vec<(usize, u64)> = (0..nc)
        .map(|c| (c, (0..ns).map(|s| p.cells[s * nc + c].events).sum()))
        .filter(|&(_, n)| n > 0)
        .collect();
    channel_events.sort_by(|a, b| {
        b.1.cmp(&a.1)
            .then_with(|| channels.names[a.0].cmp(&channels.names[b.0]))
    });
    let mut durations = p.durations;
    let mut pains = pains.into_iter();
    let mut opportunities = opportunities.into_iter();
    let rows = (0..ns)
        .map(|s| {
            let st = &p.stages[s];
            let converted = (s + 1 < ns).then_some(p.converted[s]);
            StageRow {
                stage: stages.names()[s].clone(),
                events: st.events,
                customers: st.customers,
                mean_sentiment: st.mean(),
                sentiment_n: st.sentiment_n,
                converted,
                conversion: converted
                    .filter(|_| st.customers > 0)
                    .map(|c| c as f64 / st.customers as f64),
                median_time_in_stage_s: (!durations[s].is_empty())
                    .then(|| median_seconds(&mut durations[s])),
                cells: channel_events
                    .iter()
                    .map(|&(c, _)| {
                        let cell = &p.cells[s * nc + c];
                        Cell {
                            channel: channels.names[c].clone(),
                            events: cell.events,
                            customers: cell.customers,
                            mean_sentiment: cell.mean(),
                            sentiment_n: cell.sentiment_n,
                        }
                    })
                    .collect(),
                pain_points: pains.next().unwrap_or_default(),
                opportunities: opportunities.next().unwrap_or_default(),
            }
        })
        .collect();
    Ok(JourneyMap {
        case: case.to_string(),
        stages: stages.names().to_vec(),
        channels: channel_events
            .iter()
            .map(|&(c, _)| channels.names[c].clone())
            .collect(),
        totals: JourneyMapTotals {
            events: p.stages.iter().map(|s| s.events).sum(),
            customers: p.customers,
            unmapped_events: p.unmapped,
        },
        rows,
    })
}
