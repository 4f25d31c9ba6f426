//! The settled image of a graph: its columns exactly as they are in memory, so that opening
//! a graph decodes arrays instead of replaying every evidence in canonical order.
//!
//! A [`Snapshot`] is independent of the guardrails and rebuilds the graph by replay, which
//! at millions of identifiers costs seconds. An image also records the guardrails it
//! settled under: opened under the same ones it is the graph itself; under others it is a
//! snapshot to replay (clusters depend on limits and weak kinds).

use super::{Ev, IdentityGraph, Node, NodeRefusal, Outcome, RefusalMap, NO_KEY};
use super::{META_MULTI, META_PENDING, META_REVOKED, META_SOURCE, NODE_BLOCKED, NODE_WEAK};
use crate::guardrails::Guardrails;
use crate::index::{IdIndex, NONE};
use crate::types::IdentityError;
use omnitrail_model::{IdentifierKind, Text};
use serde::{Deserialize, Serialize};
use std::borrow::Cow;

/// Bytes of one [`Node`] and one [`Ev`] record, little-endian, fields in declaration order.
pub(super) const NODE_BYTES: usize = 8 + 8 + 4 * 10 + 2;
pub(super) const EV_BYTES: usize = 8 + 8 + 4 * 3 + 2;

/// A graph's columns, serializable; see the module documentation. Built by
/// [`IdentityGraph::image`], opened by [`IdentityGraph::open_image`], which checks every
/// reference in it, so a damaged image is an error and never a panic or a hang.
///
/// Decoded from bytes it borrows its byte columns from them: opening copies each column
/// once, into the graph.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GraphImage<'a> {
    pub(super) guardrails: Guardrails,
    /// Kinds registered after the built-in ones, in registration order.
    pub(super) kinds: Vec<IdentifierKind>,
    #[serde(borrow, with = "serde_bytes")]
    pub(super) nodes: Cow<'a, [u8]>,
    /// Identifier values concatenated, and where each ends (`u64` LE): any one can be read
    /// without decoding the others.
    #[serde(borrow, with = "serde_bytes")]
    pub(super) value_bytes: Cow<'a, [u8]>,
    #[serde(borrow, with = "serde_bytes")]
    pub(super) value_ends: Cow<'a, [u8]>,
    #[serde(borrow, with = "serde_bytes")]
    pub(super) evs: Cow<'a, [u8]>,
    #[serde(borrow, with = "serde_bytes")]
    pub(super) ev_nodes: Cow<'a, [u8]>,
    #[serde(borrow, with = "serde_bytes")]
    pub(super) events: Cow<'a, [u8]>,
    /// (evidence, its refusals), by evidence.
    pub(super) refusals: Vec<(u32, Vec<NodeRefusal>)>,
    #[serde(borrow, with = "serde_bytes")]
    pub(super) node_index: Cow<'a, [u8]>,
    #[serde(borrow, with = "serde_bytes")]
    pub(super) key_index: Cow<'a, [u8]>,
    #[serde(borrow, with = "serde_bytes")]
    pub(super) ev_index: Cow<'a, [u8]>,
}

/// The layout of images written before identifier values were an arena (the first builds
/// of snapshot files of version 2): read still, and turned into a [`GraphImage`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PreviousGraphImage<'a> {
    guardrails: Guardrails,
    kinds: Vec<IdentifierKind>,
    #[serde(borrow, with = "serde_bytes")]
    nodes: Cow<'a, [u8]>,
    values: Vec<Text>,
    #[serde(borrow, with = "serde_bytes")]
    evs: Cow<'a, [u8]>,
    #[serde(borrow, with = "serde_bytes")]
    ev_nodes: Cow<'a, [u8]>,
    #[serde(borrow, with = "serde_bytes")]
    events: Cow<'a, [u8]>,
    refusals: Vec<(u32, Vec<NodeRefusal>)>,
    #[serde(borrow, with = "serde_bytes")]
    node_index: Cow<'a, [u8]>,
    #[serde(borrow, with = "serde_bytes")]
    key_index: Cow<'a, [u8]>,
    #[serde(borrow, with = "serde_bytes")]
    ev_index: Cow<'a, [u8]>,
}

