//! The metadata database (SQLite): projects, import history, dead letters, identity
//! evidence and keys, agent notes and API keys. Event data never lives here; this holds the
//! small operational records around it.
//!
//! Several processes may open it at once (a running server and `omnitrail keys`): WAL mode
//! lets readers and one writer work side by side, and a busy timeout makes a second writer
//! wait for the first instead of failing.

use crate::StoreError;
use omnitrail_model::{ProjectId, Timestamp};
use rusqlite::{params, Connection, OptionalExtension};
use std::path::Path;

pub const META_FILE: &str = "meta.sqlite";
const SCHEMA_VERSION: i64 = 7;
/// How long a write waits for another process's write transaction to finish.
const BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

pub struct Meta {
    // Crate-visible so the erase module can delete rows and checkpoint in one place.
    pub(crate) conn: Connection,
}

/// A rejected event kept so it can be listed, fixed and replayed.
#[derive(Clone, Debug, PartialEq)]
pub struct DeadLetter {
    pub id: i64,
    pub project: ProjectId,
    pub received_at: Timestamp,
    /// Where it came from: a file path, or a collector name.
    pub source: String,
    /// Line (files) or position in a batch; 0 where there is none.
    pub line: u64,
    pub field: String,
    pub reason: String,
    pub payload: String,
}

/// The summary of one `omnitrail import` of one file.
#[derive(Clone, Debug, PartialEq)]
pub struct ImportRecord {
    pub project: ProjectId,
    pub started_at: Timestamp,
    pub source: String,
    pub read: u64,
    pub imported: u64,
    pub duplicates: u64,
    pub rejected: u64,
    pub rejects_file: Option<String>,
}

/// One piece of identity evidence as stored; the identity crate gives it meaning.
#[derive(Clone, Debug, PartialEq)]
pub struct EvidenceRow {
    pub id: u64,
    pub source: String,
    pub at: Timestamp,
    pub event: Option<String>,
    /// Qualified identifiers (`kind:value`), as a JSON array.
    pub identifiers: String,
    pub revoked: bool,
}

/// An agent's note on a customer. `customer` is the write-time key the note was made
/// under; identity merges carry it along with that key.
#[derive(Clone, Debug, PartialEq)]
pub struct NoteRow {
    pub id: i64,
    pub customer: u64,
    pub author: String,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub text: String,
    pub topic: Option<String>,
    pub event: Option<String>,
}

/// An API key as stored: never the key itself, only its public prefix and its SHA-256.
#[derive(Clone, Debug, PartialEq)]
pub struct ApiKeyRow {
    pub id: i64,
    pub project: ProjectId,
    pub project_name: String,
    /// `write` or `secret`; the app gives it meaning.
    pub kind: String,
    pub prefix: String,
    pub hash: Vec<u8>,
    pub name: String,
    pub created_at: Timestamp,
    pub revoked_at: Option<Timestamp>,
}

fn sql(e: rusqlite::Error) -> StoreError {
    StoreError::Meta(e.to_string())
}

impl Meta {
    /// Opens the database of a data dir another process writes, for reading only:
    /// nothing is created or upgraded (`query_only` refuses every write). A database that
    /// is missing or of an older schema needs a writer first ([`StoreError::NeedsWriter`]).
    pub fn open_read_only(path: &Path) -> Result<Meta, StoreError> {
        use rusqlite::OpenFlags;
        if !path.is_file() {
            return Err(StoreError::NeedsWriter(format!(
                "{} does not exist yet",
                path.display()
            )));
        }
        // Read-write at the file level: a WAL reader maintains the shared-memory index.
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(sql)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(sql)?;
        conn.execute_batch("PRAGMA query_only = ON; PRAGMA foreign_keys = ON;")
            .map_err(sql)?;
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(sql)?;
        match version.cmp(&SCHEMA_VERSION) {
            std::cmp::Ordering::Equal => Ok(Meta { conn }),
            std::cmp::Ordering::Greater => Err(StoreError::Corrupt {
                path: path.to_path_buf(),
                reason: format!(
                    "metadata schema version {version} is newer than this build ({SCHEMA_VERSION})"
                ),
            }),
            std::cmp::Ordering::Less => Err(StoreError::NeedsWriter(format!(
                "the metadata schema (version {version}) must be upgraded to {SCHEMA_VERSION} first"
            ))),
        }
    }

