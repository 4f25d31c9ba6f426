//! Journey triggers over HTTP: rules sent as YAML or JSON (the parser's line and field
//! errors reach the client), replay of a rule that is not saved, and the task list with
//! each task's chain, customer label, counts per state and limit.

mod common;

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use common::{event, Reply, TestServer};
use serde_json::{json, Value};

/// Fires on a payment failure followed by a complaint within 2 hours; queues a callback.
const RULE: &str = "\
name: failed-then-complaint
steps:
  - activity: payment_failed
  - activity: complaint
    within: 2h
actions:
  - task: {queue: callback, title: Call back}
";

async fn post_text(t: &TestServer, uri: &str, content_type: &str, text: &str) -> Reply {
    t.send(
        Request::builder()
            .method(Method::POST)
            .uri(uri)
            .header(header::AUTHORIZATION, format!("Bearer {}", t.secret))
            .header(header::CONTENT_TYPE, content_type)
            .body(Body::from(text.to_string()))
            .unwrap(),
    )
    .await
}

/// A failure at 10:00 and a complaint at 11:30 (the clock says 12:00): one firing each.
fn sequence(id: &str, identifiers: Value) -> Vec<Value> {
    ["payment_failed", "complaint"]
        .iter()
        .zip(["2026-03-01T10:00:00Z", "2026-03-01T11:30:00Z"])
        .map(|(activity, at)| {
            json!({"event_id": format!("{id}-{activity}"), "timestamp": at,
                   "identifiers": identifiers, "channel": "web", "activity": activity})
        })
        .collect()
}

async fn ingest(t: &TestServer, events: Vec<Value>) {
    let r = t
        .post_json("/v1/events", Some(&t.write.clone()), &Value::Array(events))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
}

