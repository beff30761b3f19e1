//! The ledger: every acknowledged send (room, seq, message id, hash of the body), kept by
//! senders that behave like a careful client (one send in flight per socket; after a lost
//! connection, or an answer `unavailable`, they send the unacknowledged message again with the
//! same `client_msg_id`), and the verification of a store against it.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Result};
use futures::SinkExt;
use serde::Serialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tokio_tungstenite::tungstenite::Message;

use crate::client::{wait_text, ws_open, Rest, Target, World};
use crate::proto::Proto;

/// One acknowledged send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acked {
    pub seq: i64,
    pub message_id: String,
    pub body_sha: [u8; 32],
}

/// What the senders saw.
#[derive(Default)]
pub struct Ledger {
    /// room → client_msg_id → the first acknowledgement.
    acked: Mutex<HashMap<String, HashMap<String, Acked>>>,
    pub sends: AtomicU64,
    /// Sends repeated after a lost connection (same `client_msg_id`).
    pub resent: AtomicU64,
    /// Acknowledgements of a repeat that named another seq or id than the first: a duplicate.
    pub conflicting_acks: AtomicU64,
    /// Error frames answering a send, other than `unavailable` (the ledger's sends are all
    /// valid: each is a failure).
    pub refused: AtomicU64,
    /// Sends answered `unavailable` (a dependency down), sent again after a pause.
    pub unavailable: AtomicU64,
    pub reconnects: AtomicU64,
}

fn sha(body: &str) -> [u8; 32] {
    Sha256::digest(body.as_bytes()).into()
}

impl Ledger {
    fn record(&self, room: &str, cid: &str, ack: Acked) {
        let mut all = self.acked.lock().unwrap_or_else(|p| p.into_inner());
        let room = all.entry(room.to_string()).or_default();
        match room.get(cid) {
            Some(first) if *first != ack => {
                self.conflicting_acks.fetch_add(1, Ordering::Relaxed);
            }
            Some(_) => {}
            None => {
                room.insert(cid.to_string(), ack);
            }
        }
    }

    pub fn acked_count(&self) -> u64 {
        let all = self.acked.lock().unwrap_or_else(|p| p.into_inner());
        all.values().map(|r| r.len() as u64).sum()
    }
}

