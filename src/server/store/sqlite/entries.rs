//! The stored results in SQLite (`ResultStore`): queries, publishes, read
//! times, size and eviction. Where each entry's row lives, and the row
//! operations these are made of, is `slots.rs`.

use rusqlite::{params, Connection, OptionalExtension};

use super::super::{
    codec, Entry, FileKey, Merged, Published, Result, ResultStore, StoreError, StoreStats,
};
use super::slots::{self, Found};
use super::SqliteStore;

/// The id of `tenant`, created on its first publish. Ids never change and
/// tenants are never deleted.
fn tenant_id_for_write(c: &Connection, tenant: &str) -> rusqlite::Result<i64> {
    c.prepare_cached("INSERT INTO tenants (name) VALUES (?1) ON CONFLICT (name) DO NOTHING")?
        .execute(params![tenant])?;
    tenant_id(c, tenant)?.ok_or(rusqlite::Error::QueryReturnedNoRows)
}

/// The id of `tenant`, or `None` if it never published anything.
fn tenant_id(c: &Connection, tenant: &str) -> rusqlite::Result<Option<i64>> {
    c.prepare_cached("SELECT id FROM tenants WHERE name = ?1")?
        .query_row(params![tenant], |r| r.get(0))
        .optional()
}

/// One answer per hash, in order: one primary-key lookup each, with a
/// statement prepared once per connection. All of them run in one read
/// transaction, so they see one snapshot and take the WAL read lock once.
fn lookup(
    c: &Connection,
    path: &str,
    tenant: &str,
    hashes: &[FileKey],
    max_ids: usize,
) -> Result<Vec<Option<Entry>>> {
    let err = |source| StoreError::Sqlite {
        path: path.to_string(),
        source,
    };
    let tx = c.unchecked_transaction().map_err(err)?;
    let Some(tenant_id) = tenant_id(&tx, tenant).map_err(err)? else {
        // Nothing was ever published for this tenant.
        return Ok(vec![None; hashes.len()]);
    };
    let mut finder = slots::Finder::new(&tx, path)?;
    let mut out = Vec::with_capacity(hashes.len());
    let mut ids = 0;
    for hash in hashes {
        let entry = finder.find(tenant_id, hash)?.into_entry();
        ids += entry.as_ref().map_or(0, |e| e.ids.len());
        if ids > max_ids {
            return Err(StoreError::TooManyIds {
                at_least: ids,
                max: max_ids,
            });
        }
        out.push(entry);
    }
    drop(finder);
    tx.commit().map_err(err)?;
    Ok(out)
}

/// Entries removed by size in one write job (`ResultStore::evict`).
const EVICTION_CHUNK: usize = 500;

#[async_trait::async_trait]
impl ResultStore for SqliteStore {
    async fn query(
        &self,
        tenant: &str,
        hashes: &[FileKey],
        max_ids: usize,
    ) -> Result<Vec<Option<Entry>>> {
        // Typical queries (hundreds of hashes) run inline; huge ones go to the blocking pool.
        if hashes.len() <= 2_000 {
            self.read_inline(|c| lookup(c, &self.path, tenant, hashes, max_ids))
                .await
        } else {
            let (path, tenant, hashes) = (self.path.clone(), tenant.to_string(), hashes.to_vec());
            self.read(move |c| lookup(c, &path, &tenant, &hashes, max_ids))
                .await
        }
    }

    async fn publish(
        &self,
        tenant: &str,
        batch: Vec<(FileKey, Published)>,
        max_ids: usize,
        now: i64,
    ) -> Result<u64> {
        let path = self.path.clone();
        let tenant = tenant.to_string();
        self.write(move |c| {
            let err = |source| StoreError::Sqlite {
                path: path.clone(),
                source,
            };
            let tenant_id = tenant_id_for_write(c, &tenant).map_err(err)?;
            let mut added = 0;
            let mut finder = slots::Finder::new(c, &path)?;
            for (hash, published) in batch {
                let (place, stored) = match finder.find(tenant_id, &hash)? {
                    Found::Stored { place, entry } => (place, Some(entry)),
                    Found::Absent { place } => (place, None),
                };
                let Some(merged) = Merged::of(stored.as_ref(), &published, max_ids) else {
                    continue; // nothing changed: skip the write
                };
                added += merged.added;
                let blobs = slots::Blobs {
                    ids: codec::encode(&merged.ids),
                    requirements: merged.encoded_requirements(),
                };
                slots::put(c, &mut finder, place, tenant_id, &hash, &blobs, now)?;
            }
            Ok(added)
        })
        .await
    }

