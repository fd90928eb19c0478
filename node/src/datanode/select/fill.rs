//! `FILL(PREVIOUS | LINEAR | constant)`: null cells of a result filled column by column, in
//! time order, before the result is ordered and paged (IoTDB fills before `LIMIT`).
//!
//! `PREVIOUS` takes the latest earlier non-null value of the column; `LINEAR` interpolates
//! in time between the earlier and the later non-null value of a numeric column (integers
//! truncated) and leaves a cell without both neighbours null; a constant fills the columns
//! whose type it fits (a number the numeric columns, an integer also the integer ones, a
//! string the text columns, a boolean the boolean ones).

use iotdb_model::DataType;
use iotdb_net::{Status, Value as WireValue};

use crate::datanode::sql_exec::SQL_RESULT_ROWS_MAX;
use crate::sql::{Fill, Literal};

/// One row of a result: `Time` first, one cell per column.
type Row = Vec<Option<WireValue>>;

/// Fills the nulls of `rows` (time order, times in column 0) in columns `first..`.
pub fn fill(fill: &Fill, types: &[DataType], rows: &mut [Vec<Option<WireValue>>], first: usize) {
    match fill {
        Fill::Previous => fill_previous(rows, first, &mut vec![None; types.len()]),
        Fill::Linear => {
            for (column, data_type) in types.iter().enumerate().skip(first) {
                linear(*data_type, rows, column, None, None);
            }
        }
        Fill::Constant(literal) => {
            for (column, data_type) in types.iter().enumerate().skip(first) {
                let Some(value) = constant(literal, *data_type) else {
                    continue;
                };
                for row in rows.iter_mut() {
                    if row[column].is_none() {
                        row[column] = Some(value.clone());
                    }
                }
            }
        }
    }
}

/// `FILL(PREVIOUS)` of the columns `first..` of `rows` that follow earlier rows (a page
/// of a streamed result): `previous` holds each column's latest value before them and is
/// brought up to date.
pub fn fill_previous(
    rows: &mut [Vec<Option<WireValue>>],
    first: usize,
    previous: &mut [Option<WireValue>],
) {
    for row in rows {
        for (column, cell) in row.iter_mut().enumerate().skip(first) {
            match cell {
                Some(value) => previous[column] = Some(value.clone()),
                None => cell.clone_from(&previous[column]),
            }
        }
    }
}

/// `FILL(LINEAR)`, or any `FILL` but a constant in descending order, over a part of a
/// result read a page at a time: the rows whose fill waits for a value the part has not
/// given yet are held back, and only they, so memory is bounded by the longest gap rather
/// than by the part (at most [`SQL_RESULT_ROWS_MAX`] held rows: 303 beyond).
///
/// ```text
/// ascending  LINEAR    rows after a column's latest known value wait for its next one
/// descending PREVIOUS  rows before a column's oldest known value wait for an older one
/// descending LINEAR    ... when a newer value of the column exists (else nothing fills)
/// ```
///
/// Values filled are never taken as known: a row is filled from the part's own values
/// only, exactly as [`fill`] fills the whole part.
pub struct HeldFill {
    linear: bool,
    /// Pages come newest first (each older than the one before, in time order within).
    descending: bool,
    types: Vec<DataType>,
    first: usize,
    /// Rows not answered yet, in time order.
    held: Vec<Row>,
    /// Each column's nearest known number among the rows answered (the latest ascending,
    /// the oldest descending): the other end of a LINEAR gap.
    answered: Vec<Anchor>,
    /// Columns the current part never fills: no row waits for them.
    lacking: Vec<usize>,
}

impl HeldFill {
    /// A fill that holds rows for `how` in that order; `None` when each page can be filled
    /// as it comes (a constant, or `PREVIOUS` in ascending order, whose latest values carry).
    pub fn new(how: &Fill, types: &[DataType], first: usize, descending: bool) -> Option<Self> {
        let linear = match how {
            Fill::Linear => true,
            Fill::Previous if descending => false,
            Fill::Previous | Fill::Constant(_) => return None,
        };
        Some(HeldFill {
            linear,
            descending,
            types: types.to_vec(),
            first,
            held: Vec::new(),
            answered: vec![None; types.len()],
            lacking: Vec::new(),
        })
    }