#[tokio::test]
async fn rule_bodies_may_be_yaml_and_the_parser_names_the_line_or_field() {
    let t = TestServer::new();
    let r = post_text(&t, "/api/v1/rules", "application/yaml", RULE).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.body["rule"]["steps"][1]["within"], "2h");
    // text/plain and text/yaml (with parameters) are rule text too; the same name replaces.
    let r = post_text(&t, "/api/v1/rules", "text/plain; charset=utf-8", RULE).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let r = post_text(&t, "/api/v1/rules", "text/yaml", RULE).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);

    // Malformed text: the line.
    let broken = "name: x\nsteps:\n  - activity: a\n   bad: [\n";
    let r = post_text(&t, "/api/v1/rules", "application/yaml", broken).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    assert_eq!(r.body["code"], "invalid_rule", "{}", r.text);
    let message = r.body["message"].as_str().unwrap_or_default();
    assert!(message.starts_with("line "), "{message}");

    // A bad value: the field path.
    let no_within = RULE.replace("    within: 2h\n", "");
    let r = post_text(&t, "/api/v1/rules", "application/yaml", &no_within).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    let message = r.body["message"].as_str().unwrap_or_default();
    assert!(message.contains("steps[1].within"), "{message}");

    // JSON bodies work as before, and a JSON body that is not JSON says so.
    let r = t
        .post_json(
            "/api/v1/rules",
            Some(&t.secret.clone()),
            &json!({"name": "j", "steps": ["a"], "actions": [{"task": {"queue": "q", "title": "t"}}]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let r = post_text(&t, "/api/v1/rules", "application/json", "name: j").await;
    assert_eq!(r.body["code"], "invalid_json", "{}", r.text);
    // A JSON string is the rule's text, as an editor sends it.
    let r = t
        .post_json("/api/v1/rules", Some(&t.secret.clone()), &json!(no_within))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    let message = r.body["message"].as_str().unwrap_or_default();
    assert!(message.contains("steps[1].within"), "{message}");

    // A test takes the rule as YAML text inside its JSON body, and reports its errors.
    let events = sequence("x", json!({"email": "x@example.com"}));
    let r = t
        .post_json(
            "/api/v1/rules/test",
            Some(&t.secret.clone()),
            &json!({"rule": RULE, "events": events}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(
        r.body["firings"].as_array().map(Vec::len),
        Some(1),
        "{}",
        r.text
    );
    let r = t
        .post_json(
            "/api/v1/rules/test",
            Some(&t.secret.clone()),
            &json!({"rule": no_within, "events": events}),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    let message = r.body["message"].as_str().unwrap_or_default();
    assert!(message.contains("steps[1].within"), "{message}");
}

#[tokio::test]
async fn a_draft_replays_over_history_without_being_saved() {
    let t = TestServer::new();
    ingest(&t, sequence("a", json!({"email": "ana@example.com"}))).await;
    ingest(&t, sequence("b", json!({"email": "bo@example.com"}))).await;

    let r = t
        .post_json(
            "/api/v1/rules/replay",
            Some(&t.secret.clone()),
            &json!({"rule": RULE, "from": "2026-03-01T00:00:00Z"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["rule"], "failed-then-complaint");
    assert_eq!(r.body["firings"], 2, "{}", r.text);
    assert_eq!(r.body["customers"], 2, "{}", r.text);
    let steps: Vec<&str> = r.body["fired"][0]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["activity"].as_str())
        .collect();
    assert_eq!(steps, ["payment_failed", "complaint"]);

    // The rule may be an object too; a range after the completions finds nothing.
    let object = json!({"name": "d", "steps": ["payment_failed", {"activity": "complaint", "within": "2h"}],
                        "actions": [{"task": {"queue": "q", "title": "t"}}]});
    let r = t
        .post_json(
            "/api/v1/rules/replay",
            Some(&t.secret.clone()),
            &json!({"rule": object, "from": "2026-03-01T11:31:00Z"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["firings"], 0, "{}", r.text);

    // No side effects: no rule saved, no task queued.
    assert_eq!(t.get("/api/v1/rules").await.body, json!([]));
    assert_eq!(t.get("/api/v1/tasks").await.body["tasks"], json!([]));

    // Errors: the parser's, and a range that is empty.
    let r = t
        .post_json(
            "/api/v1/rules/replay",
            Some(&t.secret.clone()),
            &json!({"rule": "name: d\nsteps: [a]\nactions: []\n"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    assert_eq!(r.body["code"], "invalid_rule", "{}", r.text);
    let r = t
        .post_json(
            "/api/v1/rules/replay",
            Some(&t.secret.clone()),
            &json!({"rule": RULE, "from": "2026-03-02T00:00:00Z", "to": "2026-03-01T00:00:00Z"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
}

#[tokio::test]
async fn tasks_carry_their_chain_and_label_with_counts_and_a_limit() {
    let t = TestServer::new();
    let r = post_text(&t, "/api/v1/rules", "application/yaml", RULE).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    ingest(&t, sequence("a", json!({"email": "ana@example.com"}))).await;
    ingest(&t, sequence("u", json!({"user_id": "u-7"}))).await;
    ingest(
        &t,
        sequence("c", json!({"crm_id": "C-1", "user_id": "u-8"})),
    )
    .await;
    // An event no rule concerns does not make a task.
    ingest(
        &t,
        vec![event("x", "x@example.com", "login", "2026-03-01T11:00:00Z")],
    )
    .await;

    let all = t.get("/api/v1/tasks").await;
    assert_eq!(all.status, StatusCode::OK, "{}", all.text);
    assert_eq!(
        all.body["counts"],
        json!({"open": 3, "claimed": 0, "done": 0})
    );
    let tasks = all.body["tasks"].as_array().unwrap();
    let labels: Vec<&str> = tasks
        .iter()
        .filter_map(|t| t["customer_label"].as_str())
        .collect();
    assert_eq!(
        labels,
        ["email:ana@example.com", "user_id:u-7", "user_id:u-8"]
    );
    let first = &tasks[0];
    assert_eq!(first["completed_at"], all.body["tasks"][1]["completed_at"]);
    assert!(first["completed_at"].is_i64(), "{first}");
    let steps: Vec<(&str, i64)> = first["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["activity"].as_str().unwrap(), s["step"].as_i64().unwrap()))
        .collect();
    assert_eq!(steps, [("payment_failed", 1), ("complaint", 2)]);
    assert_eq!(first["steps"][1]["timestamp"], first["completed_at"]);

    // The limit takes the oldest; counts stay those of every state.
    let r = t.get("/api/v1/tasks?limit=2").await;
    assert_eq!(r.body["tasks"].as_array().map(Vec::len), Some(2));
    assert_eq!(r.body["counts"]["open"], 3);
    let id = first["id"].as_i64().unwrap();
    let r = t
        .call(
            Method::PATCH,
            &format!("/api/v1/tasks/{id}"),
            Some(&t.secret.clone()),
            Body::from(json!({"action": "claim", "agent": "a-1"}).to_string()),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    // The changed task comes back with its chain and label as well.
    assert_eq!(r.body["customer_label"], "email:ana@example.com");
    assert_eq!(r.body["steps"], first["steps"]);
    let r = t.get("/api/v1/tasks?status=open").await;
    assert_eq!(
        r.body["counts"],
        json!({"open": 2, "claimed": 1, "done": 0})
    );
    assert_eq!(r.body["tasks"].as_array().map(Vec::len), Some(2));

    // Per customer and by creation time.
    let r = t.get("/api/v1/tasks?customer=user_id:u-7").await;
    assert_eq!(
        r.body["counts"],
        json!({"open": 1, "claimed": 0, "done": 0})
    );
    let r = t.get("/api/v1/tasks?from=2026-03-02T00:00:00Z").await;
    assert_eq!(
        r.body["counts"],
        json!({"open": 0, "claimed": 0, "done": 0})
    );

    // The customer view's tasks are the same shape.
    let view = t.get("/api/v1/customers/email:ana@example.com").await;
    assert_eq!(
        view.body["tasks"][0]["steps"], first["steps"],
        "{}",
        view.text
    );
    assert_eq!(
        view.body["tasks"][0]["customer_label"],
        "email:ana@example.com"
    );

    // Bad parameters are named.
    for (query, word) in [
        ("limit=1001", "limit"),
        ("status=later", "status"),
        ("from=yesterday", "from"),
        ("page=2", "page"),
    ] {
        let r = t.get(&format!("/api/v1/tasks?{query}")).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{query}: {}", r.text);
        let message = r.body["message"].as_str().unwrap_or_default();
        assert!(message.contains(word), "{query}: {message}");
    }
}
