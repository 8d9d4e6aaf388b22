//! Rate-limit strings as Celery writes them (`celery/utils/time.py: rate`): `"10/s"`, `"100/m"`,
//! `"1000/h"`, or a bare number per second.

/// A parsed rate: tasks per second; 0 means no limit (as Celery treats `"0"`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    /// Tasks per second.
    pub per_second: f64,
}

impl RateLimit {
    /// Parses `"10/s"`, `"100/m"`, `"1000/h"`, `"5"`; anything else is an error naming the value.
    pub fn parse(text: &str) -> Result<RateLimit, String> {
        let t = text.trim();
        let (n, unit) = t.split_once('/').unwrap_or((t, "s"));
        let n: f64 = n.trim().parse().map_err(|_| format!("rate limit {text:?}: expected a number like \"10/s\""))?;
        let per = match unit.trim() {
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            u => return Err(format!("rate limit {text:?}: unknown unit {u:?} (use s, m or h)")),
        };
        if !n.is_finite() || n < 0.0 {
            return Err(format!("rate limit {text:?}: must be a non-negative number"));
        }
        Ok(RateLimit { per_second: n / per })
    }

    /// Whether this limits anything (`"0"` does not).
    pub fn is_limited(&self) -> bool {
        self.per_second > 0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn celerys_forms_parse_and_mistakes_are_named() {
        assert_eq!(RateLimit::parse("10/s").unwrap().per_second, 10.0);
        assert_eq!(RateLimit::parse("120/m").unwrap().per_second, 2.0);
        assert_eq!(RateLimit::parse("3600/h").unwrap().per_second, 1.0);
        assert_eq!(RateLimit::parse("5").unwrap().per_second, 5.0);
        assert!(!RateLimit::parse("0").unwrap().is_limited());
        assert!(RateLimit::parse("10/d").unwrap_err().contains("unit"));
        assert!(RateLimit::parse("fast").unwrap_err().contains("\"fast\""));
    }
}