impl<'a> From<PreviousGraphImage<'a>> for GraphImage<'a> {
    fn from(p: PreviousGraphImage<'a>) -> Self {
        let mut value_bytes = Vec::new();
        let mut value_ends = Vec::with_capacity(p.values.len() * 8);
        for v in &p.values {
            value_bytes.extend_from_slice(v.as_bytes());
            put64(&mut value_ends, value_bytes.len() as u64);
        }
        GraphImage {
            guardrails: p.guardrails,
            kinds: p.kinds,
            nodes: p.nodes,
            value_bytes: Cow::Owned(value_bytes),
            value_ends: Cow::Owned(value_ends),
            evs: p.evs,
            ev_nodes: p.ev_nodes,
            events: p.events,
            refusals: p.refusals,
            node_index: p.node_index,
            key_index: p.key_index,
            ev_index: p.ev_index,
        }
    }
}

fn put32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_le_bytes());
}

/// Reads little-endian fields off a fixed-size record.
struct Fields<'a>(&'a [u8]);

impl Fields<'_> {
    fn take<const N: usize>(&mut self) -> [u8; N] {
        let (head, rest) = self.0.split_at(N);
        self.0 = rest;
        head.try_into().expect("record length checked")
    }
    fn u64(&mut self) -> u64 {
        u64::from_le_bytes(self.take())
    }
    fn u32(&mut self) -> u32 {
        u32::from_le_bytes(self.take())
    }
    fn u8(&mut self) -> u8 {
        self.take::<1>()[0]
    }
}

/// A node record as [`IdentityGraph::image`] wrote it; `record` is [`NODE_BYTES`] long.
pub(super) fn decode_node(record: &[u8]) -> Node {
    let mut f = Fields(record);
    Node {
        cmin: f.u64(),
        key: f.u64(),
        kind: f.u32(),
        pparent: f.u32(),
        psize: f.u32(),
        pnext: f.u32(),
        pev: f.u32(),
        plast: f.u32(),
        cparent: f.u32(),
        csize: f.u32(),
        cstrong: f.u32(),
        cnext: f.u32(),
        flags: f.u8(),
        kmask: f.u8(),
    }
}

/// The sizes a node's references must stay within.
#[derive(Clone, Copy)]
pub(super) struct Bounds {
    pub kinds: usize,
    pub nodes: usize,
    pub evs: usize,
}

/// `node` (number `i`) refers only to kinds, identifiers and evidence that exist.
pub(super) fn check_node(node: &Node, i: u32, b: Bounds) -> Result<(), IdentityError> {
    let in_nodes = |v: u32| (v as usize) < b.nodes;
    let in_evs = |v: u32| v == NONE || (v as usize) < b.evs;
    let linked = [node.pparent, node.pnext, node.cparent, node.cnext];
    if (node.kind as usize) >= b.kinds
        || !linked.into_iter().all(in_nodes)
        || !in_evs(node.pev)
        || !in_evs(node.plast)
        || node.flags & !(NODE_BLOCKED | NODE_WEAK) != 0
    {
        return Err(bad(format!("identifier {i} refers outside the image")));
    }
    Ok(())
}

/// An evidence record as [`IdentityGraph::image`] wrote it, if its outcome, flags and
/// references fit an image of `ev_nodes` identifier references, `evs` evidence and an
/// event arena of `events` bytes.
pub(super) fn decode_ev(
    record: &[u8],
    x: usize,
    ev_nodes: usize,
    evs: usize,
    events: usize,
) -> Result<Ev, IdentityError> {
    let mut f = Fields(record);
    let (at, event, start, len, next, meta) =
        (f.u64() as i64, f.u64(), f.u32(), f.u32(), f.u32(), f.u8());
    let outcome = outcome_of(f.u8());
    let end = u64::from(start) + u64::from(len);
    let allowed_meta = META_SOURCE | META_REVOKED | META_MULTI;
    let Some(outcome) = outcome.filter(|_| {
        end <= ev_nodes as u64
            && (next as usize) < evs
            && meta & !allowed_meta == 0
            && meta & META_PENDING == 0
            && (event == NO_EVENT_OFFSET || event < events as u64)
    }) else {
        return Err(bad(format!("evidence {x} refers outside the image")));
    };
    Ok(Ev {
        at,
        event,
        start,
        len,
        next,
        meta,
        outcome,
    })
}

