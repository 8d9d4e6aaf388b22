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
mod daemon;
mod ops;
mod remote;
mod watch;

pub use args::{
    AskArgs, BeatArgs, CallArgs, Cli, Command, DaemonArgs, EventsArgs, GlobalArgs, PurgeArgs, RemoteArgs, ResultArgs,
    StatusArgs, WorkerArgs,
};

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;

use crate::{App, AppBuilder};

/// Parses the process arguments and runs the chosen command.
pub fn run(builder: AppBuilder) -> ExitCode {
    run_with(builder, Cli::parse())
}

/// Runs an already-parsed command line. A bad setting or flag ends it with `Error: …` on
/// stderr and exit code 2; a command that found nobody to answer with 69, as Celery's.
pub fn run_with(builder: AppBuilder, cli: Cli) -> ExitCode {
    match dispatch(builder, cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("Error: {e}");
            ExitCode::from(2)
        }
    }
}

fn dispatch(builder: AppBuilder, cli: Cli) -> crate::Result<ExitCode> {
    let g = cli.global;
    let builder = match &g.config {
        Some(p) => builder.config_file(p),
        None => builder,
    };
    let client_app = |builder: AppBuilder| -> crate::Result<App> {
        // The short commands end quietly when their reader goes (`| head`), as Unix tools do.
        // SAFETY: restoring SIGPIPE's default action touches no memory.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
        init_logging("warning", None)?;
        builder.build_with_flags(|c: &mut crate::Config| g.apply(c))
    };
    match cli.command {
        Command::Worker(a) => worker(builder, &g, a).map(|()| ExitCode::SUCCESS),
        Command::Beat(a) => beat(builder, &g, a).map(|()| ExitCode::SUCCESS),
        Command::Check => check(client_app(builder)?),
        Command::Inspect(a) => remote::inspect(&client_app(builder)?, &a),
        Command::Control(a) => remote::control(&client_app(builder)?, &a),
        Command::Status(a) => remote::status(&client_app(builder)?, &a),
        Command::Call(a) => ops::call(&client_app(builder)?, &a),
        Command::Result(a) => ops::result(&client_app(builder)?, &a),
        Command::Purge(a) => ops::purge(&client_app(builder)?, &a),
        Command::Events(a) => watch::events(&client_app(builder)?, &a),
        Command::Report => ops::report(&client_app(builder)?),
    }
}

fn check(app: App) -> crate::Result<ExitCode> {
    println!("configuration OK; {} task(s) registered", app.registry().len());
    println!("{}", shown_settings(&app));
    Ok(ExitCode::SUCCESS)
}

/// The effective settings as TOML, the URLs as the banner shows them (passwords hidden); for
/// `check` and `report`.
fn shown_settings(app: &App) -> String {
    let mut shown = app.config().clone();
    shown.broker_url = app.client().broker().url();
    if shown.result_backend.is_some() {
        shown.result_backend = Some(app.client().backend().url());
    }
    toml::to_string(&shown).unwrap_or_else(|e| format!("(cannot render the configuration: {e})"))
}

/// A comma-separated flag (`-Q a,b`, `-d n1,n2`) as its non-empty items.
fn comma_list(s: Option<&str>) -> Vec<String> {
    s.map_or_else(Vec::new, |s| s.split(',').map(str::trim).filter(|i| !i.is_empty()).map(str::to_owned).collect())
}

/// A flag given in seconds.
fn seconds(flag: &'static str, s: f64) -> crate::Result<std::time::Duration> {
    std::time::Duration::try_from_secs_f64(s).map_err(|_| bad_flag(flag, format!("{s} is not a number of seconds")))
}

/// `3 messages`, `1 node`.
fn plural(n: usize, word: &str) -> String {
    format!("{n} {word}{}", if n == 1 { "" } else { "s" })
}

/// A JSON value for people: a string as it is, anything else as JSON.
fn text(v: &serde_json::Value) -> String {
    v.as_str().map_or_else(|| v.to_string(), str::to_owned)
}

/// Drops the waiting messages of `queues` (`purge`, `worker --purge`); how many went.
fn purge_queues(app: &App, queues: &[String]) -> crate::Result<usize> {
    let client = app.client();
    queues.iter().try_fold(0, |n, q| Ok(n + client.broker().purge(q)?))
}

fn bad_flag(setting: &'static str, reason: String) -> crate::Error {
    crate::Error::invalid(setting, reason)
}

/// Applies `-P`: `solo` is one shard running one body at a time; the others are accepted
/// with a note (bodies run in the worker's own threads, there is no pool to choose).
fn pool_note(pool: &str) -> crate::Result<Option<&'static str>> {
    match pool {
        "solo" => Ok(None),
        "prefork" | "processes" | "threads" | "gevent" | "eventlet" | "custom" => Ok(Some(
            "celeriac runs task bodies in its own shards (threads pinned to CPUs), not in a pool: -P is ignored, -c keeps its meaning",
        )),
        other => Err(bad_flag(
            "--pool",
            format!("{other:?} is not a pool: use solo, prefork, threads, gevent, eventlet or custom"),
        )),
    }
}

