//! Shards: one monoio runtime per core, each on its own pinned, named OS thread.
//!
//! [`ShardSetBuilder::start`] allocates the mesh, then spawns thread `shard-i` for every
//! shard `i`. On its thread a shard pins itself to core `i mod cores` (a refusal is logged,
//! not fatal: containers and CI machines sometimes forbid it), builds a monoio runtime with
//! the io_uring driver (completions posted when the shard next enters the kernel, not by
//! interrupting it: [`UringSetup`]; monoio falls back to epoll where io_uring is missing)
//! and timers, and runs the user's future to completion. The future is built on the
//! shard's thread, so it may hold `Rc`, `RefCell` and other `!Send` state: nothing in a
//! shard is shared.
//!
//! Stopping is cooperative: [`ShardSet::shutdown`] raises the [`StopSignal`] every shard's
//! context carries, wakes them, and joins the threads. A shard's future is expected to watch
//! [`StopSignal::wait`] (typically in a `monoio::select!` beside its receive loop), flush
//! what it must and return. A panic in one shard is caught on its thread, raises the stop
//! signal for the others (a bug in one core must not leave the node half alive), and is
//! reported by the join as [`RuntimeError::ShardPanicked`].

use std::any::Any;
use std::fmt;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::thread::JoinHandle;

use crate::error::RuntimeError;
use crate::limits::{
    IO_URING_ENTRIES_DEFAULT, MESH_BYTES_MAX, MESH_QUEUE_CAPACITY_DEFAULT, MESH_QUEUE_CAPACITY_MAX,
    SHARD_COUNT_MAX, SHARD_THREAD_STACK_BYTES,
};
use crate::mesh::{MeshEndpoint, MeshShared};
use crate::thread::available_cores;
use crate::wait_list::{WaitKey, WaitList};

pub use iotdb_model::ShardId;

/// Which I/O driver a shard's runtime ended up with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DriverKind {
    /// io_uring, the intended driver, set up as this kernel allows.
    IoUring(UringSetup),
    /// epoll, monoio's fallback where io_uring is missing or forbidden.
    Legacy,
}

/// How a shard's io_uring is set up: the flags below where the kernel takes them, probed
/// once per process ([`UringSetup::probed`]).
///
/// Without them, an I/O that completes while its shard runs (a request received, a WAL
/// write done) makes the kernel interrupt the shard's core at once to post the completion
/// (an inter-processor interrupt, on a VM an exit to the hypervisor), although the shard
/// would not look before its next pass through the kernel anyway. With
/// `IORING_SETUP_COOP_TASKRUN` the completion waits for that pass, which every turn of the
/// shard's loop makes (it submits or waits); `IORING_SETUP_SINGLE_ISSUER` tells the kernel
/// that only the shard's own thread submits, which is the thread-per-core rule, so it skips
/// the locking for other submitters. Measured with the standard workload
/// (`docs/performance.md`): rescheduling interrupts over a run 970–1,300 → 120–190; what
/// that saves in CPU is within the development machine's noise; synchronous clients
/// unchanged. Not `IORING_SETUP_DEFER_TASKRUN`: it would leave completions unposted until
/// the shard waits, and a shard kept busy by ready tasks submits without waiting
/// (monoio), so its I/O could starve.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UringSetup {
    /// `IORING_SETUP_COOP_TASKRUN | IORING_SETUP_SINGLE_ISSUER` (Linux 6.0 and later).
    CooperativeSingleIssuer,
    /// `IORING_SETUP_COOP_TASKRUN` alone (Linux 5.19).
    Cooperative,
    /// Neither (older kernels): monoio's defaults.
    Plain,
}

impl UringSetup {
    /// The first setup this kernel accepts, probed with a small ring the first time it is
    /// asked (each shard asks when it starts) and remembered.
    pub fn probed() -> UringSetup {
        static PROBED: std::sync::OnceLock<UringSetup> = std::sync::OnceLock::new();
        *PROBED.get_or_init(|| {
            let setup = [UringSetup::CooperativeSingleIssuer, UringSetup::Cooperative]
                .into_iter()
                .find(|setup| setup.builds())
                .unwrap_or(UringSetup::Plain);
            tracing::debug!(?setup, "io_uring setup probed");
            setup
        })
    }

    /// Whether this kernel builds a ring with this setup's flags (`Plain` has none: false).
    fn builds(self) -> bool {
        self.builder()
            .is_some_and(|builder| builder.build(URING_PROBE_ENTRIES).is_ok())
    }

    /// The ring builder with this setup's flags (`None`: monoio's own, no flags).
    fn builder(self) -> Option<io_uring::Builder> {
        let mut builder = io_uring::IoUring::builder();
        match self {
            UringSetup::CooperativeSingleIssuer => {
                builder.setup_coop_taskrun().setup_single_issuer();
            }
            UringSetup::Cooperative => {
                builder.setup_coop_taskrun();
            }
            UringSetup::Plain => return None,
        }
        Some(builder)
    }
}

