//! What beat remembers of each entry (Celery's `-s/--schedule` file): its last run and how many
//! runs it had. celeriac's own format, JSON, written whole to a temporary file and renamed over
//! the old one, so a crash leaves the old state or the new, never half of one:
//!
//! ```json
//! {"format": "celeriac-beat/1", "entries": {"add-every-30s": {"last_run_at": "2026-12-02T10:00:00.000000+00:00", "total_run_count": 3}}}
//! ```

use std::collections::BTreeMap;
use std::path::Path;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// One entry's remembered state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EntryState {
    /// When it last ran (or when beat first saw it).
    pub last_run_at: DateTime<Utc>,
    /// How many times it ran.
    pub total_run_count: u64,
}

#[derive(Serialize, Deserialize)]
struct File {
    format: String,
    entries: BTreeMap<String, EntryState>,
}

const FORMAT: &str = "celeriac-beat/1";

/// Reads a state file; a missing file is an empty state, an unreadable one an error naming it.
pub fn load(path: &Path) -> Result<BTreeMap<String, EntryState>, String> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    let f: File = serde_json::from_str(&text)
        .map_err(|e| format!("{}: not a celeriac beat schedule file: {e}", path.display()))?;
    if f.format != FORMAT {
        return Err(format!("{}: format {:?}, this celeriac reads {FORMAT:?}", path.display(), f.format));
    }
    Ok(f.entries)
}

/// Writes the state atomically (temporary file in the same directory, then rename).
pub(super) fn save(path: &Path, entries: &BTreeMap<String, EntryState>) -> Result<(), String> {
    let f = File { format: FORMAT.into(), entries: entries.clone() };
    let text = serde_json::to_string(&f).expect("JSON");
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).and_then(|_| std::fs::rename(&tmp, path)).map_err(|e| format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_what_it_cannot_read() {
        let dir = std::env::temp_dir().join(format!("celeriac-beat-state-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("beat.json");
        assert!(load(&p).unwrap().is_empty());
        let mut m = BTreeMap::new();
        m.insert("e".to_owned(), EntryState { last_run_at: Utc::now(), total_run_count: 3 });
        save(&p, &m).unwrap();
        assert_eq!(load(&p).unwrap(), m);
        std::fs::write(&p, "garbage").unwrap();
        assert!(load(&p).unwrap_err().contains("not a celeriac beat schedule file"));
        let _ = std::fs::remove_dir_all(dir);
    }
}
