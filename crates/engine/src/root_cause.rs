//! Root causes of friction points: which dimension values are over-represented among the
//! affected.
//!
//! Candidate dimensions are the channel, the text properties and traits the caller lists,
//! and extra customer-level labels (e.g. personas). They are data-driven: a dimension is
//! used only when it has at least one and at most `max_values` distinct values over the
//! loaded data (ids such as `ticket_id` or `agent` drop out by themselves).
//!
//! - **Event-level** dimensions (channel, properties): the affected events of a point are
//!   its events with any signal. `P(v | affected)` is the share of affected events with
//!   value `v` among affected events with any value of the dimension; the baseline
//!   `P(v | baseline)` is the same share over every event of the query. A dimension that
//!   has one value over all of the step's events describes the step (the channel of a
//!   touchpoint) and is skipped for that point.
//! - **Customer-level** dimensions (traits: the customer's last value; labels): affected
//!   customers (with at least one affected event at the point) against every customer of
//!   the query, each among those with a value.
//!
//! `lift = P(v | affected) / P(v | baseline)`, `support` = affected events (or customers)
//! with the value. Values with lift > 1 and support ≥ `min_support` are kept, ranked by
//! **excess** = support − affected × P(v | baseline): how many more affected events (or
//! customers) carry the value than its baseline share predicts. Excess favours values that
//! explain much of the friction over rare values with a high lift.

use crate::case::Prepared;
use crate::friction::signals::{text_codes, CaseBuf, GlobalCodes, Signals, ANY_SIGNAL, NONE};
use omnitrail_model::journeys::{Codes, Journeys, PropertyColumn};
use omnitrail_model::CustomerId;
use rayon::prelude::*;
use serde::Serialize;
use std::collections::HashMap;
use std::sync::Arc;

/// A customer-level dimension the engine cannot see in the columns: a name and each
/// customer's value (customers without one have no value).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CustomerLabels {
    pub name: String,
    pub labels: HashMap<CustomerId, String>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct RootCauseOptions {
    /// Candidate text properties (event level).
    pub properties: Vec<String>,
    /// Candidate traits (customer level).
    pub traits: Vec<String>,
    /// Whether the channel is a candidate (event level).
    pub channel: bool,
    /// Dimensions with more distinct values than this are skipped.
    pub max_values: usize,
    /// Fewest affected events (or customers) with a value for it to be reported.
    pub min_support: u64,
    /// Causes listed per point.
    pub per_point: usize,
}

