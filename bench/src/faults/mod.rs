//! The fault and abuse suite (`faults`, run by `scripts/faults short|long`): LiveChat under
//! load while its process is killed, readers stall, sockets reconnect all at once and clients
//! send garbage; then every room is read back from the store and checked against a ledger of
//! what was acknowledged. `short` runs in CI; `long` is the on-demand profile whose figures
//! docs/reliability.md quotes.

pub mod distributed;
pub mod garbage;
pub mod ledger;
pub mod load;
pub mod node;
pub mod raw;
pub mod readers;
pub mod replay;

use std::path::PathBuf;

use anyhow::Result;
use distributed::Outage;
use serde::Serialize;
use serde_json::{json, Value};

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

/// How much of everything a run does.
#[derive(Debug, Clone)]
pub struct Profile {
    pub name: &'static str,
    /// Sockets sending (one send in flight each) and the rooms they share.
    pub senders: usize,
    pub rooms: usize,
    pub load_secs: f64,
    pub kills: usize,
    pub kill_secs: f64,
    /// Slow readers: members of the room, how many of them stop reading, publish rate, seconds
    /// per phase, and how much p99 may grow on top of 10 % on a machine shared with the load.
    pub slow_members: usize,
    pub slow: usize,
    pub slow_rate: f64,
    pub slow_secs: f64,
    pub p99_slack_pct: f64,
    pub storm_sockets: usize,
    pub storm_rooms: usize,
    pub storm_missed: usize,
    /// Random frames sent by the protocol fuzzer.
    pub fuzz_frames: u64,
    /// Distributed mode: seconds of load around the kills of a processor, how many; how many
    /// times `livechat serve` is killed (with at least 15 s of load per kill: a new process
    /// takes its sequencer partitions over once the old transactions time out); how long Redis
    /// and the Kafka broker stay down.
    pub dist_secs: f64,
    pub dist_kills: usize,
    pub serve_kills: usize,
    pub redis_down_secs: f64,
    pub broker_down_secs: f64,
    /// Scenarios this profile leaves out, and why (docs/reliability.md says so too).
    pub skip: &'static [(&'static str, &'static str)],
}

impl Profile {
    pub fn named(name: &str) -> Option<Profile> {
        match name {
            "short" => Some(Profile {
                name: "short",
                senders: 16,
                rooms: 4,
                load_secs: 5.0,
                kills: 3,
                kill_secs: 6.0,
                slow_members: 100,
                slow: 5,
                slow_rate: 200.0,
                slow_secs: 3.0,
                // CI machines are noisy and small: the short profile checks the mechanism.
                p99_slack_pct: 1_000.0,
                storm_sockets: 500,
                storm_rooms: 10,
                storm_missed: 20,
                fuzz_frames: 5_000,
                dist_secs: 20.0,
                dist_kills: 2,
                serve_kills: 2,
                redis_down_secs: 5.0,
                broker_down_secs: 3.0,
                skip: &[],
            }),
            "long" => Some(Profile {
                name: "long",
                senders: 64,
                rooms: 16,
                load_secs: 600.0,
                kills: 20,
                kill_secs: 120.0,
                slow_members: 1_000,
                slow: 10,
                // 20,000 deliveries/s of 1 KB: what this machine serves with room to spare.
                slow_rate: 20.0,
                slow_secs: 10.0,
                p99_slack_pct: 0.0,
                storm_sockets: 10_000,
                storm_rooms: 100,
                storm_missed: 20,
                fuzz_frames: 50_000,
                dist_secs: 120.0,
                dist_kills: 5,
                serve_kills: 20,
                redis_down_secs: 60.0,
                broker_down_secs: 30.0,
                skip: &[],
            }),
            _ => None,
        }
    }
}

pub struct Opts {
    pub livechat: PathBuf,
    pub work: PathBuf,
    pub profile: Profile,
    /// Only these scenarios (names as in the report, e.g. "malformed"); empty: all.
    pub only: Vec<String>,
    /// Write the report's section into this document (docs/reliability.md).
    pub doc: Option<PathBuf>,
    /// Write the raw results here (a directory).
    pub results: Option<PathBuf>,
    /// Distributed mode's scenarios too, on these servers.
    pub distributed: Option<distributed::Stack>,
}

const SCENARIOS: &[&str] = &[
    "baseline",
    "kill",
    "slow-readers",
    "storm",
    "malformed",
    "fuzz",
    "replay",
    "dist-kill",
    "dist-processor-kill",
    "dist-broker-restart",
    "dist-broker-kill",
    "dist-redis-down",
];

