//! Funnels: named journeys in the fixture DSL for each rule (modes, attempts, window,
//! exclusions, breakdowns, dropped customers), and a brute-force reference that enumerates
//! every attempt (every chain of events, every step assignment) compared with the engine on
//! random journeys over random partitions.

use omnitrail_engine::expr::EventFilter;
use omnitrail_engine::funnel::{
    funnel, funnel_scan, Breakdown, DroppedCustomers, DroppedPage, Funnel, FunnelBreakdown,
    FunnelGroup, FunnelMode, FunnelOptions, FunnelStep, FunnelStepResult, HistogramBucket,
    TimeToConvert,
};
use omnitrail_engine::testing::{Fixture, FixtureCustomer, FixtureEvent, FixtureValue, BASE};
use omnitrail_engine::{CaseSplit, EngineError, Prepared, Query, Stages};
use omnitrail_model::CustomerId;
use proptest::prelude::*;
use std::collections::BTreeMap;

const MINUTE: i64 = 60_000_000;
const HOUR: i64 = 60 * MINUTE;
const DAY: i64 = 24 * HOUR;

fn run_with(fixture: &str, query: &Query, options: &FunnelOptions) -> Result<Funnel, EngineError> {
    let parts = Fixture::parse(fixture).partitions(3);
    let prepared = Prepared::new(&parts, &Stages::default(), query)?;
    funnel(&prepared, &Stages::default(), options)
}

fn run(fixture: &str, options: &FunnelOptions) -> Funnel {
    run_with(fixture, &Query::new(BASE), options).unwrap()
}

fn steps(names: &[&str]) -> Vec<FunnelStep> {
    names
        .iter()
        .map(|s| FunnelStep::parse(s).unwrap())
        .collect()
}

fn with_mode(names: &[&str], mode: FunnelMode) -> FunnelOptions {
    FunnelOptions {
        mode,
        ..FunnelOptions::new(steps(names))
    }
}

/// "cases/customers" per step.
fn counts(f: &Funnel) -> Vec<String> {
    f.steps
        .iter()
        .map(|s| format!("{} {}/{}", s.label, s.cases, s.customers))
        .collect()
}

const SHOP: &str = "
ana: view > cart > buy
bob: view > cart
cy: view > home > cart > home > buy
dee: cart > buy
eve: view
";

#[test]
fn ordered_steps_allow_other_events_between() {
    let f = run(
        SHOP,
        &with_mode(&["view", "cart", "buy"], FunnelMode::Ordered),
    );
    assert_eq!(counts(&f), ["view 4/4", "cart 3/3", "buy 2/2"]);
    assert_eq!((f.cases, f.customers), (5, 5));
    let conv: Vec<_> = f
        .steps
        .iter()
        .map(|s| (s.conversion_from_previous, s.conversion_from_first))
        .collect();
    assert_eq!(
        conv,
        [
            (Some(0.8), Some(1.0)),
            (Some(0.75), Some(0.75)),
            (Some(2.0 / 3.0), Some(0.5))
        ]
    );
    let dropped: Vec<_> = f.steps.iter().map(|s| s.dropped_cases).collect();
    assert_eq!(dropped, [1, 1, 1]);
}

#[test]
fn strict_steps_must_be_consecutive_events() {
    let f = run(
        SHOP,
        &with_mode(&["view", "cart", "buy"], FunnelMode::Strict),
    );
    assert_eq!(counts(&f), ["view 4/4", "cart 2/2", "buy 1/1"]);
}

#[test]
fn any_order_counts_how_many_steps_were_done() {
    let f = run(
        SHOP,
        &with_mode(&["view", "cart", "buy"], FunnelMode::AnyOrder),
    );
    // dee did cart and buy without view: two of three steps.
    assert_eq!(counts(&f), ["view 5/5", "cart 4/4", "buy 2/2"]);
    // Each step needs its own event: one view cannot be two steps.
    let f = run(
        "ana: view > cart\nbob: cart > view > view",
        &with_mode(&["view", "view", "cart"], FunnelMode::AnyOrder),
    );
    assert_eq!(counts(&f), ["view 2/2", "view 2/2", "cart 1/1"]);
}

