//! What a worker sends on when a task ends (`celery/app/trace.py`:
//! `_dispatch_callbacks_and_chain`, and `handle_failure`'s errbacks): each link callback with the
//! result, the next step of the chain with the result and the rest of the chain, each errback with
//! the failed task's id; `parent_id` is the task, `root_id` its workflow's first task. Sent before
//! the result is stored, as Celery does, so the stored result's `children` lists what was sent
//! and a Python `AsyncResult(...).children` finds it; several callbacks go as one group, and a
//! group as a callback or chain step sends its members. Chords are issue 17's next part: such a
//! step is logged and not sent.

use serde_json::{json, Value};

use crate::client::{options_of, Client};
use crate::protocol::{ResultTuple, Signature, State};
use crate::task::TaskCtx;

/// Sends what `ctx`'s message asks for after ending in `state` with `result`; returns the result
/// tuples of what was sent for `children`.
pub(crate) fn dispatch(client: &Client, ctx: &TaskCtx, state: &State, result: &Value) -> Vec<Value> {
    let Some(embed) = ctx.0.embed.get() else { return Vec::new() };
    let h = ctx.headers();
    let root = h.root_id.clone().unwrap_or_else(|| h.id.clone());
    let mut children = Vec::new();
    let mut send = |sig: &Signature, partial: Value, chain: Option<Vec<Signature>>, group: Option<(String, i64)>| {
        let mut o = options_of(sig);
        o.parent_id = Some(h.id.clone());
        o.root_id = Some(root.clone());
        if let Some(rest) = chain {
            o.embed.chain = Some(rest);
        }
        if group.is_some() {
            o.group = group;
        }
        match client.apply_signature(sig, &[partial], o) {
            Ok(r) => children.push(ResultTuple::task(r.id().to_owned()).to_value()),
            Err(e) => tracing::error!("Task {}[{}]: cannot send {}: {e}", h.task, h.id, sig.task),
        }
    };
    match state {
        State::Success => {
            // Several callbacks go as one group (Celery's `group(sigs).apply_async((retval,))`).
            let callbacks = embed.callbacks.as_deref().unwrap_or_default();
            let group = (callbacks.len() > 1).then(|| uuid::Uuid::new_v4().to_string());
            for (i, callback) in callbacks.iter().enumerate() {
                send(callback, result.clone(), None, group.clone().map(|g| (g, i as i64)));
            }
            if let Some((next, rest)) = embed.chain.as_deref().and_then(<[Signature]>::split_last) {
                send(next, result.clone(), Some(rest.to_vec()), None);
            }
            children
        }
        State::Failure => {
            for errback in embed.errbacks.iter().flatten() {
                send(errback, json!(h.id), None, None);
            }
            // Celery does not count errbacks among the failed task's children.
            Vec::new()
        }
        _ => Vec::new(),
    }
}
