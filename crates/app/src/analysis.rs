//! Analyses through the app: parse the user's query options, load the columns the query needs
//! through [`App::journeys`], build the configured stages, and run the engine.
//!
//! Loading and computing are separate steps ([`App::analysis_input`], then the methods of
//! [`AnalysisInput`]) so that a caller can compute several analyses, or the same one
//! repeatedly, over data already in memory.

use crate::{App, AppError};
use omnitrail_engine::expr::{EventFilter, Segment};
use omnitrail_engine::funnel::{funnel, funnel_scan, Funnel, FunnelOptions};
use omnitrail_engine::paths::{paths, PathOptions, Paths};
use omnitrail_engine::{
    channel_switching, process_map, variants, variants_scan, CaseSplit, ChannelOptions,
    ChannelSwitching, EngineError, MapOptions, Prepared, ProcessMap, Query, Stages, StepDimension,
    VariantOptions, Variants,
};
use omnitrail_model::journeys::{Journeys, ScanSpec};
use omnitrail_model::{ProjectId, Timestamp};
use std::sync::Arc;

pub use omnitrail_engine as engine;

#[derive(Debug, thiserror::Error)]
pub enum AnalysisError {
    #[error(transparent)]
    App(#[from] AppError),
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// A `--where` or `--segment` expression that does not parse; `rendered` shows the
    /// expression with a caret under the error.
    #[error("{option}: {rendered}")]
    Expression {
        option: &'static str,
        rendered: String,
    },
}

/// The query options every analysis shares, as the user wrote them. `None` means the
/// default: steps by activity, whole customer journeys, all time, no filter, everyone.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct QueryOptions {
    /// `activity|channel|touchpoint|stage|property:NAME`.
    pub by: Option<String>,
    /// `customer|gap:30m|property:NAME`.
    pub case: Option<String>,
    /// Inclusive.
    pub from: Option<Timestamp>,
    /// Exclusive.
    pub to: Option<Timestamp>,
    /// Event filter expression.
    pub filter: Option<String>,
    /// Segment expression.
    pub segment: Option<String>,
    /// Only the customers of this persona (key, `p<index>` or name; see `App::personas`).
    pub persona: Option<String>,
}

/// Loaded columns plus the parsed query: everything an analysis needs, already in memory.
pub struct AnalysisInput {
    pub partitions: Vec<Arc<Journeys>>,
    pub stages: Stages,
    pub query: Query,
}

impl AnalysisInput {
    pub fn process_map(&self, options: &MapOptions) -> Result<ProcessMap, EngineError> {
        process_map(&self.prepare()?, options)
    }

    pub fn variants(&self, options: &VariantOptions) -> Result<Variants, EngineError> {
        variants(&self.prepare()?, options)
    }

    pub fn channel_switching(
        &self,
        options: &ChannelOptions,
    ) -> Result<ChannelSwitching, EngineError> {
        channel_switching(&self.partitions, &self.stages, &self.query, options)
    }

    pub fn paths(&self, options: &PathOptions) -> Result<Paths, EngineError> {
        paths(&self.prepare()?, options)
    }

    /// Load with [`funnel_scan`] so filter steps and the breakdown have their columns.
    pub fn funnel(&self, options: &FunnelOptions) -> Result<Funnel, EngineError> {
        funnel(&self.prepare()?, &self.stages, options)
    }

    /// Binds the query to the loaded partitions (per-partition code maps, compiled filter
    /// and segment), for analyses that run on [`Prepared`] directly.
    pub fn prepare(&self) -> Result<Prepared<'_>, EngineError> {
        Prepared::new(&self.partitions, &self.stages, &self.query)
    }

    pub fn events(&self) -> usize {
        self.partitions.iter().map(|j| j.events()).sum()
    }

    /// Memory held by the loaded columns.
    pub fn heap_bytes(&self) -> usize {
        self.partitions.iter().map(|j| j.heap_bytes()).sum()
    }
}

impl App {
    /// Parses query options into an engine query, with the app's clock as `now`; a persona
    /// is looked up in the default project.
    pub fn parse_query(&self, options: &QueryOptions) -> Result<Query, AnalysisError> {
        self.parse_query_in(ProjectId::DEFAULT, options)
    }

    /// Like [`App::parse_query`], with the persona looked up in `project`'s personas.
    pub fn parse_query_in(
        &self,
        project: ProjectId,
        options: &QueryOptions,
    ) -> Result<Query, AnalysisError> {
        let mut query = Query::new(self.now().as_micros());
        if let Some(by) = &options.by {
            query.step = by.parse::<StepDimension>()?;
        }
        if let Some(case) = &options.case {
            query.case = case.parse::<CaseSplit>()?;
        }
        query.from = options.from.map(Timestamp::as_micros);
        query.to = options.to.map(Timestamp::as_micros);
        if let Some(text) = &options.filter {
            query.filter =
                Some(
                    EventFilter::parse(text).map_err(|e| AnalysisError::Expression {
                        option: "--where",
                        rendered: e.render(),
                    })?,
                );
        }
        if let Some(text) = &options.segment {
            query.segment = Some(Segment::parse(text).map_err(|e| AnalysisError::Expression {
                option: "--segment",
                rendered: e.render(),
            })?);
        }
        if let Some(name) = &options.persona {
            query.customers = Some(self.persona_members(project, name)?);
        }
        Ok(query)
    }

