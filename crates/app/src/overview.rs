//! The overview page's numbers and the customers behind a map element.
//!
//! The overview is one load of the columns three analyses need — the engine's overview
//! (customers, events, goal conversion, sentiment, channel mix, trend), channel performance
//! (repeat contact and bot containment over all channels) and friction (the top points) —
//! so a dashboard costs one scan, not three.

use crate::analysis::{AnalysisError, QueryOptions};
use crate::diagnostics::channel_performance_options;
use crate::App;
use omnitrail_engine::channel_performance::channel_performance_scan;
use omnitrail_engine::friction::friction_scan;
use omnitrail_engine::lifecycle::Period;
use omnitrail_engine::overview::{overview, overview_scan, Overview, OverviewOptions};
use omnitrail_engine::step_customers::{step_customers, StepCustomersOptions};
use omnitrail_model::journeys::ScanSpec;
use omnitrail_model::{CustomerId, ProjectId};
use serde::Serialize;

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct OverviewReport {
    #[serde(flatten)]
    pub overview: Overview,
    /// Assisted contacts followed by another on the same topic within the repeat window.
    pub repeat_contact_rate: Option<f64>,
    /// Bot sessions with no assisted contact within the containment window.
    pub bot_containment: Option<f64>,
    /// The best-scored friction points (by touchpoint unless `by` says otherwise).
    pub top_friction: Vec<FrictionSummary>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FrictionSummary {
    pub step: String,
    pub score: f64,
    pub affected_customers: u64,
    /// The signal adding most to the point's severity.
    pub signal: Option<&'static str>,
}

/// A customer behind a map element, with the identifier an agent would recognise.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CustomerLabel {
    pub customer_id: String,
    /// `email:…`, else `phone:…`, else the customer's first identifier; the customer id
    /// when the cluster has none.
    pub label: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct StepCustomersReport {
    pub step: String,
    pub next: Option<String>,
    pub total: u64,
    pub cases: u64,
    pub offset: usize,
    pub limit: usize,
    pub customers: Vec<CustomerLabel>,
}

/// The identifier kinds an agent recognises a customer by, best first.
const LABEL_KINDS: [&str; 4] = ["email", "phone", "user_id", "crm_id"];

impl App {
    /// KPIs, channel mix, trend and the top `top` friction points.
    pub fn overview(
        &self,
        project: ProjectId,
        options: &QueryOptions,
        period: Period,
        top: usize,
    ) -> Result<OverviewReport, AnalysisError> {
        let mut friction = self.friction_options(project)?;
        friction.top = top;
        friction.explain = 0;
        let performance = channel_performance_options(self.config())?;
        let mut scan = ScanSpec::default();
        for s in [
            overview_scan(),
            channel_performance_scan(&performance),
            friction_scan(&friction),
        ] {
            scan.properties.extend(s.properties);
            scan.traits.extend(s.traits);
        }
        let input = self.diagnostics_input(project, options, &scan)?;
        let prepared = input.prepare()?;
        let overview_options = match &self.config().overview.goals {
            Some(goals) => OverviewOptions {
                period,
                goal_activities: goals.clone(),
                outcome_goals: false,
            },
            None => OverviewOptions {
                period,
                goal_activities: friction.signals.goal_activities.clone(),
                outcome_goals: true,
            },
        };
        let summary = overview(&prepared, &overview_options);
        let channels = input.channel_performance(&performance)?;
        let points = input.friction(&friction, &[])?;
        Ok(OverviewReport {
            overview: summary,
            repeat_contact_rate: channels.totals.repeat_contact_rate,
            bot_containment: channels.totals.containment.map(|c| c.rate),
            top_friction: points
                .points
                .iter()
                .map(|p| FrictionSummary {
                    step: p.step.clone(),
                    score: p.score,
                    affected_customers: p.affected_customers,
                    signal: p.signals.strongest(&friction.weights),
                })
                .collect(),
        })
    }

    /// The customers whose journeys have a step (or the transition `step → next`) in the
    /// query's step dimension, a page at a time in customer-id order.
    pub fn step_customers(
        &self,
        project: ProjectId,
        options: &QueryOptions,
        step: &StepCustomersOptions,
    ) -> Result<StepCustomersReport, AnalysisError> {
        let query = self.parse_query_in(project, options)?;
        let input = self.analysis_input(project, query, &ScanSpec::default())?;
        let found = step_customers(&input.prepare()?, step);
        let customers = found
            .customers
            .iter()
            .map(|&c| self.customer_label(project, c))
            .collect::<Result<_, _>>()?;
        Ok(StepCustomersReport {
            step: found.step,
            next: found.next,
            total: found.total,
            cases: found.cases,
            offset: found.offset,
            limit: found.limit,
            customers,
        })
    }

    /// What an agent recognises a customer by; the step-customers analysis and the task
    /// list share it.
    pub(crate) fn customer_label(
        &self,
        project: ProjectId,
        customer: CustomerId,
    ) -> Result<CustomerLabel, crate::AppError> {
        let cluster = self.identities.cluster(self.store(), project, customer)?;
        let best = LABEL_KINDS
            .iter()
            .find_map(|k| cluster.identifiers.iter().find(|i| i.kind == *k))
            .or(cluster.identifiers.first());
        Ok(CustomerLabel {
            customer_id: customer.to_string(),
            label: best.map_or_else(
                || customer.to_string(),
                |i| format!("{}:{}", i.kind, i.value),
            ),
        })
    }
}
