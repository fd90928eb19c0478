//! The replica-to-replica messages of one region group, and their wire format.
//!
//! Every message starts with a tag byte and the sender's epoch (u64); integers are
//! little-endian. Entries travel as `index u64, kind u8, length u32, payload` and are
//! decoded as [`Bytes::slice`]s of the received buffer, never copied. Epoch tables travel
//! as `count u32` then `(epoch u64, first index u64)` pairs.
//!
//! Decoding trusts nothing: every length is checked against what remains and against a
//! named bound (`limits::IOT_MESSAGE_*`) before anything is allocated, entries must be dense and ascending, epoch
//! tables ascending, and trailing bytes are an error. Every failure is a [`DecodeError`].
//!
//! | tag | message | fields after the epoch |
//! |---|---|---|
//! | 1 | `Probe` | seq |
//! | 2 | `State` | seq, last, durable, awaiting_snapshot u8, epochs |
//! | 3 | `Append` | prev, epochs, entries |
//! | 4 | `Appended` | through, last, durable |
//! | 5 | `Rebuild` | (none) |
//! | 6 | `Fetch` | from, max_bytes |
//! | 7 | `Fetched` | gone u8, epochs, entries |

use bytes::Bytes;
use thiserror::Error;

use super::{Entry, Epoch, Epochs, Index};
use crate::limits::{
    IOT_MESSAGE_ENTRIES_MAX as MESSAGE_ENTRIES_MAX, IOT_MESSAGE_EPOCHS_MAX as MESSAGE_EPOCHS_MAX,
    IOT_MESSAGE_PAYLOAD_BYTES_MAX as MESSAGE_PAYLOAD_BYTES_MAX,
};

/// Bytes of the tag and the sender's epoch that start every message.
const MESSAGE_HEADER_BYTES: usize = 1 + 8;
/// Bytes of one `(epoch, first index)` pair of an epoch table.
const EPOCH_PAIR_BYTES: usize = 16;
/// Bytes of an entry before its payload: index u64, kind u8, length u32.
const ENTRY_HEADER_BYTES: usize = 8 + 1 + 4;
/// Bytes of a count (of epoch pairs, of entries).
const COUNT_BYTES: usize = 4;

/// A message between replicas of one region group. Every message carries the sender's
/// epoch; a receiver that knows a higher one answers with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    /// Leader → replica: report your log (`State`). Used by a leader setting up (or
    /// re-synchronising) a follower, and by a new leader catching up. `seq` is echoed.
    Probe { epoch: Epoch, seq: u64 },
    /// Replica → leader: my log ends at `last`, is durable through `durable`, and carries
    /// these labels. `seq` 0 is unsolicited (an `Append` did not fit my log).
    State {
        epoch: Epoch,
        seq: u64,
        last: Index,
        durable: Index,
        awaiting_snapshot: bool,
        epochs: Epochs,
    },
    /// Leader → follower: entries `prev + 1 ..`, with the labels covering `prev..=last`.
    Append {
        epoch: Epoch,
        prev: Index,
        epochs: Epochs,
        entries: Vec<Entry>,
    },
    /// Follower → leader: my log agrees with yours through `through`; it ends at `last`
    /// and is durable through `durable`.
    Appended {
        epoch: Epoch,
        through: Index,
        last: Index,
        durable: Index,
    },
    /// Leader → follower: your log diverged or fell behind the leader's WAL; wipe it and
    /// wait for my snapshot.
    Rebuild { epoch: Epoch },
    /// Catching-up leader → replica: send me your entries from `from`.
    Fetch {
        epoch: Epoch,
        from: Index,
        max_bytes: u64,
    },
    /// Replica → catching-up leader: entries from the requested index with their labels;
    /// `gone` when that part of the WAL was deleted.
    Fetched {
        epoch: Epoch,
        gone: bool,
        epochs: Epochs,
        entries: Vec<Entry>,
    },
}

