//! Configuration with Celery's setting names, from code, a TOML file and the environment
//! variables Celery reads. Everything is checked once, at start ([`Config::validate`]), so a bad
//! URL or setting fails with a message a person understands instead of at the first task.

mod amqp_url;
mod beat;
mod rate_limit;
mod redis_url;

pub use amqp_url::AmqpUrl;
pub use beat::{BeatEntrySpec, CrontabSpec, SolarSpec};
pub use rate_limit::RateLimit;
pub use redis_url::{RedisAddr, RedisUrl, TlsOptions};

use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::protocol::{Accept, Compression, ContentType};

/// A broker or result-backend URL, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Url {
    /// `memory://`: in-process, no server (the embedded default).
    Memory,
    /// `redis://`, `redis+socket://`.
    Redis(RedisUrl),
    /// `amqp://`, `amqps://`, `pyamqp://`, `librabbitmq://`: RabbitMQ.
    Amqp(AmqpUrl),
    /// `rpc://` (results only): replies to each client's own queue on the AMQP broker.
    Rpc,
}

impl Url {
    /// Parses a broker URL (`what` = "broker_url") or result-backend URL ("result_backend").
    pub fn parse(what: &'static str, url: &str) -> Result<Self, ConfigError> {
        let scheme = url.split_once("://").map(|(s, _)| s).ok_or_else(|| ConfigError::Url {
            setting: what,
            url: url.to_owned(),
            reason: "expected scheme://… (for example memory://)".into(),
        })?;
        match scheme {
            "memory" => Ok(Url::Memory),
            "redis" | "rediss" | "redis+socket" | "unix" => RedisUrl::parse(url)
                .map(Url::Redis)
                .map_err(|reason| ConfigError::Url { setting: what, url: url.to_owned(), reason }),
            "amqp" | "amqps" | "pyamqp" | "librabbitmq" => AmqpUrl::parse(url)
                .map(Url::Amqp)
                .map_err(|reason| ConfigError::Url { setting: what, url: url.to_owned(), reason }),
            "rpc" => Ok(Url::Rpc),
            other => Err(ConfigError::Url {
                setting: what,
                url: url.to_owned(),
                reason: format!("unknown scheme {other:?}; celeriac knows memory://, redis:// and amqp://"),
            }),
        }
    }
}

/// One `task_routes` entry: tasks whose name matches `pattern` (exact, or a glob with `*`) go to
/// `queue`, optionally through an exchange, with a routing key and a priority.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskRoute {
    /// A task name or glob (`*`, `?`) the route applies to.
    pub pattern: String,
    /// The queue matching tasks go to.
    pub queue: String,
    /// The exchange to publish to; the default (`""`) delivers by routing key.
    #[serde(default)]
    pub exchange: Option<String>,
    /// Default: the queue's name.
    #[serde(default)]
    pub routing_key: Option<String>,
    /// The message priority for matching tasks, unless the call sets one.
    #[serde(default)]
    pub priority: Option<u8>,
}

/// One `task_queues` entry: Celery's `Queue(name, Exchange(exchange, type), routing_key)`, with
/// `x-queue-type` from `queue_type`. Queues not listed are declared as Celery creates missing
/// ones: a direct exchange of their name, bound with their name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueSpec {
    /// The queue's name.
    pub name: String,
    /// Its exchange (default: the queue's name).
    #[serde(default)]
    pub exchange: Option<String>,
    /// `direct` (default), `topic` or `fanout`.
    #[serde(default = "direct")]
    pub exchange_type: String,
    /// The binding key (default: the queue's name).
    #[serde(default)]
    pub routing_key: Option<String>,
    /// `classic` or `quorum` (default: `task_default_queue_type`).
    #[serde(default)]
    pub queue_type: Option<String>,
}

fn direct() -> String {
    "direct".into()
}

