//! The background pool: a fixed set of worker threads (`storage-bg-N`) that run every
//! region's flushes, compactions and metadata writes, with bounded queues.
//!
//! ```text
//!  shard thread (owns regions)                      pool threads (shared by all shards)
//!  ───────────────────────────                      ───────────────────────────────────
//!  region tick ── try_run(Urgent, job) ──► urgent queue ─────┐   storage-bg-0 … -N-1:
//!       │                                  (bounded)         ├─► take an urgent job first,
//!       └──── try_run(Compaction, job) ──► compaction queue ─┘   a compaction only while
//!       ▲  QueueFull: nothing started,     (bounded)             fewer than N-1 run
//!       │  the region retries next tick                               │
//!       └────────── result (oneshot, polled by the next tick) ◄───────┘
//! ```
//!
//! Ownership: a [`BackgroundPool`] is `Send + Sync` and cloned into every region (and so
//! every shard) that uses it; the DataNode creates one per process. Jobs own what they
//! touch (immutable `Arc`s of frozen memtables and sealed files, paths of files no reader
//! uses yet); nothing a job does reaches back into a region: the region reads the result
//! from its oneshot on its own shard and installs it there.
//!
//! Why a pool and not a thread per job: a thread per flush or compaction makes the thread
//! count (and the memory and CPU contention of the background work) grow with the number of
//! regions that happen to need work at once. Here the thread count is fixed at creation and
//! the queues are bounded; a full queue refuses the job ([`QueueFull`]) and the region tries
//! again on a later tick, so a shard never blocks on the pool and no queue grows unbounded.
//!
//! Why two classes: back-pressure (`Overloaded`) waits on flushes, and a compaction may run
//! for minutes under its rate limit. Urgent jobs (flushes, manifest and MODS writes) are
//! always taken first, and compactions may occupy at most `threads - 1` workers, so one
//! worker is always free for an urgent job however many compactions are queued.

use std::collections::VecDeque;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::thread::JoinHandle;

use futures_channel::oneshot;

use crate::config::{
    BACKGROUND_QUEUE_JOBS_MAX_DEFAULT, BACKGROUND_QUEUE_JOBS_MAX_LIMIT, BACKGROUND_THREADS_MAX,
    BACKGROUND_THREADS_MIN,
};
use crate::error::{Result, StorageError};

/// Which queue a job joins.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobClass {
    /// Flushes and metadata writes: taken before any compaction.
    Urgent,
    /// Compactions: at most `threads - 1` run at once.
    Compaction,
}

/// The job was not queued: its class's queue is full. Nothing ran; try again later.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("the background {class:?} queue is full ({queued} jobs)")]
pub struct QueueFull {
    pub class: JobClass,
    pub queued: usize,
}

/// How a pool is sized.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolOptions {
    /// Worker threads, in `BACKGROUND_THREADS_MIN..=BACKGROUND_THREADS_MAX`.
    pub threads: usize,
    /// Jobs each class's queue may hold (waiting, not running).
    pub queue_jobs_max: usize,
}

impl Default for PoolOptions {
    fn default() -> Self {
        PoolOptions {
            threads: default_threads(),
            queue_jobs_max: BACKGROUND_QUEUE_JOBS_MAX_DEFAULT,
        }
    }
}

/// Half the cores (flush and compaction compete with the shards for them), at least
/// [`BACKGROUND_THREADS_MIN`].
pub fn default_threads() -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    (cores / 2).clamp(BACKGROUND_THREADS_MIN, BACKGROUND_THREADS_MAX)
}

/// Counters of a pool (tests, `SHOW` views, benchmarks).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PoolStats {
    pub threads: usize,
    /// Worker threads alive now.
    pub threads_alive: usize,
    pub jobs_completed: u64,
    /// Jobs refused because their queue was full.
    pub jobs_refused: u64,
    /// The most jobs that ever ran at the same time.
    pub running_peak: usize,
    /// The most compactions that ever ran at the same time.
    pub compactions_running_peak: usize,
}

type Task = Box<dyn FnOnce() + Send + 'static>;

struct Queues {
    urgent: VecDeque<Task>,
    compaction: VecDeque<Task>,
    running: usize,
    compactions_running: usize,
    shutdown: bool,
}

