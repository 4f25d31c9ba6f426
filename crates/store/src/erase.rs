//! Erasure: removing one person (an identity cluster) from every file of the data dir.
//!
//! An erase has two phases, and a record in between makes it crash-safe:
//! 1. one SQLite transaction records a *pending erasure* (write-time keys and hashes only,
//!    no identifier in clear), adds the suppressions, and deletes the person's metadata
//!    rows (identity keys and evidence, notes, dead letters whose payload names them);
//!    the WAL is then checkpointed and truncated so no old page image survives;
//! 2. the data phase removes the cluster's events from the ingest log (every log file that
//!    holds one is rewritten atomically) and from Parquet segments (affected segments are
//!    rewritten, the index runs are rewritten without their de-duplication and key entries,
//!    and the manifest is swapped atomically, as compaction does); old files are deleted
//!    and their directories fsynced. Events of *other* customers that carry one of the
//!    cluster's identifiers (a refused link) lose that identifier and any property equal
//!    to one of its values.
//!
//! Then a second transaction deletes the pending record and writes the audit log entry.
//! Every step of phase 2 is idempotent, so an erase interrupted anywhere (kill -9) is
//! finished by [`Store::resume_erasures`] on the next open.

use crate::index::{self, CustomerKeys, DedupSet};
use crate::log::{self, lock, LogRecord};
use crate::meta::Meta;
use crate::{segment, sync_dir, Sealed, SegmentMeta, Store, StoreError, TailIndex, LOG_DIR};
use omnitrail_model::{CustomerId, Event, Identifier, ProjectId, Timestamp, Value};
use rayon::prelude::*;
use rusqlite::{params, OptionalExtension};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::PathBuf;
use std::sync::Arc;

/// What to erase: one identity cluster of one project.
#[derive(Clone, Debug)]
pub struct EraseRequest {
    pub project: ProjectId,
    /// Who asked (an API key's prefix, a user name); kept in the audit log.
    pub actor: String,
    /// The cluster's write-time keys: every event stored under them is removed.
    pub keys: Vec<CustomerId>,
    /// The cluster's identifiers in normal form: metadata rows naming them are deleted,
    /// and other customers' events lose them.
    pub identifiers: Vec<Identifier>,
    /// Opaque hashes of the identifiers (the app's), added to the suppression list and
    /// kept in the audit log instead of the identifiers.
    pub identifier_hashes: Vec<String>,
    pub at: Timestamp,
}

/// What an erase removed, by kind. Serialized into the audit log.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EraseCounts {
    /// Events of the cluster removed from the ingest log.
    pub log_events: u64,
    /// Events of the cluster removed from Parquet segments.
    pub segment_events: u64,
    /// Other customers' events that carried one of the identifiers and lost it.
    pub scrubbed_events: u64,
    pub log_files_rewritten: u64,
    pub segments_rewritten: u64,
    pub identity_keys: u64,
    pub identity_evidence: u64,
    pub notes: u64,
    pub dead_letters: u64,
    /// Rows of other metadata tables (trigger state, tasks) removed by the caller's hook.
    pub other_rows: u64,
    /// Identifier hashes newly suppressed (an already suppressed one is not counted).
    pub suppressions_added: u64,
}

/// An erase as the audit log keeps it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub id: i64,
    pub project: ProjectId,
    pub at: Timestamp,
    pub actor: String,
    /// `erase` or `lift`.
    pub action: String,
    pub identifier_hashes: Vec<String>,
    pub counts: EraseCounts,
}

/// One suppressed identifier hash.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Suppression {
    pub id: i64,
    pub project: ProjectId,
    pub hash: String,
    pub created_at: Timestamp,
    pub lifted_at: Option<Timestamp>,
}

/// What phase 2 needs, as stored in `pending_erasures.spec`: keys and fingerprints only.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
struct Spec {
    keys: Vec<u64>,
    /// Fingerprints of the qualified identifiers (`kind:value`), hex.
    identifiers: Vec<String>,
    /// Fingerprints of the identifiers' folded values long enough to be one person's
    /// (see [`VALUE_MIN_LEN`]), hex: property and trait values equal to one are removed.
    values: Vec<String>,
    identifier_hashes: Vec<String>,
    /// Counts of phase 1, carried to the audit log.
    counts: EraseCounts,
}

/// Shorter folded values (a handle like `ana`) are too likely to be someone else's
/// first name: they are removed as identifiers only, never as free property values.
const VALUE_MIN_LEN: usize = 6;

/// Lowercase letters and digits only: `Ana.B@Example.com` and `anab@example.com` agree,
/// and so do `+1 555-0100` and `15550100`.
pub fn fold(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_alphanumeric())
        .flat_map(char::to_lowercase)
        .collect()
}

