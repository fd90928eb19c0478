//! [`DeviceTypes`]: the types of one device's measurements, kept for a check on every
//! write (the DataNode's schema cache, a region's own types).
//!
//! One device's entry keeps its names side by side in one buffer, in the order they were
//! added, with their types beside them in a second: a write whose columns come in that
//! order (a client sends a device's tablets with the same columns) is checked column by
//! column against consecutive bytes. With a thousand devices written in turn, a device's
//! entry is out of the CPU's caches by its next request; a map per device (a hash table of
//! `Arc<str>` keys) took a miss per column for its slots and one per name for its key's
//! bytes, where this takes a few for the whole entry.

use crate::hash::FastMap;
use crate::types::DataType;

/// Names at or under this count are looked up out of order by a scan of the buffer;
/// a device with more keeps a hash index of them.
const SCANNED_NAMES_MAX: usize = 32;

/// The types of one device's measurements.
#[derive(Clone, Debug, Default)]
pub struct DeviceTypes {
    /// Every name, one after another.
    names: String,
    /// Per name, in the order added: where it ends in `names`, and its type.
    entries: Vec<(u32, DataType)>,
    /// Name → position, for a device of more than [`SCANNED_NAMES_MAX`] names.
    index: Option<FastMap<Box<str>, u32>>,
}

impl DeviceTypes {
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    fn name(&self, position: usize) -> &str {
        let start = match position {
            0 => 0,
            _ => self.entries[position - 1].0 as usize,
        };
        &self.names[start..self.entries[position].0 as usize]
    }

    fn position(&self, measurement: &str) -> Option<usize> {
        match &self.index {
            Some(index) => index.get(measurement).map(|&position| position as usize),
            None => (0..self.entries.len()).find(|&position| self.name(position) == measurement),
        }
    }

    /// The type of `measurement`, if known.
    pub fn get(&self, measurement: &str) -> Option<DataType> {
        self.position(measurement)
            .map(|position| self.entries[position].1)
    }

    /// [`Self::get`] of a tablet's column `column`: its name is first compared with the
    /// name added at that position, so a tablet in the order of the names needs no search.
    pub fn get_column(&self, column: usize, measurement: &str) -> Option<DataType> {
        if column < self.entries.len() && self.name(column) == measurement {
            return Some(self.entries[column].1);
        }
        self.get(measurement)
    }

    /// Every name with its type, in the order they were added.
    pub fn iter(&self) -> impl Iterator<Item = (&str, DataType)> {
        (0..self.entries.len()).map(|position| (self.name(position), self.entries[position].1))
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Records `measurement`'s type (replacing the one recorded, if any).
    pub fn insert(&mut self, measurement: &str, data_type: DataType) {
        match self.position(measurement) {
            Some(position) => self.entries[position].1 = data_type,
            None => self.push(measurement, data_type),
        }
    }

    /// The type recorded for `measurement`; `data_type`, recorded now, if there was none.
    pub fn get_or_insert(&mut self, measurement: &str, data_type: DataType) -> DataType {
        match self.position(measurement) {
            Some(position) => self.entries[position].1,
            None => {
                self.push(measurement, data_type);
                data_type
            }
        }
    }

    /// Adds a name not recorded yet.
    fn push(&mut self, measurement: &str, data_type: DataType) {
        let position = self.entries.len();
        self.names.push_str(measurement);
        let end = u32::try_from(self.names.len()).expect("a device's names fit 4 GiB");
        self.entries.push((end, data_type));
        match &mut self.index {
            Some(index) => {
                index.insert(measurement.into(), position as u32);
            }
            None if self.entries.len() > SCANNED_NAMES_MAX => {
                let index = (0..self.entries.len())
                    .map(|position| (self.name(position).into(), position as u32))
                    .collect();
                self.index = Some(index);
            }
            None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Names of every length (empty included) come back with their types, by name and by
    /// column (in the cached order, out of it, absent), across the switch to an index, and
    /// a name cached again takes its new type.
    #[test]
    fn cached_types_come_back_by_name_and_by_column() {
        for count in [0, 1, 3, SCANNED_NAMES_MAX, SCANNED_NAMES_MAX + 1, 300] {
            let mut types = DeviceTypes::default();
            let names: Vec<String> = (0..count)
                .map(|i| match i % 3 {
                    0 => format!("s{i}"),
                    1 => format!("temperature_{i}"),
                    _ => format!("温{i}"),
                })
                .collect();
            let type_of = |i: usize| DataType::ALL[i % DataType::ALL.len()];
            for (i, name) in names.iter().enumerate() {
                types.insert(name, type_of(i));
            }
            assert_eq!(types.len(), count);
            for (i, name) in names.iter().enumerate() {
                assert_eq!(types.get(name), Some(type_of(i)), "{count}: {name}");
                assert_eq!(types.get_column(i, name), Some(type_of(i)));
                // Out of order: found by its name wherever it is.
                assert_eq!(types.get_column(count - 1 - i, name), Some(type_of(i)));
                assert_eq!(types.get_column(count + 5, name), Some(type_of(i)));
            }
            assert_eq!(types.get("absent"), None);
            assert_eq!(types.get_column(0, "absent"), None);
            // A prefix of a cached name is another name.
            assert_eq!(types.get("s"), None);
            if let Some(first) = names.first() {
                types.insert(first, DataType::Text);
                assert_eq!(types.get(first), Some(DataType::Text));
                assert_eq!(types.len(), count);
                // `get_or_insert` keeps a recorded type and records a new name.
                assert_eq!(types.get_or_insert(first, DataType::Int32), DataType::Text);
                assert_eq!(types.len(), count);
            }
            assert_eq!(types.get_or_insert("new", DataType::Int32), DataType::Int32);
            assert_eq!(types.get("new"), Some(DataType::Int32));
            assert_eq!(types.len(), count + 1);
        }
    }
}
