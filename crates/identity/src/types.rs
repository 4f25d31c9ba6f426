//! The graph's vocabulary: evidence, decisions, refusals, clusters and change records.

use omnitrail_model::{CustomerId, Identifier, Timestamp};
use serde::{Deserialize, Serialize};
use std::fmt;

/// Where a piece of evidence came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// The identifiers seen together on one event.
    Event,
    /// A Segment-style `identify(userId, traits{email, phone})` call.
    Identify,
    /// A Segment-style `alias(previousId, userId)` call.
    Alias,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Event => "event",
            Source::Identify => "identify",
            Source::Alias => "alias",
        }
    }

    pub(crate) fn code(self) -> u8 {
        match self {
            Source::Event => 0,
            Source::Identify => 1,
            Source::Alias => 2,
        }
    }

    pub(crate) fn from_code(code: u8) -> Source {
        match code {
            1 => Source::Identify,
            2 => Source::Alias,
            _ => Source::Event,
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Identifiers seen together, which says they may be one person.
///
/// The graph keeps one evidence per identifier *set*: observing the same set again keeps
/// the earliest origin (smallest `at`, then source, then event reference). Identifiers come
/// back sorted and de-duplicated.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Evidence {
    pub source: Source,
    pub at: Timestamp,
    /// The event id, or `seq:<n>` for events without one.
    pub event: Option<String>,
    pub identifiers: Vec<Identifier>,
}

/// Dense, in arrival order from 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct EvidenceId(pub u64);

impl fmt::Display for EvidenceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "e{}", self.0)
    }
}

/// How one piece of evidence ended up after canonical replay.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "decision", rename_all = "snake_case")]
pub enum Decision {
    /// At least two of its identifiers are in one customer because of or despite it;
    /// `merged` when it joined customers that were separate until then. Some other
    /// identifiers of it may still have been refused (see the evidence's refusals).
    Linked { merged: bool },
    /// It linked nothing; the first refusal (in link order) says why.
    Refused(Refusal),
    /// Revoked by an unmerge: it links nothing.
    Revoked,
    /// It carries a single usable identifier and nothing was refused.
    Single,
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Decision::Linked { merged: true } => f.write_str("linked (merged customers)"),
            Decision::Linked { merged: false } => f.write_str("linked (already one customer)"),
            Decision::Refused(r) => write!(f, "refused: {r}"),
            Decision::Revoked => f.write_str("revoked"),
            Decision::Single => f.write_str("single identifier"),
        }
    }
}

/// An identifier an evidence did not link, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refusal {
    pub identifier: Identifier,
    pub reason: RefusalReason,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum RefusalReason {
    /// A junk value (`null`, all zeros, a shared test address, …): never linked.
    Blocklisted,
    /// The customer would hold more values of `kind` than allowed.
    Limit {
        kind: String,
        would_have: usize,
        limit: usize,
    },
    /// The link would go through the weak identifier `via` and join two customers that
    /// each hold a strong identifier, without strong evidence on both sides.
    WeakLink { via: Identifier },
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let id = &self.identifier;
        write!(f, "{} {} not linked: ", id.kind, id.value)?;
        match &self.reason {
            RefusalReason::Blocklisted => f.write_str("the value is on the blocklist"),
            RefusalReason::Limit {
                kind,
                would_have,
                limit,
            } => write!(
                f,
                "the customer would have {would_have} {kind} values (limit {limit})"
            ),
            RefusalReason::WeakLink { via } => write!(
                f,
                "the weak {} {} would join two customers that each have a strong identifier",
                via.kind, via.value
            ),
        }
    }
}

/// One evidence as a customer view shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterEvidence {
    pub id: EvidenceId,
    pub evidence: Evidence,
    pub decision: Decision,
    /// Every identifier of it that was not linked, in link order.
    pub refusals: Vec<Refusal>,
}

/// A customer: its identifiers and keys, and every evidence touching it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cluster {
    /// Its canonical id, the smallest key among its identifiers; `None` when none has a key.
    pub customer: Option<CustomerId>,
    /// Sorted.
    pub identifiers: Vec<Identifier>,
    /// Write-time keys of its identifiers, sorted.
    pub keys: Vec<CustomerId>,
    /// Evidence with at least one identifier in the cluster (linked, refused or revoked),
    /// in canonical order (time, then identifiers).
    pub evidence: Vec<ClusterEvidence>,
}

/// A write-time key whose canonical customer changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Remap {
    pub key: CustomerId,
    /// The canonical customer before; the key itself when it was new or unmapped.
    pub from: CustomerId,
    pub to: CustomerId,
}

