//! Identity snapshot files (`identity/<project>.snapshot`): the app's serialized identity
//! graph, stamped with the metadata revision it reflects, so that opening a data dir reads
//! one file plus the identity rows written since instead of every row (docs/storage.md).
//!
//! The store only frames, checksums and places the bytes; what they mean is the app's.
//! Layout: magic `OTIDS\0\0\x02`, revision `i64` LE, epoch `i64` LE, head length `u64` LE,
//! the head, a CRC-32 of everything before it, payload length `u64` LE, the payload, and a
//! CRC-32 of everything before it. The head (a summary) has its own checksum so that it
//! reads without the payload. Files of version 1 (no head) still read.

use crate::durability::write_atomically;
use crate::meta::IdentityRevision;
use crate::{lock, Store, StoreError};
use omnitrail_model::ProjectId;
use std::io::Read;
use std::path::PathBuf;

pub const IDENTITY_DIR: &str = "identity";
const MAGIC_V1: &[u8; 8] = b"OTIDS\0\0\x01";
const MAGIC: &[u8; 8] = b"OTIDS\0\0\x02";
/// Magic, revision, epoch and one length.
const HEADER: usize = 8 + 8 + 8 + 8;

/// A snapshot as read back: the revision it reflects, the app's head (`None` in a file of
/// version 1, which has none) and payload.
pub struct IdentitySnapshot {
    pub at: IdentityRevision,
    pub head: Option<Vec<u8>>,
    pub payload: SnapshotBytes,
}

/// The payload of a snapshot file, mapped rather than copied: an image of millions of
/// identifiers is hundreds of MB, and reading it into the heap doubled the memory and the
/// page faults of opening. Mapping is sound here because snapshot files are never written
/// in place: a new one is a new file renamed over the old, and an erase unlinks it, and a
/// mapping keeps the file it was made of.
pub struct SnapshotBytes {
    map: memmap2::Mmap,
    range: std::ops::Range<usize>,
}

impl std::ops::Deref for SnapshotBytes {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.map[self.range.clone()]
    }
}

/// The head of a snapshot alone, read without its payload.
pub struct IdentitySnapshotHead {
    pub at: IdentityRevision,
    /// `None` in a file of version 1: what it knows is in its payload.
    pub head: Option<Vec<u8>>,
}

fn word(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"))
}

fn crc_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"))
}

