//! Named, data-driven identity scenarios.

mod common;

use common::{at, ev, id, observed, outcomes, overlay};
use omnitrail_identity::{
    Decision, Evidence, EvidenceId, Guardrails, IdentityError, IdentityGraph, IdentityLog,
    Persisted, RefusalReason, Remap, Snapshot, Source,
};
use omnitrail_model::{CustomerId, IdentifierKind};

#[test]
fn anonymous_visitor_login_phone_and_social_become_one_customer() {
    let anon = id("anonymous_id", "a-91");
    let email = id("email", "ana@example.com");
    let phone = id("phone", "+15551234567");
    let crm = id("crm_id", "CRM-7");
    let twitter = id("social:twitter", "anab");
    let mut g = IdentityGraph::default();

    // An anonymous web visitor browses; the store keys her events by the anonymous id.
    let browse = g.observe(ev(0, "web-1", std::slice::from_ref(&anon)));
    g.set_key(&anon, CustomerId(1)).unwrap();
    // She logs in with her email.
    let login = g.observe(ev(60, "web-2", &[anon.clone(), email.clone()]));
    // The CRM links her email and phone.
    let crm_phone = g.observe(Evidence {
        source: Source::Identify,
        ..ev(3600, "crm-1", &[email.clone(), phone.clone()])
    });
    g.set_key(&email, CustomerId(2)).unwrap();
    // A CRM event links email and crm id to her twitter handle.
    let crm_social = g.observe(ev(
        7200,
        "crm-2",
        &[email.clone(), crm.clone(), twitter.clone()],
    ));
    g.set_key(&crm, CustomerId(3)).unwrap();

    let mut all = vec![
        anon.clone(),
        email.clone(),
        phone.clone(),
        crm.clone(),
        twitter.clone(),
    ];
    all.sort();
    assert_eq!(g.clusters(), vec![all.clone()]);
    for i in &all {
        assert_eq!(g.customer_of(i), Some(CustomerId(1)), "{i}");
    }
    assert_eq!(
        overlay(&g),
        vec![
            (CustomerId(2), CustomerId(1)),
            (CustomerId(3), CustomerId(1))
        ]
    );

    let cluster = g
        .cluster(CustomerId(2))
        .expect("a merged key resolves to its customer");
    assert_eq!(cluster.customer, Some(CustomerId(1)));
    assert_eq!(cluster.identifiers, all);
    assert_eq!(
        cluster.keys,
        vec![CustomerId(1), CustomerId(2), CustomerId(3)]
    );
    let lines: Vec<(EvidenceId, Option<String>, Source, Decision, usize)> = cluster
        .evidence
        .iter()
        .map(|e| {
            (
                e.id,
                e.evidence.event.clone(),
                e.evidence.source,
                e.decision.clone(),
                e.evidence.identifiers.len(),
            )
        })
        .collect();
    assert_eq!(
        lines,
        vec![
            (
                browse.evidence,
                Some("web-1".into()),
                Source::Event,
                Decision::Single,
                1
            ),
            (
                login.evidence,
                Some("web-2".into()),
                Source::Event,
                Decision::Linked { merged: true },
                2
            ),
            (
                crm_phone.evidence,
                Some("crm-1".into()),
                Source::Identify,
                Decision::Linked { merged: true },
                2
            ),
            (
                crm_social.evidence,
                Some("crm-2".into()),
                Source::Event,
                Decision::Linked { merged: true },
                3
            ),
        ]
    );
    let (social, _) = g.evidence(crm_social.evidence).unwrap();
    assert_eq!(social.at, at(7200));
    assert_eq!(social.identifiers, {
        let mut v = vec![email.clone(), crm.clone(), twitter.clone()];
        v.sort();
        v
    });
    assert!(cluster.evidence.iter().all(|e| e.refusals.is_empty()));
}

