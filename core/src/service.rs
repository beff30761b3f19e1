//! The business rules behind every REST route and WebSocket frame.
//!
//! Each method checks input and permissions, then makes one atomic call to a port carrying the
//! state change together with its topic records. Reads go to the read models (directory,
//! history, analytics). Live effects that must be immediate (evicting a removed member's stream)
//! go straight to the [`Fanout`]; everything else reaches clients through the log.

use std::net::IpAddr;
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use livechat_schemas::{RoomEvent, RoomEventType, UserEventType};
use uuid::Uuid;

use crate::auth::{self, LoginThrottle};
use crate::error::{AppError, AppResult, StoreError};
use crate::events::{
    membership_end, membership_record, read_marker_record, room_event, room_event_for, room_record,
    room_state_record, user_event, user_record, user_state_record, user_tombstone,
};
use crate::limits::Limits;
use crate::membership::KnownMembers;
use crate::model::*;
use crate::ports::*;
use crate::recent_sessions::RecentSessions;
use crate::send_order::SendOrder;
use crate::{frames, now, ratelimit, validate};

/// The ports the service works with.
#[derive(Clone)]
pub struct Ports {
    pub directory: Arc<dyn Directory>,
    pub sessions: Arc<dyn SessionStore>,
    pub history: Arc<dyn MessageStore>,
    pub analytics: Arc<dyn AnalyticsStore>,
    pub fanout: Arc<dyn Fanout>,
    /// Presence across processes; None when this process is the only ingress (its hub knows).
    pub presence: Option<Arc<dyn Presence>>,
    /// Read models to write before acknowledging; None where they are kept in the change's own
    /// transaction (the embedded store).
    pub write_through: Option<Arc<dyn WriteThrough>>,
    /// Where sends get their seq when the directory does not assign it (distributed mode).
    pub sequencing: Option<Arc<dyn Sequencing>>,
    pub cache: Arc<dyn Cache>,
    /// The message search index this process keeps (None where no search processor runs).
    pub search: Option<Arc<dyn SearchIndex>>,
    /// Where shared files are kept (None: file sharing is off).
    pub files: Option<Arc<dyn FileStore>>,
    /// The content keys that seal what people write (the directory's, held in memory).
    pub keyring: Arc<crate::keyring::Keyring>,
}

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct Authed {
    pub user: User,
    pub session: Session,
    /// The session's expiry moved; the cookie should be re-issued.
    pub refreshed: bool,
}

/// Replies of a thread read to find who follows it (each is told of a new reply).
const THREAD_FOLLOWERS_READ: u32 = 200;
/// Most users who chose to follow a thread that a reply tells (beside its author and repliers).
const THREAD_EXPLICIT_FOLLOWERS: usize = 500;

/// A thread's root and a page of its replies.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ThreadPage {
    pub root: MessagePublic,
    pub replies: Vec<MessagePublic>,
    /// The caller's read marker in the thread (0: never read); replies after it are unread.
    pub read_seq: i64,
    /// Whether the caller is told of the thread's replies (by default its root's author and
    /// those who replied are; anyone may choose otherwise).
    pub following: bool,
    /// The caller's own choice, if they made one (null: `following` is the default).
    pub follow_choice: Option<bool>,
}

/// What a send may carry beside its text.
#[derive(Debug, Clone, Copy, Default)]
pub struct SendOptions<'a> {
    /// The client's id of the message: a retry with it returns the first result.
    pub client_msg_id: Option<&'a str>,
    /// The seq of the message it quotes.
    pub reply_to_seq: Option<i64>,
    /// The seq of the thread's root (or of any message in the thread) it replies in.
    pub thread_root_seq: Option<i64>,
    /// Files shared in the room (uploaded to it) that go with the message.
    pub attachments: &'a [FileChoice],
}

pub struct ChatService {
    pub ports: Ports,
    pub limits: Limits,
    throttle: LoginThrottle,
    /// Registrations per IP (a window of its own: creating accounts is not logging in).
    registrations: LoginThrottle,
    hashing: auth::Hashing,
    /// Sends per user, over all their sockets and REST calls.
    pub(crate) sends: ratelimit::PerUser,
    /// Bytes each user uploads (`upload_bytes_per_minute`).
    pub(crate) upload_bytes: ratelimit::PerUser,
    /// Name and owner of rooms seen by this process. Both never change, so the send path reads
    /// them once per room instead of once per message (std Mutex: never held across .await).
    room_facts: std::sync::Mutex<std::collections::HashMap<RoomId, (String, UserId)>>,
    /// Memberships the distributed send path found in the directory lately (see
    /// [`KnownMembers`]); shared with live delivery, which forgets those other processes change.
    known_members: Arc<KnownMembers>,
    /// Sessions validated lately, standing in while the session store is unreachable.
    recent_sessions: RecentSessions,
    /// Data exports running at once (each reads every room its user is in).
    exports: Arc<tokio::sync::Semaphore>,
    /// Uploads at once (each holds its file in memory until it is stored).
    pub(crate) uploads: tokio::sync::Semaphore,
}

/// Data exports running at once in one process; more wait for a retry (429).
const CONCURRENT_EXPORTS: usize = 2;

/// How long a membership found in the directory is trusted by the distributed send path when no
/// membership event says otherwise.
const KNOWN_MEMBER_TTL: std::time::Duration = std::time::Duration::from_secs(10);

/// Rooms whose facts are remembered before the map is cleared.
const ROOM_FACTS_MAX: usize = 100_000;

/// How often (at most) a session's sliding expiry and the user's `last_active` are written.
const SESSION_TOUCH_SECS: i64 = 60;
/// Most `@mentions` of one message that create notifications.
const MAX_MENTIONS: usize = 20;
/// Unread messages looked at one by one to leave deleted ones out of a room's unread count.
const UNREAD_COUNTED: i64 = 100;
const USER_CACHE_TTL_SECS: u64 = 300;

fn clamp_limit(field: &str, value: Option<u32>, default: u32, max: u32) -> AppResult<u32> {
    let v = value.unwrap_or(default);
    if v == 0 || v > max {
        return Err(AppError::validation(
            field,
            format!("{field} must be between 1 and {max}"),
        ));
    }
    Ok(v)
}

fn parse_uuid(s: &str) -> Option<Uuid> {
    Uuid::parse_str(s).ok()
}

impl ChatService {
    /// The memberships the send path trusts, for live delivery to forget those that change.
    pub fn known_members(&self) -> Arc<KnownMembers> {
        self.known_members.clone()
    }

    pub fn new(ports: Ports, limits: Limits) -> Self {
        let throttle = LoginThrottle::new(
            limits.login_attempts_per_ip_per_minute,
            limits.login_failures_before_backoff,
            limits.login_backoff_max_secs,
        );
        let registrations = LoginThrottle::new(
            limits.registrations_per_ip_per_minute,
            u32::MAX,
            limits.login_backoff_max_secs,
        );
        let sends = ratelimit::PerUser::new(limits.send_rate_per_sec, limits.send_burst);
        let upload_bytes = {
            let per_minute = limits.upload_bytes_per_minute as f64;
            let burst = per_minute.max(limits.max_file_bytes as f64);
            ratelimit::PerUser::new(per_minute / 60.0, burst)
        };
        ChatService {
            ports,
            throttle,
            registrations,
            hashing: auth::Hashing::per_core(),
            sends,
            upload_bytes,
            room_facts: Default::default(),
            known_members: Arc::new(KnownMembers::new(KNOWN_MEMBER_TTL)),
            recent_sessions: RecentSessions::default(),
            exports: Arc::new(tokio::sync::Semaphore::new(CONCURRENT_EXPORTS)),
            uploads: tokio::sync::Semaphore::new(limits.concurrent_uploads.max(1)),
            limits,
        }
    }

    pub(crate) fn dir(&self) -> &dyn Directory {
        self.ports.directory.as_ref()
    }

    // ----- accounts and sessions -------------------------------------------------------------

    pub async fn register(
        &self,
        username: &str,
        password: &str,
        ip: Option<IpAddr>,
    ) -> AppResult<UserPublic> {
        self.registrations.check_ip(ip, "registrations")?;
        let l = &self.limits;
        // Both fields checked, so a form shows every problem at once.
        let name = validate::username(username, l.min_username_chars, l.max_username_chars);
        let pass = validate::password(
            password,
            name.as_deref().unwrap_or(username),
            l.min_password_chars,
            l.max_password_chars,
        );
        let (username, ()) = AppError::both(name, pass)?;
        if self.dir().user_by_name(&username).await?.is_some() {
            return Err(AppError::BadRequest("User already exists".into()));
        }
        let hash = self.hashing.hash(password).await?;
        let at = now();
        let user = User {
            id: Uuid::new_v4(),
            username,
            password_hash: hash,
            last_active: None,
            created_at: at,
            updated_at: at,
        };
        let mut ev = user_event(UserEventType::UserRegistered, user.id, at);
        ev.username = Some(user.username.clone());
        let records = vec![user_record(ev)?, user_state_record(&user)?];
        match self.dir().create_user(&user, records).await {
            Ok(()) => Ok(UserPublic::from(&user)),
            // Lost a race with a concurrent registration of the same name: 400, never a 500.
            Err(StoreError::Conflict(_)) => Err(AppError::BadRequest("User already exists".into())),
            Err(e) => Err(e.into()),
        }
    }