/// The fixed header: magic version, revision, epoch and the first length. `bytes` holds
/// at least [`HEADER`] bytes.
fn header(bytes: &[u8]) -> Result<(u8, IdentityRevision, u64), String> {
    let version = match &bytes[..8] {
        m if m == MAGIC => 2,
        m if m == MAGIC_V1 => 1,
        _ => return Err("not an identity snapshot (bad magic)".into()),
    };
    let at = IdentityRevision {
        rev: word(bytes, 8) as i64,
        epoch: word(bytes, 16) as i64,
    };
    Ok((version, at, word(bytes, 24)))
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
        head: &[u8],
        payload: &[u8],
    ) -> Result<bool, StoreError> {
        self.commit()?;
        let _io = lock(&self.identity_snapshot_io);
        if self.meta().identity_revision(project)?.epoch != at.epoch {
            return Ok(false);
        }
        let dir = self.dir.join(IDENTITY_DIR);
        std::fs::create_dir_all(&dir).map_err(|e| StoreError::io(&dir, e))?;
        let mut bytes = Vec::with_capacity(HEADER + head.len() + 12 + payload.len() + 4);
        bytes.extend_from_slice(MAGIC);
        bytes.extend_from_slice(&at.rev.to_le_bytes());
        bytes.extend_from_slice(&at.epoch.to_le_bytes());
        bytes.extend_from_slice(&(head.len() as u64).to_le_bytes());
        bytes.extend_from_slice(head);
        let crc = crc32fast::hash(&bytes);
        bytes.extend_from_slice(&crc.to_le_bytes());
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
        let file = match std::fs::File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(StoreError::io(&path, e)),
        };
        let corrupt = |reason: String| StoreError::Corrupt {
            path: path.clone(),
            reason,
        };
        let size = file.metadata().map_err(|e| StoreError::io(&path, e))?.len();
        if size < (HEADER + 4) as u64 {
            return Err(corrupt(format!(
                "identity snapshot is {size} bytes, shorter than its header"
            )));
        }
        // SAFETY: snapshot files are replaced by rename and never modified in place (see
        // `SnapshotBytes`), so the mapped bytes do not change under the mapping.
        let bytes = unsafe { memmap2::MmapOptions::new().populate().map(&file) }
            .map_err(|e| StoreError::io(&path, e))?;
        let (at, head, payload_at) = match head_of(&bytes, bytes.len() as u64) {
            Ok(Head::V1 { at }) => (at, None, HEADER),
            Ok(Head::V2 { at, head_end }) => (at, Some(HEADER..head_end), head_end + 12),
            Err(reason) => return Err(corrupt(reason)),
        };
        let body = bytes.len() - 4;
        if crc32fast::hash(&bytes[..body]) != crc_at(&bytes, body) {
            return Err(corrupt("identity snapshot checksum mismatch".into()));
        }
        let head = head.map(|range| bytes[range].to_vec());
        let payload = SnapshotBytes {
            map: bytes,
            range: payload_at..body,
        };
        Ok(Some(IdentitySnapshot { at, head, payload }))
    }

    /// The head of a project's identity snapshot, read and checked without its payload;
    /// `None` when there is no snapshot. Damage to the head is [`StoreError::Corrupt`];
    /// damage to the payload only shows when the whole snapshot is read.
    pub fn read_identity_snapshot_head(
        &self,
        project: ProjectId,
    ) -> Result<Option<IdentitySnapshotHead>, StoreError> {
        let path = self.identity_snapshot_path(project);
        let mut file = match std::fs::File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(StoreError::io(&path, e)),
        };
        let io = |e| StoreError::io(&path, e);
        let size = file.metadata().map_err(io)?.len();
        let mut bytes = vec![0; HEADER.min(size as usize)];
        file.read_exact(&mut bytes).map_err(io)?;
        if let Some(rest) = head_rest(&bytes, size) {
            let start = bytes.len();
            bytes.resize(start + rest, 0);
            file.read_exact(&mut bytes[start..]).map_err(io)?;
        }
        let corrupt = |reason: String| StoreError::Corrupt {
            path: path.clone(),
            reason,
        };
        Ok(Some(match head_of(&bytes, size).map_err(corrupt)? {
            Head::V1 { at } => IdentitySnapshotHead { at, head: None },
            Head::V2 { at, head_end } => IdentitySnapshotHead {
                at,
                head: Some(bytes[HEADER..head_end].to_vec()),
            },
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

enum Head {
    V1 {
        at: IdentityRevision,
    },
    /// The head is `bytes[HEADER..head_end]`.
    V2 {
        at: IdentityRevision,
        head_end: usize,
    },
}

/// How many bytes past the fixed header a head read needs (head, its CRC and the payload
/// length), when `bytes` is the fixed header of a version-2 file of `size` bytes whose
/// head fits in it.
fn head_rest(bytes: &[u8], size: u64) -> Option<usize> {
    if bytes.len() < HEADER || &bytes[..8] != MAGIC {
        return None;
    }
    let len = word(bytes, 24);
    let rest = len.checked_add(12)?;
    (rest <= size.saturating_sub(HEADER as u64)).then_some(rest as usize)
}

/// Checks the framing of a snapshot of `size` bytes whose first bytes are `bytes` (the
/// whole file, or at least its head and the payload length).
fn head_of(bytes: &[u8], size: u64) -> Result<Head, String> {
    if size < (HEADER + 4) as u64 || bytes.len() < HEADER {
        return Err(format!(
            "identity snapshot is {size} bytes, shorter than its header"
        ));
    }
    let (version, at, len) = header(bytes)?;
    if version == 1 {
        let expected = (HEADER as u64)
            .checked_add(len)
            .and_then(|n| n.checked_add(4));
        if expected != Some(size) {
            return Err(format!(
                "identity snapshot is {size} bytes, its header promises a {len}-byte payload"
            ));
        }
        return Ok(Head::V1 { at });
    }
    let head_end = (HEADER as u64).checked_add(len);
    let Some(head_end) = head_end.filter(|&e| e.saturating_add(12) <= size.saturating_sub(4))
    else {
        return Err(format!(
            "identity snapshot is {size} bytes, its header promises a {len}-byte head"
        ));
    };
    let head_end = head_end as usize;
    if crc32fast::hash(&bytes[..head_end]) != crc_at(bytes, head_end) {
        return Err("identity snapshot head checksum mismatch".into());
    }
    let payload = word(bytes, head_end + 4);
    let expected = (head_end as u64 + 12)
        .checked_add(payload)
        .and_then(|n| n.checked_add(4));
    if expected != Some(size) {
        return Err(format!(
            "identity snapshot is {size} bytes, its header promises a {payload}-byte payload"
        ));
    }
    Ok(Head::V2 { at, head_end })
}
