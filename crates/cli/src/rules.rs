//! `omnitrail rules add | list | get | test | replay | disable | enable` and
//! `omnitrail tasks list | claim | done`: journey triggers from the command line. These
//! open the data dir, so they run while no server holds it (use the HTTP API then).

use crate::OutputFormat;
use anyhow::{bail, Context, Result};
use clap::Subcommand;
use omnitrail_app::rules::{Action, FiringView, TaskAction, TaskQuery};
use omnitrail_app::App;
use omnitrail_model::{ProjectId, Timestamp};
use std::path::PathBuf;

#[derive(Subcommand)]
pub enum RulesCommand {
    /// Add a rule from a YAML or JSON file (a rule of the same name is replaced).
    Add {
        file: PathBuf,
        #[arg(long, value_enum, default_value = "table")]
        format: OutputFormat,
    },
    /// Every rule: name, enabled, steps, actions.
    List {
        #[arg(long, value_enum, default_value = "table")]
        format: OutputFormat,
    },
    /// One rule as stored (JSON), with its webhook signing secret.
    Get { name: String },
    /// Evaluate a rule file over events (NDJSON, one customer's history) without storing
    /// or sending anything.
    Test {
        file: PathBuf,
        /// Canonical events, one JSON object a line.
        #[arg(long)]
        events: Option<PathBuf>,
        #[arg(long, value_enum, default_value = "table")]
        format: OutputFormat,
    },
    /// Run a stored rule over the stored history: how often and for whom it would have
    /// fired. No side effects.
    Replay {
        name: String,
        /// Completions from this time (RFC 3339 or epoch seconds).
        #[arg(long)]
        from: Option<String>,
        /// Completions before this time.
        #[arg(long)]
        to: Option<String>,
        #[arg(long, value_enum, default_value = "table")]
        format: OutputFormat,
    },
    /// Stop a rule from seeing events (its state is kept).
    Disable { name: String },
    /// Let a disabled rule see events again.
    Enable { name: String },
}

#[derive(Subcommand)]
pub enum TasksCommand {
    /// Agent tasks rules queued, oldest first.
    List {
        /// open, claimed or done.
        #[arg(long)]
        status: Option<String>,
        /// Only this customer's tasks (any identifier).
        #[arg(long)]
        customer: Option<String>,
        /// At most this many tasks, oldest first (all when not given).
        #[arg(long)]
        limit: Option<usize>,
        #[arg(long, value_enum, default_value = "table")]
        format: OutputFormat,
    },
    /// Take an open task.
    Claim {
        id: i64,
        #[arg(long)]
        agent: String,
    },
    /// Mark a task done.
    Done { id: i64 },
}

fn time(t: &Timestamp) -> String {
    t.to_rfc3339()
}

fn firings_table(firings: &[FiringView]) {
    println!("{:<24} {:<10} steps", "completed", "customer");
    for f in firings {
        let steps: Vec<String> = f
            .steps
            .iter()
            .map(|s| {
                format!(
                    "{}{} {}",
                    s.activity.as_deref().unwrap_or("*"),
                    s.channel
                        .as_deref()
                        .map(|c| format!("@{c}"))
                        .unwrap_or_default(),
                    time(&s.timestamp)
                )
            })
            .collect();
        println!(
            "{:<24} {:<10} {}",
            time(&f.completed_at),
            f.customer_id.as_deref().unwrap_or("-"),
            steps.join(" -> ")
        );
    }
}

fn parse_time(field: &str, t: &Option<String>) -> Result<Option<Timestamp>> {
    t.as_deref()
        .map(|t| Timestamp::parse(t).with_context(|| format!("--{field} '{t}'")))
        .transpose()
}

