//! One WebSocket connection: reads client frames, writes hub frames, keeps per-room order.
//!
//! Per subscribed room the connection remembers the last message seq it wrote. A live message
//! is written only if it is the next seq; a gap (or a resume with `since_seq`) switches the room
//! to catch-up, which pages the missing seqs from history, then returns to live. So a client
//! sees every message once, in order, whatever the timing of the processors.
//!
//! A send runs beside the loop (`sends`): the connection keeps writing while it waits for
//! durability. When the socket closes, the sends read before are completed (unanswered).

use std::collections::HashMap;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use futures::{FutureExt, SinkExt, StreamExt};
use livechat_core::model::{RoomId, User};
use livechat_core::ratelimit::TokenBucket;
use livechat_core::{frames, AppError};
use serde_json::{json, Value};
use tracing::Instrument;
use uuid::Uuid;

use super::protocol::{ack, control, error, history, parse, ClientFrame, SendFrame};
use super::sends::{InFlight, Sent};
use crate::hub::{release_burst, ConnHandle, Outbound};
use crate::AppState;

/// Close codes (RFC 6455 and LiveChat's 4xxx range), documented in the README.
pub const CLOSE_PROTOCOL: u16 = 1002;
pub const CLOSE_BAD_DATA: u16 = 1007;
pub const CLOSE_POLICY: u16 = 1008;
pub const CLOSE_TOO_BIG: u16 = 1009;
pub const CLOSE_IDLE: u16 = 4000;
pub const CLOSE_REMOVED: u16 = 4403;
pub const CLOSE_SESSION_ENDED: u16 = 4401;

const CATCH_UP_PAGE: u32 = 200;
/// Most queued frames taken from the hub per turn of the loop (written with one flush).
const OUTBOUND_BATCH: usize = 64;
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the close frame may take: a socket closed for not reading may not take it at all.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);
/// The window in which `max_rate_violations` rate-limited frames close the socket (1008).
const VIOLATION_WINDOW: Duration = Duration::from_secs(10);
/// How long the sends read before a close are given to finish (a send through the log waits
/// for its receipt up to 30 s).
const SEND_AFTER_CLOSE: Duration = Duration::from_secs(35);
/// Pings between session re-checks (the session may expire or be revoked while connected).
const PINGS_PER_SESSION_CHECK: u32 = 30;

#[derive(Debug)]
struct Sub {
    /// Last message seq written to the client.
    last: i64,
    /// Highest seq known to exist (catch-up runs until `last` reaches it).
    target: i64,
    catching_up: bool,
    /// When the next catch-up page is due (history may lag behind live delivery).
    due: Instant,
    retry_ms: u64,
    /// Subscribed with the native protocol (gets tombstones and resume notices).
    native: bool,
}

struct Conn {
    st: Arc<AppState>,
    user: User,
    handle: Arc<ConnHandle>,
    legacy_room: Option<RoomId>,
    subs: HashMap<RoomId, Sub>,
    typing: TokenBucket,
    subscribes: TokenBucket,
    /// Rate-limited frames in the current window, and when it began.
    violations: (Instant, u32),
    out: Vec<Message>,
    close: Option<(u16, String)>,
    sends: InFlight,
    /// A frame read that cannot be handled yet (see `sends`); the socket is not read meanwhile.
    parked: Option<Box<Parked>>,
}

enum Parked {
    /// A send past `sends::MAX_IN_FLIGHT`.
    Send(RoomId, SendFrame, Value),
    /// Any other frame, while sends are in flight.
    Frame(ClientFrame, Value),
}

/// Serves an upgraded socket until it closes.
pub async fn serve(
    socket: WebSocket,
    st: Arc<AppState>,
    user: User,
    session: Uuid,
    legacy_room: Option<RoomId>,
) {
    let handle = st
        .hub
        .register(user.id, session, st.svc.limits.outbound_queue_frames);
    let span = tracing::info_span!("ws", conn = handle.id, user = %user.id);
    run(socket, st, user, session, legacy_room, handle)
        .instrument(span)
        .await
}

