//! Personas: the feature fold against features computed event by event from the fixture,
//! nearest-centroid assignment and silhouette against brute force, and determinism of the
//! whole pipeline over partitionings.

use omnitrail_engine::personas::{
    assign, cluster, kmeans, persona_features, silhouette, FeatureTable, PersonaOptions,
    OUTBOUND_CHANNELS,
};
use omnitrail_engine::testing::{Fixture, FixtureCustomer, FixtureValue, BASE};
use omnitrail_engine::{Query, Stages};
use proptest::prelude::*;

const DAY: i64 = 86_400_000_000;

fn text(e: &omnitrail_engine::testing::FixtureEvent, key: &str) -> Option<String> {
    match e.properties.get(key) {
        Some(FixtureValue::Text(t)) => Some(t.clone()),
        _ => None,
    }
}

fn num(e: &omnitrail_engine::testing::FixtureEvent, key: &str) -> Option<f64> {
    match e.properties.get(key) {
        Some(FixtureValue::Num(x)) => Some(*x),
        _ => None,
    }
}

/// Features of one customer by the definitions in docs/personas.md, event by event.
fn reference_row(c: &FixtureCustomer, channels: &[String], activities: &[String]) -> Vec<f64> {
    let n = c.events.len() as f64;
    let span = c.events.last().unwrap().ts - c.events[0].ts;
    let months = span.max(30 * DAY) as f64 / (30 * DAY) as f64;
    let mut row: Vec<f64> = channels
        .iter()
        .map(|ch| c.events.iter().filter(|e| &e.channel == ch).count() as f64 / n)
        .collect();
    let assisted: Vec<&omnitrail_engine::testing::FixtureEvent> = c
        .events
        .iter()
        .filter(|e| {
            ["chat", "phone", "store"].contains(&e.channel.as_str()) || text(e, "agent").is_some()
        })
        .collect();
    let with_outcome: Vec<_> = c.events.iter().filter_map(|e| text(e, "outcome")).collect();
    let failures = with_outcome.iter().filter(|o| *o == "failure").count();
    let topical: Vec<_> = assisted
        .iter()
        .enumerate()
        .filter_map(|(i, e)| text(e, "topic").map(|t| (i, t, e.ts)))
        .collect();
    let repeats = topical
        .iter()
        .filter(|(i, t, ts)| {
            topical
                .iter()
                .any(|(j, u, us)| j > i && u == t && us - ts <= 7 * DAY)
        })
        .count();
    let sentiments: Vec<f64> = c
        .events
        .iter()
        .filter_map(|e| num(e, "sentiment"))
        .collect();
    let value: f64 = c.events.iter().filter_map(|e| num(e, "value")).sum();
    let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { 0.0 };
    let started = c
        .events
        .iter()
        .filter(|e| !OUTBOUND_CHANNELS.contains(&e.channel.as_str()))
        .count() as f64;
    row.extend([
        started / months,
        assisted.len() as f64 / n,
        assisted.len() as f64 / months,
        ratio(failures as f64, with_outcome.len() as f64),
        ratio(repeats as f64, topical.len() as f64),
        ratio(sentiments.iter().sum(), sentiments.len() as f64),
        value / months,
        f64::from(u8::from(c.events.iter().any(|e| e.activity == "purchase"))),
        {
            let mut days: Vec<i64> = c
                .events
                .iter()
                .filter(|e| !OUTBOUND_CHANNELS.contains(&e.channel.as_str()))
                .map(|e| e.ts.div_euclid(DAY))
                .collect();
            days.sort_unstable();
            days.dedup();
            days.len() as f64 / months
        },
    ]);
    // The activity profile: events per activity per active month.
    row.extend(
        activities
            .iter()
            .map(|a| c.events.iter().filter(|e| &e.activity == a).count() as f64 / months),
    );
    row
}

fn features(f: &Fixture, parts: usize) -> FeatureTable {
    persona_features(
        &f.partitions(parts),
        &Stages::default(),
        &Query::new(BASE),
        &PersonaOptions::default(),
    )
    .unwrap()
}

