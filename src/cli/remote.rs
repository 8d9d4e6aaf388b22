//! `inspect`, `control` and `status` as Celery's CLI prints them: `->  node: OK` and the reply
//! under it for each node that answered, `N nodes online.`, and `Error: No nodes replied within
//! time constraint` with exit code 69 when none did; `--json` prints the replies as one object
//! by node name. On a terminal, node names and statuses are coloured and task lists are tables.

use std::process::ExitCode;
use std::time::Duration;

use serde_json::{json, Map, Value};

use super::args::{RemoteArgs, StatusArgs};
use super::{comma_list, plural, seconds, text, Style};
use crate::client::Reply;
use crate::{App, Error, Result};

/// Celery's `EX_UNAVAILABLE`: nobody replied.
const EX_UNAVAILABLE: u8 = 69;

fn nodes(d: &Option<String>) -> Vec<String> {
    comma_list(d.as_deref())
}

fn timeout(t: f64) -> Result<Duration> {
    seconds("--timeout", t)
}

/// `inspect METHOD [ARGS…]`.
pub(super) fn inspect(app: &App, a: &RemoteArgs) -> Result<ExitCode> {
    let (method, rest) = a.words.split_first().expect("clap requires the command");
    let arguments = match method.as_str() {
        "query_task" => json!({ "ids": rest }),
        "registered" | "registered_tasks" => json!({ "taskinfoitems": rest }),
        "active" | "reserved" | "scheduled" => json!({ "safe": null }),
        "conf" => json!({ "with_defaults": rest.first().is_some_and(|w| w == "true" || w == "1") }),
        _ if rest.is_empty() => json!({}),
        _ => return Err(Error::invalid("inspect", format!("{method} takes no arguments (given: {})", rest.join(" ")))),
    };
    let replies = app
        .client()
        .inspect()
        .destination(nodes(&a.ask.destination))
        .timeout(timeout(a.ask.timeout)?)
        .call(method, arguments)?;
    Ok(say(method, &replies, a.ask.json))
}

/// `control METHOD [ARGS…]`.
pub(super) fn control(app: &App, a: &RemoteArgs) -> Result<ExitCode> {
    let (method, rest) = a.words.split_first().expect("clap requires the command");
    let bad = |usage: &str| Error::invalid("control", format!("usage: control {method} {usage}"));
    let num = |i: usize, usage: &str| -> Result<Option<f64>> {
        rest.get(i).map(|w| w.parse::<f64>().map_err(|_| bad(usage))).transpose()
    };
    let arguments = match method.as_str() {
        "revoke" if !rest.is_empty() => json!({"task_id": rest, "terminate": a.terminate, "signal": a.signal}),
        "revoke" => return Err(bad("TASK_ID… [--terminate [--signal SIGNAL]]")),
        "terminate" if rest.len() >= 2 => json!({"signal": rest[0], "task_id": &rest[1..]}),
        "terminate" => return Err(bad("SIGNAL TASK_ID…")),
        "rate_limit" if rest.len() == 2 => json!({"task_name": rest[0], "rate_limit": rest[1]}),
        "rate_limit" => return Err(bad("TASK_NAME RATE_LIMIT (as 10/m; 0 removes it)")),
        "time_limit" if (2..=3).contains(&rest.len()) => {
            let usage = "TASK_NAME SOFT [HARD] (seconds)";
            json!({"task_name": rest[0], "soft": num(1, usage)?, "hard": num(2, usage)?})
        }
        "time_limit" => return Err(bad("TASK_NAME SOFT [HARD] (seconds)")),
        // Celery's `control add_consumer QUEUE [EXCHANGE [EXCHANGE_TYPE [ROUTING_KEY]]]`.
        "add_consumer" if (1..=4).contains(&rest.len()) => json!({
            "queue": rest[0], "exchange": rest.get(1), "exchange_type": rest.get(2), "routing_key": rest.get(3)
        }),
        "add_consumer" => return Err(bad("QUEUE [EXCHANGE [EXCHANGE_TYPE [ROUTING_KEY]]]")),
        "cancel_consumer" if rest.len() == 1 => json!({ "queue": rest[0] }),
        "cancel_consumer" => return Err(bad("QUEUE")),
        "pool_grow" | "pool_shrink" => json!({ "n": num(0, "[N]")?.unwrap_or(1.0) }),
        "autoscale" => json!({"max": num(0, "MAX MIN")?, "min": num(1, "MAX MIN")?}),
        _ if rest.is_empty() => json!({}),
        _ => return Err(Error::invalid("control", format!("{method} takes no arguments (given: {})", rest.join(" ")))),
    };
    let client = app.client();
    let control = client.control().destination(nodes(&a.ask.destination)).timeout(timeout(a.ask.timeout)?);
    if method == "shutdown" {
        // Workers do not reply to shutdown (Celery's neither); say what was sent.
        control.shutdown()?;
        println!("shutdown sent");
        return Ok(ExitCode::SUCCESS);
    }
    let replies = control.call(method, arguments)?;
    Ok(say(method, &replies, a.ask.json))
}

