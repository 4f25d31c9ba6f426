//! The canonical touchpoint event and its JSON form (DESIGN.md §3).

use crate::value::Text;
use crate::value::{normalized_property, MAX_NAME_LEN};
use crate::{Channel, Identifier, IdentifierKind, Timestamp, Value};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

pub type Properties = BTreeMap<Text, Value>;

/// One thing that happened to a customer on a channel.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Client-chosen id used to de-duplicate retries.
    pub event_id: Option<Text>,
    pub timestamp: Timestamp,
    /// Sorted and free of duplicates; never empty.
    pub identifiers: Vec<Identifier>,
    pub channel: Channel,
    pub activity: Text,
    pub properties: Properties,
    pub traits: Properties,
}

/// A validation failure: which field, and why.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct ValidationError {
    /// A path into the event, e.g. `properties.sentiment` or `identifiers.email`.
    pub field: String,
    pub reason: String,
}

impl ValidationError {
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        ValidationError {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

pub const MAX_EVENT_ID_LEN: usize = 256;
pub const MAX_ACTIVITY_LEN: usize = 256;
const MAX_NESTING: usize = 4;

impl Event {
    /// A new event with one identifier; the builder methods add the rest.
    pub fn new(
        timestamp: Timestamp,
        identifier: Identifier,
        channel: Channel,
        activity: impl Into<Text>,
    ) -> Event {
        Event {
            event_id: None,
            timestamp,
            identifiers: vec![identifier],
            channel,
            activity: activity.into(),
            properties: Properties::new(),
            traits: Properties::new(),
        }
    }

    pub fn with_identifier(mut self, identifier: Identifier) -> Event {
        self.add_identifier(identifier);
        self
    }

    pub fn add_identifier(&mut self, identifier: Identifier) {
        if let Err(pos) = self.identifiers.binary_search(&identifier) {
            self.identifiers.insert(pos, identifier);
        }
    }

    pub fn with_property(mut self, name: &str, value: Value) -> Event {
        self.properties.insert(name.into(), value);
        self
    }

    pub fn with_trait(mut self, name: &str, value: Value) -> Event {
        self.traits.insert(name.into(), value);
        self
    }

    pub fn property(&self, name: &str) -> Option<&Value> {
        self.properties.get(name)
    }

    /// Checks the invariants that events built in code (importers, the demo generator)
    /// must hold too: an identifier, a sane activity, typed well-known properties.
    pub fn validate(mut self) -> Result<Event, ValidationError> {
        self.normalize()?;
        Ok(self)
    }

    /// [`Event::validate`] in place. On error the event is left as received (apart from
    /// identifier order), so it can be kept as a dead letter.
    pub fn normalize(&mut self) -> Result<(), ValidationError> {
        if self.identifiers.is_empty() {
            return Err(ValidationError::new(
                "identifiers",
                "at least one identifier is required",
            ));
        }
        self.identifiers.sort();
        self.identifiers.dedup();
        let activity = check_activity(&self.activity)?;
        if let Some(id) = &self.event_id {
            check_event_id(id)?;
        }
        let mut rewrites = Vec::new();
        for (name, value) in &self.properties {
            check_name("properties", name)?;
            match normalized_property(name, value) {
                Ok(None) => {}
                Ok(Some(v)) => rewrites.push((name.clone(), v)),
                Err(r) => return Err(ValidationError::new(format!("properties.{name}"), r)),
            }
        }
        for name in self.traits.keys() {
            check_name("traits", name)?;
        }
        // Only now that everything passed are values rewritten into their normal forms.
        self.properties.extend(rewrites);
        if activity != self.activity {
            self.activity = activity.into();
        }
        Ok(())
    }

    /// Reads the canonical JSON form. Unknown top-level fields are refused so that a
    /// misspelt `timestmap` is an error rather than a silently missing field.
    pub fn from_json(json: &serde_json::Value) -> Result<Event, ValidationError> {
        let obj = json
            .as_object()
            .ok_or_else(|| ValidationError::new("event", "expected a JSON object"))?;
        for key in obj.keys() {
            if !matches!(
                key.as_str(),
                "event_id"
                    | "timestamp"
                    | "identifiers"
                    | "channel"
                    | "activity"
                    | "properties"
                    | "traits"
            ) {
                return Err(ValidationError::new(
                    key.as_str(),
                    "unknown field (expected event_id, timestamp, identifiers, channel, activity, properties, traits)",
                ));
            }
        }
        let event_id = match obj.get("event_id") {
            None | Some(serde_json::Value::Null) => None,
            Some(serde_json::Value::String(s)) => Some(s.as_str().into()),
            Some(serde_json::Value::Number(n)) => Some(n.to_string().into()),
            Some(_) => return Err(ValidationError::new("event_id", "expected a string")),
        };
        let timestamp = match obj.get("timestamp") {
            None | Some(serde_json::Value::Null) => {
                return Err(ValidationError::new("timestamp", "missing"))
            }
            Some(serde_json::Value::String(s)) => Timestamp::parse(s),
            Some(serde_json::Value::Number(n)) => {
                Timestamp::from_epoch_number(n.as_f64().unwrap_or(f64::NAN))
            }
            Some(_) => {
                return Err(ValidationError::new(
                    "timestamp",
                    "expected an RFC 3339 string or epoch seconds/milliseconds",
                ))
            }
        }
        .map_err(|e| ValidationError::new("timestamp", e.to_string()))?;

        let mut identifiers = Vec::new();
        match obj.get("identifiers") {
            Some(serde_json::Value::Object(ids)) => {
                for (kind, value) in ids {
                    let field = format!("identifiers.{kind}");
                    let kind_parsed = IdentifierKind::parse(kind)
                        .map_err(|e| ValidationError::new(&field, e.to_string()))?;
                    let raw = match value {
                        serde_json::Value::Null => continue,
                        serde_json::Value::String(s) => s.clone(),
                        serde_json::Value::Number(n) => n.to_string(),
                        _ => return Err(ValidationError::new(field, "expected a string")),
                    };
                    let id = Identifier::new(kind_parsed, &raw)
                        .map_err(|e| ValidationError::new(&field, e.to_string()))?;
                    identifiers.push(id);
                }
            }
            None | Some(serde_json::Value::Null) => {}
            Some(_) => {
                return Err(ValidationError::new(
                    "identifiers",
                    "expected an object of kind → value",
                ))
            }
        }
        let channel = match obj.get("channel") {
            Some(serde_json::Value::String(s)) => {
                Channel::parse(s).map_err(|e| ValidationError::new("channel", e.to_string()))?
            }
            None | Some(serde_json::Value::Null) => {
                return Err(ValidationError::new("channel", "missing"))
            }
            Some(_) => return Err(ValidationError::new("channel", "expected a string")),
        };
        let activity = match obj.get("activity") {
            Some(serde_json::Value::String(s)) => s.clone(),
            None | Some(serde_json::Value::Null) => {
                return Err(ValidationError::new("activity", "missing"))
            }
            Some(_) => return Err(ValidationError::new("activity", "expected a string")),
        };
        let properties = read_values("properties", obj.get("properties"))?;
        let traits = read_values("traits", obj.get("traits"))?;
        Event {
            event_id,
            timestamp,
            identifiers,
            channel,
            activity: activity.into(),
            properties,
            traits,
        }
        .validate()
    }

    /// The canonical JSON form; `from_json(to_json(e)) == e` for every valid event.
    pub fn to_json(&self) -> serde_json::Value {
        let mut obj = serde_json::Map::new();
        if let Some(id) = &self.event_id {
            obj.insert("event_id".into(), id.as_str().into());
        }
        obj.insert("timestamp".into(), self.timestamp.to_rfc3339().into());
        let ids: serde_json::Map<String, serde_json::Value> = self
            .identifiers
            .iter()
            .map(|i| {
                (
                    i.kind.as_str().into_owned(),
                    serde_json::Value::String(i.value.clone()),
                )
            })
            .collect();
        obj.insert("identifiers".into(), ids.into());
        obj.insert("channel".into(), self.channel.as_str().into());
        obj.insert("activity".into(), self.activity.as_str().into());
        if !self.properties.is_empty() {
            obj.insert("properties".into(), values_to_json(&self.properties));
        }
        if !self.traits.is_empty() {
            obj.insert("traits".into(), values_to_json(&self.traits));
        }
        serde_json::Value::Object(obj)
    }
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.to_json())
    }
}

