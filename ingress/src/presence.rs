//! Publishes this process's presence (from its hub) to the shared presence store, so
//! `GET /api/ws/get-active-user-ids/{room}` answers for every ingress process, and tells this
//! process's subscribers when users of other processes come online or go offline.
//!
//! Each round: publish (this process's users, withdrawing those who left), then read who is
//! online in every room this process has subscribers in, and push `ROOM_USER_ONLINE` /
//! `ROOM_USER_OFFLINE` for changes the local hub did not already announce. A change on another
//! process reaches subscribers here within two rounds.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use livechat_core::frames;
use livechat_core::model::{RoomId, UserId};
use livechat_core::ports::{Fanout, Presence};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::hub::Hub;

/// How often the process republishes; a join or leave shows on other processes within this.
pub const PUBLISH_EVERY: Duration = Duration::from_secs(2);
/// How long an entry outlives its last publish: a crashed process's users fade out after it.
pub const TTL: Duration = Duration::from_secs(10);

type Pairs = Vec<(RoomId, Vec<UserId>)>;

/// Entries of `before` missing from `now` (users who left a room since the last publish).
fn gone(before: &HashMap<RoomId, Vec<UserId>>, now: &HashMap<RoomId, Vec<UserId>>) -> Pairs {
    before
        .iter()
        .filter_map(|(room, users)| {
            let still: HashSet<&UserId> = now.get(room).into_iter().flatten().collect();
            let left: Vec<UserId> = users
                .iter()
                .filter(|u| !still.contains(u))
                .copied()
                .collect();
            (!left.is_empty()).then_some((*room, left))
        })
        .collect()
}

/// Who this process's subscribers of each room have been told is online.
#[derive(Default)]
struct Announced {
    rooms: HashMap<RoomId, HashSet<UserId>>,
}

impl Announced {
    /// Frames for the difference between what was announced and `online` (everyone online in
    /// the room, any process), skipping what the local hub announced itself.
    fn update(
        &mut self,
        room: RoomId,
        online: HashSet<UserId>,
        local_now: &HashSet<UserId>,
        local_before: &HashSet<UserId>,
    ) -> Vec<(UserId, bool)> {
        let before = self.rooms.remove(&room).unwrap_or_default();
        let mut changes = Vec::new();
        for u in &online {
            let hub_said_online = local_now.contains(u);
            // The hub said "offline" when the user's last socket here closed; they are still
            // online elsewhere, so say so again.
            let hub_said_offline = local_before.contains(u) && !local_now.contains(u);
            if !hub_said_online && (!before.contains(u) || hub_said_offline) {
                changes.push((*u, true));
            }
        }
        for u in before.difference(&online) {
            if !local_before.contains(u) {
                changes.push((*u, false));
            }
        }
        if !online.is_empty() {
            self.rooms.insert(room, online);
        }
        changes
    }
}

/// Runs until `shutdown`, then withdraws this process's entries.
pub async fn run(hub: Arc<Hub>, store: Arc<dyn Presence>, shutdown: CancellationToken) {
    let node = Uuid::new_v4();
    let ttl = TTL.as_millis() as i64;
    let mut published: HashMap<RoomId, Vec<UserId>> = HashMap::new();
    let mut announced = Announced::default();
    let mut tick = tokio::time::interval(PUBLISH_EVERY);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.cancelled() => break,
        }
        let now = hub.presence_snapshot();
        let online: Pairs = now.iter().map(|(r, u)| (*r, u.clone())).collect();
        if let Err(e) = store
            .publish(node, &online, &gone(&published, &now), ttl)
            .await
        {
            // Kept as it was: the next round retries the withdrawals too.
            tracing::warn!(error = %e, "publishing presence failed");
            continue;
        }
        announce_remote(&hub, store.as_ref(), &mut announced, &published, &now).await;
        published = now;
    }
    let all: Pairs = published.into_iter().collect();
    if let Err(e) = store.publish(node, &[], &all, ttl).await {
        tracing::warn!(error = %e, "withdrawing presence at shutdown failed (it expires by itself)");
    }
}

/// Pushes presence changes of other processes to this process's subscribers.
async fn announce_remote(
    hub: &Hub,
    store: &dyn Presence,
    announced: &mut Announced,
    before: &HashMap<RoomId, Vec<UserId>>,
    now: &HashMap<RoomId, Vec<UserId>>,
) {
    let set = |m: &HashMap<RoomId, Vec<UserId>>, r: &RoomId| -> HashSet<UserId> {
        m.get(r).into_iter().flatten().copied().collect()
    };
    // Rooms with subscribers here, and rooms that just lost their last one (to forget them).
    let rooms: HashSet<RoomId> = now.keys().chain(announced.rooms.keys()).copied().collect();
    for room in rooms {
        if !now.contains_key(&room) {
            announced.rooms.remove(&room);
            continue;
        }
        let online: HashSet<UserId> = match store.online(room).await {
            Ok(users) => users.into_iter().collect(),
            Err(e) => {
                tracing::warn!(error = %e, "reading presence failed");
                return;
            }
        };
        for (user, up) in announced.update(room, online, &set(now, &room), &set(before, &room)) {
            hub.to_room(room, frames::presence(room, user, up));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gone_lists_only_users_who_left() {
        let (r1, r2) = (Uuid::new_v4(), Uuid::new_v4());
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let before = HashMap::from([(r1, vec![a, b]), (r2, vec![a])]);
        let now = HashMap::from([(r1, vec![a])]);
        let mut left = gone(&before, &now);
        left.sort();
        let mut expected = vec![(r1, vec![b]), (r2, vec![a])];
        expected.sort();
        assert_eq!(left, expected);
        assert!(gone(&now, &now).is_empty());
    }

    #[test]
    fn only_changes_the_hub_did_not_announce_are_pushed() {
        let room = Uuid::new_v4();
        let (local, remote) = (Uuid::new_v4(), Uuid::new_v4());
        let mut a = Announced::default();
        let here = HashSet::from([local]);
        // First round: the remote user is new; the local one the hub already announced.
        let ch = a.update(room, HashSet::from([local, remote]), &here, &HashSet::new());
        assert_eq!(ch, vec![(remote, true)]);
        // Nothing changed: nothing pushed.
        assert!(a
            .update(room, HashSet::from([local, remote]), &here, &here)
            .is_empty());
        // The remote user leaves: pushed; the local user leaves: the hub said it already.
        let ch = a.update(room, HashSet::new(), &HashSet::new(), &here);
        assert_eq!(ch, vec![(remote, false)]);
    }

    #[test]
    fn a_user_leaving_here_but_online_elsewhere_is_announced_online_again() {
        let room = Uuid::new_v4();
        let user = Uuid::new_v4();
        let mut a = Announced::default();
        let here = HashSet::from([user]);
        a.update(room, HashSet::from([user]), &here, &HashSet::new());
        let ch = a.update(room, HashSet::from([user]), &HashSet::new(), &here);
        assert_eq!(ch, vec![(user, true)]);
    }
}
