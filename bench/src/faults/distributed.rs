//! The scenarios of distributed mode, on the servers of `scripts/dev-services` (Kafka,
//! Cassandra, a MongoDB-wire server, ClickHouse, Redis, Memcached): a LiveChat process SIGKILLed
//! with sends in flight, a processor SIGKILLed under load, the Kafka broker SIGKILLed under load,
//! and Redis stopped under load. Names on the servers are fresh for each scenario.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::json;
use tokio::process::{Child, Command};

use super::load::{kills_under_load, load_row, uneven, Load};
use super::node::Node;
use super::{Profile, Row};
use crate::client::{livechat_world, Rest};
use crate::scaleout::distributed_env;
use crate::stats::now_ns;

/// Where distributed mode's servers are and how to stop and start one.
#[derive(Debug, Clone)]
pub struct Stack {
    /// `config/livechat.distributed.toml`.
    pub config: PathBuf,
    /// `scripts/dev-services`.
    pub services: PathBuf,
}

impl Stack {
    async fn service(&self, action: &str, name: &str) -> Result<()> {
        let out = Command::new(&self.services)
            .args([action, name])
            .stdout(Stdio::null())
            .output()
            .await
            .with_context(|| format!("scripts/dev-services {action} {name}"))?;
        if !out.status.success() {
            bail!(
                "scripts/dev-services {action} {name}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    }

    fn args(&self, role: &str) -> Vec<String> {
        vec![
            "--config".into(),
            self.config.display().to_string(),
            role.into(),
        ]
    }
}

/// The environment of a scenario's processes: the stack's, with the Kafka adapters' lifecycle
/// (sequencer sessions and their partitions) logged at info, so that a failed run's log says
/// where the path stopped.
fn scenario_env(id: &str) -> Vec<(String, String)> {
    let mut env = distributed_env(id);
    env.push(("RUST_LOG".into(), "warn,livechat_sinks::kafka=info".into()));
    env
}

/// Fresh names on the shared servers for one scenario.
fn names() -> String {
    format!("faults{:x}", now_ns() ^ std::process::id() as u64)
}

/// A processor process (no HTTP): started, SIGKILLed, started again.
struct Processor {
    bin: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
    dir: PathBuf,
    child: Option<Child>,
}

impl Processor {
    fn start(&mut self) -> Result<()> {
        let (bin, args, env, dir) = (&self.bin, &self.args, &self.env, &self.dir);
        std::fs::create_dir_all(dir)?;
        let log = std::fs::File::create(dir.join("processor.log"))?;
        let child = Command::new(bin)
            .arg("--data-dir")
            .arg(dir.join("data"))
            .args(args)
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .kill_on_drop(true)
            .spawn()
            .context("spawning a processor")?;
        self.child = Some(child);
        Ok(())
    }

    async fn sigkill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.start_kill();
            let _ = c.wait().await;
        }
    }
}

/// `livechat serve` on the distributed servers SIGKILLed `serve_kills` times under load and
/// started again: sends in flight at each kill may have reached the commands topic without
/// their acknowledgement reaching the client, which sends them again with the same
/// `client_msg_id` (the sequencer must answer the first message, not store a second).
pub async fn serve_kills(bin: &Path, work: &Path, p: &Profile, stack: &Stack) -> Result<Row> {
    let id = names();
    let dir = work.join("dist-kill");
    let node = Node::start_with(bin, &dir, stack.args("serve"), scenario_env(&id)).await?;
    let secs = p.dist_secs.max(15.0 * p.serve_kills as f64);
    let loaded = kills_under_load(node, &id, p, p.serve_kills, secs).await?;
    Ok(load_row(
        "distributed: LiveChat SIGKILL under load",
        format!(
            "{} × SIGKILL of `livechat serve` (ingress, sequencer, processors) with sends in flight (recovery: SIGKILL → health 200)",
            p.serve_kills
        ),
        p,
        &loaded,
    ))
}

/// How the broker goes away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outage {
    /// SIGTERM: the broker shuts down cleanly (a rolling restart).
    Restart,
    /// SIGKILL: a crash; the broker recovers its logs when it starts again.
    Crash,
}

