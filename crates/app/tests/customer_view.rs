//! Identity resolution through the app and the customer view: one person across web,
//! phone, CRM and social; junk and shared identifiers that must not merge people; merges
//! applied at once to analyses' journeys, also over compacted events; notes; unmerge.

use omnitrail_app::customer::{CustomerView, TimelineQuery};
use omnitrail_app::{App, AppOptions, Incoming, NewNote};
use omnitrail_model::{
    Channel, Event, FixedClock, Identifier, IdentifierKind, ProjectId, Timestamp, Value,
};
use std::path::Path;
use std::sync::Arc;

const P: ProjectId = ProjectId::DEFAULT;

fn at(text: &str) -> Timestamp {
    Timestamp::parse(text).expect("fixture time")
}

fn id(kind: IdentifierKind, value: &str) -> Identifier {
    Identifier::new(kind, value).expect("fixture identifier")
}

fn ev(when: &str, ids: &[Identifier], channel: Channel, activity: &str) -> Event {
    let mut e = Event::new(at(when), ids[0].clone(), channel, activity);
    for i in &ids[1..] {
        e = e.with_identifier(i.clone());
    }
    e
}

fn open(dir: &Path, now: &str) -> App {
    App::open(
        dir,
        AppOptions {
            clock: Arc::new(FixedClock::new(at(now))),
            ..AppOptions::default()
        },
    )
    .expect("open app")
}

fn ingest(app: &App, events: Vec<Event>) {
    let receipt = app
        .ingest(P, events.into_iter().map(Incoming::Event).collect())
        .expect("ingest");
    assert!(receipt.rejected.is_empty(), "{:?}", receipt.rejected);
}

/// Ana: an anonymous web visitor who logs in with her email, fails to pay, is attached to
/// a phone number and a twitter handle by CRM events, calls, and complains on social.
fn ana() -> Vec<Event> {
    let anon = || id(IdentifierKind::AnonymousId, "a-91");
    let email = || id(IdentifierKind::Email, "Ana@Example.com");
    let phone = || id(IdentifierKind::Phone, "+1 (555) 123-4567");
    let crm = || id(IdentifierKind::CrmId, "CRM-7");
    let handle = || id(IdentifierKind::Social("twitter".into()), "@ana_b");
    vec![
        ev(
            "2026-11-10T09:00:00Z",
            &[anon()],
            Channel::Web,
            "product_viewed",
        ),
        ev(
            "2026-11-10T09:05:00Z",
            &[anon()],
            Channel::Web,
            "cart_added",
        ),
        ev(
            "2026-11-10T09:06:00Z",
            &[anon(), email()],
            Channel::Web,
            "login",
        )
        .with_trait("plan", Value::Str("premium".into())),
        ev(
            "2026-11-20T14:02:00Z",
            &[email()],
            Channel::Web,
            "payment_failed",
        )
        .with_property("outcome", Value::Str("failure".into())),
        ev(
            "2026-11-10T10:00:00Z",
            &[crm(), email(), phone()],
            Channel::Other,
            "crm_record_updated",
        ),
        ev(
            "2026-11-11T08:00:00Z",
            &[phone()],
            Channel::Phone,
            "call_started",
        ),
        ev(
            "2026-11-11T08:09:00Z",
            &[phone()],
            Channel::Phone,
            "call_ended",
        )
        .with_property("wait_seconds", Value::Num(420.0)),
        ev(
            "2026-11-12T12:00:00Z",
            &[crm(), handle()],
            Channel::Other,
            "crm_record_updated",
        ),
        ev(
            "2026-11-20T14:42:00Z",
            &[handle()],
            Channel::Social,
            "complaint",
        )
        .with_property("sentiment", Value::Num(-0.8)),
    ]
}

fn view(app: &App, who: &str) -> CustomerView {
    app.customer(P, who, &TimelineQuery::default())
        .unwrap_or_else(|e| panic!("customer {who}: {e}"))
}

