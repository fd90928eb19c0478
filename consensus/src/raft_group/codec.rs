//! The bytes of a Raft group: peer messages (raft's protobuf), log records and the
//! snapshot file. Everything read back is validated and becomes a typed error, never a
//! panic.
//!
//! Log record payload (inside a checksummed `record_log` record):
//! `kind u8 | protobuf`, kind 1 = `eraftpb::Entry`, kind 2 = `eraftpb::HardState`.
//!
//! Snapshot file contents (inside a checksummed `atomic_file`):
//! `version u8 (1) | log generation u64 LE | metadata length u32 LE |
//!  eraftpb::SnapshotMetadata | state-machine bytes`.

use bytes::Bytes;
use protobuf::Message as _;
use raft::eraftpb::{Entry, HardState, Message, SnapshotMetadata};

const RECORD_ENTRY: u8 = 1;
const RECORD_HARD_STATE: u8 = 2;
const SNAPSHOT_FILE_VERSION: u8 = 1;
const SNAPSHOT_FILE_HEADER_BYTES: usize = 1 + 8 + 4;

/// One record of the Raft log file.
#[derive(Debug, PartialEq)]
pub(crate) enum LogRecord {
    Entry(Entry),
    HardState(HardState),
}

/// Encodes a protobuf message of our own; proto3 encoding of a built value cannot fail,
/// so a failure is a bug.
fn encode_proto(message: &impl protobuf::Message) -> Vec<u8> {
    message
        .write_to_bytes()
        .unwrap_or_else(|error| panic!("protobuf encoding cannot fail: {error}"))
}

pub(crate) fn encode_entry_record(entry: &Entry) -> Vec<u8> {
    let mut payload = vec![RECORD_ENTRY];
    payload.extend_from_slice(&encode_proto(entry));
    payload
}

pub(crate) fn encode_hard_state_record(hard_state: &HardState) -> Vec<u8> {
    let mut payload = vec![RECORD_HARD_STATE];
    payload.extend_from_slice(&encode_proto(hard_state));
    payload
}

pub(crate) fn decode_record(payload: &[u8]) -> Result<LogRecord, String> {
    let (&kind, body) = payload
        .split_first()
        .ok_or_else(|| "empty record".to_string())?;
    match kind {
        RECORD_ENTRY => Entry::parse_from_bytes(body)
            .map(LogRecord::Entry)
            .map_err(|error| format!("entry record: {error}")),
        RECORD_HARD_STATE => HardState::parse_from_bytes(body)
            .map(LogRecord::HardState)
            .map_err(|error| format!("hard state record: {error}")),
        other => Err(format!("unknown record kind {other}")),
    }
}

/// What the snapshot file holds.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SnapshotFile {
    /// The log file that continues this snapshot.
    pub generation: u64,
    pub metadata: SnapshotMetadata,
    pub data: Bytes,
}

pub(crate) fn encode_snapshot_file(file: &SnapshotFile) -> Vec<u8> {
    let metadata = encode_proto(&file.metadata);
    let mut bytes =
        Vec::with_capacity(SNAPSHOT_FILE_HEADER_BYTES + metadata.len() + file.data.len());
    bytes.push(SNAPSHOT_FILE_VERSION);
    bytes.extend_from_slice(&file.generation.to_le_bytes());
    bytes.extend_from_slice(&(metadata.len() as u32).to_le_bytes());
    bytes.extend_from_slice(&metadata);
    bytes.extend_from_slice(&file.data);
    bytes
}

/// Bytes the snapshot file adds around the state machine's bytes (metadata included), for
/// the size check before a write.
pub(crate) fn snapshot_file_overhead(metadata: &SnapshotMetadata) -> usize {
    SNAPSHOT_FILE_HEADER_BYTES + metadata.compute_size() as usize
}