impl QueueSpec {
    /// The spec Celery gives a queue it creates (`task_create_missing_queues`).
    pub fn missing(name: &str) -> QueueSpec {
        QueueSpec { name: name.into(), exchange: None, exchange_type: direct(), routing_key: None, queue_type: None }
    }

    /// The exchange's name.
    pub fn exchange_name(&self) -> &str {
        self.exchange.as_deref().unwrap_or(&self.name)
    }

    /// The binding key.
    pub fn key(&self) -> &str {
        self.routing_key.as_deref().unwrap_or(&self.name)
    }
}

/// Celery settings celeriac honours. Field names are Celery's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// `broker_url`: `memory://`, `redis://…`, `rediss://…`, `redis+socket://…`, `amqp://…`.
    pub broker_url: String,
    /// `None`: results disabled (Celery's default).
    pub result_backend: Option<String>,
    /// `task_serializer`: `json` (default), `msgpack`, `yaml`.
    pub task_serializer: String,
    /// `result_serializer`: how results are stored (default `json`).
    pub result_serializer: String,
    /// `accept_content`: content types a worker accepts (default `["json"]`).
    pub accept_content: Vec<String>,
    /// `gzip`, `bzip2`, `lzma`, `zstd`, `brotli`, or none.
    pub task_compression: Option<String>,
    /// `task_default_queue` (default `celery`).
    pub task_default_queue: String,
    /// `task_routes`: routes by task name, first match wins.
    pub task_routes: Vec<TaskRoute>,
    /// `task_ignore_result`: store no results unless a task asks for them.
    pub task_ignore_result: bool,
    /// `task_acks_late`: ack after the task ran instead of before.
    pub task_acks_late: bool,
    /// With acks_late: ack a task that failed or timed out (else reject it, a timeout requeued).
    pub task_acks_on_failure_or_timeout: bool,
    /// With acks_late: requeue a task the worker lost (cold shutdown while it ran).
    pub task_reject_on_worker_lost: bool,
    /// Store STARTED when a task starts.
    pub task_track_started: bool,
    /// Hard time limit in seconds for every task (a task's own `time_limit` or the message's
    /// `timelimit` header wins).
    pub task_time_limit: Option<f64>,
    /// Soft time limit in seconds for every task.
    pub task_soft_time_limit: Option<f64>,
    /// Rate limit of tasks that set none (`"10/s"`).
    pub task_default_rate_limit: Option<String>,
    /// Ignore every rate limit.
    pub worker_disable_rate_limits: bool,
    /// ETA/countdown tasks a worker holds at most before they count against prefetch.
    pub worker_eta_task_limit: Option<usize>,
    /// File that keeps the revoked-task set across restarts (`--statedb`).
    pub worker_state_db: Option<String>,
    /// Send task events (`-E`; the `enable_events` command turns them on at run time).
    pub worker_send_task_events: bool,
    /// The client sends a `task-sent` event for every task it publishes.
    pub task_send_sent_event: bool,
    /// Seconds results are kept; 0 keeps them forever.
    pub result_expires: u64,
    /// `result_extended`: store name, args, kwargs, worker, retries and queue with results.
    pub result_extended: bool,
    /// `worker_prefetch_multiplier`: messages reserved per concurrency slot (default 4).
    pub worker_prefetch_multiplier: u32,
    /// Shards; `None` = the CPUs this process may use.
    pub worker_concurrency: Option<usize>,
    /// Attempts to reach the broker and the result store at a worker's start before it gives
    /// up (Celery's default 100; the delay doubles from 0.5 s up to 8 s).
    pub broker_connection_max_retries: u32,
    /// The largest message body a worker accepts after decompression, in bytes (0: no limit).
    /// A body that would inflate past it is rejected, not inflated: a 1 MB zlib bomb must not
    /// take the worker to a GiB. celeriac's own setting; default 64 MiB.
    pub worker_max_body_size: usize,
    /// `timezone` (default `UTC`).
    pub timezone: String,
    /// `enable_utc` (default true).
    pub enable_utc: bool,
    /// kombu transport options for the broker, as written (Redis: `visibility_timeout`,
    /// `global_keyprefix`, `priority_steps`, …): the broker's transport reads and checks them
    /// when the app is built, so each transport takes its own.
    pub broker_transport_options: Map<String, Value>,
    /// `broker_use_ssl`: `true`, or a table of `ca_certs`, `certfile`, `keyfile` and `cert_reqs`
    /// (`required`/`none`), turns TLS on for an `amqp://` broker (kombu's `ssl` argument; the
    /// port stays the URL's).
    pub broker_use_ssl: Option<Value>,
    /// `broker_login_method`: how to log in to RabbitMQ; celeriac speaks `PLAIN`.
    pub broker_login_method: Option<String>,
    /// `result_persistent`: rpc:// results are sent persistent (delivery mode 2).
    pub result_persistent: bool,
    /// `task_queue_max_priority`: AMQP queues are declared with this `x-max-priority`.
    pub task_queue_max_priority: Option<u8>,
    /// `task_default_queue_type`: `classic` (default) or `quorum`, for AMQP queues.
    pub task_default_queue_type: String,
    /// `task_queues`: the queues a worker consumes (unless `-Q` picks some) and how each is
    /// declared on AMQP; tasks routed to one are published to its exchange with its key.
    pub task_queues: Vec<QueueSpec>,
    /// `broker_native_delayed_delivery_queue_type`: the type of the `celery_delayed_*` queues
    /// (`quorum` by default, as in Celery).
    pub broker_native_delayed_delivery_queue_type: String,
    /// Result backend options; Redis honours `global_keyprefix`.
    pub result_backend_transport_options: ResultTransportOptions,
    /// `beat_schedule`: the periodic tasks beat sends, by entry name.
    pub beat_schedule: std::collections::BTreeMap<String, BeatEntrySpec>,
    /// `beat_max_loop_interval`: the longest beat sleeps between looks at its schedule (s).
    pub beat_max_loop_interval: f64,
}

