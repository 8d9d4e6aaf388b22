//! The command-line grammar (stage one of the two-stage parse): Celery's global options, which
//! go before or after the subcommand (`proj -b URL worker` as `celery -b URL worker`), and its
//! subcommands.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// celeriac: Celery-compatible task queue worker.
#[derive(Debug, Parser)]
#[command(version, about, long_about = None)]
pub struct Cli {
    /// The options every subcommand takes.
    #[command(flatten)]
    pub global: GlobalArgs,
    /// What to run.
    #[command(subcommand)]
    pub command: Command,
}

/// `celery`'s global options.
#[derive(Debug, Args, Default, Clone)]
pub struct GlobalArgs {
    /// Broker URL (broker_url), e.g. redis://127.0.0.1:6379/0 or amqp://guest@localhost//.
    #[arg(short = 'b', long, global = true)]
    pub broker: Option<String>,
    /// Result backend URL (result_backend).
    #[arg(long, global = true)]
    pub result_backend: Option<String>,
    /// TOML file of Celery settings.
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
    /// Accepted for Celery's `-A proj`: the program is the app, so the name is not used.
    #[arg(short = 'A', long, global = true, value_name = "APP")]
    pub app: Option<String>,
}

impl GlobalArgs {
    /// Sets the URLs given on the command line (they win over the file and the environment).
    pub fn apply(&self, c: &mut crate::Config) {
        if let Some(b) = &self.broker {
            c.broker_url = b.clone();
        }
        if let Some(b) = &self.result_backend {
            c.result_backend = Some(b.clone());
        }
    }
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start a worker (thread-per-core shards).
    Worker(WorkerArgs),
    /// Start beat, the periodic task scheduler (`beat_schedule` from the config file).
    Beat(BeatArgs),
    /// Check the configuration (file, environment) and print the effective settings.
    Check,
    /// Ask the workers (`celery inspect`): ping, stats, registered, active, reserved,
    /// scheduled, revoked, active_queues, query_task ID…, conf, report, clock.
    Inspect(RemoteArgs),
    /// Tell the workers (`celery control`): revoke ID…, terminate SIGNAL ID…, rate_limit TASK
    /// RATE, time_limit TASK SOFT [HARD], enable_events, disable_events,
    /// add_consumer QUEUE [EXCHANGE [TYPE [KEY]]], cancel_consumer QUEUE, heartbeat, shutdown.
    Control(RemoteArgs),
    /// List the workers that answer a ping (`celery status`).
    Status(StatusArgs),
    /// Send a task by name and print its id (`celery call`).
    Call(CallArgs),
    /// Print a task's result (`celery result`).
    Result(ResultArgs),
    /// Delete every waiting message from the task queues (`celery purge`).
    Purge(PurgeArgs),
    /// Watch the cluster's events: `--dump` prints each one; without it, a live view of the
    /// workers and tasks (`celery events`).
    Events(EventsArgs),
    /// Print what a bug report needs: versions, platform and settings (`celery report`).
    Report,
}

/// How a long-running command runs: in the background, its log in a file, its pid in a file.
#[derive(Debug, Args, Default, Clone)]
pub struct DaemonArgs {
    /// Log to this file (appended) instead of stderr.
    #[arg(short = 'f', long)]
    pub logfile: Option<PathBuf>,
    /// Write the process id here; refuse to start while a live process holds it.
    #[arg(long)]
    pub pidfile: Option<PathBuf>,
    /// Run in the background (detached from the terminal, in a session of its own).
    #[arg(short = 'D', long)]
    pub detach: bool,
    /// Log level: debug, info, warning, error, critical.
    #[arg(short = 'l', long, default_value = "warning")]
    pub loglevel: String,
}

/// `celery worker`'s options that celeriac honours (and the ones it accepts with a note).
#[derive(Debug, Args)]
pub struct WorkerArgs {
    /// Queues to consume, comma-separated.
    #[arg(short = 'Q', long)]
    pub queues: Option<String>,
    /// Queues of task_queues not to consume, comma-separated.
    #[arg(short = 'X', long)]
    pub exclude_queues: Option<String>,
    /// At most this many task bodies run at once (default: the usable CPUs).
    #[arg(short = 'c', long)]
    pub concurrency: Option<usize>,
    /// Shards: threads pinned to a CPU each, over which the concurrency is split (default: the
    /// usable CPUs, at most the concurrency).
    #[arg(long)]
    pub shards: Option<usize>,
    /// Pool: `solo` runs one body at a time on one shard; prefork, threads, gevent, eventlet
    /// and custom are accepted and run as shards (bodies run in the worker's own threads).
    #[arg(short = 'P', long)]
    pub pool: Option<String>,
    /// Node name; %h, %n and %d expand as in Celery.
    #[arg(short = 'n', long)]
    pub hostname: Option<String>,
    /// worker_prefetch_multiplier: deliveries reserved per body that may run.
    #[arg(long)]
    pub prefetch_multiplier: Option<u32>,
    /// task_time_limit: a body is stopped after this many seconds.
    #[arg(long)]
    pub time_limit: Option<f64>,
    /// task_soft_time_limit: a body is told to stop after this many seconds.
    #[arg(long)]
    pub soft_time_limit: Option<f64>,
    /// Delete every waiting message from the queues before starting (Celery's --purge).
    #[arg(long, alias = "discard")]
    pub purge: bool,
    /// File that keeps revoked task ids across restarts (worker_state_db).
    #[arg(short = 'S', long)]
    pub statedb: Option<String>,
    /// Send task events (`worker_send_task_events`), for `celery events` and Flower.
    #[arg(short = 'E', long = "task-events")]
    pub task_events: bool,
    /// Send no worker events (worker-online, heartbeats, worker-offline).
    #[arg(long)]
    pub without_heartbeat: bool,
    /// Do not follow the other workers' events (Celery's gossip: clock, peers, elections).
    #[arg(long)]
    pub without_gossip: bool,
    /// Do not ask the running workers for their revoked task ids at start (Celery's mingle).
    #[arg(long)]
    pub without_mingle: bool,
    /// Disable cross-shard work stealing.
    #[arg(long)]
    pub without_stealing: bool,
    /// Also run beat in this worker (Celery's `-B`).
    #[arg(short = 'B', long)]
    pub beat: bool,
    /// Beat's state file, with `-B` (Celery's `-s/--schedule`).
    #[arg(short = 's', long = "schedule")]
    pub schedule_file: Option<PathBuf>,
    /// Each shard polls this many µs for new work before it parks (lower latency, busier
    /// cores; for workers on cores of their own).
    #[arg(long, value_name = "US")]
    pub busy_poll_us: Option<u64>,
    /// Accepted as Celery's (`fair` is how celeriac always hands out work).
    #[arg(short = 'O', value_name = "PROFILE")]
    pub optimization: Option<String>,
    /// Accepted with a note: there are no child processes to recycle.
    #[arg(long, value_name = "N")]
    pub max_tasks_per_child: Option<u64>,
    /// Accepted with a note: there are no child processes to recycle.
    #[arg(long, value_name = "KIB")]
    pub max_memory_per_child: Option<u64>,
    /// Accepted with a note: the concurrency does not grow or shrink; the maximum is used.
    #[arg(long, value_name = "MAX,MIN")]
    pub autoscale: Option<String>,
    /// Logging, pid file, background.
    #[command(flatten)]
    pub daemon: DaemonArgs,
}

