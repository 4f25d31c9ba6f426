//! Conformance: named journeys in the fixture DSL for each deviation class, and a
//! brute-force reference (every subset tried for the in-order run) compared with the engine
//! on random journeys, random designs and random partitionings; plus the customer-set
//! filter that `--persona` rides on.

use omnitrail_engine::conformance::{
    conformance, Activities, Conformance, ConformanceOptions, Design, DesignedJourney,
    DesignedStep, Deviation,
};
use omnitrail_engine::testing::{Fixture, FixtureCustomer, FixtureValue, BASE};
use omnitrail_engine::{process_map, CustomerSet, MapOptions, Prepared, Query, Stages};
use omnitrail_model::CustomerId;
use proptest::prelude::*;
use std::sync::Arc;

fn step(activity: &str, optional: bool, channels: &[&str], within: Option<&str>) -> DesignedStep {
    DesignedStep {
        name: None,
        activity: Activities::One(activity.to_string()),
        optional,
        channels: channels.iter().map(|c| c.to_string()).collect(),
        within: within.map(str::to_string),
    }
}

fn design(steps: Vec<DesignedStep>, goal: Option<&str>) -> Design {
    Design::new(&DesignedJourney {
        name: "test".into(),
        description: None,
        goal: goal.map(str::to_string),
        steps,
    })
    .unwrap()
}

fn run(fixture: &Fixture, partitions: usize, design: &Design) -> Conformance {
    let parts = fixture.partitions(partitions);
    conformance(
        &parts,
        &Stages::default(),
        &Query::new(BASE),
        &ConformanceOptions::new(design.clone()),
    )
    .unwrap()
}

fn class(c: &Conformance, d: Deviation) -> u64 {
    c.deviations.iter().find(|x| x.class == d).unwrap().cases
}

#[test]
fn each_deviation_class_on_named_journeys() {
    let f = Fixture::parse(
        "
        ok: sign@0 > verify@5m > profile@1h > done@2h
        skip: sign@0 > profile@1h > done@2h
        swap: sign@0 > profile@5m > verify@10m > done@2h
        twice: sign@0 > verify@5m > verify@6m > profile@1h > done@2h
        phone: sign@0 > phone:verify@5m > profile@1h > done@2h
        slow: sign@0 > verify@5m > profile@3d > done@3d
        early: verify@0 > sign@1m > verify@5m > profile@1h > done@2h > verify@3h
        none: browse@0 > verify@1m
        ",
    );
    let d = design(
        vec![
            step("sign", false, &[], None),
            step("verify", false, &["web"], None),
            step("profile", false, &[], Some("1d")),
            step("done", false, &[], None),
        ],
        None,
    );
    let c = run(&f, 3, &d);
    assert_eq!(c.totals.cases, 7, "'none' never signs up");
    assert_eq!(
        c.totals.conforming, 2,
        "ok, and early (the goal ends the journey)"
    );
    assert_eq!(class(&c, Deviation::Missing), 1);
    assert_eq!(class(&c, Deviation::OutOfOrder), 1);
    assert_eq!(class(&c, Deviation::Repeated), 1);
    assert_eq!(class(&c, Deviation::UnexpectedChannel), 1);
    assert_eq!(class(&c, Deviation::TimeLimitBreached), 1);
    let examples = |d: Deviation| {
        c.deviations
            .iter()
            .find(|x| x.class == d)
            .unwrap()
            .examples
            .clone()
    };
    assert_eq!(examples(Deviation::Missing), [f.customer("skip")]);
    assert_eq!(examples(Deviation::OutOfOrder), [f.customer("swap")]);
    // `swap`: profile then verify; the longest in-order run keeps sign, verify, done, so
    // profile (done too early) is out of order.
    let profile = &c.steps[2];
    assert_eq!(profile.deviations[1].cases, 1);
    assert_eq!(profile.deviations[4].cases, 1, "slow");
    assert_eq!(c.totals.goal_reached, 7);
    assert_eq!(c.fitness.histogram[4].cases, 2);
}

