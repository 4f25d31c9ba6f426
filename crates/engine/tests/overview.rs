//! The overview and the customers behind a map element against brute-force references:
//! named cases in the journey DSL, and property tests on random journeys over random
//! partition splits.

use omnitrail_engine::lifecycle::Period;
use omnitrail_engine::overview::{overview, Overview, OverviewOptions};
use omnitrail_engine::step_customers::{step_customers, StepCustomersOptions};
use omnitrail_engine::testing::{Fixture, FixtureCustomer, FixtureEvent, FixtureValue, BASE};
use omnitrail_engine::{Prepared, Query, Stages, StepDimension};
use omnitrail_model::CustomerId;
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet};

const MIN: i64 = 60_000_000;
const HOUR: i64 = 60 * MIN;
const DAY: i64 = 24 * HOUR;

fn run_overview(
    f: &Fixture,
    parts: usize,
    assign: &[usize],
    q: &Query,
    o: &OverviewOptions,
) -> Overview {
    let partitions = f.partitions_by(parts, |i| assign[i % assign.len()] % parts);
    let stages = Stages::default();
    overview(&Prepared::new(&partitions, &stages, q).unwrap(), o)
}

fn in_range(q: &Query, e: &FixtureEvent) -> bool {
    q.from.is_none_or(|t| e.ts >= t) && q.to.is_none_or(|t| e.ts < t)
}

fn mean(v: &[f64]) -> Option<f64> {
    (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
}

fn close(a: Option<f64>, b: Option<f64>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => (a - b).abs() < 1e-9,
        (a, b) => a == b,
    }
}

/// The reference: every number recomputed from the fixture's events directly.
fn check_overview(f: &Fixture, got: &Overview, q: &Query, o: &OverviewOptions) {
    let events: Vec<(CustomerId, &FixtureEvent)> = f
        .customers
        .iter()
        .flat_map(|c| c.events.iter().map(move |e| (c.id, e)))
        .filter(|(_, e)| in_range(q, e))
        .collect();
    let customers: BTreeSet<CustomerId> = events.iter().map(|(c, _)| *c).collect();
    let is_goal = |e: &FixtureEvent| {
        o.goal_activities.contains(&e.activity)
            || o.outcome_goals
                && matches!(e.properties.get("outcome"), Some(FixtureValue::Text(t)) if t == "success" || t == "resolved")
    };
    let goal: BTreeSet<CustomerId> = events
        .iter()
        .filter(|(_, e)| is_goal(e))
        .map(|(c, _)| *c)
        .collect();
    let sentiment = |e: &FixtureEvent| match e.properties.get("sentiment") {
        Some(FixtureValue::Num(x)) => Some(*x),
        _ => None,
    };
    assert_eq!(got.customers, customers.len() as u64);
    assert_eq!(got.events, events.len() as u64);
    assert_eq!(got.goal_customers, goal.len() as u64);
    let all_sent: Vec<f64> = events.iter().filter_map(|(_, e)| sentiment(e)).collect();
    assert_eq!(got.sentiment_n, all_sent.len() as u64);
    assert!(close(got.mean_sentiment, mean(&all_sent)));
    let mut mix: BTreeMap<&str, (u64, BTreeSet<CustomerId>)> = BTreeMap::new();
    for (c, e) in &events {
        let m = mix.entry(e.channel.as_str()).or_default();
        m.0 += 1;
        m.1.insert(*c);
    }
    assert_eq!(got.channel_mix.len(), mix.len());
    for m in &got.channel_mix {
        let (n, cs) = &mix[m.channel.as_str()];
        assert_eq!(
            (m.events, m.customers),
            (*n, cs.len() as u64),
            "channel {}",
            m.channel
        );
    }
    assert!(got
        .channel_mix
        .windows(2)
        .all(|w| w[0].events >= w[1].events));
    let mut periods: BTreeMap<i64, (u64, BTreeSet<CustomerId>, Vec<f64>)> = BTreeMap::new();
    for (c, e) in &events {
        let p = periods.entry(o.period.index(e.ts)).or_default();
        p.0 += 1;
        p.1.insert(*c);
        p.2.extend(sentiment(e));
    }
    let want: Vec<(String, u64, u64, Option<f64>)> =
        match (periods.keys().next(), periods.keys().next_back()) {
            (Some(&a), Some(&b)) => (a..=b)
                .map(|k| {
                    let p = periods.get(&k);
                    (
                        o.period.label(k),
                        p.map_or(0, |p| p.0),
                        p.map_or(0, |p| p.1.len() as u64),
                        p.and_then(|p| mean(&p.2)),
                    )
                })
                .collect(),
            _ => Vec::new(),
        };
    assert_eq!(got.trend.len(), want.len());
    for (t, w) in got.trend.iter().zip(&want) {
        assert_eq!((&t.period, t.events, t.customers), (&w.0, w.1, w.2));
        assert!(close(t.mean_sentiment, w.3), "period {}", t.period);
    }
}