/// `status`: the nodes that answer a ping.
pub(super) fn status(app: &App, a: &StatusArgs) -> Result<ExitCode> {
    let replies = app
        .client()
        .inspect()
        .destination(nodes(&a.ask.destination))
        .timeout(timeout(a.ask.timeout)?)
        .call("ping", json!({}))?;
    if a.ask.json || replies.is_empty() {
        return Ok(say("ping", &replies, a.ask.json));
    }
    let style = Style::stdout();
    for r in &replies {
        println!("->  {}: {}", style.node(&r.node), style.ok("OK"));
    }
    println!("\n{} online.", plural(replies.len(), "node"));
    Ok(ExitCode::SUCCESS)
}

/// Prints the replies the way `celery inspect`/`control` do and picks the exit code.
fn say(method: &str, replies: &[Reply<Value>], as_json: bool) -> ExitCode {
    if replies.is_empty() {
        eprintln!("Error: No nodes replied within time constraint");
        return ExitCode::from(EX_UNAVAILABLE);
    }
    if as_json {
        let all: Map<String, Value> = replies.iter().map(|r| (r.node.clone(), r.value.clone())).collect();
        println!("{}", Value::Object(all));
        return ExitCode::SUCCESS;
    }
    let style = Style::stdout();
    for r in replies {
        let (status, body) = pretty(method, &r.value, &style);
        let status = if status == "OK" { style.ok(status) } else { style.error(status) };
        let rtt = if method == "ping" { format!(" ({:.2} ms)", r.after.as_secs_f64() * 1e3) } else { String::new() };
        println!("->  {}: {status}{rtt}", style.node(&r.node));
        if !body.is_empty() {
            println!("{body}");
        }
    }
    println!("\n{} online.", plural(replies.len(), "node"));
    ExitCode::SUCCESS
}

/// A reply's status and text: `{"ok": …}` and `{"error": …}` as Celery's `pretty`, task lists
/// as a table, other lists as `* item` lines, objects as indented JSON.
fn pretty(method: &str, v: &Value, style: &Style) -> (&'static str, String) {
    let indent = |text: &str, n: usize| text.lines().map(|l| format!("{:n$}{l}", "")).collect::<Vec<_>>().join("\n");
    match v {
        Value::Object(m) if m.len() == 1 && m.contains_key("ok") => ("OK", indent(&text(&m["ok"]), 8)),
        Value::Object(m) if m.len() == 1 && m.contains_key("error") => ("ERROR", indent(&text(&m["error"]), 8)),
        Value::Array(items) if items.is_empty() => ("OK", "    - empty -".to_owned()),
        Value::Array(items) if matches!(method, "active" | "reserved" | "scheduled") => {
            ("OK", indent(&task_table(method, items, style), 4))
        }
        Value::Array(items) => {
            ("OK", items.iter().map(|i| format!("    * {}", text(i))).collect::<Vec<_>>().join("\n"))
        }
        Value::Null => ("OK", String::new()),
        other => ("OK", indent(&serde_json::to_string_pretty(other).unwrap_or_default(), 4)),
    }
}

/// Running, reserved or scheduled tasks as aligned columns.
fn task_table(method: &str, items: &[Value], style: &Style) -> String {
    let when = if method == "scheduled" { "ETA" } else { "STARTED" };
    let mut rows = vec![["ID".to_owned(), "NAME".to_owned(), "ARGS".to_owned(), "KWARGS".to_owned(), when.to_owned()]];
    for item in items {
        let (req, at) = match item.get("request") {
            Some(req) => (req, item.get("eta").map(text).unwrap_or_default()),
            None => (item, item.get("time_start").and_then(Value::as_f64).map(seconds_ago).unwrap_or_default()),
        };
        let field = |k: &str| req.get(k).map(text).unwrap_or_default();
        rows.push([field("id"), field("name"), field("args"), field("kwargs"), at]);
    }
    let widths: Vec<usize> = (0..5).map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0)).collect();
    rows.iter()
        .enumerate()
        .map(|(i, r)| {
            let line = (0..5).map(|c| format!("{:w$}", r[c], w = widths[c])).collect::<Vec<_>>().join("  ");
            let line = line.trim_end().to_owned();
            if i == 0 {
                style.header(&line)
            } else {
                line
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn seconds_ago(t: f64) -> String {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_secs_f64();
    format!("{:.1}s ago", (now - t).max(0.0))
}
