//! The newest committed entries of each partition of the embedded log, kept in memory so that
//! the consumers that keep up (live delivery, analytics) take them without reading the file and
//! without decoding them again (each entry carries the event it was built from).
//!
//! Each partition also knows where it ends, as far as this process knows: while no other
//! connection writes the file (the committer watches for that), a consumer at the end is told
//! "nothing new" without a query. Once another writer shows up, every read goes to the file.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use livechat_core::model::LogEntry;

/// Entries kept per partition.
const ENTRIES_PER_PARTITION: usize = 2048;

#[derive(Default)]
struct Partition {
    /// Contiguous by offset.
    entries: VecDeque<Arc<LogEntry>>,
    /// The offset the next entry will get, once known.
    end: Option<i64>,
}

/// Partitions by topic, then by number (looked up by `&str`: no key built per call).
type Partitions = HashMap<String, HashMap<u32, Partition>>;

pub(super) struct Tail {
    partitions: Mutex<Partitions>,
    /// Set once another connection has written the file: the ends known here no longer say
    /// that nothing follows them.
    shared: Arc<AtomicBool>,
}

/// What the tail can answer for a read from an offset.
pub(super) enum FromTail {
    /// These entries (possibly none: the partition ends here), and nothing after them.
    Complete(Vec<LogEntry>),
    /// These entries (possibly none); the file may hold more after them.
    Partial(Vec<LogEntry>),
}

impl Tail {
    /// `shared` is set by the file's committer when another connection writes to it.
    pub(super) fn new(shared: Arc<AtomicBool>) -> Tail {
        Tail {
            partitions: Mutex::new(HashMap::new()),
            shared,
        }
    }

    /// Adds committed entries, in offset order per partition. They are moved in, not copied;
    /// the ones they push out are dropped after the lock is released.
    pub(super) fn push(&self, entries: Vec<LogEntry>) {
        let mut evicted = Vec::new();
        let mut parts = self.partitions.lock().unwrap_or_else(|p| p.into_inner());
        for e in entries {
            let part = partition_mut(&mut parts, &e.topic, e.partition);
            if part
                .entries
                .back()
                .is_some_and(|b| b.offset + 1 != e.offset)
            {
                part.entries.clear(); // another writer appended in between
            }
            if part.entries.len() == ENTRIES_PER_PARTITION {
                evicted.extend(part.entries.pop_front());
            }
            let next = e.offset + 1;
            part.entries.push_back(Arc::new(e));
            part.end = Some(part.end.map_or(next, |end| end.max(next)));
        }
        drop(parts);
        drop(evicted);
    }

    /// Records where a partition ends, as read from the file.
    pub(super) fn ends_at(&self, topic: &str, partition: u32, end: i64) {
        let mut parts = self.partitions.lock().unwrap_or_else(|p| p.into_inner());
        let part = partition_mut(&mut parts, topic, partition);
        part.end = Some(part.end.map_or(end, |known| known.max(end)));
    }

    /// Where a partition ends, if known and no other connection writes the file.
    pub(super) fn end(&self, topic: &str, partition: u32) -> Option<i64> {
        if self.shared.load(Ordering::Relaxed) {
            return None;
        }
        let parts = self.partitions.lock().unwrap_or_else(|p| p.into_inner());
        parts.get(topic)?.get(&partition)?.end
    }

    /// Up to `max` entries from `from`.
    pub(super) fn read(&self, topic: &str, partition: u32, from: i64, max: usize) -> FromTail {
        let parts = self.partitions.lock().unwrap_or_else(|p| p.into_inner());
        let Some(part) = parts.get(topic).and_then(|t| t.get(&partition)) else {
            return FromTail::Partial(Vec::new());
        };
        let mut out = Vec::new();
        if let (Some(first), Some(last)) = (part.entries.front(), part.entries.back()) {
            if from >= first.offset && from <= last.offset {
                let skip = (from - first.offset) as usize;
                out = part
                    .entries
                    .iter()
                    .skip(skip)
                    .take(max)
                    .map(|e| LogEntry::clone(e))
                    .collect();
            }
        }
        let next = out.last().map_or(from, |e| e.offset + 1);
        let at_end = part.end == Some(next) && !self.shared.load(Ordering::Relaxed);
        if at_end || out.len() == max {
            FromTail::Complete(out)
        } else {
            FromTail::Partial(out)
        }
    }
}

/// A partition's entry, created empty when first met.
fn partition_mut<'a>(parts: &'a mut Partitions, topic: &str, partition: u32) -> &'a mut Partition {
    if !parts.contains_key(topic) {
        parts.insert(topic.to_string(), HashMap::new());
    }
    parts
        .get_mut(topic)
        .expect("inserted above")
        .entry(partition)
        .or_default()
}
