//! `FILL(PREVIOUS | LINEAR | constant)`: null cells of a result filled column by column, in
//! time order, before the result is ordered and paged (IoTDB fills before `LIMIT`).
//!
//! `PREVIOUS` takes the latest earlier non-null value of the column; `LINEAR` interpolates
//! in time between the earlier and the later non-null value of a numeric column (integers
//! truncated) and leaves a cell without both neighbours null; a constant fills the columns
//! whose type it fits (a number the numeric columns, an integer also the integer ones, a
//! string the text columns, a boolean the boolean ones).

use iotdb_model::DataType;
use iotdb_net::Value as WireValue;

use crate::sql::{Fill, Literal};

/// Fills the nulls of `rows` (time order, times in column 0) in columns `first..`.
pub fn fill(fill: &Fill, types: &[DataType], rows: &mut [Vec<Option<WireValue>>], first: usize) {
    match fill {
        Fill::Previous => fill_previous(rows, first, &mut vec![None; types.len()]),
        Fill::Linear => {
            for (column, data_type) in types.iter().enumerate().skip(first) {
                linear(*data_type, rows, column);
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

fn linear(data_type: DataType, rows: &mut [Vec<Option<WireValue>>], column: usize) {
    let known: Vec<(usize, i64, f64)> = rows
        .iter()
        .enumerate()
        .filter_map(|(i, row)| {
            let value = row[column].as_ref().and_then(number)?;
            Some((i, time_of(row)?, value))
        })
        .collect();
    for pair in known.windows(2) {
        let ((i1, t1, v1), (i2, t2, v2)) = (pair[0], pair[1]);
        for row in rows.iter_mut().take(i2).skip(i1 + 1) {
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
}
