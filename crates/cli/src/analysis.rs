//! Analysis subcommands: `map`, `variants`, `channels`, `paths`, `funnel`.
//!
//! Each subcommand is an args struct with the shared [`CommonArgs`] flattened in, and a
//! handler that calls [`analyze`] with what to load, what to compute and how to print it.
//! `run` opens the data dir once; `analyze` parses the common options through the app and serves
//! the hidden `--repeat N` benchmark mode (load once, time N computations) for free. To add a
//! subcommand: a variant in [`AnalysisCommand`], an args struct, a handler like [`map`].

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand, ValueEnum};
use omnitrail_app::analysis::engine::format_duration;
use omnitrail_app::analysis::engine::funnel::{
    funnel_scan, Breakdown, DroppedPage, Funnel, FunnelMode, FunnelOptions, FunnelStep,
    FunnelStepResult,
};
use omnitrail_app::analysis::engine::paths::{AnchorOccurrence, PathDirection, PathOptions, Paths};
use omnitrail_app::analysis::engine::{
    parse_duration, variants_scan, ChannelOptions, ChannelSwitching, MapOptions, ProcessMap, Query,
    VariantOptions, Variants,
};
use omnitrail_app::analysis::{AnalysisInput, QueryOptions};
use omnitrail_app::App;
use omnitrail_model::journeys::ScanSpec;
use omnitrail_model::{ProjectId, Timestamp};
use serde_json::json;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Instant;

/// Options every analysis takes.
#[derive(Args, Clone, Debug, Default)]
pub struct CommonArgs {
    /// Only events at or after this time (RFC 3339, a date, or epoch seconds/ms).
    #[arg(long, value_parser = parse_timestamp)]
    pub from: Option<Timestamp>,
    /// Only events before this time.
    #[arg(long, value_parser = parse_timestamp)]
    pub to: Option<Timestamp>,
    /// Event filter, e.g. "channel = 'phone' and os in ('iOS', 'iPadOS')".
    #[arg(long = "where", value_name = "EXPR")]
    pub filter: Option<String>,
    /// Customer segment, e.g. "trait.plan = 'premium' and did('payment_failed')".
    #[arg(long, value_name = "EXPR")]
    pub segment: Option<String>,
    /// How journeys split into cases: customer, gap:DURATION (e.g. gap:30m) or property:NAME.
    #[arg(long, value_name = "SPLIT")]
    pub case: Option<String>,
    /// What a step is: activity, channel, touchpoint, stage or property:NAME.
    #[arg(long, value_name = "DIMENSION")]
    pub by: Option<String>,
    /// Only the customers of this persona (key, p<N> or name; see `omnitrail personas`).
    #[arg(long, value_name = "NAME")]
    pub persona: Option<String>,
    /// Benchmark mode: load the data once, compute N times, print timings as JSON.
    #[arg(long, hide = true, value_name = "N")]
    pub repeat: Option<usize>,
}

fn parse_timestamp(text: &str) -> Result<Timestamp, String> {
    Timestamp::parse(text).map_err(|e| e.to_string())
}

impl CommonArgs {
    pub(crate) fn query_options(&self) -> QueryOptions {
        QueryOptions {
            by: self.by.clone(),
            case: self.case.clone(),
            from: self.from,
            to: self.to,
            filter: self.filter.clone(),
            segment: self.segment.clone(),
            persona: self.persona.clone(),
        }
    }
}

