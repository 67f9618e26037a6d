//! The beacon: one page of shared memory per child, where the child publishes the task it is
//! running and how many it has finished, and the master reads it without being woken.
//!
//! A child claims and settles tasks in batches, so per-task messages to the master would cost
//! more than the work. Instead the master creates a memfd before spawning the child, maps it,
//! and passes it on [`BEACON_FD`]; the child maps the same page. The child writes with plain
//! atomic stores under a sequence lock (odd while it writes); the master reads when it needs
//! to know (the child died, a timeout may be due, SIGUSR1 asked for status). Stores into a
//! shared mapping survive the process that made them, so after a SIGKILL the page still says
//! which task was running: that task, and only that one, is charged with the death.
//!
//! The child also counts what became of its tasks (succeeded, failed, retried, with run and
//! wait times in buckets): the master adds what grew since its last look to the queue's
//! throughput history (`supervisor/throughput.rs`), again without a message per task.
//!
//! The child also lists the tasks it has completed (without follow-up submits) but not yet
//! recorded in the transport, so that its master can complete them after a death instead of
//! running them again; a completion that submitted tasks is not listed (its submits are not
//! on the page), and is released to run again.
//!
//! Where the broker holds the leases (RabbitMQ), the child also lists the ids of the tasks it
//! claimed: when it dies the broker hands them all out again, and only its master can say
//! which one was running (charged) and which were not (run again uncharged).
//!
//! A child that dies in the middle of a write leaves the sequence odd. It was then between two
//! tasks (publishing that one ended or the next began, never inside worker code), so the
//! reader reports no running task.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use nix::libc;
use rex_transport::history::BUCKETS;
use rex_transport::{Counters, Histogram};

/// The child's file descriptor for its beacon (the control socket is fd 3).
pub const BEACON_FD: RawFd = 4;

/// The page's layout. Only atomics: both processes access it at once.
#[repr(C)]
struct Page {
    /// Sequence lock: odd while the child writes.
    seq: AtomicU64,
    /// The running task's id; meaningful while `running` is 1.
    task: AtomicI64,
    running: AtomicU64,
    token: AtomicU64,
    attempt: AtomicU64,
    /// When the running task started, in `CLOCK_MONOTONIC` nanoseconds (one clock for all
    /// processes of the host).
    started_ns: AtomicU64,
    /// Tasks the child has finished (run to an outcome, flushed or not).
    finished: AtomicU64,
    /// How many entries of `completed` are in use.
    completed_len: AtomicU64,
    /// (id, lease token) pairs of completions not recorded in the transport yet.
    completed: [[AtomicU64; 2]; COMPLETED_CAPACITY],
    /// How many entries of `claimed` are in use.
    claimed_len: AtomicU64,
    /// The ids of the tasks of the child's last claim (written only where the broker holds
    /// the leases).
    claimed: [AtomicI64; CLAIMED_CAPACITY],
    /// What became of the tasks it finished, growing only: the master adds what grew since
    /// its last look to the queue's throughput history.
    tally: Tally,
}

/// [`Counters`] without the crashes (the master counts those), as atomics.
#[repr(C)]
struct Tally {
    succeeded: AtomicU64,
    failed: AtomicU64,
    retried: AtomicU64,
    run: [AtomicU64; BUCKETS],
    run_sum_ms: AtomicU64,
    wait: [AtomicU64; BUCKETS],
    wait_sum_ms: AtomicU64,
}

impl Tally {
    fn new() -> Tally {
        Tally {
            succeeded: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            retried: AtomicU64::new(0),
            run: std::array::from_fn(|_| AtomicU64::new(0)),
            run_sum_ms: AtomicU64::new(0),
            wait: std::array::from_fn(|_| AtomicU64::new(0)),
            wait_sum_ms: AtomicU64::new(0),
        }
    }
}

/// How a task the child ran ended, for the history.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ended {
    Succeeded,
    Failed,
    Retried,
}

/// One finished task, as the history counts it.
#[derive(Clone, Copy, Debug)]
pub struct Finished {
    pub ended: Ended,
    /// How long the worker ran it.
    pub ran: Duration,
    /// A first attempt's time from submission to start (`None` for later attempts).
    pub waited: Option<Duration>,
}

/// How many unrecorded completions a page lists; more are released on a death instead.
const COMPLETED_CAPACITY: usize = 200;

/// How many claimed task ids a page lists: the largest `prefetch`, and a little more.
const CLAIMED_CAPACITY: usize = 1024;

/// Four pages of 4 KiB.
const PAGE_BYTES: usize = 16384;
const _: () = assert!(std::mem::size_of::<Page>() <= PAGE_BYTES);

