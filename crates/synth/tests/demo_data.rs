//! Checks the generated demo data against its promises (docs/demo-data.md): determinism,
//! validity, coverage of channels and activities, the identity story, and every planted
//! friction pattern, each measured by brute force on the events alone.

use omnitrail_model::{Channel, Event, Identifier, IdentifierKind, Value};
use omnitrail_synth::{
    designed_onboarding_journey, generate_customer, generate_range, Persona, SynthConfig,
    SyntheticCustomer, DEMO_STAGES_TOML,
};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::LazyLock;

const SAMPLE_SIZE: u64 = 3000;
const MIN: i64 = 60_000_000;
const HOUR: i64 = 60 * MIN;
const DAY: i64 = 24 * HOUR;

static SAMPLE: LazyLock<Vec<SyntheticCustomer>> =
    LazyLock::new(|| generate_range(&SynthConfig::default(), 0..SAMPLE_SIZE));

fn events() -> impl Iterator<Item = &'static Event> {
    SAMPLE.iter().flat_map(|c| &c.events)
}

fn text<'a>(e: &'a Event, name: &str) -> Option<&'a str> {
    e.property(name).and_then(Value::as_str)
}

fn num(e: &Event, name: &str) -> Option<f64> {
    e.property(name).and_then(Value::as_f64)
}

fn ts(e: &Event) -> i64 {
    e.timestamp.as_micros()
}

/// Triggers this close to the end may have lost their follow-ups to the period's edge.
fn well_inside(e: &Event) -> bool {
    ts(e) < SynthConfig::default().end().as_micros() - 6 * DAY
}

fn share(hits: usize, total: usize) -> f64 {
    assert!(total > 0, "nothing to measure");
    hits as f64 / total as f64
}

