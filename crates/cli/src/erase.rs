//! `omnitrail erase`, `omnitrail suppressions list | lift` and `omnitrail audit`: erasing a
//! person everywhere, the suppression list that keeps them out, and the audit log. The
//! actor recorded is `cli:$USER`.

use crate::analysis::print_table;
use crate::OutputFormat;
use anyhow::Result;
use clap::Subcommand;
use omnitrail_app::erase::{AuditEntry, EraseCounts};
use omnitrail_app::App;
use omnitrail_model::ProjectId;
use serde_json::json;

#[derive(Subcommand)]
pub enum SuppressionsCommand {
    /// Every suppressed identifier hash, lifted ones too.
    List {
        #[arg(long, value_enum, default_value = "table")]
        format: OutputFormat,
    },
    /// Lets an identifier's events in again.
    Lift {
        /// The identifier as kind:value, or its 64-digit hash (as listed).
        #[arg(value_name = "KIND:VALUE|HASH")]
        identifier: String,
    },
}

fn actor() -> String {
    format!(
        "cli:{}",
        std::env::var("USER").unwrap_or_else(|_| "unknown".into())
    )
}

fn counts_json(c: &EraseCounts) -> serde_json::Value {
    serde_json::to_value(c).expect("counts serialize")
}

/// `omnitrail erase ID`.
pub fn erase(app: &App, identifier: &str, format: OutputFormat) -> Result<()> {
    let r = app.erase(ProjectId::DEFAULT, identifier, &actor())?;
    match format {
        OutputFormat::Json => println!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "audit_id": r.audit_id,
                "erased_at": r.erased_at.to_rfc3339(),
                "actor": r.actor,
                "identifier_hashes": r.identifier_hashes,
                "keys": r.keys,
                "counts": counts_json(&r.counts),
                "rejects_lines": r.rejects_lines,
            }))?
        ),
        OutputFormat::Table => {
            let c = &r.counts;
            println!(
                "erased {} identifiers ({} keys): {} events ({} from the log, {} from segments), {} other events scrubbed",
                r.identifier_hashes.len(),
                r.keys,
                c.log_events + c.segment_events,
                c.log_events,
                c.segment_events,
                c.scrubbed_events
            );
            println!(
                "metadata: {} identity keys, {} evidence rows, {} notes, {} dead letters, {} other rows; {} rejects lines",
                c.identity_keys, c.identity_evidence, c.notes, c.dead_letters, c.other_rows, r.rejects_lines
            );
            println!(
                "suppressed until lifted (omnitrail suppressions lift): {}",
                r.identifier_hashes.join(", ")
            );
            println!("audit entry {}", r.audit_id);
        }
    }
    Ok(())
}

pub fn suppressions(app: &App, command: SuppressionsCommand) -> Result<()> {
    match command {
        SuppressionsCommand::List { format } => {
            let list = app.suppressions(ProjectId::DEFAULT)?;
            match format {
                OutputFormat::Json => {
                    let rows: Vec<serde_json::Value> = list
                        .iter()
                        .map(|s| {
                            json!({
                                "id": s.id,
                                "hash": s.hash,
                                "created_at": s.created_at.to_rfc3339(),
                                "lifted_at": s.lifted_at.map(|t| t.to_rfc3339()),
                            })
                        })
                        .collect();
                    println!("{}", serde_json::to_string_pretty(&rows)?);
                }
                OutputFormat::Table => {
                    let rows: Vec<Vec<String>> = list
                        .iter()
                        .map(|s| {
                            vec![
                                s.id.to_string(),
                                s.hash.clone(),
                                s.created_at.to_rfc3339(),
                                s.lifted_at.map(|t| t.to_rfc3339()).unwrap_or_default(),
                            ]
                        })
                        .collect();
                    print_table(&["id", "hash", "created", "lifted"], &rows, &[0]);
                }
            }
        }
        SuppressionsCommand::Lift { identifier } => {
            let n = app.lift_suppression(ProjectId::DEFAULT, &identifier, &actor())?;
            if n == 0 {
                println!("not suppressed: nothing lifted");
            } else {
                println!("lifted {n} suppression(s)");
            }
        }
    }
    Ok(())
}

/// `omnitrail audit`.
pub fn audit(app: &App, format: OutputFormat) -> Result<()> {
    let entries = app.audit_log(ProjectId::DEFAULT)?;
    match format {
        OutputFormat::Json => {
            let rows: Vec<serde_json::Value> = entries.iter().map(entry_json).collect();
            println!("{}", serde_json::to_string_pretty(&rows)?);
        }
        OutputFormat::Table => {
            let rows: Vec<Vec<String>> = entries
                .iter()
                .map(|e| {
                    vec![
                        e.id.to_string(),
                        e.at.to_rfc3339(),
                        e.actor.clone(),
                        e.action.clone(),
                        e.identifier_hashes.len().to_string(),
                        (e.counts.log_events + e.counts.segment_events).to_string(),
                    ]
                })
                .collect();
            print_table(
                &["id", "at", "actor", "action", "identifiers", "events"],
                &rows,
                &[0, 4, 5],
            );
        }
    }
    Ok(())
}

fn entry_json(e: &AuditEntry) -> serde_json::Value {
    json!({
        "id": e.id,
        "at": e.at.to_rfc3339(),
        "actor": e.actor,
        "action": e.action,
        "identifier_hashes": e.identifier_hashes,
        "counts": counts_json(&e.counts),
    })
}
