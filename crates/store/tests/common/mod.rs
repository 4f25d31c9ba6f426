//! Helpers shared by the store's integration tests: a tiny event DSL, store opening,
//! fsync fault injection, and decoded views of journeys that are easy to compare.
#![allow(dead_code)] // each test binary uses a different subset

use omnitrail_model::{
    Channel, CustomerId, Event, Identifier, IdentifierKind, ProjectId, Timestamp, Value,
};
use omnitrail_store::{
    Durability, Journeys, LogRecord, PropertyColumn, ScanSpec, Store, StoreOptions,
};
use std::collections::{BTreeMap, HashMap};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

pub const P: ProjectId = ProjectId::DEFAULT;

/// 2026-03-01T00:00:00Z; fixture times are seconds after it.
pub const BASE_SECS: i64 = 1_772_323_200;

/// `ev("ana", "web", "login", 10)`: customer `user_id:ana` did `login` on the web 10 s
/// after [`BASE_SECS`]. Chain the [`EventExt`] methods for the rest.
pub fn ev(user: &str, channel: &str, activity: &str, secs: i64) -> Event {
    Event::new(
        Timestamp::from_secs(BASE_SECS + secs),
        id(IdentifierKind::UserId, user),
        Channel::parse(channel).expect("test channel"),
        activity,
    )
}

pub fn id(kind: IdentifierKind, value: &str) -> Identifier {
    Identifier::new(kind, value).expect("test identifier")
}

pub trait EventExt {
    fn event_id(self, id: &str) -> Event;
    fn prop(self, name: &str, value: impl Into<PropValue>) -> Event;
    fn also(self, identifier: Identifier) -> Event;
}

/// Lets fixtures write `.prop("os", "iOS")` and `.prop("sentiment", 0.5)`.
pub struct PropValue(pub Value);
impl From<&str> for PropValue {
    fn from(s: &str) -> Self {
        PropValue(Value::Str(s.into()))
    }
}
impl From<f64> for PropValue {
    fn from(n: f64) -> Self {
        PropValue(Value::Num(n))
    }
}
impl From<bool> for PropValue {
    fn from(b: bool) -> Self {
        PropValue(Value::Bool(b))
    }
}

impl EventExt for Event {
    fn event_id(mut self, id: &str) -> Event {
        self.event_id = Some(id.into());
        self
    }
    fn prop(self, name: &str, value: impl Into<PropValue>) -> Event {
        self.with_property(name, value.into().0)
    }
    fn also(self, identifier: Identifier) -> Event {
        self.with_identifier(identifier)
    }
}

/// `n` events of distinct users with event ids `{prefix}{i}`, one second apart.
pub fn numbered(prefix: &str, n: usize) -> Vec<Event> {
    (0..n)
        .map(|i| {
            ev(&format!("u{}", i % 7), "web", "view", i as i64).event_id(&format!("{prefix}{i}"))
        })
        .collect()
}

pub fn options(partitions: u32, durability: Arc<dyn Durability>) -> StoreOptions {
    StoreOptions {
        partitions,
        durability,
        ..StoreOptions::default()
    }
}

pub fn open(dir: &Path) -> Store {
    Store::open(dir, StoreOptions::default()).expect("open store")
}

/// Event ids of the stored events, in `records()` order (events without one are skipped).
pub fn event_ids(store: &Store) -> Vec<String> {
    store
        .records(P)
        .expect("records")
        .into_iter()
        .filter_map(|r| r.event.event_id.map(String::from))
        .collect()
}

