//! WebSocket load generator for LiveChat, Centrifugo and the bare baseline.
//!
//! `loadgen suite --mode quick|full ...` runs every scenario against every peer (see
//! bench/run); the other subcommands run one scenario against a server that is already running
//! and print its result as JSON.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use clap::{Args, Parser, Subcommand};
use livechat_bench::client::{livechat_world, Target, World};
use livechat_bench::proto::Proto;
use livechat_bench::scaleout::{self, ScaleOpts};
use livechat_bench::scenarios::{self, FanoutCfg, HistoryCfg, IngestCfg};
use livechat_bench::servers::{Bins, Centrifugo, CENTRIFUGO_SECRET};
use livechat_bench::stats::Watch;
use livechat_bench::suite::{self, Mode, SuiteOpts};

#[derive(Parser)]
#[command(
    name = "loadgen",
    about = "WebSocket load generator and benchmark driver"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Every scenario against every peer; JSON per scenario and a README summary.
    Suite(SuiteArgs),
    /// Embedded beside distributed (on the scripts/dev-services servers): ingest and fan-out
    /// across two ingress processes, with every process's CPU per message.
    Distributed(DistributedArgs),
    /// Idle sockets: RSS per connection and idle CPU of the server.
    Idle {
        #[command(flatten)]
        t: TargetArgs,
        #[arg(long, default_value_t = 2000)]
        conns: usize,
        #[arg(long, default_value_t = 20)]
        rooms: usize,
        #[arg(long, default_value_t = 5)]
        users: usize,
        #[arg(long, default_value_t = 2.0)]
        hold: f64,
    },
    /// Fan-out: rooms x members, publishers at each rate of a rising ladder.
    Fanout {
        #[command(flatten)]
        t: TargetArgs,
        #[arg(long, default_value_t = 20)]
        rooms: usize,
        #[arg(long, default_value_t = 20)]
        members: usize,
        #[arg(long, default_value_t = 20)]
        publishers: usize,
        /// Total messages/s per step, comma separated.
        #[arg(long, value_delimiter = ',', default_value = "500,2000")]
        rates: Vec<f64>,
        #[arg(long, default_value_t = 1.0)]
        warmup: f64,
        #[arg(long, default_value_t = 3.0)]
        duration: f64,
        #[arg(long, default_value_t = 1.0)]
        drain: f64,
        #[arg(long, default_value_t = 100)]
        size: usize,
        #[arg(long, default_value_t = 5)]
        users: usize,
    },
    /// Sends with acknowledgement: sends/s and ack latency.
    Ingest {
        #[command(flatten)]
        t: TargetArgs,
        #[arg(long, default_value_t = 64)]
        conns: usize,
        #[arg(long, default_value_t = 16)]
        rooms: usize,
        #[arg(long, default_value_t = 2)]
        window: usize,
        #[arg(long, default_value_t = 3.0)]
        duration: f64,
    },
    /// Seeds one room with messages, then times pages of history.
    History {
        #[command(flatten)]
        t: TargetArgs,
        #[arg(long, default_value_t = 20_000)]
        messages: usize,
        #[arg(long, default_value_t = 500)]
        queries: usize,
    },
}

#[derive(Args)]
struct TargetArgs {
    #[arg(long, value_enum)]
    proto: Proto,
    /// Server address, e.g. 127.0.0.1:8000.
    #[arg(long)]
    addr: SocketAddr,
    /// Server pid for /proc CPU and RSS (0 = unknown).
    #[arg(long, default_value_t = 0)]
    server_pid: u32,
    /// Source addresses, comma separated (each has its own ephemeral port range).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "127.0.0.1,127.0.0.2,127.0.0.3,127.0.0.4"
    )]
    src_ips: Vec<Ipv4Addr>,
    #[arg(long, default_value = CENTRIFUGO_SECRET)]
    secret: String,
}

#[derive(Args)]
struct SuiteArgs {
    #[arg(long, value_enum, default_value = "quick")]
    mode: Mode,
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "livechat,centrifugo,bare"
    )]
    peers: Vec<Proto>,
    /// Only these scenarios (idle, fanout, ingest, history, replay, coldstart); default all.
    #[arg(long, value_delimiter = ',')]
    scenarios: Vec<String>,
    /// Override the mode's number of runs per cell.
    #[arg(long)]
    runs: Option<usize>,
    #[arg(long)]
    livechat_bin: PathBuf,
    #[arg(long)]
    bare_bin: PathBuf,
    /// Centrifugo binary (skipped when absent).
    #[arg(long)]
    centrifugo_bin: Option<PathBuf>,
    #[command(flatten)]
    out: RunArgs,
}

