//! Celery's `crontab` schedule (`celery/schedules.py`): five fields in Celery's syntax (`*`,
//! numbers, names such as `mon` or `jan`, lists, ranges that may wrap, `/steps`), matched in the
//! schedule's timezone. Celery ANDs the day of month and the day of week (cron ORs them), and so
//! does this. Pure: no clock, no I/O.

use std::collections::BTreeSet;
use std::fmt;

use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveDateTime, TimeZone, Timelike};

/// A field that does not parse, with Celery's reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrontabError {
    /// The field (`minute`, `hour`, `day_of_week`, `day_of_month`, `month_of_year`).
    pub field: &'static str,
    /// Why.
    pub reason: String,
}

impl fmt::Display for CrontabError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "crontab {}: {}", self.field, self.reason)
    }
}

impl std::error::Error for CrontabError {}

const WEEKDAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];
const MONTHS: [&str; 12] = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"];

/// Celery's `crontab_parser(max_, min_)`: the values `min..min + max` a spec expands to.
fn parse_field(field: &'static str, spec: &str, max: u32, min: u32) -> Result<BTreeSet<u32>, CrontabError> {
    let err = |reason: String| CrontabError { field, reason };
    let number = |s: &str| -> Result<u32, CrontabError> {
        if s.starts_with('-') {
            return Err(err("negative numbers not supported".into()));
        }
        let i = match s.parse::<u32>() {
            Ok(i) => i,
            Err(_) => {
                let abbr = s.get(..3).unwrap_or(s).to_ascii_lowercase();
                match (MONTHS.iter().position(|m| *m == abbr), WEEKDAYS.iter().position(|d| *d == abbr)) {
                    (Some(m), _) => m as u32 + 1,
                    (None, Some(d)) => d as u32,
                    _ => return Err(err(format!("Invalid weekday literal {s:?}."))),
                }
            }
        };
        if i > min + max - 1 {
            return Err(err(format!("Invalid end range: {i} > {}.", min + max - 1)));
        }
        if i < min {
            return Err(err(format!("Invalid beginning range: {i} < {min}.")));
        }
        Ok(i)
    };
    let range = |from: &str, to: Option<&str>| -> Result<Vec<u32>, CrontabError> {
        let fr = number(from)?;
        let Some(to) = to else { return Ok(vec![fr]) };
        let to = number(to)?;
        Ok(if to < fr { (fr..min + max).chain(min..=to).collect() } else { (fr..=to).collect() })
    };
    let mut out = BTreeSet::new();
    for part in spec.split(',') {
        let part = part.trim();
        if part.is_empty() {
            return Err(err("empty part".into()));
        }
        let (base, step) = match part.split_once('/') {
            Some((b, s)) => {
                let s: usize = s.parse().ok().filter(|s| *s > 0).ok_or_else(|| err(format!("bad step in {part:?}")))?;
                (b, Some(s))
            }
            None => (part, None),
        };
        let values: Vec<u32> = if base == "*" {
            (min..min + max).collect()
        } else {
            match base.split_once('-') {
                Some((a, b)) if !a.is_empty() => range(a, Some(b))?,
                _ => range(base, None)?,
            }
        };
        match step {
            Some(s) => out.extend(values.into_iter().step_by(s)),
            None => out.extend(values),
        }
    }
    Ok(out)
}

/// A crontab schedule: the minutes, hours, weekdays (0 = Sunday), days of month and months it
/// fires on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Crontab {
    minute: BTreeSet<u32>,
    hour: BTreeSet<u32>,
    day_of_week: BTreeSet<u32>,
    day_of_month: BTreeSet<u32>,
    month_of_year: BTreeSet<u32>,
}

impl Crontab {
    /// Parses the five fields (Celery's defaults are all `*`).
    pub fn parse(
        minute: &str,
        hour: &str,
        day_of_week: &str,
        day_of_month: &str,
        month_of_year: &str,
    ) -> Result<Crontab, CrontabError> {
        Ok(Crontab {
            minute: parse_field("minute", minute, 60, 0)?,
            hour: parse_field("hour", hour, 24, 0)?,
            day_of_week: parse_field("day_of_week", day_of_week, 7, 0)?,
            day_of_month: parse_field("day_of_month", day_of_month, 31, 1)?,
            month_of_year: parse_field("month_of_year", month_of_year, 12, 1)?,
        })
    }

