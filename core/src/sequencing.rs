//! What a sequencer decides for each send it owns: the next dense seq of the message's room, or,
//! for a `client_msg_id` it has seen recently from the same user in the same room, the message
//! that send already became. Pure state, no I/O: the distributed sequencer (one writer per
//! partition of the commands topic) loads it from the log and commits what it decides together
//! with its input offsets. [`RecentSends`], the window of recent sends a retry is answered
//! from, also serves the embedded store's committer.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;

/// How long a `client_msg_id` is remembered by default: a retry after that is a new message.
pub const DEDUP_WINDOW_MS: i64 = 10 * 60 * 1000;
/// The memory the remembered sends may take (their texts, ids and bookkeeping): under a load
/// that would exceed it within the window, the oldest are forgotten first (at 5,000 sends/s
/// of 100-byte texts, about the last 30 s are kept; at 250/s, the whole window).
pub const DEDUP_BUDGET_BYTES: usize = 64 << 20;
/// What one remembered send costs beyond its strings (map and queue slots, ids, numbers, the
/// allocator's rounding; ~400 bytes a send were measured for 36-byte ids and 30-byte texts).
pub const DEDUP_ENTRY_OVERHEAD: usize = 300;

/// The sends of the last `window_ms` (within a memory budget), by key: the first send of a key
/// is kept, a later one of the same key is a retry. Entries are forgotten oldest first, once
/// older than the window or once the budget is spent.
#[derive(Debug)]
pub struct RecentSends<K, V> {
    first: HashMap<K, V>,
    /// Every entry of `first`, in the order remembered, with its time (ms) and cost (bytes).
    order: VecDeque<(i64, K, usize)>,
    window_ms: i64,
    budget: usize,
    spent: usize,
}

impl<K: Hash + Eq + Clone, V> RecentSends<K, V> {
    pub fn new(window_ms: i64, budget_bytes: usize) -> Self {
        RecentSends {
            first: HashMap::new(),
            order: VecDeque::new(),
            window_ms,
            budget: budget_bytes,
            spent: 0,
        }
    }

    /// The first send of `key`, if it is remembered.
    pub fn get(&self, key: &K) -> Option<&V> {
        self.first.get(key)
    }

    /// Remembers a send made at `at_ms` unless its key is known already (the first one wins) or
    /// it is older than the window; `cost` is what it takes in memory, in bytes. Remember in
    /// time order: the oldest entries are forgotten first.
    pub fn remember(&mut self, key: K, at_ms: i64, now_ms: i64, value: V, cost: usize) {
        if at_ms < now_ms - self.window_ms || self.first.contains_key(&key) {
            return;
        }
        self.order.push_back((at_ms, key.clone(), cost));
        self.first.insert(key, value);
        self.spent += cost;
        while self.spent > self.budget {
            if !self.forget_oldest() {
                break;
            }
        }
    }

    /// Forgets the sends older than the window.
    pub fn evict(&mut self, now_ms: i64) {
        while matches!(self.order.front(), Some((at, _, _)) if *at < now_ms - self.window_ms) {
            self.forget_oldest();
        }
    }

    /// Forgets every send.
    pub fn clear(&mut self) {
        self.first.clear();
        self.order.clear();
        self.spent = 0;
    }

    pub fn len(&self) -> usize {
        self.first.len()
    }

    pub fn is_empty(&self) -> bool {
        self.first.is_empty()
    }

    fn forget_oldest(&mut self) -> bool {
        match self.order.pop_front() {
            Some((_, key, cost)) => {
                self.first.remove(&key);
                self.spent -= cost;
                true
            }
            None => false,
        }
    }
}

use livechat_schemas::RoomEvent;

/// A send (room, user, client_msg_id).
type SendKey = (String, String, String);

/// The outcome of one send.
#[derive(Debug, Clone, PartialEq)]
pub enum Sequenced {
    /// A new message: the command's event with its seq.
    New(RoomEvent),
    /// A retry: the event the first send became.
    Duplicate(RoomEvent),
}

/// The last seq of each room a sequencer owns, and the sends it saw in the dedup window.
#[derive(Debug)]
pub struct RoomSeqs {
    last: HashMap<String, i64>,
    recent: RecentSends<SendKey, RoomEvent>,
}

impl RoomSeqs {
    /// `window_ms`: how long a `client_msg_id` is remembered (a retry after it is a new message).
    pub fn new(window_ms: i64) -> RoomSeqs {
        RoomSeqs {
            last: HashMap::new(),
            recent: RecentSends::new(window_ms, DEDUP_BUDGET_BYTES),
        }
    }

    /// Whether the room's last seq is known here.
    pub fn knows(&self, room: &str) -> bool {
        self.last.contains_key(room)
    }

    /// Raises the room's last seq to at least `seq` (loading state; never lowers it).
    pub fn raise(&mut self, room: &str, seq: i64) {
        let e = self.last.entry(room.to_string()).or_insert(seq);
        *e = (*e).max(seq);
    }

    /// Remembers a sequenced MESSAGE_SENT event read back from the log (rebuilding the window).
    pub fn remember(&mut self, ev: &RoomEvent, now_ms: i64) {
        if let Some(seq) = ev.seq {
            self.raise(&ev.room_id, seq);
        }
        if let (Some(user), Some(cid)) = (&ev.actor_id, &ev.client_msg_id) {
            let key = (ev.room_id.clone(), user.clone(), cid.clone());
            self.recent
                .remember(key, ev.occurred_at, now_ms, ev.clone(), event_cost(ev));
        }
    }

