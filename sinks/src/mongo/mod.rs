//! The directory, sessions and outbox on a MongoDB-wire server (MongoDB; SecantusDB in tests),
//! with single-document atomic operations only: no multi-document transactions, no replica set.
//!
//! How a state change and its outbox records stay atomic without transactions: the records
//! ride in the very document the change writes, in an `_outbox` array with their stamps in
//! `_ords` (one `$push` in the same update). The relay collects pending entries from every
//! collection, appends them to the log, then `$pullAll`s exactly those entries. So each
//! collection's shape follows from which changes must be atomic together:
//! - `rooms`: a room owns its memberships (`member_ids` + `members`, with each member's read
//!   marker) and its pending join requests (`request_ids`, `request_users`, `requests`), so
//!   joining, leaving, accepting a request and the participant count are one-document updates;
//! - `messages`: one document per sent message, the send's atomic step. A unique index on
//!   `(room_id, seq)` makes seq assignment optimistic and gapless: a writer tries the room's next
//!   seq and, when another process took it, moves past it and tries again; a failed insert
//!   consumes nothing. The document's `_id` is (room, user, client_msg_id), so a retried send
//!   collides on the primary key, idempotent across processes.
//! - deletions that carry outbox records (a room, a session, a notification) leave a tombstone
//!   (`_gone`) holding the records; the relay deletes it once they are relayed.
//!
//! Hot paths touch documents by `_id` only (the lookup every MongoDB-wire server indexes; FerretDB
//! uses no other index for queries); the relay finds pending records through write hints (see `outbox.rs`); updates of
//! one document from this process are serialized (see `MongoDirectory::update_doc`).

mod convert;
mod directory;
mod file_refs;
mod outbox;
mod sessions;

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::TryStreamExt;
use livechat_core::error::{StoreError, StoreResult};
use livechat_core::model::OutboxRecord;
use mongodb::bson::spec::BinarySubtype;
use mongodb::bson::{doc, Binary, Bson, Document};
use mongodb::error::{ErrorKind, WriteFailure};
use mongodb::options::{Acknowledgment, ClientOptions, IndexOptions, WriteConcern};
use mongodb::{Collection, Database, IndexModel};
use tokio::sync::watch;
use uuid::Uuid;

pub use crate::config::MongoConfig;

/// Collections whose documents carry outbox entries.
const OUTBOX_SOURCES: [&str; 6] = [
    "outbox",
    "users",
    "rooms",
    "messages",
    "notifications",
    "sessions",
];

/// Lock stripes for [`MongoDirectory::update_doc`].
const DOC_LOCK_STRIPES: usize = 64;

/// How often the relay looks for records written by other processes (this process's own
/// writes wake it at once).
const POLL: Duration = Duration::from_millis(200);

pub struct MongoDirectory {
    db: Database,
    pending: watch::Sender<u64>,
    /// Write hints and the positions handed out to the relay.
    relay: std::sync::Mutex<outbox::Relay>,
    /// Updates of one document from this process run one at a time (see [`Self::update_doc`]).
    doc_locks: Vec<tokio::sync::Mutex<()>>,
}

