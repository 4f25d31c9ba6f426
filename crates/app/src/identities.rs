//! Identity resolution wired to storage: one identity graph per project, its evidence and
//! keys persisted in the metadata database, and the overlay analyses read.
//!
//! Order of writes, and why it is crash-safe:
//! 1. the evidence of a batch is written (SQLite, durable) *before* its events are stored,
//!    so every stored event's links survive a crash; a crash in between can only leave
//!    evidence of events the client was not acknowledged for, and a retry carries the same
//!    evidence;
//! 2. the store keys each event by its primary identifier (the graph's rule);
//! 3. new write-time keys are written after the store acknowledges. Keys of events still
//!    in the log are recovered from it on open; a key whose events were compacted before
//!    it was written is asked of the store's own key index.

use crate::customer::{IdentifierView, LinkView};
use crate::resolve::Overlay;
use crate::AppError;
use omnitrail_identity::{
    Cluster, Cut, Decision, Evidence, EvidenceId, GraphImage, Guardrails, IdentityError,
    IdentityGraph, Persisted, PreviousGraphImage, Snapshot, Source,
};
use omnitrail_model::{CustomerId, Event, Identifier, ProjectId};
use omnitrail_store::{EvidenceRow, IdentityRevision, IdentitySnapshot, PrimaryRule, Store};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock, RwLockReadGuard, RwLockWriteGuard};

pub(crate) struct Identities {
    /// An empty graph, for the pure rules (primary identifier, blocklist).
    rules: Arc<IdentityGraph>,
    guardrails: Guardrails,
    graphs: RwLock<HashMap<ProjectId, IdentityGraph>>,
    /// Bumped whenever a cluster may have changed; caches of merged journeys key on it.
    generation: AtomicU64,
    overlays: RwLock<HashMap<ProjectId, (u64, Arc<Overlay>)>>,
    /// Graphs are read from the database on first need: analyses of data without a single
    /// link (one identifier per event, like most imported logs) never pay for them.
    loaded: OnceLock<Result<(), String>>,
    /// Per project, the revision of its newest snapshot on disk and the identity rows
    /// written since (what opening would read on top of it).
    checkpoints: Mutex<HashMap<ProjectId, Checkpoint>>,
    /// Per project its settled snapshot, mapped, while no graph is read: analyses take its
    /// overlay and customer views cut their component out of its image, each checked and
    /// parsed once for as long as the snapshot stays settled.
    settled_snapshots: Mutex<HashMap<ProjectId, Arc<SettledSnapshot>>>,
}

/// A project's snapshot while it is settled (see [`Identities::settled`]).
struct SettledSnapshot {
    snap: IdentitySnapshot,
    overlay: OnceLock<Result<Arc<Overlay>, String>>,
}

/// What a settled snapshot holds of a project.
enum SettledProject {
    /// The snapshots are not settled, or this one predates sections: ask the graph.
    No,
    /// Not one identity row: no key maps elsewhere.
    Empty,
    Snapshot(Arc<SettledSnapshot>),
}

/// What resolving an agent's text and showing a customer need of identity: the graph, or
/// a settled image cut one component at a time. `None` means this source cannot tell (a
/// blocklisted identifier in an image, or a damaged one) and the graph must answer.
trait Lookup {
    fn cluster(&self, customer: CustomerId) -> Option<Option<Cluster>>;
    fn customer_of(&self, id: &Identifier) -> Option<Option<CustomerId>>;
    fn candidates(&self, raw: &str) -> Option<Vec<Identifier>>;
}

impl Lookup for IdentityGraph {
    fn cluster(&self, customer: CustomerId) -> Option<Option<Cluster>> {
        Some(IdentityGraph::cluster(self, customer))
    }
    fn customer_of(&self, id: &Identifier) -> Option<Option<CustomerId>> {
        Some(IdentityGraph::customer_of(self, id))
    }
    fn candidates(&self, raw: &str) -> Option<Vec<Identifier>> {
        Some(IdentityGraph::find(self, raw))
    }
}

/// A settled image of a project, read one component at a time.
struct ImageLookup<'a>(GraphImage<'a>, ProjectId);

impl ImageLookup<'_> {
    fn cut<T>(
        &self,
        cut: Result<Cut, IdentityError>,
        answer: impl FnOnce(&omnitrail_identity::ComponentGraph) -> T,
    ) -> Option<Option<T>> {
        match cut {
            Ok(Cut::Component(c)) => Some(Some(answer(&c))),
            Ok(Cut::NotFound) => Some(None),
            Ok(Cut::Blocked) => None,
            Err(e) => {
                tracing::warn!(
                    "the identity snapshot of project {} is unusable: {e}; reading the graph",
                    self.1 .0
                );
                None
            }
        }
    }
}

impl Lookup for ImageLookup<'_> {
    fn cluster(&self, customer: CustomerId) -> Option<Option<Cluster>> {
        self.cut(self.0.cut_at_key(customer), |c| c.cluster(customer))
            .map(Option::flatten)
    }
    fn customer_of(&self, id: &Identifier) -> Option<Option<CustomerId>> {
        self.cut(self.0.cut_at(id), |c| c.customer_of(id))
            .map(Option::flatten)
    }
    fn candidates(&self, raw: &str) -> Option<Vec<Identifier>> {
        self.0.candidates(raw).ok()
    }
}

/// The customers `text` may mean (see [`Identities::find`]), or `None` when `lookup`
/// cannot tell.
fn find_in(lookup: &dyn Lookup, text: &str) -> Option<Vec<(CustomerId, Identifier)>> {
    let mut found: BTreeMap<CustomerId, Identifier> = BTreeMap::new();
    if let Some(n) = text.strip_prefix('c').and_then(|n| n.parse::<u64>().ok()) {
        if let Some(c) = lookup.cluster(CustomerId(n))? {
            if let (Some(customer), Some(first)) = (c.customer, c.identifiers.first()) {
                found.insert(customer, first.clone());
            }
        }
    }
    let candidates = match Identifier::parse_qualified(text) {
        Ok(id) => vec![id],
        Err(_) => lookup.candidates(text)?,
    };
    for id in candidates {
        if let Some(c) = lookup.customer_of(&id)? {
            found.entry(c).or_insert(id);
        }
    }
    Some(found.into_iter().collect())
}

