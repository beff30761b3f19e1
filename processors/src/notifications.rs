//! The notifications processor: join requests, decisions, mentions and replies → persisted
//! notifications, each then announced on `chat.notifications.v1`, from which every ingress
//! process pushes it live to the recipient's sockets (so the push reaches users on any
//! process). Ids derive from the event id, so a redelivered event stores nothing twice; the
//! announcement is repeated after a crash rather than lost (clients deduplicate by notification
//! id). It also applies what users
//! did to their notifications (read, all read, deleted; `chat.user-events.v1`), so a store
//! rebuilt from the log has them as they were: these changes are idempotent, and a deleted
//! notification stays a tombstone that a redelivered event does not bring back. And it raises
//! each room's last seq and its authors' read markers in the directory to the messages sent
//! (where the distributed sequencer, not the directory, assigned their seqs).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use livechat_core::events::notification_record;
use livechat_core::model::Notification;
use livechat_core::ports::{Directory, EventLog};
use livechat_schemas::{
    NotificationType, RoomEvent, RoomEventType, TopicEvent, UserEvent, UserEventType,
    ROOM_EVENTS_TOPIC, USER_EVENTS_TOPIC,
};
use uuid::Uuid;

use crate::runner::{Decoded, Processor};

/// Topics the notifications processor consumes (a replay reads them in this order: every
/// notification is stored before what was done to it).
pub const TOPICS: &[&str] = &[ROOM_EVENTS_TOPIC, USER_EVENTS_TOPIC];

/// Characters of a mentioning message kept in the notification.
const MENTION_PREVIEW_CHARS: usize = 140;

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
    /// A mention's push waits at most this long; each room's markers are raised once per batch
    /// (one directory update per room), not once per message.
    fn gather(&self) -> Duration {
        Duration::from_millis(250)
    }
    async fn handle(&self, batch: &[Decoded]) -> anyhow::Result<()> {
        let mut announcements = Vec::new();
        let mut sent = Vec::new();
        for d in batch {
            let ev = match d.event.as_ref() {
                TopicEvent::Room(ev) => ev,
                TopicEvent::User(ev) => {
                    self.apply_user_change(ev).await?;
                    continue;
                }
                TopicEvent::Notification(_) => continue,
            };
            if let Some(s) = sent_by(ev) {
                sent.push(s);
            }
            for n in notifications_for(ev) {
                self.directory.insert_notification(&n).await?;
                announcements.push(notification_record(&n).map_err(|e| anyhow::anyhow!("{e}"))?);
            }
        }
        self.directory.messages_sequenced(&sent).await?;
        if let (Some(log), false) = (&self.announce, announcements.is_empty()) {
            log.append(&announcements).await?;
        }
        Ok(())
    }
}

/// A sent message's (room, author, seq).
fn sent_by(ev: &RoomEvent) -> Option<(Uuid, Uuid, i64)> {
    if ev.kind() != Some(RoomEventType::MessageSent) {
        return None;
    }
    Some((
        parse_uuid(&ev.room_id)?,
        parse_uuid(ev.actor_id.as_deref()?)?,
        ev.seq?,
    ))
}

impl NotificationsProcessor {
    /// A user's read, all-read or delete, applied again (a no-op where the store has it).
    async fn apply_user_change(&self, ev: &UserEvent) -> anyhow::Result<()> {
        let user = parse_uuid(&ev.user_id);
        let notification = ev.notification_id.as_deref().and_then(parse_uuid);
        match (ev.kind(), user, notification) {
            (Some(UserEventType::NotificationRead), _, Some(n)) => {
                self.directory.mark_notification_read(n, vec![]).await?;
            }
            (Some(UserEventType::NotificationsAllRead), Some(u), _) => {
                let up_to = livechat_core::from_ms(ev.occurred_at);
                self.directory
                    .mark_all_notifications_read(u, up_to, vec![])
                    .await?;
            }
            (Some(UserEventType::NotificationDeleted), Some(u), Some(n)) => {
                self.directory.delete_notification(n, u, vec![]).await?;
            }
            // The account's erasure, again (idempotent): a rebuild tombstones the notifications
            // it got and caused, as the erasure did.
            (Some(UserEventType::UserDeleted), Some(u), _) => {
                self.directory.erase_user(u, vec![]).await?;
            }
            _ => {}
        }
        Ok(())
    }
}

fn parse_uuid(s: &str) -> Option<Uuid> {
    Uuid::parse_str(s).ok()
}

