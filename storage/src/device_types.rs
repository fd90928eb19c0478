//! [`MeasurementMap`]: a value per measurement of one device, kept for lookups on every
//! write — the types of [`DeviceTypes`] (the DataNode's schema cache, a region's own
//! types) and a memtable's series buffers.
//!
//! One device's entry keeps its names side by side in one buffer, in the order they were
//! added, where each ends in a second and their values in a third: a write whose columns
//! come in that order (a client sends a device's tablets with the same columns) is matched
//! column by column against consecutive bytes. With a thousand devices written in turn, a
//! device's entry is out of the CPU's caches by its next request; a map per device (a hash
//! table of `Arc<str>` keys) took a miss per column for its slots and one per name for its
//! key's bytes, where this takes a few for the whole entry.

use crate::hash::FastMap;
use crate::types::DataType;

/// Names at or under this count are looked up out of order by a scan of the buffer;
/// a device with more keeps a hash index of them.
const SCANNED_NAMES_MAX: usize = 32;

/// A value per measurement of one device, in the order the measurements were added.
#[derive(Clone, Debug)]
pub struct MeasurementMap<T> {
    /// Every name, one after another.
    names: String,
    /// Per name, in the order added: where it ends in `names` (kept apart from the values,
    /// so that matching a tablet's names reads a few consecutive bytes however large the
    /// values are).
    ends: Vec<u32>,
    /// Per name, in the order added, its value.
    values: Vec<T>,
    /// Name → position, for a device of more than [`SCANNED_NAMES_MAX`] names.
    index: Option<FastMap<Box<str>, u32>>,
}

impl<T> Default for MeasurementMap<T> {
    fn default() -> Self {
        MeasurementMap {
            names: String::new(),
            ends: Vec::new(),
            values: Vec::new(),
            index: None,
        }
    }
}

impl<T> MeasurementMap<T> {
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    fn name(&self, position: usize) -> &str {
        let start = match position {
            0 => 0,
            _ => self.ends[position - 1] as usize,
        };
        &self.names[start..self.ends[position] as usize]
    }

    fn position(&self, measurement: &str) -> Option<usize> {
        match &self.index {
            Some(index) => index.get(measurement).map(|&position| position as usize),
            None => (0..self.ends.len()).find(|&position| self.name(position) == measurement),
        }
    }

    /// The position of a tablet's column `column`: its name is first compared with the
    /// name added at that position, so a tablet in the order of the names needs no search.
    pub fn column_position(&self, column: usize, measurement: &str) -> Option<usize> {
        if column < self.ends.len() && self.name(column) == measurement {
            return Some(column);
        }
        self.position(measurement)
    }

    /// The value of `measurement`, if it has one.
    pub fn get(&self, measurement: &str) -> Option<&T> {
        self.position(measurement)
            .map(|position| &self.values[position])
    }

    /// The value at `position` (from [`Self::column_position`] or [`Self::push`]).
    pub fn at_mut(&mut self, position: usize) -> &mut T {
        &mut self.values[position]
    }

    /// Every name with its value, in the order they were added.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &T)> {
        (0..self.ends.len()).map(|position| (self.name(position), &self.values[position]))
    }

    /// Every value, in the order added.
    pub fn values(&self) -> impl Iterator<Item = &T> {
        self.values.iter()
    }

    /// Every value, in the order added, to change.
    pub fn values_mut(&mut self) -> impl Iterator<Item = &mut T> {
        self.values.iter_mut()
    }

    /// Adds `measurement`, which has no value yet (the caller looked), and returns its
    /// position.
    pub fn push(&mut self, measurement: &str, value: T) -> usize {
        debug_assert!(
            self.position(measurement).is_none(),
            "{measurement} is there"
        );
        let position = self.ends.len();
        self.names.push_str(measurement);
        let end = u32::try_from(self.names.len()).expect("a device's names fit 4 GiB");
        self.ends.push(end);
        self.values.push(value);
        match &mut self.index {
            Some(index) => {
                index.insert(measurement.into(), position as u32);
            }
            None if self.ends.len() > SCANNED_NAMES_MAX => {
                let index = (0..self.ends.len())
                    .map(|position| (self.name(position).into(), position as u32))
                    .collect();
                self.index = Some(index);
            }
            None => {}
        }
        position
    }
}

/// The types of one device's measurements.
#[derive(Clone, Debug, Default)]
pub struct DeviceTypes(MeasurementMap<DataType>);

impl DeviceTypes {
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The type of `measurement`, if known.
    pub fn get(&self, measurement: &str) -> Option<DataType> {
        self.0.get(measurement).copied()
    }

    /// [`Self::get`] of a tablet's column `column` (see [`MeasurementMap::column_position`]).
    pub fn get_column(&self, column: usize, measurement: &str) -> Option<DataType> {
        self.0
            .column_position(column, measurement)
            .map(|position| self.0.values[position])
    }

    /// Every name with its type, in the order they were added.
    pub fn iter(&self) -> impl Iterator<Item = (&str, DataType)> {
        self.0.iter().map(|(name, &data_type)| (name, data_type))
    }

    /// Records `measurement`'s type (replacing the one recorded, if any).
    pub fn insert(&mut self, measurement: &str, data_type: DataType) {
        match self.0.position(measurement) {
            Some(position) => *self.0.at_mut(position) = data_type,
            None => {
                self.0.push(measurement, data_type);
            }
        }
    }

    /// The type recorded for `measurement`; `data_type`, recorded now, if there was none.
    pub fn get_or_insert(&mut self, measurement: &str, data_type: DataType) -> DataType {
        match self.0.position(measurement) {
            Some(position) => self.0.values[position],
            None => {
                self.0.push(measurement, data_type);
                data_type
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Values come back by name and by column, in the order added, from a scanned map and
    /// one with an index; `push` gives positions that `at_mut` and `column_position` agree
    /// on, and the values change in place.
    #[test]
    fn a_measurement_map_finds_values_by_column_and_by_name() {
        for count in [1, SCANNED_NAMES_MAX, SCANNED_NAMES_MAX + 1, 100] {
            let mut map: MeasurementMap<Vec<usize>> = MeasurementMap::default();
            for i in 0..count {
                assert_eq!(map.column_position(i, &format!("m{i}")), None);
                assert_eq!(map.push(&format!("m{i}"), vec![i]), i);
            }
            assert_eq!(map.len(), count);
            for i in 0..count {
                let name = format!("m{i}");
                assert_eq!(map.column_position(i, &name), Some(i));
                assert_eq!(map.column_position(count - 1 - i, &name), Some(i));
                assert_eq!(map.column_position(count + 3, &name), Some(i));
                map.at_mut(i).push(i * 10);
                assert_eq!(map.get(&name), Some(&vec![i, i * 10]));
            }
            assert_eq!(map.get("m"), None);
            assert_eq!(map.column_position(0, "absent"), None);
            let names: Vec<&str> = map.iter().map(|(name, _)| name).collect();
            let expected: Vec<String> = (0..count).map(|i| format!("m{i}")).collect();
            assert_eq!(names, expected);
            for value in map.values_mut() {
                value.clear();
            }
            assert!(map.values().all(Vec::is_empty));
        }
    }

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
