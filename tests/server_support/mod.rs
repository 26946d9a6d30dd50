//! Shared harness of the server integration tests: starts the real `dryci`
//! binary on 127.0.0.1:0 against a temporary SQLite file (or the PostgreSQL
//! URL of `DRYCI_TEST_POSTGRES_URL`), reads the bound address from its
//! stdout, and drives it with the project's own client.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use dryci::cache::http::HttpClient;

pub const BIN: &str = env!("CARGO_BIN_EXE_dryci");

/// Where a test server keeps its data.
#[derive(Debug, Clone)]
pub enum Backend {
    Sqlite(PathBuf),
    Postgres(String),
}

impl Backend {
    pub fn db_arg(&self) -> String {
        match self {
            Backend::Sqlite(p) => p.display().to_string(),
            Backend::Postgres(url) => url.clone(),
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Backend::Sqlite(_) => "sqlite",
            Backend::Postgres(_) => "postgres",
        }
    }
}

/// SQLite in `dir`, plus PostgreSQL when `DRYCI_TEST_POSTGRES_URL` is set.
/// In CI (`CI=true`) a missing URL fails the test instead of skipping it.
pub fn backends(dir: &tempfile::TempDir) -> Vec<Backend> {
    let mut all = vec![Backend::Sqlite(dir.path().join("dryci.sqlite"))];
    match std::env::var("DRYCI_TEST_POSTGRES_URL") {
        Ok(url) if !url.is_empty() => all.push(Backend::Postgres(url)),
        _ if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("CI=true but DRYCI_TEST_POSTGRES_URL is not set: .ci/postgres.sh must start PostgreSQL")
        }
        _ => eprintln!("note: DRYCI_TEST_POSTGRES_URL is not set; skipping the PostgreSQL backend"),
    }
    all
}

/// `backend` on storage of its own: a new SQLite file named `name` in
/// `dir`, or a new schema of the PostgreSQL database, dropped (with its
/// tables) when the returned guard is. For tests that evict: eviction
/// takes entries of every tenant, so on the shared database it would
/// remove what other tests, and other runs, are storing.
pub fn isolated(
    backend: &Backend,
    dir: &std::path::Path,
    name: &str,
) -> (Backend, Option<PrivateSchema>) {
    match backend {
        Backend::Sqlite(_) => (Backend::Sqlite(dir.join(format!("{name}.sqlite"))), None),
        Backend::Postgres(url) => {
            let schema = PrivateSchema::create(url, name);
            (Backend::Postgres(schema.url.clone()), Some(schema))
        }
    }
}

/// A PostgreSQL schema that exists while this value does; `url` connects
/// with it as the only schema on the search path.
pub struct PrivateSchema {
    base_url: String,
    name: String,
    pub url: String,
}

impl PrivateSchema {
    fn create(base_url: &str, name: &str) -> PrivateSchema {
        let name = unique(&format!("dryci_{name}")).replace('-', "_");
        postgres_execute(base_url, &format!("CREATE SCHEMA {name}"))
            .unwrap_or_else(|e| panic!("{e}"));
        let separator = if base_url.contains('?') { '&' } else { '?' };
        PrivateSchema {
            url: format!("{base_url}{separator}options=-csearch_path%3D{name}"),
            base_url: base_url.to_string(),
            name,
        }
    }
}

impl Drop for PrivateSchema {
    fn drop(&mut self) {
        // No panic here: this may run while a failed test unwinds.
        let sql = format!("DROP SCHEMA IF EXISTS {} CASCADE", self.name);
        if let Err(e) = postgres_execute(&self.base_url, &sql) {
            eprintln!("warning: {e}");
        }
    }
}

/// A PostgreSQL database of its own next to the one of `base_url`, dropped
/// (its connections closed) with this value. For tests that change a
/// whole database's settings.
pub struct PrivateDatabase {
    base_url: String,
    pub name: String,
    pub url: String,
}

impl PrivateDatabase {
    pub fn create(base_url: &str, name: &str) -> PrivateDatabase {
        let name = unique(&format!("dryci_{name}")).replace('-', "_");
        postgres_execute(base_url, &format!("CREATE DATABASE {name}"))
            .unwrap_or_else(|e| panic!("{e}"));
        let (before_query, query) = match base_url.split_once('?') {
            Some((url, query)) => (url, format!("?{query}")),
            None => (base_url, String::new()),
        };
        let server = before_query
            .rsplit_once('/')
            .map_or(before_query, |(server, _)| server);
        PrivateDatabase {
            url: format!("{server}/{name}{query}"),
            base_url: base_url.to_string(),
            name,
        }
    }

    /// Runs `sql` on the server of this database, from the base database.
    pub fn execute(&self, sql: &str) {
        postgres_execute(&self.base_url, sql).unwrap_or_else(|e| panic!("{e}"));
    }
}

impl Drop for PrivateDatabase {
    fn drop(&mut self) {
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        if let Err(e) = postgres_execute(&self.base_url, &sql) {
            eprintln!("warning: {e}");
        }
    }
}

/// Runs `sql` on the database at `url`, on a runtime of its own.
fn postgres_execute(url: &str, sql: &str) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start a runtime: {e}"))?;
    runtime.block_on(async {
        let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
            .await
            .map_err(|e| format!("cannot connect to {url}: {e}"))?;
        let connection = tokio::spawn(connection);
        let done = client
            .batch_execute(sql)
            .await
            .map_err(|e| format!("{sql}: {e}"));
        drop(client);
        let _ = connection.await;
        done
    })
}

/// A unique suffix so runs against a shared PostgreSQL database never collide.
pub fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{prefix}-{}-{nanos}", std::process::id())
}

