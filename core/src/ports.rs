//! Ports: every external dependency of the core, as a trait. Each method is one atomic step in
//! its adapter; none needs a transaction spanning several calls, and none needs a multi-document
//! transaction (state and its outbox records go together in the single call that changes them).

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::error::StoreResult;
use crate::model::*;
pub use crate::send_order::Placed;
pub use livechat_schemas::sealed::ContentKey;

/// Builds the outbox records of a new message once its seq is known (inside the atomic step).
/// `Fn`, not `FnOnce`: an adapter that assigns seqs optimistically builds them again for the
/// next seq when another writer took the one it tried.
pub type MessageEventsFn = Box<dyn Fn(i64) -> anyhow::Result<Vec<OutboxRecord>> + Send + Sync>;

/// A new message for [`Directory::send_message`].
#[derive(Debug, Clone)]
pub struct NewMessage {
    pub message_id: MessageId,
    pub room_id: RoomId,
    pub user_id: UserId,
    pub content: String,
    pub client_msg_id: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// Users, rooms, memberships, join requests, notifications, read markers, and the outbox that
/// goes with each change. Contract:
/// - every method taking `outbox` writes the state change and those records atomically;
/// - unique usernames and room names, one membership per (room, user), one pending join request
///   per (room, user): violations are `StoreError::Conflict`;
/// - notifications are inserted idempotently by id.
#[async_trait]
pub trait Directory: Send + Sync {
    async fn create_user(&self, user: &User, outbox: Vec<OutboxRecord>) -> StoreResult<()>;
    async fn user_by_id(&self, id: UserId) -> StoreResult<Option<User>>;
    async fn user_by_name(&self, username: &str) -> StoreResult<Option<User>>;
    async fn users_by_ids(&self, ids: &[UserId]) -> StoreResult<Vec<User>>;
    async fn users_by_names(&self, names: &[String]) -> StoreResult<Vec<User>>;
    async fn touch_user(&self, id: UserId, at: DateTime<Utc>) -> StoreResult<()>;
    /// The user's content key (see `keyring`), made at random on first use; None for an
    /// unknown or erased user. Two first uses at once get the same key.
    async fn content_key(&self, user: UserId) -> StoreResult<Option<ContentKey>>;
    /// The content keys of `users` that have one (None: every key there is); none is made.
    async fn content_keys(
        &self,
        users: Option<&[UserId]>,
    ) -> StoreResult<Vec<(UserId, ContentKey)>>;
    /// Erases an account, with `outbox`: it is marked erased (a notification quoting it that a
    /// processor stores later is never shown) and its content key goes first (what it wrote,
    /// sealed in every copy of the log, is unreadable from then on), then its profile,
    /// sessions, join requests, read markers, the notifications it got and those it caused,
    /// and the sends' receipts holding its text. Its rooms and memberships are ended before, by
    /// the service. Idempotent: an erasure cut short is finished by doing it again.
    async fn erase_user(&self, user: UserId, outbox: Vec<OutboxRecord>) -> StoreResult<()>;

    /// Creates the room with its owner membership (participants_count = 1).
    async fn create_room(&self, room: &Room, outbox: Vec<OutboxRecord>) -> StoreResult<()>;
    async fn room(&self, id: RoomId) -> StoreResult<Option<Room>>;
    async fn update_room(&self, room: &Room, outbox: Vec<OutboxRecord>) -> StoreResult<()>;
    /// Deletes the room, its memberships, join requests and read markers.
    async fn delete_room(&self, id: RoomId, outbox: Vec<OutboxRecord>) -> StoreResult<()>;
    async fn rooms_of_user(&self, user: UserId) -> StoreResult<Vec<(Room, Role, i64)>>;
    /// Rooms by participants desc, private ones too unless `only_public`. A private room is
    /// listed like a public one: "private" means joining needs the owner's approval. Unlisted
    /// rooms never.
    async fn top_rooms(&self, limit: u32, only_public: bool) -> StoreResult<Vec<Room>>;
    /// Literal, case-insensitive substring search on name or description, private rooms
    /// included (they are found to be requested), unlisted ones not. Newest first.
    async fn search_rooms(&self, text: &str, limit: u32) -> StoreResult<Vec<Room>>;

