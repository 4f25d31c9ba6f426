//! Journey triggers over HTTP (secret keys only): rules, their test and replay, the agent
//! task queue and the webhook delivery log. The wire side of `omnitrail_app::rules`; the
//! rule format is docs/triggers.md.

use crate::analyses::Params;
use crate::api::{blocking, secret};
use crate::error::{ApiError, ErrorBody};
use crate::Shared;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use omnitrail_app::rules::{RulesError, TaskAction, TaskQuery};
use omnitrail_app::AppError;
use serde::Deserialize;
use serde_json::Value;
use std::sync::Arc;
use utoipa::ToSchema;

/// Largest rule or test body.
const MAX_BODY: usize = 1024 * 1024;
/// Most deliveries one call lists.
const MAX_DELIVERIES: usize = 1000;
/// Most tasks one call lists.
const MAX_TASKS: usize = 1000;

/// Errors of the trigger API with their status; everything else as the app maps it.
fn rules_error(e: AppError) -> ApiError {
    match e {
        AppError::Rules(r) => match r {
            RulesError::NotFound { .. } | RulesError::TaskNotFound { .. } => {
                ApiError::not_found(r.to_string())
            }
            RulesError::TaskState { .. } => {
                ApiError::new(StatusCode::CONFLICT, "conflict", r.to_string())
            }
            RulesError::Range(_) => ApiError::invalid_query(r.to_string()),
            RulesError::Parse(_)
            | RulesError::NoEndpoint(_)
            | RulesError::BadEvent { .. }
            | RulesError::Config(_) => ApiError::bad_request("invalid_rule", r.to_string()),
        },
        other => other.into(),
    }
}

async fn body_json(headers: &HeaderMap, body: Body) -> Result<Value, ApiError> {
    let bytes = crate::body::read(body, headers, MAX_BODY).await?;
    serde_json::from_slice(&bytes).map_err(|e| {
        ApiError::bad_request("invalid_json", format!("the body is not valid JSON: {e}"))
    })
}

/// Whether the body is rule text (YAML, or JSON read by the YAML parser) rather than a
/// JSON document: `application/yaml`, `application/x-yaml`, `text/yaml`, `text/plain`.
fn is_rule_text(headers: &HeaderMap) -> bool {
    let Some(ct) = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    matches!(
        essence.as_str(),
        "application/yaml" | "application/x-yaml" | "text/yaml" | "text/x-yaml" | "text/plain"
    )
}

/// A rule body as text for the parser: YAML/plain text as sent (so the parser reports its
/// own line and field), a JSON body after checking it is JSON; a JSON string body is taken
/// as the rule's text.
async fn rule_text(headers: &HeaderMap, body: Body) -> Result<String, ApiError> {
    if is_rule_text(headers) {
        let bytes = crate::body::read(body, headers, MAX_BODY).await?;
        return String::from_utf8(bytes.to_vec()).map_err(|e| {
            ApiError::bad_request("invalid_rule", format!("the rule text is not UTF-8: {e}"))
        });
    }
    // A JSON string is rule text too (what a browser editor sends as typed).
    Ok(rule_field(&body_json(headers, body).await?))
}

