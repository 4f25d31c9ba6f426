//! The one boundary of Omnitrail: everything the CLI (and later the server) does goes
//! through [`App`]. In particular every event enters through [`App::ingest`], whether it
//! comes from a file import, the demo generator, or a collector.

pub mod analysis;
mod compactor;
pub mod compare;
pub mod config;
pub mod conformance;
pub mod customer;
pub mod dead_letters;
pub mod diagnostics;
pub mod erase;
mod identities;
pub mod import;
pub mod keys;
pub mod overview;
pub mod personas;
pub mod resolve;
mod resolved;
pub mod rules;
pub mod stats;

pub use config::Config;
pub use omnitrail_synth::SynthConfig;
pub use stats::Stats;

use omnitrail_model::{
    Clock, CustomerId, Event, Identifier, ProjectId, SystemClock, Timestamp, ValidationError,
};
use omnitrail_store::{
    DeadLetter, ImportRecord, Journeys, NoteRow, ScanSpec, Store, StoreError, StoreOptions,
};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::{Mutex, MutexGuard};

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
    #[error("no customer has the identifier '{0}'")]
    CustomerNotFound(String),
    #[error("'{query}' matches several customers: {matches}; give the kind, e.g. email:{query}")]
    AmbiguousIdentifier { query: String, matches: String },
    #[error("{0}")]
    Identity(String),
    #[error("project {project} has no note {id}")]
    NoteNotFound { project: u32, id: i64 },
    #[error("note text is empty")]
    EmptyNote,
    #[error("{source}; the {imported} events read before it were imported and are kept")]
    ImportStopped {
        source: import::ImportError,
        imported: u64,
    },
    #[error(transparent)]
    Rules(#[from] rules::RulesError),
}

impl AppError {
    /// Why a reader cannot open the data dir as it is, when a writer's open would repair
    /// or upgrade it ([`App::open_read_only`]).
    pub fn needs_writer(&self) -> Option<&str> {
        match self {
            AppError::Store(StoreError::NeedsWriter(why)) => Some(why),
            _ => None,
        }
    }

    /// Whether another process holds the data dir as its writer.
    pub fn is_locked(&self) -> bool {
        matches!(self, AppError::Store(StoreError::Locked(_)))
    }
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
    identities: Arc<identities::Identities>,
    resolved: Mutex<resolved::ResolvedCache>,
    personas: personas::PersonaCache,
    compact_after_events: usize,
    privacy: erase::Privacy,
    rules: rules::Rules,
}

/// Whether an [`App`] writes its data dir or reads a snapshot of it beside the writer.
#[derive(Clone, Copy)]
enum Access {
    Writer,
    Reader,
}

/// A note as an agent writes it.
#[derive(Clone, Debug, PartialEq)]
pub struct NewNote {
    pub author: String,
    pub text: String,
    pub topic: Option<String>,
    pub event: Option<String>,
}

impl App {
    pub fn open(dir: &Path, opts: AppOptions) -> Result<App, AppError> {
        let app = App::open_as(dir, opts, Access::Writer)?;
        // An erasure a crash interrupted is finished before anything is read or stored.
        app.resume_erasures()?;
        // Triggers catch up on what a crash may have left unevaluated (rules.rs).
        app.recover_rules()?;
        Ok(app)
    }

    /// Opens a data dir for reading beside the process that writes it (a server): the
    /// events of a consistent snapshot taken now ([`Store::open_read_only`]) and the
    /// identities the metadata database holds when they are first needed, which include
    /// the links of every event in the snapshot (evidence is written before its events).
    /// Nothing on disk changes: no recovery, no compaction, no snapshots, no webhooks;
    /// every write fails with [`StoreError::ReadOnly`].
    pub fn open_read_only(dir: &Path, opts: AppOptions) -> Result<App, AppError> {
        App::open_as(dir, opts, Access::Reader)
    }