    pub fn open(path: &Path) -> Result<Meta, StoreError> {
        let conn = Connection::open(path).map_err(sql)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(sql)?;
        // WAL + synchronous=FULL: a committed transaction survives power loss.
        conn.execute_batch(
            "PRAGMA journal_mode = WAL;
             PRAGMA synchronous = FULL;
             PRAGMA foreign_keys = ON;
             PRAGMA secure_delete = ON;",
        )
        .map_err(sql)?;
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(sql)?;
        if version > SCHEMA_VERSION {
            return Err(StoreError::Corrupt {
                path: path.to_path_buf(),
                reason: format!(
                    "metadata schema version {version} is newer than this build ({SCHEMA_VERSION})"
                ),
            });
        }
        if version < 1 {
            conn.execute_batch(
                "BEGIN;
                 CREATE TABLE projects (
                   id INTEGER PRIMARY KEY,
                   name TEXT NOT NULL UNIQUE,
                   created_at INTEGER NOT NULL
                 );
                 CREATE TABLE imports (
                   id INTEGER PRIMARY KEY,
                   project INTEGER NOT NULL REFERENCES projects(id),
                   started_at INTEGER NOT NULL,
                   source TEXT NOT NULL,
                   read INTEGER NOT NULL,
                   imported INTEGER NOT NULL,
                   duplicates INTEGER NOT NULL,
                   rejected INTEGER NOT NULL,
                   rejects_file TEXT
                 );
                 CREATE TABLE dead_letters (
                   id INTEGER PRIMARY KEY,
                   project INTEGER NOT NULL REFERENCES projects(id),
                   received_at INTEGER NOT NULL,
                   source TEXT NOT NULL,
                   line INTEGER NOT NULL,
                   field TEXT NOT NULL,
                   reason TEXT NOT NULL,
                   payload TEXT NOT NULL
                 );
                 CREATE INDEX dead_letters_by_project ON dead_letters(project, id);
                 PRAGMA user_version = 1;
                 COMMIT;",
            )
            .map_err(sql)?;
        }
        if version < 2 {
            conn.execute_batch(
                "BEGIN;
                 CREATE TABLE identity_evidence (
                   project INTEGER NOT NULL REFERENCES projects(id),
                   id INTEGER NOT NULL,
                   source TEXT NOT NULL,
                   at INTEGER NOT NULL,
                   event TEXT,
                   identifiers TEXT NOT NULL,
                   revoked INTEGER NOT NULL DEFAULT 0,
                   PRIMARY KEY (project, id)
                 ) WITHOUT ROWID;
                 CREATE TABLE identity_keys (
                   project INTEGER NOT NULL REFERENCES projects(id),
                   identifier TEXT NOT NULL,
                   key INTEGER NOT NULL,
                   PRIMARY KEY (project, identifier)
                 ) WITHOUT ROWID;
                 CREATE TABLE notes (
                   id INTEGER PRIMARY KEY,
                   project INTEGER NOT NULL REFERENCES projects(id),
                   customer INTEGER NOT NULL,
                   author TEXT NOT NULL,
                   created_at INTEGER NOT NULL,
                   updated_at INTEGER NOT NULL,
                   text TEXT NOT NULL,
                   topic TEXT,
                   event TEXT
                 );
                 CREATE INDEX notes_by_customer ON notes(project, customer, id);
                 PRAGMA user_version = 2;
                 COMMIT;",
            )
            .map_err(sql)?;
        }
        if version < 3 {
            conn.execute_batch(
                "BEGIN;
                 CREATE TABLE settings (
                   key TEXT PRIMARY KEY,
                   value TEXT NOT NULL
                 ) WITHOUT ROWID;
                 PRAGMA user_version = 3;
                 COMMIT;",
            )
            .map_err(sql)?;
        }
        if version < 4 {
            // API keys are stored as SHA-256 hashes, looked up by their public prefix.
            // A dead letter replayed into the store keeps its row, marked with the time.
            conn.execute_batch(
                "BEGIN;
                 CREATE TABLE api_keys (
                   id INTEGER PRIMARY KEY,
                   project INTEGER NOT NULL REFERENCES projects(id),
                   kind TEXT NOT NULL,
                   prefix TEXT NOT NULL,
                   hash BLOB NOT NULL,
                   name TEXT NOT NULL DEFAULT '',
                   created_at INTEGER NOT NULL,
                   revoked_at INTEGER
                 );
                 CREATE INDEX api_keys_by_prefix ON api_keys(prefix);
                 ALTER TABLE dead_letters ADD COLUMN replayed_at INTEGER;
                 PRAGMA user_version = 4;
                 COMMIT;",
            )
            .map_err(sql)?;
        }
        if version < 5 {
            // Journey triggers (triggers.rs): rules, per-(rule, customer) evaluation state,
            // firings (unique per project and id, so none is ever recorded twice), the
            // webhook delivery log, and agent tasks. `IF NOT EXISTS`: a database rolled back
            // to an older version number (tests do) may still hold them.
            conn.execute_batch(
                "BEGIN;
                 CREATE TABLE IF NOT EXISTS trigger_rules (
                   project INTEGER NOT NULL REFERENCES projects(id),
                   name TEXT NOT NULL,
                   rule TEXT NOT NULL,
                   enabled INTEGER NOT NULL DEFAULT 1,
                   secret TEXT NOT NULL,
                   created_at INTEGER NOT NULL,
                   updated_at INTEGER NOT NULL,
                   PRIMARY KEY (project, name)
                 ) WITHOUT ROWID;
                 CREATE TABLE IF NOT EXISTS trigger_state (
                   project INTEGER NOT NULL REFERENCES projects(id),
                   rule TEXT NOT NULL,
                   customer INTEGER NOT NULL,
                   state TEXT NOT NULL,
                   deadline INTEGER,
                   PRIMARY KEY (project, rule, customer)
                 ) WITHOUT ROWID;
                 CREATE INDEX IF NOT EXISTS trigger_state_by_deadline ON trigger_state(deadline)
                   WHERE deadline IS NOT NULL;
                 CREATE TABLE IF NOT EXISTS trigger_firings (
                   project INTEGER NOT NULL REFERENCES projects(id),
                   id TEXT NOT NULL,
                   rule TEXT NOT NULL,
                   customer INTEGER NOT NULL,
                   completed_at INTEGER NOT NULL,
                   fired_at INTEGER NOT NULL,
                   chain TEXT NOT NULL,
                   emit TEXT,
                   PRIMARY KEY (project, id)
                 ) WITHOUT ROWID;
                 CREATE INDEX IF NOT EXISTS trigger_firings_by_customer ON trigger_firings(project, customer);
                 CREATE INDEX IF NOT EXISTS trigger_firings_to_emit ON trigger_firings(fired_at)
                   WHERE emit IS NOT NULL;
                 CREATE TABLE IF NOT EXISTS webhook_deliveries (
                   id INTEGER PRIMARY KEY,
                   project INTEGER NOT NULL REFERENCES projects(id),
                   firing TEXT NOT NULL,
                   rule TEXT NOT NULL,
                   customer INTEGER NOT NULL,
                   url TEXT NOT NULL,
                   secret TEXT NOT NULL,
                   body TEXT NOT NULL,
                   status TEXT NOT NULL,
                   attempts INTEGER NOT NULL DEFAULT 0,
                   next_attempt_at INTEGER,
                   last_status INTEGER,
                   last_error TEXT,
                   created_at INTEGER NOT NULL,
                   finished_at INTEGER,
                   UNIQUE (project, firing, url)
                 );
                 CREATE INDEX IF NOT EXISTS webhook_deliveries_due ON webhook_deliveries(status, next_attempt_at);
                 CREATE TABLE IF NOT EXISTS trigger_tasks (
                   id INTEGER PRIMARY KEY,
                   project INTEGER NOT NULL REFERENCES projects(id),
                   firing TEXT NOT NULL,
                   rule TEXT NOT NULL,
                   customer INTEGER NOT NULL,
                   queue TEXT NOT NULL,
                   title TEXT NOT NULL,
                   status TEXT NOT NULL,
                   agent TEXT,
                   created_at INTEGER NOT NULL,
                   updated_at INTEGER NOT NULL,
                   UNIQUE (project, firing, queue)
                 );
                 CREATE INDEX IF NOT EXISTS trigger_tasks_by_customer ON trigger_tasks(project, customer, id);
                 PRAGMA user_version = 5;
                 COMMIT;",
            )
            .map_err(sql)?;
        }
        if version < 6 {
            // Erasure (erase.rs): suppressed identifier hashes, the audit log of erasures
            // and lifts, and erasures begun but not finished (replayed on open).
            conn.execute_batch(
                "BEGIN;
                 CREATE TABLE IF NOT EXISTS suppressions (
                   id INTEGER PRIMARY KEY,
                   project INTEGER NOT NULL REFERENCES projects(id),
                   hash TEXT NOT NULL,
                   created_at INTEGER NOT NULL,
                   lifted_at INTEGER
                 );
                 CREATE INDEX IF NOT EXISTS suppressions_by_hash ON suppressions(project, hash);
                 CREATE TABLE IF NOT EXISTS audit_log (
                   id INTEGER PRIMARY KEY,
                   project INTEGER NOT NULL REFERENCES projects(id),
                   at INTEGER NOT NULL,
                   actor TEXT NOT NULL,
                   action TEXT NOT NULL,
                   identifier_hashes TEXT NOT NULL,
                   counts TEXT NOT NULL
                 );
                 CREATE TABLE IF NOT EXISTS pending_erasures (
                   id INTEGER PRIMARY KEY,
                   project INTEGER NOT NULL REFERENCES projects(id),
                   started_at INTEGER NOT NULL,
                   actor TEXT NOT NULL,
                   spec TEXT NOT NULL
                 );
                 PRAGMA user_version = 6;
                 COMMIT;",
            )
            .map_err(sql)?;
        }
        if version < 7 {
            // Identity snapshots (docs/storage.md): every identity row carries the revision
            // of the transaction that last wrote it, so a snapshot taken at revision R is
            // brought up to date by the rows above R; the epoch changes when rows are
            // deleted or renumbered (an erase), which no snapshot can follow.
            // Each ALTER is atomic; one already done (a crash in between, or a database set
            // back to an older version number, as tests do) is not done again.
            for table in ["identity_evidence", "identity_keys"] {
                let has_rev: bool = conn
                    .query_row(
                        "SELECT EXISTS(SELECT 1 FROM pragma_table_info(?1) WHERE name = 'rev')",
                        [table],
                        |r| r.get(0),
                    )
                    .map_err(sql)?;
                if !has_rev {
                    conn.execute_batch(&format!(
                        "ALTER TABLE {table} ADD COLUMN rev INTEGER NOT NULL DEFAULT 0;"
                    ))
                    .map_err(sql)?;
                }
            }
            conn.execute_batch(
                "BEGIN;
                 CREATE INDEX IF NOT EXISTS identity_evidence_by_rev ON identity_evidence(project, rev);
                 CREATE INDEX IF NOT EXISTS identity_keys_by_rev ON identity_keys(project, rev);
                 CREATE TABLE IF NOT EXISTS identity_revisions (
                   project INTEGER PRIMARY KEY REFERENCES projects(id),
                   rev INTEGER NOT NULL,
                   epoch INTEGER NOT NULL
                 );
                 PRAGMA user_version = 7;
                 COMMIT;",
            )
            .map_err(sql)?;
        }
        Ok(Meta { conn })
    }

