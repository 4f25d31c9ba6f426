//! Filters and segments compiled against one partition. Every name is resolved to that
//! partition's dictionary codes up front (a value missing from a dictionary simply never
//! matches), so testing an event is a table lookup by code, not a string comparison.

use super::ast::{CmpOp, Field, FilterExpr, Seen, SeenTest, SegmentExpr, Test, Val};
use super::parser::Mentions;
use super::ExprError;
use crate::Stages;
use omnitrail_model::journeys::{Codes, Journeys, Nums, PropertyColumn};

const HOUR: i64 = 3_600_000_000;
const DAY: i64 = 24 * HOUR;
/// Above this many channel × activity pairs, touchpoint tests use the pairs that occur in
/// the partition instead of a dense table.
const DENSE_TOUCHPOINTS: usize = 1 << 16;

/// An event filter evaluated over one partition: one bit per event. It owns its answer
/// instead of borrowing the partition, so callers can keep it beside other per-partition
/// state; the evaluation runs once, at compile time, as table lookups by code.
#[derive(Clone, Debug, PartialEq)]
pub struct CompiledFilter {
    bits: Bits,
}

impl CompiledFilter {
    /// Whether event `event` (an index into the partition's event columns) passes.
    #[inline]
    pub fn matches(&self, event: usize) -> bool {
        self.bits.get(event)
    }

    /// True when no event of the partition passes, so callers may skip it.
    pub fn never_matches(&self) -> bool {
        self.bits == Bits::Const(false)
    }

    /// True when every event passes, so callers may skip testing.
    pub fn always_matches(&self) -> bool {
        self.bits == Bits::Const(true)
    }
}

/// A segment evaluated over one partition: one bit per customer.
#[derive(Clone, Debug, PartialEq)]
pub struct CompiledSegment {
    bits: Bits,
}

impl CompiledSegment {
    /// Whether customer `customer_index` (an index into `Journeys::customers`) belongs to the
    /// segment, judged on their whole journey in this partition.
    #[inline]
    pub fn matches(&self, customer_index: usize) -> bool {
        self.bits.get(customer_index)
    }
}

#[derive(Clone, Debug, PartialEq)]
enum Bits {
    Const(bool),
    Words(Vec<u64>),
}

impl Bits {
    fn build(n: usize, test: impl Fn(usize) -> bool) -> Bits {
        let mut words = vec![0u64; n.div_ceil(64)];
        for (w, word) in words.iter_mut().enumerate() {
            let base = w * 64;
            for bit in 0..64.min(n - base) {
                if test(base + bit) {
                    *word |= 1 << bit;
                }
            }
        }
        Bits::Words(words)
    }

    #[inline]
    fn get(&self, i: usize) -> bool {
        match self {
            Bits::Const(b) => *b,
            Bits::Words(w) => w.get(i / 64).is_some_and(|x| (x >> (i % 64)) & 1 == 1),
        }
    }
}

#[derive(Debug)]
pub(crate) enum FNode<'a> {
    Const(bool),
    /// By activity code; also what stage tests become.
    Activity {
        codes: &'a Codes,
        table: Vec<bool>,
    },
    Channel {
        codes: &'a [u16],
        table: Vec<bool>,
    },
    /// By `channel * activities + activity`.
    Touchpoint {
        activity: &'a Codes,
        channel: &'a [u16],
        activities: usize,
        table: Vec<bool>,
    },
    /// The (channel, activity) pairs that pass, sorted.
    TouchpointPairs {
        activity: &'a Codes,
        channel: &'a [u16],
        pairs: Vec<(u16, u32)>,
    },
    Hour {
        ts: &'a [i64],
        table: [bool; 24],
    },
    Weekday {
        ts: &'a [i64],
        table: [bool; 7],
    },
    /// By text code; index 0 is the missing value.
    Text {
        codes: &'a Codes,
        table: Vec<bool>,
    },
    Num {
        values: &'a Nums,
        test: Test,
        missing: bool,
    },
    Not(Box<FNode<'a>>),
    And(Box<FNode<'a>>, Box<FNode<'a>>),
    Or(Box<FNode<'a>>, Box<FNode<'a>>),
}

pub(crate) fn hour_of(ts: i64) -> u32 {
    ts.div_euclid(HOUR).rem_euclid(24) as u32
}

/// ISO weekday, 1 = Monday; 1970-01-01 was a Thursday.
pub(crate) fn weekday_of(ts: i64) -> u32 {
    (ts.div_euclid(DAY) + 3).rem_euclid(7) as u32 + 1
}