/// The identifier values of an image, read one at a time.
pub(super) struct Values<'i> {
    bytes: &'i [u8],
    ends: &'i [u8],
}

impl<'i> Values<'i> {
    pub fn new(bytes: &'i [u8], ends: &'i [u8]) -> Result<Self, IdentityError> {
        if !ends.len().is_multiple_of(8) {
            return Err(bad(format!(
                "value ends take {} bytes, not whole 8-byte offsets",
                ends.len()
            )));
        }
        Ok(Values { bytes, ends })
    }

    pub fn len(&self) -> usize {
        self.ends.len() / 8
    }

    fn end(&self, n: usize) -> u64 {
        u64::from_le_bytes(self.ends[n * 8..n * 8 + 8].try_into().expect("8 bytes"))
    }

    /// Value `n`, or an error when it lies outside the arena or is not UTF-8.
    pub fn get(&self, n: usize) -> Result<&'i str, IdentityError> {
        let start = if n == 0 { 0 } else { self.end(n - 1) };
        let end = self.end(n);
        usize::try_from(start)
            .ok()
            .zip(usize::try_from(end).ok())
            .filter(|(s, e)| s <= e)
            .and_then(|(s, e)| self.bytes.get(s..e))
            .and_then(|b| std::str::from_utf8(b).ok())
            .ok_or_else(|| bad(format!("the value of identifier {n} is not in the image")))
    }
}

/// A graph under `guardrails` with `kinds` registered after the built-in ones.
pub(super) fn with_kinds(
    guardrails: Guardrails,
    kinds: &[IdentifierKind],
) -> Result<IdentityGraph, IdentityError> {
    let mut g = IdentityGraph::new(guardrails);
    for kind in kinds {
        if g.find_kind(kind).is_some() {
            return Err(bad(format!("kind {kind} is registered twice")));
        }
        g.register_kind(kind.clone());
    }
    Ok(g)
}

fn outcome_code(o: Outcome) -> u8 {
    match o {
        Outcome::Single => 0,
        Outcome::Linked => 1,
        Outcome::Merged => 2,
        Outcome::Refused => 3,
        Outcome::Revoked => 4,
    }
}

fn outcome_of(code: u8) -> Option<Outcome> {
    Some(match code {
        0 => Outcome::Single,
        1 => Outcome::Linked,
        2 => Outcome::Merged,
        3 => Outcome::Refused,
        4 => Outcome::Revoked,
        _ => return None,
    })
}

pub(super) fn bad(what: impl Into<String>) -> IdentityError {
    IdentityError::ImageShape(what.into())
}

/// `records` cut into `size`-byte records, or an error naming `what`.
pub(super) fn records<'a>(
    bytes: &'a [u8],
    size: usize,
    what: &str,
) -> Result<std::slice::ChunksExact<'a, u8>, IdentityError> {
    if !bytes.len().is_multiple_of(size) {
        return Err(bad(format!(
            "{what} take {} bytes, not a whole number of {size}-byte records",
            bytes.len()
        )));
    }
    Ok(bytes.chunks_exact(size))
}

/// Fills `root` with the root of every node's chain of `parent`, or fails when a chain
/// loops.
fn roots(parent: &[u32], root: &mut Vec<u32>, what: &str) -> Result<(), IdentityError> {
    // NONE unknown; NONE - 1 on the chain being walked.
    root.clear();
    root.resize(parent.len(), NONE);
    let mut chain = Vec::new();
    for start in 0..parent.len() {
        let mut x = start;
        while root[x] == NONE {
            root[x] = NONE - 1;
            chain.push(x);
            let p = parent[x] as usize;
            if p == x {
                root[x] = x as u32;
                break;
            }
            x = p;
        }
        if root[x] == NONE - 1 {
            return Err(bad(format!("the {what} of identifier {x} form a cycle")));
        }
        let r = root[x];
        for &c in &chain {
            root[c] = r;
        }
        chain.clear();
    }
    Ok(())
}

