//! The PostgreSQL transport (`postgresql://`, `postgres://`, `pgsql://`, or `pgsql:DBNAME` for
//! a local server): one database shared by the workers of many hosts.
//!
//! # URIs
//!
//! `postgresql://[USER[:PASSWORD]@][HOST][:PORT][/DBNAME][?PARAMS]` (also `postgres://` and
//! `pgsql://`), or `pgsql:DBNAME[?PARAMS]`. Omitted parts come from `PGHOST` (else
//! `127.0.0.1`), `PGPORT` (else 5432), `PGUSER` (else `postgres`), `PGPASSWORD` and
//! `PGDATABASE` (else the user name), like libpq. Parameters: `schema` (default `asynctask`),
//! `sslmode`, `sslrootcert`, `sslcert` + `sslkey` (below), `application_name` (default `rex`),
//! `connect_timeout` (seconds, default 10).
//!
//! # TLS
//!
//! `sslmode` means what it means to libpq (default `prefer`, or `PGSSLMODE`): `disable` never
//! encrypts; `allow`/`prefer` encrypt when the server offers it, checking nothing; `require`
//! insists on TLS, checking nothing unless a root certificate is given, then the chain;
//! `verify-ca` checks the chain; `verify-full` checks the chain and that the certificate names
//! the host. `sslrootcert` (or `PGSSLROOTCERT`) is a PEM file of the roots to trust (instead
//! of the system's); `sslcert` + `sslkey` a client certificate and its PKCS#8 key, both PEM.
//!
//! # Layout
//!
//! Everything lives in its own schema (`asynctask`): `tasks` (like SQLite's, times as
//! `timestamptz`, the payload as `json` text — kept exactly as written — and the attempt
//! history as a `jsonb` array), `idempotency_keys`, and `schema_version`. The schema is created
//! or migrated on first use ([`MIGRATIONS`], all in one transaction), under a transaction-level
//! advisory lock so that many processes starting at once do not race.
//!
//! # Concurrency
//!
//! A claim is one `UPDATE ... WHERE id = (SELECT ... FOR UPDATE SKIP LOCKED) RETURNING`: no
//! queue-wide lock, so consumers of one queue claim in parallel, each skipping the rows the
//! others are taking. The earliest due task goes first (`run_at`, then `id`), read from the
//! first entry of a partial index made for that order. Settlements are fenced by
//! `lease_token` in their `WHERE` clause, so a stale lease matches no row. Each transport holds
//! a small connection pool (deadpool).
//!
//! # Wake-ups
//!
//! Every change that makes a task ready (submit, completion submits, retry, release,
//! `retry_failed`) also runs `pg_notify(CHANNEL, queue)`, delivered at commit. One dedicated
//! connection per transport `LISTEN`s on the channel (started by the first [`Transport::wait`])
//! and fans the notifications out to the waiters in this process. When that connection is lost
//! it is re-established with bounded exponential backoff, and every waiter is woken once it is
//! listening again (notifications may have been missed meanwhile). An idle waiter costs one query
//! when it starts waiting (is anything ready, or when will a delayed task be?) and nothing
//! afterwards.
//!
//! # Upkeep
//!
//! Every task leaves dead row versions behind. With the server's autovacuum off,
//! [`Transport::maintain`] (run by each master every few seconds) vacuums the tables once
//! enough rows are dead, one process at a time.
//!
//! # Failures
//!
//! A lost or refused connection is [`TransportError::Unavailable`] (retryable): the pool drops
//! broken connections and opens new ones on the next operation, so the same transport works
//! again once the server is back.

use std::error::Error as _;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use deadpool_postgres::{Manager, ManagerConfig, Pool, PoolError, RecyclingMethod};
use postgres_native_tls::MakeTlsConnector;
use tokio::sync::{OnceCell, broadcast, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_postgres::config::SslMode;
use tokio_postgres::types::ToSql;
use tokio_postgres::{AsyncMessage, Row};

use crate::task::{percent_decode, schedule_key_prefix, schedule_key_time, to_epoch_ms};
use crate::tls::{TlsSettings, Verify};
use crate::{
    Attempt, Failure, FailureKind, Lease, Payload, PurgeWhich, QueueCounts, QueueStats, Result,
    Selector, Submit, SubmitOptions, Task, TaskId, TaskState, TaskSummary, Transport,
    TransportError, validate_queue_name,
};

const TRANSPORT: &str = "PostgreSQL";
/// The schema's version: the number of [`MIGRATIONS`] applied.
const SCHEMA_VERSION: i32 = MIGRATIONS.len() as i32;
const DEFAULT_SCHEMA: &str = "asynctask";
/// Schema names longer than this would make the notification channel name too long.
const MAX_SCHEMA_LEN: usize = 48;
/// Connections per transport (one process), besides the listening one.
const POOL_SIZE: usize = 4;
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// First argument of `pg_advisory_xact_lock(int, int)`: "rex" plus 1, to stay clear of other
/// applications' locks. The second argument is a hash of the schema name.
const MIGRATION_LOCK_CLASS: i32 = 0x7265_7801;
/// First argument of `pg_try_advisory_lock(int, int)` while one process vacuums a schema.
const VACUUM_LOCK_CLASS: i32 = MIGRATION_LOCK_CLASS + 1;
/// Dead rows in `tasks`, beyond a fifth of the live ones, that make [`Transport::maintain`]
/// vacuum when the server's autovacuum is off (autovacuum's rule with a larger base).
const VACUUM_DEAD_ROWS: i64 = 10_000;
/// Reconnection delays of the listening connection.
const LISTEN_BACKOFF_MIN: Duration = Duration::from_millis(100);
const LISTEN_BACKOFF_MAX: Duration = Duration::from_secs(5);
/// Notifications buffered per waiter; a waiter that falls behind just wakes up.
const WAKE_CAPACITY: usize = 256;
/// Leases and delays are capped so that every time stays within what `timestamptz` holds.
const MAX_DELAY: Duration = Duration::from_secs(1_000 * 365 * 24 * 3600);

/// The DDL of version 1. `{s}` is the quoted schema name. Queue names, owners and keys sort
/// bytewise (`COLLATE "C"`) like the other transports' — and so that schedule keys are
/// contiguous ranges whatever the database's collation.
/// Version `n` is reached by running the first `n` of these, in order, in one transaction.
const MIGRATIONS: [&str; 2] = [SCHEMA_V1, SCHEMA_V2];

const SCHEMA_V1: &str = r#"
CREATE TABLE {s}.tasks (
    id BIGSERIAL PRIMARY KEY,
    queue TEXT COLLATE "C" NOT NULL,
    payload JSON NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('pending', 'running', 'failed', 'done')),
    run_at TIMESTAMPTZ NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    errors INTEGER NOT NULL DEFAULT 0,
    crashes INTEGER NOT NULL DEFAULT 0,
    lease_token BIGINT NOT NULL DEFAULT 0,
    owner TEXT COLLATE "C",
    lease_until TIMESTAMPTZ,
    last_error TEXT,
    history JSONB NOT NULL DEFAULT '[]'
);
CREATE INDEX tasks_by_queue ON {s}.tasks (queue, state, id);
CREATE INDEX tasks_pending_by_run_at ON {s}.tasks (queue, run_at) WHERE state = 'pending';
CREATE INDEX tasks_running_by_lease ON {s}.tasks (lease_until) WHERE state = 'running';
CREATE INDEX tasks_running_by_owner ON {s}.tasks (owner) WHERE state = 'running';
CREATE TABLE {s}.idempotency_keys (
    key TEXT COLLATE "C" PRIMARY KEY,
    task_id BIGINT,
    created_at TIMESTAMPTZ NOT NULL
);
"#;

/// Version 2: the ready tasks' index also gives the claim order (due time, then id), so a
/// claim reads one index entry whatever the planner's statistics say. With the v1 index, a
/// table never analyzed (autovacuum off, or a burst of submits since the last analyze) got a
/// plan that sorted every pending task of the queue for each claim.
const SCHEMA_V2: &str = r#"
DROP INDEX {s}.tasks_pending_by_run_at;
CREATE INDEX tasks_pending_by_due ON {s}.tasks (queue, run_at, id) WHERE state = 'pending';
"#;

