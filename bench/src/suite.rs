//! The whole benchmark in one invocation: every scenario against every peer, fresh server per
//! scenario and run (peers interleaved within a run), results as JSON per scenario and a
//! summary table in bench/README.md.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use serde::Serialize;
use serde_json::{json, Map, Value};

use crate::client::{livechat_world, Target, World};
use crate::proto::Proto;
use crate::scenarios::{self, FanoutCfg, HistoryCfg, IngestCfg};
use crate::servers::{self, Bins, CENTRIFUGO_SECRET};
use crate::stats::{median, Watch};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Quick,
    Full,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Quick => "quick",
            Mode::Full => "full",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub runs: usize,
    pub idle_conns: usize,
    pub idle_rooms: usize,
    pub idle_users: usize,
    pub idle_settle_s: f64,
    pub idle_hold_s: f64,
    pub fanout: FanoutCfg,
    pub fanout_users: usize,
    pub ingest: IngestCfg,
    pub history: HistoryCfg,
    pub history_runs: usize,
    pub replay_runs: usize,
    pub cold_runs: usize,
}

pub fn plan(mode: Mode) -> Plan {
    match mode {
        Mode::Quick => Plan {
            runs: 1,
            idle_conns: 2_000,
            idle_rooms: 20,
            idle_users: 5,
            idle_settle_s: 1.0,
            idle_hold_s: 2.0,
            fanout: FanoutCfg {
                rooms: 20,
                members: 20,
                publishers: 20,
                rates: vec![500.0, 2_000.0, 5_000.0],
                warmup_s: 0.5,
                duration_s: 3.0,
                drain_s: 0.7,
                size: 100,
                break_p99_ms: 50.0,
                half_peak: true,
                retry_broken: true,
            },
            fanout_users: 5,
            ingest: IngestCfg {
                conns: 64,
                rooms: 16,
                window: 2,
                warmup_s: 0.5,
                duration_s: 3.0,
                size: 100,
            },
            history: HistoryCfg {
                messages: 20_000,
                seed_conns: 64,
                seed_window: 2,
                queries: 500,
                page: 50,
                size: 100,
            },
            history_runs: 1,
            replay_runs: 1,
            cold_runs: 1,
        },
        Mode::Full => Plan {
            runs: 3,
            idle_conns: 19_500,
            idle_rooms: 100,
            idle_users: 10,
            idle_settle_s: 5.0,
            idle_hold_s: 30.0,
            fanout: FanoutCfg {
                rooms: 100,
                members: 100,
                publishers: 100,
                // 750 between the fixed point and the doubling: on a 2-core host the peers
                // reach their limits between 500 and 1,000 msg/s (100 × 100 members).
                rates: vec![500.0, 750.0, 1_000.0, 1_500.0, 2_000.0, 3_000.0, 5_000.0],
                warmup_s: 2.0,
                duration_s: 8.0,
                drain_s: 2.0,
                size: 100,
                break_p99_ms: 50.0,
                half_peak: true,
                retry_broken: true,
            },
            fanout_users: 10,
            ingest: IngestCfg {
                conns: 256,
                rooms: 64,
                window: 2,
                warmup_s: 2.0,
                duration_s: 10.0,
                size: 100,
            },
            history: HistoryCfg {
                messages: 1_000_000,
                seed_conns: 256,
                seed_window: 2,
                queries: 5_000,
                page: 50,
                size: 100,
            },
            history_runs: 1,
            replay_runs: 3,
            cold_runs: 3,
        },
    }
}

pub struct SuiteOpts {
    pub mode: Mode,
    pub peers: Vec<Proto>,
    pub scenarios: Vec<String>,
    pub bins: Bins,
    pub work: PathBuf,
    pub results: PathBuf,
    pub readme: PathBuf,
    pub src_ips: Vec<std::net::Ipv4Addr>,
    pub runs: Option<usize>,
}

fn target(proto: Proto, addr: std::net::SocketAddr, src: &[std::net::Ipv4Addr]) -> Target {
    Target {
        proto,
        addr,
        other_nodes: Vec::new(),
        src_ips: src.to_vec(),
        secret: CENTRIFUGO_SECRET.to_string(),
    }
}

async fn world_for(
    proto: Proto,
    addr: std::net::SocketAddr,
    users: usize,
    rooms: usize,
    tag: &str,
) -> Result<World> {
    match proto {
        Proto::Livechat => livechat_world(addr, users, rooms, tag).await,
        p => Ok(World::named(p, rooms, tag)),
    }
}

/// Results of one scenario: per peer, one JSON value per run.
type PeerRuns = BTreeMap<&'static str, Vec<Value>>;

