//! Operator tasks of `rex.asynctask`: submit, inspect, retry and purge tasks, pause and resume
//! queues, drain a queue. One task's detail is in [`super::show`], the live masters in
//! [`super::masters`].

use std::io::BufRead;
use std::time::SystemTime;

use serde_json::Value;

use crate::cli::Parsed;
use crate::error::{Error, Result};
use crate::project::{App, Requirement};
use crate::runtime::current_thread;
use rex_transport::{PurgeWhich, Selector, Submit};

pub(super) fn app(parsed: &Parsed) -> Result<App> {
    App::build(
        &parsed.project_args(),
        Requirement {
            package: "rex.asynctask",
            fallback: Some("rex.asynctask"),
        },
    )
}

/// One payload as given: within the size limit (checked on the text, before parsing), a
/// JSON object, nested at most `MAX_PAYLOAD_DEPTH` levels. Errors quote an excerpt only.
pub(crate) fn parse_payload(text: &str, max_size: usize) -> Result<rex_transport::Payload> {
    let text = text.trim();
    rex_transport::check_size(text.len(), max_size)?;
    // Before parsing: as the first key of its object, the parser would consume it.
    if rex_transport::has_reserved_key(text) {
        return Err(rex_transport::TransportError::ReservedKey.into());
    }
    let value: Value = serde_json::from_str(text).map_err(|e| {
        Error::with_body("Expected a JSON object", e.to_string())
            .context("Got:", rex_transport::excerpt(text, rex_transport::EXCERPT))
    })?;
    rex_transport::normalize_payload(value).map_err(Error::from)
}

/// The lines of `input`, each refused once it passes `max` bytes, without holding more of it
/// than that in memory.
fn bounded_lines(
    mut input: impl BufRead,
    max: usize,
) -> impl Iterator<Item = Result<(usize, String)>> {
    let mut n = 0;
    std::iter::from_fn(move || {
        n += 1;
        let at_line = |e: Error| e.context("While reading standard input, line:", n.to_string());
        let mut line = Vec::new();
        // A little over the limit (a line end, a CR) is enough to know it is too long.
        let limit = max as u64 + 3;
        match std::io::Read::take(&mut input, limit).read_until(b'\n', &mut line) {
            Ok(0) => None,
            Ok(read) if read as u64 == limit && !line.ends_with(b"\n") => {
                let size = skip_line(&mut input).map(|rest| read + rest);
                Some(size.map_err(Error::from).and_then(|size| {
                    Err(at_line(
                        rex_transport::TransportError::PayloadTooLarge { size, max }.into(),
                    ))
                }))
            }
            Ok(_) => Some(
                String::from_utf8(line)
                    .map(|text| (n, text))
                    .map_err(|_| at_line(Error::new("Expected UTF-8 text"))),
            ),
            Err(e) => Some(Err(e.into())),
        }
    })
}

/// Read past the rest of a line; how many bytes it had (its line end not counted).
fn skip_line(input: &mut impl BufRead) -> std::io::Result<usize> {
    let mut size = 0;
    loop {
        let buf = input.fill_buf()?;
        if buf.is_empty() {
            return Ok(size);
        }
        match buf.iter().position(|b| *b == b'\n') {
            Some(i) => {
                input.consume(i + 1);
                return Ok(size + i);
            }
            None => {
                let len = buf.len();
                size += len;
                input.consume(len);
            }
        }
    }
}

/// How many tasks `asynctask-submit -` sends per batch.
const SUBMIT_BATCH: usize = 500;

