//! The OpenAPI description: generated from the handlers, served without credentials, committed
//! as docs/openapi.json, and covering every REST route the router has.
//! `scripts/api-test.sh` drives the live binary from it with schemathesis.

use std::collections::BTreeSet;
use std::path::PathBuf;

use crate::common::{Server, within};
use serde_json::Value;

fn repo_file(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(path)
}

#[test]
fn the_committed_openapi_json_is_the_generated_one() {
    let generated = dualconn::http::openapi::document();
    let path = repo_file("docs/openapi.json");
    if std::env::var_os("UPDATE_OPENAPI").is_some() {
        std::fs::write(&path, generated).expect("docs/openapi.json is writable");
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "docs/openapi.json is stale; refresh it with \
         `UPDATE_OPENAPI=1 cargo test -p dualconn --test it openapi::` and commit it"
    );
}

#[tokio::test]
async fn openapi_json_is_served_without_credentials() {
    let server = Server::start().await;
    let response = within(server.http.get(server.url("/openapi.json")).send())
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    let doc: Value = within(response.json()).await.unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    let schemes = &doc["components"]["securitySchemes"];
    assert_eq!(schemes["player_jwt"]["scheme"], "bearer");
    assert_eq!(schemes["player_jwt"]["bearerFormat"], "JWT");
    assert_eq!(schemes["admin_key"]["scheme"], "bearer");
    let error = &doc["components"]["schemas"]["ErrorBody"]["required"];
    for key in ["error", "error_type", "message", "details", "timestamp"] {
        assert!(error.as_array().unwrap().iter().any(|k| k == key), "{key}");
    }
    server.stop().await;
}

/// The `(method, path)` pairs routed in src/http/mod.rs, read from its source so a new route
/// cannot be added without either describing it or saying here why it is not REST.
fn routed() -> BTreeSet<(String, String)> {
    let source = std::fs::read_to_string(repo_file("crates/dualconn/src/http/mod.rs")).unwrap();
    let mut routes = BTreeSet::new();
    for piece in source.split(".route(").skip(1) {
        let path = piece.split('"').nth(1).unwrap().to_owned();
        let handlers = piece.split(")\n").next().unwrap();
        for method in ["get", "post", "put", "delete"] {
            if handlers.contains(&format!("{method}(")) {
                routes.insert((method.to_owned(), path.clone()));
            }
        }
    }
    routes
}

/// Streams and pages: not request/response JSON, described in docs/protocol.md instead.
const NOT_REST: [&str; 10] = [
    "/api/ws",
    "/api/ws/{player_id}",
    "/ws/{player_id}",
    "/sse/{player_id}",
    "/api/events",
    "/api/events/{player_id}",
    "/api/dev/admin-key",
    "/",
    "/dashboard",
    "/static/{*path}",
];

#[test]
fn every_rest_route_is_described_and_nothing_else() {
    let doc: Value = serde_json::from_str(dualconn::http::openapi::document()).unwrap();
    let described: BTreeSet<(String, String)> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .unwrap()
                .keys()
                .map(move |method| (method.clone(), path.clone()))
        })
        .collect();
    let rest: BTreeSet<(String, String)> = routed()
        .into_iter()
        .filter(|(_, path)| !NOT_REST.contains(&path.as_str()))
        .collect();
    assert!(
        rest.len() >= 15,
        "the route scan found too little: {rest:?}"
    );
    assert_eq!(described, rest);
}
