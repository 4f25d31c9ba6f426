//! End-to-end tests of the analysis commands: import a real log with the binary, then ask
//! for a map, variants and channel switching as a user would.

mod common;

use common::{datasets, failure, ok_json, ok_stdout, omnitrail};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;

fn import(file: &Path) -> tempfile::TempDir {
    let data = tempfile::tempdir().unwrap();
    let summary = ok_json(
        data.path(),
        &["import", file.to_str().unwrap(), "--format", "json"],
    );
    assert_eq!(summary["files"][0]["rejected"], 0, "{summary}");
    data
}

#[test]
fn map_json_of_receipt_equals_the_pm4py_oracle() {
    let Some(ds) = datasets() else { return };
    let data = import(&ds.join("pm4py-logs/receipt.xes.gz"));
    let oracle: Value =
        serde_json::from_str(&std::fs::read_to_string(ds.join("oracles/receipt.json")).unwrap())
            .unwrap();
    let map = ok_json(data.path(), &["map", "--format", "json"]);
    assert_eq!(map["step"], "activity");
    assert_eq!(map["case"], "customer");
    assert_eq!(map["totals"]["events"], oracle["events"]);
    assert_eq!(map["totals"]["cases"], oracle["cases"]);
    assert_eq!(map["totals"]["transitions"], oracle["dfg_total"]);
    let ours: BTreeMap<(String, String), u64> = map["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                (
                    e["from"].as_str().unwrap().into(),
                    e["to"].as_str().unwrap().into(),
                ),
                e["count"].as_u64().unwrap(),
            )
        })
        .collect();
    let theirs: BTreeMap<(String, String), u64> = oracle["dfg"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                (e[0].as_str().unwrap().into(), e[1].as_str().unwrap().into()),
                e[2].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(ours, theirs);
    for (node_field, oracle_field) in [("starts", "start_activities"), ("ends", "end_activities")] {
        let ours: BTreeMap<String, u64> = map["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|n| n[node_field].as_u64().unwrap() > 0)
            .map(|n| {
                (
                    n["step"].as_str().unwrap().into(),
                    n[node_field].as_u64().unwrap(),
                )
            })
            .collect();
        let theirs: BTreeMap<String, u64> = oracle[oracle_field]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_u64().unwrap()))
            .collect();
        assert_eq!(ours, theirs, "{node_field}");
    }
    // Same data, same query: identical JSON.
    assert_eq!(map, ok_json(data.path(), &["map", "--format", "json"]));
}

#[test]
fn variants_channels_and_map_formats_on_the_running_example() {
    let Some(ds) = datasets() else { return };
    let data = import(&ds.join("pm4py-logs/running-example.xes"));
    let v = ok_json(data.path(), &["variants", "--top", "2", "--format", "json"]);
    assert_eq!(v["total_variants"], 6);
    assert_eq!(v["total_cases"], 6);
    assert_eq!(v["variants"].as_array().unwrap().len(), 2);
    assert_eq!(v["variants"][0]["steps"][0], "register request");

    let table = ok_stdout(data.path(), &["variants"]);
    assert!(table.contains("6 cases in 6 variants"), "{table}");

    let c = ok_json(
        data.path(),
        &["channels", "--window", "2d", "--format", "json"],
    );
    assert_eq!(c["window"], "2d");
    assert_eq!(c["totals"]["events"], 42);

    let dot = ok_stdout(data.path(), &["map", "--format", "dot"]);
    assert!(dot.starts_with("digraph process_map {"), "{dot}");
    assert!(dot.contains("\"register request\\n6\""), "{dot}");

    let table = ok_stdout(data.path(), &["map", "--node-coverage", "50"]);
    assert!(table.contains("steps and"), "{table}");

    let timings = ok_json(data.path(), &["map", "--repeat", "2"]);
    assert_eq!(timings["events"], 42);
    assert_eq!(timings["runs_s"].as_array().unwrap().len(), 2);

    let span = ok_json(
        data.path(),
        &[
            "map",
            "--from",
            "2011-01-01",
            "--to",
            "2011-01-06",
            "--format",
            "json",
        ],
    );
    assert!(span["totals"]["events"].as_u64().unwrap() < 42, "{span}");
}

