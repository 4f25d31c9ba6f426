//! Identity snapshot files (`identity/<project>.snapshot`): the app's serialized identity
//! graph, stamped with the metadata revision it reflects, so that opening a data dir reads
//! one file plus the identity rows written since instead of every row (docs/storage.md).
//!
//! The store only frames, checksums and places the bytes; what they mean is the app's.
//! Layout: magic `OTIDS\0\0\x01`, revision `i64` LE, epoch `i64` LE, payload length `u64`
//! LE, the payload, and a CRC-32 of everything before it.

use crate::durability::write_atomically;
use crate::meta::IdentityRevision;
use crate::{lock, Store, StoreError};
use omnitrail_model::ProjectId;
use std::path::PathBuf;

pub const IDENTITY_DIR: &str = "identity";
const MAGIC: &[u8; 8] = b"OTIDS\0\0\x01";
const HEADER: usize = 8 + 8 + 8 + 8;

/// A snapshot as read back: the revision it reflects and the app's payload.
pub struct IdentitySnapshot {
    pub at: IdentityRevision,
    pub payload: Vec<u8>,
}

impl Store {
    fn identity_snapshot_path(&self, project: ProjectId) -> PathBuf {
        self.dir
            .join(IDENTITY_DIR)
            .join(format!("{}.snapshot", project.0))
    }

    /// Writes a project's identity snapshot atomically (temp file, fsync, rename, fsync
    /// directory). Skipped, returning `false`, when `at` is of an older epoch than the
    /// metadata database: an erase deleted rows since the graph was captured, and its
    /// identifiers must not come back on disk.
    pub fn write_identity_snapshot(
        &self,
        project: ProjectId,
        at: IdentityRevision,
        payload: &[u8],
    ) -> Result<bool, StoreError> {
        self.commit()?;
        let _io = lock(&self.identity_snapshot_io);
        if self.meta().identity_revision(project)?.epoch != at.epoch {
            return Ok(false);
        }
        let dir = self.dir.join(IDENTITY_DIR);
        std::fs::create_dir_all(&dir).map_err(|e| StoreError::io(&dir, e))?;
        let mut bytes = Vec::with_capacity(HEADER + payload.len() + 4);
        bytes.extend_from_slice(MAGIC);
        bytes.extend_from_slice(&at.rev.to_le_bytes());
        bytes.extend_from_slice(&at.epoch.to_le_bytes());
        bytes.extend_from_slice(&(payload.len() as u64).to_le_bytes());
        bytes.extend_from_slice(payload);
        let crc = crc32fast::hash(&bytes);
        bytes.extend_from_slice(&crc.to_le_bytes());
        let path = self.identity_snapshot_path(project);
        write_atomically(self.opts.durability.as_ref(), &path, &bytes)
            .map_err(|e| StoreError::io(&path, e))?;
        Ok(true)
    }

    /// A project's identity snapshot; `None` when there is none. A torn, truncated or
    /// otherwise damaged file is [`StoreError::Corrupt`] naming what is wrong: the caller
    /// rebuilds from the metadata database, which is the durable record.
    pub fn read_identity_snapshot(
        &self,
        project: ProjectId,
    ) -> Result<Option<IdentitySnapshot>, StoreError> {
        let path = self.identity_snapshot_path(project);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(StoreError::io(&path, e)),
        };
        let corrupt = |reason: String| StoreError::Corrupt {
            path: path.clone(),
            reason,
        };
        if bytes.len() < HEADER + 4 {
            return Err(corrupt(format!(
                "identity snapshot is {} bytes, shorter than its header",
                bytes.len()
            )));
        }
        if &bytes[..8] != MAGIC {
            return Err(corrupt("not an identity snapshot (bad magic)".into()));
        }
        let word = |at: usize| <[u8; 8]>::try_from(&bytes[at..at + 8]).expect("8 bytes");
        let rev = i64::from_le_bytes(word(8));
        let epoch = i64::from_le_bytes(word(16));
        let len = u64::from_le_bytes(word(24));
        let expected = (HEADER as u64)
            .checked_add(len)
            .and_then(|n| n.checked_add(4));
        if expected != Some(bytes.len() as u64) {
            return Err(corrupt(format!(
                "identity snapshot is {} bytes, its header promises a {len}-byte payload",
                bytes.len()
            )));
        }
        let body = bytes.len() - 4;
        let stored = u32::from_le_bytes(bytes[body..].try_into().expect("4 bytes"));
        if crc32fast::hash(&bytes[..body]) != stored {
            return Err(corrupt("identity snapshot checksum mismatch".into()));
        }
        let mut payload = bytes;
        payload.truncate(body);
        payload.drain(..HEADER);
        Ok(Some(IdentitySnapshot {
            at: IdentityRevision { rev, epoch },
            payload,
        }))
    }

    /// Deletes a project's identity snapshot (an erase: the file holds identifiers).
    pub(crate) fn remove_identity_snapshot(&self, project: ProjectId) -> Result<(), StoreError> {
        self.commit()?;
        let _io = lock(&self.identity_snapshot_io);
        let path = self.identity_snapshot_path(project);
        for p in [path.with_extension("tmp"), path.clone()] {
            match std::fs::remove_file(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(StoreError::io(&p, e)),
            }
        }
        let dir = self.dir.join(IDENTITY_DIR);
        if dir.exists() {
            self.opts
                .durability
                .sync_dir(&dir)
                .map_err(|e| StoreError::Fsync {
                    path: dir.clone(),
                    source: e,
                })?;
        }
        Ok(())
    }
}