#[test]
fn the_best_attempt_is_the_furthest_then_the_earliest() {
    let fixture = "ana: view@0 > cart@+1h > view@+2d > cart@+1h > buy@+1h";
    let names = ["view", "cart", "buy"];
    // Without a window the first attempt converts, taking 2 days and 3 hours.
    let f = run(fixture, &with_mode(&names, FunnelMode::Ordered));
    assert_eq!(counts(&f), ["view 1/1", "cart 1/1", "buy 1/1"]);
    assert_eq!(f.time_to_convert.median_s, Some((51 * HOUR) as f64 / 1e6));
    // With a one-day window only the second attempt converts: 2 hours.
    let windowed = FunnelOptions {
        window: Some(DAY),
        ..with_mode(&names, FunnelMode::Ordered)
    };
    let f = run(fixture, &windowed);
    assert_eq!(counts(&f), ["view 1/1", "cart 1/1", "buy 1/1"]);
    assert_eq!(f.time_to_convert.median_s, Some(7200.0));
    // The window is inclusive: buy exactly one day after view still counts.
    let edge = run(
        "ana: view@0 > buy@1d",
        &FunnelOptions {
            window: Some(DAY),
            ..with_mode(&["view", "buy"], FunnelMode::Ordered)
        },
    );
    assert_eq!(counts(&edge), ["view 1/1", "buy 1/1"]);
}

#[test]
fn exclusions_between_steps_disqualify_the_attempt() {
    let fixture = "
        ana: view > support > cart > buy
        bob: view > cart > support
        cy: view > support > view > cart > buy
    ";
    let o = FunnelOptions {
        exclusions: steps(&["support"]),
        ..with_mode(&["view", "cart", "buy"], FunnelMode::Ordered)
    };
    let f = run(fixture, &o);
    // ana's only attempt is disqualified; bob's support call comes after his last step;
    // cy's second attempt starts after the support call and converts.
    assert_eq!(counts(&f), ["view 2/2", "cart 2/2", "buy 1/1"]);
    assert_eq!(f.steps[0].dropped_customers, 1);
    assert_eq!(f.exclusions, ["support"]);
    // An event that is also a funnel step is never an exclusion.
    let o = FunnelOptions {
        exclusions: steps(&["activity in ('cart', 'refund')"]),
        ..with_mode(&["view", "cart", "buy"], FunnelMode::Ordered)
    };
    assert_eq!(counts(&run("ana: view > cart > buy", &o))[2], "buy 1/1");
    // In strict mode no event lies between steps, so nothing is excluded.
    let o = FunnelOptions {
        exclusions: steps(&["support"]),
        ..with_mode(&["view", "support"], FunnelMode::Strict)
    };
    assert_eq!(counts(&run(fixture, &o)), ["view 3/3", "support 2/2"]);
}

#[test]
fn filter_steps_and_value_steps_mix() {
    let fixture = "
        ana: web:view > phone:call > web:buy
        bob: web:view > web:call > web:buy
        cy: phone:view > phone:call > web:buy
    ";
    let o = FunnelOptions::new(steps(&[
        "channel = 'web' and activity = 'view'",
        "touchpoint = 'phone:call'",
        "buy",
    ]));
    let f = run(fixture, &o);
    assert_eq!(
        counts(&f),
        [
            "channel = 'web' and activity = 'view' 2/2",
            "touchpoint = 'phone:call' 1/1",
            "buy 1/1"
        ]
    );
}

#[test]
fn step_text_is_a_filter_only_when_it_reads_as_one() {
    let parse = |s: &str| FunnelStep::parse(s).unwrap();
    assert_eq!(parse("cart"), FunnelStep::Value("cart".into()));
    assert_eq!(parse("phone:call"), FunnelStep::Value("phone:call".into()));
    assert_eq!(parse("iOS 17"), FunnelStep::Value("iOS 17".into()));
    assert_eq!(parse("value:a = b"), FunnelStep::Value("a = b".into()));
    assert!(matches!(parse("os = 'iOS'"), FunnelStep::Filter(_)));
    // Meant as a filter, but broken: an error, not a step value nobody has.
    let e = FunnelStep::parse("channel = 'web' and").unwrap_err();
    assert_eq!(e.column, 20);
}

