//! One potential component cut out of a settled image, so that a customer view in a fresh
//! process reads the few records of its customer instead of opening millions.
//!
//! The cut is a graph of its own: the component's identifiers, the evidence of its list and
//! the blocked identifiers that evidence names, renumbered densely, with indexes built for
//! them. It passes the same checks as a whole image before it answers, so a damaged image
//! is refused here as it is on open. A cluster lies within its component and evidence only
//! ever concerns its own component, so the cut answers for the customers in it exactly as
//! the whole graph does, with the image's evidence ids.

use super::image::{
    bad, check_evidence, check_node, check_permutation, check_unions, decode_ev, decode_node,
    with_kinds, Bounds, GraphImage, Values, EV_BYTES, NODE_BYTES,
};
use super::{event_at, Ev, IdentityGraph, Node, NodeRefusal, Reason, NODE_BLOCKED, NO_KEY};
use crate::index::{hash_identifier, hash_nodes, mix, IdIndex, NONE};
use crate::types::{Cluster, EvidenceId, IdentityError};
use omnitrail_model::{CustomerId, Identifier, Text};
use std::collections::HashMap;

/// What cutting an image at a key or an identifier found.
pub enum Cut {
    Component(Box<ComponentGraph>),
    /// No identifier of the image holds the key or is the identifier.
    NotFound,
    /// The identifier is blocklisted: it belongs to no component and its evidence may lie
    /// in many, so only the whole graph can list its links.
    Blocked,
}

/// A potential component of an image as a graph of its own; see the module documentation.
pub struct ComponentGraph {
    graph: IdentityGraph,
    /// The image's id of each evidence of the cut.
    evidence: Vec<u32>,
    /// The component's own identifiers come first; the blocked ones its evidence names
    /// follow and are answered for by the whole graph only.
    members: usize,
}

impl ComponentGraph {
    /// [`IdentityGraph::cluster`] of a customer of the component, with the image's
    /// evidence ids.
    pub fn cluster(&self, customer: CustomerId) -> Option<Cluster> {
        let g = &self.graph;
        let n = g
            .key_index
            .find(mix(customer.0), |n| g.node(n).key == customer.0)?;
        if n as usize >= self.members {
            return None;
        }
        let mut cluster = g.build_cluster(n);
        for e in &mut cluster.evidence {
            e.id = EvidenceId(u64::from(self.evidence[e.id.0 as usize]));
        }
        Some(cluster)
    }

    /// [`IdentityGraph::customer_of`] for an identifier of the component.
    pub fn customer_of(&self, id: &Identifier) -> Option<CustomerId> {
        let n = self.graph.node_of(id)?;
        if n as usize >= self.members {
            return None;
        }
        self.graph.customer_of(id)
    }
}

impl GraphImage<'_> {
    /// The component of the identifier that holds write-time key `key`.
    pub fn cut_at_key(&self, key: CustomerId) -> Result<Cut, IdentityError> {
        let reader = Reader::new(self)?;
        let found = IdIndex::find_in_bytes(&self.key_index, mix(key.0), |n| {
            reader.node(n).is_ok_and(|node| node.key == key.0)
        })
        .map_err(|e| bad(format!("key index: {e}")))?;
        match found {
            Some(n) => reader.cut(n),
            None => Ok(Cut::NotFound),
        }
    }

    /// The component of identifier `id` (in normal form).
    pub fn cut_at(&self, id: &Identifier) -> Result<Cut, IdentityError> {
        let reader = Reader::new(self)?;
        let Some(kind) = reader.base.find_kind(&id.kind) else {
            return Ok(Cut::NotFound);
        };
        let found =
            IdIndex::find_in_bytes(&self.node_index, hash_identifier(kind, &id.value), |n| {
                reader.node(n).is_ok_and(|node| node.kind == kind)
                    && reader.values.get(n as usize).is_ok_and(|v| v == id.value)
            })
            .map_err(|e| bad(format!("identifier index: {e}")))?;
        match found {
            Some(n) => reader.cut(n),
            None => Ok(Cut::NotFound),
        }
    }

    /// [`IdentityGraph::candidates`] of the graph the image holds.
    pub fn candidates(&self, raw: &str) -> Result<Vec<Identifier>, IdentityError> {
        Ok(with_kinds(self.guardrails.clone(), &self.kinds)?.candidates(raw))
    }
}

