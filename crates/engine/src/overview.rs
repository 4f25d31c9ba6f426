//! The overview: the few numbers a journey owner looks at first — customers, events, goal
//! conversion, mean sentiment — with the channel mix and the trend by week or month.
//!
//! A **goal** event has a goal activity, or (with `outcome_goals`) outcome `success` or
//! `resolved` — with both, the definition the friction abandonment signal uses; goal
//! conversion is the share of customers with at least one goal event among the query's
//! events. The trend lists every
//! period from the first event's to the last event's, empty ones included, so a chart's
//! x-axis has no holes. Sentiment sums are fixed-point integers, so means do not depend on
//! how the work was split.

use crate::case::Prepared;
use crate::friction::signals::{
    fixed_sentiment, num_values, text_codes, GlobalCodes, SENTIMENT_SCALE,
};
use crate::lifecycle::Period;
use omnitrail_model::journeys::{PropertyColumn, ScanSpec};
use omnitrail_model::Outcome;
use serde::Serialize;
use std::collections::BTreeMap;

#[derive(Clone, Debug, PartialEq)]
pub struct OverviewOptions {
    pub period: Period,
    /// Activities that count as reaching a goal.
    pub goal_activities: Vec<String>,
    /// Outcome success or resolved counts as reaching a goal too.
    pub outcome_goals: bool,
}

impl Default for OverviewOptions {
    fn default() -> Self {
        OverviewOptions {
            period: Period::Week,
            goal_activities: Vec::new(),
            outcome_goals: true,
        }
    }
}