/// `next` strings each set of `root` into one circular list: every walk of it returns
/// to where it started, having visited exactly its set. `seen` is scratch space.
fn check_lists(
    root: &[u32],
    next: &[u32],
    seen: &mut Vec<bool>,
    what: &str,
) -> Result<(), IdentityError> {
    let n = root.len();
    seen.clear();
    seen.resize(n, false);
    let sets = (0..n).filter(|&x| root[x] as usize == x).count();
    let mut lists = 0;
    for start in 0..n {
        if seen[start] {
            continue;
        }
        lists += 1;
        let mut x = start;
        while !seen[x] {
            seen[x] = true;
            let to = next[x] as usize;
            if root[to] != root[x] {
                return Err(bad(format!(
                    "the {what} list of identifier {x} leaves its set"
                )));
            }
            x = to;
        }
        if x != start {
            return Err(bad(format!(
                "the {what} list of identifier {start} does not close"
            )));
        }
    }
    if lists != sets {
        return Err(bad(format!("{lists} {what} lists for {sets} sets")));
    }
    Ok(())
}

/// The union-finds over `nodes` are well formed: parent chains end at a root, each root's
/// size, strong count, smallest key and kinds agree with its members, and each member list
/// is exactly one set. A damaged image fails here, not later in a loop or an overflow.
///
/// Opening pays for this, so it works in dense `u32` columns (the walks jump at random,
/// and 4-byte entries miss the cache far less than 64-byte nodes) and reuses them.
pub(super) fn check_unions(nodes: &[Node]) -> Result<Vec<u32>, IdentityError> {
    let n = nodes.len();
    let (mut links, mut proot, mut root, mut flags) =
        (Vec::with_capacity(n), Vec::new(), Vec::new(), Vec::new());
    let column = |links: &mut Vec<u32>, f: fn(&Node) -> u32| {
        links.clear();
        links.extend(nodes.iter().map(f));
    };
    let count = |links: &mut Vec<u32>, root: &[u32], f: fn(&Node) -> u32| {
        links.clear();
        links.resize(n, 0);
        for (x, node) in nodes.iter().enumerate() {
            links[root[x] as usize] += f(node);
        }
    };
    let disagree =
        |x: usize, what: &str| Err(bad(format!("{what} {x} disagrees with its members")));

    column(&mut links, |x| x.pparent);
    roots(&links, &mut proot, "components")?;
    column(&mut links, |x| x.pnext);
    check_lists(&proot, &links, &mut flags, "component")?;
    count(&mut links, &proot, |_| 1);
    if let Some(x) = (0..n).find(|&x| proot[x] as usize == x && nodes[x].psize != links[x]) {
        return disagree(x, "component");
    }

    column(&mut links, |x| x.cparent);
    roots(&links, &mut root, "clusters")?;
    // A cluster lies within one component: replaying a component rebuilds its clusters.
    if let Some(x) = (0..n).find(|&x| proot[x] != proot[root[x] as usize]) {
        return Err(bad(format!(
            "identifier {x} is clustered outside its component"
        )));
    }
    column(&mut links, |x| x.cnext);
    check_lists(&root, &links, &mut flags, "cluster")?;
    count(&mut links, &root, |_| 1);
    if let Some(x) = (0..n).find(|&x| root[x] as usize == x && nodes[x].csize != links[x]) {
        return disagree(x, "cluster");
    }
    count(&mut links, &root, |x| {
        u32::from(x.flags & (NODE_BLOCKED | NODE_WEAK) == 0)
    });
    if let Some(x) = (0..n).find(|&x| root[x] as usize == x && nodes[x].cstrong != links[x]) {
        return disagree(x, "cluster");
    }
    // The root's smallest key is no member's key but some member's (or none), and its
    // kinds cover its members'.
    flags.clear();
    flags.resize(n, false);
    for (x, node) in nodes.iter().enumerate() {
        let r = root[x] as usize;
        let cluster = &nodes[r];
        if node.key < cluster.cmin || super::kind_bit(node.kind) & !cluster.kmask != 0 {
            return disagree(r, "cluster");
        }
        flags[r] |= node.key == cluster.cmin;
    }
    if let Some(x) = (0..n).find(|&x| root[x] as usize == x && nodes[x].cmin != NO_KEY && !flags[x])
    {
        return disagree(x, "cluster");
    }
    Ok(proot)
}

