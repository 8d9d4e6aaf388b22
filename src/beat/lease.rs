//! The lease that lets many beats run and exactly one send (Python's beat double-fires when two
//! run). On Redis: `SET <key> <token> NX PX <ms>`, renewed by its holder, and each run recorded
//! in the broker under the lease (a script checks the token and writes the entry's state in one
//! step), so a beat that lost its lease cannot send, and the beat that takes over reads the last
//! runs its predecessor recorded: nothing due is sent twice. On RabbitMQ: a single-active-consumer
//! queue whose messages are the recorded runs, held unacked by the one beat that sends
//! (`transport::amqp::AmqpBaton`). On memory://, in process.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::config::{AmqpUrl, RedisUrl};
use crate::transport::amqp::AmqpBaton;
use crate::transport::redis::{command_on, Pool, Reply};

/// How long a lease lasts unrenewed: a dead holder's successor sends within this.
pub const LEASE: Duration = Duration::from_secs(5);

/// A beat's hold on the right to send.
pub(crate) enum Lease {
    /// Beats in this process (memory://).
    Memory { key: String, token: String },
    /// Beats sharing a Redis broker.
    Redis { url: Box<RedisUrl>, pool: Pool, key: String, state: String, token: String },
    /// Beats sharing a RabbitMQ broker.
    Amqp(AmqpBaton),
}

fn memory_holders() -> &'static Mutex<HashMap<String, (String, Instant)>> {
    static HOLDERS: OnceLock<Mutex<HashMap<String, (String, Instant)>>> = OnceLock::new();
    HOLDERS.get_or_init(Mutex::default)
}

/// Runs recorded under a memory lease: lease key → entry → state JSON.
fn memory_records() -> &'static Mutex<HashMap<String, HashMap<String, String>>> {
    static RECORDS: OnceLock<Mutex<HashMap<String, HashMap<String, String>>>> = OnceLock::new();
    RECORDS.get_or_init(Mutex::default)
}

/// Renews the lease if `ARGV[1]` holds it. KEYS: lock; ARGV: token, ms.
const RENEW: &str =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end return 0";
/// Records a run if `ARGV[1]` holds the lease. KEYS: lock, state; ARGV: token, entry, state JSON.
const RECORD: &str =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('HSET', KEYS[2], ARGV[2], ARGV[3]) return 1 end return 0";

impl Lease {
    /// The lease of the beats of app `name` on a memory broker.
    pub(crate) fn memory(name: &str) -> Lease {
        Lease::Memory { key: name.to_owned(), token: uuid::Uuid::new_v4().to_string() }
    }

    /// The lease of the beats of app `name` on Redis.
    pub(crate) fn redis(url: RedisUrl, name: &str) -> Lease {
        Lease::Redis {
            url: Box::new(url),
            pool: Pool::default(),
            key: format!("celeriac-beat-lock-{name}"),
            state: format!("celeriac-beat-state-{name}"),
            token: uuid::Uuid::new_v4().to_string(),
        }
    }

    /// The lease of the beats of app `name` on RabbitMQ (queue `celeriac-beat-lease-<name>`).
    pub(crate) fn amqp(url: &AmqpUrl, name: &str) -> Lease {
        Lease::Amqp(AmqpBaton::join(url, &format!("celeriac-beat-lease-{name}")))
    }

    /// Takes the lease if nobody holds it, or renews it if this beat does; `Ok(false)`: another
    /// beat holds it.
    pub(crate) fn hold(&self) -> Result<bool, String> {
        match self {
            Lease::Memory { key, token } => {
                let mut all = memory_holders().lock().unwrap_or_else(|p| p.into_inner());
                let now = Instant::now();
                match all.get(key) {
                    Some((t, until)) if t != token && *until > now => Ok(false),
                    _ => {
                        all.insert(key.clone(), (token.clone(), now + LEASE));
                        Ok(true)
                    }
                }
            }
            Lease::Redis { url, pool, key, token, .. } => {
                let ms = LEASE.as_millis().to_string();
                let renewed = command_on(
                    pool,
                    url,
                    &[b"EVAL", RENEW.as_bytes(), b"1", key.as_bytes(), token.as_bytes(), ms.as_bytes()],
                )
                .map_err(|e| e.to_string())?;
                if renewed.as_int() == Some(1) {
                    return Ok(true);
                }
                let set =
                    command_on(pool, url, &[b"SET", key.as_bytes(), token.as_bytes(), b"NX", b"PX", ms.as_bytes()])
                        .map_err(|e| e.to_string())?;
                Ok(matches!(set, Reply::Status(ref s) if s == "OK"))
            }
            // RabbitMQ hands the lease on by itself; holding it is having been handed it.
            Lease::Amqp(baton) => Ok(baton.holds()),
        }
    }

    /// Records `entry`'s state (`json`) if this beat still holds the lease; `Ok(false)`: it does
    /// not, and must not send.
    pub(crate) fn record(&self, entry: &str, json: &str) -> Result<bool, String> {
        match self {
            Lease::Memory { key, .. } => {
                if !self.hold()? {
                    return Ok(false);
                }
                let mut all = memory_records().lock().unwrap_or_else(|p| p.into_inner());
                all.entry(key.clone()).or_default().insert(entry.to_owned(), json.to_owned());
                Ok(true)
            }
            Lease::Redis { url, pool, key, state, token } => {
                let args: [&[u8]; 7] = [
                    b"EVAL",
                    RECORD.as_bytes(),
                    b"2",
                    key.as_bytes(),
                    state.as_bytes(),
                    token.as_bytes(),
                    entry.as_bytes(),
                ];
                let mut full: Vec<&[u8]> = args.to_vec();
                full.push(json.as_bytes());
                let r = command_on(pool, url, &full).map_err(|e| e.to_string())?;
                Ok(r.as_int() == Some(1))
            }
            Lease::Amqp(baton) => baton.record(entry, json),
        }
    }

    /// The entries' states recorded under the lease (`entry → JSON`), for a beat taking over.
    pub(crate) fn recorded(&self) -> Result<HashMap<String, String>, String> {
        match self {
            Lease::Memory { key, .. } => {
                let all = memory_records().lock().unwrap_or_else(|p| p.into_inner());
                Ok(all.get(key).cloned().unwrap_or_default())
            }
            Lease::Redis { url, pool, state, .. } => {
                let r = command_on(pool, url, &[b"HGETALL", state.as_bytes()]).map_err(|e| e.to_string())?;
                let items = r.texts();
                Ok(items.chunks(2).filter(|c| c.len() == 2).map(|c| (c[0].clone(), c[1].clone())).collect())
            }
            Lease::Amqp(baton) => Ok(baton.recorded()),
        }
    }

    /// Lets go (a beat stopping): the next beat takes over at once.
    pub(crate) fn release(&self) {
        match self {
            Lease::Memory { key, token } => {
                let mut all = memory_holders().lock().unwrap_or_else(|p| p.into_inner());
                if all.get(key).is_some_and(|(t, _)| t == token) {
                    all.remove(key);
                }
            }
            Lease::Redis { url, pool, key, token, .. } => {
                let del =
                    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0";
                let _ = command_on(pool, url, &[b"EVAL", del.as_bytes(), b"1", key.as_bytes(), token.as_bytes()]);
            }
            // Its connection closes when the lease is dropped: RabbitMQ hands the runs on.
            Lease::Amqp(_) => {}
        }
    }
}