#[derive(Clone, Copy, Debug, Default)]
struct Checkpoint {
    snapshot_rev: Option<i64>,
    rows_since: u64,
    /// An erase is under way (or failed): the graph in memory may still hold the person
    /// while the database no longer does, so no snapshot may be taken of it.
    frozen: bool,
}

/// A snapshot is rewritten once the rows written since it reach this share of the graph
/// (and at least [`CHECKPOINT_MIN_ROWS`]): opening then reads at most that many rows on
/// top of the file, and the snapshots written while a store grows add up to about twice
/// its final size.
const CHECKPOINT_SHARE: u64 = 2;
const CHECKPOINT_MIN_ROWS: u64 = 50_000;

/// The sections of a snapshot file: the summary, the overlay (write-time key → canonical
/// customer, for keys that differ: 16 bytes a key, two `u64` LE, ascending), and the
/// graph's settled image. Analyses need only the overlay, `stats` only the summary.
const SECTIONS: usize = 3;
const OVERLAY: usize = 1;
const IMAGE: usize = 2;

/// The overlay section of `graph`.
fn overlay_section(graph: &IdentityGraph) -> Vec<u8> {
    let mut pairs: Vec<(CustomerId, CustomerId)> = graph.overlay().collect();
    pairs.sort_unstable();
    let mut out = Vec::with_capacity(pairs.len() * 16);
    for (key, customer) in pairs {
        out.extend_from_slice(&key.0.to_le_bytes());
        out.extend_from_slice(&customer.0.to_le_bytes());
    }
    out
}

fn parse_overlay(bytes: &[u8]) -> Result<Overlay, String> {
    if !bytes.len().is_multiple_of(16) {
        return Err(format!(
            "its overlay of {} bytes is not whole pairs",
            bytes.len()
        ));
    }
    let word = |b: &[u8]| u64::from_le_bytes(b.try_into().expect("8 bytes"));
    let mut overlay = Overlay::with_capacity(bytes.len() / 16);
    let mut last = None;
    for pair in bytes.chunks_exact(16) {
        let (key, customer) = (word(&pair[..8]), word(&pair[8..]));
        if last.is_some_and(|l| l >= key) || key == customer {
            return Err(format!(
                "its overlay is out of order or maps {key} to itself"
            ));
        }
        last = Some(key);
        overlay.insert(CustomerId(key), CustomerId(customer));
    }
    Ok(overlay)
}

/// What a snapshot's graph adds up to. It is the snapshot file's head (written before
/// images: the start of its payload), so counting customers decodes no graph.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct SnapshotSummary {
    /// The guardrails the graph settled under, as JSON: limits and weak kinds may change
    /// between opens, and with them the clusters.
    guardrails: String,
    keys: u64,
    /// Clusters holding a key.
    customers: u64,
}

/// A customer's identity as the customer view shows it.
pub(crate) struct ClusterView {
    pub identifiers: Vec<IdentifierView>,
    pub links: Vec<LinkView>,
    pub keys: Vec<CustomerId>,
}

/// The image section of a snapshot file, in today's layout or the one before it (bytes of
/// the one can decode as the other, but not with columns that agree in length).
fn decode_image(bytes: &[u8]) -> Result<GraphImage<'_>, String> {
    let today = postcard::from_bytes::<GraphImage>(bytes);
    if let Ok(image) = &today {
        if image.is_whole() {
            return today.map_err(|e| e.to_string());
        }
    }
    match postcard::from_bytes::<PreviousGraphImage>(bytes).map(GraphImage::from) {
        Ok(image) if image.is_whole() => Ok(image),
        _ => Err(match today {
            Ok(_) => "its columns disagree in length".into(),
            Err(e) => format!("cannot be decoded ({e})"),
        }),
    }
}

/// A customer's identity as the customer view shows it; `customer` alone when the graph
/// does not know it.
fn cluster_view(cluster: Option<Cluster>, customer: CustomerId) -> ClusterView {
    let Some(cluster) = cluster else {
        return ClusterView {
            identifiers: Vec::new(),
            links: Vec::new(),
            keys: vec![customer],
        };
    };
    let links = cluster
        .evidence
        .iter()
        .filter(|e| e.decision != Decision::Single)
        .map(|e| {
            let (decision, reason) = match &e.decision {
                Decision::Linked { merged: true } => ("merged", None),
                Decision::Linked { merged: false } => ("linked", None),
                Decision::Refused(r) => ("refused", Some(r.to_string())),
                Decision::Revoked => ("revoked", None),
                Decision::Single => ("single", None),
            };
            let reason = match (decision, e.refusals.first()) {
                ("linked" | "merged", Some(r)) => Some(format!("partly refused: {r}")),
                _ => reason,
            };
            LinkView {
                evidence: e.id.0,
                source: e.evidence.source.as_str().into(),
                at: e.evidence.at,
                event: e.evidence.event.clone(),
                identifiers: e
                    .evidence
                    .identifiers
                    .iter()
                    .map(|i| i.to_string())
                    .collect(),
                decision: decision.into(),
                reason,
            }
        })
        .collect();
    ClusterView {
        identifiers: cluster
            .identifiers
            .iter()
            .map(|i| IdentifierView {
                kind: i.kind.to_string(),
                value: i.value.to_string(),
            })
            .collect(),
        links,
        keys: if cluster.keys.is_empty() {
            vec![customer]
        } else {
            cluster.keys
        },
    }
}

fn parse_source(s: &str) -> Source {
    match s {
        "identify" => Source::Identify,
        "alias" => Source::Alias,
        _ => Source::Event,
    }
}

fn row(id: EvidenceId, e: &Evidence, revoked: bool) -> EvidenceRow {
    let ids: Vec<String> = e.identifiers.iter().map(Identifier::to_string).collect();
    EvidenceRow {
        id: id.0,
        source: e.source.as_str().into(),
        at: e.at,
        event: e.event.clone(),
        identifiers: serde_json::to_string(&ids).expect("strings serialize"),
        revoked,
    }
}

fn corrupt(id: u64, reason: impl std::fmt::Display) -> AppError {
    AppError::Identity(format!(
        "identity evidence {id} in the metadata database cannot be read: {reason}"
    ))
}

/// The evidence an evidence row records.
fn evidence_of(r: &EvidenceRow) -> Result<Evidence, AppError> {
    let ids: Vec<String> = serde_json::from_str(&r.identifiers).map_err(|e| corrupt(r.id, e))?;
    let identifiers = ids
        .iter()
        .map(|s| parse_stored(s))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| corrupt(r.id, e))?;
    Ok(Evidence {
        source: parse_source(&r.source),
        at: r.at,
        event: r.event.clone(),
        identifiers,
    })
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The graph's primary identifier of `ids`, as an index into them.
fn primary_index(rules: &IdentityGraph, ids: &[Identifier]) -> Option<usize> {
    let p = rules.primary(ids)?;
    ids.iter().position(|i| std::ptr::eq(i, p))
}

