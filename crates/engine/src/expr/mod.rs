//! The expression language: event filters (`--where`, funnel steps) and customer segments
//! (`--segment`). One small hand-written parser; errors point at a column. The grammar and
//! its rules are documented in `docs/expressions.md`.
//!
//! ```
//! use omnitrail_engine::expr::{EventFilter, Segment};
//! let f = EventFilter::parse("channel = 'phone' and os in ('iOS', 'iPadOS')").unwrap();
//! assert_eq!(f.referenced_properties(), ["os"]);
//! let s = Segment::parse("trait.plan = 'premium' and not did('purchase') within 7d").unwrap();
//! assert_eq!(s.referenced_traits(), ["plan"]);
//! let e = EventFilter::parse("channel = 'web' and os =").unwrap_err();
//! assert_eq!(e.to_string(), "error at column 25: expected a value after '=', found end of input");
//! ```

mod ast;
mod compile;
mod error;
mod lexer;
mod parser;

pub use ast::{
    text_as_number, CmpOp, Field, FilterExpr, Literal, Seen, SeenTest, SegmentExpr, Test, Val,
};
pub use compile::{CompiledFilter, CompiledSegment};
pub use error::ExprError;

use crate::Stages;
use omnitrail_model::journeys::Journeys;
use parser::{Mentions, Parser};
use std::fmt;

/// A test over single events, such as `channel = 'phone' and os in ('iOS', 'iPadOS')`.
#[derive(Clone, Debug, PartialEq)]
pub struct EventFilter {
    source: String,
    expr: FilterExpr,
    mentions: Mentions,
}

impl EventFilter {
    pub fn parse(text: &str) -> Result<EventFilter, ExprError> {
        let (expr, mentions) = Parser::new(text)?.filter()?;
        Ok(EventFilter {
            source: text.to_string(),
            expr,
            mentions,
        })
    }

    /// The syntax tree.
    pub fn expr(&self) -> &FilterExpr {
        &self.expr
    }

    /// The text it was parsed from.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Property names the filter reads, sorted.
    pub fn referenced_properties(&self) -> Vec<String> {
        self.mentions.properties.iter().cloned().collect()
    }

    /// Trait names the filter reads: none, as traits belong to segments; here so both kinds
    /// of expression answer the same questions.
    pub fn referenced_traits(&self) -> Vec<String> {
        self.mentions.traits.iter().cloned().collect()
    }

    /// Resolves the filter against one partition's dictionaries and evaluates it. A property
    /// the partition has no column for is missing on all its events. Fails when the filter
    /// tests `stage` without configured stages or names a stage that is not configured.
    pub fn compile(&self, j: &Journeys, stages: &Stages) -> Result<CompiledFilter, ExprError> {
        let ctx = compile::Ctx {
            j,
            stages,
            mentions: &self.mentions,
            source: &self.source,
        };
        ctx.check_stages()?;
        Ok(compile::compiled_filter(j, ctx.filter(&self.expr)))
    }
}

/// Prints the canonical form, which parses back to the same tree.
impl fmt::Display for EventFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.expr.fmt(f)
    }
}

/// A test over customers, such as
/// `trait.plan = 'premium' and did('payment_failed') and not did('purchase') within 7d`.
#[derive(Clone, Debug, PartialEq)]
pub struct Segment {
    source: String,
    expr: SegmentExpr,
    mentions: Mentions,
}

impl Segment {
    pub fn parse(text: &str) -> Result<Segment, ExprError> {
        let (expr, mentions) = Parser::new(text)?.segment()?;
        Ok(Segment {
            source: text.to_string(),
            expr,
            mentions,
        })
    }

    pub fn expr(&self) -> &SegmentExpr {
        &self.expr
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    /// Property names read by the event filters inside `did(...)`/`count(...)`, sorted.
    pub fn referenced_properties(&self) -> Vec<String> {
        self.mentions.properties.iter().cloned().collect()
    }

    /// Trait names the segment reads, sorted.
    pub fn referenced_traits(&self) -> Vec<String> {
        self.mentions.traits.iter().cloned().collect()
    }

    /// Resolves the segment against one partition and evaluates it for every customer;
    /// `now` (µs) anchors `within` windows. Fails like [`EventFilter::compile`].
    pub fn compile(
        &self,
        j: &Journeys,
        stages: &Stages,
        now: i64,
    ) -> Result<CompiledSegment, ExprError> {
        let ctx = compile::Ctx {
            j,
            stages,
            mentions: &self.mentions,
            source: &self.source,
        };
        ctx.check_stages()?;
        Ok(compile::compiled_segment(j, ctx.segment(&self.expr, now)))
    }
}

impl fmt::Display for Segment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.expr.fmt(f)
    }
}

/// The UTC hour (0–23) and ISO weekday (1 = Monday) of a timestamp, as filters see them.
pub fn hour_and_weekday(ts: i64) -> (u32, u32) {
    (compile::hour_of(ts), compile::weekday_of(ts))
}