async fn run(
    socket: WebSocket,
    st: Arc<AppState>,
    user: User,
    session: Uuid,
    legacy_room: Option<RoomId>,
    handle: Arc<ConnHandle>,
) {
    let limits = st.svc.limits.clone();
    let (mut sink, mut stream) = socket.split();
    let mut c = Conn {
        st: st.clone(),
        user,
        handle: handle.clone(),
        legacy_room,
        subs: HashMap::new(),
        typing: TokenBucket::new(limits.typing_rate_per_sec, limits.typing_burst),
        subscribes: TokenBucket::new(limits.subscribe_rate_per_sec, limits.subscribe_burst),
        violations: (Instant::now(), 0),
        out: Vec::new(),
        close: None,
        sends: InFlight::default(),
        parked: None,
    };
    if let Some(room) = legacy_room {
        Box::pin(c.subscribe(room, None, false, &Value::Null)).await;
    }
    let mut ping = tokio::time::interval(Duration::from_secs(limits.ping_interval_secs.max(1)));
    ping.tick().await;
    let idle = Duration::from_secs(limits.idle_timeout_secs.max(1));
    let mut last_seen = Instant::now();
    let mut inbox: Vec<Outbound> = Vec::new();
    let mut pings = 0u32;

    while c.close.is_none() {
        if handle.is_closed() {
            c.close = Some(handle.close_reason().unwrap_or((1001, "closing".into())));
            break;
        }
        let due = c
            .subs
            .values()
            .filter(|s| s.catching_up)
            .map(|s| s.due)
            .min();
        tokio::select! {
            biased;
            // While a frame waits (see `sends`), the client's next ones wait in the socket.
            msg = stream.next(), if c.parked.is_none() => match msg {
                Some(Ok(m)) => {
                    last_seen = Instant::now();
                    match m {
                        // Boxed: a frame's work (a send reaches the store) is a large future,
                        // and kept inline it would make every idle connection's task as large.
                        Message::Text(t) => Box::pin(c.on_text(t.as_str())).await,
                        Message::Binary(_) => c.out.push(text(error("unsupported", "binary frames are not supported; send JSON text", &Value::Null))),
                        Message::Close(_) => break,
                        Message::Ping(_) | Message::Pong(_) => {}
                    }
                }
                Some(Err(e)) => match close_for_read_error(&e.to_string()) {
                    Some(close) => c.close = Some(close),
                    None => break,
                },
                None => break,
            },
            // Every frame already queued goes out with one flush (one write to the socket). The
            // hub's request to close wakes this wait too; the loop's next turn closes.
            _ = handle.recv_many(&mut inbox, OUTBOUND_BATCH) => {
                if handle.is_closed() {
                    inbox.clear();
                } else {
                    for o in inbox.drain(..) {
                        c.on_outbound(o);
                    }
                }
                release_burst(&mut inbox);
            },
            sent = c.sends.next(), if !c.sends.is_empty() => {
                last_seen = Instant::now();
                Box::pin(c.on_sent(sent)).await;
                // Sends made durable by the same commit are acknowledged in the same write: one
                // write, and one wakeup of the client, instead of one per send.
                while let Some(sent) = c.sends.next().now_or_never() {
                    Box::pin(c.on_sent(sent)).await;
                }
            }
            _ = ping.tick() => {
                // A client whose frame waits was not idle.
                if last_seen.elapsed() > idle && c.parked.is_none() {
                    c.close = Some((CLOSE_IDLE, "idle timeout".into()));
                } else {
                    c.out.push(Message::Ping(Default::default()));
                    if c.legacy_room.is_some() {
                        c.out.push(text(json!({"type": "PING"}).to_string()));
                    }
                    pings += 1;
                    if pings.is_multiple_of(PINGS_PER_SESSION_CHECK) && !Box::pin(c.session_valid(session)).await {
                        c.close = Some((CLOSE_SESSION_ENDED, "session ended".into()));
                    }
                }
            }
            _ = sleep_until(due), if due.is_some() => Box::pin(c.catch_up_due()).await,
        }
        if !c.out.is_empty() {
            // Most writes fit in the socket's buffer: written here, with nothing to allocate. One
            // that waits on the client is boxed like the frame handling above (kept inline, its
            // timer and state would be part of every idle connection's task).
            let written =
                match std::future::poll_fn(|cx| Poll::Ready(write_now(&mut sink, &mut c.out, cx)))
                    .await
                {
                    Some(written) => written,
                    None => Box::pin(flush(&mut sink, &mut c.out, &handle)).await,
                };
            if !written {
                break;
            }
        }
    }
    if let Some((code, reason)) = c.close.take() {
        tracing::info!(code, reason = %reason, "Closing the WebSocket.");
        metrics::counter!("livechat_websocket_closes_total", "code" => code.to_string())
            .increment(1);
        let frame = CloseFrame {
            code,
            reason: reason.into(),
        };
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, sink.send(Message::Close(Some(frame)))).await;
    }
    let rooms: Vec<RoomId> = c.subs.keys().copied().collect();
    st.hub.unregister(&handle, &rooms);
    // What the client sent before the close is stored, as if the socket had stayed open.
    if let Some(Parked::Send(room, send, r)) = c.parked.take().map(|p| *p) {
        c.sends.finish(SEND_AFTER_CLOSE).await;
        c.sends.start(&c.st, &c.user, room, send, r);
    }
    c.sends.finish(SEND_AFTER_CLOSE).await;
    for room in rooms {
        let svc = st.svc.clone();
        let uid = c.user.id;
        tokio::spawn(async move {
            if let Err(e) = svc.record_connection(uid, room, false).await {
                tracing::debug!(error = %e, "Recording a disconnect failed.");
            }
        });
    }
}

