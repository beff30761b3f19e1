//! The in-process hub: which socket is subscribed to which room, presence, and delivery.
//!
//! Delivery never waits on a socket: each connection has a bounded queue and the hub uses
//! `try_send`. A full queue marks the connection as a slow reader; it is closed (4008) and can
//! resume from its last seq. Locks are std locks held only for map lookups and `try_send`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use axum::extract::ws::Utf8Bytes;
use livechat_core::frames;
use livechat_core::model::{RoomId, UserId};
use livechat_core::ports::{Fanout, LiveFrame};
use uuid::Uuid;

mod queue;
pub use queue::release_burst;
use queue::OutboundQueue;

pub type ConnId = u64;

/// A frame for the sockets of a room (or of a user when `room` is None), built once per
/// broadcast and shared by every recipient.
#[derive(Debug)]
pub struct Broadcast {
    pub room: Option<RoomId>,
    /// The message seq, for ordering and deduplication per room.
    pub seq: Option<i64>,
    pub text: Utf8Bytes,
}

/// What the hub queues for a connection: one pointer wide, so a socket's queue costs little
/// while idle and a broadcast costs one reference count per recipient.
#[derive(Debug)]
pub enum Outbound {
    Frame(Arc<Broadcast>),
    /// The connection's subscription to the room ended (removed, left, room deleted).
    Evicted(Box<(RoomId, String)>),
}

/// Close codes the hub may ask a connection to close with.
pub const CLOSE_SLOW_CONSUMER: u16 = 4008;
pub const CLOSE_LOGGED_OUT: u16 = 4401;

/// The hub's handle on one connection.
#[derive(Debug)]
pub struct ConnHandle {
    pub id: ConnId,
    pub user: UserId,
    pub session: Uuid,
    /// What waits to be written to the socket (bounded: a slow reader is closed, not waited for),
    /// and the hub's request to close it; `close` holds that close's code and reason.
    queue: OutboundQueue<Outbound>,
    close: Mutex<Option<(u16, String)>>,
}

impl ConnHandle {
    fn push(&self, out: Outbound) {
        if self.queue.push(out).is_err() {
            self.kill(CLOSE_SLOW_CONSUMER, "slow consumer: outbound queue full")
        }
    }

    /// Waits for queued frames, then moves up to `max` of them to `into` (the connection's
    /// task, the queue's one receiver). Returns 0 only when the hub asked for the close.
    pub async fn recv_many(&self, into: &mut Vec<Outbound>, max: usize) -> usize {
        self.queue.recv_many(into, max).await
    }

    /// Whether the hub asked for the connection to close ([`Self::kill`]).
    pub fn is_closed(&self) -> bool {
        self.queue.is_closed()
    }

    /// Completes once the hub asked for the close.
    pub async fn closed(&self) {
        self.queue.closed().await
    }

    pub fn kill(&self, code: u16, reason: &str) {
        let mut c = self.close.lock().unwrap_or_else(|p| p.into_inner());
        if c.is_none() {
            *c = Some((code, reason.to_string()));
        }
        drop(c);
        self.queue.close();
    }

    pub fn close_reason(&self) -> Option<(u16, String)> {
        self.close.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

#[derive(Default)]
pub struct Hub {
    next_id: AtomicU64,
    rooms: RwLock<HashMap<RoomId, HashMap<ConnId, Arc<ConnHandle>>>>,
    users: RwLock<HashMap<UserId, HashMap<ConnId, Arc<ConnHandle>>>>,
    /// Subscribed sockets per (room, user): presence is "at least one".
    presence: Mutex<HashMap<RoomId, HashMap<UserId, usize>>>,
}

impl Hub {
    pub fn new() -> Arc<Hub> {
        Arc::new(Hub::default())
    }

    /// Registers a connection, with an outbound queue of `queue` frames; returns its handle.
    pub fn register(&self, user: UserId, session: Uuid, queue: usize) -> Arc<ConnHandle> {
        let h = Arc::new(ConnHandle {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            user,
            session,
            queue: OutboundQueue::new(queue),
            close: Mutex::new(None),
        });
        self.users
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .entry(user)
            .or_default()
            .insert(h.id, h.clone());
        h
    }

    /// Open sockets of a user in this process.
    pub fn sockets_of(&self, user: UserId) -> usize {
        self.users
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&user)
            .map_or(0, HashMap::len)
    }

    /// Removes a connection and all its subscriptions (announcing presence changes).
    pub fn unregister(&self, conn: &Arc<ConnHandle>, rooms: &[RoomId]) {
        for r in rooms {
            self.unsubscribe(conn, *r);
        }
        let mut users = self.users.write().unwrap_or_else(|p| p.into_inner());
        if let Some(m) = users.get_mut(&conn.user) {
            m.remove(&conn.id);
            if m.is_empty() {
                users.remove(&conn.user);
            }
        }
    }

    /// Subscribes a connection to a room's live frames.
    pub fn subscribe(&self, conn: &Arc<ConnHandle>, room: RoomId) {
        let inserted = self
            .rooms
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .entry(room)
            .or_default()
            .insert(conn.id, conn.clone())
            .is_none();
        if inserted && self.presence_change(room, conn.user, true) {
            self.to_room(room, frames::presence(room, conn.user, true));
        }
    }

    /// Ends a subscription; returns whether there was one.
    pub fn unsubscribe(&self, conn: &ConnHandle, room: RoomId) -> bool {
        let removed = {
            let mut rooms = self.rooms.write().unwrap_or_else(|p| p.into_inner());
            let removed = rooms
                .get_mut(&room)
                .map(|m| m.remove(&conn.id).is_some())
                .unwrap_or(false);
            if rooms.get(&room).is_some_and(|m| m.is_empty()) {
                rooms.remove(&room);
            }
            removed
        };
        if removed && self.presence_change(room, conn.user, false) {
            self.to_room(room, frames::presence(room, conn.user, false));
        }
        removed
    }

    /// Counts a user's subscribed sockets in a room; true when the user went online or offline.
    fn presence_change(&self, room: RoomId, user: UserId, up: bool) -> bool {
        let mut p = self.presence.lock().unwrap_or_else(|p| p.into_inner());
        let users = p.entry(room).or_default();
        let n = users.entry(user).or_insert(0);
        let changed = if up {
            *n += 1;
            *n == 1
        } else {
            *n = n.saturating_sub(1);
            *n == 0
        };
        if *n == 0 {
            users.remove(&user);
        }
        if users.is_empty() {
            p.remove(&room);
        }
        changed
    }

    pub fn connection_count(&self) -> usize {
        self.users
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .map(|m| m.len())
            .sum()
    }
}

impl Fanout for Hub {
    fn watched(&self, room: RoomId) -> bool {
        self.rooms
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(&room)
    }

