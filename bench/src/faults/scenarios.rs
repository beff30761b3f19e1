//! The fault and abuse scenarios, each against a LiveChat process of its own (embedded mode),
//! each ending in a [`Row`] of figures: the load held, the faults injected or bad inputs tried,
//! what was lost or duplicated (read back from the store against the ledger), recovery time.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use futures::{SinkExt, StreamExt};
use serde::Serialize;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::Message;

use super::ledger::{self, Ledger, Verdict};
use super::Profile;
use crate::client::{livechat_world, ws_open, Rest, Target, World, Ws};
use crate::proto::{find_marker, Proto};
use crate::servers::{free_port, start_livechat_at, Server};
use crate::stats::{now_ns, Hist};

/// One line of the report.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Row {
    pub scenario: String,
    pub load: String,
    pub faults: String,
    pub lost: Option<u64>,
    pub duplicated: Option<u64>,
    pub recovery: String,
    pub passed: bool,
    pub notes: String,
    pub detail: Value,
}

/// A LiveChat process serving HTTP that the scenario may kill and start again on the same port
/// and data: embedded (`livechat serve`), or one role of distributed mode.
pub struct Node {
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
    args: Vec<String>,
    env: Vec<(String, String)>,
    server: Option<Server>,
}

impl Node {
    /// Embedded mode, in a fresh data directory, with extra environment.
    pub async fn start_new(bin: &Path, dir: &Path, env: Vec<(&str, &str)>) -> Result<Node> {
        let env = env
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Node::start_with(bin, dir, vec![], env).await
    }

    /// Any mode: `args` after the common ones (`--config FILE`, a role), and environment.
    pub async fn start_with(
        bin: &Path,
        dir: &Path,
        args: Vec<String>,
        env: Vec<(String, String)>,
    ) -> Result<Node> {
        let _ = std::fs::remove_dir_all(dir);
        let mut n = Node {
            bin: bin.to_path_buf(),
            dir: dir.to_path_buf(),
            port: free_port()?,
            args,
            env,
            server: None,
        };
        n.start().await?;
        Ok(n)
    }

    /// Starts the process; returns the milliseconds to its health endpoint's first 200.
    pub async fn start(&mut self) -> Result<f64> {
        let s = start_livechat_at(&self.bin, &self.dir, self.port, &self.args, &self.env).await?;
        self.server = Some(s.server);
        Ok(s.ready_ms)
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    pub fn target(&self) -> Target {
        Target {
            proto: Proto::Livechat,
            addr: self.addr(),
            other_nodes: vec![],
            src_ips: vec![],
            secret: String::new(),
        }
    }

    pub async fn sigkill(&mut self) {
        if let Some(s) = self.server.take() {
            s.kill().await;
        }
    }

    pub async fn stop(&mut self) {
        if let Some(s) = self.server.take() {
            let _ = s.stop(Duration::from_secs(10)).await;
        }
    }
}

fn tag() -> String {
    format!("{:x}", now_ns() ^ std::process::id() as u64)
}

fn verdict_row(row: &mut Row, v: &Verdict) {
    row.lost = Some(v.lost);
    row.duplicated = Some(v.duplicated);
    row.passed = v.clean();
}

// ------------------------------------------------------------------ load, with or without kills

/// What a ledgered load ended with.
pub struct Loaded {
    pub ledger: Arc<Ledger>,
    pub verdict: Verdict,
    pub held_secs: f64,
    /// What each injection returned (a recovery time in ms, for those that have one).
    pub recoveries: Vec<f64>,
    pub lag: Duration,
}

/// Senders running (one per socket, spread over the rooms of the world), recording into a
/// ledger; the scenario injects its faults while they run, then [`Load::finish`].
pub struct Load {
    t: Target,
    world: Arc<World>,
    ledger: Arc<Ledger>,
    stop: Arc<AtomicBool>,
    senders: Vec<tokio::task::JoinHandle<()>>,
    t0: Instant,
}

impl Load {
    pub fn start(t: &Target, world: Arc<World>, p: &Profile) -> Load {
        let ledger = Arc::new(Ledger::default());
        let stop = Arc::new(AtomicBool::new(false));
        let senders = (0..p.senders)
            .map(|i| {
                tokio::spawn(ledger::sender(
                    t.clone(),
                    world.clone(),
                    ledger.clone(),
                    i,
                    i % world.rooms.len(),
                    stop.clone(),
                ))
            })
            .collect();
        Load {
            t: t.clone(),
            world,
            ledger,
            stop,
            senders,
            t0: Instant::now(),
        }
    }

    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// Sleeps until `secs` after the start.
    pub async fn until(&self, secs: f64) {
        tokio::time::sleep_until((self.t0 + Duration::from_secs_f64(secs)).into()).await;
    }

