//! The PostgreSQL backend, for several server replicas sharing one
//! database. This file owns the connections (a `deadpool` pool) and
//! `Store`; the same four files as the SQLite backend split the rest:
//! `accounts.rs` (users, tokens, usage), `entries.rs` (the stored results
//! and their retention), `migrations.rs` (the schema and its upgrades).
//!
//! The semantics are SQLite's, pinned by the same story test; the layout
//! is simpler: entries are keyed by (tenant, file key) directly, and the
//! store's size is summed when asked (`/metrics` asks every 30 s).

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio_postgres::NoTls;

use super::{Result, Store, StoreError};

mod accounts;
mod entries;
mod migrations;

pub struct PostgresStore {
    pool: Pool,
}

fn pool_err(e: impl std::fmt::Display) -> StoreError {
    StoreError::Pool(e.to_string())
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
        migrations::migrate(&mut store.client().await?).await?;
        Ok(store)
    }

    async fn client(&self) -> Result<deadpool_postgres::Object> {
        self.pool.get().await.map_err(|e| match e {
            deadpool_postgres::PoolError::Backend(e) => StoreError::Postgres(e),
            other => pool_err(other),
        })
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

    async fn probe_write(&self) -> Result<()> {
        self.client()
            .await?
            .execute(
                "UPDATE dryci_health SET probes = probes + 1 WHERE id = 1",
                &[],
            )
            .await?;
        Ok(())
    }
}
