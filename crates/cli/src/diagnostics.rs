//! Experience diagnostics: `friction`, `journey-map`, `emotion`, `lifecycle`, `handoffs`,
//! and `channels --performance` (dispatched from the `channels` handler).
//!
//! Each goes through [`analyze`], so the common options (`--from/--to/--where/--segment/
//! --case/--persona`) and the hidden `--repeat N` work as for every analysis. The steps of
//! friction default to touchpoints (`channel:activity`). Settings that live in the data dir
//! (`[friction]`, `[costs]` of `omnitrail.toml`, the traits the data carries) are read from
//! the app before the analysis loads its columns.

use crate::analysis::{analyze, human_seconds, print_json, print_table, CommonArgs, Format};
use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use omnitrail_app::analysis::engine::channel_performance::{
    channel_performance_scan, ChannelPerformance, PreferenceBreakdown,
};
use omnitrail_app::analysis::engine::emotion::{
    emotion_scan, EmotionCurve, EmotionOptions, EmotionPoint,
};
use omnitrail_app::analysis::engine::friction::{friction_scan, Friction};
use omnitrail_app::analysis::engine::handoffs::{handoffs_scan, HandoffOptions, Handoffs};
use omnitrail_app::analysis::engine::journey_map::{journey_map_scan, JourneyMap};
use omnitrail_app::analysis::engine::lifecycle::{Lifecycle, LifecycleOptions, Period};
use omnitrail_app::analysis::engine::parse_duration;
use omnitrail_app::analysis::engine::step_customers::StepCustomersOptions;
use omnitrail_app::diagnostics::{channel_performance_options, journey_map_options};
use omnitrail_app::App;
use omnitrail_model::journeys::ScanSpec;
use omnitrail_model::ProjectId;

#[derive(Subcommand)]
pub enum DiagnosticsCommand {
    /// Friction points: where customers fail, repeat, wait, jump channel, turn negative or
    /// give up, ranked with evidence and root causes.
    Friction(FrictionArgs),
    /// The journey-map grid: stages × channels with volume, conversion, time, sentiment,
    /// pain points and opportunities.
    JourneyMap(JourneyMapArgs),
    /// The emotion curve: mean sentiment by stage and by step position, and its biggest drop.
    Emotion(EmotionArgs),
    /// Lifecycle: new, active, returning, quiet, churn-risk and dormant customers per period.
    Lifecycle(LifecycleArgs),
    /// Department-to-department handoffs with counts and median time.
    Handoffs(HandoffsArgs),
    /// The overview: customers, events, goal conversion, sentiment, repeat contact, bot
    /// containment, channel mix, the top friction points and the trend.
    Overview(OverviewArgs),
    /// The customers behind a process-map node (`--step`) or edge (`--step` and `--next`).
    StepCustomers(StepCustomersArgs),
}

#[derive(Args)]
pub struct OverviewArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// Trend by week or month.
    #[arg(long, default_value = "week")]
    period: String,
    /// Friction points listed.
    #[arg(long, default_value_t = 5)]
    top: usize,
    #[arg(long, value_enum, default_value = "table")]
    format: Format,
}

#[derive(Args)]
pub struct StepCustomersArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// The step (in the `--by` dimension).
    #[arg(long)]
    step: String,
    /// The step directly after it: the customers of the transition.
    #[arg(long)]
    next: Option<String>,
    #[arg(long, default_value_t = 0)]
    offset: usize,
    #[arg(long, default_value_t = 100)]
    limit: usize,
    #[arg(long, value_enum, default_value = "table")]
    format: Format,
}

#[derive(Args)]
pub struct FrictionArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// How many friction points to list.
    #[arg(long, default_value_t = 10)]
    top: usize,
    /// Root causes for this many of the top points.
    #[arg(long, default_value_t = 5)]
    explain: usize,
    /// Override a signal's weight, as SIGNAL=WEIGHT (e.g. long_wait=2); repeatable.
    #[arg(long = "weight", value_name = "SIGNAL=WEIGHT")]
    weights: Vec<String>,
    /// Also test each customer's persona as a root cause (computes the personas).
    #[arg(long)]
    persona_causes: bool,
    #[arg(long, value_enum, default_value = "table")]
    format: Format,
}

