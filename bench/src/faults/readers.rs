//! Readers that misbehave: members that stop reading (slow readers), and every socket
//! reconnecting at once (a reconnect storm); both must resume from their seq without a gap.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Result};
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::Message;

use super::ledger::samples;
use super::node::{tag, Node};
use super::raw::{client_frame, read_frame, read_http_head, upgrade_request};
use super::{Profile, Row};
use crate::client::{livechat_world, ws_open, Rest, Ws};
use crate::proto::find_marker;
use crate::stats::{now_ns, Hist};

/// A socket subscribed to `room` that answers nothing and reads nothing after its
/// `subscribed`, with a small receive buffer so its backlog reaches the server's queue soon.
async fn silent_reader(addr: SocketAddr, cookie: &str, room: &str) -> Result<(TcpStream, i64)> {
    let s = TcpSocket::new_v4()?;
    s.set_recv_buffer_size(4096)?;
    let mut tcp = s.connect(addr).await?;
    tcp.write_all(upgrade_request(addr, cookie).as_bytes())
        .await?;
    read_http_head(&mut tcp).await?;
    let sub = json!({"type": "subscribe", "room_id": room, "ref": "s"}).to_string();
    tcp.write_all(&client_frame(0x1, sub.as_bytes(), true))
        .await?;
    // Read frames until `subscribed` (its last_seq is where a resume will start).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if Instant::now() > deadline {
            bail!("no subscribed frame");
        }
        let (op, payload) = read_frame(&mut tcp).await?;
        if op == 0x1 {
            let v: Value = serde_json::from_slice(&payload).unwrap_or(Value::Null);
            if v["type"] == "subscribed" {
                return Ok((tcp, v["last_seq"].as_i64().unwrap_or(0)));
            }
        }
    }
}

/// Message size in the slow-reader scenario: large enough that a silent reader's backlog
/// outgrows the kernel's socket buffers within seconds.
const MESSAGE_BYTES: usize = 1_000;

