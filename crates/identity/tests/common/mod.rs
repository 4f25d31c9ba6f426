//! Helpers shared by the identity tests, and a naive reference implementation of the graph:
//! sort all evidence canonically and replay it over plain `BTreeMap`s and sets, with no
//! interning, union-find, components or incremental logic.

#![allow(dead_code)]

use omnitrail_identity::{
    Decision, Evidence, EvidenceId, Guardrails, IdentityGraph, Refusal, RefusalReason, Source,
};
use omnitrail_model::{CustomerId, Identifier, IdentifierKind, Timestamp};
use std::collections::{BTreeMap, BTreeSet};

pub fn id(kind: &str, value: &str) -> Identifier {
    Identifier {
        kind: IdentifierKind::parse(kind).unwrap(),
        value: value.to_string(),
    }
}

pub fn at(secs: i64) -> Timestamp {
    Timestamp::from_secs(1_700_000_000 + secs)
}

pub fn ev(secs: i64, event: &str, ids: &[Identifier]) -> Evidence {
    Evidence {
        source: Source::Event,
        at: at(secs),
        event: Some(event.to_string()),
        identifiers: ids.to_vec(),
    }
}

/// Every evidence of a graph by identifier set: (evidence, decision, refusals).
pub type Outcomes = BTreeMap<Vec<Identifier>, (Evidence, Decision, Vec<Refusal>)>;

pub fn outcomes(g: &IdentityGraph) -> Outcomes {
    (0..g.stats().evidence)
        .map(|i| {
            let (e, d) = g.evidence(EvidenceId(i)).unwrap();
            let r = g.refusals(EvidenceId(i)).unwrap();
            (e.identifiers.clone(), (e, d, r))
        })
        .collect()
}

pub fn overlay(g: &IdentityGraph) -> Vec<(CustomerId, CustomerId)> {
    g.overlay().collect()
}

#[derive(Debug, PartialEq, Eq)]
pub struct Reference {
    pub clusters: Vec<Vec<Identifier>>,
    pub overlay: Vec<(CustomerId, CustomerId)>,
    pub outcomes: Outcomes,
}

fn link_key(g: &Guardrails, id: &Identifier) -> (u32, String, IdentifierKind) {
    (g.priority(&id.kind), id.value.clone(), id.kind.clone())
}