/// A brute-force reading of the semantics in `conformance.rs`, written apart from it.
#[derive(Clone, Debug, Default, PartialEq)]
struct RefCase {
    classes: [Vec<bool>; 5],
    reached: Vec<bool>,
    fitness: f64,
    goal: bool,
    duration: i64,
    sentiment: Option<f64>,
}

fn reference_case(d: &Design, c: &FixtureCustomer) -> Option<RefCase> {
    let n = d.steps.len();
    let step_of = |a: &str| {
        d.steps
            .iter()
            .position(|s| s.activities.iter().any(|x| x == a))
    };
    let entry = c
        .events
        .iter()
        .position(|e| step_of(&e.activity).is_some_and(|s| s <= d.entry_last))?;
    let mut window = Vec::new();
    for e in &c.events[entry..] {
        if let Some(s) = step_of(&e.activity) {
            window.push((s, e));
            if s == d.goal {
                break;
            }
        }
    }
    let mut r = RefCase {
        classes: std::array::from_fn(|_| vec![false; n]),
        reached: vec![false; n],
        ..RefCase::default()
    };
    let occurrences = |s: usize| window.iter().filter(|(x, _)| *x == s).count();
    let first = |s: usize| window.iter().find(|(x, _)| *x == s).map(|(_, e)| e.ts);
    for s in 0..n {
        r.reached[s] = occurrences(s) > 0;
        r.classes[0][s] = !r.reached[s] && !d.steps[s].optional;
        r.classes[2][s] = occurrences(s) > 1;
        r.classes[3][s] = window
            .iter()
            .any(|(x, e)| *x == s && !d.allows(s, &e.channel));
    }
    // First occurrences in time order, then every subset: the longest increasing ones, and
    // of those the smallest (as sorted position lists).
    let mut order: Vec<usize> = Vec::new();
    for (s, _) in &window {
        if !order.contains(s) {
            order.push(*s);
        }
    }
    let m = order.len();
    let mut best: Option<Vec<usize>> = None;
    for mask in 0u32..(1 << m) {
        let pick: Vec<usize> = (0..m)
            .filter(|i| mask >> i & 1 == 1)
            .map(|i| order[i])
            .collect();
        if !pick.windows(2).all(|w| w[0] < w[1]) {
            continue;
        }
        let better = match &best {
            None => true,
            Some(b) => pick.len() > b.len() || (pick.len() == b.len() && pick < *b),
        };
        if better {
            best = Some(pick);
        }
    }
    let kept = best.unwrap_or_default();
    for &s in &order {
        r.classes[1][s] = !kept.contains(&s);
    }
    for s in 0..n {
        let (Some(limit), Some(t)) = (d.steps[s].within, first(s)) else {
            continue;
        };
        if let Some(p) = (0..s).rev().find(|&p| r.reached[p]) {
            r.classes[4][s] = t - first(p).unwrap() > limit;
        }
    }
    let mut total = 0.0;
    let mut considered = 0.0;
    for s in 0..n {
        if r.reached[s] {
            let k = (1..5).filter(|&c| r.classes[c][s]).count();
            total += 1.0 - 0.25 * k as f64;
            considered += 1.0;
        } else if !d.steps[s].optional {
            considered += 1.0;
        }
    }
    r.fitness = total / considered;
    r.goal = window.iter().any(|(s, _)| *s == d.goal);
    r.duration = window.last().map_or(0, |(_, e)| e.ts) - c.events[entry].ts;
    let values: Vec<f64> = c.events[entry..]
        .iter()
        .filter_map(|e| match e.properties.get("sentiment") {
            Some(FixtureValue::Num(v)) => Some(*v),
            _ => None,
        })
        .collect();
    r.sentiment = (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64);
    Some(r)
}