#[test]
fn anonymous_visitor_email_phone_and_social_handle_are_one_customer() {
    let dir = tempfile::tempdir().expect("temp dir");
    let app = open(dir.path(), "2026-11-21T09:00:00Z");
    // Arrival order is not time order: the social complaint comes before the CRM link.
    let mut events = ana();
    events.reverse();
    ingest(&app, events);
    let v = view(&app, "+1 555 123 4567");
    assert_eq!(v.events, 9, "every event of all four identities");
    let channels: Vec<&str> = v
        .timeline
        .entries
        .iter()
        .map(|e| e.channel.as_str())
        .collect();
    for c in ["web", "phone", "social", "other"] {
        assert!(channels.contains(&c), "timeline has {c}: {channels:?}");
    }
    let times: Vec<Timestamp> = v.timeline.entries.iter().map(|e| e.at).collect();
    assert!(times.windows(2).all(|w| w[0] >= w[1]), "newest first");
    for kind in ["anonymous_id", "email", "phone", "crm_id", "social:twitter"] {
        assert!(
            v.identifiers.iter().any(|i| i.kind == kind),
            "{kind} in {:?}",
            v.identifiers
        );
    }
    let merges = v.links.iter().filter(|l| l.decision == "merged").count();
    assert!(merges >= 3, "each link has its evidence: {:?}", v.links);
    assert!(
        v.links.iter().all(|l| l.event.is_some()),
        "which event linked"
    );
    assert!(
        v.summary.starts_with(
            "Web payment failed yesterday 14:02; complaint on social 40 min later; no reply yet"
        ),
        "summary: {}",
        v.summary
    );
    assert!(
        v.summary.contains("Premium customer since 2026"),
        "{}",
        v.summary
    );
    // Every identifier finds the same customer.
    for who in [
        "ana@example.com",
        "email:ANA@example.com",
        "social:twitter:@Ana_B",
        "crm_id:CRM-7",
        "a-91",
        v.customer_id.as_str(),
    ] {
        assert_eq!(view(&app, who).customer_id, v.customer_id, "{who}");
    }
    let flags: Vec<&str> = v.friction.iter().map(|f| f.kind.as_str()).collect();
    assert!(
        flags.contains(&"recent_failures") && flags.contains(&"long_waits"),
        "{flags:?}"
    );
}

#[test]
fn merges_apply_at_once_to_compacted_events_and_survive_reopen() {
    let dir = tempfile::tempdir().expect("temp dir");
    let events = ana();
    {
        let app = open(dir.path(), "2026-11-21T09:00:00Z");
        // Everything but the linking CRM events first, compacted into segments.
        let (links, rest): (Vec<Event>, Vec<Event>) = events
            .into_iter()
            .partition(|e| e.activity == "crm_record_updated" || e.activity == "login");
        ingest(&app, rest);
        app.compact().expect("compact");
        let before = app.journeys(P, &Default::default()).expect("journeys");
        let customers: usize = before.iter().map(|j| j.customers.len()).sum();
        assert_eq!(customers, 4, "anonymous, email, phone and handle apart");
        ingest(&app, links);
        let after = app.journeys(P, &Default::default()).expect("journeys");
        let customers: usize = after.iter().map(|j| j.customers.len()).sum();
        assert_eq!(customers, 1, "one customer right after the linking events");
        let events: usize = after.iter().map(|j| j.events()).sum();
        assert_eq!(events, 9);
        let j = after.iter().find(|j| !j.customers.is_empty()).expect("one");
        assert!(
            j.ts.windows(2).all(|w| w[0] <= w[1]),
            "one time-ordered journey"
        );
        // Compaction files the merged keys' rows under the customer: nothing changes.
        app.compact().expect("compact");
        let replaced = app.journeys(P, &Default::default()).expect("journeys");
        assert_eq!(
            replaced
                .iter()
                .map(|j| j.customers.clone())
                .collect::<Vec<_>>(),
            after
                .iter()
                .map(|j| j.customers.clone())
                .collect::<Vec<_>>(),
            "the same customers after the keys are filed under theirs"
        );
        assert_eq!(
            replaced.iter().map(|j| j.ts.clone()).collect::<Vec<_>>(),
            after.iter().map(|j| j.ts.clone()).collect::<Vec<_>>(),
            "the same events after the keys are filed under theirs"
        );
    }
    let app = open(dir.path(), "2026-11-21T09:00:00Z");
    // Analyses first, before anything else reads the identity graph: its lazy load must
    // not be skipped when links exist.
    let after = app.journeys(P, &Default::default()).expect("journeys");
    let customers: usize = after.iter().map(|j| j.customers.len()).sum();
    assert_eq!(customers, 1, "merged after reopen, in analyses");
    assert_eq!(view(&app, "+15551234567").events, 9, "after reopen");
    assert!(matches!(
        app.customer(P, "  ", &TimelineQuery::default()),
        Err(omnitrail_app::AppError::Identity(m)) if m.starts_with("no identifier given")
    ));
}

