//! The storage seam of region replication (IoTConsensus): the leader's writes hand back
//! the WAL record they logged, a follower logs and applies that record at exactly the
//! same index, the dispatcher re-reads the WAL by index, and a retention floor keeps the
//! WAL that lagging followers still need.
//!
//! ```text
//!  leader shard                                           follower shard
//!  ────────────                                           ──────────────
//!  write_for_replication ─► WAL[i] ─► memtable
//!        │ LogEntry { i, kind, payload } (the logged bytes, not re-encoded)
//!        └──────────────► (consensus: queue, batch, send) ─► apply_replicated(entry)
//!  read_log(from, max_bytes) ◄── dispatcher fell behind      ├─ i < next: Duplicate
//!        │ Entries(..) | Gone { first_kept }                  ├─ i > next: Gap
//!        │                        └─► snapshot + install      ├─ decode (tablet | deletion)
//!  set_retention_floor(min follower index)                   └─ same checks as a local
//!        keeps flushed segments ≥ floor, up to                  write ─► WAL[i] ─► memtable
//!        wal_retention_bytes_max
//! ```
//!
//! What to ship and when is decided elsewhere (the consensus crate's state machine);
//! nothing here knows peers. A follower's WAL holds the leader's indexes, so after a
//! restart both sides agree on where the follower stands (`RegionInfo::last_index`).

use std::time::Duration;

use bytes::Bytes;

use super::{Region, deletion, wal_entry};
use crate::error::{ReplicationError, Result};
use crate::types::{SeriesKey, Tablet, TabletRef, TimeRange};
use crate::wal::WalRead;

use super::{Deletion, WriteAck};

/// One WAL record as it travels between replicas: its search index, its kind
/// (`wal_entry::KIND_TABLET_COMPACT`, `wal_entry::KIND_TABLET` from a WAL written before
/// data format 3, or `deletion::KIND_DELETE`) and its payload exactly as the
/// leader's WAL stores it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogEntry {
    pub index: u64,
    pub kind: u8,
    pub payload: Bytes,
}

/// What [`Region::read_log`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LogRead {
    /// Consecutive entries from the index asked for, at least one when the WAL holds it
    /// (even if that one alone exceeds the budget), stopping at the byte budget; empty
    /// when nothing at or after that index has been written yet.
    Entries(Vec<LogEntry>),
    /// The WAL no longer holds the index asked for (flushed and dropped, or never logged
    /// with `WalMode::Off`); `first_kept` is the lowest index it still holds. The follower
    /// needs a snapshot.
    Gone { first_kept: u64 },
}

impl Region {
    /// [`Region::write`], also returning the logged record to ship to followers. The
    /// payload is encoded once, into a buffer of exactly its size that becomes the entry's
    /// `Bytes` (the plain `write` reuses its buffer instead).
    pub fn write_for_replication(&self, tablet: &Tablet) -> Result<(WriteAck, LogEntry)> {
        self.write_ref_for_replication(&tablet.as_ref())
    }

    /// [`Region::write_for_replication`] of a borrowed tablet ([`Region::write_ref`]).
    pub fn write_ref_for_replication(
        &self,
        tablet: &TabletRef<'_>,
    ) -> Result<(WriteAck, LogEntry)> {
        let mut state = self.state.borrow_mut();
        let state = &mut *state;
        let admitted = state.admit_tablet(tablet)?;
        let index = state.next_index;
        let kind = wal_entry::KIND_TABLET_COMPACT;
        let mut record = std::mem::take(&mut state.tablet_record);
        record.prepare(tablet);
        let mut payload = Vec::with_capacity(record.encoded_len(tablet));
        record.encode(tablet, &mut payload);
        let logged = self.log_tablet(
            state,
            (index, kind, &payload),
            (tablet, admitted),
            Some(&record),
        );
        record.done();
        state.tablet_record = record;
        let entry = LogEntry {
            index,
            kind,
            payload: Bytes::from(payload),
        };
        Ok((logged?, entry))
    }

    /// [`Region::delete`], also returning the logged record to ship to followers.
    pub fn delete_for_replication(
        &self,
        keys: &[SeriesKey],
        range: TimeRange,
    ) -> Result<(WriteAck, LogEntry)> {
        let mut state = self.state.borrow_mut();
        let state = &mut *state;
        state.admit_deletion(keys.len())?;
        let index = state.next_index;
        let mut payload = Vec::new();
        deletion::encode_record(keys, range, &mut payload);
        let deletions: Vec<Deletion> = keys
            .iter()
            .map(|key| Deletion {
                key: key.clone(),
                range,
            })
            .collect();
        let ack = self.log_deletion(state, index, &payload, &deletions)?;
        Ok((
            ack,
            LogEntry {
                index,
                kind: deletion::KIND_DELETE,
                payload: Bytes::from(payload),
            },
        ))
    }

