//! Experience diagnostics through the app: friction with root causes, channel performance,
//! the emotion curve, the journey-map grid, lifecycle and handoffs (`docs/diagnostics.md`).
//!
//! Each analysis takes the common [`QueryOptions`] plus its own options; the friction
//! settings and unit costs come from the data dir's `omnitrail.toml` (`[friction]`,
//! `[costs]`), and the root-cause candidates from what the data holds: the well-known text
//! properties, `[friction] dimensions`, and every trait the project's events carry. As in
//! [`crate::analysis`], loading ([`App::diagnostics_input`]) and computing (the methods on
//! [`AnalysisInput`]) are separate, so the CLI's `--repeat` mode can time the computation.

use crate::analysis::{AnalysisError, AnalysisInput, QueryOptions};
use crate::config::Config;
use crate::App;
use omnitrail_engine::channel_performance::{
    channel_performance, channel_performance_scan, ChannelPerformance, ChannelPerformanceOptions,
};
use omnitrail_engine::emotion::{emotion_curve, emotion_scan, EmotionCurve, EmotionOptions};
use omnitrail_engine::friction::{
    friction, friction_scan, Friction, FrictionOptions, SignalParams,
};
use omnitrail_engine::handoffs::{handoffs, handoffs_scan, HandoffOptions, Handoffs};
use omnitrail_engine::journey_map::{journey_map, journey_map_scan, JourneyMap, JourneyMapOptions};
use omnitrail_engine::lifecycle::{lifecycle, Lifecycle, LifecycleOptions};
use omnitrail_engine::personas::PersonaOptions;
use omnitrail_engine::root_cause::{CustomerLabels, RootCauseOptions};
use omnitrail_engine::{parse_duration, EngineError, StepDimension};
use omnitrail_model::journeys::ScanSpec;
use omnitrail_model::value::WellKnownType;
use omnitrail_model::{ProjectId, WELL_KNOWN_PROPERTIES};