/// A monoio runtime builder (io_uring, epoll where it is missing) whose ring is set up as
/// [`UringSetup::probed`] says: what every shard builds, and what every other thread of the
/// server and its tools that runs a monoio runtime (the ConfigNode's, raft's, the
/// benchmark's) builds. Its ring takes submissions only from the thread that builds the
/// runtime, which a monoio runtime (not `Send`) guarantees.
pub fn runtime_builder() -> monoio::RuntimeBuilder<monoio::FusionDriver> {
    let builder = monoio::RuntimeBuilder::<monoio::FusionDriver>::new();
    match UringSetup::probed().builder() {
        Some(uring) => builder.uring_builder(uring),
        None => builder,
    }
}

/// Entries of the ring that probes a setup: the smallest a kernel accepts costs least.
const URING_PROBE_ENTRIES: u32 = 2;

/// What a shard's future receives: who it is and its handle on the mesh. A shard view,
/// owned by and used only on that shard's core.
pub struct ShardContext<M> {
    /// This shard.
    pub id: ShardId,
    /// Number of shards in the node.
    pub shards: usize,
    /// This shard's endpoint of the cross-shard mesh.
    pub mesh: MeshEndpoint<M>,
    /// Raised when the node stops; the shard's future should finish soon after.
    pub stop: StopSignal,
    /// The core this thread is pinned to, or `None` if pinning was refused or disabled.
    pub pinned_core: Option<usize>,
    /// The I/O driver of this shard's runtime.
    pub driver: DriverKind,
}

/// A node-wide flag that asks every shard to stop. Cheap to clone; usable on any thread.
#[derive(Clone, Default)]
pub struct StopSignal {
    shared: Arc<StopShared>,
}

#[derive(Default)]
struct StopShared {
    requested: AtomicBool,
    waiters: WaitList,
}

impl StopSignal {
    /// Asks every shard to stop and wakes those waiting on [`StopSignal::wait`].
    pub fn request(&self) {
        self.shared.requested.store(true, Ordering::Relaxed);
        self.shared.waiters.notify_all();
    }

    /// Whether a stop has been requested.
    pub fn is_requested(&self) -> bool {
        self.shared.requested.load(Ordering::Acquire)
    }

    /// Completes once a stop is requested.
    pub fn wait(&self) -> StopWait<'_> {
        StopWait {
            signal: self,
            wait_key: None,
        }
    }
}

impl fmt::Debug for StopSignal {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("StopSignal")
            .field("requested", &self.is_requested())
            .finish()
    }
}

/// Future of [`StopSignal::wait`].
pub struct StopWait<'a> {
    signal: &'a StopSignal,
    wait_key: Option<WaitKey>,
}

impl Drop for StopWait<'_> {
    fn drop(&mut self) {
        self.signal.shared.waiters.deregister(&mut self.wait_key);
    }
}

impl Future for StopWait<'_> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.signal.is_requested() {
            return Poll::Ready(());
        }
        // `register` ends with a full fence, pairing with the one in `notify_all`, so either
        // this re-check sees the flag or `request` sees the registered waker.
        let this = &mut *self;
        this.signal
            .shared
            .waiters
            .register(&mut this.wait_key, cx.waker());
        if self.signal.is_requested() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

/// Configures and starts the shards of a node.
#[derive(Clone, Debug)]
pub struct ShardSetBuilder {
    cores: usize,
    queue_capacity_per_pair: usize,
    io_uring_entries: u32,
    pin_to_cores: bool,
}

impl Default for ShardSetBuilder {
    fn default() -> Self {
        Self {
            cores: available_cores(),
            queue_capacity_per_pair: MESH_QUEUE_CAPACITY_DEFAULT,
            io_uring_entries: IO_URING_ENTRIES_DEFAULT,
            pin_to_cores: true,
        }
    }
}

impl ShardSetBuilder {
    /// A builder with one shard per available core and the default limits.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of shards to start (one per core; above the core count they wrap around).
    pub fn cores(mut self, cores: usize) -> Self {
        self.cores = cores;
        self
    }

    /// Slots of each mesh ring (default [`MESH_QUEUE_CAPACITY_DEFAULT`]).
    pub fn queue_capacity_per_pair(mut self, capacity: usize) -> Self {
        self.queue_capacity_per_pair = capacity;
        self
    }

    /// Submission-queue entries of each io_uring ring (default [`IO_URING_ENTRIES_DEFAULT`]).
    pub fn io_uring_entries(mut self, entries: u32) -> Self {
        self.io_uring_entries = entries;
        self
    }

