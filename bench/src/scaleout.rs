//! Scale-out: LiveChat's distributed mode beside the embedded single binary, in one invocation
//! on one machine (`bench/run distributed`). The distributed stack is the servers of
//! `scripts/dev-services` (Kafka, Cassandra, a MongoDB-wire directory, ClickHouse, Redis,
//! Memcached), emptied by `bench/run` first; the invocation uses names of its own on them
//! (topics, keyspace, databases, key prefixes) and new users and rooms per run.
//!
//! Scenarios, each on a fresh server per run, embedded and distributed interleaved:
//! - durable ingest in two shapes: 16 sockets × 1 send in flight (the latency of one send) and
//!   64 × 2 (throughput);
//! - fan-out through the log across two ingress processes: 20 rooms × 20 members at 500 msg/s,
//!   every member publishing, sockets spread over both processes, so about half of the deliveries reach a member through
//!   the log from the process that took the send (embedded: one process).
//!
//! Over each measurement window the CPU of every process is sampled: LiveChat's own (all its
//! processes) and each server's, reported as µs per message so the next bottleneck is named.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use crate::client::{livechat_world, Target};
use crate::proto::Proto;
use crate::scenarios::{self, FanoutCfg, IngestCfg};
use crate::servers::{self, Bins, Server, CENTRIFUGO_SECRET};
use crate::stats::Watch;
use crate::suite::{failure, fmt, machine_info, median_value, num, problems, ratio, write_section};

/// The servers of the distributed stack, as `scripts/dev-services` names them.
pub const SERVICES: [&str; 6] = [
    "kafka",
    "cassandra",
    "mongo",
    "clickhouse",
    "redis",
    "memcached",
];

pub struct ScaleOpts {
    /// A `livechat` built with `--features distributed` (it runs both stacks).
    pub livechat: PathBuf,
    /// The distributed configuration (config/livechat.distributed.toml).
    pub config: PathBuf,
    /// Where `scripts/dev-services` keeps its services (their pid files).
    pub services_home: PathBuf,
    pub work: PathBuf,
    pub results: PathBuf,
    pub readme: PathBuf,
    pub src_ips: Vec<Ipv4Addr>,
    pub runs: usize,
    /// Only these scenarios (ingest-16x1, ingest-64x2, fanout); empty = all.
    pub scenarios: Vec<String>,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Stack {
    Embedded,
    Distributed,
}

impl Stack {
    fn name(self) -> &'static str {
        match self {
            Stack::Embedded => "embedded",
            Stack::Distributed => "distributed",
        }
    }
}

/// The run number of the unrecorded warm-up (its own users and rooms).
const WARM_UP_RUN: usize = 90;
/// The warm-up's scenario: ingest 64 × 2 for [`WARM_UP_S`].
const WARM_UP: &str = "warm-up";
const WARM_UP_S: f64 = 60.0;

fn ingest_shapes() -> Vec<(&'static str, IngestCfg)> {
    let shape = |conns, window| IngestCfg {
        conns,
        rooms: 16,
        window,
        warmup_s: 1.0,
        duration_s: 5.0,
        size: 100,
    };
    vec![("ingest-16x1", shape(16, 1)), ("ingest-64x2", shape(64, 2))]
}

/// The ingest shape of a scenario, the warm-up's included.
fn ingest_shape(scenario: &str) -> Option<IngestCfg> {
    if scenario == WARM_UP {
        let (_, heavy) = ingest_shapes().pop()?;
        return Some(IngestCfg {
            duration_s: WARM_UP_S,
            ..heavy
        });
    }
    ingest_shapes()
        .into_iter()
        .find(|(n, _)| *n == scenario)
        .map(|(_, cfg)| cfg)
}

fn fanout_cfg() -> FanoutCfg {
    FanoutCfg {
        rooms: 20,
        members: 20,
        // The quick suite's shape: one publisher per room (25 msg/s each, several sends in
        // flight on a socket while their acks come back).
        publishers: 20,
        rates: vec![500.0],
        warmup_s: 1.0,
        duration_s: 5.0,
        drain_s: 1.0,
        size: 100,
        break_p99_ms: 50.0,
        half_peak: false,
        retry_broken: false,
    }
}

/// The pid of each service, from the pid files `scripts/dev-services` writes
/// (`<home>/<service>/run/<service>.pid`: "pid program").
pub fn service_pids(home: &Path) -> Result<Vec<(String, u32)>> {
    SERVICES
        .iter()
        .map(|svc| {
            let file = home.join(svc).join("run").join(format!("{svc}.pid"));
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("{svc} is not running ({} missing)", file.display()))?;
            let pid: u32 = text
                .split_whitespace()
                .next()
                .and_then(|p| p.parse().ok())
                .with_context(|| format!("no pid in {}", file.display()))?;
            if !Path::new(&format!("/proc/{pid}")).exists() {
                bail!("{svc} (pid {pid}) is not running: start it with scripts/dev-services up");
            }
            Ok((svc.to_string(), pid))
        })
        .collect()
}

