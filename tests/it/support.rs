//! Shared test tasks and app builders.

use std::time::Duration;

use celeriac::{App, AppBuilder, TaskCtx, TaskError};

pub const T: Duration = Duration::from_secs(10);

pub fn add(x: i64, y: i64) -> i64 {
    x + y
}

pub async fn sleep_ms(ms: u64) -> u64 {
    celeriac::rt::sleep(Duration::from_millis(ms)).await;
    ms
}

pub fn fail(message: String) -> Result<(), TaskError> {
    Err(TaskError::value_error(message))
}

pub fn boom() -> i64 {
    panic!("kaboom")
}

pub fn whoami(ctx: TaskCtx, tag: String) -> (String, String, usize, String) {
    (ctx.id().to_owned(), ctx.name().to_owned(), ctx.shard(), tag)
}

/// Blocks its shard on purpose (a CPU-bound body not declared blocking) to create skew.
pub fn hog(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

pub fn base(name: &str) -> AppBuilder {
    App::builder(name)
        .use_env(false)
        .broker("memory://")
        .result_backend("memory://")
        .task("t.add", ["x", "y"], add)
        .task("t.sleep", ["ms"], sleep_ms)
        .task("t.fail", ["message"], fail)
        .task("t.boom", [], boom)
        .task("t.whoami", ["tag"], whoami)
        .task("t.hog", ["ms"], hog)
}