    /// Whether to pin each shard thread to a core (default true).
    ///
    /// Pinning pays on a machine the node has to itself. On a machine shared with other busy
    /// processes (a developer box, CI) a pinned shard must wait for its one core, and the
    /// mesh's round trip grew from ~8 µs unpinned to ~30 µs pinned in `mesh_bench` on a
    /// loaded 2-core VM, so such deployments may turn it off.
    pub fn pin_to_cores(mut self, pin: bool) -> Self {
        self.pin_to_cores = pin;
        self
    }

    /// Starts the shards. Each runs `shard_main(context)` on its own thread; the future is
    /// built on that thread and may be `!Send`. Its output is returned by the join.
    pub fn start<M, F, Fut, T>(self, shard_main: F) -> Result<ShardSet<T>, RuntimeError>
    where
        M: Send + 'static,
        F: FnOnce(ShardContext<M>) -> Fut + Send + Clone + 'static,
        Fut: Future<Output = T> + 'static,
        T: Send + 'static,
    {
        self.validate::<M>()?;
        let mesh = MeshShared::<M>::new(self.cores, self.queue_capacity_per_pair);
        let stop = StopSignal::default();
        let core_ids = if self.pin_to_cores {
            core_affinity::get_core_ids()
        } else {
            None
        };
        if self.pin_to_cores && core_ids.as_ref().is_none_or(Vec::is_empty) {
            tracing::warn!("cannot list the cores this process may use; shards run unpinned");
        }
        let mut set = ShardSet {
            threads: Vec::with_capacity(self.cores),
            stop: stop.clone(),
        };
        for index in 0..self.cores {
            let id = ShardId(u16::try_from(index).expect("shard count validated against u16"));
            let core = core_ids
                .as_ref()
                .filter(|ids| !ids.is_empty())
                .map(|ids| ids[index % ids.len()]);
            let launch = ShardLaunch {
                id,
                shards: self.cores,
                mesh: mesh.clone(),
                stop: stop.clone(),
                core,
                io_uring_entries: self.io_uring_entries,
            };
            let shard_main = shard_main.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("shard-{index}"))
                .stack_size(SHARD_THREAD_STACK_BYTES)
                .spawn(move || launch.run(shard_main));
            match spawned {
                Ok(handle) => set.threads.push((id, handle)),
                Err(source) => {
                    // Dropping the set stops and joins the shards already running.
                    drop(set);
                    return Err(RuntimeError::Spawn { shard: id, source });
                }
            }
        }
        Ok(set)
    }

    fn validate<M>(&self) -> Result<(), RuntimeError> {
        const { assert!(SHARD_COUNT_MAX <= u16::MAX as usize + 1) };
        if !(1..=SHARD_COUNT_MAX).contains(&self.cores) {
            return Err(RuntimeError::ShardCount {
                requested: self.cores,
                max: SHARD_COUNT_MAX,
            });
        }
        if !(1..=MESH_QUEUE_CAPACITY_MAX).contains(&self.queue_capacity_per_pair) {
            return Err(RuntimeError::QueueCapacity {
                requested: self.queue_capacity_per_pair,
                max: MESH_QUEUE_CAPACITY_MAX,
            });
        }
        let bytes = MeshShared::<M>::ring_bytes(self.cores, self.queue_capacity_per_pair);
        match bytes {
            Some(bytes) if bytes <= MESH_BYTES_MAX => Ok(()),
            _ => Err(RuntimeError::MeshTooLarge {
                shards: self.cores,
                capacity: self.queue_capacity_per_pair,
                bytes: bytes.unwrap_or(usize::MAX),
                max: MESH_BYTES_MAX,
            }),
        }
    }
}

/// Everything a shard thread needs before it has a runtime.
struct ShardLaunch<M> {
    id: ShardId,
    shards: usize,
    mesh: Arc<MeshShared<M>>,
    stop: StopSignal,
    core: Option<core_affinity::CoreId>,
    io_uring_entries: u32,
}