    async fn membership(&self, room: RoomId, user: UserId) -> StoreResult<Option<Role>>;
    /// Adds a member; false (and no outbox written) if already a member.
    async fn add_member(
        &self,
        room: RoomId,
        user: UserId,
        role: Role,
        outbox: Vec<OutboxRecord>,
    ) -> StoreResult<bool>;
    /// Removes a member; false (and no outbox written) if not a member.
    async fn remove_member(
        &self,
        room: RoomId,
        user: UserId,
        outbox: Vec<OutboxRecord>,
    ) -> StoreResult<bool>;
    async fn members(&self, room: RoomId) -> StoreResult<Vec<(User, Role)>>;

    async fn create_join_request(
        &self,
        req: &JoinRequest,
        outbox: Vec<OutboxRecord>,
    ) -> StoreResult<()>;
    async fn join_request(&self, id: Uuid) -> StoreResult<Option<JoinRequest>>;
    async fn join_requests_of_room(&self, room: RoomId) -> StoreResult<Vec<JoinRequestPublic>>;
    async fn join_requests_of_user(&self, user: UserId) -> StoreResult<Vec<JoinRequestPublic>>;
    /// Deletes the request and, when `accept`, adds the requester as a member. False if the
    /// request was already handled (nothing written).
    async fn handle_join_request(
        &self,
        req: &JoinRequest,
        accept: bool,
        outbox: Vec<OutboxRecord>,
    ) -> StoreResult<bool>;

    /// Assigns the next dense seq of the room and queues the message's records, atomically.
    /// With a `client_msg_id` already used by this user in this room (within the dedup window,
    /// at least), returns the first receipt with `duplicate = true` and writes nothing. `None`
    /// if the user is not a member. The records `events` builds include the message's
    /// MESSAGE_SENT room event (with its `actor_id` and `client_msg_id`): an adapter whose log
    /// shares its file answers retries from it. `placed` is told once the message's seq is
    /// bound to follow every send placed before it (see [`crate::send_order`]).
    async fn send_message(
        &self,
        msg: NewMessage,
        events: MessageEventsFn,
        placed: Placed,
    ) -> StoreResult<Option<SendReceipt>>;

    async fn insert_notification(&self, n: &Notification) -> StoreResult<bool>;
    async fn notifications(
        &self,
        user: UserId,
        unread_only: bool,
        limit: u32,
    ) -> StoreResult<Vec<Notification>>;
    async fn notification(&self, id: Uuid) -> StoreResult<Option<Notification>>;
    async fn mark_notification_read(&self, id: Uuid, outbox: Vec<OutboxRecord>) -> StoreResult<()>;
    /// Marks read the user's notifications created at or before `up_to` (a replay of the event
    /// leaves later ones unread, as they were).
    async fn mark_all_notifications_read(
        &self,
        user: UserId,
        up_to: DateTime<Utc>,
        outbox: Vec<OutboxRecord>,
    ) -> StoreResult<u64>;
    async fn count_unread_notifications(&self, user: UserId) -> StoreResult<i64>;
    /// Deletes one of the user's notifications, with its records when there was one to delete.
    /// What stays is a tombstone, so a redelivered event that created it does not bring it back.
    async fn delete_notification(
        &self,
        id: Uuid,
        user: UserId,
        outbox: Vec<OutboxRecord>,
    ) -> StoreResult<bool>;
    /// Digest of every notification (tombstones included, with their read state), ordered by
    /// id: a store rebuilt from the log has the same.
    async fn notifications_checksum(&self) -> StoreResult<Checksum>;

    /// Raises rooms' `last_seq` and their authors' read markers to messages sequenced outside the
    /// directory (the distributed sequencer), given as `(room, author, seq)`. Never lowers
    /// either, so applying the same messages again, or in another order, changes nothing.
    async fn messages_sequenced(&self, sent: &[(RoomId, UserId, i64)]) -> StoreResult<()>;

