//! The delivery processor: room events and notifications → frames for online subscribers (live only; a client
//! that was away resumes from history with its last seq).

use std::sync::Arc;

use async_trait::async_trait;
use livechat_core::events::notification_of;
use livechat_core::frames;
use livechat_core::ports::Fanout;
use livechat_schemas::{TopicEvent, NOTIFICATIONS_TOPIC, ROOM_EVENTS_TOPIC};
use uuid::Uuid;

use crate::runner::{Decoded, Processor, StartAt};

pub struct DeliveryProcessor {
    pub fanout: Arc<dyn Fanout>,
}

#[async_trait]
impl Processor for DeliveryProcessor {
    fn name(&self) -> &str {
        "delivery"
    }
    fn topics(&self) -> Vec<&'static str> {
        vec![ROOM_EVENTS_TOPIC, NOTIFICATIONS_TOPIC]
    }
    fn start_at(&self) -> StartAt {
        StartAt::Latest
    }
    async fn handle(&self, batch: &[Decoded]) -> anyhow::Result<()> {
        for d in batch {
            match d.event.as_ref() {
                TopicEvent::Room(ev) => {
                    let Ok(room) = Uuid::parse_str(&ev.room_id) else {
                        continue;
                    };
                    if !self.fanout.watched(room) {
                        continue; // nobody here listens: no frame to build
                    }
                    if let Some(frame) = frames::from_room_event(ev) {
                        self.fanout.to_room(room, frame);
                    }
                }
                TopicEvent::Notification(ev) => {
                    if let Some(n) = notification_of(ev) {
                        self.fanout.to_user(n.user_id, frames::notification(&n));
                    }
                }
                TopicEvent::User(_) => {}
            }
        }
        Ok(())
    }
}
