//! Timers. [`sleep`] is the shard's own io_uring timer; [`sleep_anywhere`] works from any thread
//! or runtime (a tokio service awaiting a result with a timeout) through one lazily started timer
//! thread, so client futures never depend on the caller's runtime.

use std::collections::BinaryHeap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

/// Sleeps on the current shard's timer. Only inside a shard.
pub async fn sleep(d: Duration) {
    glommio::timer::sleep(d).await
}

struct Entry {
    at: Instant,
    waker: Waker,
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
}

fn wheel() -> &'static Arc<Wheel> {
    static W: OnceLock<Arc<Wheel>> = OnceLock::new();
    W.get_or_init(|| {
        let w = Arc::new(Wheel { heap: Mutex::new(BinaryHeap::new()), cv: Condvar::new() });
        let w2 = w.clone();
        std::thread::Builder::new()
            .name("celeriac-timer".into())
            .spawn(move || loop {
                let mut heap = w2.heap.lock().unwrap_or_else(|p| p.into_inner());
                let now = Instant::now();
                while heap.peek().is_some_and(|e| e.at <= now) {
                    if let Some(e) = heap.pop() {
                        e.waker.wake();
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
    SleepAnywhere { at: Instant::now() + d, registered: None }
}

/// Future of [`sleep_anywhere`].
pub struct SleepAnywhere {
    at: Instant,
    /// The waker last handed to the timer thread: re-polls with the same waker add no entry.
    registered: Option<Waker>,
}

impl Future for SleepAnywhere {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if Instant::now() >= self.at {
            return Poll::Ready(());
        }
        if self.registered.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            return Poll::Pending;
        }
        let w = wheel();
        w.heap.lock().unwrap_or_else(|p| p.into_inner()).push(Entry { at: self.at, waker: cx.waker().clone() });
        w.cv.notify_one();
        self.registered = Some(cx.waker().clone());
        Poll::Pending
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
