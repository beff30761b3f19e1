//! The `livechat` binary: the composition root. It reads the configuration, opens the
//! adapters, and runs every role in one process (`livechat serve`, the default): the ingress
//! (REST + WebSocket), the outbox relay, and the history, delivery, notifications and
//! analytics processors.

mod config;
mod dlq;
#[cfg(feature = "kafka")]
mod instance;
mod replay;
mod wire;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use livechat_core::ports::{EventLog, Outbox, SearchIndex};
use livechat_core::service::{ChatService, Ports};
use livechat_ingress::hub::Hub;
use livechat_ingress::{AppState, IngressConfig};
use livechat_processors::search::SearchProcessor;
use livechat_processors::{
    analytics::AnalyticsProcessor, delivery::DeliveryProcessor, history::HistoryProcessor,
};
use livechat_processors::{notifications::NotificationsProcessor, relay, runner, Durable};
use tokio_util::sync::CancellationToken;

use crate::config::{Config, LogKind};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser, Debug)]
#[command(
    name = "livechat",
    version,
    about = "LiveChat: a real-time chat backend built as a streaming pipeline"
)]
struct Cli {
    /// TOML configuration file.
    #[arg(long, global = true, env = "LIVECHAT_CONFIG")]
    config: Option<PathBuf>,
    /// Address to listen on (overrides the config).
    #[arg(long, global = true)]
    listen: Option<String>,
    /// Data directory of the embedded stores (overrides the config).
    #[arg(long, global = true)]
    data_dir: Option<String>,
    /// Serve the embedded log's topics over the Kafka protocol on this address (overrides
    /// `[kafka_api] listen`; loopback only unless `[kafka_api]` credentials are set).
    #[arg(long, global = true)]
    kafka_listen: Option<String>,
    /// Log output format.
    #[arg(long, global = true, default_value = "pretty", value_parser = ["pretty", "json"])]
    log_format: String,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run every role in one process (the default).
    Serve,
    /// Run the ingress only: REST + WebSocket, the outbox relay and live delivery (and, with the
    /// log on Kafka, a sequencer of the sends).
    Ingress,
    /// Run one durable processor only.
    Processor {
        #[arg(value_parser = durable_parser())]
        name: Durable,
    },
    /// Run a sequencer of the sends only (with the log on Kafka: the single writer of the
    /// seqs of the rooms whose partitions it owns; run one or more).
    Sequencer,
    /// Print the effective configuration as TOML.
    Config,
    /// Rebuild a store (history, analytics, notifications) from the log.
    Replay(replay::ReplayArgs),
    /// List, show and replay the records processors dead-lettered.
    Dlq(dlq::DlqArgs),
}

fn init_tracing(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,tower_http=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_tracing(&cli.log_format);
    let mut cfg = Config::load(cli.config.as_ref())?;
    if let Some(l) = &cli.listen {
        cfg.ingress.listen = l.clone();
    }
    if let Some(d) = &cli.data_dir {
        cfg.data_dir = d.clone();
    }
    if let Some(k) = &cli.kafka_listen {
        cfg.kafka_api.listen = Some(k.clone());
    }
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(cfg, Roles::all()).await,
        Command::Ingress => {
            serve(
                cfg,
                Roles {
                    ingress: true,
                    // Searches are answered from the index this process keeps.
                    processors: vec![Durable::Search],
                    sequencer: true,
                },
            )
            .await
        }
        Command::Processor { name } => {
            serve(
                cfg,
                Roles {
                    ingress: false,
                    processors: vec![name],
                    sequencer: false,
                },
            )
            .await
        }
        Command::Sequencer => {
            serve(
                cfg,
                Roles {
                    ingress: false,
                    processors: vec![],
                    sequencer: true,
                },
            )
            .await
        }
        Command::Replay(args) => replay::run(&cfg, args).await,
        Command::Dlq(args) => dlq::run(&cfg, args).await,
        Command::Config => {
            println!(
                "{}",
                toml::to_string_pretty(&cfg).context("rendering the configuration")?
            );
            Ok(())
        }
    }
}

