//! The router without a socket: collectors, status codes, auth, limits, back-pressure, the
//! query API, dead-letter replay and project scoping.

mod common;

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use common::{event, gzip, TestServer};
use omnitrail_server::ServerConfig;
use serde_json::{json, Value};

fn count(v: &Value, key: &str) -> u64 {
    v[key].as_u64().unwrap_or_else(|| panic!("no {key} in {v}"))
}

#[tokio::test]
async fn health_openapi_metrics_and_unknown_routes() {
    let t = TestServer::new();
    let r = t.call(Method::GET, "/healthz", None, Body::empty()).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["status"], "ok");
    let r = t
        .call(Method::GET, "/openapi.json", None, Body::empty())
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body["paths"]["/api/v1/analyses/funnel"]["get"].is_object());
    let r = t.call(Method::GET, "/nope", None, Body::empty()).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.body["code"], "not_found");

    t.post_json(
        "/v1/events",
        Some(&t.write.clone()),
        &json!([event("e1", "a@x.test", "login", "2026-02-01T10:00:00Z")]),
    )
    .await;
    let r = t.call(Method::GET, "/metrics", None, Body::empty()).await;
    assert_eq!(r.status, StatusCode::OK);
    for name in [
        "omnitrail_ingest_events_total{endpoint=\"/v1/events\",outcome=\"stored\"} 1",
        "omnitrail_ingest_ack_seconds_count{endpoint=\"/v1/events\"} 1",
        "omnitrail_ingest_in_flight 0",
        "omnitrail_ingest_in_flight_limit 256",
        "omnitrail_ingest_backlog_events 1",
        "omnitrail_store_bytes",
        "omnitrail_dead_letters_total 0",
        "omnitrail_http_responses_total{endpoint=\"/v1/events\",status=\"200\"} 1",
    ] {
        assert!(r.text.contains(name), "{name} missing from:\n{}", r.text);
    }
}