/// Sends from socket `idx` (user `idx % users`) into `room` until `stop`, one at a time,
/// reconnecting and resending through server restarts.
pub async fn sender(
    t: Target,
    world: Arc<World>,
    ledger: Arc<Ledger>,
    idx: usize,
    room: usize,
    stop: Arc<AtomicBool>,
) {
    let room_id = world.rooms[room].clone();
    let cookie = world.cookies[idx % world.cookies.len()].clone();
    let mut n = 0u64;
    // The message waiting for its acknowledgement, kept across reconnects.
    let mut pending: Option<(String, String)> = None;
    while !stop.load(Ordering::Relaxed) {
        let Ok(mut ws) = ws_open(&t, idx, "/api/ws/stream", Some(&cookie)).await else {
            // The server is down (being restarted): try again shortly.
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        loop {
            if stop.load(Ordering::Relaxed) && pending.is_none() {
                let _ = ws.close(None).await;
                return;
            }
            let (cid, body) = match &pending {
                Some(p) => {
                    ledger.resent.fetch_add(1, Ordering::Relaxed);
                    p.clone()
                }
                None => {
                    n += 1;
                    let cid = format!("f{idx}-{n}");
                    let body = format!("fault suite {cid} {}", "x".repeat(40));
                    ledger.sends.fetch_add(1, Ordering::Relaxed);
                    (cid, body)
                }
            };
            pending = Some((cid.clone(), body.clone()));
            let frame = json!({"type": "send", "room_id": room_id, "content": body, "client_msg_id": cid, "ref": cid});
            if ws.send(Message::text(frame.to_string())).await.is_err() {
                break;
            }
            match ack_for(&mut ws, &cid).await {
                Ok(Answer::Ack(v)) => {
                    let ack = Acked {
                        seq: v["seq"].as_i64().unwrap_or(-1),
                        message_id: v["message_id"].as_str().unwrap_or_default().to_string(),
                        body_sha: sha(&body),
                    };
                    ledger.record(&room_id, &cid, ack);
                    pending = None;
                }
                Ok(Answer::Error(code)) if code == "unavailable" => {
                    // Try again shortly, with the same client_msg_id.
                    ledger.unavailable.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(UNAVAILABLE_PAUSE).await;
                }
                Ok(Answer::Error(_)) => {
                    // Refused: counted, not retried.
                    ledger.refused.fetch_add(1, Ordering::Relaxed);
                    pending = None;
                }
                Err(_) => break,
            }
        }
        ledger.reconnects.fetch_add(1, Ordering::Relaxed);
    }
}

/// How long a sender waits before sending again a message answered `unavailable`.
const UNAVAILABLE_PAUSE: Duration = Duration::from_millis(100);

/// What a send was answered.
enum Answer {
    Ack(Value),
    /// An error frame, with its code.
    Error(String),
}

/// The answer to the send `cid`, or Err when the connection is lost or nothing comes in time.
async fn ack_for(ws: &mut crate::client::Ws, cid: &str) -> Result<Answer> {
    wait_text(ws, Proto::Livechat, "acknowledgement", |t| {
        let v: Value = serde_json::from_str(t).unwrap_or(Value::Null);
        (v["ref"] == cid).then(|| match v["type"].as_str() {
            Some("ack") => Answer::Ack(v),
            _ => Answer::Error(v["code"].as_str().unwrap_or_default().to_string()),
        })
    })
    .await
}

/// A store read back and compared with the ledger, per room and in total.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Verdict {
    pub rooms: usize,
    pub acked: u64,
    pub stored: u64,
    /// Acknowledged, and missing from the store (or stored with another seq, id or body).
    pub lost: u64,
    /// `client_msg_id`s stored more than once, plus acks that contradicted an earlier one.
    pub duplicated: u64,
    /// Seqs missing between 1 and a room's highest.
    pub gaps: u64,
    /// Stored messages no acknowledgement names (sends whose ack the kill cut off: allowed).
    pub unacked_stored: u64,
    /// Whether each room's checksum over (seq, id, body hash) of the acknowledged messages
    /// equals the store's over the same messages.
    pub checksums_match: bool,
    /// Rooms whose message count in analytics (`get-room-stats`) differs from the history's.
    pub analytics_mismatches: u64,
    /// The first such room's counts, `(analytics, history)` (which way it is off says where
    /// to look: a record counted twice, or one not counted yet).
    pub analytics_first_mismatch: Option<(Option<u64>, u64)>,
    /// How long after the consumer lag reached 0 the last room's analytics count was right.
    pub analytics_settled_ms: u64,
}

/// How long analytics may take to count what history has, once the consumer lag is 0: past
/// the sequencer's transaction timeout (10 s) and the broker's check for expired transactions
/// (every 10 s by default), with room to spare.
const ANALYTICS_SETTLE_LIMIT: std::time::Duration = std::time::Duration::from_secs(60);

impl Verdict {
    pub fn clean(&self) -> bool {
        self.lost == 0
            && self.duplicated == 0
            && self.gaps == 0
            && self.checksums_match
            && self.analytics_mismatches == 0
    }
}

