//! Accounts in PostgreSQL: users, their tokens and their usage counters
//! (`AccountStore`). Each call is one statement on a pooled connection,
//! except the first admin's creation, which locks `users` so that replicas
//! starting together create it once.

use super::super::{
    token_updated, AccountStore, NewToken, Result, Scope, StoreError, TokenAuth, TokenRow,
    UsageDelta, UsageRow, UserRow, SERVER_ADMIN_TENANT,
};
use super::{hash32, PostgresStore};

fn scope_of(s: &str) -> Result<Scope> {
    s.parse().map_err(|reason| StoreError::Corrupt {
        table: "tokens",
        reason,
    })
}

#[async_trait::async_trait]
impl AccountStore for PostgresStore {
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
            .query_one("INSERT INTO users (name, tenant, created_at) VALUES ('admin', $1, $2) RETURNING id", &[&SERVER_ADMIN_TENANT, &now])
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

    async fn usage(&self, tenant: Option<&str>) -> Result<Vec<UsageRow>> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT u.name, COALESCE(g.requests, 0), COALESCE(g.queried_hashes, 0), COALESCE(g.hits, 0), \
                 COALESCE(g.published_ids, 0), g.last_seen_at FROM users u LEFT JOIN usage g ON g.user_id = u.id \
                 WHERE $1::TEXT IS NULL OR u.tenant = $1 ORDER BY u.id",
                &[&tenant],
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
}
