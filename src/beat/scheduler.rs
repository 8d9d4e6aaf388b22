//! The scheduler (Celery's `beat.Scheduler`): on a thread of its own, it sleeps until the next
//! entry is due (never longer than `beat_max_loop_interval`, nor than a lease renewal), sends
//! what is due once (runs missed while beat was down fire once, not once per miss), and keeps
//! each entry's last run in the `-s` file and, under a lease, in the broker.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use crate::client::Client;
use crate::config::{Config, Url};
use crate::protocol::Signature;
use crate::rt::StopThread;
use crate::{Error, Result};

use super::lease::{Lease, LEASE};
use super::schedule::Schedule;
use super::state::{self, EntryState};

struct Entry {
    name: String,
    sig: Signature,
    schedule: Schedule,
    state: EntryState,
    next: Option<DateTime<Utc>>,
}

/// Builds a beat for an app (`App::beat`).
pub struct BeatBuilder {
    name: String,
    config: Config,
    broker: Url,
    client: Client,
    schedule_file: Option<PathBuf>,
}

/// A running beat; stopped (its lease released, its state saved) by [`BeatHandle::stop`] or
/// when dropped.
pub struct BeatHandle {
    thread: StopThread,
}

fn invalid(reason: String) -> Error {
    Error::invalid("beat_schedule", reason)
}

impl BeatBuilder {
    pub(crate) fn new(name: &str, config: &Config, broker: &Url, client: Client) -> Self {
        BeatBuilder {
            name: name.to_owned(),
            config: config.clone(),
            broker: broker.clone(),
            client,
            schedule_file: None,
        }
    }

    /// Keeps each entry's last run and run count in `path` (Celery's `-s/--schedule`).
    pub fn schedule_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.schedule_file = Some(path.into());
        self
    }

    /// Reads the schedule (a bad entry fails here, naming the entry and field) and starts
    /// sending.
    pub fn start(self) -> Result<BeatHandle> {
        let tz: Tz = self.config.timezone.parse().map_err(|_| {
            Error::invalid(
                "timezone",
                format!("{:?} is not an IANA timezone name (as Europe/Paris or UTC)", self.config.timezone),
            )
        })?;
        let saved = match &self.schedule_file {
            Some(p) => state::load(p).map_err(invalid)?,
            None => BTreeMap::new(),
        };
        let now = Utc::now();
        let mut entries = Vec::new();
        for (name, spec) in &self.config.beat_schedule {
            if spec.task.is_empty() {
                return Err(invalid(format!("beat_schedule.{name}: no task")));
            }
            let schedule = Schedule::from_spec(name, spec, tz).map_err(invalid)?;
            let mut sig = Signature::new(&spec.task, spec.args.clone()).with_kwargs(spec.kwargs.clone());
            sig.options = spec.options.clone();
            let state = saved.get(name).cloned().unwrap_or(EntryState { last_run_at: now, total_run_count: 0 });
            let next = schedule.next_after(state.last_run_at);
            entries.push(Entry { name: name.clone(), sig, schedule, state, next });
        }
        let lease = match &self.broker {
            Url::Memory => Some(Lease::memory(&self.name)),
            Url::Redis(u) => Some(Lease::redis(u.clone(), &self.name)),
            Url::Amqp(u) => Some(Lease::amqp(u, &self.name)),
            Url::Rpc => return Err(invalid("rpc:// is a result backend, not a broker".into())),
        };
        let max_loop = Duration::from_secs_f64(self.config.beat_max_loop_interval.max(0.001));
        let beat = Beat { entries, lease, client: self.client, file: self.schedule_file, max_loop, leader: false };
        let thread = StopThread::spawn("celeriac-beat", move |stop| beat.run(stop))
            .map_err(|e| invalid(format!("cannot start the beat thread: {e}")))?;
        tracing::info!("beat: Starting... ({} entries)", self.config.beat_schedule.len());
        Ok(BeatHandle { thread })
    }
}

impl BeatHandle {
    /// Stops sending, releases the lease, saves the state, and waits for the thread.
    pub fn stop(mut self) {
        self.thread.stop();
    }