/// `result_backend_transport_options`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ResultTransportOptions {
    /// `global_keyprefix` in `broker_transport_options`/`result_backend_transport_options`: a prefix for every key.
    pub global_keyprefix: String,
}

impl ResultTransportOptions {
    /// The key prefix as Celery applies it: `_` appended unless it already ends in one of `:_-.`.
    pub fn key_prefix(&self) -> String {
        let p = &self.global_keyprefix;
        if p.is_empty() || p.ends_with([':', '_', '-', '.']) {
            p.clone()
        } else {
            format!("{p}_")
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            broker_url: "memory://".into(),
            result_backend: None,
            task_serializer: "json".into(),
            result_serializer: "json".into(),
            accept_content: vec!["json".into()],
            task_compression: None,
            task_default_queue: "celery".into(),
            task_routes: Vec::new(),
            task_ignore_result: false,
            task_acks_late: false,
            task_acks_on_failure_or_timeout: true,
            task_reject_on_worker_lost: false,
            task_track_started: false,
            task_time_limit: None,
            task_soft_time_limit: None,
            task_default_rate_limit: None,
            worker_disable_rate_limits: false,
            worker_eta_task_limit: None,
            worker_state_db: None,
            worker_send_task_events: false,
            task_send_sent_event: false,
            result_expires: 86_400,
            result_extended: false,
            worker_prefetch_multiplier: 4,
            worker_concurrency: None,
            broker_connection_max_retries: 100,
            worker_max_body_size: crate::protocol::DEFAULT_MAX_BODY,
            timezone: "UTC".into(),
            enable_utc: true,
            broker_transport_options: Map::new(),
            broker_use_ssl: None,
            broker_login_method: None,
            result_persistent: false,
            task_queue_max_priority: None,
            task_default_queue_type: "classic".into(),
            task_queues: Vec::new(),
            broker_native_delayed_delivery_queue_type: "quorum".into(),
            result_backend_transport_options: ResultTransportOptions::default(),
            beat_schedule: Default::default(),
            beat_max_loop_interval: 300.0,
        }
    }
}