fn median(mut xs: Vec<f64>) -> f64 {
    assert!(!xs.is_empty());
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

fn assert_band(name: &str, value: f64, lo: f64, hi: f64) {
    assert!(
        (lo..=hi).contains(&value),
        "{name} = {value:.3}, expected within [{lo}, {hi}]"
    );
}

// ---- determinism ---------------------------------------------------------------------------

#[test]
fn same_seed_gives_the_same_events_in_any_order_and_another_seed_differs() {
    let cfg = SynthConfig::default();
    let parallel = generate_range(&cfg, 100..160);
    let reversed: Vec<_> = (100..160)
        .rev()
        .map(|i| generate_customer(&cfg, i))
        .collect();
    assert!(parallel.iter().eq(reversed.iter().rev()));
    assert_eq!(parallel[0], SAMPLE[100]);

    let other = SynthConfig {
        seed: 43,
        ..cfg.clone()
    };
    let different = generate_range(&other, 100..160);
    let same = parallel
        .iter()
        .zip(&different)
        .filter(|(a, b)| a.events == b.events)
        .count();
    assert_eq!(same, 0);
}

// ---- validity and coverage -----------------------------------------------------------------

#[test]
fn every_event_is_valid_unique_ordered_and_inside_the_period() {
    let cfg = SynthConfig::default();
    let (start, end) = (cfg.start.as_micros(), cfg.end().as_micros());
    let mut ids = HashSet::new();
    for c in SAMPLE.iter() {
        assert!(!c.events.is_empty(), "customer {} has no events", c.index);
        for pair in c.events.windows(2) {
            assert!(
                pair[0].timestamp <= pair[1].timestamp,
                "customer {}",
                c.index
            );
        }
        for e in &c.events {
            assert!((start..end).contains(&ts(e)), "{e}");
            let id = e.event_id.clone().expect("every event has an event_id");
            assert!(ids.insert(id), "duplicate event_id in {e}");
            // Valid, and already in normal form.
            assert_eq!(e.clone().validate().as_ref(), Ok(e));
        }
    }
}

#[test]
fn enough_events_channels_and_activities() {
    let total = events().count();
    let average = total as f64 / SAMPLE_SIZE as f64;
    assert!(average >= 25.0, "{average} events per customer");
    let channels: BTreeSet<_> = events().map(|e| e.channel.as_str()).collect();
    assert!(channels.len() >= 10, "{channels:?}");
    assert!(channels
        .iter()
        .all(|c| Channel::KNOWN.iter().any(|k| k.as_str() == *c)));
    let activities: BTreeSet<_> = events().map(|e| e.activity.as_str()).collect();
    assert!(activities.len() >= 40, "{activities:?}");
    assert!(activities
        .iter()
        .all(|a| a.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')));
}

#[test]
fn every_activity_has_exactly_one_stage_in_stage_order() {
    let table: toml::Table = DEMO_STAGES_TOML.parse().expect("valid TOML");
    let stages = table["stages"].as_table().expect("a [stages] table");
    let order = [
        "awareness",
        "consideration",
        "purchase",
        "onboarding",
        "usage",
        "support",
        "loyalty",
    ];
    assert_eq!(stages.len(), order.len());
    let positions: Vec<_> = order
        .iter()
        .map(|s| DEMO_STAGES_TOML.find(&format!("\n{s} = ")).expect(s))
        .collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "stage order");

    let mut stage_of = HashMap::new();
    for (stage, list) in stages {
        for a in list.as_array().expect("a list of activities") {
            let a = a.as_str().expect("activity names are strings");
            assert!(
                stage_of.insert(a, stage.as_str()).is_none(),
                "{a} listed twice"
            );
        }
    }
    let generated: BTreeSet<_> = events().map(|e| e.activity.as_str()).collect();
    let listed: BTreeSet<_> = stage_of.keys().copied().collect();
    assert_eq!(generated, listed);
    for step in designed_onboarding_journey() {
        assert_eq!(stage_of[step], "onboarding");
    }
}

#[test]
fn persona_mix_is_present_and_hidden() {
    let mut counts: BTreeMap<Persona, usize> = BTreeMap::new();
    for c in SAMPLE.iter() {
        *counts.entry(c.persona).or_default() += 1;
    }
    for p in Persona::ALL {
        let got = share(counts.get(&p).copied().unwrap_or(0), SAMPLE.len());
        assert_band(p.as_str(), got, p.share() - 0.03, p.share() + 0.03);
    }
    let names: HashSet<_> = Persona::ALL.iter().map(|p| p.as_str()).collect();
    for e in events() {
        for (k, v) in e.properties.iter().chain(&e.traits) {
            assert!(
                k != "persona" && !names.contains(v.to_string().as_str()),
                "{e}"
            );
        }
    }
}

#[test]
fn properties_and_traits_sit_where_they_belong() {
    let mut traited = 0;
    for e in events() {
        match e.channel {
            Channel::Web | Channel::MobileApp => {
                assert!(
                    text(e, "device").is_some() && text(e, "os").is_some(),
                    "{e}"
                );
                assert_eq!(
                    text(e, "browser").is_some(),
                    e.channel == Channel::Web,
                    "{e}"
                );
            }
            _ => {}
        }
        if e.property("ticket_id").is_some() && e.channel.is_assisted() {
            for p in [
                "topic",
                "department",
                "agent",
                "duration_seconds",
                "sentiment",
                "outcome",
            ] {
                assert!(e.property(p).is_some(), "{p} missing on {e}");
            }
        }
        if matches!(e.activity.as_str(), "purchase" | "renewal") {
            assert!(
                num(e, "value").is_some() && text(e, "order_id").is_some(),
                "{e}"
            );
        }
        if !e.traits.is_empty() {
            traited += 1;
        }
    }
    // Traits come with identifying events only.
    assert!(share(traited, events().count()) < 0.08);
    for c in SAMPLE.iter() {
        let traits: BTreeSet<_> = c.events.iter().flat_map(|e| e.traits.keys()).collect();
        assert!(traits.len() == 3, "customer {}: {traits:?}", c.index);
    }
}

// ---- identity --------------------------------------------------------------------------------

/// Groups a customer's identifiers by co-occurrence on events (a tiny union-find).
fn clusters(events: &[Event]) -> usize {
    let mut parent: HashMap<&Identifier, &Identifier> = HashMap::new();
    fn root<'a>(
        parent: &HashMap<&'a Identifier, &'a Identifier>,
        mut x: &'a Identifier,
    ) -> &'a Identifier {
        while parent[x] != x {
            x = parent[x];
        }
        x
    }
    for e in events {
        for id in &e.identifiers {
            parent.entry(id).or_insert(id);
        }
        let first = root(&parent, &e.identifiers[0]);
        for id in &e.identifiers[1..] {
            let r = root(&parent, id);
            parent.insert(r, first);
        }
    }
    parent.keys().filter(|&&id| root(&parent, id) == id).count()
}

