//! The scenarios, each against one running server: idle connections, fan-out at fixed and
//! rising rates, durable ingest, history pages, replay, cold start.
//!
//! Every loop here is bounded: connection counts are fixed, phases are timed, waits time out.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::Path;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use futures::{SinkExt, StreamExt};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::{Interval, MissedTickBehavior};
use tokio_tungstenite::tungstenite::Message;

use crate::client::{self, centrifugo_reply, Target, World, Ws};
use crate::proto::{self, content, publish_frame, scan, Event, Proto, FIRST_PUBLISH_ID};
use crate::stats::{
    self, cpu_pct, machine, machine_pct, now_ns, sample, Counters, Hist, Lat, Watch,
};

const OPEN_CONCURRENCY: usize = 128;

/// Publisher control: messages/s per publisher (0 = paused); `stop` ends every task.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Ctl {
    pub rate: f64,
    pub stop: bool,
}

async fn tick(t: &mut Option<Interval>) {
    match t {
        Some(i) => {
            i.tick().await;
        }
        None => std::future::pending::<()>().await,
    }
}

fn add(a: &std::sync::atomic::AtomicU64, n: u64) {
    a.fetch_add(n, Ordering::Relaxed);
}

/// One member socket: counts deliveries and records latency; publishes when it is publisher
/// `pi` of `np` and the rate is above zero (staggered phases so publishers do not tick together).
#[allow(clippy::too_many_arguments)]
async fn member_loop(
    mut ws: Ws,
    proto: Proto,
    idx: usize,
    room: String,
    publisher: Option<(usize, usize)>,
    size: usize,
    ctr: Arc<Counters>,
    hist: Arc<Hist>,
    mut ctl: watch::Receiver<Ctl>,
) {
    let mut events = Vec::with_capacity(4);
    let mut next_id = FIRST_PUBLISH_ID;
    let mut ticker: Option<Interval> = None;
    loop {
        tokio::select! {
            m = ws.next() => match m {
                Some(Ok(Message::Text(t))) => {
                    scan(proto, t.as_str(), &mut events);
                    let now = now_ns();
                    for e in events.drain(..) {
                        match e {
                            Event::Delivery(ts) => {
                                add(&ctr.delivered, 1);
                                if ctr.in_window(now) {
                                    add(&ctr.delivered_win, 1);
                                }
                                if ctr.in_window(ts) {
                                    hist.record_ns(idx, now.saturating_sub(ts));
                                }
                            }
                            Event::Ack(_) => add(&ctr.acked, 1),
                            Event::Refused(_) => add(&ctr.send_errors, 1),
                            Event::Error => add(&ctr.errors, 1),
                            Event::Ping => {
                                if ws.send(Message::text("{}")).await.is_err() {
                                    add(&ctr.closed, 1);
                                    return;
                                }
                            }
                        }
                    }
                }
                Some(Ok(Message::Close(f))) => {
                    ctr.closed_because(format!("close frame {f:?}"));
                    return;
                }
                Some(Err(e)) => {
                    ctr.closed_because(format!("socket error: {e}"));
                    return;
                }
                None => {
                    ctr.closed_because("socket ended".into());
                    return;
                }
                Some(Ok(_)) => {}
            },
            _ = tick(&mut ticker) => {
                let ts = now_ns();
                let frame = publish_frame(proto, &room, &content(ts, size), next_id, idx);
                next_id += 1;
                if ws.send(Message::text(frame)).await.is_err() {
                    add(&ctr.closed, 1);
                    return;
                }
                add(&ctr.sent, 1);
                if ctr.in_window(ts) {
                    add(&ctr.sent_win, 1);
                }
            }
            r = ctl.changed() => {
                if r.is_err() {
                    return;
                }
                let c = *ctl.borrow_and_update();
                if c.stop {
                    return;
                }
                if let Some((pi, np)) = publisher {
                    ticker = (c.rate > 0.0).then(|| {
                        let period = Duration::from_secs_f64(1.0 / c.rate);
                        let phase = period.mul_f64(pi as f64 / np.max(1) as f64);
                        let mut iv = tokio::time::interval_at(
                            tokio::time::Instant::now() + phase,
                            period,
                        );
                        iv.set_missed_tick_behavior(MissedTickBehavior::Skip);
                        iv
                    });
                }
            }
        }
    }
}

/// Ingest control: 0 = wait, 1 = go, 2 = stop sending (then drain acks).
const GO: u8 = 1;
const STOP: u8 = 2;

