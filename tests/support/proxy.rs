//! A fault-injecting TCP proxy for the end-to-end tests, in the spirit of Toxiproxy: it
//! listens on `127.0.0.1:0`, forwards every connection to one upstream address, and can be
//! switched at run time between
//!
//! * [`Mode::Pass`]: bytes go through as they come;
//! * [`Mode::BlackHole`]: bytes are silently dropped in both directions, connections are left
//!   open, new connections are accepted (and connected upstream) but nothing is forwarded —
//!   what a peer sees when a network drops its packets, except that TCP here acknowledges
//!   what it drops, so only the peer's own timeouts (not TCP's) can notice;
//! * [`Mode::Latency`]: each chunk read is forwarded after the given delay;
//!
//! and [`Proxy::reset`] closes every open connection with an RST (`SO_LINGER` 0) on both
//! sides, while the proxy goes on accepting. What was dropped stays dropped: healing a
//! black-hole does not replay it, so a connection that had a request in flight stays out of
//! step until its client gives up on it.
//!
//! Plain threads: one accepting, two per connection (one per direction).

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// What the proxy does with the bytes it reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Pass,
    BlackHole,
    Latency(Duration),
}

/// One proxied connection: the client's socket and the upstream one.
struct Pair {
    client: TcpStream,
    upstream: TcpStream,
    /// Set by [`Proxy::reset`]: an end of stream is not passed on (the sockets are aborted).
    resetting: AtomicBool,
}

impl Pair {
    /// Abort both sockets: `SO_LINGER` 0 makes the last close send an RST, and shutting down
    /// the reading side wakes the forwarding threads, whose exit drops the last handles.
    fn abort(&self) {
        self.resetting.store(true, Ordering::SeqCst);
        for socket in [&self.client, &self.upstream] {
            let _ = nix::sys::socket::setsockopt(
                &socket.as_fd(),
                nix::sys::socket::sockopt::Linger,
                &nix::libc::linger {
                    l_onoff: 1,
                    l_linger: 0,
                },
            );
            let _ = socket.shutdown(Shutdown::Read);
        }
    }
}

struct Shared {
    upstream: SocketAddr,
    mode: Mutex<Mode>,
    /// Open connections (forwarding threads hold them too; the last one dropped closes them).
    pairs: Mutex<Vec<Arc<Pair>>>,
    stopped: AtomicBool,
    accepted: AtomicU64,
    /// Bytes dropped while black-holed.
    dropped: AtomicU64,
}

impl Shared {
    fn mode(&self) -> Mode {
        *self.mode.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn pairs(&self) -> std::sync::MutexGuard<'_, Vec<Arc<Pair>>> {
        self.pairs.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A running proxy; dropping it stops accepting and aborts every connection.
pub struct Proxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
}

impl Proxy {
    /// A proxy to `upstream`, passing bytes through until told otherwise.
    pub fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let addr = listener.local_addr().expect("proxy address");
        let shared = Arc::new(Shared {
            upstream,
            mode: Mutex::new(Mode::Pass),
            pairs: Mutex::new(Vec::new()),
            stopped: AtomicBool::new(false),
            accepted: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
        });
        let accepting = Arc::clone(&shared);
        std::thread::spawn(move || accept_loop(listener, accepting));
        Proxy { addr, shared }
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn set(&self, mode: Mode) {
        *self
            .shared
            .mode
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = mode;
    }

    pub fn mode(&self) -> Mode {
        self.shared.mode()
    }

    /// Close every open connection with an RST on both sides; new ones are still accepted.
    /// Returns how many were open.
    pub fn reset(&self) -> usize {
        let pairs = std::mem::take(&mut *self.shared.pairs());
        for pair in &pairs {
            pair.abort();
        }
        pairs.len()
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        let mut pairs = self.shared.pairs();
        pairs.retain(|pair| Arc::strong_count(pair) > 1);
        pairs.len()
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> u64 {
        self.shared.accepted.load(Ordering::SeqCst)
    }

    /// Bytes dropped while black-holed, both directions.
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::SeqCst)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.shared.stopped.store(true, Ordering::SeqCst);
        // Wake the accepting thread so that it sees `stopped`.
        let _ = TcpStream::connect(self.addr);
        self.reset();
    }
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    for client in listener.incoming() {
        if shared.stopped.load(Ordering::SeqCst) {
            break;
        }
        let Ok(client) = client else { continue };
        shared.accepted.fetch_add(1, Ordering::SeqCst);
        let _ = client.set_nodelay(true);
        let upstream = match TcpStream::connect(shared.upstream) {
            Ok(upstream) => upstream,
            Err(_) => {
                // As if the server refused it.
                let pair = Pair {
                    upstream: client.try_clone().expect("clone"),
                    client,
                    resetting: AtomicBool::new(false),
                };
                pair.abort();
                continue;
            }
        };
        let _ = upstream.set_nodelay(true);
        let pair = Arc::new(Pair {
            client,
            upstream,
            resetting: AtomicBool::new(false),
        });
        {
            let mut pairs = shared.pairs();
            pairs.retain(|pair| Arc::strong_count(pair) > 1);
            pairs.push(Arc::clone(&pair));
        }
        for to_upstream in [true, false] {
            let (pair, shared) = (Arc::clone(&pair), Arc::clone(&shared));
            std::thread::spawn(move || pump(&pair, &shared, to_upstream));
        }
    }
}

/// Forward one direction of `pair` until its source ends.
fn pump(pair: &Pair, shared: &Shared, to_upstream: bool) {
    let (mut from, mut to) = if to_upstream {
        (&pair.client, &pair.upstream)
    } else {
        (&pair.upstream, &pair.client)
    };
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        match shared.mode() {
            Mode::Pass => {}
            Mode::BlackHole => {
                shared.dropped.fetch_add(n as u64, Ordering::SeqCst);
                continue;
            }
            Mode::Latency(delay) => std::thread::sleep(delay),
        }
        // The mode may have changed during the delay: a black-hole drops what was delayed.
        if shared.mode() == Mode::BlackHole {
            shared.dropped.fetch_add(n as u64, Ordering::SeqCst);
            continue;
        }
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    // An end of stream goes through, unless black-holed or reset (then the other side sees
    // nothing, or the RST).
    if !pair.resetting.load(Ordering::SeqCst) && shared.mode() != Mode::BlackHole {
        let _ = to.shutdown(Shutdown::Write);
    }
}
