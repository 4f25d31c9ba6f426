//! Channel performance and preference: per channel, who uses it and how well it serves.
//!
//! Over each customer's whole journey (after the time range, the event filter and the
//! segment; the step dimension does not apply, the case split does for the repeat-contact
//! and abandonment signals, which are the friction signals of [`crate::friction`]):
//!
//! - **events**, **customers** (distinct), **contacts**: events carrying an outcome (a
//!   finished interaction); on an assisted channel only assisted contacts (outcome and
//!   topic), so a call counts once, at its end;
//! - **customer share** (channel customers / all customers) and **contact share** (channel
//!   contacts / all contacts), overall and per value of a breakdown (a trait or labels);
//! - **wait** (`wait_seconds`) and **handle time** (`duration_seconds`) of the channel's
//!   events carrying them: exact median and p90;
//! - **resolution rate**: contacts with outcome success or resolved / contacts;
//! - **repeat-contact rate**: assisted contacts followed by another on the same topic within
//!   the repeat window / assisted contacts (assisted channels only);
//! - **bot containment** (bot channels only): a bot session is a run of consecutive events
//!   of a case on one bot channel; it is contained when no event on an assisted channel
//!   follows within the containment window after its last event;
//! - **abandonment rate** and **mean sentiment** as in friction;
//! - **cost to serve**: contacts × the channel's unit cost, when one is configured.

use crate::case::Prepared;
use crate::friction::signals::*;
use crate::query::{format_duration, Query, StepDimension};
use crate::root_cause::{customer_dimension, CustomerLabels, CustomerSource};
use crate::stats::{micros_to_seconds, quantiles};
use crate::{EngineError, Stages};
use omnitrail_model::journeys::{Journeys, ScanSpec};
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Arc;

/// What to split channel preference by.
#[derive(Clone, Debug, PartialEq)]
pub enum PreferenceBreakdown {
    /// A trait: each customer's current value.
    Trait(String),
    /// Customer labels, e.g. personas.
    Labels(CustomerLabels),
}

#[derive(Clone, Debug, PartialEq)]
pub struct ChannelPerformanceOptions {
    pub signals: SignalParams,
    /// Bot containment: no assisted-channel event within this after a bot session (µs).
    pub containment_window: i64,
    /// Cost of one contact, per channel.
    pub costs: BTreeMap<String, f64>,
    pub breakdown: Option<PreferenceBreakdown>,
}

impl Default for ChannelPerformanceOptions {
    fn default() -> Self {
        ChannelPerformanceOptions {
            signals: SignalParams::default(),
            containment_window: 3_600_000_000,
            costs: BTreeMap::new(),
            breakdown: None,
        }
    }
}

