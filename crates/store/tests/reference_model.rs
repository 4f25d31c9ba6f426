//! The store against an in-memory reference model: random sequences of ingest, compact,
//! reopen and scan, and after every step the store must hold exactly what the model says.
//!
//! The model is the store's contract written as plainly as possible:
//! - an event whose id was seen before (in the same project, in any earlier batch or
//!   earlier in the same batch) is a duplicate: not stored, no customer, no sequence number;
//! - sequence numbers count stored events in ingest order from 0;
//! - an event's customer key belongs to its primary identifier: the first of the kinds
//!   user_id, crm_id, email, phone, social, custom, device_id, anonymous_id (ties in the
//!   event's identifier order); the first event with a new primary identifier gets a new
//!   key (numbered from 1), and every later event with that primary identifier shares it.
//!   Other identifiers on the event do not decide the key: joining keys is identity's job.
//! - keys are joined into customers by links and splits (standing in for identity): a
//!   customer is the smallest key of its cluster. Compaction places new keys under their
//!   customer through the store's placer, and reading journeys under the overlay
//!   (`Store::resolution`, `scan_resolved`) must give each customer every event of its keys,
//!   ordered by (time, key, seq), in the customer's partition, whatever was placed where
//!   and whenever the clusters changed; a customer's keys read by key (`key_journeys`)
//!   must give the same events.

mod common;

use common::{
    decode, expected_journeys, expected_resolved, id, resolved_journeys, JourneyStep, NoSync,
    BASE_SECS,
};
use omnitrail_model::{
    Channel, CustomerId, Event, Identifier, IdentifierKind, ProjectId, Timestamp, Value,
};
use omnitrail_store::{IngestOutcome, LogRecord, ScanSpec, Store, StoreOptions};
use proptest::prelude::*;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex};

const PROJECTS: [ProjectId; 2] = [ProjectId(1), ProjectId(2)];

fn priority(kind: &IdentifierKind) -> u8 {
    match kind {
        IdentifierKind::UserId => 0,
        IdentifierKind::CrmId => 1,
        IdentifierKind::Email => 2,
        IdentifierKind::Phone => 3,
        IdentifierKind::Social(_) => 4,
        IdentifierKind::Custom(_) => 5,
        IdentifierKind::DeviceId => 6,
        IdentifierKind::AnonymousId => 7,
    }
}

#[derive(Default)]
struct Model {
    /// Every stored record, in ingest order.
    stored: Vec<LogRecord>,
    seen_ids: HashSet<(ProjectId, String)>,
    customer_of: HashMap<(ProjectId, Identifier), CustomerId>,
    next_customer: u64,
    next_seq: u64,
    /// Each key's cluster (keys without an entry are alone); a cluster's customer is its
    /// smallest key.
    cluster: HashMap<u64, u64>,
    next_cluster: u64,
}

/// The overlay the store's placer reads: (project, key) → customer, for keys of another.
type Shared = Arc<Mutex<HashMap<(ProjectId, u64), u64>>>;

impl Model {
    fn new() -> Model {
        Model {
            next_customer: 1,
            ..Model::default()
        }
    }

    fn ingest(&mut self, project: ProjectId, events: &[Event]) -> IngestOutcome {
        let mut out = IngestOutcome::default();
        for e in events {
            if let Some(eid) = &e.event_id {
                if !self.seen_ids.insert((project, eid.to_string())) {
                    out.duplicates += 1;
                    out.customers.push(None);
                    continue;
                }
            }
            let mut by_priority: Vec<&Identifier> = e.identifiers.iter().collect();
            by_priority.sort_by_key(|i| priority(&i.kind)); // stable: ties keep event order
            let primary = (project, by_priority[0].clone());
            let customer = *self.customer_of.entry(primary).or_insert_with(|| {
                self.next_customer += 1;
                CustomerId(self.next_customer - 1)
            });
            self.stored.push(LogRecord {
                seq: self.next_seq,
                project,
                customer,
                event: e.clone(),
            });
            self.next_seq += 1;
            out.stored += 1;
            out.customers.push(Some(customer));
        }
        out
    }

