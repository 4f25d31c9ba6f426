//! The manifest: which segment and index files are live, and how far the log has been
//! compacted. It is replaced atomically, so after a crash the store sees either the state
//! before a compaction or the state after it, never a mix.

use crate::durability::{write_atomically, Durability};
use crate::StoreError;
use omnitrail_model::ProjectId;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// 3: segment rows are filed under their placement, with the write-time key in a column
/// of its own (2, whose rows are filed under their keys, is read as it is and upgraded by
/// the next write); 2: write-time keys belong to primary identifiers (1 keyed events by
/// any known identifier, which identity resolution cannot undo).
pub const FORMAT_VERSION: u32 = 3;
pub const MANIFEST_FILE: &str = "MANIFEST.json";
pub const DEFAULT_PARTITIONS: u32 = 16;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format_version: u32,
    /// Bumped by every swap; caches key on it.
    pub version: u64,
    /// Customers are spread over this many partitions by hash; fixed for the data dir.
    pub partitions: u32,
    /// Every record with a sequence number below this lives in a segment, not the log.
    pub compacted_seq_end: u64,
    pub next_customer: u64,
    pub segments: Vec<SegmentMeta>,
    /// Index runs (de-duplication and customer-key entries) of the compacted records.
    pub index_runs: Vec<String>,
    pub next_file_id: u64,
    /// Keys below this have been placed (`placement.rs`); absent before format 3, when
    /// every compacted key was filed under itself (keys below `next_customer`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placed_end: Option<u64>,
    /// Placement runs, in the order they were written.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub placement_runs: Vec<PlacementRun>,
}

/// A placement run of one project's keys.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlacementRun {
    pub project: ProjectId,
    /// Path relative to the data dir.
    pub file: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SegmentMeta {
    /// Path relative to the data dir.
    pub file: String,
    pub project: ProjectId,
    pub partition: u32,
    pub rows: u64,
    pub min_ts: i64,
    pub max_ts: i64,
    pub bytes: u64,
    /// Names of the traits its events carry, sorted (absent in manifests before traits).
    #[serde(default)]
    pub traits: Vec<String>,
    /// Its events by channel and by activity, so counting needs no read of the file
    /// (absent in manifests before counts: those segments are read instead).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub counts: Option<SegmentCounts>,
}

/// Events of one segment by channel and by activity name.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentCounts {
    pub channels: std::collections::BTreeMap<String, u64>,
    pub activities: std::collections::BTreeMap<String, u64>,
}

impl SegmentCounts {
    pub fn add(&mut self, other: &SegmentCounts) {
        for (name, n) in &other.channels {
            *self.channels.entry(name.clone()).or_default() += n;
        }
        for (name, n) in &other.activities {
            *self.activities.entry(name.clone()).or_default() += n;
        }
    }
}

impl Manifest {
    pub fn new(partitions: u32) -> Manifest {
        Manifest {
            format_version: FORMAT_VERSION,
            version: 0,
            partitions,
            compacted_seq_end: 0,
            next_customer: 1,
            segments: Vec::new(),
            index_runs: Vec::new(),
            next_file_id: 1,
            placed_end: Some(1),
            placement_runs: Vec::new(),
        }
    }

    /// Keys below this have segment rows filed under their placement.
    pub fn placed_end(&self) -> u64 {
        self.placed_end.unwrap_or(self.next_customer)
    }

    pub fn load(dir: &Path) -> Result<Option<Manifest>, StoreError> {
        let path = dir.join(MANIFEST_FILE);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(StoreError::io(&path, e)),
        };
        let mut m: Manifest = serde_json::from_slice(&bytes).map_err(|e| StoreError::Corrupt {
            path: path.clone(),
            reason: format!("manifest is not valid: {e}"),
        })?;
        if m.format_version == 1 {
            return Err(StoreError::Corrupt {
                path,
                reason: "format version 1 keyed events by any identifier already known, \
                         which identity resolution cannot undo; import the data again into a \
                         new data dir"
                    .into(),
            });
        }
        if m.format_version != FORMAT_VERSION && m.format_version != 2 {
            return Err(StoreError::Corrupt {
                path,
                reason: format!(
                    "format version {} is not supported (this build reads {FORMAT_VERSION})",
                    m.format_version
                ),
            });
        }
        // Version 2 filed every compacted key under itself; the next swap writes version 3.
        m.placed_end = Some(m.placed_end());
        m.format_version = FORMAT_VERSION;
        Ok(Some(m))
    }

    pub fn save(&self, dir: &Path, d: &dyn Durability) -> Result<(), StoreError> {
        let path = dir.join(MANIFEST_FILE);
        let bytes =
            serde_json::to_vec_pretty(self).map_err(|e| StoreError::Encode(e.to_string()))?;
        write_atomically(d, &path, &bytes).map_err(|e| StoreError::Fsync { path, source: e })
    }

    pub fn segments_of(
        &self,
        project: ProjectId,
        partition: u32,
    ) -> impl Iterator<Item = &SegmentMeta> {
        self.segments
            .iter()
            .filter(move |s| s.project == project && s.partition == partition)
    }
}
