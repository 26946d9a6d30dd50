//! `dryci server` and `dryci admin`: argument parsing and dispatch to `crate::server`.
//!
//! Every flag also reads an environment variable (`DRYCI_*`), so a container
//! is configured without a command line. Values are validated here, before
//! anything is opened, and errors name the flag.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use clap::Subcommand;

use super::{CliError, ExitStatus};
use crate::server::store::{self, NewToken, Scope, Store, StoreError};
use crate::server::{self as srv, auth, ConnectionLimits, Limits, Retention, ServerConfig};

#[derive(Debug, clap::Args)]
pub struct ServerArgs {
    /// Database: a SQLite file path (or sqlite://PATH), or a postgres:// URL.
    #[arg(long, env = "DRYCI_DB", default_value = "dryci.sqlite")]
    db: String,
    /// Address to listen on; port 0 picks a free port (printed at start).
    #[arg(long, env = "DRYCI_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Largest accepted request body, in bytes (larger: 413).
    #[arg(long, env = "DRYCI_MAX_BODY_BYTES", default_value_t = 8 * 1024 * 1024)]
    max_body_bytes: usize,
    /// Most test-file hashes in one query (more: 422).
    #[arg(long, env = "DRYCI_MAX_HASHES_PER_QUERY", default_value_t = 50_000)]
    max_hashes_per_query: usize,
    /// Most node ids stored per test-file hash (the original's cap).
    #[arg(long, env = "DRYCI_MAX_IDS_PER_HASH", default_value_t = crate::protocol::MAX_IDS_PER_HASH)]
    max_ids_per_hash: usize,
    /// Most node ids one query answer may carry, summed over its hashes
    /// (more: 422 naming `test_file_hashes`, before the answer is built; the
    /// client then splits its query). About 35 bytes of answer per id.
    #[arg(long, env = "DRYCI_MAX_IDS_PER_ANSWER", default_value_t = srv::wire::DEFAULT_MAX_IDS_PER_ANSWER)]
    max_ids_per_answer: usize,
    /// Seconds after which a request is answered 408, counted from the end
    /// of its headers.
    #[arg(long, env = "DRYCI_REQUEST_TIMEOUT_SECS", default_value_t = 30)]
    request_timeout_secs: u64,
    /// Seconds a request's headers may take from their first byte; a
    /// connection whose headers are still incomplete then is closed.
    #[arg(long, env = "DRYCI_HEADER_READ_TIMEOUT_SECS", default_value_t = srv::serve::DEFAULT_HEADER_READ_TIMEOUT.as_secs())]
    header_read_timeout_secs: u64,
    /// Seconds a connection may stay open with no request in flight and
    /// nothing sent either way (between keep-alive requests, or before the
    /// first); then it is closed.
    #[arg(long, env = "DRYCI_IDLE_TIMEOUT_SECS", default_value_t = srv::serve::DEFAULT_IDLE_TIMEOUT.as_secs())]
    idle_timeout_secs: u64,
    /// Most connections open at once; one more is answered 503 (JSON body)
    /// and closed. Each takes a file descriptor: keep it under `ulimit -n`.
    #[arg(long, env = "DRYCI_MAX_CONNECTIONS", default_value_t = srv::serve::DEFAULT_MAX_CONNECTIONS)]
    max_connections: usize,
    /// After SIGTERM or Ctrl-C, seconds given to requests not yet answered
    /// (including ones whose headers are still arriving); connections still
    /// open then are dropped, and the server exits 0.
    #[arg(long, env = "DRYCI_SHUTDOWN_GRACE_SECS", default_value_t = srv::serve::DEFAULT_SHUTDOWN_GRACE.as_secs())]
    shutdown_grace_secs: u64,
    /// Evict entries not read for this many seconds (0: never). Default 30 days.
    #[arg(long, env = "DRYCI_EVICT_UNREAD_SECS", default_value_t = 30 * 24 * 3600)]
    evict_unread_secs: u64,
    /// Keep stored node ids under this many bytes (0: no limit): within a
    /// second of a publish that takes the store past it, the least recently
    /// read entries are evicted down to nine tenths of it.
    #[arg(long, env = "DRYCI_MAX_STORE_BYTES", default_value_t = 0)]
    max_store_bytes: u64,
    /// Seconds between evictions by age (by size: within a second of the
    /// publish that crosses --max-store-bytes, and at least this often).
    #[arg(long, env = "DRYCI_EVICTION_INTERVAL_SECS", default_value_t = 600)]
    eviction_interval_secs: u64,
    /// Last-read times are recorded at most this often per entry, in seconds.
    #[arg(long, env = "DRYCI_TOUCH_GRANULARITY_SECS", default_value_t = 3600)]
    touch_granularity_secs: u64,
    /// Milliseconds between writes of buffered read times and usage counters.
    #[arg(long, env = "DRYCI_FLUSH_INTERVAL_MS", default_value_t = 5000)]
    flush_interval_ms: u64,
    /// MiB of recently read entries kept in memory (0: none). Default: 16
    /// with SQLite; none with PostgreSQL, where it is safe only with a
    /// single server writing to the database.
    #[arg(long, env = "DRYCI_HOT_CACHE_MB")]
    hot_cache_mb: Option<u64>,
    /// Database connections (SQLite readers, or the PostgreSQL pool size).
    #[arg(long, env = "DRYCI_DB_CONNECTIONS", default_value_t = 4)]
    db_connections: usize,
    /// Log format on stderr.
    #[arg(long, env = "DRYCI_LOG_FORMAT", value_enum, default_value = "text")]
    log_format: LogFormat,
    /// Worker threads of the async runtime (0: one per core).
    #[arg(long, env = "DRYCI_WORKER_THREADS", default_value_t = 0)]
    worker_threads: usize,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, clap::Args)]
