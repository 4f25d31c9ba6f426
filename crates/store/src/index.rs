//! Index runs: the de-duplication keys and customer keys of compacted records, so that
//! opening a store for ingest does not have to re-read every segment.
//!
//! Keys are 128-bit xxh3 hashes of (project, event id) and (project, identifier): at 10^9
//! keys the chance of any collision is about 10^-21, far below the rate of undetected
//! disk errors, and fixed-size keys keep the in-memory sets small (16 bytes a key).
//!
//! File layout: magic `OTIDX\0\0\1`, `dedup_count: u64`, `key_count: u64`, then the
//! dedup hashes (u128 LE each), then the key entries (u128 hash, u64 customer), then a
//! crc32 of everything before it.

use crate::durability::{write_atomically, Durability};
use crate::StoreError;
use omnitrail_model::{CustomerId, Identifier, IdentifierKind, ProjectId};
use std::collections::HashMap;
use std::path::Path;

const MAGIC: &[u8; 8] = b"OTIDX\0\0\x01";

// Both keys hash their parts as one byte string; the streaming hasher gives the same
// digest as hashing the concatenation, without building it.
pub fn dedup_key(project: ProjectId, event_id: &str) -> u128 {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    h.update(&project.0.to_le_bytes());
    h.update(&[0x1e]);
    h.update(event_id.as_bytes());
    h.digest128()
}

pub fn identifier_key(project: ProjectId, id: &Identifier) -> u128 {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    h.update(&project.0.to_le_bytes());
    match &id.kind {
        IdentifierKind::Social(network) => {
            h.update(b"social:");
            h.update(network.as_bytes());
        }
        other => h.update(other.as_str().as_bytes()),
    }
    h.update(&[0x1f]);
    h.update(id.value.as_bytes());
    h.digest128()
}

/// A hasher for keys that are already uniform hashes: it just takes 64 of their bits.
#[derive(Default, Clone, Copy)]
pub struct PrehashedKey(u64);

impl std::hash::Hasher for PrehashedKey {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u128(&mut self, n: u128) {
        self.0 = n as u64;
    }
}

pub type KeyBuild = std::hash::BuildHasherDefault<PrehashedKey>;
pub type DedupSet = std::collections::HashSet<u128, KeyBuild>;
pub type CustomerKeys = HashMap<u128, CustomerId, KeyBuild>;

pub fn write_run(
    path: &Path,
    dedup: &[u128],
    keys: &[(u128, CustomerId)],
    d: &dyn Durability,
) -> Result<(), StoreError> {
    let mut buf = Vec::with_capacity(24 + dedup.len() * 16 + keys.len() * 24 + 4);
    buf.extend_from_slice(MAGIC);
    buf.extend_from_slice(&(dedup.len() as u64).to_le_bytes());
    buf.extend_from_slice(&(keys.len() as u64).to_le_bytes());
    for h in dedup {
        buf.extend_from_slice(&h.to_le_bytes());
    }
    for (h, c) in keys {
        buf.extend_from_slice(&h.to_le_bytes());
        buf.extend_from_slice(&c.0.to_le_bytes());
    }
    let crc = crc32fast::hash(&buf);
    buf.extend_from_slice(&crc.to_le_bytes());
    write_atomically(d, path, &buf).map_err(|e| StoreError::Fsync {
        path: path.to_path_buf(),
        source: e,
    })
}

pub fn read_run(
    path: &Path,
    dedup: &mut DedupSet,
    keys: &mut CustomerKeys,
) -> Result<(), StoreError> {
    let bytes = std::fs::read(path).map_err(|e| StoreError::io(path, e))?;
    let corrupt = |reason: &str| StoreError::Corrupt {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    };
    if bytes.len() < 28 || &bytes[..8] != MAGIC {
        return Err(corrupt("not an index run"));
    }
    let body = &bytes[..bytes.len() - 4];
    let crc = u32::from_le_bytes(bytes[bytes.len() - 4..].try_into().expect("4 bytes"));
    if crc32fast::hash(body) != crc {
        return Err(corrupt("checksum mismatch"));
    }
    let n_dedup = u64::from_le_bytes(body[8..16].try_into().expect("8 bytes")) as usize;
    let n_keys = u64::from_le_bytes(body[16..24].try_into().expect("8 bytes")) as usize;
    if body.len() != 24 + n_dedup * 16 + n_keys * 24 {
        return Err(corrupt("length does not match its counts"));
    }
    let mut pos = 24;
    dedup.reserve(n_dedup);
    for _ in 0..n_dedup {
        dedup.insert(u128::from_le_bytes(
            body[pos..pos + 16].try_into().expect("16 bytes"),
        ));
        pos += 16;
    }
    keys.reserve(n_keys);
    for _ in 0..n_keys {
        let h = u128::from_le_bytes(body[pos..pos + 16].try_into().expect("16 bytes"));
        let c = u64::from_le_bytes(body[pos + 16..pos + 24].try_into().expect("8 bytes"));
        keys.entry(h).or_insert(CustomerId(c));
        pos += 24;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The keys are part of the on-disk format (docs/storage.md): they must stay the hash
    /// of the documented byte strings.
    #[test]
    fn keys_hash_the_documented_byte_strings() {
        let p = ProjectId(7);
        let mut bytes = 7u32.to_le_bytes().to_vec();
        bytes.extend(b"\x1ee-1");
        assert_eq!(dedup_key(p, "e-1"), xxhash_rust::xxh3::xxh3_128(&bytes));
        let id = Identifier::parse_qualified("social:twitter:ana").unwrap();
        let mut bytes = 7u32.to_le_bytes().to_vec();
        bytes.extend(b"social:twitter\x1fana");
        assert_eq!(identifier_key(p, &id), xxhash_rust::xxh3::xxh3_128(&bytes));
    }
}
