//! Friction, root causes and channel performance against brute-force reference
//! implementations: named cases in the journey DSL, and property tests on random journeys
//! spread over random partition splits (which also proves partials merge exactly).

use omnitrail_engine::channel_performance::{
    channel_performance, ChannelPerformance, ChannelPerformanceOptions, PreferenceBreakdown,
};
use omnitrail_engine::friction::{friction, Friction, FrictionOptions, SignalParams};
use omnitrail_engine::root_cause::{CustomerLabels, RootCauseOptions};
use omnitrail_engine::testing::{Fixture, FixtureCustomer, FixtureEvent, FixtureValue, BASE};
use omnitrail_engine::{CaseSplit, Prepared, Query, Stages, StepDimension};
use omnitrail_model::CustomerId;
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet, HashMap};

const MIN: i64 = 60_000_000;
const HOUR: i64 = 60 * MIN;
const DAY: i64 = 24 * HOUR;

// ---------------------------------------------------------------------------------------
// The reference: plain events, nested loops, sorting.

#[derive(Clone, Debug)]
struct Ev {
    ts: i64,
    step: String,
    channel: String,
    activity: String,
    props: BTreeMap<String, FixtureValue>,
}

impl Ev {
    fn text(&self, name: &str) -> Option<String> {
        match self.props.get(name) {
            Some(FixtureValue::Text(t)) => Some(t.clone()),
            _ => None,
        }
    }
    fn num(&self, name: &str) -> Option<f64> {
        match self.props.get(name) {
            Some(FixtureValue::Num(x)) => Some(*x),
            _ => None,
        }
    }
}

fn step_of(e: &FixtureEvent, step: &StepDimension) -> Option<String> {
    match step {
        StepDimension::Activity => Some(e.activity.clone()),
        StepDimension::Channel => Some(e.channel.clone()),
        StepDimension::Touchpoint => Some(format!("{}:{}", e.channel, e.activity)),
        StepDimension::Property(p) => match e.properties.get(p) {
            Some(FixtureValue::Text(t)) => Some(t.clone()),
            _ => None,
        },
        StepDimension::Stage => unreachable!("not used here"),
    }
}

/// Cases in customer order (customer id, events), as the query semantics say.
fn cases(f: &Fixture, q: &Query, step: &StepDimension) -> Vec<(u64, Vec<Ev>)> {
    let mut out = Vec::new();
    for c in &f.customers {
        let evs: Vec<&FixtureEvent> = c
            .events
            .iter()
            .filter(|e| q.from.is_none_or(|t| e.ts >= t) && q.to.is_none_or(|t| e.ts < t))
            .collect();
        let mut split: Vec<Vec<&FixtureEvent>> = Vec::new();
        match &q.case {
            CaseSplit::Customer => split.push(evs),
            CaseSplit::Gap(g) => {
                for (i, e) in evs.iter().enumerate() {
                    if i == 0 || e.ts - evs[i - 1].ts > *g {
                        split.push(Vec::new());
                    }
                    split.last_mut().unwrap().push(e);
                }
            }
            CaseSplit::Property(_) => unreachable!("not used here"),
        }
        for case in split {
            let evs: Vec<Ev> = case
                .iter()
                .filter_map(|e| {
                    step_of(e, step).map(|s| Ev {
                        ts: e.ts,
                        step: s,
                        channel: e.channel.clone(),
                        activity: e.activity.clone(),
                        props: e.properties.clone(),
                    })
                })
                .collect();
            if !evs.is_empty() {
                out.push((c.id.0, evs));
            }
        }
    }
    out
}