fn shop() -> Fixture {
    Fixture::parse(
        "ana: web:view@0 > web:pay{outcome=failure,sentiment=#-0.6} > phone:call@+2h{outcome=resolved,sentiment=#0.4}
         bob: web:view@1d > web:pay@+1m{outcome=success}
         cy: email:open@9d > web:view@+10m
         # dee's second visit is three weeks later: an empty week lies between
         dee: app:view@2d > app:buy@23d",
    )
}

#[test]
fn shop_overview_counts_goals_sentiment_channels_and_weeks() {
    let f = shop();
    let q = Query::new(BASE);
    let o = OverviewOptions::default();
    let got = run_overview(&f, 2, &[0, 1], &q, &o);
    check_overview(&f, &got, &q, &o);
    // ana (resolved call) and bob (successful payment) reach a goal; cy and dee do not.
    assert_eq!((got.customers, got.goal_customers), (4, 2));
    assert_eq!(got.goal_conversion, Some(0.5));
    // Weeks from 2024-01-01 (a Monday) to dee's buy on day 23: four weeks, none skipped.
    let labels: Vec<&str> = got.trend.iter().map(|t| t.period.as_str()).collect();
    assert_eq!(
        labels,
        ["2024-01-01", "2024-01-08", "2024-01-15", "2024-01-22"]
    );
    assert_eq!(got.trend[2].events, 0);
    assert_eq!(got.channel_mix[0].channel, "web");
}

#[test]
fn goal_activities_count_as_goals() {
    let f = shop();
    let q = Query::new(BASE);
    let o = OverviewOptions {
        goal_activities: vec!["buy".into()],
        ..OverviewOptions::default()
    };
    let got = run_overview(&f, 1, &[0], &q, &o);
    check_overview(&f, &got, &q, &o);
    assert_eq!(got.goal_customers, 3);
}

#[test]
fn configured_goals_alone_count_when_outcomes_do_not() {
    let f = shop();
    let q = Query::new(BASE);
    let o = OverviewOptions {
        goal_activities: vec!["buy".into()],
        outcome_goals: false,
        ..OverviewOptions::default()
    };
    let got = run_overview(&f, 2, &[1, 0], &q, &o);
    check_overview(&f, &got, &q, &o);
    assert_eq!(got.goal_customers, 1, "only dee buys");
}

#[test]
fn empty_query_has_no_rates() {
    let f = shop();
    let mut q = Query::new(BASE);
    q.from = Some(BASE + 400 * DAY);
    let got = run_overview(&f, 1, &[0], &q, &OverviewOptions::default());
    assert_eq!((got.customers, got.events), (0, 0));
    assert_eq!((got.goal_conversion, got.mean_sentiment), (None, None));
    assert!(got.trend.is_empty() && got.channel_mix.is_empty());
}

/// Reference for the customers behind a step or a transition: whole cases as the query cuts
/// them, then a plain scan.
fn reference_step_customers(
    f: &Fixture,
    q: &Query,
    step: &str,
    next: Option<&str>,
) -> Vec<CustomerId> {
    let mut out = Vec::new();
    for c in &f.customers {
        let evs: Vec<&FixtureEvent> = c.events.iter().filter(|e| in_range(q, e)).collect();
        let mut cases: Vec<Vec<&str>> = Vec::new();
        for (i, e) in evs.iter().enumerate() {
            let gap = match q.case {
                omnitrail_engine::CaseSplit::Gap(g) => i > 0 && e.ts - evs[i - 1].ts > g,
                _ => false,
            };
            if i == 0 || gap {
                cases.push(Vec::new());
            }
            cases.last_mut().unwrap().push(e.activity.as_str());
        }
        let took = cases.iter().any(|s| match next {
            Some(n) => s.windows(2).any(|w| w[0] == step && w[1] == n),
            None => s.contains(&step),
        });
        if took {
            out.push(c.id);
        }
    }
    out.sort();
    out
}

