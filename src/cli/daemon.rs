//! How a worker or beat runs as a service, as Celery's `-f`, `--pidfile` and `-D` do: logs to a
//! file, a pid file that refuses a second instance (and clears a stale one), and the
//! background start, which runs the same command line again in a session of its own and
//! reports at once a start that fails.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::args::DaemonArgs;
use crate::{Error, Result};

/// Set in the background copy, so it does not detach again.
const DETACHED: &str = "CELERIAC_DETACHED";

/// Applies `-D`, `-f`, `-l` and `--pidfile`: in the foreground process of `-D` this starts the
/// background copy and returns `Ok(None)` (the caller exits); otherwise logging is set up and
/// the pid file (if asked for) written, removed again when the returned guard drops.
pub(super) fn prepare(d: &DaemonArgs) -> Result<Option<Option<PidFile>>> {
    if d.detach && std::env::var_os(DETACHED).is_none() {
        detach(d)?;
        return Ok(None);
    }
    super::init_logging(&d.loglevel, d.logfile.as_deref())?;
    let pid = d.pidfile.as_deref().map(PidFile::create).transpose()?;
    Ok(Some(pid))
}

/// Starts this command line again without `-D`, detached: its own session, stdin from
/// /dev/null, stdout and stderr to the log file (or /dev/null). Waits a moment, so a start that
/// fails (a bad setting, a held pid file) is reported here with its exit code.
fn detach(d: &DaemonArgs) -> Result<()> {
    let exe =
        std::env::current_exe().map_err(|e| Error::invalid("--detach", format!("cannot find this program: {e}")))?;
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "-D" && a != "--detach").collect();
    let out = match &d.logfile {
        Some(p) => open_log(p)?,
        None => File::create("/dev/null").map_err(|e| Error::invalid("--detach", e.to_string()))?,
    };
    let err = out.try_clone().map_err(|e| Error::invalid("--detach", e.to_string()))?;
    let mut cmd = Command::new(exe);
    cmd.args(&args).env(DETACHED, "1").stdin(Stdio::null()).stdout(out).stderr(err);
    // SAFETY: setsid(2) only changes this (child) process's session; it is async-signal-safe,
    // as code between fork and exec must be.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, || {
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child =
        cmd.spawn().map_err(|e| Error::invalid("--detach", format!("cannot start in the background: {e}")))?;
    let until = Instant::now() + Duration::from_millis(1500);
    while Instant::now() < until {
        if let Ok(Some(status)) = child.try_wait() {
            let log = d
                .logfile
                .as_ref()
                .map_or("(no --logfile: run without -D to see why)".to_owned(), |p| p.display().to_string());
            return Err(Error::invalid(
                "--detach",
                format!("the background process stopped at start ({status}); see {log}"),
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    println!("started in the background, pid {}", child.id());
    Ok(())
}

pub(super) fn open_log(p: &Path) -> Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(p)
        .map_err(|e| Error::invalid("--logfile", format!("cannot open {}: {e}", p.display())))
}

/// A pid file held while the process runs.
pub(super) struct PidFile {
    path: PathBuf,
}

impl PidFile {
    /// Writes this process's pid to `path`. A file naming a live process is refused (another
    /// instance runs); one naming a dead process is stale and replaced, as Celery does.
    fn create(path: &Path) -> Result<PidFile> {
        let bad = |why: String| Error::invalid("--pidfile", why);
        if let Ok(text) = std::fs::read_to_string(path) {
            let held = text.trim().parse::<i32>().ok();
            // SAFETY: kill(pid, 0) sends nothing; it only asks whether the process exists.
            match held {
                Some(pid) if pid > 0 && unsafe { libc::kill(pid, 0) } == 0 => {
                    return Err(bad(format!(
                        "{} holds the pid {pid} of a running process: another instance is running",
                        path.display()
                    )))
                }
                _ => {
                    eprintln!("removing the stale pid file {}", path.display());
                    let _ = std::fs::remove_file(path);
                }
            }
        }
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
            .map_err(|e| bad(format!("cannot create {}: {e}", path.display())))?;
        writeln!(f, "{}", std::process::id()).map_err(|e| bad(format!("cannot write {}: {e}", path.display())))?;
        Ok(PidFile { path: path.to_owned() })
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        let ours = std::fs::read_to_string(&self.path).is_ok_and(|t| t.trim() == std::process::id().to_string());
        if ours {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}