/// Evidence agrees with the components: its linkable identifiers are in one component,
/// whose circular evidence list holds it (evidence without two linkable identifiers is
/// marked so, and evidence without any is alone), each component with evidence has one
/// list entered at its root, and a root's last applied evidence is its own. Replaying a
/// component walks exactly these lists.
pub(super) fn check_evidence(g: &IdentityGraph, mut proot: Vec<u32>) -> Result<(), IdentityError> {
    // The component of each linkable identifier, NONE for a blocked one: evidence looks up
    // millions of identifiers at random, in 4 bytes each instead of a 64-byte node.
    for (root, node) in proot.iter_mut().zip(&g.nodes) {
        if node.flags & NODE_BLOCKED != 0 {
            *root = NONE;
        }
    }
    let proot = proot;
    let owner: Vec<u32> = (0..g.evs.len() as u32)
        .map(|x| {
            let mut linkable = g
                .ev_list(x)
                .iter()
                .map(|&m| proot[m as usize])
                .filter(|&r| r != NONE);
            let owner = linkable.next().unwrap_or(NONE);
            let (mut multi, mut apart) = (false, false);
            for r in linkable {
                multi = true;
                apart |= r != owner;
            }
            if apart || multi != g.multi(x) {
                return Err(bad(format!("evidence {x} disagrees with the components")));
            }
            Ok(owner)
        })
        .collect::<Result<_, _>>()?;
    for (x, &r) in owner.iter().enumerate() {
        let next = g.evs[x].next as usize;
        if (r == NONE && next != x) || owner[next] != r {
            return Err(bad(format!(
                "the evidence list of evidence {x} leaves its component"
            )));
        }
    }
    let mut seen = vec![false; owner.len()];
    let mut lists = 0;
    for start in 0..owner.len() {
        if seen[start] || owner[start] == NONE {
            continue;
        }
        lists += 1;
        let mut x = start;
        while !std::mem::replace(&mut seen[x], true) {
            x = g.evs[x].next as usize;
        }
    }
    let mut entered = 0;
    for (r, node) in g.nodes.iter().enumerate() {
        let mine = |x: u32| x == NONE || owner[x as usize] == r as u32;
        if proot[r] as usize != r {
            continue;
        }
        if !mine(node.pev) || !mine(node.plast) {
            return Err(bad(format!("component {r} names evidence of another")));
        }
        entered += usize::from(node.pev != NONE);
    }
    if lists != entered {
        return Err(bad(format!(
            "{lists} evidence lists for {entered} components with evidence"
        )));
    }
    Ok(())
}

/// `next` is a permutation: every walk of it returns to where it started.
pub(super) fn check_permutation(
    n: usize,
    next: impl Fn(usize) -> usize,
    what: &str,
) -> Result<(), IdentityError> {
    let mut seen = vec![false; n];
    for x in 0..n {
        if std::mem::replace(&mut seen[next(x)], true) {
            return Err(bad(format!("two {what} lists lead to {}", next(x))));
        }
    }
    Ok(())
}

