//! The wire format of what the server defines itself (receipts, keys, notes, dead letters,
//! imports, stats). Results of the app (the customer view, analyses) are sent as the app
//! serializes them, the same JSON as the CLI's `--format json` (docs/api-json.md); their
//! OpenAPI schema is a documented generic object (see docs/http-api.md for why).

use omnitrail_app::customer::Note;
use omnitrail_app::dead_letters::{DeadLetterEntry, ReplayReport};
use omnitrail_app::keys::{ApiKey, CreatedKey};
use omnitrail_app::Stats;
use omnitrail_model::Timestamp;
use omnitrail_store::ImportRecord;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A source as callers may see it: collector sources (`http:/v1/events`,
/// `segment:/v1/batch`, `ingest`) as they are, an imported file by its name alone.
fn public_source(source: &str) -> String {
    let is_collector = source
        .split_once(':')
        .is_some_and(|(scheme, _)| !scheme.contains('/'))
        || !source.contains('/');
    if is_collector {
        return source.to_string();
    }
    std::path::Path::new(source)
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn rfc3339(t: Timestamp) -> String {
    t.to_rfc3339()
}

/// What a collector did with a request. Every item counted in `stored`, `duplicates` and
/// `links` is durable; every item in `rejected` is kept as a dead letter.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct IngestReceipt {
    /// Always true in a 200 (Segment SDKs look for it).
    pub success: bool,
    /// Items in the request.
    pub received: u64,
    /// Events stored now.
    pub stored: u64,
    /// Events already stored before (same `event_id`, or same Segment `messageId`).
    pub duplicates: u64,
    /// Segment aliases recorded as identity links.
    pub links: u64,
    /// Segment messages whose `integrations` turn Omnitrail off.
    pub skipped: u64,
    /// Items kept as dead letters, by position in the request.
    pub rejected: Vec<RejectedItem>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RejectedItem {
    /// 0-based position of the item in the request (the line for NDJSON).
    pub index: u64,
    /// `too_large`, `invalid_json`, `not_an_object` or `invalid_event`.
    pub code: String,
    /// The field at fault, e.g. `timestamp`, `properties.sentiment`, `userId`.
    pub field: String,
    pub reason: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Health {
    /// `ok`
    pub status: String,
    pub version: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct KeyInfo {
    pub id: i64,
    pub project: String,
    /// `write` (send events only) or `secret` (read, administer, send).
    pub kind: String,
    /// The key's public start, enough to recognise it; never the key.
    pub prefix: String,
    pub name: String,
    /// RFC 3339.
    pub created_at: String,
    pub revoked_at: Option<String>,
}

impl From<&ApiKey> for KeyInfo {
    fn from(k: &ApiKey) -> KeyInfo {
        KeyInfo {
            id: k.id,
            project: k.project_name.clone(),
            kind: k.kind.as_str().to_string(),
            prefix: k.prefix.clone(),
            name: k.name.clone(),
            created_at: rfc3339(k.created_at),
            revoked_at: k.revoked_at.map(rfc3339),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CreatedKeyInfo {
    /// The key itself: shown this once, stored only as a hash.
    pub key: String,
    #[serde(flatten)]
    pub info: KeyInfo,
}

impl From<&CreatedKey> for CreatedKeyInfo {
    fn from(k: &CreatedKey) -> CreatedKeyInfo {
        CreatedKeyInfo {
            key: k.key.clone(),
            info: KeyInfo::from(&k.info),
        }
    }
}

/// A new key of the caller's project.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct NewKey {
    /// `write` or `secret`.
    pub kind: String,
    #[serde(default)]
    pub name: String,
}

/// An agent's note. Times are µs since the Unix epoch, as in the customer view.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct NoteInfo {
    pub id: i64,
    pub author: String,
    pub created_at: i64,
    pub updated_at: i64,
    pub text: String,
    pub topic: Option<String>,
    pub event: Option<String>,
}

impl From<&Note> for NoteInfo {
    fn from(n: &Note) -> NoteInfo {
        NoteInfo {
            id: n.id,
            author: n.author.clone(),
            created_at: n.created_at.as_micros(),
            updated_at: n.updated_at.as_micros(),
            text: n.text.clone(),
            topic: n.topic.clone(),
            event: n.event.clone(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct NewNoteBody {
    pub text: String,
    /// Who wrote it; `agent` when left out.
    #[serde(default)]
    pub author: Option<String>,
    #[serde(default)]
    pub topic: Option<String>,
    /// The event the note is about (an event id or a description).
    #[serde(default)]
    pub event: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct EditNoteBody {
    pub text: String,
    /// Replaces the topic when given.
    #[serde(default)]
    pub topic: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DeadLetterInfo {
    pub id: i64,
    /// RFC 3339.
    pub received_at: String,
    /// Where it came from: a file, `http:/v1/events`, `segment:/v1/batch`, `ingest`, …
    pub source: String,
    /// Line in a file, or 1-based position among a request's events (alias calls and
    /// messages turned off by `integrations` are not events); 0 when unknown.
    pub line: u64,
    pub field: String,
    pub reason: String,
    /// The input as received.
    pub payload: String,
    pub replayed_at: Option<String>,
}

impl From<&DeadLetterEntry> for DeadLetterInfo {
    fn from(d: &DeadLetterEntry) -> DeadLetterInfo {
        let l = &d.letter;
        DeadLetterInfo {
            id: l.id,
            received_at: rfc3339(l.received_at),
            source: public_source(&l.source),
            line: l.line,
            field: l.field.clone(),
            reason: l.reason.clone(),
            payload: l.payload.clone(),
            replayed_at: d.replayed_at.map(rfc3339),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DeadLetterPage {
    pub letters: Vec<DeadLetterInfo>,
    /// Pass as `after` for the next page; absent on the last page.
    pub next_after: Option<i64>,
}

/// Dead letters to replay as stored.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ReplayBody {
    pub ids: Vec<i64>,
}

/// One dead letter to replay, optionally with a corrected payload.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ReplayOneBody {
    /// Replaces the stored payload for this replay: a canonical event, or a Segment message
    /// for letters from a Segment endpoint.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub payload: Option<serde_json::Value>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ReplayFailureInfo {
    pub id: i64,
    pub field: String,
    pub reason: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ReplayResult {
    /// Letters now stored and marked replayed.
    pub replayed: Vec<i64>,
    pub stored: u64,
    pub duplicates: u64,
    pub links: u64,
    /// Letters that still cannot be stored; they stay dead letters.
    pub failed: Vec<ReplayFailureInfo>,
    pub not_found: Vec<i64>,
    pub already_replayed: Vec<i64>,
}

impl From<ReplayReport> for ReplayResult {
    fn from(r: ReplayReport) -> ReplayResult {
        ReplayResult {
            replayed: r.replayed,
            stored: r.stored,
            duplicates: r.duplicates,
            links: r.links,
            failed: r
                .failed
                .into_iter()
                .map(|f| ReplayFailureInfo {
                    id: f.id,
                    field: f.field,
                    reason: f.reason,
                })
                .collect(),
            not_found: r.not_found,
            already_replayed: r.already_replayed,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ImportInfo {
    /// RFC 3339.
    pub started_at: String,
    pub source: String,
    pub read: u64,
    pub imported: u64,
    pub duplicates: u64,
    pub rejected: u64,
}

impl From<&ImportRecord> for ImportInfo {
    fn from(r: &ImportRecord) -> ImportInfo {
        // Where the server's files live is its business, not the caller's: the imported
        // file by name only, and no rejects file.
        ImportInfo {
            started_at: rfc3339(r.started_at),
            source: public_source(&r.source),
            read: r.read,
            imported: r.imported,
            duplicates: r.duplicates,
            rejected: r.rejected,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct NamedCount {
    pub name: String,
    pub events: u64,
}

/// What the caller's project holds; the same fields as `omnitrail stats --format json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct StatsInfo {
    pub events: u64,
    pub customers: u64,
    pub first_event: Option<String>,
    pub last_event: Option<String>,
    pub by_channel: Vec<NamedCount>,
    pub by_activity: Vec<NamedCount>,
    pub by_stage: Vec<NamedCount>,
    pub storage_bytes: u64,
    pub segments: u64,
    pub uncompacted_events: u64,
    /// Dead letters not yet replayed.
    pub dead_letters: u64,
    pub journey_bytes_per_event: f64,
}

impl From<&Stats> for StatsInfo {
    fn from(s: &Stats) -> StatsInfo {
        let counts = |c: &[(String, u64)]| {
            c.iter()
                .map(|(name, events)| NamedCount {
                    name: name.clone(),
                    events: *events,
                })
                .collect()
        };
        StatsInfo {
            events: s.events,
            customers: s.customers,
            first_event: s.first_event.map(rfc3339),
            last_event: s.last_event.map(rfc3339),
            by_channel: counts(&s.by_channel),
            by_activity: counts(&s.by_activity),
            by_stage: counts(&s.by_stage),
            storage_bytes: s.storage_bytes,
            segments: s.segments,
            uncompacted_events: s.uncompacted_events,
            dead_letters: s.dead_letters,
            journey_bytes_per_event: (s.journey_bytes_per_event * 10.0).round() / 10.0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::public_source;

    #[test]
    fn imported_file_paths_are_shown_by_name_only() {
        assert_eq!(public_source("/srv/omnitrail/in/events.csv"), "events.csv");
        assert_eq!(public_source("exports/events.ndjson"), "events.ndjson");
        assert_eq!(public_source("segment:/v1/batch"), "segment:/v1/batch");
        assert_eq!(public_source("http:/v1/events"), "http:/v1/events");
        assert_eq!(public_source("ingest"), "ingest");
    }
}
