//! The web UI (docs/ui.md): the files `ui/` builds (crates/server/build.rs runs Vite into
//! `$OUT_DIR/ui`), embedded in the binary and served at `/`.
//!
//! Every path the router does not match lands here. The API's own namespaces (`/api`, `/v1`,
//! `/healthz`, `/metrics`, `/openapi.json`) keep their JSON 404. A path naming an embedded
//! file gets that file; any other `GET` from a browser (one that accepts HTML) gets
//! `index.html`, so the UI's client-side routes (`/friction`, `/customers/c42`) survive a
//! reload or a shared link. Other clients get the JSON 404, as before the UI existed.

use crate::api;
use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};

#[derive(rust_embed::Embed)]
#[folder = "$OUT_DIR/ui"]
struct Assets;

/// Paths that belong to the API even when nothing there matches.
const RESERVED: &[&str] = &["/api", "/v1", "/healthz", "/metrics", "/openapi.json"];

/// Vite names bundled files by their content hash under `assets/`, so they never change
/// under the same name and may be cached for good; everything else (index.html above all)
/// must be revalidated so a new binary's UI is picked up at once.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";
const REVALIDATE: &str = "no-cache";

/// Same-origin only: the page holds a secret key, so no third-party script, frame or
/// connection is allowed. Inline styles are needed by the charts (ECharts sets `style`).
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
                   img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; \
                   base-uri 'none'; form-action 'self'";

pub(crate) async fn fallback(method: Method, uri: Uri, headers: HeaderMap) -> Response {
    let path = uri.path();
    let reserved = RESERVED
        .iter()
        .any(|r| path == *r || path.starts_with(&format!("{r}/")));
    if reserved || (method != Method::GET && method != Method::HEAD) {
        return api::not_found().await.into_response();
    }
    let name = path.trim_start_matches('/');
    if !name.is_empty() && name != "index.html" {
        if let Some(file) = Assets::get(name) {
            let cache = if name.starts_with("assets/") {
                IMMUTABLE
            } else {
                REVALIDATE
            };
            return file_response(&file, cache, &headers);
        }
    }
    if name.is_empty() || name == "index.html" || accepts_html(&headers) {
        if let Some(index) = Assets::get("index.html") {
            return file_response(&index, REVALIDATE, &headers);
        }
    }
    api::not_found().await.into_response()
}

fn accepts_html(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.contains("text/html"))
}

fn file_response(
    file: &rust_embed::EmbeddedFile,
    cache: &'static str,
    request: &HeaderMap,
) -> Response {
    let etag = format!("\"{}\"", hex(&file.metadata.sha256_hash()[..16]));
    let mut response = if request
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|tags| tags.split(',').any(|t| t.trim() == etag))
    {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        Response::new(Body::from(file.data.clone().into_owned()))
    };
    let mime = file.metadata.mimetype();
    let content_type = if mime.starts_with("text/") || mime == "application/javascript" {
        format!("{mime}; charset=utf-8")
    } else {
        mime.to_string()
    };
    let h = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&content_type) {
        h.insert(header::CONTENT_TYPE, v);
    }
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    response
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn get(path: &str, accept: Option<&str>) -> Response {
        let mut headers = HeaderMap::new();
        if let Some(a) = accept {
            headers.insert(header::ACCEPT, HeaderValue::from_str(a).unwrap());
        }
        fallback(Method::GET, path.parse().unwrap(), headers).await
    }

    fn header_of(r: &Response, name: header::HeaderName) -> String {
        r.headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default()
    }

    #[tokio::test]
    async fn index_for_the_root_and_client_routes_of_a_browser() {
        for (path, accept) in [
            ("/", None),
            ("/index.html", None),
            ("/friction", Some("text/html,application/xhtml+xml")),
            ("/customers/c42", Some("text/html")),
        ] {
            let r = get(path, accept).await;
            assert_eq!(r.status(), StatusCode::OK, "{path}");
            assert_eq!(
                header_of(&r, header::CONTENT_TYPE),
                "text/html; charset=utf-8",
                "{path}"
            );
            assert_eq!(header_of(&r, header::CACHE_CONTROL), REVALIDATE, "{path}");
        }
    }

    #[tokio::test]
    async fn hashed_assets_are_cached_for_good_with_their_type() {
        let script = Assets::iter()
            .find(|n| n.starts_with("assets/") && n.ends_with(".js"))
            .expect("the build put a script under assets/");
        let r = get(&format!("/{script}"), None).await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(
            header_of(&r, header::CONTENT_TYPE),
            "text/javascript; charset=utf-8"
        );
        assert_eq!(header_of(&r, header::CACHE_CONTROL), IMMUTABLE);
        let etag = header_of(&r, header::ETAG);
        let mut headers = HeaderMap::new();
        headers.insert(header::IF_NONE_MATCH, HeaderValue::from_str(&etag).unwrap());
        let again = fallback(Method::GET, format!("/{script}").parse().unwrap(), headers).await;
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
    }

    #[tokio::test]
    async fn api_namespaces_and_non_browsers_keep_the_json_404() {
        for (path, accept) in [
            ("/api/v1/nope", Some("text/html")),
            ("/api", Some("text/html")),
            ("/v1/nope", Some("text/html")),
            ("/healthz/x", Some("text/html")),
            ("/nope", None),
            ("/nope", Some("application/json")),
        ] {
            let r = get(path, accept).await;
            assert_eq!(r.status(), StatusCode::NOT_FOUND, "{path}");
            assert_eq!(
                header_of(&r, header::CONTENT_TYPE),
                "application/json",
                "{path}"
            );
        }
        let r = fallback(Method::POST, "/friction".parse().unwrap(), HeaderMap::new()).await;
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
    }
}
