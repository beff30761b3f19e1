//! Kafka clients closed on a thread of their own. rdkafka's consumer, when dropped, polls until
//! librdkafka reports it closed; a rebalance event served during that close runs rdkafka's
//! default rebalance handler, which asks librdkafka's main thread for the rebalance protocol and
//! waits for the answer without a timeout. After a broker restart that answer was seen never to
//! come (the sequencer's thread stuck there for good, in `rd_kafka_rebalance_protocol` under
//! `BaseConsumer::drop`, taken with gdb): no seq was assigned, nothing was logged, and the sends
//! waited. Closed apart, a close that hangs holds one thread and that client's resources, not the
//! sequencer, whose next session's consumer takes the same static membership over.

use std::ops::Deref;
use std::time::{Duration, Instant};

/// A close slower than this is logged when it ends.
const SLOW: Duration = Duration::from_secs(5);

/// A client that is closed on a thread of its own when dropped.
pub(super) struct ClosedApart<T: Send + 'static> {
    client: Option<T>,
    /// What the client is, for the log.
    what: &'static str,
}

impl<T: Send + 'static> ClosedApart<T> {
    pub(super) fn new(client: T, what: &'static str) -> Self {
        ClosedApart {
            client: Some(client),
            what,
        }
    }
}

impl<T: Send + 'static> Deref for ClosedApart<T> {
    type Target = T;

    fn deref(&self) -> &T {
        self.client
            .as_ref()
            .expect("a client is taken out only when dropped")
    }
}

impl<T: Send + 'static> Drop for ClosedApart<T> {
    fn drop(&mut self) {
        let (Some(client), what) = (self.client.take(), self.what) else {
            return;
        };
        let closing = std::thread::Builder::new()
            .name("kafka-close".into())
            .spawn(move || {
                let started = Instant::now();
                drop(client);
                let took = started.elapsed();
                if took > SLOW {
                    tracing::warn!(
                        client = what,
                        secs = took.as_secs(),
                        "Kafka client closed slowly."
                    );
                }
            });
        if let Err(e) = closing {
            // The client went down with the closure that could not be handed over: closed here.
            tracing::warn!(client = what, error = %e, "No thread to close a Kafka client on.");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    /// Stands for a client whose close does not end until told to.
    struct HangsOnClose(mpsc::Receiver<()>, mpsc::Sender<&'static str>);

    impl Drop for HangsOnClose {
        fn drop(&mut self) {
            let _ = self.0.recv();
            let _ = self.1.send("closed");
        }
    }

    #[test]
    fn a_close_that_hangs_does_not_hold_up_the_dropping_thread() {
        let (release, wait) = mpsc::channel();
        let (done, closed) = mpsc::channel();
        let client = ClosedApart::new(HangsOnClose(wait, done), "test");
        let started = Instant::now();
        drop(client);
        assert!(started.elapsed() < Duration::from_secs(1));
        assert!(closed.try_recv().is_err(), "not closed yet");
        release.send(()).unwrap();
        assert_eq!(closed.recv_timeout(Duration::from_secs(5)), Ok("closed"));
    }
}