pub struct AdminArgs {
    /// Database of the server: a SQLite file path, or a postgres:// URL.
    #[arg(long, env = "DRYCI_DB", default_value = "dryci.sqlite")]
    db: String,
    #[command(subcommand)]
    command: AdminCommand,
}

#[derive(Debug, Subcommand)]
enum AdminCommand {
    /// Create a user; its results live in its tenant (default: its own name).
    CreateUser {
        name: String,
        /// Share results with every user of this tenant (e.g. a team). An
        /// admin token sees the usage of its own tenant only, except for
        /// users of the tenant `admin` (the first-start admin's), whose
        /// admin tokens see every tenant.
        #[arg(long)]
        tenant: Option<String>,
    },
    /// List users.
    ListUsers,
    /// Create a token for a user and print it (shown only this once).
    CreateToken {
        user: String,
        #[arg(long, default_value = "read-write")]
        scope: Scope,
        #[arg(long, default_value = "")]
        label: String,
        /// Expire the token after this many days.
        #[arg(long)]
        expires_in_days: Option<f64>,
    },
    /// List tokens (never the secrets).
    ListTokens {
        #[arg(long)]
        user: Option<String>,
    },
    /// Expire a token now, or at a unix time with --at.
    ExpireToken {
        id: i64,
        #[arg(long)]
        at: Option<i64>,
    },
    /// Revoke a token for good.
    RevokeToken { id: i64 },
    /// Usage counters per user.
    Usage,
}

fn runtime(workers: usize) -> Result<tokio::runtime::Runtime, CliError> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if workers > 0 {
        builder.worker_threads(workers);
    }
    builder
        .enable_all()
        .build()
        .map_err(|e| CliError::new("cannot start the async runtime").with_source(e))
}

fn positive(flag: &str, value: u64) -> Result<(), CliError> {
    if value == 0 {
        return Err(CliError::new(format!("--{flag} must be greater than 0")));
    }
    Ok(())
}