/// Whether free text (a dead letter's payload, a rejects line) names `value`: a value of
/// at least [`VALUE_MIN_LEN`] folded characters anywhere in the folded text, a shorter one
/// only as a whole token, so that a handle like `ana` does not match `banana`.
pub fn mentions(text: &str, value: &str) -> bool {
    let v = fold(value);
    if v.is_empty() {
        return false;
    }
    if v.len() >= VALUE_MIN_LEN {
        return fold(text).contains(&v);
    }
    text.split(|c: char| c.is_whitespace() || "\"',;:{}[]()=<>/\\|".contains(c))
        .any(|token| fold(token) == v)
}

fn fingerprint(text: &str) -> u128 {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    h.update(b"omnitrail.erase\x1f");
    h.update(text.as_bytes());
    h.digest128()
}

fn hex(n: u128) -> String {
    format!("{n:032x}")
}

fn sql(e: rusqlite::Error) -> StoreError {
    StoreError::Meta(e.to_string())
}

/// Deletes the project's rows whose text column `erased` matches: `select` reads (row key,
/// text) for project `?1`, `delete` removes one row by project `?1` and key `?2`. How many.
fn delete_matching<K: rusqlite::types::FromSql + rusqlite::ToSql>(
    tx: &rusqlite::Transaction<'_>,
    p: u32,
    select: &str,
    delete: &str,
    erased: impl Fn(&str) -> bool,
) -> Result<u64, StoreError> {
    let rows: Vec<(K, String)> = {
        let mut stmt = tx.prepare(select).map_err(sql)?;
        let rows = stmt
            .query_map([p], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(sql)?;
        rows.collect::<Result<_, _>>().map_err(sql)?
    };
    let mut del = tx.prepare(delete).map_err(sql)?;
    let mut deleted = 0;
    for (key, text) in rows {
        if erased(&text) {
            deleted += del.execute(params![p, key]).map_err(sql)? as u64;
        }
    }
    Ok(deleted)
}

/// Deletes the project's evidence rows naming an identifier `erased` matches (rows hold a
/// JSON array of qualified identifiers); how many.
fn delete_evidence(
    tx: &rusqlite::Transaction<'_>,
    p: u32,
    erased: impl Fn(&str) -> bool,
) -> Result<u64, StoreError> {
    delete_matching::<i64>(
        tx,
        p,
        "SELECT id, identifiers FROM identity_evidence WHERE project = ?1",
        "DELETE FROM identity_evidence WHERE project = ?1 AND id = ?2",
        |json| {
            let ids: Vec<String> = serde_json::from_str(json).unwrap_or_default();
            ids.iter().any(|i| erased(i))
        },
    )
}

/// Closes the gaps deleted evidence leaves: the identity graph restores evidence by dense
/// ids in order (0, 1, 2…), so the rows after a gap move down, keeping their order.
fn renumber_evidence(tx: &rusqlite::Transaction<'_>, project: u32) -> Result<(), StoreError> {
    let ids: Vec<i64> = {
        let mut stmt = tx
            .prepare("SELECT id FROM identity_evidence WHERE project = ?1 ORDER BY id")
            .map_err(sql)?;
        let rows = stmt.query_map([project], |r| r.get(0)).map_err(sql)?;
        rows.collect::<Result<_, _>>().map_err(sql)?
    };
    let mut moved = tx
        .prepare("UPDATE identity_evidence SET id = ?3 WHERE project = ?1 AND id = ?2")
        .map_err(sql)?;
    // Ascending: each row's new id is at most its old one and already free.
    for (new, old) in ids.into_iter().enumerate() {
        let new = new as i64;
        if new != old {
            moved.execute(params![project, old, new]).map_err(sql)?;
        }
    }
    Ok(())
}

/// The matching rules of phase 2, decoded from a [`Spec`].
struct Matcher {
    project: ProjectId,
    keys: HashSet<CustomerId>,
    identifiers: HashSet<u128>,
    values: HashSet<u128>,
}

/// What one record becomes.
enum Outcome {
    Keep,
    Drop,
    Scrubbed(LogRecord),
}

impl Matcher {
    fn of(project: ProjectId, spec: &Spec) -> Result<Matcher, StoreError> {
        let parse = |h: &String| {
            u128::from_str_radix(h, 16)
                .map_err(|e| StoreError::Meta(format!("pending erasure fingerprint '{h}': {e}")))
        };
        Ok(Matcher {
            project,
            keys: spec.keys.iter().map(|&k| CustomerId(k)).collect(),
            identifiers: spec
                .identifiers
                .iter()
                .map(parse)
                .collect::<Result<_, _>>()?,
            values: spec.values.iter().map(parse).collect::<Result<_, _>>()?,
        })
    }

    fn value_matches(&self, v: &Value) -> bool {
        match v {
            Value::Str(s) => {
                let folded = fold(s);
                folded.len() >= VALUE_MIN_LEN && self.values.contains(&fingerprint(&folded))
            }
            Value::Num(_) | Value::Bool(_) => false,
        }
    }

    fn apply(&self, r: &LogRecord) -> Outcome {
        if r.project != self.project {
            return Outcome::Keep;
        }
        if self.keys.contains(&r.customer) {
            return Outcome::Drop;
        }
        let e = &r.event;
        let id_hit = |i: &Identifier| self.identifiers.contains(&fingerprint(&i.to_string()));
        let touched = e.identifiers.iter().any(id_hit)
            || e.properties.values().any(|v| self.value_matches(v))
            || e.traits.values().any(|v| self.value_matches(v));
        if !touched {
            return Outcome::Keep;
        }
        let mut event: Event = e.clone();
        event.identifiers.retain(|i| !id_hit(i));
        event.properties.retain(|_, v| !self.value_matches(v));
        event.traits.retain(|_, v| !self.value_matches(v));
        if event.identifiers.is_empty() {
            // Nothing left to say whose event it is: it goes with the person.
            return Outcome::Drop;
        }
        Outcome::Scrubbed(LogRecord { event, ..r.clone() })
    }

    /// The records that stay, scrubbed; counts what went.
    fn filter(
        &self,
        records: &[LogRecord],
        dropped: &mut Vec<LogRecord>,
        scrubbed: &mut u64,
    ) -> Option<Vec<LogRecord>> {
        let mut changed = false;
        let mut out = Vec::with_capacity(records.len());
        for r in records {
            match self.apply(r) {
                Outcome::Keep => out.push(r.clone()),
                Outcome::Drop => {
                    changed = true;
                    dropped.push(r.clone());
                }
                Outcome::Scrubbed(s) => {
                    changed = true;
                    *scrubbed += 1;
                    out.push(s);
                }
            }
        }
        changed.then_some(out)
    }
}

impl Meta {
    /// Phase 1 in one transaction; returns the pending erasure's id and its spec.
    fn begin_erase(&mut self, req: &EraseRequest) -> Result<(i64, Spec), StoreError> {
        let mut spec = Spec {
            keys: req.keys.iter().map(|k| k.0).collect(),
            identifiers: req
                .identifiers
                .iter()
                .map(|i| hex(fingerprint(&i.to_string())))
                .collect(),
            values: req
                .identifiers
                .iter()
                .map(|i| fold(&i.value))
                .filter(|v| v.len() >= VALUE_MIN_LEN)
                .map(|v| hex(fingerprint(&v)))
                .collect(),
            identifier_hashes: req.identifier_hashes.clone(),
            counts: EraseCounts::default(),
        };
        spec.keys.sort_unstable();
        spec.keys.dedup();
        spec.identifiers.sort();
        spec.identifiers.dedup();
        spec.values.sort();
        spec.values.dedup();
        spec.identifier_hashes.sort();
        spec.identifier_hashes.dedup();
        let p = req.project.0;
        let qualified: BTreeSet<String> = req.identifiers.iter().map(|i| i.to_string()).collect();
        let tx = self.conn.transaction().map_err(sql)?;
        let c = &mut spec.counts;
        for h in &spec.identifier_hashes {
            let active: Option<i64> = tx
                .query_row(
                    "SELECT id FROM suppressions WHERE project = ?1 AND hash = ?2 AND lifted_at IS NULL",
                    params![p, h],
                    |r| r.get(0),
                )
                .optional()
                .map_err(sql)?;
            if active.is_none() {
                tx.execute(
                    "INSERT INTO suppressions (project, hash, created_at) VALUES (?1, ?2, ?3)",
                    params![p, h, req.at.as_micros()],
                )
                .map_err(sql)?;
                c.suppressions_added += 1;
            }
        }
        {
            let mut by_id = tx
                .prepare("DELETE FROM identity_keys WHERE project = ?1 AND identifier = ?2")
                .map_err(sql)?;
            for q in &qualified {
                c.identity_keys += by_id.execute(params![p, q]).map_err(sql)? as u64;
            }
            let mut by_key = tx
                .prepare("DELETE FROM identity_keys WHERE project = ?1 AND key = ?2")
                .map_err(sql)?;
            let mut notes = tx
                .prepare("DELETE FROM notes WHERE project = ?1 AND customer = ?2")
                .map_err(sql)?;
            for &k in &spec.keys {
                c.identity_keys += by_key.execute(params![p, k as i64]).map_err(sql)? as u64;
                c.notes += notes.execute(params![p, k as i64]).map_err(sql)? as u64;
            }
        }
        c.identity_evidence += delete_evidence(&tx, p, |i| qualified.contains(i))?;
        renumber_evidence(&tx, p)?;
        crate::meta::next_identity_epoch(&tx, req.project)?;
        // A dead letter's payload is whatever arrived (JSON, a CSV line): compared folded,
        // so case, punctuation and phone formatting do not hide an identifier.
        c.dead_letters += delete_matching::<i64>(
            &tx,
            p,
            "SELECT id, payload FROM dead_letters WHERE project = ?1",
            "DELETE FROM dead_letters WHERE project = ?1 AND id = ?2",
            |payload| req.identifiers.iter().any(|i| mentions(payload, &i.value)),
        )?;
        let spec_json =
            serde_json::to_string(&spec).map_err(|e| StoreError::Encode(e.to_string()))?;
        tx.execute(
            "INSERT INTO pending_erasures (project, started_at, actor, spec) VALUES (?1, ?2, ?3, ?4)",
            params![p, req.at.as_micros(), req.actor, spec_json],
        )
        .map_err(sql)?;
        let id = tx.last_insert_rowid();
        tx.commit().map_err(sql)?;
        // The erase goes on either way; the checkpoint at its end tries again.
        if let Err(e) = self.checkpoint() {
            tracing::warn!("{e}");
        }
        Ok((id, spec))
    }

    /// Phase 1 again from what a pending record holds (keys and fingerprints): identity
    /// keys and notes of the keys, evidence naming a fingerprinted identifier.
    fn erase_rows_again(&mut self, project: ProjectId, spec: &Spec) -> Result<(), StoreError> {
        let m = Matcher::of(project, spec)?;
        let p = project.0;
        let tx = self.conn.transaction().map_err(sql)?;
        {
            let mut keys = tx
                .prepare("DELETE FROM identity_keys WHERE project = ?1 AND key = ?2")
                .map_err(sql)?;
            let mut notes = tx
                .prepare("DELETE FROM notes WHERE project = ?1 AND customer = ?2")
                .map_err(sql)?;
            for &k in &spec.keys {
                keys.execute(params![p, k as i64]).map_err(sql)?;
                notes.execute(params![p, k as i64]).map_err(sql)?;
            }
            delete_matching::<String>(
                &tx,
                p,
                "SELECT identifier, identifier FROM identity_keys WHERE project = ?1",
                "DELETE FROM identity_keys WHERE project = ?1 AND identifier = ?2",
                |identifier| m.identifiers.contains(&fingerprint(identifier)),
            )?;
            delete_evidence(&tx, p, |i| m.identifiers.contains(&fingerprint(i)))?;
        }
        renumber_evidence(&tx, p)?;
        crate::meta::next_identity_epoch(&tx, project)?;
        tx.commit().map_err(sql)
    }

    /// Ends an erasure: the pending record goes, the audit entry comes, in one transaction.
    fn finish_erase(
        &mut self,
        id: i64,
        project: ProjectId,
        actor: &str,
        at: Timestamp,
        spec: &Spec,
    ) -> Result<i64, StoreError> {
        let tx = self.conn.transaction().map_err(sql)?;
        tx.execute("DELETE FROM pending_erasures WHERE id = ?1", [id])
            .map_err(sql)?;
        tx.execute(
            "INSERT INTO audit_log (project, at, actor, action, identifier_hashes, counts)
             VALUES (?1, ?2, ?3, 'erase', ?4, ?5)",
            params![
                project.0,
                at.as_micros(),
                actor,
                serde_json::to_string(&spec.identifier_hashes).expect("strings serialize"),
                serde_json::to_string(&spec.counts).expect("counts serialize"),
            ],
        )
        .map_err(sql)?;
        let audit = tx.last_insert_rowid();
        // Identity recovery compares the keys it knows with the keys the store handed out;
        // erased keys are known to be gone, not lost.
        tx.execute(
            "INSERT INTO settings (key, value) VALUES ('erase.keys', ?1)
             ON CONFLICT(key) DO UPDATE SET value = CAST(value AS INTEGER) + ?1",
            [spec.keys.len() as i64],
        )
        .map_err(sql)?;
        tx.commit().map_err(sql)?;
        self.checkpoint()?;
        Ok(audit)
    }

    /// Copies the WAL into the database and truncates it to zero bytes, so that deleted
    /// rows survive in no old page image (`secure_delete` zeroes them in the database).
    /// A reader in another process (`omnitrail keys` next to a server) can hold the WAL
    /// for a moment: a busy checkpoint is retried for about a second before it fails.
    pub fn checkpoint(&self) -> Result<(), StoreError> {
        for attempt in 0..10 {
            let (busy, _, _): (i64, i64, i64) = self
                .conn
                .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                })
                .map_err(sql)?;
            if busy == 0 {
                return Ok(());
            }
            if attempt < 9 {
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
        }
        Err(StoreError::Meta(
            "the erased rows are deleted, but the metadata database's write-ahead log could not be truncated because another process holds the database open; it still holds old pages until the next erase or restart".into(),
        ))
    }

    /// The active (not lifted) suppressed hashes of a project, sorted.
    pub fn suppressed_hashes(&self, project: ProjectId) -> Result<Vec<String>, StoreError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT DISTINCT hash FROM suppressions
                 WHERE project = ?1 AND lifted_at IS NULL ORDER BY hash",
            )
            .map_err(sql)?;
        let rows = stmt.query_map([project.0], |r| r.get(0)).map_err(sql)?;
        rows.collect::<Result<_, _>>().map_err(sql)
    }

    /// Every suppression of a project (lifted ones too), by id.
    pub fn suppressions(&self, project: ProjectId) -> Result<Vec<Suppression>, StoreError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT id, hash, created_at, lifted_at FROM suppressions
                 WHERE project = ?1 ORDER BY id",
            )
            .map_err(sql)?;
        let rows = stmt
            .query_map([project.0], |r| {
                Ok(Suppression {
                    id: r.get(0)?,
                    project,
                    hash: r.get(1)?,
                    created_at: Timestamp::from_micros(r.get(2)?),
                    lifted_at: r.get::<_, Option<i64>>(3)?.map(Timestamp::from_micros),
                })
            })
            .map_err(sql)?;
        rows.collect::<Result<_, _>>().map_err(sql)
    }

    /// Lifts the active suppressions of `hashes` and audits it; returns how many were lifted.
    pub fn lift_suppressions(
        &mut self,
        project: ProjectId,
        hashes: &[String],
        actor: &str,
        at: Timestamp,
    ) -> Result<u64, StoreError> {
        let tx = self.conn.transaction().map_err(sql)?;
        let mut lifted = 0;
        for h in hashes {
            lifted += tx
                .execute(
                    "UPDATE suppressions SET lifted_at = ?3
                     WHERE project = ?1 AND hash = ?2 AND lifted_at IS NULL",
                    params![project.0, h, at.as_micros()],
                )
                .map_err(sql)? as u64;
        }
        if lifted > 0 {
            let mut sorted = hashes.to_vec();
            sorted.sort();
            sorted.dedup();
            tx.execute(
                "INSERT INTO audit_log (project, at, actor, action, identifier_hashes, counts)
                 VALUES (?1, ?2, ?3, 'lift', ?4, ?5)",
                params![
                    project.0,
                    at.as_micros(),
                    actor,
                    serde_json::to_string(&sorted).expect("strings serialize"),
                    serde_json::to_string(&EraseCounts::default()).expect("counts serialize"),
                ],
            )
            .map_err(sql)?;
        }
        tx.commit().map_err(sql)?;
        Ok(lifted)
    }

    /// The audit log of a project, oldest first.
    pub fn audit_log(&self, project: ProjectId) -> Result<Vec<AuditEntry>, StoreError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT id, at, actor, action, identifier_hashes, counts FROM audit_log
                 WHERE project = ?1 ORDER BY id",
            )
            .map_err(sql)?;
        let rows = stmt
            .query_map([project.0], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, String>(4)?,
                    r.get::<_, String>(5)?,
                ))
            })
            .map_err(sql)?;
        let mut out = Vec::new();
        for row in rows {
            let (id, at, actor, action, hashes, counts) = row.map_err(sql)?;
            let bad = |what: &str, e: serde_json::Error| {
                StoreError::Meta(format!("audit log entry {id}: {what}: {e}"))
            };
            out.push(AuditEntry {
                id,
                project,
                at: Timestamp::from_micros(at),
                actor,
                action,
                identifier_hashes: serde_json::from_str(&hashes)
                    .map_err(|e| bad("identifier hashes", e))?,
                counts: serde_json::from_str(&counts).map_err(|e| bad("counts", e))?,
            });
        }
        Ok(out)
    }

    /// Erasures begun but not finished: (id, project, actor, started at, spec).
    fn pending_erasures(&self) -> Result<Vec<Pending>, StoreError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT id, project, actor, started_at, spec FROM pending_erasures ORDER BY id",
            )
            .map_err(sql)?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    ProjectId(r.get(1)?),
                    r.get::<_, String>(2)?,
                    Timestamp::from_micros(r.get(3)?),
                    r.get::<_, String>(4)?,
                ))
            })
            .map_err(sql)?;
        let mut out = Vec::new();
        for row in rows {
            let (id, project, actor, at, spec) = row.map_err(sql)?;
            let spec: Spec = serde_json::from_str(&spec)
                .map_err(|e| StoreError::Meta(format!("pending erasure {id}: {e}")))?;
            out.push(Pending {
                id,
                project,
                actor,
                at,
                spec,
            });
        }
        Ok(out)
    }

    /// How many write-time keys erasures removed, over all projects.
    pub fn erased_keys(&self) -> Result<u64, StoreError> {
        Ok(self
            .setting("erase.keys")?
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0))
    }

    /// Whether an erasure is begun and not finished (the store refuses to serve until
    /// [`Store::resume_erasures`] finishes it).
    pub fn has_pending_erasures(&self) -> Result<bool, StoreError> {
        self.conn
            .query_row("SELECT EXISTS(SELECT 1 FROM pending_erasures)", [], |r| {
                r.get(0)
            })
            .map_err(sql)
    }
}

