//! Columnar evaluation of bound expressions: a [`Bound`] is evaluated once per page of rows,
//! each node a kernel over whole columns, instead of once per row.
//!
//! ```text
//! fetched PointColumns ─ Page::align (union of times) ─▶ Page: times + one PageColumn per
//!                        series (values in the series' type, a validity flag per row)
//! aggregate rows       ─ Page::of_rows (transposed once) ─▶ Page
//! Bound::evaluate(page) ─ leaves: Column → Vector::of, Time, Constant (broadcast)
//!                       ─ kernels: arithmetic, negate, compare, AND/OR/NOT, IN, LIKE/REGEXP,
//!                         IS NULL, math functions, CAST ─▶ Vector
//! WHERE / HAVING: Vector::truth ─▶ mask ─ Page::retain
//! select items:   Vector::cells(result type) ─▶ wire cells, only at the end
//! ```
//!
//! A [`Vector`] is numbers (f64, as the per-row evaluation always computed them), booleans
//! or text, with a validity flag per row, or all null (a leaf that matched nothing, an
//! operand of the wrong kind). The semantics are SQL's three-valued logic as IoTDB has it:
//! arithmetic, comparisons and functions are null where an operand is; `AND` is false where
//! either side is false, `OR` true where either is true, null otherwise where a side is; a
//! comparison involving NaN is null; a row passes a filter only where it is true.
//!
//! Result types are IoTDB's ([`Bound::data_type`]): unary minus and `abs` keep their
//! operand's type, binary arithmetic and the other math functions are DOUBLE, predicates
//! BOOLEAN, a cast the type it names.

use bytes::Bytes;
use iotdb_net::Value as WireValue;
use iotdb_storage::{DataType, PointColumn, Values};

use super::bind::{Bound, Scalar, cast};
use crate::sql::{ArithmeticOp, CompareOp, ScalarFunction};

/// One series over the rows of a page, in the series' own type: `valid[r]` says whether
/// row `r` has a point (the value there is a placeholder when not).
#[derive(Clone, Debug, PartialEq)]
pub struct PageColumn {
    pub values: Values,
    pub valid: Vec<bool>,
}

/// A page of rows as columns: the rows' times and one column per fetched series (or, for
/// aggregate results, per result column).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Page {
    pub times: Vec<i64>,
    pub columns: Vec<PageColumn>,
}

/// `$body` on the inner vector `$v` of a [`Values`], rewrapped in the same variant.
macro_rules! map_values {
    ($values:expr, $v:ident => $body:expr) => {
        match $values {
            Values::Boolean($v) => Values::Boolean($body),
            Values::Int32($v) => Values::Int32($body),
            Values::Int64($v) => Values::Int64($body),
            Values::Float($v) => Values::Float($body),
            Values::Double($v) => Values::Double($body),
            Values::Text($v) => Values::Text($body),
        }
    };
}

/// The values of `values` at `slots` (a default placeholder where a slot is empty).
fn spread<T: Clone + Default>(values: &[T], slots: &[Option<usize>]) -> Vec<T> {
    slots
        .iter()
        .map(|slot| slot.map_or_else(T::default, |i| values[i].clone()))
        .collect()
}

/// The values of `values` where `keep` is true.
fn kept<T: Clone>(values: &[T], keep: &[bool]) -> Vec<T> {
    values
        .iter()
        .zip(keep)
        .filter(|(_, k)| **k)
        .map(|(v, _)| v.clone())
        .collect()
}

impl Page {
    /// Fetched series (each in time order) aligned on the union of their times.
    pub fn align(points: Vec<PointColumn>) -> Page {
        let times = union_times(&points);
        let columns = points
            .into_iter()
            .map(|p| PageColumn::aligned(p, &times))
            .collect();
        Page { times, columns }
    }

    /// Rows of wire cells transposed into columns (`times[r]` is row `r`'s time). A
    /// column's type is its cells' (numbers of several types become DOUBLE; a cell of
    /// another kind than the column's first is null).
    pub fn of_rows(times: Vec<i64>, rows: &[Vec<Option<WireValue>>]) -> Page {
        let width = rows.iter().map(Vec::len).max().unwrap_or(0);
        let columns = (0..width)
            .map(|c| {
                PageColumn::of_cells(rows.iter().map(|row| row.get(c).and_then(Option::as_ref)))
            })
            .collect();
        Page { times, columns }
    }

    /// The number of rows.
    pub fn len(&self) -> usize {
        self.times.len()
    }

    /// Whether the page has no rows.
    pub fn is_empty(&self) -> bool {
        self.times.is_empty()
    }

    /// Keeps the rows where `keep` is true.
    pub fn retain(&mut self, keep: &[bool]) {
        assert_eq!(keep.len(), self.len(), "a mask of another page");
        if keep.iter().all(|k| *k) {
            return;
        }
        self.times = kept(&self.times, keep);
        for column in &mut self.columns {
            column.values = map_values!(&column.values, v => kept(v, keep));
            column.valid = kept(&column.valid, keep);
        }
    }

    /// Column `column`'s cell at `row`.
    pub fn cell(&self, column: usize, row: usize) -> Option<WireValue> {
        self.columns[column].cell(row)
    }

    /// Each row's cells, the page's columns in order.
    pub fn rows(&self) -> Vec<Vec<Option<WireValue>>> {
        (0..self.len())
            .map(|r| (0..self.columns.len()).map(|c| self.cell(c, r)).collect())
            .collect()
    }
}

/// The sorted union of the columns' times (each column's are sorted and distinct).
fn union_times(points: &[PointColumn]) -> Vec<i64> {
    let Some(first) = points.first() else {
        return Vec::new();
    };
    if points.iter().all(|p| p.timestamps == first.timestamps) {
        return first.timestamps.clone();
    }
    let mut all: Vec<i64> = points
        .iter()
        .flat_map(|p| p.timestamps.iter().copied())
        .collect();
    all.sort_unstable();
    all.dedup();
    all
}