#[test]
fn time_to_convert_has_exact_quantiles_and_fixed_buckets() {
    let fixture = "
        a: view@0 > buy@+30s
        b: view@0 > buy@+2m
        c: view@0 > buy@+10m
        d: view@0 > buy@+2h
        e: view@0 > buy@+40d
        f: view@0
    ";
    let f = run(fixture, &FunnelOptions::new(steps(&["view", "buy"])));
    let t = &f.time_to_convert;
    assert_eq!(t.converted, 5);
    assert_eq!(t.median_s, Some(600.0));
    // numpy: 0.9 * 4 = 3.6 → 7200 + 0.6 * (3456000 - 7200).
    let close = |a: Option<f64>, b: f64| (a.unwrap() - b).abs() < 1e-6;
    assert!(
        close(t.p90_s, 7200.0 + 0.6 * (3_456_000.0 - 7200.0)),
        "{:?}",
        t.p90_s
    );
    assert!(close(
        t.mean_s,
        (30.0 + 120.0 + 600.0 + 7200.0 + 3_456_000.0) / 5.0
    ));
    let buckets: Vec<_> = t
        .histogram
        .iter()
        .filter(|b| b.cases > 0)
        .map(|b| (b.label.as_str(), b.cases))
        .collect();
    assert_eq!(
        buckets,
        [
            ("< 1m", 1),
            ("1m-5m", 1),
            ("5m-15m", 1),
            ("1h-6h", 1),
            (">= 30d", 1)
        ]
    );
    assert_eq!(t.histogram.len(), 10);
    assert_eq!(t.histogram[9].to_s, None);
    assert_eq!(t.histogram[1].from_s, 60.0);
}

#[test]
fn breakdown_by_the_first_step_property_or_the_current_trait() {
    let fixture = "
        ana[plan=free]: view{os=iOS} > buy{os=Android}
        bob[plan=premium]: view{os=Android} > cart
        cy: view{os=iOS} > buy
        dee[plan=premium]: view > buy
        eve[plan=premium]: cart
    ";
    let o = FunnelOptions {
        breakdown: Some("property:os".parse().unwrap()),
        ..FunnelOptions::new(steps(&["view", "buy"]))
    };
    let f = run(fixture, &o);
    let b = f.breakdown.as_ref().unwrap();
    assert_eq!(b.by, "property:os");
    let groups: Vec<_> = b
        .groups
        .iter()
        .map(|g| (g.value.clone(), g.steps[0].cases, g.steps[1].cases))
        .collect();
    assert_eq!(
        groups,
        [
            (Some("iOS".into()), 2, 2),
            (Some("Android".into()), 1, 0),
            (None, 1, 1)
        ]
    );
    // ana's plan changes on a later event: the current value counts.
    let mut fx = Fixture::parse(fixture);
    fx.customers[0].events[1]
        .traits
        .insert("plan".into(), "premium".into());
    let parts = fx.partitions(2);
    let prepared = Prepared::new(&parts, &Stages::default(), &Query::new(BASE)).unwrap();
    let o = FunnelOptions {
        breakdown: Some(Breakdown::Trait("plan".into())),
        ..FunnelOptions::new(steps(&["view", "buy"]))
    };
    let f = funnel(&prepared, &Stages::default(), &o).unwrap();
    let groups: Vec<_> = f
        .breakdown
        .unwrap()
        .groups
        .iter()
        .map(|g| (g.value.clone(), g.steps[0].customers, g.steps[1].customers))
        .collect();
    assert_eq!(groups, [(Some("premium".into()), 3, 2), (None, 1, 1)]);
}

#[test]
fn dropped_customers_are_paged_by_id() {
    let fixture = "
        a: view
        b: view > cart
        c: view
        d: view > cart > buy
        e: view
        f: cart
    ";
    let page = |step, offset, limit| {
        let o = FunnelOptions {
            dropped: Some(DroppedPage {
                step,
                offset,
                limit,
            }),
            ..FunnelOptions::new(steps(&["view", "cart", "buy"]))
        };
        run(fixture, &o).dropped.unwrap()
    };
    let p = page(2, 0, 2);
    assert_eq!(
        (p.total, p.customers.clone()),
        (3, vec![CustomerId(1), CustomerId(3)])
    );
    assert_eq!(page(2, 2, 2).customers, [CustomerId(5)]);
    assert_eq!(page(2, 9, 2).customers, Vec::<CustomerId>::new());
    assert_eq!(page(3, 0, 10).customers, [CustomerId(2)]);
    // At step 1: in the selection but never entered.
    assert_eq!(page(1, 0, 10).customers, [CustomerId(6)]);
}

