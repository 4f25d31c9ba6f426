//! The metadata tables of journey triggers: rules, per-(rule, customer) evaluation state,
//! firings, the webhook delivery log and agent tasks. The app gives them meaning; here
//! they are rows. A firing's actions are written in the same transaction as the firing
//! and the states that produced it, and only when the firing's id is new: whatever a
//! restart re-evaluates, a firing's webhook and task exist once.

use crate::meta::Meta;
use crate::StoreError;
use omnitrail_model::{ProjectId, Timestamp};
use rusqlite::{params, OptionalExtension};
use std::collections::BTreeMap;

fn sql(e: rusqlite::Error) -> StoreError {
    StoreError::Meta(e.to_string())
}

#[derive(Clone, Debug, PartialEq)]
pub struct TriggerRuleRow {
    pub project: ProjectId,
    pub name: String,
    /// The rule as canonical JSON.
    pub rule: String,
    pub enabled: bool,
    /// The webhook signing secret (`whsec_…`) used when the rule names none.
    pub secret: String,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// One customer's evaluation state of one rule, as JSON, and when it next needs a poll.
#[derive(Clone, Debug, PartialEq)]
pub struct TriggerStateRow {
    pub customer: u64,
    pub state: String,
    pub deadline: Option<Timestamp>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct FiringRow {
    pub project: ProjectId,
    pub id: String,
    pub rule: String,
    pub customer: u64,
    pub completed_at: Timestamp,
    pub fired_at: Timestamp,
    /// The chain's events as JSON.
    pub chain: String,
    /// Events to add to the journey (JSON array), until they are ingested.
    pub emit: Option<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct DeliveryRow {
    pub id: i64,
    pub project: ProjectId,
    pub firing: String,
    pub rule: String,
    pub customer: u64,
    pub url: String,
    pub secret: String,
    pub body: String,
    /// `pending`, `delivered` or `dead`.
    pub status: String,
    pub attempts: u32,
    pub next_attempt_at: Option<Timestamp>,
    pub last_status: Option<u16>,
    pub last_error: Option<String>,
    pub created_at: Timestamp,
    pub finished_at: Option<Timestamp>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct TaskRow {
    pub id: i64,
    pub project: ProjectId,
    pub firing: String,
    pub rule: String,
    pub customer: u64,
    pub queue: String,
    pub title: String,
    /// `open`, `claimed` or `done`.
    pub status: String,
    pub agent: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// Which tasks a listing takes.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TaskFilter<'a> {
    /// `open`, `claimed` or `done`.
    pub status: Option<&'a str>,
    /// Only tasks of these customer keys.
    pub customers: Option<&'a [u64]>,
    /// Created at or after.
    pub from: Option<Timestamp>,
    /// Created before.
    pub to: Option<Timestamp>,
    pub limit: Option<usize>,
}

impl TaskFilter<'_> {
    /// The WHERE clause over `trigger_tasks t` and its parameters; the status only when
    /// `with_status` (counts are per status).
    fn clause(
        &self,
        project: ProjectId,
        with_status: bool,
    ) -> (String, Vec<rusqlite::types::Value>) {
        use rusqlite::types::Value as V;
        let mut parts = vec!["t.project = ?".to_string()];
        let mut args = vec![V::Integer(project.0.into())];
        if let (true, Some(s)) = (with_status, self.status) {
            parts.push("t.status = ?".into());
            args.push(V::Text(s.to_string()));
        }
        if let Some(keys) = self.customers {
            // Keys are integers: listed inline, as SQLite has no array parameter.
            let list = keys
                .iter()
                .map(|k| (*k as i64).to_string())
                .collect::<Vec<_>>()
                .join(", ");
            parts.push(format!("t.customer IN ({list})"));
        }
        if let Some(f) = self.from {
            parts.push("t.created_at >= ?".into());
            args.push(V::Integer(f.as_micros()));
        }
        if let Some(t) = self.to {
            parts.push("t.created_at < ?".into());
            args.push(V::Integer(t.as_micros()));
        }
        (parts.join(" AND "), args)
    }
}

/// A task with what its firing recorded (absent when the firing row is gone).
#[derive(Clone, Debug, PartialEq)]
pub struct TaskListing {
    pub task: TaskRow,
    pub completed_at: Option<Timestamp>,
    /// The chain's events as JSON.
    pub chain: Option<String>,
}

/// What one evaluation writes, atomically.
#[derive(Clone, Debug, PartialEq)]
pub struct TriggerWrite {
    pub project: ProjectId,
    pub rule: String,
    pub states: Vec<TriggerStateRow>,
    /// States of customers merged into another, to delete.
    pub merged: Vec<u64>,
    pub firings: Vec<FiringRow>,
    /// Deliveries and tasks by the id of their firing; written only with a new firing.
    pub deliveries: Vec<DeliveryRow>,
    pub tasks: Vec<TaskRow>,
}

/// How a delivery attempt ended.
#[derive(Clone, Debug, PartialEq)]
pub enum AttemptOutcome {
    Delivered {
        status: u16,
    },
    /// Failed; retried at `retry_at`, or dead-lettered when `None`.
    Failed {
        status: Option<u16>,
        error: String,
        retry_at: Option<Timestamp>,
    },
}

const DELIVERY_COLUMNS: &str = "id, project, firing, rule, customer, url, secret, body, status,
    attempts, next_attempt_at, last_status, last_error, created_at, finished_at";
const TASK_COLUMNS: &str =
    "id, project, firing, rule, customer, queue, title, status, agent, created_at, updated_at";

fn delivery_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<DeliveryRow> {
    Ok(DeliveryRow {
        id: r.get(0)?,
        project: ProjectId(r.get(1)?),
        firing: r.get(2)?,
        rule: r.get(3)?,
        customer: r.get::<_, i64>(4)? as u64,
        url: r.get(5)?,
        secret: r.get(6)?,
        body: r.get(7)?,
        status: r.get(8)?,
        attempts: r.get(9)?,
        next_attempt_at: r.get::<_, Option<i64>>(10)?.map(Timestamp::from_micros),
        last_status: r.get(11)?,
        last_error: r.get(12)?,
        created_at: Timestamp::from_micros(r.get(13)?),
        finished_at: r.get::<_, Option<i64>>(14)?.map(Timestamp::from_micros),
    })
}

fn task_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<TaskRow> {
    Ok(TaskRow {
        id: r.get(0)?,
        project: ProjectId(r.get(1)?),
        firing: r.get(2)?,
        rule: r.get(3)?,
        customer: r.get::<_, i64>(4)? as u64,
        queue: r.get(5)?,
        title: r.get(6)?,
        status: r.get(7)?,
        agent: r.get(8)?,
        created_at: Timestamp::from_micros(r.get(9)?),
        updated_at: Timestamp::from_micros(r.get(10)?),
    })
}

fn rule_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<TriggerRuleRow> {
    Ok(TriggerRuleRow {
        project: ProjectId(r.get(0)?),
        name: r.get(1)?,
        rule: r.get(2)?,
        enabled: r.get::<_, i64>(3)? != 0,
        secret: r.get(4)?,
        created_at: Timestamp::from_micros(r.get(5)?),
        updated_at: Timestamp::from_micros(r.get(6)?),
    })
}

fn firing_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<FiringRow> {
    Ok(FiringRow {
        project: ProjectId(r.get(0)?),
        id: r.get(1)?,
        rule: r.get(2)?,
        customer: r.get::<_, i64>(3)? as u64,
        completed_at: Timestamp::from_micros(r.get(4)?),
        fired_at: Timestamp::from_micros(r.get(5)?),
        chain: r.get(6)?,
        emit: r.get(7)?,
    })
}

impl Meta {
    /// Adds or replaces a rule (keeping its secret and creation time); true when new.
    pub fn put_trigger_rule(&self, row: &TriggerRuleRow) -> Result<bool, StoreError> {
        let existed = self.trigger_rule(row.project, &row.name)?.is_some();
        self.conn
            .execute(
                "INSERT INTO trigger_rules (project, name, rule, enabled, secret, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT (project, name) DO UPDATE SET
                   rule = excluded.rule, enabled = excluded.enabled, updated_at = excluded.updated_at",
                params![
                    row.project.0,
                    row.name,
                    row.rule,
                    row.enabled as i64,
                    row.secret,
                    row.created_at.as_micros(),
                    row.updated_at.as_micros()
                ],
            )
            .map_err(sql)?;
        Ok(!existed)
    }

    /// Forgets every customer's evaluation state of a rule (its firings and their actions
    /// stay): a replaced rule starts afresh, as old states were built for other filters.
    pub fn clear_trigger_states(&self, project: ProjectId, rule: &str) -> Result<u64, StoreError> {
        let n = self
            .conn
            .execute(
                "DELETE FROM trigger_state WHERE project = ?1 AND rule = ?2",
                params![project.0, rule],
            )
            .map_err(sql)?;
        Ok(n as u64)
    }

    /// Rules of one project (or every project), by project and name.
    pub fn trigger_rules(
        &self,
        project: Option<ProjectId>,
    ) -> Result<Vec<TriggerRuleRow>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT project, name, rule, enabled, secret, created_at, updated_at
                 FROM trigger_rules WHERE ?1 IS NULL OR project = ?1 ORDER BY project, name",
            )
            .map_err(sql)?;
        let rows = stmt
            .query_map(params![project.map(|p| p.0)], rule_row)
            .map_err(sql)?;
        rows.collect::<Result<_, _>>().map_err(sql)
    }

