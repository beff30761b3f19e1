//! What a sequencer decides for each send it owns: the next dense seq of the message's room, or,
//! for a `client_msg_id` it has seen recently from the same user in the same room, the message
//! that send already became. Pure state, no I/O: the distributed sequencer (one writer per
//! partition of the commands topic) loads it from the log and commits what it decides together
//! with its input offsets.

use std::collections::{HashMap, VecDeque};

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
    recent: HashMap<SendKey, RoomEvent>,
    /// `recent` in the order it was filled, with each entry's time (ms), for eviction.
    order: VecDeque<(i64, SendKey)>,
    window_ms: i64,
}

impl RoomSeqs {
    /// `window_ms`: how long a `client_msg_id` is remembered (a retry after it is a new message).
    pub fn new(window_ms: i64) -> RoomSeqs {
        RoomSeqs {
            last: HashMap::new(),
            recent: HashMap::new(),
            order: VecDeque::new(),
            window_ms,
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
            let at = ev.occurred_at;
            if at >= now_ms - self.window_ms {
                let key = (ev.room_id.clone(), user.clone(), cid.clone());
                self.order.push_back((at, key.clone()));
                self.recent.entry(key).or_insert_with(|| ev.clone());
            }
        }
    }

    /// Sequences one send. The room's last seq must be known ([`RoomSeqs::raise`] first).
    pub fn sequence(&mut self, mut cmd: RoomEvent, now_ms: i64) -> Sequenced {
        self.evict(now_ms);
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
            self.order.push_back((now_ms, key.clone()));
            self.recent.insert(key, cmd.clone());
        }
        Sequenced::New(cmd)
    }

    fn evict(&mut self, now_ms: i64) {
        while let Some((at, _)) = self.order.front() {
            if *at >= now_ms - self.window_ms {
                break;
            }
            if let Some((_, key)) = self.order.pop_front() {
                self.recent.remove(&key);
            }
        }
    }
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
