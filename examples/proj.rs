//! The Celery tutorial's project (`proj/tasks.py`) as a celeriac worker program:
//!
//! ```python
//! @app.task
//! def add(x, y): return x + y
//! @app.task
//! def mul(x, y): return x * y
//! @app.task
//! def xsum(numbers): return sum(numbers)
//! ```
//!
//! plus tasks for tests that need more than arithmetic:
//! - `proj.tasks.sleep(seconds)`: an async sleep that returns `seconds`;
//! - `proj.tasks.fail(message)`: always fails with `ValueError(message)`;
//! - `proj.tasks.flaky(fail_times)`: retries itself with a 0.1 s countdown until its retry count
//!   reaches `fail_times`, then returns that count;
//! - `proj.tasks.progress(steps, delay)`: reports `PROGRESS` with `{"current", "total"}` after
//!   each step (`update_state`), then returns `steps`.
//!
//! Same task names, parameter names and behaviour, so Python clients call it unchanged:
//! `cargo run --release --example proj -- worker -l info -n w1@%h`.

use std::process::ExitCode;
use std::time::Duration;

use celeriac::{App, Retry, TaskCtx, TaskError};
use serde_json::json;

fn add(x: i64, y: i64) -> i64 {
    x + y
}

fn mul(x: i64, y: i64) -> i64 {
    x * y
}

fn xsum(numbers: Vec<i64>) -> i64 {
    numbers.iter().sum()
}

async fn sleep(seconds: f64) -> f64 {
    celeriac::rt::sleep(Duration::from_secs_f64(seconds.max(0.0))).await;
    seconds
}

fn fail(message: String) -> Result<(), TaskError> {
    Err(TaskError::value_error(message))
}

fn flaky(ctx: TaskCtx, fail_times: u32) -> Result<u32, TaskError> {
    if ctx.retries() < fail_times {
        let cause = TaskError::value_error(format!("failing on purpose, attempt {}", ctx.retries() + 1));
        return Err(Retry::new().countdown(0.1).max_retries(None).exc(cause).into());
    }
    Ok(ctx.retries())
}

async fn progress(ctx: TaskCtx, steps: u32, delay: f64) -> u32 {
    for i in 1..=steps {
        celeriac::rt::sleep(Duration::from_secs_f64(delay.max(0.0))).await;
        ctx.update_state("PROGRESS", json!({"current": i, "total": steps}));
    }
    steps
}

fn main() -> ExitCode {
    celeriac::cli::run(
        App::builder("proj")
            .result_backend("memory://")
            .task("proj.tasks.add", ["x", "y"], add)
            .task("proj.tasks.mul", ["x", "y"], mul)
            .task("proj.tasks.xsum", ["numbers"], xsum)
            .task("proj.tasks.sleep", ["seconds"], sleep)
            .task("proj.tasks.fail", ["message"], fail)
            .task("proj.tasks.flaky", ["fail_times"], flaky)
            .task("proj.tasks.progress", ["steps", "delay"], progress),
    )
}