/// A setting that cannot work, named.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A URL setting that does not parse or names an unknown scheme.
    #[error("{setting} = {url:?}: {reason}")]
    Url {
        /// The setting's name.
        setting: &'static str,
        /// The URL as given (passwords hidden).
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A setting whose value cannot work.
    #[error("{setting}: {reason}")]
    Invalid {
        /// The setting's name.
        setting: &'static str,
        /// What is wrong with its value.
        reason: String,
    },
    /// A config file that cannot be read or parsed.
    #[error("cannot read config file {path}: {reason}")]
    File {
        /// The file.
        path: String,
        /// Why it cannot be read.
        reason: String,
    },
}

/// The checked, ready-to-use form of [`Config`].
#[derive(Debug, Clone)]
pub struct Settings {
    /// The broker URL.
    pub broker: Url,
    /// The result backend URL, if results are kept.
    pub backend: Option<Url>,
    /// How task messages are serialized.
    pub task_serializer: ContentType,
    /// How results are serialized.
    pub result_serializer: ContentType,
    /// What a worker accepts.
    pub accept: Accept,
    /// How task bodies are compressed, if at all.
    pub compression: Option<Compression>,
    /// How long results are kept (`result_expires`; `None`: for ever).
    pub result_expires: Option<Duration>,
}

impl Config {
    /// Applies the settings a TOML file names over this configuration (keys it does not name
    /// keep their current values); unknown keys are errors.
    pub fn merge_toml_file(&self, path: &Path) -> Result<Self, ConfigError> {
        let file_err = |reason: String| ConfigError::File { path: path.display().to_string(), reason };
        let text = std::fs::read_to_string(path).map_err(|e| file_err(e.to_string()))?;
        let overlay: toml::Table = text.parse().map_err(|e: toml::de::Error| file_err(e.to_string()))?;
        let mut base = toml::Table::try_from(self).map_err(|e| file_err(e.to_string()))?;
        merge(&mut base, overlay);
        base.try_into().map_err(|e: toml::de::Error| file_err(e.to_string()))
    }

