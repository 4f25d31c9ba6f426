//! Paths: named journeys written in the fixture DSL, and a brute-force reference (every path
//! listed explicitly, then counted) compared with the engine on random journeys spread over
//! random partitions.

use omnitrail_engine::paths::{
    paths, AnchorOccurrence, PathDirection, PathLink, PathNode, PathOptions, PathPosition, Paths,
};
use omnitrail_engine::testing::{Fixture, FixtureCustomer, FixtureEvent, BASE};
use omnitrail_engine::{CaseSplit, EngineError, Prepared, Query, Stages, StepDimension};
use omnitrail_model::CustomerId;
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet};

const MINUTE: i64 = 60_000_000;

fn run(fixture: &str, query: &Query, options: &PathOptions) -> Result<Paths, EngineError> {
    let parts = Fixture::parse(fixture).partitions(3);
    let prepared = Prepared::new(&parts, &Stages::default(), query)?;
    paths(&prepared, options)
}

fn options(anchor: &str, steps: usize, top: usize) -> PathOptions {
    PathOptions {
        steps,
        top,
        ..PathOptions::new(anchor)
    }
}

/// One line per position and per link group, for readable expectations.
fn render(p: &Paths) -> Vec<String> {
    let node = |n: &PathNode| {
        let name = n
            .step
            .clone()
            .unwrap_or_else(|| format!("other({})", n.grouped_steps));
        let ended = if n.ended > 0 {
            format!(" end {}", n.ended)
        } else {
            String::new()
        };
        format!("{name} {}/{}{ended}", n.count, n.customers)
    };
    let mut out = vec![format!("paths {} customers {}", p.paths, p.customers)];
    for pos in &p.positions {
        let nodes: Vec<String> = pos.nodes.iter().map(node).collect();
        out.push(format!(
            "{} [{} ended {}] {}",
            pos.position,
            pos.paths,
            pos.ended,
            nodes.join(" | ")
        ));
    }
    let mut by_pos: BTreeMap<i64, Vec<String>> = BTreeMap::new();
    for l in &p.links {
        let name = |s: &Option<String>| s.clone().unwrap_or_else(|| "other".into());
        let outer = l.from_position.abs().max(l.to_position.abs());
        by_pos.entry(outer).or_default().push(format!(
            "{}>{} {}",
            name(&l.from),
            name(&l.to),
            l.count
        ));
    }
    for (pos, links) in by_pos {
        out.push(format!("links {pos}: {}", links.join(", ")));
    }
    out
}

const SHOP: &str = "
ana: home > search > product > cart > buy
bob: home > product > home > product > cart
cy: search > product > product > exit
dee: home > exit
";

#[test]
fn forward_from_the_first_occurrence() {
    let p = run(SHOP, &Query::new(BASE), &options("product", 2, 5)).unwrap();
    assert_eq!(
        render(&p),
        [
            "paths 3 customers 3",
            "0 [3 ended 0] product 3/3",
            "1 [3 ended 0] cart 1/1 | home 1/1 | product 1/1",
            "2 [3 ended 0] buy 1/1 end 1 | exit 1/1 end 1 | product 1/1",
            "links 1: product>cart 1, product>home 1, product>product 1",
            "links 2: cart>buy 1, home>product 1, product>exit 1",
        ]
    );
    assert_eq!(p.step, "activity");
    assert_eq!(p.case, "customer");
}

#[test]
fn every_occurrence_keeps_loops_and_counts_drop_off() {
    let o = PathOptions {
        occurrence: AnchorOccurrence::Every,
        ..options("product", 3, 5)
    };
    let p = run(SHOP, &Query::new(BASE), &o).unwrap();
    // bob's and cy's second products start paths of their own; paths that run out of
    // events end, and the positions after them count fewer paths.
    assert_eq!(
        render(&p),
        [
            "paths 5 customers 3",
            "0 [5 ended 0] product 5/3",
            "1 [5 ended 0] cart 2/2 end 1 | exit 1/1 end 1 | home 1/1 | product 1/1",
            "2 [3 ended 2] buy 1/1 end 1 | exit 1/1 end 1 | product 1/1",
            "3 [1 ended 2] cart 1/1 end 1",
            "links 1: product>cart 2, product>exit 1, product>home 1, product>product 1",
            "links 2: cart>buy 1, home>product 1, product>exit 1",
            "links 3: product>cart 1",
        ]
    );
}

