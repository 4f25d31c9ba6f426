//! Properties: the graph equals the naive reference whatever the arrival order, after
//! revokes and unmerges, and through snapshots.

mod common;

use common::{id, observed, reference};
use omnitrail_identity::{
    Changed, Cut, Evidence, EvidenceId, GraphImage, Guardrails, IdentityGraph, Persisted, Snapshot,
    Source,
};
use omnitrail_model::{CustomerId, Identifier, IdentifierKind, Timestamp};
use proptest::prelude::*;
use std::collections::BTreeSet;

/// A small universe: several kinds, junk values, and a device everybody shares.
fn universe() -> Vec<Identifier> {
    let mut u = vec![
        id("user_id", "u1"),
        id("user_id", "u2"),
        id("user_id", "u3"),
        id("user_id", "null"),
        id("crm_id", "c1"),
        id("crm_id", "c2"),
        id("phone", "+15551230001"),
        id("phone", "+15551230002"),
        id("phone", "+10000000000"),
        id("device_id", "shared"),
        id("device_id", "d2"),
        id("device_id", "00000000-0000-0000-0000-000000000000"),
        id("anonymous_id", "null"),
        id("social:twitter", "t1"),
        id("social:twitter", "t2"),
        id("social:twitter", "t3"),
        id("social:twitter", "t4"),
        id("loyalty_card", "l1"),
        id("email", "test@test.com"),
    ];
    u.extend((1..=7).map(|i| id("email", &format!("e{i}@x.com"))));
    u.extend((1..=4).map(|i| id("anonymous_id", &format!("a{i}"))));
    u
}

fn guardrails(variant: u8) -> Guardrails {
    use IdentifierKind::*;
    match variant {
        0 => Guardrails::default(),
        // Tight limits, so that they bite in a small universe.
        1 => Guardrails::default()
            .with_limit(Email, 2)
            .with_limit(Phone, 1)
            .with_limit(DeviceId, 1)
            .with_limit(AnonymousId, 2)
            .with_limit(Social("twitter".into()), 2),
        // Devices strong, anonymous ids outranking emails, a user-added junk value.
        _ => Guardrails::default()
            .with_weak(DeviceId, false)
            .with_priority(AnonymousId, 25)
            .with_limit(Email, 3)
            .with_blocked(Some(AnonymousId), "A4"),
    }
}

fn evidence_strategy() -> impl Strategy<Value = Evidence> {
    let n = universe().len();
    (
        0i64..6,
        prop::collection::vec(0..n, 1..5),
        0u8..3,
        prop::option::of(0u8..3),
    )
        .prop_map(|(t, ids, source, event)| {
            let u = universe();
            Evidence {
                source: match source {
                    0 => Source::Event,
                    1 => Source::Identify,
                    _ => Source::Alias,
                },
                at: Timestamp::from_micros(t),
                event: event.map(|e| format!("ev-{e}")),
                identifiers: ids.into_iter().map(|i| u[i].clone()).collect(),
            }
        })
}

#[derive(Clone, Debug)]
enum Op {
    Observe(Evidence),
    Key(Identifier, CustomerId),
}

/// Evidence plus unique keys on distinct identifiers, as one list of operations.
fn ops_strategy() -> impl Strategy<Value = Vec<Op>> {
    let n = universe().len();
    (
        prop::collection::vec(evidence_strategy(), 0..28),
        prop::sample::subsequence((0..n).collect::<Vec<_>>(), 0..7),
        Just((1..=20u64).collect::<Vec<_>>()).prop_shuffle(),
    )
        .prop_map(|(evidence, keyed, keys)| {
            let u = universe();
            let mut ops: Vec<Op> = evidence.into_iter().map(Op::Observe).collect();
            ops.extend(
                keyed
                    .into_iter()
                    .zip(keys)
                    .map(|(i, k)| Op::Key(u[i].clone(), CustomerId(k))),
            );
            ops
        })
}

