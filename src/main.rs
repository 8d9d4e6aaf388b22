//! The `celeriac` command. Worker programs embed their tasks and call `celeriac::cli::run`; this
//! binary offers the same command line with no tasks of its own (useful for `check`).

fn main() -> std::process::ExitCode {
    celeriac::cli::run(celeriac::App::builder("celeriac"))
}
