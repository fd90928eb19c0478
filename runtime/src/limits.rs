//! Named limits of the runtime, gathered in one place with the reason for each value.
//!
//! Every queue and buffer the runtime owns is bounded; the bound lives here so that a reader
//! can see the memory a node commits to the mesh without reading the code that allocates it.

/// Default number of messages a mesh queue from one shard to another may hold.
///
/// Why 1024: a queue is a fixed ring allocated up front, and a mesh of `n` shards has `n²`
/// of them, so this multiplies by the square of the core count. 1024 slots absorb a burst of
/// one loop tick (a batch of routed client frames, or one replication batch split per region)
/// without making the sender wait, while 16 shards still need only 256 rings of 1024 slots
/// (a few MiB for messages of a few dozen bytes). Large payloads travel as `bytes::Bytes`
/// handles, so a slot is small no matter how large the frame it points to.
pub const MESH_QUEUE_CAPACITY_DEFAULT: usize = 1024;

/// Largest queue capacity a builder accepts.
///
/// Why: a queue much deeper than one tick's worth of work only hides overload instead of
/// pushing back on the sender; 64 Ki slots is already generous.
pub const MESH_QUEUE_CAPACITY_MAX: usize = 64 * 1024;

/// Most mesh messages one shard handles at once (`MeshEndpoint::serve`).
///
/// Why 256: every handler in flight holds its message (a routed batch of tablets, up to a
/// frame each) and usually waits for a WAL group commit, so the bound caps the memory and
/// the tasks a flood of routed writes can pin on one shard. 256 is far more than one group
/// commit needs to gather a batch (all handlers of a tick join one write), so it only bites
/// when the shard is behind, which is exactly when its senders should feel back-pressure:
/// past the bound the shard stops receiving, its rings fill, and senders wait (`send`) or
/// are refused (`try_send`).
pub const MESH_HANDLERS_IN_FLIGHT_MAX: usize = 256;

/// Largest number of shards one node may start.
///
/// Why 256: shard ids travel as `u16` in route tables, and the mesh grows with the square of
/// the shard count; no machine we target has more cores than this.
pub const SHARD_COUNT_MAX: usize = 256;

/// Most bytes the mesh rings of one node may reserve, summed over all `n²` queues.
///
/// Why 256 MiB: the rings are allocated when the shards start and stay for the life of the
/// node, so a misconfiguration (many cores × deep queues × large message type) must fail at
/// start-up with a clear error rather than eat the memory the memtables need.
pub const MESH_BYTES_MAX: usize = 256 * 1024 * 1024;

/// Submission-queue entries of each shard's io_uring ring.
///
/// Why 256: the ring's memory is locked, and `ulimit -l` is 8 MiB on our machines; 256
/// entries cost a few tens of KiB per shard and still let a shard keep hundreds of I/O
/// operations in flight, far more than one loop tick submits.
pub const IO_URING_ENTRIES_DEFAULT: u32 = 256;

/// Stack size of each shard thread.
///
/// Why 8 MiB: a shard runs deep async state machines (query execution, codecs) on one stack;
/// the 2 MiB default of spawned Rust threads is tight for that, and 8 MiB matches the main
/// thread's usual limit. The memory is reserved virtually and touched only as it is used.
pub const SHARD_THREAD_STACK_BYTES: usize = 8 * 1024 * 1024;

/// Longest thread name Linux keeps, in bytes.
///
/// Why 15: the kernel's `TASK_COMM_LEN` is 16 bytes including the terminating NUL; longer
/// names are cut, so `set_current_thread_name` rejects them instead of silently truncating.
pub const THREAD_NAME_BYTES_MAX: usize = 15;
