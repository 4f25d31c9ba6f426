//! API keys: each project has public write keys (send events only) and secret keys (read
//! the query API and administer). A key is 32 random bytes from the OS, shown once when it
//! is made; the metadata database keeps only its public prefix (for listing and lookup) and
//! its SHA-256.
//!
//! Why SHA-256 and not a password hash (argon2, bcrypt): a slow hash protects low-entropy
//! secrets that people choose. A 256-bit random key cannot be guessed however fast the hash,
//! so a slow one would only add its cost to every request. The stored hash is compared in
//! constant time, so response timing tells nothing about how much of a guess matched.
//!
//! Keys can be managed while a server runs: [`KeyAdmin`] opens only the metadata database
//! (no data-dir lock), and the server reads keys through the same database.

use crate::App;
use omnitrail_model::{Clock, ProjectId, SystemClock, Timestamp};
use omnitrail_store::{meta, ApiKeyRow, Meta, StoreError};
use sha2::{Digest, Sha256};
use std::path::Path;
use subtle::ConstantTimeEq;

/// What a key may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyKind {
    /// Public: may only send events (it ships inside web pages and mobile apps).
    Write,
    /// Private: may read through the query API, replay dead letters and manage keys, and
    /// may send events too.
    Secret,
}

impl KeyKind {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyKind::Write => "write",
            KeyKind::Secret => "secret",
        }
    }

    pub fn parse(text: &str) -> Result<KeyKind, KeyError> {
        match text {
            "write" => Ok(KeyKind::Write),
            "secret" => Ok(KeyKind::Secret),
            other => Err(KeyError::BadKind(other.to_string())),
        }
    }

    /// The readable start of every key of this kind, so that a leaked key is recognisable
    /// (and secret scanners can match it).
    fn tag(self) -> &'static str {
        match self {
            KeyKind::Write => "otw_",
            KeyKind::Secret => "ots_",
        }
    }
}

/// Characters of a key kept in clear: the kind tag and 8 random characters (48 bits), enough
/// to tell keys apart in a list and to find a key's row without scanning.
pub const PREFIX_LEN: usize = 12;
/// Random bytes in a key.
const KEY_BYTES: usize = 32;
/// Longest project name.
const MAX_PROJECT_NAME: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("key kind '{0}' is not valid (expected write or secret)")]
    BadKind(String),
    #[error("project name '{0}' is not valid: use 1 to {MAX_PROJECT_NAME} letters, digits, '-', '_' or '.'")]
    BadProjectName(String),
    #[error("no project is called '{0}'")]
    UnknownProject(String),
    #[error("no API key has the id or prefix '{0}'")]
    NotFound(String),
    #[error("'{0}' matches several keys; give the key's id instead")]
    Ambiguous(String),
    #[error("key {prefix} (id {id}) was already revoked at {at}")]
    AlreadyRevoked { id: i64, prefix: String, at: String },
    #[error("the operating system's random source failed: {0}")]
    Random(String),
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

/// A key as listed: never the key itself.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct ApiKey {
    pub id: i64,
    pub project: ProjectId,
    pub project_name: String,
    pub kind: KeyKind,
    pub prefix: String,
    pub name: String,
    pub created_at: Timestamp,
    pub revoked_at: Option<Timestamp>,
}

/// A key just made: `key` is the only time the full key is seen.
#[derive(Clone, Debug, PartialEq)]
pub struct CreatedKey {
    pub info: ApiKey,
    pub key: String,
}

/// Who a presented key says the caller is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Authenticated {
    pub key_id: i64,
    pub project: ProjectId,
    pub kind: KeyKind,
}

/// Key management without opening the store: works while a server holds the data dir.
pub struct KeyAdmin {
    meta: Meta,
}

impl KeyAdmin {
    /// Opens (creating if needed) the data dir's metadata database.
    pub fn open(dir: &Path) -> Result<KeyAdmin, KeyError> {
        std::fs::create_dir_all(dir).map_err(|e| KeyError::Io {
            path: dir.display().to_string(),
            source: e,
        })?;
        let meta = Meta::open(&dir.join(meta::META_FILE))?;
        meta.ensure_project(ProjectId::DEFAULT, "default", SystemClock.now())?;
        Ok(KeyAdmin { meta })
    }

    pub fn create(
        &mut self,
        project: &str,
        kind: KeyKind,
        name: &str,
    ) -> Result<CreatedKey, KeyError> {
        create(&mut self.meta, project, kind, name, SystemClock.now())
    }

