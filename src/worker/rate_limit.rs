//! Per-worker rate limits by task type: kombu's token bucket (capacity 1, so tasks of a limited
//! type start at most `rate` per second, evenly spaced), shared by all shards and changeable
//! while the worker runs.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::config::RateLimit;

/// kombu's `TokenBucket(fill_rate, capacity=1)`.
#[derive(Debug)]
struct Bucket {
    rate: f64,
    tokens: f64,
    last: Instant,
}

impl Bucket {
    fn new(rate: f64) -> Self {
        Bucket { rate, tokens: 1.0, last: Instant::now() }
    }

    /// Takes a token, or says how long until one is there.
    fn take(&mut self, now: Instant) -> Result<(), Duration> {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(1.0);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - self.tokens) / self.rate))
        }
    }
}

#[derive(Debug, Default)]
struct TaskRate {
    /// Checked first, without the lock: most task types have no limit.
    limited: AtomicBool,
    bucket: Mutex<Option<Bucket>>,
}

/// The rate limits of every registered task type.
#[derive(Debug, Default)]
pub(crate) struct RateLimits {
    /// Looked up once per task run: foldhash, not SipHash.
    tasks: HashMap<String, TaskRate, foldhash::fast::RandomState>,
    disabled: bool,
}

impl RateLimits {
    /// One entry per registered task (the key set is frozen; limits change inside).
    pub(super) fn new<'a>(tasks: impl IntoIterator<Item = (&'a str, Option<RateLimit>)>, disabled: bool) -> Self {
        let tasks = tasks
            .into_iter()
            .map(|(name, limit)| {
                let r = TaskRate::default();
                r.set(limit);
                (name.to_owned(), r)
            })
            .collect();
        RateLimits { tasks, disabled }
    }

    /// Takes a token for one start of `task`: `Ok` to run now, `Err(wait)` to hold it that long.
    pub(super) fn acquire(&self, task: &str) -> Result<(), Duration> {
        if self.disabled {
            return Ok(());
        }
        let Some(r) = self.tasks.get(task) else { return Ok(()) };
        if !r.limited.load(Ordering::Relaxed) {
            return Ok(());
        }
        match r.bucket.lock().unwrap_or_else(|p| p.into_inner()).as_mut() {
            Some(b) => b.take(Instant::now()),
            None => Ok(()),
        }
    }

    /// Sets or removes (`None`, or a zero rate) the limit of `task`; false if no such task.
    pub(super) fn set(&self, task: &str, limit: Option<RateLimit>) -> bool {
        match self.tasks.get(task) {
            Some(r) => {
                r.set(limit);
                true
            }
            None => false,
        }
    }
}

impl TaskRate {
    fn set(&self, limit: Option<RateLimit>) {
        let bucket = limit.filter(RateLimit::is_limited).map(|l| Bucket::new(l.per_second));
        self.limited.store(bucket.is_some(), Ordering::Relaxed);
        *self.bucket.lock().unwrap_or_else(|p| p.into_inner()) = bucket;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_spaces_starts_evenly() {
        let t0 = Instant::now();
        let mut b = Bucket { rate: 10.0, tokens: 1.0, last: t0 };
        assert!(b.take(t0).is_ok());
        let wait = b.take(t0).unwrap_err();
        assert!((wait.as_secs_f64() - 0.1).abs() < 1e-9, "{wait:?}");
        assert!(b.take(t0 + Duration::from_millis(100)).is_ok());
    }

    #[test]
    fn limits_change_at_run_time() {
        let r = RateLimits::new([("t.a", None)], false);
        assert!(r.acquire("t.a").is_ok() && r.acquire("t.a").is_ok());
        assert!(r.set("t.a", Some(RateLimit::parse("1/h").unwrap())));
        assert!(r.acquire("t.a").is_ok());
        assert!(r.acquire("t.a").unwrap_err() > Duration::from_secs(3000));
        r.set("t.a", Some(RateLimit::parse("0").unwrap()));
        assert!(r.acquire("t.a").is_ok());
        assert!(!r.set("t.unknown", None));
        assert!(RateLimits::new([("t.a", RateLimit::parse("1/h").ok())], true).acquire("t.a").is_ok());
    }
}