fn split(ops: &[Op]) -> (Vec<Evidence>, Vec<(Identifier, CustomerId)>) {
    let mut evidence = Vec::new();
    let mut keys = Vec::new();
    for op in ops {
        match op {
            Op::Observe(e) => evidence.push(e.clone()),
            Op::Key(i, k) => keys.push((i.clone(), *k)),
        }
    }
    (evidence, keys)
}

/// One operation at a time.
fn build_one_by_one(g: &Guardrails, ops: &[Op]) -> IdentityGraph {
    let mut graph = IdentityGraph::new(g.clone());
    for op in ops {
        match op {
            Op::Observe(e) => {
                graph.observe(e.clone());
            }
            Op::Key(i, k) => {
                graph.set_key(i, *k).unwrap();
            }
        }
    }
    graph
}

/// Runs of evidence in batches of `chunk`, keys in between.
fn build_batched(g: &Guardrails, ops: &[Op], chunk: usize) -> IdentityGraph {
    let mut graph = IdentityGraph::new(g.clone());
    let mut pending = Vec::new();
    for op in ops {
        match op {
            Op::Observe(e) => {
                pending.push(e.clone());
                if pending.len() == chunk {
                    graph.observe_batch(std::mem::take(&mut pending));
                }
            }
            Op::Key(i, k) => {
                graph.observe_batch(std::mem::take(&mut pending));
                graph.set_key(i, *k).unwrap();
            }
        }
    }
    graph.observe_batch(pending);
    graph
}

/// Operations in a random order, keys interleaved with evidence.
fn any_order_ops() -> impl Strategy<Value = Vec<Op>> {
    ops_strategy().prop_flat_map(|ops| Just(ops).prop_shuffle())
}

/// One mutating call on a graph, and what it reported (`None` when it was refused).
type Call = Box<dyn Fn(&mut IdentityGraph) -> Option<Changed>>;