/// Runs the profile's scenarios one after another; returns whether every one passed.
pub async fn run(o: Opts) -> Result<bool> {
    std::fs::create_dir_all(&o.work)?;
    let started = chrono::Utc::now();
    let p = &o.profile;
    let mut rows: Vec<Row> = Vec::new();
    for &name in SCENARIOS {
        if !o.only.is_empty() && !o.only.iter().any(|s| s == name) {
            continue;
        }
        let stack = o.distributed.as_ref();
        if name.starts_with("dist-") && stack.is_none() {
            continue;
        }
        if let Some((_, why)) = p.skip.iter().find(|(s, _)| *s == name) {
            if o.only.is_empty() {
                eprintln!("== {name}: skipped in the {} profile ({why})", p.name);
                continue;
            }
        }
        eprintln!("== {name}");
        let w = &o.work;
        let result = match name {
            "baseline" => load::sends_under_kills(&o.livechat, w, p, 0, p.load_secs).await,
            "kill" => load::sends_under_kills(&o.livechat, w, p, p.kills, p.kill_secs).await,
            "slow-readers" => readers::slow_readers(&o.livechat, w, p).await,
            "storm" => readers::reconnect_storm(&o.livechat, w, p).await,
            "malformed" => garbage::malformed(&o.livechat, w).await,
            "fuzz" => garbage::fuzz_frames(&o.livechat, w, p).await,
            "replay" => replay::replay_twice(&o.livechat, w, p).await,
            "dist-kill" => match stack {
                Some(s) => distributed::serve_kills(&o.livechat, w, p, s).await,
                None => unreachable!("skipped above"),
            },
            "dist-broker-restart" => match stack {
                Some(s) => distributed::broker_outage(&o.livechat, w, p, s, Outage::Restart).await,
                None => unreachable!("skipped above"),
            },
            "dist-broker-kill" => match stack {
                Some(s) => distributed::broker_outage(&o.livechat, w, p, s, Outage::Crash).await,
                None => unreachable!("skipped above"),
            },
            "dist-processor-kill" => match stack {
                Some(s) => distributed::processor_kills(&o.livechat, w, p, s).await,
                None => unreachable!("skipped above"),
            },
            "dist-redis-down" => match stack {
                Some(s) => distributed::redis_down(&o.livechat, w, p, s).await,
                None => unreachable!("skipped above"),
            },
            _ => unreachable!("every scenario is listed"),
        };
        let row = result.unwrap_or_else(|e| Row {
            scenario: name.into(),
            notes: format!("failed to run: {e:#}"),
            ..Default::default()
        });
        eprintln!(
            "   {}: {} | {} | {} | {}",
            if row.passed { "PASS" } else { "FAIL" },
            row.load,
            row.faults,
            row.recovery,
            row.notes
        );
        rows.push(row);
    }
    let passed = rows.iter().all(|r| r.passed);
    let n_passed = rows.iter().filter(|r| r.passed).count();
    println!(
        "fault scenarios: {n_passed} passed, {} failed",
        rows.len() - n_passed
    );
    let machine =
        crate::suite::machine_info(&crate::servers::Bins::livechat_only(&o.livechat), &[]).await;
    if let Some(dir) = &o.results {
        std::fs::create_dir_all(dir)?;
        let file = dir.join(format!(
            "{}-faults-{}.json",
            started.format("%Y-%m-%d"),
            p.name
        ));
        std::fs::write(
            &file,
            serde_json::to_vec_pretty(&json!({"started": started.to_rfc3339(), "profile": p.name,
                "machine": machine, "rows": rows}))?,
        )?;
    }
    if let Some(doc) = &o.doc {
        // A run of some scenarios only has a section of its own: it never replaces the whole
        // profile's table.
        let (section, command) = match o.only.is_empty() {
            true => (p.name.to_string(), format!("scripts/faults {}", p.name)),
            false => (
                format!("{} ({})", p.name, o.only.join(", ")),
                format!("scripts/faults {} --only {}", p.name, o.only.join(",")),
            ),
        };
        crate::suite::write_section_by(
            doc,
            &section,
            "scripts/faults",
            &table(&rows, p, &command, &started, &machine),
        )?;
    }
    Ok(passed)
}

fn cell(x: Option<u64>) -> String {
    x.map(|v| v.to_string()).unwrap_or_else(|| "–".into())
}

fn table(
    rows: &[Row],
    p: &Profile,
    command: &str,
    started: &chrono::DateTime<chrono::Utc>,
    machine: &Value,
) -> String {
    let s = |k: &str| machine[k].as_str().unwrap_or_default().to_string();
    let mut out = format!(
        "### Profile `{}` — {}\n\nGenerated by `{}` (started {}, LiveChat at `{}`, load average at start {}). Machine: {} cores ({}), {}, kernel {}, `ulimit -n` {}.\n\n",
        p.name,
        started.format("%Y-%m-%d"),
        command,
        started.format("%Y-%m-%d %H:%M UTC"),
        s("livechat_commit"),
        s("loadavg_at_start"),
        s("nproc"),
        s("cpu").trim(),
        s("free_g"),
        s("kernel"),
        s("ulimit_n"),
    );
    out.push_str("| scenario | load held | faults injected / bad inputs tried | lost | duplicated | recovery | result | notes |\n|---|---|---|---:|---:|---|---|---|\n");
    for r in rows {
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} |\n",
            r.scenario,
            r.load,
            r.faults,
            cell(r.lost),
            cell(r.duplicated),
            r.recovery,
            if r.passed { "pass" } else { "**FAIL**" },
            r.notes.replace('|', "/")
        ));
    }
    out.push('\n');
    out
}