/// `livechat serve` on the distributed servers, the Kafka broker stopped under load (every send
/// goes through it) and started again on its data after `broker_down_secs`. Sends meanwhile
/// are answered `unavailable` (or time out) and sent again by the clients; once the broker is
/// back, sends must be acknowledged again, and every acknowledged one stored exactly once.
pub async fn broker_outage(
    bin: &Path,
    work: &Path,
    p: &Profile,
    stack: &Stack,
    how: Outage,
) -> Result<Row> {
    let id = names();
    let (name, action, what) = match how {
        Outage::Restart => ("dist-broker-restart", "down", "SIGTERM (clean shutdown)"),
        Outage::Crash => ("dist-broker-kill", "kill", "SIGKILL"),
    };
    let dir = work.join(name);
    let mut node = Node::start_with(bin, &dir, stack.args("serve"), scenario_env(&id)).await?;
    let world = Arc::new(livechat_world(node.addr(), 4, p.rooms, &id).await?);
    let down_at = 3.0;
    let load = Load::start(&node.target(), world, p);
    load.until(down_at).await;
    let acked_before = load_acked(&load);
    let killed = Instant::now();
    let restarted = async {
        stack.service(action, "kafka").await?;
        tokio::time::sleep(Duration::from_secs_f64(p.broker_down_secs)).await;
        stack.service("up", "kafka").await
    }
    .await;
    if let Err(e) = restarted {
        // Whatever happened, the broker is needed by what runs next.
        let _ = stack.service("up", "kafka").await;
        return Err(e);
    }
    let broker_ms = killed.elapsed().as_secs_f64() * 1000.0;
    // Back in service: the first acknowledgement after the broker answers again.
    let (ready, acked_ready) = (Instant::now(), load_acked(&load));
    while load_acked(&load) == acked_ready && ready.elapsed() < Duration::from_secs(120) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let first_ack_ms = ready.elapsed().as_secs_f64() * 1000.0;
    let resumed = load_acked(&load) > acked_ready;
    let secs = load.elapsed() + 5.0;
    let loaded = load.finish(secs, vec![]).await;
    node.stop().await;
    let loaded = loaded?;
    let mut row = load_row(
        &format!("distributed: Kafka broker {what} under load"),
        format!(
            "{what} of the only Kafka broker, started again on its data {:.0} s later",
            p.broker_down_secs
        ),
        p,
        &loaded,
    );
    row.recovery = if resumed {
        format!(
            "broker ready {broker_ms:.0} ms after it was stopped; first ack {first_ack_ms:.0} ms after that"
        )
    } else {
        format!("no acknowledgement within {first_ack_ms:.0} ms of the broker's return")
    };
    row.passed &= resumed;
    row.detail["acked_before_kill"] = json!(acked_before);
    row.detail["broker_ready_ms"] = json!(broker_ms);
    row.detail["first_ack_ms"] = json!(first_ack_ms);
    Ok(row)
}

/// An ingress process and each durable processor in its own process; the analytics processor
/// SIGKILLed and restarted `kills` times under load. Analytics must count every message once
/// (its sink is idempotent), history must hold every acknowledged one.
pub async fn processor_kills(bin: &Path, work: &Path, p: &Profile, stack: &Stack) -> Result<Row> {
    let id = names();
    let env = scenario_env(&id);
    let dir = work.join("dist-processor-kill");
    let mut ingress = Node::start_with(
        bin,
        &dir.join("ingress"),
        stack.args("ingress"),
        env.clone(),
    )
    .await?;
    let mut procs: Vec<Processor> = ["history", "notifications", "analytics"]
        .iter()
        .map(|name| Processor {
            bin: bin.to_path_buf(),
            args: vec![
                "--config".into(),
                stack.config.display().to_string(),
                "processor".into(),
                name.to_string(),
            ],
            env: env.clone(),
            dir: dir.join(name),
            child: None,
        })
        .collect();
    for pr in &mut procs {
        pr.start()?;
    }
    let world = Arc::new(livechat_world(ingress.addr(), 4, p.rooms, &id).await?);
    let secs = p.dist_secs;
    let load = Load::start(&ingress.target(), world, p);
    let mut kills = 0;
    for at in uneven(p.dist_kills, secs) {
        load.until(at).await;
        let analytics = &mut procs[2];
        analytics.sigkill().await;
        analytics.start()?;
        kills += 1;
    }
    let loaded = load.finish(secs, vec![]).await;
    for pr in &mut procs {
        pr.sigkill().await;
    }
    ingress.stop().await;
    let loaded = loaded?;
    let mut row = load_row(
        "distributed: processor SIGKILL under load",
        format!(
            "{kills} × SIGKILL of the analytics processor (Kafka group rebalance, records redelivered)"
        ),
        p,
        &loaded,
    );
    // A processor has no health endpoint: it is back when its lag returns to 0.
    row.recovery = format!(
        "consumer lag 0 {} ms after the load",
        loaded.lag.as_millis()
    );
    Ok(row)
}

