//! What an analysis asks for: which dimension a step is, how journeys split into cases, the
//! time range, the event filter and the customer segment.

use crate::expr::{EventFilter, Segment};
use crate::EngineError;
use omnitrail_model::journeys::ScanSpec;
use omnitrail_model::CustomerId;
use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

/// Microseconds per unit of the duration syntax `30s 15m 2h 7d 4w`.
const SECOND: i64 = 1_000_000;

/// Parses a duration such as `30s`, `15m`, `2h`, `7d` or `4w` into microseconds.
pub fn parse_duration(text: &str) -> Result<i64, EngineError> {
    let bad = |reason: &str| EngineError::InvalidDuration {
        input: text.to_string(),
        reason: reason.to_string(),
    };
    let t = text.trim();
    let split = t
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| bad("missing unit (use s, m, h, d or w)"))?;
    let (digits, unit) = t.split_at(split);
    if digits.is_empty() {
        return Err(bad("expected a whole number before the unit"));
    }
    let n: i64 = digits.parse().map_err(|_| bad("number too large"))?;
    let per = match unit {
        "s" => SECOND,
        "m" => 60 * SECOND,
        "h" => 3600 * SECOND,
        "d" => 86_400 * SECOND,
        "w" => 7 * 86_400 * SECOND,
        _ => return Err(bad("unknown unit (use s, m, h, d or w)")),
    };
    n.checked_mul(per).ok_or_else(|| bad("duration too large"))
}

/// Renders microseconds in the largest unit that divides them, so `parse_duration` reads
/// it back unchanged.
pub fn format_duration(micros: i64) -> String {
    for (unit, per) in [
        ("w", 7 * 86_400 * SECOND),
        ("d", 86_400 * SECOND),
        ("h", 3600 * SECOND),
        ("m", 60 * SECOND),
        ("s", SECOND),
    ] {
        if micros != 0 && micros % per == 0 {
            return format!("{}{unit}", micros / per);
        }
    }
    format!("{}s", micros as f64 / SECOND as f64)
}

/// What one step of a journey is: the event's activity, channel, both ("touchpoint",
/// written `channel:activity`), the stage its activity maps to, or a property's value.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum StepDimension {
    Activity,
    Channel,
    Touchpoint,
    Stage,
    Property(String),
}

impl FromStr for StepDimension {
    type Err = EngineError;
    fn from_str(s: &str) -> Result<Self, EngineError> {
        let bad = |reason: &str| EngineError::InvalidStepDimension {
            input: s.to_string(),
            reason: reason.to_string(),
        };
        match s.trim() {
            "activity" => Ok(StepDimension::Activity),
            "channel" => Ok(StepDimension::Channel),
            "touchpoint" => Ok(StepDimension::Touchpoint),
            "stage" => Ok(StepDimension::Stage),
            other => match other.strip_prefix("property:") {
                Some(name) if !name.trim().is_empty() => {
                    Ok(StepDimension::Property(name.trim().to_string()))
                }
                Some(_) => Err(bad("property: needs a property name, e.g. property:os")),
                None => Err(bad(
                    "expected activity, channel, touchpoint, stage or property:NAME",
                )),
            },
        }
    }
}

impl fmt::Display for StepDimension {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StepDimension::Activity => f.write_str("activity"),
            StepDimension::Channel => f.write_str("channel"),
            StepDimension::Touchpoint => f.write_str("touchpoint"),
            StepDimension::Stage => f.write_str("stage"),
            StepDimension::Property(p) => write!(f, "property:{p}"),
        }
    }
}

/// How a customer's journey splits into cases (journey instances): the whole journey, a new
/// case after an inactivity gap longer than the given microseconds, or one case per value of
/// a property (ticket id, order id).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum CaseSplit {
    Customer,
    Gap(i64),
    Property(String),
}

