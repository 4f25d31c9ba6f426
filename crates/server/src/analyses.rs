//! The analyses of the query API: one route, `/api/v1/analyses/{name}`, and a registry
//! ([`ANALYSES`]) that says, per analysis, its parameters (for validation and for the OpenAPI
//! document) and how to run it through the app.
//!
//! Parameters are the CLI's options with the same names (`--node-coverage` is
//! `node_coverage`), as query parameters of a GET or as a JSON object POSTed to the same
//! path; a repeatable option (`step`) is a repeated query parameter or a JSON array.
//!
//! Adding an analysis is one entry in [`ANALYSES`]: its name, a summary, its own parameters,
//! and a `run` function that reads them from [`Params`] and calls the app.

use crate::error::ApiError;
use omnitrail_app::analysis::engine::channel_performance::PreferenceBreakdown;
use omnitrail_app::analysis::engine::compare::CompareOptions;
use omnitrail_app::analysis::engine::emotion::EmotionOptions;
use omnitrail_app::analysis::engine::funnel::{
    Breakdown, DroppedPage, FunnelMode, FunnelOptions, FunnelStep,
};
use omnitrail_app::analysis::engine::handoffs::HandoffOptions;
use omnitrail_app::analysis::engine::journey_map::JourneyMapOptions;
use omnitrail_app::analysis::engine::lifecycle::{LifecycleOptions, Period};
use omnitrail_app::analysis::engine::paths::{AnchorOccurrence, PathDirection, PathOptions};
use omnitrail_app::analysis::engine::personas::PersonaOptions;
use omnitrail_app::analysis::engine::step_customers::StepCustomersOptions;
use omnitrail_app::analysis::engine::{parse_duration, ChannelOptions, MapOptions, VariantOptions};
use omnitrail_app::analysis::QueryOptions;
use omnitrail_app::compare::{parse_compare_funnel, CompareRequest, CompareSide};
use omnitrail_app::conformance::DesignChoice;
use omnitrail_app::diagnostics::channel_performance_options;
use omnitrail_app::App;
use omnitrail_model::{ProjectId, Timestamp};
use serde_json::Value;
use std::collections::BTreeSet;

/// The type of a parameter, for the OpenAPI document.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParamType {
    String,
    Integer,
    Number,
    Boolean,
    /// Repeatable: `?step=a&step=b`, or a JSON array.
    StringList,
}

#[derive(Clone, Copy, Debug)]
pub struct Param {
    pub name: &'static str,
    pub kind: ParamType,
    pub required: bool,
    pub description: &'static str,
}

const fn param(name: &'static str, kind: ParamType, description: &'static str) -> Param {
    Param {
        name,
        kind,
        required: false,
        description,
    }
}

const fn required(name: &'static str, kind: ParamType, description: &'static str) -> Param {
    Param {
        name,
        kind,
        required: true,
        description,
    }
}

/// One analysis of the query API.
pub struct Analysis {
    pub name: &'static str,
    pub summary: &'static str,
    /// Its own parameters; [`COMMON`] come on top unless `no_step_or_case`.
    pub params: &'static [Param],
    /// Works on whole customer journeys by channel: `by` and `case` do not apply.
    pub no_step_or_case: bool,
    /// Where its JSON is described, in docs/api-json.md.
    pub doc: &'static str,
    pub run: fn(&App, ProjectId, &QueryOptions, &mut Params) -> Result<Value, ApiError>,
}

/// The parameters every analysis takes.
pub const COMMON: &[Param] = &[
    param(
        "from",
        ParamType::String,
        "Only events at or after this time (RFC 3339, a date, or epoch seconds/ms).",
    ),
    param("to", ParamType::String, "Only events before this time."),
    param(
        "where",
        ParamType::String,
        "Event filter, e.g. `channel = 'phone' and os in ('iOS', 'iPadOS')` (docs/expressions.md).",
    ),
    param(
        "segment",
        ParamType::String,
        "Customer segment, e.g. `trait.plan = 'premium' and did('payment_failed')`.",
    ),
    param(
        "persona",
        ParamType::String,
        "Only the customers of this persona (its key, p<index> or name; see the personas analysis).",
    ),
    param(
        "case",
        ParamType::String,
        "How journeys split into cases: customer, gap:DURATION (e.g. gap:30m) or property:NAME.",
    ),
    param(
        "by",
        ParamType::String,
        "What a step is: activity, channel, touchpoint, stage or property:NAME.",
    ),
];

