//! The metadata database (SQLite): projects, import history and dead letters. Event data
//! never lives here; this holds the small operational records around it.

use crate::StoreError;
use omnitrail_model::{ProjectId, Timestamp};
use rusqlite::{params, Connection, OptionalExtension};
use std::path::Path;

pub const META_FILE: &str = "meta.sqlite";
const SCHEMA_VERSION: i64 = 1;

pub struct Meta {
    conn: Connection,
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

fn sql(e: rusqlite::Error) -> StoreError {
    StoreError::Meta(e.to_string())
}

impl Meta {
    pub fn open(path: &Path) -> Result<Meta, StoreError> {
        let conn = Connection::open(path).map_err(sql)?;
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

    /// Dead letters of a project, oldest first, starting after `after_id`.
    pub fn dead_letters(
        &self,
        project: ProjectId,
        after_id: i64,
        limit: usize,
    ) -> Result<Vec<DeadLetter>, StoreError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT id, received_at, source, line, field, reason, payload FROM dead_letters
                 WHERE project = ?1 AND id > ?2 ORDER BY id LIMIT ?3",
            )
            .map_err(sql)?;
        let rows = stmt
            .query_map(params![project.0, after_id, limit as i64], |r| {
                Ok(DeadLetter {
                    id: r.get(0)?,
                    project,
                    received_at: Timestamp::from_micros(r.get(1)?),
                    source: r.get(2)?,
                    line: r.get::<_, i64>(3)? as u64,
                    field: r.get(4)?,
                    reason: r.get(5)?,
                    payload: r.get(6)?,
                })
            })
            .map_err(sql)?;
        rows.collect::<Result<_, _>>().map_err(sql)
    }

    pub fn dead_letter_count(&self, project: ProjectId) -> Result<u64, StoreError> {
        self.conn
            .query_row(
                "SELECT count(*) FROM dead_letters WHERE project = ?1",
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
}
