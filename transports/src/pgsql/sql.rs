//! The text of every statement the transport prepares, loaded from `sql/queries/*.sql` and
//! `sql/migrations/*.sql` and completed with the schema name once per transport. The SQL lives
//! in files of its own so that it reads (and can be tried in `psql`) as SQL; what each query's
//! parameters are is said here, next to the fields the code binds them through.

use super::schema::MIGRATIONS;

/// What stands for the quoted schema name in the `.sql` files.
const SCHEMA_TOKEN: &str = "{schema}";

/// `sql` with the schema filled in: every [`SCHEMA_TOKEN`] becomes `"schema"` (the name is
/// checked when the URI is parsed, so quoting it is enough).
pub(super) fn with_schema(sql: &str, schema: &str) -> String {
    sql.replace(SCHEMA_TOKEN, &format!("\"{schema}\""))
}

/// The columns read by [`task_from_row`](super::rows::task_from_row), in its order: what
/// `claim_batch`, `complete_and_claim`, `complete_batch_and_claim`,
/// `settle_and_claim`, `owned_by` and `expired` return (the batch claims add `run_at`, to sort by).
#[cfg(test)]
const TASK_COLUMNS: &str = "id, queue, payload::text, attempts, errors, crashes, lease_token, owner, lease_until, created_at";

/// The columns read by [`summary_from_row`](super::rows::summary_from_row): what `failed`,
/// `task` and `list` return.
#[cfg(test)]
const SUMMARY_COLUMNS: &str = "id, queue, state, payload::text, attempts, errors, crashes, last_error, history::text, created_at, run_at, owner, ";