impl FNode<'_> {
    fn eval(&self, e: usize) -> bool {
        match self {
            FNode::Const(b) => *b,
            FNode::Activity { codes, table } => table[codes.get(e) as usize],
            FNode::Channel { codes, table } => table[codes[e] as usize],
            FNode::Touchpoint {
                activity,
                channel,
                activities,
                table,
            } => table[channel[e] as usize * activities + activity.get(e) as usize],
            FNode::TouchpointPairs {
                activity,
                channel,
                pairs,
            } => pairs.binary_search(&(channel[e], activity.get(e))).is_ok(),
            FNode::Hour { ts, table } => table[hour_of(ts[e]) as usize],
            FNode::Weekday { ts, table } => table[weekday_of(ts[e]) as usize - 1],
            FNode::Text { codes, table } => table[codes.get(e) as usize],
            FNode::Num {
                values,
                test,
                missing,
            } => {
                let v = values.get(e);
                if v.is_nan() {
                    *missing
                } else {
                    test.eval(Val::Num(v))
                }
            }
            FNode::Not(a) => !a.eval(e),
            FNode::And(a, b) => a.eval(e) && b.eval(e),
            FNode::Or(a, b) => a.eval(e) || b.eval(e),
        }
    }
}

/// `node` unless the table is uniform, in which case the constant.
fn table_node<'a, T: AsRef<[bool]>>(table: T, node: impl FnOnce(T) -> FNode<'a>) -> FNode<'a> {
    let t = table.as_ref();
    match t.first() {
        Some(&first) if t.iter().all(|&b| b == first) => FNode::Const(first),
        None => FNode::Const(false),
        _ => node(table),
    }
}

fn not<'a>(a: FNode<'a>) -> FNode<'a> {
    match a {
        FNode::Const(b) => FNode::Const(!b),
        a => FNode::Not(Box::new(a)),
    }
}

fn and<'a>(a: FNode<'a>, b: FNode<'a>) -> FNode<'a> {
    match (a, b) {
        (FNode::Const(false), _) | (_, FNode::Const(false)) => FNode::Const(false),
        (FNode::Const(true), x) | (x, FNode::Const(true)) => x,
        (a, b) => FNode::And(Box::new(a), Box::new(b)),
    }
}

fn or<'a>(a: FNode<'a>, b: FNode<'a>) -> FNode<'a> {
    match (a, b) {
        (FNode::Const(true), _) | (_, FNode::Const(true)) => FNode::Const(true),
        (FNode::Const(false), x) | (x, FNode::Const(false)) => x,
        (a, b) => FNode::Or(Box::new(a), Box::new(b)),
    }
}

/// Compile context: the partition and where names were written, for errors.
pub(crate) struct Ctx<'a, 's> {
    pub j: &'a Journeys,
    pub stages: &'s Stages,
    pub mentions: &'s Mentions,
    pub source: &'s str,
}

/// Per text code (0 = missing) whether the test passes.
fn text_table(values: &[String], test: &Test) -> Vec<bool> {
    std::iter::once(test.eval(Val::Missing))
        .chain(values.iter().map(|v| test.eval(Val::Text(v))))
        .collect()
}

fn column_node<'a>(col: &'a PropertyColumn, test: &Test) -> FNode<'a> {
    match col {
        PropertyColumn::Text { codes, dict } => {
            let table = text_table(&dict.values, test);
            table_node(table, |table| FNode::Text { codes, table })
        }
        PropertyColumn::Num(values) => FNode::Num {
            values,
            test: test.clone(),
            missing: test.eval(Val::Missing),
        },
    }
}