/// Names on the shared servers unique to one run, and the limits lifted as for every peer.
pub fn distributed_env(id: &str) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = servers::livechat_env()
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    for (k, v) in [
        ("LIVECHAT_LOG__KAFKA__NAMESPACE", format!("{id}.")),
        ("LIVECHAT_DIRECTORY__MONGO__DATABASE", id.to_string()),
        ("LIVECHAT_HISTORY__CASSANDRA__KEYSPACE", id.to_string()),
        ("LIVECHAT_ANALYTICS__CLICKHOUSE__DATABASE", id.to_string()),
        ("LIVECHAT_SESSIONS__REDIS__NAMESPACE", format!("{id}:")),
        ("LIVECHAT_PRESENCE__REDIS__NAMESPACE", format!("{id}:")),
    ] {
        env.push((k.to_string(), v));
    }
    env
}

/// Starts `nodes` LiveChat processes of one stack, each with its own data directory.
async fn start(
    o: &ScaleOpts,
    stack: Stack,
    nodes: usize,
    dir: &Path,
    id: &str,
) -> Result<Vec<Server>> {
    let mut started = Vec::new();
    for n in 0..nodes {
        let node_dir = dir.join(format!("node{n}"));
        let srv = match stack {
            Stack::Embedded => {
                let bins = Bins::livechat_only(&o.livechat);
                servers::start(Proto::Livechat, &bins, &node_dir, 0).await
            }
            Stack::Distributed => {
                servers::start_livechat(&o.livechat, &node_dir, &o.config, &distributed_env(id))
                    .await
            }
        };
        match srv {
            Ok(s) => started.push(s),
            Err(e) => {
                for s in started {
                    s.kill().await;
                }
                return Err(e);
            }
        }
    }
    Ok(started)
}

/// One scenario on one stack: start, build the world, run, stop.
async fn one(
    o: &ScaleOpts,
    stack: Stack,
    scenario: &str,
    run: usize,
    services: &[(String, u32)],
) -> Value {
    let dir = o.work.join(format!("{scenario}-{}-{run}", stack.name()));
    let _ = std::fs::remove_dir_all(&dir);
    // One set of names per invocation (like a deployment whose processes restart), new rooms
    // and users per run: names per run would leave the servers ever more topics, keyspaces and
    // databases, and each run slower than the one before (measured: 366, 298, 225 sends/s).
    let mut id = format!("bench{:x}", std::process::id() % 0xffff);
    // The warm-up has names of its own: the minute of sends its processors leave unread would
    // otherwise be read by the measured runs' processors, beside their own load.
    if scenario == WARM_UP {
        id.push_str("warm");
    }
    let tag = format!("{}{run}", scenario.replace('-', ""));
    let nodes = if scenario == "fanout" && stack == Stack::Distributed {
        2
    } else {
        1
    };
    let res = async {
        let srvs = start(o, stack, nodes, &dir, &id).await?;
        let watch = Watch {
            server: srvs.iter().map(|s| s.pid).collect(),
            components: match stack {
                Stack::Embedded => Vec::new(),
                Stack::Distributed => services.to_vec(),
            },
        };
        let target = Target {
            proto: Proto::Livechat,
            addr: srvs[0].addr,
            other_nodes: srvs[1..].iter().map(|s| s.addr).collect(),
            src_ips: o.src_ips.clone(),
            secret: CENTRIFUGO_SECRET.to_string(),
        };
        let res = async {
            if scenario == "fanout" {
                let cfg = fanout_cfg();
                let w = livechat_world(target.addr, 5, cfg.rooms, &tag).await?;
                let r = scenarios::fanout(&target, &w, &cfg, &watch).await?;
                Ok::<_, anyhow::Error>(serde_json::to_value(r)?)
            } else {
                let cfg = ingest_shape(scenario).context("unknown scenario")?;
                let w = livechat_world(target.addr, 4, cfg.rooms, &tag).await?;
                let r = scenarios::ingest(&target, &w, &cfg, &watch).await?;
                eprintln!(
                    "  {:.0} acked sends/s, ack p50 {:.2} ms p99 {:.2} ms, refused {}",
                    r.acked_per_s, r.lat.p50_ms, r.lat.p99_ms, r.send_errors
                );
                Ok(serde_json::to_value(r)?)
            }
        }
        .await;
        for s in srvs {
            s.stop(Duration::from_secs(10)).await?;
        }
        res
    }
    .await;
    let _ = std::fs::remove_dir_all(&dir);
    res.unwrap_or_else(|e| {
        eprintln!("  failed: {e:#}");
        failure(&e)
    })
}

