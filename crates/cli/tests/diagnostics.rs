//! End-to-end tests of the diagnostics commands on a generated demo: `friction`,
//! `channels --performance`, `journey-map`, `emotion`, `lifecycle`, `handoffs`.

mod common;

use common::{failure, ok_json, ok_stdout};
use serde_json::Value;
use std::path::Path;
use std::sync::{Mutex, MutexGuard, OnceLock};

/// One demo of 2 000 customers shared by the tests of this file. A data dir admits one
/// process at a time, so the guard serializes the tests' commands.
fn demo() -> (MutexGuard<'static, ()>, &'static Path) {
    static LOCK: Mutex<()> = Mutex::new(());
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    let guard = LOCK.lock().unwrap_or_else(|p| p.into_inner());
    let dir = DIR.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        ok_stdout(
            dir.path(),
            &[
                "demo",
                "--no-serve",
                "--customers",
                "2000",
                "--format",
                "json",
            ],
        );
        dir
    });
    (guard, dir.path())
}

fn rank(f: &Value, step: &str) -> usize {
    f["points"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["step"] == step)
        .map_or(usize::MAX, |p| p["rank"].as_u64().unwrap() as usize)
}

/// Acceptance: `omnitrail friction --format json` on the demo ranks every planted pattern in
/// the top 6 and names os = iOS (lift ≥ 3) as the login friction's root cause.
#[test]
fn friction_json_finds_the_planted_patterns() {
    let (_guard, data) = demo();
    let f = ok_json(data, &["friction", "--format", "json"]);
    assert_eq!(f["step"], "touchpoint");
    let top: Vec<&str> = f["points"]
        .as_array()
        .unwrap()
        .iter()
        .take(6)
        .map(|p| p["step"].as_str().unwrap())
        .collect();
    assert!(rank(&f, "mobile_app:login_failed") <= 6, "{top:?}");
    assert!(rank(&f, "chatbot:chatbot_question") <= 6, "{top:?}");
    assert!(
        rank(&f, "web:payment_failed").min(rank(&f, "social:complaint")) <= 6,
        "{top:?}"
    );
    assert!(
        [
            "phone:call_ended",
            "chat:chat_ended",
            "store:store_service_visit",
            "phone:callback_completed"
        ]
        .iter()
        .map(|s| rank(&f, s))
        .min()
        .unwrap()
            <= 6,
        "{top:?}"
    );
    let login = f["points"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["step"] == "mobile_app:login_failed")
        .unwrap();
    let ios = login["root_causes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["dimension"] == "os" && c["value"] == "iOS")
        .unwrap_or_else(|| panic!("no os = iOS in {}", login["root_causes"]));
    assert!(ios["lift"].as_f64().unwrap() >= 3.0, "{ios}");
    assert!(login["examples"].as_array().unwrap().len() == 5);
    assert_eq!(f["points"].as_array().unwrap().len(), 10);

    // Same data, same query: byte-identical output.
    let again = ok_stdout(data, &["friction", "--format", "json"]);
    assert_eq!(serde_json::from_str::<Value>(&again).unwrap(), f);
}

#[test]
fn friction_table_weights_and_options() {
    let (_guard, data) = demo();
    let table = ok_stdout(data, &["friction", "--top", "3"]);
    assert!(table.contains("friction by touchpoint"), "{table}");
    assert!(table.contains("root causes of #1"), "{table}");
    assert!(table.contains("os = iOS"), "{table}");
    // Weights can be overridden: with failures weighing nothing the score changes.
    let f = ok_json(
        data,
        &[
            "friction",
            "--weight",
            "failure=0",
            "--by",
            "activity",
            "--format",
            "json",
        ],
    );
    assert_eq!(f["settings"]["weights"]["failure"], 0.0);
    assert_eq!(f["step"], "activity");
    let err = failure(data, &["friction", "--weight", "speed=1"]);
    assert!(err.contains("unknown signal 'speed'"), "{err}");
    let err = failure(data, &["friction", "--weight", "failure"]);
    assert!(err.contains("SIGNAL=WEIGHT"), "{err}");
    // The common options apply: a session split and a segment.
    let s = ok_json(
        data,
        &[
            "friction",
            "--case",
            "gap:30m",
            "--segment",
            "trait.plan = 'premium'",
            "--format",
            "json",
        ],
    );
    assert_eq!(s["case"], "gap:30m");
    assert!(
        s["totals"]["customers"].as_u64().unwrap() < f["totals"]["customers"].as_u64().unwrap()
    );
}

#[test]
fn channel_performance_json_and_table() {
    let (_guard, data) = demo();
    let c = ok_json(data, &["channels", "--performance", "--format", "json"]);
    let channels = c["channels"].as_array().unwrap();
    let phone = channels.iter().find(|x| x["channel"] == "phone").unwrap();
    assert_eq!(phone["unit_cost"], 6.5);
    assert!(phone["repeat_contact_rate"].as_f64().unwrap() > 0.1);
    let bot = channels.iter().find(|x| x["channel"] == "chatbot").unwrap();
    assert!(bot["containment"]["sessions"].as_u64().unwrap() > 0);
    assert!(c["preference"].as_array().unwrap().is_empty());

    let by = ok_json(
        data,
        &[
            "channels",
            "--performance",
            "--by-trait",
            "region",
            "--format",
            "json",
        ],
    );
    assert_eq!(by["breakdown"], "trait.region");
    assert_eq!(by["preference"].as_array().unwrap().len(), 5);
    let table = ok_stdout(data, &["channels", "--performance", "--by-trait", "plan"]);
    assert!(
        table.contains("contained") && table.contains("trait.plan = premium"),
        "{table}"
    );
    // Without --performance, channels is still the switch matrix.
    let switching = ok_json(data, &["channels", "--format", "json"]);
    assert!(switching["switches"].is_array());
}

#[test]
fn journey_map_emotion_lifecycle_handoffs() {
    let (_guard, data) = demo();
    let m = ok_json(data, &["journey-map", "--format", "json"]);
    assert_eq!(m["rows"].as_array().unwrap().len(), 7);
    assert_eq!(m["stages"][0], "awareness");
    let table = ok_stdout(data, &["journey-map"]);
    assert!(table.contains("pain points") && table.contains("events by stage and channel"));

    let e = ok_json(data, &["emotion", "--positions", "5", "--format", "json"]);
    assert_eq!(e["positions"].as_array().unwrap().len(), 5);
    assert!(ok_stdout(data, &["emotion"]).contains("by stage"));

    let l = ok_json(data, &["lifecycle", "--format", "json"]);
    let customers = l["totals"]["customers"].as_f64().unwrap();
    let returning = l["totals"]["ever_returning"].as_f64().unwrap() / customers;
    assert!((0.06..0.14).contains(&returning), "{returning}");
    let weekly = ok_json(data, &["lifecycle", "--period", "week", "--format", "json"]);
    assert!(weekly["periods"].as_array().unwrap().len() > 50);
    let err = failure(data, &["lifecycle", "--period", "fortnight"]);
    assert!(err.contains("unknown period 'fortnight'"), "{err}");
    assert!(ok_stdout(data, &["lifecycle"]).contains("dormant"));

    let h = ok_json(data, &["handoffs", "--format", "json"]);
    assert!(h["handoffs"]
        .as_array()
        .unwrap()
        .iter()
        .any(|x| x["from"] == "social_care" && x["to"] == "billing"));
    assert!(ok_stdout(data, &["handoffs"]).contains("social_care → billing"));
    let err = failure(data, &["handoffs", "--window", "soon"]);
    assert!(err.contains("--window"), "{err}");
}

#[test]
fn repeat_mode_times_every_diagnostic() {
    let (_guard, data) = demo();
    for args in [
        &["friction"][..],
        &["channels", "--performance"],
        &["journey-map"],
        &["emotion"],
        &["lifecycle"],
        &["handoffs"],
    ] {
        let mut a = args.to_vec();
        a.extend(["--repeat", "2"]);
        let t = ok_json(data, &a);
        assert_eq!(t["runs_s"].as_array().unwrap().len(), 2, "{args:?}");
    }
}

#[test]
fn a_missing_data_dir_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nothing-here");
    let err = failure(&missing, &["friction"]);
    assert!(err.contains("does not exist"), "{err}");
}

