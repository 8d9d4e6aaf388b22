//! Celery's command line for user programs, from one call:
//!
//! ```no_run
//! fn add(x: i64, y: i64) -> i64 { x + y }
//! fn main() -> std::process::ExitCode {
//!     celeriac::cli::run(celeriac::App::builder("proj").task("proj.tasks.add", ["x", "y"], add))
//! }
//! ```
//!
//! Two-stage: clap parses the arguments into [`Cli`]; [`run`] then applies them over the
//! builder's settings (flags win over the environment, which wins over the file and code, as
//! in Celery where `-b` sets `CELERY_BROKER_URL`).

mod args;

pub use args::{BeatArgs, Cli, Command, WorkerArgs};

use std::process::ExitCode;

use clap::Parser;

use crate::AppBuilder;

/// Parses the process arguments and runs the chosen command.
pub fn run(builder: AppBuilder) -> ExitCode {
    run_with(builder, Cli::parse())
}

/// Runs an already-parsed command line.
pub fn run_with(builder: AppBuilder, cli: Cli) -> ExitCode {
    match cli.command {
        Command::Worker(args) => match worker(builder, args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("Error: {e}");
                ExitCode::from(2)
            }
        },
        Command::Beat(args) => match beat(builder, args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("Error: {e}");
                ExitCode::from(2)
            }
        },
        Command::Check { config } => {
            let builder = match config {
                Some(p) => builder.config_file(p),
                None => builder,
            };
            match builder.build() {
                Ok(app) => {
                    println!("configuration OK; {} task(s) registered", app.registry().len());
                    // The URLs as the banner shows them (passwords hidden).
                    let mut shown = app.config().clone();
                    shown.broker_url = app.client().broker().url();
                    if shown.result_backend.is_some() {
                        shown.result_backend = Some(app.client().backend().url());
                    }
                    match toml::to_string(&shown) {
                        Ok(t) => println!("{t}"),
                        Err(e) => println!("(cannot render the configuration: {e})"),
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("Error: {e}");
                    ExitCode::from(2)
                }
            }
        }
    }
}

fn bad_flag(setting: &'static str, reason: String) -> crate::Error {
    crate::Error::Config(crate::config::ConfigError::Invalid { setting, reason })
}

fn worker(builder: AppBuilder, a: WorkerArgs) -> crate::Result<()> {
    init_logging(&a.loglevel)?;
    if a.concurrency == Some(0) {
        return Err(bad_flag("--concurrency", "must be at least 1".into()));
    }
    let mut builder = builder;
    if let Some(p) = &a.config {
        builder = builder.config_file(p);
    }
    let (broker, backend, prefetch) = (a.broker.clone(), a.result_backend.clone(), a.prefetch_multiplier);
    let app = builder.build_with_flags(broker, backend, prefetch)?;
    let mut w = app.worker();
    if let Some(c) = a.concurrency {
        w = w.concurrency(c);
    }
    if let Some(q) = &a.queues {
        w = w.queues(q.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned));
    }
    if let Some(n) = &a.hostname {
        w = w.hostname(n);
    }
    if a.without_stealing {
        w = w.stealing(false);
    }
    if a.task_events {
        w = w.task_events(true);
    }
    if a.without_heartbeat {
        w = w.heartbeat(false);
    }
    if let Some(us) = a.busy_poll_us {
        w = w.busy_poll(std::time::Duration::from_micros(us));
    }
    if let Some(db) = &a.statedb {
        w = w.state_db(db);
    }
    println!("{}", w.banner());
    let handle = w.start()?;
    let beat = if a.beat {
        let b = app.beat();
        Some(
            match &a.schedule_file {
                Some(f) => b.schedule_file(f),
                None => b,
            }
            .start()?,
        )
    } else {
        None
    };
    let r = handle.run_until_signal();
    if let Some(b) = beat {
        b.stop();
    }
    r
}

fn beat(builder: AppBuilder, a: BeatArgs) -> crate::Result<()> {
    init_logging(&a.loglevel)?;
    let mut builder = builder;
    if let Some(p) = &a.config {
        builder = builder.config_file(p);
    }
    if let Some(m) = a.max_interval {
        builder = builder.configure(move |c| c.beat_max_loop_interval = m);
    }
    let app = builder.build_with_flags(a.broker.clone(), None, None)?;
    let b = app.beat();
    let b = match &a.schedule_file {
        Some(f) => b.schedule_file(f),
        None => b,
    };
    println!("celery beat v{} (celeriac) is starting.", env!("CARGO_PKG_VERSION"));
    println!("LocalTime -> {}", chrono::Utc::now().format("%Y-%m-%d %H:%M:%S"));
    println!(
        "Configuration ->\n    . broker -> {}\n    . scheduler -> celeriac (lease in the broker)",
        app.client().broker().url()
    );
    let handle = b.start()?;
    println!("beat: ready.");
    handle.run_until_signal()
}

/// Installs the log subscriber: Celery's level names (`-l info`), `RUST_LOG` wins when set. An
/// unknown level is an error naming the ones there are.
pub fn init_logging(level: &str) -> crate::Result<()> {
    let level = match level.to_ascii_lowercase().as_str() {
        "critical" | "fatal" | "error" => "error",
        "warning" | "warn" => "warn",
        "info" => "info",
        "debug" => "debug",
        "trace" => "trace",
        _ => {
            return Err(bad_flag(
                "--loglevel",
                format!("{level:?} is not a log level: use debug, info, warning, error or critical"),
            ))
        }
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("celeriac={level},{level}")));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
    Ok(())
}
