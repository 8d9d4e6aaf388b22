//! `group(tasks)`: its members run in parallel (`celery/canvas.py: group`).

use serde_json::{json, Map};

use crate::protocol::{Signature, SubtaskType};

/// `group(sigs)`, as Celery writes its dict: `celery.group` with the members in `kwargs.tasks`.
pub fn group(tasks: Vec<Signature>) -> Signature {
    let mut kwargs = Map::new();
    kwargs.insert("tasks".into(), json!(tasks));
    Signature { kwargs, subtask_type: Some(SubtaskType::Group), ..Signature::new("celery.group", Vec::new()) }
}
