//! The collectors: `POST /v1/events` (canonical events) and the Segment HTTP Tracking API.
//!
//! Each request is admitted against the back-pressure limits, read within the size limits,
//! authenticated, parsed and mapped, then handed to [`App::ingest`] (and [`App::link`] for
//! aliases) on a blocking thread. The 200 is sent only after those return, so everything it
//! acknowledges is on disk. Items that cannot be stored become dead letters with their
//! reason; the rest of the request is stored.

use crate::auth;
use crate::body;
use crate::dto::{IngestReceipt, RejectedItem};
use crate::error::ApiError;
use crate::segment::{self, Call, Mapped};
use crate::Shared;
use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::Json;
use omnitrail_app::keys::Authenticated;
use omnitrail_app::{App, Incoming, Rejected};
use omnitrail_model::{Event, Identifier, Timestamp};
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::OwnedSemaphorePermit;

/// Why an item was refused before reaching the store (the `code` of a rejected item).
const TOO_LARGE: &str = "too_large";
const INVALID_JSON: &str = "invalid_json";
const NOT_AN_OBJECT: &str = "not_an_object";
const INVALID_EVENT: &str = "invalid_event";

/// A request's items, ready for the store.
#[derive(Default)]
pub(crate) struct Prepared {
    received: usize,
    incoming: Vec<Incoming>,
    /// Per incoming item: its 0-based position in the request and, for items refused
    /// before the store, the code.
    slots: Vec<(usize, Option<&'static str>)>,
    links: Vec<(usize, Vec<Identifier>, Timestamp)>,
    skipped: usize,
}

impl Prepared {
    fn event(&mut self, index: usize, e: Event) {
        self.incoming.push(Incoming::Event(e));
        self.slots.push((index, None));
    }