impl FromStr for CaseSplit {
    type Err = EngineError;
    fn from_str(s: &str) -> Result<Self, EngineError> {
        let bad = |reason: String| EngineError::InvalidCaseSplit {
            input: s.to_string(),
            reason,
        };
        let t = s.trim();
        if t == "customer" {
            return Ok(CaseSplit::Customer);
        }
        if let Some(d) = t.strip_prefix("gap:") {
            let micros = parse_duration(d).map_err(|e| bad(e.to_string()))?;
            if micros <= 0 {
                return Err(bad("the gap must be longer than zero".to_string()));
            }
            return Ok(CaseSplit::Gap(micros));
        }
        if let Some(p) = t.strip_prefix("property:") {
            if p.trim().is_empty() {
                return Err(bad(
                    "property: needs a property name, e.g. property:ticket_id".to_string(),
                ));
            }
            return Ok(CaseSplit::Property(p.trim().to_string()));
        }
        Err(bad(
            "expected customer, gap:DURATION (e.g. gap:30m) or property:NAME".to_string(),
        ))
    }
}

impl fmt::Display for CaseSplit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CaseSplit::Customer => f.write_str("customer"),
            CaseSplit::Gap(g) => write!(f, "gap:{}", format_duration(*g)),
            CaseSplit::Property(p) => write!(f, "property:{p}"),
        }
    }
}

/// The configured stages: their names in journey order and which activity belongs to which.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Stages {
    names: Vec<String>,
    stage_of: HashMap<String, usize>,
}

impl Stages {
    /// Stages in journey order, with no activity assigned yet.
    pub fn new(names: Vec<String>) -> Stages {
        Stages {
            names,
            stage_of: HashMap::new(),
        }
    }

    /// Puts `activity` in `stage`; the stage must be one of the names given to [`Stages::new`].
    pub fn assign(&mut self, activity: &str, stage: &str) -> Result<(), EngineError> {
        let index = self.names.iter().position(|s| s == stage).ok_or_else(|| {
            EngineError::UnknownStage {
                stage: stage.to_string(),
                activity: activity.to_string(),
            }
        })?;
        self.stage_of.insert(activity.to_string(), index);
        Ok(())
    }

    /// Stage names in journey order.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    pub fn stage_of(&self, activity: &str) -> Option<&str> {
        self.stage_index(activity).map(|i| self.names[i].as_str())
    }

    /// Position of the activity's stage in journey order.
    pub fn stage_index(&self, activity: &str) -> Option<usize> {
        self.stage_of.get(activity).copied()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}

/// A fixed set of customers (e.g. one persona's), kept sorted for lookups.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CustomerSet {
    sorted: Vec<CustomerId>,
}

impl CustomerSet {
    /// The set of `customers`, in any order, duplicates allowed.
    pub fn new(mut customers: Vec<CustomerId>) -> CustomerSet {
        customers.sort_unstable();
        customers.dedup();
        CustomerSet { sorted: customers }
    }

    pub fn contains(&self, customer: CustomerId) -> bool {
        self.sorted.binary_search(&customer).is_ok()
    }

    pub fn len(&self) -> usize {
        self.sorted.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sorted.is_empty()
    }

    /// The customers in id order.
    pub fn customers(&self) -> &[CustomerId] {
        &self.sorted
    }
}

impl FromIterator<CustomerId> for CustomerSet {
    fn from_iter<I: IntoIterator<Item = CustomerId>>(iter: I) -> CustomerSet {
        CustomerSet::new(iter.into_iter().collect())
    }
}

/// One analysis query. `from` is inclusive, `to` exclusive (µs UTC); `now` is the injected
/// clock that relative segment conditions (`within 7d`) measure from.
#[derive(Clone, Debug)]
pub struct Query {
    pub step: StepDimension,
    pub case: CaseSplit,
    pub from: Option<i64>,
    pub to: Option<i64>,
    pub filter: Option<EventFilter>,
    pub segment: Option<Segment>,
    /// Only these customers (whole customers kept or dropped, like the segment); e.g. the
    /// members of one persona.
    pub customers: Option<Arc<CustomerSet>>,
    pub now: i64,
}

