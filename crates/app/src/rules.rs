//! Real-time journey triggers wired to storage: rules per project, evaluation on ingest per
//! resolved customer, timers for unless windows, webhook delivery on a worker thread,
//! agent tasks and events emitted back into the journey. The rule format and the
//! evaluator are the pure `omnitrail-triggers` crate; docs/triggers.md is the guide.
//!
//! Why it is restart-safe:
//! - evaluation runs after the events are durable and identity is applied, and writes the
//!   customer's new state, the firings and their actions in one SQLite transaction;
//! - a firing's id follows from the rule and the completing event, and the firings table
//!   refuses a second row with the same id, so re-evaluating an event never repeats a
//!   webhook or a task;
//! - on open, every event still in the ingest log is evaluated again (what was already
//!   seen is recognised by its key), due unless timers are polled, and events a firing was
//!   to emit but had not yet are ingested (their event ids make that idempotent).

use crate::customer::IdentifierView;
use crate::{lock, App, AppError, Incoming};
use omnitrail_model::{Clock, CustomerId, Event, Identifier, ProjectId, Timestamp};
use omnitrail_store::{
    AttemptOutcome, DeliveryRow, FiringRow, Store, TaskFilter, TaskListing, TaskRow,
    TriggerRuleRow, TriggerStateRow, TriggerWrite,
};
use omnitrail_triggers::{self as tr, Evaluator};
pub use omnitrail_triggers::{Action, Rule};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::time::Duration;

/// Delivery attempts before a webhook is dead-lettered.
pub const MAX_ATTEMPTS: u32 = 6;
/// The first retry waits this long; each further one twice as long.
pub const FIRST_RETRY: Duration = Duration::from_secs(1);
/// How long one webhook request may take.
pub const WEBHOOK_TIMEOUT: Duration = Duration::from_secs(10);
/// Property an emitted event carries: the rule that emitted it. Rules do not evaluate
/// such events, so rules cannot trigger one another in a loop.
pub const TRIGGERED_BY: &str = "triggered_by";

/// The seed rule `omnitrail demo` installs.
pub const DEMO_RULE_YAML: &str = "\
# A web payment fails and the same customer complains on social media within 2 hours:
# queue a callback and tell the call center, unless she was already called back within
# an hour of the failure.
name: payment-failed-then-complaint
description: web payment failure followed by a social complaint -> proactive callback
steps:
  - activity: payment_failed
    channel: web
  - activity: complaint
    channel: social
    within: 2h
unless:
  - activity: callback_completed
    after: payment_failed
    within: 1h
cooldown: 1d
actions:
  - webhook: {endpoint: callcenter}
  - task: {queue: callback, title: Call back about the failed payment and the complaint}
  - emit: {activity: callback_scheduled, channel: phone}
";

/// The demo's webhook endpoint in omnitrail.toml: nothing listens there until you start
/// a receiver, so the demo's deliveries are retried and then dead-lettered, visibly.
pub const DEMO_TRIGGERS_TOML: &str = "
# Where the seed rule's webhook goes (docs/triggers.md). Point `url` at your receiver;
# `secret` (whsec_...) is optional: without it each rule has its own generated secret
# (`omnitrail rules list --format json` shows it).
[triggers.webhooks.callcenter]
url = \"http://127.0.0.1:9797/omnitrail/callbacks\"
";

#[derive(Debug, thiserror::Error)]
pub enum RulesError {
    #[error(transparent)]
    Parse(#[from] tr::RuleError),
    #[error("project {project} has no rule '{name}'")]
    NotFound { project: u32, name: String },
    #[error("actions.webhook.endpoint: '{0}' is not configured; add [triggers.webhooks.{0}] with url = \"…\" to omnitrail.toml")]
    NoEndpoint(String),
    #[error("project {project} has no task {id}")]
    TaskNotFound { project: u32, id: i64 },
    #[error("task {id} is {status}; it cannot be {action}")]
    TaskState {
        id: i64,
        status: String,
        action: String,
    },
    #[error("events[{index}].{field}: {reason}")]
    BadEvent {
        index: usize,
        field: String,
        reason: String,
    },
    #[error("omnitrail.toml: triggers: {0}")]
    Config(String),
    #[error("replay range: {0}")]
    Range(String),
}

/// A webhook target from `[triggers.webhooks.NAME]`.
#[derive(Clone, Debug, PartialEq)]
struct Endpoint {
    url: String,
    secret: Option<String>,
}

/// A rule as listed.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RuleInfo {
    pub name: String,
    pub enabled: bool,
    pub rule: Rule,
    /// The signing secret of its webhooks when the rule and the endpoint name none.
    pub secret: String,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// An agent task, as the API and the customer view show it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Task {
    pub id: i64,
    pub queue: String,
    pub title: String,
    /// `open`, `claimed` or `done`.
    pub status: String,
    pub agent: Option<String>,
    pub rule: String,
    pub firing: String,
    pub customer_id: String,
    /// What an agent recognises the customer by: `email:…`, else `phone:…`, `user_id:…`,
    /// `crm_id:…`, else the first identifier; the customer id when there is none.
    pub customer_label: String,
    /// When the firing's last step happened; absent when the firing is no longer recorded.
    pub completed_at: Option<Timestamp>,
    /// The events that completed the firing (why the task exists), as replay shows them.
    pub steps: Vec<ChainStep>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// How many tasks are in each state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct TaskCounts {
    pub open: u64,
    pub claimed: u64,
    pub done: u64,
}

/// A page of tasks with the counts per state under the same customer and time filters.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TaskList {
    pub counts: TaskCounts,
    pub tasks: Vec<Task>,
}

/// Which tasks to list. `None`s take everything; `limit` `None` is unlimited.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TaskQuery<'a> {
    /// `open`, `claimed` or `done`.
    pub status: Option<&'a str>,
    /// Any identifier of the customer (as for the customer view).
    pub customer: Option<&'a str>,
    /// Created at or after.
    pub from: Option<Timestamp>,
    /// Created before.
    pub to: Option<Timestamp>,
    pub limit: Option<usize>,
}

/// One entry of the webhook delivery log.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Delivery {
    pub id: i64,
    pub rule: String,
    pub firing: String,
    pub customer_id: String,
    pub url: String,
    /// `pending`, `delivered` or `dead`.
    pub status: String,
    pub attempts: u32,
    pub next_attempt_at: Option<Timestamp>,
    pub last_status: Option<u16>,
    pub last_error: Option<String>,
    pub created_at: Timestamp,
    pub finished_at: Option<Timestamp>,
}

/// One event of a firing's chain.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChainStep {
    pub step: usize,
    pub activity: Option<String>,
    pub channel: Option<String>,
    pub timestamp: Timestamp,
}

/// A firing a test or replay found.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FiringView {
    pub id: String,
    pub customer_id: Option<String>,
    pub completed_at: Timestamp,
    pub steps: Vec<ChainStep>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ReplayReport {
    pub rule: String,
    pub from: Option<Timestamp>,
    pub to: Option<Timestamp>,
    pub events_read: u64,
    pub customers: u64,
    pub firings: u64,
    /// Sorted by customer, then completion time.
    pub fired: Vec<FiringView>,
}