/// Every statement, with the schema filled in (built once per transport; the pool's statement
/// cache prepares each once per connection).
pub(super) struct Sql {
    pub(super) version: String,
    pub(super) version_table: String,
    pub(super) migrations: [String; MIGRATIONS.len()],
    pub(super) set_version: String,
    /// `CREATE SCHEMA`, run unprepared by the migration when the schema does not exist.
    pub(super) create_schema: String,
    pub(super) submit: String,
    /// `$1`/`$2` queues and payloads, `$3` run_at, `$4` now, `$5` the channel: one row, the
    /// ids in the order given (the rows are inserted in that order) and the notifications.
    pub(super) submit_batch: String,
    /// The task's id is drawn with the key, so that the key, the task and the notification
    /// are one statement — and nothing at all when the key was used before.
    pub(super) submit_keyed: String,
    /// `claim` of up to `$5` tasks; the rows end with `run_at` (`RETURNING` has no order).
    pub(super) claim_batch: String,
    /// One statement (one round trip, its own transaction): ack one completion (`$5`/`$6`),
    /// claim the next task, and commit without waiting for the WAL flush (see
    /// `settle_and_claim` in `mod.rs`). The task columns come first (all NULL when nothing is
    /// ready), then the ack count. Kept for a window of one: one row back, and no slower
    /// than `complete_batch_and_claim` with one of each (within the noise of a measurement).
    pub(super) complete_and_claim: String,
    /// `complete_and_claim` of a batch: acknowledge the completions `$5`/`$6` (ids and
    /// tokens), claim up to `$7` tasks, and commit without waiting for the WAL flush.
    /// `$1`..`$4` are the claim's owner, lease end, queue and now. Rows: a claimed task (task
    /// columns, then `run_at`), an applied completion (only its id), or the setting (all NULL).
    pub(super) complete_batch_and_claim: String,
    /// Every kind of settlement and a claim in one statement, committed durably: `$1`..`$5`
    /// the claim (owner, lease end, queue, now, window), `$6`/`$7` completions, `$8`..`$10`
    /// their submits (the completed task, queue, payload), `$11`..`$15` failures (id, token,
    /// retry_at or NULL, outcome, reason), `$16`..`$18` releases (id, token, reason), `$19`
    /// the time as epoch ms for the history, `$20` the channel. Rows as `complete_batch_and_claim`'s
    /// (NULL rows are the notifications).
    ///
    /// In both batch statements, the settlements compare `state` with `(SELECT 'running'::text)` rather than
    /// the constant: the constant would let the planner scan the whole partial index of
    /// running tasks (dead entries included, thousands after a busy while) instead of looking
    /// the ids up in the primary key. Only the primary key can serve the comparison with an
    /// expression.
    pub(super) settle_and_claim: String,
    pub(super) complete: String,
    pub(super) complete_submits: String,
    /// `fail_retry` and `fail_final` set the same columns besides the state; `$1` is
    /// `retry_at` (or NULL; `fail_final`: now, the time of failure), `$2`..`$6` the failure, `$7`/`$8` the lease (`$9` the channel, to
    /// notify on retry). `attempts` and `owner` on the right-hand side are the values before
    /// the update.
    pub(super) fail_retry: String,
    pub(super) fail_final: String,
    pub(super) release: String,
    pub(super) owned_by: String,
    pub(super) expired: String,
    pub(super) renew: String,
    /// `counts` and `stats` share their four counts; `$1` is now.
    pub(super) counts: String,
    pub(super) stats: String,
    pub(super) failed: String,
    pub(super) retry_ids: String,
    pub(super) retry_queue: String,
    pub(super) retry_all: String,
    pub(super) notify: String,
    pub(super) purge: String,
    pub(super) last_fire: String,
    /// Schedule keys older than $1 except each schedule's latest (see `sqlite/sql/queries/prune_schedule_keys.sql`).
    pub(super) prune_schedule_keys: String,
    /// Run-now keys used before $1 (ms).
    pub(super) prune_manual_keys: String,
    /// The earliest `run_at` of the pending tasks of `$1`, and whether `$1` is paused.
    pub(super) next_pending: String,
    /// `VACUUM`, run unprepared by `maintain`.
    pub(super) vacuum: String,
    /// `$1` the queue: a row inserted when it was not paused yet.
    pub(super) pause: String,
    /// `$1` the queue, `$2` the channel: a row (its notification) when it was paused.
    pub(super) resume: String,
    pub(super) paused: String,
    pub(super) task: String,
    /// The heads of `list` and `count`, to which `console.rs` appends a filter's conditions.
    pub(super) list: String,
    pub(super) count: String,
    /// The failed tasks among the ids `$1`.
    pub(super) purge_failed: String,
    /// `$1` the master's id, `$2` its record (JSON), `$3` when it expires.
    pub(super) beat: String,
    pub(super) forget_master: String,
    /// The records (JSON) of the masters whose record expires after `$1`, by id; the others
    /// are deleted.
    pub(super) masters: String,
    /// `$1` a pending task, `$2` the reason, `$3` now, `$4` now in ms: failed, cancelled.
    pub(super) cancel_pending: String,
    /// `$1` task, `$2` attempt, `$3` now, `$4` the oldest request kept.
    pub(super) request_cancel: String,
    /// The requests made at `$1` or later.
    pub(super) cancel_requests: String,
    /// Deletes the requests of tasks not running (after a retry).
    pub(super) forget_cancel_requests: String,
    /// `$1` a schedule id: a row when it was not paused yet.
    pub(super) pause_schedule: String,
    /// `$1` a schedule id: a row when it was paused.
    pub(super) resume_schedule: String,
    pub(super) paused_schedules: String,
    /// `$1` minute, `$2` queue, `$3`–`$6` succeeded, failed, retried, crashed, `$7`/`$8` the
    /// run time buckets and sum, `$9`/`$10` the wait's: added to the row's counters.
    pub(super) history_add: String,
    /// Deletes the rows before minute `$1`.
    pub(super) history_prune: String,
    /// `$1` the recording's name, `$2` now: inserts it unless made already.
    pub(super) history_recording: String,
    /// `$1` the oldest time a recording's name is kept.
    pub(super) history_recordings_prune: String,
    /// The rows from minute `$1` on, of queue `$2` (every queue when NULL).
    pub(super) history: String,
    /// The heads of a listing and a count of completed tasks (`list`, `count` over `completed`).
    pub(super) list_completed: String,
    pub(super) count_completed: String,
    /// A completed task by id, as `task` reads a task.
    pub(super) task_completed: String,
    /// Pruning: the queues with completed tasks, a queue's cap cut-off, one chunk to delete.
    pub(super) completed_queues: String,
    pub(super) completed_cutoff: String,
    pub(super) prune_completed: String,
}

