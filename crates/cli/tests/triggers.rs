//! Journey triggers end to end: the seed story through a real server on port 0 with a
//! local webhook receiver that verifies Standard Webhooks signatures; a restart between the
//! two events; and a replay of the seed rule over demo data, counted independently.

mod common;
mod serving;

use common::{ok_json, ok_stdout};
use omnitrail_app::{demo_customer_events, SynthConfig};
use omnitrail_triggers::sign::{verify, Secret};
use serde_json::{json, Value};
use serving::{client, create_key, get, post, start};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// One request the receiver got: headers (lowercase names), body, and when it arrived.
#[derive(Clone, Debug)]
struct Received {
    headers: BTreeMap<String, String>,
    body: Vec<u8>,
    at: Instant,
}

/// A minimal HTTP receiver on port 0 that answers 200 to every POST.
struct Receiver {
    url: String,
    got: Arc<Mutex<Vec<Received>>>,
}

impl Receiver {
    fn start() -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let got: Arc<Mutex<Vec<Received>>> = Arc::default();
        let sink = got.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    continue;
                }
                let mut headers = BTreeMap::new();
                loop {
                    let mut h = String::new();
                    reader.read_line(&mut h).unwrap();
                    let h = h.trim_end();
                    if h.is_empty() {
                        break;
                    }
                    if let Some((k, v)) = h.split_once(':') {
                        headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
                    }
                }
                let len: usize = headers
                    .get("content-length")
                    .and_then(|l| l.parse().ok())
                    .unwrap_or(0);
                let mut body = vec![0; len];
                reader.read_exact(&mut body).unwrap();
                let at = Instant::now();
                sink.lock().unwrap().push(Received { headers, body, at });
                let _ = stream.write_all(
                    b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                );
            }
        });
        Receiver { url, got }
    }

    fn received(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }

    /// Waits (bounded, generously) for `n` requests.
    fn wait_for(&self, n: usize) -> Vec<Received> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let got = self.received();
            if got.len() >= n || Instant::now() > deadline {
                return got;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

fn seed_rule(url: &str) -> Value {
    json!({
        "name": "payment-failed-then-complaint",
        "steps": [
            {"activity": "payment_failed", "channel": "web"},
            {"activity": "complaint", "channel": "social", "within": "2h"}
        ],
        "unless": [{"activity": "callback_completed", "after": 1, "within": "1h"}],
        "cooldown": "1d",
        "actions": [
            {"webhook": {"url": url, "secret": SECRET}},
            {"task": {"queue": "callback", "title": "Call back about the failed payment"}},
            {"emit": {"activity": "callback_scheduled", "channel": "phone"}}
        ]
    })
}

fn iso(secs_ago: i64) -> String {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    let t = now.as_secs() as i64 - secs_ago;
    // Epoch seconds are accepted as timestamps; a fraction keeps sub-second order.
    format!("{t}.{:03}", now.subsec_millis())
}

fn event(id: &str, ids: Value, channel: &str, activity: &str, secs_ago: i64) -> String {
    json!({"event_id": id, "timestamp": iso(secs_ago).parse::<f64>().unwrap(),
           "identifiers": ids, "channel": channel, "activity": activity})
    .to_string()
}

/// Checks one webhook call: headers, signature over id.timestamp.body, and its body.
fn check_signed(r: &Received) -> Value {
    let id = &r.headers["webhook-id"];
    let ts: i64 = r.headers["webhook-timestamp"].parse().unwrap();
    let sig = &r.headers["webhook-signature"];
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    verify(
        &Secret::parse(SECRET).unwrap(),
        id,
        ts,
        &r.body,
        sig,
        now,
        300,
    )
    .unwrap_or_else(|e| panic!("bad signature {sig}: {e}"));
    serde_json::from_slice(&r.body).unwrap()
}

#[test]
fn failed_payment_then_complaint_under_a_linked_handle_calls_the_webhook_once_and_queues_a_callback(
) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let write = create_key(&data, "write");
    let secret = create_key(&data, "secret");
    let server = start(&data, &["serve"]);
    let url = server.url.clone();
    let hook = Receiver::start();

    let (status, rule) = post(
        &format!("{url}/api/v1/rules"),
        &secret,
        seed_rule(&hook.url).to_string(),
    );
    assert_eq!(status, 201, "{rule}");

    // The social care team linked her handle to her email two hours ago; the payment
    // failed 70 minutes ago (so the 1 h unless window has closed); she complains now under
    // the handle alone.
    let before = [
        event(
            "link",
            json!({"social:twitter": "ana_b", "email": "ana@example.com"}),
            "social",
            "social_reply",
            7200,
        ),
        event(
            "pf",
            json!({"user_id": "u-ana", "email": "ana@example.com"}),
            "web",
            "payment_failed",
            4200,
        ),
        // Another customer's complaint: no payment failure, no firing.
        event(
            "other",
            json!({"social:twitter": "ben_c"}),
            "social",
            "complaint",
            60,
        ),
    ];
    let (status, receipt) = post(&format!("{url}/v1/events"), &write, before.join("\n"));
    assert_eq!(
        (status, receipt["stored"].as_u64()),
        (200, Some(3)),
        "{receipt}"
    );
    assert!(hook.received().is_empty());

    let complaint = event(
        "complaint",
        json!({"social:twitter": "ana_b"}),
        "social",
        "complaint",
        0,
    );
    let (status, _) = post(&format!("{url}/v1/events"), &write, complaint.clone());
    let acked = Instant::now();
    assert_eq!(status, 200);
    let got = hook.wait_for(1);
    assert_eq!(got.len(), 1, "one webhook call");
    eprintln!(
        "webhook arrived {:?} after the complaint's acknowledgement",
        got[0].at.saturating_duration_since(acked)
    );
    let body = check_signed(&got[0]);
    assert_eq!(body["type"], "rule.fired");
    let data_ = &body["data"];
    assert_eq!(data_["rule"], "payment-failed-then-complaint");
    let ids: Vec<&str> = data_["identifiers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(ids.contains(&"social:twitter:ana_b") && ids.contains(&"email:ana@example.com"));
    let steps: Vec<&str> = data_["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["activity"].as_str().unwrap())
        .collect();
    assert_eq!(steps, ["payment_failed", "complaint"]);

    // The same complaint again (a client retry) and more events: no second call.
    let (status, receipt) = post(&format!("{url}/v1/events"), &write, complaint);
    assert_eq!((status, receipt["duplicates"].as_u64()), (200, Some(1)));

    // Her customer view, by the handle, shows the open callback task.
    let (status, view) = get(
        &format!("{url}/api/v1/customers/social:twitter:ana_b"),
        &secret,
    );
    assert_eq!(status, 200, "{view}");
    assert_eq!(view["customer_id"], data_["customer_id"]);
    let tasks = view["tasks"].as_array().unwrap();
    assert_eq!(tasks.len(), 1, "{view}");
    assert_eq!(
        (tasks[0]["queue"].as_str(), tasks[0]["status"].as_str()),
        (Some("callback"), Some("open"))
    );
    let task_id = tasks[0]["id"].as_i64().unwrap();
    // It says whom it is for and why it exists: the firing's chain.
    assert_eq!(
        tasks[0]["customer_label"], "email:ana@example.com",
        "{view}"
    );
    let steps: Vec<&str> = tasks[0]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["activity"].as_str())
        .collect();
    assert_eq!(steps, ["payment_failed", "complaint"], "{view}");

    // The emitted `callback_scheduled` joins her journey on the next timer tick.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, view) = get(
            &format!("{url}/api/v1/customers/email:ana@example.com"),
            &secret,
        );
        let text = view["timeline"].to_string();
        if text.contains("callback_scheduled") {
            break;
        }
        assert!(Instant::now() < deadline, "no callback_scheduled: {view}");
        std::thread::sleep(Duration::from_millis(100));
    }

    // An agent claims and closes the task through the API.
    let patch = |body: Value| {
        let r = client()
            .patch(format!("{url}/api/v1/tasks/{task_id}"))
            .bearer_auth(&secret)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .unwrap();
        (r.status().as_u16(), r.json::<Value>().unwrap())
    };
    let (status, task) = patch(json!({"action": "claim", "agent": "a-17"}));
    assert_eq!((status, task["status"].as_str()), (200, Some("claimed")));
    let (status, _) = patch(json!({"action": "claim", "agent": "a-18"}));
    assert_eq!(status, 409);
    let (status, task) = patch(json!({"action": "done"}));
    assert_eq!((status, task["status"].as_str()), (200, Some("done")));
    let (_, open) = get(&format!("{url}/api/v1/tasks?status=open"), &secret);
    assert_eq!(open["tasks"], json!([]), "{open}");
    assert_eq!(
        open["counts"],
        json!({"open": 0, "claimed": 0, "done": 1}),
        "{open}"
    );

    // The delivery log shows the one delivery.
    let (_, log) = get(&format!("{url}/api/v1/webhook-deliveries"), &secret);
    let log = log.as_array().unwrap();
    assert_eq!(log.len(), 1);
    assert_eq!(log[0]["status"], "delivered");

    // A rule test evaluates without side effects.
    let (status, tested) = post(
        &format!("{url}/api/v1/rules/test"),
        &secret,
        json!({"rule": seed_rule(&hook.url), "events": [
            {"timestamp": "2026-01-01T10:00:00Z", "identifiers": {"email": "x@example.com"}, "channel": "web", "activity": "payment_failed"},
            {"timestamp": "2026-01-01T11:30:00Z", "identifiers": {"email": "x@example.com"}, "channel": "social", "activity": "complaint"}
        ]})
        .to_string(),
    );
    assert_eq!(status, 200, "{tested}");
    assert_eq!(tested["firings"].as_array().unwrap().len(), 1);
    // An invalid rule names its field.
    let (status, err) = post(
        &format!("{url}/api/v1/rules"),
        &secret,
        json!({"name": "bad", "steps": ["a", "b"], "actions": [{"task": {}}]}).to_string(),
    );
    assert_eq!(status, 400);
    assert!(
        err["message"]
            .as_str()
            .unwrap()
            .starts_with("steps[1].within"),
        "{err}"
    );
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(hook.received().len(), 1, "still exactly one webhook call");
    server.stop();
}

