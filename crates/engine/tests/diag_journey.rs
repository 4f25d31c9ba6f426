//! The emotion curve, the journey-map grid, lifecycle and handoffs against brute-force
//! reference implementations: named cases in the journey DSL, and property tests on random
//! journeys over random partition splits.

use omnitrail_engine::emotion::{emotion_curve, EmotionCurve, EmotionOptions};
use omnitrail_engine::handoffs::{handoffs, HandoffOptions, Handoffs};
use omnitrail_engine::journey_map::{journey_map, JourneyMap, JourneyMapOptions};
use omnitrail_engine::lifecycle::{lifecycle, Lifecycle, LifecycleOptions, Period};
use omnitrail_engine::testing::{Fixture, FixtureCustomer, FixtureEvent, FixtureValue, BASE};
use omnitrail_engine::{CaseSplit, Prepared, Query, Stages, StepDimension};
use omnitrail_model::{CustomerId, Timestamp};
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet};

const MIN: i64 = 60_000_000;
const HOUR: i64 = 60 * MIN;
const DAY: i64 = 24 * HOUR;

fn stages() -> Stages {
    let mut s = Stages::new(vec!["discover".into(), "buy".into(), "help".into()]);
    for (a, st) in [
        ("view", "discover"),
        ("cart", "buy"),
        ("pay", "buy"),
        ("call", "help"),
        ("chat", "help"),
    ] {
        s.assign(a, st).unwrap();
    }
    s
}

/// Whole cases as the query cuts them: (customer id, events), all events kept.
fn cases(f: &Fixture, q: &Query) -> Vec<(u64, Vec<FixtureEvent>)> {
    let mut out = Vec::new();
    for c in &f.customers {
        let evs: Vec<FixtureEvent> = c
            .events
            .iter()
            .filter(|e| q.from.is_none_or(|t| e.ts >= t) && q.to.is_none_or(|t| e.ts < t))
            .cloned()
            .collect();
        let mut split: Vec<Vec<FixtureEvent>> = Vec::new();
        match &q.case {
            CaseSplit::Customer => split.push(evs),
            CaseSplit::Gap(g) => {
                for (i, e) in evs.iter().enumerate() {
                    if i == 0 || e.ts - evs[i - 1].ts > *g {
                        split.push(Vec::new());
                    }
                    split.last_mut().unwrap().push(e.clone());
                }
            }
            CaseSplit::Property(_) => unreachable!(),
        }
        out.extend(
            split
                .into_iter()
                .filter(|s| !s.is_empty())
                .map(|s| (c.id.0, s)),
        );
    }
    out
}

fn num(e: &FixtureEvent, name: &str) -> Option<f64> {
    match e.properties.get(name) {
        Some(FixtureValue::Num(x)) => Some(*x),
        _ => None,
    }
}

fn text(e: &FixtureEvent, name: &str) -> Option<String> {
    match e.properties.get(name) {
        Some(FixtureValue::Text(t)) => Some(t.clone()),
        _ => None,
    }
}

fn fixed(s: f64) -> i128 {
    (s * 1e9).round() as i128
}

fn mean(values: &[f64]) -> Option<f64> {
    (!values.is_empty())
        .then(|| values.iter().map(|&v| fixed(v)).sum::<i128>() as f64 / 1e9 / values.len() as f64)
}