/// One publishing socket keeping `window` sends in flight; each ack's latency is recorded.
/// With a `budget`, stops once the shared budget is used up.
#[allow(clippy::too_many_arguments)]
async fn ingest_loop(
    mut ws: Ws,
    proto: Proto,
    idx: usize,
    room: String,
    window: usize,
    size: usize,
    ctr: Arc<Counters>,
    hist: Arc<Hist>,
    budget: Option<Arc<AtomicI64>>,
    mut ctl: watch::Receiver<u8>,
) {
    while *ctl.borrow_and_update() == 0 {
        if ctl.changed().await.is_err() {
            return;
        }
    }
    let mut pending: HashMap<u64, u64> = HashMap::new();
    let mut fifo: VecDeque<u64> = VecDeque::new();
    let mut next_id = FIRST_PUBLISH_ID;
    let mut stopping = *ctl.borrow() == STOP;
    let mut events = Vec::with_capacity(4);
    let drain = tokio::time::sleep(Duration::from_secs(3600));
    tokio::pin!(drain);

    // Sends one message unless stopping or out of budget; false if the socket failed.
    macro_rules! send_one {
        () => {{
            let mut ok = true;
            if !stopping {
                let allowed = budget
                    .as_ref()
                    .map(|b| b.fetch_sub(1, Ordering::Relaxed) > 0)
                    .unwrap_or(true);
                if !allowed {
                    stopping = true;
                } else {
                    let ts = now_ns();
                    let id = next_id;
                    next_id += 1;
                    let frame = publish_frame(proto, &room, &content(ts, size), id, idx);
                    if ws.send(Message::text(frame)).await.is_err() {
                        ok = false;
                    } else {
                        add(&ctr.sent, 1);
                        if proto == Proto::Bare {
                            fifo.push_back(ts);
                        } else {
                            pending.insert(id, ts);
                        }
                    }
                }
            }
            ok
        }};
    }

    for _ in 0..window.max(1) {
        if !send_one!() {
            add(&ctr.closed, 1);
            return;
        }
    }
    loop {
        if stopping && pending.is_empty() && fifo.is_empty() {
            return;
        }
        tokio::select! {
            m = ws.next() => match m {
                Some(Ok(Message::Text(t))) => {
                    scan(proto, t.as_str(), &mut events);
                    let now = now_ns();
                    for e in std::mem::take(&mut events) {
                        match e {
                            Event::Ack(id) => {
                                let ts = if proto == Proto::Bare {
                                    fifo.pop_front()
                                } else {
                                    pending.remove(&id)
                                };
                                if let Some(ts) = ts {
                                    add(&ctr.acked, 1);
                                    if ctr.in_window(now) {
                                        add(&ctr.acked_win, 1);
                                    }
                                    if ctr.in_window(ts) {
                                        hist.record_ns(idx, now.saturating_sub(ts));
                                    }
                                    if !send_one!() {
                                        add(&ctr.closed, 1);
                                        return;
                                    }
                                }
                            }
                            Event::Refused(id) => {
                                if pending.remove(&id).is_some() {
                                    add(&ctr.send_errors, 1);
                                    if !send_one!() {
                                        add(&ctr.closed, 1);
                                        return;
                                    }
                                } else {
                                    add(&ctr.errors, 1);
                                }
                            }
                            Event::Error => add(&ctr.errors, 1),
                            Event::Delivery(_) => add(&ctr.delivered, 1),
                            Event::Ping => {
                                if ws.send(Message::text("{}")).await.is_err() {
                                    add(&ctr.closed, 1);
                                    return;
                                }
                            }
                        }
                    }
                }
                Some(Ok(Message::Close(f))) => {
                    ctr.closed_because(format!("close frame {f:?}"));
                    return;
                }
                Some(Err(e)) => {
                    ctr.closed_because(format!("socket error: {e}"));
                    return;
                }
                None => {
                    ctr.closed_because("socket ended".into());
                    return;
                }
                Some(Ok(_)) => {}
            },
            r = ctl.changed(), if !stopping => {
                if r.is_err() || *ctl.borrow_and_update() == STOP {
                    stopping = true;
                    drain.as_mut().reset(tokio::time::Instant::now() + Duration::from_secs(10));
                }
            }
            _ = &mut drain => return,
        }
    }
}