    /// The columns the current part never fills (a device's missing series).
    pub fn set_lacking(&mut self, columns: &[usize]) {
        columns.clone_into(&mut self.lacking);
    }

    /// Takes the part's next rows (time order; newer than the rows before ascending, older
    /// descending) and answers those that can be filled now, filled, in time order; all of
    /// them once `part_done` (the next rows belong to another part).
    pub fn push(&mut self, rows: Vec<Row>, part_done: bool) -> Result<Vec<Row>, Status> {
        let out = if self.descending {
            let newer = std::mem::replace(&mut self.held, rows);
            self.held.extend(newer);
            self.answer_newest(part_done)
        } else {
            self.held.extend(rows);
            self.answer_oldest(part_done)
        };
        if part_done {
            self.answered.iter_mut().for_each(|a| *a = None);
        }
        if self.held.len() > SQL_RESULT_ROWS_MAX {
            return Err(Status::illegal_parameter(format!(
                "FILL waits for a value across more than {SQL_RESULT_ROWS_MAX} rows: narrow \
                 the time range"
            )));
        }
        Ok(out)
    }

    /// Ascending LINEAR: answers the held rows up to the first that waits for a column's
    /// next value.
    fn answer_oldest(&mut self, part_done: bool) -> Vec<Row> {
        let columns = self.first..self.types.len();
        let cut = if part_done {
            self.held.len()
        } else {
            columns
                .clone()
                .map(|c| match self.last_known(c, &self.held) {
                    Some(i) => i + 1,
                    None if self.answered[c].is_some() => 0,
                    None => self.held.len(),
                })
                .min()
                .unwrap_or(self.held.len())
        };
        let mut out: Vec<Row> = self.held.drain(..cut).collect();
        for c in columns {
            let before = self.answered[c];
            let after = self.held.iter().find_map(|row| known_number(row, c));
            if let Some(i) = self.last_known(c, &out) {
                self.answered[c] = known_number(&out[i], c);
            }
            linear(self.types[c], &mut out, c, before, after);
        }
        out
    }

    /// Descending: answers the held rows from the first whose every null can be filled
    /// from older rows held (or that no older row could fill).
    fn answer_newest(&mut self, part_done: bool) -> Vec<Row> {
        let columns = self.first..self.types.len();
        let cut = if part_done {
            0
        } else {
            columns
                .clone()
                .filter(|c| !self.lacking.contains(c))
                .map(|c| {
                    let oldest = self.held.iter().position(|row| self.is_known(row, c));
                    match oldest {
                        Some(i) => i,
                        // No newer number: a LINEAR gap here never fills.
                        None if self.linear && self.answered[c].is_none() => 0,
                        None => self.held.len(),
                    }
                })
                .max()
                .unwrap_or(0)
        };
        let mut out = self.held.split_off(cut);
        if self.linear {
            for c in columns {
                let before = self
                    .last_known(c, &self.held)
                    .and_then(|i| known_number(&self.held[i], c));
                let after = self.answered[c];
                if let Some(row) = out.iter().find(|row| self.is_known(row, c)) {
                    self.answered[c] = known_number(row, c);
                }
                linear(self.types[c], &mut out, c, before, after);
            }
        } else {
            let mut previous: Vec<Option<WireValue>> = (0..self.types.len())
                .map(|c| self.held.iter().rev().find_map(|row| row[c].clone()))
                .collect();
            fill_previous(&mut out, self.first, &mut previous);
        }
        out
    }

    /// Whether `row` has what this fill takes as a known value in column `c`.
    fn is_known(&self, row: &[Option<WireValue>], c: usize) -> bool {
        if self.linear {
            known_number(row, c).is_some()
        } else {
            row[c].is_some()
        }
    }

    /// The index of the latest row of `rows` with a known value in column `c`.
    fn last_known(&self, c: usize, rows: &[Row]) -> Option<usize> {
        rows.iter().rposition(|row| self.is_known(row, c))
    }
}

fn time_of(row: &[Option<WireValue>]) -> Option<i64> {
    match row.first() {
        Some(Some(WireValue::Int64(t))) => Some(*t),
        _ => None,
    }
}