impl ServerArgs {
    fn config(&self) -> Result<ServerConfig, CliError> {
        positive("max-body-bytes", self.max_body_bytes as u64)?;
        positive("max-hashes-per-query", self.max_hashes_per_query as u64)?;
        positive("max-ids-per-hash", self.max_ids_per_hash as u64)?;
        positive("max-ids-per-answer", self.max_ids_per_answer as u64)?;
        positive("request-timeout-secs", self.request_timeout_secs)?;
        positive("header-read-timeout-secs", self.header_read_timeout_secs)?;
        positive("idle-timeout-secs", self.idle_timeout_secs)?;
        positive("max-connections", self.max_connections as u64)?;
        positive("shutdown-grace-secs", self.shutdown_grace_secs)?;
        positive("eviction-interval-secs", self.eviction_interval_secs)?;
        positive("flush-interval-ms", self.flush_interval_ms)?;
        positive("db-connections", self.db_connections as u64)?;
        Ok(ServerConfig {
            limits: Limits {
                max_body_bytes: self.max_body_bytes,
                max_hashes_per_query: self.max_hashes_per_query,
                max_ids_per_hash: self.max_ids_per_hash,
                max_ids_per_answer: self.max_ids_per_answer,
            },
            retention: Retention {
                max_age: (self.evict_unread_secs > 0)
                    .then(|| Duration::from_secs(self.evict_unread_secs)),
                max_bytes: (self.max_store_bytes > 0).then_some(self.max_store_bytes),
                interval: Duration::from_secs(self.eviction_interval_secs),
                touch_granularity: Duration::from_secs(self.touch_granularity_secs),
            },
            connections: ConnectionLimits {
                max_connections: self.max_connections,
                header_read_timeout: Duration::from_secs(self.header_read_timeout_secs),
                idle_timeout: Duration::from_secs(self.idle_timeout_secs),
                shutdown_grace: Duration::from_secs(self.shutdown_grace_secs),
            },
            request_timeout: Duration::from_secs(self.request_timeout_secs),
            flush_interval: Duration::from_millis(self.flush_interval_ms),
            stats_interval: Duration::from_secs(self.eviction_interval_secs.min(30)),
            hot_cache_bytes: self.hot_cache_mb.map(|mb| mb.saturating_mul(1024 * 1024)),
        })
    }
}

