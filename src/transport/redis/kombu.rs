//! kombu's Redis layout (PROTOCOL.md §2, Appendix B): queue lists per priority bucket, binding
//! sets, the unacked hash/index/mutex, fanout channel names, all under `global_keyprefix`.
//! Pure string building; no I/O.

use super::options::TransportOptions;

/// kombu's key separator between a queue name and its priority bucket, and inside binding
/// members.
pub const SEP: &str = "\x06\x16";

/// Key builder for one connection's options.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Keys {
    /// The transport options the names follow.
    pub opts: TransportOptions,
}

impl Keys {
    /// The names under `opts`.
    pub fn new(opts: TransportOptions) -> Self {
        Keys { opts }
    }

    fn prefixed(&self, k: &str) -> String {
        format!("{}{k}", self.opts.global_keyprefix)
    }

    /// The priority bucket a message priority falls in: the largest step ≤ priority.
    pub fn bucket(&self, priority: u8) -> u8 {
        let p = priority.min(9);
        self.opts.priority_steps.iter().rev().copied().find(|s| *s <= p).unwrap_or(0)
    }

    /// The list holding `queue`'s messages of `priority` (`celery`, `celery\x06\x163`, …).
    pub fn queue_key(&self, queue: &str, priority: u8) -> String {
        match self.bucket(priority) {
            0 => self.prefixed(queue),
            b => self.prefixed(&format!("{queue}{}{b}", self.opts.sep)),
        }
    }

    /// The lists to pop, bucket-major as kombu orders them: `q1 q2 q1SEP3 q2SEP3 …`.
    pub fn pop_order(&self, queues: &[String]) -> Vec<String> {
        let mut out = Vec::with_capacity(queues.len() * self.opts.priority_steps.len());
        for step in &self.opts.priority_steps {
            for q in queues {
                out.push(self.queue_key(q, *step));
            }
        }
        out
    }

    /// The queue a popped list key belongs to (strip the prefix and a trailing `SEP<digit>`).
    pub fn queue_of(&self, key: &str) -> String {
        let k = key.strip_prefix(&self.opts.global_keyprefix).unwrap_or(key);
        match k.rsplit_once(&self.opts.sep) {
            Some((q, d)) if !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()) => q.to_owned(),
            _ => k.to_owned(),
        }
    }

    /// `_kombu.binding.<exchange>`.
    pub fn binding_key(&self, exchange: &str) -> String {
        self.prefixed(&format!("_kombu.binding.{exchange}"))
    }

    /// `_kombu.binding_permanent.<exchange>` (kombu 5.7).
    pub fn binding_permanent_key(&self, exchange: &str) -> String {
        self.prefixed(&format!("_kombu.binding_permanent.{exchange}"))
    }

    /// A binding member: `routing_key SEP pattern SEP queue`.
    pub fn binding_member(&self, routing_key: &str, queue: &str) -> String {
        format!("{routing_key}{SEP}{SEP}{queue}", SEP = self.opts.sep)
    }

    /// The hash of unacked messages by tag (`unacked`).
    pub fn unacked(&self) -> String {
        self.prefixed("unacked")
    }
    /// The zset of unacked tags by delivery time (`unacked_index`).
    pub fn unacked_index(&self) -> String {
        self.prefixed("unacked_index")
    }
    /// The lock of the visibility restore (`unacked_mutex`).
    pub fn unacked_mutex(&self) -> String {
        self.prefixed("unacked_mutex")
    }

    /// The PUBLISH channel of a fanout exchange on `db`: `/<db>.<exchange>[/<routing_key>]`.
    pub fn fanout_channel(&self, db: u32, exchange: &str, routing_key: &str) -> String {
        if routing_key.is_empty() {
            self.prefixed(&format!("/{db}.{exchange}"))
        } else {
            self.prefixed(&format!("/{db}.{exchange}/{routing_key}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_matches_kombu_captures() {
        let k = Keys::new(TransportOptions::default());
        assert_eq!(k.queue_key("celery", 0), "celery");
        assert_eq!(k.queue_key("celery", 5), "celery\x06\x163");
        assert_eq!(k.queue_key("celery", 9), "celery\x06\x169");
        assert_eq!(
            k.pop_order(&["celery".into()]),
            ["celery", "celery\x06\x163", "celery\x06\x166", "celery\x06\x169"]
        );
        assert_eq!(k.pop_order(&["a".into(), "b".into()])[..3], ["a", "b", "a\x06\x163"]);
        assert_eq!(k.queue_of("celery\x06\x166"), "celery");
        assert_eq!(k.binding_member("celery", "celery"), "celery\x06\x16\x06\x16celery");
        assert_eq!(k.fanout_channel(15, "celery.pidbox", ""), "/15.celery.pidbox");
        assert_eq!(k.fanout_channel(15, "celeryev", "task.multi"), "/15.celeryev/task.multi");
        let p = Keys::new(TransportOptions { global_keyprefix: "pfx:".into(), ..TransportOptions::default() });
        assert_eq!(p.queue_key("celery", 3), "pfx:celery\x06\x163");
        assert_eq!(p.queue_of("pfx:celery\x06\x163"), "celery");
        assert_eq!(p.unacked(), "pfx:unacked");
    }

    #[test]
    fn bad_options_are_named() {
        let bad = TransportOptions { priority_steps: vec![3, 1], ..TransportOptions::default() };
        assert!(bad.validate().unwrap_err().contains("priority_steps"));
        let bad = TransportOptions { queue_order_strategy: "random".into(), ..TransportOptions::default() };
        assert!(bad.validate().unwrap_err().contains("queue_order_strategy"));
    }
}