/// Panics unless every stored event id appears exactly once and equals `expected`.
pub fn assert_ids_exactly_once(store: &Store, expected: &[String], context: &str) {
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for id in event_ids(store) {
        *counts.entry(id).or_default() += 1;
    }
    let repeated: Vec<_> = counts.iter().filter(|(_, &n)| n > 1).collect();
    assert!(
        repeated.is_empty(),
        "{context}: events stored more than once: {repeated:?}"
    );
    let missing: Vec<_> = expected
        .iter()
        .filter(|id| !counts.contains_key(*id))
        .collect();
    assert!(missing.is_empty(), "{context}: events lost: {missing:?}");
    let extra: Vec<_> = counts.keys().filter(|id| !expected.contains(id)).collect();
    assert!(
        extra.is_empty(),
        "{context}: events nobody stored: {extra:?}"
    );
}

pub fn log_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir.join("log"))
        .expect("log dir")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    files.sort();
    files
}

pub fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.join("segments")];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "parquet") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// No fsync at all: for tests of logic, not durability, so they stay fast.
pub struct NoSync;
impl Durability for NoSync {
    fn sync_file(&self, _: &std::fs::File) -> io::Result<()> {
        Ok(())
    }
    fn sync_dir(&self, _: &Path) -> io::Result<()> {
        Ok(())
    }
}

/// A disk whose fsyncs start failing on demand: `fail_*_after(k)` lets `k` more calls of
/// that kind succeed, then every later one fails until [`FlakyDisk::heal`].
///
/// It simulates the disk rather than calling the OS (fault tests are about the store's
/// reaction, and real fsyncs make them slow): it remembers how long each file was at its
/// last successful fsync, so a test can [`FlakyDisk::lose_unsynced_log_data`], which is
/// what a power cut may do to data never fsynced.
pub struct FlakyDisk {
    file_ok_left: AtomicU64,
    dir_ok_left: AtomicU64,
    pub file_syncs: AtomicU64,
    pub dir_syncs: AtomicU64,
    /// inode → file length at its last successful fsync.
    synced_len: Mutex<HashMap<u64, u64>>,
}

impl FlakyDisk {
    pub fn healthy() -> Arc<FlakyDisk> {
        Arc::new(FlakyDisk {
            file_ok_left: AtomicU64::new(u64::MAX),
            dir_ok_left: AtomicU64::new(u64::MAX),
            file_syncs: AtomicU64::new(0),
            dir_syncs: AtomicU64::new(0),
            synced_len: Mutex::new(HashMap::new()),
        })
    }
    /// Cuts every log file this disk fsynced back to its length at that fsync.
    pub fn lose_unsynced_log_data(&self, dir: &Path) {
        let synced = self.synced_len.lock().expect("lock");
        for log in log_files(dir) {
            let meta = std::fs::metadata(&log).expect("log metadata");
            if let Some(&len) = synced.get(&meta.ino()) {
                let f = std::fs::OpenOptions::new()
                    .write(true)
                    .open(&log)
                    .expect("open log");
                f.set_len(len).expect("truncate log");
            }
        }
    }
    pub fn fail_file_syncs_after(&self, k: u64) {
        self.file_ok_left.store(k, Ordering::SeqCst);
    }
    pub fn fail_dir_syncs_after(&self, k: u64) {
        self.dir_ok_left.store(k, Ordering::SeqCst);
    }
    pub fn heal(&self) {
        self.fail_file_syncs_after(u64::MAX);
        self.fail_dir_syncs_after(u64::MAX);
    }
    fn take(budget: &AtomicU64) -> io::Result<()> {
        let ok = budget
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| match left {
                0 => None,
                u64::MAX => Some(u64::MAX),
                n => Some(n - 1),
            })
            .is_ok();
        if ok {
            Ok(())
        } else {
            Err(io::Error::other("injected fsync failure"))
        }
    }
}

impl Durability for FlakyDisk {
    fn sync_file(&self, file: &std::fs::File) -> io::Result<()> {
        self.file_syncs.fetch_add(1, Ordering::SeqCst);
        Self::take(&self.file_ok_left)?;
        let meta = file.metadata()?;
        self.synced_len
            .lock()
            .expect("lock")
            .insert(meta.ino(), meta.len());
        Ok(())
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        self.dir_syncs.fetch_add(1, Ordering::SeqCst);
        Self::take(&self.dir_ok_left)?;
        std::fs::File::open(dir).map(drop)
    }
}