    /// Raises the user's read marker in the room (never lowers it); returns the marker now stored.
    /// `outbox` is written only if the marker rose.
    async fn set_read_marker(
        &self,
        user: UserId,
        room: RoomId,
        seq: i64,
        outbox: Vec<OutboxRecord>,
    ) -> StoreResult<i64>;
    /// A member's read marker; None when `user` is not a member.
    async fn read_marker(&self, user: UserId, room: RoomId) -> StoreResult<Option<i64>>;

    /// Raises the user's read marker of the thread whose root is at `root_seq` in the room
    /// (never lowers it); returns the marker now stored.
    async fn set_thread_read(
        &self,
        user: UserId,
        room: RoomId,
        root_seq: i64,
        seq: i64,
    ) -> StoreResult<i64>;
    /// Records a user's choice to follow a thread (be told of its replies) or not, which
    /// overrides the default (its root's author and those who replied in it follow it).
    async fn set_thread_follow(
        &self,
        user: UserId,
        room: RoomId,
        root_seq: i64,
        follow: bool,
    ) -> StoreResult<()>;
    /// Every user's explicit choice about a thread (see [`Directory::set_thread_follow`]).
    async fn thread_follows(
        &self,
        room: RoomId,
        root_seq: i64,
    ) -> StoreResult<std::collections::HashMap<UserId, bool>>;
    /// The user's read markers of the threads with these roots in the room; a thread the user
    /// never read is absent.
    async fn thread_reads(
        &self,
        user: UserId,
        room: RoomId,
        roots: &[i64],
    ) -> StoreResult<std::collections::HashMap<i64, i64>>;

    /// Queues records with no other state change (e.g. connect/disconnect analytics).
    async fn enqueue(&self, outbox: Vec<OutboxRecord>) -> StoreResult<()>;

    // Who keeps a file shared in a room (one record per room and key; see `attachments.rs`
    // for the protocol). An upload *holds* it for a while, a message *claims* it; once nothing
    // keeps it, one process *takes* it, deletes its objects, then *forgets* it. Each call is one
    // atomic step on the one record.

