//! Compare: two sides (two periods, two segments, two personas) side by side, with a
//! significance test and a plain verdict per difference.
//!
//! The sides are computed by the same analyses (process map, funnel, friction); this module
//! diffs their results:
//!
//! - **Process map**: every edge of either side with its count, the share of the side's
//!   customers who made the transition, and the median transition time; edges only in B are
//!   *gained*, only in A *lost*. The customer shares are tested.
//! - **Funnel**: per step, the conversion from the previous step (cases), tested.
//! - **Friction**: per friction point of either side, the score and the failure rate
//!   (failed events of the eligible ones), the failure rate tested; ties in p-value are
//!   ordered by how much the score moved.
//!
//! Rates are compared with the two-proportion z-test (pooled standard error; two-sided
//! p-value from the normal distribution, whose CDF comes from an `erfc` approximation with
//! relative error below 1.2·10⁻⁷). A difference is significant at p < `alpha` (0.05 by
//! default). Each list is sorted by p-value, then by the size of the change, then by name.

use crate::friction::Friction;
use crate::funnel::Funnel;
use crate::process_map::ProcessMap;
use crate::EngineError;
use serde::Serialize;
use std::collections::BTreeMap;

/// Complementary error function (Numerical Recipes' `erfcc`, a Chebyshev fit with
/// fractional error below 1.2·10⁻⁷ everywhere, so small p-values keep their precision).
pub fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98
                                + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let r = t * poly.exp();
    if x >= 0.0 {
        r
    } else {
        2.0 - r
    }
}

/// The standard normal CDF.
pub fn normal_cdf(x: f64) -> f64 {
    0.5 * erfc(-x / std::f64::consts::SQRT_2)
}

/// A two-proportion z-test of `x1 / n1` against `x2 / n2`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct ZTest {
    /// Positive when side B's rate is higher.
    pub z: f64,
    /// Two-sided.
    pub p_value: f64,
}

/// `None` when a side has no trials. Equal rates of 0 or 1 on both sides give z = 0, p = 1.
pub fn two_proportion_z(x1: u64, n1: u64, x2: u64, n2: u64) -> Option<ZTest> {
    if n1 == 0 || n2 == 0 {
        return None;
    }
    let (n1f, n2f) = (n1 as f64, n2 as f64);
    let (p1, p2) = (x1 as f64 / n1f, x2 as f64 / n2f);
    let pooled = (x1 + x2) as f64 / (n1f + n2f);
    let se = (pooled * (1.0 - pooled) * (1.0 / n1f + 1.0 / n2f)).sqrt();
    if se == 0.0 {
        return Some(ZTest {
            z: 0.0,
            p_value: 1.0,
        });
    }
    let z = (p2 - p1) / se;
    Some(ZTest {
        z,
        p_value: erfc(z.abs() / std::f64::consts::SQRT_2).min(1.0),
    })
}

#[derive(Clone, Debug, PartialEq)]
pub struct CompareOptions {
    /// Significance level.
    pub alpha: f64,
    pub a_label: String,
    pub b_label: String,
}

impl Default for CompareOptions {
    fn default() -> Self {
        CompareOptions {
            alpha: 0.05,
            a_label: "A".to_string(),
            b_label: "B".to_string(),
        }
    }
}

impl CompareOptions {
    fn check(&self) -> Result<(), EngineError> {
        if self.alpha > 0.0 && self.alpha < 1.0 {
            Ok(())
        } else {
            Err(EngineError::InvalidOption {
                option: "alpha",
                reason: format!("{} is not a significance level in (0, 1)", self.alpha),
            })
        }
    }
}

