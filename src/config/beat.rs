//! `beat_schedule` entries as Celery names them, read from TOML or set in code:
//!
//! ```toml
//! [beat_schedule.add-every-30s]
//! task = "proj.tasks.add"
//! schedule = 30.0
//! args = [16, 16]
//! options = { queue = "celery", expires = 20 }
//! [beat_schedule.weekday-report]
//! task = "proj.tasks.xsum"
//! crontab = { minute = "0", hour = "7", day_of_week = "mon-fri" }
//! [beat_schedule.lights-on]
//! task = "proj.tasks.lights"
//! solar = { event = "sunset", lat = 48.85, lon = 2.35 }
//! ```
//!
//! Only the shape is checked here; `beat::Schedule::from_spec` reads the schedule itself, so a bad
//! entry fails at start naming the entry and the field.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// One `beat_schedule` entry.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BeatEntrySpec {
    /// The task name to send.
    pub task: String,
    /// An interval in seconds (Celery's `schedule = 30.0` or `timedelta`).
    pub schedule: Option<f64>,
    /// Celery's `schedule(relative=True)`: interval runs on multiples of the interval.
    pub relative: bool,
    /// A crontab: `{ minute, hour, day_of_week, day_of_month, month_of_year }` (each `*` when
    /// left out).
    pub crontab: Option<CrontabSpec>,
    /// A solar event: `{ event, lat, lon }` (`sunrise`, `sunset`, `solar_noon`, `dawn_civil`, …).
    pub solar: Option<SolarSpec>,
    /// Positional arguments.
    pub args: Vec<Value>,
    /// Keyword arguments.
    pub kwargs: Map<String, Value>,
    /// Send options: `queue`, `routing_key`, `exchange`, `priority`, `expires`, ….
    pub options: Map<String, Value>,
}

/// Crontab fields, each a string in Celery's syntax or a number.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CrontabSpec {
    /// `minute` (`*`).
    pub minute: Option<Value>,
    /// `hour` (`*`).
    pub hour: Option<Value>,
    /// `day_of_week` (`*`; 0 or `sun` is Sunday).
    pub day_of_week: Option<Value>,
    /// `day_of_month` (`*`).
    pub day_of_month: Option<Value>,
    /// `month_of_year` (`*`).
    pub month_of_year: Option<Value>,
}

/// Celery's `solar(event, lat, lon)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SolarSpec {
    /// One of Celery's event names.
    pub event: String,
    /// Latitude in degrees, north positive.
    pub lat: f64,
    /// Longitude in degrees, east positive.
    pub lon: f64,
}

impl CrontabSpec {
    /// A field as text (`*` when unset).
    pub fn field(v: &Option<Value>) -> String {
        match v {
            None | Some(Value::Null) => "*".to_owned(),
            Some(Value::String(s)) => s.clone(),
            Some(other) => other.to_string(),
        }
    }
}