    /// An upload holds the file until `until_ms` (counted as a new hold); false while the file
    /// is being deleted (retry once it is gone).
    async fn hold_file(&self, room: RoomId, key: &str, until_ms: i64) -> StoreResult<bool>;
    /// A message claims the file (idempotent per `claim`); false when the room has no such file
    /// or it is being deleted.
    async fn claim_file(&self, room: RoomId, key: &str, claim: &str) -> StoreResult<bool>;
    /// A deleted message gives its claim up (nothing if it had none).
    async fn release_file(&self, room: RoomId, key: &str, claim: &str) -> StoreResult<()>;
    /// Takes the file for deletion if nothing keeps it at `now_ms` — no claim, and no hold
    /// newer than the last claim that has not run out — or if its deletion was taken before
    /// `stale_ms` and never finished (the process doing it died). True: the caller deletes.
    async fn take_file(
        &self,
        room: RoomId,
        key: &str,
        now_ms: i64,
        stale_ms: i64,
    ) -> StoreResult<bool>;
    /// Up to `max` files [`Directory::take_file`] would take.
    async fn unkept_files(
        &self,
        now_ms: i64,
        stale_ms: i64,
        max: usize,
    ) -> StoreResult<Vec<(RoomId, String)>>;
    /// Removes the record of a file taken for deletion, once its objects are gone.
    async fn forget_file(&self, room: RoomId, key: &str) -> StoreResult<()>;
    /// A deleted room gives up every file it had: no claims, no holds (so each is unkept).
    async fn release_room_files(&self, room: RoomId) -> StoreResult<()>;
}

/// Sends sequenced outside the directory: in distributed mode the ingress hands each send to the
/// sequencer that owns its room (one writer per partition of the commands topic), which assigns
/// the seq, deduplicates `client_msg_id` and appends the message to the log; the receipt comes
/// back once it is there, durable. The caller has checked that the sender is a member.
#[async_trait]
pub trait Sequencing: Send + Sync {
    /// The message's receipt (`duplicate` for a `client_msg_id` the sequencer still remembers).
    /// `events(0)` builds the command: the message's records, with a seq still to assign.
    /// `placed` as for [`Directory::send_message`].
    async fn send_message(
        &self,
        msg: NewMessage,
        events: MessageEventsFn,
        placed: Placed,
    ) -> StoreResult<SendReceipt>;
}

/// The outbox side the relay drains.
#[async_trait]
pub trait Outbox: Send + Sync {
    /// The oldest pending records, in commit order.
    async fn pending(&self, limit: u32) -> StoreResult<Vec<(i64, OutboxRecord)>>;
    /// Removes relayed records (by outbox position).
    async fn remove(&self, positions: &[i64]) -> StoreResult<()>;
    /// Changes whenever records are queued (a poll interval covers adapters that cannot signal).
    fn pending_signal(&self) -> tokio::sync::watch::Receiver<u64>;
}

/// Files shared in rooms, by key (a path of `/`-separated names: letters, digits, `-`, `.`).
/// Contract: `put` of a key replaces it whole, and a reader never sees a file half-written;
/// once `put` returns, the file is durable.
#[async_trait]
pub trait FileStore: Send + Sync {
    async fn put(&self, key: &str, bytes: bytes::Bytes) -> StoreResult<()>;
    async fn get(&self, key: &str) -> StoreResult<Option<bytes::Bytes>>;
    async fn exists(&self, key: &str) -> StoreResult<bool>;
    /// Deletes the file; deleting one that is not there is not an error.
    async fn delete(&self, key: &str) -> StoreResult<()>;
}

/// Login sessions with sliding expiry.
#[async_trait]
pub trait SessionStore: Send + Sync {
    async fn create_session(&self, s: &Session, outbox: Vec<OutboxRecord>) -> StoreResult<()>;
    async fn session(&self, id: Uuid) -> StoreResult<Option<Session>>;
    async fn extend_session(&self, id: Uuid, expires_at: DateTime<Utc>) -> StoreResult<()>;
    async fn delete_session(&self, id: Uuid, outbox: Vec<OutboxRecord>) -> StoreResult<bool>;
}

/// Where a consumer group starts on partitions it has no committed offset for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartAt {
    /// From the first record (every durable sink: replay from the beginning is always possible).
    Earliest,
    /// From the end, never committing (live delivery: clients resume from history instead).
    Latest,
}

/// One member of a consumer group: it receives the records of the partitions assigned to it,
/// in order within each partition.
#[async_trait]
pub trait GroupConsumer: Send {
    /// Up to `max` records, waiting at most `wait` for the first; empty when there are none.
    async fn poll(&mut self, max: usize, wait: std::time::Duration) -> StoreResult<Vec<LogEntry>>;
    /// Commits the next offset to read for each (topic, partition) handled.
    async fn commit(&mut self, next: &[(String, u32, i64)]) -> StoreResult<()>;
}