/// Opens `specs` (connection index, room, publish-only) with bounded concurrency and hands each
/// open socket to `spawn` at once. Returns (opened, failed, seconds, first error).
async fn open_many(
    t: &Target,
    world: &World,
    specs: Vec<(usize, Option<usize>, bool)>,
    mut spawn: impl FnMut(usize, Option<usize>, Ws),
) -> (usize, usize, f64, Option<String>) {
    let t0 = Instant::now();
    let mut opened = 0;
    let mut failed = 0;
    let mut first_err = None;
    let mut s = futures::stream::iter(specs)
        .map(|(i, r, p)| async move { (i, r, client::open(t, world, i, r, p).await) })
        .buffer_unordered(OPEN_CONCURRENCY);
    while let Some((i, r, res)) = s.next().await {
        match res {
            Ok(ws) => {
                opened += 1;
                spawn(i, r, ws);
            }
            Err(e) => {
                failed += 1;
                if first_err.is_none() {
                    first_err = Some(format!("{e:#}"));
                }
            }
        }
    }
    (opened, failed, t0.elapsed().as_secs_f64(), first_err)
}

async fn finish(tasks: &mut JoinSet<()>, within: Duration) {
    let _ =
        tokio::time::timeout(within, async { while tasks.join_next().await.is_some() {} }).await;
    tasks.abort_all();
    while tasks.join_next().await.is_some() {}
}

// ---------------------------------------------------------------- idle

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct IdleResult {
    pub target_conns: usize,
    pub connected: usize,
    pub failed: usize,
    pub first_error: Option<String>,
    pub connect_secs: f64,
    pub connects_per_s: f64,
    pub rss_before_kb: u64,
    pub rss_after_kb: u64,
    pub rss_per_conn_bytes: f64,
    pub server_cpu_idle_pct: f64,
    pub machine_cpu_pct: f64,
    pub hold_secs: f64,
    pub server_fds: u64,
    pub closed_by_server: u64,
}

/// `n` authenticated, subscribed sockets over `world.rooms`; RSS before/after and CPU while idle.
pub async fn idle(
    t: &Target,
    world: &World,
    n: usize,
    settle: Duration,
    hold: Duration,
    pid: u32,
) -> Result<IdleResult> {
    let ctr = Arc::new(Counters::new());
    let hist = Arc::new(Hist::new());
    let (ctl_tx, ctl_rx) = watch::channel(Ctl {
        rate: 0.0,
        stop: false,
    });
    let before = sample(Some(pid)).ok_or_else(|| anyhow!("server {pid} not running"))?;
    let mut tasks = JoinSet::new();
    let rooms = world.rooms.len().max(1);
    let specs = (0..n).map(|i| (i, Some(i % rooms), false)).collect();
    let (opened, failed, secs, first_error) = open_many(t, world, specs, |i, r, ws| {
        let room = world.rooms[r.unwrap_or(0)].clone();
        tasks.spawn(member_loop(
            ws,
            t.proto,
            i,
            room,
            None,
            0,
            ctr.clone(),
            hist.clone(),
            ctl_rx.clone(),
        ));
    })
    .await;
    tokio::time::sleep(settle).await;
    let (a, ma) = (sample(Some(pid)), machine());
    tokio::time::sleep(hold).await;
    let (b, mb) = (sample(Some(pid)), machine());
    let fds = stats::fd_count(pid);
    let _ = ctl_tx.send(Ctl {
        rate: 0.0,
        stop: true,
    });
    finish(&mut tasks, Duration::from_secs(10)).await;
    let after = b.map(|s| s.rss_kb).unwrap_or(0);
    Ok(IdleResult {
        target_conns: n,
        connected: opened,
        failed,
        first_error,
        connect_secs: secs,
        connects_per_s: opened as f64 / secs.max(1e-9),
        rss_before_kb: before.rss_kb,
        rss_after_kb: after,
        rss_per_conn_bytes: (after.saturating_sub(before.rss_kb) * 1024) as f64
            / opened.max(1) as f64,
        server_cpu_idle_pct: cpu_pct(&a, &b),
        machine_cpu_pct: machine_pct(&ma, &mb),
        hold_secs: hold.as_secs_f64(),
        server_fds: fds,
        closed_by_server: Counters::get(&ctr.closed),
    })
}

