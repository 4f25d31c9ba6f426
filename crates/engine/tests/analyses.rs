//! Process map, variants and channel switching against brute-force reference
//! implementations: named cases written in the journey DSL, and property tests on random
//! journeys spread over random partition splits (which also proves partials merge right).

use omnitrail_engine::testing::{Fixture, FixtureCustomer, FixtureEvent, FixtureValue, BASE};
use omnitrail_engine::{
    channel_switching, process_map, variants, CaseSplit, ChannelOptions, MapOptions, Prepared,
    Query, Stages, StepDimension, VariantOptions,
};
use omnitrail_model::CustomerId;
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet};

const MIN: i64 = 60_000_000;
const HOUR: i64 = 60 * MIN;

// ---------------------------------------------------------------------------------------
// Reference implementations: plain vectors of strings, sorting, no cleverness.

/// One event as the reference sees it.
#[derive(Clone, Debug)]
struct Ev {
    ts: i64,
    step: String,
    channel: String,
    outcome: Option<String>,
}

type PlainCases = Vec<(CustomerId, Vec<Ev>)>;

fn text_prop(e: &FixtureEvent, name: &str) -> Option<String> {
    match e.properties.get(name) {
        Some(FixtureValue::Text(t)) => Some(t.clone()),
        Some(FixtureValue::Num(x)) => Some(x.to_string()),
        None => None,
    }
}

fn step_of(e: &FixtureEvent, step: &StepDimension, stages: &Stages) -> Option<String> {
    match step {
        StepDimension::Activity => Some(e.activity.clone()),
        StepDimension::Channel => Some(e.channel.clone()),
        StepDimension::Touchpoint => Some(format!("{}:{}", e.channel, e.activity)),
        StepDimension::Stage => stages.stage_of(&e.activity).map(str::to_string),
        StepDimension::Property(p) => text_prop(e, p),
    }
}

/// Cases in customer order, then case order, exactly as the query semantics say.
fn reference_cases(f: &Fixture, stages: &Stages, q: &Query) -> PlainCases {
    let mut out = Vec::new();
    for c in &f.customers {
        let evs: Vec<&FixtureEvent> = c
            .events
            .iter()
            .filter(|e| q.from.is_none_or(|t| e.ts >= t) && q.to.is_none_or(|t| e.ts < t))
            .collect();
        let mut cases: Vec<Vec<&FixtureEvent>> = Vec::new();
        match &q.case {
            CaseSplit::Customer => cases.push(evs),
            CaseSplit::Gap(g) => {
                for (i, e) in evs.iter().enumerate() {
                    if i == 0 || e.ts - evs[i - 1].ts > *g {
                        cases.push(Vec::new());
                    }
                    cases.last_mut().unwrap().push(e);
                }
            }
            CaseSplit::Property(p) => {
                let mut keys: Vec<String> = Vec::new();
                for e in &evs {
                    if let Some(k) = text_prop(e, p) {
                        if !keys.contains(&k) {
                            keys.push(k);
                        }
                    }
                }
                for k in keys {
                    cases.push(
                        evs.iter()
                            .filter(|e| text_prop(e, p).as_deref() == Some(k.as_str()))
                            .copied()
                            .collect(),
                    );
                }
            }
        }
        for case in cases {
            let steps: Vec<Ev> = case
                .iter()
                .filter_map(|e| {
                    step_of(e, &q.step, stages).map(|step| Ev {
                        ts: e.ts,
                        step,
                        channel: e.channel.clone(),
                        outcome: text_prop(e, "outcome"),
                    })
                })
                .collect();
            if !steps.is_empty() {
                out.push((c.id, steps));
            }
        }
    }
    out
}