pub struct Server {
    pub child: Child,
    pub url: String,
    pub admin_token: Option<String>,
    pub backend: Backend,
    pub log: PathBuf,
}

impl Server {
    pub fn start(backend: &Backend, log_dir: &std::path::Path, extra: &[&str]) -> Server {
        Server::start_under(backend, log_dir, extra, &[])
    }

    /// Starts the server as `start`, through `wrapper` (a command that ends
    /// by running its arguments, e.g. `sh -c '...; exec "$0" "$@"'`).
    pub fn start_under(
        backend: &Backend,
        log_dir: &std::path::Path,
        extra: &[&str],
        wrapper: &[&str],
    ) -> Server {
        let log = log_dir.join(format!("server-{}.log", unique("log")));
        let stderr = std::fs::File::create(&log).unwrap();
        let mut command = match wrapper.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(BIN);
                c
            }
            None => Command::new(BIN),
        };
        let mut child = command
            .args([
                "server",
                "--db",
                &backend.db_arg(),
                "--listen",
                "127.0.0.1:0",
            ])
            .args(extra)
            .env("DRYCI_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        // Owned by `Server` from here on, so its Drop kills and reaps the child on any panic.
        let mut server = Server {
            child,
            url: String::new(),
            admin_token: None,
            backend: backend.clone(),
            log,
        };
        let (tx, rx) = mpsc::channel();
        // Keeps draining stdout for the server's whole life so it never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                // A send error only means the test stopped listening; keep draining.
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let Ok(line) = rx.recv_timeout(left) else {
                panic!(
                    "server did not start; log:\n{}",
                    std::fs::read_to_string(&server.log).unwrap_or_default()
                )
            };
            if let Some(token) =
                line.strip_prefix("initial admin token (shown only once, store it now): ")
            {
                server.admin_token = Some(token.trim().to_string());
            }
            if let Some(addr) = line.strip_prefix("dryci server listening on ") {
                server.url = addr.trim().to_string();
                return server;
            }
        }
    }

    pub fn client(&self, token: Option<&str>) -> HttpClient {
        HttpClient::new(
            &self.url,
            token.map(str::to_string),
            Duration::from_secs(10),
        )
        .unwrap()
    }

    /// Runs `dryci admin --db <db> ARGS`; returns (exit code, stdout, stderr).
    pub fn admin(&self, args: &[&str]) -> (i32, String, String) {
        admin(&self.backend, args)
    }

    /// Creates a user (tenant defaults to its name) and a token of `scope`.
    pub fn user_token(&self, user: &str, tenant: Option<&str>, scope: &str) -> String {
        let mut args = vec!["create-user", user];
        if let Some(t) = tenant {
            args.extend(["--tenant", t]);
        }
        let (code, out, err) = self.admin(&args);
        assert!(
            code == 0 || err.contains("already exists"),
            "create-user: {out}{err}"
        );
        self.token(user, scope, &[])
    }

    pub fn token(&self, user: &str, scope: &str, extra: &[&str]) -> String {
        let mut args = vec!["create-token", user, "--scope", scope];
        args.extend(extra);
        let (code, out, err) = self.admin(&args);
        assert_eq!(code, 0, "create-token: {out}{err}");
        out.trim().to_string()
    }

    /// The id of the most recent token of `user` (from `admin list-tokens`).
    pub fn last_token_id(&self, user: &str) -> String {
        let (code, out, err) = self.admin(&["list-tokens", "--user", user]);
        assert_eq!(code, 0, "{err}");
        out.lines()
            .last()
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap()
            .to_string()
    }

    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM and waits for the exit status (at most `within`).
    pub fn terminate(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn admin(backend: &Backend, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN)
        .args(["admin", "--db", &backend.db_arg()])
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Hex of `n` bytes derived from `seed` (lowercase, as the plugin sends).
pub fn hex_id(seed: &str, bytes: usize) -> String {
    blake3::hash(seed.as_bytes()).to_hex()[..bytes * 2].to_string()
}

pub fn file_hash(seed: &str) -> String {
    hex_id(seed, 32)
}

pub fn node_id(seed: &str) -> String {
    hex_id(seed, 16)
}

/// A raw POST for requests the client would never send; returns (status, body).
pub fn raw_post(url: &str, authorization: Option<&str>, body: Vec<u8>) -> (u16, String) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .proxy(None)
        .build()
        .new_agent();
    let mut req = agent.post(url).header("Content-Type", "application/json");
    if let Some(a) = authorization {
        req = req.header("Authorization", a);
    }
    match req.send(&body[..]) {
        Ok(mut resp) => (
            resp.status().as_u16(),
            resp.body_mut().read_to_string().unwrap_or_default(),
        ),
        Err(e) => (0, e.to_string()),
    }
}

pub fn raw_get(url: &str, authorization: Option<&str>) -> (u16, String) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .proxy(None)
        .build()
        .new_agent();
    let mut req = agent.get(url);
    if let Some(a) = authorization {
        req = req.header("Authorization", a);
    }
    let mut resp = req.call().unwrap();
    (
        resp.status().as_u16(),
        resp.body_mut().read_to_string().unwrap_or_default(),
    )
}

/// The value of the sample `name` (a whole line's first word, labels
/// included) on the server's `/metrics`, if it is there.
pub fn metric(url: &str, name: &str) -> Option<f64> {
    let (_, text) = raw_get(&format!("{url}/metrics"), None);
    text.lines().find_map(|line| {
        let (sample, value) = line.rsplit_once(' ')?;
        (sample == name).then(|| value.parse().ok())?
    })
}

/// Polls `check` every 100 ms until it returns true or `within` passes;
/// returns its last answer.
pub fn eventually(within: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if check() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