/// Columns read by [`task_from_row`].
macro_rules! task_columns {
    () => {
        "id, queue, payload::text, attempts, errors, crashes, lease_token, owner, lease_until, created_at"
    };
}

/// Columns read by [`summary_from_row`].
macro_rules! summary_columns {
    () => {
        "id, queue, state, payload::text, attempts, errors, crashes, last_error, history::text, created_at"
    };
}

/// Shared by `counts` and `stats`; `$1` is now.
macro_rules! count_columns {
    () => {
        "count(*) FILTER (WHERE state = 'pending' AND run_at <= $1::timestamptz),
         count(*) FILTER (WHERE state = 'pending' AND run_at > $1::timestamptz),
         count(*) FILTER (WHERE state = 'running'),
         count(*) FILTER (WHERE state = 'failed')"
    };
}

/// What `fail` sets besides the state; `$1` is `retry_at` (or NULL), `$2`..`$6` the failure,
/// `$7`/`$8` the lease. `attempts` and `owner` on the right-hand side are the values before the
/// update.
macro_rules! fail_set {
    () => {
        "run_at = COALESCE($1::timestamptz, run_at), errors = errors + $2::integer,
            crashes = crashes + $3::integer, last_error = $4::text, owner = NULL, lease_until = NULL,
            history = history || jsonb_build_array(jsonb_build_object('attempt', attempts,
                'owner', owner, 'outcome', $5::text, 'reason', $4::text, 'finished_at', $6::bigint))
         WHERE id = $7 AND lease_token = $8 AND state = 'running'"
    };
}

/// Every statement, with the schema filled in (built once per transport; the pool's statement
/// cache prepares each once per connection).
struct Sql {
    version: String,
    version_table: String,
    migrations: [String; MIGRATIONS.len()],
    set_version: String,
    submit: String,
    submit_keyed: String,
    claim: String,
    complete_and_claim: String,
    complete: String,
    complete_submits: String,
    fail_retry: String,
    fail_final: String,
    release: String,
    owned_by: String,
    expired: String,
    renew: String,
    counts: String,
    stats: String,
    failed: String,
    retry_ids: String,
    retry_queue: String,
    retry_all: String,
    notify: String,
    purge: String,
    last_fire: String,
    prune_schedule_keys: String,
    next_pending: String,
}

impl Sql {
    fn new(schema: &str) -> Sql {
        let quoted = format!("\"{schema}\"");
        let s = |sql: &str| sql.replace("{s}", &quoted);
        const RETRY: &str =
            "WITH t AS (UPDATE {s}.tasks SET state = 'pending', run_at = $1::timestamptz,
                attempts = 0, errors = 0, crashes = 0 WHERE state = 'failed'";
        Sql {
            version: s("SELECT max(version) FROM {s}.schema_version"),
            version_table: s(
                "CREATE TABLE IF NOT EXISTS {s}.schema_version (version INTEGER NOT NULL)",
            ),
            migrations: MIGRATIONS.map(s),
            set_version: s("INSERT INTO {s}.schema_version (version) VALUES ($1)"),
            submit: s(
                "WITH t AS (INSERT INTO {s}.tasks (queue, payload, state, run_at, created_at)
                    VALUES ($1::text, $2::text::json, 'pending', $3::timestamptz, $4::timestamptz)
                    RETURNING id, queue)
                 SELECT id, pg_notify($5::text, queue) FROM t",
            ),
            // The task's id is drawn with the key, so that the key, the task and the notification
            // are one statement — and nothing at all when the key was used before.
            submit_keyed: s(
                "WITH k AS (INSERT INTO {s}.idempotency_keys (key, task_id, created_at)
                    VALUES ($6::text, nextval('{s}.tasks_id_seq'), $4::timestamptz)
                    ON CONFLICT (key) DO NOTHING RETURNING task_id),
                 t AS (INSERT INTO {s}.tasks (id, queue, payload, state, run_at, created_at)
                    SELECT task_id, $1::text, $2::text::json, 'pending', $3::timestamptz, $4::timestamptz
                    FROM k RETURNING id, queue)
                 SELECT id, pg_notify($5::text, queue) FROM t",
            ),
            claim: s(concat!(
                "UPDATE {s}.tasks SET state = 'running', attempts = attempts + 1,
                    lease_token = lease_token + 1, owner = $1::text, lease_until = $2::timestamptz
                 WHERE id = (SELECT id FROM {s}.tasks
                             WHERE queue = $3::text AND state = 'pending' AND run_at <= $4::timestamptz
                             ORDER BY run_at, id LIMIT 1 FOR UPDATE SKIP LOCKED)
                 RETURNING ",
                task_columns!()
            )),
            // One statement (one round trip, its own transaction): ack, claim the next task,
            // and commit without waiting for the WAL flush (see `complete_and_claim`). The
            // task columns come first (all NULL when nothing is ready), then the ack count.
            complete_and_claim: s(concat!(
                "WITH cfg AS (SELECT set_config('synchronous_commit', 'off', true) AS v),
                 done AS (DELETE FROM {s}.tasks WHERE id = $5 AND lease_token = $6 AND state = 'running' RETURNING id),
                 next AS (UPDATE {s}.tasks SET state = 'running', attempts = attempts + 1,
                    lease_token = lease_token + 1, owner = $1::text, lease_until = $2::timestamptz
                 WHERE id = (SELECT id FROM {s}.tasks
                             WHERE queue = $3::text AND state = 'pending' AND run_at <= $4::timestamptz
                             ORDER BY run_at, id LIMIT 1 FOR UPDATE SKIP LOCKED)
                 RETURNING ",
                task_columns!(),
                ")
                 SELECT next.*, (SELECT count(*) FROM done), (SELECT v FROM cfg)
                 FROM (SELECT 1) AS one LEFT JOIN next ON true"
            )),
            complete: s(
                "DELETE FROM {s}.tasks WHERE id = $1 AND lease_token = $2 AND state = 'running'",
            ),
            complete_submits: s(
                "WITH t AS (INSERT INTO {s}.tasks (queue, payload, state, run_at, created_at)
                    SELECT n.queue, n.payload::json, 'pending', $3::timestamptz, $3::timestamptz
                    FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS n(queue, payload, i)
                    ORDER BY n.i
                    RETURNING queue)
                 SELECT pg_notify($4::text, queue) FROM (SELECT DISTINCT queue FROM t) AS q",
            ),
            fail_retry: s(concat!(
                "WITH t AS (UPDATE {s}.tasks SET state = 'pending', ",
                fail_set!(),
                " RETURNING queue) SELECT pg_notify($9::text, queue) FROM t"
            )),
            fail_final: s(concat!("UPDATE {s}.tasks SET state = 'failed', ", fail_set!())),
            release: s(
                "WITH t AS (UPDATE {s}.tasks SET state = 'pending', run_at = $1::timestamptz,
                    attempts = attempts - 1, owner = NULL, lease_until = NULL,
                    history = history || jsonb_build_array(jsonb_build_object('attempt', attempts,
                        'owner', owner, 'outcome', 'released'::text, 'reason', $2::text,
                        'finished_at', $3::bigint))
                    WHERE id = $4 AND lease_token = $5 AND state = 'running'
                    RETURNING queue)
                 SELECT pg_notify($6::text, queue) FROM t",
            ),
            owned_by: s(concat!(
                "SELECT ",
                task_columns!(),
                " FROM {s}.tasks WHERE owner = $1::text AND state = 'running' ORDER BY id"
            )),
            expired: s(concat!(
                "SELECT ",
                task_columns!(),
                " FROM {s}.tasks WHERE state = 'running' AND lease_until < $1::timestamptz ORDER BY id"
            )),
            renew: s(
                "UPDATE {s}.tasks SET lease_until = $1::timestamptz
                 WHERE state = 'running' AND owner = ANY($2::text[])",
            ),
            counts: s(concat!(
                "SELECT ",
                count_columns!(),
                ", min(run_at) FILTER (WHERE state = 'pending' AND run_at > $1::timestamptz)
                 FROM {s}.tasks WHERE queue = $2::text"
            )),
            stats: s(concat!(
                "SELECT queue, ",
                count_columns!(),
                ", min(created_at) FILTER (WHERE state = 'pending')
                 FROM {s}.tasks WHERE state <> 'done' GROUP BY queue ORDER BY queue"
            )),
            failed: s(concat!(
                "SELECT ",
                summary_columns!(),
                " FROM {s}.tasks WHERE state = 'failed' AND ($1::text IS NULL OR queue = $1::text)
                  ORDER BY id"
            )),
            retry_ids: s(&format!(
                "{RETRY} AND id = ANY($2::bigint[]) RETURNING queue)
                 SELECT queue, count(*) FROM t GROUP BY queue"
            )),
            retry_queue: s(&format!(
                "{RETRY} AND queue = $2::text RETURNING queue)
                 SELECT queue, count(*) FROM t GROUP BY queue"
            )),
            retry_all: s(&format!(
                "{RETRY} RETURNING queue) SELECT queue, count(*) FROM t GROUP BY queue"
            )),
            notify: "SELECT pg_notify($1::text, queue) FROM unnest($2::text[]) AS queue".into(),
            purge: s("DELETE FROM {s}.tasks WHERE queue = $1::text AND state = $2::text"),
            // Schedule keys older than $1 except each schedule's latest (see sqlite.rs).
            prune_schedule_keys: s(
                "DELETE FROM {s}.idempotency_keys WHERE key IN (
                     SELECT key FROM (
                         SELECT key, row_number() OVER (
                             PARTITION BY left(key, length(key) - 16) ORDER BY right(key, 16) DESC
                         ) AS newest
                         FROM {s}.idempotency_keys WHERE key LIKE 'schedule:%'
                     ) AS k WHERE newest > 1 AND right(key, 16)::bigint < $1::bigint
                 )",
            ),
            last_fire: s(
                "SELECT key FROM {s}.idempotency_keys WHERE key > $1::text AND key < $2::text
                 ORDER BY key DESC LIMIT 1",
            ),
            next_pending: s(
                "SELECT min(run_at) FROM {s}.tasks WHERE queue = $1::text AND state = 'pending'",
            ),
        }
    }
}

