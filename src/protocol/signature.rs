//! Signature dicts (`celery/canvas.py: Signature`), the unit canvas code builds on: a task name,
//! partial arguments, apply options, and for composites (`group`, `chain`, `chord`) nested
//! signatures in `kwargs`.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Which class Python rebuilds a signature dict into.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SubtaskType {
    /// `group`: the tasks in `kwargs.tasks` in parallel.
    Group,
    /// `chain`: the tasks in `kwargs.tasks` one after another.
    Chain,
    /// `chord`: a header group, then `kwargs.body` with its results.
    Chord,
    /// `chunks`: a task over `kwargs.it` in parts of `kwargs.n`.
    Chunks,
    /// `xmap`: a task once per item of `kwargs.it`.
    Xmap,
    /// `xstarmap`: a task once per argument tuple of `kwargs.it`.
    Xstarmap,
}

/// A signature dict exactly as Celery writes it; unknown keys are kept. Built by name, or typed
/// through [`TaskRef::s`](crate::TaskRef::s); composed with `|` (a chain), [`group`](crate::group)
/// and [`chord`](crate::chord):
///
/// ```
/// use std::time::Duration;
/// use celeriac::{chord, Signature, TaskRef};
/// use serde_json::json;
///
/// fn add(x: i64, y: i64) -> i64 {
///     x + y
/// }
/// fn xsum(numbers: Vec<i64>) -> i64 {
///     numbers.iter().sum()
/// }
/// const ADD: TaskRef<(i64, i64), i64> = TaskRef::new("proj.tasks.add");
///
/// # fn main() -> celeriac::Result<()> {
/// let app = celeriac::App::builder("proj")
///     .result_backend("memory://")
///     .task("proj.tasks.add", ["x", "y"], add)
///     .task("proj.tasks.xsum", ["numbers"], xsum)
///     .build()?;
/// let worker = app.worker().start()?;
/// // chord([add(i, i) for i in range(4)], xsum) | add(100)
/// let header = (0..4).map(|i| ADD.s((i, i))).collect::<celeriac::Result<Vec<_>>>()?;
/// let flow = chord(header, Signature::new("proj.tasks.xsum", vec![]))
///     | Signature::new("proj.tasks.add", vec![json!(100)]);
/// assert_eq!(app.client().send_signature(&flow)?.get::<i64>(Duration::from_secs(5))?, 112);
/// worker.shutdown();
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Signature {
    /// The task name (or `celery.group`, `celery.chain`, … for canvas types).
    pub task: String,
    /// Positional arguments.
    #[serde(default)]
    pub args: Vec<Value>,
    /// Keyword arguments.
    #[serde(default)]
    pub kwargs: Map<String, Value>,
    /// Call options (`queue`, `countdown`, `link`, …).
    #[serde(default)]
    pub options: Map<String, Value>,
    /// Which canvas type this is, if any.
    #[serde(default)]
    pub subtask_type: Option<SubtaskType>,
    /// Whether the parent's result is not prepended to `args` (`si()`).
    #[serde(default)]
    pub immutable: bool,
    /// Celery 5.0 wrote the chord size here; kept for KV-backend fallbacks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chord_size: Option<u64>,
    /// Other keys, kept as sent.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Read field by field, unknown keys into `extra` (what `#[serde(flatten)]` would do, without
/// its buffering of every key: a chain's message carries hundreds of signatures, and each hop
/// of the chain reads them all).
impl<'de> Deserialize<'de> for Signature {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Signature;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a signature dict")
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut m: A) -> Result<Signature, A::Error> {
                let mut s = Signature::new(String::new(), Vec::new());
                let mut task = None;
                while let Some(key) = m.next_key::<std::borrow::Cow<'de, str>>()? {
                    match &*key {
                        "task" => task = Some(m.next_value::<String>()?),
                        "args" => s.args = m.next_value::<Option<Vec<Value>>>()?.unwrap_or_default(),
                        "kwargs" => s.kwargs = m.next_value::<Option<Map<String, Value>>>()?.unwrap_or_default(),
                        "options" => s.options = m.next_value::<Option<Map<String, Value>>>()?.unwrap_or_default(),
                        "subtask_type" => s.subtask_type = m.next_value()?,
                        "immutable" => s.immutable = m.next_value::<Option<bool>>()?.unwrap_or(false),
                        "chord_size" => s.chord_size = m.next_value()?,
                        _ => {
                            s.extra.insert(key.into_owned(), m.next_value()?);
                        }
                    }
                }
                s.task = task.ok_or_else(|| serde::de::Error::missing_field("task"))?;
                Ok(s)
            }
        }
        d.deserialize_map(V)
    }
}