// ---------------------------------------------------------------- fan-out

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FanoutCfg {
    pub rooms: usize,
    pub members: usize,
    pub publishers: usize,
    /// Total messages/s per step (the first is the fixed-rate point), rising.
    pub rates: Vec<f64>,
    pub warmup_s: f64,
    pub duration_s: f64,
    pub drain_s: f64,
    pub size: usize,
    /// The ladder stops after the first step whose p99 exceeds this.
    pub break_p99_ms: f64,
    /// Run one more step at half the peak rate (the best step with p99 under the break).
    pub half_peak: bool,
    /// Re-run a step whose p99 broke once; the second attempt decides whether the ladder goes on.
    pub retry_broken: bool,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Step {
    pub label: String,
    pub target_msg_s: f64,
    pub sent_msg_s: f64,
    pub deliveries_s: f64,
    pub lat: Lat,
    pub sent: u64,
    pub send_errors: u64,
    pub expected: u64,
    pub delivered: u64,
    pub lost: i64,
    pub closed: u64,
    pub server_cpu_pct: f64,
    /// CPU % of each process beside the server (see [`Watch`]), by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub components_cpu_pct: BTreeMap<String, f64>,
    pub loadgen_cpu_pct: f64,
    /// Whole machine busy (200 = both cores); the rest is other processes.
    pub machine_cpu_pct: f64,
    pub server_rss_mb: f64,
    pub first_close: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct FanoutResult {
    pub connected: usize,
    pub failed: usize,
    pub first_error: Option<String>,
    pub steps: Vec<Step>,
    /// What the ladder decided, by each step's deciding attempt (a retried step by its retry).
    #[serde(default)]
    pub decided: Decided,
}

/// A fan-out run's outcome: its fixed step and its peak, each by its deciding attempt, and the
/// step at half its peak. The suite reports these per run and then their medians over runs
/// (runs differ in their peak, so the half-peak steps of a suite differ in rate).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Decided {
    pub fixed: Option<Step>,
    pub peak: Peak,
    /// Run when asked for and some step passed.
    #[serde(default)]
    pub half_peak: Option<Step>,
}

/// The highest rate whose deciding attempt kept p99 under the break (all zero, no latency: none
/// did).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Peak {
    pub target_msg_s: f64,
    pub deliveries_s: f64,
    pub lat: Option<Lat>,
}

/// Whether a step broke the latency bound (or measured nothing).
fn broke(s: &Step, break_ms: f64) -> bool {
    s.lat.p99_ms > break_ms || s.lat.count == 0
}

impl Decided {
    /// From the ladder's deciding attempts, in order (the fixed step first).
    pub fn of(deciding: &[Step], break_ms: f64) -> Decided {
        let peak = deciding
            .iter()
            .filter(|s| !broke(s, break_ms))
            .max_by(|a, b| a.target_msg_s.total_cmp(&b.target_msg_s))
            .map(|s| Peak {
                target_msg_s: s.target_msg_s,
                deliveries_s: s.deliveries_s,
                lat: Some(s.lat.clone()),
            })
            .unwrap_or_default();
        Decided {
            fixed: deciding.first().cloned(),
            peak,
            half_peak: None,
        }
    }
}

