//! The query API under `/api/v1` (secret keys only), plus `/healthz`, `/metrics` and
//! `/openapi.json`. Every call into the app runs on a blocking thread.

use crate::analyses::{self, Params};
use crate::auth;
use crate::dto::{
    CreatedKeyInfo, DeadLetterInfo, DeadLetterPage, EditNoteBody, Health, ImportInfo, KeyInfo,
    NewKey, NewNoteBody, NoteInfo, ReplayBody, ReplayOneBody, ReplayResult, StatsInfo,
};
use crate::error::{ApiError, ErrorBody};
use crate::openapi::{AnalysisCatalog, CustomerView};
use crate::segment::{self, Call, Mapped};
use crate::Shared;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use omnitrail_app::customer::TimelineQuery;
use omnitrail_app::dead_letters::{canonical_event, Recovered, ReplayItem};
use omnitrail_app::keys::{Authenticated, KeyKind};
use omnitrail_app::{App, NewNote};
use omnitrail_model::ValidationError;
use omnitrail_store::DeadLetter;
use serde_json::Value;
use std::sync::Arc;

/// Largest JSON body of a query API call.
const MAX_API_BODY: usize = 1024 * 1024;
/// Most dead letters one page lists.
const MAX_PAGE: usize = 1000;

type QueryPairs = Query<Vec<(String, String)>>;

/// Runs `f` with the app on a blocking thread, once one of the query slots is free.
pub(crate) async fn blocking<T: Send + 'static>(
    shared: &Arc<Shared>,
    f: impl FnOnce(&App) -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    let permit = shared
        .query_permits
        .clone()
        .acquire_owned()
        .await
        .map_err(|e| ApiError::internal(&e))?;
    let app = shared.app.clone();
    let _running = Running::new(shared);
    tokio::task::spawn_blocking(move || {
        let result = f(&app);
        drop(permit);
        result
    })
    .await?
}

/// Counts a query as running for as long as it lives (also when the client goes away and
/// the request's future is dropped).
struct Running(Arc<Shared>);

impl Running {
    fn new(shared: &Arc<Shared>) -> Running {
        shared.metrics.queries_running.inc();
        Running(shared.clone())
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.0.metrics.queries_running.dec();
    }
}

/// The caller, who must hold a secret key.
pub(crate) async fn secret(
    shared: &Arc<Shared>,
    headers: &HeaderMap,
) -> Result<Authenticated, ApiError> {
    let key = auth::header_key(headers).ok_or_else(|| auth::missing_key(false))?;
    auth::require_secret(shared.keys.authenticate(&shared.app, &key).await?)
}

async fn json_body<T: serde::de::DeserializeOwned>(
    headers: &HeaderMap,
    body: Body,
) -> Result<T, ApiError> {
    let bytes: Bytes = crate::body::read(body, headers, MAX_API_BODY).await?;
    serde_json::from_slice(&bytes).map_err(|e| {
        use serde_json::error::Category;
        match e.classify() {
            Category::Data => ApiError::bad_request("invalid_payload", e.to_string()),
            _ => ApiError::bad_request("invalid_json", format!("the body is not valid JSON: {e}")),
        }
    })
}

#[utoipa::path(get, path = "/healthz", tag = "ops",
    responses((status = 200, description = "The server is up", body = Health)))]
pub(crate) async fn healthz() -> Json<Health> {
    Json(Health {
        status: "ok".to_string(),
        version: env!("CARGO_PKG_VERSION").to_string(),
    })
}

#[utoipa::path(get, path = "/metrics", tag = "ops",
    responses((status = 200, description = "Prometheus metrics in the OpenMetrics text format (names in docs/http-api.md)", body = String, content_type = "application/openmetrics-text")))]
pub(crate) async fn metrics(State(shared): State<Arc<Shared>>) -> Response {
    let app = shared.app.clone();
    // Walking the data dir for its size is file-system work: off the async threads.
    let (bytes, (backlog, _)) =
        tokio::task::spawn_blocking(move || (app.store().storage_bytes(), app.ingest_backlog()))
            .await
            .unwrap_or((0, (0, 0)));
    let m = &shared.metrics;
    m.store_bytes.set(bytes as i64);
    m.backlog_events.set(backlog as i64);
    m.key_cache_entries.set(shared.keys.len() as i64);
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        m.encode(),
    )
        .into_response()
}

#[utoipa::path(get, path = "/openapi.json", tag = "ops",
    responses((status = 200, description = "This document", body = Object)))]
pub(crate) async fn openapi_document() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        crate::openapi::openapi_json(),
    )
        .into_response()
}