/// `livechat serve` on the distributed servers, Redis stopped for `redis_down_secs` under load
/// (sessions and presence live there). Sends on open sockets must go on; REST calls meanwhile
/// are probed for 5xx answers.
pub async fn redis_down(bin: &Path, work: &Path, p: &Profile, stack: &Stack) -> Result<Row> {
    let id = names();
    let env = scenario_env(&id);
    let dir = work.join("dist-redis-down");
    let mut node = Node::start_with(bin, &dir, stack.args("serve"), env).await?;
    let world = Arc::new(livechat_world(node.addr(), 4, p.rooms, &id).await?);
    let down_at = 2.0;
    let secs = down_at + p.redis_down_secs + 5.0;
    let load = Load::start(&node.target(), world.clone(), p);
    // REST calls all along: statuses ≥ 500 are what "no 5xx" forbids.
    let (probes, errors5) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let prober = {
        let (probes, errors5, cookie, addr) = (
            probes.clone(),
            errors5.clone(),
            world.cookies[1].clone(),
            node.addr(),
        );
        let room = world.rooms[0].clone();
        tokio::spawn(async move {
            let rest = Rest::new(addr);
            loop {
                for path in [
                    "/api/users/get-me".to_string(),
                    format!("/api/messages/get-messages/{room}?after_seq=0&limit=1"),
                ] {
                    if let Ok((s, _, _)) = rest
                        .call(reqwest::Method::GET, &path, Some(&cookie), None)
                        .await
                    {
                        probes.fetch_add(1, Ordering::Relaxed);
                        if s >= 500 {
                            errors5.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    load.until(down_at).await;
    let acked_before = load_acked(&load);
    stack.service("down", "redis").await?;
    load.until(down_at + p.redis_down_secs).await;
    let acked_during = load_acked(&load) - acked_before;
    let back = Instant::now();
    stack.service("up", "redis").await?;
    let redis_ms = back.elapsed().as_secs_f64() * 1000.0;
    let loaded = load.finish(secs, vec![]).await;
    prober.abort();
    node.stop().await;
    let loaded = loaded?;
    let refused = loaded.ledger.refused.load(Ordering::Relaxed);
    let acked = loaded.ledger.acked_count();
    let success = acked as f64 / (acked + refused).max(1) as f64;
    let mut row = load_row(
        "distributed: Redis down under load",
        format!(
            "Redis (sessions, presence) stopped for {:.0} s",
            p.redis_down_secs
        ),
        p,
        &loaded,
    );
    let (probes, errors5) = (
        probes.load(Ordering::Relaxed),
        errors5.load(Ordering::Relaxed),
    );
    row.recovery =
        format!("{acked_during} sends acked while Redis was down; Redis back in {redis_ms:.0} ms");
    row.notes = format!(
        "{:.2} % of sends succeeded; {errors5} of {probes} REST calls answered 5xx; {}",
        success * 100.0,
        row.notes
    );
    row.passed = loaded.verdict.clean() && success >= 0.999 && errors5 == 0 && acked_during > 0;
    row.detail["rest_probes"] = json!(probes);
    row.detail["rest_5xx"] = json!(errors5);
    row.detail["acked_while_down"] = json!(acked_during);
    Ok(row)
}

fn load_acked(load: &Load) -> u64 {
    load.ledger().acked_count()
}
