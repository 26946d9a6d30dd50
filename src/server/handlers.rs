//! Request handlers: authenticate, validate, call the store, answer.
//! No SQL here; the store is reached only through the `Store` trait.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::Json;

use crate::protocol::{v1, v2};

use super::auth;
use super::error::ApiError;
use super::metrics::Metrics;
use super::store::{
    Entry, FileKey, Published, Scope, Store, StoreError, TokenAuth, UsageDelta, SERVER_ADMIN_TENANT,
};
use super::tracker::Tracker;
use super::wire::{self, Limits};

pub struct AppState {
    pub store: Arc<dyn Store>,
    pub limits: Limits,
    pub metrics: Arc<Metrics>,
    pub tracker: Arc<Tracker>,
    /// An entry read again within this many seconds is not re-touched.
    pub touch_granularity_secs: i64,
    /// Told after every publish: wakes the maintenance task (size gauges,
    /// eviction past the size limit).
    pub store_changed: Arc<tokio::sync::Notify>,
    pub write_probe: WriteProbe,
}

pub type Shared = State<Arc<AppState>>;

pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

impl AppState {
    async fn authenticate(&self, headers: &HeaderMap) -> Result<TokenAuth, ApiError> {
        let who = auth::authenticate(self.store.as_ref(), headers, now()).await?;
        tracing::Span::current().record("user", who.user_name.as_str());
        Ok(who)
    }

    fn body(&self, body: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
        body.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::TooLarge {
                    limit: self.limits.max_body_bytes,
                }
            } else {
                ApiError::Invalid(crate::protocol::FieldError {
                    field: "body".into(),
                    reason: rejection.body_text(),
                })
            }
        })
    }

    /// Looks up `hashes` for the caller's tenant and records hits, misses,
    /// reads and usage.
    async fn lookup(
        &self,
        who: &TokenAuth,
        hashes: &[FileKey],
    ) -> Result<Vec<Option<Entry>>, ApiError> {
        let entries = self
            .store
            .query(&who.tenant, hashes, self.limits.max_ids_per_answer)
            .await
            .map_err(|e| match e {
                StoreError::TooManyIds { at_least, max } => {
                    ApiError::Invalid(wire::too_many_ids(at_least, max))
                }
                other => ApiError::Store(other),
            })?;
        let stale = now() - self.touch_granularity_secs;
        let mut hits = 0;
        for (hash, entry) in hashes.iter().zip(&entries) {
            if let Some(entry) = entry {
                hits += 1;
                if entry.last_read_at <= stale {
                    self.tracker.read(&who.tenant, *hash);
                }
            }
        }
        self.metrics.hits.inc_by(hits);
        self.metrics.misses.inc_by(hashes.len() as u64 - hits);
        self.tracker.usage(
            who.user_id,
            UsageDelta {
                requests: 1,
                queried_hashes: hashes.len() as u64,
                hits,
                published_ids: 0,
            },
        );
        Ok(entries)
    }

    async fn publish(
        &self,
        who: &TokenAuth,
        batch: Vec<(FileKey, Published)>,
    ) -> Result<u64, ApiError> {
        if !who.scope.can_publish() {
            return Err(ApiError::Forbidden {
                scope: who.scope.as_str(),
                action: "publishing",
                needs: "a read-write or admin token",
            });
        }
        let stored = self
            .store
            .publish(&who.tenant, batch, self.limits.max_ids_per_hash, now())
            .await?;
        self.metrics.published_ids.inc_by(stored);
        // The maintenance task refreshes the size gauges and, past
        // --max-store-bytes, evicts; the answer does not wait for it.
        self.store_changed.notify_one();
        self.tracker.usage(
            who.user_id,
            UsageDelta {
                requests: 1,
                published_ids: stored,
                ..UsageDelta::default()
            },
        );
        Ok(stored)
    }
}

pub async fn v1_query(
    State(st): Shared,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let who = st.authenticate(&headers).await?;
    let req: v1::QueryPassedRequest = wire::parse_json(&st.body(body)?)?;
    let hashes = wire::query_hashes(&req.test_file_hashes, &st.limits)?;
    let entries = st.lookup(&who, &hashes).await?;
    Ok((
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        wire::v1_query_response(&entries),
    ))
}

