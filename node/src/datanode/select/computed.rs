//! Expressions in the select list of a raw query (`SELECT s1 + 1, sin(s2), cast(s3 AS
//! INT32), s1 * s2 FROM ...`), as IoTDB evaluates them: on each row of the series they read
//! (a row exists where any of them has a point; an operand without one is null, and so is
//! the result), named after the expression with its full paths (`root.sg.d1.s1 + 1`).
//!
//! A path matching several series makes one column per combination (IoTDB's expansion).
//! Each item is evaluated on a whole page of rows as columns (`select/vector`), with
//! IoTDB's result types (`Bound::data_type`): unary minus and `abs` keep their operand's
//! type, binary arithmetic and the other math functions are DOUBLE, comparisons and logic
//! BOOLEAN, a cast the type it names; a plain path keeps its series' type and values.

use std::rc::Rc;

use iotdb_net::{ResultSet, Status, Value as WireValue};
use iotdb_storage::{DataType, TimeRange};

use super::bind::{BoundCopy, bind_each};
use super::{Column, Page, RawCursor, RawPart, Row, RowMaker, RowPages, Shard, series_window};
use crate::sql::{
    Aggregate, ArithmeticOp, CompareOp, Expr, Literal, PathPattern, Projection, Select, TimeOrder,
};

/// Where an output column's cells come from.
enum Output {
    /// A fetched series, as it is.
    Column(usize),
    /// An expression bound to the fetched series.
    Computed(super::Bound),
}

/// An output column: its name, type and where its cells come from.
type OutputColumn = (String, DataType, Output);

impl Shard {
    /// A raw query with expressions in its select list (see the module docs).
    pub(in crate::datanode) async fn select_computed(
        self: &Rc<Self>,
        select: &Select,
        range: TimeRange,
        now_ms: i64,
    ) -> Result<RowPages, Status> {
        let Projection::Computed(items) = &select.projection else {
            return Err(Status::internal("not a computed projection"));
        };
        // Each distinct path of the items, with the series it names, resolved once.
        let mut resolved: Vec<(PathPattern, Vec<Column>)> = Vec::new();
        for path in items.iter().flat_map(Expr::paths) {
            if !resolved.iter().any(|(p, _)| p == path) {
                let patterns = select.from.iter().map(|f| f.join(path)).collect();
                resolved.push((path.clone(), self.columns_of(patterns).await?));
            }
        }
        let filter_series = self.resolve_filter_paths(select).await?;
        if select.align_by_device {
            return self
                .select_computed_by_device(select, items, &resolved, &filter_series, range, now_ms)
                .await;
        }
        let (fetched, outputs) = bind_items(items, select, &resolved, None, now_ms)?;
        let outputs = series_window(outputs, select);
        let mut header = ResultSet::new(&[("Time", DataType::Int64)]);
        for (name, data_type, _) in &outputs {
            header.column_names.push(name.clone());
            header.column_types.push(*data_type);
        }
        let cursor = RawCursor::of_select(self, fetched, select, range, now_ms, &filter_series)?;
        let make: RowMaker = Box::new(move |page| {
            let columns = evaluate(&outputs, &page)?;
            Ok(rows_of(&page.times, columns, |_, time| {
                vec![Some(WireValue::Int64(time))]
            }))
        });
        Ok(RowPages::new(
            header,
            vec![RawPart::whole(cursor, make)],
            select,
            1,
        ))
    }

