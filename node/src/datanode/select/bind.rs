//! Expressions bound to result columns (evaluated a page at a time, see `select/vector`).
//!
//! A `WHERE` or `HAVING` expression names series by suffix paths (and, in `HAVING`,
//! aggregates such as `count(s1)`). Binding replaces each such *leaf* by the index of a
//! column; a leaf that matches several columns expands the expression into one copy per
//! combination, all of which must hold (IoTDB's rule for wildcards in a filter). A leaf
//! that matches nothing is null, so a comparison on it is never true.
//!
//! Evaluation (`Bound::evaluate`, on columns) follows SQL's three-valued logic: a
//! comparison with null is null, `AND` is false if either side is false, `OR` true if
//! either is true, and a row passes only when the expression is true. Numbers are compared
//! and computed as f64.
//!
//! [`push_down`] turns the conjuncts that test one column against constants into a
//! storage [`ValueFilter`] for that column, so the region filters (and skips chunks by
//! their statistics) before anything is aligned.

use bytes::Bytes;
use iotdb_net::{Status, Value as WireValue};
use iotdb_storage::{self as storage, Operand, ValueFilter};

use crate::sql::{ArithmeticOp, CompareOp, Expr, Literal, ScalarFunction};

/// Most copies a wildcard expansion may make of one expression.
pub const EXPANSIONS_MAX: usize = 4096;

/// A value during evaluation.
#[derive(Clone, Debug, PartialEq)]
pub enum Scalar {
    Null,
    Bool(bool),
    Number(f64),
    Text(Bytes),
}

impl Scalar {
    pub fn of(value: Option<&WireValue>) -> Scalar {
        match value {
            None => Scalar::Null,
            Some(WireValue::Boolean(b)) => Scalar::Bool(*b),
            Some(WireValue::Int32(v)) => Scalar::Number(f64::from(*v)),
            Some(WireValue::Int64(v)) => Scalar::Number(*v as f64),
            Some(WireValue::Float(v)) => Scalar::Number(f64::from(*v)),
            Some(WireValue::Double(v)) => Scalar::Number(*v),
            Some(WireValue::Text(t)) => Scalar::Text(t.clone()),
        }
    }

    fn of_literal(literal: &Literal) -> Scalar {
        match literal {
            Literal::Integer(v) => Scalar::Number(*v as f64),
            Literal::Float(v) => Scalar::Number(*v),
            Literal::Text(t) => Scalar::Text(Bytes::from(t.clone())),
            Literal::Boolean(b) => Scalar::Bool(*b),
            Literal::Null => Scalar::Null,
        }
    }

    fn operand(&self) -> Option<Operand> {
        match self {
            Scalar::Number(v) => Some(Operand::Number(*v)),
            Scalar::Text(t) => Some(Operand::Text(t.clone())),
            Scalar::Bool(b) => Some(Operand::Boolean(*b)),
            Scalar::Null => None,
        }
    }
}

/// An expression whose leaves are column indices.
#[derive(Clone, Debug)]
pub enum Bound {
    Time,
    Column(usize),
    Constant(Scalar),
    Negate(Box<Bound>),
    Arithmetic(ArithmeticOp, Box<Bound>, Box<Bound>),
    Compare(CompareOp, Box<Bound>, Box<Bound>),
    And(Box<Bound>, Box<Bound>),
    Or(Box<Bound>, Box<Bound>),
    Not(Box<Bound>),
    In(Box<Bound>, Vec<Scalar>),
    /// A text pattern (`LIKE`, `REGEXP`) as a storage filter, evaluated on one value.
    Matches(Box<Bound>, ValueFilter),
    IsNull(Box<Bound>),
    Function(ScalarFunction, Box<Bound>),
    /// `round(e, places)`: `Math.rint(e · 10^places) / 10^places`, as IoTDB rounds.
    Round(Box<Bound>, i32),
    /// `cast(e AS type)`: the value converted to the type's kind of scalar (see
    /// [`cast`]).
    Cast(storage::DataType, Box<Bound>),
}

