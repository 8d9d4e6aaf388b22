//! Chord counting in the result store (`celery/backends/redis.py`: `set_chord_size`,
//! `on_chord_part_return` and its three scripts). Each header task's outcome is recorded once
//! per `task id:group index` (a redelivered part that runs twice counts once, even with another
//! result), in `group_index` order; the part that completes the count takes a dispatch claim in
//! the same atomic step, so exactly one worker sends the body; after the send the chord's keys
//! are dropped and a `done` marker keeps late duplicates from starting it again. The keys and
//! scripts are Celery 5.7's, so Python and celeriac workers count the same chord together.

use std::collections::{BTreeMap, HashSet};
use std::sync::Mutex;

use serde_json::{json, Value};

use crate::protocol::State;

/// One header task's outcome, as counted.
#[derive(Debug, Clone, PartialEq)]
pub struct ChordPart {
    /// The header task's id.
    pub task_id: String,
    /// Its state (SUCCESS, FAILURE, REVOKED …).
    pub state: State,
    /// Its result, or its exception dict.
    pub result: Value,
}

impl ChordPart {
    /// Celery's record in the `.j` sorted set: `[1, task id, state, result]`.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(&json!([1, self.task_id, self.state.as_str(), self.result])).expect("JSON values")
    }

    /// Reads a record written by [`Self::encode`] or by Python.
    pub fn decode(raw: &[u8]) -> Option<ChordPart> {
        let v: Value = serde_json::from_slice(raw).ok()?;
        let a = v.as_array().filter(|a| a.len() == 4)?;
        Some(ChordPart {
            task_id: a[1].as_str()?.to_owned(),
            state: State::parse(a[2].as_str()?),
            result: a[3].clone(),
        })
    }
}

/// What counting one part found.
#[derive(Debug, Clone, PartialEq)]
pub enum ChordCount {
    /// Not complete yet, or over already (its body sent and its state dropped).
    Counted,
    /// Complete, and another worker holds the dispatch claim: it is sending the body, or it died
    /// doing so and the claim lapses within [`CLAIM_SECS`].
    Held,
    /// This part completed the chord and holds the dispatch claim `token`: the parts' outcomes
    /// in header order, for the body.
    Complete {
        /// The header's outcomes in `group_index` order.
        parts: Vec<ChordPart>,
        /// The dispatch claim, to extend before the send and release at cleanup.
        token: String,
    },
}

/// How long a dispatch claim lasts before another worker may take it over (Celery: twice the
/// join timeout, at least 5 s; its default join timeout is 3 s).
pub const CLAIM_SECS: u64 = 10;

/// Chords counted in process (`memory://`), with the Redis scripts' semantics.
#[derive(Debug, Default)]
pub(crate) struct MemoryChords {
    chords: Mutex<std::collections::HashMap<String, Chord>>,
}

#[derive(Debug, Default)]
struct Chord {
    size: Option<u64>,
    /// By (group index, record) as the sorted set orders them (no index sorts last).
    parts: BTreeMap<(i64, Vec<u8>), ChordPart>,
    seen: HashSet<String>,
    claim: Option<String>,
    done: bool,
}

impl MemoryChords {
    pub(crate) fn set_size(&self, group_id: &str, size: u64) {
        let mut all = self.chords.lock().unwrap_or_else(|p| p.into_inner());
        all.insert(group_id.to_owned(), Chord { size: Some(size), ..Chord::default() });
    }

    pub(crate) fn part_return(&self, group_id: &str, index: Option<i64>, part: ChordPart) -> ChordCount {
        let mut all = self.chords.lock().unwrap_or_else(|p| p.into_inner());
        let c = all.entry(group_id.to_owned()).or_default();
        if c.done {
            return ChordCount::Counted;
        }
        let score = index.unwrap_or(i64::MAX);
        if c.seen.insert(format!("{}:{score}", part.task_id)) {
            c.parts.insert((score, part.encode()), part);
        }
        let complete = c.size.is_some_and(|n| c.parts.len() as u64 == n);
        if !complete {
            return ChordCount::Counted;
        }
        if c.claim.is_some() {
            return ChordCount::Held;
        }
        let token = uuid::Uuid::new_v4().simple().to_string();
        c.claim = Some(token.clone());
        ChordCount::Complete { parts: c.parts.values().cloned().collect(), token }
    }

    pub(crate) fn cleanup(&self, group_id: &str, token: &str) -> bool {
        let mut all = self.chords.lock().unwrap_or_else(|p| p.into_inner());
        match all.get_mut(group_id) {
            Some(c) if c.claim.as_deref() == Some(token) => {
                *c = Chord { done: true, ..Chord::default() };
                true
            }
            _ => false,
        }
    }

    pub(crate) fn drop_size(&self, group_id: &str) {
        if let Some(c) = self.chords.lock().unwrap_or_else(|p| p.into_inner()).get_mut(group_id) {
            c.size = None;
        }
    }
}