pub fn submit(parsed: &Parsed) -> Result<i32> {
    let app = app(parsed)?;
    let queue = parsed.arg("queue").unwrap_or_default();
    rex_transport::validate_queue_name(&queue)?;
    let delay = parsed
        .value("delay")
        .map(|d| crate::settings::parse_duration(&d))
        .transpose()
        .map_err(|e| e.context("While parsing option:", "--delay"))?;
    let text = parsed.arg("payload").unwrap_or_default();
    let max_size = app.settings.max_payload_size();
    // Parse everything before submitting anything: a bad line must not leave half a batch.
    let payloads = if text == "-" {
        let mut payloads = Vec::new();
        for line in bounded_lines(std::io::stdin().lock(), max_size) {
            let (n, line) = line?;
            if line.trim().is_empty() {
                continue;
            }
            payloads
                .push(parse_payload(&line, max_size).map_err(|e| {
                    e.context("While reading standard input, line:", n.to_string())
                })?);
        }
        payloads
    } else {
        vec![parse_payload(&text, max_size)?]
    };
    let transport = app.open_shared_transport()?;
    let run_at = delay.map(|d| SystemTime::now() + d);
    let tasks: Vec<Submit> = payloads
        .into_iter()
        .map(|payload| Submit {
            queue: queue.clone(),
            payload,
        })
        .collect();
    // In batches: one transaction (or one pipelined round) per SUBMIT_BATCH tasks.
    current_thread()?.block_on(async {
        for batch in tasks.chunks(SUBMIT_BATCH) {
            transport.submit_batch(batch, run_at).await?;
        }
        Ok::<_, Error>(())
    })?;
    Ok(0)
}

/// A queue in `asynctask-queues --json`: the table's columns (`ready`, `delayed`, ...) by name,
/// and `pending` (ready + delayed, the transport's count), kept for the scripts that read it
/// before `ready` was added.
#[derive(serde::Serialize)]
struct QueueRow<'a> {
    queue: &'a str,
    ready: u64,
    delayed: u64,
    pending: u64,
    running: u64,
    failed: u64,
    oldest_pending_ms: Option<u64>,
    paused: bool,
}

impl<'a> From<&'a rex_transport::QueueStats> for QueueRow<'a> {
    fn from(s: &'a rex_transport::QueueStats) -> Self {
        QueueRow {
            queue: &s.queue,
            ready: s.pending.saturating_sub(s.delayed),
            delayed: s.delayed,
            pending: s.pending,
            running: s.running,
            failed: s.failed,
            oldest_pending_ms: s.oldest_pending_ms,
            paused: s.paused,
        }
    }
}

pub fn queues(parsed: &Parsed) -> Result<i32> {
    let app = app(parsed)?;
    let transport = app.open_shared_transport()?;
    let stats = current_thread()?.block_on(with_paused(transport.as_ref()))?;
    if parsed.flag("json") {
        let rows: Vec<QueueRow> = stats.iter().map(QueueRow::from).collect();
        println!(
            "{}",
            serde_json::to_string(&rows).unwrap_or_else(|_| "[]".into())
        );
        return Ok(0);
    }
    if stats.is_empty() {
        println!("No tasks in any queue.");
        return Ok(0);
    }
    let rows: Vec<[String; 6]> = stats
        .iter()
        .map(QueueRow::from)
        .map(|r| {
            let oldest = r
                .oldest_pending_ms
                .map(|ms| format!("{:.1}s", ms as f64 / 1000.0))
                .unwrap_or_else(|| "-".into());
            [
                if r.paused {
                    format!("{} (paused)", r.queue)
                } else {
                    r.queue.to_string()
                },
                r.ready.to_string(),
                r.delayed.to_string(),
                r.running.to_string(),
                r.failed.to_string(),
                oldest,
            ]
        })
        .collect();
    print_table(
        [
            "QUEUE",
            "READY",
            "DELAYED",
            "RUNNING",
            "FAILED",
            "OLDEST PENDING",
        ],
        &rows,
    );
    Ok(0)
}