pub fn run(app: &App, command: RulesCommand) -> Result<()> {
    let p = ProjectId::DEFAULT;
    match command {
        RulesCommand::Add { file, format } => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            let (info, created) = app
                .add_rule(p, &text)
                .with_context(|| format!("{}", file.display()))?;
            if format == OutputFormat::Json {
                println!("{}", serde_json::to_string_pretty(&info)?);
            } else {
                let verb = if created { "added" } else { "replaced" };
                println!("{verb} rule {}", info.name);
            }
        }
        RulesCommand::List { format } => {
            let rules = app.rules(p)?;
            if format == OutputFormat::Json {
                println!("{}", serde_json::to_string_pretty(&rules)?);
                return Ok(());
            }
            println!("{:<32} {:<8} {:<40} actions", "name", "enabled", "steps");
            for r in rules {
                let steps: Vec<String> = r
                    .rule
                    .steps
                    .iter()
                    .map(|s| {
                        let f = &s.filter;
                        format!(
                            "{}{}",
                            f.activity.as_deref().unwrap_or("*"),
                            f.channel
                                .as_deref()
                                .map(|c| format!("@{c}"))
                                .unwrap_or_default()
                        )
                    })
                    .collect();
                let actions: Vec<&str> = r
                    .rule
                    .actions
                    .iter()
                    .map(|a| match a {
                        Action::Webhook { .. } => "webhook",
                        Action::Task { .. } => "task",
                        Action::Emit { .. } => "emit",
                    })
                    .collect();
                println!(
                    "{:<32} {:<8} {:<40} {}",
                    r.name,
                    if r.enabled { "yes" } else { "no" },
                    steps.join(" -> "),
                    actions.join(", ")
                );
            }
        }
        RulesCommand::Get { name } => {
            println!("{}", serde_json::to_string_pretty(&app.rule(p, &name)?)?);
        }
        RulesCommand::Test {
            file,
            events,
            format,
        } => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            let mut list = Vec::new();
            if let Some(path) = events {
                let ndjson = std::fs::read_to_string(&path)
                    .with_context(|| format!("cannot read {}", path.display()))?;
                for (i, line) in ndjson.lines().enumerate() {
                    if line.trim().is_empty() {
                        continue;
                    }
                    list.push(
                        serde_json::from_str(line).with_context(|| {
                            format!("{} line {}: not JSON", path.display(), i + 1)
                        })?,
                    );
                }
            }
            let firings = app.test_rule(&text, &list)?;
            if format == OutputFormat::Json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&serde_json::json!({ "firings": firings }))?
                );
            } else {
                println!("{} firing(s)", firings.len());
                firings_table(&firings);
            }
        }
        RulesCommand::Replay {
            name,
            from,
            to,
            format,
        } => {
            let report =
                app.replay_rule(p, &name, parse_time("from", &from)?, parse_time("to", &to)?)?;
            if format == OutputFormat::Json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                println!(
                    "rule {} would have fired {} time(s) for {} customer(s) ({} events read)",
                    report.rule, report.firings, report.customers, report.events_read
                );
                firings_table(&report.fired);
            }
        }
        RulesCommand::Disable { name } => {
            app.set_rule_enabled(p, &name, false)?;
            println!("disabled rule {name}");
        }
        RulesCommand::Enable { name } => {
            app.set_rule_enabled(p, &name, true)?;
            println!("enabled rule {name}");
        }
    }
    Ok(())
}

pub fn tasks(app: &App, command: TasksCommand) -> Result<()> {
    let p = ProjectId::DEFAULT;
    match command {
        TasksCommand::List {
            status,
            customer,
            limit,
            format,
        } => {
            if let Some(s) = &status {
                if !["open", "claimed", "done"].contains(&s.as_str()) {
                    bail!("--status '{s}' is not open, claimed or done");
                }
            }
            let query = TaskQuery {
                status: status.as_deref(),
                customer: customer.as_deref(),
                limit,
                ..TaskQuery::default()
            };
            let list = app.tasks(p, &query)?;
            if format == OutputFormat::Json {
                println!("{}", serde_json::to_string_pretty(&list)?);
                return Ok(());
            }
            println!(
                "{} open, {} claimed, {} done",
                list.counts.open, list.counts.claimed, list.counts.done
            );
            println!(
                "{:<6} {:<10} {:<8} {:<24} {:<12} title",
                "id", "queue", "status", "customer", "agent"
            );
            for t in list.tasks {
                println!(
                    "{:<6} {:<10} {:<8} {:<24} {:<12} {}",
                    t.id,
                    t.queue,
                    t.status,
                    t.customer_label,
                    t.agent.as_deref().unwrap_or("-"),
                    t.title
                );
            }
        }
        TasksCommand::Claim { id, agent } => {
            let t = app.update_task(p, id, TaskAction::Claim, Some(&agent))?;
            println!("task {} claimed by {}", t.id, agent);
        }
        TasksCommand::Done { id } => {
            let t = app.update_task(p, id, TaskAction::Done, None)?;
            println!("task {} done", t.id);
        }
    }
    Ok(())
}
