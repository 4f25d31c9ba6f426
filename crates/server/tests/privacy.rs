//! Erasure, suppression and the audit log over HTTP; rate limits, timeouts and hostile
//! inputs: every one a clear answer, none a crash.

mod common;

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use common::{event, TestServer};
use omnitrail_server::ServerConfig;
use serde_json::json;
use std::time::Duration;

const EMAIL: &str = "Erin.Erased@Example.com";

#[tokio::test]
async fn delete_erases_a_customer_and_suppression_holds_until_lifted() {
    let t = TestServer::new();
    let events = json!([
        event("e1", EMAIL, "login", "2026-02-01T10:00:00Z"),
        event("e2", EMAIL, "purchase", "2026-02-01T10:05:00Z"),
        event("k1", "kept@example.com", "login", "2026-02-01T10:00:00Z"),
    ]);
    let r = t
        .post_json("/v1/events", Some(&t.write.clone()), &events)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["stored"], 3);

    // Only a secret key may erase.
    let r = t
        .call(
            Method::DELETE,
            "/api/v1/customers/email:erin.erased@example.com",
            Some(&t.write.clone()),
            Body::empty(),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);

    let r = t
        .call(
            Method::DELETE,
            "/api/v1/customers/email:erin.erased@example.com",
            Some(&t.secret.clone()),
            Body::empty(),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let receipt = &r.body;
    assert_eq!(
        receipt["counts"]["log_events"].as_u64().unwrap()
            + receipt["counts"]["segment_events"].as_u64().unwrap(),
        2
    );
    assert_eq!(receipt["identifier_hashes"].as_array().unwrap().len(), 1);
    assert!(receipt["actor"].as_str().unwrap().starts_with("api-key:"));
    assert!(!r.text.to_lowercase().contains("erin"), "{}", r.text);

    let r = t
        .get("/api/v1/customers/email:erin.erased@example.com")
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text);
    let r = t.get("/api/v1/customers/email:kept@example.com").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let r = t
        .call(
            Method::DELETE,
            "/api/v1/customers/email:erin.erased@example.com",
            Some(&t.secret.clone()),
            Body::empty(),
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "erasing twice: {}", r.text);

    // Suppressed: her events are dead letters now.
    let again = json!([event("e3", EMAIL, "login", "2026-02-02T10:00:00Z")]);
    let r = t
        .post_json("/v1/events", Some(&t.write.clone()), &again)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["stored"], 0);
    assert_eq!(r.body["rejected"][0]["reason"], "suppressed");
    let letters = t.get("/api/v1/dead-letters").await;
    assert!(
        !letters.text.to_lowercase().contains("erin"),
        "{}",
        letters.text
    );

    let list = t.get("/api/v1/suppressions").await;
    assert_eq!(list.status, StatusCode::OK);
    assert_eq!(list.body.as_array().unwrap().len(), 1);
    assert!(list.body[0]["lifted_at"].is_null());

    let r = t
        .call(
            Method::DELETE,
            "/api/v1/suppressions/email:erin.erased@example.com",
            Some(&t.secret.clone()),
            Body::empty(),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["lifted"], 1);
    let r = t
        .call(
            Method::DELETE,
            "/api/v1/suppressions/not-an-identifier",
            Some(&t.secret.clone()),
            Body::empty(),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);

    let r = t
        .post_json("/v1/events", Some(&t.write.clone()), &again)
        .await;
    assert_eq!(r.body["stored"], 1, "{}", r.text);

    let audit = t.get("/api/v1/audit").await;
    assert_eq!(audit.status, StatusCode::OK);
    let actions: Vec<&str> = audit
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["erase", "lift"]);
}

#[tokio::test]
async fn a_key_past_its_rate_gets_429_with_retry_after() {
    let t = TestServer::with_config(ServerConfig {
        rate_limit_per_sec: 0.01,
        rate_limit_burst: 2,
        ..ServerConfig::default()
    });
    let body = json!([event("r1", "a@x.test", "login", "2026-02-01T10:00:00Z")]);
    for _ in 0..2 {
        let r = t
            .post_json("/v1/events", Some(&t.write.clone()), &body)
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    }
    let r = t
        .post_json("/v1/events", Some(&t.write.clone()), &body)
        .await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{}", r.text);
    assert_eq!(r.body["code"], "rate_limited");
    let retry: u64 = r.headers[header::RETRY_AFTER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=100).contains(&retry), "{retry}");
    // Segment calls share the key's bucket; the query API is not rate limited.
    let r = t
        .segment("/v1/track", &json!({"userId": "u", "event": "e"}))
        .await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{}", r.text);
    assert_eq!(t.get("/api/v1/stats").await.status, StatusCode::OK);
}