#[derive(Args)]
pub struct JourneyMapArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// Pain points and opportunities per stage.
    #[arg(long, default_value_t = 3)]
    top: usize,
    #[arg(long, value_enum, default_value = "table")]
    format: Format,
}

#[derive(Args)]
pub struct EmotionArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// Step positions along the journey to report.
    #[arg(long, default_value_t = 20)]
    positions: usize,
    #[arg(long, value_enum, default_value = "table")]
    format: Format,
}

#[derive(Args)]
pub struct LifecycleArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// week or month.
    #[arg(long, default_value = "month")]
    period: String,
    /// No event for this long is dormancy.
    #[arg(long, default_value = "60d", value_name = "DURATION")]
    dormant_after: String,
    /// Churn risk: quiet for more than this many times the customer's mean gap.
    #[arg(long, default_value_t = 2.0)]
    risk_factor: f64,
    #[arg(long, value_enum, default_value = "table")]
    format: Format,
}

#[derive(Args)]
pub struct HandoffsArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// Longest time between two department events that counts as a handoff.
    #[arg(long, default_value = "1d", value_name = "DURATION")]
    window: String,
    #[arg(long, value_enum, default_value = "table")]
    format: Format,
}

/// The options `channels --performance` adds.
#[derive(Args, Clone, Debug, Default)]
pub struct PerformanceArgs {
    /// Channel preference per value of this trait (e.g. plan).
    #[arg(long, value_name = "NAME", conflicts_with = "by_persona")]
    pub by_trait: Option<String>,
    /// Channel preference per persona (computes the personas).
    #[arg(long)]
    pub by_persona: bool,
    /// Bot containment: no human channel within this after a bot session; default from
    /// `[friction] containment_window`, else 1h.
    #[arg(long, value_name = "DURATION")]
    pub containment_window: Option<String>,
}

pub fn run(app: &App, command: DiagnosticsCommand) -> Result<()> {
    match command {
        DiagnosticsCommand::Friction(args) => friction(app, args),
        DiagnosticsCommand::JourneyMap(args) => journey_map(app, args),
        DiagnosticsCommand::Emotion(args) => emotion(app, args),
        DiagnosticsCommand::Lifecycle(args) => lifecycle(app, args),
        DiagnosticsCommand::Handoffs(args) => handoffs(app, args),
        DiagnosticsCommand::Overview(args) => overview(app, args),
        DiagnosticsCommand::StepCustomers(args) => step_customers(app, args),
    }
}

fn overview(app: &App, args: OverviewArgs) -> Result<()> {
    let period = args.period.parse::<Period>()?;
    let o = app.overview(
        ProjectId::DEFAULT,
        &args.common.query_options(),
        period,
        args.top,
    )?;
    if args.format == Format::Json {
        return print_json(serde_json::to_value(&o)?);
    }
    let rate = |x: Option<f64>| x.map_or_else(|| "-".to_string(), pct);
    let s = &o.overview;
    println!(
        "{} customers, {} events; goal conversion {}, mean sentiment {}, repeat contact {}, bot containment {}\n",
        s.customers,
        s.events,
        rate(s.goal_conversion),
        s.mean_sentiment.map_or_else(|| "-".to_string(), |m| format!("{m:+.2}")),
        rate(o.repeat_contact_rate),
        rate(o.bot_containment),
    );
    let mix: Vec<Vec<String>> = s
        .channel_mix
        .iter()
        .map(|c| {
            vec![
                c.channel.clone(),
                c.events.to_string(),
                pct(c.event_share),
                c.customers.to_string(),
                pct(c.customer_share),
            ]
        })
        .collect();
    print_table(
        &[
            "channel",
            "events",
            "of events",
            "customers",
            "of customers",
        ],
        &mix,
        &[1, 2, 3, 4],
    );
    println!();
    let friction: Vec<Vec<String>> = o
        .top_friction
        .iter()
        .map(|f| {
            vec![
                f.step.clone(),
                format!("{:.0}", f.score),
                f.affected_customers.to_string(),
                f.signal.unwrap_or("-").to_string(),
            ]
        })
        .collect();
    print_table(
        &["friction point", "score", "affected", "main signal"],
        &friction,
        &[1, 2],
    );
    println!();
    let trend: Vec<Vec<String>> = s
        .trend
        .iter()
        .map(|t| {
            vec![
                t.period.clone(),
                t.events.to_string(),
                t.customers.to_string(),
                t.mean_sentiment
                    .map_or_else(|| "-".to_string(), |m| format!("{m:+.2}")),
            ]
        })
        .collect();
    print_table(
        &[
            s.period.to_string().as_str(),
            "events",
            "customers",
            "sentiment",
        ],
        &trend,
        &[1, 2, 3],
    );
    Ok(())
}