#[test]
fn backward_to_the_anchor() {
    let o = PathOptions {
        direction: PathDirection::Backward,
        ..options("cart", 3, 5)
    };
    let p = run(SHOP, &Query::new(BASE), &o).unwrap();
    assert_eq!(
        render(&p),
        [
            "paths 2 customers 2",
            "0 [2 ended 0] cart 2/2",
            "-1 [2 ended 0] product 2/2",
            "-2 [2 ended 0] home 1/1 | search 1/1",
            "-3 [2 ended 0] home 1/1 end 1 | product 1/1",
            "links 1: product>cart 2",
            "links 2: home>product 1, search>product 1",
            "links 3: home>search 1, product>home 1",
        ]
    );
}

#[test]
fn top_k_groups_the_rest_into_other_with_exact_customers() {
    // At position 1: b ×3, then c and d ×2 (c first by name), e and f once. With top 2,
    // "other" holds d, e and f: 4 paths (two each from ana and fay) from 2 customers.
    let fixture = "
        ana: a > d > a > d
        bob: a > b
        cy: a > b
        dee: a > b > a > c
        eve: a > c
        fay: a > e > a > f
    ";
    let o = PathOptions {
        occurrence: AnchorOccurrence::Every,
        ..options("a", 1, 2)
    };
    let p = run(fixture, &Query::new(BASE), &o).unwrap();
    assert_eq!(
        render(&p),
        [
            "paths 9 customers 6",
            "0 [9 ended 0] a 9/6",
            "1 [9 ended 0] b 3/3 end 2 | c 2/2 end 2 | other(3) 4/2 end 2",
            "links 1: a>other 4, a>b 3, a>c 2",
        ]
    );
    // Ties in count order by name; "other" is last among nodes and links of equal count.
    let node = &p.positions[1].nodes[2];
    assert_eq!((node.step.as_deref(), node.grouped_steps), (None, 3));
}

#[test]
fn no_session_cut_unless_the_case_split_asks() {
    let fixture = "ana: view@0 > cart@+5m > view@+2d > buy@+5m";
    let whole = run(fixture, &Query::new(BASE), &options("cart", 2, 5)).unwrap();
    assert_eq!(whole.positions[2].nodes[0].step.as_deref(), Some("buy"));
    let mut q = Query::new(BASE);
    q.case = CaseSplit::Gap(30 * MINUTE);
    let sessions = run(fixture, &q, &options("cart", 2, 5)).unwrap();
    assert_eq!(
        render(&sessions),
        [
            "paths 1 customers 1",
            "0 [1 ended 0] cart 1/1 end 1",
            "1 [0 ended 1] ",
            "2 [0 ended 0] ",
        ]
    );
}

#[test]
fn steps_follow_the_query_dimension_and_filter() {
    let fixture = "
        ana: web:view > phone:call > web:buy
        bob: web:view > email:open > phone:call
    ";
    let mut q = Query::new(BASE);
    q.step = StepDimension::Channel;
    let p = run(fixture, &q, &options("web", 1, 5)).unwrap();
    assert_eq!(render(&p)[2], "1 [2 ended 0] email 1/1 | phone 1/1");
    q.filter = Some(omnitrail_engine::expr::EventFilter::parse("channel != 'email'").unwrap());
    let p = run(fixture, &q, &options("web", 1, 5)).unwrap();
    assert_eq!(render(&p)[2], "1 [2 ended 0] phone 2/2 end 1");
}

#[test]
fn an_anchor_that_never_occurs_gives_no_paths() {
    let p = run(SHOP, &Query::new(BASE), &options("teleport", 3, 5)).unwrap();
    assert_eq!(p.paths, 0);
    assert_eq!(p.positions.len(), 4);
    assert!(p.positions.iter().all(|x| x.nodes.is_empty()));
    assert!(p.links.is_empty());
}

#[test]
fn options_are_validated() {
    let e = run(SHOP, &Query::new(BASE), &options("product", 0, 5)).unwrap_err();
    assert_eq!(
        e.to_string(),
        "invalid option steps: must be between 1 and 100, got 0"
    );
    let e = run(SHOP, &Query::new(BASE), &options("product", 3, 0)).unwrap_err();
    assert_eq!(
        e.to_string(),
        "invalid option top: must be between 1 and 1000, got 0"
    );
}

