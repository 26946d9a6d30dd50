//! `GET /` and `GET /api` (plain-text documentation, as the original) and
//! `GET /api/openapi.json` (the same API as an OpenAPI 3.1 document).

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::Json;

use super::handlers::Shared;
use super::wire::Limits;

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
POST /api/v2/query-passed   {\"test_file_hashes\": [...], \"with_requirements\": true}
                         -> {\"passed\": [[{\"node_id\": \"<32 hex>\", \"duration_ms\": 12, \"requires\": \"<64 hex>\"}, ...], ...],
                             \"requirement_sets\": {\"<64 hex>\": \"<base64>\"}}
                            without with_requirements, tests recorded with a set are left out
POST /api/v2/publish        {\"passed\": {\"<64 hex>\": [{\"node_id\": \"<32 hex>\", \"duration_ms\": 12, \"requires\": \"<64 hex>\"}]},
                             \"counts\": {...v1 counters...}, \"requirement_sets\": {\"<64 hex>\": \"<base64>\"}}
                         -> {\"stored\": <ids newly stored>}
                            a test of unknown duration has no duration_ms (null is refused);
                            a requirement set is sealed by the client, its key the blake3 of its bytes
GET  /api/v2/admin/usage    usage counters per user (admin token): the users of the
                            token's tenant, every user for the tenant `admin`

GET /healthz                 200 when the database answers and takes writes (probed
                             at most every 5 s), 503 otherwise
GET /metrics                 Prometheus metrics
GET /api/openapi.json        this API as an OpenAPI document, with this server's limits

Counts and durations are integers from 0 to 2^64-1, written as JSON allows
(5, 5.0 and 5e0 are all 5).

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

/// The document describes this server's own limits (`--max-ids-per-hash`,
/// `--max-hashes-per-query`), so a client or a conformance tool reading it
/// is told what this server accepts, not the defaults.
pub async fn openapi(State(st): Shared) -> impl IntoResponse {
    Json(document(&st.limits))
}

/// The OpenAPI 3.1 document, checked against the server by schemathesis
/// (every check, valid and invalid data, with a read-write, a read-only, an
/// admin and no token: `tests/python/test_openapi_conformance.py`). Every
/// answer a route can give is listed with its body: each error is
/// `Error`, and a status hyper or a layer answers for any route (400, 408,
/// 413, 414, 431) is listed on every operation.
fn document(limits: &Limits) -> serde_json::Value {
    use serde_json::json;
    let schema = |name: &str| json!({"$ref": format!("#/components/schemas/{name}")});
    let response = |name: &str| json!({"$ref": format!("#/components/responses/{name}")});
    let json_body = |description: &str, schema: serde_json::Value| json!({"description": description, "content": {"application/json": {"schema": schema}}});
    let text_body = |description: &str, media: &str| json!({"description": description, "content": {media: {"schema": {"type": "string"}}}});
    // Answered for any route, before or around its handler.
    let transport = [
        ("400", "BadRequest"),
        ("408", "Timeout"),
        ("413", "TooLarge"),
        ("414", "UriTooLong"),
        ("431", "HeadersTooLarge"),
    ];
    let public = |summary: &str, ok: serde_json::Value| {
        let mut responses = json!({"200": ok});
        for (code, name) in transport {
            responses[code] = response(name);
        }
        json!({"summary": summary, "security": [], "responses": responses})
    };
    // `forbidden`: the routes a token of too small a scope is refused (403).
    let protected = |summary: &str,
                     request: Option<serde_json::Value>,
                     ok: serde_json::Value,
                     forbidden: bool| {
        let mut op = public(summary, ok);
        op["security"] = json!([{"bearer": []}]);
        op["responses"]["401"] = response("Unauthorized");
        op["responses"]["503"] = response("Unavailable");
        if forbidden {
            op["responses"]["403"] = response("Forbidden");
        }
        if let Some(request) = request {
            op["requestBody"] =
                json!({"required": true, "content": {"application/json": {"schema": request}}});
            op["responses"]["422"] = response("Invalid");
        }
        op
    };
    let max_ids = limits.max_ids_per_hash;
    // Standard base64 with padding: 4 characters per 3 bytes.
    let sealed_max_chars = crate::protocol::MAX_SEALED_SET_BYTES.div_ceil(3) * 4;
    let schemas = json!({
        "Error": {
            "type": "object", "additionalProperties": false, "required": ["detail"],
            "properties": {
                "detail": {"type": "string"},
                "field": {"type": "string", "description": "JSON path of the field at fault, when one is"}
            }
        },
        "TestFileHash": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
        "NodeId": {"type": "string", "pattern": "^[0-9a-f]{32}$"},
        // JSON has one number type: to JSON Schema, and so to this
        // document, `5.0` is the integer 5, and no schema can exclude it.
        // So the server takes it as 5 (`protocol::json_count`), as
        // pydantic does, rather than refuse a body the document calls
        // valid. The maximum is u64's.
        "Count": {"type": "integer", "minimum": 0, "maximum": u64::MAX},
        "RunCounts": {
            "type": "object", "additionalProperties": false,
            "required": ["total_test_count", "passed_test_count", "failed_test_count", "skipped_test_count", "skipped_by_cache_test_count"],
            "properties": {
                "total_test_count": schema("Count"), "passed_test_count": schema("Count"),
                "failed_test_count": schema("Count"), "skipped_test_count": schema("Count"),
                "skipped_by_cache_test_count": schema("Count")
            }
        },
        // No `null`: a test of unknown duration has no `duration_ms`,
        // as our client sends it and as the answers carry it.
        "PassedTest": {
            "type": "object", "additionalProperties": false, "required": ["node_id"],
            "properties": {
                "node_id": schema("NodeId"),
                "duration_ms": {"allOf": [schema("Count")], "description": "wall time of setup, call and teardown when it last passed"},
                "requires": {"allOf": [schema("SetRef")], "description": "the sealed requirement set the test was recorded with: a key of requirement_sets in the same body; the test may be served only while every requirement in it holds"}
            }
        },
        "SetRef": {"type": "string", "pattern": "^[0-9a-f]{64}$", "description": "the blake3 (hex) of a sealed requirement set's bytes"},
        "SealedSets": {
            "type": "object", "additionalProperties": false,
            "propertyNames": schema("SetRef"),
            "patternProperties": {"^[0-9a-f]{64}$": {
                "type": "string", "contentEncoding": "base64", "maxLength": sealed_max_chars,
                "description": "the sealed set (standard base64), opaque to the server; its key is the blake3 of its bytes"
            }},
            "description": "sealed requirement sets by reference; only a client with the test file's dependency hash can open one"
        },
        "TestFileHashes": {
            "type": "array", "items": schema("TestFileHash"),
            "uniqueItems": true, "maxItems": limits.max_hashes_per_query,
            "description": "each hash once; a query whose answer would carry more than the server's --max-ids-per-answer ids is refused (422): ask about fewer hashes"
        },
        "QueryRequest": {
            "type": "object", "additionalProperties": false, "required": ["test_file_hashes"],
            "properties": {"test_file_hashes": schema("TestFileHashes")}
        },
        "V1QueryResponse": {
            "type": "object", "additionalProperties": false, "required": ["node_ids"],
            "properties": {"node_ids": {"type": "array", "items": {"type": "array", "items": schema("NodeId")}, "description": "one list per requested hash, in order"}}
        },
        "V1PublishRequest": {
            "type": "object", "additionalProperties": false,
            "required": ["passed_node_ids_per_test_file", "total_test_count", "passed_test_count", "failed_test_count", "skipped_test_count", "skipped_by_cache_test_count"],
            "properties": {
                "passed_node_ids_per_test_file": {
                    "type": "object", "additionalProperties": false,
                    "propertyNames": schema("TestFileHash"),
                    "patternProperties": {"^[0-9a-f]{64}$": {"type": "array", "items": schema("NodeId"), "maxItems": max_ids}}
                },
                "total_test_count": schema("Count"), "passed_test_count": schema("Count"),
                "failed_test_count": schema("Count"), "skipped_test_count": schema("Count"),
                "skipped_by_cache_test_count": schema("Count")
            }
        },
        "V1PublishResponse": {"type": "object", "additionalProperties": false},
        "V2QueryRequest": {
            "type": "object", "additionalProperties": false, "required": ["test_file_hashes"],
            "properties": {
                "test_file_hashes": schema("TestFileHashes"),
                "with_requirements": {"type": "boolean", "default": false, "description": "the client checks requirement sets: answer the tests recorded with one, and the sets; without it they are left out"}
            }
        },
        "V2QueryResponse": {
            "type": "object", "additionalProperties": false, "required": ["passed"],
            "properties": {
                "passed": {"type": "array", "items": {"type": "array", "items": schema("PassedTest")}, "description": "one list per requested hash, in order"},
                "requirement_sets": {"allOf": [schema("SealedSets")], "description": "present when the query asked with_requirements: the sets the answered tests require, each once"}
            }
        },
        "V2PublishRequest": {
            "type": "object", "additionalProperties": false, "required": ["passed", "counts"],
            "properties": {
                "passed": {
                    "type": "object", "additionalProperties": false,
                    "propertyNames": schema("TestFileHash"),
                    "patternProperties": {"^[0-9a-f]{64}$": {"type": "array", "items": schema("PassedTest"), "maxItems": max_ids}}
                },
                "counts": schema("RunCounts"),
                "requirement_sets": {"allOf": [schema("SealedSets")], "description": "every set a test of passed requires"}
            }
        },
        "V2PublishResponse": {
            "type": "object", "additionalProperties": false, "required": ["stored"],
            "properties": {
                "stored": {"allOf": [schema("Count")], "description": "ids newly stored"},
                "not_stored": {"allOf": [schema("Count")], "description": "tests left out because the set they require is not in requirement_sets, is not base64, or is not what its key says (absent when none)"}
            }
        },
        "Capabilities": {
            "type": "object", "additionalProperties": false,
            "required": ["server_version", "api_versions", "max_body_bytes", "max_hashes_per_query", "max_ids_per_hash"],
            "properties": {
                "server_version": {"type": "string"},
                "api_versions": {"type": "array", "items": {"type": "integer"}},
                "max_body_bytes": schema("Count"), "max_hashes_per_query": schema("Count"),
                "max_ids_per_hash": schema("Count")
            }
        },
        "Usage": {
            "type": "object", "additionalProperties": false, "required": ["users"],
            "properties": {"users": {"type": "array", "items": {
                "type": "object", "additionalProperties": false,
                "required": ["user", "requests", "queried_hashes", "hits", "published_ids", "last_seen_at"],
                "properties": {
                    "user": {"type": "string"},
                    "requests": schema("Count"), "queried_hashes": schema("Count"),
                    "hits": schema("Count"), "published_ids": schema("Count"),
                    "last_seen_at": {"type": ["integer", "null"], "description": "unix time of the last request; null before the first"}
                }
            }}}
        }
    });
    let responses = json!({
        "BadRequest": json_body("not an HTTP request hyper can read (request line, header, Content-Length)", schema("Error")),
        "Unauthorized": {
            "description": "missing, malformed, unknown, expired or revoked token",
            "headers": {"WWW-Authenticate": {"required": true, "schema": {"type": "string", "const": "Bearer"}}},
            "content": {"application/json": {"schema": schema("Error")}}
        },
        "Forbidden": json_body("the token's scope does not allow this: a read-only token publishing, a token without admin scope reading usage", schema("Error")),
        "Timeout": json_body("the request was not complete within the request timeout", schema("Error")),
        "TooLarge": json_body("the body, or its declared Content-Length, is over the body limit (8 MiB by default; /api/v2/capabilities)", schema("Error")),
        "UriTooLong": json_body("a URI over 64 KB", schema("Error")),
        "Invalid": json_body("a body that is not JSON of the right shape, has unknown fields, holds a hash or id of the wrong form, or repeats a hash; `field` names the JSON path", schema("Error")),
        "HeadersTooLarge": json_body("headers too long or too many", schema("Error")),
        "Unavailable": json_body("the database is unavailable", schema("Error"))
    });
    let mut healthz = public("Liveness and database check", text_body("ok", "text/plain"));
    healthz["responses"]["503"] = text_body(
        "database unavailable, or it took no write in the last probe",
        "text/plain",
    );
    let paths = json!({
        "/": {"get": public("This API as plain text", text_body("ok", "text/plain"))},
        "/api": {"get": public("This API as plain text", text_body("ok", "text/plain"))},
        "/api/openapi.json": {"get": public("This document", json_body("ok", json!({"type": "object"})))},
        "/api/v1/query-passed": {"post": protected("Passed node ids per test-file hash (v1)",
            Some(schema("QueryRequest")), json_body("ok", schema("V1QueryResponse")), false)},
        "/api/v1/publish": {"post": protected("Store passed node ids (v1); answered once they are committed; ids are merged",
            Some(schema("V1PublishRequest")), json_body("ok", schema("V1PublishResponse")), true)},
        "/api/v2/query-passed": {"post": protected("Passed tests with durations per test-file hash",
            Some(schema("V2QueryRequest")), json_body("ok", schema("V2QueryResponse")), false)},
        "/api/v2/publish": {"post": protected("Store passed tests with durations",
            Some(schema("V2PublishRequest")), json_body("ok", schema("V2PublishResponse")), true)},
        "/api/v2/capabilities": {"get": public("Server version, API versions and limits", json_body("ok", schema("Capabilities")))},
        "/api/v2/admin/usage": {"get": protected("Usage per user (admin token): the token's tenant, or every tenant for a user of the tenant `admin`",
            None, json_body("ok", schema("Usage")), true)},
        "/healthz": {"get": healthz},
        "/metrics": {"get": public("Prometheus metrics", text_body("ok", "application/openmetrics-text"))}
    });
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "DryCI cache server",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "`/api/v1/*` is the original DryCI API, unchanged; `/api/v2/*` holds the extensions. \
                A method a route does not take is answered 405 with an `Allow` header and an `Error` body; \
                an unknown path 404 with an `Error` body."
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "description": "dryci- followed by 26 base32 characters"}},
            "schemas": schemas,
            "responses": responses
        },
        "paths": paths
    })
}