impl Query {
    /// Whole journeys, steps by activity, no filter: the default of every analysis.
    pub fn new(now: i64) -> Query {
        Query {
            step: StepDimension::Activity,
            case: CaseSplit::Customer,
            from: None,
            to: None,
            filter: None,
            segment: None,
            customers: None,
            now,
        }
    }
}

/// The property and trait columns `query` reads, sorted and without duplicates.
pub(crate) fn required_scan(query: &Query) -> ScanSpec {
    let mut properties = Vec::new();
    let mut traits = Vec::new();
    if let StepDimension::Property(p) = &query.step {
        properties.push(p.clone());
    }
    if let CaseSplit::Property(p) = &query.case {
        properties.push(p.clone());
    }
    if let Some(f) = &query.filter {
        properties.extend(f.referenced_properties());
        traits.extend(f.referenced_traits());
    }
    if let Some(s) = &query.segment {
        properties.extend(s.referenced_properties());
        traits.extend(s.referenced_traits());
    }
    properties.sort();
    properties.dedup();
    traits.sort();
    traits.dedup();
    ScanSpec { properties, traits }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dimensions_parse_and_print_back() {
        for text in ["activity", "channel", "touchpoint", "stage", "property:os"] {
            let d: StepDimension = text.parse().unwrap();
            assert_eq!(d.to_string(), text);
        }
        let err = "colour".parse::<StepDimension>().unwrap_err().to_string();
        assert!(
            err.contains("'colour'") && err.contains("property:NAME"),
            "{err}"
        );
        assert!("property:".parse::<StepDimension>().is_err());
    }

    #[test]
    fn case_splits_parse_with_durations() {
        assert_eq!(
            "customer".parse::<CaseSplit>().unwrap(),
            CaseSplit::Customer
        );
        assert_eq!(
            "gap:30m".parse::<CaseSplit>().unwrap(),
            CaseSplit::Gap(30 * 60 * SECOND)
        );
        assert_eq!(
            "property:ticket_id".parse::<CaseSplit>().unwrap(),
            CaseSplit::Property("ticket_id".into())
        );
        assert_eq!("gap:2w".parse::<CaseSplit>().unwrap().to_string(), "gap:2w");
        let err = "gap:30x".parse::<CaseSplit>().unwrap_err().to_string();
        assert!(err.contains("unknown unit"), "{err}");
        assert!("gap:0s".parse::<CaseSplit>().is_err());
        assert!("session".parse::<CaseSplit>().is_err());
    }

    #[test]
    fn durations_cover_every_unit() {
        assert_eq!(parse_duration("45s").unwrap(), 45 * SECOND);
        assert_eq!(parse_duration("2h").unwrap(), 7200 * SECOND);
        assert_eq!(parse_duration("7d").unwrap(), 7 * 86_400 * SECOND);
        assert_eq!(parse_duration("1w").unwrap(), 7 * 86_400 * SECOND);
        assert!(parse_duration("d").is_err());
        assert!(parse_duration("12").is_err());
        assert!(parse_duration("99999999999999999w").is_err());
        assert_eq!(format_duration(90 * SECOND), "90s");
        assert_eq!(format_duration(86_400 * SECOND), "1d");
    }

    #[test]
    fn stages_map_activities_in_order() {
        let mut s = Stages::new(vec!["awareness".into(), "purchase".into()]);
        s.assign("ad", "awareness").unwrap();
        s.assign("buy", "purchase").unwrap();
        assert_eq!(s.stage_of("buy"), Some("purchase"));
        assert_eq!(s.stage_index("ad"), Some(0));
        assert_eq!(s.stage_of("other"), None);
        assert!(s.assign("x", "nowhere").is_err());
    }
}
