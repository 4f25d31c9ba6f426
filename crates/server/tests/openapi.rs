//! `docs/openapi.json` must be the document the code generates. After changing an endpoint,
//! a DTO or the analysis registry, regenerate it with
//! `cargo run -- openapi > docs/openapi.json` or
//! `UPDATE_OPENAPI=1 cargo test -p omnitrail-server --test openapi`.

use std::path::Path;

#[test]
fn checked_in_openapi_document_is_current() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/openapi.json");
    let generated = omnitrail_server::openapi_json();
    if std::env::var_os("UPDATE_OPENAPI").is_some() {
        std::fs::write(&path, &generated).expect("write docs/openapi.json");
        return;
    }
    let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        checked_in == generated,
        "docs/openapi.json is not the document the code generates; regenerate it with \
         `cargo run -- openapi > docs/openapi.json` or \
         `UPDATE_OPENAPI=1 cargo test -p omnitrail-server --test openapi`"
    );
}

#[test]
fn every_analysis_has_a_documented_get_and_post() {
    let doc: serde_json::Value = serde_json::from_str(&omnitrail_server::openapi_json()).unwrap();
    for a in omnitrail_server::ANALYSES {
        let path = &doc["paths"][format!("/api/v1/analyses/{}", a.name)];
        assert!(
            path["get"].is_object() && path["post"].is_object(),
            "{}",
            a.name
        );
        let params: Vec<&str> = path["get"]["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap())
            .collect();
        for p in a.params {
            assert!(params.contains(&p.name), "{}: {}", a.name, p.name);
        }
    }
}