#[derive(Subcommand)]
pub enum AnalysisCommand {
    /// Process map: which step directly follows which, how often and how fast.
    Map(MapArgs),
    /// The most frequent whole journeys (step sequences) with share, duration and outcome.
    Variants(VariantsArgs),
    /// Channel switching: who jumps from which channel to which, within a window.
    Channels(ChannelsArgs),
    /// Paths: what customers do after (or before) an anchor step, top steps per position.
    Paths(PathsArgs),
    /// Funnel: how many cases get through ordered steps, how fast, and who drops where.
    Funnel(FunnelArgs),
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Table,
    Json,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum MapFormat {
    Table,
    Json,
    /// Graphviz DOT source.
    Dot,
    /// SVG drawn by Graphviz (`dot` must be installed).
    Svg,
}

#[derive(Args)]
pub struct MapArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// Keep the most frequent steps covering this percent of events.
    #[arg(long, default_value_t = 100.0, value_name = "PERCENT")]
    node_coverage: f64,
    /// Keep the most frequent transitions covering this percent among kept steps.
    #[arg(long, default_value_t = 100.0, value_name = "PERCENT")]
    edge_coverage: f64,
    #[arg(long, value_enum, default_value = "table")]
    format: MapFormat,
}

#[derive(Args)]
pub struct VariantsArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// How many variants to list.
    #[arg(long, default_value_t = 20)]
    top: usize,
    #[arg(long, value_enum, default_value = "table")]
    format: Format,
}

#[derive(Args)]
pub struct ChannelsArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// Longest gap between two events on different channels that counts as a switch.
    #[arg(long, default_value = "24h", value_name = "DURATION")]
    window: String,
    /// Channel performance and preference (waits, resolution, repeat contacts, bot
    /// containment, cost to serve) instead of switching.
    #[arg(long)]
    performance: bool,
    #[command(flatten)]
    performance_args: crate::diagnostics::PerformanceArgs,
    #[arg(long, value_enum, default_value = "table")]
    format: Format,
}

pub fn run(app: &App, command: AnalysisCommand) -> Result<()> {
    match command {
        AnalysisCommand::Map(args) => map(app, args),
        AnalysisCommand::Variants(args) => variants(app, args),
        AnalysisCommand::Channels(args) => channels(app, args),
        AnalysisCommand::Paths(args) => paths(app, args),
        AnalysisCommand::Funnel(args) => funnel(app, args),
    }
}

/// Loads what the query needs (the query's own columns plus `extra(query)`), computes, and
/// renders, or with `--repeat N` computes N times over the loaded data and prints the
/// timings instead. The app is opened once per command by `run`, so handlers can read
/// settings (configuration, personas) from it before the analysis loads its columns.
pub fn analyze<T>(
    app: &App,
    name: &str,
    common: &CommonArgs,
    extra: impl FnOnce(&Query) -> ScanSpec,
    compute: impl Fn(&AnalysisInput) -> Result<T>,
    render: impl FnOnce(T) -> Result<()>,
) -> Result<()> {
    let started = Instant::now();
    let query = app.parse_query(&common.query_options())?;
    let extra = extra(&query);
    let input = app.analysis_input(ProjectId::DEFAULT, query, &extra)?;
    let Some(repeat) = common.repeat else {
        return render(compute(&input)?);
    };
    let load_s = started.elapsed().as_secs_f64();
    let mut runs = Vec::with_capacity(repeat);
    for _ in 0..repeat.max(1) {
        let t = Instant::now();
        let result = compute(&input)?;
        runs.push(t.elapsed().as_secs_f64());
        drop(result);
    }
    let events = input.events();
    let heap = input.heap_bytes();
    println!(
        "{}",
        json!({
            "command": name,
            "events": events,
            "heap_bytes": heap,
            "bytes_per_event": if events == 0 { 0.0 } else { heap as f64 / events as f64 },
            "open_and_load_s": load_s,
            "runs_s": runs,
        })
    );
    Ok(())
}

fn map(app: &App, args: MapArgs) -> Result<()> {
    let options = MapOptions {
        node_coverage: args.node_coverage,
        edge_coverage: args.edge_coverage,
    };
    analyze(
        app,
        "map",
        &args.common,
        |_| ScanSpec::default(),
        |input| Ok(input.process_map(&options)?),
        |m| match args.format {
            MapFormat::Json => print_json(serde_json::to_value(&m)?),
            MapFormat::Table => {
                map_table(&m);
                Ok(())
            }
            MapFormat::Dot => {
                print!("{}", map_dot(&m));
                Ok(())
            }
            MapFormat::Svg => {
                print!("{}", render_svg(&map_dot(&m))?);
                Ok(())
            }
        },
    )
}

