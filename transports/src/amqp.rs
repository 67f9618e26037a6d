//! The RabbitMQ transport (`amqp://`): tasks kept as messages in a RabbitMQ broker shared by
//! every worker process of a project, on any number of hosts. Plain AMQP 0-9-1 with
//! publisher confirms: no plugin is needed (not even the management plugin).
//!
//! # URIs
//!
//! `amqp://[USER[:PASSWORD]@]HOST[:PORT][/VHOST][?prefix=NAME]`. The virtual host is
//! percent-encoded (`%2f` is `/`); an empty path means `/`. The user defaults to `guest`
//! (password `guest`), the port to 5672. The optional `prefix` (default `rex`, spelled like a
//! queue name) starts the name of every broker object of this transport, so several projects
//! (or test runs) can share one virtual host. The other query parameters that are accepted
//! are those of the AMQP client: `heartbeat` (seconds, default 10), `connection_timeout`
//! (milliseconds, default 2000), `frame_max` and `channel_max`; any other is refused.
//! Passwords never appear in [`describe`](Transport::describe), in `Debug` output, in errors or
//! in logs.
//!
//! `amqps://` connects over TLS (port 5671 by default) and checks the broker's certificate
//! against the system's roots and the host name. As in RabbitMQ's own URI spec, `cacertfile`
//! names a PEM file of roots trusted as well and `certfile` + `keyfile` a client certificate and
//! its PKCS#8 key (for `fail_if_no_peer_cert` listeners); `verify=verify_none` is refused.
//!
//! # Broker objects (`P` is the prefix, `Q` a queue of tasks)
//!
//! | object | kind | holds |
//! | --- | --- | --- |
//! | `P.Q` | fanout exchange, durable | every publish of a ready task goes here |
//! | `P.Q` | classic queue, durable, bound to the exchange `P.Q` | the ready tasks, FIFO; claims `basic.get` from it |
//! | `P.Q.delay.K` | queue, durable, `K` = 0..=22, `x-message-ttl` = 8 ms × 2^K, `x-dead-letter-exchange` = `P.Q` | delayed tasks: a message expires back into the exchange `P.Q` (the ready queue, and it wakes waiters) |
//! | `P.Q.failed` | queue, durable | failed tasks, kept with their whole record |
//! | server-named (`amq.gen-…`) | queue, exclusive, auto-delete, `x-max-length` 1, bound to the exchange `P.Q` | one per process, Tokio runtime and waited queue: wake-up signals for [`wait`](Transport::wait) |
//! | `P._queues` | queue, durable | the queue names (one message per name) for `stats`, `failed` and `retry_failed` |
//! | `P._key.KEY` | queue, durable, `x-max-length` 1, `x-overflow` `reject-publish`, `x-expires` 7 days | one used idempotency key (`P._keyh.HASH` when the name would be longer than 255 bytes) |
//! | `P._fires.ID` | queue, durable, `x-max-length` 16 | the last fire times of one schedule (`P._firesh.HASH` when too long) |
//!
//! Queue names cannot start with `_`, so the names of the last three never collide with the
//! objects of a queue. Objects are declared on first use and remembered per process; the
//! objects of a task queue are declared together.
//! A message is the JSON of a whole task — id, queue, payload, settled attempts, errors,
//! crashes, `created_at`, `run_at`, last error and the attempt history — published persistent
//! (delivery mode 2). Every publish waits for the broker's confirm before the call returns,
//! so what an operation reports as done is on the broker (and on disk).
//!
//! Task ids are made without coordination: milliseconds since the epoch shifted left by 22
//! bits, plus a per-process counter that starts at random, never going backwards within a
//! process. They increase within a process and are unique across processes with
//! overwhelming probability (two processes would need the same millisecond and counter);
//! they stay positive until 2039.
//!
//! # Delivery model
//!
//! Leases are held by the broker: a claim is a `basic.get` without automatic
//! acknowledgement, and the task's message stays *unacknowledged*, owned by the claiming
//! connection, until it is settled. Settling publishes whatever the settlement produces
//! (follow-up submits, the task again with its new record for a retry or a release, the task
//! into `P.Q.failed`), waits for the confirms, then acknowledges the claimed message. The
//! lease token is a fresh random number per claim, known only to the claiming process: a
//! settlement of a lease this process does not hold (already settled, or lost with its
//! connection) changes nothing and returns `false`.
//!
//! When the holder dies or its connection drops, RabbitMQ puts the message back into the
//! queue at once, marked *redelivered*. The next claim that gets it hands it out with
//! [`Task::lost`] set and the number of the attempt that was lost: the caller settles that
//! attempt as a crash ([`fail`](Transport::fail), by its retry policy) before running it —
//! the `rex` worker does so with the reason its master saw when the previous child died
//! (`killed by SIGKILL`...), or a generic one when the holder was on another host. This is
//! the whole of crash recovery on this transport, and it differs from the SQL and Redis
//! transports:
//!
//! * [`owned_by`](Transport::owned_by), [`expired`](Transport::expired) and
//!   [`renew`](Transport::renew) only see the calling process's own claims (claims of other
//!   processes are invisible); a supervisor's immediate reclaim of a dead worker's task is the
//!   broker's redelivery plus the settlement of the lost attempt above
//!   ([`Transport::leases_held_by_broker`] is `true`).
//! * Lease times are bookkeeping of the claiming process; the broker holds the message for as
//!   long as the connection lives, however long the lease.
//! * A redelivered message does not wake waiters: it is found by the next claim, at the latest
//!   when a waiter's timeout passes.
//!
//! Delays need no plugin: a task not ready before `run_at` is published to the largest delay
//! queue whose TTL fits in the remaining time (the smallest one below 8 ms). When it expires
//! it goes back to the ready queue; a claim that gets a task whose `run_at` is still ahead
//! publishes it again to the right delay queue and goes on. A task thus becomes ready within
//! about 8 ms of its `run_at` after a few hops; delays beyond the largest queue (9.3 hours)
//! loop through it. Between its return and its `run_at` (less than half of the remaining
//! delay) a task counts as ready.
//!
//! # Guarantees and their limits
//!
//! * At-least-once: the task is acknowledged after what settling it produced is confirmed.
//!   `complete` is not one transaction: a crash between the follow-up publishes and the
//!   acknowledgement leaves the follow-ups enqueued and the task redelivered, so it runs again.
//!   Likewise a failure or release whose acknowledgement is lost leaves two copies.
//! * Idempotency keys: a keyed submit first publishes a marker into the key's queue, which holds
//!   one message and refuses more: the broker's ack means first use (the task is then
//!   published), its nack means the key was used (the submit returns `None`). Each key enqueues
//!   at most once; a crash between the two publishes loses that one enqueue — at-most-once for
//!   keyed submits, where the SQL and Redis transports are atomic. A key is forgotten 7 days
//!   after its last use (the queue expires; every submit with the key renews it).
//! * The fire time of a keyed submit whose key is a [schedule key](crate::schedule_key) is
//!   also published to the schedule's fires queue, which keeps the last 16:
//!   [`last_fire`](Transport::last_fire) is the greatest of them.
//! * `counts`: `delayed` is the sum over the delay queues (counted first, so a task moving
//!   to the ready queue meanwhile is not missed), `ready` the ready queue, `failed` the failed
//!   queue, `running` the calling process's own claims; `next_run_at` is always `None`.
//!   [`stats`](Transport::stats) has no `oldest_pending_ms` (always `None`).
//! * Listing (`stats`, `failed`, `retry_failed`) reads the queue names and the failed tasks by
//!   taking every message of their queue without acknowledging it, then closing the channel so
//!   they all go back in order. Readers running at the same time may see a partial list (a
//!   message held by one is invisible to the other). The reader also drops duplicate names.
//! * Messages in a ready queue that are not tasks of this transport are moved unchanged to
//!   the failed queue by the claim that meets them; `failed` and `retry_failed` skip them
//!   (`purge` removes them).
//! * Every process declares the objects it uses, each of them once per process. Objects
//!   deleted behind a running process's back are declared again after the first operation
//!   that meets their absence, which fails with the retryable error (publishes are
//!   `mandatory`: an unroutable one is refused, not lost).
//!
//! # Waiting
//!
//! [`wait`](Transport::wait) is push-based: each process and Tokio runtime that waits on a
//! queue declares one exclusive queue bound to the queue's exchange and consumes it; any
//! delivery is a wake-up. A waiter first checks the ready queue's message count (then it
//! returns at once), then waits for a signal or its timeout. A submit from any host, or a
//! delayed task expiring back, thus wakes waiters within milliseconds, and idle waiters send
//! nothing to the broker. A waiter whose connection is lost returns within a second (the next
//! call connects again, or reports the outage). Wake-ups may be spurious, as the contract
//! allows.
//!
//! # Connections and outages
//!
//! Opening a transport does not connect: the first operation does. Each Tokio runtime that
//! uses the transport (the CLI uses several current-thread runtimes) gets a connection of its
//! own, with a channel for claims and acknowledgements and one for confirmed publishes;
//! lookups that may fail with `NOT_FOUND` (which closes a channel) use channels of their own.
//! The AMQP heartbeat is 10 s, so a dead peer is noticed within about 20 s — and the deliveries
//! of a dead host are returned by then. Connecting gives up after 2 s. Connection trouble
//! (refused, reset, heartbeat missed, broker shutting down…) is [`TransportError::Unavailable`],
//! the retryable error; the connection is then dropped, the leases claimed through it are
//! stale (the broker returned their messages), and the next operation connects again. A
//! publish whose confirm takes more than 30 s (a broker blocking publishers under a resource
//! alarm) fails the same way. A dropped transport closes its connections, so its claims go back
//! to the broker at once. After a
//! failed connection attempt the next ones wait exponentially longer (100 ms doubling up to
//! 5 s): operations in between fail at once with the last error, so nothing spins against a
//! broker that is down.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::Poll;
use std::time::{Duration, SystemTime};