/// `rule` of a JSON body: an object, or a string holding the rule's YAML or JSON text.
fn rule_field(rule: &Value) -> String {
    match rule {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

/// An optional RFC 3339 or epoch-seconds time of a replay body.
fn replay_time(
    field: &str,
    v: &Option<String>,
) -> Result<Option<omnitrail_model::Timestamp>, ApiError> {
    v.as_deref()
        .map(|t| {
            omnitrail_model::Timestamp::parse(t)
                .map_err(|e| ApiError::invalid_query(format!("{field}: {e}")))
        })
        .transpose()
}

fn to_json<T: serde::Serialize>(v: &T) -> Result<Value, ApiError> {
    serde_json::to_value(v).map_err(|e| ApiError::internal(&e))
}

/// `{rule, events}` of a rule test.
#[derive(Deserialize, ToSchema)]
pub struct RuleTestBody {
    /// The rule, as in `POST /api/v1/rules`: an object, or a string holding its YAML or
    /// JSON text.
    #[schema(value_type = Object)]
    pub rule: Value,
    /// Canonical events, taken as one customer's history.
    #[schema(value_type = Vec<Object>)]
    pub events: Vec<Value>,
}

/// `{from, to}` of a replay; RFC 3339 or epoch seconds, both optional.
#[derive(Deserialize, ToSchema, Default)]
pub struct RuleReplayBody {
    pub from: Option<String>,
    pub to: Option<String>,
}

/// `{rule, from, to}` of a draft's replay: the rule as an object or as YAML/JSON text.
#[derive(Deserialize, ToSchema)]
pub struct DraftReplayBody {
    #[schema(value_type = Object)]
    pub rule: Value,
    pub from: Option<String>,
    pub to: Option<String>,
}

/// A task change: `claim` (needs `agent`), `done` or `reopen`.
#[derive(Deserialize, ToSchema)]
pub struct TaskPatchBody {
    pub action: String,
    pub agent: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/rules", tag = "triggers",
    responses((status = 200, description = "The project's rules, by name: [{name, enabled, rule, secret, created_at, updated_at}]", body = Vec<Object>),
              (status = 401, description = "No or unknown key", body = ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn list(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let caller = secret(&shared, &headers).await?;
    blocking(&shared, move |app| {
        to_json(&app.rules(caller.project).map_err(rules_error)?)
    })
    .await
    .map(Json)
}

#[utoipa::path(post, path = "/api/v1/rules", tag = "triggers",
    request_body(description = "A rule (docs/triggers.md): a JSON object; a JSON string holding the rule's YAML or JSON text; or that text itself with content-type application/yaml, text/yaml or text/plain. A rule of the same name is replaced",
        content((Object = "application/json"), (String = "application/yaml"), (String = "text/yaml"), (String = "text/plain"))),
    responses((status = 201, description = "Created", body = Object),
              (status = 200, description = "Replaced", body = Object),
              (status = 400, description = "The rule is invalid: the message names the line (malformed text) or the field path (a bad value)", body = ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn create(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let caller = secret(&shared, &headers).await?;
    let rule = rule_text(&headers, body).await?;
    let (info, created) = blocking(&shared, move |app| {
        app.add_rule(caller.project, &rule).map_err(rules_error)
    })
    .await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(to_json(&info)?)).into_response())
}

#[utoipa::path(get, path = "/api/v1/rules/{name}", tag = "triggers",
    params(("name" = String, Path, description = "The rule's name")),
    responses((status = 200, description = "The rule", body = Object),
              (status = 404, description = "No such rule", body = ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn get_one(
    State(shared): State<Arc<Shared>>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let caller = secret(&shared, &headers).await?;
    blocking(&shared, move |app| {
        to_json(&app.rule(caller.project, &name).map_err(rules_error)?)
    })
    .await
    .map(Json)
}

async fn set_enabled(
    shared: Arc<Shared>,
    name: String,
    headers: HeaderMap,
    enabled: bool,
) -> Result<Json<Value>, ApiError> {
    let caller = secret(&shared, &headers).await?;
    blocking(&shared, move |app| {
        to_json(
            &app.set_rule_enabled(caller.project, &name, enabled)
                .map_err(rules_error)?,
        )
    })
    .await
    .map(Json)
}

#[utoipa::path(post, path = "/api/v1/rules/{name}/disable", tag = "triggers",
    params(("name" = String, Path, description = "The rule's name")),
    responses((status = 200, description = "The rule, now disabled", body = Object),
              (status = 404, description = "No such rule", body = ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn disable(
    State(shared): State<Arc<Shared>>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    set_enabled(shared, name, headers, false).await
}

#[utoipa::path(post, path = "/api/v1/rules/{name}/enable", tag = "triggers",
    params(("name" = String, Path, description = "The rule's name")),
    responses((status = 200, description = "The rule, now enabled", body = Object),
              (status = 404, description = "No such rule", body = ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn enable(
    State(shared): State<Arc<Shared>>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    set_enabled(shared, name, headers, true).await
}

#[utoipa::path(post, path = "/api/v1/rules/test", tag = "triggers",
    request_body(content = RuleTestBody, description = "The rule (object or YAML/JSON text) and the events to test it on"),
    responses((status = 200, description = "What would fire: {firings: [{id, completed_at, steps}]}; nothing is stored or sent", body = Object),
              (status = 400, description = "The rule or an event is invalid", body = ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn test(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    secret(&shared, &headers).await?;
    let body: RuleTestBody = serde_json::from_value(body_json(&headers, body).await?)
        .map_err(|e| ApiError::bad_request("invalid_payload", e.to_string()))?;
    blocking(&shared, move |app| {
        let firings = app
            .test_rule(&rule_field(&body.rule), &body.events)
            .map_err(rules_error)?;
        Ok(serde_json::json!({ "firings": to_json(&firings)? }))
    })
    .await
    .map(Json)
}

#[utoipa::path(post, path = "/api/v1/rules/{name}/replay", tag = "triggers",
    params(("name" = String, Path, description = "The rule's name")),
    request_body = RuleReplayBody,
    responses((status = 200, description = "How often and for whom the rule would have fired: {rule, from, to, events_read, customers, firings, fired}", body = Object),
              (status = 404, description = "No such rule", body = ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn replay(
    State(shared): State<Arc<Shared>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let caller = secret(&shared, &headers).await?;
    let bytes = crate::body::read(body, &headers, MAX_BODY).await?;
    let range: RuleReplayBody = if bytes.is_empty() {
        RuleReplayBody::default()
    } else {
        serde_json::from_slice(&bytes)
            .map_err(|e| ApiError::bad_request("invalid_payload", e.to_string()))?
    };
    let from = replay_time("from", &range.from)?;
    let to = replay_time("to", &range.to)?;
    blocking(&shared, move |app| {
        to_json(
            &app.replay_rule(caller.project, &name, from, to)
                .map_err(rules_error)?,
        )
    })
    .await
    .map(Json)
}

#[utoipa::path(post, path = "/api/v1/rules/replay", tag = "triggers",
    request_body = DraftReplayBody,
    responses((status = 200, description = "As /rules/{name}/replay, for a rule that is not saved: {rule, from, to, events_read, customers, firings, fired}; nothing is stored or sent", body = Object),
              (status = 400, description = "The rule is invalid (line or field named) or the range is", body = ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn replay_draft(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let caller = secret(&shared, &headers).await?;
    let body: DraftReplayBody = serde_json::from_value(body_json(&headers, body).await?)
        .map_err(|e| ApiError::bad_request("invalid_payload", e.to_string()))?;
    let from = replay_time("from", &body.from)?;
    let to = replay_time("to", &body.to)?;
    let rule = rule_field(&body.rule);
    blocking(&shared, move |app| {
        to_json(
            &app.replay_draft(caller.project, &rule, from, to)
                .map_err(rules_error)?,
        )
    })
    .await
    .map(Json)
}

#[utoipa::path(get, path = "/api/v1/tasks", tag = "triggers",
    params(("status" = Option<String>, Query, description = "open, claimed or done"),
           ("customer" = Option<String>, Query, description = "Only this customer's tasks (any identifier, as for the customer view)"),
           ("from" = Option<String>, Query, description = "Only tasks created at or after (RFC 3339 or epoch seconds)"),
           ("to" = Option<String>, Query, description = "Only tasks created before"),
           ("limit" = Option<usize>, Query, description = "Most tasks, oldest first (default 100, at most 1000)")),
    responses((status = 200, description = "Agent tasks, oldest first, and the counts per state under the customer and time filters (not status or limit): {counts: {open, claimed, done}, tasks: [{id, queue, title, status, agent, rule, firing, customer_id, customer_label, completed_at, steps: [{step, activity, channel, timestamp}], created_at, updated_at}]}", body = Object),
              (status = 400, description = "Bad parameters", body = ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn tasks(
    State(shared): State<Arc<Shared>>,
    Query(pairs): Query<Vec<(String, String)>>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let caller = secret(&shared, &headers).await?;
    let p = Params::from_pairs(pairs);
    const KNOWN: [&str; 5] = ["status", "customer", "from", "to", "limit"];
    if let Some((name, _)) = p.unknown(&KNOWN).first() {
        return Err(ApiError::invalid_query(format!(
            "unknown parameter '{name}' (expected {})",
            KNOWN.join(", ")
        )));
    }
    let status = p.list("status").into_iter().next();
    if let Some(s) = &status {
        if !["open", "claimed", "done"].contains(&s.as_str()) {
            return Err(ApiError::invalid_query(format!(
                "status: '{s}' is not open, claimed or done"
            )));
        }
    }
    let customer = p.list("customer").into_iter().next();
    let from = replay_time("from", &p.one("from")?)?;
    let to = replay_time("to", &p.one("to")?)?;
    let limit: usize = p.parse("limit")?.unwrap_or(100);
    if limit > MAX_TASKS {
        return Err(ApiError::invalid_query(format!(
            "limit: at most {MAX_TASKS}"
        )));
    }
    blocking(&shared, move |app| {
        let query = TaskQuery {
            status: status.as_deref(),
            customer: customer.as_deref(),
            from,
            to,
            limit: Some(limit),
        };
        to_json(&app.tasks(caller.project, &query).map_err(rules_error)?)
    })
    .await
    .map(Json)
}

#[utoipa::path(patch, path = "/api/v1/tasks/{id}", tag = "triggers",
    params(("id" = i64, Path, description = "The task's id")),
    request_body = TaskPatchBody,
    responses((status = 200, description = "The task after the change", body = Object),
              (status = 404, description = "No such task", body = ErrorBody),
              (status = 409, description = "The task is not in a state that allows the change", body = ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn patch_task(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<i64>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let caller = secret(&shared, &headers).await?;
    let body: TaskPatchBody = serde_json::from_value(body_json(&headers, body).await?)
        .map_err(|e| ApiError::bad_request("invalid_payload", e.to_string()))?;
    let action = match body.action.as_str() {
        "claim" => TaskAction::Claim,
        "done" => TaskAction::Done,
        "reopen" => TaskAction::Reopen,
        other => {
            return Err(ApiError::bad_request(
                "invalid_payload",
                format!("action: '{other}' is not claim, done or reopen"),
            ))
        }
    };
    if action == TaskAction::Claim && body.agent.as_deref().is_none_or(|a| a.trim().is_empty()) {
        return Err(ApiError::bad_request(
            "invalid_payload",
            "agent: a claim names the agent who takes the task",
        ));
    }
    blocking(&shared, move |app| {
        to_json(
            &app.update_task(caller.project, id, action, body.agent.as_deref())
                .map_err(rules_error)?,
        )
    })
    .await
    .map(Json)
}

#[utoipa::path(get, path = "/api/v1/webhook-deliveries", tag = "triggers",
    params(("status" = Option<String>, Query, description = "pending, delivered or dead"),
           ("limit" = Option<usize>, Query, description = "Most entries, newest first (default 100, at most 1000)")),
    responses((status = 200, description = "The webhook delivery log: [{id, rule, firing, customer_id, url, status, attempts, next_attempt_at, last_status, last_error, created_at, finished_at}]", body = Vec<Object>)),
    security(("bearer" = [])))]
pub(crate) async fn deliveries(
    State(shared): State<Arc<Shared>>,
    Query(pairs): Query<Vec<(String, String)>>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let caller = secret(&shared, &headers).await?;
    let p = Params::from_pairs(pairs);
    if let Some((name, _)) = p.unknown(&["status", "limit"]).first() {
        return Err(ApiError::invalid_query(format!(
            "unknown parameter '{name}' (expected status, limit)"
        )));
    }
    let status = p.list("status").into_iter().next();
    let limit: usize = p.parse("limit")?.unwrap_or(100);
    if limit > MAX_DELIVERIES {
        return Err(ApiError::invalid_query(format!(
            "limit: at most {MAX_DELIVERIES}"
        )));
    }
    blocking(&shared, move |app| {
        to_json(
            &app.deliveries(caller.project, status.as_deref(), limit)
                .map_err(rules_error)?,
        )
    })
    .await
    .map(Json)
}
