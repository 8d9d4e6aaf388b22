//! Layer 7: the `App` builder that ties configuration, tasks and the runtime together.

use std::any::{Any, TypeId};
use std::path::Path;
use std::sync::Arc;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::backend::{Backend, MemoryBackend, RedisBackend};
use crate::client::{AsyncResult, Client, Router, SendOptions, TaskRef, TypedResult};
use crate::config::{Config, Settings, Url};
use crate::task::{Handler, Registry, StateFactory, TaskEntry, TaskOptions};
use crate::transport::{Broker, MemoryBroker, RedisBroker};
use crate::worker::{Hooks, Signal, WorkerBuilder};
use crate::{Error, Result};

/// A celeriac application: its configuration, its tasks, a client, and a worker on demand.
/// Cheap to clone.
///
/// ```
/// use std::time::Duration;
///
/// fn add(x: i64, y: i64) -> i64 {
///     x + y
/// }
///
/// # fn main() -> celeriac::Result<()> {
/// // memory://: broker (the default) and results in this process, no servers.
/// let app = celeriac::App::builder("proj").result_backend("memory://").task("proj.tasks.add", ["x", "y"], add).build()?;
/// let worker = app.worker().concurrency(2).start()?;
/// let r = app.send_task("proj.tasks.add", (2, 3))?;
/// assert_eq!(r.get::<i64>(Duration::from_secs(5))?, 5);
/// worker.shutdown();
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct App {
    inner: Arc<AppInner>,
}

struct AppInner {
    name: String,
    config: Config,
    settings: Settings,
    registry: Arc<Registry>,
    client: Client,
    state_factories: Vec<(TypeId, StateFactory)>,
    hooks: Hooks,
}

/// A change of settings made in code.
type ConfigOverride = Box<dyn FnOnce(&mut Config)>;

/// Builds an [`App`]. Every mistake (bad URL, unknown setting, duplicate task, parameter names
/// that do not match the function) is reported by [`AppBuilder::build`].
pub struct AppBuilder {
    name: String,
    config: Config,
    config_file: Option<std::path::PathBuf>,
    overrides: Vec<ConfigOverride>,
    use_env: bool,
    tasks: Vec<std::result::Result<TaskEntry, String>>,
    state_factories: Vec<(TypeId, StateFactory)>,
    hooks: Hooks,
}

impl App {
    /// Starts building an app named `name` (shown in the banner).
    pub fn builder(name: &str) -> AppBuilder {
        AppBuilder {
            name: name.to_owned(),
            config: Config::default(),
            config_file: None,
            overrides: Vec::new(),
            use_env: true,
            tasks: Vec::new(),
            state_factories: Vec::new(),
            hooks: Hooks::default(),
        }
    }

    /// The app's name (Celery's `main`), used in worker host names.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// A beat for this app's `beat_schedule` (Celery's `celery beat`).
    pub fn beat(&self) -> crate::beat::BeatBuilder {
        crate::beat::BeatBuilder::new(&self.inner.name, &self.inner.config, &self.inner.settings.broker, self.client())
    }

    /// The effective configuration.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// The registered tasks.
    pub fn registry(&self) -> &Registry {
        &self.inner.registry
    }

    /// A client handle (`Send + Sync`, cheap to clone).
    pub fn client(&self) -> Client {
        self.inner.client.clone()
    }

    /// Sends task `name` with positional `args`.
    pub fn send_task(&self, name: &str, args: impl Serialize) -> Result<AsyncResult> {
        self.inner.client.send_task(name, args)
    }

    /// Sends task `name` with args, kwargs and options.
    pub fn send_task_with(
        &self,
        name: &str,
        args: impl Serialize,
        kwargs: Map<String, Value>,
        options: &SendOptions,
    ) -> Result<AsyncResult> {
        self.inner.client.send_task_with(name, args, kwargs, options)
    }

