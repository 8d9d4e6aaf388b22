//! `events`: `--dump` prints every event on a line of its own as Celery's `celery events
//! --dump` does (`node [time] type: fields`, tasks named by what their `task-received` said;
//! `--json` for one JSON object a line); without it, a live view of the workers and the latest
//! tasks, redrawn every `--frequency` seconds (on a terminal the screen is cleared between
//! frames).

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::args::EventsArgs;
use super::{seconds, text, Style};
use crate::events::{Clock, Receiver, State};
use crate::protocol::Event;
use crate::{App, Error, Result};

/// Tasks the live view lists, newest first.
const SHOWN_TASKS: usize = 20;

pub(super) fn events(app: &App, a: &EventsArgs) -> Result<ExitCode> {
    let until = a.duration.map(|d| seconds("--duration", d)).transpose()?.map(|d| Instant::now() + d);
    let frequency = Duration::try_from_secs_f64(a.frequency)
        .ok()
        .filter(|f| !f.is_zero())
        .ok_or_else(|| Error::invalid("--frequency", format!("{} is not a positive number of seconds", a.frequency)))?;
    let receiver = Receiver::new(app.client().broker(), Arc::new(Clock::default()));
    let (mut state, mut names) = (State::default(), HashMap::new());
    let mut next_frame = Instant::now();
    let style = Style::stdout();
    let tty = std::io::stdout().is_terminal();
    if a.dump {
        println!("-> celeriac events: Dumping events... (Ctrl+C to stop)");
    }
    while until.is_none_or(|u| Instant::now() < u) {
        let Some(batch) = receiver.next_within(Duration::from_millis(200)) else {
            return Err(Error::invalid("broker_url", "the event subscription ended (the broker went away)"));
        };
        for e in &batch {
            if a.dump {
                println!(
                    "{}",
                    if a.json { serde_json::to_string(e).unwrap_or_default() } else { dump_line(e, &mut names) }
                );
            } else {
                state.apply(e);
            }
        }
        if a.dump {
            let _ = std::io::stdout().flush();
        } else if Instant::now() >= next_frame {
            next_frame = Instant::now() + frequency;
            if tty {
                print!("\x1b[2J\x1b[H");
            }
            println!("{}", frame(&state, &style));
            let _ = std::io::stdout().flush();
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// One event as Celery's dumper prints it.
fn dump_line(e: &Event, names: &mut HashMap<String, String>) -> String {
    let when = chrono::DateTime::from_timestamp(e.timestamp as i64, (e.timestamp.fract() * 1e9) as u32)
        .map(|t| t.naive_utc().format("%Y-%m-%d %H:%M:%S%.6f").to_string())
        .unwrap_or_default();
    let mut fields = e.fields.clone();
    let kind = e.kind.to_lowercase().replace('-', " ");
    let mut task = String::new();
    if e.kind.starts_with("task-") {
        let uuid = fields.remove("uuid").map(|v| text(&v)).unwrap_or_default();
        if e.kind == "task-received" || e.kind == "task-sent" {
            let field = |k: &str| fields.get(k).map(text).unwrap_or_default();
            let t = format!("{}({uuid}) args={} kwargs={}", field("name"), field("args"), field("kwargs"));
            for k in ["name", "args", "kwargs"] {
                fields.remove(k);
            }
            names.insert(uuid, t.clone());
            task = t;
        } else {
            task = names.get(&uuid).cloned().unwrap_or(uuid);
        }
    }
    let mut keys: Vec<_> = fields.keys().cloned().collect();
    keys.sort();
    let fields = keys.iter().map(|k| format!("{k}={}", text(&fields[k]))).collect::<Vec<_>>().join(", ");
    let sep = if fields.is_empty() { "" } else { ":" };
    let task = if task.is_empty() { String::new() } else { format!(" {task}") };
    format!("{} [{when}] {kind}{sep}{task} {fields}", e.hostname).trim_end().to_owned()
}

/// The live view: workers, then the latest tasks.
fn frame(state: &State, style: &Style) -> String {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_secs_f64();
    let mut out = style.header(&format!("{:<40} {:<8} {:>8} {:>10}", "WORKER", "STATUS", "ACTIVE", "PROCESSED"));
    for w in state.workers.values() {
        let status = if w.alive(now) { style.ok("ONLINE") } else { style.error("OFFLINE") };
        let pad = 8usize.saturating_sub(if w.alive(now) { 6 } else { 7 });
        out.push_str(&format!(
            "\n{:<40} {status}{:pad$} {:>8} {:>10}",
            w.hostname,
            "",
            w.active.map_or("-".into(), |n| n.to_string()),
            w.processed.map_or("-".into(), |n| n.to_string()),
        ));
    }
    let mut tasks: Vec<_> = state.tasks.values().collect();
    let last = |t: &crate::events::TaskState| t.timestamps.values().copied().fold(0.0, f64::max);
    tasks.sort_by(|a, b| last(b).total_cmp(&last(a)));
    out.push_str("\n\n");
    out.push_str(
        &style.header(&format!("{:<36} {:<30} {:<9} {:>10}  {}", "UUID", "TASK", "STATE", "RUNTIME", "RESULT")),
    );
    for t in tasks.into_iter().take(SHOWN_TASKS) {
        let result = t.exception.as_deref().or(t.result.as_deref()).unwrap_or("");
        out.push_str(&format!(
            "\n{:<36} {:<30} {:<9} {:>10}  {}",
            t.uuid,
            t.name.as_deref().unwrap_or("?"),
            t.state,
            t.runtime.map_or("-".into(), |r| format!("{r:.4}s")),
            result.chars().take(60).collect::<String>(),
        ));
    }
    out.push_str(&format!("\n\n{} events, {} tasks seen", state.event_count, state.tasks.len()));
    out
}
