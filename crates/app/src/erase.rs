//! Erasure of a person, suppression of their identifiers, and the audit log.
//!
//! [`App::erase`] finds the customer an identifier names, takes its whole identity cluster
//! (every identifier and write-time key), and has the store remove it everywhere
//! (`omnitrail_store::erase`). The cluster's identifiers are then *suppressed*: an event or
//! link carrying one of them is refused at the ingest path and dead-lettered with reason
//! `suppressed`, its stored payload holding only hashes and field names, until the
//! suppression is lifted. Only SHA-256 hashes of identifiers are kept (suppression list,
//! audit log), never the identifiers.
//!
//! While an erase runs, ingest waits (a gate every ingest holds for reading): no event of
//! the person can slip in between finding the cluster and suppressing it.

use crate::{App, AppError, Rejected};
use omnitrail_model::{Event, Identifier, ProjectId, Timestamp};
use omnitrail_store::erase::mentions;
use omnitrail_store::EraseRequest;
pub use omnitrail_store::{AuditEntry, EraseCounts, Suppression};
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{RwLock, RwLockReadGuard};

/// The reason of a dead letter refused because it carries a suppressed identifier.
pub const SUPPRESSED: &str = "suppressed";

/// What an erase removed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct EraseReceipt {
    /// The audit log entry that records it.
    pub audit_id: i64,
    pub erased_at: Timestamp,
    pub actor: String,
    /// SHA-256 (hex) of each erased identifier (`kind:value` in normal form), sorted; now
    /// suppressed.
    pub identifier_hashes: Vec<String>,
    /// Write-time keys of the cluster.
    pub keys: u64,
    pub counts: EraseCounts,
    /// Lines removed from import rejects files.
    pub rejects_lines: u64,
}

/// The suppression list and the gate ingest passes through.
#[derive(Default)]
pub(crate) struct Privacy {
    gate: RwLock<()>,
    /// Active suppressed hashes per project; loaded at open, changed by erase and lift.
    suppressed: RwLock<HashMap<ProjectId, HashSet<String>>>,
}

impl Privacy {
    pub(crate) fn load(store: &omnitrail_store::Store) -> Result<Privacy, AppError> {
        let meta = store.meta();
        let mut suppressed = HashMap::new();
        for (project, _) in meta.projects()? {
            let hashes = meta.suppressed_hashes(project)?;
            if !hashes.is_empty() {
                suppressed.insert(project, hashes.into_iter().collect());
            }
        }
        Ok(Privacy {
            gate: RwLock::new(()),
            suppressed: RwLock::new(suppressed),
        })
    }

    /// Held for reading by every ingest, for writing by an erase.
    pub(crate) fn pass(&self) -> RwLockReadGuard<'_, ()> {
        self.gate.read().unwrap_or_else(|p| p.into_inner())
    }

    /// The hashes of `ids` that are suppressed in `project`; empty (and no hashing) when
    /// the project suppresses nothing, the usual case.
    pub(crate) fn suppressed(&self, project: ProjectId, ids: &[Identifier]) -> Vec<String> {
        let all = self.suppressed.read().unwrap_or_else(|p| p.into_inner());
        let Some(set) = all.get(&project).filter(|s| !s.is_empty()) else {
            return Vec::new();
        };
        let mut hit: Vec<String> = ids
            .iter()
            .map(identifier_hash)
            .filter(|h| set.contains(h))
            .collect();
        hit.sort();
        hit.dedup();
        hit
    }
}

