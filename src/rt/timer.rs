//! Timers. [`sleep`] is the shard's own io_uring timer; [`sleep_anywhere`] works from any thread
//! or runtime (a tokio service awaiting a result with a timeout) through one lazily started timer
//! thread, so client futures never depend on the caller's runtime.

use std::collections::BinaryHeap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use super::lock;

/// Sleeps on the current shard's timer. Only inside a shard.
pub async fn sleep(d: Duration) {
    glommio::timer::sleep(d).await
}

/// One pending sleep's waker; emptied when the sleep fires or is dropped (a `get()` that got its
/// result long before its timeout), so the heap never keeps a finished task's memory alive.
type Slot = Arc<Mutex<Option<Waker>>>;

struct Entry {
    at: Instant,
    slot: Slot,
}
impl PartialEq for Entry {
    fn eq(&self, o: &Self) -> bool {
        self.at == o.at
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Entry {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        o.at.cmp(&self.at) // min-heap
    }
}

struct Wheel {
    heap: Mutex<BinaryHeap<Entry>>,
    cv: Condvar,
    /// Sleeps still pending: when the heap holds more than twice as many entries (most of them
    /// cancelled), it is compacted.
    live: AtomicUsize,
}

fn wheel() -> &'static Arc<Wheel> {
    static W: OnceLock<Arc<Wheel>> = OnceLock::new();
    W.get_or_init(|| {
        let w = Arc::new(Wheel { heap: Mutex::new(BinaryHeap::new()), cv: Condvar::new(), live: AtomicUsize::new(0) });
        let w2 = w.clone();
        std::thread::Builder::new()
            .name("celeriac-timer".into())
            .spawn(move || loop {
                let mut heap = lock(&w2.heap);
                let now = Instant::now();
                while heap.peek().is_some_and(|e| e.at <= now) {
                    if let Some(e) = heap.pop() {
                        if let Some(waker) = lock(&e.slot).take() {
                            w2.live.fetch_sub(1, Ordering::Relaxed);
                            waker.wake();
                        }
                    }
                }
                let wait = heap.peek().map(|e| e.at - now).unwrap_or(Duration::from_secs(3600));
                drop(w2.cv.wait_timeout(heap, wait));
            })
            .expect("spawning the timer thread");
        w
    })
}

/// A sleep usable from any executor.
pub fn sleep_anywhere(d: Duration) -> SleepAnywhere {
    SleepAnywhere { at: Instant::now() + d, slot: None }
}

/// Future of [`sleep_anywhere`].
pub struct SleepAnywhere {
    at: Instant,
    /// Where the timer thread finds the waker to wake; re-polls only swap the waker.
    slot: Option<Slot>,
}

impl Future for SleepAnywhere {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if Instant::now() >= self.at {
            return Poll::Ready(());
        }
        if let Some(slot) = &self.slot {
            let mut w = lock(slot);
            if !w.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                *w = Some(cx.waker().clone());
            }
            return Poll::Pending;
        }
        let slot: Slot = Arc::new(Mutex::new(Some(cx.waker().clone())));
        let w = wheel();
        let live = w.live.fetch_add(1, Ordering::Relaxed) + 1;
        let mut heap = lock(&w.heap);
        if heap.len() > 1024 && heap.len() > 2 * live {
            heap.retain(|e| lock(&e.slot).is_some());
        }
        // The timer thread sleeps until the earliest deadline: only an earlier one needs it.
        let earliest = heap.peek().is_none_or(|e| self.at < e.at);
        heap.push(Entry { at: self.at, slot: slot.clone() });
        drop(heap);
        if earliest {
            w.cv.notify_one();
        }
        self.slot = Some(slot);
        Poll::Pending
    }
}

impl Drop for SleepAnywhere {
    fn drop(&mut self) {
        if let Some(slot) = &self.slot {
            if lock(slot).take().is_some() {
                wheel().live.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }
}

/// Runs `fut` with a deadline, from any executor; `None` when the time ran out.
pub async fn timeout_anywhere<F: Future>(d: Duration, fut: F) -> Option<F::Output> {
    futures_lite::future::or(async { Some(fut.await) }, async {
        sleep_anywhere(d).await;
        None
    })
    .await
}