fn record(all: &mut BTreeMap<String, PeerRuns>, scenario: &str, peer: Proto, v: Value) {
    all.entry(scenario.to_string())
        .or_default()
        .entry(peer.name())
        .or_default()
        .push(v);
}

pub fn failure(e: &anyhow::Error) -> Value {
    json!({"error": format!("{e:#}")})
}

pub async fn run(o: SuiteOpts) -> Result<()> {
    let mut p = plan(o.mode);
    if let Some(r) = o.runs {
        p.runs = r;
    }
    let want = |s: &str| o.scenarios.is_empty() || o.scenarios.iter().any(|x| x == s);
    let tag0 = format!("{:x}", std::process::id() % 0xfff);
    std::fs::create_dir_all(&o.work)?;
    std::fs::create_dir_all(&o.results)?;
    let started = chrono::Local::now();
    let mut all: BTreeMap<String, PeerRuns> = BTreeMap::new();
    let mut notes: Vec<String> = Vec::new();
    if o.peers.contains(&Proto::Centrifugo) && o.bins.centrifugo.is_none() {
        notes.push("Centrifugo binary not found or not recognised: its columns are empty.".into());
    }
    let peers: Vec<Proto> = o
        .peers
        .iter()
        .copied()
        .filter(|p| *p != Proto::Centrifugo || o.bins.centrifugo.is_some())
        .collect();
    let stop_grace = Duration::from_secs(20);

    // (a) idle connections
    if want("idle") {
        for run in 0..p.runs {
            for &peer in &peers {
                eprintln!(
                    "[idle] {} run {}: {} sockets",
                    peer.name(),
                    run + 1,
                    p.idle_conns
                );
                let dir = o.work.join(format!("idle-{}-{run}", peer.name()));
                let _ = std::fs::remove_dir_all(&dir);
                let v = async {
                    let srv = servers::start(peer, &o.bins, &dir, 1).await?;
                    let tag = format!("{tag0}i{run}");
                    let res = async {
                        let w = world_for(peer, srv.addr, p.idle_users, p.idle_rooms, &tag).await?;
                        let t = target(peer, srv.addr, &o.src_ips);
                        scenarios::idle(
                            &t,
                            &w,
                            p.idle_conns,
                            Duration::from_secs_f64(p.idle_settle_s),
                            Duration::from_secs_f64(p.idle_hold_s),
                            srv.pid,
                        )
                        .await
                    }
                    .await;
                    srv.kill().await;
                    let r = res?;
                    eprintln!(
                        "  connected {}/{} in {:.1} s, RSS/conn {:.0} B, idle CPU {:.1} %",
                        r.connected,
                        r.target_conns,
                        r.connect_secs,
                        r.rss_per_conn_bytes,
                        r.server_cpu_idle_pct
                    );
                    Ok::<_, anyhow::Error>(serde_json::to_value(r)?)
                }
                .await
                .unwrap_or_else(|e| {
                    eprintln!("  failed: {e:#}");
                    failure(&e)
                });
                record(&mut all, "idle", peer, v);
                let _ = std::fs::remove_dir_all(&dir);
            }
        }
    }

    // (b) fan-out
    if want("fanout") {
        for run in 0..p.runs {
            for &peer in &peers {
                eprintln!(
                    "[fanout] {} run {}: {} rooms x {} members, {} publishers",
                    peer.name(),
                    run + 1,
                    p.fanout.rooms,
                    p.fanout.members,
                    p.fanout.publishers
                );
                let dir = o.work.join(format!("fanout-{}-{run}", peer.name()));
                let _ = std::fs::remove_dir_all(&dir);
                let v = async {
                    let srv = servers::start(peer, &o.bins, &dir, 1000).await?;
                    let tag = format!("{tag0}f{run}");
                    let res = async {
                        let w =
                            world_for(peer, srv.addr, p.fanout_users, p.fanout.rooms, &tag).await?;
                        let t = target(peer, srv.addr, &o.src_ips);
                        scenarios::fanout(&t, &w, &p.fanout, &Watch::one(srv.pid)).await
                    }
                    .await;
                    srv.kill().await;
                    Ok::<_, anyhow::Error>(serde_json::to_value(res?)?)
                }
                .await
                .unwrap_or_else(|e| {
                    eprintln!("  failed: {e:#}");
                    failure(&e)
                });
                record(&mut all, "fanout", peer, v);
                let _ = std::fs::remove_dir_all(&dir);
            }
        }
    }

    // (c) durable ingest
    if want("ingest") {
        for run in 0..p.runs {
            for &peer in &peers {
                eprintln!(
                    "[ingest] {} run {}: {} sockets x {} in flight",
                    peer.name(),
                    run + 1,
                    p.ingest.conns,
                    p.ingest.window
                );
                let dir = o.work.join(format!("ingest-{}-{run}", peer.name()));
                let _ = std::fs::remove_dir_all(&dir);
                let v = async {
                    let srv = servers::start(peer, &o.bins, &dir, 1000).await?;
                    let tag = format!("{tag0}g{run}");
                    let res = async {
                        let w = world_for(peer, srv.addr, 4, p.ingest.rooms, &tag).await?;
                        let t = target(peer, srv.addr, &o.src_ips);
                        scenarios::ingest(&t, &w, &p.ingest, &Watch::one(srv.pid)).await
                    }
                    .await;
                    srv.kill().await;
                    let r = res?;
                    eprintln!(
                        "  {:.0} acked sends/s, ack p50 {:.2} ms p99 {:.2} ms, refused {}",
                        r.acked_per_s, r.lat.p50_ms, r.lat.p99_ms, r.send_errors
                    );
                    Ok::<_, anyhow::Error>(serde_json::to_value(r)?)
                }
                .await
                .unwrap_or_else(|e| {
                    eprintln!("  failed: {e:#}");
                    failure(&e)
                });
                record(&mut all, "ingest", peer, v);
                let _ = std::fs::remove_dir_all(&dir);
            }
        }
    }

    // (d) history, then (e) replay and cold start on LiveChat's seeded data directory.
    let mut seeded_dir: Option<PathBuf> = None;
    if want("history") || want("replay") {
        for run in 0..p.history_runs {
            for &peer in peers.iter().filter(|p| **p != Proto::Bare) {
                if !want("history") && peer != Proto::Livechat {
                    continue;
                }
                eprintln!(
                    "[history] {} run {}: {} messages in one room, {} pages of {}",
                    peer.name(),
                    run + 1,
                    p.history.messages,
                    p.history.queries,
                    p.history.page
                );
                let dir = o.work.join(format!("history-{}-{run}", peer.name()));
                let _ = std::fs::remove_dir_all(&dir);
                let v = async {
                    let srv = servers::start(peer, &o.bins, &dir, p.history.messages + 10).await?;
                    let tag = format!("{tag0}h{run}");
                    let res = async {
                        let w = world_for(peer, srv.addr, 2, 1, &tag).await?;
                        let t = target(peer, srv.addr, &o.src_ips);
                        scenarios::history(&t, &w, &p.history).await
                    }
                    .await;
                    if peer == Proto::Livechat && res.is_ok() {
                        // Clean stop so the log is complete for replay.
                        srv.stop(stop_grace).await?;
                        if let Some(old) = seeded_dir.replace(dir.clone()) {
                            let _ = std::fs::remove_dir_all(old);
                        }
                    } else {
                        srv.kill().await;
                    }
                    let r = res?;
                    eprintln!(
                        "  seeded {} in {:.1} s ({:.0}/s), catch-up {:.1} s; page p50 {:.2} ms p99 {:.2} ms; bad pages {}",
                        r.messages, r.seed_secs, r.seed_msgs_per_s, r.catch_up_secs, r.lat.p50_ms, r.lat.p99_ms, r.bad_pages
                    );
                    Ok::<_, anyhow::Error>(serde_json::to_value(r)?)
                }
                .await
                .unwrap_or_else(|e| {
                    eprintln!("  failed: {e:#}");
                    failure(&e)
                });
                if want("history") {
                    record(&mut all, "history", peer, v);
                }
                if seeded_dir.as_deref() != Some(dir.as_path()) {
                    let _ = std::fs::remove_dir_all(&dir);
                }
            }
        }
    }
    if want("replay") && peers.contains(&Proto::Livechat) {
        match &seeded_dir {
            Some(dir) => {
                for run in 0..p.replay_runs {
                    eprintln!("[replay] livechat run {}", run + 1);
                    let v = scenarios::replay(
                        &o.bins.livechat,
                        &dir.join("data"),
                        &o.work.join("replayed-history.db"),
                    )
                    .await
                    .map(|r| {
                        eprintln!("  {}", r.line);
                        serde_json::to_value(r).unwrap_or(Value::Null)
                    })
                    .unwrap_or_else(|e| {
                        eprintln!("  failed: {e:#}");
                        failure(&e)
                    });
                    record(&mut all, "replay", Proto::Livechat, v);
                }
            }
            None => notes.push("replay: no seeded LiveChat data directory (history failed)".into()),
        }
    }

    // (f) cold start
    if want("coldstart") {
        for run in 0..p.cold_runs {
            for &peer in &peers {
                let dir = o.work.join(format!("cold-{}-{run}", peer.name()));
                let _ = std::fs::remove_dir_all(&dir);
                let v = async {
                    let s = servers::start_timed(peer, &o.bins, &dir, 1000).await?;
                    s.server.kill().await;
                    let mut v = json!({"accept_ms": s.accept_ms, "ready_ms": s.ready_ms});
                    if peer == Proto::Livechat {
                        if let Some(seeded) = &seeded_dir {
                            let s = servers::start_timed(peer, &o.bins, seeded, 1000).await?;
                            s.server.stop(stop_grace).await?;
                            v["seeded_accept_ms"] = json!(s.accept_ms);
                            v["seeded_ready_ms"] = json!(s.ready_ms);
                        }
                    }
                    Ok::<_, anyhow::Error>(v)
                }
                .await
                .unwrap_or_else(|e| failure(&e));
                eprintln!("[coldstart] {} run {}: {v}", peer.name(), run + 1);
                record(&mut all, "coldstart", peer, v);
                let _ = std::fs::remove_dir_all(&dir);
            }
        }
    }
    if let Some(d) = &seeded_dir {
        let _ = std::fs::remove_dir_all(d);
    }

    // Output: one JSON file per scenario, and the README summary.
    let date = started.format("%Y-%m-%d").to_string();
    let machine = machine_info(&o.bins, &peers).await;
    let mut medians: BTreeMap<String, BTreeMap<&'static str, Value>> = BTreeMap::new();
    for (scenario, peers_runs) in &all {
        let mut med = BTreeMap::new();
        for (peer, runs) in peers_runs {
            med.insert(*peer, median_value(runs));
        }
        let doc = json!({
            "scenario": scenario,
            "mode": o.mode.name(),
            "started": started.to_rfc3339(),
            "machine": machine,
            "plan": p,
            "runs": peers_runs,
            "median": med,
        });
        let path = o
            .results
            .join(format!("{date}-{scenario}-{}.json", o.mode.name()));
        std::fs::write(&path, serde_json::to_vec_pretty(&doc)?)
            .with_context(|| format!("writing {}", path.display()))?;
        eprintln!("wrote {}", path.display());
        medians.insert(scenario.clone(), med);
    }
    let section = render(
        o.mode, &p, &machine, &medians, &peers, &notes, &started, &date,
    );
    write_section(&o.readme, o.mode.name(), &section)?;
    println!("{section}");
    Ok(())
}