/// The columns the overview reads.
pub fn overview_scan() -> ScanSpec {
    ScanSpec {
        properties: vec!["outcome".into(), "sentiment".into()],
        traits: Vec::new(),
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Overview {
    pub customers: u64,
    pub events: u64,
    /// Customers with at least one goal event.
    pub goal_customers: u64,
    /// `goal_customers / customers`; null without customers.
    pub goal_conversion: Option<f64>,
    /// Events with a sentiment.
    pub sentiment_n: u64,
    pub mean_sentiment: Option<f64>,
    /// By events descending, then channel name.
    pub channel_mix: Vec<ChannelMix>,
    pub period: Period,
    /// Every period from the first event's to the last's, in time order.
    pub trend: Vec<TrendPoint>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ChannelMix {
    pub channel: String,
    pub events: u64,
    pub customers: u64,
    /// Of all events.
    pub event_share: f64,
    /// Of all customers.
    pub customer_share: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TrendPoint {
    /// `2025-03-03` (the Monday) for a week, `2025-03` for a month.
    pub period: String,
    pub events: u64,
    /// Customers with an event in the period.
    pub customers: u64,
    pub sentiment_n: u64,
    pub mean_sentiment: Option<f64>,
}

#[derive(Clone, Copy, Default)]
struct PeriodAcc {
    events: u64,
    customers: u64,
    last_customer: u64,
    sentiment_n: u64,
    sentiment_sum: i128,
}

#[derive(Default)]
struct Partial {
    customers: u64,
    last_customer: u64,
    events: u64,
    goal_customers: u64,
    last_goal_customer: u64,
    sentiment_n: u64,
    sentiment_sum: i128,
    channel_events: Vec<u64>,
    channel_customers: Vec<u64>,
    channel_last: Vec<u64>,
    periods: BTreeMap<i64, PeriodAcc>,
}

fn mean(n: u64, sum: i128) -> Option<f64> {
    (n > 0).then(|| sum as f64 / SENTIMENT_SCALE / n as f64)
}

fn share(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

/// The overview of the prepared query.
pub fn overview(prepared: &Prepared<'_>, options: &OverviewOptions) -> Overview {
    let partitions = prepared.partitions();
    let channels = GlobalCodes::channels(partitions);
    let nc = channels.names.len();
    // Per partition: is each outcome code / activity code a goal.
    let goal_outcome: Vec<Vec<bool>> = partitions
        .iter()
        .map(|j| match j.properties.get("outcome") {
            Some(PropertyColumn::Text { dict, .. }) if options.outcome_goals => {
                std::iter::once(false)
                    .chain(dict.values.iter().map(|v| {
                        matches!(
                            Outcome::parse(v),
                            Some(Outcome::Success | Outcome::Resolved)
                        )
                    }))
                    .collect()
            }
            _ => Vec::new(),
        })
        .collect();
    let goal_activity: Vec<Vec<bool>> = partitions
        .iter()
        .map(|j| {
            j.activities
                .values
                .iter()
                .map(|a| options.goal_activities.iter().any(|g| g == a))
                .collect()
        })
        .collect();
    let period = options.period;
    let p = prepared.fold_cases(
        || Partial {
            channel_events: vec![0; nc],
            channel_customers: vec![0; nc],
            channel_last: vec![0; nc],
            ..Partial::default()
        },
        |acc, case| {
            let stamp = Prepared::customer_stamp(case);
            if acc.last_customer != stamp {
                acc.last_customer = stamp;
                acc.customers += 1;
            }
            let pi = case.partition_index;
            let j = case.journeys;
            let outcome = text_codes(j.properties.get("outcome"));
            let sentiment = num_values(j.properties.get("sentiment"));
            let channel_global = &channels.tables[pi];
            acc.events += case.events.len() as u64;
            let mut goal = false;
            for &e in case.events {
                let e = e as usize;
                let c = channel_global[j.channel[e] as usize] as usize;
                acc.channel_events[c] += 1;
                if acc.channel_last[c] != stamp {
                    acc.channel_last[c] = stamp;
                    acc.channel_customers[c] += 1;
                }
                goal = goal
                    || goal_activity[pi][j.activity.get(e) as usize]
                    || outcome
                        .is_some_and(|o| goal_outcome[pi].get(o.get(e) as usize) == Some(&true));
                let slot = acc.periods.entry(period.index(j.ts[e])).or_default();
                slot.events += 1;
                if slot.last_customer != stamp {
                    slot.last_customer = stamp;
                    slot.customers += 1;
                }
                if let Some(v) = sentiment.map(|s| s.get(e)).filter(|v| !v.is_nan()) {
                    let x = i128::from(fixed_sentiment(v));
                    acc.sentiment_n += 1;
                    acc.sentiment_sum += x;
                    slot.sentiment_n += 1;
                    slot.sentiment_sum += x;
                }
            }
            if goal && acc.last_goal_customer != stamp {
                acc.last_goal_customer = stamp;
                acc.goal_customers += 1;
            }
        },
        |mut a, b| {
            // A customer's cases are all in one partial, so counts of distinct customers add.
            a.customers += b.customers;
            a.events += b.events;
            a.goal_customers += b.goal_customers;
            a.sentiment_n += b.sentiment_n;
            a.sentiment_sum += b.sentiment_sum;
            for i in 0..nc {
                a.channel_events[i] += b.channel_events[i];
                a.channel_customers[i] += b.channel_customers[i];
            }
            for (k, v) in b.periods {
                let slot = a.periods.entry(k).or_default();
                slot.events += v.events;
                slot.customers += v.customers;
                slot.sentiment_n += v.sentiment_n;
                slot.sentiment_sum += v.sentiment_sum;
            }
            a
        },
    );
    let mut channel_mix: Vec<ChannelMix> = channels
        .names
        .iter()
        .enumerate()
        .filter(|&(i, _)| p.channel_events[i] > 0)
        .map(|(i, name)| ChannelMix {
            channel: name.clone(),
            events: p.channel_events[i],
            customers: p.channel_customers[i],
            event_share: share(p.channel_events[i], p.events),
            customer_share: share(p.channel_customers[i], p.customers),
        })
        .collect();
    channel_mix.sort_by(|a, b| b.events.cmp(&a.events).then(a.channel.cmp(&b.channel)));
    let trend = match (p.periods.keys().next(), p.periods.keys().next_back()) {
        (Some(&first), Some(&last)) => (first..=last)
            .map(|k| {
                let v = p.periods.get(&k).copied().unwrap_or_default();
                TrendPoint {
                    period: period.label(k),
                    events: v.events,
                    customers: v.customers,
                    sentiment_n: v.sentiment_n,
                    mean_sentiment: mean(v.sentiment_n, v.sentiment_sum),
                }
            })
            .collect(),
        _ => Vec::new(),
    };
    Overview {
        customers: p.customers,
        events: p.events,
        goal_customers: p.goal_customers,
        goal_conversion: (p.customers > 0).then(|| share(p.goal_customers, p.customers)),
        sentiment_n: p.sentiment_n,
        mean_sentiment: mean(p.sentiment_n, p.sentiment_sum),
        channel_mix,
        period,
        trend,
    }
}