    fn key_project(&self, key: u64) -> Option<ProjectId> {
        self.stored
            .iter()
            .find(|r| r.customer.0 == key)
            .map(|r| r.project)
    }

    /// Joins the clusters of two keys of one project.
    fn link(&mut self, a: u64, b: u64) {
        let (ca, cb) = (self.cluster_id(a), self.cluster_id(b));
        for c in self.cluster.values_mut() {
            if *c == cb {
                *c = ca;
            }
        }
    }

    /// Takes a key out of its cluster.
    fn split(&mut self, key: u64) {
        self.cluster.remove(&key);
    }

    fn cluster_id(&mut self, key: u64) -> u64 {
        if let Some(&c) = self.cluster.get(&key) {
            return c;
        }
        self.next_cluster += 1;
        self.cluster.insert(key, self.next_cluster);
        self.next_cluster
    }

    /// Write-time key → customer, for keys of another customer.
    fn overlay(&self) -> HashMap<(ProjectId, u64), u64> {
        let mut smallest: HashMap<u64, u64> = HashMap::new();
        for (&k, &c) in &self.cluster {
            let m = smallest.entry(c).or_insert(k);
            *m = (*m).min(k);
        }
        self.cluster
            .iter()
            .filter(|(&k, c)| smallest[c] != k)
            .filter_map(|(&k, c)| Some(((self.key_project(k)?, k), smallest[c])))
            .collect()
    }

    /// What `records(project)` must return: sorted by (customer, timestamp, seq).
    fn records(&self, project: ProjectId) -> Vec<LogRecord> {
        let mut v: Vec<LogRecord> = self
            .stored
            .iter()
            .filter(|r| r.project == project)
            .cloned()
            .collect();
        v.sort_by_key(|r| (r.customer, r.event.timestamp, r.seq));
        v
    }
}

/// An event drawn from small pools, so identifiers, event ids and timestamps collide.
#[derive(Clone, Debug)]
struct EventSpec {
    identifiers: Vec<(usize, u8)>,
    secs: i64,
    event_id: Option<u8>,
    channel: usize,
    activity: usize,
    sentiment: Option<f64>,
    /// A custom numeric property (whole cents; see `custom_numbers_survive_compaction_bit_for_bit`
    /// for arbitrary floats).
    amount: Option<f64>,
    tier: Option<bool>,
}

fn kind(i: usize) -> IdentifierKind {
    match i {
        0 => IdentifierKind::UserId,
        1 => IdentifierKind::CrmId,
        2 => IdentifierKind::Email,
        3 => IdentifierKind::Phone,
        4 => IdentifierKind::Social("twitter".into()),
        5 => IdentifierKind::Custom("loyalty_card".into()),
        6 => IdentifierKind::DeviceId,
        _ => IdentifierKind::AnonymousId,
    }
}

fn identifier(kind_index: usize, n: u8) -> Identifier {
    let k = kind(kind_index);
    let value = match k {
        IdentifierKind::Email => format!("p{n}@example.com"),
        IdentifierKind::Phone => format!("+1555000{n:04}"),
        _ => format!("v{n}"),
    };
    id(k, &value)
}

const CHANNELS: [&str; 4] = ["web", "phone", "email", "kiosk"];
const ACTIVITIES: [&str; 5] = ["login", "search", "pay", "call", "refund"];

impl EventSpec {
    fn build(&self) -> Event {
        let mut ids = self.identifiers.iter().map(|&(k, n)| identifier(k, n));
        let mut e = Event::new(
            Timestamp::from_secs(BASE_SECS + self.secs),
            ids.next().expect("at least one identifier"),
            Channel::parse(CHANNELS[self.channel]).expect("channel"),
            ACTIVITIES[self.activity],
        );
        for i in ids {
            e.add_identifier(i);
        }
        e.event_id = self.event_id.map(|n| format!("e{n}").into());
        if let Some(s) = self.sentiment {
            e = e.with_property("sentiment", Value::Num(s));
        }
        if let Some(a) = self.amount {
            e = e.with_property("amount_paid", Value::Num(a));
        }
        if let Some(t) = self.tier {
            e = e.with_trait("vip", Value::Bool(t));
        }
        e.validate().expect("generated events are valid")
    }
}

