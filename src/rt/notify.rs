//! A wake-up that crosses threads and runtimes: one side bumps an epoch and wakes registered
//! wakers; the other side awaits a change of epoch. glommio turns a waker invoked from a foreign
//! thread into an eventfd write, so this wakes a parked shard as well as a tokio task.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::task::{Context, Poll, Waker};

/// A notification with no lost wake-ups: read [`Notify::epoch`] before checking your condition,
/// then await [`Notify::changed`] with that epoch.
#[derive(Debug, Default)]
pub struct Notify {
    epoch: AtomicU64,
    waiters: Mutex<Vec<Waiter>>,
}

#[derive(Debug)]
struct Waiter {
    waker: Waker,
    /// The CPU the wait listed itself from (a pinned shard's own), or -1.
    cpu: i32,
    /// The wait that listed it (wakers cannot tell two waits of one task apart).
    wait: u64,
}

/// Numbers each [`Changed`] that registers, process-wide.
static NEXT_WAIT: AtomicU64 = AtomicU64::new(1);

/// The CPU this thread runs on now (glibc reads it from rseq: a few ns), or -1.
fn current_cpu() -> i32 {
    // SAFETY: sched_getcpu takes no arguments and touches no memory of ours.
    unsafe { libc::sched_getcpu() }
}

impl Notify {
    /// A notifier nobody waits on yet.
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
        let waiters = std::mem::take(&mut *super::lock(&self.waiters));
        for w in waiters {
            w.waker.wake();
        }
    }

    /// Wakes the waiter that registered from this thread's CPU, if there is one, and otherwise
    /// everyone. For one new item of work that any waiter may take: a waiter on another CPU
    /// costs a cross-CPU wake-up (on a VM, an IPI to a halted vCPU: tens of µs), one on this
    /// CPU runs as soon as the caller blocks. A waiter woken this way must look for the work it
    /// was woken for (the memory consumer does, in the same poll), or the others never hear of it.
    pub fn notify_near(&self) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
        let cpu = current_cpu();
        let mut waiters = super::lock(&self.waiters);
        // A CPU we cannot read (-1): everyone.
        match waiters.iter().rposition(|w| cpu >= 0 && w.cpu == cpu) {
            Some(i) => {
                let w = waiters.swap_remove(i);
                drop(waiters);
                w.waker.wake();
            }
            None => {
                let all = std::mem::take(&mut *waiters);
                drop(waiters);
                for w in all {
                    w.waker.wake();
                }
            }
        }
    }

    /// Completes once the epoch differs from `seen`.
    pub fn changed(&self, seen: u64) -> Changed<'_> {
        Changed { notifies: vec![(self, seen)], registered: None }
    }

    /// Completes once any of the notifies' epochs differs from the paired `seen` value.
    pub fn any_changed<'a>(notifies: Vec<(&'a Notify, u64)>) -> Changed<'a> {
        Changed { notifies, registered: None }
    }
}

/// Future of [`Notify::changed`] and [`Notify::any_changed`]. It lists itself with its CPU and
/// leaves the lists when dropped, so the one wake-up a [`Notify::notify_near`] gives never lands
/// on a wait that is over.
pub struct Changed<'a> {
    notifies: Vec<(&'a Notify, u64)>,
    /// This wait's number, once it has listed itself.
    registered: Option<u64>,
}

impl Future for Changed<'_> {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.fired() {
            return Poll::Ready(());
        }
        // Listed under its number, checked on every poll: a notify whose epoch change this wait
        // had already read may have taken the entry (it bumps, then takes), and a wake-up for
        // nothing must not leave the wait unlisted.
        let wait = *self.registered.get_or_insert_with(|| NEXT_WAIT.fetch_add(1, Ordering::Relaxed));
        for (n, _) in &self.notifies {
            let mut waiters = super::lock(&n.waiters);
            match waiters.iter_mut().find(|w| w.wait == wait) {
                // Polled by another task or waker: swap ours in.
                Some(w) if !w.waker.will_wake(cx.waker()) => w.waker.clone_from(cx.waker()),
                Some(_) => {}
                None => waiters.push(Waiter { waker: cx.waker().clone(), cpu: current_cpu(), wait }),
            }
        }
        // Re-checked after listing: a notify between the first check and the push is not lost.
        if self.fired() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