/// A stored `kind:value`: the value is in normal form already, so it is not normalized
/// again (which would cost more than everything else of loading).
fn parse_stored(text: &str) -> Result<Identifier, omnitrail_model::IdentifierError> {
    let bad = || omnitrail_model::IdentifierError::BadKind(text.to_string());
    let (kind, value) = match text.strip_prefix("social:") {
        Some(rest) => {
            let (network, value) = rest.split_once(':').ok_or_else(bad)?;
            (&text[..7 + network.len()], value)
        }
        None => text.split_once(':').ok_or_else(bad)?,
    };
    Ok(Identifier {
        kind: omnitrail_model::IdentifierKind::parse(kind)?,
        value: value.to_string(),
    })
}

/// How an event is referred to in evidence: its id, or what and when.
fn event_ref(e: &Event) -> String {
    match &e.event_id {
        Some(id) => id.to_string(),
        None => format!("{} on {} at {}", e.activity, e.channel, e.timestamp),
    }
}

/// Writes what graph changes must persist, in one transaction.
fn persist(
    store: &Store,
    project: ProjectId,
    graph: &IdentityGraph,
    changes: &[Persisted],
) -> Result<u64, AppError> {
    let mut evidence: BTreeMap<u64, EvidenceRow> = BTreeMap::new();
    let mut keys = Vec::new();
    for change in changes {
        match change {
            Persisted::Evidence { id, .. }
            | Persisted::Earlier { id, .. }
            | Persisted::Revoked { id } => {
                if let Some((ev, decision)) = graph.evidence(*id) {
                    evidence.insert(id.0, row(*id, &ev, decision == Decision::Revoked));
                }
            }
            Persisted::Key { identifier, key } => keys.push((identifier.to_string(), key.0)),
        }
    }
    let evidence: Vec<EvidenceRow> = evidence.into_values().collect();
    store.meta().save_identity(project, &evidence, &keys)?;
    Ok((evidence.len() + keys.len()) as u64)
}

impl Identities {
    pub fn new(guardrails: Guardrails) -> Identities {
        Identities {
            rules: Arc::new(IdentityGraph::new(guardrails.clone())),
            guardrails,
            graphs: RwLock::new(HashMap::new()),
            generation: AtomicU64::new(0),
            overlays: RwLock::new(HashMap::new()),
            loaded: OnceLock::new(),
            checkpoints: Mutex::new(HashMap::new()),
            settled_snapshots: Mutex::new(HashMap::new()),
        }
    }

    pub fn is_loaded(&self) -> bool {
        self.loaded.get().is_some()
    }

    fn ensure_loaded(&self, store: &Store) -> Result<(), AppError> {
        self.loaded
            .get_or_init(|| self.load(store).map_err(|e| e.to_string()))
            .clone()
            .map_err(AppError::Identity)
    }

    /// The canonical customer of each key, as far as the graph in memory knows: the
    /// store's placer. A graph not read yet is not read for this; its keys are their own
    /// customers, which is always a valid placement (reads move them if they merged).
    pub fn canonical_keys(&self, project: ProjectId, keys: &[CustomerId]) -> Vec<CustomerId> {
        if !self.is_loaded() {
            return keys.to_vec();
        }
        match self.read().get(&project) {
            Some(graph) => keys.iter().map(|&k| graph.customer_of_key(k)).collect(),
            None => keys.to_vec(),
        }
    }

    /// The store's rule for keying events: the graph's primary identifier.
    pub fn primary_rule(&self) -> PrimaryRule {
        let rules = self.rules.clone();
        Arc::new(move |ids: &[Identifier]| primary_index(&rules, ids))
    }

    /// The index of the identifier that keys `identifiers`; `None` when every one of them
    /// is a blocklisted junk value.
    pub fn primary(&self, identifiers: &[Identifier]) -> Option<usize> {
        primary_index(&self.rules, identifiers)
    }