fn variants(app: &App, args: VariantsArgs) -> Result<()> {
    let options = VariantOptions { top: args.top };
    analyze(
        app,
        "variants",
        &args.common,
        variants_scan,
        |input| Ok(input.variants(&options)?),
        |v| match args.format {
            Format::Json => print_json(serde_json::to_value(&v)?),
            Format::Table => {
                variants_table(&v);
                Ok(())
            }
        },
    )
}

fn channels(app: &App, args: ChannelsArgs) -> Result<()> {
    if args.performance {
        return crate::diagnostics::channel_performance(
            app,
            &args.common,
            &args.performance_args,
            args.format,
        );
    }
    if args.common.by.is_some() || args.common.case.is_some() {
        bail!("channels works on each customer's whole journey by channel; --by and --case do not apply");
    }
    let window = parse_duration(&args.window).context("--window")?;
    let options = ChannelOptions { window };
    analyze(
        app,
        "channels",
        &args.common,
        |_| ScanSpec::default(),
        |input| Ok(input.channel_switching(&options)?),
        |c| match args.format {
            Format::Json => print_json(serde_json::to_value(&c)?),
            Format::Table => {
                channels_table(&c);
                Ok(())
            }
        },
    )
}

pub fn print_json(value: serde_json::Value) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(&value)?);
    Ok(())
}

/// Seconds for people: `0.4s`, `42s`, `5m 12s`, `3h 05m`, `2d 04h`.
pub fn human_seconds(s: f64) -> String {
    if s < 10.0 {
        return format!("{s:.1}s");
    }
    let t = s.round() as u64;
    match t {
        0..=59 => format!("{t}s"),
        60..=3599 => format!("{}m {:02}s", t / 60, t % 60),
        3600..=86_399 => format!("{}h {:02}m", t / 3600, t % 3600 / 60),
        _ => format!("{}d {:02}h", t / 86_400, t % 86_400 / 3600),
    }
}

/// Prints rows under a header, each column as wide as its widest cell; columns listed in
/// `right` are right-aligned (numbers).
pub fn print_table(header: &[&str], rows: &[Vec<String>], right: &[usize]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let parts: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| {
                if right.contains(&i) {
                    format!("{c:>w$}", w = widths[i])
                } else {
                    format!("{c:<w$}", w = widths[i])
                }
            })
            .collect();
        println!("  {}", parts.join("  ").trim_end());
    };
    line(header.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
}

fn percent(part: u64, whole: u64) -> String {
    if whole == 0 {
        "0.0%".to_string()
    } else {
        format!("{:.1}%", part as f64 * 100.0 / whole as f64)
    }
}

fn map_table(m: &ProcessMap) {
    let t = &m.totals;
    println!(
        "process map by {} (cases: {}): {} events, {} cases, {} customers, {} steps, {} transitions",
        m.step, m.case, t.events, t.cases, t.customers, t.steps, t.transitions
    );
    let s = &m.simplification;
    if s.hidden_nodes > 0 || s.hidden_edges > 0 {
        println!(
            "simplified to {}% of events and {}% of transitions: {} steps and {} edges hidden",
            s.node_coverage, s.edge_coverage, s.hidden_nodes, s.hidden_edges
        );
    }
    println!("\nsteps");
    let rows: Vec<Vec<String>> = m
        .nodes
        .iter()
        .map(|n| {
            vec![
                n.step.clone(),
                n.events.to_string(),
                percent(n.events, t.events),
                n.customers.to_string(),
                n.starts.to_string(),
                n.ends.to_string(),
            ]
        })
        .collect();
    print_table(
        &["step", "events", "share", "customers", "starts", "ends"],
        &rows,
        &[1, 2, 3, 4, 5],
    );
    println!("\ntransitions");
    let rows: Vec<Vec<String>> = m
        .edges
        .iter()
        .map(|e| {
            vec![
                format!("{} → {}", e.from, e.to),
                e.count.to_string(),
                e.customers.to_string(),
                human_seconds(e.duration.median_s),
                human_seconds(e.duration.mean_s),
                human_seconds(e.duration.p90_s),
            ]
        })
        .collect();
    print_table(
        &["transition", "count", "customers", "median", "mean", "p90"],
        &rows,
        &[1, 2, 3, 4, 5],
    );
}