#[test]
fn identities_link_up_over_time_into_one_customer() {
    let end = SynthConfig::default().end().as_micros();
    let mut owner: HashMap<&Identifier, u64> = HashMap::new();
    let mut phone_alone_first = 0;
    for c in SAMPLE.iter() {
        for e in &c.events {
            for id in &e.identifiers {
                let o = *owner.entry(id).or_insert(c.index);
                assert_eq!(o, c.index, "{id} shared by customers {o} and {}", c.index);
            }
        }
        assert!(c.events.iter().any(|e| e.identifiers.contains(&c.key)));
        assert_eq!(c.key.kind, IdentifierKind::CrmId);
        // The story starts anonymous: a browsing cookie, or the CRM record for store buyers.
        let first = &c.events[0].identifiers;
        assert!(
            first.len() == 1,
            "customer {} starts with {first:?}",
            c.index
        );
        // Only a linking event cut off by the period's end may leave a second cluster.
        let last = ts(c.events.last().expect("events"));
        if last < end - DAY {
            assert_eq!(clusters(&c.events), 1, "customer {}", c.index);
        }
        let phone_events: Vec<_> = c
            .events
            .iter()
            .filter(|e| {
                e.identifiers
                    .iter()
                    .any(|i| i.kind == IdentifierKind::Phone)
            })
            .collect();
        if phone_events
            .first()
            .is_some_and(|e| e.identifiers.len() == 1)
        {
            phone_alone_first += 1;
        }
        let social = c.events.iter().find(|e| {
            e.identifiers
                .iter()
                .any(|i| matches!(i.kind, IdentifierKind::Social(_)))
        });
        if let Some(e) = social {
            assert_eq!(e.identifiers.len(), 1, "a handle first appears alone: {e}");
        }
    }
    // Phone contacts carry the phone alone until the CRM links it.
    assert!(phone_alone_first > 500, "{phone_alone_first}");
}

// ---- planted friction ------------------------------------------------------------------------

/// (a) iOS app logins fail far more often, and half the failures are followed by a call.
#[test]
fn pattern_a_ios_app_logins_fail_and_customers_phone_in() {
    let mut attempts: HashMap<(bool, bool), (usize, usize)> = HashMap::new();
    let (mut failures, mut calls) = (0, 0);
    for c in SAMPLE.iter() {
        for (i, e) in c.events.iter().enumerate() {
            let failed = match e.activity.as_str() {
                "login" => false,
                "login_failed" => true,
                _ => continue,
            };
            let key = (
                e.channel == Channel::MobileApp,
                text(e, "os") == Some("iOS"),
            );
            let slot = attempts.entry(key).or_default();
            slot.0 += usize::from(failed);
            slot.1 += 1;
            if failed && well_inside(e) {
                failures += 1;
                let next = &c.events[i + 1];
                if next.activity == "call_started"
                    && next.channel == Channel::Phone
                    && text(next, "topic") == Some("login")
                    && text(next, "department") == Some("tech_support")
                    && ts(next) - ts(e) <= HOUR
                {
                    calls += 1;
                }
            }
        }
    }
    let rate = |k| {
        let (f, n) = attempts[&k];
        share(f, n)
    };
    let ios_app = rate((true, true));
    assert_band("iOS app login failure", ios_app, 0.30, 0.40);
    for other in [(true, false), (false, true), (false, false)] {
        let r = rate(other);
        assert_band("other login failure", r, 0.03, 0.07);
        assert!(ios_app > 4.0 * r);
    }
    assert_band(
        "call within an hour of a failed login",
        share(calls, failures),
        0.45,
        0.55,
    );
}

/// (b) The chatbot fails billing questions; those who leave it for the phone wait long.
#[test]
fn pattern_b_chatbot_fails_billing_and_leavers_hold_long() {
    let (mut billing, mut billing_failed, mut faq, mut faq_failed) = (0, 0, 0, 0);
    let (mut leavers, mut others) = (Vec::new(), Vec::new());
    for c in SAMPLE.iter() {
        let mut last_bot_failure: Option<i64> = None;
        for e in &c.events {
            match e.activity.as_str() {
                "chatbot_question" => {
                    let failed = text(e, "outcome") == Some("failure");
                    if text(e, "topic") == Some("billing") {
                        billing += 1;
                        billing_failed += usize::from(failed);
                    } else {
                        faq += 1;
                        faq_failed += usize::from(failed);
                    }
                    if failed {
                        last_bot_failure = Some(ts(e));
                    }
                }
                "call_ended" => {
                    let wait = num(e, "wait_seconds").expect("agent calls have a hold time");
                    if last_bot_failure.is_some_and(|t| ts(e) - t <= 2 * HOUR) {
                        leavers.push(wait);
                    } else {
                        others.push(wait);
                    }
                }
                _ => {}
            }
        }
    }
    assert_band(
        "bot billing failure",
        share(billing_failed, billing),
        0.62,
        0.78,
    );
    assert_band("bot FAQ failure", share(faq_failed, faq), 0.10, 0.20);
    let (slow, normal) = (median(leavers), median(others));
    assert!(slow >= 600.0, "bot leavers' median hold {slow}");
    assert!(
        (60.0..=150.0).contains(&normal),
        "other median hold {normal}"
    );
}