#[test]
fn analysis_errors_say_what_is_wrong() {
    let Some(ds) = datasets() else { return };
    let data = import(&ds.join("pm4py-logs/running-example.xes"));
    let err = failure(data.path(), &["map", "--by", "colour"]);
    assert!(err.contains("invalid step dimension 'colour'"), "{err}");
    let err = failure(data.path(), &["map", "--case", "gap:5x"]);
    assert!(err.contains("invalid case split 'gap:5x'"), "{err}");
    let err = failure(data.path(), &["map", "--where", "activity ="]);
    assert!(err.contains("--where: error at column"), "{err}");
    let err = failure(data.path(), &["map", "--node-coverage", "0"]);
    assert!(err.contains("node coverage"), "{err}");
    let err = failure(data.path(), &["channels", "--by", "channel"]);
    assert!(err.contains("--by and --case do not apply"), "{err}");
    let err = failure(data.path(), &["map", "--from", "yesterday"]);
    assert!(err.contains("--from"), "{err}");
    let missing = data.path().join("nope");
    let err = failure(&missing, &["map"]);
    assert!(err.contains("does not exist"), "{err}");
}

#[test]
fn svg_needs_graphviz_or_says_how_to_get_it() {
    let Some(ds) = datasets() else { return };
    let data = import(&ds.join("pm4py-logs/running-example.xes"));
    let out = omnitrail(data.path(), &["map", "--format", "svg"]);
    if out.status.success() {
        let svg = String::from_utf8_lossy(&out.stdout);
        assert!(svg.contains("<svg"), "{svg}");
        assert!(svg.contains("register request"), "{svg}");
    } else {
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("install Graphviz") && err.contains("--format dot"),
            "{err}"
        );
    }
}

/// Four customers with known journeys, imported from NDJSON: the paths and funnel tests'
/// expectations follow from them by hand.
fn shop() -> tempfile::TempDir {
    let data = tempfile::tempdir().unwrap();
    let events = [
        (
            "ana",
            "2025-03-01T10:00:00Z",
            "web",
            "view",
            r#"{"os":"iOS"}"#,
            r#"{"plan":"premium"}"#,
        ),
        ("ana", "2025-03-01T10:05:00Z", "web", "cart", "{}", "{}"),
        ("ana", "2025-03-01T10:30:00Z", "web", "buy", "{}", "{}"),
        (
            "bob",
            "2025-03-01T10:00:00Z",
            "web",
            "view",
            r#"{"os":"Android"}"#,
            r#"{"plan":"free"}"#,
        ),
        ("bob", "2025-03-01T10:10:00Z", "web", "cart", "{}", "{}"),
        ("bob", "2025-03-01T11:00:00Z", "phone", "call", "{}", "{}"),
        (
            "cy",
            "2025-03-01T09:00:00Z",
            "web",
            "view",
            r#"{"os":"iOS"}"#,
            r#"{"plan":"premium"}"#,
        ),
        ("cy", "2025-03-03T09:00:00Z", "email", "open", "{}", "{}"),
        ("cy", "2025-03-03T09:30:00Z", "web", "cart", "{}", "{}"),
        ("cy", "2025-03-04T09:00:00Z", "web", "buy", "{}", "{}"),
        ("dee", "2025-03-02T08:00:00Z", "phone", "call", "{}", "{}"),
        ("dee", "2025-03-02T09:00:00Z", "web", "view", "{}", "{}"),
    ];
    let lines: Vec<String> = events
        .iter()
        .map(|(who, ts, channel, activity, props, traits)| {
            format!(
                r#"{{"timestamp":"{ts}","identifiers":{{"user_id":"{who}"}},"channel":"{channel}","activity":"{activity}","properties":{props},"traits":{traits}}}"#
            )
        })
        .collect();
    let file = data.path().join("shop.ndjson");
    std::fs::write(&file, lines.join("\n") + "\n").unwrap();
    let store = data.path().join("store");
    let summary = ok_json(
        &store,
        &["import", file.to_str().unwrap(), "--format", "json"],
    );
    assert_eq!(summary["files"][0]["rejected"], 0, "{summary}");
    data
}