fn step_customers(app: &App, args: StepCustomersArgs) -> Result<()> {
    let options = StepCustomersOptions {
        step: args.step,
        next: args.next,
        offset: args.offset,
        limit: args.limit,
    };
    let found = app.step_customers(ProjectId::DEFAULT, &args.common.query_options(), &options)?;
    if args.format == Format::Json {
        return print_json(serde_json::to_value(&found)?);
    }
    let what = match &found.next {
        Some(next) => format!("{} → {next}", found.step),
        None => found.step.clone(),
    };
    println!(
        "{what}: {} customers ({} cases); showing {} from {}",
        found.total,
        found.cases,
        found.customers.len(),
        found.offset
    );
    let rows: Vec<Vec<String>> = found
        .customers
        .iter()
        .map(|c| vec![c.customer_id.clone(), c.label.clone()])
        .collect();
    print_table(&["customer", "identifier"], &rows, &[]);
    Ok(())
}

/// The common options with touchpoints as the default step.
fn by_touchpoint(common: &CommonArgs) -> CommonArgs {
    let mut c = common.clone();
    if c.by.is_none() {
        c.by = Some("touchpoint".into());
    }
    c
}

fn friction(app: &App, args: FrictionArgs) -> Result<()> {
    let (mut options, extra) = {
        let options = app.friction_options(ProjectId::DEFAULT)?;
        let extra = if args.persona_causes {
            vec![app.persona_labels(ProjectId::DEFAULT)?]
        } else {
            Vec::new()
        };
        (options, extra)
    };
    options.top = args.top;
    options.explain = args.explain;
    for w in &args.weights {
        options.weights.set_text(w).context("--weight")?;
    }
    let scan = friction_scan(&options);
    analyze(
        app,
        "friction",
        &by_touchpoint(&args.common),
        |_| scan,
        |input| Ok(input.friction(&options, &extra)?),
        |f| match args.format {
            Format::Json => print_json(serde_json::to_value(&f)?),
            Format::Table => {
                friction_table(&f);
                Ok(())
            }
        },
    )
}

/// `channels --performance`.
pub fn channel_performance(
    app: &App,
    common: &CommonArgs,
    args: &PerformanceArgs,
    format: Format,
) -> Result<()> {
    let mut options = {
        let mut options = channel_performance_options(app.config())?;
        if args.by_persona {
            options.breakdown = Some(PreferenceBreakdown::Labels(
                app.persona_labels(ProjectId::DEFAULT)?,
            ));
        }
        options
    };
    if let Some(t) = &args.by_trait {
        options.breakdown = Some(PreferenceBreakdown::Trait(t.clone()));
    }
    if let Some(w) = &args.containment_window {
        options.containment_window = parse_duration(w).context("--containment-window")?;
    }
    let scan = channel_performance_scan(&options);
    analyze(
        app,
        "channels-performance",
        common,
        |_| scan,
        |input| Ok(input.channel_performance(&options)?),
        |c| match format {
            Format::Json => print_json(serde_json::to_value(&c)?),
            Format::Table => {
                performance_table(&c);
                Ok(())
            }
        },
    )
}

