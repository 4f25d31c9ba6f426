//! End-to-end tests of the `omnitrail` binary: what a user types, what they see.

mod common;

use common::{datasets, ok_json, omnitrail};
use serde_json::Value;
use std::path::{Path, PathBuf};

fn import_then_stats(file: &Path, extra: &[&str]) -> Value {
    let data = tempfile::tempdir().unwrap();
    let mut args = vec!["import", file.to_str().unwrap(), "--format", "json"];
    args.extend_from_slice(extra);
    let summary = ok_json(data.path(), &args);
    assert_eq!(summary["files"][0]["rejected"], 0, "{summary}");
    ok_json(data.path(), &["stats", "--format", "json"])
}

#[test]
fn receipt_csv_and_xes_import_8577_events_of_1434_customers() {
    let Some(ds) = datasets() else { return };
    for file in ["pm4py-logs/receipt.csv", "pm4py-logs/receipt.xes.gz"] {
        let stats = import_then_stats(&ds.join(file), &[]);
        assert_eq!(stats["events"], 8577, "{file}");
        assert_eq!(stats["customers"], 1434, "{file}");
    }
}

#[test]
fn bpic2016_complaints_import_289_events_of_226_customers() {
    let Some(ds) = datasets() else { return };
    let stats = import_then_stats(
        &ds.join("bpic2016/BPI2016_Complaints.csv"),
        &[
            "--customer",
            "CustomerID",
            "--timestamp",
            "ContactDate",
            "--activity-value",
            "complaint",
            "--channel",
            "ContactChannelID",
        ],
    );
    assert_eq!(stats["events"], 289);
    assert_eq!(stats["customers"], 226);
}