impl PageColumn {
    /// `points` at `times` (a superset of its times, sorted).
    fn aligned(points: PointColumn, times: &[i64]) -> PageColumn {
        if points.timestamps.len() == times.len() {
            // Distinct sorted times inside `times`, as many: the same times.
            return PageColumn {
                valid: vec![true; times.len()],
                values: points.values,
            };
        }
        let mut at = 0;
        let slots: Vec<Option<usize>> = times
            .iter()
            .map(|&t| {
                let here = points.timestamps.get(at) == Some(&t);
                at += usize::from(here);
                here.then(|| at - 1)
            })
            .collect();
        PageColumn {
            valid: slots.iter().map(Option::is_some).collect(),
            values: map_values!(&points.values, v => spread(v, &slots)),
        }
    }

    /// A column of wire cells (see [`Page::of_rows`]).
    fn of_cells<'a>(cells: impl Iterator<Item = Option<&'a WireValue>> + Clone) -> PageColumn {
        let mut data_type: Option<DataType> = None;
        for cell in cells.clone().flatten() {
            let here = cell.data_type();
            data_type = Some(match data_type {
                None => here,
                Some(known) if known == here => known,
                Some(known) if is_number(known) && is_number(here) => DataType::Double,
                Some(known) => known,
            });
        }
        let data_type = data_type.unwrap_or(DataType::Double);
        let mut values = Values::new(data_type);
        let mut valid = Vec::new();
        for cell in cells {
            let value = cell.and_then(|v| wire_as(v, data_type));
            valid.push(value.is_some());
            values.push(value.unwrap_or_else(|| placeholder(data_type)));
        }
        PageColumn { values, valid }
    }

    /// The cell at `row`.
    fn cell(&self, row: usize) -> Option<WireValue> {
        if !self.valid[row] {
            return None;
        }
        Some(match &self.values {
            Values::Boolean(v) => WireValue::Boolean(v[row]),
            Values::Int32(v) => WireValue::Int32(v[row]),
            Values::Int64(v) => WireValue::Int64(v[row]),
            Values::Float(v) => WireValue::Float(v[row]),
            Values::Double(v) => WireValue::Double(v[row]),
            Values::Text(v) => WireValue::Text(v[row].clone()),
        })
    }
}

fn is_number(data_type: DataType) -> bool {
    matches!(
        data_type,
        DataType::Int32 | DataType::Int64 | DataType::Float | DataType::Double
    )
}

/// `value` as a storage value of `data_type`: as it is, or a number widened to DOUBLE;
/// `None` for another kind.
fn wire_as(value: &WireValue, data_type: DataType) -> Option<iotdb_storage::Value> {
    use iotdb_storage::Value as V;
    Some(match (value, data_type) {
        (WireValue::Boolean(b), DataType::Boolean) => V::Boolean(*b),
        (WireValue::Int32(v), DataType::Int32) => V::Int32(*v),
        (WireValue::Int64(v), DataType::Int64) => V::Int64(*v),
        (WireValue::Float(v), DataType::Float) => V::Float(*v),
        (WireValue::Text(t), DataType::Text) => V::Text(t.clone()),
        (number, DataType::Double) => V::Double(match number {
            WireValue::Int32(v) => f64::from(*v),
            WireValue::Int64(v) => *v as f64,
            WireValue::Float(v) => f64::from(*v),
            WireValue::Double(v) => *v,
            _ => return None,
        }),
        _ => return None,
    })
}

fn placeholder(data_type: DataType) -> iotdb_storage::Value {
    use iotdb_storage::Value as V;
    match data_type {
        DataType::Boolean => V::Boolean(false),
        DataType::Int32 => V::Int32(0),
        DataType::Int64 => V::Int64(0),
        DataType::Float => V::Float(0.0),
        DataType::Double => V::Double(0.0),
        DataType::Text => V::Text(Bytes::new()),
    }
}

/// A column of values during evaluation: `valid[r]` says whether row `r` has a value.
#[derive(Clone, Debug, PartialEq)]
pub enum Vector {
    /// Every one of this many rows null.
    Null(usize),
    Number(Vec<f64>, Vec<bool>),
    Bool(Vec<bool>, Vec<bool>),
    Text(Vec<Bytes>, Vec<bool>),
}

impl Vector {
    /// A page column as numbers, booleans or text.
    pub fn of(column: &PageColumn) -> Vector {
        let valid = column.valid.clone();
        match &column.values {
            Values::Boolean(v) => Vector::Bool(v.clone(), valid),
            Values::Int32(v) => Vector::Number(v.iter().map(|x| f64::from(*x)).collect(), valid),
            Values::Int64(v) => Vector::Number(v.iter().map(|x| *x as f64).collect(), valid),
            Values::Float(v) => Vector::Number(v.iter().map(|x| f64::from(*x)).collect(), valid),
            Values::Double(v) => Vector::Number(v.clone(), valid),
            Values::Text(v) => Vector::Text(v.clone(), valid),
        }
    }

    /// `scalar` on each of `len` rows.
    pub fn broadcast(scalar: &Scalar, len: usize) -> Vector {
        match scalar {
            Scalar::Null => Vector::Null(len),
            Scalar::Number(v) => Vector::Number(vec![*v; len], vec![true; len]),
            Scalar::Bool(b) => Vector::Bool(vec![*b; len], vec![true; len]),
            Scalar::Text(t) => Vector::Text(vec![t.clone(); len], vec![true; len]),
        }
    }

    /// The number of rows.
    pub fn len(&self) -> usize {
        match self {
            Vector::Null(len) => *len,
            Vector::Number(v, _) => v.len(),
            Vector::Bool(v, _) => v.len(),
            Vector::Text(v, _) => v.len(),
        }
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The validity flags (all false when every row is null).
    fn validity(&self) -> std::borrow::Cow<'_, [bool]> {
        match self {
            Vector::Null(len) => vec![false; *len].into(),
            Vector::Number(_, valid) | Vector::Bool(_, valid) | Vector::Text(_, valid) => {
                valid.as_slice().into()
            }
        }
    }

