//! Incremental evaluation of one rule for one customer.
//!
//! Semantics (the reference evaluator in `tests/properties.rs` spells them out by brute
//! force):
//! - Events are ordered by `(time, key)`; the key is the event's stable hash, so ties in
//!   time have one order everywhere.
//! - A *completion* is an event matching the last step. It has a chain when there are
//!   events e1 < e2 < … < en = completion, each matching its step, each within its step's
//!   `within` of the previous one. Of all chains the one reported (and whose steps anchor
//!   the unless windows) is the latest: e(n-1) as late as possible, then e(n-2), and so on.
//! - An unless clause fails the chain when a matching event lies after its anchor step's
//!   event and no later than `within` after it (or, without `within`, before the
//!   completion).
//! - Completions are decided in order. One fires when it has a chain, no unless clause
//!   fails, the customer filter holds as of the completion (latest trait values up to
//!   it), and no earlier firing lies within `cooldown` of it.
//! - Live evaluation decides a completion once `now` passes its decision time: the end of
//!   its last unless window (at least the completion itself) plus `tolerance`, so events
//!   arriving up to `tolerance` late are still taken into account (strictly after it, so
//!   an event arriving exactly at the decision time still counts). A completion decided
//!   more than `stale_after` after its decision time is history and does not fire live.

use crate::rule::{Literal, Rule};
use omnitrail_model::Event;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// Most events one customer's state keeps per rule: a customer (or a bot) producing more
/// matching events than this within a rule's span has only the newest ones considered.
pub const MAX_EVENTS: usize = 512;

/// An event's place in the order: its time (UTC µs) and its stable key.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct At {
    pub time: i64,
    pub key: u64,
}

/// What a rule needs to know of one event: which steps and unless clauses it matches
/// (one bit each) and the values of traits the customer filter names.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Obs {
    pub at: At,
    #[serde(default)]
    pub steps: u16,
    #[serde(default)]
    pub unless: u16,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub traits: Vec<(String, Literal)>,
}

/// A customer's evaluation state for one rule: serializable, mergeable.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct State {
    /// Matching events still within reach of an undecided or future firing, sorted.
    #[serde(default)]
    pub events: Vec<Obs>,
    /// Completions already decided (fired or not), sorted.
    #[serde(default)]
    pub decided: Vec<At>,
    /// Completions that fired, sorted.
    #[serde(default)]
    pub fired: Vec<At>,
    /// Trait values of events no longer kept, with when they were seen.
    #[serde(default)]
    pub traits: BTreeMap<String, (At, Literal)>,
}

/// A decision to act.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Firing {
    /// Deterministic: the same rule and completing event always give the same id, so a
    /// firing recorded twice (a restart re-evaluating) is recognised.
    pub id: String,
    pub rule: String,
    pub completion: At,
    /// The chain's events, first step first.
    pub chain: Vec<At>,
}

/// What a poll decided, and when the next undecided completion is due.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Poll {
    pub firings: Vec<Firing>,
    pub next_deadline: Option<i64>,
}

/// The stable key of an event: its client id if it has one, else its content.
pub fn event_key(e: &Event) -> u64 {
    let mut h = Sha256::new();
    match &e.event_id {
        Some(id) => {
            h.update(b"id:");
            h.update(id.as_bytes());
        }
        None => {
            h.update(b"content:");
            h.update(e.to_json().to_string().as_bytes());
        }
    }
    let d = h.finalize();
    u64::from_be_bytes(d[..8].try_into().expect("8 bytes"))
}