/// A DOT string literal.
fn dot_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The map as Graphviz DOT: steps as boxes shaded by volume, edges labelled with count and
/// median time and thickened by count, plus start and end markers.
pub fn map_dot(m: &ProcessMap) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let max_events = m.nodes.iter().map(|n| n.events).max().unwrap_or(1).max(1);
    let max_count = m.edges.iter().map(|e| e.count).max().unwrap_or(1).max(1);
    let id: std::collections::HashMap<&str, usize> = m
        .nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (n.step.as_str(), i))
        .collect();
    out.push_str("digraph process_map {\n");
    out.push_str("  rankdir=TB;\n");
    out.push_str(
        "  node [shape=box, style=\"rounded,filled\", fontname=\"Helvetica\", fontsize=11];\n",
    );
    out.push_str("  edge [fontname=\"Helvetica\", fontsize=9, color=\"#555555\"];\n");
    out.push_str(
        "  start [shape=circle, label=\"\", width=0.25, style=filled, fillcolor=\"#4caf50\"];\n",
    );
    out.push_str(
        "  end [shape=doublecircle, label=\"\", width=0.2, style=filled, fillcolor=\"#e53935\"];\n",
    );
    for (i, n) in m.nodes.iter().enumerate() {
        // Lighter to darker blue with volume; text turns white on the darkest boxes.
        let level = n.events as f64 / max_events as f64;
        let shade = (235.0 - 150.0 * level) as u8;
        let font = if level > 0.6 { "white" } else { "black" };
        let _ = writeln!(
            out,
            "  n{i} [label={}, fillcolor=\"#{:02x}{:02x}ff\", fontcolor={font}];",
            dot_quote(&format!("{}\n{}", n.step, n.events)),
            shade,
            shade.saturating_add(10),
        );
    }
    for (i, n) in m.nodes.iter().enumerate() {
        if n.starts > 0 {
            let _ = writeln!(
                out,
                "  start -> n{i} [label=\"{}\", style=dashed];",
                n.starts
            );
        }
        if n.ends > 0 {
            let _ = writeln!(out, "  n{i} -> end [label=\"{}\", style=dashed];", n.ends);
        }
    }
    for e in &m.edges {
        let (Some(a), Some(b)) = (id.get(e.from.as_str()), id.get(e.to.as_str())) else {
            continue;
        };
        let width = 1.0 + 4.0 * e.count as f64 / max_count as f64;
        let _ = writeln!(
            out,
            "  n{a} -> n{b} [label={}, penwidth={width:.2}];",
            dot_quote(&format!(
                "{} ({})",
                e.count,
                human_seconds(e.duration.median_s)
            )),
        );
    }
    out.push_str("}\n");
    out
}