fn number(value: &WireValue) -> Option<f64> {
    match value {
        WireValue::Int32(v) => Some(f64::from(*v)),
        WireValue::Int64(v) => Some(*v as f64),
        WireValue::Float(v) => Some(f64::from(*v)),
        WireValue::Double(v) => Some(*v),
        WireValue::Boolean(_) | WireValue::Text(_) => None,
    }
}

fn of_type(data_type: DataType, v: f64) -> Option<WireValue> {
    Some(match data_type {
        DataType::Int32 => WireValue::Int32(v as i32),
        DataType::Int64 => WireValue::Int64(v as i64),
        DataType::Float => WireValue::Float(v as f32),
        DataType::Double => WireValue::Double(v),
        _ => return None,
    })
}

/// A column's value known outside the rows being filled: its time and number.
type Anchor = Option<(i64, f64)>;

/// The time and numeric value of `row`'s cell in `column`, when it has one.
fn known_number(row: &[Option<WireValue>], column: usize) -> Anchor {
    Some((time_of(row)?, row[column].as_ref().and_then(number)?))
}

/// `LINEAR` of `column` in `rows` (time order), `before` and `after` the column's nearest
/// known values outside them (earlier and later rows of a streamed part).
fn linear(
    data_type: DataType,
    rows: &mut [Vec<Option<WireValue>>],
    column: usize,
    before: Anchor,
    after: Anchor,
) {
    // Indices shifted by one: `before` sits at 0, the rows at 1..=len, `after` past them.
    let inside = rows
        .iter()
        .enumerate()
        .filter_map(|(i, row)| Some((i + 1, known_number(row, column)?)));
    let known: Vec<(usize, (i64, f64))> = before
        .map(|a| (0, a))
        .into_iter()
        .chain(inside)
        .chain(after.map(|a| (rows.len() + 1, a)))
        .collect();
    for pair in known.windows(2) {
        let ((i1, (t1, v1)), (i2, (t2, v2))) = (pair[0], pair[1]);
        for row in rows.iter_mut().take(i2 - 1).skip(i1) {
            let Some(t) = time_of(row) else { continue };
            if row[column].is_none() && t2 != t1 {
                let v = v1 + (v2 - v1) * ((t - t1) as f64) / ((t2 - t1) as f64);
                row[column] = of_type(data_type, v);
            }
        }
    }
}

