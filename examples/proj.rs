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
//! plus `proj.tasks.sleep(seconds)` (an async sleep that returns `seconds`), for tests that need
//! a task that takes time.
//!
//! Same task names, parameter names and behaviour, so Python clients call it unchanged:
//! `cargo run --release --example proj -- worker -l info -n w1@%h`.

use std::process::ExitCode;

use celeriac::App;

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
    celeriac::rt::sleep(std::time::Duration::from_secs_f64(seconds.max(0.0))).await;
    seconds
}

fn main() -> ExitCode {
    celeriac::cli::run(
        App::builder("proj")
            .result_backend("memory://")
            .task("proj.tasks.add", ["x", "y"], add)
            .task("proj.tasks.mul", ["x", "y"], mul)
            .task("proj.tasks.xsum", ["numbers"], xsum)
            .task("proj.tasks.sleep", ["seconds"], sleep),
    )
}
