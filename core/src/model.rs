//! Entities and the public views the API returns (field names follow the original API).

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use livechat_schemas::TopicEvent;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub type UserId = Uuid;
pub type RoomId = Uuid;
pub type MessageId = Uuid;

/// A registered account. `password_hash` is a PHC string (argon2id) and never leaves the core.
#[derive(Debug, Clone, PartialEq)]
pub struct User {
    pub id: UserId,
    pub username: String,
    pub password_hash: String,
    pub last_active: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// `UserPublic` of the original API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserPublic {
    pub id: UserId,
    pub username: String,
    pub last_active: Option<DateTime<Utc>>,
    #[serde(serialize_with = "crate::rfc3339::serialize")]
    pub created_at: DateTime<Utc>,
    #[serde(serialize_with = "crate::rfc3339::serialize")]
    pub updated_at: DateTime<Utc>,
}

impl From<&User> for UserPublic {
    fn from(u: &User) -> Self {
        UserPublic {
            id: u.id,
            username: u.username.clone(),
            last_active: u.last_active,
            created_at: u.created_at,
            updated_at: u.updated_at,
        }
    }
}

/// A login session; its id is the `session_id` cookie value.
#[derive(Debug, Clone, PartialEq)]
pub struct Session {
    pub id: Uuid,
    pub user_id: UserId,
    pub created_at: DateTime<Utc>,
    /// Sliding (idle) expiry, pushed forward on activity.
    pub expires_at: DateTime<Utc>,
    /// Absolute expiry; activity never extends past it.
    pub absolute_expires_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Role {
    Owner,
    Member,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "OWNER",
            Role::Member => "MEMBER",
        }
    }
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "OWNER" => Some(Role::Owner),
            "MEMBER" => Some(Role::Member),
            _ => None,
        }
    }
}

/// Who finds a room and how one gets in. Public: listed, joined at once. Private (the
/// original's meaning): listed with its name, description and member count, joined with the
/// owner's approval. Unlisted: joined like a private room but never listed: found only through
/// its link (its id), for rooms that must not be found. Direct: a conversation of a fixed set of
/// people, opened by one of them, never listed or joined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Visibility {
    Public,
    Private,
    Unlisted,
    Direct,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Room {
    pub id: RoomId,
    pub name: String,
    pub description: Option<String>,
    pub is_public: bool,
    /// Left out of search and top rooms (never set on a public room).
    pub unlisted: bool,
    /// A direct conversation: its members only, fixed (see [`Room::direct_name`]); always
    /// unlisted and never public.
    pub direct: bool,
    pub created_by: UserId,
    pub participants_count: i64,
    /// The seq of the newest message (0 when none).
    pub last_seq: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// `RoomPublic` of the original API, plus `last_seq` (and `unread_count` in the caller's room list).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoomPublic {
    pub id: RoomId,
    pub name: String,
    pub description: Option<String>,
    pub is_public: bool,
    /// `public`, `private` or `unlisted` (an addition; `is_public` is the original's field).
    pub visibility: Visibility,
    pub created_by: UserId,
    pub participants_count: i64,
    #[serde(serialize_with = "crate::rfc3339::serialize")]
    pub created_at: DateTime<Utc>,
    #[serde(serialize_with = "crate::rfc3339::serialize")]
    pub updated_at: DateTime<Utc>,
    pub last_seq: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unread_count: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_read_seq: Option<i64>,
}

impl Visibility {
    /// As the API and the topics spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Visibility::Public => "public",
            Visibility::Private => "private",
            Visibility::Unlisted => "unlisted",
            Visibility::Direct => "direct",
        }
    }

    /// The visibility the original client's `is_public` asks for, given the room's current one
    /// (None when creating): `true` is public; `false` is private, except that a room already not
    /// public keeps its visibility (an unlisted room stays unlisted).
    pub fn from_is_public(is_public: bool, current: Option<Visibility>) -> Visibility {
        match (is_public, current) {
            (true, _) => Visibility::Public,
            (false, Some(v)) if v != Visibility::Public => v,
            (false, _) => Visibility::Private,
        }
    }
}

impl Room {
    pub fn visibility(&self) -> Visibility {
        match (self.direct, self.is_public, self.unlisted) {
            (true, ..) => Visibility::Direct,
            (false, true, _) => Visibility::Public,
            (false, false, false) => Visibility::Private,
            (false, false, true) => Visibility::Unlisted,
        }
    }

