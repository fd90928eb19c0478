//! One Raft group (the ConfigNodes' consensus) on raft-rs (`raft` 0.7, tikv), persisted
//! through the [`Disk`](crate::io::Disk) trait, driven as a pure state machine: events in,
//! outputs out. Raft itself is raft-rs's; this module is the storage and the `Ready` loop.
//!
//! ```text
//!   host event loop (ConfigNode process, or a simulated node)
//!   ──────────────────────────────────────────────────────────
//!   every tick interval ──► group.tick()
//!   bytes from peer p   ──► group.step(p, bytes)        decode + validate, else typed error
//!   client command      ──► group.propose(data)         NotLeader { leader } ─► forward
//!   membership          ──► group.propose_add_voter(id) / propose_remove_voter(id)
//!   after any of them   ──► group.advance() ──► Output
//!                             │ raft-rs Ready, handled in this order:
//!                             │  1. messages()               (leader: may go before persisting)
//!                             │  2. snapshot  ──► snapshot file + fresh log file (durable)
//!                             │  3. committed entries ──► apply conf changes to the RawNode
//!                             │  4. entries + hard state ──► log records, ONE fsync
//!                             │  5. persisted_messages()     (only after that fsync)
//!                             │  6. advance ─► LightReady: commit, messages, committed entries
//!                             ▼
//!   Output { messages: [(to, bytes)] ──► transport,
//!            committed: [Normal | ConfChange | Snapshot] ──► apply in order to the state machine }
//!   state machine snapshot at applied index ──► group.compact(index, bytes) ──► log dropped ≤ index
//! ```
//!
//! **Durability.** Entries and hard states (term, vote, commit) are records of one
//! [`record_log`](crate::record_log) file, so a `Ready` costs one fsync and its hard state
//! is never durable without the entries before it. A record of entry `i` replaces any entry
//! `≥ i` before it (raft overwrites a conflicting suffix), which is how recovery replays
//! a truncation. The snapshot (metadata: index, term, conf state; the state machine's
//! bytes) is an [`atomic_file`](crate::atomic_file) that also names the current log file's
//! generation: compaction and snapshot install write the next log file whole (hard state
//! and the entries kept), sync it, then switch by rewriting the snapshot file, then remove
//! the old log. A crash anywhere in between recovers one consistent pair.
//!
//! `advance` returns all messages at once, after the round's fsync: the leader's
//! `messages()` could have left before it (raft thesis 10.2.1), so they only leave a little
//! later than they might; `persisted_messages()` (votes, append acknowledgements) must not
//! leave before it, and do not.
//!
//! **Membership.** The configuration in force is the snapshot's conf state plus the conf
//! changes in the log, re-applied as they are re-committed after a restart (etcd's rule;
//! raft-rs restores its tracker from the conf state `Storage::initial_state` returns,
//! which is the snapshot's). A new group is bootstrapped by a snapshot at index 1, term 1,
//! with the initial voters and empty state-machine bytes (= the initial state); a node that
//! joins starts empty and receives that snapshot or a later one from the leader.
//!
//! **Failures.** Any disk error (a failed fsync above all) stops the group for good: every
//! later call returns [`RaftGroupError::Failed`] and nothing more is acknowledged or sent.
//! The host restarts the process, and recovery reads what is really on disk.
//!
//! **Determinism.** raft-rs draws its randomized election timeout from `thread_rng`; the
//! group overrides it after every call that may have reset it, from a generator seeded by
//! [`RaftGroupConfig::random_seed`], so a simulated run replays exactly.
//!
//! A host loop, in outline (the simulated `ConfigNodeSim` in `sim_tests` is a complete
//! one):
//!
//! ```no_run
//! use iotdb_consensus::io::StdDisk;
//! use iotdb_consensus::raft_group::{Committed, RaftGroup, RaftGroupConfig, RaftGroupError};
//!
//! # fn send(_to: u64, _bytes: bytes::Bytes) {}
//! # fn restore(_data: &[u8]) {}
//! # fn apply(_data: &[u8]) {}
//! # fn state_snapshot() -> Vec<u8> { Vec::new() }
//! # fn main() -> Result<(), RaftGroupError> {
//! let config = RaftGroupConfig::new(1, vec![1], 0x5eed);
//! let (mut group, restored) = RaftGroup::open(StdDisk::new("/var/lib/iotdb/raft"), config)?;
//! if let Some(snapshot) = restored {
//!     restore(&snapshot.data); // empty bytes: the initial state
//! }
//! loop {
//!     group.tick()?; // or group.step(from, &bytes)? / group.propose(command)?
//!     let output = group.advance()?; // a fatal error: exit, let the supervisor restart
//!     for (to, bytes) in output.messages {
//!         send(to, bytes);
//!     }
//!     for committed in output.committed {
//!         match committed {
//!             Committed::Normal { data, .. } => apply(&data),
//!             Committed::ConfChange { voters, .. } => println!("voters now {voters:?}"),
//!             Committed::Snapshot(snapshot) => restore(&snapshot.data),
//!         }
//!     }
//!     if output.compact_requested || group.entries_since_snapshot() > 10_000 {
//!         group.compact(group.applied_index(), state_snapshot())?;
//!     }
//! #   break;
//! }
//! # Ok(())
//! # }
//! ```
//!
//! Owned by one thread (the ConfigNode's control thread, or the simulator's).

