//! A server over a temporary data dir with an injected clock, called through its router
//! without a socket (tower's `oneshot`).
#![allow(dead_code)] // each test file uses its own part

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, Method, Request, StatusCode};
use axum::Router;
use base64::Engine;
use omnitrail_app::keys::KeyKind;
use omnitrail_app::{App, AppOptions};
use omnitrail_model::{FixedClock, Timestamp};
use omnitrail_server::{Server, ServerConfig};
use serde_json::Value;
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;
use tower::ServiceExt;

pub const NOW: &str = "2026-03-01T12:00:00Z";

pub struct TestServer {
    pub dir: tempfile::TempDir,
    pub server: Server,
    pub clock: Arc<FixedClock>,
    /// Keys of the default project.
    pub write: String,
    pub secret: String,
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
    pub text: String,
}

impl TestServer {
    pub fn new() -> TestServer {
        TestServer::with_config(ServerConfig {
            // Every check reads the database: revocation is seen at once.
            key_cache_ttl: Duration::ZERO,
            ..ServerConfig::default()
        })
    }

    pub fn with_config(config: ServerConfig) -> TestServer {
        let dir = tempfile::tempdir().expect("temp dir");
        let clock = Arc::new(FixedClock::new(Timestamp::parse(NOW).unwrap()));
        let app = App::open(
            dir.path(),
            AppOptions {
                clock: clock.clone(),
                ..AppOptions::default()
            },
        )
        .expect("open app");
        let write = app
            .create_key("default", KeyKind::Write, "test")
            .unwrap()
            .key;
        let secret = app
            .create_key("default", KeyKind::Secret, "test")
            .unwrap()
            .key;
        let server = Server::new(Arc::new(app), config);
        TestServer {
            dir,
            server,
            clock,
            write,
            secret,
        }
    }

    pub fn router(&self) -> Router {
        self.server.router()
    }

    pub async fn send(&self, request: Request<Body>) -> Reply {
        let response = self.router().oneshot(request).await.expect("infallible");
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("body");
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Reply {
            status,
            headers,
            body,
            text,
        }
    }

    /// A request with `Authorization: Bearer key` (when given) and a JSON or raw body.
    pub async fn call(&self, method: Method, uri: &str, key: Option<&str>, body: Body) -> Reply {
        let mut r = Request::builder().method(method).uri(uri);
        if let Some(k) = key {
            r = r.header(header::AUTHORIZATION, format!("Bearer {k}"));
        }
        self.send(
            r.header(header::CONTENT_TYPE, "application/json")
                .body(body)
                .unwrap(),
        )
        .await
    }

    pub async fn get(&self, uri: &str) -> Reply {
        self.call(Method::GET, uri, Some(&self.secret.clone()), Body::empty())
            .await
    }

    pub async fn post_json(&self, uri: &str, key: Option<&str>, body: &Value) -> Reply {
        self.call(Method::POST, uri, key, Body::from(body.to_string()))
            .await
    }

    /// A Segment-style request: the write key as Basic-auth user, empty password.
    pub async fn segment(&self, path: &str, body: &Value) -> Reply {
        let auth = base64::engine::general_purpose::STANDARD.encode(format!("{}:", self.write));
        self.send(
            Request::builder()
                .method(Method::POST)
                .uri(path)
                .header(header::AUTHORIZATION, format!("Basic {auth}"))
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(body.to_string()))
                .unwrap(),
        )
        .await
    }

    pub async fn gzip_post(&self, uri: &str, key: &str, data: &[u8]) -> Reply {
        self.send(
            Request::builder()
                .method(Method::POST)
                .uri(uri)
                .header(header::AUTHORIZATION, format!("Bearer {key}"))
                .header(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"))
                .body(Body::from(gzip(data)))
                .unwrap(),
        )
        .await
    }
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

/// A canonical event as JSON.
pub fn event(id: &str, email: &str, activity: &str, at: &str) -> Value {
    serde_json::json!({
        "event_id": id,
        "timestamp": at,
        "identifiers": {"email": email},
        "channel": "web",
        "activity": activity,
    })
}
