//! `livechat dlq`: the dead-letter topic for operators. A processor dead-letters a record it
//! cannot decode or keeps failing to handle (see the processors' runner), with where it came from
//! and why in the record's headers. Once the cause is fixed (a newer LiveChat that knows the
//! schema, a store back in order), `dlq replay` hands the original records to the processor that
//! failed them, again: processors are idempotent, so a record it did handle after all changes
//! nothing. Dead letters are never removed (the topic is the audit trail); replaying one twice
//! is harmless.

use std::collections::BTreeMap;

use anyhow::Context;
use livechat_core::keyring::Keyring;
use livechat_core::model::LogEntry;
use livechat_processors::{Decoded, Durable};
use livechat_schemas::{TopicEvent, DEAD_LETTER_TOPIC};

use crate::config::Config;

#[derive(clap::Args, Debug)]
pub struct DlqArgs {
    #[command(subcommand)]
    command: DlqCommand,
}

/// Which dead letters a command looks at.
#[derive(clap::Args, Debug, Clone)]
struct Select {
    /// Only those of this processor (its consumer group).
    #[arg(long)]
    processor: Option<String>,
    /// Only this partition of the dead-letter topic.
    #[arg(long)]
    partition: Option<u32>,
    /// Only from this offset of the dead-letter topic (inclusive).
    #[arg(long)]
    from_offset: Option<i64>,
    /// Only up to this offset of the dead-letter topic (inclusive).
    #[arg(long)]
    to_offset: Option<i64>,
    /// Only those dead-lettered at or after this time (RFC 3339).
    #[arg(long)]
    from_time: Option<String>,
    /// Only those dead-lettered before this time (RFC 3339).
    #[arg(long)]
    until_time: Option<String>,
}

