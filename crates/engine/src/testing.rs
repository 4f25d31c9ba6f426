//! Test fixtures: journeys written in a small DSL, built into partitions.
//!
//! ```text
//! ana: view > cart > buy
//! bob[plan=premium]: web:view@0 > phone:call@+2h{outcome=resolved} > buy@1d
//! ```
//!
//! One customer per line (lines starting with `#` are comments; blank lines are ignored). A line is
//! `NAME[trait=value,…]: EVENT > EVENT > …`, customers get ids 1, 2, … in line order and the
//! traits are sent on their first event. An event is `[channel:]activity[@TIME][{k=v,…}]`:
//! the channel defaults to `web`; `@TIME` is an offset from the fixture's base time
//! ([`BASE`], 2024-01-01T00:00:00Z) such as `@0`, `@90s`, `@2h`, `@1d`, or `@+30m` for an offset
//! from the customer's previous event; without it an event comes one minute after the
//! previous one (the first at the base). Properties are text, except that values written
//! `#number` (`{amount=#12.5}`) load as a numeric column. Events of a customer must be in
//! time order (ties keep their written order).

use crate::query::parse_duration;
use omnitrail_model::journeys::{Dictionary, Journeys, PropertyColumn};
use omnitrail_model::{CustomerId, ProjectId};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// 2024-01-01T00:00:00Z in µs.
pub const BASE: i64 = 1_704_067_200_000_000;

const MINUTE: i64 = 60_000_000;

/// A property value in a fixture.
#[derive(Clone, Debug, PartialEq)]
pub enum FixtureValue {
    Text(String),
    Num(f64),
}

#[derive(Clone, Debug, PartialEq)]
pub struct FixtureEvent {
    pub ts: i64,
    pub channel: String,
    pub activity: String,
    pub properties: BTreeMap<String, FixtureValue>,
    pub traits: BTreeMap<String, String>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct FixtureCustomer {
    pub name: String,
    pub id: CustomerId,
    pub events: Vec<FixtureEvent>,
}

/// Customers with their events, in customer id order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Fixture {
    pub customers: Vec<FixtureCustomer>,
}

impl Fixture {
    /// Parses the DSL; panics with the line and reason on a mistake (fixtures are test code).
    pub fn parse(text: &str) -> Fixture {
        let mut customers = Vec::new();
        for (n, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let fail = |why: &str| -> ! { fixture_error(n + 1, raw, why) };
            let (head, body) = line
                .split_once(':')
                .unwrap_or_else(|| fail("expected NAME: ..."));
            let (name, traits) = match head.split_once('[') {
                Some((name, rest)) => {
                    let inner = rest
                        .strip_suffix(']')
                        .unwrap_or_else(|| fail("unclosed trait list"));
                    (name.trim(), pairs(inner).unwrap_or_else(|e| fail(&e)))
                }
                None => (head.trim(), Vec::new()),
            };
            let mut events = Vec::new();
            let mut prev: Option<i64> = None;
            for token in body.split('>').map(str::trim).filter(|t| !t.is_empty()) {
                let ev = parse_event(token, prev).unwrap_or_else(|e| fail(&e));
                if prev.is_some_and(|p| ev.ts < p) {
                    fail("events must be in time order");
                }
                prev = Some(ev.ts);
                events.push(ev);
            }
            if let Some(first) = events.first_mut() {
                first.traits = traits
                    .into_iter()
                    .map(|(k, v)| match v {
                        FixtureValue::Text(t) => (k, t),
                        FixtureValue::Num(x) => (k, x.to_string()),
                    })
                    .collect();
            }
            customers.push(FixtureCustomer {
                name: name.to_string(),
                id: CustomerId(customers.len() as u64 + 1),
                events,
            });
        }
        Fixture { customers }
    }

    /// Customer `i` (0-based, id order) goes to partition `i % partitions`.
    pub fn partitions(&self, partitions: usize) -> Vec<Arc<Journeys>> {
        self.partitions_by(partitions, |i| i % partitions.max(1))
    }

    /// Customer `i` goes to partition `assign(i)` (< `partitions`); empty partitions stay.
    pub fn partitions_by(
        &self,
        partitions: usize,
        assign: impl Fn(usize) -> usize,
    ) -> Vec<Arc<Journeys>> {
        let mut groups: Vec<Vec<&FixtureCustomer>> = vec![Vec::new(); partitions.max(1)];
        for (i, c) in self.customers.iter().enumerate() {
            groups[assign(i)].push(c);
        }
        // Like the store, every partition has a column for every property and trait of the
        // fixture, numeric when any event gives that property a number.
        let all = self.customers.iter().flat_map(|c| &c.events);
        let mut props: BTreeMap<String, bool> = BTreeMap::new();
        let mut traits: BTreeSet<String> = BTreeSet::new();
        for e in all {
            for (k, v) in &e.properties {
                *props.entry(k.clone()).or_default() |= matches!(v, FixtureValue::Num(_));
            }
            traits.extend(e.traits.keys().cloned());
        }
        groups
            .into_iter()
            .enumerate()
            .map(|(p, cs)| Arc::new(build(p as u32, &cs, &props, &traits)))
            .collect()
    }

    pub fn customer(&self, name: &str) -> CustomerId {
        self.customers
            .iter()
            .find(|c| c.name == name)
            .unwrap_or_else(|| panic!("no fixture customer named {name}"))
            .id
    }
}

fn fixture_error(line: usize, raw: &str, why: &str) -> ! {
    panic!("fixture line {line}: {why}: {raw}")
}