pub const ANALYSES: &[Analysis] = &[
    Analysis {
        name: "map",
        summary: "Process map: which step directly follows which, how often and how fast.",
        params: &[
            param("node_coverage", ParamType::Number, "Keep the most frequent steps covering this percent of events (default 100)."),
            param("edge_coverage", ParamType::Number, "Keep the most frequent transitions covering this percent among kept steps (default 100)."),
        ],
        no_step_or_case: false,
        doc: "docs/api-json.md#omnitrail-map",
        run: |app, project, query, p| {
            let options = MapOptions {
                node_coverage: p.parse("node_coverage")?.unwrap_or(100.0),
                edge_coverage: p.parse("edge_coverage")?.unwrap_or(100.0),
            };
            to_json(app.process_map(project, query, &options)?)
        },
    },
    Analysis {
        name: "variants",
        summary: "The most frequent whole journeys with share, duration and outcome.",
        params: &[param("top", ParamType::Integer, "How many variants to list (default 20).")],
        no_step_or_case: false,
        doc: "docs/api-json.md#omnitrail-variants",
        run: |app, project, query, p| {
            let options = VariantOptions {
                top: p.parse("top")?.unwrap_or(20),
            };
            to_json(app.variants(project, query, &options)?)
        },
    },
    Analysis {
        name: "channels",
        summary: "Channel switching: who jumps from which channel to which, within a window.",
        params: &[param("window", ParamType::String, "Longest gap between two events on different channels that counts as a switch (default 24h).")],
        no_step_or_case: true,
        doc: "docs/api-json.md#omnitrail-channels",
        run: |app, project, query, p| {
            let window = parse_duration(p.one("window")?.as_deref().unwrap_or("24h"))?;
            to_json(app.channel_switching(project, query, &ChannelOptions { window })?)
        },
    },
    Analysis {
        name: "paths",
        summary: "Paths: what customers do after (or before) an anchor step, top steps per position.",
        params: &[
            required("anchor", ParamType::String, "The step paths start from (with backward: lead to), in the `by` dimension."),
            param("backward", ParamType::Boolean, "Paths leading to the anchor instead of from it."),
            param("every", ParamType::Boolean, "Start a path at every occurrence of the anchor, not only each case's first."),
            param("steps", ParamType::Integer, "Positions after (or before) the anchor (default 5)."),
            param("top", ParamType::Integer, "Steps shown per position; the rest are grouped as other (default 5)."),
        ],
        no_step_or_case: false,
        doc: "docs/api-json.md#omnitrail-paths",
        run: |app, project, query, p| {
            let options = PathOptions {
                anchor: p.required("anchor")?,
                direction: if p.flag("backward")? {
                    PathDirection::Backward
                } else {
                    PathDirection::Forward
                },
                occurrence: if p.flag("every")? {
                    AnchorOccurrence::Every
                } else {
                    AnchorOccurrence::First
                },
                steps: p.parse("steps")?.unwrap_or(5),
                top: p.parse("top")?.unwrap_or(5),
            };
            to_json(app.paths(project, query, &options)?)
        },
    },
    Analysis {
        name: "funnel",
        summary: "Funnel: how many cases get through ordered steps, how fast, and who drops where.",
        params: &[
            required("step", ParamType::StringList, "The steps in order: a step value such as `cart`, or an event filter such as `channel = 'web' and activity = 'cart'` (`value:TEXT` forces a value)."),
            param("mode", ParamType::String, "strict, ordered (default) or any-order."),
            param("exclude", ParamType::StringList, "Exclusion steps: such an event between two steps disqualifies the attempt."),
            param("window", ParamType::String, "Conversion window from the first step, e.g. 7d (default: the whole case)."),
            param("breakdown", ParamType::String, "property:NAME (its value at step 1) or trait:NAME."),
            param("dropped_at", ParamType::Integer, "List the customers who dropped at step K."),
            param("offset", ParamType::Integer, "With dropped_at: customers to skip (default 0)."),
            param("limit", ParamType::Integer, "With dropped_at: customers to list (default 100)."),
        ],
        no_step_or_case: false,
        doc: "docs/api-json.md#omnitrail-funnel",
        run: |app, project, query, p| {
            let steps = funnel_steps(&p.list("step"), "step")?;
            if steps.is_empty() {
                return Err(ApiError::invalid_query("funnel needs at least one step"));
            }
            let mode = match p.one("mode")?.as_deref() {
                None | Some("ordered") => FunnelMode::Ordered,
                Some("strict") => FunnelMode::Strict,
                Some("any-order") | Some("any_order") => FunnelMode::AnyOrder,
                Some(other) => {
                    return Err(ApiError::invalid_query(format!(
                        "mode '{other}' is not one of strict, ordered, any-order"
                    )))
                }
            };
            let dropped_at: Option<usize> = p.parse("dropped_at")?;
            let offset: Option<usize> = p.parse("offset")?;
            let limit: Option<usize> = p.parse("limit")?;
            if dropped_at.is_none() && (offset.is_some() || limit.is_some()) {
                return Err(ApiError::invalid_query("offset and limit need dropped_at"));
            }
            let options = FunnelOptions {
                steps,
                mode,
                exclusions: funnel_steps(&p.list("exclude"), "exclude")?,
                window: p.one("window")?.as_deref().map(parse_duration).transpose()?,
                breakdown: p
                    .one("breakdown")?
                    .as_deref()
                    .map(str::parse::<Breakdown>)
                    .transpose()?,
                dropped: dropped_at.map(|step| DroppedPage {
                    step,
                    offset: offset.unwrap_or(0),
                    limit: limit.unwrap_or(100),
                }),
            };
            to_json(app.funnel(project, query, &options)?)
        },
    },
    Analysis {
        name: "journey-map",
        summary: "Journey map grid: stages by channels with volumes, the emotion curve, pain points and opportunities per stage.",
        params: &[param("top", ParamType::Integer, "Pain points and opportunities listed per stage (default 3).")],
        no_step_or_case: false,
        doc: "docs/api-json.md#omnitrail-journey-map",
        run: |app, project, query, p| {
            let options = JourneyMapOptions {
                friction: app.friction_options(project)?,
                top: p.parse("top")?.unwrap_or(3),
            };
            to_json(app.journey_map(project, query, &options)?)
        },
    },
    Analysis {
        name: "emotion",
        summary: "Emotion curve: sentiment along the steps of the journey.",
        params: &[param("positions", ParamType::Integer, "Positions reported (default 20).")],
        no_step_or_case: false,
        doc: "docs/api-json.md#omnitrail-emotion",
        run: |app, project, query, p| {
            let options = EmotionOptions {
                positions: p.parse("positions")?.unwrap_or(20),
            };
            to_json(app.emotion_curve(project, query, &options)?)
        },
    },
    Analysis {
        name: "handoffs",
        summary: "Handoffs: department-to-department transfers and how long they take.",
        params: &[param("window", ParamType::String, "Longest time between the two events of a handoff (default 24h).")],
        no_step_or_case: false,
        doc: "docs/api-json.md#omnitrail-handoffs",
        run: |app, project, query, p| {
            let window = parse_duration(p.one("window")?.as_deref().unwrap_or("24h"))?;
            to_json(app.handoffs(project, query, &HandoffOptions { window })?)
        },
    },
    Analysis {
        name: "friction",
        summary: "Friction points: touchpoints ranked by a transparent score with evidence and root causes.",
        params: &[
            param("top", ParamType::Integer, "How many friction points to list (default 20)."),
            param("explain", ParamType::Integer, "Root causes for this many of the top points (default 5)."),
            param("weight", ParamType::StringList, "Override a signal weight, SIGNAL=WEIGHT (docs/diagnostics.md)."),
            param("persona_causes", ParamType::Boolean, "Add the customer's persona as a root-cause dimension."),
        ],
        no_step_or_case: false,
        doc: "docs/api-json.md#omnitrail-friction",
        run: |app, project, query, p| {
            let mut options = app.friction_options(project)?;
            if let Some(top) = p.parse("top")? {
                options.top = top;
            }
            if let Some(explain) = p.parse("explain")? {
                options.explain = explain;
            }
            for w in p.list("weight") {
                options.weights.set_text(&w)?;
            }
            let extra = if p.flag("persona_causes")? {
                vec![app.persona_labels(project)?]
            } else {
                Vec::new()
            };
            to_json(app.friction(project, query, &options, &extra)?)
        },
    },
    Analysis {
        name: "channel-performance",
        summary: "Channel performance and preference: contacts, waits, handle times, resolution, repeat contact, bot containment, sentiment, cost to serve.",
        params: &[
            param("by_trait", ParamType::String, "Break channel preference down by this trait."),
            param("by_persona", ParamType::Boolean, "Break channel preference down by persona."),
            param("containment_window", ParamType::String, "A bot session is contained if no assisted contact follows within this (default 1h)."),
        ],
        no_step_or_case: false,
        doc: "docs/api-json.md#omnitrail-channels---performance",
        run: |app, project, query, p| {
            let mut options = channel_performance_options(app.config())?;
            if let Some(t) = p.one("by_trait")? {
                options.breakdown = Some(PreferenceBreakdown::Trait(t));
            } else if p.flag("by_persona")? {
                options.breakdown = Some(PreferenceBreakdown::Labels(app.persona_labels(project)?));
            }
            if let Some(w) = p.one("containment_window")? {
                options.containment_window = parse_duration(&w)?;
            }
            to_json(app.channel_performance(project, query, &options)?)
        },
    },
    Analysis {
        name: "overview",
        summary: "Overview: customers, events, goal conversion, mean sentiment, repeat contact, bot containment, channel mix, the top friction points and the trend.",
        params: &[
            param("period", ParamType::String, "Trend by week or month (default week)."),
            param("top", ParamType::Integer, "Friction points listed (default 5)."),
        ],
        no_step_or_case: true,
        doc: "docs/api-json.md#omnitrail-overview",
        run: |app, project, query, p| {
            let period = match p.one("period")? {
                Some(text) => text.parse::<Period>()?,
                None => Period::Week,
            };
            let top = p.parse("top")?.unwrap_or(5);
            to_json(app.overview(project, query, period, top)?)
        },
    },
    Analysis {
        name: "step-customers",
        summary: "The customers behind a process-map node (a step) or edge (a step directly followed by another).",
        params: &[
            required("step", ParamType::String, "The step, in the `by` dimension."),
            param("next", ParamType::String, "The step directly after it: the customers of the transition step → next."),
            param("offset", ParamType::Integer, "Customers to skip (default 0)."),
            param("limit", ParamType::Integer, "Customers to list (default 100, at most 1000)."),
        ],
        no_step_or_case: false,
        doc: "docs/api-json.md#omnitrail-step-customers",
        run: |app, project, query, p| {
            let limit: usize = p.parse("limit")?.unwrap_or(100);
            if limit > 1000 {
                return Err(ApiError::invalid_query("limit must be at most 1000"));
            }
            let options = StepCustomersOptions {
                step: p.required("step")?,
                next: p.one("next")?,
                offset: p.parse("offset")?.unwrap_or(0),
                limit,
            };
            to_json(app.step_customers(project, query, &options)?)
        },
    },
    Analysis {
        name: "lifecycle",
        summary: "Lifecycle: active, dormant, returning and churn-risk customers per period, and their transitions.",
        params: &[
            param("period", ParamType::String, "week or month (default month)."),
            param("dormant_after", ParamType::String, "No event for this long is dormancy (default 60d)."),
            param("risk_factor", ParamType::Number, "Churn risk: quiet for more than this many times the customer's mean gap (default 2)."),
        ],
        no_step_or_case: false,
        doc: "docs/api-json.md#omnitrail-lifecycle",
        run: |app, project, query, p| {
            let mut options = LifecycleOptions::default();
            if let Some(period) = p.one("period")? {
                options.period = period.parse::<Period>()?;
            }
            if let Some(d) = p.one("dormant_after")? {
                options.dormant_after = parse_duration(&d)?;
            }
            if let Some(r) = p.parse("risk_factor")? {
                options.risk_factor = r;
            }
            to_json(app.lifecycle(project, query, &options)?)
        },
    },
    Analysis {
        name: "conformance",
        summary: "Conformance of actual journeys to a designed journey of the data dir: fitness, deviations and their impact.",
        params: &[
            param("name", ParamType::String, "The designed journey (its name in the data dir's journeys/ folder); optional when there is only one."),
            param("design", ParamType::String, "A designed journey given inline, as YAML or JSON text in the format of docs/designed-journeys.md, instead of `name`."),
        ],
        no_step_or_case: false,
        doc: "docs/api-json.md#omnitrail-conformance",
        run: |app, project, query, p| {
            let choice = match (p.one("name")?, p.one("design")?) {
                (Some(_), Some(_)) => {
                    return Err(ApiError::invalid_query("give name or design, not both"))
                }
                (Some(name), None) => DesignChoice::Name(name),
                (None, Some(text)) => DesignChoice::Inline(text),
                (None, None) => DesignChoice::Only,
            };
            let design = app.design(&choice)?;
            to_json(app.conformance(project, query, &design)?)
        },
    },
    Analysis {
        name: "personas",
        summary: "Personas discovered by clustering behaviour, each named by what sets it apart.",
        params: &[
            param("k", ParamType::Integer, "The number of personas; by default chosen by silhouette over 2..=8."),
            param("seed", ParamType::Integer, "Seed of the clustering (default 42)."),
        ],
        no_step_or_case: true,
        doc: "docs/api-json.md#omnitrail-personas",
        run: |app, project, query, p| {
            let mut options = PersonaOptions::default();
            if let Some(k) = p.parse("k")? {
                options.k = Some(k);
            }
            if let Some(seed) = p.parse("seed")? {
                options.seed = seed;
            }
            let personas = app.personas(project, query, &options)?;
            to_json(&*personas)
        },
    },
    Analysis {
        name: "compare",
        summary: "Compare two periods, segments or personas: process map, funnel and friction differences with significance and a verdict each.",
        params: &[
            param("a_from", ParamType::String, "Side A starts at this time."),
            param("a_to", ParamType::String, "Side A ends before this time."),
            param("b_from", ParamType::String, "Side B starts at this time."),
            param("b_to", ParamType::String, "Side B ends before this time."),
            param("a_segment", ParamType::String, "Side A's customer segment."),
            param("b_segment", ParamType::String, "Side B's customer segment."),
            param("a_persona", ParamType::String, "Side A's persona."),
            param("b_persona", ParamType::String, "Side B's persona."),
            param("funnel", ParamType::String, "Compare this funnel too: steps separated by `>`, e.g. `cart_added > purchase`."),
            param("no_friction", ParamType::Boolean, "Leave friction out of the comparison."),
            param("alpha", ParamType::Number, "Significance level (default 0.05)."),
        ],
        no_step_or_case: false,
        doc: "docs/api-json.md#omnitrail-compare",
        run: |app, project, query, p| {
            let side = |from: &str, to: &str, segment: &str, persona: &str| {
                Ok::<_, ApiError>(
                    CompareSide {
                        from: p.time(from)?,
                        to: p.time(to)?,
                        segment: p.one(segment)?,
                        persona: p.one(persona)?,
                    }
                    .apply(query),
                )
            };
            let a = side("a_from", "a_to", "a_segment", "a_persona")?;
            let b = side("b_from", "b_to", "b_segment", "b_persona")?;
            let funnel = p
                .one("funnel")?
                .map(|text| parse_compare_funnel(&text))
                .transpose()?;
            let mut options = CompareOptions::default();
            if let Some(alpha) = p.parse("alpha")? {
                options.alpha = alpha;
            }
            let request = CompareRequest {
                a,
                b,
                map: MapOptions::default(),
                funnel,
                friction: !p.flag("no_friction")?,
                options,
            };
            to_json(app.compare(project, &request)?)
        },
    },
];

