//! Named limits of the consensus crate, gathered in one place with the reason for each.
//!
//! Every queue, batch and loop in this crate — the simulator's included — is bounded by a
//! constant from here or by a field of a config whose default comes from here.

/// Largest payload one `Transport::send` carries.
///
/// Why 16 MiB: it matches the order of `net`'s largest frame, so a state machine that works
/// in the simulator never builds a message the real transport refuses; replication batches
/// and snapshot chunks are cut well below it.
pub const TRANSPORT_PAYLOAD_BYTES_MAX: usize = 16 * 1024 * 1024;

/// Requests one `rpc::Rpc` keeps waiting for a response at once.
///
/// Why 1024: a node has a handful of peers and pipelines a few batches to each; more than
/// this in flight means a peer stopped answering and the caller should back off
/// (`RpcError::TooManyInFlight`) instead of growing a table of timers without end.
pub const RPC_IN_FLIGHT_MAX: usize = 1024;

/// Largest payload of one `record_log` record.
///
/// Why 1 MiB: a record is written in one group-commit batch, so it must fit well inside
/// `LOG_BATCH_BYTES_MAX`; and recovery reads a length from disk before trusting it, so a
/// small bound keeps a damaged length from asking for gigabytes.
pub const LOG_RECORD_PAYLOAD_BYTES_MAX: usize = 1024 * 1024;

/// Most bytes one group commit writes (records appended since the last commit).
///
/// Why 4 MiB: one write and one fsync per batch; past a few MiB a larger batch no longer
/// saves fsyncs worth having and only delays every waiter in it. `append` refuses with
/// `LogError::BatchFull` beyond this, which is the caller's back-pressure signal.
pub const LOG_BATCH_BYTES_MAX: usize = 4 * 1024 * 1024;

/// Longest file name a `Disk` accepts, in bytes.
///
/// Why 255: Linux's `NAME_MAX`; a simulated disk that accepted longer names would let a
/// test pass that the real file system fails.
pub const DISK_FILE_NAME_BYTES_MAX: usize = 255;

/// Most nodes one simulation drives.
///
/// Why 64: simulations exist to explore interleavings, which a few nodes already produce
/// in abundance; a cap keeps a mistyped config from allocating a world.
pub const SIM_NODES_MAX: usize = 64;

/// Default bound on the events one simulation processes before it fails.
///
/// Why 2 million: the residents' runs take tens of thousands of events; a run that reaches
/// this is livelocked (a timer re-arming at zero delay, a message ping-pong) and must fail
/// with its seed rather than spin.
pub const SIM_STEPS_MAX_DEFAULT: u64 = 2_000_000;

/// Seeds a simulated test runs when `SIM_SEEDS` is not set.
///
/// Why 200: enough that each fault (crash, torn write, fsync error, partition) is hit in
/// many combinations, while the crate's whole test run stays within a minute or two on the
/// 2-core CI machine. Nightly or local soak runs raise it with `SIM_SEEDS`.
pub const SIM_SEEDS_DEFAULT: u64 = 200;

/// Largest `SIM_SEEDS` accepted.
///
/// Why: a typo (`SIM_SEEDS=2000000000`) should fail at once, not run for a week.
pub const SIM_SEEDS_MAX: u64 = 10_000_000;

/// Largest payload of one entry a `RaftGroup` accepts (`propose`, or an entry in a peer's
/// message).
///
/// Why 512 KiB: each entry is one `record_log` record, which must stay under
/// `LOG_RECORD_PAYLOAD_BYTES_MAX` with its protobuf framing; ConfigNode commands are a few
/// KiB, so anything near this is a bug in the caller, refused before it reaches the log.
pub const RAFT_ENTRY_BYTES_MAX: usize = 512 * 1024;

/// Bytes of entries one Raft append message carries (raft's `max_size_per_msg` default).
///
/// Why 1 MiB: far below `TRANSPORT_PAYLOAD_BYTES_MAX` even with a maximal entry on top
/// (raft always sends at least one entry), and small enough that a lost message costs
/// little to resend.
pub const RAFT_MESSAGE_ENTRIES_BYTES_MAX: u64 = 1024 * 1024;

/// Append messages a leader keeps in flight to one follower (raft's `max_inflight_msgs`).
///
/// Why 64: with 1 MiB messages that is at most 64 MiB queued towards a slow follower, and
/// a ConfigNode's write rate never needs a deeper pipeline.
pub const RAFT_INFLIGHT_MESSAGES_MAX: usize = 64;

/// Bytes of proposed but uncommitted entries a leader holds (raft's
/// `max_uncommitted_size`); past it, proposals are refused.
///
/// Why 16 MiB: it bounds the leader's memory while a quorum is unreachable; the caller
/// sees `RaftGroupError::ProposalDropped` and backs off.
pub const RAFT_UNCOMMITTED_BYTES_MAX: u64 = 16 * 1024 * 1024;

/// Largest Raft snapshot file (the state machine's snapshot with its metadata).
///
/// Why 15 MiB: a snapshot travels to a lagging follower in one message, which must fit
/// `TRANSPORT_PAYLOAD_BYTES_MAX` (16 MiB) with its framing; the ConfigNode's state takes
/// about 14 bytes per data partition (measured: 150 KB for 10 000), so this holds about a
/// million partitions (a thousand series slots for twenty years of weekly time
/// partitions). Beyond it a snapshot must be sent in chunks.
pub const RAFT_SNAPSHOT_FILE_BYTES_MAX: usize = TRANSPORT_PAYLOAD_BYTES_MAX - 1024 * 1024;

/// Rounds of `Ready` one `RaftGroup::advance` handles before returning.
///
/// Why 64: one round usually drains everything (a second one picks up what the first
/// made possible: a commit after persisting, a snapshot report); the bound only keeps a
/// bug from looping for ever, and what is left is handled by the next call.
pub const RAFT_READY_ROUNDS_MAX: usize = 64;

/// Most entries one IoTConsensus message (`iot::Message`) carries on decode.
///
/// Why 65,536: 64× IoTDB's default batch (`max_batch_entries` 1024); a count above this
/// is a damaged or hostile message, refused before anything is allocated.
pub const IOT_MESSAGE_ENTRIES_MAX: usize = 65_536;

/// Most epoch pairs one IoTConsensus message carries on decode.
///
/// Why 4096: tables are bounded by `IotConfig::epochs_max` (default 64) and the slices a
/// message carries are shorter still.
pub const IOT_MESSAGE_EPOCHS_MAX: usize = 4096;

/// Largest entry payload an IoTConsensus message carries on decode.
///
/// Why 16 MiB: IoTDB's `max_batch_bytes`, and `TRANSPORT_PAYLOAD_BYTES_MAX`; one WAL record
/// of a region is far smaller.
pub const IOT_MESSAGE_PAYLOAD_BYTES_MAX: usize = TRANSPORT_PAYLOAD_BYTES_MAX;