    /// The value at `row`.
    pub fn scalar(&self, row: usize) -> Scalar {
        match self {
            Vector::Number(v, ok) if ok[row] => Scalar::Number(v[row]),
            Vector::Bool(v, ok) if ok[row] => Scalar::Bool(v[row]),
            Vector::Text(v, ok) if ok[row] => Scalar::Text(v[row].clone()),
            _ => Scalar::Null,
        }
    }

    /// The rows where the value is true (a row passes a filter).
    pub fn truth(self) -> Vec<bool> {
        match self {
            Vector::Bool(mut values, valid) => {
                values.iter_mut().zip(&valid).for_each(|(v, ok)| *v &= ok);
                values
            }
            other => vec![false; other.len()],
        }
    }

    /// Booleans and validity for logic: a vector of another kind is null throughout.
    fn logic(self) -> (Vec<bool>, Vec<bool>) {
        match self {
            Vector::Bool(values, valid) => (values, valid),
            other => (vec![false; other.len()], vec![false; other.len()]),
        }
    }

    /// The values as cells of a column of `data_type` (null where a value has another
    /// kind); an integer out of the type's range is refused.
    pub fn cells(&self, data_type: DataType) -> Result<Vec<Option<WireValue>>, String> {
        if let (Vector::Number(values, valid), DataType::Double) = (self, data_type) {
            // The common case without a range to check.
            let cells = values.iter().zip(valid);
            return Ok(cells
                .map(|(v, ok)| ok.then_some(WireValue::Double(*v)))
                .collect());
        }
        let valid = self.validity();
        let cell = |row: usize| -> Result<Option<WireValue>, String> {
            if !valid[row] {
                return Ok(None);
            }
            Ok(match (self, data_type) {
                (Vector::Number(v, _), DataType::Double) => Some(WireValue::Double(v[row])),
                (Vector::Number(v, _), DataType::Float) => Some(WireValue::Float(v[row] as f32)),
                (Vector::Number(v, _), DataType::Int32) => Some(WireValue::Int32(integer(
                    v[row],
                    f64::from(i32::MIN),
                    f64::from(i32::MAX),
                    data_type,
                )?
                    as i32)),
                (Vector::Number(v, _), DataType::Int64) => Some(WireValue::Int64(integer(
                    v[row],
                    i64::MIN as f64,
                    i64::MAX as f64,
                    data_type,
                )?
                    as i64)),
                (Vector::Bool(v, _), DataType::Boolean) => Some(WireValue::Boolean(v[row])),
                (Vector::Text(v, _), DataType::Text) => Some(WireValue::Text(v[row].clone())),
                _ => None,
            })
        };
        (0..self.len()).map(cell).collect()
    }
}

/// `v` as an integer of `data_type` (truncated), refused out of `[min, max]`.
fn integer(v: f64, min: f64, max: f64, data_type: DataType) -> Result<f64, String> {
    if v.is_finite() && v >= min && v <= max {
        Ok(v.trunc())
    } else {
        Err(format!("{v} is out of the range of {}", data_type.name()))
    }
}

impl Bound {
    /// The expression's value on every row of `page`.
    pub fn evaluate(&self, page: &Page) -> Vector {
        let len = page.len();
        match self {
            Bound::Time => Vector::Number(
                page.times.iter().map(|t| *t as f64).collect(),
                vec![true; len],
            ),
            Bound::Column(c) => page.columns.get(*c).map_or(Vector::Null(len), Vector::of),
            Bound::Constant(s) => Vector::broadcast(s, len),
            Bound::Negate(e) => numeric(e.evaluate(page), |x| -x),
            Bound::Arithmetic(op, a, b) => arithmetic(*op, a.evaluate(page), b.evaluate(page)),
            Bound::Compare(op, a, b) => compare(*op, &a.evaluate(page), &b.evaluate(page)),
            Bound::And(a, b) => and(a.evaluate(page), b.evaluate(page)),
            Bound::Or(a, b) => or(a.evaluate(page), b.evaluate(page)),
            Bound::Not(e) => match e.evaluate(page) {
                Vector::Bool(mut values, valid) => {
                    values.iter_mut().for_each(|v| *v = !*v);
                    Vector::Bool(values, valid)
                }
                other => Vector::Null(other.len()),
            },
            Bound::In(e, list) => within(e.evaluate(page), list),
            Bound::Matches(e, filter) => match e.evaluate(page) {
                Vector::Text(texts, valid) => {
                    let texts = Values::Text(texts);
                    let values = (0..valid.len())
                        .map(|r| valid[r] && filter.matches(&texts, r))
                        .collect();
                    Vector::Bool(values, valid)
                }
                other => Vector::Null(other.len()),
            },
            Bound::IsNull(e) => {
                let value = e.evaluate(page);
                let nulls = value.validity().iter().map(|ok| !ok).collect();
                Vector::Bool(nulls, vec![true; len])
            }
            Bound::Function(f, e) => {
                let f = *f;
                numeric(e.evaluate(page), move |x| f.apply(x))
            }
            Bound::Round(e, places) => {
                let scale = 10f64.powi(*places);
                numeric(e.evaluate(page), move |x| {
                    (x * scale).round_ties_even() / scale
                })
            }
            Bound::Cast(to, e) => cast_vector(e.evaluate(page), *to),
        }
    }

