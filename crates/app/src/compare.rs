//! Compare through the app: two sides given as query options (two periods, two segments,
//! two personas, or any mix), each computed by the usual analyses, then diffed with
//! significance by `omnitrail_engine::compare`.

use crate::analysis::{AnalysisError, QueryOptions};
use crate::App;
use omnitrail_engine::compare::{compare, CompareOptions, Comparison, SideResults};
use omnitrail_engine::friction::{friction_scan, Friction};
use omnitrail_engine::funnel::{funnel_scan, Funnel, FunnelOptions, FunnelStep};
use omnitrail_engine::{EngineError, MapOptions, ProcessMap};
use omnitrail_model::{ProjectId, Timestamp};

/// What one side of a comparison narrows the shared query options to; what a side gives
/// wins over the shared value.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CompareSide {
    pub from: Option<Timestamp>,
    pub to: Option<Timestamp>,
    pub segment: Option<String>,
    pub persona: Option<String>,
}

impl CompareSide {
    pub fn apply(&self, shared: &QueryOptions) -> QueryOptions {
        QueryOptions {
            from: self.from.or(shared.from),
            to: self.to.or(shared.to),
            segment: self.segment.clone().or_else(|| shared.segment.clone()),
            persona: self.persona.clone().or_else(|| shared.persona.clone()),
            ..shared.clone()
        }
    }
}