impl Sql {
    pub(super) fn new(schema: &str) -> Sql {
        let s = |sql: &str| with_schema(sql, schema);
        Sql {
            version: s(include_str!("sql/queries/version.sql")),
            version_table: s(include_str!("sql/queries/version_table.sql")),
            migrations: MIGRATIONS.map(s),
            set_version: s(include_str!("sql/queries/set_version.sql")),
            create_schema: s(include_str!("sql/queries/create_schema.sql")),
            submit: s(include_str!("sql/queries/submit.sql")),
            submit_batch: s(include_str!("sql/queries/submit_batch.sql")),
            submit_keyed: s(include_str!("sql/queries/submit_keyed.sql")),
            claim_batch: s(include_str!("sql/queries/claim_batch.sql")),
            complete_and_claim: s(include_str!("sql/queries/complete_and_claim.sql")),
            complete_batch_and_claim: s(include_str!("sql/queries/complete_batch_and_claim.sql")),
            settle_and_claim: s(include_str!("sql/queries/settle_and_claim.sql")),
            complete: s(include_str!("sql/queries/complete.sql")),
            complete_submits: s(include_str!("sql/queries/complete_submits.sql")),
            fail_retry: s(include_str!("sql/queries/fail_retry.sql")),
            fail_final: s(include_str!("sql/queries/fail_final.sql")),
            release: s(include_str!("sql/queries/release.sql")),
            owned_by: s(include_str!("sql/queries/owned_by.sql")),
            expired: s(include_str!("sql/queries/expired.sql")),
            renew: s(include_str!("sql/queries/renew.sql")),
            counts: s(include_str!("sql/queries/counts.sql")),
            stats: s(include_str!("sql/queries/stats.sql")),
            failed: s(include_str!("sql/queries/failed.sql")),
            retry_ids: s(include_str!("sql/queries/retry_ids.sql")),
            retry_queue: s(include_str!("sql/queries/retry_queue.sql")),
            retry_all: s(include_str!("sql/queries/retry_all.sql")),
            notify: include_str!("sql/queries/notify.sql").into(),
            purge: s(include_str!("sql/queries/purge.sql")),
            last_fire: s(include_str!("sql/queries/last_fire.sql")),
            prune_schedule_keys: s(include_str!("sql/queries/prune_schedule_keys.sql")),
            prune_manual_keys: s(include_str!("sql/queries/prune_manual_keys.sql")),
            next_pending: s(include_str!("sql/queries/next_pending.sql")),
            vacuum: s(include_str!("sql/queries/vacuum.sql")),
            pause: s(include_str!("sql/queries/pause.sql")),
            resume: s(include_str!("sql/queries/resume.sql")),
            paused: s(include_str!("sql/queries/paused.sql")),
            task: s(include_str!("sql/queries/task.sql")),
            list: s(include_str!("sql/queries/list.sql")),
            count: s(include_str!("sql/queries/count.sql")),
            purge_failed: s(include_str!("sql/queries/purge_failed.sql")),
            beat: s(include_str!("sql/queries/beat.sql")),
            forget_master: s(include_str!("sql/queries/forget_master.sql")),
            masters: s(include_str!("sql/queries/masters.sql")),
            cancel_pending: s(include_str!("sql/queries/cancel_pending.sql")),
            request_cancel: s(include_str!("sql/queries/request_cancel.sql")),
            cancel_requests: s(include_str!("sql/queries/cancel_requests.sql")),
            forget_cancel_requests: s(include_str!("sql/queries/forget_cancel_requests.sql")),
            pause_schedule: s(include_str!("sql/queries/pause_schedule.sql")),
            resume_schedule: s(include_str!("sql/queries/resume_schedule.sql")),
            paused_schedules: s(include_str!("sql/queries/paused_schedules.sql")),
            history_add: s(include_str!("sql/queries/history_add.sql")),
            history_prune: s(include_str!("sql/queries/history_prune.sql")),
            history_recording: s(include_str!("sql/queries/history_recording.sql")),
            history_recordings_prune: s(include_str!("sql/queries/history_recordings_prune.sql")),
            history: s(include_str!("sql/queries/history.sql")),
            list_completed: s(include_str!("sql/queries/list_completed.sql")),
            count_completed: s(include_str!("sql/queries/count_completed.sql")),
            task_completed: s(include_str!("sql/queries/task_completed.sql")),
            completed_queues: s(include_str!("sql/queries/completed_queues.sql")),
            completed_cutoff: s(include_str!("sql/queries/completed_cutoff.sql")),
            prune_completed: s(include_str!("sql/queries/prune_completed.sql")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The `.sql` files list the columns themselves; the row decoders read them by position.
    #[test]
    fn queries_return_the_columns_the_decoders_read() {
        let sql = Sql::new("asynctask");
        for (name, text) in [
            ("claim_batch", &sql.claim_batch),
            ("complete_and_claim", &sql.complete_and_claim),
            ("complete_batch_and_claim", &sql.complete_batch_and_claim),
            ("settle_and_claim", &sql.settle_and_claim),
            ("owned_by", &sql.owned_by),
            ("expired", &sql.expired),
        ] {
            assert!(text.contains(TASK_COLUMNS), "{name}: {text}");
        }
        for text in [&sql.failed, &sql.task, &sql.list, &sql.list_completed] {
            assert!(text.contains(SUMMARY_COLUMNS), "{text}");
        }
    }

    #[test]
    fn every_schema_token_is_replaced() {
        let sql = Sql::new("work");
        assert!(
            sql.claim_batch.starts_with("UPDATE \"work\".tasks SET"),
            "{}",
            sql.claim_batch
        );
        for text in sql.migrations.iter().chain([
            &sql.submit_keyed,
            &sql.submit_batch,
            &sql.settle_and_claim,
            &sql.vacuum,
        ]) {
            assert!(!text.contains('{'), "{text}");
        }
    }
}