    /// Runs on until `secs` after the start, stops the senders, waits for consumer lag 0 and
    /// reads every room back.
    pub async fn finish(self, secs: f64, recoveries: Vec<f64>) -> Result<Loaded> {
        self.until(secs).await;
        self.stop.store(true, Ordering::Relaxed);
        for s in self.senders {
            tokio::time::timeout(Duration::from_secs(60), s)
                .await
                .map_err(|_| anyhow!("a sender did not finish within 60 s of the end"))??;
        }
        let held_secs = self.t0.elapsed().as_secs_f64();
        let lag = ledger::wait_for_lag_zero(self.t.addr, Duration::from_secs(120)).await?;
        let verdict = ledger::verify(self.t.addr, &self.world.cookies[0], &self.ledger).await?;
        Ok(Loaded {
            ledger: self.ledger,
            verdict,
            held_secs,
            recoveries,
            lag,
        })
    }
}

/// The row of a ledgered load: its figures, and pass when the store matches the ledger and
/// no send was refused.
pub fn load_row(name: &str, faults: String, p: &Profile, l: &Loaded) -> Row {
    let acked = l.ledger.acked_count();
    let refused = l.ledger.refused.load(Ordering::Relaxed);
    let resent = l.ledger.resent.load(Ordering::Relaxed);
    let v = &l.verdict;
    let mut row = Row {
        scenario: name.into(),
        load: format!(
            "{} sockets in {} rooms, {:.0} s: {} acked sends ({:.0}/s)",
            p.senders,
            v.rooms,
            l.held_secs,
            acked,
            acked as f64 / l.held_secs
        ),
        faults,
        recovery: if l.recoveries.is_empty() {
            "–".into()
        } else {
            let mut r = l.recoveries.clone();
            r.sort_by(f64::total_cmp);
            format!(
                "back in service: median {:.0} ms, max {:.0} ms",
                r[r.len() / 2],
                r[r.len() - 1]
            )
        },
        notes: format!(
            "{resent} resent after a lost connection, {} stored without an ack, {refused} refused, seqs dense: {}, checksums match: {}, analytics counts match: {}; consumer lag 0 after {} ms",
            v.unacked_stored,
            if v.gaps == 0 { "yes" } else { "no" },
            if v.checksums_match { "yes" } else { "no" },
            if v.analytics_mismatches == 0 { "yes" } else { "no" },
            l.lag.as_millis()
        ),
        detail: json!({"verdict": v, "recoveries_ms": l.recoveries, "acked": acked, "refused": refused,
            "resent": resent, "reconnects": l.ledger.reconnects.load(Ordering::Relaxed), "secs": l.held_secs}),
        ..Default::default()
    };
    verdict_row(&mut row, v);
    row.passed &= refused == 0 && acked > 0;
    row
}

/// Senders in every room for `secs`, and `kills` SIGKILLs of the server spread over that time
/// (each followed by a restart on the same data); then every room read back and compared.
pub async fn sends_under_kills(
    bin: &Path,
    work: &Path,
    p: &Profile,
    kills: usize,
    secs: f64,
) -> Result<Row> {
    let name = if kills == 0 {
        "baseline load"
    } else {
        "server SIGKILL under load"
    };
    let mut node = Node::start_new(bin, &work.join(name.replace(' ', "-")), vec![]).await?;
    let world = Arc::new(livechat_world(node.addr(), 4, p.rooms, &tag()).await?);
    let load = Load::start(&node.target(), world, p);
    let mut recoveries = Vec::new();
    for at in uneven(kills, secs) {
        load.until(at).await;
        let killed = Instant::now();
        node.sigkill().await;
        node.start().await?;
        recoveries.push(killed.elapsed().as_secs_f64() * 1000.0);
    }
    let loaded = load.finish(secs, recoveries).await;
    node.stop().await;
    let faults = if kills == 0 {
        "none".into()
    } else {
        format!("{kills} × SIGKILL of the only process (recovery: SIGKILL → health 200)")
    };
    Ok(load_row(name, faults, p, &loaded?))
}

/// `n` moments spread over `secs` unevenly: never in step with the senders' rhythm.
pub fn uneven(n: usize, secs: f64) -> Vec<f64> {
    (0..n)
        .map(|k| secs * (k as f64 + 0.3 + 0.4 * ((k * 7919) % 11) as f64 / 11.0) / n as f64)
        .collect()
}

// ------------------------------------------------------------------ slow readers

/// A socket subscribed to `room` that answers nothing and reads nothing after its
/// `subscribed`, with a small receive buffer so its backlog reaches the server's queue soon.
async fn silent_reader(addr: SocketAddr, cookie: &str, room: &str) -> Result<(TcpStream, i64)> {
    let s = TcpSocket::new_v4()?;
    s.set_recv_buffer_size(4096)?;
    let mut tcp = s.connect(addr).await?;
    let key = "dGhlIHNhbXBsZSBub25jZQ==";
    let req = format!(
        "GET /api/ws/stream HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nOrigin: http://{addr}\r\nCookie: {cookie}\r\n\r\n"
    );
    tcp.write_all(req.as_bytes()).await?;
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
        text.lines()
            .find(|l| l.starts_with("livechat_websocket_closes_total{code=\"4008\"}"))
            .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .unwrap_or(0.0) as u64
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

// ------------------------------------------------------------------ reconnect storm

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

// ------------------------------------------------------------------ malformed input

/// One bad input and the answer it must get.
struct Bad {
    name: &'static str,
    /// Raw WebSocket frame bytes (client-masked unless the case is about masking), or None
    /// for a REST case.
    frame: Option<Vec<u8>>,
    rest: Option<(&'static str, String, String)>,
    expect: Expect,
}

#[derive(Debug, PartialEq)]
enum Expect {
    /// An error frame with this code, the socket still open.
    ErrorFrame(&'static str),
    /// A close frame with this code.
    Close(u16),
    /// An HTTP status with a JSON body.
    Status(u16),
}

/// Builds a WebSocket frame (FIN set) with a 4-byte mask when `masked`.
fn client_frame(opcode: u8, payload: &[u8], masked: bool) -> Vec<u8> {
    let mut f = vec![0x80 | opcode];
    let mask_bit = if masked { 0x80 } else { 0 };
    match payload.len() {
        n if n < 126 => f.push(mask_bit | n as u8),
        n if n < 65536 => {
            f.push(mask_bit | 126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            f.push(mask_bit | 127);
            f.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    if masked {
        let key = [0x37, 0xfa, 0x21, 0x3d];
        f.extend_from_slice(&key);
        f.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    } else {
        f.extend_from_slice(payload);
    }
    f
}

async fn read_http_head(tcp: &mut TcpStream) -> Result<String> {
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if tcp.read(&mut b).await? == 0 {
            bail!("connection closed during the handshake");
        }
        head.push(b[0]);
    }
    let head = String::from_utf8_lossy(&head).to_string();
    if !head.starts_with("HTTP/1.1 101") {
        bail!(
            "handshake refused: {}",
            head.lines().next().unwrap_or_default()
        );
    }
    Ok(head)
}

/// Reads one server frame: (opcode, payload).
async fn read_frame(tcp: &mut TcpStream) -> Result<(u8, Vec<u8>)> {
    let mut h = [0u8; 2];
    tcp.read_exact(&mut h).await?;
    let len = match h[1] & 0x7f {
        126 => {
            let mut l = [0u8; 2];
            tcp.read_exact(&mut l).await?;
            u16::from_be_bytes(l) as usize
        }
        127 => {
            let mut l = [0u8; 8];
            tcp.read_exact(&mut l).await?;
            u64::from_be_bytes(l) as usize
        }
        n => n as usize,
    };
    let mut payload = vec![0u8; len];
    tcp.read_exact(&mut payload).await?;
    Ok((h[0] & 0x0f, payload))
}

/// What the server answered one bad frame with.
async fn answer(addr: SocketAddr, cookie: &str, frame: &[u8]) -> Result<Expect> {
    let mut tcp = TcpStream::connect(addr).await?;
    let req = format!(
        "GET /api/ws/stream HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nOrigin: http://{addr}\r\nCookie: {cookie}\r\n\r\n"
    );
    tcp.write_all(req.as_bytes()).await?;
    read_http_head(&mut tcp).await?;
    tcp.write_all(frame).await?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (op, payload) = tokio::time::timeout_at(deadline.into(), read_frame(&mut tcp))
            .await
            .context("no answer within 10 s")?
            .context("connection ended without a close frame")?;
        match op {
            0x1 => {
                let v: Value = serde_json::from_slice(&payload).unwrap_or(Value::Null);
                if v["type"] == "error" {
                    let code = v["code"].as_str().unwrap_or_default().to_string();
                    return Ok(Expect::ErrorFrame(Box::leak(code.into_boxed_str())));
                }
            }
            0x8 if payload.len() >= 2 => {
                return Ok(Expect::Close(u16::from_be_bytes([payload[0], payload[1]])))
            }
            0x8 => return Ok(Expect::Close(1005)),
            _ => {}
        }
    }
}

/// Malformed frames and requests, each answered with its error frame, close code or HTTP
/// status, and the server healthy afterwards.
pub async fn malformed(bin: &Path, work: &Path) -> Result<Row> {
    let mut node = Node::start_new(bin, &work.join("malformed"), vec![]).await?;
    let addr = node.addr();
    let world: World = livechat_world(addr, 1, 1, &tag()).await?;
    let cookie = world.cookies[0].clone();
    let room = world.rooms[0].clone();
    let missing = "00000000-0000-7000-8000-000000000000";
    let text = |s: String| Some(client_frame(0x1, s.as_bytes(), true));
    let cases = vec![
        Bad {
            name: "text that is not JSON",
            frame: text("{not json".into()),
            rest: None,
            expect: Expect::ErrorFrame("bad_json"),
        },
        Bad {
            name: "unknown frame type",
            frame: text(json!({"type": "launch"}).to_string()),
            rest: None,
            expect: Expect::ErrorFrame("bad_frame"),
        },
        Bad {
            name: "send without content",
            frame: text(json!({"type": "send", "room_id": room}).to_string()),
            rest: None,
            expect: Expect::ErrorFrame("bad_frame"),
        },
        Bad {
            name: "empty message",
            frame: text(json!({"type": "send", "room_id": room, "content": "  "}).to_string()),
            rest: None,
            expect: Expect::ErrorFrame("invalid"),
        },
        Bad {
            name: "send to an unknown room",
            frame: text(json!({"type": "send", "room_id": missing, "content": "hi"}).to_string()),
            rest: None,
            expect: Expect::ErrorFrame("not_found"),
        },
        Bad {
            name: "room id that is not a UUID",
            frame: text(json!({"type": "subscribe", "room_id": "lobby"}).to_string()),
            rest: None,
            expect: Expect::ErrorFrame("invalid"),
        },
        Bad {
            name: "binary frame",
            frame: Some(client_frame(0x2, b"\x00\x01", true)),
            rest: None,
            expect: Expect::ErrorFrame("unsupported"),
        },
        Bad {
            name: "invalid UTF-8 in a text frame",
            frame: Some(client_frame(0x1, b"{\"type\":\"\xff\xfe\"}", true)),
            rest: None,
            expect: Expect::Close(1007),
        },
        Bad {
            name: "reserved opcode",
            frame: Some(client_frame(0x3, b"x", true)),
            rest: None,
            expect: Expect::Close(1002),
        },
        Bad {
            name: "RSV1 without an extension",
            frame: Some({
                let mut f = client_frame(0x1, b"{}", true);
                f[0] |= 0x40;
                f
            }),
            rest: None,
            expect: Expect::Close(1002),
        },
        Bad {
            name: "unmasked client frame",
            frame: Some(client_frame(0x1, b"{}", false)),
            rest: None,
            expect: Expect::Close(1002),
        },
        Bad {
            name: "continuation with nothing to continue",
            frame: Some(client_frame(0x0, b"x", true)),
            rest: None,
            expect: Expect::Close(1002),
        },
        Bad {
            name: "frame over the size limit",
            frame: text(format!(
                "{{\"type\":\"send\",\"content\":\"{}\"}}",
                "x".repeat(200_000)
            )),
            rest: None,
            expect: Expect::Close(1009),
        },
        Bad {
            name: "REST: body that is not JSON",
            frame: None,
            rest: Some((
                "POST",
                format!("/api/messages/create-message/{room}"),
                "{oops".into(),
            )),
            expect: Expect::Status(422),
        },
        Bad {
            name: "REST: body over the limit",
            frame: None,
            rest: Some((
                "POST",
                format!("/api/messages/create-message/{room}"),
                format!("{{\"content\":\"{}\"}}", "x".repeat(200_000)),
            )),
            expect: Expect::Status(413),
        },
        Bad {
            name: "REST: path id that is not a UUID",
            frame: None,
            rest: Some(("GET", "/api/rooms/get-room/lobby".into(), String::new())),
            expect: Expect::Status(422),
        },
        Bad {
            name: "REST: unknown room",
            frame: None,
            rest: Some((
                "GET",
                format!("/api/rooms/get-room/{missing}"),
                String::new(),
            )),
            expect: Expect::Status(404),
        },
        Bad {
            name: "REST: limit out of range",
            frame: None,
            rest: Some((
                "GET",
                format!("/api/messages/get-recent-messages/{room}?limit=100000"),
                String::new(),
            )),
            expect: Expect::Status(422),
        },
    ];
    let http = reqwest::Client::new();
    let mut wrong = Vec::new();
    let mut answered = Vec::new();
    for c in &cases {
        let got = match (&c.frame, &c.rest) {
            (Some(f), _) => answer(addr, &cookie, f).await,
            (None, Some((method, path, body))) => {
                let mut req = http
                    .request(method.parse()?, format!("http://{addr}{path}"))
                    .header("cookie", &cookie)
                    .header("content-type", "application/json");
                if !body.is_empty() {
                    req = req.body(body.clone());
                }
                let r = req.send().await?;
                let status = r.status().as_u16();
                let json_body = serde_json::from_slice::<Value>(&r.bytes().await?).is_ok();
                Ok(if json_body {
                    Expect::Status(status)
                } else {
                    Expect::Status(0)
                })
            }
            (None, None) => unreachable!("a case is a frame or a request"),
        };
        match got {
            Ok(g) if g == c.expect => {
                answered.push(json!({"case": c.name, "answer": format!("{g:?}")}))
            }
            Ok(g) => wrong.push(format!("{}: expected {:?}, got {g:?}", c.name, c.expect)),
            Err(e) => wrong.push(format!("{}: expected {:?}, got {e:#}", c.name, c.expect)),
        }
    }
    let healthy = Rest::new(addr)
        .call(reqwest::Method::GET, "/api/health", None, None)
        .await
        .map(|r| r.0 == 200)
        .unwrap_or(false);
    node.stop().await;
    Ok(Row {
        scenario: "malformed frames and requests".into(),
        load: "one socket per case".into(),
        faults: format!(
            "{} bad inputs (WebSocket frames and REST requests)",
            cases.len()
        ),
        lost: None,
        duplicated: None,
        recovery: format!(
            "server healthy after all: {}",
            if healthy { "yes" } else { "no" }
        ),
        passed: wrong.is_empty() && healthy,
        notes: if wrong.is_empty() {
            format!(
                "each answered as documented ({} of {})",
                answered.len(),
                cases.len()
            )
        } else {
            format!("wrong answers: {}", wrong.join("; "))
        },
        detail: json!({"answered": answered, "wrong": wrong}),
    })
}

// ------------------------------------------------------------------ protocol fuzzing

/// Frame types the server knows (the original's and the native ones), and a few it does not.
const FRAME_TYPES: &[&str] = &[
    "send",
    "subscribe",
    "unsubscribe",
    "typing",
    "read",
    "ping",
    "PONG",
    "pong",
    "USER_TYPING",
    "SEND",
    "",
    "message",
    "__proto__",
];
const FIELDS: &[&str] = &[
    "room_id",
    "content",
    "client_msg_id",
    "since_seq",
    "seq",
    "is_typing",
    "username",
    "ref",
    "type",
    "extra",
];

/// A random JSON value of any kind, nested up to `depth`.
fn random_value(rng: &mut impl rand::Rng, depth: u32, room: &str) -> Value {
    match rng.gen_range(0..if depth == 0 { 7 } else { 9 }) {
        0 => Value::Null,
        1 => json!(rng.gen::<bool>()),
        2 => json!(rng.gen::<i64>()),
        3 => json!(rng.gen::<f64>() * 1e12),
        4 => json!(room),
        5 => json!(random_text(rng, 40)),
        6 => json!(rng.gen_range(-3i64..50)),
        7 => Value::Array(
            (0..rng.gen_range(0..4))
                .map(|_| random_value(rng, depth - 1, room))
                .collect(),
        ),
        _ => {
            let mut m = serde_json::Map::new();
            for _ in 0..rng.gen_range(0..4) {
                m.insert(
                    FIELDS[rng.gen_range(0..FIELDS.len())].into(),
                    random_value(rng, depth - 1, room),
                );
            }
            Value::Object(m)
        }
    }
}

/// Random text: ASCII, any scalar value (controls, bidi marks, astral planes), JSON syntax.
fn random_text(rng: &mut impl rand::Rng, max: usize) -> String {
    let n = rng.gen_range(0..max);
    (0..n)
        .map(|_| match rng.gen_range(0..4) {
            0 => rng.gen_range(b' '..=b'~') as char,
            1 => ['{', '}', '"', ':', ',', '[', ']', '\\'][rng.gen_range(0..8)],
            2 => char::from_u32(rng.gen_range(0..0x11_0000)).unwrap_or('\u{FFFD}'),
            _ => rng.gen_range('a'..='z'),
        })
        .collect()
}

/// A random client frame: mostly objects shaped like real frames with wrong, missing or extra
/// fields; some arbitrary JSON; some text that is not JSON; some binary.
fn random_frame(rng: &mut impl rand::Rng, room: &str) -> Message {
    match rng.gen_range(0..10) {
        0 => Message::text(random_text(rng, 200)),
        1 => Message::text(random_value(rng, 3, room).to_string()),
        2 => Message::binary(
            (0..rng.gen_range(0..64))
                .map(|_| rng.gen::<u8>())
                .collect::<Vec<u8>>(),
        ),
        _ => {
            let mut m = serde_json::Map::new();
            m.insert(
                "type".into(),
                json!(FRAME_TYPES[rng.gen_range(0..FRAME_TYPES.len())]),
            );
            for _ in 0..rng.gen_range(0..5) {
                m.insert(
                    FIELDS[rng.gen_range(0..FIELDS.len())].into(),
                    random_value(rng, 2, room),
                );
            }
            Message::text(Value::Object(m).to_string())
        }
    }
}

/// Close codes the README documents for a client's misbehaviour.
const DOCUMENTED_CLOSES: &[u16] = &[1002, 1003, 1007, 1008, 1009, 4008];

/// Random frames (a seeded generator: a failure can be replayed) over sockets of one user: the
/// server must answer a ping after each batch, close a socket only with a documented code, and
/// stay healthy; what the fuzzed sends stored must read back.
pub async fn fuzz_frames(bin: &Path, work: &Path, p: &Profile) -> Result<Row> {
    use rand::SeedableRng;
    let mut node = Node::start_new(bin, &work.join("fuzz"), vec![]).await?;
    let addr = node.addr();
    let t = node.target();
    let world = livechat_world(addr, 1, 1, &tag()).await?;
    let room = world.rooms[0].clone();
    let seed = 0x11FE_C4A7;
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let (mut sent, mut answers, mut sockets) = (0u64, 0u64, 0u64);
    let mut closes: std::collections::BTreeMap<u16, u64> = Default::default();
    let mut wrong = Vec::new();
    while sent < p.fuzz_frames {
        let mut ws = ws_open(
            &t,
            sockets as usize,
            "/api/ws/stream",
            Some(&world.cookies[0]),
        )
        .await?;
        sockets += 1;
        let mut closed = None;
        'batch: for _ in 0..100 {
            ws.send(random_frame(&mut rng, &room)).await?;
            sent += 1;
            // What came back so far (answers are counted, not required: a typing frame has none).
            while let Ok(m) = tokio::time::timeout(Duration::from_millis(1), ws.next()).await {
                match m {
                    Some(Ok(Message::Text(_))) => answers += 1,
                    Some(Ok(Message::Close(f))) => {
                        closed = Some(f.map(|f| u16::from(f.code)).unwrap_or(1005));
                        break 'batch;
                    }
                    Some(Ok(_)) => {}
                    Some(Err(_)) | None => {
                        closed = Some(1006);
                        break 'batch;
                    }
                }
            }
        }
        if let Some(code) = closed {
            *closes.entry(code).or_default() += 1;
            if !DOCUMENTED_CLOSES.contains(&code) {
                wrong.push(format!("socket closed with undocumented code {code}"));
            }
            continue;
        }
        // Still open: it must still answer.
        ws.send(Message::text(
            json!({"type": "ping", "ref": "alive"}).to_string(),
        ))
        .await?;
        let alive = crate::client::wait_text(&mut ws, Proto::Livechat, "pong", |s| {
            s.contains("\"type\":\"pong\"").then_some(())
        })
        .await;
        if let Err(e) = alive {
            wrong.push(format!("no pong after a batch: {e:#}"));
            break;
        }
        let _ = ws.close(None).await;
    }
    let rest = Rest::new(addr);
    let healthy = rest
        .call(reqwest::Method::GET, "/api/health", None, None)
        .await
        .is_ok_and(|r| r.0 == 200);
    // Whatever the fuzzer's sends stored reads back (the store is not corrupted).
    let (status, text, _) = rest
        .call(
            reqwest::Method::GET,
            &format!("/api/messages/get-messages/{room}?after_seq=0&limit=200"),
            Some(&world.cookies[0]),
            None,
        )
        .await?;
    let readable = status == 200 && serde_json::from_str::<Vec<Value>>(&text).is_ok();
    node.stop().await;
    Ok(Row {
        scenario: "protocol fuzzing".into(),
        load: format!("{sockets} sockets, 100 frames each"),
        faults: format!("{sent} random frames (seed {seed:#x}): real frame types with wrong, missing or extra fields, arbitrary JSON, text that is not JSON, binary"),
        lost: None,
        duplicated: None,
        recovery: format!(
            "server healthy after all: {}; history readable: {}",
            if healthy { "yes" } else { "no" },
            if readable { "yes" } else { "no" }
        ),
        passed: wrong.is_empty() && healthy && readable,
        notes: if wrong.is_empty() {
            format!("{answers} text answers; sockets closed by the server, by code: {closes:?}; every other socket still answered a ping")
        } else {
            wrong.join("; ")
        },
        detail: json!({"sent": sent, "answers": answers, "closes": closes, "wrong": wrong, "seed": seed}),
    })
}

// ------------------------------------------------------------------ replay

/// Some traffic, then every read model rebuilt twice from the log into fresh files: both
/// rebuilds match the live store (`--verify`) and each other.
pub async fn replay_twice(bin: &Path, work: &Path, p: &Profile) -> Result<Row> {
    let row = sends_under_kills(bin, &work.join("replay-load"), p, 0, 3.0).await?;
    let data = work.join("replay-load").join("baseline-load").join("data");
    let mut sums = Vec::new();
    let mut wrong = Vec::new();
    for store in ["history", "analytics", "notifications"] {
        let mut mine = Vec::new();
        for round in 0..2 {
            let into = work.join(format!("replay-{store}-{round}.db"));
            let _ = std::fs::remove_file(&into);
            let out = tokio::process::Command::new(bin)
                .arg("--data-dir")
                .arg(&data)
                .args(["replay", "--store", store, "--verify", "--into"])
                .arg(&into)
                .env("RUST_LOG", "warn")
                .output()
                .await?;
            let stdout = String::from_utf8_lossy(&out.stdout).to_string();
            let sum = stdout
                .lines()
                .find(|l| l.starts_with("checksum ") && l.contains(&*into.to_string_lossy()))
                .and_then(|l| l.split("sha256=").nth(1))
                .unwrap_or_default()
                .to_string();
            if !out.status.success() || !stdout.contains("verify: match") {
                wrong.push(format!(
                    "{store} round {round}: {}",
                    stdout.lines().last().unwrap_or_default()
                ));
            }
            mine.push(sum);
        }
        if mine[0].is_empty() || mine[0] != mine[1] {
            wrong.push(format!("{store}: the two rebuilds differ"));
        }
        sums.push(json!({"store": store, "sha256": mine}));
    }
    Ok(Row {
        scenario: "replay twice".into(),
        load: row.load.clone(),
        faults: "history, analytics and notifications each rebuilt twice from the log".into(),
        lost: row.lost,
        duplicated: row.duplicated,
        recovery: "–".into(),
        passed: wrong.is_empty() && row.passed,
        notes: if wrong.is_empty() {
            "both rebuilds identical to each other and to the live stores".into()
        } else {
            wrong.join("; ")
        },
        detail: json!({"checksums": sums}),
    })
}
