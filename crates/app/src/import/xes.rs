//! XES (IEEE 1849) reading, streamed with quick-xml: logs can be hundreds of megabytes, so
//! only one trace is held in memory at a time.
//!
//! A trace is one customer: its `concept:name` is the customer identifier and its other
//! attributes are traits. Its events are built when the trace closes, because the standard
//! does not require trace attributes to come before the events.
//!
//! `<global>` defaults are not applied: real logs fill them with placeholders (`UNKNOWN`, a
//! 1970 timestamp) that would turn an event missing its timestamp into a wrong event instead of
//! a reject.

use super::mapping::{
    identifier_from_cell, identifier_kind_for_name, property_from_cell, property_name,
    trait_from_cell, trait_name, Cell, ColumnMapping, RowError, EVENT_ID_NAMES,
};
use super::{
    count_newlines, open_input, truncate_raw, Batch, EventReader, ImportError, Progress, Reject,
};
use omnitrail_model::{
    check_property, Channel, Event, Identifier, IdentifierKind, Properties, Timestamp, Value,
};
use quick_xml::encoding::Decoder;
use quick_xml::events::{BytesStart, Event as XmlEvent};
use quick_xml::Reader;
use std::borrow::Cow;
use std::collections::VecDeque;
use std::io::{BufRead, Read};
use std::path::Path;

pub(crate) struct XesReader {
    reader: Reader<LineCounter<Box<dyn BufRead + Send>>>,
    buf: Vec<u8>,
    state: State,
    progress: Progress,
}

impl XesReader {
    pub(crate) fn open(
        path: &Path,
        file: String,
        mapping: &ColumnMapping,
    ) -> Result<Self, ImportError> {
        let (input, progress) = open_input(path, &file)?;
        let reader = Reader::from_reader(LineCounter {
            inner: input,
            newlines: 0,
        });
        Ok(XesReader {
            reader,
            buf: Vec::new(),
            state: State {
                keys: Keys::new(mapping),
                file,
                stack: Vec::new(),
                trace: None,
                event: None,
                ready: VecDeque::new(),
                seen_log: false,
                done: false,
            },
            progress,
        })
    }

    /// Reads one XML event and hands it to the state.
    fn step(&mut self) -> Result<(), ImportError> {
        self.buf.clear();
        let decoder = self.reader.decoder();
        let event = self.reader.read_event_into(&mut self.buf);
        // The line the parser is on: the newlines it has consumed, plus one.
        let line = self.reader.get_ref().newlines + 1;
        let malformed = |reason: String| ImportError::Malformed {
            file: self.state.file.clone(),
            line,
            reason: format!("malformed XML: {reason}"),
        };
        match event.map_err(|e| malformed(e.to_string()))? {
            XmlEvent::Start(e) => self.state.open(&e, decoder, line, false),
            XmlEvent::Empty(e) => self.state.open(&e, decoder, line, true),
            XmlEvent::End(_) => {
                if let Some(ctx) = self.state.stack.pop() {
                    self.state.close(ctx);
                }
                Ok(())
            }
            XmlEvent::Eof => self.state.end_of_file(line),
            _ => Ok(()),
        }
    }
}

impl EventReader for XesReader {
    fn next_batch(&mut self, max_events: usize) -> Result<Option<Batch>, ImportError> {
        let max = max_events.max(1);
        while self.state.ready.len() < max && !self.state.done {
            self.step()?;
        }
        let mut batch = Batch::default();
        let n = self.state.ready.len().min(max);
        for built in self.state.ready.drain(..n) {
            match built {
                Ok(event) => batch.events.push(event),
                Err(reject) => batch.rejects.push(reject),
            }
        }
        Ok((batch.len() > 0).then_some(batch))
    }

    fn bytes_read(&self) -> u64 {
        self.progress.read()
    }

    fn total_bytes(&self) -> u64 {
        self.progress.total
    }
}

/// Counts the newlines in the bytes the XML parser consumes, which gives exact line numbers
/// without a second pass over the text.
struct LineCounter<R> {
    inner: R,
    newlines: u64,
}

impl<R: BufRead> Read for LineCounter<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.newlines += count_newlines(&buf[..n]);
        Ok(n)
    }
}