    pub fn set_visibility(&mut self, v: Visibility) {
        self.is_public = v == Visibility::Public;
        self.unlisted = matches!(v, Visibility::Unlisted | Visibility::Direct);
        self.direct = v == Visibility::Direct;
    }

    /// The stored name of the direct conversation of these people: their usernames, sorted,
    /// then U+2063 (an invisible separator no room name may contain), so it is unique per set of
    /// people and no room can take it first.
    pub fn direct_name(usernames: &[String]) -> String {
        let mut names = usernames.to_vec();
        names.sort();
        names.dedup();
        format!("{}{DIRECT_MARK}", names.join(", "))
    }

    /// The name `viewer` sees: for a direct conversation the other people's names, otherwise
    /// the room's name.
    pub fn name_for(&self, viewer: &str) -> String {
        if !self.direct {
            return self.name.clone();
        }
        let others: Vec<&str> = self
            .name
            .trim_end_matches(DIRECT_MARK)
            .split(", ")
            .filter(|n| *n != viewer)
            .collect();
        match others.is_empty() {
            true => viewer.to_string(),
            false => others.join(", "),
        }
    }
}

/// Ends the stored name of a direct conversation (see [`Room::direct_name`]).
const DIRECT_MARK: char = '\u{2063}';

impl From<&Room> for RoomPublic {
    fn from(r: &Room) -> Self {
        RoomPublic {
            id: r.id,
            name: r.name.clone(),
            description: r.description.clone(),
            is_public: r.is_public,
            visibility: r.visibility(),
            created_by: r.created_by,
            participants_count: r.participants_count,
            created_at: r.created_at,
            updated_at: r.updated_at,
            last_seq: r.last_seq,
            unread_count: None,
            last_read_seq: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct JoinRequest {
    pub id: Uuid,
    pub room_id: RoomId,
    pub user_id: UserId,
    pub message: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// `JoinRequestPublic` of the original API, plus the ids and time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JoinRequestPublic {
    pub id: Uuid,
    pub message: Option<String>,
    pub username: String,
    pub room_name: String,
    pub room_id: RoomId,
    pub user_id: UserId,
    #[serde(serialize_with = "crate::rfc3339::serialize")]
    pub created_at: DateTime<Utc>,
}

/// Images a browser is allowed to show in a page; every other file is served as a download.
/// (Also the only ones whose metadata is stripped at upload: GIF has no EXIF.)
pub const INLINE_IMAGES: [&str; 4] = ["image/png", "image/jpeg", "image/gif", "image/webp"];

/// A file a sender attaches to a message: its key, from the upload's answer, and the name to
/// show.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct FileChoice {
    pub key: String,
    pub name: Option<String>,
}

/// What a stored file is, found from its bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileMeta {
    /// The SHA-256 of the stored bytes, in hex: the file's key.
    pub key: String,
    pub content_type: String,
    pub size: u64,
    /// Pixels, for images.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub width: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub height: Option<u32>,
    /// The type of its thumbnail (an image larger than the thumbnail's box has one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thumbnail: Option<String>,
}

impl FileMeta {
    /// Whether a browser may show the file in a page: raster images only. Anything else (HTML,
    /// SVG, PDF, scripts, archives, …) is served as a download.
    pub fn inline(&self) -> bool {
        INLINE_IMAGES.contains(&self.content_type.as_str())
    }
}

/// A file shared with a message: its description and the name it is shown with (the bytes are
/// in the file store; only this goes through the log).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    #[serde(flatten)]
    pub meta: FileMeta,
    pub name: String,
}

impl Attachment {
    /// As the API shows it in the room, with where its members download it.
    pub fn public(&self, room: impl std::fmt::Display) -> AttachmentPublic {
        let url = format!("/api/files/get-file/{room}/{}", self.meta.key);
        AttachmentPublic {
            thumbnail_url: self
                .meta
                .thumbnail
                .as_ref()
                .map(|_| format!("{url}?thumbnail=true")),
            url,
            file: self.clone(),
        }
    }

    pub fn to_event(&self) -> livechat_schemas::Attachment {
        livechat_schemas::Attachment {
            key: self.meta.key.clone(),
            name: self.name.clone(),
            content_type: self.meta.content_type.clone(),
            size: i64::try_from(self.meta.size).unwrap_or(i64::MAX),
            width: self.meta.width.and_then(|w| i32::try_from(w).ok()),
            height: self.meta.height.and_then(|h| i32::try_from(h).ok()),
            thumbnail: self.meta.thumbnail.clone(),
        }
    }