fn event_spec() -> impl Strategy<Value = EventSpec> {
    (
        prop::collection::vec((0usize..8, 0u8..3), 1..4),
        0i64..6,
        prop::option::weighted(0.6, 0u8..12),
        0usize..CHANNELS.len(),
        0usize..ACTIVITIES.len(),
        prop::option::weighted(0.3, -1.0f64..=1.0),
        prop::option::weighted(
            0.3,
            prop_oneof![
                (-1000i64..1000).prop_map(|whole| whole as f64),
                (-1_000_000i64..1_000_000).prop_map(|cents| cents as f64 / 100.0),
            ],
        ),
        prop::option::weighted(0.2, any::<bool>()),
    )
        .prop_map(
            |(identifiers, secs, event_id, channel, activity, sentiment, amount, tier)| EventSpec {
                identifiers,
                secs,
                event_id,
                channel,
                activity,
                sentiment,
                amount,
                tier,
            },
        )
}

#[derive(Clone, Debug)]
enum Op {
    /// A batch for project `PROJECTS[.0]`; a spec may be repeated to make within-batch duplicates.
    Ingest(usize, Vec<EventSpec>),
    Compact,
    Reopen,
    Scan,
    /// Joins the customers of the keys at these positions among the keys handed out.
    Link(u8, u8),
    /// Takes the key at this position out of its customer.
    Split(u8),
    /// Files the rows of keys whose customer changed under their customer now.
    RePlace,
}

fn op() -> impl Strategy<Value = Op> {
    let batch = prop::collection::vec(event_spec(), 1..12).prop_flat_map(|specs| {
        let n = specs.len();
        // Repeat one spec of the batch sometimes: an exact within-batch duplicate.
        (Just(specs), prop::option::weighted(0.25, 0..n)).prop_map(|(mut specs, repeat)| {
            if let Some(i) = repeat {
                let again = specs[i].clone();
                specs.push(again);
            }
            specs
        })
    });
    prop_oneof![
        6 => (prop::sample::select(vec![0usize, 0, 0, 1]), batch).prop_map(|(p, b)| Op::Ingest(p, b)),
        1 => Just(Op::Compact),
        1 => Just(Op::Reopen),
        1 => Just(Op::Scan),
        3 => (any::<u8>(), any::<u8>()).prop_map(|(a, b)| Op::Link(a, b)),
        1 => any::<u8>().prop_map(Op::Split),
        1 => Just(Op::RePlace),
    ]
}

#[derive(Clone, Debug)]
struct Config {
    partitions: u32,
    auto_compact_events: usize,
    max_segments_per_partition: usize,
}

fn config() -> impl Strategy<Value = Config> {
    (
        2u32..=4,
        prop_oneof![Just(usize::MAX), 3usize..25],
        prop_oneof![Just(2usize), Just(8usize)],
    )
        .prop_map(
            |(partitions, auto_compact_events, max_segments_per_partition)| Config {
                partitions,
                auto_compact_events,
                max_segments_per_partition,
            },
        )
}

fn open(dir: &Path, cfg: &Config, shared: &Shared) -> Store {
    let store = Store::open(
        dir,
        StoreOptions {
            partitions: cfg.partitions,
            // This test is about logic; fault and crash tests cover durability.
            durability: Arc::new(NoSync),
            auto_compact_events: cfg.auto_compact_events,
            max_segments_per_partition: cfg.max_segments_per_partition,
            ..StoreOptions::default()
        },
    )
    .expect("open store");
    store.set_placer({
        let shared = shared.clone();
        Arc::new(move |project, keys| {
            let overlay = shared.lock().expect("overlay");
            keys.iter()
                .map(|k| CustomerId(overlay.get(&(project, k.0)).copied().unwrap_or(k.0)))
                .collect()
        })
    });
    store
}

