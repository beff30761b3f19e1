//! The notifications processor: join requests, decisions and mentions → persisted notifications,
//! each then announced on `chat.notifications.v1`, from which every ingress process pushes it
//! live to the recipient's sockets (so the push reaches users on any process). Ids derive from
//! the event id, so a redelivered event stores nothing twice; the announcement is repeated after
//! a crash rather than lost (clients deduplicate by notification id).

use std::sync::Arc;

use async_trait::async_trait;
use livechat_core::events::notification_record;
use livechat_core::ports::{Directory, EventLog};
use livechat_core::service::notifications_for;
use livechat_schemas::{TopicEvent, ROOM_EVENTS_TOPIC};

use crate::runner::{Decoded, Processor};

/// Topics the notifications processor consumes.
pub const TOPICS: &[&str] = &[ROOM_EVENTS_TOPIC];

pub struct NotificationsProcessor {
    pub directory: Arc<dyn Directory>,
    /// Where stored notifications are announced; None when rebuilding the store (replay).
    pub announce: Option<Arc<dyn EventLog>>,
}

#[async_trait]
impl Processor for NotificationsProcessor {
    fn name(&self) -> &str {
        "notifications"
    }
    fn topics(&self) -> Vec<&'static str> {
        TOPICS.to_vec()
    }
    async fn handle(&self, batch: &[Decoded]) -> anyhow::Result<()> {
        let mut announcements = Vec::new();
        for d in batch {
            let TopicEvent::Room(ev) = &d.event else {
                continue;
            };
            for n in notifications_for(ev) {
                self.directory.insert_notification(&n).await?;
                announcements.push(notification_record(&n).map_err(|e| anyhow::anyhow!("{e}"))?);
            }
        }
        if let (Some(log), false) = (&self.announce, announcements.is_empty()) {
            log.append(&announcements).await?;
        }
        Ok(())
    }
}
