//! Typed task handles: the argument and return types of a task, known at compile time on the
//! client side.

use std::marker::PhantomData;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;

use serde_json::Map;

use crate::protocol::Signature;
use crate::Result;

use super::{AsyncResult, Client, SendOptions};

/// A typed reference to a task by name: `const ADD: TaskRef<(i64, i64), i64> = TaskRef::new("proj.tasks.add");`
pub struct TaskRef<A, R> {
    name: &'static str,
    _types: PhantomData<fn(A) -> R>,
}

impl<A, R> TaskRef<A, R> {
    /// A reference to the task registered as `name`.
    pub const fn new(name: &'static str) -> Self {
        TaskRef { name, _types: PhantomData }
    }

    /// The task's registered name.
    pub fn name(&self) -> &'static str {
        self.name
    }
}

impl<A: Serialize, R> TaskRef<A, R> {
    /// `task.delay(*args)`.
    pub fn delay(&self, client: &Client, args: A) -> Result<TypedResult<R>> {
        client.delay(self, args)
    }

    /// `task.apply_async(args, **options)`.
    pub fn apply_async(&self, client: &Client, args: A, options: &SendOptions) -> Result<TypedResult<R>> {
        client.apply_async(self, args, options)
    }
}

impl<A: Serialize, R> TaskRef<A, R> {
    /// `task.s(*args)`: a signature with all of the task's arguments, for a group, chord or
    /// callback (`TaskRef::partial` takes fewer, for chain steps and chord bodies).
    pub fn s(&self, args: A) -> Result<Signature> {
        Ok(Signature::new(self.name, super::producer::args_list(self.name, args)?))
    }

    /// `task.si(*args)`: as [`Self::s`], immutable: a parent's result is not prepended.
    pub fn si(&self, args: A) -> Result<Signature> {
        Ok(Signature::immutable(self.name, super::producer::args_list(self.name, args)?))
    }
}

impl<A, R> TaskRef<A, R> {
    /// `task.s(*some_args)`: a partial signature whose first arguments come from a parent's
    /// result (a chain step `add.s(10)`, a chord body `tsum.s()`), so its arguments are given
    /// untyped: `()` for none, `(10,)` for one.
    pub fn partial(&self, args: impl Serialize) -> Result<Signature> {
        Ok(Signature::new(self.name, super::producer::args_list(self.name, args)?))
    }
}

impl Client {
    /// `task.delay(*args)` through a typed handle.
    pub fn delay<A: Serialize, R>(&self, task: &TaskRef<A, R>, args: A) -> Result<TypedResult<R>> {
        Ok(TypedResult::new(self.send_task(task.name(), args)?))
    }

    /// `task.apply_async(args, **options)` through a typed handle.
    pub fn apply_async<A: Serialize, R>(
        &self,
        task: &TaskRef<A, R>,
        args: A,
        options: &SendOptions,
    ) -> Result<TypedResult<R>> {
        Ok(TypedResult::new(self.send_task_with(task.name(), args, Map::new(), options)?))
    }
}

/// An [`AsyncResult`] that knows its value type.
#[derive(Debug, Clone)]
pub struct TypedResult<R> {
    inner: AsyncResult,
    _r: PhantomData<fn() -> R>,
}

impl<R> TypedResult<R> {
    pub(crate) fn new(inner: AsyncResult) -> Self {
        TypedResult { inner, _r: PhantomData }
    }

    /// The task id.
    pub fn id(&self) -> &str {
        self.inner.id()
    }

    /// The untyped handle (state, traceback, forget …).
    pub fn untyped(&self) -> &AsyncResult {
        &self.inner
    }
}

impl<R: DeserializeOwned> TypedResult<R> {
    /// Blocks until ready; the value, or the task's error.
    pub fn get(&self, timeout: Duration) -> Result<R> {
        self.inner.get(timeout)
    }

    /// Awaits the value from any executor.
    pub async fn get_async(&self, timeout: Duration) -> Result<R> {
        self.inner.get_async(timeout).await
    }
}
