//! Publishes this process's presence (from its hub) to the shared presence store, so
//! `GET /rooms/{id}/active_users` answers for every ingress process.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use livechat_core::model::{RoomId, UserId};
use livechat_core::ports::Presence;
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

/// Runs until `shutdown`, then withdraws this process's entries.
pub async fn run(hub: Arc<Hub>, store: Arc<dyn Presence>, shutdown: CancellationToken) {
    let node = Uuid::new_v4();
    let ttl = TTL.as_millis() as i64;
    let mut published: HashMap<RoomId, Vec<UserId>> = HashMap::new();
    let mut tick = tokio::time::interval(PUBLISH_EVERY);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.cancelled() => break,
        }
        let now = hub.presence_snapshot();
        let online: Pairs = now.iter().map(|(r, u)| (*r, u.clone())).collect();
        match store
            .publish(node, &online, &gone(&published, &now), ttl)
            .await
        {
            Ok(()) => published = now,
            // Kept as it was: the next round retries the withdrawals too.
            Err(e) => tracing::warn!(error = %e, "publishing presence failed"),
        }
    }
    let all: Pairs = published.into_iter().collect();
    if let Err(e) = store.publish(node, &[], &all, ttl).await {
        tracing::warn!(error = %e, "withdrawing presence at shutdown failed (it expires by itself)");
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
}
