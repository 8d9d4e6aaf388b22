//! `chain(tasks)` and `a | b`: steps one after another, each given the previous step's result
//! (`celery/canvas.py: _chain`, `Signature.__or__`).

use std::ops::BitOr;

use serde_json::{json, Map};

use crate::protocol::{Signature, SubtaskType};

/// `chain(sigs)`, as Celery writes its dict: `celery.chain` with the steps in `kwargs.tasks`.
pub fn chain(tasks: Vec<Signature>) -> Signature {
    let mut kwargs = Map::new();
    kwargs.insert("tasks".into(), json!(tasks));
    Signature { kwargs, subtask_type: Some(SubtaskType::Chain), ..Signature::new("celery.chain", Vec::new()) }
}

/// The steps of `sig` if it is a chain, else `sig` alone.
fn steps(sig: Signature) -> Vec<Signature> {
    match sig.subtask_type {
        Some(SubtaskType::Chain) => sig.tasks().unwrap_or_default(),
        _ => vec![sig],
    }
}

/// `a | b` as Celery composes it: chains are joined flat, `group | task` becomes a chord with
/// the task as its body, and `chord | task` chains the task onto the chord's body.
impl BitOr for Signature {
    type Output = Signature;

    fn bitor(self, next: Signature) -> Signature {
        let next_is_composite = matches!(next.subtask_type, Some(SubtaskType::Group | SubtaskType::Chain));
        match self.subtask_type {
            Some(SubtaskType::Group) if !next_is_composite => super::chord(self.tasks().unwrap_or_default(), next),
            Some(SubtaskType::Chord) if !next_is_composite => {
                let mut c = self;
                let body = c.chord_body().expect("a chord has a body");
                c.kwargs.insert("body".into(), json!(body | next));
                c
            }
            _ => {
                let mut all = steps(self);
                all.extend(steps(next));
                chain(all)
            }
        }
    }
}