#[test]
fn cases_and_customers_differ_when_journeys_split() {
    let fixture = "
        ana: view@0 > buy@+1m > view@+2d > cart@+1m
        bob: view@0 > cart@+1m
    ";
    let mut q = Query::new(BASE);
    q.case = CaseSplit::Gap(HOUR);
    let f = run_with(fixture, &q, &FunnelOptions::new(steps(&["view", "buy"]))).unwrap();
    assert_eq!((f.cases, f.customers), (3, 2));
    assert_eq!(counts(&f), ["view 3/2", "buy 1/1"]);
    // ana converted in one case and not in the other: as a customer, she converted.
    assert_eq!(
        (f.steps[1].dropped_cases, f.steps[1].dropped_customers),
        (2, 1)
    );
    assert_eq!(f.case, "gap:1h");
}

#[test]
fn options_are_validated() {
    let err = |o: FunnelOptions| {
        run_with(SHOP, &Query::new(BASE), &o)
            .unwrap_err()
            .to_string()
    };
    assert_eq!(
        err(FunnelOptions::new(steps(&["view"]))),
        "invalid option step: a funnel needs 2 to 32 steps, got 1"
    );
    assert_eq!(
        err(FunnelOptions {
            window: Some(0),
            ..FunnelOptions::new(steps(&["view", "buy"]))
        }),
        "invalid option window: must be longer than zero"
    );
    assert_eq!(
        err(FunnelOptions {
            dropped: Some(DroppedPage {
                step: 3,
                offset: 0,
                limit: 10
            }),
            ..FunnelOptions::new(steps(&["view", "buy"]))
        }),
        "invalid option dropped-at: must be a step number from 1 to 2, got 3"
    );
    assert_eq!(
        err(FunnelOptions::new(steps(&["stage = 'x'", "buy"]))),
        "invalid option step: stage = 'x': error at column 1: 'stage' needs configured stages: add a [stages] table to omnitrail.toml"
    );
    assert!("sideways"
        .parse::<FunnelMode>()
        .unwrap_err()
        .to_string()
        .contains("any-order"));
    assert!("os"
        .parse::<Breakdown>()
        .unwrap_err()
        .to_string()
        .contains("property:NAME"));
}

#[test]
fn the_scan_covers_filter_steps_and_the_breakdown() {
    let mut q = Query::new(BASE);
    q.filter = Some(EventFilter::parse("device = 'mobile'").unwrap());
    let o = FunnelOptions {
        exclusions: steps(&["browser = 'x'"]),
        breakdown: Some(Breakdown::Trait("plan".into())),
        ..FunnelOptions::new(steps(&["os = 'iOS'", "buy"]))
    };
    let spec = funnel_scan(&q, &o);
    assert_eq!(spec.properties, ["browser", "device", "os"]);
    assert_eq!(spec.traits, ["plan"]);
}

#[test]
fn the_json_shape_is_stable() {
    let o = FunnelOptions {
        window: Some(7 * DAY),
        ..FunnelOptions::new(steps(&["view", "buy"]))
    };
    let f = run("ana: view@0 > buy@+90s\nbob: view", &o);
    let json = serde_json::to_value(&f).unwrap();
    let mut buckets = vec![];
    for (i, (label, from, to)) in [
        ("< 1m", 0.0, Some(60.0)),
        ("1m-5m", 60.0, Some(300.0)),
        ("5m-15m", 300.0, Some(900.0)),
        ("15m-1h", 900.0, Some(3600.0)),
        ("1h-6h", 3600.0, Some(21600.0)),
        ("6h-1d", 21600.0, Some(86400.0)),
        ("1d-3d", 86400.0, Some(259200.0)),
        ("3d-7d", 259200.0, Some(604800.0)),
        ("7d-30d", 604800.0, Some(2592000.0)),
        (">= 30d", 2592000.0, None),
    ]
    .into_iter()
    .enumerate()
    {
        buckets.push(serde_json::json!({
            "label": label, "from_s": from, "to_s": to, "cases": u64::from(i == 1)
        }));
    }
    assert_eq!(
        json,
        serde_json::json!({
            "step": "activity", "case": "customer", "mode": "ordered", "window_s": 604800.0,
            "exclusions": [], "cases": 2, "customers": 2,
            "steps": [
                {"index": 1, "label": "view", "cases": 2, "customers": 2,
                 "conversion_from_previous": 1.0, "conversion_from_first": 1.0,
                 "dropped_cases": 0, "dropped_customers": 0},
                {"index": 2, "label": "buy", "cases": 1, "customers": 1,
                 "conversion_from_previous": 0.5, "conversion_from_first": 0.5,
                 "dropped_cases": 1, "dropped_customers": 1}
            ],
            "time_to_convert": {"converted": 1, "median_s": 90.0, "p90_s": 90.0, "mean_s": 90.0,
                                "histogram": buckets},
            "breakdown": null, "dropped": null
        })
    );
}

