//! Dead letters and import history: listing what was rejected, and replaying it once it can
//! be stored (a fixed payload, a relaxed rule).
//!
//! A replay never loses a letter: the recovered events (and links) are stored durably
//! first, and only then is the letter marked replayed. A crash in between leaves the letter
//! unmarked; replaying it again stores nothing twice, because every replayed event carries
//! an event id (`dead-letter-<id>-<n>` when it had none) that the store de-duplicates.

use crate::{App, AppError, Incoming};
use omnitrail_identity::Source;
use omnitrail_model::{Event, Identifier, ProjectId, Timestamp, ValidationError};
use omnitrail_store::{DeadLetter, ImportRecord};

/// A dead letter with the time it was replayed, if it was.
#[derive(Clone, Debug, PartialEq)]
pub struct DeadLetterEntry {
    pub letter: DeadLetter,
    pub replayed_at: Option<Timestamp>,
}

/// What a letter's payload turns back into.
#[derive(Clone, Debug, PartialEq)]
pub enum Recovered {
    Event(Event),
    /// A Segment-style alias or identify link without an event.
    Link {
        source: Source,
        identifiers: Vec<Identifier>,
        at: Timestamp,
    },
}

/// One letter to replay, optionally with a corrected payload that replaces the stored one.
#[derive(Clone, Debug, PartialEq)]
pub struct ReplayItem {
    pub id: i64,
    pub payload: Option<String>,
}

/// Why a letter could not be replayed; it stays a dead letter.
#[derive(Clone, Debug, PartialEq)]
pub struct ReplayFailure {
    pub id: i64,
    pub field: String,
    pub reason: String,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct ReplayReport {
    /// Letters now stored and marked replayed, by id.
    pub replayed: Vec<i64>,
    /// Events stored by this replay.
    pub stored: u64,
    /// Events that were already stored (an earlier, interrupted replay).
    pub duplicates: u64,
    /// Links recorded.
    pub links: u64,
    pub failed: Vec<ReplayFailure>,
    /// Ids this project has no letter for.
    pub not_found: Vec<i64>,
    /// Letters replayed before; left alone.
    pub already_replayed: Vec<i64>,
}

impl App {
    /// Dead letters of a project, oldest first, after id `after`; replayed ones only when
    /// `include_replayed`.
    pub fn dead_letters(
        &self,
        project: ProjectId,
        after: i64,
        limit: usize,
        include_replayed: bool,
    ) -> Result<Vec<DeadLetterEntry>, AppError> {
        Ok(self
            .store()
            .meta()
            .dead_letter_page(project, after, limit, include_replayed)?
            .into_iter()
            .map(|(letter, replayed_at)| DeadLetterEntry {
                letter,
                replayed_at,
            })
            .collect())
    }

    /// The imports of a project, oldest first.
    pub fn imports(&self, project: ProjectId) -> Result<Vec<ImportRecord>, AppError> {
        Ok(self.store().meta().imports(project)?)
    }

    /// Replays dead letters: `recover` turns each letter (with its payload replaced when the
    /// item carries one) back into events and links, or says why it cannot. Letters whose
    /// every part is valid are stored through [`App::ingest`] and [`App::link`], then marked;
    /// the others stay as they are and are reported with the reason, without a new letter.
    pub fn replay_dead_letters(
        &self,
        project: ProjectId,
        items: &[ReplayItem],
        recover: &dyn Fn(&DeadLetter) -> Result<Vec<Recovered>, ValidationError>,
    ) -> Result<ReplayReport, AppError> {
        let mut report = ReplayReport::default();
        let ids: Vec<i64> = items.iter().map(|i| i.id).collect();
        let found = self.store().meta().dead_letters_by_id(project, &ids)?;
        let mut seen = std::collections::BTreeSet::new();
        let mut events: Vec<Event> = Vec::new();
        let mut links: Vec<(Source, Vec<Identifier>, Timestamp)> = Vec::new();
        let mut ready: Vec<i64> = Vec::new();
        for item in items {
            if !seen.insert(item.id) {
                continue;
            }
            let Some((letter, replayed_at)) = found.iter().find(|(d, _)| d.id == item.id) else {
                report.not_found.push(item.id);
                continue;
            };
            if replayed_at.is_some() {
                report.already_replayed.push(item.id);
                continue;
            }
            let mut letter = letter.clone();
            if let Some(p) = &item.payload {
                letter.payload = p.clone();
            }
            match self.recover_letter(&letter, recover) {
                Ok(parts) => {
                    for part in parts {
                        match part {
                            Recovered::Event(e) => events.push(e),
                            Recovered::Link {
                                source,
                                identifiers,
                                at,
                            } => links.push((source, identifiers, at)),
                        }
                    }
                    ready.push(letter.id);
                }
                Err(e) => report.failed.push(ReplayFailure {
                    id: letter.id,
                    field: e.field,
                    reason: e.reason,
                }),
            }
        }
        // Store first (links before the events, as ingest does), mark after.
        for (source, identifiers, at) in links {
            self.link(project, source, identifiers, at)?;
            report.links += 1;
        }
        if !events.is_empty() {
            let receipt =
                self.ingest(project, events.into_iter().map(Incoming::Event).collect())?;
            report.stored = receipt.stored;
            report.duplicates = receipt.duplicates;
        }
        if !ready.is_empty() {
            let now = self.now();
            self.store()
                .meta()
                .mark_dead_letters_replayed(project, &ready, now)?;
        }
        report.replayed = ready;
        report.failed.sort_by_key(|f| f.id);
        report.not_found.sort_unstable();
        report.already_replayed.sort_unstable();
        Ok(report)
    }