/// Reads single records of an image, each checked as opening checks it.
struct Reader<'i, 'a> {
    image: &'i GraphImage<'a>,
    values: Values<'i>,
    bounds: Bounds,
    /// An empty graph with the image's kinds: the cut is built into it.
    base: IdentityGraph,
}

impl<'i, 'a> Reader<'i, 'a> {
    fn new(image: &'i GraphImage<'a>) -> Result<Self, IdentityError> {
        let base = with_kinds(image.guardrails.clone(), &image.kinds)?;
        let values = Values::new(&image.value_bytes, &image.value_ends)?;
        let bounds = Bounds {
            kinds: base.kinds.len(),
            nodes: values.len(),
            evs: image.evs.len() / EV_BYTES,
        };
        if image.nodes.len() != bounds.nodes * NODE_BYTES
            || !image.evs.len().is_multiple_of(EV_BYTES)
            || !image.ev_nodes.len().is_multiple_of(4)
        {
            return Err(bad(
                "its identifier, evidence or reference columns are not whole records",
            ));
        }
        Ok(Reader {
            image,
            values,
            bounds,
            base,
        })
    }

    fn node(&self, n: u32) -> Result<Node, IdentityError> {
        let i = n as usize;
        if i >= self.bounds.nodes {
            return Err(bad(format!("identifier {n} is not in it")));
        }
        let node = decode_node(&self.image.nodes[i * NODE_BYTES..(i + 1) * NODE_BYTES]);
        check_node(&node, n, self.bounds)?;
        Ok(node)
    }

    fn ev(&self, x: u32) -> Result<Ev, IdentityError> {
        let i = x as usize;
        if i >= self.bounds.evs {
            return Err(bad(format!("evidence {x} is not in it")));
        }
        let record = &self.image.evs[i * EV_BYTES..(i + 1) * EV_BYTES];
        let references = self.image.ev_nodes.len() / 4;
        decode_ev(
            record,
            i,
            references,
            self.bounds.evs,
            self.image.events.len(),
        )
    }