/// Why bytes are not a valid [`Message`].
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("message truncated: {needed} bytes needed, {remaining} remain")]
    Truncated { needed: usize, remaining: usize },
    #[error("unknown message tag {0}")]
    UnknownTag(u8),
    #[error("{what}: {count} exceeds the bound {max}")]
    TooMany {
        what: &'static str,
        count: usize,
        max: usize,
    },
    #[error("entries are not dense and ascending at index {index}")]
    EntriesNotDense { index: Index },
    #[error("epoch table is not ascending")]
    EpochsNotAscending,
    #[error("invalid flag byte {0}")]
    BadFlag(u8),
    #[error("{0} trailing bytes after the message")]
    TrailingBytes(usize),
}

impl Message {
    /// The sender's epoch.
    pub fn epoch(&self) -> Epoch {
        match self {
            Message::Probe { epoch, .. }
            | Message::State { epoch, .. }
            | Message::Append { epoch, .. }
            | Message::Appended { epoch, .. }
            | Message::Rebuild { epoch }
            | Message::Fetch { epoch, .. }
            | Message::Fetched { epoch, .. } => *epoch,
        }
    }

    /// How many bytes [`Message::encode`] appends: a buffer sized with it is written once,
    /// never grown (a batch of entries is megabytes).
    pub fn encoded_len(&self) -> usize {
        let epochs_len = |epochs: &Epochs| COUNT_BYTES + EPOCH_PAIR_BYTES * epochs.pairs().len();
        let entries_len = |entries: &[Entry]| {
            COUNT_BYTES
                + entries
                    .iter()
                    .map(|entry| ENTRY_HEADER_BYTES + entry.payload.len())
                    .sum::<usize>()
        };
        MESSAGE_HEADER_BYTES
            + match self {
                Message::Probe { .. } => 8,
                Message::State { epochs, .. } => 3 * 8 + 1 + epochs_len(epochs),
                Message::Append {
                    epochs, entries, ..
                } => 8 + epochs_len(epochs) + entries_len(entries),
                Message::Appended { .. } => 3 * 8,
                Message::Rebuild { .. } => 0,
                Message::Fetch { .. } => 2 * 8,
                Message::Fetched {
                    epochs, entries, ..
                } => 1 + epochs_len(epochs) + entries_len(entries),
            }
    }