    /// Expressions `ALIGN BY DEVICE`: each device's rows with the items bound to its own
    /// series, columns named by measurement (`s1 + 1`), the union of every device's
    /// columns in order of first appearance (devices in path order); a device without
    /// a column's series has null there.
    async fn select_computed_by_device(
        self: &Rc<Self>,
        select: &Select,
        items: &[Expr],
        resolved: &[(PathPattern, Vec<Column>)],
        filter_series: &[(PathPattern, Vec<Column>)],
        range: TimeRange,
        now_ms: i64,
    ) -> Result<RowPages, Status> {
        let devices: std::collections::BTreeSet<&str> = resolved
            .iter()
            .flat_map(|(_, columns)| columns.iter().map(|c| c.device.as_str()))
            .collect();
        let mut per_device = Vec::with_capacity(devices.len());
        let mut columns: Vec<(String, DataType)> = Vec::new();
        for device in devices {
            let (fetched, outputs) = bind_items(items, select, resolved, Some(device), now_ms)?;
            for (name, data_type, _) in &outputs {
                if !columns.iter().any(|(known, _)| known == name) {
                    columns.push((name.clone(), *data_type));
                }
            }
            per_device.push((device, fetched, outputs));
        }
        let columns = series_window(columns, select);
        let mut result = ResultSet::new(&[("Time", DataType::Int64), ("Device", DataType::Text)]);
        for (name, data_type) in &columns {
            result.column_names.push(name.clone());
            result.column_types.push(*data_type);
        }
        let width = columns.len() + 2;
        let mut parts = Vec::with_capacity(per_device.len());
        for (device, fetched, outputs) in per_device {
            // This device's outputs that are columns of the result, at their positions.
            let (positions, outputs): (Vec<usize>, Vec<OutputColumn>) = outputs
                .into_iter()
                .filter_map(|output| {
                    let at = columns.iter().position(|(name, _)| *name == output.0)?;
                    Some((at + 2, output))
                })
                .unzip();
            if outputs.is_empty() {
                continue;
            }
            let lacking = (2..width).filter(|at| !positions.contains(at)).collect();
            let own = super::within_device(filter_series, device);
            let cursor = RawCursor::of_select(self, fetched, select, range, now_ms, &own)?;
            let device = WireValue::Text(bytes::Bytes::from(device.to_string()));
            let make: RowMaker = Box::new(move |page| {
                let mut rows = Vec::with_capacity(page.len());
                let mut columns: Vec<_> = evaluate(&outputs, &page)?
                    .into_iter()
                    .map(Vec::into_iter)
                    .collect();
                for &time in &page.times {
                    let mut row = vec![None; width];
                    row[0] = Some(WireValue::Int64(time));
                    row[1] = Some(device.clone());
                    for (column, &at) in columns.iter_mut().zip(&positions) {
                        row[at] = column.next().flatten();
                    }
                    rows.push(row);
                }
                Ok(rows)
            });
            parts.push(RawPart {
                cursor,
                make,
                lacking,
            });
        }
        Ok(RowPages::new(result, parts, select, 2))
    }
}

/// The series to fetch and the output columns of raw select `items`, each path bound to
/// the series `resolved` says it names (only `device`'s under `ALIGN BY DEVICE`, and then
/// named by measurement). An item naming a series that does not exist has no column, as
/// in IoTDB; an alias must name one column.
fn bind_items(
    items: &[Expr],
    select: &Select,
    resolved: &[(PathPattern, Vec<Column>)],
    device: Option<&str>,
    now_ms: i64,
) -> Result<(Vec<Column>, Vec<OutputColumn>), Status> {
    let name_of = |column: &Column| match device {
        Some(_) => column.measurement.clone(),
        None => column.path(),
    };
    let mut fetched: Vec<Column> = Vec::new();
    let mut outputs: Vec<OutputColumn> = Vec::new();
    for (index, item) in items.iter().enumerate() {
        // Each path of the item as indexes into `fetched`.
        let mut leaves: Vec<(PathPattern, Vec<usize>)> = Vec::new();
        for path in item.paths() {
            if leaves.iter().any(|(p, _)| p == path) {
                continue;
            }
            let series = resolved
                .iter()
                .find(|(p, _)| p == path)
                .map_or(&[][..], |(_, columns)| columns.as_slice());
            let mut indexes = Vec::new();
            for column in series {
                if device.is_some_and(|device| column.device != device) {
                    continue;
                }
                let at = match fetched.iter().position(|c| c == column) {
                    Some(at) => at,
                    None => {
                        fetched.push(column.clone());
                        fetched.len() - 1
                    }
                };
                indexes.push(at);
            }
            leaves.push((path.clone(), indexes));
        }
        if leaves.iter().any(|(_, indexes)| indexes.is_empty()) {
            continue;
        }
        let first = outputs.len();
        if let Expr::Path(_) = item {
            for &at in &leaves[0].1 {
                let column = &fetched[at];
                outputs.push((name_of(column), column.data_type, Output::Column(at)));
            }
        } else {
            let copies = bind_each(item, now_ms, &mut |e| match e {
                Expr::Path(p) => leaves.iter().find(|(q, _)| q == p).map(|(_, i)| i.clone()),
                _ => None,
            })?;
            push_copies(
                &mut outputs,
                item,
                copies,
                &|at| name_of(&fetched[at]),
                &|at| fetched[at].data_type,
            );
        }
        apply_alias(&mut outputs, first, select, index)?;
    }
    Ok((fetched, outputs))
}

