//! Where each write-time key's segment rows are filed: under the canonical customer its
//! cluster had when the key was first compacted (its **placement**). Segments are sorted
//! and partitioned by placement, so a partition read as it is already holds whole
//! customers; only keys whose customer changed since they were placed (a later merge or
//! unmerge) need moving when journeys are read (`Store::resolution`).
//!
//! A key keeps its placement until it is re-placed (`Store::re_place`, which moves all of
//! its rows at once): rows compacted later are filed under it too, so every segment row of
//! a key is under the same customer and a key's rows are found through that customer's
//! pages alone.
//!
//! Runs (`index/<file-id>.place`): magic `OTPLC\0\0\x01`, `from u64`, `to u64`,
//! `count u64`, then `count` pairs (key u64, placement u64) ascending by key, each key in
//! `from..to` and placed under another customer than itself; then a CRC-32 of everything
//! before it. A run records the keys one compaction placed (`from..to`); keys placed under
//! themselves are implied by the range.

use crate::durability::{write_atomically, Durability};
use crate::StoreError;
use omnitrail_model::{CustomerId, ProjectId};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;

const MAGIC: &[u8; 8] = b"OTPLC\0\0\x01";
const HEADER: usize = 32;

/// Canonical customers of keys a compaction places for the first time, one per key, in
/// order. The app answers from its identity graph; without one every key is its own.
pub type Placer = dyn Fn(ProjectId, &[CustomerId]) -> Vec<CustomerId> + Send + Sync;

/// The placement of every compacted key.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Placement {
    /// Keys below this are placed; keys at or above have no segment rows yet.
    placed_end: u64,
    /// Keys placed under another customer, ascending by key.
    moved: Vec<(u64, u64)>,
}

impl Placement {
    /// Every key below `placed_end` under itself: a data dir written before placements.
    pub fn unmoved(placed_end: u64) -> Placement {
        Placement {
            placed_end,
            moved: Vec::new(),
        }
    }

    pub fn placed_end(&self) -> u64 {
        self.placed_end
    }

    /// Keys placed under another customer, ascending by key.
    pub fn moved(&self) -> &[(u64, u64)] {
        &self.moved
    }

    /// The customer `key`'s segment rows are filed under; `None` while it has none.
    pub fn of(&self, key: u64) -> Option<u64> {
        if key >= self.placed_end {
            return None;
        }
        Some(match self.moved.binary_search_by_key(&key, |&(k, _)| k) {
            Ok(i) => self.moved[i].1,
            Err(_) => key,
        })
    }

    /// Where a segment row of `key` is filed: its placement, or the key itself while it
    /// has none (and for keys of a store without a placer).
    pub fn filed(&self, key: u64) -> u64 {
        self.of(key).unwrap_or(key)
    }

    /// Counts every key below `to` as placed (those in no pair under themselves).
    pub(crate) fn place_up_to(&mut self, to: u64) {
        self.placed_end = self.placed_end.max(to);
    }

    /// This placement with the keys `placed_end..to` placed: `moved` lists those placed
    /// under another customer, ascending.
    pub fn extended(&self, to: u64, moved: &[(u64, u64)]) -> Placement {
        debug_assert!(moved.windows(2).all(|w| w[0].0 < w[1].0));
        debug_assert!(moved.iter().all(|&(k, _)| k >= self.placed_end && k < to));
        let mut next = self.clone();
        next.moved.extend_from_slice(moved);
        next.placed_end = next.placed_end.max(to);
        next
    }
}

/// Writes a run of the keys placed in `from..to` (`moved` ascending, each in range) and
/// fsyncs it.
pub fn write_run(
    path: &Path,
    from: u64,
    to: u64,
    moved: &[(u64, u64)],
    d: &dyn Durability,
) -> Result<(), StoreError> {
    let mut buf = Vec::with_capacity(HEADER + moved.len() * 16 + 4);
    buf.extend_from_slice(MAGIC);
    buf.extend_from_slice(&from.to_le_bytes());
    buf.extend_from_slice(&to.to_le_bytes());
    buf.extend_from_slice(&(moved.len() as u64).to_le_bytes());
    for (k, c) in moved {
        buf.extend_from_slice(&k.to_le_bytes());
        buf.extend_from_slice(&c.to_le_bytes());
    }
    let crc = crc32fast::hash(&buf);
    buf.extend_from_slice(&crc.to_le_bytes());
    write_atomically(d, path, &buf).map_err(|e| StoreError::Fsync {
        path: path.to_path_buf(),
        source: e,
    })
}