/// `scalar` as `to` holds it: integers truncate toward zero, booleans are 1 and 0 as
/// numbers and non-zero as booleans, text parses (null when it does not), anything prints
/// as text. Range checks of the narrower types are the caller's (on output).
pub fn cast(scalar: Scalar, to: storage::DataType) -> Scalar {
    use storage::DataType as T;
    match (to, scalar) {
        (_, Scalar::Null) => Scalar::Null,
        (T::Int32 | T::Int64, Scalar::Number(v)) => Scalar::Number(v.trunc()),
        (T::Float | T::Double, Scalar::Number(v)) => Scalar::Number(v),
        (T::Int32 | T::Int64 | T::Float | T::Double, Scalar::Bool(b)) => {
            Scalar::Number(if b { 1.0 } else { 0.0 })
        }
        (T::Int32 | T::Int64 | T::Float | T::Double, Scalar::Text(t)) => {
            match std::str::from_utf8(&t)
                .ok()
                .and_then(|t| t.trim().parse::<f64>().ok())
            {
                Some(v) if matches!(to, T::Int32 | T::Int64) => Scalar::Number(v.trunc()),
                Some(v) => Scalar::Number(v),
                None => Scalar::Null,
            }
        }
        (T::Boolean, Scalar::Number(v)) => Scalar::Bool(v != 0.0),
        (T::Boolean, Scalar::Bool(b)) => Scalar::Bool(b),
        (T::Boolean, Scalar::Text(t)) => match std::str::from_utf8(&t).map(str::trim) {
            Ok(t) if t.eq_ignore_ascii_case("true") => Scalar::Bool(true),
            Ok(t) if t.eq_ignore_ascii_case("false") => Scalar::Bool(false),
            _ => Scalar::Null,
        },
        (T::Text, Scalar::Number(v)) => Scalar::Text(Bytes::from(v.to_string())),
        (T::Text, Scalar::Bool(b)) => Scalar::Text(Bytes::from(b.to_string())),
        (T::Text, text @ Scalar::Text(_)) => text,
    }
}

/// Binds `expr`: `leaf` says whether a node is a leaf and, if so, which columns it names.
/// Several matches expand the expression (see the module docs); the copies are ANDed.
pub fn bind(
    expr: &Expr,
    now_ms: i64,
    leaf: &mut dyn FnMut(&Expr) -> Option<Vec<usize>>,
) -> Result<Bound, Status> {
    let copies = bind_each(expr, now_ms, leaf)?;
    Ok(copies
        .into_iter()
        .map(|(bound, _)| bound)
        .reduce(|so_far, bound| Bound::And(Box::new(so_far), Box::new(bound)))
        .expect("at least one combination"))
}

/// One copy of an expanded expression, with the column each leaf took in it (`None`: the
/// leaf matched nothing).
pub type BoundCopy = (Bound, Vec<(Expr, Option<usize>)>);

/// Each copy of `expr` a wildcard expansion makes (one per combination of the columns its
/// leaves match), with the column each leaf took in it (`None`: the leaf matched nothing).
pub fn bind_each(
    expr: &Expr,
    now_ms: i64,
    leaf: &mut dyn FnMut(&Expr) -> Option<Vec<usize>>,
) -> Result<Vec<BoundCopy>, Status> {
    let mut leaves: Vec<(Expr, Vec<usize>)> = Vec::new();
    collect_leaves(expr, leaf, &mut leaves);
    let combinations = leaves
        .iter()
        .try_fold(1usize, |n, (_, columns)| {
            n.checked_mul(columns.len().max(1))
        })
        .filter(|n| *n <= EXPANSIONS_MAX)
        .ok_or_else(|| {
            Status::illegal_parameter(format!(
                "the expression expands to more than {EXPANSIONS_MAX} combinations of series"
            ))
        })?;
    let mut out = Vec::with_capacity(combinations);
    for combination in 0..combinations {
        let mut rest = combination;
        let choice: Vec<Option<usize>> = leaves
            .iter()
            .map(|(_, columns)| {
                if columns.is_empty() {
                    return None;
                }
                let pick = columns[rest % columns.len()];
                rest /= columns.len();
                Some(pick)
            })
            .collect();
        let bound = bind_with(expr, now_ms, &leaves, &choice)?;
        let taken = leaves.iter().map(|(e, _)| e.clone()).zip(choice).collect();
        out.push((bound, taken));
    }
    Ok(out)
}

