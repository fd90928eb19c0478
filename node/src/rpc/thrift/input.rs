//! Thrift input protocols (binary and compact) that read one received frame and check
//! every length against the bytes that remain.
//!
//! Why not the `thrift` crate's `TBinaryInputProtocol` / `TCompactInputProtocol`: version
//! 0.17 allocates `vec![0; length]` from a string's declared length before reading it, and
//! a negative length becomes a huge `usize`, so one hostile frame aborts the process
//! (allocation failure is not a panic that can be caught). The generated structs also call
//! `Vec::with_capacity(declared_size)`. These readers implement the crate's
//! [`TInputProtocol`] trait, so the generated code is unchanged, and refuse:
//!
//! - a negative size or a size whose elements cannot fit in the remaining bytes (each
//!   element needs at least its minimum encoded size);
//! - more than [`COLLECTION_ELEMENTS_MAX`] list/set/map elements in one message, which bounds
//!   the memory the `Vec`s of a frame can reserve beyond the frame itself;
//! - structs nested deeper than [`STRUCT_DEPTH_MAX`].
//!
//! The writers are the crate's own (`TBinaryOutputProtocol`, `TCompactOutputProtocol`): we
//! control what they write.

use thrift::protocol::{
    TFieldIdentifier, TInputProtocol, TListIdentifier, TMapIdentifier, TMessageIdentifier,
    TMessageType, TSetIdentifier, TStructIdentifier, TType,
};
use thrift::{Error, ProtocolError, ProtocolErrorKind};

/// Most collection elements (summed over every list, set and map) one message may declare.
///
/// Why 4 Mi: the decoded form of an element can be larger than its encoding (a one-byte
/// compact string becomes a 24-byte `String`), so this caps what one frame can make us
/// reserve at about 100 MiB on top of the frame; a legitimate request is far below it (a
/// tablet is a handful of lists; 100,000 records of 10 measurements are 1.2 Mi elements).
pub const COLLECTION_ELEMENTS_MAX: usize = 4 * 1024 * 1024;

/// Deepest struct nesting accepted (the crate's own skip limit is 64).
pub const STRUCT_DEPTH_MAX: usize = 64;

/// The two Thrift protocols IoTDB clients speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThriftProtocol {
    /// `TBinaryProtocol`, strict (version word `0x8001`): the clients' default.
    Binary,
    /// `TCompactProtocol` (first byte `0x82`): `enable_rpc_compression=True`.
    Compact,
}

/// Reads one message from `data` (a whole frame body).
#[derive(Debug)]
pub struct FrameInput<'a> {
    protocol: ThriftProtocol,
    data: &'a [u8],
    position: usize,
    collection_elements: usize,
    struct_depth: usize,
    /// Compact: the last field id of each open struct.
    last_field_ids: Vec<i16>,
    last_field_id: i16,
    /// Compact: a bool field's value travels in its field header.
    pending_bool: Option<bool>,
}

fn invalid(message: impl Into<String>) -> Error {
    Error::Protocol(ProtocolError::new(
        ProtocolErrorKind::InvalidData,
        message.into(),
    ))
}

fn size_error(kind: ProtocolErrorKind, message: impl Into<String>) -> Error {
    Error::Protocol(ProtocolError::new(kind, message.into()))
}

impl<'a> FrameInput<'a> {
    pub fn new(protocol: ThriftProtocol, data: &'a [u8]) -> Self {
        Self {
            protocol,
            data,
            position: 0,
            collection_elements: 0,
            struct_depth: 0,
            last_field_ids: Vec::new(),
            last_field_id: 0,
            pending_bool: None,
        }
    }

    /// Bytes not read yet.
    pub fn remaining(&self) -> usize {
        self.data.len() - self.position
    }

