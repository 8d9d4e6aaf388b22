//! The command-line grammar (stage one of the two-stage parse).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// celeriac: Celery-compatible task queue worker.
#[derive(Debug, Parser)]
#[command(version, about, long_about = None)]
pub struct Cli {
    /// What to run.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start a worker (thread-per-core shards).
    Worker(WorkerArgs),
    /// Start beat, the periodic task scheduler (`beat_schedule` from the config file).
    Beat(BeatArgs),
    /// Check the configuration (file, environment) and print the effective settings.
    Check {
        /// TOML file of Celery settings.
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

/// `celery worker`'s options that celeriac honours.
#[derive(Debug, Args)]
pub struct WorkerArgs {
    /// Broker URL (broker_url), e.g. memory://
    #[arg(short = 'b', long)]
    pub broker: Option<String>,
    /// Result backend URL (result_backend).
    #[arg(long)]
    pub result_backend: Option<String>,
    /// Queues to consume, comma-separated.
    #[arg(short = 'Q', long)]
    pub queues: Option<String>,
    /// Number of shards (one per CPU by default).
    #[arg(short = 'c', long)]
    pub concurrency: Option<usize>,
    /// Node name; %h, %n and %d expand as in Celery.
    #[arg(short = 'n', long)]
    pub hostname: Option<String>,
    /// Log level: debug, info, warning, error, critical.
    #[arg(short = 'l', long, default_value = "warning")]
    pub loglevel: String,
    /// worker_prefetch_multiplier.
    #[arg(long)]
    pub prefetch_multiplier: Option<u32>,
    /// TOML file of Celery settings.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// File that keeps revoked task ids across restarts (worker_state_db).
    #[arg(short = 'S', long)]
    pub statedb: Option<String>,
    /// Send task events (`worker_send_task_events`), for `celery events` and Flower.
    #[arg(short = 'E', long = "task-events")]
    pub task_events: bool,
    /// Send no worker events (worker-online, heartbeats, worker-offline).
    #[arg(long)]
    pub without_heartbeat: bool,
    /// Accepted as Celery's: celeriac does not listen to other workers' events.
    #[arg(long)]
    pub without_gossip: bool,
    /// Accepted as Celery's: celeriac does not ask its peers for revoked ids at start (it answers
    /// their `hello`).
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
}

/// `celery beat`'s options that celeriac honours.
#[derive(Debug, Args)]
pub struct BeatArgs {
    /// Broker URL (broker_url).
    #[arg(short = 'b', long)]
    pub broker: Option<String>,
    /// TOML file of Celery settings, `beat_schedule` included.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// File that keeps each entry's last run across restarts.
    #[arg(short = 's', long = "schedule")]
    pub schedule_file: Option<PathBuf>,
    /// Log level: debug, info, warning, error, critical.
    #[arg(short = 'l', long, default_value = "warning")]
    pub loglevel: String,
    /// beat_max_loop_interval: the longest beat sleeps (seconds).
    #[arg(long)]
    pub max_interval: Option<f64>,
}