impl<R: BufRead> BufRead for LineCounter<R> {
    fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
        self.inner.fill_buf()
    }

    fn consume(&mut self, amt: usize) {
        if amt > 0 {
            // The bytes being consumed are still in the inner buffer: this does no IO.
            if let Ok(buf) = self.inner.fill_buf() {
                self.newlines += count_newlines(&buf[..amt.min(buf.len())]);
            }
        }
        self.inner.consume(amt);
    }
}

/// Where the parser is in the document.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Ctx {
    Log,
    Trace,
    Event,
    /// Anything whose content is not read: globals, classifiers, extensions, log attributes,
    /// lists and containers, the children of nested attributes, unknown elements.
    Skip,
}

/// The XES attribute types that carry a single value.
#[derive(Clone, Copy, Debug, PartialEq)]
enum AttrType {
    String,
    Date,
    Int,
    Float,
    Boolean,
    Id,
}

impl AttrType {
    fn from_tag(tag: &[u8]) -> Option<AttrType> {
        Some(match tag {
            b"string" => AttrType::String,
            b"date" => AttrType::Date,
            b"int" => AttrType::Int,
            b"float" => AttrType::Float,
            b"boolean" => AttrType::Boolean,
            b"id" => AttrType::Id,
            _ => return None,
        })
    }
}

#[derive(Clone, Debug)]
struct Attribute {
    key: String,
    ty: AttrType,
    value: String,
}

impl Attribute {
    /// The value typed as the attribute declares it.
    fn cell(&self) -> Result<Cell<'_>, String> {
        let text = self.value.trim();
        match self.ty {
            AttrType::String | AttrType::Id => Ok(Cell::Text(Cow::Borrowed(&self.value))),
            AttrType::Date => Timestamp::parse(text)
                .map(|t| Cell::Micros(t.as_micros()))
                .map_err(|e| e.to_string()),
            AttrType::Int => text
                .parse()
                .map(Cell::Int)
                .map_err(|_| format!("'{text}' is not an integer")),
            AttrType::Float => match text.parse::<f64>() {
                Ok(n) if n.is_finite() => Ok(Cell::Num(n)),
                _ => Err(format!("'{text}' is not a number")),
            },
            AttrType::Boolean => match text.to_ascii_lowercase().as_str() {
                "true" => Ok(Cell::Bool(true)),
                "false" => Ok(Cell::Bool(false)),
                _ => Err(format!("'{text}' is not a boolean")),
            },
        }
    }

    fn error(&self, reason: impl Into<String>) -> RowError {
        RowError::new(&self.key, reason)
    }
}

#[derive(Debug)]
struct PendingEvent {
    line: u64,
    attributes: Vec<Attribute>,
}

#[derive(Debug, Default)]
struct Trace {
    attributes: Vec<Attribute>,
    events: Vec<PendingEvent>,
}

/// The attribute keys that play a role, from the mapping flags or the XES standard names.
struct Keys {
    customer: String,
    customer_kind: IdentifierKind,
    activity: String,
    activity_value: Option<String>,
    timestamp: String,
    /// `None` when a constant channel was chosen instead.
    channel: Option<String>,
    channel_value: Channel,
    event_id: Option<String>,
    identifiers: Vec<(IdentifierKind, String)>,
    properties: Vec<(String, String)>,
    ignore: Vec<String>,
}

impl Keys {
    fn new(mapping: &ColumnMapping) -> Keys {
        Keys {
            customer: mapping
                .customer
                .clone()
                .unwrap_or_else(|| "concept:name".into()),
            customer_kind: mapping
                .customer_kind
                .clone()
                .unwrap_or(IdentifierKind::UserId),
            activity: mapping
                .activity
                .clone()
                .unwrap_or_else(|| "concept:name".into()),
            activity_value: mapping
                .activity_value
                .clone()
                .filter(|_| mapping.activity.is_none()),
            timestamp: mapping
                .timestamp
                .clone()
                .unwrap_or_else(|| "time:timestamp".into()),
            channel: match (&mapping.channel, &mapping.channel_value) {
                (Some(key), _) => Some(key.clone()),
                (None, Some(_)) => None,
                (None, None) => Some("channel".into()),
            },
            channel_value: mapping.channel_value.clone().unwrap_or(Channel::Other),
            event_id: mapping.event_id.clone(),
            identifiers: mapping.identifiers.clone(),
            properties: mapping.properties.clone(),
            ignore: mapping.ignore.clone(),
        }
    }

