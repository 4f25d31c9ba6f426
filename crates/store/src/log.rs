//! The ingest log: append-only files of checksummed frames, written with group commit.
//!
//! File layout: an 8-byte magic `OTLOG\0\0\1` then frames. A frame is
//! `len: u32 LE | crc32: u32 LE | payload[len]` where the payload is a postcard-encoded
//! [`LogRecord`] and the checksum covers the payload. Files are named after the first
//! sequence number they may hold, so they sort in write order.

use crate::durability::Durability;
use crate::StoreError;
use omnitrail_model::{CustomerId, Event, ProjectId};
use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};

pub const LOG_MAGIC: &[u8; 8] = b"OTLOG\0\0\x01";
const FRAME_HEADER: usize = 8;
/// A frame longer than this is corruption, not data (events are capped far below).
const MAX_FRAME: u32 = 16 * 1024 * 1024;

/// One stored event with the facts the store assigned to it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LogRecord {
    /// Ingest sequence number: unique, increasing in acknowledgement order; breaks
    /// timestamp ties deterministically everywhere.
    pub seq: u64,
    pub project: ProjectId,
    /// The customer key the event was written under.
    pub customer: CustomerId,
    pub event: Event,
}

pub fn log_file_name(first_seq: u64) -> String {
    format!("{first_seq:020}.log")
}