/// Linear-interpolation quantile over a sorted copy.
fn ref_quantile(values: &[i64], q: f64) -> f64 {
    let mut v = values.to_vec();
    v.sort();
    let pos = q * (v.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    (v[lo] as f64 + (v[hi] - v[lo]) as f64 * (pos - lo as f64)) / 1e6
}

fn ref_mean(values: &[i64]) -> f64 {
    values.iter().map(|&v| v as f64).sum::<f64>() / values.len() as f64 / 1e6
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-6 * (1.0 + a.abs().max(b.abs()))
}

#[derive(Debug, Default, PartialEq)]
struct RefNode {
    events: u64,
    customers: BTreeSet<CustomerId>,
    starts: u64,
    ends: u64,
}

#[derive(Debug, Default)]
struct RefEdge {
    durations: Vec<i64>,
    customers: BTreeSet<CustomerId>,
}

fn reference_map(
    cases: &PlainCases,
) -> (
    BTreeMap<String, RefNode>,
    BTreeMap<(String, String), RefEdge>,
) {
    let mut nodes: BTreeMap<String, RefNode> = BTreeMap::new();
    let mut edges: BTreeMap<(String, String), RefEdge> = BTreeMap::new();
    for (c, evs) in cases {
        for e in evs {
            let n = nodes.entry(e.step.clone()).or_default();
            n.events += 1;
            n.customers.insert(*c);
        }
        nodes.get_mut(&evs[0].step).unwrap().starts += 1;
        nodes.get_mut(&evs[evs.len() - 1].step).unwrap().ends += 1;
        for w in evs.windows(2) {
            let edge = edges
                .entry((w[0].step.clone(), w[1].step.clone()))
                .or_default();
            edge.durations.push(w[1].ts - w[0].ts);
            edge.customers.insert(*c);
        }
    }
    (nodes, edges)
}

fn check_map(f: &Fixture, parts: usize, assign: &[usize], stages: &Stages, q: &Query) {
    let partitions = f.partitions_by(parts, |i| assign[i % assign.len()] % parts);
    let prepared = Prepared::new(&partitions, stages, q).unwrap();
    let m = process_map(&prepared, &MapOptions::default()).unwrap();
    let cases = reference_cases(f, stages, q);
    let (nodes, edges) = reference_map(&cases);
    assert_eq!(m.totals.cases, cases.len() as u64);
    assert_eq!(
        m.totals.customers,
        cases.iter().map(|c| c.0).collect::<BTreeSet<_>>().len() as u64
    );
    assert_eq!(
        m.totals.events,
        cases.iter().map(|c| c.1.len() as u64).sum::<u64>()
    );
    assert_eq!(m.nodes.len(), nodes.len());
    for n in &m.nodes {
        let r = &nodes[&n.step];
        assert_eq!(
            (n.events, n.customers, n.starts, n.ends),
            (r.events, r.customers.len() as u64, r.starts, r.ends),
            "node {}",
            n.step
        );
    }
    assert_eq!(m.edges.len(), edges.len());
    for e in &m.edges {
        let r = &edges[&(e.from.clone(), e.to.clone())];
        assert_eq!(e.count, r.durations.len() as u64, "{} → {}", e.from, e.to);
        assert_eq!(e.customers, r.customers.len() as u64);
        assert!(close(e.duration.median_s, ref_quantile(&r.durations, 0.5)));
        assert!(close(e.duration.p90_s, ref_quantile(&r.durations, 0.9)));
        assert!(close(e.duration.mean_s, ref_mean(&r.durations)));
    }
    // Sorted by events (count) descending, then name.
    assert!(m
        .nodes
        .windows(2)
        .all(|w| (std::cmp::Reverse(w[0].events), &w[0].step)
            < (std::cmp::Reverse(w[1].events), &w[1].step)));
    assert!(m.edges.windows(2).all(|w| {
        (std::cmp::Reverse(w[0].count), &w[0].from, &w[0].to)
            < (std::cmp::Reverse(w[1].count), &w[1].from, &w[1].to)
    }));
}

fn check_variants(f: &Fixture, parts: usize, assign: &[usize], stages: &Stages, q: &Query) {
    let partitions = f.partitions_by(parts, |i| assign[i % assign.len()] % parts);
    let prepared = Prepared::new(&partitions, stages, q).unwrap();
    let v = variants(&prepared, &VariantOptions { top: usize::MAX }).unwrap();
    let cases = reference_cases(f, stages, q);
    #[derive(Default)]
    struct R {
        durations: Vec<i64>,
        customers: BTreeSet<CustomerId>,
        with_outcome: u64,
        successes: u64,
    }
    let mut r: BTreeMap<Vec<String>, R> = BTreeMap::new();
    for (c, evs) in &cases {
        let acc = r
            .entry(evs.iter().map(|e| e.step.clone()).collect())
            .or_default();
        acc.durations.push(evs[evs.len() - 1].ts - evs[0].ts);
        acc.customers.insert(*c);
        if let Some(o) = evs.iter().rev().find_map(|e| e.outcome.clone()) {
            acc.with_outcome += 1;
            acc.successes += u64::from(o == "success" || o == "resolved");
        }
    }
    let mut expected: Vec<(Vec<String>, R)> = r.into_iter().collect();
    expected.sort_by(|a, b| {
        b.1.durations
            .len()
            .cmp(&a.1.durations.len())
            .then(a.0.cmp(&b.0))
    });
    assert_eq!(v.total_cases, cases.len() as u64);
    assert_eq!(v.total_variants, expected.len() as u64);
    assert_eq!(v.variants.len(), expected.len());
    for (got, (steps, r)) in v.variants.iter().zip(&expected) {
        assert_eq!(&got.steps, steps);
        assert_eq!(got.count, r.durations.len() as u64);
        assert_eq!(got.customers, r.customers.len() as u64);
        assert_eq!(
            (got.with_outcome, got.successes),
            (r.with_outcome, r.successes)
        );
        assert!(close(
            got.median_duration_s,
            ref_quantile(&r.durations, 0.5)
        ));
        assert!(close(got.share, got.count as f64 / cases.len() as f64));
    }
}

fn check_channels(f: &Fixture, parts: usize, assign: &[usize], q: &Query, window: i64) {
    let partitions = f.partitions_by(parts, |i| assign[i % assign.len()] % parts);
    let c = channel_switching(
        &partitions,
        &Stages::default(),
        q,
        &ChannelOptions { window },
    )
    .unwrap();
    let whole = Query {
        step: StepDimension::Channel,
        case: CaseSplit::Customer,
        ..q.clone()
    };
    let cases = reference_cases(f, &Stages::default(), &whole);
    let mut pairs: BTreeMap<(String, String), (Vec<i64>, BTreeSet<CustomerId>)> = BTreeMap::new();
    let mut uses: BTreeMap<String, (u64, BTreeSet<CustomerId>)> = BTreeMap::new();
    let mut switching = BTreeSet::new();
    for (cust, evs) in &cases {
        for e in evs {
            let u = uses.entry(e.channel.clone()).or_default();
            u.0 += 1;
            u.1.insert(*cust);
        }
        for w in evs.windows(2) {
            if w[0].channel != w[1].channel && w[1].ts - w[0].ts <= window {
                let p = pairs
                    .entry((w[0].channel.clone(), w[1].channel.clone()))
                    .or_default();
                p.0.push(w[1].ts - w[0].ts);
                p.1.insert(*cust);
                switching.insert(*cust);
            }
        }
    }
    assert_eq!(c.totals.customers, cases.len() as u64);
    assert_eq!(c.totals.switching_customers, switching.len() as u64);
    assert_eq!(c.channels.len(), uses.len());
    for u in &c.channels {
        let r = &uses[&u.channel];
        assert_eq!((u.events, u.customers), (r.0, r.1.len() as u64));
    }
    assert_eq!(c.switches.len(), pairs.len());
    for s in &c.switches {
        let r = &pairs[&(s.from.clone(), s.to.clone())];
        assert_eq!(
            (s.switches, s.customers),
            (r.0.len() as u64, r.1.len() as u64)
        );
        assert!(close(s.median_gap_s, ref_quantile(&r.0, 0.5)));
    }
}

/// The same query over every split of the data gives byte-identical JSON.
fn check_split_independence(f: &Fixture, assign: &[usize], stages: &Stages, q: &Query) {
    let json = |parts: usize, assign: &dyn Fn(usize) -> usize| {
        let partitions = f.partitions_by(parts, assign);
        let p = Prepared::new(&partitions, stages, q).unwrap();
        let m = process_map(&p, &MapOptions::default()).unwrap();
        let v = variants(&p, &VariantOptions::default()).unwrap();
        let c = channel_switching(&partitions, stages, q, &ChannelOptions::default()).unwrap();
        serde_json::to_string(&(m, v, c)).unwrap()
    };
    let one = json(1, &|_| 0);
    let split = json(4, &|i| assign[i % assign.len()] % 4);
    assert_eq!(one, split);
}

// ---------------------------------------------------------------------------------------
// Named cases.

fn stages() -> Stages {
    let mut s = Stages::new(vec!["browse".into(), "buy".into(), "care".into()]);
    for (a, st) in [
        ("view", "browse"),
        ("cart", "buy"),
        ("pay", "buy"),
        ("call", "care"),
    ] {
        s.assign(a, st).unwrap();
    }
    s
}

const SHOP: &str = "\
ana: view@0 > cart@+5m > pay@+2m{outcome=success}
bob: view@0 > view@+1m > cart@+1h > phone:call@+30m{outcome=failure} > pay@+1d{ticket=t9}
cyd: email:view@0 > web:view@+3h > cart@+4m{ticket=t1} > phone:call@+10m{ticket=t1, outcome=resolved}
dan: view@0
eve[plan=pro]: view@2d > cart@+5m > pay@+2m{outcome=success}
";

fn queries() -> Vec<Query> {
    let mut out = Vec::new();
    for step in [
        "activity",
        "channel",
        "touchpoint",
        "stage",
        "property:ticket",
    ] {
        for case in ["customer", "gap:30m", "property:ticket"] {
            for (from, to) in [
                (None, None),
                (Some(BASE + MIN), Some(BASE + 3 * 86_400_000_000)),
            ] {
                let mut q = Query::new(BASE);
                q.step = step.parse().unwrap();
                q.case = case.parse().unwrap();
                q.from = from;
                q.to = to;
                out.push(q);
            }
        }
    }
    out
}

#[test]
fn shop_process_map_matches_the_reference_for_every_dimension_and_split() {
    let f = Fixture::parse(SHOP);
    for q in queries() {
        for parts in 1..=3 {
            check_map(&f, parts, &[0, 1, 2, 1, 0], &stages(), &q);
        }
    }
}

#[test]
fn shop_variants_match_the_reference() {
    let f = Fixture::parse(SHOP);
    for q in queries() {
        check_variants(&f, 2, &[1, 0, 1], &stages(), &q);
    }
}

#[test]
fn shop_channel_switches_match_the_reference() {
    let f = Fixture::parse(SHOP);
    for q in queries() {
        for window in [MIN, HOUR, 24 * HOUR] {
            check_channels(&f, 3, &[2, 0, 1, 1], &q, window);
        }
    }
}

#[test]
fn running_example_numbers_by_hand() {
    let f = Fixture::parse(
        "a: register@0 > check@1h > decide@3h > pay@1d\n\
         b: register@0 > check@2h > decide@3h > reject@2d\n",
    );
    let parts = f.partitions(2);
    let p = Prepared::new(&parts, &Stages::default(), &Query::new(0)).unwrap();
    let m = process_map(&p, &MapOptions::default()).unwrap();
    let json = serde_json::to_value(&m).unwrap();
    let edge = |from: &str, to: &str| {
        json["edges"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["from"] == from && e["to"] == to)
            .cloned()
            .unwrap()
    };
    let rc = edge("register", "check");
    assert_eq!(rc["count"], 2);
    assert_eq!(rc["customers"], 2);
    assert_eq!(rc["median_s"], 5400.0);
    assert_eq!(rc["mean_s"], 5400.0);
    assert_eq!(rc["p90_s"], 6840.0);
    assert_eq!(edge("check", "decide")["median_s"], 5400.0);
    assert_eq!(json["totals"]["transitions"], 6);
    assert_eq!(json["nodes"][0]["step"], "check");
    assert_eq!(json["nodes"][2]["starts"], 2);

    let v = variants(&p, &VariantOptions { top: 1 }).unwrap();
    assert_eq!(v.total_variants, 2);
    assert_eq!(v.variants.len(), 1);
    // Equal counts: the alphabetically first sequence wins.
    assert_eq!(v.variants[0].steps, ["register", "check", "decide", "pay"]);
    assert_eq!(v.variants[0].median_duration_s, 86_400.0);
    assert_eq!(v.variants[0].share, 0.5);
}

#[test]
fn simplification_keeps_frequent_nodes_and_their_strongest_edges() {
    // a has 6 events, b 4, c 1: 60 % of events needs a and b.
    let f = Fixture::parse(
        "x: a > b > a > b > a > c\n\
         y: a > b > a > b > a\n",
    );
    let parts = f.partitions(1);
    let p = Prepared::new(&parts, &Stages::default(), &Query::new(0)).unwrap();
    let opts = MapOptions {
        node_coverage: 60.0,
        edge_coverage: 100.0,
    };
    let m = process_map(&p, &opts).unwrap();
    let steps: Vec<&str> = m.nodes.iter().map(|n| n.step.as_str()).collect();
    assert_eq!(steps, ["a", "b"]);
    let edges: Vec<(&str, &str)> = m
        .edges
        .iter()
        .map(|e| (e.from.as_str(), e.to.as_str()))
        .collect();
    assert_eq!(edges, [("a", "b"), ("b", "a")]);
    assert_eq!(m.simplification.hidden_nodes, 1);
    assert_eq!(m.simplification.hidden_edges, 1);
    assert_eq!(m.totals.steps, 3, "totals describe the full map");

    // A low edge coverage keeps a → b (4 of 8 = 50 %) and still b's strongest way out.
    let m = process_map(
        &p,
        &MapOptions {
            node_coverage: 100.0,
            edge_coverage: 10.0,
        },
    )
    .unwrap();
    let edges: Vec<(&str, &str)> = m
        .edges
        .iter()
        .map(|e| (e.from.as_str(), e.to.as_str()))
        .collect();
    assert_eq!(edges, [("a", "b"), ("b", "a"), ("a", "c")]);

    for bad in [0.0, -1.0, 100.5, f64::NAN] {
        let o = MapOptions {
            node_coverage: bad,
            edge_coverage: 100.0,
        };
        assert!(process_map(&p, &o).is_err(), "{bad}");
    }
}

#[test]
fn outcome_is_the_last_one_set_in_the_case() {
    let f = Fixture::parse(
        "a: open > call{outcome=failure} > call{outcome=resolved} > close\n\
         b: open > call{outcome=resolved} > call{outcome=failure} > close\n\
         c: open > call > close\n",
    );
    let parts = f.partitions(2);
    let p = Prepared::new(&parts, &Stages::default(), &Query::new(0)).unwrap();
    let v = variants(&p, &VariantOptions::default()).unwrap();
    assert_eq!(v.variants.len(), 2);
    let x = &v.variants[0];
    assert_eq!((x.count, x.with_outcome, x.successes), (2, 2, 1));
    assert_eq!(x.success_share, 0.5);
    let y = &v.variants[1];
    assert_eq!((y.count, y.with_outcome, y.successes), (1, 0, 0));
    assert!(variants(&p, &VariantOptions { top: 0 }).is_err());
}

#[test]
fn channel_window_and_zero_window() {
    let f = Fixture::parse("a: web:x@0 > web:y@+1h > phone:z@+2h > email:w@+2d > phone:v@+1m\n");
    let parts = f.partitions(1);
    let c = channel_switching(
        &parts,
        &Stages::default(),
        &Query::new(0),
        &ChannelOptions::default(),
    )
    .unwrap();
    let got: Vec<(&str, &str, u64, f64)> = c
        .switches
        .iter()
        .map(|s| (s.from.as_str(), s.to.as_str(), s.switches, s.median_gap_s))
        .collect();
    assert_eq!(
        got,
        [("email", "phone", 1, 60.0), ("web", "phone", 1, 7200.0)]
    );
    assert_eq!(c.window, "1d");
    assert!(channel_switching(
        &parts,
        &Stages::default(),
        &Query::new(0),
        &ChannelOptions { window: 0 }
    )
    .is_err());
}

// ---------------------------------------------------------------------------------------
// Property tests on random journeys.

fn random_fixture() -> impl Strategy<Value = Fixture> {
    let event = (
        prop::sample::select(vec![
            0i64,
            0,
            MIN,
            20 * MIN,
            30 * MIN,
            HOUR,
            2 * HOUR,
            30 * HOUR,
        ]),
        prop::sample::select(vec!["view", "cart", "pay", "call", "other"]),
        prop::sample::select(vec!["web", "web", "phone", "email"]),
        prop::option::of(prop::sample::select(vec!["t1", "t2", "t3"])),
        prop::option::of(prop::sample::select(vec!["success", "failure", "resolved"])),
    );
    prop::collection::vec(prop::collection::vec(event, 1..9), 1..14).prop_map(|customers| {
        let customers = customers
            .into_iter()
            .enumerate()
            .map(|(i, evs)| {
                let mut ts = BASE + i as i64 * 7 * MIN;
                let events = evs
                    .into_iter()
                    .map(|(dt, activity, channel, ticket, outcome)| {
                        ts += dt;
                        let mut properties = BTreeMap::new();
                        if let Some(t) = ticket {
                            properties.insert("ticket".to_string(), FixtureValue::Text(t.into()));
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
                    id: CustomerId(i as u64 * 3 + 1),
                    events,
                }
            })
            .collect();
        Fixture { customers }
    })
}

fn random_query() -> impl Strategy<Value = Query> {
    (
        prop::sample::select(vec![
            "activity",
            "channel",
            "touchpoint",
            "stage",
            "property:ticket",
        ]),
        prop::sample::select(vec!["customer", "gap:30m", "gap:2h", "property:ticket"]),
        prop::option::of(0i64..4 * HOUR),
        prop::option::of(0i64..60 * HOUR),
    )
        .prop_map(|(step, case, from, len)| {
            let mut q = Query::new(BASE);
            q.step = step.parse().unwrap();
            q.case = case.parse().unwrap();
            q.from = from.map(|f| BASE + f);
            q.to = len.map(|l| BASE + from.unwrap_or(0) + l + 1);
            q
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn engine_matches_reference_on_random_journeys(
        f in random_fixture(),
        q in random_query(),
        parts in 1usize..5,
        assign in prop::collection::vec(0usize..5, 1..14),
        window in prop::sample::select(vec![MIN, HOUR, 24 * HOUR]),
    ) {
        let s = stages();
        check_map(&f, parts, &assign, &s, &q);
        check_variants(&f, parts, &assign, &s, &q);
        check_channels(&f, parts, &assign, &q, window);
        check_split_independence(&f, &assign, &s, &q);
    }
}

#[test]
fn big_alphabets_take_the_sparse_path_and_agree() {
    // 400 distinct activities: more than the dense steps² table allows.
    let mut x: u64 = 99;
    let mut next = move |m: u64| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % m
    };
    let customers = (0..60)
        .map(|i| {
            let mut ts = BASE;
            let events = (0..1 + next(30))
                .map(|_| {
                    ts += next(3) as i64 * HOUR;
                    FixtureEvent {
                        ts,
                        channel: ["web", "phone"][next(2) as usize].into(),
                        activity: format!("s{}", next(400)),
                        properties: BTreeMap::new(),
                        traits: BTreeMap::new(),
                    }
                })
                .collect();
            FixtureCustomer {
                name: format!("c{i}"),
                id: CustomerId(i + 1),
                events,
            }
        })
        .collect();
    let f = Fixture { customers };
    let q = Query::new(BASE);
    for parts in [1, 3] {
        check_map(&f, parts, &[0, 1, 2], &Stages::default(), &q);
        check_variants(&f, parts, &[2, 1], &Stages::default(), &q);
    }
    let mut q = Query::new(BASE);
    q.step = StepDimension::Touchpoint;
    check_map(&f, 2, &[1, 0], &Stages::default(), &q);
}

#[test]
fn filter_drops_events_and_segment_judges_whole_journeys() {
    use omnitrail_engine::expr::{EventFilter, Segment};
    let f = Fixture::parse(SHOP);
    let parts = f.partitions(2);
    let mut q = Query::new(BASE + 10 * 86_400_000_000);
    // Only web events, only customers who ever called — judged on the whole journey, so
    // bob (whose call is outside the time range) still counts.
    q.filter = Some(EventFilter::parse("channel = 'web'").unwrap());
    q.segment = Some(Segment::parse("did('call')").unwrap());
    q.from = Some(BASE + 40 * MIN);
    let p = Prepared::new(&parts, &Stages::default(), &q).unwrap();
    let names = p.step_names().to_vec();
    let mut got: Vec<(u64, Vec<String>)> = p.fold_cases(
        Vec::new,
        |acc, c| {
            acc.push((
                c.customer.0,
                c.steps.iter().map(|&s| names[s as usize].clone()).collect(),
            ))
        },
        |mut a, b| {
            a.extend(b);
            a
        },
    );
    got.sort();
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    assert_eq!(
        got,
        [(2, s(&["cart", "pay"])), (3, s(&["view", "cart"]))],
        "bob: cart and pay on web after 40 min; cyd: web view and cart"
    );
    let m = process_map(&p, &MapOptions::default()).unwrap();
    assert_eq!(m.totals.customers, 2);
    assert_eq!(Prepared::required_scan(&q).properties, Vec::<String>::new());
}