    fn is_ignored(&self, key: &str) -> bool {
        self.ignore.iter().any(|k| k.eq_ignore_ascii_case(key))
    }

    fn is_channel(&self, key: &str) -> bool {
        self.channel
            .as_deref()
            .is_some_and(|k| k.eq_ignore_ascii_case(key))
    }

    fn is_event_id(&self, key: &str) -> bool {
        match &self.event_id {
            Some(k) => k.eq_ignore_ascii_case(key),
            None => EVENT_ID_NAMES.iter().any(|k| k.eq_ignore_ascii_case(key)),
        }
    }

    fn identifier_kind(&self, key: &str) -> Option<IdentifierKind> {
        self.identifiers
            .iter()
            .find(|(_, k)| k.eq_ignore_ascii_case(key))
            .map(|(kind, _)| kind.clone())
            .or_else(|| identifier_kind_for_name(key))
    }

    fn property_name(&self, key: &str) -> String {
        self.properties
            .iter()
            .find(|(_, k)| k.eq_ignore_ascii_case(key))
            .map_or_else(|| property_name(key), |(name, _)| name.clone())
    }
}

/// What a trace gives each of its events.
struct TraceContext {
    identifiers: Vec<Identifier>,
    channel: Option<Channel>,
    traits: Properties,
}

impl TraceContext {
    fn new(attributes: &[Attribute], keys: &Keys) -> Result<TraceContext, RowError> {
        let mut context = TraceContext {
            identifiers: Vec::new(),
            channel: None,
            traits: Properties::new(),
        };
        for attr in attributes {
            if keys.is_ignored(&attr.key) {
                continue;
            }
            let cell = attr.cell().map_err(|r| attr.error(r))?;
            if attr.key.eq_ignore_ascii_case(&keys.customer) {
                let id =
                    identifier_from_cell(&keys.customer_kind, &cell).map_err(|r| attr.error(r))?;
                context.identifiers.push(id);
            } else if keys.is_channel(&attr.key) {
                context.channel = Some(parse_channel(attr)?);
            } else if let Some(kind) = keys.identifier_kind(&attr.key) {
                context
                    .identifiers
                    .push(identifier_from_cell(&kind, &cell).map_err(|r| attr.error(r))?);
            } else {
                let value = match attr.ty {
                    AttrType::Id => Some(Value::Str(attr.value.trim().into())),
                    _ => trait_from_cell(&cell),
                };
                if let Some(value) = value {
                    context.traits.insert(trait_name(&attr.key).into(), value);
                }
            }
        }
        Ok(context)
    }
}

fn parse_channel(attr: &Attribute) -> Result<Channel, RowError> {
    Channel::parse(&attr.value).map_err(|e| attr.error(e.to_string()))
}

/// Everything but the XML reader, so that parsed elements can be handed over while the
/// reader's buffer is borrowed.
struct State {
    file: String,
    keys: Keys,
    stack: Vec<Ctx>,
    trace: Option<Trace>,
    event: Option<PendingEvent>,
    /// Built events and rejects, in file order, waiting to be returned.
    ready: VecDeque<Result<Event, Reject>>,
    seen_log: bool,
    done: bool,
}

impl State {
    fn open(
        &mut self,
        e: &BytesStart,
        decoder: Decoder,
        line: u64,
        empty: bool,
    ) -> Result<(), ImportError> {
        let name = e.local_name();
        let tag = name.as_ref();
        let ctx = match (self.stack.last(), tag) {
            (None, b"log") if !self.seen_log => {
                self.seen_log = true;
                Ctx::Log
            }
            (None, _) => {
                return Err(ImportError::Malformed {
                    file: self.file.clone(),
                    line,
                    reason: format!(
                        "not an XES log: <{}> where the <log> element should be",
                        String::from_utf8_lossy(tag)
                    ),
                })
            }
            (Some(Ctx::Log), b"trace") => {
                self.trace = Some(Trace::default());
                Ctx::Trace
            }
            (Some(Ctx::Trace), b"event") => {
                self.event = Some(PendingEvent {
                    line,
                    attributes: Vec::new(),
                });
                Ctx::Event
            }
            (Some(parent @ (Ctx::Trace | Ctx::Event)), tag) => {
                if let Some(ty) = AttrType::from_tag(tag) {
                    let attr = self.read_attribute(e, ty, decoder, line)?;
                    let target = match parent {
                        Ctx::Event => self.event.as_mut().map(|ev| &mut ev.attributes),
                        _ => self.trace.as_mut().map(|t| &mut t.attributes),
                    };
                    if let (Some(attributes), Some(attr)) = (target, attr) {
                        attributes.push(attr);
                    }
                }
                // The children of an attribute are meta-attributes about it, not about the
                // event; lists, containers and unknown elements are not read either.
                Ctx::Skip
            }
            _ => Ctx::Skip,
        };
        if empty {
            self.close(ctx);
        } else {
            self.stack.push(ctx);
        }
        Ok(())
    }

