//! The one boundary of Omnitrail: everything the CLI (and later the server) does goes
//! through [`App`]. In particular every event enters through [`App::ingest`], whether it
//! comes from a file import, the demo generator, or a collector.

mod compactor;
pub mod config;
pub mod import;
pub mod stats;

pub use config::Config;
pub use omnitrail_synth::SynthConfig;
pub use stats::Stats;

use omnitrail_model::{Clock, Event, ProjectId, SystemClock, Timestamp, ValidationError};
use omnitrail_store::{
    DeadLetter, ImportRecord, Journeys, ScanSpec, Store, StoreError, StoreOptions,
};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Import(#[from] import::ImportError),
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {reason}")]
    Config { path: String, reason: String },
    #[error(
        "the data dir already holds {0} events; demo data is only generated into an empty data dir"
    )]
    NotEmpty(u64),
    #[error("{source}; the {imported} events read before it were imported and are kept")]
    ImportStopped {
        source: import::ImportError,
        imported: u64,
    },
}

pub struct AppOptions {
    /// The store's own inline auto-compaction is switched off: the app compacts in the
    /// background once `compact_after_events` wait in the log.
    pub store: StoreOptions,
    pub compact_after_events: usize,
    pub clock: Arc<dyn Clock>,
}

impl Default for AppOptions {
    fn default() -> Self {
        AppOptions {
            store: StoreOptions::default(),
            compact_after_events: 2_000_000,
            clock: Arc::new(SystemClock),
        }
    }
}

/// An event that could not be accepted, with where it came from and why.
#[derive(Clone, Debug, PartialEq)]
pub struct Rejected {
    pub source: String,
    /// Line in a file, or position in a batch (1-based); 0 when unknown.
    pub line: u64,
    pub field: String,
    pub reason: String,
    /// The raw input as received (truncated by the reader if huge).
    pub payload: String,
}

/// What arrives at the ingest path: a parsed event, or input that failed to parse.
#[derive(Clone, Debug)]
pub enum Incoming {
    Event(Event),
    Rejected(Rejected),
}

/// What one [`App::ingest`] call did with its batch.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct IngestReceipt {
    pub stored: u64,
    pub duplicates: u64,
    /// Rejected events, each kept as a dead letter with its reason.
    pub rejected: Vec<Rejected>,
}

pub struct App {
    // Declared first so it is dropped first: its thread finishes before the store closes.
    compactor: compactor::Compactor,
    store: Arc<Store>,
    config: Config,
    clock: Arc<dyn Clock>,
}

