//! Throughput history as the console shows it: the transport's per-minute rows
//! ([`Transport::history`](rex_transport::Transport::history)) made into one row per minute of
//! a range (zeros where nothing ran), for one queue or summed over all; the JSON of
//! `/api/history`, the table of a queue page, and the SVG chart the server draws
//! (`/charts/throughput.svg`).
//!
//! Reading the history may cost the transport a scan (RabbitMQ browses a queue of messages),
//! and every open overview reloads its chart, so a range read is kept for [`KEPT_FOR`]: the
//! masters record at most every 10 s anyway.

use std::collections::HashMap;
use std::fmt::Write;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use rex_transport::history::minute_of;
use rex_transport::{Counters, HistoryRow, TransportError};
use serde::{Deserialize, Serialize};

use crate::server::Shared;
use crate::view::{ApiError, check_queue};

/// The longest range asked for: the day the transports keep, and its margin.
pub const MAX_MINUTES: i64 = 25 * 60;
/// The range of the charts and of `/api/history` by default.
pub const DEFAULT_MINUTES: i64 = 60;
/// How long a range read is served again.
pub const KEPT_FOR: Duration = Duration::from_secs(5);
/// The most bars a chart draws: longer ranges put several minutes in a bar.
const MAX_BARS: i64 = 120;

/// `?queue=&minutes=`.
#[derive(Debug, Default, Deserialize)]
pub struct HistoryQuery {
    pub queue: Option<String>,
    pub minutes: Option<String>,
}

impl HistoryQuery {
    pub fn queue(&self) -> Result<Option<&str>, ApiError> {
        match self.queue.as_deref().filter(|q| !q.is_empty()) {
            Some(queue) => check_queue(queue).map(|()| Some(queue)),
            None => Ok(None),
        }
    }

    pub fn minutes(&self) -> Result<i64, ApiError> {
        match self.minutes.as_deref().filter(|m| !m.is_empty()) {
            None => Ok(DEFAULT_MINUTES),
            Some(text) => text
                .parse()
                .ok()
                .filter(|m| (1..=MAX_MINUTES).contains(m))
                .ok_or_else(|| {
                    ApiError::bad_request(format!(
                        "minutes must be a number from 1 to {MAX_MINUTES}, not {text:?}"
                    ))
                }),
        }
    }
}

/// One minute of a queue (or of every queue).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct MinuteView {
    /// Counted from the Unix epoch.
    pub minute: i64,
    /// `HH:MM`, UTC.
    pub at: String,
    pub processed: u64,
    pub succeeded: u64,
    pub failed: u64,
    pub retried: u64,
    pub crashed: u64,
    pub run_mean_ms: Option<f64>,
    pub run_p95_ms: Option<f64>,
    pub wait_mean_ms: Option<f64>,
}

impl MinuteView {
    fn new(minute: i64, c: &Counters) -> MinuteView {
        let at = chrono::DateTime::from_timestamp(minute * 60, 0)
            .map(|t| t.format("%H:%M").to_string())
            .unwrap_or_default();
        MinuteView {
            minute,
            at,
            processed: c.processed(),
            succeeded: c.succeeded,
            failed: c.failed,
            retried: c.retried,
            crashed: c.crashed,
            run_mean_ms: c.run.mean_ms().map(round),
            run_p95_ms: c.run.quantile_ms(0.95).map(round),
            wait_mean_ms: c.wait.mean_ms().map(round),
        }
    }
}

fn round(ms: f64) -> f64 {
    (ms * 10.0).round() / 10.0
}

/// The last `minutes` minutes up to `now`'s, oldest first, from `rows` (of one queue, or of
/// several: they are summed).
pub fn minutes_of(rows: &[HistoryRow], minutes: i64, now: SystemTime) -> Vec<MinuteView> {
    let last = minute_of(now);
    let first = last - minutes + 1;
    let mut sums: Vec<Counters> = vec![Counters::default(); usize::try_from(minutes).unwrap_or(0)];
    for row in rows {
        if let Some(sum) = usize::try_from(row.minute - first)
            .ok()
            .and_then(|i| sums.get_mut(i))
        {
            sum.add(&row.counters);
        }
    }
    (first..=last)
        .zip(&sums)
        .map(|(minute, c)| MinuteView::new(minute, c))
        .collect()
}

/// A range: the queue (every queue with `None`) and how many minutes.
type Range = (Option<String>, i64);

/// A range read, and when.
type Read = (Instant, Arc<Vec<MinuteView>>);

/// The range reads kept for [`KEPT_FOR`].
#[derive(Default)]
pub struct Kept(Mutex<HashMap<Range, Read>>);

/// The last `minutes` minutes of `queue` (every queue with `None`).
pub async fn series(
    state: &Shared,
    queue: Option<&str>,
    minutes: i64,
) -> Result<Arc<Vec<MinuteView>>, TransportError> {
    let key = (queue.map(str::to_string), minutes);
    {
        let mut kept = state
            .history
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        kept.retain(|_, (at, _)| at.elapsed() < KEPT_FOR);
        if let Some((_, series)) = kept.get(&key) {
            return Ok(Arc::clone(series));
        }
    }
    let now = SystemTime::now();
    let rows = state
        .config
        .transport
        .history(queue, minute_of(now) - minutes + 1)
        .await?;
    let series = Arc::new(minutes_of(&rows, minutes, now));
    state
        .history
        .0
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(key, (Instant::now(), Arc::clone(&series)));
    Ok(series)
}

/// The colours of the outcomes, bottom to top.
const SERIES: [(&str, &str); 4] = [
    ("succeeded", "#3a7d44"),
    ("retried", "#d39e00"),
    ("failed", "#c0392b"),
    ("crashed", "#7d3c98"),
];

