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
//!   may have rolled back sends remembered here), rebuilds it from the room events of the window
//!   (the newest 200,000 at most, which the budget holds: 0.8 s here, once, on the committer);
//! - once another connection writes the file (another process on the data directory), each check
//!   first reads the room's partition from where this process last read it. SQLite runs one
//!   write transaction at a time, so a check sees every send committed before it, by anyone.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use livechat_core::keyring::Keyring;
use livechat_core::model::SendReceipt;
use livechat_core::ports::EventLog;
use livechat_core::sequencing::{
    RecentSends, DEDUP_BUDGET_BYTES, DEDUP_ENTRY_OVERHEAD, DEDUP_WINDOW_MS,
};
use livechat_core::{from_ms, to_ms};
use livechat_schemas::{RoomEventType, TopicEvent, ROOM_EVENTS_TOPIC};
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
    /// Opens the sealed sends read back from the log (a retry is answered with its text).
    keyring: Arc<Keyring>,
}

struct State {
    sends: RecentSends<Key, First>,
    /// Per partition of the room events, the offset up to which the log was read into `sends`.
    read_to: HashMap<u32, i64>,
    /// The rollback count when `sends` was rebuilt (None: not yet).
    built_at: Option<u64>,
}

impl Retries {
    pub(super) fn new(db: &Db, log: SqliteLog, keyring: Arc<Keyring>) -> Retries {
        Retries {
            keyring,
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
            st.rebuild(tx, &self.log, &self.keyring, now)?;
            st.built_at = Some(rollbacks);
        } else if self.shared.load(Ordering::Relaxed) {
            let p = kafka_partition(&room.to_string(), self.log.partitions(ROOM_EVENTS_TOPIC));
            st.read_partition(tx, p, &self.keyring, now)?;
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
    fn rebuild(
        &mut self,
        tx: &Connection,
        log: &SqliteLog,
        keyring: &Keyring,
        now: i64,
    ) -> rusqlite::Result<()> {
        let started = std::time::Instant::now();
        self.sends.clear();
        self.read_to.clear();
        let mut found = Vec::new();
        let starts = rebuild_from(tx, log.partitions(ROOM_EVENTS_TOPIC), now, REBUILD_MOST)?;
        for (p, from) in (0..).zip(starts) {
            let end = scan_in(tx, ROOM_EVENTS_TOPIC, p, from, |_, ts, payload| {
                found.extend(sent_in(ts, payload, keyring));
            })?;
            self.read_to.insert(p, end);
        }
        // Oldest first, so that the budget forgets the oldest.
        found.sort_by_key(|(ts, _, _, _)| *ts);
        let n = found.len();
        for (ts, key, first, cost) in found {
            self.sends.remember(key, ts, now, first, cost);
        }
        tracing::info!(
            sends = n,
            kept = self.sends.len(),
            ms = started.elapsed().as_millis() as u64,
            "Read the recent sends from the log, to answer retries."
        );
        Ok(())
    }

    /// Reads the sends of partition `p` committed since it was last read (by any connection).
    fn read_partition(
        &mut self,
        tx: &Connection,
        p: u32,
        keyring: &Keyring,
        now: i64,
    ) -> rusqlite::Result<()> {
        let window_start = offset_for_time_in(tx, ROOM_EVENTS_TOPIC, p, now - DEDUP_WINDOW_MS)?;
        let from = self.read_to.get(&p).copied().unwrap_or(0).max(window_start);
        let sends = &mut self.sends;
        let end = scan_in(tx, ROOM_EVENTS_TOPIC, p, from, |_, ts, payload| {
            if let Some((ts, key, first, cost)) = sent_in(ts, payload, keyring) {
                sends.remember(key, ts, now, first, cost);
            }
        })?;
        self.read_to.insert(p, end);
        Ok(())
    }
}

/// The most room events a rebuild reads: about as many sends as the budget holds (more would be
/// read only to be forgotten again). Reading them takes about a second on a small machine.
const REBUILD_MOST: i64 = 200_000;

/// Where a rebuild starts reading each partition: at the window's start, or, when the window
/// holds more than `most` records, at the earliest time after which it holds no more (found by
/// bisecting the time: the newest sends are the ones a retry repeats).
fn rebuild_from(
    tx: &Connection,
    partitions: u32,
    now: i64,
    most: i64,
) -> rusqlite::Result<Vec<i64>> {
    let starts_at = |t: i64| -> rusqlite::Result<Vec<i64>> {
        (0..partitions)
            .map(|p| offset_for_time_in(tx, ROOM_EVENTS_TOPIC, p, t))
            .collect()
    };
    let ends = starts_at(i64::MAX)?;
    let held = |starts: &[i64]| -> i64 { ends.iter().zip(starts).map(|(e, s)| e - s).sum() };
    let (mut lo, mut hi) = (now - DEDUP_WINDOW_MS, now + 1);
    let mut starts = starts_at(lo)?;
    if held(&starts) <= most {
        return Ok(starts);
    }
    // The earliest time from which no more than `most` records follow.
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        let at_mid = starts_at(mid)?;
        if held(&at_mid) <= most {
            (hi, starts) = (mid, at_mid);
        } else {
            lo = mid;
        }
    }
    if held(&starts) > most {
        starts = starts_at(hi)?;
    }
    Ok(starts)
}

/// The send a room event record holds, if it is a MESSAGE_SENT with a `client_msg_id`.
fn sent_in(ts: i64, payload: &[u8], keyring: &Keyring) -> Option<(i64, Key, First, usize)> {
    let Ok(TopicEvent::Room(ev)) = keyring.decode(payload) else {
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

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::params;

    /// A log of two partitions: `n` records each, one per millisecond from `t0`.
    fn log_of(n: i64, t0: i64) -> Connection {
        let c = Connection::open_in_memory().unwrap();
        c.execute_batch(crate::embedded::log::SCHEMA).unwrap();
        for p in 0..2 {
            for o in 0..n {
                c.execute(
                    "INSERT INTO records(topic, partition, offset, key, payload, ts) VALUES (?1, ?2, ?3, 'k', x'00', ?4)",
                    params![ROOM_EVENTS_TOPIC, p, o, t0 + o],
                )
                .unwrap();
            }
        }
        c
    }

    #[test]
    fn a_rebuild_reads_the_window_or_only_its_newest_records_when_it_holds_too_many() {
        let now = 1_000_000_000;
        // Per partition: 300 records from before the window, then 300 inside it.
        let c = log_of(600, now - DEDUP_WINDOW_MS - 300);
        let starts = |most| rebuild_from(&c, 2, now, most).unwrap();
        assert_eq!(starts(1_000), vec![300, 300], "the window's start");
        // At most 200 of the 600 in the window: the newest 100 of each partition.
        assert_eq!(starts(200), vec![500, 500]);
        assert_eq!(starts(1), vec![600, 600], "fewer than one per time: none");
    }
}