pub fn find(name: &str) -> Option<&'static Analysis> {
    ANALYSES.iter().find(|a| a.name == name)
}

fn to_json<T: serde::Serialize>(value: T) -> Result<Value, ApiError> {
    serde_json::to_value(value).map_err(|e| ApiError::internal(&e))
}

fn funnel_steps(texts: &[String], name: &str) -> Result<Vec<FunnelStep>, ApiError> {
    texts
        .iter()
        .map(|t| {
            FunnelStep::parse(t)
                .map_err(|e| ApiError::invalid_query(format!("{name}: {}", e.render())))
        })
        .collect()
}

/// An analysis's parameters as received: name → values, in arrival order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Params {
    pairs: Vec<(String, String)>,
}

impl Params {
    pub fn from_pairs(pairs: Vec<(String, String)>) -> Params {
        Params { pairs }
    }

    /// A JSON object's members: strings, numbers and booleans as text, arrays as repeats.
    pub fn from_json(body: &Value) -> Result<Params, ApiError> {
        let Value::Object(map) = body else {
            return Err(ApiError::bad_request(
                "invalid_payload",
                "expected a JSON object of parameters",
            ));
        };
        let mut pairs = Vec::new();
        for (name, value) in map {
            let mut push = |v: &Value| -> Result<(), ApiError> {
                match v {
                    Value::Null => {}
                    Value::String(s) => pairs.push((name.clone(), s.clone())),
                    Value::Number(n) => pairs.push((name.clone(), n.to_string())),
                    Value::Bool(b) => pairs.push((name.clone(), b.to_string())),
                    _ => {
                        return Err(ApiError::invalid_query(format!(
                        "parameter '{name}' must be a string, number, boolean or an array of them"
                    )))
                    }
                }
                Ok(())
            };
            match value {
                Value::Array(items) => {
                    for item in items {
                        push(item)?;
                    }
                }
                other => push(other)?,
            }
        }
        Ok(Params { pairs })
    }