#[test]
fn the_json_shape_is_stable() {
    let p = run(SHOP, &Query::new(BASE), &options("cart", 1, 1)).unwrap();
    let json = serde_json::to_value(&p).unwrap();
    assert_eq!(
        json,
        serde_json::json!({
            "step": "activity", "case": "customer", "anchor": "cart",
            "direction": "forward", "occurrence": "first", "steps": 1, "top": 1,
            "paths": 2, "customers": 2,
            "positions": [
                {"position": 0, "paths": 2, "ended": 0, "nodes": [
                    {"step": "cart", "grouped_steps": 1, "count": 2, "customers": 2, "ended": 1}]},
                {"position": 1, "paths": 1, "ended": 1, "nodes": [
                    {"step": "buy", "grouped_steps": 1, "count": 1, "customers": 1, "ended": 1}]}
            ],
            "links": [{"from_position": 0, "from": "cart", "to_position": 1, "to": "buy", "count": 1}]
        })
    );
}

// ---- brute-force reference ----

/// Cases as plain step lists: whole journeys, or cut where the gap exceeds `gap`.
fn ref_cases(fx: &Fixture, gap: Option<i64>) -> Vec<(CustomerId, Vec<String>)> {
    let mut out = Vec::new();
    for c in &fx.customers {
        let mut case: Vec<String> = Vec::new();
        let mut prev: Option<i64> = None;
        for e in &c.events {
            if let (Some(g), Some(p)) = (gap, prev) {
                if e.ts - p > g {
                    out.push((c.id, std::mem::take(&mut case)));
                }
            }
            case.push(e.activity.clone());
            prev = Some(e.ts);
        }
        out.push((c.id, case));
    }
    out
}

fn reference(cases: &[(CustomerId, Vec<String>)], o: &PathOptions) -> Paths {
    let n = o.steps;
    // Every path as (customer, steps at positions 0..; shorter when the case ran out, plus
    // whether the case ended right after the last listed step).
    let mut all: Vec<(CustomerId, Vec<String>, bool)> = Vec::new();
    for (customer, steps) in cases {
        let anchors: Vec<usize> = (0..steps.len()).filter(|&i| steps[i] == o.anchor).collect();
        let anchors = match o.occurrence {
            AnchorOccurrence::First => anchors.into_iter().take(1).collect(),
            AnchorOccurrence::Every => anchors,
        };
        for a in anchors {
            let seq: Vec<isize> = match o.direction {
                PathDirection::Forward => (0..=n as isize + 1).map(|k| a as isize + k).collect(),
                PathDirection::Backward => (0..=n as isize + 1).map(|k| a as isize - k).collect(),
            };
            let inside = |i: isize| i >= 0 && (i as usize) < steps.len();
            let listed: Vec<String> = seq[..=n]
                .iter()
                .take_while(|&&i| inside(i))
                .map(|&i| steps[i as usize].clone())
                .collect();
            let next = seq[listed.len()];
            all.push((*customer, listed, !inside(next)));
        }
    }
    // Top steps per position: count descending, then name.
    let mut groupings: Vec<(Vec<String>, usize)> = Vec::new();
    for k in 0..=n {
        let mut counts: BTreeMap<String, u64> = BTreeMap::new();
        for (_, steps, _) in &all {
            if let Some(s) = steps.get(k) {
                *counts.entry(s.clone()).or_default() += 1;
            }
        }
        let mut ranked: Vec<(String, u64)> = counts.into_iter().collect();
        ranked.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        let keep = ranked.len().min(o.top);
        groupings.push((
            ranked[..keep].iter().map(|r| r.0.clone()).collect(),
            ranked.len() - keep,
        ));
    }
    let label = |k: usize, s: &str| -> Option<String> {
        groupings[k].0.iter().any(|x| x == s).then(|| s.to_string())
    };
    let sign = if o.direction == PathDirection::Forward {
        1
    } else {
        -1
    };
    let mut positions = Vec::new();
    for (k, grouping) in groupings.iter().enumerate() {
        let mut nodes: BTreeMap<Option<String>, (u64, BTreeSet<CustomerId>, u64)> = BTreeMap::new();
        for (c, steps, ended) in &all {
            if let Some(s) = steps.get(k) {
                let node = nodes.entry(label(k, s)).or_default();
                node.0 += 1;
                node.1.insert(*c);
                if k + 1 == steps.len() && *ended {
                    node.2 += 1;
                }
            }
        }
        let order = |l: &Option<String>| match l {
            Some(s) => grouping.0.iter().position(|x| x == s).expect("kept"),
            None => usize::MAX,
        };
        let mut listed: Vec<PathNode> = nodes
            .into_iter()
            .map(|(step, (count, cs, ended))| PathNode {
                grouped_steps: if step.is_some() { 1 } else { grouping.1 as u64 },
                step,
                count,
                customers: cs.len() as u64,
                ended,
            })
            .collect();
        listed.sort_by_key(|x| order(&x.step));
        let paths = all.iter().filter(|p| p.1.len() > k).count() as u64;
        let before = if k == 0 {
            paths
        } else {
            all.iter().filter(|p| p.1.len() > k - 1).count() as u64
        };
        positions.push(PathPosition {
            position: sign * k as i64,
            paths,
            ended: before - paths,
            nodes: listed,
        });
    }
    let mut links = Vec::new();
    for k in 1..=n {
        let mut counts: BTreeMap<(Option<String>, Option<String>), u64> = BTreeMap::new();
        for (_, steps, _) in &all {
            if steps.len() > k {
                *counts
                    .entry((label(k - 1, &steps[k - 1]), label(k, &steps[k])))
                    .or_default() += 1;
            }
        }
        let mut level: Vec<PathLink> = counts
            .into_iter()
            .map(|((inner, outer), count)| {
                let (inner_pos, outer_pos) = (sign * (k as i64 - 1), sign * k as i64);
                if o.direction == PathDirection::Forward {
                    PathLink {
                        from_position: inner_pos,
                        from: inner,
                        to_position: outer_pos,
                        to: outer,
                        count,
                    }
                } else {
                    PathLink {
                        from_position: outer_pos,
                        from: outer,
                        to_position: inner_pos,
                        to: inner,
                        count,
                    }
                }
            })
            .collect();
        let key = |s: &Option<String>| (s.is_none(), s.clone());
        level.sort_by(|a, b| {
            b.count
                .cmp(&a.count)
                .then(key(&a.from).cmp(&key(&b.from)))
                .then(key(&a.to).cmp(&key(&b.to)))
        });
        links.extend(level);
    }
    Paths {
        step: "activity".into(),
        case: String::new(),
        anchor: o.anchor.clone(),
        direction: o.direction,
        occurrence: o.occurrence,
        steps: n,
        top: o.top,
        paths: all.len() as u64,
        customers: all.iter().map(|p| p.0).collect::<BTreeSet<_>>().len() as u64,
        positions,
        links,
    }
}

