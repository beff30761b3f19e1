//! The relay's side of the MongoDB outbox.
//!
//! Finding pending entries by querying `_ords > 0` on every collection is cheap on MongoDB
//! (an index) but a full scan on servers that only use indexes for `_id` (FerretDB), and the
//! relay looks after every write. So each write also leaves a *hint* here — which document of
//! which collection it gave records to — and the relay reads those documents by `_id`. Hints
//! are in memory: records written by a process that crashed before relaying them are found by a
//! *sweep* (the `_ords` query), run at start-up, every 5 seconds, and whenever the hint queue
//! overflows.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures::{StreamExt, TryStreamExt};
use livechat_core::error::{StoreError, StoreResult};
use livechat_core::model::OutboxRecord;
use livechat_core::ports::Outbox;
use mongodb::bson::{doc, Bson, Document};
use tokio::sync::watch;

use super::{db_err, parse_id, MongoDirectory, OUTBOX_SOURCES};

/// Hints kept before the relay is considered behind (then a sweep catches up instead).
const MAX_HINTS: usize = 100_000;
/// Documents read or updated at once by the relay (each is one round trip).
const RELAY_CONCURRENCY: usize = 8;
/// How often a sweep looks for records of processes that died before relaying them: the bound
/// on how late such records reach the log when their process does not come back. (An index
/// range query on MongoDB; a scan on FerretDB.)
const SWEEP_EVERY: Duration = Duration::from_secs(5);

/// Where a handed-out entry lives: its collection, its document and the entry itself (pulled
/// by exact value, which every MongoDB-wire server supports).
struct Source {
    coll: &'static str,
    doc_id: Bson,
    entry: Document,
    /// The document is a tombstone (or a standalone outbox document): deleted once relayed.
    disposable: bool,
}

/// Relay bookkeeping: write hints, and the positions handed out by the latest `pending` call
/// (the relay removes a batch before it asks for the next, so older positions are dropped then).
pub(super) struct Relay {
    next_hint: u64,
    hints: BTreeMap<u64, (&'static str, Bson)>,
    /// Hints covered by the positions handed out (dropped once those are removed).
    handed_hints: Vec<u64>,
    next_pos: i64,
    sources: HashMap<i64, Source>,
    sweep_due: bool,
    last_sweep: Instant,
}

impl Default for Relay {
    fn default() -> Self {
        Relay {
            next_hint: 0,
            hints: BTreeMap::new(),
            handed_hints: Vec::new(),
            next_pos: 0,
            sources: HashMap::new(),
            // Start-up: records a previous run left behind.
            sweep_due: true,
            last_sweep: Instant::now(),
        }
    }
}

impl MongoDirectory {
    /// Records that `coll`/`id` now holds outbox records, and wakes the relay.
    pub(super) fn queued(&self, coll: &'static str, id: impl Into<Bson>) {
        {
            let mut r = self.relay.lock().unwrap_or_else(|p| p.into_inner());
            if r.hints.len() >= MAX_HINTS {
                r.sweep_due = true;
            } else {
                r.next_hint += 1;
                let n = r.next_hint;
                r.hints.insert(n, (coll, id.into()));
            }
        }
        self.signal();
    }

    /// Every document with pending entries (the sweep), up to `limit` per collection.
    async fn sweep(&self, limit: u32) -> StoreResult<Vec<(&'static str, Document)>> {
        let mut docs = Vec::new();
        for coll in OUTBOX_SOURCES {
            let options = mongodb::options::FindOptions::builder()
                .projection(doc! { "_outbox": 1, "_gone": 1 })
                .limit(i64::from(limit))
                .build();
            let found = self
                .find_all(coll, doc! { "_ords": { "$gt": 0_i64 } }, options)
                .await?;
            docs.extend(found.into_iter().map(|d| (coll, d)));
        }
        Ok(docs)
    }

