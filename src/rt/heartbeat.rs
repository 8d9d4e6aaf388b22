//! Keeps glommio executors from sleeping on ready tasks.
//!
//! glommio 0.9.0 parks an executor that still has ready tasks when its preemption timer has
//! already fired as a scheduling round begins (the thread was off the CPU longer than
//! [`PREEMPT`](super::PREEMPT), common on a loaded machine): the round runs nothing and the park
//! sleeps until an I/O completion or a wake-up from another thread arrives *after* it. A task
//! woken just before — a shutdown request, a delivery, even a due timer's task — waits for one
//! forever. This hung a worker shutdown in CI. glommio/glommio#53 fixes it upstream; no release
//! carries the fix yet.
//!
//! A timer on the executor cannot help (its own task is stranded the same way), so the rescue
//! comes from outside: one process-wide thread wakes a task on each executor now and then. A
//! foreign wake-up always reaches a parked executor (glommio writes its eventfd), and the next
//! round runs everything that is ready. The beat is [`BUSY`] on an executor that ran tasks since
//! the last one and backs off to [`IDLE`] on an idle one: waking a parked executor costs about
//! 90 µs of CPU on a VM, and a fixed 10 ms beat kept an idle worker at 2.7 % of a core.

use std::future::poll_fn;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use super::lock;

/// The beat of an executor that has been running tasks: the longest such a stall lasts there.
pub(crate) const BUSY: Duration = Duration::from_millis(5);
/// The beat of an idle executor.
pub(crate) const IDLE: Duration = Duration::from_millis(160);

/// One executor's side: the waker of its beat task and the period it asks for.
struct Beat {
    waker: Mutex<Option<Waker>>,
    kicks: AtomicU64,
    period_us: AtomicU64,
}

/// The registered executors, each with the moment of its next beat.
type Beats = Mutex<Vec<(Arc<Beat>, Instant)>>;

fn beats() -> &'static Beats {
    static BEATS: OnceLock<Beats> = OnceLock::new();
    BEATS.get_or_init(|| {
        std::thread::Builder::new().name("celeriac-beat".into()).spawn(kicker).expect("spawning the heartbeat thread");
        Mutex::new(Vec::new())
    })
}

fn kicker() {
    loop {
        let now = Instant::now();
        let mut next = now + IDLE;
        for (beat, due) in lock(beats()).iter_mut() {
            if *due <= now {
                beat.kicks.fetch_add(1, Ordering::AcqRel);
                if let Some(w) = lock(&beat.waker).as_ref() {
                    w.wake_by_ref();
                }
                *due = now + Duration::from_micros(beat.period_us.load(Ordering::Relaxed));
            }
            next = next.min(*due);
        }
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
    }
}

/// Registered while it lives: keep it for as long as the executor runs its main future.
pub(crate) struct Guard(Arc<Beat>);

impl Drop for Guard {
    fn drop(&mut self) {
        lock(beats()).retain(|(b, _)| !Arc::ptr_eq(b, &self.0));
        // The task's waker is released here, on its own executor.
        drop(lock(&self.0.waker).take());
    }
}

/// Registers the calling executor and spawns its beat task. Call on the executor, first thing.
pub(crate) fn start() -> Guard {
    let beat = Arc::new(Beat {
        waker: Mutex::new(None),
        kicks: AtomicU64::new(0),
        period_us: AtomicU64::new(BUSY.as_micros() as u64),
    });
    lock(beats()).push((beat.clone(), Instant::now() + BUSY));
    let guard = Guard(beat.clone());
    super::spawn_local(async move {
        let mut seen = 0;
        loop {
            poll_fn(|cx| {
                let k = beat.kicks.load(Ordering::Acquire);
                if k != seen {
                    seen = k;
                    return Poll::Ready(());
                }
                let mut w = lock(&beat.waker);
                if !w.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                    *w = Some(cx.waker().clone());
                }
                drop(w);
                if beat.kicks.load(Ordering::Acquire) != seen {
                    seen = beat.kicks.load(Ordering::Acquire);
                    return Poll::Ready(());
                }
                Poll::Pending
            })
            .await;
            // Tasks run since the last beat, this one included.
            let ran = glommio::executor().executor_stats().tasks_executed();
            let period = Duration::from_micros(beat.period_us.load(Ordering::Relaxed));
            let period = if ran > 1 { BUSY } else { (period * 2).min(IDLE) };
            beat.period_us.store(period.as_micros() as u64, Ordering::Relaxed);
        }
    });
    guard
}
