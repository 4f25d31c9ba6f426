//! The incremental evaluator against a brute-force reference: every chain enumerated, the
//! latest chosen, unless windows, cooldown and customer filter checked over the whole
//! history at once. Events arrive in random orders, each at most `tolerance` late, with
//! the state serialized and read back between calls (as the app persists it).

use omnitrail_triggers::{
    replay, At, CustomerFilter, Evaluator, Filter, Literal, Obs, Rule, Span, State, Step, Unless,
};
use proptest::prelude::*;
use std::collections::BTreeMap;

#[derive(Clone, Debug)]
struct Case {
    rule: Rule,
    events: Vec<Obs>,
    /// Lateness of each event, at most the tolerance.
    delays: Vec<i64>,
    /// Tie-break of arrivals at the same time.
    shuffle: Vec<u32>,
}

fn filter(name: String) -> Filter {
    Filter {
        activity: Some(name),
        ..Filter::default()
    }
}

fn case() -> impl Strategy<Value = Case> {
    (1usize..=3, 0usize..=2, any::<bool>())
        .prop_flat_map(|(n, u, with_traits)| {
            let steps = proptest::collection::vec(1i64..60, n);
            let unless = proptest::collection::vec((1usize..=n, proptest::option::of(1i64..40)), u);
            let times = proptest::collection::vec(
                (
                    0i64..200,
                    1u16..(1 << n),
                    0u16..(1 << u.max(1)),
                    0u8..3,
                    0u8..4,
                ),
                0..24,
            );
            (
                Just(n),
                steps,
                unless,
                0i64..40,
                0i64..8,
                1i64..6,
                Just(with_traits),
                times,
            )
        })
        .prop_flat_map(
            |(n, within, unless, cooldown, tolerance, stale, with_traits, raw)| {
                let len = raw.len();
                let steps = (0..n)
                    .map(|i| Step {
                        filter: filter(format!("s{i}")),
                        within: (i > 0).then_some(Span(within[i])),
                    })
                    .collect();
                let unless: Vec<Unless> = unless
                    .into_iter()
                    .enumerate()
                    .map(|(i, (after, w))| Unless {
                        filter: filter(format!("u{i}")),
                        after,
                        // A window after the last step needs a length.
                        within: w.map(Span).or((after == n).then_some(Span(10))),
                    })
                    .collect();
                let ucount = unless.len();
                let customer = if with_traits {
                    CustomerFilter {
                        traits: BTreeMap::from([(
                            "plan".to_string(),
                            vec![Literal::Str("gold".into())],
                        )]),
                    }
                } else {
                    CustomerFilter::default()
                };
                let rule = Rule {
                    name: "r".into(),
                    description: None,
                    steps,
                    unless,
                    customer,
                    cooldown: Span(cooldown),
                    tolerance: Span(tolerance),
                    stale_after: Span(stale),
                    actions: Vec::new(),
                };
                let events: Vec<Obs> = raw
                    .into_iter()
                    .enumerate()
                    .map(|(i, (t, steps, unless, kind, plan))| {
                        // Some events match only unless clauses, some only carry a trait.
                        let (steps, unless) = match kind {
                            0 if ucount > 0 => (0, unless & ((1 << ucount) - 1)),
                            _ => (steps, unless & ((1u16 << ucount) - 1)),
                        };
                        let traits = match plan {
                            1 => vec![("plan".to_string(), Literal::Str("gold".into()))],
                            2 => vec![("plan".to_string(), Literal::Str("silver".into()))],
                            _ => Vec::new(),
                        };
                        Obs {
                            at: At {
                                time: t,
                                key: (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 8,
                            },
                            steps,
                            unless,
                            traits: if with_traits { traits } else { Vec::new() },
                        }
                    })
                    .collect();
                (
                    Just(rule),
                    Just(events),
                    proptest::collection::vec(0..=tolerance, len),
                    proptest::collection::vec(any::<u32>(), len),
                )
            },
        )
        .prop_map(|(rule, events, delays, shuffle)| Case {
            rule,
            events,
            delays,
            shuffle,
        })
}

/// Every firing of `rule` over `events`, by enumeration: (completion, chain).
fn reference(rule: &Rule, events: &[Obs]) -> Vec<(At, Vec<At>)> {
    let mut ev: Vec<&Obs> = events.iter().collect();
    ev.sort_by_key(|o| o.at);
    let n = rule.steps.len();
    let matches = |i: usize, s: usize| ev[i].steps & (1 << s) != 0;
    let mut fired: Vec<At> = Vec::new();
    let mut out = Vec::new();
    for c in 0..ev.len() {
        if !matches(c, n - 1) {
            continue;
        }
        // All chains ending at c, as index lists first step first.
        let mut chains: Vec<Vec<usize>> = vec![vec![c]];
        for s in (0..n - 1).rev() {
            let mut longer = Vec::new();
            for chain in &chains {
                let next = chain[0];
                let w = rule.steps[s + 1].within.expect("checked").micros();
                for i in 0..next {
                    if matches(i, s) && ev[next].at.time - ev[i].at.time <= w {
                        let mut x = vec![i];
                        x.extend_from_slice(chain);
                        longer.push(x);
                    }
                }
            }
            chains = longer;
        }
        // The latest chain: compare from the step before the last backwards.
        let Some(best) = chains
            .into_iter()
            .max_by(|a, b| a.iter().rev().cmp(b.iter().rev()))
        else {
            continue;
        };
        let at = ev[c].at;
        let blocked = rule.unless.iter().enumerate().any(|(u, clause)| {
            let anchor = ev[best[clause.after - 1]].at;
            ev.iter().any(|e| {
                e.unless & (1 << u) != 0
                    && e.at > anchor
                    && match clause.within {
                        Some(w) => e.at.time <= anchor.time + w.micros(),
                        None => e.at < at,
                    }
            })
        });
        let cooling = fired
            .iter()
            .any(|f| at.time - f.time < rule.cooldown.micros());
        let customer = rule.customer.traits.iter().all(|(name, allowed)| {
            ev.iter()
                .filter(|o| o.at <= at)
                .flat_map(|o| o.traits.iter().filter(|(k, _)| k == name))
                .last()
                .is_some_and(|(_, v)| allowed.contains(v))
        });
        if !blocked && !cooling && customer {
            fired.push(at);
            out.push((at, best.iter().map(|&i| ev[i].at).collect()));
        }
    }
    out
}

fn incremental(case: &Case) -> Vec<(At, Vec<At>)> {
    let eval = Evaluator::new(&case.rule);
    let mut arrivals: Vec<(i64, u32, &Obs)> = case
        .events
        .iter()
        .zip(&case.delays)
        .zip(&case.shuffle)
        .map(|((o, d), s)| (o.at.time + d, *s, o))
        .collect();
    arrivals.sort_by_key(|a| (a.0, a.1));
    let end = 200 + case.rule.span().micros() + case.rule.tolerance.micros() + 2;
    let mut state = State::default();
    let mut out = Vec::new();
    let mut next = 0;
    // Time advances one unit at a time, as a timer would poll; events arrive in between.
    for now in 0..=end {
        while next < arrivals.len() && arrivals[next].0 == now {
            let poll = eval.observe(&mut state, arrivals[next].2.clone(), now);
            out.extend(poll.firings);
            next += 1;
            // Persisted and read back, as between requests.
            state = serde_json::from_str(&serde_json::to_string(&state).unwrap()).unwrap();
        }
        let poll = eval.poll(&mut state, now);
        if let Some(d) = poll.next_deadline {
            assert!(d >= now, "a deadline in the past: {d} at {now}");
        }
        out.extend(poll.firings);
    }
    let mut seen = std::collections::BTreeSet::new();
    for f in &out {
        assert!(seen.insert(f.id.clone()), "fired twice: {f:?}");
    }
    let mut got: Vec<(At, Vec<At>)> = out.into_iter().map(|f| (f.completion, f.chain)).collect();
    got.sort();
    got
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn incremental_evaluation_agrees_with_the_reference(case in case()) {
        let want = reference(&case.rule, &case.events);
        prop_assert_eq!(incremental(&case), want);
    }

    #[test]
    fn replay_agrees_with_the_reference(case in case()) {
        let want = reference(&case.rule, &case.events);
        let mut got: Vec<(At, Vec<At>)> = replay(&Evaluator::replaying(&case.rule), &case.events)
            .into_iter()
            .map(|f| (f.completion, f.chain))
            .collect();
        got.sort();
        prop_assert_eq!(got, want);
    }
}

#[test]
fn merged_states_fire_the_sequence_split_across_customers() {
    let rule = omnitrail_triggers::parse_rule(
        "name: m\nsteps: [a, {activity: b, within: 2h}]\nactions: [{task: {}}]",
    )
    .unwrap();
    let eval = Evaluator::new(&rule);
    let h = 3_600_000_000i64;
    let obs = |t: i64, key: u64, steps: u16| Obs {
        at: At { time: t, key },
        steps,
        unless: 0,
        traits: Vec::new(),
    };
    let mut web = State::default();
    let mut social = State::default();
    assert!(eval.observe(&mut web, obs(0, 1, 1), 1).firings.is_empty());
    // The complaint lands on a customer of its own: nothing to complete yet.
    assert!(eval
        .observe(&mut social, obs(h, 2, 2), h + 1)
        .firings
        .is_empty());
    assert_eq!(social.decided.len(), 1);
    // The link joins them: the merged state completes the sequence once.
    let poll = eval.merge(&mut web, social.clone(), h + 10);
    assert_eq!(poll.firings.len(), 1);
    assert_eq!(
        poll.firings[0].chain,
        vec![At { time: 0, key: 1 }, At { time: h, key: 2 }]
    );
    // Merging the same history again (a restart re-evaluating) fires nothing more.
    assert!(eval.merge(&mut web, social, h + 20).firings.is_empty());
}