impl<M: Send + 'static> ShardLaunch<M> {
    /// The body of a shard thread.
    fn run<F, Fut, T>(self, shard_main: F) -> Result<T, RuntimeError>
    where
        F: FnOnce(ShardContext<M>) -> Fut,
        Fut: Future<Output = T>,
    {
        let id = self.id;
        let stop = self.stop.clone();
        let outcome = catch_unwind(AssertUnwindSafe(|| self.run_unguarded(shard_main)));
        match outcome {
            Ok(result) => result,
            Err(payload) => {
                // Crash on bugs: the other shards are told to stop rather than run on beside
                // a core whose regions nobody serves any more.
                stop.request();
                let message = panic_message(payload.as_ref());
                tracing::error!(shard = %id, %message, "shard panicked");
                Err(RuntimeError::ShardPanicked { shard: id, message })
            }
        }
    }

    fn run_unguarded<F, Fut, T>(self, shard_main: F) -> Result<T, RuntimeError>
    where
        F: FnOnce(ShardContext<M>) -> Fut,
        Fut: Future<Output = T>,
    {
        let pinned_core = self.core.and_then(|core| {
            if core_affinity::set_for_current(core) {
                Some(core.id)
            } else {
                tracing::warn!(shard = %self.id, core = core.id, "pinning refused; shard runs unpinned");
                None
            }
        });
        let setup = UringSetup::probed();
        let mut runtime = runtime_builder()
            .with_entries(self.io_uring_entries)
            .enable_timer()
            .build()
            .map_err(|source| {
                self.stop.request();
                RuntimeError::RuntimeBuild {
                    shard: self.id,
                    source,
                }
            })?;
        let driver = match runtime {
            monoio::FusionRuntime::Uring(_) => DriverKind::IoUring(setup),
            monoio::FusionRuntime::Legacy(_) => DriverKind::Legacy,
        };
        tracing::debug!(shard = %self.id, ?pinned_core, ?driver, "shard started");
        let context = ShardContext {
            id: self.id,
            shards: self.shards,
            mesh: MeshEndpoint::new(self.mesh, self.id),
            stop: self.stop,
            pinned_core,
            driver,
        };
        Ok(runtime.block_on(shard_main(context)))
    }
}

fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(message) = payload.downcast_ref::<&str>() {
        (*message).to_owned()
    } else if let Some(message) = payload.downcast_ref::<String>() {
        message.clone()
    } else {
        "non-string panic payload".to_owned()
    }
}

/// The running shards of a node: a handle held by the thread that started them.
///
/// Dropping it without [`ShardSet::join`] or [`ShardSet::shutdown`] requests a stop and
/// joins the threads, discarding their results.
pub struct ShardSet<T> {
    threads: Vec<(ShardId, JoinHandle<Result<T, RuntimeError>>)>,
    stop: StopSignal,
}

impl<T> ShardSet<T> {
    /// Number of shards started.
    pub fn shard_count(&self) -> usize {
        self.threads.len()
    }

    /// The node-wide stop signal, to raise from elsewhere (a signal handler, an admin call).
    pub fn stop_signal(&self) -> StopSignal {
        self.stop.clone()
    }

    /// Waits for every shard's future to finish, without asking them to stop. Results are
    /// in shard order.
    pub fn join(mut self) -> Vec<Result<T, RuntimeError>> {
        self.join_threads()
    }

    /// Asks every shard to stop, then joins them. Results are in shard order.
    pub fn shutdown(mut self) -> Vec<Result<T, RuntimeError>> {
        self.stop.request();
        self.join_threads()
    }

    fn join_threads(&mut self) -> Vec<Result<T, RuntimeError>> {
        self.threads
            .drain(..)
            .map(|(shard, handle)| {
                handle.join().unwrap_or_else(|payload| {
                    // The shard body catches panics of the user's future; this is a panic in
                    // the runtime's own code around it, reported the same way.
                    Err(RuntimeError::ShardPanicked {
                        shard,
                        message: panic_message(payload.as_ref()),
                    })
                })
            })
            .collect()
    }
}

impl<T> Drop for ShardSet<T> {
    fn drop(&mut self) {
        if !self.threads.is_empty() {
            self.stop.request();
            drop(self.join_threads());
        }
    }
}

impl<T> fmt::Debug for ShardSet<T> {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("ShardSet")
            .field("shards", &self.threads.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The kernel's `major.minor`, from `/proc/sys/kernel/osrelease`.
    fn kernel_version() -> Option<(u32, u32)> {
        let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").ok()?;
        let mut parts = release.trim().split(['.', '-']);
        let major = parts.next()?.parse().ok()?;
        let minor = parts.next()?.parse().ok()?;
        Some((major, minor))
    }

    #[test]
    fn the_probed_setup_is_the_richest_this_kernel_takes() {
        let probed = UringSetup::probed();
        let richer: &[UringSetup] = match probed {
            UringSetup::CooperativeSingleIssuer => &[],
            UringSetup::Cooperative => &[UringSetup::CooperativeSingleIssuer],
            UringSetup::Plain => &[UringSetup::CooperativeSingleIssuer, UringSetup::Cooperative],
        };
        assert!(probed == UringSetup::Plain || probed.builds(), "{probed:?}");
        for &setup in richer {
            assert!(
                !setup.builds(),
                "{setup:?} builds, yet {probed:?} was chosen"
            );
        }
        // Where io_uring works at all, Linux 6.0 and later take both flags.
        let io_uring_works = io_uring::IoUring::new(URING_PROBE_ENTRIES).is_ok();
        if io_uring_works && kernel_version().is_some_and(|version| version >= (6, 0)) {
            assert_eq!(probed, UringSetup::CooperativeSingleIssuer);
        }
    }
}