/// What an operation can fail with before it is turned into a [`TransportError`].
enum Fail {
    Sql(tokio_postgres::Error),
    Pool(PoolError),
    /// A row that does not decode (corrupt JSON, a negative count...).
    Data(String),
    Transport(TransportError),
}

impl From<tokio_postgres::Error> for Fail {
    fn from(e: tokio_postgres::Error) -> Self {
        Fail::Sql(e)
    }
}

impl From<PoolError> for Fail {
    fn from(e: PoolError) -> Self {
        Fail::Pool(e)
    }
}

impl From<TransportError> for Fail {
    fn from(e: TransportError) -> Self {
        Fail::Transport(e)
    }
}

/// A transport backed by one PostgreSQL database (one schema of it).
pub struct PgsqlTransport {
    /// The URI without its password, as shown by `describe` and in errors.
    uri: String,
    schema: String,
    channel: String,
    sql: Sql,
    pool: Pool,
    migrated: OnceCell<()>,
    listener: Listener,
}

impl PgsqlTransport {
    /// Parse `uri` and set up the pool. Nothing connects yet: the first operation does (and
    /// creates or migrates the schema).
    pub fn open(uri: &str) -> Result<Self> {
        let target = parse_uri(uri, &|name| std::env::var(name).ok())?;
        let tls = target
            .tls
            .connector()
            .map(MakeTlsConnector::new)
            .map_err(|reason| TransportError::InvalidUri {
                uri: redact(uri),
                reason,
            })?;
        let manager = Manager::from_config(
            target.config.clone(),
            tls.clone(),
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .build()
            .map_err(|e| TransportError::InvalidUri {
                uri: redact(uri),
                reason: e.to_string(),
            })?;
        let channel = format!("rex_{}", target.schema);
        Ok(PgsqlTransport {
            uri: target.described,
            sql: Sql::new(&target.schema),
            listener: Listener::new(target.config, tls, &channel),
            schema: target.schema,
            channel,
            pool,
            migrated: OnceCell::new(),
        })
    }

    /// The schema holding the tables.
    pub fn schema(&self) -> &str {
        &self.schema
    }

    /// A pooled connection to a migrated schema.
    async fn client(&self) -> Result<deadpool_postgres::Client, Fail> {
        self.migrated.get_or_try_init(|| self.migrate()).await?;
        Ok(self.pool.get().await?)
    }

    /// Create the schema, or check its version. The common case (it exists, current version)
    /// is two queries; otherwise the work is done under an advisory lock, in one transaction.
    async fn migrate(&self) -> Result<(), Fail> {
        let mut client = self.pool.get().await?;
        // Looked up first, so that a fresh database does not log an error.
        let table = format!("\"{}\".schema_version", self.schema);
        let exists: bool = client
            .query_one("SELECT to_regclass($1::text) IS NOT NULL", &[&table])
            .await?
            .try_get(0)?;
        if exists {
            let version: Option<i32> =
                client.query_one(&self.sql.version, &[]).await?.try_get(0)?;
            if version == Some(SCHEMA_VERSION) {
                return Ok(());
            }
        }
        let tx = client.transaction().await?;
        tx.execute(
            "SELECT pg_advisory_xact_lock($1::integer, hashtext($2::text))",
            &[&MIGRATION_LOCK_CLASS, &self.schema],
        )
        .await?;
        // Checked rather than `CREATE SCHEMA IF NOT EXISTS`, which needs the CREATE privilege
        // on the database even when the schema exists (an operator may have created it).
        let exists: bool = tx
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1::text)",
                &[&self.schema],
            )
            .await?
            .try_get(0)?;
        if !exists {
            tx.batch_execute(&format!("CREATE SCHEMA \"{}\"", self.schema))
                .await?;
        }
        tx.batch_execute(&self.sql.version_table).await?;
        // Read again under the lock: another process may have created it meanwhile.
        let version: Option<i32> = tx.query_one(&self.sql.version, &[]).await?.try_get(0)?;
        let from = version.unwrap_or(0);
        if from > SCHEMA_VERSION {
            return Err(Fail::Transport(TransportError::Backend {
                transport: TRANSPORT.to_string(),
                message: format!(
                    "schema \"{}\" has version {from}; this rex supports version {SCHEMA_VERSION} (is it newer?)",
                    self.schema
                ),
            }));
        }
        if from < SCHEMA_VERSION {
            for migration in &self.sql.migrations[from.max(0) as usize..] {
                tx.batch_execute(migration).await?;
            }
            tx.execute(&self.sql.set_version, &[&SCHEMA_VERSION])
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Turn a failure into the contract's error: connection trouble is retryable.
    fn error(&self, fail: Fail) -> TransportError {
        let unavailable = |message: String| TransportError::Unavailable {
            transport: TRANSPORT.to_string(),
            message: format!("{}: {message}", self.uri),
        };
        let backend = |message: String| TransportError::Backend {
            transport: TRANSPORT.to_string(),
            message,
        };
        match fail {
            Fail::Sql(e) if is_retryable(&e) => unavailable(error_message(&e)),
            Fail::Sql(e) => backend(error_message(&e)),
            // Getting a connection only fails when opening a new one fails.
            Fail::Pool(PoolError::Backend(e)) => unavailable(error_message(&e)),
            Fail::Pool(e) => unavailable(e.to_string()),
            Fail::Data(message) => backend(message),
            Fail::Transport(e) => e,
        }
    }

    async fn run<T>(&self, op: impl Future<Output = Result<T, Fail>>) -> Result<T> {
        op.await.map_err(|fail| self.error(fail))
    }

    /// The earliest `run_at` of the pending tasks of `queue`.
    async fn next_pending(&self, queue: &str) -> Result<Option<SystemTime>> {
        self.run(async {
            let client = self.client().await?;
            let stmt = client.prepare_cached(&self.sql.next_pending).await?;
            Ok(client.query_one(&stmt, &[&queue]).await?.try_get(0)?)
        })
        .await
    }
}

/// Whether `e` means the connection (or the server) is in trouble rather than the statement.
fn is_retryable(e: &tokio_postgres::Error) -> bool {
    match e.code() {
        // connection exception, insufficient resources, operator intervention (shutdown,
        // cancel), serialization failure / deadlock, read-only standby.
        Some(code) => {
            let code = code.code();
            ["08", "53", "57", "40"]
                .iter()
                .any(|class| code.starts_with(class))
                || code == "25006"
        }
        None => {
            e.is_closed()
                || e.source().is_some_and(|s| s.is::<std::io::Error>())
                || matches!(
                    e.to_string().as_str(),
                    "error connecting to server"
                        | "error communicating with the server"
                        | "timeout waiting for server"
                )
        }
    }
}

/// `tokio_postgres::Error` shows only its kind; add the server's message or the cause.
fn error_message(e: &tokio_postgres::Error) -> String {
    match (e.as_db_error(), e.source()) {
        (Some(db), _) => db.to_string(),
        (None, Some(cause)) => format!("{e}: {cause}"),
        (None, None) => e.to_string(),
    }
}

fn now() -> SystemTime {
    SystemTime::now()
}

/// `Instant::now() + d`, without overflowing on absurd durations.
fn later(d: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(d.min(MAX_DELAY))
        .unwrap_or_else(|| now + Duration::from_secs(86_400))
}

/// Times as stored: not before 1970 (like the other transports) nor beyond what
/// `timestamptz` holds.
fn clamp_time(t: SystemTime) -> SystemTime {
    let max = UNIX_EPOCH + MAX_DELAY * 10;
    t.clamp(UNIX_EPOCH, max)
}

fn add(t: SystemTime, d: Duration) -> SystemTime {
    clamp_time(t + d.min(MAX_DELAY))
}

/// A lease token as stored. Tokens count claims from 0, so one beyond `i64::MAX` was never
/// issued: -1 matches no row, which makes the settlement stale, as it should be.
fn token(lease: &Lease) -> i64 {
    i64::try_from(lease.token).unwrap_or(-1)
}

/// PostgreSQL text cannot hold NUL characters; a failure reason must never make `fail` fail.
fn text(s: &str) -> std::borrow::Cow<'_, str> {
    if s.contains('\0') {
        s.replace('\0', "\u{fffd}").into()
    } else {
        s.into()
    }
}