    fn reject(
        &mut self,
        index: usize,
        code: &'static str,
        source: &str,
        field: &str,
        reason: String,
        payload: String,
    ) {
        // `line` numbers the items handed to ingest, as ingest numbers the events it rejects
        // itself, so one numbering maps every rejection back to its request index (`slots`).
        self.incoming.push(Incoming::Rejected(Rejected {
            source: source.to_string(),
            line: self.incoming.len() as u64 + 1,
            field: field.to_string(),
            reason,
            payload,
        }));
        self.slots.push((index, Some(code)));
    }
}

/// A raw message as a dead-letter payload, with any `writeKey` in it withheld: dead letters
/// are listed over the API, keys must never be. Parsed messages lose the field; text that
/// does not parse has the key's characters masked.
fn without_write_key(text: &str) -> String {
    const FIELD: &str = "\"writeKey\"";
    if !text.contains(FIELD) {
        return text.to_string();
    }
    if let Ok(Value::Object(mut msg)) = serde_json::from_str::<Value>(text) {
        msg.remove("writeKey");
        return Value::Object(msg).to_string();
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(FIELD) {
        let (head, tail) = rest.split_at(at + FIELD.len());
        out.push_str(head);
        let value_start = tail
            .find(|c: char| !(c.is_whitespace() || c == ':'))
            .unwrap_or(tail.len());
        out.push_str(&tail[..value_start]);
        let value = &tail[value_start..];
        let Some(quoted) = value.strip_prefix('"') else {
            rest = value;
            continue;
        };
        out.push('"');
        let mut chars = quoted.char_indices();
        let mut end = quoted.len();
        let mut escaped = false;
        for (i, c) in chars.by_ref() {
            if !escaped && c == '"' {
                end = i;
                break;
            }
            escaped = !escaped && c == '\\';
            out.push('*');
        }
        rest = &quoted[end..];
    }
    out.push_str(rest);
    out
}

/// Holds an in-flight slot for the life of one collector request.
pub(crate) struct Admission {
    _permit: OwnedSemaphorePermit,
    shared: Arc<Shared>,
}

impl Drop for Admission {
    fn drop(&mut self) {
        self.shared.metrics.ingest_in_flight.dec();
    }
}

impl Shared {
    /// Admits a collector request, or refuses it with 503 and `Retry-After`: when as many
    /// are in flight as allowed, or when compaction is so far behind that the app would
    /// stop ingest to compact inline.
    pub(crate) fn admit(self: &Arc<Self>) -> Result<Admission, ApiError> {
        let (waiting, limit) = self.app.ingest_backlog();
        self.metrics.backlog_events.set(waiting as i64);
        let retry = self.config.retry_after_secs;
        if waiting >= limit {
            self.refused("backlog");
            return Err(ApiError::overloaded(
                format!("{waiting} events wait for compaction; retry in {retry} s"),
                retry,
            ));
        }
        match self.ingest_permits.clone().try_acquire_owned() {
            Ok(permit) => {
                self.metrics.ingest_in_flight.inc();
                Ok(Admission {
                    _permit: permit,
                    shared: self.clone(),
                })
            }
            Err(_) => {
                self.refused("in_flight");
                Err(ApiError::overloaded(
                    format!(
                        "{} ingest requests are in flight, the most allowed; retry in {retry} s",
                        self.config.max_in_flight_ingest
                    ),
                    retry,
                ))
            }
        }
    }

    fn refused(&self, reason: &'static str) {
        self.metrics
            .ingest_refused
            .get_or_create(&crate::metrics::RefusalLabels { reason })
            .inc();
    }
}

/// `POST /v1/events`: a JSON array of canonical events, or NDJSON (one per line).
#[utoipa::path(
    post,
    path = "/v1/events",
    tag = "collect",
    request_body(
        content = String,
        description = "Canonical events (docs/http-api.md): a JSON array, or NDJSON with one event per line. May be gzip or deflate compressed (Content-Encoding).",
        content_type = "application/json"
    ),
    responses(
        (status = 200, description = "Every valid event is stored durably; invalid ones are dead letters, listed in `rejected`", body = IngestReceipt),
        (status = 400, description = "The body is not a JSON array or NDJSON", body = crate::error::ErrorBody),
        (status = 401, description = "No key, or an unknown or revoked one", body = crate::error::ErrorBody),
        (status = 413, description = "The body (or its decompressed form) is over the batch limit", body = crate::error::ErrorBody),
        (status = 415, description = "An unsupported Content-Encoding", body = crate::error::ErrorBody),
        (status = 503, description = "Back-pressure: retry after `Retry-After` seconds", body = crate::error::ErrorBody),
    ),
    security(("bearer" = []), ("basic" = []))
)]
pub(crate) async fn events(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<IngestReceipt>, ApiError> {
    const ENDPOINT: &str = "/v1/events";
    let started = Instant::now();
    let admission = shared.admit()?;
    let key = auth::header_key(&headers).ok_or_else(|| auth::missing_key(false))?;
    let caller = crate::limits::collector_caller(&shared, &key).await?;
    let encoding = body::content_encoding(&headers)?;
    let limit = shared.config.max_batch_bytes;
    let raw = body::read(body, &headers, limit).await?;
    let max_event = shared.config.max_event_bytes;
    let app = shared.app.clone();
    let receipt = tokio::task::spawn_blocking(move || {
        let bytes = body::decode(raw, encoding, limit)?;
        let prepared = prepare_native(&bytes, max_event)?;
        store(&app, caller, prepared)
    })
    .await??;
    shared.acknowledged(ENDPOINT, &receipt, started);
    drop(admission);
    Ok(Json(receipt))
}

/// Parses a JSON array or NDJSON body into canonical events.
fn prepare_native(bytes: &[u8], max_event: usize) -> Result<Prepared, ApiError> {
    const SOURCE: &str = "http:/v1/events";
    let mut out = Prepared::default();
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    let item = |out: &mut Prepared, index: usize, text: &str| {
        if text.len() > max_event {
            return out.reject(
                index,
                TOO_LARGE,
                SOURCE,
                "event",
                format!(
                    "is {} bytes, over the limit of {max_event} bytes per event",
                    text.len()
                ),
                text.to_string(),
            );
        }
        match serde_json::from_str::<Value>(text) {
            Err(e) => out.reject(
                index,
                INVALID_JSON,
                SOURCE,
                "event",
                format!("is not valid JSON: {e}"),
                text.to_string(),
            ),
            Ok(v) if !v.is_object() => out.reject(
                index,
                NOT_AN_OBJECT,
                SOURCE,
                "event",
                "expected a JSON object".to_string(),
                text.to_string(),
            ),
            Ok(v) => match Event::from_json(&v) {
                Ok(e) => out.event(index, e),
                Err(e) => out.reject(
                    index,
                    INVALID_EVENT,
                    SOURCE,
                    &e.field,
                    e.reason,
                    text.to_string(),
                ),
            },
        }
    };
    match first {
        None => {
            return Err(ApiError::bad_request(
                "invalid_payload",
                "the body is empty: send a JSON array of events or NDJSON",
            ))
        }
        Some(b'[') => {
            let items: Vec<&RawValue> = serde_json::from_slice(bytes)
                .map_err(|e| json_error(&e, "a JSON array of event objects"))?;
            out.received = items.len();
            for (i, raw) in items.into_iter().enumerate() {
                item(&mut out, i, raw.get());
            }
        }
        Some(_) => {
            let text = std::str::from_utf8(bytes).map_err(|e| {
                ApiError::bad_request("invalid_json", format!("the body is not UTF-8: {e}"))
            })?;
            let mut index = 0;
            for line in text.lines() {
                let line = line.trim();
                if line.is_empty() {
                    continue;
                }
                item(&mut out, index, line);
                index += 1;
            }
            out.received = index;
        }
    }
    Ok(out)
}

fn json_error(e: &serde_json::Error, expected: &str) -> ApiError {
    use serde_json::error::Category;
    match e.classify() {
        Category::Syntax | Category::Eof | Category::Io => {
            ApiError::bad_request("invalid_json", format!("the body is not valid JSON: {e}"))
        }
        Category::Data => {
            ApiError::bad_request("invalid_payload", format!("expected {expected}: {e}"))
        }
    }
}

#[derive(serde::Deserialize)]
struct BatchBody<'a> {
    #[serde(borrow)]
    batch: Vec<&'a RawValue>,
    #[serde(default)]
    context: Option<Map<String, Value>>,
    #[serde(default)]
    integrations: Option<Map<String, Value>>,
    #[serde(default, rename = "writeKey")]
    write_key: Option<String>,
    #[serde(default, rename = "sentAt")]
    sent_at: Option<Value>,
}