/// A run read back: the keys it covers (`from`, `to`) and its pairs.
pub type Run = (u64, u64, Vec<(u64, u64)>);

/// One run's range and pairs, checked: magic, checksum, length, order and range.
pub fn read_run(path: &Path, bytes: &[u8]) -> Result<Run, StoreError> {
    let corrupt = |reason: String| StoreError::Corrupt {
        path: path.to_path_buf(),
        reason,
    };
    if bytes.len() < HEADER + 4 || &bytes[..8] != MAGIC {
        return Err(corrupt("not a placement run".into()));
    }
    let (body, crc) = bytes.split_at(bytes.len() - 4);
    if crc32fast::hash(body) != u32::from_le_bytes(crc.try_into().expect("4 bytes")) {
        return Err(corrupt("checksum mismatch".into()));
    }
    let word = |at: usize| u64::from_le_bytes(body[at..at + 8].try_into().expect("8 bytes"));
    let (from, to, count) = (word(8), word(16), word(24));
    if (body.len() - HEADER) as u64 != count.saturating_mul(16) || from > to {
        return Err(corrupt("length does not match its count".into()));
    }
    // One pass parses and checks: runs hold millions of pairs on large stores.
    let mut pairs: Vec<(u64, u64)> = Vec::with_capacity(count as usize);
    let mut last: Option<u64> = None;
    for pair in body[HEADER..].chunks_exact(16) {
        let k = u64::from_le_bytes(pair[..8].try_into().expect("8 bytes"));
        let c = u64::from_le_bytes(pair[8..].try_into().expect("8 bytes"));
        if last.is_some_and(|l| l >= k) {
            return Err(corrupt(format!("key {k} is out of order")));
        }
        if k < from || k >= to || c == k {
            return Err(corrupt(format!(
                "key {k} is outside the run's keys {from}..{to} or placed under itself"
            )));
        }
        last = Some(k);
        pairs.push((k, c));
    }
    Ok((from, to, pairs))
}

/// The placement recorded by runs read in manifest order (each covering keys above the
/// last), over the keys below `base` placed under themselves.
pub fn assemble(base: u64, runs: impl IntoIterator<Item = Run>) -> Result<Placement, String> {
    let mut placement = Placement::unmoved(base);
    for (from, to, pairs) in runs {
        if let Some(&(first, _)) = pairs.first() {
            if first < placement.placed_end {
                return Err(format!(
                    "runs overlap: key {first} (of keys {from}..{to}) was placed by an earlier run"
                ));
            }
        }
        if placement.moved.is_empty() {
            placement.moved = pairs;
        } else {
            placement.moved.extend(pairs);
        }
        placement.placed_end = placement.placed_end.max(to);
    }
    Ok(placement)
}

/// How to read one project's journeys as its customers are now ([`crate::Store::resolution`]):
/// the identity overlay, and the keys whose customer changed since they were placed.
pub struct Resolution {
    pub(crate) project: ProjectId,
    pub(crate) partitions: u32,
    /// Write-time key → canonical customer, for keys of another customer (log records are
    /// not placed yet, so each is resolved through this).
    pub(crate) overlay: Arc<HashMap<CustomerId, CustomerId>>,
    /// Placed keys whose customer is no longer their placement → their customer now.
    pub(crate) moved: HashMap<u64, u64>,
    /// The placements holding a moved key's rows: only their rows are looked up in `moved`.
    pub(crate) affected: HashSet<u64>,
    /// Per partition: the placements in other partitions (partition → placements,
    /// ascending) whose moved keys now belong to a customer of this one.
    pub(crate) immigrants: Vec<BTreeMap<u32, Vec<u64>>>,
    /// The manifest's placement runs and placed end it was made from.
    pub(crate) stamp: (Vec<crate::PlacementRun>, u64),
}

