//! The persistence seam: a serializable, guardrails-independent image of the graph.

use crate::types::{EvidenceId, IdentityError, IdentityLog, Persisted, Source};
use omnitrail_model::{CustomerId, Identifier, IdentifierKind, Text, Timestamp};
use serde::{Deserialize, Serialize, Serializer};
use std::collections::HashMap;

/// Identifiers, evidence (with revoked flags) and keys: enough to rebuild the graph with
/// [`crate::IdentityGraph::restore`], under any guardrails.
///
/// A snapshot is valid by construction: [`crate::IdentityGraph::snapshot`] makes one,
/// deserializing checks every reference, and [`Snapshot::apply`] folds persisted changes
/// into one (so a snapshot plus the log written since rebuilds the current graph).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(try_from = "SnapshotData")]
pub struct Snapshot {
    data: SnapshotData,
    /// Built on the first [`Snapshot::apply`]; not serialized.
    lookup: Option<Lookup>,
}

#[derive(Clone, Debug, Default)]
struct Lookup {
    identifiers: HashMap<Identifier, u32>,
    keys: HashMap<CustomerId, u32>,
    keyed: Vec<bool>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SnapshotData {
    pub(crate) identifiers: SnapshotIdentifiers,
    pub(crate) evidence: SnapshotEvidence,
    /// (index into `identifiers`, key).
    pub(crate) keys: Vec<(u32, CustomerId)>,
}

/// Identifiers in columns: a small table of kinds, and per identifier its kind's index and
/// its value (inline when short), so that millions decode without parsing or allocating.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SnapshotIdentifiers {
    pub(crate) kinds: Vec<IdentifierKind>,
    pub(crate) kind: Vec<u32>,
    pub(crate) value: Vec<Text>,
}

impl SnapshotIdentifiers {
    pub(crate) fn len(&self) -> usize {
        self.kind.len()
    }

    pub(crate) fn get(&self, i: u32) -> Identifier {
        Identifier {
            kind: self.kinds[self.kind[i as usize] as usize].clone(),
            value: self.value[i as usize].to_string(),
        }
    }

    /// Appends an identifier whose kind is `kinds[kind]`.
    pub(crate) fn push(&mut self, kind: u32, value: Text) {
        self.kind.push(kind);
        self.value.push(value);
    }
}

/// Evidence in columns, one entry per evidence in id order: millions of rows decode and
/// drop without an allocation each.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SnapshotEvidence {
    pub(crate) source: Vec<Source>,
    pub(crate) at: Vec<Timestamp>,
    pub(crate) event: Vec<Option<Text>>,
    /// How many identifiers each evidence has; they follow one another in `identifiers`.
    pub(crate) len: Vec<u32>,
    /// Indices into the snapshot's identifiers.
    pub(crate) identifiers: Vec<u32>,
    /// Ids of revoked evidence, ascending.
    pub(crate) revoked: Vec<u64>,
}

impl SnapshotEvidence {
    pub(crate) fn count(&self) -> usize {
        self.len.len()
    }

    pub(crate) fn push(
        &mut self,
        source: Source,
        at: Timestamp,
        event: Option<Text>,
        identifiers: &[u32],
    ) {
        self.source.push(source);
        self.at.push(at);
        self.event.push(event);
        self.len.push(identifiers.len() as u32);
        self.identifiers.extend_from_slice(identifiers);
    }
}

impl Serialize for Snapshot {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.data.serialize(s)
    }
}

impl PartialEq for Snapshot {
    fn eq(&self, other: &Self) -> bool {
        self.data == other.data
    }
}

impl Eq for Snapshot {}

impl TryFrom<SnapshotData> for Snapshot {
    type Error = IdentityError;