    /// The key and value of an attribute element; `None` when it has no key.
    fn read_attribute(
        &self,
        e: &BytesStart,
        ty: AttrType,
        decoder: Decoder,
        line: u64,
    ) -> Result<Option<Attribute>, ImportError> {
        let malformed = |reason: String| ImportError::Malformed {
            file: self.file.clone(),
            line,
            reason: format!("malformed XML: {reason}"),
        };
        let mut key = None;
        let mut value = String::new();
        for attr in e.attributes() {
            let attr = attr.map_err(|e| malformed(e.to_string()))?;
            let text = || {
                attr.decode_and_unescape_value(decoder)
                    .map(Cow::into_owned)
                    .map_err(|e| malformed(e.to_string()))
            };
            match attr.key.as_ref() {
                b"key" => key = Some(text()?),
                b"value" => value = text()?,
                _ => {}
            }
        }
        Ok(key.map(|key| Attribute { key, ty, value }))
    }

    fn close(&mut self, ctx: Ctx) {
        match ctx {
            Ctx::Event => {
                if let (Some(event), Some(trace)) = (self.event.take(), self.trace.as_mut()) {
                    trace.events.push(event);
                }
            }
            Ctx::Trace => {
                if let Some(trace) = self.trace.take() {
                    self.finish_trace(trace);
                }
            }
            Ctx::Log | Ctx::Skip => {}
        }
    }

    fn end_of_file(&mut self, line: u64) -> Result<(), ImportError> {
        let problem = match self.stack.last() {
            _ if !self.seen_log => Some("no <log> element: this is not an XES file"),
            Some(Ctx::Log) => Some("the file ends inside <log> (is it truncated?)"),
            Some(Ctx::Trace | Ctx::Event) => {
                Some("the file ends inside a <trace> (is it truncated?)")
            }
            Some(Ctx::Skip) => Some("the file ends inside an element (is it truncated?)"),
            None => None,
        };
        match problem {
            Some(reason) => Err(ImportError::Malformed {
                file: self.file.clone(),
                line,
                reason: reason.to_string(),
            }),
            None => {
                self.done = true;
                Ok(())
            }
        }
    }

    fn finish_trace(&mut self, trace: Trace) {
        let context = TraceContext::new(&trace.attributes, &self.keys);
        for pending in trace.events {
            let built = context
                .as_ref()
                .map_err(Clone::clone)
                .and_then(|context| self.build(context, &pending))
                .map_err(|e| Reject {
                    file: self.file.clone(),
                    line: pending.line,
                    field: e.field,
                    reason: e.reason,
                    raw: raw_event(&trace.attributes, &pending),
                });
            self.ready.push_back(built);
        }
    }