    fn take(&mut self, length: usize) -> thrift::Result<&'a [u8]> {
        if length > self.remaining() {
            return Err(invalid(format!(
                "{length} bytes declared, {} remain in the frame",
                self.remaining()
            )));
        }
        let bytes = &self.data[self.position..self.position + length];
        self.position += length;
        Ok(bytes)
    }

    fn array<const N: usize>(&mut self) -> thrift::Result<[u8; N]> {
        let bytes = self.take(N)?;
        let mut array = [0u8; N];
        array.copy_from_slice(bytes);
        Ok(array)
    }

    fn byte(&mut self) -> thrift::Result<u8> {
        Ok(self.array::<1>()?[0])
    }

    /// Compact's unsigned LEB128 varint, at most 10 bytes.
    fn varint(&mut self) -> thrift::Result<u64> {
        let mut value = 0u64;
        for shift in (0..70).step_by(7) {
            let byte = self.byte()?;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(invalid("varint longer than 10 bytes"))
    }

    fn zigzag(&mut self) -> thrift::Result<i64> {
        let raw = self.varint()?;
        Ok((raw >> 1) as i64 ^ -((raw & 1) as i64))
    }

    /// A byte-string length, checked against what remains.
    fn length(&mut self) -> thrift::Result<usize> {
        let length = match self.protocol {
            ThriftProtocol::Binary => i64::from(i32::from_be_bytes(self.array()?)),
            ThriftProtocol::Compact => {
                i64::try_from(self.varint()?).map_err(|_| invalid("length too large"))?
            }
        };
        if length < 0 {
            return Err(size_error(
                ProtocolErrorKind::NegativeSize,
                format!("negative length {length}"),
            ));
        }
        let length = length as usize;
        if length > self.remaining() {
            return Err(size_error(
                ProtocolErrorKind::SizeLimit,
                format!(
                    "length {length} exceeds the {} bytes left in the frame",
                    self.remaining()
                ),
            ));
        }
        Ok(length)
    }

    /// Checks a collection's declared size: not negative, its elements can fit in what
    /// remains, and the message's element budget holds.
    fn collection_size(&mut self, size: i64, element_bytes_min: usize) -> thrift::Result<i32> {
        if size < 0 {
            return Err(size_error(
                ProtocolErrorKind::NegativeSize,
                format!("negative collection size {size}"),
            ));
        }
        let size = usize::try_from(size).map_err(|_| invalid("collection too large"))?;
        if size.saturating_mul(element_bytes_min) > self.remaining() {
            return Err(size_error(
                ProtocolErrorKind::SizeLimit,
                format!(
                    "{size} elements cannot fit in the {} bytes left in the frame",
                    self.remaining()
                ),
            ));
        }
        self.collection_elements += size;
        if self.collection_elements > COLLECTION_ELEMENTS_MAX {
            return Err(size_error(
                ProtocolErrorKind::SizeLimit,
                format!("over {COLLECTION_ELEMENTS_MAX} collection elements in one message"),
            ));
        }
        i32::try_from(size).map_err(|_| invalid("collection too large"))
    }

    /// The fewest bytes one element of `element_type` takes in this protocol.
    fn element_bytes_min(&self, element_type: TType) -> usize {
        match (self.protocol, element_type) {
            (_, TType::Double) => 8,
            (ThriftProtocol::Binary, TType::I16) => 2,
            (ThriftProtocol::Binary, TType::I32) => 4,
            (ThriftProtocol::Binary, TType::I64) => 8,
            (ThriftProtocol::Binary, TType::String | TType::Utf7 | TType::Utf8) => 4,
            (ThriftProtocol::Binary, TType::Map) => 4,
            (ThriftProtocol::Binary, TType::List | TType::Set) => 5,
            _ => 1,
        }
    }

    fn binary_type(code: u8) -> thrift::Result<TType> {
        Ok(match code {
            0 => TType::Stop,
            2 => TType::Bool,
            3 => TType::I08,
            4 => TType::Double,
            6 => TType::I16,
            8 => TType::I32,
            10 => TType::I64,
            11 => TType::String,
            12 => TType::Struct,
            13 => TType::Map,
            14 => TType::Set,
            15 => TType::List,
            other => return Err(invalid(format!("unknown binary type code {other}"))),
        })
    }

    fn compact_type(code: u8) -> thrift::Result<TType> {
        Ok(match code {
            0 => TType::Stop,
            1 | 2 => TType::Bool,
            3 => TType::I08,
            4 => TType::I16,
            5 => TType::I32,
            6 => TType::I64,
            7 => TType::Double,
            8 => TType::String,
            9 => TType::List,
            10 => TType::Set,
            11 => TType::Map,
            12 => TType::Struct,
            other => return Err(invalid(format!("unknown compact type code {other}"))),
        })
    }

    fn element_type(&self, code: u8) -> thrift::Result<TType> {
        match self.protocol {
            ThriftProtocol::Binary => Self::binary_type(code),
            ThriftProtocol::Compact => Self::compact_type(code),
        }
    }

    fn read_collection_begin(&mut self) -> thrift::Result<(TType, i32)> {
        match self.protocol {
            ThriftProtocol::Binary => {
                let element_type = Self::binary_type(self.byte()?)?;
                let size = i64::from(i32::from_be_bytes(self.array()?));
                let minimum = self.element_bytes_min(element_type);
                Ok((element_type, self.collection_size(size, minimum)?))
            }
            ThriftProtocol::Compact => {
                let header = self.byte()?;
                let element_type = Self::compact_type(header & 0x0f)?;
                let short_size = header >> 4;
                let size = if short_size == 0x0f {
                    i64::try_from(self.varint()?).map_err(|_| invalid("size too large"))?
                } else {
                    i64::from(short_size)
                };
                let minimum = self.element_bytes_min(element_type);
                Ok((element_type, self.collection_size(size, minimum)?))
            }
        }
    }
}

