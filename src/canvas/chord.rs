//! `chord(header, body)`: the header's tasks in parallel, then the body with their results in
//! header order (`celery/canvas.py: _chord`).

use serde_json::{json, Map};

use crate::protocol::{Signature, SubtaskType};

/// `chord(header, body)`, as Celery writes its dict: `celery.chord` with `kwargs.header` (the
/// members) and `kwargs.body`.
pub fn chord(header: Vec<Signature>, body: Signature) -> Signature {
    let mut kwargs = Map::new();
    kwargs.insert("kwargs".into(), json!({}));
    kwargs.insert("header".into(), json!(header));
    kwargs.insert("body".into(), json!(body));
    Signature { kwargs, subtask_type: Some(SubtaskType::Chord), ..Signature::new("celery.chord", Vec::new()) }
}
