//! The data dir's configuration file, `omnitrail.toml`: the activity → stage mapping
//! (DESIGN.md §2 "stage"), the identity guardrails, the friction settings and the unit
//! costs per channel (`docs/diagnostics.md`).
//!
//! ```toml
//! [stages]
//! awareness = ["ad_viewed", "email_opened"]
//! purchase = ["checkout_started", "purchase"]
//!
//! [identity]
//! limits = { email = 3, device_id = 20 }
//! weak = ["device_id", "anonymous_id"]
//! blocked_values = ["n/a", "test-user"]
//!
//! [friction]
//! repeat_window = "7d"
//! assisted_channels = ["phone", "chat", "store"]
//! [friction.weights]
//! long_wait = 2.0
//!
//! [costs]
//! phone = 6.5
//! chat = 3.0
//! ```
//!
//! Stages keep the order they are written in; an activity may belong to one stage only.
//! `[identity]` takes the fields of `omnitrail_identity::Guardrails` (defaults for what is
//! left out). Limits and weak kinds may change at any time (the graph is replayed on open);
//! priorities and blocklists decide write-time keys and are fixed once data is stored.

use crate::AppError;
use omnitrail_identity::Guardrails;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

pub const CONFIG_FILE: &str = "omnitrail.toml";

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Config {
    /// Stage names in journey order.
    pub stages: Vec<String>,
    stage_of: HashMap<String, usize>,
    pub identity: Guardrails,
    /// `[friction]`: signal windows, thresholds, channel sets and score weights.
    pub friction: FrictionConfig,
    /// `[costs]`: cost to serve one contact, per channel.
    pub costs: BTreeMap<String, f64>,
    /// `[overview]`: what the overview counts as reaching the goal.
    pub overview: OverviewConfig,
    /// `[memory]`: how much the process keeps between queries.
    pub memory: MemoryConfig,
}

/// The `[memory]` section.
#[derive(Clone, Debug, Default, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemoryConfig {
    /// Resolved journey columns kept between queries, in MiB (default 2048). The column
    /// set a query has just read is kept even when it alone is larger.
    pub columns_mb: Option<u64>,
}

impl MemoryConfig {
    pub const DEFAULT_COLUMNS_MB: u64 = 2048;

    pub fn columns_bytes(&self) -> usize {
        let mb = self.columns_mb.unwrap_or(Self::DEFAULT_COLUMNS_MB);
        usize::try_from(mb.saturating_mul(1 << 20)).unwrap_or(usize::MAX)
    }
}

/// The `[overview]` section.
#[derive(Clone, Debug, Default, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OverviewConfig {
    /// Goal conversion counts customers with one of these activities; without it, any
    /// goal event as friction defines it (outcome success or resolved, or a goal activity).
    pub goals: Option<Vec<String>>,
}

/// The `[friction]` section; what is left out keeps the engine's default. Windows use the
/// duration syntax (`30m`, `7d`); they are checked when an analysis runs.
#[derive(Clone, Debug, Default, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FrictionConfig {
    /// Signal name → weight in the severity (`[friction.weights]`).
    #[serde(default)]
    pub weights: BTreeMap<String, f64>,
    pub repeat_window: Option<String>,
    pub loop_window: Option<String>,
    pub jump_window: Option<String>,
    pub abandon_window: Option<String>,
    pub long_wait_factor: Option<f64>,
    pub negative_sentiment: Option<f64>,
    pub assisted_channels: Option<Vec<String>>,
    pub bot_channels: Option<Vec<String>>,
    pub goal_activities: Option<Vec<String>>,
    /// Extra root-cause candidate properties, beyond the well-known text ones.
    pub dimensions: Option<Vec<String>>,
    /// Bot containment: no human-assisted channel within this after a bot session.
    pub containment_window: Option<String>,
}

/// A section read into its typed form; errors are prefixed with the section's name.
fn section<T: serde::de::DeserializeOwned>(name: &str, value: &toml::Value) -> Result<T, String> {
    value
        .clone()
        .try_into()
        .map_err(|e: toml::de::Error| format!("{name}: {}", e.message()))
}

fn parse_costs(value: &toml::Value) -> Result<BTreeMap<String, f64>, String> {
    let table = value
        .as_table()
        .ok_or("costs: expected a table of channel = cost per contact")?;
    let mut costs = BTreeMap::new();
    for (channel, cost) in table {
        let c = match cost {
            toml::Value::Float(f) => *f,
            toml::Value::Integer(i) => *i as f64,
            _ => return Err(format!("costs.{channel}: expected a number")),
        };
        if !(c.is_finite() && c >= 0.0) {
            return Err(format!("costs.{channel}: must be a number ≥ 0, got {c}"));
        }
        costs.insert(channel.clone(), c);
    }
    Ok(costs)
}