/// The task a child is running, as its beacon says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Running {
    pub task: i64,
    pub token: u64,
    pub attempt: u32,
    pub started: Instant,
}

/// What a beacon says at one moment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    pub running: Option<Running>,
    pub finished: u64,
    /// Completed (without submits) and not yet recorded: (task id, lease token).
    pub completed: Vec<(i64, u64)>,
}

enum Backing {
    /// A shared mapping of a memfd (unmapped on drop).
    Shared { fd: Option<OwnedFd> },
    /// Ordinary memory, for a consumer with no master (`asynctask-process`) and for tests;
    /// `page` points into it.
    Local { _page: Box<Page> },
}

/// One side's handle on a beacon page.
pub struct Beacon {
    page: NonNull<Page>,
    backing: Backing,
}

// SAFETY: the page holds only atomics, and the mapping lives as long as the `Beacon`.
unsafe impl Send for Beacon {}
unsafe impl Sync for Beacon {}

impl Beacon {
    /// The master's side: a fresh zeroed page, and the fd to hand to the child.
    pub fn create() -> std::io::Result<Beacon> {
        // SAFETY: plain system calls on a name we own; the result is checked.
        let fd = unsafe { libc::memfd_create(c"rex-beacon".as_ptr(), libc::MFD_CLOEXEC) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: `fd` was just created and is owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: ftruncate on our own memfd.
        if unsafe { libc::ftruncate(fd.as_raw_fd(), PAGE_BYTES as libc::off_t) } < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let page = map(fd.as_raw_fd())?;
        Ok(Beacon {
            page,
            backing: Backing::Shared { fd: Some(fd) },
        })
    }

    /// The child's side: map the page the master passed on `fd`, then close `fd` (the mapping
    /// stays; processes the child starts must not inherit a writable beacon).
    pub fn attach(fd: RawFd) -> std::io::Result<Beacon> {
        let page = map(fd)?;
        // SAFETY: `fd` was handed to this process for the beacon alone; nothing else uses it.
        unsafe { libc::close(fd) };
        Ok(Beacon {
            page,
            backing: Backing::Shared { fd: None },
        })
    }

    /// A page in this process only.
    pub fn local() -> Beacon {
        let mut page = Box::new(Page {
            seq: AtomicU64::new(0),
            task: AtomicI64::new(0),
            running: AtomicU64::new(0),
            token: AtomicU64::new(0),
            attempt: AtomicU64::new(0),
            started_ns: AtomicU64::new(0),
            finished: AtomicU64::new(0),
            completed_len: AtomicU64::new(0),
            completed: std::array::from_fn(|_| [AtomicU64::new(0), AtomicU64::new(0)]),
            claimed_len: AtomicU64::new(0),
            claimed: std::array::from_fn(|_| AtomicI64::new(0)),
            tally: Tally::new(),
        });
        let ptr = NonNull::from(&mut *page);
        Beacon {
            page: ptr,
            backing: Backing::Local { _page: page },
        }
    }

    /// The memfd to pass to the child (master side only).
    pub fn fd(&self) -> Option<RawFd> {
        match &self.backing {
            Backing::Shared { fd: Some(fd) } => Some(fd.as_raw_fd()),
            _ => None,
        }
    }

    fn page(&self) -> &Page {
        // SAFETY: `page` points to a live mapping (or box) for the life of `self`.
        unsafe { self.page.as_ref() }
    }

    /// Publish that `task` (with its lease token and attempt) starts now.
    pub fn start(&self, task: i64, token: u64, attempt: u32) {
        self.write(|page| {
            page.task.store(task, Ordering::Relaxed);
            page.token.store(token, Ordering::Relaxed);
            page.attempt.store(u64::from(attempt), Ordering::Relaxed);
            page.started_ns.store(monotonic_ns(), Ordering::Relaxed);
            page.running.store(1, Ordering::Relaxed);
        });
    }

    /// Publish that the running task has ended (its outcome may not be recorded yet), and
    /// how. A `completed` lease (a completion without submits) is listed until [`recorded`]
    /// (Beacon::recorded) clears the list.
    pub fn finish(&self, completed: Option<(i64, u64)>, how: Finished) {
        self.write(|page| {
            page.running.store(0, Ordering::Relaxed);
            page.finished.fetch_add(1, Ordering::Relaxed);
            let tally = &page.tally;
            let ended = match how.ended {
                Ended::Succeeded => &tally.succeeded,
                Ended::Failed => &tally.failed,
                Ended::Retried => &tally.retried,
            };
            ended.fetch_add(1, Ordering::Relaxed);
            tally.run[Histogram::bucket_of(how.ran)].fetch_add(1, Ordering::Relaxed);
            tally
                .run_sum_ms
                .fetch_add(millis(how.ran), Ordering::Relaxed);
            if let Some(waited) = how.waited {
                tally.wait[Histogram::bucket_of(waited)].fetch_add(1, Ordering::Relaxed);
                tally
                    .wait_sum_ms
                    .fetch_add(millis(waited), Ordering::Relaxed);
            }
            if let Some((id, token)) = completed {
                let len = page.completed_len.load(Ordering::Relaxed) as usize;
                if let Some(slot) = page.completed.get(len) {
                    slot[0].store(id as u64, Ordering::Relaxed);
                    slot[1].store(token, Ordering::Relaxed);
                    page.completed_len.store(len as u64 + 1, Ordering::Relaxed);
                }
            }
        });
    }

    /// Publish the ids of the tasks just claimed (they replace the previous claim's: the
    /// child claims only when it has started every task it held). Ids beyond the page's
    /// capacity are left out.
    pub fn claimed(&self, ids: impl IntoIterator<Item = i64>) {
        self.write(|page| {
            let mut len = 0;
            for (slot, id) in page.claimed.iter().zip(ids) {
                slot.store(id, Ordering::Relaxed);
                len += 1;
            }
            page.claimed_len.store(len as u64, Ordering::Relaxed);
        });
    }

    /// The ids [`claimed`](Beacon::claimed) published last. Read only after the child is
    /// gone (it no longer writes), so without the sequence lock; a child that died while
    /// writing them leaves the list empty.
    pub fn claimed_ids(&self) -> Vec<i64> {
        let page = self.page();
        if page.seq.load(Ordering::Acquire) % 2 == 1 {
            return Vec::new();
        }
        let len = (page.claimed_len.load(Ordering::Relaxed) as usize).min(CLAIMED_CAPACITY);
        page.claimed[..len]
            .iter()
            .map(|id| id.load(Ordering::Relaxed))
            .collect()
    }

    /// Publish that every outcome so far is recorded in the transport.
    pub fn recorded(&self) {
        if self.page().completed_len.load(Ordering::Relaxed) > 0 {
            self.write(|page| page.completed_len.store(0, Ordering::Relaxed));
        }
    }

    /// What became of the tasks finished so far (crashes aside). Every value only grows, so
    /// the master reads without the sequence lock: a finish it sees half-written is counted
    /// whole at its next look.
    pub fn counters(&self) -> Counters {
        let tally = &self.page().tally;
        let load = |n: &AtomicU64| n.load(Ordering::Relaxed);
        Counters {
            succeeded: load(&tally.succeeded),
            failed: load(&tally.failed),
            retried: load(&tally.retried),
            crashed: 0,
            run: Histogram {
                buckets: std::array::from_fn(|i| load(&tally.run[i])),
                sum_ms: load(&tally.run_sum_ms),
            },
            wait: Histogram {
                buckets: std::array::from_fn(|i| load(&tally.wait[i])),
                sum_ms: load(&tally.wait_sum_ms),
            },
        }
    }

    fn write(&self, f: impl FnOnce(&Page)) {
        let page = self.page();
        // Only the child writes, so the sequence needs no compare-and-swap. The fence keeps
        // the data stores after the odd sequence number (a seqlock writer).
        page.seq.fetch_add(1, Ordering::Relaxed);
        std::sync::atomic::fence(Ordering::Release);
        f(page);
        page.seq.fetch_add(1, Ordering::Release);
    }

    /// What the page says now.
    pub fn read(&self) -> Snapshot {
        let page = self.page();
        // A live writer holds the sequence odd for a few stores; a dead one forever.
        for _ in 0..10_000 {
            let before = page.seq.load(Ordering::Acquire);
            if before % 2 == 1 {
                std::hint::spin_loop();
                continue;
            }
            let running = page.running.load(Ordering::Relaxed) == 1;
            let task = page.task.load(Ordering::Relaxed);
            let token = page.token.load(Ordering::Relaxed);
            let attempt = page.attempt.load(Ordering::Relaxed);
            let started_ns = page.started_ns.load(Ordering::Relaxed);
            let finished = page.finished.load(Ordering::Relaxed);
            let len = (page.completed_len.load(Ordering::Relaxed) as usize).min(COMPLETED_CAPACITY);
            let completed: Vec<(i64, u64)> = page.completed[..len]
                .iter()
                .map(|slot| {
                    (
                        slot[0].load(Ordering::Relaxed) as i64,
                        slot[1].load(Ordering::Relaxed),
                    )
                })
                .collect();
            std::sync::atomic::fence(Ordering::Acquire);
            if page.seq.load(Ordering::Relaxed) != before {
                continue;
            }
            let running = running.then(|| Running {
                task,
                token,
                attempt: u32::try_from(attempt).unwrap_or(u32::MAX),
                started: instant_of(started_ns),
            });
            return Snapshot {
                running,
                finished,
                completed,
            };
        }
        // A writer that died mid-write: nothing is known to be running, and a completion it
        // was listing is released (run again) rather than trusted.
        Snapshot {
            running: None,
            finished: page.finished.load(Ordering::Relaxed),
            completed: Vec::new(),
        }
    }
}

impl Drop for Beacon {
    fn drop(&mut self) {
        if let Backing::Shared { .. } = self.backing {
            // SAFETY: `page` is our own mapping of PAGE_BYTES, not used after this.
            unsafe {
                libc::munmap(self.page.as_ptr().cast(), PAGE_BYTES);
            }
        }
    }
}

fn map(fd: RawFd) -> std::io::Result<NonNull<Page>> {
    // SAFETY: mapping a whole memfd page shared; the result is checked before use.
    let ptr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            PAGE_BYTES,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            fd,
            0,
        )
    };
    if ptr == libc::MAP_FAILED {
        return Err(std::io::Error::last_os_error());
    }
    NonNull::new(ptr.cast()).ok_or_else(|| std::io::Error::other("mmap returned null"))
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the struct we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(ts.tv_nsec as u64)
}