/// Each copy of expression `item` (one per combination of the columns its leaves took) as
/// an output column, named after the expression with `column_name` of each leaf's column,
/// of the type IoTDB gives it over those columns' types (`column_type`).
fn push_copies(
    outputs: &mut Vec<OutputColumn>,
    item: &Expr,
    copies: Vec<BoundCopy>,
    column_name: &dyn Fn(usize) -> String,
    column_type: &dyn Fn(usize) -> DataType,
) {
    for (bound, taken) in copies {
        let data_type = bound.data_type(column_type);
        let name = render(item, &|e| {
            taken
                .iter()
                .find(|(leaf, _)| leaf == e)
                .and_then(|(_, at)| at.map(column_name))
        });
        outputs.push((name, data_type, Output::Computed(bound)));
    }
}

/// Names the columns select item `index` made (`outputs[first..]`) after its alias, if it
/// has one; an alias must name one column.
fn apply_alias(
    outputs: &mut [OutputColumn],
    first: usize,
    select: &Select,
    index: usize,
) -> Result<(), Status> {
    if let Some(Some(alias)) = select.aliases.get(index) {
        if outputs.len() - first != 1 {
            return Err(Status::illegal_parameter(format!(
                "alias '{alias}' can only be matched with one time series"
            )));
        }
        outputs[first].0 = alias.clone();
    }
    Ok(())
}

/// The cells of `outputs` on every row of `page`, a column per output.
fn evaluate(outputs: &[OutputColumn], page: &Page) -> Result<Vec<Vec<Option<WireValue>>>, Status> {
    outputs
        .iter()
        .map(|(name, data_type, output)| match output {
            Output::Column(at) => Ok((0..page.len()).map(|r| page.cell(*at, r)).collect()),
            Output::Computed(bound) => bound
                .evaluate(page)
                .cells(*data_type)
                .map_err(|e| Status::illegal_parameter(format!("{name}: {e}"))),
        })
        .collect()
}

/// Rows of `columns` (one cell per row each), each after the cells `first` makes of its
/// index and time.
fn rows_of(
    times: &[i64],
    columns: Vec<Vec<Option<WireValue>>>,
    mut first: impl FnMut(usize, i64) -> Row,
) -> Vec<Row> {
    let mut columns: Vec<_> = columns.into_iter().map(Vec::into_iter).collect();
    times
        .iter()
        .enumerate()
        .map(|(r, &time)| {
            let mut row = first(r, time);
            row.extend(columns.iter_mut().map(|c| c.next().flatten()));
            row
        })
        .collect()
}