pub async fn fanout(
    t: &Target,
    world: &World,
    cfg: &FanoutCfg,
    watch: &Watch,
) -> Result<FanoutResult> {
    let ctr = Arc::new(Counters::new());
    let hist = Arc::new(Hist::new());
    let off = Ctl {
        rate: 0.0,
        stop: false,
    };
    let (ctl_tx, ctl_rx) = watch::channel(off);
    let mut tasks = JoinSet::new();
    let n = cfg.rooms * cfg.members;
    let pubs = cfg.publishers.min(n).max(1);
    // Connection i is in room i % rooms; the first `pubs` connections publish (one per room
    // while pubs <= rooms).
    let specs = (0..n).map(|i| (i, Some(i % cfg.rooms), false)).collect();
    let (opened, failed, _, first_error) = open_many(t, world, specs, |i, r, ws| {
        let room = world.rooms[r.unwrap_or(0)].clone();
        let publisher = (i < pubs).then_some((i, pubs));
        tasks.spawn(member_loop(
            ws,
            t.proto,
            i,
            room,
            publisher,
            cfg.size,
            ctr.clone(),
            hist.clone(),
            ctl_rx.clone(),
        ));
    })
    .await;
    if failed > 0 {
        eprintln!(
            "  fan-out: {failed} of {n} connections failed: {}",
            first_error.clone().unwrap_or_default()
        );
    }
    tokio::time::sleep(Duration::from_secs(1)).await;

    let run_step = |label: String, rate: f64| {
        let ctr = ctr.clone();
        let hist = hist.clone();
        let ctl_tx = &ctl_tx;
        async move {
            ctr.reset();
            hist.reset();
            let closed0 = Counters::get(&ctr.closed);
            let _ = ctl_tx.send(Ctl {
                rate: rate / pubs as f64,
                stop: false,
            });
            tokio::time::sleep(Duration::from_secs_f64(cfg.warmup_s)).await;
            let from = now_ns();
            ctr.open_window(from, from + (cfg.duration_s * 1e9) as u64);
            let (sa, ga, ma) = (watch.sample(), sample(None), machine());
            tokio::time::sleep(Duration::from_secs_f64(cfg.duration_s)).await;
            let (sb, gb, mb) = (watch.sample(), sample(None), machine());
            let _ = ctl_tx.send(off);
            // Drain: at least `drain_s`, then until no delivery arrived for 300 ms (an
            // overloaded server may still be flushing queues), at most 10 s.
            let d0 = Instant::now();
            tokio::time::sleep(Duration::from_secs_f64(cfg.drain_s)).await;
            let mut last = Counters::get(&ctr.delivered);
            while d0.elapsed() < Duration::from_secs(10) {
                tokio::time::sleep(Duration::from_millis(300)).await;
                let now = Counters::get(&ctr.delivered);
                if now == last {
                    break;
                }
                last = now;
            }
            let sent = Counters::get(&ctr.sent);
            let errs = Counters::get(&ctr.send_errors);
            let delivered = Counters::get(&ctr.delivered);
            let expected = sent.saturating_sub(errs) * cfg.members as u64;
            Step {
                label,
                target_msg_s: rate,
                sent_msg_s: Counters::get(&ctr.sent_win) as f64 / cfg.duration_s,
                deliveries_s: Counters::get(&ctr.delivered_win) as f64 / cfg.duration_s,
                lat: hist.summary(),
                sent,
                send_errors: errs,
                expected,
                delivered,
                lost: expected as i64 - delivered as i64,
                closed: Counters::get(&ctr.closed) - closed0,
                server_cpu_pct: watch.server_cpu_pct(&sa, &sb),
                components_cpu_pct: watch.components_cpu_pct(&sa, &sb),
                loadgen_cpu_pct: cpu_pct(&ga, &gb),
                machine_cpu_pct: machine_pct(&ma, &mb),
                server_rss_mb: watch.server_rss_mb(&sb),
                first_close: ctr.first_close(),
            }
        }
    };

    let mut steps: Vec<Step> = Vec::new();
    let mut deciding: Vec<Step> = Vec::new();
    for (k, &rate) in cfg.rates.iter().enumerate() {
        let label = if k == 0 { "fixed" } else { "rising" };
        let mut s = run_step(label.to_string(), rate).await;
        // On a shared 2-core machine one stall can break a short step: a broken step is run
        // once more, and that second attempt decides (both are reported).
        for retry in [true, false] {
            eprintln!(
                "  {:>12} {:>8.0} msg/s -> {:>9.0} deliveries/s  p50 {:>7.2} ms  p99 {:>8.2} ms  lost {}  closed {}",
                s.label, rate, s.deliveries_s, s.lat.p50_ms, s.lat.p99_ms, s.lost, s.closed
            );
            // Only a step that kept up with its rate is retried: an overloaded one is real.
            let kept_up = s.deliveries_s >= 0.9 * rate * cfg.members as f64;
            if !(retry && cfg.retry_broken && broke(&s, cfg.break_p99_ms) && kept_up) {
                break;
            }
            steps.push(s);
            s = run_step(format!("{label}-retry"), rate).await;
        }
        let failed = broke(&s, cfg.break_p99_ms);
        deciding.push(s.clone());
        steps.push(s);
        if failed || Counters::get(&ctr.closed) * 2 > opened as u64 {
            break;
        }
    }
    let mut decided = Decided::of(&deciding, cfg.break_p99_ms);
    if cfg.half_peak {
        let peak = decided.peak.target_msg_s;
        if peak > 0.0 {
            let s = run_step("half-peak".to_string(), peak / 2.0).await;
            eprintln!(
                "  {:>12} {:>8.0} msg/s -> {:>9.0} deliveries/s  p50 {:>7.2} ms  p99 {:>8.2} ms  lost {}",
                s.label, s.target_msg_s, s.deliveries_s, s.lat.p50_ms, s.lat.p99_ms, s.lost
            );
            decided.half_peak = Some(s.clone());
            steps.push(s);
        }
    }
    let _ = ctl_tx.send(Ctl {
        rate: 0.0,
        stop: true,
    });
    finish(&mut tasks, Duration::from_secs(10)).await;
    Ok(FanoutResult {
        connected: opened,
        failed,
        first_error,
        steps,
        decided,
    })
}

