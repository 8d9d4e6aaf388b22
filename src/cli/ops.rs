//! `call`, `result`, `purge` and `report`, as Celery's commands of those names behave.

use std::io::{BufRead, Write};
use std::process::ExitCode;
use std::time::Duration;

use serde_json::{Map, Value};

use super::args::{CallArgs, PurgeArgs, ResultArgs};
use super::{comma_list, plural, purge_queues, seconds, shown_settings};
use crate::{App, Error, Result, SendOptions};

/// `call NAME --args JSON --kwargs JSON …`: sends and prints the task id.
pub(super) fn call(app: &App, a: &CallArgs) -> Result<ExitCode> {
    let args: Value = serde_json::from_str(&a.args)
        .ok()
        .filter(Value::is_array)
        .ok_or_else(|| Error::invalid("--args", format!("{:?} is not a JSON list, as [2, 2]", a.args)))?;
    let kwargs: Map<String, Value> = serde_json::from_str(&a.kwargs)
        .map_err(|_| Error::invalid("--kwargs", format!("{:?} is not a JSON object, as {{\"x\": 1}}", a.kwargs)))?;
    let mut opts = SendOptions::new();
    if let Some(c) = a.countdown {
        opts = opts.countdown(seconds("--countdown", c)?);
    }
    if let Some(eta) = &a.eta {
        let t = chrono::DateTime::parse_from_rfc3339(eta)
            .map_err(|e| Error::invalid("--eta", format!("{eta:?} is not an ISO 8601 time with its offset: {e}")))?;
        opts = opts.eta(t.with_timezone(&chrono::Utc));
    }
    if let Some(e) = a.expires {
        opts = opts.expires_in(seconds("--expires", e)?);
    }
    if let Some(q) = &a.queue {
        opts = opts.queue(q);
    }
    if let Some(e) = &a.exchange {
        opts = opts.exchange(e);
    }
    if let Some(rk) = &a.routing_key {
        opts = opts.routing_key(rk);
    }
    let r = app.send_task_with(&a.name, args, kwargs, &opts)?;
    println!("{}", r.id());
    Ok(ExitCode::SUCCESS)
}

/// `result ID`: waits for the task and prints its value (a string as it is, anything else as
/// JSON); a failure is printed as the exception, exit code 1.
pub(super) fn result(app: &App, a: &ResultArgs) -> Result<ExitCode> {
    let r = app.client().async_result(&a.task_id);
    if a.traceback {
        println!("{}", r.traceback()?.unwrap_or_default());
        return Ok(ExitCode::SUCCESS);
    }
    let wait = match a.timeout {
        Some(t) => seconds("--timeout", t)?,
        None => Duration::from_secs(u64::from(u32::MAX)),
    };
    match r.get_value(wait, true) {
        Ok(Value::String(s)) => println!("{s}"),
        Ok(v) => println!("{v}"),
        Err(Error::TaskFailed(f)) => {
            eprintln!("{f}");
            return Ok(ExitCode::FAILURE);
        }
        Err(e) => return Err(e),
    }
    Ok(ExitCode::SUCCESS)
}

/// `purge`: the waiting messages of the task queues, after a yes (or with `-f`).
pub(super) fn purge(app: &App, a: &PurgeArgs) -> Result<ExitCode> {
    let mut queues = comma_list(a.queues.as_deref());
    if queues.is_empty() {
        // The queues a worker of these settings consumes.
        queues = app.worker().queue_names();
    }
    let exclude = comma_list(a.exclude_queues.as_deref());
    queues.retain(|q| !exclude.contains(q));
    if queues.is_empty() {
        println!("No queues to purge.");
        return Ok(ExitCode::SUCCESS);
    }
    let qs = plural(queues.len(), "queue");
    if !a.force {
        println!(
            "WARNING: This will remove all tasks from {qs}: {}.\n         There is no undo for this operation!\n\n(to skip this prompt use the -f option)\n",
            queues.join(", ")
        );
        print!("Are you sure you want to delete all tasks? [y/N]: ");
        let _ = std::io::stdout().flush();
        let mut answer = String::new();
        let _ = std::io::stdin().lock().read_line(&mut answer);
        if !matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes") {
            println!("Aborted.");
            return Ok(ExitCode::FAILURE);
        }
    }
    let purged = purge_queues(app, &queues)?;
    if purged > 0 {
        let word = if queues.len() == 1 { "queue" } else { "queues" };
        println!("Purged {} from {} known task {word}.", plural(purged, "message"), queues.len());
    } else {
        println!("No messages purged from {qs}.");
    }
    Ok(ExitCode::SUCCESS)
}

/// `report`: what a bug report needs.
pub(super) fn report(app: &App) -> Result<ExitCode> {
    println!("{}", report_text(app));
    Ok(ExitCode::SUCCESS)
}

/// The text of `report`.
fn report_text(app: &App) -> String {
    let client = app.client();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!(
        "software -> celeriac:{} (Celery 5.7 protocol)\nplatform -> system:{} arch:{} kernel:{}\nsettings -> transport:{} results:{}\n\n{}",
        env!("CARGO_PKG_VERSION"),
        std::env::consts::OS,
        std::env::consts::ARCH,
        kernel.trim(),
        client.broker().url(),
        client.backend().url(),
        shown_settings(app),
    )
}