pub async fn run(o: ScaleOpts) -> Result<()> {
    let services = service_pids(&o.services_home)?;
    std::fs::create_dir_all(&o.work)?;
    std::fs::create_dir_all(&o.results)?;
    let started = chrono::Local::now();
    let mut scenarios: Vec<&str> = ingest_shapes().iter().map(|(n, _)| *n).collect();
    scenarios.push("fanout");
    scenarios.retain(|s| o.scenarios.is_empty() || o.scenarios.iter().any(|x| x == s));
    let mut all: BTreeMap<String, BTreeMap<&'static str, Vec<Value>>> = BTreeMap::new();
    // The servers were just started, and their JVMs compile the hot paths under the first
    // minute or so of load; a deployment's servers run warm. Measured on 2026-11-29 with 64 × 2
    // runs of 10 s one after another on freshly started servers (after a first one at 810):
    // 1,335, 1,920, 2,410, 2,487, 2,966, 3,187, 3,475 sends/s; eight runs of 5 s (with a fresh
    // LiveChat and world each) stayed between 342 and 816. So one long run warms them, unrecorded.
    eprintln!("[warm-up] distributed ingest-64x2 for {WARM_UP_S} s, not recorded");
    one(&o, Stack::Distributed, WARM_UP, WARM_UP_RUN, &services).await;
    for run in 0..o.runs {
        for &scenario in &scenarios {
            for stack in [Stack::Embedded, Stack::Distributed] {
                eprintln!("[{scenario}] {} run {}", stack.name(), run + 1);
                let v = one(&o, stack, scenario, run, &services).await;
                all.entry(scenario.to_string())
                    .or_default()
                    .entry(stack.name())
                    .or_default()
                    .push(v);
            }
        }
    }
    let medians: BTreeMap<String, BTreeMap<&'static str, Value>> = all
        .iter()
        .map(|(sc, stacks)| {
            let m = stacks
                .iter()
                .map(|(st, runs)| (*st, median_value(runs)))
                .collect();
            (sc.clone(), m)
        })
        .collect();
    let mut machine = machine_info(&Bins::livechat_only(&o.livechat), &[]).await;
    machine["services"] = json!(services.iter().map(|(n, _)| n).collect::<Vec<_>>());
    let date = started.format("%Y-%m-%d").to_string();
    let path = o.results.join(format!("{date}-distributed.json"));
    let doc = json!({
        "started": started.to_rfc3339(),
        "machine": machine,
        "ingest": ingest_shapes().iter().map(|(n, c)| (n.to_string(), serde_json::to_value(c).unwrap_or(Value::Null))).collect::<BTreeMap<_, _>>(),
        "fanout": fanout_cfg(),
        "runs": all,
        "median": medians,
    });
    std::fs::write(&path, serde_json::to_vec_pretty(&doc)?)
        .with_context(|| format!("writing {}", path.display()))?;
    eprintln!("wrote {}", path.display());
    let section = render(&medians, &machine, &services, o.runs, &started, &date);
    write_section(&o.readme, "distributed", &section)?;
    println!("{section}");
    Ok(())
}

