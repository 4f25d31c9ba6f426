//! The identity graph: interned identifiers, evidence, potential components and clusters.
//!
//! Layout. Identifiers are interned into dense `u32` node ids and evidence into dense `u32`
//! evidence ids, each a fixed-size record in one vector (a [`Node`] is one cache line, an
//! [`Ev`] half of one), with identifier values, evidence identifier lists and event
//! references in flat side vectors: millions of each, without a per-item allocation.
//! Hash indexes of ids find identifiers, identifier sets and keys. Two union-finds run over
//! the nodes:
//!
//! - *potential components* (`Node::p*`) join the linkable identifiers of every evidence,
//!   accepted, refused or revoked. They never split, so after an unmerge they are a superset
//!   of the true component; replaying a superset gives the same clusters, because evidence
//!   only ever looks at the clusters of its own identifiers. Each component keeps a circular
//!   list of its nodes and of its evidence, and its canonically last applied evidence.
//! - *clusters* (`Node::c*`) join only accepted links. A component's clusters are rebuilt
//!   from scratch by replaying its evidence in canonical order; evidence that sorts after
//!   everything already applied in its component is simply applied on top, which is the same.
//!
//! Evidence with fewer than two linkable identifiers never links anything and its outcome
//! does not depend on order: it is applied once and never replayed.

use crate::guardrails::{Blocklist, Guardrails};
use crate::index::{hash_identifier, hash_nodes, mix, IdIndex, NONE};
use crate::snapshot::{Snapshot, SnapshotData, SnapshotEvidence, SnapshotIdentifiers};
use crate::types::{
    Changed, Cluster, ClusterEvidence, Decision, Evidence, EvidenceId, GraphStats, IdentityError,
    Observed, ObservedBatch, Persisted, Refusal, RefusalReason, Remap, Source,
};
use omnitrail_model::{CustomerId, Identifier, IdentifierKind, Text, Timestamp};
use std::cmp::Ordering;
use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};

mod component;
mod image;
pub use component::{ComponentGraph, Cut};
pub use image::{GraphImage, PreviousGraphImage};

/// A multiplicative hasher for the `u32` evidence ids keying the refusals map: replays
/// look it up for every evidence, and SipHash showed in profiles.
#[derive(Default, Clone, Copy)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }

    fn write_u32(&mut self, n: u32) {
        self.0 = mix(u64::from(n));
    }
}

type RefusalMap = HashMap<u32, Vec<NodeRefusal>, BuildHasherDefault<IdHasher>>;

/// `Node::key` / `Node::cmin` of a node or cluster without a write-time key.
const NO_KEY: u64 = u64::MAX;

const META_SOURCE: u8 = 0b0011;
const META_REVOKED: u8 = 0b0100;
/// Observed in the current call but not applied yet.
const META_PENDING: u8 = 0b1000;
/// At least two linkable (non-blocked) identifiers. Other evidence never changes a cluster
/// and its outcome does not depend on order: it is applied once and never replayed.
const META_MULTI: u8 = 0b1_0000;

const NODE_BLOCKED: u8 = 0b01;
const NODE_WEAK: u8 = 0b10;

/// The built-in kinds, registered first so their numbers need no hash lookup.
const BUILTIN_KINDS: [IdentifierKind; 6] = [
    IdentifierKind::UserId,
    IdentifierKind::AnonymousId,
    IdentifierKind::Email,
    IdentifierKind::Phone,
    IdentifierKind::DeviceId,
    IdentifierKind::CrmId,
];