/// Every queue's statistics with its pause flag: the backend's `stats` may leave `paused` out
/// and lists only queues that hold tasks, so the paused queues are merged in (a paused queue
/// without tasks is listed too). A transport that cannot pause has no paused queue.
async fn with_paused(
    transport: &dyn rex_transport::Transport,
) -> Result<Vec<rex_transport::QueueStats>> {
    let mut stats = transport.stats().await?;
    let paused = match transport.paused().await {
        Ok(paused) => paused,
        Err(rex_transport::TransportError::Unsupported(_)) => Vec::new(),
        Err(e) => return Err(e.into()),
    };
    for queue in paused {
        match stats.iter_mut().find(|s| s.queue == queue) {
            Some(s) => s.paused = true,
            None => stats.push(rex_transport::QueueStats {
                queue,
                pending: 0,
                delayed: 0,
                running: 0,
                failed: 0,
                oldest_pending_ms: None,
                paused: true,
            }),
        }
    }
    stats.sort_by(|a, b| a.queue.cmp(&b.queue));
    Ok(stats)
}

/// `rex asynctask-pause <queue>`.
pub fn pause(parsed: &Parsed) -> Result<i32> {
    set_paused(parsed, true)
}

/// `rex asynctask-resume <queue>`.
pub fn resume(parsed: &Parsed) -> Result<i32> {
    set_paused(parsed, false)
}

fn set_paused(parsed: &Parsed, paused: bool) -> Result<i32> {
    let app = app(parsed)?;
    let queue = parsed.arg("queue").unwrap_or_default();
    rex_transport::validate_queue_name(&queue)?;
    let transport = app.open_shared_transport()?;
    let changed = current_thread()?.block_on(transport.set_paused(&queue, paused))?;
    match (paused, changed) {
        (true, true) => println!("Paused queue \"{queue}\"."),
        (true, false) => println!("Queue \"{queue}\" was already paused."),
        (false, true) => println!("Resumed queue \"{queue}\"."),
        (false, false) => println!("Queue \"{queue}\" was not paused."),
    }
    Ok(0)
}

pub fn schedules(parsed: &Parsed) -> Result<i32> {
    let app = app(parsed)?;
    let entries = app.settings.schedules();
    let transport = app.open_shared_transport()?;
    let now = chrono::Utc::now();
    let mut rows = Vec::with_capacity(entries.len());
    let rt = current_thread()?;
    for entry in entries {
        let last = rt
            .block_on(transport.last_fire(&entry.id))?
            .map(chrono::DateTime::<chrono::Utc>::from);
        let next = entry.schedule.next_after(now);
        rows.push(serde_json::json!({
            "id": entry.id,
            "name": entry.name(),
            "kind": if entry.worker.is_some() { "worker" } else { "ctl" },
            "queue": entry.queue(),
            "schedule": entry.description,
            "last_fire": last.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
            "next_fire": next.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
        }));
    }
    if parsed.flag("json") {
        println!("{}", Value::Array(rows));
        return Ok(0);
    }
    if rows.is_empty() {
        println!("No schedules configured.");
        return Ok(0);
    }
    let text = |v: &Value| {
        v.as_str().map(str::to_string).unwrap_or_else(|| {
            if v.is_null() {
                "-".into()
            } else {
                v.to_string()
            }
        })
    };
    let table: Vec<[String; 5]> = rows
        .iter()
        .map(|r| {
            [
                text(&r["name"]),
                text(&r["queue"]),
                text(&r["schedule"]),
                text(&r["last_fire"]),
                text(&r["next_fire"]),
            ]
        })
        .collect();
    print_table(
        ["NAME", "QUEUE", "SCHEDULE", "LAST FIRE", "NEXT FIRE"],
        &table,
    );
    Ok(0)
}