/// Records a header task's result unless one for the same `task id:index` was recorded, and
/// takes the dispatch claim when the count is complete (Celery 5.7's `CHORD_PART_RETURN_LUA`,
/// unchanged). KEYS: `.j .t .s .d` group `.c`; ARGV: id, record, ordered, score, expires,
/// group expires, claim seconds, claim token.
pub(crate) const PART_RETURN_LUA: &str = r#"
local jkey, tkey, skey, dkey, gkey, ckey = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local tid, value, ordered, score = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local expires, group_expires = tonumber(ARGV[5]), tonumber(ARGV[6])
local claim_expires = tonumber(ARGV[7])
local claim_token = ARGV[8]

local done_marker = redis.call('GET', ckey)
if done_marker == 'done' then
    return {-1, 0, 0, 0}
end

local member = tid .. ':' .. score
if redis.call('SISMEMBER', dkey, member) == 0 then
    if ordered == '1' then
        redis.call('ZADD', jkey, score, value)
    else
        redis.call('RPUSH', jkey, value)
    end
    redis.call('SADD', dkey, member)
end
local readycount
if ordered == '1' then
    readycount = redis.call('ZCOUNT', jkey, '-inf', '+inf')
else
    readycount = redis.call('LLEN', jkey)
end
if expires > 0 then
    for _, key in ipairs({jkey, tkey, skey, dkey}) do
        redis.call('EXPIRE', key, expires)
    end
    if group_expires > 0 then
        redis.call('EXPIRE', gkey, group_expires)
    end
end

local totaldiff = redis.call('GET', tkey)
local size = redis.call('GET', skey)
local claimed = 0
if size and readycount == tonumber(size) + tonumber(totaldiff or 0) then
    if redis.call('SET', ckey, claim_token, 'NX', 'EX', claim_expires) then
        claimed = 1
    end
end

return {readycount, totaldiff, size, claimed}
"#;

/// Releases the claim and drops the chord's keys if `token` still holds it, leaving a `done`
/// marker (Celery's `CHORD_CLEANUP_LUA`). KEYS: `.c .j .t .s .d`; ARGV: token, marker seconds.
pub(crate) const CLEANUP_LUA: &str = r#"
local ckey = KEYS[1]
local jkey = KEYS[2]
local tkey = KEYS[3]
local skey = KEYS[4]
local dkey = KEYS[5]
local token = ARGV[1]
local done_expires = tonumber(ARGV[2])

if redis.call('GET', ckey) == token then
    redis.call('DEL', jkey, tkey, skey, dkey)
    if done_expires and done_expires > 0 then
        redis.call('SET', ckey, 'done', 'EX', done_expires)
    end
    return 1
end
return 0
"#;

/// Extends the claim while `token` holds it, or takes it again once expired while the chord's
/// size is still stored (Celery's `CHORD_CLAIM_EXTEND_LUA`). KEYS: `.c .s`; ARGV: token, seconds.
pub(crate) const CLAIM_EXTEND_LUA: &str = r#"
local ckey, skey = KEYS[1], KEYS[2]
local token = ARGV[1]
local expires = tonumber(ARGV[2])
if redis.call('GET', ckey) == token then
    return redis.call('EXPIRE', ckey, expires)
end
if not redis.call('GET', ckey) and redis.call('EXISTS', skey) == 1 then
    return redis.call('SET', ckey, token, 'EX', expires, 'NX') and 1 or 0
end
return 0
"#;

#[cfg(test)]
mod tests {
    use super::*;

    fn part(id: &str, v: i64) -> ChordPart {
        ChordPart { task_id: id.into(), state: State::Success, result: json!(v) }
    }

    #[test]
    fn reads_pythons_record() {
        let p = ChordPart::decode(br#"[1, "t1", "SUCCESS", 3]"#).unwrap();
        assert_eq!(p, part("t1", 3));
        assert_eq!(ChordPart::decode(&p.encode()).unwrap(), p);
    }

    #[test]
    fn memory_counts_each_part_once_in_header_order_and_fires_once() {
        let c = MemoryChords::default();
        c.set_size("g", 3);
        assert_eq!(c.part_return("g", Some(2), part("c", 30)), ChordCount::Counted);
        assert_eq!(c.part_return("g", Some(0), part("a", 10)), ChordCount::Counted);
        // A redelivered part with another result counts once.
        assert_eq!(c.part_return("g", Some(0), part("a", 11)), ChordCount::Counted);
        let ChordCount::Complete { parts, token } = c.part_return("g", Some(1), part("b", 20)) else { panic!() };
        assert_eq!(parts.iter().map(|p| p.result.clone()).collect::<Vec<_>>(), vec![json!(10), json!(20), json!(30)]);
        // Complete, but claimed: a duplicate of the last part does not fire again.
        assert_eq!(c.part_return("g", Some(1), part("b", 20)), ChordCount::Held);
        assert!(c.cleanup("g", &token));
        assert_eq!(c.part_return("g", Some(1), part("b", 20)), ChordCount::Counted);
    }
}