#[test]
fn junk_anonymous_value_links_nobody() {
    let mut g = IdentityGraph::default();
    let people: Vec<_> = (0..3)
        .map(|i| id("email", &format!("p{i}@shop.com")))
        .collect();
    let junk = [
        id("anonymous_id", "null"),
        id("anonymous_id", "00000000-0000-0000-0000-000000000000"),
        id("anonymous_id", "Undefined"),
    ];
    for (i, p) in people.iter().enumerate() {
        for (j, k) in junk.iter().enumerate() {
            g.observe(ev(
                (i * 10 + j) as i64,
                &format!("e{i}{j}"),
                &[p.clone(), k.clone()],
            ));
        }
    }
    for p in &people {
        let c = g.cluster_of(p).unwrap();
        assert_eq!(c.identifiers, vec![p.clone()], "{p} stays alone");
        assert_eq!(c.evidence.len(), junk.len());
        for e in &c.evidence {
            assert_eq!(e.refusals.len(), 1);
            assert_eq!(e.refusals[0].reason, RefusalReason::Blocklisted);
            assert!(matches!(e.decision, Decision::Refused(_)));
            assert!(e.refusals[0]
                .to_string()
                .ends_with("not linked: the value is on the blocklist"));
        }
    }
    for k in &junk {
        assert!(g.is_blocked(k));
        assert_eq!(g.cluster_of(k).unwrap().identifiers, vec![k.clone()]);
        assert_eq!(g.cluster_of(k).unwrap().evidence.len(), people.len());
    }
    // Junk is never primary, and an event with only junk has none.
    let ids = [junk[0].clone(), people[0].clone()];
    assert_eq!(g.primary(&ids), Some(&people[0]));
    assert_eq!(g.primary(&junk), None);
    assert_eq!(g.clusters().len(), people.len() + junk.len());
}

#[test]
fn device_shared_by_500_people_merges_none_of_them() {
    let device = id("device_id", "kiosk-ipad-7");
    let people: Vec<_> = (0..500)
        .map(|i| {
            if i % 2 == 0 {
                id("email", &format!("visitor{i}@mail.com"))
            } else {
                id("user_id", &format!("u{i}"))
            }
        })
        .collect();
    // Arrival order scrambled against time order: the outcome must not care.
    let mut order: Vec<usize> = (0..people.len()).collect();
    order.sort_by_key(|&i| (i * 7919) % people.len());
    let mut g = IdentityGraph::default();
    for &i in &order {
        g.observe(ev(
            i as i64,
            &format!("visit-{i}"),
            &[people[i].clone(), device.clone()],
        ));
        // Each person also has an anonymous id that is rightly theirs.
        g.observe(ev(
            i as i64,
            &format!("web-{i}"),
            &[people[i].clone(), id("anonymous_id", &format!("anon-{i}"))],
        ));
    }
    let clusters = g.clusters();
    for p in &people {
        let c = clusters.iter().find(|c| c.contains(p)).unwrap();
        assert_eq!(
            c.iter().filter(|i| people.contains(i)).count(),
            1,
            "{p} merged with someone"
        );
    }
    // The device attaches to the canonically first visitor only; everyone else is refused.
    let first = g.cluster_of(&device).unwrap();
    assert!(first.identifiers.contains(&people[0]));
    let weak_refusals = outcomes(&g)
        .values()
        .filter(|(_, d, _)| {
            matches!(d, Decision::Refused(r) if r.reason == RefusalReason::WeakLink { via: device.clone() })
        })
        .count();
    assert_eq!(weak_refusals, people.len() - 1);
    let refused = g.cluster_of(&people[1]).unwrap();
    let line = refused
        .evidence
        .iter()
        .find(|e| e.evidence.identifiers.contains(&device))
        .unwrap();
    assert_eq!(
        line.refusals[0].to_string(),
        "device_id kiosk-ipad-7 not linked: the weak device_id kiosk-ipad-7 would join two customers that each have a strong identifier"
    );
}