impl Default for RootCauseOptions {
    fn default() -> Self {
        RootCauseOptions {
            properties: Vec::new(),
            traits: Vec::new(),
            channel: true,
            max_values: 50,
            min_support: 10,
            per_point: 5,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CauseLevel {
    Event,
    Customer,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RootCause {
    /// `channel`, a property name (`os`), `trait.NAME` or a label name (`persona`).
    pub dimension: String,
    pub level: CauseLevel,
    pub value: String,
    /// Affected events (or customers) with the value.
    pub support: u64,
    /// Affected events (or customers) with any value of the dimension.
    pub affected: u64,
    pub affected_share: f64,
    pub baseline_share: f64,
    pub lift: f64,
    pub excess: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RootCauseDimension {
    pub dimension: String,
    pub level: CauseLevel,
    /// Distinct values over the loaded data.
    pub values: u64,
    /// False when it has no value or more than `max_values`.
    pub used: bool,
}

enum Source {
    Channel,
    Property(String),
    Trait(String),
    Label(usize),
}

struct Dim {
    name: String,
    level: CauseLevel,
    codes: GlobalCodes,
    source: Source,
}

/// An event-level dimension's codes in one partition.
enum EventCodes<'j> {
    Channel(&'j [u16]),
    Text(&'j Codes),
    Absent,
}

impl EventCodes<'_> {
    #[inline]
    fn local(&self, e: usize) -> Option<usize> {
        match self {
            EventCodes::Channel(c) => Some(c[e] as usize),
            EventCodes::Text(c) => Some(c.get(e) as usize),
            EventCodes::Absent => None,
        }
    }
}

fn candidate_dims(
    partitions: &[Arc<Journeys>],
    options: &RootCauseOptions,
    extra: &[CustomerLabels],
) -> Vec<Dim> {
    let mut dims = Vec::new();
    if options.channel {
        dims.push(Dim {
            name: "channel".into(),
            level: CauseLevel::Event,
            codes: GlobalCodes::channels(partitions),
            source: Source::Channel,
        });
    }
    let mut props = options.properties.clone();
    props.sort();
    props.dedup();
    for p in props {
        dims.push(Dim {
            name: p.clone(),
            level: CauseLevel::Event,
            codes: GlobalCodes::text(partitions, |j| j.properties.get(&p)),
            source: Source::Property(p),
        });
    }
    let mut traits = options.traits.clone();
    traits.sort();
    traits.dedup();
    for t in traits {
        dims.push(Dim {
            name: format!("trait.{t}"),
            level: CauseLevel::Customer,
            codes: GlobalCodes::text(partitions, |j| j.traits.get(&t)),
            source: Source::Trait(t),
        });
    }
    for (i, l) in extra.iter().enumerate() {
        let mut names: Vec<&str> = l.labels.values().map(String::as_str).collect();
        names.sort_unstable();
        names.dedup();
        dims.push(Dim {
            name: l.name.clone(),
            level: CauseLevel::Customer,
            codes: GlobalCodes {
                names: names.into_iter().map(str::to_string).collect(),
                tables: Vec::new(),
            },
            source: Source::Label(i),
        });
    }
    dims
}

/// Where a customer-level value comes from.
pub(crate) enum CustomerSource<'x> {
    /// A trait: the customer's current value, the last one their journey carries.
    Trait(&'x str),
    Labels(&'x CustomerLabels),
}

/// A customer-level dimension's sorted value names and each customer's value code (or
/// [`NONE`]), per partition and customer index.
pub(crate) fn customer_dimension(
    partitions: &[Arc<Journeys>],
    source: &CustomerSource<'_>,
) -> (Vec<String>, Vec<Vec<u32>>) {
    match source {
        CustomerSource::Trait(t) => {
            let global = GlobalCodes::text(partitions, |j| j.traits.get(*t));
            let codes = partitions
                .par_iter()
                .enumerate()
                .map(|(p, j)| {
                    let Some(codes) = text_codes(j.traits.get(*t)) else {
                        return vec![NONE; j.customers.len()];
                    };
                    let table = &global.tables[p];
                    (0..j.customers.len())
                        .map(|i| {
                            j.customer_range(i)
                                .rev()
                                .map(|e| codes.get(e))
                                .find(|&c| c != 0)
                                .map_or(NONE, |c| table[c as usize])
                        })
                        .collect()
                })
                .collect();
            (global.names, codes)
        }
        CustomerSource::Labels(l) => {
            let mut names: Vec<String> = l.labels.values().cloned().collect();
            names.sort_unstable();
            names.dedup();
            let codes = partitions
                .par_iter()
                .map(|j| {
                    j.customers
                        .iter()
                        .map(|c| {
                            l.labels.get(c).map_or(NONE, |v| {
                                names
                                    .binary_search_by(|n| n.as_str().cmp(v))
                                    .map_or(NONE, |i| i as u32)
                            })
                        })
                        .collect()
                })
                .collect();
            (names, codes)
        }
    }
}

struct Layout {
    /// Offset of each dimension's values in a flat counter row.
    offsets: Vec<usize>,
    width: usize,
}

impl Layout {
    fn new(sizes: impl Iterator<Item = usize>) -> Layout {
        let mut offsets = Vec::new();
        let mut width = 0;
        for s in sizes {
            offsets.push(width);
            width += s;
        }
        Layout { offsets, width }
    }
}

struct Partial {
    /// Event dims: every event's value, and per point the step's and the affected events'.
    ev_base: Vec<u64>,
    ev_step: Vec<u64>,
    ev_aff: Vec<u64>,
    /// Customer dims: every customer, and per point the affected customers.
    cu_base: Vec<u64>,
    cu_aff: Vec<u64>,
    last_customer: u64,
    aff_last: Vec<u64>,
    buf: CaseBuf,
}

/// Root causes of `points` (step codes) and the candidate dimensions considered.
pub(crate) fn root_causes(
    prepared: &Prepared<'_>,
    signals: &Signals<'_>,
    points: &[u32],
    options: &RootCauseOptions,
    extra: &[CustomerLabels],
) -> (Vec<Vec<RootCause>>, Vec<RootCauseDimension>) {
    let partitions = prepared.partitions();
    let all = candidate_dims(partitions, options, extra);
    let report: Vec<RootCauseDimension> = all
        .iter()
        .map(|d| RootCauseDimension {
            dimension: d.name.clone(),
            level: d.level,
            values: d.codes.names.len() as u64,
            used: !d.codes.names.is_empty() && d.codes.names.len() <= options.max_values,
        })
        .collect();
    if points.is_empty() {
        return (Vec::new(), report);
    }
    let (ev_dims, cu_dims): (Vec<Dim>, Vec<Dim>) = all
        .into_iter()
        .filter(|d| !d.codes.names.is_empty() && d.codes.names.len() <= options.max_values)
        .partition(|d| d.level == CauseLevel::Event);
    let ev_layout = Layout::new(ev_dims.iter().map(|d| d.codes.names.len()));
    let cu_layout = Layout::new(cu_dims.iter().map(|d| d.codes.names.len()));
    let cu_codes: Vec<Vec<Vec<u32>>> = cu_dims
        .iter()
        .map(|d| match &d.source {
            Source::Trait(t) => customer_dimension(partitions, &CustomerSource::Trait(t)).1,
            Source::Label(l) => {
                customer_dimension(partitions, &CustomerSource::Labels(&extra[*l])).1
            }
            Source::Channel | Source::Property(_) => Vec::new(),
        })
        .collect();
    let steps = prepared.step_names().len();
    let mut point_of = vec![NONE; steps];
    for (i, &s) in points.iter().enumerate() {
        point_of[s as usize] = i as u32;
    }
    let np = points.len();
    // Each partition's event-dimension columns and code tables, resolved once.
    // Each partition's event-dimension columns with a table from local code straight to a
    // slot of the flat counter row (`TRASH`, one past the row, for events without a value),
    // so the per-event loops are branch-free lookups.
    let ew = ev_layout.width;
    let trash = ew;
    let part_sources: Vec<Vec<(EventCodes<'_>, Vec<u32>)>> = partitions
        .iter()
        .enumerate()
        .map(|(pi, j)| {
            ev_dims
                .iter()
                .enumerate()
                .map(|(d, dim)| {
                    let codes = match &dim.source {
                        Source::Channel => EventCodes::Channel(&j.channel),
                        Source::Property(p) => match j.properties.get(p) {
                            Some(PropertyColumn::Text { codes, .. }) => EventCodes::Text(codes),
                            _ => EventCodes::Absent,
                        },
                        _ => EventCodes::Absent,
                    };
                    let slots = dim.codes.tables.get(pi).map_or_else(Vec::new, |t| {
                        t.iter()
                            .map(|&g| {
                                if g == NONE {
                                    trash as u32
                                } else {
                                    (ev_layout.offsets[d] + g as usize) as u32
                                }
                            })
                            .collect()
                    });
                    (codes, slots)
                })
                .collect()
        })
        .collect();
    let cw = cu_layout.width;
    let part = prepared.fold_cases(
        || Partial {
            ev_base: vec![0; ew + 1],
            ev_step: vec![0; (ew + 1) * np],
            ev_aff: vec![0; (ew + 1) * np],
            cu_base: vec![0; cw],
            cu_aff: vec![0; cw * np],
            last_customer: 0,
            aff_last: vec![0; np],
            buf: CaseBuf::default(),
        },
        |acc, case| {
            let pi = case.partition_index;
            let stamp = Prepared::customer_stamp(case);
            let ci = case.customer_index;
            if acc.last_customer != stamp {
                acc.last_customer = stamp;
                for (d, codes) in cu_codes.iter().enumerate() {
                    let c = codes[pi][ci];
                    if c != NONE {
                        acc.cu_base[cu_layout.offsets[d] + c as usize] += 1;
                    }
                }
            }
            let sources = &part_sources[pi];
            let touches = case.steps.iter().any(|&s| point_of[s as usize] != NONE);
            if touches {
                signals.flags(case, &mut acc.buf);
            }
            // Baseline: every event's value, one tight loop per dimension.
            for (codes, slots) in sources {
                match codes {
                    EventCodes::Channel(c) => {
                        for &e in case.events {
                            acc.ev_base[slots[c[e as usize] as usize] as usize] += 1;
                        }
                    }
                    EventCodes::Text(c) => {
                        for &e in case.events {
                            acc.ev_base[slots[c.get(e as usize) as usize] as usize] += 1;
                        }
                    }
                    EventCodes::Absent => {}
                }
            }
            if !touches {
                return;
            }
            let row = ew + 1;
            for (k, (&e, &s)) in case.events.iter().zip(case.steps).enumerate() {
                let point = point_of[s as usize];
                if point == NONE {
                    continue;
                }
                let e = e as usize;
                let point = point as usize;
                let affected = acc.buf.flags[k] & ANY_SIGNAL != 0;
                for (codes, slots) in sources {
                    let Some(local) = codes.local(e) else {
                        continue;
                    };
                    let at = slots[local] as usize;
                    acc.ev_step[point * row + at] += 1;
                    if affected {
                        acc.ev_aff[point * row + at] += 1;
                    }
                }
                if affected && acc.aff_last[point] != stamp {
                    acc.aff_last[point] = stamp;
                    for (d, codes) in cu_codes.iter().enumerate() {
                        let c = codes[pi][ci];
                        if c != NONE {
                            acc.cu_aff[point * cw + cu_layout.offsets[d] + c as usize] += 1;
                        }
                    }
                }
            }
        },
        |mut a, b| {
            add(&mut a.ev_base, &b.ev_base);
            add(&mut a.ev_step, &b.ev_step);
            add(&mut a.ev_aff, &b.ev_aff);
            add(&mut a.cu_base, &b.cu_base);
            add(&mut a.cu_aff, &b.cu_aff);
            a
        },
    );

    let causes = (0..np)
        .map(|p| {
            let mut out = Vec::new();
            for (d, dim) in ev_dims.iter().enumerate() {
                let range = ev_layout.offsets[d]..ev_layout.offsets[d] + dim.codes.names.len();
                let step_row = &part.ev_step[p * (ew + 1)..(p + 1) * (ew + 1)][range.clone()];
                if step_row.iter().filter(|&&n| n > 0).count() <= 1 {
                    continue;
                }
                let aff = &part.ev_aff[p * (ew + 1)..(p + 1) * (ew + 1)][range.clone()];
                collect(
                    &mut out,
                    dim,
                    aff,
                    &part.ev_base[range],
                    options.min_support,
                );
            }
            for (d, dim) in cu_dims.iter().enumerate() {
                let range = cu_layout.offsets[d]..cu_layout.offsets[d] + dim.codes.names.len();
                let aff = &part.cu_aff[p * cw..(p + 1) * cw][range.clone()];
                collect(
                    &mut out,
                    dim,
                    aff,
                    &part.cu_base[range],
                    options.min_support,
                );
            }
            out.sort_by(|a, b| {
                b.excess
                    .total_cmp(&a.excess)
                    .then_with(|| b.lift.total_cmp(&a.lift))
                    .then_with(|| a.dimension.cmp(&b.dimension))
                    .then_with(|| a.value.cmp(&b.value))
            });
            out.truncate(options.per_point);
            out
        })
        .collect();
    (causes, report)
}

fn add(a: &mut [u64], b: &[u64]) {
    for (x, y) in a.iter_mut().zip(b) {
        *x += y;
    }
}

fn collect(out: &mut Vec<RootCause>, dim: &Dim, aff: &[u64], base: &[u64], min_support: u64) {
    let aff_total: u64 = aff.iter().sum();
    let base_total: u64 = base.iter().sum();
    if aff_total == 0 || base_total == 0 {
        return;
    }
    for (v, (&support, &b)) in aff.iter().zip(base).enumerate() {
        if support < min_support.max(1) || b == 0 {
            continue;
        }
        let a_share = support as f64 / aff_total as f64;
        let b_share = b as f64 / base_total as f64;
        let lift = a_share / b_share;
        if lift <= 1.0 {
            continue;
        }
        out.push(RootCause {
            dimension: dim.name.clone(),
            level: dim.level,
            value: dim.codes.names[v].clone(),
            support,
            affected: aff_total,
            affected_share: a_share,
            baseline_share: b_share,
            lift,
            excess: support as f64 - aff_total as f64 * b_share,
        });
    }
}