fn check_against_reference(f: &Fixture, d: &Design, got: &Conformance) {
    let cases: Vec<(CustomerId, RefCase)> = f
        .customers
        .iter()
        .filter(|c| !c.events.is_empty())
        .filter_map(|c| reference_case(d, c).map(|r| (c.id, r)))
        .collect();
    let n = cases.len() as u64;
    assert_eq!(got.totals.cases, n);
    assert_eq!(got.totals.customers, n);
    let conforms = |r: &RefCase| r.classes.iter().all(|c| c.iter().all(|&x| !x));
    let conforming = cases.iter().filter(|(_, r)| conforms(r)).count() as u64;
    assert_eq!(got.totals.conforming, conforming);
    assert_eq!(
        got.totals.goal_reached,
        cases.iter().filter(|(_, r)| r.goal).count() as u64
    );
    for (k, dev) in got.deviations.iter().enumerate() {
        let with: Vec<CustomerId> = cases
            .iter()
            .filter(|(_, r)| r.classes[k].iter().any(|&x| x))
            .map(|(id, _)| *id)
            .collect();
        assert_eq!(dev.cases, with.len() as u64, "{:?}", dev.class);
        let mut sorted = with.clone();
        sorted.sort();
        sorted.truncate(5);
        assert_eq!(dev.examples, sorted, "{:?}", dev.class);
    }
    for (s, st) in got.steps.iter().enumerate() {
        assert_eq!(
            st.reached,
            cases.iter().filter(|(_, r)| r.reached[s]).count() as u64
        );
        for (k, sd) in st.deviations.iter().enumerate() {
            assert_eq!(
                sd.cases,
                cases.iter().filter(|(_, r)| r.classes[k][s]).count() as u64,
                "step {} {:?}",
                st.step,
                sd.class
            );
        }
    }
    let mut fit: Vec<f64> = cases.iter().map(|(_, r)| r.fitness).collect();
    fit.sort_by(f64::total_cmp);
    if let Some(mean) = got.fitness.mean {
        let want = fit.iter().sum::<f64>() / fit.len() as f64;
        assert!((mean - want).abs() < 1e-9, "{mean} vs {want}");
        assert_eq!(got.fitness.min, fit.first().copied());
    } else {
        assert!(fit.is_empty());
    }
    for (group, g) in [
        (true, &got.impact.conforming),
        (false, &got.impact.deviating),
    ] {
        let members: Vec<&RefCase> = cases
            .iter()
            .filter(|(_, r)| conforms(r) == group)
            .map(|(_, r)| r)
            .collect();
        assert_eq!(g.cases, members.len() as u64);
        assert_eq!(
            g.goal_reached,
            members.iter().filter(|r| r.goal).count() as u64
        );
        let s: Vec<f64> = members.iter().filter_map(|r| r.sentiment).collect();
        assert_eq!(g.with_sentiment, s.len() as u64);
        match g.mean_sentiment {
            Some(m) => assert!((m - s.iter().sum::<f64>() / s.len() as f64).abs() < 1e-9),
            None => assert!(s.is_empty()),
        }
        let mut durations: Vec<i64> = members.iter().map(|r| r.duration).collect();
        durations.sort();
        let median = (!durations.is_empty()).then(|| {
            let mid = (durations.len() - 1) as f64 / 2.0;
            let (lo, hi) = (
                durations[mid.floor() as usize],
                durations[mid.ceil() as usize],
            );
            (lo as f64 + (hi - lo) as f64 * (mid - mid.floor())) / 1e6
        });
        match (g.median_duration_s, median) {
            (Some(a), Some(b)) => assert!((a - b).abs() < 1e-6, "{a} vs {b}"),
            (a, b) => assert_eq!(a, b),
        }
    }
}