pub(crate) async fn not_found() -> ApiError {
    ApiError::not_found("no such endpoint; the API is described at /openapi.json")
}

#[utoipa::path(get, path = "/api/v1/customers/{id}", tag = "customers",
    params(
        ("id" = String, Path, description = "Any identifier: kind:value (email:ana@example.com), a bare value tried in every kind's normal form (a phone as heard), or a customer id (c42). URL-encoded."),
        ("channel" = Option<Vec<String>>, Query, description = "Only events of these channels in the timeline (repeatable)."),
        ("from" = Option<String>, Query, description = "Timeline from this time (inclusive)."),
        ("to" = Option<String>, Query, description = "Timeline up to this time (exclusive)."),
        ("offset" = Option<usize>, Query, description = "Timeline entries to skip, newest first (default 0)."),
        ("limit" = Option<usize>, Query, description = "Timeline entries to show (default 50)."),
    ),
    responses(
        (status = 200, description = "The customer view", body = CustomerView),
        (status = 400, description = "Bad parameters or an identifier matching several customers", body = ErrorBody),
        (status = 404, description = "No customer has the identifier", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub(crate) async fn customer(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    Query(pairs): QueryPairs,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let caller = secret(&shared, &headers).await?;
    let p = Params::from_pairs(pairs);
    if let Some((name, _)) = p
        .unknown(&["channel", "from", "to", "offset", "limit"])
        .first()
    {
        return Err(ApiError::invalid_query(format!(
            "unknown parameter '{name}' (expected channel, from, to, offset, limit)"
        )));
    }
    let query = TimelineQuery {
        channels: p.list("channel"),
        from: p.time("from")?,
        to: p.time("to")?,
        offset: p.parse("offset")?.unwrap_or(0),
        limit: p.parse("limit")?.unwrap_or(50),
    };
    blocking(&shared, move |app| {
        let view = app.customer(caller.project, &id, &query)?;
        serde_json::to_value(&view).map_err(|e| ApiError::internal(&e))
    })
    .await
    .map(Json)
}

#[utoipa::path(get, path = "/api/v1/customers/{id}/notes", tag = "customers",
    params(("id" = String, Path, description = "The customer, by any identifier (as for the customer view).")),
    responses(
        (status = 200, description = "The customer's notes, oldest first", body = Vec<NoteInfo>),
        (status = 404, description = "No customer has the identifier", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub(crate) async fn notes(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Json<Vec<NoteInfo>>, ApiError> {
    let caller = secret(&shared, &headers).await?;
    blocking(&shared, move |app| {
        Ok(app
            .notes(caller.project, &id)?
            .iter()
            .map(NoteInfo::from)
            .collect())
    })
    .await
    .map(Json)
}

#[utoipa::path(post, path = "/api/v1/customers/{id}/notes", tag = "customers",
    params(("id" = String, Path, description = "The customer, by any identifier.")),
    request_body = NewNoteBody,
    responses(
        (status = 201, description = "The note, stored", body = NoteInfo),
        (status = 400, description = "Empty text or a bad body", body = ErrorBody),
        (status = 404, description = "No customer has the identifier", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub(crate) async fn add_note(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<NoteInfo>), ApiError> {
    let caller = secret(&shared, &headers).await?;
    let new: NewNoteBody = json_body(&headers, body).await?;
    blocking(&shared, move |app| {
        let note = app.add_note(
            caller.project,
            &id,
            NewNote {
                author: new.author.unwrap_or_else(|| "agent".to_string()),
                text: new.text,
                topic: new.topic,
                event: new.event,
            },
        )?;
        Ok((StatusCode::CREATED, Json(NoteInfo::from(&note))))
    })
    .await
}

#[utoipa::path(patch, path = "/api/v1/notes/{id}", tag = "customers",
    params(("id" = i64, Path, description = "The note's id.")),
    request_body = EditNoteBody,
    responses(
        (status = 200, description = "The note as edited", body = NoteInfo),
        (status = 404, description = "The project has no such note", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub(crate) async fn edit_note(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<i64>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<NoteInfo>, ApiError> {
    let caller = secret(&shared, &headers).await?;
    let edit: EditNoteBody = json_body(&headers, body).await?;
    blocking(&shared, move |app| {
        let note = app.edit_note(caller.project, id, &edit.text, edit.topic.as_deref())?;
        Ok(Json(NoteInfo::from(&note)))
    })
    .await
}

#[utoipa::path(get, path = "/api/v1/analyses", tag = "analyses",
    responses((status = 200, description = "Every analysis with its parameters", body = AnalysisCatalog)),
    security(("bearer" = [])))]
pub(crate) async fn analysis_list(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    secret(&shared, &headers).await?;
    Ok(Json(crate::openapi::catalog()))
}

/// `GET /api/v1/analyses/{name}`; each analysis has its own documented path.
pub(crate) async fn analysis_get(
    State(shared): State<Arc<Shared>>,
    Path(name): Path<String>,
    Query(pairs): QueryPairs,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let caller = secret(&shared, &headers).await?;
    run_analysis(&shared, caller, &name, Params::from_pairs(pairs)).await
}

/// `POST /api/v1/analyses/{name}` with the parameters as a JSON object.
pub(crate) async fn analysis_post(
    State(shared): State<Arc<Shared>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let caller = secret(&shared, &headers).await?;
    let body: Value = json_body(&headers, body).await?;
    run_analysis(&shared, caller, &name, Params::from_json(&body)?).await
}

async fn run_analysis(
    shared: &Arc<Shared>,
    caller: Authenticated,
    name: &str,
    mut params: Params,
) -> Result<Json<Value>, ApiError> {
    let analysis = analyses::find(name).ok_or_else(|| {
        ApiError::not_found(format!(
            "no analysis is called '{name}' (there are: {})",
            analyses::ANALYSES
                .iter()
                .map(|a| a.name)
                .collect::<Vec<_>>()
                .join(", ")
        ))
    })?;
    let query = params.query_options(analysis)?;
    blocking(shared, move |app| {
        (analysis.run)(app, caller.project, &query, &mut params)
    })
    .await
    .map(Json)
}

#[utoipa::path(get, path = "/api/v1/stats", tag = "data",
    responses((status = 200, description = "What the caller's project holds", body = StatsInfo)),
    security(("bearer" = [])))]
pub(crate) async fn stats(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
) -> Result<Json<StatsInfo>, ApiError> {
    let caller = secret(&shared, &headers).await?;
    blocking(&shared, move |app| {
        Ok(Json(StatsInfo::from(&app.stats(caller.project)?)))
    })
    .await
}

#[utoipa::path(get, path = "/api/v1/dead-letters", tag = "data",
    params(
        ("after" = Option<i64>, Query, description = "List letters with a larger id (paging; default 0)."),
        ("limit" = Option<usize>, Query, description = "Letters per page (default 100, at most 1000)."),
        ("include_replayed" = Option<bool>, Query, description = "Also list letters already replayed."),
    ),
    responses((status = 200, description = "Dead letters, oldest first", body = DeadLetterPage)),
    security(("bearer" = [])))]
pub(crate) async fn dead_letters(
    State(shared): State<Arc<Shared>>,
    Query(pairs): QueryPairs,
    headers: HeaderMap,
) -> Result<Json<DeadLetterPage>, ApiError> {
    let caller = secret(&shared, &headers).await?;
    let p = Params::from_pairs(pairs);
    if let Some((name, _)) = p.unknown(&["after", "limit", "include_replayed"]).first() {
        return Err(ApiError::invalid_query(format!(
            "unknown parameter '{name}' (expected after, limit, include_replayed)"
        )));
    }
    let after: i64 = p.parse("after")?.unwrap_or(0);
    let limit = p.parse::<usize>("limit")?.unwrap_or(100).clamp(1, MAX_PAGE);
    let include_replayed = p.flag("include_replayed")?;
    blocking(&shared, move |app| {
        let letters: Vec<DeadLetterInfo> = app
            .dead_letters(caller.project, after, limit, include_replayed)?
            .iter()
            .map(DeadLetterInfo::from)
            .collect();
        let next_after = (letters.len() == limit)
            .then(|| letters.last().map(|l| l.id))
            .flatten();
        Ok(Json(DeadLetterPage {
            letters,
            next_after,
        }))
    })
    .await
}

/// Turns a dead letter back into events: Segment messages through the Segment mapping (at
/// their original receive time), everything else as a canonical event.
fn recover(letter: &DeadLetter) -> Result<Vec<Recovered>, ValidationError> {
    let Some(endpoint) = letter.source.strip_prefix("segment:") else {
        return canonical_event(letter);
    };
    let msg: Value = serde_json::from_str(&letter.payload).map_err(|e| {
        ValidationError::new(
            "payload",
            format!("is not JSON ({e}); replay it with a corrected payload"),
        )
    })?;
    let Value::Object(msg) = msg else {
        return Err(ValidationError::new("payload", "expected a JSON object"));
    };
    let call = endpoint.strip_prefix("/v1/").and_then(Call::parse);
    match segment::map_message(&msg, call, letter.received_at)? {
        Mapped::Event(e) => Ok(vec![Recovered::Event(e)]),
        Mapped::Link { identifiers, at } => Ok(vec![Recovered::Link {
            source: omnitrail_identity::Source::Alias,
            identifiers,
            at,
        }]),
        Mapped::Skipped => Err(ValidationError::new(
            "integrations",
            "turn Omnitrail off for this message",
        )),
    }
}

#[utoipa::path(post, path = "/api/v1/dead-letters/replay", tag = "data",
    request_body = ReplayBody,
    responses((status = 200, description = "What was replayed; letters that still fail stay, with the reason", body = ReplayResult)),
    security(("bearer" = [])))]
pub(crate) async fn replay(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<ReplayResult>, ApiError> {
    let caller = secret(&shared, &headers).await?;
    let request: ReplayBody = json_body(&headers, body).await?;
    let items: Vec<ReplayItem> = request
        .ids
        .into_iter()
        .map(|id| ReplayItem { id, payload: None })
        .collect();
    blocking(&shared, move |app| {
        Ok(Json(
            app.replay_dead_letters(caller.project, &items, &recover)?
                .into(),
        ))
    })
    .await
}

#[utoipa::path(post, path = "/api/v1/dead-letters/{id}/replay", tag = "data",
    params(("id" = i64, Path, description = "The dead letter's id.")),
    request_body = ReplayOneBody,
    responses((status = 200, description = "What was replayed", body = ReplayResult)),
    security(("bearer" = [])))]
pub(crate) async fn replay_one(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<i64>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<ReplayResult>, ApiError> {
    let caller = secret(&shared, &headers).await?;
    let request: ReplayOneBody = json_body(&headers, body).await?;
    let item = ReplayItem {
        id,
        payload: request.payload.map(|p| p.to_string()),
    };
    blocking(&shared, move |app| {
        Ok(Json(
            app.replay_dead_letters(caller.project, &[item], &recover)?
                .into(),
        ))
    })
    .await
}

#[utoipa::path(get, path = "/api/v1/imports", tag = "data",
    responses((status = 200, description = "File imports into the project, oldest first", body = Vec<ImportInfo>)),
    security(("bearer" = [])))]