    pub async fn login(
        &self,
        username: &str,
        password: &str,
        ip: Option<IpAddr>,
    ) -> AppResult<Session> {
        // Throttled per account whatever the spelling: "BOB" and "bob" are one account.
        let account = validate::username_key(username);
        self.throttle.check(ip, &account)?;
        let user = self.dir().user_by_name(username).await?;
        let hash = user.as_ref().map(|u| u.password_hash.clone());
        let ok = self.hashing.verify(password, hash).await?;
        let user = match (user, ok) {
            (Some(u), true) => u,
            _ => {
                self.throttle.record_failure(ip, &account);
                return Err(AppError::Unauthorized(
                    "Invalid username or password".into(),
                ));
            }
        };
        self.throttle.record_success(ip, &account);
        let at = now();
        // A fresh random id at every login: a session id known before login is never upgraded.
        let session = Session {
            id: Uuid::new_v4(),
            user_id: user.id,
            created_at: at,
            expires_at: at + Duration::seconds(self.limits.session_idle_secs),
            absolute_expires_at: at + Duration::seconds(self.limits.session_absolute_secs),
        };
        let ev = user_event(UserEventType::UserLoggedIn, user.id, at);
        self.ports
            .sessions
            .create_session(&session, vec![user_record(ev)?])
            .await?;
        // Signing in is activity: `get-me` right after a login shows it (later requests refresh
        // it at most once a minute, with the session's expiry).
        self.dir().touch_user(user.id, at).await?;
        self.ports.cache.delete(&user_cache_key(user.id));
        Ok(session)
    }

    /// Resolves the `session_id` cookie; slides its expiry at most once a minute.
    pub async fn authenticate(&self, cookie: Option<&str>) -> AppResult<Authed> {
        let raw =
            cookie.ok_or_else(|| AppError::Unauthorized("No session cookie provided".into()))?;
        let id = parse_uuid(raw)
            .ok_or_else(|| AppError::Unauthorized("Invalid session cookie format".into()))?;
        // With the session store unreachable, a session this process validated lately still
        // authenticates (and is not extended: nothing can be written there).
        let (mut session, recalled) = match self.ports.sessions.session(id).await {
            Ok(Some(s)) => {
                self.recent_sessions.remember(&s);
                (s, false)
            }
            Ok(None) => {
                self.recent_sessions.forget(id);
                return Err(AppError::Unauthorized("Session not found".into()));
            }
            Err(StoreError::Unavailable(e)) => match self.recent_sessions.recall(id) {
                Some(s) => {
                    metrics::counter!("livechat_sessions_recalled_total").increment(1);
                    (s, true)
                }
                None => return Err(StoreError::Unavailable(e).into()),
            },
            Err(e) => return Err(e.into()),
        };
        let at = now();
        if session.expires_at <= at || session.absolute_expires_at <= at {
            return Err(AppError::Unauthorized("Session expired".into()));
        }
        let user = self
            .dir()
            .user_by_id(session.user_id)
            .await?
            .ok_or_else(|| AppError::Unauthorized("Session not found".into()))?;
        let target = (at + Duration::seconds(self.limits.session_idle_secs))
            .min(session.absolute_expires_at);
        let mut refreshed = false;
        // Write at most once a minute (sooner for very short idle timeouts).
        let touch = SESSION_TOUCH_SECS
            .min(self.limits.session_idle_secs / 4)
            .max(1);
        if !recalled && target - session.expires_at >= Duration::seconds(touch) {
            self.ports.sessions.extend_session(id, target).await?;
            self.dir().touch_user(user.id, at).await?;
            self.ports.cache.delete(&user_cache_key(user.id));
            session.expires_at = target;
            refreshed = true;
        }
        Ok(Authed {
            user,
            session,
            refreshed,
        })
    }

    pub async fn logout(&self, cookie: Option<&str>) -> AppResult<()> {
        let authed = self.authenticate(cookie).await?;
        let ev = user_event(UserEventType::UserLoggedOut, authed.user.id, now());
        self.ports
            .sessions
            .delete_session(authed.session.id, vec![user_record(ev)?])
            .await?;
        self.recent_sessions.forget(authed.session.id);
        self.ports.cache.delete(&user_cache_key(authed.user.id));
        self.ports.fanout.disconnect_session(authed.session.id);
        Ok(())
    }

    /// Deletes the caller's account for good, once their password is confirmed (the right to
    /// erasure). They leave every room (a room they own is deleted with its messages, as when an
    /// owner leaves); each message of theirs still in the history is deleted by a
    /// `MESSAGE_DELETED` on the log, so a replay deletes it too; then the directory erases the
    /// account, its content key first. What they wrote stays in the log only sealed, with no key
    /// left to open it, in every copy: Kafka, a consumer's archive, a replay. Their sockets close.
    pub async fn delete_account(&self, authed: &Authed, password: &str) -> AppResult<()> {
        /// Messages deleted per log write.
        const PAGE: u32 = 500;
        let user = &authed.user;
        // Throttled like a login: a stolen session must not become a way to guess the password.
        let account = validate::username_key(&user.username);
        self.throttle.check(None, &account)?;
        let hash = Some(user.password_hash.clone());
        if !self.hashing.verify(password, hash).await? {
            self.throttle.record_failure(None, &account);
            return Err(AppError::Forbidden("Password is incorrect".into()));
        }
        for (room, _, _) in self.dir().rooms_of_user(user.id).await? {
            self.leave_room(user, room.id).await?;
        }
        let mut after = None;
        loop {
            let page = self.ports.history.by_author(user.id, after, PAGE).await?;
            let Some(last) = page.last() else { break };
            after = Some((last.room_id, last.seq));
            let records = page
                .iter()
                .map(|m| {
                    room_record(self.message_event(RoomEventType::MessageDeleted, m, user.id, None))
                })
                .collect::<AppResult<Vec<_>>>()?;
            self.change_messages(records).await?;
            for m in &page {
                self.release_files(m).await;
            }
            if page.len() < PAGE as usize {
                break;
            }
        }
        let ev = user_event(UserEventType::UserDeleted, user.id, now());
        self.dir()
            .erase_user(user.id, vec![user_record(ev)?, user_tombstone(user.id)])
            .await?;
        self.ports.keyring.forget(user.id);
        self.ports.cache.delete(&user_cache_key(user.id));
        self.recent_sessions.forget(authed.session.id);
        self.ports.fanout.disconnect_session(authed.session.id);
        tracing::info!(user = %user.id, "Account deleted.");
        Ok(())
    }

    /// Ends a session if it is still valid (a login replacing it). Nothing to do for one that
    /// is unknown or expired; a store failure is logged (the new session is issued anyway).
    pub async fn end_session(&self, cookie: &str) {
        match self.logout(Some(cookie)).await {
            Ok(()) | Err(AppError::Unauthorized(_)) => {}
            Err(e) => tracing::warn!(error = %e, "Ending the replaced session failed."),
        }
    }

    /// The caller's profile, through the cache (which never holds the password hash).
    pub async fn me(&self, user: &User) -> AppResult<UserPublic> {
        let key = user_cache_key(user.id);
        if let Some(bytes) = self.ports.cache.get(&key) {
            if let Ok(u) = serde_json::from_slice::<UserPublic>(&bytes) {
                return Ok(u);
            }
        }
        let public = UserPublic::from(user);
        if let Ok(bytes) = serde_json::to_vec(&public) {
            self.ports.cache.set(&key, bytes, USER_CACHE_TTL_SECS);
        }
        Ok(public)
    }

    // ----- rooms ---------------------------------------------------------------------------

    pub async fn room_or_404(&self, room: RoomId) -> AppResult<Room> {
        self.dir()
            .room(room)
            .await?
            .ok_or_else(|| AppError::not_found("Room"))
    }

