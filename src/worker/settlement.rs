//! How an unacked delivery ends once its outcome is recorded: acked, rejected, requeued, or left
//! with the broker for redelivery.

use crate::protocol::TaskMessage;
use crate::task::TaskCtx;
use crate::transport::Settle;

/// How an unacked delivery ends once its outcome is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Settled {
    Ack,
    /// Dropped (kombu: the same as an ack on Redis).
    Reject,
    /// Back to its queue, marked redelivered.
    Requeue,
}

/// An unacked delivery and how to settle it after the outcome is stored.
pub(crate) struct After {
    settle: Settle,
    how: Settled,
    /// The message, kept only to requeue it (the memory broker puts the message itself back).
    message: Option<Box<TaskMessage>>,
}

impl After {
    pub(super) fn ack(settle: Settle) -> Self {
        After { settle, how: Settled::Ack, message: None }
    }

    pub(super) fn new(settle: Settle, how: Settled, ctx: &TaskCtx) -> Self {
        let message = (how == Settled::Requeue).then(|| Box::new(ctx.message().clone()));
        After { settle, how, message }
    }

    /// The outcome could not be stored: the message is not acked as done but left with the
    /// broker to deliver again (as after a crash with acks_late).
    pub(super) fn undone(self) {
        self.settle.abandon()
    }

    pub(super) fn done(self) {
        match (self.how, self.message) {
            (Settled::Requeue, Some(m)) => self.settle.requeue(m),
            (Settled::Reject, _) => self.settle.reject(),
            _ => self.settle.ack(),
        }
    }
}