/// `celery beat`'s options that celeriac honours.
#[derive(Debug, Args)]
pub struct BeatArgs {
    /// File that keeps each entry's last run across restarts.
    #[arg(short = 's', long = "schedule")]
    pub schedule_file: Option<PathBuf>,
    /// beat_max_loop_interval: the longest beat sleeps (seconds).
    #[arg(long)]
    pub max_interval: Option<f64>,
    /// Logging, pid file, background.
    #[command(flatten)]
    pub daemon: DaemonArgs,
}

/// Who is asked and how replies are waited for and printed (`inspect`, `control`, `status`).
#[derive(Debug, Args)]
pub struct AskArgs {
    /// Only these nodes, comma-separated.
    #[arg(short = 'd', long)]
    pub destination: Option<String>,
    /// Seconds to wait for replies.
    #[arg(short = 't', long, default_value_t = 1.0)]
    pub timeout: f64,
    /// Print the replies as one JSON object by node name.
    #[arg(short = 'j', long)]
    pub json: bool,
}

/// Options of `inspect` and `control`.
#[derive(Debug, Args)]
pub struct RemoteArgs {
    /// The command, then its arguments.
    #[arg(required = true, num_args = 1..)]
    pub words: Vec<String>,
    /// Nodes, timeout, output.
    #[command(flatten)]
    pub ask: AskArgs,
    /// With `revoke`: also stop the task if it runs.
    #[arg(long)]
    pub terminate: bool,
    /// With `revoke --terminate`: the signal name reported.
    #[arg(long)]
    pub signal: Option<String>,
}

/// Options of `status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Nodes, timeout, output.
    #[command(flatten)]
    pub ask: AskArgs,
}

/// Options of `call`.
#[derive(Debug, Args)]
pub struct CallArgs {
    /// The task name (need not be registered here).
    pub name: String,
    /// Positional arguments, a JSON list.
    #[arg(short = 'a', long, default_value = "[]")]
    pub args: String,
    /// Keyword arguments, a JSON object.
    #[arg(short = 'k', long, default_value = "{}")]
    pub kwargs: String,
    /// Run no sooner than this many seconds from now.
    #[arg(long)]
    pub countdown: Option<f64>,
    /// Run no sooner than this moment (ISO 8601).
    #[arg(long)]
    pub eta: Option<String>,
    /// Expire after this many seconds.
    #[arg(long)]
    pub expires: Option<f64>,
    /// The queue to send it to.
    #[arg(long)]
    pub queue: Option<String>,
    /// The exchange to send it to.
    #[arg(long)]
    pub exchange: Option<String>,
    /// The routing key to send it with.
    #[arg(long)]
    pub routing_key: Option<String>,
}

/// Options of `result`.
#[derive(Debug, Args)]
pub struct ResultArgs {
    /// The task id.
    pub task_id: String,
    /// Print the traceback of a failure instead of re-raising it.
    #[arg(long)]
    pub traceback: bool,
    /// Give up after this many seconds (Celery waits for ever).
    #[arg(long)]
    pub timeout: Option<f64>,
}

/// Options of `purge`.
#[derive(Debug, Args)]
pub struct PurgeArgs {
    /// Do not ask for confirmation.
    #[arg(short = 'f', long)]
    pub force: bool,
    /// Only these queues, comma-separated (default: the task queues of the settings).
    #[arg(short = 'Q', long)]
    pub queues: Option<String>,
    /// Not these queues, comma-separated.
    #[arg(short = 'X', long)]
    pub exclude_queues: Option<String>,
}

/// Options of `events`.
#[derive(Debug, Args)]
pub struct EventsArgs {
    /// Print every event as it comes, one line each.
    #[arg(short = 'd', long)]
    pub dump: bool,
    /// Print events as JSON lines (with --dump).
    #[arg(short = 'j', long)]
    pub json: bool,
    /// Stop after this many seconds (default: until interrupted).
    #[arg(long)]
    pub duration: Option<f64>,
    /// Seconds between two redraws of the live view.
    #[arg(short = 'F', long, default_value_t = 1.0)]
    pub frequency: f64,
}
