//! Typed property and trait values, and the well-known properties of the design.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Short text stored inline (up to 24 bytes) instead of on the heap: property names and
/// most values (`iOS`, `billing`, `a-17`) are short, and an event holds a dozen of them.
/// It serializes exactly like `String`, so stored formats do not depend on it.
pub type Text = compact_str::CompactString;

/// A property or trait value. Nulls are not values: a null property is simply absent.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Value {
    Str(Text),
    Num(f64),
    Bool(bool),
}

impl Value {
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Num(n) => Some(*n),
            _ => None,
        }
    }
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Value::Str(s) => serde_json::Value::String(s.to_string()),
            Value::Num(n) => serde_json::Number::from_f64(*n)
                .map(serde_json::Value::Number)
                .unwrap_or(serde_json::Value::Null),
            Value::Bool(b) => serde_json::Value::Bool(*b),
        }
    }
    /// Guesses the type of a text cell (CSV, XES strings): number, bool, or string.
    pub fn infer(text: &str) -> Value {
        let t = text.trim();
        if let Ok(n) = t.parse::<f64>() {
            // "nan"/"inf" parse as floats but are not numbers anyone wrote on purpose.
            if n.is_finite() && t.bytes().any(|b| b.is_ascii_digit()) {
                return Value::Num(n);
            }
        }
        match t {
            "true" | "TRUE" | "True" => Value::Bool(true),
            "false" | "FALSE" | "False" => Value::Bool(false),
            _ => Value::Str(text.into()),
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Str(s) => f.write_str(s),
            Value::Num(n) => write!(f, "{n}"),
            Value::Bool(b) => write!(f, "{b}"),
        }
    }
}

/// How an event ended, as the design defines `outcome`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Outcome {
    Success,
    Failure,
    Abandoned,
    Escalated,
    Resolved,
}

impl Outcome {
    pub const ALL: [Outcome; 5] = [
        Outcome::Success,
        Outcome::Failure,
        Outcome::Abandoned,
        Outcome::Escalated,
        Outcome::Resolved,
    ];
    pub fn parse(s: &str) -> Option<Outcome> {
        Outcome::ALL
            .into_iter()
            .find(|o| o.as_str().eq_ignore_ascii_case(s.trim()))
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failure => "failure",
            Outcome::Abandoned => "abandoned",
            Outcome::Escalated => "escalated",
            Outcome::Resolved => "resolved",
        }
    }
}

/// The type a well-known property must have.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WellKnownType {
    Outcome,
    /// A number in [-1, 1].
    Sentiment,
    /// A finite number ≥ 0.
    Seconds,
    /// Any finite number.
    Amount,
    /// A string; numbers are not accepted (an OS is never 7).
    Text,
    /// A string id; integers are accepted and kept as their decimal text.
    Id,
}

/// The properties with fixed meaning and type (DESIGN.md §3).
pub const WELL_KNOWN_PROPERTIES: [(&str, WellKnownType); 14] = [
    ("outcome", WellKnownType::Outcome),
    ("sentiment", WellKnownType::Sentiment),
    ("wait_seconds", WellKnownType::Seconds),
    ("duration_seconds", WellKnownType::Seconds),
    ("device", WellKnownType::Text),
    ("os", WellKnownType::Text),
    ("browser", WellKnownType::Text),
    ("department", WellKnownType::Text),
    ("agent", WellKnownType::Text),
    ("topic", WellKnownType::Text),
    ("value", WellKnownType::Amount),
    ("ticket_id", WellKnownType::Id),
    ("order_id", WellKnownType::Id),
    ("lifecycle", WellKnownType::Text),
];

pub fn well_known_type(name: &str) -> Option<WellKnownType> {
    well_known_index(name).map(|i| WELL_KNOWN_PROPERTIES[i].1)
}

/// The position of a well-known property in [`WELL_KNOWN_PROPERTIES`]. A `match` rather
/// than a scan: it runs once per property of every event on ingest and compaction.
pub fn well_known_index(name: &str) -> Option<usize> {
    Some(match name {
        "outcome" => 0,
        "sentiment" => 1,
        "wait_seconds" => 2,
        "duration_seconds" => 3,
        "device" => 4,
        "os" => 5,
        "browser" => 6,
        "department" => 7,
        "agent" => 8,
        "topic" => 9,
        "value" => 10,
        "ticket_id" => 11,
        "order_id" => 12,
        "lifecycle" => 13,
        _ => return None,
    })
}

pub const MAX_STRING_VALUE_LEN: usize = 8 * 1024;
pub const MAX_NAME_LEN: usize = 128;

