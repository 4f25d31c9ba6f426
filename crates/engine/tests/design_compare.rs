//! Compare: map differences against edges counted by brute force on each side, p-values
//! against a numerically integrated normal distribution, funnel differences against the
//! funnels' own numbers, over random journeys and partitionings.

use omnitrail_engine::compare::{
    compare, compare_maps, two_proportion_z, Change, CompareOptions, EdgeStatus, SideResults,
};
use omnitrail_engine::funnel::{funnel, FunnelOptions, FunnelStep};
use omnitrail_engine::testing::Fixture;
use omnitrail_engine::{process_map, MapOptions, Prepared, ProcessMap, Query, Stages};
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet};

/// Two-sided p-value of z by Simpson's rule over the normal density, independent of erfc.
fn p_by_integration(z: f64) -> f64 {
    let z = z.abs();
    if z == 0.0 {
        return 1.0;
    }
    let n = 20_000;
    let h = z / n as f64;
    let pdf = |x: f64| (-x * x / 2.0).exp() / (2.0 * std::f64::consts::PI).sqrt();
    let mut s = pdf(0.0) + pdf(z);
    for i in 1..n {
        s += pdf(i as f64 * h) * if i % 2 == 1 { 4.0 } else { 2.0 };
    }
    let central = s * h / 3.0;
    (1.0 - 2.0 * central).max(0.0)
}

#[test]
fn p_values_match_the_integrated_normal() {
    for (x1, n1, x2, n2) in [
        (420, 1000, 350, 1000),
        (5, 50, 9, 40),
        (30, 31, 1, 2),
        (0, 9, 3, 9),
    ] {
        let t = two_proportion_z(x1, n1, x2, n2).unwrap();
        let want = p_by_integration(t.z);
        assert!(
            (t.p_value - want).abs() < 1e-6,
            "{x1}/{n1} vs {x2}/{n2}: {t:?} vs {want}"
        );
    }
}

/// (from, to) → (transitions, distinct customers).
type Edges = BTreeMap<(String, String), (u64, u64)>;

/// Every edge, and the customers with any event.
fn brute_edges(f: &Fixture) -> (Edges, u64) {
    let mut edges: BTreeMap<(String, String), (u64, BTreeSet<u64>)> = BTreeMap::new();
    let mut customers = 0;
    for c in &f.customers {
        if c.events.is_empty() {
            continue;
        }
        customers += 1;
        for w in c.events.windows(2) {
            let e = edges
                .entry((w[0].activity.clone(), w[1].activity.clone()))
                .or_default();
            e.0 += 1;
            e.1.insert(c.id.0);
        }
    }
    (
        edges
            .into_iter()
            .map(|(k, (n, who))| (k, (n, who.len() as u64)))
            .collect(),
        customers,
    )
}

fn map_of(f: &Fixture, parts: usize) -> ProcessMap {
    let parts = f.partitions(parts);
    process_map(
        &Prepared::new(&parts, &Stages::default(), &Query::new(0)).unwrap(),
        &MapOptions::default(),
    )
    .unwrap()
}