/// A task change an agent asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TaskAction {
    Claim,
    Done,
    Reopen,
}

struct Active {
    project: ProjectId,
    eval: Evaluator,
    secret: String,
}

/// The trigger machinery of one app.
pub(crate) struct Rules {
    endpoints: BTreeMap<String, Endpoint>,
    active: RwLock<Vec<Arc<Active>>>,
    /// Evaluations read, change and write customer states: one at a time.
    eval: Mutex<()>,
    worker: Worker,
}

/// What ingest hands over before storing: the events some rule concerns, and which events
/// could link customers.
pub(crate) struct Watched {
    relevant: Vec<(usize, Event)>,
    linking: Vec<usize>,
}

fn parse_endpoints(dir: &Path) -> Result<BTreeMap<String, Endpoint>, AppError> {
    let path = dir.join(crate::config::CONFIG_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(e) => {
            return Err(AppError::Io {
                path: path.display().to_string(),
                source: e,
            })
        }
    };
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| RulesError::Config(e.to_string()))?;
    let mut out = BTreeMap::new();
    let Some(triggers) = table.get("triggers") else {
        return Ok(out);
    };
    let bad = |m: String| AppError::Rules(RulesError::Config(m));
    let triggers = triggers
        .as_table()
        .ok_or_else(|| bad("expected a table".into()))?;
    for (k, v) in triggers {
        if k != "webhooks" {
            return Err(bad(format!(
                "unknown key '{k}' (expected [triggers.webhooks.NAME])"
            )));
        }
        for (name, ep) in v
            .as_table()
            .ok_or_else(|| bad("webhooks: expected tables [triggers.webhooks.NAME]".into()))?
        {
            let t = ep
                .as_table()
                .ok_or_else(|| bad(format!("webhooks.{name}: expected a table")))?;
            let url = t.get("url").and_then(|u| u.as_str()).ok_or_else(|| {
                bad(format!(
                    "webhooks.{name}.url: missing (an http:// or https:// URL)"
                ))
            })?;
            let secret = match t.get("secret") {
                None => None,
                Some(s) => {
                    let s = s
                        .as_str()
                        .ok_or_else(|| bad(format!("webhooks.{name}.secret: expected text")))?;
                    tr::sign::Secret::parse(s)
                        .map_err(|e| bad(format!("webhooks.{name}.secret: {e}")))?;
                    Some(s.to_string())
                }
            };
            for key in t.keys() {
                if key != "url" && key != "secret" {
                    return Err(bad(format!(
                        "webhooks.{name}.{key}: unknown field (expected url, secret)"
                    )));
                }
            }
            out.insert(
                name.clone(),
                Endpoint {
                    url: url.to_string(),
                    secret,
                },
            );
        }
    }
    Ok(out)
}

fn new_secret() -> String {
    use rand::RngCore;
    let mut bytes = vec![0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    tr::sign::Secret::from_bytes(bytes).to_text()
}

impl Rules {
    pub fn open(store: Arc<Store>, clock: Arc<dyn Clock>) -> Result<Rules, AppError> {
        let endpoints = parse_endpoints(store.dir())?;
        let rules = Rules {
            endpoints,
            active: RwLock::new(Vec::new()),
            eval: Mutex::new(()),
            worker: Worker::start(store.clone(), clock),
        };
        rules.reload(&store)?;
        Ok(rules)
    }

    /// The rules of a reader's app: loaded to show them, never evaluated or delivered.
    pub fn open_read_only(store: &Store) -> Result<Rules, AppError> {
        let rules = Rules {
            endpoints: parse_endpoints(store.dir())?,
            active: RwLock::new(Vec::new()),
            eval: Mutex::new(()),
            worker: Worker::idle(),
        };
        rules.reload(store)?;
        Ok(rules)
    }

    fn reload(&self, store: &Store) -> Result<(), AppError> {
        let rows = store.meta().trigger_rules(None)?;
        let mut active = Vec::new();
        for row in rows.into_iter().filter(|r| r.enabled) {
            let rule = stored_rule(&row)?;
            active.push(Arc::new(Active {
                project: row.project,
                eval: Evaluator::new(&rule),
                secret: row.secret,
            }));
        }
        *self.active.write().unwrap_or_else(|p| p.into_inner()) = active;
        Ok(())
    }

    fn active(&self, project: ProjectId) -> Vec<Arc<Active>> {
        self.active
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|a| a.project == project)
            .cloned()
            .collect()
    }

    /// The events of a batch some enabled rule concerns (cloned, as the store takes the
    /// batch), or `None` when the project has no enabled rule.
    pub fn watch(&self, project: ProjectId, events: &[Event]) -> Option<Watched> {
        let active = self.active(project);
        if active.is_empty() {
            return None;
        }
        let mut relevant = Vec::new();
        let mut linking = Vec::new();
        for (i, e) in events.iter().enumerate() {
            if e.identifiers.len() > 1 {
                linking.push(i);
            }
            if e.properties.contains_key(TRIGGERED_BY) {
                continue;
            }
            if active.iter().any(|a| a.eval.observation(e, 0).is_some()) {
                relevant.push((i, e.clone()));
            }
        }
        Some(Watched { relevant, linking })
    }
}

fn stored_rule(row: &TriggerRuleRow) -> Result<Rule, AppError> {
    let json: serde_json::Value = serde_json::from_str(&row.rule).map_err(|e| {
        AppError::Rules(RulesError::Config(format!(
            "stored rule '{}' is not JSON: {e}",
            row.name
        )))
    })?;
    Ok(tr::rule_from_json(&json)?)
}

impl From<tr::RuleError> for AppError {
    fn from(e: tr::RuleError) -> AppError {
        AppError::Rules(RulesError::Parse(e))
    }
}

/// A customer's cluster as evaluation needs it: canonical id, keys, identifiers.
struct Who {
    canonical: CustomerId,
    keys: Vec<u64>,
    identifiers: Vec<IdentifierView>,
}

impl App {
    fn who(&self, project: ProjectId, key: CustomerId) -> Result<Who, AppError> {
        let cluster = self.identities.cluster(&self.store, project, key)?;
        let keys: Vec<u64> = cluster.keys.iter().map(|k| k.0).collect();
        Ok(Who {
            canonical: CustomerId(keys.iter().copied().min().unwrap_or(key.0)),
            keys,
            identifiers: cluster.identifiers,
        })
    }

    /// Evaluates what ingest watched, now that the events are durable and their links
    /// applied: per resolved customer, every enabled rule.
    pub(crate) fn evaluate_rules(
        &self,
        project: ProjectId,
        watched: Option<Watched>,
        customers: &[Option<CustomerId>],
        generation_before: u64,
    ) -> Result<(), AppError> {
        let Some(w) = watched else {
            return Ok(());
        };
        let keyed: Vec<(CustomerId, Event)> = w
            .relevant
            .into_iter()
            .filter_map(|(i, e)| Some((customers.get(i).copied().flatten()?, e)))
            .collect();
        // Links changed: customers may have merged, and their states must be combined.
        let linked: Vec<CustomerId> = if self.identities.generation() != generation_before {
            w.linking
                .iter()
                .filter_map(|&i| customers.get(i).copied().flatten())
                .collect()
        } else {
            Vec::new()
        };
        self.evaluate_keyed(project, keyed, linked)
    }