/// Parses a durable processor's name (clap lists the names in `--help` and in errors).
fn durable_parser() -> impl clap::builder::TypedValueParser<Value = Durable> {
    use clap::builder::TypedValueParser;
    clap::builder::PossibleValuesParser::new(Durable::NAMES)
        .map(|name: String| Durable::parse(&name).expect("one of the possible values"))
}

/// The committing consumer groups whose lag `/metrics` reports (those that run as consumers).
fn processors_for_lag(cfg: &Config) -> Vec<(String, Vec<&'static str>)> {
    let inline = wire::inline_processors(cfg);
    Durable::ALL
        .iter()
        // The search index's group is its file's own (`search-<id>`).
        .filter(|d| !inline.contains(d) && **d != Durable::Search)
        .map(|d| (d.name().to_string(), d.topics().to_vec()))
        .collect()
}

async fn shutdown_signal(token: CancellationToken) {
    let ctrl_c = tokio::signal::ctrl_c();
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "Cannot listen for SIGTERM; only Ctrl-C stops the server.");
            let _ = ctrl_c.await;
            token.cancel();
            return;
        }
    };
    tokio::select! {
        _ = ctrl_c => {}
        _ = term.recv() => {}
    }
    tracing::info!("Shutting down: draining connections, the outbox and the processors.");
    token.cancel();
}

/// Which parts of LiveChat a process runs.
#[derive(Debug, Clone, PartialEq)]
struct Roles {
    /// REST + WebSocket, the outbox relay and live delivery (always together: delivery pushes
    /// to this process's sockets, and the relay drains what this process commits).
    ingress: bool,
    /// Durable processors.
    processors: Vec<Durable>,
    /// A sequencer of the sends (with the log on Kafka; see `wire::sequencing`). Every ingress
    /// runs one, so a deployment of ingress processes sequences without another role.
    sequencer: bool,
}

impl Roles {
    fn all() -> Roles {
        Roles {
            ingress: true,
            processors: Durable::ALL.to_vec(),
            sequencer: true,
        }
    }
}

fn durable_processor(
    kind: Durable,
    stores: &wire::Stores,
    log: &Arc<dyn EventLog>,
    search_group: &str,
) -> Arc<dyn livechat_processors::Processor> {
    match kind {
        Durable::History => Arc::new(HistoryProcessor {
            store: stores.history.clone(),
            group: kind.name().into(),
        }),
        Durable::Notifications => Arc::new(NotificationsProcessor {
            directory: stores.directory.clone(),
            announce: Some(log.clone()),
        }),
        Durable::Analytics => Arc::new(AnalyticsProcessor {
            store: stores.analytics.clone(),
            group: kind.name().into(),
        }),
        Durable::Search => Arc::new(SearchProcessor {
            index: stores.search.clone(),
            group: search_group.into(),
        }),
    }
}