    /// Runs until SIGINT or SIGTERM, then stops (`celery beat` in the foreground).
    pub fn run_until_signal(self) -> Result<()> {
        use signal_hook::consts::{SIGINT, SIGTERM};
        let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])?;
        if let Some(sig) = signals.forever().next() {
            eprintln!("\nbeat: shutting down after signal {sig}");
        }
        self.stop();
        Ok(())
    }
}

struct Beat {
    entries: Vec<Entry>,
    lease: Option<Lease>,
    client: Client,
    file: Option<PathBuf>,
    max_loop: Duration,
    leader: bool,
}

impl Beat {
    fn run(mut self, stop: flume::Receiver<()>) {
        loop {
            self.tick();
            let now = Utc::now();
            let mut wake = now + self.max_loop;
            if self.leader {
                if let Some(next) = self.entries.iter().filter_map(|e| e.next).min() {
                    wake = wake.min(next);
                }
            }
            let renew = LEASE / 5;
            let mut sleep = (wake - now).to_std().unwrap_or(Duration::ZERO);
            if self.lease.is_some() {
                sleep = sleep.min(renew);
            }
            match stop.recv_timeout(sleep) {
                Err(flume::RecvTimeoutError::Timeout) => {}
                _ => break,
            }
        }
        if let Some(l) = &self.lease {
            l.release();
        }
        self.save();
        tracing::info!("beat: stopped");
    }

    /// Renews (or takes) the lease, then sends what is due.
    fn tick(&mut self) {
        let was = self.leader;
        self.leader = match &self.lease {
            None => true,
            Some(l) => l.hold().unwrap_or_else(|e| {
                tracing::warn!("beat: cannot reach the broker to hold the lease: {e}; not sending meanwhile");
                false
            }),
        };
        if self.leader && !was {
            self.take_over();
        } else if was && !self.leader {
            tracing::warn!("beat: lost the lease; another beat sends now");
        }
        if !self.leader {
            return;
        }
        let now = Utc::now();
        let mut changed = false;
        for i in 0..self.entries.len() {
            if self.entries[i].next.is_none_or(|n| n > now) {
                continue;
            }
            let e = &mut self.entries[i];
            let st = EntryState { last_run_at: now, total_run_count: e.state.total_run_count + 1 };
            if let Some(l) = &self.lease {
                match l.record(&e.name, &serde_json::to_string(&st).expect("JSON")) {
                    Ok(true) => {}
                    Ok(false) => {
                        tracing::warn!("beat: lost the lease before sending {}; another beat sends it", e.name);
                        self.leader = false;
                        return;
                    }
                    Err(err) => {
                        tracing::warn!("beat: cannot record {} under the lease: {err}; not sent now", e.name);
                        return;
                    }
                }
            }
            tracing::info!("Scheduler: Sending due task {} ({})", e.name, e.sig.task);
            if let Err(err) = self.client.send_signature(&e.sig) {
                tracing::error!("Message Error: Couldn't apply scheduled task {}: {err}", e.name);
            }
            e.state = st;
            e.next = e.schedule.next_after(now);
            changed = true;
        }
        if changed {
            self.save();
        }
    }

    /// A beat that just took the lease reads the runs its predecessor recorded, so what it sent
    /// is not sent again.
    fn take_over(&mut self) {
        let Some(l) = &self.lease else { return };
        match l.recorded() {
            Ok(recorded) => {
                for e in &mut self.entries {
                    let theirs = recorded.get(&e.name).and_then(|j| serde_json::from_str::<EntryState>(j).ok());
                    if let Some(st) = theirs.filter(|st| st.last_run_at > e.state.last_run_at) {
                        e.state = st;
                        e.next = e.schedule.next_after(e.state.last_run_at);
                    }
                }
                tracing::info!("beat: holding the lease; sending due tasks");
            }
            Err(err) => tracing::warn!("beat: cannot read the recorded runs: {err}"),
        }
    }

    fn save(&self) {
        let Some(path) = &self.file else { return };
        let all = self.entries.iter().map(|e| (e.name.clone(), e.state.clone())).collect();
        if let Err(e) = state::save(path, &all) {
            tracing::error!("beat: cannot save its schedule state: {e}");
        }
    }
}
