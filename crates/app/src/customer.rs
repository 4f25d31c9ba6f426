//! The customer view: everything an agent needs about one person on one screen — who they
//! are (identifiers, traits, how the identities were linked), what happened (the lifetime
//! timeline across channels), what they bought, what went wrong and whether it was put
//! right, notes, friction flags, lifecycle, and a summary readable in five seconds.
//!
//! The view is computed from the in-memory journey columns of the resolved customer, so it
//! costs a binary search plus one pass over that customer's events.

use omnitrail_model::journeys::{Journeys, PropertyColumn};
use omnitrail_model::{Timestamp, MICROS_PER_SECOND};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

const DAY: i64 = 86_400 * MICROS_PER_SECOND;

/// The event properties the view reads, besides time, channel and activity.
pub const VIEW_PROPERTIES: [&str; 12] = [
    "outcome",
    "sentiment",
    "topic",
    "value",
    "order_id",
    "ticket_id",
    "agent",
    "department",
    "wait_seconds",
    "device",
    "os",
    "lifecycle",
];

/// Which page of the timeline to show, and which of its events.
#[derive(Clone, Debug, PartialEq)]
pub struct TimelineQuery {
    /// Only these channels (empty: all).
    pub channels: Vec<String>,
    pub from: Option<Timestamp>,
    pub to: Option<Timestamp>,
    pub offset: usize,
    pub limit: usize,
}