#[test]
fn a_restart_between_the_two_events_still_fires_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let write = create_key(&data, "write");
    let secret = create_key(&data, "secret");
    let hook = Receiver::start();
    let server = start(&data, &["serve"]);
    let url = server.url.clone();
    let (status, _) = post(
        &format!("{url}/api/v1/rules"),
        &secret,
        seed_rule(&hook.url).to_string(),
    );
    assert_eq!(status, 201);
    let pf = event(
        "pf",
        json!({"user_id": "u-ana", "email": "ana@example.com"}),
        "web",
        "payment_failed",
        4000,
    );
    assert_eq!(post(&format!("{url}/v1/events"), &write, pf).0, 200);
    server.stop();

    // The complaint comes under the handle alone; the link follows later, after a restart.
    let server = start(&data, &["serve"]);
    let url = server.url.clone();
    let complaint = event(
        "complaint",
        json!({"social:twitter": "ana_b"}),
        "social",
        "complaint",
        30,
    );
    assert_eq!(post(&format!("{url}/v1/events"), &write, complaint).0, 200);
    let link = event(
        "link",
        json!({"social:twitter": "ana_b", "email": "ana@example.com"}),
        "social",
        "social_reply",
        0,
    );
    assert_eq!(post(&format!("{url}/v1/events"), &write, link).0, 200);
    let got = hook.wait_for(1);
    assert_eq!(got.len(), 1);
    check_signed(&got[0]);
    // Delivery is at least once: a kill between the receiver's answer and the log's
    // `delivered` would rightly send it again (same webhook-id). Wait for the log first.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, log) = get(&format!("{url}/api/v1/webhook-deliveries"), &secret);
        if log[0]["status"] == "delivered" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the delivery is not logged: {log}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // Killed without a graceful stop, then started again: the tail is evaluated again,
    // and nothing fires twice.
    server.kill();
    let server = start(&data, &["serve"]);
    let url = server.url.clone();
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(hook.received().len(), 1, "no second webhook after restarts");
    let (_, tasks) = get(&format!("{url}/api/v1/tasks"), &secret);
    assert_eq!(tasks["tasks"].as_array().unwrap().len(), 1, "{tasks}");
    server.stop();
}