    pub fn ensure_project(
        &self,
        id: ProjectId,
        name: &str,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        self.conn
            .execute(
                "INSERT OR IGNORE INTO projects (id, name, created_at) VALUES (?1, ?2, ?3)",
                params![id.0, name, now.as_micros()],
            )
            .map_err(sql)?;
        Ok(())
    }

    pub fn projects(&self) -> Result<Vec<(ProjectId, String)>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT id, name FROM projects ORDER BY id")
            .map_err(sql)?;
        let rows = stmt
            .query_map([], |r| Ok((ProjectId(r.get(0)?), r.get(1)?)))
            .map_err(sql)?;
        rows.collect::<Result<_, _>>().map_err(sql)
    }

    pub fn project_exists(&self, id: ProjectId) -> Result<bool, StoreError> {
        self.conn
            .query_row("SELECT 1 FROM projects WHERE id = ?1", [id.0], |_| Ok(()))
            .optional()
            .map(|r| r.is_some())
            .map_err(sql)
    }

    pub fn project_by_name(&self, name: &str) -> Result<Option<ProjectId>, StoreError> {
        self.conn
            .query_row("SELECT id FROM projects WHERE name = ?1", [name], |r| {
                Ok(ProjectId(r.get(0)?))
            })
            .optional()
            .map_err(sql)
    }

    /// The project called `name`, created (with the next free id) if there is none.
    pub fn ensure_project_named(
        &mut self,
        name: &str,
        now: Timestamp,
    ) -> Result<ProjectId, StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(sql)?;
        let found = tx
            .query_row("SELECT id FROM projects WHERE name = ?1", [name], |r| {
                r.get::<_, u32>(0)
            })
            .optional()
            .map_err(sql)?;
        let id = match found {
            Some(id) => id,
            None => {
                tx.execute(
                    "INSERT INTO projects (id, name, created_at)
                     VALUES ((SELECT coalesce(max(id), 0) + 1 FROM projects), ?1, ?2)",
                    params![name, now.as_micros()],
                )
                .map_err(sql)?;
                tx.query_row("SELECT id FROM projects WHERE name = ?1", [name], |r| {
                    r.get::<_, u32>(0)
                })
                .map_err(sql)?
            }
        };
        tx.commit().map_err(sql)?;
        Ok(ProjectId(id))
    }

    /// Stores a new API key (its hash, never the key); returns its id.
    pub fn add_api_key(&self, key: &ApiKeyRow) -> Result<i64, StoreError> {
        self.conn
            .execute(
                "INSERT INTO api_keys (project, kind, prefix, hash, name, created_at, revoked_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    key.project.0,
                    key.kind,
                    key.prefix,
                    key.hash,
                    key.name,
                    key.created_at.as_micros(),
                    key.revoked_at.map(Timestamp::as_micros)
                ],
            )
            .map_err(sql)?;
        Ok(self.conn.last_insert_rowid())
    }

    /// Every API key (of one project, or of all), by id.
    pub fn api_keys(&self, project: Option<ProjectId>) -> Result<Vec<ApiKeyRow>, StoreError> {
        let mut stmt = self
            .conn
            .prepare(&format!(
                "SELECT {API_KEY_COLUMNS} WHERE ?1 IS NULL OR k.project = ?1 ORDER BY k.id"
            ))
            .map_err(sql)?;
        let rows = stmt
            .query_map([project.map(|p| p.0)], api_key_row)
            .map_err(sql)?;
        rows.collect::<Result<_, _>>().map_err(sql)
    }

    /// The keys whose public prefix is `prefix` (normally one), revoked ones included.
    pub fn api_keys_with_prefix(&self, prefix: &str) -> Result<Vec<ApiKeyRow>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(&format!(
                "SELECT {API_KEY_COLUMNS} WHERE k.prefix = ?1 ORDER BY k.id"
            ))
            .map_err(sql)?;
        let rows = stmt.query_map([prefix], api_key_row).map_err(sql)?;
        rows.collect::<Result<_, _>>().map_err(sql)
    }

    /// Revokes a key; `false` if there is no such key or it was revoked already.
    pub fn revoke_api_key(&self, id: i64, now: Timestamp) -> Result<bool, StoreError> {
        let n = self
            .conn
            .execute(
                "UPDATE api_keys SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL",
                params![id, now.as_micros()],
            )
            .map_err(sql)?;
        Ok(n == 1)
    }

    pub fn add_dead_letters(&mut self, letters: &[DeadLetter]) -> Result<(), StoreError> {
        let tx = self.conn.transaction().map_err(sql)?;
        {
            let mut stmt = tx
                .prepare_cached(
                    "INSERT INTO dead_letters (project, received_at, source, line, field, reason, payload)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                )
                .map_err(sql)?;
            for d in letters {
                stmt.execute(params![
                    d.project.0,
                    d.received_at.as_micros(),
                    d.source,
                    d.line as i64,
                    d.field,
                    d.reason,
                    d.payload
                ])
                .map_err(sql)?;
            }
        }
        tx.commit().map_err(sql)
    }

    /// Dead letters of a project not yet replayed, oldest first, starting after `after_id`.
    pub fn dead_letters(
        &self,
        project: ProjectId,
        after_id: i64,
        limit: usize,
    ) -> Result<Vec<DeadLetter>, StoreError> {
        Ok(self
            .dead_letter_page(project, after_id, limit, false)?
            .into_iter()
            .map(|(d, _)| d)
            .collect())
    }

    /// Dead letters of a project with the time each was replayed (if it was), oldest
    /// first, starting after `after_id`; replayed ones only when `include_replayed`.
    pub fn dead_letter_page(
        &self,
        project: ProjectId,
        after_id: i64,
        limit: usize,
        include_replayed: bool,
    ) -> Result<Vec<(DeadLetter, Option<Timestamp>)>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT id, received_at, source, line, field, reason, payload, replayed_at
                 FROM dead_letters
                 WHERE project = ?1 AND id > ?2 AND (?4 OR replayed_at IS NULL)
                 ORDER BY id LIMIT ?3",
            )
            .map_err(sql)?;
        let rows = stmt
            .query_map(
                params![
                    project.0,
                    after_id,
                    limit.min(i64::MAX as usize) as i64,
                    include_replayed
                ],
                |r| dead_letter_row(project, r),
            )
            .map_err(sql)?;
        rows.collect::<Result<_, _>>().map_err(sql)
    }

    /// The dead letters of a project with these ids (replayed or not), by id; ids the
    /// project does not have are left out.
    pub fn dead_letters_by_id(
        &self,
        project: ProjectId,
        ids: &[i64],
    ) -> Result<Vec<(DeadLetter, Option<Timestamp>)>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT id, received_at, source, line, field, reason, payload, replayed_at
                 FROM dead_letters WHERE project = ?1 AND id = ?2",
            )
            .map_err(sql)?;
        let mut out = Vec::new();
        for &id in ids {
            if let Some(row) = stmt
                .query_row(params![project.0, id], |r| dead_letter_row(project, r))
                .optional()
                .map_err(sql)?
            {
                out.push(row);
            }
        }
        out.sort_by_key(|(d, _)| d.id);
        out.dedup_by_key(|(d, _)| d.id);
        Ok(out)
    }

    /// Marks dead letters as replayed at `at`, in one transaction; letters already marked
    /// keep their first time. Returns how many were marked now.
    pub fn mark_dead_letters_replayed(
        &mut self,
        project: ProjectId,
        ids: &[i64],
        at: Timestamp,
    ) -> Result<u64, StoreError> {
        let tx = self.conn.transaction().map_err(sql)?;
        let mut marked = 0;
        {
            let mut stmt = tx
                .prepare_cached(
                    "UPDATE dead_letters SET replayed_at = ?3
                     WHERE project = ?1 AND id = ?2 AND replayed_at IS NULL",
                )
                .map_err(sql)?;
            for &id in ids {
                marked += stmt
                    .execute(params![project.0, id, at.as_micros()])
                    .map_err(sql)? as u64;
            }
        }
        tx.commit().map_err(sql)?;
        Ok(marked)
    }

    /// Dead letters of a project that have not been replayed.
    pub fn dead_letter_count(&self, project: ProjectId) -> Result<u64, StoreError> {
        self.conn
            .query_row(
                "SELECT count(*) FROM dead_letters WHERE project = ?1 AND replayed_at IS NULL",
                [project.0],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n as u64)
            .map_err(sql)
    }

    pub fn record_import(&self, rec: &ImportRecord) -> Result<i64, StoreError> {
        self.conn
            .execute(
                "INSERT INTO imports (project, started_at, source, read, imported, duplicates, rejected, rejects_file)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![
                    rec.project.0,
                    rec.started_at.as_micros(),
                    rec.source,
                    rec.read as i64,
                    rec.imported as i64,
                    rec.duplicates as i64,
                    rec.rejected as i64,
                    rec.rejects_file
                ],
            )
            .map_err(sql)?;
        Ok(self.conn.last_insert_rowid())
    }

    pub fn imports(&self, project: ProjectId) -> Result<Vec<ImportRecord>, StoreError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT started_at, source, read, imported, duplicates, rejected, rejects_file
                 FROM imports WHERE project = ?1 ORDER BY id",
            )
            .map_err(sql)?;
        let rows = stmt
            .query_map([project.0], |r| {
                Ok(ImportRecord {
                    project,
                    started_at: Timestamp::from_micros(r.get(0)?),
                    source: r.get(1)?,
                    read: r.get::<_, i64>(2)? as u64,
                    imported: r.get::<_, i64>(3)? as u64,
                    duplicates: r.get::<_, i64>(4)? as u64,
                    rejected: r.get::<_, i64>(5)? as u64,
                    rejects_file: r.get(6)?,
                })
            })
            .map_err(sql)?;
        rows.collect::<Result<_, _>>().map_err(sql)
    }

    /// A setting the data dir was created with, e.g. how it keys events.
    pub fn setting(&self, key: &str) -> Result<Option<String>, StoreError> {
        self.conn
            .query_row("SELECT value FROM settings WHERE key = ?1", [key], |r| {
                r.get(0)
            })
            .optional()
            .map_err(sql)
    }

    pub fn set_setting(&self, key: &str, value: &str) -> Result<(), StoreError> {
        self.conn
            .execute(
                "INSERT OR REPLACE INTO settings (key, value) VALUES (?1, ?2)",
                params![key, value],
            )
            .map_err(sql)?;
        Ok(())
    }

    /// Inserts or replaces evidence rows and key rows in one transaction.
    pub fn save_identity(
        &mut self,
        project: ProjectId,
        evidence: &[EvidenceRow],
        keys: &[(String, u64)],
    ) -> Result<(), StoreError> {
        if evidence.is_empty() && keys.is_empty() {
            return Ok(());
        }
        let tx = self.conn.transaction().map_err(sql)?;
        let rev = next_identity_revision(&tx, project)?;
        {
            let mut ev = tx
                .prepare_cached(
                    "INSERT OR REPLACE INTO identity_evidence
                     (project, id, source, at, event, identifiers, revoked, rev)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                )
                .map_err(sql)?;
            for e in evidence {
                ev.execute(params![
                    project.0,
                    e.id as i64,
                    e.source,
                    e.at.as_micros(),
                    e.event,
                    e.identifiers,
                    e.revoked,
                    rev
                ])
                .map_err(sql)?;
            }
            let mut k = tx
                .prepare_cached(
                    "INSERT OR IGNORE INTO identity_keys (project, identifier, key, rev)
                     VALUES (?1, ?2, ?3, ?4)",
                )
                .map_err(sql)?;
            for (identifier, key) in keys {
                k.execute(params![project.0, identifier, *key as i64, rev])
                    .map_err(sql)?;
            }
        }
        tx.commit().map_err(sql)
    }

    /// Whether any project has identity evidence (a link, a refusal, an alias).
    pub fn has_identity_evidence(&self) -> Result<bool, StoreError> {
        self.conn
            .query_row("SELECT EXISTS(SELECT 1 FROM identity_evidence)", [], |r| {
                r.get(0)
            })
            .map_err(sql)
    }

    /// Every evidence row of a project, by id.
    pub fn identity_evidence(&self, project: ProjectId) -> Result<Vec<EvidenceRow>, StoreError> {
        self.identity_evidence_since(project, -1)
    }

    /// The evidence rows of a project written after revision `rev`, by id.
    pub fn identity_evidence_since(
        &self,
        project: ProjectId,
        rev: i64,
    ) -> Result<Vec<EvidenceRow>, StoreError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT id, source, at, event, identifiers, revoked FROM identity_evidence
                 WHERE project = ?1 AND rev > ?2 ORDER BY id",
            )
            .map_err(sql)?;
        let rows = stmt
            .query_map(params![project.0, rev], |r| {
                Ok(EvidenceRow {
                    id: r.get::<_, i64>(0)? as u64,
                    source: r.get(1)?,
                    at: Timestamp::from_micros(r.get(2)?),
                    event: r.get(3)?,
                    identifiers: r.get(4)?,
                    revoked: r.get(5)?,
                })
            })
            .map_err(sql)?;
        rows.collect::<Result<_, _>>().map_err(sql)
    }

    /// Every (qualified identifier, write-time key) pair of a project.
    pub fn identity_keys(&self, project: ProjectId) -> Result<Vec<(String, u64)>, StoreError> {
        self.identity_keys_since(project, -1)
    }

    /// The (qualified identifier, write-time key) pairs written after revision `rev`.
    pub fn identity_keys_since(
        &self,
        project: ProjectId,
        rev: i64,
    ) -> Result<Vec<(String, u64)>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT identifier, key FROM identity_keys WHERE project = ?1 AND rev > ?2")
            .map_err(sql)?;
        let rows = stmt
            .query_map(params![project.0, rev], |r| {
                Ok((r.get(0)?, r.get::<_, i64>(1)? as u64))
            })
            .map_err(sql)?;
        rows.collect::<Result<_, _>>().map_err(sql)
    }

    /// A project's identity (revision, epoch): the revision of the last transaction that
    /// wrote identity rows, and the epoch, which changes whenever rows were deleted.
    pub fn identity_revision(&self, project: ProjectId) -> Result<IdentityRevision, StoreError> {
        identity_revision(&self.conn, project)
    }

    pub fn add_note(&self, project: ProjectId, note: &NoteRow) -> Result<i64, StoreError> {
        self.conn
            .execute(
                "INSERT INTO notes (project, customer, author, created_at, updated_at, text, topic, event)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![
                    project.0,
                    note.customer as i64,
                    note.author,
                    note.created_at.as_micros(),
                    note.updated_at.as_micros(),
                    note.text,
                    note.topic,
                    note.event
                ],
            )
            .map_err(sql)?;
        Ok(self.conn.last_insert_rowid())
    }

    /// Replaces a note's text (and topic when given); `false` if the project has no such note.
    pub fn edit_note(
        &self,
        project: ProjectId,
        id: i64,
        text: &str,
        topic: Option<&str>,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let n = self
            .conn
            .execute(
                "UPDATE notes SET text = ?3, topic = coalesce(?4, topic), updated_at = ?5
                 WHERE project = ?1 AND id = ?2",
                params![project.0, id, text, topic, now.as_micros()],
            )
            .map_err(sql)?;
        Ok(n == 1)
    }

    pub fn note(&self, project: ProjectId, id: i64) -> Result<Option<NoteRow>, StoreError> {
        self.conn
            .query_row(
                "SELECT id, customer, author, created_at, updated_at, text, topic, event
                 FROM notes WHERE project = ?1 AND id = ?2",
                params![project.0, id],
                note_row,
            )
            .optional()
            .map_err(sql)
    }

    /// The notes made under any of `customers` (write-time keys), oldest first.
    pub fn notes(&self, project: ProjectId, customers: &[u64]) -> Result<Vec<NoteRow>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT id, customer, author, created_at, updated_at, text, topic, event
                 FROM notes WHERE project = ?1 AND customer = ?2 ORDER BY id",
            )
            .map_err(sql)?;
        let mut out = Vec::new();
        for &c in customers {
            let rows = stmt
                .query_map(params![project.0, c as i64], note_row)
                .map_err(sql)?;
            for r in rows {
                out.push(r.map_err(sql)?);
            }
        }
        out.sort_by_key(|n| n.id);
        Ok(out)
    }
}