impl TInputProtocol for FrameInput<'_> {
    fn read_message_begin(&mut self) -> thrift::Result<TMessageIdentifier> {
        match self.protocol {
            ThriftProtocol::Binary => {
                let word = u32::from_be_bytes(self.array()?);
                if word & 0xffff_0000 != 0x8001_0000 {
                    return Err(size_error(
                        ProtocolErrorKind::BadVersion,
                        format!("not a strict binary message header: {word:#010x}"),
                    ));
                }
                let message_type = TMessageType::try_from((word & 0xff) as u8)?;
                let name = self.read_string()?;
                let sequence = self.read_i32()?;
                Ok(TMessageIdentifier::new(name, message_type, sequence))
            }
            ThriftProtocol::Compact => {
                if self.byte()? != 0x82 {
                    return Err(size_error(
                        ProtocolErrorKind::BadVersion,
                        "not a compact message header",
                    ));
                }
                let version_and_type = self.byte()?;
                if version_and_type & 0x1f != 1 {
                    return Err(size_error(
                        ProtocolErrorKind::BadVersion,
                        format!("compact protocol version {}", version_and_type & 0x1f),
                    ));
                }
                let message_type = TMessageType::try_from(version_and_type >> 5)?;
                let sequence = self.varint()? as u32 as i32;
                let name = self.read_string()?;
                Ok(TMessageIdentifier::new(name, message_type, sequence))
            }
        }
    }

    fn read_message_end(&mut self) -> thrift::Result<()> {
        Ok(())
    }

    fn read_struct_begin(&mut self) -> thrift::Result<Option<TStructIdentifier>> {
        self.struct_depth += 1;
        if self.struct_depth > STRUCT_DEPTH_MAX {
            return Err(size_error(
                ProtocolErrorKind::DepthLimit,
                format!("structs nested deeper than {STRUCT_DEPTH_MAX}"),
            ));
        }
        self.last_field_ids.push(self.last_field_id);
        self.last_field_id = 0;
        Ok(None)
    }

    fn read_struct_end(&mut self) -> thrift::Result<()> {
        self.struct_depth = self.struct_depth.saturating_sub(1);
        self.last_field_id = self.last_field_ids.pop().unwrap_or(0);
        Ok(())
    }

    fn read_field_begin(&mut self) -> thrift::Result<TFieldIdentifier> {
        match self.protocol {
            ThriftProtocol::Binary => {
                let field_type = Self::binary_type(self.byte()?)?;
                let id = if field_type == TType::Stop {
                    None
                } else {
                    Some(i16::from_be_bytes(self.array()?))
                };
                Ok(
                    TFieldIdentifier::new::<Option<String>, String, Option<i16>>(
                        None, field_type, id,
                    ),
                )
            }
            ThriftProtocol::Compact => {
                let header = self.byte()?;
                let code = header & 0x0f;
                let field_type = Self::compact_type(code)?;
                if field_type == TType::Stop {
                    return Ok(
                        TFieldIdentifier::new::<Option<String>, String, Option<i16>>(
                            None,
                            TType::Stop,
                            None,
                        ),
                    );
                }
                if field_type == TType::Bool {
                    self.pending_bool = Some(code == 1);
                }
                let delta = header >> 4;
                self.last_field_id = if delta == 0 {
                    let id = self.zigzag()?;
                    i16::try_from(id).map_err(|_| invalid(format!("field id {id}")))?
                } else {
                    self.last_field_id
                        .checked_add(i16::from(delta))
                        .ok_or_else(|| invalid("field id overflow"))?
                };
                Ok(
                    TFieldIdentifier::new::<Option<String>, String, Option<i16>>(
                        None,
                        field_type,
                        Some(self.last_field_id),
                    ),
                )
            }
        }
    }

    fn read_field_end(&mut self) -> thrift::Result<()> {
        Ok(())
    }

    fn read_bool(&mut self) -> thrift::Result<bool> {
        if let Some(value) = self.pending_bool.take() {
            return Ok(value);
        }
        match self.protocol {
            ThriftProtocol::Binary => Ok(self.byte()? != 0),
            // A bool inside a list: one byte, 1 = true (2 or 0 = false).
            ThriftProtocol::Compact => Ok(self.byte()? == 1),
        }
    }

    fn read_bytes(&mut self) -> thrift::Result<Vec<u8>> {
        let length = self.length()?;
        Ok(self.take(length)?.to_vec())
    }

    fn read_i8(&mut self) -> thrift::Result<i8> {
        Ok(self.byte()? as i8)
    }

    fn read_i16(&mut self) -> thrift::Result<i16> {
        match self.protocol {
            ThriftProtocol::Binary => Ok(i16::from_be_bytes(self.array()?)),
            ThriftProtocol::Compact => {
                let value = self.zigzag()?;
                i16::try_from(value).map_err(|_| invalid(format!("i16 out of range: {value}")))
            }
        }
    }

    fn read_i32(&mut self) -> thrift::Result<i32> {
        match self.protocol {
            ThriftProtocol::Binary => Ok(i32::from_be_bytes(self.array()?)),
            ThriftProtocol::Compact => {
                let value = self.zigzag()?;
                i32::try_from(value).map_err(|_| invalid(format!("i32 out of range: {value}")))
            }
        }
    }

    fn read_i64(&mut self) -> thrift::Result<i64> {
        match self.protocol {
            ThriftProtocol::Binary => Ok(i64::from_be_bytes(self.array()?)),
            ThriftProtocol::Compact => self.zigzag(),
        }
    }

    fn read_double(&mut self) -> thrift::Result<f64> {
        match self.protocol {
            ThriftProtocol::Binary => Ok(f64::from_be_bytes(self.array()?)),
            ThriftProtocol::Compact => Ok(f64::from_le_bytes(self.array()?)),
        }
    }

    fn read_string(&mut self) -> thrift::Result<String> {
        let length = self.length()?;
        let bytes = self.take(length)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| invalid("string is not UTF-8"))
    }

    fn read_list_begin(&mut self) -> thrift::Result<TListIdentifier> {
        let (element_type, size) = self.read_collection_begin()?;
        Ok(TListIdentifier::new(element_type, size))
    }

    fn read_list_end(&mut self) -> thrift::Result<()> {
        Ok(())
    }

    fn read_set_begin(&mut self) -> thrift::Result<TSetIdentifier> {
        let (element_type, size) = self.read_collection_begin()?;
        Ok(TSetIdentifier::new(element_type, size))
    }

    fn read_set_end(&mut self) -> thrift::Result<()> {
        Ok(())
    }

    fn read_map_begin(&mut self) -> thrift::Result<TMapIdentifier> {
        let (key_type, value_type, size) = match self.protocol {
            ThriftProtocol::Binary => {
                let key_type = Self::binary_type(self.byte()?)?;
                let value_type = Self::binary_type(self.byte()?)?;
                let size = i64::from(i32::from_be_bytes(self.array()?));
                (Some(key_type), Some(value_type), size)
            }
            ThriftProtocol::Compact => {
                let size = i64::try_from(self.varint()?).map_err(|_| invalid("size too large"))?;
                if size == 0 {
                    (None, None, 0)
                } else {
                    let types = self.byte()?;
                    (
                        Some(self.element_type(types >> 4)?),
                        Some(self.element_type(types & 0x0f)?),
                        size,
                    )
                }
            }
        };
        let minimum = key_type.map_or(1, |t| self.element_bytes_min(t))
            + value_type.map_or(0, |t| self.element_bytes_min(t));
        let size = self.collection_size(size, minimum)?;
        Ok(TMapIdentifier::new(key_type, value_type, size))
    }

    fn read_map_end(&mut self) -> thrift::Result<()> {
        Ok(())
    }

    fn read_byte(&mut self) -> thrift::Result<u8> {
        self.byte()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use thrift::protocol::{
        TBinaryOutputProtocol, TCompactOutputProtocol, TOutputProtocol, TSerializable,
    };

    fn write_sample(protocol: &mut dyn TOutputProtocol) {
        protocol
            .write_message_begin(&TMessageIdentifier::new("call", TMessageType::Call, 7))
            .unwrap();
        protocol
            .write_struct_begin(&TStructIdentifier::new("s"))
            .unwrap();
        protocol
            .write_field_begin(&TFieldIdentifier::new("a", TType::Bool, 1))
            .unwrap();
        protocol.write_bool(true).unwrap();
        protocol
            .write_field_begin(&TFieldIdentifier::new("b", TType::I64, 20))
            .unwrap();
        protocol.write_i64(-5).unwrap();
        protocol
            .write_field_begin(&TFieldIdentifier::new("c", TType::List, 21))
            .unwrap();
        protocol
            .write_list_begin(&TListIdentifier::new(TType::String, 2))
            .unwrap();
        protocol.write_string("x").unwrap();
        protocol.write_string("yz").unwrap();
        protocol.write_field_stop().unwrap();
        protocol.write_struct_end().unwrap();
        protocol.write_message_end().unwrap();
        protocol.flush().unwrap();
    }

    fn read_sample(protocol: ThriftProtocol, bytes: &[u8]) {
        let mut input = FrameInput::new(protocol, bytes);
        let message = input.read_message_begin().unwrap();
        assert_eq!(message.name, "call");
        assert_eq!(message.sequence_number, 7);
        input.read_struct_begin().unwrap();
        let field = input.read_field_begin().unwrap();
        assert_eq!((field.field_type, field.id), (TType::Bool, Some(1)));
        assert!(input.read_bool().unwrap());
        let field = input.read_field_begin().unwrap();
        assert_eq!((field.field_type, field.id), (TType::I64, Some(20)));
        assert_eq!(input.read_i64().unwrap(), -5);
        let field = input.read_field_begin().unwrap();
        assert_eq!(field.id, Some(21));
        let list = input.read_list_begin().unwrap();
        assert_eq!(list.size, 2);
        assert_eq!(input.read_string().unwrap(), "x");
        assert_eq!(input.read_string().unwrap(), "yz");
        assert_eq!(input.read_field_begin().unwrap().field_type, TType::Stop);
        input.read_struct_end().unwrap();
        assert_eq!(input.remaining(), 0);
    }

    #[test]
    fn reads_what_the_crate_writes() {
        let mut binary = Vec::new();
        write_sample(&mut TBinaryOutputProtocol::new(&mut binary, true));
        read_sample(ThriftProtocol::Binary, &binary);
        let mut compact = Vec::new();
        write_sample(&mut TCompactOutputProtocol::new(&mut compact));
        read_sample(ThriftProtocol::Compact, &compact);
    }

    #[test]
    fn refuses_lengths_past_the_frame() {
        // A string of 2 GiB declared in a 10-byte frame.
        let bytes = [0x7f, 0xff, 0xff, 0xff, 1, 2, 3, 4, 5, 6];
        let mut input = FrameInput::new(ThriftProtocol::Binary, &bytes);
        assert!(input.read_string().is_err());
        let negative = [0xff, 0xff, 0xff, 0xff];
        let mut input = FrameInput::new(ThriftProtocol::Binary, &negative);
        assert!(input.read_bytes().is_err());
        // A list of 1e9 i64 in a few bytes.
        let list = [10, 0x3b, 0x9a, 0xca, 0x00, 0, 0];
        let mut input = FrameInput::new(ThriftProtocol::Binary, &list);
        assert!(input.read_list_begin().is_err());
    }

    #[test]
    fn any_bytes_give_a_value_or_an_error() {
        use proptest::prelude::*;
        proptest!(|(bytes in proptest::collection::vec(any::<u8>(), 0..256), compact: bool)| {
            let protocol = if compact { ThriftProtocol::Compact } else { ThriftProtocol::Binary };
            let mut input = FrameInput::new(protocol, &bytes);
            if input.read_message_begin().is_ok() {
                let _ = crate::rpc::thrift::generated::TSInsertTabletsReq::read_from_in_protocol(&mut input);
            }
            let mut input = FrameInput::new(protocol, &bytes);
            let _ = input.skip(TType::Struct);
        });
    }
}