/// Element-wise median of runs with the same shape. Arrays of fan-out steps are matched by
/// (label, target rate); other arrays and strings come from the first run.
pub fn median_value(runs: &[Value]) -> Value {
    let ok: Vec<&Value> = runs.iter().filter(|v| v.get("error").is_none()).collect();
    if ok.is_empty() {
        return runs.first().cloned().unwrap_or(Value::Null);
    }
    let mut out = median_of(&ok);
    if let Value::Object(m) = &mut out {
        m.insert("runs".into(), json!(ok.len()));
        if ok.len() < runs.len() {
            m.insert("failed_runs".into(), json!(runs.len() - ok.len()));
        }
    }
    out
}

fn median_of(vals: &[&Value]) -> Value {
    // A run without a value (null) leaves the median to the runs that have one.
    let head: &Value = vals
        .iter()
        .copied()
        .find(|v| !v.is_null())
        .unwrap_or(vals[0]);
    match head {
        Value::Number(_) => {
            let xs: Vec<f64> = vals.iter().filter_map(|v| v.as_f64()).collect();
            json!(median(xs))
        }
        Value::Object(first) => {
            let mut m = Map::new();
            for k in first.keys() {
                let sub: Vec<&Value> = vals.iter().filter_map(|v| v.get(k)).collect();
                if !sub.is_empty() {
                    m.insert(k.clone(), median_of(&sub));
                }
            }
            Value::Object(m)
        }
        Value::Array(first) if first.iter().all(|s| s.get("target_msg_s").is_some()) => {
            let key = |s: &Value| {
                format!(
                    "{}@{}",
                    s["label"].as_str().unwrap_or(""),
                    s["target_msg_s"].as_f64().unwrap_or(0.0)
                )
            };
            let mut order: Vec<String> = Vec::new();
            let mut groups: BTreeMap<String, Vec<&Value>> = BTreeMap::new();
            for v in vals {
                for s in v.as_array().into_iter().flatten() {
                    let k = key(s);
                    if !groups.contains_key(&k) {
                        order.push(k.clone());
                    }
                    groups.entry(k).or_default().push(s);
                }
            }
            Value::Array(
                order
                    .iter()
                    .map(|k| {
                        let g = &groups[k];
                        let mut m = median_of(g);
                        m["runs"] = json!(g.len());
                        m
                    })
                    .collect(),
            )
        }
        other => other.clone(),
    }
}