    fn open_as(dir: &Path, opts: AppOptions, access: Access) -> Result<App, AppError> {
        let config = Config::load(dir)?;
        let identities = Arc::new(identities::Identities::new(config.identity.clone()));
        let store_opts = StoreOptions {
            auto_compact_events: usize::MAX,
            primary: identities.primary_rule(),
            ..opts.store
        };
        let store = Arc::new(match access {
            Access::Writer => Store::open(dir, store_opts)?,
            Access::Reader => Store::open_read_only(dir, store_opts)?,
        });
        identities.check_primary_rule(&store)?;
        store.set_placer({
            let identities = identities.clone();
            Arc::new(move |project, keys| identities.canonical_keys(project, keys))
        });
        if let Some((file, bytes, why)) = &store.open_report().cut_tail {
            tracing::warn!(
                "recovered the ingest log: cut {bytes} bytes of a torn write at the end of {} ({why})",
                file.display()
            );
        }
        let privacy = erase::Privacy::load(&store)?;
        let (rules, compactor) = match access {
            Access::Reader => (
                rules::Rules::open_read_only(&store)?,
                compactor::Compactor::idle(),
            ),
            Access::Writer => (
                rules::Rules::open(store.clone(), opts.clock.clone())?,
                compactor::Compactor::start(
                    store.clone(),
                    opts.compact_after_events,
                    Box::new({
                        let identities = identities.clone();
                        move |store| {
                            if let Err(e) = identities.checkpoint(store, false) {
                                tracing::warn!("could not write the identity snapshot: {e}");
                            }
                        }
                    }),
                ),
            ),
        };
        let resolved = Mutex::new(resolved::ResolvedCache::new(config.memory.columns_bytes()));
        Ok(App {
            compactor,
            store,
            config,
            clock: opts.clock,
            identities,
            resolved,
            personas: Mutex::new(Vec::new()),
            compact_after_events: opts.compact_after_events,
            privacy,
            rules,
        })
    }