impl MongoDirectory {
    /// Connects, and creates the collections' indexes (idempotent) so a fresh database works.
    pub async fn connect(cfg: &MongoConfig) -> anyhow::Result<Arc<Self>> {
        let mut opts = ClientOptions::parse(&cfg.uri)
            .await
            .map_err(|e| anyhow::anyhow!("parsing the MongoDB URI: {e}"))?;
        opts.app_name = Some("livechat".into());
        opts.server_selection_timeout = opts
            .server_selection_timeout
            .or(Some(Duration::from_secs(10)));
        // An acknowledged change is journaled: a crash right after the ack keeps it.
        opts.write_concern = Some(
            WriteConcern::builder()
                .w(Acknowledgment::Majority)
                .journal(true)
                .build(),
        );
        let client = mongodb::Client::with_options(opts)?;
        let db = client.database(&cfg.database);
        db.run_command(doc! { "ping": 1 })
            .await
            .map_err(|e| anyhow::anyhow!("MongoDB at {} does not answer: {e}", cfg.uri))?;
        create_indexes(&db).await?;
        let dir = Arc::new(MongoDirectory {
            db,
            pending: watch::channel(0).0,
            relay: Default::default(),
            doc_locks: (0..DOC_LOCK_STRIPES).map(|_| Default::default()).collect(),
        });
        // Other processes write to the same outbox: wake the relay periodically for them.
        let weak = Arc::downgrade(&dir);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(POLL);
            loop {
                tick.tick().await;
                match weak.upgrade() {
                    Some(d) => d.signal(),
                    None => break,
                }
            }
        });
        Ok(dir)
    }

    pub fn database_name(&self) -> &str {
        self.db.name()
    }

    fn coll(&self, name: &str) -> Collection<Document> {
        self.db.collection(name)
    }

    /// Updates the one document `filter` names by `_id`. MongoDB (and SecantusDB, the test
    /// server) applies an update to one document atomically; FerretDB 1.x does not (its update
    /// reads the document, applies the operators, and writes it back, with nothing in between
    /// stopping a concurrent update), so this process's updates of one document are serialized
    /// here, which keeps a single process correct on FerretDB. Across processes FerretDB can
    /// still lose one of two simultaneous updates of a document (the conformance check
    /// `two_handles_keep_every_concurrent_change_to_one_room`), which is why it is not the test
    /// server.
    async fn update_doc(
        &self,
        coll: &str,
        filter: Document,
        update: Document,
    ) -> StoreResult<mongodb::results::UpdateResult> {
        let _serial = self.doc_locks[doc_stripe(coll, &filter)].lock().await;
        self.coll(coll)
            .update_one(filter, update)
            .await
            .map_err(db_err)
    }

    /// Updates several documents of `coll`, each `(filter, update)` naming one by `_id`, in one
    /// `update` command: one round trip instead of one per document, and on the test server a
    /// third of the CPU (200 rooms: 31 ms against 102–155 ms, server CPU 30 ms against 69–96).
    /// Each document is still updated atomically on its own, and this process's updates of
    /// each one are serialized as in [`Self::update_doc`].
    async fn update_docs(&self, coll: &str, updates: Vec<(Document, Document)>) -> StoreResult<()> {
        if updates.is_empty() {
            return Ok(());
        }
        let mut stripes: Vec<usize> = updates.iter().map(|(f, _)| doc_stripe(coll, f)).collect();
        stripes.sort_unstable();
        stripes.dedup();
        // In ascending order (and `update_doc` holds one at a time): no two callers wait on
        // each other. Held for the one command, where the updates one by one held each for
        // its own.
        let mut serial = Vec::with_capacity(stripes.len());
        for stripe in stripes {
            serial.push(self.doc_locks[stripe].lock().await);
        }
        let statements: Vec<Document> = updates
            .into_iter()
            .map(|(q, u)| doc! { "q": q, "u": u })
            .collect();
        // A command carries no write concern of its own: the client's (journaled) is added.
        let concern =
            mongodb::bson::to_document(&self.db.write_concern().cloned().unwrap_or_default())
                .map_err(|e| StoreError::Other(anyhow::anyhow!("the write concern: {e}")))?;
        let reply = self
            .db
            .run_command(doc! {
                "update": coll,
                "updates": statements,
                "ordered": false,
                "writeConcern": concern,
            })
            .await
            .map_err(db_err)?;
        if let Ok(errors) = reply.get_array("writeErrors") {
            return Err(StoreError::Other(anyhow::anyhow!(
                "MongoDB: updating {coll}: {} of the updates failed: {errors:?}",
                errors.len()
            )));
        }
        if let Ok(e) = reply.get_document("writeConcernError") {
            return Err(StoreError::Unavailable(anyhow::anyhow!(
                "MongoDB: updating {coll}: not journaled: {e}"
            )));
        }
        Ok(())
    }

    /// Every document `filter` matches in `coll`, read into memory.
    async fn find_all(
        &self,
        coll: &str,
        filter: Document,
        options: mongodb::options::FindOptions,
    ) -> StoreResult<Vec<Document>> {
        self.coll(coll)
            .find(filter)
            .with_options(options)
            .await
            .map_err(db_err)?
            .try_collect()
            .await
            .map_err(db_err)
    }

    fn signal(&self) {
        self.pending.send_modify(|v| *v = v.wrapping_add(1));
    }
}

