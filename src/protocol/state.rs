//! Task states as Celery names them (`celery/states.py`), custom states included.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A task's state. Custom states (`update_state(state="PROGRESS")`) keep their name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum State {
    /// Unknown, or not started yet.
    Pending,
    /// A worker reserved it.
    Received,
    /// Running (with `task_track_started`).
    Started,
    /// Ended with a return value.
    Success,
    /// Ended with an exception.
    Failure,
    /// Will run again.
    Retry,
    /// Revoked before or while it ran.
    Revoked,
    /// Rejected by the task (`Reject`).
    Rejected,
    /// Ignored by the task (`Ignore`); nothing stored.
    Ignored,
    /// A state of the task's own (`update_state(state="PROGRESS")`).
    Custom(String),
}

impl State {
    /// The wire name (`"SUCCESS"`).
    pub fn as_str(&self) -> &str {
        match self {
            State::Pending => "PENDING",
            State::Received => "RECEIVED",
            State::Started => "STARTED",
            State::Success => "SUCCESS",
            State::Failure => "FAILURE",
            State::Retry => "RETRY",
            State::Revoked => "REVOKED",
            State::Rejected => "REJECTED",
            State::Ignored => "IGNORED",
            State::Custom(s) => s,
        }
    }

    /// Parses a wire name; anything unknown is a custom state.
    pub fn parse(s: &str) -> State {
        match s {
            "PENDING" => State::Pending,
            "RECEIVED" => State::Received,
            "STARTED" => State::Started,
            "SUCCESS" => State::Success,
            "FAILURE" => State::Failure,
            "RETRY" => State::Retry,
            "REVOKED" => State::Revoked,
            "REJECTED" => State::Rejected,
            "IGNORED" => State::Ignored,
            other => State::Custom(other.to_owned()),
        }
    }

    /// READY_STATES: the task will not change any more.
    pub fn is_ready(&self) -> bool {
        matches!(self, State::Success | State::Failure | State::Revoked)
    }

    /// PROPAGATE_STATES: `get()` raises the stored exception.
    pub fn propagates(&self) -> bool {
        matches!(self, State::Failure | State::Revoked)
    }

    /// EXCEPTION_STATES: the stored result is an exception dict.
    pub fn is_exception(&self) -> bool {
        matches!(self, State::Failure | State::Retry | State::Revoked)
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for State {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for State {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Ok(State::parse(&s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_sets_match_celery() {
        for s in [
            "PENDING", "RECEIVED", "STARTED", "SUCCESS", "FAILURE", "RETRY", "REVOKED", "REJECTED", "IGNORED",
            "PROGRESS",
        ] {
            assert_eq!(State::parse(s).as_str(), s);
        }
        assert!(State::Success.is_ready() && !State::Retry.is_ready());
        assert!(State::Revoked.propagates() && !State::Retry.propagates());
        assert_eq!(State::parse("PROGRESS"), State::Custom("PROGRESS".into()));
    }
}