impl IdentityGraph {
    /// The graph's columns as they are, with the guardrails they settled under.
    pub fn image(&self) -> GraphImage<'static> {
        let mut nodes = Vec::with_capacity(self.nodes.len() * NODE_BYTES);
        for n in &self.nodes {
            put64(&mut nodes, n.cmin);
            put64(&mut nodes, n.key);
            for v in [
                n.kind, n.pparent, n.psize, n.pnext, n.pev, n.plast, n.cparent, n.csize, n.cstrong,
                n.cnext,
            ] {
                put32(&mut nodes, v);
            }
            nodes.push(n.flags);
            nodes.push(n.kmask);
        }
        let mut evs = Vec::with_capacity(self.evs.len() * EV_BYTES);
        for e in &self.evs {
            put64(&mut evs, e.at as u64);
            put64(&mut evs, e.event);
            for v in [e.start, e.len, e.next] {
                put32(&mut evs, v);
            }
            evs.push(e.meta);
            evs.push(outcome_code(e.outcome));
        }
        let mut ev_nodes = Vec::with_capacity(self.ev_nodes.len() * 4);
        for &n in &self.ev_nodes {
            put32(&mut ev_nodes, n);
        }
        let mut value_bytes = Vec::new();
        let mut value_ends = Vec::with_capacity(self.values.len() * 8);
        for (_, v) in &self.values {
            value_bytes.extend_from_slice(v.as_bytes());
            put64(&mut value_ends, value_bytes.len() as u64);
        }
        let mut refusals: Vec<(u32, Vec<NodeRefusal>)> =
            self.refusals.iter().map(|(&x, r)| (x, r.clone())).collect();
        refusals.sort_unstable_by_key(|r| r.0);
        GraphImage {
            guardrails: self.guardrails.clone(),
            kinds: self.kinds[super::BUILTIN_KINDS.len()..]
                .iter()
                .map(|k| k.kind.clone())
                .collect(),
            nodes: Cow::Owned(nodes),
            value_bytes: Cow::Owned(value_bytes),
            value_ends: Cow::Owned(value_ends),
            evs: Cow::Owned(evs),
            ev_nodes: Cow::Owned(ev_nodes),
            events: Cow::Owned(self.events.clone()),
            refusals,
            node_index: Cow::Owned(self.node_index.to_bytes()),
            key_index: Cow::Owned(self.key_index.to_bytes()),
            ev_index: Cow::Owned(self.ev_index.to_bytes()),
        }
    }

    /// The graph of an image under `guardrails`: the image itself when it settled under
    /// the same ones, otherwise one canonical replay of its evidence
    /// ([`IdentityGraph::restore`]). Every reference in the image is checked first.
    pub fn open_image(
        guardrails: Guardrails,
        image: GraphImage<'_>,
    ) -> Result<Self, IdentityError> {
        let same = image.guardrails == guardrails;
        let settled = IdentityGraph::from_image(image)?;
        if same {
            return Ok(settled);
        }
        Ok(IdentityGraph::restore(guardrails, settled.snapshot()))
    }

    fn from_image(image: GraphImage<'_>) -> Result<Self, IdentityError> {
        let GraphImage {
            guardrails,
            kinds,
            nodes,
            value_bytes,
            value_ends,
            evs,
            ev_nodes,
            events,
            refusals,
            node_index,
            key_index,
            ev_index,
        } = image;
        let mut g = with_kinds(guardrails, &kinds)?;
        let values = Values::new(&value_bytes, &value_ends)?;
        let bounds = Bounds {
            kinds: g.kinds.len(),
            nodes: values.len(),
            evs: evs.len() / EV_BYTES,
        };
        let node_records = records(&nodes, NODE_BYTES, "identifiers")?;
        if node_records.len() != bounds.nodes {
            return Err(bad(format!(
                "{} identifier records for {} values",
                node_records.len(),
                bounds.nodes
            )));
        }
        g.nodes.reserve_exact(bounds.nodes);
        for (i, record) in node_records.enumerate() {
            let node = decode_node(record);
            check_node(&node, i as u32, bounds)?;
            g.nodes.push(node);
        }
        drop(nodes);
        let proot = check_unions(&g.nodes)?;
        g.values.reserve_exact(bounds.nodes);
        for (n, node) in g.nodes.iter().enumerate() {
            g.values.push((node.kind, Text::from(values.get(n)?)));
        }
        drop((value_bytes, value_ends));

        let refs = records(&ev_nodes, 4, "evidence identifiers")?;
        g.ev_nodes.reserve_exact(refs.len());
        for r in refs {
            let n = u32::from_le_bytes(r.try_into().expect("4 bytes"));
            if n as usize >= bounds.nodes {
                return Err(bad(format!(
                    "evidence names identifier {n}, which is not in it"
                )));
            }
            g.ev_nodes.push(n);
        }
        drop(ev_nodes);
        g.evs.reserve_exact(bounds.evs);
        for (x, record) in records(&evs, EV_BYTES, "evidence")?.enumerate() {
            let ev = decode_ev(record, x, g.ev_nodes.len(), bounds.evs, events.len())?;
            g.evs.push(ev);
        }
        drop(evs);
        check_permutation(bounds.evs, |x| g.evs[x].next as usize, "evidence")?;
        check_evidence(&g, proot)?;
        g.events = events.into_owned();

        let mut map = RefusalMap::default();
        for (x, list) in refusals {
            if (x as usize) >= bounds.evs || !list.iter().all(|r| r.fits(bounds)) {
                return Err(bad(format!(
                    "the refusals of evidence {x} refer outside the image"
                )));
            }
            map.insert(x, list);
        }
        g.refusals = map;
        g.node_index = IdIndex::from_bytes(&node_index, bounds.nodes)
            .map_err(|e| bad(format!("identifier index: {e}")))?;
        g.key_index = IdIndex::from_bytes(&key_index, bounds.nodes)
            .map_err(|e| bad(format!("key index: {e}")))?;
        g.ev_index = IdIndex::from_bytes(&ev_index, bounds.evs)
            .map_err(|e| bad(format!("evidence index: {e}")))?;
        Ok(g)
    }
}