// ---- brute-force reference ----

type Pred = fn(&FixtureEvent) -> bool;

/// Filter steps the random funnels draw from, each with the same test written in Rust.
const FILTERS: &[(&str, Pred)] = &[
    ("channel = 'phone'", |e| e.channel == "phone"),
    ("activity in ('cart', 'buy')", |e| {
        e.activity == "cart" || e.activity == "buy"
    }),
    ("os = 'iOS'", |e| {
        e.properties.get("os") == Some(&FixtureValue::Text("iOS".into()))
    }),
    ("channel != 'web' and activity = 'view'", |e| {
        e.channel != "web" && e.activity == "view"
    }),
];
const ACTIVITIES: &[&str] = &["view", "cart", "buy", "support", "home"];
const CHANNELS: &[&str] = &["web", "phone", "email"];

#[derive(Clone, Debug)]
enum RefStep {
    Value(&'static str),
    Filter(usize),
}

impl RefStep {
    fn matches(&self, e: &FixtureEvent) -> bool {
        match self {
            RefStep::Value(v) => e.activity == *v,
            RefStep::Filter(i) => (FILTERS[*i].1)(e),
        }
    }

    fn engine(&self) -> FunnelStep {
        match self {
            RefStep::Value(v) => FunnelStep::Value(v.to_string()),
            RefStep::Filter(i) => FunnelStep::Filter(EventFilter::parse(FILTERS[*i].0).unwrap()),
        }
    }
}

#[derive(Clone, Debug)]
struct Spec {
    steps: Vec<RefStep>,
    exclusions: Vec<RefStep>,
    mode: FunnelMode,
    window: Option<i64>,
    breakdown: Option<Breakdown>,
    dropped: Option<DroppedPage>,
    gap: Option<i64>,
    /// Drop email events before everything (the query's event filter).
    no_email: bool,
}

/// (reach, first, last) of the best attempt, by trying every start and every way to match.
fn ref_best(events: &[&FixtureEvent], spec: &Spec) -> Option<(usize, usize, usize)> {
    let n = spec.steps.len();
    let is_step = |i: usize, k: usize| spec.steps[k].matches(events[i]);
    let excluded = |i: usize| {
        (0..n).all(|k| !is_step(i, k)) && spec.exclusions.iter().any(|x| x.matches(events[i]))
    };
    let mut best: Option<(usize, usize, usize)> = None;
    for s in 0..events.len() {
        let starts = match spec.mode {
            FunnelMode::AnyOrder => (0..n).any(|k| is_step(s, k)),
            _ => is_step(s, 0),
        };
        if !starts {
            continue;
        }
        let deadline = spec.window.map_or(i64::MAX, |w| events[s].ts + w);
        let end = (s..events.len())
            .take_while(|&i| events[i].ts <= deadline)
            .last()
            .map_or(s, |i| i + 1);
        // (reach, the earliest event that can complete that reach)
        let (reach, last) = match spec.mode {
            FunnelMode::Strict => {
                let mut r = 1;
                while r < n && s + r < end && is_step(s + r, r) {
                    r += 1;
                }
                (r, s + r - 1)
            }
            FunnelMode::Ordered => {
                // Every chain s = i1 < i2 < … with event i_k matching step k.
                fn chains(
                    k: usize,
                    prev: usize,
                    end: usize,
                    n: usize,
                    is_step: &dyn Fn(usize, usize) -> bool,
                    out: &mut Vec<(usize, usize)>,
                ) {
                    out.push((k, prev));
                    if k == n {
                        return;
                    }
                    for i in prev + 1..end {
                        if is_step(i, k) {
                            chains(k + 1, i, end, n, is_step, out);
                        }
                    }
                }
                let mut all = Vec::new();
                chains(1, s, end, n, &is_step, &mut all);
                let r = all.iter().map(|c| c.0).max().unwrap();
                (
                    r,
                    all.iter().filter(|c| c.0 == r).map(|c| c.1).min().unwrap(),
                )
            }
            FunnelMode::AnyOrder => {
                // The most steps that distinct events in s..=e can cover, by trying every
                // assignment.
                fn cover(
                    k: usize,
                    n: usize,
                    used: &mut Vec<usize>,
                    s: usize,
                    e: usize,
                    is_step: &dyn Fn(usize, usize) -> bool,
                ) -> usize {
                    if k == n {
                        return 0;
                    }
                    let mut best = cover(k + 1, n, used, s, e, is_step);
                    for i in s..=e {
                        if !used.contains(&i) && is_step(i, k) {
                            used.push(i);
                            best = best.max(1 + cover(k + 1, n, used, s, e, is_step));
                            used.pop();
                        }
                    }
                    best
                }
                let sizes: Vec<usize> = (s..end)
                    .map(|e| cover(0, n, &mut Vec::new(), s, e, &is_step))
                    .collect();
                let r = *sizes.last().unwrap();
                (r, s + sizes.iter().position(|&x| x == r).unwrap())
            }
        };
        if (s + 1..last).any(excluded) {
            continue;
        }
        if best.is_none_or(|b| reach > b.0) {
            best = Some((reach, s, last));
        }
    }
    best
}

fn ref_quantile(sorted: &[i64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let pos = q * (sorted.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let frac = pos - lo as f64;
    let lo_v = sorted[lo] as f64;
    if frac == 0.0 || lo + 1 >= sorted.len() {
        return Some(lo_v / 1e6);
    }
    Some((lo_v + (sorted[lo + 1] as f64 - lo_v) * frac) / 1e6)
}

fn ref_time(mut d: Vec<i64>) -> TimeToConvert {
    d.sort();
    let bounds = [60, 300, 900, 3600, 21600, 86400, 259200, 604800, 2592000];
    let labels = [
        "< 1m", "1m-5m", "5m-15m", "15m-1h", "1h-6h", "6h-1d", "1d-3d", "3d-7d", "7d-30d", ">= 30d",
    ];
    let histogram = (0..10)
        .map(|b| {
            let from = if b == 0 { 0 } else { bounds[b - 1] };
            let to = bounds.get(b).copied();
            HistogramBucket {
                label: labels[b].to_string(),
                from_s: from as f64,
                to_s: to.map(|t| t as f64),
                cases: d
                    .iter()
                    .filter(|&&x| x >= from * 1_000_000 && to.is_none_or(|t| x < t * 1_000_000))
                    .count() as u64,
            }
        })
        .collect();
    let mean = (!d.is_empty())
        .then(|| d.iter().map(|&x| i128::from(x)).sum::<i128>() as f64 / d.len() as f64 / 1e6);
    TimeToConvert {
        converted: d.len() as u64,
        median_s: ref_quantile(&d, 0.5),
        p90_s: ref_quantile(&d, 0.9),
        mean_s: mean,
        histogram,
    }
}

/// Step rows from per-case and per-customer reaches.
fn ref_rows(
    labels: &[String],
    cases: &[usize],
    customers: &[usize],
    all_cases: u64,
    all_customers: u64,
) -> Vec<FunnelStepResult> {
    let n = labels.len();
    let reaching = |v: &[usize], k: usize| v.iter().filter(|&&r| r >= k).count() as u64;
    (1..=n)
        .map(|k| {
            let c = reaching(cases, k);
            let prev = if k == 1 {
                all_cases
            } else {
                reaching(cases, k - 1)
            };
            let first = reaching(cases, 1);
            let prev_customers = if k == 1 {
                all_customers
            } else {
                reaching(customers, k - 1)
            };
            FunnelStepResult {
                index: k,
                label: labels[k - 1].clone(),
                cases: c,
                customers: reaching(customers, k),
                conversion_from_previous: (prev > 0).then(|| c as f64 / prev as f64),
                conversion_from_first: (first > 0).then(|| c as f64 / first as f64),
                dropped_cases: prev - c,
                dropped_customers: prev_customers - reaching(customers, k),
            }
        })
        .collect()
}

fn reference(fx: &Fixture, spec: &Spec) -> Funnel {
    let n = spec.steps.len();
    let labels: Vec<String> = spec.steps.iter().map(|s| s.engine().label()).collect();
    let mut case_reach = Vec::new();
    let mut customer_reach = Vec::new();
    let mut durations = Vec::new();
    // group value → (per case reach, per customer → max reach, durations)
    type Group = (Vec<usize>, BTreeMap<CustomerId, usize>, Vec<i64>);
    let mut groups: BTreeMap<Option<String>, Group> = BTreeMap::new();
    let mut dropped = Vec::new();
    for c in &fx.customers {
        let kept: Vec<&FixtureEvent> = c
            .events
            .iter()
            .filter(|e| !(spec.no_email && e.channel == "email"))
            .collect();
        let mut cases: Vec<Vec<&FixtureEvent>> = Vec::new();
        for e in kept {
            let cut = match (spec.gap, cases.last().and_then(|c| c.last())) {
                (Some(g), Some(prev)) => e.ts - prev.ts > g,
                (_, None) => true,
                _ => false,
            };
            if cut {
                cases.push(Vec::new());
            }
            cases.last_mut().unwrap().push(e);
        }
        if cases.is_empty() {
            continue;
        }
        let mut max_reach = 0;
        for case in &cases {
            let best = ref_best(case, spec);
            let reach = best.map_or(0, |b| b.0);
            case_reach.push(reach);
            max_reach = max_reach.max(reach);
            let Some((_, first, last)) = best else {
                continue;
            };
            let duration = (reach == n).then(|| case[last].ts - case[first].ts);
            durations.extend(duration);
            let value = match &spec.breakdown {
                None => continue,
                Some(Breakdown::Property(p)) => match case[first].properties.get(p) {
                    Some(FixtureValue::Text(t)) => Some(t.clone()),
                    Some(FixtureValue::Num(x)) => Some(format!("{x}")),
                    None => None,
                },
                Some(Breakdown::Trait(t)) => {
                    c.events.iter().rev().find_map(|e| e.traits.get(t).cloned())
                }
            };
            let g = groups.entry(value).or_default();
            g.0.push(reach);
            let m = g.1.entry(c.id).or_default();
            *m = (*m).max(reach);
            g.2.extend(duration);
        }
        customer_reach.push(max_reach);
        if spec.dropped.is_some_and(|d| max_reach + 1 == d.step) {
            dropped.push(c.id);
        }
    }
    let breakdown = spec.breakdown.as_ref().map(|by| {
        let mut list: Vec<FunnelGroup> = groups
            .into_iter()
            .map(|(value, (cases, customers, d))| {
                let customers: Vec<usize> = customers.into_values().collect();
                let (nc, ncu) = (cases.len() as u64, customers.len() as u64);
                FunnelGroup {
                    value,
                    steps: ref_rows(&labels, &cases, &customers, nc, ncu),
                    time_to_convert: ref_time(d),
                }
            })
            .collect();
        list.sort_by(|a, b| {
            b.steps[0]
                .cases
                .cmp(&a.steps[0].cases)
                .then(a.value.is_none().cmp(&b.value.is_none()))
                .then(a.value.cmp(&b.value))
        });
        FunnelBreakdown {
            by: by.to_string(),
            groups: list,
        }
    });
    Funnel {
        step: "activity".into(),
        case: spec
            .gap
            .map_or(CaseSplit::Customer, CaseSplit::Gap)
            .to_string(),
        mode: spec.mode,
        window_s: spec.window.map(|w| w as f64 / 1e6),
        exclusions: spec.exclusions.iter().map(|s| s.engine().label()).collect(),
        cases: case_reach.len() as u64,
        customers: customer_reach.len() as u64,
        steps: ref_rows(
            &labels,
            &case_reach,
            &customer_reach,
            case_reach.len() as u64,
            customer_reach.len() as u64,
        ),
        time_to_convert: ref_time(durations),
        breakdown,
        dropped: spec.dropped.map(|d| DroppedCustomers {
            step: d.step,
            total: dropped.len() as u64,
            offset: d.offset,
            limit: d.limit,
            customers: dropped
                .iter()
                .skip(d.offset)
                .take(d.limit)
                .copied()
                .collect(),
        }),
    }
}

fn journeys() -> impl Strategy<Value = Fixture> {
    let event = (
        0..ACTIVITIES.len(),
        0..CHANNELS.len(),
        // Exact window lengths make attempts end right at their deadline.
        prop_oneof![Just(0i64), Just(HOUR), Just(DAY), 1..3 * HOUR, 1..2 * DAY],
        proptest::option::of(proptest::sample::select(&["iOS", "Android"][..])),
        proptest::option::of(proptest::sample::select(&["premium", "free"][..])),
    );
    proptest::collection::vec(proptest::collection::vec(event, 1..9), 1..12).prop_map(|customers| {
        Fixture {
            customers: customers
                .into_iter()
                .enumerate()
                .map(|(i, events)| {
                    let mut ts = BASE;
                    FixtureCustomer {
                        name: format!("c{i}"),
                        id: CustomerId(i as u64 + 1),
                        events: events
                            .into_iter()
                            .map(|(a, c, gap, os, plan)| {
                                ts += gap;
                                FixtureEvent {
                                    ts,
                                    channel: CHANNELS[c].into(),
                                    activity: ACTIVITIES[a].into(),
                                    properties: os
                                        .map(|o| ("os".to_string(), FixtureValue::Text(o.into())))
                                        .into_iter()
                                        .collect(),
                                    traits: plan
                                        .map(|p| ("plan".to_string(), p.to_string()))
                                        .into_iter()
                                        .collect(),
                                }
                            })
                            .collect(),
                    }
                })
                .collect(),
        }
    })
}

fn ref_step() -> impl Strategy<Value = RefStep> {
    prop_oneof![
        3 => proptest::sample::select(ACTIVITIES).prop_map(RefStep::Value),
        1 => (0..FILTERS.len()).prop_map(RefStep::Filter),
    ]
}

fn spec() -> impl Strategy<Value = Spec> {
    (
        proptest::collection::vec(ref_step(), 2..5),
        proptest::collection::vec(ref_step(), 0..2),
        proptest::sample::select(
            &[
                FunnelMode::Strict,
                FunnelMode::Ordered,
                FunnelMode::AnyOrder,
            ][..],
        ),
        proptest::option::of(proptest::sample::select(&[HOUR, DAY][..])),
        proptest::sample::select(&[0, 1, 2][..]),
        proptest::option::of((1usize..5, 0usize..3, 1usize..4)),
        proptest::option::of(Just(12 * HOUR)),
        any::<bool>(),
    )
        .prop_map(
            |(steps, exclusions, mode, window, by, dropped, gap, no_email)| {
                let n = steps.len();
                Spec {
                    steps,
                    exclusions,
                    mode,
                    window,
                    breakdown: match by {
                        1 => Some(Breakdown::Property("os".into())),
                        2 => Some(Breakdown::Trait("plan".into())),
                        _ => None,
                    },
                    dropped: dropped.map(|(step, offset, limit)| DroppedPage {
                        step: (step - 1) % n + 1,
                        offset,
                        limit,
                    }),
                    gap,
                    no_email,
                }
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn engine_funnels_equal_the_reference(
        fx in journeys(),
        spec in spec(),
        parts in 1usize..5,
        seed in any::<u64>(),
    ) {
        let assign = |i: usize| ((seed >> (i % 60)) as usize ^ i) % parts;
        let partitions = fx.partitions_by(parts, assign);
        let mut q = Query::new(BASE);
        if let Some(g) = spec.gap {
            q.case = CaseSplit::Gap(g);
        }
        if spec.no_email {
            q.filter = Some(EventFilter::parse("channel != 'email'").unwrap());
        }
        let options = FunnelOptions {
            steps: spec.steps.iter().map(RefStep::engine).collect(),
            mode: spec.mode,
            exclusions: spec.exclusions.iter().map(RefStep::engine).collect(),
            window: spec.window,
            breakdown: spec.breakdown.clone(),
            dropped: spec.dropped,
        };
        let prepared = Prepared::new(&partitions, &Stages::default(), &q).unwrap();
        let got = funnel(&prepared, &Stages::default(), &options).unwrap();
        prop_assert_eq!(got, reference(&fx, &spec));
    }
}
