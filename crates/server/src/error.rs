//! The one error shape of the HTTP API, `{code, message}`, and the one place that decides
//! which status each failure gets. Internal failures (storage, database, a panic) are logged
//! with their detail and answered with a generic message: paths, SQL and panic text never
//! leave the server.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use omnitrail_app::analysis::engine::EngineError;
use omnitrail_app::analysis::AnalysisError;
use omnitrail_app::keys::KeyError;
use omnitrail_app::AppError;
use omnitrail_store::StoreError;
use serde::Serialize;
use utoipa::ToSchema;

/// Every error response's body.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize, ToSchema)]
pub struct ErrorBody {
    /// Stable, machine-readable: `invalid_json`, `invalid_payload`, `payload_too_large`,
    /// `unsupported_encoding`, `unauthorized`, `forbidden`, `not_found`, `invalid_query`,
    /// `ambiguous_identifier`, `overloaded`, `unavailable`, `internal`.
    pub code: String,
    /// For people; specific about what and where, never internal detail.
    pub message: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Seconds, sent as `Retry-After` (back-pressure, a store that needs a restart).
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn invalid_query(message: impl Into<String>) -> ApiError {
        ApiError::bad_request("invalid_query", message)
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub fn too_large(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", message)
    }

    pub fn unauthorized(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    pub fn forbidden(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    /// 503 with `Retry-After`: the request may succeed later as it is.
    pub fn overloaded(message: impl Into<String>, retry_after: u64) -> ApiError {
        ApiError {
            retry_after: Some(retry_after),
            ..ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "overloaded", message)
        }
    }

    /// A failure inside the server: the detail goes to the log, the client gets none.
    pub fn internal(detail: &dyn std::fmt::Display) -> ApiError {
        tracing::error!("internal error: {detail}");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the server failed to handle the request; the error is in its log",
        )
    }

    /// The store refuses writes after a failed write or fsync until the process restarts;
    /// clients should retry then (nothing of the request was acknowledged).
    fn store_unavailable(detail: &dyn std::fmt::Display) -> ApiError {
        tracing::error!("store unavailable: {detail}");
        ApiError {
            retry_after: Some(30),
            ..ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "the store stopped accepting writes after a disk error and needs a restart; nothing of this request was stored",
            )
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            code: self.code.to_string(),
            message: self.message,
        };
        let mut response = (self.status, axum::Json(body)).into_response();
        if let Some(secs) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

impl From<AppError> for ApiError {
    fn from(e: AppError) -> ApiError {
        match e {
            AppError::CustomerNotFound(_) | AppError::NoteNotFound { .. } => {
                ApiError::not_found(e.to_string())
            }
            AppError::AmbiguousIdentifier { .. } => {
                ApiError::bad_request("ambiguous_identifier", e.to_string())
            }
            AppError::EmptyNote | AppError::Identity(_) => {
                ApiError::bad_request("invalid_payload", e.to_string())
            }
            // A missing or invalid setting of the data dir (a designed journey, omnitrail.toml):
            // the reason and the file's name, never the server's full path.
            AppError::Config { path, reason } => {
                let file = std::path::Path::new(&path)
                    .file_name()
                    .map(|f| f.to_string_lossy().into_owned())
                    .unwrap_or_default();
                ApiError::bad_request("invalid_configuration", format!("{file}: {reason}"))
            }
            AppError::Store(StoreError::Poisoned(_))
            | AppError::Store(StoreError::Fsync { .. }) => ApiError::store_unavailable(&e),
            other => ApiError::internal(&other),
        }
    }
}

impl From<AnalysisError> for ApiError {
    fn from(e: AnalysisError) -> ApiError {
        match e {
            AnalysisError::App(a) => a.into(),
            AnalysisError::Engine(engine) => engine.into(),
            // Named as the API's parameter (`segment`), not the CLI's option (`--segment`).
            AnalysisError::Expression { option, rendered } => {
                ApiError::invalid_query(format!("{}: {rendered}", option.trim_start_matches("--")))
            }
        }
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> ApiError {
        match e {
            // The data dir's stage configuration is the operator's, not the caller's.
            EngineError::UnknownStage { .. } => ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "configuration",
                e.to_string(),
            ),
            _ => ApiError::invalid_query(e.to_string()),
        }
    }
}

impl From<KeyError> for ApiError {
    fn from(e: KeyError) -> ApiError {
        match e {
            KeyError::NotFound(_) | KeyError::UnknownProject(_) => {
                ApiError::not_found(e.to_string())
            }
            KeyError::BadKind(_)
            | KeyError::BadProjectName(_)
            | KeyError::Ambiguous(_)
            | KeyError::AlreadyRevoked { .. } => {
                ApiError::bad_request("invalid_payload", e.to_string())
            }
            KeyError::Store(_) | KeyError::Random(_) | KeyError::Io { .. } => {
                ApiError::internal(&e)
            }
        }
    }
}

/// A blocking task that panicked or was cancelled: the detail stays in the log.
impl From<tokio::task::JoinError> for ApiError {
    fn from(e: tokio::task::JoinError) -> ApiError {
        ApiError::internal(&format!("a blocking task failed: {e}"))
    }
}