/// Deletes rows of tables the store does not own (trigger state, tasks) for the erased
/// keys of a project, returning how many went. Runs after phase 1 and again on a resume.
pub type EraseHook = dyn Fn(&mut Meta, ProjectId, &[CustomerId]) -> Result<u64, StoreError>;

/// An erasure begun and not finished, as its pending record holds it.
struct Pending {
    id: i64,
    project: ProjectId,
    actor: String,
    at: Timestamp,
    spec: Spec,
}

/// A finished erase: the audit entry's id and what went.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Erased {
    pub audit_id: i64,
    pub project: ProjectId,
    pub counts: EraseCounts,
}

impl Store {
    /// Erases one identity cluster from the log, the segments, the index runs and the
    /// metadata database, and suppresses its identifier hashes. `hook` runs inside phase
    /// 1, after the metadata rows are gone, to delete rows of tables the store does not
    /// own (trigger state, tasks); it returns how many it deleted.
    ///
    /// Ingest waits while the data phase runs (it holds the ingest lock): erasures are rare
    /// and this keeps any new record of the cluster's keys from slipping between the log
    /// rewrite and the swap.
    pub fn erase(&self, req: &EraseRequest, hook: &EraseHook) -> Result<Erased, StoreError> {
        let commit = self.commit()?;
        let _only_one = lock(&self.compaction);
        commit.check_poisoned()?;
        let (id, mut spec) = {
            let mut meta = self.meta();
            let (id, mut spec) = meta.begin_erase(req)?;
            spec.counts.other_rows = hook(&mut meta, req.project, &req.keys)?;
            (id, spec)
        };
        self.finish(id, req.project, &req.actor, req.at, &mut spec)
    }