    /// Appends the encoding ([`Message::encoded_len`] bytes) to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let tag = match self {
            Message::Probe { .. } => 1,
            Message::State { .. } => 2,
            Message::Append { .. } => 3,
            Message::Appended { .. } => 4,
            Message::Rebuild { .. } => 5,
            Message::Fetch { .. } => 6,
            Message::Fetched { .. } => 7,
        };
        out.push(tag);
        put_u64(out, self.epoch());
        match self {
            Message::Probe { seq, .. } => put_u64(out, *seq),
            Message::State {
                seq,
                last,
                durable,
                awaiting_snapshot,
                epochs,
                ..
            } => {
                put_u64(out, *seq);
                put_u64(out, *last);
                put_u64(out, *durable);
                out.push(u8::from(*awaiting_snapshot));
                put_epochs(out, epochs);
            }
            Message::Append {
                prev,
                epochs,
                entries,
                ..
            } => {
                put_u64(out, *prev);
                put_epochs(out, epochs);
                put_entries(out, entries);
            }
            Message::Appended {
                through,
                last,
                durable,
                ..
            } => {
                put_u64(out, *through);
                put_u64(out, *last);
                put_u64(out, *durable);
            }
            Message::Rebuild { .. } => {}
            Message::Fetch {
                from, max_bytes, ..
            } => {
                put_u64(out, *from);
                put_u64(out, *max_bytes);
            }
            Message::Fetched {
                gone,
                epochs,
                entries,
                ..
            } => {
                out.push(u8::from(*gone));
                put_epochs(out, epochs);
                put_entries(out, entries);
            }
        }
    }

    /// The encoding as one buffer.
    pub fn to_bytes(&self) -> Bytes {
        let mut out = Vec::with_capacity(self.encoded_len());
        self.encode(&mut out);
        Bytes::from(out)
    }

    /// Decodes one whole message; entry payloads are slices of `bytes`.
    pub fn decode(bytes: &Bytes) -> Result<Message, DecodeError> {
        let mut reader = Reader { bytes, at: 0 };
        let tag = reader.u8()?;
        let epoch = reader.u64()?;
        let message = match tag {
            1 => Message::Probe {
                epoch,
                seq: reader.u64()?,
            },
            2 => Message::State {
                epoch,
                seq: reader.u64()?,
                last: reader.u64()?,
                durable: reader.u64()?,
                awaiting_snapshot: reader.flag()?,
                epochs: reader.epochs()?,
            },
            3 => {
                let prev = reader.u64()?;
                let epochs = reader.epochs()?;
                let entries = reader.entries()?;
                Message::Append {
                    epoch,
                    prev,
                    epochs,
                    entries,
                }
            }
            4 => Message::Appended {
                epoch,
                through: reader.u64()?,
                last: reader.u64()?,
                durable: reader.u64()?,
            },
            5 => Message::Rebuild { epoch },
            6 => Message::Fetch {
                epoch,
                from: reader.u64()?,
                max_bytes: reader.u64()?,
            },
            7 => {
                let gone = reader.flag()?;
                let epochs = reader.epochs()?;
                let entries = reader.entries()?;
                Message::Fetched {
                    epoch,
                    gone,
                    epochs,
                    entries,
                }
            }
            other => return Err(DecodeError::UnknownTag(other)),
        };
        let remaining = bytes.len() - reader.at;
        if remaining > 0 {
            return Err(DecodeError::TrailingBytes(remaining));
        }
        Ok(message)
    }
}

fn put_u64(out: &mut Vec<u8>, value: u64) {
    out.extend_from_slice(&value.to_le_bytes());
}

fn put_epochs(out: &mut Vec<u8>, epochs: &Epochs) {
    let pairs = epochs.pairs();
    out.extend_from_slice(&(pairs.len() as u32).to_le_bytes());
    for &(epoch, first) in pairs {
        put_u64(out, epoch);
        put_u64(out, first);
    }
}

fn put_entries(out: &mut Vec<u8>, entries: &[Entry]) {
    out.extend_from_slice(&(entries.len() as u32).to_le_bytes());
    for entry in entries {
        put_u64(out, entry.index);
        out.push(entry.kind);
        out.extend_from_slice(&(entry.payload.len() as u32).to_le_bytes());
        out.extend_from_slice(&entry.payload);
    }
}

/// A bounds-checked cursor over a received buffer.
struct Reader<'a> {
    bytes: &'a Bytes,
    at: usize,
}