    /// A room's immutable name and owner (404 if it does not exist).
    async fn room_facts(&self, room: RoomId) -> AppResult<(String, UserId)> {
        if let Some(f) = self
            .room_facts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&room)
        {
            return Ok(f.clone());
        }
        let r = self.room_or_404(room).await?;
        let mut map = self.room_facts.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= ROOM_FACTS_MAX {
            map.clear();
        }
        map.insert(room, (r.name.clone(), r.created_by));
        Ok((r.name, r.created_by))
    }

    /// The caller's role in the room, or 403 — or 404 for a direct conversation, whose id anyone
    /// who knows its members' ids can compute: to everyone else it does not exist.
    pub async fn require_member(&self, room: RoomId, user: UserId) -> AppResult<Role> {
        self.role_or(room, user, AppError::room_forbidden).await
    }

    /// The caller's role in a room that must exist: 404 if it does not, 403 for a non-member
    /// (what [`Self::room_or_404`] then [`Self::require_member`] answer). A membership implies
    /// the room (deleting a room removes its memberships in the same write), so a member costs
    /// one lookup, not two.
    pub async fn member_of_room(&self, room: RoomId, user: UserId) -> AppResult<Role> {
        self.role_or(room, user, || AppError::not_found("Room"))
            .await
    }

    /// The caller's role; for a non-member 403, or 404 for a direct conversation, or `missing`
    /// when the room does not exist.
    async fn role_or(
        &self,
        room: RoomId,
        user: UserId,
        missing: fn() -> AppError,
    ) -> AppResult<Role> {
        match self.dir().membership(room, user).await? {
            Some(role) => Ok(role),
            None => match self.dir().room(room).await? {
                None => Err(missing()),
                Some(r) if r.direct => Err(AppError::not_found("Room")),
                Some(_) => Err(AppError::room_forbidden()),
            },
        }
    }

    /// The room whose live stream a user may open: 404 if it does not exist, 403 if the user is
    /// not a member (the one check behind the upgrade's `?room_id=` and `subscribe` frames).
    pub async fn room_to_stream(&self, room: RoomId, user: UserId) -> AppResult<Room> {
        let r = self.room_or_404(room).await?;
        self.require_member(room, user).await?;
        Ok(r)
    }

    async fn require_owner(&self, room: RoomId, user: UserId) -> AppResult<Room> {
        let r = self.room_or_404(room).await?;
        if r.created_by != user {
            return Err(AppError::room_forbidden());
        }
        Ok(r)
    }

    fn description(&self, d: Option<&str>) -> AppResult<Option<String>> {
        match d {
            None => Ok(None),
            Some(d) => {
                let d =
                    validate::text("description", d, 0, self.limits.max_description_chars, true)?;
                Ok(if d.is_empty() { None } else { Some(d) })
            }
        }
    }

    pub async fn create_room(
        &self,
        user: &User,
        name: &str,
        description: Option<&str>,
        visibility: Visibility,
    ) -> AppResult<RoomPublic> {
        if visibility == Visibility::Direct {
            return Err(AppError::validation(
                "visibility",
                "a direct conversation is opened with create-direct, not created",
            ));
        }
        let (name, description) = AppError::both(
            validate::room_name(name, self.limits.max_room_name_chars),
            self.description(description),
        )?;
        let at = now();
        let mut room = Room {
            id: Uuid::new_v4(),
            name,
            description,
            is_public: true,
            unlisted: false,
            direct: false,
            created_by: user.id,
            participants_count: 1,
            last_seq: 0,
            created_at: at,
            updated_at: at,
        };
        room.set_visibility(visibility);
        let ev = room_event_for(RoomEventType::RoomCreated, &room, user.id, at);
        let records = vec![
            room_record(ev)?,
            room_state_record(&room, false)?,
            membership_record(room.id, user.id, Some(&user.username), Role::Owner, at)?,
        ];
        match self.dir().create_room(&room, records).await {
            Ok(()) => Ok(RoomPublic::from(&room)),
            Err(StoreError::Conflict(_)) => Err(AppError::BadRequest("Room already exists".into())),
            Err(e) => Err(e.into()),
        }
    }

    /// Changes the description and the visibility. `is_public` is the original client's switch:
    /// true makes the room public, false makes a public room private (an unlisted one stays
    /// unlisted); `visibility`, when given, wins.
    pub async fn update_room(
        &self,
        user: &User,
        room: RoomId,
        description: Option<&str>,
        is_public: Option<bool>,
        visibility: Option<Visibility>,
    ) -> AppResult<RoomPublic> {
        let mut r = self.require_owner(room, user.id).await?;
        if r.direct || visibility == Some(Visibility::Direct) {
            return Err(AppError::BadRequest(
                "A direct conversation cannot be changed, and a room cannot become one".into(),
            ));
        }
        let mut changed = false;
        if let Some(d) = description {
            let d = self.description(Some(d))?;
            if d != r.description {
                r.description = d;
                changed = true;
            }
        }
        let wanted = visibility
            .or_else(|| is_public.map(|p| Visibility::from_is_public(p, Some(r.visibility()))));
        if let Some(v) = wanted.filter(|v| *v != r.visibility()) {
            r.set_visibility(v);
            changed = true;
        }
        if !changed {
            return Err(AppError::BadRequest("Nothing to change in room".into()));
        }
        r.updated_at = now();
        let ev = room_event_for(RoomEventType::RoomUpdated, &r, user.id, r.updated_at);
        let records = vec![room_record(ev)?, room_state_record(&r, false)?];
        self.dir().update_room(&r, records).await?;
        Ok(RoomPublic::from(&r))
    }

    pub async fn delete_room(&self, user: &User, room: RoomId) -> AppResult<()> {
        let r = self.require_owner(room, user.id).await?;
        if r.direct {
            return Err(AppError::BadRequest(
                "A direct conversation is not deleted: leave it instead".into(),
            ));
        }
        self.delete_room_unchecked(&r, user.id).await
    }

    async fn delete_room_unchecked(&self, r: &Room, actor: UserId) -> AppResult<()> {
        let ev = room_event_for(RoomEventType::RoomDeleted, r, actor, now());
        // Every membership ends with the room. Listed before the deletion: a join racing it
        // may keep a row whose room is gone (the rooms table has the room's tombstone).
        let members = self.dir().members(r.id).await?;
        let mut records = vec![room_record(ev)?, room_state_record(r, true)?];
        records.extend(members.iter().flat_map(|(u, _)| membership_end(r.id, u.id)));
        self.dir().delete_room(r.id, records).await?;
        self.known_members.forget(r.id, None);
        self.ports.fanout.evict(r.id, None, "room_deleted");
        // Its files go with the next sweep (within a minute); no one can reach them meanwhile.
        if let Err(e) = self.dir().release_room_files(r.id).await {
            tracing::warn!(room = %r.id, error = %e, "A deleted room's files were not released; they stay.");
        }
        Ok(())
    }

    /// A room's details (name, description, member count), for any signed-in user: a private
    /// room is found and requested like a public one; its messages, members, presence, typing
    /// and analytics stay members-only. A member also gets their read marker and unread count,
    /// as in their room list.
    pub async fn get_room(&self, user: &User, room: RoomId) -> AppResult<RoomPublic> {
        let r = self.room_or_404(room).await?;
        if r.direct {
            self.require_member(room, user.id).await?;
        }
        let mut p = RoomPublic::from(&r);
        p.name = r.name_for(&user.username);
        if let Some(read) = self.dir().read_marker(user.id, room).await? {
            p.last_read_seq = Some(read);
            p.unread_count = Some(self.unread_count(room, r.last_seq, read).await?);
        }
        Ok(p)
    }

    /// The caller's own data as a JSON document in pieces (see [`crate::export`]); 429 while
    /// [`CONCURRENT_EXPORTS`] others are being written.
    pub fn export_data(&self, user: &User) -> AppResult<crate::export::Pieces> {
        let permit =
            self.exports
                .clone()
                .try_acquire_owned()
                .map_err(|_| AppError::TooManyRequests {
                    message: "Other data exports are being written; try again shortly".into(),
                    retry_after_secs: 5,
                })?;
        Ok(crate::export::start(
            self.ports.directory.clone(),
            self.ports.history.clone(),
            user.clone(),
            permit,
        ))
    }

    /// The caller's rooms with unread counts from their read markers.
    pub async fn my_rooms(&self, user: &User) -> AppResult<Vec<RoomPublic>> {
        let rows = self.dir().rooms_of_user(user.id).await?;
        let mut out = Vec::with_capacity(rows.len());
        for (room, _role, read) in &rows {
            let mut p = RoomPublic::from(room);
            p.name = room.name_for(&user.username);
            p.last_read_seq = Some(*read);
            p.unread_count = Some(self.unread_count(room.id, room.last_seq, *read).await?);
            out.push(p);
        }
        Ok(out)
    }

    /// The messages after a read marker, deleted ones and thread replies left out. Only the first
    /// [`UNREAD_COUNTED`] are looked at (a history read of that many rows per room with
    /// anything unread): past them every seq counts — a count clients show as
    /// "99+" anyway.
    async fn unread_count(&self, room: RoomId, last_seq: i64, read: i64) -> AppResult<i64> {
        let unread = (last_seq - read).max(0);
        if unread == 0 {
            return Ok(0);
        }
        let looked_at = unread.min(UNREAD_COUNTED) as u32;
        // Deleted messages are not unread, nor thread replies: those are the thread's unread
        // (its root's `read_seq`), as in chat apps whose threads keep out of the timeline.
        let left_out = self
            .ports
            .history
            .after_seq(room, read, looked_at)
            .await?
            .iter()
            .filter(|m| (m.deleted || m.thread_root_seq.is_some()) && m.seq <= last_seq)
            .count() as i64;
        Ok(unread - left_out)
    }

    pub async fn top_rooms(
        &self,
        limit: Option<u32>,
        only_public: bool,
    ) -> AppResult<Vec<RoomPublic>> {
        let limit = clamp_limit("limit", limit, 10, 100)?;
        Ok(self
            .dir()
            .top_rooms(limit, only_public)
            .await?
            .iter()
            .map(RoomPublic::from)
            .collect())
    }

    pub async fn search_rooms(&self, text: &str, limit: Option<u32>) -> AppResult<Vec<RoomPublic>> {
        let text = validate::text("text", text, 1, 32, false)?;
        let limit = clamp_limit("limit", limit, 20, 100)?;
        Ok(self
            .dir()
            .search_rooms(&text, limit)
            .await?
            .iter()
            .map(RoomPublic::from)
            .collect())
    }

    pub async fn members(&self, user: &User, room: RoomId) -> AppResult<Vec<UserPublic>> {
        self.member_of_room(room, user.id).await?;
        Ok(self
            .dir()
            .members(room)
            .await?
            .iter()
            .map(|(u, _)| UserPublic::from(u))
            .collect())
    }

    /// Opens the direct conversation of the caller and `usernames` (one person, or a group up to
    /// `max_direct_members` with the caller): the same room every time for the same people,
    /// whoever opens it, with everyone back in it who had left.
    pub async fn open_direct(&self, user: &User, usernames: &[String]) -> AppResult<RoomPublic> {
        let max = self.limits.max_direct_members;
        let mut names: Vec<String> = usernames
            .iter()
            .map(|n| validate::username_key(n))
            .collect();
        names.sort();
        names.dedup();
        if names.is_empty() || names.len() + 1 > max {
            return Err(AppError::validation(
                "usernames",
                format!("name 1 to {} other people", max.saturating_sub(1)),
            ));
        }
        let others = self.dir().users_by_names(usernames).await?;
        if others.iter().any(|u| u.id == user.id) {
            return Err(AppError::validation(
                "usernames",
                "name the other people, not yourself",
            ));
        }
        let mut found: Vec<String> = others
            .iter()
            .map(|u| validate::username_key(&u.username))
            .collect();
        found.sort();
        found.dedup();
        if found != names {
            let missing: Vec<&str> = usernames
                .iter()
                .filter(|n| !found.contains(&validate::username_key(n)))
                .map(String::as_str)
                .collect();
            return Err(AppError::NotFound(format!(
                "No such user: {}",
                missing.join(", ")
            )));
        }
        let mut people: Vec<&User> = others.iter().collect();
        people.push(user);
        let mut ids: Vec<String> = people.iter().map(|u| u.id.to_string()).collect();
        ids.sort();
        let id = Uuid::new_v5(&DIRECT_ROOMS, ids.join(",").as_bytes());
        let room = match self.dir().room(id).await? {
            Some(r) => r,
            None => {
                let at = now();
                let usernames: Vec<String> = people.iter().map(|u| u.username.clone()).collect();
                let mut room = Room {
                    id,
                    name: Room::direct_name(&usernames),
                    description: None,
                    is_public: false,
                    unlisted: true,
                    direct: true,
                    created_by: user.id,
                    participants_count: 1,
                    last_seq: 0,
                    created_at: at,
                    updated_at: at,
                };
                room.set_visibility(Visibility::Direct);
                let ev = room_event_for(RoomEventType::RoomCreated, &room, user.id, at);
                let records = vec![
                    room_record(ev)?,
                    room_state_record(&room, false)?,
                    membership_record(id, user.id, Some(&user.username), Role::Owner, at)?,
                ];
                match self.dir().create_room(&room, records).await {
                    Ok(()) => room,
                    // The other person opened it at the same moment.
                    Err(StoreError::Conflict(_)) => self.room_or_404(id).await?,
                    Err(e) => return Err(e.into()),
                }
            }
        };
        for person in people {
            if self.dir().membership(id, person.id).await?.is_some() {
                continue;
            }
            let at = now();
            let mut ev = room_event_for(RoomEventType::UserJoinedRoom, &room, user.id, at);
            ev.subject_user_id = Some(person.id.to_string());
            ev.subject_username = Some(person.username.clone());
            let joined =
                membership_record(id, person.id, Some(&person.username), Role::Member, at)?;
            self.dir()
                .add_member(id, person.id, Role::Member, vec![room_record(ev)?, joined])
                .await?;
        }
        let mut p = RoomPublic::from(&self.room_or_404(id).await?);
        p.name = room.name_for(&user.username);
        Ok(p)
    }

    // ----- joining and leaving ---------------------------------------------------------------

    /// Public room: joins at once. Private room: files a request and notifies the owner.
    pub async fn request_join(
        &self,
        user: &User,
        room: RoomId,
        message: Option<&str>,
    ) -> AppResult<()> {
        let r = self.room_or_404(room).await?;
        if self.dir().membership(room, user.id).await?.is_some() {
            return Err(AppError::BadRequest("You are already in this room".into()));
        }
        if r.direct {
            // Only its people know it exists (see `require_member`).
            return Err(AppError::not_found("Room"));
        }
        let at = now();
        if r.is_public {
            let mut ev = room_event_for(RoomEventType::UserJoinedRoom, &r, user.id, at);
            ev.subject_user_id = Some(user.id.to_string());
            ev.subject_username = Some(user.username.clone());
            let joined = membership_record(room, user.id, Some(&user.username), Role::Member, at)?;
            self.dir()
                .add_member(room, user.id, Role::Member, vec![room_record(ev)?, joined])
                .await?;
            return Ok(());
        }
        let message = match message {
            Some(m) => {
                let m = validate::text("message", m, 0, self.limits.max_join_message_chars, true)?;
                if m.is_empty() {
                    None
                } else {
                    Some(m)
                }
            }
            None => None,
        };
        let req = JoinRequest {
            id: Uuid::new_v4(),
            room_id: room,
            user_id: user.id,
            message: message.clone(),
            created_at: at,
        };
        let mut ev = room_event_for(RoomEventType::JoinRequestCreated, &r, user.id, at);
        ev.subject_user_id = Some(user.id.to_string());
        ev.subject_username = Some(user.username.clone());
        ev.request_id = Some(req.id.to_string());
        ev.request_message = message;
        self.ports.keyring.seal(&mut ev).await?;
        match self
            .dir()
            .create_join_request(&req, vec![room_record(ev)?])
            .await
        {
            Ok(()) => Ok(()),
            Err(StoreError::Conflict(_)) => {
                Err(AppError::BadRequest("Join request already exists".into()))
            }
            Err(e) => Err(e.into()),
        }
    }

    pub async fn handle_join_request(
        &self,
        user: &User,
        request: Uuid,
        accept: bool,
    ) -> AppResult<()> {
        let req = self
            .dir()
            .join_request(request)
            .await?
            .ok_or_else(|| AppError::not_found("Join request"))?;
        let r = self.require_owner(req.room_id, user.id).await?;
        let requester = self.dir().user_by_id(req.user_id).await?;
        let kind = if accept {
            RoomEventType::JoinRequestAccepted
        } else {
            RoomEventType::JoinRequestRejected
        };
        let at = now();
        let mut ev = room_event_for(kind, &r, user.id, at);
        ev.subject_user_id = Some(req.user_id.to_string());
        ev.subject_username = requester.map(|u| u.username);
        ev.request_id = Some(req.id.to_string());
        let name = ev.subject_username.as_deref();
        let joined = accept
            .then(|| membership_record(r.id, req.user_id, name, Role::Member, at))
            .transpose()?;
        let mut records = vec![room_record(ev)?];
        records.extend(joined);
        if !self
            .dir()
            .handle_join_request(&req, accept, records)
            .await?
        {
            return Err(AppError::not_found("Join request"));
        }
        Ok(())
    }

    pub async fn join_requests_of_room(
        &self,
        user: &User,
        room: RoomId,
    ) -> AppResult<Vec<JoinRequestPublic>> {
        self.require_owner(room, user.id).await?;
        Ok(self.dir().join_requests_of_room(room).await?)
    }

    pub async fn my_join_requests(&self, user: &User) -> AppResult<Vec<JoinRequestPublic>> {
        Ok(self.dir().join_requests_of_user(user.id).await?)
    }

    /// The owner removes a member; the member's live stream of the room ends at once.
    pub async fn remove_member(&self, user: &User, room: RoomId, target: UserId) -> AppResult<()> {
        let r = self.require_owner(room, user.id).await?;
        if r.direct {
            return Err(AppError::BadRequest(
                "Nobody is removed from a direct conversation".into(),
            ));
        }
        if target == user.id {
            return Err(AppError::BadRequest(
                "The owner can't remove themself; delete the room instead".into(),
            ));
        }
        let mut ev = room_event_for(RoomEventType::UserRemovedFromRoom, &r, user.id, now());
        ev.subject_user_id = Some(target.to_string());
        if !self
            .dir()
            .remove_member(
                room,
                target,
                [room_record(ev)?]
                    .into_iter()
                    .chain(membership_end(room, target))
                    .collect(),
            )
            .await?
        {
            return Err(AppError::NotFound(
                "User is not a member of this room".into(),
            ));
        }
        self.known_members.forget(room, Some(target));
        self.ports.fanout.evict(room, Some(target), "removed");
        Ok(())
    }

    /// Leaves a room; the owner leaving deletes it (as in the original, recorded as ROOM_DELETED).
    pub async fn leave_room(&self, user: &User, room: RoomId) -> AppResult<()> {
        let r = self.room_or_404(room).await?;
        // The owner leaving deletes the room, but a direct conversation's opener only leaves it.
        if r.created_by == user.id && !r.direct {
            return self.delete_room_unchecked(&r, user.id).await;
        }
        let mut ev = room_event_for(RoomEventType::UserLeftRoom, &r, user.id, now());
        ev.subject_user_id = Some(user.id.to_string());
        ev.subject_username = Some(user.username.clone());
        if self
            .dir()
            .remove_member(
                room,
                user.id,
                [room_record(ev)?]
                    .into_iter()
                    .chain(membership_end(room, user.id))
                    .collect(),
            )
            .await?
        {
            self.known_members.forget(room, Some(user.id));
            self.ports.fanout.evict(room, Some(user.id), "left");
        }
        Ok(())
    }

    // ----- messages ----------------------------------------------------------------------------

    fn message_text(&self, field: &str, content: &str) -> AppResult<String> {
        validate::text(field, content, 1, self.limits.max_message_chars, true)
    }

    /// Members mentioned by `@username` (excluding the author), at most [`MAX_MENTIONS`].
    async fn mentioned_members(
        &self,
        room: RoomId,
        author: UserId,
        content: &str,
    ) -> AppResult<Vec<UserId>> {
        let mut names = validate::mentions(content);
        names.truncate(MAX_MENTIONS);
        if names.is_empty() {
            return Ok(vec![]);
        }
        let mut out = Vec::new();
        for u in self.dir().users_by_names(&names).await? {
            if u.id != author && self.dir().membership(room, u.id).await?.is_some() {
                out.push(u.id);
            }
        }
        Ok(out)
    }

    /// The message of the same room at `seq`, checked: there and not deleted (the caller is a
    /// member); `field` names the parameter in the error, `what` the message's role.
    async fn target_message(
        &self,
        room: RoomId,
        seq: i64,
        field: &str,
        what: &str,
    ) -> AppResult<StoredMessage> {
        let missing = || {
            AppError::validation(
                field,
                format!("no message with seq {seq} in this room {what}"),
            )
        };
        match self.message_at(room, seq).await? {
            Some(m) if !m.deleted => Ok(m),
            _ => Err(missing()),
        }
    }

    /// The message (or tombstone) of a room at `seq`, if there is one.
    async fn message_at(&self, room: RoomId, seq: i64) -> AppResult<Option<StoredMessage>> {
        if seq < 1 {
            return Ok(None);
        }
        let found = self.ports.history.after_seq(room, seq - 1, 1).await?.pop();
        Ok(found.filter(|m| m.seq == seq))
    }

    /// The seq of the root of the thread a reply goes into — the message named, or the root of
    /// the thread that message is in (threads are one level deep, as in Slack and Matrix) —
    /// and the root's author while the root is there (not deleted).
    async fn thread_root(&self, room: RoomId, seq: i64) -> AppResult<(i64, Option<UserId>)> {
        let m = self
            .target_message(
                room,
                seq,
                "thread_root_seq",
                "to start or continue a thread on",
            )
            .await?;
        let Some(root) = m.thread_root_seq else {
            return Ok((m.seq, Some(m.user_id)));
        };
        let author = self
            .message_at(room, root)
            .await?
            .filter(|r| !r.deleted)
            .map(|r| r.user_id);
        Ok((root, author))
    }

    /// Stores a message durably (its seq assigned) and returns it; a retry with the same
    /// `client_msg_id` returns the first result with `duplicate = true`. A reply names the seq
    /// of the message it quotes, a thread reply the seq of its thread's root, in the same room.
    /// `order` places it after the client's earlier sends to the room still in flight.
    pub async fn send_message(
        &self,
        user: &User,
        room: RoomId,
        content: &str,
        opts: SendOptions<'_>,
        order: SendOrder,
    ) -> AppResult<(MessagePublic, bool)> {
        // A message may be only files; otherwise it needs its text.
        let content = match opts.attachments.is_empty() {
            true => self.message_text("content", content)?,
            false => validate::text("content", content, 0, self.limits.max_message_chars, true)?,
        };
        let client_msg_id = match opts.client_msg_id {
            Some(c) => Some(validate::text("client_msg_id", c, 1, 64, false)?),
            None => None,
        };
        // After the checks of the input (a refused send costs nothing), before any store work.
        self.sends
            .try_take(user.id)
            .map_err(|wait| AppError::TooManyRequests {
                message: "Too many messages; slow down".into(),
                retry_after_secs: wait,
            })?;
        let (room_name, room_owner) = self.room_facts(room).await?;
        if opts.reply_to_seq.is_some()
            || opts.thread_root_seq.is_some()
            || !opts.attachments.is_empty()
        {
            // Before a message is read: a non-member learns nothing about the room.
            self.require_member(room, user.id).await?;
        }
        // The authors of what the message answers (told of it, unless they sent it).
        let mut answered: Vec<UserId> = Vec::new();
        let reply_to_seq = match opts.reply_to_seq {
            Some(seq) => {
                let quoted = self
                    .target_message(room, seq, "reply_to_seq", "to reply to")
                    .await?;
                answered.push(quoted.user_id);
                Some(quoted.seq)
            }
            None => None,
        };
        let thread_root_seq = match opts.thread_root_seq {
            Some(seq) => {
                let (root, author) = self.thread_root(room, seq).await?;
                answered.extend(author);
                // Who replied in the thread follows it (the authors of its first replies).
                let replies = self
                    .ports
                    .history
                    .thread(room, root, 0, THREAD_FOLLOWERS_READ)
                    .await?;
                answered.extend(replies.iter().map(|r| r.user_id));
                // Then each member's own choice: unfollowed, or followed without replying.
                let choices = self.dir().thread_follows(room, root).await?;
                answered.retain(|u| choices.get(u) != Some(&false));
                let mut chosen: Vec<UserId> = choices
                    .into_iter()
                    .filter_map(|(u, follow)| follow.then_some(u))
                    .collect();
                chosen.sort();
                answered.extend(chosen.into_iter().take(THREAD_EXPLICIT_FOLLOWERS));
                Some(root)
            }
            None => None,
        };
        // Time-ordered (UUIDv7), so the history's index by id grows at its end.
        let message_id = Uuid::now_v7();
        let sender = (user.id, client_msg_id.as_deref(), message_id);
        let attachments = self.attached(room, opts.attachments, sender).await?;
        answered.retain(|a| *a != user.id);
        let mut seen = std::collections::HashSet::new();
        answered.retain(|a| seen.insert(*a));
        let mentions = self.mentioned_members(room, user.id, &content).await?;
        let at = now();
        let msg = NewMessage {
            message_id,
            room_id: room,
            user_id: user.id,
            content: content.clone(),
            client_msg_id: client_msg_id.clone(),
            created_at: at,
        };
        // The MESSAGE_SENT event of the message with this id, seq, text and time.
        let sent = {
            let (uid, uname) = (user.id, user.username.clone());
            let client_msg_id = client_msg_id.clone();
            let files: Vec<livechat_schemas::Attachment> =
                attachments.iter().map(Attachment::to_event).collect();
            move |mid: MessageId, seq: i64, text: &str, created: DateTime<Utc>| RoomEvent {
                actor_id: Some(uid.to_string()),
                subject_user_id: Some(uid.to_string()),
                subject_username: Some(uname.clone()),
                room_name: Some(room_name.clone()),
                room_owner_id: Some(room_owner.to_string()),
                message_id: Some(mid.to_string()),
                seq: Some(seq),
                client_msg_id: client_msg_id.clone(),
                content: Some(text.to_string()),
                message_created_at: Some(created.timestamp_millis()),
                mentioned_user_ids: mentions.iter().map(|m| m.to_string()).collect(),
                reply_to_seq,
                thread_root_seq,
                answered_user_ids: answered.iter().map(|a| a.to_string()).collect(),
                attachments: files.clone(),
                ..room_event(RoomEventType::MessageSent, room, created)
            }
        };
        let (mid, template) = (msg.message_id, sent.clone());
        // Taken here: the store may build the record on a thread of its own (the embedded
        // committer), outside this request's trace context.
        let trace = crate::trace::record_headers();
        // The log gets the text sealed under the author's key (see `keyring`).
        let key = self.ports.keyring.sealing_key(user.id).await?;
        let events: MessageEventsFn = Box::new(move |seq| {
            let mut ev = template(mid, seq, &content, at);
            ev.seal(&key);
            let mut record = room_record(ev).map_err(|e| anyhow::anyhow!("{e}"))?;
            record.headers = trace.clone();
            Ok(vec![record])
        });
        let receipt = match &self.ports.sequencing {
            Some(sequencer) => {
                // The directory is asked once in a while, not for every message.
                if !self.known_members.holds(room, user.id) {
                    self.require_member(room, user.id).await?;
                    self.known_members.remember(room, user.id);
                }
                let placed = order.turn().await;
                sequencer.send_message(msg, events, placed).await?
            }
            None => {
                let placed = order.turn().await;
                self.dir()
                    .send_message(msg, events, placed)
                    .await?
                    .ok_or_else(AppError::room_forbidden)?
            }
        };
        if !receipt.duplicate {
            metrics::counter!("livechat_messages_sent_total").increment(1);
        }
        if let Some(wt) = &self.ports.write_through {
            // Also for a retry: it finishes what a failed write-through left undone.
            let ev = sent(
                receipt.message_id,
                receipt.seq,
                &receipt.content,
                receipt.created_at,
            );
            if let Err(e) = wt.apply(&[room_record(ev)?]).await {
                // Stored, but not yet readable: a client with a client_msg_id retries and gets
                // it readable; without one a retry would store it twice, so it is acknowledged
                // and becomes readable once the history processor has it.
                if client_msg_id.is_some() {
                    return Err(e.into());
                }
                tracing::warn!(error = %e, "Sent message not yet readable (write-through failed).");
            }
        }
        let public = MessagePublic {
            id: receipt.message_id,
            room_id: room,
            user_id: user.id,
            username: user.username.clone(),
            content: receipt.content,
            edited: false,
            created_at: receipt.created_at,
            updated_at: receipt.created_at,
            seq: receipt.seq,
            deleted: false,
            client_msg_id,
            reply_to_seq,
            reactions: Vec::new(),
            pinned_by: None,
            pinned_at: None,
            thread_root_seq,
            thread: None,
            attachments: attachments.iter().map(|a| a.public(room)).collect(),
        };
        if let Some(root) = thread_root_seq {
            // The author has read the thread up to their own reply. The send is durable already:
            // a failure here leaves the marker behind, not the message.
            if let Err(e) = self
                .dir()
                .set_thread_read(user.id, room, root, receipt.seq)
                .await
            {
                tracing::warn!(error = %e, "The author's thread read marker was not raised.");
            }
        }
        Ok((public, receipt.duplicate))
    }

    async fn live_message(&self, id: MessageId) -> AppResult<StoredMessage> {
        match self.ports.history.message(id).await? {
            Some(m) if !m.deleted => Ok(m),
            _ => Err(AppError::not_found("Message")),
        }
    }

    fn message_event(
        &self,
        kind: RoomEventType,
        m: &StoredMessage,
        actor: UserId,
        content: Option<&str>,
    ) -> RoomEvent {
        RoomEvent {
            actor_id: Some(actor.to_string()),
            subject_user_id: Some(m.user_id.to_string()),
            subject_username: Some(m.username.clone()),
            message_id: Some(m.id.to_string()),
            seq: Some(m.seq),
            client_msg_id: m.client_msg_id.clone(),
            content: content.map(str::to_string),
            message_created_at: Some(m.created_at.timestamp_millis()),
            // Later than the message's last change, whatever this clock says: a change applies
            // only over an older one, so it is never lost to another process's clock running
            // ahead, and applying the same changes in any order gives the same message.
            ..room_event(
                kind,
                m.room_id,
                now().max(m.updated_at + Duration::milliseconds(1)),
            )
        }
    }

    /// The author (still a member) edits a message.
    pub async fn edit_message(
        &self,
        user: &User,
        id: MessageId,
        new_content: &str,
    ) -> AppResult<MessagePublic> {
        let content = self.message_text("new_content", new_content)?;
        let mut m = self.live_message(id).await?;
        if m.user_id != user.id {
            return Err(AppError::Forbidden("Cannot access user's message".into()));
        }
        self.require_member(m.room_id, user.id).await?;
        let mut ev = self.message_event(RoomEventType::MessageEdited, &m, user.id, Some(&content));
        self.ports.keyring.seal(&mut ev).await?;
        let at = crate::from_ms(ev.occurred_at);
        self.change_message(room_record(ev)?).await?;
        m.content = content;
        m.edited = true;
        m.updated_at = at;
        Ok(MessagePublic::from(&m))
    }

    /// The author (still a member) or the room owner deletes a message.
    pub async fn delete_message(&self, user: &User, id: MessageId) -> AppResult<()> {
        let m = self.live_message(id).await?;
        let room = self.room_or_404(m.room_id).await?;
        // Nobody moderates a direct conversation: each deletes their own messages.
        let is_owner = room.created_by == user.id && !room.direct;
        if !is_owner {
            if m.user_id != user.id {
                return Err(AppError::Forbidden("Cannot access user's message".into()));
            }
            self.require_member(m.room_id, user.id).await?;
        }
        // No content: what a delete removes is not copied into the log (or a replay of it).
        let ev = self.message_event(RoomEventType::MessageDeleted, &m, user.id, None);
        self.change_message(room_record(ev)?).await?;
        self.release_files(&m).await;
        Ok(())
    }

    /// A member adds (`added`) or takes back a reaction to a message. Idempotent per user and
    /// emoji: adding one the user already has, or removing one they do not, records nothing.
    /// Returns the message with its reactions as they are now. Counted against the user's send
    /// rate, like a message.
    pub async fn react(
        &self,
        user: &User,
        id: MessageId,
        emoji: &str,
        added: bool,
    ) -> AppResult<MessagePublic> {
        let emoji = validate::emoji("emoji", emoji)?;
        let mut m = self.live_message(id).await?;
        self.require_member(m.room_id, user.id).await?;
        let slot = m.reactions.iter().position(|r| r.emoji == emoji);
        let mine = slot.is_some_and(|i| m.reactions[i].user_ids.contains(&user.id));
        if mine == added {
            return Ok(MessagePublic::from(&m));
        }
        if added && slot.is_none() && m.reactions.len() >= self.limits.max_reaction_emojis {
            return Err(AppError::validation(
                "emoji",
                format!(
                    "a message carries at most {} different reactions",
                    self.limits.max_reaction_emojis
                ),
            ));
        }
        self.sends
            .try_take(user.id)
            .map_err(|wait| AppError::TooManyRequests {
                message: "Too many reactions; slow down".into(),
                retry_after_secs: wait,
            })?;
        let kind = match added {
            true => RoomEventType::MessageReactionAdded,
            false => RoomEventType::MessageReactionRemoved,
        };
        let ev = RoomEvent {
            actor_id: Some(user.id.to_string()),
            subject_user_id: Some(m.user_id.to_string()),
            subject_username: Some(m.username.clone()),
            message_id: Some(m.id.to_string()),
            seq: Some(m.seq),
            reaction: Some(emoji.clone()),
            ..room_event(kind, m.room_id, now())
        };
        self.change_message(room_record(ev)?).await?;
        match (slot, added) {
            (Some(i), true) => m.reactions[i].user_ids.push(user.id),
            (None, true) => m.reactions.push(Reaction {
                emoji,
                user_ids: vec![user.id],
            }),
            (Some(i), false) => {
                m.reactions[i].user_ids.retain(|u| *u != user.id);
                if m.reactions[i].user_ids.is_empty() {
                    m.reactions.remove(i);
                }
            }
            (None, false) => {}
        }
        Ok(MessagePublic::from(&m))
    }

    /// A member pins (or unpins) a message of the room. Pinning a pinned message, or unpinning
    /// one that is not, records nothing. At most `max_pinned_per_room` at a time.
    pub async fn pin_message(
        &self,
        user: &User,
        id: MessageId,
        pinned: bool,
    ) -> AppResult<MessagePublic> {
        let mut m = self.live_message(id).await?;
        self.require_member(m.room_id, user.id).await?;
        if m.pin.as_ref().is_some_and(|p| p.pinned) == pinned {
            return Ok(MessagePublic::from(&m));
        }
        let max = self.limits.max_pinned_per_room;
        if pinned && self.ports.history.pinned(m.room_id, max).await?.len() >= max as usize {
            return Err(AppError::BadRequest(format!(
                "A room holds at most {max} pinned messages: unpin one first"
            )));
        }
        // Later than the message's last pin change, whatever this clock says (as edits are).
        let after = m.pin.as_ref().map(|p| p.at + Duration::milliseconds(1));
        let at = after.map_or_else(now, |a| now().max(a));
        let kind = match pinned {
            true => RoomEventType::MessagePinned,
            false => RoomEventType::MessageUnpinned,
        };
        let ev = RoomEvent {
            actor_id: Some(user.id.to_string()),
            subject_user_id: Some(m.user_id.to_string()),
            subject_username: Some(m.username.clone()),
            message_id: Some(m.id.to_string()),
            seq: Some(m.seq),
            ..room_event(kind, m.room_id, at)
        };
        self.change_message(room_record(ev)?).await?;
        m.pin = Some(Pin {
            pinned,
            by: user.id,
            at: crate::from_ms(at.timestamp_millis()),
        });
        Ok(MessagePublic::from(&m))
    }

    /// Full-text search over the messages of the caller's rooms (or of one of them): every
    /// word must occur; newest or best first, paged by `offset`. Each result carries where its
    /// text matches. The index follows the log (a few hundred milliseconds behind a send).
    pub async fn search_messages(
        &self,
        user: &User,
        text: &str,
        room: Option<RoomId>,
        order: Option<SearchOrder>,
        limit: Option<u32>,
        offset: Option<u32>,
    ) -> AppResult<Vec<SearchResult>> {
        /// Deepest page a search pages to.
        const MAX_OFFSET: u32 = 1000;
        let text = validate::text("text", text, 1, 200, false)?;
        let terms = crate::search::terms(&text)?;
        let limit = clamp_limit("limit", limit, 20, 50)?;
        let offset = offset.unwrap_or(0);
        if offset > MAX_OFFSET {
            return Err(AppError::validation(
                "offset",
                format!("offset must be at most {MAX_OFFSET}"),
            ));
        }
        let Some(index) = &self.ports.search else {
            return Err(AppError::Unavailable(
                "Message search does not run in this process".into(),
            ));
        };
        let rooms = match room {
            Some(r) => {
                self.room_or_404(r).await?;
                self.require_member(r, user.id).await?;
                vec![r]
            }
            None => self
                .dir()
                .rooms_of_user(user.id)
                .await?
                .into_iter()
                .map(|(r, ..)| r.id)
                .collect(),
        };
        if rooms.is_empty() {
            return Ok(Vec::new());
        }
        let query = SearchQuery {
            rooms,
            terms: terms.clone(),
            order: order.unwrap_or(SearchOrder::Newest),
            limit,
            offset,
        };
        let mut out = Vec::new();
        for hit in index.search(&query).await? {
            // The message as it is now (an edit or a delete the index has not seen yet wins).
            let Some(m) = self.ports.history.message(hit.message_id).await? else {
                continue;
            };
            let highlights = crate::search::highlights(&m.content, &terms);
            if m.deleted || highlights.is_empty() {
                continue;
            }
            out.push(SearchResult {
                message: MessagePublic::from(&m),
                highlights,
            });
        }
        Ok(out)
    }

    /// The room's pinned messages, the latest pinned first (members only).
    pub async fn pinned_messages(
        &self,
        user: &User,
        room: RoomId,
    ) -> AppResult<Vec<MessagePublic>> {
        self.member_of_room(room, user.id).await?;
        let max = self.limits.max_pinned_per_room;
        let rows = self.ports.history.pinned(room, max).await?;
        Ok(rows.into_iter().map(MessagePublic::from).collect())
    }

    /// A thread: its root and a page of its live replies, oldest first, `seq > after` (members
    /// only). The root may be deleted (its replies stay); a message that is itself a reply in a
    /// thread is no root (404, as a seq with no message).
    pub async fn thread(
        &self,
        user: &User,
        room: RoomId,
        root_seq: i64,
        after: Option<i64>,
        limit: Option<u32>,
    ) -> AppResult<ThreadPage> {
        let limit = clamp_limit("limit", limit, 50, self.limits.max_history_page)?;
        let after = after.unwrap_or(0).max(0);
        let root = self.thread_root_of(user, room, root_seq).await?;
        let replies = self
            .ports
            .history
            .thread(room, root_seq, after, limit)
            .await?;
        let roots = [root_seq];
        let (reads, choices) = tokio::try_join!(
            self.dir().thread_reads(user.id, room, &roots),
            self.dir().thread_follows(room, root_seq),
        )?;
        let read_seq = reads.get(&root_seq).copied().unwrap_or(0);
        let follow_choice = choices.get(&user.id).copied();
        // By default the root's author and the authors of the first replies follow (as a reply
        // tells them); the page in hand holds those replies when it starts the thread and either
        // ends it or is at least that long.
        let replied = |rs: &[StoredMessage]| {
            rs.iter()
                .take(THREAD_FOLLOWERS_READ as usize)
                .any(|r| r.user_id == user.id)
        };
        let following = match follow_choice {
            Some(chosen) => chosen,
            None if root.user_id == user.id => true,
            None if after == 0
                && (replies.len() < limit as usize || limit >= THREAD_FOLLOWERS_READ) =>
            {
                replied(&replies)
            }
            None => replied(
                &self
                    .ports
                    .history
                    .thread(room, root_seq, 0, THREAD_FOLLOWERS_READ)
                    .await?,
            ),
        };
        Ok(ThreadPage {
            root: MessagePublic::from(&root),
            replies: replies.into_iter().map(MessagePublic::from).collect(),
            read_seq,
            following,
            follow_choice,
        })
    }

    /// The root of a thread the caller may read: 404 when the room or the root is not there
    /// (or `root_seq` is a reply), 403 for a non-member.
    async fn thread_root_of(
        &self,
        user: &User,
        room: RoomId,
        root_seq: i64,
    ) -> AppResult<StoredMessage> {
        self.member_of_room(room, user.id).await?;
        match self.message_at(room, root_seq).await? {
            Some(m) if m.thread_root_seq.is_none() => Ok(m),
            _ => Err(AppError::not_found("Thread")),
        }
    }

    /// Follows a thread (told of every reply) or stops following it; answers the choice.
    pub async fn follow_thread(
        &self,
        user: &User,
        room: RoomId,
        root_seq: i64,
        follow: bool,
    ) -> AppResult<bool> {
        self.thread_root_of(user, room, root_seq).await?;
        self.dir()
            .set_thread_follow(user.id, room, root_seq, follow)
            .await?;
        Ok(follow)
    }

    /// Marks a thread read up to `seq` (never past its last reply, never backwards); returns the
    /// caller's marker now.
    pub async fn mark_thread_read(
        &self,
        user: &User,
        room: RoomId,
        root_seq: i64,
        seq: i64,
    ) -> AppResult<i64> {
        if seq < 0 {
            return Err(AppError::validation("seq", "seq must be >= 0"));
        }
        let root = self.thread_root_of(user, room, root_seq).await?;
        let last = root.thread.map_or(root.seq, |t| t.last_reply_seq);
        Ok(self
            .dir()
            .set_thread_read(user.id, room, root_seq, seq.min(last))
            .await?)
    }

    /// Fills in the caller's read marker of each thread root on a history page (one directory
    /// read, only for pages that hold thread roots).
    async fn with_thread_reads(
        &self,
        user: &User,
        room: RoomId,
        mut page: Vec<MessagePublic>,
    ) -> AppResult<Vec<MessagePublic>> {
        let roots: Vec<i64> = page
            .iter()
            .filter(|m| m.thread.is_some())
            .map(|m| m.seq)
            .collect();
        if roots.is_empty() {
            return Ok(page);
        }
        let reads = self.dir().thread_reads(user.id, room, &roots).await?;
        for m in &mut page {
            if let Some(t) = &mut m.thread {
                t.read_seq = Some(reads.get(&m.seq).copied().unwrap_or(0));
            }
        }
        Ok(page)
    }

    /// Records an edit, a delete, a reaction or a pin, readable at once (see [`WriteThrough`]).
    async fn change_message(&self, record: OutboxRecord) -> AppResult<()> {
        self.change_messages(vec![record]).await
    }

    /// Records changes of existing messages (one write), and makes them readable at once.
    async fn change_messages(&self, records: Vec<OutboxRecord>) -> AppResult<()> {
        self.dir().enqueue(records.clone()).await?;
        if let Some(wt) = &self.ports.write_through {
            wt.apply(&records).await?;
        }
        Ok(())
    }

    /// History, newest first, keyset on `created_at < before` (the original's route).
    ///
    /// The next page is asked for with the oldest `created_at` of this one, so messages of that
    /// same millisecond that did not fit would be skipped for good: a page is extended by them
    /// (it may then hold more than `limit`; clients stop at a short page, never a long one).
    /// One message past the page tells whether there are any, so only then is there a second read.
    pub async fn recent_messages(
        &self,
        user: &User,
        room: RoomId,
        before: Option<DateTime<Utc>>,
        limit: Option<u32>,
    ) -> AppResult<Vec<MessagePublic>> {
        /// Most messages one millisecond of one room is scanned for.
        const SAME_MILLISECOND_SCAN: u32 = 1_000;
        let limit = clamp_limit("limit", limit, 50, self.limits.max_history_page)?;
        self.member_of_room(room, user.id).await?;
        let history = &self.ports.history;
        let mut page = history.recent(room, before, limit + 1).await?;
        let beyond = match page.len() > limit as usize {
            true => page.split_off(limit as usize).into_iter().next(),
            false => None,
        };
        let edge = page.last().map(|m| m.created_at.timestamp_millis());
        let beyond = beyond.map(|m| m.created_at.timestamp_millis());
        if let Some(edge_ms) = edge.filter(|e| beyond == Some(*e)) {
            let through_edge = crate::from_ms(edge_ms + 1);
            let seen: std::collections::HashSet<MessageId> = page.iter().map(|m| m.id).collect();
            let same_ms: Vec<StoredMessage> = history
                .recent(room, Some(through_edge), SAME_MILLISECOND_SCAN)
                .await?
                .into_iter()
                .filter(|m| m.created_at.timestamp_millis() == edge_ms && !seen.contains(&m.id))
                .collect();
            page.extend(same_ms);
            page.sort_by_key(|m| std::cmp::Reverse((m.created_at, m.seq)));
        }
        let page = page.into_iter().map(MessagePublic::from).collect();
        self.with_thread_reads(user, room, page).await
    }

    /// History by seq: oldest first after `after_seq`, or newest first before `before_seq`.
    pub async fn messages_by_seq(
        &self,
        user: &User,
        room: RoomId,
        after_seq: Option<i64>,
        before_seq: Option<i64>,
        limit: Option<u32>,
    ) -> AppResult<Vec<MessagePublic>> {
        let limit = clamp_limit("limit", limit, 50, self.limits.max_history_page)?;
        self.member_of_room(room, user.id).await?;
        let rows = match (after_seq, before_seq) {
            (Some(_), Some(_)) => {
                return Err(AppError::validation(
                    "after_seq",
                    "give after_seq or before_seq, not both",
                ))
            }
            (Some(a), None) if a < 0 => {
                return Err(AppError::validation("after_seq", "after_seq must be >= 0"))
            }
            (Some(a), None) => self.ports.history.after_seq(room, a, limit).await?,
            (None, Some(b)) => self.ports.history.before_seq(room, b, limit).await?,
            (None, None) => self.ports.history.before_seq(room, i64::MAX, limit).await?,
        };
        let page = rows.into_iter().map(MessagePublic::from).collect();
        self.with_thread_reads(user, room, page).await
    }

    /// Messages after `after` for a resuming subscriber (membership already checked).
    pub async fn resume_page(
        &self,
        room: RoomId,
        after: i64,
        limit: u32,
    ) -> AppResult<Vec<StoredMessage>> {
        Ok(self.ports.history.after_seq(room, after, limit).await?)
    }

    // ----- typing, presence, read markers ----------------------------------------------------

    pub async fn typing(&self, user: &User, room: RoomId, is_typing: bool) -> AppResult<()> {
        self.require_member(room, user.id).await?;
        self.ports.fanout.to_room(
            room,
            frames::typing(room, user.id, &user.username, is_typing),
        );
        Ok(())
    }

    pub async fn set_read_marker(
        &self,
        user: &User,
        room: RoomId,
        seq: i64,
    ) -> AppResult<(i64, i64)> {
        if seq < 0 {
            return Err(AppError::validation("seq", "seq must be >= 0"));
        }
        let r = self.room_or_404(room).await?;
        self.require_member(room, user.id).await?;
        let seq = seq.min(r.last_seq);
        // Written only if the marker rises, so the table's records of a key only ever rise.
        let record = read_marker_record(room, user.id, seq, now())?;
        let stored = self
            .dir()
            .set_read_marker(user.id, room, seq, vec![record])
            .await?;
        Ok((stored, self.unread_count(room, r.last_seq, stored).await?))
    }

    pub async fn active_users(&self, user: &User, room: RoomId) -> AppResult<Vec<UserId>> {
        self.member_of_room(room, user.id).await?;
        let mut online = self.ports.fanout.online_users(room);
        if let Some(presence) = &self.ports.presence {
            // Other processes' users; if the presence store is down, this process's view.
            match presence.online(room).await {
                Ok(remote) => online.extend(remote),
                Err(e) => tracing::warn!(error = %e, "presence unavailable: local view only"),
            }
            online.sort();
            online.dedup();
        }
        Ok(online)
    }

    /// The owner ends a user's live stream of the room (membership unchanged).
    pub async fn force_disconnect(
        &self,
        user: &User,
        room: RoomId,
        target: UserId,
    ) -> AppResult<()> {
        let r = self.require_owner(room, user.id).await?;
        let mut ev = room_event_for(RoomEventType::UserForcedDisconnect, &r, user.id, now());
        ev.subject_user_id = Some(target.to_string());
        self.dir().enqueue(vec![room_record(ev)?]).await?;
        self.ports.fanout.evict(room, Some(target), "disconnected");
        Ok(())
    }

    /// Records a socket joining or leaving a room's live stream (analytics).
    pub async fn record_connection(
        &self,
        user: UserId,
        room: RoomId,
        connected: bool,
    ) -> AppResult<()> {
        let kind = if connected {
            RoomEventType::UserConnected
        } else {
            RoomEventType::UserDisconnected
        };
        let mut ev = room_event(kind, room, now());
        ev.actor_id = Some(user.to_string());
        ev.subject_user_id = Some(user.to_string());
        self.dir().enqueue(vec![room_record(ev)?]).await?;
        Ok(())
    }

    // ----- notifications ---------------------------------------------------------------------

    pub async fn notifications(
        &self,
        user: &User,
        unread_only: bool,
        limit: Option<u32>,
    ) -> AppResult<Vec<NotificationPublic>> {
        let limit = clamp_limit("limit", limit, 50, 200)?;
        Ok(self
            .dir()
            .notifications(user.id, unread_only, limit)
            .await?
            .iter()
            .map(NotificationPublic::from)
            .collect())
    }

    pub async fn mark_notification_read(&self, user: &User, id: Uuid) -> AppResult<()> {
        let n = self
            .dir()
            .notification(id)
            .await?
            .ok_or_else(|| AppError::not_found("Notification"))?;
        if n.user_id != user.id {
            return Err(AppError::Forbidden("User can't access notification".into()));
        }
        let mut ev = user_event(UserEventType::NotificationRead, user.id, now());
        ev.notification_id = Some(id.to_string());
        self.dir()
            .mark_notification_read(id, vec![user_record(ev)?])
            .await?;
        Ok(())
    }

    pub async fn mark_all_notifications_read(&self, user: &User) -> AppResult<u64> {
        let at = now();
        let ev = user_event(UserEventType::NotificationsAllRead, user.id, at);
        Ok(self
            .dir()
            .mark_all_notifications_read(user.id, at, vec![user_record(ev)?])
            .await?)
    }

    pub async fn unread_notifications(&self, user: &User) -> AppResult<i64> {
        Ok(self.dir().count_unread_notifications(user.id).await?)
    }

    /// Deletes one of the caller's notifications (200 whether or not it existed, as before).
    /// The delete goes into the log, so a rebuild of the notifications does not bring it back.
    pub async fn delete_notification(&self, user: &User, id: Uuid) -> AppResult<()> {
        let mut ev = user_event(UserEventType::NotificationDeleted, user.id, now());
        ev.notification_id = Some(id.to_string());
        self.dir()
            .delete_notification(id, user.id, vec![user_record(ev)?])
            .await?;
        Ok(())
    }

    // ----- analytics -----------------------------------------------------------------------------

    /// Room stats for members (and anyone for public rooms).
    pub async fn room_stats(&self, user: &User, room: RoomId) -> AppResult<RoomStats> {
        let r = self.room_or_404(room).await?;
        if !r.is_public {
            self.require_member(room, user.id).await?;
        }
        Ok(self.ports.analytics.room_stats(room).await?)
    }

    /// A user's own activity (other users' activity is private).
    pub async fn user_activity(&self, user: &User, target: UserId) -> AppResult<UserActivity> {
        if target != user.id {
            return Err(AppError::Forbidden(
                "Users can read only their own activity".into(),
            ));
        }
        Ok(self.ports.analytics.user_activity(target).await?)
    }

    /// Most active rooms the caller may see (public ones and their own).
    pub async fn top_active_rooms(
        &self,
        user: &User,
        limit: Option<u32>,
    ) -> AppResult<Vec<RoomStats>> {
        let limit = clamp_limit("limit", limit, 50, 200)?;
        let mut out = Vec::new();
        // Over-fetch, then drop rooms the caller may not see or that no longer exist.
        for s in self
            .ports
            .analytics
            .top_active_rooms(limit.saturating_mul(2).min(1000))
            .await?
        {
            if out.len() as u32 >= limit {
                break;
            }
            if let Some(r) = self.dir().room(s.room_id).await? {
                if r.is_public || self.dir().membership(r.id, user.id).await?.is_some() {
                    out.push(s);
                }
            }
        }
        Ok(out)
    }

    pub async fn messages_in_window(
        &self,
        user: &User,
        room: RoomId,
        since_minutes: Option<i64>,
    ) -> AppResult<i64> {
        let m = since_minutes
            .ok_or_else(|| AppError::validation("since_minutes", "since_minutes is required"))?;
        if !(1..=525_600).contains(&m) {
            return Err(AppError::validation(
                "since_minutes",
                "since_minutes must be between 1 and 525600",
            ));
        }
        let r = self.room_or_404(room).await?;
        if !r.is_public {
            self.require_member(room, user.id).await?;
        }
        Ok(self
            .ports
            .analytics
            .messages_since(room, now() - Duration::minutes(m))
            .await?)
    }

    pub async fn retention(&self, days: Option<i64>) -> AppResult<f64> {
        let d = days.ok_or_else(|| AppError::validation("days", "days is required"))?;
        if !(1..=3650).contains(&d) {
            return Err(AppError::validation(
                "days",
                "days must be between 1 and 3650",
            ));
        }
        Ok(self
            .ports
            .analytics
            .retention(now() - Duration::days(d))
            .await?)
    }

    pub async fn edit_delete_ratio(&self) -> AppResult<EditDeleteRatio> {
        Ok(self.ports.analytics.edit_delete_ratio().await?)
    }

    pub async fn top_social_users(&self, limit: Option<u32>) -> AppResult<Vec<SocialUser>> {
        let limit = clamp_limit("limit", limit, 10, 100)?;
        Ok(self.ports.analytics.top_social_users(limit).await?)
    }
}

/// The namespace of direct conversations' room ids (UUIDv5 of their members' ids).
const DIRECT_ROOMS: Uuid = Uuid::from_u128(0x6c69_7665_6368_6174_2d64_6972_6563_7400);

pub fn user_cache_key(id: UserId) -> String {
    format!("user:{id}")
}