    fn evaluate_keyed(
        &self,
        project: ProjectId,
        keyed: Vec<(CustomerId, Event)>,
        linked: Vec<CustomerId>,
    ) -> Result<(), AppError> {
        if keyed.is_empty() && linked.is_empty() {
            return Ok(());
        }
        let mut whos: HashMap<CustomerId, Arc<Who>> = HashMap::new();
        let mut groups: BTreeMap<CustomerId, (Arc<Who>, Vec<Event>)> = BTreeMap::new();
        let items = keyed
            .into_iter()
            .map(|(k, e)| (k, Some(e)))
            .chain(linked.into_iter().map(|k| (k, None)));
        for (key, event) in items {
            let who = match whos.get(&key) {
                Some(w) => w.clone(),
                None => {
                    let w = Arc::new(self.who(project, key)?);
                    whos.insert(key, w.clone());
                    w
                }
            };
            let entry = groups
                .entry(who.canonical)
                .or_insert_with(|| (who.clone(), Vec::new()));
            entry.1.extend(event);
        }
        let now = self.now();
        let _one = lock(&self.rules.eval);
        for (who, events) in groups.values() {
            // Emitted events are ingested by `poll_rules`, not here: this runs inside
            // an ingest, which must not start another.
            self.evaluate_customer(project, who, events, now)?;
        }
        Ok(())
    }

    /// Runs every enabled rule of the project for one customer.
    fn evaluate_customer(
        &self,
        project: ProjectId,
        who: &Who,
        events: &[Event],
        now: Timestamp,
    ) -> Result<(), AppError> {
        for active in self.rules.active(project) {
            let eval = &active.eval;
            let obs: Vec<tr::Obs> = events
                .iter()
                .filter_map(|e| eval.observation(e, tr::event_key(e)))
                .collect();
            let name = eval.rule().name.clone();
            let rows = self
                .store
                .meta()
                .trigger_states(project, &name, &who.keys)?;
            // Nothing new and nothing merged: the timer polls this state when it is due.
            if obs.is_empty() && rows.iter().all(|r| r.customer == who.canonical.0) {
                continue;
            }
            let mut state = tr::State::default();
            let mut merged = Vec::new();
            let mut others = Vec::new();
            for r in rows {
                let s: tr::State = serde_json::from_str(&r.state).map_err(|e| {
                    AppError::Rules(RulesError::Config(format!(
                        "stored state of rule '{name}' for c{} is not readable: {e}",
                        r.customer
                    )))
                })?;
                if r.customer == who.canonical.0 {
                    state = s;
                } else {
                    merged.push(r.customer);
                    others.push(s);
                }
            }
            let t = now.as_micros();
            let mut firings = Vec::new();
            for other in others {
                firings.extend(eval.merge(&mut state, other, t).firings);
            }
            for o in obs {
                firings.extend(eval.observe(&mut state, o, t).firings);
            }
            firings.extend(eval.poll(&mut state, t).firings);
            self.write_outcome(project, &active, who, state, merged, firings, now)?;
        }
        Ok(())
    }

    /// Saves a customer's state and records its firings with their actions.
    #[allow(clippy::too_many_arguments)]
    fn write_outcome(
        &self,
        project: ProjectId,
        active: &Active,
        who: &Who,
        state: tr::State,
        merged: Vec<u64>,
        firings: Vec<tr::Firing>,
        now: Timestamp,
    ) -> Result<(), AppError> {
        let eval = &active.eval;
        let rule = eval.rule();
        let deadline = eval.next_deadline(&state).map(Timestamp::from_micros);
        let mut w = TriggerWrite {
            project,
            rule: rule.name.clone(),
            states: vec![TriggerStateRow {
                customer: who.canonical.0,
                state: serde_json::to_string(&state).expect("states serialize"),
                deadline,
            }],
            merged,
            firings: Vec::new(),
            deliveries: Vec::new(),
            tasks: Vec::new(),
        };
        for f in &firings {
            let steps = chain_steps(rule, &f.chain);
            let customer_id = who.canonical.to_string();
            let mut emit = Vec::new();
            for (i, action) in rule.actions.iter().enumerate() {
                match action {
                    Action::Webhook {
                        url,
                        endpoint,
                        secret,
                    } => {
                        let ep = endpoint.as_ref().and_then(|e| self.rules.endpoints.get(e));
                        let target = match (url, endpoint) {
                            (Some(u), _) => u.clone(),
                            (None, Some(e)) => match ep {
                                Some(ep) => ep.url.clone(),
                                // Kept (and dead-lettered by the worker) rather than lost.
                                None => format!("endpoint:{e}"),
                            },
                            (None, None) => continue,
                        };
                        let secret = secret
                            .clone()
                            .or_else(|| ep.and_then(|e| e.secret.clone()))
                            .unwrap_or_else(|| active.secret.clone());
                        let body = serde_json::json!({
                            "type": "rule.fired",
                            "timestamp": now.to_rfc3339(),
                            "data": {
                                "firing": f.id,
                                "rule": rule.name,
                                "project": project.0,
                                "customer_id": customer_id,
                                "identifiers": who.identifiers.iter().map(|i| format!("{}:{}", i.kind, i.value)).collect::<Vec<_>>(),
                                "completed_at": Timestamp::from_micros(f.completion.time).to_rfc3339(),
                                "steps": steps,
                                "action": i,
                            }
                        });
                        w.deliveries.push(DeliveryRow {
                            id: 0,
                            project,
                            firing: f.id.clone(),
                            rule: rule.name.clone(),
                            customer: who.canonical.0,
                            url: target,
                            secret,
                            body: body.to_string(),
                            status: "pending".into(),
                            attempts: 0,
                            next_attempt_at: Some(now),
                            last_status: None,
                            last_error: None,
                            created_at: now,
                            finished_at: None,
                        });
                    }
                    Action::Task { queue, title } => w.tasks.push(TaskRow {
                        id: 0,
                        project,
                        firing: f.id.clone(),
                        rule: rule.name.clone(),
                        customer: who.canonical.0,
                        queue: queue.clone(),
                        title: title.clone(),
                        status: "open".into(),
                        agent: None,
                        created_at: now,
                        updated_at: now,
                    }),
                    Action::Emit {
                        activity,
                        channel,
                        properties,
                    } => {
                        let Some(id) = who.identifiers.first() else {
                            continue;
                        };
                        let mut props = serde_json::Map::new();
                        for (k, v) in properties {
                            props.insert(k.clone(), serde_json::to_value(v).expect("literal"));
                        }
                        props.insert(TRIGGERED_BY.into(), rule.name.clone().into());
                        props.insert("firing".into(), f.id.clone().into());
                        emit.push(serde_json::json!({
                            "event_id": format!("{}:{i}", f.id),
                            "timestamp": now.to_rfc3339(),
                            "identifiers": {id.kind.clone(): id.value.clone()},
                            "channel": channel,
                            "activity": activity,
                            "properties": props,
                        }));
                    }
                }
            }
            w.firings.push(FiringRow {
                project,
                id: f.id.clone(),
                rule: rule.name.clone(),
                customer: who.canonical.0,
                completed_at: Timestamp::from_micros(f.completion.time),
                fired_at: now,
                chain: serde_json::to_string(&steps).expect("steps serialize"),
                emit: (!emit.is_empty()).then(|| serde_json::Value::Array(emit).to_string()),
            });
        }
        let new = self.store.meta().write_triggers(&w)?;
        if !new.is_empty() {
            tracing::info!(
                "rule '{}' fired for {} ({} firing(s))",
                rule.name,
                who.canonical,
                new.len()
            );
            if !w.deliveries.is_empty() {
                self.rules.worker.wake();
            }
        }
        Ok(())
    }