fn journey_map(app: &App, args: JourneyMapArgs) -> Result<()> {
    let mut options = { journey_map_options(app.config())? };
    options.top = args.top;
    analyze(
        app,
        "journey-map",
        &args.common,
        |_| journey_map_scan(),
        |input| Ok(input.journey_map(&options)?),
        |m| match args.format {
            Format::Json => print_json(serde_json::to_value(&m)?),
            Format::Table => {
                journey_map_table(&m);
                Ok(())
            }
        },
    )
}

fn emotion(app: &App, args: EmotionArgs) -> Result<()> {
    let options = EmotionOptions {
        positions: args.positions,
    };
    analyze(
        app,
        "emotion",
        &args.common,
        |_| emotion_scan(),
        |input| Ok(input.emotion_curve(&options)?),
        |c| match args.format {
            Format::Json => print_json(serde_json::to_value(&c)?),
            Format::Table => {
                emotion_table(&c);
                Ok(())
            }
        },
    )
}

fn lifecycle(app: &App, args: LifecycleArgs) -> Result<()> {
    let options = LifecycleOptions {
        period: args.period.parse::<Period>()?,
        dormant_after: parse_duration(&args.dormant_after).context("--dormant-after")?,
        risk_factor: args.risk_factor,
    };
    analyze(
        app,
        "lifecycle",
        &args.common,
        |_| ScanSpec::default(),
        |input| Ok(input.lifecycle(&options)?),
        |l| match args.format {
            Format::Json => print_json(serde_json::to_value(&l)?),
            Format::Table => {
                lifecycle_table(&l);
                Ok(())
            }
        },
    )
}

fn handoffs(app: &App, args: HandoffsArgs) -> Result<()> {
    let options = HandoffOptions {
        window: parse_duration(&args.window).context("--window")?,
    };
    analyze(
        app,
        "handoffs",
        &args.common,
        |_| handoffs_scan(),
        |input| Ok(input.handoffs(&options)?),
        |h| match args.format {
            Format::Json => print_json(serde_json::to_value(&h)?),
            Format::Table => {
                handoffs_table(&h);
                Ok(())
            }
        },
    )
}

fn pct(x: f64) -> String {
    format!("{:.1}%", x * 100.0)
}

fn opt<T>(v: Option<T>, f: impl Fn(T) -> String) -> String {
    v.map_or_else(|| "-".to_string(), f)
}

fn sentiment(v: Option<f64>) -> String {
    opt(v, |s| format!("{s:+.2}"))
}

fn friction_table(f: &Friction) {
    let t = &f.totals;
    println!(
        "friction by {} (cases: {}): {} events, {} customers, {} friction points, {} customers affected",
        f.step, f.case, t.events, t.customers, t.friction_points, t.affected_customers
    );
    println!("score = severity (weighted signal rates) × affected customers\n");
    let rows: Vec<Vec<String>> = f
        .points
        .iter()
        .map(|p| {
            let s = &p.signals;
            vec![
                p.rank.to_string(),
                p.step.clone(),
                format!("{:.0}", p.score),
                format!("{:.2}", p.severity),
                p.affected_customers.to_string(),
                pct(s.failure.rate),
                pct(s.repeat_contact.rate),
                pct(s.loops.rate),
                pct(s.channel_jump.rate),
                pct(s.abandonment.rate),
                pct(s.long_wait.rate),
                pct(s.negative_sentiment.rate),
            ]
        })
        .collect();
    print_table(
        &[
            "#",
            "step",
            "score",
            "severity",
            "affected",
            "failure",
            "repeat",
            "loop",
            "jump",
            "abandon",
            "long wait",
            "negative",
        ],
        &rows,
        &[0, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11],
    );
    for p in f.points.iter().filter(|p| !p.root_causes.is_empty()) {
        println!("\nroot causes of #{} {}", p.rank, p.step);
        let rows: Vec<Vec<String>> = p
            .root_causes
            .iter()
            .map(|c| {
                vec![
                    format!("{} = {}", c.dimension, c.value),
                    format!("{:.2}×", c.lift),
                    c.support.to_string(),
                    pct(c.affected_share),
                    pct(c.baseline_share),
                ]
            })
            .collect();
        print_table(
            &["value", "lift", "support", "among affected", "baseline"],
            &rows,
            &[1, 2, 3, 4],
        );
        let ids: Vec<String> = p.examples.iter().map(u64::to_string).collect();
        println!("  example customers: {}", ids.join(", "));
    }
}

