//! The team cache server: HTTP API v1 (the original's, defects fixed) and
//! our v2 extensions, over one storage interface with SQLite and PostgreSQL
//! backends.
//!
//! Layers: `serve` (the accept loop: connection cap, timeouts in `clock`,
//! bounded graceful shutdown; one `connection` each) -> `router` +
//! `handlers` (HTTP, no SQL; answers shaped in `wire`) -> `store` (the
//! `Store` traits, accounts and results, and the backends).
//! `launch_with_listener` takes a bound listener so tests can bind port 0;
//! the CLI (`crate::cli::server`) parses flags and calls it.

pub mod auth;
pub mod clock;
pub mod connection;
pub mod docs;
pub mod error;
pub mod error_bodies;
pub mod handlers;
pub mod metrics;
pub mod router;
pub mod serve;
pub mod store;
pub mod tracker;
pub mod wire;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use handlers::{now, AppState};
pub use serve::ConnectionLimits;
use store::{Store, StoreError};
pub use wire::Limits;

/// Errors that stop the server.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot open the database: {0}")]
    Store(#[from] StoreError),
    #[error("cannot create the initial admin token: {0}")]
    Bootstrap(#[from] auth::AuthError),
}

/// When entries are evicted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Entries not read for this long are removed; `None` keeps them.
    pub max_age: Option<Duration>,
    /// Above this many bytes of ids, least recently read entries are
    /// removed, down to nine tenths of it (`evict_down_to`).
    pub max_bytes: Option<u64>,
    /// How often entries are evicted by age; by size, also within a second
    /// of the publish that crosses `max_bytes`.
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
    pub connections: ConnectionLimits,
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
            connections: ConnectionLimits::default(),
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
/// requests (for `config.connections.shutdown_grace` at most), writes
/// buffered counters and returns.
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
    let store_changed = Arc::new(tokio::sync::Notify::new());
    let state = Arc::new(AppState {
        store: store.clone(),
        limits: config.limits,
        metrics: metrics.clone(),
        tracker: tracker.clone(),
        touch_granularity_secs: config.retention.touch_granularity.as_secs() as i64,
        store_changed: store_changed.clone(),
        write_probe: handlers::WriteProbe::default(),
    });
    let app = router::router(state, config.request_timeout);
    let background = [
        tokio::spawn(flush_loop(
            store.clone(),
            tracker.clone(),
            config.flush_interval,
        )),
        tokio::spawn(
            Maintenance {
                store: store.clone(),
                metrics: metrics.clone(),
                retention: config.retention,
            }
            .run(config.stats_interval, store_changed),
        ),
    ];
    serve::serve(listener, app, config.connections, metrics, shutdown).await;
    for task in background {
        task.abort();
    }
    if let Err(e) = tracker.flush(store.as_ref(), now()).await {
        tracing::warn!(error = %e, "could not write usage counters at shutdown");
    }
    tracing::info!("server stopped");
    Ok(())
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

/// Least time between two refreshes caused by publishes: under a stream of
/// publishes the store's size is read (a `SUM` over every row with
/// PostgreSQL) at most this often, and still within seconds of any publish.
const AFTER_PUBLISH_EVERY: Duration = Duration::from_secs(1);

/// Past the size limit, eviction by size goes down to this: the limit less
/// a tenth. Every eviction empties the cache of hot entries (which keys
/// went is not known above the store), so stopping right at the limit made
/// each publish past it evict a few entries and empty that cache again.
fn evict_down_to(max_bytes: u64) -> u64 {
    max_bytes - max_bytes / 10
}

/// The background job of retention and of the store's size gauges.
struct Maintenance {
    store: Arc<dyn Store>,
    metrics: Arc<metrics::Metrics>,
    retention: Retention,
}

impl Maintenance {
    /// Evicts by age every `retention.interval`; reads the store's size every
    /// `stats_every` and after publishes (`changed`), evicting by size as soon
    /// as a publish takes the store past `retention.max_bytes`. Before, the
    /// size was checked only every eviction interval (10 minutes by default),
    /// the store stayed that long above its limit and the gauges up to 30 s
    /// behind.
    async fn run(self, stats_every: Duration, changed: Arc<tokio::sync::Notify>) {
        let mut stats_tick = tokio::time::interval(stats_every);
        let mut evict_tick = tokio::time::interval(self.retention.interval);
        let mut last_change = tokio::time::Instant::now();
        loop {
            let by_age = tokio::select! {
                _ = stats_tick.tick() => false,
                _ = evict_tick.tick() => true,
                _ = changed.notified() => {
                    // Publishes during the wait leave one wake-up behind.
                    tokio::time::sleep_until(last_change + AFTER_PUBLISH_EVERY).await;
                    last_change = tokio::time::Instant::now();
                    false
                }
            };
            self.pass(by_age).await;
        }
    }

    /// Evicts what retention asks (by age only if `by_age`), then shows the size.
    async fn pass(&self, by_age: bool) {
        let age_limit = self.retention.max_age.filter(|_| by_age);
        if let Some(age) = age_limit {
            let before = now() - age.as_secs() as i64;
            self.evict(Some(before), None).await;
        }
        let Some(mut stats) = self.stats().await else {
            return;
        };
        if let Some(max) = self.retention.max_bytes.filter(|&max| stats.bytes > max) {
            self.evict(None, Some(evict_down_to(max))).await;
            match self.stats().await {
                Some(after) => stats = after,
                None => return,
            }
        }
        self.metrics.store_entries.set(stats.entries as i64);
        self.metrics.store_bytes.set(stats.bytes as i64);
    }

    async fn evict(&self, read_before: Option<i64>, max_bytes: Option<u64>) {
        match self.store.evict(read_before, max_bytes).await {
            Ok(0) => {}
            Ok(n) => {
                self.metrics.evicted_entries.inc_by(n);
                tracing::info!(removed = n, "evicted entries");
            }
            Err(e) => tracing::warn!(error = %e, "eviction failed"),
        }
    }

    async fn stats(&self) -> Option<store::StoreStats> {
        self.store
            .stats()
            .await
            .inspect_err(|e| tracing::warn!(error = %e, "could not read the store size"))
            .ok()
    }
}