/// The notifications a room event creates, with ids derived from the event id so that a
/// redelivered event creates nothing new.
pub fn notifications_for(ev: &RoomEvent) -> Vec<Notification> {
    let at = livechat_core::from_ms(ev.occurred_at);
    let room_name = ev.room_name.as_deref().unwrap_or_default();
    let source = ev.actor_id.as_deref().and_then(parse_uuid);
    let make = |recipient: Uuid, kind: NotificationType, extra: &[(&str, String)]| {
        let mut payload = BTreeMap::new();
        payload.insert("room_name".to_string(), room_name.to_string());
        payload.insert("room_id".to_string(), ev.room_id.clone());
        for (k, v) in extra {
            payload.insert(k.to_string(), v.clone());
        }
        Notification {
            id: Uuid::new_v5(
                &Uuid::NAMESPACE_OID,
                format!("{}:{}", ev.event_id, recipient).as_bytes(),
            ),
            user_id: recipient,
            kind: kind.as_str().to_string(),
            payload,
            read: false,
            source_id: source,
            created_at: at,
        }
    };
    let subject = ev.subject_user_id.as_deref().and_then(parse_uuid);
    let username = || ev.subject_username.clone().unwrap_or_default();
    match ev.kind() {
        Some(RoomEventType::JoinRequestCreated) => ev
            .room_owner_id
            .as_deref()
            .and_then(parse_uuid)
            .map(|owner| {
                vec![make(
                    owner,
                    NotificationType::JoinRequestCreated,
                    &[
                        ("username", username()),
                        ("request_id", ev.request_id.clone().unwrap_or_default()),
                        ("message", ev.request_message.clone().unwrap_or_default()),
                    ],
                )]
            })
            .unwrap_or_default(),
        Some(RoomEventType::JoinRequestAccepted) => subject
            .map(|s| vec![make(s, NotificationType::JoinRequestAccepted, &[])])
            .unwrap_or_default(),
        Some(RoomEventType::JoinRequestRejected) => subject
            .map(|s| vec![make(s, NotificationType::JoinRequestRejected, &[])])
            .unwrap_or_default(),
        // Someone else put the member in (a direct conversation opened with them); joining by
        // oneself notifies nobody.
        Some(RoomEventType::UserJoinedRoom) => subject
            .filter(|s| source.is_some_and(|a| a != *s))
            .map(|s| vec![make(s, NotificationType::AddedToRoom, &[])])
            .unwrap_or_default(),
        // Those mentioned, then the authors of what it answers (a quoted message, a thread's
        // root) who were not mentioned: one notification each.
        Some(RoomEventType::MessageSent) => {
            let mentioned: Vec<Uuid> = ev
                .mentioned_user_ids
                .iter()
                .filter_map(|m| parse_uuid(m))
                .collect();
            let answered: Vec<Uuid> = ev
                .answered_user_ids
                .iter()
                .filter_map(|a| parse_uuid(a))
                .filter(|a| !mentioned.contains(a) && Some(*a) != source)
                .collect();
            if mentioned.is_empty() && answered.is_empty() {
                return Vec::new(); // most messages: nobody to tell, nothing to build
            }
            let preview: String = ev
                .content
                .as_deref()
                .unwrap_or_default()
                .chars()
                .take(MENTION_PREVIEW_CHARS)
                .collect();
            let mut fields = vec![
                ("username", username()),
                ("message_id", ev.message_id.clone().unwrap_or_default()),
                ("seq", ev.seq.unwrap_or_default().to_string()),
                ("message", preview),
            ];
            if let Some(root) = ev.thread_root_seq {
                fields.push(("thread_root_seq", root.to_string()));
            }
            mentioned
                .iter()
                .map(|m| make(*m, NotificationType::Mention, &fields))
                .chain(
                    answered
                        .iter()
                        .map(|a| make(*a, NotificationType::Reply, &fields)),
                )
                .collect()
        }
        _ => vec![],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reply_tells_the_authors_it_answers_once_and_never_the_sender() {
        let (sender, quoted, root, both) = (
            Uuid::new_v4(),
            Uuid::new_v4(),
            Uuid::new_v4(),
            Uuid::new_v4(),
        );
        let ev = RoomEvent {
            event_id: Uuid::new_v4().to_string(),
            event_type: "MESSAGE_SENT".into(),
            room_id: Uuid::new_v4().to_string(),
            actor_id: Some(sender.to_string()),
            message_id: Some(Uuid::new_v4().to_string()),
            seq: Some(9),
            content: Some("agreed".into()),
            thread_root_seq: Some(4),
            mentioned_user_ids: vec![both.to_string()],
            answered_user_ids: [quoted, root, both, sender]
                .iter()
                .map(|u| u.to_string())
                .collect(),
            ..Default::default()
        };
        let got: Vec<(Uuid, String)> = notifications_for(&ev)
            .into_iter()
            .map(|n| (n.user_id, n.kind))
            .collect();
        assert_eq!(
            got,
            vec![
                (both, "MENTION".to_string()),
                (quoted, "REPLY".to_string()),
                (root, "REPLY".to_string()),
            ]
        );
        let reply = &notifications_for(&ev)[1];
        assert_eq!(reply.payload["thread_root_seq"], "4");
        assert_eq!(reply.payload["seq"], "9");
        // Redelivered: the same ids.
        assert_eq!(notifications_for(&ev)[1].id, reply.id);
    }
}