fn collect_leaves(
    expr: &Expr,
    leaf: &mut dyn FnMut(&Expr) -> Option<Vec<usize>>,
    leaves: &mut Vec<(Expr, Vec<usize>)>,
) {
    if leaves.iter().any(|(e, _)| e == expr) {
        return;
    }
    if let Some(columns) = leaf(expr) {
        leaves.push((expr.clone(), columns));
        return;
    }
    let mut children: Vec<&Expr> = Vec::new();
    match expr {
        Expr::Time | Expr::Path(_) | Expr::Constant(_) | Expr::Now { .. } => {}
        Expr::Negate(e) | Expr::Not(e) | Expr::Cast { expr: e, .. } => children.push(e),
        Expr::In { expr, .. }
        | Expr::Like { expr, .. }
        | Expr::Regexp { expr, .. }
        | Expr::IsNull { expr, .. } => children.push(expr),
        Expr::Arithmetic(_, a, b) | Expr::Compare(_, a, b) | Expr::And(a, b) | Expr::Or(a, b) => {
            children.push(a);
            children.push(b);
        }
        Expr::Between {
            expr, low, high, ..
        } => children.extend([expr.as_ref(), low.as_ref(), high.as_ref()]),
        Expr::Function { args, .. } => children.extend(args.iter()),
    }
    for child in children {
        collect_leaves(child, leaf, leaves);
    }
}

fn bind_with(
    expr: &Expr,
    now_ms: i64,
    leaves: &[(Expr, Vec<usize>)],
    choice: &[Option<usize>],
) -> Result<Bound, Status> {
    if let Some(i) = leaves.iter().position(|(e, _)| e == expr) {
        return Ok(match choice[i] {
            Some(column) => Bound::Column(column),
            None => Bound::Constant(Scalar::Null),
        });
    }
    let child = |e: &Expr| bind_with(e, now_ms, leaves, choice).map(Box::new);
    let negate = |negated: bool, b: Bound| {
        if negated { Bound::Not(Box::new(b)) } else { b }
    };
    Ok(match expr {
        Expr::Time => Bound::Time,
        Expr::Path(path) => {
            return Err(Status::illegal_parameter(format!(
                "path {path} cannot be used here"
            )));
        }
        Expr::Constant(literal) => Bound::Constant(Scalar::of_literal(literal)),
        Expr::Now { offset_ms } => {
            Bound::Constant(Scalar::Number(now_ms.saturating_add(*offset_ms) as f64))
        }
        Expr::Negate(e) => Bound::Negate(child(e)?),
        Expr::Arithmetic(op, a, b) => Bound::Arithmetic(*op, child(a)?, child(b)?),
        Expr::Compare(op, a, b) => Bound::Compare(*op, child(a)?, child(b)?),
        Expr::And(a, b) => Bound::And(child(a)?, child(b)?),
        Expr::Or(a, b) => Bound::Or(child(a)?, child(b)?),
        Expr::Not(e) => Bound::Not(child(e)?),
        Expr::In {
            expr,
            list,
            negated,
        } => negate(
            *negated,
            Bound::In(child(expr)?, list.iter().map(Scalar::of_literal).collect()),
        ),
        Expr::Between {
            expr,
            low,
            high,
            negated,
        } => {
            let subject = child(expr)?;
            let between = Bound::And(
                Box::new(Bound::Compare(
                    CompareOp::GreaterEqual,
                    subject.clone(),
                    child(low)?,
                )),
                Box::new(Bound::Compare(CompareOp::LessEqual, subject, child(high)?)),
            );
            negate(*negated, between)
        }
        Expr::Like {
            expr,
            pattern,
            negated,
        } => {
            let filter = ValueFilter::like(pattern).map_err(Status::illegal_parameter)?;
            negate(*negated, Bound::Matches(child(expr)?, filter))
        }
        Expr::Regexp {
            expr,
            pattern,
            negated,
        } => {
            let filter = ValueFilter::regexp(pattern).map_err(Status::illegal_parameter)?;
            negate(*negated, Bound::Matches(child(expr)?, filter))
        }
        Expr::IsNull { expr, negated } => negate(*negated, Bound::IsNull(child(expr)?)),
        Expr::Cast { expr, data_type } => {
            let to = data_type.stored().ok_or_else(|| {
                Status::illegal_parameter(format!(
                    "cannot cast to {}: use BOOLEAN, INT32, INT64, FLOAT, DOUBLE or TEXT",
                    data_type.as_str()
                ))
            })?;
            Bound::Cast(to, child(expr)?)
        }
        Expr::Function { name, args } => {
            let function = ScalarFunction::from_name(name).ok_or_else(|| {
                Status::illegal_parameter(format!("unknown function {name} in an expression"))
            })?;
            match (function, args.as_slice()) {
                (ScalarFunction::Round, [arg]) => Bound::Round(child(arg)?, 0),
                (ScalarFunction::Round, [arg, places]) => Bound::Round(
                    child(arg)?,
                    decimal_places(places).ok_or_else(|| {
                        Status::illegal_parameter(
                            "the places of round(x, places) must be an integer constant",
                        )
                    })?,
                ),
                (_, [arg]) => Bound::Function(function, child(arg)?),
                (ScalarFunction::Round, _) => {
                    return Err(Status::illegal_parameter(format!(
                        "function {name} takes one or two arguments"
                    )));
                }
                _ => {
                    return Err(Status::illegal_parameter(format!(
                        "function {name} takes one argument"
                    )));
                }
            }
        }
    })
}