struct Inner {
    options: PoolOptions,
    queues: Mutex<Queues>,
    work: Condvar,
    threads_alive: AtomicUsize,
    jobs_completed: AtomicU64,
    jobs_refused: AtomicU64,
    running_peak: AtomicUsize,
    compactions_running_peak: AtomicUsize,
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, Queues> {
        // A job runs outside the lock and its panics are caught, so a poisoned lock can
        // only come from a bug in this module: the queues themselves are still consistent.
        self.queues.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn compactions_running_max(&self) -> usize {
        self.options.threads - 1
    }
}

/// Joins the workers when the last handle goes.
struct Owner {
    inner: Arc<Inner>,
    workers: Mutex<Vec<JoinHandle<()>>>,
}

impl Drop for Owner {
    fn drop(&mut self) {
        self.inner.lock().shutdown = true;
        self.inner.work.notify_all();
        let workers = std::mem::take(&mut *self.workers.lock().unwrap_or_else(|p| p.into_inner()));
        let me = std::thread::current().id();
        for worker in workers {
            if worker.thread().id() != me {
                let _ = worker.join();
            }
        }
    }
}

/// A handle on a background pool; clones share it. The workers stop (after the jobs
/// already queued) when the last handle is dropped.
#[derive(Clone)]
pub struct BackgroundPool {
    owner: Arc<Owner>,
}

impl std::fmt::Debug for BackgroundPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackgroundPool")
            .field("options", &self.owner.inner.options)
            .finish_non_exhaustive()
    }
}

impl BackgroundPool {
    /// Starts `options.threads` workers named `storage-bg-N`. They inherit the calling
    /// thread's CPU affinity: create the pool on a thread that may run on every core the
    /// workers should use, not on a shard pinned to one.
    pub fn new(options: PoolOptions) -> Result<BackgroundPool> {
        if !(BACKGROUND_THREADS_MIN..=BACKGROUND_THREADS_MAX).contains(&options.threads) {
            return Err(StorageError::InvalidArgument(format!(
                "a background pool has {BACKGROUND_THREADS_MIN} to {BACKGROUND_THREADS_MAX} \
                 threads, not {}",
                options.threads
            )));
        }
        if !(1..=BACKGROUND_QUEUE_JOBS_MAX_LIMIT).contains(&options.queue_jobs_max) {
            return Err(StorageError::InvalidArgument(format!(
                "a background queue holds 1 to {BACKGROUND_QUEUE_JOBS_MAX_LIMIT} jobs, not {}",
                options.queue_jobs_max
            )));
        }
        let inner = Arc::new(Inner {
            options,
            queues: Mutex::new(Queues {
                urgent: VecDeque::with_capacity(options.queue_jobs_max),
                compaction: VecDeque::with_capacity(options.queue_jobs_max),
                running: 0,
                compactions_running: 0,
                shutdown: false,
            }),
            work: Condvar::new(),
            threads_alive: AtomicUsize::new(0),
            jobs_completed: AtomicU64::new(0),
            jobs_refused: AtomicU64::new(0),
            running_peak: AtomicUsize::new(0),
            compactions_running_peak: AtomicUsize::new(0),
        });
        let owner = Arc::new(Owner {
            inner: inner.clone(),
            workers: Mutex::new(Vec::with_capacity(options.threads)),
        });
        for n in 0..options.threads {
            let worker_inner = inner.clone();
            let name = format!("storage-bg-{n}");
            let worker = std::thread::Builder::new()
                .name(name.clone())
                .spawn(move || work(&worker_inner))
                .map_err(|e| StorageError::BackgroundJob(format!("starting thread {name}: {e}")))?;
            owner
                .workers
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(worker);
        }
        Ok(BackgroundPool { owner })
    }

    /// The pool every region without one of its own uses: created on first use with
    /// [`PoolOptions::default`], alive for the rest of the process.
    pub fn process_default() -> BackgroundPool {
        static DEFAULT: OnceLock<BackgroundPool> = OnceLock::new();
        DEFAULT
            .get_or_init(|| {
                BackgroundPool::new(PoolOptions::default())
                    .expect("the default pool options are valid and threads can start")
            })
            .clone()
    }

    pub fn options(&self) -> PoolOptions {
        self.owner.inner.options
    }

    /// Queues `job` in `class`'s queue and returns the receiver of its result, or refuses
    /// it when that queue is full (the job is dropped unrun). Never blocks on a running
    /// job: the lock guards only the queues. A job that panics resolves its receiver as
    /// cancelled and the worker lives on.
    pub fn try_run<T, F>(
        &self,
        class: JobClass,
        job: F,
    ) -> std::result::Result<oneshot::Receiver<Result<T>>, QueueFull>
    where
        T: Send + 'static,
        F: FnOnce() -> Result<T> + Send + 'static,
    {
        let inner = &self.owner.inner;
        let (sender, receiver) = oneshot::channel();
        let task: Task = Box::new(move || {
            let _ = sender.send(job());
        });
        let mut queues = inner.lock();
        assert!(
            !queues.shutdown,
            "a pool with a live handle is not shut down"
        );
        let queue = match class {
            JobClass::Urgent => &mut queues.urgent,
            JobClass::Compaction => &mut queues.compaction,
        };
        if queue.len() >= inner.options.queue_jobs_max {
            let queued = queue.len();
            drop(queues);
            inner.jobs_refused.fetch_add(1, Ordering::Relaxed);
            return Err(QueueFull { class, queued });
        }
        queue.push_back(task);
        drop(queues);
        inner.work.notify_one();
        Ok(receiver)
    }

