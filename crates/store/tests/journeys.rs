//! Columnar journeys of a small hand-written fixture, checked field by field, from the
//! log tail and from Parquet segments alike, plus the journeys cache.

mod common;

use common::{ev, id, EventExt, JourneyStep, NoSync, BASE_SECS, P};
use omnitrail_model::{CustomerId, Event, IdentifierKind, MICROS_PER_SECOND};
use omnitrail_store::{Journeys, PropertyColumn, ScanSpec, Store, StoreOptions};
use std::path::Path;
use std::sync::Arc;

/// Ingest order is deliberately not time order. Ana and Ben each have two events at the
/// same second: ingest order must break those ties.
fn fixture() -> Vec<Event> {
    vec![
        ev("ana", "phone", "call", 20)
            .prop("sentiment", -0.4)
            .prop("plan", "gold"),
        ev("ben", "email", "open", 5),
        ev("ana", "web", "login", 10)
            .prop("sentiment", 0.5)
            .prop("os", "iOS"),
        ev("ana", "web", "search", 10)
            .prop("os", "iOS")
            .prop("plan", 3.0),
        ev("cy", "store", "visit", 1).prop("plan", true),
        // A second identifier does not change the key: the primary (user id) decides.
        ev("ben", "web", "click", 5)
            .also(id(IdentifierKind::Email, "ben@example.com"))
            .prop("os", "Android"),
        ev("ben", "sms", "reply", 7).prop("sentiment", 0.0),
    ]
}

fn spec() -> ScanSpec {
    ScanSpec {
        properties: vec![
            "sentiment".into(),
            "os".into(),
            "plan".into(),
            "unused_prop".into(),
        ],
        traits: vec!["plan".into()],
    }
}

fn open_one_partition(dir: &Path) -> Store {
    Store::open(
        dir,
        StoreOptions {
            partitions: 1,
            durability: Arc::new(NoSync),
            ..StoreOptions::default()
        },
    )
    .expect("open store")
}

fn micros(secs: i64) -> i64 {
    (BASE_SECS + secs) * MICROS_PER_SECOND
}

fn num(j: &Journeys, name: &str) -> Vec<f64> {
    match &j.properties[name] {
        PropertyColumn::Num(v) => v.iter().collect(),
        other => panic!("{name} should be a number column, is {other:?}"),
    }
}

/// A text column decoded: `None` where code 0 says the property is missing.
fn text(j: &Journeys, name: &str) -> Vec<Option<String>> {
    match &j.properties[name] {
        PropertyColumn::Text { codes, dict } => codes
            .iter()
            .map(|c| (c != 0).then(|| dict.values[c as usize - 1].clone()))
            .collect(),
        other => panic!("{name} should be a text column, is {other:?}"),
    }
}

/// NaN-aware equality for number columns: NaN means "missing" there.
fn assert_nums(got: &[f64], want: &[Option<f64>], what: &str) {
    let got: Vec<Option<f64>> = got.iter().map(|v| (!v.is_nan()).then_some(*v)).collect();
    assert_eq!(got, want, "{what}");
}

fn s(v: &str) -> Option<String> {
    Some(v.to_string())
}