pub async fn sh(cmd: &str) -> String {
    tokio::process::Command::new("bash")
        .arg("-c")
        .arg(cmd)
        .output()
        .await
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

pub async fn machine_info(bins: &Bins, peers: &[Proto]) -> Value {
    // Empty when Centrifugo was not among the peers run.
    let cf = bins
        .centrifugo
        .as_ref()
        .filter(|_| peers.contains(&Proto::Centrifugo));
    json!({
        "nproc": sh("nproc").await,
        "cpu": sh("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2-").await,
        "free_g": sh("free -g | awk '/^Mem:/ {print $2\" GiB total, \"$7\" GiB available\"}'").await,
        "kernel": sh("uname -r").await,
        "loadavg_at_start": sh("cut -d' ' -f1-3 /proc/loadavg").await,
        "ulimit_n": sh("ulimit -n").await,
        "rustc": sh("rustc --version").await,
        "livechat_commit": std::env::var("BENCH_GIT").unwrap_or_default(),
        "centrifugo": cf.map(|c| c.label.clone()).unwrap_or_default(),
        "centrifugo_version": cf.and_then(|c| c.version.clone()),
        "centrifugo_major": cf.map(|c| c.major),
    })
}

pub fn num(v: &Value, path: &str) -> Option<f64> {
    let mut cur = v;
    for k in path.split('.') {
        cur = cur.get(k)?;
    }
    cur.as_f64()
}

pub fn fmt(x: Option<f64>, digits: usize) -> String {
    match x {
        Some(v) if v.is_finite() => {
            if digits == 0 {
                let s = format!("{:.0}", v);
                // thousands separators for readability
                let neg = s.starts_with('-');
                let d: Vec<char> = s.trim_start_matches('-').chars().collect();
                let mut out = String::new();
                for (i, c) in d.iter().enumerate() {
                    if i > 0 && (d.len() - i).is_multiple_of(3) {
                        out.push(',');
                    }
                    out.push(*c);
                }
                if neg {
                    format!("-{out}")
                } else {
                    out
                }
            } else {
                format!("{:.*}", digits, v)
            }
        }
        _ => "–".into(),
    }
}

pub fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 && a.is_finite() => format!("{:.2}×", a / b),
        _ => "–".into(),
    }
}