pub async fn v1_publish(
    State(st): Shared,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<v1::PublishResponse>, ApiError> {
    let who = st.authenticate(&headers).await?;
    let req: v1::PublishRequest = wire::parse_json(&st.body(body)?)?;
    let batch = wire::publish_v1(&req.passed_node_ids_per_test_file, &st.limits)?;
    st.publish(&who, batch.entries).await?;
    Ok(Json(v1::PublishResponse {}))
}

pub async fn v2_query(
    State(st): Shared,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let who = st.authenticate(&headers).await?;
    let req: v2::QueryPassedRequest = wire::parse_json(&st.body(body)?)?;
    let hashes = wire::query_hashes(&req.test_file_hashes, &st.limits)?;
    let entries = st.lookup(&who, &hashes).await?;
    Ok((
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        wire::v2_query_response(&entries, req.with_requirements),
    ))
}

pub async fn v2_publish(
    State(st): Shared,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<v2::PublishResponse>, ApiError> {
    let who = st.authenticate(&headers).await?;
    let req: v2::PublishRequest = wire::parse_json(&st.body(body)?)?;
    let batch = wire::publish_v2(&req, &st.limits)?;
    let stored = st.publish(&who, batch.entries).await?;
    Ok(Json(v2::PublishResponse {
        stored,
        not_stored: batch.not_stored,
    }))
}

/// Public: the plugin probes it before it has decided which API to use.
pub async fn capabilities(State(st): Shared) -> Json<v2::Capabilities> {
    Json(v2::Capabilities {
        server_version: env!("CARGO_PKG_VERSION").to_string(),
        api_versions: vec![1, 2],
        max_body_bytes: st.limits.max_body_bytes as u64,
        max_hashes_per_query: st.limits.max_hashes_per_query as u64,
        max_ids_per_hash: st.limits.max_ids_per_hash as u64,
    })
}

/// `GET /api/v2/admin/usage`: per-user usage counters, admin tokens only:
/// the users of the token's tenant, or every user for a token of the
/// server's administrators (`SERVER_ADMIN_TENANT`). An admin token of an
/// ordinary user listed every tenant's users and counters before.
pub async fn admin_usage(
    State(st): Shared,
    headers: HeaderMap,
) -> Result<impl IntoResponse, ApiError> {
    let who = st.authenticate(&headers).await?;
    if who.scope != Scope::Admin {
        return Err(ApiError::Forbidden {
            scope: who.scope.as_str(),
            action: "reading usage",
            needs: "an admin token",
        });
    }
    let tenant = (who.tenant != SERVER_ADMIN_TENANT).then_some(who.tenant.as_str());
    // Include what is still buffered in memory.
    st.tracker.flush(st.store.as_ref(), now()).await?;
    let rows = st.store.usage(tenant).await?;
    let users: Vec<_> = rows
        .iter()
        .map(|r| {
            serde_json::json!({
                "user": r.user_name,
                "requests": r.usage.requests,
                "queried_hashes": r.usage.queried_hashes,
                "hits": r.usage.hits,
                "published_ids": r.usage.published_ids,
                "last_seen_at": r.last_seen_at,
            })
        })
        .collect();
    Ok(Json(serde_json::json!({ "users": users })))
}

/// 200 when the database answers a read and took the last write probe.
/// The read runs per request; the write (`WriteProbe`) at most every
/// `WRITE_PROBE_EVERY`.
pub async fn healthz(State(st): Shared) -> impl IntoResponse {
    if let Err(e) = st.store.ping().await {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("database unavailable: {e}\n"),
        );
    }
    match st.write_probe.check(st.store.as_ref()).await {
        Ok(()) => (StatusCode::OK, "ok\n".to_string()),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("database cannot be written: {e}\n"),
        ),
    }
}

/// How long a write probe's outcome stands for `/healthz`: one small
/// committed write per interval, however often the server is checked.
pub const WRITE_PROBE_EVERY: Duration = Duration::from_secs(5);

/// Longest a write probe may take before the store counts as unwritable
/// (a writer stuck behind a lock, a disk that no longer answers).
const WRITE_PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// The outcome of the last write probe, shared by concurrent checks: the
/// first one past `WRITE_PROBE_EVERY` probes, the others wait for it.
#[derive(Default)]
pub struct WriteProbe {
    last: tokio::sync::Mutex<Option<(Instant, Result<(), String>)>>,
}

impl WriteProbe {
    pub async fn check(&self, store: &dyn Store) -> Result<(), String> {
        let mut last = self.last.lock().await;
        if let Some((at, outcome)) = last.as_ref() {
            if at.elapsed() < WRITE_PROBE_EVERY {
                return outcome.clone();
            }
        }
        let outcome = match tokio::time::timeout(WRITE_PROBE_TIMEOUT, store.probe_write()).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!(
                "a one-row write did not commit within {} s",
                WRITE_PROBE_TIMEOUT.as_secs()
            )),
        };
        if let Err(e) = &outcome {
            tracing::warn!(error = %e, "write probe failed");
        }
        *last = Some((Instant::now(), outcome.clone()));
        outcome
    }
}

pub async fn metrics(State(st): Shared) -> impl IntoResponse {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        st.metrics.encode(),
    )
}

pub async fn not_found(uri: axum::http::Uri) -> ApiError {
    // A path may be 64 KB: quote a part.
    ApiError::NotFound(wire::excerpt(uri.path(), 200).into_owned())
}