impl Default for TimelineQuery {
    fn default() -> Self {
        TimelineQuery {
            channels: Vec::new(),
            from: None,
            to: None,
            offset: 0,
            limit: 50,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CustomerView {
    pub customer_id: String,
    /// Plain-language sentences, most important first.
    pub summary: String,
    pub identifiers: Vec<IdentifierView>,
    /// How the identifiers were linked (and links that were refused or revoked).
    pub links: Vec<LinkView>,
    pub traits: Vec<TraitView>,
    pub first_seen: Option<Timestamp>,
    pub last_seen: Option<Timestamp>,
    pub events: u64,
    /// Events per channel, most used first.
    pub channels: Vec<(String, u64)>,
    pub lifecycle: Lifecycle,
    pub purchases: Vec<Purchase>,
    pub total_value: f64,
    pub issues: Vec<Issue>,
    pub friction: Vec<FrictionFlag>,
    pub notes: Vec<Note>,
    /// Agent tasks rules queued for this customer (callbacks), oldest first.
    pub tasks: Vec<crate::rules::Task>,
    pub timeline: TimelinePage,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct IdentifierView {
    pub kind: String,
    pub value: String,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LinkView {
    pub evidence: u64,
    /// `event`, `identify` or `alias`.
    pub source: String,
    pub at: Timestamp,
    /// The event it came from (event id or description), when known.
    pub event: Option<String>,
    pub identifiers: Vec<String>,
    /// `merged` (joined two customers), `linked` (added to this one), `refused`, `revoked`.
    pub decision: String,
    /// Why a link was refused.
    pub reason: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TraitView {
    pub name: String,
    pub value: String,
    pub seen_at: Timestamp,
    pub channel: String,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Lifecycle {
    /// `new`, `active`, `dormant` or `returned`.
    pub state: String,
    /// Dormant since (the last event), or back since (the first event after the break).
    pub since: Option<Timestamp>,
    /// For `returned`: the length of the break in days.
    pub returned_after_days: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Purchase {
    pub at: Timestamp,
    pub channel: String,
    pub order_id: Option<String>,
    pub value: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Issue {
    pub at: Timestamp,
    pub channel: String,
    pub activity: String,
    /// `failure`, `complaint` or `escalation`.
    pub kind: String,
    pub topic: Option<String>,
    pub ticket_id: Option<String>,
    pub resolved_at: Option<Timestamp>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FrictionFlag {
    /// `repeat_contact`, `recent_failures`, `falling_sentiment` or `long_waits`.
    pub kind: String,
    pub detail: String,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Note {
    pub id: i64,
    pub author: String,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub text: String,
    pub topic: Option<String>,
    pub event: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TimelinePage {
    /// Entries matching the filters, before paging.
    pub total: u64,
    pub offset: u64,
    pub limit: u64,
    /// Newest first; notes are entries too.
    pub entries: Vec<TimelineEntry>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TimelineEntry {
    pub at: Timestamp,
    /// `event` or `note`.
    pub kind: String,
    pub channel: String,
    pub activity: String,
    pub properties: BTreeMap<String, String>,
}

/// One event of the customer, read from the columns without copying text.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Ev<'a> {
    pub ts: i64,
    pub channel: &'a str,
    pub activity: &'a str,
    /// The view's properties the event has, in [`VIEW_PROPERTIES`] order.
    pub props: Vec<(&'static str, PropValue<'a>)>,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum PropValue<'a> {
    Num(f64),
    Text(&'a str),
}

impl PropValue<'_> {
    fn text(&self) -> String {
        match self {
            PropValue::Num(v) => omnitrail_model::Value::Num(*v).to_string(),
            PropValue::Text(s) => s.to_string(),
        }
    }
}

impl<'a> Ev<'a> {
    fn prop(&self, name: &str) -> Option<PropValue<'a>> {
        self.props.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
    }
    fn text(&self, name: &str) -> Option<&'a str> {
        match self.prop(name)? {
            PropValue::Text(s) => Some(s),
            PropValue::Num(_) => None,
        }
    }
    fn num(&self, name: &str) -> Option<f64> {
        match self.prop(name)? {
            PropValue::Num(v) => Some(v),
            PropValue::Text(s) => s.parse().ok(),
        }
    }
    fn is_assisted(&self) -> bool {
        omnitrail_model::Channel::parse(self.channel).is_ok_and(|c| c.is_assisted())
    }
    fn is_failure(&self) -> bool {
        self.text("outcome") == Some("failure") || self.activity.ends_with("_failed")
    }
    fn resolves(&self) -> bool {
        matches!(self.text("outcome"), Some("resolved" | "success"))
            || self.activity == "ticket_resolved"
    }
}

/// Decodes customer `index` of a partition: its events and its latest traits.
pub(crate) fn decode(j: &Journeys, index: usize) -> (Vec<Ev<'_>>, Vec<TraitView>) {
    let range = j.customer_range(index);
    let columns: Vec<(&'static str, &PropertyColumn)> = VIEW_PROPERTIES
        .iter()
        .filter_map(|&name| Some((name, j.properties.get(name)?)))
        .collect();
    let mut events = Vec::with_capacity(range.len());
    for e in range.clone() {
        let mut props = Vec::new();
        for &(name, column) in &columns {
            let value = match column {
                PropertyColumn::Num(v) if !v.get(e).is_nan() => Some(PropValue::Num(v.get(e))),
                PropertyColumn::Text { codes, dict } if codes.get(e) != 0 => {
                    Some(PropValue::Text(&dict.values[codes.get(e) as usize - 1]))
                }
                _ => None,
            };
            if let Some(v) = value {
                props.push((name, v));
            }
        }
        events.push(Ev {
            ts: j.ts[e],
            channel: &j.channels.values[j.channel[e] as usize],
            activity: &j.activities.values[j.activity.get(e) as usize],
            props,
        });
    }
    let mut traits = Vec::new();
    for (name, column) in &j.traits {
        let PropertyColumn::Text { codes, dict } = column else {
            continue;
        };
        if let Some(e) = range.clone().rev().find(|&e| codes.get(e) != 0) {
            traits.push(TraitView {
                name: name.clone(),
                value: dict.values[codes.get(e) as usize - 1].clone(),
                seen_at: Timestamp::from_micros(j.ts[e]),
                channel: j.channels.values[j.channel[e] as usize].clone(),
            });
        }
    }
    (events, traits)
}

/// Decodes a customer's events from pieces of journeys, each customer `index` of its
/// journeys, given in the order that breaks time ties: by write-time key, and within a key
/// in storage order (see `Store::key_journeys`). The result is what [`decode`] gives for
/// the customer in merged journeys (`resolve::regroup`): events by time, equal times in
/// piece order, and each trait's value from the last event in that order that has it.
pub(crate) fn decode_pieces<'a>(
    pieces: impl IntoIterator<Item = (&'a Journeys, usize)>,
) -> (Vec<Ev<'a>>, Vec<TraitView>) {
    let mut events = Vec::new();
    // Per trait name: the (time, piece) of its latest value so far, and the value.
    let mut latest: BTreeMap<String, ((i64, usize), TraitView)> = BTreeMap::new();
    for (k, (j, index)) in pieces.into_iter().enumerate() {
        let (evs, traits) = decode(j, index);
        events.extend(evs);
        for t in traits {
            let rank = (t.seen_at.as_micros(), k);
            match latest.get(&t.name) {
                Some((seen, _)) if *seen > rank => {}
                _ => {
                    latest.insert(t.name.clone(), (rank, t));
                }
            }
        }
    }
    // Stable: equal times keep piece order and each piece's own order.
    events.sort_by_key(|e| e.ts);
    (events, latest.into_values().map(|(_, t)| t).collect())
}

/// Everything about the customer that is not identity: computed from their events (time
/// order), traits and notes, as of `now`.
pub(crate) struct Facts {
    pub first_seen: Option<Timestamp>,
    pub last_seen: Option<Timestamp>,
    pub channels: Vec<(String, u64)>,
    pub lifecycle: Lifecycle,
    pub purchases: Vec<Purchase>,
    pub total_value: f64,
    pub issues: Vec<Issue>,
    pub friction: Vec<FrictionFlag>,
    pub summary: String,
    pub timeline: TimelinePage,
}

/// A break in activity this long makes a customer dormant, and activity after it a return.
const DORMANT_AFTER: i64 = 60 * DAY;
const NEW_FOR: i64 = 30 * DAY;
const REPEAT_WINDOW: i64 = 7 * DAY;
const RECENT: i64 = 7 * DAY;
const LONG_WAIT_SECONDS: f64 = 300.0;

pub(crate) fn facts(
    events: &[Ev],
    traits: &[TraitView],
    notes: &[Note],
    now: i64,
    query: &TimelineQuery,
) -> Facts {
    let mut channels: BTreeMap<&str, u64> = BTreeMap::new();
    for e in events {
        *channels.entry(e.channel).or_default() += 1;
    }
    let mut channels: Vec<(String, u64)> = channels
        .into_iter()
        .map(|(c, n)| (c.to_string(), n))
        .collect();
    channels.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let purchases = purchases(events);
    let total_value = purchases.iter().map(|p| p.value).sum();
    let issues = issues(events);
    let friction = friction(events, now);
    let lifecycle = lifecycle(events, now);
    let summary = summary(events, traits, &purchases, &issues, &lifecycle, now);
    Facts {
        first_seen: events.first().map(|e| Timestamp::from_micros(e.ts)),
        last_seen: events.last().map(|e| Timestamp::from_micros(e.ts)),
        channels,
        lifecycle,
        purchases,
        total_value,
        issues,
        friction,
        summary,
        timeline: timeline(events, notes, query),
    }
}

/// Purchases: events with an order id and a value, once per order (an order confirmation
/// repeats the order of its purchase), plus `purchase` events without an order id.
fn purchases(events: &[Ev]) -> Vec<Purchase> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for e in events {
        let order = e.text("order_id");
        let counts = match order {
            Some(o) => e.num("value").is_some() && seen.insert(o.to_string()),
            None => e.activity == "purchase",
        };
        if counts {
            out.push(Purchase {
                at: Timestamp::from_micros(e.ts),
                channel: e.channel.to_string(),
                order_id: order.map(str::to_string),
                value: e.num("value").unwrap_or(0.0),
            });
        }
    }
    out
}

/// Failures, complaints and escalations, each with when it was resolved: by a later event
/// with outcome `resolved`/`success` (or `ticket_resolved`) on the same ticket, else on
/// the same topic, else — for a failure without either — in the same channel.
fn issues(events: &[Ev]) -> Vec<Issue> {
    let mut out = Vec::new();
    for (i, e) in events.iter().enumerate() {
        let kind = if e.activity.contains("complaint") {
            "complaint"
        } else if e.text("outcome") == Some("escalated") {
            "escalation"
        } else if e.is_failure() {
            "failure"
        } else {
            continue;
        };
        let ticket = e.text("ticket_id");
        let topic = e.text("topic");
        let resolved_at = events[i + 1..]
            .iter()
            .find(|later| {
                later.resolves()
                    && match (ticket, topic) {
                        (Some(t), _) => later.text("ticket_id") == Some(t),
                        (None, Some(t)) => later.text("topic") == Some(t),
                        (None, None) => later.channel == e.channel,
                    }
            })
            .map(|later| Timestamp::from_micros(later.ts));
        out.push(Issue {
            at: Timestamp::from_micros(e.ts),
            channel: e.channel.to_string(),
            activity: e.activity.to_string(),
            kind: kind.into(),
            topic: topic.map(str::to_string),
            ticket_id: ticket.map(str::to_string),
            resolved_at,
        });
    }
    out
}

fn friction(events: &[Ev], now: i64) -> Vec<FrictionFlag> {
    let mut flags = Vec::new();
    // Repeat contact: two assisted contacts on one topic within a week.
    let mut last_contact: BTreeMap<&str, i64> = BTreeMap::new();
    let mut repeated: BTreeMap<&str, u64> = BTreeMap::new();
    for e in events.iter().filter(|e| e.is_assisted()) {
        if let Some(topic) = e.text("topic") {
            if let Some(&before) = last_contact.get(topic) {
                if e.ts - before <= REPEAT_WINDOW {
                    *repeated.entry(topic).or_default() += 1;
                }
            }
            last_contact.insert(topic, e.ts);
        }
    }
    for (topic, n) in repeated {
        flags.push(FrictionFlag {
            kind: "repeat_contact".into(),
            detail: format!(
                "contacted again about {topic} within 7 days ({n} time{})",
                plural(n)
            ),
        });
    }
    let recent: Vec<&Ev> = events
        .iter()
        .filter(|e| e.is_failure() && now - e.ts <= RECENT && e.ts <= now)
        .collect();
    if !recent.is_empty() {
        let names: BTreeSet<&str> = recent.iter().map(|e| e.activity).collect();
        flags.push(FrictionFlag {
            kind: "recent_failures".into(),
            detail: format!(
                "{} failure{} in the last 7 days ({})",
                recent.len(),
                plural(recent.len() as u64),
                names.into_iter().collect::<Vec<_>>().join(", ")
            ),
        });
    }
    // Falling sentiment: the mean of the last three readings is well below the three before.
    let moods: Vec<f64> = events.iter().filter_map(|e| e.num("sentiment")).collect();
    if moods.len() >= 4 {
        let k = (moods.len() / 2).min(3);
        let mean = |s: &[f64]| s.iter().sum::<f64>() / s.len() as f64;
        let last = mean(&moods[moods.len() - k..]);
        let before = mean(&moods[moods.len() - 2 * k..moods.len() - k]);
        if before - last >= 0.3 {
            flags.push(FrictionFlag {
                kind: "falling_sentiment".into(),
                detail: format!("sentiment fell from {before:.2} to {last:.2}"),
            });
        }
    }
    let waits: Vec<&Ev> = events
        .iter()
        .filter(|e| {
            e.num("wait_seconds")
                .is_some_and(|w| w >= LONG_WAIT_SECONDS)
        })
        .collect();
    if let Some(longest) = waits.iter().max_by(|a, b| {
        a.num("wait_seconds")
            .partial_cmp(&b.num("wait_seconds"))
            .unwrap_or(std::cmp::Ordering::Equal)
    }) {
        flags.push(FrictionFlag {
            kind: "long_waits".into(),
            detail: format!(
                "{} wait{} of 5 minutes or more, longest {} on {}",
                waits.len(),
                plural(waits.len() as u64),
                minutes(longest.num("wait_seconds").unwrap_or(0.0)),
                longest.channel
            ),
        });
    }
    flags
}

fn lifecycle(events: &[Ev], now: i64) -> Lifecycle {
    let (Some(first), Some(last)) = (events.first(), events.last()) else {
        return Lifecycle {
            state: "new".into(),
            since: None,
            returned_after_days: None,
        };
    };
    if now - last.ts >= DORMANT_AFTER {
        return Lifecycle {
            state: "dormant".into(),
            since: Some(Timestamp::from_micros(last.ts)),
            returned_after_days: None,
        };
    }
    // The latest break of at least DORMANT_AFTER, if any, makes this a return.
    if let Some(w) = events
        .windows(2)
        .rev()
        .find(|w| w[1].ts - w[0].ts >= DORMANT_AFTER)
    {
        return Lifecycle {
            state: "returned".into(),
            since: Some(Timestamp::from_micros(w[1].ts)),
            returned_after_days: Some(((w[1].ts - w[0].ts) / DAY) as u64),
        };
    }
    let state = if now - first.ts <= NEW_FOR {
        "new"
    } else {
        "active"
    };
    Lifecycle {
        state: state.into(),
        since: Some(Timestamp::from_micros(first.ts)),
        returned_after_days: None,
    }
}

fn summary(
    events: &[Ev],
    traits: &[TraitView],
    purchases: &[Purchase],
    issues: &[Issue],
    lifecycle: &Lifecycle,
    now: i64,
) -> String {
    let mut parts: Vec<String> = Vec::new();
    // The latest open issue, and what the customer did about it since.
    let open: Vec<&Issue> = issues.iter().filter(|i| i.resolved_at.is_none()).collect();
    if let Some(mut k) = open.len().checked_sub(1) {
        // Start the story at the first of a run of open issues a day apart or less.
        while k > 0 && open[k].at.as_micros() - open[k - 1].at.as_micros() <= DAY {
            k -= 1;
        }
        let issue = open[k];
        let mut s = format!(
            "{} {} {}",
            capitalize(&channel_words(&issue.channel)),
            issue.activity.replace('_', " "),
            when(issue.at.as_micros(), now)
        );
        let later: Vec<&Ev> = events
            .iter()
            .filter(|e| e.ts > issue.at.as_micros())
            .collect();
        if let Some(follow) = later.iter().find(|e| {
            e.channel != issue.channel && (e.activity.contains("complaint") || e.is_assisted())
        }) {
            s.push_str(&format!(
                "; {} on {} {} later",
                follow.activity.replace('_', " "),
                follow.channel,
                duration_words(follow.ts - issue.at.as_micros())
            ));
            let answered = later
                .iter()
                .any(|e| e.ts > follow.ts && e.text("agent").is_some());
            if !answered {
                s.push_str("; no reply yet");
            }
        }
        parts.push(s);
    } else if let Some(issue) = issues.last() {
        parts.push(format!(
            "Last issue ({} on {}) resolved {}",
            issue.activity.replace('_', " "),
            issue.channel,
            when(issue.resolved_at.map(|t| t.as_micros()).unwrap_or(now), now)
        ));
    }
    let plan = traits.iter().find(|t| t.name == "plan");
    let first = events.first().map(|e| e.ts);
    match (plan, first) {
        (Some(p), Some(f)) => parts.push(format!(
            "{} customer since {}",
            capitalize(&p.value),
            year(f)
        )),
        (None, Some(f)) => parts.push(format!("Customer since {}", year(f))),
        _ => {}
    }
    let this_year = year(now);
    let orders = purchases
        .iter()
        .filter(|p| year(p.at.as_micros()) == this_year)
        .count();
    match purchases.last() {
        _ if orders > 0 => parts.push(format!("{orders} order{} this year", plural(orders as u64))),
        Some(last) => parts.push(format!(
            "{} order{}, the last on {}",
            purchases.len(),
            plural(purchases.len() as u64),
            date(last.at.as_micros())
        )),
        None => parts.push("No orders yet".into()),
    }
    match lifecycle.state.as_str() {
        "dormant" => parts.push(format!(
            "Dormant since {}",
            lifecycle
                .since
                .map(|t| date(t.as_micros()))
                .unwrap_or_default()
        )),
        "returned" => parts.push(format!(
            "Returned after {} days away",
            lifecycle.returned_after_days.unwrap_or(0)
        )),
        _ => {}
    }
    parts.join(". ") + "."
}

fn timeline(events: &[Ev], notes: &[Note], q: &TimelineQuery) -> TimelinePage {
    enum Entry<'e, 'a> {
        Event(&'e Ev<'a>),
        Note(&'e Note),
    }
    let in_range = |ts: i64| {
        q.from.is_none_or(|f| ts >= f.as_micros()) && q.to.is_none_or(|t| ts < t.as_micros())
    };
    let mut entries: Vec<(i64, Entry)> = events
        .iter()
        .filter(|e| q.channels.is_empty() || q.channels.iter().any(|c| c == e.channel))
        .filter(|e| in_range(e.ts))
        .map(|e| (e.ts, Entry::Event(e)))
        .collect();
    // Notes are part of the story but not of any channel: a channel filter hides them.
    if q.channels.is_empty() {
        entries.extend(
            notes
                .iter()
                .filter(|n| in_range(n.created_at.as_micros()))
                .map(|n| (n.created_at.as_micros(), Entry::Note(n))),
        );
    }
    // Newest first; among equal times the later-arrived first (a stable sort of the
    // reversed time order). Only the page is turned into output.
    entries.reverse();
    entries.sort_by_key(|e| std::cmp::Reverse(e.0));
    let total = entries.len() as u64;
    let page = entries
        .into_iter()
        .skip(q.offset)
        .take(q.limit)
        .map(|(ts, entry)| match entry {
            Entry::Event(e) => TimelineEntry {
                at: Timestamp::from_micros(ts),
                kind: "event".into(),
                channel: e.channel.to_string(),
                activity: e.activity.to_string(),
                properties: e
                    .props
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.text()))
                    .collect(),
            },
            Entry::Note(n) => {
                let mut properties = BTreeMap::from([
                    ("author".to_string(), n.author.clone()),
                    ("text".to_string(), n.text.clone()),
                    ("note_id".to_string(), n.id.to_string()),
                ]);
                if let Some(t) = &n.topic {
                    properties.insert("topic".into(), t.clone());
                }
                if let Some(e) = &n.event {
                    properties.insert("event".into(), e.clone());
                }
                TimelineEntry {
                    at: n.created_at,
                    kind: "note".into(),
                    channel: String::new(),
                    activity: "note".into(),
                    properties,
                }
            }
        })
        .collect();
    TimelinePage {
        total,
        offset: q.offset as u64,
        limit: q.limit as u64,
        entries: page,
    }
}

fn plural(n: u64) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

fn channel_words(channel: &str) -> String {
    match channel {
        "mobile_app" => "app".into(),
        other => other.replace('_', " "),
    }
}

fn minutes(seconds: f64) -> String {
    format!("{:.0} min", seconds / 60.0)
}

fn duration_words(micros: i64) -> String {
    let minutes = micros / (60 * MICROS_PER_SECOND);
    if minutes < 60 {
        format!("{minutes} min")
    } else if minutes < 48 * 60 {
        format!("{} h", minutes / 60)
    } else {
        format!("{} days", minutes / (24 * 60))
    }
}

fn date(micros: i64) -> String {
    Timestamp::from_micros(micros).to_string()[..10].to_string()
}

fn year(micros: i64) -> String {
    date(micros)[..4].to_string()
}

/// "today 14:02", "yesterday 14:02", or "on 2026-03-01 14:02".
fn when(micros: i64, now: i64) -> String {
    let text = Timestamp::from_micros(micros).to_string();
    let clock = &text[11..16];
    let day = |m: i64| m.div_euclid(DAY);
    match day(now) - day(micros) {
        0 => format!("today {clock}"),
        1 => format!("yesterday {clock}"),
        _ => format!("on {} {clock}", &text[..10]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_767_225_600_000_000; // 2026-01-01T00:00:00Z
    const MIN: i64 = 60 * MICROS_PER_SECOND;

    fn ev<'a>(
        ts: i64,
        channel: &'a str,
        activity: &'a str,
        props: &[(&'static str, PropValue<'a>)],
    ) -> Ev<'a> {
        Ev {
            ts,
            channel,
            activity,
            props: props.to_vec(),
        }
    }

    fn text(s: &str) -> PropValue<'_> {
        PropValue::Text(s)
    }

    mod through_the_app {
        use super::super::*;
        use crate::{App, AppOptions, Incoming};
        use omnitrail_model::{
            Channel, Event, FixedClock, Identifier, IdentifierKind, ProjectId, Value,
        };
        use omnitrail_store::{partition_of, ScanSpec};
        use std::sync::Arc;

        const P: ProjectId = ProjectId::DEFAULT;
        const T0: i64 = 1_767_225_600_000_000; // 2026-01-01T00:00:00Z
        const MIN: i64 = 60 * MICROS_PER_SECOND;

        fn open(dir: &std::path::Path) -> App {
            App::open(
                dir,
                AppOptions {
                    clock: Arc::new(FixedClock::new(Timestamp::from_micros(T0 + 30 * DAY))),
                    ..AppOptions::default()
                },
            )
            .expect("open app")
        }

        fn email(who: &str) -> Identifier {
            Identifier::new(IdentifierKind::Email, &format!("{who}@example.com"))
                .expect("fixture email")
        }

        fn ev(ts: i64, ids: &[Identifier], channel: Channel, activity: &str) -> Event {
            let mut e = Event::new(
                Timestamp::from_micros(ts),
                ids[0].clone(),
                channel,
                activity,
            );
            for i in &ids[1..] {
                e = e.with_identifier(i.clone());
            }
            e
        }

        fn ingest(app: &App, events: Vec<Event>) {
            let receipt = app
                .ingest(P, events.into_iter().map(Incoming::Event).collect())
                .expect("ingest");
            assert!(receipt.rejected.is_empty(), "{:?}", receipt.rejected);
        }

        /// One event for each of `n` other customers, spread over every partition.
        fn others(n: usize, ts: i64, activity: &str) -> Vec<Event> {
            (0..n)
                .map(|i| {
                    ev(
                        ts + i as i64,
                        &[email(&format!("other{i}"))],
                        Channel::Web,
                        activity,
                    )
                })
                .collect()
        }

        fn activities(app: &App, who: &str) -> Vec<String> {
            let v = app
                .customer(
                    P,
                    who,
                    &TimelineQuery {
                        limit: 1000,
                        ..TimelineQuery::default()
                    },
                )
                .expect("view");
            assert_eq!(v.events, v.timeline.total, "no notes in these views");
            v.timeline
                .entries
                .iter()
                .rev()
                .map(|e| e.activity.clone())
                .collect()
        }

        /// The customer's events and traits as the whole-partition path gives them:
        /// every partition's merged journeys, then the customer's range. The view used
        /// to be computed like this; it must still show exactly the same.
        fn through_journeys(app: &App, who: &str) -> String {
            let id = app.resolve_customer(P, who).expect("resolve");
            let spec = ScanSpec {
                properties: VIEW_PROPERTIES.iter().map(|p| p.to_string()).collect(),
                traits: app.store().trait_names(P),
            };
            let parts = app.journeys(P, &spec).expect("journeys");
            let part = &parts[partition_of(P, id, parts.len() as u32) as usize];
            let decoded = match part.customers.binary_search(&id) {
                Ok(i) => decode(part, i),
                Err(_) => (Vec::new(), Vec::new()),
            };
            format!("{decoded:?}")
        }

        fn through_keys(app: &App, who: &str) -> String {
            let id = app.resolve_customer(P, who).expect("resolve");
            let cluster = app.identities.cluster(app.store(), P, id).expect("cluster");
            let properties: Vec<String> = VIEW_PROPERTIES.iter().map(|p| p.to_string()).collect();
            let pieces = app
                .store()
                .key_journeys(P, &cluster.keys, &properties)
                .expect("key journeys");
            let decoded = decode_pieces(pieces.iter().map(|p| (p.journeys.as_ref(), p.index)));
            format!("{decoded:?}")
        }

        #[test]
        fn customer_view_sees_events_ingested_after_it_was_first_read() {
            let dir = tempfile::tempdir().expect("temp dir");
            let app = open(dir.path());
            let ana = || email("ana");
            let mut first = others(40, T0, "visit");
            first.push(ev(T0, &[ana()], Channel::Web, "login"));
            ingest(&app, first);
            assert_eq!(activities(&app, "ana@example.com"), ["login"]);

            let mut more = others(40, T0 + MIN, "visit_again");
            more.push(ev(T0 + 2 * MIN, &[ana()], Channel::Web, "purchase"));
            ingest(&app, more);
            assert_eq!(activities(&app, "ana@example.com"), ["login", "purchase"]);

            // Once compacted, then with new events in the log on top of the segments.
            app.compact().expect("compact");
            assert_eq!(activities(&app, "ana@example.com"), ["login", "purchase"]);
            let mut later = others(40, T0 + 3 * MIN, "visit_later");
            later.push(ev(T0 + 4 * MIN, &[ana()], Channel::Email, "email_opened"));
            ingest(&app, later);
            assert_eq!(
                activities(&app, "ana@example.com"),
                ["login", "purchase", "email_opened"]
            );
            assert_eq!(
                activities(&app, "other7@example.com"),
                ["visit", "visit_again", "visit_later"]
            );
        }

        #[test]
        fn customer_view_reads_only_the_pages_of_its_keys() {
            let dir = tempfile::tempdir().expect("temp dir");
            let app = App::open(
                dir.path(),
                AppOptions {
                    store: omnitrail_store::StoreOptions {
                        partitions: 2,
                        ..Default::default()
                    },
                    ..AppOptions::default()
                },
            )
            .expect("open app");
            // Enough rows that each partition's segment has several pages.
            let mut events = Vec::new();
            for round in 0..12 {
                events.extend(others(3000, T0 + round * MIN, "visit"));
            }
            events.push(ev(T0, &[email("ana")], Channel::Web, "login"));
            ingest(&app, events);
            app.compact().expect("compact");
            let page = omnitrail_store::segment::KEY_PAGE_ROWS as u64;
            assert!(
                app.store()
                    .manifest()
                    .segments
                    .iter()
                    .all(|s| s.rows > 3 * page),
                "every segment has more than three pages"
            );
            ingest(&app, others(200, T0 + 20 * MIN, "visit_again"));
            let before = app.store().load_counts();
            assert_eq!(activities(&app, "ana@example.com"), ["login"]);
            let after = app.store().load_counts();
            assert_eq!(
                after.partitions, before.partitions,
                "no whole partition is built"
            );
            let decoded = after.key_rows - before.key_rows;
            assert!(
                decoded > 0 && decoded <= 2 * page,
                "one key: a page or two of its partition's segment, not {decoded} rows"
            );
            // Events in the log show up without reading more of the segments.
            ingest(
                &app,
                vec![ev(T0 + 30 * MIN, &[email("ana")], Channel::Web, "logout")],
            );
            assert_eq!(activities(&app, "ana@example.com"), ["login", "logout"]);
            assert_eq!(app.store().load_counts().partitions, before.partitions);
        }

        #[test]
        fn customer_view_equals_the_view_of_merged_journeys() {
            let dir = tempfile::tempdir().expect("temp dir");
            let app = open(dir.path());
            let ana = || email("ana");
            let phone =
                || Identifier::new(IdentifierKind::Phone, "+1 555 123 4567").expect("phone");
            let crm = || Identifier::new(IdentifierKind::CrmId, "CRM-7").expect("crm");
            let with = |e: Event, k: &str, v: &str| e.with_property(k, Value::Str(v.into()));
            // Keys in different partitions, equal times across keys and within one, traits
            // that change, numbers and texts.
            let mut events = others(60, T0, "visit");
            events.extend([
                ev(T0, &[ana()], Channel::Web, "login")
                    .with_trait("plan", Value::Str("basic".into())),
                ev(T0, &[ana()], Channel::Web, "cart_added"),
                with(
                    ev(T0 + MIN, &[phone()], Channel::Phone, "call_ended"),
                    "topic",
                    "billing",
                )
                .with_property("wait_seconds", Value::Num(420.0))
                .with_trait("plan", Value::Str("gold".into())),
                ev(T0 + MIN, &[crm()], Channel::Other, "crm_note"),
            ]);
            ingest(&app, events);
            app.compact().expect("compact");
            ingest(
                &app,
                vec![
                    ev(T0 + MIN, &[ana()], Channel::Web, "payment_failed")
                        .with_property("outcome", Value::Str("failure".into())),
                    ev(T0 + 2 * MIN, &[crm()], Channel::Other, "crm_updated")
                        .with_trait("plan", Value::Str("premium".into()))
                        .with_trait("tier", Value::Num(3.0)),
                ],
            );
            let who = [
                "ana@example.com",
                "phone:+15551234567",
                "crm_id:CRM-7",
                "other3@example.com",
            ];
            for w in who {
                assert_eq!(
                    through_keys(&app, w),
                    through_journeys(&app, w),
                    "apart: {w}"
                );
            }
            // Link the three keys (two by an event still in the log, one compacted later).
            ingest(
                &app,
                vec![ev(
                    T0 + 3 * MIN,
                    &[crm(), ana(), phone()],
                    Channel::Other,
                    "crm_linked",
                )],
            );
            let merged = through_keys(&app, "ana@example.com");
            assert!(
                merged.contains("call_ended") && merged.contains("crm_updated"),
                "{merged}"
            );
            for w in who {
                assert_eq!(
                    through_keys(&app, w),
                    through_journeys(&app, w),
                    "merged: {w}"
                );
            }
            app.compact().expect("compact");
            ingest(
                &app,
                vec![ev(T0 + MIN, &[phone()], Channel::Sms, "sms_sent")],
            );
            for w in who {
                assert_eq!(
                    through_keys(&app, w),
                    through_journeys(&app, w),
                    "compacted: {w}"
                );
            }
            app.unmerge(P, "phone:+15551234567").expect("unmerge");
            for w in who {
                assert_eq!(
                    through_keys(&app, w),
                    through_journeys(&app, w),
                    "unmerged: {w}"
                );
            }
            assert!(!through_keys(&app, "ana@example.com").contains("sms_sent"));
        }
    }

    #[test]
    fn an_issue_is_resolved_by_a_later_success_on_its_ticket_then_topic_then_channel() {
        let events = [
            ev(
                T0,
                "chat",
                "chat_ended",
                &[("outcome", text("escalated")), ("ticket_id", text("T1"))],
            ),
            ev(T0 + MIN, "web", "payment_failed", &[]),
            ev(
                T0 + 2 * MIN,
                "phone",
                "call_ended",
                &[("outcome", text("resolved")), ("ticket_id", text("T2"))],
            ),
            ev(
                T0 + 3 * MIN,
                "email",
                "ticket_resolved",
                &[("ticket_id", text("T1"))],
            ),
            ev(
                T0 + 4 * MIN,
                "web",
                "purchase",
                &[("outcome", text("success"))],
            ),
            ev(
                T0 + 5 * MIN,
                "social",
                "complaint",
                &[("topic", text("billing"))],
            ),
        ];
        let issues = issues(&events);
        let got: Vec<(&str, Option<i64>)> = issues
            .iter()
            .map(|i| (i.kind.as_str(), i.resolved_at.map(|t| t.as_micros())))
            .collect();
        assert_eq!(
            got,
            [
                ("escalation", Some(T0 + 3 * MIN)),
                ("failure", Some(T0 + 4 * MIN)),
                ("complaint", None),
            ]
        );
    }

    #[test]
    fn purchases_count_each_order_once() {
        let events = [
            ev(
                T0,
                "web",
                "purchase",
                &[("order_id", text("O1")), ("value", PropValue::Num(20.0))],
            ),
            ev(
                T0 + MIN,
                "email",
                "order_confirmed",
                &[("order_id", text("O1")), ("value", PropValue::Num(20.0))],
            ),
            ev(T0 + 2 * MIN, "store", "purchase", &[]),
        ];
        let p = purchases(&events);
        assert_eq!(p.len(), 2);
        assert_eq!(p.iter().map(|p| p.value).sum::<f64>(), 20.0);
    }

    #[test]
    fn lifecycle_is_new_active_dormant_or_returned() {
        let day = DAY;
        let state = |ts: &[i64], now: i64| {
            let events: Vec<Ev> = ts.iter().map(|&t| ev(t, "web", "login", &[])).collect();
            let l = lifecycle(&events, now);
            (l.state, l.returned_after_days)
        };
        assert_eq!(state(&[T0], T0 + 10 * day), ("new".into(), None));
        assert_eq!(
            state(&[T0, T0 + 40 * day], T0 + 50 * day),
            ("active".into(), None)
        );
        assert_eq!(state(&[T0], T0 + 61 * day), ("dormant".into(), None));
        assert_eq!(
            state(&[T0, T0 + 100 * day], T0 + 101 * day),
            ("returned".into(), Some(100))
        );
    }

    #[test]
    fn friction_flags_repeat_contact_recent_failures_falling_sentiment_long_waits() {
        let events = [
            ev(
                T0,
                "phone",
                "call_ended",
                &[
                    ("topic", text("billing")),
                    ("sentiment", PropValue::Num(0.6)),
                    ("wait_seconds", PropValue::Num(600.0)),
                ],
            ),
            ev(
                T0 + MIN,
                "web",
                "login",
                &[("sentiment", PropValue::Num(0.5))],
            ),
            ev(
                T0 + 2 * MIN,
                "web",
                "login",
                &[("sentiment", PropValue::Num(0.4))],
            ),
            ev(
                T0 + 3 * DAY,
                "chat",
                "chat_ended",
                &[
                    ("topic", text("billing")),
                    ("sentiment", PropValue::Num(-0.2)),
                ],
            ),
            ev(
                T0 + 3 * DAY + MIN,
                "web",
                "payment_failed",
                &[("sentiment", PropValue::Num(-0.5))],
            ),
            ev(
                T0 + 3 * DAY + 2 * MIN,
                "web",
                "login",
                &[("sentiment", PropValue::Num(-0.6))],
            ),
        ];
        let flags = friction(&events, T0 + 4 * DAY);
        let kinds: Vec<&str> = flags.iter().map(|f| f.kind.as_str()).collect();
        assert_eq!(
            kinds,
            [
                "repeat_contact",
                "recent_failures",
                "falling_sentiment",
                "long_waits"
            ]
        );
        assert_eq!(
            flags[0].detail,
            "contacted again about billing within 7 days (1 time)"
        );
        assert_eq!(
            flags[3].detail,
            "1 wait of 5 minutes or more, longest 10 min on phone"
        );
        assert!(friction(&events, T0 + 30 * DAY)
            .iter()
            .all(|f| f.kind != "recent_failures"));
    }

    #[test]
    fn summary_tells_the_open_story_first() {
        let now = T0 + DAY + 20 * 60 * MIN; // the next day, 20:00
        let events = [
            ev(T0 + 14 * 60 * MIN + 2 * MIN, "web", "payment_failed", &[]),
            ev(T0 + 14 * 60 * MIN + 42 * MIN, "social", "complaint", &[]),
        ];
        let issues = issues(&events);
        let l = lifecycle(&events, now);
        let s = summary(&events, &[], &[], &issues, &l, now);
        assert_eq!(
            s,
            "Web payment failed yesterday 14:02; complaint on social 40 min later; no reply yet. \
             Customer since 2026. No orders yet."
        );
    }

    #[test]
    fn timeline_is_newest_first_and_paged_with_notes_in_it() {
        let events = [
            ev(T0, "web", "a", &[]),
            ev(T0, "web", "b", &[]),
            ev(T0 + MIN, "sms", "c", &[]),
        ];
        let notes = [Note {
            id: 1,
            author: "x".into(),
            created_at: Timestamp::from_micros(T0 + 2 * MIN),
            updated_at: Timestamp::from_micros(T0 + 2 * MIN),
            text: "hi".into(),
            topic: None,
            event: None,
        }];
        let page = timeline(&events, &notes, &TimelineQuery::default());
        let acts: Vec<&str> = page.entries.iter().map(|e| e.activity.as_str()).collect();
        assert_eq!(
            acts,
            ["note", "c", "b", "a"],
            "ties keep later-arrived first"
        );
        let q = TimelineQuery {
            channels: vec!["web".into()],
            offset: 1,
            limit: 5,
            ..TimelineQuery::default()
        };
        let page = timeline(&events, &notes, &q);
        assert_eq!((page.total, page.entries.len()), (2, 1));
        assert_eq!(page.entries[0].activity, "a");
    }
}