fn encode(payload: &Payload) -> Result<String, Fail> {
    serde_json::to_string(payload).map_err(|e| Fail::Data(format!("cannot encode a payload: {e}")))
}

fn decode<T: serde::de::DeserializeOwned>(row: &Row, idx: usize) -> Result<T, Fail> {
    let text: String = row.try_get(idx)?;
    serde_json::from_str(&text)
        .map_err(|e| Fail::Data(format!("corrupt JSON in column {idx}: {e}")))
}

fn get_u32(row: &Row, idx: usize) -> Result<u32, Fail> {
    let value: i32 = row.try_get(idx)?;
    u32::try_from(value).map_err(|_| Fail::Data(format!("negative value {value} in column {idx}")))
}

fn get_u64(row: &Row, idx: usize) -> Result<u64, Fail> {
    let value: i64 = row.try_get(idx)?;
    u64::try_from(value).map_err(|_| Fail::Data(format!("negative value {value} in column {idx}")))
}

fn task_from_row(row: &Row) -> Result<Task, Fail> {
    Ok(Task {
        id: row.try_get(0)?,
        queue: row.try_get(1)?,
        payload: decode(row, 2)?,
        attempt: get_u32(row, 3)?,
        errors: get_u32(row, 4)?,
        crashes: get_u32(row, 5)?,
        lease_token: get_u64(row, 6)?,
        owner: row.try_get::<_, Option<String>>(7)?.unwrap_or_default(),
        lease_until: row
            .try_get::<_, Option<SystemTime>>(8)?
            .unwrap_or(UNIX_EPOCH),
        created_at: row.try_get(9)?,
        lost: false,
    })
}

fn summary_from_row(row: &Row) -> Result<TaskSummary, Fail> {
    let state: String = row.try_get(2)?;
    Ok(TaskSummary {
        id: row.try_get(0)?,
        queue: row.try_get(1)?,
        state: TaskState::parse(&state)
            .ok_or_else(|| Fail::Data(format!("unknown task state {state:?}")))?,
        payload: decode(row, 3)?,
        attempts: get_u32(row, 4)?,
        errors: get_u32(row, 5)?,
        crashes: get_u32(row, 6)?,
        last_error: row.try_get(7)?,
        history: decode::<Vec<Attempt>>(row, 8)?,
        created_at: row.try_get(9)?,
    })
}

#[async_trait::async_trait]
impl Transport for PgsqlTransport {
    fn describe(&self) -> String {
        format!("{TRANSPORT}({}, schema {})", self.uri, self.schema)
    }

    async fn submit(
        &self,
        queue: &str,
        payload: Payload,
        opts: &SubmitOptions,
    ) -> Result<Option<TaskId>> {
        validate_queue_name(queue)?;
        self.run(async {
            let now = now();
            let run_at = clamp_time(opts.run_at.unwrap_or(now));
            let payload = encode(&payload)?;
            let client = self.client().await?;
            let row = match &opts.idempotency_key {
                None => {
                    let stmt = client.prepare_cached(&self.sql.submit).await?;
                    client
                        .query_opt(&stmt, &[&queue, &payload, &run_at, &now, &self.channel])
                        .await?
                }
                Some(key) => {
                    let stmt = client.prepare_cached(&self.sql.submit_keyed).await?;
                    let key = text(key);
                    client
                        .query_opt(
                            &stmt,
                            &[&queue, &payload, &run_at, &now, &self.channel, &key],
                        )
                        .await?
                }
            };
            Ok(row.map(|row| row.try_get(0)).transpose()?)
        })
        .await
    }

    async fn claim(&self, queue: &str, owner: &str, lease: Duration) -> Result<Option<Task>> {
        validate_queue_name(queue)?;
        self.run(async {
            let now = now();
            let client = self.client().await?;
            let stmt = client.prepare_cached(&self.sql.claim).await?;
            let row = client
                .query_opt(&stmt, &[&owner, &add(now, lease), &queue, &now])
                .await?;
            row.as_ref().map(task_from_row).transpose()
        })
        .await
    }

    async fn complete(&self, lease: &Lease, submits: &[Submit]) -> Result<bool> {
        for submit in submits {
            validate_queue_name(&submit.queue)?;
        }
        self.run(async {
            let mut client = self.client().await?;
            if submits.is_empty() {
                let stmt = client.prepare_cached(&self.sql.complete).await?;
                return Ok(client.execute(&stmt, &[&lease.id, &token(lease)]).await? == 1);
            }
            let queues: Vec<&str> = submits.iter().map(|s| s.queue.as_str()).collect();
            let payloads = submits
                .iter()
                .map(|s| encode(&s.payload))
                .collect::<Result<Vec<_>, _>>()?;
            // Dropping `tx` without committing rolls back: a stale lease submits nothing.
            let tx = client.transaction().await?;
            let stmt = tx.prepare_cached(&self.sql.complete).await?;
            if tx.execute(&stmt, &[&lease.id, &token(lease)]).await? == 0 {
                return Ok(false);
            }
            let stmt = tx.prepare_cached(&self.sql.complete_submits).await?;
            tx.execute(&stmt, &[&queues, &payloads, &now(), &self.channel])
                .await?;
            tx.commit().await?;
            Ok(true)
        })
        .await
    }

