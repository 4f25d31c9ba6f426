//! The `omnitrail` binary: argument parsing and output formatting over `omnitrail-app`.

mod analysis;
mod customer;
mod design;
mod diagnostics;
mod erase;
mod keys;
mod output;
mod rules;
mod serve;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use omnitrail_app::import::{ColumnMapping, Format, ImportOptions, TextEncoding};
use omnitrail_app::keys::KeyKind;
use omnitrail_app::{App, AppError, AppOptions, SynthConfig};
use omnitrail_model::{Channel, IdentifierKind, ProjectId};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(Parser)]
#[command(
    name = "omnitrail",
    version,
    about = "Customer journey mapping and analytics"
)]
struct Cli {
    /// The data dir.
    #[arg(
        long,
        global = true,
        default_value = "./omnitrail-data",
        env = "OMNITRAIL_DATA"
    )]
    data: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum OutputFormat {
    Table,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Generate the demo dataset into an empty data dir, then show what it holds.
    Demo {
        /// Customers to generate.
        #[arg(long, default_value_t = 20_000)]
        customers: u64,
        /// Seed: the same seed always gives the same data.
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Only generate; do not go on to serve.
        #[arg(long)]
        no_serve: bool,
        #[arg(long, value_enum, default_value = "table")]
        format: OutputFormat,
        #[command(flatten)]
        serve: serve::ServeArgs,
    },
    /// The HTTP server: collectors (native and Segment-compatible), query API, metrics.
    Serve(serve::ServeArgs),
    /// Create, list and revoke API keys (works while a server runs).
    #[command(subcommand)]
    Keys(keys::KeysCommand),
    /// Print the server's OpenAPI document (JSON).
    Openapi,
    /// Import event files: CSV/TSV, NDJSON, Parquet, XES (.xes, .xes.gz).
    Import(Box<ImportArgs>),
    /// Counts by channel, activity and stage; customers, time range, storage size.
    Stats {
        #[arg(long, value_enum, default_value = "table")]
        format: OutputFormat,
    },
    /// Move events waiting in the ingest log into Parquet segments now.
    Compact,
    /// The customer view: identity, traits, timeline, purchases, issues, notes, summary.
    Customer(customer::CustomerArgs),
    /// Add, edit or list agent notes on a customer.
    #[command(subcommand)]
    Note(customer::NoteCommand),
    /// Erase a person everywhere (their whole identity cluster: events, profile, notes,
    /// dead letters) and suppress their identifiers until lifted.
    Erase {
        /// Any identifier of the person: kind:value, a bare value, or a customer id (c42).
        identifier: String,
        #[arg(long, value_enum, default_value = "table")]
        format: OutputFormat,
    },
    /// List or lift suppressed identifiers (erased people whose events are refused).
    #[command(subcommand)]
    Suppressions(erase::SuppressionsCommand),
    /// The audit log of erasures and lifts: who, when, which identifier hashes, counts.
    Audit {
        #[arg(long, value_enum, default_value = "table")]
        format: OutputFormat,
    },
    /// Journey triggers: add, list, test, replay, disable and enable rules.
    #[command(subcommand)]
    Rules(rules::RulesCommand),
    /// Agent tasks queued by rules: list, claim, done.
    #[command(subcommand)]
    Tasks(rules::TasksCommand),
    /// Split an identifier off its customer, revoking every link through it.
    Unmerge {
        /// The identifier as kind:value, e.g. device_id:tablet-7.
        identifier: String,
    },
    #[command(flatten)]
    Analysis(analysis::AnalysisCommand),
    #[command(flatten)]
    Diagnostics(diagnostics::DiagnosticsCommand),
    #[command(flatten)]
    Design(design::DesignCommand),
}

