//! The PostgreSQL schema and its upgrades, applied in order at start;
//! `dryci_migrations` records which ran. All of them run in one
//! transaction under an advisory lock, so replicas starting together apply
//! them once, and a failed upgrade leaves the previous schema intact.

use super::super::Result;

/// Each runs once, in order; 1 is the first schema.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE users (
    id BIGSERIAL PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    tenant TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE TABLE tokens (
    id BIGSERIAL PRIMARY KEY,
    user_id BIGINT NOT NULL REFERENCES users(id),
    token_hash BYTEA NOT NULL UNIQUE,
    scope TEXT NOT NULL,
    label TEXT NOT NULL DEFAULT '',
    created_at BIGINT NOT NULL,
    expires_at BIGINT,
    revoked_at BIGINT
);
CREATE TABLE entries (
    id BIGSERIAL PRIMARY KEY,
    tenant TEXT NOT NULL,
    file_hash BYTEA NOT NULL,
    ids BYTEA NOT NULL,
    bytes BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    last_read_at BIGINT NOT NULL,
    UNIQUE (tenant, file_hash)
);
CREATE INDEX entries_last_read ON entries(last_read_at);
CREATE TABLE usage (
    user_id BIGINT PRIMARY KEY REFERENCES users(id),
    requests BIGINT NOT NULL DEFAULT 0,
    queried_hashes BIGINT NOT NULL DEFAULT 0,
    hits BIGINT NOT NULL DEFAULT 0,
    published_ids BIGINT NOT NULL DEFAULT 0,
    last_seen_at BIGINT
);
"#,
    // 2: one row that `/healthz` rewrites (`Store::probe_write`).
    r#"
CREATE TABLE dryci_health (
    id INT PRIMARY KEY CHECK (id = 1),
    probes BIGINT NOT NULL
);
INSERT INTO dryci_health (id, probes) VALUES (1, 0);
"#,
    // 3: the requirement sets of an entry's tests (`codec::encode_requirements`),
    // NULL while none of its tests was recorded with one; `bytes` counts them.
    r#"
ALTER TABLE entries ADD COLUMN requirements BYTEA;
"#,
];

/// Arbitrary constant naming DryCI's migration lock among advisory locks.
const MIGRATION_LOCK: i64 = 0x4472_7943_4931;

/// Brings the database to the latest schema.
pub async fn migrate(client: &mut deadpool_postgres::Object) -> Result<()> {
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    tx.batch_execute("CREATE TABLE IF NOT EXISTS dryci_migrations (version INT PRIMARY KEY)")
        .await?;
    let done: i32 = tx
        .query_one(
            "SELECT COALESCE(MAX(version), 0) FROM dryci_migrations",
            &[],
        )
        .await?
        .get(0);
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(done.max(0) as usize) {
        tx.batch_execute(sql).await?;
        tx.execute(
            "INSERT INTO dryci_migrations (version) VALUES ($1)",
            &[&(i as i32 + 1)],
        )
        .await?;
    }
    tx.commit().await?;
    Ok(())
}
