//! Omnitrail's storage engine.
//!
//! Events enter through [`Store::ingest`]: they are de-duplicated by event id, given a
//! customer key and an ingest sequence number, appended to the ingest log and fsynced
//! (group commit) before `ingest` returns. [`Store::compact`] moves logged events into
//! Parquet segments partitioned by customer hash and sorted by (customer, time, seq),
//! and swaps the manifest atomically. [`Store::journeys`] hands the engine columnar
//! journeys of one partition, segments and log tail merged, cached until data changes.
//!
//! The on-disk layout is described in docs/storage.md.

pub mod durability;
pub mod erase;
pub mod identity_snapshot;
pub mod index;
pub mod journeys;
pub mod log;
pub mod manifest;
pub mod meta;
pub mod placement;
pub mod segment;
pub mod triggers;

pub use durability::{Durability, OsDurability};
pub use erase::{AuditEntry, EraseCounts, EraseRequest, Erased, Suppression};
pub use identity_snapshot::IdentitySnapshot;
pub use log::LogRecord;
pub use manifest::{
    Manifest, PlacementRun, SegmentCounts, SegmentMeta, DEFAULT_PARTITIONS, FORMAT_VERSION,
};
pub use meta::{ApiKeyRow, DeadLetter, EvidenceRow, IdentityRevision, ImportRecord, Meta, NoteRow};
pub use omnitrail_model::journeys::{Dictionary, Journeys, PropertyColumn, ScanSpec};
pub use placement::{Placement, Placer, Resolution};
pub use triggers::{
    AttemptOutcome, DeliveryRow, FiringRow, TaskFilter, TaskListing, TaskRow, TriggerRuleRow,
    TriggerStateRow, TriggerWrite,
};

use index::{CustomerKeys, DedupSet};
use log::{lock, GroupCommit, LogFile};
use omnitrail_model::{
    Clock, CustomerId, Event, Identifier, IdentifierKind, ProjectId, SystemClock,
};
use rayon::prelude::*;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("fsync of {} failed: {source}; the store refuses further writes until it is reopened", path.display())]
    Fsync {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the store stopped accepting writes after an earlier write failure ({0}); restart to recover from the log")]
    Poisoned(String),
    #[error("{}: {reason}", path.display())]
    Corrupt { path: PathBuf, reason: String },
    #[error("{}: parquet: {message}", path.display())]
    Parquet { path: PathBuf, message: String },
    #[error("metadata database: {0}")]
    Meta(String),
    #[error("encoding failed: {0}")]
    Encode(String),
    #[error("data dir {} is in use by another omnitrail process", .0.display())]
    Locked(PathBuf),
    #[error("data dir {} is open for reading only in this process", .0.display())]
    ReadOnly(PathBuf),
    /// A reader cannot open the data dir as it is; a writer's open would repair or
    /// upgrade it first.
    #[error("{0}")]
    NeedsWriter(String),
    #[error("data dir {} changed under every attempt to read a consistent snapshot of it; try again", .0.display())]
    Busy(PathBuf),
    #[error("project {0} does not exist")]
    UnknownProject(u32),
    #[error("event has no identifier that can key a customer")]
    NoIdentifier,
    /// A compaction placed keys after the resolution was made; make it again.
    #[error("keys were placed while journeys were read; read them again")]
    PlacementChanged,
}

impl StoreError {
    pub fn io(path: &Path, source: std::io::Error) -> StoreError {
        StoreError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Picks the identifier that keys an event at write time (its *primary* identifier), as an
/// index into the event's identifiers; `None` when none may key a customer. It must be a
/// pure function of the identifiers: compaction and log replay call it again.
pub type PrimaryRule = Arc<dyn Fn(&[Identifier]) -> Option<usize> + Send + Sync>;

/// The default primary rule: the identifier of the highest-priority kind
/// (user_id > crm_id > email > phone > social > custom > device_id > anonymous_id).
pub fn default_primary(ids: &[Identifier]) -> Option<usize> {
    (0..ids.len()).min_by_key(|&i| kind_priority(&ids[i].kind))
}

pub struct StoreOptions {
    /// Partitions of a new data dir (an existing one keeps its own).
    pub partitions: u32,
    pub durability: Arc<dyn Durability>,
    /// Compact automatically once this many events wait in the log.
    pub auto_compact_events: usize,
    /// A partition with more segments than this is merged into one.
    pub max_segments_per_partition: usize,
    /// Which identifier keys an event; fixed for the life of a data dir.
    pub primary: PrimaryRule,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            partitions: DEFAULT_PARTITIONS,
            durability: Arc::new(OsDurability),
            auto_compact_events: 2_000_000,
            max_segments_per_partition: 12,
            primary: Arc::new(default_primary),
        }
    }
}

/// What opening found and repaired.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct OpenReport {
    /// Events replayed from the log (not yet in segments).
    pub replayed: u64,
    /// A torn or corrupt log tail that was cut: (file, bytes cut, why).
    pub cut_tail: Option<(PathBuf, u64, String)>,
    /// Files of interrupted compactions that were removed.
    pub removed_orphans: Vec<PathBuf>,
}

/// What one ingest call stored.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IngestOutcome {
    pub stored: u64,
    /// Events whose event id was already stored (or repeated within the batch).
    pub duplicates: u64,
    /// The customer key of each input event, `None` for duplicates; same order as input.
    pub customers: Vec<Option<CustomerId>>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CompactionReport {
    pub events: u64,
    pub segments_written: u64,
    pub segments_merged: u64,
}

struct Indexes {
    dedup: DedupSet,
    keys: CustomerKeys,
}

struct IngestState {
    /// Loaded on the first ingest: reads and stats never pay for them.
    indexes: Option<Indexes>,
    next_seq: u64,
    next_customer: u64,
}

/// What reads of a few keys need to find in a run of log records without scanning it.
/// Kept per log file, so that compaction drops a sealed file's index with its records.
#[derive(Default)]
struct TailIndex {
    /// Positions in the run of each (project, key)'s records, in log order.
    by_key: HashMap<(ProjectId, CustomerId), Vec<u32>>,
    /// Per project, each trait name with the first sequence number that carries it: a
    /// name is visible once that record is durable.
    traits: HashMap<ProjectId, BTreeMap<String, u64>>,
}

impl TailIndex {
    fn of(records: &[LogRecord]) -> TailIndex {
        let mut index = TailIndex::default();
        for (pos, r) in records.iter().enumerate() {
            index.add(pos, r);
        }
        index
    }

    fn add(&mut self, pos: usize, r: &LogRecord) {
        // A log file never holds 4G records: files are sealed at every compaction, which
        // the app runs every few million events.
        let pos = u32::try_from(pos).expect("a log file holds fewer than 2^32 records");
        self.by_key
            .entry((r.project, r.customer))
            .or_default()
            .push(pos);
        if !r.event.traits.is_empty() {
            let names = self.traits.entry(r.project).or_default();
            for name in r.event.traits.keys() {
                if !names.contains_key(name.as_str()) {
                    names.insert(name.to_string(), r.seq);
                }
            }
        }
    }
}

/// A log file that is closed but not yet compacted.
#[derive(Clone)]
struct Sealed {
    path: PathBuf,
    records: Arc<Vec<LogRecord>>,
    index: Arc<TailIndex>,
}

#[derive(Default)]
struct Tail {
    sealed: Vec<Sealed>,
    /// Records of the log file being appended to, and their index.
    active: Vec<LogRecord>,
    active_index: TailIndex,
}

impl Tail {
    fn len(&self) -> usize {
        self.active.len() + self.sealed.iter().map(|s| s.records.len()).sum::<usize>()
    }
    fn records(&self) -> impl Iterator<Item = &LogRecord> {
        self.sealed
            .iter()
            .flat_map(|s| s.records.iter())
            .chain(self.active.iter())
    }
    /// Each run of records with its index, in log order.
    fn runs(&self) -> impl Iterator<Item = (&[LogRecord], &TailIndex)> {
        self.sealed
            .iter()
            .map(|s| (s.records.as_slice(), s.index.as_ref()))
            .chain(std::iter::once((
                self.active.as_slice(),
                &self.active_index,
            )))
    }
    fn append(&mut self, records: Vec<LogRecord>) {
        let start = self.active.len();
        for (i, r) in records.iter().enumerate() {
            self.active_index.add(start + i, r);
        }
        self.active.extend(records);
    }
    /// Moves the active records (and their index) into a sealed run.
    fn seal(&mut self, path: PathBuf) {
        let records = std::mem::take(&mut self.active);
        let index = std::mem::take(&mut self.active_index);
        self.sealed.push(Sealed {
            path,
            records: Arc::new(records),
            index: Arc::new(index),
        });
    }
}

/// One write-time key's events in one source: customer `index` of `journeys`. See
/// [`Store::key_journeys`].
#[derive(Clone, Debug)]
pub struct KeyPiece {
    pub key: CustomerId,
    pub journeys: Arc<Journeys>,
    pub index: usize,
}

/// How often the store built columnar journeys from disk, for tests and diagnostics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LoadCounts {
    /// Whole-partition builds of segments and log tail ([`Store::journeys`], [`Store::scan`]).
    pub partitions: u64,
    /// Segment rows decoded by [`Store::key_journeys`] to find its keys' rows (the pages
    /// the page index admits).
    pub key_rows: u64,
}