    /// Sequences one send. The room's last seq must be known ([`RoomSeqs::raise`] first).
    pub fn sequence(&mut self, mut cmd: RoomEvent, now_ms: i64) -> Sequenced {
        self.recent.evict(now_ms);
        let key = match (&cmd.actor_id, &cmd.client_msg_id) {
            (Some(user), Some(cid)) => {
                let key = (cmd.room_id.clone(), user.clone(), cid.clone());
                if let Some(first) = self.recent.get(&key) {
                    return Sequenced::Duplicate(first.clone());
                }
                Some(key)
            }
            _ => None,
        };
        let last = self.last.entry(cmd.room_id.clone()).or_insert(0);
        *last += 1;
        cmd.seq = Some(*last);
        if let Some(key) = key {
            let cost = event_cost(&cmd);
            self.recent.remember(key, now_ms, now_ms, cmd.clone(), cost);
        }
        Sequenced::New(cmd)
    }
}

/// What a remembered event takes in memory, roughly: its key and its strings.
fn event_cost(ev: &RoomEvent) -> usize {
    let text = |s: &Option<String>| s.as_ref().map_or(0, String::len);
    DEDUP_ENTRY_OVERHEAD
        + 2 * (ev.room_id.len() + text(&ev.actor_id) + text(&ev.client_msg_id))
        + ev.event_id.len()
        + text(&ev.content)
        + text(&ev.message_id)
        + text(&ev.subject_username)
        + text(&ev.room_name)
        + 256
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd(room: &str, user: &str, cid: Option<&str>, id: &str) -> RoomEvent {
        RoomEvent {
            event_id: id.into(),
            event_type: "MESSAGE_SENT".into(),
            room_id: room.into(),
            actor_id: Some(user.into()),
            message_id: Some(id.into()),
            client_msg_id: cid.map(Into::into),
            ..RoomEvent::default()
        }
    }

    fn seq_of(s: Sequenced) -> (i64, bool) {
        match s {
            Sequenced::New(e) => (e.seq.unwrap(), false),
            Sequenced::Duplicate(e) => (e.seq.unwrap(), true),
        }
    }

    #[test]
    fn recent_sends_keep_the_first_and_forget_the_oldest_past_the_window_or_the_budget() {
        let mut r: RecentSends<&str, u32> = RecentSends::new(1_000, 300);
        r.remember("a", 0, 0, 1, 100);
        r.remember("a", 10, 10, 2, 100);
        assert_eq!(r.get(&"a"), Some(&1), "the first send of a key is kept");
        r.remember("b", 20, 20, 3, 100);
        r.remember("c", 30, 30, 4, 100);
        assert_eq!(r.len(), 3);
        // Over the budget: the oldest goes first.
        r.remember("d", 40, 40, 5, 100);
        assert_eq!((r.get(&"a"), r.get(&"d")), (None, Some(&5)));
        // Past the window.
        r.evict(1_025);
        assert_eq!((r.get(&"b"), r.get(&"c")), (None, Some(&4)));
        // Older than the window when remembered: not kept.
        r.remember("e", 0, 1_025, 6, 1);
        assert_eq!(r.get(&"e"), None);
        r.clear();
        assert!(r.is_empty());
    }

    #[test]
    fn seqs_are_dense_per_room_from_the_loaded_state() {
        let mut s = RoomSeqs::new(60_000);
        s.raise("a", 41);
        assert!(s.knows("a") && !s.knows("b"));
        assert_eq!(seq_of(s.sequence(cmd("a", "u", None, "1"), 0)), (42, false));
        assert_eq!(seq_of(s.sequence(cmd("b", "u", None, "2"), 0)), (1, false));
        assert_eq!(seq_of(s.sequence(cmd("a", "u", None, "3"), 0)), (43, false));
        // Loading never lowers what is known.
        s.raise("a", 5);
        assert_eq!(seq_of(s.sequence(cmd("a", "u", None, "4"), 0)), (44, false));
    }

    #[test]
    fn a_retry_in_the_window_is_the_first_message_and_after_it_a_new_one() {
        let mut s = RoomSeqs::new(1_000);
        s.raise("a", 0);
        assert_eq!(
            seq_of(s.sequence(cmd("a", "u", Some("c1"), "1"), 0)),
            (1, false)
        );
        // Same cid from another user, or in another room: not a retry.
        assert_eq!(
            seq_of(s.sequence(cmd("a", "v", Some("c1"), "2"), 0)),
            (2, false)
        );
        let Sequenced::Duplicate(first) = s.sequence(cmd("a", "u", Some("c1"), "3"), 500) else {
            panic!("a retry must be a duplicate");
        };
        assert_eq!(first.message_id.as_deref(), Some("1"));
        assert_eq!(
            seq_of(s.sequence(cmd("a", "u", Some("c1"), "4"), 1_501)),
            (3, false)
        );
    }

    #[test]
    fn events_read_back_rebuild_the_window_and_the_last_seq() {
        let mut s = RoomSeqs::new(1_000);
        let mut old = cmd("a", "u", Some("c1"), "1");
        old.seq = Some(7);
        old.occurred_at = 100;
        s.remember(&old, 200);
        assert!(s.knows("a"));
        assert_eq!(
            seq_of(s.sequence(cmd("a", "u", Some("c1"), "9"), 300)),
            (7, true)
        );
        assert_eq!(
            seq_of(s.sequence(cmd("a", "u", Some("c2"), "10"), 300)),
            (8, false)
        );
        // An event older than the window raises the seq but is not remembered as a send.
        let mut older = cmd("b", "u", Some("c1"), "5");
        older.seq = Some(3);
        older.occurred_at = 0;
        s.remember(&older, 5_000);
        assert_eq!(
            seq_of(s.sequence(cmd("b", "u", Some("c1"), "11"), 5_000)),
            (4, false)
        );
    }
}