impl App {
    pub fn open(dir: &Path, opts: AppOptions) -> Result<App, AppError> {
        let store = Arc::new(Store::open(
            dir,
            StoreOptions {
                auto_compact_events: usize::MAX,
                ..opts.store
            },
        )?);
        if let Some((file, bytes, why)) = &store.open_report().cut_tail {
            tracing::warn!(
                "recovered the ingest log: cut {bytes} bytes of a torn write at the end of {} ({why})",
                file.display()
            );
        }
        let config = Config::load(dir)?;
        Ok(App {
            compactor: compactor::Compactor::start(store.clone(), opts.compact_after_events),
            store,
            config,
            clock: opts.clock,
        })
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn dir(&self) -> &Path {
        self.store.dir()
    }

    /// The one ingest path. Valid events are stored durably before this returns;
    /// invalid ones become dead letters with their reason. Nothing is dropped silently.
    pub fn ingest(
        &self,
        project: ProjectId,
        batch: Vec<Incoming>,
    ) -> Result<IngestReceipt, AppError> {
        use rayon::prelude::*;
        let mut receipt = IngestReceipt::default();
        // Validation is per event and independent, so large batches use every core.
        let checked: Vec<Result<Event, Rejected>> = batch
            .into_par_iter()
            .with_min_len(4096)
            .enumerate()
            .map(|(i, item)| match item {
                Incoming::Event(mut e) => match e.normalize() {
                    Ok(()) => Ok(e),
                    Err(ValidationError { field, reason }) => Err(Rejected {
                        source: "ingest".into(),
                        line: i as u64 + 1,
                        field,
                        reason,
                        payload: e.to_json().to_string(),
                    }),
                },
                Incoming::Rejected(r) => Err(r),
            })
            .collect();
        let mut events = Vec::with_capacity(checked.len());
        for item in checked {
            match item {
                Ok(e) => events.push(e),
                Err(r) => receipt.rejected.push(r),
            }
        }
        if !receipt.rejected.is_empty() {
            let now = self.clock.now();
            let letters: Vec<DeadLetter> = receipt
                .rejected
                .iter()
                .map(|r| DeadLetter {
                    id: 0,
                    project,
                    received_at: now,
                    source: r.source.clone(),
                    line: r.line,
                    field: r.field.clone(),
                    reason: r.reason.clone(),
                    payload: r.payload.clone(),
                })
                .collect();
            self.store.meta().add_dead_letters(&letters)?;
        }
        if !events.is_empty() {
            let outcome = self.store.ingest(project, events)?;
            receipt.stored = outcome.stored;
            receipt.duplicates = outcome.duplicates;
            self.compactor.after_ingest(&self.store)?;
        }
        Ok(receipt)
    }

    /// Imports one file through [`App::ingest`]: reads batches on a second thread while
    /// this one stores them; writes every rejected row to a rejects file in the data dir.
    pub fn import_file(
        &self,
        project: ProjectId,
        path: &Path,
        options: &import::ImportOptions,
        progress: &(dyn Fn(&ImportProgress) + Sync),
    ) -> Result<ImportSummary, AppError> {
        let started_at = self.clock.now();
        let mut reader = import::open(path, options)?;
        let total_bytes = reader.total_bytes();
        let mut summary = ImportSummary {
            file: path.display().to_string(),
            ..ImportSummary::default()
        };
        let mut rejects: Option<RejectsFile> = None;
        const BATCH: usize = 64 * 1024;
        let result = std::thread::scope(|scope| -> Result<(), AppError> {
            let (tx, rx) = std::sync::mpsc::sync_channel(2);
            let reading = scope.spawn(move || -> Result<(), import::ImportError> {
                while let Some(batch) = reader.next_batch(BATCH)? {
                    let read = reader.bytes_read();
                    if tx.send((batch, read)).is_err() {
                        break;
                    }
                }
                Ok(())
            });
            for (batch, bytes_read) in rx {
                let import::Batch {
                    events,
                    rejects: bad,
                } = batch;
                summary.read += (events.len() + bad.len()) as u64;
                let mut incoming: Vec<Incoming> = bad
                    .into_iter()
                    .map(|r| {
                        Incoming::Rejected(Rejected {
                            source: r.file,
                            line: r.line,
                            field: r.field,
                            reason: r.reason,
                            payload: r.raw,
                        })
                    })
                    .collect();
                incoming.extend(events.into_iter().map(Incoming::Event));
                let receipt = self.ingest(project, incoming)?;
                summary.imported += receipt.stored;
                summary.duplicates += receipt.duplicates;
                summary.rejected += receipt.rejected.len() as u64;
                if !receipt.rejected.is_empty() {
                    let file = match &mut rejects {
                        Some(f) => f,
                        None => rejects.insert(RejectsFile::create(self.dir(), path, started_at)?),
                    };
                    file.write(&receipt.rejected)?;
                    summary.first_rejects.extend(
                        receipt
                            .rejected
                            .iter()
                            .take(FIRST_REJECTS.saturating_sub(summary.first_rejects.len()))
                            .cloned(),
                    );
                }
                progress(&ImportProgress {
                    bytes_read,
                    total_bytes,
                    events: summary.imported,
                });
            }
            reading
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
                .map_err(|source| AppError::ImportStopped {
                    source,
                    imported: summary.imported,
                })
        });
        let stopped = result.err();
        if let Some(f) = rejects {
            summary.rejects_file = Some(f.finish()?);
        }
        self.store.meta().record_import(&ImportRecord {
            project,
            started_at,
            source: summary.file.clone(),
            read: summary.read,
            imported: summary.imported,
            duplicates: summary.duplicates,
            rejected: summary.rejected,
            rejects_file: summary
                .rejects_file
                .as_ref()
                .map(|p| p.display().to_string()),
        })?;
        match stopped {
            Some(e) => Err(e),
            None => Ok(summary),
        }
    }

    /// Generates the demo dataset into an empty data dir and writes its stage mapping.
    pub fn generate_demo(
        &mut self,
        cfg: &SynthConfig,
        progress: &(dyn Fn(u64, u64) + Sync),
    ) -> Result<DemoSummary, AppError> {
        let existing = self.store.event_count(ProjectId::DEFAULT);
        if existing > 0 {
            return Err(AppError::NotEmpty(existing));
        }
        let config_path = self.dir().join(config::CONFIG_FILE);
        std::fs::write(&config_path, omnitrail_synth::DEMO_STAGES_TOML).map_err(|e| {
            AppError::Io {
                path: config_path.display().to_string(),
                source: e,
            }
        })?;
        self.config = Config::load(self.dir())?;
        // About 100k events a batch: big enough to share one fsync, small enough that
        // buffers are reused rather than freshly page-faulted.
        const CHUNK: u64 = 2_000;
        let mut summary = DemoSummary::default();
        std::thread::scope(|scope| -> Result<(), AppError> {
            let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<Event>>(1);
            let customers = cfg.customers;
            scope.spawn(move || {
                let mut start = 0;
                while start < customers {
                    let end = (start + CHUNK).min(customers);
                    let events: Vec<Event> = omnitrail_synth::generate_range(cfg, start..end)
                        .into_iter()
                        .flat_map(|c| c.events)
                        .collect();
                    if tx.send(events).is_err() {
                        return;
                    }
                    start = end;
                }
            });
            let mut done = 0;
            for events in rx {
                let receipt = self.ingest(
                    ProjectId::DEFAULT,
                    events.into_iter().map(Incoming::Event).collect(),
                )?;
                summary.events += receipt.stored;
                summary.rejected += receipt.rejected.len() as u64;
                done = (done + CHUNK).min(customers);
                progress(done, customers);
            }
            Ok(())
        })?;
        self.store.compact()?;
        summary.customers = cfg.customers;
        Ok(summary)
    }

    pub fn compact(&self) -> Result<omnitrail_store::CompactionReport, AppError> {
        Ok(self.store.compact()?)
    }

    /// Every partition's columnar journeys for a project, as analyses must see them.
    pub fn journeys(
        &self,
        project: ProjectId,
        spec: &ScanSpec,
    ) -> Result<Vec<Arc<Journeys>>, AppError> {
        use rayon::prelude::*;
        (0..self.store.partitions())
            .into_par_iter()
            .map(|p| Ok(self.store.journeys(project, p, spec)?))
            .collect()
    }

    pub fn stats(&self, project: ProjectId) -> Result<Stats, AppError> {
        stats::compute(&self.store, &self.config, project)
    }

    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }
}