async fn create_indexes(db: &Database) -> anyhow::Result<()> {
    let unique = || IndexOptions::builder().unique(true).build();
    key_usernames(db).await?;
    let plan: Vec<(&str, Document, bool)> = vec![
        ("users", doc! { "username": 1 }, true),
        ("users", doc! { "name_key": 1 }, true),
        ("rooms", doc! { "name": 1 }, true),
        ("rooms", doc! { "member_ids": 1 }, false),
        ("rooms", doc! { "request_ids": 1 }, false),
        ("rooms", doc! { "request_users": 1 }, false),
        ("rooms", doc! { "participants_count": -1 }, false),
        ("messages", doc! { "room_id": 1, "seq": 1 }, true),
        (
            "notifications",
            doc! { "user_id": 1, "created_at": -1 },
            false,
        ),
        ("sessions", doc! { "user_id": 1 }, false),
        ("thread_reads", doc! { "room_id": 1 }, false),
        (
            "thread_follows",
            doc! { "room_id": 1, "root_seq": 1 },
            false,
        ),
    ];
    for (coll, keys, is_unique) in plan {
        let model = IndexModel::builder().keys(keys.clone());
        let model = if is_unique {
            model.options(unique()).build()
        } else {
            model.build()
        };
        db.collection::<Document>(coll)
            .create_index(model)
            .await
            .map_err(|e| anyhow::anyhow!("creating index {keys} on {coll}: {e}"))?;
    }
    for coll in OUTBOX_SOURCES {
        db.collection::<Document>(coll)
            .create_index(IndexModel::builder().keys(doc! { "_ords": 1 }).build())
            .await
            .map_err(|e| anyhow::anyhow!("creating the outbox index on {coll}: {e}"))?;
    }
    Ok(())
}

/// Gives every account written before usernames had keys its key, oldest first (a later
/// account whose key is taken keeps a key of its own, `key#id`: it still signs in by its exact
/// name), before the keys' unique index is built. Deterministic, so processes starting
/// together write the same keys.
async fn key_usernames(db: &Database) -> anyhow::Result<()> {
    use futures::TryStreamExt;
    let users = db.collection::<Document>("users");
    let unkeyed: Vec<Document> = users
        .find(doc! { "name_key": { "$exists": false } })
        .projection(doc! { "username": 1 })
        .sort(doc! { "created_at": 1, "_id": 1 })
        .await?
        .try_collect()
        .await?;
    for d in &unkeyed {
        let (Ok(uid), Ok(name)) = (d.get_str("_id"), d.get_str("username")) else {
            continue;
        };
        let key = livechat_core::validate::username_key(name);
        let taken = users.find_one(doc! { "name_key": &key }).await?.is_some();
        let key = if taken { format!("{key}#{uid}") } else { key };
        users
            .update_one(doc! { "_id": uid }, doc! { "$set": { "name_key": key } })
            .await?;
    }
    if !unkeyed.is_empty() {
        tracing::info!(
            accounts = unkeyed.len(),
            "Usernames keyed for case- and look-alike-insensitive lookup."
        );
    }
    Ok(())
}

/// A strictly increasing stamp (microseconds since the epoch, bumped when the clock repeats)
/// that orders outbox entries written by this process; across processes, clock order.
fn next_ord() -> i64 {
    static LAST: AtomicI64 = AtomicI64::new(0);
    let now = livechat_core::now().timestamp_micros();
    let prev = LAST
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |last| {
            Some(now.max(last + 1))
        })
        .unwrap_or(now);
    now.max(prev + 1)
}

/// The outbox entries of `records`, as stored in a document's `_outbox` array.
fn entries(records: &[OutboxRecord]) -> Vec<Bson> {
    records
        .iter()
        .map(|r| {
            let headers: Vec<Bson> = r
                .headers
                .iter()
                .map(|(k, v)| Bson::Array(vec![k.clone().into(), v.clone().into()]))
                .collect();
            Bson::Document(doc! {
                "ord": next_ord(),
                "event_id": r.event_id.to_string(),
                "topic": &r.topic,
                "key": &r.key,
                "payload": Binary { subtype: BinarySubtype::Generic, bytes: r.payload.clone() },
                "created_at_ms": r.created_at_ms,
                "headers": headers,
            })
        })
        .collect()
}