    /// Every key, or those of one project, by id.
    pub fn list(&self, project: Option<&str>) -> Result<Vec<ApiKey>, KeyError> {
        let project = project.map(|p| project_id(&self.meta, p)).transpose()?;
        list(&self.meta, project)
    }

    /// Revokes the key with this id or public prefix (a whole key works too).
    pub fn revoke(&self, which: &str) -> Result<ApiKey, KeyError> {
        revoke(&self.meta, None, which, SystemClock.now())
    }
}

impl App {
    /// Makes a key for the project called `project` (created if new).
    pub fn create_key(
        &self,
        project: &str,
        kind: KeyKind,
        name: &str,
    ) -> Result<CreatedKey, KeyError> {
        create(&mut self.store().meta(), project, kind, name, self.now())
    }

    /// The keys of a project (or of all projects), by id.
    pub fn keys(&self, project: Option<ProjectId>) -> Result<Vec<ApiKey>, KeyError> {
        list(&self.store().meta(), project)
    }

    /// Revokes a key by id or public prefix; with `project`, only a key of that project.
    pub fn revoke_key(&self, project: Option<ProjectId>, which: &str) -> Result<ApiKey, KeyError> {
        revoke(&self.store().meta(), project, which, self.now())
    }

    /// The project and kind of a presented key, or `None` if it is unknown or revoked.
    /// Reads the database every time, so keys made or revoked by another process count at
    /// once; callers on a hot path may cache the answer briefly.
    pub fn authenticate(&self, presented: &str) -> Result<Option<Authenticated>, KeyError> {
        authenticate(&self.store().meta(), presented)
    }

    /// The id of the project called `name`.
    pub fn project_id(&self, name: &str) -> Result<ProjectId, KeyError> {
        project_id(&self.store().meta(), name)
    }
}

fn project_id(meta: &Meta, name: &str) -> Result<ProjectId, KeyError> {
    meta.project_by_name(name)?
        .ok_or_else(|| KeyError::UnknownProject(name.to_string()))
}

fn check_project_name(name: &str) -> Result<(), KeyError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_PROJECT_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(KeyError::BadProjectName(name.to_string()))
    }
}

