//! The analytics processor: every room and user event → one analytics row (by event id).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use livechat_core::model::AnalyticsEvent;
use livechat_core::ports::AnalyticsStore;
use livechat_schemas::{RoomEventType, TopicEvent, ROOM_EVENTS_TOPIC, USER_EVENTS_TOPIC};
use uuid::Uuid;

use crate::runner::{Decoded, Processor};

/// Topics the analytics processor consumes.
pub const TOPICS: &[&str] = &[ROOM_EVENTS_TOPIC, USER_EVENTS_TOPIC];

pub struct AnalyticsProcessor {
    pub store: Arc<dyn AnalyticsStore>,
    pub group: String,
}

#[async_trait]
impl Processor for AnalyticsProcessor {
    fn name(&self) -> &str {
        &self.group
    }
    fn topics(&self) -> Vec<&'static str> {
        TOPICS.to_vec()
    }
    /// Analytics is read in aggregates, never right after a send: one write a second is what
    /// ClickHouse asks of its clients (each INSERT makes a part to merge) and spares SQLite
    /// commits.
    fn gather(&self) -> Duration {
        Duration::from_secs(1)
    }
    async fn handle(&self, batch: &[Decoded]) -> anyhow::Result<()> {
        let rows: Vec<_> = batch
            .iter()
            .filter_map(|d| analytics_row(&d.event))
            .collect();
        if !rows.is_empty() {
            self.store.insert(&rows).await?;
        }
        Ok(())
    }
}

fn parse_uuid(s: &str) -> Option<Uuid> {
    Uuid::parse_str(s).ok()
}

/// The payload of a message's row: `{"message_id","seq"}`, and a reaction's `"emoji"` (null
/// when absent), keys by name. Written directly: one per message sent, so no JSON tree for it.
#[derive(serde::Serialize)]
struct MessagePayload<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    emoji: Option<&'a Option<String>>,
    message_id: &'a Option<String>,
    seq: Option<i64>,
}

impl MessagePayload<'_> {
    fn to_json(&self) -> String {
        serde_json::to_string(self).expect("strings and integers always serialize")
    }
}

/// The analytics row of a topic event (event time; absent ids stay absent, never zero UUIDs).
pub fn analytics_row(ev: &TopicEvent) -> Option<AnalyticsEvent> {
    match ev {
        TopicEvent::Room(e) => {
            let reaction = matches!(
                e.kind(),
                Some(RoomEventType::MessageReactionAdded | RoomEventType::MessageReactionRemoved)
            );
            let pin = matches!(
                e.kind(),
                Some(RoomEventType::MessagePinned | RoomEventType::MessageUnpinned)
            );
            let about_message = |emoji| MessagePayload {
                emoji,
                message_id: &e.message_id,
                seq: e.seq,
            };
            let payload = match e.kind() {
                Some(
                    RoomEventType::MessageSent
                    | RoomEventType::MessageEdited
                    | RoomEventType::MessageDeleted,
                ) => about_message(None).to_json(),
                _ if reaction => about_message(Some(&e.reaction)).to_json(),
                _ if pin => about_message(None).to_json(),
                _ => serde_json::json!({ "room_name": e.room_name }).to_string(),
            };
            // The subject is who the event is about (message author, joined/removed user); a
            // reaction or a pin is about who made it.
            let user = match reaction || pin {
                true => e.actor_id.as_deref(),
                false => e.subject_user_id.as_deref().or(e.actor_id.as_deref()),
            }
            .and_then(parse_uuid);
            Some(AnalyticsEvent {
                event_id: parse_uuid(&e.event_id)?,
                event_type: e.event_type.clone(),
                user_id: user,
                room_id: parse_uuid(&e.room_id),
                occurred_at: livechat_core::from_ms(e.occurred_at),
                payload,
            })
        }
        TopicEvent::User(e) => Some(AnalyticsEvent {
            event_id: parse_uuid(&e.event_id)?,
            event_type: e.event_type.clone(),
            user_id: parse_uuid(&e.user_id),
            room_id: None,
            occurred_at: livechat_core::from_ms(e.occurred_at),
            payload: serde_json::json!({ "notification_id": e.notification_id }).to_string(),
        }),
        // Notifications are derived from room events, which are counted already.
        TopicEvent::Notification(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A message's payload is the JSON object it always was: the same keys and values (an
    /// absent emoji is `null`, an absent seq too).
    #[test]
    fn message_payloads_are_the_objects_they_were() {
        let id = Some("0192f0c4-0000-7000-8000-000000000001".to_string());
        for (emoji, seq) in [
            (None, Some(7)),
            (Some(Some("👍".to_string())), Some(8)),
            (Some(None), None),
        ] {
            let written = MessagePayload {
                emoji: emoji.as_ref(),
                message_id: &id,
                seq,
            }
            .to_json();
            let tree = match &emoji {
                None => serde_json::json!({ "message_id": id, "seq": seq }),
                Some(e) => serde_json::json!({ "message_id": id, "seq": seq, "emoji": e }),
            };
            let written: serde_json::Value = serde_json::from_str(&written).unwrap();
            assert_eq!(written, tree);
        }
    }
}
