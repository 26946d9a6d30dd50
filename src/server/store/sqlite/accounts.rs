//! Accounts in SQLite: users, their tokens and their usage counters
//! (`AccountStore`). Reads of a token run inline on the async worker (one
//! indexed lookup per request); every write goes through the writer thread.

use rusqlite::{params, OptionalExtension};

use super::super::{
    token_updated, AccountStore, NewToken, Result, Scope, StoreError, TokenAuth, TokenRow,
    UsageDelta, UsageRow, UserRow, SERVER_ADMIN_TENANT,
};
use super::SqliteStore;

impl SqliteStore {
    /// Runs `sql` on token `token_id` (?1) with `value` (?2); not found if
    /// no row changed.
    async fn update_token(
        &self,
        sql: &'static str,
        token_id: i64,
        value: Option<i64>,
    ) -> Result<()> {
        let path = self.path.clone();
        self.write(move |c| {
            let n = c
                .execute(sql, params![token_id, value])
                .map_err(|source| StoreError::Sqlite { path, source })?;
            token_updated(n as u64, token_id)
        })
        .await
    }
}

fn scope_of(table: &'static str, s: &str) -> Result<Scope> {
    s.parse()
        .map_err(|reason| StoreError::Corrupt { table, reason })
}

/// id, user name, scope, label, created_at, expires_at, revoked_at.
type RawToken = (i64, String, String, String, i64, Option<i64>, Option<i64>);

fn token_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<RawToken> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
        r.get(6)?,
    ))
}

