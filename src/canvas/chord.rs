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

/// How many results `sig` contributes to a chord it is a header member of (Celery's
/// `_chord._descend`): a task one, a group the sum of its members, a chain what its last
/// non-empty step contributes, a chord what its body does.
pub fn chord_size(sig: &Signature) -> u64 {
    match sig.subtask_type {
        Some(SubtaskType::Group) => sig.tasks().unwrap_or_default().iter().map(chord_size).sum(),
        Some(SubtaskType::Chain) => {
            sig.tasks().unwrap_or_default().iter().rev().map(chord_size).find(|n| *n > 0).unwrap_or(0)
        }
        Some(SubtaskType::Chord) => sig.chord_body().as_ref().map_or(0, chord_size),
        _ => 1,
    }
}