pub(super) const NO_EVENT_OFFSET: u64 = super::NO_EVENT;

impl NodeRefusal {
    /// Whether the refusal names only identifiers and kinds within `b`.
    pub(super) fn fits(&self, b: Bounds) -> bool {
        (self.node as usize) < b.nodes
            && match self.reason {
                super::Reason::Blocklisted => true,
                super::Reason::Limit { kind, .. } => (kind as usize) < b.kinds,
                super::Reason::WeakLink { via } => (via as usize) < b.nodes,
            }
    }
}

impl GraphImage<'_> {
    /// Whether the columns agree in length (a value end per identifier record, the last at
    /// the arena's end, whole evidence records): bytes of the previous layout can decode as
    /// this one, never with this shape.
    pub fn is_whole(&self) -> bool {
        let ends = self.value_ends.len() / 8;
        let last = (ends > 0).then(|| {
            let at = (ends - 1) * 8;
            u64::from_le_bytes(self.value_ends[at..at + 8].try_into().expect("8 bytes"))
        });
        self.value_ends.len().is_multiple_of(8)
            && self.nodes.len() == ends * NODE_BYTES
            && last.unwrap_or(0) == self.value_bytes.len() as u64
            && self.evs.len().is_multiple_of(EV_BYTES)
            && self.ev_nodes.len().is_multiple_of(4)
    }

    /// The guardrails the image settled under.
    pub fn guardrails(&self) -> &Guardrails {
        &self.guardrails
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{Evidence, Source};
    use omnitrail_model::{CustomerId, Identifier, Timestamp};

    fn id(kind: &str, value: &str) -> Identifier {
        Identifier {
            kind: IdentifierKind::parse(kind).expect("kind"),
            value: value.into(),
        }
    }

    /// Two clusters of several identifiers, a refused link, keys and a single.
    fn graph() -> IdentityGraph {
        let mut g = IdentityGraph::default();
        let sets = [
            vec![id("user_id", "u1"), id("email", "a@x.com")],
            vec![id("email", "a@x.com"), id("anonymous_id", "an1")],
            vec![id("anonymous_id", "an1"), id("user_id", "u2")],
            vec![id("phone", "+15550001"), id("email", "b@x.com")],
            vec![id("email", "b@x.com"), id("device_id", "d1")],
            vec![id("crm_id", "k9")],
        ];
        for (i, ids) in sets.into_iter().enumerate() {
            g.observe(Evidence {
                source: Source::Event,
                at: Timestamp::from_secs(1_700_000_000 + i as i64),
                event: Some(format!("e{i}")),
                identifiers: ids,
            });
        }
        for (i, (kind, value)) in [("user_id", "u1"), ("phone", "+15550001"), ("crm_id", "k9")]
            .into_iter()
            .enumerate()
        {
            g.set_key(&id(kind, value), CustomerId(10 + i as u64))
                .expect("key");
        }
        g
    }

    /// Rewrites one 4- or 8-byte field of one node record.
    fn with_node_field(
        image: &GraphImage<'_>,
        node: usize,
        at: usize,
        value: u64,
    ) -> GraphImage<'static> {
        let mut nodes = image.nodes.to_vec();
        let start = node * NODE_BYTES + at;
        if at < 16 {
            nodes[start..start + 8].copy_from_slice(&value.to_le_bytes());
        } else {
            nodes[start..start + 4].copy_from_slice(&(value as u32).to_le_bytes());
        }
        GraphImage {
            nodes: Cow::Owned(nodes),
            ..image.clone().into_owned()
        }
    }

    impl GraphImage<'_> {
        fn into_owned(self) -> GraphImage<'static> {
            let own = |c: Cow<'_, [u8]>| Cow::Owned(c.into_owned());
            GraphImage {
                guardrails: self.guardrails,
                kinds: self.kinds,
                nodes: own(self.nodes),
                value_bytes: own(self.value_bytes),
                value_ends: own(self.value_ends),
                evs: own(self.evs),
                ev_nodes: own(self.ev_nodes),
                events: own(self.events),
                refusals: self.refusals,
                node_index: own(self.node_index),
                key_index: own(self.key_index),
                ev_index: own(self.ev_index),
            }
        }
    }

    #[test]
    fn images_of_the_previous_layout_open_as_the_same_graph() {
        let g = graph();
        let image = g.image();
        let values = Values::new(&image.value_bytes, &image.value_ends).expect("values");
        let previous = PreviousGraphImage {
            guardrails: image.guardrails.clone(),
            kinds: image.kinds.clone(),
            nodes: image.nodes.clone(),
            values: (0..values.len())
                .map(|n| Text::from(values.get(n).expect("value")))
                .collect(),
            evs: image.evs.clone(),
            ev_nodes: image.ev_nodes.clone(),
            events: image.events.clone(),
            refusals: image.refusals.clone(),
            node_index: image.node_index.clone(),
            key_index: image.key_index.clone(),
            ev_index: image.ev_index.clone(),
        };
        let bytes = postcard::to_stdvec(&previous).expect("encode");
        assert!(postcard::from_bytes::<GraphImage>(&bytes).map_or(true, |i| !i.is_whole()));
        assert!(image.is_whole());
        let read: PreviousGraphImage = postcard::from_bytes(&bytes).expect("decode");
        let converted = GraphImage::from(read);
        assert_eq!(converted, image);
        let opened = IdentityGraph::open_image(Guardrails::default(), converted).expect("open");
        assert_eq!(opened.clusters(), g.clusters());
    }

    #[test]
    fn any_damage_to_the_union_finds_is_refused_or_harmless() {
        let g = graph();
        let image = g.image();
        let n = g.nodes.len();
        assert!(n >= 8);
        let expected = g.clusters();
        // cmin, pparent, psize, pnext, pev, plast, cparent, csize, cstrong, cnext: every
        // union-find field, set to every node id (and a few past them).
        let fields = [0, 20, 24, 28, 32, 36, 40, 44, 48, 52];
        let (mut refused, mut opened) = (0, 0);
        for node in 0..n {
            for at in fields {
                for value in 0..(n as u64 + 3) {
                    let damaged = with_node_field(&image, node, at, value);
                    match IdentityGraph::open_image(Guardrails::default(), damaged) {
                        Err(IdentityError::ImageShape(_)) => refused += 1,
                        Err(e) => panic!("unexpected error {e}"),
                        Ok(mut opened_graph) => {
                            opened += 1;
                            assert_eq!(
                                opened_graph.clusters(),
                                expected,
                                "node {node} field at {at} = {value} opened as other clusters"
                            );
                            // Taking more evidence walks the lists and finds the roots.
                            opened_graph.observe(Evidence {
                                source: Source::Event,
                                at: Timestamp::from_secs(1_600_000_000),
                                event: None,
                                identifiers: vec![id("user_id", "u2"), id("phone", "+15550001")],
                            });
                        }
                    }
                }
            }
        }
        assert!(
            refused > 0 && opened > 0,
            "{refused} refused, {opened} opened"
        );
    }
}