mod codec;
mod group;
mod storage;

#[cfg(test)]
mod sim_tests;

use thiserror::Error;

use crate::atomic_file::AtomicFileError;
use crate::io::DiskError;
use crate::record_log::LogError;

pub use codec::{decode_message, encode_message};
pub use group::{
    Committed, MembershipChange, Output, Proposed, RaftGroup, RaftGroupConfig, RestoredSnapshot,
};
pub use storage::RaftStorage;

/// Why a Raft group call failed.
#[derive(Debug, Error)]
pub enum RaftGroupError {
    /// This node does not lead; forward to `leader` (raft id) if known.
    #[error("not the leader (leader: {leader:?})")]
    NotLeader { leader: Option<u64> },
    /// A membership change is proposed and not yet applied; one at a time.
    #[error("a membership change is still pending")]
    ConfChangePending,
    /// The leader refused the proposal (a leadership transfer, or too many uncommitted
    /// bytes); retry later.
    #[error("proposal dropped by raft")]
    ProposalDropped,
    #[error("entry of {bytes} bytes exceeds the limit of {max}")]
    EntryTooLarge { bytes: usize, max: usize },
    #[error("snapshot of {bytes} bytes exceeds the limit of {max}")]
    SnapshotTooLarge { bytes: usize, max: usize },
    /// Bytes from a peer that are not a valid message for this node; dropped.
    #[error("malformed message from {from}: {reason}")]
    Malformed { from: u64, reason: String },
    /// raft-rs refused a call (a local message type from the network, a response from
    /// an unknown peer, ...); harmless, the message is dropped.
    #[error("raft: {0}")]
    Raft(#[from] raft::Error),
    #[error("compact at {index}: {reason}")]
    InvalidCompaction { index: u64, reason: String },
    #[error("invalid config: {0}")]
    InvalidConfig(String),
    #[error("raft log: {0}")]
    Log(#[from] LogError),
    #[error("raft snapshot file: {0}")]
    SnapshotFile(#[from] AtomicFileError),
    #[error("raft storage: {0}")]
    Disk(#[from] DiskError),
    /// What is on disk cannot be what this code wrote (a checksummed record that does not
    /// decode, a gap in the log, a missing log file).
    #[error("raft storage is corrupt: {0}")]
    Corrupt(String),
    /// Handling a `Ready` failed other than on the disk (raft-rs refused a conf change or
    /// a snapshot it produced itself): a bug; the group stops as after a disk failure,
    /// because raft-rs cannot continue with a `Ready` it handed out and never got back.
    #[error("raft ready handling failed: {0}")]
    Ready(String),
    /// An earlier disk failure stopped the group; restart the process.
    #[error("the raft group stopped after a disk failure; restart the process")]
    Failed,
}

impl RaftGroupError {
    /// Whether the group is dead after this error (the host must restart the process).
    pub fn is_fatal(&self) -> bool {
        matches!(
            self,
            RaftGroupError::Log(_)
                | RaftGroupError::SnapshotFile(_)
                | RaftGroupError::Disk(_)
                | RaftGroupError::Corrupt(_)
                | RaftGroupError::Ready(_)
                | RaftGroupError::Failed
        )
    }
}

/// Deliberate bugs a test switches on (per thread) to show the simulation catches them.
/// Outside tests `active` is a constant `false`.
pub(crate) mod mutant {
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub(crate) enum Mutant {
        /// Write a `Ready`'s records but skip the fsync before acknowledging them.
        SkipSync,
        /// Treat a failed fsync as success: keep acknowledging (the classic retry bug).
        #[cfg(test)]
        IgnoreSyncFailure,
    }

    crate::mutant_switch!(Mutant);
}
