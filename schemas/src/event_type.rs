//! The `event_type` vocabulary of the topics: every value a producer writes and a consumer
//! matches on, named once. The records carry them as strings (the Avro field is a `string`, so
//! a newer producer's type reaches an older consumer as an unknown value, not a decode error).

macro_rules! vocabulary {
    ($(#[$doc:meta])* $name:ident { $($variant:ident = $text:literal),* $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $($variant),*
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),*];

            /// The string written into records.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),*
                }
            }

            /// The type a record names; `None` for a value this version does not know.
            pub fn parse(s: &str) -> Option<$name> {
                match s {
                    $($text => Some($name::$variant),)*
                    _ => None,
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

vocabulary! {
    /// `event_type` of `chat.room-events.v1`.
    RoomEventType {
        MessageSent = "MESSAGE_SENT",
        MessageEdited = "MESSAGE_EDITED",
        MessageDeleted = "MESSAGE_DELETED",
        MessageReactionAdded = "MESSAGE_REACTION_ADDED",
        MessageReactionRemoved = "MESSAGE_REACTION_REMOVED",
        MessagePinned = "MESSAGE_PINNED",
        MessageUnpinned = "MESSAGE_UNPINNED",
        RoomCreated = "ROOM_CREATED",
        RoomUpdated = "ROOM_UPDATED",
        RoomDeleted = "ROOM_DELETED",
        UserJoinedRoom = "USER_JOINED_ROOM",
        UserLeftRoom = "USER_LEFT_ROOM",
        UserRemovedFromRoom = "USER_REMOVED_FROM_ROOM",
        JoinRequestCreated = "JOIN_REQUEST_CREATED",
        JoinRequestAccepted = "JOIN_REQUEST_ACCEPTED",
        JoinRequestRejected = "JOIN_REQUEST_REJECTED",
        UserConnected = "USER_CONNECTED",
        UserDisconnected = "USER_DISCONNECTED",
        UserForcedDisconnect = "USER_FORCED_DISCONNECT",
    }
}

vocabulary! {
    /// `event_type` of `chat.user-events.v1`.
    UserEventType {
        UserRegistered = "USER_REGISTERED",
        UserLoggedIn = "USER_LOGGED_IN",
        UserLoggedOut = "USER_LOGGED_OUT",
        NotificationRead = "NOTIFICATION_READ",
        NotificationsAllRead = "NOTIFICATIONS_ALL_READ",
        NotificationDeleted = "NOTIFICATION_DELETED",
        UserDeleted = "USER_DELETED",
    }
}

vocabulary! {
    /// `notification_type` of `chat.notifications.v1` (and of stored notifications).
    NotificationType {
        JoinRequestCreated = "JOIN_REQUEST_CREATED",
        JoinRequestAccepted = "JOIN_REQUEST_ACCEPTED",
        JoinRequestRejected = "JOIN_REQUEST_REJECTED",
        Mention = "MENTION",
        AddedToRoom = "ADDED_TO_ROOM",
        Reply = "REPLY",
    }
}

impl crate::RoomEvent {
    /// The event's type, if this version knows it.
    pub fn kind(&self) -> Option<RoomEventType> {
        RoomEventType::parse(&self.event_type)
    }
}

impl crate::UserEvent {
    /// The event's type, if this version knows it.
    pub fn kind(&self) -> Option<UserEventType> {
        UserEventType::parse(&self.event_type)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_parses_back_and_the_schemas_document_it() {
        let room_doc = include_str!("../avro/chat.room-events.v1.avsc");
        for t in RoomEventType::ALL {
            assert_eq!(RoomEventType::parse(t.as_str()), Some(*t));
            assert!(
                room_doc.contains(t.as_str()),
                "{t} missing from the room schema's doc"
            );
        }
        let user_doc = include_str!("../avro/chat.user-events.v1.avsc");
        for t in UserEventType::ALL {
            assert_eq!(UserEventType::parse(t.as_str()), Some(*t));
            assert!(
                user_doc.contains(t.as_str()),
                "{t} missing from the user schema's doc"
            );
        }
        for t in NotificationType::ALL {
            assert_eq!(NotificationType::parse(t.as_str()), Some(*t));
        }
        assert_eq!(RoomEventType::parse("SOMETHING_NEW"), None);
    }
}
