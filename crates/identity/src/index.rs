//! A compact open-addressing hash index of `u32` ids whose keys live in the graph's own
//! columns (identifier values, evidence identifier lists, customer keys).
//!
//! A `HashMap<Identifier, u32>` would store every identifier a second time; at millions of
//! nodes and evidence that doubles the memory of the graph. Here a slot is 8 bytes: 32 bits
//! of the hash (used both to place the slot and to skip most key comparisons) and the id.
//! Nothing is ever removed, so there are no tombstones.

/// The id that marks an empty slot; ids handed to the index are always smaller.
pub(crate) const NONE: u32 = u32::MAX;

#[derive(Clone, Copy)]
struct Slot {
    tag: u32,
    id: u32,
}

const EMPTY: Slot = Slot { tag: 0, id: NONE };

#[derive(Clone, Default)]
pub(crate) struct IdIndex {
    slots: Vec<Slot>,
    len: usize,
}

impl IdIndex {
    pub(crate) fn with_capacity(n: usize) -> IdIndex {
        let mut index = IdIndex::default();
        if n > 0 {
            index.slots = vec![EMPTY; slots_for(n)];
        }
        index
    }

    pub(crate) fn heap_bytes(&self) -> usize {
        self.slots.capacity() * std::mem::size_of::<Slot>()
    }

    /// The id stored under `hash` for which `eq` holds.
    pub(crate) fn find(&self, hash: u64, mut eq: impl FnMut(u32) -> bool) -> Option<u32> {
        if self.slots.is_empty() {
            return None;
        }
        let tag = tag_of(hash);
        let mask = self.slots.len() - 1;
        let mut i = tag as usize & mask;
        loop {
            let slot = self.slots[i];
            if slot.id == NONE {
                return None;
            }
            if slot.tag == tag && eq(slot.id) {
                return Some(slot.id);
            }
            i = (i + 1) & mask;
        }
    }

    /// Adds `id` under `hash`; the caller has checked that no equal key is present.
    pub(crate) fn insert(&mut self, hash: u64, id: u32) {
        debug_assert_ne!(id, NONE);
        if (self.len + 1) * 4 > self.slots.len() * 3 {
            self.grow();
        }
        place(&mut self.slots, tag_of(hash), id);
        self.len += 1;
    }

    /// The slots as they are: 32 bits of hash and the id, little-endian, 8 bytes a slot.
    pub(crate) fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.slots.len() * 8);
        for s in &self.slots {
            out.extend_from_slice(&s.tag.to_le_bytes());
            out.extend_from_slice(&s.id.to_le_bytes());
        }
        out
    }

    /// An index from [`IdIndex::to_bytes`] whose ids are all below `ids`. A slot in the
    /// wrong place can only make a lookup miss (every hit compares the key); the shape
    /// and load are checked so that a probe always ends.
    pub(crate) fn from_bytes(bytes: &[u8], ids: usize) -> Result<IdIndex, String> {
        if !bytes.len().is_multiple_of(8) {
            return Err(format!("{} bytes are not whole 8-byte slots", bytes.len()));
        }
        let n = bytes.len() / 8;
        if n != 0 && (!n.is_power_of_two() || n < 16) {
            return Err(format!("{n} slots is not a power of two of at least 16"));
        }
        let mut slots = Vec::with_capacity(n);
        let mut len = 0;
        for s in bytes.chunks_exact(8) {
            let tag = u32::from_le_bytes([s[0], s[1], s[2], s[3]]);
            let id = u32::from_le_bytes([s[4], s[5], s[6], s[7]]);
            if id != NONE {
                if id as usize >= ids {
                    return Err(format!("slot names id {id}, past the {ids} there are"));
                }
                len += 1;
            }
            slots.push(Slot { tag, id });
        }
        if len * 4 > n * 3 {
            return Err(format!("{len} ids in {n} slots is over the load limit"));
        }
        Ok(IdIndex { slots, len })
    }

    /// [`IdIndex::find`] on slots as [`IdIndex::to_bytes`] wrote them, read in place. A
    /// probe visits each slot at most once, so damaged slots end it too.
    pub(crate) fn find_in_bytes(
        bytes: &[u8],
        hash: u64,
        mut eq: impl FnMut(u32) -> bool,
    ) -> Result<Option<u32>, String> {
        let n = bytes.len() / 8;
        if !bytes.len().is_multiple_of(8) || (n != 0 && !n.is_power_of_two()) {
            return Err(format!(
                "{} bytes are not a power of two of slots",
                bytes.len()
            ));
        }
        if n == 0 {
            return Ok(None);
        }
        let tag = tag_of(hash);
        let mut i = tag as usize & (n - 1);
        for _ in 0..n {
            let s = &bytes[i * 8..i * 8 + 8];
            let id = u32::from_le_bytes([s[4], s[5], s[6], s[7]]);
            if id == NONE {
                return Ok(None);
            }
            if u32::from_le_bytes([s[0], s[1], s[2], s[3]]) == tag && eq(id) {
                return Ok(Some(id));
            }
            i = (i + 1) & (n - 1);
        }
        Ok(None)
    }

    fn grow(&mut self) {
        let size = slots_for(self.len + 1).max(self.slots.len() * 2);
        let old = std::mem::replace(&mut self.slots, vec![EMPTY; size]);
        for slot in old.into_iter().filter(|s| s.id != NONE) {
            place(&mut self.slots, slot.tag, slot.id);
        }
    }
}

