//! Where a change's topic records go, inside the change's own write: the outbox table of the
//! directory's file (when the log is elsewhere; the relay moves them), or straight into the log
//! when the log lives in the same file (the embedded store: no relay, no second copy).

use std::sync::Arc;

use livechat_core::model::{LogEntry, OutboxRecord};
use rusqlite::Connection;

use super::log::SqliteLog;
use super::outbox::{queue, OutboxTable};

#[derive(Clone)]
pub(super) enum RecordSink {
    Outbox(Arc<OutboxTable>),
    Log(SqliteLog),
}

/// The records one write queued, announced once the write is committed.
pub(super) struct Queued {
    sink: RecordSink,
    entries: Vec<LogEntry>,
    any: bool,
}

impl Queued {
    pub(super) fn new(sink: RecordSink) -> Queued {
        Queued {
            sink,
            entries: Vec::new(),
            any: false,
        }
    }

    /// Writes the records in the caller's write.
    pub(super) fn queue(
        &mut self,
        conn: &Connection,
        records: Vec<OutboxRecord>,
    ) -> rusqlite::Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        self.any = true;
        match &self.sink {
            RecordSink::Outbox(_) => queue(conn, &records),
            RecordSink::Log(log) => {
                let entries = log.append_in(conn, records)?;
                self.entries.extend(entries);
                Ok(())
            }
        }
    }

    /// After the commit: wakes the relay, or hands the log entries to consumers.
    pub(super) fn published(&mut self) {
        if !self.any {
            return;
        }
        match &self.sink {
            RecordSink::Outbox(outbox) => outbox.signal(),
            RecordSink::Log(log) => log.published(std::mem::take(&mut self.entries)),
        }
    }
}