/// Every partition's customers as the store reads them by write-time key: each key once.
fn key_journeys_of_partitions(
    store: &Store,
    project: ProjectId,
    spec: &ScanSpec,
) -> BTreeMap<CustomerId, Vec<JourneyStep>> {
    let mut out = BTreeMap::new();
    for p in 0..store.partitions() {
        let j = store.journeys(project, p, spec).expect("journeys");
        for (c, steps) in decode(&j, spec) {
            assert!(
                out.insert(c, steps).is_none(),
                "key {c} is in two partitions"
            );
        }
    }
    out
}

fn project_overlay(model: &Model, project: ProjectId) -> HashMap<CustomerId, CustomerId> {
    model
        .overlay()
        .into_iter()
        .filter(|((p, _), _)| *p == project)
        .map(|((_, k), c)| (CustomerId(k), CustomerId(c)))
        .collect()
}

fn check(store: &Store, model: &Model, step: usize, op: &Op) -> Result<(), TestCaseError> {
    for project in PROJECTS {
        let want = model.records(project);
        prop_assert_eq!(
            store.event_count(project),
            want.len() as u64,
            "after step {} ({:?}), {:?}: event_count",
            step,
            op,
            project
        );
        let got = store.records(project).expect("records");
        if got != want {
            let first_diff = got.iter().zip(&want).position(|(g, w)| g != w);
            return Err(TestCaseError::fail(format!(
                "after step {step} ({op:?}), {project:?}: records differ from the model \
                 ({} stored, {} expected; first difference at {first_diff:?}):\n got: {:?}\nwant: {:?}",
                got.len(),
                want.len(),
                first_diff.map(|i| &got[i]),
                first_diff.map(|i| &want[i]),
            )));
        }
        let spec = ScanSpec {
            properties: vec!["sentiment".into(), "amount_paid".into()],
            traits: vec!["vip".into()],
        };
        prop_assert_eq!(
            key_journeys_of_partitions(store, project, &spec),
            expected_journeys(&want, &spec),
            "after step {} ({:?}), {:?}: journeys differ from the model",
            step,
            op,
            project
        );
        let overlay = project_overlay(model, project);
        let expected = expected_resolved(&want, &overlay, &spec);
        let resolved = resolved_journeys(store, project, &overlay, &spec);
        prop_assert_eq!(
            &resolved,
            &expected,
            "after step {} ({:?}), {:?}: resolved journeys differ from the model (overlay {:?})",
            step,
            op,
            project,
            overlay
        );
        // A customer's keys read by key give its events in the same order.
        for (customer, steps) in &expected {
            let keys: Vec<CustomerId> = want
                .iter()
                .map(|r| r.customer)
                .filter(|k| overlay.get(k).unwrap_or(k) == customer)
                .collect();
            let pieces = store
                .key_journeys(project, &keys, &spec.properties)
                .expect("key journeys");
            let mut events: Vec<(i64, CustomerId, usize, usize)> = Vec::new();
            for (n, piece) in pieces.iter().enumerate() {
                for e in piece.journeys.customer_range(piece.index) {
                    events.push((piece.journeys.ts[e], piece.key, n, e));
                }
            }
            events.sort();
            let activities: Vec<String> = events
                .iter()
                .map(|&(_, _, n, e)| {
                    let j = &pieces[n].journeys;
                    j.activities.values[j.activity.get(e) as usize].clone()
                })
                .collect();
            let want_activities: Vec<String> = steps.iter().map(|s| s.activity.clone()).collect();
            prop_assert_eq!(
                activities,
                want_activities,
                "customer {} read by key",
                customer
            );
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn store_behaves_like_the_reference_model(cfg in config(), ops in prop::collection::vec(op(), 1..14)) {
        let dir = tempfile::tempdir().expect("temp dir");
        let shared: Shared = Arc::default();
        let mut store = open(dir.path(), &cfg, &shared);
        let mut model = Model::new();
        for (step, op) in ops.iter().enumerate() {
            match op {
                Op::Ingest(p, specs) => {
                    let project = PROJECTS[*p];
                    let events: Vec<Event> = specs.iter().map(EventSpec::build).collect();
                    let want = model.ingest(project, &events);
                    let got = store.ingest(project, events).expect("ingest");
                    prop_assert_eq!(got, want, "step {}: ingest outcome differs from the model", step);
                }
                Op::Compact => {
                    let before = store.uncompacted_events();
                    let report = store.compact().expect("compact");
                    prop_assert_eq!(report.events, before as u64, "step {}: compaction moves every logged event", step);
                    prop_assert_eq!(store.uncompacted_events(), 0);
                }
                Op::Reopen => {
                    drop(store);
                    store = open(dir.path(), &cfg, &shared);
                    prop_assert_eq!(&store.open_report().cut_tail, &None, "a clean shutdown leaves no torn tail");
                    prop_assert!(store.open_report().removed_orphans.is_empty(), "a clean shutdown leaves no orphans");
                }
                Op::Scan => {}
                Op::Link(a, b) => {
                    let keys = model.next_customer - 1;
                    if keys > 0 {
                        let (a, b) = (1 + u64::from(*a) % keys, 1 + u64::from(*b) % keys);
                        if model.key_project(a).is_some() && model.key_project(a) == model.key_project(b) {
                            model.link(a, b);
                        }
                    }
                }
                Op::RePlace => {
                    for project in PROJECTS {
                        let overlay = project_overlay(&model, project);
                        store.re_place(project, Arc::new(overlay.clone())).expect("re-place");
                        let resolution = store
                            .resolution(project, Arc::new(overlay))
                            .expect("resolution")
                            .expect("few keys moved");
                        prop_assert_eq!(resolution.moved_keys(), 0, "step {}: nothing left to move", step);
                    }
                }
                Op::Split(k) => {
                    let keys = model.next_customer - 1;
                    if keys > 0 {
                        model.split(1 + u64::from(*k) % keys);
                    }
                }
            }
            *shared.lock().expect("overlay") = model.overlay();
            check(&store, &model, step, op)?;
        }
        // Merges must keep partitions at or below the limit (a merge runs after each compaction).
        if store.uncompacted_events() == 0 && cfg.max_segments_per_partition == 2 {
            let m = store.manifest();
            for p in 0..cfg.partitions {
                for project in PROJECTS {
                    prop_assert!(m.segments_of(project, p).count() <= 2, "partition {} has too many segments", p);
                }
            }
        }
    }
}

/// Custom (non-well-known) number properties live in the segments' JSON `properties`
/// column; they must come back bit for bit (serde_json's `float_roundtrip`), or compaction
/// would change what analyses see.
#[test]
fn custom_numbers_survive_compaction_bit_for_bit() {
    let values = [
        0.1 + 0.2,
        1.0 / 3.0,
        5.155506846250708e-243,
        2.2250738585072014e-308,
        1.7976931348623157e308,
        123_456.789_012_345_67,
    ];
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open(dir.path(), StoreOptions::default()).expect("open");
    let events: Vec<Event> = values
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            common::ev("ana", "web", "pay", i as i64).with_property("amount_paid", Value::Num(v))
        })
        .collect();
    store.ingest(ProjectId::DEFAULT, events).expect("ingest");
    store.compact().expect("compact");
    let got: Vec<f64> = store
        .records(ProjectId::DEFAULT)
        .expect("records")
        .iter()
        .map(|r| {
            r.event.properties["amount_paid"]
                .as_f64()
                .expect("a number")
        })
        .collect();
    let changed: Vec<(f64, f64)> = values
        .iter()
        .zip(&got)
        .filter(|(a, b)| a.to_bits() != b.to_bits())
        .map(|(&a, &b)| (a, b))
        .collect();
    assert!(
        changed.is_empty(),
        "compaction changed custom numbers (stored, read back): {changed:?}"
    );
}
