//! APScheduler's cron fields, mapped onto `croner`.
//!
//! An entry gives some of `year, month, day, week, day_of_week, hour, minute, second`. As in
//! APScheduler, fields finer than the finest given one default to their minimum (`month` and
//! `day` 1, `hour`/`minute`/`second` 0; `week` and `day_of_week` stay `*`) and coarser ones to
//! `*`. Each field expression (`*`, `*/n`, `a`, `a-b`, `a-b/n`, lists, `mon`..`sun`,
//! `jan`..`dec`; `day_of_week` 0 = Monday) is expanded here to an explicit list of values;
//! `croner` then does the calendar work (month lengths, leap years, time zones, DST), with
//! day-of-month AND day-of-week semantics. The ISO `week` field, which cron lacks, filters
//! croner's candidates.

use chrono::{DateTime, Datelike, TimeZone, Timelike, Utc};
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};

/// The schedule fields, coarsest first.
pub const FIELDS: [&str; 8] = [
    "year",
    "month",
    "day",
    "week",
    "day_of_week",
    "hour",
    "minute",
    "second",
];

const DAY_NAMES: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
const MONTH_NAMES: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];

/// Where a schedule is evaluated.
#[derive(Clone, Debug, PartialEq)]
pub enum Zone {
    Local,
    Named(chrono_tz::Tz),
}

impl Zone {
    pub fn parse(name: Option<&str>) -> Result<Zone, String> {
        match name {
            None => Ok(Zone::Local),
            Some(name) => name
                .parse::<chrono_tz::Tz>()
                .map(Zone::Named)
                .map_err(|_| format!("unknown time zone {name:?}")),
        }
    }
}

/// A compiled schedule: the cron pattern plus what cron cannot express.
#[derive(Clone, Debug)]
pub struct CronSchedule {
    cron: Cron,
    /// ISO weeks allowed (`week` field), if restricted.
    weeks: Option<Vec<u32>>,
    zone: Zone,
    start: Option<DateTime<Utc>>,
    end: Option<DateTime<Utc>>,
}

/// Bound on candidates rejected by the `week` filter before giving up (a year has 53 weeks).
const MAX_CANDIDATES: usize = 100_000;

impl CronSchedule {
    /// From APScheduler fields (`(name, expression)` pairs, any order, at least one).
    pub fn from_fields(fields: &[(&str, String)], zone: Zone) -> Result<CronSchedule, String> {
        let finest = FIELDS
            .iter()
            .rposition(|f| fields.iter().any(|(name, _)| name == f))
            .ok_or("Must specify some property of the schedule")?;
        let mut exprs: Vec<String> = Vec::with_capacity(8);
        for (i, field) in FIELDS.iter().enumerate() {
            let given = fields
                .iter()
                .find(|(name, _)| name == field)
                .map(|(_, e)| e.trim().to_lowercase());
            let expr = match given {
                Some(e) => e,
                None if i > finest => default_minimum(field).to_string(),
                None => "*".to_string(),
            };
            exprs.push(expr);
        }
        let [year, month, day, week, dow, hour, minute, second] =
            [0, 1, 2, 3, 4, 5, 6, 7].map(|i| exprs[i].as_str());
        let list = |field: &str, expr: &str| -> Result<String, String> {
            let values = expand(field, expr)?;
            Ok(if values.is_none() {
                "*".into()
            } else {
                join(values.unwrap_or_default())
            })
        };
        // APScheduler day_of_week 0 = Monday; cron 0 = Sunday.
        let dow_cron = match expand("day_of_week", dow)? {
            None => "*".to_string(),
            Some(days) => join(days.into_iter().map(|d| (d + 1) % 7).collect()),
        };
        let pattern = format!(
            "{} {} {} {} {} {} {}",
            list("second", second)?,
            list("minute", minute)?,
            list("hour", hour)?,
            list("day", day)?,
            list("month", month)?,
            dow_cron,
            list("year", year)?
        );
        let weeks = expand("week", week)?;
        let cron = parser()
            .parse(&pattern)
            .map_err(|e| format!("invalid schedule {pattern:?}: {e}"))?;
        Ok(CronSchedule {
            cron,
            weeks,
            zone,
            start: None,
            end: None,
        })
    }