    async fn touch(&self, reads: Vec<(String, FileKey)>, now: i64) -> Result<()> {
        let path = self.path.clone();
        self.write(move |c| {
            let err = |source| StoreError::Sqlite {
                path: path.clone(),
                source,
            };
            let mut tenant_ids = std::collections::HashMap::new();
            for (tenant, hash) in reads {
                let tenant_id = match tenant_ids.get(&tenant) {
                    Some(&id) => id,
                    None => {
                        let id = tenant_id(c, &tenant).map_err(err)?;
                        tenant_ids.insert(tenant, id);
                        id
                    }
                };
                if let Some(tenant_id) = tenant_id {
                    slots::touch(c, tenant_id, &hash, now).map_err(err)?;
                }
            }
            Ok(())
        })
        .await
    }

    async fn stats(&self) -> Result<StoreStats> {
        let path = self.path.clone();
        // Kept by triggers: no scan of the table.
        self.read(move |c| {
            c.query_row("SELECT entries, bytes FROM totals WHERE id = 1", [], |r| {
                Ok(StoreStats {
                    entries: r.get::<_, i64>(0)? as u64,
                    bytes: r.get::<_, i64>(1)? as u64,
                })
            })
            .map_err(|source| StoreError::Sqlite { path, source })
        })
        .await
    }