/// A partitioned, append-only log of topic records with consumer-group offsets (Kafka's model).
/// Contract: records of one key land in one partition in append order; offsets are dense per
/// partition; a committed offset survives restarts; `read` from offset 0 replays everything.
#[async_trait]
pub trait EventLog: Send + Sync {
    fn partitions(&self, topic: &str) -> u32;
    /// Appends records; returns once they are durable.
    async fn append(&self, records: &[OutboxRecord]) -> StoreResult<()>;
    async fn read(
        &self,
        topic: &str,
        partition: u32,
        from: i64,
        max: u32,
    ) -> StoreResult<Vec<LogEntry>>;
    /// The offset the next appended record of this partition will get.
    async fn end_offset(&self, topic: &str, partition: u32) -> StoreResult<i64>;
    /// First offset whose timestamp is at or after `ts_ms` (end offset if none).
    async fn offset_for_time(&self, topic: &str, partition: u32, ts_ms: i64) -> StoreResult<i64>;
    /// Next offset to read for the group, if it committed one.
    async fn committed(&self, group: &str, topic: &str, partition: u32)
        -> StoreResult<Option<i64>>;
    async fn commit(&self, group: &str, topic: &str, partition: u32, next: i64) -> StoreResult<()>;
    /// Every consumer group that committed an offset. Only the embedded log lists them (its
    /// Kafka listener answers `ListGroups` from it); a Kafka broker lists its own groups.
    async fn groups(&self) -> StoreResult<Vec<String>> {
        Err(crate::error::StoreError::Unavailable(anyhow::anyhow!(
            "this log does not list its consumer groups"
        )))
    }
    /// Changes whenever records are appended (a poll interval covers adapters that cannot signal).
    fn append_signal(&self) -> tokio::sync::watch::Receiver<u64>;
    /// Joins a consumer group on `topics`; partitions are shared among the group's members.
    async fn join_group(
        &self,
        group: &str,
        topics: &[&str],
        start: StartAt,
    ) -> StoreResult<Box<dyn GroupConsumer>>;
}

/// Message history (the read model built by the history processor).
#[async_trait]
pub trait MessageStore: Send + Sync {
    /// Applies changes idempotently, in order.
    async fn apply(&self, ops: &[HistoryOp]) -> StoreResult<()>;
    async fn message(&self, id: MessageId) -> StoreResult<Option<StoredMessage>>;
    /// Newest first, deleted messages skipped, `created_at < before` when given.
    async fn recent(
        &self,
        room: RoomId,
        before: Option<DateTime<Utc>>,
        limit: u32,
    ) -> StoreResult<Vec<StoredMessage>>;
    /// Oldest first, `seq > after`, tombstones included (seqs stay dense).
    async fn after_seq(
        &self,
        room: RoomId,
        after: i64,
        limit: u32,
    ) -> StoreResult<Vec<StoredMessage>>;
    /// Newest first, `seq < before`, tombstones included.
    async fn before_seq(
        &self,
        room: RoomId,
        before: i64,
        limit: u32,
    ) -> StoreResult<Vec<StoredMessage>>;
    /// The room's pinned messages, the latest pinned first, at most `limit`.
    async fn pinned(&self, room: RoomId, limit: u32) -> StoreResult<Vec<StoredMessage>>;
    /// A thread's live replies (deleted ones left out), oldest first, `seq > after`.
    async fn thread(
        &self,
        room: RoomId,
        root_seq: i64,
        after: i64,
        limit: u32,
    ) -> StoreResult<Vec<StoredMessage>>;
    /// Digest of every message, ordered by (room, seq): equal for stores built from the same log.
    async fn checksum(&self) -> StoreResult<Checksum>;
    /// A page of `user`'s messages not deleted, in (room, seq) order after `after`: what an
    /// account's erasure deletes. Rare, so no index is kept for it (a scan of the messages).
    async fn by_author(
        &self,
        user: UserId,
        after: Option<(RoomId, i64)>,
        limit: u32,
    ) -> StoreResult<Vec<StoredMessage>>;
}

/// How search results are ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SearchOrder {
    /// The newest message first.
    Newest,
    /// The best match first (BM25), the newest first among equals.
    Best,
}

/// A full-text search over the messages of some rooms.
#[derive(Debug, Clone)]
pub struct SearchQuery {
    /// The rooms to look in (the caller's: membership is checked before).
    pub rooms: Vec<RoomId>,
    /// Words that must all occur in a message (case-insensitive substrings of it).
    pub terms: Vec<String>,
    pub order: SearchOrder,
    pub limit: u32,
    pub offset: u32,
}

/// A message a search found.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchHit {
    pub room_id: RoomId,
    pub seq: i64,
    pub message_id: MessageId,
}