    /// Parses TOML text.
    pub fn from_toml_str(text: &str) -> Result<Self, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::File { path: "<string>".into(), reason: e.to_string() })
    }

    /// Applies the environment variables Celery reads: `CELERY_BROKER_URL`, `CELERY_RESULT_BACKEND`.
    pub fn apply_env(&mut self) {
        self.apply_env_from(|k| std::env::var(k).ok());
    }

    fn apply_env_from(&mut self, get: impl Fn(&str) -> Option<String>) {
        if let Some(v) = get("CELERY_BROKER_URL").filter(|v| !v.is_empty()) {
            self.broker_url = v;
        }
        if let Some(v) = get("CELERY_RESULT_BACKEND").filter(|v| !v.is_empty()) {
            self.result_backend = Some(v);
        }
    }

    /// `broker_use_ssl` and `broker_login_method` on an AMQP broker URL.
    fn apply_amqp_settings(&self, u: &mut AmqpUrl) -> Result<(), ConfigError> {
        let invalid = |setting: &'static str, reason: String| ConfigError::Invalid { setting, reason };
        match self.broker_login_method.as_deref() {
            None | Some("PLAIN") => {}
            Some(other) => {
                return Err(invalid(
                    "broker_login_method",
                    format!("{other:?}: celeriac logs in to RabbitMQ with PLAIN (RabbitMQ's default)"),
                ))
            }
        }
        match &self.broker_use_ssl {
            None | Some(Value::Bool(false)) => {}
            Some(Value::Bool(true)) => {
                u.tls.get_or_insert(TlsOptions { verify: true, ..TlsOptions::default() });
            }
            Some(Value::Object(m)) => {
                let mut t = u.tls.clone().unwrap_or(TlsOptions { verify: true, ..TlsOptions::default() });
                for (k, v) in m {
                    let text = v.as_str().map(str::to_owned).unwrap_or_else(|| v.to_string());
                    match k.as_str() {
                        "ca_certs" => t.ca_certs = Some(text),
                        "certfile" => t.certfile = Some(text),
                        "keyfile" => t.keyfile = Some(text),
                        "cert_reqs" => {
                            t.verify = match text.to_ascii_lowercase().as_str() {
                                "required" | "cert_required" | "optional" | "cert_optional" | "2" | "1" => true,
                                "none" | "cert_none" | "0" => false,
                                other => return Err(invalid("broker_use_ssl", format!("cert_reqs = {other:?}"))),
                            }
                        }
                        other => return Err(invalid("broker_use_ssl", format!("{other:?} is not a TLS option"))),
                    }
                }
                u.tls = Some(t);
            }
            Some(other) => return Err(invalid("broker_use_ssl", format!("{other}: expected true or a table"))),
        }
        Ok(())
    }

    /// Checks every setting and resolves names to types.
    pub fn validate(&self) -> Result<Settings, ConfigError> {
        let serializer = |setting: &'static str, name: &str| {
            ContentType::from_name(name).map_err(|e| ConfigError::Invalid { setting, reason: e.to_string() })
        };
        if self.worker_prefetch_multiplier == 0 {
            return Err(ConfigError::Invalid {
                setting: "worker_prefetch_multiplier",
                reason: "must be at least 1".into(),
            });
        }
        if self.worker_concurrency == Some(0) {
            return Err(ConfigError::Invalid { setting: "worker_concurrency", reason: "must be at least 1".into() });
        }
        if self.task_default_queue.is_empty() {
            return Err(ConfigError::Invalid { setting: "task_default_queue", reason: "must not be empty".into() });
        }
        if !self.enable_utc && self.timezone != "UTC" {
            return Err(ConfigError::Invalid {
                setting: "timezone",
                reason: "celeriac keeps all times in UTC; only timezone = \"UTC\" is supported".into(),
            });
        }
        for r in &self.task_routes {
            if r.queue.is_empty() {
                return Err(ConfigError::Invalid {
                    setting: "task_routes",
                    reason: format!("route {:?} has an empty queue", r.pattern),
                });
            }
        }
        for (setting, limit) in
            [("task_time_limit", self.task_time_limit), ("task_soft_time_limit", self.task_soft_time_limit)]
        {
            if limit.is_some_and(|l| !(l.is_finite() && l > 0.0)) {
                return Err(ConfigError::Invalid { setting, reason: "must be a positive number of seconds".into() });
            }
        }
        if let Some(r) = &self.task_default_rate_limit {
            RateLimit::parse(r)
                .map_err(|reason| ConfigError::Invalid { setting: "task_default_rate_limit", reason })?;
        }
        if self.worker_eta_task_limit == Some(0) {
            return Err(ConfigError::Invalid { setting: "worker_eta_task_limit", reason: "must be at least 1".into() });
        }
        let mut broker = Url::parse("broker_url", &self.broker_url)?;
        if let Url::Amqp(u) = &mut broker {
            self.apply_amqp_settings(u)?;
        }
        Ok(Settings {
            broker,
            backend: self.result_backend.as_deref().map(|u| Url::parse("result_backend", u)).transpose()?,
            task_serializer: serializer("task_serializer", &self.task_serializer)?,
            result_serializer: serializer("result_serializer", &self.result_serializer)?,
            accept: Accept::from_names(&self.accept_content)
                .map_err(|e| ConfigError::Invalid { setting: "accept_content", reason: e.to_string() })?
                .max_body(self.worker_max_body_size),
            compression: self
                .task_compression
                .as_deref()
                .map(Compression::from_name)
                .transpose()
                .map_err(|e| ConfigError::Invalid { setting: "task_compression", reason: e.to_string() })?,
            result_expires: (self.result_expires > 0).then(|| Duration::from_secs(self.result_expires)),
        })
    }
}