    /// One round trip per task for a busy consumer. Without follow-up submits it is one
    /// statement that commits with `synchronous_commit = off`: if the server crashes right
    /// after, what can be lost is this acknowledgement and claim — the task then runs again
    /// (at-least-once holds) — never a submitted task, whose commits stay synchronous. With
    /// submits, one durable transaction.
    async fn complete_and_claim(
        &self,
        lease: &Lease,
        submits: &[Submit],
        queue: &str,
        owner: &str,
        lease_for: Duration,
    ) -> Result<(bool, Option<Task>)> {
        for submit in submits {
            validate_queue_name(&submit.queue)?;
        }
        validate_queue_name(queue)?;
        self.run(async {
            let mut client = self.client().await?;
            if submits.is_empty() {
                let now = now();
                let stmt = client.prepare_cached(&self.sql.complete_and_claim).await?;
                let params: [&(dyn ToSql + Sync); 6] = [
                    &owner,
                    &add(now, lease_for),
                    &queue,
                    &now,
                    &lease.id,
                    &token(lease),
                ];
                let row = client.query_one(&stmt, &params).await?;
                let done: i64 = row.try_get(row.len() - 2)?;
                let claimed: Option<i64> = row.try_get(0)?;
                let next = match claimed {
                    Some(_) => Some(task_from_row(&row)?),
                    None => None,
                };
                return Ok((done == 1, next));
            }
            let tx = client.transaction().await?;
            let stmt = tx.prepare_cached(&self.sql.complete).await?;
            let done = tx.execute(&stmt, &[&lease.id, &token(lease)]).await? == 1;
            if done && !submits.is_empty() {
                let queues: Vec<&str> = submits.iter().map(|s| s.queue.as_str()).collect();
                let payloads = submits
                    .iter()
                    .map(|s| encode(&s.payload))
                    .collect::<Result<Vec<_>, _>>()?;
                let stmt = tx.prepare_cached(&self.sql.complete_submits).await?;
                tx.execute(&stmt, &[&queues, &payloads, &now(), &self.channel])
                    .await?;
            }
            let now = now();
            let stmt = tx.prepare_cached(&self.sql.claim).await?;
            let row = tx
                .query_opt(&stmt, &[&owner, &add(now, lease_for), &queue, &now])
                .await?;
            let next = row.as_ref().map(task_from_row).transpose()?;
            tx.commit().await?;
            Ok((done, next))
        })
        .await
    }

    async fn fail(
        &self,
        lease: &Lease,
        failure: &Failure,
        retry_at: Option<SystemTime>,
    ) -> Result<bool> {
        let (outcome, errors, crashes) = match failure.kind {
            FailureKind::Error => ("error", 1i32, 0i32),
            FailureKind::Crash => ("crash", 0, 1),
        };
        let reason = text(&failure.reason);
        self.run(async {
            let finished_at = to_epoch_ms(now());
            let token = token(lease);
            let client = self.client().await?;
            let changed = match retry_at.map(clamp_time) {
                Some(retry_at) => {
                    let stmt = client.prepare_cached(&self.sql.fail_retry).await?;
                    let params: [&(dyn ToSql + Sync); 9] = [
                        &retry_at,
                        &errors,
                        &crashes,
                        &reason,
                        &outcome,
                        &finished_at,
                        &lease.id,
                        &token,
                        &self.channel,
                    ];
                    client.query(&stmt, &params).await?.len()
                }
                None => {
                    let stmt = client.prepare_cached(&self.sql.fail_final).await?;
                    let params: [&(dyn ToSql + Sync); 8] = [
                        &None::<SystemTime>,
                        &errors,
                        &crashes,
                        &reason,
                        &outcome,
                        &finished_at,
                        &lease.id,
                        &token,
                    ];
                    client.execute(&stmt, &params).await? as usize
                }
            };
            Ok(changed == 1)
        })
        .await
    }

    async fn release(&self, lease: &Lease, reason: &str) -> Result<bool> {
        let reason = text(reason);
        self.run(async {
            let now = now();
            let client = self.client().await?;
            let stmt = client.prepare_cached(&self.sql.release).await?;
            let rows = client
                .query(
                    &stmt,
                    &[
                        &now,
                        &reason,
                        &to_epoch_ms(now),
                        &lease.id,
                        &token(lease),
                        &self.channel,
                    ],
                )
                .await?;
            Ok(rows.len() == 1)
        })
        .await
    }

    async fn owned_by(&self, owner: &str) -> Result<Vec<Task>> {
        self.run(async {
            let client = self.client().await?;
            let stmt = client.prepare_cached(&self.sql.owned_by).await?;
            let rows = client.query(&stmt, &[&owner]).await?;
            rows.iter().map(task_from_row).collect()
        })
        .await
    }

    async fn expired(&self, now: SystemTime) -> Result<Vec<Task>> {
        self.run(async {
            let client = self.client().await?;
            let stmt = client.prepare_cached(&self.sql.expired).await?;
            let rows = client.query(&stmt, &[&clamp_time(now)]).await?;
            rows.iter().map(task_from_row).collect()
        })
        .await
    }

    async fn renew(&self, owners: &[String], lease: Duration) -> Result<u64> {
        if owners.is_empty() {
            return Ok(0);
        }
        self.run(async {
            let client = self.client().await?;
            let stmt = client.prepare_cached(&self.sql.renew).await?;
            Ok(client
                .execute(&stmt, &[&add(now(), lease), &owners])
                .await?)
        })
        .await
    }

    async fn counts(&self, queue: &str) -> Result<QueueCounts> {
        validate_queue_name(queue)?;
        self.run(async {
            let client = self.client().await?;
            let stmt = client.prepare_cached(&self.sql.counts).await?;
            let row = client.query_one(&stmt, &[&now(), &queue]).await?;
            Ok(QueueCounts {
                ready: get_u64(&row, 0)?,
                delayed: get_u64(&row, 1)?,
                running: get_u64(&row, 2)?,
                failed: get_u64(&row, 3)?,
                next_run_at: row.try_get(4)?,
            })
        })
        .await
    }

    async fn stats(&self) -> Result<Vec<QueueStats>> {
        self.run(async {
            let now = now();
            let client = self.client().await?;
            let stmt = client.prepare_cached(&self.sql.stats).await?;
            let rows = client.query(&stmt, &[&now]).await?;
            rows.iter()
                .map(|row| {
                    let (ready, delayed) = (get_u64(row, 1)?, get_u64(row, 2)?);
                    let oldest: Option<SystemTime> = row.try_get(5)?;
                    Ok(QueueStats {
                        queue: row.try_get(0)?,
                        pending: ready + delayed,
                        delayed,
                        running: get_u64(row, 3)?,
                        failed: get_u64(row, 4)?,
                        oldest_pending_ms: oldest.map(|created| {
                            now.duration_since(created)
                                .map_or(0, |age| u64::try_from(age.as_millis()).unwrap_or(u64::MAX))
                        }),
                    })
                })
                .collect()
        })
        .await
    }

    async fn failed(&self, queue: Option<&str>) -> Result<Vec<TaskSummary>> {
        if let Some(queue) = queue {
            validate_queue_name(queue)?;
        }
        self.run(async {
            let client = self.client().await?;
            let stmt = client.prepare_cached(&self.sql.failed).await?;
            let rows = client.query(&stmt, &[&queue]).await?;
            rows.iter().map(summary_from_row).collect()
        })
        .await
    }

    async fn retry_failed(&self, selector: &Selector) -> Result<u64> {
        if let Selector::Queue(queue) = selector {
            validate_queue_name(queue)?;
        }
        self.run(async {
            let now = now();
            let client = self.client().await?;
            let rows = match selector {
                Selector::Ids(ids) => {
                    let stmt = client.prepare_cached(&self.sql.retry_ids).await?;
                    client.query(&stmt, &[&now, ids]).await?
                }
                Selector::Queue(queue) => {
                    let stmt = client.prepare_cached(&self.sql.retry_queue).await?;
                    client.query(&stmt, &[&now, queue]).await?
                }
                Selector::All => {
                    let stmt = client.prepare_cached(&self.sql.retry_all).await?;
                    client.query(&stmt, &[&now]).await?
                }
            };
            let mut moved = 0;
            let mut queues = Vec::with_capacity(rows.len());
            for row in &rows {
                queues.push(row.try_get::<_, String>(0)?);
                moved += get_u64(row, 1)?;
            }
            if !queues.is_empty() {
                // After the commit, like every notification: operators' retries are rare
                // enough for a second statement.
                let stmt = client.prepare_cached(&self.sql.notify).await?;
                client.execute(&stmt, &[&self.channel, &queues]).await?;
            }
            Ok(moved)
        })
        .await
    }