fn performance_table(c: &ChannelPerformance) {
    let t = &c.totals;
    println!(
        "channel performance (repeat window {}, containment window {}): {} events, {} contacts, {} customers, cost to serve {:.2}",
        c.repeat_window, c.containment_window, t.events, t.contacts, t.customers, t.cost
    );
    let rows: Vec<Vec<String>> = c
        .channels
        .iter()
        .map(|ch| {
            vec![
                ch.channel.clone(),
                ch.customers.to_string(),
                pct(ch.customer_share),
                ch.contacts.to_string(),
                pct(ch.contact_share),
                opt(ch.wait, |w| human_seconds(w.median_s)),
                opt(ch.wait, |w| human_seconds(w.p90_s)),
                opt(ch.handle_time, |w| human_seconds(w.median_s)),
                opt(ch.resolution_rate, pct),
                opt(ch.repeat_contact_rate, pct),
                opt(ch.containment, |x| pct(x.rate)),
                pct(ch.abandonment_rate),
                sentiment(ch.mean_sentiment),
                opt(ch.cost, |x| format!("{x:.2}")),
            ]
        })
        .collect();
    print_table(
        &[
            "channel",
            "customers",
            "share",
            "contacts",
            "share",
            "wait",
            "wait p90",
            "handle",
            "resolved",
            "repeat",
            "contained",
            "abandon",
            "sentiment",
            "cost",
        ],
        &rows,
        &[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13],
    );
    if let Some(by) = &c.breakdown {
        for g in &c.preference {
            println!(
                "\n{by} = {}: {} customers, {} contacts",
                g.value, g.customers, g.contacts
            );
            let rows: Vec<Vec<String>> = g
                .channels
                .iter()
                .map(|x| {
                    vec![
                        x.channel.clone(),
                        x.customers.to_string(),
                        pct(x.customer_share),
                        x.contacts.to_string(),
                        pct(x.contact_share),
                    ]
                })
                .collect();
            print_table(
                &["channel", "customers", "share", "contacts", "share"],
                &rows,
                &[1, 2, 3, 4],
            );
        }
    }
}

