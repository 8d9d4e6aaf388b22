//! The queues the worker consumes, changed at run time by `add_consumer` and `cancel_consumer`
//! (Celery's `Consumer.add_task_queue` / `cancel_task_queue`): one list for the worker, with an
//! epoch each shard compares against the one it applied to its own consumer.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::RwLock;

use crate::config::QueueSpec;

pub(crate) struct Consuming {
    /// `task_queues`: how a queue named there is declared when it is added.
    known: Vec<QueueSpec>,
    specs: RwLock<Vec<QueueSpec>>,
    epoch: AtomicU64,
}

impl Consuming {
    /// Consuming `queues`, each as `task_queues` (`known`) declares it or as Celery declares a
    /// missing queue.
    pub(crate) fn new(known: Vec<QueueSpec>, queues: &[String]) -> Self {
        let specs = queues.iter().map(|q| Self::known_or_missing(&known, q)).collect();
        Self { known, specs: RwLock::new(specs), epoch: AtomicU64::new(0) }
    }

    fn known_or_missing(known: &[QueueSpec], queue: &str) -> QueueSpec {
        known.iter().find(|s| s.name == queue).cloned().unwrap_or_else(|| QueueSpec::missing(queue))
    }

    /// How `add_consumer` declares `queue`: as `task_queues` does when it names the queue
    /// (Celery's `select_add(queues[queue])`), else with the exchange (default: the queue's
    /// name), its type (default `direct`) and the binding key given.
    pub(crate) fn spec(
        &self,
        queue: &str,
        exchange: Option<&str>,
        exchange_type: Option<&str>,
        routing_key: Option<&str>,
    ) -> QueueSpec {
        if let Some(known) = self.known.iter().find(|s| s.name == queue) {
            return known.clone();
        }
        QueueSpec {
            exchange: exchange.map(str::to_owned),
            exchange_type: exchange_type.unwrap_or("direct").to_owned(),
            routing_key: routing_key.map(str::to_owned),
            ..QueueSpec::missing(queue)
        }
    }

    /// Bumped by every change.
    pub(crate) fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// The queues now consumed, with the epoch they belong to.
    pub(crate) fn snapshot(&self) -> (u64, Vec<QueueSpec>) {
        let specs = self.specs.read().unwrap_or_else(|p| p.into_inner());
        (self.epoch(), specs.clone())
    }

    /// Starts consuming `spec`'s queue; `false` when it is consumed already.
    pub(crate) fn add(&self, spec: QueueSpec) -> bool {
        let mut specs = self.specs.write().unwrap_or_else(|p| p.into_inner());
        if specs.iter().any(|q| q.name == spec.name) {
            return false;
        }
        specs.push(spec);
        self.epoch.fetch_add(1, Ordering::AcqRel);
        true
    }

    /// Stops consuming `queue`; `false` when it was not consumed.
    pub(crate) fn cancel(&self, queue: &str) -> bool {
        let mut specs = self.specs.write().unwrap_or_else(|p| p.into_inner());
        let before = specs.len();
        specs.retain(|q| q.name != queue);
        let changed = specs.len() != before;
        if changed {
            self.epoch.fetch_add(1, Ordering::AcqRel);
        }
        changed
    }
}

/// What one shard's consumer must do to follow the list: queues to start, then queues to stop.
pub(crate) fn diff<'a>(applied: &[String], now: &'a [QueueSpec]) -> (Vec<&'a QueueSpec>, Vec<String>) {
    let start = now.iter().filter(|q| !applied.contains(&q.name)).collect();
    let stop = applied.iter().filter(|a| !now.iter().any(|q| &q.name == *a)).cloned().collect();
    (start, stop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adds_and_cancels_bump_the_epoch_once_each() {
        let c = Consuming::new(Vec::new(), &["a".into()]);
        assert!(c.add(QueueSpec::missing("b")));
        assert!(!c.add(QueueSpec::missing("a")));
        assert_eq!(c.epoch(), 1);
        assert!(c.cancel("a"));
        assert!(!c.cancel("zz"));
        assert_eq!(c.epoch(), 2);
        assert_eq!(c.snapshot().1, [QueueSpec::missing("b")]);
    }

    #[test]
    fn a_queue_of_task_queues_is_added_as_declared_there() {
        let known = QueueSpec { exchange: Some("media".into()), ..QueueSpec::missing("images") };
        let c = Consuming::new(vec![known.clone()], &["celery".into()]);
        assert_eq!(c.spec("images", Some("other"), None, None), known);
        let fresh = c.spec("new", None, Some("topic"), Some("new.#"));
        assert_eq!((fresh.exchange_name(), fresh.exchange_type.as_str(), fresh.key()), ("new", "topic", "new.#"));
    }

    #[test]
    fn diff_names_what_to_start_and_stop() {
        let now = [QueueSpec::missing("b"), QueueSpec::missing("c")];
        let (start, stop) = diff(&["a".into(), "b".into()], &now);
        assert_eq!(start.iter().map(|q| q.name.as_str()).collect::<Vec<_>>(), ["c"]);
        assert_eq!(stop, ["a"]);
    }
}