impl Shard {
    /// Expressions of aggregates in the select list (`count(s1) + 1, sum(s1) / count(s1)`,
    /// IoTDB's nested aggregate expressions): the distinct aggregates they (and `HAVING`)
    /// name are computed as a plain aggregate query, then each item is evaluated on its
    /// rows, the series expanded as in raw expressions (`count(root.sg.d1.s1) + 1`; under
    /// `ALIGN BY DEVICE`, by measurement: `count(s1) + 1`). `FILL`, `SLIMIT`, order and
    /// `LIMIT` apply to the evaluated columns. With `only` (under `ALIGN BY DEVICE`), the
    /// rows of those devices alone (see `Shard::select_aggregates_by_device`).
    pub(in crate::datanode) async fn select_aggregate_expressions(
        self: &Rc<Self>,
        select: &Select,
        range: crate::sql::TimeRange,
        now_ms: i64,
        only: Option<&[String]>,
    ) -> Result<ResultSet, Status> {
        let Projection::AggregateExpressions(items) = &select.projection else {
            return Err(Status::internal("not an aggregate expression projection"));
        };
        let mut calls: Vec<Aggregate> = Vec::new();
        let mut collect = |e: &Expr| {
            if let Some(call) = Aggregate::of_call(e)
                && !calls.contains(&call)
            {
                calls.push(call);
            }
        };
        items.iter().for_each(|item| item.visit(&mut collect));
        if let Some(having) = &select.having {
            having.visit(&mut collect);
        }
        let inner = Select {
            projection: Projection::Aggregates(calls.clone()),
            aliases: vec![None; calls.len()],
            fill: None,
            slimit: None,
            soffset: None,
            order: TimeOrder::Ascending,
            limit: None,
            offset: None,
            ..select.clone()
        };
        let aggregated = if select.align_by_device {
            self.select_aggregates_by_device(&inner, range, now_ms, only)
                .await?
        } else {
            self.select_aggregates(&inner, range, now_ms).await?
        };
        let first_value =
            usize::from(select.group_by.is_some()) + usize::from(select.align_by_device);
        if aggregated.column_names.len() <= first_value {
            // Nothing matched: the header alone, as the plain aggregate query answers.
            return Ok(aggregated);
        }
        let names = &aggregated.column_names;
        let mut outputs: Vec<OutputColumn> = Vec::new();
        for (index, item) in items.iter().enumerate() {
            let mut leaves: Vec<(Aggregate, Vec<usize>)> = Vec::new();
            for call in calls.iter().filter(|call| {
                let mut named = false;
                item.visit(&mut |e| named |= Aggregate::of_call(e).as_ref() == Some(*call));
                named
            }) {
                let columns = self
                    .aggregate_columns(select, call.function, &call.path, names, first_value)
                    .await?
                    .unwrap_or_default();
                leaves.push((call.clone(), columns));
            }
            // As IoTDB: an item naming no series has no column.
            if leaves.iter().any(|(_, columns)| columns.is_empty()) {
                continue;
            }
            let first = outputs.len();
            if Aggregate::of_call(item).is_some() {
                for &at in &leaves[0].1 {
                    outputs.push((
                        names[at].clone(),
                        aggregated.column_types[at],
                        Output::Column(at),
                    ));
                }
            } else {
                let leaf_columns = |e: &Expr| {
                    let call = Aggregate::of_call(e)?;
                    leaves
                        .iter()
                        .find(|(c, _)| *c == call)
                        .map(|(_, i)| i.clone())
                };
                let copies = bind_each(item, now_ms, &mut |e| leaf_columns(e))?;
                push_copies(&mut outputs, item, copies, &|at| names[at].clone(), &|at| {
                    aggregated.column_types[at]
                });
            }
            apply_alias(&mut outputs, first, select, index)?;
        }
        let outputs = series_window(outputs, select);
        let mut result = ResultSet {
            column_names: names[..first_value].to_vec(),
            column_types: aggregated.column_types[..first_value].to_vec(),
            rows: Vec::new(),
        };
        for (name, data_type, _) in &outputs {
            result.column_names.push(name.clone());
            result.column_types.push(*data_type);
        }
        // The aggregate rows transposed into columns once, every item evaluated on them.
        let page = super::rows_page(&aggregated.rows, select.group_by.is_some());
        let columns = evaluate(&outputs, &page)?;
        let mut rows = rows_of(&page.times, columns, |r, _| {
            aggregated.rows[r][..first_value].to_vec()
        });
        if select.align_by_device {
            super::finish_device_rows(&mut result, rows, select, first_value);
        } else {
            if let Some(how) = &select.fill {
                super::fill(how, &result.column_types, &mut rows, first_value);
            }
            if select.order == TimeOrder::Descending && select.group_by.is_some() {
                rows.reverse();
            }
            result.rows = super::page(rows, select);
        }
        Ok(result)
    }
}