/// The decimal places of `round(x, places)`: an integer constant, perhaps negated.
fn decimal_places(places: &Expr) -> Option<i32> {
    match places {
        Expr::Constant(Literal::Integer(p)) => i32::try_from(*p).ok(),
        Expr::Negate(inner) => decimal_places(inner)?.checked_neg(),
        _ => None,
    }
}

impl Bound {
    /// The top-level `AND` operands.
    fn conjuncts(&self) -> Vec<&Bound> {
        match self {
            Bound::And(a, b) => {
                let mut out = a.conjuncts();
                out.extend(b.conjuncts());
                out
            }
            other => vec![other],
        }
    }

    /// This expression as a filter on the values of column `column`, when it tests only
    /// that column against constants (and is false whenever the column is null).
    fn as_filter(&self, column: usize) -> Option<ValueFilter> {
        let constant = |b: &Bound| match b {
            Bound::Constant(s) => s.operand(),
            _ => None,
        };
        let is_subject = |b: &Bound| matches!(b, Bound::Column(c) if *c == column);
        Some(match self {
            Bound::Compare(op, a, b) if is_subject(a) => {
                ValueFilter::Compare(storage_op(*op), constant(b)?)
            }
            Bound::Compare(op, a, b) if is_subject(b) => {
                ValueFilter::Compare(storage_op(op.flipped()), constant(a)?)
            }
            Bound::In(e, list) if is_subject(e) => ValueFilter::In(
                list.iter()
                    .map(Scalar::operand)
                    .collect::<Option<Vec<Operand>>>()?,
            ),
            Bound::Matches(e, filter) if is_subject(e) => filter.clone(),
            Bound::Not(inner) if matches!(**inner, Bound::IsNull(ref e) if is_subject(e)) => {
                ValueFilter::Any
            }
            Bound::Not(inner) => ValueFilter::Not(Box::new(inner.as_filter(column)?)),
            Bound::And(a, b) => ValueFilter::And(vec![a.as_filter(column)?, b.as_filter(column)?]),
            Bound::Or(a, b) => ValueFilter::Or(vec![a.as_filter(column)?, b.as_filter(column)?]),
            _ => return None,
        })
    }

    /// The columns the expression reads.
    fn columns(&self, out: &mut Vec<usize>) {
        match self {
            Bound::Column(c) => {
                if !out.contains(c) {
                    out.push(*c);
                }
            }
            Bound::Time | Bound::Constant(_) => {}
            Bound::Negate(e)
            | Bound::Not(e)
            | Bound::In(e, _)
            | Bound::Matches(e, _)
            | Bound::IsNull(e)
            | Bound::Function(_, e)
            | Bound::Round(e, _)
            | Bound::Cast(_, e) => e.columns(out),
            Bound::Arithmetic(_, a, b)
            | Bound::Compare(_, a, b)
            | Bound::And(a, b)
            | Bound::Or(a, b) => {
                a.columns(out);
                b.columns(out);
            }
        }
    }
}

/// The value filter each of `columns` columns can take from `filter`: the conjuncts that
/// test that column alone, ANDed. A column with a filter must hold a point at every row
/// that passes, so the others need only be read at its times.
pub fn push_down(filter: &Bound, columns: usize) -> Vec<Option<ValueFilter>> {
    let mut out: Vec<Vec<ValueFilter>> = vec![Vec::new(); columns];
    for conjunct in filter.conjuncts() {
        let mut read = Vec::new();
        conjunct.columns(&mut read);
        if let [column] = read.as_slice()
            && *column < columns
            && let Some(f) = conjunct.as_filter(*column)
        {
            out[*column].push(f);
        }
    }
    out.into_iter()
        .map(|mut filters| match filters.len() {
            0 => None,
            1 => filters.pop(),
            _ => Some(ValueFilter::And(filters)),
        })
        .collect()
}