    /// `task.delay(*args)` through a typed handle.
    pub fn delay<A: Serialize, R>(&self, task: &TaskRef<A, R>, args: A) -> Result<TypedResult<R>> {
        self.inner.client.delay(task, args)
    }

    /// A worker for this app, to configure and start.
    pub fn worker(&self) -> WorkerBuilder {
        WorkerBuilder::new(
            self.inner.name.clone(),
            self.inner.registry.clone(),
            self.inner.client.clone(),
            self.inner.config.clone(),
            self.inner.settings.accept.clone(),
            self.inner.state_factories.clone(),
            self.inner.hooks.clone(),
        )
    }
}

impl AppBuilder {
    /// `broker_url`.
    pub fn broker(self, url: &str) -> Self {
        let url = url.to_owned();
        self.configure(move |c| c.broker_url = url)
    }

    /// `result_backend`.
    pub fn result_backend(self, url: &str) -> Self {
        let url = url.to_owned();
        self.configure(move |c| c.result_backend = Some(url))
    }

    /// Replaces the whole configuration in code (the file, environment and flags apply on top).
    pub fn config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    /// Reads Celery settings from a TOML file at build time.
    pub fn config_file(mut self, path: impl AsRef<Path>) -> Self {
        self.config_file = Some(path.as_ref().to_owned());
        self
    }

    /// Changes settings in code; the file, the environment and flags apply over them.
    pub fn configure(mut self, f: impl FnOnce(&mut Config) + 'static) -> Self {
        self.overrides.push(Box::new(f));
        self
    }

    /// Whether `CELERY_BROKER_URL` / `CELERY_RESULT_BACKEND` override the settings (default: yes,
    /// as in Celery).
    pub fn use_env(mut self, yes: bool) -> Self {
        self.use_env = yes;
        self
    }

    /// Registers task `name` with its positional parameter names (for keyword arguments).
    pub fn task<M, H, const N: usize>(self, name: &str, params: [&str; N], handler: H) -> Self
    where
        H: Handler<M>,
    {
        self.task_with(name, params, TaskOptions::default(), handler)
    }

    /// Connects a hook to Celery's signal points (`task_prerun`, `task_postrun`,
    /// `task_success`, `task_failure`, `task_retry`, `task_revoked`, `worker_ready`,
    /// `worker_shutdown`): match the [`Signal`] variants you care about.
    pub fn on_signal(mut self, hook: impl Fn(&Signal<'_>) + Send + Sync + 'static) -> Self {
        self.hooks.0.push(Arc::new(hook));
        self
    }

    /// Registers a task with per-task options (retries, time and rate limits, acks; see
    /// [`TaskOptions`]).
    pub fn task_with<M, H, const N: usize>(
        mut self,
        name: &str,
        params: [&str; N],
        options: TaskOptions,
        handler: H,
    ) -> Self
    where
        H: Handler<M>,
    {
        let entry = options.check(name).and_then(|()| {
            let mut e = TaskEntry::new(name, params.iter().map(|p| p.to_string()).collect(), handler)?;
            e.options = options;
            Ok(e)
        });
        self.tasks.push(entry);
        self
    }

    /// Shard-local state: `factory(shard)` runs once on each shard; tasks take it as
    /// [`ShardState<T>`](crate::ShardState).
    pub fn shard_state<T: 'static>(mut self, factory: impl Fn(usize) -> T + Send + Sync + 'static) -> Self {
        let f: StateFactory = Arc::new(move |i| Box::new(factory(i)) as Box<dyn Any>);
        self.state_factories.push((TypeId::of::<T>(), f));
        self
    }

    /// Checks everything and builds the app.
    pub fn build(self) -> Result<App> {
        self.build_with_flags(|_| {})
    }

