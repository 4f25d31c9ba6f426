//! Designed-journey conformance, personas and comparisons: `conformance`, `personas`,
//! `compare`. Conformance and personas go through [`analyze`] like every analysis, so the
//! common options (and `--persona`) apply; compare computes two sides through the app.

use crate::analysis::{analyze, human_seconds, print_json, print_table, CommonArgs, Format};
use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use omnitrail_app::analysis::engine::compare::{format_p, CompareOptions, Comparison};
use omnitrail_app::analysis::engine::conformance::{
    conformance_scan, Conformance, ConformanceOptions,
};
use omnitrail_app::analysis::engine::personas::{personas_scan, PersonaOptions, Personas};
use omnitrail_app::analysis::engine::MapOptions;
use omnitrail_app::analysis::QueryOptions;
use omnitrail_app::compare::{parse_compare_funnel, CompareRequest, CompareSide};
use omnitrail_app::conformance::DesignChoice;
use omnitrail_app::App;
use omnitrail_model::{ProjectId, Timestamp};
use std::path::PathBuf;

#[derive(Subcommand)]
pub enum DesignCommand {
    /// Conformance to a designed journey: fitness, deviations per step and their impact.
    Conformance(ConformanceArgs),
    /// Personas: customers clustered by behaviour, each named by what sets it apart.
    Personas(PersonasArgs),
    /// Two periods, segments or personas side by side, with significance.
    Compare(CompareArgs),
}

#[derive(Args)]
pub struct ConformanceArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// A design file (YAML or JSON).
    #[arg(long, value_name = "FILE", conflicts_with = "name")]
    design: Option<PathBuf>,
    /// A design in the data dir's journeys/ folder, by its name.
    #[arg(long, value_name = "NAME")]
    name: Option<String>,
    /// Example customers listed per deviation class.
    #[arg(long, default_value_t = 5, value_name = "N")]
    examples: usize,
    #[arg(long, value_enum, default_value = "table")]
    format: Format,
}

#[derive(Args)]
pub struct PersonasArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// The number of personas (default: chosen by silhouette over --k-min..=--k-max).
    #[arg(long)]
    k: Option<usize>,
    #[arg(long, default_value_t = 2)]
    k_min: usize,
    #[arg(long, default_value_t = 8)]
    k_max: usize,
    /// Seed of the sampling and k-means++ seeding: the same seed gives the same personas.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// k-means runs on at most this many customers (a deterministic sample).
    #[arg(long, default_value_t = 50_000, value_name = "N")]
    sample: usize,
    #[arg(long, value_enum, default_value = "table")]
    format: Format,
}

#[derive(Args)]
pub struct CompareArgs {
    /// Options for both sides; the --a-*/--b-* options override them per side.
    #[command(flatten)]
    common: CommonArgs,
    #[arg(long, value_parser = parse_timestamp, value_name = "TIME")]
    a_from: Option<Timestamp>,
    #[arg(long, value_parser = parse_timestamp, value_name = "TIME")]
    a_to: Option<Timestamp>,
    #[arg(long, value_parser = parse_timestamp, value_name = "TIME")]
    b_from: Option<Timestamp>,
    #[arg(long, value_parser = parse_timestamp, value_name = "TIME")]
    b_to: Option<Timestamp>,
    #[arg(long, value_name = "EXPR")]
    a_segment: Option<String>,
    #[arg(long, value_name = "EXPR")]
    b_segment: Option<String>,
    #[arg(long, value_name = "NAME")]
    a_persona: Option<String>,
    #[arg(long, value_name = "NAME")]
    b_persona: Option<String>,
    /// Names of the sides in the output.
    #[arg(long, default_value = "A")]
    a_label: String,
    #[arg(long, default_value = "B")]
    b_label: String,
    /// Also compare this funnel's step conversions, e.g. "cart_added > checkout_started > purchase".
    #[arg(long, value_name = "STEPS")]
    funnel: Option<String>,
    /// Leave friction out.
    #[arg(long)]
    no_friction: bool,
    /// Significance level.
    #[arg(long, default_value_t = 0.05)]
    alpha: f64,
    /// Differences shown per section in the table (JSON has all).
    #[arg(long, default_value_t = 15)]
    top: usize,
    #[arg(long, value_enum, default_value = "table")]
    format: Format,
}

fn parse_timestamp(text: &str) -> Result<Timestamp, String> {
    Timestamp::parse(text).map_err(|e| e.to_string())
}

pub fn run(app: &App, command: DesignCommand) -> Result<()> {
    match command {
        DesignCommand::Conformance(args) => conformance(app, args),
        DesignCommand::Personas(args) => personas(app, args),
        DesignCommand::Compare(args) => compare(app, args),
    }
}

fn query_options(common: &CommonArgs) -> QueryOptions {
    QueryOptions {
        by: common.by.clone(),
        case: common.case.clone(),
        from: common.from,
        to: common.to,
        filter: common.filter.clone(),
        segment: common.segment.clone(),
        persona: common.persona.clone(),
    }
}

fn share(x: f64) -> String {
    format!("{:.1}%", x * 100.0)
}