/// Parses a Segment body: one message (`call` given) or a batch (`call` is `None`).
/// Returns the body's `writeKey` too.
fn prepare_segment(
    bytes: &[u8],
    call: Option<Call>,
    endpoint: &str,
    received_at: Timestamp,
    max_event: usize,
) -> Result<(Option<String>, Prepared), ApiError> {
    let source = format!("segment:{endpoint}");
    let mut out = Prepared::default();
    let add = |out: &mut Prepared,
               index: usize,
               mut msg: Map<String, Value>,
               batch: Option<&BatchBody>| {
        if let Some(b) = batch {
            segment::merge_batch_defaults(
                &mut msg,
                b.context.as_ref(),
                b.integrations.as_ref(),
                b.sent_at.as_ref(),
            );
        }
        msg.remove("writeKey");
        match segment::map_message(&msg, call, received_at) {
            Ok(Mapped::Event(e)) => out.event(index, e),
            Ok(Mapped::Link { identifiers, at }) => out.links.push((index, identifiers, at)),
            Ok(Mapped::Skipped) => out.skipped += 1,
            Err(e) => out.reject(
                index,
                INVALID_EVENT,
                &source,
                &e.field,
                e.reason,
                Value::Object(msg).to_string(),
            ),
        }
    };
    match call {
        Some(_) => {
            let value: Value =
                serde_json::from_slice(bytes).map_err(|e| json_error(&e, "a JSON object"))?;
            let Value::Object(mut msg) = value else {
                return Err(ApiError::bad_request(
                    "invalid_payload",
                    "expected a JSON object (one Segment message)",
                ));
            };
            let key = match msg.remove("writeKey") {
                Some(Value::String(k)) => Some(k),
                _ => None,
            };
            out.received = 1;
            add(&mut out, 0, msg, None);
            Ok((key, out))
        }
        None => {
            let parsed: BatchBody = serde_json::from_slice(bytes)
                .map_err(|e| json_error(&e, "a JSON object with a 'batch' array of messages"))?;
            out.received = parsed.batch.len();
            for (i, raw) in parsed.batch.iter().enumerate() {
                let text = raw.get();
                if text.len() > max_event {
                    out.reject(
                        i,
                        TOO_LARGE,
                        &source,
                        "message",
                        format!(
                            "is {} bytes, over the limit of {max_event} bytes per event",
                            text.len()
                        ),
                        without_write_key(text),
                    );
                    continue;
                }
                match serde_json::from_str::<Value>(text) {
                    Ok(Value::Object(msg)) => add(&mut out, i, msg, Some(&parsed)),
                    Ok(_) => out.reject(
                        i,
                        NOT_AN_OBJECT,
                        &source,
                        "message",
                        "expected a JSON object".to_string(),
                        without_write_key(text),
                    ),
                    Err(e) => out.reject(
                        i,
                        INVALID_JSON,
                        &source,
                        "message",
                        format!("is not valid JSON: {e}"),
                        without_write_key(text),
                    ),
                }
            }
            Ok((parsed.write_key.clone(), out))
        }
    }
}