    /// The parameters whose name is not in `known`.
    pub fn unknown(&self, known: &[&str]) -> Vec<(String, String)> {
        self.pairs
            .iter()
            .filter(|(n, _)| !known.contains(&n.as_str()))
            .cloned()
            .collect()
    }

    /// Every value of a repeatable parameter.
    pub fn list(&self, name: &str) -> Vec<String> {
        self.pairs
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// The value of a single parameter; an error when it is given twice.
    pub fn one(&self, name: &str) -> Result<Option<String>, ApiError> {
        let mut values = self.pairs.iter().filter(|(n, _)| n == name);
        let first = values.next().map(|(_, v)| v.clone());
        if values.next().is_some() {
            return Err(ApiError::invalid_query(format!(
                "parameter '{name}' is given more than once"
            )));
        }
        Ok(first)
    }

    pub fn required(&self, name: &str) -> Result<String, ApiError> {
        self.one(name)?
            .ok_or_else(|| ApiError::invalid_query(format!("parameter '{name}' is required")))
    }

    pub fn parse<T: std::str::FromStr>(&self, name: &str) -> Result<Option<T>, ApiError>
    where
        T::Err: std::fmt::Display,
    {
        self.one(name)?
            .map(|v| {
                v.trim().parse::<T>().map_err(|e| {
                    ApiError::invalid_query(format!("parameter '{name}' = '{v}': {e}"))
                })
            })
            .transpose()
    }

    /// A boolean: `true`/`false`, `1`/`0`, or present without a value.
    pub fn flag(&self, name: &str) -> Result<bool, ApiError> {
        match self.one(name)?.as_deref() {
            None => Ok(false),
            Some("" | "true" | "1") => Ok(true),
            Some("false" | "0") => Ok(false),
            Some(other) => Err(ApiError::invalid_query(format!(
                "parameter '{name}' = '{other}': expected true or false"
            ))),
        }
    }

    /// A time parameter (RFC 3339, a date, or epoch seconds/ms).
    pub fn time(&self, name: &str) -> Result<Option<Timestamp>, ApiError> {
        self.one(name)?
            .map(|t| {
                Timestamp::parse(&t).map_err(|e| {
                    ApiError::invalid_query(format!("parameter '{name}' = '{t}': {e}"))
                })
            })
            .transpose()
    }

    /// The query options every analysis shares, after checking that every parameter is one
    /// the analysis knows.
    pub fn query_options(&self, analysis: &Analysis) -> Result<QueryOptions, ApiError> {
        let known: BTreeSet<&str> = COMMON
            .iter()
            .chain(analysis.params)
            .map(|p| p.name)
            .collect();
        for (name, _) in &self.pairs {
            if !known.contains(name.as_str()) {
                return Err(ApiError::invalid_query(format!(
                    "unknown parameter '{name}' for {} (expected one of: {})",
                    analysis.name,
                    known.iter().copied().collect::<Vec<_>>().join(", ")
                )));
            }
        }
        let by = self.one("by")?;
        let case = self.one("case")?;
        if analysis.no_step_or_case && (by.is_some() || case.is_some()) {
            return Err(ApiError::invalid_query(format!(
                "{} works on each customer's whole journey by channel; by and case do not apply",
                analysis.name
            )));
        }
        Ok(QueryOptions {
            by,
            case,
            from: self.time("from")?,
            to: self.time("to")?,
            filter: self.one("where")?,
            segment: self.one("segment")?,
            persona: self.one("persona")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_bodies_become_parameters() {
        let p = Params::from_json(
            &json!({"step": ["a", "b"], "steps": 3, "backward": true, "where": null}),
        )
        .unwrap();
        assert_eq!(p.list("step"), ["a", "b"]);
        assert_eq!(p.parse::<usize>("steps").unwrap(), Some(3));
        assert!(p.flag("backward").unwrap());
        assert_eq!(p.one("where").unwrap(), None);
        assert!(
            p.one("step").is_err(),
            "a repeat is an error for a single value"
        );
        assert!(Params::from_json(&json!({"x": {"y": 1}})).is_err());
        assert!(Params::from_json(&json!([1])).is_err());
    }

    #[test]
    fn unknown_parameters_and_misplaced_options_are_refused() {
        let map = find("map").unwrap();
        let p = Params::from_pairs(vec![("nodes".into(), "50".into())]);
        let err = p.query_options(map).unwrap_err();
        assert!(
            err.message.contains("unknown parameter 'nodes'"),
            "{}",
            err.message
        );
        let channels = find("channels").unwrap();
        let p = Params::from_pairs(vec![("by".into(), "channel".into())]);
        assert!(p.query_options(channels).is_err());
        let p = Params::from_pairs(vec![("from".into(), "yesterday-ish".into())]);
        assert_eq!(p.query_options(map).unwrap_err().code, "invalid_query");
        let names: Vec<&str> = ANALYSES.iter().map(|a| a.name).collect();
        let unique: BTreeSet<&str> = names.iter().copied().collect();
        assert_eq!(names.len(), unique.len());
    }
}