    /// The identifiers of an evidence [`Reader::ev`] read.
    fn ev_list(&self, e: &Ev) -> impl Iterator<Item = u32> + '_ {
        let bytes = &self.image.ev_nodes[e.start as usize * 4..(e.start + e.len) as usize * 4];
        bytes
            .chunks_exact(4)
            .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")))
    }

    fn refusals(&self, x: u32) -> Option<&[NodeRefusal]> {
        let all = &self.image.refusals;
        let i = all.binary_search_by_key(&x, |r| r.0).ok()?;
        Some(&all[i].1)
    }

    /// The component of identifier `start`, renumbered into a graph of its own and checked.
    fn cut(self, start: u32) -> Result<Cut, IdentityError> {
        if self.node(start)?.flags & NODE_BLOCKED != 0 {
            return Ok(Cut::Blocked);
        }
        let mut root = start;
        for _ in 0..=self.bounds.nodes {
            let parent = self.node(root)?.pparent;
            if parent == root {
                break;
            }
            root = parent;
        }
        if self.node(root)?.pparent != root {
            return Err(bad(format!(
                "the components of identifier {start} form a cycle"
            )));
        }

        // Image ids in cut order; a cut id is a position here.
        let (mut nodes, mut node_ids) = walk(
            root,
            |m| Ok(self.node(m)?.pnext),
            || format!("the component list of identifier {root} does not close"),
        )?;
        let members = nodes.len();
        let (evs, ev_ids) = match self.node(root)?.pev {
            NONE => (Vec::new(), HashMap::new()),
            entry => walk(
                entry,
                |x| Ok(self.ev(x)?.next),
                || format!("the evidence list of component {root} does not close"),
            )?,
        };
        // Blocked identifiers the evidence names are in no component, but in its lists.
        for &x in &evs {
            for n in self.ev_list(&self.ev(x)?) {
                if let std::collections::hash_map::Entry::Vacant(slot) = node_ids.entry(n) {
                    if n as usize >= self.bounds.nodes {
                        return Err(bad(format!("evidence {x} names identifier {n}")));
                    }
                    slot.insert(nodes.len() as u32);
                    nodes.push(n);
                }
            }
        }

        let node_id = |n: u32| {
            node_ids
                .get(&n)
                .copied()
                .ok_or_else(|| bad(format!("identifier {n} is linked outside its component")))
        };
        let ev_id = |x: u32| match x {
            NONE => Ok(NONE),
            x => ev_ids
                .get(&x)
                .copied()
                .ok_or_else(|| bad(format!("evidence {x} is listed outside its component"))),
        };
        let mut g = IdentityGraph {
            nodes: Vec::with_capacity(nodes.len()),
            ..self.base.clone()
        };
        for (new, &old) in nodes.iter().enumerate() {
            let mut node = self.node(old)?;
            node.pparent = node_id(node.pparent)?;
            node.pnext = node_id(node.pnext)?;
            node.cparent = node_id(node.cparent)?;
            node.cnext = node_id(node.cnext)?;
            node.pev = ev_id(node.pev)?;
            node.plast = ev_id(node.plast)?;
            let value = self.values.get(old as usize)?;
            g.node_index
                .insert(hash_identifier(node.kind, value), new as u32);
            if node.key != NO_KEY {
                g.key_index.insert(mix(node.key), new as u32);
            }
            g.values.push((node.kind, Text::from(value)));
            g.nodes.push(node);
        }
        let cut_bounds = Bounds {
            kinds: self.bounds.kinds,
            nodes: nodes.len(),
            evs: evs.len(),
        };
        for (new, &old) in evs.iter().enumerate() {
            let mut e = self.ev(old)?;
            let from = g.ev_nodes.len();
            for n in self.ev_list(&e) {
                g.ev_nodes.push(node_id(n)?);
            }
            e.start = from as u32;
            e.next = ev_id(e.next)?;
            if e.event != super::NO_EVENT {
                let event = event_at(&self.image.events, e.event)
                    .ok_or_else(|| bad(format!("the event of evidence {old} is not in it")))?;
                e.event = g.store_event(Some(event));
            }
            g.ev_index
                .insert(hash_nodes(&g.ev_nodes[from..]), new as u32);
            if let Some(list) = self.refusals(old) {
                let list = list
                    .iter()
                    .map(|r| {
                        let reason = match r.reason {
                            Reason::WeakLink { via } => Reason::WeakLink { via: node_id(via)? },
                            other => other,
                        };
                        let renumbered = NodeRefusal {
                            node: node_id(r.node)?,
                            reason,
                        };
                        if renumbered.fits(cut_bounds) {
                            Ok(renumbered)
                        } else {
                            Err(bad(format!(
                                "the refusals of evidence {old} refer outside it"
                            )))
                        }
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                g.refusals.insert(new as u32, list);
            }
            g.evs.push(e);
        }
        let proot = check_unions(&g.nodes)?;
        check_permutation(g.evs.len(), |x| g.evs[x].next as usize, "evidence")?;
        check_evidence(&g, proot)?;
        Ok(Cut::Component(Box::new(ComponentGraph {
            graph: g,
            evidence: evs,
            members,
        })))
    }
}

/// The circular list from `start` along `next`, and each item's position in it; an error
/// saying `not_closed` when it comes back anywhere but `start`.
#[allow(clippy::type_complexity)]
fn walk(
    start: u32,
    next: impl Fn(u32) -> Result<u32, IdentityError>,
    not_closed: impl FnOnce() -> String,
) -> Result<(Vec<u32>, HashMap<u32, u32>), IdentityError> {
    let (mut items, mut positions) = (Vec::new(), HashMap::new());
    let mut x = start;
    loop {
        if positions.insert(x, items.len() as u32).is_some() {
            return Err(bad(not_closed()));
        }
        items.push(x);
        x = next(x)?;
        if x == start {
            return Ok((items, positions));
        }
    }
}