    /// Ingests the events firings emit, through the one ingest path.
    fn flush_emits(&self) -> Result<(), AppError> {
        let pending = self.store.meta().pending_emits()?;
        for f in pending {
            let Some(text) = &f.emit else { continue };
            let list: Vec<serde_json::Value> = serde_json::from_str(text).unwrap_or_default();
            // An event that does not validate becomes a dead letter, like any other.
            let events: Vec<Incoming> = list
                .iter()
                .enumerate()
                .map(|(i, j)| match Event::from_json(j) {
                    Ok(e) => Incoming::Event(e),
                    Err(v) => Incoming::Rejected(crate::Rejected {
                        source: format!("rule {}", f.rule),
                        line: i as u64 + 1,
                        field: v.field,
                        reason: v.reason,
                        payload: j.to_string(),
                    }),
                })
                .collect();
            if !events.is_empty() {
                self.ingest(f.project, events)?;
            }
            self.store.meta().mark_emitted(f.project, &f.id)?;
        }
        Ok(())
    }

    /// Startup recovery: evaluates the events still in the ingest log again (the ones
    /// already seen are recognised), polls due timers, and emits what firings still owe.
    pub(crate) fn recover_rules(&self) -> Result<(), AppError> {
        let active: Vec<ProjectId> = {
            let a = self.rules.active.read().unwrap_or_else(|p| p.into_inner());
            a.iter().map(|x| x.project).collect()
        };
        if !active.is_empty() {
            let mut by_project: BTreeMap<ProjectId, Vec<(CustomerId, Event)>> = BTreeMap::new();
            for r in self.store.tail_records() {
                if !active.contains(&r.project) || r.event.properties.contains_key(TRIGGERED_BY) {
                    continue;
                }
                let concerns = self
                    .rules
                    .active(r.project)
                    .iter()
                    .any(|a| a.eval.observation(&r.event, 0).is_some());
                if concerns {
                    by_project
                        .entry(r.project)
                        .or_default()
                        .push((r.customer, r.event));
                }
            }
            for (project, keyed) in by_project {
                self.evaluate_keyed(project, keyed, Vec::new())?;
            }
        }
        self.poll_rules()?;
        self.flush_emits()
    }

    /// Decides what unless windows that have closed by now allow, and emits what firings
    /// owe. The server calls this every second; ingest and open call it too.
    pub fn poll_rules(&self) -> Result<usize, AppError> {
        let now = self.now();
        let due = self.store.meta().due_trigger_states(now)?;
        let mut fired = 0;
        {
            let _one = lock(&self.rules.eval);
            for (project, rule, customer) in due {
                let Some(active) = self
                    .rules
                    .active(project)
                    .into_iter()
                    .find(|a| a.eval.rule().name == rule)
                else {
                    continue;
                };
                let rows = self
                    .store
                    .meta()
                    .trigger_states(project, &rule, &[customer])?;
                let Some(row) = rows.into_iter().next() else {
                    continue;
                };
                let mut state: tr::State = serde_json::from_str(&row.state).map_err(|e| {
                    AppError::Rules(RulesError::Config(format!(
                        "stored state of rule '{rule}' for c{customer} is not readable: {e}"
                    )))
                })?;
                let poll = active.eval.poll(&mut state, now.as_micros());
                fired += poll.firings.len();
                let who = if poll.firings.is_empty() {
                    Who {
                        canonical: CustomerId(customer),
                        keys: vec![customer],
                        identifiers: Vec::new(),
                    }
                } else {
                    let mut w = self.who(project, CustomerId(customer))?;
                    // The state stays under the key it was saved with.
                    w.canonical = CustomerId(customer);
                    w
                };
                self.write_outcome(project, &active, &who, state, Vec::new(), poll.firings, now)?;
            }
        }
        // Firings made on the ingest path leave their events for this call to add.
        self.flush_emits()?;
        Ok(fired)
    }

    /// Adds or replaces a rule from YAML or JSON text; true when it is new.
    pub fn add_rule(&self, project: ProjectId, text: &str) -> Result<(RuleInfo, bool), AppError> {
        let rule = tr::parse_rule(text)?;
        self.put_rule(project, rule, true)
    }

    fn put_rule(
        &self,
        project: ProjectId,
        rule: Rule,
        enabled: bool,
    ) -> Result<(RuleInfo, bool), AppError> {
        for a in &rule.actions {
            if let Action::Webhook {
                endpoint: Some(e), ..
            } = a
            {
                if !self.rules.endpoints.contains_key(e) {
                    return Err(RulesError::NoEndpoint(e.clone()).into());
                }
            }
        }
        let now = self.now();
        // No evaluation may save a state of the old rule after the states are cleared.
        let _one = lock(&self.rules.eval);
        let existing = self.store.meta().trigger_rule(project, &rule.name)?;
        let row = TriggerRuleRow {
            project,
            name: rule.name.clone(),
            rule: serde_json::to_string(&rule).expect("rules serialize"),
            enabled,
            secret: existing
                .as_ref()
                .map(|r| r.secret.clone())
                .unwrap_or_else(new_secret),
            created_at: existing.as_ref().map_or(now, |r| r.created_at),
            updated_at: now,
        };
        let changed = existing.as_ref().is_some_and(|r| r.rule != row.rule);
        let created = {
            let meta = self.store.meta();
            let created = meta.put_trigger_rule(&row)?;
            if changed {
                // Old states were built for the old filters; firings already made stay
                // recorded, so a completion that fired does not fire again.
                meta.clear_trigger_states(project, &row.name)?;
            }
            created
        };
        self.rules.reload(&self.store)?;
        drop(_one);
        Ok((self.rule_info(project, &rule.name)?, created))
    }

    fn rule_info(&self, project: ProjectId, name: &str) -> Result<RuleInfo, AppError> {
        let row = self
            .store
            .meta()
            .trigger_rule(project, name)?
            .ok_or_else(|| RulesError::NotFound {
                project: project.0,
                name: name.to_string(),
            })?;
        Ok(RuleInfo {
            rule: stored_rule(&row)?,
            name: row.name,
            enabled: row.enabled,
            secret: row.secret,
            created_at: row.created_at,
            updated_at: row.updated_at,
        })
    }