/// Where a project's identity rows stand: see [`Meta::identity_revision`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IdentityRevision {
    pub rev: i64,
    pub epoch: i64,
}

fn identity_revision(
    conn: &rusqlite::Connection,
    project: ProjectId,
) -> Result<IdentityRevision, StoreError> {
    Ok(conn
        .query_row(
            "SELECT rev, epoch FROM identity_revisions WHERE project = ?1",
            [project.0],
            |r| {
                Ok(IdentityRevision {
                    rev: r.get(0)?,
                    epoch: r.get(1)?,
                })
            },
        )
        .optional()
        .map_err(sql)?
        .unwrap_or_default())
}

/// Bumps and returns the project's identity revision, inside the caller's transaction.
fn next_identity_revision(
    tx: &rusqlite::Transaction<'_>,
    project: ProjectId,
) -> Result<i64, StoreError> {
    let mut at = identity_revision(tx, project)?;
    at.rev += 1;
    set_identity_revision(tx, project, at)?;
    Ok(at.rev)
}

/// Starts a new identity epoch, inside the caller's transaction: for deletions and
/// renumberings, which make every snapshot of the project stale.
pub(crate) fn next_identity_epoch(
    tx: &rusqlite::Transaction<'_>,
    project: ProjectId,
) -> Result<(), StoreError> {
    let mut at = identity_revision(tx, project)?;
    at.rev += 1;
    at.epoch += 1;
    set_identity_revision(tx, project, at)
}