    /// Logs a leader's record at exactly `entry.index`, which must be the region's next
    /// index, and applies it as the local write or deletion it encodes would be (same
    /// type checks, same memtable budget). Refused without any effect: a lower index
    /// (`ReplicationError::Duplicate`), a higher one (`ReplicationError::Gap`), an
    /// unknown kind or a payload that does not decode (`ReplicationError::InvalidEntry`),
    /// and whatever a local write would be refused for. Await the ack's durability before
    /// acknowledging to the leader.
    pub fn apply_replicated(&self, entry: &LogEntry) -> Result<WriteAck> {
        let mut state = self.state.borrow_mut();
        let state = &mut *state;
        state.check_writable()?;
        let next_index = state.next_index;
        if entry.index < next_index {
            return Err(ReplicationError::Duplicate {
                index: entry.index,
                next_index,
            }
            .into());
        }
        if entry.index > next_index {
            return Err(ReplicationError::Gap {
                index: entry.index,
                next_index,
            }
            .into());
        }
        let invalid = |reason: String| ReplicationError::InvalidEntry {
            index: entry.index,
            reason,
        };
        match entry.kind {
            kind if wal_entry::is_tablet(kind) => {
                // The leader's digits go to the memtable as they are, as its own write's did.
                let mut record = std::mem::take(&mut state.tablet_record);
                let applied = wal_entry::decode_kind_into(kind, &entry.payload, &mut record)
                    .map_err(|e| invalid(e.0).into())
                    .and_then(|tablet| {
                        let tablet = tablet.as_ref();
                        let admitted = state.admit_tablet(&tablet)?;
                        let logged = (entry.index, kind, &entry.payload[..]);
                        self.log_tablet(state, logged, (&tablet, admitted), Some(&record))
                    });
                record.done();
                state.tablet_record = record;
                applied
            }
            deletion::KIND_DELETE => {
                let deletions = deletion::decode_record(&entry.payload).map_err(invalid)?;
                state.admit_deletion(deletions.len())?;
                self.log_deletion(state, entry.index, &entry.payload, &deletions)
            }
            other => Err(invalid(format!("unknown record kind {other}")).into()),
        }
    }

    /// [`Region::apply_replicated`], but while the shard's memtable budget is full it
    /// waits (up to `max_wait`) for a flush to give bytes back, as
    /// [`Region::write_waiting`] does; past `max_wait` it fails with `Overloaded`.
    pub async fn apply_replicated_waiting(
        &self,
        entry: &LogEntry,
        max_wait: Duration,
    ) -> Result<WriteAck> {
        self.waiting_for_room(max_wait, || self.apply_replicated(entry))
            .await
    }

    /// The WAL's records from `from` on, within `max_bytes` (see [`LogRead`]), read from
    /// the pending group-commit batches in memory and from the segment files through
    /// io_uring, a bounded window per read (`config::WAL_READ_WINDOW_BYTES`), so the
    /// shard's loop keeps running meanwhile. Every record's checksum is verified; a
    /// damaged record is a `Corruption` error, never skipped.
    pub async fn read_log(&self, from: u64, max_bytes: usize) -> Result<LogRead> {
        Ok(match self.wal.read(from, max_bytes).await? {
            WalRead::Gone { first_kept } => LogRead::Gone { first_kept },
            WalRead::Records(records) => LogRead::Entries(
                records
                    .into_iter()
                    .map(|record| LogEntry {
                        index: record.index,
                        kind: record.kind,
                        payload: record.payload,
                    })
                    .collect(),
            ),
        })
    }

    /// Keeps WAL segments holding any index ≥ `floor` even once flushed (the lowest index
    /// a follower still needs), as long as the WAL stays within
    /// `RegionConfig::wal_retention_bytes_max`; past it the oldest flushed segments are
    /// dropped anyway. `None`: the WAL is dropped below the flushed index after each
    /// flush, as without replication. Not persisted: set it again after an open (before
    /// the first flush, or a flush may drop what a follower needs). Raising the floor
    /// drops what it no longer keeps at once; a failed removal is logged and retried at
    /// the next flush.
    pub fn set_retention_floor(&self, floor: Option<u64>) {
        let mut state = self.state.borrow_mut();
        state.retention_floor = floor;
        if state.closed {
            return;
        }
        if let Err(e) = state.trim_wal(&self.wal) {
            tracing::warn!(dir = %state.dir.display(), error = %e, "dropping WAL segments failed");
        }
    }
}