#[derive(clap::Subcommand, Debug)]
enum DlqCommand {
    /// One line per dead letter: where it is, when, which processor, why, and where it came from.
    List {
        #[command(flatten)]
        select: Select,
        /// At most this many lines.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Everything about one dead letter: its headers, the error, the original record decoded.
    Show {
        #[arg(long)]
        partition: u32,
        #[arg(long)]
        offset: i64,
    },
    /// Hands the original records to the processors that failed them, in order.
    Replay {
        #[command(flatten)]
        select: Select,
        /// Say what would be replayed; change nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

/// A dead letter as the runner wrote it.
struct DeadLetter {
    partition: u32,
    offset: i64,
    at_ms: i64,
    headers: BTreeMap<String, String>,
    /// The original record's bytes in hex, as the JSON body carries them.
    original_hex: Option<String>,
    error: String,
}

impl DeadLetter {
    fn of(e: LogEntry) -> DeadLetter {
        let headers: BTreeMap<String, String> = e.headers.into_iter().collect();
        let body: serde_json::Value = serde_json::from_slice(&e.payload).unwrap_or_default();
        let original_hex = body["payload_hex"].as_str().map(str::to_string);
        let error = headers
            .get("error.msg")
            .cloned()
            .or_else(|| body["error"].as_str().map(str::to_string))
            .unwrap_or_default();
        DeadLetter {
            partition: e.partition,
            offset: e.offset,
            at_ms: e.timestamp_ms,
            headers,
            original_hex,
            error,
        }
    }

    fn header(&self, name: &str) -> &str {
        self.headers.get(name).map(String::as_str).unwrap_or("?")
    }

    /// The processor that failed it, when it keeps a durable store `livechat` can write.
    fn durable(&self) -> Option<Durable> {
        Durable::parse(self.header("processor"))
    }

    fn origin(&self) -> String {
        format!(
            "{}[{}]@{}",
            self.header("orig.topic"),
            self.header("orig.partition"),
            self.header("orig.offset")
        )
    }

    /// The original record, decoded as this version of LiveChat reads it (its sealed text
    /// opened, unless its author's account was erased).
    async fn decoded(&self, keyring: &Keyring) -> anyhow::Result<Decoded> {
        let payload = self
            .original_hex
            .as_deref()
            .and_then(unhex)
            .context("the dead letter carries no original record")?;
        let entry = LogEntry {
            topic: self.header("orig.topic").into(),
            partition: self.header("orig.partition").parse().unwrap_or(0),
            offset: self.header("orig.offset").parse().unwrap_or(-1),
            key: "".into(),
            payload: payload.into(),
            timestamp_ms: self.at_ms,
            headers: Vec::new(),
            event: None,
        };
        let mut rec = Decoded::of(entry)
            .map_err(|failed| anyhow::anyhow!("still undecodable: {}", failed.1))?;
        Decoded::open_all(std::slice::from_mut(&mut rec), keyring)
            .await
            .context("fetching the content keys")?;
        Ok(rec)
    }
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

fn time_ms(flag: &str, t: &Option<String>) -> anyhow::Result<Option<i64>> {
    t.as_ref()
        .map(|t| {
            chrono::DateTime::parse_from_rfc3339(t)
                .map(|t| t.timestamp_millis())
                .with_context(|| format!("--{flag} {t:?} is not an RFC 3339 time"))
        })
        .transpose()
}

/// The selected dead letters, partition by partition, in offset order.
async fn select(cfg: &Config, s: &Select) -> anyhow::Result<Vec<DeadLetter>> {
    let log = crate::wire::existing_log(cfg).await?;
    let (from_ms, until_ms) = (
        time_ms("from-time", &s.from_time)?,
        time_ms("until-time", &s.until_time)?,
    );
    let mut out = Vec::new();
    for p in 0..log.partitions(DEAD_LETTER_TOPIC) {
        if s.partition.is_some_and(|only| only != p) {
            continue;
        }
        let end = log.end_offset(DEAD_LETTER_TOPIC, p).await?;
        let last = s.to_offset.map_or(end - 1, |t| t.min(end - 1));
        let mut next = match from_ms {
            Some(ms) => log.offset_for_time(DEAD_LETTER_TOPIC, p, ms).await?,
            None => 0,
        }
        .max(s.from_offset.unwrap_or(0));
        while next <= last {
            let entries = log
                .read(
                    DEAD_LETTER_TOPIC,
                    p,
                    next,
                    1_000u32.min((last - next + 1) as u32),
                )
                .await?;
            let Some(read_to) = entries.last().map(|e| e.offset) else {
                break;
            };
            for e in entries {
                if e.offset > last || until_ms.is_some_and(|u| e.timestamp_ms >= u) {
                    continue;
                }
                let d = DeadLetter::of(e);
                if s.processor
                    .as_deref()
                    .is_none_or(|p| d.header("processor") == p)
                {
                    out.push(d);
                }
            }
            next = read_to + 1;
        }
    }
    Ok(out)
}

fn when(ms: i64) -> String {
    livechat_core::from_ms(ms).to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

pub async fn run(cfg: &Config, args: DlqArgs) -> anyhow::Result<()> {
    match args.command {
        DlqCommand::List { select: s, limit } => {
            let letters = select(cfg, &s).await?;
            println!(
                "{} dead letter(s){}",
                letters.len(),
                if letters.len() > limit {
                    format!(", the first {limit}")
                } else {
                    String::new()
                }
            );
            for d in letters.iter().take(limit) {
                let mut error = d.error.replace('\n', " ");
                if error.chars().count() > 100 {
                    error = error.chars().take(100).collect::<String>() + "…";
                }
                println!(
                    "{}@{}  {}  {}  {}  from {}  {}",
                    d.partition,
                    d.offset,
                    when(d.at_ms),
                    d.header("processor"),
                    d.header("error.class"),
                    d.origin(),
                    error
                );
            }
            Ok(())
        }
        DlqCommand::Show { partition, offset } => {
            let s = Select {
                processor: None,
                partition: Some(partition),
                from_offset: Some(offset),
                to_offset: Some(offset),
                from_time: None,
                until_time: None,
            };
            let d = select(cfg, &s)
                .await?
                .into_iter()
                .next()
                .with_context(|| format!("no dead letter at {partition}@{offset}"))?;
            println!(
                "dead letter {}@{} at {}",
                d.partition,
                d.offset,
                when(d.at_ms)
            );
            for (k, v) in &d.headers {
                println!("  {k}: {v}");
            }
            let keyring = crate::wire::keyring(cfg, &crate::wire::directory(cfg).await?)?;
            match d.decoded(&keyring).await {
                Ok(rec) => println!(
                    "original record (decodes now):\n{}",
                    serde_json::to_string_pretty(&event_json(&rec.event))?
                ),
                Err(e) => println!(
                    "original record ({e:#}): {}",
                    d.original_hex.as_deref().unwrap_or_default()
                ),
            }
            Ok(())
        }
        DlqCommand::Replay { select: s, dry_run } => replay(cfg, &s, dry_run).await,
    }
}

fn event_json(ev: &TopicEvent) -> serde_json::Value {
    let mut v = match ev {
        TopicEvent::Room(e) => serde_json::to_value(e),
        TopicEvent::User(e) => serde_json::to_value(e),
        TopicEvent::Notification(e) => serde_json::to_value(e),
    }
    .unwrap_or_default();
    // The sealed bytes are shown by their size (what they hold is in the fields beside, when
    // the author's key is still there).
    if let TopicEvent::Room(livechat_schemas::RoomEvent {
        sealed: Some(bytes),
        ..
    }) = ev
    {
        v["sealed"] = serde_json::json!(format!("{} bytes", bytes.len()));
    }
    v
}

/// Replays the selected dead letters into their processors' stores, one at a time in order;
/// prints a line per letter and a summary. Fails (exit status) if any could not be replayed.
async fn replay(cfg: &Config, s: &Select, dry_run: bool) -> anyhow::Result<()> {
    let letters = select(cfg, s).await?;
    let keyring = crate::wire::keyring(cfg, &crate::wire::directory(cfg).await?)?;
    let mut processors = BTreeMap::new();
    let (mut done, mut failed) = (0usize, 0usize);
    println!(
        "{} dead letter(s) to replay{}",
        letters.len(),
        if dry_run {
            " (dry run: nothing is written)"
        } else {
            ""
        }
    );
    for d in &letters {
        let at = format!(
            "{}@{} ({} from {})",
            d.partition,
            d.offset,
            d.header("processor"),
            d.origin()
        );
        let Some(kind) = d.durable() else {
            failed += 1;
            println!("  {at}: skipped: not a durable store's processor (live delivery is caught up from history by the clients)");
            continue;
        };
        let rec = match d.decoded(&keyring).await {
            Ok(rec) => rec,
            Err(e) => {
                failed += 1;
                println!("  {at}: {e:#}");
                continue;
            }
        };
        if dry_run {
            done += 1;
            println!("  {at}: would be replayed");
            continue;
        }
        if !processors.contains_key(kind.name()) {
            let target = crate::wire::read_model(kind, cfg).await?;
            processors.insert(kind.name(), target.processor(kind.name()));
        }
        let processor = &processors[kind.name()];
        match processor.handle(std::slice::from_ref(&rec)).await {
            Ok(()) => {
                done += 1;
                println!("  {at}: replayed");
            }
            Err(e) => {
                failed += 1;
                println!("  {at}: failed again: {e:#}");
            }
        }
    }
    println!(
        "{} {done}, {failed} not",
        if dry_run { "would replay" } else { "replayed" }
    );
    anyhow::ensure!(failed == 0, "{failed} dead letter(s) could not be replayed");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::unhex;

    #[test]
    fn hex_round_trips_and_rejects_garbage() {
        assert_eq!(unhex("00ff10"), Some(vec![0, 255, 16]));
        assert_eq!(unhex("0"), None);
        assert_eq!(unhex("zz"), None);
        assert_eq!(unhex(""), Some(vec![]));
    }
}