pub fn encode_frame(record: &LogRecord, out: &mut Vec<u8>) -> Result<(), StoreError> {
    let start = out.len();
    out.extend_from_slice(&[0u8; FRAME_HEADER]);
    let out_vec = std::mem::take(out);
    let mut out_vec =
        postcard::to_extend(record, out_vec).map_err(|e| StoreError::Encode(e.to_string()))?;
    let len = (out_vec.len() - start - FRAME_HEADER) as u32;
    let crc = crc32fast::hash(&out_vec[start + FRAME_HEADER..]);
    out_vec[start..start + 4].copy_from_slice(&len.to_le_bytes());
    out_vec[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    *out = out_vec;
    Ok(())
}

/// What reading one log file found.
#[derive(Debug)]
pub struct LogRead {
    pub records: Vec<LogRecord>,
    /// Bytes of the file that hold whole, valid frames (including the magic).
    pub valid_len: u64,
    pub file_len: u64,
    /// Why reading stopped before the end of the file, if it did.
    pub problem: Option<String>,
}

pub fn read_log_file(path: &Path) -> Result<LogRead, StoreError> {
    let mut bytes = Vec::new();
    File::open(path)
        .and_then(|mut f| f.read_to_end(&mut bytes))
        .map_err(|e| StoreError::io(path, e))?;
    let file_len = bytes.len() as u64;
    if bytes.len() >= LOG_MAGIC.len() && &bytes[..LOG_MAGIC.len()] != LOG_MAGIC {
        // A whole but wrong header is not a torn write: cutting it would drop every
        // acknowledged event in the file.
        return Err(StoreError::Corrupt {
            path: path.to_path_buf(),
            reason: "not an omnitrail ingest log (bad file header)".into(),
        });
    }
    if bytes.len() < LOG_MAGIC.len() {
        // A crash between creating the file and writing its magic leaves it short; a
        // partial header holds no records.
        let problem = if LOG_MAGIC.starts_with(&bytes) {
            (file_len > 0).then(|| "torn file header".to_string())
        } else {
            Some("bad file header".to_string())
        };
        return Ok(LogRead {
            records: Vec::new(),
            valid_len: 0,
            file_len,
            problem,
        });
    }
    let mut pos = LOG_MAGIC.len();
    let mut records = Vec::new();
    let mut problem = None;
    while pos < bytes.len() {
        if bytes.len() - pos < FRAME_HEADER {
            problem = Some(format!("torn frame header at byte {pos}"));
            break;
        }
        let len = u32::from_le_bytes(bytes[pos..pos + 4].try_into().expect("4 bytes"));
        let crc = u32::from_le_bytes(bytes[pos + 4..pos + 8].try_into().expect("4 bytes"));
        if len == 0 || len > MAX_FRAME {
            problem = Some(format!("bad frame length {len} at byte {pos}"));
            break;
        }
        let end = pos + FRAME_HEADER + len as usize;
        if end > bytes.len() {
            problem = Some(format!("torn frame at byte {pos}"));
            break;
        }
        let payload = &bytes[pos + FRAME_HEADER..end];
        if crc32fast::hash(payload) != crc {
            problem = Some(format!("checksum mismatch at byte {pos}"));
            break;
        }
        match postcard::from_bytes::<LogRecord>(payload) {
            Ok(r) => records.push(r),
            Err(e) => {
                problem = Some(format!("undecodable frame at byte {pos}: {e}"));
                break;
            }
        }
        pos = end;
    }
    Ok(LogRead {
        records,
        valid_len: pos as u64,
        file_len,
        problem,
    })
}

/// The file frames are appended to.
pub struct LogFile {
    pub path: PathBuf,
    file: File,
}

impl LogFile {
    pub fn create(dir: &Path, first_seq: u64, d: &dyn Durability) -> Result<LogFile, StoreError> {
        let path = dir.join(log_file_name(first_seq));
        let mut file = OpenOptions::new()
            .create_new(true)
            .write(true)
            .open(&path)
            .map_err(|e| StoreError::io(&path, e))?;
        file.write_all(LOG_MAGIC)
            .map_err(|e| StoreError::io(&path, e))?;
        d.sync_file(&file).map_err(|e| StoreError::Fsync {
            path: path.clone(),
            source: e,
        })?;
        d.sync_dir(dir).map_err(|e| StoreError::Fsync {
            path: dir.to_path_buf(),
            source: e,
        })?;
        Ok(LogFile { path, file })
    }

    /// Reopens an existing file for appending after cutting it to `valid_len` bytes.
    pub fn reopen(path: &Path, valid_len: u64, d: &dyn Durability) -> Result<LogFile, StoreError> {
        let file = OpenOptions::new()
            .write(true)
            .open(path)
            .map_err(|e| StoreError::io(path, e))?;
        let len = file.metadata().map_err(|e| StoreError::io(path, e))?.len();
        if len != valid_len {
            file.set_len(valid_len)
                .map_err(|e| StoreError::io(path, e))?;
            d.sync_file(&file).map_err(|e| StoreError::Fsync {
                path: path.to_path_buf(),
                source: e,
            })?;
        }
        let mut file = file;
        if valid_len == 0 {
            file.write_all(LOG_MAGIC)
                .map_err(|e| StoreError::io(path, e))?;
        }
        use std::io::Seek;
        file.seek(std::io::SeekFrom::End(0))
            .map_err(|e| StoreError::io(path, e))?;
        Ok(LogFile {
            path: path.to_path_buf(),
            file,
        })
    }

    fn append_and_sync(&mut self, bytes: &[u8], d: &dyn Durability) -> Result<(), StoreError> {
        self.file
            .write_all(bytes)
            .map_err(|e| StoreError::io(&self.path, e))?;
        d.sync_file(&self.file).map_err(|e| StoreError::Fsync {
            path: self.path.clone(),
            source: e,
        })
    }
}

struct CommitState {
    pending: Vec<u8>,
    /// Highest ticket handed out / made durable.
    issued: u64,
    durable: u64,
    pending_max_seq: u64,
    leader_active: bool,
    /// Set forever by the first failed write or fsync: nothing is acknowledged after it.
    poisoned: Option<String>,
}

/// Group commit: callers enqueue encoded frames and wait; whoever finds no write in
/// progress becomes the leader and writes and fsyncs everything queued so far in one go,
/// so concurrent ingests share fsyncs instead of queueing behind each other's.
pub struct GroupCommit {
    state: Mutex<CommitState>,
    wake: Condvar,
    file: Mutex<LogFile>,
    durability: Arc<dyn Durability>,
    /// Every record with a sequence number below this is durable.
    durable_seq_end: AtomicU64,
}

impl GroupCommit {
    pub fn new(file: LogFile, durability: Arc<dyn Durability>, next_seq: u64) -> GroupCommit {
        GroupCommit {
            state: Mutex::new(CommitState {
                pending: Vec::new(),
                issued: 0,
                durable: 0,
                pending_max_seq: 0,
                leader_active: false,
                poisoned: None,
            }),
            wake: Condvar::new(),
            file: Mutex::new(file),
            durability,
            durable_seq_end: AtomicU64::new(next_seq),
        }
    }

    pub fn durable_seq_end(&self) -> u64 {
        self.durable_seq_end.load(Ordering::Acquire)
    }

    pub fn check_poisoned(&self) -> Result<(), StoreError> {
        match &lock(&self.state).poisoned {
            Some(why) => Err(StoreError::Poisoned(why.clone())),
            None => Ok(()),
        }
    }

    /// Refuses every later write; `why` is reported to each refused caller.
    pub fn poison(&self, why: &dyn std::fmt::Display) {
        let mut st = lock(&self.state);
        if st.poisoned.is_none() {
            st.poisoned = Some(why.to_string());
        }
        self.wake.notify_all();
    }

    /// Queues frames holding records up to `max_seq`; returns the ticket to wait on.
    pub fn enqueue(&self, frames: Vec<u8>, max_seq: u64) -> Result<u64, StoreError> {
        let mut st = lock(&self.state);
        if let Some(why) = &st.poisoned {
            return Err(StoreError::Poisoned(why.clone()));
        }
        if st.pending.is_empty() {
            st.pending = frames;
        } else {
            st.pending.extend_from_slice(&frames);
        }
        st.pending_max_seq = st.pending_max_seq.max(max_seq);
        st.issued += 1;
        Ok(st.issued)
    }

    /// The last ticket handed out: waiting on it waits for everything queued so far.
    pub fn issued(&self) -> u64 {
        lock(&self.state).issued
    }

    /// Returns once the ticket's frames are on disk, or with the error that made that
    /// impossible. Errors poison the log: the process must restart and replay.
    pub fn wait_durable(&self, ticket: u64) -> Result<(), StoreError> {
        let mut st = lock(&self.state);
        loop {
            if st.durable >= ticket {
                return Ok(());
            }
            if let Some(why) = &st.poisoned {
                return Err(StoreError::Poisoned(why.clone()));
            }
            if st.leader_active {
                st = self.wake.wait(st).unwrap_or_else(|p| p.into_inner());
                continue;
            }
            st.leader_active = true;
            let batch = std::mem::take(&mut st.pending);
            let upto = st.issued;
            let max_seq = st.pending_max_seq;
            drop(st);
            let result = lock(&self.file).append_and_sync(&batch, self.durability.as_ref());
            st = lock(&self.state);
            st.leader_active = false;
            match result {
                Ok(()) => {
                    st.durable = upto;
                    self.durable_seq_end
                        .fetch_max(max_seq + 1, Ordering::AcqRel);
                }
                Err(e) => {
                    tracing::error!("ingest log write failed, refusing all further writes: {e}");
                    st.poisoned = Some(e.to_string());
                    self.wake.notify_all();
                    // The leader reports the failure itself; the others see the poison.
                    return Err(e);
                }
            }
            self.wake.notify_all();
        }
    }

    /// Waits for queued frames to be written, then starts a new log file: the old one is
    /// sealed and may be compacted. The caller must keep new enqueues out meanwhile.
    pub fn rotate(&self, dir: &Path, first_seq: u64) -> Result<PathBuf, StoreError> {
        let mut st = lock(&self.state);
        while st.leader_active || !st.pending.is_empty() {
            if st.leader_active {
                st = self.wake.wait(st).unwrap_or_else(|p| p.into_inner());
            } else {
                let ticket = st.issued;
                drop(st);
                self.wait_durable(ticket)?;
                st = lock(&self.state);
            }
        }
        if let Some(why) = &st.poisoned {
            return Err(StoreError::Poisoned(why.clone()));
        }
        let new_file = LogFile::create(dir, first_seq, self.durability.as_ref());
        let mut file = lock(&self.file);
        match new_file {
            Ok(f) => Ok(std::mem::replace(&mut *file, f).path),
            Err(e) => {
                st.poisoned = Some(e.to_string());
                Err(e)
            }
        }
    }

    pub fn current_path(&self) -> PathBuf {
        lock(&self.file).path.clone()
    }
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Mutex poisoning is not how the store signals failure: a failure that could leave
    // guarded state inconsistent poisons the store itself (`GroupCommit::poison`), so a
    // panicked holder must not also turn every later call into a second panic.
    m.lock().unwrap_or_else(|p| p.into_inner())
}