#[tokio::test]
async fn a_body_that_never_ends_times_out_with_408() {
    let t = TestServer::with_config(ServerConfig {
        request_timeout: Duration::from_millis(200),
        ..ServerConfig::default()
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = t.server.clone();
    tokio::spawn(async move { server.serve(listener, std::future::pending()).await });
    let key = t.write.clone();
    // Announces 100 bytes of body, sends one, and waits for the answer.
    let answer = tokio::task::spawn_blocking(move || {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        write!(
            s,
            "POST /v1/events HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {key}\r\nContent-Length: 100\r\n\r\n["
        )
        .unwrap();
        let mut buf = vec![0u8; 4096];
        let n = s.read(&mut buf).unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    })
    .await
    .unwrap();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("request_timeout"), "{answer}");
}

/// Hostile or broken input to the collector: each a clear 4xx or a dead letter with its
/// reason, never a 500, and the server keeps serving.
#[tokio::test]
async fn hostile_inputs_get_clear_errors() {
    let t = TestServer::new();
    let key = t.write.clone();
    let raw = |bytes: Vec<u8>| {
        Request::builder()
            .method(Method::POST)
            .uri("/v1/events")
            .header(header::AUTHORIZATION, format!("Bearer {key}"))
            .header(header::CONTENT_TYPE, "application/x-ndjson")
            .body(Body::from(bytes))
            .unwrap()
    };
    let deep = format!("{}1{}", "[".repeat(100_000), "]".repeat(100_000));
    let deep_props = format!(
        r#"{{"timestamp":"2026-02-01T10:00:00Z","identifiers":{{"email":"d@x.test"}},"channel":"web","activity":"a","properties":{{"p":{}1{}}}}}"#,
        "{\"a\":".repeat(50),
        "}".repeat(50)
    );
    let mut bad_utf8 = br#"{"timestamp":"2026-02-01T10:00:00Z","identifiers":{"email":"u@x.test"},"channel":"web","activity":""#.to_vec();
    bad_utf8.extend_from_slice(&[0xff, 0xfe, 0xc3]);
    bad_utf8.extend_from_slice(br#""}"#);
    let with = |field: &str, value: &str| {
        format!(
            r#"{{"timestamp":"2026-02-01T10:00:00Z","identifiers":{{"email":"f@x.test"}},"channel":"web","activity":"a",{field}:{value}}}"#
        )
    };
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("malformed utf-8", bad_utf8),
        ("deeply nested json", deep.into_bytes()),
        ("deeply nested property", deep_props.into_bytes()),
        (
            "huge number",
            with(r#""properties""#, r#"{"amount":1e999}"#).into_bytes(),
        ),
        (
            "huge integer",
            with(r#""properties""#, &format!(r#"{{"amount":{}}}"#, "9".repeat(5000))).into_bytes(),
        ),
        (
            "timestamp past year 9999",
            br#"{"timestamp":"99999-01-01T00:00:00Z","identifiers":{"email":"t@x.test"},"channel":"web","activity":"a"}"#.to_vec(),
        ),
        (
            "epoch timestamp out of range",
            br#"{"timestamp":1e300,"identifiers":{"email":"t@x.test"},"channel":"web","activity":"a"}"#.to_vec(),
        ),
        (
            "negative epoch timestamp",
            br#"{"timestamp":-1e18,"identifiers":{"email":"t@x.test"},"channel":"web","activity":"a"}"#.to_vec(),
        ),
        (
            "long activity",
            format!(
                r#"{{"timestamp":"2026-02-01T10:00:00Z","identifiers":{{"email":"l@x.test"}},"channel":"web","activity":"{}"}}"#,
                "a".repeat(10_000)
            )
            .into_bytes(),
        ),
        (
            "long identifier",
            format!(
                r#"{{"timestamp":"2026-02-01T10:00:00Z","identifiers":{{"user_id":"{}"}},"channel":"web","activity":"a"}}"#,
                "u".repeat(10_000)
            )
            .into_bytes(),
        ),
        (
            "long property name",
            with(r#""properties""#, &format!(r#"{{"{}":1}}"#, "n".repeat(10_000))).into_bytes(),
        ),
    ];
    for (what, bytes) in cases {
        let r = t.send(raw(bytes)).await;
        assert!(
            r.status.is_client_error() || r.status == StatusCode::OK,
            "{what}: {} {}",
            r.status,
            r.text
        );
        if r.status == StatusCode::OK {
            assert_eq!(r.body["stored"], 0, "{what}: {}", r.text);
            let reason = r.body["rejected"][0]["reason"].as_str().unwrap_or("");
            assert!(!reason.is_empty(), "{what}: no reason in {}", r.text);
        } else {
            assert!(
                r.body["message"].as_str().is_some_and(|m| !m.is_empty()),
                "{what}: {}",
                r.text
            );
        }
    }
    assert_eq!(t.get("/healthz").await.status, StatusCode::OK);
}