#[test]
fn weak_link_is_allowed_when_the_evidence_is_strong_on_both_sides() {
    let (a, b) = (id("email", "a@x.com"), id("phone", "+15550000001"));
    let d = id("device_id", "d1");
    let mut g = IdentityGraph::default();
    g.observe(ev(0, "1", &[a.clone(), d.clone()]));
    g.observe(ev(1, "2", &[b.clone(), id("anonymous_id", "z")]));
    // The device alone would not join a's and b's customers ...
    let weak = g.observe(ev(2, "3", &[b.clone(), d.clone()]));
    assert!(matches!(
        g.evidence(weak.evidence).unwrap().1,
        Decision::Refused(_)
    ));
    // ... but an event carrying both strong identifiers does.
    g.observe(ev(3, "4", &[a.clone(), b.clone(), d.clone()]));
    assert_eq!(g.customer_of(&a), g.customer_of(&b));
    assert_eq!(g.cluster_of(&a).unwrap().identifiers.len(), 4);
}

#[test]
fn second_user_id_is_refused_with_reason() {
    let email = id("email", "ana@example.com");
    let (u1, u2) = (id("user_id", "u-1"), id("user_id", "u-2"));
    let mut g = IdentityGraph::default();
    g.observe(ev(0, "login-1", &[u1.clone(), email.clone()]));
    let second = g.observe(ev(10, "login-2", &[u2.clone(), email.clone()]));
    let (_, decision) = g.evidence(second.evidence).unwrap();
    let Decision::Refused(r) = decision else {
        panic!("expected a refusal, got {decision:?}");
    };
    // u-2 comes first in link order (user_id outranks email), so the email is the one that
    // would give the customer two user ids.
    assert_eq!(r.identifier, email);
    assert_eq!(
        r.reason,
        RefusalReason::Limit {
            kind: "user_id".into(),
            would_have: 2,
            limit: 1
        }
    );
    assert_eq!(
        r.to_string(),
        "email ana@example.com not linked: the customer would have 2 user_id values (limit 1)"
    );
    assert_eq!(
        g.cluster_of(&u1).unwrap().identifiers,
        vec![u1.clone(), email.clone()]
    );
    assert_eq!(g.cluster_of(&u2).unwrap().identifiers, vec![u2.clone()]);

    // Arriving in the other order changes nothing: u-1's login is earlier.
    let mut h = IdentityGraph::default();
    h.observe(ev(10, "login-2", &[u2, email.clone()]));
    h.observe(ev(0, "login-1", &[u1, email]));
    assert_eq!(h.clusters(), g.clusters());
    assert_eq!(outcomes(&h), outcomes(&g));
}

#[test]
fn sixth_email_is_refused() {
    let user = id("user_id", "u-1");
    let emails: Vec<_> = (1..=6)
        .map(|i| id("email", &format!("e{i}@x.com")))
        .collect();
    let build = |order: &[usize]| {
        let mut g = IdentityGraph::default();
        for &i in order {
            g.observe(ev(
                i as i64,
                &format!("ev-{i}"),
                &[user.clone(), emails[i].clone()],
            ));
        }
        g
    };
    let g = build(&[0, 1, 2, 3, 4, 5]);
    let reversed = build(&[5, 4, 3, 2, 1, 0]);
    assert_eq!(g.clusters(), reversed.clusters());
    assert_eq!(outcomes(&g), outcomes(&reversed));
    let c = g.cluster_of(&user).unwrap();
    assert_eq!(c.identifiers.len(), 6, "user id and five emails");
    assert!(!c.identifiers.contains(&emails[5]));
    let refused = c.evidence.last().unwrap();
    assert_eq!(refused.evidence.event.as_deref(), Some("ev-5"));
    assert_eq!(
        refused.decision.to_string(),
        "refused: email e6@x.com not linked: the customer would have 6 email values (limit 5)"
    );
    assert_eq!(
        refused.refusals[0].reason,
        RefusalReason::Limit {
            kind: "email".into(),
            would_have: 6,
            limit: 5
        }
    );
}