fn pairs(text: &str) -> Result<Vec<(String, FixtureValue)>, String> {
    text.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p
                .split_once('=')
                .ok_or_else(|| format!("expected key=value, found '{p}'"))?;
            let v = v.trim();
            let value = match v.strip_prefix('#') {
                Some(num) => FixtureValue::Num(
                    num.parse()
                        .map_err(|_| format!("'{num}' is not a number"))?,
                ),
                None => FixtureValue::Text(v.to_string()),
            };
            Ok((k.trim().to_string(), value))
        })
        .collect()
}

fn parse_event(token: &str, prev: Option<i64>) -> Result<FixtureEvent, String> {
    let (token, properties) = match token.split_once('{') {
        Some((t, rest)) => {
            let inner = rest
                .strip_suffix('}')
                .ok_or_else(|| format!("unclosed property list in '{token}'"))?;
            (t.trim(), pairs(inner)?.into_iter().collect())
        }
        None => (token, BTreeMap::new()),
    };
    let (token, ts) = match token.split_once('@') {
        Some((t, time)) => {
            let time = time.trim();
            let ts = if let Some(rel) = time.strip_prefix('+') {
                prev.unwrap_or(BASE) + offset(rel)?
            } else {
                BASE + offset(time)?
            };
            (t.trim(), ts)
        }
        None => (token, prev.map_or(BASE, |p| p + MINUTE)),
    };
    let (channel, activity) = match token.split_once(':') {
        Some((c, a)) => (c.trim(), a.trim()),
        None => ("web", token.trim()),
    };
    if activity.is_empty() || channel.is_empty() {
        return Err(format!("empty activity or channel in '{token}'"));
    }
    Ok(FixtureEvent {
        ts,
        channel: channel.to_string(),
        activity: activity.to_string(),
        properties,
        traits: BTreeMap::new(),
    })
}

fn offset(text: &str) -> Result<i64, String> {
    if text == "0" {
        return Ok(0);
    }
    parse_duration(text).map_err(|e| e.to_string())
}

/// Builds one partition. Dictionaries get codes in first-seen order, so different partitions
/// code the same values differently, as the store's do.
fn build(
    partition: u32,
    customers: &[&FixtureCustomer],
    props: &BTreeMap<String, bool>,
    trait_names: &BTreeSet<String>,
) -> Journeys {
    let mut sorted: Vec<&FixtureCustomer> = customers.to_vec();
    sorted.sort_by_key(|c| c.id);
    let events: Vec<&FixtureEvent> = sorted.iter().flat_map(|c| &c.events).collect();
    let mut offsets = vec![0u32];
    for c in &sorted {
        offsets.push(offsets.last().copied().unwrap_or(0) + c.events.len() as u32);
    }
    let mut activities = Dictionary::default();
    let mut channels = Dictionary::default();
    let activity = events
        .iter()
        .map(|e| activities.code(&e.activity))
        .collect();
    let channel = events
        .iter()
        .map(|e| channels.code(&e.channel) as u16)
        .collect();

    let mut properties = BTreeMap::new();
    for (name, &numeric) in props {
        let column = if numeric {
            PropertyColumn::Num(
                events
                    .iter()
                    .map(|e| match e.properties.get(name) {
                        Some(FixtureValue::Num(x)) => *x,
                        Some(FixtureValue::Text(t)) => t.parse().unwrap_or(f64::NAN),
                        None => f64::NAN,
                    })
                    .collect(),
            )
        } else {
            text_column(events.iter().map(|e| match e.properties.get(name) {
                Some(FixtureValue::Text(t)) => Some(t.as_str()),
                _ => None,
            }))
        };
        properties.insert(name.clone(), column);
    }
    let traits = trait_names
        .iter()
        .map(|name| {
            (
                name.clone(),
                text_column(
                    events
                        .iter()
                        .map(|e| e.traits.get(name).map(String::as_str)),
                ),
            )
        })
        .collect();

    Journeys {
        project: ProjectId::DEFAULT,
        partition,
        customers: sorted.iter().map(|c| c.id).collect(),
        offsets,
        ts: events.iter().map(|e| e.ts).collect(),
        activity,
        activities,
        channel,
        channels,
        properties,
        traits,
    }
}

fn text_column<'a>(values: impl Iterator<Item = Option<&'a str>>) -> PropertyColumn {
    let mut dict = Dictionary::default();
    let codes = values.map(|v| v.map_or(0, |v| dict.code(v) + 1)).collect();
    PropertyColumn::Text { codes, dict }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dsl_builds_partitions_with_their_own_dictionaries() {
        let f = Fixture::parse(
            "# two customers\n\
             ana: view > cart > buy\n\
             bob[plan=premium]: phone:call@1h > web:buy@+2h{outcome=success, amount=#12.5}\n",
        );
        assert_eq!(f.customer("bob"), CustomerId(2));
        let parts = f.partitions(2);
        assert_eq!(parts.len(), 2);
        let (a, b) = (&parts[0], &parts[1]);
        assert_eq!(a.customers, [CustomerId(1)]);
        assert_eq!(a.ts, [BASE, BASE + MINUTE, BASE + 2 * MINUTE]);
        assert_eq!(b.ts, [BASE + 60 * MINUTE, BASE + 180 * MINUTE]);
        assert_eq!(b.activities.values, ["call", "buy"]);
        assert_eq!(b.channels.values, ["phone", "web"]);
        assert!(matches!(&b.properties["amount"], PropertyColumn::Num(v) if v.get(1) == 12.5));
        match &b.traits["plan"] {
            PropertyColumn::Text { codes, dict } => {
                assert_eq!(codes.iter().collect::<Vec<_>>(), [1, 0]);
                assert_eq!(dict.values, ["premium"]);
            }
            other => panic!("expected text, got {other:?}"),
        }
    }
}