    fn to_room(&self, room: RoomId, frame: LiveFrame) {
        let rooms = self.rooms.read().unwrap_or_else(|p| p.into_inner());
        if let Some(conns) = rooms.get(&room) {
            let shared = Arc::new(Broadcast {
                room: Some(room),
                seq: frame.seq,
                text: Utf8Bytes::from(frame.text.as_ref()),
            });
            for c in conns.values() {
                if frame.skip_user == Some(c.user) {
                    continue;
                }
                c.push(Outbound::Frame(shared.clone()));
            }
        }
    }

    fn to_user(&self, user: UserId, frame: LiveFrame) {
        let users = self.users.read().unwrap_or_else(|p| p.into_inner());
        if let Some(conns) = users.get(&user) {
            let shared = Arc::new(Broadcast {
                room: None,
                seq: frame.seq,
                text: Utf8Bytes::from(frame.text.as_ref()),
            });
            for c in conns.values() {
                c.push(Outbound::Frame(shared.clone()));
            }
        }
    }

    fn evict(&self, room: RoomId, user: Option<UserId>, reason: &str) {
        let targets: Vec<Arc<ConnHandle>> = {
            let rooms = self.rooms.read().unwrap_or_else(|p| p.into_inner());
            rooms
                .get(&room)
                .map(|m| {
                    m.values()
                        .filter(|c| user.is_none_or(|u| c.user == u))
                        .cloned()
                        .collect()
                })
                .unwrap_or_default()
        };
        for c in targets {
            // Unsubscribe first so no later frame of the room reaches the socket. Two evictions
            // of one socket may race (the service's own, and the delivery processor's when the
            // event comes through the log): only the one that removed the subscription tells
            // the socket, so the client hears of its removal once.
            if self.unsubscribe(&c, room) {
                c.push(Outbound::Evicted(Box::new((room, reason.to_string()))));
            }
        }
    }

    fn disconnect_session(&self, session: Uuid) {
        let users = self.users.read().unwrap_or_else(|p| p.into_inner());
        for conns in users.values() {
            for c in conns.values().filter(|c| c.session == session) {
                c.kill(CLOSE_LOGGED_OUT, "logged out");
            }
        }
    }

    fn online_users(&self, room: RoomId) -> Vec<UserId> {
        let p = self.presence.lock().unwrap_or_else(|p| p.into_inner());
        p.get(&room)
            .map(|m| m.keys().copied().collect())
            .unwrap_or_default()
    }
}

impl Hub {
    /// Who is online in each room on this process (for the cross-process presence store).
    pub fn presence_snapshot(&self) -> HashMap<RoomId, Vec<UserId>> {
        let p = self.presence.lock().unwrap_or_else(|p| p.into_inner());
        p.iter()
            .map(|(room, users)| (*room, users.keys().copied().collect()))
            .collect()
    }

    /// Asks every connection to close (shutdown).
    pub fn close_all(&self, code: u16, reason: &str) {
        let users = self.users.read().unwrap_or_else(|p| p.into_inner());
        for conns in users.values() {
            for c in conns.values() {
                c.kill(code, reason);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_socket_evicted_twice_at_once_is_told_once() {
        let hub = Hub::new();
        for _ in 0..2_000 {
            let (user, room) = (Uuid::new_v4(), Uuid::new_v4());
            let conn = hub.register(user, Uuid::new_v4(), 16);
            hub.subscribe(&conn, room);
            // The service's eviction and the delivery processor's, at the same moment.
            std::thread::scope(|s| {
                s.spawn(|| hub.evict(room, Some(user), "removed"));
                s.spawn(|| hub.evict(room, None, "removed"));
            });
            let mut queued = Vec::new();
            conn.queue.take(&mut queued, 16);
            let evictions = queued
                .iter()
                .filter(|o| matches!(o, Outbound::Evicted(_)))
                .count();
            assert_eq!(evictions, 1);
            hub.unregister(&conn, &[]);
        }
    }
}