    async fn purge(&self, queue: &str, which: PurgeWhich) -> Result<u64> {
        validate_queue_name(queue)?;
        let state = match which {
            PurgeWhich::Failed => TaskState::Failed,
            PurgeWhich::Pending => TaskState::Pending,
        };
        self.run(async {
            let client = self.client().await?;
            let stmt = client.prepare_cached(&self.sql.purge).await?;
            Ok(client.execute(&stmt, &[&queue, &state.as_str()]).await?)
        })
        .await
    }

    async fn last_fire(&self, schedule: &str) -> Result<Option<SystemTime>> {
        let prefix = schedule_key_prefix(schedule);
        // Keys of one schedule are contiguous: `prefix` < key < `prefix` with ':' bumped to ';'.
        let upper = format!("{};", &prefix[..prefix.len() - 1]);
        let (prefix, upper) = (text(&prefix), text(&upper));
        let key: Option<String> = self
            .run(async {
                let client = self.client().await?;
                let stmt = client.prepare_cached(&self.sql.last_fire).await?;
                let row = client.query_opt(&stmt, &[&prefix, &upper]).await?;
                Ok(row.map(|row| row.try_get(0)).transpose()?)
            })
            .await?;
        Ok(key.as_deref().and_then(schedule_key_time))
    }

    async fn prune_schedule_keys(&self, before: SystemTime) -> Result<u64> {
        let before = to_epoch_ms(before);
        self.run(async {
            let client = self.client().await?;
            let stmt = client.prepare_cached(&self.sql.prune_schedule_keys).await?;
            Ok(client.execute(&stmt, &[&before]).await?)
        })
        .await
    }

    /// Every task leaves two or three dead row versions behind (claim, settle), and a claim
    /// scans past the dead ones of its index: without vacuum a busy queue slows down by an
    /// order of magnitude within a few hundred thousand tasks. Autovacuum normally takes care
    /// of it; when the server has it off, the masters vacuum the two tables themselves, one
    /// at a time (an advisory lock), once enough rows are dead.
    async fn maintain(&self) -> Result<Option<String>> {
        self.run(async {
            let client = self.client().await?;
            let tasks = format!("\"{}\".tasks", self.schema);
            let row = client
                .query_one(
                    "SELECT current_setting('autovacuum')::bool,
                            coalesce(s.n_dead_tup, 0), coalesce(s.n_live_tup, 0)
                     FROM (SELECT 1) AS one
                     LEFT JOIN pg_stat_user_tables s ON s.relid = to_regclass($1::text)",
                    &[&tasks],
                )
                .await?;
            let (autovacuum, dead, live): (bool, i64, i64) =
                (row.try_get(0)?, row.try_get(1)?, row.try_get(2)?);
            if autovacuum || dead < VACUUM_DEAD_ROWS + live / 5 {
                return Ok(None);
            }
            let lock = [&VACUUM_LOCK_CLASS as &(dyn ToSql + Sync), &self.schema];
            let locked: bool = client
                .query_one(
                    "SELECT pg_try_advisory_lock($1::integer, hashtext($2::text))",
                    &lock,
                )
                .await?
                .try_get(0)?;
            if !locked {
                return Ok(None); // another process is at it
            }
            let vacuumed = client
                .batch_execute(&format!(
                    "VACUUM (ANALYZE) {tasks}, \"{}\".idempotency_keys",
                    self.schema
                ))
                .await;
            let unlocked = client
                .execute(
                    "SELECT pg_advisory_unlock($1::integer, hashtext($2::text))",
                    &lock,
                )
                .await;
            if vacuumed.is_err() || unlocked.is_err() {
                // Never back into the pool while it may still hold the lock.
                drop(deadpool_postgres::Client::take(client));
            }
            vacuumed?;
            unlocked?;
            Ok(Some(format!(
                "Vacuumed {tasks} ({dead} dead rows; the server's autovacuum is off)"
            )))
        })
        .await
    }

    /// Returns when a notification for `queue` arrives (from any process), when the earliest
    /// delayed task of `queue` becomes ready, when the listening connection (re)connects, or
    /// at `timeout`. Errors other than an invalid queue name are not reported here (the next
    /// operation reports them): while the server is unreachable it simply waits, until the
    /// listener is back or the timeout.
    async fn wait(&self, queue: &str, timeout: Duration) -> Result<()> {
        validate_queue_name(queue)?;
        let deadline = later(timeout);
        self.listener.ensure_running();
        // Notifications count only once LISTEN is in effect: commits after that reach us.
        let mut listening = self.listener.wakes.listening.subscribe();
        if tokio::time::timeout_at(deadline, listening.wait_for(|on| *on))
            .await
            .is_err()
        {
            return Ok(());
        }
        // Subscribed before the check, so a task submitted after the check still wakes us.
        let mut wakes = self.listener.wakes.sender.subscribe();
        let next = match tokio::time::timeout_at(deadline, self.next_pending(queue)).await {
            Err(_) => return Ok(()),
            Ok(Ok(next)) => next,
            // The next operation reports the error; callers back off with `wait`, so it must
            // still wait (and the listener wakes us up if it has to reconnect).
            Ok(Err(_)) => None,
        };
        let wake_at = match next {
            // A delayed task becomes ready without any notification: sleep until then at most.
            Some(at) => match at.duration_since(SystemTime::now()) {
                // One millisecond more, so that the task is due when we wake up.
                Ok(delay) => deadline.min(later(delay + Duration::from_millis(1))),
                Err(_) => return Ok(()), // ready now
            },
            None => deadline,
        };
        let sleep = tokio::time::sleep_until(wake_at);
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                _ = &mut sleep => return Ok(()),
                wake = wakes.recv() => match wake {
                    Ok(Wake::Queue(other)) if *other != *queue => continue,
                    // Ours, a reconnection, or so many that some were dropped: have a look.
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => return Ok(()),
                    Err(broadcast::error::RecvError::Closed) => {
                        sleep.as_mut().await;
                        return Ok(());
                    }
                },
            }
        }
    }
}

/// A wake-up fanned out to the waiters of this process.
#[derive(Clone, Debug)]
enum Wake {
    /// A task may have become ready in this queue.
    Queue(Arc<str>),
    /// The listening connection (re)connected: notifications may have been missed.
    All,
}

/// Shared between the transport's waiters and the listening task.
struct Wakes {
    sender: broadcast::Sender<Wake>,
    /// Whether LISTEN is in effect on a live connection.
    listening: watch::Sender<bool>,
}