/// What the demo's configuration gets on top of its stages: renewal as the overview's goal
/// (the demo is a subscription business) and plausible costs per contact, in currency units.
pub const DEMO_DIAGNOSTICS_TOML: &str = "
[overview]
goals = [\"renewal\"]

[costs]
phone = 6.5
chat = 3.0
store = 9.0
chatbot = 0.4
ivr = 0.8
social = 4.0
email = 0.05
sms = 0.02
mail = 0.6
web = 0.05
mobile_app = 0.03
push = 0.01
";

/// Well-known text properties that are never root-cause candidates: the outcome is what
/// the failure signal is made of.
const NOT_CAUSES: [&str; 1] = ["outcome"];

fn duration(
    option: &'static str,
    text: &Option<String>,
    into: &mut i64,
) -> Result<(), EngineError> {
    if let Some(t) = text {
        *into = parse_duration(t).map_err(|e| EngineError::InvalidOption {
            option,
            reason: format!("[friction] {option} in omnitrail.toml: {e}"),
        })?;
    }
    Ok(())
}

/// The signal settings of `[friction]`, defaults for what it leaves out.
pub fn signal_params(config: &Config) -> Result<SignalParams, EngineError> {
    let f = &config.friction;
    let mut p = SignalParams::default();
    duration("repeat_window", &f.repeat_window, &mut p.repeat_window)?;
    duration("loop_window", &f.loop_window, &mut p.loop_window)?;
    duration("jump_window", &f.jump_window, &mut p.jump_window)?;
    duration("abandon_window", &f.abandon_window, &mut p.abandon_window)?;
    if let Some(x) = f.long_wait_factor {
        p.long_wait_factor = x;
    }
    if let Some(x) = f.negative_sentiment {
        p.negative_sentiment = x;
    }
    if let Some(x) = &f.assisted_channels {
        p.assisted_channels = x.clone();
    }
    if let Some(x) = &f.bot_channels {
        p.bot_channels = x.clone();
    }
    if let Some(x) = &f.goal_activities {
        p.goal_activities = x.clone();
    }
    Ok(p)
}

/// Friction options from `[friction]`, with root-cause candidates: the well-known text
/// properties (ids excluded by type), `[friction] dimensions`, and `traits`.
pub fn friction_options(
    config: &Config,
    traits: Vec<String>,
) -> Result<FrictionOptions, EngineError> {
    let mut options = FrictionOptions {
        signals: signal_params(config)?,
        ..FrictionOptions::default()
    };
    for (signal, w) in &config.friction.weights {
        options.weights.set(signal, *w)?;
    }
    let mut properties: Vec<String> = WELL_KNOWN_PROPERTIES
        .iter()
        .filter(|(name, ty)| *ty == WellKnownType::Text && !NOT_CAUSES.contains(name))
        .map(|(name, _)| name.to_string())
        .collect();
    properties.extend(config.friction.dimensions.iter().flatten().cloned());
    options.root_cause = RootCauseOptions {
        properties,
        traits,
        ..RootCauseOptions::default()
    };
    Ok(options)
}

/// Channel-performance options from the configuration: the signal settings of
/// `[friction]`, its `containment_window`, and the unit costs of `[costs]`.
pub fn channel_performance_options(
    config: &Config,
) -> Result<ChannelPerformanceOptions, EngineError> {
    let mut options = ChannelPerformanceOptions {
        signals: signal_params(config)?,
        costs: config.costs.clone(),
        ..ChannelPerformanceOptions::default()
    };
    duration(
        "containment_window",
        &config.friction.containment_window,
        &mut options.containment_window,
    )?;
    Ok(options)
}

/// Journey-map options: friction as configured, without root causes (the grid shows none).
pub fn journey_map_options(config: &Config) -> Result<JourneyMapOptions, EngineError> {
    let mut friction = friction_options(config, Vec::new())?;
    friction.root_cause.properties.clear();
    friction.explain = 0;
    Ok(JourneyMapOptions {
        friction,
        ..JourneyMapOptions::default()
    })
}

impl AnalysisInput {
    /// Friction over the loaded columns (load with [`friction_scan`]).
    pub fn friction(
        &self,
        options: &FrictionOptions,
        extra: &[CustomerLabels],
    ) -> Result<Friction, EngineError> {
        friction(&self.prepare()?, options, extra)
    }

    /// Load with [`channel_performance_scan`].
    pub fn channel_performance(
        &self,
        options: &ChannelPerformanceOptions,
    ) -> Result<ChannelPerformance, EngineError> {
        channel_performance(&self.partitions, &self.stages, &self.query, options)
    }

    /// Load with [`emotion_scan`].
    pub fn emotion_curve(&self, options: &EmotionOptions) -> Result<EmotionCurve, EngineError> {
        emotion_curve(&self.prepare()?, &self.stages, options)
    }

    /// Load with [`journey_map_scan`].
    pub fn journey_map(&self, options: &JourneyMapOptions) -> Result<JourneyMap, EngineError> {
        journey_map(&self.partitions, &self.stages, &self.query, options)
    }

    /// Needs no columns beyond the query's.
    pub fn lifecycle(&self, options: &LifecycleOptions) -> Result<Lifecycle, EngineError> {
        lifecycle(&self.partitions, &self.stages, &self.query, options)
    }

    /// Load with [`handoffs_scan`].
    pub fn handoffs(&self, options: &HandoffOptions) -> Result<Handoffs, EngineError> {
        handoffs(&self.prepare()?, options)
    }
}

impl App {
    /// Friction options for `project`: `[friction]` of the configuration, and every trait
    /// the project's events carry as a root-cause candidate.
    pub fn friction_options(&self, project: ProjectId) -> Result<FrictionOptions, AnalysisError> {
        let traits = self.store().trait_names(project);
        Ok(friction_options(self.config(), traits)?)
    }

    /// Parses the query with the diagnostics' default step dimension (`touchpoint` unless
    /// `--by` says otherwise) and loads the columns `extra` names.
    pub fn diagnostics_input(
        &self,
        project: ProjectId,
        options: &QueryOptions,
        extra: &ScanSpec,
    ) -> Result<AnalysisInput, AnalysisError> {
        let mut query = self.parse_query_in(project, options)?;
        if options.by.is_none() {
            query.step = StepDimension::Touchpoint;
        }
        self.analysis_input(project, query, extra)
    }

    /// Friction points ranked with evidence and root causes; `extra` adds customer-level
    /// root-cause dimensions.
    pub fn friction(
        &self,
        project: ProjectId,
        options: &QueryOptions,
        friction: &FrictionOptions,
        extra: &[CustomerLabels],
    ) -> Result<Friction, AnalysisError> {
        let input = self.diagnostics_input(project, options, &friction_scan(friction))?;
        Ok(input.friction(friction, extra)?)
    }

    /// Each customer's persona key (the project's default personas), as a customer-level
    /// dimension named `persona` for root causes and channel preference.
    pub fn persona_labels(&self, project: ProjectId) -> Result<CustomerLabels, AnalysisError> {
        let all = self.personas(
            project,
            &QueryOptions::default(),
            &PersonaOptions::default(),
        )?;
        let a = &all.assignment;
        Ok(CustomerLabels {
            name: "persona".into(),
            labels: a
                .customers
                .iter()
                .zip(&a.personas)
                .map(|(&c, &p)| (c, all.personas[p as usize].key.clone()))
                .collect(),
        })
    }

    pub fn channel_performance(
        &self,
        project: ProjectId,
        options: &QueryOptions,
        performance: &ChannelPerformanceOptions,
    ) -> Result<ChannelPerformance, AnalysisError> {
        let input =
            self.diagnostics_input(project, options, &channel_performance_scan(performance))?;
        Ok(input.channel_performance(performance)?)
    }

    pub fn emotion_curve(
        &self,
        project: ProjectId,
        options: &QueryOptions,
        emotion: &EmotionOptions,
    ) -> Result<EmotionCurve, AnalysisError> {
        let input = self.diagnostics_input(project, options, &emotion_scan())?;
        Ok(input.emotion_curve(emotion)?)
    }

    pub fn journey_map(
        &self,
        project: ProjectId,
        options: &QueryOptions,
        map: &JourneyMapOptions,
    ) -> Result<JourneyMap, AnalysisError> {
        let input = self.diagnostics_input(project, options, &journey_map_scan())?;
        Ok(input.journey_map(map)?)
    }

    pub fn lifecycle(
        &self,
        project: ProjectId,
        options: &QueryOptions,
        lifecycle: &LifecycleOptions,
    ) -> Result<Lifecycle, AnalysisError> {
        let input = self.diagnostics_input(project, options, &ScanSpec::default())?;
        Ok(input.lifecycle(lifecycle)?)
    }

    pub fn handoffs(
        &self,
        project: ProjectId,
        options: &QueryOptions,
        handoffs: &HandoffOptions,
    ) -> Result<Handoffs, AnalysisError> {
        let input = self.diagnostics_input(project, options, &handoffs_scan())?;
        Ok(input.handoffs(handoffs)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{AppOptions, SynthConfig};
    use std::sync::OnceLock;

    /// One demo of 4 000 customers shared by the tests (generating it is the slow part).
    fn demo() -> &'static App {
        static DEMO: OnceLock<(tempfile::TempDir, App)> = OnceLock::new();
        let (_, app) = DEMO.get_or_init(|| {
            let dir = tempfile::tempdir().unwrap();
            let mut app = App::open(dir.path(), AppOptions::default()).unwrap();
            let cfg = SynthConfig {
                customers: 4000,
                ..SynthConfig::default()
            };
            app.generate_demo(&cfg, &|_, _| {}).unwrap();
            (dir, app)
        });
        app
    }

    fn rank(f: &Friction, step: &str) -> usize {
        f.points
            .iter()
            .find(|p| p.step == step)
            .map_or(usize::MAX, |p| p.rank)
    }

    /// Acceptance: each planted friction pattern (docs/demo-data.md) is in the top 6 by
    /// touchpoint, and the iOS login failures are explained by os = iOS with lift ≥ 3.
    #[test]
    fn demo_friction_ranks_the_planted_patterns() {
        let app = demo();
        let options = app.friction_options(ProjectId::DEFAULT).unwrap();
        let f = app
            .friction(ProjectId::DEFAULT, &QueryOptions::default(), &options, &[])
            .unwrap();
        let top: Vec<&str> = f.points.iter().take(6).map(|p| p.step.as_str()).collect();
        assert_eq!(f.step, "touchpoint");
        // (a) iOS app logins fail.
        assert!(rank(&f, "mobile_app:login_failed") <= 6, "{top:?}");
        // (b) the chatbot fails billing questions.
        assert!(rank(&f, "chatbot:chatbot_question") <= 6, "{top:?}");
        // (c) web payment failures, then social complaints.
        assert!(
            rank(&f, "web:payment_failed").min(rank(&f, "social:complaint")) <= 6,
            "{top:?}"
        );
        // (d) repeat contacts on assisted channels.
        let assisted = [
            "phone:call_ended",
            "chat:chat_ended",
            "store:store_service_visit",
            "phone:callback_completed",
        ];
        assert!(
            assisted.iter().map(|s| rank(&f, s)).min().unwrap() <= 6,
            "{top:?}"
        );
        let call = f
            .points
            .iter()
            .find(|p| p.step == "phone:call_ended")
            .unwrap();
        assert!(
            (0.12..0.24).contains(&call.signals.repeat_contact.rate),
            "{:?}",
            call.signals.repeat_contact
        );

        let login = f
            .points
            .iter()
            .find(|p| p.step == "mobile_app:login_failed")
            .unwrap();
        let ios = login
            .root_causes
            .iter()
            .find(|c| c.dimension == "os" && c.value == "iOS")
            .unwrap_or_else(|| panic!("no os = iOS among {:?}", login.root_causes));
        assert!(ios.lift >= 3.0, "lift {}", ios.lift);
        assert_eq!(login.root_causes[0].value, "iOS");
        // The chatbot's failures are billing questions.
        let bot = f
            .points
            .iter()
            .find(|p| p.step == "chatbot:chatbot_question")
            .unwrap();
        assert_eq!(
            (
                bot.root_causes[0].dimension.as_str(),
                bot.root_causes[0].value.as_str()
            ),
            ("topic", "billing")
        );
        // Ids are data-driven candidates: ticket ids are not even loaded, agents have too
        // many values.
        let agent = f
            .root_cause_dimensions
            .iter()
            .find(|d| d.dimension == "agent")
            .unwrap();
        assert!(!agent.used && agent.values > 50);
        assert!(f
            .root_cause_dimensions
            .iter()
            .all(|d| d.dimension != "ticket_id"));
        assert!(f
            .root_cause_dimensions
            .iter()
            .any(|d| d.dimension == "trait.region" && d.used));
    }

    #[test]
    fn demo_channel_performance_shows_the_bot_and_the_holds() {
        let app = demo();
        let options = channel_performance_options(app.config()).unwrap();
        let c = app
            .channel_performance(ProjectId::DEFAULT, &QueryOptions::default(), &options)
            .unwrap();
        let ch = |name: &str| c.channels.iter().find(|x| x.channel == name).unwrap();
        let phone = ch("phone");
        assert!(phone.assisted);
        // Phone holds: median about 90 s, with the bot transfer queue in the long tail.
        let wait = phone.wait.unwrap();
        assert!((60.0..150.0).contains(&wait.median_s), "{wait:?}");
        assert!(wait.p90_s > 2.0 * wait.median_s, "{wait:?}");
        let repeat = phone.repeat_contact_rate.unwrap();
        assert!((0.12..0.24).contains(&repeat), "{repeat}");
        // The chatbot keeps most questions (FAQ topics) but not the failed billing ones.
        let bot = ch("chatbot").containment.unwrap();
        assert!((0.5..0.9).contains(&bot.rate), "{bot:?}");
        // The demo's unit costs apply.
        assert_eq!(phone.unit_cost, Some(6.5));
        assert!(c.totals.cost > 0.0);
        let by_plan = ChannelPerformanceOptions {
            breakdown: Some(
                omnitrail_engine::channel_performance::PreferenceBreakdown::Trait("plan".into()),
            ),
            ..options
        };
        let c = app
            .channel_performance(ProjectId::DEFAULT, &QueryOptions::default(), &by_plan)
            .unwrap();
        let plans: Vec<&str> = c.preference.iter().map(|g| g.value.as_str()).collect();
        assert_eq!(plans, ["basic", "premium", "standard"]);
    }

    #[test]
    fn demo_lifecycle_finds_the_planted_dormancy() {
        let app = demo();
        let l = app
            .lifecycle(
                ProjectId::DEFAULT,
                &QueryOptions::default(),
                &LifecycleOptions::default(),
            )
            .unwrap();
        // 10% of customers go quiet for 60–120 days, then come back.
        let returning = l.totals.ever_returning as f64 / l.totals.customers as f64;
        assert!((0.07..0.13).contains(&returning), "{returning}");
        assert!(l.totals.ever_dormant > 0);
        assert!(l
            .transitions
            .iter()
            .any(|t| t.from == "dormant" && t.to == "returning"));
        assert_eq!(l.periods.len(), 12);
    }

    #[test]
    fn demo_emotion_map_and_handoffs() {
        let app = demo();
        let q = QueryOptions::default();
        let e = app
            .emotion_curve(ProjectId::DEFAULT, &q, &EmotionOptions::default())
            .unwrap();
        let stage = |name: &str| e.stages.iter().find(|p| p.label == name).unwrap();
        // Support is where moods turn: below the loyalty stage.
        assert!(stage("support").mean.unwrap() < stage("loyalty").mean.unwrap());
        assert_eq!(e.positions.len(), 20);

        let m = app
            .journey_map(
                ProjectId::DEFAULT,
                &q,
                &journey_map_options(app.config()).unwrap(),
            )
            .unwrap();
        assert_eq!(m.rows.len(), 7);
        assert_eq!(m.totals.unmapped_events, 0);
        let usage = m.rows.iter().find(|r| r.stage == "usage").unwrap();
        assert!(usage
            .pain_points
            .iter()
            .any(|p| p.touchpoint == "mobile_app:login_failed"));
        let support = m.rows.iter().find(|r| r.stage == "support").unwrap();
        assert!(support
            .pain_points
            .iter()
            .any(|p| p.touchpoint == "chatbot:chatbot_question"));

        let h = app
            .handoffs(ProjectId::DEFAULT, &q, &HandoffOptions::default())
            .unwrap();
        // Social care replies to complaints, then billing calls back (pattern c).
        assert!(h
            .handoffs
            .iter()
            .any(|x| x.from == "social_care" && x.to == "billing"));
    }

    #[test]
    fn friction_settings_come_from_the_configuration() {
        let c = Config::parse(
            "[friction]\nrepeat_window = \"3d\"\nassisted_channels = [\"phone\"]\ndimensions = [\"campaign\"]\n[friction.weights]\nlong_wait = 2.5\n[costs]\nphone = 7\n",
        )
        .unwrap();
        let o = friction_options(&c, vec!["plan".into()]).unwrap();
        assert_eq!(o.signals.repeat_window, 3 * 86_400_000_000);
        assert_eq!(o.signals.assisted_channels, ["phone"]);
        assert_eq!(o.weights.long_wait, 2.5);
        assert!(o.root_cause.properties.contains(&"campaign".to_string()));
        assert!(o.root_cause.properties.contains(&"os".to_string()));
        assert!(!o.root_cause.properties.contains(&"outcome".to_string()));
        assert!(!o.root_cause.properties.contains(&"ticket_id".to_string()));
        assert_eq!(o.root_cause.traits, ["plan"]);
        assert_eq!(channel_performance_options(&c).unwrap().costs["phone"], 7.0);

        let bad = Config::parse("[friction.weights]\nspeed = 1\n").unwrap();
        let err = friction_options(&bad, Vec::new()).unwrap_err().to_string();
        assert!(err.contains("unknown signal 'speed'"), "{err}");
        let bad = Config::parse("[friction]\nloop_window = \"soon\"\n").unwrap();
        let err = signal_params(&bad).unwrap_err().to_string();
        assert!(err.contains("loop_window"), "{err}");
        let err = Config::parse("[friction]\nspeed = 1\n").unwrap_err();
        assert!(err.starts_with("friction: unknown field `speed`"), "{err}");
        let err = Config::parse("[costs]\nphone = \"cheap\"\n").unwrap_err();
        assert!(err.contains("costs.phone: expected a number"), "{err}");
        // The demo's configuration parses with its costs.
        let demo = Config::parse(&format!(
            "{}{}",
            omnitrail_synth::DEMO_STAGES_TOML,
            DEMO_DIAGNOSTICS_TOML
        ))
        .unwrap();
        assert_eq!(demo.costs["phone"], 6.5);
    }
}