impl Signature {
    /// A plain signature `task.s(*args)`.
    pub fn new(task: impl Into<String>, args: Vec<Value>) -> Self {
        Signature {
            task: task.into(),
            args,
            kwargs: Map::new(),
            options: Map::new(),
            subtask_type: None,
            immutable: false,
            chord_size: None,
            extra: Map::new(),
        }
    }

    /// The members of a group or the steps of a chain (`kwargs.tasks`); a chord's header.
    pub fn tasks(&self) -> Option<Vec<Signature>> {
        let list = match self.subtask_type? {
            SubtaskType::Group | SubtaskType::Chain => self.kwargs.get("tasks")?,
            SubtaskType::Chord => {
                let header = self.kwargs.get("header")?;
                if header.is_object() {
                    return Signature::deserialize(header).ok()?.tasks();
                }
                header
            }
            _ => return None,
        };
        // Read from the value in place: a chord's header may hold thousands of signatures.
        Vec::<Signature>::deserialize(list).ok()
    }

    /// A chord's body.
    pub fn chord_body(&self) -> Option<Signature> {
        (self.subtask_type == Some(SubtaskType::Chord))
            .then(|| Signature::deserialize(self.kwargs.get("body")?).ok())?
    }

    /// `options.task_id`, the id frozen into chain steps and chord bodies.
    pub fn task_id(&self) -> Option<&str> {
        self.options.get("task_id")?.as_str()
    }

    /// Arguments for applying this signature as a callback with `partial` (the parent's result):
    /// prepended unless immutable, as Celery does.
    pub fn args_with(&self, partial: &[Value]) -> Vec<Value> {
        if self.immutable {
            self.args.clone()
        } else {
            partial.iter().chain(self.args.iter()).cloned().collect()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn writes_keys_in_celerys_order() {
        let s = Signature::new("app2.add", vec![json!(1), json!(2)]);
        assert_eq!(
            serde_json::to_string(&s).unwrap(),
            r#"{"task":"app2.add","args":[1,2],"kwargs":{},"options":{},"subtask_type":null,"immutable":false}"#
        );
    }

    #[test]
    fn nested_group_in_a_chord_is_read() {
        let chord = json!({"task": "celery.chord", "args": [], "kwargs": {"kwargs": {}, "header":
            {"task": "celery.group", "args": [], "kwargs": {"tasks": [
                {"task": "a", "args": [1], "kwargs": {}, "options": {"group_index": 0}, "subtask_type": null, "immutable": false}]},
             "options": {}, "subtask_type": "group", "immutable": false},
            "body": {"task": "tsum", "args": [], "kwargs": {}, "options": {}, "subtask_type": null, "immutable": false}},
            "options": {}, "subtask_type": "chord", "immutable": false});
        let s: Signature = serde_json::from_value(chord.clone()).unwrap();
        assert_eq!(s.tasks().unwrap()[0].task, "a");
        assert_eq!(s.chord_body().unwrap().task, "tsum");
        assert_eq!(serde_json::to_value(&s).unwrap(), chord);
    }

    #[test]
    fn unknown_keys_are_kept_and_a_task_is_required() {
        let v = json!({"task": "a", "args": [1], "kwargs": {}, "options": {"queue": "q"}, "subtask_type": null,
            "immutable": true, "chord_size": 3, "custom": {"x": 1}});
        let s: Signature = serde_json::from_value(v.clone()).unwrap();
        assert_eq!((s.immutable, s.chord_size, s.extra["custom"].clone()), (true, Some(3), json!({"x": 1})));
        assert_eq!(serde_json::to_value(&s).unwrap(), v);
        let bare: Signature = serde_json::from_str(r#"{"task": "b", "args": null}"#).unwrap();
        assert_eq!((bare.task.as_str(), bare.args.len()), ("b", 0));
        assert!(serde_json::from_str::<Signature>(r#"{"args": []}"#).is_err());
    }

    #[test]
    fn partial_args_are_prepended_unless_immutable() {
        let mut s = Signature::new("mul", vec![json!(10)]);
        assert_eq!(s.args_with(&[json!(3)]), vec![json!(3), json!(10)]);
        s.immutable = true;
        assert_eq!(s.args_with(&[json!(3)]), vec![json!(10)]);
    }
}