use lapin::message::DeliveryResult;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicGetOptions, BasicPublishOptions, BasicRejectOptions,
    ConfirmSelectOptions, ExchangeDeclareOptions, ExchangeDeleteOptions, QueueBindOptions,
    QueueDeclareOptions, QueueDeleteOptions, QueuePurgeOptions,
};
use lapin::protocol::AMQPErrorKind;
use lapin::tcp::{OwnedIdentity, OwnedTLSConfig};
use lapin::types::{AMQPValue, DeliveryTag, FieldTable, ShortString};
use lapin::uri::{AMQPAuthority, AMQPQueryString, AMQPScheme, AMQPUri, AMQPUserInfo};
use lapin::{
    BasicProperties, Channel, Confirmation, Connection, ConnectionProperties, Consumer,
    DefaultConnectionBuilder, ErrorKind, ExchangeKind,
};
use serde::{Deserialize, Serialize};
use tokio::runtime::{Handle, Id as RuntimeId};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::task::{
    add_ms, from_epoch_ms, now_ms, percent_decode, schedule_key_prefix, schedule_key_time,
    to_epoch_ms,
};
use crate::tls::{TlsSettings, Verify};
use crate::{
    Attempt, Failure, FailureKind, Lease, Outcome, Payload, PurgeWhich, QueueCounts, QueueStats,
    Result, Selector, Submit, SubmitOptions, Task, TaskId, TaskState, TaskSummary, Transport,
    TransportError, validate_queue_name,
};

const TRANSPORT: &str = "AMQP";
/// The object-name prefix when the URI names none.
const DEFAULT_PREFIX: &str = "rex";
/// Connecting (TCP and AMQP handshake) gives up after this long, unless the URI says otherwise.
const CONNECT_TIMEOUT_MS: u64 = 2000;
/// AMQP heartbeat in seconds, unless the URI says otherwise: a dead peer is noticed within
/// about twice this.
const HEARTBEAT_S: u16 = 10;
/// A publish whose confirm has not come after this long fails (retryable): a broker under a
/// resource alarm blocks publishers, and the caller should back off rather than hang.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(30);
/// Waits between connection attempts after a failed one: from this, doubling…
const RECONNECT_MIN: Duration = Duration::from_millis(100);
/// … up to this.
const RECONNECT_MAX: Duration = Duration::from_secs(5);
/// Delay queues `P.Q.delay.0` to `P.Q.delay.22`.
const BUCKETS: u32 = 23;
/// TTL of the smallest delay queue, in milliseconds; each next one doubles it.
const BUCKET_BASE_MS: i64 = 8;
/// Idempotency keys are forgotten this long after their last use.
const KEY_TTL_MS: i64 = 7 * 24 * 3600 * 1000;
/// Fire times kept per schedule.
const FIRES_KEPT: i64 = 16;
/// The longest broker object name.
const MAX_NAME: usize = 255;
/// Channels over which the queues of a task queue are declared (the broker creates those of
/// one channel one after the other).
const DECLARING_CHANNELS: usize = 4;
/// Runtimes whose connections are kept; the oldest are dropped beyond this.
const MAX_RUNTIMES: usize = 16;
/// A claim handles at most this many messages that are not its result (delayed tasks sent
/// back, foreign messages moved away) before it reports that nothing is ready.
const MAX_CLAIM_STEPS: usize = 10_000;
/// Key queues remembered for [`AmqpTransport::delete_everything`].
const MAX_TRACKED_KEYS: usize = 10_000;
/// A blocked `wait` checks this often whether its connection is still there (a local check).
const WAIT_CHECK: Duration = Duration::from_secs(1);
/// `wait` timeouts are capped to this (a `Duration::MAX` must not overflow the timer).
const MAX_WAIT: Duration = Duration::from_secs(365 * 86_400);

/// Open the transport named by `uri` (connecting lazily, on first use).
pub fn open_uri(uri: &str) -> Result<Arc<dyn Transport>> {
    Ok(Arc::new(AmqpTransport::open_uri(uri)?))
}

/// A transport backed by a RabbitMQ broker. See the module docs.
pub struct AmqpTransport {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for AmqpTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Only the display form: the URI itself holds the password.
        f.debug_tuple("AmqpTransport")
            .field(&self.inner.display)
            .finish()
    }
}

/// The message body: a whole task.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Body {
    id: TaskId,
    queue: String,
    payload: Payload,
    /// Settled attempts so far.
    attempts: u32,
    errors: u32,
    crashes: u32,
    created_at_ms: i64,
    run_at_ms: i64,
    #[serde(default)]
    last_error: Option<String>,
    #[serde(default)]
    history: Vec<Attempt>,
}

/// A claim of this process, until it is settled.
struct Held {
    task: Task,
    body: Body,
    /// The channel the message was got on: the acknowledgement must go there, and when it is
    /// closed the broker has returned the message (the lease is stale).
    channel: Channel,
    tag: DeliveryTag,
}

/// The connection of one Tokio runtime.
struct Session {
    connection: Connection,
    /// `basic.get` and acknowledgements (and nothing that may close it).
    claim: Channel,
    /// Publishes, in confirm mode; replaced when the broker closes it.
    publish: Mutex<Channel>,
    /// Passive declares of objects that exist; replaced when closed.
    inspect: Mutex<Option<Channel>>,
    /// Wake-up consumers by queue.
    waiters: Mutex<HashMap<String, Arc<Waiter>>>,
}

impl Session {
    fn alive(&self) -> bool {
        self.connection.status().connected() && self.claim.status().connected()
    }
}

/// The wake-up queue of one (connection, queue).
struct Waiter {
    channel: Channel,
    _consumer: Consumer,
    /// Bumped on every delivery (and when the consumer ends).
    signal: Arc<watch::Sender<u64>>,
    dead: Arc<AtomicBool>,
}

struct RuntimeSlot {
    runtime: RuntimeId,
    /// The runtime driving the connection (it closes it when the transport is dropped).
    handle: Handle,
    session: Option<Arc<Session>>,
    /// Held while connecting, so that one task of the runtime connects and the others wait.
    connecting: Arc<tokio::sync::Mutex<()>>,
    /// Failed connection attempts in a row, the time before which none is tried again, and
    /// the error of the last one.
    failures: u32,
    retry_at: Option<Instant>,
    last_error: String,
}

struct Inner {
    /// The connection parameters; holds the password, never printed.
    uri: AMQPUri,
    /// For `amqps://`: what to trust, and the client certificate.
    tls: Option<OwnedTLSConfig>,
    prefix: String,
    /// `describe()`: the URI without secrets, and the prefix.
    display: String,
    /// Passwords, scrubbed from error messages.
    secrets: Vec<String>,
    connect_timeout: Duration,
    runtimes: Mutex<Vec<RuntimeSlot>>,
    /// Task queues whose objects this process declared.
    declared: Mutex<HashSet<String>>,
    /// Task queues whose name this process published to the registry.
    registered: Mutex<HashSet<String>>,
    registry_declared: AtomicBool,
    /// Fires queues this process declared.
    fires: Mutex<HashSet<String>>,
    /// Key queues this process declared (at most MAX_TRACKED_KEYS), for cleanup.
    keys: Mutex<HashSet<String>>,
    /// This process's claims by lease token.
    leases: Mutex<HashMap<u64, Held>>,
    ids: Mutex<IdState>,
    /// `wait` calls blocked on a signal (tests observe it).
    blocked_waiters: AtomicUsize,
}

/// Counts one blocked `wait` while it lives.
struct Blocked<'a>(&'a AtomicUsize);

impl<'a> Blocked<'a> {
    fn new(counter: &'a AtomicUsize) -> Self {
        counter.fetch_add(1, Ordering::SeqCst);
        Blocked(counter)
    }
}

impl Drop for Blocked<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Drop for Inner {
    /// A dropped transport closes its connections: its claims go back to the broker now.
    fn drop(&mut self) {
        let runtimes = self
            .runtimes
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner);
        for slot in runtimes.drain(..) {
            if let Some(session) = slot.session {
                Inner::close_session(&slot.handle, session, "rex: transport dropped");
            }
        }
    }
}

struct IdState {
    last: i64,
    counter: u32,
}