    fn date_matches(&self, d: NaiveDate) -> bool {
        self.month_of_year.contains(&d.month())
            && self.day_of_month.contains(&d.day())
            && self.day_of_week.contains(&d.weekday().num_days_from_sunday())
    }

    /// The first wall-clock minute after `t`'s minute that matches, in `t`'s timezone; `None`
    /// when none comes within eight years (a day that never exists, as February 30).
    pub fn next_after<Tz: TimeZone>(&self, t: &DateTime<Tz>) -> Option<DateTime<Tz>> {
        let tz = t.timezone();
        let local = t.naive_local();
        let start = local.with_second(0)?.with_nanosecond(0)? + Duration::minutes(1);
        let mut day = start.date();
        let last_day = day + Duration::days(366 * 8);
        while day <= last_day {
            if self.date_matches(day) {
                let same_day = day == start.date();
                for &h in self.hour.range(if same_day { start.hour() } else { 0 }..) {
                    let from = if same_day && h == start.hour() { start.minute() } else { 0 };
                    for &m in self.minute.range(from..) {
                        let wall = NaiveDateTime::new(day, chrono::NaiveTime::from_hms_opt(h, m, 0)?);
                        if let Some(at) = resolve(&tz, wall).filter(|at| at > t) {
                            return Some(at);
                        }
                    }
                }
            }
            day = day.succ_opt()?;
        }
        None
    }
}

/// A wall-clock time in `tz` as Python's zoneinfo reads it (fold 0): the earlier of two when the
/// clocks go back, and in a gap when they go forward, the offset from before the gap.
fn resolve<Tz: TimeZone>(tz: &Tz, wall: NaiveDateTime) -> Option<DateTime<Tz>> {
    match tz.from_local_datetime(&wall) {
        chrono::LocalResult::Single(t) => Some(t),
        chrono::LocalResult::Ambiguous(a, _) => Some(a),
        chrono::LocalResult::None => {
            let before = tz.offset_from_utc_datetime(&(wall - Duration::hours(3)));
            let utc = wall - Duration::seconds(chrono::Offset::fix(&before).local_minus_utc() as i64);
            Some(tz.from_utc_datetime(&utc))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn fields_expand_as_celerys_parser() {
        let f = |spec, max, min| parse_field("minute", spec, max, min).unwrap().into_iter().collect::<Vec<_>>();
        assert_eq!(f("*/15", 60, 0), vec![0, 15, 30, 45]);
        assert_eq!(f("*/3", 31, 1), vec![1, 4, 7, 10, 13, 16, 19, 22, 25, 28, 31]);
        assert_eq!(f("2-12/2", 12, 1), vec![2, 4, 6, 8, 10, 12]);
        assert_eq!(f("mon-fri", 7, 0), vec![1, 2, 3, 4, 5]);
        assert_eq!(f("fri-mon", 7, 0), vec![0, 1, 5, 6], "a range wraps");
        assert_eq!(f("jan,mar,dec", 12, 1), vec![1, 3, 12]);
        assert_eq!(f("sunday", 7, 0), vec![0]);
        for bad in ["", "1,,2", "60", "-1", "*/0", "*/x", "blah"] {
            assert!(parse_field("minute", bad, 60, 0).is_err(), "{bad:?}");
        }
        assert!(parse_field("day_of_month", "0", 31, 1).is_err());
    }

    #[test]
    fn next_fire_times() {
        let c = Crontab::parse("0", "7", "mon-fri", "*", "*").unwrap();
        // Friday 2026-12-04 07:00:30 → Monday 07:00.
        assert_eq!(c.next_after(&at("2026-12-04T07:00:30Z")), Some(at("2026-12-07T07:00:00Z")));
        assert_eq!(c.next_after(&at("2026-12-04T06:59:59Z")), Some(at("2026-12-04T07:00:00Z")));
        let every = Crontab::parse("*", "*", "*", "*", "*").unwrap();
        assert_eq!(every.next_after(&at("2026-12-31T23:59:10Z")), Some(at("2027-01-01T00:00:00Z")));
        let leap = Crontab::parse("0", "0", "*", "29", "feb").unwrap();
        assert_eq!(leap.next_after(&at("2026-03-01T00:00:00Z")), Some(at("2028-02-29T00:00:00Z")));
        assert_eq!(Crontab::parse("0", "0", "*", "30", "feb").unwrap().next_after(&at("2026-01-01T00:00:00Z")), None);
    }
}