/// One event as a journey shows it, with names instead of dictionary codes.
#[derive(Clone, Debug, PartialEq)]
pub struct JourneyStep {
    pub ts: i64,
    pub activity: String,
    pub channel: String,
    /// The requested properties then traits in spec order: `None` where missing, numbers as bits
    /// (so NaN compares equal to NaN), text as itself.
    pub props: Vec<Option<String>>,
}

/// Every customer of every partition of a project with their decoded steps. Also checks
/// the shape every `Journeys` value must have: customers sorted and in their own
/// partition, offsets covering the columns, steps ordered by (ts, seq).
pub fn all_journeys(
    store: &Store,
    project: ProjectId,
    spec: &ScanSpec,
) -> BTreeMap<CustomerId, Vec<JourneyStep>> {
    let partitions = store.partitions();
    let mut out = BTreeMap::new();
    for p in 0..partitions {
        let j = store.journeys(project, p, spec).expect("journeys");
        for (c, steps) in decode(&j, spec) {
            assert_eq!(
                omnitrail_store::partition_of(project, c, partitions),
                p,
                "customer {c} is in the wrong partition"
            );
            assert!(
                out.insert(c, steps).is_none(),
                "customer {c} is in two partitions"
            );
        }
    }
    out
}

pub fn decode(j: &Journeys, spec: &ScanSpec) -> Vec<(CustomerId, Vec<JourneyStep>)> {
    let n = j.events();
    assert_eq!(
        j.offsets.len(),
        j.customers.len() + 1,
        "one offset per customer plus the end"
    );
    assert_eq!(j.offsets.first().copied(), Some(0), "offsets start at 0");
    assert_eq!(
        j.offsets.last().copied(),
        Some(n as u32),
        "offsets end at the event count"
    );
    for col in [j.activity.len(), j.channel.len()] {
        assert_eq!(col, n, "every column has one value per event");
    }
    assert!(
        j.customers.windows(2).all(|w| w[0] < w[1]),
        "customers sorted and distinct: {:?}",
        j.customers
    );
    let mut out = Vec::new();
    for (i, &c) in j.customers.iter().enumerate() {
        let range = j.customer_range(i);
        assert!(!range.is_empty(), "customer {c} has no events");
        let steps: Vec<JourneyStep> = range
            .map(|e| JourneyStep {
                ts: j.ts[e],
                activity: j.activities.values[j.activity.get(e) as usize].clone(),
                channel: j.channels.values[j.channel[e] as usize].clone(),
                props: spec
                    .properties
                    .iter()
                    .map(|name| prop_at(&j.properties, name, e))
                    .chain(spec.traits.iter().map(|name| prop_at(&j.traits, name, e)))
                    .collect(),
            })
            .collect();
        assert!(
            steps.windows(2).all(|w| w[0].ts <= w[1].ts),
            "customer {c}: steps not ordered by time"
        );
        out.push((c, steps));
    }
    out
}

fn prop_at(columns: &BTreeMap<String, PropertyColumn>, name: &str, e: usize) -> Option<String> {
    match columns.get(name).expect("requested column") {
        PropertyColumn::Num(v) => (!v.get(e).is_nan()).then(|| v.get(e).to_string()),
        PropertyColumn::Text { codes, dict } => {
            (codes.get(e) != 0).then(|| dict.values[codes.get(e) as usize - 1].clone())
        }
    }
}

