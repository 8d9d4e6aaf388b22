//! Layer 6: beat, Celery's periodic task scheduler. Schedules are pure ([`Schedule`]: intervals,
//! [`Crontab`]s read in the `timezone` setting, DST included, and [`Solar`] events); the scheduler runs on a thread
//! of its own, standalone (`proj beat`) or inside a worker (`-B`), and keeps each entry's last
//! run in a file (`-s`). Any number of beats may run: a lease in the broker lets exactly one send.

mod crontab;
mod lease;
mod schedule;
mod scheduler;
mod solar;
mod state;

pub use crontab::{Crontab, CrontabError};
pub use lease::LEASE;
pub use schedule::Schedule;
pub use scheduler::{BeatBuilder, BeatHandle};
pub use solar::{Solar, SolarEvent, TOLERANCE_SECS as SOLAR_TOLERANCE_SECS};
pub use state::{load as load_state, EntryState};
