//! `FILL(PREVIOUS | LINEAR | constant)`: null cells of a result filled column by column, in
//! time order, before the result is ordered and paged (IoTDB fills before `LIMIT`).
//!
//! `PREVIOUS` takes the latest earlier non-null value of the column (with a bound,
//! `FILL(PREVIOUS, 2m)`, only one at most that much older than the row, as IoTDB);
//! `LINEAR` interpolates
//! in time between the earlier and the later non-null value of a numeric column (integers
//! truncated) and leaves a cell without both neighbours null; a constant fills the columns
//! whose type it fits by IoTDB's table (an integer the numeric columns, a float the FLOAT
//! and DOUBLE ones, a boolean the BOOLEAN ones, and any constant the TEXT ones, as text).

use iotdb_model::DataType;
use iotdb_net::{Status, Value as WireValue};

use crate::datanode::sql_exec::SQL_RESULT_ROWS_MAX;
use crate::sql::{Fill, Literal};

/// One row of a result: `Time` first, one cell per column.
type Row = Vec<Option<WireValue>>;

/// Fills the nulls of `rows` (time order, times in column 0) in columns `first..`.
pub fn fill(fill: &Fill, types: &[DataType], rows: &mut [Vec<Option<WireValue>>], first: usize) {
    match fill {
        Fill::Previous(within_ms) => {
            fill_previous(rows, first, *within_ms, &mut vec![None; types.len()])
        }
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

/// `FILL(PREVIOUS[, within_ms])` of the columns `first..` of `rows` that follow earlier
/// rows (a page of a streamed result): `previous` holds each column's latest value before
/// them with its row's time, and is brought up to date. With `within_ms`, a null is filled
/// only from a value at most that many milliseconds older (IoTDB fills at exactly the bound).
pub fn fill_previous(
    rows: &mut [Vec<Option<WireValue>>],
    first: usize,
    within_ms: Option<i64>,
    previous: &mut [Option<(i64, WireValue)>],
) {
    for row in rows {
        let time = time_of(row);
        for (column, cell) in row.iter_mut().enumerate().skip(first) {
            if let Some(value) = cell {
                previous[column] = Some((time.unwrap_or(i64::MIN), value.clone()));
            } else if let Some((then, value)) = &previous[column]
                && near(time, *then, within_ms)
            {
                *cell = Some(value.clone());
            }
        }
    }
}

/// Whether a value of time `then` may fill a row of time `time` under `within_ms`.
fn near(time: Option<i64>, then: i64, within_ms: Option<i64>) -> bool {
    match (within_ms, time) {
        (None, _) => true,
        (Some(within), Some(time)) => i128::from(time) - i128::from(then) <= i128::from(within),
        (Some(_), None) => false,
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
    /// `FILL(PREVIOUS, within_ms)`'s bound.
    within_ms: Option<i64>,
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
        let (linear, within_ms) = match how {
            Fill::Linear => (true, None),
            Fill::Previous(within_ms) if descending => (false, *within_ms),
            Fill::Previous(_) | Fill::Constant(_) => return None,
        };
        Some(HeldFill {
            linear,
            within_ms,
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
            let mut previous: Vec<Option<(i64, WireValue)>> = (0..self.types.len())
                .map(|c| {
                    self.held.iter().rev().find_map(|row| {
                        let value = row[c].clone()?;
                        Some((time_of(row).unwrap_or(i64::MIN), value))
                    })
                })
                .collect();
            fill_previous(&mut out, self.first, self.within_ms, &mut previous);
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

/// The value a constant fills a column of `data_type` with, by IoTDB's table ("Fill Null
/// Value"): an integer fills the numeric and text columns (an INT32 one only when it fits),
/// a float the FLOAT, DOUBLE and text ones, a boolean the BOOLEAN and text ones, a string
/// the text ones; a text column takes the constant's text as IoTDB (Java) writes it.
fn constant(literal: &Literal, data_type: DataType) -> Option<WireValue> {
    if data_type == DataType::Text {
        let text = match literal {
            Literal::Integer(i) => i.to_string(),
            Literal::Float(f) => java_double_text(*f),
            Literal::Text(s) => s.clone(),
            Literal::Boolean(b) => b.to_string(),
            Literal::Null => return None,
        };
        return Some(WireValue::Text(bytes::Bytes::from(text)));
    }
    match (literal, data_type) {
        (Literal::Integer(i), DataType::Int32) => i32::try_from(*i).ok().map(WireValue::Int32),
        (Literal::Integer(i), DataType::Int64) => Some(WireValue::Int64(*i)),
        (Literal::Integer(i), t) => of_type(t, *i as f64),
        (Literal::Float(f), DataType::Float | DataType::Double) => of_type(data_type, *f),
        (Literal::Boolean(b), DataType::Boolean) => Some(WireValue::Boolean(*b)),
        _ => None,
    }
}

/// `f` as Java's `Double.toString` writes it (IoTDB turns a DOUBLE constant into text
/// so): plain decimals with at least one fraction digit in [10^-3, 10^7), else
/// `<digit>.<digits>E<exponent>`.
fn java_double_text(f: f64) -> String {
    let magnitude = f.abs();
    if magnitude == 0.0 || (1e-3..1e7).contains(&magnitude) {
        // Debug prints the shortest round-trip digits and keeps a `.0` on integers.
        return format!("{f:?}");
    }
    let scientific = format!("{f:e}");
    let (mantissa, exponent) = scientific.split_once('e').unwrap_or((&scientific, "0"));
    let dot = if mantissa.contains('.') { "" } else { ".0" };
    format!("{mantissa}{dot}E{exponent}")
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
        fill(&Fill::Previous(None), &types, &mut r, 1);
        assert_eq!(
            column(&r),
            [None, Some(1.0), Some(1.0), Some(4.0), Some(4.0)]
        );
        // Bounded by 1 ms: t=3 is 1 ms after t=2 and t=7 after t=6, so both fill.
        let mut r = rows(&data);
        fill(&Fill::Previous(Some(1)), &types, &mut r, 1);
        assert_eq!(
            column(&r),
            [None, Some(1.0), Some(1.0), Some(4.0), Some(4.0)]
        );
        let mut r = rows(&[
            (2, Some(1.0)),
            (4, None),
            (5, None),
            (6, Some(4.0)),
            (9, None),
        ]);
        fill(&Fill::Previous(Some(2)), &types, &mut r, 1);
        // IoTDB fills a row at most the bound after the value: t=4 (exactly 2 after t=2)
        // fills; t=5 and t=9 (3 after theirs) stay null.
        assert_eq!(column(&r), [Some(1.0), Some(1.0), None, Some(4.0), None]);
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

    /// IoTDB's table of constants and the column types they fill ("Fill Null Value"):
    /// every constant fills a TEXT column with its text.
    #[test]
    fn constant_fills_the_types_of_iotdbs_table() {
        use DataType::{Boolean, Double, Float, Int32, Int64, Text};
        let text = |s: &str| Some(WireValue::Text(bytes::Bytes::from(s.to_string())));
        let cases = [
            (Literal::Integer(7), Int32, Some(WireValue::Int32(7))),
            (Literal::Integer(7), Int64, Some(WireValue::Int64(7))),
            (Literal::Integer(7), Float, Some(WireValue::Float(7.0))),
            (Literal::Integer(7), Double, Some(WireValue::Double(7.0))),
            (Literal::Integer(7), Text, text("7")),
            (Literal::Integer(7), Boolean, None),
            (Literal::Integer(1 << 40), Int32, None),
            (Literal::Float(2.5), Int32, None),
            (Literal::Float(2.5), Int64, None),
            (Literal::Float(2.5), Float, Some(WireValue::Float(2.5))),
            (Literal::Float(2.5), Double, Some(WireValue::Double(2.5))),
            (Literal::Float(2.0), Text, text("2.0")),
            (Literal::Float(1e10), Text, text("1.0E10")),
            (Literal::Float(-1.5e-5), Text, text("-1.5E-5")),
            (Literal::Float(2.5), Boolean, None),
            (
                Literal::Boolean(true),
                Boolean,
                Some(WireValue::Boolean(true)),
            ),
            (Literal::Boolean(false), Text, text("false")),
            (Literal::Boolean(true), Int64, None),
            (Literal::Text("a".into()), Text, text("a")),
            (Literal::Text("1".into()), Int64, None),
            (Literal::Text("true".into()), Boolean, None),
        ];
        for (literal, data_type, want) in cases {
            assert_eq!(
                constant(&literal, data_type),
                want,
                "{literal:?} {data_type:?}"
            );
        }
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
                (Fill::Previous(None), true),
                (Fill::Previous(Some(7)), true),
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
        let mut held = HeldFill::new(&Fill::Previous(None), &types, 1, true).expect("held");
        held.set_lacking(&[2]);
        assert_eq!(held.push(page(10), false).expect("push").len(), 10);
        assert_eq!(held.push(page(0), false).expect("push").len(), 10);
        let mut held = HeldFill::new(&Fill::Previous(None), &types, 1, true).expect("held");
        assert!(held.push(page(10), false).expect("push").is_empty());
        assert_eq!(held.push(page(0), true).expect("push").len(), 20);
    }
}