fn set_identity_revision(
    tx: &rusqlite::Transaction<'_>,
    project: ProjectId,
    at: IdentityRevision,
) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO identity_revisions (project, rev, epoch) VALUES (?1, ?2, ?3)
         ON CONFLICT(project) DO UPDATE SET rev = excluded.rev, epoch = excluded.epoch",
        params![project.0, at.rev, at.epoch],
    )
    .map_err(sql)?;
    Ok(())
}

fn dead_letter_row(
    project: ProjectId,
    r: &rusqlite::Row<'_>,
) -> rusqlite::Result<(DeadLetter, Option<Timestamp>)> {
    Ok((
        DeadLetter {
            id: r.get(0)?,
            project,
            received_at: Timestamp::from_micros(r.get(1)?),
            source: r.get(2)?,
            line: r.get::<_, i64>(3)? as u64,
            field: r.get(4)?,
            reason: r.get(5)?,
            payload: r.get(6)?,
        },
        r.get::<_, Option<i64>>(7)?.map(Timestamp::from_micros),
    ))
}

fn api_key_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ApiKeyRow> {
    Ok(ApiKeyRow {
        id: r.get(0)?,
        project: ProjectId(r.get(1)?),
        project_name: r.get(2)?,
        kind: r.get(3)?,
        prefix: r.get(4)?,
        hash: r.get(5)?,
        name: r.get(6)?,
        created_at: Timestamp::from_micros(r.get(7)?),
        revoked_at: r.get::<_, Option<i64>>(8)?.map(Timestamp::from_micros),
    })
}

