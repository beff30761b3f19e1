//! The relay's side of the MongoDB outbox: entries are collected from every collection that
//! carries them, ordered by their write stamp, and pulled from their document once relayed.

use std::collections::HashMap;

use async_trait::async_trait;
use futures::TryStreamExt;
use livechat_core::error::{StoreError, StoreResult};
use livechat_core::model::OutboxRecord;
use livechat_core::ports::Outbox;
use mongodb::bson::{doc, Bson, Document};
use tokio::sync::watch;

use super::{db_err, parse_id, MongoDirectory, OUTBOX_SOURCES};

/// Where a handed-out entry lives: its collection, its document and the entry itself (pulled
/// by exact value, which every MongoDB-wire server supports).
struct Source {
    coll: &'static str,
    doc_id: Bson,
    entry: Document,
}

/// Positions handed out by the latest `pending` call (the relay removes a batch before it asks
/// for the next, so older positions are dropped then).
#[derive(Default)]
pub(super) struct HandedOut {
    next: i64,
    sources: HashMap<i64, Source>,
}

fn record(entry: &Document) -> StoreResult<OutboxRecord> {
    let bad =
        |what: &str| StoreError::Other(anyhow::anyhow!("outbox entry without {what}: {entry}"));
    let headers = match entry.get_array("headers") {
        Ok(hs) => hs
            .iter()
            .filter_map(|h| match h {
                Bson::Array(kv) if kv.len() == 2 => {
                    Some((kv[0].as_str()?.to_string(), kv[1].as_str()?.to_string()))
                }
                _ => None,
            })
            .collect(),
        Err(_) => Vec::new(),
    };
    Ok(OutboxRecord {
        event_id: parse_id(entry.get_str("event_id").map_err(|_| bad("event_id"))?)?,
        topic: entry
            .get_str("topic")
            .map_err(|_| bad("topic"))?
            .to_string(),
        key: entry.get_str("key").map_err(|_| bad("key"))?.to_string(),
        payload: entry
            .get_binary_generic("payload")
            .map_err(|_| bad("payload"))?
            .clone(),
        created_at_ms: entry
            .get_i64("created_at_ms")
            .map_err(|_| bad("created_at_ms"))?,
        headers,
    })
}

#[async_trait]
impl Outbox for MongoDirectory {
    async fn pending(&self, limit: u32) -> StoreResult<Vec<(i64, OutboxRecord)>> {
        let mut found: Vec<(i64, &'static str, Bson, Document)> = Vec::new();
        for coll in OUTBOX_SOURCES {
            let mut cursor = self
                .coll(coll)
                .find(doc! { "_pending": { "$gt": 0_i64 } })
                .projection(doc! { "_outbox": 1 })
                .limit(i64::from(limit))
                .await
                .map_err(db_err)?;
            while let Some(d) = cursor.try_next().await.map_err(db_err)? {
                let Some(doc_id) = d.get("_id").cloned() else {
                    continue;
                };
                for e in d.get_array("_outbox").into_iter().flatten() {
                    if let Bson::Document(entry) = e {
                        let ord = entry.get_i64("ord").unwrap_or(i64::MAX);
                        found.push((ord, coll, doc_id.clone(), entry.clone()));
                    }
                }
            }
        }
        found.sort_by_key(|(ord, ..)| *ord);
        found.truncate(limit as usize);
        let mut handed = self.handed_out.lock().unwrap_or_else(|p| p.into_inner());
        handed.sources.clear();
        let mut out = Vec::with_capacity(found.len());
        for (_, coll, doc_id, entry) in found {
            let rec = record(&entry)?;
            handed.next += 1;
            let pos = handed.next;
            handed.sources.insert(
                pos,
                Source {
                    coll,
                    doc_id,
                    entry,
                },
            );
            out.push((pos, rec));
        }
        Ok(out)
    }

    async fn remove(&self, positions: &[i64]) -> StoreResult<()> {
        // Group the entries by document: one `$pullAll` per document.
        let mut by_doc: HashMap<(&'static str, String), (Bson, Vec<Bson>)> = HashMap::new();
        {
            let mut handed = self.handed_out.lock().unwrap_or_else(|p| p.into_inner());
            for p in positions {
                if let Some(s) = handed.sources.remove(p) {
                    let slot = by_doc
                        .entry((s.coll, s.doc_id.to_string()))
                        .or_insert_with(|| (s.doc_id.clone(), Vec::new()));
                    slot.1.push(Bson::Document(s.entry));
                }
            }
        }
        for ((coll, _), (doc_id, entries)) in by_doc {
            let n = entries.len() as i64;
            let c = self.coll(coll);
            c.update_one(
                doc! { "_id": doc_id.clone(), "_pending": { "$gte": n } },
                doc! { "$pullAll": { "_outbox": entries }, "$inc": { "_pending": -n } },
            )
            .await
            .map_err(db_err)?;
            // Documents that only existed to carry records (standalone outbox entries,
            // tombstones) go once they are relayed.
            let done = if coll == "outbox" {
                doc! { "_id": doc_id, "_pending": { "$lte": 0_i64 } }
            } else {
                doc! { "_id": doc_id, "_gone": true, "_pending": { "$lte": 0_i64 } }
            };
            c.delete_one(done).await.map_err(db_err)?;
        }
        Ok(())
    }

    fn pending_signal(&self) -> watch::Receiver<u64> {
        self.pending.subscribe()
    }
}