fn csv_with_three_bad_rows(dir: &Path) -> PathBuf {
    let mut text = String::from("event_id,customer_id,activity,timestamp,channel,sentiment\n");
    for i in 0..1000 {
        let line = i + 2; // the header is line 1
        let row = match line {
            100 => format!("e{i},c{},login,not-a-time,web,0.5\n", i % 50),
            500 => format!("e{i},,login,2026-03-01T10:00:00Z,web,0.5\n"),
            900 => format!("e{i},c{},login,2026-03-01T10:00:00Z,web,7\n", i % 50),
            _ => format!(
                "e{i},c{},login,2026-03-01T10:{:02}:00Z,web,0.5\n",
                i % 50,
                i % 60
            ),
        };
        text.push_str(&row);
    }
    let path = dir.join("events.csv");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn three_malformed_rows_among_1000_import_997_and_report_their_lines() {
    let work = tempfile::tempdir().unwrap();
    let csv = csv_with_three_bad_rows(work.path());
    let data = work.path().join("data");
    let out = omnitrail(&data, &["import", csv.to_str().unwrap()]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("imported 997"), "{text}");
    assert!(text.contains("rejected 3"), "{text}");
    assert!(text.contains("line 100: timestamp"), "{text}");
    assert!(text.contains("line 500: customer_id"), "{text}");
    assert!(
        text.contains("line 900: properties.sentiment") || text.contains("line 900: sentiment"),
        "{text}"
    );

    let rejects_dir = data.join("rejects");
    let files: Vec<_> = std::fs::read_dir(&rejects_dir).unwrap().collect();
    assert_eq!(files.len(), 1);
    let rejects = std::fs::read_to_string(files[0].as_ref().unwrap().path()).unwrap();
    let lines: Vec<u64> = rejects
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["line"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(lines, [100, 500, 900]);

    let stats = ok_json(&data, &["stats", "--format", "json"]);
    assert_eq!(stats["events"], 997);
    assert_eq!(stats["dead_letters"], 3);
}

#[test]
fn reimporting_rows_with_event_ids_imports_nothing_twice() {
    let work = tempfile::tempdir().unwrap();
    let csv = csv_with_three_bad_rows(work.path());
    let data = work.path().join("data");
    let first = ok_json(
        &data,
        &["import", csv.to_str().unwrap(), "--format", "json"],
    );
    assert_eq!(first["files"][0]["imported"], 997);
    let again = ok_json(
        &data,
        &["import", csv.to_str().unwrap(), "--format", "json"],
    );
    assert_eq!(again["files"][0]["imported"], 0);
    assert_eq!(again["files"][0]["duplicates"], 997);
    assert_eq!(
        ok_json(&data, &["stats", "--format", "json"])["events"],
        997
    );
}

#[test]
fn strict_import_exits_non_zero_on_any_reject_but_keeps_valid_rows() {
    let work = tempfile::tempdir().unwrap();
    let csv = csv_with_three_bad_rows(work.path());
    let data = work.path().join("data");
    let out = omnitrail(&data, &["import", csv.to_str().unwrap(), "--strict"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("3 rows were rejected"));
    assert_eq!(
        ok_json(&data, &["stats", "--format", "json"])["events"],
        997
    );
}

#[test]
fn a_file_without_an_activity_column_is_a_clear_error() {
    let work = tempfile::tempdir().unwrap();
    let path = work.path().join("no-activity.csv");
    std::fs::write(&path, "customer_id,timestamp\nc1,2026-01-01\n").unwrap();
    let out = omnitrail(
        &work.path().join("data"),
        &["import", path.to_str().unwrap()],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no-activity.csv") && err.contains("activity"),
        "{err}"
    );
}

#[test]
fn demo_generates_once_and_stats_show_channels_and_stages() {
    let data = tempfile::tempdir().unwrap();
    let stats = ok_json(
        data.path(),
        &[
            "demo",
            "--no-serve",
            "--customers",
            "300",
            "--seed",
            "7",
            "--format",
            "json",
        ],
    );
    let events = stats["events"].as_u64().unwrap();
    assert!(events >= 300 * 25, "{events} events");
    assert!(stats["by_channel"].as_array().unwrap().len() >= 10);
    let stages: Vec<&str> = stats["by_stage"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(stages.first(), Some(&"awareness"), "{stages:?}");
    assert!(!stages.contains(&"unmapped"), "{stages:?}");
    // A second run finds data and leaves it alone.
    let again = ok_json(
        data.path(),
        &[
            "demo",
            "--no-serve",
            "--customers",
            "50",
            "--format",
            "json",
        ],
    );
    assert_eq!(again["events"].as_u64(), Some(events));
}

#[test]
fn demo_is_deterministic_by_seed() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let sa = ok_json(
        a.path(),
        &[
            "demo",
            "--no-serve",
            "--customers",
            "200",
            "--seed",
            "3",
            "--format",
            "json",
        ],
    );
    let sb = ok_json(
        b.path(),
        &[
            "demo",
            "--no-serve",
            "--customers",
            "200",
            "--seed",
            "3",
            "--format",
            "json",
        ],
    );
    for key in [
        "events",
        "customers",
        "by_channel",
        "by_activity",
        "first_event",
        "last_event",
    ] {
        assert_eq!(sa[key], sb[key], "{key}");
    }
}

#[test]
fn a_file_broken_midway_stops_with_a_clear_error_and_keeps_what_was_imported() {
    let work = tempfile::tempdir().unwrap();
    let path = work.path().join("broken.xes");
    let mut xes = String::from("<?xml version=\"1.0\"?>\n<log xes.version=\"1849-2016\">\n");
    for case in 0..3 {
        xes.push_str(&format!(
            "<trace><string key=\"concept:name\" value=\"case-{case}\"/>\n\
             <event><string key=\"concept:name\" value=\"register\"/>\
             <date key=\"time:timestamp\" value=\"2026-01-0{}T10:00:00Z\"/></event>\n</trace>\n",
            case + 1
        ));
    }
    xes.push_str("<trace><string key=\"concept:name\" value=\"case-9\"/>\n<event><string");
    std::fs::write(&path, xes).unwrap();
    let data = work.path().join("data");
    let out = omnitrail(&data, &["import", path.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("broken.xes"), "{err}");
    assert!(err.contains("were imported and are kept"), "{err}");
    // Whatever was stored before the failure is still there and readable.
    let stats = ok_json(&data, &["stats", "--format", "json"]);
    assert!(stats["events"].as_u64().unwrap() <= 3, "{stats}");
}

#[test]
fn stats_on_a_missing_data_dir_is_an_error_and_creates_nothing() {
    let work = tempfile::tempdir().unwrap();
    let missing = work.path().join("typo");
    let out = omnitrail(&missing, &["stats"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not exist"));
    assert!(!missing.exists());
}
