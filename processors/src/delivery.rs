//! The delivery processor: room events and notifications → frames for online subscribers (live only; a client
//! that was away resumes from history with its last seq). It also ends the subscriptions of a
//! member who left or was removed, and of everyone in a deleted room, on this process, whichever
//! process made the change (the one that made it has already done so), and forgets the
//! memberships those changes ended from what the send path trusts.

use std::sync::Arc;

use async_trait::async_trait;
use livechat_core::events::{notification_of, QUOTED};
use livechat_core::frames;
use livechat_core::membership::KnownMembers;
use livechat_core::ports::{Directory, Fanout};
use livechat_schemas::{
    NotificationType, RoomEvent, RoomEventType, TopicEvent, NOTIFICATIONS_TOPIC, ROOM_EVENTS_TOPIC,
};
use uuid::Uuid;

use crate::runner::{Decoded, Processor, StartAt};

pub struct DeliveryProcessor {
    pub fanout: Arc<dyn Fanout>,
    /// Asked whether someone who left is a member again before their subscription is ended.
    pub directory: Arc<dyn Directory>,
    /// The memberships this process's send path trusts: those that change are forgotten here.
    pub known_members: Arc<KnownMembers>,
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
                    self.forget_membership(room, ev);
                    if !self.fanout.watched(room) {
                        continue; // nobody here listens: no frame to build
                    }
                    if let Some(frame) = frames::from_room_event(ev) {
                        self.fanout.to_room(room, frame);
                    }
                    self.end_subscriptions(room, ev).await?;
                }
                TopicEvent::Notification(ev) => {
                    let Some(mut n) = notification_of(ev) else {
                        continue;
                    };
                    if !n.payload.contains_key(QUOTED) && quotes(&n.kind) {
                        // Read back from the log, which carries no quoted text: the stored
                        // notification has it (none once erased, and then nothing is pushed).
                        match self.directory.notification(n.id).await? {
                            Some(stored) => n = stored,
                            None => continue,
                        }
                    }
                    self.fanout.to_user(n.user_id, frames::notification(&n));
                }
                TopicEvent::User(_) => {}
            }
        }
        Ok(())
    }
}

/// Whether notifications of this kind quote someone's text (see `livechat_core::events::QUOTED`).
fn quotes(kind: &str) -> bool {
    matches!(
        NotificationType::parse(kind),
        Some(
            NotificationType::Mention
                | NotificationType::Reply
                | NotificationType::JoinRequestCreated
        )
    )
}

impl DeliveryProcessor {
    /// Forgets the memberships a change ended (whatever process made it, watched here or not).
    fn forget_membership(&self, room: Uuid, ev: &RoomEvent) {
        match ev.kind() {
            Some(RoomEventType::RoomDeleted) => self.known_members.forget(room, None),
            Some(RoomEventType::UserLeftRoom | RoomEventType::UserRemovedFromRoom) => {
                let user = ev
                    .subject_user_id
                    .as_deref()
                    .and_then(|u| Uuid::parse_str(u).ok());
                // Without a subject, everyone's (the room is read again).
                self.known_members.forget(room, user);
            }
            _ => {}
        }
    }

    /// Evicts the subscriptions a membership change ended. Someone who left (or was removed) and
    /// is a member again by now keeps the subscription they made since.
    async fn end_subscriptions(&self, room: Uuid, ev: &RoomEvent) -> anyhow::Result<()> {
        let reason = match ev.kind() {
            Some(RoomEventType::RoomDeleted) => {
                self.fanout.evict(room, None, "room_deleted");
                return Ok(());
            }
            Some(RoomEventType::UserLeftRoom) => "left",
            Some(RoomEventType::UserRemovedFromRoom) => "removed",
            _ => return Ok(()),
        };
        let Some(user) = ev
            .subject_user_id
            .as_deref()
            .and_then(|u| Uuid::parse_str(u).ok())
        else {
            return Ok(());
        };
        if self.directory.membership(room, user).await?.is_none() {
            self.fanout.evict(room, Some(user), reason);
        }
        Ok(())
    }
}
