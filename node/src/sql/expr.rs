//! Expressions of a `WHERE` (and `HAVING`) clause: comparisons on series and time, `AND`,
//! `OR`, `NOT`, `IN`, `BETWEEN`, `LIKE`, `REGEXP`, `IS [NOT] NULL`, and arithmetic.
//!
//! Paths in an expression are suffixes of the FROM paths, as in the select list; the node
//! expands them against the schema. [`split_time_filter`] takes the conjuncts that only
//! bound time out of a `WHERE` so they narrow the partitions read, as IoTDB's time filter
//! does; what is left is the value filter.

use super::ast::{Comparison, Literal, TimeExpr, TimeFilter};
use super::path::PathPattern;

/// An arithmetic operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArithmeticOp {
    Add,
    Subtract,
    Multiply,
    Divide,
    Modulo,
}

/// Built-in functions of one number (IoTDB's math functions; `round` also takes the
/// decimal places to keep).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScalarFunction {
    Abs,
    Sin,
    Cos,
    Tan,
    Asin,
    Acos,
    Atan,
    Sinh,
    Cosh,
    Tanh,
    Degrees,
    Radians,
    Sqrt,
    Exp,
    Ln,
    Log10,
    Ceil,
    Floor,
    Round,
    Sign,
}

impl ScalarFunction {
    pub fn from_name(name: &str) -> Option<ScalarFunction> {
        Some(match name.to_ascii_lowercase().as_str() {
            "abs" => ScalarFunction::Abs,
            "sin" => ScalarFunction::Sin,
            "cos" => ScalarFunction::Cos,
            "tan" => ScalarFunction::Tan,
            "asin" => ScalarFunction::Asin,
            "acos" => ScalarFunction::Acos,
            "atan" => ScalarFunction::Atan,
            "sinh" => ScalarFunction::Sinh,
            "cosh" => ScalarFunction::Cosh,
            "tanh" => ScalarFunction::Tanh,
            "degrees" => ScalarFunction::Degrees,
            "radians" => ScalarFunction::Radians,
            "sqrt" => ScalarFunction::Sqrt,
            "exp" => ScalarFunction::Exp,
            "ln" => ScalarFunction::Ln,
            "log10" => ScalarFunction::Log10,
            "ceil" => ScalarFunction::Ceil,
            "floor" => ScalarFunction::Floor,
            "round" => ScalarFunction::Round,
            "sign" => ScalarFunction::Sign,
            _ => return None,
        })
    }

    /// The function of `x`, as Java's `Math` computes it (IoTDB's definition): `round` is
    /// `Math.rint`, halves to even.
    pub fn apply(self, x: f64) -> f64 {
        match self {
            ScalarFunction::Abs => x.abs(),
            ScalarFunction::Sin => x.sin(),
            ScalarFunction::Cos => x.cos(),
            ScalarFunction::Tan => x.tan(),
            ScalarFunction::Asin => x.asin(),
            ScalarFunction::Acos => x.acos(),
            ScalarFunction::Atan => x.atan(),
            ScalarFunction::Sinh => x.sinh(),
            ScalarFunction::Cosh => x.cosh(),
            ScalarFunction::Tanh => x.tanh(),
            ScalarFunction::Degrees => x.to_degrees(),
            ScalarFunction::Radians => x.to_radians(),
            ScalarFunction::Sqrt => x.sqrt(),
            ScalarFunction::Exp => x.exp(),
            ScalarFunction::Ln => x.ln(),
            ScalarFunction::Log10 => x.log10(),
            ScalarFunction::Ceil => x.ceil(),
            ScalarFunction::Floor => x.floor(),
            ScalarFunction::Round => x.round_ties_even(),
            ScalarFunction::Sign => {
                if x == 0.0 {
                    0.0
                } else {
                    x.signum()
                }
            }
        }
    }
}

/// A comparison operator, `!=` included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompareOp {
    Less,
    LessEqual,
    Greater,
    GreaterEqual,
    Equal,
    NotEqual,
}

impl CompareOp {
    /// The operator with its operands swapped (`5 < s1` is `s1 > 5`).
    pub fn flipped(self) -> CompareOp {
        match self {
            CompareOp::Less => CompareOp::Greater,
            CompareOp::LessEqual => CompareOp::GreaterEqual,
            CompareOp::Greater => CompareOp::Less,
            CompareOp::GreaterEqual => CompareOp::LessEqual,
            other => other,
        }
    }