async fn sleep_until(due: Option<Instant>) {
    if let Some(d) = due {
        tokio::time::sleep_until(d.into()).await;
    }
}

fn text(s: String) -> Message {
    Message::Text(s.into())
}

/// Writes the queued frames if the socket takes them at once: `Some(true)` written and
/// flushed, `Some(false)` the socket is gone, `None` the socket is full (what it did not take
/// stays queued, for [`flush`]). No timer either: one set and cancelled for every frame sent
/// was a visible share of a busy fan-out's CPU.
fn write_now<S>(sink: &mut S, out: &mut Vec<Message>, cx: &mut Context<'_>) -> Option<bool>
where
    S: futures::Sink<Message> + Unpin,
{
    let mut frames = out.drain(..);
    while !frames.as_slice().is_empty() {
        match sink.poll_ready_unpin(cx) {
            Poll::Ready(Ok(())) => {
                if let Some(frame) = frames.next() {
                    if sink.start_send_unpin(frame).is_err() {
                        return Some(false);
                    }
                }
            }
            Poll::Ready(Err(_)) => return Some(false),
            Poll::Pending => {
                let rest: Vec<Message> = frames.collect();
                *out = rest;
                return None;
            }
        }
    }
    drop(frames);
    match sink.poll_flush_unpin(cx) {
        Poll::Ready(flushed) => Some(flushed.is_ok()),
        Poll::Pending => None,
    }
}

/// Writes queued frames with one flush; false if the socket is gone or too slow. A write that
/// waits on a client that stopped reading gives way as soon as the hub asks for the close (its
/// queue overflowed: 4008), rather than holding the connection until the write times out.
async fn flush<S>(sink: &mut S, out: &mut Vec<Message>, handle: &ConnHandle) -> bool
where
    S: futures::Sink<Message> + Unpin,
{
    let write = async {
        for m in out.drain(..) {
            if sink.feed(m).await.is_err() {
                return false;
            }
        }
        sink.flush().await.is_ok()
    };
    tokio::select! {
        biased; // a socket that takes the frames gets them, even when a close is on its way
        written = tokio::time::timeout(WRITE_TIMEOUT, write) => written.unwrap_or(false),
        // The loop's next turn sees the close and ends the connection.
        _ = handle.closed() => true,
    }
}

/// The close a failed read deserves (RFC 6455 §7.4.1), from the WebSocket library's error; None
/// when the socket is simply gone.
fn close_for_read_error(error: &str) -> Option<(u16, String)> {
    if error.contains("too long") || error.contains("Space limit") {
        Some((CLOSE_TOO_BIG, "frame or message too large".into()))
    } else if error.contains("UTF-8") {
        Some((CLOSE_BAD_DATA, "text frame is not valid UTF-8".into()))
    } else if error.contains("protocol error") {
        // A close reason has at most 123 bytes.
        Some((CLOSE_PROTOCOL, error.chars().take(100).collect()))
    } else {
        None
    }
}

fn parse_room(s: &str) -> Result<RoomId, AppError> {
    Uuid::parse_str(s).map_err(|_| AppError::validation("room_id", "room_id is not a valid UUID"))
}

impl Conn {
    fn reply_err(&mut self, e: &AppError, r: &Value) {
        let msg = match e {
            AppError::Internal(err) => {
                tracing::error!(error = %format!("{err:#}"), "WebSocket request failed.");
                "internal error".to_string()
            }
            other => {
                tracing::debug!(code = e.code(), error = %other, "WebSocket request refused.");
                other.to_string()
            }
        };
        self.out.push(text(error(e.code(), &msg, r)));
    }

    /// A rate-limited frame: an error frame, and the socket closes after too many within
    /// [`VIOLATION_WINDOW`] (counted whatever frames were accepted in between: a client sending
    /// steadily faster than its limit gets some through, and is still closed).
    fn limited(&mut self, what: &str, r: &Value) {
        let (since, count) = &mut self.violations;
        if since.elapsed() > VIOLATION_WINDOW {
            (*since, *count) = (Instant::now(), 0);
        }
        *count += 1;
        self.out.push(text(error(
            "rate_limited",
            &format!("too many {what}; slow down"),
            r,
        )));
        if self.violations.1 > self.st.svc.limits.max_rate_violations {
            self.close = Some((CLOSE_POLICY, "rate limit exceeded repeatedly".into()));
        }
    }

    // `&mut`: the connection's sends in flight can move between threads but not be shared.
    async fn session_valid(&mut self, session: Uuid) -> bool {
        let id = session.to_string();
        !matches!(
            self.st.svc.authenticate(Some(&id)).await,
            Err(AppError::Unauthorized(_))
        )
    }

    async fn on_text(&mut self, raw: &str) {
        match parse(raw) {
            Ok((frame, r)) => {
                if let Err(e) = self.on_frame(frame, &r).await {
                    self.reply_err(&e, &r);
                }
            }
            Err(answer) => self.out.push(text(answer)),
        }
    }

    /// A send finished: its ack (or refusal), then the frame that waited for it, if any.
    async fn on_sent(&mut self, sent: Sent) {
        match sent.result {
            Ok((m, duplicate)) => match ack(sent.room, &m, duplicate, &sent.r) {
                Ok(frame) => self.out.push(text(frame)),
                Err(e) => self.reply_err(
                    &AppError::Internal(anyhow::anyhow!("writing an ack: {e}")),
                    &sent.r,
                ),
            },
            Err(AppError::TooManyRequests { .. }) => self.limited("messages", &sent.r),
            Err(e) => self.reply_err(&e, &sent.r),
        }
        let Some(parked) = self.parked.take() else {
            return;
        };
        match *parked {
            Parked::Send(room, send, r) if self.sends.can_start() => {
                self.sends.start(&self.st, &self.user, room, send, r)
            }
            Parked::Frame(frame, r) if self.sends.is_empty() => {
                if let Err(e) = self.on_frame(frame, &r).await {
                    self.reply_err(&e, &r);
                }
            }
            still => self.parked = Some(Box::new(still)),
        }
    }

    async fn on_frame(&mut self, frame: ClientFrame, r: &Value) -> Result<(), AppError> {
        // Any other frame waits for the sends before it (a `read` or an `unsubscribe` right
        // after a send is about the room as the send left it).
        if !self.sends.is_empty() && !matches!(frame, ClientFrame::Send(_)) {
            self.parked = Some(Box::new(Parked::Frame(frame, r.clone())));
            return Ok(());
        }
        match frame {
            ClientFrame::Pong => {}
            ClientFrame::Ping => self.out.push(text(control("pong", json!({}), r))),
            ClientFrame::LegacyTyping {
                username,
                is_typing,
                room_id,
            } => {
                let room = match room_id {
                    Some(id) => parse_room(&id)?,
                    None => self
                        .legacy_room
                        .ok_or_else(|| AppError::validation("room_id", "room_id is required"))?,
                };
                if username.is_some_and(|u| u != self.user.username) {
                    return Err(AppError::Forbidden(
                        "username does not match the session".into(),
                    ));
                }
                self.on_typing(room, is_typing, r).await?;
            }
            ClientFrame::Typing { room_id, is_typing } => {
                let room = parse_room(&room_id)?;
                self.on_typing(room, is_typing, r).await?;
            }
            ClientFrame::Subscribe { room_id, since_seq } => {
                let room = parse_room(&room_id)?;
                if since_seq.is_some_and(|s| s < 0) {
                    return Err(AppError::validation("since_seq", "since_seq must be >= 0"));
                }
                if !self.subs.contains_key(&room)
                    && self.subs.len() >= self.st.svc.limits.max_rooms_per_socket
                {
                    return Err(AppError::BadRequest(format!(
                        "at most {} rooms per connection",
                        self.st.svc.limits.max_rooms_per_socket
                    )));
                }
                if !self.subscribes.try_take() {
                    self.limited("subscribe frames", r);
                    return Ok(());
                }
                self.subscribe(room, since_seq, true, r).await;
            }
            ClientFrame::Unsubscribe { room_id } => {
                let room = parse_room(&room_id)?;
                self.subs.remove(&room);
                self.st.hub.unsubscribe(&self.handle, room);
                self.out.push(text(control(
                    "unsubscribed",
                    json!({"room_id": room, "reason": "client"}),
                    r,
                )));
            }
            ClientFrame::Send(send) => {
                let room = parse_room(&send.room_id)?;
                if self.sends.can_start() {
                    self.sends
                        .start(&self.st, &self.user, room, send, r.clone());
                } else {
                    self.parked = Some(Box::new(Parked::Send(room, send, r.clone())));
                }
            }
            ClientFrame::React {
                message_id,
                emoji,
                added,
            } => {
                let id = Uuid::parse_str(&message_id)
                    .map_err(|_| AppError::validation("message_id", "message_id must be a UUID"))?;
                let m = match self.st.svc.react(&self.user, id, &emoji, added).await {
                    Err(AppError::TooManyRequests { .. }) => {
                        self.limited("reactions", r);
                        return Ok(());
                    }
                    other => other?,
                };
                self.out.push(text(control(
                    "react_ack",
                    json!({"room_id": m.room_id, "message_id": m.id, "seq": m.seq,
                           "reactions": m.reactions}),
                    r,
                )));
            }
            ClientFrame::Read { room_id, seq } => {
                let room = parse_room(&room_id)?;
                let (stored, unread) = self.st.svc.set_read_marker(&self.user, room, seq).await?;
                self.out.push(text(control(
                    "read_ack",
                    json!({"room_id": room, "last_read_seq": stored, "unread_count": unread}),
                    r,
                )));
            }
            ClientFrame::History {
                room_id,
                after_seq,
                before_seq,
                limit,
            } => {
                let room = parse_room(&room_id)?;
                let page = self
                    .st
                    .svc
                    .messages_by_seq(&self.user, room, after_seq, before_seq, limit)
                    .await?;
                let frame = history(room, &page, r).map_err(|e| {
                    AppError::Internal(anyhow::anyhow!("writing a history page: {e}"))
                })?;
                self.out.push(text(frame));
            }
        }
        Ok(())
    }

    async fn on_typing(
        &mut self,
        room: RoomId,
        is_typing: bool,
        r: &Value,
    ) -> Result<(), AppError> {
        if !self.typing.try_take() {
            self.limited("typing frames", r);
            return Ok(());
        }
        self.st.svc.typing(&self.user, room, is_typing).await
    }

    /// Subscribes (or re-subscribes) to a room; with `since_seq` the missed messages follow.
    async fn subscribe(&mut self, room: RoomId, since: Option<i64>, native: bool, r: &Value) {
        if let Err(e) = self.st.svc.room_to_stream(room, self.user.id).await {
            return self.reply_err(&e, r);
        }
        // A subscribe for a room the socket is already in only moves its position (a resume);
        // it is not another connection.
        let again = self.subs.contains_key(&room);
        // Join the live stream first, then read where the room is: a message committed before
        // the read is counted in `last_seq` (its live frame, if any, is a duplicate), one after
        // it arrives live. Reading first would miss one committed in between until the next.
        self.st.hub.subscribe(&self.handle, room);
        let rm = match self.st.svc.room_or_404(room).await {
            Ok(rm) => rm,
            Err(e) => {
                self.st.hub.unsubscribe(&self.handle, room);
                return self.reply_err(&e, r);
            }
        };
        let last = since.map(|s| s.min(rm.last_seq)).unwrap_or(rm.last_seq);
        let catching_up = last < rm.last_seq;
        self.subs.insert(
            room,
            Sub {
                last,
                target: rm.last_seq,
                catching_up,
                due: Instant::now(),
                retry_ms: 5,
                native,
            },
        );
        if native {
            self.out.push(text(control(
                "subscribed",
                json!({"room_id": room, "last_seq": rm.last_seq, "since_seq": since, "resuming": catching_up}),
                r,
            )));
            if !catching_up && since.is_some() {
                self.out.push(text(control(
                    "resumed",
                    json!({"room_id": room, "last_seq": last}),
                    &Value::Null,
                )));
            }
        }
        if again {
            return; // the socket was already in the room: no new connection to record
        }
        let svc = self.st.svc.clone();
        let uid = self.user.id;
        tokio::spawn(async move {
            if let Err(e) = svc.record_connection(uid, room, true).await {
                tracing::debug!(error = %e, "Recording a connect failed.");
            }
        });
    }

    fn on_outbound(&mut self, o: Outbound) {
        match o {
            Outbound::Frame(b) => {
                let text = b.text.clone();
                let Some(room) = b.room else {
                    return self.out.push(Message::Text(text));
                };
                let Some(sub) = self.subs.get_mut(&room) else {
                    return;
                };
                match b.seq {
                    None => self.out.push(Message::Text(text)),
                    Some(seq) => {
                        sub.target = sub.target.max(seq);
                        if sub.catching_up || seq <= sub.last {
                            // Catch-up will read it from history; or it is a duplicate.
                        } else if seq == sub.last + 1 {
                            sub.last = seq;
                            self.out.push(Message::Text(text));
                        } else {
                            sub.catching_up = true;
                            sub.due = Instant::now();
                            sub.retry_ms = 5;
                        }
                    }
                }
            }
            Outbound::Evicted(evicted) => {
                let (room, reason) = *evicted;
                self.subs.remove(&room);
                self.out.push(text(control(
                    "unsubscribed",
                    json!({"room_id": room, "reason": reason}),
                    &Value::Null,
                )));
                if self.legacy_room == Some(room) {
                    self.close = Some((CLOSE_REMOVED, format!("no longer in the room: {reason}")));
                }
            }
        }
    }

    /// Writes the next page of missed messages for the room whose catch-up is due first.
    async fn catch_up_due(&mut self) {
        let now = Instant::now();
        let Some(room) = self
            .subs
            .iter()
            .filter(|(_, s)| s.catching_up && s.due <= now)
            .map(|(r, _)| *r)
            .next()
        else {
            return;
        };
        let after = self.subs[&room].last;
        let page = match self.st.svc.resume_page(room, after, CATCH_UP_PAGE).await {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = %e, %room, "Reading history for catch-up failed; retrying.");
                Vec::new()
            }
        };
        let Some(sub) = self.subs.get_mut(&room) else {
            return;
        };
        for m in &page {
            if m.seq != sub.last + 1 {
                break; // history not yet contiguous here; retry shortly
            }
            sub.last = m.seq;
            if sub.native || !m.deleted {
                self.out.push(text(frames::stored_message(m)));
            }
        }
        let full_page =
            page.len() as u32 == CATCH_UP_PAGE && page.last().is_some_and(|m| m.seq == sub.last);
        if full_page {
            sub.due = Instant::now();
        } else if sub.last >= sub.target {
            sub.catching_up = false;
            sub.retry_ms = 5;
            if sub.native {
                let last = sub.last;
                self.out.push(text(control(
                    "resumed",
                    json!({"room_id": room, "last_seq": last}),
                    &Value::Null,
                )));
            }
        } else {
            // The history processor has not stored the newest messages yet.
            sub.due = Instant::now() + Duration::from_millis(sub.retry_ms);
            sub.retry_ms = (sub.retry_ms * 2).min(500);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(n: usize) -> Vec<Message> {
        (0..n).map(|i| text(format!("f{i}"))).collect()
    }

    /// A socket that takes everything gets it in order and flushed; a full one keeps what it
    /// did not take queued, in order, for the write that waits; a closed one ends the socket.
    #[test]
    fn a_write_now_takes_what_the_socket_takes_and_keeps_the_rest() {
        let waker = futures::task::noop_waker();
        let mut cx = Context::from_waker(&waker);

        let (mut sink, mut rx) = futures::channel::mpsc::unbounded::<Message>();
        let mut out = frames(3);
        assert_eq!(write_now(&mut sink, &mut out, &mut cx), Some(true));
        assert!(out.is_empty());
        let got: Vec<Message> = std::iter::from_fn(|| rx.try_recv().ok()).collect();
        assert_eq!(got, frames(3));

        // Room for two (a buffer of one, plus one for the sender).
        let (mut sink, mut rx) = futures::channel::mpsc::channel::<Message>(1);
        let mut out = frames(5);
        assert_eq!(write_now(&mut sink, &mut out, &mut cx), None);
        assert_eq!(
            out,
            frames(5)[2..].to_vec(),
            "the three not taken, in order"
        );
        let got: Vec<Message> = std::iter::from_fn(|| rx.try_recv().ok()).collect();
        assert_eq!(got, frames(2));

        drop(rx);
        assert_eq!(write_now(&mut sink, &mut out, &mut cx), Some(false));
    }
}