#[test]
fn junk_value_links_nobody_and_the_refusal_is_visible() {
    let dir = tempfile::tempdir().expect("temp dir");
    let app = open(dir.path(), "2026-11-21T09:00:00Z");
    let junk = || id(IdentifierKind::UserId, "anonymous");
    let events: Vec<Event> = (0..20)
        .map(|n| {
            ev(
                "2026-11-01T10:00:00Z",
                &[
                    junk(),
                    id(IdentifierKind::Email, &format!("p{n}@example.com")),
                ],
                Channel::Web,
                "login",
            )
        })
        .collect();
    ingest(&app, events);
    let v = view(&app, "p3@example.com");
    assert_eq!(v.identifiers.len(), 1, "{:?}", v.identifiers);
    assert!(
        v.links
            .iter()
            .any(|l| l.reason.as_deref().is_some_and(|r| r.contains("blocklist"))),
        "refusal visible: {:?}",
        v.links
    );
    let all = app.journeys(P, &Default::default()).expect("journeys");
    assert_eq!(all.iter().map(|j| j.customers.len()).sum::<usize>(), 20);
    // An event with nothing but junk cannot belong to anyone: a dead letter with a reason.
    let receipt = app
        .ingest(
            P,
            vec![Incoming::Event(ev(
                "2026-11-01T11:00:00Z",
                &[junk()],
                Channel::Web,
                "login",
            ))],
        )
        .expect("ingest");
    assert_eq!(receipt.rejected.len(), 1);
    assert_eq!(receipt.rejected[0].field, "identifiers");
    assert!(
        receipt.rejected[0].reason.contains("blocklisted"),
        "{}",
        receipt.rejected[0].reason
    );
}

#[test]
fn device_shared_by_500_people_merges_none_of_them() {
    let dir = tempfile::tempdir().expect("temp dir");
    let app = open(dir.path(), "2026-11-21T09:00:00Z");
    let kiosk = || id(IdentifierKind::DeviceId, "store-kiosk-1");
    let events: Vec<Event> = (0..500)
        .map(|n| {
            // Half are known by a user id, half only by an email.
            let person = if n % 2 == 0 {
                id(IdentifierKind::UserId, &format!("u{n}"))
            } else {
                id(IdentifierKind::Email, &format!("p{n}@example.com"))
            };
            ev(
                "2026-11-02T10:00:00Z",
                &[person, kiosk()],
                Channel::Store,
                "store_visited",
            )
        })
        .collect();
    ingest(&app, events);
    let all = app.journeys(P, &Default::default()).expect("journeys");
    assert_eq!(all.iter().map(|j| j.customers.len()).sum::<usize>(), 500);
    let views: Vec<CustomerView> = (0..500)
        .map(|n| {
            if n % 2 == 0 {
                format!("user_id:u{n}")
            } else {
                format!("email:p{n}@example.com")
            }
        })
        .map(|who| view(&app, &who))
        .collect();
    let with_kiosk = views
        .iter()
        .filter(|v| v.identifiers.iter().any(|i| i.kind == "device_id"))
        .count();
    assert_eq!(
        with_kiosk, 1,
        "the kiosk joins one person (the first by time and value)"
    );
    assert!(
        views.iter().all(|v| v.identifiers.len() <= 2),
        "nobody holds another person's identifier"
    );
    let weak = |v: &CustomerView| {
        v.links
            .iter()
            .any(|l| l.reason.as_deref().is_some_and(|r| r.contains("weak")))
    };
    assert!(
        views.iter().all(weak),
        "every person's view shows the refused kiosk link"
    );
}