impl Changed<'_> {
    /// Whether any of the notifies' epochs moved past the one this wait saw.
    fn fired(&self) -> bool {
        self.notifies.iter().any(|(n, seen)| n.epoch() != *seen)
    }
}

impl Drop for Changed<'_> {
    fn drop(&mut self) {
        if let Some(wait) = self.registered.take() {
            for (n, _) in &self.notifies {
                let mut waiters = super::lock(&n.waiters);
                if let Some(i) = waiters.iter().position(|w| w.wait == wait) {
                    // Dropped outside the lock: a waker's drop may run a task's destructor.
                    let gone = waiters.swap_remove(i);
                    drop(waiters);
                    drop(gone);
                }
            }
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

    /// A waker that counts its wake-ups.
    struct Count(std::sync::atomic::AtomicUsize);
    impl std::task::Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// Runs `f` on a thread pinned to `cpu`.
    fn on_cpu<R: Send>(cpu: usize, f: impl FnOnce() -> R + Send) -> R {
        std::thread::scope(|s| {
            s.spawn(|| {
                assert!(core_affinity::set_for_current(core_affinity::CoreId { id: cpu }), "pin to CPU {cpu}");
                f()
            })
            .join()
            .unwrap()
        })
    }

    /// Polls a fresh wait on `n` once from `cpu`, leaving it registered there.
    fn wait_from<'a>(n: &'a Notify, cpu: usize, count: &Arc<Count>) -> Changed<'a> {
        on_cpu(cpu, || {
            let mut fut = n.changed(n.epoch());
            let waker = Waker::from(count.clone());
            assert!(Pin::new(&mut fut).poll(&mut Context::from_waker(&waker)).is_pending());
            fut
        })
    }

    #[test]
    fn a_wait_listed_after_a_notify_bumped_the_epoch_is_still_woken_by_the_next() {
        // A notify bumps the epoch, then takes the list. A wait that read the new epoch and
        // listed itself in between is taken too: woken for nothing, it must list itself again,
        // or the next notify finds no one (this lost a Redis worker's shutdown when every wait
        // left the lists).
        let n = Notify::new();
        let count = Arc::new(Count(0.into()));
        let waker = Waker::from(count.clone());
        let mut cx = Context::from_waker(&waker);
        n.epoch.fetch_add(1, Ordering::SeqCst); // the first notify's bump...
        let mut wait = n.changed(n.epoch());
        assert!(Pin::new(&mut wait).poll(&mut cx).is_pending());
        for w in std::mem::take(&mut *n.waiters.lock().unwrap()) {
            w.waker.wake(); // ...and its take, which finds the new wait
        }
        assert!(Pin::new(&mut wait).poll(&mut cx).is_pending(), "woken for nothing");
        let before = count.0.load(Ordering::SeqCst);
        n.notify();
        assert_eq!(count.0.load(Ordering::SeqCst), before + 1, "the next notify must wake the wait");
        assert!(Pin::new(&mut wait).poll(&mut cx).is_ready());
    }

    #[test]
    fn a_near_notify_wakes_the_waiter_on_its_cpu_else_everyone_and_never_a_dropped_wait() {
        assert!(core_affinity::get_core_ids().unwrap_or_default().len() >= 2, "this test needs two CPUs");
        let n = Notify::new();
        let (a, b) = (Arc::new(Count(0.into())), Arc::new(Count(0.into())));
        let woken = |c: &Arc<Count>| c.0.load(Ordering::SeqCst);

        let wait_a = wait_from(&n, 0, &a);
        let wait_b = wait_from(&n, 1, &b);
        on_cpu(0, || n.notify_near());
        assert_eq!((woken(&a), woken(&b)), (1, 0), "only the waiter on CPU 0");
        // No waiter left on CPU 0: everyone (here b) hears it.
        on_cpu(0, || n.notify_near());
        assert_eq!((woken(&a), woken(&b)), (1, 1));
        drop((wait_a, wait_b));

        // A wait dropped before any notify leaves no waker behind to take the wake-up.
        let wait_a = wait_from(&n, 0, &a);
        let wait_b = wait_from(&n, 1, &b);
        drop(wait_a);
        on_cpu(0, || n.notify_near());
        assert_eq!((woken(&a), woken(&b)), (1, 2), "the dropped wait on CPU 0 must not swallow it");
        drop(wait_b);
        assert!(n.waiters.lock().unwrap().is_empty());
    }
}