/// Runs Graphviz `dot -Tsvg` on `dot`.
fn render_svg(dot: &str) -> Result<String> {
    let mut child = match Command::new("dot")
        .arg("-Tsvg")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(child) => child,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
            "--format svg needs Graphviz's `dot` program, which is not on PATH; install Graphviz \
             (e.g. `apt-get install graphviz` or `brew install graphviz`) or use --format dot \
             and render it elsewhere"
        ),
        Err(e) => return Err(e).context("cannot run Graphviz `dot`"),
    };
    child
        .stdin
        .take()
        .context("no stdin for Graphviz `dot`")?
        .write_all(dot.as_bytes())
        .context("cannot write to Graphviz `dot`")?;
    let out = child
        .wait_with_output()
        .context("Graphviz `dot` did not finish")?;
    if !out.status.success() {
        bail!(
            "Graphviz `dot` failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    String::from_utf8(out.stdout).context("Graphviz `dot` printed invalid UTF-8")
}

fn variants_table(v: &Variants) {
    println!(
        "variants by {} (cases: {}): {} cases in {} variants",
        v.step, v.case, v.total_cases, v.total_variants
    );
    let rows: Vec<Vec<String>> = v
        .variants
        .iter()
        .enumerate()
        .map(|(i, x)| {
            vec![
                (i + 1).to_string(),
                x.count.to_string(),
                format!("{:.1}%", x.share * 100.0),
                human_seconds(x.median_duration_s),
                if x.with_outcome == 0 {
                    "-".to_string()
                } else {
                    format!("{:.1}%", x.success_share * 100.0)
                },
                x.steps.join(" > "),
            ]
        })
        .collect();
    print_table(
        &["#", "cases", "share", "median", "success", "steps"],
        &rows,
        &[0, 1, 2, 3, 4],
    );
}

fn channels_table(c: &ChannelSwitching) {
    let t = &c.totals;
    println!(
        "channel switching within {}: {} switches by {} of {} customers",
        c.window, t.switches, t.switching_customers, t.customers
    );
    println!("\nchannels");
    let rows: Vec<Vec<String>> = c
        .channels
        .iter()
        .map(|u| {
            vec![
                u.channel.clone(),
                u.events.to_string(),
                percent(u.events, t.events),
                u.customers.to_string(),
            ]
        })
        .collect();
    print_table(
        &["channel", "events", "share", "customers"],
        &rows,
        &[1, 2, 3],
    );
    println!("\nswitches");
    let rows: Vec<Vec<String>> = c
        .switches
        .iter()
        .map(|s| {
            vec![
                format!("{} → {}", s.from, s.to),
                s.switches.to_string(),
                s.customers.to_string(),
                human_seconds(s.median_gap_s),
            ]
        })
        .collect();
    print_table(
        &["switch", "count", "customers", "median gap"],
        &rows,
        &[1, 2, 3],
    );
}

#[derive(Args)]
pub struct PathsArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// The step paths start from (with --backward: lead to), in the --by dimension.
    #[arg(long, value_name = "STEP")]
    anchor: String,
    /// Paths leading to the anchor instead of from it.
    #[arg(long)]
    backward: bool,
    /// Start a path at every occurrence of the anchor, not only each case's first.
    #[arg(long)]
    every: bool,
    /// Positions after (or before) the anchor.
    #[arg(long, default_value_t = 5, value_name = "N")]
    steps: usize,
    /// Steps shown per position; the rest are grouped as "other".
    #[arg(long, default_value_t = 5, value_name = "K")]
    top: usize,
    #[arg(long, value_enum, default_value = "table")]
    format: Format,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ModeArg {
    /// Each step is the very next event.
    Strict,
    /// Steps in order, other events allowed between.
    Ordered,
    /// All steps in any order.
    AnyOrder,
}

#[derive(Args)]
pub struct FunnelArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// A step, in order (repeat per step): a step value such as cart, or an event filter
    /// such as "channel = 'web' and activity = 'cart'" (value:TEXT forces a value).
    #[arg(long = "step", value_name = "STEP", required = true)]
    steps: Vec<String>,
    #[arg(long, value_enum, default_value = "ordered")]
    mode: ModeArg,
    /// An exclusion step (repeatable): such an event between two steps of an attempt
    /// disqualifies the attempt.
    #[arg(long = "exclude", value_name = "STEP")]
    exclusions: Vec<String>,
    /// Conversion window from the first step's event, e.g. 7d (default: the whole case).
    #[arg(long, value_name = "DURATION")]
    window: Option<String>,
    /// Split results by property:NAME (its value at step 1) or trait:NAME (current value).
    #[arg(long, value_name = "property:NAME|trait:NAME")]
    breakdown: Option<String>,
    /// List the customers who dropped at step K (reached step K-1 at most), by id.
    #[arg(long, value_name = "K")]
    dropped_at: Option<usize>,
    /// With --dropped-at: how many customers to skip.
    #[arg(long, default_value_t = 0, requires = "dropped_at")]
    offset: usize,
    /// With --dropped-at: how many customers to list.
    #[arg(long, default_value_t = 100, requires = "dropped_at")]
    limit: usize,
    #[arg(long, value_enum, default_value = "table")]
    format: Format,
}

