//! The worker's lifecycle, shared by every shard: running, then a warm or cold shutdown.

use std::sync::atomic::{AtomicU8, Ordering};

/// Where the worker is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Consuming and running.
    Running,
    /// Warm shutdown: stop consuming, finish running tasks, return reserved ones to the broker.
    Warm,
    /// Cold shutdown: return reserved tasks and stop without waiting for running ones.
    Cold,
}

/// How to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShutdownMode {
    /// Finish running tasks, return reserved ones (SIGTERM).
    Warm,
    /// Stop now; unacked messages are redelivered (SIGQUIT, a second SIGINT).
    Cold,
}

/// An atomic [`Phase`].
#[derive(Debug)]
pub(crate) struct Lifecycle(AtomicU8);

impl Lifecycle {
    pub(crate) fn new() -> Self {
        Lifecycle(AtomicU8::new(0))
    }

    pub(crate) fn phase(&self) -> Phase {
        match self.0.load(Ordering::Acquire) {
            0 => Phase::Running,
            1 => Phase::Warm,
            _ => Phase::Cold,
        }
    }

    pub(crate) fn is_running(&self) -> bool {
        self.phase() == Phase::Running
    }

    /// Moves forward only: warm after running, cold after either.
    pub(crate) fn advance(&self, mode: ShutdownMode) {
        let target = match mode {
            ShutdownMode::Warm => 1,
            ShutdownMode::Cold => 2,
        };
        self.0.fetch_max(target, Ordering::AcqRel);
    }
}