/// The fixture's journeys, the same whether they come from the log or from segments.
fn check_fixture(j: &Journeys, when: &str) {
    assert_eq!(j.project, P);
    assert_eq!(j.partition, 0);
    // Customers are numbered in order of first appearance: ana, ben, cy.
    assert_eq!(
        j.customers,
        vec![CustomerId(1), CustomerId(2), CustomerId(3)],
        "{when}: customers"
    );
    assert_eq!(
        j.offsets,
        vec![0, 3, 6, 7],
        "{when}: offsets (ana 3, ben 3, cy 1 events)"
    );
    assert_eq!(j.events(), 7);
    assert_eq!(
        j.ts,
        vec![
            micros(10),
            micros(10),
            micros(20),
            micros(5),
            micros(5),
            micros(7),
            micros(1)
        ],
        "{when}: timestamps, per customer in time order"
    );
    let activities: Vec<&str> = j
        .activity
        .iter()
        .map(|a| j.activities.values[a as usize].as_str())
        .collect();
    assert_eq!(
        activities,
        ["login", "search", "call", "open", "click", "reply", "visit"],
        "{when}: activities; ana's login and search share a second and keep ingest order"
    );
    let channels: Vec<&str> = j
        .channel
        .iter()
        .map(|&c| j.channels.values[c as usize].as_str())
        .collect();
    assert_eq!(
        channels,
        ["web", "web", "phone", "email", "web", "sms", "store"],
        "{when}: channels"
    );
    assert_eq!(
        j.activities.len(),
        7,
        "{when}: one dictionary entry per distinct activity"
    );
    assert_eq!(
        j.channels.len(),
        5,
        "{when}: one dictionary entry per distinct channel"
    );
    for (code, name) in j.channels.values.iter().enumerate() {
        assert_eq!(
            j.channels.get(name),
            Some(code as u32),
            "{when}: channel dictionary lookup"
        );
    }

    assert_eq!(
        j.properties.len(),
        4,
        "{when}: exactly the requested property columns"
    );
    assert_nums(
        &num(j, "sentiment"),
        &[Some(0.5), None, Some(-0.4), None, None, Some(0.0), None],
        &format!("{when}: sentiment (NaN where missing)"),
    );
    assert_eq!(
        text(j, "os"),
        [s("iOS"), s("iOS"), None, None, s("Android"), None, None],
        "{when}: os (code 0 where missing)"
    );
    // A custom property keeps whatever type it was sent with, shown as text.
    assert_eq!(
        text(j, "plan"),
        [None, s("3"), s("gold"), None, None, None, s("true")],
        "{when}: custom property 'plan'"
    );
    assert_eq!(
        text(j, "unused_prop"),
        vec![None; 7],
        "{when}: a property no event has"
    );
    match &j.properties["os"] {
        PropertyColumn::Text { dict, .. } => {
            assert_eq!(dict.len(), 2, "{when}: os dictionary is iOS, Android")
        }
        _ => unreachable!("checked above"),
    }
}

#[test]
fn fixture_journeys_from_log_and_from_segments() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = open_one_partition(dir.path());
    let out = store.ingest(P, fixture()).expect("ingest");
    assert_eq!(out.stored, 7);
    assert_eq!(
        out.customers,
        [1, 2, 1, 1, 3, 2, 2].map(|c| Some(CustomerId(c))),
        "customer of each input event"
    );

    check_fixture(
        &store.journeys(P, 0, &spec()).expect("journeys"),
        "from the log",
    );
    let report = store.compact().expect("compact");
    assert_eq!((report.events, report.segments_written), (7, 1));
    assert_eq!(store.uncompacted_events(), 0);
    check_fixture(
        &store.journeys(P, 0, &spec()).expect("journeys"),
        "from a segment",
    );
    drop(store);
    let store = open_one_partition(dir.path());
    check_fixture(
        &store.journeys(P, 0, &spec()).expect("journeys"),
        "from a segment after reopen",
    );
}

#[test]
fn half_compacted_partition_merges_segment_and_log() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = open_one_partition(dir.path());
    let events = fixture();
    store.ingest(P, events[..4].to_vec()).expect("ingest");
    store.compact().expect("compact");
    store.ingest(P, events[4..].to_vec()).expect("ingest");
    assert_eq!(store.uncompacted_events(), 3);
    check_fixture(
        &store.journeys(P, 0, &spec()).expect("journeys"),
        "segment + log",
    );
}

#[test]
fn journeys_are_cached_until_data_changes() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = open_one_partition(dir.path());
    store.ingest(P, fixture()).expect("ingest");
    let first = store.journeys(P, 0, &spec()).expect("journeys");
    let again = store.journeys(P, 0, &spec()).expect("journeys");
    assert!(
        Arc::ptr_eq(&first, &again),
        "an unchanged partition is served from the cache"
    );
    let other_spec = store
        .journeys(P, 0, &ScanSpec::default())
        .expect("journeys");
    assert!(
        !Arc::ptr_eq(&first, &other_spec),
        "a different scan spec is a different value"
    );
    assert!(other_spec.properties.is_empty());

    store
        .ingest(P, vec![ev("cy", "web", "buy", 30)])
        .expect("ingest");
    let after_ingest = store.journeys(P, 0, &spec()).expect("journeys");
    assert!(
        !Arc::ptr_eq(&first, &after_ingest),
        "a new event invalidates the cache"
    );
    assert_eq!(after_ingest.events(), 8);
    let cy = after_ingest.customer_range(2);
    assert_eq!(
        after_ingest.ts[cy.end - 1],
        micros(30),
        "cy's new event is last in his journey"
    );
    assert_eq!(
        after_ingest.activities.values[after_ingest.activity.get(cy.end - 1) as usize],
        "buy"
    );

    let cached = store.journeys(P, 0, &spec()).expect("journeys");
    assert!(Arc::ptr_eq(&after_ingest, &cached));
    store.compact().expect("compact");
    let after_compact = store.journeys(P, 0, &spec()).expect("journeys");
    assert!(
        !Arc::ptr_eq(&cached, &after_compact),
        "a compaction invalidates the cache"
    );
    assert_eq!(
        steps(&after_compact),
        steps(&cached),
        "compaction does not change what journeys show"
    );
}