/// The overview's numbers agree with the analyses they summarize, and the planted friction
/// leads its list.
#[test]
fn overview_agrees_with_stats_friction_and_channel_performance() {
    let (_guard, data) = demo();
    let o = ok_json(data, &["overview", "--format", "json"]);
    let stats = ok_json(data, &["stats", "--format", "json"]);
    assert_eq!(o["customers"], stats["customers"]);
    assert_eq!(o["events"], stats["events"]);
    // The demo's goal is renewal (`[overview] goals`): most renew, not everyone.
    let conversion = o["goal_conversion"].as_f64().unwrap();
    assert!(conversion > 0.3 && conversion < 1.0, "{conversion}");
    let perf = ok_json(data, &["channels", "--performance", "--format", "json"]);
    assert_eq!(
        o["repeat_contact_rate"],
        perf["totals"]["repeat_contact_rate"]
    );
    assert_eq!(o["bot_containment"], perf["totals"]["containment"]["rate"]);
    let friction = ok_json(data, &["friction", "--format", "json", "--top", "5"]);
    let steps = |v: &Value, key: &str| -> Vec<String> {
        v[key]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["step"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(steps(&o, "top_friction"), steps(&friction, "points"));
    let weekly: u64 = o["trend"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["events"].as_u64().unwrap())
        .sum();
    assert_eq!(Some(weekly), stats["events"].as_u64());
    let channel_events: u64 = o["channel_mix"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["events"].as_u64().unwrap())
        .sum();
    assert_eq!(Some(channel_events), stats["events"].as_u64());
}

/// The customers behind a map edge are exactly those a segment expression finds with a
/// funnel of the two steps in strict order.
#[test]
fn step_customers_of_an_edge_match_a_strict_funnel() {
    let (_guard, data) = demo();
    let edge = ok_json(
        data,
        &[
            "step-customers",
            "--step",
            "payment_failed",
            "--next",
            "complaint",
            "--limit",
            "5",
            "--format",
            "json",
        ],
    );
    let funnel = ok_json(
        data,
        &[
            "funnel",
            "--step",
            "payment_failed",
            "--step",
            "complaint",
            "--mode",
            "strict",
            "--format",
            "json",
        ],
    );
    let total = edge["total"].as_u64().unwrap();
    assert!(total > 0);
    assert_eq!(
        Some(total),
        funnel["steps"][1]["customers"].as_u64(),
        "{funnel}"
    );
    let customers = edge["customers"].as_array().unwrap();
    assert_eq!(customers.len(), 5);
    for c in customers {
        let view = ok_json(
            data,
            &[
                "customer",
                c["customer_id"].as_str().unwrap(),
                "--format",
                "json",
            ],
        );
        assert!(
            view["timeline"].to_string().contains("complaint"),
            "{}",
            c["customer_id"]
        );
        assert!(c["label"].as_str().unwrap().starts_with("email:"), "{c}");
    }
    failure(data, &["step-customers", "--step", "x", "--limit", "-1"]);
}