fn paths(app: &App, args: PathsArgs) -> Result<()> {
    let options = PathOptions {
        anchor: args.anchor.clone(),
        direction: if args.backward {
            PathDirection::Backward
        } else {
            PathDirection::Forward
        },
        occurrence: if args.every {
            AnchorOccurrence::Every
        } else {
            AnchorOccurrence::First
        },
        steps: args.steps,
        top: args.top,
    };
    analyze(
        app,
        "paths",
        &args.common,
        |_| ScanSpec::default(),
        |input| Ok(input.paths(&options)?),
        |p| match args.format {
            Format::Json => print_json(serde_json::to_value(&p)?),
            Format::Table => {
                paths_table(&p);
                Ok(())
            }
        },
    )
}

/// Funnel steps from the command line; a broken filter shows where it broke.
fn funnel_steps(texts: &[String], option: &str) -> Result<Vec<FunnelStep>> {
    texts
        .iter()
        .map(|t| FunnelStep::parse(t).map_err(|e| anyhow::anyhow!("{option}: {}", e.render())))
        .collect()
}

fn funnel(app: &App, args: FunnelArgs) -> Result<()> {
    let options = FunnelOptions {
        steps: funnel_steps(&args.steps, "--step")?,
        mode: match args.mode {
            ModeArg::Strict => FunnelMode::Strict,
            ModeArg::Ordered => FunnelMode::Ordered,
            ModeArg::AnyOrder => FunnelMode::AnyOrder,
        },
        exclusions: funnel_steps(&args.exclusions, "--exclude")?,
        window: args
            .window
            .as_deref()
            .map(parse_duration)
            .transpose()
            .context("--window")?,
        breakdown: args
            .breakdown
            .as_deref()
            .map(str::parse::<Breakdown>)
            .transpose()?,
        dropped: args.dropped_at.map(|step| DroppedPage {
            step,
            offset: args.offset,
            limit: args.limit,
        }),
    };
    analyze(
        app,
        "funnel",
        &args.common,
        |query| funnel_scan(query, &options),
        |input| Ok(input.funnel(&options)?),
        |f| match args.format {
            Format::Json => print_json(serde_json::to_value(&f)?),
            Format::Table => {
                funnel_table(&f);
                Ok(())
            }
        },
    )
}

fn paths_table(p: &Paths) {
    let direction = match p.direction {
        PathDirection::Forward => "from",
        PathDirection::Backward => "to",
    };
    let occurrence = match p.occurrence {
        AnchorOccurrence::First => "first occurrence",
        AnchorOccurrence::Every => "every occurrence",
    };
    println!(
        "paths {direction} '{}' ({occurrence}) by {} (cases: {}): {} paths from {} customers",
        p.anchor, p.step, p.case, p.paths, p.customers
    );
    if p.paths == 0 {
        println!("no case has the step '{}' in the selection", p.anchor);
        return;
    }
    let mut rows = Vec::new();
    for pos in &p.positions {
        if pos.ended > 0 {
            rows.push(vec![
                pos.position.to_string(),
                "(ended)".to_string(),
                pos.ended.to_string(),
                percent(pos.ended, p.paths),
                String::new(),
                String::new(),
            ]);
        }
        for n in &pos.nodes {
            rows.push(vec![
                pos.position.to_string(),
                n.step
                    .clone()
                    .unwrap_or_else(|| format!("(other: {} steps)", n.grouped_steps)),
                n.count.to_string(),
                percent(n.count, p.paths),
                n.customers.to_string(),
                n.ended.to_string(),
            ]);
        }
    }
    print_table(
        &["pos", "step", "paths", "share", "customers", "ended after"],
        &rows,
        &[0, 2, 3, 4, 5],
    );
    println!("\nlinks");
    let name = |s: &Option<String>| s.clone().unwrap_or_else(|| "(other)".to_string());
    let rows: Vec<Vec<String>> = p
        .links
        .iter()
        .map(|l| {
            vec![
                format!("{} → {}", l.from_position, l.to_position),
                format!("{} → {}", name(&l.from), name(&l.to)),
                l.count.to_string(),
            ]
        })
        .collect();
    print_table(&["positions", "link", "paths"], &rows, &[0, 2]);
}

