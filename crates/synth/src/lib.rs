//! Omnitrail's demo and benchmark data: a year of realistic omnichannel customer journeys
//! with planted friction that the analyses must find (docs/demo-data.md has the story, the
//! personas and every planted rate).
//!
//! Generation is deterministic by `(seed, index)`: each customer has its own random stream,
//! so any slice of customers can be generated on any thread, in any order, and comes out the
//! same.

mod catalog;
mod person;
mod persona;
mod sim;

pub use catalog::{designed_onboarding_journey, DEMO_STAGES_TOML};
pub use persona::Persona;

use omnitrail_model::{Event, Identifier, Timestamp};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use std::fmt::Write;
use std::ops::Range;

/// What to generate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SynthConfig {
    /// How many customers (indices `0..customers`).
    pub customers: u64,
    pub seed: u64,
    /// The first day of the period.
    pub start: Timestamp,
    /// The period's length; every event falls in `[start, start + days)`.
    pub days: u32,
}

impl Default for SynthConfig {
    /// 20 000 customers over 2025, seed 42.
    fn default() -> Self {
        SynthConfig {
            customers: 20_000,
            seed: 42,
            start: Timestamp::from_civil(2025, 1, 1, 0, 0, 0, 0).expect("a valid date"),
            days: 365,
        }
    }
}

impl SynthConfig {
    /// The first instant after the period.
    pub fn end(&self) -> Timestamp {
        self.start
            .plus_micros(i64::from(self.days) * 86_400 * omnitrail_model::MICROS_PER_SECOND)
    }
}

/// One generated customer and their events.
#[derive(Clone, Debug, PartialEq)]
pub struct SyntheticCustomer {
    pub index: u64,
    /// The hidden behaviour type; it is not written into any event.
    pub persona: Persona,
    /// The customer's `crm_id`: every customer buys during the period and gets one, so this
    /// identifies the customer once identity resolution has linked their identifiers.
    pub key: Identifier,
    /// In time order, each with a unique `event_id` of the form `s<seed>-<index>-<n>`.
    pub events: Vec<Event>,
}

/// Generates customer `index`, from `(cfg.seed, index)` alone. Indices must stay below 10^11
/// (phone numbers have at most 15 digits).
pub fn generate_customer(cfg: &SynthConfig, index: u64) -> SyntheticCustomer {
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed ^ mix(index));
    let shares = Persona::ALL.map(Persona::share);
    let persona = Persona::ALL[pick(&mut rng, &shares)];
    let who = person::Person::draw(cfg.seed, index, persona, &mut rng);
    let mut events = sim::Sim::new(&who, rng, cfg.start.as_micros(), cfg.end().as_micros()).run();
    // One allocation per id: the prefix is formatted once and the number appended in place.
    let prefix = format!("s{}-{}-", cfg.seed, index);
    for (n, e) in events.iter_mut().enumerate() {
        let mut id = String::with_capacity(prefix.len() + 6);
        id.push_str(&prefix);
        write!(id, "{n}").expect("writing to a String cannot fail");
        e.event_id = Some(id.into());
    }
    SyntheticCustomer {
        index,
        persona,
        key: who.crm,
        events,
    }
}

/// Generates the customers of `range` in parallel; the output is in index order.
pub fn generate_range(cfg: &SynthConfig, range: Range<u64>) -> Vec<SyntheticCustomer> {
    range
        .into_par_iter()
        .map(|index| generate_customer(cfg, index))
        .collect()
}

/// SplitMix64's finalizer: a bijection of `u64` that scatters neighbouring indices, so
/// neighbouring customers get unrelated random streams and ids.
pub(crate) fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Draws an index with probability proportional to its weight.
pub(crate) fn pick(rng: &mut ChaCha8Rng, weights: &[f64]) -> usize {
    let total: f64 = weights.iter().sum();
    let mut x = rng.random::<f64>() * total;
    for (i, w) in weights.iter().enumerate() {
        if x < *w {
            return i;
        }
        x -= w;
    }
    // Rounding can leave `x` just above the last weight; that draw belongs to the last
    // index with a weight.
    weights.iter().rposition(|w| *w > 0.0).unwrap_or(0)
}
