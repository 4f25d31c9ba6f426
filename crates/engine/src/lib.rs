//! Journey analytics over columnar journeys.
//!
//! Pure: columnar [`Journeys`](omnitrail_model::journeys::Journeys) in, plain result structs
//! out; no IO and no threads but rayon's. Every analysis is a fold over cases
//! ([`Prepared::fold_cases`]) into a mergeable partial, run per chunk of customers in
//! parallel and merged in a fixed order, so results are deterministic.

pub mod case;
pub mod channel_performance;
pub mod channels;
pub mod compare;
pub mod conformance;
pub mod emotion;
pub mod expr;
pub mod friction;
pub mod funnel;
pub mod handoffs;
pub mod journey_map;
pub mod lifecycle;
pub mod overview;
pub mod paths;
pub mod personas;
pub mod process_map;
pub mod query;
pub mod root_cause;
pub mod stats;
pub mod step_customers;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod variants;

pub use case::{Case, Prepared};
pub use channels::{channel_switching, ChannelOptions, ChannelSwitching};
pub use process_map::{process_map, MapOptions, ProcessMap};
pub use query::CustomerSet;
pub use query::{format_duration, parse_duration, CaseSplit, Query, Stages, StepDimension};
pub use variants::{variants, variants_scan, VariantOptions, Variants};

/// What can go wrong preparing or running an analysis.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum EngineError {
    #[error("invalid step dimension '{input}': {reason}")]
    InvalidStepDimension { input: String, reason: String },
    #[error("invalid case split '{input}': {reason}")]
    InvalidCaseSplit { input: String, reason: String },
    #[error("invalid duration '{input}': {reason}")]
    InvalidDuration { input: String, reason: String },
    #[error(
        "activity '{activity}' is assigned to stage '{stage}', which is not a configured stage"
    )]
    UnknownStage { stage: String, activity: String },
    #[error("empty time range: from ({from} µs) must be before to ({to} µs)")]
    EmptyTimeRange { from: i64, to: i64 },
    #[error("event filter cannot run on partition {partition}: {reason}")]
    Filter { partition: usize, reason: String },
    #[error("segment cannot run on partition {partition}: {reason}")]
    Segment { partition: usize, reason: String },
    #[error("invalid option {option}: {reason}")]
    InvalidOption {
        option: &'static str,
        reason: String,
    },
    #[error("designed journey '{design}': {reason}")]
    InvalidDesign { design: String, reason: String },
}
