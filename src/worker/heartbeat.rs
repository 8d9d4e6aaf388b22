//! The worker's heart (`celery/worker/heartbeat.py`): `worker-online` at start, a
//! `worker-heartbeat` every [`FREQ`] seconds with the fields Flower and `celery events` read,
//! `worker-offline` at shutdown; none with `--without-heartbeat`. On a thread of its own.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Map, Value};

use crate::rt::StopThread;

use super::shared::WorkerShared;

/// Seconds between heartbeats (`worker_heartbeat`'s 2.0 in Celery).
pub(crate) const FREQ: f64 = 2.0;

/// A beating heart; stopped (with `worker-offline`) by [`Heart::stop`] or a drop.
pub(crate) struct Heart(Option<StopThread>);

/// The load average, as Celery sends it (three floats, two decimals).
fn loadavg() -> Vec<f64> {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    text.split_whitespace().take(3).filter_map(|v| v.parse::<f64>().ok()).map(|v| (v * 100.0).round() / 100.0).collect()
}

/// The software fields every worker event carries.
fn software() -> Map<String, Value> {
    let v = json!({"sw_ident": "celeriac", "sw_ver": env!("CARGO_PKG_VERSION"), "sw_sys": std::env::consts::OS
        .replace("linux", "Linux").replace("macos", "Darwin")});
    v.as_object().cloned().unwrap_or_default()
}

/// A heartbeat's fields: `freq`, `active`, `processed`, `loadavg` and the software.
pub(crate) fn fields(shared: &WorkerShared, freq: f64) -> Map<String, Value> {
    let (started, processed) = (shared.total(|c| &c.started), shared.total(|c| &c.processed));
    let mut m = software();
    m.insert("freq".into(), json!(freq));
    m.insert("active".into(), json!(started.saturating_sub(processed)));
    m.insert("processed".into(), json!(processed));
    m.insert("loadavg".into(), json!(loadavg()));
    m
}

/// The extra heartbeat the `heartbeat` control command asks for (`freq` 5, the software only).
pub(crate) fn on_request(shared: &WorkerShared) {
    let mut m = software();
    m.insert("freq".into(), json!(5.0));
    shared.events.send("worker-heartbeat", m);
}

impl Heart {
    /// Sends `worker-online` and starts beating.
    pub(crate) fn start(shared: Arc<WorkerShared>) -> Heart {
        shared.events.send("worker-online", fields(&shared, FREQ));
        let thread = StopThread::spawn("celeriac-heart", move |stop| {
            while let Err(flume::RecvTimeoutError::Timeout) = stop.recv_timeout(Duration::from_secs_f64(FREQ)) {
                shared.events.send("worker-heartbeat", fields(&shared, FREQ));
            }
            shared.events.send("worker-offline", fields(&shared, FREQ));
        });
        if let Err(e) = &thread {
            tracing::error!("cannot start the heartbeat thread: {e}; no worker events will be sent");
        }
        Heart(thread.ok())
    }

    /// Stops beating; `worker-offline` is sent before this returns.
    pub(crate) fn stop(&mut self) {
        if let Some(t) = &mut self.0 {
            t.stop();
        }
    }
}
