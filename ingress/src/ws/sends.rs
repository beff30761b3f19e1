//! A connection's sends in flight. A send waits for its message to be durable (a commit, or a
//! round trip through the log in distributed mode); meanwhile the connection goes on writing
//! the rooms' messages to its client — otherwise its outbound queue would fill while the client
//! reads well, and the hub would close it as a slow reader — and sends to other rooms go ahead.
//!
//! Order: sends to one room go to the store in the order the client wrote them, each once the
//! one before it has its place there (`livechat_core::send_order`), so their seqs follow that
//! order while many are in flight; their acks come in that order too. Sends to different rooms
//! may complete, and be acknowledged, in any order (acks carry `client_msg_id` and `ref`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use futures::StreamExt;
use livechat_core::model::{MessagePublic, RoomId, User};
use livechat_core::send_order::{SendOrder, Turn};
use livechat_core::service::SendOptions;
use livechat_core::AppError;
use serde_json::Value;
use tokio::sync::oneshot;
use tracing::Instrument;

use super::protocol::SendFrame;
use crate::AppState;

/// Most sends of one connection in flight at once (to any rooms).
pub const MAX_IN_FLIGHT: usize = 8;

/// A finished send: its room, the frame's `ref`, and the stored message (and whether it was a
/// retry) or the refusal.
pub struct Sent {
    pub room: RoomId,
    pub r: Value,
    pub result: Result<(MessagePublic, bool), AppError>,
}

/// The latest send in flight to a room, for the next one to follow.
struct Last {
    /// Its place in the store, which the next send waits for before going there.
    turn: Turn,
    /// Closed once it is answered: the next send's answer waits for it (acks in order).
    answered: oneshot::Receiver<()>,
    /// Sends in flight to the room.
    running: usize,
}

#[derive(Default)]
pub struct InFlight {
    /// Created with the first send: an idle connection holds nothing here.
    running: Option<FuturesUnordered<BoxFuture<'static, Sent>>>,
    rooms: HashMap<RoomId, Last>,
}

impl InFlight {
    fn count(&self) -> usize {
        self.running.as_ref().map_or(0, FuturesUnordered::len)
    }

    pub fn is_empty(&self) -> bool {
        self.count() == 0
    }

    /// Whether another send may start now.
    pub fn can_start(&self) -> bool {
        self.count() < MAX_IN_FLIGHT
    }

    /// Starts the send (the caller checked [`InFlight::can_start`]); it runs while the
    /// connection's loop polls [`InFlight::next`].
    pub fn start(
        &mut self,
        st: &Arc<AppState>,
        user: &User,
        room: RoomId,
        req: SendFrame,
        r: Value,
    ) {
        let (st, user) = (st.clone(), user.clone());
        let (answered, answered_rx) = oneshot::channel::<()>();
        let (previous, before, running) = match self.rooms.remove(&room) {
            Some(last) => (Some(last.turn), Some(last.answered), last.running),
            None => (None, None, 0),
        };
        let (order, turn) = SendOrder::after(previous);
        let last = Last {
            turn,
            answered: answered_rx,
            running: running + 1,
        };
        self.rooms.insert(room, last);
        let send = async move {
            let result = livechat_core::trace::scope(
                req.traceparent
                    .as_deref()
                    .and_then(livechat_core::trace::parse),
                st.svc.send_message(
                    &user,
                    room,
                    &req.content,
                    SendOptions {
                        client_msg_id: req.client_msg_id.as_deref(),
                        reply_to_seq: req.reply_to_seq,
                        thread_root_seq: req.thread_root_seq,
                        attachments: &req.attachments,
                    },
                    order,
                ),
            )
            .await;
            if let Some(before) = before {
                let _ = before.await; // closed when the earlier send is answered
            }
            drop(answered);
            Sent { room, r, result }
        };
        self.running
            .get_or_insert_with(FuturesUnordered::new)
            .push(Box::pin(send.in_current_span()));
    }

    /// Lets the sends still running finish (for at most `limit`), unanswered: the socket is
    /// closing, and a client that sent and closed at once still expects its message stored.
    pub async fn finish(&mut self, limit: Duration) {
        let Some(running) = self.running.as_mut() else {
            return;
        };
        let all = async { while running.next().await.is_some() {} };
        if tokio::time::timeout(limit, all).await.is_err() {
            tracing::warn!(
                left = running.len(),
                "Sends of a closed socket still running were given up on."
            );
        }
        // What is left was given up on: dropped, so a later `finish` does not wait for it again.
        self.running = None;
        self.rooms.clear();
    }

    /// The next send to finish; pending while none runs.
    pub async fn next(&mut self) -> Sent {
        let next = match self.running.as_mut() {
            Some(running) if !running.is_empty() => running.next().await,
            _ => None,
        };
        match next {
            Some(sent) => {
                if let Some(last) = self.rooms.get_mut(&sent.room) {
                    last.running -= 1;
                    if last.running == 0 {
                        self.rooms.remove(&sent.room);
                    }
                }
                sent
            }
            None => std::future::pending().await,
        }
    }
}