const API_KEY_COLUMNS: &str =
    "k.id, k.project, p.name, k.kind, k.prefix, k.hash, k.name, k.created_at, k.revoked_at
     FROM api_keys k JOIN projects p ON p.id = k.project";

fn note_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<NoteRow> {
    Ok(NoteRow {
        id: r.get(0)?,
        customer: r.get::<_, i64>(1)? as u64,
        author: r.get(2)?,
        created_at: Timestamp::from_micros(r.get(3)?),
        updated_at: Timestamp::from_micros(r.get(4)?),
        text: r.get(5)?,
        topic: r.get(6)?,
        event: r.get(7)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_version_3_database_upgrades_to_4_keeping_its_dead_letters() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(META_FILE);
        let now = Timestamp::from_micros(1_000_000);
        {
            let mut meta = Meta::open(&path).unwrap();
            meta.ensure_project(ProjectId::DEFAULT, "default", now)
                .unwrap();
            let letter = DeadLetter {
                id: 0,
                project: ProjectId::DEFAULT,
                received_at: now,
                source: "test".into(),
                line: 3,
                field: "timestamp".into(),
                reason: "missing".into(),
                payload: "{}".into(),
            };
            meta.add_dead_letters(&[letter]).unwrap();
            // Back to what a version 3 build wrote.
            meta.conn
                .execute_batch(
                    "DROP TABLE api_keys;
                     ALTER TABLE dead_letters DROP COLUMN replayed_at;
                     PRAGMA user_version = 3;",
                )
                .unwrap();
        }
        let mut meta = Meta::open(&path).unwrap();
        let version: i64 = meta
            .conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION);
        let letters = meta.dead_letters(ProjectId::DEFAULT, 0, 10).unwrap();
        assert_eq!(letters.len(), 1);
        assert_eq!(meta.dead_letter_count(ProjectId::DEFAULT).unwrap(), 1);
        let id = letters[0].id;
        assert_eq!(
            meta.mark_dead_letters_replayed(ProjectId::DEFAULT, &[id, id], now)
                .unwrap(),
            1
        );
        assert_eq!(meta.dead_letter_count(ProjectId::DEFAULT).unwrap(), 0);
        let page = meta
            .dead_letter_page(ProjectId::DEFAULT, 0, 10, true)
            .unwrap();
        assert_eq!(page[0].1, Some(now));
        let shop = meta.ensure_project_named("shop", now).unwrap();
        assert_eq!(shop, ProjectId(2));
        assert_eq!(meta.ensure_project_named("shop", now).unwrap(), shop);
        assert!(meta.api_keys(None).unwrap().is_empty());
    }
}