async fn serve(cfg: Config, roles: Roles) -> anyhow::Result<()> {
    // Installed before anything records, so no early count is lost.
    let metrics = livechat_ingress::metrics::install()?;
    livechat_ingress::metrics::describe();
    let data_dir = PathBuf::from(&cfg.data_dir);
    let stores = wire::stores(&cfg).await?;
    let log: Arc<dyn EventLog> = wire::log(&cfg).await?;
    // Two-phase stop: first the ingress (sockets closed, the relay drains the outbox into the
    // log), then the processors (they drain the log and commit), so nothing is left half done.
    let shutdown = CancellationToken::new();
    let stop_processors = CancellationToken::new();
    tokio::spawn(shutdown_signal(shutdown.clone()));
    let mut processors = tokio::task::JoinSet::new();
    let inline = wire::inline_processors(&cfg);
    let search_group = format!(
        "{}-{}",
        Durable::Search.name(),
        stores.search.file_id().await?
    );
    for kind in roles.processors.iter().filter(|k| !inline.contains(k)) {
        processors.spawn(runner::run(
            log.clone(),
            stores.keyring.clone(),
            durable_processor(*kind, &stores, &log, &search_group),
            stop_processors.clone(),
        ));
    }
    let searching = roles.processors.contains(&Durable::Search);
    let stop_sequencer = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sequencer = if roles.sequencer {
        wire::start_sequencer(&cfg, stores.directory.clone(), stop_sequencer.clone()).await?
    } else {
        None
    };
    let mut ingress_tasks = tokio::task::JoinSet::new();
    if roles.ingress {
        serve_kafka_api(&cfg, &log, &mut ingress_tasks, shutdown.clone()).await?;
    }
    let served = if roles.ingress {
        run_ingress(
            &cfg,
            &stores,
            searching,
            log.clone(),
            metrics,
            &mut ingress_tasks,
            shutdown.clone(),
        )
        .await
    } else {
        let mut names: Vec<&str> = roles.processors.iter().map(|d| d.name()).collect();
        if sequencer.is_some() {
            names.push("sequencer");
        }
        println!(
            "LiveChat processors running: {} (data in {})",
            names.join(", "),
            data_dir.display()
        );
        tracing::info!(processors = ?roles.processors, "LiveChat processors started.");
        shutdown.cancelled().await;
        Ok(())
    };
    shutdown.cancel();
    let ingress_done = tokio::time::timeout(Duration::from_secs(10), async {
        while ingress_tasks.join_next().await.is_some() {}
    })
    .await;
    if ingress_done.is_err() {
        tracing::warn!(
            "The relay did not drain the outbox within 10 s; the rest goes out at the next start."
        );
    }
    stop_processors.cancel();
    stop_sequencer.store(true, std::sync::atomic::Ordering::Relaxed);
    if let Some(sequencer) = sequencer {
        // It stops after its current batch (a poll waits at most a fraction of a second); its
        // identity is given up after that.
        let _ = tokio::task::spawn_blocking(move || sequencer.thread.join()).await;
    }
    let drained = tokio::time::timeout(Duration::from_secs(15), async {
        while processors.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!("Processors did not stop within 15 s; exiting anyway (they resume from committed offsets).");
    }
    tracing::info!("LiveChat stopped.");
    served
}

/// Serves the embedded log over the Kafka protocol, when `[kafka_api] listen` is set.
async fn serve_kafka_api(
    cfg: &Config,
    log: &Arc<dyn EventLog>,
    tasks: &mut tokio::task::JoinSet<()>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    use livechat_ingress::kafka_api;
    let Some(listen) = &cfg.kafka_api.listen else {
        return Ok(());
    };
    if cfg.log.kind == LogKind::Kafka {
        anyhow::bail!(
            "[kafka_api] listen serves the embedded log; with [log] kind = \"kafka\" consumers \
             read the brokers themselves"
        );
    }
    let credentials = cfg.kafka_api.credentials()?;
    let (listener, addr) = kafka_api::bind(listen, credentials.as_ref()).await?;
    tracing::info!(%addr, sasl = credentials.is_some(), "Kafka listener started (read-only).");
    tasks.spawn(kafka_api::serve(
        listener,
        log.clone(),
        credentials,
        shutdown,
    ));
    Ok(())
}

/// Deletes, every minute, the shared files nothing keeps any more (see
/// `livechat_core::file_keeping`).
async fn sweep_files(svc: Arc<ChatService>, shutdown: CancellationToken) {
    // Every minute, or twice per hold when holds are shorter.
    let secs = (svc.limits.file_hold_secs / 2).clamp(1, 60);
    let mut every = tokio::time::interval(Duration::from_secs(secs));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = every.tick() => {}
            _ = shutdown.cancelled() => return,
        }
        match svc.sweep_files().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(files = n, "Deleted shared files nothing keeps any more."),
            Err(e) => {
                tracing::warn!(error = %e, "Sweeping shared files failed; trying again later.")
            }
        }
    }
}

