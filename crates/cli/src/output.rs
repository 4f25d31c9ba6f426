//! Table and JSON output. The JSON shapes are the stable, documented contract
//! (README "CLI"); tables are for people and may change.

use omnitrail_app::{ImportSummary, Stats};
use serde_json::json;
use std::time::Duration;

fn counts_json(counts: &[(String, u64)]) -> serde_json::Value {
    serde_json::Value::Array(
        counts
            .iter()
            .map(|(name, n)| json!({"name": name, "events": n}))
            .collect(),
    )
}

pub fn stats_json(s: &Stats) -> serde_json::Value {
    json!({
        "events": s.events,
        "customers": s.customers,
        "first_event": s.first_event.map(|t| t.to_rfc3339()),
        "last_event": s.last_event.map(|t| t.to_rfc3339()),
        "by_channel": counts_json(&s.by_channel),
        "by_activity": counts_json(&s.by_activity),
        "by_stage": counts_json(&s.by_stage),
        "storage_bytes": s.storage_bytes,
        "segments": s.segments,
        "uncompacted_events": s.uncompacted_events,
        "dead_letters": s.dead_letters,
        "journey_bytes_per_event": (s.journey_bytes_per_event * 10.0).round() / 10.0,
    })
}

fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

fn table(title: &str, rows: &[(String, u64)], total: u64, limit: usize) {
    if rows.is_empty() {
        return;
    }
    println!("\n{title}");
    let width = rows
        .iter()
        .take(limit)
        .map(|(n, _)| n.chars().count())
        .max()
        .unwrap_or(0);
    for (name, n) in rows.iter().take(limit) {
        let share = if total == 0 {
            0.0
        } else {
            *n as f64 * 100.0 / total as f64
        };
        println!("  {name:<width$}  {n:>12}  {share:5.1}%");
    }
    if rows.len() > limit {
        let rest: u64 = rows[limit..].iter().map(|(_, n)| n).sum();
        println!(
            "  {:<width$}  {rest:>12}  ({} more)",
            "…",
            rows.len() - limit
        );
    }
}

pub fn stats(s: &Stats, as_json: bool) {
    if as_json {
        println!(
            "{}",
            serde_json::to_string_pretty(&stats_json(s)).expect("json values serialize")
        );
        return;
    }
    println!("events       {}", s.events);
    println!("customers    {}", s.customers);
    match (s.first_event, s.last_event) {
        (Some(a), Some(b)) => println!("time range   {a} .. {b}"),
        _ => println!("time range   (no events)"),
    }
    println!(
        "storage      {} in {} segments, {} events waiting in the log",
        human_bytes(s.storage_bytes),
        s.segments,
        s.uncompacted_events
    );
    println!("dead letters {}", s.dead_letters);
    table("by channel", &s.by_channel, s.events, 20);
    table("by stage", &s.by_stage, s.events, 20);
    table("by activity", &s.by_activity, s.events, 25);
}

pub fn import_summaries(summaries: &[(ImportSummary, Duration)], as_json: bool) {
    if as_json {
        let files: Vec<serde_json::Value> = summaries
            .iter()
            .map(|(s, took)| {
                json!({
                    "file": s.file,
                    "read": s.read,
                    "imported": s.imported,
                    "duplicates": s.duplicates,
                    "rejected": s.rejected,
                    "rejects_file": s.rejects_file.as_ref().map(|p| p.display().to_string()),
                    "seconds": (took.as_secs_f64() * 1000.0).round() / 1000.0,
                })
            })
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({"files": files})).expect("json values serialize")
        );
        return;
    }
    for (s, took) in summaries {
        let rate = s.read as f64 / took.as_secs_f64().max(1e-9);
        println!(
            "{}: read {}, imported {}, duplicates {}, rejected {} ({:.1} s, {:.0} events/s)",
            s.file,
            s.read,
            s.imported,
            s.duplicates,
            s.rejected,
            took.as_secs_f64(),
            rate
        );
        for r in &s.first_rejects {
            println!("  line {}: {}: {}", r.line, r.field, r.reason);
        }
        if s.rejected as usize > s.first_rejects.len() {
            println!("  … {} more", s.rejected as usize - s.first_rejects.len());
        }
        if let Some(path) = &s.rejects_file {
            println!("  every rejected row is in {}", path.display());
        }
    }
}