/// The seed rule's firings over one synthetic customer's events, by a direct reading of
/// the rule: each social complaint whose latest web payment failure before it lies within
/// 2 h, with no phone callback in the hour after that failure, and no firing in the day
/// before it.
fn planted(events: &[omnitrail_model::Event]) -> Vec<i64> {
    let mut ev: Vec<&omnitrail_model::Event> = events.iter().collect();
    ev.sort_by_key(|e| e.timestamp);
    let mut fired: Vec<i64> = Vec::new();
    for (i, c) in ev.iter().enumerate() {
        if c.activity.as_str() != "complaint" || c.channel.as_str() != "social" {
            continue;
        }
        let t = c.timestamp.as_micros();
        let Some(p) = ev[..i]
            .iter()
            .rev()
            .find(|e| e.activity.as_str() == "payment_failed" && e.channel.as_str() == "web")
        else {
            continue;
        };
        let pt = p.timestamp.as_micros();
        if t - pt > 2 * 3_600_000_000 {
            continue;
        }
        let called = ev.iter().any(|e| {
            e.activity.as_str() == "callback_completed"
                && e.timestamp.as_micros() > pt
                && e.timestamp.as_micros() <= pt + 3_600_000_000
        });
        let cooling = fired.iter().any(|f| t - f < 86_400_000_000);
        if !called && !cooling {
            fired.push(t);
        }
    }
    fired
}