fn conformance(app: &App, args: ConformanceArgs) -> Result<()> {
    if args.common.by.is_some() {
        bail!("conformance matches designed steps on activities; --by does not apply");
    }
    let choice = match (&args.design, &args.name) {
        (Some(file), _) => DesignChoice::File(file.clone()),
        (None, Some(name)) => DesignChoice::Name(name.clone()),
        (None, None) => DesignChoice::Only,
    };
    let design = app.design(&choice)?;
    let options = ConformanceOptions {
        design,
        examples: args.examples,
    };
    analyze(
        app,
        "conformance",
        &args.common,
        conformance_scan,
        |input| Ok(input.conformance(&options)?),
        |c| match args.format {
            Format::Json => print_json(serde_json::to_value(&c)?),
            Format::Table => {
                conformance_table(&c);
                Ok(())
            }
        },
    )
}

fn opt_seconds(s: Option<f64>) -> String {
    s.map_or_else(|| "-".to_string(), human_seconds)
}

fn opt_num(x: Option<f64>, digits: usize) -> String {
    x.map_or_else(|| "-".to_string(), |x| format!("{x:.digits$}"))
}

fn conformance_table(c: &Conformance) {
    let t = &c.totals;
    println!(
        "conformance to '{}' (goal {}, cases: {}): {} cases in scope, {} customers",
        c.design, c.goal, c.case, t.cases, t.customers
    );
    println!(
        "conforming {} ({}), deviating {}, goal reached {}",
        t.conforming,
        share(t.conformance_rate),
        t.deviating,
        share(t.goal_reached_rate)
    );
    let f = &c.fitness;
    println!(
        "fitness: mean {}, min {}, p25 {}, median {}, p75 {}",
        opt_num(f.mean, 3),
        opt_num(f.min, 3),
        opt_num(f.p25, 3),
        opt_num(f.median, 3),
        opt_num(f.p75, 3)
    );
    println!("\ndeviations");
    let rows: Vec<Vec<String>> = c
        .deviations
        .iter()
        .map(|d| {
            vec![
                d.class.as_str().to_string(),
                d.cases.to_string(),
                share(d.share),
                d.examples
                    .iter()
                    .map(|c| c.to_string())
                    .collect::<Vec<_>>()
                    .join(" "),
            ]
        })
        .collect();
    print_table(&["class", "cases", "share", "examples"], &rows, &[1, 2]);
    println!("\nsteps");
    let rows: Vec<Vec<String>> = c
        .steps
        .iter()
        .map(|s| {
            let mut row = vec![
                format!("{}{}", s.step, if s.optional { " (optional)" } else { "" }),
                share(s.reached_share),
            ];
            row.extend(s.deviations.iter().map(|d| share(d.share)));
            row
        })
        .collect();
    print_table(
        &[
            "step",
            "reached",
            "missing",
            "out of order",
            "repeated",
            "channel",
            "late",
        ],
        &rows,
        &[1, 2, 3, 4, 5, 6],
    );
    println!("\nimpact");
    let rows: Vec<Vec<String>> = [
        ("conforming", &c.impact.conforming),
        ("deviating", &c.impact.deviating),
    ]
    .iter()
    .map(|(name, g)| {
        vec![
            name.to_string(),
            g.cases.to_string(),
            g.goal_reached_rate.map_or_else(|| "-".to_string(), share),
            opt_num(g.mean_sentiment, 3),
            g.with_sentiment.to_string(),
            opt_seconds(g.median_duration_s),
        ]
    })
    .collect();
    print_table(
        &[
            "group",
            "cases",
            "goal reached",
            "sentiment",
            "with sentiment",
            "median duration",
        ],
        &rows,
        &[1, 2, 3, 4, 5],
    );
}

fn personas(app: &App, args: PersonasArgs) -> Result<()> {
    if args.common.by.is_some() || args.common.case.is_some() {
        bail!("personas cluster whole customers; --by and --case do not apply");
    }
    let options = PersonaOptions {
        k: args.k,
        k_min: args.k_min,
        k_max: args.k_max,
        seed: args.seed,
        sample: args.sample,
        ..PersonaOptions::default()
    };
    analyze(
        app,
        "personas",
        &args.common,
        personas_scan,
        |input| Ok(input.personas(&options)?),
        |p| match args.format {
            Format::Json => print_json(serde_json::to_value(&p)?),
            Format::Table => {
                personas_table(&p);
                Ok(())
            }
        },
    )
}