type CacheKey = (ProjectId, u32, ScanSpec);
/// A cached scan and the (manifest version, durable seq end) it was built at.
type CacheEntry = ((u64, u64), Arc<Journeys>);

/// How this process holds its data dir.
enum Access {
    /// The one writer: it holds `LOCK` and appends to the log.
    Writer { commit: GroupCommit, _lock: File },
    /// A reader beside a writer: a fixed snapshot (see [`Store::open_read_only`]).
    Reader(Pinned),
}

/// What a reader's snapshot holds on to.
struct Pinned {
    /// End of the log records read: the snapshot's durable sequence end.
    seq_end: u64,
    /// An open handle of every segment its manifest names, by relative path, so a
    /// writer's compaction or erase deleting one does not take it from the reader.
    segments: HashMap<String, segment::SegmentFile>,
}

/// How often a reader tries to read a snapshot that no compaction or erase changed.
const SNAPSHOT_ATTEMPTS: u32 = 20;

/// The log files of a data dir as read at open.
struct LogScan {
    tail: Tail,
    next_seq: u64,
    next_customer: u64,
    /// The last log file and its length up to its last whole record.
    active: Option<(PathBuf, u64)>,
    /// Closed files that hold no record not yet compacted.
    spent: Vec<PathBuf>,
    replayed: u64,
    cut_tail: Option<(PathBuf, u64, String)>,
}

/// Reads every log file of `log_dir`, keeping the records at or after
/// `compacted_seq_end`. A torn or corrupt end of the last file is left out (the caller
/// decides whether to cut it); anywhere else it is an error.
fn scan_logs(log_dir: &Path, manifest: &Manifest) -> Result<LogScan, StoreError> {
    let mut logs: Vec<PathBuf> = std::fs::read_dir(log_dir)
        .map_err(|e| StoreError::io(log_dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    logs.sort();
    let mut scan = LogScan {
        tail: Tail::default(),
        next_seq: manifest.compacted_seq_end,
        next_customer: manifest.next_customer,
        active: None,
        spent: Vec::new(),
        replayed: 0,
        cut_tail: None,
    };
    for (i, path) in logs.iter().enumerate() {
        let is_last = i + 1 == logs.len();
        let read = log::read_log_file(path)?;
        if let Some(problem) = &read.problem {
            if !is_last {
                return Err(StoreError::Corrupt {
                    path: path.clone(),
                    reason: format!("{problem} in a closed log file"),
                });
            }
            scan.cut_tail = Some((
                path.clone(),
                read.file_len - read.valid_len,
                problem.clone(),
            ));
        }
        let records: Vec<LogRecord> = read
            .records
            .into_iter()
            .filter(|r| r.seq >= manifest.compacted_seq_end)
            .collect();
        for r in &records {
            scan.next_seq = scan.next_seq.max(r.seq + 1);
            scan.next_customer = scan.next_customer.max(r.customer.0 + 1);
        }
        scan.replayed += records.len() as u64;
        if is_last {
            scan.tail.active_index = TailIndex::of(&records);
            scan.tail.active = records;
            scan.active = Some((path.clone(), read.valid_len));
        } else if records.is_empty() {
            scan.spent.push(path.clone());
        } else {
            scan.tail.sealed.push(Sealed {
                path: path.clone(),
                index: Arc::new(TailIndex::of(&records)),
                records: Arc::new(records),
            });
        }
    }
    Ok(scan)
}

fn is_not_found(e: &StoreError) -> bool {
    matches!(e, StoreError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound)
}

pub struct Store {
    dir: PathBuf,
    opts: StoreOptions,
    meta: Mutex<Meta>,
    ingest: Mutex<IngestState>,
    access: Access,
    tail: RwLock<Tail>,
    manifest: RwLock<Arc<Manifest>>,
    compaction: Mutex<()>,
    cache: Mutex<HashMap<CacheKey, CacheEntry>>,
    /// Each live segment's parsed footer and page index, for keyed reads.
    segment_indexes: Mutex<HashMap<String, segment::SegmentIndex>>,
    partition_loads: AtomicU64,
    key_rows: AtomicU64,
    /// Serializes writing identity snapshots with an erase removing them.
    identity_snapshot_io: Mutex<()>,
    report: OpenReport,
    /// Where a compaction places keys it files for the first time (`set_placer`).
    placer: RwLock<Option<Arc<Placer>>>,
    /// The placement of each project's keys, as of the manifest's runs named beside it.
    placements: Mutex<Option<(PlacementStamp, Placements)>>,
    /// Projects whose placement was rebuilt from segments: the next compaction writes it
    /// whole, replacing the damaged runs.
    rebuilt_placements: Mutex<BTreeSet<ProjectId>>,
}

/// What a placement was read from: the manifest's runs and placed end.
type PlacementStamp = (Vec<PlacementRun>, u64);
type Placements = Arc<HashMap<ProjectId, Arc<Placement>>>;

/// A compaction's placements: every project's after it, and the keys it moved.
struct Placed {
    placements: HashMap<ProjectId, Arc<Placement>>,
    moved: BTreeMap<ProjectId, Vec<(u64, u64)>>,
}

fn placement_stamp(manifest: &Manifest) -> PlacementStamp {
    (manifest.placement_runs.clone(), manifest.placed_end())
}

/// How many placements may hold rows of keys whose customer changed before reading
/// journeys moves them by keyed reads rather than regrouping whole partitions: each costs
/// a page or two of each segment of its partition.
pub const RESOLVE_AT_READ_LIMIT: usize = 4096;

/// A project with more placement runs than this has them merged into one at compaction.
const MAX_PLACEMENT_RUNS: usize = 8;

const LOG_DIR: &str = "log";
const SEGMENT_DIR: &str = "segments";
const INDEX_DIR: &str = "index";

fn kind_priority(kind: &IdentifierKind) -> u8 {
    match kind {
        IdentifierKind::UserId => 0,
        IdentifierKind::CrmId => 1,
        IdentifierKind::Email => 2,
        IdentifierKind::Phone => 3,
        IdentifierKind::Social(_) => 4,
        IdentifierKind::Custom(_) => 5,
        IdentifierKind::DeviceId => 6,
        IdentifierKind::AnonymousId => 7,
    }
}

fn counts_of<'a>(records: impl Iterator<Item = &'a LogRecord>) -> SegmentCounts {
    let mut counts = SegmentCounts::default();
    for r in records {
        *counts
            .channels
            .entry(r.event.channel.as_str().to_string())
            .or_default() += 1;
        *counts
            .activities
            .entry(r.event.activity.to_string())
            .or_default() += 1;
    }
    counts
}

/// What a project's events add up to ([`Store::event_summary`]).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EventSummary {
    pub events: u64,
    pub min_ts: Option<i64>,
    pub max_ts: Option<i64>,
    /// Per partition that holds events: its events by channel and by activity.
    pub partitions: BTreeMap<u32, SegmentCounts>,
}

impl EventSummary {
    /// Every partition's counts added up.
    pub fn totals(&self) -> SegmentCounts {
        let mut all = SegmentCounts::default();
        for counts in self.partitions.values() {
            all.add(counts);
        }
        all
    }
}

fn trait_names<'a>(events: impl Iterator<Item = &'a Event>) -> Vec<String> {
    let names: BTreeSet<&str> = events
        .flat_map(|e| e.traits.keys().map(|k| k.as_str()))
        .collect();
    names.into_iter().map(str::to_string).collect()
}

pub fn partition_of(project: ProjectId, customer: CustomerId, partitions: u32) -> u32 {
    let mut b = [0u8; 12];
    b[..4].copy_from_slice(&project.0.to_le_bytes());
    b[4..].copy_from_slice(&customer.0.to_le_bytes());
    (xxhash_rust::xxh3::xxh3_64(&b) % u64::from(partitions)) as u32
}

impl Store {
    pub fn open(dir: &Path, opts: StoreOptions) -> Result<Store, StoreError> {
        for sub in ["", LOG_DIR, SEGMENT_DIR, INDEX_DIR] {
            let p = dir.join(sub);
            std::fs::create_dir_all(&p).map_err(|e| StoreError::io(&p, e))?;
        }
        let lock_path = dir.join("LOCK");
        let lock_file = File::create(&lock_path).map_err(|e| StoreError::io(&lock_path, e))?;
        if lock_file.try_lock().is_err() {
            return Err(StoreError::Locked(dir.to_path_buf()));
        }
        let d = opts.durability.clone();
        let manifest = match Manifest::load(dir)? {
            Some(m) => m,
            None if has_files(&dir.join(SEGMENT_DIR)) || has_files(&dir.join(INDEX_DIR)) => {
                // Without its manifest every segment would look like an orphan and be
                // deleted; refuse instead of losing data.
                return Err(StoreError::Corrupt {
                    path: dir.join(manifest::MANIFEST_FILE),
                    reason: "missing, but the data dir holds segments; restore it from a backup"
                        .into(),
                });
            }
            None => {
                let m = Manifest::new(opts.partitions);
                m.save(dir, d.as_ref())?;
                m
            }
        };
        let meta = Meta::open(&dir.join(meta::META_FILE))?;
        meta.ensure_project(ProjectId::DEFAULT, "default", SystemClock.now())?;
        let mut report = OpenReport {
            removed_orphans: remove_orphans(dir, &manifest)?,
            ..OpenReport::default()
        };

        let log_dir = dir.join(LOG_DIR);
        let scan = scan_logs(&log_dir, &manifest)?;
        if let Some((path, bytes, problem)) = &scan.cut_tail {
            tracing::warn!(
                "cut {bytes} bytes from the end of {}: {problem}",
                path.display()
            );
        }
        for path in &scan.spent {
            std::fs::remove_file(path).map_err(|e| StoreError::io(path, e))?;
        }
        report.replayed = scan.replayed;
        report.cut_tail = scan.cut_tail.clone();
        let log_file = match &scan.active {
            Some((path, valid_len)) => LogFile::reopen(path, *valid_len, d.as_ref())?,
            None => LogFile::create(&log_dir, scan.next_seq, d.as_ref())?,
        };
        let commit = GroupCommit::new(log_file, d, scan.next_seq);
        Ok(Store::assemble(
            dir,
            opts,
            meta,
            manifest,
            scan,
            Access::Writer {
                commit,
                _lock: lock_file,
            },
            report,
        ))
    }

