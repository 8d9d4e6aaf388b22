//! The task registry: names to handlers, frozen at start and shared by every shard.

use std::collections::HashMap;
use std::sync::Arc;

use super::handler::{Call, Handler};
use super::{Invocation, TaskError};

/// Per-task options set at registration.
#[derive(Debug, Clone, Default)]
pub struct TaskOptions {
    /// Store no result (`ignore_result=True`).
    pub ignore_result: Option<bool>,
    /// Ack after the result is stored (`acks_late=True`).
    pub acks_late: Option<bool>,
}

type ErasedCall = Box<dyn Fn(&Invocation<'_>) -> Result<Call, TaskError> + Send + Sync>;

/// One registered task.
pub struct TaskEntry {
    pub name: String,
    /// Positional parameter names, for keyword arguments.
    pub params: Vec<String>,
    pub options: TaskOptions,
    call: ErasedCall,
}

impl TaskEntry {
    /// Erases a handler; checks that the names match its positional parameters.
    pub fn new<M, H: Handler<M>>(name: &str, params: Vec<String>, handler: H) -> Result<Self, String> {
        let n = handler.positional_count();
        if params.len() != n {
            return Err(format!(
                "task {name:?}: {} parameter name(s) given ({:?}) but the function takes {n} positional argument(s)",
                params.len(),
                params
            ));
        }
        Ok(TaskEntry {
            name: name.to_owned(),
            params,
            options: TaskOptions::default(),
            call: Box::new(move |inv| handler.call(inv)),
        })
    }

    /// Checks the call like Python does, then starts the body.
    pub(crate) fn call(&self, inv: &Invocation<'_>) -> Result<Call, TaskError> {
        inv.check_call()?;
        (self.call)(inv)
    }
}

impl std::fmt::Debug for TaskEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskEntry").field("name", &self.name).field("params", &self.params).finish()
    }
}

/// All registered tasks.
#[derive(Debug, Default)]
pub struct Registry {
    tasks: HashMap<String, Arc<TaskEntry>>,
}

impl Registry {
    /// Adds a task; a duplicate name is an error.
    pub fn insert(&mut self, entry: TaskEntry) -> Result<(), String> {
        if self.tasks.contains_key(&entry.name) {
            return Err(format!("task {:?} is registered twice", entry.name));
        }
        self.tasks.insert(entry.name.clone(), Arc::new(entry));
        Ok(())
    }

    pub fn get(&self, name: &str) -> Option<&Arc<TaskEntry>> {
        self.tasks.get(name)
    }

    /// Task names, sorted (for the banner and `registered`).
    pub fn names(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self.tasks.keys().map(String::as_str).collect();
        v.sort_unstable();
        v
    }

    pub fn len(&self) -> usize {
        self.tasks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }
}
