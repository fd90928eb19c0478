//! Request-id bookkeeping shared by the clients: which ids are outstanding,
//! the partial payloads of streamed responses, and completed results waiting
//! to be collected.

use std::collections::HashMap;

use crate::error::ClientError;
use crate::frame::{Frame, Opcode, RESPONSE_BIT};
use crate::message::{ResponsePayload, decode_response};

/// Outstanding requests of one connection (owned by the connection's user).
#[derive(Debug, Default)]
pub struct PendingRequests {
    next_request_id: u64,
    expected: HashMap<u64, (Opcode, Vec<ResponsePayload>)>,
    completed: HashMap<u64, Result<Vec<ResponsePayload>, ClientError>>,
}

impl PendingRequests {
    /// Allocates an id for a request of `opcode`.
    pub fn register(&mut self, opcode: Opcode) -> u64 {
        self.next_request_id = self.next_request_id.wrapping_add(1);
        let request_id = self.next_request_id;
        self.expected.insert(request_id, (opcode, Vec::new()));
        request_id
    }

    pub fn outstanding(&self) -> usize {
        self.expected.len()
    }

    /// Takes a completed result, if its last frame arrived.
    pub fn take(&mut self, request_id: u64) -> Option<Result<Vec<ResponsePayload>, ClientError>> {
        self.completed.remove(&request_id)
    }

    /// Takes the partial payloads of a streamed response that arrived so far (its frames
    /// with the MORE flag), leaving the request outstanding.
    pub fn take_partial(&mut self, request_id: u64) -> Vec<ResponsePayload> {
        self.expected
            .get_mut(&request_id)
            .map(|(_, payloads)| std::mem::take(payloads))
            .unwrap_or_default()
    }

    pub fn is_known(&self, request_id: u64) -> bool {
        self.expected.contains_key(&request_id) || self.completed.contains_key(&request_id)
    }

    /// Accounts one response frame. An `Err` means the connection is unusable
    /// (the server lost framing or broke the protocol).
    pub fn on_frame(&mut self, frame: Frame) -> Result<(), ClientError> {
        frame.verify_checksum()?;
        let Some((opcode, mut payloads)) = self.expected.remove(&frame.request_id) else {
            // An error frame for a request we cannot identify: framing was lost.
            if frame.opcode == Opcode::Error.response_code() {
                let status = decode_response(Opcode::Error, frame.body)?.err();
                return Err(status.map_or_else(
                    || ClientError::Protocol("error frame".to_owned()),
                    ClientError::Status,
                ));
            }
            return Err(ClientError::Protocol(format!(
                "response for unknown request id {}",
                frame.request_id
            )));
        };
        let error_frame = frame.opcode == Opcode::Error.response_code();
        if !error_frame && frame.opcode != opcode.response_code() {
            return Err(ClientError::Protocol(format!(
                "response opcode {:#04x} for a request of opcode {:#04x}",
                frame.opcode, opcode as u8
            )));
        }
        debug_assert!(frame.opcode & RESPONSE_BIT != 0);
        let more = frame.has_more();
        match decode_response(if error_frame { Opcode::Error } else { opcode }, frame.body)? {
            Ok(payload) => {
                payloads.push(payload);
                if more {
                    self.expected.insert(frame.request_id, (opcode, payloads));
                } else {
                    self.completed.insert(frame.request_id, Ok(payloads));
                }
            }
            Err(status) => {
                self.completed
                    .insert(frame.request_id, Err(ClientError::Status(status)));
            }
        }
        Ok(())
    }
}