fn merge(base: &mut toml::Table, overlay: toml::Table) {
    for (k, v) in overlay {
        match (base.get_mut(&k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_queues_from_toml_as_the_readme_shows() {
        let c = Config::from_toml_str(
            r#"
            broker_url = "amqp://guest:guest@127.0.0.1:5672//"
            result_backend = "rpc://"
            [[task_queues]]
            name = "celery"
            exchange_type = "topic"
            queue_type = "quorum"
            "#,
        )
        .unwrap();
        assert!(c.validate().is_ok());
        let q = &c.task_queues[0];
        assert_eq!((q.exchange_name(), q.key(), q.exchange_type.as_str()), ("celery", "celery", "topic"));
        assert_eq!(q.queue_type.as_deref(), Some("quorum"));
    }

    #[test]
    fn broker_use_ssl_and_login_method_on_amqp() {
        let c = Config::from_toml_str(
            r#"
            broker_url = "amqp://h:5671//"
            [broker_use_ssl]
            ca_certs = "/ca.pem"
            cert_reqs = "required"
            "#,
        )
        .unwrap();
        let Url::Amqp(u) = c.validate().unwrap().broker else { panic!("amqp") };
        assert_eq!(u.tls.map(|t| (t.verify, t.ca_certs)), Some((true, Some("/ca.pem".into()))));
        let c = Config {
            broker_url: "amqp://h//".into(),
            broker_login_method: Some("EXTERNAL".into()),
            ..Config::default()
        };
        assert!(c.validate().unwrap_err().to_string().contains("PLAIN"));
        let c = Config { broker_url: "amqp://h//".into(), broker_use_ssl: Some(Value::from(3)), ..Config::default() };
        assert!(c.validate().unwrap_err().to_string().contains("broker_use_ssl"));
    }

    #[test]
    fn toml_env_and_defaults() {
        let mut c = Config::from_toml_str(
            r#"
            broker_url = "memory://"
            task_acks_late = true
            worker_prefetch_multiplier = 8
            [[task_routes]]
            pattern = "proj.tasks.*"
            queue = "hipri"
            "#,
        )
        .unwrap();
        assert!(c.task_acks_late);
        assert_eq!(c.task_routes[0].queue, "hipri");
        assert_eq!(c.task_default_queue, "celery");
        c.apply_env_from(|k| (k == "CELERY_RESULT_BACKEND").then(|| "memory://".to_owned()));
        assert_eq!(c.result_backend.as_deref(), Some("memory://"));
        c.validate().unwrap();
    }

    #[test]
    fn mistakes_are_named() {
        let err = Config::from_toml_str("broker_ulr = \"memory://\"").unwrap_err().to_string();
        assert!(err.contains("broker_ulr"), "{err}");
        let c = Config { broker_url: "memroy://".into(), ..Config::default() };
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains("broker_url") && err.contains("memroy"), "{err}");
        let c = Config { broker_url: "redis://localhost:notaport".into(), ..Config::default() };
        assert!(c.validate().unwrap_err().to_string().contains("port"));
        let c = Config { broker_url: "localhost".into(), ..Config::default() };
        assert!(c.validate().unwrap_err().to_string().contains("scheme://"));
        let c = Config { task_serializer: "jsn".into(), ..Config::default() };
        assert!(c.validate().unwrap_err().to_string().contains("task_serializer"));
        let c = Config { task_compression: Some("snappy".into()), ..Config::default() };
        assert!(c.validate().unwrap_err().to_string().contains("snappy"));
    }
}