    /// Opens a data dir that another process (a server) may be writing, for reading
    /// only: no lock is taken and nothing on disk changes. The store is a snapshot: the
    /// manifest, an open handle of each of its segments, and the log records written
    /// after it, read while no compaction or erase swapped the manifest and no erasure
    /// was pending (otherwise it reads again). Every write is refused with
    /// [`StoreError::ReadOnly`].
    pub fn open_read_only(dir: &Path, opts: StoreOptions) -> Result<Store, StoreError> {
        if !dir.join(manifest::MANIFEST_FILE).is_file() {
            return Err(StoreError::NeedsWriter(format!(
                "data dir {} has no manifest yet",
                dir.display()
            )));
        }
        let meta = Meta::open_read_only(&dir.join(meta::META_FILE))?;
        let mut pending_erasure = false;
        for attempt in 0..SNAPSHOT_ATTEMPTS {
            if attempt > 0 {
                std::thread::sleep(std::time::Duration::from_millis(10 * u64::from(attempt)));
            }
            let Some(manifest) = Manifest::load(dir)? else {
                continue;
            };
            let mut segments = HashMap::new();
            let mut vanished = false;
            // Placement runs are pinned like segments: a merge of runs deletes the old ones.
            let files = manifest
                .segments
                .iter()
                .map(|s| &s.file)
                .chain(manifest.placement_runs.iter().map(|r| &r.file));
            for file in files {
                match segment::SegmentFile::open(&dir.join(file)) {
                    Ok(f) => {
                        segments.insert(file.clone(), f);
                    }
                    Err(e) if is_not_found(&e) => {
                        vanished = true;
                        break;
                    }
                    Err(e) => return Err(e),
                }
            }
            if vanished {
                continue;
            }
            let scan = match scan_logs(&dir.join(LOG_DIR), &manifest) {
                Ok(scan) => scan,
                // A compaction deleted a log file it had moved into segments.
                Err(e) if is_not_found(&e) => continue,
                Err(e) => return Err(e),
            };
            // Compaction and erase delete or rewrite files only after swapping the
            // manifest, so an unchanged manifest means every file read belongs to it.
            if Manifest::load(dir)?.map(|m| m.version) != Some(manifest.version) {
                continue;
            }
            pending_erasure = meta.has_pending_erasures()?;
            if pending_erasure {
                continue;
            }
            let pinned = Pinned {
                seq_end: scan.next_seq,
                segments,
            };
            let report = OpenReport {
                replayed: scan.replayed,
                ..OpenReport::default()
            };
            return Ok(Store::assemble(
                dir,
                opts,
                meta,
                manifest,
                scan,
                Access::Reader(pinned),
                report,
            ));
        }
        if pending_erasure {
            return Err(StoreError::NeedsWriter(format!(
                "an erasure in data dir {} is not finished",
                dir.display()
            )));
        }
        Err(StoreError::Busy(dir.to_path_buf()))
    }

    fn assemble(
        dir: &Path,
        opts: StoreOptions,
        meta: Meta,
        manifest: Manifest,
        scan: LogScan,
        access: Access,
        report: OpenReport,
    ) -> Store {
        Store {
            dir: dir.to_path_buf(),
            opts,
            meta: Mutex::new(meta),
            ingest: Mutex::new(IngestState {
                indexes: None,
                next_seq: scan.next_seq,
                next_customer: scan.next_customer,
            }),
            access,
            tail: RwLock::new(scan.tail),
            manifest: RwLock::new(Arc::new(manifest)),
            compaction: Mutex::new(()),
            cache: Mutex::new(HashMap::new()),
            segment_indexes: Mutex::new(HashMap::new()),
            partition_loads: AtomicU64::new(0),
            key_rows: AtomicU64::new(0),
            identity_snapshot_io: Mutex::new(()),
            report,
            placer: RwLock::new(None),
            placements: Mutex::new(None),
            rebuilt_placements: Mutex::new(BTreeSet::new()),
        }
    }

    /// Sets where compactions place keys filed for the first time: under their canonical
    /// customer, so that reading a partition needs no regroup. Without a placer each key is
    /// placed under itself.
    pub fn set_placer(&self, placer: Arc<Placer>) {
        *self.placer.write().unwrap_or_else(|p| p.into_inner()) = Some(placer);
    }

    /// Every project's placement as of `manifest`, read from its runs on first need.
    fn placements(&self, manifest: &Manifest) -> Result<Placements, StoreError> {
        let stamp = placement_stamp(manifest);
        if let Some((s, p)) = lock(&self.placements).as_ref() {
            if *s == stamp {
                return Ok(p.clone());
            }
        }
        let projects: BTreeSet<ProjectId> =
            manifest.placement_runs.iter().map(|r| r.project).collect();
        let mut out = HashMap::new();
        for project in projects {
            let p = match self.read_placement_runs(manifest, project) {
                Ok(p) => p,
                // The segments are the durable record of where rows are filed.
                Err(e @ (StoreError::Corrupt { .. } | StoreError::Io { .. })) => {
                    tracing::warn!(
                        "placement runs of project {} are unusable ({e}); rebuilding them from the segments",
                        project.0
                    );
                    let p = self.placement_from_segments(manifest, project)?;
                    lock(&self.rebuilt_placements).insert(project);
                    p
                }
                Err(e) => return Err(e),
            };
            out.insert(project, Arc::new(p));
        }
        let out = Arc::new(out);
        *lock(&self.placements) = Some((stamp, out.clone()));
        Ok(out)
    }

    fn read_placement_runs(
        &self,
        manifest: &Manifest,
        project: ProjectId,
    ) -> Result<Placement, StoreError> {
        let mut runs = Vec::new();
        for run in manifest
            .placement_runs
            .iter()
            .filter(|r| r.project == project)
        {
            let file = self.segment_file(&run.file)?;
            runs.push(placement::read_run(file.path(), &file.read_all()?)?);
        }
        let mut p = placement::assemble(0, runs).map_err(|reason| StoreError::Corrupt {
            path: self.dir.join(INDEX_DIR),
            reason: format!("placement runs of project {}: {reason}", project.0),
        })?;
        p.place_up_to(manifest.placed_end());
        Ok(p)
    }

    /// A project's placement read back from its segments' customer and key columns.
    fn placement_from_segments(
        &self,
        manifest: &Manifest,
        project: ProjectId,
    ) -> Result<Placement, StoreError> {
        let mut pairs: Vec<(u64, u64)> = Vec::new();
        for s in manifest.segments.iter().filter(|s| s.project == project) {
            let file = self.segment_file(&s.file)?;
            segment::read_columns_of(&file, &[segment::COL_CUSTOMER, segment::COL_KEY], |b| {
                let filed =
                    arrow_array::cast::AsArray::as_primitive::<arrow_array::types::UInt64Type>(
                        segment::column(b, segment::COL_CUSTOMER, file.path())?,
                    );
                let keys = segment::keys(b, file.path())?;
                pairs.extend(
                    keys.iter()
                        .zip(filed.values())
                        .filter(|(k, c)| k != c)
                        .map(|(&k, &c)| (k, c)),
                );
                Ok(())
            })?;
            pairs.sort_unstable();
            pairs.dedup();
        }
        if let Some(w) = pairs.windows(2).find(|w| w[0].0 == w[1].0) {
            return Err(StoreError::Corrupt {
                path: self.dir.join(SEGMENT_DIR),
                reason: format!(
                    "key {} of project {} is filed under customers {} and {}",
                    w[0].0, project.0, w[0].1, w[1].1
                ),
            });
        }
        Ok(Placement::unmoved(0).extended(manifest.placed_end(), &pairs))
    }

    /// One project's placement as of `manifest`.
    pub(crate) fn placement(
        &self,
        manifest: &Manifest,
        project: ProjectId,
    ) -> Result<Arc<Placement>, StoreError> {
        Ok(self
            .placements(manifest)?
            .get(&project)
            .cloned()
            .unwrap_or_else(|| Arc::new(Placement::unmoved(manifest.placed_end()))))
    }

    /// How to read `project`'s journeys under `overlay` (write-time key → canonical
    /// customer, for keys of another customer) with [`Store::scan_resolved`]: `None` when so
    /// many placed keys changed customer since they were placed that reading them by key
    /// and regrouping ([`Store::scan`]) costs less.
    pub fn resolution(
        &self,
        project: ProjectId,
        overlay: Arc<HashMap<CustomerId, CustomerId>>,
    ) -> Result<Option<Resolution>, StoreError> {
        let manifest = self.manifest();
        let placement = self.placement(&manifest, project)?;
        Ok(Resolution::new(
            project,
            manifest.partitions,
            &placement,
            overlay,
            RESOLVE_AT_READ_LIMIT,
        )
        .map(|r| r.stamped(placement_stamp(&manifest))))
    }

