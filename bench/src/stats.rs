//! Clocks, latency histograms, counters and /proc sampling.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Instant;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

static ORIGIN: OnceLock<Instant> = OnceLock::new();

/// Nanoseconds since the first call in this process (monotonic). Send timestamps embedded in
/// messages use this clock; sender and receiver are the same process, so no clock skew.
pub fn now_ns() -> u64 {
    ORIGIN.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

const SHARDS: usize = 16;
/// Highest recordable latency: 120 s in microseconds.
const MAX_US: u64 = 120_000_000;

/// A latency histogram in microseconds (3 significant digits), sharded to keep lock contention
/// low when many connection tasks record at once.
pub struct Hist {
    shards: Vec<Mutex<Histogram<u64>>>,
}

impl Default for Hist {
    fn default() -> Self {
        Self::new()
    }
}

impl Hist {
    pub fn new() -> Self {
        Hist {
            shards: (0..SHARDS)
                .map(|_| Mutex::new(Histogram::new_with_bounds(1, MAX_US, 3).expect("bounds")))
                .collect(),
        }
    }

    pub fn record_ns(&self, shard: usize, ns: u64) {
        let us = (ns / 1000).clamp(1, MAX_US);
        let mut h = self.shards[shard % SHARDS]
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        h.saturating_record(us);
    }

    pub fn reset(&self) {
        for s in &self.shards {
            s.lock().unwrap_or_else(|p| p.into_inner()).reset();
        }
    }

    pub fn merged(&self) -> Histogram<u64> {
        let mut all = Histogram::new_with_bounds(1, MAX_US, 3).expect("bounds");
        for s in &self.shards {
            let h = s.lock().unwrap_or_else(|p| p.into_inner());
            all.add(&*h).expect("same bounds");
        }
        all
    }

    pub fn summary(&self) -> Lat {
        Lat::from_hist(&self.merged())
    }
}

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Lat {
    pub count: u64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
}

impl Lat {
    pub fn from_hist(h: &Histogram<u64>) -> Lat {
        if h.is_empty() {
            return Lat::default();
        }
        let ms = |us: u64| us as f64 / 1000.0;
        Lat {
            count: h.len(),
            p50_ms: ms(h.value_at_quantile(0.50)),
            p90_ms: ms(h.value_at_quantile(0.90)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            p999_ms: ms(h.value_at_quantile(0.999)),
            max_ms: ms(h.max()),
            mean_ms: h.mean() / 1000.0,
        }
    }
}

/// Counters shared by every connection task of one scenario step.
#[derive(Default)]
pub struct Counters {
    /// Deliveries (frames carrying a benchmark message) received since the last reset.
    pub delivered: AtomicU64,
    /// Deliveries received inside the measurement window.
    pub delivered_win: AtomicU64,
    /// Messages sent since the last reset, and sent inside the window.
    pub sent: AtomicU64,
    pub sent_win: AtomicU64,
    /// Acknowledged sends since the last reset, and inside the window.
    pub acked: AtomicU64,
    pub acked_win: AtomicU64,
    /// Sends the server refused (error reply).
    pub send_errors: AtomicU64,
    /// Other error frames.
    pub errors: AtomicU64,
    /// Connections the server closed (or that failed) while the scenario ran.
    pub closed: AtomicU64,
    /// Why the first closed connection ended (close frame or error), for the report.
    pub first_close: Mutex<Option<String>>,
    /// Measurement window [from, to) in `now_ns` units; latency is recorded for messages *sent*
    /// inside it, deliveries/acks are counted when *received* inside it.
    pub win_from: AtomicU64,
    pub win_to: AtomicU64,
}

impl Counters {
    pub fn new() -> Self {
        let c = Counters::default();
        c.win_from.store(u64::MAX, Ordering::Relaxed);
        c
    }

    pub fn reset(&self) {
        for a in [
            &self.delivered,
            &self.delivered_win,
            &self.sent,
            &self.sent_win,
            &self.acked,
            &self.acked_win,
            &self.send_errors,
            &self.errors,
        ] {
            a.store(0, Ordering::Relaxed);
        }
        self.win_from.store(u64::MAX, Ordering::Relaxed);
        self.win_to.store(u64::MAX, Ordering::Relaxed);
    }

    pub fn open_window(&self, from: u64, to: u64) {
        self.win_to.store(to, Ordering::Relaxed);
        self.win_from.store(from, Ordering::Relaxed);
    }

    pub fn in_window(&self, t: u64) -> bool {
        t >= self.win_from.load(Ordering::Relaxed) && t < self.win_to.load(Ordering::Relaxed)
    }

    /// Counts a closed connection and remembers the first reason.
    pub fn closed_because(&self, why: String) {
        self.closed.fetch_add(1, Ordering::Relaxed);
        let mut f = self.first_close.lock().unwrap_or_else(|p| p.into_inner());
        if f.is_none() {
            *f = Some(why);
        }
    }

    pub fn first_close(&self) -> Option<String> {
        self.first_close
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn get(a: &AtomicU64) -> u64 {
        a.load(Ordering::Relaxed)
    }
}

/// CPU time and memory of a process, read from /proc.
#[derive(Debug, Clone, Copy)]
pub struct ProcSample {
    pub ticks: u64,
    pub rss_kb: u64,
    pub at: Instant,
}

fn clk_tck() -> f64 {
    static TCK: OnceLock<f64> = OnceLock::new();
    *TCK.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// utime + stime (clock ticks) and VmRSS of `pid` (None = this process).
pub fn sample(pid: Option<u32>) -> Option<ProcSample> {
    let base = match pid {
        Some(p) => format!("/proc/{p}"),
        None => "/proc/self".to_string(),
    };
    let stat = std::fs::read_to_string(format!("{base}/stat")).ok()?;
    // Fields after the command name (which may contain spaces) start at the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest[0] is field 3 (state); utime is field 14, stime field 15.
    let ticks = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    let status = std::fs::read_to_string(format!("{base}/status")).ok()?;
    let rss_kb = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    Some(ProcSample {
        ticks,
        rss_kb,
        at: Instant::now(),
    })
}

/// Several processes as one: CPU ticks and RSS summed; None when any of them is gone.
pub fn sample_all(pids: &[u32]) -> Option<ProcSample> {
    let mut total: Option<ProcSample> = None;
    for &pid in pids {
        let s = sample(Some(pid))?;
        total = Some(match total {
            None => s,
            Some(t) => ProcSample {
                ticks: t.ticks + s.ticks,
                rss_kb: t.rss_kb + s.rss_kb,
                at: t.at,
            },
        });
    }
    total
}

/// The processes a measurement samples: the server under test (one process, or several whose
/// CPU and memory are summed) and named components beside it (in distributed mode the servers
/// it uses: Kafka, Cassandra, …), whose CPU is reported one by one.
#[derive(Clone, Debug, Default)]
pub struct Watch {
    pub server: Vec<u32>,
    pub components: Vec<(String, u32)>,
}

/// One reading of every process of a [`Watch`].
pub struct WatchSample {
    server: Option<ProcSample>,
    components: Vec<Option<ProcSample>>,
}

impl Watch {
    /// A single server process and nothing beside it.
    pub fn one(pid: u32) -> Watch {
        Watch {
            server: vec![pid],
            components: Vec::new(),
        }
    }

    pub fn sample(&self) -> WatchSample {
        WatchSample {
            server: sample_all(&self.server),
            components: self
                .components
                .iter()
                .map(|(_, pid)| sample(Some(*pid)))
                .collect(),
        }
    }

    /// Server CPU % between two readings.
    pub fn server_cpu_pct(&self, a: &WatchSample, b: &WatchSample) -> f64 {
        cpu_pct(&a.server, &b.server)
    }

    /// Server RSS (MB) at a reading.
    pub fn server_rss_mb(&self, s: &WatchSample) -> f64 {
        s.server.map(|s| s.rss_kb as f64 / 1024.0).unwrap_or(0.0)
    }

    /// CPU % of each component between two readings, by name.
    pub fn components_cpu_pct(&self, a: &WatchSample, b: &WatchSample) -> BTreeMap<String, f64> {
        self.components
            .iter()
            .enumerate()
            .map(|(i, (name, _))| (name.clone(), cpu_pct(&a.components[i], &b.components[i])))
            .collect()
    }
}

/// Percent of one core used between two samples (200 % = both cores of a 2-core machine).
pub fn cpu_pct(a: &Option<ProcSample>, b: &Option<ProcSample>) -> f64 {
    match (a, b) {
        (Some(a), Some(b)) => {
            let secs = b.at.duration_since(a.at).as_secs_f64();
            if secs <= 0.0 {
                return 0.0;
            }
            (b.ticks.saturating_sub(a.ticks)) as f64 / clk_tck() / secs * 100.0
        }
        _ => 0.0,
    }
}

/// Whole-machine CPU counters from /proc/stat: (busy jiffies, total jiffies, cpus).
#[derive(Debug, Clone, Copy)]
pub struct MachineSample {
    busy: u64,
    total: u64,
    cpus: u64,
}

pub fn machine() -> Option<MachineSample> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let mut lines = stat.lines();
    let v: Vec<u64> = lines
        .next()?
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let total: u64 = v.iter().take(8).sum();
    let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
    let cpus = lines.filter(|l| l.starts_with("cpu")).count() as u64;
    Some(MachineSample {
        busy: total.saturating_sub(idle),
        total,
        cpus: cpus.max(1),
    })
}

/// Percent of one core the whole machine was busy between two samples (200 % = 2 cores full);
/// minus the server's and the generator's share, it shows what else ran during a measurement.
pub fn machine_pct(a: &Option<MachineSample>, b: &Option<MachineSample>) -> f64 {
    match (a, b) {
        (Some(a), Some(b)) if b.total > a.total => {
            (b.busy - a.busy) as f64 / (b.total - a.total) as f64 * a.cpus as f64 * 100.0
        }
        _ => 0.0,
    }
}

/// Open file descriptors of a process.
pub fn fd_count(pid: u32) -> u64 {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count() as u64)
        .unwrap_or(0)
}

/// Median of a list (mean of the two middle values for an even count); NaN-free input assumed.
pub fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// A tiny deterministic PRNG (xorshift64*) for query positions; no need for a crate.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed | 1)
    }
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in [lo, hi] (inclusive).
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo + 1)
    }
}