    /// The hinted documents (read by `_id`), and the hints they cover.
    async fn hinted(&self, limit: u32) -> StoreResult<(Vec<(&'static str, Document)>, Vec<u64>)> {
        let hints: Vec<(u64, &'static str, Bson)> = {
            let r = self.relay.lock().unwrap_or_else(|p| p.into_inner());
            r.hints
                .iter()
                .take(limit as usize)
                .map(|(n, (c, id))| (*n, *c, id.clone()))
                .collect()
        };
        let mut covered = Vec::with_capacity(hints.len());
        let mut wanted: Vec<(&'static str, Bson)> = Vec::new();
        for (n, coll, id) in hints {
            covered.push(n);
            // Several writes to one document: one read covers them all.
            if !wanted.iter().any(|(c, i)| *c == coll && *i == id) {
                wanted.push((coll, id));
            }
        }
        // Collected first: a lazy `map` inside this Send future trips a rustc lifetime limit.
        let reads: Vec<_> = wanted
            .into_iter()
            .map(|(coll, id)| self.read_pending(coll, id))
            .collect();
        let docs: Vec<Option<(&'static str, Document)>> = futures::stream::iter(reads)
            .buffered(RELAY_CONCURRENCY)
            .try_collect()
            .await?;
        let docs: Vec<(&'static str, Document)> = docs.into_iter().flatten().collect();
        Ok((docs, covered))
    }
}

impl MongoDirectory {
    /// A hinted document's pending entries (None if it is gone).
    async fn read_pending(
        &self,
        coll: &'static str,
        id: Bson,
    ) -> StoreResult<Option<(&'static str, Document)>> {
        let found = self
            .coll(coll)
            .find_one(doc! { "_id": id })
            .projection(doc! { "_outbox": 1, "_gone": 1 })
            .await
            .map_err(db_err)?;
        Ok(found.map(|d| (coll, d)))
    }

    /// Removes relayed entries from their document (by `_id` alone: every server uses the
    /// primary key for it; pulling exact values is idempotent, so a second relay pulling the
    /// same entries changes nothing), and deletes a disposable document once it holds none.
    async fn pull(
        &self,
        coll: &'static str,
        doc_id: Bson,
        entries: Vec<Bson>,
        disposable: bool,
    ) -> StoreResult<()> {
        let ords = super::ords(&entries);
        self.update_doc(
            coll,
            doc! { "_id": doc_id.clone() },
            doc! { "$pullAll": { "_outbox": entries, "_ords": ords } },
        )
        .await?;
        if disposable {
            let mut done = super::relayed();
            done.insert("_id", doc_id);
            if coll != "outbox" {
                done.insert("_gone", true);
            }
            self.coll(coll).delete_one(done).await.map_err(db_err)?;
        }
        Ok(())
    }
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
        event: None,
    })
}

#[async_trait]
impl Outbox for MongoDirectory {
    async fn pending(&self, limit: u32) -> StoreResult<Vec<(i64, OutboxRecord)>> {
        let sweep = {
            let mut r = self.relay.lock().unwrap_or_else(|p| p.into_inner());
            let due = r.sweep_due || r.last_sweep.elapsed() >= SWEEP_EVERY;
            if due {
                r.sweep_due = false;
                r.last_sweep = Instant::now();
            }
            due
        };
        let (docs, covered) = if sweep {
            // Hints stay: their documents are read again later and found relayed.
            (self.sweep(limit).await?, Vec::new())
        } else {
            self.hinted(limit).await?
        };
        let mut found: Vec<(i64, Source)> = Vec::new();
        for (coll, d) in docs {
            let Some(doc_id) = d.get("_id").cloned() else {
                continue;
            };
            let disposable = coll == "outbox" || d.get_bool("_gone").unwrap_or(false);
            for e in d.get_array("_outbox").into_iter().flatten() {
                if let Bson::Document(entry) = e {
                    let ord = entry.get_i64("ord").unwrap_or(i64::MAX);
                    let source = Source {
                        coll,
                        doc_id: doc_id.clone(),
                        entry: entry.clone(),
                        disposable,
                    };
                    found.push((ord, source));
                }
            }
        }
        found.sort_by_key(|(ord, ..)| *ord);
        let mut covered = covered;
        if found.len() > limit as usize {
            // Some hinted entries are left for the next batch: keep every hint until then.
            found.truncate(limit as usize);
            covered.clear();
        }
        let mut r = self.relay.lock().unwrap_or_else(|p| p.into_inner());
        r.sources.clear();
        if found.is_empty() {
            // The hinted documents were relayed already (by this or another process).
            for n in covered {
                r.hints.remove(&n);
            }
            r.handed_hints.clear();
            return Ok(Vec::new());
        }
        r.handed_hints = covered;
        let mut out = Vec::with_capacity(found.len());
        for (_, source) in found {
            let rec = record(&source.entry)?;
            r.next_pos += 1;
            let pos = r.next_pos;
            r.sources.insert(pos, source);
            out.push((pos, rec));
        }
        Ok(out)
    }

    async fn remove(&self, positions: &[i64]) -> StoreResult<()> {
        // Group the entries by document: one `$pullAll` per document.
        type Pulls = (Bson, Vec<Bson>, bool);
        let mut by_doc: HashMap<(&'static str, String), Pulls> = HashMap::new();
        let covered = {
            let mut r = self.relay.lock().unwrap_or_else(|p| p.into_inner());
            for p in positions {
                if let Some(s) = r.sources.remove(p) {
                    let slot = by_doc
                        .entry((s.coll, s.doc_id.to_string()))
                        .or_insert_with(|| (s.doc_id.clone(), Vec::new(), s.disposable));
                    slot.1.push(Bson::Document(s.entry));
                }
            }
            std::mem::take(&mut r.handed_hints)
        };
        let pulls: Vec<_> = by_doc
            .into_iter()
            .map(|((coll, _), (doc_id, entries, disposable))| {
                self.pull(coll, doc_id, entries, disposable)
            })
            .collect();
        futures::stream::iter(pulls)
            .buffer_unordered(RELAY_CONCURRENCY)
            .try_collect::<Vec<()>>()
            .await?;
        // A document written again after `pending` read it has a newer hint, which stays.
        let mut r = self.relay.lock().unwrap_or_else(|p| p.into_inner());
        for n in covered {
            r.hints.remove(&n);
        }
        Ok(())
    }

    fn pending_signal(&self) -> watch::Receiver<u64> {
        self.pending.subscribe()
    }
}
