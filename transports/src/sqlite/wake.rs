//! [`wait`](crate::Transport::wait) and its plumbing: how a waiting consumer learns that a
//! task may have become ready.
//!
//! Within a process, every commit that may make a task ready notifies the instance's
//! [`Notify`](tokio::sync::Notify). Across processes, SQLite cannot notify anyone of a commit,
//! so a waiting consumer would have to poll. Instead each waiting transport instance listens
//! on a Linux *abstract* datagram socket (no file to clean up, no path-length limit) and
//! registers it with an empty file in `<database>.wake/` — the [`WakeBus`]. After a commit that
//! may make a task ready, the writer sends one byte to every registered socket. Registrations
//! of dead processes are noticed (`ECONNREFUSED`) and removed. Everything here is best effort:
//! a lost wake-up only means the waiter notices the task at its poll interval.
//!
//! The same bus on another channel carries the lifecycle events to their followers
//! (`events.rs`): a follower registers on `<database>.events/`, publishers send it datagrams.

use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rusqlite::params;
use tokio::time::Instant;

use super::SqliteTransport;
use crate::task::now_ms;
use crate::{Result, validate_queue_name};

/// How often [`wait`](crate::Transport::wait) looks for work submitted by other processes.
pub(super) const POLL_INTERVAL: Duration = Duration::from_millis(50);

const READINESS: &str = include_str!("sql/queries/readiness.sql");

/// How long a writer reuses its listing of the registrations.
const PEERS_TTL: Duration = Duration::from_millis(100);

static INSTANCE: AtomicU64 = AtomicU64::new(0);

pub struct WakeBus {
    dir: PathBuf,
    /// `<pid>-<instance>`: this instance's registration file name and socket name suffix.
    me: String,
    channel: &'static str,
    /// Hash of the database path: part of every socket name, so buses of two databases
    /// never cross.
    scope: String,
    listener: Mutex<Option<UnixDatagram>>,
    sender: Option<UnixDatagram>,
    peers: Mutex<(Option<std::time::Instant>, Vec<String>)>,
}

impl WakeBus {
    pub fn new(database: &Path) -> WakeBus {
        Self::on(database, "wake")
    }

    /// A bus of its own for `channel` (`wake`, `events`): its registrations live in
    /// `<database>.<channel>/`, its sockets are named `rex-<channel>/...`.
    pub fn on(database: &Path, channel: &'static str) -> WakeBus {
        let mut dir = database.as_os_str().to_owned();
        dir.push(".");
        dir.push(channel);
        let absolute = std::fs::canonicalize(database).unwrap_or_else(|_| database.to_path_buf());
        WakeBus {
            dir: PathBuf::from(dir),
            me: format!(
                "{}-{}",
                std::process::id(),
                INSTANCE.fetch_add(1, Ordering::Relaxed)
            ),
            channel,
            scope: format!(
                "{:016x}",
                crate::hash::fnv1a64(absolute.as_os_str().as_encoded_bytes())
            ),
            listener: Mutex::new(None),
            sender: UnixDatagram::unbound()
                .and_then(|s| s.set_nonblocking(true).map(|()| s))
                .ok(),
            peers: Mutex::new((None, Vec::new())),
        }
    }

    fn address(&self, name: &str) -> std::io::Result<SocketAddr> {
        SocketAddr::from_abstract_name(format!("rex-{}/{}/{name}", self.channel, self.scope))
    }

    /// A clone of this instance's listening socket, registering it on first use; `None` if
    /// the bus cannot be used here (the caller falls back to polling).
    pub fn listener(&self) -> Option<UnixDatagram> {
        let mut slot = self.listener.lock().unwrap_or_else(|e| e.into_inner());
        if slot.is_none() {
            let socket = UnixDatagram::bind_addr(&self.address(&self.me).ok()?).ok()?;
            socket.set_nonblocking(true).ok()?;
            {
                use std::os::unix::fs::DirBuilderExt;
                let mut dir = std::fs::DirBuilder::new();
                dir.recursive(true).mode(0o700).create(&self.dir).ok()?;
            }
            std::fs::write(self.dir.join(&self.me), b"").ok()?;
            *slot = Some(socket);
        }
        slot.as_ref().and_then(|s| s.try_clone().ok())
    }

    /// Tell every other registered instance that a task may be ready.
    pub fn ring(&self) {
        self.send(b"!");
    }