fn init_logs(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("DRYCI_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        // A log line that cannot be written (stderr to a file on a full
        // disk) is lost; by default tracing reports that with `eprintln!`,
        // which panics when stderr fails, and the panic dropped the
        // connection of the request that was logging.
        .log_internal_errors(false);
    // try_init: a second call (tests in one process) keeps the first subscriber.
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

fn db_error(db: &str, e: StoreError) -> CliError {
    CliError::new(format!("cannot open the database {db:?}"))
        .with_source(e)
        .with_hint("pass --db PATH for SQLite or --db postgres://user@host/dbname")
}

pub fn run_server(args: ServerArgs) -> Result<ExitStatus, CliError> {
    let config = args.config()?;
    init_logs(args.log_format);
    let rt = runtime(args.worker_threads)?;
    rt.block_on(async move {
        let shutdown = shutdown_signal();
        let store = store::open(&args.db, args.db_connections)
            .await
            .map_err(|e| db_error(&args.db, e))?;
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .map_err(|e| {
                CliError::new(format!("cannot listen on {}", args.listen)).with_source(e)
            })?;
        let addr = listener
            .local_addr()
            .map_err(|e| CliError::new("cannot read the bound address").with_source(e))?;
        // Only once the port is ours: the token is stored hashed and shown
        // this once, so a start that then failed to listen (port taken)
        // lost it for good, and the next start printed none.
        if let Some(token) = srv::bootstrap_admin(store.as_ref())
            .await
            .map_err(|e| CliError::new("cannot create the initial admin").with_source(e))?
        {
            println!("initial admin token (shown only once, store it now): {token}");
        }
        // Tests and scripts parse this line to find the port when --listen ends in :0.
        println!("dryci server listening on http://{addr}");
        tracing::info!(%addr, backend = store.backend(), "listening");
        use std::io::Write;
        let _ = std::io::stdout().flush();
        srv::launch_with_listener(config, store, listener, shutdown)
            .await
            .map_err(|e| CliError::new("the server stopped with an error").with_source(e))?;
        Ok(ExitStatus::Success)
    })
}

/// Resolves on SIGTERM or Ctrl-C; the server then stops accepting and
/// finishes what it has read, within --shutdown-grace-secs. The handlers are
/// installed when this is called, before the port is announced: a signal
/// that came before the serve loop first polled the future would otherwise
/// kill the process with the default action, mid-write.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    let (mut term, mut interrupt) = {
        use tokio::signal::unix::{signal, SignalKind};
        (
            signal(SignalKind::terminate()).ok(),
            signal(SignalKind::interrupt()).ok(),
        )
    };
    async move {
        #[cfg(unix)]
        {
            tokio::select! {
                _ = received(term.as_mut()) => {},
                _ = received(interrupt.as_mut()) => {},
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
        tracing::info!("shutdown requested; finishing in-flight requests");
    }
}

/// Resolves when `stream` delivers its signal; never without a stream.
#[cfg(unix)]
async fn received(stream: Option<&mut tokio::signal::unix::Signal>) {
    match stream {
        Some(stream) => {
            stream.recv().await;
        }
        None => std::future::pending::<()>().await,
    }
}

fn fmt_time(t: Option<i64>) -> String {
    t.map_or_else(|| "-".to_string(), |t| t.to_string())
}

pub fn run_admin(args: AdminArgs) -> Result<ExitStatus, CliError> {
    let rt = runtime(1)?;
    rt.block_on(async move {
        let store: Arc<dyn Store> = store::open(&args.db, 1)
            .await
            .map_err(|e| db_error(&args.db, e))?;
        let now = srv::handlers::now();
        let fail = |what: &str| {
            let what = what.to_string();
            move |e: StoreError| CliError::new(what).with_source(e)
        };
        match args.command {
            AdminCommand::CreateUser { name, tenant } => {
                if name.trim().is_empty() {
                    return Err(CliError::new("the user name is empty"));
                }
                let tenant = tenant.unwrap_or_else(|| name.clone());
                let user = store
                    .create_user(&name, &tenant, now)
                    .await
                    .map_err(fail("cannot create the user"))?;
                println!(
                    "created user {} (id {}, tenant {})",
                    user.name, user.id, user.tenant
                );
            }
            AdminCommand::ListUsers => {
                println!("{:>5}  {:<24} {:<24} created_at", "id", "name", "tenant");
                for u in store
                    .list_users()
                    .await
                    .map_err(fail("cannot list users"))?
                {
                    println!(
                        "{:>5}  {:<24} {:<24} {}",
                        u.id, u.name, u.tenant, u.created_at
                    );
                }
            }
            AdminCommand::CreateToken {
                user,
                scope,
                label,
                expires_in_days,
            } => {
                let expires_at = match expires_in_days {
                    Some(d) if !(d > 0.0 && d.is_finite()) => {
                        return Err(CliError::new("--expires-in-days must be a positive number"))
                    }
                    Some(d) => Some(now + (d * 86_400.0) as i64),
                    None => None,
                };
                let token = auth::generate()
                    .map_err(|e| CliError::new("cannot generate a token").with_source(e))?;
                let row = store
                    .create_token(
                        NewToken {
                            user_name: user,
                            scope,
                            label,
                            token_hash: auth::hash(&token),
                            expires_at,
                        },
                        now,
                    )
                    .await
                    .map_err(fail("cannot create the token"))?;
                eprintln!(
                    "created token {} for {} ({}, expires {}); it is shown only once:",
                    row.id,
                    row.user_name,
                    row.scope,
                    fmt_time(row.expires_at)
                );
                println!("{token}");
            }
            AdminCommand::ListTokens { user } => {
                println!(
                    "{:>5}  {:<20} {:<11} {:<12} {:<12} {:<12} label",
                    "id", "user", "scope", "created_at", "expires_at", "revoked_at"
                );
                for t in store
                    .list_tokens(user.as_deref())
                    .await
                    .map_err(fail("cannot list tokens"))?
                {
                    println!(
                        "{:>5}  {:<20} {:<11} {:<12} {:<12} {:<12} {}",
                        t.id,
                        t.user_name,
                        t.scope,
                        t.created_at,
                        fmt_time(t.expires_at),
                        fmt_time(t.revoked_at),
                        t.label
                    );
                }
            }
            AdminCommand::ExpireToken { id, at } => {
                let at = at.unwrap_or(now);
                store
                    .set_token_expiry(id, Some(at))
                    .await
                    .map_err(fail("cannot expire the token"))?;
                println!("token {id} expires at {at}");
            }
            AdminCommand::RevokeToken { id } => {
                store
                    .revoke_token(id, now)
                    .await
                    .map_err(fail("cannot revoke the token"))?;
                println!("token {id} revoked");
            }
            AdminCommand::Usage => {
                println!(
                    "{:<24} {:>10} {:>14} {:>10} {:>14} last_seen_at",
                    "user", "requests", "queried_hashes", "hits", "published_ids"
                );
                for r in store.usage(None).await.map_err(fail("cannot read usage"))? {
                    println!(
                        "{:<24} {:>10} {:>14} {:>10} {:>14} {}",
                        r.user_name,
                        r.usage.requests,
                        r.usage.queried_hashes,
                        r.usage.hits,
                        r.usage.published_ids,
                        fmt_time(r.last_seen_at)
                    );
                }
            }
        }
        Ok(ExitStatus::Success)
    })
}
