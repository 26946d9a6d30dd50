//! The stored results in PostgreSQL (`ResultStore`): queries, publishes,
//! read times, size and eviction. One row per (tenant, file key), its ids
//! in the codec's binary form (`codec.rs`). A publish locks the rows it
//! merges (`SELECT ... FOR UPDATE`, in key order so two publishes cannot
//! deadlock) and answers after `COMMIT`.

use std::sync::Arc;

use super::super::{
    codec, Entry, FileKey, Merged, Published, Result, ResultStore, StoreError, StoreStats,
};
use super::{hash32, PostgresStore};

#[async_trait::async_trait]
impl ResultStore for PostgresStore {
    async fn query(
        &self,
        tenant: &str,
        hashes: &[FileKey],
        max_ids: usize,
    ) -> Result<Vec<Option<Entry>>> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(
                "SELECT file_hash, ids, last_read_at, requirements FROM entries \
                 WHERE tenant = $1 AND file_hash = ANY($2)",
            )
            .await?;
        let keys: Vec<&[u8]> = hashes.iter().map(|h| &h[..]).collect();
        let rows = client.query(&stmt, &[&tenant, &keys]).await?;
        // Counted before anything is decoded; the rows themselves arrive
        // whole (streaming them needs a dependency we do not have), so on
        // PostgreSQL the bound saves the decoded copy, 24 bytes per id.
        let mut sizes = std::collections::HashMap::with_capacity(rows.len());
        for row in &rows {
            sizes.insert(
                hash32("entries", row.get(0))?,
                codec::count(row.get::<_, &[u8]>(1)),
            );
        }
        let ids: usize = hashes.iter().filter_map(|h| sizes.get(h)).sum();
        if ids > max_ids {
            return Err(StoreError::TooManyIds {
                at_least: ids,
                max: max_ids,
            });
        }
        let mut found = std::collections::HashMap::with_capacity(rows.len());
        for row in rows {
            let hash = hash32("entries", row.get(0))?;
            let ids = codec::decode("entries", row.get::<_, &[u8]>(1))?;
            found.insert(
                hash,
                Entry {
                    ids,
                    requirements: requirements_of(row.get(3))?,
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
        batch: Vec<(FileKey, Published)>,
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
                "SELECT file_hash, ids, requirements FROM entries \
                 WHERE tenant = $1 AND file_hash = ANY($2) ORDER BY file_hash FOR UPDATE",
            )
            .await?;
        let mut stored = std::collections::HashMap::with_capacity(batch.len());
        for row in tx.query(&lock, &[&tenant, &keys]).await? {
            let hash = hash32("entries", row.get(0))?;
            let ids: Arc<[_]> = codec::decode("entries", row.get::<_, &[u8]>(1))?;
            // A row `ensure` just created (no ids) counts as absent, so it is written.
            if !ids.is_empty() {
                let entry = Entry {
                    ids,
                    requirements: requirements_of(row.get(2))?,
                    last_read_at: 0,
                };
                stored.insert(hash, entry);
            }
        }
        let (mut hashes, mut blobs, mut requirements, mut sizes) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let mut added = 0;
        for (hash, published) in &batch {
            let Some(merged) = Merged::of(stored.get(hash), published, max_ids) else {
                continue;
            };
            added += merged.added;
            let blob = codec::encode(&merged.ids);
            let required = merged.encoded_requirements();
            sizes.push((blob.len() + required.as_ref().map_or(0, Vec::len)) as i64);
            blobs.push(blob);
            requirements.push(required);
            hashes.push(&hash[..]);
        }
        if !hashes.is_empty() {
            let update = tx
                .prepare_cached(
                    "UPDATE entries e SET ids = v.ids, bytes = v.bytes, updated_at = $5, \
                     requirements = v.requirements, last_read_at = GREATEST(e.last_read_at, $5) \
                     FROM unnest($2::BYTEA[], $3::BYTEA[], $4::BIGINT[], $6::BYTEA[]) \
                     AS v(file_hash, ids, bytes, requirements) \
                     WHERE e.tenant = $1 AND e.file_hash = v.file_hash",
                )
                .await?;
            tx.execute(
                &update,
                &[&tenant, &hashes, &blobs, &sizes, &now, &requirements],
            )
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

fn requirements_of(blob: Option<&[u8]>) -> Result<Option<Arc<super::super::Requirements>>> {
    blob.map(|blob| codec::decode_requirements("entries", blob).map(Arc::new))
        .transpose()
}
