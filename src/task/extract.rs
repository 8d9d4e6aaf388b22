//! Parameter extraction: positional arguments (any `DeserializeOwned` type, by position or by
//! keyword name) and extractors ([`TaskCtx`], [`ShardState`], [`Client`]).

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;

use serde::de::DeserializeOwned;

use crate::client::Client;
use crate::protocol::{shorten, Body, REPR_MAX};

use super::{TaskCtx, TaskError};

/// Everything a parameter can be extracted from, for one task call.
pub struct Invocation<'a> {
    pub(crate) ctx: &'a TaskCtx,
    pub(crate) body: &'a Body<'a>,
    pub(crate) names: &'a [String],
    pub(crate) locals: &'a ShardLocals,
    pub(crate) client: &'a Client,
    /// The registered tasks, for built-ins that call a task in-process (`celery.map`).
    pub(crate) tasks: &'a dyn InProcess,
}

/// Calls a registered task in-process, with the caller's context (the worker's registry).
pub(crate) trait InProcess {
    /// Starts task `name` with positional `args`, as the caller's invocation runs.
    fn call_here(&self, inv: &Invocation<'_>, name: &str, args: &[serde_json::Value])
        -> Result<super::Call, TaskError>;
}

impl Invocation<'_> {
    /// The raw JSON of positional parameter `position`: `args[position]`, else the keyword
    /// argument of that parameter's name.
    fn raw(&self, position: usize) -> Result<&str, TaskError> {
        if let Some(a) = self.body.args.get(position) {
            return Ok(a.get());
        }
        let name = self.names.get(position).map(String::as_str).unwrap_or("?");
        self.body.kwarg(name).map(|r| r.get()).ok_or_else(|| {
            TaskError::type_error(format!("{}() missing 1 required positional argument: '{name}'", self.ctx.name()))
        })
    }

    /// Python's call checks: too many positional arguments, unknown or duplicate keywords,
    /// missing arguments. Messages match CPython's.
    pub(crate) fn check_call(&self) -> Result<(), TaskError> {
        let n = self.names.len();
        let given = self.body.args.len();
        let task = self.ctx.name();
        if given > n {
            return Err(TaskError::type_error(format!(
                "{task}() takes {n} positional arguments but {given} were given"
            )));
        }
        for (k, _) in &self.body.kwargs {
            match self.names.iter().position(|p| p == k) {
                None => {
                    return Err(TaskError::type_error(format!("{task}() got an unexpected keyword argument '{k}'")));
                }
                Some(i) if i < given => {
                    return Err(TaskError::type_error(format!("{task}() got multiple values for argument '{k}'")));
                }
                Some(_) => {}
            }
        }
        let missing: Vec<&str> =
            self.names[given.min(n)..].iter().filter(|p| self.body.kwarg(p).is_none()).map(String::as_str).collect();
        if !missing.is_empty() {
            let list = missing.iter().map(|m| format!("'{m}'")).collect::<Vec<_>>().join(" and ");
            let s = if missing.len() == 1 { "" } else { "s" };
            return Err(TaskError::type_error(format!(
                "{task}() missing {} required positional argument{s}: {list}",
                missing.len()
            )));
        }
        Ok(())
    }
}

/// A task parameter. Positional parameters are any `DeserializeOwned` type; extractors
/// implement this with `POSITIONAL = false`.
pub trait FromInvocation: Sized {
    /// Whether this parameter takes the next positional argument.
    const POSITIONAL: bool;
    /// Builds the parameter; `position` is its index among positional parameters.
    fn from_invocation(inv: &Invocation<'_>, position: usize) -> Result<Self, TaskError>;
}

impl<T: DeserializeOwned> FromInvocation for T {
    const POSITIONAL: bool = true;
    fn from_invocation(inv: &Invocation<'_>, position: usize) -> Result<Self, TaskError> {
        let raw = inv.raw(position)?;
        serde_json::from_str(raw).map_err(|e| {
            let name = inv.names.get(position).map(String::as_str).unwrap_or("?");
            // Both the value and serde's message (which quotes it) are cut: a 50 MB argument of
            // the wrong type must not make a 100 MB error.
            let e = e.to_string();
            TaskError::type_error(format!(
                "{}() argument '{name}': {} does not fit {}: {}",
                inv.ctx.name(),
                shorten(raw, REPR_MAX),
                std::any::type_name::<T>(),
                shorten(&e, REPR_MAX)
            ))
        })
    }
}

impl FromInvocation for TaskCtx {
    const POSITIONAL: bool = false;
    fn from_invocation(inv: &Invocation<'_>, _: usize) -> Result<Self, TaskError> {
        Ok(inv.ctx.clone())
    }
}

impl FromInvocation for Client {
    const POSITIONAL: bool = false;
    fn from_invocation(inv: &Invocation<'_>, _: usize) -> Result<Self, TaskError> {
        Ok(inv.client.clone())
    }
}

/// Shard-local state of type `T`, made once per shard by the factory given to
/// [`AppBuilder::shard_state`](crate::AppBuilder::shard_state). No locks: a shard is one thread.
pub struct ShardState<T>(pub Rc<T>);

impl<T> std::ops::Deref for ShardState<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T: 'static> FromInvocation for ShardState<T> {
    const POSITIONAL: bool = false;
    fn from_invocation(inv: &Invocation<'_>, _: usize) -> Result<Self, TaskError> {
        inv.locals.get::<T>().map(ShardState).ok_or_else(|| {
            TaskError::with_module(
                "celeriac",
                "ImproperlyConfigured",
                format!("no shard state of type {} was registered", std::any::type_name::<T>()),
            )
        })
    }
}

/// A factory of one shard's state value.
pub(crate) type StateFactory = Arc<dyn Fn(usize) -> Box<dyn Any> + Send + Sync>;

/// The shard-local state values, by type.
#[derive(Default)]
pub(crate) struct ShardLocals {
    values: HashMap<TypeId, Rc<dyn Any>>,
}

impl ShardLocals {
    pub(crate) fn build(factories: &[(TypeId, StateFactory)], shard: usize) -> Self {
        let values = factories.iter().map(|(t, f)| (*t, Rc::<dyn Any>::from(f(shard)))).collect();
        ShardLocals { values }
    }

    fn get<T: 'static>(&self) -> Option<Rc<T>> {
        self.values.get(&TypeId::of::<T>())?.clone().downcast::<T>().ok()
    }
}