/// Binds the listener and serves REST + WebSocket until shutdown, with the relay and live
/// delivery running beside it.
#[allow(clippy::too_many_arguments)]
async fn run_ingress(
    cfg: &Config,
    stores: &wire::Stores,
    searching: bool,
    log: Arc<dyn EventLog>,
    metrics: metrics_exporter_prometheus::PrometheusHandle,
    tasks: &mut tokio::task::JoinSet<()>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let hub = Hub::new();
    let presence = wire::presence(cfg).await?;
    if let Some(p) = &presence {
        tasks.spawn(livechat_ingress::presence::run(
            hub.clone(),
            p.clone(),
            shutdown.clone(),
        ));
    }
    let ports = Ports {
        directory: stores.directory.clone(),
        sessions: stores.sessions.clone(),
        history: stores.history.clone(),
        analytics: stores.analytics.clone(),
        fanout: hub.clone(),
        presence,
        write_through: wire::write_through(cfg, stores),
        sequencing: wire::sequencing(cfg).await?,
        cache: stores.cache.clone(),
        files: Some(wire::files(cfg)?),
        search: searching.then(|| stores.search.clone() as Arc<dyn SearchIndex>),
        keyring: stores.keyring.clone(),
    };
    let svc = Arc::new(ChatService::new(ports, cfg.limits.clone()));
    tasks.spawn(sweep_files(svc.clone(), shutdown.clone()));
    let listen: std::net::SocketAddr = cfg
        .ingress
        .listen
        .parse()
        .with_context(|| format!("listen address {:?}", cfg.ingress.listen))?;
    let socket = if listen.is_ipv4() {
        tokio::net::TcpSocket::new_v4()
    } else {
        tokio::net::TcpSocket::new_v6()
    }?;
    socket.set_reuseaddr(true)?;
    socket.set_nodelay(true)?;
    // Accepted sockets inherit the listener's send buffer (Linux).
    if cfg.limits.socket_send_buffer_bytes > 0 {
        let bytes = u32::try_from(cfg.limits.socket_send_buffer_bytes).unwrap_or(u32::MAX);
        socket
            .set_send_buffer_size(bytes)
            .context("setting the sockets' send buffer")?;
    }
    socket
        .bind(listen)
        .with_context(|| format!("binding {listen}"))?;
    let listener = socket.listen(4096).context("listening")?;
    let addr = listener.local_addr()?;
    let mut ingress: IngressConfig = cfg.ingress.clone().with_bound_address(addr);
    if cfg.log.kind == LogKind::Kafka {
        ingress.external_registry = cfg.log.kafka.schema_registry_url.clone();
    }

    if !wire::colocated(cfg) {
        // The directory queues records in its outbox for another log: relay them.
        let outbox: Arc<dyn Outbox> = stores.directory.clone();
        tasks.spawn(relay::run(outbox, log.clone(), shutdown.clone()));
    }
    let (ready, joined) = tokio::sync::oneshot::channel();
    let delivery = Arc::new(DeliveryProcessor {
        fanout: hub.clone(),
        directory: stores.directory.clone(),
        known_members: svc.known_members(),
    });
    tasks.spawn(runner::run_with_ready(
        log.clone(),
        stores.keyring.clone(),
        delivery,
        shutdown.clone(),
        Some(ready),
    ));
    // Accept connections only once live delivery receives events, so none is missed.
    if tokio::time::timeout(Duration::from_secs(60), joined)
        .await
        .is_err()
    {
        anyhow::bail!("live delivery could not join the log within 60 s");
    }

    let lag = livechat_ingress::metrics::LagSource {
        log: log.clone(),
        groups: processors_for_lag(cfg),
        kafka_api_groups: cfg.kafka_api.listen.is_some(),
    };
    let state = Arc::new(AppState {
        svc,
        hub,
        config: ingress,
        lag: Some(lag),
        metrics: Some(metrics),
    });
    // Tests and scripts read this line to learn the bound port.
    println!(
        "LiveChat listening on http://{addr} (data in {})",
        cfg.data_dir
    );
    tracing::info!(%addr, data_dir = %cfg.data_dir, "LiveChat started.");
    livechat_ingress::serve(listener, state, shutdown).await
}
