//! The revoked-task set (`celery/worker/state.py`): ids a revoke command named, checked when a
//! message arrives and again just before it runs. Bounded like Celery's `LimitedSet` (50,000
//! ids, each kept 3 hours; `CELERY_WORKER_REVOKES_MAX` / `CELERY_WORKER_REVOKE_EXPIRES`), and
//! kept across restarts in the `--statedb` file.
//!
//! The state file is celeriac's own JSON (`{"revoked": [[id, unix_time], …]}`), not Python's
//! `shelve` database: the two workers cannot share one state file.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

/// Celery's defaults.
const MAX: usize = 50_000;
const EXPIRES_SECS: f64 = 10_800.0;

fn now() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

/// Insertion-ordered ids with an age limit and a size limit; the oldest go first.
#[derive(Debug)]
struct LimitedSet {
    max: usize,
    expires: f64,
    ids: HashMap<String, f64>,
    /// (id, time added); an entry whose time no longer matches `ids` was re-added later.
    order: VecDeque<(String, f64)>,
}

impl LimitedSet {
    fn add(&mut self, id: &str, at: f64) {
        self.ids.insert(id.to_owned(), at);
        self.order.push_back((id.to_owned(), at));
        self.purge(at);
    }

    fn contains(&self, id: &str, now: f64) -> bool {
        self.ids.get(id).is_some_and(|at| now - at < self.expires)
    }

    fn purge(&mut self, now: f64) {
        while let Some((id, at)) = self.order.front() {
            let current = self.ids.get(id) == Some(at);
            if current && now - at < self.expires && self.ids.len() <= self.max {
                break;
            }
            if current {
                self.ids.remove(id);
            }
            self.order.pop_front();
        }
    }
}

#[derive(Serialize, Deserialize)]
struct StateFile {
    revoked: Vec<(String, f64)>,
}

/// The worker's revoked ids, shared by every shard.
#[derive(Debug)]
pub(crate) struct Revoked {
    set: Mutex<LimitedSet>,
    /// Lets the per-task check skip the lock while nothing was ever revoked.
    any: AtomicBool,
    state_db: Option<PathBuf>,
}

impl Revoked {
    /// An empty set with Celery's limits (or the environment's), loaded from `state_db` when it
    /// exists. A state file that cannot be read is an error naming it.
    pub(super) fn open(state_db: Option<&Path>) -> Result<Self, String> {
        let env = |k: &str| std::env::var(k).ok().and_then(|v| v.parse::<f64>().ok());
        let set = LimitedSet {
            max: env("CELERY_WORKER_REVOKES_MAX").map_or(MAX, |v| v as usize),
            expires: env("CELERY_WORKER_REVOKE_EXPIRES").unwrap_or(EXPIRES_SECS),
            ids: HashMap::new(),
            order: VecDeque::new(),
        };
        let r = Revoked { set: Mutex::new(set), any: AtomicBool::new(false), state_db: state_db.map(Path::to_owned) };
        if let Some(p) = state_db.filter(|p| p.exists()) {
            let text = std::fs::read(p).map_err(|e| format!("cannot read --statedb {}: {e}", p.display()))?;
            let file: StateFile = serde_json::from_slice(&text)
                .map_err(|e| format!("--statedb {} is not a celeriac state file: {e}", p.display()))?;
            let mut set = r.lock();
            let now = now();
            for (id, at) in file.revoked {
                if now - at < set.expires {
                    set.add(&id, at);
                }
            }
            r.any.store(!set.ids.is_empty(), Ordering::Release);
            drop(set);
            tracing::info!("revoked ids loaded from {}", p.display());
        }
        Ok(r)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LimitedSet> {
        self.set.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Marks `id` revoked.
    pub(super) fn add(&self, id: &str) {
        self.lock().add(id, now());
        self.any.store(true, Ordering::Release);
    }

    /// Whether `id` was revoked (and not yet forgotten).
    pub(super) fn contains(&self, id: &str) -> bool {
        self.any.load(Ordering::Acquire) && self.lock().contains(id, now())
    }

    /// The revoked ids, oldest first.
    pub(super) fn ids(&self) -> Vec<String> {
        let set = self.lock();
        set.order.iter().filter(|(id, at)| set.ids.get(id) == Some(at)).map(|(id, _)| id.clone()).collect()
    }

    /// Writes the set to the state file, if there is one (atomically: a temporary file renamed).
    pub(super) fn save(&self) -> Result<(), String> {
        let Some(path) = &self.state_db else { return Ok(()) };
        let revoked = {
            let set = self.lock();
            set.order.iter().filter(|(id, at)| set.ids.get(id) == Some(at)).cloned().collect()
        };
        let text = serde_json::to_vec(&StateFile { revoked }).expect("the state file is JSON values");
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, text)
            .and_then(|_| std::fs::rename(&tmp, path))
            .map_err(|e| format!("cannot write --statedb {}: {e}", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(max: usize, expires: f64) -> LimitedSet {
        LimitedSet { max, expires, ids: HashMap::new(), order: VecDeque::new() }
    }

    #[test]
    fn the_set_forgets_the_oldest_past_its_size_and_age() {
        let mut s = set(2, 100.0);
        s.add("a", 0.0);
        s.add("b", 1.0);
        s.add("a", 2.0); // re-added: now newer than b
        s.add("c", 3.0);
        assert!(!s.contains("b", 3.0) && s.contains("a", 3.0) && s.contains("c", 3.0));
        assert!(!s.contains("a", 150.0));
        s.add("d", 150.0);
        assert_eq!(s.ids.len(), 1);
    }

    #[test]
    fn the_state_file_survives_a_restart() {
        let dir = std::env::temp_dir().join(format!("celeriac-statedb-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("worker.state");
        let r = Revoked::open(Some(&path)).unwrap();
        assert!(!r.contains("x"));
        r.add("x");
        r.save().unwrap();
        let again = Revoked::open(Some(&path)).unwrap();
        assert!(again.contains("x") && !again.contains("y"));
        std::fs::write(&path, "not json").unwrap();
        assert!(Revoked::open(Some(&path)).unwrap_err().contains("not a celeriac state file"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
