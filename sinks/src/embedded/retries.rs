//! A retried `client_msg_id` in the embedded store is answered with the first message without a
//! table of receipts: the first send's MESSAGE_SENT record is in the log, committed with the
//! send, so a window of the recent sends kept in memory by the committer, and rebuilt from the
//! log, is enough. A receipts table cost every send one more B-tree page in its commit (keyed by
//! room and member, so mostly a page of its own per send, written again by each checkpoint) and
//! kept every text a second time, for good.
//!
//! The window is distributed mode's ([`DEDUP_WINDOW_MS`], within [`DEDUP_BUDGET_BYTES`]):
//! - this process's sends are remembered as they are made, inside their transaction;
//! - the first check after opening the file, and the first after a failed transaction (which
//!   may have rolled back sends remembered here), rebuilds it from the room events of the window;
//! - once another connection writes the file (another process on the data directory), each check
//!   first reads the room's partition from where this process last read it. SQLite runs one
//!   write transaction at a time, so a check sees every send committed before it, by anyone.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use livechat_core::model::SendReceipt;
use livechat_core::sequencing::{
    RecentSends, DEDUP_BUDGET_BYTES, DEDUP_ENTRY_OVERHEAD, DEDUP_WINDOW_MS,
};
use livechat_core::{from_ms, to_ms};
use livechat_schemas::{codec, RoomEventType, TopicEvent, ROOM_EVENTS_TOPIC};
use rusqlite::Connection;
use uuid::Uuid;

use super::db::Db;
use super::log::{kafka_partition, offset_for_time_in, scan_in, SqliteLog};

/// (room, user, client_msg_id); kept twice, in the map and in the queue of the window.
type Key = (Uuid, Uuid, String);

/// What a retry is answered with.
struct First {
    message_id: Uuid,
    seq: i64,
    created_at_ms: i64,
    content: String,
}

pub(super) struct Retries {
    state: Mutex<State>,
    log: SqliteLog,
    /// Set once another connection has committed to the file.
    shared: Arc<AtomicBool>,
    /// The committer's count of failed transactions.
    rollbacks: Arc<AtomicU64>,
}

struct State {
    sends: RecentSends<Key, First>,
    /// Per partition of the room events, the offset up to which the log was read into `sends`.
    read_to: HashMap<u32, i64>,
    /// The rollback count when `sends` was rebuilt (None: not yet).
    built_at: Option<u64>,
}

impl Retries {
    pub(super) fn new(db: &Db, log: SqliteLog) -> Retries {
        Retries {
            state: Mutex::new(State {
                sends: RecentSends::new(DEDUP_WINDOW_MS, DEDUP_BUDGET_BYTES),
                read_to: HashMap::new(),
                built_at: None,
            }),
            log,
            shared: db.shared_flag(),
            rollbacks: db.rollback_count(),
        }
    }

    /// The first send of `cid` by `user` in `room`, if it is in the window. Runs on the
    /// committer, inside the transaction of the send that asks.
    pub(super) fn first(
        &self,
        tx: &Connection,
        room: Uuid,
        user: Uuid,
        cid: &str,
    ) -> rusqlite::Result<Option<SendReceipt>> {
        let mut st = self.lock();
        let now = livechat_core::now().timestamp_millis();
        let rollbacks = self.rollbacks.load(Ordering::SeqCst);
        if st.built_at != Some(rollbacks) {
            st.rebuild(tx, &self.log, now)?;
            st.built_at = Some(rollbacks);
        } else if self.shared.load(Ordering::Relaxed) {
            let p = kafka_partition(&room.to_string(), self.log.partition_count());
            st.read_partition(tx, p, now)?;
        }
        st.sends.evict(now);
        let found = st.sends.get(&(room, user, cid.to_string()));
        Ok(found.map(|f| SendReceipt {
            message_id: f.message_id,
            seq: f.seq,
            created_at: from_ms(f.created_at_ms),
            content: f.content.clone(),
            duplicate: true,
        }))
    }

    /// Remembers a send this process just made, inside its transaction.
    pub(super) fn remember(&self, room: Uuid, user: Uuid, cid: String, sent: &SendReceipt) {
        let now = livechat_core::now().timestamp_millis();
        let cost = DEDUP_ENTRY_OVERHEAD + 2 * cid.len() + sent.content.len();
        let first = First {
            message_id: sent.message_id,
            seq: sent.seq,
            created_at_ms: to_ms(sent.created_at),
            content: sent.content.clone(),
        };
        self.lock()
            .sends
            .remember((room, user, cid), now, now, first, cost);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl State {
    /// Forgets everything and reads the window's sends from every partition.
    fn rebuild(&mut self, tx: &Connection, log: &SqliteLog, now: i64) -> rusqlite::Result<()> {
        self.sends.clear();
        self.read_to.clear();
        let mut found = Vec::new();
        for p in 0..log.partition_count() {
            let from = offset_for_time_in(tx, ROOM_EVENTS_TOPIC, p, now - DEDUP_WINDOW_MS)?;
            let end = scan_in(tx, ROOM_EVENTS_TOPIC, p, from, |_, ts, payload| {
                found.extend(sent_in(ts, payload));
            })?;
            self.read_to.insert(p, end);
        }
        // Oldest first, so that the budget forgets the oldest.
        found.sort_by_key(|(ts, _, _, _)| *ts);
        let n = found.len();
        for (ts, key, first, cost) in found {
            self.sends.remember(key, ts, now, first, cost);
        }
        tracing::debug!(sends = n, "Recent sends read from the log for retries.");
        Ok(())
    }

    /// Reads the sends of partition `p` committed since it was last read (by any connection).
    fn read_partition(&mut self, tx: &Connection, p: u32, now: i64) -> rusqlite::Result<()> {
        let window_start = offset_for_time_in(tx, ROOM_EVENTS_TOPIC, p, now - DEDUP_WINDOW_MS)?;
        let from = self.read_to.get(&p).copied().unwrap_or(0).max(window_start);
        let sends = &mut self.sends;
        let end = scan_in(tx, ROOM_EVENTS_TOPIC, p, from, |_, ts, payload| {
            if let Some((ts, key, first, cost)) = sent_in(ts, payload) {
                sends.remember(key, ts, now, first, cost);
            }
        })?;
        self.read_to.insert(p, end);
        Ok(())
    }
}

/// The send a room event record holds, if it is a MESSAGE_SENT with a `client_msg_id`.
fn sent_in(ts: i64, payload: &[u8]) -> Option<(i64, Key, First, usize)> {
    let Ok(TopicEvent::Room(ev)) = codec::decode(payload) else {
        return None;
    };
    if ev.kind() != Some(RoomEventType::MessageSent) {
        return None;
    }
    let room = Uuid::parse_str(&ev.room_id).ok()?;
    let user = Uuid::parse_str(ev.actor_id.as_deref()?).ok()?;
    let cid = ev.client_msg_id?;
    let content = ev.content.unwrap_or_default();
    let cost = DEDUP_ENTRY_OVERHEAD + 2 * cid.len() + content.len();
    let first = First {
        message_id: Uuid::parse_str(ev.message_id.as_deref()?).ok()?,
        seq: ev.seq?,
        created_at_ms: ev.message_created_at.unwrap_or(ev.occurred_at),
        content,
    };
    Some((ts, (room, user, cid), first, cost))
}