    /// Whether `a op b` holds for operands ordered `ordering` (`a` against `b`).
    pub fn holds(self, ordering: std::cmp::Ordering) -> bool {
        use std::cmp::Ordering;
        match self {
            CompareOp::Less => ordering == Ordering::Less,
            CompareOp::LessEqual => ordering != Ordering::Greater,
            CompareOp::Greater => ordering == Ordering::Greater,
            CompareOp::GreaterEqual => ordering != Ordering::Less,
            CompareOp::Equal => ordering == Ordering::Equal,
            CompareOp::NotEqual => ordering != Ordering::Equal,
        }
    }
}

/// One expression node.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    /// `time` / `timestamp`.
    Time,
    /// A series, as a suffix of the FROM paths (`s1`, `d1.s1`).
    Path(PathPattern),
    /// A constant; datetimes are already milliseconds.
    Constant(Literal),
    /// `now()` plus an offset, resolved by the node against its clock.
    Now {
        offset_ms: i64,
    },
    /// `-e`.
    Negate(Box<Expr>),
    Arithmetic(ArithmeticOp, Box<Expr>, Box<Expr>),
    Compare(CompareOp, Box<Expr>, Box<Expr>),
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Not(Box<Expr>),
    /// `cast(e AS type)`.
    Cast {
        expr: Box<Expr>,
        data_type: super::ast::DataType,
    },
    /// `e [NOT] IN (c, ...)`.
    In {
        expr: Box<Expr>,
        list: Vec<Literal>,
        negated: bool,
    },
    /// `e [NOT] BETWEEN low AND high` (both ends included).
    Between {
        expr: Box<Expr>,
        low: Box<Expr>,
        high: Box<Expr>,
        negated: bool,
    },
    /// `e [NOT] LIKE 'pattern'`.
    Like {
        expr: Box<Expr>,
        pattern: String,
        negated: bool,
    },
    /// `e [NOT] REGEXP 'pattern'`.
    Regexp {
        expr: Box<Expr>,
        pattern: String,
        negated: bool,
    },
    /// `e IS [NOT] NULL`.
    IsNull {
        expr: Box<Expr>,
        negated: bool,
    },
    /// `f(args)`: an aggregate in `HAVING`, or a built-in function.
    Function {
        name: String,
        args: Vec<Expr>,
    },
}

impl Expr {
    /// The top-level `AND` operands, in order.
    pub fn conjuncts(self) -> Vec<Expr> {
        match self {
            Expr::And(left, right) => {
                let mut out = left.conjuncts();
                out.extend(right.conjuncts());
                out
            }
            other => vec![other],
        }
    }

    /// The conjunction of `parts`; `None` when empty.
    pub fn all_of(parts: Vec<Expr>) -> Option<Expr> {
        parts
            .into_iter()
            .reduce(|left, right| Expr::And(Box::new(left), Box::new(right)))
    }

    /// Every path the expression names, in order of appearance.
    pub fn paths(&self) -> Vec<&PathPattern> {
        let mut out = Vec::new();
        self.visit(&mut |e| {
            if let Expr::Path(p) = e {
                out.push(p);
            }
        });
        out
    }

    /// Calls `f` on this node and every node below it.
    pub fn visit<'a>(&'a self, f: &mut impl FnMut(&'a Expr)) {
        f(self);
        match self {
            Expr::Time | Expr::Path(_) | Expr::Constant(_) | Expr::Now { .. } => {}
            Expr::Negate(e) | Expr::Not(e) | Expr::Cast { expr: e, .. } => e.visit(f),
            Expr::In { expr, .. }
            | Expr::Like { expr, .. }
            | Expr::Regexp { expr, .. }
            | Expr::IsNull { expr, .. } => expr.visit(f),
            Expr::Arithmetic(_, a, b)
            | Expr::Compare(_, a, b)
            | Expr::And(a, b)
            | Expr::Or(a, b) => {
                a.visit(f);
                b.visit(f);
            }
            Expr::Between {
                expr, low, high, ..
            } => {
                expr.visit(f);
                low.visit(f);
                high.visit(f);
            }
            Expr::Function { args, .. } => args.iter().for_each(|a| a.visit(f)),
        }
    }
}