    fn try_from(data: SnapshotData) -> Result<Self, IdentityError> {
        let ids = &data.identifiers;
        let len = ids.len() as u64;
        if ids.value.len() != ids.len() {
            return Err(IdentityError::SnapshotShape(format!(
                "the identifier columns differ in length (kind {}, value {})",
                ids.kind.len(),
                ids.value.len()
            )));
        }
        if let Some(&k) = ids.kind.iter().find(|&&k| k as usize >= ids.kinds.len()) {
            return Err(IdentityError::SnapshotShape(format!(
                "an identifier has kind #{k}, but the snapshot lists only {} kinds",
                ids.kinds.len()
            )));
        }
        let e = &data.evidence;
        let count = e.count();
        let shape = |what: String| Err(IdentityError::SnapshotShape(what));
        if e.source.len() != count || e.at.len() != count || e.event.len() != count {
            return shape(format!(
                "the evidence columns differ in length (source {}, at {}, event {}, len {count})",
                e.source.len(),
                e.at.len(),
                e.event.len()
            ));
        }
        let referenced: u64 = e.len.iter().map(|&l| u64::from(l)).sum();
        if referenced != e.identifiers.len() as u64 {
            return shape(format!(
                "the evidence lengths add up to {referenced} identifier references, but {} are listed",
                e.identifiers.len()
            ));
        }
        let mut at = 0usize;
        for (x, &l) in e.len.iter().enumerate() {
            let refs = &e.identifiers[at..at + l as usize];
            at += l as usize;
            if let Some(&i) = refs.iter().find(|&&i| u64::from(i) >= len) {
                return Err(IdentityError::SnapshotIdentifier {
                    what: format!("evidence {}", EvidenceId(x as u64)),
                    index: u64::from(i),
                    len,
                });
            }
        }
        if !e.revoked.is_sorted_by(|a, b| a < b) {
            return shape("the revoked evidence ids are not strictly ascending".into());
        }
        if let Some(&r) = e.revoked.last().filter(|&&r| r >= count as u64) {
            return Err(IdentityError::UnknownEvidence {
                id: EvidenceId(r),
                len: count as u64,
            });
        }
        // Snapshots list keys sorted (`IdentityGraph::snapshot`), so an owner check is a
        // look at the neighbour; any other order pays for a map.
        let sorted = data.keys.is_sorted_by_key(|&(_, k)| k);
        let mut owners: HashMap<CustomerId, u32> = if sorted {
            HashMap::new()
        } else {
            HashMap::with_capacity(data.keys.len())
        };
        let mut previous: Option<(u32, CustomerId)> = None;
        for &(i, key) in &data.keys {
            if u64::from(i) >= len {
                return Err(IdentityError::SnapshotIdentifier {
                    what: format!("key {key}"),
                    index: u64::from(i),
                    len,
                });
            }
            if key.0 == u64::MAX {
                return Err(IdentityError::ReservedKey(key));
            }
            let first = if sorted {
                previous.filter(|&(_, k)| k == key).map(|(owner, _)| owner)
            } else {
                owners.get(&key).copied()
            };
            if let Some(first) = first {
                let (a, b) = (ids.get(first), ids.get(i));
                if a != b {
                    return Err(IdentityError::SnapshotDuplicateKey {
                        key,
                        first: a,
                        second: b,
                    });
                }
            }
            if sorted {
                if first.is_none() {
                    previous = Some((i, key));
                }
            } else {
                owners.entry(key).or_insert(i);
            }
        }
        Ok(Snapshot::from_data(data))
    }
}

impl Snapshot {
    /// An empty snapshot, to fold a log into from the start.
    pub fn new() -> Snapshot {
        Snapshot::default()
    }

    pub(crate) fn from_data(data: SnapshotData) -> Snapshot {
        Snapshot { data, lookup: None }
    }

    pub(crate) fn into_data(self) -> SnapshotData {
        self.data
    }

    pub fn evidence_len(&self) -> u64 {
        self.data.evidence.count() as u64
    }

    pub fn identifier_len(&self) -> u64 {
        self.data.identifiers.len() as u64
    }

