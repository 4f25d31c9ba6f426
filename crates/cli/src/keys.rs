//! `omnitrail keys create | list | revoke`: API keys for the server. These open only the
//! data dir's metadata database, so they work while a server runs; the server sees a new
//! key at once and a revoked one within its key cache time (2 s).

use crate::analysis::print_table;
use crate::OutputFormat;
use anyhow::Result;
use clap::{Subcommand, ValueEnum};
use omnitrail_app::keys::{ApiKey, KeyAdmin, KeyKind};
use serde_json::json;
use std::path::Path;

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum KindArg {
    /// Send events only; safe to ship in web pages and apps.
    Write,
    /// Read the query API, replay dead letters, manage keys; keep it private.
    Secret,
}

#[derive(Subcommand)]
pub enum KeysCommand {
    /// Make a key. Prints the key itself once (on the first line); only its hash is kept.
    Create {
        /// The project the key belongs to; created if new.
        #[arg(long, default_value = "default")]
        project: String,
        #[arg(long, value_enum, default_value = "write")]
        kind: KindArg,
        /// A label to recognise the key by.
        #[arg(long, default_value = "")]
        name: String,
        #[arg(long, value_enum, default_value = "table")]
        format: OutputFormat,
    },
    /// List keys: prefix, kind, project, created, revoked; never the keys.
    List {
        /// Only this project's keys.
        #[arg(long)]
        project: Option<String>,
        #[arg(long, value_enum, default_value = "table")]
        format: OutputFormat,
    },
    /// Revoke a key by its id or prefix (as listed).
    Revoke {
        #[arg(value_name = "PREFIX|ID")]
        key: String,
    },
}

fn key_json(k: &ApiKey) -> serde_json::Value {
    json!({
        "id": k.id,
        "project": k.project_name,
        "kind": k.kind.as_str(),
        "prefix": k.prefix,
        "name": k.name,
        "created_at": k.created_at.to_rfc3339(),
        "revoked_at": k.revoked_at.map(|t| t.to_rfc3339()),
    })
}

pub fn run(data: &Path, command: KeysCommand) -> Result<()> {
    let mut admin = KeyAdmin::open(data)?;
    match command {
        KeysCommand::Create {
            project,
            kind,
            name,
            format,
        } => {
            let kind = match kind {
                KindArg::Write => KeyKind::Write,
                KindArg::Secret => KeyKind::Secret,
            };
            let created = admin.create(&project, kind, &name)?;
            if format == OutputFormat::Json {
                let mut v = key_json(&created.info);
                v["key"] = json!(created.key);
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                println!("{}", created.key);
                eprintln!(
                    "created {} key {} (id {}) for project {}; it is shown only now",
                    kind.as_str(),
                    created.info.prefix,
                    created.info.id,
                    created.info.project_name
                );
            }
        }
        KeysCommand::List { project, format } => {
            let keys = admin.list(project.as_deref())?;
            if format == OutputFormat::Json {
                let list: Vec<_> = keys.iter().map(key_json).collect();
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                let rows: Vec<Vec<String>> = keys
                    .iter()
                    .map(|k| {
                        vec![
                            k.id.to_string(),
                            k.prefix.clone(),
                            k.kind.as_str().to_string(),
                            k.project_name.clone(),
                            k.name.clone(),
                            k.created_at.to_rfc3339(),
                            k.revoked_at
                                .map(|t| t.to_rfc3339())
                                .unwrap_or_else(|| "-".to_string()),
                        ]
                    })
                    .collect();
                print_table(
                    &[
                        "id", "prefix", "kind", "project", "name", "created", "revoked",
                    ],
                    &rows,
                    &[0],
                );
            }
        }
        KeysCommand::Revoke { key } => {
            let k = admin.revoke(&key)?;
            println!(
                "revoked {} key {} (id {}) of project {}",
                k.kind.as_str(),
                k.prefix,
                k.id,
                k.project_name
            );
        }
    }
    Ok(())
}