/// The graph as the specification describes it, computed the slow and obvious way.
pub fn reference(
    g: &Guardrails,
    evidence: &[Evidence],
    revoked: &BTreeSet<Vec<Identifier>>,
    keys: &[(Identifier, CustomerId)],
) -> Reference {
    let blocks = IdentityGraph::new(g.clone());
    let blocked = |id: &Identifier| blocks.is_blocked(id);
    let weak = |id: &Identifier| g.is_weak(&id.kind);

    // One evidence per identifier set, keeping the earliest origin.
    let mut sets: BTreeMap<Vec<Identifier>, Evidence> = BTreeMap::new();
    for e in evidence {
        let mut ids = e.identifiers.clone();
        ids.sort();
        ids.dedup();
        let e = Evidence {
            identifiers: ids.clone(),
            ..e.clone()
        };
        let keep_old = sets
            .get(&ids)
            .is_some_and(|old| (old.at, old.source, &old.event) <= (e.at, e.source, &e.event));
        if !keep_old {
            sets.insert(ids, e);
        }
    }

    let mut cluster_of: BTreeMap<Identifier, usize> = BTreeMap::new();
    let mut members: Vec<BTreeSet<Identifier>> = Vec::new();
    let all_ids = sets
        .keys()
        .flatten()
        .chain(keys.iter().map(|(i, _)| i))
        .cloned()
        .collect::<BTreeSet<_>>();
    for i in all_ids {
        cluster_of.insert(i.clone(), members.len());
        members.push(BTreeSet::from([i]));
    }

    let mut order: Vec<&Evidence> = sets
        .values()
        .filter(|e| !revoked.contains(&e.identifiers))
        .collect();
    order.sort_by(|a, b| (a.at, &a.identifiers).cmp(&(b.at, &b.identifiers)));

    let mut outcomes = Outcomes::new();
    for e in sets.values().filter(|e| revoked.contains(&e.identifiers)) {
        outcomes.insert(
            e.identifiers.clone(),
            (e.clone(), Decision::Revoked, vec![]),
        );
    }
    for e in order {
        let mut refusals: Vec<Refusal> = Vec::new();
        let mut link: Vec<&Identifier> = Vec::new();
        for i in &e.identifiers {
            if blocked(i) {
                refusals.push(Refusal {
                    identifier: i.clone(),
                    reason: RefusalReason::Blocklisted,
                });
            } else {
                link.push(i);
            }
        }
        link.sort_by_key(|i| link_key(g, i));
        let (mut linked, mut merged) = (0, false);
        if let Some(first) = link.first() {
            let c = cluster_of[*first];
            linked = 1;
            for x in &link[1..] {
                let xc = cluster_of[*x];
                if xc == c {
                    linked += 1;
                    continue;
                }
                let strong = |cl: usize| members[cl].iter().any(|m| !weak(m));
                if strong(c) && strong(xc) {
                    let in_c = link.iter().any(|m| !weak(m) && cluster_of[*m] == c);
                    let in_x = link.iter().any(|m| !weak(m) && cluster_of[*m] == xc);
                    if !(in_c && in_x) {
                        let via = if weak(x) {
                            (*x).clone()
                        } else {
                            (*link
                                .iter()
                                .find(|m| weak(m) && cluster_of[**m] == c)
                                .unwrap())
                            .clone()
                        };
                        refusals.push(Refusal {
                            identifier: (*x).clone(),
                            reason: RefusalReason::WeakLink { via },
                        });
                        continue;
                    }
                }
                let mut counts: BTreeMap<IdentifierKind, usize> = BTreeMap::new();
                for m in members[c].iter().chain(&members[xc]) {
                    *counts.entry(m.kind.clone()).or_default() += 1;
                }
                let worst = counts
                    .iter()
                    .filter(|(k, n)| **n > g.limit(k))
                    .min_by_key(|(k, _)| (g.priority(k), (*k).clone()));
                if let Some((k, n)) = worst {
                    refusals.push(Refusal {
                        identifier: (*x).clone(),
                        reason: RefusalReason::Limit {
                            kind: k.as_str().into_owned(),
                            would_have: *n,
                            limit: g.limit(k),
                        },
                    });
                    continue;
                }
                let moved = std::mem::take(&mut members[xc]);
                for m in &moved {
                    cluster_of.insert(m.clone(), c);
                }
                members[c].extend(moved);
                merged = true;
                linked += 1;
            }
        }
        refusals.sort_by_key(|r| link_key(g, &r.identifier));
        let decision = if linked >= 2 {
            Decision::Linked { merged }
        } else if let Some(r) = refusals.first() {
            Decision::Refused(r.clone())
        } else {
            Decision::Single
        };
        outcomes.insert(e.identifiers.clone(), (e.clone(), decision, refusals));
    }

    let mut clusters: Vec<Vec<Identifier>> = members
        .iter()
        .filter(|m| !m.is_empty())
        .map(|m| m.iter().cloned().collect())
        .collect();
    clusters.sort();
    let mut overlay: Vec<(CustomerId, CustomerId)> = keys
        .iter()
        .filter_map(|(i, k)| {
            let canonical = members[cluster_of[i]]
                .iter()
                .filter_map(|m| keys.iter().find(|(ki, _)| ki == m).map(|(_, kk)| *kk))
                .min()
                .unwrap();
            (canonical != *k).then_some((*k, canonical))
        })
        .collect();
    overlay.sort();
    Reference {
        clusters,
        overlay,
        outcomes,
    }
}

/// The graph's view, in the reference's shape.
pub fn observed(g: &IdentityGraph) -> Reference {
    Reference {
        clusters: g.clusters(),
        overlay: overlay(g),
        outcomes: outcomes(g),
    }
}