#[tokio::test]
async fn native_events_mixed_batch_keeps_every_valid_event() {
    let t = TestServer::new();
    let w = t.write.clone();
    let mut bad_sentiment = event("e3", "c@x.test", "complaint", "2026-02-01T10:02:00Z");
    bad_sentiment["properties"] = json!({"sentiment": 4});
    let body = json!([
        event("e1", "a@x.test", "login", "2026-02-01T10:00:00Z"),
        {"timestamp": "2026-02-01T10:01:00Z", "channel": "web", "activity": "x"},
        bad_sentiment,
        7,
        event("e2", "b@x.test", "purchase", "2026-02-01T10:03:00Z"),
    ]);
    let r = t.post_json("/v1/events", Some(&w), &body).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(count(&r.body, "received"), 5);
    assert_eq!(count(&r.body, "stored"), 2);
    let rejected: Vec<(u64, &str, &str)> = r.body["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| {
            (
                x["index"].as_u64().unwrap(),
                x["code"].as_str().unwrap(),
                x["field"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        rejected,
        [
            (1, "invalid_event", "identifiers"),
            (2, "invalid_event", "properties.sentiment"),
            (3, "not_an_object", "event"),
        ]
    );
    // The same batch again stores nothing twice.
    let again = t.post_json("/v1/events", Some(&w), &body).await;
    assert_eq!(
        (
            count(&again.body, "stored"),
            count(&again.body, "duplicates")
        ),
        (0, 2)
    );

    let letters = t.get("/api/v1/dead-letters").await;
    assert_eq!(letters.status, StatusCode::OK);
    let letters = letters.body["letters"].as_array().unwrap().clone();
    assert_eq!(letters.len(), 6, "three per attempt");
    assert_eq!(letters[0]["source"], "http:/v1/events");
    assert_eq!(letters[0]["line"], 2);
    let stats = t.get("/api/v1/stats").await;
    assert_eq!(count(&stats.body, "events"), 2);
    assert_eq!(count(&stats.body, "dead_letters"), 6);
}

#[tokio::test]
async fn ndjson_gzip_and_bad_lines() {
    let t = TestServer::new();
    let lines = [
        event("n1", "a@x.test", "login", "2026-02-01T10:00:00Z").to_string(),
        "{not json".to_string(),
        String::new(),
        event("n2", "a@x.test", "logout", "2026-02-01T10:05:00Z").to_string(),
    ]
    .join("\n");
    let r = t
        .gzip_post("/v1/events", &t.write.clone(), lines.as_bytes())
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(count(&r.body, "received"), 3);
    assert_eq!(count(&r.body, "stored"), 2);
    assert_eq!(r.body["rejected"][0]["index"], 1);
    assert_eq!(r.body["rejected"][0]["code"], "invalid_json");
}

#[tokio::test]
async fn unparseable_payloads_are_400() {
    let t = TestServer::new();
    let w = t.write.clone();
    let raw = |path: &'static str, body: &'static str| {
        let w = w.clone();
        let t = &t;
        async move { t.call(Method::POST, path, Some(&w), Body::from(body)).await }
    };
    let r = raw("/v1/events", "[{\"a\": 1").await;
    assert_eq!(
        (r.status, r.body["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_json"))
    );
    let r = raw("/v1/events", "").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = raw("/v1/batch", "[1, 2]").await;
    assert_eq!(
        (r.status, r.body["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_payload"))
    );
    let r = raw("/v1/batch", "{\"batch\": 3}").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = raw("/v1/track", "\"hello\"").await;
    assert_eq!(
        (r.status, r.body["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_payload"))
    );
    let r = raw("/v1/track", "{").await;
    assert_eq!(
        (r.status, r.body["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_json"))
    );
    let r = t
        .send(
            Request::builder()
                .method(Method::POST)
                .uri("/v1/events")
                .header(header::AUTHORIZATION, format!("Bearer {w}"))
                .header(header::CONTENT_ENCODING, "br")
                .body(Body::from("x"))
                .unwrap(),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    // A valid Segment message that fails mapping is not a 400: it is a dead letter.
    let r = t.segment("/v1/track", &json!({"userId": "u-1"})).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["rejected"][0]["field"], "event");
}

#[tokio::test]
async fn oversize_is_413_or_a_dead_letter_inside_a_batch() {
    let t = TestServer::with_config(ServerConfig {
        max_event_bytes: 1000,
        max_batch_bytes: 20_000,
        ..ServerConfig::default()
    });
    let big = "x".repeat(2000);
    let r = t
        .segment(
            "/v1/track",
            &json!({"userId": "u", "event": "e", "properties": {"blob": big}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", r.text);
    assert_eq!(r.body["code"], "payload_too_large");

    let r = t
        .segment(
            "/v1/batch",
            &json!({"batch": [
                {"type": "track", "userId": "u", "event": "small", "messageId": "m1"},
                {"type": "track", "userId": "u", "event": "big", "properties": {"blob": big}},
            ]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(count(&r.body, "stored"), 1);
    assert_eq!(r.body["rejected"][0]["code"], "too_large");
    assert_eq!(r.body["rejected"][0]["index"], 1);

    // Items that are not events (an alias) must not shift the index a rejection reports.
    let r = t
        .segment(
            "/v1/batch",
            &json!({"batch": [
                {"type": "alias", "previousId": "anon-1", "userId": "u", "messageId": "a1"},
                "not-an-object",
                {"type": "track", "userId": "u", "event": "fine", "messageId": "m2"},
                {"type": "track", "event": "nobody", "messageId": "m3"},
            ]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(count(&r.body, "stored"), 1, "{}", r.text);
    let rejected: Vec<(u64, String)> = r.body["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| {
            (
                x["index"].as_u64().unwrap(),
                x["code"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(rejected[0], (1, "not_an_object".to_string()), "{}", r.text);
    assert_eq!(rejected.len(), 2, "{}", r.text);
    assert_eq!(rejected[1].0, 3, "{}", r.text);

    let many: Vec<Value> = (0..500)
        .map(|i| json!({"type": "track", "userId": "u", "event": format!("e{i}")}))
        .collect();
    let r = t.segment("/v1/batch", &json!({ "batch": many })).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);

    // 2 MB of spaces gzip to a few KB: refused while decompressing.
    let bomb = gzip(&vec![b' '; 2 << 20]);
    assert!(bomb.len() < 20_000);
    let r = t
        .send(
            Request::builder()
                .method(Method::POST)
                .uri("/v1/events")
                .header(header::AUTHORIZATION, format!("Bearer {}", t.write))
                .header(header::CONTENT_ENCODING, "gzip")
                .body(Body::from(bomb))
                .unwrap(),
        )
        .await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", r.text);
}

#[tokio::test]
async fn keys_decide_who_may_do_what() {
    let t = TestServer::new();
    let body = json!([event("k1", "a@x.test", "login", "2026-02-01T10:00:00Z")]);
    let r = t.post_json("/v1/events", None, &body).await;
    assert_eq!(
        (r.status, r.body["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("unauthorized"))
    );
    let r = t
        .post_json("/v1/events", Some("otw_not-a-real-key-at-all"), &body)
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let r = t
        .segment("/v1/track", &json!({"userId": "u", "event": "e"}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "Basic auth with the write key");
    let r = t
        .post_json(
            "/v1/track",
            None,
            &json!({"userId": "u", "event": "e", "writeKey": t.write}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "writeKey in the body: {}", r.text);
    let r = t
        .post_json("/v1/events", Some(&t.secret.clone()), &body)
        .await;
    assert_eq!(r.status, StatusCode::OK, "a secret key may send events");

    let w = t.write.clone();
    let r = t
        .call(Method::GET, "/api/v1/stats", Some(&w), Body::empty())
        .await;
    assert_eq!(
        (r.status, r.body["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("forbidden"))
    );
    let r = t
        .call(Method::GET, "/api/v1/stats", None, Body::empty())
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);

    // Revoked through the API: the write key stops working.
    let listed = t.get("/api/v1/keys").await;
    let write_prefix = listed
        .body
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kind"] == "write")
        .unwrap()["prefix"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(!listed.text.contains(&t.write), "keys are never listed");
    let r = t
        .call(
            Method::DELETE,
            &format!("/api/v1/keys/{write_prefix}"),
            Some(&t.secret.clone()),
            Body::empty(),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert!(r.body["revoked_at"].is_string());
    let r = t.post_json("/v1/events", Some(&w), &body).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);

    let created = t
        .post_json(
            "/api/v1/keys",
            Some(&t.secret.clone()),
            &json!({"kind": "write", "name": "site"}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    let new_key = created.body["key"].as_str().unwrap().to_string();
    assert_eq!(created.body["project"], "default");
    let r = t.post_json("/v1/events", Some(&new_key), &body).await;
    assert_eq!(r.status, StatusCode::OK);
    let r = t
        .post_json(
            "/api/v1/keys",
            Some(&t.secret.clone()),
            &json!({"kind": "admin"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn back_pressure_is_503_with_retry_after() {
    let t = TestServer::with_config(ServerConfig {
        max_in_flight_ingest: 1,
        retry_after_secs: 3,
        ..ServerConfig::default()
    });
    let body = json!([event("b1", "a@x.test", "login", "2026-02-01T10:00:00Z")]);
    let held = t.server.ingest_permits().try_acquire_owned().unwrap();
    let r = t
        .post_json("/v1/events", Some(&t.write.clone()), &body)
        .await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.body["code"], "overloaded");
    assert_eq!(r.headers[header::RETRY_AFTER], "3");
    let r = t.segment("/v1/batch", &json!({"batch": []})).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    drop(held);
    let r = t
        .post_json("/v1/events", Some(&t.write.clone()), &body)
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let m = t.call(Method::GET, "/metrics", None, Body::empty()).await;
    assert!(
        m.text
            .contains("omnitrail_ingest_refused_total{reason=\"in_flight\"} 2"),
        "{}",
        m.text
    );
}

#[tokio::test]
async fn segment_identify_track_alias_merge_in_the_customer_view() {
    let t = TestServer::new();
    let batch = json!({
        "writeKey": "ignored when a header key is given",
        "sentAt": "2026-03-01T11:59:50Z",
        "context": {"library": {"name": "analytics.js", "version": "1.0"}, "ip": "203.0.113.7"},
        "batch": [
            {"type": "page", "name": "Pricing", "anonymousId": "anon-1", "messageId": "m1",
             "timestamp": "2026-03-01T11:00:00Z"},
            {"type": "identify", "userId": "u-1", "anonymousId": "anon-1", "messageId": "m2",
             "traits": {"email": "ana@example.com", "plan": "premium"},
             "timestamp": "2026-03-01T11:01:00Z"},
            {"type": "track", "event": "payment_failed", "userId": "u-1", "messageId": "m3",
             "properties": {"outcome": "failure", "value": 40},
             "context": {"library": {"name": "analytics-python"}},
             "timestamp": "2026-03-01T11:02:00Z"},
            {"type": "alias", "previousId": "anon-2", "userId": "u-1", "messageId": "m4"},
            {"type": "track", "event": "ad_clicked", "anonymousId": "anon-2", "messageId": "m5",
             "timestamp": "2026-03-01T10:00:00Z"},
            {"type": "track", "event": "x", "userId": "u-1", "messageId": "m6",
             "integrations": {"Omnitrail": false}},
        ]
    });
    let r = t.segment("/v1/batch", &batch).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(
        (
            count(&r.body, "received"),
            count(&r.body, "stored"),
            count(&r.body, "links"),
            count(&r.body, "skipped")
        ),
        (6, 4, 1, 1)
    );
    assert!(r.body["rejected"].as_array().unwrap().is_empty());

    let view = t.get("/api/v1/customers/email:ana@example.com").await;
    assert_eq!(view.status, StatusCode::OK, "{}", view.text);
    let v = &view.body;
    assert_eq!(v["events"], 4, "{v}");
    let ids: Vec<String> = v["identifiers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            format!(
                "{}:{}",
                i["kind"].as_str().unwrap(),
                i["value"].as_str().unwrap()
            )
        })
        .collect();
    for id in [
        "user_id:u-1",
        "anonymous_id:anon-1",
        "anonymous_id:anon-2",
        "email:ana@example.com",
    ] {
        assert!(ids.contains(&id.to_string()), "{id} not in {ids:?}");
    }
    assert!(v["links"]
        .as_array()
        .unwrap()
        .iter()
        .any(|l| l["source"] == "alias"));
    let entries = v["timeline"]["entries"].as_array().unwrap();
    let channels: Vec<&str> = entries
        .iter()
        .map(|e| e["channel"].as_str().unwrap())
        .collect();
    let activities: Vec<&str> = entries
        .iter()
        .map(|e| e["activity"].as_str().unwrap())
        .collect();
    assert_eq!(
        activities,
        ["payment_failed", "identify", "Pricing", "ad_clicked"]
    );
    // The batch's library says web; a message's own context wins (python: other).
    assert_eq!(channels, ["other", "web", "web", "web"]);
    // Received at 12:00:00 (the test clock), sent at 11:59:50: the client is 10 s behind.
    let first = &entries[0];
    assert_eq!(
        first["at"].as_i64().unwrap(),
        omnitrail_model::Timestamp::parse("2026-03-01T11:02:10Z")
            .unwrap()
            .as_micros()
    );
    // The same messages again: de-duplicated by messageId.
    let r = t.segment("/v1/batch", &batch).await;
    assert_eq!(
        (count(&r.body, "stored"), count(&r.body, "duplicates")),
        (0, 4)
    );
    let same = t.get("/api/v1/customers/u-1").await;
    assert_eq!(same.body["events"], 4);
}

#[tokio::test]
async fn every_segment_endpoint_maps_its_call() {
    let t = TestServer::new();
    let calls = [
        (
            "/v1/identify",
            json!({"userId": "u-2", "traits": {"phone": "+1 555 010 2000"}}),
        ),
        ("/v1/track", json!({"userId": "u-2", "event": "login"})),
        ("/v1/page", json!({"userId": "u-2"})),
        ("/v1/screen", json!({"userId": "u-2", "name": "Home"})),
        (
            "/v1/group",
            json!({"userId": "u-2", "groupId": "g-1", "traits": {"name": "Acme"}}),
        ),
        (
            "/v1/alias",
            json!({"userId": "u-2", "previousId": "anon-9"}),
        ),
        (
            "/v1/import",
            json!({"batch": [{"type": "track", "userId": "u-2", "event": "imported"}]}),
        ),
    ];
    for (path, body) in calls {
        let r = t.segment(path, &body).await;
        assert_eq!(r.status, StatusCode::OK, "{path}: {}", r.text);
        assert!(
            r.body["rejected"].as_array().unwrap().is_empty(),
            "{path}: {}",
            r.text
        );
    }
    let v = t.get("/api/v1/customers/+15550102000").await;
    assert_eq!(v.status, StatusCode::OK, "{}", v.text);
    let activities: Vec<&str> = v.body["timeline"]["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["activity"].as_str().unwrap())
        .collect();
    let mut sorted = activities.clone();
    sorted.sort();
    assert_eq!(
        sorted,
        [
            "Home",
            "group",
            "identify",
            "imported",
            "login",
            "page_viewed"
        ]
    );
    let traits: Vec<&str> = v.body["traits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert!(
        traits.contains(&"group_id") && traits.contains(&"group.name"),
        "{traits:?}"
    );
}

async fn demo_events(t: &TestServer) {
    let mut events = Vec::new();
    for c in 0..6 {
        let email = format!("c{c}@x.test");
        let steps = if c % 2 == 0 {
            ["visit", "cart", "purchase"]
        } else {
            ["visit", "cart", "abandon"]
        };
        for (i, s) in steps.iter().enumerate() {
            let mut e = event(
                &format!("d{c}-{i}"),
                &email,
                s,
                &format!("2026-02-0{}T10:0{i}:00Z", c + 1),
            );
            if i == 2 {
                e["channel"] = json!("phone");
            }
            events.push(e);
        }
    }
    let r = t
        .post_json("/v1/events", Some(&t.write.clone()), &Value::Array(events))
        .await;
    assert_eq!(count(&r.body, "stored"), 18, "{}", r.text);
}

#[tokio::test]
async fn every_analysis_answers_through_get_and_post() {
    let t = TestServer::new();
    demo_events(&t).await;
    let m = t.get("/api/v1/analyses/map").await;
    assert_eq!(m.status, StatusCode::OK, "{}", m.text);
    assert_eq!(m.body["totals"]["events"], 18);
    let v = t.get("/api/v1/analyses/variants?top=1").await;
    assert_eq!(
        v.body["variants"].as_array().unwrap().len(),
        1,
        "{}",
        v.text
    );
    let c = t.get("/api/v1/analyses/channels?window=2h").await;
    assert_eq!(c.status, StatusCode::OK, "{}", c.text);
    let p = t.get("/api/v1/analyses/paths?anchor=visit&steps=2").await;
    assert_eq!(p.body["paths"], 6, "{}", p.text);
    let f = t
        .get("/api/v1/analyses/funnel?step=visit&step=cart&step=purchase&dropped_at=3&limit=10")
        .await;
    assert_eq!(f.status, StatusCode::OK, "{}", f.text);
    assert_eq!(f.body["steps"][2]["cases"], 3);
    let posted = t
        .post_json(
            "/api/v1/analyses/funnel",
            Some(&t.secret.clone()),
            &json!({"step": ["visit", "cart", "purchase"], "dropped_at": 3, "limit": 10}),
        )
        .await;
    assert_eq!(posted.body, f.body, "GET and POST agree");
    let filtered = t
        .get("/api/v1/analyses/map?where=channel%20%3D%20%27phone%27")
        .await;
    assert_eq!(filtered.body["totals"]["events"], 6, "{}", filtered.text);

    // Issue 5's analyses through the same route.
    for uri in [
        "/api/v1/analyses/emotion?positions=3",
        "/api/v1/analyses/handoffs?window=2h",
        "/api/v1/analyses/journey-map?top=2",
        "/api/v1/analyses/friction?top=3&weight=loops%3D0",
        "/api/v1/analyses/channel-performance?by_trait=plan",
        "/api/v1/analyses/lifecycle?period=week&dormant_after=30d",
        "/api/v1/analyses/personas?k=2",
        "/api/v1/analyses/compare?a_to=2026-02-03&b_from=2026-02-03&funnel=visit%20%3E%20cart",
    ] {
        let r = t.get(uri).await;
        assert_eq!(r.status, StatusCode::OK, "{uri}: {}", r.text);
        assert!(r.body.is_object(), "{uri}");
    }

    // A designed journey given inline (the UI's editor), in YAML or JSON.
    let design = "name: browse\nsteps:\n  - activity: visit\n  - activity: cart\n";
    let inline = t
        .post_json(
            "/api/v1/analyses/conformance",
            Some(&t.secret.clone()),
            &json!({ "design": design }),
        )
        .await;
    assert_eq!(inline.status, StatusCode::OK, "{}", inline.text);
    assert!(
        inline.body["totals"]["cases"].as_u64().unwrap() > 0,
        "{}",
        inline.text
    );
    let broken = t
        .post_json(
            "/api/v1/analyses/conformance",
            Some(&t.secret.clone()),
            &json!({ "design": "{\"name\": \"x\", \"stepz\": []}" }),
        )
        .await;
    assert_eq!(broken.status, StatusCode::BAD_REQUEST, "{}", broken.text);
    let message = broken.body["message"].as_str().unwrap();
    assert!(message.starts_with("design: "), "{message}");

    // Expression errors name the API's parameter, not the CLI's option.
    let bad = t.get("/api/v1/analyses/map?segment=did(").await;
    let message = bad.body["message"].as_str().unwrap();
    assert!(message.starts_with("segment: error at column"), "{message}");

    // The UI's overview and the customers behind a map element.
    let o = t.get("/api/v1/analyses/overview?period=month&top=2").await;
    assert_eq!(o.status, StatusCode::OK, "{}", o.text);
    assert_eq!(o.body["events"], 18, "{}", o.text);
    assert_eq!(o.body["period"], "month");
    let edge = t
        .get("/api/v1/analyses/step-customers?step=visit&next=cart&limit=2")
        .await;
    assert_eq!(edge.status, StatusCode::OK, "{}", edge.text);
    let listed = edge.body["customers"].as_array().unwrap();
    assert!(edge.body["total"].as_u64().unwrap() >= listed.len() as u64 && !listed.is_empty());
    assert!(listed[0]["customer_id"].as_str().unwrap().starts_with('c'));

    for (uri, code) in [
        ("/api/v1/analyses/step-customers", "invalid_query"),
        (
            "/api/v1/analyses/step-customers?step=visit&limit=5000",
            "invalid_query",
        ),
        ("/api/v1/analyses/overview?period=decade", "invalid_query"),
        (
            "/api/v1/analyses/conformance?name=a&design=b",
            "invalid_query",
        ),
        ("/api/v1/analyses/map?where=channel%20%3D", "invalid_query"),
        ("/api/v1/analyses/map?nodes=5", "invalid_query"),
        ("/api/v1/analyses/channels?by=channel", "invalid_query"),
        ("/api/v1/analyses/paths", "invalid_query"),
        (
            "/api/v1/analyses/funnel?step=a&mode=sideways",
            "invalid_query",
        ),
        ("/api/v1/analyses/wizardry", "not_found"),
        ("/api/v1/analyses/friction?weight=luck%3D2", "invalid_query"),
        (
            "/api/v1/analyses/lifecycle?period=fortnight",
            "invalid_query",
        ),
        ("/api/v1/analyses/compare", "invalid_query"),
    ] {
        let r = t.get(uri).await;
        assert_eq!(r.body["code"], code, "{uri}: {}", r.text);
        assert!(r.status.is_client_error(), "{uri}");
    }
    let list = t.get("/api/v1/analyses").await;
    let names: Vec<&str> = list.body["analyses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    for name in [
        "map",
        "paths",
        "funnel",
        "variants",
        "channels",
        "journey-map",
        "emotion",
        "handoffs",
        "friction",
        "channel-performance",
        "lifecycle",
        "conformance",
        "personas",
        "compare",
    ] {
        assert!(names.contains(&name), "{names:?}");
    }
    let stats = t.get("/api/v1/stats").await;
    assert_eq!(stats.body["by_channel"][0]["name"], "web");
    let imports = t.get("/api/v1/imports").await;
    assert_eq!(imports.body, json!([]));
}

#[tokio::test]
async fn conformance_runs_the_designed_journey_of_the_data_dir() {
    let t = TestServer::new();
    demo_events(&t).await;
    let missing = t.get("/api/v1/analyses/conformance").await;
    assert!(missing.status.is_client_error(), "{}", missing.text);
    assert!(
        missing.body["message"]
            .as_str()
            .unwrap()
            .contains("journeys/"),
        "{}",
        missing.text
    );
    let folder = t.dir.path().join("journeys");
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::write(
        folder.join("buying.yaml"),
        "name: buying\nsteps:\n  - activity: visit\n  - activity: cart\n  - activity: purchase\n",
    )
    .unwrap();
    let r = t.get("/api/v1/analyses/conformance?name=buying").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let unknown = t.get("/api/v1/analyses/conformance?name=nope").await;
    assert!(unknown.status.is_client_error(), "{}", unknown.text);
    assert!(
        unknown.body["message"].as_str().unwrap().contains("buying"),
        "lists the known designs: {}",
        unknown.text
    );
}

#[tokio::test]
async fn customer_view_options_and_notes() {
    let t = TestServer::new();
    demo_events(&t).await;
    let v = t
        .get("/api/v1/customers/c0@x.test?channel=phone&limit=5")
        .await;
    assert_eq!(v.status, StatusCode::OK, "{}", v.text);
    assert_eq!(v.body["timeline"]["total"], 1);
    let r = t.get("/api/v1/customers/nobody@x.test").await;
    assert_eq!(
        (r.status, r.body["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("not_found"))
    );
    let r = t.get("/api/v1/customers/c0@x.test?colour=red").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);

    let s = t.secret.clone();
    let added = t
        .post_json(
            "/api/v1/customers/email:c0@x.test/notes",
            Some(&s),
            &json!({"text": "promised a refund", "author": "jo", "topic": "billing"}),
        )
        .await;
    assert_eq!(added.status, StatusCode::CREATED, "{}", added.text);
    let id = added.body["id"].as_i64().unwrap();
    let edited = t
        .call(
            Method::PATCH,
            &format!("/api/v1/notes/{id}"),
            Some(&s),
            Body::from(json!({"text": "refund sent"}).to_string()),
        )
        .await;
    assert_eq!(edited.status, StatusCode::OK, "{}", edited.text);
    assert_eq!(edited.body["topic"], "billing");
    let notes = t.get("/api/v1/customers/c0@x.test/notes").await;
    assert_eq!(notes.body[0]["text"], "refund sent");
    let r = t
        .post_json(
            "/api/v1/customers/c0@x.test/notes",
            Some(&s),
            &json!({"text": "  "}),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = t
        .call(
            Method::PATCH,
            "/api/v1/notes/999",
            Some(&s),
            Body::from("{\"text\": \"x\"}"),
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = t
        .post_json(
            "/api/v1/customers/c0@x.test/notes",
            Some(&s),
            &json!({"txt": "typo"}),
        )
        .await;
    assert_eq!(r.body["code"], "invalid_payload");
}

#[tokio::test]
async fn dead_letters_replay_after_a_fix_and_never_twice() {
    let t = TestServer::new();
    let s = t.secret.clone();
    let mut bad = event("r1", "a@x.test", "login", "2026-02-01T10:00:00Z");
    bad["properties"] = json!({"sentiment": 9});
    t.post_json("/v1/events", Some(&t.write.clone()), &json!([bad]))
        .await;
    t.segment(
        "/v1/batch",
        &json!({"batch": [{"type": "track", "userId": "u-5", "messageId": "q1"}]}),
    )
    .await;
    let letters = t.get("/api/v1/dead-letters").await.body["letters"].clone();
    assert_eq!(letters.as_array().unwrap().len(), 2);
    let (native, seg) = (
        letters[0]["id"].as_i64().unwrap(),
        letters[1]["id"].as_i64().unwrap(),
    );
    assert_eq!(letters[1]["source"], "segment:/v1/batch");

    // As stored they still fail and stay.
    let r = t
        .post_json(
            "/api/v1/dead-letters/replay",
            Some(&s),
            &json!({"ids": [native, seg, 999]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["failed"].as_array().unwrap().len(), 2);
    assert_eq!(r.body["not_found"], json!([999]));

    let mut fixed = bad_fixed();
    fixed["event_id"] = json!("r1");
    let r = t
        .post_json(
            &format!("/api/v1/dead-letters/{native}/replay"),
            Some(&s),
            &json!({"payload": fixed}),
        )
        .await;
    assert_eq!(
        (r.body["replayed"].clone(), r.body["stored"].clone()),
        (json!([native]), json!(1)),
        "{}",
        r.text
    );
    let r = t
        .post_json(
            &format!("/api/v1/dead-letters/{seg}/replay"),
            Some(&s),
            &json!({"payload": {"type": "track", "userId": "u-5", "messageId": "q1", "event": "fixed"}}),
        )
        .await;
    assert_eq!(r.body["stored"], 1, "{}", r.text);
    let r = t
        .post_json(
            "/api/v1/dead-letters/replay",
            Some(&s),
            &json!({"ids": [native, seg]}),
        )
        .await;
    assert_eq!(r.body["already_replayed"], json!([native, seg]));
    assert!(t.get("/api/v1/dead-letters").await.body["letters"]
        .as_array()
        .unwrap()
        .is_empty());
    let all = t.get("/api/v1/dead-letters?include_replayed=true").await;
    assert!(all.body["letters"][0]["replayed_at"].is_string());
    assert_eq!(t.get("/api/v1/stats").await.body["events"], 2);
    let v = t.get("/api/v1/customers/user_id:u-5").await;
    assert_eq!(v.body["timeline"]["entries"][0]["activity"], "fixed");
}

fn bad_fixed() -> Value {
    let mut e = event("r1", "a@x.test", "login", "2026-02-01T10:00:00Z");
    e["properties"] = json!({"sentiment": 0.9});
    e
}

#[tokio::test]
async fn projects_are_isolated_by_key() {
    let t = TestServer::new();
    let app = t.server.app().clone();
    let shop_write = app
        .create_key("shop", omnitrail_app::keys::KeyKind::Write, "")
        .unwrap()
        .key;
    let shop_secret = app
        .create_key("shop", omnitrail_app::keys::KeyKind::Secret, "")
        .unwrap()
        .key;
    let body = json!([event("p1", "ana@x.test", "login", "2026-02-01T10:00:00Z")]);
    let r = t.post_json("/v1/events", Some(&shop_write), &body).await;
    assert_eq!(count(&r.body, "stored"), 1);
    // The same event id in the default project is another event.
    let r = t
        .post_json("/v1/events", Some(&t.write.clone()), &body)
        .await;
    assert_eq!(count(&r.body, "stored"), 1);
    let r = t
        .post_json(
            "/v1/events",
            Some(&t.write.clone()),
            &json!([event("p2", "ben@x.test", "login", "2026-02-01T10:00:00Z")]),
        )
        .await;
    assert_eq!(count(&r.body, "stored"), 1);

    let shop = |uri: &'static str| {
        let k = shop_secret.clone();
        let t = &t;
        async move { t.call(Method::GET, uri, Some(&k), Body::empty()).await }
    };
    assert_eq!(shop("/api/v1/stats").await.body["events"], 1);
    assert_eq!(t.get("/api/v1/stats").await.body["events"], 2);
    assert_eq!(
        shop("/api/v1/customers/ben@x.test").await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        shop("/api/v1/customers/ana@x.test").await.status,
        StatusCode::OK
    );
    let keys = shop("/api/v1/keys").await.body;
    assert_eq!(keys.as_array().unwrap().len(), 2);
    assert!(keys
        .as_array()
        .unwrap()
        .iter()
        .all(|k| k["project"] == "shop"));
    // A project cannot revoke another's key.
    let default_keys = t.get("/api/v1/keys").await.body;
    let id = default_keys[0]["id"].as_i64().unwrap();
    let r = t
        .call(
            Method::DELETE,
            &format!("/api/v1/keys/{id}"),
            Some(&shop_secret),
            Body::empty(),
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}