/// A journey scan of a project without data is empty, not an error.
#[test]
fn empty_partition_has_no_customers() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = open_one_partition(dir.path());
    let j = store.journeys(P, 0, &spec()).expect("journeys");
    assert!(j.customers.is_empty());
    assert_eq!(j.offsets, vec![0]);
    assert_eq!(j.events(), 0);
}

fn steps(j: &Journeys) -> Vec<(CustomerId, Vec<JourneyStep>)> {
    common::decode(j, &spec())
}

/// A scan reads the manifest, then segment files; a compaction or merge in between swaps
/// the manifest and deletes merged segments. Scans must neither fail nor go back in time.
#[test]
fn scans_during_compactions_and_merges_never_fail_or_lose_events() {
    const ROUNDS: usize = 300;
    const PER_ROUND: usize = 20;
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Arc::new(
        Store::open(
            dir.path(),
            StoreOptions {
                // One partition, merged on nearly every compaction: the widest window.
                partitions: 1,
                durability: Arc::new(NoSync),
                auto_compact_events: usize::MAX,
                max_segments_per_partition: 2,
                ..StoreOptions::default()
            },
        )
        .expect("open"),
    );
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (store, done) = (store.clone(), done.clone());
        std::thread::spawn(move || {
            for round in 0..ROUNDS {
                store
                    .ingest(P, common::numbered(&format!("r{round}-"), PER_ROUND))
                    .expect("ingest");
                store.compact().expect("compact");
            }
            done.store(true, std::sync::atomic::Ordering::SeqCst);
        })
    };
    let spec = ScanSpec::default();
    let mut last = 0;
    let mut scans = 0;
    loop {
        let finished = done.load(std::sync::atomic::Ordering::SeqCst);
        let seen = store.journeys(P, 0, &spec).expect("scan").events();
        assert!(seen >= last, "scan went back from {last} to {seen} events");
        last = seen;
        scans += 1;
        if finished {
            break;
        }
    }
    writer.join().expect("writer");
    assert_eq!(last, ROUNDS * PER_ROUND, "after {scans} scans");
}

#[test]
fn each_primary_identifier_has_its_own_key_and_keeps_it_across_reopen() {
    let dir = tempfile::tempdir().expect("temp dir");
    let email = || id(IdentifierKind::Email, "ben@example.com");
    let by_email = |secs| {
        Event::new(
            omnitrail_model::Timestamp::from_secs(BASE_SECS + secs),
            email(),
            omnitrail_model::Channel::Sms,
            "reply",
        )
    };
    {
        let store = open_one_partition(dir.path());
        let out = store
            .ingest(
                P,
                vec![ev("ben", "web", "login", 1).also(email()), by_email(2)],
            )
            .expect("ingest");
        // The login carries both identifiers but is keyed by the user id; the email gets
        // a key of its own. Joining them is identity resolution's job, not the store's.
        assert_eq!(out.customers, [Some(CustomerId(1)), Some(CustomerId(2))]);
        store.compact().expect("compact");
        assert_eq!(store.key_of(P, &email()).expect("key"), Some(CustomerId(2)));
    }
    let store = open_one_partition(dir.path());
    let out = store.ingest(P, vec![by_email(3)]).expect("ingest");
    assert_eq!(
        out.customers,
        [Some(CustomerId(2))],
        "key read back from the index run"
    );
}