#[async_trait::async_trait]
impl AccountStore for SqliteStore {
    async fn find_token(&self, token_hash: [u8; 32]) -> Result<Option<TokenAuth>> {
        let path = self.path.clone();
        self.read_inline(move |c| {
            let err = |source| StoreError::Sqlite { path: path.clone(), source };
            let mut stmt = c
                .prepare_cached(
                    "SELECT t.id, t.token_hash, u.id, u.name, u.tenant, t.scope, t.expires_at, t.revoked_at \
                     FROM tokens t JOIN users u ON u.id = t.user_id WHERE t.token_hash = ?1",
                )
                .map_err(err)?;
            let row = stmt
                .query_row(params![&token_hash[..]], |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, Vec<u8>>(1)?,
                        r.get::<_, i64>(2)?,
                        r.get::<_, String>(3)?,
                        r.get::<_, String>(4)?,
                        r.get::<_, String>(5)?,
                        r.get::<_, Option<i64>>(6)?,
                        r.get::<_, Option<i64>>(7)?,
                    ))
                })
                .optional()
                .map_err(err)?;
            let Some((token_id, hash, user_id, user_name, tenant, scope, expires_at, revoked_at)) = row else {
                return Ok(None);
            };
            let token_hash: [u8; 32] = hash
                .try_into()
                .map_err(|_| StoreError::Corrupt { table: "tokens", reason: "token_hash is not 32 bytes".into() })?;
            Ok(Some(TokenAuth {
                token_id,
                token_hash,
                user_id,
                user_name,
                tenant,
                scope: scope_of("tokens", &scope)?,
                expires_at,
                revoked_at,
            }))
        })
        .await
    }

    async fn bootstrap_admin(&self, token_hash: [u8; 32], now: i64) -> Result<bool> {
        let path = self.path.clone();
        self.write(move |c| {
            let err = |source| StoreError::Sqlite { path: path.clone(), source };
            let users: i64 = c.query_row("SELECT COUNT(*) FROM users", [], |r| r.get(0)).map_err(err)?;
            if users > 0 {
                return Ok(false);
            }
            c.execute("INSERT INTO users (name, tenant, created_at) VALUES ('admin', ?1, ?2)", params![SERVER_ADMIN_TENANT, now])
                .map_err(err)?;
            let user_id = c.last_insert_rowid();
            c.execute(
                "INSERT INTO tokens (user_id, token_hash, scope, label, created_at) VALUES (?1, ?2, 'admin', 'initial admin token', ?3)",
                params![user_id, &token_hash[..], now],
            )
            .map_err(err)?;
            Ok(true)
        })
        .await
    }

    async fn create_user(&self, name: &str, tenant: &str, now: i64) -> Result<UserRow> {
        let path = self.path.clone();
        let (name, tenant) = (name.to_string(), tenant.to_string());
        self.write(move |c| {
            let exists: bool = c
                .query_row(
                    "SELECT EXISTS(SELECT 1 FROM users WHERE name = ?1)",
                    params![name],
                    |r| r.get(0),
                )
                .map_err(|source| StoreError::Sqlite {
                    path: path.clone(),
                    source,
                })?;
            if exists {
                return Err(StoreError::Conflict { what: "user", name });
            }
            c.execute(
                "INSERT INTO users (name, tenant, created_at) VALUES (?1, ?2, ?3)",
                params![name, tenant, now],
            )
            .map_err(|source| StoreError::Sqlite { path, source })?;
            Ok(UserRow {
                id: c.last_insert_rowid(),
                name,
                tenant,
                created_at: now,
            })
        })
        .await
    }

    async fn list_users(&self) -> Result<Vec<UserRow>> {
        let path = self.path.clone();
        self.read(move |c| {
            let err = |source| StoreError::Sqlite {
                path: path.clone(),
                source,
            };
            let mut stmt = c
                .prepare("SELECT id, name, tenant, created_at FROM users ORDER BY id")
                .map_err(err)?;
            let rows = stmt
                .query_map([], |r| {
                    Ok(UserRow {
                        id: r.get(0)?,
                        name: r.get(1)?,
                        tenant: r.get(2)?,
                        created_at: r.get(3)?,
                    })
                })
                .map_err(err)?
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(err)?;
            Ok(rows)
        })
        .await
    }

    async fn create_token(&self, token: NewToken, now: i64) -> Result<TokenRow> {
        let path = self.path.clone();
        self.write(move |c| {
            let err = |source| StoreError::Sqlite { path: path.clone(), source };
            let user_id: Option<i64> = c
                .query_row("SELECT id FROM users WHERE name = ?1", params![token.user_name], |r| r.get(0))
                .optional()
                .map_err(err)?;
            let Some(user_id) = user_id else {
                return Err(StoreError::NotFound { what: "user", name: token.user_name });
            };
            c.execute(
                "INSERT INTO tokens (user_id, token_hash, scope, label, created_at, expires_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![user_id, &token.token_hash[..], token.scope.as_str(), token.label, now, token.expires_at],
            )
            .map_err(err)?;
            Ok(TokenRow {
                id: c.last_insert_rowid(),
                user_name: token.user_name,
                scope: token.scope,
                label: token.label,
                created_at: now,
                expires_at: token.expires_at,
                revoked_at: None,
            })
        })
        .await
    }

    async fn list_tokens(&self, user_name: Option<&str>) -> Result<Vec<TokenRow>> {
        let path = self.path.clone();
        let user_name = user_name.map(str::to_string);
        self.read(move |c| {
            let err = |source| StoreError::Sqlite { path: path.clone(), source };
            let mut stmt = c
                .prepare(
                    "SELECT t.id, u.name, t.scope, t.label, t.created_at, t.expires_at, t.revoked_at \
                     FROM tokens t JOIN users u ON u.id = t.user_id \
                     WHERE ?1 IS NULL OR u.name = ?1 ORDER BY t.id",
                )
                .map_err(err)?;
            let raw = stmt
                .query_map(params![user_name], token_row)
                .map_err(err)?
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(err)?;
            raw.into_iter()
                .map(|(id, user_name, scope, label, created_at, expires_at, revoked_at)| {
                    Ok(TokenRow { id, user_name, scope: scope_of("tokens", &scope)?, label, created_at, expires_at, revoked_at })
                })
                .collect()
        })
        .await
    }

    async fn set_token_expiry(&self, token_id: i64, expires_at: Option<i64>) -> Result<()> {
        self.update_token(
            "UPDATE tokens SET expires_at = ?2 WHERE id = ?1",
            token_id,
            expires_at,
        )
        .await
    }

    async fn revoke_token(&self, token_id: i64, now: i64) -> Result<()> {
        self.update_token(
            "UPDATE tokens SET revoked_at = COALESCE(revoked_at, ?2) WHERE id = ?1",
            token_id,
            Some(now),
        )
        .await
    }

    async fn add_usage(&self, deltas: Vec<(i64, UsageDelta)>, now: i64) -> Result<()> {
        let path = self.path.clone();
        self.write(move |c| {
            let err = |source| StoreError::Sqlite { path: path.clone(), source };
            let mut stmt = c
                .prepare_cached(
                    "INSERT INTO usage (user_id, requests, queried_hashes, hits, published_ids, last_seen_at) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (user_id) DO UPDATE SET \
                     requests = requests + excluded.requests, queried_hashes = queried_hashes + excluded.queried_hashes, \
                     hits = hits + excluded.hits, published_ids = published_ids + excluded.published_ids, \
                     last_seen_at = excluded.last_seen_at",
                )
                .map_err(err)?;
            for (user_id, d) in deltas {
                stmt.execute(params![
                    user_id,
                    d.requests as i64,
                    d.queried_hashes as i64,
                    d.hits as i64,
                    d.published_ids as i64,
                    now
                ])
                .map_err(err)?;
            }
            Ok(())
        })
        .await
    }

    async fn usage(&self, tenant: Option<&str>) -> Result<Vec<UsageRow>> {
        let path = self.path.clone();
        let tenant = tenant.map(str::to_string);
        self.read(move |c| {
            let err = |source| StoreError::Sqlite { path: path.clone(), source };
            let mut stmt = c
                .prepare(
                    "SELECT u.name, COALESCE(g.requests, 0), COALESCE(g.queried_hashes, 0), COALESCE(g.hits, 0), \
                     COALESCE(g.published_ids, 0), g.last_seen_at FROM users u LEFT JOIN usage g ON g.user_id = u.id \
                     WHERE ?1 IS NULL OR u.tenant = ?1 ORDER BY u.id",
                )
                .map_err(err)?;
            let rows = stmt
                .query_map(params![tenant], |r| {
                    Ok(UsageRow {
                        user_name: r.get(0)?,
                        usage: UsageDelta {
                            requests: r.get::<_, i64>(1)? as u64,
                            queried_hashes: r.get::<_, i64>(2)? as u64,
                            hits: r.get::<_, i64>(3)? as u64,
                            published_ids: r.get::<_, i64>(4)? as u64,
                        },
                        last_seen_at: r.get(5)?,
                    })
                })
                .map_err(err)?
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(err)?;
            Ok(rows)
        })
        .await
    }
}