/// The dedicated listening connection: a task started by the first `wait`, reconnecting for as
/// long as the transport lives.
struct Listener {
    config: tokio_postgres::Config,
    tls: MakeTlsConnector,
    listen: String,
    wakes: Arc<Wakes>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl Listener {
    fn new(config: tokio_postgres::Config, tls: MakeTlsConnector, channel: &str) -> Self {
        Listener {
            config,
            tls,
            listen: format!("LISTEN \"{channel}\""),
            wakes: Arc::new(Wakes {
                sender: broadcast::channel(WAKE_CAPACITY).0,
                listening: watch::channel(false).0,
            }),
            task: Mutex::new(None),
        }
    }

    /// Start the listening task, or restart it if it ended (its runtime shut down).
    fn ensure_running(&self) {
        let mut task = self.task.lock().unwrap_or_else(PoisonError::into_inner);
        if task.as_ref().is_none_or(JoinHandle::is_finished) {
            self.wakes.listening.send_replace(false);
            *task = Some(tokio::spawn(listen_forever(
                self.config.clone(),
                self.tls.clone(),
                self.listen.clone(),
                Arc::clone(&self.wakes),
            )));
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        let task = self.task.get_mut().unwrap_or_else(PoisonError::into_inner);
        if let Some(task) = task.take() {
            task.abort();
        }
    }
}

/// Connect, LISTEN, forward notifications; after any failure wait (exponential backoff with
/// jitter, reset once a connection was listening) and start again.
async fn listen_forever(
    config: tokio_postgres::Config,
    tls: MakeTlsConnector,
    listen: String,
    wakes: Arc<Wakes>,
) {
    let mut backoff = LISTEN_BACKOFF_MIN;
    loop {
        if let Ok((client, mut connection)) = config.connect(tls.clone()).await {
            if listen_on(&client, &mut connection, &listen, &wakes).await {
                backoff = LISTEN_BACKOFF_MIN;
            }
            wakes.listening.send_replace(false);
        }
        tokio::time::sleep(backoff.mul_f64(0.5 + fastrand::f64())).await;
        backoff = (backoff * 2).min(LISTEN_BACKOFF_MAX);
    }
}

/// Serve one connection until it fails. Returns whether LISTEN took effect.
async fn listen_on(
    client: &tokio_postgres::Client,
    connection: &mut tokio_postgres::Connection<
        tokio_postgres::Socket,
        postgres_native_tls::TlsStream<tokio_postgres::Socket>,
    >,
    listen: &str,
    wakes: &Wakes,
) -> bool {
    // The connection is driven by `poll_message` below, which also sends the LISTEN.
    let request = client.batch_execute(listen);
    tokio::pin!(request);
    let mut listening = false;
    loop {
        tokio::select! {
            result = &mut request, if !listening => {
                if result.is_err() {
                    return false;
                }
                listening = true;
                wakes.listening.send_replace(true);
                let _ = wakes.sender.send(Wake::All);
            }
            message = std::future::poll_fn(|cx| connection.poll_message(cx)) => match message {
                Some(Ok(AsyncMessage::Notification(note))) => {
                    let _ = wakes.sender.send(Wake::Queue(note.payload().into()));
                }
                Some(Ok(_)) => {} // a notice
                Some(Err(_)) | None => return listening,
            },
        }
    }
}

/// Open the transport named by `uri`.
pub fn open_uri(uri: &str) -> Result<Arc<dyn Transport>> {
    Ok(Arc::new(PgsqlTransport::open(uri)?))
}

/// A parsed URI.
struct Target {
    config: tokio_postgres::Config,
    tls: TlsSettings,
    schema: String,
    /// Canonical form without the password.
    described: String,
}

/// `scheme://user:secret@...` → `scheme://user:***@...`, erring on the side of hiding: every
/// character between the first `:` of the user info and the last `@` goes (a password may hold
/// an unescaped `@` or `/`).
fn redact(uri: &str) -> String {
    let Some((scheme, rest)) = uri.split_once("://") else {
        return uri.to_string();
    };
    match rest.rfind('@') {
        Some(at) => match rest[..at].find(':') {
            Some(colon) => format!("{scheme}://{}:***{}", &rest[..colon], &rest[at..]),
            None => uri.to_string(),
        },
        None => uri.to_string(),
    }
}

fn parse_uri(uri: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Target> {
    let invalid = |reason: String| TransportError::InvalidUri {
        uri: redact(uri),
        reason,
    };
    const FORMS: &str =
        "expected postgresql://[USER[:PASSWORD]@][HOST][:PORT][/DBNAME][?PARAMS] or pgsql:DBNAME";
    let (_, rest) = uri
        .split_once(':')
        .filter(|(scheme, _)| matches!(*scheme, "pgsql" | "postgres" | "postgresql"))
        .ok_or_else(|| invalid(FORMS.into()))?;
    let (body, query) = rest.split_once('?').unwrap_or((rest, ""));
    let unescape =
        |s: &str| percent_decode(s).ok_or_else(|| invalid(format!("bad escape in {s:?}")));
    let nonempty = |s: String| Some(s).filter(|s| !s.is_empty());

    let (user, password, host, port, dbname) = if let Some(hier) = body.strip_prefix("//") {
        let (authority, path) = hier.split_once('/').unwrap_or((hier, ""));
        let (userinfo, hostport) = match authority.rsplit_once('@') {
            Some((userinfo, hostport)) => (Some(userinfo), hostport),
            None => (None, authority),
        };
        let (user, password) = match userinfo.map(|u| u.split_once(':').unwrap_or((u, ""))) {
            Some((name, secret)) => {
                let has_secret = userinfo.is_some_and(|u| u.contains(':'));
                (
                    nonempty(unescape(name)?),
                    if has_secret {
                        Some(unescape(secret)?)
                    } else {
                        None
                    },
                )
            }
            None => (None, None),
        };
        let (host, port) = if let Some(bracketed) = hostport.strip_prefix('[') {
            let (address, after) = bracketed
                .split_once(']')
                .ok_or_else(|| invalid("unclosed [ in the host".into()))?;
            match after {
                "" => (address, None),
                _ => match after.strip_prefix(':') {
                    Some(port) => (address, Some(port)),
                    None => return Err(invalid(format!("unexpected {after:?} after the host"))),
                },
            }
        } else {
            match hostport.split_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (hostport, None),
            }
        };
        let port = match port.filter(|p| !p.is_empty()) {
            Some(p) => Some(
                p.parse::<u16>()
                    .ok()
                    .filter(|p| *p != 0)
                    .ok_or_else(|| invalid(format!("bad port {p:?}")))?,
            ),
            None => None,
        };
        (
            user,
            password,
            nonempty(unescape(host)?),
            port,
            nonempty(unescape(path)?),
        )
    } else {
        if body.is_empty() || body.starts_with('/') {
            return Err(invalid(FORMS.into()));
        }
        (None, None, None, None, Some(unescape(body)?))
    };

    let mut config = tokio_postgres::Config::new();
    let mut schema = DEFAULT_SCHEMA.to_string();
    config
        .application_name("rex")
        .connect_timeout(DEFAULT_CONNECT_TIMEOUT)
        .keepalives(true)
        .keepalives_idle(Duration::from_secs(30))
        .keepalives_interval(Duration::from_secs(10))
        .keepalives_retries(3);
    let (mut sslmode, mut sslrootcert, mut sslcert, mut sslkey) = (None, None, None, None);
    for pair in query.split('&').filter(|pair| !pair.is_empty()) {
        let (key, value) = pair
            .split_once('=')
            .ok_or_else(|| invalid(format!("expected NAME=VALUE, got {pair:?}")))?;
        let value = unescape(value)?;
        match key {
            "schema" => {
                let ok = value.len() <= MAX_SCHEMA_LEN
                    && value.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
                    && value
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
                    && !value.starts_with("pg_");
                if !ok {
                    return Err(invalid(format!(
                        "schema {value:?}: expected lowercase letters, digits and underscores, \
                         not starting with a digit or pg_, at most {MAX_SCHEMA_LEN} characters"
                    )));
                }
                schema = value;
            }
            "sslmode" => sslmode = Some(value),
            "sslrootcert" => sslrootcert = Some(value),
            "sslcert" => sslcert = Some(value),
            "sslkey" => sslkey = Some(value),
            "application_name" => {
                config.application_name(value);
            }
            "connect_timeout" => {
                let seconds = value
                    .parse::<u64>()
                    .ok()
                    .filter(|s| *s > 0)
                    .ok_or_else(|| invalid(format!("bad connect_timeout {value:?}")))?;
                config.connect_timeout(Duration::from_secs(seconds));
            }
            _ => {
                return Err(invalid(format!(
                    "unknown parameter {key:?} (known: schema, sslmode, sslrootcert, sslcert, \
                     sslkey, application_name, connect_timeout)"
                )));
            }
        }
    }

    let explicit_mode = sslmode.clone();
    let sslmode = sslmode.or_else(|| env("PGSSLMODE").and_then(nonempty));
    let sslrootcert = sslrootcert.or_else(|| env("PGSSLROOTCERT").and_then(nonempty));
    // libpq's meaning of each mode; `require` with a root certificate checks the chain.
    let (mode, verify) = match sslmode.as_deref().unwrap_or("prefer") {
        "disable" => (SslMode::Disable, Verify::Nothing),
        "allow" | "prefer" => (SslMode::Prefer, Verify::Nothing),
        "require" if sslrootcert.is_some() => (SslMode::Require, Verify::Chain),
        "require" => (SslMode::Require, Verify::Nothing),
        "verify-ca" => (SslMode::Require, Verify::Chain),
        "verify-full" => (SslMode::Require, Verify::Full),
        other => {
            return Err(invalid(format!(
                "unknown sslmode {other:?} (known: disable, allow, prefer, require, verify-ca, \
                 verify-full)"
            )));
        }
    };
    config.ssl_mode(mode);
    let tls = TlsSettings::from_files(
        verify,
        ("sslrootcert", sslrootcert.as_deref()),
        ("sslcert", sslcert.as_deref()),
        ("sslkey", sslkey.as_deref()),
    )
    .map_err(&invalid)?;

    let host = host
        .or_else(|| env("PGHOST").and_then(nonempty))
        .unwrap_or_else(|| "127.0.0.1".into());
    let port = match port {
        Some(port) => port,
        None => match env("PGPORT").filter(|p| !p.is_empty()) {
            Some(p) => p
                .parse()
                .map_err(|_| invalid(format!("bad PGPORT {p:?}")))?,
            None => 5432,
        },
    };
    let user = user
        .or_else(|| env("PGUSER").and_then(nonempty))
        .unwrap_or_else(|| "postgres".into());
    let password = password.or_else(|| env("PGPASSWORD").and_then(nonempty));
    let dbname = dbname
        .or_else(|| env("PGDATABASE").and_then(nonempty))
        .unwrap_or_else(|| user.clone());
    config.host(&host).port(port).user(&user).dbname(&dbname);
    if let Some(password) = &password {
        config.password(password);
    }

    let shown_host = if host.contains(':') {
        format!("[{host}]")
    } else {
        percent_encode(&host)
    };
    let mut described = format!(
        "postgresql://{}{}@{shown_host}:{port}/{}",
        percent_encode(&user),
        if password.is_some() { ":***" } else { "" },
        percent_encode(&dbname)
    );
    if let Some(mode) = explicit_mode {
        described = format!("{described}?sslmode={mode}");
    }
    Ok(Target {
        config,
        tls,
        schema,
        described,
    })
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(uri: &str, env: &[(&str, &str)]) -> Result<Target> {
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        parse_uri(uri, &move |name| {
            env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
        })
    }

    fn reason(uri: &str) -> String {
        match parse(uri, &[]) {
            Err(TransportError::InvalidUri { reason, .. }) => reason,
            Err(other) => panic!("{uri}: expected InvalidUri, got {other}"),
            Ok(_) => panic!("{uri}: expected an error"),
        }
    }

    #[test]
    fn full_uris() {
        let t = parse(
            "postgresql://rex:s%40cret@db.example:6543/jobs?schema=work&sslmode=disable&application_name=w1",
            &[("PGHOST", "elsewhere"), ("PGUSER", "nobody")],
        )
        .unwrap();
        assert_eq!(t.schema, "work");
        assert_eq!(
            t.described,
            "postgresql://rex:***@db.example:6543/jobs?sslmode=disable"
        );
        let c = &t.config;
        assert_eq!(c.get_user(), Some("rex"));
        assert_eq!(c.get_password(), Some(&b"s@cret"[..]));
        assert_eq!(c.get_dbname(), Some("jobs"));
        assert_eq!(c.get_ports(), [6543]);
        assert_eq!(
            c.get_hosts(),
            [tokio_postgres::config::Host::Tcp("db.example".into())]
        );
        assert_eq!(c.get_ssl_mode(), SslMode::Disable);
        assert_eq!(c.get_application_name(), Some("w1"));

        for scheme in ["postgres", "pgsql"] {
            let t = parse(&format!("{scheme}://postgres@127.0.0.1/test"), &[]).unwrap();
            assert_eq!(t.schema, DEFAULT_SCHEMA);
            assert_eq!(t.described, "postgresql://postgres@127.0.0.1:5432/test");
            assert_eq!(t.config.get_ssl_mode(), SslMode::Prefer);
        }
        let t = parse("postgresql://[::1]:5433", &[]).unwrap();
        assert_eq!(t.described, "postgresql://postgres@[::1]:5433/postgres");
    }

    #[test]
    fn short_form_uses_the_environment() {
        let t = parse("pgsql:jobs", &[]).unwrap();
        assert_eq!(t.described, "postgresql://postgres@127.0.0.1:5432/jobs");
        let t = parse(
            "pgsql:jobs?schema=q",
            &[
                ("PGHOST", "pg.local"),
                ("PGUSER", "rex"),
                ("PGPORT", "5000"),
            ],
        )
        .unwrap();
        assert_eq!(t.described, "postgresql://rex@pg.local:5000/jobs");
        assert_eq!(t.schema, "q");
        let t = parse("pgsql:jobs", &[("PGPASSWORD", "hunter2")]).unwrap();
        assert_eq!(t.described, "postgresql://postgres:***@127.0.0.1:5432/jobs");
    }

    #[test]
    fn sslmodes_mean_what_they_mean_to_libpq() {
        let cases = [
            ("", SslMode::Prefer, Verify::Nothing),
            ("?sslmode=disable", SslMode::Disable, Verify::Nothing),
            ("?sslmode=allow", SslMode::Prefer, Verify::Nothing),
            ("?sslmode=require", SslMode::Require, Verify::Nothing),
            ("?sslmode=verify-ca", SslMode::Require, Verify::Chain),
            ("?sslmode=verify-full", SslMode::Require, Verify::Full),
        ];
        for (query, mode, verify) in cases {
            let t = parse(&format!("pgsql://h/db{query}"), &[]).unwrap();
            assert_eq!(t.config.get_ssl_mode(), mode, "{query}");
            assert_eq!(t.tls.verify, verify, "{query}");
            assert!(t.described.ends_with(query), "{}", t.described);
        }
        let t = parse("pgsql://h/db", &[("PGSSLMODE", "verify-full")]).unwrap();
        assert_eq!(t.tls.verify, Verify::Full);
        assert_eq!(t.described, "postgresql://postgres@h:5432/db");

        // A root certificate makes `require` check the chain, as with libpq.
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        let pem = "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIUfakefakefakefakefakefakefakefakewCgYIKoZIzj0EAwIw\n-----END CERTIFICATE-----\n";
        std::fs::write(&ca, pem).unwrap();
        let bad = reason(&format!(
            "pgsql://h/db?sslmode=require&sslrootcert={}",
            ca.display()
        ));
        assert!(bad.contains("not a PEM certificate"), "{bad}");
        let missing = reason("pgsql://h/db?sslmode=verify-ca&sslrootcert=/nonexistent.pem");
        assert!(
            missing.starts_with("sslrootcert=/nonexistent.pem: "),
            "{missing}"
        );
        let lone = reason("pgsql://h/db?sslcert=/c.pem");
        assert_eq!(lone, "sslcert and sslkey go together");
    }

    #[test]
    fn bad_uris() {
        assert!(reason("pgsql:").contains("expected"));
        assert!(reason("pgsql://h:99999/db").contains("bad port"));
        assert!(reason("pgsql://h/db?sslmode=bogus").contains("unknown sslmode"));
        assert!(reason("pgsql://h/db?nope=1").contains("unknown parameter"));
        for schema in ["Work", "1a", "a-b", "pg_x", "", &"a".repeat(49)] {
            assert!(
                reason(&format!("pgsql://h/db?schema={schema}")).contains("schema"),
                "{schema}"
            );
        }
        assert!(reason("pgsql://h/db%zz").contains("escape"));
    }

    #[test]
    fn passwords_never_show() {
        let err = parse("postgresql://rex:p/ss@w0rd@h:x/db", &[])
            .err()
            .unwrap();
        assert!(!err.to_string().contains("ss@w0rd"), "{err}");
        assert!(!err.to_string().contains("p/ss"), "{err}");
        let t = PgsqlTransport::open("postgresql://rex:secret@127.0.0.1:1/db").unwrap();
        assert_eq!(
            t.describe(),
            "PostgreSQL(postgresql://rex:***@127.0.0.1:1/db, schema asynctask)"
        );
    }

    #[test]
    fn open_routes_the_schemes() {
        for uri in ["pgsql:db", "postgres://h/db", "postgresql://h/db"] {
            let t = crate::open(uri).unwrap();
            assert!(
                t.describe().starts_with("PostgreSQL(postgresql://"),
                "{uri}"
            );
            assert!(t.is_shared());
        }
    }
}