#[test]
fn canonical_id_is_smallest_key_and_survives_merge() {
    let (a, b, c) = (
        id("email", "a@x.com"),
        id("phone", "+15550000002"),
        id("user_id", "u-9"),
    );
    let mut g = IdentityGraph::default();
    g.observe(ev(0, "1", std::slice::from_ref(&a)));
    g.set_key(&a, CustomerId(5)).unwrap();
    g.observe(ev(1, "2", std::slice::from_ref(&b)));
    g.set_key(&b, CustomerId(3)).unwrap();
    assert_eq!(g.customer_of(&a), Some(CustomerId(5)));
    assert_eq!(g.customer_of(&c), None);
    g.observe(ev(1, "2b", &[a.clone(), c.clone()]));
    assert_eq!(g.customer_of(&c), Some(CustomerId(5)));

    let merge = g.observe(ev(2, "3", &[a.clone(), b.clone(), c.clone()]));
    assert_eq!(
        merge.changed.remapped,
        vec![Remap {
            key: CustomerId(5),
            from: CustomerId(5),
            to: CustomerId(3)
        }]
    );
    assert_eq!(merge.changed.touched, vec![CustomerId(3), CustomerId(5)]);
    for i in [&a, &b, &c] {
        assert_eq!(g.customer_of(i), Some(CustomerId(3)));
    }
    assert_eq!(overlay(&g), vec![(CustomerId(5), CustomerId(3))]);

    // A newer, larger key joins the customer without changing its id.
    let later = g.set_key(&c, CustomerId(9)).unwrap();
    assert_eq!(
        later.remapped,
        vec![Remap {
            key: CustomerId(9),
            from: CustomerId(9),
            to: CustomerId(3)
        }]
    );
    assert_eq!(g.customer_of(&c), Some(CustomerId(3)));
    // First key wins; a key cannot key two identifiers.
    assert_eq!(g.set_key(&c, CustomerId(11)).unwrap(), Default::default());
    assert_eq!(g.customer_of(&c), Some(CustomerId(3)));
    assert!(matches!(
        g.set_key(&id("email", "other@x.com"), CustomerId(5)),
        Err(IdentityError::KeyTaken { .. })
    ));
    assert!(
        g.lookup(None, "other@x.com").is_empty(),
        "a refused key adds no identifier"
    );

    // Unmerging b gives a its own id back, and the others keep 5 (the smallest left).
    let split = g.unmerge(&b).unwrap();
    assert_eq!(
        split.remapped,
        vec![
            Remap {
                key: CustomerId(5),
                from: CustomerId(3),
                to: CustomerId(5)
            },
            Remap {
                key: CustomerId(9),
                from: CustomerId(3),
                to: CustomerId(5)
            },
        ]
    );
    assert_eq!(g.customer_of(&b), Some(CustomerId(3)));
    assert_eq!(g.customer_of(&a), Some(CustomerId(5)));
    assert_eq!(g.customer_of(&c), Some(CustomerId(5)));
    assert_eq!(overlay(&g), vec![(CustomerId(9), CustomerId(5))]);
    assert_eq!(g.evidence(merge.evidence).unwrap().1, Decision::Revoked);
    assert_eq!(
        split.persist,
        vec![Persisted::Revoked { id: merge.evidence }]
    );
}

#[test]
fn duplicate_sets_are_one_evidence_with_the_earliest_origin() {
    let ids = [id("email", "a@x.com"), id("phone", "+15550000003")];
    let mut g = IdentityGraph::default();
    let first = g.observe(ev(50, "late", &ids));
    assert!(first.is_new);
    let again = g.observe(ev(
        80,
        "later",
        &[ids[1].clone(), ids[0].clone(), ids[0].clone()],
    ));
    assert_eq!((again.evidence, again.is_new), (first.evidence, false));
    assert!(again.changed.persist.is_empty());
    let earlier = g.observe(ev(10, "early", &ids));
    assert_eq!(earlier.evidence, first.evidence);
    assert_eq!(
        earlier.changed.persist,
        vec![Persisted::Earlier {
            id: first.evidence,
            source: Source::Event,
            at: at(10),
            event: Some("early".into()),
        }]
    );
    let (e, _) = g.evidence(first.evidence).unwrap();
    assert_eq!((e.at, e.event.as_deref()), (at(10), Some("early")));
    assert_eq!(g.stats().evidence, 1);
    // A revoked set stays revoked when seen again.
    g.revoke(first.evidence).unwrap();
    g.observe(ev(5, "again", &ids));
    assert_eq!(g.evidence(first.evidence).unwrap().1, Decision::Revoked);
    assert_eq!(g.clusters().len(), 2);
    // Evidence without identifiers links nothing and is still one evidence.
    let empty = g.observe(ev(0, "none", &[]));
    assert_eq!(g.evidence(empty.evidence).unwrap().1, Decision::Single);
    assert_eq!(g.observe(ev(9, "none", &[])).evidence, empty.evidence);
}

