//! Identity snapshot files (`identity/<project>.snapshot`): the app's serialized identity
//! graph, stamped with the metadata revision it reflects, so that opening a data dir reads
//! one file plus the identity rows written since instead of every row (docs/storage.md).
//!
//! The store only frames, checksums and places the bytes; what they mean is the app's.
//! Layout (version 2): magic `OTIDS\0\0\x02`, revision `i64` LE, epoch `i64` LE, section
//! count `u32` LE, a CRC-32 of those 28 bytes; then per section its length `u64` LE, a CRC-32
//! of its bytes, and the bytes. Each section is checked when it is read, so a reader that
//! needs only a small one (a summary) never touches the rest. Files of version 1 (magic
//! `OTIDS\0\0\x01`, revision, epoch, payload length, payload, CRC-32 of all before it) read
//! as one section.

use crate::durability::write_atomically;
use crate::meta::IdentityRevision;
use crate::{lock, Store, StoreError};
use omnitrail_model::ProjectId;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::OnceLock;

pub const IDENTITY_DIR: &str = "identity";
const MAGIC_V1: &[u8; 8] = b"OTIDS\0\0\x01";
const MAGIC: &[u8; 8] = b"OTIDS\0\0\x02";
/// Version 2: magic, revision, epoch, section count, header CRC.
const HEADER: usize = 8 + 8 + 8 + 4 + 4;
/// Bytes of a section checksummed before their pages are handed back.
const CHECK_PIECE: usize = 16 << 20;
/// Version 1: magic, revision, epoch, payload length.
const HEADER_V1: usize = 8 + 8 + 8 + 8;

/// A snapshot file, mapped: the revision it reflects and its sections, each checked on
/// [`IdentitySnapshot::section`].
///
/// The file is mapped rather than read: a graph image is hundreds of MB, and reading it into
/// the heap doubled the memory and page faults of opening, while a caller that needs one small
/// section touches only its pages. Mapping is sound because snapshot files are never written
/// in place: a new one is a new file renamed over the old, an erase unlinks it, and a mapping
/// keeps the file it was made of.
pub struct IdentitySnapshot {
    pub at: IdentityRevision,
    path: PathBuf,
    map: memmap2::Mmap,
    /// Per section its bytes and stored CRC (`None`: checked with the whole file, version 1).
    sections: Vec<(Range<usize>, Option<u32>)>,
    /// Per section whether its checksum matched, once computed: a mapping kept for many
    /// reads (a server's customer views) checks a large section once.
    checked: Vec<OnceLock<bool>>,
}

impl IdentitySnapshot {
    /// How many sections the file has; a file of version 1 has one.
    pub fn sections(&self) -> usize {
        self.sections.len()
    }

    /// Whether the file is of version 1, written before sections: its one section is the
    /// payload of that version.
    pub fn is_version_1(&self) -> bool {
        self.sections.first().is_some_and(|(_, crc)| crc.is_none())
    }

    /// Section `i`, its checksum verified (on the first read of it): [`StoreError::Corrupt`]
    /// when it does not match. Panics when `i` is not below [`IdentitySnapshot::sections`].
    pub fn section(&self, i: usize) -> Result<&[u8], StoreError> {
        let (range, crc) = &self.sections[i];
        let bytes = &self.map[range.clone()];
        let intact = *self.checked[i].get_or_init(|| match crc {
            Some(crc) => {
                // In pieces, each handed back once hashed, so checking a large section
                // never holds all of it.
                let mut hasher = crc32fast::Hasher::new();
                for start in range.clone().step_by(CHECK_PIECE) {
                    let piece = start..(start + CHECK_PIECE).min(range.end);
                    hasher.update(&self.map[piece.clone()]);
                    self.release(&piece);
                }
                hasher.finalize() == *crc
            }
            None => true,
        });
        if !intact {
            return Err(StoreError::Corrupt {
                path: self.path.clone(),
                reason: format!("identity snapshot section {i} checksum mismatch"),
            });
        }
        Ok(bytes)
    }
}

impl IdentitySnapshot {
    /// Hands the pages of `range` back once checked: a customer view reads a few pages of a
    /// section hundreds of MB long, and the rest, faulted in by the checksum, would
    /// otherwise count as the process's memory for as long as the snapshot stays mapped.
    fn release(&self, range: &Range<usize>) {
        #[cfg(unix)]
        {
            // SAFETY: the mapping is shared, read-only and of a file never written in place
            // (see `IdentitySnapshot`): pages dropped here are read again from the file, with
            // the same bytes, when next touched, so no reference into it sees a change.
            let _ = unsafe {
                self.map.unchecked_advise_range(
                    memmap2::UncheckedAdvice::DontNeed,
                    range.start,
                    range.len(),
                )
            };
        }
    }
}

fn word(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"))
}

fn crc_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"))
}

/// The revision and the sections of a whole file, its framing checked (and in version 1
/// its checksum; in version 2 each section's is checked when it is read).
type Framing = (IdentityRevision, Vec<(Range<usize>, Option<u32>)>);