#[test]
fn replay_on_demo_data_reports_the_planted_cases() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let customers = 3000;
    ok_stdout(
        &data,
        &[
            "demo",
            "--no-serve",
            "--customers",
            &customers.to_string(),
            "--format",
            "json",
        ],
    );
    // The demo installs the seed rule; its webhook endpoint comes from omnitrail.toml.
    let rules = ok_json(&data, &["rules", "list", "--format", "json"]);
    assert_eq!(rules[0]["name"], "payment-failed-then-complaint");
    assert_eq!(rules[0]["enabled"], true);

    let report = ok_json(
        &data,
        &[
            "rules",
            "replay",
            "payment-failed-then-complaint",
            "--format",
            "json",
        ],
    );
    let cfg = SynthConfig {
        customers,
        seed: 42,
        ..SynthConfig::default()
    };
    let mut want_times: Vec<i64> = Vec::new();
    let mut want_customers = 0;
    for i in 0..customers {
        let times = planted(&demo_customer_events(&cfg, i));
        want_customers += !times.is_empty() as u64;
        want_times.extend(times);
    }
    want_times.sort();
    assert!(want_times.len() > 10, "the demo plants the story");
    let mut got_times: Vec<i64> = report["fired"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["completed_at"].as_i64().unwrap())
        .collect();
    got_times.sort();
    assert_eq!(report["firings"].as_u64(), Some(want_times.len() as u64));
    assert_eq!(report["customers"].as_u64(), Some(want_customers));
    assert_eq!(got_times, want_times);

    // A range replays only completions inside it.
    let mid = want_times[want_times.len() / 2];
    let from = (mid / 1_000_000).to_string();
    let half = ok_json(
        &data,
        &[
            "rules",
            "replay",
            "payment-failed-then-complaint",
            "--from",
            &from,
            "--format",
            "json",
        ],
    );
    let expected = want_times
        .iter()
        .filter(|t| **t >= (mid / 1_000_000) * 1_000_000)
        .count();
    assert_eq!(half["firings"].as_u64(), Some(expected as u64));
}