    /// Finishes every erasure a crash interrupted; returns what each removed. Must run
    /// right after open, before anything is read or ingested.
    pub fn resume_erasures(&self, hook: &EraseHook) -> Result<Vec<Erased>, StoreError> {
        self.commit()?;
        let _only_one = lock(&self.compaction);
        let pending = self.meta().pending_erasures()?;
        let mut done = Vec::new();
        for Pending {
            id,
            project,
            actor,
            at,
            mut spec,
        } in pending
        {
            tracing::warn!("finishing erasure {id} of project {project:?}, interrupted before");
            // Rows the process may have written back between phase 1 and the crash.
            self.meta().erase_rows_again(project, &spec)?;
            let keys: Vec<CustomerId> = spec.keys.iter().map(|&k| CustomerId(k)).collect();
            spec.counts.other_rows += hook(&mut self.meta(), project, &keys)?;
            done.push(self.finish(id, project, &actor, at, &mut spec)?);
        }
        Ok(done)
    }

    fn finish(
        &self,
        id: i64,
        project: ProjectId,
        actor: &str,
        at: Timestamp,
        spec: &mut Spec,
    ) -> Result<Erased, StoreError> {
        let matcher = Matcher::of(project, spec)?;
        // The snapshot holds the erased identifiers; the next checkpoint writes a new one.
        self.remove_identity_snapshot(project)?;
        let data = self.erase_data(&matcher).inspect_err(|e| {
            if let Ok(commit) = self.commit() {
                commit.poison(e);
            }
        })?;
        let c = &mut spec.counts;
        c.log_events += data.log_events;
        c.segment_events += data.segment_events;
        c.scrubbed_events += data.scrubbed_events;
        c.log_files_rewritten += data.log_files_rewritten;
        c.segments_rewritten += data.segments_rewritten;
        let audit_id = self.meta().finish_erase(id, project, actor, at, spec)?;
        Ok(Erased {
            audit_id,
            project,
            counts: spec.counts.clone(),
        })
    }

