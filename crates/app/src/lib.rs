//! The one boundary of Omnitrail: opening a data dir, ingesting, importing, stats.
pub mod import;
