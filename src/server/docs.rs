//! `GET /` and `GET /api` (plain-text documentation, as the original) and
//! `GET /api/openapi.json` (the same API as an OpenAPI 3.1 document).

use axum::http::header;
use axum::response::IntoResponse;
use axum::Json;

pub const TEXT: &str = "\
DryCI cache server

Every /api/v1/* and /api/v2/* call except /api/v2/capabilities needs
    Authorization: Bearer dryci-<26 base32 characters>
Results are isolated per tenant (by default one tenant per user).

POST /api/v1/query-passed
    {\"test_file_hashes\": [\"<64 hex>\", ...]}
 -> {\"node_ids\": [[\"<32 hex>\", ...], ...]}   one list per requested hash, in order

POST /api/v1/publish
    {\"passed_node_ids_per_test_file\": {\"<64 hex>\": [\"<32 hex>\", ...]},
     \"total_test_count\": 0, \"passed_test_count\": 0, \"failed_test_count\": 0,
     \"skipped_test_count\": 0, \"skipped_by_cache_test_count\": 0}
 -> {}   answered only after the data is committed; ids are merged, at most 32768 per hash

GET  /api/v2/capabilities   server version, API versions and limits (no token needed)
POST /api/v2/query-passed   {\"test_file_hashes\": [...]} -> {\"passed\": [[{\"node_id\": \"<32 hex>\", \"duration_ms\": 12}, ...], ...]}
POST /api/v2/publish        {\"passed\": {\"<64 hex>\": [{\"node_id\": \"<32 hex>\", \"duration_ms\": 12}]}, \"counts\": {...v1 counters...}}
                         -> {\"stored\": <ids newly stored>}
GET  /api/v2/admin/usage    usage counters per user (admin token): the users of the
                            token's tenant, every user for the tenant `admin`

GET /healthz                 200 when the database answers and takes writes (probed
                             at most every 5 s), 503 otherwise
GET /metrics                 Prometheus metrics
GET /api/openapi.json        this API as an OpenAPI document

Errors, every one with the body {\"detail\": \"...\", \"field\": \"<JSON path>\"}
(`field` only when one field is at fault; a bad key is quoted in part):
 400 a request that is not HTTP (request line, header, Content-Length)
 401 missing, malformed, unknown, expired or revoked token
 403 read-only token used to publish, or a token without admin scope
     reading usage
 405 a method the route does not take (the Allow header lists those it does)
 408 a request not complete within the request timeout
 413 body larger than the limit (8 MiB by default), at once when its
     declared Content-Length is
 414 a URI over 64 KB; 431 headers too long or too many
 422 body that is not JSON of the right shape, has unknown fields,
     or holds a hash or id of the wrong form (the field is named);
     a query naming a hash twice (test_file_hashes[i]), or whose answer
     would carry more node ids than --max-ids-per-answer (500000 by
     default; test_file_hashes): ask about fewer hashes per query
 503 the database is unavailable
";

pub async fn text() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], TEXT)
}

pub async fn openapi() -> impl IntoResponse {
    Json(document())
}

fn document() -> serde_json::Value {
    use serde_json::json;
    let hash = json!({"type": "string", "pattern": "^[0-9a-f]{64}$"});
    let id = json!({"type": "string", "pattern": "^[0-9a-f]{32}$"});
    let count = json!({"type": "integer", "minimum": 0});
    let counts = json!({
        "type": "object", "additionalProperties": false,
        "required": ["total_test_count", "passed_test_count", "failed_test_count", "skipped_test_count", "skipped_by_cache_test_count"],
        "properties": {
            "total_test_count": count, "passed_test_count": count, "failed_test_count": count,
            "skipped_test_count": count, "skipped_by_cache_test_count": count
        }
    });
    let mut v1_publish = counts.clone();
    if let Some(required) = v1_publish["required"].as_array_mut() {
        required.push(json!("passed_node_ids_per_test_file"));
    }
    v1_publish["properties"]["passed_node_ids_per_test_file"] = json!({"type": "object", "additionalProperties": {"type": "array", "items": id, "maxItems": 32768}});
    let passed_test = json!({
        "type": "object", "additionalProperties": false, "required": ["node_id"],
        "properties": {"node_id": id, "duration_ms": count}
    });
    let query = json!({
        "type": "object", "additionalProperties": false, "required": ["test_file_hashes"],
        "properties": {"test_file_hashes": {"type": "array", "items": hash}}
    });
    let error = json!({"$ref": "#/components/schemas/Error"});
    let errors = json!({
        "401": {"description": "missing, malformed, unknown, expired or revoked token", "content": {"application/json": {"schema": error}}},
        "413": {"description": "body too large", "content": {"application/json": {"schema": error}}},
        "422": {"description": "invalid body; `field` names the JSON path", "content": {"application/json": {"schema": error}}}
    });
    let op = |summary: &str, request: serde_json::Value, response: serde_json::Value| {
        let mut responses = errors.clone();
        responses["200"] =
            json!({"description": "ok", "content": {"application/json": {"schema": response}}});
        json!({
            "summary": summary,
            "security": [{"bearer": []}],
            "requestBody": {"required": true, "content": {"application/json": {"schema": request}}},
            "responses": responses
        })
    };
    json!({
        "openapi": "3.1.0",
        "info": {"title": "DryCI cache server", "version": env!("CARGO_PKG_VERSION")},
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "description": "dryci- followed by 26 base32 characters"}},
            "schemas": {"Error": {"type": "object", "required": ["detail"], "properties": {"detail": {"type": "string"}, "field": {"type": "string"}}}}
        },
        "paths": {
            "/api/v1/query-passed": {"post": op("Passed node ids per test-file hash (v1)", query.clone(),
                json!({"type": "object", "required": ["node_ids"], "properties": {"node_ids": {"type": "array", "items": {"type": "array", "items": id}}}}))},
            "/api/v1/publish": {"post": op("Store passed node ids (v1)", v1_publish, json!({"type": "object"}))},
            "/api/v2/query-passed": {"post": op("Passed tests with durations per test-file hash", query,
                json!({"type": "object", "required": ["passed"], "properties": {"passed": {"type": "array", "items": {"type": "array", "items": passed_test}}}}))},
            "/api/v2/publish": {"post": op("Store passed tests with durations",
                json!({"type": "object", "additionalProperties": false, "required": ["passed", "counts"],
                       "properties": {"passed": {"type": "object", "additionalProperties": {"type": "array", "items": passed_test}}, "counts": counts}}),
                json!({"type": "object", "required": ["stored"], "properties": {"stored": count}}))},
            "/api/v2/capabilities": {"get": {"summary": "Server version, API versions and limits", "responses": {"200": {"description": "ok"}}}},
            "/api/v2/admin/usage": {"get": {"summary": "Usage per user (admin token): the token's tenant, or every tenant for a user of the tenant `admin`", "security": [{"bearer": []}], "responses": {"200": {"description": "ok"}}}},
            "/healthz": {"get": {"summary": "Liveness and database check", "responses": {"200": {"description": "ok"}, "503": {"description": "database unavailable, or it took no write in the last probe"}}}},
            "/metrics": {"get": {"summary": "Prometheus metrics", "responses": {"200": {"description": "ok"}}}}
        }
    })
}