    /// Whether this store is a reader's snapshot ([`Store::open_read_only`]).
    pub fn is_read_only(&self) -> bool {
        matches!(self.access, Access::Reader(_))
    }

    /// The log's group commit; a reader has none.
    fn commit(&self) -> Result<&GroupCommit, StoreError> {
        match &self.access {
            Access::Writer { commit, .. } => Ok(commit),
            Access::Reader(_) => Err(StoreError::ReadOnly(self.dir.clone())),
        }
    }

    /// The end of the log records that reads may show: the durable ones of a writer, every
    /// one a reader's snapshot read.
    fn durable_seq_end(&self) -> u64 {
        match &self.access {
            Access::Writer { commit, .. } => commit.durable_seq_end(),
            Access::Reader(pinned) => pinned.seq_end,
        }
    }

    /// A segment of the manifest, open for reading.
    fn segment_file(&self, rel: &str) -> Result<segment::SegmentFile, StoreError> {
        match &self.access {
            Access::Writer { .. } => segment::SegmentFile::open(&self.dir.join(rel)),
            Access::Reader(pinned) => {
                pinned
                    .segments
                    .get(rel)
                    .cloned()
                    .ok_or_else(|| StoreError::Corrupt {
                        path: self.dir.join(rel),
                        reason: "not a segment of the manifest this reader opened".into(),
                    })
            }
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn open_report(&self) -> &OpenReport {
        &self.report
    }

    pub fn manifest(&self) -> Arc<Manifest> {
        self.manifest
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn partitions(&self) -> u32 {
        self.manifest().partitions
    }

    /// The metadata database; keep the guard short.
    pub fn meta(&self) -> std::sync::MutexGuard<'_, Meta> {
        lock(&self.meta)
    }

    fn load_indexes(&self, tail: &Tail) -> Result<Indexes, StoreError> {
        let mut idx = Indexes {
            dedup: DedupSet::default(),
            keys: CustomerKeys::default(),
        };
        for run in &self.manifest().index_runs {
            index::read_run(&self.dir.join(run), &mut idx.dedup, &mut idx.keys)?;
        }
        for r in tail.records() {
            if let Some(id) = &r.event.event_id {
                idx.dedup.insert(index::dedup_key(r.project, id));
            }
            if let Some(i) = (self.opts.primary)(&r.event.identifiers) {
                idx.keys
                    .entry(index::identifier_key(r.project, &r.event.identifiers[i]))
                    .or_insert(r.customer);
            }
        }
        Ok(idx)
    }

    /// Stores validated events durably. Returns only after they are fsynced; an error
    /// means none of them may be assumed stored (a retry is safe with event ids).
    pub fn ingest(
        &self,
        project: ProjectId,
        events: Vec<Event>,
    ) -> Result<IngestOutcome, StoreError> {
        let primaries: Vec<usize> = events
            .iter()
            .map(|e| (self.opts.primary)(&e.identifiers))
            .collect::<Option<_>>()
            .ok_or(StoreError::NoIdentifier)?;
        self.ingest_keyed(project, events, primaries)
    }

    /// [`Store::ingest`] for a caller that has already applied the primary rule:
    /// `primaries[i]` must be what the rule gives for `events[i]`.
    pub fn ingest_keyed(
        &self,
        project: ProjectId,
        events: Vec<Event>,
        primaries: Vec<usize>,
    ) -> Result<IngestOutcome, StoreError> {
        let commit = self.commit()?;
        commit.check_poisoned()?;
        if primaries.len() != events.len()
            || events
                .iter()
                .zip(&primaries)
                .any(|(e, &p)| p >= e.identifiers.len())
        {
            return Err(StoreError::NoIdentifier);
        }
        let mut outcome = IngestOutcome {
            customers: Vec::with_capacity(events.len()),
            ..IngestOutcome::default()
        };
        let ticket = 'locked: {
            let mut st = lock(&self.ingest);
            if st.indexes.is_none() {
                let tail = self.tail.read().unwrap_or_else(|p| p.into_inner());
                st.indexes = Some(self.load_indexes(&tail)?);
            }
            let st = &mut *st;
            let idx = st.indexes.as_mut().expect("loaded above");
            let mut records = Vec::with_capacity(events.len());
            for (event, primary) in events.into_iter().zip(primaries) {
                if let Some(id) = &event.event_id {
                    if !idx.dedup.insert(index::dedup_key(project, id)) {
                        outcome.duplicates += 1;
                        outcome.customers.push(None);
                        continue;
                    }
                }
                // Each primary identifier has its own write-time key; identity resolution
                // joins keys into customers later, without rewriting events.
                let key = index::identifier_key(project, &event.identifiers[primary]);
                let customer = *idx.keys.entry(key).or_insert_with(|| {
                    st.next_customer += 1;
                    CustomerId(st.next_customer - 1)
                });
                records.push(LogRecord {
                    seq: st.next_seq,
                    project,
                    customer,
                    event,
                });
                st.next_seq += 1;
                outcome.customers.push(Some(customer));
            }
            if records.is_empty() {
                // Every event is a duplicate, but its first copy may still be on its way
                // to disk in another caller's batch: wait for everything queued so far, so
                // that "duplicate" never acknowledges an event that is not durable yet.
                break 'locked commit.issued();
            }
            outcome.stored = records.len() as u64;
            let max_seq = records.last().map(|r| r.seq).unwrap_or(0);
            let frames = match encode_frames(&records) {
                Ok(f) => f,
                Err(e) => {
                    // The indexes already count this batch; only a restart makes them true.
                    commit.poison(&e);
                    return Err(e);
                }
            };
            // Queued records go to the tail at once but scans only show them once durable.
            self.tail
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .append(records);
            commit.enqueue(frames, max_seq)?
        };
        commit.wait_durable(ticket)?;
        let waiting = self.tail.read().unwrap_or_else(|p| p.into_inner()).len();
        if waiting >= self.opts.auto_compact_events {
            self.compact()?;
        }
        Ok(outcome)
    }

    /// How many events a project holds, from the manifest's row counts and the log tail:
    /// no segment is read.
    pub fn event_count(&self, project: ProjectId) -> u64 {
        let tail = self.tail.read().unwrap_or_else(|p| p.into_inner());
        let durable = self.durable_seq_end();
        let logged = tail
            .records()
            .filter(|r| r.project == project && r.seq < durable)
            .count() as u64;
        let compacted: u64 = self
            .manifest()
            .segments
            .iter()
            .filter(|s| s.project == project)
            .map(|s| s.rows)
            .sum();
        compacted + logged
    }

    /// A project's events counted by partition, channel and activity, with their time
    /// range: from the manifest's per-segment counts and the durable log tail, read under
    /// one lock as scans are. Reads no segment, except those of a manifest written before
    /// segments carried counts (their channel and activity columns only).
    pub fn event_summary(&self, project: ProjectId) -> Result<EventSummary, StoreError> {
        let mut summary = EventSummary::default();
        let extend_range = |summary: &mut EventSummary, lo: i64, hi: i64| {
            summary.min_ts = Some(summary.min_ts.map_or(lo, |m| m.min(lo)));
            summary.max_ts = Some(summary.max_ts.map_or(hi, |m| m.max(hi)));
        };
        let manifest = {
            let tail = self.tail.read().unwrap_or_else(|p| p.into_inner());
            let manifest = self.manifest();
            let durable = self.durable_seq_end();
            let mut by_partition: BTreeMap<u32, Vec<&LogRecord>> = BTreeMap::new();
            for r in tail
                .records()
                .filter(|r| r.project == project && r.seq < durable)
            {
                by_partition
                    .entry(partition_of(r.project, r.customer, manifest.partitions))
                    .or_default()
                    .push(r);
            }
            for (partition, records) in by_partition {
                summary.events += records.len() as u64;
                for r in &records {
                    let t = r.event.timestamp.as_micros();
                    extend_range(&mut summary, t, t);
                }
                summary
                    .partitions
                    .entry(partition)
                    .or_default()
                    .add(&counts_of(records.into_iter()));
            }
            manifest
        };
        let uncounted: Vec<&SegmentMeta> = manifest
            .segments
            .iter()
            .filter(|s| s.project == project && s.counts.is_none())
            .collect();
        let read: Vec<SegmentCounts> = uncounted
            .par_iter()
            .map(|s| segment::count_segment(&self.segment_file(&s.file)?))
            .collect::<Result<_, StoreError>>()?;
        let mut read = read.into_iter();
        for s in manifest.segments.iter().filter(|s| s.project == project) {
            if s.rows == 0 {
                continue;
            }
            summary.events += s.rows;
            extend_range(&mut summary, s.min_ts, s.max_ts);
            let counts = match &s.counts {
                Some(c) => c.clone(),
                None => read.next().expect("one count per uncounted segment"),
            };
            summary
                .partitions
                .entry(s.partition)
                .or_default()
                .add(&counts);
        }
        Ok(summary)
    }

    /// Events waiting in the log, not yet compacted.
    pub fn uncompacted_events(&self) -> usize {
        self.tail.read().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Moves every logged event into Parquet segments, then merges partitions that have
    /// too many segments. Safe to call at any time; concurrent ingest continues.
    ///
    /// A failed compaction poisons the store: the files on disk may no longer match the
    /// manifest in memory, and only reopening (which trusts the disk) makes them agree.
    pub fn compact(&self) -> Result<CompactionReport, StoreError> {
        let commit = self.commit()?;
        let _only_one = lock(&self.compaction);
        commit.check_poisoned()?;
        self.compact_locked().inspect_err(|e| commit.poison(e))
    }

    fn compact_locked(&self) -> Result<CompactionReport, StoreError> {
        let started = std::time::Instant::now();
        let mut report = CompactionReport::default();
        let d = self.opts.durability.clone();
        // Seal: no new records enter while the active log is swapped for a new file.
        let (seq_end, next_customer, sealed) = {
            let st = lock(&self.ingest);
            let mut tail = self.tail.write().unwrap_or_else(|p| p.into_inner());
            if !tail.active.is_empty() {
                let old = self
                    .commit()?
                    .rotate(&self.dir.join(LOG_DIR), st.next_seq)?;
                tail.seal(old);
            }
            if tail.sealed.is_empty() {
                return Ok(report);
            }
            let sealed = tail.sealed.clone();
            (st.next_seq, st.next_customer, sealed)
        };

        let all: Vec<&LogRecord> = sealed.iter().flat_map(|s| s.records.iter()).collect();
        let dedup: Vec<u128> = all
            .par_iter()
            .filter_map(|r| Some(index::dedup_key(r.project, r.event.event_id.as_deref()?)))
            .collect();
        let primary = &self.opts.primary;
        let mut keys: Vec<(u128, CustomerId)> = all
            .par_iter()
            .filter_map(|r| {
                let i = primary(&r.event.identifiers)?;
                Some((
                    index::identifier_key(r.project, &r.event.identifiers[i]),
                    r.customer,
                ))
            })
            .collect();
        // First seen wins, as in ingest: a stable sort keeps log order among equal keys.
        keys.par_sort_by_key(|(k, _)| *k);
        keys.dedup_by_key(|(k, _)| *k);
        let manifest = self.manifest();
        let placed = self.place(&manifest, &all, next_customer)?;
        let mut groups: BTreeMap<(ProjectId, u32), Vec<(u64, &LogRecord)>> = BTreeMap::new();
        for r in all {
            let filed = placed.placements[&r.project].filed(r.customer.0);
            let p = partition_of(r.project, CustomerId(filed), manifest.partitions);
            groups.entry((r.project, p)).or_default().push((filed, r));
        }
        let mut next_file_id = manifest.next_file_id;
        type Job<'a> = ((ProjectId, u32), Vec<(u64, &'a LogRecord)>, u64);
        let jobs: Vec<Job> = groups
            .into_iter()
            .map(|(k, v)| {
                next_file_id += 1;
                (k, v, next_file_id - 1)
            })
            .collect();
        let written: Vec<SegmentMeta> = jobs
            .into_par_iter()
            .map(|((project, partition), mut records, file_id)| {
                records.sort_by_key(|&(filed, r)| (filed, r.event.timestamp, r.customer, r.seq));
                self.write_new_segment(project, partition, file_id, &records, d.as_ref())
            })
            .collect::<Result<_, _>>()?;
        report.events = written.iter().map(|s| s.rows).sum();
        report.segments_written = written.len() as u64;
        let run = format!("{INDEX_DIR}/{next_file_id:012}.idx");
        next_file_id += 1;
        index::write_run(&self.dir.join(&run), &dedup, &keys, d.as_ref())?;
        let (placement_runs, replaced_runs) =
            self.write_placement_runs(&manifest, &placed, next_customer, &mut next_file_id)?;
        sync_dir(d.as_ref(), &self.dir.join(SEGMENT_DIR))?;
        sync_dir(d.as_ref(), &self.dir.join(INDEX_DIR))?;

        let mut next = (*manifest).clone();
        next.version += 1;
        next.segments.extend(written);
        next.index_runs.push(run);
        next.compacted_seq_end = seq_end;
        next.next_customer = next_customer;
        next.next_file_id = next_file_id;
        next.placed_end = Some(next_customer);
        next.placement_runs = placement_runs;
        next.save(&self.dir, d.as_ref())?;
        *lock(&self.placements) = Some((placement_stamp(&next), Arc::new(placed.placements)));
        let written_at = started.elapsed();
        let done: Vec<PathBuf> = sealed.iter().map(|s| s.path.clone()).collect();
        let compacted = {
            let mut tail = self.tail.write().unwrap_or_else(|p| p.into_inner());
            *self.manifest.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(next);
            let (compacted, kept): (Vec<Sealed>, Vec<Sealed>) = std::mem::take(&mut tail.sealed)
                .into_iter()
                .partition(|s| done.contains(&s.path));
            tail.sealed = kept;
            self.forget_dropped_segments();
            compacted
        };
        for p in &done {
            std::fs::remove_file(p).map_err(|e| StoreError::io(p, e))?;
        }
        for p in &replaced_runs {
            // A damaged run that was rebuilt may be gone already.
            match std::fs::remove_file(p) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(StoreError::io(p, e))
                }
                _ => {}
            }
        }
        sync_dir(d.as_ref(), &self.dir.join(LOG_DIR))?;
        // Millions of records free tens of millions of small allocations, which takes about
        // as long as writing them did; a thread of its own does it while work goes on.
        drop(sealed);
        std::thread::spawn(move || drop(compacted));
        let freed_at = started.elapsed();
        report.segments_merged = self.merge_crowded_partitions()?;
        tracing::debug!(
            "compacted {} events into {} segments: written {written_at:?}, swapped {:?}, merged {} segments {:?}",
            report.events,
            report.segments_written,
            freed_at - written_at,
            report.segments_merged,
            started.elapsed() - freed_at
        );
        Ok(report)
    }

    /// Each sealed record's placement: the keys placed before keep theirs, and keys filed
    /// for the first time are placed under the customer the placer gives them.
    fn place(
        &self,
        manifest: &Manifest,
        records: &[&LogRecord],
        next_customer: u64,
    ) -> Result<Placed, StoreError> {
        let before = self.placements(manifest)?;
        let placed_end = manifest.placed_end();
        let mut new_keys: BTreeMap<ProjectId, BTreeSet<CustomerId>> = BTreeMap::new();
        for r in records {
            let keys = new_keys.entry(r.project).or_default();
            if r.customer.0 >= placed_end {
                keys.insert(r.customer);
            }
        }
        let placer = self
            .placer
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let mut placements: HashMap<ProjectId, Arc<Placement>> = (*before).clone();
        let mut moved = BTreeMap::new();
        for (project, keys) in new_keys {
            let keys: Vec<CustomerId> = keys.into_iter().collect();
            let canonical = match &placer {
                Some(placer) => placer(project, &keys),
                None => keys.clone(),
            };
            if canonical.len() != keys.len() {
                return Err(StoreError::Encode(format!(
                    "the placer gave {} customers for {} keys",
                    canonical.len(),
                    keys.len()
                )));
            }
            let pairs: Vec<(u64, u64)> = keys
                .iter()
                .zip(&canonical)
                .filter(|(k, c)| k != c)
                .map(|(k, c)| (k.0, c.0))
                .collect();
            let old = placements
                .get(&project)
                .cloned()
                .unwrap_or_else(|| Arc::new(Placement::unmoved(placed_end)));
            placements.insert(project, Arc::new(old.extended(next_customer, &pairs)));
            moved.insert(project, pairs);
        }
        // Projects without new keys still count the keys up to `next_customer` as placed.
        for p in placements.values_mut() {
            if p.placed_end() < next_customer {
                Arc::make_mut(p).place_up_to(next_customer);
            }
        }
        Ok(Placed { placements, moved })
    }

    /// Files the rows of every key whose customer changed since it was placed (under
    /// `overlay`, as for [`Store::resolution`]) under its customer now: the segments holding
    /// them are rewritten, rows that now belong to another partition go to new segments
    /// there, and the project's placement is written whole. Afterwards reads move nothing
    /// until the next merge or unmerge. Returns how many keys were re-placed.
    pub fn re_place(
        &self,
        project: ProjectId,
        overlay: Arc<HashMap<CustomerId, CustomerId>>,
    ) -> Result<u64, StoreError> {
        let commit = self.commit()?;
        let _only_one = lock(&self.compaction);
        commit.check_poisoned()?;
        self.re_place_locked(project, overlay)
            .inspect_err(|e| commit.poison(e))
    }

    fn re_place_locked(
        &self,
        project: ProjectId,
        overlay: Arc<HashMap<CustomerId, CustomerId>>,
    ) -> Result<u64, StoreError> {
        let d = self.opts.durability.clone();
        let manifest = self.manifest();
        let placement = self.placement(&manifest, project)?;
        let resolution = Resolution::new(
            project,
            manifest.partitions,
            &placement,
            overlay,
            usize::MAX,
        )
        .expect("no limit");
        if resolution.moved.is_empty() {
            return Ok(0);
        }
        let mut affected: Vec<u64> = resolution.affected.iter().copied().collect();
        affected.sort_unstable();
        let filed = |key: u64| {
            resolution
                .moved
                .get(&key)
                .copied()
                .unwrap_or_else(|| placement.filed(key))
        };
        let mut next = (*manifest).clone();
        let mut old_files = Vec::new();
        let mut leaving: BTreeMap<u32, Vec<(u64, LogRecord)>> = BTreeMap::new();
        // Segment by segment, so memory follows one segment, not the store.
        let candidates: Vec<SegmentMeta> = manifest
            .segments
            .iter()
            .filter(|s| s.project == project)
            .cloned()
            .collect();
        for s in candidates {
            if !self.segment_index(&s.file)?.admits(&affected) {
                continue;
            }
            let records = segment::read_records_of(&self.segment_file(&s.file)?, project)?;
            if !records
                .iter()
                .any(|r| resolution.moved.contains_key(&r.customer.0))
            {
                continue;
            }
            let mut staying: Vec<(u64, &LogRecord)> = Vec::new();
            for r in &records {
                let to = filed(r.customer.0);
                if partition_of(project, CustomerId(to), manifest.partitions) == s.partition {
                    staying.push((to, r));
                } else {
                    leaving
                        .entry(partition_of(project, CustomerId(to), manifest.partitions))
                        .or_default()
                        .push((to, r.clone()));
                }
            }
            if !staying.is_empty() {
                staying.sort_by_key(|&(c, r)| (c, r.event.timestamp, r.customer, r.seq));
                let file_id = next.next_file_id;
                next.next_file_id += 1;
                let meta =
                    self.write_new_segment(project, s.partition, file_id, &staying, d.as_ref())?;
                next.segments.push(meta);
            }
            next.segments.retain(|m| m.file != s.file);
            old_files.push(self.dir.join(&s.file));
        }
        for (partition, mut rows) in leaving {
            rows.sort_by_key(|(c, r)| (*c, r.event.timestamp, r.customer, r.seq));
            let refs: Vec<(u64, &LogRecord)> = rows.iter().map(|(c, r)| (*c, r)).collect();
            let file_id = next.next_file_id;
            next.next_file_id += 1;
            let meta = self.write_new_segment(project, partition, file_id, &refs, d.as_ref())?;
            next.segments.push(meta);
        }
        // The project's placement whole: moved keys under their customers now.
        let mut pairs: Vec<(u64, u64)> = placement
            .moved()
            .iter()
            .filter(|(k, _)| !resolution.moved.contains_key(k))
            .copied()
            .chain(
                resolution
                    .moved
                    .iter()
                    .filter(|(k, c)| k != c)
                    .map(|(&k, &c)| (k, c)),
            )
            .collect();
        pairs.sort_unstable();
        let run = format!("{INDEX_DIR}/{:012}.place", next.next_file_id);
        next.next_file_id += 1;
        placement::write_run(
            &self.dir.join(&run),
            0,
            manifest.placed_end(),
            &pairs,
            d.as_ref(),
        )?;
        let replaced: Vec<PathBuf> = next
            .placement_runs
            .iter()
            .filter(|r| r.project == project)
            .map(|r| self.dir.join(&r.file))
            .collect();
        next.placement_runs.retain(|r| r.project != project);
        next.placement_runs
            .push(PlacementRun { project, file: run });
        sync_dir(d.as_ref(), &self.dir.join(SEGMENT_DIR))?;
        sync_dir(d.as_ref(), &self.dir.join(INDEX_DIR))?;
        next.version += 1;
        next.save(&self.dir, d.as_ref())?;
        let mut placements: HashMap<ProjectId, Arc<Placement>> =
            (*self.placements(&manifest)?).clone();
        placements.insert(
            project,
            Arc::new(Placement::unmoved(0).extended(manifest.placed_end(), &pairs)),
        );
        {
            let _tail = self.tail.write().unwrap_or_else(|p| p.into_inner());
            *self.manifest.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(next);
            *lock(&self.placements) =
                Some((placement_stamp(&self.manifest()), Arc::new(placements)));
        }
        lock(&self.cache).clear();
        self.forget_dropped_segments();
        for p in old_files.iter().chain(&replaced) {
            std::fs::remove_file(p).map_err(|e| StoreError::io(p, e))?;
        }
        sync_dir(d.as_ref(), &self.dir.join(INDEX_DIR))?;
        self.merge_crowded_partitions()?;
        Ok(resolution.moved.len() as u64)
    }

    /// The manifest's placement runs after a compaction: a run of each project's newly
    /// moved keys, and a project with too many runs gets them merged into one. Returns the
    /// runs and the files they replace (deleted once the manifest names the new ones).
    fn write_placement_runs(
        &self,
        manifest: &Manifest,
        placed: &Placed,
        next_customer: u64,
        next_file_id: &mut u64,
    ) -> Result<(Vec<PlacementRun>, Vec<PathBuf>), StoreError> {
        let d = self.opts.durability.clone();
        let mut runs = manifest.placement_runs.clone();
        let mut replaced = Vec::new();
        let from = manifest.placed_end();
        let rebuilt = std::mem::take(&mut *lock(&self.rebuilt_placements));
        let mut projects: Vec<(&ProjectId, &Arc<Placement>)> = placed.placements.iter().collect();
        projects.sort_by_key(|(p, _)| **p);
        for (&project, all) in projects {
            let pairs = placed.moved.get(&project).map_or(&[][..], Vec::as_slice);
            if !pairs.is_empty() {
                let file = format!("{INDEX_DIR}/{:012}.place", *next_file_id);
                *next_file_id += 1;
                placement::write_run(
                    &self.dir.join(&file),
                    from,
                    next_customer,
                    pairs,
                    d.as_ref(),
                )?;
                runs.push(PlacementRun { project, file });
            }
            let own: Vec<&PlacementRun> = runs.iter().filter(|r| r.project == project).collect();
            if own.len() > MAX_PLACEMENT_RUNS || rebuilt.contains(&project) {
                let file = format!("{INDEX_DIR}/{:012}.place", *next_file_id);
                *next_file_id += 1;
                placement::write_run(
                    &self.dir.join(&file),
                    0,
                    next_customer,
                    all.moved(),
                    d.as_ref(),
                )?;
                replaced.extend(own.iter().map(|r| self.dir.join(&r.file)));
                runs.retain(|r| r.project != project);
                runs.push(PlacementRun { project, file });
            }
        }
        Ok((runs, replaced))
    }

    fn write_new_segment(
        &self,
        project: ProjectId,
        partition: u32,
        file_id: u64,
        records: &[(u64, &LogRecord)],
        d: &dyn Durability,
    ) -> Result<SegmentMeta, StoreError> {
        let rel = self.segment_path(project, partition, file_id)?;
        let path = self.dir.join(&rel);
        let parent = path.parent().expect("segment paths have a parent");
        let bytes = segment::write_segment(&path, records, d)?;
        sync_dir(d, parent)?;
        Ok(SegmentMeta {
            file: rel,
            project,
            partition,
            rows: records.len() as u64,
            min_ts: records
                .iter()
                .map(|(_, r)| r.event.timestamp.as_micros())
                .min()
                .unwrap_or(0),
            max_ts: records
                .iter()
                .map(|(_, r)| r.event.timestamp.as_micros())
                .max()
                .unwrap_or(0),
            bytes,
            traits: trait_names(records.iter().map(|(_, r)| &r.event)),
            counts: Some(counts_of(records.iter().map(|&(_, r)| r))),
        })
    }

    /// The relative path of a new segment file; creates its folder.
    fn segment_path(
        &self,
        project: ProjectId,
        partition: u32,
        file_id: u64,
    ) -> Result<String, StoreError> {
        let rel = format!(
            "{SEGMENT_DIR}/{}/p{partition:03}/{file_id:012}.parquet",
            project.0
        );
        let parent = self.dir.join(&rel);
        let parent = parent.parent().expect("segment paths have a parent");
        std::fs::create_dir_all(parent).map_err(|e| StoreError::io(parent, e))?;
        Ok(rel)
    }

    /// Rewrites the segments of partitions that have too many into one each.
    fn merge_crowded_partitions(&self) -> Result<u64, StoreError> {
        let d = self.opts.durability.clone();
        let manifest = self.manifest();
        let mut by_partition: BTreeMap<(ProjectId, u32), Vec<&SegmentMeta>> = BTreeMap::new();
        for s in &manifest.segments {
            by_partition
                .entry((s.project, s.partition))
                .or_default()
                .push(s);
        }
        // Size-tiered: merge the smallest segments down to half the limit, so a large
        // merged segment is not rewritten on every merge.
        let keep = (self.opts.max_segments_per_partition / 2).max(1);
        let crowded: Vec<_> = by_partition
            .into_iter()
            .filter(|(_, v)| v.len() > self.opts.max_segments_per_partition)
            .map(|(k, mut v)| {
                v.sort_by_key(|s| (s.rows, s.file.clone()));
                let n = v.len() - keep + 1;
                v.truncate(n);
                (k, v)
            })
            .collect();
        if crowded.is_empty() {
            return Ok(0);
        }
        let mut next = (*manifest).clone();
        let jobs: Vec<_> = crowded
            .into_iter()
            .map(|(key, old)| {
                next.next_file_id += 1;
                (key, old, next.next_file_id - 1)
            })
            .collect();
        let results: Vec<(Vec<String>, SegmentMeta)> = jobs
            .into_par_iter()
            .map(|((project, partition), old, file_id)| {
                let rel = self.segment_path(project, partition, file_id)?;
                let inputs: Vec<PathBuf> = old.iter().map(|s| self.dir.join(&s.file)).collect();
                let out = self.dir.join(&rel);
                let m = segment::merge_segments(&inputs, &out, d.as_ref())?;
                sync_dir(
                    d.as_ref(),
                    out.parent().expect("segment paths have a parent"),
                )?;
                let meta = SegmentMeta {
                    file: rel,
                    project,
                    partition,
                    rows: m.rows,
                    min_ts: m.min_ts,
                    max_ts: m.max_ts,
                    bytes: m.bytes,
                    counts: Some(m.counts),
                    traits: old
                        .iter()
                        .flat_map(|s| s.traits.iter().cloned())
                        .collect::<BTreeSet<_>>()
                        .into_iter()
                        .collect(),
                };
                Ok((old.iter().map(|s| s.file.clone()).collect(), meta))
            })
            .collect::<Result<_, StoreError>>()?;
        let mut merged = 0;
        for (old_files, meta) in results {
            next.segments.retain(|s| !old_files.contains(&s.file));
            next.segments.push(meta);
            merged += old_files.len() as u64;
        }
        next.version += 1;
        next.save(&self.dir, d.as_ref())?;
        let old = std::mem::replace(
            &mut *self.manifest.write().unwrap_or_else(|p| p.into_inner()),
            Arc::new(next),
        );
        self.forget_dropped_segments();
        let current = self.manifest();
        for s in &old.segments {
            if !current.segments.iter().any(|c| c.file == s.file) {
                let p = self.dir.join(&s.file);
                std::fs::remove_file(&p).map_err(|e| StoreError::io(&p, e))?;
            }
        }
        Ok(merged)
    }

    /// The columnar journeys of one partition: compacted segments and durable log records.
    /// Cached until the data changes.
    pub fn journeys(
        &self,
        project: ProjectId,
        partition: u32,
        spec: &ScanSpec,
    ) -> Result<Arc<Journeys>, StoreError> {
        self.scan_retrying(project, partition, spec, true)
    }

    /// Like [`Store::journeys`], but neither reads nor fills the cache: for callers that
    /// keep a derived form and would otherwise hold the data twice. Returns the
    /// [`Store::data_version`] it was read at.
    pub fn scan(
        &self,
        project: ProjectId,
        partition: u32,
        spec: &ScanSpec,
    ) -> Result<Arc<Journeys>, StoreError> {
        self.scan_retrying(project, partition, spec, false)
    }

    /// Changes whenever what scans return may change: (manifest version, durable seq end).
    pub fn data_version(&self) -> (u64, u64) {
        let _tail = self.tail.read().unwrap_or_else(|p| p.into_inner());
        (self.manifest().version, self.durable_seq_end())
    }

    fn scan_retrying(
        &self,
        project: ProjectId,
        partition: u32,
        spec: &ScanSpec,
        cached: bool,
    ) -> Result<Arc<Journeys>, StoreError> {
        self.retrying_swaps(|| self.load_journeys(project, partition, spec, cached))
    }

    /// `read`, again (up to 3 times) when it failed while the manifest was swapped: a merge
    /// may delete a segment between reading the manifest and reading the file, and the
    /// newer manifest then names its replacement.
    fn retrying_swaps<T>(
        &self,
        mut read: impl FnMut() -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut attempts = 0;
        loop {
            let version = self.manifest().version;
            match read() {
                Err(e @ StoreError::PlacementChanged) => return Err(e),
                Err(e) if attempts < 3 && self.manifest().version != version => {
                    tracing::debug!("a read raced a compaction, reading again: {e}");
                    attempts += 1;
                }
                result => return result,
            }
        }
    }

    fn load_journeys(
        &self,
        project: ProjectId,
        partition: u32,
        spec: &ScanSpec,
        cached: bool,
    ) -> Result<Arc<Journeys>, StoreError> {
        let mut b = journeys::JourneysBuilder::new(project, partition, spec);
        // The manifest and the tail are read under one lock, so a compaction that moves
        // records from the tail into segments is seen either wholly or not at all.
        let (manifest, stamp) = {
            let tail = self.tail.read().unwrap_or_else(|p| p.into_inner());
            let manifest = self.manifest();
            let stamp = (manifest.version, self.durable_seq_end());
            if cached {
                if let Some((s, j)) = lock(&self.cache).get(&(project, partition, spec.clone())) {
                    if *s == stamp {
                        return Ok(j.clone());
                    }
                }
            }
            // A key's log records go where its segment rows are: the partition of its
            // placement (of the key itself while it has none).
            let placement = self.placement(&manifest, project)?;
            for r in tail.records() {
                if r.project == project && r.seq < stamp.1 {
                    let filed = placement.filed(r.customer.0);
                    if partition_of(r.project, CustomerId(filed), manifest.partitions) == partition
                    {
                        b.add_record(r, r.customer.0);
                    }
                }
            }
            (manifest, stamp)
        };
        for s in manifest.segments_of(project, partition) {
            b.add_segment(&self.segment_file(&s.file)?, journeys::Route::Key)?;
        }
        self.partition_loads.fetch_add(1, Ordering::Relaxed);
        let j = Arc::new(b.finish());
        if cached {
            lock(&self.cache).insert((project, partition, spec.clone()), (stamp, j.clone()));
        }
        Ok(j)
    }

    /// One partition's journeys as customers are now under `resolution`: its segments as
    /// they are filed, the rows of keys that moved here from other partitions (read by key),
    /// without the rows of keys that moved away, and its customers' log records. Nothing is
    /// cached. Fails with [`StoreError::PlacementChanged`] if a compaction placed keys
    /// since the resolution was made.
    pub fn scan_resolved(
        &self,
        partition: u32,
        spec: &ScanSpec,
        resolution: &Resolution,
    ) -> Result<Journeys, StoreError> {
        self.retrying_swaps(|| self.load_resolved(partition, spec, resolution))
    }

    fn load_resolved(
        &self,
        partition: u32,
        spec: &ScanSpec,
        resolution: &Resolution,
    ) -> Result<Journeys, StoreError> {
        let project = resolution.project;
        let mut b = journeys::JourneysBuilder::new(project, partition, spec);
        let manifest = {
            let tail = self.tail.read().unwrap_or_else(|p| p.into_inner());
            let manifest = self.manifest();
            if placement_stamp(&manifest) != resolution.stamp {
                return Err(StoreError::PlacementChanged);
            }
            let durable = self.durable_seq_end();
            for r in tail.records() {
                if r.project == project && r.seq < durable {
                    let customer = resolution.canonical(r.customer.0);
                    if resolution.partition_of(customer) == partition {
                        b.add_record(r, customer);
                    }
                }
            }
            manifest
        };
        let moved = (!resolution.moved.is_empty()).then_some(resolution);
        for s in manifest.segments_of(project, partition) {
            let route = journeys::Route::Placed {
                resolution: moved,
                own: true,
            };
            b.add_segment(&self.segment_file(&s.file)?, route)?;
        }
        for (&from, placements) in &resolution.immigrants[partition as usize] {
            let route = journeys::Route::Placed {
                resolution: moved,
                own: false,
            };
            for s in manifest.segments_of(project, from) {
                b.add_segment_keys(&self.segment_index(&s.file)?, placements, route)?;
            }
        }
        self.partition_loads.fetch_add(1, Ordering::Relaxed);
        Ok(b.finish())
    }

    /// The events of some write-time keys, without building whole partitions from the log
    /// tail: for reads of one customer while events stream in. Each key's segment rows
    /// are read from the pages of the customer it is filed under (its placement), found
    /// through each segment's page index, and its durable log records through the tail's
    /// per-key index. Properties are `properties`; traits are every trait the pieces'
    /// events carry.
    ///
    /// Pieces are in key order, and a key's segment piece before its log piece: every
    /// segment row of a key was stored before its rows still in the log, so concatenating a
    /// key's pieces keeps (time, sequence) order among equal times. Keys without events
    /// have no piece.
    pub fn key_journeys(
        &self,
        project: ProjectId,
        keys: &[CustomerId],
        properties: &[String],
    ) -> Result<Vec<KeyPiece>, StoreError> {
        self.retrying_swaps(|| self.load_key_journeys(project, keys, properties))
    }

    fn load_key_journeys(
        &self,
        project: ProjectId,
        keys: &[CustomerId],
        properties: &[String],
    ) -> Result<Vec<KeyPiece>, StoreError> {
        let mut keys = keys.to_vec();
        keys.sort_unstable();
        keys.dedup();
        // The manifest and the tail are read under one lock, so a compaction that moves
        // records from the tail into segments is seen either wholly or not at all.
        let (manifest, tail_records) = {
            let tail = self.tail.read().unwrap_or_else(|p| p.into_inner());
            let manifest = self.manifest();
            let durable = self.durable_seq_end();
            let mut records: Vec<LogRecord> = Vec::new();
            for (run, index) in tail.runs() {
                for &key in &keys {
                    let Some(positions) = index.by_key.get(&(project, key)) else {
                        continue;
                    };
                    records.extend(
                        positions
                            .iter()
                            .map(|&pos| &run[pos as usize])
                            .filter(|r| r.seq < durable)
                            .cloned(),
                    );
                }
            }
            (manifest, records)
        };
        let tails: Option<Arc<Journeys>> = (!tail_records.is_empty()).then(|| {
            let spec = ScanSpec {
                properties: properties.to_vec(),
                traits: trait_names(tail_records.iter().map(|r| &r.event)),
            };
            let mut b = journeys::JourneysBuilder::new(project, 0, &spec);
            for r in &tail_records {
                b.add_record(r, r.customer.0);
            }
            Arc::new(b.finish())
        });
        // A key's segment rows are in the pages of the customer it is filed under.
        let placement = self.placement(&manifest, project)?;
        let mut by_partition: BTreeMap<u32, Vec<u64>> = BTreeMap::new();
        for key in &keys {
            let filed = placement.filed(key.0);
            by_partition
                .entry(partition_of(
                    project,
                    CustomerId(filed),
                    manifest.partitions,
                ))
                .or_default()
                .push(filed);
        }
        let mut segments: Vec<Arc<Journeys>> = Vec::new();
        for (partition, mut filed) in by_partition {
            filed.sort_unstable();
            filed.dedup();
            segments.push(
                self.segment_key_journeys(project, partition, &filed, properties, &manifest)?,
            );
        }
        let mut pieces = Vec::new();
        for key in keys {
            for j in segments.iter().chain(&tails) {
                if let Ok(index) = j.customers.binary_search(&key) {
                    pieces.push(KeyPiece {
                        key,
                        journeys: j.clone(),
                        index,
                    });
                }
            }
        }
        Ok(pieces)
    }

    /// The segment rows filed under `filed` (sorted, all of `partition`) as of `manifest`,
    /// each under its write-time key, with every trait the partition's segments hold: only
    /// the pages whose customer statistics admit one of them are read, so the cost follows
    /// the customers' events, not the partition.
    fn segment_key_journeys(
        &self,
        project: ProjectId,
        partition: u32,
        filed: &[u64],
        properties: &[String],
        manifest: &Manifest,
    ) -> Result<Arc<Journeys>, StoreError> {
        let segments: Vec<&SegmentMeta> = manifest.segments_of(project, partition).collect();
        let spec = ScanSpec {
            properties: properties.to_vec(),
            traits: segments
                .iter()
                .flat_map(|s| s.traits.iter().cloned())
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect(),
        };
        let mut b = journeys::JourneysBuilder::new(project, partition, &spec);
        let mut decoded = 0;
        for s in segments {
            decoded +=
                b.add_segment_keys(&self.segment_index(&s.file)?, filed, journeys::Route::Key)?;
        }
        self.key_rows.fetch_add(decoded, Ordering::Relaxed);
        Ok(Arc::new(b.finish()))
    }

    /// A live segment's footer and page index, parsed on its first keyed read.
    fn segment_index(&self, rel: &str) -> Result<segment::SegmentIndex, StoreError> {
        if let Some(index) = lock(&self.segment_indexes).get(rel) {
            return Ok(index.clone());
        }
        // Parsed outside the lock: concurrent views of other segments do not wait.
        let index = segment::SegmentIndex::load(self.segment_file(rel)?)?;
        lock(&self.segment_indexes).insert(rel.to_string(), index.clone());
        Ok(index)
    }

    /// Drops the parsed indexes (and open handles) of segments the manifest no longer
    /// names; called after every manifest swap.
    fn forget_dropped_segments(&self) {
        let manifest = self.manifest();
        let live: BTreeSet<&str> = manifest.segments.iter().map(|s| s.file.as_str()).collect();
        lock(&self.segment_indexes).retain(|file, _| live.contains(file.as_str()));
    }

    /// How many partitions were built from disk since open.
    pub fn load_counts(&self) -> LoadCounts {
        LoadCounts {
            partitions: self.partition_loads.load(Ordering::Relaxed),
            key_rows: self.key_rows.load(Ordering::Relaxed),
        }
    }

    /// Whether any durable record still in the log matches `f`.
    pub fn tail_any(&self, f: impl Fn(&LogRecord) -> bool) -> bool {
        let tail = self.tail.read().unwrap_or_else(|p| p.into_inner());
        let durable = self.durable_seq_end();
        let found = tail.records().any(|r| r.seq < durable && f(r));
        found
    }

    /// The durable records still in the log (not yet compacted), of every project.
    pub fn tail_records(&self) -> Vec<LogRecord> {
        let tail = self.tail.read().unwrap_or_else(|p| p.into_inner());
        let durable = self.durable_seq_end();
        tail.records()
            .filter(|r| r.seq < durable)
            .cloned()
            .collect()
    }

    /// Every stored event of a project, whole, sorted by (customer, timestamp, seq).
    /// Reads everything: meant for exports, customer views of small data, and tests.
    pub fn records(&self, project: ProjectId) -> Result<Vec<LogRecord>, StoreError> {
        let (manifest, mut out) = {
            let tail = self.tail.read().unwrap_or_else(|p| p.into_inner());
            let durable = self.durable_seq_end();
            let tail_records: Vec<LogRecord> = tail
                .records()
                .filter(|r| r.project == project && r.seq < durable)
                .cloned()
                .collect();
            (self.manifest(), tail_records)
        };
        for s in manifest.segments.iter().filter(|s| s.project == project) {
            out.extend(segment::read_records_of(
                &self.segment_file(&s.file)?,
                project,
            )?);
        }
        out.sort_by_key(|r| (r.customer, r.event.timestamp, r.seq));
        Ok(out)
    }

    /// The names of every trait a project's events carry, sorted. Reads the tail's trait
    /// index and the manifest, never the records.
    pub fn trait_names(&self, project: ProjectId) -> Vec<String> {
        let mut names: BTreeSet<String> = BTreeSet::new();
        {
            let tail = self.tail.read().unwrap_or_else(|p| p.into_inner());
            let durable = self.durable_seq_end();
            for (_, index) in tail.runs() {
                if let Some(run) = index.traits.get(&project) {
                    names.extend(
                        run.iter()
                            .filter(|(_, &first)| first < durable)
                            .map(|(name, _)| name.clone()),
                    );
                }
            }
        }
        for s in self
            .manifest()
            .segments
            .iter()
            .filter(|s| s.project == project)
        {
            names.extend(s.traits.iter().cloned());
        }
        names.into_iter().collect()
    }

    /// How many write-time keys have been handed out, over all projects.
    pub fn allocated_keys(&self) -> u64 {
        lock(&self.ingest).next_customer - 1
    }

    /// The write-time key of a primary identifier, if any event was keyed by it. Loads the
    /// ingest indexes if no ingest has yet.
    pub fn key_of(
        &self,
        project: ProjectId,
        id: &Identifier,
    ) -> Result<Option<CustomerId>, StoreError> {
        let mut st = lock(&self.ingest);
        if st.indexes.is_none() {
            let tail = self.tail.read().unwrap_or_else(|p| p.into_inner());
            st.indexes = Some(self.load_indexes(&tail)?);
        }
        let idx = st.indexes.as_ref().expect("loaded above");
        Ok(idx.keys.get(&index::identifier_key(project, id)).copied())
    }

    /// Bytes of everything in the data dir.
    pub fn storage_bytes(&self) -> u64 {
        dir_size(&self.dir)
    }
}