#[test]
fn revoke_restores_the_refused_alternative() {
    // e1 claims email x for u1; e2 (later) claims it for u2 and is refused. Revoking e1
    // lets e2 link: the graph is what the remaining evidence says.
    let x = id("email", "x@x.com");
    let mut g = IdentityGraph::default();
    let e1 = g.observe(ev(0, "1", &[id("user_id", "u1"), x.clone()]));
    let e2 = g.observe(ev(1, "2", &[id("user_id", "u2"), x.clone()]));
    assert!(matches!(
        g.evidence(e2.evidence).unwrap().1,
        Decision::Refused(_)
    ));
    g.revoke(e1.evidence).unwrap();
    assert_eq!(
        g.evidence(e2.evidence).unwrap().1,
        Decision::Linked { merged: true }
    );
    assert_eq!(
        g.cluster_of(&x).unwrap().identifiers,
        vec![id("user_id", "u2"), x.clone()]
    );
    assert_eq!(g.revoke(e1.evidence).unwrap(), Default::default());
    assert_eq!(
        g.revoke(EvidenceId(7)),
        Err(IdentityError::UnknownEvidence {
            id: EvidenceId(7),
            len: 2
        })
    );
    assert_eq!(
        g.unmerge(&id("email", "nobody@x.com")),
        Err(IdentityError::UnknownIdentifier(id(
            "email",
            "nobody@x.com"
        )))
    );
}

#[test]
fn lookup_finds_identifiers_by_raw_text_across_kinds() {
    let mut g = IdentityGraph::default();
    g.observe(ev(
        0,
        "1",
        &[
            id("email", "ana@example.com"),
            id("user_id", "ana@example.com"),
        ],
    ));
    g.observe(ev(
        1,
        "2",
        &[id("phone", "+15551234567"), id("social:twitter", "anab")],
    ));
    assert_eq!(
        g.lookup(None, "ana@example.com"),
        vec![
            id("user_id", "ana@example.com"),
            id("email", "ana@example.com")
        ]
    );
    assert_eq!(
        g.lookup(Some(&IdentifierKind::Email), "ana@example.com"),
        vec![id("email", "ana@example.com")]
    );
    assert!(g
        .lookup(Some(&IdentifierKind::Phone), "ana@example.com")
        .is_empty());
    // Raw text as an agent types it: each kind's normal form is tried.
    assert_eq!(
        g.find("+1 (555) 123-4567"),
        vec![id("phone", "+15551234567")]
    );
    assert_eq!(g.find("@AnaB"), vec![id("social:twitter", "anab")]);
    assert_eq!(
        g.find(" Ana@Example.com "),
        vec![id("email", "ana@example.com")]
    );
    let candidates = g.candidates("@AnaB");
    assert!(candidates.contains(&id("social:twitter", "anab")));
    assert!(candidates.contains(&id("user_id", "@AnaB")));
}

#[test]
fn batch_observation_equals_one_by_one() {
    let people: Vec<_> = (0..30)
        .map(|i| id("email", &format!("p{i}@x.com")))
        .collect();
    let mut evidence = Vec::new();
    for i in 0..30usize {
        evidence.push(ev(
            (30 - i) as i64,
            &format!("a{i}"),
            &[people[i].clone(), id("device_id", "shared")],
        ));
        evidence.push(ev(
            i as i64,
            &format!("b{i}"),
            &[people[i].clone(), people[(i + 1) % 30].clone()],
        ));
    }
    let mut one = IdentityGraph::default();
    for e in evidence.clone() {
        one.observe(e);
    }
    let mut batch = IdentityGraph::default();
    let (head, tail) = evidence.split_at(17);
    batch.observe_batch(head.to_vec());
    let out = batch.observe_batch(tail.to_vec());
    assert_eq!(out.evidence.len(), tail.len());
    assert_eq!(observed(&one), observed(&batch));
}

