//! `omnitrail customer`, `omnitrail note …` and `omnitrail unmerge`: the agent's view of
//! one customer, notes on it, and undoing a wrong identity link.

use crate::OutputFormat;
use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use omnitrail_app::customer::{CustomerView, TimelineQuery};
use omnitrail_app::{App, NewNote};
use omnitrail_model::{ProjectId, Timestamp};

#[derive(Args)]
pub struct CustomerArgs {
    /// Any identifier: `kind:value` (email:ana@example.com, social:twitter:@ana), a bare
    /// value looked up across kinds (a phone as the agent hears it: "+1 (555) 123-4567"),
    /// or a customer id (c42).
    pub identifier: String,
    /// Only events of this channel in the timeline; repeatable.
    #[arg(long = "channel")]
    pub channels: Vec<String>,
    /// Timeline from this time (inclusive).
    #[arg(long)]
    pub from: Option<String>,
    /// Timeline up to this time (exclusive).
    #[arg(long)]
    pub to: Option<String>,
    /// Timeline entries to skip (newest first).
    #[arg(long, default_value_t = 0)]
    pub offset: usize,
    /// Timeline entries to show.
    #[arg(long, default_value_t = 50)]
    pub limit: usize,
    #[arg(long, value_enum, default_value = "table")]
    pub format: OutputFormat,
}

#[derive(Subcommand)]
pub enum NoteCommand {
    /// Add a note to a customer.
    Add {
        /// The customer, by any identifier (as for `omnitrail customer`).
        identifier: String,
        #[arg(long)]
        text: String,
        #[arg(long, default_value = "agent")]
        author: String,
        #[arg(long)]
        topic: Option<String>,
        /// The event the note is about (an event id or a description).
        #[arg(long)]
        event: Option<String>,
    },
    /// Replace the text (and optionally the topic) of a note.
    Edit {
        id: i64,
        #[arg(long)]
        text: String,
        #[arg(long)]
        topic: Option<String>,
    },
    /// List a customer's notes, oldest first.
    List {
        identifier: String,
        #[arg(long, value_enum, default_value = "table")]
        format: OutputFormat,
    },
}

fn time(flag: &str, text: Option<&str>) -> Result<Option<Timestamp>> {
    text.map(|t| Timestamp::parse(t).with_context(|| format!("--{flag} {t}")))
        .transpose()
}

pub fn customer(app: &App, args: CustomerArgs) -> Result<()> {
    let query = TimelineQuery {
        channels: args.channels,
        from: time("from", args.from.as_deref())?,
        to: time("to", args.to.as_deref())?,
        offset: args.offset,
        limit: args.limit,
    };
    let view = app.customer(ProjectId::DEFAULT, &args.identifier, &query)?;
    if args.format == OutputFormat::Json {
        println!("{}", serde_json::to_string_pretty(&view)?);
    } else {
        print_view(&view);
    }
    Ok(())
}

pub fn note(app: &App, command: NoteCommand) -> Result<()> {
    match command {
        NoteCommand::Add {
            identifier,
            text,
            author,
            topic,
            event,
        } => {
            let note = app.add_note(
                ProjectId::DEFAULT,
                &identifier,
                NewNote {
                    author,
                    text,
                    topic,
                    event,
                },
            )?;
            println!("added note {} to {}", note.id, identifier);
        }
        NoteCommand::Edit { id, text, topic } => {
            app.edit_note(ProjectId::DEFAULT, id, &text, topic.as_deref())?;
            println!("edited note {id}");
        }
        NoteCommand::List { identifier, format } => {
            let notes = app.notes(ProjectId::DEFAULT, &identifier)?;
            if format == OutputFormat::Json {
                println!("{}", serde_json::to_string_pretty(&notes)?);
            } else {
                for n in &notes {
                    println!(
                        "#{} {} {}{}: {}",
                        n.id,
                        n.created_at,
                        n.author,
                        n.topic
                            .as_deref()
                            .map(|t| format!(" [{t}]"))
                            .unwrap_or_default(),
                        n.text
                    );
                }
                if notes.is_empty() {
                    println!("no notes");
                }
            }
        }
    }
    Ok(())
}

fn print_view(v: &CustomerView) {
    println!("customer {}", v.customer_id);
    println!("  {}", v.summary);
    println!();
    println!("identifiers");
    for i in &v.identifiers {
        println!("  {:<16} {}", i.kind, i.value);
    }
    if !v.links.is_empty() {
        println!("links (evidence)");
        for l in &v.links {
            println!(
                "  #{:<5} {} {:<8} {:<8} {}{}{}",
                l.evidence,
                l.at,
                l.source,
                l.decision,
                l.identifiers.join(" + "),
                l.event
                    .as_deref()
                    .map(|e| format!("  (event {e})"))
                    .unwrap_or_default(),
                l.reason
                    .as_deref()
                    .map(|r| format!("\n          {r}"))
                    .unwrap_or_default()
            );
        }
    }
    if !v.traits.is_empty() {
        println!("traits");
        for t in &v.traits {
            println!(
                "  {:<16} {:<20} seen {} on {}",
                t.name, t.value, t.seen_at, t.channel
            );
        }
    }
    let seen = |t: Option<Timestamp>| t.map(|t| t.to_string()).unwrap_or_else(|| "-".into());
    println!(
        "activity: {} events, first {}, last {}; lifecycle {}{}",
        v.events,
        seen(v.first_seen),
        seen(v.last_seen),
        v.lifecycle.state,
        match (&v.lifecycle.since, v.lifecycle.returned_after_days) {
            (Some(s), Some(d)) => format!(" since {s} after {d} days away"),
            (Some(s), None) => format!(" since {s}"),
            _ => String::new(),
        }
    );
    let channels: Vec<String> = v.channels.iter().map(|(c, n)| format!("{c} {n}")).collect();
    println!("channels: {}", channels.join(", "));
    println!(
        "purchases: {} totalling {:.2}",
        v.purchases.len(),
        v.total_value
    );
    for p in v.purchases.iter().rev().take(5) {
        println!(
            "  {} {:<10} {:>10.2} {}",
            p.at,
            p.channel,
            p.value,
            p.order_id.as_deref().unwrap_or("")
        );
    }
    if !v.issues.is_empty() {
        println!("issues");
        for i in v.issues.iter().rev().take(10) {
            println!(
                "  {} {:<10} {:<11} {:<20} {}",
                i.at,
                i.channel,
                i.kind,
                i.activity,
                match i.resolved_at {
                    Some(t) => format!("resolved {t}"),
                    None => "open".into(),
                }
            );
        }
    }
    if !v.friction.is_empty() {
        println!("friction");
        for f in &v.friction {
            println!("  {:<18} {}", f.kind, f.detail);
        }
    }
    if !v.notes.is_empty() {
        println!("notes");
        for n in &v.notes {
            println!("  #{} {} {}: {}", n.id, n.created_at, n.author, n.text);
        }
    }
    println!(
        "timeline (newest first, {}–{} of {})",
        (v.timeline.offset + 1).min(v.timeline.total),
        v.timeline.offset + v.timeline.entries.len() as u64,
        v.timeline.total
    );
    for e in &v.timeline.entries {
        let props: Vec<String> = e
            .properties
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        println!(
            "  {} {:<10} {:<22} {}",
            e.at,
            if e.kind == "note" { "note" } else { &e.channel },
            e.activity,
            props.join(" ")
        );
    }
}