    /// From a 5-field (`minute hour day month day_of_week`, cron numbering: 0 = Sunday) or
    /// 6-field (seconds first) cron expression.
    pub fn from_cron(expr: &str, zone: Zone) -> Result<CronSchedule, String> {
        let parser = CronParser::builder()
            .seconds(Seconds::Optional)
            .year(Year::Disallowed)
            .dom_and_dow(false)
            .build();
        let cron = parser
            .parse(expr)
            .map_err(|e| format!("invalid cron expression {expr:?}: {e}"))?;
        Ok(CronSchedule {
            cron,
            weeks: None,
            zone,
            start: None,
            end: None,
        })
    }

    pub fn with_bounds(mut self, start: Option<DateTime<Utc>>, end: Option<DateTime<Utc>>) -> Self {
        self.start = start;
        self.end = end;
        self
    }

    /// Whether no date at all matches the fields (30 February, 31 April), whatever the
    /// bounds: searched from 1970 so that a schedule that has merely ended is not one.
    pub fn never_matches(&self) -> bool {
        let unbounded = self.clone().with_bounds(None, None);
        unbounded.next_after(DateTime::UNIX_EPOCH).is_none()
    }

    /// The first fire time strictly after `after`, or `None` if there is none (past
    /// `end_date`, or an impossible date such as 30 February).
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        // Fires at `start` itself are allowed: search from just before it.
        let mut from = match self.start {
            Some(start) if start > after => start - chrono::Duration::milliseconds(1),
            _ => after,
        };
        for _ in 0..MAX_CANDIDATES {
            let next = match &self.zone {
                Zone::Local => self.find(&from.with_timezone(&chrono::Local)),
                Zone::Named(tz) => self.find(&from.with_timezone(tz)),
            }?;
            if self.end.is_some_and(|end| next > end) {
                return None;
            }
            let week_ok = match (&self.weeks, &self.zone) {
                (None, _) => true,
                (Some(weeks), Zone::Local) => {
                    weeks.contains(&next.with_timezone(&chrono::Local).iso_week().week())
                }
                (Some(weeks), Zone::Named(tz)) => {
                    weeks.contains(&next.with_timezone(tz).iso_week().week())
                }
            };
            if week_ok {
                return Some(next);
            }
            from = next;
        }
        None
    }

    /// Fire times are whole seconds: every scheduler must compute the very same instant, as it
    /// is part of the fire's idempotency key (croner keeps the sub-second part of `from`).
    fn find<Z: TimeZone>(&self, from: &DateTime<Z>) -> Option<DateTime<Utc>> {
        let next = self
            .cron
            .find_next_occurrence(from, false)
            .ok()?
            .with_timezone(&Utc);
        next.with_nanosecond(0)
    }
}

fn parser() -> CronParser {
    CronParser::builder()
        .seconds(Seconds::Required)
        .year(Year::Required)
        .dom_and_dow(true)
        .build()
}

fn default_minimum(field: &str) -> &'static str {
    match field {
        "month" | "day" => "1",
        "hour" | "minute" | "second" => "0",
        _ => "*",
    }
}

fn range(field: &str) -> (u32, u32) {
    match field {
        "year" => (1970, 2999),
        "month" => (1, 12),
        "day" => (1, 31),
        "week" => (1, 53),
        "day_of_week" => (0, 6),
        "hour" => (0, 23),
        _ => (0, 59),
    }
}