/// The `ord` stamps of entries (the `_ords` array: which entries are pending, indexable, and
/// pulled idempotently, so two relays pulling the same entries cannot miscount).
fn ords(entries: &[Bson]) -> Vec<Bson> {
    entries
        .iter()
        .filter_map(|e| e.as_document()?.get("ord").cloned())
        .collect()
}

/// Adds `records` to an update: `$push` to `_outbox` and `_ords`, beside the update's own
/// operators (so state and records change in one atomic update).
fn with_outbox(mut update: Document, records: &[OutboxRecord]) -> Document {
    if records.is_empty() {
        return update;
    }
    let entries = entries(records);
    update.insert(
        "$push",
        doc! {
            "_ords": { "$each": ords(&entries) },
            "_outbox": { "$each": entries },
        },
    );
    update
}

/// Fields a newly inserted document carries for its outbox records.
fn insert_outbox(mut d: Document, records: &[OutboxRecord]) -> Document {
    let entries = entries(records);
    d.insert("_ords", ords(&entries));
    d.insert("_outbox", entries);
    d
}

/// Filter term: no outbox records are pending in the document.
fn relayed() -> Document {
    doc! { "_ords.0": { "$exists": false } }
}

/// Filter term: the document is not a tombstone.
fn live() -> Document {
    doc! { "_gone": { "$ne": true } }
}

/// Filter: the live (not tombstoned) document with this `_id`.
fn live_id(id: impl Into<Bson>) -> Document {
    let mut f = live();
    f.insert("_id", id.into());
    f
}

fn id(u: Uuid) -> String {
    u.to_string()
}

fn parse_id(s: &str) -> StoreResult<Uuid> {
    Uuid::parse_str(s)
        .map_err(|e| StoreError::Other(anyhow::anyhow!("bad id {s:?} in MongoDB: {e}")))
}

/// Maps a driver error: connection and server-selection failures are retryable.
fn db_err(e: mongodb::error::Error) -> StoreError {
    match e.kind.as_ref() {
        ErrorKind::Io(_)
        | ErrorKind::ServerSelection { .. }
        | ErrorKind::ConnectionPoolCleared { .. } => {
            StoreError::Unavailable(anyhow::anyhow!("MongoDB: {e}"))
        }
        _ => StoreError::Other(anyhow::anyhow!("MongoDB: {e}")),
    }
}

/// The stripe of [`MongoDirectory::doc_locks`] for the document `filter` names by `_id`.
fn doc_stripe(coll: &str, filter: &Document) -> usize {
    let key = format!(
        "{coll}/{}",
        filter.get("_id").map(|b| b.to_string()).unwrap_or_default()
    );
    let hash = key.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    (hash % DOC_LOCK_STRIPES as u64) as usize
}

/// Whether the error is a unique-index violation (E11000).
fn is_duplicate(e: &mongodb::error::Error) -> bool {
    match e.kind.as_ref() {
        ErrorKind::Write(WriteFailure::WriteError(w)) => w.code == 11000,
        ErrorKind::Command(c) => c.code == 11000,
        ErrorKind::InsertMany(im) => im
            .write_errors
            .as_ref()
            .is_some_and(|ws| ws.iter().any(|w| w.code == 11000)),
        _ => false,
    }
}

/// Inserts a document unless one with its key exists; true when it was inserted.
async fn insert_once(coll: &Collection<Document>, d: Document) -> StoreResult<bool> {
    match coll.insert_one(d).await {
        Ok(_) => Ok(true),
        Err(e) if is_duplicate(&e) => Ok(false),
        Err(e) => Err(db_err(e)),
    }
}

/// Inserts a document; a unique-index violation is `Conflict(what)`.
async fn insert_unique(coll: &Collection<Document>, d: Document, what: &str) -> StoreResult<()> {
    if insert_once(coll, d).await? {
        Ok(())
    } else {
        Err(StoreError::Conflict(what.to_string()))
    }
}