pub(crate) async fn imports(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
) -> Result<Json<Vec<ImportInfo>>, ApiError> {
    let caller = secret(&shared, &headers).await?;
    blocking(&shared, move |app| {
        Ok(Json(
            app.imports(caller.project)?
                .iter()
                .map(ImportInfo::from)
                .collect(),
        ))
    })
    .await
}

#[utoipa::path(get, path = "/api/v1/keys", tag = "keys",
    responses((status = 200, description = "The project's keys (never the keys themselves)", body = Vec<KeyInfo>)),
    security(("bearer" = [])))]
pub(crate) async fn keys(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
) -> Result<Json<Vec<KeyInfo>>, ApiError> {
    let caller = secret(&shared, &headers).await?;
    blocking(&shared, move |app| {
        Ok(Json(
            app.keys(Some(caller.project))?
                .iter()
                .map(KeyInfo::from)
                .collect(),
        ))
    })
    .await
}

#[utoipa::path(post, path = "/api/v1/keys", tag = "keys",
    request_body = NewKey,
    responses(
        (status = 201, description = "The new key, shown this once", body = CreatedKeyInfo),
        (status = 400, description = "A bad kind", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub(crate) async fn create_key(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<CreatedKeyInfo>), ApiError> {
    let caller = secret(&shared, &headers).await?;
    let new: NewKey = json_body(&headers, body).await?;
    let kind = KeyKind::parse(&new.kind)?;
    blocking(&shared, move |app| {
        let project = app
            .keys(Some(caller.project))?
            .into_iter()
            .find(|k| k.id == caller.key_id)
            .map(|k| k.project_name)
            .ok_or_else(|| ApiError::unauthorized("the API key is unknown or revoked"))?;
        let created = app.create_key(&project, kind, &new.name)?;
        Ok((StatusCode::CREATED, Json(CreatedKeyInfo::from(&created))))
    })
    .await
}

#[utoipa::path(delete, path = "/api/v1/keys/{key}", tag = "keys",
    params(("key" = String, Path, description = "The key's id or public prefix.")),
    responses(
        (status = 200, description = "The key, now revoked (within the key cache time everywhere)", body = KeyInfo),
        (status = 404, description = "The project has no such key", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub(crate) async fn revoke_key(
    State(shared): State<Arc<Shared>>,
    Path(which): Path<String>,
    headers: HeaderMap,
) -> Result<Json<KeyInfo>, ApiError> {
    let caller = secret(&shared, &headers).await?;
    blocking(&shared, move |app| {
        Ok(Json(KeyInfo::from(
            &app.revoke_key(Some(caller.project), &which)?,
        )))
    })
    .await
}
