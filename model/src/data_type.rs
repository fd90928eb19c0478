//! IoTDB's data types, as the wire carries them and the engine stores them.
//!
//! The discriminant of each variant is IoTDB's `TSDataType` code (BOOLEAN 0 … TEXT 5), so
//! a type is written to the wire, the WAL and sealed files as `data_type.code()` and read
//! back with [`DataType::from_code`]. IoTDB 1.3 added TIMESTAMP (8), DATE (9), BLOB (10)
//! and STRING (11); the engine does not store them, so they are not variants here (the
//! SQL parser knows their names and the server refuses them with UNSUPPORTED_OPERATION).

use std::fmt;

/// A series' (or a column's) data type; the discriminant is IoTDB's `TSDataType` code.
/// Serde writes the variant's name (node-to-node control messages).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[repr(u8)]
pub enum DataType {
    Boolean = 0,
    Int32 = 1,
    Int64 = 2,
    Float = 3,
    Double = 4,
    Text = 5,
}

impl DataType {
    /// All types, in code order.
    pub const ALL: [DataType; 6] = [
        DataType::Boolean,
        DataType::Int32,
        DataType::Int64,
        DataType::Float,
        DataType::Double,
        DataType::Text,
    ];

    /// The type with IoTDB's code `code`, or `None`.
    pub fn from_code(code: u8) -> Option<DataType> {
        DataType::ALL.get(usize::from(code)).copied()
    }

    /// IoTDB's code of this type.
    pub fn code(self) -> u8 {
        self as u8
    }

    /// IoTDB's upper-case name of this type (`INT64`), as result sets print it.
    pub fn name(self) -> &'static str {
        match self {
            DataType::Boolean => "BOOLEAN",
            DataType::Int32 => "INT32",
            DataType::Int64 => "INT64",
            DataType::Float => "FLOAT",
            DataType::Double => "DOUBLE",
            DataType::Text => "TEXT",
        }
    }

    /// The type named `name` (case-insensitive), or `None`.
    pub fn from_name(name: &str) -> Option<DataType> {
        DataType::ALL
            .into_iter()
            .find(|data_type| data_type.name().eq_ignore_ascii_case(name))
    }

    /// Bytes per value in a fixed-width column; `None` for TEXT.
    pub fn fixed_width_bytes(self) -> Option<usize> {
        match self {
            DataType::Boolean => Some(1),
            DataType::Int32 | DataType::Float => Some(4),
            DataType::Int64 | DataType::Double => Some(8),
            DataType::Text => None,
        }
    }

    /// Whether sum, avg, min and max are defined on this type.
    pub fn is_numeric(self) -> bool {
        matches!(
            self,
            DataType::Int32 | DataType::Int64 | DataType::Float | DataType::Double
        )
    }
}

impl fmt::Display for DataType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_iotdb_ones_and_round_trip() {
        let codes: Vec<u8> = DataType::ALL.iter().map(|t| t.code()).collect();
        assert_eq!(codes, [0, 1, 2, 3, 4, 5]);
        for data_type in DataType::ALL {
            assert_eq!(DataType::from_code(data_type.code()), Some(data_type));
            assert_eq!(DataType::from_name(data_type.name()), Some(data_type));
            assert_eq!(
                DataType::from_name(&data_type.name().to_lowercase()),
                Some(data_type)
            );
        }
        assert_eq!(DataType::from_code(6), None);
        assert_eq!(DataType::from_code(8), None);
        assert_eq!(DataType::from_name("STRING"), None);
        assert_eq!(DataType::Int64.to_string(), "INT64");
    }
}
