//! Erasure, suppressions and the audit log over HTTP (secret keys only): the wire side of
//! `omnitrail_app::erase`. The actor recorded for each change is the calling key's id.

use crate::error::{ApiError, ErrorBody};
use crate::Shared;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::Json;
use omnitrail_app::erase::EraseReceipt;
use omnitrail_store::{AuditEntry, EraseCounts, Suppression};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use utoipa::ToSchema;

/// What an erase removed; it holds no identifier, only their SHA-256 hashes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct EraseReceiptInfo {
    /// The audit log entry that records the erase.
    pub audit_id: i64,
    /// µs since the Unix epoch.
    pub erased_at: i64,
    pub actor: String,
    /// SHA-256 (hex) of each erased identifier (`kind:value` in normal form), sorted; each
    /// is now suppressed.
    pub identifier_hashes: Vec<String>,
    /// Write-time keys of the erased identity cluster.
    pub keys: u64,
    pub counts: EraseCountsInfo,
    /// Lines removed from import rejects files.
    pub rejects_lines: u64,
}

/// Rows and events removed, by kind.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct EraseCountsInfo {
    pub log_events: u64,
    pub segment_events: u64,
    /// Other customers' events that carried one of the identifiers and lost it.
    pub scrubbed_events: u64,
    pub log_files_rewritten: u64,
    pub segments_rewritten: u64,
    pub identity_keys: u64,
    pub identity_evidence: u64,
    pub notes: u64,
    pub dead_letters: u64,
    pub other_rows: u64,
    pub suppressions_added: u64,
}

impl From<&EraseCounts> for EraseCountsInfo {
    fn from(c: &EraseCounts) -> Self {
        EraseCountsInfo {
            log_events: c.log_events,
            segment_events: c.segment_events,
            scrubbed_events: c.scrubbed_events,
            log_files_rewritten: c.log_files_rewritten,
            segments_rewritten: c.segments_rewritten,
            identity_keys: c.identity_keys,
            identity_evidence: c.identity_evidence,
            notes: c.notes,
            dead_letters: c.dead_letters,
            other_rows: c.other_rows,
            suppressions_added: c.suppressions_added,
        }
    }
}

impl From<&EraseReceipt> for EraseReceiptInfo {
    fn from(r: &EraseReceipt) -> Self {
        EraseReceiptInfo {
            audit_id: r.audit_id,
            erased_at: r.erased_at.as_micros(),
            actor: r.actor.clone(),
            identifier_hashes: r.identifier_hashes.clone(),
            keys: r.keys,
            counts: (&r.counts).into(),
            rejects_lines: r.rejects_lines,
        }
    }
}

/// One suppressed identifier hash.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SuppressionInfo {
    pub id: i64,
    /// SHA-256 (hex) of the identifier's `kind:value` in normal form.
    pub hash: String,
    /// µs since the Unix epoch.
    pub created_at: i64,
    /// When it was lifted (µs since the Unix epoch); absent while it holds.
    pub lifted_at: Option<i64>,
}

impl From<&Suppression> for SuppressionInfo {
    fn from(s: &Suppression) -> Self {
        SuppressionInfo {
            id: s.id,
            hash: s.hash.clone(),
            created_at: s.created_at.as_micros(),
            lifted_at: s.lifted_at.map(|t| t.as_micros()),
        }
    }
}

/// How many suppressions a lift ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LiftResult {
    pub lifted: u64,
}

/// One erase or lift.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AuditEntryInfo {
    pub id: i64,
    /// µs since the Unix epoch.
    pub at: i64,
    pub actor: String,
    /// `erase` or `lift`.
    pub action: String,
    pub identifier_hashes: Vec<String>,
    pub counts: EraseCountsInfo,
}

impl From<&AuditEntry> for AuditEntryInfo {
    fn from(a: &AuditEntry) -> Self {
        AuditEntryInfo {
            id: a.id,
            at: a.at.as_micros(),
            actor: a.actor.clone(),
            action: a.action.clone(),
            identifier_hashes: a.identifier_hashes.clone(),
            counts: (&a.counts).into(),
        }
    }
}

fn actor(key_id: i64) -> String {
    format!("api-key:{key_id}")
}

#[utoipa::path(delete, path = "/api/v1/customers/{id}", tag = "privacy",
    params(("id" = String, Path, description = "Any identifier of the customer (`kind:value`, a bare value, or `c42`)")),
    responses(
        (status = 200, description = "The customer's whole identity cluster was erased everywhere and its identifiers suppressed", body = EraseReceiptInfo),
        (status = 404, description = "No customer has the identifier", body = ErrorBody),
        (status = 400, description = "The identifier matches several customers (`ambiguous_identifier`): give kind:value", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub(crate) async fn erase(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Json<EraseReceiptInfo>, ApiError> {
    let caller = crate::api::secret(&shared, &headers).await?;
    crate::api::blocking(&shared, move |app| {
        let receipt = app.erase(caller.project, &id, &actor(caller.key_id))?;
        Ok(Json(EraseReceiptInfo::from(&receipt)))
    })
    .await
}

#[utoipa::path(get, path = "/api/v1/suppressions", tag = "privacy",
    responses((status = 200, description = "Every suppression of the project, lifted ones too, oldest first", body = [SuppressionInfo])),
    security(("bearer" = [])))]
pub(crate) async fn suppressions(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
) -> Result<Json<Vec<SuppressionInfo>>, ApiError> {
    let caller = crate::api::secret(&shared, &headers).await?;
    crate::api::blocking(&shared, move |app| {
        Ok(Json(
            app.suppressions(caller.project)?
                .iter()
                .map(SuppressionInfo::from)
                .collect(),
        ))
    })
    .await
}

#[utoipa::path(delete, path = "/api/v1/suppressions/{identifier}", tag = "privacy",
    params(("identifier" = String, Path, description = "`kind:value`, or the 64-digit hash")),
    responses(
        (status = 200, description = "How many suppressions were lifted (0: it was not suppressed)", body = LiftResult),
        (status = 400, description = "Neither kind:value nor a hash", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub(crate) async fn lift(
    State(shared): State<Arc<Shared>>,
    Path(identifier): Path<String>,
    headers: HeaderMap,
) -> Result<Json<LiftResult>, ApiError> {
    let caller = crate::api::secret(&shared, &headers).await?;
    crate::api::blocking(&shared, move |app| {
        let lifted = app.lift_suppression(caller.project, &identifier, &actor(caller.key_id))?;
        Ok(Json(LiftResult { lifted }))
    })
    .await
}

#[utoipa::path(get, path = "/api/v1/audit", tag = "privacy",
    responses((status = 200, description = "The project's audit log of erasures and lifts, oldest first", body = [AuditEntryInfo])),
    security(("bearer" = [])))]
pub(crate) async fn audit(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
) -> Result<Json<Vec<AuditEntryInfo>>, ApiError> {
    let caller = crate::api::secret(&shared, &headers).await?;
    crate::api::blocking(&shared, move |app| {
        Ok(Json(
            app.audit_log(caller.project)?
                .iter()
                .map(AuditEntryInfo::from)
                .collect(),
        ))
    })
    .await
}
