//! The persistence seam: a serializable, guardrails-independent image of the graph.

use crate::types::{EvidenceId, IdentityError, IdentityLog, Persisted, Source};
use omnitrail_model::{CustomerId, Identifier, Text, Timestamp};
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
    pub(crate) identifiers: Vec<Identifier>,
    pub(crate) evidence: Vec<SnapshotEvidence>,
    /// (index into `identifiers`, key).
    pub(crate) keys: Vec<(u32, CustomerId)>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SnapshotEvidence {
    pub(crate) source: Source,
    pub(crate) at: Timestamp,
    pub(crate) event: Option<Text>,
    /// Indices into `identifiers`.
    pub(crate) identifiers: Vec<u32>,
    pub(crate) revoked: bool,
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
        let len = data.identifiers.len() as u64;
        for (x, e) in data.evidence.iter().enumerate() {
            if let Some(&i) = e.identifiers.iter().find(|&&i| u64::from(i) >= len) {
                return Err(IdentityError::SnapshotIdentifier {
                    what: format!("evidence {}", EvidenceId(x as u64)),
                    index: u64::from(i),
                    len,
                });
            }
        }
        let mut owners: HashMap<CustomerId, u32> = HashMap::with_capacity(data.keys.len());
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
            if let Some(&first) = owners.get(&key) {
                if data.identifiers[first as usize] != data.identifiers[i as usize] {
                    return Err(IdentityError::SnapshotDuplicateKey {
                        key,
                        first: data.identifiers[first as usize].clone(),
                        second: data.identifiers[i as usize].clone(),
                    });
                }
            }
            owners.insert(key, i);
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
        self.data.evidence.len() as u64
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
            for (i, id) in data.identifiers.iter().enumerate() {
                identifiers.entry(id.clone()).or_insert(i as u32);
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
        self.data.identifiers.push(id.clone());
        let lookup = self.lookup();
        lookup.identifiers.insert(id.clone(), i);
        lookup.keyed.push(false);
        i
    }

    fn evidence_mut(&mut self, id: EvidenceId) -> Result<&mut SnapshotEvidence, IdentityError> {
        let len = self.data.evidence.len() as u64;
        usize::try_from(id.0)
            .ok()
            .and_then(|i| self.data.evidence.get_mut(i))
            .ok_or(IdentityError::UnknownEvidence { id, len })
    }

    /// Folds one persisted change into the snapshot, as the graph applied it.
    ///
    /// # Errors
    /// New evidence out of sequence, a change to evidence the snapshot does not hold, or a
    /// key already owned by another identifier.
    pub fn apply(&mut self, change: &Persisted) -> Result<(), IdentityError> {
        match change {
            Persisted::Evidence { id, evidence } => {
                let expected = EvidenceId(self.data.evidence.len() as u64);
                if *id != expected {
                    return Err(IdentityError::OutOfSequence { got: *id, expected });
                }
                let mut identifiers: Vec<u32> = evidence
                    .identifiers
                    .iter()
                    .map(|i| self.identifier_index(i))
                    .collect();
                identifiers.dedup();
                self.data.evidence.push(SnapshotEvidence {
                    source: evidence.source,
                    at: evidence.at,
                    event: evidence.event.as_deref().map(Text::from),
                    identifiers,
                    revoked: false,
                });
            }
            Persisted::Earlier {
                id,
                source,
                at,
                event,
            } => {
                let e = self.evidence_mut(*id)?;
                e.source = *source;
                e.at = *at;
                e.event = event.as_deref().map(Text::from);
            }
            Persisted::Revoked { id } => self.evidence_mut(*id)?.revoked = true,
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
                            owner: self.data.identifiers[owner as usize].clone(),
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
