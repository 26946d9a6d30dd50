//! The team cache server: HTTP API v1 (the original's, defects fixed) and
//! our v2 extensions, over one storage interface with SQLite and PostgreSQL
//! backends.
//!
//! Layers: `router` + `handlers` (HTTP, no SQL; answers shaped in `wire`)
//! -> `store` (the `Store` traits, accounts and results, and the backends). `launch_with_listener` takes a bound listener so tests can
//! bind port 0; the CLI (`crate::cli::server`) parses flags and calls it.

pub mod auth;
pub mod docs;
pub mod error;
pub mod handlers;
pub mod listener;
pub mod metrics;
pub mod router;
pub mod store;
pub mod tracker;
pub mod wire;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use handlers::{now, AppState};
use store::{Store, StoreError};
pub use wire::Limits;

/// Errors that stop the server.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot open the database: {0}")]
    Store(#[from] StoreError),
    #[error("cannot create the initial admin token: {0}")]
    Bootstrap(#[from] auth::AuthError),
    #[error("HTTP server failed: {0}")]
    Serve(#[from] std::io::Error),
}

/// When entries are evicted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Entries not read for this long are removed; `None` keeps them.
    pub max_age: Option<Duration>,
    /// Least recently read entries are removed above this many bytes of ids.
    pub max_bytes: Option<u64>,
    /// How often the eviction job runs.
    pub interval: Duration,
    /// A read within this long after the last recorded one is not recorded
    /// again: last-read times are this coarse, and reads cost no writes.
    pub touch_granularity: Duration,
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            max_age: Some(Duration::from_secs(30 * 24 * 3600)),
            max_bytes: None,
            interval: Duration::from_secs(600),
            touch_granularity: Duration::from_secs(3600),
        }
    }
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub limits: Limits,
    pub retention: Retention,
    pub request_timeout: Duration,
    /// How often buffered read times and usage counters are written.
    pub flush_interval: Duration,
    /// How often store size metrics are refreshed.
    pub stats_interval: Duration,
    /// Bytes of hot entries kept in memory (0: none); `None` picks by
    /// backend: 16 MiB for SQLite, none for PostgreSQL, whose replicas
    /// would not see each other's writes (see `store::hot`).
    pub hot_cache_bytes: Option<u64>,
}

/// The default memory for hot entries with SQLite: about 50,000 entries of
/// 8 ids (the current hashes of a few large repositories), keeping a server
/// with a million stored hashes under 100 MB of RSS (80 MB measured).
pub const DEFAULT_HOT_CACHE_BYTES: u64 = 16 * 1024 * 1024;

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            limits: Limits::default(),
            retention: Retention::default(),
            request_timeout: Duration::from_secs(30),
            flush_interval: Duration::from_secs(5),
            stats_interval: Duration::from_secs(30),
            hot_cache_bytes: None,
        }
    }
}

/// Creates the `admin` user and returns its token if the database has no
/// user yet. The token exists nowhere else: the caller shows it once.
pub async fn bootstrap_admin(store: &dyn Store) -> Result<Option<String>, ServerError> {
    let token = auth::generate()?;
    Ok(store
        .bootstrap_admin(auth::hash(&token), now())
        .await?
        .then_some(token))
}

/// Serves on `listener` until `shutdown` resolves, then finishes in-flight
/// requests, writes buffered counters and returns.
pub async fn launch_with_listener(
    config: ServerConfig,
    store: Arc<dyn Store>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let metrics = Arc::new(metrics::Metrics::new());
    let hot_cache_bytes = config.hot_cache_bytes.unwrap_or(match store.backend() {
        "sqlite" => DEFAULT_HOT_CACHE_BYTES,
        _ => 0,
    });
    let store: Arc<dyn Store> = if hot_cache_bytes > 0 {
        Arc::new(store::hot::HotCache::new(
            store,
            hot_cache_bytes,
            metrics.hot_hits.clone(),
        ))
    } else {
        store
    };
    let tracker = Arc::new(tracker::Tracker::default());
    let state = Arc::new(AppState {
        store: store.clone(),
        limits: config.limits,
        metrics: metrics.clone(),
        tracker: tracker.clone(),
        touch_granularity_secs: config.retention.touch_granularity.as_secs() as i64,
    });
    let app = router::router(state, config.request_timeout);
    let background = [
        tokio::spawn(flush_loop(
            store.clone(),
            tracker.clone(),
            config.flush_interval,
        )),
        tokio::spawn(maintenance_loop(
            store.clone(),
            metrics,
            config.retention,
            config.stats_interval,
        )),
    ];
    let served = axum::serve(listener::JsonErrorListener(listener), app)
        .with_graceful_shutdown(shutdown)
        .await;
    for task in background {
        task.abort();
    }
    if let Err(e) = tracker.flush(store.as_ref(), now()).await {
        tracing::warn!(error = %e, "could not write usage counters at shutdown");
    }
    tracing::info!("server stopped");
    Ok(served?)
}

async fn flush_loop(store: Arc<dyn Store>, tracker: Arc<tracker::Tracker>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    loop {
        tick.tick().await;
        if let Err(e) = tracker.flush(store.as_ref(), now()).await {
            tracing::warn!(error = %e, "could not write read times and usage counters");
        }
    }
}

async fn maintenance_loop(
    store: Arc<dyn Store>,
    metrics: Arc<metrics::Metrics>,
    retention: Retention,
    stats_every: Duration,
) {
    let mut stats_tick = tokio::time::interval(stats_every);
    let mut evict_tick = tokio::time::interval(retention.interval);
    loop {
        tokio::select! {
            _ = stats_tick.tick() => {}
            _ = evict_tick.tick() => {
                let before = retention.max_age.map(|age| now() - age.as_secs() as i64);
                if before.is_some() || retention.max_bytes.is_some() {
                    match store.evict(before, retention.max_bytes).await {
                        Ok(0) => {}
                        Ok(n) => tracing::info!(removed = n, "evicted entries"),
                        Err(e) => tracing::warn!(error = %e, "eviction failed"),
                    }
                }
            }
        }
        match store.stats().await {
            Ok(s) => {
                metrics.store_entries.set(s.entries as i64);
                metrics.store_bytes.set(s.bytes as i64);
            }
            Err(e) => tracing::warn!(error = %e, "could not read the store size"),
        }
    }
}