    /// Builds with command-line flags applied last (they win over the environment).
    pub(crate) fn build_with_flags(self, flags: impl FnOnce(&mut Config)) -> Result<App> {
        // Precedence, lowest first: code, the TOML file, the environment, command-line flags.
        let mut config = self.config;
        for f in self.overrides {
            f(&mut config);
        }
        if let Some(p) = &self.config_file {
            config = config.merge_toml_file(p)?;
        }
        if self.use_env {
            config.apply_env();
        }
        flags(&mut config);
        let settings = config.validate()?;
        let mut registry = Registry::default();
        for t in self.tasks {
            registry.insert(t.map_err(Error::Registration)?).map_err(Error::Registration)?;
        }
        for b in crate::task::builtins() {
            if registry.get(&b.name).is_none() {
                registry.insert(b).map_err(Error::Registration)?;
            }
        }
        for (setting, url) in [("broker_url", Some(&settings.broker)), ("result_backend", settings.backend.as_ref())] {
            if let Some(Url::Redis(u)) = url {
                crate::transport::redis::check_tls(u).map_err(|reason| {
                    Error::Config(crate::config::ConfigError::Url { setting, url: u.redacted(), reason })
                })?;
            }
        }
        let broker = match &settings.broker {
            // The in-process broker has no options (kombu's memory transport ignores them too).
            Url::Memory => Broker::Memory(MemoryBroker::new()),
            Url::Redis(u) => {
                let opts = crate::transport::redis::TransportOptions::from_table(&config.broker_transport_options)
                    .map_err(|reason| Error::invalid("broker_transport_options", reason))?;
                Broker::Redis(RedisBroker::new(u.clone(), opts))
            }
            Url::Amqp(u) => {
                let opts = crate::transport::amqp::AmqpOptions::from_table(
                    &config.broker_transport_options,
                    config.task_queue_max_priority,
                    &config.task_default_queue_type,
                    config.task_queues.clone(),
                    &config.broker_native_delayed_delivery_queue_type,
                )
                .map_err(|reason| Error::invalid("broker_transport_options", reason))?;
                Broker::Amqp(crate::transport::amqp::AmqpBroker::new(u.clone(), opts))
            }
            Url::Rpc => {
                return Err(Error::Config(crate::config::ConfigError::Url {
                    setting: "broker_url",
                    url: "rpc://".into(),
                    reason: "rpc:// is a result backend; the broker is amqp://, redis:// or memory://".into(),
                }))
            }
        };
        let backend = match &settings.backend {
            None => Backend::Disabled,
            Some(Url::Memory) => Backend::Memory(MemoryBackend::new()),
            Some(Url::Redis(u)) => Backend::Redis(RedisBackend::new(
                u.clone(),
                config.result_backend_transport_options.key_prefix(),
                settings.result_expires,
            )),
            Some(Url::Amqp(u)) => {
                return Err(Error::Config(crate::config::ConfigError::Url {
                    setting: "result_backend",
                    url: u.redacted(),
                    reason: "the amqp:// result backend was removed in Celery 5; use rpc:// or redis://".into(),
                }))
            }
            Some(Url::Rpc) => match &settings.broker {
                Url::Amqp(u) => Backend::Rpc(crate::backend::RpcBackend::new(
                    u.clone(),
                    settings.result_expires,
                    config.result_persistent,
                )),
                _ => {
                    return Err(Error::Config(crate::config::ConfigError::Url {
                        setting: "result_backend",
                        url: "rpc://".into(),
                        reason: "rpc:// sends results over the broker and needs an amqp:// broker_url".into(),
                    }))
                }
            },
        };
        let router =
            Router::new(config.task_routes.clone(), config.task_default_queue.clone(), config.task_queues.clone());
        let mut client = Client::new(broker, backend, settings.clone(), router, config.task_ignore_result);
        if config.task_send_sent_event {
            client = client.with_sent_events();
        }
        Ok(App {
            inner: Arc::new(AppInner {
                name: self.name,
                config,
                settings,
                registry: Arc::new(registry),
                client,
                state_factories: self.state_factories,
                hooks: self.hooks,
            }),
        })
    }
}