    /// Loads the columns `query` needs plus `extra` (e.g. the outcome property for variants)
    /// and the stages configured for the loaded activities.
    pub fn analysis_input(
        &self,
        project: ProjectId,
        query: Query,
        extra: &ScanSpec,
    ) -> Result<AnalysisInput, AnalysisError> {
        let mut spec = Prepared::required_scan(&query);
        spec.properties.extend(extra.properties.iter().cloned());
        spec.traits.extend(extra.traits.iter().cloned());
        spec.properties.sort();
        spec.properties.dedup();
        spec.traits.sort();
        spec.traits.dedup();
        let partitions = self.journeys(project, &spec)?;
        let stages = self.stages()?;
        Ok(AnalysisInput {
            partitions,
            stages,
            query,
        })
    }

    /// The configured stages, with every activity of `partitions` that the configuration
    /// maps to a stage assigned to it.
    pub fn stages(&self) -> Result<Stages, AnalysisError> {
        let config = self.config();
        let mut stages = Stages::new(config.stages.clone());
        for (activity, stage) in config.stage_mapping() {
            stages.assign(activity, stage)?;
        }
        Ok(stages)
    }

    pub fn process_map(
        &self,
        project: ProjectId,
        options: &QueryOptions,
        map: &MapOptions,
    ) -> Result<ProcessMap, AnalysisError> {
        let query = self.parse_query(options)?;
        let input = self.analysis_input(project, query, &ScanSpec::default())?;
        Ok(input.process_map(map)?)
    }

    pub fn variants(
        &self,
        project: ProjectId,
        options: &QueryOptions,
        top: &VariantOptions,
    ) -> Result<Variants, AnalysisError> {
        let query = self.parse_query(options)?;
        let extra = variants_scan(&query);
        let input = self.analysis_input(project, query, &extra)?;
        Ok(input.variants(top)?)
    }

    pub fn channel_switching(
        &self,
        project: ProjectId,
        options: &QueryOptions,
        channels: &ChannelOptions,
    ) -> Result<ChannelSwitching, AnalysisError> {
        let query = self.parse_query(options)?;
        let input = self.analysis_input(project, query, &ScanSpec::default())?;
        Ok(input.channel_switching(channels)?)
    }

    pub fn paths(
        &self,
        project: ProjectId,
        options: &QueryOptions,
        paths: &PathOptions,
    ) -> Result<Paths, AnalysisError> {
        let query = self.parse_query(options)?;
        let input = self.analysis_input(project, query, &ScanSpec::default())?;
        Ok(input.paths(paths)?)
    }

    pub fn funnel(
        &self,
        project: ProjectId,
        options: &QueryOptions,
        funnel: &FunnelOptions,
    ) -> Result<Funnel, AnalysisError> {
        let query = self.parse_query(options)?;
        let extra = funnel_scan(&query, funnel);
        let input = self.analysis_input(project, query, &extra)?;
        Ok(input.funnel(funnel)?)
    }
}

#[cfg(test)]
mod tests {
    //! Exactness against pm4py: the oracles in `../shared/datasets/oracles` hold what pm4py
    //! computes on the same logs (directly-follows graph, start/end activities, variants).

    use super::*;
    use crate::import::datasets::datasets;
    use crate::import::ImportOptions;
    use crate::AppOptions;
    use serde_json::Value;
    use std::collections::BTreeMap;
    use std::path::Path;

    fn imported(file: &Path) -> (tempfile::TempDir, App) {
        let dir = tempfile::tempdir().expect("temp dir");
        let app = App::open(dir.path(), AppOptions::default()).expect("open");
        let summary = app
            .import_file(ProjectId::DEFAULT, file, &ImportOptions::default(), &|_| {})
            .expect("import");
        assert_eq!(summary.rejected, 0);
        (dir, app)
    }

    fn oracle(ds: &Path, name: &str) -> Value {
        let text = std::fs::read_to_string(ds.join("oracles").join(format!("{name}.json")))
            .expect("oracle file");
        serde_json::from_str(&text).expect("oracle json")
    }

    fn counts(v: &Value) -> BTreeMap<String, u64> {
        v.as_object()
            .expect("an object of counts")
            .iter()
            .map(|(k, n)| (k.clone(), n.as_u64().expect("a count")))
            .collect()
    }

