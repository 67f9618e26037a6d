//! The state of one RabbitMQ transport ([`Inner`]), shared by its handles and the tasks they
//! spawn; its methods live in the other files of the module, one job each.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use lapin::tcp::OwnedTLSConfig;
use lapin::uri::AMQPUri;

use super::lease::{GivenUp, Held};
use super::publish::IdState;
use super::runtimes::RuntimeSlot;
use crate::TaskId;
use crate::runtime_cache::PerRuntime;

/// The state of one transport, shared by its handles and the tasks it spawns. Its methods live
/// in the files of this module (see the module docs, "Files").
pub(super) struct Inner {
    /// The connection parameters; holds the password, never printed.
    pub(super) uri: AMQPUri,
    /// For `amqps://`: what to trust, and the client certificate.
    pub(super) tls: Option<OwnedTLSConfig>,
    pub(super) prefix: String,
    /// `describe()`: the URI without secrets, and the prefix.
    pub(super) display: String,
    /// Passwords, scrubbed from error messages.
    pub(super) secrets: Vec<String>,
    pub(super) connect_timeout: Duration,
    /// Sessions per Tokio runtime: each is driven by tasks of the runtime that made it.
    pub(super) runtimes: PerRuntime<RuntimeSlot>,
    /// Task queues whose objects this process declared.
    pub(super) declared: Mutex<HashSet<String>>,
    /// Task queues whose name this process published to the registry.
    pub(super) registered: Mutex<HashSet<String>>,
    pub(super) registry_declared: AtomicBool,
    /// Fires queues this process declared.
    pub(super) fires: Mutex<HashSet<String>>,
    /// The schedules' pause flags this process declared (for `delete_everything`).
    pub(super) schedule_flags: Mutex<HashSet<String>>,
    /// Key queues this process declared (at most MAX_TRACKED_KEYS), for cleanup.
    pub(super) keys: Mutex<HashSet<String>>,
    /// This process's claims by lease token.
    pub(super) leases: Mutex<HashMap<u64, Held>>,
    /// Tasks this process lost with a connection, by id (see `Inner::forgiven`).
    pub(super) given_up: Mutex<HashMap<TaskId, GivenUp>>,
    /// The latest acknowledgements, with the serial of the session they were sent on.
    pub(super) acked: Mutex<VecDeque<(u64, TaskId)>>,
    /// Claims that failed with the connection: their message may come back redelivered
    /// without anything having crashed (see `lease.rs`).
    pub(super) unseen_gets: AtomicU32,
    pub(super) ids: Mutex<IdState>,
    /// `wait` calls blocked on a signal (tests observe it).
    pub(super) blocked_waiters: AtomicUsize,
    /// The pause flag of each queue as last seen, and when (see `pause.rs`).
    pub(super) pauses: Mutex<HashMap<String, (Instant, bool)>>,
    pub(super) masters_declared: AtomicBool,
    pub(super) history_declared: AtomicBool,
    pub(super) schedules_declared: AtomicBool,
}

pub(super) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing here can panic half-way through an update.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