#[allow(clippy::too_many_arguments)]
fn render(
    mode: Mode,
    p: &Plan,
    machine: &Value,
    med: &BTreeMap<String, BTreeMap<&'static str, Value>>,
    peers: &[Proto],
    notes: &[String],
    started: &chrono::DateTime<chrono::Local>,
    date: &str,
) -> String {
    let order = [Proto::Livechat, Proto::Centrifugo, Proto::Bare];
    let cols: Vec<Proto> = order
        .iter()
        .copied()
        .filter(|x| peers.contains(x))
        .collect();
    let get = |sc: &str, peer: Proto| -> Option<&Value> {
        med.get(sc)
            .and_then(|m| m.get(peer.name()))
            .filter(|v| v.get("error").is_none())
    };
    let mut rows: Vec<(String, Vec<Option<f64>>, usize, bool)> = Vec::new();
    let mut add =
        |label: String, f: &dyn Fn(Proto) -> Option<f64>, digits: usize, higher_better: bool| {
            rows.push((
                label,
                cols.iter().map(|&c| f(c)).collect(),
                digits,
                higher_better,
            ));
        };
    let b = p.fanout.break_p99_ms;
    // idle
    add(
        format!("idle: sockets held (of {})", p.idle_conns),
        &|c| get("idle", c).and_then(|v| num(v, "connected")),
        0,
        true,
    );
    add(
        "idle: RSS per connection (KiB)".into(),
        &|c| {
            get("idle", c)
                .and_then(|v| num(v, "rss_per_conn_bytes"))
                .map(|x| x / 1024.0)
        },
        1,
        false,
    );
    add(
        format!("idle: server CPU % over {} s", p.idle_hold_s),
        &|c| get("idle", c).and_then(|v| num(v, "server_cpu_idle_pct")),
        1,
        false,
    );
    add(
        "idle: connect+subscribe rate (sockets/s)".into(),
        &|c| get("idle", c).and_then(|v| num(v, "connects_per_s")),
        0,
        true,
    );
    let fixed = p.fanout.rates.first().copied().unwrap_or(0.0);
    // Each run's deciding attempt (a retried step by its retry; both are in the ladder below),
    // then the median over the runs (`scenarios::Decided`): medians of the ladder's rows,
    // grouped by label, would mix runs whose first attempt passed with the others' retries.
    let fx = |c: Proto, path: &str| {
        get("fanout", c)
            .and_then(|v| v.pointer("/decided/fixed"))
            .and_then(|s| num(s, path))
    };
    add(
        format!("fan-out fixed {fixed:.0} msg/s: deliveries/s"),
        &|c| fx(c, "deliveries_s"),
        0,
        true,
    );
    add(
        "fan-out fixed: p50 ms".into(),
        &|c| fx(c, "lat.p50_ms"),
        2,
        false,
    );
    add(
        "fan-out fixed: p99 ms".into(),
        &|c| fx(c, "lat.p99_ms"),
        2,
        false,
    );
    add(
        "fan-out fixed: p99.9 ms".into(),
        &|c| fx(c, "lat.p999_ms"),
        2,
        false,
    );
    add(
        "fan-out fixed: lost deliveries".into(),
        &|c| fx(c, "lost"),
        0,
        false,
    );
    add(
        "fan-out fixed: server CPU %".into(),
        &|c| fx(c, "server_cpu_pct"),
        0,
        false,
    );
    // CPU time per unit of work: % of one core × 10,000 / units per second = µs per unit.
    add(
        "fan-out fixed: server CPU µs per message".into(),
        &|c| Some(fx(c, "server_cpu_pct")? * 1e4 / fx(c, "sent_msg_s")?),
        1,
        false,
    );
    add(
        "fan-out fixed: server CPU µs per delivery".into(),
        &|c| Some(fx(c, "server_cpu_pct")? * 1e4 / fx(c, "deliveries_s")?),
        2,
        false,
    );
    let pk = |c: Proto, path: &str| {
        get("fanout", c)
            .and_then(|v| v.pointer("/decided/peak"))
            .and_then(|s| num(s, path))
    };
    add(
        format!("fan-out peak deliveries/s with p99 ≤ {b:.0} ms (ladder)"),
        &|c| pk(c, "deliveries_s"),
        0,
        true,
    );
    add(
        "fan-out peak: p99 ms".into(),
        &|c| pk(c, "lat.p99_ms"),
        2,
        false,
    );
    let hp = |c: Proto, path: &str| {
        get("fanout", c)
            .and_then(|v| v.pointer("/decided/half_peak"))
            .and_then(|s| num(s, path))
    };
    add(
        "fan-out at half peak rate: p99 ms".into(),
        &|c| hp(c, "lat.p99_ms"),
        2,
        false,
    );
    add(
        "ingest: acked sends/s".into(),
        &|c| get("ingest", c).and_then(|v| num(v, "acked_per_s")),
        0,
        true,
    );
    for (k, l) in [("p50_ms", "p50"), ("p99_ms", "p99"), ("p999_ms", "p99.9")] {
        add(
            format!("ingest: ack {l} ms"),
            &|c| get("ingest", c).and_then(|v| num(v, &format!("lat.{k}"))),
            2,
            false,
        );
    }
    add(
        "ingest: server CPU %".into(),
        &|c| get("ingest", c).and_then(|v| num(v, "server_cpu_pct")),
        0,
        false,
    );
    add(
        "ingest: server CPU µs per acked send".into(),
        &|c| {
            let v = get("ingest", c)?;
            Some(num(v, "server_cpu_pct")? * 1e4 / num(v, "acked_per_s")?)
        },
        1,
        false,
    );
    add(
        "history: seed rate (msgs/s, one room)".into(),
        &|c| get("history", c).and_then(|v| num(v, "seed_msgs_per_s")),
        0,
        true,
    );
    for (k, l) in [("p50_ms", "p50"), ("p99_ms", "p99"), ("p999_ms", "p99.9")] {
        add(
            format!("history: page of {} {l} ms", p.history.page),
            &|c| get("history", c).and_then(|v| num(v, &format!("lat.{k}"))),
            3,
            false,
        );
    }
    add(
        format!("history: page of {} over REST p99 ms", p.history.page),
        &|c| get("history", c).and_then(|v| num(v, "rest_lat.p99_ms")),
        3,
        false,
    );
    add(
        "replay: history records/s".into(),
        &|c| get("replay", c).and_then(|v| num(v, "records_per_s")),
        0,
        true,
    );
    add(
        "cold start: ms to first accepted connection".into(),
        &|c| get("coldstart", c).and_then(|v| num(v, "accept_ms")),
        1,
        false,
    );
    add(
        "cold start: ms to health 200".into(),
        &|c| get("coldstart", c).and_then(|v| num(v, "ready_ms")),
        1,
        false,
    );
    add(
        format!(
            "cold start with {} messages: ms to health 200",
            p.history.messages
        ),
        &|c| get("coldstart", c).and_then(|v| num(v, "seeded_ready_ms")),
        1,
        false,
    );

    let mut s = String::new();
    let title = match mode {
        Mode::Quick => "Quick run",
        Mode::Full => "Full run",
    };
    s.push_str(&format!(
        "### {title} — {date}\n\nGenerated by `bench/run {}` (started {}, LiveChat at `{}`, load average at start {}). Machine: {} cores ({}), {}, kernel {}, `ulimit -n` {}; {}; Centrifugo: {}.\n",
        mode.name(),
        started.format("%Y-%m-%d %H:%M %Z"),
        machine["livechat_commit"].as_str().unwrap_or("?"),
        machine["loadavg_at_start"].as_str().unwrap_or("?"),
        machine["nproc"].as_str().unwrap_or("?"),
        machine["cpu"].as_str().unwrap_or("?").trim(),
        machine["free_g"].as_str().unwrap_or("?"),
        machine["kernel"].as_str().unwrap_or("?"),
        machine["ulimit_n"].as_str().unwrap_or("?"),
        machine["rustc"].as_str().unwrap_or("?"),
        match machine["centrifugo"].as_str().unwrap_or("") { "" => "not run", label => label },
    ));
    s.push_str(&format!(
        "Runs per cell: {} (median){}. Fan-out shape: {} rooms × {} members, {} publishers, {} B messages, steps of {} s after {} s warm-up; ladder {:?} msg/s. Ingest: {} sockets × {} in flight for {} s. History: {} messages, {} pages.\n\n",
        p.runs,
        if p.runs == 1 { " — single run, expect noise of ±10–20 %" } else { "" },
        p.fanout.rooms, p.fanout.members, p.fanout.publishers, p.fanout.size,
        p.fanout.duration_s, p.fanout.warmup_s, p.fanout.rates,
        p.ingest.conns, p.ingest.window, p.ingest.duration_s,
        p.history.messages, p.history.queries,
    ));
    // header
    s.push_str("| metric |");
    for c in &cols {
        s.push_str(&format!(" {} |", c.title()));
    }
    let has_cf = cols.contains(&Proto::Centrifugo);
    let has_bare = cols.contains(&Proto::Bare);
    if has_cf {
        s.push_str(" LiveChat / Centrifugo |");
    }
    if has_bare {
        s.push_str(" LiveChat / bare |");
    }
    s.push_str("\n|---|");
    for _ in &cols {
        s.push_str("---:|");
    }
    if has_cf {
        s.push_str("---:|");
    }
    if has_bare {
        s.push_str("---:|");
    }
    s.push('\n');
    let idx = |x: Proto| cols.iter().position(|c| *c == x);
    for (label, vals, digits, _hb) in &rows {
        s.push_str(&format!("| {label} |"));
        for v in vals {
            s.push_str(&format!(" {} |", fmt(*v, *digits)));
        }
        let lc = idx(Proto::Livechat).and_then(|i| vals[i]);
        if has_cf {
            s.push_str(&format!(
                " {} |",
                ratio(lc, idx(Proto::Centrifugo).and_then(|i| vals[i]))
            ));
        }
        if has_bare {
            s.push_str(&format!(
                " {} |",
                ratio(lc, idx(Proto::Bare).and_then(|i| vals[i]))
            ));
        }
        s.push('\n');
    }
    s.push_str("\n(– = not applicable or not run: the bare server keeps no history and has no replay; only LiveChat has a log to replay. Ratios are LiveChat's value over the peer's, whatever the direction of \"better\".)\n");

    // Full fan-out ladders.
    if med.contains_key("fanout") {
        s.push_str("\nFan-out ladder (median per step; `lost` = expected − delivered after the drain):\n\n| peer | step | target msg/s | sent msg/s | deliveries/s | p50 ms | p99 ms | p99.9 ms | max ms | lost | closed | server CPU % | loadgen CPU % | machine CPU % | server RSS MB |\n|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
        for &c in &cols {
            if let Some(v) = get("fanout", c) {
                for st in v["steps"].as_array().into_iter().flatten() {
                    s.push_str(&format!(
                        "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
                        c.title(),
                        st["label"].as_str().unwrap_or(""),
                        fmt(num(st, "target_msg_s"), 0),
                        fmt(num(st, "sent_msg_s"), 0),
                        fmt(num(st, "deliveries_s"), 0),
                        fmt(num(st, "lat.p50_ms"), 2),
                        fmt(num(st, "lat.p99_ms"), 2),
                        fmt(num(st, "lat.p999_ms"), 2),
                        fmt(num(st, "lat.max_ms"), 1),
                        fmt(num(st, "lost"), 0),
                        fmt(num(st, "closed"), 0),
                        fmt(num(st, "server_cpu_pct"), 0),
                        fmt(num(st, "loadgen_cpu_pct"), 0),
                        fmt(num(st, "machine_cpu_pct"), 0),
                        fmt(num(st, "server_rss_mb"), 0),
                    ));
                }
            }
        }
    }
    s.push_str(&problems(med, notes));
    s.push_str(&format!(
        "\nRaw results: `bench/results/{date}-<scenario>-{}.json`.\n",
        mode.name()
    ));
    s
}

/// "Problems in this run": the cells whose medians are failures (scenario / column: error),
/// then `notes`; empty when there are none.
pub fn problems(med: &BTreeMap<String, BTreeMap<&'static str, Value>>, notes: &[String]) -> String {
    let mut lines = Vec::new();
    for (sc, m) in med {
        for (column, v) in m {
            if let Some(e) = v.get("error") {
                lines.push(format!("- {sc} / {column}: {}\n", e.as_str().unwrap_or("")));
            }
        }
    }
    lines.extend(notes.iter().map(|n| format!("- {n}\n")));
    if lines.is_empty() {
        return String::new();
    }
    format!("\nProblems in this run:\n\n{}", lines.concat())
}

/// Replaces the named generated section in the README (between its markers), or appends it.
pub fn write_section(readme: &Path, name: &str, section: &str) -> Result<()> {
    write_section_by(readme, name, "bench/run", section)
}

/// [`write_section`] for a document another command (`by`) generates.
pub fn write_section_by(readme: &Path, name: &str, by: &str, section: &str) -> Result<()> {
    let begin = format!("<!-- BEGIN {name} results (generated by {by}; edits are overwritten) -->");
    let end = format!("<!-- END {name} results -->");
    let old = std::fs::read_to_string(readme).unwrap_or_default();
    let block = format!("{begin}\n{section}{end}");
    let new = match (old.find(&begin), old.find(&end)) {
        (Some(a), Some(z)) if z > a => format!("{}{}{}", &old[..a], block, &old[z + end.len()..]),
        _ => format!("{}\n{}\n", old.trim_end(), block),
    };
    std::fs::write(readme, new).with_context(|| format!("writing {}", readme.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenarios::{Decided, FanoutResult, Step};
    use crate::stats::Lat;

    fn step(rate: f64, p99: f64, cpu: f64) -> Step {
        Step {
            target_msg_s: rate,
            deliveries_s: rate * 100.0,
            server_cpu_pct: cpu,
            lat: Lat {
                p99_ms: p99,
                count: 1000,
                ..Lat::default()
            },
            ..Step::default()
        }
    }

    /// The summary takes each run's deciding attempts, then medians over runs: a retry taken by
    /// one run only does not stand for the runs whose first attempt passed.
    #[test]
    fn each_run_is_decided_by_its_own_attempts_before_the_median() {
        // Each run's deciding attempts (a retried step by its retry).
        let runs: Vec<Value> = [
            // the fixed step passed; the next broke on its retry too
            vec![step(500.0, 14.0, 93.0), step(750.0, 180.0, 125.0)],
            // the next passed on its retry
            vec![step(500.0, 15.0, 89.0), step(750.0, 40.0, 120.0)],
            // the fixed step broke on its retry: no peak
            vec![step(500.0, 59.0, 116.0)],
        ]
        .into_iter()
        .map(|deciding| {
            let mut decided = Decided::of(&deciding, 50.0);
            // Half of each run's peak (none for the run without one).
            if decided.peak.target_msg_s > 0.0 {
                let half = decided.peak.target_msg_s / 2.0;
                decided.half_peak = Some(step(half, half / 50.0, 40.0));
            }
            serde_json::to_value(FanoutResult {
                decided,
                ..FanoutResult::default()
            })
            .unwrap()
        })
        .collect();
        assert_eq!(num(&runs[1]["decided"]["fixed"], "lat.p99_ms"), Some(15.0));
        assert_eq!(
            num(&runs[1]["decided"]["peak"], "deliveries_s"),
            Some(75_000.0)
        );
        assert_eq!(num(&runs[2]["decided"]["fixed"], "lat.p99_ms"), Some(59.0));
        assert_eq!(num(&runs[2]["decided"]["peak"], "deliveries_s"), Some(0.0));
        let m = median_value(&runs);
        assert_eq!(num(&m["decided"]["fixed"], "lat.p99_ms"), Some(15.0));
        assert_eq!(num(&m["decided"]["fixed"], "server_cpu_pct"), Some(93.0));
        assert_eq!(num(&m["decided"]["peak"], "deliveries_s"), Some(50_000.0));
        // The p99 of the runs that have a peak (the third has none).
        assert_eq!(num(&m["decided"]["peak"], "lat.p99_ms"), Some(27.0));
        // The half-peak steps ran at 250 and 375 msg/s: their median, not the first found.
        assert_eq!(num(&m["decided"]["half_peak"], "target_msg_s"), Some(312.5));
        assert_eq!(num(&m["decided"]["half_peak"], "lat.p99_ms"), Some(6.25));
    }
}
