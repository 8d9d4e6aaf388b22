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
//!
//! The first round is the exception: if glommio strands it, no task of the executor has run, so
//! there is no waker to call — this hung a worker's start in about 1 of 30 runs of the memory
//! tests here. So an executor registers from its own thread before its first round
//! ([`register`]), and one whose beat task has still not run [`FIRST_ROUND`] later is
//! interrupted with [`RESCUE_SIGNAL`] instead: the signal ends io_uring's wait with `EINTR`,
//! which glommio takes as a wake-up, and the next round runs what is ready. The handler does
//! nothing and is installed the first time a rescue is needed; once the beat task runs, the
//! executor is only ever woken through its waker.

use std::future::{poll_fn, Future};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use super::lock;

/// The beat of an executor that has been running tasks: the longest such a stall lasts there.
pub(crate) const BUSY: Duration = Duration::from_millis(5);
/// The beat of an idle executor.
pub(crate) const IDLE: Duration = Duration::from_millis(160);
/// How long a registered executor may go without running its beat task before it is taken for
/// stranded in its first round: starting one takes microseconds, a descheduled thread a few ms.
const FIRST_ROUND: Duration = Duration::from_millis(20);
/// Interrupts an executor parked before its first round. Ignored by default, so nothing else
/// expects it; the Go runtime uses it for the same purpose (preempting a thread).
const RESCUE_SIGNAL: libc::c_int = libc::SIGURG;

/// One executor's side: the waker of its beat task and the period it asks for.
struct Beat {
    waker: Mutex<Option<Waker>>,
    kicks: AtomicU64,
    period_us: AtomicU64,
    /// The executor's thread, interrupted while its beat task has never run.
    thread: libc::pthread_t,
    registered: Instant,
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
                match lock(&beat.waker).as_ref() {
                    Some(w) => w.wake_by_ref(),
                    // The beats lock is held: the thread cannot deregister, so it is still alive.
                    None if now.duration_since(beat.registered) >= FIRST_ROUND => interrupt(beat.thread),
                    None => {}
                }
                *due = now + Duration::from_micros(beat.period_us.load(Ordering::Relaxed));
            }
            next = next.min(*due);
        }
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
    }
}

/// Sends [`RESCUE_SIGNAL`] to a live registered executor thread.
fn interrupt(thread: libc::pthread_t) {
    static HANDLER: OnceLock<bool> = OnceLock::new();
    let installed = *HANDLER.get_or_init(|| {
        // SAFETY: the handler does nothing, which is async-signal-safe.
        match unsafe { signal_hook::low_level::register(RESCUE_SIGNAL, || {}) } {
            Ok(_) => true,
            Err(e) => {
                tracing::error!("cannot install the SIGURG handler that rescues a stranded executor: {e}");
                false
            }
        }
    });
    if installed {
        tracing::debug!("interrupting an executor that has not run its first round");
        // SAFETY: `thread` is a running thread (the caller holds the lock it deregisters under).
        unsafe { libc::pthread_kill(thread, RESCUE_SIGNAL) };
    }
}

/// An executor's registration. The first clone dropped ends it: normally the main future's, on
/// the executor, where the beat task's waker is released too; the one the thread keeps around
/// its run ends it before the thread exits even if the run unwinds.
#[derive(Clone)]
pub(crate) struct Guard(Arc<Beat>);

impl Guard {
    /// The beat task: spawn it first thing on the executor.
    pub(crate) fn task(&self) -> impl Future<Output = ()> + 'static {
        let beat = self.0.clone();
        async move {
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
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        lock(beats()).retain(|(b, _)| !Arc::ptr_eq(b, &self.0));
        // The first drop on the executor releases the task's waker there.
        drop(lock(&self.0.waker).take());
    }
}

/// Registers the calling thread's executor. Call on its thread after building the executor and
/// before running it, then spawn [`Guard::task`] first thing on it.
pub(crate) fn register() -> Guard {
    let beat = Arc::new(Beat {
        waker: Mutex::new(None),
        kicks: AtomicU64::new(0),
        period_us: AtomicU64::new(BUSY.as_micros() as u64),
        // SAFETY: pthread_self has no preconditions.
        thread: unsafe { libc::pthread_self() },
        registered: Instant::now(),
    });
    lock(beats()).push((beat.clone(), Instant::now() + BUSY));
    Guard(beat)
}