    async fn evict(&self, read_before: Option<i64>, max_bytes: Option<u64>) -> Result<u64> {
        let mut removed = 0u64;
        if let Some(before) = read_before {
            let path = self.path.clone();
            removed += self
                .write(move |c| {
                    slots::delete_read_before(c, before)
                        .map_err(|source| StoreError::Sqlite { path, source })
                })
                .await?;
        }
        let Some(max) = max_bytes else {
            return Ok(removed);
        };
        // Least recently read first, one chunk per write job, until under
        // the limit: the single writer takes the publishes queued meanwhile
        // between two chunks, so a large eviction (a tenth of the store
        // when a publish crosses the limit) does not hold them all up.
        loop {
            let path = self.path.clone();
            let (chunk, over) = self
                .write(move |c| {
                    let err = |source| StoreError::Sqlite {
                        path: path.clone(),
                        source,
                    };
                    let mut total: i64 = c
                        .query_row("SELECT bytes FROM totals WHERE id = 1", [], |r| r.get(0))
                        .map_err(err)?;
                    let mut chunk = 0u64;
                    if total > max as i64 {
                        for victim in slots::least_recently_read(c, EVICTION_CHUNK).map_err(err)? {
                            if total <= max as i64 {
                                break;
                            }
                            slots::delete(c, &victim).map_err(err)?;
                            total -= victim.bytes;
                            chunk += 1;
                        }
                    }
                    Ok((chunk, total > max as i64))
                })
                .await?;
            removed += chunk;
            if !over || chunk == 0 {
                return Ok(removed);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::super::test_support::{id, ids};
    use super::super::test_support::{overflow_rows, SHARES_SLOT_WITH_ONES};
    use super::super::SqliteStore;
    use super::*;

    #[tokio::test]
    async fn keys_sharing_a_slot_stay_apart_through_every_operation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("slots.sqlite");
        let store = SqliteStore::open(path.to_str().unwrap(), 2).unwrap();
        let (ones, twin) = ([1u8; 32], SHARES_SLOT_WITH_ONES);
        store
            .publish("a", vec![(ones, vec![id(1)].into())], 100, 10)
            .await
            .unwrap();
        // Tenant "b" (id 2) crafts a hash for the slot of "a"'s entry.
        let mut intruder = ones;
        let mix = |t: i64| {
            t.wrapping_mul(0x9E37_79B9_7F4A_7C15_u64 as i64)
                .to_le_bytes()
        };
        for (i, byte) in intruder.iter_mut().take(8).enumerate() {
            *byte ^= mix(1)[i] ^ mix(2)[i];
        }
        intruder[31] = 0;
        store
            .publish("b", vec![(intruder, vec![id(8)].into())], 100, 10)
            .await
            .unwrap();
        assert_eq!(slots::slot(2, &intruder), slots::slot(1, &ones));
        store
            .publish("a", vec![(twin, vec![id(2)].into())], 100, 20)
            .await
            .unwrap();
        assert_eq!(overflow_rows(&path), 2);

        let a = store
            .query("a", &[ones, twin, intruder], usize::MAX)
            .await
            .unwrap();
        assert_eq!(ids(a), vec![Some(vec![id(1)]), Some(vec![id(2)]), None]);
        let b = store
            .query("b", &[ones, twin, intruder], usize::MAX)
            .await
            .unwrap();
        assert_eq!(ids(b), vec![None, None, Some(vec![id(8)])]);

        // Merges land where each key lives.
        store
            .publish(
                "a",
                vec![(twin, vec![id(3)].into()), (ones, vec![id(4)].into())],
                100,
                30,
            )
            .await
            .unwrap();
        let a = store.query("a", &[ones, twin], usize::MAX).await.unwrap();
        assert_eq!(
            ids(a),
            vec![Some(vec![id(1), id(4)]), Some(vec![id(2), id(3)])]
        );
        assert_eq!(
            store.stats().await.unwrap(),
            StoreStats {
                entries: 3,
                bytes: 100
            }
        );

        // Touches reach the overflow table; an age cut keeps what was read.
        store
            .touch(vec![("a".into(), twin), ("b".into(), intruder)], 50)
            .await
            .unwrap();
        assert_eq!(store.evict(Some(40), None).await.unwrap(), 1);
        let a = store.query("a", &[ones, twin], usize::MAX).await.unwrap();
        assert_eq!(ids(a), vec![None, Some(vec![id(2), id(3)])]);

        // With the slot free again, the key in overflow is still the one
        // found and updated: no second row appears for it.
        store
            .publish("a", vec![(twin, vec![id(6)].into())], 100, 60)
            .await
            .unwrap();
        assert_eq!(overflow_rows(&path), 2);
        assert_eq!(
            store.stats().await.unwrap(),
            StoreStats {
                entries: 2,
                bytes: 80
            }
        );
        // A new key takes the free slot.
        store
            .publish("a", vec![(ones, vec![id(7)].into())], 100, 70)
            .await
            .unwrap();
        assert_eq!(overflow_rows(&path), 2);
        let a = store.query("a", &[ones, twin], usize::MAX).await.unwrap();
        assert_eq!(
            ids(a),
            vec![Some(vec![id(7)]), Some(vec![id(2), id(3), id(6)])]
        );

        // Size eviction takes the least recently read of both tables:
        // "b"'s entry (read at 50), then "a"'s twin (written at 60).
        assert_eq!(store.evict(None, Some(20)).await.unwrap(), 2);
        assert_eq!(overflow_rows(&path), 0);
        let a = store.query("a", &[ones, twin], usize::MAX).await.unwrap();
        assert_eq!(ids(a), vec![Some(vec![id(7)]), None]);
        assert_eq!(
            store.stats().await.unwrap(),
            StoreStats {
                entries: 1,
                bytes: 20
            }
        );
    }

    #[tokio::test]
    async fn a_batch_that_fills_the_overflow_table_finds_its_own_rows() {
        // Lookups skip the overflow table while it is empty; a batch that
        // writes the first row there must still find that row again.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("batch.sqlite");
        let store = SqliteStore::open(path.to_str().unwrap(), 2).unwrap();
        let (ones, twin) = ([1u8; 32], SHARES_SLOT_WITH_ONES);
        store
            .publish("a", vec![(ones, vec![id(1)].into())], 100, 10)
            .await
            .unwrap();
        let batch = vec![(twin, vec![id(2)].into()), (twin, vec![id(3)].into())];
        assert_eq!(store.publish("a", batch, 100, 20).await.unwrap(), 2);
        let a = store.query("a", &[ones, twin], usize::MAX).await.unwrap();
        assert_eq!(ids(a), vec![Some(vec![id(1)]), Some(vec![id(2), id(3)])]);
        assert_eq!(overflow_rows(&path), 1);
    }

    #[tokio::test]
    async fn totals_follow_publishes_and_evictions() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("new.sqlite");
        let store = SqliteStore::open(path.to_str().unwrap(), 2).unwrap();
        store
            .publish(
                "t",
                vec![([1; 32], vec![id(1)].into()), ([2; 32], vec![id(2)].into())],
                100,
                10,
            )
            .await
            .unwrap();
        store
            .publish("t", vec![([1; 32], vec![id(3)].into())], 100, 20)
            .await
            .unwrap();
        store
            .publish("u", vec![([1; 32], vec![id(1)].into())], 100, 30)
            .await
            .unwrap();
        assert_eq!(
            store.stats().await.unwrap(),
            StoreStats {
                entries: 3,
                bytes: 80
            }
        );
        // Read at 40: ([1;32], t) survives an age cut at 35, the rest goes.
        store.touch(vec![("t".into(), [1; 32])], 40).await.unwrap();
        assert_eq!(store.evict(Some(35), None).await.unwrap(), 2);
        assert_eq!(
            store.stats().await.unwrap(),
            StoreStats {
                entries: 1,
                bytes: 40
            }
        );
        assert_eq!(store.evict(None, Some(39)).await.unwrap(), 1);
        assert_eq!(store.stats().await.unwrap(), StoreStats::default());
    }
}