    pub fn from_event(a: &livechat_schemas::Attachment) -> Attachment {
        Attachment {
            meta: FileMeta {
                key: a.key.clone(),
                content_type: a.content_type.clone(),
                size: u64::try_from(a.size).unwrap_or_default(),
                width: a.width.and_then(|w| u32::try_from(w).ok()),
                height: a.height.and_then(|h| u32::try_from(h).ok()),
                thumbnail: a.thumbnail.clone(),
            },
            name: a.name.clone(),
        }
    }
}

/// A message's files as the history stores keep them: a JSON array, None for none (most
/// messages). One form for every engine, so their checksums agree.
pub fn attachments_text(files: &[Attachment]) -> Option<String> {
    (!files.is_empty()).then(|| serde_json::to_string(files).expect("attachments serialize"))
}

/// A file as the API shows it: its description, its name, and where the room's members
/// download it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttachmentPublic {
    #[serde(flatten)]
    pub file: Attachment,
    pub url: String,
    /// Where a smaller copy of a large image is (what to show in a message).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thumbnail_url: Option<String>,
}

/// A message as the history store keeps it. Deleted messages stay as tombstones so seqs stay dense.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredMessage {
    pub id: MessageId,
    pub room_id: RoomId,
    pub seq: i64,
    pub user_id: UserId,
    pub username: String,
    pub content: String,
    pub edited: bool,
    pub deleted: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub client_msg_id: Option<String>,
    /// The seq of the message of the same room this one replies to.
    pub reply_to_seq: Option<i64>,
    /// Who reacted with what, each emoji once, in the order the emojis were first used (none
    /// on a deleted message).
    pub reactions: Vec<Reaction>,
    /// The message's pin: whether it is pinned now, and by whom and when it last changed.
    pub pin: Option<Pin>,
    /// Set on a thread reply: the seq of the thread's root message (same room).
    pub thread_root_seq: Option<i64>,
    /// On a thread's root, read from the replies (none while it has no live reply).
    pub thread: Option<ThreadSummary>,
    /// Files shared with the message, in the order the sender gave them (none once deleted).
    pub attachments: Vec<Attachment>,
}

/// A thread as its root message shows it: its live (not deleted) replies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThreadSummary {
    pub reply_count: u64,
    pub last_reply_seq: i64,
    #[serde(serialize_with = "crate::rfc3339::serialize")]
    pub last_reply_at: DateTime<Utc>,
    /// The reader's marker in this thread (0: never opened), on history pages read by a member;
    /// replies after it are unread. Not stored with the message: it is each reader's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_seq: Option<i64>,
}

impl ThreadSummary {
    /// The summaries of threads from their live replies `(root seq, reply seq, created at)`.
    pub fn of_replies(
        replies: impl IntoIterator<Item = (i64, i64, DateTime<Utc>)>,
    ) -> std::collections::HashMap<i64, ThreadSummary> {
        let mut out: std::collections::HashMap<i64, ThreadSummary> =
            std::collections::HashMap::new();
        for (root, seq, at) in replies {
            let t = out.entry(root).or_insert(ThreadSummary {
                reply_count: 0,
                last_reply_seq: seq,
                last_reply_at: at,
                read_seq: None,
            });
            t.reply_count += 1;
            if seq >= t.last_reply_seq {
                (t.last_reply_seq, t.last_reply_at) = (seq, at);
            }
        }
        out
    }
}

/// A message's pin state as of its latest change (`pinned` false once unpinned: the time stays,
/// so an older change applied late loses).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pin {
    pub pinned: bool,
    pub by: UserId,
    pub at: DateTime<Utc>,
}

/// A message a search found, with where its text matches (character offsets).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchResult {
    pub message: MessagePublic,
    pub highlights: Vec<[usize; 2]>,
}

/// The users who reacted to a message with one emoji, in the order they did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reaction {
    pub emoji: String,
    pub user_ids: Vec<UserId>,
}

/// One emoji's reactions as the API shows them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReactionPublic {
    pub emoji: String,
    pub count: usize,
    pub user_ids: Vec<UserId>,
}

impl From<&Reaction> for ReactionPublic {
    fn from(r: &Reaction) -> Self {
        ReactionPublic {
            emoji: r.emoji.clone(),
            count: r.user_ids.len(),
            user_ids: r.user_ids.clone(),
        }
    }
}