fn journey_map_table(m: &JourneyMap) {
    let t = &m.totals;
    println!(
        "journey map (cases: {}): {} events in {} stages, {} customers ({} events of unmapped activities left out)",
        m.case,
        t.events,
        m.stages.len(),
        t.customers,
        t.unmapped_events
    );
    let rows: Vec<Vec<String>> = m
        .rows
        .iter()
        .map(|r| {
            vec![
                r.stage.clone(),
                r.events.to_string(),
                r.customers.to_string(),
                opt(r.conversion, pct),
                opt(r.median_time_in_stage_s, human_seconds),
                sentiment(r.mean_sentiment),
                r.pain_points
                    .iter()
                    .map(|p| p.touchpoint.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                r.opportunities
                    .iter()
                    .map(|p| p.touchpoint.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            ]
        })
        .collect();
    print_table(
        &[
            "stage",
            "events",
            "customers",
            "to next",
            "time in stage",
            "sentiment",
            "pain points",
            "opportunities",
        ],
        &rows,
        &[1, 2, 3, 4, 5],
    );
    println!("\nevents by stage and channel");
    let mut header = vec!["stage"];
    header.extend(m.channels.iter().map(String::as_str));
    let rows: Vec<Vec<String>> = m
        .rows
        .iter()
        .map(|r| {
            std::iter::once(r.stage.clone())
                .chain(r.cells.iter().map(|c| c.events.to_string()))
                .collect()
        })
        .collect();
    let right: Vec<usize> = (1..header.len()).collect();
    print_table(&header, &rows, &right);
}

fn emotion_rows(points: &[EmotionPoint]) -> Vec<Vec<String>> {
    points
        .iter()
        .map(|p| vec![p.label.clone(), p.n.to_string(), sentiment(p.mean)])
        .collect()
}

fn emotion_table(c: &EmotionCurve) {
    let t = &c.totals;
    println!(
        "emotion curve: {} of {} events carry a sentiment, mean {}",
        t.n,
        t.events,
        sentiment(t.mean)
    );
    println!("\nby stage");
    print_table(&["stage", "n", "mean"], &emotion_rows(&c.stages), &[1, 2]);
    if let Some(d) = &c.stage_drop {
        println!("  biggest drop: {} → {} ({:+.2})", d.from, d.to, d.change);
    }
    println!("\nby position");
    print_table(
        &["position", "n", "mean"],
        &emotion_rows(&c.positions),
        &[1, 2],
    );
    if let Some(d) = &c.position_drop {
        println!("  biggest drop: {} → {} ({:+.2})", d.from, d.to, d.change);
    }
}

fn lifecycle_table(l: &Lifecycle) {
    let t = &l.totals;
    println!(
        "lifecycle by {} (dormant after {}, churn risk at {}× the usual gap): {} customers; ever dormant {}, ever returning {}, ever at risk {}",
        l.period, l.dormant_after, l.risk_factor, t.customers, t.ever_dormant, t.ever_returning, t.ever_churn_risk
    );
    let rows: Vec<Vec<String>> = l
        .periods
        .iter()
        .map(|p| {
            vec![
                p.period.clone(),
                p.new.to_string(),
                p.active.to_string(),
                p.returning.to_string(),
                p.quiet.to_string(),
                p.churn_risk.to_string(),
                p.dormant.to_string(),
            ]
        })
        .collect();
    print_table(
        &[
            "period",
            "new",
            "active",
            "returning",
            "quiet",
            "churn risk",
            "dormant",
        ],
        &rows,
        &[1, 2, 3, 4, 5, 6],
    );
    println!("\ntransitions between consecutive periods");
    let rows: Vec<Vec<String>> = l
        .transitions
        .iter()
        .map(|x| vec![format!("{} → {}", x.from, x.to), x.customers.to_string()])
        .collect();
    print_table(&["transition", "customers"], &rows, &[1]);
}

fn handoffs_table(h: &Handoffs) {
    let t = &h.totals;
    println!(
        "handoffs within {} (cases: {}): {} handoffs, {} of {} customers handed off",
        h.window, h.case, t.handoffs, t.customers_handed_off, t.customers
    );
    println!("\ndepartments");
    let rows: Vec<Vec<String>> = h
        .departments
        .iter()
        .map(|d| {
            vec![
                d.department.clone(),
                d.events.to_string(),
                d.customers.to_string(),
                d.handoffs_out.to_string(),
                d.handoffs_in.to_string(),
            ]
        })
        .collect();
    print_table(
        &["department", "events", "customers", "out", "in"],
        &rows,
        &[1, 2, 3, 4],
    );
    println!("\nhandoffs");
    let rows: Vec<Vec<String>> = h
        .handoffs
        .iter()
        .map(|x| {
            vec![
                format!("{} → {}", x.from, x.to),
                x.handoffs.to_string(),
                x.customers.to_string(),
                human_seconds(x.median_s),
            ]
        })
        .collect();
    print_table(
        &["handoff", "count", "customers", "median time"],
        &rows,
        &[1, 2, 3],
    );
}
