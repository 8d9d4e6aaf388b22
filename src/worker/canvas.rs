//! What a worker sends on when a task ends (`celery/app/trace.py`:
//! `_dispatch_callbacks_and_chain`, and `mark_as_failure`'s chain and errbacks): each link
//! callback with the result, the next step of the chain with the result and the rest of the
//! chain, each errback with the failed task's id; `parent_id` is the task, `root_id` its
//! workflow's first task. Sent before the result is stored, as Celery does, so the stored
//! result's `children` lists what was sent and a Python `AsyncResult(...).children` finds it.
//! Several callbacks go as one group; a step may be any signature (group, chord, chain).

use std::rc::Rc;

use serde_json::{json, Value};

use crate::canvas::{self, Apply};
use crate::protocol::{Signature, State};
use crate::task::TaskCtx;

use super::shard_ctx::ShardCtx;

/// Sends what `ctx`'s message asks for after ending in `state` with `result`; returns the result
/// tuples of what was sent for `children`.
pub(crate) fn dispatch(sh: &Rc<ShardCtx>, ctx: &TaskCtx, state: &State, result: &Value) -> Vec<Value> {
    let Some(embed) = ctx.0.embed.get() else { return Vec::new() };
    let h = ctx.headers();
    let root = h.root_id.clone().unwrap_or_else(|| h.id.clone());
    let client = &sh.shared.client;
    let mut children = Vec::new();
    let mut send = |sig: &Signature, partial: Value, chain: Option<Vec<Signature>>| {
        let apply = Apply {
            partial: vec![partial],
            parent_id: Some(h.id.clone()),
            root_id: Some(root.clone()),
            chain,
            ..Apply::default()
        };
        match client.apply_signature(sig, apply) {
            Ok(r) => children.push(r.as_tuple().to_value()),
            Err(e) => tracing::error!("Task {}[{}]: cannot send {}: {e}", h.task, h.id, sig.task),
        }
    };
    match state {
        State::Success => {
            match embed.callbacks.as_deref().unwrap_or_default() {
                [] => {}
                [one] => send(one, result.clone(), None),
                // Several callbacks go as one group (Celery's `group(sigs).apply_async((retval,))`).
                many => send(&canvas::group(many.to_vec()), result.clone(), None),
            }
            if let Some((next, rest)) = embed.chain.as_deref().and_then(<[Signature]>::split_last) {
                send(next, result.clone(), Some(rest.to_vec()));
            }
            children
        }
        State::Failure => {
            // The rest of the chain fails with this task, so a caller waiting on its last step
            // (or a chord counting it) is not left waiting.
            if let Some(chain) = embed.chain.as_deref() {
                super::chord::fail_chain(sh, chain, result);
            }
            for errback in embed.errbacks.iter().flatten() {
                send(errback, json!(h.id), None);
            }
            // Celery does not count errbacks among the failed task's children.
            Vec::new()
        }
        _ => Vec::new(),
    }
}