/// The parts of a transport URI.
struct ParsedUri {
    uri: AMQPUri,
    prefix: String,
    /// The URI without `prefix` and with the password replaced by `***`.
    display: String,
    secrets: Vec<String>,
    /// For `amqps://`: the roots and client certificate (checks are always full).
    tls: Option<OwnedTLSConfig>,
    connect_timeout: Duration,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing here can panic half-way through an update.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn parse_uri(uri: &str) -> Result<ParsedUri> {
    let redacted = crate::redact_uri(uri);
    let invalid = |reason: String| TransportError::InvalidUri {
        uri: redacted.clone(),
        reason,
    };
    let (scheme, rest) = uri
        .split_once("://")
        .ok_or_else(|| invalid("expected amqp://".to_string()))?;
    let tls = match scheme {
        "amqp" => false,
        "amqps" => true,
        _ => return Err(invalid("expected amqp:// or amqps://".to_string())),
    };
    let rest = rest.split_once('#').map_or(rest, |(rest, _)| rest);
    let (base, query) = rest.split_once('?').unwrap_or((rest, ""));

    let mut prefix = None;
    let mut kept = Vec::new();
    let mut params = AMQPQueryString::default();
    let (mut cacertfile, mut certfile, mut keyfile) = (None, None, None);
    for pair in query.split('&').filter(|pair| !pair.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let path = || {
            percent_decode(value)
                .ok_or_else(|| invalid(format!("{name} is not properly percent-encoded")))
        };
        let number = |what: &str| -> Result<u64> {
            value.parse::<u64>().map_err(|_| {
                invalid(format!(
                    "{what} must be a non-negative integer, not \"{value}\""
                ))
            })
        };
        let too_big = |what: &str| invalid(format!("{what} = {value} is too large"));
        match name {
            "prefix" => {
                if prefix.replace(value).is_some() {
                    return Err(invalid("prefix is given twice".to_string()));
                }
                continue;
            }
            "heartbeat" => {
                params.heartbeat = Some(u16::try_from(number(name)?).map_err(|_| too_big(name))?);
            }
            "connection_timeout" => params.connection_timeout = Some(number(name)?),
            "frame_max" => {
                params.frame_max = Some(u32::try_from(number(name)?).map_err(|_| too_big(name))?);
            }
            "channel_max" => {
                params.channel_max = Some(u16::try_from(number(name)?).map_err(|_| too_big(name))?);
            }
            "cacertfile" => cacertfile = Some(path()?),
            "certfile" => certfile = Some(path()?),
            "keyfile" => keyfile = Some(path()?),
            "verify" if value == "verify_peer" => {}
            "verify" => {
                return Err(invalid(format!(
                    "verify={value}: only verify_peer is supported; give the broker's CA with cacertfile"
                )));
            }
            other => {
                return Err(invalid(format!(
                    "unknown parameter \"{other}\" (accepted: prefix, heartbeat, connection_timeout, frame_max, channel_max, cacertfile, certfile, keyfile, verify)"
                )));
            }
        }
        kept.push(pair);
    }
    let prefix = prefix.unwrap_or(DEFAULT_PREFIX);
    if validate_queue_name(prefix).is_err() {
        return Err(invalid(format!(
            "prefix \"{prefix}\" must be spelled like a queue name (lowercase letters, digits and single underscores)"
        )));
    }
    let tls = if tls {
        let settings = TlsSettings::from_files(
            Verify::Full,
            ("cacertfile", cacertfile.as_deref()),
            ("certfile", certfile.as_deref()),
            ("keyfile", keyfile.as_deref()),
        )
        .map_err(&invalid)?;
        Some(OwnedTLSConfig {
            identity: settings.identity.map(|(pem, key)| OwnedIdentity::PKCS8 {
                pem: pem.into_bytes(),
                key: key.into_bytes(),
            }),
            cert_chain: settings.roots,
        })
    } else {
        if cacertfile.is_some() || certfile.is_some() || keyfile.is_some() {
            return Err(invalid(
                "cacertfile, certfile and keyfile need TLS: use amqps://".to_string(),
            ));
        }
        None
    };

    let (authority, path) = match base.find('/') {
        Some(slash) => (&base[..slash], &base[slash..]),
        None => (base, ""),
    };
    let (userinfo, hostport) = match authority.rsplit_once('@') {
        Some((userinfo, hostport)) => (Some(userinfo), hostport),
        None => (None, authority),
    };
    let default_user = AMQPUserInfo::default();
    let (username, password) = match userinfo {
        None => (default_user.username, default_user.password),
        Some(userinfo) => {
            let (user, password) = match userinfo.split_once(':') {
                Some((user, password)) => (user, Some(password)),
                None => (userinfo, None),
            };
            let user = percent_decode(user)
                .ok_or_else(|| invalid("the user name is not properly percent-encoded".into()))?;
            let password = match password {
                Some(password) => percent_decode(password).ok_or_else(|| {
                    invalid("the password is not properly percent-encoded".into())
                })?,
                None => String::new(),
            };
            (user, password)
        }
    };
    let (host, port) = if let Some(bracketed) = hostport.strip_prefix('[') {
        let (host, after) = bracketed
            .split_once(']')
            .ok_or_else(|| invalid("unterminated [IPv6 address]".to_string()))?;
        (host, after.strip_prefix(':'))
    } else {
        match hostport.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (hostport, None),
        }
    };
    let host = if host.is_empty() {
        "localhost".to_string()
    } else {
        percent_decode(host).ok_or_else(|| invalid("bad host".to_string()))?
    };
    let port = match port {
        None | Some("") => {
            if tls.is_some() {
                5671
            } else {
                5672
            }
        }
        Some(port) => port
            .parse::<u16>()
            .map_err(|_| invalid(format!("bad port \"{port}\"")))?,
    };
    let vhost = match path {
        "" | "/" => "/".to_string(),
        path => {
            let encoded = &path[1..];
            if encoded.contains('/') {
                return Err(invalid(
                    "the virtual host must be percent-encoded (%2f for /)".to_string(),
                ));
            }
            percent_decode(encoded)
                .ok_or_else(|| invalid("the virtual host is not properly percent-encoded".into()))?
        }
    };
    let connect_timeout =
        Duration::from_millis(params.connection_timeout.unwrap_or(CONNECT_TIMEOUT_MS));
    params.connection_timeout = Some(params.connection_timeout.unwrap_or(CONNECT_TIMEOUT_MS));
    params.heartbeat = Some(params.heartbeat.unwrap_or(HEARTBEAT_S));

    let mut shown = format!("{scheme}://{base}");
    if !kept.is_empty() {
        shown = format!("{shown}?{}", kept.join("&"));
    }
    let mut secrets = Vec::new();
    if let Some((_, raw)) = userinfo.and_then(|userinfo| userinfo.split_once(':')) {
        secrets.push(raw.to_string());
    }
    secrets.push(password.clone());
    secrets.retain(|secret| !secret.is_empty());
    secrets.dedup();
    Ok(ParsedUri {
        uri: AMQPUri {
            scheme: if tls.is_some() {
                AMQPScheme::AMQPS
            } else {
                AMQPScheme::AMQP
            },
            authority: AMQPAuthority {
                userinfo: AMQPUserInfo { username, password },
                host,
                port,
            },
            vhost,
            query: params,
        },
        prefix: prefix.to_string(),
        display: crate::redact_uri(&shown),
        secrets,
        tls,
        connect_timeout,
    })
}

/// `message` with every secret replaced by `***`.
fn scrub(message: &str, secrets: &[String]) -> String {
    secrets.iter().fold(message.to_string(), |message, secret| {
        message.replace(secret.as_str(), "***")
    })
}

