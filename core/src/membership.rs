//! Memberships known to hold, remembered for a short while, so a send on the distributed path
//! does not read the directory every time. An entry is forgotten when this process changes the
//! membership, when any process's change reaches this one's live delivery (the membership events
//! every ingress consumes), and after its time to live in any case (a change whose event this
//! process missed, e.g. while restarting its delivery).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::model::{RoomId, UserId};

/// Entries kept at most; past it the whole map is dropped (it refills from the directory).
const MAX_ENTRIES: usize = 200_000;

pub struct KnownMembers {
    since: Mutex<HashMap<(RoomId, UserId), Instant>>,
    ttl: Duration,
}

impl KnownMembers {
    pub fn new(ttl: Duration) -> KnownMembers {
        KnownMembers {
            since: Mutex::new(HashMap::new()),
            ttl,
        }
    }

    /// Whether `user` was found a member of `room` within the time to live, and not forgotten.
    pub fn holds(&self, room: RoomId, user: UserId) -> bool {
        let map = self.since.lock().unwrap_or_else(|p| p.into_inner());
        map.get(&(room, user))
            .is_some_and(|at| at.elapsed() < self.ttl)
    }

    /// Notes that the directory has just said `user` is a member of `room`.
    pub fn remember(&self, room: RoomId, user: UserId) {
        let mut map = self.since.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= MAX_ENTRIES {
            map.clear();
        }
        map.insert((room, user), Instant::now());
    }

    /// Forgets a membership that changed: one user's, or everyone's in the room (`None`).
    pub fn forget(&self, room: RoomId, user: Option<UserId>) {
        let mut map = self.since.lock().unwrap_or_else(|p| p.into_inner());
        match user {
            Some(u) => {
                map.remove(&(room, u));
            }
            None => map.retain(|(r, _), _| *r != room),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    #[test]
    fn remembered_until_forgotten_or_expired() {
        let known = KnownMembers::new(Duration::from_millis(50));
        let (room, other, a, b) = (
            Uuid::new_v4(),
            Uuid::new_v4(),
            Uuid::new_v4(),
            Uuid::new_v4(),
        );
        assert!(!known.holds(room, a));
        known.remember(room, a);
        known.remember(room, b);
        known.remember(other, a);
        assert!(known.holds(room, a) && known.holds(room, b));
        known.forget(room, Some(a));
        assert!(!known.holds(room, a) && known.holds(room, b));
        known.forget(room, None);
        assert!(
            !known.holds(room, b) && known.holds(other, a),
            "only that room"
        );
        std::thread::sleep(Duration::from_millis(60));
        assert!(!known.holds(other, a), "expired");
    }
}
