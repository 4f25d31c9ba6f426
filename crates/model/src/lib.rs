//! Omnitrail's event model: what a touchpoint event is, and how its parts are validated
//! and normalized. No IO, no HTTP, no Arrow: every other crate builds on these types.

pub mod channel;
pub mod clock;
pub mod event;
pub mod identifier;
pub mod journeys;
pub mod timestamp;
pub mod value;

pub use channel::{Channel, ChannelError};
pub use clock::{Clock, FixedClock, SystemClock};
/// `format!` into a [`Text`], without a heap allocation when the result is short.
pub use compact_str::format_compact as format_text;
pub use event::{Event, Properties, ValidationError};
pub use identifier::{Identifier, IdentifierError, IdentifierKind};
pub use timestamp::{Timestamp, TimestampError, MICROS_PER_SECOND};
pub use value::{check_property, property_from_text, Outcome, Text, Value, WELL_KNOWN_PROPERTIES};

/// A project: every stored row belongs to one. Local use has the default project.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct ProjectId(pub u32);

impl ProjectId {
    pub const DEFAULT: ProjectId = ProjectId(1);
}

/// A resolved customer, stable for the life of the data dir.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct CustomerId(pub u64);

impl std::fmt::Display for CustomerId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "c{}", self.0)
    }
}