    /// The type of the expression's column, `input` giving each column's (IoTDB's rules:
    /// see the module docs).
    pub fn data_type(&self, input: &dyn Fn(usize) -> DataType) -> DataType {
        let kept_number = |e: &Bound| match e.data_type(input) {
            number if is_number(number) => number,
            _ => DataType::Double,
        };
        match self {
            Bound::Time => DataType::Int64,
            Bound::Column(c) => input(*c),
            Bound::Constant(Scalar::Bool(_)) => DataType::Boolean,
            Bound::Constant(Scalar::Text(_)) => DataType::Text,
            Bound::Constant(_) => DataType::Double,
            Bound::Negate(e) | Bound::Function(ScalarFunction::Abs, e) => kept_number(e),
            Bound::Arithmetic(..) | Bound::Function(..) | Bound::Round(..) => DataType::Double,
            Bound::Compare(..)
            | Bound::And(..)
            | Bound::Or(..)
            | Bound::Not(_)
            | Bound::In(..)
            | Bound::Matches(..)
            | Bound::IsNull(_) => DataType::Boolean,
            Bound::Cast(to, _) => *to,
        }
    }
}

/// `f` of each number (null for any other kind).
fn numeric(value: Vector, f: impl Fn(f64) -> f64) -> Vector {
    match value {
        Vector::Number(mut values, valid) => {
            values.iter_mut().for_each(|v| *v = f(*v));
            Vector::Number(values, valid)
        }
        other => Vector::Null(other.len()),
    }
}

/// `a op b` on numbers, computed into `a`.
fn arithmetic(op: ArithmeticOp, a: Vector, b: Vector) -> Vector {
    let len = a.len();
    let (Vector::Number(mut x, mut x_ok), Vector::Number(y, y_ok)) = (a, b) else {
        return Vector::Null(len);
    };
    fn apply(x: &mut [f64], y: &[f64], f: impl Fn(f64, f64) -> f64) {
        x.iter_mut().zip(y).for_each(|(a, b)| *a = f(*a, *b));
    }
    match op {
        ArithmeticOp::Add => apply(&mut x, &y, |a, b| a + b),
        ArithmeticOp::Subtract => apply(&mut x, &y, |a, b| a - b),
        ArithmeticOp::Multiply => apply(&mut x, &y, |a, b| a * b),
        ArithmeticOp::Divide => apply(&mut x, &y, |a, b| a / b),
        ArithmeticOp::Modulo => apply(&mut x, &y, |a, b| a % b),
    }
    x_ok.iter_mut().zip(&y_ok).for_each(|(a, b)| *a &= b);
    Vector::Number(x, x_ok)
}

/// `a op b`: null where either side is (or is NaN), or where their kinds differ.
fn compare(op: CompareOp, a: &Vector, b: &Vector) -> Vector {
    fn both(a: &[bool], b: &[bool]) -> Vec<bool> {
        a.iter().zip(b).map(|(a, b)| *a && *b).collect()
    }
    match (a, b) {
        (Vector::Number(x, x_ok), Vector::Number(y, y_ok)) => {
            let values: Vec<bool> = match op {
                CompareOp::Less => x.iter().zip(y).map(|(a, b)| a < b).collect(),
                CompareOp::LessEqual => x.iter().zip(y).map(|(a, b)| a <= b).collect(),
                CompareOp::Greater => x.iter().zip(y).map(|(a, b)| a > b).collect(),
                CompareOp::GreaterEqual => x.iter().zip(y).map(|(a, b)| a >= b).collect(),
                CompareOp::Equal => x.iter().zip(y).map(|(a, b)| a == b).collect(),
                CompareOp::NotEqual => x.iter().zip(y).map(|(a, b)| a != b).collect(),
            };
            let valid = (0..x.len())
                .map(|r| x_ok[r] && y_ok[r] && !x[r].is_nan() && !y[r].is_nan())
                .collect();
            Vector::Bool(values, valid)
        }
        (Vector::Text(x, x_ok), Vector::Text(y, y_ok)) => Vector::Bool(
            x.iter().zip(y).map(|(a, b)| op.holds(a.cmp(b))).collect(),
            both(x_ok, y_ok),
        ),
        (Vector::Bool(x, x_ok), Vector::Bool(y, y_ok)) => Vector::Bool(
            x.iter().zip(y).map(|(a, b)| op.holds(a.cmp(b))).collect(),
            both(x_ok, y_ok),
        ),
        _ => Vector::Null(a.len()),
    }
}

/// Three-valued `AND`: false where either side is false, true where both are true, null
/// otherwise.
fn and(a: Vector, b: Vector) -> Vector {
    let ((x, x_ok), (y, y_ok)) = (a.logic(), b.logic());
    let values = (0..x.len()).map(|r| x[r] && y[r]).collect();
    let valid = (0..x.len())
        .map(|r| (x_ok[r] && !x[r]) || (y_ok[r] && !y[r]) || (x_ok[r] && y_ok[r]))
        .collect();
    Vector::Bool(values, valid)
}

/// Three-valued `OR`: true where either side is true, false where both are false, null
/// otherwise.
fn or(a: Vector, b: Vector) -> Vector {
    let ((x, x_ok), (y, y_ok)) = (a.logic(), b.logic());
    let values: Vec<bool> = (0..x.len())
        .map(|r| (x_ok[r] && x[r]) || (y_ok[r] && y[r]))
        .collect();
    let valid = (0..x.len())
        .map(|r| values[r] || (x_ok[r] && y_ok[r]))
        .collect();
    Vector::Bool(values, valid)
}

/// `e IN (list)`: null where `e` is, otherwise whether a constant of its kind equals it.
fn within(value: Vector, list: &[Scalar]) -> Vector {
    match value {
        Vector::Number(values, valid) => {
            let numbers: Vec<f64> = list
                .iter()
                .filter_map(|s| match s {
                    Scalar::Number(n) => Some(*n),
                    _ => None,
                })
                .collect();
            let found = values.iter().map(|v| numbers.contains(v)).collect();
            Vector::Bool(found, valid)
        }
        Vector::Bool(values, valid) => {
            let found = values
                .iter()
                .map(|v| list.contains(&Scalar::Bool(*v)))
                .collect();
            Vector::Bool(found, valid)
        }
        Vector::Text(values, valid) => {
            let texts: Vec<&Bytes> = list
                .iter()
                .filter_map(|s| match s {
                    Scalar::Text(t) => Some(t),
                    _ => None,
                })
                .collect();
            let found = values.iter().map(|v| texts.contains(&v)).collect();
            Vector::Bool(found, valid)
        }
        Vector::Null(len) => Vector::Null(len),
    }
}