#[derive(Args)]
struct ImportArgs {
    /// Files to import.
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// Input format; by default from the file name.
    #[arg(long, value_enum)]
    input_format: Option<InputFormat>,
    /// Field delimiter of CSV files (one character; `\t` for tab); sniffed by default.
    #[arg(long)]
    delimiter: Option<String>,
    /// Text encoding of CSV files; detected by default.
    #[arg(long, value_enum)]
    encoding: Option<EncodingArg>,
    /// Column (or XES trace attribute) holding the customer id.
    #[arg(long)]
    customer: Option<String>,
    /// Identifier kind of the customer column (user_id, crm_id, email, phone, ...).
    #[arg(long, default_value = "user_id")]
    customer_kind: String,
    /// Column holding the activity.
    #[arg(long, conflicts_with = "activity_value")]
    activity: Option<String>,
    /// One activity for every row (for files that record a single kind of event).
    #[arg(long)]
    activity_value: Option<String>,
    /// Column holding the timestamp.
    #[arg(long)]
    timestamp: Option<String>,
    /// Column holding the channel.
    #[arg(long, conflicts_with = "channel_value")]
    channel: Option<String>,
    /// One channel for every row, e.g. `web`.
    #[arg(long)]
    channel_value: Option<String>,
    /// Column holding a client event id, used to de-duplicate re-imports.
    #[arg(long)]
    event_id: Option<String>,
    /// More identifier columns, as KIND=COLUMN (e.g. email=mail_address); repeatable.
    #[arg(long = "identifier", value_name = "KIND=COLUMN")]
    identifiers: Vec<String>,
    /// A column stored as a property, as NAME=COLUMN (e.g. os=platform); repeatable.
    #[arg(long = "property", value_name = "NAME=COLUMN")]
    properties: Vec<String>,
    /// A column stored as a customer trait; repeatable.
    #[arg(long = "trait", value_name = "COLUMN")]
    traits: Vec<String>,
    /// A column to leave out; repeatable.
    #[arg(long = "ignore", value_name = "COLUMN")]
    ignore: Vec<String>,
    /// Exit with an error when any row is rejected (valid rows are still imported).
    #[arg(long)]
    strict: bool,
    #[arg(long, value_enum, default_value = "table")]
    format: OutputFormat,
}

#[derive(Clone, Copy, ValueEnum)]
enum InputFormat {
    Csv,
    Ndjson,
    Parquet,
    Xes,
}

#[derive(Clone, Copy, ValueEnum)]
enum EncodingArg {
    Utf8,
    Latin1,
}

fn main() {
    // A closed pipe (`omnitrail customer … | head`) should end the process quietly, as for
    // any Unix tool, not make the next print panic: restore the default SIGPIPE action that
    // Rust's runtime replaces with "ignore".
    #[cfg(unix)]
    // SAFETY: called first thing in main, before any other thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    // Columns are vectors of tens of MB. glibc raises its mmap threshold past such a block
    // whenever one is freed, so later columns come from the heap, and what a phase frees
    // (the raw scan a regroup replaces) stays with the process and adds to the next
    // phase's peak: 2.49 GB against 1.85 GB for `variants` on the 1M demo. A fixed
    // threshold keeps every large block a mapping of its own, returned when freed.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: called before any allocation-heavy work and before other threads exist.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("OMNITRAIL_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    if let Err(e) = run(Cli::parse()) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn open(data: &Path) -> Result<App> {
    App::open(data, AppOptions::default())
        .with_context(|| format!("cannot open data dir {}", data.display()))
}

/// For commands that only read or tidy: a mistyped `--data` must not create an empty dir.
fn open_existing(data: &Path) -> Result<App> {
    if !data.is_dir() {
        bail!(
            "data dir {} does not exist; create one with `omnitrail demo` or `omnitrail import`",
            data.display()
        );
    }
    open(data)
}