    /// Phase 2: log files, segments, index runs, manifest. Idempotent.
    fn erase_data(&self, m: &Matcher) -> Result<EraseCounts, StoreError> {
        let d = self.opts.durability.clone();
        let mut counts = EraseCounts::default();
        let mut st = lock(&self.ingest);
        let mut tail = self.tail.write().unwrap_or_else(|p| p.into_inner());
        if !tail.active.is_empty() {
            // Seal the active file so that every log record is in a closed file, which
            // can be rewritten whole.
            let old = self
                .commit()?
                .rotate(&self.dir.join(LOG_DIR), st.next_seq)?;
            tail.seal(old);
        }

        // Log files, as they are on disk: a file may hold records already compacted.
        let log_dir = self.dir.join(LOG_DIR);
        let active = self.commit()?.current_path();
        let mut files: Vec<PathBuf> = std::fs::read_dir(&log_dir)
            .map_err(|e| StoreError::io(&log_dir, e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "log") && *p != active)
            .collect();
        files.sort();
        let mut dropped_log = Vec::new();
        for path in &files {
            let read = log::read_log_file(path)?;
            if let Some(problem) = read.problem {
                return Err(StoreError::Corrupt {
                    path: path.clone(),
                    reason: format!("{problem} in a closed log file"),
                });
            }
            let mut scrubbed = 0;
            let mut dropped = Vec::new();
            if let Some(kept) = m.filter(&read.records, &mut dropped, &mut scrubbed) {
                let mut bytes = log::LOG_MAGIC.to_vec();
                for r in &kept {
                    log::encode_frame(r, &mut bytes)?;
                }
                crate::durability::write_atomically(d.as_ref(), path, &bytes).map_err(|e| {
                    StoreError::Fsync {
                        path: path.clone(),
                        source: e,
                    }
                })?;
                counts.log_files_rewritten += 1;
                let compacted = self.manifest().compacted_seq_end;
                counts.scrubbed_events += scrubbed;
                dropped_log.extend(dropped.into_iter().filter(|r| r.seq >= compacted));
            }
        }
        counts.log_events = dropped_log.len() as u64;
        // The in-memory runs follow the files.
        for s in &mut tail.sealed {
            let mut ignored = Vec::new();
            let mut n = 0;
            if let Some(kept) = m.filter(&s.records, &mut ignored, &mut n) {
                *s = Sealed {
                    path: s.path.clone(),
                    index: Arc::new(TailIndex::of(&kept)),
                    records: Arc::new(kept),
                };
            }
        }

        // Segments of the project: each is read, and rewritten if anything in it changes.
        let manifest = self.manifest();
        let candidates: Vec<&SegmentMeta> = manifest
            .segments
            .iter()
            .filter(|s| s.project == m.project)
            .collect();
        let mut next = (*manifest).clone();
        let file_ids: Vec<u64> = candidates
            .iter()
            .map(|_| {
                next.next_file_id += 1;
                next.next_file_id - 1
            })
            .collect();
        type Rewritten = (String, Option<SegmentMeta>, Vec<LogRecord>, u64);
        let results: Vec<Option<Rewritten>> = candidates
            .par_iter()
            .zip(file_ids)
            .map(|(s, file_id)| -> Result<Option<Rewritten>, StoreError> {
                let records = segment::read_records(&self.dir.join(&s.file), s.project)?;
                let mut dropped = Vec::new();
                let mut scrubbed = 0;
                let Some(kept) = m.filter(&records, &mut dropped, &mut scrubbed) else {
                    return Ok(None);
                };
                let replacement = if kept.is_empty() {
                    None
                } else {
                    // Rows stay under their placement, and so in file order.
                    let placement = self.placement(&manifest, s.project)?;
                    let refs: Vec<(u64, &LogRecord)> = kept
                        .iter()
                        .map(|r| (placement.filed(r.customer.0), r))
                        .collect();
                    Some(self.write_new_segment(
                        s.project,
                        s.partition,
                        file_id,
                        &refs,
                        d.as_ref(),
                    )?)
                };
                Ok(Some((s.file.clone(), replacement, dropped, scrubbed)))
            })
            .collect::<Result<_, _>>()?;
        let mut old_files = Vec::new();
        let mut dropped_events: HashSet<u128> = HashSet::new();
        for (file, replacement, dropped, scrubbed) in results.into_iter().flatten() {
            counts.segment_events += dropped.len() as u64;
            counts.scrubbed_events += scrubbed;
            counts.segments_rewritten += 1;
            dropped_events.extend(
                dropped.iter().filter_map(|r| {
                    Some(index::dedup_key(r.project, r.event.event_id.as_deref()?))
                }),
            );
            next.segments.retain(|s| s.file != file);
            next.segments.extend(replacement);
            old_files.push(file);
        }

        // Index runs without the erased events' de-duplication keys and the keys' entries,
        // merged into one run.
        let mut dedup = DedupSet::default();
        let mut keys = CustomerKeys::default();
        for run in &manifest.index_runs {
            index::read_run(&self.dir.join(run), &mut dedup, &mut keys)?;
        }
        let before = (dedup.len(), keys.len());
        dedup.retain(|h| !dropped_events.contains(h));
        keys.retain(|_, c| !m.keys.contains(c));
        let old_runs = manifest.index_runs.clone();
        if (dedup.len(), keys.len()) != before {
            let mut dedup: Vec<u128> = dedup.into_iter().collect();
            dedup.sort_unstable();
            let mut keys: Vec<(u128, CustomerId)> = keys.into_iter().collect();
            keys.sort_unstable();
            let run = format!("{}/{:012}.idx", crate::INDEX_DIR, next.next_file_id);
            next.next_file_id += 1;
            index::write_run(&self.dir.join(&run), &dedup, &keys, d.as_ref())?;
            next.index_runs = vec![run];
        }
        sync_dir(d.as_ref(), &self.dir.join(crate::SEGMENT_DIR))?;
        sync_dir(d.as_ref(), &self.dir.join(crate::INDEX_DIR))?;
        // Always swapped: the new version tells every cache keyed on it that data changed.
        next.version += 1;
        next.save(&self.dir, d.as_ref())?;
        *self.manifest.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(next.clone());
        lock(&self.cache).clear();
        self.forget_dropped_segments();
        // Rebuilt from the runs and the tail on the next ingest.
        st.indexes = None;
        drop(tail);
        drop(st);
        let mut dirs: BTreeMap<PathBuf, ()> = BTreeMap::new();
        for f in old_files
            .iter()
            .chain(old_runs.iter().filter(|r| !next.index_runs.contains(r)))
        {
            let p = self.dir.join(f);
            match std::fs::remove_file(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(StoreError::io(&p, e)),
            }
            if let Some(parent) = p.parent() {
                dirs.insert(parent.to_path_buf(), ());
            }
        }
        for dir in dirs.keys() {
            sync_dir(d.as_ref(), dir)?;
        }
        Ok(counts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mentions_sees_through_case_punctuation_and_phone_formats() {
        assert!(mentions(
            r#"{"email":"Ana.B@Example.COM"}"#,
            "ana.b@example.com"
        ));
        assert!(mentions("7;+1 (415) 555-0199;fax", "+14155550199"));
        assert!(!mentions("7;+1 212 555 0100;fax", "+14155550199"));
        // Short values only as whole tokens.
        assert!(mentions(r#"{"handle":"@ana_b"}"#, "ana_b"));
        assert!(!mentions("banana", "ana"));
        assert!(mentions("called by ana today", "ana"));
        assert!(!mentions("anything", ""));
    }

    #[test]
    fn the_matcher_drops_the_keys_and_scrubs_other_events() {
        let email = Identifier::parse_qualified("email:ana.b@example.com").unwrap();
        let spec = Spec {
            keys: vec![7],
            identifiers: vec![hex(fingerprint(&email.to_string()))],
            values: vec![hex(fingerprint(&fold(&email.value)))],
            ..Spec::default()
        };
        let m = Matcher::of(ProjectId(1), &spec).unwrap();
        let at = Timestamp::from_micros(0);
        let bob = Identifier::parse_qualified("user_id:bob").unwrap();
        let record = |project: u32, customer: u64, event: Event| LogRecord {
            seq: 1,
            project: ProjectId(project),
            customer: CustomerId(customer),
            event,
        };
        let plain = Event::new(at, bob.clone(), omnitrail_model::Channel::Web, "x");
        assert!(matches!(
            m.apply(&record(1, 7, plain.clone())),
            Outcome::Drop
        ));
        assert!(matches!(
            m.apply(&record(2, 7, plain.clone())),
            Outcome::Keep
        ));
        assert!(matches!(
            m.apply(&record(1, 8, plain.clone())),
            Outcome::Keep
        ));
        let linked = plain
            .clone()
            .with_identifier(email.clone())
            .with_property("referrer", Value::Str("Ana.B@Example.com".into()))
            .with_trait("first_name", Value::Str("Ana".into()));
        match m.apply(&record(1, 8, linked)) {
            Outcome::Scrubbed(r) => {
                assert_eq!(r.event.identifiers, vec![bob.clone()]);
                assert!(r.event.properties.is_empty());
                assert_eq!(r.event.traits.len(), 1, "a first name is not an identifier");
            }
            _ => panic!("expected the event to be scrubbed"),
        }
        let only_hers = Event::new(at, email, omnitrail_model::Channel::Web, "x");
        assert!(matches!(m.apply(&record(1, 9, only_hers)), Outcome::Drop));
    }
}