impl Reader<'_> {
    fn take(&mut self, needed: usize) -> Result<usize, DecodeError> {
        let remaining = self.bytes.len() - self.at;
        if needed > remaining {
            return Err(DecodeError::Truncated { needed, remaining });
        }
        let start = self.at;
        self.at += needed;
        Ok(start)
    }

    fn u8(&mut self) -> Result<u8, DecodeError> {
        let at = self.take(1)?;
        Ok(self.bytes[at])
    }

    fn u32(&mut self) -> Result<u32, DecodeError> {
        let at = self.take(4)?;
        let mut word = [0; 4];
        word.copy_from_slice(&self.bytes[at..at + 4]);
        Ok(u32::from_le_bytes(word))
    }

    fn u64(&mut self) -> Result<u64, DecodeError> {
        let at = self.take(8)?;
        let mut word = [0; 8];
        word.copy_from_slice(&self.bytes[at..at + 8]);
        Ok(u64::from_le_bytes(word))
    }

    fn flag(&mut self) -> Result<bool, DecodeError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            other => Err(DecodeError::BadFlag(other)),
        }
    }

    /// A count, refused above `max` or above what the remaining bytes could hold.
    fn count(
        &mut self,
        what: &'static str,
        max: usize,
        min_item_bytes: usize,
    ) -> Result<usize, DecodeError> {
        let count = self.u32()? as usize;
        if count > max {
            return Err(DecodeError::TooMany { what, count, max });
        }
        let needed = count.saturating_mul(min_item_bytes);
        let remaining = self.bytes.len() - self.at;
        if needed > remaining {
            return Err(DecodeError::Truncated { needed, remaining });
        }
        Ok(count)
    }

    fn epochs(&mut self) -> Result<Epochs, DecodeError> {
        let count = self.count("epoch pairs", MESSAGE_EPOCHS_MAX, EPOCH_PAIR_BYTES)?;
        let mut pairs = Vec::with_capacity(count);
        for _ in 0..count {
            pairs.push((self.u64()?, self.u64()?));
        }
        Epochs::from_pairs(pairs, 0).ok_or(DecodeError::EpochsNotAscending)
    }

    fn entries(&mut self) -> Result<Vec<Entry>, DecodeError> {
        let count = self.count("entries", MESSAGE_ENTRIES_MAX, ENTRY_HEADER_BYTES)?;
        let mut entries: Vec<Entry> = Vec::with_capacity(count);
        for _ in 0..count {
            let index = self.u64()?;
            let dense = match entries.last() {
                Some(previous) => previous.index.checked_add(1) == Some(index),
                None => index >= 1,
            };
            if !dense {
                return Err(DecodeError::EntriesNotDense { index });
            }
            let kind = self.u8()?;
            let length = self.u32()? as usize;
            if length > MESSAGE_PAYLOAD_BYTES_MAX {
                return Err(DecodeError::TooMany {
                    what: "payload bytes",
                    count: length,
                    max: MESSAGE_PAYLOAD_BYTES_MAX,
                });
            }
            let at = self.take(length)?;
            entries.push(Entry {
                index,
                kind,
                payload: self.bytes.slice(at..at + length),
            });
        }
        Ok(entries)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(index: Index, payload: &'static [u8]) -> Entry {
        Entry {
            index,
            kind: 2,
            payload: Bytes::from_static(payload),
        }
    }

    fn samples() -> Vec<Message> {
        let epochs = Epochs::from_pairs(vec![(1, 1), (4, 7)], 0).unwrap();
        vec![
            Message::Probe { epoch: 3, seq: 9 },
            Message::State {
                epoch: 3,
                seq: 0,
                last: 12,
                durable: 10,
                awaiting_snapshot: true,
                epochs: epochs.clone(),
            },
            Message::Append {
                epoch: 4,
                prev: 6,
                epochs: epochs.clone(),
                entries: vec![entry(7, b"seven"), entry(8, b""), entry(9, b"nine")],
            },
            Message::Appended {
                epoch: 4,
                through: 9,
                last: 9,
                durable: 8,
            },
            Message::Rebuild { epoch: 5 },
            Message::Fetch {
                epoch: 5,
                from: 3,
                max_bytes: 1 << 20,
            },
            Message::Fetched {
                epoch: 5,
                gone: false,
                epochs: Epochs::new(),
                entries: vec![],
            },
        ]
    }

    #[test]
    fn every_message_round_trips() {
        for message in samples() {
            let bytes = message.to_bytes();
            assert_eq!(Message::decode(&bytes), Ok(message));
        }
    }

    #[test]
    fn encoded_len_is_what_encode_appends() {
        for message in samples() {
            let mut out = vec![0xAB; 3];
            message.encode(&mut out);
            assert_eq!(out.len() - 3, message.encoded_len(), "{message:?}");
        }
    }

    #[test]
    fn payloads_are_slices_of_the_received_buffer() {
        let bytes = samples()[2].to_bytes();
        let Ok(Message::Append { entries, .. }) = Message::decode(&bytes) else {
            panic!("an append");
        };
        let range = bytes.as_ptr_range();
        assert!(range.contains(&entries[0].payload.as_ptr()));
    }

    #[test]
    fn every_truncation_is_a_typed_error() {
        for message in samples() {
            let bytes = message.to_bytes();
            for cut in 0..bytes.len() {
                let error = Message::decode(&bytes.slice(..cut)).expect_err("truncated");
                assert!(
                    matches!(error, DecodeError::Truncated { .. }),
                    "{message:?} cut at {cut}: {error:?}"
                );
            }
        }
    }

    #[test]
    fn garbage_is_refused_without_panicking() {
        assert_eq!(
            Message::decode(&Bytes::from_static(&[0xEE; 9])),
            Err(DecodeError::UnknownTag(0xEE))
        );
        let mut bytes = samples()[0].to_bytes().to_vec();
        bytes.push(0);
        assert_eq!(
            Message::decode(&Bytes::from(bytes)),
            Err(DecodeError::TrailingBytes(1))
        );
        let mut state = samples()[1].to_bytes().to_vec();
        state[1 + 8 * 4] = 7; // the awaiting_snapshot flag
        assert_eq!(
            Message::decode(&Bytes::from(state)),
            Err(DecodeError::BadFlag(7))
        );
        // A deterministic sweep of pseudo-random buffers: errors, never panics.
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        for length in 0..200 {
            let mut buffer = Vec::with_capacity(length);
            for _ in 0..length {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                buffer.push(state as u8);
            }
            if let Some(first) = buffer.first_mut() {
                *first = 1 + (*first % 7);
            }
            let _ = Message::decode(&Bytes::from(buffer));
        }
    }

    #[test]
    fn huge_counts_and_lengths_are_refused_before_allocating() {
        let mut bytes = vec![3];
        bytes.extend_from_slice(&1u64.to_le_bytes()); // epoch
        bytes.extend_from_slice(&0u64.to_le_bytes()); // prev
        bytes.extend_from_slice(&0u32.to_le_bytes()); // no epochs
        bytes.extend_from_slice(&u32::MAX.to_le_bytes()); // entries
        assert!(matches!(
            Message::decode(&Bytes::from(bytes.clone())),
            Err(DecodeError::TooMany { .. })
        ));
        let at = bytes.len() - 4;
        bytes[at..].copy_from_slice(&1000u32.to_le_bytes());
        assert!(matches!(
            Message::decode(&Bytes::from(bytes.clone())),
            Err(DecodeError::Truncated { .. })
        ));
        bytes[at..].copy_from_slice(&1u32.to_le_bytes());
        bytes.extend_from_slice(&1u64.to_le_bytes());
        bytes.push(0);
        bytes.extend_from_slice(&u32::MAX.to_le_bytes());
        bytes.extend_from_slice(&[0; 16]);
        assert!(matches!(
            Message::decode(&Bytes::from(bytes)),
            Err(DecodeError::TooMany {
                what: "payload bytes",
                ..
            })
        ));
    }

    #[test]
    fn malformed_entries_and_tables_are_refused() {
        let gap = Message::Append {
            epoch: 1,
            prev: 0,
            epochs: Epochs::new(),
            entries: vec![entry(1, b"a"), entry(3, b"c")],
        };
        assert_eq!(
            Message::decode(&gap.to_bytes()),
            Err(DecodeError::EntriesNotDense { index: 3 })
        );
        let mut bytes = vec![7];
        bytes.extend_from_slice(&1u64.to_le_bytes());
        bytes.push(0);
        bytes.extend_from_slice(&2u32.to_le_bytes());
        for word in [5u64, 1, 4, 9] {
            bytes.extend_from_slice(&word.to_le_bytes());
        }
        bytes.extend_from_slice(&0u32.to_le_bytes());
        assert_eq!(
            Message::decode(&Bytes::from(bytes)),
            Err(DecodeError::EpochsNotAscending)
        );
    }
}