pub(crate) fn decode_snapshot_file(bytes: &[u8]) -> Result<SnapshotFile, String> {
    if bytes.len() < SNAPSHOT_FILE_HEADER_BYTES {
        return Err(format!("{} bytes, shorter than the header", bytes.len()));
    }
    if bytes[0] != SNAPSHOT_FILE_VERSION {
        return Err(format!("unknown snapshot file version {}", bytes[0]));
    }
    let mut word = [0; 8];
    word.copy_from_slice(&bytes[1..9]);
    let generation = u64::from_le_bytes(word);
    let mut half = [0; 4];
    half.copy_from_slice(&bytes[9..13]);
    let metadata_bytes = u32::from_le_bytes(half) as usize;
    let rest = &bytes[SNAPSHOT_FILE_HEADER_BYTES..];
    if metadata_bytes > rest.len() {
        return Err(format!(
            "metadata of {metadata_bytes} bytes but {} remain",
            rest.len()
        ));
    }
    let metadata = SnapshotMetadata::parse_from_bytes(&rest[..metadata_bytes])
        .map_err(|error| format!("snapshot metadata: {error}"))?;
    Ok(SnapshotFile {
        generation,
        metadata,
        data: Bytes::copy_from_slice(&rest[metadata_bytes..]),
    })
}

/// A raft message as it goes on the wire (raft's protobuf codec).
pub fn encode_message(message: &Message) -> Bytes {
    Bytes::from(encode_proto(message))
}

/// A raft message from the wire; malformed bytes are an error, never a panic. Checks only
/// the encoding: [`super::RaftGroup::step`] checks the content against the node.
pub fn decode_message(bytes: &[u8]) -> Result<Message, String> {
    Message::parse_from_bytes(bytes).map_err(|error| error.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use raft::eraftpb::{ConfState, MessageType};

    #[test]
    fn records_round_trip_and_garbage_is_an_error() {
        let entry = Entry {
            index: 7,
            term: 3,
            data: Bytes::from_static(b"command"),
            ..Entry::default()
        };
        let payload = encode_entry_record(&entry);
        assert_eq!(decode_record(&payload), Ok(LogRecord::Entry(entry)));
        let hard_state = HardState {
            term: 4,
            vote: 2,
            commit: 6,
            ..HardState::default()
        };
        let payload = encode_hard_state_record(&hard_state);
        assert_eq!(
            decode_record(&payload),
            Ok(LogRecord::HardState(hard_state))
        );
        assert!(decode_record(&[]).is_err());
        assert!(decode_record(&[9, 1, 2]).is_err());
        assert!(decode_record(&[RECORD_ENTRY, 0xff, 0xff, 0xff]).is_err());
    }

    #[test]
    fn snapshot_file_round_trips_and_rejects_bad_lengths() {
        let mut metadata = SnapshotMetadata {
            index: 10,
            term: 2,
            ..SnapshotMetadata::default()
        };
        metadata.set_conf_state(ConfState::from((vec![1, 2, 3], vec![])));
        let file = SnapshotFile {
            generation: 5,
            metadata,
            data: Bytes::from_static(b"state"),
        };
        let bytes = encode_snapshot_file(&file);
        assert_eq!(
            bytes.len(),
            snapshot_file_overhead(&file.metadata) + file.data.len()
        );
        assert_eq!(decode_snapshot_file(&bytes), Ok(file));
        for cut in 0..SNAPSHOT_FILE_HEADER_BYTES + 3 {
            let _ = decode_snapshot_file(&bytes[..cut]);
        }
        let mut long = bytes.clone();
        long[9..13].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(decode_snapshot_file(&long).is_err());
        let mut version = bytes;
        version[0] = 9;
        assert!(decode_snapshot_file(&version).is_err());
    }

    #[test]
    fn messages_round_trip_and_random_bytes_never_panic() {
        let mut message = Message {
            from: 1,
            to: 2,
            term: 3,
            ..Message::default()
        };
        message.set_msg_type(MessageType::MsgAppend);
        let bytes = encode_message(&message);
        assert_eq!(decode_message(&bytes), Ok(message));
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        for length in 0..200 {
            let garbage: Vec<u8> = (0..length)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    state as u8
                })
                .collect();
            let _ = decode_message(&garbage);
        }
    }
}