    pub fn rule(&self, project: ProjectId, name: &str) -> Result<RuleInfo, AppError> {
        self.rule_info(project, name)
    }

    /// The project's rules, by name.
    pub fn rules(&self, project: ProjectId) -> Result<Vec<RuleInfo>, AppError> {
        let rows = self.store.meta().trigger_rules(Some(project))?;
        rows.into_iter()
            .map(|row| {
                Ok(RuleInfo {
                    rule: stored_rule(&row)?,
                    name: row.name,
                    enabled: row.enabled,
                    secret: row.secret,
                    created_at: row.created_at,
                    updated_at: row.updated_at,
                })
            })
            .collect()
    }

    /// Enables or disables a rule. A disabled rule sees no events; enabled again, it
    /// continues from the state it had.
    pub fn set_rule_enabled(
        &self,
        project: ProjectId,
        name: &str,
        enabled: bool,
    ) -> Result<RuleInfo, AppError> {
        let now = self.now();
        if !self
            .store
            .meta()
            .set_trigger_rule_enabled(project, name, enabled, now)?
        {
            return Err(RulesError::NotFound {
                project: project.0,
                name: name.to_string(),
            }
            .into());
        }
        self.rules.reload(&self.store)?;
        self.rule_info(project, name)
    }

    /// Evaluates a rule over the given events as one customer's history, with no side
    /// effects: which completions would fire.
    pub fn test_rule(
        &self,
        rule_text: &str,
        events: &[serde_json::Value],
    ) -> Result<Vec<FiringView>, AppError> {
        let rule = tr::parse_rule(rule_text)?;
        let eval = Evaluator::replaying(&rule);
        let mut obs = Vec::new();
        for (index, j) in events.iter().enumerate() {
            let mut e = Event::from_json(j).map_err(|v| RulesError::BadEvent {
                index,
                field: v.field.clone(),
                reason: v.reason.clone(),
            })?;
            e.normalize().map_err(|v| RulesError::BadEvent {
                index,
                field: v.field,
                reason: v.reason,
            })?;
            obs.extend(eval.observation(&e, tr::event_key(&e)));
        }
        Ok(tr::replay(&eval, &obs)
            .into_iter()
            .map(|f| FiringView {
                id: f.id.clone(),
                customer_id: None,
                completed_at: Timestamp::from_micros(f.completion.time),
                steps: chain_steps(&rule, &f.chain),
            })
            .collect())
    }

    /// Runs a stored rule over the project's history: firings whose completing event lies
    /// in `[from, to)`, per resolved customer. Nothing is recorded or sent.
    pub fn replay_rule(
        &self,
        project: ProjectId,
        name: &str,
        from: Option<Timestamp>,
        to: Option<Timestamp>,
    ) -> Result<ReplayReport, AppError> {
        check_range(from, to)?;
        let info = self.rule_info(project, name)?;
        self.replay(project, &info.rule, from, to)
    }

    /// Runs a rule that is not saved (YAML or JSON text) over the project's history, as
    /// `replay_rule` does: nothing is stored, recorded or sent.
    pub fn replay_draft(
        &self,
        project: ProjectId,
        rule_text: &str,
        from: Option<Timestamp>,
        to: Option<Timestamp>,
    ) -> Result<ReplayReport, AppError> {
        check_range(from, to)?;
        let rule = tr::parse_rule(rule_text)?;
        self.replay(project, &rule, from, to)
    }

    fn replay(
        &self,
        project: ProjectId,
        rule: &Rule,
        from: Option<Timestamp>,
        to: Option<Timestamp>,
    ) -> Result<ReplayReport, AppError> {
        let eval = Evaluator::replaying(rule);
        let span = rule.span().micros() + rule.tolerance.micros();
        let lo = from.map(|f| f.as_micros().saturating_sub(span));
        let hi = to.map(|t| t.as_micros());
        let overlay = self.identities.overlay(&self.store, project)?;
        let mut per: BTreeMap<CustomerId, Vec<tr::Obs>> = BTreeMap::new();
        let mut read = 0u64;
        for r in self.store.records(project)? {
            let t = r.event.timestamp.as_micros();
            if lo.is_some_and(|lo| t < lo) || hi.is_some_and(|hi| t >= hi) {
                continue;
            }
            read += 1;
            if r.event.properties.contains_key(TRIGGERED_BY) {
                continue;
            }
            if let Some(o) = eval.observation(&r.event, tr::event_key(&r.event)) {
                let c = overlay.get(&r.customer).copied().unwrap_or(r.customer);
                per.entry(c).or_default().push(o);
            }
        }
        let mut fired = Vec::new();
        let mut customers = 0;
        for (c, obs) in per {
            let mut any = false;
            for f in tr::replay(&eval, &obs) {
                if from.is_some_and(|from| f.completion.time < from.as_micros()) {
                    continue;
                }
                any = true;
                fired.push(FiringView {
                    id: f.id.clone(),
                    customer_id: Some(c.to_string()),
                    completed_at: Timestamp::from_micros(f.completion.time),
                    steps: chain_steps(rule, &f.chain),
                });
            }
            customers += any as u64;
        }
        Ok(ReplayReport {
            rule: rule.name.clone(),
            from,
            to,
            events_read: read,
            customers,
            firings: fired.len() as u64,
            fired,
        })
    }

    /// Tasks, oldest first, with the counts per state under the same customer and time
    /// filters.
    pub fn tasks(&self, project: ProjectId, query: &TaskQuery<'_>) -> Result<TaskList, AppError> {
        let keys = match query.customer {
            Some(c) => {
                let id = self.resolve_customer(project, c)?;
                Some(self.who(project, id)?.keys)
            }
            None => None,
        };
        let filter = TaskFilter {
            status: query.status,
            customers: keys.as_deref(),
            from: query.from,
            to: query.to,
            limit: query.limit,
        };
        let meta = self.store.meta();
        let counts = meta.task_counts(project, &filter)?;
        let rows = meta.tasks(project, &filter)?;
        drop(meta);
        let count = |s: &str| counts.get(s).copied().unwrap_or(0);
        Ok(TaskList {
            counts: TaskCounts {
                open: count("open"),
                claimed: count("claimed"),
                done: count("done"),
            },
            tasks: self.task_views(project, rows)?,
        })
    }

    /// The tasks of a customer's keys, for the customer view.
    pub(crate) fn customer_tasks(
        &self,
        project: ProjectId,
        keys: &[u64],
    ) -> Result<Vec<Task>, AppError> {
        let filter = TaskFilter {
            customers: Some(keys),
            ..TaskFilter::default()
        };
        let rows = self.store.meta().tasks(project, &filter)?;
        self.task_views(project, rows)
    }

    /// Tasks as shown, each customer labelled once.
    fn task_views(
        &self,
        project: ProjectId,
        rows: Vec<TaskListing>,
    ) -> Result<Vec<Task>, AppError> {
        let mut labels: HashMap<u64, String> = HashMap::new();
        rows.into_iter()
            .map(|row| {
                let customer = row.task.customer;
                let label = match labels.get(&customer) {
                    Some(l) => l.clone(),
                    None => {
                        let l = self.customer_label(project, CustomerId(customer))?.label;
                        labels.insert(customer, l.clone());
                        l
                    }
                };
                task_view(row, label)
            })
            .collect()
    }

