//! Sessions this process validated lately, kept in memory so that an outage of the session
//! store (Redis in distributed mode) does not sign everyone out: while the store cannot be
//! reached, a session validated here within [`RECALL_WINDOW`] and not expired still
//! authenticates. The store stays the authority whenever it answers (a session it does not
//! know is forgotten here too), and a logout on this process forgets at once; a logout on
//! another process during an outage is honoured when the store is back, at the latest after
//! the window.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use uuid::Uuid;

use crate::model::Session;

/// How long after its last validation a session may stand in for the store.
pub const RECALL_WINDOW: Duration = Duration::from_secs(300);
/// Sessions remembered at most (about 100 bytes each).
const CAPACITY: usize = 100_000;

#[derive(Default)]
pub struct RecentSessions {
    seen: Mutex<HashMap<Uuid, (Session, Instant)>>,
}

impl RecentSessions {
    /// A session the store just confirmed.
    pub fn remember(&self, s: &Session) {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if seen.len() >= CAPACITY && !seen.contains_key(&s.id) {
            seen.retain(|_, (_, at)| at.elapsed() < RECALL_WINDOW);
            if seen.len() >= CAPACITY {
                return;
            }
        }
        seen.insert(s.id, (s.clone(), Instant::now()));
    }

    /// A session that ended, or that the store does not know.
    pub fn forget(&self, id: Uuid) {
        self.seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&id);
    }

    /// The session, if it was confirmed within the window (its expiry is checked by the caller).
    pub fn recall(&self, id: Uuid) -> Option<Session> {
        let seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        seen.get(&id)
            .filter(|(_, at)| at.elapsed() < RECALL_WINDOW)
            .map(|(s, _)| s.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session() -> Session {
        let at = crate::now();
        Session {
            id: Uuid::new_v4(),
            user_id: Uuid::new_v4(),
            created_at: at,
            expires_at: at,
            absolute_expires_at: at,
        }
    }

    #[test]
    fn remembered_sessions_are_recalled_until_forgotten() {
        let r = RecentSessions::default();
        let s = session();
        assert!(r.recall(s.id).is_none());
        r.remember(&s);
        assert_eq!(r.recall(s.id).map(|x| x.id), Some(s.id));
        r.forget(s.id);
        assert!(r.recall(s.id).is_none());
    }
}
