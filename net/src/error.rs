//! The crate's typed errors: what can go wrong decoding bytes from the network
//! ([`DecodeError`]), on a connection ([`NetError`]), and in a client call
//! ([`ClientError`], which carries the server's status code).

use crate::status::{Status, StatusCode};

/// Bytes from the network that do not form a valid frame or body. Never a
/// panic: every length and count is checked against what remains.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("truncated: needed {needed} more bytes while reading {what}")]
    Truncated { what: &'static str, needed: usize },
    #[error("bad magic {found:02x?}")]
    BadMagic { found: [u8; 4] },
    #[error("unsupported protocol version {found}")]
    BadVersion { found: u8 },
    #[error("frame body of {length} bytes exceeds the limit of {limit} bytes")]
    FrameTooLarge { length: u64, limit: u64 },
    #[error("body checksum mismatch: header says {expected:#010x}, body has {actual:#010x}")]
    ChecksumMismatch { expected: u32, actual: u32 },
    #[error("unknown opcode {0:#04x}")]
    UnknownOpcode(u8),
    #[error("reserved flag bits set: {0:#06x}")]
    ReservedFlags(u16),
    #[error("invalid {what}: {reason}")]
    Invalid { what: &'static str, reason: String },
    #[error("{count} {what} claimed, more than the remaining {remaining} bytes can hold")]
    CountTooLarge {
        what: &'static str,
        count: u64,
        remaining: usize,
    },
    #[error("{0} trailing bytes after the body")]
    TrailingBytes(usize),
}

impl DecodeError {
    pub(crate) fn invalid(what: &'static str, reason: impl Into<String>) -> Self {
        Self::Invalid {
            what,
            reason: reason.into(),
        }
    }
}

/// Connection-level failures (server side and the clients' transport).
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("i/o error while {operation}: {source}")]
    Io {
        operation: &'static str,
        source: std::io::Error,
    },
    #[error("decode error: {0}")]
    Decode(#[from] DecodeError),
    #[error("connection closed by peer")]
    Closed,
    #[error("timed out: {0}")]
    Timeout(&'static str),
}

impl NetError {
    pub(crate) fn io(operation: &'static str, source: std::io::Error) -> Self {
        Self::Io { operation, source }
    }
}

/// What a client call returns when it fails: either the server answered with a
/// non-success status (the code is kept typed) or the transport failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("server returned {}: {}", .0.code, .0.message)]
    Status(Status),
    #[error(transparent)]
    Net(#[from] NetError),
    #[error("protocol violation by the server: {0}")]
    Protocol(String),
    #[error("no route and no connection available: {0}")]
    Unavailable(String),
}

impl ClientError {
    /// The server's status code when the server answered with an error.
    pub fn status_code(&self) -> Option<StatusCode> {
        match self {
            Self::Status(status) => Some(status.code),
            _ => None,
        }
    }
}

impl From<DecodeError> for ClientError {
    fn from(error: DecodeError) -> Self {
        Self::Net(NetError::Decode(error))
    }
}