#[test]
fn notes_are_durable_editable_and_in_the_timeline() {
    let dir = tempfile::tempdir().expect("temp dir");
    let note_id = {
        let app = open(dir.path(), "2026-11-21T09:00:00Z");
        ingest(&app, ana());
        let note = app
            .add_note(
                P,
                "+1 555 123 4567",
                NewNote {
                    author: "agent-7".into(),
                    text: "called back about the failed payment".into(),
                    topic: Some("payment".into()),
                    event: None,
                },
            )
            .expect("add note");
        assert!(
            app.add_note(
                P,
                "ana@example.com",
                NewNote {
                    author: "a".into(),
                    text: "  ".into(),
                    topic: None,
                    event: None
                }
            )
            .is_err(),
            "empty notes are refused"
        );
        note.id
    };
    let app = open(dir.path(), "2026-11-21T10:00:00Z");
    app.edit_note(P, note_id, "called back; payment went through", None)
        .expect("edit");
    let v = view(&app, "social:twitter:ana_b");
    assert_eq!(v.notes.len(), 1);
    assert_eq!(v.notes[0].text, "called back; payment went through");
    assert_eq!(v.notes[0].topic.as_deref(), Some("payment"));
    assert_eq!(
        v.timeline.entries[0].kind, "note",
        "newest entry is the note"
    );
    assert!(app.edit_note(P, 999, "x", None).is_err(), "unknown note");
}

#[test]
fn unmerge_splits_the_identifier_off_and_stays_split_after_reopen() {
    let dir = tempfile::tempdir().expect("temp dir");
    {
        let app = open(dir.path(), "2026-11-21T09:00:00Z");
        ingest(&app, ana());
        app.unmerge(P, "social:twitter:ana_b").expect("unmerge");
        let v = view(&app, "ana@example.com");
        assert_eq!(v.events, 8, "the complaint left with the handle");
    }
    let app = open(dir.path(), "2026-11-21T09:00:00Z");
    assert_eq!(view(&app, "ana@example.com").events, 8);
    assert_eq!(view(&app, "social:twitter:ana_b").events, 1);
}

#[test]
fn timeline_pages_and_filters_by_channel_and_time() {
    let dir = tempfile::tempdir().expect("temp dir");
    let app = open(dir.path(), "2026-11-21T09:00:00Z");
    ingest(&app, ana());
    let q = TimelineQuery {
        channels: vec!["web".into()],
        offset: 1,
        limit: 2,
        ..TimelineQuery::default()
    };
    let v = app.customer(P, "ana@example.com", &q).expect("view");
    assert_eq!(v.timeline.total, 4, "four web events");
    let acts: Vec<&str> = v
        .timeline
        .entries
        .iter()
        .map(|e| e.activity.as_str())
        .collect();
    assert_eq!(acts, ["login", "cart_added"]);
    let q = TimelineQuery {
        from: Some(at("2026-11-11T00:00:00Z")),
        to: Some(at("2026-11-12T00:00:00Z")),
        ..TimelineQuery::default()
    };
    let v = app.customer(P, "ana@example.com", &q).expect("view");
    assert_eq!(v.timeline.total, 2, "the call");
    assert!(matches!(
        app.customer(P, "nobody@example.com", &TimelineQuery::default()),
        Err(omnitrail_app::AppError::CustomerNotFound(_))
    ));
}