fn storage_op(op: CompareOp) -> storage::CompareOp {
    match op {
        CompareOp::Less => storage::CompareOp::Less,
        CompareOp::LessEqual => storage::CompareOp::LessEqual,
        CompareOp::Greater => storage::CompareOp::Greater,
        CompareOp::GreaterEqual => storage::CompareOp::GreaterEqual,
        CompareOp::Equal => storage::CompareOp::Equal,
        CompareOp::NotEqual => storage::CompareOp::NotEqual,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datanode::select::vector::Page;
    use crate::sql::{PathNode, PathPattern};

    /// Whether one row passes, evaluated as a page of one row.
    trait Passes {
        fn passes(&self, time: i64, row: &[Option<WireValue>]) -> bool;
    }

    impl Passes for Bound {
        fn passes(&self, time: i64, row: &[Option<WireValue>]) -> bool {
            let page = Page::of_rows(vec![time], &[row.to_vec()]);
            self.evaluate(&page).truth()[0]
        }
    }

    fn path(name: &str) -> Expr {
        Expr::Path(PathPattern::new(vec![PathNode::Name(name.to_string())]))
    }

    fn num(v: f64) -> Option<WireValue> {
        Some(WireValue::Double(v))
    }

    #[test]
    fn wildcard_leaves_expand_into_a_conjunction_and_null_is_not_true() {
        let filter = Expr::Compare(
            CompareOp::Greater,
            Box::new(path("s")),
            Box::new(Expr::Constant(Literal::Integer(5))),
        );
        // `s` matches columns 0 and 1: both must exceed 5.
        let bound = bind(&filter, 0, &mut |e| {
            matches!(e, Expr::Path(_)).then(|| vec![0, 1])
        })
        .unwrap();
        assert!(bound.passes(0, &[num(6.0), num(7.0)]));
        assert!(!bound.passes(0, &[num(6.0), num(4.0)]));
        assert!(!bound.passes(0, &[num(6.0), None]));
        // NOT of null is null, so a row with a null is still dropped.
        let not = Expr::Not(Box::new(filter.clone()));
        let bound = bind(&not, 0, &mut |e| {
            matches!(e, Expr::Path(_)).then(|| vec![0])
        })
        .unwrap();
        assert!(!bound.passes(0, &[None]));
        assert!(bound.passes(0, &[num(1.0)]));
        // A leaf that matches nothing is null.
        let bound = bind(&filter, 0, &mut |e| {
            matches!(e, Expr::Path(_)).then(Vec::new)
        })
        .unwrap();
        assert!(!bound.passes(0, &[num(9.0)]));
    }

    #[test]
    fn single_column_conjuncts_are_pushed_down() {
        let expr = Expr::And(
            Box::new(Expr::Compare(
                CompareOp::Less,
                Box::new(Expr::Constant(Literal::Integer(5))),
                Box::new(path("a")),
            )),
            Box::new(Expr::Or(
                Box::new(Expr::IsNull {
                    expr: Box::new(path("b")),
                    negated: false,
                }),
                Box::new(Expr::Compare(
                    CompareOp::Greater,
                    Box::new(path("a")),
                    Box::new(path("b")),
                )),
            )),
        );
        let bound = bind(&expr, 0, &mut |e| match e {
            Expr::Path(p) if p.to_string() == "a" => Some(vec![0]),
            Expr::Path(_) => Some(vec![1]),
            _ => None,
        })
        .unwrap();
        let filters = push_down(&bound, 2);
        // 5 < a becomes a > 5 on column 0; the OR reads two columns and stays.
        assert!(matches!(
            &filters[0],
            Some(ValueFilter::Compare(storage::CompareOp::Greater, Operand::Number(n))) if *n == 5.0
        ));
        assert!(filters[1].is_none());
        assert!(bound.passes(0, &[num(6.0), None]));
        assert!(!bound.passes(0, &[num(6.0), num(7.0)]));
    }
}