fn sample_graph() -> IdentityGraph {
    let mut g = IdentityGraph::default();
    let user = id("user_id", "u-1");
    for i in 0..7 {
        g.observe(ev(
            i,
            &format!("ev-{i}"),
            &[user.clone(), id("email", &format!("e{i}@x.com"))],
        ));
    }
    let revoke = g.observe(ev(
        20,
        "crm",
        &[id("email", "e0@x.com"), id("crm_id", "CRM-1")],
    ));
    g.observe(ev(
        30,
        "junk",
        &[id("phone", "+15550001111"), id("anonymous_id", "null")],
    ));
    g.observe(Evidence {
        source: Source::Alias,
        at: at(40),
        event: None,
        identifiers: vec![id("anonymous_id", "a-1"), id("user_id", "u-1")],
    });
    g.set_key(&user, CustomerId(4)).unwrap();
    g.set_key(&id("phone", "+15550001111"), CustomerId(2))
        .unwrap();
    g.set_key(&id("crm_id", "CRM-1"), CustomerId(1)).unwrap();
    g.revoke(revoke.evidence).unwrap();
    g
}

#[test]
fn snapshot_restore_round_trips() {
    let g = sample_graph();
    let snapshot = g.snapshot();
    let json = serde_json::to_string(&snapshot).unwrap();
    let back: Snapshot = serde_json::from_str(&json).unwrap();
    assert_eq!(back, snapshot);
    let restored = IdentityGraph::restore(Guardrails::default(), back);
    assert_eq!(observed(&restored), observed(&g));
    assert_eq!(restored.stats(), g.stats());
    assert_eq!(restored.snapshot(), snapshot);

    // The same graph from the log of persisted changes, folded into an empty snapshot.
    let mut log: Vec<Persisted> = Vec::new();
    let mut h = IdentityGraph::default();
    let mut replayed = Snapshot::new();
    {
        let mut record = |c: &omnitrail_identity::Changed| {
            c.persist_to(&mut log).unwrap();
            c.persist_to(&mut replayed).unwrap();
        };
        let user = id("user_id", "u-1");
        for i in 0..7 {
            record(
                &h.observe(ev(
                    i,
                    &format!("ev-{i}"),
                    &[user.clone(), id("email", &format!("e{i}@x.com"))],
                ))
                .changed,
            );
        }
        let revoke = h.observe(ev(
            20,
            "crm",
            &[id("email", "e0@x.com"), id("crm_id", "CRM-1")],
        ));
        record(&revoke.changed);
        record(
            &h.observe(ev(
                30,
                "junk",
                &[id("phone", "+15550001111"), id("anonymous_id", "null")],
            ))
            .changed,
        );
        record(
            &h.observe(Evidence {
                source: Source::Alias,
                at: at(40),
                event: None,
                identifiers: vec![id("anonymous_id", "a-1"), id("user_id", "u-1")],
            })
            .changed,
        );
        record(&h.set_key(&user, CustomerId(4)).unwrap());
        record(
            &h.set_key(&id("phone", "+15550001111"), CustomerId(2))
                .unwrap(),
        );
        record(&h.set_key(&id("crm_id", "CRM-1"), CustomerId(1)).unwrap());
        record(&h.revoke(revoke.evidence).unwrap());
    }
    assert_eq!(observed(&h), observed(&g));
    let from_log = IdentityGraph::restore(Guardrails::default(), replayed);
    assert_eq!(observed(&from_log), observed(&g));
    let mut folded = Snapshot::new();
    for p in &log {
        folded.append(p).unwrap();
    }
    assert_eq!(
        observed(&IdentityGraph::restore(Guardrails::default(), folded)),
        observed(&g)
    );
    // The log itself serializes.
    let json = serde_json::to_string(&log).unwrap();
    assert_eq!(serde_json::from_str::<Vec<Persisted>>(&json).unwrap(), log);

    // Restoring under different guardrails replays the same evidence under the new rules.
    let strict = Guardrails::default().with_limit(IdentifierKind::Email, 2);
    let tight = IdentityGraph::restore(strict, g.snapshot());
    assert_eq!(
        tight
            .cluster_of(&id("user_id", "u-1"))
            .unwrap()
            .identifiers
            .len(),
        4
    );
}