fn render(
    med: &BTreeMap<String, BTreeMap<&'static str, Value>>,
    machine: &Value,
    services: &[(String, u32)],
    runs: usize,
    started: &chrono::DateTime<chrono::Local>,
    date: &str,
) -> String {
    let get = |sc: &str, st: &str| -> Option<&Value> {
        med.get(sc)
            .and_then(|m| m.get(st))
            .filter(|v| v.get("error").is_none())
    };
    // (label, embedded, distributed, digits)
    let mut rows: Vec<(String, Option<f64>, Option<f64>, usize)> = Vec::new();
    let both = |f: &dyn Fn(&str) -> Option<f64>| (f("embedded"), f("distributed"));
    for (sc, cfg) in ingest_shapes() {
        let shape = format!("ingest {} sockets × {}", cfg.conns, cfg.window);
        let metric = |path: &'static str| move |st: &str| get(sc, st).and_then(|v| num(v, path));
        let (e, d) = both(&metric("acked_per_s"));
        rows.push((format!("{shape}: acked sends/s"), e, d, 0));
        for (k, l) in [("lat.p50_ms", "p50"), ("lat.p99_ms", "p99")] {
            let (e, d) = both(&metric(k));
            rows.push((format!("{shape}: ack {l} ms"), e, d, 2));
        }
        let per_send = |path: String| {
            move |st: &str| {
                let v = get(sc, st)?;
                Some(num(v, &path)? * 1e4 / num(v, "acked_per_s")?)
            }
        };
        let (e, d) = both(&per_send("server_cpu_pct".into()));
        rows.push((format!("{shape}: LiveChat CPU µs per send"), e, d, 0));
        for (svc, _) in services {
            let (e, d) = both(&per_send(format!("components_cpu_pct.{svc}")));
            rows.push((format!("{shape}: {svc} CPU µs per send"), e, d, 0));
        }
    }
    let fx = |path: String| {
        move |st: &str| {
            let v = get("fanout", st)?;
            let s = v.get("steps")?.as_array()?.first()?;
            num(s, &path)
        }
    };
    let f = fanout_cfg();
    let shape = format!(
        "fan-out {} × {} at {:.0} msg/s",
        f.rooms, f.members, f.rates[0]
    );
    for (path, label, digits) in [
        ("deliveries_s", "deliveries/s", 0),
        ("lat.p50_ms", "p50 ms", 2),
        ("lat.p99_ms", "p99 ms", 2),
        ("lat.p999_ms", "p99.9 ms", 2),
        ("lost", "lost deliveries", 0),
    ] {
        let (e, d) = both(&fx(path.to_string()));
        rows.push((format!("{shape}: {label}"), e, d, digits));
    }
    let per_msg = |path: String| {
        let f = fx(path);
        let sent = fx("sent_msg_s".to_string());
        move |st: &str| Some(f(st)? * 1e4 / sent(st)?)
    };
    let (e, d) = both(&per_msg("server_cpu_pct".into()));
    rows.push((format!("{shape}: LiveChat CPU µs per message"), e, d, 0));
    for (svc, _) in services {
        let (e, d) = both(&per_msg(format!("components_cpu_pct.{svc}")));
        rows.push((format!("{shape}: {svc} CPU µs per message"), e, d, 0));
    }

    let mut s = format!(
        "### Distributed run — {date}\n\nGenerated by `bench/run distributed` (started {}, LiveChat at `{}`, load average at start {}). Machine: {} cores ({}), kernel {}. Runs per cell: {runs} (median). Embedded: one `livechat` process on SQLite. Distributed: `livechat --config config/livechat.distributed.toml` on the servers of `scripts/dev-services` (one process for ingest, two for fan-out), servers emptied before the invocation and warmed by one unrecorded 64 × 2 run of {} s, new users and rooms per run. Ingest: {} s windows after {} s warm-up; fan-out: one {} s step after {} s warm-up, sockets spread over both processes.\n\n",
        started.format("%Y-%m-%d %H:%M %Z"),
        machine["livechat_commit"].as_str().unwrap_or("?"),
        machine["loadavg_at_start"].as_str().unwrap_or("?"),
        machine["nproc"].as_str().unwrap_or("?"),
        machine["cpu"].as_str().unwrap_or("?").trim(),
        machine["kernel"].as_str().unwrap_or("?"),
        WARM_UP_S,
        ingest_shapes()[0].1.duration_s,
        ingest_shapes()[0].1.warmup_s,
        f.duration_s,
        f.warmup_s,
    );
    s.push_str(
        "| metric | embedded | distributed | distributed / embedded |\n|---|---:|---:|---:|\n",
    );
    for (label, e, d, digits) in rows {
        s.push_str(&format!(
            "| {label} | {} | {} | {} |\n",
            fmt(e, digits),
            fmt(d, digits),
            ratio(d, e)
        ));
    }
    s.push_str("\n(– = not applicable: the embedded binary uses no servers. Server CPU is each server process's own, over the window; all share the machine's cores with LiveChat and the load generator.)\n");
    s.push_str(&problems(med, &[]));
    s.push_str(&format!(
        "\nRaw results: `bench/results/{date}-distributed.json`.\n"
    ));
    s
}

#[cfg(test)]
mod tests {
    use super::{ingest_shape, WARM_UP, WARM_UP_S};

    #[test]
    fn the_warm_up_is_the_heavier_ingest_for_longer() {
        let warm = ingest_shape(WARM_UP).expect("warm-up shape");
        let heavy = ingest_shape("ingest-64x2").expect("64 x 2 shape");
        assert_eq!((warm.conns, warm.window, warm.rooms), (64, 2, heavy.rooms));
        assert_eq!(warm.duration_s, WARM_UP_S);
        assert!(ingest_shape("ingest-1x1").is_none());
    }
}