    /// A letter's parts, each checked as ingest would check it, with replay event ids.
    fn recover_letter(
        &self,
        letter: &DeadLetter,
        recover: &dyn Fn(&DeadLetter) -> Result<Vec<Recovered>, ValidationError>,
    ) -> Result<Vec<Recovered>, ValidationError> {
        let mut parts = recover(letter)?;
        if parts.is_empty() {
            return Err(ValidationError::new(
                "payload",
                "holds no event or link to replay",
            ));
        }
        let mut n = 0;
        for part in &mut parts {
            match part {
                Recovered::Event(e) => {
                    n += 1;
                    if e.event_id.is_none() {
                        e.event_id = Some(format!("dead-letter-{}-{n}", letter.id).into());
                    }
                    e.normalize()?;
                    if self.identities.primary(&e.identifiers).is_none() {
                        return Err(ValidationError::new(
                            "identifiers",
                            "every identifier is a blocklisted junk value; the event cannot be given to a customer",
                        ));
                    }
                }
                Recovered::Link { identifiers, .. } => {
                    identifiers.sort();
                    identifiers.dedup();
                    if identifiers.len() < 2 {
                        return Err(ValidationError::new(
                            "identifiers",
                            "a link needs at least two different identifiers",
                        ));
                    }
                }
            }
        }
        Ok(parts)
    }
}

/// The usual `recover` for letters whose payload is a canonical event in JSON (what
/// [`App::ingest`] keeps for events that failed validation, and what `/v1/events` keeps).
pub fn canonical_event(letter: &DeadLetter) -> Result<Vec<Recovered>, ValidationError> {
    let json: serde_json::Value = serde_json::from_str(&letter.payload).map_err(|e| {
        ValidationError::new(
            "payload",
            format!("is not JSON ({e}); replay it with a corrected payload"),
        )
    })?;
    Ok(vec![Recovered::Event(Event::from_json(&json)?)])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::AppOptions;
    use omnitrail_model::{Clock, FixedClock, IdentifierKind};
    use std::sync::Arc;

    #[test]
    fn replay_stores_fixed_letters_once_and_marks_them() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(FixedClock::new(
            Timestamp::parse("2026-05-01T00:00:00Z").unwrap(),
        ));
        let app = App::open(
            dir.path(),
            AppOptions {
                clock: clock.clone(),
                ..AppOptions::default()
            },
        )
        .unwrap();
        let p = ProjectId::DEFAULT;
        let good = serde_json::json!({
            "timestamp": "2026-04-01T10:00:00Z", "identifiers": {"email": "ana@example.com"},
            "channel": "web", "activity": "login", "properties": {"sentiment": 3}
        });
        let event = |j: &serde_json::Value| {
            let mut e = Event::new(
                Timestamp::parse(j["timestamp"].as_str().unwrap()).unwrap(),
                Identifier::new(IdentifierKind::Email, "ana@example.com").unwrap(),
                omnitrail_model::Channel::Web,
                "login",
            );
            e.properties
                .insert("sentiment".into(), omnitrail_model::Value::Num(3.0));
            e
        };
        let receipt = app.ingest(p, vec![Incoming::Event(event(&good))]).unwrap();
        assert_eq!(receipt.rejected.len(), 1);
        let letters = app.dead_letters(p, 0, 10, false).unwrap();
        assert_eq!(letters.len(), 1);
        let id = letters[0].letter.id;

        // As stored, the payload still fails: it stays a dead letter, no new one appears.
        let r = app
            .replay_dead_letters(p, &[ReplayItem { id, payload: None }], &canonical_event)
            .unwrap();
        assert_eq!(r.failed.len(), 1, "{r:?}");
        assert_eq!(r.failed[0].field, "properties.sentiment");
        assert_eq!(app.dead_letters(p, 0, 10, true).unwrap().len(), 1);

        // Corrected, it is stored and marked; a second replay changes nothing.
        let mut fixed = good.clone();
        fixed["properties"]["sentiment"] = serde_json::json!(-0.5);
        let items = [
            ReplayItem {
                id,
                payload: Some(fixed.to_string()),
            },
            ReplayItem {
                id: 999,
                payload: None,
            },
        ];
        let r = app
            .replay_dead_letters(p, &items, &canonical_event)
            .unwrap();
        assert_eq!(
            (r.replayed.clone(), r.stored, r.not_found.clone()),
            (vec![id], 1, vec![999])
        );
        assert!(app.dead_letters(p, 0, 10, false).unwrap().is_empty());
        let all = app.dead_letters(p, 0, 10, true).unwrap();
        assert_eq!(all[0].replayed_at, Some(clock.now()));
        assert_eq!(app.stats(p).unwrap().dead_letters, 0);
        let r = app
            .replay_dead_letters(p, &items[..1], &canonical_event)
            .unwrap();
        assert_eq!(r.already_replayed, vec![id]);
        assert_eq!(app.store().event_count(p), 1);
    }
}