fn arb_fixture() -> impl Strategy<Value = String> {
    proptest::collection::vec(proptest::collection::vec(0usize..4, 0..7), 1..25).prop_map(
        |customers| {
            let acts = ["a", "b", "c", "d"];
            customers
                .iter()
                .enumerate()
                .map(|(i, evs)| {
                    let body: Vec<&str> = evs.iter().map(|&a| acts[a]).collect();
                    format!("c{i}: {}\n", body.join(" > "))
                })
                .collect()
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn map_differences_equal_brute_force(
        a in arb_fixture(),
        b in arb_fixture(),
        pa in 1usize..4,
        pb in 1usize..4,
    ) {
        let (fa, fb) = (Fixture::parse(&a), Fixture::parse(&b));
        let got = compare_maps(&map_of(&fa, pa), &map_of(&fb, pb), 0.05);
        let (ea, na) = brute_edges(&fa);
        let (eb, nb) = brute_edges(&fb);
        let keys: BTreeSet<&(String, String)> = ea.keys().chain(eb.keys()).collect();
        prop_assert_eq!(got.edges.len(), keys.len());
        for e in &got.edges {
            let key = (e.from.clone(), e.to.clone());
            let (ca, ua) = ea.get(&key).copied().unwrap_or((0, 0));
            let (cb, ub) = eb.get(&key).copied().unwrap_or((0, 0));
            prop_assert_eq!((e.count_a, e.customers_a, e.count_b, e.customers_b), (ca, ua, cb, ub));
            let status = match (ca > 0, cb > 0) {
                (true, true) => EdgeStatus::Both,
                (false, true) => EdgeStatus::Gained,
                _ => EdgeStatus::Lost,
            };
            prop_assert_eq!(e.status, status);
            prop_assert_eq!(e.test, two_proportion_z(ua, na, ub, nb));
            if let Some(t) = e.test {
                let want = p_by_integration(t.z);
                prop_assert!((t.p_value - want).abs() < 1e-6);
                let expected = if t.p_value >= 0.05 {
                    Change::NoSignificantChange
                } else if t.z > 0.0 {
                    Change::SignificantRise
                } else {
                    Change::SignificantDrop
                };
                prop_assert_eq!(e.change, expected);
            }
        }
        prop_assert_eq!(got.gained, got.edges.iter().filter(|e| e.status == EdgeStatus::Gained).count() as u64);
        prop_assert_eq!(got.lost, got.edges.iter().filter(|e| e.status == EdgeStatus::Lost).count() as u64);
        // Sorted by p-value, untested last; the same for any partitioning.
        let ps: Vec<f64> = got.edges.iter().map(|e| e.test.map_or(f64::INFINITY, |t| t.p_value)).collect();
        prop_assert!(ps.windows(2).all(|w| w[0] <= w[1]));
        let again = compare_maps(&map_of(&fa, 1), &map_of(&fb, 1), 0.05);
        prop_assert_eq!(serde_json::to_string(&again).unwrap(), serde_json::to_string(&got).unwrap());
    }
}

#[test]
fn funnel_differences_use_each_sides_step_counts() {
    let a = Fixture::parse("x: a > b > c\ny: a > b\nz: a\nw: a > c\n");
    let b = Fixture::parse("x: a > b > c\ny: a > b > c\nz: a > b\n");
    let steps: Vec<FunnelStep> = ["a", "b", "c"]
        .iter()
        .map(|s| FunnelStep::parse(s).unwrap())
        .collect();
    let options = FunnelOptions::new(steps);
    let side = |f: &Fixture| {
        let parts = f.partitions(2);
        let prepared = Prepared::new(&parts, &Stages::default(), &Query::new(0)).unwrap();
        (
            process_map(&prepared, &MapOptions::default()).unwrap(),
            funnel(&prepared, &Stages::default(), &options).unwrap(),
        )
    };
    let (ma, fa) = side(&a);
    let (mb, fb) = side(&b);
    let c = compare(
        &SideResults {
            map: &ma,
            funnel: Some(&fa),
            friction: None,
        },
        &SideResults {
            map: &mb,
            funnel: Some(&fb),
            friction: None,
        },
        &CompareOptions::default(),
    )
    .unwrap();
    let f = c.funnel.unwrap();
    let step = |i: usize| f.iter().find(|d| d.index == i).unwrap();
    // Step 2 (b): 2 of 4 vs 3 of 3; step 3 (c): 1 of 2 vs 2 of 3.
    assert_eq!((step(2).cases_a, step(2).cases_b), (2, 3));
    assert_eq!(step(2).conversion_a, Some(0.5));
    assert_eq!(step(2).conversion_b, Some(1.0));
    assert_eq!(step(2).test, two_proportion_z(2, 4, 3, 3));
    assert_eq!(step(3).test, two_proportion_z(1, 2, 2, 3));
    assert!(step(2)
        .verdict
        .starts_with("conversion to b rose from 50.0% to 100.0% (p = "));
    assert_eq!(c.a.customers, 4);
    assert!(c.friction.is_none());
    let bad = CompareOptions {
        alpha: 1.5,
        ..CompareOptions::default()
    };
    let sides = SideResults {
        map: &ma,
        funnel: None,
        friction: None,
    };
    assert!(compare(&sides, &sides, &bad).is_err());
}
