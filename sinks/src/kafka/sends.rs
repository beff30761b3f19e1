//! The ingress side of the distributed send path. A send becomes a command on
//! `chat.message-commands.v1`, keyed by room, so the one sequencer owning the room's partition
//! sees the room's sends in order ([`super::sequencer`]). It is acknowledged when the sequencer's
//! receipt for it arrives on `chat.message-receipts.v1`: the receipt is written in the same
//! transaction as the sequenced event, so once it is seen the message is in the log, durable.
//!
//! Each process reads only the receipts partition its own id hashes to (receipts are keyed by
//! that id) and keeps the receipts it waits for in a map by message id.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use async_trait::async_trait;
use livechat_core::error::{StoreError, StoreResult};
use livechat_core::model::SendReceipt;
use livechat_core::ports::{MessageEventsFn, NewMessage, Placed, Sequencing};
use livechat_schemas::{
    codec, RoomEvent, TopicEvent, MESSAGE_COMMANDS_TOPIC, MESSAGE_RECEIPTS_TOPIC,
};
use tokio::sync::oneshot;
use uuid::Uuid;

use super::KafkaLog;
use crate::embedded::kafka_partition;

/// Header naming the process that waits for a receipt (commands and receipts).
pub(super) const REPLY_TO: &str = "reply_to";
/// Header of a receipt: the message id of the send it answers.
pub(super) const REQUEST: &str = "request";
/// Header of a receipt: "1" when the send was a retry of an earlier one.
pub(super) const DUPLICATE: &str = "duplicate";
/// How long a send (its command produced, then its receipt) may take before it is answered 503
/// (a client retry with the same `client_msg_id` then gets the first message, if it was
/// sequenced after all). Longer than a partition takes to move when its sequencer dies: the
/// group notices within its session timeout (6 s), and the broker aborts the dead one's open
/// transaction (10 s, checked every 10 s).
const RECEIPT_TIMEOUT: Duration = Duration::from_secs(30);

type Waiting = Mutex<HashMap<String, oneshot::Sender<(RoomEvent, bool)>>>;

pub struct KafkaSends {
    log: Arc<KafkaLog>,
    node: String,
    waiting: Arc<Waiting>,
}

impl KafkaSends {
    /// Starts reading this process's receipts partition (from its end) and returns the send path.
    pub async fn start(log: Arc<KafkaLog>) -> anyhow::Result<Arc<KafkaSends>> {
        log.ensure_topics(&[MESSAGE_COMMANDS_TOPIC, MESSAGE_RECEIPTS_TOPIC])
            .await
            .map_err(|e| anyhow::anyhow!("creating the sequencer's topics: {e}"))?;
        let node = Uuid::new_v4().to_string();
        let partition = kafka_partition(&node, log.partitions);
        let mut receipts = log
            .tail(MESSAGE_RECEIPTS_TOPIC, &[partition])
            .await
            .map_err(|e| anyhow::anyhow!("reading the message receipts: {e}"))?;
        let waiting = Arc::new(Waiting::default());
        let weak: Weak<Waiting> = Arc::downgrade(&waiting);
        let me = node.clone();
        tokio::spawn(async move {
            loop {
                let batch = receipts.poll(512, Duration::from_millis(500)).await;
                let Some(waiting) = weak.upgrade() else {
                    return; // the send path is gone
                };
                let batch = match batch {
                    Ok(b) => b,
                    Err(e) => {
                        tracing::warn!(error = %e, "Reading message receipts failed; retrying.");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        continue;
                    }
                };
                for entry in batch {
                    let header = |k: &str| {
                        entry
                            .headers
                            .iter()
                            .find(|(h, _)| h == k)
                            .map(|(_, v)| v.as_str())
                    };
                    if header(REPLY_TO) != Some(me.as_str()) {
                        continue; // another process's (same partition)
                    }
                    let (Some(request), duplicate) =
                        (header(REQUEST), header(DUPLICATE) == Some("1"))
                    else {
                        continue;
                    };
                    let sender = waiting
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .remove(request);
                    let Some(sender) = sender else {
                        continue; // the send gave up waiting
                    };
                    match codec::decode(&entry.payload) {
                        Ok(TopicEvent::Room(ev)) => {
                            let _ = sender.send((ev, duplicate));
                        }
                        other => tracing::error!(
                            request,
                            ?other,
                            "A message receipt that is not a room event."
                        ),
                    }
                }
            }
        });
        Ok(Arc::new(KafkaSends { log, node, waiting }))
    }
}

/// Forgets a waiting send when it returns, whatever the outcome.
struct Unwait<'a>(&'a Waiting, String);

impl Drop for Unwait<'_> {
    fn drop(&mut self) {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.1);
    }
}

#[async_trait]
impl Sequencing for KafkaSends {
    async fn send_message(
        &self,
        msg: NewMessage,
        events: MessageEventsFn,
        mut placed: Placed,
    ) -> StoreResult<SendReceipt> {
        let mut commands = events(0).map_err(StoreError::Other)?;
        for c in &mut commands {
            c.topic = MESSAGE_COMMANDS_TOPIC.to_string();
            c.headers.push((REPLY_TO.to_string(), self.node.clone()));
        }
        let request = msg.message_id.to_string();
        let (tx, rx) = oneshot::channel();
        self.waiting
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(request.clone(), tx);
        let _unwait = Unwait(&self.waiting, request);
        // One deadline for the whole send, the command's produce included: a broker slow to
        // take it (the producer itself gives up after 15 s, see `producer`) must not hold the client
        // past the time it is promised an answer.
        let sent = async {
            // Placed once the producer holds the command: the room's partition, read by its
            // one sequencer, keeps the order.
            self.log.append_placed(&commands, &mut placed).await?;
            rx.await.map_err(|_| {
                StoreError::Unavailable(anyhow::anyhow!("the receipts reader stopped"))
            })
        };
        let (ev, duplicate) =
            tokio::time::timeout(RECEIPT_TIMEOUT, sent)
                .await
                .map_err(|_| {
                    StoreError::Unavailable(anyhow::anyhow!(
                        "no receipt from the sequencer within {RECEIPT_TIMEOUT:?}"
                    ))
                })??;
        receipt_of(&ev, duplicate, &msg.content)
    }
}

/// The send's receipt from its sequenced event. The event's text is sealed (this reader holds
/// no keys): the receipt carries the text of the send it answers, which for a retry of the same
/// `client_msg_id` is the text it retries.
fn receipt_of(ev: &RoomEvent, duplicate: bool, text: &str) -> StoreResult<SendReceipt> {
    let bad = |what: &str| StoreError::Other(anyhow::anyhow!("receipt without {what}: {ev:?}"));
    Ok(SendReceipt {
        message_id: ev
            .message_id
            .as_deref()
            .and_then(|m| Uuid::parse_str(m).ok())
            .ok_or_else(|| bad("message id"))?,
        seq: ev.seq.ok_or_else(|| bad("seq"))?,
        created_at: livechat_core::from_ms(
            ev.message_created_at.ok_or_else(|| bad("creation time"))?,
        ),
        content: match (&ev.content, &ev.sealed) {
            (Some(clear), _) => clear.clone(),
            (None, Some(_)) => text.to_string(),
            (None, None) => return Err(bad("content")),
        },
        duplicate,
    })
}