    /// Moves a task along open → claimed → done (or back to open).
    pub fn update_task(
        &self,
        project: ProjectId,
        id: i64,
        action: TaskAction,
        agent: Option<&str>,
    ) -> Result<Task, AppError> {
        let (from, to, word): (&[&str], &str, &str) = match action {
            TaskAction::Claim => (&["open"], "claimed", "claimed"),
            TaskAction::Done => (&["open", "claimed"], "done", "marked done"),
            TaskAction::Reopen => (&["claimed", "done"], "open", "reopened"),
        };
        let meta = self.store.meta();
        let Some(task) = meta.task(project, id)? else {
            return Err(RulesError::TaskNotFound {
                project: project.0,
                id,
            }
            .into());
        };
        if !meta.update_task(project, id, from, to, agent, self.now())? {
            return Err(RulesError::TaskState {
                id,
                status: task.status,
                action: word.into(),
            }
            .into());
        }
        let row = meta.task(project, id)?.ok_or(RulesError::TaskNotFound {
            project: project.0,
            id,
        })?;
        let firing = meta.trigger_firing(project, &row.firing)?;
        drop(meta);
        let label = self
            .customer_label(project, CustomerId(row.customer))?
            .label;
        task_view(
            TaskListing {
                completed_at: firing.as_ref().map(|f| f.completed_at),
                chain: firing.map(|f| f.chain),
                task: row,
            },
            label,
        )
    }

    /// The webhook delivery log, newest first.
    pub fn deliveries(
        &self,
        project: ProjectId,
        status: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Delivery>, AppError> {
        Ok(self
            .store
            .meta()
            .deliveries(project, status, limit)?
            .into_iter()
            .map(|d| Delivery {
                id: d.id,
                rule: d.rule,
                firing: d.firing,
                customer_id: CustomerId(d.customer).to_string(),
                url: d.url,
                status: d.status,
                attempts: d.attempts,
                next_attempt_at: d.next_attempt_at,
                last_status: d.last_status,
                last_error: d.last_error,
                created_at: d.created_at,
                finished_at: d.finished_at,
            })
            .collect())
    }

    /// Installs the demo's seed rule (after its data, so history does not fire it).
    pub(crate) fn install_demo_rules(&mut self) -> Result<(), AppError> {
        self.rules.endpoints = parse_endpoints(self.dir())?;
        let rule = tr::parse_rule(DEMO_RULE_YAML)?;
        self.put_rule(ProjectId::DEFAULT, rule, true)?;
        Ok(())
    }

    /// Combines the trigger states of customers an `identify`/`alias` link may have
    /// joined.
    pub(crate) fn rules_after_link(
        &self,
        project: ProjectId,
        identifiers: &[Identifier],
        generation_before: u64,
    ) -> Result<(), AppError> {
        if self.rules.active(project).is_empty()
            || self.identities.generation() == generation_before
        {
            return Ok(());
        }
        let mut keys = Vec::new();
        for id in identifiers {
            if let Some((c, _)) = self
                .identities
                .find(&self.store, project, &id.to_string())?
                .into_iter()
                .next()
            {
                keys.push(c);
            }
        }
        self.evaluate_keyed(project, Vec::new(), keys)
    }
}

fn check_range(from: Option<Timestamp>, to: Option<Timestamp>) -> Result<(), RulesError> {
    match (from, to) {
        (Some(f), Some(t)) if f >= t => Err(RulesError::Range(format!(
            "from ({}) is not before to ({})",
            f.to_rfc3339(),
            t.to_rfc3339()
        ))),
        _ => Ok(()),
    }
}

fn chain_steps(rule: &Rule, chain: &[tr::At]) -> Vec<ChainStep> {
    chain
        .iter()
        .zip(&rule.steps)
        .enumerate()
        .map(|(i, (at, s))| ChainStep {
            step: i + 1,
            activity: s.filter.activity.clone(),
            channel: s.filter.channel.clone(),
            timestamp: Timestamp::from_micros(at.time),
        })
        .collect()
}

fn task_view(row: TaskListing, customer_label: String) -> Result<Task, AppError> {
    let t = row.task;
    let steps = match &row.chain {
        Some(text) => serde_json::from_str(text).map_err(|e| {
            AppError::Rules(RulesError::Config(format!(
                "stored chain of firing '{}' is not readable: {e}",
                t.firing
            )))
        })?,
        None => Vec::new(),
    };
    Ok(Task {
        id: t.id,
        queue: t.queue,
        title: t.title,
        status: t.status,
        agent: t.agent,
        rule: t.rule,
        firing: t.firing,
        customer_id: CustomerId(t.customer).to_string(),
        customer_label,
        completed_at: row.completed_at,
        steps,
        created_at: t.created_at,
        updated_at: t.updated_at,
    })
}

/// Delivers webhooks on its own thread: woken when a firing adds deliveries, otherwise
/// sleeping until the next retry is due.
struct Worker {
    shared: Arc<(Mutex<WorkerFlags>, Condvar)>,
    thread: Option<std::thread::JoinHandle<()>>,
}

#[derive(Default)]
struct WorkerFlags {
    wake: bool,
    stop: bool,
}

impl Worker {
    fn start(store: Arc<Store>, clock: Arc<dyn Clock>) -> Worker {
        let shared = Arc::new((Mutex::new(WorkerFlags::default()), Condvar::new()));
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name("omnitrail-webhooks".into())
            .spawn(move || deliver_loop(&store, clock.as_ref(), &s))
            .ok();
        Worker { shared, thread }
    }

    /// A worker without a thread, for a reader's app.
    fn idle() -> Worker {
        Worker {
            shared: Arc::new((Mutex::new(WorkerFlags::default()), Condvar::new())),
            thread: None,
        }
    }