impl<'a> Ctx<'a, '_> {
    /// Stage tests need configured stages, and equality tests name one of them: a typo
    /// would otherwise silently match nothing.
    pub fn check_stages(&self) -> Result<(), ExprError> {
        let Some(at) = self.mentions.stage_at else {
            return Ok(());
        };
        if self.stages.is_empty() {
            return Err(ExprError::new(
                self.source,
                at,
                "'stage' needs configured stages: add a [stages] table to omnitrail.toml",
            ));
        }
        for (name, at) in &self.mentions.stage_values {
            if !self.stages.names().contains(name) {
                return Err(ExprError::new(
                    self.source,
                    *at,
                    format!(
                        "unknown stage '{name}' (configured stages: {})",
                        self.stages.names().join(", ")
                    ),
                ));
            }
        }
        Ok(())
    }

    pub fn filter(&self, e: &FilterExpr) -> FNode<'a> {
        let j = self.j;
        match e {
            FilterExpr::Not(a) => not(self.filter(a)),
            FilterExpr::And(a, b) => and(self.filter(a), self.filter(b)),
            FilterExpr::Or(a, b) => or(self.filter(a), self.filter(b)),
            FilterExpr::Test { field, test } => match field {
                Field::Activity => {
                    let table: Vec<bool> = j
                        .activities
                        .values
                        .iter()
                        .map(|a| test.eval(Val::Text(a)))
                        .collect();
                    table_node(table, |table| FNode::Activity {
                        codes: &j.activity,
                        table,
                    })
                }
                Field::Stage => {
                    let table: Vec<bool> = j
                        .activities
                        .values
                        .iter()
                        .map(|a| test.eval(self.stages.stage_of(a).map_or(Val::Missing, Val::Text)))
                        .collect();
                    table_node(table, |table| FNode::Activity {
                        codes: &j.activity,
                        table,
                    })
                }
                Field::Channel => {
                    let table: Vec<bool> = j
                        .channels
                        .values
                        .iter()
                        .map(|c| test.eval(Val::Text(c)))
                        .collect();
                    table_node(table, |table| FNode::Channel {
                        codes: &j.channel,
                        table,
                    })
                }
                Field::Touchpoint => self.touchpoint(test),
                Field::Hour => {
                    let mut table = [false; 24];
                    for (h, slot) in table.iter_mut().enumerate() {
                        *slot = test.eval(Val::Num(h as f64));
                    }
                    table_node(table, |table| FNode::Hour { ts: &j.ts, table })
                }
                Field::Weekday => {
                    let mut table = [false; 7];
                    for (d, slot) in table.iter_mut().enumerate() {
                        *slot = test.eval(Val::Num((d + 1) as f64));
                    }
                    table_node(table, |table| FNode::Weekday { ts: &j.ts, table })
                }
                // A partition without the column has no event with the property.
                Field::Property(name) => match j.properties.get(name) {
                    Some(col) => column_node(col, test),
                    None => FNode::Const(test.eval(Val::Missing)),
                },
            },
        }
    }

    fn touchpoint(&self, test: &Test) -> FNode<'a> {
        let j = self.j;
        let (channels, activities) = (&j.channels.values, &j.activities.values);
        let mut text = String::new();
        let mut passes = |c: usize, a: usize| {
            text.clear();
            text.push_str(&channels[c]);
            text.push(':');
            text.push_str(&activities[a]);
            test.eval(Val::Text(&text))
        };
        if channels.len() * activities.len() <= DENSE_TOUCHPOINTS {
            let mut table = Vec::with_capacity(channels.len() * activities.len());
            for c in 0..channels.len() {
                for a in 0..activities.len() {
                    table.push(passes(c, a));
                }
            }
            return table_node(table, |table| FNode::Touchpoint {
                activity: &j.activity,
                channel: &j.channel,
                activities: activities.len(),
                table,
            });
        }
        let mut seen: Vec<(u16, u32)> = j.channel.iter().copied().zip(j.activity.iter()).collect();
        seen.sort_unstable();
        seen.dedup();
        let pairs: Vec<(u16, u32)> = seen
            .into_iter()
            .filter(|&(c, a)| passes(c as usize, a as usize))
            .collect();
        if pairs.is_empty() {
            return FNode::Const(false);
        }
        FNode::TouchpointPairs {
            activity: &j.activity,
            channel: &j.channel,
            pairs,
        }
    }

    pub fn segment(&self, e: &SegmentExpr, now: i64) -> SNode<'a> {
        let span = |within: &Option<i64>| match within {
            Some(d) => (now.saturating_sub(*d), now),
            None => (i64::MIN, i64::MAX),
        };
        match e {
            SegmentExpr::Not(a) => match self.segment(a, now) {
                SNode::Const(b) => SNode::Const(!b),
                a => SNode::Not(Box::new(a)),
            },
            SegmentExpr::And(a, b) => match (self.segment(a, now), self.segment(b, now)) {
                (SNode::Const(false), _) | (_, SNode::Const(false)) => SNode::Const(false),
                (SNode::Const(true), x) | (x, SNode::Const(true)) => x,
                (a, b) => SNode::And(Box::new(a), Box::new(b)),
            },
            SegmentExpr::Or(a, b) => match (self.segment(a, now), self.segment(b, now)) {
                (SNode::Const(true), _) | (_, SNode::Const(true)) => SNode::Const(true),
                (SNode::Const(false), x) | (x, SNode::Const(false)) => x,
                (a, b) => SNode::Or(Box::new(a), Box::new(b)),
            },
            SegmentExpr::Trait { name, test } => {
                match self.j.traits.get(name) {
                    Some(PropertyColumn::Text { codes, dict }) => SNode::TraitText {
                        codes,
                        table: text_table(&dict.values, test),
                    },
                    Some(PropertyColumn::Num(values)) => SNode::TraitNum {
                        values,
                        test: test.clone(),
                    },
                    // No customer of the partition has the trait.
                    None => SNode::Const(test.eval(Val::Missing)),
                }
            }
            SegmentExpr::Did { filter, within } => {
                let filter = self.filter(filter);
                if matches!(filter, FNode::Const(false)) {
                    SNode::Const(false)
                } else {
                    let (lo, hi) = span(within);
                    SNode::Did { filter, lo, hi }
                }
            }
            SegmentExpr::Count {
                filter,
                within,
                op,
                value,
            } => {
                let (lo, hi) = span(within);
                SNode::Count {
                    filter: self.filter(filter),
                    lo,
                    hi,
                    op: *op,
                    value: *value,
                }
            }
            SegmentExpr::Seen { seen, test } => SNode::Seen {
                last: *seen == Seen::Last,
                test: match *test {
                    SeenTest::Compare(op, ts) => SeenCheck::Compare(op, ts),
                    SeenTest::Within(d) => SeenCheck::Range(now.saturating_sub(d), now),
                },
            },
        }
    }
}

