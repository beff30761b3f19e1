//! The order of one client's sends to one room while several are in flight at once.
//!
//! A send is slow to become durable (a commit, or a round trip through the log), but its place
//! among the room's sends — its seq — is decided much earlier: when the embedded committer
//! queues its write, when the log's producer takes its command. So a send the client wrote
//! after another waits only for the earlier one's *place* ([`Placed`]), not for it to be
//! durable, and then goes to the store: the store keeps that order, and the seqs follow the
//! order the client wrote. Many sends of one socket to one room then share a commit.

use tokio::sync::oneshot;

/// Held by the store while it writes a send: [`Placed::now`] once the send's place among the
/// room's sends is fixed, so the client's next send to the room may go to the store and be
/// ordered after it. A store that cannot tell earlier lets it drop when the send returns;
/// dropping it (a failed send too) lets the next one go as well.
#[derive(Debug, Default)]
pub struct Placed(Option<oneshot::Sender<()>>);

impl Placed {
    /// The send's place is fixed: the next send may go.
    pub fn now(&mut self) {
        if let Some(tx) = self.0.take() {
            let _ = tx.send(());
        }
    }
}

/// Where a send stands in its client's sends to the room: what it waits for before it goes
/// to the store, and what it tells the next one. The default waits for nothing and tells no
/// one (a send on its own, e.g. over REST).
#[derive(Debug, Default)]
pub struct SendOrder {
    previous: Option<oneshot::Receiver<()>>,
    placed: Placed,
}

/// The place of a send that is in flight, for the send that follows it.
#[derive(Debug)]
pub struct Turn(oneshot::Receiver<()>);

impl SendOrder {
    /// The order of a send written after the send whose [`Turn`] this is (`None`: nothing
    /// before it is in flight), and the turn of the send after it.
    pub fn after(previous: Option<Turn>) -> (SendOrder, Turn) {
        let (tx, rx) = oneshot::channel();
        let order = SendOrder {
            previous: previous.map(|t| t.0),
            placed: Placed(Some(tx)),
        };
        (order, Turn(rx))
    }

    /// Waits until the previous send is placed (or has failed), then hands over what this send
    /// tells the next one once it is placed itself.
    pub async fn turn(self) -> Placed {
        if let Some(previous) = self.previous {
            // An error is the previous send's `Placed` dropped: it ended, placed or not.
            let _ = previous.await;
        }
        self.placed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn a_send_waits_for_the_previous_one_to_be_placed_not_to_finish() {
        let (first, turn) = SendOrder::after(None);
        let (second, _) = SendOrder::after(Some(turn));
        let mut placed = first.turn().await;
        let mut waiting = Box::pin(second.turn());
        assert!(
            tokio::time::timeout(Duration::from_millis(20), &mut waiting)
                .await
                .is_err(),
            "the second send went ahead of the first's place"
        );
        placed.now();
        tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("placed, the second send goes");
    }

    #[tokio::test]
    async fn a_send_that_ends_unplaced_lets_the_next_one_go() {
        let (first, turn) = SendOrder::after(None);
        let (second, _) = SendOrder::after(Some(turn));
        drop(first.turn().await);
        tokio::time::timeout(Duration::from_secs(5), second.turn())
            .await
            .expect("the failed send's successor goes");
    }
}