    pub fn stats(&self) -> PoolStats {
        let inner = &self.owner.inner;
        PoolStats {
            threads: inner.options.threads,
            threads_alive: inner.threads_alive.load(Ordering::Relaxed),
            jobs_completed: inner.jobs_completed.load(Ordering::Relaxed),
            jobs_refused: inner.jobs_refused.load(Ordering::Relaxed),
            running_peak: inner.running_peak.load(Ordering::Relaxed),
            compactions_running_peak: inner.compactions_running_peak.load(Ordering::Relaxed),
        }
    }
}

/// A worker: urgent jobs first, a compaction only below the compaction cap; exits once
/// shut down and both queues are empty.
fn work(inner: &Inner) {
    inner.threads_alive.fetch_add(1, Ordering::Relaxed);
    let mut queues = inner.lock();
    loop {
        let (task, class) = if let Some(task) = queues.urgent.pop_front() {
            (task, JobClass::Urgent)
        } else if queues.compactions_running < inner.compactions_running_max()
            && let Some(task) = queues.compaction.pop_front()
        {
            queues.compactions_running += 1;
            inner
                .compactions_running_peak
                .fetch_max(queues.compactions_running, Ordering::Relaxed);
            (task, JobClass::Compaction)
        } else if queues.shutdown && queues.urgent.is_empty() && queues.compaction.is_empty() {
            break;
        } else {
            queues = inner.work.wait(queues).unwrap_or_else(|p| p.into_inner());
            continue;
        };
        queues.running += 1;
        assert!(
            queues.running <= inner.options.threads,
            "one job per worker"
        );
        assert!(
            queues.compactions_running <= inner.compactions_running_max(),
            "a worker is always left for urgent jobs"
        );
        inner
            .running_peak
            .fetch_max(queues.running, Ordering::Relaxed);
        drop(queues);
        // The job's own panic drops its result sender: the region sees a failed job.
        let _ = std::panic::catch_unwind(AssertUnwindSafe(task));
        inner.jobs_completed.fetch_add(1, Ordering::Relaxed);
        queues = inner.lock();
        queues.running -= 1;
        if class == JobClass::Compaction {
            queues.compactions_running -= 1;
            // A compaction held back by the cap may start now.
            inner.work.notify_one();
        }
    }
    drop(queues);
    inner.threads_alive.fetch_sub(1, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::{Duration, Instant};

    fn pool(threads: usize, queue_jobs_max: usize) -> BackgroundPool {
        BackgroundPool::new(PoolOptions {
            threads,
            queue_jobs_max,
        })
        .unwrap()
    }

    fn wait<T>(mut receiver: oneshot::Receiver<Result<T>>) -> Result<T> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match receiver.try_recv() {
                Ok(Some(result)) => return result,
                Ok(None) => {
                    assert!(Instant::now() < deadline, "a job did not finish in 30 s");
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err(_) => panic!("a job's sender was dropped"),
            }
        }
    }

    #[test]
    fn options_out_of_bounds_are_refused() {
        for (threads, queue) in [(1, 8), (BACKGROUND_THREADS_MAX + 1, 8), (2, 0)] {
            assert!(matches!(
                BackgroundPool::new(PoolOptions {
                    threads,
                    queue_jobs_max: queue
                }),
                Err(StorageError::InvalidArgument(_))
            ));
        }
    }

    /// Many more jobs than workers and queue slots: every one completes once retried,
    /// no more than `threads` run at once, and no thread is started for a job.
    #[test]
    fn more_jobs_than_workers_and_queue_all_complete() {
        let pool = pool(2, 3);
        let running = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let mut receivers = Vec::new();
        let mut refused = 0;
        for i in 0..60u64 {
            let class = if i % 3 == 0 {
                JobClass::Compaction
            } else {
                JobClass::Urgent
            };
            loop {
                let running = running.clone();
                let peak = peak.clone();
                let job = move || {
                    let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                    peak.fetch_max(now, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(2));
                    running.fetch_sub(1, Ordering::SeqCst);
                    Ok(i)
                };
                match pool.try_run(class, job) {
                    Ok(r) => {
                        receivers.push((i, r));
                        break;
                    }
                    Err(full) => {
                        assert_eq!(full.class, class);
                        assert_eq!(full.queued, 3);
                        refused += 1;
                        std::thread::sleep(Duration::from_millis(1));
                    }
                }
            }
        }
        for (i, r) in receivers {
            assert_eq!(wait(r).unwrap(), i);
        }
        let stats = pool.stats();
        assert!(refused > 0, "the queues were meant to fill up");
        assert_eq!(stats.jobs_refused, refused);
        assert_eq!(stats.jobs_completed, 60);
        assert!(peak.load(Ordering::SeqCst) <= 2);
        assert!(stats.running_peak <= 2);
        assert!(stats.compactions_running_peak <= 1);
        assert_eq!(stats.threads_alive, 2);
    }

    /// Compactions that never end occupy at most `threads - 1` workers: a flush queued
    /// behind them still runs.
    #[test]
    fn a_flush_never_waits_behind_compactions() {
        let pool = pool(3, 16);
        let (release, released) = mpsc::channel::<()>();
        let released = Arc::new(Mutex::new(released));
        let started = Arc::new(AtomicUsize::new(0));
        let mut compactions = Vec::new();
        for _ in 0..5 {
            let released = released.clone();
            let started = started.clone();
            compactions.push(
                pool.try_run(JobClass::Compaction, move || {
                    started.fetch_add(1, Ordering::SeqCst);
                    let _ = released.lock().unwrap().recv();
                    Ok(())
                })
                .unwrap(),
            );
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while started.load(Ordering::SeqCst) < 2 {
            assert!(Instant::now() < deadline);
            std::thread::sleep(Duration::from_millis(1));
        }
        let flush = pool.try_run(JobClass::Urgent, || Ok("flushed")).unwrap();
        assert_eq!(wait(flush).unwrap(), "flushed");
        assert_eq!(
            started.load(Ordering::SeqCst),
            2,
            "the cap held compactions back"
        );
        for _ in 0..5 {
            release.send(()).unwrap();
        }
        for c in compactions {
            wait(c).unwrap();
        }
        assert_eq!(pool.stats().compactions_running_peak, 2);
    }

    /// Queued urgent jobs are taken before queued compactions, even a compaction queued
    /// earlier that the cap would let run.
    #[test]
    fn urgent_jobs_are_taken_first() {
        let pool = pool(3, 16);
        let order = Arc::new(Mutex::new(Vec::new()));
        // Occupy all three workers: one compaction (the cap is two) and two urgent jobs,
        // each released by its own channel.
        let mut releases = Vec::new();
        let mut blockers = Vec::new();
        for class in [JobClass::Compaction, JobClass::Urgent, JobClass::Urgent] {
            let (release, released) = mpsc::channel::<()>();
            releases.push(release);
            blockers.push(
                pool.try_run(class, move || {
                    let _ = released.recv();
                    Ok(())
                })
                .unwrap(),
            );
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while pool.stats().running_peak < 3 {
            assert!(Instant::now() < deadline, "the blockers did not start");
            std::thread::sleep(Duration::from_millis(1));
        }
        let mut queued = Vec::new();
        for (name, class) in [
            ("compaction", JobClass::Compaction),
            ("flush", JobClass::Urgent),
        ] {
            let order = order.clone();
            queued.push(
                pool.try_run(class, move || {
                    order.lock().unwrap().push(name);
                    Ok(())
                })
                .unwrap(),
            );
        }
        // Free one urgent worker: it must take the flush, not the earlier compaction.
        releases[1].send(()).unwrap();
        let flush = queued.pop().unwrap();
        wait(flush).unwrap();
        assert_eq!(order.lock().unwrap()[0], "flush");
        for release in &releases {
            let _ = release.send(());
        }
        for r in blockers.into_iter().chain(queued) {
            wait(r).unwrap();
        }
        assert_eq!(*order.lock().unwrap(), vec!["flush", "compaction"]);
    }

    #[test]
    fn a_panicking_job_fails_alone_and_the_worker_lives() {
        let pool = pool(2, 4);
        let mut receiver = pool
            .try_run::<(), _>(JobClass::Urgent, || panic!("job bug"))
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match receiver.try_recv() {
                Err(_) => break,
                Ok(None) => {
                    assert!(Instant::now() < deadline);
                    std::thread::sleep(Duration::from_millis(1));
                }
                Ok(Some(_)) => panic!("a panicking job sent a result"),
            }
        }
        for i in 0..4 {
            assert_eq!(
                wait(pool.try_run(JobClass::Urgent, move || Ok(i)).unwrap()).unwrap(),
                i
            );
        }
        assert_eq!(pool.stats().threads_alive, 2);
    }

    #[test]
    fn dropping_the_last_handle_stops_the_workers() {
        let pool = pool(2, 4);
        let inner = pool.owner.inner.clone();
        let r = pool.try_run(JobClass::Urgent, || Ok(7)).unwrap();
        drop(pool);
        assert_eq!(inner.threads_alive.load(Ordering::Relaxed), 0);
        assert_eq!(
            wait(r).unwrap(),
            7,
            "queued jobs run before the workers stop"
        );
    }
}