fn join(values: Vec<u32>) -> String {
    values
        .iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// Expand one APScheduler field expression to its sorted values; `None` for `*`.
pub fn expand(field: &str, expr: &str) -> Result<Option<Vec<u32>>, String> {
    let expr = expr.trim().to_lowercase();
    if expr == "*" {
        return Ok(None);
    }
    let (lo, hi) = range(field);
    let mut values = Vec::new();
    for part in expr.split(',') {
        let part = part.trim();
        let bad = || format!("invalid {field} expression {part:?}");
        let (span, step) = match part.split_once('/') {
            Some((span, step)) => (
                span,
                step.trim()
                    .parse::<u32>()
                    .ok()
                    .filter(|s| *s > 0)
                    .ok_or_else(bad)?,
            ),
            None => (part, 1),
        };
        let (first, last) = if span == "*" {
            (lo, hi)
        } else if let Some((a, b)) = span.split_once('-') {
            (value(field, a)?, value(field, b)?)
        } else {
            let v = value(field, span)?;
            // `a/n` means from a to the end, stepping n.
            (v, if part.contains('/') { hi } else { v })
        };
        if first > last {
            return Err(format!(
                "invalid {field} range {part:?}: {first} is after {last}"
            ));
        }
        values.extend((first..=last).step_by(step as usize));
    }
    values.sort_unstable();
    values.dedup();
    Ok(Some(values))
}

fn value(field: &str, text: &str) -> Result<u32, String> {
    let text = text.trim();
    let named = match field {
        "day_of_week" => DAY_NAMES.iter().position(|d| *d == text).map(|i| i as u32),
        "month" => MONTH_NAMES
            .iter()
            .position(|m| *m == text)
            .map(|i| i as u32 + 1),
        _ => None,
    };
    let (lo, hi) = range(field);
    match named.or_else(|| text.parse::<u32>().ok()) {
        Some(v) if (lo..=hi).contains(&v) => Ok(v),
        Some(v) => Err(format!("{field} value {v} is out of range {lo}-{hi}")),
        None => Err(format!("invalid {field} value {text:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .expect("test time")
            .with_timezone(&Utc)
    }

    fn next(fields: &[(&str, &str)], after: &str) -> Option<String> {
        let fields: Vec<(&str, String)> = fields.iter().map(|(f, e)| (*f, e.to_string())).collect();
        let schedule = CronSchedule::from_fields(&fields, Zone::Named(chrono_tz::UTC))
            .expect("valid schedule");
        schedule.next_after(utc(after)).map(|t| {
            assert_eq!(
                t.timestamp_subsec_nanos(),
                0,
                "fire times are whole seconds"
            );
            t.format("%Y-%m-%d %H:%M:%S %a").to_string()
        })
    }

    /// (fields, after, expected next fire), all in UTC.
    type Case<'a> = (&'a [(&'a str, &'a str)], &'a str, Option<&'a str>);

    /// 2026-11-23 is a Monday.
    #[test]
    fn next_fire_times_follow_apscheduler() {
        let cases: &[Case] = &[
            (
                &[("second", "*/5")],
                "2026-11-23T10:00:03Z",
                Some("2026-11-23 10:00:05 Mon"),
            ),
            (
                &[("second", "*")],
                "2026-11-23T10:00:03.750Z",
                Some("2026-11-23 10:00:04 Mon"),
            ),
            (
                &[("second", "7")],
                "2026-11-23T10:00:07Z",
                Some("2026-11-23 10:01:07 Mon"),
            ),
            // Finer fields default to their minimum: minute=30 fires at :30:00 every hour.
            (
                &[("minute", "30")],
                "2026-11-23T10:31:00Z",
                Some("2026-11-23 11:30:00 Mon"),
            ),
            (
                &[("hour", "3")],
                "2026-11-23T10:00:00Z",
                Some("2026-11-24 03:00:00 Tue"),
            ),
            // day_of_week 0 = Monday; hour/minute/second default to 0, day/week stay '*'.
            (
                &[("day_of_week", "0")],
                "2026-11-23T00:00:01Z",
                Some("2026-11-30 00:00:00 Mon"),
            ),
            (
                &[("day_of_week", "sun")],
                "2026-11-23T10:00:00Z",
                Some("2026-11-29 00:00:00 Sun"),
            ),
            (
                &[("day_of_week", "5-6"), ("hour", "9")],
                "2026-11-23T10:00:00Z",
                Some("2026-11-28 09:00:00 Sat"),
            ),
            (
                &[("day_of_week", "mon-fri"), ("hour", "17"), ("minute", "45")],
                "2026-11-27T18:00:00Z",
                Some("2026-11-30 17:45:00 Mon"),
            ),
            // Coarser fields are '*': day=1 is midnight on the 1st of every month.
            (
                &[("day", "1")],
                "2026-11-23T10:00:00Z",
                Some("2026-12-01 00:00:00 Tue"),
            ),
            (
                &[("month", "feb"), ("day", "29")],
                "2026-03-01T00:00:00Z",
                Some("2028-02-29 00:00:00 Tue"),
            ),
            (
                &[("month", "2"), ("day", "30")],
                "2026-03-01T00:00:00Z",
                None,
            ),
            // day and day_of_week together must both match (APScheduler ANDs them).
            (
                &[("day", "13"), ("day_of_week", "fri")],
                "2026-11-23T00:00:00Z",
                Some("2027-08-13 00:00:00 Fri"),
            ),
            (
                &[("year", "2027"), ("month", "1")],
                "2026-11-23T00:00:00Z",
                Some("2027-01-01 00:00:00 Fri"),
            ),
            (&[("year", "2025")], "2026-11-23T00:00:00Z", None),
            // ISO week 1 of 2027 starts on Monday 2027-01-04.
            (
                &[("week", "1"), ("day_of_week", "wed")],
                "2026-11-23T00:00:00Z",
                Some("2027-01-06 00:00:00 Wed"),
            ),
            (
                &[("hour", "8-18/5"), ("minute", "0,30")],
                "2026-11-23T13:31:00Z",
                Some("2026-11-23 18:00:00 Mon"),
            ),
            (
                &[("minute", "*/20")],
                "2026-11-23T10:41:00Z",
                Some("2026-11-23 11:00:00 Mon"),
            ),
        ];
        for (fields, after, expected) in cases {
            assert_eq!(
                next(fields, after).as_deref(),
                *expected,
                "{fields:?} after {after}"
            );
        }
    }

    #[test]
    fn bounds_and_zones() {
        let fields = [("hour", "12".to_string())];
        let start = utc("2026-12-01T00:00:00Z");
        let end = utc("2026-12-02T23:00:00Z");
        let s = CronSchedule::from_fields(&fields, Zone::Named(chrono_tz::UTC))
            .unwrap()
            .with_bounds(Some(start), Some(end));
        assert_eq!(
            s.next_after(utc("2026-11-23T00:00:00Z")),
            Some(utc("2026-12-01T12:00:00Z"))
        );
        assert_eq!(
            s.next_after(utc("2026-12-01T12:00:00Z")),
            Some(utc("2026-12-02T12:00:00Z"))
        );
        assert_eq!(s.next_after(utc("2026-12-02T12:00:00Z")), None);

        let tokyo = Zone::parse(Some("Asia/Tokyo")).unwrap();
        let s = CronSchedule::from_fields(&fields, tokyo).unwrap();
        assert_eq!(
            s.next_after(utc("2026-11-23T00:00:00Z")),
            Some(utc("2026-11-23T03:00:00Z"))
        );
        assert!(Zone::parse(Some("Mars/Olympus")).is_err());
    }

    #[test]
    fn cron_expressions_use_cron_numbering() {
        let s = CronSchedule::from_cron("0 9 * * 1", Zone::Named(chrono_tz::UTC)).unwrap();
        assert_eq!(
            s.next_after(utc("2026-11-23T10:00:00Z")),
            Some(utc("2026-11-30T09:00:00Z"))
        );
        let s = CronSchedule::from_cron("*/2 * * * * *", Zone::Named(chrono_tz::UTC)).unwrap();
        assert_eq!(
            s.next_after(utc("2026-11-23T10:00:01Z")),
            Some(utc("2026-11-23T10:00:02Z"))
        );
        assert!(CronSchedule::from_cron("every tuesday", Zone::Local).is_err());
    }

    #[test]
    fn field_errors_are_explained() {
        assert_eq!(
            expand("hour", "25").unwrap_err(),
            "hour value 25 is out of range 0-23"
        );
        assert_eq!(
            expand("day_of_week", "funday").unwrap_err(),
            "invalid day_of_week value \"funday\""
        );
        assert_eq!(
            expand("minute", "*/0").unwrap_err(),
            "invalid minute expression \"*/0\""
        );
        assert_eq!(
            expand("second", "40-10").unwrap_err(),
            "invalid second range \"40-10\": 40 is after 10"
        );
        assert_eq!(expand("second", "10/20").unwrap(), Some(vec![10, 30, 50]));
        assert!(CronSchedule::from_fields(&[], Zone::Local).is_err());
    }
}