    pub fn trigger_rule(
        &self,
        project: ProjectId,
        name: &str,
    ) -> Result<Option<TriggerRuleRow>, StoreError> {
        self.conn
            .query_row(
                "SELECT project, name, rule, enabled, secret, created_at, updated_at
                 FROM trigger_rules WHERE project = ?1 AND name = ?2",
                params![project.0, name],
                rule_row,
            )
            .optional()
            .map_err(sql)
    }

    /// Enables or disables a rule; false when there is no such rule.
    pub fn set_trigger_rule_enabled(
        &self,
        project: ProjectId,
        name: &str,
        enabled: bool,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let n = self
            .conn
            .execute(
                "UPDATE trigger_rules SET enabled = ?3, updated_at = ?4 WHERE project = ?1 AND name = ?2",
                params![project.0, name, enabled as i64, now.as_micros()],
            )
            .map_err(sql)?;
        Ok(n > 0)
    }

    /// The states of `rule` held under any of `customers`.
    pub fn trigger_states(
        &self,
        project: ProjectId,
        rule: &str,
        customers: &[u64],
    ) -> Result<Vec<TriggerStateRow>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT customer, state, deadline FROM trigger_state
                 WHERE project = ?1 AND rule = ?2 AND customer = ?3",
            )
            .map_err(sql)?;
        let mut out = Vec::new();
        for &c in customers {
            let row = stmt
                .query_row(params![project.0, rule, c as i64], |r| {
                    Ok(TriggerStateRow {
                        customer: r.get::<_, i64>(0)? as u64,
                        state: r.get(1)?,
                        deadline: r.get::<_, Option<i64>>(2)?.map(Timestamp::from_micros),
                    })
                })
                .optional()
                .map_err(sql)?;
            out.extend(row);
        }
        Ok(out)
    }

    /// States of enabled rules whose deadline has come: (project, rule, customer).
    pub fn due_trigger_states(
        &self,
        now: Timestamp,
    ) -> Result<Vec<(ProjectId, String, u64)>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT s.project, s.rule, s.customer FROM trigger_state s
                 JOIN trigger_rules r ON r.project = s.project AND r.name = s.rule AND r.enabled = 1
                 WHERE s.deadline IS NOT NULL AND s.deadline < ?1
                 ORDER BY s.deadline, s.project, s.rule, s.customer",
            )
            .map_err(sql)?;
        let rows = stmt
            .query_map(params![now.as_micros()], |r| {
                Ok((
                    ProjectId(r.get(0)?),
                    r.get::<_, String>(1)?,
                    r.get::<_, i64>(2)? as u64,
                ))
            })
            .map_err(sql)?;
        rows.collect::<Result<_, _>>().map_err(sql)
    }

    /// Writes one evaluation: states, merged states removed, new firings with their
    /// deliveries and tasks. Returns the ids of the firings that were new.
    pub fn write_triggers(&mut self, w: &TriggerWrite) -> Result<Vec<String>, StoreError> {
        let tx = self.conn.transaction().map_err(sql)?;
        let mut new = Vec::new();
        {
            let mut save = tx
                .prepare_cached(
                    "INSERT INTO trigger_state (project, rule, customer, state, deadline)
                     VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT (project, rule, customer) DO UPDATE SET
                       state = excluded.state, deadline = excluded.deadline",
                )
                .map_err(sql)?;
            for s in &w.states {
                save.execute(params![
                    w.project.0,
                    w.rule,
                    s.customer as i64,
                    s.state,
                    s.deadline.map(|d| d.as_micros())
                ])
                .map_err(sql)?;
            }
            let mut drop_state = tx
                .prepare_cached(
                    "DELETE FROM trigger_state WHERE project = ?1 AND rule = ?2 AND customer = ?3",
                )
                .map_err(sql)?;
            for c in &w.merged {
                drop_state
                    .execute(params![w.project.0, w.rule, *c as i64])
                    .map_err(sql)?;
            }
            let mut fire = tx
                .prepare_cached(
                    "INSERT OR IGNORE INTO trigger_firings
                       (project, id, rule, customer, completed_at, fired_at, chain, emit)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                )
                .map_err(sql)?;
            let mut deliver = tx
                .prepare_cached(
                    "INSERT OR IGNORE INTO webhook_deliveries
                       (project, firing, rule, customer, url, secret, body, status, attempts,
                        next_attempt_at, created_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'pending', 0, ?8, ?8)",
                )
                .map_err(sql)?;
            let mut task = tx
                .prepare_cached(
                    "INSERT OR IGNORE INTO trigger_tasks
                       (project, firing, rule, customer, queue, title, status, created_at, updated_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'open', ?7, ?7)",
                )
                .map_err(sql)?;
            for f in &w.firings {
                let inserted = fire
                    .execute(params![
                        f.project.0,
                        f.id,
                        f.rule,
                        f.customer as i64,
                        f.completed_at.as_micros(),
                        f.fired_at.as_micros(),
                        f.chain,
                        f.emit
                    ])
                    .map_err(sql)?;
                if inserted == 0 {
                    continue;
                }
                new.push(f.id.clone());
                for d in w.deliveries.iter().filter(|d| d.firing == f.id) {
                    deliver
                        .execute(params![
                            d.project.0,
                            d.firing,
                            d.rule,
                            d.customer as i64,
                            d.url,
                            d.secret,
                            d.body,
                            d.created_at.as_micros()
                        ])
                        .map_err(sql)?;
                }
                for t in w.tasks.iter().filter(|t| t.firing == f.id) {
                    task.execute(params![
                        t.project.0,
                        t.firing,
                        t.rule,
                        t.customer as i64,
                        t.queue,
                        t.title,
                        t.created_at.as_micros()
                    ])
                    .map_err(sql)?;
                }
            }
        }
        tx.commit().map_err(sql)?;
        Ok(new)
    }

    /// Firings whose events are still to be added to the journey, oldest first.
    pub fn pending_emits(&self) -> Result<Vec<FiringRow>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT project, id, rule, customer, completed_at, fired_at, chain, emit
                 FROM trigger_firings WHERE emit IS NOT NULL ORDER BY fired_at, id",
            )
            .map_err(sql)?;
        let rows = stmt.query_map([], firing_row).map_err(sql)?;
        rows.collect::<Result<_, _>>().map_err(sql)
    }

    pub fn mark_emitted(&self, project: ProjectId, firing: &str) -> Result<(), StoreError> {
        self.conn
            .execute(
                "UPDATE trigger_firings SET emit = NULL WHERE project = ?1 AND id = ?2",
                params![project.0, firing],
            )
            .map_err(sql)?;
        Ok(())
    }

    /// Firings of a project, newest first, optionally of one rule.
    pub fn trigger_firings(
        &self,
        project: ProjectId,
        rule: Option<&str>,
        limit: usize,
    ) -> Result<Vec<FiringRow>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT project, id, rule, customer, completed_at, fired_at, chain, emit
                 FROM trigger_firings WHERE project = ?1 AND (?2 IS NULL OR rule = ?2)
                 ORDER BY fired_at DESC, id LIMIT ?3",
            )
            .map_err(sql)?;
        let rows = stmt
            .query_map(params![project.0, rule, limit as i64], firing_row)
            .map_err(sql)?;
        rows.collect::<Result<_, _>>().map_err(sql)
    }

    pub fn trigger_firing(
        &self,
        project: ProjectId,
        id: &str,
    ) -> Result<Option<FiringRow>, StoreError> {
        self.conn
            .query_row(
                "SELECT project, id, rule, customer, completed_at, fired_at, chain, emit
                 FROM trigger_firings WHERE project = ?1 AND id = ?2",
                params![project.0, id],
                firing_row,
            )
            .optional()
            .map_err(sql)
    }

    /// Deliveries due for an attempt at `now`, oldest first.
    pub fn due_deliveries(
        &self,
        now: Timestamp,
        limit: usize,
    ) -> Result<Vec<DeliveryRow>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(&format!(
                "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries
                 WHERE status = 'pending' AND next_attempt_at <= ?1
                 ORDER BY next_attempt_at, id LIMIT ?2"
            ))
            .map_err(sql)?;
        let rows = stmt
            .query_map(params![now.as_micros(), limit as i64], delivery_row)
            .map_err(sql)?;
        rows.collect::<Result<_, _>>().map_err(sql)
    }

    /// When the next pending delivery is due.
    pub fn next_delivery_at(&self) -> Result<Option<Timestamp>, StoreError> {
        self.conn
            .query_row(
                "SELECT MIN(next_attempt_at) FROM webhook_deliveries WHERE status = 'pending'",
                [],
                |r| r.get::<_, Option<i64>>(0),
            )
            .map(|v| v.map(Timestamp::from_micros))
            .map_err(sql)
    }

    pub fn record_delivery_attempt(
        &self,
        id: i64,
        outcome: &AttemptOutcome,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        match outcome {
            AttemptOutcome::Delivered { status } => self.conn.execute(
                "UPDATE webhook_deliveries SET status = 'delivered', attempts = attempts + 1,
                   last_status = ?2, last_error = NULL, next_attempt_at = NULL, finished_at = ?3
                 WHERE id = ?1",
                params![id, status, now.as_micros()],
            ),
            AttemptOutcome::Failed {
                status,
                error,
                retry_at,
            } => self.conn.execute(
                "UPDATE webhook_deliveries SET attempts = attempts + 1, last_status = ?2,
                   last_error = ?3, next_attempt_at = ?4,
                   status = CASE WHEN ?4 IS NULL THEN 'dead' ELSE 'pending' END,
                   finished_at = CASE WHEN ?4 IS NULL THEN ?5 ELSE NULL END
                 WHERE id = ?1",
                params![
                    id,
                    status,
                    error,
                    retry_at.map(|t| t.as_micros()),
                    now.as_micros()
                ],
            ),
        }
        .map_err(sql)?;
        Ok(())
    }

    /// The delivery log of a project, newest first, optionally of one status.
    pub fn deliveries(
        &self,
        project: ProjectId,
        status: Option<&str>,
        limit: usize,
    ) -> Result<Vec<DeliveryRow>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(&format!(
                "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries
                 WHERE project = ?1 AND (?2 IS NULL OR status = ?2) ORDER BY id DESC LIMIT ?3"
            ))
            .map_err(sql)?;
        let rows = stmt
            .query_map(params![project.0, status, limit as i64], delivery_row)
            .map_err(sql)?;
        rows.collect::<Result<_, _>>().map_err(sql)
    }

    /// Tasks of a project, oldest first, by status and (write-time keys of) customer.
    /// Tasks, oldest first, each with the completion time and chain of its firing (one
    /// query: the firing is joined, not read per task).
    pub fn tasks(
        &self,
        project: ProjectId,
        filter: &TaskFilter<'_>,
    ) -> Result<Vec<TaskListing>, StoreError> {
        let (clause, args) = filter.clause(project, true);
        let limit = filter.limit.map_or(-1, |l| l.min(i64::MAX as usize) as i64);
        let columns = TASK_COLUMNS
            .split(", ")
            .map(|c| format!("t.{c}"))
            .collect::<Vec<_>>()
            .join(", ");
        let mut stmt = self
            .conn
            .prepare(&format!(
                "SELECT {columns}, f.completed_at, f.chain FROM trigger_tasks t
                 LEFT JOIN trigger_firings f ON f.project = t.project AND f.id = t.firing
                 WHERE {clause} ORDER BY t.id LIMIT {limit}"
            ))
            .map_err(sql)?;
        let rows = stmt
            .query_map(rusqlite::params_from_iter(args.iter()), |r| {
                Ok(TaskListing {
                    task: task_row(r)?,
                    completed_at: r.get::<_, Option<i64>>(11)?.map(Timestamp::from_micros),
                    chain: r.get(12)?,
                })
            })
            .map_err(sql)?;
        rows.collect::<Result<_, _>>().map_err(sql)
    }

    /// How many tasks are in each state, under the filter's customers and time range (its
    /// status and limit do not apply); every state is present, sorted by name.
    pub fn task_counts(
        &self,
        project: ProjectId,
        filter: &TaskFilter<'_>,
    ) -> Result<BTreeMap<String, u64>, StoreError> {
        let (clause, args) = filter.clause(project, false);
        let mut out: BTreeMap<String, u64> = ["claimed", "done", "open"]
            .into_iter()
            .map(|s| (s.to_string(), 0))
            .collect();
        let mut stmt = self
            .conn
            .prepare(&format!(
                "SELECT t.status, COUNT(*) FROM trigger_tasks t WHERE {clause} GROUP BY t.status"
            ))
            .map_err(sql)?;
        let rows = stmt
            .query_map(rusqlite::params_from_iter(args.iter()), |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64))
            })
            .map_err(sql)?;
        for row in rows {
            let (status, n) = row.map_err(sql)?;
            out.insert(status, n);
        }
        Ok(out)
    }

    pub fn task(&self, project: ProjectId, id: i64) -> Result<Option<TaskRow>, StoreError> {
        self.conn
            .query_row(
                &format!("SELECT {TASK_COLUMNS} FROM trigger_tasks WHERE project = ?1 AND id = ?2"),
                params![project.0, id],
                task_row,
            )
            .optional()
            .map_err(sql)
    }

    /// Moves a task to `status` only from one of `from`; false when it was in none of them.
    pub fn update_task(
        &self,
        project: ProjectId,
        id: i64,
        from: &[&str],
        status: &str,
        agent: Option<&str>,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let from_json = serde_json::to_string(from).map_err(|e| StoreError::Meta(e.to_string()))?;
        let n = self
            .conn
            .execute(
                "UPDATE trigger_tasks SET status = ?3, agent = COALESCE(?4, agent), updated_at = ?5
                 WHERE project = ?1 AND id = ?2 AND status IN (SELECT value FROM json_each(?6))",
                params![project.0, id, status, agent, now.as_micros(), from_json],
            )
            .map_err(sql)?;
        Ok(n > 0)
    }

    /// Deletes every trigger row about `customers` (write-time keys): their evaluation
    /// states, firings, webhook deliveries and tasks. Returns how many rows went.
    pub fn erase_trigger_data(
        &mut self,
        project: ProjectId,
        customers: &[u64],
    ) -> Result<u64, StoreError> {
        let tx = self.conn.transaction().map_err(sql)?;
        let mut n = 0;
        for table in [
            "trigger_state",
            "trigger_firings",
            "webhook_deliveries",
            "trigger_tasks",
        ] {
            let mut stmt = tx
                .prepare_cached(&format!(
                    "DELETE FROM {table} WHERE project = ?1 AND customer = ?2"
                ))
                .map_err(sql)?;
            for &c in customers {
                n += stmt.execute(params![project.0, c as i64]).map_err(sql)? as u64;
            }
        }
        tx.commit().map_err(sql)?;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta() -> (tempfile::TempDir, Meta) {
        let dir = tempfile::tempdir().unwrap();
        let meta = Meta::open(&dir.path().join(crate::meta::META_FILE)).unwrap();
        meta.ensure_project(ProjectId::DEFAULT, "default", Timestamp::from_micros(0))
            .unwrap();
        (dir, meta)
    }

    fn write(customer: u64, firing: &str) -> TriggerWrite {
        let t = Timestamp::from_micros(5);
        let p = ProjectId::DEFAULT;
        TriggerWrite {
            project: p,
            rule: "r".into(),
            states: vec![TriggerStateRow {
                customer,
                state: "{}".into(),
                deadline: Some(Timestamp::from_micros(10)),
            }],
            merged: Vec::new(),
            firings: vec![FiringRow {
                project: p,
                id: firing.into(),
                rule: "r".into(),
                customer,
                completed_at: t,
                fired_at: t,
                chain: "[]".into(),
                emit: Some("[]".into()),
            }],
            deliveries: vec![DeliveryRow {
                id: 0,
                project: p,
                firing: firing.into(),
                rule: "r".into(),
                customer,
                url: "http://h/x".into(),
                secret: "whsec_x".into(),
                body: "{}".into(),
                status: "pending".into(),
                attempts: 0,
                next_attempt_at: Some(t),
                last_status: None,
                last_error: None,
                created_at: t,
                finished_at: None,
            }],
            tasks: vec![TaskRow {
                id: 0,
                project: p,
                firing: firing.into(),
                rule: "r".into(),
                customer,
                queue: "callback".into(),
                title: "call".into(),
                status: "open".into(),
                agent: None,
                created_at: t,
                updated_at: t,
            }],
        }
    }

    #[test]
    fn a_firing_and_its_actions_are_written_once() {
        let (_dir, mut meta) = meta();
        let t = Timestamp::from_micros(0);
        meta.put_trigger_rule(&TriggerRuleRow {
            project: ProjectId::DEFAULT,
            name: "r".into(),
            rule: "{}".into(),
            enabled: true,
            secret: "whsec_x".into(),
            created_at: t,
            updated_at: t,
        })
        .unwrap();
        assert_eq!(
            meta.write_triggers(&write(7, "fir_a")).unwrap(),
            vec!["fir_a"]
        );
        assert!(meta.write_triggers(&write(7, "fir_a")).unwrap().is_empty());
        let p = ProjectId::DEFAULT;
        assert_eq!(meta.deliveries(p, None, 10).unwrap().len(), 1);
        assert_eq!(meta.tasks(p, &TaskFilter::default()).unwrap().len(), 1);
        assert_eq!(
            meta.due_trigger_states(Timestamp::from_micros(11)).unwrap(),
            vec![(p, "r".to_string(), 7)]
        );
        assert_eq!(meta.pending_emits().unwrap().len(), 1);
        meta.mark_emitted(p, "fir_a").unwrap();
        assert!(meta.pending_emits().unwrap().is_empty());
        // A disabled rule's timers are not due.
        meta.set_trigger_rule_enabled(p, "r", false, t).unwrap();
        assert!(meta
            .due_trigger_states(Timestamp::from_micros(11))
            .unwrap()
            .is_empty());
    }

    #[test]
    fn deliveries_retry_then_dead_letter_and_tasks_move_forward_only() {
        let (_dir, mut meta) = meta();
        meta.write_triggers(&write(7, "fir_a")).unwrap();
        let p = ProjectId::DEFAULT;
        let now = Timestamp::from_micros(100);
        let d = meta.due_deliveries(now, 10).unwrap().remove(0);
        let retry = AttemptOutcome::Failed {
            status: Some(500),
            error: "server error".into(),
            retry_at: Some(Timestamp::from_micros(200)),
        };
        meta.record_delivery_attempt(d.id, &retry, now).unwrap();
        assert!(meta.due_deliveries(now, 10).unwrap().is_empty());
        assert_eq!(
            meta.next_delivery_at().unwrap(),
            Some(Timestamp::from_micros(200))
        );
        let dead = AttemptOutcome::Failed {
            status: None,
            error: "refused".into(),
            retry_at: None,
        };
        meta.record_delivery_attempt(d.id, &dead, now).unwrap();
        let log = meta.deliveries(p, Some("dead"), 10).unwrap();
        assert_eq!(
            (log[0].attempts, log[0].last_error.as_deref()),
            (2, Some("refused"))
        );

        let listed = meta
            .tasks(
                p,
                &TaskFilter {
                    status: Some("open"),
                    customers: Some(&[7]),
                    ..TaskFilter::default()
                },
            )
            .unwrap()
            .remove(0);
        assert!(listed.chain.is_some() && listed.completed_at.is_some());
        let t = listed.task;
        let counts = meta.task_counts(p, &TaskFilter::default()).unwrap();
        assert_eq!(counts.values().copied().collect::<Vec<_>>(), vec![0, 0, 1]);
        assert!(!meta
            .update_task(p, t.id, &["claimed"], "done", None, now)
            .unwrap());
        assert!(meta
            .update_task(p, t.id, &["open"], "claimed", Some("a-1"), now)
            .unwrap());
        assert!(meta
            .update_task(p, t.id, &["claimed"], "done", None, now)
            .unwrap());
        let t = meta.task(p, t.id).unwrap().unwrap();
        assert_eq!(
            (t.status.as_str(), t.agent.as_deref()),
            ("done", Some("a-1"))
        );
    }

    #[test]
    fn erasing_a_customer_removes_its_trigger_rows() {
        let (_dir, mut meta) = meta();
        meta.write_triggers(&write(7, "fir_a")).unwrap();
        meta.write_triggers(&write(8, "fir_b")).unwrap();
        let p = ProjectId::DEFAULT;
        assert_eq!(meta.erase_trigger_data(p, &[7]).unwrap(), 4);
        assert_eq!(meta.tasks(p, &TaskFilter::default()).unwrap().len(), 1);
        assert_eq!(meta.trigger_states(p, "r", &[7, 8]).unwrap().len(), 1);
    }
}