pub fn values_to_json(values: &Properties) -> serde_json::Value {
    serde_json::Value::Object(
        values
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_json()))
            .collect(),
    )
}

fn check_activity(activity: &str) -> Result<String, ValidationError> {
    let a = activity.trim();
    if a.is_empty() {
        return Err(ValidationError::new("activity", "empty"));
    }
    if a.chars().count() > MAX_ACTIVITY_LEN {
        return Err(ValidationError::new(
            "activity",
            format!("longer than {MAX_ACTIVITY_LEN} characters"),
        ));
    }
    if a.chars().any(char::is_control) {
        return Err(ValidationError::new(
            "activity",
            "contains control characters",
        ));
    }
    Ok(a.to_string())
}

fn check_event_id(id: &str) -> Result<(), ValidationError> {
    if id.is_empty() {
        return Err(ValidationError::new("event_id", "empty"));
    }
    if id.len() > MAX_EVENT_ID_LEN {
        return Err(ValidationError::new(
            "event_id",
            format!("longer than {MAX_EVENT_ID_LEN} bytes"),
        ));
    }
    Ok(())
}

fn check_name(section: &str, name: &str) -> Result<(), ValidationError> {
    if name.is_empty() || name.len() > MAX_NAME_LEN || name.chars().any(char::is_control) {
        return Err(ValidationError::new(
            format!("{section}.{name}"),
            format!("names must be 1 to {MAX_NAME_LEN} bytes without control characters"),
        ));
    }
    Ok(())
}