/// SHA-256 of the key as presented.
pub fn key_hash(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

fn new_key(kind: KeyKind) -> Result<String, KeyError> {
    use base64::Engine;
    use rand::TryRngCore;
    let mut bytes = [0u8; KEY_BYTES];
    rand::rngs::OsRng
        .try_fill_bytes(&mut bytes)
        .map_err(|e| KeyError::Random(e.to_string()))?;
    Ok(format!(
        "{}{}",
        kind.tag(),
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    ))
}

fn create(
    meta: &mut Meta,
    project: &str,
    kind: KeyKind,
    name: &str,
    now: Timestamp,
) -> Result<CreatedKey, KeyError> {
    check_project_name(project)?;
    let project_id = meta.ensure_project_named(project, now)?;
    let key = new_key(kind)?;
    let mut row = ApiKeyRow {
        id: 0,
        project: project_id,
        project_name: project.to_string(),
        kind: kind.as_str().to_string(),
        prefix: key[..PREFIX_LEN].to_string(),
        hash: key_hash(&key).to_vec(),
        name: name.to_string(),
        created_at: now,
        revoked_at: None,
    };
    row.id = meta.add_api_key(&row)?;
    Ok(CreatedKey {
        info: view(row)?,
        key,
    })
}

fn list(meta: &Meta, project: Option<ProjectId>) -> Result<Vec<ApiKey>, KeyError> {
    meta.api_keys(project)?.into_iter().map(view).collect()
}

fn revoke(
    meta: &Meta,
    project: Option<ProjectId>,
    which: &str,
    now: Timestamp,
) -> Result<ApiKey, KeyError> {
    let which = which.trim();
    let in_scope = |k: &ApiKeyRow| project.is_none_or(|p| k.project == p);
    let mut found: Vec<ApiKeyRow> = match which.parse::<i64>() {
        Ok(id) => meta
            .api_keys(project)?
            .into_iter()
            .filter(|k| k.id == id)
            .collect(),
        Err(_) if which.len() >= PREFIX_LEN && which.is_char_boundary(PREFIX_LEN) => meta
            .api_keys_with_prefix(&which[..PREFIX_LEN])?
            .into_iter()
            .filter(in_scope)
            .collect(),
        Err(_) => Vec::new(),
    };
    let row = match found.len() {
        0 => return Err(KeyError::NotFound(which.to_string())),
        1 => found.remove(0),
        _ => return Err(KeyError::Ambiguous(which.to_string())),
    };
    if let Some(at) = row.revoked_at {
        return Err(KeyError::AlreadyRevoked {
            id: row.id,
            prefix: row.prefix,
            at: at.to_rfc3339(),
        });
    }
    meta.revoke_api_key(row.id, now)?;
    view(ApiKeyRow {
        revoked_at: Some(now),
        ..row
    })
}

fn authenticate(meta: &Meta, presented: &str) -> Result<Option<Authenticated>, KeyError> {
    let presented = presented.trim();
    if presented.len() < PREFIX_LEN || !presented.is_char_boundary(PREFIX_LEN) {
        return Ok(None);
    }
    let hash = key_hash(presented);
    let mut found = None;
    // Every candidate is compared in full, in constant time, whatever matched before.
    for row in meta.api_keys_with_prefix(&presented[..PREFIX_LEN])? {
        let matches: bool = row.hash.as_slice().ct_eq(hash.as_slice()).into();
        if matches && row.revoked_at.is_none() {
            found = Some(Authenticated {
                key_id: row.id,
                project: row.project,
                kind: KeyKind::parse(&row.kind)?,
            });
        }
    }
    Ok(found)
}

fn view(row: ApiKeyRow) -> Result<ApiKey, KeyError> {
    Ok(ApiKey {
        id: row.id,
        project: row.project,
        project_name: row.project_name,
        kind: KeyKind::parse(&row.kind)?,
        prefix: row.prefix,
        name: row.name,
        created_at: row.created_at,
        revoked_at: row.revoked_at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_stored_hashed_and_authenticate_until_revoked() {
        let dir = tempfile::tempdir().unwrap();
        let mut admin = KeyAdmin::open(dir.path()).unwrap();
        let write = admin.create("default", KeyKind::Write, "site").unwrap();
        let secret = admin.create("shop", KeyKind::Secret, "").unwrap();
        assert!(write.key.starts_with("otw_") && secret.key.starts_with("ots_"));
        assert_eq!(write.key.len(), 4 + 43);
        assert_eq!(write.info.project, ProjectId::DEFAULT);
        assert_ne!(secret.info.project, ProjectId::DEFAULT);

        // The database holds no key, only prefixes and hashes.
        for file in [
            meta::META_FILE.to_string(),
            format!("{}-wal", meta::META_FILE),
        ] {
            let raw = std::fs::read(dir.path().join(file)).unwrap_or_default();
            let text = String::from_utf8_lossy(&raw);
            assert!(!text.contains(&write.key[PREFIX_LEN..]));
            assert!(!text.contains(&secret.key[PREFIX_LEN..]));
        }

        let auth = |k: &str| authenticate(&admin.meta, k).unwrap();
        assert_eq!(
            auth(&write.key),
            Some(Authenticated {
                key_id: write.info.id,
                project: ProjectId::DEFAULT,
                kind: KeyKind::Write
            })
        );
        assert_eq!(auth(&secret.key).unwrap().kind, KeyKind::Secret);
        let mut forged = write.key.clone();
        forged.pop();
        forged.push(if write.key.ends_with('A') { 'B' } else { 'A' });
        assert_eq!(auth(&forged), None);
        assert_eq!(auth("short"), None);
        assert_eq!(auth(""), None);

        let listed = admin.list(None).unwrap();
        assert_eq!(listed.len(), 2);
        assert_eq!(admin.list(Some("shop")).unwrap().len(), 1);
        assert!(matches!(
            admin.list(Some("nope")),
            Err(KeyError::UnknownProject(_))
        ));

        let revoked = admin.revoke(&write.info.prefix).unwrap();
        assert!(revoked.revoked_at.is_some());
        assert_eq!(auth(&write.key), None);
        assert!(matches!(
            admin.revoke(&write.info.id.to_string()),
            Err(KeyError::AlreadyRevoked { .. })
        ));
        assert!(matches!(admin.revoke("42"), Err(KeyError::NotFound(_))));
        assert!(matches!(
            admin.create("bad name", KeyKind::Write, ""),
            Err(KeyError::BadProjectName(_))
        ));
    }
}