/// For commands that only read. Beside a server holding the data dir they read a
/// consistent snapshot of it without taking its lock ([`App::open_read_only`]); a data
/// dir a reader cannot read as it is (an older metadata schema, an erasure to finish) is
/// opened as a writer instead, which repairs it, when no other process holds it.
fn open_reader(data: &Path) -> Result<App> {
    if !data.is_dir() {
        return open_existing(data);
    }
    let why = match App::open_read_only(data, AppOptions::default()) {
        Ok(app) => return Ok(app),
        Err(e) => match e.needs_writer() {
            Some(why) => why.to_string(),
            None => {
                return Err(e).with_context(|| format!("cannot open data dir {}", data.display()))
            }
        },
    };
    match App::open(data, AppOptions::default()) {
        Err(e) if e.is_locked() => bail!(
            "cannot read data dir {}: {why}; the process holding it does that when it next opens it",
            data.display()
        ),
        opened => opened.with_context(|| format!("cannot open data dir {}", data.display())),
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Demo {
            customers,
            seed,
            no_serve,
            format,
            serve,
        } => demo(
            &cli.data,
            customers,
            seed,
            (!no_serve).then_some(serve),
            format,
        ),
        Command::Serve(args) => {
            let app = App::open(&cli.data, args.app_options())
                .with_context(|| format!("cannot open data dir {}", cli.data.display()))?;
            serve::serve(app, &args, None)
        }
        Command::Keys(command) => keys::run(&cli.data, command),
        Command::Openapi => {
            serve::openapi();
            Ok(())
        }
        Command::Import(args) => import(&cli.data, *args),
        Command::Stats { format } => {
            let app = open_reader(&cli.data)?;
            output::stats(
                &app.stats(ProjectId::DEFAULT)?,
                format == OutputFormat::Json,
            );
            Ok(())
        }
        Command::Compact => {
            let app = open_existing(&cli.data)?;
            let r = app.compact()?;
            println!(
                "compacted {} events into {} segments ({} merged)",
                r.events, r.segments_written, r.segments_merged
            );
            Ok(())
        }
        Command::Analysis(command) => analysis::run(&open_reader(&cli.data)?, command),
        Command::Diagnostics(command) => diagnostics::run(&open_reader(&cli.data)?, command),
        Command::Design(command) => design::run(&open_reader(&cli.data)?, command),
        Command::Customer(args) => customer::customer(&open_reader(&cli.data)?, args),
        Command::Note(command) => {
            let app = match command {
                customer::NoteCommand::List { .. } => open_reader(&cli.data)?,
                _ => open_existing(&cli.data)?,
            };
            customer::note(&app, command)
        }
        Command::Erase { identifier, format } => {
            erase::erase(&open_existing(&cli.data)?, &identifier, format)
        }
        Command::Suppressions(command) => erase::suppressions(&open_existing(&cli.data)?, command),
        Command::Audit { format } => erase::audit(&open_existing(&cli.data)?, format),
        Command::Rules(command) => rules::run(&open_existing(&cli.data)?, command),
        Command::Tasks(command) => rules::tasks(&open_existing(&cli.data)?, command),
        Command::Unmerge { identifier } => {
            open_existing(&cli.data)?.unmerge(ProjectId::DEFAULT, &identifier)?;
            println!("unmerged {identifier}");
            Ok(())
        }
    }
}

fn progress_bar(json: bool, len: u64, template: &str) -> ProgressBar {
    let target = if json || !std::io::stderr().is_terminal() {
        ProgressDrawTarget::hidden()
    } else {
        ProgressDrawTarget::stderr()
    };
    let bar = ProgressBar::with_draw_target(Some(len), target);
    bar.set_style(
        ProgressStyle::with_template(template)
            .expect("progress templates are constants")
            .progress_chars("=> "),
    );
    bar
}

/// Generates (into an empty data dir), shows the stats, then serves unless `serve` is
/// `None` (`--no-serve`).
fn demo(
    data: &Path,
    customers: u64,
    seed: u64,
    serve: Option<serve::ServeArgs>,
    format: OutputFormat,
) -> Result<()> {
    let json = format == OutputFormat::Json;
    let opts = serve.as_ref().map(|s| s.app_options()).unwrap_or_default();
    let mut app = App::open(data, opts)
        .with_context(|| format!("cannot open data dir {}", data.display()))?;
    let cfg = SynthConfig {
        customers,
        seed,
        ..SynthConfig::default()
    };
    let bar = progress_bar(
        json,
        customers,
        "generating {bar:40} {pos}/{len} customers {per_sec} eta {eta}",
    );
    let started = Instant::now();
    match app.generate_demo(&cfg, &|done, _| bar.set_position(done)) {
        Ok(summary) => {
            bar.finish_and_clear();
            if !json {
                eprintln!(
                    "generated {} events for {} customers in {:.1} s (seed {seed})",
                    summary.events,
                    summary.customers,
                    started.elapsed().as_secs_f64()
                );
            }
        }
        Err(AppError::NotEmpty(existing)) => {
            bar.finish_and_clear();
            if !json {
                eprintln!(
                    "{} already holds {existing} events; demo data is only generated into an empty --data dir",
                    data.display()
                );
            }
        }
        Err(e) => return Err(e.into()),
    }
    let Some(serve) = serve else {
        if json {
            output::stats(&app.stats(ProjectId::DEFAULT)?, json);
        }
        return Ok(());
    };
    output::stats(&app.stats(ProjectId::DEFAULT)?, json);
    // Fresh keys every run: stored keys are hashes and cannot be shown again.
    let write = app.create_key("default", KeyKind::Write, "demo")?;
    let secret = app.create_key("default", KeyKind::Secret, "demo")?;
    println!();
    println!("write key (send events):   {}", write.key);
    println!("secret key (query API):    {}", secret.key);
    serve::serve(app, &serve, Some(&secret.key))
}