fn personas_table(p: &Personas) {
    println!(
        "{} personas of {} customers (k by {}, seed {}, k-means on {} customers)",
        p.k, p.customers, p.k_choice, p.seed, p.sampled
    );
    if !p.candidates.is_empty() {
        let scores: Vec<String> = p
            .candidates
            .iter()
            .map(|c| format!("k={} {:.3}", c.k, c.silhouette))
            .collect();
        println!("silhouette: {}", scores.join(", "));
    }
    let rows: Vec<Vec<String>> = p
        .personas
        .iter()
        .map(|x| {
            vec![
                format!("p{}", x.index),
                x.key.clone(),
                x.customers.to_string(),
                share(x.share),
                x.name.clone(),
            ]
        })
        .collect();
    println!();
    print_table(&["#", "key", "customers", "share", "name"], &rows, &[2, 3]);
    for x in &p.personas {
        println!("\np{} {} — {}", x.index, x.key, x.name);
        let rows: Vec<Vec<String>> = x
            .profile
            .iter()
            .map(|f| {
                vec![
                    f.feature.clone(),
                    format!("{:.3}", f.value),
                    format!("{:.3}", f.population),
                    format!("{:+.2}", f.z),
                ]
            })
            .collect();
        print_table(&["feature", "value", "everyone", "z"], &rows, &[1, 2, 3]);
    }
}

fn compare(app: &App, args: CompareArgs) -> Result<()> {
    if args.common.repeat.is_some() {
        bail!("--repeat is not supported by compare");
    }
    let base = query_options(&args.common);
    let a = CompareSide {
        from: args.a_from,
        to: args.a_to,
        segment: args.a_segment.clone(),
        persona: args.a_persona.clone(),
    }
    .apply(&base);
    let b = CompareSide {
        from: args.b_from,
        to: args.b_to,
        segment: args.b_segment.clone(),
        persona: args.b_persona.clone(),
    }
    .apply(&base);
    if a == b {
        bail!(
            "give the sides something to differ in: --a-from/--a-to/--b-from/--b-to, \
             --a-segment/--b-segment or --a-persona/--b-persona"
        );
    }
    let funnel = args
        .funnel
        .as_deref()
        .map(parse_compare_funnel)
        .transpose()
        .context("--funnel")?;
    let request = CompareRequest {
        a,
        b,
        map: MapOptions::default(),
        funnel,
        friction: !args.no_friction,
        options: CompareOptions {
            alpha: args.alpha,
            a_label: args.a_label.clone(),
            b_label: args.b_label.clone(),
        },
    };
    let c = app
        .compare(ProjectId::DEFAULT, &request)
        .context("compare")?;
    match args.format {
        Format::Json => print_json(serde_json::to_value(&c)?),
        Format::Table => {
            compare_table(&c, args.top);
            Ok(())
        }
    }
}

fn p_text(t: Option<omnitrail_app::analysis::engine::compare::ZTest>) -> String {
    t.map_or_else(|| "-".to_string(), |t| format_p(t.p_value))
}

fn compare_table(c: &Comparison, top: usize) {
    println!(
        "{} ({} events, {} customers) vs {} ({} events, {} customers), α = {}",
        c.a.label, c.a.events, c.a.customers, c.b.label, c.b.events, c.b.customers, c.alpha
    );
    let m = &c.map;
    println!(
        "\nprocess map by {}: {} transitions gained, {} lost, {} changed significantly",
        m.step, m.gained, m.lost, m.significant
    );
    let rows: Vec<Vec<String>> = m
        .edges
        .iter()
        .take(top)
        .map(|e| {
            vec![
                format!("{} → {}", e.from, e.to),
                e.count_a.to_string(),
                e.count_b.to_string(),
                share(e.share_a),
                share(e.share_b),
                e.median_change_s
                    .map_or_else(|| "-".to_string(), |d| format!("{:+.0}s", d)),
                p_text(e.test),
                e.verdict.clone(),
            ]
        })
        .collect();
    print_table(
        &[
            "transition",
            &format!("count {}", c.a.label),
            &format!("count {}", c.b.label),
            &format!("customers {}", c.a.label),
            &format!("customers {}", c.b.label),
            "median Δ",
            "p",
            "verdict",
        ],
        &rows,
        &[1, 2, 3, 4, 5],
    );
    if let Some(f) = &c.funnel {
        println!("\nfunnel");
        let rows: Vec<Vec<String>> = f
            .iter()
            .map(|d| {
                vec![
                    format!("{}. {}", d.index, d.label),
                    d.cases_a.to_string(),
                    d.cases_b.to_string(),
                    d.conversion_a.map_or_else(|| "-".to_string(), share),
                    d.conversion_b.map_or_else(|| "-".to_string(), share),
                    p_text(d.test),
                    d.verdict.clone(),
                ]
            })
            .collect();
        print_table(
            &[
                "step", "cases A", "cases B", "conv A", "conv B", "p", "verdict",
            ],
            &rows,
            &[1, 2, 3, 4],
        );
    }
    if let Some(f) = &c.friction {
        println!("\nfriction");
        let rows: Vec<Vec<String>> = f
            .iter()
            .take(top)
            .map(|d| {
                vec![
                    d.step.clone(),
                    opt_num(d.score_a, 1),
                    opt_num(d.score_b, 1),
                    d.failure_rate_a.map_or_else(|| "-".to_string(), share),
                    d.failure_rate_b.map_or_else(|| "-".to_string(), share),
                    p_text(d.test),
                    d.verdict.clone(),
                ]
            })
            .collect();
        print_table(
            &[
                "step",
                "score A",
                "score B",
                "failures A",
                "failures B",
                "p",
                "verdict",
            ],
            &rows,
            &[1, 2, 3, 4],
        );
    }
}
