//! The SQLite ceiling: a bare rusqlite loop doing what a worker does per batch of tasks, to
//! compare the transport's drain rate with.

use super::*;

/// The ceiling for the SQLite transport: one transaction per `batch` tasks that acks the
/// previous batch and claims the next, with the transport's own kind of statements (`batch`
/// 1: one task per transaction, as without batching).
pub(super) fn bare_sqlite_rate(path: &Path, n: u64, batch: usize) -> Result<f64> {
    let db = |e: rusqlite::Error| Error::new(format!("bare SQLite loop: {e}"));
    let _ = std::fs::remove_file(path);
    let mut conn = rusqlite::Connection::open(path).map_err(db)?;
    conn.execute_batch(
        "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;
         CREATE TABLE tasks (id INTEGER PRIMARY KEY, queue TEXT NOT NULL, payload TEXT NOT NULL,
             state TEXT NOT NULL, run_at INTEGER NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
             lease_token INTEGER NOT NULL DEFAULT 0, owner TEXT, lease_until INTEGER);
         CREATE INDEX tasks_claim_order ON tasks (queue, state, run_at, id);",
    )
    .map_err(db)?;
    {
        let tx = conn.transaction().map_err(db)?;
        {
            let mut insert = tx
                .prepare("INSERT INTO tasks (queue, payload, state, run_at) VALUES ('q', ?1, 'pending', 0)")
                .map_err(db)?;
            for i in 0..n {
                insert.execute([format!("{{\"n\":{i}}}")]).map_err(db)?;
            }
        }
        tx.commit().map_err(db)?;
    }
    let start = Instant::now();
    let mut previous: Vec<i64> = Vec::new();
    loop {
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(db)?;
        for id in previous.drain(..) {
            tx.prepare_cached("DELETE FROM tasks WHERE id = ?1 AND lease_token = 1")
                .map_err(db)?
                .execute([id])
                .map_err(db)?;
        }
        let claimed: Vec<(i64, String)> = tx
            .prepare_cached(
                "UPDATE tasks SET state = 'running', attempts = attempts + 1, lease_token = lease_token + 1,
                     owner = 'bench', lease_until = ?1
                 WHERE id IN (SELECT id FROM tasks WHERE queue = 'q' AND state = 'pending' AND run_at <= ?1 ORDER BY run_at, id LIMIT ?2)
                 RETURNING id, payload",
            )
            .map_err(db)?
            .query_map(
                rusqlite::params![now_us() as i64 / 1000 + 60_000, batch.max(1) as i64],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .map_err(db)?
            .collect::<rusqlite::Result<_>>()
            .map_err(db)?;
        tx.commit().map_err(db)?;
        if claimed.is_empty() {
            break;
        }
        for (id, payload) in claimed {
            let _: Value = serde_json::from_str(&payload).unwrap_or(Value::Null);
            previous.push(id);
        }
    }
    Ok(n as f64 / start.elapsed().as_secs_f64())
}