/// The time-only conjuncts of `filter` as a [`TimeFilter`], and the rest (the value
/// filter). `time op constant`, `constant op time` and `time BETWEEN a AND b` are time
/// conjuncts; `time != c` and time inside an `OR` stay in the value filter.
pub fn split_time_filter(filter: Expr) -> (Option<TimeFilter>, Option<Expr>) {
    let mut comparisons = Vec::new();
    let mut rest = Vec::new();
    for conjunct in filter.conjuncts() {
        match time_conjunct(&conjunct) {
            Some(parts) => comparisons.extend(parts),
            None => rest.push(conjunct),
        }
    }
    let time = (!comparisons.is_empty()).then_some(TimeFilter { comparisons });
    (time, Expr::all_of(rest))
}

fn time_conjunct(e: &Expr) -> Option<Vec<(Comparison, TimeExpr)>> {
    let constant = |e: &Expr| match e {
        Expr::Constant(Literal::Integer(ms)) => Some(TimeExpr::Absolute(*ms)),
        // A quoted datetime, as IoTDB accepts in a time filter.
        Expr::Constant(Literal::Text(text)) => super::time::parse_datetime_millis(text)
            .ok()
            .map(TimeExpr::Absolute),
        Expr::Now { offset_ms } => Some(TimeExpr::Now {
            offset_ms: *offset_ms,
        }),
        _ => None,
    };
    let comparison = |op: CompareOp| match op {
        CompareOp::Less => Some(Comparison::Less),
        CompareOp::LessEqual => Some(Comparison::LessEqual),
        CompareOp::Greater => Some(Comparison::Greater),
        CompareOp::GreaterEqual => Some(Comparison::GreaterEqual),
        CompareOp::Equal => Some(Comparison::Equal),
        CompareOp::NotEqual => None,
    };
    match e {
        Expr::Compare(op, left, right) => match (left.as_ref(), right.as_ref()) {
            (Expr::Time, other) => Some(vec![(comparison(*op)?, constant(other)?)]),
            (other, Expr::Time) => Some(vec![(comparison(op.flipped())?, constant(other)?)]),
            _ => None,
        },
        Expr::Between {
            expr,
            low,
            high,
            negated: false,
        } if **expr == Expr::Time => Some(vec![
            (Comparison::GreaterEqual, constant(low)?),
            (Comparison::LessEqual, constant(high)?),
        ]),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql::PathNode;

    fn path(name: &str) -> Expr {
        Expr::Path(PathPattern::new(vec![PathNode::Name(name.to_string())]))
    }

    fn int(v: i64) -> Box<Expr> {
        Box::new(Expr::Constant(Literal::Integer(v)))
    }

    #[test]
    fn time_conjuncts_split_from_value_filters() {
        let filter = Expr::And(
            Box::new(Expr::Compare(
                CompareOp::GreaterEqual,
                Box::new(Expr::Time),
                int(10),
            )),
            Box::new(Expr::And(
                Box::new(Expr::Compare(
                    CompareOp::Greater,
                    Box::new(path("s1")),
                    int(5),
                )),
                Box::new(Expr::Compare(
                    CompareOp::Greater,
                    int(20),
                    Box::new(Expr::Time),
                )),
            )),
        );
        let (time, rest) = split_time_filter(filter);
        assert_eq!(
            time.unwrap().comparisons,
            vec![
                (Comparison::GreaterEqual, TimeExpr::Absolute(10)),
                (Comparison::Less, TimeExpr::Absolute(20)),
            ]
        );
        assert_eq!(
            rest,
            Some(Expr::Compare(
                CompareOp::Greater,
                Box::new(path("s1")),
                int(5)
            ))
        );
        let or = Expr::Or(
            Box::new(Expr::Compare(CompareOp::Less, Box::new(Expr::Time), int(1))),
            Box::new(Expr::Compare(
                CompareOp::Greater,
                Box::new(Expr::Time),
                int(9),
            )),
        );
        let (time, rest) = split_time_filter(or.clone());
        assert!(time.is_none());
        assert_eq!(rest, Some(or));
    }
}