fn framing(bytes: &[u8]) -> Result<Framing, String> {
    let size = bytes.len();
    if size < HEADER.max(HEADER_V1) {
        return Err(format!(
            "identity snapshot is {size} bytes, shorter than its header"
        ));
    }
    let at = IdentityRevision {
        rev: word(bytes, 8) as i64,
        epoch: word(bytes, 16) as i64,
    };
    match &bytes[..8] {
        m if m == MAGIC_V1 => {
            let len = word(bytes, 24);
            let expected = (HEADER_V1 as u64 + 4).checked_add(len);
            if expected != Some(size as u64) {
                return Err(format!(
                    "identity snapshot is {size} bytes, its header promises a {len}-byte payload"
                ));
            }
            if crc32fast::hash(&bytes[..size - 4]) != crc_at(bytes, size - 4) {
                return Err("identity snapshot checksum mismatch".into());
            }
            Ok((at, vec![(HEADER_V1..size - 4, None)]))
        }
        m if m == MAGIC => {
            if crc32fast::hash(&bytes[..HEADER - 4]) != crc_at(bytes, HEADER - 4) {
                return Err("identity snapshot header checksum mismatch".into());
            }
            let count = u32::from_le_bytes(bytes[24..28].try_into().expect("4 bytes"));
            let mut sections = Vec::new();
            let mut pos = HEADER;
            for i in 0..count {
                let start = pos + 12;
                let len = (start <= size).then(|| word(bytes, pos));
                let Some(end) = len
                    .and_then(|len| (start as u64).checked_add(len))
                    .filter(|&end| end <= size as u64)
                else {
                    return Err(format!(
                        "identity snapshot is {size} bytes, too short for its section {i}"
                    ));
                };
                sections.push((start..end as usize, Some(crc_at(bytes, pos + 8))));
                pos = end as usize;
            }
            if pos != size {
                return Err(format!(
                    "identity snapshot is {size} bytes, its sections end at {pos}"
                ));
            }
            Ok((at, sections))
        }
        _ => Err("not an identity snapshot (bad magic)".into()),
    }
}

impl Store {
    fn identity_snapshot_path(&self, project: ProjectId) -> PathBuf {
        self.dir
            .join(IDENTITY_DIR)
            .join(format!("{}.snapshot", project.0))
    }

    /// Writes a project's identity snapshot of `sections` atomically (temp file, fsync,
    /// rename, fsync directory). Skipped, returning `false`, when `at` is of an older epoch
    /// than the metadata database: an erase deleted rows since the graph was captured, and
    /// its identifiers must not come back on disk.
    pub fn write_identity_snapshot(
        &self,
        project: ProjectId,
        at: IdentityRevision,
        sections: &[&[u8]],
    ) -> Result<bool, StoreError> {
        self.commit()?;
        let _io = lock(&self.identity_snapshot_io);
        if self.meta().identity_revision(project)?.epoch != at.epoch {
            return Ok(false);
        }
        let dir = self.dir.join(IDENTITY_DIR);
        std::fs::create_dir_all(&dir).map_err(|e| StoreError::io(&dir, e))?;
        let size: usize = sections.iter().map(|s| s.len() + 12).sum();
        let mut bytes = Vec::with_capacity(HEADER + size);
        bytes.extend_from_slice(MAGIC);
        bytes.extend_from_slice(&at.rev.to_le_bytes());
        bytes.extend_from_slice(&at.epoch.to_le_bytes());
        bytes.extend_from_slice(&(sections.len() as u32).to_le_bytes());
        let crc = crc32fast::hash(&bytes);
        bytes.extend_from_slice(&crc.to_le_bytes());
        for section in sections {
            bytes.extend_from_slice(&(section.len() as u64).to_le_bytes());
            bytes.extend_from_slice(&crc32fast::hash(section).to_le_bytes());
            bytes.extend_from_slice(section);
        }
        let path = self.identity_snapshot_path(project);
        write_atomically(self.opts.durability.as_ref(), &path, &bytes)
            .map_err(|e| StoreError::io(&path, e))?;
        Ok(true)
    }

    /// A project's identity snapshot, mapped, its framing checked; `None` when there is
    /// none. A torn, truncated or otherwise damaged file is [`StoreError::Corrupt`] naming
    /// what is wrong (damage inside a section when that section is read): the caller
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
        let size = file.metadata().map_err(|e| StoreError::io(&path, e))?.len();
        let corrupt = |reason: String| StoreError::Corrupt {
            path: path.clone(),
            reason,
        };
        if size < HEADER as u64 {
            return Err(corrupt(format!(
                "identity snapshot is {size} bytes, shorter than its header"
            )));
        }
        // SAFETY: snapshot files are replaced by rename and never modified in place (see
        // `IdentitySnapshot`), so the mapped bytes do not change under the mapping.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| StoreError::io(&path, e))?;
        let (at, sections) = framing(&map).map_err(corrupt)?;
        Ok(Some(IdentitySnapshot {
            at,
            path,
            map,
            checked: sections.iter().map(|_| OnceLock::new()).collect(),
            sections,
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