#[derive(Debug)]
pub(crate) enum SeenCheck {
    Compare(CmpOp, i64),
    /// Inclusive.
    Range(i64, i64),
}

#[derive(Debug)]
pub(crate) enum SNode<'a> {
    Const(bool),
    /// By text code of the customer's last present value; index 0 is missing.
    TraitText {
        codes: &'a Codes,
        table: Vec<bool>,
    },
    TraitNum {
        values: &'a Nums,
        test: Test,
    },
    /// Some event in `[lo, hi]` passes the filter.
    Did {
        filter: FNode<'a>,
        lo: i64,
        hi: i64,
    },
    Count {
        filter: FNode<'a>,
        lo: i64,
        hi: i64,
        op: CmpOp,
        value: f64,
    },
    Seen {
        last: bool,
        test: SeenCheck,
    },
    Not(Box<SNode<'a>>),
    And(Box<SNode<'a>>, Box<SNode<'a>>),
    Or(Box<SNode<'a>>, Box<SNode<'a>>),
}

/// The customer's events with a timestamp in `[lo, hi]` (their events are in time order).
fn window(j: &Journeys, c: usize, lo: i64, hi: i64) -> std::ops::Range<usize> {
    let r = j.customer_range(c);
    if lo == i64::MIN && hi == i64::MAX {
        return r;
    }
    let ts = &j.ts[r.clone()];
    let start = ts.partition_point(|&t| t < lo);
    let end = ts.partition_point(|&t| t <= hi);
    r.start + start..r.start + end.max(start)
}

impl SNode<'_> {
    fn eval(&self, j: &Journeys, c: usize) -> bool {
        match self {
            SNode::Const(b) => *b,
            SNode::TraitText { codes, table } => {
                let current = j
                    .customer_range(c)
                    .rev()
                    .map(|e| codes.get(e))
                    .find(|&code| code != 0)
                    .unwrap_or(0);
                table[current as usize]
            }
            SNode::TraitNum { values, test } => {
                let current = j
                    .customer_range(c)
                    .rev()
                    .map(|e| values.get(e))
                    .find(|v| !v.is_nan())
                    .map_or(Val::Missing, Val::Num);
                test.eval(current)
            }
            SNode::Did { filter, lo, hi } => window(j, c, *lo, *hi).any(|e| filter.eval(e)),
            SNode::Count {
                filter,
                lo,
                hi,
                op,
                value,
            } => {
                let n = window(j, c, *lo, *hi).filter(|&e| filter.eval(e)).count();
                (n as f64).partial_cmp(value).is_some_and(|o| op.holds(o))
            }
            SNode::Seen { last, test } => {
                let r = j.customer_range(c);
                if r.is_empty() {
                    return false;
                }
                let t = if *last {
                    j.ts[r.end - 1]
                } else {
                    j.ts[r.start]
                };
                match *test {
                    SeenCheck::Compare(op, at) => op.holds(t.cmp(&at)),
                    SeenCheck::Range(lo, hi) => lo <= t && t <= hi,
                }
            }
            SNode::Not(a) => !a.eval(j, c),
            SNode::And(a, b) => a.eval(j, c) && b.eval(j, c),
            SNode::Or(a, b) => a.eval(j, c) || b.eval(j, c),
        }
    }
}

pub(crate) fn compiled_filter(j: &Journeys, node: FNode<'_>) -> CompiledFilter {
    let bits = match node {
        FNode::Const(b) => Bits::Const(b),
        node => Bits::build(j.events(), |e| node.eval(e)),
    };
    CompiledFilter { bits }
}

pub(crate) fn compiled_segment(j: &Journeys, node: SNode<'_>) -> CompiledSegment {
    let bits = match node {
        SNode::Const(b) => Bits::Const(b),
        node => Bits::build(j.customers.len(), |c| node.eval(j, c)),
    };
    CompiledSegment { bits }
}