pub fn failed(parsed: &Parsed) -> Result<i32> {
    let app = app(parsed)?;
    let queue = parsed.value("queue");
    if let Some(q) = &queue {
        rex_transport::validate_queue_name(q)?;
    }
    let transport = app.open_shared_transport()?;
    let tasks = current_thread()?.block_on(transport.failed(queue.as_deref()))?;
    if parsed.flag("json") {
        println!(
            "{}",
            serde_json::to_string(&tasks).unwrap_or_else(|_| "[]".into())
        );
        return Ok(0);
    }
    if tasks.is_empty() {
        println!("No failed tasks.");
        return Ok(0);
    }
    let rows: Vec<[String; 6]> = tasks
        .into_iter()
        .map(|t| {
            let error = t.last_error.unwrap_or_default();
            [
                t.id.to_string(),
                t.queue,
                t.attempts.to_string(),
                format!("{}/{}", t.errors, t.crashes),
                error.lines().next().unwrap_or("").to_string(),
                Value::Object(t.payload).to_string(),
            ]
        })
        .collect();
    print_table(
        [
            "ID",
            "QUEUE",
            "ATTEMPTS",
            "ERR/CRASH",
            "LAST ERROR",
            "PAYLOAD",
        ],
        &rows,
    );
    Ok(0)
}

/// Left-aligned columns separated by two spaces; the last column is not padded.
pub(super) fn print_table<const N: usize>(header: [&str; N], rows: &[[String; N]]) {
    let mut widths = header.map(str::len);
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut out = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i + 1 == N {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<w$}  ", w = widths[i]));
            }
        }
        println!("{}", out.trim_end());
    };
    line(header.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
}

pub fn retry(parsed: &Parsed) -> Result<i32> {
    let app = app(parsed)?;
    let ids = parsed.args("id");
    let selector = match (ids.is_empty(), parsed.value("queue"), parsed.flag("all")) {
        (false, None, false) => Selector::Ids(
            ids.iter()
                .map(|id| {
                    id.parse()
                        .map_err(|_| Error::new(format!("invalid task id {id}")))
                })
                .collect::<Result<_>>()?,
        ),
        (true, Some(queue), false) => {
            rex_transport::validate_queue_name(&queue)?;
            Selector::Queue(queue)
        }
        (true, None, true) => Selector::All,
        _ => {
            return Err(Error::new(
                "name the tasks to retry: task ids, --queue=QUEUE or --all (exactly one of them)",
            ));
        }
    };
    let transport = app.open_shared_transport()?;
    let n = current_thread()?
        .block_on(transport.retry_failed(&selector))?
        .len();
    println!("Retrying {n} task{}.", if n == 1 { "" } else { "s" });
    Ok(0)
}

pub fn purge(parsed: &Parsed) -> Result<i32> {
    let app = app(parsed)?;
    let queue = parsed
        .value("queue")
        .ok_or_else(|| Error::new("missing value for option --queue"))?;
    rex_transport::validate_queue_name(&queue)?;
    let which = match (parsed.flag("failed"), parsed.flag("pending")) {
        (_, false) => PurgeWhich::Failed,
        (false, true) => PurgeWhich::Pending,
        (true, true) => return Err(Error::new("use either --failed or --pending, not both")),
    };
    let transport = app.open_shared_transport()?;
    let n = current_thread()?.block_on(transport.purge(&queue, which))?;
    let what = if which == PurgeWhich::Failed {
        "failed"
    } else {
        "pending"
    };
    println!(
        "Deleted {n} {what} task{} from queue {queue}.",
        if n == 1 { "" } else { "s" }
    );
    Ok(0)
}

pub fn process(parsed: &Parsed) -> Result<i32> {
    let app = app(parsed)?;
    let queue = parsed.arg("queue").unwrap_or_default();
    rex_transport::validate_queue_name(&queue)?;
    let worker = match parsed.value("worker") {
        Some(w) => w,
        None => app
            .settings
            .queues()
            .iter()
            .find(|q| q.queue == queue)
            .map(|q| q.worker.clone())
            .ok_or_else(|| Error::new(format!("Cannot identify worker for queue \"{queue}\"")))?,
    };
    let count = crate::worker::drain_in_process(&app, &queue, &worker)?;
    println!(
        "Processed {count} task{} from queue {queue}.",
        if count == 1 { "" } else { "s" }
    );
    Ok(0)
}