    fn write(&self) -> RwLockWriteGuard<'_, HashMap<ProjectId, IdentityGraph>> {
        self.graphs.write().unwrap_or_else(|p| p.into_inner())
    }

    fn read(&self) -> RwLockReadGuard<'_, HashMap<ProjectId, IdentityGraph>> {
        self.graphs.read().unwrap_or_else(|p| p.into_inner())
    }

    fn changed(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
    }

    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// Refuses a data dir whose events were keyed under other priorities or blocklists:
    /// keys would no longer follow from identifiers. Limits and weak kinds may change.
    pub fn check_primary_rule(&self, store: &Store) -> Result<(), AppError> {
        let g = &self.guardrails;
        let rule = serde_json::json!({
            "priorities": g.priorities,
            "social_priority": g.social_priority,
            "custom_priority": g.custom_priority,
            "builtin_blocklist": g.builtin_blocklist,
            "blocked_values": g.blocked_values,
            "blocked_by_kind": g.blocked_by_kind,
        })
        .to_string();
        let meta = store.meta();
        match meta.setting("identity.primary_rule")? {
            Some(stored) if stored != rule => Err(AppError::Identity(format!(
                "identity priorities or blocklists in omnitrail.toml differ from those this data dir was keyed with ({stored}); restore them, or import into a new data dir"
            ))),
            Some(_) => Ok(()),
            // A reader records nothing; the writer records the rule on its own open.
            None if store.is_read_only() => Ok(()),
            None => Ok(meta.set_setting("identity.primary_rule", &rule)?),
        }
    }

    /// Persists graph changes and counts them towards the next snapshot.
    fn persist(
        &self,
        store: &Store,
        project: ProjectId,
        graph: &IdentityGraph,
        changes: &[Persisted],
    ) -> Result<(), AppError> {
        // A reader's graph takes in the log tail of its snapshot like a writer's, but the
        // writer that logged those events persists their evidence itself.
        if store.is_read_only() {
            return Ok(());
        }
        let rows = persist(store, project, graph, changes)?;
        if rows > 0 {
            lock(&self.checkpoints)
                .entry(project)
                .or_default()
                .rows_since += rows;
        }
        Ok(())
    }

    /// One project's graph as the database holds it (without the log tail): its snapshot
    /// file and the rows written since, or every row when the snapshot is missing, stale or
    /// damaged.
    fn open_project(&self, store: &Store, project: ProjectId) -> Result<IdentityGraph, AppError> {
        let at = store.meta().identity_revision(project)?;
        let why = match store.read_identity_snapshot(project) {
            Ok(Some(snap)) if snap.at.epoch != at.epoch => {
                format!(
                    "the identity snapshot of project {} is older than an erase",
                    project.0
                )
            }
            Ok(Some(snap)) if snap.at.rev > at.rev => format!(
                "the identity snapshot of project {} is at revision {} but the metadata database only at {}",
                project.0, snap.at.rev, at.rev
            ),
            Ok(Some(snap)) => match self.open_snapshot(store, project, snap) {
                Ok((graph, rows)) => {
                    lock(&self.checkpoints).insert(
                        project,
                        Checkpoint {
                            snapshot_rev: Some(at.rev),
                            rows_since: rows,
                            frozen: false,
                        },
                    );
                    return Ok(graph);
                }
                Err(e) => format!("the identity snapshot of project {} is unusable: {e}", project.0),
            },
            Ok(None) if at.rev == 0 => String::new(),
            Ok(None) => format!("project {} has no identity snapshot yet", project.0),
            Err(e) => e.to_string(),
        };
        if !why.is_empty() {
            tracing::warn!("{why}; rebuilding the identity graph from the metadata database");
        }
        let graph = self.restore_project(store, project)?;
        let stats = graph.stats();
        lock(&self.checkpoints).insert(
            project,
            Checkpoint {
                snapshot_rev: None,
                rows_since: stats.evidence + stats.keys,
                frozen: false,
            },
        );
        Ok(graph)
    }

    /// The graph a snapshot file holds: a settled image (opened as it is under the same
    /// guardrails, replayed under others), or in files of version 1 a snapshot to replay,
    /// after a summary or alone.
    fn decode_snapshot(&self, snap: &IdentitySnapshot) -> Result<IdentityGraph, String> {
        let undecodable = |e: postcard::Error| format!("cannot be decoded ({e})");
        if !snap.is_version_1() {
            if snap.sections() != SECTIONS {
                return Err(format!("has {} sections, not {SECTIONS}", snap.sections()));
            }
            let bytes = snap.section(IMAGE).map_err(|e| e.to_string())?;
            return IdentityGraph::open_image(self.guardrails.clone(), decode_image(bytes)?)
                .map_err(|e| e.to_string());
        }
        let payload = snap.section(0).map_err(|e| e.to_string())?;
        let snapshot: Snapshot = match postcard::take_from_bytes::<SnapshotSummary>(payload) {
            Ok((_, graph_bytes)) => postcard::from_bytes(graph_bytes),
            Err(_) => postcard::from_bytes(payload),
        }
        .or_else(|_| postcard::from_bytes(payload))
        .map_err(undecodable)?;
        Ok(IdentityGraph::restore(self.guardrails.clone(), snapshot))
    }

    /// The graph of a snapshot file brought up to date with the rows written after it.
    /// Returns the graph and how many rows that took; any disagreement between the rows
    /// and the snapshot is an error, and the caller rebuilds from every row instead.
    fn open_snapshot(
        &self,
        store: &Store,
        project: ProjectId,
        snap: IdentitySnapshot,
    ) -> Result<(IdentityGraph, u64), String> {
        let mut graph = self.decode_snapshot(&snap)?;
        let at = snap.at;
        // The mapping is not needed past the decode.
        drop(snap);
        let (rows, keys) = {
            let meta = store.meta();
            (
                meta.identity_evidence_since(project, at.rev)
                    .map_err(|e| e.to_string())?,
                meta.identity_keys_since(project, at.rev)
                    .map_err(|e| e.to_string())?,
            )
        };
        let applied = (rows.len() + keys.len()) as u64;
        for r in rows {
            let evidence = evidence_of(&r).map_err(|e| e.to_string())?;
            let id = EvidenceId(r.id);
            let known = graph.evidence(id);
            let same_origin = known.as_ref().is_some_and(|(e, _)| {
                e.source == evidence.source && e.at == evidence.at && e.event == evidence.event
            });
            if !same_origin {
                // New evidence, or an identifier set seen again with an earlier origin:
                // observing it again is what the graph did when the row was written.
                let observed = graph.observe(evidence);
                if observed.evidence != id {
                    return Err(format!(
                        "evidence {} of the metadata database became evidence {} on top of it",
                        r.id, observed.evidence.0
                    ));
                }
            }
            let revoked = graph
                .evidence(id)
                .is_some_and(|(_, d)| d == Decision::Revoked);
            if r.revoked && !revoked {
                graph.revoke(id).map_err(|e| e.to_string())?;
            }
        }
        for (identifier, key) in keys {
            let identifier = parse_stored(&identifier)
                .map_err(|e| format!("identity key of '{identifier}': {e}"))?;
            graph
                .set_key(&identifier, CustomerId(key))
                .map_err(|e| e.to_string())?;
        }
        Ok((graph, applied))
    }

    /// Writes a snapshot of every loaded project whose rows since its last snapshot reach
    /// the checkpoint share of its graph, or of any that changed at all when `force`.
    /// The graph is copied under its read lock (no identity row can be written meanwhile,
    /// so the copy is exactly the database at the revision read with it) and encoded and
    /// written without it.
    pub fn checkpoint(&self, store: &Store, force: bool) -> Result<(), AppError> {
        match self.loaded.get() {
            Some(Ok(())) => self.checkpoint_loaded(store, force),
            _ => Ok(()),
        }
    }

    fn checkpoint_loaded(&self, store: &Store, force: bool) -> Result<(), AppError> {
        if store.is_read_only() {
            return Ok(());
        }
        let projects: Vec<ProjectId> = self.read().keys().copied().collect();
        for project in projects {
            let captured = {
                let graphs = self.read();
                let Some(graph) = graphs.get(&project) else {
                    continue;
                };
                let state = lock(&self.checkpoints).get(&project).copied();
                let state = state.unwrap_or_default();
                let stats = graph.stats();
                let size = stats.evidence + stats.identifiers;
                let due = force
                    || (state.snapshot_rev.is_none() && state.rows_since > 0)
                    || state.rows_since >= CHECKPOINT_MIN_ROWS.max(size / CHECKPOINT_SHARE);
                if !due {
                    continue;
                }
                let at = store.meta().identity_revision(project)?;
                // Read after the revision: an erase freezes before its rows go, so a
                // revision of the new epoch is never paired with the old graph.
                // Checked and recorded under one lock, so a freeze in between is not lost.
                {
                    let mut checkpoints = lock(&self.checkpoints);
                    let entry = checkpoints.entry(project).or_default();
                    if entry.frozen || state.snapshot_rev == Some(at.rev) {
                        continue;
                    }
                    *entry = Checkpoint {
                        snapshot_rev: Some(at.rev),
                        ..Checkpoint::default()
                    };
                }
                let summary = SnapshotSummary {
                    guardrails: self.guardrails_json(),
                    keys: stats.keys,
                    customers: graph.keyed_clusters(),
                };
                (at, summary, overlay_section(graph), graph.image())
            };
            let (at, summary, overlay, image) = captured;
            if let Err(e) = self.write_snapshot(store, project, at, &summary, &overlay, &image) {
                // The rows are the durable record; a missing snapshot only costs time.
                if let Some(c) = lock(&self.checkpoints).get_mut(&project) {
                    c.snapshot_rev = None;
                }
                return Err(e);
            }
        }
        Ok(())
    }

    fn write_snapshot(
        &self,
        store: &Store,
        project: ProjectId,
        at: IdentityRevision,
        summary: &SnapshotSummary,
        overlay: &[u8],
        image: &GraphImage,
    ) -> Result<(), AppError> {
        let encoding =
            |e: postcard::Error| AppError::Identity(format!("encoding the identity snapshot: {e}"));
        let summary = postcard::to_stdvec(summary).map_err(encoding)?;
        let image = postcard::to_stdvec(image).map_err(encoding)?;
        if !store.write_identity_snapshot(project, at, &[&summary, overlay, &image])? {
            tracing::debug!(
                "identity snapshot of project {} skipped: an erase ran",
                project.0
            );
        }
        Ok(())
    }

    /// One project's graph as the metadata database holds it (without the log tail).
    fn restore_project(
        &self,
        store: &Store,
        project: ProjectId,
    ) -> Result<IdentityGraph, AppError> {
        let (rows, keys) = {
            let meta = store.meta();
            (
                meta.identity_evidence(project)?,
                meta.identity_keys(project)?,
            )
        };
        // One snapshot of every record, restored in a single canonical pass.
        let mut snapshot = Snapshot::new();
        let mut revoked = Vec::new();
        let bad = |e: IdentityError| AppError::Identity(e.to_string());
        for r in rows {
            let evidence = evidence_of(&r)?;
            let id = EvidenceId(r.id);
            snapshot
                .apply(&Persisted::Evidence { id, evidence })
                .map_err(|e| corrupt(r.id, e))?;
            if r.revoked {
                revoked.push(id);
            }
        }
        for id in revoked {
            snapshot.apply(&Persisted::Revoked { id }).map_err(bad)?;
        }
        for (identifier, key) in keys {
            let identifier = parse_stored(&identifier)
                .map_err(|e| AppError::Identity(format!("identity key of '{identifier}': {e}")))?;
            snapshot
                .apply(&Persisted::Key {
                    identifier,
                    key: CustomerId(key),
                })
                .map_err(bad)?;
        }
        Ok(IdentityGraph::restore(self.guardrails.clone(), snapshot))
    }

    /// Stops snapshots of a project until [`Identities::reload`] has read its graph again:
    /// called before an erase deletes rows.
    pub fn freeze_snapshots(&self, project: ProjectId) {
        lock(&self.checkpoints).entry(project).or_default().frozen = true;
    }

    /// Reads one project's graph again after rows were deleted (an erasure): from the
    /// database, then the project's events still in the log.
    pub fn reload(&self, store: &Store, project: ProjectId) -> Result<(), AppError> {
        if self.loaded.get().is_none() {
            // Not read yet: the first need reads what is there now.
            return Ok(());
        }
        self.ensure_loaded(store)?;
        let graph = self.restore_project(store, project)?;
        self.write().insert(project, graph);
        // The erase removed the snapshot; the next checkpoint writes one without the person.
        lock(&self.checkpoints).insert(project, Checkpoint::default());
        let mut keys = Vec::new();
        let mut events = Vec::new();
        for r in store
            .tail_records()
            .into_iter()
            .filter(|r| r.project == project)
        {
            if let Some(i) = self.primary(&r.event.identifiers) {
                keys.push((r.event.identifiers[i].clone(), Some(r.customer)));
            }
            events.push(r.event);
        }
        self.observe_loaded(store, project, &events)?;
        self.set_keys_loaded(store, project, keys)?;
        self.overlays
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&project);
        self.changed();
        Ok(())
    }

    /// Rebuilds every project's graph from the metadata database and the log tail.
    fn load(&self, store: &Store) -> Result<(), AppError> {
        let projects = store.meta().projects()?;
        for (project, _) in projects {
            let graph = self.open_project(store, project)?;
            self.write().insert(project, graph);
        }
        // The log tail may hold events whose keys were not yet written.
        let mut tail: HashMap<ProjectId, Vec<(Identifier, Option<CustomerId>)>> = HashMap::new();
        let mut tail_events: HashMap<ProjectId, Vec<Event>> = HashMap::new();
        for r in store.tail_records() {
            if let Some(i) = self.primary(&r.event.identifiers) {
                tail.entry(r.project)
                    .or_default()
                    .push((r.event.identifiers[i].clone(), Some(r.customer)));
            }
            tail_events.entry(r.project).or_default().push(r.event);
        }
        for (project, events) in tail_events {
            self.observe_loaded(store, project, &events)?;
        }
        for (project, keys) in tail {
            self.set_keys_loaded(store, project, keys)?;
        }
        self.recover_lost_keys(store)?;
        self.changed();
        // The graphs answer from now on; the mappings would only hold pages.
        lock(&self.settled_snapshots).clear();
        // A rebuild (or a long way from the last snapshot) is not paid again next time.
        if let Err(e) = self.checkpoint_loaded(store, false) {
            tracing::warn!("could not write the identity snapshot: {e}");
        }
        Ok(())
    }

    /// How many customers `project` has: its clusters holding a write-time key (each key is
    /// handed out with an event, and an erase removes both). `None` when the graphs may not
    /// know every key the store handed out (a batch between its store and its keys, or keys
    /// a reader cannot recover), and only the events can tell.
    pub fn customers(&self, store: &Store, project: ProjectId) -> Result<Option<u64>, AppError> {
        if self.loaded.get().is_none() {
            if let Some(n) = self.customers_from_snapshots(store, project)? {
                return Ok(Some(n));
            }
        }
        self.ensure_loaded(store)?;
        let graphs = self.read();
        let known: u64 = graphs.values().map(|g| g.stats().keys).sum();
        if known + store.meta().erased_keys()? != store.allocated_keys() {
            return Ok(None);
        }
        Ok(Some(graphs.get(&project).map_or(0, |g| g.keyed_clusters())))
    }

    /// [`Identities::customers`] from the snapshots' summaries, without reading a graph.
    fn customers_from_snapshots(
        &self,
        store: &Store,
        project: ProjectId,
    ) -> Result<Option<u64>, AppError> {
        Ok(self.settled(store)?.map(|projects| {
            projects
                .into_iter()
                .find(|(p, ..)| *p == project)
                .map_or(0, |(_, _, summary)| summary.customers)
        }))
    }

    /// [`Identities::overlay`] from the project's snapshot, without reading a graph.
    fn overlay_from_snapshots(
        &self,
        store: &Store,
        project: ProjectId,
    ) -> Result<Option<Arc<Overlay>>, AppError> {
        let settled = match self.settled_project(store, project)? {
            SettledProject::No => return Ok(None),
            SettledProject::Empty => return Ok(Some(Arc::new(Overlay::new()))),
            SettledProject::Snapshot(settled) => settled,
        };
        let overlay = settled.overlay.get_or_init(|| {
            settled
                .snap
                .section(OVERLAY)
                .map_err(|e| e.to_string())
                .and_then(parse_overlay)
                .map(Arc::new)
        });
        match overlay {
            Ok(overlay) => Ok(Some(overlay.clone())),
            Err(e) => {
                tracing::warn!(
                    "the identity snapshot of project {} is unusable: {e}",
                    project.0
                );
                Ok(None)
            }
        }
    }

    /// The project's snapshot if the snapshots are settled: the one mapped before while it
    /// is still the one on disk (same revision and epoch), so that its sections are checked
    /// and parsed once.
    fn settled_project(
        &self,
        store: &Store,
        project: ProjectId,
    ) -> Result<SettledProject, AppError> {
        let Some(projects) = self.settled(store)? else {
            return Ok(SettledProject::No);
        };
        let Some((_, snap, _)) = projects.into_iter().find(|(p, ..)| *p == project) else {
            return Ok(SettledProject::Empty);
        };
        let Some(snap) = snap else {
            return Ok(SettledProject::Empty);
        };
        if snap.is_version_1() || snap.sections() != SECTIONS {
            // Written before overlays and images: only the graph can tell.
            return Ok(SettledProject::No);
        }
        let mut cache = lock(&self.settled_snapshots);
        let settled = match cache.get(&project) {
            Some(cached) if cached.snap.at == snap.at => cached.clone(),
            _ => {
                let fresh = Arc::new(SettledSnapshot {
                    snap,
                    overlay: OnceLock::new(),
                });
                cache.insert(project, fresh.clone());
                fresh
            }
        };
        Ok(SettledProject::Snapshot(settled))
    }

    /// Every project's snapshot and summary when they are the whole truth: each snapshot at
    /// its database's revision and epoch and settled under today's guardrails, and the
    /// store handed out no key they lack. `None` otherwise; the graphs must then be read.
    /// A project without a single identity row has no snapshot and an empty summary.
    #[allow(clippy::type_complexity)]
    fn settled(
        &self,
        store: &Store,
    ) -> Result<Option<Vec<(ProjectId, Option<IdentitySnapshot>, SnapshotSummary)>>, AppError> {
        let guardrails = self.guardrails_json();
        let mut settled = Vec::new();
        let mut keys = 0;
        // Bound first: the metadata guard must not live through the loop.
        let projects = store.meta().projects()?;
        for (p, _) in projects {
            let at = store.meta().identity_revision(p)?;
            let (snap, summary) = match store.read_identity_snapshot(p) {
                Ok(Some(snap)) if snap.at == at => {
                    let summary = snap.section(0).ok().and_then(|bytes| {
                        // Files of version 1 carry the summary at the head of the payload.
                        postcard::take_from_bytes::<SnapshotSummary>(bytes)
                            .ok()
                            .map(|(summary, _)| summary)
                    });
                    match summary {
                        Some(s) if s.guardrails == guardrails => (Some(snap), s),
                        _ => return Ok(None),
                    }
                }
                Ok(None) if at.rev == 0 => (
                    None,
                    SnapshotSummary {
                        guardrails: String::new(),
                        keys: 0,
                        customers: 0,
                    },
                ),
                _ => return Ok(None),
            };
            keys += summary.keys;
            settled.push((p, snap, summary));
        }
        if keys + store.meta().erased_keys()? != store.allocated_keys() {
            return Ok(None);
        }
        Ok(Some(settled))
    }

    fn guardrails_json(&self) -> String {
        serde_json::to_string(&self.guardrails).expect("guardrails serialize to JSON")
    }

    /// A crash between storing events and writing their keys, followed by a compaction
    /// before the restart, leaves keys only in the store. Fewer keys here than the store
    /// allocated means that happened: ask the store's key index about every identifier the
    /// graph knows, and if keys are still missing (identifiers only ever seen alone), read
    /// every stored event once. Both are rare recovery paths.
    fn recover_lost_keys(&self, store: &Store) -> Result<(), AppError> {
        // A reader cannot write what it would recover; keys its snapshot's log holds are
        // set from the log itself, and the writer recovers the rest on its own open.
        if store.is_read_only() {
            return Ok(());
        }
        let known = |graphs: &HashMap<ProjectId, IdentityGraph>| -> u64 {
            graphs.values().map(|g| g.stats().keys).sum()
        };
        // Keys an erasure removed are gone on purpose, not lost.
        let erased = store.meta().erased_keys()?;
        let mut graphs = self.write();
        if known(&graphs) + erased >= store.allocated_keys() {
            return Ok(());
        }
        let projects: Vec<ProjectId> = store.meta().projects()?.into_iter().map(|p| p.0).collect();
        for &project in &projects {
            let graph = graphs
                .entry(project)
                .or_insert_with(|| IdentityGraph::new(self.guardrails.clone()));
            let mut keys = Vec::new();
            for id in graph.clusters().into_iter().flatten() {
                if let Some(key) = store.key_of(project, &id)? {
                    keys.push((id, key));
                }
            }
            self.recover(store, project, graph, keys)?;
        }
        if known(&graphs) + erased < store.allocated_keys() {
            for &project in &projects {
                let graph = graphs
                    .entry(project)
                    .or_insert_with(|| IdentityGraph::new(self.guardrails.clone()));
                let keys: Vec<(Identifier, CustomerId)> = store
                    .records(project)?
                    .into_iter()
                    .filter_map(|r| {
                        let i = self.primary(&r.event.identifiers)?;
                        Some((r.event.identifiers[i].clone(), r.customer))
                    })
                    .collect();
                self.recover(store, project, graph, keys)?;
            }
        }
        Ok(())
    }

    fn recover(
        &self,
        store: &Store,
        project: ProjectId,
        graph: &mut IdentityGraph,
        keys: Vec<(Identifier, CustomerId)>,
    ) -> Result<(), AppError> {
        let mut changes = Vec::new();
        for (id, key) in keys {
            let c = graph
                .set_key(&id, key)
                .map_err(|e| AppError::Identity(e.to_string()))?;
            changes.extend(c.persist);
        }
        if !changes.is_empty() {
            tracing::warn!("recovered {} identity keys from the store", changes.len());
            self.persist(store, project, graph, &changes)?;
        }
        Ok(())
    }

    /// Records the links `events` carry, durably, before the events are stored.
    pub fn observe(
        &self,
        store: &Store,
        project: ProjectId,
        events: &[Event],
    ) -> Result<(), AppError> {
        self.ensure_loaded(store)?;
        self.observe_loaded(store, project, events)
    }

    fn observe_loaded(
        &self,
        store: &Store,
        project: ProjectId,
        events: &[Event],
    ) -> Result<(), AppError> {
        let mut graphs = self.write();
        let graph = graphs
            .entry(project)
            .or_insert_with(|| IdentityGraph::new(self.guardrails.clone()));
        // Most events repeat an identifier set seen before: keep each set's earliest event
        // of the batch (what the graph would keep) and hand the graph only those.
        let mut earliest: HashMap<&[Identifier], &Event> = HashMap::new();
        // One identifier links nothing; its node comes with its key (`set_keys`).
        for e in events.iter().filter(|e| e.identifiers.len() > 1) {
            earliest
                .entry(e.identifiers.as_slice())
                .and_modify(|first| {
                    let earlier = e.timestamp < first.timestamp
                        || (e.timestamp == first.timestamp && event_ref(e) < event_ref(first));
                    if earlier {
                        *first = e;
                    }
                })
                .or_insert(e);
        }
        let mut distinct: Vec<&Event> = earliest.into_values().collect();
        // Same evidence order whatever the hash order: ids are dense in arrival order.
        distinct.sort_by(|a, b| (a.timestamp, &a.identifiers).cmp(&(b.timestamp, &b.identifiers)));
        let observed = graph.observe_batch(distinct.into_iter().map(|e| Evidence {
            source: Source::Event,
            at: e.timestamp,
            event: Some(event_ref(e)),
            identifiers: e.identifiers.clone(),
        }));
        self.persist(store, project, graph, &observed.changed.persist)?;
        if !observed.changed.remapped.is_empty() {
            self.changed();
        }
        Ok(())
    }

    /// Records one `identify` or `alias` call's link, durably.
    pub fn link(
        &self,
        store: &Store,
        project: ProjectId,
        evidence: Evidence,
    ) -> Result<(), AppError> {
        self.ensure_loaded(store)?;
        let mut graphs = self.write();
        let graph = graphs
            .entry(project)
            .or_insert_with(|| IdentityGraph::new(self.guardrails.clone()));
        let observed = graph.observe(evidence);
        self.persist(store, project, graph, &observed.changed.persist)?;
        drop(graphs);
        if !observed.changed.remapped.is_empty() {
            self.changed();
        }
        Ok(())
    }

    /// Records the write-time key of each stored event's primary identifier.
    pub fn set_keys(
        &self,
        store: &Store,
        project: ProjectId,
        keys: impl IntoIterator<Item = (Identifier, Option<CustomerId>)>,
    ) -> Result<(), AppError> {
        self.ensure_loaded(store)?;
        self.set_keys_loaded(store, project, keys)
    }

    fn set_keys_loaded(
        &self,
        store: &Store,
        project: ProjectId,
        keys: impl IntoIterator<Item = (Identifier, Option<CustomerId>)>,
    ) -> Result<(), AppError> {
        let mut graphs = self.write();
        let graph = graphs
            .entry(project)
            .or_insert_with(|| IdentityGraph::new(self.guardrails.clone()));
        let mut changes = Vec::new();
        let mut remapped = false;
        // A batch names the same primary identifier many times; set each once.
        let distinct: HashMap<Identifier, CustomerId> = keys
            .into_iter()
            .filter_map(|(id, key)| Some((id, key?)))
            .collect();
        let mut distinct: Vec<(Identifier, CustomerId)> = distinct.into_iter().collect();
        distinct.sort_unstable();
        for (primary, key) in distinct {
            let c = graph
                .set_key(&primary, key)
                .map_err(|e| AppError::Identity(e.to_string()))?;
            remapped |= !c.remapped.is_empty();
            changes.extend(c.persist);
        }
        self.persist(store, project, graph, &changes)?;
        if remapped {
            self.changed();
        }
        Ok(())
    }

    /// The overlay of a project's merges, cached until the graph changes. Without any
    /// linking evidence stored or waiting in the log it is empty, and the graph stays unread.
    pub fn overlay(&self, store: &Store, project: ProjectId) -> Result<Arc<Overlay>, AppError> {
        if self.loaded.get().is_none()
            && !store.meta().has_identity_evidence()?
            && !store.tail_any(|r| r.event.identifiers.len() > 1)
        {
            return Ok(Arc::new(Overlay::new()));
        }
        let generation = self.generation();
        if self.loaded.get().is_none() {
            // Analyses need only the overlay, which a settled snapshot holds on its own.
            if let Some(overlay) = self.overlay_from_snapshots(store, project)? {
                self.overlays
                    .write()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(project, (generation, overlay.clone()));
                return Ok(overlay);
            }
        }
        self.ensure_loaded(store)?;
        let generation = self.generation();
        if let Some((g, o)) = self
            .overlays
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&project)
        {
            if *g == generation {
                return Ok(o.clone());
            }
        }
        let overlay: Overlay = self
            .read()
            .get(&project)
            .map(|g| g.overlay().collect())
            .unwrap_or_default();
        let overlay = Arc::new(overlay);
        self.overlays
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(project, (generation, overlay.clone()));
        Ok(overlay)
    }

    /// The customers an agent's text may mean, with the identifier that matched: `c42`
    /// (a customer id or any write-time key of one), `kind:value`, or a bare value in
    /// every kind's normal form.
    pub fn find(
        &self,
        store: &Store,
        project: ProjectId,
        text: &str,
    ) -> Result<Vec<(CustomerId, Identifier)>, AppError> {
        if let Some(found) = self.with_image(store, project, |image| find_in(image, text))? {
            return Ok(found);
        }
        self.ensure_loaded(store)?;
        let graphs = self.read();
        Ok(graphs
            .get(&project)
            .and_then(|graph| find_in(graph, text))
            .unwrap_or_default())
    }

    /// `answer` from the project's settled image while no graph is read (a customer view in
    /// a fresh process or a server that has not ingested: one component instead of the
    /// whole graph); `None` when the graph must answer.
    fn with_image<T>(
        &self,
        store: &Store,
        project: ProjectId,
        answer: impl FnOnce(&ImageLookup) -> Option<T>,
    ) -> Result<Option<T>, AppError> {
        if self.loaded.get().is_some() {
            return Ok(None);
        }
        let SettledProject::Snapshot(settled) = self.settled_project(store, project)? else {
            return Ok(None);
        };
        let image = settled
            .snap
            .section(IMAGE)
            .map_err(|e| e.to_string())
            .and_then(decode_image);
        match image {
            Ok(image) if image.guardrails() == &self.guardrails => {
                Ok(answer(&ImageLookup(image, project)))
            }
            Ok(_) => Ok(None),
            Err(e) => {
                tracing::warn!(
                    "the identity snapshot of project {} is unusable: {e}; reading the graph",
                    project.0
                );
                Ok(None)
            }
        }
    }

    /// Identifiers, links with their evidence, and write-time keys of a customer.
    pub fn cluster(
        &self,
        store: &Store,
        project: ProjectId,
        customer: CustomerId,
    ) -> Result<ClusterView, AppError> {
        if let Some(cluster) = self.with_image(store, project, |image| image.cluster(customer))? {
            return Ok(cluster_view(cluster, customer));
        }
        self.ensure_loaded(store)?;
        let graphs = self.read();
        let cluster = graphs.get(&project).and_then(|g| g.cluster(customer));
        Ok(cluster_view(cluster, customer))
    }

    /// Splits `id` off its customer and persists the revocations.
    pub fn unmerge(
        &self,
        store: &Store,
        project: ProjectId,
        id: &Identifier,
    ) -> Result<(), AppError> {
        self.ensure_loaded(store)?;
        let mut graphs = self.write();
        let graph = graphs
            .get_mut(&project)
            .ok_or_else(|| AppError::CustomerNotFound(id.to_string()))?;
        let changed = graph
            .unmerge(id)
            .map_err(|e| AppError::Identity(e.to_string()))?;
        self.persist(store, project, graph, &changed.persist)?;
        drop(graphs);
        self.changed();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::{parse_stored, SnapshotSummary};
    use crate::{App, AppOptions};
    use omnitrail_model::{Identifier, ProjectId};

    const P: ProjectId = ProjectId::DEFAULT;

    /// The overlay and every cluster, as the graph in memory resolves them.
    fn resolution(app: &App) -> String {
        let overlay = app.identities.overlay(app.store(), P).expect("overlay");
        let mut overlay: Vec<_> = overlay.iter().map(|(k, c)| (k.0, c.0)).collect();
        overlay.sort_unstable();
        let graphs = app.identities.read();
        format!("{overlay:?} {:?}", graphs[&P].clusters())
    }

    #[test]
    fn snapshots_written_before_images_still_open() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut app = App::open(dir.path(), AppOptions::default()).expect("open");
        let cfg = omnitrail_synth::SynthConfig {
            customers: 150,
            ..Default::default()
        };
        app.generate_demo(&cfg, &|_, _| {}).expect("demo");
        let expected = resolution(&app);
        let (summary, snapshot) = {
            let graphs = app.identities.read();
            let g = &graphs[&P];
            let summary = SnapshotSummary {
                guardrails: app.identities.guardrails_json(),
                keys: g.stats().keys,
                customers: g.keyed_clusters(),
            };
            (summary, g.snapshot())
        };
        let at = app.store().meta().identity_revision(P).expect("revision");
        drop(app);
        // Both payloads of version-1 files: a summary and the snapshot, or the snapshot.
        let payloads = [
            postcard::to_stdvec(&(&summary, &snapshot)).expect("encode"),
            postcard::to_stdvec(&snapshot).expect("encode"),
        ];
        let path = dir
            .path()
            .join("identity")
            .join(format!("{}.snapshot", P.0));
        for payload in payloads {
            let mut bytes = b"OTIDS\0\0\x01".to_vec();
            bytes.extend_from_slice(&at.rev.to_le_bytes());
            bytes.extend_from_slice(&at.epoch.to_le_bytes());
            bytes.extend_from_slice(&(payload.len() as u64).to_le_bytes());
            bytes.extend_from_slice(&payload);
            let crc = crc32fast::hash(&bytes);
            bytes.extend_from_slice(&crc.to_le_bytes());
            std::fs::write(&path, &bytes).expect("write");
            let reader = App::open_read_only(dir.path(), AppOptions::default()).expect("reader");
            assert_eq!(reader.stats(P).expect("stats").customers, summary.customers);
            assert_eq!(resolution(&reader), expected);
            drop(reader);
            assert_eq!(
                std::fs::read(&path).expect("file"),
                bytes,
                "a reader writes nothing"
            );
        }
    }

    #[test]
    fn stored_identifiers_read_back_as_written() {
        for text in [
            "email:ana@example.com",
            "phone:+15551234567",
            "social:twitter:ana_b",
            "loyalty_card:x:1",
        ] {
            let id = parse_stored(text).unwrap();
            assert_eq!(id.to_string(), text);
            assert_eq!(Identifier::parse_qualified(text).unwrap(), id);
        }
        assert!(parse_stored("no-kind").is_err());
        assert!(parse_stored("social:twitter").is_err());
    }
}
