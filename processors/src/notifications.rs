//! The notifications processor: join requests, decisions and mentions → persisted notifications,
//! pushed live to the recipient. Ids derive from the event id, so a redelivery adds nothing and
//! pushes nothing twice.

use std::sync::Arc;

use async_trait::async_trait;
use livechat_core::ports::{Directory, Fanout};
use livechat_core::{frames, service::notifications_for};
use livechat_schemas::{TopicEvent, ROOM_EVENTS_TOPIC};

use crate::runner::{Decoded, Processor};

/// Topics the notifications processor consumes.
pub const TOPICS: &[&str] = &[ROOM_EVENTS_TOPIC];

pub struct NotificationsProcessor {
    pub directory: Arc<dyn Directory>,
    pub fanout: Arc<dyn Fanout>,
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
        for d in batch {
            let TopicEvent::Room(ev) = &d.event else {
                continue;
            };
            for n in notifications_for(ev) {
                if self.directory.insert_notification(&n).await? {
                    self.fanout.to_user(n.user_id, frames::notification(&n));
                }
            }
        }
        Ok(())
    }
}