fn ref_quantile(values: &[i64], q: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut v = values.to_vec();
    v.sort();
    let pos = q * (v.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    Some(v[lo] as f64 + (v[hi] - v[lo]) as f64 * (pos - lo as f64))
}

fn micros(s: f64) -> i64 {
    (s * 1e6).round() as i64
}

fn fixed(s: f64) -> i128 {
    (s * 1e9).round() as i128
}

/// Per event: [failure, repeat, loop, jump, abandon, long wait, negative], and evidence.
#[derive(Clone, Copy, Default, Debug)]
struct RefFlags {
    sig: [bool; 7],
    contact: bool,
    resolved: bool,
    has_outcome: bool,
}

fn channel_medians(all: &[(u64, Vec<Ev>)]) -> HashMap<String, f64> {
    let mut waits: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for (_, evs) in all {
        for e in evs {
            if let Some(w) = e.num("wait_seconds") {
                waits.entry(e.channel.clone()).or_default().push(micros(w));
            }
        }
    }
    waits
        .into_iter()
        .map(|(c, v)| (c, ref_quantile(&v, 0.5).unwrap()))
        .collect()
}

fn ref_flags(evs: &[Ev], p: &SignalParams, medians: &HashMap<String, f64>) -> Vec<RefFlags> {
    let n = evs.len();
    let outcome = |k: usize| evs[k].text("outcome");
    let goal = |k: usize| {
        matches!(outcome(k).as_deref(), Some("success" | "resolved"))
            || p.goal_activities.contains(&evs[k].activity)
    };
    let contact = |k: usize| {
        p.assisted_channels.contains(&evs[k].channel)
            && outcome(k).is_some()
            && evs[k].text("topic").is_some()
    };
    let last_ts = evs[n - 1].ts;
    (0..n)
        .map(|k| {
            let e = &evs[k];
            let failure = outcome(k).as_deref() == Some("failure");
            let repeat = contact(k)
                && (k + 1..n).any(|m| {
                    contact(m)
                        && evs[m].text("topic") == e.text("topic")
                        && evs[m].ts - e.ts <= p.repeat_window
                });
            let looped = (0..k).any(|m| evs[m].step == e.step && e.ts - evs[m].ts <= p.loop_window);
            let jump = failure
                && (k + 1..n)
                    .any(|m| evs[m].channel != e.channel && evs[m].ts - e.ts <= p.jump_window);
            let abandon = last_ts - e.ts <= p.abandon_window && !(k..n).any(goal);
            let long_wait = e.num("wait_seconds").is_some_and(|w| {
                medians
                    .get(&e.channel)
                    .is_some_and(|m| w > p.long_wait_factor * m / 1e6)
            });
            let negative = e.num("sentiment").is_some_and(|s| s < p.negative_sentiment);
            RefFlags {
                sig: [failure, repeat, looped, jump, abandon, long_wait, negative],
                contact: contact(k),
                resolved: matches!(outcome(k).as_deref(), Some("success" | "resolved")),
                has_outcome: outcome(k).is_some(),
            }
        })
        .collect()
}

#[derive(Debug, PartialEq)]
struct RefPoint {
    step: String,
    events: u64,
    customers: u64,
    affected: u64,
    flagged: [u64; 7],
    eligible: [u64; 7],
    signal_customers: [u64; 7],
    examples: Vec<u64>,
    score: f64,
    p90: Option<f64>,
    norm: Option<f64>,
    mean_sentiment: Option<f64>,
}

fn ref_friction(f: &Fixture, q: &Query, o: &FrictionOptions) -> Vec<RefPoint> {
    let all = cases(f, q, &q.step);
    let medians = channel_medians(&all);
    let mut by_step: BTreeMap<String, Vec<(u64, &Ev, RefFlags)>> = BTreeMap::new();
    for (c, evs) in &all {
        let flags = ref_flags(evs, &o.signals, &medians);
        for (e, fl) in evs.iter().zip(flags) {
            by_step.entry(e.step.clone()).or_default().push((*c, e, fl));
        }
    }
    let w = &o.weights;
    let weights = [
        w.failure,
        w.repeat_contact,
        w.loops,
        w.channel_jump,
        w.abandonment,
        w.long_wait,
        w.negative_sentiment,
    ];
    let mut points: Vec<RefPoint> = by_step
        .into_iter()
        .map(|(step, rows)| {
            let events = rows.len() as u64;
            let customers = rows.iter().map(|r| r.0).collect::<BTreeSet<_>>().len() as u64;
            let affected_set: BTreeSet<u64> = rows
                .iter()
                .filter(|r| r.2.sig.iter().any(|&b| b))
                .map(|r| r.0)
                .collect();
            let contacts = rows.iter().filter(|r| r.2.contact).count() as u64;
            let with_wait = rows
                .iter()
                .filter(|r| r.1.num("wait_seconds").is_some())
                .count() as u64;
            let sents: Vec<f64> = rows.iter().filter_map(|r| r.1.num("sentiment")).collect();
            let eligible = [
                events,
                contacts,
                events,
                events,
                events,
                with_wait,
                sents.len() as u64,
            ];
            let flagged: [u64; 7] =
                std::array::from_fn(|i| rows.iter().filter(|r| r.2.sig[i]).count() as u64);
            let signal_customers: [u64; 7] = std::array::from_fn(|i| {
                rows.iter()
                    .filter(|r| r.2.sig[i])
                    .map(|r| r.0)
                    .collect::<BTreeSet<_>>()
                    .len() as u64
            });
            let severity: f64 = (0..7)
                .map(|i| {
                    weights[i]
                        * if eligible[i] == 0 {
                            0.0
                        } else {
                            flagged[i] as f64 / eligible[i] as f64
                        }
                })
                .sum();
            let waits: Vec<i64> = rows
                .iter()
                .filter_map(|r| r.1.num("wait_seconds").map(micros))
                .collect();
            let norm_sum: i128 = rows
                .iter()
                .filter(|r| r.1.num("wait_seconds").is_some())
                .map(|r| (medians[&r.1.channel] * 2.0).round() as i128)
                .sum();
            RefPoint {
                step,
                events,
                customers,
                affected: affected_set.len() as u64,
                flagged,
                eligible,
                signal_customers,
                examples: affected_set.iter().take(5).copied().collect(),
                score: severity * affected_set.len() as f64,
                p90: ref_quantile(&waits, 0.9).map(|x| x / 1e6),
                norm: (with_wait > 0).then(|| norm_sum as f64 / 2.0 / with_wait as f64 / 1e6),
                mean_sentiment: (!sents.is_empty()).then(|| {
                    sents.iter().map(|&s| fixed(s)).sum::<i128>() as f64 / 1e9 / sents.len() as f64
                }),
            }
        })
        .filter(|p| p.score > 0.0)
        .collect();
    points.sort_by(|a, b| {
        b.score
            .total_cmp(&a.score)
            .then_with(|| a.step.cmp(&b.step))
    });
    points.truncate(o.top);
    points
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

fn close_opt(a: Option<f64>, b: Option<f64>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => close(a, b),
        (None, None) => true,
        _ => false,
    }
}

fn run_friction(
    f: &Fixture,
    parts: usize,
    assign: &[usize],
    q: &Query,
    o: &FrictionOptions,
    extra: &[CustomerLabels],
) -> Friction {
    let partitions = f.partitions_by(parts, |i| assign[i % assign.len()] % parts);
    let prepared = Prepared::new(&partitions, &Stages::default(), q).unwrap();
    friction(&prepared, o, extra).unwrap()
}

fn check_friction(f: &Fixture, parts: usize, assign: &[usize], q: &Query, o: &FrictionOptions) {
    let got = run_friction(f, parts, assign, q, o, &[]);
    let want = ref_friction(f, q, o);
    assert_eq!(
        got.points.len(),
        want.len(),
        "{:#?}\n{:#?}",
        got.points,
        want
    );
    for (g, w) in got.points.iter().zip(&want) {
        assert_eq!(g.step, w.step);
        assert_eq!(
            (g.events, g.customers, g.affected_customers),
            (w.events, w.customers, w.affected),
            "{}",
            g.step
        );
        let s = &g.signals;
        let sigs = [
            s.failure,
            s.repeat_contact,
            s.loops,
            s.channel_jump,
            s.abandonment,
            s.long_wait,
            s.negative_sentiment,
        ];
        for (i, sig) in sigs.iter().enumerate() {
            assert_eq!(sig.events, w.flagged[i], "{} signal {i}", g.step);
            assert_eq!(sig.eligible, w.eligible[i], "{} signal {i}", g.step);
            assert_eq!(
                sig.customers, w.signal_customers[i],
                "{} signal {i}",
                g.step
            );
        }
        assert!(
            close(g.score, w.score),
            "{}: {} vs {}",
            g.step,
            g.score,
            w.score
        );
        assert_eq!(g.examples, w.examples, "{}", g.step);
        assert!(close_opt(g.wait_p90_s, w.p90), "{}", g.step);
        assert!(close_opt(g.wait_norm_s, w.norm), "{}", g.step);
        assert!(close_opt(g.mean_sentiment, w.mean_sentiment), "{}", g.step);
    }
}

// ---------------------------------------------------------------------------------------
// Root causes.

#[derive(Debug, PartialEq)]
struct RefCause {
    dimension: String,
    value: String,
    support: u64,
    lift: f64,
}

/// The customer's current trait: the last value over all their events.
fn trait_of(c: &FixtureCustomer, name: &str) -> Option<String> {
    c.events
        .iter()
        .rev()
        .find_map(|e| e.traits.get(name).cloned())
}

/// A reference dimension: an event's (or a customer's) value.
type EventDim = Box<dyn Fn(&Ev) -> Option<String>>;
type CustomerDim<'a> = Box<dyn Fn(u64) -> Option<String> + 'a>;

fn ref_root_causes(
    f: &Fixture,
    q: &Query,
    o: &FrictionOptions,
    point: &str,
    extra: &[CustomerLabels],
) -> Vec<RefCause> {
    let all = cases(f, q, &q.step);
    let medians = channel_medians(&all);
    let rc = &o.root_cause;
    let distinct = |get: &dyn Fn(&FixtureEvent) -> Option<String>| -> usize {
        f.customers
            .iter()
            .flat_map(|c| &c.events)
            .filter_map(get)
            .collect::<BTreeSet<_>>()
            .len()
    };
    let mut out = Vec::new();
    // Event dimensions.
    let mut ev_dims: Vec<(String, EventDim)> = Vec::new();
    if rc.channel {
        ev_dims.push(("channel".into(), Box::new(|e: &Ev| Some(e.channel.clone()))));
    }
    for p in rc.properties.iter().cloned().collect::<BTreeSet<_>>() {
        let q2 = p.clone();
        let n = distinct(&move |e: &FixtureEvent| match e.properties.get(&q2) {
            Some(FixtureValue::Text(t)) => Some(t.clone()),
            _ => None,
        });
        if n == 0 || n > rc.max_values {
            continue;
        }
        ev_dims.push((p.clone(), Box::new(move |e: &Ev| e.text(&p))));
    }
    let mut rows = Vec::new();
    for (c, evs) in &all {
        let flags = ref_flags(evs, &o.signals, &medians);
        for (e, fl) in evs.iter().zip(flags) {
            rows.push((*c, e, fl.sig.iter().any(|&b| b)));
        }
    }
    for (name, get) in &ev_dims {
        let step_values: BTreeSet<String> = rows
            .iter()
            .filter(|r| r.1.step == point)
            .filter_map(|r| get(r.1))
            .collect();
        if step_values.len() <= 1 {
            continue;
        }
        let base: Vec<String> = rows.iter().filter_map(|r| get(r.1)).collect();
        let aff: Vec<String> = rows
            .iter()
            .filter(|r| r.1.step == point && r.2)
            .filter_map(|r| get(r.1))
            .collect();
        push_causes(&mut out, name, &aff, &base, rc.min_support);
    }
    // Customer dimensions.
    let affected: BTreeSet<u64> = rows
        .iter()
        .filter(|r| r.1.step == point && r.2)
        .map(|r| r.0)
        .collect();
    let in_query: BTreeSet<u64> = all.iter().map(|c| c.0).collect();
    let customer = |id: u64| f.customers.iter().find(|c| c.id.0 == id).unwrap();
    let mut cu_dims: Vec<(String, CustomerDim<'_>)> = Vec::new();
    for t in rc.traits.iter().cloned().collect::<BTreeSet<_>>() {
        let t2 = t.clone();
        let n = distinct(&move |e: &FixtureEvent| e.traits.get(&t2).cloned());
        if n == 0 || n > rc.max_values {
            continue;
        }
        cu_dims.push((
            format!("trait.{t}"),
            Box::new(move |id| trait_of(customer(id), &t)),
        ));
    }
    for l in extra {
        let n = l.labels.values().collect::<BTreeSet<_>>().len();
        if n == 0 || n > rc.max_values {
            continue;
        }
        cu_dims.push((
            l.name.clone(),
            Box::new(move |id| l.labels.get(&CustomerId(id)).cloned()),
        ));
    }
    for (name, get) in &cu_dims {
        let base: Vec<String> = in_query.iter().filter_map(|&c| get(c)).collect();
        let aff: Vec<String> = affected.iter().filter_map(|&c| get(c)).collect();
        push_causes(&mut out, name, &aff, &base, rc.min_support);
    }
    out.sort_by(|a, b| {
        b.1.total_cmp(&a.1)
            .then_with(|| b.0.lift.total_cmp(&a.0.lift))
            .then_with(|| a.0.dimension.cmp(&b.0.dimension))
            .then_with(|| a.0.value.cmp(&b.0.value))
    });
    out.into_iter().take(rc.per_point).map(|(c, _)| c).collect()
}

fn push_causes(
    out: &mut Vec<(RefCause, f64)>,
    name: &str,
    aff: &[String],
    base: &[String],
    min_support: u64,
) {
    if aff.is_empty() || base.is_empty() {
        return;
    }
    let values: BTreeSet<&String> = aff.iter().collect();
    for v in values {
        let support = aff.iter().filter(|x| *x == v).count() as u64;
        let b = base.iter().filter(|x| *x == v).count();
        if support < min_support.max(1) || b == 0 {
            continue;
        }
        let a_share = support as f64 / aff.len() as f64;
        let b_share = b as f64 / base.len() as f64;
        let lift = a_share / b_share;
        if lift > 1.0 {
            out.push((
                RefCause {
                    dimension: name.to_string(),
                    value: v.clone(),
                    support,
                    lift,
                },
                support as f64 - aff.len() as f64 * b_share,
            ));
        }
    }
}

fn check_root_causes(
    f: &Fixture,
    parts: usize,
    assign: &[usize],
    q: &Query,
    o: &FrictionOptions,
    extra: &[CustomerLabels],
) {
    let got = run_friction(f, parts, assign, q, o, extra);
    for p in got.points.iter().take(o.explain) {
        let want = ref_root_causes(f, q, o, &p.step, extra);
        let have: Vec<(String, String, u64)> = p
            .root_causes
            .iter()
            .map(|c| (c.dimension.clone(), c.value.clone(), c.support))
            .collect();
        let expect: Vec<(String, String, u64)> = want
            .iter()
            .map(|c| (c.dimension.clone(), c.value.clone(), c.support))
            .collect();
        assert_eq!(have, expect, "root causes of {}", p.step);
        for (g, w) in p.root_causes.iter().zip(&want) {
            assert!(close(g.lift, w.lift));
        }
    }
    for p in got.points.iter().skip(o.explain) {
        assert!(p.root_causes.is_empty());
    }
}

// ---------------------------------------------------------------------------------------
// Channel performance.

#[derive(Debug, PartialEq)]
struct RefChannel {
    channel: String,
    events: u64,
    customers: u64,
    contacts: u64,
    resolved: u64,
    assisted_contacts: u64,
    repeats: u64,
    abandoned: u64,
    sessions: u64,
    contained: u64,
    wait: Option<(f64, f64)>,
    handle: Option<(f64, f64)>,
}

fn ref_channels(f: &Fixture, q: &Query, o: &ChannelPerformanceOptions) -> Vec<RefChannel> {
    let all = cases(f, q, &StepDimension::Channel);
    let medians = channel_medians(&all);
    let mut acc: BTreeMap<String, RefChannel> = BTreeMap::new();
    let mut seen: BTreeMap<String, BTreeSet<u64>> = BTreeMap::new();
    let mut waits: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    let mut handles: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    let p = &o.signals;
    for (c, evs) in &all {
        let flags = ref_flags(evs, p, &medians);
        for (k, (e, fl)) in evs.iter().zip(&flags).enumerate() {
            let r = acc.entry(e.channel.clone()).or_insert_with(|| RefChannel {
                channel: e.channel.clone(),
                events: 0,
                customers: 0,
                contacts: 0,
                resolved: 0,
                assisted_contacts: 0,
                repeats: 0,
                abandoned: 0,
                sessions: 0,
                contained: 0,
                wait: None,
                handle: None,
            });
            r.events += 1;
            seen.entry(e.channel.clone()).or_default().insert(*c);
            let assisted = p.assisted_channels.contains(&e.channel);
            let contact = if assisted { fl.contact } else { fl.has_outcome };
            if contact {
                r.contacts += 1;
                r.resolved += u64::from(fl.resolved);
            }
            if fl.contact {
                r.assisted_contacts += 1;
                r.repeats += u64::from(fl.sig[1]);
            }
            r.abandoned += u64::from(fl.sig[4]);
            if p.bot_channels.contains(&e.channel)
                && (k + 1 == evs.len() || evs[k + 1].channel != e.channel)
            {
                r.sessions += 1;
                let human = (k + 1..evs.len()).any(|m| {
                    p.assisted_channels.contains(&evs[m].channel)
                        && evs[m].ts - e.ts <= o.containment_window
                });
                r.contained += u64::from(!human);
            }
            if let Some(w) = e.num("wait_seconds") {
                waits.entry(e.channel.clone()).or_default().push(micros(w));
            }
            if let Some(d) = e.num("duration_seconds") {
                handles
                    .entry(e.channel.clone())
                    .or_default()
                    .push(micros(d));
            }
        }
    }
    let spread = |v: Option<&Vec<i64>>| {
        v.map(|v| {
            (
                ref_quantile(v, 0.5).unwrap() / 1e6,
                ref_quantile(v, 0.9).unwrap() / 1e6,
            )
        })
    };
    let mut out: Vec<RefChannel> = acc
        .into_values()
        .map(|mut r| {
            r.customers = seen[&r.channel].len() as u64;
            r.wait = spread(waits.get(&r.channel));
            r.handle = spread(handles.get(&r.channel));
            r
        })
        .collect();
    out.sort_by(|a, b| {
        b.contacts
            .cmp(&a.contacts)
            .then_with(|| b.events.cmp(&a.events))
            .then_with(|| a.channel.cmp(&b.channel))
    });
    out
}

fn check_channels(
    f: &Fixture,
    parts: usize,
    assign: &[usize],
    q: &Query,
    o: &ChannelPerformanceOptions,
) -> ChannelPerformance {
    let partitions = f.partitions_by(parts, |i| assign[i % assign.len()] % parts);
    let got = channel_performance(&partitions, &Stages::default(), q, o).unwrap();
    let want = ref_channels(f, q, o);
    assert_eq!(got.channels.len(), want.len());
    for (g, w) in got.channels.iter().zip(&want) {
        assert_eq!(g.channel, w.channel);
        assert_eq!(
            (g.events, g.customers, g.contacts),
            (w.events, w.customers, w.contacts),
            "{}",
            g.channel
        );
        let rr = |a: u64, b: u64| if b == 0 { 0.0 } else { a as f64 / b as f64 };
        assert_eq!(
            g.resolution_rate,
            (w.contacts > 0).then(|| rr(w.resolved, w.contacts))
        );
        if g.assisted {
            assert_eq!(
                g.repeat_contact_rate,
                Some(rr(w.repeats, w.assisted_contacts))
            );
        }
        if let Some(c) = g.containment {
            assert_eq!(
                (c.sessions, c.contained),
                (w.sessions, w.contained),
                "{}",
                g.channel
            );
        }
        assert_eq!(g.abandonment_rate, rr(w.abandoned, w.events));
        assert_eq!(
            g.wait.map(|s| (s.median_s, s.p90_s)),
            w.wait,
            "{}",
            g.channel
        );
        assert_eq!(g.handle_time.map(|s| (s.median_s, s.p90_s)), w.handle);
        let unit = o.costs.get(&g.channel).copied();
        assert_eq!(g.cost, unit.map(|u| u * w.contacts as f64));
    }
    // Totals over every assisted and every bot channel.
    let assisted: Vec<&RefChannel> = want
        .iter()
        .filter(|w| o.signals.assisted_channels.contains(&w.channel))
        .collect();
    let sum = |v: &[&RefChannel], f: fn(&RefChannel) -> u64| v.iter().map(|w| f(w)).sum::<u64>();
    let rr = |a: u64, b: u64| if b == 0 { 0.0 } else { a as f64 / b as f64 };
    assert_eq!(
        got.totals.repeat_contact_rate,
        (!assisted.is_empty()).then(|| rr(
            sum(&assisted, |w| w.repeats),
            sum(&assisted, |w| w.assisted_contacts)
        ))
    );
    let bots: Vec<&RefChannel> = want
        .iter()
        .filter(|w| o.signals.bot_channels.contains(&w.channel))
        .collect();
    assert_eq!(
        got.totals.containment.map(|c| (c.sessions, c.contained)),
        (!bots.is_empty()).then(|| (sum(&bots, |w| w.sessions), sum(&bots, |w| w.contained)))
    );
    got
}

// ---------------------------------------------------------------------------------------
// Named cases.

const SHOP: &str = "\
    ana[plan=basic]: mobile_app:login_failed@0{outcome=failure, os=iOS} > phone:call_started@+5m{topic=login} > phone:call_ended@+10m{topic=login, outcome=escalated, wait_seconds=#700, sentiment=#-0.6} > phone:call_ended@+2d{topic=login, outcome=resolved, wait_seconds=#80, sentiment=#0.4}\n\
    bob[plan=premium]: mobile_app:login_failed@1h{outcome=failure, os=iOS} > mobile_app:login_failed@+2m{outcome=failure, os=iOS} > mobile_app:login@+2m{outcome=success, os=iOS}\n\
    cyd[plan=basic]: mobile_app:login@0{outcome=success, os=Android} > web:pay@+1h{outcome=failure} > social:complaint@+30m{sentiment=#-0.7}\n\
    dan[plan=premium]: chatbot:ask@0{topic=billing, outcome=failure, sentiment=#-0.5} > phone:call_ended@+10m{topic=billing, outcome=resolved, wait_seconds=#900}\n\
    eve[plan=basic]: chatbot:ask@0{topic=network, outcome=success} > web:view@+3h > web:view@+10m > mobile_app:login_failed@+1d{outcome=failure, os=Android}\n";

fn shop_options() -> FrictionOptions {
    FrictionOptions {
        root_cause: RootCauseOptions {
            properties: vec!["os".into(), "topic".into()],
            traits: vec!["plan".into()],
            min_support: 1,
            ..RootCauseOptions::default()
        },
        ..FrictionOptions::default()
    }
}

#[test]
fn shop_friction_matches_the_reference_for_every_dimension() {
    let f = Fixture::parse(SHOP);
    let o = shop_options();
    for step in ["touchpoint", "activity", "channel"] {
        for case in ["customer", "gap:30m"] {
            let mut q = Query::new(BASE);
            q.step = step.parse().unwrap();
            q.case = case.parse().unwrap();
            for parts in 1..4 {
                check_friction(&f, parts, &[0, 1, 2, 1, 0], &q, &o);
                check_root_causes(&f, parts, &[2, 0, 1], &q, &o, &[]);
            }
        }
    }
}

#[test]
fn shop_friction_reads_as_designed() {
    let f = Fixture::parse(SHOP);
    let mut q = Query::new(BASE);
    q.step = StepDimension::Touchpoint;
    let r = run_friction(&f, 2, &[0, 1], &q, &shop_options(), &[]);
    let login = r
        .points
        .iter()
        .find(|p| p.step == "mobile_app:login_failed")
        .unwrap();
    // Four failures of three customers; ana phoned within the hour, bob retried in the app.
    assert_eq!(login.signals.failure.events, 4);
    assert_eq!(login.signals.channel_jump.events, 1);
    assert_eq!(login.signals.loops.events, 1);
    assert_eq!(login.affected_customers, 3);
    assert_eq!(login.examples, [1, 2, 5]);
    // ana's escalated login call was followed by another on the same topic within 7d.
    let call = r
        .points
        .iter()
        .find(|p| p.step == "phone:call_ended")
        .unwrap();
    assert_eq!(call.signals.repeat_contact.events, 1);
    assert_eq!(call.signals.repeat_contact.eligible, 3);
    // Waits 700, 80, 900 on phone: median 700, so only a wait above 2100 s is long.
    assert_eq!(call.signals.long_wait.events, 0);
    assert_eq!(call.wait_norm_s, Some(700.0));
    // The web payment failure is followed by social within the hour: a jump.
    let pay = r.points.iter().find(|p| p.step == "web:pay").unwrap();
    assert_eq!(pay.signals.channel_jump.events, 1);
    // Root cause: 3 of 4 failed logins are on iOS against 4 of 6 events with an os.
    let ios = &login.root_causes[0];
    assert!((ios.lift - 0.75 / (4.0 / 6.0)).abs() < 1e-12);
    assert_eq!((ios.dimension.as_str(), ios.value.as_str()), ("os", "iOS"));
    assert_eq!(r.settings.repeat_window, "1w");
    assert_eq!(r.step, "touchpoint");
}

#[test]
fn friction_options_are_checked() {
    let f = Fixture::parse(SHOP);
    let parts = f.partitions(1);
    let p = Prepared::new(&parts, &Stages::default(), &Query::new(BASE)).unwrap();
    let mut o = FrictionOptions::default();
    o.signals.loop_window = 0;
    assert!(friction(&p, &o, &[])
        .unwrap_err()
        .to_string()
        .contains("loop_window"));
    let mut o = FrictionOptions::default();
    o.weights.long_wait = -1.0;
    assert!(friction(&p, &o, &[]).is_err());
    assert!(o
        .weights
        .set("speed", 1.0)
        .unwrap_err()
        .to_string()
        .contains("unknown signal 'speed'"));
}

#[test]
fn root_causes_take_customer_labels() {
    let f = Fixture::parse(SHOP);
    let mut q = Query::new(BASE);
    q.step = StepDimension::Touchpoint;
    let labels = CustomerLabels {
        name: "persona".into(),
        labels: [(1, "app"), (2, "app"), (3, "web"), (4, "bot"), (5, "bot")]
            .into_iter()
            .map(|(c, v)| (CustomerId(c), v.to_string()))
            .collect(),
    };
    let o = shop_options();
    check_root_causes(&f, 2, &[1, 0, 1], &q, &o, std::slice::from_ref(&labels));
    let r = run_friction(&f, 1, &[0], &q, &o, &[labels]);
    let login = r
        .points
        .iter()
        .find(|p| p.step == "mobile_app:login_failed")
        .unwrap();
    assert!(login
        .root_causes
        .iter()
        .any(|c| c.dimension == "persona" && c.value == "app"));
    assert!(r
        .root_cause_dimensions
        .iter()
        .any(|d| d.dimension == "persona" && d.used));
}

#[test]
fn shop_channel_performance_matches_the_reference() {
    let f = Fixture::parse(SHOP);
    let o = ChannelPerformanceOptions {
        costs: [("phone".to_string(), 6.5), ("chatbot".to_string(), 0.5)]
            .into_iter()
            .collect(),
        breakdown: Some(PreferenceBreakdown::Trait("plan".into())),
        ..ChannelPerformanceOptions::default()
    };
    for case in ["customer", "gap:30m"] {
        let mut q = Query::new(BASE);
        q.case = case.parse().unwrap();
        for parts in 1..4 {
            check_channels(&f, parts, &[0, 2, 1], &q, &o);
        }
    }
    let r = check_channels(&f, 2, &[0, 1], &Query::new(BASE), &o);
    let bot = r.channels.iter().find(|c| c.channel == "chatbot").unwrap();
    // dan's bot session ended in a call 10 minutes later; eve's did not.
    let c = bot.containment.unwrap();
    assert_eq!((c.sessions, c.contained), (2, 1));
    let phone = r.channels.iter().find(|c| c.channel == "phone").unwrap();
    assert_eq!(phone.contacts, 3);
    assert_eq!(phone.cost, Some(19.5));
    // Preference by plan: basic = ana, cyd, eve; premium = bob, dan.
    let basic = r.preference.iter().find(|g| g.value == "basic").unwrap();
    assert_eq!(basic.customers, 3);
    let premium = r.preference.iter().find(|g| g.value == "premium").unwrap();
    let app = premium
        .channels
        .iter()
        .find(|c| c.channel == "mobile_app")
        .unwrap();
    assert_eq!((app.customers, app.customer_share), (1, 0.5));
    assert_eq!(r.breakdown.as_deref(), Some("trait.plan"));
}

// ---------------------------------------------------------------------------------------
// Property tests.

fn random_fixture() -> impl Strategy<Value = Fixture> {
    let event = (
        prop::sample::select(vec![
            0i64,
            MIN,
            10 * MIN,
            50 * MIN,
            2 * HOUR,
            DAY,
            3 * DAY,
            9 * DAY,
        ]),
        prop::sample::select(vec!["login", "login_failed", "pay", "call", "ask"]),
        prop::sample::select(vec!["web", "mobile_app", "phone", "chat", "chatbot", "ivr"]),
        prop::option::of(prop::sample::select(vec![
            "success",
            "failure",
            "resolved",
            "escalated",
        ])),
        prop::option::of(prop::sample::select(vec!["billing", "network"])),
        prop::option::of(prop::sample::select(vec![-0.8, -0.3, 0.1, 0.6])),
        prop::option::of(prop::sample::select(vec![10.0, 30.0, 90.0, 95.5, 700.0])),
        prop::option::of(prop::sample::select(vec!["iOS", "Android"])),
    );
    let customer = (
        prop::collection::vec(event, 1..10),
        prop::option::of(prop::sample::select(vec!["basic", "premium"])),
    );
    prop::collection::vec(customer, 1..14).prop_map(|customers| Fixture {
        customers: customers
            .into_iter()
            .enumerate()
            .map(|(i, (evs, plan))| {
                let mut ts = BASE + i as i64 * 7 * MIN;
                let n = evs.len();
                let events = evs
                    .into_iter()
                    .enumerate()
                    .map(
                        |(k, (dt, activity, channel, outcome, topic, sent, wait, os))| {
                            ts += dt;
                            let mut props = BTreeMap::new();
                            let mut put = |k: &str, v: FixtureValue| {
                                props.insert(k.to_string(), v);
                            };
                            if let Some(o) = outcome {
                                put("outcome", FixtureValue::Text(o.into()));
                            }
                            if let Some(t) = topic {
                                put("topic", FixtureValue::Text(t.into()));
                            }
                            if let Some(s) = sent {
                                put("sentiment", FixtureValue::Num(s));
                            }
                            if let Some(w) = wait {
                                put("wait_seconds", FixtureValue::Num(w));
                                put("duration_seconds", FixtureValue::Num(w * 3.0));
                            }
                            if let Some(o) = os {
                                put("os", FixtureValue::Text(o.into()));
                            }
                            let mut traits = BTreeMap::new();
                            // The plan sits on the last event, so the "current" value matters.
                            if let (Some(p), true) = (plan, k + 1 == n) {
                                traits.insert("plan".to_string(), p.to_string());
                            }
                            FixtureEvent {
                                ts,
                                channel: channel.into(),
                                activity: activity.into(),
                                properties: props,
                                traits,
                            }
                        },
                    )
                    .collect();
                FixtureCustomer {
                    name: format!("c{i}"),
                    id: CustomerId(i as u64 * 3 + 1),
                    events,
                }
            })
            .collect(),
    })
}

fn random_query() -> impl Strategy<Value = Query> {
    (
        prop::sample::select(vec!["activity", "touchpoint", "channel"]),
        prop::sample::select(vec!["customer", "gap:1h"]),
        prop::option::of(0i64..6 * HOUR),
    )
        .prop_map(|(step, case, from)| {
            let mut q = Query::new(BASE);
            q.step = step.parse().unwrap();
            q.case = case.parse().unwrap();
            q.from = from.map(|f| BASE + f);
            q
        })
}

fn random_options() -> impl Strategy<Value = FrictionOptions> {
    (
        prop::sample::select(vec![1.5, 3.0]),
        prop::sample::select(vec![HOUR, 2 * DAY]),
        0usize..4,
        prop::sample::select(vec![vec![], vec!["pay".to_string()]]),
    )
        .prop_map(|(factor, window, explain, goals)| {
            let mut o = shop_options();
            o.signals.long_wait_factor = factor;
            o.signals.repeat_window = window;
            o.signals.abandon_window = window;
            o.signals.goal_activities = goals;
            o.explain = explain;
            o.top = 6;
            o
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn friction_matches_the_reference_on_random_journeys(
        f in random_fixture(),
        q in random_query(),
        o in random_options(),
        parts in 1usize..5,
        assign in prop::collection::vec(0usize..5, 1..14),
    ) {
        check_friction(&f, parts, &assign, &q, &o);
        check_root_causes(&f, parts, &assign, &q, &o, &[]);
        // The JSON does not depend on how customers are spread over partitions.
        let one = serde_json::to_string(&run_friction(&f, 1, &[0], &q, &o, &[])).unwrap();
        let many = serde_json::to_string(&run_friction(&f, parts, &assign, &q, &o, &[])).unwrap();
        prop_assert_eq!(one, many);
    }

    #[test]
    fn channel_performance_matches_the_reference_on_random_journeys(
        f in random_fixture(),
        q in random_query(),
        parts in 1usize..5,
        assign in prop::collection::vec(0usize..5, 1..14),
        window in prop::sample::select(vec![MIN, HOUR, DAY]),
    ) {
        let o = ChannelPerformanceOptions {
            containment_window: window,
            costs: [("phone".to_string(), 6.5)].into_iter().collect(),
            breakdown: Some(PreferenceBreakdown::Trait("plan".into())),
            ..ChannelPerformanceOptions::default()
        };
        let got = check_channels(&f, parts, &assign, &q, &o);
        let partitions = f.partitions(1);
        let one = channel_performance(&partitions, &Stages::default(), &q, &o).unwrap();
        prop_assert_eq!(serde_json::to_string(&one).unwrap(), serde_json::to_string(&got).unwrap());
    }
}