/// Groups `(emoji, user, at)` rows of one message, each a reaction in place, into
/// [`Reaction`]s: emojis in the order of their first reaction, users in the order they reacted
/// (ties by emoji, then user, so every store gives the same order).
pub fn group_reactions(mut rows: Vec<(String, UserId, i64)>) -> Vec<Reaction> {
    rows.sort_by(|a, b| (a.2, &a.0, a.1).cmp(&(b.2, &b.0, b.1)));
    let mut out: Vec<Reaction> = Vec::new();
    for (emoji, user, _) in rows {
        match out.iter_mut().find(|r| r.emoji == emoji) {
            Some(r) => r.user_ids.push(user),
            None => out.push(Reaction {
                emoji,
                user_ids: vec![user],
            }),
        }
    }
    out
}

/// The reactions of a message in a checksum: `emoji user` pairs sorted, joined by `,` (None
/// when there are none), the same text every store computes.
pub fn reactions_digest(reactions: &[Reaction]) -> Option<String> {
    let mut pairs: Vec<String> = reactions
        .iter()
        .flat_map(|r| r.user_ids.iter().map(move |u| format!("{} {u}", r.emoji)))
        .collect();
    pairs.sort();
    (!pairs.is_empty()).then(|| pairs.join(","))
}

/// `MessagePublic` of the original API, plus `seq`, `updated_at`, `deleted` and `client_msg_id`,
/// `reply_to_seq`, `reactions`, pins and threads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MessagePublic {
    pub id: MessageId,
    pub room_id: RoomId,
    pub user_id: UserId,
    pub username: String,
    pub content: String,
    pub edited: bool,
    #[serde(serialize_with = "crate::rfc3339::serialize")]
    pub created_at: DateTime<Utc>,
    #[serde(serialize_with = "crate::rfc3339::serialize")]
    pub updated_at: DateTime<Utc>,
    pub seq: i64,
    pub deleted: bool,
    pub client_msg_id: Option<String>,
    pub reply_to_seq: Option<i64>,
    pub reactions: Vec<ReactionPublic>,
    /// Set while the message is pinned: who pinned it, and when.
    pub pinned_by: Option<UserId>,
    #[serde(serialize_with = "crate::rfc3339::serialize_opt")]
    pub pinned_at: Option<DateTime<Utc>>,
    /// Set on a thread reply: the seq of its thread's root.
    pub thread_root_seq: Option<i64>,
    /// On a thread's root with live replies: their count and the last one.
    pub thread: Option<ThreadSummary>,
    /// Files shared with the message.
    #[serde(default)]
    pub attachments: Vec<AttachmentPublic>,
}

/// Moves the stored message's text into its public view (a page of history converts every
/// row it read: no copy of the strings).
impl From<StoredMessage> for MessagePublic {
    fn from(m: StoredMessage) -> Self {
        let pin = m.pin.filter(|p| p.pinned);
        MessagePublic {
            id: m.id,
            room_id: m.room_id,
            user_id: m.user_id,
            username: m.username,
            content: m.content,
            edited: m.edited,
            created_at: m.created_at,
            updated_at: m.updated_at,
            seq: m.seq,
            deleted: m.deleted,
            client_msg_id: m.client_msg_id,
            reply_to_seq: m.reply_to_seq,
            reactions: m.reactions.iter().map(ReactionPublic::from).collect(),
            pinned_by: pin.as_ref().map(|p| p.by),
            pinned_at: pin.as_ref().map(|p| p.at),
            thread_root_seq: m.thread_root_seq,
            thread: m.thread.filter(|_| !m.deleted),
            attachments: match m.deleted {
                true => Vec::new(),
                false => m.attachments.iter().map(|a| a.public(m.room_id)).collect(),
            },
        }
    }
}

impl From<&StoredMessage> for MessagePublic {
    fn from(m: &StoredMessage) -> Self {
        MessagePublic::from(m.clone())
    }
}