    fn wake(&self) {
        let (m, cv) = &*self.shared;
        lock(m).wake = true;
        cv.notify_one();
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let (m, cv) = &*self.shared;
        lock(m).stop = true;
        cv.notify_one();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// How long after attempt `n` (1-based) the next one waits: 1 s, 2 s, 4 s, …
pub fn retry_delay(attempt: u32) -> Duration {
    FIRST_RETRY * 2u32.saturating_pow(attempt.saturating_sub(1).min(16))
}

fn deliver_loop(store: &Store, clock: &dyn Clock, shared: &(Mutex<WorkerFlags>, Condvar)) {
    let client = match webhook_client() {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("webhooks cannot be delivered: no HTTP client: {e}");
            return;
        }
    };
    let (m, cv) = shared;
    loop {
        let now = clock.now();
        let due = store.meta().due_deliveries(now, 64);
        match due {
            Ok(list) => {
                for d in list {
                    if lock(m).stop {
                        return;
                    }
                    let outcome = attempt(&client, &d, clock.now());
                    let outcome = match outcome {
                        Ok(status) => AttemptOutcome::Delivered { status },
                        Err((status, error)) => {
                            let attempts = d.attempts + 1;
                            let retry_at = (attempts < MAX_ATTEMPTS).then(|| {
                                clock
                                    .now()
                                    .plus_micros(retry_delay(attempts).as_micros() as i64)
                            });
                            if retry_at.is_none() {
                                tracing::warn!(
                                    "webhook {} of rule '{}' dead-lettered after {attempts} attempts: {error}",
                                    d.id,
                                    d.rule
                                );
                            }
                            AttemptOutcome::Failed {
                                status,
                                error,
                                retry_at,
                            }
                        }
                    };
                    if let Err(e) =
                        store
                            .meta()
                            .record_delivery_attempt(d.id, &outcome, clock.now())
                    {
                        tracing::error!("webhook delivery log: {e}");
                    }
                }
            }
            Err(e) => tracing::error!("webhook deliveries cannot be read: {e}"),
        }
        let next = store.meta().next_delivery_at().ok().flatten();
        let wait = next
            .map(|t| {
                let us = t.as_micros() - clock.now().as_micros();
                Duration::from_micros(us.max(0) as u64)
            })
            .unwrap_or(Duration::from_secs(1))
            .min(Duration::from_secs(1));
        let mut flags = lock(m);
        if flags.stop {
            return;
        }
        if !flags.wake && !wait.is_zero() {
            flags = cv
                .wait_timeout(flags, wait)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        if flags.stop {
            return;
        }
        flags.wake = false;
    }
}

/// The HTTP client of webhook deliveries. https:// uses rustls with ring (a small C/asm
/// build, unlike aws-lc) and verifies certificates against the system's CA store.
fn webhook_client() -> reqwest::Result<reqwest::blocking::Client> {
    // Fails only when a provider is already installed, which serves as well.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::blocking::Client::builder()
        .timeout(WEBHOOK_TIMEOUT)
        .build()
}

/// An error with its causes: reqwest's own message only says the request failed, the
/// reason (refused, timed out, an untrusted certificate) is in its sources.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

/// One signed POST; the status on success, or the status (if any) and what went wrong.
fn attempt(
    client: &reqwest::blocking::Client,
    d: &DeliveryRow,
    now: Timestamp,
) -> Result<u16, (Option<u16>, String)> {
    let secret =
        tr::sign::Secret::parse(&d.secret).map_err(|e| (None, format!("signing secret: {e}")))?;
    let msg_id = format!("msg_{}_{}", d.firing, d.id);
    let ts = now.as_micros().div_euclid(1_000_000);
    let signature = tr::sign::sign(&secret, &msg_id, ts, d.body.as_bytes());
    let response = client
        .post(&d.url)
        .header("content-type", "application/json")
        .header(tr::sign::HEADER_ID, &msg_id)
        .header(tr::sign::HEADER_TIMESTAMP, ts.to_string())
        .header(tr::sign::HEADER_SIGNATURE, signature)
        .body(d.body.clone())
        .send()
        .map_err(|e| (None, format!("request failed: {}", error_chain(&e))))?;
    let status = response.status().as_u16();
    if response.status().is_success() {
        Ok(status)
    } else {
        Err((Some(status), format!("the receiver answered {status}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{AppOptions, Incoming};
    use omnitrail_model::FixedClock;

    const H: i64 = 3_600_000_000;

    /// https:// webhooks go through TLS with certificate verification: a receiver whose
    /// certificate no trusted authority signed is refused, and the log says why.
    #[test]
    fn https_webhooks_verify_the_receivers_certificate() {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let client = webhook_client().unwrap();
        let cert =
            CertificateDer::from_pem_slice(include_bytes!("../testdata/tls/cert.pem")).unwrap();
        let key = PrivateKeyDer::from_pem_slice(include_bytes!("../testdata/tls/key.pem")).unwrap();
        let config = Arc::new(
            rustls::ServerConfig::builder()
                .with_no_client_auth()
                .with_single_cert(vec![cert], key)
                .unwrap(),
        );
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (mut tcp, _) = listener.accept().unwrap();
            let mut tls = rustls::ServerConnection::new(config).unwrap();
            // The client aborts the handshake on the untrusted certificate.
            let mut handshake = Ok((0, 0));
            while handshake.is_ok() && tls.is_handshaking() {
                handshake = tls.complete_io(&mut tcp);
            }
            handshake.is_err()
        });
        let row = DeliveryRow {
            id: 1,
            project: ProjectId::DEFAULT,
            firing: "f1".into(),
            rule: "seed".into(),
            customer: 1,
            url: format!("https://127.0.0.1:{}/hook", addr.port()),
            secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into(),
            body: "{}".into(),
            status: "pending".into(),
            attempts: 0,
            next_attempt_at: None,
            last_status: None,
            last_error: None,
            created_at: Timestamp::from_micros(0),
            finished_at: None,
        };
        let (status, error) = attempt(&client, &row, Timestamp::from_micros(0)).unwrap_err();
        assert_eq!(status, None);
        assert!(error.contains("certificate"), "{error}");
        assert!(server.join().unwrap(), "the handshake was refused");
    }

    fn rule(url: &str) -> String {
        format!(
            "name: seed
steps:
  - {{activity: payment_failed, channel: web}}
  - {{activity: complaint, channel: social, within: 2h}}
unless:
  - {{activity: callback_completed, after: 1, within: 1h}}
actions:
  - webhook: {{url: '{url}', secret: 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw'}}
  - task: {{queue: callback, title: call her}}
  - emit: {{activity: callback_scheduled, channel: phone}}
"
        )
    }

    fn ev(id: &str, ids: &[(&str, &str)], channel: &str, activity: &str, at: i64) -> Incoming {
        let ids: serde_json::Map<String, serde_json::Value> = ids
            .iter()
            .map(|(k, v)| (k.to_string(), serde_json::Value::from(*v)))
            .collect();
        let j = serde_json::json!({"event_id": id, "timestamp": Timestamp::from_micros(at).to_rfc3339(),
            "identifiers": ids, "channel": channel, "activity": activity});
        Incoming::Event(Event::from_json(&j).unwrap())
    }

    fn open(dir: &Path, clock: Arc<FixedClock>) -> App {
        App::open(
            dir,
            AppOptions {
                clock,
                ..AppOptions::default()
            },
        )
        .unwrap()
    }

    #[test]
    fn an_unless_window_delays_the_firing_until_its_timer_and_the_emitted_event_joins_the_journey()
    {
        let dir = tempfile::tempdir().unwrap();
        let t0 = 1_800_000_000_000_000;
        let clock = Arc::new(FixedClock::new(Timestamp::from_micros(t0)));
        let app = open(dir.path(), clock.clone());
        // Nothing listens on port 9: deliveries fail and are retried, which is fine here.
        app.add_rule(ProjectId::DEFAULT, &rule("http://127.0.0.1:9/x"))
            .unwrap();
        let p = ProjectId::DEFAULT;
        app.ingest(
            p,
            vec![ev(
                "pf",
                &[("email", "ana@example.com")],
                "web",
                "payment_failed",
                t0,
            )],
        )
        .unwrap();
        clock.set(Timestamp::from_micros(t0 + H / 4));
        app.ingest(
            p,
            vec![ev(
                "c",
                &[("email", "ana@example.com")],
                "social",
                "complaint",
                t0 + H / 4,
            )],
        )
        .unwrap();
        // The unless window (1 h after the failure) is still open: nothing yet.
        assert_eq!(app.poll_rules().unwrap(), 0);
        assert!(app
            .tasks(p, &TaskQuery::default())
            .unwrap()
            .tasks
            .is_empty());
        clock.set(Timestamp::from_micros(t0 + H + 1));
        assert_eq!(app.poll_rules().unwrap(), 1);
        let listed = app
            .tasks(
                p,
                &TaskQuery {
                    status: Some("open"),
                    customer: Some("email:ana@example.com"),
                    ..TaskQuery::default()
                },
            )
            .unwrap();
        assert_eq!(listed.tasks.len(), 1);
        assert_eq!(
            listed.counts,
            TaskCounts {
                open: 1,
                claimed: 0,
                done: 0
            }
        );
        // The task says why it exists and whom it is for.
        let task = &listed.tasks[0];
        assert_eq!(task.customer_label, "email:ana@example.com");
        assert_eq!(task.completed_at, Some(Timestamp::from_micros(t0 + H / 4)));
        let steps: Vec<_> = task.steps.iter().map(|s| s.activity.as_deref()).collect();
        assert_eq!(steps, vec![Some("payment_failed"), Some("complaint")]);
        assert_eq!(app.poll_rules().unwrap(), 0);
        let view = app
            .customer(
                p,
                "email:ana@example.com",
                &crate::customer::TimelineQuery::default(),
            )
            .unwrap();
        assert_eq!(view.tasks.len(), 1);
        let timeline = serde_json::to_string(&view.timeline).unwrap();
        assert!(timeline.contains("callback_scheduled"), "{timeline}");
        let log = app.deliveries(p, None, 10).unwrap();
        assert_eq!(log.len(), 1);
    }

    #[test]
    fn a_callback_in_the_window_cancels_and_a_reopened_app_does_not_fire_again() {
        let dir = tempfile::tempdir().unwrap();
        let t0 = 1_800_000_000_000_000;
        let clock = Arc::new(FixedClock::new(Timestamp::from_micros(t0)));
        let p = ProjectId::DEFAULT;
        {
            let app = open(dir.path(), clock.clone());
            app.add_rule(p, &rule("http://127.0.0.1:9/x")).unwrap();
            app.ingest(
                p,
                vec![ev(
                    "pf",
                    &[("email", "a@x.com")],
                    "web",
                    "payment_failed",
                    t0,
                )],
            )
            .unwrap();
            app.ingest(
                p,
                vec![ev(
                    "cb",
                    &[("email", "a@x.com")],
                    "phone",
                    "callback_completed",
                    t0 + H / 2,
                )],
            )
            .unwrap();
            app.ingest(
                p,
                vec![ev(
                    "c",
                    &[("email", "a@x.com")],
                    "social",
                    "complaint",
                    t0 + H / 2 + 1,
                )],
            )
            .unwrap();
            clock.set(Timestamp::from_micros(t0 + 2 * H));
            assert_eq!(app.poll_rules().unwrap(), 0);
            // A second sequence, without a callback, fires once.
            app.ingest(
                p,
                vec![ev(
                    "pf2",
                    &[("email", "a@x.com")],
                    "web",
                    "payment_failed",
                    t0 + 2 * H,
                )],
            )
            .unwrap();
            clock.set(Timestamp::from_micros(t0 + 4 * H));
            app.ingest(
                p,
                vec![ev(
                    "c2",
                    &[("email", "a@x.com")],
                    "social",
                    "complaint",
                    t0 + 3 * H + 30 * 60_000_000,
                )],
            )
            .unwrap();
            assert_eq!(app.tasks(p, &TaskQuery::default()).unwrap().tasks.len(), 1);
        }
        // Reopened, the log tail is evaluated again: nothing fires twice.
        let app = open(dir.path(), clock);
        assert_eq!(app.tasks(p, &TaskQuery::default()).unwrap().tasks.len(), 1);
        assert_eq!(app.deliveries(p, None, 10).unwrap().len(), 1);
        let t = app.tasks(p, &TaskQuery::default()).unwrap().tasks.remove(0);
        assert!(matches!(
            app.update_task(p, t.id, TaskAction::Done, None)
                .unwrap()
                .status
                .as_str(),
            "done"
        ));
        assert!(matches!(
            app.update_task(p, t.id, TaskAction::Claim, Some("a")),
            Err(AppError::Rules(RulesError::TaskState { .. }))
        ));
    }

    #[test]
    fn an_event_stored_but_not_evaluated_before_a_crash_fires_once_on_the_next_open() {
        let dir = tempfile::tempdir().unwrap();
        let t0 = 1_800_000_000_000_000;
        let clock = Arc::new(FixedClock::new(Timestamp::from_micros(t0 + 2 * H)));
        let p = ProjectId::DEFAULT;
        {
            let app = open(dir.path(), clock.clone());
            app.add_rule(p, &rule("http://127.0.0.1:9/x")).unwrap();
            app.ingest(
                p,
                vec![ev(
                    "pf",
                    &[("email", "a@x.com")],
                    "web",
                    "payment_failed",
                    t0,
                )],
            )
            .unwrap();
            // The complaint is durable, but the process dies before rules see it: stored
            // past the app, as a crash between the fsync and the evaluation leaves it.
            let Incoming::Event(e) = ev(
                "c",
                &[("email", "a@x.com")],
                "social",
                "complaint",
                t0 + 2 * H - 60_000_000,
            ) else {
                unreachable!()
            };
            app.store().ingest(p, vec![e]).unwrap();
            assert!(app
                .tasks(p, &TaskQuery::default())
                .unwrap()
                .tasks
                .is_empty());
        }
        for _ in 0..2 {
            let app = open(dir.path(), clock.clone());
            assert_eq!(app.tasks(p, &TaskQuery::default()).unwrap().tasks.len(), 1);
            assert_eq!(app.deliveries(p, None, 10).unwrap().len(), 1);
        }
    }

    #[test]
    fn endpoints_come_from_omnitrail_toml_and_unknown_ones_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(crate::config::CONFIG_FILE),
            "[triggers.webhooks.cc]\nurl = \"http://127.0.0.1:9/cc\"\n",
        )
        .unwrap();
        let app = App::open(dir.path(), AppOptions::default()).unwrap();
        let text = "name: r\nsteps: [a]\nactions: [{webhook: {endpoint: cc}}]";
        app.add_rule(ProjectId::DEFAULT, text).unwrap();
        let err = app
            .add_rule(ProjectId::DEFAULT, &text.replace("cc}", "nope}"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("'nope' is not configured"), "{err}");
        let listed = app.rules(ProjectId::DEFAULT).unwrap();
        assert_eq!(listed.len(), 1);
        assert!(listed[0].secret.starts_with("whsec_"));
        let off = app
            .set_rule_enabled(ProjectId::DEFAULT, "r", false)
            .unwrap();
        assert!(!off.enabled);
    }
}
