//! One shard's view of the worker (Celery's per-consumer state): its counters, its timer of
//! held deliveries, the bodies it runs and how to stop them from outside.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Poll, Waker};

use crossbeam_deque::Worker as LocalQueue;

use crate::backend::ShardStore;
use crate::task::{ShardLocals, TaskCtx};
use crate::transport::Delivery;

use super::shared::{Counters, WorkerShared};
use super::timer::{Held, Timer};

/// One shard's view of the worker.
pub(crate) struct ShardCtx {
    pub index: usize,
    pub shared: Arc<WorkerShared>,
    pub locals: ShardLocals,
    /// Async and blocking bodies in flight on this shard.
    pub running: Cell<usize>,
    /// Result writes in flight (acks_late deliveries wait for theirs).
    pub storing: Cell<usize>,
    /// The shard's handle on the result store.
    pub store: ShardStore,
    /// ETA and rate-limited deliveries waiting for their moment.
    pub timer: Timer,
    /// Held deliveries whose moment came, waiting for a run slot (served before the reserved
    /// queue).
    pub ready: RefCell<VecDeque<Held>>,
    /// Running spawned bodies by task id, for `terminate`, cold shutdown and `inspect active`.
    pub active: RefCell<HashMap<String, Running>>,
    /// Runs by task name (`inspect stats`' `total`).
    pub totals: RefCell<HashMap<String, u64>>,
    /// Questions for the shards (this one's at `index`).
    pub queries: Queries,
    /// Deliveries reserved (prefetched) and not started, oldest first; peers steal from it.
    pub local: Rc<LocalQueue<Delivery>>,
}

impl ShardCtx {
    pub(crate) fn new(index: usize, shared: Arc<WorkerShared>, queries: Queries, local: LocalQueue<Delivery>) -> Self {
        ShardCtx {
            index,
            locals: ShardLocals::build(&shared.state_factories, index),
            store: shared.client.backend().on_shard(),
            shared,
            running: Cell::new(0),
            storing: Cell::new(0),
            timer: Timer::default(),
            ready: RefCell::new(VecDeque::new()),
            active: RefCell::new(HashMap::new()),
            totals: RefCell::new(HashMap::new()),
            queries,
            local: Rc::new(local),
        }
    }

    /// Calls `f` on each reserved delivery of the local queue, oldest first, and leaves the
    /// queue as it was (a peer may steal one meanwhile; it is then simply not seen).
    pub(crate) fn each_reserved(&self, mut f: impl FnMut(&Delivery)) {
        let taken: Vec<Delivery> = std::iter::from_fn(|| self.local.pop()).collect();
        for d in taken {
            f(&d);
            self.local.push(d);
        }
    }

    pub(crate) fn wake(&self) {
        self.shared.steal.wake[self.index].notify();
    }

    /// This shard's counters.
    pub(crate) fn stats(&self) -> &Counters {
        &self.shared.stats[self.index]
    }
}

/// A spawned body in flight: how to stop it, its context, and when it started (UNIX seconds).
pub(crate) struct Running {
    pub abort: Rc<Abort>,
    pub ctx: TaskCtx,
    pub since: f64,
}

/// A question for one shard about what only it holds (`inspect active`, `scheduled`, …), run
/// by its dispatcher between tasks.
pub(crate) type Query = Box<dyn FnOnce(&Rc<ShardCtx>) + Send>;

/// Every shard's queue of questions, shared by the shards and the mailbox.
pub(crate) type Queries = Arc<Vec<crossbeam_queue::SegQueue<Query>>>;

/// Why a running body was stopped from outside.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Stop {
    /// `revoke(terminate=True)`, with the signal name the client asked for.
    Terminated(Option<String>),
    /// Cold shutdown: the worker abandons the task (Celery's `WorkerLostError`).
    Lost,
}

/// A one-shot stop signal for one running body.
#[derive(Default)]
pub(crate) struct Abort {
    why: RefCell<Option<Stop>>,
    waker: Cell<Option<Waker>>,
}

impl Abort {
    pub(super) fn fire(&self, why: Stop) {
        self.why.borrow_mut().get_or_insert(why);
        if let Some(w) = self.waker.take() {
            w.wake();
        }
    }

    pub(crate) fn fired(&self) -> impl Future<Output = Stop> + '_ {
        std::future::poll_fn(move |cx| match self.why.borrow().clone() {
            Some(why) => Poll::Ready(why),
            None => {
                self.waker.set(Some(cx.waker().clone()));
                Poll::Pending
            }
        })
    }
}