/// The columns channel performance reads on top of the query's.
pub fn channel_performance_scan(options: &ChannelPerformanceOptions) -> ScanSpec {
    let mut properties: Vec<String> = SIGNAL_PROPERTIES.map(String::from).to_vec();
    properties.push("duration_seconds".into());
    properties.sort();
    let traits = match &options.breakdown {
        Some(PreferenceBreakdown::Trait(t)) => vec![t.clone()],
        _ => Vec::new(),
    };
    ScanSpec { properties, traits }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ChannelPerformance {
    pub case: String,
    pub repeat_window: String,
    pub containment_window: String,
    pub totals: ChannelPerformanceTotals,
    /// By contacts descending, then events descending, then name.
    pub channels: Vec<ChannelStats>,
    /// The breakdown's name (`trait.plan`, `persona`), when asked for.
    pub breakdown: Option<String>,
    /// Per breakdown value (sorted by value; customers without one are left out).
    pub preference: Vec<PreferenceGroup>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct ChannelPerformanceTotals {
    pub events: u64,
    pub customers: u64,
    pub contacts: u64,
    /// Sum of the channels' costs to serve (channels without a unit cost add nothing).
    pub cost: f64,
    /// Over every assisted channel's contacts; null without any.
    pub repeat_contact_rate: Option<f64>,
    /// Over every bot channel's sessions; null without any bot channel.
    pub containment: Option<Containment>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ChannelStats {
    pub channel: String,
    pub assisted: bool,
    pub bot: bool,
    pub events: u64,
    pub customers: u64,
    pub contacts: u64,
    pub customer_share: f64,
    pub contact_share: f64,
    pub wait: Option<Spread>,
    pub handle_time: Option<Spread>,
    pub resolution_rate: Option<f64>,
    /// Assisted channels only.
    pub repeat_contact_rate: Option<f64>,
    /// Bot channels only.
    pub containment: Option<Containment>,
    pub abandonment_rate: f64,
    pub mean_sentiment: Option<f64>,
    pub sentiment_n: u64,
    pub unit_cost: Option<f64>,
    pub cost: Option<f64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Spread {
    pub n: u64,
    pub median_s: f64,
    pub p90_s: f64,
}

#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Containment {
    pub sessions: u64,
    pub contained: u64,
    pub rate: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PreferenceGroup {
    pub value: String,
    pub customers: u64,
    pub contacts: u64,
    /// Channels the group used, by contacts descending, then customers, then name.
    pub channels: Vec<GroupChannel>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct GroupChannel {
    pub channel: String,
    pub customers: u64,
    pub customer_share: f64,
    pub contacts: u64,
    pub contact_share: f64,
}

#[derive(Clone, Default)]
struct Acc {
    events: u64,
    customers: u64,
    last: u64,
    contacts: u64,
    resolved: u64,
    assisted_contacts: u64,
    repeats: u64,
    abandoned: u64,
    sessions: u64,
    contained: u64,
    sentiment_sum: i128,
    sentiment_n: u64,
    waits: Vec<i64>,
    handles: Vec<i64>,
}

impl Acc {
    fn merge(&mut self, o: Acc) {
        self.events += o.events;
        self.customers += o.customers;
        self.contacts += o.contacts;
        self.resolved += o.resolved;
        self.assisted_contacts += o.assisted_contacts;
        self.repeats += o.repeats;
        self.abandoned += o.abandoned;
        self.sessions += o.sessions;
        self.contained += o.contained;
        self.sentiment_sum += o.sentiment_sum;
        self.sentiment_n += o.sentiment_n;
        self.waits.extend(o.waits);
        self.handles.extend(o.handles);
    }
}

struct Partial {
    channels: Vec<Acc>,
    customers: u64,
    last: u64,
    /// Per group: customers, and per channel customers and contacts (`group * n + channel`).
    group_customers: Vec<u64>,
    group_channel_customers: Vec<u64>,
    group_channel_contacts: Vec<u64>,
    buf: CaseBuf,
}

fn spread(values: &mut [i64]) -> Option<Spread> {
    let n = values.len() as u64;
    quantiles(values, &[0.5, 0.9]).map(|q| Spread {
        n,
        median_s: micros_to_seconds(q[0]),
        p90_s: micros_to_seconds(q[1]),
    })
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

/// Channel performance and preference of the query's customers.
pub fn channel_performance(
    partitions: &[Arc<Journeys>],
    stages: &Stages,
    query: &Query,
    options: &ChannelPerformanceOptions,
) -> Result<ChannelPerformance, EngineError> {
    options.signals.validate()?;
    if options.containment_window <= 0 {
        return Err(EngineError::InvalidOption {
            option: "containment_window",
            reason: "must be longer than zero".to_string(),
        });
    }
    // Steps by channel keep every event in the cases (loops are not reported here).
    let case = query.case.clone();
    let prepared = Prepared::with(partitions, stages, query, &StepDimension::Channel, &case)?;
    let signals = Signals::new(&prepared, &options.signals);
    let n = signals.channels.names.len();
    let (group_names, group_codes, breakdown_name) = match &options.breakdown {
        Some(PreferenceBreakdown::Trait(t)) => {
            let (names, codes) = customer_dimension(partitions, &CustomerSource::Trait(t));
            (names, codes, Some(format!("trait.{t}")))
        }
        Some(PreferenceBreakdown::Labels(l)) => {
            let (names, codes) = customer_dimension(partitions, &CustomerSource::Labels(l));
            (names, codes, Some(l.name.clone()))
        }
        None => (Vec::new(), Vec::new(), None),
    };
    let groups = group_names.len();
    let window = options.containment_window;
    let p = prepared.fold_cases(
        || Partial {
            channels: vec![Acc::default(); n],
            customers: 0,
            last: 0,
            group_customers: vec![0; groups],
            group_channel_customers: vec![0; groups * n],
            group_channel_contacts: vec![0; groups * n],
            buf: CaseBuf::default(),
        },
        |acc, case| {
            signals.flags(case, &mut acc.buf);
            let stamp = Prepared::customer_stamp(case);
            let group = group_codes
                .get(case.partition_index)
                .map_or(NONE, |g| g[case.customer_index]);
            if acc.last != stamp {
                acc.last = stamp;
                acc.customers += 1;
                if group != NONE {
                    acc.group_customers[group as usize] += 1;
                }
            }
            let part = &signals.parts[case.partition_index];
            let j = case.journeys;
            let ts = &j.ts;
            // Backward, so each bot session's end knows the next assisted-channel event.
            let mut next_assisted = i64::MAX;
            for k in (0..case.events.len()).rev() {
                let e = case.events[k] as usize;
                let f = acc.buf.flags[k];
                let g = part.channel_global[j.channel[e] as usize] as usize;
                let c = &mut acc.channels[g];
                c.events += 1;
                let contact = if f & ASSISTED_CHANNEL != 0 {
                    f & CONTACT != 0
                } else {
                    f & HAS_OUTCOME != 0
                };
                if contact {
                    c.contacts += 1;
                    c.resolved += u64::from(f & RESOLVED != 0);
                    if group != NONE {
                        acc.group_channel_contacts[group as usize * n + g] += 1;
                    }
                }
                if f & CONTACT != 0 {
                    c.assisted_contacts += 1;
                    c.repeats += u64::from(f & REPEAT != 0);
                }
                c.abandoned += u64::from(f & ABANDON != 0);
                if f & HAS_SENTIMENT != 0 {
                    c.sentiment_n += 1;
                    let v = part.sentiment.map_or(0.0, |s| s.get(e));
                    c.sentiment_sum += i128::from(fixed_sentiment(v));
                }
                if f & HAS_WAIT != 0 {
                    c.waits
                        .push(seconds_to_micros(part.wait.map_or(0.0, |w| w.get(e))));
                }
                if let Some(d) = part.duration {
                    if !d.get(e).is_nan() {
                        c.handles.push(seconds_to_micros(d.get(e)));
                    }
                }
                if f & BOT != 0 {
                    let session_end = k + 1 == case.events.len()
                        || j.channel[case.events[k + 1] as usize] != j.channel[e];
                    if session_end {
                        c.sessions += 1;
                        c.contained += u64::from(next_assisted - ts[e] > window);
                    }
                }
                if f & ASSISTED_CHANNEL != 0 {
                    next_assisted = ts[e];
                }
            }
            // Distinct customers per channel (and per group and channel).
            for &e in case.events {
                let g = part.channel_global[j.channel[e as usize] as usize] as usize;
                let c = &mut acc.channels[g];
                if c.last != stamp {
                    c.last = stamp;
                    c.customers += 1;
                    if group != NONE {
                        acc.group_channel_customers[group as usize * n + g] += 1;
                    }
                }
            }
        },
        |mut a, b| {
            for (x, y) in a.channels.iter_mut().zip(b.channels) {
                x.merge(y);
            }
            a.customers += b.customers;
            for (x, y) in a.group_customers.iter_mut().zip(&b.group_customers) {
                *x += y;
            }
            for (x, y) in a
                .group_channel_customers
                .iter_mut()
                .zip(&b.group_channel_customers)
            {
                *x += y;
            }
            for (x, y) in a
                .group_channel_contacts
                .iter_mut()
                .zip(&b.group_channel_contacts)
            {
                *x += y;
            }
            a
        },
    );

    let total_contacts: u64 = p.channels.iter().map(|c| c.contacts).sum();
    let total_events: u64 = p.channels.iter().map(|c| c.events).sum();
    let names = &signals.channels.names;
    let params = &options.signals;
    let (mut assisted_contacts, mut repeats, mut sessions, mut contained) = (0, 0, 0, 0);
    let mut any_assisted = false;
    let mut any_bot = false;
    for (c, name) in p.channels.iter().zip(names).filter(|(c, _)| c.events > 0) {
        if params.assisted_channels.contains(name) {
            any_assisted = true;
            assisted_contacts += c.assisted_contacts;
            repeats += c.repeats;
        }
        if params.bot_channels.contains(name) {
            any_bot = true;
            sessions += c.sessions;
            contained += c.contained;
        }
    }
    let mut channels: Vec<ChannelStats> = p
        .channels
        .into_iter()
        .enumerate()
        .filter(|(_, c)| c.events > 0)
        .map(|(i, mut c)| {
            let name = &names[i];
            let assisted = params.assisted_channels.contains(name);
            let bot = params.bot_channels.contains(name);
            let unit_cost = options.costs.get(name).copied();
            ChannelStats {
                channel: name.clone(),
                assisted,
                bot,
                events: c.events,
                customers: c.customers,
                contacts: c.contacts,
                customer_share: ratio(c.customers, p.customers),
                contact_share: ratio(c.contacts, total_contacts),
                wait: spread(&mut c.waits),
                handle_time: spread(&mut c.handles),
                resolution_rate: (c.contacts > 0).then(|| ratio(c.resolved, c.contacts)),
                repeat_contact_rate: assisted.then(|| ratio(c.repeats, c.assisted_contacts)),
                containment: bot.then(|| Containment {
                    sessions: c.sessions,
                    contained: c.contained,
                    rate: ratio(c.contained, c.sessions),
                }),
                abandonment_rate: ratio(c.abandoned, c.events),
                mean_sentiment: (c.sentiment_n > 0)
                    .then(|| c.sentiment_sum as f64 / SENTIMENT_SCALE / c.sentiment_n as f64),
                sentiment_n: c.sentiment_n,
                unit_cost,
                cost: unit_cost.map(|u| u * c.contacts as f64),
            }
        })
        .collect();
    channels.sort_by(|a, b| {
        b.contacts
            .cmp(&a.contacts)
            .then_with(|| b.events.cmp(&a.events))
            .then_with(|| a.channel.cmp(&b.channel))
    });
    let preference = (0..groups)
        .filter(|&g| p.group_customers[g] > 0)
        .map(|g| {
            let customers = p.group_customers[g];
            let contacts: u64 = (0..n).map(|c| p.group_channel_contacts[g * n + c]).sum();
            let mut chans: Vec<GroupChannel> = (0..n)
                .filter(|&c| p.group_channel_customers[g * n + c] > 0)
                .map(|c| GroupChannel {
                    channel: names[c].clone(),
                    customers: p.group_channel_customers[g * n + c],
                    customer_share: ratio(p.group_channel_customers[g * n + c], customers),
                    contacts: p.group_channel_contacts[g * n + c],
                    contact_share: ratio(p.group_channel_contacts[g * n + c], contacts),
                })
                .collect();
            chans.sort_by(|a, b| {
                b.contacts
                    .cmp(&a.contacts)
                    .then_with(|| b.customers.cmp(&a.customers))
                    .then_with(|| a.channel.cmp(&b.channel))
            });
            PreferenceGroup {
                value: group_names[g].clone(),
                customers,
                contacts,
                channels: chans,
            }
        })
        .collect();
    let cost = channels.iter().filter_map(|c| c.cost).sum();
    Ok(ChannelPerformance {
        case: case.to_string(),
        repeat_window: format_duration(params.repeat_window),
        containment_window: format_duration(window),
        totals: ChannelPerformanceTotals {
            events: total_events,
            customers: p.customers,
            contacts: total_contacts,
            cost,
            repeat_contact_rate: any_assisted.then(|| ratio(repeats, assisted_contacts)),
            containment: any_bot.then(|| Containment {
                sessions,
                contained,
                rate: ratio(contained, sessions),
            }),
        },
        channels,
        breakdown: breakdown_name,
        preference,
    })
}