fn builtin_kind(kind: &IdentifierKind) -> Option<u32> {
    Some(match kind {
        IdentifierKind::UserId => 0,
        IdentifierKind::AnonymousId => 1,
        IdentifierKind::Email => 2,
        IdentifierKind::Phone => 3,
        IdentifierKind::DeviceId => 4,
        IdentifierKind::CrmId => 5,
        IdentifierKind::Social(_) | IdentifierKind::Custom(_) => return None,
    })
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    Single,
    Linked,
    Merged,
    Refused,
    Revoked,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
enum Reason {
    Blocklisted,
    Limit {
        kind: u32,
        would_have: usize,
        limit: usize,
    },
    WeakLink {
        via: u32,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct NodeRefusal {
    node: u32,
    reason: Reason,
}

#[derive(Clone, Debug)]
struct KindInfo {
    kind: IdentifierKind,
    name: String,
    limit: usize,
    priority: u32,
    weak: bool,
}

/// What observing one evidence leaves to do.
enum Settle {
    Nothing,
    /// New evidence to apply (or to replay its component for).
    Apply(u32),
    /// Evidence whose canonical position moved: replay the component of this node.
    Replay(u32),
}

/// One identifier. Everything a link or replay touches about a node is in one cache line:
/// at millions of nodes, separate columns cost a cache miss each.
#[derive(Clone, Copy, Debug)]
#[repr(C, align(64))]
struct Node {
    /// Smallest key in the cluster (at its root): its canonical customer id.
    cmin: u64,
    /// This identifier's write-time key.
    key: u64,
    kind: u32,
    /// Potential component: parent, size (at the root), circular node list, some evidence
    /// of the component (entry to the circular `Ev::next` list), and its canonically last
    /// applied evidence (both at the root).
    pparent: u32,
    psize: u32,
    pnext: u32,
    pev: u32,
    plast: u32,
    /// Cluster: parent, size and strong (non-weak) identifiers (at the root), circular
    /// member list.
    cparent: u32,
    csize: u32,
    cstrong: u32,
    cnext: u32,
    flags: u8,
    /// Kinds present in the cluster (at its root), see `kind_bit`: two clusters that share
    /// no kind cannot exceed a limit together, so the member walk is skipped.
    kmask: u8,
}

/// One bit for each of the first seven kinds registered (the six built-in ones come first),
/// and one shared by all later kinds.
fn kind_bit(kind: u32) -> u8 {
    1 << kind.min(7)
}

/// One evidence; its identifiers are `ev_nodes[start..start + len]`, in identifier order.
#[derive(Clone, Copy, Debug)]
struct Ev {
    at: i64,
    /// Offset of its event reference in the event arena, or `NO_EVENT`.
    event: u64,
    start: u32,
    len: u32,
    /// Circular list of the evidence of a potential component.
    next: u32,
    meta: u8,
    outcome: Outcome,
}

const NO_EVENT: u64 = u64::MAX;

/// Reusable buffers, so that observing evidence does not allocate per call.
#[derive(Clone, Default)]
struct Scratch {
    list: Vec<u32>,
    link: Vec<u32>,
    refused: Vec<NodeRefusal>,
    counts: Vec<(u32, usize)>,
    nodes: Vec<u32>,
    evs: Vec<u32>,
    before: Vec<u64>,
    old: Vec<(u32, Outcome, Option<Vec<NodeRefusal>>)>,
    tracker: Tracker,
}

/// Collects what a mutating call changed.
#[derive(Clone, Default)]
struct Tracker {
    /// (key, from, to) in the order they happened.
    remaps: Vec<(u64, u64, u64)>,
    touched: Vec<u64>,
    /// Evidence that is new or changed origin: its customers' views changed.
    evidence: Vec<u32>,
    persist: Vec<Persisted>,
}

impl Tracker {
    /// The caller's copy; the buffers stay for the next call (only non-empty results
    /// allocate).
    fn changed(&mut self) -> Changed {
        // A key can move twice in one call (merged into c5, then c5 into c3): keep its first
        // `from` and last `to`. The sort is stable, so "first" and "last" are in time order.
        self.remaps.sort_by_key(|r| r.0);
        let mut remapped: Vec<Remap> = Vec::new();
        for &(key, from, to) in &self.remaps {
            match remapped.last_mut() {
                Some(last) if last.key.0 == key => last.to = CustomerId(to),
                _ => remapped.push(Remap {
                    key: CustomerId(key),
                    from: CustomerId(from),
                    to: CustomerId(to),
                }),
            }
        }
        remapped.retain(|r| r.from != r.to);
        self.touched.retain(|&k| k != NO_KEY);
        self.touched.sort_unstable();
        self.touched.dedup();
        let changed = Changed {
            remapped,
            touched: self.touched.iter().copied().map(CustomerId).collect(),
            persist: std::mem::take(&mut self.persist),
        };
        self.remaps.clear();
        self.touched.clear();
        self.evidence.clear();
        changed
    }
}

/// The event reference stored at `at` in an event arena (a LEB128 length and UTF-8 bytes),
/// `None` for [`NO_EVENT`] or bytes that are not one.
fn event_at(arena: &[u8], at: u64) -> Option<&str> {
    if at == NO_EVENT {
        return None;
    }
    let mut i = usize::try_from(at).ok()?;
    let (mut len, mut shift) = (0usize, 0u32);
    loop {
        let byte = *arena.get(i)?;
        i += 1;
        len |= usize::from(byte & 0x7f).checked_shl(shift)?;
        shift += 7;
        if byte & 0x80 == 0 {
            break;
        }
    }
    // The arena only ever receives whole `&str`s, so this is valid UTF-8 unless damaged.
    arena
        .get(i..i.checked_add(len)?)
        .and_then(|bytes| std::str::from_utf8(bytes).ok())
}

/// A pure, deterministic identity graph; see the crate documentation for the model.
///
/// Identifiers, evidence and identifier references are numbered with `u32`: a graph holds
/// at most 2³²−2 of each, and panics past that.
#[derive(Clone)]
pub struct IdentityGraph {
    guardrails: Guardrails,
    blocklist: Blocklist,
    kinds: Vec<KindInfo>,
    /// Social and custom kinds (built-in kinds have fixed numbers).
    kind_ids: HashMap<IdentifierKind, u32>,

    nodes: Vec<Node>,
    /// Identifier kinds and values, apart from `nodes`: interning compares both with one
    /// cache miss; output reads them.
    values: Vec<(u32, Text)>,
    node_index: IdIndex,
    key_index: IdIndex,

    evs: Vec<Ev>,
    ev_nodes: Vec<u32>,
    /// Event references, each a LEB128 length and UTF-8 bytes: no per-evidence allocation.
    events: Vec<u8>,
    /// Only evidence with refusals has an entry.
    refusals: RefusalMap,
    ev_index: IdIndex,

    scratch: Scratch,
}

impl fmt::Debug for IdentityGraph {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdentityGraph")
            .field("identifiers", &self.nodes.len())
            .field("evidence", &self.evs.len())
            .field("guardrails", &self.guardrails)
            .finish_non_exhaustive()
    }
}

impl Default for IdentityGraph {
    fn default() -> Self {
        IdentityGraph::new(Guardrails::default())
    }
}

fn dense(n: usize, what: &str) -> u32 {
    match u32::try_from(n) {
        Ok(v) if v != NONE => v,
        _ => panic!(
            "identity graph capacity exceeded: more than {} {what}",
            NONE - 1
        ),
    }
}

impl IdentityGraph {
    pub fn new(guardrails: Guardrails) -> Self {
        let mut g = IdentityGraph {
            blocklist: Blocklist::new(&guardrails),
            guardrails,
            kinds: Vec::new(),
            kind_ids: HashMap::new(),
            nodes: Vec::new(),
            values: Vec::new(),
            node_index: IdIndex::default(),
            key_index: IdIndex::default(),
            evs: Vec::new(),
            ev_nodes: Vec::new(),
            events: Vec::new(),
            refusals: RefusalMap::default(),
            ev_index: IdIndex::default(),
            scratch: Scratch::default(),
        };
        for kind in BUILTIN_KINDS {
            g.register_kind(kind);
        }
        g
    }

    pub fn guardrails(&self) -> &Guardrails {
        &self.guardrails
    }

    // ---- kinds and nodes ----------------------------------------------------------------

    fn register_kind(&mut self, kind: IdentifierKind) -> u32 {
        let id = dense(self.kinds.len(), "identifier kinds");
        self.kinds.push(KindInfo {
            name: kind.as_str().into_owned(),
            limit: self.guardrails.limit(&kind),
            priority: self.guardrails.priority(&kind),
            weak: self.guardrails.is_weak(&kind),
            kind: kind.clone(),
        });
        if builtin_kind(&kind).is_none() {
            self.kind_ids.insert(kind, id);
        }
        id
    }

    fn find_kind(&self, kind: &IdentifierKind) -> Option<u32> {
        builtin_kind(kind).or_else(|| self.kind_ids.get(kind).copied())
    }

    fn kind_id(&mut self, kind: &IdentifierKind) -> u32 {
        match self.find_kind(kind) {
            Some(k) => k,
            None => self.register_kind(kind.clone()),
        }
    }

    fn find_node_hashed(&self, hash: u64, kind: u32, value: &str) -> Option<u32> {
        self.node_index.find(hash, |n| {
            let (k, v) = &self.values[n as usize];
            *k == kind && v == value
        })
    }

    fn find_node(&self, kind: u32, value: &str) -> Option<u32> {
        self.find_node_hashed(hash_identifier(kind, value), kind, value)
    }

    fn node_of(&self, id: &Identifier) -> Option<u32> {
        self.find_kind(&id.kind)
            .and_then(|k| self.find_node(k, &id.value))
    }

    fn intern(&mut self, kind: u32, value: &str) -> u32 {
        let hash = hash_identifier(kind, value);
        if let Some(n) = self.find_node_hashed(hash, kind, value) {
            return n;
        }
        let n = dense(self.nodes.len(), "identifiers");
        let info = &self.kinds[kind as usize];
        let blocked = self.blocklist.blocks(&info.kind, value);
        let mut flags = 0;
        if blocked {
            flags |= NODE_BLOCKED;
        }
        if info.weak {
            flags |= NODE_WEAK;
        }
        self.nodes.push(Node {
            cmin: NO_KEY,
            key: NO_KEY,
            kind,
            pparent: n,
            psize: 1,
            pnext: n,
            pev: NONE,
            plast: NONE,
            cparent: n,
            csize: 1,
            cstrong: u32::from(!blocked && !info.weak),
            cnext: n,
            flags,
            kmask: kind_bit(kind),
        });
        self.values.push((kind, Text::from(value)));
        self.node_index.insert(hash, n);
        n
    }

    fn node(&self, n: u32) -> &Node {
        &self.nodes[n as usize]
    }

    fn node_mut(&mut self, n: u32) -> &mut Node {
        &mut self.nodes[n as usize]
    }

    fn blocked(&self, n: u32) -> bool {
        self.node(n).flags & NODE_BLOCKED != 0
    }

    fn weak(&self, n: u32) -> bool {
        self.node(n).flags & NODE_WEAK != 0
    }

    fn kind_of(&self, n: u32) -> &KindInfo {
        &self.kinds[self.node(n).kind as usize]
    }

    fn value(&self, n: u32) -> &str {
        self.values[n as usize].1.as_str()
    }

    fn identifier(&self, n: u32) -> Identifier {
        Identifier {
            kind: self.kind_of(n).kind.clone(),
            value: self.value(n).to_string(),
        }
    }

    /// Identifier order: kind, then value.
    fn node_cmp(&self, a: u32, b: u32) -> Ordering {
        if a == b {
            return Ordering::Equal;
        }
        let (ka, kb) = (self.node(a).kind, self.node(b).kind);
        let kinds = if ka == kb {
            Ordering::Equal
        } else {
            self.kinds[ka as usize]
                .kind
                .cmp(&self.kinds[kb as usize].kind)
        };
        kinds.then_with(|| self.value(a).cmp(self.value(b)))
    }

    /// Link order: priority, then value, then kind. The first is the primary identifier.
    fn link_cmp(&self, a: u32, b: u32) -> Ordering {
        let (ka, kb) = (self.kind_of(a), self.kind_of(b));
        ka.priority
            .cmp(&kb.priority)
            .then_with(|| self.value(a).cmp(self.value(b)))
            .then_with(|| ka.kind.cmp(&kb.kind))
    }

    // ---- evidence -----------------------------------------------------------------------

    fn ev(&self, x: u32) -> &Ev {
        &self.evs[x as usize]
    }

    fn ev_mut(&mut self, x: u32) -> &mut Ev {
        &mut self.evs[x as usize]
    }

    fn ev_range(&self, x: u32) -> std::ops::Range<usize> {
        let e = self.ev(x);
        e.start as usize..e.start as usize + e.len as usize
    }

    fn ev_list(&self, x: u32) -> &[u32] {
        &self.ev_nodes[self.ev_range(x)]
    }

    fn list_cmp(&self, a: &[u32], b: &[u32]) -> Ordering {
        for (&x, &y) in a.iter().zip(b) {
            let o = self.node_cmp(x, y);
            if o != Ordering::Equal {
                return o;
            }
        }
        a.len().cmp(&b.len())
    }

    /// Canonical order: time, then the sorted identifier list (unique per evidence).
    fn ev_cmp(&self, a: u32, b: u32) -> Ordering {
        self.ev(a)
            .at
            .cmp(&self.ev(b).at)
            .then_with(|| self.list_cmp(self.ev_list(a), self.ev_list(b)))
    }

    fn revoked(&self, x: u32) -> bool {
        self.ev(x).meta & META_REVOKED != 0
    }

    fn multi(&self, x: u32) -> bool {
        self.ev(x).meta & META_MULTI != 0
    }

    fn source(&self, x: u32) -> Source {
        Source::from_code(self.ev(x).meta & META_SOURCE)
    }

    fn first_linkable(&self, x: u32) -> Option<u32> {
        self.ev_list(x).iter().copied().find(|&n| !self.blocked(n))
    }

    fn find_evidence(&self, hash: u64, list: &[u32]) -> Option<u32> {
        self.ev_index.find(hash, |x| self.ev_list(x) == list)
    }

    fn store_event(&mut self, event: Option<&str>) -> u64 {
        let Some(event) = event else {
            return NO_EVENT;
        };
        let at = self.events.len() as u64;
        let mut len = event.len();
        loop {
            let byte = (len & 0x7f) as u8;
            len >>= 7;
            if len == 0 {
                self.events.push(byte);
                break;
            }
            self.events.push(byte | 0x80);
        }
        self.events.extend_from_slice(event.as_bytes());
        at
    }

    fn event(&self, x: u32) -> Option<&str> {
        event_at(&self.events, self.ev(x).event)
    }

    /// Appends evidence whose node list is in identifier order and joins its potential
    /// component. `indexed` is false only for a duplicate set in a hand-made snapshot.
    #[allow(clippy::too_many_arguments)]
    fn push_evidence(
        &mut self,
        hash: u64,
        list: &[u32],
        source: Source,
        at: Timestamp,
        event: Option<&str>,
        meta: u8,
        indexed: bool,
    ) -> u32 {
        let x = dense(self.evs.len(), "pieces of evidence");
        let start = dense(self.ev_nodes.len(), "identifier references");
        dense(self.ev_nodes.len() + list.len(), "identifier references");
        let event = self.store_event(event);
        let linkable = list.iter().filter(|&&n| !self.blocked(n)).count();
        let meta = if linkable >= 2 {
            meta | META_MULTI
        } else {
            meta
        };
        self.evs.push(Ev {
            at: at.as_micros(),
            event,
            start,
            len: list.len() as u32,
            next: x,
            meta: source.code() | meta,
            outcome: if meta & META_REVOKED != 0 {
                Outcome::Revoked
            } else {
                Outcome::Single
            },
        });
        self.ev_nodes.extend_from_slice(list);
        if indexed {
            self.ev_index.insert(hash, x);
        }
        let mut first = None;
        for &n in list {
            if self.blocked(n) {
                continue;
            }
            match first {
                None => first = Some(n),
                Some(f) => self.punion(f, n),
            }
        }
        if let Some(f) = first {
            let r = self.pfind(f);
            let entry = self.node(r).pev;
            if entry == NONE {
                self.node_mut(r).pev = x;
            } else {
                // Splice x into the circular list after the entry.
                let after = self.ev(entry).next;
                self.ev_mut(entry).next = x;
                self.ev_mut(x).next = after;
            }
        }
        x
    }

    /// Records an evidence (or finds its identifier set) without applying it yet.
    fn insert(&mut self, mut e: Evidence, t: &mut Tracker) -> (u32, bool, Settle) {
        e.identifiers.sort_unstable();
        e.identifiers.dedup();
        let mut list = std::mem::take(&mut self.scratch.list);
        list.clear();
        for id in &e.identifiers {
            let k = self.kind_id(&id.kind);
            list.push(self.intern(k, &id.value));
        }
        // Sorted identifiers intern to a list already in identifier order.
        let hash = hash_nodes(&list);
        let out = match self.find_evidence(hash, &list) {
            Some(x) => {
                let settle = self.offer_origin(x, e.source, e.at, e.event, t);
                (x, false, settle)
            }
            None => {
                let x = self.push_evidence(
                    hash,
                    &list,
                    e.source,
                    e.at,
                    e.event.as_deref(),
                    META_PENDING,
                    true,
                );
                t.evidence.push(x);
                t.persist.push(Persisted::Evidence {
                    id: EvidenceId(u64::from(x)),
                    evidence: e,
                });
                (x, true, Settle::Apply(x))
            }
        };
        self.scratch.list = list;
        out
    }

    /// The same identifier set seen again: keep the earliest origin.
    fn offer_origin(
        &mut self,
        x: u32,
        source: Source,
        at: Timestamp,
        event: Option<String>,
        t: &mut Tracker,
    ) -> Settle {
        let old_at = self.ev(x).at;
        if (at.as_micros(), source, event.as_deref()) >= (old_at, self.source(x), self.event(x)) {
            return Settle::Nothing;
        }
        let moved = at.as_micros() != old_at;
        let stored = self.store_event(event.as_deref());
        let e = self.ev_mut(x);
        e.at = at.as_micros();
        e.meta = (e.meta & !META_SOURCE) | source.code();
        e.event = stored;
        let meta = e.meta;
        t.evidence.push(x);
        t.persist.push(Persisted::Earlier {
            id: EvidenceId(u64::from(x)),
            source,
            at,
            event,
        });
        // Only a settled, live evidence that links and moved earlier changes the replay order.
        if !moved || meta & (META_REVOKED | META_PENDING) != 0 || meta & META_MULTI == 0 {
            return Settle::Nothing;
        }
        match self.first_linkable(x) {
            Some(n) => Settle::Replay(n),
            None => Settle::Nothing,
        }
    }

    // ---- union-finds --------------------------------------------------------------------

    fn pfind(&mut self, mut x: u32) -> u32 {
        loop {
            let parent = self.node(x).pparent;
            if parent == x {
                return x;
            }
            let grand = self.node(parent).pparent;
            self.node_mut(x).pparent = grand;
            x = grand;
        }
    }

    fn pfind_ro(&self, mut x: u32) -> u32 {
        while self.node(x).pparent != x {
            x = self.node(x).pparent;
        }
        x
    }

    fn punion(&mut self, a: u32, b: u32) {
        let (ra, rb) = (self.pfind(a), self.pfind(b));
        if ra == rb {
            return;
        }
        let (big, small) = if self.node(ra).psize >= self.node(rb).psize {
            (ra, rb)
        } else {
            (rb, ra)
        };
        let (s, b) = (*self.node(small), *self.node(big));
        let last = match (b.plast, s.plast) {
            (l, NONE) => l,
            (NONE, l) => l,
            (l, m) => {
                if self.ev_cmp(l, m) == Ordering::Greater {
                    l
                } else {
                    m
                }
            }
        };
        match (b.pev, s.pev) {
            (_, NONE) => {}
            (NONE, _) => self.node_mut(big).pev = s.pev,
            (be, se) => {
                // Splice the two circular evidence lists.
                let (bn, sn) = (self.ev(be).next, self.ev(se).next);
                self.ev_mut(be).next = sn;
                self.ev_mut(se).next = bn;
            }
        }
        self.node_mut(small).pparent = big;
        self.node_mut(small).pnext = b.pnext;
        let root = self.node_mut(big);
        root.psize += s.psize;
        root.pnext = s.pnext;
        root.plast = last;
    }

    fn cfind(&mut self, mut x: u32) -> u32 {
        loop {
            let parent = self.node(x).cparent;
            if parent == x {
                return x;
            }
            let grand = self.node(parent).cparent;
            self.node_mut(x).cparent = grand;
            x = grand;
        }
    }

    fn cfind_ro(&self, mut x: u32) -> u32 {
        while self.node(x).cparent != x {
            x = self.node(x).cparent;
        }
        x
    }

    fn cunion(&mut self, a: u32, b: u32) -> u32 {
        let (big, small) = if self.node(a).csize >= self.node(b).csize {
            (a, b)
        } else {
            (b, a)
        };
        let (s, b) = (*self.node(small), *self.node(big));
        self.node_mut(small).cparent = big;
        self.node_mut(small).cnext = b.cnext;
        let root = self.node_mut(big);
        root.csize += s.csize;
        root.cstrong += s.cstrong;
        root.cmin = root.cmin.min(s.cmin);
        root.cnext = s.cnext;
        root.kmask |= s.kmask;
        big
    }

    fn canonical(&mut self, n: u32) -> u64 {
        let r = self.cfind(n);
        self.node(r).cmin
    }

    fn members(&self, root: u32) -> Vec<u32> {
        let mut out = vec![root];
        let mut m = self.node(root).cnext;
        while m != root {
            out.push(m);
            m = self.node(m).cnext;
        }
        out
    }

    // ---- applying evidence --------------------------------------------------------------

    /// Applies one evidence on top of the current clusters: link its identifiers in link
    /// order into the cluster of the first, refusing what breaks a guardrail.
    fn apply(&mut self, x: u32, track: Option<&mut Tracker>) {
        self.apply_fresh(x, track, false);
    }

    /// `cleared`: the caller already removed the evidence's old refusals (replays do, for
    /// the whole component at once).
    fn apply_fresh(&mut self, x: u32, mut track: Option<&mut Tracker>, cleared: bool) {
        let mut link = std::mem::take(&mut self.scratch.link);
        let mut refused = std::mem::take(&mut self.scratch.refused);
        link.clear();
        refused.clear();
        let range = self.ev_range(x);
        for i in range.clone() {
            let n = self.ev_nodes[i];
            if self.blocked(n) {
                refused.push(NodeRefusal {
                    node: n,
                    reason: Reason::Blocklisted,
                });
            } else {
                link.push(n);
            }
        }
        if link.len() > 1 {
            link.sort_unstable_by(|&a, &b| self.link_cmp(a, b));
        }
        if let Some(t) = track.as_deref_mut() {
            for i in range.clone() {
                let c = self.canonical(self.ev_nodes[i]);
                t.touched.push(c);
            }
        }
        let (mut linked, mut merged) = (0usize, false);
        if let Some(&first) = link.first() {
            let mut c = self.cfind(first);
            linked = 1;
            for &n in &link[1..] {
                let r = self.cfind(n);
                if r == c {
                    linked += 1;
                    continue;
                }
                match self.check(c, r, n, &link) {
                    Some(reason) => refused.push(NodeRefusal { node: n, reason }),
                    None => {
                        if let Some(t) = track.as_deref_mut() {
                            self.track_union(c, r, t);
                        }
                        c = self.cunion(c, r);
                        merged = true;
                        linked += 1;
                    }
                }
            }
        }
        self.ev_mut(x).outcome = if linked >= 2 {
            if merged {
                Outcome::Merged
            } else {
                Outcome::Linked
            }
        } else if refused.is_empty() {
            Outcome::Single
        } else {
            Outcome::Refused
        };
        if refused.is_empty() {
            if !cleared && !self.refusals.is_empty() {
                self.refusals.remove(&x);
            }
        } else {
            refused.sort_by(|a, b| self.link_cmp(a.node, b.node));
            self.refusals.insert(x, refused.clone());
        }
        if let Some(t) = track {
            for i in range {
                let c = self.canonical(self.ev_nodes[i]);
                t.touched.push(c);
            }
        }
        self.scratch.link = link;
        self.scratch.refused = refused;
    }

    /// Why clusters `c` (holding the evidence's first identifier) and `r` (holding `n`) may
    /// not be joined by the evidence whose linkable identifiers are `link`, if they may not.
    fn check(&mut self, c: u32, r: u32, n: u32, link: &[u32]) -> Option<Reason> {
        if self.node(c).cstrong > 0 && self.node(r).cstrong > 0 {
            // Both sides are someone already: only strong evidence on both sides joins them.
            let (mut in_c, mut in_r) = (false, false);
            for &m in link {
                if !self.weak(m) {
                    let mr = self.cfind(m);
                    in_c |= mr == c;
                    in_r |= mr == r;
                }
            }
            if !(in_c && in_r) {
                let via = if self.weak(n) {
                    n
                } else {
                    // n is strong, so the evidence is weak on c's side: name that identifier.
                    link.iter()
                        .copied()
                        .find(|&m| self.weak(m) && self.cfind_ro(m) == c)
                        .unwrap_or(link[0])
                };
                return Some(Reason::WeakLink { via });
            }
        }
        // Only kinds present on both sides can exceed a limit: each side already respects it.
        if self.node(c).kmask & self.node(r).kmask == 0 {
            return None;
        }
        let (small, big) = if self.node(c).csize <= self.node(r).csize {
            (c, r)
        } else {
            (r, c)
        };
        let mut counts = std::mem::take(&mut self.scratch.counts);
        counts.clear();
        let mut m = small;
        loop {
            let k = self.node(m).kind;
            match counts.iter_mut().find(|e| e.0 == k) {
                Some(e) => e.1 += 1,
                None => counts.push((k, 1)),
            }
            m = self.node(m).cnext;
            if m == small {
                break;
            }
        }
        let mut m = big;
        loop {
            let k = self.node(m).kind;
            if let Some(e) = counts.iter_mut().find(|e| e.0 == k) {
                e.1 += 1;
            }
            m = self.node(m).cnext;
            if m == big {
                break;
            }
        }
        let worst = counts
            .iter()
            .filter(|&&(k, count)| count > self.kinds[k as usize].limit)
            .min_by(|a, b| {
                let (ka, kb) = (&self.kinds[a.0 as usize], &self.kinds[b.0 as usize]);
                ka.priority
                    .cmp(&kb.priority)
                    .then_with(|| ka.kind.cmp(&kb.kind))
            })
            .copied();
        self.scratch.counts = counts;
        worst.map(|(kind, would_have)| Reason::Limit {
            kind,
            would_have,
            limit: self.kinds[kind as usize].limit,
        })
    }

    /// Before joining clusters `a` and `b`: the keys of the one with the larger canonical
    /// id move to the smaller.
    fn track_union(&self, a: u32, b: u32, t: &mut Tracker) {
        let (ma, mb) = (self.node(a).cmin, self.node(b).cmin);
        if ma == NO_KEY || mb == NO_KEY || ma == mb {
            return;
        }
        let (loser, from, to) = if ma > mb { (a, ma, mb) } else { (b, mb, ma) };
        let mut m = loser;
        loop {
            let key = self.node(m).key;
            if key != NO_KEY {
                t.remaps.push((key, from, to));
            }
            m = self.node(m).cnext;
            if m == loser {
                break;
            }
        }
    }

    /// Rebuilds the clusters of the potential component rooted at `root` by replaying its
    /// live evidence in canonical order.
    fn replay(&mut self, root: u32, track: Option<&mut Tracker>) {
        let mut nodes = std::mem::take(&mut self.scratch.nodes);
        let mut evs = std::mem::take(&mut self.scratch.evs);
        let mut before = std::mem::take(&mut self.scratch.before);
        let mut old = std::mem::take(&mut self.scratch.old);
        nodes.clear();
        evs.clear();
        before.clear();
        old.clear();
        let mut n = root;
        loop {
            nodes.push(n);
            n = self.node(n).pnext;
            if n == root {
                break;
            }
        }
        let entry = self.node(root).pev;
        if entry != NONE {
            let mut x = entry;
            loop {
                // Revoked evidence was settled by the revoke; single-identifier evidence
                // does not depend on order.
                if self.ev(x).meta & (META_MULTI | META_REVOKED) == META_MULTI {
                    evs.push(x);
                }
                x = self.ev(x).next;
                if x == entry {
                    break;
                }
            }
        }
        if track.is_some() {
            for &n in &nodes {
                let c = self.canonical(n);
                before.push(c);
            }
            for &x in &evs {
                old.push((x, self.ev(x).outcome, self.refusals.remove(&x)));
            }
        } else {
            for &x in &evs {
                self.refusals.remove(&x);
            }
        }
        for &n in &nodes {
            let node = self.node_mut(n);
            node.cparent = n;
            node.csize = 1;
            node.cstrong = u32::from(node.flags & (NODE_BLOCKED | NODE_WEAK) == 0);
            node.cnext = n;
            node.cmin = node.key;
            node.kmask = kind_bit(node.kind);
        }
        evs.sort_unstable_by(|&a, &b| self.ev_cmp(a, b));
        for &x in &evs {
            self.apply_fresh(x, None, true);
        }
        self.node_mut(root).plast = evs.last().copied().unwrap_or(NONE);
        if let Some(t) = track {
            for (&n, &b) in nodes.iter().zip(&before) {
                let a = self.canonical(n);
                if a != b {
                    let key = self.node(n).key;
                    if key != NO_KEY {
                        t.remaps.push((key, b, a));
                    }
                    t.touched.push(b);
                    t.touched.push(a);
                }
            }
            for (x, outcome, refusals) in old.drain(..) {
                if self.ev(x).outcome != outcome || self.refusals.get(&x) != refusals.as_ref() {
                    for i in self.ev_range(x) {
                        let c = self.canonical(self.ev_nodes[i]);
                        t.touched.push(c);
                    }
                }
            }
        }
        self.scratch.nodes = nodes;
        self.scratch.evs = evs;
        self.scratch.before = before;
        self.scratch.old = old;
    }

    /// Applies new evidence `x`, on top when it sorts after its component's applied
    /// evidence, by replaying the component otherwise.
    fn settle(&mut self, settle: Settle, t: &mut Tracker) {
        match settle {
            Settle::Nothing => {}
            Settle::Apply(x) => {
                self.ev_mut(x).meta &= !META_PENDING;
                match self.first_linkable(x).filter(|_| self.multi(x)) {
                    None => self.apply(x, Some(t)),
                    Some(n) => {
                        let r = self.pfind(n);
                        let last = self.node(r).plast;
                        if last == NONE || self.ev_cmp(x, last) == Ordering::Greater {
                            self.apply(x, Some(t));
                            self.node_mut(r).plast = x;
                        } else {
                            self.replay(r, Some(t));
                        }
                    }
                }
            }
            Settle::Replay(n) => {
                let r = self.pfind(n);
                self.replay(r, Some(t));
            }
        }
    }

    /// Starts tracking a mutating call with the reusable buffers.
    fn begin(&mut self) -> Tracker {
        std::mem::take(&mut self.scratch.tracker)
    }

    /// Reports the customers of evidence that is new or changed origin, once settled, and
    /// hands the buffers back.
    fn finish(&mut self, mut t: Tracker) -> Changed {
        for &x in &t.evidence {
            for i in self.ev_range(x) {
                let c = self.canonical(self.ev_nodes[i]);
                t.touched.push(c);
            }
        }
        let changed = t.changed();
        self.scratch.tracker = t;
        changed
    }

    // ---- public API: observing ----------------------------------------------------------

    /// Adds one evidence and applies it. Observing the same identifier set again returns
    /// the existing evidence, keeping the earliest origin (time, source, event reference).
    /// An identifier set that was revoked stays revoked.
    pub fn observe(&mut self, e: Evidence) -> Observed {
        let mut t = self.begin();
        let (x, is_new, settle) = self.insert(e, &mut t);
        self.settle(settle, &mut t);
        Observed {
            evidence: EvidenceId(u64::from(x)),
            is_new,
            changed: self.finish(t),
        }
    }

    /// Adds many evidence at once: each affected component is replayed at most once, which
    /// is much cheaper than [`IdentityGraph::observe`] for bulk loads that are not in time
    /// order. The result is the same as observing them one by one.
    pub fn observe_batch(&mut self, evidence: impl IntoIterator<Item = Evidence>) -> ObservedBatch {
        let mut t = self.begin();
        let mut ids = Vec::new();
        let mut fresh = Vec::new();
        let mut moved = Vec::new();
        for e in evidence {
            let (x, _, settle) = self.insert(e, &mut t);
            ids.push(EvidenceId(u64::from(x)));
            match settle {
                Settle::Nothing => {}
                Settle::Apply(x) => fresh.push(x),
                Settle::Replay(n) => moved.push(n),
            }
        }
        // Per component: replay when some evidence moved or a new one sorts before what is
        // applied; otherwise apply the new evidence on top, in canonical order.
        let mut replay: HashMap<u32, bool> = HashMap::new();
        for n in moved {
            let r = self.pfind(n);
            replay.insert(r, true);
        }
        let mut linkable = Vec::with_capacity(fresh.len());
        for x in fresh {
            self.ev_mut(x).meta &= !META_PENDING;
            if self.multi(x) {
                linkable.push(x);
            } else {
                self.apply(x, Some(&mut t));
            }
        }
        linkable.sort_unstable_by(|&a, &b| self.ev_cmp(a, b));
        for x in linkable {
            let n = self.first_linkable(x).unwrap_or(x);
            let r = self.pfind(n);
            let last = self.node(r).plast;
            let in_order = last == NONE || self.ev_cmp(x, last) == Ordering::Greater;
            let must_replay = *replay.entry(r).or_insert(!in_order);
            if !must_replay {
                self.apply(x, Some(&mut t));
                self.node_mut(r).plast = x;
            }
        }
        let mut roots: Vec<u32> = replay
            .into_iter()
            .filter_map(|(r, must)| must.then_some(r))
            .collect();
        roots.sort_unstable();
        for r in roots {
            self.replay(r, Some(&mut t));
        }
        ObservedBatch {
            evidence: ids,
            changed: self.finish(t),
        }
    }

    /// Attaches the write-time key `key` to `id` (creating the identifier if needed). The
    /// first key of an identifier wins: a second one is ignored. The cluster's canonical id
    /// becomes the smaller of its old one and `key`.
    ///
    /// # Errors
    /// [`IdentityError::KeyTaken`] when `key` already keys another identifier,
    /// [`IdentityError::ReservedKey`] for `CustomerId(u64::MAX)`.
    pub fn set_key(&mut self, id: &Identifier, key: CustomerId) -> Result<Changed, IdentityError> {
        if key.0 == NO_KEY {
            return Err(IdentityError::ReservedKey(key));
        }
        // The identifier was usually just observed, so its own node is the cheap check.
        let existing = self.node_of(id);
        if existing.is_some_and(|n| self.node(n).key == key.0) {
            return Ok(Changed::default());
        }
        let hash = mix(key.0);
        if let Some(owner) = self.key_index.find(hash, |m| self.node(m).key == key.0) {
            return Err(IdentityError::KeyTaken {
                key,
                owner: self.identifier(owner),
                identifier: id.clone(),
            });
        }
        let n = match existing {
            Some(n) => n,
            None => {
                let kind = self.kind_id(&id.kind);
                self.intern(kind, &id.value)
            }
        };
        if self.node(n).key != NO_KEY {
            return Ok(Changed::default());
        }
        self.node_mut(n).key = key.0;
        self.key_index.insert(hash, n);
        let mut t = self.begin();
        let r = self.cfind(n);
        let old = self.node(r).cmin;
        if key.0 < old {
            let mut m = r;
            loop {
                let k = self.node(m).key;
                if k != NO_KEY && m != n {
                    t.remaps.push((k, old, key.0));
                }
                m = self.node(m).cnext;
                if m == r {
                    break;
                }
            }
            self.node_mut(r).cmin = key.0;
        } else {
            t.remaps.push((key.0, key.0, old));
        }
        t.touched.extend([old, self.node(r).cmin]);
        t.persist.push(Persisted::Key {
            identifier: id.clone(),
            key,
        });
        Ok(self.finish(t))
    }

    fn evidence_index(&self, id: EvidenceId) -> Result<u32, IdentityError> {
        match u32::try_from(id.0) {
            Ok(x) if (x as usize) < self.evs.len() => Ok(x),
            _ => Err(IdentityError::UnknownEvidence {
                id,
                len: self.evs.len() as u64,
            }),
        }
    }

    /// Unmerges along one evidence: it stops linking anything (for good: observing the
    /// same identifier set again keeps it revoked). Revoking twice changes nothing.
    pub fn revoke(&mut self, evidence: EvidenceId) -> Result<Changed, IdentityError> {
        let x = self.evidence_index(evidence)?;
        if self.revoked(x) {
            return Ok(Changed::default());
        }
        let mut t = self.begin();
        t.persist.push(Persisted::Revoked { id: evidence });
        self.mark_revoked(x, &mut t);
        if self.multi(x) {
            let n = self.first_linkable(x).unwrap_or(x);
            let r = self.pfind(n);
            self.replay(r, Some(&mut t));
        }
        Ok(self.finish(t))
    }

    /// Revokes `x` itself; its customers' views change (the links it made are undone by
    /// the caller's replay).
    fn mark_revoked(&mut self, x: u32, t: &mut Tracker) {
        let e = self.ev_mut(x);
        e.meta |= META_REVOKED;
        e.outcome = Outcome::Revoked;
        self.refusals.remove(&x);
        t.evidence.push(x);
        for i in self.ev_range(x) {
            let c = self.canonical(self.ev_nodes[i]);
            t.touched.push(c);
        }
    }

    /// Revokes every evidence that links `id` to other identifiers, so that it becomes a
    /// customer of its own.
    pub fn unmerge(&mut self, id: &Identifier) -> Result<Changed, IdentityError> {
        let n = self
            .node_of(id)
            .ok_or_else(|| IdentityError::UnknownIdentifier(id.clone()))?;
        if self.blocked(n) {
            return Ok(Changed::default());
        }
        let r = self.pfind(n);
        let mut targets = Vec::new();
        let entry = self.node(r).pev;
        if entry != NONE {
            let mut x = entry;
            loop {
                if !self.revoked(x) && self.multi(x) && self.ev_list(x).contains(&n) {
                    targets.push(x);
                }
                x = self.ev(x).next;
                if x == entry {
                    break;
                }
            }
        }
        if targets.is_empty() {
            return Ok(Changed::default());
        }
        targets.sort_unstable();
        let mut t = self.begin();
        for &x in &targets {
            t.persist.push(Persisted::Revoked {
                id: EvidenceId(u64::from(x)),
            });
            self.mark_revoked(x, &mut t);
        }
        self.replay(r, Some(&mut t));
        Ok(self.finish(t))
    }

    // ---- public API: reading ------------------------------------------------------------

    /// Whether `id` is junk under the guardrails (whether or not it is in the graph).
    pub fn is_blocked(&self, id: &Identifier) -> bool {
        // The rules are cheaper than a lookup, and interned flags come from the same rules.
        self.blocklist.blocks_identifier(id)
    }

    /// The identifier that keys an event: the non-blocked one of highest priority, ties
    /// broken by value, then kind.
    pub fn primary<'a>(&self, ids: &'a [Identifier]) -> Option<&'a Identifier> {
        ids.iter().filter(|id| !self.is_blocked(id)).min_by(|a, b| {
            self.priority_of(&a.kind)
                .cmp(&self.priority_of(&b.kind))
                .then_with(|| a.value.cmp(&b.value))
                .then_with(|| a.kind.cmp(&b.kind))
        })
    }

    fn priority_of(&self, kind: &IdentifierKind) -> u32 {
        match self.find_kind(kind) {
            Some(k) => self.kinds[k as usize].priority,
            None => self.guardrails.priority(kind),
        }
    }

    /// The canonical customer id of `id`'s cluster: the smallest key in it.
    pub fn customer_of(&self, id: &Identifier) -> Option<CustomerId> {
        let n = self.node_of(id)?;
        let min = self.node(self.cfind_ro(n)).cmin;
        (min != NO_KEY).then_some(CustomerId(min))
    }

    /// The canonical customer of a write-time key: the smallest key of its cluster, or the
    /// key itself if the graph does not know it.
    pub fn customer_of_key(&self, key: CustomerId) -> CustomerId {
        self.key_index
            .find(mix(key.0), |n| self.node(n).key == key.0)
            .map(|n| self.node(self.cfind_ro(n)).cmin)
            .filter(|&min| min != NO_KEY)
            .map_or(key, CustomerId)
    }

    /// The cluster of a customer: `customer` is a canonical id or any key merged into one.
    pub fn cluster(&self, customer: CustomerId) -> Option<Cluster> {
        let n = self
            .key_index
            .find(mix(customer.0), |n| self.node(n).key == customer.0)?;
        Some(self.build_cluster(n))
    }

    /// The cluster holding `id`, keyed or not.
    pub fn cluster_of(&self, id: &Identifier) -> Option<Cluster> {
        self.node_of(id).map(|n| self.build_cluster(n))
    }

    fn build_cluster(&self, n: u32) -> Cluster {
        let root = self.cfind_ro(n);
        let members = self.members(root);
        let mut identifiers: Vec<Identifier> =
            members.iter().map(|&m| self.identifier(m)).collect();
        identifiers.sort_unstable();
        let mut keys: Vec<CustomerId> = members
            .iter()
            .map(|&m| self.node(m).key)
            .filter(|&k| k != NO_KEY)
            .map(CustomerId)
            .collect();
        keys.sort_unstable();
        let touches = |x: u32| self.ev_list(x).iter().any(|&m| self.cfind_ro(m) == root);
        let mut evs: Vec<u32> = Vec::new();
        if self.blocked(root) {
            // Blocked identifiers belong to no component; find their evidence the slow way.
            evs.extend((0..self.evs.len() as u32).filter(|&x| self.ev_list(x).contains(&root)));
        } else {
            let entry = self.node(self.pfind_ro(root)).pev;
            if entry != NONE {
                let mut x = entry;
                loop {
                    if touches(x) {
                        evs.push(x);
                    }
                    x = self.ev(x).next;
                    if x == entry {
                        break;
                    }
                }
            }
        }
        evs.sort_unstable_by(|&a, &b| self.ev_cmp(a, b));
        let min = self.node(root).cmin;
        Cluster {
            customer: (min != NO_KEY).then_some(CustomerId(min)),
            identifiers,
            keys,
            evidence: evs
                .into_iter()
                .map(|x| ClusterEvidence {
                    id: EvidenceId(u64::from(x)),
                    evidence: self.public_evidence(x),
                    decision: self.decision(x),
                    refusals: self.public_refusals(x),
                })
                .collect(),
        }
    }

    fn public_evidence(&self, x: u32) -> Evidence {
        Evidence {
            source: self.source(x),
            at: Timestamp::from_micros(self.ev(x).at),
            event: self.event(x).map(str::to_string),
            identifiers: self
                .ev_list(x)
                .iter()
                .map(|&n| self.identifier(n))
                .collect(),
        }
    }

    fn public_refusal(&self, r: &NodeRefusal) -> Refusal {
        Refusal {
            identifier: self.identifier(r.node),
            reason: match r.reason {
                Reason::Blocklisted => RefusalReason::Blocklisted,
                Reason::Limit {
                    kind,
                    would_have,
                    limit,
                } => RefusalReason::Limit {
                    kind: self.kinds[kind as usize].name.clone(),
                    would_have,
                    limit,
                },
                Reason::WeakLink { via } => RefusalReason::WeakLink {
                    via: self.identifier(via),
                },
            },
        }
    }

    fn public_refusals(&self, x: u32) -> Vec<Refusal> {
        self.refusals
            .get(&x)
            .map(|rs| rs.iter().map(|r| self.public_refusal(r)).collect())
            .unwrap_or_default()
    }

    fn decision(&self, x: u32) -> Decision {
        match self.ev(x).outcome {
            Outcome::Single => Decision::Single,
            Outcome::Linked => Decision::Linked { merged: false },
            Outcome::Merged => Decision::Linked { merged: true },
            Outcome::Revoked => Decision::Revoked,
            Outcome::Refused => match self.refusals.get(&x).and_then(|rs| rs.first()) {
                Some(r) => Decision::Refused(self.public_refusal(r)),
                None => Decision::Single,
            },
        }
    }

    /// One evidence (identifiers sorted) and how it ended up.
    pub fn evidence(&self, id: EvidenceId) -> Option<(Evidence, Decision)> {
        let x = self.evidence_index(id).ok()?;
        Some((self.public_evidence(x), self.decision(x)))
    }

    /// Every identifier of an evidence that was not linked, in link order.
    pub fn refusals(&self, id: EvidenceId) -> Option<Vec<Refusal>> {
        let x = self.evidence_index(id).ok()?;
        Some(self.public_refusals(x))
    }

    /// Identifiers in the graph with exactly this (normalized) value: of one kind, or of
    /// any kind when `kind` is `None`. Sorted.
    pub fn lookup(&self, kind: Option<&IdentifierKind>, value: &str) -> Vec<Identifier> {
        let mut out: Vec<Identifier> = match kind {
            Some(k) => self
                .find_kind(k)
                .and_then(|k| self.find_node(k, value))
                .map(|n| self.identifier(n))
                .into_iter()
                .collect(),
            None => (0..self.kinds.len() as u32)
                .filter_map(|k| self.find_node(k, value))
                .map(|n| self.identifier(n))
                .collect(),
        };
        out.sort_unstable();
        out
    }

    /// Every identifier `raw` could be, in each kind's normal form: the built-in kinds and
    /// the social and custom kinds the graph has seen. Sorted; present in the graph or not.
    pub fn candidates(&self, raw: &str) -> Vec<Identifier> {
        let mut out: Vec<Identifier> = self
            .kinds
            .iter()
            .filter_map(|k| {
                k.kind.normalize(raw).ok().map(|value| Identifier {
                    kind: k.kind.clone(),
                    value,
                })
            })
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    }

    /// The identifiers in the graph that `raw` could mean (see [`IdentityGraph::candidates`]).
    pub fn find(&self, raw: &str) -> Vec<Identifier> {
        self.candidates(raw)
            .into_iter()
            .filter(|id| self.node_of(id).is_some())
            .collect()
    }

    /// Key → canonical customer id, for keys merged into another customer; sorted by key.
    pub fn overlay(&self) -> impl Iterator<Item = (CustomerId, CustomerId)> {
        let mut out: Vec<(CustomerId, CustomerId)> = (0..self.nodes.len() as u32)
            .filter_map(|n| {
                let key = self.node(n).key;
                let canonical = self.node(self.cfind_ro(n)).cmin;
                (key != NO_KEY && key != canonical)
                    .then_some((CustomerId(key), CustomerId(canonical)))
            })
            .collect();
        out.sort_unstable();
        out.into_iter()
    }

    /// Every cluster's sorted identifiers (blocked identifiers are clusters of their own),
    /// sorted.
    pub fn clusters(&self) -> Vec<Vec<Identifier>> {
        let mut out: Vec<Vec<Identifier>> = (0..self.nodes.len() as u32)
            .filter(|&n| self.node(n).cparent == n)
            .map(|r| {
                let mut ids: Vec<Identifier> = self
                    .members(r)
                    .into_iter()
                    .map(|m| self.identifier(m))
                    .collect();
                ids.sort_unstable();
                ids
            })
            .collect();
        out.sort_unstable();
        out
    }

    /// Clusters that hold a write-time key: the customers with events.
    pub fn keyed_clusters(&self) -> u64 {
        (0..self.nodes.len() as u32)
            .filter(|&n| {
                let node = self.node(n);
                node.cparent == n && node.cmin != NO_KEY
            })
            .count() as u64
    }

    pub fn stats(&self) -> GraphStats {
        GraphStats {
            identifiers: self.nodes.len() as u64,
            blocked_identifiers: self
                .nodes
                .iter()
                .filter(|n| n.flags & NODE_BLOCKED != 0)
                .count() as u64,
            evidence: self.evs.len() as u64,
            revoked_evidence: self
                .evs
                .iter()
                .filter(|e| e.meta & META_REVOKED != 0)
                .count() as u64,
            refused_evidence: self.refusals.len() as u64,
            keys: self.nodes.iter().filter(|n| n.key != NO_KEY).count() as u64,
            clusters: (0..self.nodes.len() as u32)
                .filter(|&n| self.node(n).cparent == n)
                .count() as u64,
        }
    }

    /// Approximate heap memory of the graph in bytes: the used part of its columns, the
    /// hash indexes, long identifier values and refusals.
    pub fn heap_bytes(&self) -> usize {
        fn used<T>(v: &[T]) -> usize {
            std::mem::size_of_val(v)
        }
        let long_values: usize = self
            .values
            .iter()
            .filter(|(_, t)| t.is_heap_allocated())
            .map(|(_, t)| t.capacity())
            .sum();
        // A hash map entry: key, vector header, control byte; plus the vector's contents.
        let refusals = self.refusals.capacity()
            * (std::mem::size_of::<(u32, Vec<NodeRefusal>)>() + 1)
            + self
                .refusals
                .values()
                .map(|v| used(v.as_slice()))
                .sum::<usize>();
        used(&self.nodes)
            + used(&self.values)
            + long_values
            + used(&self.evs)
            + used(&self.ev_nodes)
            + used(&self.events)
            + refusals
            + self.node_index.heap_bytes()
            + self.key_index.heap_bytes()
            + self.ev_index.heap_bytes()
    }

    // ---- persistence --------------------------------------------------------------------

    /// Everything needed to rebuild the graph, independent of the guardrails: identifiers,
    /// evidence with revoked flags, and keys.
    pub fn snapshot(&self) -> Snapshot {
        let mut evidence = SnapshotEvidence::default();
        let n = self.evs.len();
        evidence.source.reserve_exact(n);
        evidence.at.reserve_exact(n);
        evidence.event.reserve_exact(n);
        evidence.len.reserve_exact(n);
        evidence.identifiers.reserve_exact(self.ev_nodes.len());
        for x in 0..n as u32 {
            evidence.push(
                self.source(x),
                Timestamp::from_micros(self.ev(x).at),
                self.event(x).map(Text::from),
                self.ev_list(x),
            );
            if self.revoked(x) {
                evidence.revoked.push(u64::from(x));
            }
        }
        let mut keys: Vec<(u32, CustomerId)> = (0..self.nodes.len() as u32)
            .filter(|&n| self.node(n).key != NO_KEY)
            .map(|n| (n, CustomerId(self.node(n).key)))
            .collect();
        keys.sort_unstable_by_key(|&(_, k)| k);
        let mut identifiers = SnapshotIdentifiers {
            kinds: self.kinds.iter().map(|k| k.kind.clone()).collect(),
            ..SnapshotIdentifiers::default()
        };
        identifiers.kind.reserve_exact(self.nodes.len());
        identifiers.value.reserve_exact(self.nodes.len());
        for (kind, value) in &self.values {
            identifiers.push(*kind, value.clone());
        }
        Snapshot::from_data(SnapshotData {
            identifiers,
            evidence,
            keys,
        })
    }

    /// Rebuilds a graph from a snapshot under (possibly different) guardrails: one
    /// canonical replay of all evidence.
    pub fn restore(guardrails: Guardrails, snapshot: Snapshot) -> Self {
        let SnapshotData {
            identifiers,
            evidence,
            keys,
        } = snapshot.into_data();
        let mut g = IdentityGraph::new(guardrails);
        g.node_index = IdIndex::with_capacity(identifiers.len());
        g.ev_index = IdIndex::with_capacity(evidence.count());
        g.key_index = IdIndex::with_capacity(keys.len());
        g.nodes.reserve_exact(identifiers.len());
        g.values.reserve_exact(identifiers.len());
        g.evs.reserve_exact(evidence.count());
        g.ev_nodes.reserve_exact(evidence.identifiers.len());

        let kinds: Vec<u32> = identifiers.kinds.iter().map(|k| g.kind_id(k)).collect();
        let map: Vec<u32> = identifiers
            .kind
            .iter()
            .zip(&identifiers.value)
            .map(|(&k, value)| g.intern(kinds[k as usize], value))
            .collect();
        drop(identifiers);
        let mut list = Vec::new();
        let mut refs = evidence.identifiers.iter();
        let mut revoked = evidence.revoked.iter().peekable();
        for (x, &len) in evidence.len.iter().enumerate() {
            list.clear();
            // Snapshot validation guarantees the lengths and indices are in range.
            list.extend(refs.by_ref().take(len as usize).map(|&i| map[i as usize]));
            if !list.is_sorted_by(|&a, &b| g.node_cmp(a, b) == Ordering::Less) {
                list.sort_unstable_by(|&a, &b| g.node_cmp(a, b));
                list.dedup();
            }
            let hash = hash_nodes(&list);
            let indexed = g.find_evidence(hash, &list).is_none();
            let meta = if revoked.next_if_eq(&&(x as u64)).is_some() {
                META_REVOKED
            } else {
                0
            };
            let event = evidence.event[x].as_deref();
            let (source, at) = (evidence.source[x], evidence.at[x]);
            g.push_evidence(hash, &list, source, at, event, meta, indexed);
        }
        drop(evidence);
        for (i, key) in keys {
            let n = map[i as usize];
            let hash = mix(key.0);
            let taken = g.key_index.find(hash, |m| g.node(m).key == key.0).is_some();
            if !taken && g.node(n).key == NO_KEY {
                let node = g.node_mut(n);
                node.key = key.0;
                node.cmin = key.0;
                g.key_index.insert(hash, n);
            }
        }
        g.settle_all();
        g
    }

    /// Applies every live evidence in canonical order onto fresh clusters.
    fn settle_all(&mut self) {
        let mut order: Vec<(i64, u32)> = Vec::new();
        for x in 0..self.evs.len() as u32 {
            match self.ev(x).meta & (META_MULTI | META_REVOKED) {
                META_MULTI => order.push((self.ev(x).at, x)),
                0 => self.apply(x, None),
                _ => {}
            }
        }
        order.sort_unstable_by(|a, b| {
            a.0.cmp(&b.0)
                .then_with(|| self.list_cmp(self.ev_list(a.1), self.ev_list(b.1)))
        });
        for (_, x) in order {
            self.apply(x, None);
            let n = self.first_linkable(x).unwrap_or(x);
            let r = self.pfind(n);
            self.node_mut(r).plast = x;
        }
    }
}