// ---------------------------------------------------------------- ingest

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IngestCfg {
    pub conns: usize,
    pub rooms: usize,
    pub window: usize,
    pub warmup_s: f64,
    pub duration_s: f64,
    pub size: usize,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct IngestResult {
    pub conns: usize,
    pub window: usize,
    pub acked_per_s: f64,
    pub lat: Lat,
    pub sent: u64,
    pub acked: u64,
    pub send_errors: u64,
    pub closed: u64,
    pub server_cpu_pct: f64,
    /// CPU % of each process beside the server (see [`Watch`]), by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub components_cpu_pct: BTreeMap<String, f64>,
    pub loadgen_cpu_pct: f64,
    pub machine_cpu_pct: f64,
    pub first_error: Option<String>,
    pub first_close: Option<String>,
}

/// Sockets that only publish (no subscribers anywhere), each keeping `window` sends in flight;
/// sends/s counts acknowledgements received in the window.
pub async fn ingest(
    t: &Target,
    world: &World,
    cfg: &IngestCfg,
    watch: &Watch,
) -> Result<IngestResult> {
    let ctr = Arc::new(Counters::new());
    let hist = Arc::new(Hist::new());
    let (ctl_tx, ctl_rx) = watch::channel(0u8);
    let mut tasks = JoinSet::new();
    let rooms = cfg.rooms.min(world.rooms.len()).max(1);
    let specs = (0..cfg.conns).map(|i| (i, Some(i % rooms), true)).collect();
    let (opened, _failed, _, first_error) = open_many(t, world, specs, |i, r, ws| {
        let room = world.rooms[r.unwrap_or(0)].clone();
        tasks.spawn(ingest_loop(
            ws,
            t.proto,
            i,
            room,
            cfg.window,
            cfg.size,
            ctr.clone(),
            hist.clone(),
            None,
            ctl_rx.clone(),
        ));
    })
    .await;
    if opened == 0 {
        bail!("no connection opened: {}", first_error.unwrap_or_default());
    }
    let _ = ctl_tx.send(GO);
    tokio::time::sleep(Duration::from_secs_f64(cfg.warmup_s)).await;
    let from = now_ns();
    ctr.open_window(from, from + (cfg.duration_s * 1e9) as u64);
    let (sa, ga, ma) = (watch.sample(), sample(None), machine());
    tokio::time::sleep(Duration::from_secs_f64(cfg.duration_s)).await;
    let (sb, gb, mb) = (watch.sample(), sample(None), machine());
    let _ = ctl_tx.send(STOP);
    finish(&mut tasks, Duration::from_secs(15)).await;
    Ok(IngestResult {
        conns: opened,
        window: cfg.window,
        acked_per_s: Counters::get(&ctr.acked_win) as f64 / cfg.duration_s,
        lat: hist.summary(),
        sent: Counters::get(&ctr.sent),
        acked: Counters::get(&ctr.acked),
        send_errors: Counters::get(&ctr.send_errors),
        closed: Counters::get(&ctr.closed),
        server_cpu_pct: watch.server_cpu_pct(&sa, &sb),
        components_cpu_pct: watch.components_cpu_pct(&sa, &sb),
        loadgen_cpu_pct: cpu_pct(&ga, &gb),
        machine_cpu_pct: machine_pct(&ma, &mb),
        first_error,
        first_close: ctr.first_close(),
    })
}

// ---------------------------------------------------------------- history

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HistoryCfg {
    pub messages: usize,
    pub seed_conns: usize,
    pub seed_window: usize,
    pub queries: usize,
    pub page: usize,
    pub size: usize,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct HistoryResult {
    pub messages: u64,
    pub seed_secs: f64,
    pub seed_msgs_per_s: f64,
    /// Time after the last ack until the history store had the last message.
    pub catch_up_secs: f64,
    pub queries: usize,
    /// Pages read over an open WebSocket (both peers).
    pub lat: Lat,
    /// LiveChat only: the same pages over REST.
    #[serde(default)]
    pub rest_lat: Option<Lat>,
    pub queries_per_s: f64,
    pub bad_pages: usize,
}

/// Sends `messages` into room 0 over many sockets as fast as acks allow; returns (acked, secs).
pub async fn seed(t: &Target, world: &World, cfg: &HistoryCfg) -> Result<(u64, f64)> {
    let ctr = Arc::new(Counters::new());
    let hist = Arc::new(Hist::new());
    let (ctl_tx, ctl_rx) = watch::channel(0u8);
    let budget = Arc::new(AtomicI64::new(cfg.messages as i64));
    let mut tasks = JoinSet::new();
    let specs = (0..cfg.seed_conns).map(|i| (i, Some(0), true)).collect();
    let (opened, _, _, first_error) = open_many(t, world, specs, |i, _, ws| {
        tasks.spawn(ingest_loop(
            ws,
            t.proto,
            i,
            world.rooms[0].clone(),
            cfg.seed_window,
            cfg.size,
            ctr.clone(),
            hist.clone(),
            Some(budget.clone()),
            ctl_rx.clone(),
        ));
    })
    .await;
    if opened == 0 {
        bail!("seed: no connection: {}", first_error.unwrap_or_default());
    }
    let t0 = Instant::now();
    let _ = ctl_tx.send(GO);
    // Bounded: at 1,000 msgs/s even 1 M messages fit in this limit.
    finish(&mut tasks, Duration::from_secs(1200)).await;
    let acked = Counters::get(&ctr.acked);
    let errs = Counters::get(&ctr.send_errors);
    let (sent, closed, other) = (
        Counters::get(&ctr.sent),
        Counters::get(&ctr.closed),
        Counters::get(&ctr.errors),
    );
    if errs + closed + other > 0 || acked < cfg.messages as u64 {
        eprintln!(
            "  seed: sent {sent}, acked {acked}, refused {errs}, other errors {other}, sockets closed {closed} (first: {:?})",
            ctr.first_close()
        );
    }
    Ok((acked, t0.elapsed().as_secs_f64()))
}

/// Pages of `page` messages ending at a random position, one request at a time.
pub async fn history(t: &Target, world: &World, cfg: &HistoryCfg) -> Result<HistoryResult> {
    let (n, seed_secs) = seed(t, world, cfg).await?;
    if (n as usize) < cfg.page + 1 {
        bail!("seeded only {n} messages");
    }
    let hist = Hist::new();
    let mut rng = stats::Rng::new(0x5eed_1234);
    let mut bad = 0;
    let mut catch_up = 0.0;
    let (t0, secs);
    let mut rest_lat = None;
    match t.proto {
        Proto::Livechat => {
            let rest = client::Rest::new(t.addr);
            let cookie = world.cookies[0].as_str();
            let room = &world.rooms[0];
            // Wait until the history store has the last message.
            let c0 = Instant::now();
            loop {
                let (s, body, _) = rest
                    .call(
                        reqwest::Method::GET,
                        &format!(
                            "/api/messages/get-messages/{room}?after_seq={}&limit=1",
                            n - 1
                        ),
                        Some(cookie),
                        None,
                    )
                    .await?;
                if s == 200 && body.contains(&format!("\"seq\":{n}")) {
                    break;
                }
                if c0.elapsed() > Duration::from_secs(1200) {
                    bail!("history did not reach seq {n} in 1200 s");
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            catch_up = c0.elapsed().as_secs_f64();
            // Over an open socket, as Centrifugo's pages are read (the measured figure).
            let mut ws = client::open(t, world, 0, None, true).await?;
            t0 = Instant::now();
            for k in 0..cfg.queries {
                let before = rng.range(cfg.page as u64 + 1, n + 1);
                let frame = format!(
                    r#"{{"type":"history","room_id":"{room}","before_seq":{before},"limit":{},"ref":{k}}}"#,
                    cfg.page
                );
                let q0 = now_ns();
                ws.send(Message::text(frame)).await?;
                let marker = format!(r#""ref":{k}}}"#);
                let page = client::wait_text(&mut ws, t.proto, "history page", |s| {
                    s.ends_with(&marker).then(|| s.to_string())
                })
                .await?;
                hist.record_ns(0, now_ns() - q0);
                if !page.starts_with(r#"{"type":"history""#)
                    || page.matches("\"seq\":").count() != cfg.page
                {
                    bad += 1;
                }
            }
            secs = t0.elapsed().as_secs_f64();
            // The same pages over REST (an HTTP request each, the session checked each time).
            let over_rest = Hist::new();
            let mut rng = stats::Rng::new(0x5eed_1234);
            for _ in 0..cfg.queries {
                let before = rng.range(cfg.page as u64 + 1, n + 1);
                let path = format!(
                    "/api/messages/get-messages/{room}?before_seq={before}&limit={}",
                    cfg.page
                );
                let q0 = now_ns();
                let (s, body, _) = rest
                    .call(reqwest::Method::GET, &path, Some(cookie), None)
                    .await?;
                over_rest.record_ns(0, now_ns() - q0);
                if s != 200 || body.matches("\"seq\":").count() != cfg.page {
                    bad += 1;
                }
            }
            rest_lat = Some(over_rest.summary());
        }
        Proto::Centrifugo => {
            let mut ws = client::open(t, world, 0, None, true).await?;
            let chan = &world.rooms[0];
            ws.send(Message::text(format!(
                r#"{{"id":3,"history":{{"channel":"{chan}","limit":0}}}}"#
            )))
            .await?;
            let top =
                client::wait_text(&mut ws, t.proto, "history top", |s| centrifugo_reply(s, 3))
                    .await?;
            let epoch = top
                .split("\"epoch\":\"")
                .nth(1)
                .and_then(|r| r.split('"').next())
                .ok_or_else(|| anyhow!("no epoch in {top}"))?
                .to_string();
            let top_offset = proto::int_after(&top, "\"offset\":").unwrap_or(n);
            t0 = Instant::now();
            for k in 0..cfg.queries {
                let id = 10 + k as u64;
                let since = rng.range(0, top_offset.saturating_sub(cfg.page as u64));
                let q0 = now_ns();
                ws.send(Message::text(format!(
                    r#"{{"id":{id},"history":{{"channel":"{chan}","limit":{},"since":{{"offset":{since},"epoch":"{epoch}"}}}}}}"#,
                    cfg.page
                )))
                .await?;
                let reply = client::wait_text(&mut ws, t.proto, "history page", |s| {
                    centrifugo_reply(s, id)
                })
                .await?;
                hist.record_ns(0, now_ns() - q0);
                // Each publication has its own "offset"; the reply adds the stream top's.
                if reply.contains("\"error\"") || reply.matches("\"offset\":").count() < cfg.page {
                    bad += 1;
                }
            }
            secs = t0.elapsed().as_secs_f64();
        }
        Proto::Bare => bail!("the bare server keeps no history"),
    }
    Ok(HistoryResult {
        messages: n,
        seed_secs,
        seed_msgs_per_s: n as f64 / seed_secs.max(1e-9),
        catch_up_secs: catch_up,
        queries: cfg.queries,
        lat: hist.summary(),
        rest_lat,
        queries_per_s: cfg.queries as f64 / secs.max(1e-9),
        bad_pages: bad,
    })
}

// ---------------------------------------------------------------- replay

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ReplayResult {
    pub records: u64,
    pub secs: f64,
    pub records_per_s: f64,
    pub wall_secs: f64,
    pub line: String,
}

/// `livechat replay --store history --into <fresh file>` on a stopped server's data directory.
fn remove_db(path: &Path) {
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        let _ = std::fs::remove_file(p);
    }
}

pub async fn replay(livechat: &Path, data_dir: &Path, into: &Path) -> Result<ReplayResult> {
    remove_db(into);
    let t0 = Instant::now();
    let out = tokio::process::Command::new(livechat)
        .arg("--data-dir")
        .arg(data_dir)
        .arg("replay")
        .arg("--store")
        .arg("history")
        .arg("--into")
        .arg(into)
        .env("RUST_LOG", "warn")
        .output()
        .await
        .context("running livechat replay")?;
    let wall = t0.elapsed().as_secs_f64();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    if !out.status.success() {
        bail!(
            "replay failed ({}): {stdout} {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // "replayed N records in S s (R records/s)"
    let line = stdout
        .lines()
        .find(|l| l.starts_with("replayed "))
        .ok_or_else(|| anyhow!("no 'replayed' line in: {stdout}"))?
        .to_string();
    let w: Vec<&str> = line.split_whitespace().collect();
    let records: u64 = w.get(1).and_then(|v| v.parse().ok()).unwrap_or(0);
    let secs: f64 = w.get(4).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    let rate: f64 = w
        .get(6)
        .map(|v| v.trim_start_matches('('))
        .and_then(|v| v.parse().ok())
        .unwrap_or(records as f64 / secs.max(1e-9));
    remove_db(into);
    Ok(ReplayResult {
        records,
        secs,
        records_per_s: rate,
        wall_secs: wall,
        line,
    })
}