fn split_pair(text: &str, flag: &str) -> Result<(String, String)> {
    match text.split_once('=') {
        Some((a, b)) if !a.is_empty() && !b.is_empty() => Ok((a.to_string(), b.to_string())),
        _ => bail!("--{flag} expects NAME=COLUMN, got '{text}'"),
    }
}

fn import_options(args: &ImportArgs) -> Result<ImportOptions> {
    let delimiter = match args.delimiter.as_deref() {
        None => None,
        Some("\\t") | Some("tab") => Some(b'\t'),
        Some(d) if d.len() == 1 => Some(d.as_bytes()[0]),
        Some(d) => bail!("--delimiter must be one character (or \\t), got '{d}'"),
    };
    let customer_kind = IdentifierKind::parse(&args.customer_kind)
        .with_context(|| "--customer-kind".to_string())?;
    let mut identifiers = Vec::new();
    for pair in &args.identifiers {
        let (kind, col) = split_pair(pair, "identifier")?;
        let kind = IdentifierKind::parse(&kind).with_context(|| format!("--identifier {pair}"))?;
        identifiers.push((kind, col));
    }
    let properties = args
        .properties
        .iter()
        .map(|p| split_pair(p, "property"))
        .collect::<Result<Vec<_>>>()?;
    let channel_value = args
        .channel_value
        .as_deref()
        .map(Channel::parse)
        .transpose()
        .context("--channel-value")?;
    Ok(ImportOptions {
        format: args.input_format.map(|f| match f {
            InputFormat::Csv => Format::Csv,
            InputFormat::Ndjson => Format::Ndjson,
            InputFormat::Parquet => Format::Parquet,
            InputFormat::Xes => Format::Xes,
        }),
        delimiter,
        encoding: args.encoding.map(|e| match e {
            EncodingArg::Utf8 => TextEncoding::Utf8,
            EncodingArg::Latin1 => TextEncoding::Latin1,
        }),
        mapping: ColumnMapping {
            customer: args.customer.clone(),
            customer_kind: Some(customer_kind),
            activity: args.activity.clone(),
            activity_value: args.activity_value.clone(),
            timestamp: args.timestamp.clone(),
            channel: args.channel.clone(),
            channel_value,
            event_id: args.event_id.clone(),
            identifiers,
            properties,
            traits: args.traits.clone(),
            ignore: args.ignore.clone(),
        },
    })
}

fn import(data: &Path, args: ImportArgs) -> Result<()> {
    let json = args.format == OutputFormat::Json;
    let options = import_options(&args)?;
    let app = open(data)?;
    let mut summaries = Vec::new();
    for file in &args.files {
        let total = std::fs::metadata(file)
            .with_context(|| format!("cannot read {}", file.display()))?
            .len();
        let bar = progress_bar(
            json,
            total,
            "{msg} {bar:40} {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}",
        );
        bar.set_message(file.display().to_string());
        let started = Instant::now();
        let summary = app.import_file(ProjectId::DEFAULT, file, &options, &|p| {
            bar.set_length(p.total_bytes.max(1));
            bar.set_position(p.bytes_read);
        })?;
        bar.finish_and_clear();
        summaries.push((summary, started.elapsed()));
    }
    // Imported events are durable in the log already; compacting now puts them in
    // Parquet segments so that the next reader does not replay them.
    app.compact()?;
    output::import_summaries(&summaries, json);
    let rejected: u64 = summaries.iter().map(|(s, _)| s.rejected).sum();
    if args.strict && rejected > 0 {
        bail!("{rejected} rows were rejected and --strict is set");
    }
    Ok(())
}