/// (c) A quarter of web payment failures are followed within hours by a social complaint.
#[test]
fn pattern_c_payment_failures_turn_into_social_complaints() {
    let (mut failures, mut complaints, mut callbacks) = (0, 0, 0);
    let mut delays = Vec::new();
    for c in SAMPLE.iter() {
        let mut last_failure: Option<i64> = None;
        let mut attributed: Option<i64> = None;
        for e in &c.events {
            match (e.activity.as_str(), &e.channel) {
                ("payment_failed", Channel::Web) if well_inside(e) => {
                    failures += 1;
                    last_failure = Some(ts(e));
                }
                ("complaint", Channel::Social) => {
                    if let Some(t) = last_failure.take().filter(|t| ts(e) - t <= 3 * HOUR) {
                        complaints += 1;
                        delays.push((ts(e) - t) as f64 / MIN as f64);
                        attributed = Some(ts(e));
                    }
                }
                ("callback_completed", Channel::Phone) => {
                    callbacks += usize::from(attributed.take().is_some_and(|t| ts(e) - t <= DAY));
                }
                _ => {}
            }
        }
    }
    assert_band(
        "complaint after payment failure",
        share(complaints, failures),
        0.20,
        0.30,
    );
    assert_band("median minutes to complain", median(delays), 80.0, 120.0);
    assert_band(
        "callback after such a complaint",
        share(callbacks, complaints),
        0.38,
        0.62,
    );
}

/// (d) Some assisted contacts leave the issue open and the customer comes back 1–5 days later.
#[test]
fn pattern_d_repeat_contacts_about_the_same_topic() {
    let (mut contacts, mut repeated) = (0, 0);
    for c in SAMPLE.iter() {
        let assisted: Vec<_> = c
            .events
            .iter()
            .filter(|e| e.channel.is_assisted() && e.property("ticket_id").is_some())
            .collect();
        for (i, e) in assisted.iter().enumerate() {
            if !well_inside(e) {
                continue;
            }
            contacts += 1;
            let topic = text(e, "topic");
            let again = assisted[i + 1..].iter().any(|later| {
                let gap = ts(later) - ts(e);
                text(later, "topic") == topic && gap > 20 * HOUR && gap <= 5 * DAY
            });
            repeated += usize::from(again);
        }
    }
    assert_band(
        "repeat contact within 1-5 days",
        share(repeated, contacts),
        0.15,
        0.22,
    );
}

/// (e) About a fifth of onboarding customers skip one step of the designed journey.
#[test]
fn pattern_e_onboarding_skips_a_designed_step() {
    let design = designed_onboarding_journey();
    let end = SynthConfig::default().end().as_micros();
    let (mut onboarded, mut skipped) = (0, 0);
    let mut skipped_steps = BTreeSet::new();
    for c in SAMPLE.iter() {
        let steps: Vec<_> = c
            .events
            .iter()
            .filter(|e| design.contains(&e.activity.as_str()))
            .collect();
        if steps.first().is_none_or(|e| ts(e) >= end - 7 * DAY) {
            continue;
        }
        onboarded += 1;
        let names: Vec<_> = steps.iter().map(|e| e.activity.as_str()).collect();
        if names == design {
            continue;
        }
        let missing: Vec<_> = design.iter().filter(|s| !names.contains(s)).collect();
        assert_eq!(missing.len(), 1, "customer {}: {names:?}", c.index);
        let mut expected = design.to_vec();
        expected.retain(|s| s != missing[0]);
        assert_eq!(names, expected, "customer {}", c.index);
        skipped += 1;
        skipped_steps.insert(*missing[0]);
    }
    assert_band(
        "onboarding with a skipped step",
        share(skipped, onboarded),
        0.17,
        0.23,
    );
    assert_eq!(
        skipped_steps,
        BTreeSet::from(["email_verified", "profile_completed"])
    );
}

/// Some customers go quiet for months and come back through a win-back email.
#[test]
fn some_customers_go_dormant_and_return() {
    let mut dormant = 0;
    for c in SAMPLE.iter() {
        let gap = c
            .events
            .windows(2)
            .find(|w| ts(&w[1]) - ts(&w[0]) >= 55 * DAY);
        if let Some(w) = gap {
            dormant += 1;
            assert_eq!(w[1].activity, "email_opened", "customer {}", c.index);
            assert_eq!(text(&w[1], "campaign"), Some("winback"));
        }
    }
    assert_band(
        "dormant and returning",
        share(dormant, SAMPLE.len()),
        0.07,
        0.13,
    );
}