const ACTIVITIES: &[&str] = &["a", "b", "c", "d", "e"];

fn journeys() -> impl Strategy<Value = Fixture> {
    let event = (0..ACTIVITIES.len(), prop_oneof![Just(0i64), 1..90 * MINUTE]);
    proptest::collection::vec(proptest::collection::vec(event, 1..10), 1..14).prop_map(
        |customers| Fixture {
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
                            .map(|(a, gap)| {
                                ts += gap;
                                FixtureEvent {
                                    ts,
                                    channel: "web".into(),
                                    activity: ACTIVITIES[a].into(),
                                    properties: BTreeMap::new(),
                                    traits: BTreeMap::new(),
                                }
                            })
                            .collect(),
                    }
                })
                .collect(),
        },
    )
}

fn path_options() -> impl Strategy<Value = PathOptions> {
    (
        proptest::sample::select(ACTIVITIES),
        any::<bool>(),
        any::<bool>(),
        1usize..5,
        1usize..4,
    )
        .prop_map(|(anchor, backward, every, steps, top)| PathOptions {
            anchor: anchor.to_string(),
            direction: if backward {
                PathDirection::Backward
            } else {
                PathDirection::Forward
            },
            occurrence: if every {
                AnchorOccurrence::Every
            } else {
                AnchorOccurrence::First
            },
            steps,
            top,
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn engine_paths_equal_the_reference(
        fx in journeys(),
        o in path_options(),
        parts in 1usize..5,
        seed in any::<u64>(),
        gap in proptest::option::of(prop_oneof![Just(30 * MINUTE), Just(60 * MINUTE)]),
    ) {
        // A random but reproducible partition for each customer.
        let assign = |i: usize| ((seed >> (i % 60)) as usize ^ i) % parts;
        let partitions = fx.partitions_by(parts, assign);
        let mut q = Query::new(BASE);
        if let Some(g) = gap {
            q.case = CaseSplit::Gap(g);
        }
        let prepared = Prepared::new(&partitions, &Stages::default(), &q).unwrap();
        let got = paths(&prepared, &o).unwrap();
        let mut want = reference(&ref_cases(&fx, gap), &o);
        want.case = q.case.to_string();
        prop_assert_eq!(got, want);
    }
}