    /// Refuses a write in a reader's app ([`App::open_read_only`]) before anything of it
    /// happens in memory.
    fn writable(&self) -> Result<(), AppError> {
        if self.store.is_read_only() {
            return Err(StoreError::ReadOnly(self.store.dir().to_path_buf()).into());
        }
        Ok(())
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

    /// Events waiting in the ingest log for compaction, and the backlog at which
    /// [`App::ingest`] stops to compact inline (twice the background threshold). A server
    /// refuses ingest with a retry hint before that, instead of stalling requests.
    pub fn ingest_backlog(&self) -> (usize, usize) {
        (
            self.store.uncompacted_events(),
            self.compact_after_events.saturating_mul(2),
        )
    }

    /// The one ingest path. Valid events are stored durably before this returns;
    /// invalid ones become dead letters with their reason. Nothing is dropped silently.
    pub fn ingest(
        &self,
        project: ProjectId,
        batch: Vec<Incoming>,
    ) -> Result<IngestReceipt, AppError> {
        use rayon::prelude::*;
        self.writable()?;
        // An erase waits for ingests in flight and holds new ones back (erase.rs).
        let _pass = self.privacy.pass();
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
        let mut primaries = Vec::with_capacity(checked.len());
        for (i, item) in checked.into_iter().enumerate() {
            let suppressed = match &item {
                Ok(e) => self.privacy.suppressed(project, &e.identifiers),
                Err(_) => Vec::new(),
            };
            if let (Ok(e), false) = (&item, suppressed.is_empty()) {
                receipt.rejected.push(erase::suppressed_letter(
                    i as u64 + 1,
                    "ingest",
                    e,
                    &suppressed,
                ));
                continue;
            }
            match item {
                Ok(e) => match self.identities.primary(&e.identifiers) {
                    Some(p) => {
                        events.push(e);
                        primaries.push(p);
                    }
                    None => receipt.rejected.push(Rejected {
                        source: "ingest".into(),
                        line: i as u64 + 1,
                        field: "identifiers".into(),
                        reason: format!(
                            "every identifier is a blocklisted junk value ({}); the event cannot be given to a customer",
                            e.identifiers
                                .iter()
                                .map(|i| i.to_string())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                        payload: e.to_json().to_string(),
                    }),
                },
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
            // Links are durable before the events that carry them (see identities.rs).
            let watched = self.rules.watch(project, &events);
            let generation = self.identities.generation();
            self.identities.observe(&self.store, project, &events)?;
            let keyed: Vec<Identifier> = events
                .iter()
                .zip(&primaries)
                .map(|(e, &p)| e.identifiers[p].clone())
                .collect();
            let outcome = self.store.ingest_keyed(project, events, primaries)?;
            self.identities.set_keys(
                &self.store,
                project,
                keyed.into_iter().zip(outcome.customers.iter().copied()),
            )?;
            receipt.stored = outcome.stored;
            receipt.duplicates = outcome.duplicates;
            // Durable and resolved: rules see each event under its customer.
            self.evaluate_rules(project, watched, &outcome.customers, generation)?;
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
        let demo_config = format!(
            "{}{}",
            omnitrail_synth::DEMO_STAGES_TOML,
            diagnostics::DEMO_DIAGNOSTICS_TOML
        );
        let demo_config = format!("{demo_config}{}", rules::DEMO_TRIGGERS_TOML);
        std::fs::write(&config_path, demo_config).map_err(|e| AppError::Io {
            path: config_path.display().to_string(),
            source: e,
        })?;
        self.config = Config::load(self.dir())?;
        conformance::write_demo_designs(self.dir())?;
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
        self.compact()?;
        self.install_demo_rules()?;
        summary.customers = cfg.customers;
        Ok(summary)
    }

    /// Compacts the log into segments and writes identity snapshots of what changed, so
    /// that the next open reads neither.
    pub fn compact(&self) -> Result<omnitrail_store::CompactionReport, AppError> {
        self.writable()?;
        let report = self.store.compact()?;
        // The rows are the durable record: without a snapshot the next open only reads more.
        if let Err(e) = self.identities.checkpoint(&self.store, true) {
            tracing::warn!("could not write the identity snapshot: {e}");
        }
        self.re_place()?;
        Ok(report)
    }

    /// Files the rows of keys whose customer changed since they were placed (merges and
    /// unmerges after their compaction) under their customer now, so that reads move
    /// nothing: part of every explicit compaction.
    fn re_place(&self) -> Result<(), AppError> {
        let projects = self.store.meta().projects()?;
        for (project, _) in projects {
            let overlay = self.identities.overlay(&self.store, project)?;
            let n = self.store.re_place(project, overlay)?;
            if n > 0 {
                tracing::info!(
                    "filed {n} keys of project {} under their customer now",
                    project.0
                );
            }
        }
        Ok(())
    }

    /// Every partition's columnar journeys for a project, as analyses must see them: one
    /// customer per identity cluster, merges applied at once. Cached until the data or the
    /// identity graph changes.
    pub fn journeys(
        &self,
        project: ProjectId,
        spec: &ScanSpec,
    ) -> Result<Vec<Arc<Journeys>>, AppError> {
        use rayon::prelude::*;
        let key = (project, spec.clone());
        let stamp = (self.store.data_version(), self.identities.generation());
        if let Some(parts) = lock(&self.resolved).get(&key, stamp) {
            return Ok(parts);
        }
        let overlay = self.identities.overlay(&self.store, project)?;
        let partitions = self.store.partitions();
        // Segments are filed under each key's customer as of its compaction: a partition
        // read as filed is whole, moving only the keys whose customer changed since.
        let mut attempts = 0;
        let parts: Vec<Arc<Journeys>> = loop {
            let Some(resolution) = self.store.resolution(project, overlay.clone())? else {
                tracing::debug!("many keys changed customer since they were placed: regrouping");
                break self.regrouped(project, spec, &overlay)?;
            };
            tracing::debug!(
                "{} placed keys changed customer since they were placed",
                resolution.moved_keys()
            );
            let scanned: Result<Vec<Arc<Journeys>>, StoreError> = (0..partitions)
                .into_par_iter()
                .map(|p| Ok(Arc::new(self.store.scan_resolved(p, spec, &resolution)?)))
                .collect();
            match scanned {
                Err(StoreError::PlacementChanged) if attempts < 3 => attempts += 1,
                Err(StoreError::PlacementChanged) => {
                    break self.regrouped(project, spec, &overlay)?;
                }
                other => break other?,
            }
        };
        lock(&self.resolved).insert(key, stamp, parts.clone());
        Ok(parts)
    }

    /// Every partition read under write-time keys and regrouped by `overlay`: for a store
    /// where too many keys changed customer since they were placed.
    fn regrouped(
        &self,
        project: ProjectId,
        spec: &ScanSpec,
        overlay: &resolve::Overlay,
    ) -> Result<Vec<Arc<Journeys>>, AppError> {
        use rayon::prelude::*;
        // Uncached raw scans, owned so the regroup can free them column by column: only
        // the merged form is kept in memory.
        let raw: Vec<Journeys> = (0..self.store.partitions())
            .into_par_iter()
            .map(|p| {
                let scanned = self.store.scan(project, p, spec)?;
                Ok(Arc::try_unwrap(scanned).unwrap_or_else(|shared| (*shared).clone()))
            })
            .collect::<Result<_, AppError>>()?;
        Ok(resolve::regroup(project, raw, overlay))
    }

    /// The customer view by any identifier (see [`customer`]).
    pub fn customer(
        &self,
        project: ProjectId,
        identifier: &str,
        timeline: &customer::TimelineQuery,
    ) -> Result<customer::CustomerView, AppError> {
        let id = self.resolve_customer(project, identifier)?;
        let cluster = self.identities.cluster(&self.store, project, id)?;
        // Only the cluster's keys are read: their segment rows from cached per-partition
        // columns that ingest does not invalidate, their log records through the tail's
        // key index. Merging them here orders events as the merged journeys of
        // [`App::journeys`] would, without rebuilding every partition on each commit.
        let properties: Vec<String> = customer::VIEW_PROPERTIES
            .iter()
            .map(|p| p.to_string())
            .collect();
        let pieces = self
            .store
            .key_journeys(project, &cluster.keys, &properties)?;
        let (events, traits) =
            customer::decode_pieces(pieces.iter().map(|p| (p.journeys.as_ref(), p.index)));
        let keys: Vec<u64> = cluster.keys.iter().map(|k| k.0).collect();
        let notes: Vec<customer::Note> = self
            .store
            .meta()
            .notes(project, &keys)?
            .into_iter()
            .map(note_view)
            .collect();
        let f = customer::facts(&events, &traits, &notes, self.now().as_micros(), timeline);
        Ok(customer::CustomerView {
            customer_id: id.to_string(),
            summary: f.summary,
            identifiers: cluster.identifiers,
            links: cluster.links,
            traits,
            first_seen: f.first_seen,
            last_seen: f.last_seen,
            events: events.len() as u64,
            channels: f.channels,
            lifecycle: f.lifecycle,
            purchases: f.purchases,
            total_value: f.total_value,
            issues: f.issues,
            friction: f.friction,
            notes,
            tasks: self.customer_tasks(project, &keys)?,
            timeline: f.timeline,
        })
    }

    /// Finds the one customer an agent means: `c42`, `kind:value`, or a bare value tried
    /// in every kind's normal form.
    fn resolve_customer(&self, project: ProjectId, text: &str) -> Result<CustomerId, AppError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(AppError::Identity(
                "no identifier given: type a phone, an email, kind:value or a customer id".into(),
            ));
        }
        let found = self.identities.find(&self.store, project, text)?;
        match found.len() {
            0 => Err(AppError::CustomerNotFound(text.to_string())),
            1 => Ok(found[0].0),
            _ => Err(AppError::AmbiguousIdentifier {
                query: text.to_string(),
                matches: found
                    .iter()
                    .map(|(c, id)| format!("{id} ({c})"))
                    .collect::<Vec<_>>()
                    .join(", "),
            }),
        }
    }

    /// Adds a note to the customer `identifier` finds.
    pub fn add_note(
        &self,
        project: ProjectId,
        identifier: &str,
        note: NewNote,
    ) -> Result<customer::Note, AppError> {
        if note.text.trim().is_empty() {
            return Err(AppError::EmptyNote);
        }
        let customer = self.resolve_customer(project, identifier)?;
        let now = self.now();
        let row = NoteRow {
            id: 0,
            customer: customer.0,
            author: note.author,
            created_at: now,
            updated_at: now,
            text: note.text,
            topic: note.topic,
            event: note.event,
        };
        let id = self.store.meta().add_note(project, &row)?;
        Ok(note_view(NoteRow { id, ..row }))
    }

    pub fn edit_note(
        &self,
        project: ProjectId,
        id: i64,
        text: &str,
        topic: Option<&str>,
    ) -> Result<customer::Note, AppError> {
        if text.trim().is_empty() {
            return Err(AppError::EmptyNote);
        }
        let meta = self.store.meta();
        if !meta.edit_note(project, id, text, topic, self.now())? {
            return Err(AppError::NoteNotFound {
                project: project.0,
                id,
            });
        }
        let row = meta.note(project, id)?.ok_or(AppError::NoteNotFound {
            project: project.0,
            id,
        })?;
        Ok(note_view(row))
    }

    /// A customer's notes, oldest first.
    pub fn notes(
        &self,
        project: ProjectId,
        identifier: &str,
    ) -> Result<Vec<customer::Note>, AppError> {
        let id = self.resolve_customer(project, identifier)?;
        let keys: Vec<u64> = self
            .identities
            .cluster(&self.store, project, id)?
            .keys
            .iter()
            .map(|k| k.0)
            .collect();
        Ok(self
            .store
            .meta()
            .notes(project, &keys)?
            .into_iter()
            .map(note_view)
            .collect())
    }

    /// A Segment-style `alias(previousId, userId)` or `identify` link: says these
    /// identifiers are one person, without an event. Durable when this returns.
    pub fn link(
        &self,
        project: ProjectId,
        source: omnitrail_identity::Source,
        identifiers: Vec<Identifier>,
        at: Timestamp,
    ) -> Result<(), AppError> {
        self.writable()?;
        if identifiers.len() < 2 {
            return Err(AppError::Identity(format!(
                "a link needs at least two identifiers, got {}",
                identifiers.len()
            )));
        }
        let _pass = self.privacy.pass();
        if self.refuse_suppressed_link(project, source, &identifiers)? {
            return Ok(());
        }
        let generation = self.identities.generation();
        self.identities.link(
            &self.store,
            project,
            omnitrail_identity::Evidence {
                source,
                at,
                event: None,
                identifiers: identifiers.clone(),
            },
        )?;
        self.rules_after_link(project, &identifiers, generation)
    }

    /// Splits an identifier off its customer: every link through it is revoked (and
    /// remembered as revoked, so it does not come back on restart).
    pub fn unmerge(&self, project: ProjectId, identifier: &str) -> Result<(), AppError> {
        self.writable()?;
        // Evidence ids move when an erase deletes evidence: never both at once.
        let _pass = self.privacy.pass();
        let id = Identifier::parse_qualified(identifier.trim())
            .map_err(|e| AppError::Identity(format!("unmerge needs kind:value: {e}")))?;
        self.identities.unmerge(&self.store, project, &id)
    }

    /// What the data dir holds, from counts the manifest keeps and the identity graph:
    /// no event is read (but the log tail, which is in memory).
    pub fn stats(&self, project: ProjectId) -> Result<Stats, AppError> {
        let summary = self.store.event_summary(project)?;
        let customers = match self.identities.customers(&self.store, project)? {
            Some(n) => n,
            None => self
                .journeys(project, &ScanSpec::default())?
                .iter()
                .map(|j| j.customers.len() as u64)
                .sum(),
        };
        stats::compute(&self.store, &self.config, project, &summary, customers)
    }

    /// Whether this app has read its identity graphs. Counting customers and analyses on a
    /// settled snapshot need only its summary and overlay; a customer view, an ingest of
    /// linked events or identity rows newer than the snapshot read the graphs.
    pub fn identity_graphs_loaded(&self) -> bool {
        self.identities.is_loaded()
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

/// The events the demo generator makes for customer `index`: for benchmarks that need the
/// identifiers of demo customers.
pub fn demo_customer_events(cfg: &SynthConfig, index: u64) -> Vec<Event> {
    omnitrail_synth::generate_customer(cfg, index).events
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn note_view(n: NoteRow) -> customer::Note {
    customer::Note {
        id: n.id,
        author: n.author,
        created_at: n.created_at,
        updated_at: n.updated_at,
        text: n.text,
        topic: n.topic,
        event: n.event,
    }
}
