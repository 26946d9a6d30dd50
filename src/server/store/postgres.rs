//! The PostgreSQL backend, for several server replicas sharing one database.
//!
//! Same schema and semantics as the SQLite backend. A publish locks the rows
//! it merges (`SELECT ... FOR UPDATE`, in hash order so two publishes cannot
//! deadlock) and answers after `COMMIT`. Migrations run under an advisory
//! lock so replicas starting together apply them once.

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio_postgres::NoTls;

use super::{
    codec, merge_ids, token_updated, Entry, FileKey, NewToken, Result, Scope, Store, StoreError,
    StoreStats, StoredId, TokenAuth, TokenRow, UsageDelta, UsageRow, UserRow,
};

const MIGRATIONS: &[&str] = &[r#"
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
"#];

/// Arbitrary constant naming DryCI's migration lock among advisory locks.
const MIGRATION_LOCK: i64 = 0x4472_7943_4931;

pub struct PostgresStore {
    pool: Pool,
}

fn pool_err(e: impl std::fmt::Display) -> StoreError {
    StoreError::Pool(e.to_string())
}

fn scope_of(s: &str) -> Result<Scope> {
    s.parse().map_err(|reason| StoreError::Corrupt {
        table: "tokens",
        reason,
    })
}

fn hash32(table: &'static str, v: Vec<u8>) -> Result<[u8; 32]> {
    v.try_into().map_err(|_| StoreError::Corrupt {
        table,
        reason: "hash is not 32 bytes".into(),
    })
}

impl PostgresStore {
    pub async fn open(url: &str, pool_size: usize) -> Result<Self> {
        let config: tokio_postgres::Config = url.parse()?;
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(pool_size.max(1))
            .build()
            .map_err(pool_err)?;
        let store = Self { pool };
        store.migrate().await?;
        Ok(store)
    }

    async fn client(&self) -> Result<deadpool_postgres::Object> {
        self.pool.get().await.map_err(|e| match e {
            deadpool_postgres::PoolError::Backend(e) => StoreError::Postgres(e),
            other => pool_err(other),
        })
    }

    async fn migrate(&self) -> Result<()> {
        let mut client = self.client().await?;
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
}

#[async_trait::async_trait]
impl Store for PostgresStore {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    async fn ping(&self) -> Result<()> {
        self.client().await?.execute("SELECT 1", &[]).await?;
        Ok(())
    }

    async fn find_token(&self, token_hash: [u8; 32]) -> Result<Option<TokenAuth>> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(
                "SELECT t.id, t.token_hash, u.id, u.name, u.tenant, t.scope, t.expires_at, t.revoked_at \
                 FROM tokens t JOIN users u ON u.id = t.user_id WHERE t.token_hash = $1",
            )
            .await?;
        let Some(row) = client.query_opt(&stmt, &[&&token_hash[..]]).await? else {
            return Ok(None);
        };
        Ok(Some(TokenAuth {
            token_id: row.get(0),
            token_hash: hash32("tokens", row.get(1))?,
            user_id: row.get(2),
            user_name: row.get(3),
            tenant: row.get(4),
            scope: scope_of(row.get(5))?,
            expires_at: row.get(6),
            revoked_at: row.get(7),
        }))
    }

    async fn bootstrap_admin(&self, token_hash: [u8; 32], now: i64) -> Result<bool> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        // Serialises replicas starting together: only one creates the admin.
        tx.batch_execute("LOCK TABLE users IN SHARE ROW EXCLUSIVE MODE")
            .await?;
        let users: i64 = tx
            .query_one("SELECT COUNT(*) FROM users", &[])
            .await?
            .get(0);
        if users > 0 {
            return Ok(false);
        }
        let user_id: i64 = tx
            .query_one("INSERT INTO users (name, tenant, created_at) VALUES ('admin', 'admin', $1) RETURNING id", &[&now])
            .await?
            .get(0);
        tx.execute(
            "INSERT INTO tokens (user_id, token_hash, scope, label, created_at) VALUES ($1, $2, 'admin', 'initial admin token', $3)",
            &[&user_id, &&token_hash[..], &now],
        )
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn create_user(&self, name: &str, tenant: &str, now: i64) -> Result<UserRow> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                "INSERT INTO users (name, tenant, created_at) VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING RETURNING id",
                &[&name, &tenant, &now],
            )
            .await?;
        match row {
            Some(row) => Ok(UserRow {
                id: row.get(0),
                name: name.to_string(),
                tenant: tenant.to_string(),
                created_at: now,
            }),
            None => Err(StoreError::Conflict {
                what: "user",
                name: name.to_string(),
            }),
        }
    }

    async fn list_users(&self) -> Result<Vec<UserRow>> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT id, name, tenant, created_at FROM users ORDER BY id",
                &[],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| UserRow {
                id: r.get(0),
                name: r.get(1),
                tenant: r.get(2),
                created_at: r.get(3),
            })
            .collect())
    }

    async fn create_token(&self, token: NewToken, now: i64) -> Result<TokenRow> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                "INSERT INTO tokens (user_id, token_hash, scope, label, created_at, expires_at) \
                 SELECT id, $2, $3, $4, $5, $6 FROM users WHERE name = $1 RETURNING id",
                &[
                    &token.user_name,
                    &&token.token_hash[..],
                    &token.scope.as_str(),
                    &token.label,
                    &now,
                    &token.expires_at,
                ],
            )
            .await?;
        let Some(row) = row else {
            return Err(StoreError::NotFound {
                what: "user",
                name: token.user_name,
            });
        };
        Ok(TokenRow {
            id: row.get(0),
            user_name: token.user_name,
            scope: token.scope,
            label: token.label,
            created_at: now,
            expires_at: token.expires_at,
            revoked_at: None,
        })
    }

    async fn list_tokens(&self, user_name: Option<&str>) -> Result<Vec<TokenRow>> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT t.id, u.name, t.scope, t.label, t.created_at, t.expires_at, t.revoked_at \
                 FROM tokens t JOIN users u ON u.id = t.user_id \
                 WHERE $1::TEXT IS NULL OR u.name = $1 ORDER BY t.id",
                &[&user_name],
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok(TokenRow {
                    id: r.get(0),
                    user_name: r.get(1),
                    scope: scope_of(r.get(2))?,
                    label: r.get(3),
                    created_at: r.get(4),
                    expires_at: r.get(5),
                    revoked_at: r.get(6),
                })
            })
            .collect()
    }

    async fn set_token_expiry(&self, token_id: i64, expires_at: Option<i64>) -> Result<()> {
        let client = self.client().await?;
        let n = client
            .execute(
                "UPDATE tokens SET expires_at = $2 WHERE id = $1",
                &[&token_id, &expires_at],
            )
            .await?;
        token_updated(n, token_id)
    }

    async fn revoke_token(&self, token_id: i64, now: i64) -> Result<()> {
        let client = self.client().await?;
        let n = client
            .execute(
                "UPDATE tokens SET revoked_at = COALESCE(revoked_at, $2) WHERE id = $1",
                &[&token_id, &now],
            )
            .await?;
        token_updated(n, token_id)
    }

    async fn query(&self, tenant: &str, hashes: &[FileKey]) -> Result<Vec<Option<Entry>>> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached("SELECT file_hash, ids, last_read_at FROM entries WHERE tenant = $1 AND file_hash = ANY($2)")
            .await?;
        let keys: Vec<&[u8]> = hashes.iter().map(|h| &h[..]).collect();
        let rows = client.query(&stmt, &[&tenant, &keys]).await?;
        let mut found = std::collections::HashMap::with_capacity(rows.len());
        for row in rows {
            let hash = hash32("entries", row.get(0))?;
            let ids = codec::decode("entries", row.get::<_, &[u8]>(1))?;
            found.insert(
                hash,
                Entry {
                    ids,
                    last_read_at: row.get(2),
                },
            );
        }
        // Duplicated request hashes each get their answer, hence clone not remove.
        Ok(hashes.iter().map(|h| found.get(h).cloned()).collect())
    }

    async fn publish(
        &self,
        tenant: &str,
        batch: Vec<(FileKey, Vec<StoredId>)>,
        max_ids: usize,
        now: i64,
    ) -> Result<u64> {
        if batch.is_empty() {
            return Ok(0);
        }
        let mut batch = batch;
        // Sorted keys: concurrent publishes lock rows in the same order, so they cannot deadlock.
        batch.sort_by_key(|entry| entry.0);
        let keys: Vec<&[u8]> = batch.iter().map(|(h, _)| &h[..]).collect();
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        // Three round trips per publish whatever its size: create missing
        // rows, lock and read them all, write back the merged ones.
        let ensure = tx
            .prepare_cached(
                "INSERT INTO entries (tenant, file_hash, ids, bytes, created_at, updated_at, last_read_at) \
                 SELECT $1, k, ''::BYTEA, 0, $3, $3, $3 FROM unnest($2::BYTEA[]) AS k \
                 ON CONFLICT (tenant, file_hash) DO NOTHING",
            )
            .await?;
        tx.execute(&ensure, &[&tenant, &keys, &now]).await?;
        let lock = tx
            .prepare_cached(
                "SELECT file_hash, ids FROM entries WHERE tenant = $1 AND file_hash = ANY($2) \
                 ORDER BY file_hash FOR UPDATE",
            )
            .await?;
        let mut stored = std::collections::HashMap::with_capacity(batch.len());
        for row in tx.query(&lock, &[&tenant, &keys]).await? {
            let hash = hash32("entries", row.get(0))?;
            let ids: Vec<StoredId> = codec::decode("entries", row.get::<_, &[u8]>(1))?;
            stored.insert(hash, ids);
        }
        let (mut hashes, mut blobs, mut sizes) = (Vec::new(), Vec::new(), Vec::new());
        let mut added = 0;
        for (hash, ids) in &batch {
            let merged = stored.entry(*hash).or_default();
            let was_empty = merged.is_empty();
            let new = merge_ids(merged, ids, max_ids);
            added += new;
            if !was_empty && new == 0 && ids.iter().all(|i| i.duration_ms.is_none()) {
                continue;
            }
            let blob = codec::encode(merged);
            sizes.push(blob.len() as i64);
            blobs.push(blob);
            hashes.push(&hash[..]);
        }
        if !hashes.is_empty() {
            let update = tx
                .prepare_cached(
                    "UPDATE entries e SET ids = v.ids, bytes = v.bytes, updated_at = $5, \
                     last_read_at = GREATEST(e.last_read_at, $5) \
                     FROM unnest($2::BYTEA[], $3::BYTEA[], $4::BIGINT[]) AS v(file_hash, ids, bytes) \
                     WHERE e.tenant = $1 AND e.file_hash = v.file_hash",
                )
                .await?;
            tx.execute(&update, &[&tenant, &hashes, &blobs, &sizes, &now])
                .await?;
        }
        tx.commit().await?;
        Ok(added)
    }

    async fn touch(&self, reads: Vec<(String, FileKey)>, now: i64) -> Result<()> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(
                "UPDATE entries SET last_read_at = $3 WHERE tenant = $1 AND file_hash = ANY($2) AND last_read_at < $3",
            )
            .await?;
        let mut by_tenant: std::collections::BTreeMap<String, Vec<FileKey>> = Default::default();
        for (tenant, hash) in reads {
            by_tenant.entry(tenant).or_default().push(hash);
        }
        for (tenant, hashes) in by_tenant {
            let keys: Vec<&[u8]> = hashes.iter().map(|h| &h[..]).collect();
            client.execute(&stmt, &[&tenant, &keys, &now]).await?;
        }
        Ok(())
    }

    async fn add_usage(&self, deltas: Vec<(i64, UsageDelta)>, now: i64) -> Result<()> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(
                "INSERT INTO usage (user_id, requests, queried_hashes, hits, published_ids, last_seen_at) \
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (user_id) DO UPDATE SET \
                 requests = usage.requests + excluded.requests, queried_hashes = usage.queried_hashes + excluded.queried_hashes, \
                 hits = usage.hits + excluded.hits, published_ids = usage.published_ids + excluded.published_ids, \
                 last_seen_at = excluded.last_seen_at",
            )
            .await?;
        for (user_id, d) in deltas {
            client
                .execute(
                    &stmt,
                    &[
                        &user_id,
                        &(d.requests as i64),
                        &(d.queried_hashes as i64),
                        &(d.hits as i64),
                        &(d.published_ids as i64),
                        &now,
                    ],
                )
                .await?;
        }
        Ok(())
    }

    async fn usage(&self) -> Result<Vec<UsageRow>> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT u.name, COALESCE(g.requests, 0), COALESCE(g.queried_hashes, 0), COALESCE(g.hits, 0), \
                 COALESCE(g.published_ids, 0), g.last_seen_at FROM users u LEFT JOIN usage g ON g.user_id = u.id ORDER BY u.id",
                &[],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| UsageRow {
                user_name: r.get(0),
                usage: UsageDelta {
                    requests: r.get::<_, i64>(1) as u64,
                    queried_hashes: r.get::<_, i64>(2) as u64,
                    hits: r.get::<_, i64>(3) as u64,
                    published_ids: r.get::<_, i64>(4) as u64,
                },
                last_seen_at: r.get(5),
            })
            .collect())
    }

    async fn stats(&self) -> Result<StoreStats> {
        let client = self.client().await?;
        let row = client
            .query_one(
                "SELECT COUNT(*), COALESCE(SUM(bytes), 0)::BIGINT FROM entries",
                &[],
            )
            .await?;
        Ok(StoreStats {
            entries: row.get::<_, i64>(0) as u64,
            bytes: row.get::<_, i64>(1) as u64,
        })
    }

    async fn evict(&self, read_before: Option<i64>, max_bytes: Option<u64>) -> Result<u64> {
        let client = self.client().await?;
        let mut removed = 0u64;
        if let Some(before) = read_before {
            removed += client
                .execute("DELETE FROM entries WHERE last_read_at < $1", &[&before])
                .await?;
        }
        if let Some(max) = max_bytes {
            let mut total: i64 = client
                .query_one("SELECT COALESCE(SUM(bytes), 0)::BIGINT FROM entries", &[])
                .await?
                .get(0);
            while total > max as i64 {
                let victims = client
                    .query(
                        "SELECT id, bytes FROM entries ORDER BY last_read_at, id LIMIT 500",
                        &[],
                    )
                    .await?;
                if victims.is_empty() {
                    break;
                }
                let mut ids = Vec::new();
                for row in victims {
                    if total <= max as i64 {
                        break;
                    }
                    ids.push(row.get::<_, i64>(0));
                    total -= row.get::<_, i64>(1);
                }
                removed += client
                    .execute("DELETE FROM entries WHERE id = ANY($1)", &[&ids])
                    .await?;
            }
        }
        Ok(removed)
    }
}
