//! A wake-up that crosses threads and runtimes: one side bumps an epoch and wakes every
//! registered waker; the other side awaits a change of epoch. glommio turns a waker invoked from
//! a foreign thread into an eventfd write, so this wakes a parked shard as well as a tokio task.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::task::{Context, Poll, Waker};

/// A broadcast notification with no lost wake-ups: read [`Notify::epoch`] before checking your
/// condition, then await [`Notify::changed`] with that epoch.
#[derive(Debug, Default)]
pub struct Notify {
    epoch: AtomicU64,
    wakers: Mutex<Vec<Waker>>,
}

impl Notify {
    pub fn new() -> Self {
        Self::default()
    }

    /// The current epoch; read it before checking the condition you wait for.
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::SeqCst)
    }

    /// Wakes everyone waiting.
    pub fn notify(&self) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
        let wakers = std::mem::take(&mut *self.wakers.lock().unwrap_or_else(|p| p.into_inner()));
        for w in wakers {
            w.wake();
        }
    }

    /// Completes once the epoch differs from `seen`.
    pub fn changed(&self, seen: u64) -> Changed<'_> {
        Changed { notifies: vec![(self, seen)] }
    }

    /// Completes once any of the notifies' epochs differs from the paired `seen` value.
    pub fn any_changed<'a>(notifies: Vec<(&'a Notify, u64)>) -> Changed<'a> {
        Changed { notifies }
    }
}

/// Future of [`Notify::changed`].
pub struct Changed<'a> {
    notifies: Vec<(&'a Notify, u64)>,
}

impl Future for Changed<'_> {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.notifies.iter().any(|(n, seen)| n.epoch() != *seen) {
            return Poll::Ready(());
        }
        for (n, _) in &self.notifies {
            let mut w = n.wakers.lock().unwrap_or_else(|p| p.into_inner());
            if !w.iter().any(|x| x.will_wake(cx.waker())) {
                w.push(cx.waker().clone());
            }
        }
        // Re-check after registering: a notify between the first check and the push is not lost.
        if self.notifies.iter().any(|(n, seen)| n.epoch() != *seen) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn a_notify_from_another_thread_wakes_a_blocked_waiter() {
        let n = Arc::new(Notify::new());
        let seen = n.epoch();
        let n2 = n.clone();
        let t = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(20));
            n2.notify();
        });
        futures_lite::future::block_on(n.changed(seen));
        t.join().unwrap();
        assert_ne!(n.epoch(), seen);
    }
}