/// How many rejects an import summary carries for display; all are in the rejects file.
const FIRST_REJECTS: usize = 20;

#[derive(Clone, Debug, Default, PartialEq)]
pub struct ImportProgress {
    pub bytes_read: u64,
    pub total_bytes: u64,
    pub events: u64,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct ImportSummary {
    pub file: String,
    /// Rows or events read, valid or not.
    pub read: u64,
    pub imported: u64,
    pub duplicates: u64,
    pub rejected: u64,
    /// Where every rejected row is written, one JSON object a line.
    pub rejects_file: Option<PathBuf>,
    /// The first few rejects, for the summary on screen.
    pub first_rejects: Vec<Rejected>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct DemoSummary {
    pub customers: u64,
    pub events: u64,
    pub rejected: u64,
}

struct RejectsFile {
    path: PathBuf,
    out: std::io::BufWriter<std::fs::File>,
}

impl RejectsFile {
    fn create(dir: &Path, source: &Path, at: Timestamp) -> Result<RejectsFile, AppError> {
        let rejects_dir = dir.join("rejects");
        let io = |p: &Path, e| AppError::Io {
            path: p.display().to_string(),
            source: e,
        };
        std::fs::create_dir_all(&rejects_dir).map_err(|e| io(&rejects_dir, e))?;
        let name = source
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "input".into());
        let (y, mo, d, h, mi, s, _) = at.civil();
        let stem = format!("{y:04}{mo:02}{d:02}T{h:02}{mi:02}{s:02}-{name}");
        // Never overwrite the rejects of an earlier import that started in the same second.
        let mut n = 1;
        let (path, file) = loop {
            let suffix = if n == 1 {
                String::new()
            } else {
                format!("-{n}")
            };
            let path = rejects_dir.join(format!("{stem}{suffix}.rejects.ndjson"));
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
            {
                Ok(file) => break (path, file),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => n += 1,
                Err(e) => return Err(io(&path, e)),
            }
        };
        Ok(RejectsFile {
            path,
            out: std::io::BufWriter::new(file),
        })
    }

    fn write(&mut self, rejects: &[Rejected]) -> Result<(), AppError> {
        for r in rejects {
            let line = serde_json::json!({
                "file": r.source, "line": r.line, "field": r.field, "reason": r.reason, "raw": r.payload,
            });
            writeln!(self.out, "{line}").map_err(|e| AppError::Io {
                path: self.path.display().to_string(),
                source: e,
            })?;
        }
        Ok(())
    }

    fn finish(mut self) -> Result<PathBuf, AppError> {
        self.out.flush().map_err(|e| AppError::Io {
            path: self.path.display().to_string(),
            source: e,
        })?;
        Ok(self.path)
    }
}