#[test]
fn step_customers_of_a_node_and_an_edge() {
    let f = shop();
    let partitions = f.partitions(2);
    let stages = Stages::default();
    let q = Query::new(BASE);
    let p = Prepared::new(&partitions, &stages, &q).unwrap();
    let ask = |step: &str, next: Option<&str>| StepCustomersOptions {
        step: step.into(),
        next: next.map(str::to_string),
        offset: 0,
        limit: 10,
    };
    let view = step_customers(&p, &ask("view", None));
    assert_eq!(view.total, 4);
    let edge = step_customers(&p, &ask("view", Some("pay")));
    assert_eq!(edge.customers, [f.customer("ana"), f.customer("bob")]);
    let missing = step_customers(&p, &ask("refund", None));
    assert_eq!((missing.total, missing.customers.len()), (0, 0));
    let no_edge = step_customers(&p, &ask("pay", Some("view")));
    assert_eq!(no_edge.total, 0);
}

fn random_fixture() -> impl Strategy<Value = Fixture> {
    let event = (
        prop::sample::select(vec![0i64, MIN, 2 * HOUR, DAY, 9 * DAY, 40 * DAY]),
        prop::sample::select(vec!["view", "cart", "pay", "call"]),
        prop::sample::select(vec!["web", "phone", "email"]),
        prop::option::of(prop::sample::select(vec![-0.8, -0.1, 0.3, 0.9])),
        prop::option::of(prop::sample::select(vec!["success", "failure", "resolved"])),
    );
    prop::collection::vec(prop::collection::vec(event, 1..8), 1..12).prop_map(|customers| Fixture {
        customers: customers
            .into_iter()
            .enumerate()
            .map(|(i, evs)| {
                let mut ts = BASE + i as i64 * 2 * DAY;
                let events = evs
                    .into_iter()
                    .map(|(dt, activity, channel, sent, outcome)| {
                        ts += dt;
                        let mut properties = BTreeMap::new();
                        if let Some(s) = sent {
                            properties.insert("sentiment".to_string(), FixtureValue::Num(s));
                        }
                        if let Some(o) = outcome {
                            properties.insert("outcome".to_string(), FixtureValue::Text(o.into()));
                        }
                        FixtureEvent {
                            ts,
                            channel: channel.into(),
                            activity: activity.into(),
                            properties,
                            traits: BTreeMap::new(),
                        }
                    })
                    .collect();
                FixtureCustomer {
                    name: format!("c{i}"),
                    id: CustomerId(i as u64 * 7 + 3),
                    events,
                }
            })
            .collect(),
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn overview_and_step_customers_match_the_reference_on_random_journeys(
        f in random_fixture(),
        parts in 1usize..5,
        assign in prop::collection::vec(0usize..5, 1..12),
        from in prop::option::of(0i64..30 * DAY),
        case in prop::sample::select(vec!["customer", "gap:1h"]),
        period in prop::sample::select(vec![Period::Week, Period::Month]),
        goal in prop::sample::select(vec![vec![], vec!["cart".to_string()]]),
        outcome_goals in any::<bool>(),
        step in prop::sample::select(vec!["view", "cart", "pay", "call"]),
        next in prop::option::of(prop::sample::select(vec!["view", "cart", "pay", "call"])),
        offset in 0usize..4,
        limit in 1usize..6,
    ) {
        let mut q = Query::new(BASE);
        q.step = StepDimension::Activity;
        q.case = case.parse().unwrap();
        q.from = from.map(|t| BASE + t);
        let o = OverviewOptions { period, goal_activities: goal, outcome_goals };
        let got = run_overview(&f, parts, &assign, &q, &o);
        check_overview(&f, &got, &q, &o);
        // Byte-identical JSON whatever the partitioning.
        let one = run_overview(&f, 1, &[0], &q, &o);
        prop_assert_eq!(serde_json::to_string(&got).unwrap(), serde_json::to_string(&one).unwrap());

        let partitions = f.partitions_by(parts, |i| assign[i % assign.len()] % parts);
        let stages = Stages::default();
        let p = Prepared::new(&partitions, &stages, &q).unwrap();
        let options = StepCustomersOptions { step: step.into(), next: next.map(str::to_string), offset, limit };
        let sc = step_customers(&p, &options);
        let want = reference_step_customers(&f, &q, step, next);
        prop_assert_eq!(sc.total, want.len() as u64);
        let page: Vec<CustomerId> = want.into_iter().skip(offset).take(limit).collect();
        prop_assert_eq!(sc.customers, page);
    }
}
