//! Project isolation, randomized: several projects receive events of the same people (the
//! same emails and phones), with compactions, customer views, stats, exports and erasures
//! in a seeded random order. After every step each project's answers equal a reference
//! model of that project alone: nothing another project does is ever seen, changed or
//! erased.

use omnitrail_app::{App, AppError, AppOptions, Incoming};
use omnitrail_model::{
    Channel, Event, FixedClock, Identifier, IdentifierKind, ProjectId, Timestamp,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

const PEOPLE: usize = 8;
const ACTIVITIES: [&str; 4] = ["view", "cart", "purchase", "call"];

fn email(k: usize) -> Identifier {
    Identifier::new(IdentifierKind::Email, &format!("person{k}@shared.test")).unwrap()
}

fn phone(k: usize) -> Identifier {
    Identifier::new(
        IdentifierKind::Phone,
        &format!("+1 555 010 {:04}", 1000 + k),
    )
    .unwrap()
}

/// One project as it should be: its events by id (person, activity) and who is suppressed.
#[derive(Default)]
struct Model {
    events: BTreeMap<String, (usize, String)>,
    suppressed: BTreeSet<usize>,
}

impl Model {
    fn person_events(&self, k: usize) -> Vec<String> {
        self.events
            .iter()
            .filter(|(_, (p, _))| *p == k)
            .map(|(id, _)| id.clone())
            .collect()
    }
}

fn check(app: &App, projects: &[ProjectId], models: &BTreeMap<ProjectId, Model>, step: usize) {
    for &p in projects {
        let m = &models[&p];
        // Export: every stored event of the project, and nothing else.
        let stored: BTreeSet<String> = app
            .store()
            .records(p)
            .unwrap()
            .into_iter()
            .map(|r| r.event.event_id.unwrap().to_string())
            .collect();
        let expected: BTreeSet<String> = m.events.keys().cloned().collect();
        assert_eq!(stored, expected, "step {step}: export of project {p:?}");
        // Queries: the analyses' view of the project.
        let stats = app.stats(p).unwrap();
        assert_eq!(
            stats.events,
            m.events.len() as u64,
            "step {step}: stats of {p:?}"
        );
        let people: BTreeSet<usize> = m.events.values().map(|(k, _)| *k).collect();
        assert_eq!(
            stats.customers,
            people.len() as u64,
            "step {step}: customers of {p:?}"
        );
        // Customer views, by each shared identifier.
        for k in 0..PEOPLE {
            let mine = m.person_events(k);
            match app.customer(p, &email(k).to_string(), &Default::default()) {
                Ok(view) => {
                    assert_eq!(
                        view.events,
                        mine.len() as u64,
                        "step {step}: {p:?} person {k}"
                    );
                    let mut seen: Vec<String> = view
                        .timeline
                        .entries
                        .iter()
                        .filter(|t| t.kind == "event")
                        .map(|t| t.activity.clone())
                        .collect();
                    let mut want: Vec<String> =
                        mine.iter().map(|id| m.events[id].1.clone()).collect();
                    if seen.len() == want.len() {
                        seen.sort();
                        want.sort();
                        assert_eq!(seen, want, "step {step}: {p:?} person {k}'s timeline");
                    }
                }
                Err(AppError::CustomerNotFound(_)) => {
                    assert!(mine.is_empty(), "step {step}: {p:?} person {k} not found")
                }
                Err(e) => panic!("step {step}: {e}"),
            }
        }
    }
}

#[test]
fn no_query_view_export_or_erase_crosses_projects() {
    for seed in [7_u64, 8, 9] {
        run(seed);
    }
}

fn run(seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().unwrap();
    let now = Timestamp::parse("2026-03-01T00:00:00Z").unwrap();
    let app = App::open(
        dir.path(),
        AppOptions {
            clock: Arc::new(FixedClock::new(now)),
            ..AppOptions::default()
        },
    )
    .unwrap();
    let mut projects = vec![ProjectId::DEFAULT];
    for name in ["shop", "bank", "clinic"] {
        projects.push(app.store().meta().ensure_project_named(name, now).unwrap());
    }
    let mut models: BTreeMap<ProjectId, Model> =
        projects.iter().map(|&p| (p, Model::default())).collect();
    let mut next_id = 0;
    for step in 0..40 {
        match rng.random_range(0..10) {
            0..=5 => {
                let p = projects[rng.random_range(0..projects.len())];
                let n = rng.random_range(1..8);
                let mut batch = Vec::new();
                let mut expect = Vec::new();
                for _ in 0..n {
                    let k = rng.random_range(0..PEOPLE);
                    let activity = ACTIVITIES[rng.random_range(0..ACTIVITIES.len())];
                    let at = Timestamp::from_micros(
                        Timestamp::parse("2026-02-01T00:00:00Z")
                            .unwrap()
                            .as_micros()
                            + rng.random_range(0..86_400_000_000_i64),
                    );
                    let mut e = Event::new(at, email(k), Channel::Web, activity);
                    if rng.random_bool(0.5) {
                        e = e.with_identifier(phone(k));
                    }
                    let id = format!("e{next_id}");
                    next_id += 1;
                    e.event_id = Some(id.as_str().into());
                    batch.push(Incoming::Event(e));
                    expect.push((id, k, activity.to_string()));
                }
                let receipt = app.ingest(p, batch).unwrap();
                let m = models.get_mut(&p).unwrap();
                let mut accepted = 0;
                for (id, k, activity) in expect {
                    if !m.suppressed.contains(&k) {
                        m.events.insert(id, (k, activity));
                        accepted += 1;
                    }
                }
                assert_eq!(receipt.stored, accepted, "step {step}");
            }
            6 => {
                app.compact().unwrap();
            }
            _ => {
                let p = projects[rng.random_range(0..projects.len())];
                let k = rng.random_range(0..PEOPLE);
                let m = models.get_mut(&p).unwrap();
                let had = m.person_events(k);
                match app.erase(p, &email(k).to_string(), "isolation-test") {
                    Ok(receipt) => {
                        assert_eq!(
                            receipt.counts.log_events + receipt.counts.segment_events,
                            had.len() as u64,
                            "step {step}"
                        );
                        for id in had {
                            m.events.remove(&id);
                        }
                        m.suppressed.insert(k);
                    }
                    Err(AppError::CustomerNotFound(_)) => assert!(had.is_empty(), "step {step}"),
                    Err(e) => panic!("step {step}: {e}"),
                }
            }
        }
        check(&app, &projects, &models, step);
    }
    // Audit and suppression lists are per project too.
    for &p in &projects {
        let erased = models[&p].suppressed.len();
        assert_eq!(app.audit_log(p).unwrap().len(), erased);
        assert!(app.suppressions(p).unwrap().len() >= erased);
    }
}