/// SHA-256 (hex) of an identifier's `kind:value` in normal form: what suppression and the
/// audit log keep instead of the identifier.
pub fn identifier_hash(id: &Identifier) -> String {
    let digest = Sha256::digest(id.to_string().as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// The dead letter of an event refused because it carries suppressed identifiers: the
/// hashes that matched and the names of its fields, nothing a person could be found by.
pub(crate) fn suppressed_letter(line: u64, source: &str, e: &Event, hashes: &[String]) -> Rejected {
    let kinds: Vec<String> = e.identifiers.iter().map(|i| i.kind.to_string()).collect();
    let payload = serde_json::json!({
        "suppressed_hashes": hashes,
        "identifier_kinds": kinds,
        "channel": e.channel.as_str(),
        "property_names": e.properties.keys().map(|k| k.as_str()).collect::<Vec<_>>(),
        "trait_names": e.traits.keys().map(|k| k.as_str()).collect::<Vec<_>>(),
    });
    Rejected {
        source: source.into(),
        line,
        field: "identifiers".into(),
        reason: SUPPRESSED.into(),
        payload: payload.to_string(),
    }
}

impl App {
    /// Erases the customer `identifier` finds (any of its identifiers, `kind:value`, or
    /// `c42`) with its whole identity cluster, suppresses the cluster's identifiers, and
    /// records `actor` in the audit log. The returned receipt holds no identifier.
    pub fn erase(
        &self,
        project: ProjectId,
        identifier: &str,
        actor: &str,
    ) -> Result<EraseReceipt, AppError> {
        let _exclusive = self.privacy.gate.write().unwrap_or_else(|p| p.into_inner());
        let customer = self.resolve_customer(project, identifier)?;
        let cluster = self.identities.cluster(&self.store, project, customer)?;
        let mut identifiers: Vec<Identifier> = cluster
            .identifiers
            .iter()
            .map(|v| Identifier::parse_qualified(&format!("{}:{}", v.kind, v.value)))
            .collect::<Result<_, _>>()
            .map_err(|e| AppError::Identity(format!("an identifier of the cluster: {e}")))?;
        identifiers.sort();
        identifiers.dedup();
        let mut hashes: Vec<String> = identifiers.iter().map(identifier_hash).collect();
        hashes.sort();
        hashes.dedup();
        let at = self.now();
        // Rejects files first: they hold raw rows, and nothing records them for a resume.
        // An erase that crashes before the store's part began is simply not done; running
        // it again finds the same cluster.
        let rejects_lines = scrub_rejects(self.dir(), &identifiers)?;
        // Suppressed in memory first: if the store's part fails after it committed the
        // suppressions (and is finished on the next open), nothing of the person gets in
        // meanwhile.
        self.privacy
            .suppressed
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .entry(project)
            .or_default()
            .extend(hashes.iter().cloned());
        // Until the graph is read again it still holds the person: no snapshot of it.
        self.identities.freeze_snapshots(project);
        let erased = self.store.erase(
            &EraseRequest {
                project,
                actor: actor.to_string(),
                keys: cluster.keys.clone(),
                identifiers,
                identifier_hashes: hashes.clone(),
                at,
            },
            &erase_trigger_data,
        );
        let erased = match erased {
            Ok(erased) => erased,
            Err(e) => {
                // The store is poisoned (or phase 1 never committed): the next open finishes
                // the erase. The graph is not read again now: the log tail in memory may
                // still hold her events, and reading them would write her keys back.
                crate::lock(&self.resolved).clear();
                crate::lock(&self.personas).clear();
                return Err(e.into());
            }
        };
        self.after_erase(project)?;
        Ok(EraseReceipt {
            audit_id: erased.audit_id,
            erased_at: at,
            actor: actor.to_string(),
            identifier_hashes: hashes,
            keys: cluster.keys.len() as u64,
            counts: erased.counts,
            rejects_lines,
        })
    }

    /// Forgets what memory still holds of erased data: the project's identity graph is
    /// read again from the database, and merged journeys and personas are dropped.
    fn after_erase(&self, project: ProjectId) -> Result<(), AppError> {
        self.identities.reload(&self.store, project)?;
        crate::lock(&self.resolved).clear();
        crate::lock(&self.personas).clear();
        Ok(())
    }

    /// Finishes erasures a crash interrupted (called by [`App::open`]).
    pub(crate) fn resume_erasures(&self) -> Result<(), AppError> {
        let done = self.store.resume_erasures(&erase_trigger_data)?;
        for e in done {
            tracing::warn!(
                "finished an interrupted erasure (audit entry {}): {} events removed",
                e.audit_id,
                e.counts.log_events + e.counts.segment_events
            );
            self.after_erase(e.project)?;
        }
        Ok(())
    }

    /// Dead-letters an `identify` or `alias` link that names a suppressed identifier,
    /// instead of recording it; `true` when it did.
    pub(crate) fn refuse_suppressed_link(
        &self,
        project: ProjectId,
        source: omnitrail_identity::Source,
        identifiers: &[Identifier],
    ) -> Result<bool, AppError> {
        let hashes = self.privacy.suppressed(project, identifiers);
        if hashes.is_empty() {
            return Ok(false);
        }
        let kinds: Vec<String> = identifiers.iter().map(|i| i.kind.to_string()).collect();
        let letter = omnitrail_store::DeadLetter {
            id: 0,
            project,
            received_at: self.now(),
            source: source.as_str().to_string(),
            line: 0,
            field: "identifiers".into(),
            reason: SUPPRESSED.into(),
            payload: serde_json::json!({
                "suppressed_hashes": hashes,
                "identifier_kinds": kinds,
            })
            .to_string(),
        };
        self.store.meta().add_dead_letters(&[letter])?;
        Ok(true)
    }

    /// Every suppression of a project, lifted ones too, oldest first.
    pub fn suppressions(&self, project: ProjectId) -> Result<Vec<Suppression>, AppError> {
        Ok(self.store.meta().suppressions(project)?)
    }

    /// Lifts the suppression of an identifier (`kind:value`) or of a hash (64 hex digits);
    /// returns how many suppressions were lifted (0 when it was not suppressed).
    pub fn lift_suppression(
        &self,
        project: ProjectId,
        identifier_or_hash: &str,
        actor: &str,
    ) -> Result<u64, AppError> {
        let text = identifier_or_hash.trim();
        let hash = if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
            text.to_ascii_lowercase()
        } else {
            let id = Identifier::parse_qualified(text).map_err(|e| {
                AppError::Identity(format!(
                    "lifting a suppression needs kind:value or a 64-digit hash: {e}"
                ))
            })?;
            identifier_hash(&id)
        };
        let _exclusive = self.privacy.gate.write().unwrap_or_else(|p| p.into_inner());
        let lifted = self.store.meta().lift_suppressions(
            project,
            std::slice::from_ref(&hash),
            actor,
            self.now(),
        )?;
        if let Some(set) = self
            .privacy
            .suppressed
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .get_mut(&project)
        {
            set.remove(&hash);
        }
        Ok(lifted)
    }

    /// The audit log of a project (erasures and lifts), oldest first.
    pub fn audit_log(&self, project: ProjectId) -> Result<Vec<AuditEntry>, AppError> {
        Ok(self.store.meta().audit_log(project)?)
    }
}

/// Trigger state, firings, webhook deliveries and tasks of the erased keys (the canonical
/// customer id is one of them).
fn erase_trigger_data(
    meta: &mut omnitrail_store::Meta,
    project: ProjectId,
    keys: &[omnitrail_model::CustomerId],
) -> Result<u64, omnitrail_store::StoreError> {
    let keys: Vec<u64> = keys.iter().map(|k| k.0).collect();
    meta.erase_trigger_data(project, &keys)
}

/// Removes every line naming one of `ids` from the import rejects files in `dir/rejects`,
/// each file replaced atomically. Returns how many lines went.
fn scrub_rejects(dir: &Path, ids: &[Identifier]) -> Result<u64, AppError> {
    let rejects = dir.join("rejects");
    let io = |p: &Path, e: std::io::Error| AppError::Io {
        path: p.display().to_string(),
        source: e,
    };
    let entries = match std::fs::read_dir(&rejects) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(io(&rejects, e)),
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "ndjson"))
        .collect();
    files.sort();
    let values: Vec<&str> = ids.iter().map(|i| i.value.as_str()).collect();
    let mut removed = 0;
    for path in files {
        let text = std::fs::read_to_string(&path).map_err(|e| io(&path, e))?;
        let mut kept = String::with_capacity(text.len());
        let mut dropped = 0;
        for line in text.lines() {
            if values.iter().any(|v| mentions(line, v)) {
                dropped += 1;
            } else {
                kept.push_str(line);
                kept.push('\n');
            }
        }
        if dropped == 0 {
            continue;
        }
        let tmp = path.with_extension("tmp");
        {
            let mut f = std::fs::File::create(&tmp).map_err(|e| io(&tmp, e))?;
            f.write_all(kept.as_bytes()).map_err(|e| io(&tmp, e))?;
            f.sync_all().map_err(|e| io(&tmp, e))?;
        }
        std::fs::rename(&tmp, &path).map_err(|e| io(&path, e))?;
        std::fs::File::open(&rejects)
            .and_then(|d| d.sync_all())
            .map_err(|e| io(&rejects, e))?;
        removed += dropped;
    }
    Ok(removed)
}
