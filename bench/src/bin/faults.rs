//! `faults`: the fault and abuse suite (see `livechat_bench::faults`). `scripts/faults` builds
//! and runs it; CI runs the short profile.

use std::path::PathBuf;

use clap::Parser;
use livechat_bench::faults::distributed::Stack;
use livechat_bench::faults::{run, Opts, Profile};

#[derive(Parser)]
#[command(
    about = "LiveChat's fault and abuse suite: load, kills, stalls, storms, garbage; then every store checked against a ledger"
)]
struct Cli {
    /// The livechat binary to test.
    #[arg(long)]
    livechat_bin: PathBuf,
    /// short (CI) or long (on demand; the figures of docs/reliability.md).
    #[arg(long, default_value = "short")]
    profile: String,
    /// Scratch directory (data directories and rebuilt files).
    #[arg(long, default_value = "/tmp/livechat-faults")]
    work: PathBuf,
    /// Only these scenarios (baseline, kill, slow-readers, storm, malformed, fuzz, replay,
    /// dist-kill, dist-processor-kill, dist-broker-restart, dist-broker-kill, dist-redis-down).
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Write the report into this document's section for the profile.
    #[arg(long)]
    doc: Option<PathBuf>,
    /// Write the raw results into this directory.
    #[arg(long)]
    results: Option<PathBuf>,
    /// Also run distributed mode's scenarios, with this configuration (the servers of
    /// scripts/dev-services, which must be up; the suite stops and starts Redis).
    #[arg(long)]
    distributed_config: Option<PathBuf>,
    /// scripts/dev-services, to stop and start a server.
    #[arg(long, default_value = "scripts/dev-services")]
    dev_services: PathBuf,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let profile = Profile::named(&cli.profile)
        .ok_or_else(|| anyhow::anyhow!("unknown profile {:?} (short or long)", cli.profile))?;
    // Absolute: every LiveChat process runs in a directory of its own.
    let distributed = match cli.distributed_config {
        Some(config) => Some(Stack {
            config: config.canonicalize()?,
            services: cli.dev_services.canonicalize()?,
        }),
        None => None,
    };
    let passed = run(Opts {
        livechat: cli.livechat_bin,
        work: cli.work,
        profile,
        only: cli.only,
        doc: cli.doc,
        results: cli.results,
        distributed,
    })
    .await?;
    if !passed {
        anyhow::bail!("some scenarios failed (see above)");
    }
    Ok(())
}