#[test]
fn paths_from_an_anchor_as_json_and_table() {
    let dir = shop();
    let data = dir.path().join("store");
    let p = ok_json(
        &data,
        &[
            "paths", "--anchor", "view", "--steps", "2", "--top", "5", "--format", "json",
        ],
    );
    assert_eq!(
        (p["paths"].as_u64(), p["customers"].as_u64()),
        (Some(4), Some(4))
    );
    let pos = p["positions"].as_array().unwrap();
    assert_eq!(pos.len(), 3);
    // dee's view is her last event: her path ends at the anchor.
    assert_eq!(pos[0]["nodes"][0]["ended"], 1);
    let steps = |k: usize| -> Vec<(String, u64)> {
        pos[k]["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| {
                (
                    n["step"].as_str().unwrap().to_string(),
                    n["count"].as_u64().unwrap(),
                )
            })
            .collect()
    };
    assert_eq!(steps(1), [("cart".to_string(), 2), ("open".to_string(), 1)]);
    assert_eq!(pos[1]["ended"], 1);
    assert_eq!(
        steps(2),
        [
            ("buy".to_string(), 1),
            ("call".to_string(), 1),
            ("cart".to_string(), 1)
        ]
    );
    assert_eq!(
        p["links"][0],
        serde_json::json!({"from_position": 0, "from": "view", "to_position": 1, "to": "cart", "count": 2})
    );

    let back = ok_json(
        &data,
        &[
            "paths",
            "--anchor",
            "buy",
            "--backward",
            "--steps",
            "1",
            "--by",
            "channel",
            "--format",
            "json",
        ],
    );
    assert_eq!(back["paths"], 0, "buy is an activity, not a channel");
    let table = ok_stdout(
        &data,
        &[
            "paths",
            "--anchor",
            "call",
            "--backward",
            "--every",
            "--where",
            "channel != 'email'",
        ],
    );
    assert!(
        table.contains("paths to 'call' (every occurrence) by activity"),
        "{table}"
    );
    assert!(table.contains("cart → call"), "{table}");
    assert!(failure(&data, &["paths", "--steps", "2"]).contains("--anchor"));
}

#[test]
fn funnel_with_window_breakdown_and_dropped_customers() {
    let dir = shop();
    let data = dir.path().join("store");
    let base = [
        "funnel", "--step", "view", "--step", "cart", "--step", "buy",
    ];
    let with = |extra: &[&str]| -> Vec<String> {
        base.iter().chain(extra).map(|s| s.to_string()).collect()
    };
    let run = |extra: &[&str]| {
        let args = with(extra);
        ok_json(&data, &args.iter().map(String::as_str).collect::<Vec<_>>())
    };
    let cases = |f: &Value| -> Vec<u64> {
        f["steps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["cases"].as_u64().unwrap())
            .collect()
    };
    // cy takes three days from view to buy.
    assert_eq!(cases(&run(&["--format", "json"])), [4, 3, 2]);
    let f = run(&[
        "--window",
        "1d",
        "--breakdown",
        "property:os",
        "--dropped-at",
        "2",
        "--format",
        "json",
    ]);
    assert_eq!(cases(&f), [4, 2, 1]);
    assert_eq!(f["window_s"], 86400.0);
    assert_eq!(f["time_to_convert"]["median_s"], 1800.0);
    let groups: Vec<(Value, Vec<u64>)> = f["breakdown"]["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| (g["value"].clone(), cases(g)))
        .collect();
    assert_eq!(
        groups,
        [
            (Value::from("iOS"), vec![2, 1, 1]),
            (Value::from("Android"), vec![1, 1, 0]),
            (Value::Null, vec![1, 0, 0])
        ]
    );
    assert_eq!(f["dropped"]["total"], 2);
    // Without a window only dee stops after view: a page past her is empty.
    let page = run(&[
        "--dropped-at",
        "2",
        "--offset",
        "1",
        "--limit",
        "5",
        "--format",
        "json",
    ]);
    assert_eq!(page["dropped"]["total"], 1, "{page}");
    assert_eq!(page["dropped"]["customers"], serde_json::json!([]));

    // A filter step, strict mode and an exclusion, as a table.
    let table = ok_stdout(
        &data,
        &[
            "funnel",
            "--step",
            "activity = 'view' and channel = 'web'",
            "--step",
            "cart",
            "--mode",
            "strict",
            "--exclude",
            "open",
            "--breakdown",
            "trait:plan",
        ],
    );
    assert!(table.contains("funnel (strict, no window)"), "{table}");
    assert!(
        table.contains("activity = 'view' and channel = 'web'"),
        "{table}"
    );
    assert!(table.contains("breakdown by trait:plan"), "{table}");
    assert!(table.contains("premium"), "{table}");

    let err = failure(&data, &["funnel", "--step", "view", "--step", "channel = "]);
    assert!(err.contains("--step: error at column 11"), "{err}");
    assert!(err.contains("  channel = \n"), "{err}");
    let err = failure(
        &data,
        &[
            "funnel",
            "--step",
            "view",
            "--step",
            "cart",
            "--dropped-at",
            "4",
        ],
    );
    assert!(
        err.contains("dropped-at: must be a step number from 1 to 2"),
        "{err}"
    );
    let err = failure(
        &data,
        &[
            "funnel", "--step", "view", "--step", "cart", "--mode", "sideways",
        ],
    );
    assert!(err.contains("any-order"), "{err}");
}
