//! A delivery arriving on a shard, as Celery's `Request` sees it before it runs: decoded, looked
//! up, checked against the revoked set and its own headers, held for its ETA or its rate limit,
//! then handed to the trace.

use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use chrono::Utc;

use serde_json::Value;

use crate::protocol::{json::parse_datetime, py_repr, shorten, Headers, ProtocolError};
use crate::transport::Delivery;

use super::outcome::{discard_revoked, reject_malformed, reject_unregistered};
use super::shard_ctx::ShardCtx;
use super::signal::Signal;
use super::timer::{Held, HoldKind};
use super::trace::run;

/// Starts `d` on shard `sh`.
pub(crate) fn start(sh: &Rc<ShardCtx>, d: Delivery) {
    let (mut msg, settle) = d.into_parts();
    let shared = &sh.shared;
    if let Some(why) = msg.headers.malformed.take() {
        let e = ProtocolError::Malformed(why);
        return reject_malformed(sh, &msg, settle, e);
    }
    let body = match msg.decode_body(&shared.accept) {
        Ok(b) => b,
        Err(e) => return reject_malformed(sh, &msg, settle, e),
    };
    let Some(entry) = shared.registry.get(&msg.headers.task).cloned() else {
        return reject_unregistered(sh, &msg, settle);
    };
    shared.hooks.send(&Signal::TaskReceived { headers: &msg.headers });
    tracing::info!("Task {}[{}] received", msg.headers.task, msg.headers.id);
    super::events::received(shared, &msg.headers, || match body.parse() {
        Ok(b) => (py_repr(&Value::Array(b.args_value())), py_repr(&Value::Object(b.kwargs_value()))),
        Err(_) => ("()".into(), "{}".into()),
    });
    if shared.revoked.contains(&msg.headers.id) {
        return discard_revoked(sh, &entry, &msg, &body, settle, "revoked");
    }
    for (what, value) in [("ETA", &msg.headers.eta), ("expires", &msg.headers.expires)] {
        if let Some(v) = value.as_deref().filter(|v| parse_datetime(v).is_none()) {
            // Celery: "Couldn't convert ETA ... to timestamp", and the message is rejected.
            let e = ProtocolError::Malformed(format!("couldn't convert {what} {:?} to a timestamp", shorten(v, 80)));
            return reject_malformed(sh, &msg, settle, e);
        }
    }
    if let Some(eta) = msg.headers.eta.as_deref().and_then(parse_datetime) {
        let wait = (eta.with_timezone(&Utc) - Utc::now()).to_std().unwrap_or(Duration::ZERO);
        if !wait.is_zero() {
            warn_past_visibility(sh, &msg.headers, wait);
            let held = Held { entry, msg, body, settle, kind: HoldKind::Eta };
            return sh.timer.hold(Instant::now() + wait, held);
        }
    }
    admit(sh, Held { entry, msg, body, settle, kind: HoldKind::Eta });
}

/// A Redis message unacked longer than the visibility timeout is restored and delivered again
/// while this worker still holds it: Celery's known ETA caveat, so say it once a minute.
fn warn_past_visibility(sh: &ShardCtx, h: &Headers, wait: Duration) {
    thread_local! {
        static LAST: Cell<Option<Instant>> = const { Cell::new(None) };
    }
    let Some(vt) = sh.shared.client.broker().visibility_timeout() else { return };
    if wait <= vt || LAST.get().is_some_and(|t| t.elapsed() < Duration::from_secs(60)) {
        return;
    }
    LAST.set(Some(Instant::now()));
    tracing::warn!(
        "Task {}[{}] has an ETA {:.0}s away, past the broker's visibility_timeout of {}s: it will be \
         delivered again (and may run twice) unless visibility_timeout in broker_transport_options is raised",
        h.task,
        h.id,
        wait.as_secs_f64(),
        vt.as_secs()
    );
}

/// A held delivery whose moment came: it queues for a run slot.
pub(crate) fn release(sh: &ShardCtx, held: Held) {
    sh.ready.borrow_mut().push_back(held);
    sh.wake();
}

/// Takes a rate-limit token for the task type, or holds the delivery until one is there.
pub(crate) fn admit(sh: &Rc<ShardCtx>, mut held: Held) {
    match sh.shared.rate_limits.acquire(&held.entry.name) {
        Ok(()) => run(sh, held.entry, held.msg, held.body, held.settle),
        Err(wait) => {
            held.kind = HoldKind::RateLimit;
            sh.timer.hold(Instant::now() + wait, held);
        }
    }
}
