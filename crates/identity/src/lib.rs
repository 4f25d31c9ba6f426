//! The identity graph: which identifiers are one customer, why, and why not.
//!
//! Pure and deterministic: no IO (changes to persist are handed back to the caller, see
//! [`IdentityLog`]), no clock, no randomness.
//!
//! # Model
//!
//! - **Nodes** are identifiers ([`omnitrail_model::Identifier`], already in normal form),
//!   interned into dense `u32` ids.
//! - **Evidence** is a set of identifiers seen together — the identifiers of one event, an
//!   `identify(userId, traits{email, phone})` or an `alias(previousId, userId)` — with its
//!   source, time and event reference. One identifier set is one evidence: seeing it again
//!   keeps the earliest origin. Evidence is never deleted; an unmerge *revokes* it.
//! - **Customers** are clusters: connected components of the links evidence was allowed to
//!   make. Every evidence keeps its [`Decision`] and every refused identifier its
//!   [`Refusal`], so a customer view can say "linked by event X at T: email + phone" and
//!   "refused: the customer would have 6 email values (limit 5)".
//!
//! # Applying one evidence
//!
//! Its blocked identifiers are refused outright. The others are taken in *link order*
//! (guardrail priority, then value, then kind); starting from the cluster of the first, each
//! next identifier's cluster is joined if the joined customer respects the [`Guardrails`]:
//!
//! - **limits**: at most *n* values of a kind per customer (user_id 1, crm_id 1, email 5,
//!   phone 5, each social network 3, custom kinds 5, device_id 10, anonymous_id 100);
//! - **weak rule**: weak kinds (device_id, anonymous_id) may attach to a customer, but two
//!   clusters that each hold a strong identifier are joined only if the evidence carries a
//!   strong identifier in both. A device shared by 500 people who each have an email merges
//!   none of them.
//!
//! Otherwise the identifier is refused with the reason, never linked silently.
//!
//! # Order independence: canonical replay
//!
//! The result must not depend on arrival order, yet guardrails make it order-sensitive
//! (which of two emails is the sixth?). So evidence is applied in *canonical order* — time,
//! then the sorted identifier list — as if it had all arrived sorted. Evidence links
//! identifiers into *potential components* (over all evidence, accepted, refused or
//! revoked, ignoring blocked identifiers); clusters never cross them. New evidence that
//! sorts after everything already applied in its component is applied on top; otherwise,
//! and after a revoke or unmerge, the component's clusters are rebuilt by replaying its
//! evidence in canonical order. [`IdentityGraph::observe_batch`] replays each affected
//! component once for bulk loads.
//!
//! # Canonical customer id
//!
//! The store keys every event at write time by a `CustomerId` allocated per primary
//! identifier ([`IdentityGraph::primary`]); [`IdentityGraph::set_key`] attaches it to the
//! identifier. A cluster's canonical id is the **smallest key among its identifiers**: a
//! merge keeps the older id, and it is order-independent too. [`IdentityGraph::overlay`]
//! maps every other key to its canonical id, and every mutating call reports the keys it
//! remapped ([`Changed::remapped`]).
//!
//! # Persistence
//!
//! Mutating calls return [`Persisted`] records (in [`Changed::persist`]) for the caller to
//! append to its log ([`IdentityLog`]). [`IdentityGraph::snapshot`] gives a serializable,
//! guardrails-independent [`Snapshot`]; a snapshot plus the records logged since
//! ([`Snapshot::apply`]) restores the graph with [`IdentityGraph::restore`], under the same
//! or changed guardrails.
//!
//! # Cost
//!
//! Identifiers are interned into `u32` ids; a node is one 64-byte record, an evidence a
//! 32-byte one, with values, identifier lists and event references in flat arenas — about
//! 750 MB for 5M evidence over 3.5M identifiers (`examples/scale.rs`). Evidence that arrives
//! in time order, or that carries fewer than two usable identifiers, is applied in O(its
//! clusters' size). Evidence arriving before what its component already holds costs a replay
//! of that component; for bulk loads out of time order use
//! [`IdentityGraph::observe_batch`] (one replay per component per batch) or build a
//! [`Snapshot`] and [`IdentityGraph::restore`] it (one canonical pass over everything).
//! Junk values that are not blocklisted tie many people into one large component and make
//! such replays expensive: extend the blocklist rather than raise limits.

mod graph;
mod guardrails;
mod index;
mod snapshot;
mod types;

pub use graph::{ComponentGraph, Cut, GraphImage, IdentityGraph, PreviousGraphImage};
pub use guardrails::Guardrails;
pub use snapshot::Snapshot;
pub use types::{
    Changed, Cluster, ClusterEvidence, Decision, Evidence, EvidenceId, GraphStats, IdentityError,
    IdentityLog, Observed, ObservedBatch, Persisted, Refusal, RefusalReason, Remap, Source,
};