/// A bar chart of `minutes`: per bar, the attempts that succeeded, were retried, failed and
/// crashed, stacked; `title` says what it is of. Every text is escaped.
pub fn chart(minutes: &[MinuteView], title: &str) -> String {
    let (width, height, left, top, bottom) = (720.0, 170.0, 44.0, 22.0, 20.0);
    let per_bar = (minutes.len() as i64 + MAX_BARS - 1) / MAX_BARS;
    let bars: Vec<(&str, [u64; 4])> = minutes
        .chunks(usize::try_from(per_bar.max(1)).unwrap_or(1))
        .map(|chunk| {
            let mut sums = [0u64; 4];
            for m in chunk {
                for (sum, n) in sums
                    .iter_mut()
                    .zip([m.succeeded, m.retried, m.failed, m.crashed])
                {
                    *sum += n;
                }
            }
            (chunk[0].at.as_str(), sums)
        })
        .collect();
    let peak = bars
        .iter()
        .map(|(_, sums)| sums.iter().sum::<u64>())
        .max()
        .unwrap_or(0)
        .max(1);
    let plot_h = height - top - bottom;
    let bar_w = (width - left) / bars.len().max(1) as f64;
    let unit = if per_bar == 1 {
        "per minute".to_string()
    } else {
        format!("per {per_bar} minutes")
    };
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" aria-label="{label}" font-family="sans-serif" font-size="11">"#,
        label = escape(&format!("{title}, tasks {unit}")),
    );
    let _ = write!(svg, "<title>{}</title>", escape(title));
    let _ = write!(
        svg,
        r##"<text x="0" y="12">{peak}</text><text x="0" y="{y}">0</text><text x="{left}" y="12">{unit}:</text>"##,
        y = height - bottom,
    );
    let mut x = left + 90.0;
    for (name, colour) in SERIES {
        let _ = write!(
            svg,
            r#"<rect x="{x}" y="4" width="9" height="9" fill="{colour}"/><text x="{tx}" y="12">{name}</text>"#,
            tx = x + 12.0
        );
        x += 80.0;
    }
    let _ = write!(
        svg,
        r##"<line x1="{left}" y1="{y}" x2="{width}" y2="{y}" stroke="#999"/>"##,
        y = height - bottom
    );
    for (i, (at, sums)) in bars.iter().enumerate() {
        let total: u64 = sums.iter().sum();
        let bx = left + i as f64 * bar_w;
        let mut y = height - bottom;
        let _ = write!(
            svg,
            r#"<g class="bar" data-at="{at}" data-total="{total}">"#
        );
        let _ = write!(
            svg,
            "<title>{at} UTC: {total} ({} succeeded, {} retried, {} failed, {} crashed)</title>",
            sums[0], sums[1], sums[2], sums[3]
        );
        for ((_, colour), n) in SERIES.iter().zip(sums) {
            if *n == 0 {
                continue;
            }
            let h = plot_h * *n as f64 / peak as f64;
            y -= h;
            let _ = write!(
                svg,
                r#"<rect x="{bx:.1}" y="{y:.1}" width="{w:.1}" height="{h:.1}" fill="{colour}"/>"#,
                w = (bar_w - 1.0).max(0.5)
            );
        }
        svg.push_str("</g>");
    }
    if let (Some((first, _)), Some((last, _))) = (bars.first(), bars.last()) {
        let _ = write!(
            svg,
            r#"<text x="{left}" y="{height}">{first} UTC</text><text x="{width}" y="{height}" text-anchor="end">{last}</text>"#,
        );
    }
    svg.push_str("</svg>");
    svg
}

/// Text for SVG (XML) content and attributes.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(queue: &str, minute: i64, succeeded: u64, crashed: u64) -> HistoryRow {
        HistoryRow {
            queue: queue.into(),
            minute,
            counters: Counters {
                succeeded,
                crashed,
                ..Counters::default()
            },
        }
    }

    #[test]
    fn every_minute_of_the_range_is_there_and_queues_are_summed() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(600 * 60 + 30);
        let rows = [
            row("a", 598, 2, 0),
            row("b", 598, 1, 1),
            row("a", 500, 9, 0),
        ];
        let minutes = minutes_of(&rows, 3, now);
        let seen: Vec<_> = minutes
            .iter()
            .map(|m| (m.minute, m.processed, m.crashed))
            .collect();
        assert_eq!(seen, [(598, 4, 1), (599, 0, 0), (600, 0, 0)]);
        assert_eq!(minutes[0].at, "09:58");
    }

    #[test]
    fn the_chart_draws_a_bar_per_minute_up_to_its_limit_and_escapes_its_title() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(10_000 * 60);
        let rows = [row("a", 10_000, 5, 1)];
        let svg = chart(&minutes_of(&rows, 60, now), "<jobs>");
        assert_eq!(svg.matches(r#"<g class="bar""#).count(), 60);
        assert!(svg.contains(r#"data-total="6""#));
        assert!(svg.contains("&lt;jobs&gt;") && !svg.contains("<jobs>"));
        let day = chart(&minutes_of(&rows, 1440, now), "a");
        assert_eq!(day.matches(r#"<g class="bar""#).count(), 120);
        assert!(day.contains("per 12 minutes"));
    }

    #[test]
    fn ranges_are_checked() {
        let query = |minutes: &str| HistoryQuery {
            queue: None,
            minutes: Some(minutes.into()),
        };
        assert_eq!(query("").minutes().unwrap(), DEFAULT_MINUTES);
        assert_eq!(query("1440").minutes().unwrap(), 1440);
        assert!(query("0").minutes().is_err());
        assert!(query("99999").minutes().is_err());
        assert!(query("x").minutes().is_err());
    }
}