/// How a rate moved, as the verdict says it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Change {
    SignificantRise,
    SignificantDrop,
    NoSignificantChange,
    /// Too few observations to test.
    Untested,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Comparison {
    pub a: Side,
    pub b: Side,
    pub alpha: f64,
    pub map: MapComparison,
    pub funnel: Option<Vec<FunnelStepDiff>>,
    pub friction: Option<Vec<FrictionDiff>>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Side {
    pub label: String,
    pub events: u64,
    pub cases: u64,
    pub customers: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MapComparison {
    pub step: String,
    pub gained: u64,
    pub lost: u64,
    /// Edges whose customer share changed significantly.
    pub significant: u64,
    pub edges: Vec<EdgeDiff>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EdgeStatus {
    Both,
    Gained,
    Lost,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct EdgeDiff {
    pub from: String,
    pub to: String,
    pub status: EdgeStatus,
    pub count_a: u64,
    pub count_b: u64,
    pub customers_a: u64,
    pub customers_b: u64,
    /// Share of the side's customers who made the transition.
    pub share_a: f64,
    pub share_b: f64,
    pub median_a_s: Option<f64>,
    pub median_b_s: Option<f64>,
    /// B's median minus A's, when both have the edge.
    pub median_change_s: Option<f64>,
    pub test: Option<ZTest>,
    pub change: Change,
    pub verdict: String,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FunnelStepDiff {
    pub index: usize,
    pub label: String,
    pub cases_a: u64,
    pub cases_b: u64,
    /// Conversion from the previous step (from the cases entering the funnel for step 1,
    /// which is then 1).
    pub conversion_a: Option<f64>,
    pub conversion_b: Option<f64>,
    pub test: Option<ZTest>,
    pub change: Change,
    pub verdict: String,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FrictionDiff {
    pub step: String,
    pub score_a: Option<f64>,
    pub score_b: Option<f64>,
    pub failures_a: u64,
    pub eligible_a: u64,
    pub failures_b: u64,
    pub eligible_b: u64,
    pub failure_rate_a: Option<f64>,
    pub failure_rate_b: Option<f64>,
    pub test: Option<ZTest>,
    pub change: Change,
    pub verdict: String,
}

fn rate(x: u64, n: u64) -> Option<f64> {
    (n > 0).then(|| x as f64 / n as f64)
}

fn pct(r: Option<f64>) -> String {
    r.map_or_else(|| "-".to_string(), |r| format!("{:.1}%", r * 100.0))
}

/// `p < 0.001` or `p = 0.042`.
pub fn format_p(p: f64) -> String {
    if p < 0.001 {
        "p < 0.001".to_string()
    } else {
        format!("p = {p:.3}")
    }
}

fn judge(test: Option<ZTest>, alpha: f64) -> Change {
    match test {
        None => Change::Untested,
        Some(t) if t.p_value < alpha && t.z > 0.0 => Change::SignificantRise,
        Some(t) if t.p_value < alpha && t.z < 0.0 => Change::SignificantDrop,
        Some(_) => Change::NoSignificantChange,
    }
}

/// "conversion to purchase fell from 42.0% to 35.0% (p < 0.001): significant drop".
fn verdict(
    what: &str,
    a: Option<f64>,
    b: Option<f64>,
    test: Option<ZTest>,
    change: Change,
) -> String {
    let direction = match (a, b) {
        (Some(a), Some(b)) if b > a => "rose",
        (Some(a), Some(b)) if b < a => "fell",
        _ => "stayed",
    };
    let tail = match change {
        Change::SignificantRise => "significant rise",
        Change::SignificantDrop => "significant drop",
        Change::NoSignificantChange => "no significant change",
        Change::Untested => "not enough data to test",
    };
    let p = test.map_or_else(String::new, |t| format!(" ({})", format_p(t.p_value)));
    if direction == "stayed" {
        format!("{what} stayed at {}{p}: {tail}", pct(b.or(a)))
    } else {
        format!(
            "{what} {direction} from {} to {}{p}: {tail}",
            pct(a),
            pct(b)
        )
    }
}

/// Sort key: p-value (untested last), then the size of the change (larger first).
fn order_key(test: Option<ZTest>, a: Option<f64>, b: Option<f64>) -> (f64, f64) {
    let p = test.map_or(f64::INFINITY, |t| t.p_value);
    let size = (b.unwrap_or(0.0) - a.unwrap_or(0.0)).abs();
    (p, -size)
}

fn by_key<T>(items: &mut [T], key: impl Fn(&T) -> ((f64, f64), String)) {
    items.sort_by(|x, y| {
        let (kx, nx) = key(x);
        let (ky, ny) = key(y);
        kx.0.total_cmp(&ky.0)
            .then(kx.1.total_cmp(&ky.1))
            .then_with(|| nx.cmp(&ny))
    });
}

/// The process maps' differences (both maps must be of the same step dimension).
pub fn compare_maps(a: &ProcessMap, b: &ProcessMap, alpha: f64) -> MapComparison {
    type Edge = (u64, u64, f64);
    let collect = |m: &ProcessMap| -> BTreeMap<(String, String), Edge> {
        m.edges
            .iter()
            .map(|e| {
                (
                    (e.from.clone(), e.to.clone()),
                    (e.count, e.customers, e.duration.median_s),
                )
            })
            .collect()
    };
    let (ea, eb) = (collect(a), collect(b));
    let (na, nb) = (a.totals.customers, b.totals.customers);
    let keys: std::collections::BTreeSet<&(String, String)> = ea.keys().chain(eb.keys()).collect();
    let mut edges: Vec<EdgeDiff> = keys
        .into_iter()
        .map(|key| {
            let x = ea.get(key);
            let y = eb.get(key);
            let status = match (x, y) {
                (Some(_), Some(_)) => EdgeStatus::Both,
                (None, Some(_)) => EdgeStatus::Gained,
                _ => EdgeStatus::Lost,
            };
            let (ca, cua, ma) = x.map_or((0, 0, None), |e| (e.0, e.1, Some(e.2)));
            let (cb, cub, mb) = y.map_or((0, 0, None), |e| (e.0, e.1, Some(e.2)));
            let (sa, sb) = (rate(cua, na), rate(cub, nb));
            let test = two_proportion_z(cua, na, cub, nb);
            let change = judge(test, alpha);
            let name = format!("{} → {}", key.0, key.1);
            let mut verdict = verdict(&format!("customers making {name}"), sa, sb, test, change);
            match status {
                EdgeStatus::Gained => verdict = format!("new transition; {verdict}"),
                EdgeStatus::Lost => verdict = format!("transition gone; {verdict}"),
                EdgeStatus::Both => {}
            }
            EdgeDiff {
                from: key.0.clone(),
                to: key.1.clone(),
                status,
                count_a: ca,
                count_b: cb,
                customers_a: cua,
                customers_b: cub,
                share_a: sa.unwrap_or(0.0),
                share_b: sb.unwrap_or(0.0),
                median_a_s: ma,
                median_b_s: mb,
                median_change_s: ma.zip(mb).map(|(a, b)| b - a),
                test,
                change,
                verdict,
            }
        })
        .collect();
    by_key(&mut edges, |e| {
        (
            order_key(e.test, Some(e.share_a), Some(e.share_b)),
            format!("{}\u{0}{}", e.from, e.to),
        )
    });
    MapComparison {
        step: b.step.clone(),
        gained: edges
            .iter()
            .filter(|e| e.status == EdgeStatus::Gained)
            .count() as u64,
        lost: edges
            .iter()
            .filter(|e| e.status == EdgeStatus::Lost)
            .count() as u64,
        significant: edges
            .iter()
            .filter(|e| matches!(e.change, Change::SignificantRise | Change::SignificantDrop))
            .count() as u64,
        edges,
    }
}

/// The funnels' step conversions side by side (both funnels must have the same steps).
pub fn compare_funnels(
    a: &Funnel,
    b: &Funnel,
    alpha: f64,
) -> Result<Vec<FunnelStepDiff>, EngineError> {
    let labels = |f: &Funnel| f.steps.iter().map(|s| s.label.clone()).collect::<Vec<_>>();
    if labels(a) != labels(b) {
        return Err(EngineError::InvalidOption {
            option: "funnel",
            reason: "the two sides' funnels have different steps".to_string(),
        });
    }
    let mut diffs: Vec<FunnelStepDiff> = a
        .steps
        .iter()
        .zip(&b.steps)
        .enumerate()
        .map(|(i, (sa, sb))| {
            let prev = |f: &Funnel| {
                if i == 0 {
                    f.cases
                } else {
                    f.steps[i - 1].cases
                }
            };
            let (pa, pb) = (prev(a), prev(b));
            let (ra, rb) = (rate(sa.cases, pa), rate(sb.cases, pb));
            let test = two_proportion_z(sa.cases, pa, sb.cases, pb);
            let change = judge(test, alpha);
            let what = if i == 0 {
                format!("cases reaching {}", sa.label)
            } else {
                format!("conversion to {}", sa.label)
            };
            FunnelStepDiff {
                index: sa.index,
                label: sa.label.clone(),
                cases_a: sa.cases,
                cases_b: sb.cases,
                conversion_a: ra,
                conversion_b: rb,
                test,
                change,
                verdict: verdict(&what, ra, rb, test, change),
            }
        })
        .collect();
    by_key(&mut diffs, |d| {
        (
            order_key(d.test, d.conversion_a, d.conversion_b),
            format!("{:06}", d.index),
        )
    });
    Ok(diffs)
}

/// The friction points of either side: score and failure rate, the failure rate tested.
pub fn compare_friction(a: &Friction, b: &Friction, alpha: f64) -> Vec<FrictionDiff> {
    type Point = (f64, u64, u64);
    let collect = |f: &Friction| -> BTreeMap<String, Point> {
        f.points
            .iter()
            .map(|p| {
                (
                    p.step.clone(),
                    (
                        p.score,
                        p.signals.failure.events,
                        p.signals.failure.eligible,
                    ),
                )
            })
            .collect()
    };
    let (pa, pb) = (collect(a), collect(b));
    let steps: std::collections::BTreeSet<&String> = pa.keys().chain(pb.keys()).collect();
    let mut diffs: Vec<FrictionDiff> = steps
        .into_iter()
        .map(|step| {
            let (sa, fa, ea) = pa.get(step).map_or((None, 0, 0), |p| (Some(p.0), p.1, p.2));
            let (sb, fb, eb) = pb.get(step).map_or((None, 0, 0), |p| (Some(p.0), p.1, p.2));
            let (ra, rb) = (rate(fa, ea), rate(fb, eb));
            let test = two_proportion_z(fa, ea, fb, eb);
            let change = judge(test, alpha);
            FrictionDiff {
                step: step.clone(),
                score_a: sa,
                score_b: sb,
                failures_a: fa,
                eligible_a: ea,
                failures_b: fb,
                eligible_b: eb,
                failure_rate_a: ra,
                failure_rate_b: rb,
                test,
                change,
                verdict: verdict(&format!("failure rate at {step}"), ra, rb, test, change),
            }
        })
        .collect();
    // By p-value, then by how much the score moved (the failure rate often does not).
    by_key(&mut diffs, |d| {
        (
            (
                d.test.map_or(f64::INFINITY, |t| t.p_value),
                -(d.score_b.unwrap_or(0.0) - d.score_a.unwrap_or(0.0)).abs(),
            ),
            d.step.clone(),
        )
    });
    diffs
}

/// One side's results, as computed by the analyses.
pub struct SideResults<'a> {
    pub map: &'a ProcessMap,
    pub funnel: Option<&'a Funnel>,
    pub friction: Option<&'a Friction>,
}

/// Everything side by side.
pub fn compare(
    a: &SideResults<'_>,
    b: &SideResults<'_>,
    options: &CompareOptions,
) -> Result<Comparison, EngineError> {
    options.check()?;
    let side = |label: &str, m: &ProcessMap| Side {
        label: label.to_string(),
        events: m.totals.events,
        cases: m.totals.cases,
        customers: m.totals.customers,
    };
    let funnel = match (a.funnel, b.funnel) {
        (Some(fa), Some(fb)) => Some(compare_funnels(fa, fb, options.alpha)?),
        _ => None,
    };
    let friction = match (a.friction, b.friction) {
        (Some(fa), Some(fb)) => Some(compare_friction(fa, fb, options.alpha)),
        _ => None,
    };
    Ok(Comparison {
        a: side(&options.a_label, a.map),
        b: side(&options.b_label, b.map),
        alpha: options.alpha,
        map: compare_maps(a.map, b.map, options.alpha),
        funnel,
        friction,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normal_cdf_matches_known_values() {
        // Values from standard normal tables (R's pnorm).
        for (x, want) in [
            (0.0, 0.5),
            (1.0, 0.841_344_746_068_542_9),
            (-1.0, 0.158_655_253_931_457_05),
            (1.959_963_984_540_054, 0.975),
            (3.0, 0.998_650_101_968_369_9),
            (-3.290_526_731_491_926, 0.0005),
            (-5.0, 2.866_515_718_791_939e-7),
        ] {
            let (x, want): (f64, f64) = (x, want);
            let got = normal_cdf(x);
            // erfcc's relative error bound, on the smaller tail.
            let tail = want.min(1.0 - want);
            assert!(
                (got - want).abs() <= 2e-7 * tail + 1e-15,
                "Φ({x}) = {got}, want {want}"
            );
        }
        assert!((erfc(0.5) - 0.479_500_122_186_953_5).abs() < 1e-7);
        assert!((erfc(-0.5) - 1.520_499_877_813_046_5).abs() < 1e-7);
    }

    #[test]
    fn z_test_agrees_with_a_hand_computation() {
        // 420/1000 vs 350/1000: pooled 0.385, se = sqrt(.385·.615·.002) = 0.021761…
        let t = two_proportion_z(420, 1000, 350, 1000).unwrap();
        assert!((t.z - (-3.216_76)).abs() < 1e-4, "{t:?}");
        assert!((t.p_value - 0.001_297).abs() < 2e-5, "{t:?}");
        assert_eq!(
            two_proportion_z(0, 10, 0, 20),
            Some(ZTest {
                z: 0.0,
                p_value: 1.0
            })
        );
        assert_eq!(two_proportion_z(1, 0, 1, 2), None);
        let change = judge(Some(t), 0.05);
        assert_eq!(change, Change::SignificantDrop);
        assert_eq!(
            verdict(
                "conversion to purchase",
                Some(0.42),
                Some(0.35),
                Some(t),
                change
            ),
            "conversion to purchase fell from 42.0% to 35.0% (p = 0.001): significant drop"
        );
    }
}