/// The steps `records` should produce, grouped by customer (records sorted as `records()`
/// returns them). Property values are expected as `Value` displays them.
pub fn expected_journeys(
    records: &[LogRecord],
    spec: &ScanSpec,
) -> BTreeMap<CustomerId, Vec<JourneyStep>> {
    let mut out: BTreeMap<CustomerId, Vec<JourneyStep>> = BTreeMap::new();
    for r in records {
        out.entry(r.customer).or_default().push(JourneyStep {
            ts: r.event.timestamp.as_micros(),
            activity: r.event.activity.to_string(),
            channel: r.event.channel.as_str().to_string(),
            props: spec
                .properties
                .iter()
                .map(|name| r.event.properties.get(name.as_str()).map(Value::to_string))
                .chain(
                    spec.traits
                        .iter()
                        .map(|name| r.event.traits.get(name.as_str()).map(Value::to_string)),
                )
                .collect(),
        });
    }
    out
}

/// A placer and overlay that join keys by a rule: key → `rule(key)` (its customer).
pub fn rule_placer(rule: fn(u64, u64) -> u64, arg: u64) -> Arc<omnitrail_store::Placer> {
    Arc::new(move |_, keys| keys.iter().map(|k| CustomerId(rule(k.0, arg))).collect())
}

/// Checks that reading every partition under `rule` ([`Store::resolution`],
/// `scan_resolved`) gives each customer every event of its keys, ordered by
/// (time, key, seq), in the customer's partition.
pub fn assert_resolved(
    store: &Store,
    project: ProjectId,
    rule: fn(u64, u64) -> u64,
    arg: u64,
    context: &str,
) {
    let spec = ScanSpec::default();
    let records = store.records(project).expect("records");
    let overlay: HashMap<CustomerId, CustomerId> = records
        .iter()
        .map(|r| (r.customer, CustomerId(rule(r.customer.0, arg))))
        .filter(|(k, c)| k != c)
        .collect();
    let want = expected_resolved(&records, &overlay, &spec);
    let got = resolved_journeys(store, project, &overlay, &spec);
    assert!(
        got == want,
        "{context}: resolved journeys differ from the records"
    );
}

/// Every partition read under `overlay` ([`Store::resolution`], `scan_resolved`), checking
/// that each customer is in its own partition, once.
pub fn resolved_journeys(
    store: &Store,
    project: ProjectId,
    overlay: &HashMap<CustomerId, CustomerId>,
    spec: &ScanSpec,
) -> BTreeMap<CustomerId, Vec<JourneyStep>> {
    let resolution = store
        .resolution(project, Arc::new(overlay.clone()))
        .expect("resolution")
        .expect("few keys moved");
    let mut got = BTreeMap::new();
    for p in 0..store.partitions() {
        let j = store.scan_resolved(p, spec, &resolution).expect("scan");
        for (c, steps) in decode(&j, spec) {
            assert_eq!(
                omnitrail_store::partition_of(project, c, store.partitions()),
                p,
                "customer {c} is in the wrong partition"
            );
            assert!(got.insert(c, steps).is_none(), "customer {c} twice");
        }
    }
    got
}

/// The journeys of customers under `overlay`: each key's records under its customer,
/// ordered by (time, key, seq).
pub fn expected_resolved(
    records: &[LogRecord],
    overlay: &HashMap<CustomerId, CustomerId>,
    spec: &ScanSpec,
) -> BTreeMap<CustomerId, Vec<JourneyStep>> {
    let mut merged: Vec<(CustomerId, i64, CustomerId, u64, &LogRecord)> = records
        .iter()
        .map(|r| {
            let c = overlay.get(&r.customer).copied().unwrap_or(r.customer);
            (c, r.event.timestamp.as_micros(), r.customer, r.seq, r)
        })
        .collect();
    merged.sort_by_key(|&(c, ts, k, seq, _)| (c, ts, k, seq));
    let merged: Vec<LogRecord> = merged
        .into_iter()
        .map(|(c, _, _, _, r)| LogRecord {
            customer: c,
            ..r.clone()
        })
        .collect();
    expected_journeys(&merged, spec)
}

/// Counts of each event id in `records`.
pub fn id_counts(records: &[LogRecord]) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for r in records {
        if let Some(id) = &r.event.event_id {
            *counts.entry(id.to_string()).or_default() += 1;
        }
    }
    counts
}
