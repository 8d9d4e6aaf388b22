//! The built-in tasks every worker registers (`celery/app/builtins.py`): `celery.map`,
//! `celery.starmap` and `celery.chunks` (a task called in-process over an argument list, or
//! split into a group of such calls), `celery.chord_unlock` (a chord joined by polling, for
//! stores that do not count chords), `celery.accumulate`, `celery.backend_cleanup`, and the
//! legacy `celery.group`, `celery.chord` and `celery.chain` (which refuses to run, as Celery's).

use serde::de::DeserializeOwned;
use serde_json::{json, Value};

use crate::canvas::{self, Apply};
use crate::protocol::{py_repr, ExceptionInfo, ResultMeta, ResultTuple, Signature, State};

use super::{Call, Invocation, Outcome, Retry, TaskEntry, TaskError};

/// The built-ins, registered by every app after its own tasks (an app task of the same name wins).
pub(crate) fn builtins() -> Vec<TaskEntry> {
    let mut unlock = TaskEntry::builtin("celery.chord_unlock", &["group_id", "callback"], true, chord_unlock);
    unlock.options.ignore_result = Some(true);
    unlock.options.max_retries = Some(None);
    vec![
        TaskEntry::builtin("celery.backend_cleanup", &[], false, |_| Ok(Call::Ready(Outcome::Success(Value::Null)))),
        TaskEntry::builtin("celery.accumulate", &[], true, accumulate),
        TaskEntry::builtin("celery.map", &["task", "it"], false, |inv| each(inv, false)),
        TaskEntry::builtin("celery.starmap", &["task", "it"], false, |inv| each(inv, true)),
        TaskEntry::builtin("celery.chunks", &["task", "it", "n"], false, chunks),
        TaskEntry::builtin("celery.group", &["tasks", "result", "group_id", "partial_args"], true, group),
        TaskEntry::builtin("celery.chord", &["header", "body"], true, chord),
        TaskEntry::builtin("celery.chain", &[], true, |_| {
            Err(TaskError::new("NotImplementedError", "chain is not a real task"))
        }),
        unlock,
    ]
}

/// Argument `name` (at `position`, else by keyword), if given.
fn arg(inv: &Invocation<'_>, position: usize, name: &str) -> Option<Value> {
    let raw = inv.body.args.get(position).copied().or_else(|| inv.body.kwarg(name))?;
    serde_json::from_str(raw.get()).ok()
}

fn required<T: DeserializeOwned>(inv: &Invocation<'_>, position: usize, name: &str) -> Result<T, TaskError> {
    let task = inv.ctx.name();
    let v = arg(inv, position, name)
        .ok_or_else(|| TaskError::type_error(format!("{task}() missing 1 required positional argument: '{name}'")))?;
    serde_json::from_value(v).map_err(|e| TaskError::type_error(format!("{task}() argument '{name}': {e}")))
}

fn value(v: Value) -> Result<Call, TaskError> {
    Ok(Call::Ready(Outcome::Success(v)))
}

/// The caller's task as the parent of what a built-in sends.
fn from_here(inv: &Invocation<'_>, partial: Vec<Value>) -> Apply {
    let h = inv.ctx.headers();
    Apply {
        partial,
        parent_id: Some(h.id.clone()),
        root_id: Some(h.root_id.clone().unwrap_or_else(|| h.id.clone())),
        ..Apply::default()
    }
}

fn send_error(e: crate::Error) -> TaskError {
    TaskError::with_module("celery.exceptions", "CeleryError", e.to_string())
}

/// `accumulate(*args, index=None)`: the arguments, or the one at `index`.
fn accumulate(inv: &Invocation<'_>) -> Result<Call, TaskError> {
    let args = inv.body.args_value();
    match inv.body.kwarg("index").map(|r| serde_json::from_str::<Value>(r.get())) {
        Some(Ok(Value::Number(i))) => {
            let i = i.as_i64().unwrap_or(i64::MAX);
            let at = if i < 0 { args.len() as i64 + i } else { i };
            args.get(usize::try_from(at).unwrap_or(usize::MAX))
                .cloned()
                .map_or_else(|| Err(TaskError::new("IndexError", "tuple index out of range")), value)
        }
        _ => value(Value::Array(args)),
    }
}

/// `xmap(task, it)` / `xstarmap(task, it)`: `task(item)` / `task(*item)` for each item, run
/// here, in order; the first failure fails the whole call, as in Python.
fn each(inv: &Invocation<'_>, star: bool) -> Result<Call, TaskError> {
    let sig: Signature = required(inv, 0, "task")?;
    let it: Vec<Value> = required(inv, 1, "it")?;
    let mut calls = Vec::with_capacity(it.len());
    for item in it {
        let args = match (star, item) {
            (true, Value::Array(a)) => a,
            (true, other) => {
                return Err(TaskError::type_error(format!(
                    "{}() argument after * must be an iterable, not {}",
                    sig.task,
                    py_repr(&other)
                )))
            }
            (false, one) => vec![one],
        };
        calls.push(inv.tasks.call_here(inv, &sig.task, &args)?);
    }
    if calls.iter().all(|c| matches!(c, Call::Ready(_))) {
        let mut out = Vec::with_capacity(calls.len());
        for c in calls {
            match c {
                Call::Ready(Outcome::Success(v)) => out.push(v),
                Call::Ready(failed) => return Ok(Call::Ready(failed)),
                Call::Pending(_) => unreachable!("all are ready"),
            }
        }
        return value(Value::Array(out));
    }
    Ok(Call::Pending(Box::pin(async move {
        let mut out = Vec::with_capacity(calls.len());
        for c in calls {
            let o = match c {
                Call::Ready(o) => o,
                Call::Pending(f) => f.await,
            };
            match o {
                Outcome::Success(v) => out.push(v),
                failed => return failed,
            }
        }
        Outcome::Success(Value::Array(out))
    })))
}