#[test]
fn limits_may_change_but_a_changed_primary_rule_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    ingest(&open(dir.path(), "2026-11-21T09:00:00Z"), ana());
    let config = dir.path().join("omnitrail.toml");
    // A lower email limit re-clusters on open: the CRM links stay (one email each).
    std::fs::write(&config, "[identity]\nlimits = { email = 1, phone = 1 }\n").expect("write");
    assert_eq!(
        view(&open(dir.path(), "2026-11-21T09:00:00Z"), "a-91").events,
        9
    );
    std::fs::write(&config, "[identity]\npriorities = { email = 1 }\n").expect("write");
    let err = match App::open(dir.path(), AppOptions::default()) {
        Ok(_) => panic!("opened with a different primary rule"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("priorities or blocklists"), "{err}");
}

#[test]
fn an_alias_call_links_two_identities_without_an_event() {
    let dir = tempfile::tempdir().expect("temp dir");
    {
        let app = open(dir.path(), "2026-11-21T09:00:00Z");
        let anon = id(IdentifierKind::AnonymousId, "a-1");
        let user = id(IdentifierKind::UserId, "u-1");
        ingest(
            &app,
            vec![
                ev(
                    "2026-11-01T10:00:00Z",
                    std::slice::from_ref(&anon),
                    Channel::Web,
                    "page_viewed",
                ),
                ev(
                    "2026-11-01T10:05:00Z",
                    std::slice::from_ref(&user),
                    Channel::MobileApp,
                    "login",
                ),
            ],
        );
        assert_eq!(view(&app, "a-1").events, 1);
        app.link(
            P,
            omnitrail_identity::Source::Alias,
            vec![anon, user],
            at("2026-11-01T10:04:00Z"),
        )
        .expect("alias");
        let v = view(&app, "a-1");
        assert_eq!(v.events, 2, "merged at once");
        assert!(v
            .links
            .iter()
            .any(|l| l.source == "alias" && l.decision == "merged"));
    }
    let app = open(dir.path(), "2026-11-21T09:00:00Z");
    assert_eq!(view(&app, "user_id:u-1").events, 2, "the alias is durable");
}

#[test]
fn keys_lost_in_a_crash_are_recovered_from_the_store_on_open() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ben = ev(
        "2026-11-02T10:00:00Z",
        &[id(IdentifierKind::Email, "ben@example.com")],
        Channel::Email,
        "email_opened",
    );
    {
        let app = open(dir.path(), "2026-11-21T09:00:00Z");
        // Ben is only ever seen under one identifier: no evidence names him.
        let mut events = ana();
        events.push(ben);
        ingest(&app, events);
        app.compact().expect("compact");
    }
    // As if the process died after the store acknowledged the events but before their
    // keys reached the metadata database, and a compaction ran in between.
    let db = rusqlite::Connection::open(dir.path().join("meta.sqlite")).expect("meta db");
    let gone = db
        .execute("DELETE FROM identity_keys", [])
        .expect("delete keys");
    assert!(gone >= 4, "keys were stored: {gone}");
    drop(db);
    // A snapshot is taken only of what the database holds, so none could hold those keys.
    std::fs::remove_file(
        dir.path()
            .join("identity")
            .join(format!("{}.snapshot", P.0)),
    )
    .expect("the compaction wrote a snapshot");
    let app = open(dir.path(), "2026-11-21T09:00:00Z");
    assert_eq!(
        view(&app, "+1 555 123 4567").events,
        9,
        "merged again after recovery"
    );
    assert_eq!(
        view(&app, "ben@example.com").events,
        1,
        "found by reading the events"
    );
    drop(app);
    let db = rusqlite::Connection::open(dir.path().join("meta.sqlite")).expect("meta db");
    let back: i64 = db
        .query_row("SELECT count(*) FROM identity_keys", [], |r| r.get(0))
        .expect("count");
    assert_eq!(back as usize, gone, "recovered keys are written back");
}