/// Where a whole run works and writes, and the source addresses of its sockets.
#[derive(Args)]
struct RunArgs {
    /// Scratch directory for data dirs and server logs.
    #[arg(long)]
    work: PathBuf,
    #[arg(long)]
    results: PathBuf,
    #[arg(long)]
    readme: PathBuf,
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "127.0.0.1,127.0.0.2,127.0.0.3,127.0.0.4"
    )]
    src_ips: Vec<Ipv4Addr>,
}

#[derive(Args)]
struct DistributedArgs {
    /// A livechat built with `--features distributed`.
    #[arg(long)]
    livechat_bin: PathBuf,
    /// The distributed configuration file.
    #[arg(long)]
    config: PathBuf,
    /// Where scripts/dev-services keeps its services (default: its own default).
    #[arg(long, env = "LIVECHAT_SERVICES_HOME")]
    services_home: Option<PathBuf>,
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Only these scenarios (ingest-16x1, ingest-64x2, fanout); default all.
    #[arg(long, value_delimiter = ',')]
    scenarios: Vec<String>,
    #[command(flatten)]
    out: RunArgs,
}

impl TargetArgs {
    fn target(&self) -> Target {
        Target {
            proto: self.proto,
            addr: self.addr,
            other_nodes: Vec::new(),
            src_ips: self.src_ips.clone(),
            secret: self.secret.clone(),
        }
    }
    async fn world(&self, users: usize, rooms: usize) -> Result<World> {
        let tag = format!("{:x}", std::process::id() % 0xffff);
        match self.proto {
            Proto::Livechat => livechat_world(self.addr, users, rooms, &tag).await,
            p => Ok(World::named(p, rooms, &tag)),
        }
    }
}

fn print<T: serde::Serialize>(v: &T) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    match Cli::parse().cmd {
        Cmd::Suite(a) => {
            let centrifugo = a.centrifugo_bin.filter(|p| p.exists()).and_then(|p| {
                Centrifugo::detect(&p)
                    .inspect(|c| eprintln!("== Centrifugo: {}", c.label))
                    .inspect_err(|e| eprintln!("!! {e:#}; running without Centrifugo"))
                    .ok()
            });
            suite::run(SuiteOpts {
                mode: a.mode,
                peers: a.peers,
                scenarios: a.scenarios,
                bins: Bins {
                    livechat: a.livechat_bin,
                    bare: a.bare_bin,
                    centrifugo,
                },
                work: a.out.work,
                results: a.out.results,
                readme: a.out.readme,
                src_ips: a.out.src_ips,
                runs: a.runs,
            })
            .await
        }
        Cmd::Distributed(a) => {
            let services_home = match a.services_home {
                Some(h) => h,
                None => PathBuf::from(std::env::var("HOME")?).join(".cache/livechat/services"),
            };
            scaleout::run(ScaleOpts {
                livechat: a.livechat_bin,
                config: a.config,
                services_home,
                work: a.out.work,
                results: a.out.results,
                readme: a.out.readme,
                src_ips: a.out.src_ips,
                runs: a.runs,
                scenarios: a.scenarios,
            })
            .await
        }
        Cmd::Idle {
            t,
            conns,
            rooms,
            users,
            hold,
        } => {
            let w = t.world(users, rooms).await?;
            let r = scenarios::idle(
                &t.target(),
                &w,
                conns,
                Duration::from_secs(1),
                Duration::from_secs_f64(hold),
                t.server_pid,
            )
            .await?;
            print(&r)
        }
        Cmd::Fanout {
            t,
            rooms,
            members,
            publishers,
            rates,
            warmup,
            duration,
            drain,
            size,
            users,
        } => {
            let w = t.world(users, rooms).await?;
            let cfg = FanoutCfg {
                rooms,
                members,
                publishers,
                rates,
                warmup_s: warmup,
                duration_s: duration,
                drain_s: drain,
                size,
                break_p99_ms: 50.0,
                half_peak: false,
                retry_broken: false,
            };
            print(&scenarios::fanout(&t.target(), &w, &cfg, &Watch::one(t.server_pid)).await?)
        }
        Cmd::Ingest {
            t,
            conns,
            rooms,
            window,
            duration,
        } => {
            let w = t.world(4, rooms).await?;
            let cfg = IngestCfg {
                conns,
                rooms,
                window,
                warmup_s: 0.5,
                duration_s: duration,
                size: 100,
            };
            print(&scenarios::ingest(&t.target(), &w, &cfg, &Watch::one(t.server_pid)).await?)
        }
        Cmd::History {
            t,
            messages,
            queries,
        } => {
            let w = t.world(2, 1).await?;
            let cfg = HistoryCfg {
                messages,
                seed_conns: 64,
                seed_window: 2,
                queries,
                page: 50,
                size: 100,
            };
            print(&scenarios::history(&t.target(), &w, &cfg).await?)
        }
    }
}