impl Resolution {
    /// From the placement and the overlay; `None` when more than `limit` placements hold
    /// rows of moved keys, each of which costs a keyed read of its pages.
    pub(crate) fn new(
        project: ProjectId,
        partitions: u32,
        placement: &Placement,
        overlay: Arc<HashMap<CustomerId, CustomerId>>,
        limit: usize,
    ) -> Option<Resolution> {
        use rayon::prelude::*;
        let canonical = |key: u64| overlay.get(&CustomerId(key)).map_or(key, |c| c.0);
        // Millions of placed keys on a large store: looked up on every core.
        let (overlaid, changed) = placement
            .moved()
            .par_chunks(1 << 16)
            .map(|chunk| {
                let mut overlaid = 0usize;
                let mut changed = Vec::new();
                for &(key, filed) in chunk {
                    overlaid += usize::from(overlay.contains_key(&CustomerId(key)));
                    let now = canonical(key);
                    if now != filed {
                        changed.push((key, now));
                    }
                }
                (overlaid, changed)
            })
            .reduce(
                || (0, Vec::new()),
                |(a, mut x), (b, y)| {
                    x.extend(y);
                    (a + b, x)
                },
            );
        if changed.len() > limit {
            return None;
        }
        let mut moved: HashMap<u64, u64> = changed.into_iter().collect();
        // Keys the overlay merges that were placed under themselves (log-tail keys, not
        // placed yet, are resolved as they are read).
        let placed_in_overlay = overlay
            .keys()
            .filter(|k| k.0 < placement.placed_end())
            .count();
        if overlaid < placed_in_overlay {
            for (&key, &now) in overlay.iter() {
                if placement.of(key.0) == Some(key.0) {
                    moved.insert(key.0, now.0);
                }
                if moved.len() > limit {
                    return None;
                }
            }
        }
        let affected: HashSet<u64> = moved.keys().map(|&k| placement.filed(k)).collect();
        if affected.len() > limit {
            return None;
        }
        let mut immigrants = vec![BTreeMap::<u32, Vec<u64>>::new(); partitions as usize];
        for (&key, &now) in &moved {
            let filed = placement.filed(key);
            let from = crate::partition_of(project, CustomerId(filed), partitions);
            let to = crate::partition_of(project, CustomerId(now), partitions);
            if from != to {
                immigrants[to as usize].entry(from).or_default().push(filed);
            }
        }
        for placements in immigrants.iter_mut().flat_map(|m| m.values_mut()) {
            placements.sort_unstable();
            placements.dedup();
        }
        Some(Resolution {
            project,
            partitions,
            overlay,
            moved,
            affected,
            immigrants,
            stamp: Default::default(),
        })
    }

    pub(crate) fn stamped(mut self, stamp: (Vec<crate::PlacementRun>, u64)) -> Resolution {
        self.stamp = stamp;
        self
    }

    /// How many placed keys belong to another customer than the one they are filed under.
    pub fn moved_keys(&self) -> usize {
        self.moved.len()
    }

    /// The customer of a log record's key.
    pub(crate) fn canonical(&self, key: u64) -> u64 {
        self.overlay.get(&CustomerId(key)).map_or(key, |c| c.0)
    }

    pub(crate) fn partition_of(&self, customer: u64) -> u32 {
        crate::partition_of(self.project, CustomerId(customer), self.partitions)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::OsDurability;

    #[test]
    fn runs_round_trip_and_assemble_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.place");
        let b = dir.path().join("b.place");
        write_run(&a, 1, 10, &[(3, 1), (7, 5)], &OsDurability).unwrap();
        write_run(&b, 10, 20, &[(12, 2)], &OsDurability).unwrap();
        let runs = [&a, &b]
            .iter()
            .map(|p| read_run(p, &std::fs::read(p).unwrap()).unwrap())
            .collect::<Vec<_>>();
        let placement = assemble(1, runs).unwrap();
        assert_eq!(placement.placed_end(), 20);
        assert_eq!(placement.moved(), &[(3, 1), (7, 5), (12, 2)]);
        assert_eq!(placement.of(3), Some(1));
        assert_eq!(placement.of(4), Some(4));
        assert_eq!(placement.of(12), Some(2));
        assert_eq!(placement.of(20), None);
        assert_eq!(placement.filed(25), 25);
    }

    #[test]
    fn damaged_runs_are_refused_with_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.place");
        write_run(&p, 1, 10, &[(3, 1), (7, 5)], &OsDurability).unwrap();
        let good = std::fs::read(&p).unwrap();
        for at in 0..good.len() {
            let mut bad = good.clone();
            bad[at] ^= 0x40;
            let err = read_run(&p, &bad).unwrap_err().to_string();
            assert!(
                err.contains("placement run") || err.contains("checksum"),
                "byte {at}: {err}"
            );
        }
        let err = read_run(&p, &good[..good.len() - 1]).unwrap_err();
        assert!(err.to_string().contains("checksum"), "{err}");
    }
}