fn check_features(f: &Fixture, got: &FeatureTable) {
    let mut channels: Vec<String> = f
        .customers
        .iter()
        .flat_map(|c| c.events.iter().map(|e| e.channel.clone()))
        .filter(|c| !OUTBOUND_CHANNELS.contains(&c.as_str()))
        .collect();
    channels.sort();
    channels.dedup();
    let names: Vec<String> = got.names[..channels.len()].to_vec();
    assert_eq!(
        names,
        channels
            .iter()
            .map(|c| format!("channel:{c}"))
            .collect::<Vec<_>>()
    );
    let mut activities: Vec<String> = f
        .customers
        .iter()
        .flat_map(|c| c.events.iter().map(|e| e.activity.clone()))
        .collect();
    activities.sort();
    activities.dedup();
    assert_eq!(
        got.names[got.dim() - activities.len()..].to_vec(),
        activities
            .iter()
            .map(|a| format!("activity:{a}"))
            .collect::<Vec<_>>()
    );
    let with_events: Vec<&FixtureCustomer> = f
        .customers
        .iter()
        .filter(|c| !c.events.is_empty())
        .collect();
    assert_eq!(
        got.customers,
        with_events.iter().map(|c| c.id).collect::<Vec<_>>()
    );
    for (i, c) in with_events.iter().enumerate() {
        let want = reference_row(c, &channels, &activities);
        let row = got.row(i);
        assert_eq!(row.len(), want.len());
        for (x, (a, b)) in row.iter().zip(&want).enumerate() {
            assert!(
                (a - b).abs() <= 1e-9 * b.abs().max(1.0),
                "customer {} feature {}: {a} vs {b}",
                c.name,
                got.names[x]
            );
        }
    }
}

