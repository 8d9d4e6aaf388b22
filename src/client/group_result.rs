//! `GroupResult` (`celery/result.py`): a group's id and its members' results, in order, and what
//! applying any signature returns ([`Applied`]).

use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::protocol::ResultTuple;
use crate::{Error, Result};

use super::{AsyncResult, Client};

/// What `sig.apply_async()` returns: one result (a task, a chain's last step, a chord's body) or
/// a group's.
#[derive(Debug, Clone)]
pub enum Applied {
    /// Celery's `AsyncResult`.
    Task(AsyncResult),
    /// Celery's `GroupResult`.
    Group(GroupResult),
}

impl Applied {
    /// The result id (the group id for a group).
    pub fn id(&self) -> &str {
        match self {
            Applied::Task(r) => r.id(),
            Applied::Group(g) => g.id(),
        }
    }

    /// The one-task result; `None` for a group.
    pub fn task(&self) -> Option<&AsyncResult> {
        match self {
            Applied::Task(r) => Some(r),
            Applied::Group(_) => None,
        }
    }

    /// The group result; `None` for one task.
    pub fn group(&self) -> Option<&GroupResult> {
        match self {
            Applied::Group(g) => Some(g),
            Applied::Task(_) => None,
        }
    }

    /// Blocks until ready and returns the value as `T` (a group's: the list of its members').
    pub fn get<T: DeserializeOwned>(&self, timeout: Duration) -> Result<T> {
        let v = self.get_value(timeout, true)?;
        serde_json::from_value(v)
            .map_err(|e| Error::ResultType { task_id: self.id().to_owned(), reason: e.to_string() })
    }

    /// As [`Self::get`], untyped; with `propagate` false a failure's exception dict is the value.
    pub fn get_value(&self, timeout: Duration, propagate: bool) -> Result<Value> {
        match self {
            Applied::Task(r) => r.get_value(timeout, propagate),
            Applied::Group(g) => g.get_value(timeout, propagate),
        }
    }

    /// Celery's result tuple (`as_tuple()`), as `children` lists it.
    pub fn as_tuple(&self) -> ResultTuple {
        match self {
            Applied::Task(r) => ResultTuple::task(r.id()),
            Applied::Group(g) => g.as_tuple(),
        }
    }

    fn ready(&self) -> Result<bool> {
        match self {
            Applied::Task(r) => r.ready(),
            Applied::Group(g) => g.ready(),
        }
    }
}

/// A group's results: its id and its members', in the group's order.
#[derive(Debug, Clone)]
pub struct GroupResult {
    id: String,
    results: Vec<Applied>,
    client: Client,
}

impl GroupResult {
    pub(crate) fn new(id: String, results: Vec<Applied>, client: Client) -> Self {
        GroupResult { id, results, client }
    }

    /// The group id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The members' results, in order (`GroupResult.results`, `children`).
    pub fn results(&self) -> &[Applied] {
        &self.results
    }

    /// How many members the group has.
    pub fn len(&self) -> usize {
        self.results.len()
    }

    /// Whether the group has no members.
    pub fn is_empty(&self) -> bool {
        self.results.is_empty()
    }

    /// Whether every member finished.
    pub fn ready(&self) -> Result<bool> {
        for r in &self.results {
            if !r.ready()? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// How many members finished (`completed_count()` counts successes).
    pub fn completed_count(&self) -> Result<usize> {
        let mut n = 0;
        for r in &self.results {
            if let Applied::Task(t) = r {
                n += usize::from(t.successful()?);
            }
        }
        Ok(n)
    }

    /// The members' values in group order (`join`), within one `timeout` for all; the first
    /// failure in order is the error when `propagate` (as Celery's `get()`).
    pub fn get_value(&self, timeout: Duration, propagate: bool) -> Result<Value> {
        let deadline = Instant::now() + timeout;
        let mut out = Vec::with_capacity(self.results.len());
        for r in &self.results {
            let left = deadline.saturating_duration_since(Instant::now());
            out.push(r.get_value(left, propagate)?);
        }
        Ok(Value::Array(out))
    }

    /// The members' values as `T`, in order.
    pub fn get<T: DeserializeOwned>(&self, timeout: Duration) -> Result<Vec<T>> {
        match self.get_value(timeout, true)? {
            Value::Array(items) => items
                .into_iter()
                .map(|v| {
                    serde_json::from_value(v)
                        .map_err(|e| Error::ResultType { task_id: self.id.clone(), reason: e.to_string() })
                })
                .collect(),
            _ => unreachable!("a group's value is a list"),
        }
    }

    /// Celery's tuple `[[id, null], [member tuples]]`.
    pub fn as_tuple(&self) -> ResultTuple {
        ResultTuple {
            id: self.id.clone(),
            parent: None,
            children: Some(self.results.iter().map(Applied::as_tuple).collect()),
        }
    }

    /// `GroupResult.save()`: stores the member ids under `celery-taskset-meta-<id>`, so another
    /// process can [`Client::restore_group`] it.
    pub fn save(&self) -> Result<()> {
        let ids: Vec<String> = self.results.iter().map(|r| r.id().to_owned()).collect();
        Ok(self.client.backend().save_group(&self.id, &ids)?)
    }

    /// Forgets each member's stored result (`GroupResult.forget()`).
    pub fn forget(&self) -> Result<()> {
        for r in &self.results {
            if let Applied::Task(t) = r {
                t.forget()?;
            }
        }
        Ok(())
    }
}

impl Client {
    /// `GroupResult.restore(id)`: a saved group's results (Python's saves included); `None` when
    /// nothing was saved under `group_id`.
    pub fn restore_group(&self, group_id: &str) -> Result<Option<GroupResult>> {
        let Some(ids) = self.backend().restore_group(group_id)? else { return Ok(None) };
        let results = ids.into_iter().map(|id| Applied::Task(self.async_result(id))).collect();
        Ok(Some(GroupResult::new(group_id.to_owned(), results, self.clone())))
    }
}
