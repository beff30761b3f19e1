//! The outbox relay: appends committed outbox records to the log, then removes them. A crash
//! between the two appends them again; every consumer deduplicates by event id or key.

use std::sync::Arc;
use std::time::Duration;

use livechat_core::ports::{EventLog, Outbox};
use tokio_util::sync::CancellationToken;

const BATCH: u32 = 1000;
const POLL: Duration = Duration::from_millis(500);

/// Runs until `shutdown`, then drains what is pending once more before returning.
pub async fn run(outbox: Arc<dyn Outbox>, log: Arc<dyn EventLog>, shutdown: CancellationToken) {
    let mut signal = outbox.pending_signal();
    let mut failures = 0u32;
    loop {
        signal.borrow_and_update();
        match relay_once(outbox.as_ref(), log.as_ref()).await {
            Ok(0) => {
                if shutdown.is_cancelled() {
                    return;
                }
                tokio::select! {
                    _ = signal.changed() => {}
                    _ = tokio::time::sleep(POLL) => {}
                    _ = shutdown.cancelled() => {}
                }
            }
            Ok(_) => failures = 0,
            Err(e) => {
                failures += 1;
                tracing::warn!(error = %format!("{e:#}"), failures, "Outbox relay failed; retrying.");
                if shutdown.is_cancelled() && failures > 3 {
                    return;
                }
                tokio::time::sleep(Duration::from_millis((100u64 << failures.min(6)).min(5000)))
                    .await;
            }
        }
    }
}

/// Moves one batch; returns how many records it relayed.
pub async fn relay_once(outbox: &dyn Outbox, log: &dyn EventLog) -> anyhow::Result<usize> {
    let batch = outbox.pending(BATCH).await?;
    if batch.is_empty() {
        return Ok(0);
    }
    let records: Vec<_> = batch.iter().map(|(_, r)| r.clone()).collect();
    log.append(&records).await?;
    let positions: Vec<i64> = batch.iter().map(|(p, _)| *p).collect();
    outbox.remove(&positions).await?;
    metrics::counter!("livechat_outbox_relayed_total").increment(batch.len() as u64);
    Ok(batch.len())
}
