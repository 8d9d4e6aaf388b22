//! `task.chunks(it, n)`, `task.map(it)`, `task.starmap(it)` (`celery/canvas.py: chunks, xmap,
//! xstarmap`): built-in tasks that call `task` in-process over an argument list.

use serde_json::{json, Map, Value};

use crate::protocol::Signature;

fn builtin(name: &str, task: &Signature, it: Vec<Value>, n: Option<usize>) -> Signature {
    let mut kwargs = Map::new();
    kwargs.insert("task".into(), json!(task));
    kwargs.insert("it".into(), Value::Array(it));
    if let Some(n) = n {
        kwargs.insert("n".into(), json!(n));
    }
    Signature { kwargs, immutable: true, ..Signature::new(name, Vec::new()) }
}

/// `task.map(it)`: one `celery.map` task calling `task(item)` for each item.
pub fn xmap(task: &Signature, it: Vec<Value>) -> Signature {
    builtin("celery.map", task, it, None)
}

/// `task.starmap(it)`: one `celery.starmap` task calling `task(*args)` for each argument list.
pub fn xstarmap(task: &Signature, it: Vec<Value>) -> Signature {
    builtin("celery.starmap", task, it, None)
}

/// `task.chunks(it, n)`: the argument lists in parts of `n`, each part one `celery.starmap`
/// task; applied, a group of them (see [`expand_chunks`]).
pub fn chunks(task: &Signature, it: Vec<Value>, n: usize) -> Signature {
    builtin("celery.chunks", task, it, Some(n))
}

/// A `celery.chunks` signature as the group Celery sends for it (`chunks.group()`); `None`
/// when `sig` is no well-formed chunks signature.
pub fn expand_chunks(sig: &Signature) -> Option<Signature> {
    let task: Signature = serde_json::from_value(sig.kwargs.get("task")?.clone()).ok()?;
    let it = sig.kwargs.get("it")?.as_array()?;
    let n = sig.kwargs.get("n")?.as_u64().filter(|n| *n > 0)? as usize;
    let parts = it.chunks(n).map(|part| xstarmap(&task, part.to_vec())).collect();
    let mut g = super::group(parts);
    g.options = sig.options.clone();
    Some(g)
}