    fn build(&self, context: &TraceContext, pending: &PendingEvent) -> Result<Event, RowError> {
        let keys = &self.keys;
        let mut activity = keys.activity_value.clone();
        let mut timestamp = None;
        let mut channel = None;
        let mut event_id = None;
        let mut identifiers = context.identifiers.clone();
        let mut properties = Properties::new();
        for attr in &pending.attributes {
            let key = attr.key.as_str();
            if keys.is_ignored(key) {
                continue;
            }
            if keys.activity_value.is_none() && key.eq_ignore_ascii_case(&keys.activity) {
                activity = Some(attr.value.trim().to_string()).filter(|a| !a.is_empty());
            } else if key.eq_ignore_ascii_case(&keys.timestamp) {
                timestamp =
                    Some(Timestamp::parse(&attr.value).map_err(|e| attr.error(e.to_string()))?);
            } else if keys.is_channel(key) {
                channel = Some(parse_channel(attr)?);
            } else if keys.is_event_id(key) {
                event_id = Some(attr.value.trim().to_string()).filter(|id| !id.is_empty());
            } else if let Some(kind) = keys.identifier_kind(key) {
                let cell = attr.cell().map_err(|r| attr.error(r))?;
                identifiers.push(identifier_from_cell(&kind, &cell).map_err(|r| attr.error(r))?);
            } else {
                let name = keys.property_name(key);
                let value = match attr.ty {
                    AttrType::Id => {
                        check_property(&name, Value::Str(attr.value.trim().into())).map(Some)
                    }
                    _ => attr
                        .cell()
                        .and_then(|cell| property_from_cell(&name, &cell)),
                };
                if let Some(value) = value.map_err(|r| attr.error(r))? {
                    properties.insert(name.into(), value);
                }
            }
        }
        let activity = activity.ok_or_else(|| {
            RowError::new(
                &keys.activity,
                format!("the event has no {} attribute", keys.activity),
            )
        })?;
        let timestamp = timestamp.ok_or_else(|| {
            RowError::new(
                &keys.timestamp,
                format!("the event has no {} attribute", keys.timestamp),
            )
        })?;
        let channel = channel
            .or_else(|| context.channel.clone())
            .unwrap_or_else(|| keys.channel_value.clone());
        let mut identifiers = identifiers.into_iter();
        let first = identifiers.next().ok_or_else(|| {
            RowError::new(
                &keys.customer,
                format!(
                    "the trace has no {} attribute to identify the customer",
                    keys.customer
                ),
            )
        })?;
        let mut event = Event::new(timestamp, first, channel, activity);
        for id in identifiers {
            event.add_identifier(id);
        }
        event.event_id = event_id.map(Into::into);
        event.properties = properties;
        event.traits = context.traits.clone();
        event
            .validate()
            .map_err(|e| RowError::new(e.field, e.reason))
    }
}

/// A readable stand-in for the rejected event's XML: the trace's name and the event's attributes.
fn raw_event(trace: &[Attribute], pending: &PendingEvent) -> String {
    let mut raw = String::new();
    for (scope, attributes) in [("trace", trace), ("event", &pending.attributes)] {
        raw.push_str(scope);
        raw.push(':');
        for attr in attributes {
            raw.push_str(&format!(" {}=\"{}\"", attr.key, attr.value));
        }
        raw.push(' ');
    }
    truncate_raw(raw.trim_end().to_string())
}

#[cfg(test)]
mod tests {
    use super::super::{open, ImportOptions};
    use super::*;

    fn read(xml: &str, mapping: ColumnMapping) -> Result<Batch, ImportError> {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("log.xes");
        std::fs::write(&path, xml).expect("write fixture");
        let opts = ImportOptions {
            mapping,
            ..ImportOptions::default()
        };
        let mut reader = open(&path, &opts)?;
        let mut all = Batch::default();
        while let Some(batch) = reader.next_batch(2)? {
            all.events.extend(batch.events);
            all.rejects.extend(batch.rejects);
        }
        Ok(all)
    }

    const LOG: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<log xes.version="1849-2016" xmlns="http://www.xes-standard.org/">
  <global scope="event">
    <string key="concept:name" value="UNKNOWN"/>
    <date key="time:timestamp" value="1970-01-01T00:00:00.000+01:00"/>
  </global>
  <classifier name="Activity" keys="concept:name"/>
  <float key="meta:avg" value="2.5"><float key="r1" value="1"/></float>
  <trace>
    <string key="concept:name" value="case-1"/>
    <string key="channel" value="Internet"/>
    <int key="age" value="42"/>
    <date key="opened" value="2011-10-11T13:42:22.688+02:00"/>
    <event>
      <string key="concept:name" value="first"/>
      <date key="time:timestamp" value="2011-10-11T13:45:40.276+02:00"/>
      <string key="org:resource" value="Resource21"/>
      <string key="lifecycle:transition" value="complete"/>
      <list key="tags"><values><string key="t" value="x"/></values></list>
      <container key="box"><int key="inner" value="1"/></container>
      <float key="cost" value="12.5"><string key="currency" value="EUR"/></float>
      <boolean key="urgent" value="true"/>
    </event>
    <event>
      <string key="concept:name" value="second"/>
      <date key="time:timestamp" value="2011-10-11T13:45:40.276+02:00"/>
      <id key="ref" value="0042"/>
    </event>
    <event>
      <string key="concept:name" value="third"/>
      <date key="time:timestamp" value="2011-10-11T13:45:40.276+02:00"/>
    </event>
    <event>
      <string key="concept:name" value="undated"/>
    </event>
    <event>
      <date key="time:timestamp" value="2011-10-11T13:45:40.276+02:00"/>
    </event>
    <unknown><event/></unknown>
  </trace>
  <trace>
    <event>
      <string key="concept:name" value="orphan"/>
      <date key="time:timestamp" value="2011-10-11T13:45:40.276+02:00"/>
    </event>
    <string key="concept:name" value="case-2"/>
  </trace>
</log>
"#;

