//! A connection's outbound queue: bounded, and holding memory only while frames wait.
//!
//! Every socket has one, most of them idle most of the time. A tokio channel allocates its
//! first block of slots and its cache-padded state when it is made (~1 KB per socket, most of
//! an idle socket's footprint after the socket itself); this queue is a deque behind a lock,
//! empty until the hub queues a frame, and gives a burst's slots back once it is drained.
//! One receiver (the connection's task); any number of pushers (the hub's deliveries).
//!
//! The queue also carries the hub's request to close the connection: the receiver waits on
//! one signal for both, and checking for a close is one atomic load (a cancellation token
//! takes a lock at every poll, and the connection's loop polls it for every frame it sends).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};

use tokio::sync::Notify;

/// Slots a drained queue keeps for the next frames; a deque grown larger by a burst is freed
/// (and so is the receiver's batch buffer, [`release_burst`]).
const KEPT_SLOTS: usize = 16;

/// The queue already holds its capacity: the receiver is not keeping up.
#[derive(Debug, PartialEq, Eq)]
pub struct Full;

#[derive(Debug)]
pub struct OutboundQueue<T> {
    items: Mutex<VecDeque<T>>,
    /// Woken at each push and at the close; a wake while nobody waits leaves a permit, so a
    /// receiver that found the queue empty just before it still wakes.
    ready: Notify,
    /// Set once, when the connection is to close.
    closed: AtomicBool,
    capacity: usize,
}

impl<T> OutboundQueue<T> {
    /// A queue of at most `capacity` items (at least one).
    pub fn new(capacity: usize) -> Self {
        OutboundQueue {
            items: Mutex::new(VecDeque::new()),
            ready: Notify::new(),
            closed: AtomicBool::new(false),
            capacity: capacity.max(1),
        }
    }

    /// Queues `item` at the back, unless `capacity` items already wait. Never waits.
    pub fn push(&self, item: T) -> Result<(), Full> {
        {
            let mut items = self.lock();
            if items.len() >= self.capacity {
                return Err(Full);
            }
            items.push_back(item);
        }
        self.ready.notify_one();
        Ok(())
    }

    /// Moves up to `max` waiting items, oldest first, to the end of `into`; returns how many.
    pub fn take(&self, into: &mut Vec<T>, max: usize) -> usize {
        let mut items = self.lock();
        let n = items.len().min(max);
        into.extend(items.drain(..n));
        if items.is_empty() && items.capacity() > KEPT_SLOTS {
            *items = VecDeque::new();
        }
        n
    }

    /// Waits until an item is queued or the queue is closed, then moves up to `max` waiting
    /// items to `into`; returns how many (0 only when closed). Cancel-safe: dropped while
    /// waiting, it takes nothing and loses no wakeup.
    pub async fn recv_many(&self, into: &mut Vec<T>, max: usize) -> usize {
        loop {
            let n = self.take(into, max.max(1));
            if n > 0 || self.is_closed() {
                return n;
            }
            self.ready.notified().await;
        }
    }

    /// Asks the receiver to stop: wakes it, whether it waits for items or in [`Self::closed`].
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.ready.notify_one();
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Completes once the queue is closed (the receiver's own wait: it may take a wakeup meant
    /// for [`Self::recv_many`], which looks at the queue itself before it waits).
    pub async fn closed(&self) {
        while !self.is_closed() {
            self.ready.notified().await;
        }
    }

    fn lock(&self) -> MutexGuard<'_, VecDeque<T>> {
        // A pusher that panicked mid-push left a deque that is still whole.
        self.items.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Frees a receiver's emptied batch buffer once a burst grew it past [`KEPT_SLOTS`], as the
/// queue frees its own: after a burst a socket goes back to an idle socket's footprint.
pub fn release_burst<T>(batch: &mut Vec<T>) {
    if batch.is_empty() && batch.capacity() > KEPT_SLOTS {
        *batch = Vec::new();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;

    #[test]
    fn items_leave_in_order_and_a_full_queue_refuses_more() {
        let q = OutboundQueue::new(3);
        for i in 0..3 {
            assert_eq!(q.push(i), Ok(()));
        }
        assert_eq!(q.push(3), Err(Full));
        let mut got = Vec::new();
        assert_eq!(q.take(&mut got, 2), 2);
        assert_eq!(q.push(4), Ok(()));
        assert_eq!(q.take(&mut got, 10), 2);
        assert_eq!(got, [0, 1, 2, 4]);
        assert_eq!(q.take(&mut got, 10), 0);
    }

    #[test]
    fn an_idle_queue_holds_no_slots_and_a_drained_burst_gives_them_back() {
        let q = OutboundQueue::new(1_000);
        assert_eq!(q.lock().capacity(), 0);
        for i in 0..500 {
            q.push(i).unwrap();
        }
        let mut got = Vec::new();
        while q.take(&mut got, 64) > 0 {}
        assert_eq!(got.len(), 500);
        assert_eq!(q.lock().capacity(), 0);
        // A few frames at a time keep their slots: no allocation per frame.
        q.push(1).unwrap();
        q.take(&mut got, 64);
        let kept = q.lock().capacity();
        assert!(kept > 0 && kept <= KEPT_SLOTS, "{kept}");
        // The receiver's batch buffer, once emptied, follows the same rule.
        got.clear();
        release_burst(&mut got);
        assert_eq!(got.capacity(), 0);
        let mut small: Vec<u8> = Vec::with_capacity(4);
        release_burst(&mut small);
        assert_eq!(small.capacity(), 4);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_waiting_receiver_wakes_for_each_push_and_a_dropped_wait_loses_nothing() {
        let q = Arc::new(OutboundQueue::new(8));
        let mut got = Vec::new();
        // Nothing queued: the wait does not end, and dropping it takes nothing.
        let waited = tokio::time::timeout(Duration::from_millis(20), q.recv_many(&mut got, 8));
        assert!(waited.await.is_err());
        let pusher = {
            let q = q.clone();
            tokio::spawn(async move {
                for i in 0..100 {
                    while q.push(i).is_err() {
                        tokio::task::yield_now().await;
                    }
                    if i % 7 == 0 {
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                }
            })
        };
        while got.len() < 100 {
            let before = got.len();
            let n = tokio::time::timeout(Duration::from_secs(5), q.recv_many(&mut got, 8))
                .await
                .expect("a queued item wakes the receiver");
            assert!((1..=8).contains(&n) && got.len() == before + n);
        }
        pusher.await.unwrap();
        assert_eq!(got, (0..100).collect::<Vec<_>>());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_close_wakes_the_waiting_receiver_and_ends_its_waits() {
        let q = Arc::new(OutboundQueue::<u32>::new(8));
        let receiver = {
            let q = q.clone();
            tokio::spawn(async move {
                let mut got = Vec::new();
                let n = q.recv_many(&mut got, 8).await;
                (n, q.is_closed())
            })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(
            !receiver.is_finished(),
            "nothing queued, nothing closed: still waiting"
        );
        q.close();
        let woke = tokio::time::timeout(Duration::from_secs(5), receiver).await;
        assert_eq!(woke.expect("the close wakes it").unwrap(), (0, true));
        // Every later wait ends at once, and a frame queued before the close is still taken.
        tokio::time::timeout(Duration::from_secs(5), q.closed())
            .await
            .expect("closed() completes once closed");
        q.push(7).unwrap();
        let mut got = Vec::new();
        assert_eq!(q.recv_many(&mut got, 8).await, 1);
        assert_eq!(q.recv_many(&mut got, 8).await, 0);
        assert_eq!(got, [7]);
    }
}