/// The column name of an expression: its text with each path replaced by the series it
/// took (`path` answers for a leaf), as IoTDB names expression columns.
fn render(expr: &Expr, path: &dyn Fn(&Expr) -> Option<String>) -> String {
    if let Some(text) = path(expr) {
        return text;
    }
    let nested = |e: &Expr| {
        let text = render(e, path);
        match e {
            Expr::Arithmetic(..) | Expr::Compare(..) | Expr::And(..) | Expr::Or(..) => {
                format!("({text})")
            }
            _ => text,
        }
    };
    match expr {
        Expr::Path(p) => path(expr).unwrap_or_else(|| p.to_string()),
        Expr::Time => "Time".to_string(),
        Expr::Now { .. } => "now()".to_string(),
        Expr::Constant(literal) => match literal {
            Literal::Integer(v) => v.to_string(),
            Literal::Float(v) => v.to_string(),
            Literal::Text(t) => format!("'{t}'"),
            Literal::Boolean(b) => b.to_string(),
            Literal::Null => "null".to_string(),
        },
        Expr::Negate(e) => format!("-{}", nested(e)),
        Expr::Arithmetic(op, a, b) => {
            let op = match op {
                ArithmeticOp::Add => "+",
                ArithmeticOp::Subtract => "-",
                ArithmeticOp::Multiply => "*",
                ArithmeticOp::Divide => "/",
                ArithmeticOp::Modulo => "%",
            };
            format!("{} {op} {}", nested(a), nested(b))
        }
        Expr::Compare(op, a, b) => {
            let op = match op {
                CompareOp::Less => "<",
                CompareOp::LessEqual => "<=",
                CompareOp::Greater => ">",
                CompareOp::GreaterEqual => ">=",
                CompareOp::Equal => "=",
                CompareOp::NotEqual => "!=",
            };
            format!("{} {op} {}", nested(a), nested(b))
        }
        Expr::And(a, b) => format!("{} & {}", nested(a), nested(b)),
        Expr::Or(a, b) => format!("{} | {}", nested(a), nested(b)),
        Expr::Not(e) => format!("!{}", nested(e)),
        Expr::Cast { expr, data_type } => {
            format!("CAST({} AS {})", render(expr, path), data_type.as_str())
        }
        Expr::Function { name, args } => {
            let args: Vec<String> = args.iter().map(|a| render(a, path)).collect();
            format!("{name}({})", args.join(", "))
        }
        Expr::In {
            expr,
            list,
            negated,
        } => {
            let list: Vec<String> = list
                .iter()
                .map(|l| render(&Expr::Constant(l.clone()), path))
                .collect();
            let not = if *negated { "NOT " } else { "" };
            format!("{} {not}IN ({})", nested(expr), list.join(", "))
        }
        Expr::Between {
            expr,
            low,
            high,
            negated,
        } => {
            let not = if *negated { "NOT " } else { "" };
            format!(
                "{} {not}BETWEEN {} AND {}",
                nested(expr),
                nested(low),
                nested(high)
            )
        }
        Expr::Like {
            expr,
            pattern,
            negated,
        } => {
            let not = if *negated { "NOT " } else { "" };
            format!("{} {not}LIKE '{pattern}'", nested(expr))
        }
        Expr::Regexp {
            expr,
            pattern,
            negated,
        } => {
            let not = if *negated { "NOT " } else { "" };
            format!("{} {not}REGEXP '{pattern}'", nested(expr))
        }
        Expr::IsNull { expr, negated } => {
            let not = if *negated { "NOT " } else { "" };
            format!("{} IS {not}NULL", nested(expr))
        }
    }
}