#[test]
fn features_of_named_journeys() {
    let f = Fixture::parse(
        "
        ana: web:view@0 > web:purchase@1h{value=#30} > phone:call@2d{agent=a1, topic=bill, sentiment=#-0.5} > phone:call@5d{agent=a2, topic=bill, outcome=failure} > email:bill@40d{value=#12}
        bob: mobile_app:login@0{outcome=success} > mobile_app:login@1d{outcome=failure} > social:complaint@2d{topic=bill, sentiment=#-0.9}
        cy: store:visit@0{topic=plan} > store:visit@10d{topic=plan} > store:visit@20d{topic=net}
        ",
    );
    let t = features(&f, 2);
    check_features(&f, &t);
    let col = |name: &str| t.names.iter().position(|n| n == name).unwrap();
    let ana = t.row(0);
    assert_eq!(ana[col("conversion")], 1.0);
    assert_eq!(ana[col("repeat_contact_rate")], 0.5);
    assert!(!t.names.iter().any(|n| n == "channel:email"), "outbound");
    let cy = t.row(2);
    assert_eq!(cy[col("channel:store")], 1.0);
    assert_eq!(cy[col("repeat_contact_rate")], 0.0, "10 days apart");
    // Three visits over 20 days: at least a month, so 3 per month; outbound email counts.
    assert_eq!(cy[col("activity:visit")], 3.0);
    assert_eq!(ana[col("activity:bill")], 1.0 / (40.0 / 30.0));
}

/// The activity profile keeps the most frequent activities (ties by name), listed by name,
/// and customers still count every event in their rates.
#[test]
fn activity_profile_keeps_the_most_frequent_activities() {
    let f = Fixture::parse(
        "
        ana: web:b@0 > web:b@1h > web:a@2h > web:c@3h
        bob: web:b@0 > web:c@1h > web:d@2h
        ",
    );
    let options = PersonaOptions {
        max_activities: 2,
        ..PersonaOptions::default()
    };
    let t = persona_features(
        &f.partitions(2),
        &Stages::default(),
        &Query::new(BASE),
        &options,
    )
    .unwrap();
    let profile: Vec<&str> = t
        .names
        .iter()
        .filter_map(|n| n.strip_prefix("activity:"))
        .collect();
    // b 3 events, c 2, then a and d 1 each.
    assert_eq!(profile, ["b", "c"]);
    let col = |name: &str| t.names.iter().position(|n| n == name).unwrap();
    assert_eq!(t.row(0)[col("events_per_month")], 4.0);
    assert_eq!(t.row(0)[col("activity:b")], 2.0);
    assert_eq!(t.row(1)[col("activity:c")], 1.0);
}

fn arb_fixture() -> impl Strategy<Value = String> {
    let event = (
        0usize..5,
        0usize..5,
        0i64..(12 * 24 * 60),
        0usize..4,
        proptest::option::of(-10i32..=10),
    );
    proptest::collection::vec(proptest::collection::vec(event, 0..8), 1..12).prop_map(|customers| {
        let acts = ["view", "purchase", "call", "login", "bill"];
        let chans = ["web", "phone", "store", "email", "mobile_app"];
        let extras = [
            "",
            "agent=a1, topic=bill",
            "outcome=failure, topic=net",
            "value=#9.5",
        ];
        let mut text = String::new();
        for (i, events) in customers.iter().enumerate() {
            let parts: Vec<String> = events
                .iter()
                .map(|(a, c, gap, extra, s)| {
                    let mut props: Vec<String> = Vec::new();
                    if !extras[*extra].is_empty() {
                        props.push(extras[*extra].to_string());
                    }
                    if let Some(s) = s {
                        props.push(format!("sentiment=#{}", f64::from(*s) / 10.0));
                    }
                    let props = if props.is_empty() {
                        String::new()
                    } else {
                        format!("{{{}}}", props.join(", "))
                    };
                    format!("{}:{}@+{}m{}", chans[*c], acts[*a], gap, props)
                })
                .collect();
            text.push_str(&format!("c{i}: {}\n", parts.join(" > ")));
        }
        text
    })
}

/// Nearest centroid by brute force: the lowest index among the closest.
fn nearest_brute(p: &[f64], centroids: &[Vec<f64>]) -> u32 {
    let d = |c: &Vec<f64>| p.iter().zip(c).map(|(x, y)| (x - y).powi(2)).sum::<f64>();
    let best = centroids.iter().map(d).fold(f64::INFINITY, f64::min);
    centroids.iter().position(|c| d(c) == best).unwrap() as u32
}

/// Silhouette by its textbook definition over explicit member lists.
fn silhouette_brute(points: &[Vec<f64>], labels: &[u32], k: usize) -> f64 {
    let dist = |a: &Vec<f64>, b: &Vec<f64>| {
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).powi(2))
            .sum::<f64>()
            .sqrt()
    };
    let members =
        |c: u32| -> Vec<usize> { (0..points.len()).filter(|&i| labels[i] == c).collect() };
    let mut total = 0.0;
    for i in 0..points.len() {
        let own = members(labels[i]);
        if own.len() <= 1 {
            continue;
        }
        let a = own
            .iter()
            .filter(|&&j| j != i)
            .map(|&j| dist(&points[i], &points[j]))
            .sum::<f64>()
            / (own.len() - 1) as f64;
        let b = (0..k as u32)
            .filter(|&c| c != labels[i])
            .map(members)
            .filter(|m| !m.is_empty())
            .map(|m| m.iter().map(|&j| dist(&points[i], &points[j])).sum::<f64>() / m.len() as f64)
            .fold(f64::INFINITY, f64::min);
        if b.is_finite() {
            total += (b - a) / a.max(b);
        }
    }
    total / points.len() as f64
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Features equal the event-by-event definitions, whatever the partitioning; the
    /// personas found on them are identical for any partitioning.
    #[test]
    fn features_and_personas_do_not_depend_on_partitioning(text in arb_fixture(), parts in 1usize..5) {
        let f = Fixture::parse(&text);
        let one = features(&f, 1);
        check_features(&f, &one);
        let many = features(&f, parts);
        prop_assert_eq!(&one, &many);
        if one.customers.len() >= 3 {
            let options = PersonaOptions { k: Some(2), ..PersonaOptions::default() };
            let a = cluster(&one, &options).unwrap();
            let b = cluster(&many, &options).unwrap();
            prop_assert_eq!(serde_json::to_string(&a).unwrap(), serde_json::to_string(&b).unwrap());
            prop_assert_eq!(a.assignment, b.assignment);
        }
    }

    /// Assignment given centroids is the brute-force nearest centroid; silhouette equals
    /// its textbook definition; k-means is deterministic by seed.
    #[test]
    fn assignment_and_silhouette_equal_brute_force(
        points in proptest::collection::vec(proptest::collection::vec(-5.0f64..5.0, 3), 2..60),
        k in 1usize..5,
        seed in any::<u64>(),
    ) {
        let flat: Vec<f64> = points.iter().flatten().copied().collect();
        let run = kmeans(&flat, 3, k, seed, 2, 50);
        let centroids: Vec<Vec<f64>> = run.centroids.chunks(3).map(|c| c.to_vec()).collect();
        let labels = assign(&flat, 3, &run.centroids);
        let brute: Vec<u32> = points.iter().map(|p| nearest_brute(p, &centroids)).collect();
        prop_assert_eq!(&labels, &brute);
        prop_assert_eq!(&run.labels, &labels, "k-means stops at a fixed point");
        let kk = centroids.len();
        let s = silhouette(&flat, 3, &labels, kk);
        let want = if kk < 2 { 0.0 } else { silhouette_brute(&points, &labels, kk) };
        prop_assert!((s - want).abs() < 1e-9, "{} vs {}", s, want);
        prop_assert_eq!(kmeans(&flat, 3, k, seed, 2, 50), run);
    }
}