fn place(slots: &mut [Slot], tag: u32, id: u32) {
    let mask = slots.len() - 1;
    let mut i = tag as usize & mask;
    while slots[i].id != NONE {
        i = (i + 1) & mask;
    }
    slots[i] = Slot { tag, id };
}

/// A power of two that keeps the load at or below 3/4.
fn slots_for(n: usize) -> usize {
    (n * 4 / 3 + 1).next_power_of_two().max(16)
}

fn tag_of(hash: u64) -> u32 {
    (hash >> 32) as u32
}

const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

/// The murmur3 64-bit finalizer: spreads every input bit over the high 32 bits the index uses.
pub(crate) fn mix(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

fn step(h: u64, word: u64) -> u64 {
    (h.rotate_left(5) ^ word).wrapping_mul(SEED)
}

/// Hash of an identifier as the graph stores it: its kind number and its value.
pub(crate) fn hash_identifier(kind: u32, value: &str) -> u64 {
    let mut h = step(0, u64::from(kind));
    let mut chunks = value.as_bytes().chunks_exact(8);
    for c in &mut chunks {
        h = step(
            h,
            u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]),
        );
    }
    let mut last = [0u8; 8];
    let rest = chunks.remainder();
    last[..rest.len()].copy_from_slice(rest);
    h = step(h, u64::from_le_bytes(last));
    mix(step(h, value.len() as u64))
}

/// Hash of an evidence's identifier list (node ids in identifier order).
pub(crate) fn hash_nodes(nodes: &[u32]) -> u64 {
    let h = nodes.iter().fold(0, |h, &n| step(h, u64::from(n)));
    mix(step(h, nodes.len() as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_what_was_inserted_across_growth() {
        let values: Vec<String> = (0..10_000).map(|i| format!("v{i}")).collect();
        let mut index = IdIndex::default();
        for (i, v) in values.iter().enumerate() {
            let h = hash_identifier(1, v);
            assert_eq!(index.find(h, |id| values[id as usize] == *v), None);
            index.insert(h, i as u32);
        }
        for (i, v) in values.iter().enumerate() {
            let h = hash_identifier(1, v);
            assert_eq!(
                index.find(h, |id| values[id as usize] == *v),
                Some(i as u32)
            );
        }
    }

    #[test]
    fn colliding_hashes_are_told_apart_by_the_key() {
        let mut index = IdIndex::with_capacity(4);
        index.insert(42, 0);
        index.insert(42, 1);
        assert_eq!(index.find(42, |id| id == 1), Some(1));
        assert_eq!(index.find(42, |id| id == 0), Some(0));
        assert_eq!(index.find(42, |id| id == 2), None);
    }
}