impl Config {
    pub fn load(dir: &Path) -> Result<Config, AppError> {
        let path = dir.join(CONFIG_FILE);
        match std::fs::read_to_string(&path) {
            Ok(text) => Config::parse(&text).map_err(|reason| AppError::Config {
                path: path.display().to_string(),
                reason,
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Config::default()),
            Err(e) => Err(AppError::Io {
                path: path.display().to_string(),
                source: e,
            }),
        }
    }

    pub fn parse(text: &str) -> Result<Config, String> {
        let table: toml::Table = text.parse().map_err(|e: toml::de::Error| e.to_string())?;
        let mut config = Config::default();
        for (key, value) in &table {
            if key == "identity" {
                config.identity = section(key, value)?;
                continue;
            }
            if key == "friction" {
                config.friction = section(key, value)?;
                continue;
            }
            if key == "costs" {
                config.costs = parse_costs(value)?;
                continue;
            }
            if key == "overview" {
                config.overview = section(key, value)?;
                continue;
            }
            if key == "memory" {
                config.memory = section(key, value)?;
                continue;
            }
            if key == "triggers" {
                // Webhook endpoints of journey triggers, read by rules.rs.
                continue;
            }
            if key != "stages" {
                return Err(format!(
                    "unknown section '{key}' (expected [stages], [identity], [friction], [costs], [overview] or [memory])"
                ));
            }
            let stages = value
                .as_table()
                .ok_or("stages: expected a table of stage = [activities]")?;
            for (stage, activities) in stages {
                let list = activities
                    .as_array()
                    .ok_or_else(|| format!("stages.{stage}: expected a list of activities"))?;
                let index = config.stages.len();
                config.stages.push(stage.clone());
                for a in list {
                    let a = a
                        .as_str()
                        .ok_or_else(|| format!("stages.{stage}: activities must be strings"))?;
                    if let Some(prev) = config.stage_of.insert(a.to_string(), index) {
                        return Err(format!(
                            "activity '{a}' is in both stages.{} and stages.{stage}",
                            config.stages[prev]
                        ));
                    }
                }
            }
        }
        Ok(config)
    }

    /// Every mapped activity with its stage, sorted by activity.
    pub fn stage_mapping(&self) -> Vec<(&str, &str)> {
        let mut v: Vec<(&str, &str)> = self
            .stage_of
            .iter()
            .map(|(a, &i)| (a.as_str(), self.stages[i].as_str()))
            .collect();
        v.sort_unstable();
        v
    }

    pub fn stage_of(&self, activity: &str) -> Option<&str> {
        self.stage_of
            .get(activity)
            .map(|&i| self.stages[i].as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stages_keep_their_written_order() {
        let c = Config::parse("[stages]\nsupport = [\"call\"]\nawareness = [\"ad\", \"mail\"]\n")
            .unwrap();
        assert_eq!(c.stages, ["support", "awareness"]);
        assert_eq!(c.stage_of("mail"), Some("awareness"));
        assert_eq!(c.stage_of("other"), None);
    }

    #[test]
    fn overview_goals_are_read_and_unknown_keys_refused() {
        let c = Config::parse("[overview]\ngoals = [\"renewal\"]\n").unwrap();
        assert_eq!(
            c.overview.goals.as_deref(),
            Some(&["renewal".to_string()][..])
        );
        let err = Config::parse("[overview]\ngoal = [\"renewal\"]\n").unwrap_err();
        assert!(err.starts_with("overview: unknown field `goal`"), "{err}");
    }

    #[test]
    fn the_column_budget_is_read_in_mib_and_bad_values_refused() {
        assert_eq!(Config::default().memory.columns_bytes(), 2048 << 20);
        let c = Config::parse("[memory]\ncolumns_mb = 512\n").unwrap();
        assert_eq!(c.memory.columns_bytes(), 512 << 20);
        let err = Config::parse("[memory]\ncolumns_mb = -1\n").unwrap_err();
        assert!(err.starts_with("memory: "), "{err}");
        let err = Config::parse("[memory]\ncolumns = 1\n").unwrap_err();
        assert!(err.starts_with("memory: unknown field `columns`"), "{err}");
    }

    #[test]
    fn an_activity_in_two_stages_is_an_error() {
        let err = Config::parse("[stages]\na = [\"x\"]\nb = [\"x\"]\n").unwrap_err();
        assert!(
            err.contains("'x' is in both stages.a and stages.b"),
            "{err}"
        );
        assert!(Config::parse("[stagez]\n").unwrap_err().contains("stagez"));
    }

    #[test]
    fn identity_guardrails_are_configurable_per_kind() {
        let c = Config::parse(
            "[identity]\nlimits = { email = 2 }\nweak = [\"device_id\"]\nblocked_values = [\"n/a\"]\n",
        )
        .unwrap();
        assert_eq!(c.identity.limit(&omnitrail_model::IdentifierKind::Email), 2);
        assert!(!c
            .identity
            .is_weak(&omnitrail_model::IdentifierKind::AnonymousId));
        let err = Config::parse("[identity]\nlimit = 3\n").unwrap_err();
        assert!(err.starts_with("identity: unknown field `limit`"), "{err}");
    }

    #[test]
    fn the_demo_mapping_parses() {
        let c = Config::parse(omnitrail_synth::DEMO_STAGES_TOML).unwrap();
        assert_eq!(c.stages.first().map(String::as_str), Some("awareness"));
    }
}