fn rate(r: Option<f64>) -> String {
    r.map_or_else(|| "-".to_string(), |x| format!("{:.1}%", x * 100.0))
}

fn funnel_table(f: &Funnel) {
    let window = f.window_s.map_or_else(
        || "no window".to_string(),
        |w| format!("window {}", format_duration((w * 1e6).round() as i64)),
    );
    println!(
        "funnel ({}, {window}) by {} (cases: {}): {} cases, {} customers",
        f.mode, f.step, f.case, f.cases, f.customers
    );
    if !f.exclusions.is_empty() {
        println!("excluding: {}", f.exclusions.join(", "));
    }
    let step_rows = |steps: &[FunnelStepResult]| -> Vec<Vec<String>> {
        steps
            .iter()
            .map(|s| {
                vec![
                    s.index.to_string(),
                    s.label.clone(),
                    s.cases.to_string(),
                    s.customers.to_string(),
                    rate(s.conversion_from_previous),
                    rate(s.conversion_from_first),
                    s.dropped_cases.to_string(),
                ]
            })
            .collect()
    };
    print_table(
        &[
            "#",
            "step",
            "cases",
            "customers",
            "from previous",
            "from first",
            "dropped",
        ],
        &step_rows(&f.steps),
        &[0, 2, 3, 4, 5, 6],
    );
    let t = &f.time_to_convert;
    let secs = |x: Option<f64>| x.map_or_else(|| "-".to_string(), human_seconds);
    println!(
        "\ntime to convert ({} converted): median {}, p90 {}, mean {}",
        t.converted,
        secs(t.median_s),
        secs(t.p90_s),
        secs(t.mean_s)
    );
    if t.converted > 0 {
        let rows: Vec<Vec<String>> = t
            .histogram
            .iter()
            .map(|b| {
                vec![
                    b.label.clone(),
                    b.cases.to_string(),
                    percent(b.cases, t.converted),
                ]
            })
            .collect();
        print_table(&["time", "cases", "share"], &rows, &[1, 2]);
    }
    if let Some(b) = &f.breakdown {
        println!("\nbreakdown by {}", b.by);
        let mut header: Vec<String> = vec!["value".to_string()];
        header.extend(f.steps.iter().map(|s| format!("{}. {}", s.index, s.label)));
        header.push("conversion".to_string());
        let rows: Vec<Vec<String>> = b
            .groups
            .iter()
            .map(|g| {
                let mut row = vec![g.value.clone().unwrap_or_else(|| "(none)".to_string())];
                row.extend(g.steps.iter().map(|s| s.cases.to_string()));
                row.push(rate(g.steps.last().and_then(|s| s.conversion_from_first)));
                row
            })
            .collect();
        let header: Vec<&str> = header.iter().map(String::as_str).collect();
        let right: Vec<usize> = (1..header.len()).collect();
        print_table(&header, &rows, &right);
    }
    if let Some(d) = &f.dropped {
        let shown = d.customers.len();
        println!(
            "\ndropped at step {}: {} customers{}",
            d.step,
            d.total,
            if shown == 0 {
                String::new()
            } else {
                format!(", showing {} to {}", d.offset + 1, d.offset + shown)
            }
        );
        for c in &d.customers {
            println!("  {c}");
        }
    }
}