/// Links first (durable before the events that may rely on them), then the events.
fn store(app: &App, caller: Authenticated, prepared: Prepared) -> Result<IngestReceipt, ApiError> {
    let project = caller.project;
    let Prepared {
        received,
        incoming,
        slots,
        links,
        skipped,
    } = prepared;
    for (_, identifiers, at) in &links {
        app.link(
            project,
            omnitrail_identity::Source::Alias,
            identifiers.clone(),
            *at,
        )?;
    }
    let receipt = if incoming.is_empty() {
        omnitrail_app::IngestReceipt::default()
    } else {
        app.ingest(project, incoming)?
    };
    let mut rejected: Vec<RejectedItem> = receipt
        .rejected
        .iter()
        .map(|r| {
            // `line` is 1-based over the items handed to ingest.
            let (index, code) = slots
                .get((r.line as usize).saturating_sub(1))
                .copied()
                .unwrap_or((0, None));
            RejectedItem {
                index: index as u64,
                code: code.unwrap_or(INVALID_EVENT).to_string(),
                field: r.field.clone(),
                reason: r.reason.clone(),
            }
        })
        .collect();
    rejected.sort_by_key(|r| r.index);
    Ok(IngestReceipt {
        success: true,
        received: received as u64,
        stored: receipt.stored,
        duplicates: receipt.duplicates,
        links: links.len() as u64,
        skipped: skipped as u64,
        rejected,
    })
}

impl Shared {
    fn acknowledged(&self, endpoint: &str, receipt: &IngestReceipt, started: Instant) {
        let m = &self.metrics;
        m.count_events(endpoint, "stored", receipt.stored);
        m.count_events(endpoint, "duplicate", receipt.duplicates);
        m.count_events(endpoint, "rejected", receipt.rejected.len() as u64);
        m.count_events(endpoint, "skipped", receipt.skipped);
        m.dead_letters.inc_by(receipt.rejected.len() as u64);
        m.links.inc_by(receipt.links);
        m.ack_seconds
            .get_or_create(&crate::metrics::EndpointLabels {
                endpoint: endpoint.to_string(),
            })
            .observe(started.elapsed().as_secs_f64());
    }
}