/// The full-text index of messages: a read model the search processor keeps from the room
/// events (the history's own mapping), rebuilt by `livechat replay` like the others.
#[async_trait]
pub trait SearchIndex: Send + Sync {
    /// Applies history changes idempotently, in order: inserts, edits, deletes and purges
    /// (reactions and pins do not change what is found).
    async fn apply(&self, ops: &[HistoryOp]) -> StoreResult<()>;
    async fn search(&self, query: &SearchQuery) -> StoreResult<Vec<SearchHit>>;
    /// Digest of every indexed message, ordered by (room, seq).
    async fn checksum(&self) -> StoreResult<Checksum>;
}

/// Makes a change readable before it is acknowledged where the read models are kept by
/// consumers of the log (distributed mode: the history processor writes Cassandra some time
/// after the change is in the directory). The service hands it the records of a send, an edit or
/// a delete once they are durable; it applies them to the read model at once, with the
/// processor's own mapping. Idempotent: the processor applies the same records again later.
#[async_trait]
pub trait WriteThrough: Send + Sync {
    async fn apply(&self, records: &[OutboxRecord]) -> StoreResult<()>;
}

/// Analytics events and the seven views. Inserting an event id twice counts it once.
#[async_trait]
pub trait AnalyticsStore: Send + Sync {
    async fn insert(&self, events: &[AnalyticsEvent]) -> StoreResult<()>;
    async fn room_stats(&self, room: RoomId) -> StoreResult<RoomStats>;
    async fn user_activity(&self, user: UserId) -> StoreResult<UserActivity>;
    async fn top_active_rooms(&self, limit: u32) -> StoreResult<Vec<RoomStats>>;
    async fn messages_since(&self, room: RoomId, since: DateTime<Utc>) -> StoreResult<i64>;
    async fn retention(&self, since: DateTime<Utc>) -> StoreResult<f64>;
    async fn edit_delete_ratio(&self) -> StoreResult<EditDeleteRatio>;
    async fn top_social_users(&self, limit: u32) -> StoreResult<Vec<SocialUser>>;
    /// Digest of every event row, ordered by event id.
    async fn checksum(&self) -> StoreResult<Checksum>;
}

/// A pre-serialized frame for live delivery.
#[derive(Debug, Clone)]
pub struct LiveFrame {
    /// The message seq when the frame is a new message (subscribers order and deduplicate on it).
    pub seq: Option<i64>,
    /// A user who must not receive it (typing is not echoed to its sender).
    pub skip_user: Option<UserId>,
    pub text: Arc<str>,
}

/// Live delivery to connected clients, and presence.
pub trait Fanout: Send + Sync {
    /// Whether any socket of this process is subscribed to the room (if not, its frames need
    /// not be built at all).
    fn watched(&self, room: RoomId) -> bool;
    fn to_room(&self, room: RoomId, frame: LiveFrame);
    fn to_user(&self, user: UserId, frame: LiveFrame);
    /// Ends the room's live stream for one user (or everybody when `user` is None) at once.
    fn evict(&self, room: RoomId, user: Option<UserId>, reason: &str);
    /// Closes every socket opened with this login session (logout).
    fn disconnect_session(&self, session: Uuid);
    fn online_users(&self, room: RoomId) -> Vec<UserId>;
}

/// A best-effort cache: an outage is a miss, never an error.
pub trait Cache: Send + Sync {
    fn get(&self, key: &str) -> Option<Vec<u8>>;
    fn set(&self, key: &str, value: Vec<u8>, ttl_secs: u64);
    fn delete(&self, key: &str);
}

/// Who is online in which room across every ingress process (each process's hub knows only
/// its own sockets). Entries expire unless refreshed, so a crashed process's users fade out.
#[async_trait]
pub trait Presence: Send + Sync {
    /// Replaces this process's (`node`) entries: `online` users are visible for `ttl_ms`,
    /// `gone` ones are withdrawn at once.
    async fn publish(
        &self,
        node: Uuid,
        online: &[(RoomId, Vec<UserId>)],
        gone: &[(RoomId, Vec<UserId>)],
        ttl_ms: i64,
    ) -> StoreResult<()>;
    /// Users online in the room on any process.
    async fn online(&self, room: RoomId) -> StoreResult<Vec<UserId>>;
}