/// The funnel of a comparison, written `cart_added > checkout_started > purchase`.
pub fn parse_compare_funnel(text: &str) -> Result<FunnelOptions, AnalysisError> {
    let steps = text
        .split('>')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            FunnelStep::parse(s).map_err(|e| AnalysisError::Expression {
                option: "funnel",
                rendered: e.render(),
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    if steps.len() < 2 {
        return Err(EngineError::InvalidOption {
            option: "funnel",
            reason: "needs at least two steps, e.g. \"cart_added > purchase\"".to_string(),
        }
        .into());
    }
    Ok(FunnelOptions::new(steps))
}

/// What to compare and how.
#[derive(Clone, Debug, PartialEq)]
pub struct CompareRequest {
    pub a: QueryOptions,
    pub b: QueryOptions,
    pub map: MapOptions,
    /// Compare this funnel's step conversions too.
    pub funnel: Option<FunnelOptions>,
    /// Compare friction points (by touchpoint unless the sides say `by`).
    pub friction: bool,
    pub options: CompareOptions,
}

struct SideData {
    map: ProcessMap,
    funnel: Option<Funnel>,
    friction: Option<Friction>,
}

impl SideData {
    fn results(&self) -> SideResults<'_> {
        SideResults {
            map: &self.map,
            funnel: self.funnel.as_ref(),
            friction: self.friction.as_ref(),
        }
    }
}

impl App {
    /// Both sides computed and compared. The sides must differ.
    pub fn compare(
        &self,
        project: ProjectId,
        request: &CompareRequest,
    ) -> Result<Comparison, AnalysisError> {
        if request.a == request.b {
            return Err(EngineError::InvalidOption {
                option: "compare",
                reason: "both sides select the same data; give each side its own period, \
                         segment or persona"
                    .to_string(),
            }
            .into());
        }
        let a = self.compare_side(project, &request.a, request)?;
        let b = self.compare_side(project, &request.b, request)?;
        Ok(compare(&a.results(), &b.results(), &request.options)?)
    }

    fn compare_side(
        &self,
        project: ProjectId,
        side: &QueryOptions,
        request: &CompareRequest,
    ) -> Result<SideData, AnalysisError> {
        let query = self.parse_query_in(project, side)?;
        let extra = match &request.funnel {
            Some(f) => funnel_scan(&query, f),
            None => Default::default(),
        };
        let input = self.analysis_input(project, query, &extra)?;
        let map = input.process_map(&request.map)?;
        let funnel = match &request.funnel {
            Some(f) => Some(input.funnel(f)?),
            None => None,
        };
        let friction = if request.friction {
            let mut options = self.friction_options(project)?;
            // Every point, and no root causes: only scores and failure rates are compared.
            options.top = usize::MAX;
            options.explain = 0;
            let input = self.diagnostics_input(project, side, &friction_scan(&options))?;
            Some(input.friction(&options, &[])?)
        } else {
            None
        };
        Ok(SideData {
            map,
            funnel,
            friction,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::AppOptions;
    use omnitrail_engine::compare::{Change, EdgeStatus};

    #[test]
    fn a_side_narrows_the_shared_options_and_a_funnel_needs_two_steps() {
        let shared = QueryOptions {
            segment: Some("did('purchase')".into()),
            by: Some("channel".into()),
            ..QueryOptions::default()
        };
        let side = CompareSide {
            persona: Some("p1".into()),
            ..CompareSide::default()
        }
        .apply(&shared);
        assert_eq!(side.segment, shared.segment);
        assert_eq!(side.by, shared.by);
        assert_eq!(side.persona.as_deref(), Some("p1"));
        let own = CompareSide {
            segment: Some("did('x')".into()),
            ..CompareSide::default()
        }
        .apply(&shared);
        assert_eq!(own.segment.as_deref(), Some("did('x')"));

        let funnel = parse_compare_funnel("cart_added > purchase").unwrap();
        assert_eq!(funnel.steps.len(), 2);
        let one = parse_compare_funnel("purchase").unwrap_err().to_string();
        assert!(one.contains("at least two steps"), "{one}");
        let bad = parse_compare_funnel("cart_added > channel = ")
            .unwrap_err()
            .to_string();
        assert!(bad.starts_with("funnel: "), "{bad}");
    }
    use omnitrail_engine::funnel::FunnelStep;
    use omnitrail_model::Timestamp;
    use omnitrail_synth::SynthConfig;

    /// The demo's first and second half-year side by side: every customer is acquired in the
    /// first 60% of the year, so purchases fall sharply in the second half.
    #[test]
    fn periods_of_the_demo_compare_with_verdicts() {
        let dir = tempfile::tempdir().unwrap();
        let mut app = App::open(dir.path(), AppOptions::default()).unwrap();
        let cfg = SynthConfig {
            customers: 600,
            ..SynthConfig::default()
        };
        app.generate_demo(&cfg, &|_, _| {}).unwrap();
        let t = |s: &str| Some(Timestamp::parse(s).unwrap());
        let request = CompareRequest {
            a: QueryOptions {
                from: t("2025-01-01"),
                to: t("2025-07-01"),
                ..QueryOptions::default()
            },
            b: QueryOptions {
                from: t("2025-07-01"),
                to: t("2026-01-01"),
                ..QueryOptions::default()
            },
            map: MapOptions::default(),
            funnel: Some(FunnelOptions::new(vec![
                FunnelStep::parse("landing_page_viewed").unwrap(),
                FunnelStep::parse("purchase").unwrap(),
            ])),
            friction: true,
            options: CompareOptions::default(),
        };
        let c = app.compare(ProjectId::DEFAULT, &request).unwrap();
        assert!(c.a.events > 0 && c.b.events > 0);
        let edges = &c.map.edges;
        assert!(!edges.is_empty());
        // Sorted by p-value.
        let ps: Vec<f64> = edges
            .iter()
            .map(|e| e.test.map_or(f64::INFINITY, |t| t.p_value))
            .collect();
        assert!(ps.windows(2).all(|w| w[0] <= w[1]), "{ps:?}");
        let buy = edges
            .iter()
            .find(|e| e.from == "checkout_started" && e.to == "purchase")
            .expect("checkout → purchase on some side");
        assert_eq!(buy.change, Change::SignificantDrop, "{}", buy.verdict);
        assert!(buy.verdict.contains("significant drop"), "{}", buy.verdict);
        assert!(edges
            .iter()
            .all(|e| (e.status == EdgeStatus::Gained) == (e.count_a == 0)));
        let funnel = c.funnel.as_ref().unwrap();
        assert_eq!(funnel.len(), 2);
        let friction = c.friction.as_ref().unwrap();
        assert!(!friction.is_empty());

        let same = CompareRequest {
            b: request.a.clone(),
            ..request
        };
        let err = app
            .compare(ProjectId::DEFAULT, &same)
            .unwrap_err()
            .to_string();
        assert!(err.contains("same data"), "{err}");
    }
}