/// FNV-1a, 64 bits: a stable hash for names too long for the broker.
fn fnv1a(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// The delay queue for a task `remaining` milliseconds from ready: the largest whose TTL is not
/// longer, or the smallest.
fn bucket_for(remaining_ms: i64) -> u32 {
    let units = u64::try_from(remaining_ms / BUCKET_BASE_MS).unwrap_or(0);
    if units == 0 {
        0
    } else {
        (63 - units.leading_zeros()).min(BUCKETS - 1)
    }
}

fn bucket_ttl_ms(bucket: u32) -> i64 {
    BUCKET_BASE_MS << bucket
}

/// The schedule and fire time of a [`schedule_key`](crate::schedule_key).
fn schedule_of(key: &str) -> Option<(&str, SystemTime)> {
    let rest = key.strip_prefix("schedule:")?;
    let (schedule, ms) = rest.rsplit_once(':')?;
    if ms.len() != 16 || !ms.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if !key.starts_with(&schedule_key_prefix(schedule)) {
        return None;
    }
    Some((schedule, schedule_key_time(key)?))
}

/// Polls every future at once (in order, so pipelined AMQP methods go out in order).
async fn join_all<F: Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut futures: Vec<Pin<Box<F>>> = futures.into_iter().map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (future, output) in futures.iter_mut().zip(outputs.iter_mut()) {
            if output.is_none() {
                match future.as_mut().poll(cx) {
                    Poll::Ready(value) => *output = Some(value),
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    })
    .await;
    outputs.into_iter().flatten().collect()
}

fn is_not_found(e: &lapin::Error) -> bool {
    matches!(e.kind(), ErrorKind::ProtocolError(error) if error.get_id() == 404)
}

fn persistent_json() -> BasicProperties {
    BasicProperties::default()
        .with_delivery_mode(2)
        .with_content_type("application/json".into())
}

fn args(pairs: &[(&str, AMQPValue)]) -> FieldTable {
    let mut table = FieldTable::default();
    for (name, value) in pairs {
        table.insert((*name).into(), value.clone());
    }
    table
}

fn passive() -> QueueDeclareOptions {
    QueueDeclareOptions {
        passive: true,
        ..QueueDeclareOptions::default()
    }
}

fn durable() -> QueueDeclareOptions {
    QueueDeclareOptions::durable()
}

impl AmqpTransport {
    /// Open `amqp://...` (see the module docs). Does not connect.
    pub fn open_uri(uri: &str) -> Result<Self> {
        let parsed = parse_uri(uri)?;
        Ok(AmqpTransport {
            inner: Arc::new(Inner {
                display: format!("{TRANSPORT}({}, prefix {})", parsed.display, parsed.prefix),
                uri: parsed.uri,
                tls: parsed.tls,
                prefix: parsed.prefix,
                secrets: parsed.secrets,
                connect_timeout: parsed.connect_timeout,
                runtimes: Mutex::new(Vec::new()),
                declared: Mutex::new(HashSet::new()),
                registered: Mutex::new(HashSet::new()),
                registry_declared: AtomicBool::new(false),
                fires: Mutex::new(HashSet::new()),
                keys: Mutex::new(HashSet::new()),
                leases: Mutex::new(HashMap::new()),
                ids: Mutex::new(IdState {
                    last: 0,
                    counter: fastrand::u32(..),
                }),
                blocked_waiters: AtomicUsize::new(0),
            }),
        })
    }

    /// The object-name prefix (`rex` unless the URI's `prefix` says otherwise).
    pub fn prefix(&self) -> &str {
        &self.inner.prefix
    }

    /// `wait` calls currently blocked on a wake-up signal (for tests).
    #[doc(hidden)]
    pub fn blocked_waiters(&self) -> usize {
        self.inner.blocked_waiters.load(Ordering::SeqCst)
    }

    /// Delete every broker object of this prefix this process knows of: those of the queues
    /// in the registry and of the queues it used, the registry, and the key and fires queues it
    /// declared. For tests; best effort.
    #[doc(hidden)]
    pub async fn delete_everything(&self) -> Result<()> {
        let inner = Arc::clone(&self.inner);
        inner.delete_everything().await
    }

    /// Run `f` as a task of the current runtime: a caller that stops waiting (a timeout, a
    /// `select!`) cannot leave a claimed message or a half-done settlement behind.
    async fn spawned<T, F>(&self, f: impl FnOnce(Arc<Inner>) -> F) -> Result<T>
    where
        T: Send + 'static,
        F: Future<Output = Result<T>> + Send + 'static,
    {
        let handle = self.inner.handle()?;
        handle
            .spawn(f(Arc::clone(&self.inner)))
            .await
            .map_err(|e| self.inner.backend(format_args!("operation aborted: {e}")))?
    }
}

/// Object names of one task queue.
struct Names {
    /// The exchange and the ready queue.
    ready: String,
    failed: String,
    buckets: Vec<String>,
}

impl Inner {
    fn handle(&self) -> Result<Handle> {
        Handle::try_current().map_err(|_| {
            TransportError::Unsupported(format!("{}: used outside a Tokio runtime", self.display))
        })
    }

    fn backend(&self, what: impl std::fmt::Display) -> TransportError {
        TransportError::Backend {
            transport: self.display.clone(),
            message: scrub(&what.to_string(), &self.secrets),
        }
    }

    fn unavailable(&self, what: impl std::fmt::Display) -> TransportError {
        TransportError::Unavailable {
            transport: self.display.clone(),
            message: scrub(&what.to_string(), &self.secrets),
        }
    }

    /// Connection trouble is retryable ([`TransportError::Unavailable`]), and so is a
    /// `NOT_FOUND` (objects deleted behind our back: they are declared again on the next
    /// use); other refusals by the broker (`PRECONDITION_FAILED`, `ACCESS_REFUSED`…) are not.
    /// (Lookups that expect `NOT_FOUND` handle it before it gets here.)
    fn error(&self, e: lapin::Error) -> TransportError {
        if is_not_found(&e) {
            self.forget_declared();
            return self.unavailable(format_args!(
                "{e} (deleted meanwhile? declared again on the next use)"
            ));
        }
        let retryable = match e.kind() {
            // Hard errors close the connection (`CONNECTION_FORCED` when the broker stops…).
            ErrorKind::ProtocolError(error) => matches!(error.kind(), AMQPErrorKind::Hard(_)),
            ErrorKind::IOError(_)
            | ErrorKind::RuntimeShutdownError(_)
            | ErrorKind::InvalidChannel(_)
            | ErrorKind::InvalidChannelState(..)
            | ErrorKind::InvalidConnectionState(_)
            | ErrorKind::MissingHeartbeatError
            | ErrorKind::ChannelsLimitReached => true,
            _ => false,
        };
        if retryable {
            self.unavailable(e)
        } else {
            self.backend(e)
        }
    }

    fn names(&self, queue: &str) -> Result<Names> {
        let ready = format!("{}.{queue}", self.prefix);
        let longest = format!("{ready}.delay.{}", BUCKETS - 1);
        if longest.len() > MAX_NAME {
            return Err(TransportError::Unsupported(format!(
                "{}: queue name \"{queue}\" is too long for RabbitMQ ({} bytes at most with the prefix)",
                self.display,
                MAX_NAME - (longest.len() - queue.len())
            )));
        }
        Ok(Names {
            failed: format!("{ready}.failed"),
            buckets: (0..BUCKETS).map(|k| format!("{ready}.delay.{k}")).collect(),
            ready,
        })
    }

    fn registry_name(&self) -> String {
        format!("{}._queues", self.prefix)
    }

    /// `P.KIND.NAME`, or `P.KINDh.HASH` when that is too long for the broker.
    fn aux_name(&self, kind: &str, name: &str) -> String {
        let full = format!("{}.{kind}.{name}", self.prefix);
        if full.len() <= MAX_NAME {
            full
        } else {
            format!("{}.{kind}h.{:016x}", self.prefix, fnv1a(name))
        }
    }

    fn key_name(&self, key: &str) -> String {
        self.aux_name("_key", key)
    }

    fn fires_name(&self, schedule: &str) -> String {
        self.aux_name("_fires", schedule)
    }

    /// Increasing within the process, unique across processes (see the module docs).
    fn next_id(&self) -> TaskId {
        let mut ids = lock(&self.ids);
        ids.counter = ids.counter.wrapping_add(1);
        let candidate = (now_ms() << 22) | (i64::from(ids.counter) & 0x3F_FFFF);
        let id = candidate.max(ids.last.saturating_add(1));
        ids.last = id;
        id
    }

    // ---- connections ----

    fn with_slot<T>(&self, f: impl FnOnce(&mut RuntimeSlot) -> T) -> Result<T> {
        let handle = self.handle()?;
        let runtime = handle.id();
        let mut runtimes = lock(&self.runtimes);
        let index = match runtimes.iter().position(|slot| slot.runtime == runtime) {
            Some(index) => index,
            None => {
                if runtimes.len() >= MAX_RUNTIMES {
                    // Runtimes that ended first (their connection is dead), then the oldest.
                    let dead = runtimes
                        .iter()
                        .position(|slot| slot.session.as_ref().is_none_or(|s| !s.alive()));
                    let evicted = runtimes.remove(dead.unwrap_or(0));
                    if let Some(session) = evicted.session {
                        Self::close_session(&evicted.handle, session, "rex: too many runtimes");
                    }
                }
                runtimes.push(RuntimeSlot {
                    runtime,
                    handle,
                    session: None,
                    connecting: Arc::new(tokio::sync::Mutex::new(())),
                    failures: 0,
                    retry_at: None,
                    last_error: String::new(),
                });
                runtimes.len() - 1
            }
        };
        Ok(f(&mut runtimes[index]))
    }

    /// The connection of the current runtime, made if needed.
    async fn session(&self) -> Result<Arc<Session>> {
        let (current, gate) =
            self.with_slot(|slot| (slot.session.clone(), Arc::clone(&slot.connecting)))?;
        if let Some(session) = current.filter(|session| session.alive()) {
            return Ok(session);
        }
        let _connecting = gate.lock().await;
        let (current, retry_at, last_error) =
            self.with_slot(|slot| (slot.session.take(), slot.retry_at, slot.last_error.clone()))?;
        if let Some(session) = current {
            if session.alive() {
                self.with_slot(|slot| slot.session = Some(Arc::clone(&session)))?;
                return Ok(session);
            }
            self.abandon(session);
        }
        if let Some(retry_at) = retry_at {
            let left = retry_at.saturating_duration_since(Instant::now());
            if !left.is_zero() {
                return Err(self.unavailable(format!(
                    "{last_error} (next connection attempt in {} ms)",
                    left.as_millis()
                )));
            }
        }
        match self.connect().await {
            Ok(session) => {
                let session = Arc::new(session);
                self.with_slot(|slot| {
                    slot.session = Some(Arc::clone(&session));
                    slot.failures = 0;
                    slot.retry_at = None;
                    slot.last_error.clear();
                })?;
                Ok(session)
            }
            Err(e) => {
                let message = match &e {
                    TransportError::Unavailable { message, .. } => message.clone(),
                    other => other.to_string(),
                };
                self.with_slot(|slot| {
                    slot.failures = slot.failures.saturating_add(1);
                    let delay = RECONNECT_MIN
                        .saturating_mul(1 << slot.failures.saturating_sub(1).min(16))
                        .min(RECONNECT_MAX);
                    slot.retry_at = Some(Instant::now() + delay);
                    slot.last_error = message;
                })?;
                Err(e)
            }
        }
    }

    async fn connect(&self) -> Result<Session> {
        let properties = ConnectionProperties::default()
            .with_connection_name(format!("rex (prefix {})", self.prefix).into());
        let connecting = async {
            match &self.tls {
                None => Connection::connect_uri(self.uri.clone(), properties).await,
                Some(tls) => {
                    DefaultConnectionBuilder::new()?
                        .with_uri(self.uri.clone())
                        .with_properties(properties)
                        .with_tls_config(tls.clone())
                        .connect()
                        .await
                }
            }
        };
        let connection = match tokio::time::timeout(self.connect_timeout, connecting).await {
            Err(_) => {
                return Err(self.unavailable(format!(
                    "no connection within {} ms",
                    self.connect_timeout.as_millis()
                )));
            }
            // Whatever goes wrong while connecting (refused, authentication, unknown
            // virtual host) may be fixed by the time the caller tries again.
            Ok(connection) => connection.map_err(|e| self.unavailable(e))?,
        };
        let channels = async {
            let claim = connection.create_channel().await?;
            let publish = connection.create_channel().await?;
            publish
                .confirm_select(ConfirmSelectOptions::default())
                .await?;
            Ok::<_, lapin::Error>((claim, publish))
        };
        let (claim, publish) = channels.await.map_err(|e| self.error(e))?;
        Ok(Session {
            connection,
            claim,
            publish: Mutex::new(publish),
            inspect: Mutex::new(None),
            waiters: Mutex::new(HashMap::new()),
        })
    }

    /// Drop a session that is no longer usable: its leases are stale (the broker returned
    /// their messages, or will once the connection is closed here).
    fn abandon(&self, session: Arc<Session>) {
        lock(&self.leases).retain(|_, held| held.channel.status().connected());
        if let Ok(handle) = self.handle() {
            Self::close_session(&handle, session, "rex: connection replaced");
        }
    }

    /// Close a session's connection on the runtime driving it, if it is still open: dropping
    /// lapin's handles alone does not close it (its channels keep it open), and the claims
    /// made through it must go back to the broker now. A runtime that has shut down cancels
    /// the task: its connection is gone anyway.
    fn close_session(handle: &Handle, session: Arc<Session>, reason: &'static str) {
        if session.connection.status().connected() {
            handle.spawn(async move {
                let _ = session.connection.close(200, reason.into()).await;
            });
        }
    }

    async fn publish_channel(&self, session: &Session) -> Result<Channel> {
        let current = lock(&session.publish).clone();
        if current.status().connected() {
            return Ok(current);
        }
        let fresh = async {
            let channel = session.connection.create_channel().await?;
            channel
                .confirm_select(ConfirmSelectOptions::default())
                .await?;
            Ok::<_, lapin::Error>(channel)
        }
        .await
        .map_err(|e| self.error(e))?;
        let mut slot = lock(&session.publish);
        if !slot.status().connected() {
            *slot = fresh;
        }
        Ok(slot.clone())
    }

    /// The channel for passive declares of objects that exist.
    async fn inspect_channel(&self, session: &Session) -> Result<Channel> {
        let current = lock(&session.inspect).clone();
        if let Some(channel) = current.filter(|channel| channel.status().connected()) {
            return Ok(channel);
        }
        let channel = self.fresh_channel(session).await?;
        *lock(&session.inspect) = Some(channel.clone());
        Ok(channel)
    }

    async fn fresh_channel(&self, session: &Session) -> Result<Channel> {
        session
            .connection
            .create_channel()
            .await
            .map_err(|e| self.error(e))
    }

    /// Close a channel of our own (best effort: it may be closed already).
    async fn close(channel: &Channel) {
        if channel.status().connected() {
            let _ = channel.close(200, "OK".into()).await;
        }
    }

    // ---- objects ----

    /// Declare the objects of `queue` (once per process). The broker creates the queues of
    /// one channel one after the other: they are spread over a few channels.
    async fn ensure_topology(&self, session: &Session, queue: &str) -> Result<()> {
        if lock(&self.declared).contains(queue) {
            return Ok(());
        }
        let names = self.names(queue)?;
        let opened = join_all(
            (0..DECLARING_CHANNELS)
                .map(|_| self.fresh_channel(session))
                .collect(),
        )
        .await;
        let mut channels = Vec::with_capacity(opened.len());
        let mut failure = None;
        for channel in opened {
            match channel {
                Ok(channel) => channels.push(channel),
                Err(e) => failure = Some(e),
            }
        }
        let declared = match failure {
            Some(e) => Err(e),
            None => self.declare_topology(&channels, &names).await,
        };
        join_all(channels.iter().map(Self::close).collect()).await;
        declared?;
        lock(&self.declared).insert(queue.to_string());
        Ok(())
    }

    async fn declare_topology(&self, channels: &[Channel], names: &Names) -> Result<()> {
        let Some(first) = channels.first() else {
            return Err(self.backend("no channel to declare on"));
        };
        let exchange = async {
            first
                .exchange_declare(
                    names.ready.as_str().into(),
                    ExchangeKind::Fanout,
                    ExchangeDeclareOptions {
                        durable: true,
                        ..ExchangeDeclareOptions::default()
                    },
                    FieldTable::default(),
                )
                .await
                .map(|()| 0)
        };
        let mut queues: Vec<(&str, FieldTable)> = (0..BUCKETS)
            .zip(&names.buckets)
            .map(|(k, bucket)| {
                let arguments = args(&[
                    ("x-message-ttl", AMQPValue::LongLongInt(bucket_ttl_ms(k))),
                    (
                        "x-dead-letter-exchange",
                        AMQPValue::LongString(names.ready.as_str().into()),
                    ),
                ]);
                (bucket.as_str(), arguments)
            })
            .collect();
        queues.push((&names.failed, FieldTable::default()));
        queues.push((&names.ready, FieldTable::default()));
        let declares = queues
            .into_iter()
            .enumerate()
            .map(|(i, (name, arguments))| {
                channels[i % channels.len()].queue_declare(name.into(), durable(), arguments)
            })
            .collect();
        let (exchange, declares) = tokio::join!(exchange, join_all(declares));
        exchange.map_err(|e| self.error(e))?;
        for declared in declares {
            declared.map_err(|e| self.error(e))?;
        }
        first
            .queue_bind(
                names.ready.as_str().into(),
                names.ready.as_str().into(),
                "".into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(|e| self.error(e))
    }

    /// Forget every declared object (after an unroutable publish: something was deleted).
    fn forget_declared(&self) {
        lock(&self.declared).clear();
        lock(&self.registered).clear();
        lock(&self.fires).clear();
        self.registry_declared.store(false, Ordering::SeqCst);
    }

    /// Declare a queue on a channel of its own (declares register in the channel's memory;
    /// this keeps that from growing, and a refused declare from closing a shared channel).
    async fn declare_alone(
        &self,
        session: &Session,
        name: &str,
        arguments: FieldTable,
    ) -> Result<()> {
        let channel = self.fresh_channel(session).await?;
        let declared = channel
            .queue_declare(name.into(), durable(), arguments)
            .await;
        Self::close(&channel).await;
        declared.map(|_| ()).map_err(|e| self.error(e))
    }

    /// Publish `name` to the registry, the first time this process submits to it.
    async fn register(&self, session: &Session, queue: &str) -> Result<()> {
        if lock(&self.registered).contains(queue) {
            return Ok(());
        }
        let registry = self.registry_name();
        if !self.registry_declared.load(Ordering::SeqCst) {
            self.declare_alone(session, &registry, FieldTable::default())
                .await?;
            self.registry_declared.store(true, Ordering::SeqCst);
        }
        self.publish_confirmed(session, "", &registry, queue.as_bytes())
            .await?;
        lock(&self.registered).insert(queue.to_string());
        Ok(())
    }

    /// Whether a queue exists, on a channel of its own (a `NOT_FOUND` closes it).
    async fn exists(&self, session: &Session, name: &str) -> Result<bool> {
        let channel = self.fresh_channel(session).await?;
        let result = channel
            .queue_declare(name.into(), passive(), FieldTable::default())
            .await;
        Self::close(&channel).await;
        match result {
            Ok(_) => Ok(true),
            Err(e) if is_not_found(&e) => Ok(false),
            Err(e) => Err(self.error(e)),
        }
    }

    // ---- publishing ----

    async fn publish(
        &self,
        session: &Session,
        exchange: &str,
        routing_key: &str,
        data: &[u8],
    ) -> Result<Confirmation> {
        let channel = self.publish_channel(session).await?;
        let options = BasicPublishOptions {
            mandatory: true,
            immediate: false,
        };
        let published = async {
            channel
                .basic_publish(
                    exchange.into(),
                    routing_key.into(),
                    options,
                    data,
                    persistent_json(),
                )
                .await?
                .await
        };
        match tokio::time::timeout(PUBLISH_TIMEOUT, published).await {
            Ok(confirmation) => confirmation.map_err(|e| self.error(e)),
            Err(_) => Err(self.unavailable(format_args!(
                "no publisher confirm within {} s (is the broker blocking publishers?)",
                PUBLISH_TIMEOUT.as_secs()
            ))),
        }
    }

    /// Publish and require the broker's ack.
    async fn publish_confirmed(
        &self,
        session: &Session,
        exchange: &str,
        routing_key: &str,
        data: &[u8],
    ) -> Result<()> {
        let target = if exchange.is_empty() {
            routing_key
        } else {
            exchange
        };
        match self.publish(session, exchange, routing_key, data).await? {
            Confirmation::Ack(None) => Ok(()),
            Confirmation::Ack(Some(_)) => {
                self.forget_declared();
                Err(self.unavailable(format_args!(
                    "a message for {target} was unroutable: its queue was deleted meanwhile; it is declared again on the next use"
                )))
            }
            Confirmation::Nack(_) => Err(self.backend(format_args!(
                "the broker refused a message for {target} (nack)"
            ))),
            Confirmation::NotRequested => Err(self.backend(format_args!(
                "a message for {target} got no publisher confirm"
            ))),
        }
    }

    fn encode(&self, body: &Body) -> Result<Vec<u8>> {
        serde_json::to_vec(body).map_err(|e| self.backend(format_args!("cannot encode: {e}")))
    }

    /// Publish a task: ready (to its exchange) or delayed (to its delay queue, chosen by the
    /// time left now — after declaring, which may take a while the first time).
    async fn publish_task(&self, session: &Session, body: &Body) -> Result<()> {
        self.ensure_topology(session, &body.queue).await?;
        let names = self.names(&body.queue)?;
        let data = self.encode(body)?;
        let now = now_ms();
        if body.run_at_ms > now {
            let bucket = bucket_for(body.run_at_ms - now) as usize;
            self.publish_confirmed(session, "", &names.buckets[bucket], &data)
                .await
        } else {
            self.publish_confirmed(session, &names.ready, "", &data)
                .await
        }
    }

    fn new_body(&self, queue: &str, payload: Payload, now: i64, run_at: i64) -> Body {
        Body {
            id: self.next_id(),
            queue: queue.to_string(),
            payload,
            attempts: 0,
            errors: 0,
            crashes: 0,
            created_at_ms: now,
            run_at_ms: run_at,
            last_error: None,
            history: Vec::new(),
        }
    }

    // ---- operations ----

    async fn submit(
        self: Arc<Self>,
        queue: String,
        payload: Payload,
        opts: SubmitOptions,
    ) -> Result<Option<TaskId>> {
        let session = self.session().await?;
        let now = now_ms();
        let body = self.new_body(&queue, payload, now, opts.run_at.map_or(now, to_epoch_ms));
        self.ensure_topology(&session, &queue).await?;
        self.register(&session, &queue).await?;
        if let Some(key) = &opts.idempotency_key {
            let name = self.key_name(key);
            let arguments = args(&[
                ("x-max-length", AMQPValue::LongLongInt(1)),
                ("x-overflow", AMQPValue::LongString("reject-publish".into())),
                ("x-expires", AMQPValue::LongLongInt(KEY_TTL_MS)),
            ]);
            self.declare_alone(&session, &name, arguments).await?;
            {
                let mut keys = lock(&self.keys);
                if keys.len() < MAX_TRACKED_KEYS {
                    keys.insert(name.clone());
                }
            }
            let marker = body.id.to_string();
            match self.publish(&session, "", &name, marker.as_bytes()).await? {
                Confirmation::Ack(None) => {}             // first use of the key
                Confirmation::Nack(_) => return Ok(None), // used already
                Confirmation::Ack(Some(_)) => {
                    return Err(self.unavailable(format_args!(
                        "the idempotency key queue {name} disappeared while it was used; try again"
                    )));
                }
                Confirmation::NotRequested => {
                    return Err(self.backend("an idempotency key got no publisher confirm"));
                }
            }
        }
        self.publish_task(&session, &body).await?;
        if let Some((schedule, at)) = opts.idempotency_key.as_deref().and_then(schedule_of) {
            let name = self.fires_name(schedule);
            if !lock(&self.fires).contains(&name) {
                let arguments = args(&[("x-max-length", AMQPValue::LongLongInt(FIRES_KEPT))]);
                self.declare_alone(&session, &name, arguments).await?;
                lock(&self.fires).insert(name.clone());
            }
            let at = to_epoch_ms(at).to_string();
            self.publish_confirmed(&session, "", &name, at.as_bytes())
                .await?;
        }
        Ok(Some(body.id))
    }

    async fn claim(
        self: Arc<Self>,
        queue: String,
        owner: String,
        lease: Duration,
    ) -> Result<Option<Task>> {
        let session = self.session().await?;
        self.ensure_topology(&session, &queue).await?;
        let names = self.names(&queue)?;
        for _ in 0..MAX_CLAIM_STEPS {
            let got = session
                .claim
                .basic_get(
                    names.ready.as_str().into(),
                    BasicGetOptions { no_ack: false },
                )
                .await
                .map_err(|e| self.error(e))?;
            let Some(message) = got else {
                return Ok(None);
            };
            let delivery = message.delivery;
            let tag = delivery.delivery_tag;
            let now = now_ms();
            let handled = async {
                let mut body: Body = match serde_json::from_slice(&delivery.data) {
                    Ok(body) => body,
                    Err(_) => {
                        // Not a task of ours: keep it, out of the way.
                        self.publish_confirmed(&session, "", &names.failed, &delivery.data)
                            .await?;
                        return Ok(None);
                    }
                };
                body.queue.clone_from(&queue);
                if body.run_at_ms > now {
                    // Back from a delay queue early: on to the next one.
                    self.publish_task(&session, &body).await?;
                    return Ok(None);
                }
                Ok(Some(body))
            }
            .await;
            match handled {
                Ok(Some(body)) => {
                    // Redelivered: its holder was lost without settling it. The attempt is
                    // handed out again, marked, for the caller to settle as a crash.
                    let lost = delivery.redelivered;
                    let token = fastrand::u64(1..1 << 63);
                    let task = Task {
                        id: body.id,
                        queue: queue.clone(),
                        payload: body.payload.clone(),
                        attempt: body.attempts + 1,
                        errors: body.errors,
                        crashes: body.crashes,
                        lease_token: token,
                        owner,
                        lease_until: from_epoch_ms(add_ms(now, lease)),
                        created_at: from_epoch_ms(body.created_at_ms),
                        lost,
                    };
                    let held = Held {
                        task: task.clone(),
                        body,
                        channel: session.claim.clone(),
                        tag,
                    };
                    lock(&self.leases).insert(token, held);
                    return Ok(Some(task));
                }
                Ok(None) => {
                    // Handled (published elsewhere): drop this copy.
                    session
                        .claim
                        .basic_ack(tag, BasicAckOptions::default())
                        .await
                        .map_err(|e| self.error(e))?;
                }
                Err(e) => {
                    // Give it back for the next claim (best effort; the broker returns it
                    // anyway when the channel closes).
                    let _ = session
                        .claim
                        .basic_reject(tag, BasicRejectOptions { requeue: true })
                        .await;
                    return Err(e);
                }
            }
        }
        Ok(None)
    }

    /// Take the lease out of the map if this process holds it and it is still good.
    fn take_lease(&self, lease: &Lease) -> Option<Held> {
        let mut leases = lock(&self.leases);
        if leases.get(&lease.token)?.task.id != lease.id {
            return None;
        }
        let held = leases.remove(&lease.token)?;
        held.channel.status().connected().then_some(held)
    }

    /// Put a lease back after a settlement failed before its acknowledgement.
    fn restore_lease(&self, token: u64, held: Held) {
        if held.channel.status().connected() {
            lock(&self.leases).insert(token, held);
        }
    }

    async fn ack(&self, held: &Held) -> Result<()> {
        held.channel
            .basic_ack(held.tag, BasicAckOptions::default())
            .await
            .map_err(|e| self.error(e))
    }

    /// Publish what a settlement produces, then acknowledge the claimed message. On a failure
    /// before the acknowledgement the lease is kept.
    async fn settle<F, Fut>(&self, lease: &Lease, publish: F) -> Result<bool>
    where
        F: FnOnce(Arc<Session>, Body, String, i64) -> Fut,
        Fut: Future<Output = Result<()>>,
    {
        let Some(held) = self.take_lease(lease) else {
            return Ok(false);
        };
        let published = async {
            let session = self.session().await?;
            publish(
                session,
                held.body.clone(),
                held.task.owner.clone(),
                now_ms(),
            )
            .await
        }
        .await;
        if let Err(e) = published {
            self.restore_lease(lease.token, held);
            return Err(e);
        }
        self.ack(&held).await?;
        Ok(true)
    }

    async fn complete(self: Arc<Self>, lease: Lease, submits: Vec<Submit>) -> Result<bool> {
        let this = Arc::clone(&self);
        self.settle(&lease, |session, _, _, now| async move {
            let bodies: Vec<Body> = submits
                .into_iter()
                .map(|submit| this.new_body(&submit.queue, submit.payload, now, now))
                .collect();
            for body in &bodies {
                this.ensure_topology(&session, &body.queue).await?;
                this.register(&session, &body.queue).await?;
            }
            let published = bodies
                .iter()
                .map(|body| this.publish_task(&session, body))
                .collect();
            join_all(published)
                .await
                .into_iter()
                .collect::<Result<()>>()
        })
        .await
    }

    async fn fail(
        self: Arc<Self>,
        lease: Lease,
        failure: Failure,
        retry_at: Option<SystemTime>,
    ) -> Result<bool> {
        let this = Arc::clone(&self);
        self.settle(&lease, |session, mut body, owner, now| async move {
            body.attempts += 1;
            let outcome = match failure.kind {
                FailureKind::Error => {
                    body.errors += 1;
                    Outcome::Error
                }
                FailureKind::Crash => {
                    body.crashes += 1;
                    Outcome::Crash
                }
            };
            body.last_error = Some(failure.reason.clone());
            body.history.push(Attempt {
                attempt: body.attempts,
                owner,
                outcome,
                reason: Some(failure.reason),
                finished_at: now,
            });
            match retry_at {
                Some(at) => {
                    body.run_at_ms = to_epoch_ms(at);
                    this.publish_task(&session, &body).await
                }
                None => {
                    let names = this.names(&body.queue)?;
                    this.ensure_topology(&session, &body.queue).await?;
                    let data = this.encode(&body)?;
                    this.publish_confirmed(&session, "", &names.failed, &data)
                        .await
                }
            }
        })
        .await
    }

    async fn release(self: Arc<Self>, lease: Lease, reason: String) -> Result<bool> {
        let this = Arc::clone(&self);
        self.settle(&lease, |session, mut body, owner, now| async move {
            body.history.push(Attempt {
                attempt: body.attempts + 1,
                owner,
                outcome: Outcome::Released,
                reason: Some(reason),
                finished_at: now,
            });
            body.run_at_ms = now;
            this.publish_task(&session, &body).await
        })
        .await
    }

    /// This process's live claims matching `keep`, by id; forgets the stale ones.
    fn held_tasks(&self, keep: impl Fn(&Task) -> bool) -> Vec<Task> {
        let mut leases = lock(&self.leases);
        leases.retain(|_, held| held.channel.status().connected());
        let mut tasks: Vec<Task> = leases
            .values()
            .filter(|held| keep(&held.task))
            .map(|held| held.task.clone())
            .collect();
        tasks.sort_by_key(|task| task.id);
        tasks
    }

    fn renew(&self, owners: &[String], lease: Duration) -> u64 {
        let lease_until = from_epoch_ms(add_ms(now_ms(), lease));
        let mut leases = lock(&self.leases);
        leases.retain(|_, held| held.channel.status().connected());
        let mut renewed = 0;
        for held in leases.values_mut() {
            if owners.contains(&held.task.owner) {
                held.task.lease_until = lease_until;
                renewed += 1;
            }
        }
        renewed
    }

    /// Message counts of `names` by passive declares pipelined on one channel; `None` when
    /// one of them does not exist.
    async fn message_counts(
        &self,
        session: &Session,
        names: &[&str],
        known: bool,
    ) -> Result<Option<Vec<u64>>> {
        // A queue declared by this process exists: the shared channel will do. Otherwise a
        // NOT_FOUND may close the channel, so it must be one of our own.
        let channel = if known {
            self.inspect_channel(session).await?
        } else {
            self.fresh_channel(session).await?
        };
        let declares = names
            .iter()
            .map(|name| channel.queue_declare((*name).into(), passive(), FieldTable::default()))
            .collect();
        let results = join_all(declares).await;
        if !known {
            Self::close(&channel).await;
        }
        let mut counts = Vec::with_capacity(results.len());
        let mut missing = false;
        let mut failure = None;
        for result in results {
            match result {
                Ok(queue) => counts.push(u64::from(queue.message_count())),
                Err(e) if is_not_found(&e) => missing = true,
                Err(e) => failure = Some(e),
            }
        }
        if missing {
            return Ok(None);
        }
        match failure {
            Some(e) => Err(self.error(e)),
            None => Ok(Some(counts)),
        }
    }

    async fn counts(&self, queue: &str) -> Result<QueueCounts> {
        let names = self.names(queue)?;
        let session = self.session().await?;
        // The delay queues first: a task moving on to the ready queue meanwhile is counted
        // (possibly twice, never not at all).
        let mut all: Vec<&str> = names.buckets.iter().map(String::as_str).collect();
        all.push(&names.failed);
        all.push(&names.ready);
        let known = lock(&self.declared).contains(queue);
        let mut counts = self.message_counts(&session, &all, known).await?;
        if counts.is_none() {
            if !self.exists(&session, &names.ready).await? {
                // Never used.
                return Ok(QueueCounts {
                    running: self.running(queue),
                    ..QueueCounts::default()
                });
            }
            // Some of its objects were deleted: declare them again.
            lock(&self.declared).remove(queue);
            self.ensure_topology(&session, queue).await?;
            counts = self.message_counts(&session, &all, false).await?;
        }
        let counts = counts.ok_or_else(|| {
            self.backend(format_args!(
                "the queues of {queue} disappear while counted"
            ))
        })?;
        let buckets = BUCKETS as usize;
        Ok(QueueCounts {
            delayed: counts[..buckets].iter().sum(),
            failed: counts[buckets],
            ready: counts[buckets + 1],
            running: self.running(queue),
            next_run_at: None,
        })
    }

    fn running(&self, queue: &str) -> u64 {
        self.held_tasks(|task| task.queue == queue).len() as u64
    }

    /// Take every message of `name` without acknowledging it, on a channel of its own.
    /// `None` when the queue does not exist. Close the channel to give back what is left.
    async fn browse(
        &self,
        session: &Session,
        name: &str,
    ) -> Result<Option<(Channel, Vec<(DeliveryTag, Vec<u8>)>)>> {
        let channel = self.fresh_channel(session).await?;
        let mut messages = Vec::new();
        loop {
            match channel
                .basic_get(name.into(), BasicGetOptions { no_ack: false })
                .await
            {
                Ok(Some(message)) => {
                    messages.push((message.delivery.delivery_tag, message.delivery.data))
                }
                Ok(None) => return Ok(Some((channel, messages))),
                Err(e) if is_not_found(&e) => return Ok(None),
                Err(e) => {
                    Self::close(&channel).await;
                    return Err(self.error(e));
                }
            }
        }
    }

    /// The queues of the registry (plus those this process used), deduplicating it.
    async fn registry_queues(&self, session: &Session) -> Result<BTreeSet<String>> {
        let mut queues: BTreeSet<String> = lock(&self.registered).iter().cloned().collect();
        queues.extend(lock(&self.declared).iter().cloned());
        let Some((channel, messages)) = self.browse(session, &self.registry_name()).await? else {
            return Ok(queues);
        };
        let mut seen = HashSet::new();
        let mut result = Ok(());
        for (tag, data) in messages {
            let name = String::from_utf8(data).ok();
            let keep = match &name {
                Some(name) => validate_queue_name(name).is_ok() && seen.insert(name.clone()),
                None => false,
            };
            if keep {
                queues.extend(name);
            } else if result.is_ok() {
                // A duplicate (or garbage): compact the registry.
                result = channel
                    .basic_ack(tag, BasicAckOptions::default())
                    .await
                    .map_err(|e| self.error(e));
            }
        }
        Self::close(&channel).await;
        result.map(|()| queues)
    }

    async fn stats(&self) -> Result<Vec<QueueStats>> {
        let session = self.session().await?;
        let mut stats = Vec::new();
        for queue in self.registry_queues(&session).await? {
            let counts = self.counts(&queue).await?;
            if counts.ready + counts.delayed + counts.running + counts.failed == 0 {
                continue;
            }
            stats.push(QueueStats {
                queue,
                pending: counts.ready + counts.delayed,
                delayed: counts.delayed,
                running: counts.running,
                failed: counts.failed,
                oldest_pending_ms: None,
            });
        }
        Ok(stats)
    }

    fn summary(body: Body) -> TaskSummary {
        TaskSummary {
            id: body.id,
            queue: body.queue,
            state: TaskState::Failed,
            payload: body.payload,
            attempts: body.attempts,
            errors: body.errors,
            crashes: body.crashes,
            last_error: body.last_error,
            history: body.history,
            created_at: from_epoch_ms(body.created_at_ms),
        }
    }

    async fn queues_of(&self, session: &Session, queue: Option<&str>) -> Result<Vec<String>> {
        Ok(match queue {
            Some(queue) => vec![queue.to_string()],
            None => self.registry_queues(session).await?.into_iter().collect(),
        })
    }

    async fn failed(&self, queue: Option<&str>) -> Result<Vec<TaskSummary>> {
        let session = self.session().await?;
        let mut summaries = Vec::new();
        for queue in self.queues_of(&session, queue).await? {
            let names = self.names(&queue)?;
            let Some((channel, messages)) = self.browse(&session, &names.failed).await? else {
                continue;
            };
            Self::close(&channel).await;
            summaries.extend(
                messages
                    .iter()
                    .filter_map(|(_, data)| serde_json::from_slice::<Body>(data).ok())
                    .map(|mut body| {
                        body.queue.clone_from(&queue);
                        Self::summary(body)
                    }),
            );
        }
        summaries.sort_by_key(|summary| summary.id);
        Ok(summaries)
    }

    async fn retry_failed(&self, selector: &Selector) -> Result<u64> {
        let session = self.session().await?;
        let queue = match selector {
            Selector::Queue(queue) => Some(queue.as_str()),
            Selector::Ids(_) | Selector::All => None,
        };
        let mut moved = 0;
        for queue in self.queues_of(&session, queue).await? {
            let names = self.names(&queue)?;
            let Some((channel, messages)) = self.browse(&session, &names.failed).await? else {
                continue;
            };
            let retried = async {
                let now = now_ms();
                for (tag, data) in messages {
                    let Ok(mut body) = serde_json::from_slice::<Body>(&data) else {
                        continue;
                    };
                    if matches!(selector, Selector::Ids(ids) if !ids.contains(&body.id)) {
                        continue;
                    }
                    body.queue.clone_from(&queue);
                    body.attempts = 0;
                    body.errors = 0;
                    body.crashes = 0;
                    body.run_at_ms = now;
                    self.publish_task(&session, &body).await?;
                    channel
                        .basic_ack(tag, BasicAckOptions::default())
                        .await
                        .map_err(|e| self.error(e))?;
                    moved += 1;
                }
                Ok::<_, TransportError>(())
            }
            .await;
            Self::close(&channel).await;
            retried?;
        }
        Ok(moved)
    }

    async fn purge(&self, queue: &str, which: PurgeWhich) -> Result<u64> {
        let names = self.names(queue)?;
        let session = self.session().await?;
        let known = lock(&self.declared).contains(queue);
        if !known && !self.exists(&session, &names.ready).await? {
            return Ok(0);
        }
        // It exists: make sure all of its queues do (a purge of a missing one would fail).
        self.ensure_topology(&session, queue).await?;
        let targets: Vec<&str> = match which {
            PurgeWhich::Failed => vec![&names.failed],
            PurgeWhich::Pending => std::iter::once(names.ready.as_str())
                .chain(names.buckets.iter().map(String::as_str))
                .collect(),
        };
        let channel = self.fresh_channel(&session).await?;
        let purges = targets
            .iter()
            .map(|name| channel.queue_purge((*name).into(), QueuePurgeOptions::default()))
            .collect();
        let results = join_all(purges).await;
        Self::close(&channel).await;
        let mut purged = 0;
        for result in results {
            purged += u64::from(result.map_err(|e| self.error(e))?);
        }
        Ok(purged)
    }

    async fn last_fire(&self, schedule: &str) -> Result<Option<SystemTime>> {
        let session = self.session().await?;
        let Some((channel, messages)) = self.browse(&session, &self.fires_name(schedule)).await?
        else {
            return Ok(None);
        };
        Self::close(&channel).await;
        Ok(messages
            .iter()
            .filter_map(|(_, data)| std::str::from_utf8(data).ok()?.parse::<i64>().ok())
            .max()
            .map(from_epoch_ms))
    }

    /// The wake-up consumer of `queue` on this connection, made if needed.
    async fn waiter(&self, session: &Session, queue: &str) -> Result<Arc<Waiter>> {
        let current = lock(&session.waiters).get(queue).cloned();
        if let Some(waiter) = current.filter(|waiter| {
            !waiter.dead.load(Ordering::SeqCst) && waiter.channel.status().connected()
        }) {
            return Ok(waiter);
        }
        let exchange = self.names(queue)?.ready;
        let channel = self.fresh_channel(session).await?;
        let consumer = async {
            let options = QueueDeclareOptions {
                exclusive: true,
                auto_delete: true,
                ..QueueDeclareOptions::default()
            };
            let arguments = args(&[("x-max-length", AMQPValue::LongLongInt(1))]);
            let signals = channel.queue_declare("".into(), options, arguments).await?;
            let name: ShortString = signals.name().clone();
            channel
                .queue_bind(
                    name.clone(),
                    exchange.as_str().into(),
                    "".into(),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await?;
            let options = BasicConsumeOptions {
                no_ack: true,
                exclusive: true,
                ..BasicConsumeOptions::default()
            };
            channel
                .basic_consume(name, "".into(), options, FieldTable::default())
                .await
        }
        .await;
        let consumer = match consumer {
            Ok(consumer) => consumer,
            Err(e) => {
                Self::close(&channel).await;
                return Err(self.error(e));
            }
        };
        let (signal, _) = watch::channel(0u64);
        let signal = Arc::new(signal);
        let dead = Arc::new(AtomicBool::new(false));
        consumer.set_delegate({
            let (signal, dead) = (Arc::clone(&signal), Arc::clone(&dead));
            move |delivery: DeliveryResult| {
                let (signal, dead) = (Arc::clone(&signal), Arc::clone(&dead));
                async move {
                    if !matches!(delivery, Ok(Some(_))) {
                        // Cancelled or failed: the next wait makes a new one.
                        dead.store(true, Ordering::SeqCst);
                    }
                    signal.send_modify(|n| *n = n.wrapping_add(1));
                }
            }
        });
        let waiter = Arc::new(Waiter {
            channel,
            _consumer: consumer,
            signal,
            dead,
        });
        lock(&session.waiters).insert(queue.to_string(), Arc::clone(&waiter));
        Ok(waiter)
    }

    async fn wait(&self, queue: &str, timeout: Duration) -> Result<()> {
        let session = self.session().await?;
        self.ensure_topology(&session, queue).await?;
        let waiter = self.waiter(&session, queue).await?;
        let mut signals = waiter.signal.subscribe();
        // After subscribing: a task published from now on bumps the signal.
        let ready = self.names(queue)?.ready;
        let channel = self.inspect_channel(&session).await?;
        let declared = channel
            .queue_declare(ready.as_str().into(), passive(), FieldTable::default())
            .await
            .map_err(|e| self.error(e))?;
        if declared.message_count() > 0 {
            return Ok(());
        }
        let _blocked = Blocked::new(&self.blocked_waiters);
        let deadline = Instant::now() + timeout.min(MAX_WAIT);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(());
            }
            if tokio::time::timeout(left.min(WAIT_CHECK), signals.changed())
                .await
                .is_ok()
            {
                return Ok(()); // a signal (or the consumer ended)
            }
            // A lost connection does not reach the consumer: look at it (locally) now and
            // then, and return so that the next wait connects again.
            if waiter.dead.load(Ordering::SeqCst) || !waiter.channel.status().connected() {
                return Ok(());
            }
        }
    }

    async fn delete_everything(&self) -> Result<()> {
        let session = self.session().await?;
        let queues = self.registry_queues(&session).await?;
        let mut doomed: Vec<String> = Vec::new();
        let mut exchanges: Vec<String> = Vec::new();
        for queue in &queues {
            let names = self.names(queue)?;
            exchanges.push(names.ready.clone());
            doomed.push(names.ready);
            doomed.push(names.failed);
            doomed.extend(names.buckets);
        }
        doomed.push(self.registry_name());
        doomed.extend(lock(&self.keys).drain());
        doomed.extend(lock(&self.fires).drain());
        let mut channel = self.fresh_channel(&session).await?;
        for name in &doomed {
            if channel
                .queue_delete(name.as_str().into(), QueueDeleteOptions::default())
                .await
                .is_err()
            {
                channel = self.fresh_channel(&session).await?;
            }
        }
        for name in &exchanges {
            if channel
                .exchange_delete(name.as_str().into(), ExchangeDeleteOptions::default())
                .await
                .is_err()
            {
                channel = self.fresh_channel(&session).await?;
            }
        }
        Self::close(&channel).await;
        self.forget_declared();
        Ok(())
    }
}

#[async_trait::async_trait]
impl Transport for AmqpTransport {
    fn describe(&self) -> String {
        self.inner.display.clone()
    }

    fn leases_held_by_broker(&self) -> bool {
        true
    }

    async fn submit(
        &self,
        queue: &str,
        payload: Payload,
        opts: &SubmitOptions,
    ) -> Result<Option<TaskId>> {
        validate_queue_name(queue)?;
        self.inner.names(queue)?;
        let (queue, opts) = (queue.to_string(), opts.clone());
        self.spawned(|inner| inner.submit(queue, payload, opts))
            .await
    }

    async fn claim(&self, queue: &str, owner: &str, lease: Duration) -> Result<Option<Task>> {
        validate_queue_name(queue)?;
        self.inner.names(queue)?;
        let (queue, owner) = (queue.to_string(), owner.to_string());
        self.spawned(|inner| inner.claim(queue, owner, lease)).await
    }

    /// Publishes the follow-ups (confirmed), then acknowledges the task: see the module docs
    /// for what a crash in between does.
    async fn complete(&self, lease: &Lease, submits: &[Submit]) -> Result<bool> {
        for submit in submits {
            validate_queue_name(&submit.queue)?;
            self.inner.names(&submit.queue)?;
        }
        let (lease, submits) = (*lease, submits.to_vec());
        self.spawned(|inner| inner.complete(lease, submits)).await
    }

    async fn fail(
        &self,
        lease: &Lease,
        failure: &Failure,
        retry_at: Option<SystemTime>,
    ) -> Result<bool> {
        let (lease, failure) = (*lease, failure.clone());
        self.spawned(|inner| inner.fail(lease, failure, retry_at))
            .await
    }

    async fn release(&self, lease: &Lease, reason: &str) -> Result<bool> {
        let (lease, reason) = (*lease, reason.to_string());
        self.spawned(|inner| inner.release(lease, reason)).await
    }

    /// This process's claims only (see the module docs).
    async fn owned_by(&self, owner: &str) -> Result<Vec<Task>> {
        Ok(self.inner.held_tasks(|task| task.owner == owner))
    }

    /// This process's claims only (see the module docs).
    async fn expired(&self, now: SystemTime) -> Result<Vec<Task>> {
        Ok(self.inner.held_tasks(|task| task.lease_until < now))
    }

    /// This process's claims only (see the module docs).
    async fn renew(&self, owners: &[String], lease: Duration) -> Result<u64> {
        Ok(self.inner.renew(owners, lease))
    }

    async fn counts(&self, queue: &str) -> Result<QueueCounts> {
        validate_queue_name(queue)?;
        self.inner.counts(queue).await
    }

    async fn stats(&self) -> Result<Vec<QueueStats>> {
        self.inner.stats().await
    }

    async fn failed(&self, queue: Option<&str>) -> Result<Vec<TaskSummary>> {
        if let Some(queue) = queue {
            validate_queue_name(queue)?;
        }
        self.inner.failed(queue).await
    }

    async fn retry_failed(&self, selector: &Selector) -> Result<u64> {
        if let Selector::Queue(queue) = selector {
            validate_queue_name(queue)?;
        }
        let selector = selector.clone();
        self.spawned(|inner| async move { inner.retry_failed(&selector).await })
            .await
    }

    async fn purge(&self, queue: &str, which: PurgeWhich) -> Result<u64> {
        validate_queue_name(queue)?;
        self.inner.purge(queue, which).await
    }

    /// Nothing to do: a key's queue expires by itself 7 days after its last use, and a
    /// schedule's fires queue keeps only its last 16 fire times.
    async fn prune_schedule_keys(&self, _before: SystemTime) -> Result<u64> {
        Ok(0)
    }

    async fn last_fire(&self, schedule: &str) -> Result<Option<SystemTime>> {
        self.inner.last_fire(schedule).await
    }

    /// Push-based: returns when a task is published to `queue` or one expires into it from a
    /// delay queue (from any process), or when `timeout` passes. See the module docs.
    async fn wait(&self, queue: &str, timeout: Duration) -> Result<()> {
        validate_queue_name(queue)?;
        self.inner.wait(queue, timeout).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_are_parsed_without_their_prefix_and_secrets() {
        let parsed = parse_uri(
            "amqp://u:s%40cret@broker.example:5673/my%2fvhost?prefix=app_one&heartbeat=5",
        )
        .unwrap();
        assert_eq!(parsed.prefix, "app_one");
        assert_eq!(
            parsed.display,
            "amqp://u:***@broker.example:5673/my%2fvhost?heartbeat=5"
        );
        assert_eq!(parsed.secrets, ["s%40cret", "s@cret"]);
        let uri = &parsed.uri;
        assert_eq!(
            (
                uri.authority.userinfo.username.as_str(),
                uri.authority.userinfo.password.as_str()
            ),
            ("u", "s@cret")
        );
        assert_eq!(
            (uri.authority.host.as_str(), uri.authority.port),
            ("broker.example", 5673)
        );
        assert_eq!(uri.vhost, "my/vhost");
        assert_eq!(uri.query.heartbeat, Some(5));
        assert_eq!(uri.query.connection_timeout, Some(CONNECT_TIMEOUT_MS));

        let parsed = parse_uri("amqp://10.1.2.3").unwrap();
        assert_eq!(parsed.uri.authority.host, "10.1.2.3", "IP hosts are kept");
        assert_eq!(parsed.uri.authority.port, 5672);
        assert_eq!(parsed.uri.vhost, "/");
        assert_eq!(parsed.uri.authority.userinfo.username, "guest");
        assert_eq!(parsed.uri.query.heartbeat, Some(HEARTBEAT_S));
        assert_eq!(parsed.prefix, "rex");
        assert_eq!(parse_uri("amqp://h/").unwrap().uri.vhost, "/");
        assert_eq!(parse_uri("amqp://h/%2f").unwrap().uri.vhost, "/");
        assert_eq!(
            parse_uri("amqp://[::1]:5999/v").unwrap().uri.authority.host,
            "::1"
        );
        assert_eq!(
            parse_uri("amqp://h?connection_timeout=50")
                .unwrap()
                .connect_timeout,
            Duration::from_millis(50)
        );
        let parsed = parse_uri("amqps://h").unwrap();
        assert_eq!(parsed.tls, Some(OwnedTLSConfig::default()));
        assert_eq!(parsed.uri.authority.port, 5671);
        let reason = |uri: &str| match parse_uri(uri) {
            Err(TransportError::InvalidUri { reason, .. }) => reason,
            Err(other) => panic!("{uri}: {other}"),
            Ok(_) => panic!("{uri}: accepted"),
        };
        assert!(reason("amqp://h?cacertfile=/ca.pem").contains("use amqps://"));
        assert!(reason("amqps://h?verify=verify_none").contains("only verify_peer"));
        assert!(
            reason("amqps://h?cacertfile=/nonexistent.pem")
                .starts_with("cacertfile=/nonexistent.pem: ")
        );
        assert_eq!(
            reason("amqps://h?certfile=/c.pem"),
            "certfile and keyfile go together"
        );

        for bad in [
            "amqp://h?prefix=",
            "amqp://h?prefix=Bad",
            "amqp://h?prefix=a.b",
            "amqp://h?prefix=ab&prefix=cd",
            "amqp://h?heartbeat=x",
            "amqp://h?heartbeat=70000",
            "amqp://h?nope=1",
            "amqp://h:port",
            "amqp://h/a/b",
            "amqp://u:s3cret@h/%zz",
            "http://h",
        ] {
            match parse_uri(bad) {
                Err(TransportError::InvalidUri { uri, .. }) => {
                    assert!(!uri.contains("s3cret"), "{uri}")
                }
                Err(other) => panic!("{bad}: {other}"),
                Ok(_) => panic!("{bad} should be refused"),
            }
        }
    }

    #[test]
    fn delays_pick_the_largest_bucket_that_fits() {
        assert_eq!(bucket_for(-5), 0);
        assert_eq!(bucket_for(0), 0);
        assert_eq!(bucket_for(7), 0);
        assert_eq!(bucket_for(8), 0);
        assert_eq!(bucket_for(15), 0);
        assert_eq!(bucket_for(16), 1);
        assert_eq!(bucket_for(300), 5);
        assert_eq!(bucket_ttl_ms(5), 256);
        assert_eq!(bucket_for(3_600_000), 18);
        assert_eq!(bucket_for(i64::MAX), BUCKETS - 1);
        assert_eq!(bucket_ttl_ms(BUCKETS - 1), 33_554_432);
    }

    #[test]
    fn schedule_keys_are_recognised() {
        let at = from_epoch_ms(1_795_000_000_300);
        let key = crate::schedule_key("nightly:db", at);
        assert_eq!(schedule_of(&key), Some(("nightly:db", at)));
        assert_eq!(schedule_of("schedule:x:12"), None);
        assert_eq!(schedule_of("my-key"), None);
    }

    #[test]
    fn long_names_are_hashed() {
        let t = AmqpTransport::open_uri("amqp://h?prefix=pfx").unwrap();
        assert_eq!(t.inner.key_name("k1"), "pfx._key.k1");
        let long = "k".repeat(300);
        let hashed = t.inner.key_name(&long);
        assert_eq!(hashed, format!("pfx._keyh.{:016x}", fnv1a(&long)));
        assert_eq!(hashed, t.inner.key_name(&long), "stable");
        assert_eq!(fnv1a(""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a("a"), 0xaf63_dc4c_8601_ec8c);
        assert!(t.inner.names(&"q".repeat(250)).is_err());
        assert_eq!(t.inner.names("q1").unwrap().buckets[22], "pfx.q1.delay.22");
    }

    #[test]
    fn ids_increase() {
        let t = AmqpTransport::open_uri("amqp://h").unwrap();
        let ids: Vec<TaskId> = (0..10_000).map(|_| t.inner.next_id()).collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]));
        assert!(ids[0] > 0);
    }

    #[test]
    fn secrets_stay_out_of_debug_and_describe() {
        let t = AmqpTransport::open_uri("amqp://me:s3cret@h/%2f").unwrap();
        assert_eq!(t.describe(), "AMQP(amqp://me:***@h/%2f, prefix rex)");
        assert!(!format!("{t:?}").contains("s3cret"));
        let err = AmqpTransport::open_uri("amqps://me:s3cret@h/%2f?cacertfile=/none").unwrap_err();
        assert!(matches!(err, TransportError::InvalidUri { .. }), "{err}");
        assert!(!err.to_string().contains("s3cret"));
    }
}