#[test]
fn named_journeys_agree_with_the_reference() {
    let f = Fixture::parse(
        "
        a: x@0 > b@1m{sentiment=#0.5} > a@2m > c@1h > phone:c@2h > d@3d{sentiment=#-1}
        b: a@0 > d@1m > b@2m > c@3m
        c: b@0 > a@1h > b@2h > c@1d > d@2d
        ",
    );
    let d = design(
        vec![
            step("a", true, &[], None),
            step("b", false, &["web"], Some("30m")),
            step("c", false, &["web"], Some("1h")),
            step("d", true, &[], Some("1d")),
        ],
        Some("c"),
    );
    for parts in 1..4 {
        check_against_reference(&f, &d, &run(&f, parts, &d));
    }
}

fn arb_fixture() -> impl Strategy<Value = String> {
    let event = (
        0usize..6,
        0usize..3,
        0i64..600,
        proptest::option::of(-10i32..=10),
    );
    proptest::collection::vec(proptest::collection::vec(event, 0..9), 1..14).prop_map(|customers| {
        let acts = ["a", "b", "c", "d", "e", "x"];
        let chans = ["web", "mobile_app", "phone"];
        let mut text = String::new();
        for (i, events) in customers.iter().enumerate() {
            let parts: Vec<String> = events
                .iter()
                .map(|(a, c, gap, s)| {
                    let props = s.map_or_else(String::new, |s| {
                        format!("{{sentiment=#{}}}", f64::from(s) / 10.0)
                    });
                    format!("{}:{}@+{}m{}", chans[*c], acts[*a], gap, props)
                })
                .collect();
            text.push_str(&format!("c{i}: {}\n", parts.join(" > ")));
        }
        text
    })
}

fn arb_design() -> impl Strategy<Value = Design> {
    let steps = proptest::sample::subsequence(vec!["a", "b", "c", "d", "e"], 1..=5)
        .prop_shuffle()
        .prop_flat_map(|acts| {
            let n = acts.len();
            (
                Just(acts),
                proptest::collection::vec(
                    (
                        any::<bool>(),
                        proptest::sample::subsequence(vec!["web", "mobile_app"], 0..=2),
                        proptest::option::of(1i64..300),
                    ),
                    n,
                ),
                0..n,
            )
        });
    steps.prop_map(|(acts, opts, goal)| {
        let goal_name = acts[goal].to_string();
        design(
            acts.iter()
                .zip(opts)
                .map(|(a, (optional, channels, within))| {
                    step(
                        a,
                        optional,
                        &channels,
                        within.map(|m| format!("{m}m")).as_deref(),
                    )
                })
                .collect(),
            Some(&goal_name),
        )
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    /// The engine equals the brute-force reference, and its JSON is byte-identical for any
    /// partitioning.
    #[test]
    fn engine_equals_reference_for_any_partitioning(
        text in arb_fixture(),
        d in arb_design(),
        parts in 1usize..5,
    ) {
        let f = Fixture::parse(&text);
        let one = run(&f, 1, &d);
        check_against_reference(&f, &d, &one);
        let many = run(&f, parts, &d);
        prop_assert_eq!(
            serde_json::to_string(&one).unwrap(),
            serde_json::to_string(&many).unwrap()
        );
    }
}

#[test]
fn customer_sets_keep_or_drop_whole_customers() {
    let f = Fixture::parse(
        "
        ana: view > cart > buy
        bob: view > cart
        cy: view > buy
        ",
    );
    let parts = f.partitions(2);
    let mut q = Query::new(BASE);
    let set = CustomerSet::new(vec![f.customer("cy"), f.customer("ana"), CustomerId(99)]);
    assert!(set.contains(f.customer("ana")) && !set.contains(f.customer("bob")));
    q.customers = Some(Arc::new(set));
    let m = process_map(
        &Prepared::new(&parts, &Stages::default(), &q).unwrap(),
        &MapOptions::default(),
    )
    .unwrap();
    assert_eq!(m.totals.customers, 2);
    assert_eq!(m.totals.events, 5);
    q.customers = Some(Arc::new(CustomerSet::default()));
    let m = process_map(
        &Prepared::new(&parts, &Stages::default(), &q).unwrap(),
        &MapOptions::default(),
    )
    .unwrap();
    assert_eq!(m.totals.events, 0);
}
