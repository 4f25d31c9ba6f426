//! Columnar journeys: what the engine reads. One value per partition: its customers in
//! order, each with a range of events sorted by time (equal times in arrival order), and the event columns a
//! query asked for. Plain data, no IO: the store builds it, the engine reads it.

use crate::{CustomerId, ProjectId};
use std::collections::{BTreeMap, HashMap};

mod codes;
mod nums;

pub use codes::Codes;
pub use nums::Nums;

/// A dictionary of text values: code `i` stands for `values[i]`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Dictionary {
    pub values: Vec<String>,
    index: HashMap<String, u32>,
}

impl Dictionary {
    pub fn code(&mut self, value: &str) -> u32 {
        if let Some(&c) = self.index.get(value) {
            return c;
        }
        let c = self.values.len() as u32;
        self.values.push(value.to_string());
        self.index.insert(value.to_string(), c);
        c
    }
    pub fn get(&self, value: &str) -> Option<u32> {
        self.index.get(value).copied()
    }
    pub fn len(&self) -> usize {
        self.values.len()
    }
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }
    pub fn heap_bytes(&self) -> usize {
        self.values.iter().map(|v| 2 * (v.len() + 24) + 8).sum()
    }
}

/// An event property loaded as a column.
#[derive(Clone, Debug, PartialEq)]
pub enum PropertyColumn {
    /// NaN where the event has no such property (or a non-number).
    Num(Nums),
    /// Code 0 where the event has no such property; code `c > 0` is `dict.values[c - 1]`.
    Text { codes: Codes, dict: Dictionary },
}

impl PropertyColumn {
    pub fn heap_bytes(&self) -> usize {
        match self {
            PropertyColumn::Num(v) => v.heap_bytes(),
            PropertyColumn::Text { codes, dict } => codes.heap_bytes() + dict.heap_bytes(),
        }
    }
}

/// Which columns beyond customer, time, activity and channel to load.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ScanSpec {
    pub properties: Vec<String>,
    /// Traits as they were sent on each event (a customer's latest is the last present).
    pub traits: Vec<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Journeys {
    pub project: ProjectId,
    pub partition: u32,
    pub customers: Vec<CustomerId>,
    /// `offsets[i]..offsets[i + 1]` are customer `i`'s events.
    pub offsets: Vec<u32>,
    /// Microseconds since the epoch, UTC. Equal times keep arrival order.
    pub ts: Vec<i64>,
    pub activity: Codes,
    pub activities: Dictionary,
    pub channel: Vec<u16>,
    pub channels: Dictionary,
    pub properties: BTreeMap<String, PropertyColumn>,
    pub traits: BTreeMap<String, PropertyColumn>,
}

impl Journeys {
    pub fn events(&self) -> usize {
        self.ts.len()
    }

    pub fn customer_range(&self, i: usize) -> std::ops::Range<usize> {
        self.offsets[i] as usize..self.offsets[i + 1] as usize
    }

    /// Memory held by this value, for the per-event memory figure.
    pub fn heap_bytes(&self) -> usize {
        self.customers.len() * 8
            + self.offsets.len() * 4
            + self.ts.len() * (8 + 2)
            + self.activity.heap_bytes()
            + self.activities.heap_bytes()
            + self.channels.heap_bytes()
            + self
                .properties
                .values()
                .chain(self.traits.values())
                .map(PropertyColumn::heap_bytes)
                .sum::<usize>()
    }
}