/// The size limit every string value is held to.
pub fn check_value_size(value: &Value) -> Result<(), String> {
    match value {
        Value::Str(s) if s.len() > MAX_STRING_VALUE_LEN => Err(format!(
            "string is {} bytes, more than the limit of {MAX_STRING_VALUE_LEN}",
            s.len()
        )),
        _ => Ok(()),
    }
}

/// Checks (and normalizes) a property value against its well-known type, if it has one.
/// The error is the reason alone; callers add the field path.
pub fn check_property(name: &str, value: Value) -> Result<Value, String> {
    Ok(normalized_property(name, &value)?.unwrap_or(value))
}

/// Checks a property value without taking it: `Ok(None)` means it is fine as it is,
/// `Ok(Some(v))` that its normal form is `v` (e.g. `Failure` → `failure`).
pub fn normalized_property(name: &str, value: &Value) -> Result<Option<Value>, String> {
    check_value_size(value)?;
    let Some(ty) = well_known_type(name) else {
        return Ok(None);
    };
    match (ty, value) {
        (WellKnownType::Outcome, Value::Str(s)) => match Outcome::parse(s) {
            Some(o) if o.as_str() == s => Ok(None),
            Some(o) => Ok(Some(Value::Str(o.as_str().into()))),
            None => Err(format!(
                "'{s}' is not an outcome (success, failure, abandoned, escalated, resolved)"
            )),
        },
        (WellKnownType::Sentiment, Value::Num(n)) if (-1.0..=1.0).contains(n) => Ok(None),
        (WellKnownType::Sentiment, v) => {
            Err(format!("{v} is not a sentiment (a number from -1 to 1)"))
        }
        (WellKnownType::Seconds, Value::Num(n)) if n.is_finite() && *n >= 0.0 => Ok(None),
        (WellKnownType::Seconds, v) => Err(format!(
            "{v} is not a duration (a number of seconds, 0 or more)"
        )),
        (WellKnownType::Amount, Value::Num(n)) if n.is_finite() => Ok(None),
        (WellKnownType::Amount, v) => Err(format!("{v} is not a number")),
        (WellKnownType::Text | WellKnownType::Id, Value::Str(_)) => Ok(None),
        (WellKnownType::Id, Value::Num(n)) if n.fract() == 0.0 && n.abs() < 9e15 => Ok(Some(
            Value::Str(compact_str::format_compact!("{}", *n as i64)),
        )),
        (WellKnownType::Outcome | WellKnownType::Text | WellKnownType::Id, v) => {
            Err(format!("{v} is not a string"))
        }
    }
}

/// Reads a text cell (CSV, XES) as the value a property of this name should have:
/// well-known properties get their own type, others a guessed one.
pub fn property_from_text(name: &str, text: &str) -> Result<Value, String> {
    let value = match well_known_type(name) {
        Some(WellKnownType::Text | WellKnownType::Id | WellKnownType::Outcome) => {
            Value::Str(text.trim().into())
        }
        Some(_) => match text.trim().parse::<f64>() {
            Ok(n) => Value::Num(n),
            Err(_) => return Err(format!("'{}' is not a number", text.trim())),
        },
        None => Value::infer(text),
    };
    check_property(name, value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn well_known_properties_are_typed() {
        assert_eq!(
            check_property("outcome", Value::Str("Failure".into())).unwrap(),
            Value::Str("failure".into())
        );
        assert!(check_property("outcome", Value::Str("meh".into())).is_err());
        assert!(check_property("sentiment", Value::Num(1.5)).is_err());
        assert!(check_property("wait_seconds", Value::Num(-1.0)).is_err());
        assert!(check_property("os", Value::Num(7.0)).is_err());
        assert_eq!(
            check_property("ticket_id", Value::Num(88.0)).unwrap(),
            Value::Str("88".into())
        );
        assert_eq!(
            check_property("anything", Value::Bool(true)).unwrap(),
            Value::Bool(true)
        );
    }

    #[test]
    fn well_known_index_matches_the_table() {
        for (i, (name, _)) in WELL_KNOWN_PROPERTIES.iter().enumerate() {
            assert_eq!(well_known_index(name), Some(i), "{name}");
        }
        assert_eq!(well_known_index("cost"), None);
    }

    #[test]
    fn text_cells_take_the_property_type() {
        assert_eq!(
            property_from_text("agent", "17").unwrap(),
            Value::Str("17".into())
        );
        assert_eq!(
            property_from_text("sentiment", "-0.5").unwrap(),
            Value::Num(-0.5)
        );
        assert!(property_from_text("sentiment", "bad").is_err());
        assert_eq!(property_from_text("cost", "50").unwrap(), Value::Num(50.0));
        assert_eq!(
            property_from_text("note", "nan").unwrap(),
            Value::Str("nan".into())
        );
    }
}