/// A change to apply to the history store (idempotent: applying it twice changes nothing).
// Nearly every op is an insert: boxing the message would cost an allocation for the common op
// to shrink the rare ones.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum HistoryOp {
    Insert(StoredMessage),
    Edit {
        room_id: RoomId,
        message_id: MessageId,
        content: String,
        at: DateTime<Utc>,
    },
    Delete {
        room_id: RoomId,
        message_id: MessageId,
        at: DateTime<Utc>,
    },
    PurgeRoom {
        room_id: RoomId,
    },
    /// A reaction added (`added`) or removed by `user_id`. The newest change of one (message,
    /// user, emoji) wins whatever the order they are applied in, a removal winning a tie; a
    /// reaction to a deleted or unknown message changes nothing.
    React {
        room_id: RoomId,
        message_id: MessageId,
        seq: i64,
        user_id: UserId,
        emoji: String,
        added: bool,
        at: DateTime<Utc>,
    },
    /// A message pinned or unpinned by `user_id`: the newest change wins (the service stamps
    /// each later than the one before); on a deleted or unknown message it changes nothing.
    Pin {
        room_id: RoomId,
        message_id: MessageId,
        seq: i64,
        user_id: UserId,
        pinned: bool,
        at: DateTime<Utc>,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Notification {
    pub id: Uuid,
    pub user_id: UserId,
    pub kind: String,
    pub payload: BTreeMap<String, String>,
    pub read: bool,
    pub source_id: Option<Uuid>,
    pub created_at: DateTime<Utc>,
}

/// `NotificationPublic` of the original API, plus `created_at` (the original omitted it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NotificationPublic {
    pub id: Uuid,
    #[serde(rename = "type")]
    pub kind: String,
    pub payload: BTreeMap<String, String>,
    pub read: bool,
    pub source_id: Option<Uuid>,
    #[serde(serialize_with = "crate::rfc3339::serialize")]
    pub created_at: DateTime<Utc>,
}

impl From<&Notification> for NotificationPublic {
    fn from(n: &Notification) -> Self {
        NotificationPublic {
            id: n.id,
            kind: n.kind.clone(),
            payload: n.payload.clone(),
            read: n.read,
            source_id: n.source_id,
            created_at: n.created_at,
        }
    }
}

/// One row of the analytics event table (event time, not processing time).
#[derive(Debug, Clone, PartialEq)]
pub struct AnalyticsEvent {
    pub event_id: Uuid,
    pub event_type: String,
    pub user_id: Option<UserId>,
    pub room_id: Option<RoomId>,
    pub occurred_at: DateTime<Utc>,
    pub payload: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoomStats {
    pub room_id: RoomId,
    pub total_messages: i64,
    pub users_amount: i64,
    pub last_updated: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserActivity {
    pub messages: i64,
    pub rooms_joined: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EditDeleteRatio {
    pub edit_ratio: f64,
    pub delete_ratio: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SocialUser {
    pub user_id: UserId,
    pub rooms: i64,
    pub messages: i64,
}

/// What `send_message` reports: a new message, or the one an earlier try with the same
/// `client_msg_id` already stored.
#[derive(Debug, Clone, PartialEq)]
pub struct SendReceipt {
    pub message_id: MessageId,
    pub seq: i64,
    pub created_at: DateTime<Utc>,
    pub content: String,
    pub duplicate: bool,
}

/// An entry waiting in the outbox (or read back from it): one topic record.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxRecord {
    pub event_id: Uuid,
    pub topic: String,
    pub key: String,
    /// Confluent-framed Avro (JSON on the dead-letter topic).
    pub payload: Vec<u8>,
    pub created_at_ms: i64,
    /// Record headers, in order (Kafka headers; a key may repeat): the `traceparent` a client
    /// sent with the change (see `trace`), if any; the dead-letter topic names the failed
    /// record's origin here.
    pub headers: Vec<(String, String)>,
    /// The event the payload encodes, when this process built the record: handed on in memory
    /// (an in-process consumer skips decoding it). Never stored; `None` once read back.
    pub event: Option<Arc<TopicEvent>>,
}

/// A digest of a store's content in a canonical order (replay verification).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checksum {
    pub rows: u64,
    /// Hex SHA-256 over the canonical rows.
    pub sha256: String,
}

/// A record read from the log.
#[derive(Debug, Clone, PartialEq)]
pub struct LogEntry {
    /// Shared, like the key and the payload: cloning an entry for a consumer copies no text.
    pub topic: Arc<str>,
    pub partition: u32,
    pub offset: i64,
    pub key: Arc<str>,
    pub payload: bytes::Bytes,
    pub timestamp_ms: i64,
    /// The record's headers, in order: those it was appended with, plus any the adapter adds
    /// itself (Kafka: `event_id`). Values that are not UTF-8 are read lossily.
    pub headers: Vec<(String, String)>,
    /// The decoded event, when it came in memory from this process's append (see
    /// [`OutboxRecord::event`]); `None` when read from storage.
    pub event: Option<Arc<TopicEvent>>,
}