/// A Segment endpoint: `call` is `None` for `/v1/batch` and `/v1/import`.
async fn segment_endpoint(
    shared: Arc<Shared>,
    headers: HeaderMap,
    body: Body,
    call: Option<Call>,
    endpoint: &'static str,
) -> Result<Json<IngestReceipt>, ApiError> {
    let started = Instant::now();
    let received_at = shared.app.now();
    let admission = shared.admit()?;
    // A key in the headers is checked before the body is read; one in the body after.
    let header_caller = match auth::header_key(&headers) {
        Some(key) => Some(crate::limits::collector_caller(&shared, &key).await?),
        None => None,
    };
    let encoding = body::content_encoding(&headers)?;
    let batch_limit = shared.config.max_batch_bytes;
    let limit = if call.is_some() {
        shared.config.max_event_bytes
    } else {
        batch_limit
    };
    let raw = body::read(body, &headers, batch_limit).await?;
    let max_event = shared.config.max_event_bytes;
    let app = shared.app.clone();
    let receipt = match header_caller {
        Some(caller) => {
            tokio::task::spawn_blocking(move || {
                let bytes = body::decode(raw, encoding, limit)?;
                let (_, prepared) =
                    prepare_segment(&bytes, call, endpoint, received_at, max_event)?;
                store(&app, caller, prepared)
            })
            .await??
        }
        None => {
            let (key, prepared) = tokio::task::spawn_blocking(move || {
                let bytes = body::decode(raw, encoding, limit)?;
                prepare_segment(&bytes, call, endpoint, received_at, max_event)
            })
            .await??;
            let key = key.ok_or_else(|| auth::missing_key(true))?;
            let caller = crate::limits::collector_caller(&shared, &key).await?;
            let app = shared.app.clone();
            tokio::task::spawn_blocking(move || store(&app, caller, prepared)).await??
        }
    };
    shared.acknowledged(endpoint, &receipt, started);
    drop(admission);
    Ok(Json(receipt))
}

macro_rules! segment_call {
    ($name:ident, $path:literal, $call:expr, $doc:literal) => {
        #[doc = $doc]
        #[utoipa::path(
            post,
            path = $path,
            tag = "segment",
            description = $doc,
            request_body(
                content = Object,
                description = "A Segment message (https://segment.com/docs/connections/spec/); writeKey may be in the body. May be gzip or deflate compressed.",
                content_type = "application/json"
            ),
            responses(
                (status = 200, description = "Stored durably (or kept as a dead letter, listed in `rejected`)", body = IngestReceipt),
                (status = 400, description = "The body is not JSON or not an object", body = crate::error::ErrorBody),
                (status = 401, description = "No write key, or an unknown or revoked one", body = crate::error::ErrorBody),
                (status = 413, description = "The message is over the per-event limit", body = crate::error::ErrorBody),
                (status = 503, description = "Back-pressure: retry after `Retry-After` seconds", body = crate::error::ErrorBody),
            ),
            security(("basic" = []), ("bearer" = []), ())
        )]
        pub(crate) async fn $name(
            State(shared): State<Arc<Shared>>,
            headers: HeaderMap,
            body: Body,
        ) -> Result<Json<IngestReceipt>, ApiError> {
            segment_endpoint(shared, headers, body, $call, $path).await
        }
    };
}

segment_call!(
    track,
    "/v1/track",
    Some(Call::Track),
    "Segment `track`: an event named by `event`."
);
segment_call!(
    identify,
    "/v1/identify",
    Some(Call::Identify),
    "Segment `identify`: an `identify` event carrying the user's identifiers and traits."
);
segment_call!(
    page,
    "/v1/page",
    Some(Call::Page),
    "Segment `page`: an event named by the page's `name` (or `page_viewed`)."
);
segment_call!(
    screen,
    "/v1/screen",
    Some(Call::Screen),
    "Segment `screen`: an event named by the screen's `name` (or `screen_viewed`)."
);
segment_call!(
    group,
    "/v1/group",
    Some(Call::Group),
    "Segment `group`: a `group` event with traits `group_id` and `group.*`."
);
segment_call!(
    alias,
    "/v1/alias",
    Some(Call::Alias),
    "Segment `alias`: links `previousId` with `userId` (an identity link, no event)."
);
segment_call!(batch, "/v1/batch", None, "Segment `batch`: messages of any type in `batch`; top-level `context`, `integrations` and `sentAt` apply to each.");
segment_call!(
    import,
    "/v1/import",
    None,
    "Segment `import` (the older name of `batch`)."
);

#[cfg(test)]
mod tests {
    use super::without_write_key;

    #[test]
    fn write_keys_never_reach_a_dead_letter_payload() {
        assert_eq!(
            without_write_key(r#"{"writeKey":"wk_secret","event":"x"}"#),
            r#"{"event":"x"}"#
        );
        let broken = without_write_key(r#"{"writeKey": "wk_s\"ecret", "event": "#);
        assert!(!broken.contains("wk_s"), "{broken}");
        assert_eq!(broken, r#"{"writeKey": "***********", "event": "#);
        assert_eq!(without_write_key("[1, 2]"), "[1, 2]");
    }
}