/// `cast(value AS to)` (see [`cast`]): numbers to numbers and booleans directly, the rest
/// value by value.
fn cast_vector(value: Vector, to: DataType) -> Vector {
    match (value, to) {
        (Vector::Number(values, valid), DataType::Int32 | DataType::Int64) => {
            Vector::Number(values.iter().map(|v| v.trunc()).collect(), valid)
        }
        (number @ Vector::Number(..), DataType::Float | DataType::Double) => number,
        (Vector::Number(values, valid), DataType::Boolean) => {
            Vector::Bool(values.iter().map(|v| *v != 0.0).collect(), valid)
        }
        (Vector::Bool(values, valid), DataType::Boolean) => Vector::Bool(values, valid),
        (Vector::Null(len), _) => Vector::Null(len),
        (other, _) => {
            let scalars: Vec<Scalar> = (0..other.len())
                .map(|r| cast(other.scalar(r), to))
                .collect();
            Vector::collect(to, scalars)
        }
    }
}

impl Vector {
    /// Scalars as a vector of `data_type`'s kind (a scalar of another kind is null).
    fn collect(data_type: DataType, scalars: Vec<Scalar>) -> Vector {
        let valid: Vec<bool> = scalars.iter().map(|s| *s != Scalar::Null).collect();
        match data_type {
            DataType::Boolean => {
                let values = scalars.iter().map(|s| *s == Scalar::Bool(true)).collect();
                let valid = scalars
                    .iter()
                    .map(|s| matches!(s, Scalar::Bool(_)))
                    .collect();
                Vector::Bool(values, valid)
            }
            DataType::Text => {
                let mut valid = valid;
                let values = scalars
                    .into_iter()
                    .enumerate()
                    .map(|(r, s)| match s {
                        Scalar::Text(t) => t,
                        _ => {
                            valid[r] = false;
                            Bytes::new()
                        }
                    })
                    .collect();
                Vector::Text(values, valid)
            }
            _ => {
                let values = scalars
                    .iter()
                    .map(|s| match s {
                        Scalar::Number(v) => *v,
                        _ => 0.0,
                    })
                    .collect();
                let valid = scalars
                    .iter()
                    .map(|s| matches!(s, Scalar::Number(_)))
                    .collect();
                Vector::Number(values, valid)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    //! The kernels against a straightforward per-row evaluator (what evaluation was before
    //! it was columnar), on random pages with random nulls and random expressions.

    use iotdb_storage::ValueFilter;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    use super::*;

    /// The value of `bound` on one row, row by row down the tree: the reference.
    fn eval_row(bound: &Bound, time: i64, row: &[Option<WireValue>]) -> Scalar {
        let number = |b: &Bound, f: &dyn Fn(f64) -> f64| match eval_row(b, time, row) {
            Scalar::Number(v) => Scalar::Number(f(v)),
            _ => Scalar::Null,
        };
        match bound {
            Bound::Time => Scalar::Number(time as f64),
            Bound::Column(c) => Scalar::of(row.get(*c).and_then(Option::as_ref)),
            Bound::Constant(s) => s.clone(),
            Bound::Negate(e) => number(e, &|v| -v),
            Bound::Arithmetic(op, a, b) => match (eval_row(a, time, row), eval_row(b, time, row)) {
                (Scalar::Number(x), Scalar::Number(y)) => Scalar::Number(match op {
                    ArithmeticOp::Add => x + y,
                    ArithmeticOp::Subtract => x - y,
                    ArithmeticOp::Multiply => x * y,
                    ArithmeticOp::Divide => x / y,
                    ArithmeticOp::Modulo => x % y,
                }),
                _ => Scalar::Null,
            },
            Bound::Compare(op, a, b) => {
                compare_row(*op, &eval_row(a, time, row), &eval_row(b, time, row))
            }
            Bound::And(a, b) => match (eval_row(a, time, row), eval_row(b, time, row)) {
                (Scalar::Bool(false), _) | (_, Scalar::Bool(false)) => Scalar::Bool(false),
                (Scalar::Bool(true), Scalar::Bool(true)) => Scalar::Bool(true),
                _ => Scalar::Null,
            },
            Bound::Or(a, b) => match (eval_row(a, time, row), eval_row(b, time, row)) {
                (Scalar::Bool(true), _) | (_, Scalar::Bool(true)) => Scalar::Bool(true),
                (Scalar::Bool(false), Scalar::Bool(false)) => Scalar::Bool(false),
                _ => Scalar::Null,
            },
            Bound::Not(e) => match eval_row(e, time, row) {
                Scalar::Bool(b) => Scalar::Bool(!b),
                _ => Scalar::Null,
            },
            Bound::In(e, list) => match eval_row(e, time, row) {
                Scalar::Null => Scalar::Null,
                v => Scalar::Bool(
                    list.iter()
                        .any(|c| compare_row(CompareOp::Equal, &v, c) == Scalar::Bool(true)),
                ),
            },
            Bound::Matches(e, filter) => match eval_row(e, time, row) {
                Scalar::Text(t) => Scalar::Bool(filter.matches(&Values::Text(vec![t]), 0)),
                _ => Scalar::Null,
            },
            Bound::IsNull(e) => Scalar::Bool(eval_row(e, time, row) == Scalar::Null),
            Bound::Function(f, e) => number(e, &|v| f.apply(v)),
            Bound::Round(e, places) => {
                let scale = 10f64.powi(*places);
                number(e, &|v| (v * scale).round_ties_even() / scale)
            }
            Bound::Cast(to, e) => cast(eval_row(e, time, row), *to),
        }
    }

    fn compare_row(op: CompareOp, a: &Scalar, b: &Scalar) -> Scalar {
        use std::cmp::Ordering;
        let ordering: Option<Ordering> = match (a, b) {
            (Scalar::Number(x), Scalar::Number(y)) => x.partial_cmp(y),
            (Scalar::Text(x), Scalar::Text(y)) => Some(x.cmp(y)),
            (Scalar::Bool(x), Scalar::Bool(y)) => Some(x.cmp(y)),
            _ => None,
        };
        let Some(o) = ordering else {
            return Scalar::Null;
        };
        Scalar::Bool(op.holds(o))
    }

    /// Whether two results agree (NaN equals NaN).
    fn same(a: &Scalar, b: &Scalar) -> bool {
        match (a, b) {
            (Scalar::Number(x), Scalar::Number(y)) => x == y || (x.is_nan() && y.is_nan()),
            _ => a == b,
        }
    }

    fn b(bound: Bound) -> Box<Bound> {
        Box::new(bound)
    }

    /// Column kinds of the random pages: INT32, DOUBLE, TEXT, BOOLEAN, INT64.
    const KINDS: [DataType; 5] = [
        DataType::Int32,
        DataType::Double,
        DataType::Text,
        DataType::Boolean,
        DataType::Int64,
    ];

    fn random_cell(rng: &mut StdRng, data_type: DataType) -> Option<WireValue> {
        if rng.gen_bool(0.25) {
            return None;
        }
        Some(match data_type {
            DataType::Int32 => WireValue::Int32(rng.gen_range(-5..=5)),
            DataType::Int64 => WireValue::Int64(rng.gen_range(-3..=3)),
            DataType::Double => {
                let choices = [0.0, -0.0, 0.5, -2.5, 3.0, f64::NAN, 1e300];
                WireValue::Double(choices[rng.gen_range(0..choices.len())])
            }
            DataType::Text => {
                let choices = ["1", "x", "2.5", "true", "ab", ""];
                WireValue::Text(Bytes::from(choices[rng.gen_range(0..choices.len())]))
            }
            _ => WireValue::Boolean(rng.gen_bool(0.5)),
        })
    }

    fn random_scalar(rng: &mut StdRng) -> Scalar {
        match rng.gen_range(0..6) {
            0 => Scalar::Null,
            1 => Scalar::Bool(rng.gen_bool(0.5)),
            2 => Scalar::Text(Bytes::from(["1", "x", "ab"][rng.gen_range(0..3)])),
            _ => Scalar::Number([0.0, 1.0, -2.0, 2.5, 3.0][rng.gen_range(0..5)]),
        }
    }

    fn random_bound(rng: &mut StdRng, depth: u32) -> Bound {
        let leaf = depth == 0 || rng.gen_bool(0.25);
        if leaf {
            return match rng.gen_range(0..4) {
                0 => Bound::Time,
                1 => Bound::Constant(random_scalar(rng)),
                // One past the last column: a column a page does not have is null.
                _ => Bound::Column(rng.gen_range(0..=KINDS.len())),
            };
        }
        let mut next = || b(random_bound(rng, depth - 1));
        let (x, y) = (next(), next());
        let ops = [
            CompareOp::Less,
            CompareOp::LessEqual,
            CompareOp::Greater,
            CompareOp::GreaterEqual,
            CompareOp::Equal,
            CompareOp::NotEqual,
        ];
        let arithmetic = [
            ArithmeticOp::Add,
            ArithmeticOp::Subtract,
            ArithmeticOp::Multiply,
            ArithmeticOp::Divide,
            ArithmeticOp::Modulo,
        ];
        let functions = [
            ScalarFunction::Abs,
            ScalarFunction::Sin,
            ScalarFunction::Sqrt,
            ScalarFunction::Ln,
            ScalarFunction::Sign,
            ScalarFunction::Round,
            ScalarFunction::Atan,
            ScalarFunction::Degrees,
        ];
        match rng.gen_range(0..12) {
            0 => Bound::Negate(x),
            1 => Bound::Arithmetic(arithmetic[rng.gen_range(0..arithmetic.len())], x, y),
            2 => Bound::Compare(ops[rng.gen_range(0..ops.len())], x, y),
            3 => Bound::And(x, y),
            4 => Bound::Or(x, y),
            5 => Bound::Not(x),
            6 => Bound::In(x, (0..3).map(|_| random_scalar(rng)).collect()),
            7 => Bound::Matches(x, ValueFilter::like("%b").unwrap()),
            8 => Bound::IsNull(x),
            9 => Bound::Function(functions[rng.gen_range(0..functions.len())], x),
            10 => Bound::Round(x, rng.gen_range(-1..=2)),
            _ => Bound::Cast(KINDS[rng.gen_range(0..KINDS.len())], x),
        }
    }

    #[test]
    fn columnar_evaluation_matches_the_per_row_reference_on_random_pages() {
        let mut rng = StdRng::seed_from_u64(16);
        for _ in 0..300 {
            let rows = rng.gen_range(0..40);
            let times: Vec<i64> = (0..rows).map(|r| r as i64 * 3 - 7).collect();
            let cells: Vec<Vec<Option<WireValue>>> = (0..rows)
                .map(|_| KINDS.iter().map(|t| random_cell(&mut rng, *t)).collect())
                .collect();
            let page = Page::of_rows(times.clone(), &cells);
            for _ in 0..20 {
                let bound = random_bound(&mut rng, 4);
                let vector = bound.evaluate(&page);
                assert_eq!(vector.len(), rows, "{bound:?}");
                for r in 0..rows {
                    let want = eval_row(&bound, times[r], &cells[r]);
                    let got = vector.scalar(r);
                    assert!(
                        same(&got, &want),
                        "{bound:?} row {r}: {got:?}, want {want:?}"
                    );
                }
                let truth = bound.evaluate(&page).truth();
                for r in 0..rows {
                    let want = eval_row(&bound, times[r], &cells[r]) == Scalar::Bool(true);
                    assert_eq!(truth[r], want, "{bound:?} row {r}");
                }
            }
        }
    }

    fn page(columns: Vec<Vec<Option<WireValue>>>) -> Page {
        let rows = columns.first().map_or(0, Vec::len);
        let rows: Vec<Vec<Option<WireValue>>> = (0..rows)
            .map(|r| columns.iter().map(|c| c[r].clone()).collect())
            .collect();
        Page::of_rows((0..rows.len() as i64).collect(), &rows)
    }

    fn bools(values: &[Option<bool>]) -> Vec<Option<WireValue>> {
        values.iter().map(|v| v.map(WireValue::Boolean)).collect()
    }

    fn scalars(vector: &Vector) -> Vec<Scalar> {
        (0..vector.len()).map(|r| vector.scalar(r)).collect()
    }

    #[test]
    fn logic_is_three_valued() {
        // Every pair of true, false and null.
        let all = [Some(true), Some(false), None];
        let left: Vec<Option<bool>> = all.iter().flat_map(|a| [*a; 3]).collect();
        let right: Vec<Option<bool>> = (0..3).flat_map(|_| all).collect();
        let page = page(vec![bools(&left), bools(&right)]);
        let and = Bound::And(b(Bound::Column(0)), b(Bound::Column(1))).evaluate(&page);
        let or = Bound::Or(b(Bound::Column(0)), b(Bound::Column(1))).evaluate(&page);
        let not = Bound::Not(b(Bound::Column(0))).evaluate(&page);
        let (t, f, n) = (Scalar::Bool(true), Scalar::Bool(false), Scalar::Null);
        assert_eq!(
            scalars(&and),
            vec![
                t.clone(),
                f.clone(),
                n.clone(),
                f.clone(),
                f.clone(),
                f.clone(),
                n.clone(),
                f.clone(),
                n.clone()
            ]
        );
        assert_eq!(
            scalars(&or),
            vec![
                t.clone(),
                t.clone(),
                t.clone(),
                t.clone(),
                f.clone(),
                n.clone(),
                t.clone(),
                n.clone(),
                n.clone()
            ]
        );
        assert_eq!(
            scalars(&not)[..],
            [
                f.clone(),
                f.clone(),
                f.clone(),
                t.clone(),
                t.clone(),
                t.clone(),
                n.clone(),
                n.clone(),
                n.clone()
            ]
        );
        // Only true passes.
        assert_eq!(
            and.truth(),
            vec![true, false, false, false, false, false, false, false, false]
        );
    }

    #[test]
    fn nulls_propagate_through_arithmetic_functions_and_comparisons() {
        let page = page(vec![
            vec![Some(WireValue::Int32(-3)), None, Some(WireValue::Int32(4))],
            vec![
                Some(WireValue::Double(2.0)),
                Some(WireValue::Double(1.0)),
                None,
            ],
        ]);
        let sum = Bound::Arithmetic(ArithmeticOp::Add, b(Bound::Column(0)), b(Bound::Column(1)));
        let (n, t, f) = (Scalar::Null, Scalar::Bool(true), Scalar::Bool(false));
        assert_eq!(
            scalars(&sum.evaluate(&page)),
            [Scalar::Number(-1.0), n.clone(), n.clone()]
        );
        let abs = Bound::Function(ScalarFunction::Abs, b(Bound::Column(0)));
        assert_eq!(
            abs.evaluate(&page).cells(DataType::Int32).unwrap(),
            vec![Some(WireValue::Int32(3)), None, Some(WireValue::Int32(4))]
        );
        let greater = Bound::Compare(CompareOp::Greater, b(Bound::Column(0)), b(Bound::Column(1)));
        assert_eq!(scalars(&greater.evaluate(&page)), [f.clone(), n.clone(), n]);
        let is_null = Bound::IsNull(b(sum));
        assert_eq!(scalars(&is_null.evaluate(&page)), [f, t.clone(), t]);
        // A column the page lacks, or an operand of another kind, is null throughout.
        let missing = Bound::Negate(b(Bound::Column(9)));
        assert_eq!(missing.evaluate(&page), Vector::Null(3));
        let text = Bound::Arithmetic(
            ArithmeticOp::Add,
            b(Bound::Column(0)),
            b(Bound::Constant(Scalar::Text(Bytes::from("1")))),
        );
        assert_eq!(text.evaluate(&page), Vector::Null(3));
        // An integer result out of its type's range is refused, not wrapped.
        let huge = Vector::Number(vec![1e12], vec![true]);
        assert!(huge.cells(DataType::Int32).is_err());
    }

    #[test]
    fn result_types_are_iotdbs() {
        let types = [
            DataType::Int32,
            DataType::Int64,
            DataType::Float,
            DataType::Text,
        ];
        let input = |c: usize| types[c];
        let of = |bound: Bound| bound.data_type(&input);
        let column = |c| b(Bound::Column(c));
        for (function, c, want) in [
            (ScalarFunction::Abs, 0, DataType::Int32),
            (ScalarFunction::Abs, 1, DataType::Int64),
            (ScalarFunction::Sign, 0, DataType::Double),
            (ScalarFunction::Ceil, 0, DataType::Double),
        ] {
            assert_eq!(
                of(Bound::Function(function, column(c))),
                want,
                "{function:?}"
            );
        }
        assert_eq!(of(Bound::Negate(column(2))), DataType::Float);
        assert_eq!(of(Bound::Negate(column(3))), DataType::Double);
        assert_eq!(of(Bound::Round(column(0), 2)), DataType::Double);
        assert_eq!(
            of(Bound::Arithmetic(ArithmeticOp::Add, column(0), column(0))),
            DataType::Double
        );
        assert_eq!(of(Bound::Cast(DataType::Int64, column(3))), DataType::Int64);
        assert_eq!(of(Bound::IsNull(column(3))), DataType::Boolean);
        assert_eq!(of(Bound::Negate(b(Bound::Time))), DataType::Int64);
    }

    #[test]
    fn round_halves_to_even_at_its_places_as_java_rint() {
        let page = page(vec![vec![
            Some(WireValue::Double(0.5)),
            Some(WireValue::Double(1.5)),
            Some(WireValue::Double(2.345)),
            Some(WireValue::Double(-25.0)),
        ]]);
        let round = |places| match Bound::Round(b(Bound::Column(0)), places).evaluate(&page) {
            Vector::Number(values, _) => values,
            other => panic!("{other:?}"),
        };
        assert_eq!(round(0), vec![0.0, 2.0, 2.0, -25.0]);
        assert_eq!(round(1)[2], 2.3);
        assert_eq!(round(-1)[3], -20.0);
    }

    #[test]
    fn pages_align_series_on_the_union_of_their_times_and_keep_passing_rows() {
        let mut a = PointColumn::new(DataType::Int32);
        a.timestamps = vec![1, 3];
        a.values = Values::Int32(vec![10, 30]);
        let mut b_ = PointColumn::new(DataType::Text);
        b_.timestamps = vec![2, 3];
        b_.values = Values::Text(vec![Bytes::from("b"), Bytes::from("c")]);
        let mut page = Page::align(vec![a, b_]);
        assert_eq!(page.times, vec![1, 2, 3]);
        assert_eq!(page.columns[0].valid, vec![true, false, true]);
        assert_eq!(page.cell(1, 1), Some(WireValue::Text(Bytes::from("b"))));
        page.retain(&[false, true, true]);
        assert_eq!(page.times, vec![2, 3]);
        assert_eq!(
            page.rows(),
            vec![
                vec![None, Some(WireValue::Text(Bytes::from("b")))],
                vec![
                    Some(WireValue::Int32(30)),
                    Some(WireValue::Text(Bytes::from("c")))
                ],
            ]
        );
    }

    /// Columnar against per-row evaluation over 1,000,000 rows (two DOUBLE/INT64 series):
    /// the filter `s0 * 2 + abs(s1) > 10` and the select list `s0 + s1, sin(s0)`, from the
    /// fetched points to the passing mask and the output cells. A benchmark, not a test:
    /// `cargo test --release -p iotdb-node --lib select::vector::tests::bench -- --ignored
    /// --nocapture`.
    #[test]
    #[ignore]
    fn bench_columnar_against_per_row() {
        use std::time::Instant;
        const ROWS: usize = 1_000_000;
        let mut rng = StdRng::seed_from_u64(1);
        let mut s0 = PointColumn::new(DataType::Double);
        let mut s1 = PointColumn::new(DataType::Int64);
        s0.timestamps = (0..ROWS as i64).collect();
        s0.values = Values::Double((0..ROWS).map(|_| rng.gen_range(0.0..100.0)).collect());
        // Every tenth row of s1 missing.
        s1.timestamps = (0..ROWS as i64).filter(|t| t % 10 != 0).collect();
        s1.values = Values::Int64(
            s1.timestamps
                .iter()
                .map(|_| rng.gen_range(-50..50))
                .collect(),
        );
        let column = |c| b(Bound::Column(c));
        let filter = Bound::Compare(
            CompareOp::Greater,
            b(Bound::Arithmetic(
                ArithmeticOp::Add,
                b(Bound::Arithmetic(
                    ArithmeticOp::Multiply,
                    column(0),
                    b(Bound::Constant(Scalar::Number(2.0))),
                )),
                b(Bound::Function(ScalarFunction::Abs, column(1))),
            )),
            b(Bound::Constant(Scalar::Number(10.0))),
        );
        let items = [
            Bound::Arithmetic(ArithmeticOp::Add, column(0), column(1)),
            Bound::Function(ScalarFunction::Sin, column(0)),
        ];
        let points = vec![s0, s1];
        let median = |mut runs: Vec<f64>| {
            runs.sort_by(f64::total_cmp);
            runs[runs.len() / 2]
        };
        let time = |f: &mut dyn FnMut() -> usize| {
            let runs = (0..5)
                .map(|_| {
                    let start = Instant::now();
                    std::hint::black_box(f());
                    start.elapsed().as_secs_f64() * 1e3
                })
                .collect();
            median(runs)
        };
        // Per row: the points as rows of wire cells, each row through the tree.
        let per_row_filter = time(&mut || {
            let rows = Page::align(points.clone()).rows();
            (0..rows.len())
                .filter(|&r| eval_row(&filter, r as i64, &rows[r]) == Scalar::Bool(true))
                .count()
        });
        let per_row_items = time(&mut || {
            let rows = Page::align(points.clone()).rows();
            let mut cells = 0;
            for (r, row) in rows.iter().enumerate() {
                for item in &items {
                    let cell = match eval_row(item, r as i64, row) {
                        Scalar::Number(v) => Some(WireValue::Double(v)),
                        _ => None,
                    };
                    cells += usize::from(cell.is_some());
                }
            }
            cells
        });
        let columnar_filter = time(&mut || {
            let page = Page::align(points.clone());
            filter
                .evaluate(&page)
                .truth()
                .iter()
                .filter(|t| **t)
                .count()
        });
        let columnar_items = time(&mut || {
            let page = Page::align(points.clone());
            items
                .iter()
                .map(|item| item.evaluate(&page).cells(DataType::Double).unwrap().len())
                .sum()
        });
        println!(
            "{ROWS} rows, median of 5 (ms): filter per-row {per_row_filter:.1} columnar \
             {columnar_filter:.1}; select list per-row {per_row_items:.1} columnar \
             {columnar_items:.1}"
        );
    }
}
