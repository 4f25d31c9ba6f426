//! Identity graph images, as a snapshot file holds them: a graph built from the input's
//! first bytes, its image damaged by the rest, must be refused or open into a graph that
//! answers and takes evidence, and cutting one component out of it (what a customer view
//! does) is refused or answers — never a panic, an overflow or a hang.
#![no_main]

use libfuzzer_sys::fuzz_target;
use omnitrail_identity::{Cut, Evidence, GraphImage, Guardrails, IdentityGraph, Source};
use omnitrail_model::{CustomerId, Identifier, IdentifierKind, Timestamp};

const KINDS: [&str; 5] = ["user_id", "email", "anonymous_id", "device_id", "loyalty_card"];

/// One of 40 identifiers: eight values of each kind.
fn identifier(byte: u8) -> Identifier {
    let kind = KINDS[usize::from(byte / 8) % KINDS.len()];
    Identifier {
        kind: IdentifierKind::parse(kind).expect("kind"),
        value: format!("v{}", byte % 8),
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&links, rest)) = data.split_first() else {
        return;
    };
    // The first `links` pairs of bytes are evidence (or, with the high bit, a key).
    let (ops, flips) = rest.split_at((usize::from(links % 32) * 2).min(rest.len()));
    let mut graph = IdentityGraph::new(Guardrails::default());
    for pair in ops.chunks_exact(2) {
        if pair[0] & 0x80 != 0 {
            let _ = graph.set_key(&identifier(pair[1]), CustomerId(u64::from(pair[0] & 0x3f) + 1));
            continue;
        }
        graph.observe(Evidence {
            source: Source::Event,
            at: Timestamp::from_secs(1_700_000_000 + i64::from(pair[0] % 16)),
            event: None,
            identifiers: vec![identifier(pair[0]), identifier(pair[1])],
        });
    }
    let mut bytes = postcard::to_stdvec(&graph.image()).expect("encode");
    // The rest: (position, mask) triples of damage.
    for flip in flips.chunks_exact(3) {
        let at = usize::from(u16::from_le_bytes([flip[0], flip[1]])) % bytes.len();
        bytes[at] ^= flip[2];
    }
    let Ok(image) = postcard::from_bytes::<GraphImage>(&bytes) else {
        return;
    };
    for byte in 0..40 {
        if let Ok(Cut::Component(cut)) = image.cut_at(&identifier(byte)) {
            let _ = cut.customer_of(&identifier(byte));
        }
    }
    for key in 1..=64 {
        if let Ok(Cut::Component(cut)) = image.cut_at_key(CustomerId(key)) {
            let _ = cut.cluster(CustomerId(key));
        }
    }
    let _ = image.candidates("v1");
    let Ok(mut opened) = IdentityGraph::open_image(Guardrails::default(), image) else {
        return;
    };
    let _ = opened.clusters();
    let _ = opened.overlay().count();
    for byte in 0..40 {
        let _ = opened.cluster_of(&identifier(byte));
    }
    for pair in ops.chunks_exact(2).take(4) {
        opened.observe(Evidence {
            source: Source::Identify,
            at: Timestamp::from_secs(1_600_000_000),
            event: None,
            identifiers: vec![identifier(pair[1]), identifier(pair[0].wrapping_add(3))],
        });
    }
});