/// Encodes records into log frames, in parallel for large batches; order is kept.
fn encode_frames(records: &[LogRecord]) -> Result<Vec<u8>, StoreError> {
    let chunks: Vec<Vec<u8>> = records
        .par_chunks(4096)
        .map(|chunk| {
            let mut buf = Vec::with_capacity(chunk.len() * 256);
            for r in chunk {
                log::encode_frame(r, &mut buf)?;
            }
            Ok(buf)
        })
        .collect::<Result<_, StoreError>>()?;
    Ok(chunks.concat())
}

fn sync_dir(d: &dyn Durability, dir: &Path) -> Result<(), StoreError> {
    d.sync_dir(dir).map_err(|e| StoreError::Fsync {
        path: dir.to_path_buf(),
        source: e,
    })
}

fn has_files(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|entries| {
        entries
            .filter_map(Result::ok)
            .any(|e| e.path().is_file() || has_files(&e.path()))
    })
}

fn dir_size(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_size(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// Deletes segment and index files that no manifest names: leftovers of a compaction
/// that crashed before its manifest swap.
fn remove_orphans(dir: &Path, manifest: &Manifest) -> Result<Vec<PathBuf>, StoreError> {
    let mut live: std::collections::HashSet<PathBuf> = manifest
        .segments
        .iter()
        .map(|s| dir.join(&s.file))
        .collect();
    live.extend(manifest.index_runs.iter().map(|r| dir.join(r)));
    live.extend(manifest.placement_runs.iter().map(|r| dir.join(&r.file)));
    let mut removed = Vec::new();
    let mut stack = vec![dir.join(SEGMENT_DIR), dir.join(INDEX_DIR)];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.filter_map(Result::ok) {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if !live.contains(&p) {
                std::fs::remove_file(&p).map_err(|e| StoreError::io(&p, e))?;
                removed.push(p);
            }
        }
    }
    let mut temps = vec![dir.join(manifest::MANIFEST_FILE).with_extension("tmp")];
    // A snapshot write cut short by a crash leaves its temp file; the old snapshot stands.
    if let Ok(entries) = std::fs::read_dir(dir.join(identity_snapshot::IDENTITY_DIR)) {
        temps.extend(
            entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "tmp")),
        );
    }
    for tmp in temps {
        if tmp.exists() {
            std::fs::remove_file(&tmp).map_err(|e| StoreError::io(&tmp, e))?;
            removed.push(tmp);
        }
    }
    Ok(removed)
}