fn shuffled_ops() -> impl Strategy<Value = (Vec<Op>, Vec<Op>, Vec<Op>)> {
    ops_strategy().prop_flat_map(|ops| {
        (
            Just(ops.clone()),
            Just(ops.clone()).prop_shuffle(),
            Just(ops).prop_shuffle(),
        )
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn any_arrival_order_gives_the_reference_graph(
        (ops, perm_a, perm_b) in shuffled_ops(),
        variant in 0u8..3,
        chunk in 1usize..6,
    ) {
        let g = guardrails(variant);
        let (evidence, keys) = split(&ops);
        let expected = reference(&g, &evidence, &BTreeSet::new(), &keys);
        let one = build_one_by_one(&g, &ops);
        prop_assert_eq!(&observed(&one), &expected);
        let a = build_one_by_one(&g, &perm_a);
        prop_assert_eq!(&observed(&a), &expected);
        let b = build_batched(&g, &perm_b, chunk);
        prop_assert_eq!(&observed(&b), &expected);
    }

    #[test]
    fn revoke_and_unmerge_equal_a_graph_without_that_evidence(
        (ops, perm) in ops_strategy()
            .prop_flat_map(|ops| (Just(ops.clone()), Just(ops).prop_shuffle())),
        variant in 0u8..3,
        revokes in prop::collection::vec(0u64..40, 0..4),
        unmerge in prop::option::of(0..universe().len()),
    ) {
        let g = guardrails(variant);
        let (evidence, keys) = split(&ops);
        let mut graph = build_one_by_one(&g, &perm);
        let total = graph.stats().evidence;
        let mut revoked_ids = BTreeSet::new();
        for r in revokes.iter().filter(|&&r| r < total) {
            graph.revoke(EvidenceId(*r)).unwrap();
            revoked_ids.insert(*r);
        }
        if let Some(u) = unmerge {
            let target = universe()[u].clone();
            match graph.unmerge(&target) {
                Ok(changed) => {
                    for p in &changed.persist {
                        if let Persisted::Revoked { id } = p {
                            revoked_ids.insert(id.0);
                        }
                    }
                    let alone = graph.cluster_of(&target).unwrap().identifiers
                        == vec![target.clone()];
                    prop_assert!(
                        graph.is_blocked(&target) || alone,
                        "{} still linked after unmerge", target
                    );
                }
                Err(_) => {
                    let known = evidence.iter().any(|e| e.identifiers.contains(&target))
                        || keys.iter().any(|(i, _)| *i == target);
                    prop_assert!(!known, "unmerge refused {} although it is known", target);
                }
            }
        }
        let revoked_sets: BTreeSet<Vec<Identifier>> = revoked_ids
            .iter()
            .map(|&r| graph.evidence(EvidenceId(r)).unwrap().0.identifiers)
            .collect();
        prop_assert_eq!(&observed(&graph), &reference(&g, &evidence, &revoked_sets, &keys));

        // A fresh graph that never saw the revoked evidence has the same customers
        // (identifiers only seen in revoked evidence aside).
        let fresh_ops: Vec<Op> = perm
            .iter()
            .filter(|op| match op {
                Op::Observe(e) => {
                    let mut ids = e.identifiers.clone();
                    ids.sort();
                    ids.dedup();
                    !revoked_sets.contains(&ids)
                }
                Op::Key(..) => true,
            })
            .cloned()
            .collect();
        let fresh = build_one_by_one(&g, &fresh_ops);
        let linked = |c: Vec<Vec<Identifier>>| {
            c.into_iter().filter(|c| c.len() > 1).collect::<Vec<_>>()
        };
        prop_assert_eq!(linked(graph.clusters()), linked(fresh.clusters()));
        prop_assert_eq!(graph.overlay().collect::<Vec<_>>(), fresh.overlay().collect::<Vec<_>>());
    }

    #[test]
    fn snapshots_and_logs_restore_the_same_graph(
        ops in any_order_ops(),
        variant in 0u8..3,
        revokes in prop::collection::vec(0u64..40, 0..3),
    ) {
        let g = guardrails(variant);
        let mut graph = IdentityGraph::new(g.clone());
        let mut log = Snapshot::new();
        for op in &ops {
            let changed = match op {
                Op::Observe(e) => graph.observe(e.clone()).changed,
                Op::Key(i, k) => graph.set_key(i, *k).unwrap(),
            };
            changed.persist_to(&mut log).unwrap();
        }
        for r in revokes {
            if let Ok(changed) = graph.revoke(EvidenceId(r)) {
                changed.persist_to(&mut log).unwrap();
            }
        }
        let expected = observed(&graph);
        let json = serde_json::to_string(&graph.snapshot()).unwrap();
        let restored = IdentityGraph::restore(g.clone(), serde_json::from_str(&json).unwrap());
        prop_assert_eq!(&observed(&restored), &expected);
        prop_assert_eq!(&observed(&IdentityGraph::restore(g.clone(), log)), &expected);
        // Snapshots do not depend on the guardrails: restore under others, then back.
        let other = IdentityGraph::restore(guardrails((variant + 1) % 3), graph.snapshot());
        prop_assert_eq!(&observed(&IdentityGraph::restore(g, other.snapshot())), &expected);
    }

    #[test]
    fn reported_remaps_keep_an_overlay_exact(
        ops in any_order_ops(),
        variant in 0u8..3,
        undo in prop::collection::vec((0usize..40, 0u64..40, 0..universe().len()), 0..6),
    ) {
        // The caller's overlay, maintained only from `Changed::remapped`; now and then an
        // evidence is revoked or an identifier unmerged along the way.
        let mut overlay = std::collections::BTreeMap::new();
        let mut graph = IdentityGraph::new(guardrails(variant));
        for (step, op) in ops.iter().enumerate() {
            let mut changes = vec![match op {
                Op::Observe(e) => graph.observe(e.clone()).changed,
                Op::Key(i, k) => graph.set_key(i, *k).unwrap(),
            }];
            for (_, r, u) in undo.iter().filter(|(at, ..)| *at == step) {
                if let Ok(c) = graph.revoke(EvidenceId(*r)) {
                    changes.push(c);
                }
                if let Ok(c) = graph.unmerge(&universe()[*u]) {
                    changes.push(c);
                }
            }
            for r in changes.into_iter().flat_map(|c| c.remapped) {
                prop_assert_eq!(overlay.get(&r.key).copied().unwrap_or(r.key), r.from);
                if r.to == r.key {
                    overlay.remove(&r.key);
                } else {
                    overlay.insert(r.key, r.to);
                }
            }
            prop_assert_eq!(
                overlay.clone().into_iter().collect::<Vec<_>>(),
                graph.overlay().collect::<Vec<_>>()
            );
        }
    }

    #[test]
    fn every_changed_customer_view_is_reported_as_touched(
        ops in any_order_ops(),
        variant in 0u8..3,
        undo in prop::collection::vec((0usize..40, 0u64..40, 0..universe().len()), 0..6),
    ) {
        let mut graph = IdentityGraph::new(guardrails(variant));
        let views = |g: &IdentityGraph| {
            let mut keys: Vec<CustomerId> = g.overlay().map(|(_, c)| c).collect();
            keys.extend(universe().iter().filter_map(|i| g.customer_of(i)));
            keys.into_iter()
                .map(|c| (c, g.cluster(c).unwrap()))
                .collect::<std::collections::BTreeMap<_, _>>()
        };
        for (step, op) in ops.iter().enumerate() {
            let mut calls: Vec<Call> = Vec::new();
            match op.clone() {
                Op::Observe(e) => calls.push(Box::new(move |g| Some(g.observe(e.clone()).changed))),
                Op::Key(i, k) => calls.push(Box::new(move |g| g.set_key(&i, k).ok())),
            }
            for (_, r, u) in undo.iter().filter(|(at, ..)| *at == step) {
                let (r, target) = (*r, universe()[*u].clone());
                calls.push(Box::new(move |g| g.revoke(EvidenceId(r)).ok()));
                calls.push(Box::new(move |g| g.unmerge(&target).ok()));
            }
            for call in calls {
                let before = views(&graph);
                let Some(changed) = call(&mut graph) else { continue };
                let after = views(&graph);
                let ids: BTreeSet<CustomerId> =
                    before.keys().chain(after.keys()).copied().collect();
                for c in ids {
                    if before.get(&c) != after.get(&c) {
                        prop_assert!(
                            changed.touched.contains(&c),
                            "{} changed but was not reported: {:?}", c, changed
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn an_image_opens_as_the_graph_itself_and_goes_on_like_it(
        (ops, more) in (any_order_ops(), any_order_ops()),
        variant in 0u8..3,
        undo in prop::collection::vec((0u64..40, 0..universe().len()), 0..4),
    ) {
        let g = guardrails(variant);
        let mut graph = build_one_by_one(&g, &ops);
        for (r, u) in &undo {
            let _ = graph.revoke(EvidenceId(*r));
            let _ = graph.unmerge(&universe()[*u]);
        }
        let bytes = postcard::to_stdvec(&graph.image()).unwrap();
        let image: GraphImage = postcard::from_bytes(&bytes).unwrap();
        let mut opened = IdentityGraph::open_image(g.clone(), image).unwrap();
        prop_assert_eq!(&observed(&opened), &observed(&graph));
        prop_assert_eq!(opened.image(), graph.image());
        // Under other guardrails it is the snapshot replayed under those.
        let other = guardrails((variant + 1) % 3);
        let replayed = IdentityGraph::open_image(other.clone(), graph.image()).unwrap();
        let restored = IdentityGraph::restore(other, graph.snapshot());
        prop_assert_eq!(&observed(&replayed), &observed(&restored));
        // Whatever comes next, both report the same changes and end the same.
        for op in &more {
            let (a, b) = match op {
                Op::Observe(e) => (
                    graph.observe(e.clone()).changed,
                    opened.observe(e.clone()).changed,
                ),
                Op::Key(i, k) => match (graph.set_key(i, *k), opened.set_key(i, *k)) {
                    (Ok(a), Ok(b)) => (a, b),
                    (a, b) => {
                        prop_assert_eq!(a.is_ok(), b.is_ok());
                        continue;
                    }
                },
            };
            prop_assert_eq!(format!("{a:?}"), format!("{b:?}"));
        }
        prop_assert_eq!(opened.image(), graph.image());
    }

    #[test]
    fn a_cut_of_an_image_answers_for_its_customers_as_the_whole_graph(
        ops in any_order_ops(),
        variant in 0u8..3,
        undo in prop::collection::vec((0u64..40, 0..universe().len()), 0..4),
    ) {
        let mut graph = build_one_by_one(&guardrails(variant), &ops);
        for (r, u) in &undo {
            let _ = graph.revoke(EvidenceId(*r));
            let _ = graph.unmerge(&universe()[*u]);
        }
        let image = graph.image();
        for raw in ["u1", "E1@X.COM", "+1 555 123 0001", "t1", "null"] {
            prop_assert_eq!(image.candidates(raw).unwrap(), graph.candidates(raw));
        }
        for i in universe() {
            match image.cut_at(&i).unwrap() {
                Cut::Component(cut) => {
                    prop_assert_eq!(cut.customer_of(&i), graph.customer_of(&i), "{}", i);
                }
                Cut::NotFound => prop_assert!(graph.find(&i.value).iter().all(|f| f != &i)),
                Cut::Blocked => prop_assert!(graph.lookup(Some(&i.kind), &i.value).contains(&i)),
            }
        }
        let keys: BTreeSet<CustomerId> = ops
            .iter()
            .filter_map(|op| match op {
                Op::Key(_, k) => Some(*k),
                Op::Observe(_) => None,
            })
            .chain([CustomerId(999_999)])
            .collect();
        for key in keys {
            match image.cut_at_key(key).unwrap() {
                Cut::Component(cut) => prop_assert_eq!(cut.cluster(key), graph.cluster(key)),
                Cut::NotFound => prop_assert_eq!(graph.cluster(key), None),
                Cut::Blocked => prop_assert!(graph.cluster(key).is_some()),
            }
        }
    }

    #[test]
    fn a_damaged_image_is_refused_or_opens_but_never_panics_or_hangs(
        ops in any_order_ops(),
        flips in prop::collection::vec((any::<prop::sample::Index>(), 1u8..=255), 1..4),
    ) {
        let graph = build_one_by_one(&guardrails(0), &ops);
        let mut bytes = postcard::to_stdvec(&graph.image()).unwrap();
        for (at, mask) in flips {
            let i = at.index(bytes.len());
            bytes[i] ^= mask;
        }
        if let Ok(image) = postcard::from_bytes::<GraphImage>(&bytes) {
            // Cutting a component out of it is refused or answers, never panics or hangs.
            for i in universe() {
                if let Ok(Cut::Component(cut)) = image.cut_at(&i) {
                    let _ = cut.customer_of(&i);
                }
            }
            for k in 0..12 {
                if let Ok(Cut::Component(cut)) = image.cut_at_key(CustomerId(k)) {
                    let _ = cut.cluster(CustomerId(k));
                }
            }
            if let Ok(mut opened) = IdentityGraph::open_image(guardrails(0), image) {
                // Whatever opened answers questions and takes evidence without panicking.
                let _ = opened.clusters();
                let _ = opened.stats();
                for i in universe() {
                    let _ = opened.cluster_of(&i);
                }
                for op in ops.iter().take(5) {
                    if let Op::Observe(e) = op {
                        opened.observe(e.clone());
                    }
                }
            }
        }
    }
}
