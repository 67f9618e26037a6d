//! Wake-ups: `wait`, and the one listening connection per transport that `LISTEN`s on the
//! notification channel, reconnects with backoff when it is lost, and fans notifications out
//! to the waiters of this process.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_postgres::AsyncMessage;

use super::connection::OPERATION_TIMEOUT;
use super::tls::LazyTls;
use super::{MAX_DELAY, PgsqlTransport};
use crate::{Result, validate_queue_name};

/// Reconnection delays of the listening connection.
const LISTEN_BACKOFF_MIN: Duration = Duration::from_millis(100);
const LISTEN_BACKOFF_MAX: Duration = Duration::from_secs(5);
/// How often the listening connection is pinged (an empty query), to notice that it is gone.
pub(super) const LISTEN_PING: Duration = Duration::from_secs(5);
/// Notifications buffered per waiter; a waiter that falls behind just wakes up.
const WAKE_CAPACITY: usize = 256;
/// `LISTEN`; `{channel}` stands for the quoted channel name.
pub(super) const LISTEN: &str = include_str!("sql/queries/listen.sql");

/// `Instant::now() + d`, without overflowing on absurd durations.
fn later(d: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(d.min(MAX_DELAY))
        .unwrap_or_else(|| now + Duration::from_secs(86_400))
}

impl PgsqlTransport {
    /// What the trait implementation's doc (in `mod.rs`) says: a notification, the earliest
    /// delayed task, a reconnection of the listener, or the timeout.
    pub(super) async fn wait(&self, queue: &str, timeout: Duration) -> Result<()> {
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

    /// The earliest `run_at` of the pending tasks of `queue`; `None` while it is paused (it
    /// has nothing ready until it is resumed, which notifies).
    async fn next_pending(&self, queue: &str) -> Result<Option<SystemTime>> {
        self.run(async {
            let client = self.client().await?;
            let stmt = client.prepare_cached(&self.sql.next_pending).await?;
            let row = client.query_one(&stmt, &[&queue]).await?;
            let paused: bool = row.try_get(1)?;
            Ok(if paused { None } else { row.try_get(0)? })
        })
        .await
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
pub(super) struct Listener {
    config: tokio_postgres::Config,
    tls: LazyTls,
    listen: String,
    wakes: Arc<Wakes>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl Listener {
    pub(super) fn new(config: tokio_postgres::Config, tls: LazyTls, channel: &str) -> Self {
        Listener {
            config,
            tls,
            listen: LISTEN.replace("{channel}", &format!("\"{channel}\"")),
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
    tls: LazyTls,
    listen: String,
    wakes: Arc<Wakes>,
) {
    let mut backoff = LISTEN_BACKOFF_MIN;
    loop {
        // `connect_timeout` bounds the TCP connection only, not the start-up exchange.
        let connected = tokio::time::timeout(OPERATION_TIMEOUT, config.connect(tls.clone())).await;
        if let Ok(Ok((client, mut connection))) = connected {
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
    // The connection is driven by `poll_message` below, which also sends the LISTEN and the
    // pings.
    let request = tokio::time::timeout(OPERATION_TIMEOUT, client.batch_execute(listen));
    tokio::pin!(request);
    let mut listening = false;
    // An idle connection whose packets are dropped never fails by itself: a ping every
    // LISTEN_PING, unanswered within OPERATION_TIMEOUT, gives it up.
    let mut ping_every = tokio::time::interval(LISTEN_PING);
    ping_every.tick().await;
    type Pong<'a> = std::pin::Pin<
        Box<
            dyn Future<
                    Output = Result<
                        std::result::Result<
                            Vec<tokio_postgres::SimpleQueryMessage>,
                            tokio_postgres::Error,
                        >,
                        tokio::time::error::Elapsed,
                    >,
                > + Send
                + 'a,
        >,
    >;
    let mut ping: Option<Pong<'_>> = None;
    loop {
        let idle = ping.is_none();
        let pinging = std::future::poll_fn(|cx| match ping.as_mut() {
            Some(ping) => ping.as_mut().poll(cx),
            None => std::task::Poll::Pending,
        });
        tokio::select! {
            result = &mut request, if !listening => {
                if !matches!(result, Ok(Ok(()))) {
                    return false;
                }
                listening = true;
                wakes.listening.send_replace(true);
                let _ = wakes.sender.send(Wake::All);
            }
            _ = ping_every.tick(), if listening && idle => {
                ping = Some(Box::pin(tokio::time::timeout(
                    OPERATION_TIMEOUT,
                    client.simple_query(""),
                )));
            }
            pong = pinging => {
                if !matches!(pong, Ok(Ok(_))) {
                    return listening;
                }
                ping = None;
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