    /// The other registered instances (a listing at most [`PEERS_TTL`] old).
    fn peers(&self) -> Vec<String> {
        let mut cache = self.peers.lock().unwrap_or_else(|e| e.into_inner());
        if cache.0.is_none_or(|at| at.elapsed() > PEERS_TTL) {
            cache.1 = std::fs::read_dir(&self.dir)
                .map(|entries| {
                    entries
                        .flatten()
                        .filter_map(|e| e.file_name().into_string().ok())
                        .filter(|n| *n != self.me)
                        .collect()
                })
                .unwrap_or_default();
            cache.0 = Some(std::time::Instant::now());
        }
        cache.1.clone()
    }

    /// Whether another instance is registered (it may be a dead process's registration, until
    /// a send notices).
    pub fn has_peers(&self) -> bool {
        !self.peers().is_empty()
    }

    /// Send `message` (one datagram) to every other registered instance; best effort.
    pub fn send(&self, message: &[u8]) {
        let Some(sender) = &self.sender else { return };
        for peer in self.peers() {
            let Ok(addr) = self.address(&peer) else {
                continue;
            };
            if let Err(e) = sender.send_to_addr(message, &addr) {
                // Nobody listens any more: a dead process's registration.
                if e.kind() == std::io::ErrorKind::ConnectionRefused {
                    let _ = std::fs::remove_file(self.dir.join(&peer));
                }
                // WouldBlock: its queue is full; a waiter will wake anyway, a follower of
                // events loses this one.
            }
        }
    }
}

impl Drop for WakeBus {
    fn drop(&mut self) {
        if self
            .listener
            .get_mut()
            .map(|l| l.is_some())
            .unwrap_or(false)
        {
            let _ = std::fs::remove_file(self.dir.join(&self.me));
        }
    }
}

impl SqliteTransport {
    /// Tasks may have become ready: wake this process's waiters and, through the wake bus,
    /// those of other processes on this database.
    pub(super) fn wake_up(&self) {
        self.notify.notify_waiters();
        self.wake.ring();
    }

    /// Whether a task of `queue` is ready now, else when the next delayed one will be.
    fn readiness(&self, queue: &str) -> Result<(bool, Option<i64>)> {
        let now = now_ms();
        self.with(|conn| {
            conn.prepare_cached(READINESS)?
                .query_row(params![queue, now], |row| Ok((row.get(0)?, row.get(1)?)))
        })
    }

    /// [`Transport::wait`](crate::Transport::wait): returns as soon as a task is ready in
    /// `queue`: at once for changes made through this instance, within [`POLL_INTERVAL`] for
    /// changes made by other processes.
    pub(super) async fn wait_ready(&self, queue: &str, timeout: Duration) -> Result<()> {
        validate_queue_name(queue)?;
        let deadline = Instant::now() + timeout;
        // Other processes ring the wake bus after their commits; without it (it could not be
        // set up), poll.
        let bus = self
            .wake
            .listener()
            .and_then(|l| tokio::net::UnixDatagram::from_std(l).ok());
        let mut buf = [0u8; 16];
        loop {
            // Registered before the check, so a submit between the check and the sleep still
            // wakes us up.
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let (ready, next_run_at) = self.readiness(queue)?;
            if ready || Instant::now() >= deadline {
                return Ok(());
            }
            // A delayed task becomes ready by itself: no one will ring for it.
            let due = next_run_at.map(|at| {
                Instant::now() + Duration::from_millis(u64::try_from(at - now_ms()).unwrap_or(0))
            });
            let rung = async {
                match &bus {
                    Some(socket) => socket.recv(&mut buf).await.map(|_| ()),
                    None => std::future::pending().await,
                }
            };
            let recheck = if bus.is_some() {
                deadline
            } else {
                (Instant::now() + POLL_INTERVAL).min(deadline)
            };
            let recheck = due.map_or(recheck, |due| due.min(recheck));
            tokio::select! {
                _ = notified => return Ok(()),
                _ = rung => {}
                _ = tokio::time::sleep_until(recheck) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ring_reaches_other_instances_of_the_same_database_only() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b, other) = (
            WakeBus::new(&dir.path().join("x.db")),
            WakeBus::new(&dir.path().join("x.db")),
            WakeBus::new(&dir.path().join("y.db")),
        );
        let listener = b.listener().expect("listener");
        let other_listener = other.listener().expect("listener");
        a.ring();
        let mut buf = [0u8; 8];
        listener.set_nonblocking(false).unwrap();
        listener
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        assert_eq!(listener.recv(&mut buf).unwrap(), 1);
        assert!(
            other_listener.recv(&mut buf).is_err(),
            "another database's bus heard it"
        );
        // A dropped instance unregisters.
        drop(b);
        assert_eq!(
            std::fs::read_dir(dir.path().join("x.db.wake"))
                .unwrap()
                .count(),
            0
        );
    }
}