/// The firing id of a rule completed by an event.
pub fn firing_id(rule: &str, completion: u64) -> String {
    let mut h = Sha256::new();
    h.update(rule.as_bytes());
    h.update(b"\0");
    h.update(completion.to_be_bytes());
    let d = h.finalize();
    let hex: String = d[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("fir_{hex}")
}

/// A rule compiled for evaluation.
#[derive(Clone, Debug)]
pub struct Evaluator {
    rule: Rule,
    /// `within` of each step in µs (0 for the first).
    within: Vec<i64>,
    /// Each unless clause's anchor step (0-based) and window length.
    unless: Vec<(usize, Option<i64>)>,
    /// How far back of `now` events can still matter.
    retention: i64,
    /// Live evaluation skips stale completions; replays decide everything.
    live: bool,
}

impl Evaluator {
    pub fn new(rule: &Rule) -> Evaluator {
        let within = rule
            .steps
            .iter()
            .map(|s| s.within.map_or(0, |w| w.micros()))
            .collect();
        let unless = rule
            .unless
            .iter()
            .map(|u| (u.after - 1, u.within.map(|w| w.micros())))
            .collect();
        let retention = rule.span().micros()
            + rule.tolerance.micros()
            + rule.stale_after.micros()
            + rule.cooldown.micros();
        Evaluator {
            rule: rule.clone(),
            within,
            unless,
            retention,
            live: true,
        }
    }

    /// An evaluator for replays over history: nothing is too old to decide.
    pub fn replaying(rule: &Rule) -> Evaluator {
        Evaluator {
            live: false,
            ..Evaluator::new(rule)
        }
    }

    pub fn rule(&self) -> &Rule {
        &self.rule
    }

    /// What the rule sees of `e` (keyed `key`), or `None` when it does not concern it.
    pub fn observation(&self, e: &Event, key: u64) -> Option<Obs> {
        let mut steps = 0u16;
        for (i, s) in self.rule.steps.iter().enumerate() {
            if s.filter.matches(e) {
                steps |= 1 << i;
            }
        }
        let mut unless = 0u16;
        for (i, u) in self.rule.unless.iter().enumerate() {
            if u.filter.matches(e) {
                unless |= 1 << i;
            }
        }
        let traits: Vec<(String, Literal)> = self
            .rule
            .customer
            .traits
            .keys()
            .filter_map(|name| {
                let v = e.traits.get(name.as_str())?;
                let lit = match v {
                    omnitrail_model::Value::Str(s) => Literal::Str(s.to_string()),
                    omnitrail_model::Value::Num(n) => Literal::Num(*n),
                    omnitrail_model::Value::Bool(b) => Literal::Bool(*b),
                };
                Some((name.clone(), lit))
            })
            .collect();
        if steps == 0 && unless == 0 && traits.is_empty() {
            return None;
        }
        Some(Obs {
            at: At {
                time: e.timestamp.as_micros(),
                key,
            },
            steps,
            unless,
            traits,
        })
    }

    /// Adds an observation (ignored when already known or too old to matter) and decides
    /// what is due at `now`.
    pub fn observe(&self, st: &mut State, obs: Obs, now: i64) -> Poll {
        if obs.at.time >= now.saturating_sub(self.retention) {
            if let Err(i) = st.events.binary_search_by(|o| o.at.cmp(&obs.at)) {
                st.events.insert(i, obs);
            }
        }
        self.poll(st, now)
    }

    /// Combines the state of a customer merged into this one: both histories count.
    /// Completions that fired on either side stay decided (a firing is never repeated);
    /// the others are decided again, as the joined history may now complete them.
    pub fn merge(&self, into: &mut State, other: State, now: i64) -> Poll {
        for o in other.events {
            if let Err(i) = into.events.binary_search_by(|x| x.at.cmp(&o.at)) {
                into.events.insert(i, o);
            }
        }
        merge_sorted(&mut into.fired, other.fired);
        into.decided = into.fired.clone();
        for (k, v) in other.traits {
            match into.traits.get(&k) {
                Some(mine) if mine.0 >= v.0 => {}
                _ => {
                    into.traits.insert(k, v);
                }
            }
        }
        self.poll(into, now)
    }

    /// Decides every completion due at `now`, in order.
    pub fn poll(&self, st: &mut State, now: i64) -> Poll {
        let out = self.decide(st, now);
        // Only after deciding: a completion decided late still sees its whole chain.
        self.prune(st, now);
        out
    }

    fn decide(&self, st: &mut State, now: i64) -> Poll {
        let n = self.rule.steps.len();
        let last = 1u16 << (n - 1);
        // Latest-chain links: for each event, its predecessor for each step it can end.
        let mut pred: Vec<[Option<u16>; crate::rule::MAX_STEPS]> =
            vec![[None; crate::rule::MAX_STEPS]; st.events.len()];
        let mut valid = vec![0u16; st.events.len()];
        let mut last_valid: [Option<usize>; crate::rule::MAX_STEPS] =
            [None; crate::rule::MAX_STEPS];
        for (j, o) in st.events.iter().enumerate() {
            for s in (0..n).rev() {
                if o.steps & (1 << s) == 0 {
                    continue;
                }
                if s == 0 {
                    valid[j] |= 1;
                    last_valid[0] = Some(j);
                } else if let Some(p) = last_valid[s - 1] {
                    if o.at.time - st.events[p].at.time <= self.within[s] {
                        valid[j] |= 1 << s;
                        pred[j][s] = Some(p as u16);
                        last_valid[s] = Some(j);
                    }
                }
            }
        }
        let mut out = Poll::default();
        for (j, &valid_steps) in valid.iter().enumerate() {
            let c = &st.events[j];
            if c.steps & last == 0 || st.decided.binary_search(&c.at).is_ok() {
                continue;
            }
            let chain = (valid_steps & last != 0).then(|| {
                let mut idx = vec![j];
                let mut cur = j;
                for s in (1..n).rev() {
                    cur = pred[cur][s].expect("a valid step has its predecessor") as usize;
                    idx.push(cur);
                }
                idx.reverse();
                idx
            });
            let windows: Vec<(At, i64)> = match &chain {
                Some(idx) => self
                    .unless
                    .iter()
                    .map(|&(a, w)| {
                        let anchor = st.events[idx[a]].at;
                        (anchor, w.map_or(c.at.time, |w| anchor.time + w))
                    })
                    .collect(),
                None => Vec::new(),
            };
            let due = windows
                .iter()
                .map(|w| w.1)
                .fold(c.at.time, i64::max)
                .saturating_add(self.rule.tolerance.micros());
            if now <= due {
                out.next_deadline = Some(due);
                break;
            }
            let at = c.at;
            let fires = chain.is_some() && {
                let clear = windows.iter().enumerate().all(|(u, &(anchor, end))| {
                    !st.events.iter().any(|e| {
                        e.unless & (1 << u) != 0
                            && e.at > anchor
                            && if self.unless[u].1.is_some() {
                                e.at.time <= end
                            } else {
                                e.at < at
                            }
                    })
                });
                let cooled = !st
                    .fired
                    .iter()
                    .any(|f| *f != at && (f.time - at.time).abs() < self.rule.cooldown.micros());
                let fresh = !self.live || now - due <= self.rule.stale_after.micros();
                clear && cooled && fresh && self.customer_matches(st, at)
            };
            insert_sorted(&mut st.decided, at);
            if fires {
                insert_sorted(&mut st.fired, at);
                out.firings.push(Firing {
                    id: firing_id(&self.rule.name, at.key),
                    rule: self.rule.name.clone(),
                    completion: at,
                    chain: chain
                        .expect("fires only with a chain")
                        .into_iter()
                        .map(|i| st.events[i].at)
                        .collect(),
                });
            }
        }
        out
    }

    /// When the next undecided completion is due, without deciding anything.
    pub fn next_deadline(&self, st: &State) -> Option<i64> {
        let mut probe = st.clone();
        self.poll(&mut probe, i64::MIN / 4).next_deadline
    }

    fn customer_matches(&self, st: &State, at: At) -> bool {
        self.rule.customer.traits.iter().all(|(name, allowed)| {
            let mut latest: Option<(At, &Literal)> = st.traits.get(name).map(|(a, v)| (*a, v));
            for o in st.events.iter().take_while(|o| o.at <= at) {
                for (k, v) in &o.traits {
                    if k == name && latest.is_none_or(|(a, _)| o.at >= a) {
                        latest = Some((o.at, v));
                    }
                }
            }
            latest.is_some_and(|(_, v)| allowed.contains(v))
        })
    }

    /// Forgets what can no longer matter at `now`, folding old trait values into the
    /// baseline, and keeps at most [`MAX_EVENTS`] events.
    fn prune(&self, st: &mut State, now: i64) {
        let cutoff = now.saturating_sub(self.retention);
        let keep_from = st
            .events
            .iter()
            .position(|o| o.at.time >= cutoff)
            .unwrap_or(st.events.len())
            .max(st.events.len().saturating_sub(MAX_EVENTS));
        for o in st.events.drain(..keep_from) {
            for (k, v) in o.traits {
                match st.traits.get(&k) {
                    Some((a, _)) if *a > o.at => {}
                    _ => {
                        st.traits.insert(k, (o.at, v));
                    }
                }
            }
        }
        st.decided.retain(|a| a.time >= cutoff);
        st.fired.retain(|a| a.time >= cutoff);
    }
}

fn insert_sorted(v: &mut Vec<At>, at: At) {
    if let Err(i) = v.binary_search(&at) {
        v.insert(i, at);
    }
}

fn merge_sorted(v: &mut Vec<At>, other: Vec<At>) {
    v.extend(other);
    v.sort_unstable();
    v.dedup();
}

/// Runs a rule over one customer's history (sorted or not) as if each event had arrived
/// at its own time, and decides everything at the end. No side effects.
pub fn replay(eval: &Evaluator, events: &[Obs]) -> Vec<Firing> {
    let mut sorted: Vec<&Obs> = events.iter().collect();
    sorted.sort_by_key(|o| o.at);
    let mut st = State::default();
    let mut out = Vec::new();
    for o in sorted {
        out.extend(eval.observe(&mut st, o.clone(), o.at.time).firings);
    }
    let end = st.events.last().map_or(0, |o| o.at.time);
    let horizon = eval.rule.span().micros() + eval.rule.tolerance.micros() + 1;
    out.extend(eval.poll(&mut st, end.saturating_add(horizon)).firings);
    out
}
