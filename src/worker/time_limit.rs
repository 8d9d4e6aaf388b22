//! Time limits changed while the worker runs (the `time_limit` control command): per task type,
//! a soft and a hard limit that win over the task's options and the settings (not over a
//! message's own `timelimit` header, as in Celery). Read lock-free, and not at all until a
//! command set one.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Not overridden.
const UNSET: u64 = u64::MAX;

/// The overrides, one slot per registered task.
pub(crate) struct TimeLimits {
    index: HashMap<String, usize>,
    slots: Vec<[AtomicU64; 2]>,
    any: AtomicBool,
}

impl TimeLimits {
    /// Slots for `names`.
    pub(crate) fn new<'a>(names: impl IntoIterator<Item = &'a str>) -> Self {
        let index: HashMap<String, usize> = names.into_iter().enumerate().map(|(i, n)| (n.to_owned(), i)).collect();
        let slots = (0..index.len()).map(|_| [AtomicU64::new(UNSET), AtomicU64::new(UNSET)]).collect();
        TimeLimits { index, slots, any: AtomicBool::new(false) }
    }

    /// Sets task `name`'s limits (`None`: no limit); `false` for an unknown task.
    pub(crate) fn set(&self, name: &str, soft: Option<f64>, hard: Option<f64>) -> bool {
        let Some(&i) = self.index.get(name) else { return false };
        // 0 stands for "no limit" once set (the settings' own value is then not used).
        self.slots[i][0].store(soft.unwrap_or(0.0).to_bits(), Ordering::Relaxed);
        self.slots[i][1].store(hard.unwrap_or(0.0).to_bits(), Ordering::Relaxed);
        self.any.store(true, Ordering::Release);
        true
    }

    /// `(soft, hard)` overrides of task `name`, each `None` when not set.
    pub(crate) fn get(&self, name: &str) -> (Option<f64>, Option<f64>) {
        if !self.any.load(Ordering::Acquire) {
            return (None, None);
        }
        let Some(&i) = self.index.get(name) else { return (None, None) };
        let read = |a: &AtomicU64| Some(a.load(Ordering::Relaxed)).filter(|b| *b != UNSET).map(f64::from_bits);
        (read(&self.slots[i][0]), read(&self.slots[i][1]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_only_once_set() {
        let t = TimeLimits::new(["a", "b"]);
        assert_eq!(t.get("a"), (None, None));
        assert!(t.set("a", Some(1.5), None));
        assert_eq!(t.get("a"), (Some(1.5), Some(0.0)));
        assert_eq!(t.get("b"), (None, None));
        assert!(!t.set("zz", None, None));
    }
}
