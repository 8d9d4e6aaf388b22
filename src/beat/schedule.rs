//! A beat entry's schedule: an interval (Celery's `schedule(run_every, relative)`), a crontab or
//! a solar event, and when it fires next after a last run. Pure.

use chrono::{DateTime, Duration, TimeZone, Utc};
use chrono_tz::Tz;

use crate::config::BeatEntrySpec;
use crate::config::CrontabSpec;

use super::crontab::Crontab;
use super::solar::Solar;

/// When an entry fires.
#[derive(Debug, Clone, PartialEq)]
pub enum Schedule {
    /// Every `every`; with `relative`, on the multiples of it (Celery's `relative=True`).
    Interval {
        /// The interval.
        every: Duration,
        /// Fire on multiples of the interval since the epoch rather than from the last run.
        relative: bool,
    },
    /// On the crontab's minutes, in `tz`.
    Crontab {
        /// The fields.
        cron: Box<Crontab>,
        /// The timezone its fields are read in (`timezone`).
        tz: Tz,
    },
    /// On a solar event (`timezone` does not matter: the Sun decides).
    Solar(Solar),
}

impl Schedule {
    /// The schedule of `spec` (entry `name`), read in `tz`; a bad entry is an error naming the
    /// entry and the field.
    pub fn from_spec(name: &str, spec: &BeatEntrySpec, tz: Tz) -> Result<Schedule, String> {
        let given = [spec.schedule.is_some(), spec.crontab.is_some(), spec.solar.is_some()];
        match given.iter().filter(|g| **g).count() {
            0 => {
                return Err(format!(
                    "beat_schedule.{name}: no schedule (schedule = seconds, crontab = {{ … }} or solar = {{ … }})"
                ))
            }
            1 => {}
            _ => return Err(format!("beat_schedule.{name}: give one of schedule, crontab or solar, not several")),
        }
        if let Some(secs) = spec.schedule {
            if !secs.is_finite() || secs <= 0.0 {
                return Err(format!("beat_schedule.{name}.schedule: {secs} is not a positive number of seconds"));
            }
            let every = Duration::microseconds((secs * 1e6) as i64);
            return Ok(Schedule::Interval { every, relative: spec.relative });
        }
        if let Some(c) = &spec.crontab {
            let f = CrontabSpec::field;
            let cron = Crontab::parse(
                &f(&c.minute),
                &f(&c.hour),
                &f(&c.day_of_week),
                &f(&c.day_of_month),
                &f(&c.month_of_year),
            )
            .map_err(|e| format!("beat_schedule.{name}.crontab.{}: {}", e.field, e.reason))?;
            return Ok(Schedule::Crontab { cron: Box::new(cron), tz });
        }
        let s = spec.solar.as_ref().expect("one schedule is given");
        Solar::new(&s.event, s.lat, s.lon).map(Schedule::Solar).map_err(|e| format!("beat_schedule.{name}.solar: {e}"))
    }

    /// When it fires next after a run at `last` (`None`: never again).
    pub fn next_after(&self, last: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Schedule::Interval { every, relative: false } => Some(last + *every),
            Schedule::Interval { every, relative: true } => {
                let step = every.num_microseconds()?.max(1);
                let t = last.timestamp_micros();
                Utc.timestamp_micros((t.div_euclid(step) + 1) * step).single()
            }
            Schedule::Crontab { cron, tz } => cron.next_after(&last.with_timezone(tz)).map(|t| t.with_timezone(&Utc)),
            Schedule::Solar(solar) => Some(solar.next_after(last)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(schedule: Option<f64>, crontab: Option<CrontabSpec>) -> BeatEntrySpec {
        BeatEntrySpec { task: "t".into(), schedule, crontab, ..BeatEntrySpec::default() }
    }

    #[test]
    fn bad_entries_name_the_entry_and_field() {
        let e = Schedule::from_spec("e1", &spec(Some(-1.0), None), Tz::UTC).unwrap_err();
        assert!(e.starts_with("beat_schedule.e1.schedule"), "{e}");
        let c = CrontabSpec { hour: Some("25".into()), ..CrontabSpec::default() };
        let e = Schedule::from_spec("e2", &spec(None, Some(c)), Tz::UTC).unwrap_err();
        assert!(e.starts_with("beat_schedule.e2.crontab.hour: Invalid end range"), "{e}");
        assert!(Schedule::from_spec("e3", &spec(None, None), Tz::UTC).is_err());
        let sun = |event: &str, lat| crate::config::SolarSpec { event: event.into(), lat, lon: 2.35 };
        let solar = |s| BeatEntrySpec { solar: Some(s), ..spec(None, None) };
        let e = Schedule::from_spec("e4", &solar(sun("sunset", 95.0)), Tz::UTC).unwrap_err();
        assert!(e.starts_with("beat_schedule.e4.solar: Invalid latitude: 95"), "{e}");
        let e = Schedule::from_spec("e5", &solar(sun("teatime", 45.0)), Tz::UTC).unwrap_err();
        assert!(e.starts_with("beat_schedule.e5.solar: Invalid solar event 'teatime'"), "{e}");
        let both = BeatEntrySpec { schedule: Some(1.0), ..solar(sun("sunset", 45.0)) };
        assert!(Schedule::from_spec("e6", &both, Tz::UTC).unwrap_err().contains("not several"));
        assert!(matches!(Schedule::from_spec("e7", &solar(sun("sunset", 45.0)), Tz::UTC), Ok(Schedule::Solar(_))));
    }

    #[test]
    fn intervals_and_crontabs_in_a_timezone_across_dst() {
        let t = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        let every = Schedule::from_spec("i", &spec(Some(30.0), None), Tz::UTC).unwrap();
        assert_eq!(every.next_after(t("2026-12-02T10:00:10Z")), Some(t("2026-12-02T10:00:40Z")));
        let rel = Schedule::Interval { every: Duration::seconds(30), relative: true };
        assert_eq!(rel.next_after(t("2026-12-02T10:00:10Z")), Some(t("2026-12-02T10:00:30Z")));
        // 07:00 in Paris: 06:00 UTC in winter, 05:00 UTC in summer (clocks went forward 2027-03-28).
        let c = CrontabSpec { minute: Some(0.into()), hour: Some(7.into()), ..CrontabSpec::default() };
        let paris = Schedule::from_spec("c", &spec(None, Some(c)), "Europe/Paris".parse().unwrap()).unwrap();
        assert_eq!(paris.next_after(t("2027-03-27T06:00:00Z")), Some(t("2027-03-28T05:00:00Z")));
        assert_eq!(paris.next_after(t("2026-12-02T06:00:00Z")), Some(t("2026-12-03T06:00:00Z")));
    }
}