/// Reads a properties/traits object. Nested objects are flattened with dotted names
/// (`address.city`), arrays are kept as their JSON text, nulls are dropped.
fn read_values(
    section: &str,
    json: Option<&serde_json::Value>,
) -> Result<Properties, ValidationError> {
    let mut out = Properties::new();
    match json {
        None | Some(serde_json::Value::Null) => {}
        Some(serde_json::Value::Object(map)) => flatten(section, "", map, 0, &mut out)?,
        Some(_) => return Err(ValidationError::new(section, "expected an object")),
    }
    Ok(out)
}

fn flatten(
    section: &str,
    prefix: &str,
    map: &serde_json::Map<String, serde_json::Value>,
    depth: usize,
    out: &mut Properties,
) -> Result<(), ValidationError> {
    for (k, v) in map {
        let name = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        let value = match v {
            serde_json::Value::Null => continue,
            serde_json::Value::String(s) => Value::Str(s.as_str().into()),
            serde_json::Value::Bool(b) => Value::Bool(*b),
            serde_json::Value::Number(n) => match n.as_f64() {
                Some(f) if f.is_finite() => Value::Num(f),
                _ => {
                    return Err(ValidationError::new(
                        format!("{section}.{name}"),
                        "number out of range",
                    ))
                }
            },
            serde_json::Value::Array(_) => Value::Str(v.to_string().into()),
            serde_json::Value::Object(inner) => {
                if depth + 1 >= MAX_NESTING {
                    return Err(ValidationError::new(
                        format!("{section}.{name}"),
                        format!("nested deeper than {MAX_NESTING} levels"),
                    ));
                }
                flatten(section, &name, inner, depth + 1, out)?;
                continue;
            }
        };
        out.insert(name.into(), value);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn design_example() -> serde_json::Value {
        json!({
          "event_id": "e-1",
          "timestamp": "2026-03-01T10:15:00Z",
          "identifiers": {"email": "Ana@Example.com", "phone": "+1 555 123 4567", "anonymous_id": "a-91"},
          "channel": "web",
          "activity": "payment_failed",
          "properties": {
            "outcome": "failure", "sentiment": -0.4, "wait_seconds": 0, "duration_seconds": 35,
            "device": "mobile", "os": "iOS", "browser": "Safari", "department": "billing",
            "agent": "a-17", "topic": "billing", "value": 0, "ticket_id": "T-88", "order_id": null
          },
          "traits": {"age_band": "35-44", "region": "EU", "plan": "premium"}
        })
    }

    #[test]
    fn reads_the_design_example_and_round_trips() {
        let e = Event::from_json(&design_example()).unwrap();
        assert_eq!(e.identifiers.len(), 3);
        assert_eq!(e.channel, Channel::Web);
        assert!(!e.properties.contains_key("order_id"));
        assert_eq!(e.property("sentiment"), Some(&Value::Num(-0.4)));
        let again = Event::from_json(&e.to_json()).unwrap();
        assert_eq!(again, e);
    }

    #[test]
    fn every_error_names_its_field() {
        let cases = [
            ("timestamp", json!("soon"), "timestamp"),
            ("channel", json!(""), "channel"),
            ("activity", json!(7), "activity"),
            ("identifiers", json!({"email": "nope"}), "identifiers.email"),
            ("identifiers", json!({}), "identifiers"),
            (
                "properties",
                json!({"sentiment": 4}),
                "properties.sentiment",
            ),
            (
                "properties",
                json!({"outcome": "great"}),
                "properties.outcome",
            ),
            (
                "properties",
                json!({"a": {"b": {"c": {"d": {"e": 1}}}}}),
                "properties.a.b.c.d",
            ),
            ("timestmap", json!("x"), "timestmap"),
        ];
        for (key, value, field) in cases {
            let mut j = design_example();
            j[key] = value;
            let err = Event::from_json(&j).unwrap_err();
            assert_eq!(err.field, field, "{key}: {err}");
        }
    }

    #[test]
    fn nested_objects_flatten() {
        let mut j = design_example();
        j["traits"] = json!({"address": {"city": "Lyon"}, "tags": ["a", "b"]});
        let e = Event::from_json(&j).unwrap();
        assert_eq!(e.traits["address.city"], Value::Str("Lyon".into()));
        assert_eq!(e.traits["tags"], Value::Str("[\"a\",\"b\"]".into()));
    }
}