    fn check_against_oracle(file: &str, name: &str) {
        let Some(ds) = datasets() else { return };
        let (_dir, app) = imported(&ds.join("pm4py-logs").join(file));
        let o = oracle(&ds, name);
        let m = app
            .process_map(
                ProjectId::DEFAULT,
                &QueryOptions::default(),
                &MapOptions::default(),
            )
            .expect("process map");
        assert_eq!(m.totals.events, o["events"], "{name}: events");
        assert_eq!(m.totals.cases, o["cases"], "{name}: cases");
        assert_eq!(m.totals.steps, o["activities"], "{name}: activities");
        assert_eq!(m.totals.edges, o["dfg_edges"], "{name}: edges");
        assert_eq!(m.totals.transitions, o["dfg_total"], "{name}: transitions");
        let ours: BTreeMap<(String, String), u64> = m
            .edges
            .iter()
            .map(|e| ((e.from.clone(), e.to.clone()), e.count))
            .collect();
        let theirs: BTreeMap<(String, String), u64> = o["dfg"]
            .as_array()
            .expect("dfg")
            .iter()
            .map(|e| {
                (
                    (
                        e[0].as_str().unwrap().to_string(),
                        e[1].as_str().unwrap().to_string(),
                    ),
                    e[2].as_u64().unwrap(),
                )
            })
            .collect();
        assert_eq!(ours, theirs, "{name}: every directly-follows edge");
        let starts: BTreeMap<String, u64> = m
            .nodes
            .iter()
            .filter(|n| n.starts > 0)
            .map(|n| (n.step.clone(), n.starts))
            .collect();
        let ends: BTreeMap<String, u64> = m
            .nodes
            .iter()
            .filter(|n| n.ends > 0)
            .map(|n| (n.step.clone(), n.ends))
            .collect();
        assert_eq!(starts, counts(&o["start_activities"]), "{name}: starts");
        assert_eq!(ends, counts(&o["end_activities"]), "{name}: ends");

        let v = app
            .variants(
                ProjectId::DEFAULT,
                &QueryOptions::default(),
                &VariantOptions { top: usize::MAX },
            )
            .expect("variants");
        assert_eq!(v.total_variants, o["variants"], "{name}: variants");
        assert_eq!(v.total_cases, o["cases"]);
        for top in o["top_variants"].as_array().expect("top variants") {
            let steps: Vec<String> = top[0]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s.as_str().unwrap().to_string())
                .collect();
            let ours = v
                .variants
                .iter()
                .find(|x| x.steps == steps)
                .unwrap_or_else(|| panic!("{name}: variant {steps:?} is missing"));
            assert_eq!(ours.count, top[1], "{name}: count of {steps:?}");
        }
    }

    #[test]
    fn running_example_map_and_variants_equal_pm4py() {
        check_against_oracle("running-example.xes", "running-example");
    }

    #[test]
    fn receipt_map_and_variants_equal_pm4py() {
        check_against_oracle("receipt.xes.gz", "receipt");
    }

    #[test]
    fn receipt_channels_stages_and_options_through_the_app() {
        let Some(ds) = datasets() else { return };
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(
            dir.path().join(crate::config::CONFIG_FILE),
            "[stages]\nintake = [\"Confirmation of receipt\"]\nwork = [\"T02 Check confirmation of receipt\", \"T04 Determine confirmation of receipt\"]\n",
        )
        .unwrap();
        let app = App::open(dir.path(), AppOptions::default()).expect("open");
        app.import_file(
            ProjectId::DEFAULT,
            &ds.join("pm4py-logs/receipt.xes.gz"),
            &ImportOptions::default(),
            &|_| {},
        )
        .expect("import");

        let by_stage = QueryOptions {
            by: Some("stage".into()),
            ..QueryOptions::default()
        };
        let m = app
            .process_map(ProjectId::DEFAULT, &by_stage, &MapOptions::default())
            .unwrap();
        let steps: Vec<&str> = m.nodes.iter().map(|n| n.step.as_str()).collect();
        assert_eq!(steps.len(), 2, "{steps:?}");
        assert!(steps.contains(&"intake") && steps.contains(&"work"));

        // The receipt log's trace attribute `channel` becomes each event's channel.
        let c = app
            .channel_switching(
                ProjectId::DEFAULT,
                &QueryOptions::default(),
                &ChannelOptions::default(),
            )
            .unwrap();
        assert_eq!(c.totals.events, 8577);
        assert!(c.channels.len() > 1, "{:?}", c.channels);

        let bad = QueryOptions {
            filter: Some("activity = ".into()),
            ..QueryOptions::default()
        };
        let err = app
            .process_map(ProjectId::DEFAULT, &bad, &MapOptions::default())
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("--where: error at column"), "{err}");
        let bad = QueryOptions {
            by: Some("colour".into()),
            ..QueryOptions::default()
        };
        let err = app
            .process_map(ProjectId::DEFAULT, &bad, &MapOptions::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("invalid step dimension 'colour'"), "{err}");
    }
}
