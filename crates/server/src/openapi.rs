//! The OpenAPI document, generated from the code: the handlers' `#[utoipa::path]`
//! annotations, the DTOs' schemas, and one path per analysis built from the analysis
//! registry. `docs/openapi.json` is a copy checked by a test; regenerate it with
//! `omnitrail openapi > docs/openapi.json` (or `UPDATE_OPENAPI=1 cargo test -p
//! omnitrail-server --test openapi`).
//!
//! The customer view and analysis results are the app's own JSON (docs/api-json.md, the
//! README's `customer --format json`); they are documented here as generic objects that
//! point there instead of being mirrored field by field (docs/http-api.md says why).

use crate::analyses::{Analysis, ParamType, ANALYSES, COMMON};
use crate::{api, collect, dto, error, privacy, rules};
use serde_json::{json, Value};
use std::borrow::Cow;
use utoipa::openapi::path::{HttpMethod, OperationBuilder, ParameterBuilder, ParameterIn};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, Schema, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{Content, Ref, RefOr, Required};
use utoipa::{Modify, OpenApi, PartialSchema, ToSchema};

fn free_object(description: &str) -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::Object)
        .description(Some(description))
        .additional_properties(Some(
            utoipa::openapi::schema::AdditionalProperties::<Schema>::FreeForm(true),
        ))
        .into()
}

/// The customer view, as `omnitrail customer --format json` prints it.
pub struct CustomerView;

impl PartialSchema for CustomerView {
    fn schema() -> RefOr<Schema> {
        free_object(
            "The customer view: {customer_id, summary, identifiers, links, traits, first_seen, last_seen, \
             events, channels, lifecycle, purchases, total_value, issues, friction, notes, timeline}; \
             the same JSON as `omnitrail customer --format json`, field by field in the README (\"JSON output\") \
             and docs/http-api.md. Times are µs since the Unix epoch.",
        )
    }
}

impl ToSchema for CustomerView {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("CustomerView")
    }
}

/// An analysis result: each analysis's JSON is described in docs/api-json.md.
pub struct AnalysisResult;

impl PartialSchema for AnalysisResult {
    fn schema() -> RefOr<Schema> {
        free_object(
            "The analysis's result, the same JSON as the CLI's `--format json`; each analysis's shape \
             is in docs/api-json.md (the operation's description names the section).",
        )
    }
}

impl ToSchema for AnalysisResult {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("AnalysisResult")
    }
}

/// The list of analyses and their parameters.
pub struct AnalysisCatalog;

impl PartialSchema for AnalysisCatalog {
    fn schema() -> RefOr<Schema> {
        free_object(
            "{analyses: [{name, summary, path, doc, parameters: [{name, type, required, description}]}]}",
        )
    }
}

impl ToSchema for AnalysisCatalog {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("AnalysisCatalog")
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Omnitrail",
        description = "Customer journey analytics: collectors (native and Segment-compatible) and the query API. \
                       Described in docs/http-api.md; errors are always {code, message}."
    ),
    paths(
        collect::events,
        collect::track,
        collect::identify,
        collect::page,
        collect::screen,
        collect::group,
        collect::alias,
        collect::batch,
        collect::import,
        api::healthz,
        api::metrics,
        api::openapi_document,
        api::customer,
        api::notes,
        api::add_note,
        api::edit_note,
        api::analysis_list,
        api::stats,
        api::dead_letters,
        api::replay,
        api::replay_one,
        api::imports,
        api::keys,
        api::create_key,
        api::revoke_key,
        privacy::erase,
        privacy::suppressions,
        privacy::lift,
        privacy::audit,
        rules::list,
        rules::create,
        rules::get_one,
        rules::disable,
        rules::enable,
        rules::test,
        rules::replay,
        rules::replay_draft,
        rules::tasks,
        rules::patch_task,
        rules::deliveries,
    ),
    components(schemas(
        error::ErrorBody,
        dto::IngestReceipt,
        dto::RejectedItem,
        dto::Health,
        dto::KeyInfo,
        dto::CreatedKeyInfo,
        dto::NewKey,
        dto::NoteInfo,
        dto::NewNoteBody,
        dto::EditNoteBody,
        dto::DeadLetterInfo,
        dto::DeadLetterPage,
        dto::ReplayBody,
        dto::ReplayOneBody,
        dto::ReplayFailureInfo,
        dto::ReplayResult,
        dto::ImportInfo,
        dto::NamedCount,
        dto::StatsInfo,
        privacy::EraseReceiptInfo,
        privacy::EraseCountsInfo,
        privacy::SuppressionInfo,
        privacy::LiftResult,
        privacy::AuditEntryInfo,
        rules::RuleTestBody,
        rules::RuleReplayBody,
        rules::DraftReplayBody,
        rules::TaskPatchBody,
        CustomerView,
        AnalysisResult,
        AnalysisCatalog,
    )),
    modifiers(&SecuritySchemes, &AnalysisPaths),
    tags(
        (name = "collect", description = "Native collector: canonical events"),
        (name = "segment", description = "Segment HTTP Tracking API"),
        (name = "customers", description = "The customer view and agent notes"),
        (name = "analyses", description = "Journey analyses"),
        (name = "data", description = "Stats, dead letters, imports"),
        (name = "keys", description = "API keys of the caller's project"),
        (name = "privacy", description = "Erasure, suppressions and the audit log"),
        (name = "triggers", description = "Journey trigger rules, agent tasks and the webhook delivery log"),
        (name = "ops", description = "Health, metrics, this document"),
    )
)]
struct ApiDoc;

struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "An API key: a secret key (ots_…) for /api/v1, a write or secret key for the collectors",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "basic",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Basic)
                    .description(Some(
                        "The write key as user name, empty password (how Segment SDKs send it)",
                    ))
                    .build(),
            ),
        );
    }
}

/// One GET and one POST path per registered analysis.
struct AnalysisPaths;

fn param_schema(kind: ParamType) -> RefOr<Schema> {
    let scalar = |t: Type| -> Schema { ObjectBuilder::new().schema_type(t).build().into() };
    match kind {
        ParamType::String => scalar(Type::String).into(),
        ParamType::Integer => scalar(Type::Integer).into(),
        ParamType::Number => scalar(Type::Number).into(),
        ParamType::Boolean => scalar(Type::Boolean).into(),
        ParamType::StringList => ArrayBuilder::new()
            .items(ObjectBuilder::new().schema_type(Type::String))
            .build()
            .into(),
    }
}

fn type_name(kind: ParamType) -> &'static str {
    match kind {
        ParamType::String => "string",
        ParamType::Integer => "integer",
        ParamType::Number => "number",
        ParamType::Boolean => "boolean",
        ParamType::StringList => "array of strings",
    }
}

fn params_of(a: &Analysis) -> Vec<&'static crate::analyses::Param> {
    let common = COMMON
        .iter()
        .filter(|p| !(a.no_step_or_case && matches!(p.name, "by" | "case")));
    common.chain(a.params.iter()).collect()
}

fn analysis_operation(a: &Analysis, method: HttpMethod) -> utoipa::openapi::path::Operation {
    let error = |text: &str| {
        ResponseBuilder::new()
            .description(text)
            .content(
                "application/json",
                Content::new(Some(Ref::from_schema_name("ErrorBody"))),
            )
            .build()
    };
    let mut op = OperationBuilder::new()
        .tag("analyses")
        .summary(Some(a.summary))
        .description(Some(format!(
            "Parameters are the CLI's `omnitrail {}` options. The result is described in {}.",
            a.name, a.doc
        )))
        .operation_id(Some(format!(
            "analysis_{}_{}",
            a.name,
            if method == HttpMethod::Get {
                "get"
            } else {
                "post"
            }
        )))
        .response(
            "200",
            ResponseBuilder::new()
                .description("The result")
                .content(
                    "application/json",
                    Content::new(Some(Ref::from_schema_name("AnalysisResult"))),
                )
                .build(),
        )
        .response(
            "400",
            error("A bad parameter or expression (the message points at it)"),
        )
        .response("401", error("No key, or an unknown or revoked one"))
        .response(
            "403",
            error("A write key: the query API needs a secret key"),
        )
        .security(SecurityRequirement::new("bearer", Vec::<String>::new()));
    if method == HttpMethod::Get {
        for p in params_of(a) {
            op = op.parameter(
                ParameterBuilder::new()
                    .name(p.name)
                    .parameter_in(ParameterIn::Query)
                    .required(if p.required {
                        Required::True
                    } else {
                        Required::False
                    })
                    .description(Some(p.description))
                    .schema(Some(param_schema(p.kind))),
            );
        }
    } else {
        let mut body = ObjectBuilder::new().schema_type(Type::Object);
        for p in params_of(a) {
            body = body.property(p.name, param_schema(p.kind));
            if p.required {
                body = body.required(p.name);
            }
        }
        op = op.request_body(Some(
            RequestBodyBuilder::new()
                .description(Some("The parameters as a JSON object"))
                .content("application/json", Content::new(Some(body.build())))
                .required(Some(Required::True))
                .build(),
        ));
    }
    op.build()
}

impl Modify for AnalysisPaths {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        for a in ANALYSES {
            let path = format!("/api/v1/analyses/{}", a.name);
            for method in [HttpMethod::Get, HttpMethod::Post] {
                doc.paths.add_path_operation(
                    &path,
                    vec![method.clone()],
                    analysis_operation(a, method),
                );
            }
        }
    }
}

/// The OpenAPI document of this server.
pub fn openapi() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// The document as pretty JSON with a final newline, as checked in at docs/openapi.json.
pub fn openapi_json() -> String {
    let mut text = openapi()
        .to_pretty_json()
        .expect("an OpenAPI document always serializes");
    text.push('\n');
    text
}

/// Every analysis and its parameters, for `GET /api/v1/analyses`.
pub fn catalog() -> Value {
    json!({
        "analyses": ANALYSES.iter().map(|a| json!({
            "name": a.name,
            "summary": a.summary,
            "path": format!("/api/v1/analyses/{}", a.name),
            "doc": a.doc,
            "parameters": params_of(a).iter().map(|p| json!({
                "name": p.name,
                "type": type_name(p.kind),
                "required": p.required,
                "description": p.description,
            })).collect::<Vec<_>>(),
        })).collect::<Vec<_>>()
    })
}