fn constant(literal: &Literal, data_type: DataType) -> Option<WireValue> {
    match (literal, data_type) {
        (Literal::Integer(i), DataType::Int32) => i32::try_from(*i).ok().map(WireValue::Int32),
        (Literal::Integer(i), DataType::Int64) => Some(WireValue::Int64(*i)),
        (Literal::Integer(i), t) => of_type(t, *i as f64),
        (Literal::Float(f), DataType::Float | DataType::Double) => of_type(data_type, *f),
        (Literal::Text(s), DataType::Text) => Some(WireValue::Text(bytes::Bytes::from(s.clone()))),
        (Literal::Boolean(b), DataType::Boolean) => Some(WireValue::Boolean(*b)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(cells: &[(i64, Option<f64>)]) -> Vec<Vec<Option<WireValue>>> {
        cells
            .iter()
            .map(|(t, v)| vec![Some(WireValue::Int64(*t)), v.map(WireValue::Double)])
            .collect()
    }

    fn column(rows: &[Vec<Option<WireValue>>]) -> Vec<Option<f64>> {
        rows.iter()
            .map(|r| r[1].as_ref().and_then(number))
            .collect()
    }

    #[test]
    fn previous_linear_and_constant() {
        let types = [DataType::Int64, DataType::Double];
        let data = [
            (1, None),
            (2, Some(1.0)),
            (3, None),
            (6, Some(4.0)),
            (7, None),
        ];
        let mut r = rows(&data);
        fill(&Fill::Previous, &types, &mut r, 1);
        assert_eq!(
            column(&r),
            [None, Some(1.0), Some(1.0), Some(4.0), Some(4.0)]
        );
        let mut r = rows(&data);
        fill(&Fill::Linear, &types, &mut r, 1);
        // t=3 lies a quarter of the way from (2, 1.0) to (6, 4.0).
        assert_eq!(column(&r), [None, Some(1.0), Some(1.75), Some(4.0), None]);
        let mut r = rows(&data);
        fill(&Fill::Constant(Literal::Integer(9)), &types, &mut r, 1);
        assert_eq!(
            column(&r),
            [Some(9.0), Some(1.0), Some(9.0), Some(4.0), Some(9.0)]
        );
        // A string does not fit a DOUBLE column.
        let mut r = rows(&data);
        fill(
            &Fill::Constant(Literal::Text("x".into())),
            &types,
            &mut r,
            1,
        );
        assert_eq!(column(&r), column(&rows(&data)));
    }

    /// Rows of `Time`, a DOUBLE, an INT64 and a TEXT column with nulls here and there
    /// (a pseudo-random pattern from `seed`), long gaps included.
    fn sparse_rows(seed: u64, count: i64) -> Vec<Row> {
        let mut state = seed;
        let mut next = move || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            state >> 33
        };
        (0..count)
            .map(|t| {
                let time = Some(WireValue::Int64(t * 3));
                let double =
                    (next() % 5 == 0).then(|| WireValue::Double((next() % 100) as f64 / 7.0));
                let int = (next() % 11 == 0).then(|| WireValue::Int64((next() % 1000) as i64));
                let text = (next() % 4 == 0).then(|| WireValue::Text(bytes::Bytes::from("x")));
                vec![time, double, int, text]
            })
            .collect()
    }

    /// A part filled page by page holding rows back answers what the part filled whole
    /// does, for pages of every size, in both orders.
    #[test]
    fn held_fill_answers_what_a_whole_fill_does() {
        let types = [
            DataType::Int64,
            DataType::Double,
            DataType::Int64,
            DataType::Text,
        ];
        for seed in 0..20 {
            let rows = sparse_rows(seed, 120);
            for (how, descending) in [
                (Fill::Linear, false),
                (Fill::Linear, true),
                (Fill::Previous, true),
            ] {
                let mut whole = rows.clone();
                fill(&how, &types, &mut whole, 1);
                for page in [1, 2, 7, 50, 200] {
                    let mut held = HeldFill::new(&how, &types, 1, descending).expect("held");
                    let mut got: Vec<Row> = Vec::new();
                    let pages: Vec<&[Row]> = rows.chunks(page).collect();
                    let count = pages.len();
                    for (i, chunk) in pages.iter().enumerate() {
                        let chunk = if descending {
                            pages[count - 1 - i]
                        } else {
                            chunk
                        };
                        let out = held.push(chunk.to_vec(), false).expect("push");
                        if descending {
                            got.splice(0..0, out);
                        } else {
                            got.extend(out);
                        }
                    }
                    let out = held.push(Vec::new(), true).expect("last");
                    if descending {
                        got.splice(0..0, out);
                    } else {
                        got.extend(out);
                    }
                    assert_eq!(
                        got, whole,
                        "{how:?} descending={descending} page={page} seed={seed}"
                    );
                }
            }
        }
    }

    /// A descending `FILL(PREVIOUS)` holds no row back for a column the part never fills
    /// (a device's missing series), and without that knowledge holds every row.
    #[test]
    fn held_fill_does_not_wait_for_a_column_the_part_lacks() {
        let types = [DataType::Int64, DataType::Double, DataType::Double];
        let page = |from: i64| -> Vec<Row> {
            (from..from + 10)
                .map(|t| {
                    vec![
                        Some(WireValue::Int64(t)),
                        Some(WireValue::Double(1.0)),
                        None,
                    ]
                })
                .collect()
        };
        let mut held = HeldFill::new(&Fill::Previous, &types, 1, true).expect("held");
        held.set_lacking(&[2]);
        assert_eq!(held.push(page(10), false).expect("push").len(), 10);
        assert_eq!(held.push(page(0), false).expect("push").len(), 10);
        let mut held = HeldFill::new(&Fill::Previous, &types, 1, true).expect("held");
        assert!(held.push(page(10), false).expect("push").is_empty());
        assert_eq!(held.push(page(0), true).expect("push").len(), 20);
    }
}