#[test]
fn invalid_snapshots_are_rejected_with_the_reference_named() {
    let parse = |json: &str| {
        serde_json::from_str::<Snapshot>(json)
            .unwrap_err()
            .to_string()
    };
    let one_email =
        r#""identifiers":{"kinds":["email"],"kind":[0,0],"value":["a@x.com","b@x.com"]}"#;
    let err = parse(&format!(
        r#"{{{one_email}, "keys":[], "evidence":{{"source":["event"],"at":[0],"event":[null],
            "len":[2],"identifiers":[0,3],"revoked":[]}}}}"#
    ));
    assert!(
        err.contains("snapshot evidence e0 refers to identifier #3, but the snapshot lists only 2 identifiers"),
        "{err}"
    );
    let err = parse(&format!(
        r#"{{{one_email}, "keys":[], "evidence":{{"source":["event"],"at":[0],"event":[null],
            "len":[3],"identifiers":[0,1],"revoked":[]}}}}"#
    ));
    assert!(
        err.contains("snapshot is malformed: the evidence lengths add up to 3 identifier references, but 2 are listed"),
        "{err}"
    );
    let err = parse(&format!(
        r#"{{{one_email}, "keys":[], "evidence":{{"source":["event"],"at":[0],"event":[null],
            "len":[1],"identifiers":[0],"revoked":[4]}}}}"#
    ));
    assert!(err.contains("evidence e4 does not exist"), "{err}");
    let err = parse(&format!(
        r#"{{{one_email}, "keys":[[0,7],[1,7]], "evidence":{{"source":[],"at":[],"event":[],
            "len":[],"identifiers":[],"revoked":[]}}}}"#
    ));
    assert!(
        err.contains("assigns customer key c7 to both email:a@x.com and email:b@x.com"),
        "{err}"
    );
    let err = parse(
        r#"{"identifiers":{"kinds":["email"],"kind":[1],"value":["a@x.com"]}, "keys":[],
            "evidence":{"source":[],"at":[],"event":[],"len":[],"identifiers":[],"revoked":[]}}"#,
    );
    assert!(
        err.contains("an identifier has kind #1, but the snapshot lists only 1 kinds"),
        "{err}"
    );

    let mut s = Snapshot::new();
    let out_of_order = Persisted::Evidence {
        id: EvidenceId(3),
        evidence: ev(0, "x", &[id("email", "a@x.com")]),
    };
    assert_eq!(
        s.apply(&out_of_order),
        Err(IdentityError::OutOfSequence {
            got: EvidenceId(3),
            expected: EvidenceId(0)
        })
    );
    assert!(matches!(
        s.apply(&Persisted::Revoked { id: EvidenceId(0) }),
        Err(IdentityError::UnknownEvidence { .. })
    ));
}

#[test]
fn priority_picks_the_primary_identifier() {
    let g = IdentityGraph::default();
    let ids = [
        id("anonymous_id", "a-1"),
        id("email", "b@x.com"),
        id("email", "a@x.com"),
        id("device_id", "d"),
    ];
    assert_eq!(g.primary(&ids), Some(&ids[2]));
    let with_user = [ids[0].clone(), id("user_id", "null"), id("crm_id", "c-1")];
    assert_eq!(g.primary(&with_user), Some(&with_user[2]));
    let custom = Guardrails::default().with_priority(IdentifierKind::AnonymousId, 1);
    assert_eq!(IdentityGraph::new(custom).primary(&ids), Some(&ids[0]));
    assert_eq!(g.primary(&[]), None);
}
