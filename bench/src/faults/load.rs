//! Load with a ledger: sockets sending while a scenario injects its faults, then the store
//! read back against what was acknowledged; the baseline and the SIGKILL scenarios.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};
use serde_json::json;

use super::ledger::{self, Ledger, Verdict};
use super::node::{tag, Node};
use super::{Profile, Row};
use crate::client::{livechat_world, Target, World};

/// How long a restarted process is given to acknowledge a send again (a row without the figure
/// for that restart says it did not).
const FIRST_ACK_LIMIT: Duration = Duration::from_secs(60);

fn verdict_row(row: &mut Row, v: &Verdict) {
    row.lost = Some(v.lost);
    row.duplicated = Some(v.duplicated);
    row.passed = v.clean();
}

/// What a ledgered load ended with.
pub struct Loaded {
    pub ledger: Arc<Ledger>,
    pub verdict: Verdict,
    pub held_secs: f64,
    /// What each injection returned (a recovery time in ms, for those that have one).
    pub recoveries: Vec<f64>,
    /// For each restart (scenarios that restart the server), ms from the SIGKILL to the first
    /// send acknowledged after it; None when none was within [`FIRST_ACK_LIMIT`].
    pub first_acks: Vec<Option<f64>>,
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

    /// Seconds since the start.
    pub fn elapsed(&self) -> f64 {
        self.t0.elapsed().as_secs_f64()
    }

    /// Sleeps until `secs` after the start.
    pub async fn until(&self, secs: f64) {
        tokio::time::sleep_until((self.t0 + Duration::from_secs_f64(secs)).into()).await;
    }

    /// Runs on until `secs` after the start, stops the senders, waits for consumer lag 0 and
    /// reads every room back.
    pub async fn finish(self, secs: f64, recoveries: Vec<f64>) -> Result<Loaded> {
        self.finish_with(secs, recoveries, Vec::new()).await
    }

    /// [`Load::finish`], with the first acknowledgement after each restart.
    async fn finish_with(
        self,
        secs: f64,
        recoveries: Vec<f64>,
        first_acks: Vec<Option<f64>>,
    ) -> Result<Loaded> {
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
            first_acks,
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
    let unavailable = l.ledger.unavailable.load(Ordering::Relaxed);
    let v = &l.verdict;
    let acked_again: Vec<f64> = l.first_acks.iter().flatten().copied().collect();
    let never_acked = l.first_acks.len() - acked_again.len();
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
        recovery: match (spread(&l.recoveries), spread(&acked_again)) {
            (None, _) => "–".into(),
            (Some(health), None) => format!("back in service: {health}"),
            (Some(health), Some(ack)) => {
                format!("back in service: {health}; first ack after the SIGKILL: {ack}")
            }
        } + &if never_acked > 0 {
            format!(
                "; {never_acked} restart(s) acknowledged no send within {} s",
                FIRST_ACK_LIMIT.as_secs()
            )
        } else {
            String::new()
        },
        notes: format!(
            "{resent} resent after a lost connection, {unavailable} answered unavailable and sent again, {} stored without an ack, {refused} refused, seqs dense: {}, checksums match: {}, analytics counts match: {}; consumer lag 0 after {} ms",
            v.unacked_stored,
            if v.gaps == 0 { "yes" } else { "no" },
            if v.checksums_match { "yes" } else { "no" },
            match v.analytics_first_mismatch {
                None if v.analytics_settled_ms > 1000 => format!(
                    "yes, {} ms after the lag was 0 (a killed process's open transaction held the \
                     readers back until its timeout)",
                    v.analytics_settled_ms
                ),
                None => "yes".to_string(),
                Some((counted, stored)) => format!(
                    "no ({} rooms; one counts {} of its {stored})",
                    v.analytics_mismatches,
                    counted.map_or("none".into(), |c| c.to_string())
                ),
            },
            l.lag.as_millis()
        ),
        detail: json!({"verdict": v, "recoveries_ms": l.recoveries, "first_ack_ms": l.first_acks, "acked": acked, "refused": refused,
            "resent": resent, "unavailable": unavailable, "reconnects": l.ledger.reconnects.load(Ordering::Relaxed), "secs": l.held_secs}),
        ..Default::default()
    };
    verdict_row(&mut row, v);
    row.passed &= refused == 0 && acked > 0 && never_acked == 0;
    row
}

/// "median M ms, max X ms" of some durations in ms; None when there are none.
fn spread(ms: &[f64]) -> Option<String> {
    let mut r = ms.to_vec();
    r.sort_by(f64::total_cmp);
    let max = *r.last()?;
    let median = (r[(r.len() - 1) / 2] + r[r.len() / 2]) / 2.0;
    Some(format!("median {median:.0} ms, max {max:.0} ms"))
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
    let node = Node::start_new(bin, &work.join(name.replace(' ', "-")), vec![]).await?;
    let loaded = kills_under_load(node, &tag(), p, kills, secs).await?;
    let faults = if kills == 0 {
        "none".into()
    } else {
        format!("{kills} × SIGKILL of the only process (recovery: SIGKILL → health 200)")
    };
    Ok(load_row(name, faults, p, &loaded))
}

/// Senders in every room of a fresh world (users and rooms named after `names`) on `node` for
/// `secs`, with `kills` SIGKILLs of the node spread over that time, each followed by a restart
/// on the same port and data; the recovery of each is SIGKILL → health 200.
pub async fn kills_under_load(
    mut node: Node,
    names: &str,
    p: &Profile,
    kills: usize,
    secs: f64,
) -> Result<Loaded> {
    let world = Arc::new(livechat_world(node.addr(), 4, p.rooms, names).await?);
    let load = Load::start(&node.target(), world, p);
    let (mut recoveries, mut first_acks) = (Vec::new(), Vec::new());
    for at in uneven(kills, secs) {
        load.until(at).await;
        let killed = Instant::now();
        node.sigkill().await;
        let acked = load.ledger().acked_count();
        node.start().await?;
        recoveries.push(killed.elapsed().as_secs_f64() * 1000.0);
        // Serving health is not serving sends: the new process may still be taking over the
        // log's partitions.
        while load.ledger().acked_count() == acked && killed.elapsed() < FIRST_ACK_LIMIT {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        first_acks.push(
            (load.ledger().acked_count() > acked).then(|| killed.elapsed().as_secs_f64() * 1000.0),
        );
    }
    let loaded = load.finish_with(secs, recoveries, first_acks).await;
    node.stop().await;
    loaded
}

/// `n` moments spread over `secs` unevenly: never in step with the senders' rhythm.
pub fn uneven(n: usize, secs: f64) -> Vec<f64> {
    (0..n)
        .map(|k| secs * (k as f64 + 0.3 + 0.4 * ((k * 7919) % 11) as f64 / 11.0) / n as f64)
        .collect()
}