/// Reads every room of the ledger back through the history API (pages by seq) and compares.
pub async fn verify(addr: SocketAddr, cookie: &str, ledger: &Ledger) -> Result<Verdict> {
    let rest = Rest::new(addr);
    let acked = ledger
        .acked
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let mut v = Verdict {
        rooms: acked.len(),
        duplicated: ledger.conflicting_acks.load(Ordering::Relaxed),
        checksums_match: true,
        ..Default::default()
    };
    for (room, by_cid) in &acked {
        let stored = read_room(&rest, cookie, room).await?;
        v.acked += by_cid.len() as u64;
        v.stored += stored.len() as u64;
        // Seqs dense from 1.
        let mut expect = 1;
        for seq in stored.keys() {
            v.gaps += (seq - expect).max(0) as u64;
            expect = seq + 1;
        }
        let mut by_stored_cid: HashMap<&str, u64> = HashMap::new();
        for m in stored.values() {
            if let Some(c) = m.cid.as_deref() {
                *by_stored_cid.entry(c).or_default() += 1;
            }
        }
        v.duplicated += by_stored_cid.values().map(|n| n - 1).sum::<u64>();
        v.unacked_stored += by_stored_cid
            .keys()
            .filter(|c| !by_cid.contains_key(**c))
            .count() as u64;
        let (mut mine, mut theirs) = (Sha256::new(), Sha256::new());
        let mut ordered: Vec<(&String, &Acked)> = by_cid.iter().collect();
        ordered.sort_by_key(|(_, a)| a.seq);
        for (cid, a) in ordered {
            mine.update(a.seq.to_be_bytes());
            mine.update(a.message_id.as_bytes());
            mine.update(a.body_sha);
            match stored.get(&a.seq) {
                Some(s) if s.cid.as_deref() == Some(cid) && s.id == a.message_id => {
                    theirs.update(s.seq.to_be_bytes());
                    theirs.update(s.id.as_bytes());
                    theirs.update(s.body_sha);
                }
                _ => v.lost += 1,
            }
        }
        if mine.finalize() != theirs.finalize() {
            v.checksums_match = false;
        }
        // Analytics counts each message once, however often its record was delivered. It is
        // read from the log, and a process killed inside a Kafka transaction leaves it open
        // until the transaction timeout aborts it: `read_committed` readers (and the consumer
        // lag, measured to the last stable offset) stop before it, so what was committed after
        // it reaches analytics only then. Waited for, up to ANALYTICS_SETTLE_LIMIT.
        let settling = std::time::Instant::now();
        loop {
            let (s, t, _) = rest
                .call(
                    reqwest::Method::GET,
                    &format!("/api/analytics/get-room-stats?room_id={room}"),
                    Some(cookie),
                    None,
                )
                .await?;
            let counted = serde_json::from_str::<Value>(&t)
                .ok()
                .and_then(|v| v["total_messages"].as_u64());
            if s == 200 && counted == Some(stored.len() as u64) {
                let ms = settling.elapsed().as_millis() as u64;
                v.analytics_settled_ms = v.analytics_settled_ms.max(ms);
                break;
            }
            if settling.elapsed() > ANALYTICS_SETTLE_LIMIT {
                v.analytics_mismatches += 1;
                v.analytics_first_mismatch
                    .get_or_insert((counted, stored.len() as u64));
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        }
    }
    Ok(v)
}

struct Stored {
    seq: i64,
    id: String,
    cid: Option<String>,
    body_sha: [u8; 32],
}

/// Every message of a room, by seq, through `get-messages?after_seq=` pages.
async fn read_room(rest: &Rest, cookie: &str, room: &str) -> Result<BTreeMap<i64, Stored>> {
    let mut out = BTreeMap::new();
    let mut after = 0i64;
    loop {
        let (s, t, _) = rest
            .call(
                reqwest::Method::GET,
                &format!("/api/messages/get-messages/{room}?after_seq={after}&limit=200"),
                Some(cookie),
                None,
            )
            .await?;
        if s != 200 {
            bail!("reading room {room} after seq {after}: {s} {t}");
        }
        let page: Vec<Value> = serde_json::from_str(&t)?;
        let Some(last) = page.last().and_then(|m| m["seq"].as_i64()) else {
            return Ok(out);
        };
        for m in &page {
            let seq = m["seq"].as_i64().unwrap_or(-1);
            out.insert(
                seq,
                Stored {
                    seq,
                    id: m["id"].as_str().unwrap_or_default().to_string(),
                    cid: m["client_msg_id"].as_str().map(str::to_string),
                    body_sha: sha(m["content"].as_str().unwrap_or_default()),
                },
            );
        }
        after = last;
    }
}

/// The values of the samples in Prometheus text whose line starts with `prefix` (a metric's
/// name, with `{` and labels to narrow it).
pub fn samples<'a>(text: &'a str, prefix: &'a str) -> impl Iterator<Item = f64> + 'a {
    text.lines()
        .filter(move |l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
}

/// Waits until every consumer group has caught up (`livechat_consumer_lag` all 0 in
/// `/metrics`), polling; never a fixed sleep. Returns how long it took.
pub async fn wait_for_lag_zero(addr: SocketAddr, limit: Duration) -> Result<Duration> {
    let rest = Rest::new(addr);
    let t0 = std::time::Instant::now();
    loop {
        let (s, text, _) = rest
            .call(reqwest::Method::GET, "/metrics", None, None)
            .await?;
        let lagging = samples(&text, "livechat_consumer_lag{")
            .filter(|v| *v != 0.0)
            .count();
        if s == 200 && lagging == 0 {
            return Ok(t0.elapsed());
        }
        if t0.elapsed() > limit {
            bail!("consumer lag not 0 after {limit:?} ({lagging} partitions behind)");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
