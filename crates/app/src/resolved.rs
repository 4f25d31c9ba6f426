//! The resolved journeys of [`crate::App::journeys`], kept between queries within a byte
//! budget. A server runs many analyses, each with its own columns; kept all at once they
//! added up to more than the machine (8 GB after every analysis once on the 1M demo). Past
//! the budget the least recently used column sets go, never the one just built, so a
//! repeated query between ingests still pays only its computation.

use omnitrail_model::journeys::{Journeys, ScanSpec};
use omnitrail_model::ProjectId;
use std::collections::HashMap;
use std::sync::Arc;

/// What the cached columns were read at: the store's data version and the identity
/// generation.
pub(crate) type Stamp = ((u64, u64), u64);

type Key = (ProjectId, ScanSpec);

struct Entry {
    stamp: Stamp,
    parts: Vec<Arc<Journeys>>,
    bytes: usize,
    used: u64,
}

pub(crate) struct ResolvedCache {
    budget: usize,
    clock: u64,
    entries: HashMap<Key, Entry>,
}

impl ResolvedCache {
    pub fn new(budget: usize) -> ResolvedCache {
        ResolvedCache {
            budget,
            clock: 0,
            entries: HashMap::new(),
        }
    }

    /// The columns of `key` if they were read at `stamp`.
    pub fn get(&mut self, key: &Key, stamp: Stamp) -> Option<Vec<Arc<Journeys>>> {
        self.clock += 1;
        let entry = self.entries.get_mut(key).filter(|e| e.stamp == stamp)?;
        entry.used = self.clock;
        Some(entry.parts.clone())
    }

    /// Keeps `parts`; drops what was read at another stamp, then the least recently used
    /// until the rest fits the budget.
    pub fn insert(&mut self, key: Key, stamp: Stamp, parts: Vec<Arc<Journeys>>) {
        self.clock += 1;
        self.entries.retain(|_, e| e.stamp == stamp);
        let bytes = parts.iter().map(|j| j.heap_bytes()).sum();
        self.entries.insert(
            key.clone(),
            Entry {
                stamp,
                parts,
                bytes,
                used: self.clock,
            },
        );
        while self.bytes() > self.budget {
            let oldest = self
                .entries
                .iter()
                .filter(|(k, _)| **k != key)
                .min_by_key(|(_, e)| e.used)
                .map(|(k, _)| k.clone());
            match oldest {
                Some(k) => {
                    self.entries.remove(&k);
                }
                None => break,
            }
        }
    }

    pub fn clear(&mut self) {
        self.entries.clear();
    }

    fn bytes(&self) -> usize {
        self.entries.values().map(|e| e.bytes).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use omnitrail_model::journeys::Dictionary;
    use std::collections::BTreeMap;

    fn parts(events: usize) -> Vec<Arc<Journeys>> {
        vec![Arc::new(Journeys {
            project: ProjectId::DEFAULT,
            partition: 0,
            customers: Vec::new(),
            offsets: vec![0],
            ts: vec![0; events],
            activity: vec![0; events].into(),
            activities: Dictionary::default(),
            channel: vec![0; events],
            channels: Dictionary::default(),
            properties: BTreeMap::new(),
            traits: BTreeMap::new(),
        })]
    }

    fn key(property: &str) -> Key {
        let spec = ScanSpec {
            properties: vec![property.to_string()],
            traits: Vec::new(),
        };
        (ProjectId::DEFAULT, spec)
    }

    const AT: Stamp = ((1, 1), 1);

    #[test]
    fn the_cache_keeps_within_its_budget_by_dropping_the_least_recently_used() {
        // 14 bytes an event plus the offset: 1,000 events are 14,004 bytes.
        let mut cache = ResolvedCache::new(30_000);
        cache.insert(key("a"), AT, parts(1_000));
        cache.insert(key("b"), AT, parts(1_000));
        assert!(cache.get(&key("a"), AT).is_some(), "a is used again");
        cache.insert(key("c"), AT, parts(1_000));
        assert!(
            cache.get(&key("b"), AT).is_none(),
            "b was the least recently used"
        );
        assert!(cache.get(&key("a"), AT).is_some());
        assert!(cache.get(&key("c"), AT).is_some());
    }

    #[test]
    fn the_cache_keeps_what_was_just_read_even_past_its_budget() {
        let mut cache = ResolvedCache::new(100);
        cache.insert(key("a"), AT, parts(1_000));
        cache.insert(key("b"), AT, parts(1_000));
        assert!(cache.get(&key("a"), AT).is_none());
        assert!(cache.get(&key("b"), AT).is_some());
    }

    #[test]
    fn the_cache_answers_only_at_the_stamp_it_was_read_at() {
        let mut cache = ResolvedCache::new(1 << 30);
        cache.insert(key("a"), AT, parts(10));
        assert!(cache.get(&key("a"), ((2, 1), 1)).is_none());
        cache.insert(key("b"), ((2, 1), 1), parts(10));
        assert!(
            cache.get(&key("a"), AT).is_none(),
            "stale entries go on insert"
        );
    }
}