    fn lookup(&mut self) -> &mut Lookup {
        let data = &self.data;
        self.lookup.get_or_insert_with(|| {
            let mut keyed = vec![false; data.identifiers.len()];
            let mut keys = HashMap::with_capacity(data.keys.len());
            for &(i, key) in &data.keys {
                keyed[i as usize] = true;
                keys.entry(key).or_insert(i);
            }
            let mut identifiers = HashMap::with_capacity(data.identifiers.len());
            for i in 0..data.identifiers.len() as u32 {
                identifiers.entry(data.identifiers.get(i)).or_insert(i);
            }
            Lookup {
                identifiers,
                keys,
                keyed,
            }
        })
    }

    fn identifier_index(&mut self, id: &Identifier) -> u32 {
        if let Some(&i) = self.lookup().identifiers.get(id) {
            return i;
        }
        let i = self.data.identifiers.len() as u32;
        let ids = &mut self.data.identifiers;
        let kind = match ids.kinds.iter().position(|k| *k == id.kind) {
            Some(k) => k as u32,
            None => {
                ids.kinds.push(id.kind.clone());
                ids.kinds.len() as u32 - 1
            }
        };
        ids.push(kind, Text::from(id.value.as_str()));
        let lookup = self.lookup();
        lookup.identifiers.insert(id.clone(), i);
        lookup.keyed.push(false);
        i
    }

    fn evidence_index(&self, id: EvidenceId) -> Result<usize, IdentityError> {
        let len = self.data.evidence.count();
        match usize::try_from(id.0) {
            Ok(i) if i < len => Ok(i),
            _ => Err(IdentityError::UnknownEvidence {
                id,
                len: len as u64,
            }),
        }
    }

    /// Folds one persisted change into the snapshot, as the graph applied it.
    ///
    /// # Errors
    /// New evidence out of sequence, a change to evidence the snapshot does not hold, or a
    /// key already owned by another identifier.
    pub fn apply(&mut self, change: &Persisted) -> Result<(), IdentityError> {
        match change {
            Persisted::Evidence { id, evidence } => {
                let expected = EvidenceId(self.data.evidence.count() as u64);
                if *id != expected {
                    return Err(IdentityError::OutOfSequence { got: *id, expected });
                }
                let identifiers: Vec<u32> = evidence
                    .identifiers
                    .iter()
                    .map(|i| self.identifier_index(i))
                    .collect();
                self.data.evidence.push(
                    evidence.source,
                    evidence.at,
                    evidence.event.as_deref().map(Text::from),
                    &identifiers,
                );
            }
            Persisted::Earlier {
                id,
                source,
                at,
                event,
            } => {
                let i = self.evidence_index(*id)?;
                let e = &mut self.data.evidence;
                e.source[i] = *source;
                e.at[i] = *at;
                e.event[i] = event.as_deref().map(Text::from);
            }
            Persisted::Revoked { id } => {
                self.evidence_index(*id)?;
                let revoked = &mut self.data.evidence.revoked;
                if let Err(at) = revoked.binary_search(&id.0) {
                    revoked.insert(at, id.0);
                }
            }
            Persisted::Key { identifier, key } => {
                if key.0 == u64::MAX {
                    return Err(IdentityError::ReservedKey(*key));
                }
                let i = self.identifier_index(identifier);
                let lookup = self.lookup();
                match lookup.keys.get(key) {
                    Some(&owner) if owner == i => {}
                    Some(&owner) => {
                        return Err(IdentityError::KeyTaken {
                            key: *key,
                            owner: self.data.identifiers.get(owner),
                            identifier: identifier.clone(),
                        })
                    }
                    // The first key of an identifier wins, as in the graph.
                    None if lookup.keyed[i as usize] => {}
                    None => {
                        lookup.keys.insert(*key, i);
                        lookup.keyed[i as usize] = true;
                        self.data.keys.push((i, *key));
                    }
                }
            }
        }
        Ok(())
    }
}

impl IdentityLog for Snapshot {
    type Error = IdentityError;

    fn append(&mut self, change: &Persisted) -> Result<(), IdentityError> {
        self.apply(change)
    }
}