fn ref_median(values: &[i64]) -> f64 {
    let mut v = values.to_vec();
    v.sort();
    let pos = 0.5 * (v.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    (v[lo] as f64 + (v[hi] - v[lo]) as f64 * (pos - lo as f64)) / 1e6
}

fn split(
    f: &Fixture,
    parts: usize,
    assign: &[usize],
) -> Vec<std::sync::Arc<omnitrail_model::journeys::Journeys>> {
    f.partitions_by(parts, |i| assign[i % assign.len()] % parts)
}

// ---------------------------------------------------------------------------------------
// Emotion.

fn check_emotion(f: &Fixture, parts: usize, assign: &[usize], q: &Query, k: usize) -> EmotionCurve {
    let partitions = split(f, parts, assign);
    let s = stages();
    let prepared = Prepared::new(&partitions, &s, q).unwrap();
    let got = emotion_curve(&prepared, &s, &EmotionOptions { positions: k }).unwrap();
    let all = cases(f, q);
    let mut by_stage: Vec<Vec<f64>> = vec![Vec::new(); 3];
    let mut by_pos: Vec<Vec<f64>> = vec![Vec::new(); k];
    for (_, evs) in &all {
        for (i, e) in evs.iter().enumerate() {
            let Some(v) = num(e, "sentiment") else {
                continue;
            };
            if let Some(st) = s.stage_index(&e.activity) {
                by_stage[st].push(v);
            }
            if i < k {
                by_pos[i].push(v);
            }
        }
    }
    for (p, want) in got.stages.iter().zip(&by_stage) {
        assert_eq!(
            (p.n, p.mean),
            (want.len() as u64, mean(want)),
            "stage {}",
            p.label
        );
    }
    for (p, want) in got.positions.iter().zip(&by_pos) {
        assert_eq!(
            (p.n, p.mean),
            (want.len() as u64, mean(want)),
            "position {}",
            p.label
        );
    }
    // The biggest drop between consecutive points with a mean.
    let drop = |points: &[(String, Option<f64>)]| {
        let with: Vec<&(String, Option<f64>)> = points.iter().filter(|p| p.1.is_some()).collect();
        let mut best: Option<(String, String, f64)> = None;
        for w in with.windows(2) {
            let c = w[1].1.unwrap() - w[0].1.unwrap();
            if c < 0.0 && best.as_ref().is_none_or(|b| c < b.2) {
                best = Some((w[0].0.clone(), w[1].0.clone(), c));
            }
        }
        best
    };
    let stage_points: Vec<(String, Option<f64>)> = got
        .stages
        .iter()
        .map(|p| (p.label.clone(), p.mean))
        .collect();
    assert_eq!(
        got.stage_drop
            .as_ref()
            .map(|d| (d.from.clone(), d.to.clone(), d.change)),
        drop(&stage_points)
    );
    let pos_points: Vec<(String, Option<f64>)> = got
        .positions
        .iter()
        .map(|p| (p.label.clone(), p.mean))
        .collect();
    assert_eq!(
        got.position_drop
            .as_ref()
            .map(|d| (d.from.clone(), d.to.clone(), d.change)),
        drop(&pos_points)
    );
    got
}

// ---------------------------------------------------------------------------------------
// Journey map (grid, conversion, time in stage; pain points come from friction, which has
// its own reference).

fn check_journey_map(f: &Fixture, parts: usize, assign: &[usize], q: &Query) -> JourneyMap {
    let partitions = split(f, parts, assign);
    let s = stages();
    let got = journey_map(&partitions, &s, q, &JourneyMapOptions::default()).unwrap();
    let all = cases(f, q);
    let ns = 3;
    let mut cell_events: BTreeMap<(usize, String), u64> = BTreeMap::new();
    let mut cell_customers: BTreeMap<(usize, String), BTreeSet<u64>> = BTreeMap::new();
    let mut stage_customers: Vec<BTreeSet<u64>> = vec![BTreeSet::new(); ns];
    let mut converted: Vec<BTreeSet<u64>> = vec![BTreeSet::new(); ns];
    let mut durations: Vec<Vec<i64>> = vec![Vec::new(); ns];
    let mut unmapped = 0;
    for (c, evs) in &all {
        for e in evs {
            match s.stage_index(&e.activity) {
                Some(st) => {
                    *cell_events.entry((st, e.channel.clone())).or_default() += 1;
                    cell_customers
                        .entry((st, e.channel.clone()))
                        .or_default()
                        .insert(*c);
                    stage_customers[st].insert(*c);
                }
                None => unmapped += 1,
            }
        }
        for st in 0..ns {
            let ts: Vec<i64> = evs
                .iter()
                .filter(|e| s.stage_index(&e.activity) == Some(st))
                .map(|e| e.ts)
                .collect();
            if ts.is_empty() {
                continue;
            }
            durations[st].push(ts.iter().max().unwrap() - ts.iter().min().unwrap());
            let first = *ts.iter().min().unwrap();
            if evs
                .iter()
                .any(|e| s.stage_index(&e.activity) == Some(st + 1) && e.ts > first)
            {
                converted[st].insert(*c);
            }
        }
    }
    assert_eq!(got.totals.unmapped_events, unmapped);
    for (st, row) in got.rows.iter().enumerate() {
        assert_eq!(
            row.customers,
            stage_customers[st].len() as u64,
            "{}",
            row.stage
        );
        if st + 1 < ns {
            assert_eq!(
                row.converted,
                Some(converted[st].len() as u64),
                "{}",
                row.stage
            );
        } else {
            assert_eq!(row.converted, None);
        }
        assert_eq!(
            row.median_time_in_stage_s,
            (!durations[st].is_empty()).then(|| ref_median(&durations[st])),
            "{}",
            row.stage
        );
        for cell in &row.cells {
            let key = (st, cell.channel.clone());
            assert_eq!(cell.events, cell_events.get(&key).copied().unwrap_or(0));
            assert_eq!(
                cell.customers,
                cell_customers.get(&key).map_or(0, |x| x.len() as u64)
            );
        }
        for p in &row.pain_points {
            let activity = p.touchpoint.split_once(':').unwrap().1;
            assert_eq!(s.stage_index(activity), Some(st));
        }
    }
    got
}

// ---------------------------------------------------------------------------------------
// Lifecycle.

const STATE_NAMES: [&str; 6] = [
    "new",
    "active",
    "returning",
    "quiet",
    "churn_risk",
    "dormant",
];

fn check_lifecycle(
    f: &Fixture,
    parts: usize,
    assign: &[usize],
    q: &Query,
    o: &LifecycleOptions,
) -> Lifecycle {
    let partitions = split(f, parts, assign);
    let got = lifecycle(&partitions, &Stages::default(), q, o).unwrap();
    let mut whole = q.clone();
    whole.case = CaseSplit::Customer;
    let all = cases(f, &whole);
    if all.is_empty() {
        assert!(got.periods.is_empty());
        return got;
    }
    let min = all.iter().map(|c| c.1[0].ts).min().unwrap();
    let max = all.iter().map(|c| c.1.last().unwrap().ts).max().unwrap();
    let horizon = q.to.unwrap_or(max + 1).max(max + 1);
    let per = o.period;
    let periods: Vec<i64> = (per.index(min)..=per.index(horizon - 1)).collect();
    let mut counts = vec![[0u64; 6]; periods.len()];
    let mut trans: BTreeMap<(usize, usize), u64> = BTreeMap::new();
    let mut ever = [0u64; 6];
    for (_, evs) in &all {
        let ts: Vec<i64> = evs.iter().map(|e| e.ts).collect();
        let mut prev = None;
        let mut seen = [false; 6];
        for (pi, &p) in periods.iter().enumerate() {
            let (start, end) = (per.start(p), per.start(p + 1));
            if ts[0] >= end {
                continue;
            }
            let inside: Vec<i64> = ts
                .iter()
                .copied()
                .filter(|&t| t >= start && t < end)
                .collect();
            let before: Vec<i64> = ts.iter().copied().filter(|&t| t < start).collect();
            let state = if !inside.is_empty() {
                if before.is_empty() {
                    0
                } else if inside[0] - before.last().unwrap() >= o.dormant_after {
                    2
                } else {
                    1
                }
            } else {
                let last = *before.last().unwrap();
                let since = end.min(horizon) - last;
                if since >= o.dormant_after {
                    5
                } else if before.len() >= 2
                    && since as f64
                        > o.risk_factor * (last - before[0]) as f64 / (before.len() - 1) as f64
                {
                    4
                } else {
                    3
                }
            };
            counts[pi][state] += 1;
            seen[state] = true;
            if let Some(p) = prev {
                *trans.entry((p, state)).or_default() += 1;
            }
            prev = Some(state);
        }
        for s in 0..6 {
            ever[s] += u64::from(seen[s]);
        }
    }
    assert_eq!(got.periods.len(), periods.len());
    for (g, w) in got.periods.iter().zip(&counts) {
        assert_eq!(
            [
                g.new,
                g.active,
                g.returning,
                g.quiet,
                g.churn_risk,
                g.dormant
            ],
            *w,
            "{}",
            g.period
        );
    }
    let got_trans: BTreeMap<(String, String), u64> = got
        .transitions
        .iter()
        .map(|t| ((t.from.clone(), t.to.clone()), t.customers))
        .collect();
    let want_trans: BTreeMap<(String, String), u64> = trans
        .into_iter()
        .map(|((a, b), n)| ((STATE_NAMES[a].to_string(), STATE_NAMES[b].to_string()), n))
        .collect();
    assert_eq!(got_trans, want_trans);
    assert_eq!(got.totals.ever_dormant, ever[5]);
    assert_eq!(got.totals.ever_returning, ever[2]);
    assert_eq!(got.totals.ever_churn_risk, ever[4]);
    assert_eq!(got.totals.customers, all.len() as u64);
    got
}

// ---------------------------------------------------------------------------------------
// Handoffs.

fn check_handoffs(f: &Fixture, parts: usize, assign: &[usize], q: &Query, window: i64) -> Handoffs {
    let partitions = split(f, parts, assign);
    let prepared = Prepared::new(&partitions, &Stages::default(), q).unwrap();
    let got = handoffs(&prepared, &HandoffOptions { window }).unwrap();
    // (from, to) → (count, customers, gaps).
    type Pairs = BTreeMap<(String, String), (u64, BTreeSet<u64>, Vec<i64>)>;
    let mut pairs = Pairs::new();
    let mut dept: BTreeMap<String, (u64, BTreeSet<u64>)> = BTreeMap::new();
    for (c, evs) in cases(f, q) {
        let with: Vec<(String, i64)> = evs
            .iter()
            .filter_map(|e| text(e, "department").map(|d| (d, e.ts)))
            .collect();
        for (d, _) in &with {
            let x = dept.entry(d.clone()).or_default();
            x.0 += 1;
            x.1.insert(c);
        }
        for w in with.windows(2) {
            if w[0].0 != w[1].0 && w[1].1 - w[0].1 <= window {
                let x = pairs.entry((w[0].0.clone(), w[1].0.clone())).or_default();
                x.0 += 1;
                x.1.insert(c);
                x.2.push(w[1].1 - w[0].1);
            }
        }
    }
    let got_pairs: BTreeMap<(String, String), (u64, u64, f64)> = got
        .handoffs
        .iter()
        .map(|h| {
            (
                (h.from.clone(), h.to.clone()),
                (h.handoffs, h.customers, h.median_s),
            )
        })
        .collect();
    let want_pairs: BTreeMap<(String, String), (u64, u64, f64)> = pairs
        .into_iter()
        .map(|(k, (n, cs, gaps))| (k, (n, cs.len() as u64, ref_median(&gaps))))
        .collect();
    assert_eq!(got_pairs, want_pairs);
    let got_dept: BTreeMap<String, (u64, u64)> = got
        .departments
        .iter()
        .map(|d| (d.department.clone(), (d.events, d.customers)))
        .collect();
    let want_dept: BTreeMap<String, (u64, u64)> = dept
        .into_iter()
        .map(|(k, (n, cs))| (k, (n, cs.len() as u64)))
        .collect();
    assert_eq!(got_dept, want_dept);
    got
}

// ---------------------------------------------------------------------------------------
// Named cases.

const SHOP: &str = "\
    ana: view@0{sentiment=#0.5} > cart@+5m > pay@+5m{outcome=failure, sentiment=#-0.6} > phone:call@+20m{department=billing, sentiment=#-0.2} > phone:call@+2h{department=tech}\n\
    bob: view@0{sentiment=#0.3} > view@+1d{sentiment=#0.1} > cart@+1h > pay@+1m{outcome=success, sentiment=#0.8}\n\
    cyd: email:news@0 > view@+2h > chat:chat@+10m{department=billing, sentiment=#-0.9} > chat:chat@+3d{department=sales}\n";

#[test]
fn shop_emotion_curve() {
    let f = Fixture::parse(SHOP);
    for parts in 1..4 {
        let c = check_emotion(&f, parts, &[0, 1, 2], &Query::new(BASE), 4);
        // discover: 0.5, 0.3, 0.1 → 0.3; buy: -0.6, 0.8 → 0.1; help: -0.2, -0.9 → -0.55.
        assert!((c.stages[0].mean.unwrap() - 0.3).abs() < 1e-12);
        let d = c.stage_drop.unwrap();
        assert_eq!((d.from.as_str(), d.to.as_str()), ("buy", "help"));
        assert_eq!(c.totals.n, 7);
    }
}

#[test]
fn shop_journey_map() {
    let f = Fixture::parse(SHOP);
    let m = check_journey_map(&f, 2, &[0, 1], &Query::new(BASE));
    // Everyone discovers; ana and bob buy after it; cyd does not.
    let discover = &m.rows[0];
    assert_eq!((discover.customers, discover.converted), (3, Some(2)));
    // ana's failed payment is the buy stage's pain point.
    assert_eq!(m.rows[1].pain_points[0].touchpoint, "web:pay");
    assert_eq!(m.rows[1].pain_points[0].main_signal, "failure");
    assert_eq!(m.totals.unmapped_events, 1);
    assert_eq!(m.channels[0], "web");
}

#[test]
fn shop_handoffs() {
    let f = Fixture::parse(SHOP);
    let h = check_handoffs(&f, 2, &[1, 0], &Query::new(BASE), DAY);
    // billing → tech within 2 h (ana); cyd's billing → sales took 3 days: outside 1 day.
    assert_eq!(h.handoffs.len(), 1);
    assert_eq!(
        (
            h.handoffs[0].from.as_str(),
            h.handoffs[0].to.as_str(),
            h.handoffs[0].median_s
        ),
        ("billing", "tech", 7200.0)
    );
    let h = check_handoffs(&f, 1, &[0], &Query::new(BASE), 4 * DAY);
    assert_eq!(h.totals.handoffs, 2);
    assert_eq!(h.totals.customers_handed_off, 2);
    let prepared_err = {
        let parts = f.partitions(1);
        let p = Prepared::new(&parts, &Stages::default(), &Query::new(BASE)).unwrap();
        handoffs(&p, &HandoffOptions { window: 0 }).is_err()
    };
    assert!(prepared_err);
}

#[test]
fn lifecycle_finds_a_dormant_customer_and_their_return() {
    // A month is 2024-01 (BASE) …; ana goes quiet for 90 days, bob every 10 days.
    let f = Fixture::parse(
        "ana: a@0 > a@5d > a@10d > a@100d > a@105d\n\
         bob: b@0 > b@10d > b@20d > b@30d > b@40d > b@50d > b@60d > b@70d > b@80d > b@90d > b@100d > b@110d\n",
    );
    let o = LifecycleOptions::default();
    for parts in 1..3 {
        let l = check_lifecycle(&f, parts, &[0, 1], &Query::new(BASE), &o);
        assert_eq!(l.totals.ever_returning, 1);
        assert_eq!(l.totals.ever_dormant, 1);
        assert_eq!(l.periods[0].period, "2024-01");
        // ana: new (Jan), churn risk (Feb: 36 days quiet > 2 × 5 d), dormant (Mar: 81 days), returning (Apr).
        assert!(l
            .transitions
            .iter()
            .any(|t| t.from == "dormant" && t.to == "returning"));
        assert!(l
            .transitions
            .iter()
            .any(|t| t.from == "churn_risk" && t.to == "dormant"));
    }
    let weekly = LifecycleOptions {
        period: Period::Week,
        ..o
    };
    let l = check_lifecycle(&f, 2, &[1, 0], &Query::new(BASE), &weekly);
    // 2024-01-01 is a Monday.
    assert_eq!(l.periods[0].period, "2024-01-01");
    assert_eq!(l.periods[1].period, "2024-01-08");
    assert!("fortnight".parse::<Period>().is_err());
}

#[test]
fn periods_index_and_start_agree() {
    for ts in [BASE, BASE - 1, BASE + 40 * DAY + 7, 0, -DAY] {
        for p in [Period::Week, Period::Month] {
            let i = p.index(ts);
            assert!(p.start(i) <= ts && ts < p.start(i + 1), "{p} {ts}");
        }
    }
    let (y, m, d, ..) =
        Timestamp::from_micros(Period::Week.start(Period::Week.index(BASE + 3 * DAY))).civil();
    assert_eq!((y, m, d), (2024, 1, 1));
}

// ---------------------------------------------------------------------------------------
// Property tests.

fn random_fixture() -> impl Strategy<Value = Fixture> {
    let event = (
        prop::sample::select(vec![
            0i64,
            MIN,
            20 * MIN,
            2 * HOUR,
            DAY,
            9 * DAY,
            40 * DAY,
            75 * DAY,
        ]),
        prop::sample::select(vec!["view", "cart", "pay", "call", "chat", "other"]),
        prop::sample::select(vec!["web", "phone", "chat", "email"]),
        prop::option::of(prop::sample::select(vec![-0.8, -0.1, 0.3, 0.9])),
        prop::option::of(prop::sample::select(vec!["billing", "tech", "sales"])),
        prop::option::of(prop::sample::select(vec!["success", "failure"])),
    );
    prop::collection::vec(prop::collection::vec(event, 1..10), 1..12).prop_map(|customers| {
        Fixture {
            customers: customers
                .into_iter()
                .enumerate()
                .map(|(i, evs)| {
                    let mut ts = BASE + i as i64 * 3 * DAY;
                    let events = evs
                        .into_iter()
                        .map(|(dt, activity, channel, sent, dept, outcome)| {
                            ts += dt;
                            let mut props = BTreeMap::new();
                            if let Some(s) = sent {
                                props.insert("sentiment".to_string(), FixtureValue::Num(s));
                            }
                            if let Some(d) = dept {
                                props
                                    .insert("department".to_string(), FixtureValue::Text(d.into()));
                            }
                            if let Some(o) = outcome {
                                props.insert("outcome".to_string(), FixtureValue::Text(o.into()));
                            }
                            FixtureEvent {
                                ts,
                                channel: channel.into(),
                                activity: activity.into(),
                                properties: props,
                                traits: BTreeMap::new(),
                            }
                        })
                        .collect();
                    FixtureCustomer {
                        name: format!("c{i}"),
                        id: CustomerId(i as u64 * 5 + 2),
                        events,
                    }
                })
                .collect(),
        }
    })
}

fn random_query() -> impl Strategy<Value = Query> {
    (
        prop::sample::select(vec!["customer", "gap:1h", "gap:30d"]),
        prop::option::of(0i64..20 * DAY),
        prop::option::of(10 * DAY..200 * DAY),
    )
        .prop_map(|(case, from, len)| {
            let mut q = Query::new(BASE);
            q.step = StepDimension::Activity;
            q.case = case.parse().unwrap();
            q.from = from.map(|f| BASE + f);
            q.to = len.map(|l| BASE + from.unwrap_or(0) + l);
            q
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn journey_analyses_match_the_reference_on_random_journeys(
        f in random_fixture(),
        q in random_query(),
        parts in 1usize..5,
        assign in prop::collection::vec(0usize..5, 1..12),
        k in 1usize..6,
        window in prop::sample::select(vec![HOUR, DAY, 30 * DAY]),
        period in prop::sample::select(vec![Period::Week, Period::Month]),
        dormant in prop::sample::select(vec![10 * DAY, 60 * DAY]),
    ) {
        let json = |v: &dyn erased::Json| v.json();
        let e = check_emotion(&f, parts, &assign, &q, k);
        let m = check_journey_map(&f, parts, &assign, &q);
        let h = check_handoffs(&f, parts, &assign, &q, window);
        let o = LifecycleOptions { period, dormant_after: dormant, risk_factor: 2.0 };
        let l = check_lifecycle(&f, parts, &assign, &q, &o);
        // Byte-identical JSON whatever the partitioning.
        let one = split(&f, 1, &[0]);
        let s = stages();
        let p1 = Prepared::new(&one, &s, &q).unwrap();
        prop_assert_eq!(json(&e), json(&emotion_curve(&p1, &s, &EmotionOptions { positions: k }).unwrap()));
        prop_assert_eq!(json(&m), json(&journey_map(&one, &s, &q, &JourneyMapOptions::default()).unwrap()));
        prop_assert_eq!(json(&h), json(&handoffs(&p1, &HandoffOptions { window }).unwrap()));
        prop_assert_eq!(json(&l), json(&lifecycle(&one, &Stages::default(), &q, &o).unwrap()));
    }
}

mod erased {
    pub trait Json {
        fn json(&self) -> String;
    }
    impl<T: serde::Serialize> Json for T {
        fn json(&self) -> String {
            serde_json::to_string(self).unwrap()
        }
    }
}