/// `chunks(task, it, n)`: the group of `celery.starmap` parts Celery's client would have sent.
fn chunks(inv: &Invocation<'_>) -> Result<Call, TaskError> {
    let sig: Signature = required(inv, 0, "task")?;
    let it: Vec<Value> = required(inv, 1, "it")?;
    let n: usize = required(inv, 2, "n")?;
    if n == 0 {
        return Err(TaskError::value_error("chunks: n must be at least 1"));
    }
    let g = canvas::expand_chunks(&canvas::chunks(&sig, it, n)).expect("well-formed chunks");
    let sent = inv.client.apply_signature(&g, from_here(inv, Vec::new())).map_err(send_error)?;
    value(sent.as_tuple().to_value())
}

/// Legacy `group(tasks, result, group_id, partial_args)`: each task sent as a member of `group_id`.
fn group(inv: &Invocation<'_>) -> Result<Call, TaskError> {
    let tasks: Vec<Signature> = required(inv, 0, "tasks")?;
    let result: Value = arg(inv, 1, "result").unwrap_or(Value::Null);
    let group_id: String = required(inv, 2, "group_id")?;
    let partial: Vec<Value> =
        arg(inv, 3, "partial_args").and_then(|v| serde_json::from_value(v).ok()).unwrap_or_default();
    for (i, t) in tasks.iter().enumerate() {
        let apply = Apply { group: Some((group_id.clone(), i as i64)), ..from_here(inv, partial.clone()) };
        inv.client.apply_signature(t, apply).map_err(send_error)?;
    }
    value(result)
}

/// Legacy `chord(header, body, partial_args=())`: the chord applied from here.
fn chord(inv: &Invocation<'_>) -> Result<Call, TaskError> {
    let header: Value = required(inv, 0, "header")?;
    let body: Signature = required(inv, 1, "body")?;
    let partial: Vec<Value> =
        arg(inv, 2, "partial_args").and_then(|v| serde_json::from_value(v).ok()).unwrap_or_default();
    let members: Vec<Signature> = match serde_json::from_value::<Signature>(header.clone()) {
        Ok(g) => g.tasks().unwrap_or_default(),
        Err(_) => serde_json::from_value(header).map_err(|e| TaskError::type_error(format!("chord header: {e}")))?,
    };
    let sent =
        inv.client.apply_signature(&canvas::chord(members, body), from_here(inv, partial)).map_err(send_error)?;
    value(sent.as_tuple().to_value())
}

/// `unlock_chord(group_id, callback, interval=None, max_retries=None, result=None)`: retried
/// every `interval` (1 s) until every header result is ready; then the callback is sent with the
/// results in order, or, when one failed, failed with `ChordError` and its errbacks called.
fn chord_unlock(inv: &Invocation<'_>) -> Result<Call, TaskError> {
    let group_id: String = required(inv, 0, "group_id")?;
    let callback: Signature = required(inv, 1, "callback")?;
    let interval = arg(inv, 2, "interval").and_then(|v| v.as_f64()).unwrap_or(1.0);
    let max_retries = arg(inv, 3, "max_retries").and_then(|v| v.as_u64()).map(|n| n as u32);
    let tuples: Vec<Value> = arg(inv, 4, "result").and_then(|v| serde_json::from_value(v).ok()).unwrap_or_default();
    let ids: Vec<String> = tuples.iter().filter_map(ResultTuple::from_value).map(|t| t.id).collect();
    let client = inv.client.clone();
    Ok(Call::Pending(Box::pin(async move {
        let retry = |exc: Option<TaskError>| {
            let mut r = Retry::new().countdown(interval).max_retries(max_retries);
            if let Some(e) = exc {
                r = r.exc(e);
            }
            Outcome::Failure(r.into())
        };
        let backend = client.backend().clone();
        let mut metas = Vec::with_capacity(ids.len());
        for id in &ids {
            match backend.get_async(id).await {
                Ok(Some(m)) if m.status.is_ready() => metas.push(m),
                Ok(_) => return retry(None),
                Err(e) => {
                    return retry(Some(TaskError::with_module("celery.exceptions", "BackendError", e.to_string())))
                }
            }
        }
        let body_id = canvas::freeze(&callback).1.id().to_owned();
        if let Some(bad) = metas.iter().find(|m| m.status.propagates()) {
            let exc = ExceptionInfo::chord_dependency(&bad.task_id, &bad.result);
            tracing::error!("Chord {group_id} raised: {}", exc.repr());
            let exc = exc.to_value();
            backend.store_detached(ResultMeta::new(&body_id, State::Failure, exc));
            for errback in crate::client::options_of(&callback).embed.errbacks.iter().flatten() {
                let apply = Apply { partial: vec![json!(body_id)], ..Apply::default() };
                if let Err(e) = client.apply_signature(errback, apply) {
                    tracing::error!("Chord {group_id}: cannot send errback {}: {e}", errback.task);
                }
            }
            return Outcome::Success(Value::Null);
        }
        let results = Value::Array(metas.into_iter().map(|m| m.result).collect());
        match client.apply_signature(&callback, Apply { partial: vec![results], ..Apply::default() }) {
            Ok(_) => Outcome::Success(Value::Null),
            Err(e) => Outcome::Failure(send_error(e)),
        }
    })))
}