    #[test]
    fn equal_timestamps_keep_file_order_and_nested_attributes_are_skipped() {
        let batch = read(LOG, ColumnMapping::default()).expect("read");
        let activities: Vec<&str> = batch.events.iter().map(|e| e.activity.as_str()).collect();
        assert_eq!(activities, ["first", "second", "third", "orphan"]);
        let first = &batch.events[0];
        assert_eq!(first.identifiers[0].to_string(), "user_id:case-1");
        assert_eq!(first.channel, Channel::Web);
        assert_eq!(first.traits["age"], Value::Num(42.0));
        assert_eq!(
            first.traits["opened"],
            Value::Str("2011-10-11T11:42:22.688000Z".into())
        );
        assert_eq!(first.properties["agent"], Value::Str("Resource21".into()));
        assert_eq!(first.properties["lifecycle"], Value::Str("complete".into()));
        assert_eq!(first.properties["cost"], Value::Num(12.5));
        assert_eq!(first.properties["urgent"], Value::Bool(true));
        assert_eq!(first.properties.len(), 4, "{:?}", first.properties);
        assert_eq!(batch.events[1].properties["ref"], Value::Str("0042".into()));
        assert_eq!(
            batch.events[3].identifiers[0].to_string(),
            "user_id:case-2",
            "trace attributes after the events still apply"
        );
        assert_eq!(batch.events[3].channel, Channel::Other);
    }

    #[test]
    fn events_missing_a_timestamp_or_activity_are_rejected_at_their_line() {
        let batch = read(LOG, ColumnMapping::default()).expect("read");
        let got: Vec<(u64, &str)> = batch
            .rejects
            .iter()
            .map(|r| (r.line, r.field.as_str()))
            .collect();
        assert_eq!(got, [(33, "time:timestamp"), (36, "concept:name")]);
        assert!(batch.rejects[0].raw.contains("concept:name=\"undated\""));
    }

    #[test]
    fn mapping_names_other_attributes() {
        let mapping = ColumnMapping {
            customer: Some("channel".into()),
            customer_kind: Some(IdentifierKind::CrmId),
            activity_value: Some("step".into()),
            ..ColumnMapping::default()
        };
        let batch = read(LOG, mapping).expect("read");
        assert_eq!(
            batch.events[0].identifiers[0].to_string(),
            "crm_id:Internet"
        );
        assert_eq!(
            batch.events[0].traits["concept:name"],
            Value::Str("case-1".into())
        );
        assert!(batch.events.iter().all(|e| e.activity == "step"));
        assert_eq!(
            batch.rejects.len(),
            2,
            "the undated event and the case-2 trace without channel"
        );
    }

    #[test]
    fn malformed_xml_is_a_file_error_with_its_line() {
        let broken = LOG.replace(
            "</event>\n    <event>\n      <string key=\"concept:name\" value=\"third\"/>",
            "</evnt>",
        );
        let err = read(&broken, ColumnMapping::default())
            .err()
            .map(|e| e.to_string());
        assert!(
            err.as_deref()
                .is_some_and(|e| e.contains("log.xes: line 28: malformed XML")),
            "{err:?}"
        );
        let truncated = &LOG[..LOG.find("</trace>").expect("a trace")];
        let err = read(truncated, ColumnMapping::default())
            .err()
            .map(|e| e.to_string());
        assert!(
            err.as_deref().is_some_and(|e| e.contains("truncated")),
            "{err:?}"
        );
        let err = read("<html></html>", ColumnMapping::default())
            .err()
            .map(|e| e.to_string());
        assert!(
            err.as_deref().is_some_and(|e| e.contains("not an XES log")),
            "{err:?}"
        );
    }
}