/// Members of one room reading as fast as they can, while a publisher sends at `rate`: first
/// alone, then with `slow` of them that stop reading. The others' p99 is compared; the server
/// must close the silent ones (4008) and they must resume without a gap.
pub async fn slow_readers(bin: &Path, work: &Path, p: &Profile) -> Result<Row> {
    let queue = "128";
    let mut node = Node::start_new(
        bin,
        &work.join("slow-readers"),
        vec![("LIVECHAT_LIMITS__OUTBOUND_QUEUE_FRAMES", queue)],
    )
    .await?;
    let addr = node.addr();
    let t = node.target();
    let world = Arc::new(livechat_world(addr, 8, 1, &tag()).await?);
    let room = world.rooms[0].clone();
    let hist = Arc::new(Hist::new());
    let received = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let fast = p.slow_members - p.slow;
    let mut readers = Vec::new();
    for i in 0..fast {
        let ws = crate::client::open(&t, &world, i, Some(0), false).await?;
        let (hist, received, stop) = (hist.clone(), received.clone(), stop.clone());
        readers.push(tokio::spawn(read_latencies(ws, i, hist, received, stop)));
    }
    let publisher = ws_open(&t, 9_999, "/api/ws/stream", Some(&world.cookies[0])).await?;
    let publisher = Arc::new(tokio::sync::Mutex::new(publisher));
    let phase = |secs: f64| {
        let (publisher, room, rate) = (publisher.clone(), room.clone(), p.slow_rate);
        async move {
            let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
            let end = Instant::now() + Duration::from_secs_f64(secs);
            let mut n = 0u64;
            let mut ws = publisher.lock().await;
            while Instant::now() < end {
                tick.tick().await;
                n += 1;
                let content = crate::proto::content(now_ns(), MESSAGE_BYTES);
                let f = json!({"type": "send", "room_id": room, "content": content, "client_msg_id": format!("p{}-{n}", now_ns())});
                ws.send(Message::text(f.to_string())).await?;
                // Acks are read (and dropped) so the publisher never becomes a slow reader.
                while let Ok(Some(Ok(_))) = tokio::time::timeout(Duration::ZERO, ws.next()).await {}
            }
            anyhow::Ok(n)
        }
    };
    let closes_4008 = |text: &str| {
        samples(text, "livechat_websocket_closes_total{code=\"4008\"}").sum::<f64>() as u64
    };
    // The server's count of 4008 closes, polled through the whole scenario (so both phases
    // carry the same polling load).
    let closes = Arc::new(AtomicU64::new(0));
    let poller = {
        let (closes, rest) = (closes.clone(), Rest::new(addr));
        tokio::spawn(async move {
            loop {
                if let Ok((_, text, _)) = rest
                    .call(reqwest::Method::GET, "/metrics", None, None)
                    .await
                {
                    closes.store(closes_4008(&text), Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let publish = |secs: f64| async move {
        let mut sent = 0;
        let t0 = Instant::now();
        while t0.elapsed().as_secs_f64() < secs {
            sent += phase(0.1).await?;
        }
        anyhow::Ok(sent)
    };

    // Phase 1: everyone reads.
    publish(2.0).await?;
    hist.reset();
    publish(p.slow_secs).await?;
    let alone = hist.summary();
    // Phase 2: the silent ones join, and stay silent.
    let mut silent = Vec::new();
    for i in 0..p.slow {
        silent.push(
            silent_reader(
                addr,
                &world.cookies[(fast + i) % world.cookies.len()],
                &room,
            )
            .await?,
        );
    }
    let before = closes.load(Ordering::Relaxed);
    hist.reset();
    let t_slow = Instant::now();
    // At least the phase's length, and on until the server has closed every silent one (their
    // backlog must first fill the kernel's buffers, then the server's queue), at most 30 s.
    let mut sent = 0;
    let mut all_closed_after = None;
    while t_slow.elapsed().as_secs_f64() < p.slow_secs
        || (all_closed_after.is_none() && t_slow.elapsed() < Duration::from_secs(30))
    {
        sent += phase(0.1).await?;
        if all_closed_after.is_none() && closes.load(Ordering::Relaxed) >= before + p.slow as u64 {
            all_closed_after = Some(t_slow.elapsed());
        }
    }
    let with_slow = hist.summary();
    stop.store(true, Ordering::Relaxed);
    for r in readers {
        r.abort();
    }
    // The silent ones come back and resume from where they stopped reading.
    let (mut resumed_ok, mut gaps, mut repeated) = (0usize, 0u64, 0u64);
    for (i, (tcp, since)) in silent.into_iter().enumerate() {
        drop(tcp);
        let mut ws = ws_open(&t, 20_000 + i, "/api/ws/stream", Some(&world.cookies[0])).await?;
        let r = resume(&mut ws, &room, since).await?;
        gaps += r.missing;
        repeated += r.repeated;
        resumed_ok += r.clean as usize;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    poller.abort();
    let closed = closes.load(Ordering::Relaxed) - before;
    node.stop().await;
    let p99_change = (with_slow.p99_ms / alone.p99_ms.max(1e-3) - 1.0) * 100.0;
    let closed_in = all_closed_after.map(|d| d.as_secs_f64());
    Ok(Row {
        scenario: "slow readers".into(),
        load: format!(
            "1 room, {} members reading, {:.0} msg/s of {MESSAGE_BYTES} B: {:.0} s alone, then {} sent with the silent ones in",
            fast, p.slow_rate, p.slow_secs, sent
        ),
        faults: format!("{} members stop reading (4 KiB receive buffer, server queue {queue} frames)", p.slow),
        lost: Some(gaps),
        duplicated: Some(repeated),
        recovery: match closed_in {
            Some(s) => format!("all {} closed (4008) {:.1} s after they stopped reading; {}/{} resumed without a gap", p.slow, s, resumed_ok, p.slow),
            None => format!("{closed}/{} closed within 60 s", p.slow),
        },
        passed: closed as usize >= p.slow
            && closed_in.is_some_and(|s| s <= 10.0)
            && resumed_ok == p.slow
            && gaps == 0
            && repeated == 0
            && with_slow.count > 0
            && p99_change <= 10.0 + p.p99_slack_pct,
        notes: format!(
            "others' delivery p99 {:.2} ms alone, {:.2} ms with the silent ones ({:+.0} %)",
            alone.p99_ms, with_slow.p99_ms, p99_change
        ),
        detail: json!({"alone": alone, "with_slow": with_slow, "closed": closed, "closed_after_s": closed_in,
            "resumed": resumed_ok, "gaps": gaps, "repeated": repeated, "received": received.load(Ordering::Relaxed)}),
    })
}

async fn read_latencies(
    mut ws: Ws,
    i: usize,
    hist: Arc<Hist>,
    received: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
) {
    while !stop.load(Ordering::Relaxed) {
        match ws.next().await {
            Some(Ok(Message::Text(t))) => {
                if let Some(sent) = find_marker(t.as_str()) {
                    hist.record_ns(i, now_ns().saturating_sub(sent));
                    received.fetch_add(1, Ordering::Relaxed);
                }
            }
            Some(Ok(_)) => {}
            _ => return,
        }
    }
}

/// What a resume brought: whether every seq after `since` up to the resume point came once
/// and in order, how many were missing, how many came again.
#[derive(Default)]
struct Resumed {
    clean: bool,
    missing: u64,
    repeated: u64,
}

/// Subscribes with `since_seq` and reads until `resumed`.
async fn resume(ws: &mut Ws, room: &str, since: i64) -> Result<Resumed> {
    ws.send(Message::text(
        json!({"type": "subscribe", "room_id": room, "since_seq": since, "ref": "r"}).to_string(),
    ))
    .await?;
    let mut next = since + 1;
    let (mut missing, mut repeated) = (0u64, 0u64);
    let mut in_order = true;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let m = tokio::time::timeout_at(deadline.into(), ws.next())
            .await
            .map_err(|_| anyhow!("no resumed frame within 60 s"))?;
        let Some(Ok(Message::Text(t))) = m else {
            if matches!(m, Some(Ok(_))) {
                continue;
            }
            bail!("connection lost while resuming");
        };
        let v: Value = serde_json::from_str(t.as_str()).unwrap_or(Value::Null);
        if v["type"] == "resumed" {
            let last = v["last_seq"].as_i64().unwrap_or(0);
            missing += (last + 1 - next).max(0) as u64;
            return Ok(Resumed {
                clean: in_order && missing == 0 && repeated == 0,
                missing,
                repeated,
            });
        }
        if let (Some(seq), true) = (v["seq"].as_i64(), v["event_type"] == "MESSAGE_CREATED") {
            if seq < next {
                repeated += 1;
                continue;
            }
            if seq != next {
                in_order = false;
                missing += (seq - next) as u64;
            }
            next = seq + 1;
        }
    }
}

/// `storm_sockets` sockets over `storm_rooms` rooms note where they are, all disconnect, the
/// rooms move on by `storm_missed` messages each, and every socket comes back at once with
/// `since_seq`: how many resume without a gap, and how long until the last one has.
pub async fn reconnect_storm(bin: &Path, work: &Path, p: &Profile) -> Result<Row> {
    let mut node = Node::start_new(bin, &work.join("reconnect-storm"), vec![]).await?;
    let addr = node.addr();
    let t = node.target();
    let world = Arc::new(livechat_world(addr, 16, p.storm_rooms, &tag()).await?);
    // Where every room is now.
    let rest = Rest::new(addr);
    let mut since = Vec::new();
    for r in &world.rooms {
        let (_, text, _) = rest
            .call(
                reqwest::Method::GET,
                &format!("/api/rooms/get-room/{r}"),
                Some(&world.cookies[0]),
                None,
            )
            .await?;
        let v: Value = serde_json::from_str(&text)?;
        since.push(v["last_seq"].as_i64().unwrap_or(0));
    }
    // Messages the sockets miss while away.
    let mut publisher = ws_open(&t, 0, "/api/ws/stream", Some(&world.cookies[0])).await?;
    for (ri, room) in world.rooms.iter().enumerate() {
        for k in 0..p.storm_missed {
            let cid = format!("s{ri}-{k}");
            let f = json!({"type": "send", "room_id": room, "content": format!("missed {cid}"), "client_msg_id": cid, "ref": cid});
            publisher.send(Message::text(f.to_string())).await?;
        }
    }
    let mut acks = 0;
    while acks < p.storm_rooms * p.storm_missed {
        match tokio::time::timeout(Duration::from_secs(30), publisher.next()).await {
            Ok(Some(Ok(Message::Text(t)))) if t.as_str().contains("\"type\":\"ack\"") => acks += 1,
            Ok(Some(Ok(_))) => {}
            _ => bail!("publisher lost its acks ({acks} received)"),
        }
    }
    let t0 = Instant::now();
    let results: Vec<Result<Resumed>> = futures::stream::iter(0..p.storm_sockets)
        .map(|i| {
            let (t, world, since) = (t.clone(), world.clone(), since.clone());
            async move {
                let r = i % world.rooms.len();
                let mut ws = ws_open(
                    &t,
                    i + 1,
                    "/api/ws/stream",
                    Some(&world.cookies[i % world.cookies.len()]),
                )
                .await?;
                let out = resume(&mut ws, &world.rooms[r], since[r]).await;
                let _ = ws.close(None).await;
                out
            }
        })
        .buffer_unordered(p.storm_sockets)
        .collect()
        .await;
    let took = t0.elapsed().as_secs_f64();
    node.stop().await;
    let ok = results
        .iter()
        .filter(|r| r.as_ref().is_ok_and(|r| r.clean))
        .count();
    let failed: Vec<String> = results
        .iter()
        .filter_map(|r| r.as_ref().err().map(|e| format!("{e:#}")))
        .take(3)
        .collect();
    let resumed = || results.iter().filter_map(|r| r.as_ref().ok());
    let missing: u64 = resumed().map(|r| r.missing).sum();
    let repeated: u64 = resumed().map(|r| r.repeated).sum();
    let share = ok as f64 / p.storm_sockets as f64;
    Ok(Row {
        scenario: "reconnect storm".into(),
        load: format!(
            "{} sockets in {} rooms, {} missed messages per room",
            p.storm_sockets, p.storm_rooms, p.storm_missed
        ),
        faults: format!("all {} reconnect at once with since_seq", p.storm_sockets),
        lost: Some(missing),
        duplicated: Some(repeated),
        recovery: format!(
            "{ok}/{} ({:.1} %) resumed without a gap, the last after {:.1} s",
            p.storm_sockets,
            share * 100.0,
            took
        ),
        passed: share >= 0.99 && missing == 0 && repeated == 0,
        notes: if failed.is_empty() {
            String::new()
        } else {
            format!("failures: {}", failed.join("; "))
        },
        detail: json!({"sockets": p.storm_sockets, "resumed": ok, "secs": took, "missing": missing}),
    })
}