fn worker(builder: AppBuilder, g: &GlobalArgs, a: WorkerArgs) -> crate::Result<()> {
    let Some(_pidfile) = daemon::prepare(&a.daemon)? else { return Ok(()) };
    if a.concurrency == Some(0) {
        return Err(bad_flag("--concurrency", "must be at least 1".into()));
    }
    let solo = a.pool.as_deref() == Some("solo");
    if let Some(note) = a.pool.as_deref().map(pool_note).transpose()?.flatten() {
        tracing::warn!("-P {}: {note}", a.pool.as_deref().unwrap_or_default());
    }
    let mut concurrency = a.concurrency;
    if let Some(spec) = &a.autoscale {
        let max = spec.split(',').next().and_then(|m| m.trim().parse::<usize>().ok()).filter(|m| *m > 0);
        let Some(max) = max else {
            return Err(bad_flag("--autoscale", format!("{spec:?} is not MAX,MIN (as 10,3)")));
        };
        tracing::warn!("--autoscale {spec}: celeriac does not grow or shrink its concurrency; running with -c {max}");
        concurrency = concurrency.or(Some(max));
    }
    if a.max_tasks_per_child.is_some() || a.max_memory_per_child.is_some() {
        tracing::warn!(
            "--max-tasks-per-child/--max-memory-per-child do not apply: tasks run in the worker's own threads, there are no child processes to recycle"
        );
    }
    if let Some(o) = a.optimization.as_deref().filter(|o| *o != "fair" && *o != "default") {
        return Err(bad_flag("-O", format!("{o:?} is not an optimization profile: use fair or default")));
    }
    let (prefetch, time_limit, soft) = (a.prefetch_multiplier, a.time_limit, a.soft_time_limit);
    let app = builder.build_with_flags(|c: &mut crate::Config| {
        g.apply(c);
        if let Some(p) = prefetch {
            c.worker_prefetch_multiplier = p;
        }
        if time_limit.is_some() {
            c.task_time_limit = time_limit;
        }
        if soft.is_some() {
            c.task_soft_time_limit = soft;
        }
    })?;
    let mut w = app.worker();
    if solo {
        w = w.concurrency(1).shards(1);
    }
    if let Some(c) = concurrency {
        w = w.concurrency(c);
    }
    if let Some(s) = a.shards {
        w = w.shards(s);
    }
    let mut queues = match a.queues.as_deref() {
        Some(q) => comma_list(Some(q)),
        None => w.queue_names(),
    };
    let exclude = comma_list(a.exclude_queues.as_deref());
    queues.retain(|q| !exclude.contains(q));
    w = w.queues(queues.clone());
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
    if a.without_mingle {
        w = w.mingle(false);
    }
    if a.without_gossip {
        w = w.gossip(false);
    }
    if let Some(us) = a.busy_poll_us {
        w = w.busy_poll(std::time::Duration::from_micros(us));
    }
    if let Some(db) = &a.statedb {
        w = w.state_db(db);
    }
    if a.purge {
        let purged = purge_queues(&app, &queues)?;
        println!("purge: Erased {purged} message(s) from the queue(s) {}.", queues.join(", "));
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

fn beat(builder: AppBuilder, g: &GlobalArgs, a: BeatArgs) -> crate::Result<()> {
    let Some(_pidfile) = daemon::prepare(&a.daemon)? else { return Ok(()) };
    let max = a.max_interval;
    let app = builder.build_with_flags(|c: &mut crate::Config| {
        g.apply(c);
        if let Some(m) = max {
            c.beat_max_loop_interval = m;
        }
    })?;
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

/// Colours for people: only when stdout is a terminal.
pub(crate) struct Style {
    on: bool,
}

impl Style {
    fn stdout() -> Style {
        Style { on: std::io::stdout().is_terminal() }
    }

    fn paint(&self, code: &str, s: &str) -> String {
        if self.on {
            format!("\x1b[{code}m{s}\x1b[0m")
        } else {
            s.to_owned()
        }
    }

    fn node(&self, s: &str) -> String {
        self.paint("1;36", s)
    }

    fn ok(&self, s: &str) -> String {
        self.paint("32", s)
    }

    fn error(&self, s: &str) -> String {
        self.paint("31", s)
    }

    fn header(&self, s: &str) -> String {
        self.paint("1", s)
    }
}

/// Installs the log subscriber: Celery's level names (`-l info`), `RUST_LOG` wins when set. An
/// unknown level is an error naming the ones there are.
pub fn init_logging(level: &str, logfile: Option<&std::path::Path>) -> crate::Result<()> {
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
    let fmt = tracing_subscriber::fmt().with_env_filter(filter).with_target(false);
    let _ = match logfile {
        Some(p) => fmt.with_writer(std::sync::Mutex::new(daemon::open_log(p)?)).with_ansi(false).try_init(),
        None => fmt.with_writer(std::io::stderr).with_ansi(std::io::stderr().is_terminal()).try_init(),
    };
    Ok(())
}