/// The `Instant` of a `CLOCK_MONOTONIC` reading: an offset from one pair of readings taken
/// once, so that the same reading always gives the same `Instant`.
fn instant_of(ns: u64) -> Instant {
    static BASE: std::sync::OnceLock<(Instant, u64)> = std::sync::OnceLock::new();
    let (base, base_ns) = *BASE.get_or_init(|| (Instant::now(), monotonic_ns()));
    if ns >= base_ns {
        base + Duration::from_nanos(ns - base_ns)
    } else {
        base.checked_sub(Duration::from_nanos(base_ns - ns))
            .unwrap_or(base)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_master_reads_what_the_child_published_through_a_shared_page() {
        let master = Beacon::create().expect("memfd");
        // The child gets its own descriptor (attach closes it), as across a fork.
        // SAFETY: dup of a descriptor this test owns.
        let fd = unsafe { libc::dup(master.fd().expect("an fd")) };
        let child = Beacon::attach(fd).expect("map");
        assert_eq!(
            master.read(),
            Snapshot {
                running: None,
                finished: 0,
                completed: vec![]
            }
        );
        child.start(42, 7, 2);
        let seen = master.read().running.expect("running");
        assert_eq!((seen.task, seen.token, seen.attempt), (42, 7, 2));
        assert!(seen.started.elapsed() < Duration::from_secs(60));
        child.finish(Some((42, 7)), done(Ended::Succeeded, Some(3)));
        child.start(43, 8, 1);
        child.finish(None, done(Ended::Retried, None)); // not listed: a failure
        drop(child); // what was written outlives the writer's mapping
        assert_eq!(
            master.read(),
            Snapshot {
                running: None,
                finished: 2,
                completed: vec![(42, 7)]
            }
        );
        let counted = master.counters();
        assert_eq!(
            (counted.succeeded, counted.retried, counted.failed),
            (1, 1, 0)
        );
        assert_eq!(counted.run.count(), 2);
        assert_eq!((counted.wait.count(), counted.wait.sum_ms), (1, 3));
    }

    fn done(ended: Ended, waited_ms: Option<u64>) -> Finished {
        Finished {
            ended,
            ran: Duration::from_millis(2),
            waited: waited_ms.map(Duration::from_millis),
        }
    }

    #[test]
    fn recorded_outcomes_leave_the_list_and_a_full_list_stops_growing() {
        let beacon = Beacon::local();
        for id in 0..(COMPLETED_CAPACITY as i64 + 5) {
            beacon.start(id, 1, 1);
            beacon.finish(Some((id, 1)), done(Ended::Succeeded, None));
        }
        let seen = beacon.read();
        assert_eq!(seen.completed.len(), COMPLETED_CAPACITY);
        assert_eq!(seen.finished, COMPLETED_CAPACITY as u64 + 5);
        beacon.recorded();
        assert!(beacon.read().completed.is_empty());
    }

    #[test]
    fn a_writer_that_died_mid_write_reads_as_between_tasks() {
        let beacon = Beacon::local();
        beacon.start(1, 1, 1);
        beacon.page().seq.fetch_add(1, Ordering::SeqCst); // a write that never ended
        assert_eq!(beacon.read().running, None);
    }
}