/// What a mutating call changed, for the caller's caches and its log.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Changed {
    /// Keys whose canonical customer changed, sorted by key. Applying them to a
    /// key → canonical overlay (removing entries where `to == key`) keeps it exact.
    pub remapped: Vec<Remap>,
    /// Canonical customers (before or after) whose identifiers or evidence changed, sorted:
    /// the customer views to refresh.
    pub touched: Vec<CustomerId>,
    /// Records to persist, in order, so that a restart rebuilds the same graph.
    pub persist: Vec<Persisted>,
}

impl Changed {
    pub fn is_empty(&self) -> bool {
        self.remapped.is_empty() && self.touched.is_empty() && self.persist.is_empty()
    }

    /// Appends the records to persist to `log`, in order.
    pub fn persist_to<L: IdentityLog + ?Sized>(&self, log: &mut L) -> Result<(), L::Error> {
        self.persist.iter().try_for_each(|p| log.append(p))
    }
}

/// The outcome of observing one evidence.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Observed {
    pub evidence: EvidenceId,
    /// False when an evidence with the same identifier set already existed.
    pub is_new: bool,
    pub changed: Changed,
}

/// The outcome of observing a batch of evidence.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ObservedBatch {
    /// The id of each input evidence, in input order.
    pub evidence: Vec<EvidenceId>,
    pub changed: Changed,
}

/// One durable change to the graph. Replaying them in order through
/// [`crate::Snapshot::apply`] (or appending them to a snapshot as an [`IdentityLog`])
/// rebuilds the graph.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "change", rename_all = "snake_case")]
pub enum Persisted {
    /// New evidence, with its identifiers sorted and de-duplicated.
    Evidence {
        id: EvidenceId,
        evidence: Evidence,
    },
    /// The same identifier set was observed with an earlier origin, which replaces the old.
    Earlier {
        id: EvidenceId,
        source: Source,
        at: Timestamp,
        event: Option<String>,
    },
    Revoked {
        id: EvidenceId,
    },
    Key {
        identifier: Identifier,
        key: CustomerId,
    },
}

/// Where the app persists the graph's changes as they happen (the crate does no IO).
pub trait IdentityLog {
    type Error;
    fn append(&mut self, change: &Persisted) -> Result<(), Self::Error>;
}

impl IdentityLog for Vec<Persisted> {
    type Error = std::convert::Infallible;
    fn append(&mut self, change: &Persisted) -> Result<(), Self::Error> {
        self.push(change.clone());
        Ok(())
    }
}

/// Counts describing a graph.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GraphStats {
    pub identifiers: u64,
    pub blocked_identifiers: u64,
    pub evidence: u64,
    pub revoked_evidence: u64,
    pub refused_evidence: u64,
    pub keys: u64,
    pub clusters: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    #[error("evidence {id} does not exist (the identity graph holds {len} pieces of evidence)")]
    UnknownEvidence { id: EvidenceId, len: u64 },
    #[error("identifier {0} is not in the identity graph")]
    UnknownIdentifier(Identifier),
    #[error("customer key {key} already belongs to {owner}; it cannot also key {identifier}")]
    KeyTaken {
        key: CustomerId,
        owner: Identifier,
        identifier: Identifier,
    },
    #[error("customer key {0} is reserved and cannot key an identifier")]
    ReservedKey(CustomerId),
    #[error("snapshot {what} refers to identifier #{index}, but the snapshot lists only {len} identifiers")]
    SnapshotIdentifier { what: String, index: u64, len: u64 },
    #[error("snapshot is malformed: {0}")]
    SnapshotShape(String),
    #[error("identity image is malformed: {0}")]
    ImageShape(String),
    #[error("snapshot assigns customer key {key} to both {first} and {second}")]
    SnapshotDuplicateKey {
        key: CustomerId,
        first: Identifier,
        second: Identifier,
    },
    #[error("persisted evidence {got} is out of sequence: the snapshot expects evidence {expected} next")]
    OutOfSequence {
        got: EvidenceId,
        expected: EvidenceId,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use omnitrail_model::IdentifierKind;

    #[test]
    fn refusals_read_as_sentences() {
        let r = Refusal {
            identifier: Identifier {
                kind: IdentifierKind::Email,
                value: "ana@x.com".into(),
            },
            reason: RefusalReason::Limit {
                kind: "email".into(),
                would_have: 6,
                limit: 5,
            },
        };
        assert_eq!(
            r.to_string(),
            "email ana@x.com not linked: the customer would have 6 email values (limit 5)"
        );
        let json = serde_json::to_value(Decision::Refused(r)).unwrap();
        assert_eq!(json["decision"], "refused");
        assert_eq!(json["reason"]["type"], "limit");
        assert_eq!(json["identifier"]["kind"], "email");
    }
}
