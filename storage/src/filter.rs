//! Value filters pushed down to a region's scan: a predicate on the values of one series
//! (`s1 > 5`, `s1 IN (1, 2)`, `s1 LIKE 'a%'`, and their `AND`/`OR`/`NOT`).
//!
//! A scan applies the filter after the newest-wins merge (an older point that matches may
//! be overwritten by a newer one that does not), so chunk statistics decide only for a
//! chunk that is alone in its time cluster: [`ValueFilter::verdict`] proves from its min
//! and max that every point passes (decode, keep all) or none does (skip the chunk
//! without decoding). [`FilterCounters`] counts how often each case happened.
//!
//! The node checks operand types against the series' type before pushing a filter down; a
//! comparison between kinds that do not meet (text against a number) matches nothing here.

use bytes::Bytes;

use crate::stats::Stats;
use crate::types::{DataType, PointColumn, Values};

/// A comparison operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CompareOp {
    Less,
    LessEqual,
    Greater,
    GreaterEqual,
    Equal,
    NotEqual,
}

impl CompareOp {
    /// Applies the operator to an ordering of `value` against the operand.
    fn holds(self, ordering: Option<std::cmp::Ordering>) -> bool {
        use std::cmp::Ordering::{Equal, Greater, Less};
        match (self, ordering) {
            (_, None) => false,
            (CompareOp::Less, Some(o)) => o == Less,
            (CompareOp::LessEqual, Some(o)) => o != Greater,
            (CompareOp::Greater, Some(o)) => o == Greater,
            (CompareOp::GreaterEqual, Some(o)) => o != Less,
            (CompareOp::Equal, Some(o)) => o == Equal,
            (CompareOp::NotEqual, Some(o)) => o != Equal,
        }
    }
}

/// A constant a value is compared with.
#[derive(Clone, Debug, PartialEq)]
pub enum Operand {
    /// Any number; numeric series compare as f64 (exact for every INT32 and FLOAT, and
    /// for INT64 up to 2^53).
    Number(f64),
    Text(Bytes),
    Boolean(bool),
}

/// A predicate on one series' values.
#[derive(Clone, Debug)]
pub enum ValueFilter {
    /// Every point (`IS NOT NULL`: the series has a point at that time).
    Any,
    Compare(CompareOp, Operand),
    /// Equal to one of the operands.
    In(Vec<Operand>),
    /// Text matching a regular expression (`REGEXP`, or `LIKE` translated and anchored).
    Matches(regex::Regex),
    Not(Box<ValueFilter>),
    And(Vec<ValueFilter>),
    Or(Vec<ValueFilter>),
}

/// What chunk statistics prove about a filter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Every point passes.
    AllIn,
    /// No point passes.
    AllOut,
    /// Some may: the points must be checked.
    Unknown,
}

impl Verdict {
    fn not(self) -> Verdict {
        match self {
            Verdict::AllIn => Verdict::AllOut,
            Verdict::AllOut => Verdict::AllIn,
            Verdict::Unknown => Verdict::Unknown,
        }
    }
}

/// How a filtered scan used statistics, summed over scans.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FilterCounters {
    /// Chunks skipped without decoding: statistics proved no point passes.
    pub chunks_skipped: u64,
    /// Chunks decoded and kept whole: statistics proved every point passes.
    pub chunks_all_in: u64,
    /// Chunks (or memtable and merged pieces) whose points were checked one by one.
    pub pieces_checked: u64,
    /// Points checked one by one.
    pub points_checked: u64,
}

impl FilterCounters {
    pub fn add(&mut self, other: &FilterCounters) {
        self.chunks_skipped += other.chunks_skipped;
        self.chunks_all_in += other.chunks_all_in;
        self.pieces_checked += other.pieces_checked;
        self.points_checked += other.points_checked;
    }
}

/// Largest integer magnitude an f64 holds exactly: INT64 statistics beyond it prove nothing.
const F64_EXACT_INT_MAX: f64 = 9_007_199_254_740_992.0;

impl ValueFilter {
    /// `REGEXP pattern`: text containing a match of `pattern` (Java's `find`, as IoTDB).
    pub fn regexp(pattern: &str) -> std::result::Result<ValueFilter, String> {
        regex::Regex::new(pattern)
            .map(ValueFilter::Matches)
            .map_err(|e| {
                // The regex crate's message spans several lines; its last says what is wrong.
                let text = e.to_string();
                let reason = text.lines().last().unwrap_or_default().trim().to_string();
                format!("invalid regular expression '{pattern}': {reason}")
            })
    }

    /// `LIKE pattern`: the whole text matches, `%` standing for any run of characters, `_`
    /// for one, `\` escaping the next character.
    pub fn like(pattern: &str) -> std::result::Result<ValueFilter, String> {
        let mut translated = String::from("^");
        let mut chars = pattern.chars();
        while let Some(c) = chars.next() {
            match c {
                '%' => translated.push_str("(?s:.*)"),
                '_' => translated.push_str("(?s:.)"),
                '\\' => match chars.next() {
                    Some(next) => translated.push_str(&regex::escape(&next.to_string())),
                    None => translated.push_str(&regex::escape("\\")),
                },
                other => translated.push_str(&regex::escape(&other.to_string())),
            }
        }
        translated.push('$');
        Self::regexp(&translated)
    }

    /// Whether point `index` of `values` passes.
    pub fn matches(&self, values: &Values, index: usize) -> bool {
        match self {
            ValueFilter::Any => true,
            ValueFilter::Compare(op, operand) => op.holds(order(values, index, operand)),
            ValueFilter::In(operands) => operands
                .iter()
                .any(|o| order(values, index, o) == Some(std::cmp::Ordering::Equal)),
            ValueFilter::Matches(regex) => match values {
                Values::Text(v) => std::str::from_utf8(&v[index]).is_ok_and(|s| regex.is_match(s)),
                _ => false,
            },
            ValueFilter::Not(inner) => !inner.matches(values, index),
            ValueFilter::And(all) => all.iter().all(|f| f.matches(values, index)),
            ValueFilter::Or(any) => any.iter().any(|f| f.matches(values, index)),
        }
    }

    /// The points of `points` that pass, in order.
    pub fn apply(&self, points: PointColumn) -> PointColumn {
        if matches!(self, ValueFilter::Any) {
            return points;
        }
        let mut out = PointColumn::new(points.data_type());
        for i in 0..points.len() {
            if self.matches(&points.values, i) {
                out.timestamps.push(points.timestamps[i]);
                out.values.push_from(&points.values, i);
            }
        }
        out
    }

    /// What `stats` (of a run of points of a series of type `data_type`) prove.
    pub fn verdict(&self, stats: &Stats, data_type: DataType) -> Verdict {
        match self {
            ValueFilter::Any => Verdict::AllIn,
            ValueFilter::Compare(op, Operand::Number(c)) => match numeric_range(stats, data_type) {
                Some((min, max)) => compare_verdict(*op, *c, min, max),
                None => Verdict::Unknown,
            },
            ValueFilter::In(operands) => {
                let Some((min, max)) = numeric_range(stats, data_type) else {
                    return Verdict::Unknown;
                };
                let numbers: Vec<f64> = operands
                    .iter()
                    .filter_map(|o| match o {
                        Operand::Number(n) => Some(*n),
                        _ => None,
                    })
                    .collect();
                if numbers.iter().all(|n| *n < min || *n > max) {
                    Verdict::AllOut
                } else if min == max && numbers.contains(&min) {
                    Verdict::AllIn
                } else {
                    Verdict::Unknown
                }
            }
            ValueFilter::Compare(..) | ValueFilter::Matches(_) => Verdict::Unknown,
            ValueFilter::Not(inner) => inner.verdict(stats, data_type).not(),
            ValueFilter::And(all) => {
                let verdicts: Vec<Verdict> =
                    all.iter().map(|f| f.verdict(stats, data_type)).collect();
                if verdicts.contains(&Verdict::AllOut) {
                    Verdict::AllOut
                } else if verdicts.iter().all(|v| *v == Verdict::AllIn) {
                    Verdict::AllIn
                } else {
                    Verdict::Unknown
                }
            }
            ValueFilter::Or(any) => {
                let verdicts: Vec<Verdict> =
                    any.iter().map(|f| f.verdict(stats, data_type)).collect();
                if verdicts.contains(&Verdict::AllIn) {
                    Verdict::AllIn
                } else if verdicts.iter().all(|v| *v == Verdict::AllOut) {
                    Verdict::AllOut
                } else {
                    Verdict::Unknown
                }
            }
        }
    }
}

/// The exact numeric range of a chunk, when its statistics give one: not for non-numeric
/// types, INT64 beyond 2^53, or floats with a NaN (which `min`/`max` skip but `sum` shows).
fn numeric_range(stats: &Stats, data_type: DataType) -> Option<(f64, f64)> {
    let (min, max) = (stats.min?, stats.max?);
    if stats.sum.is_nan() || min.is_nan() || max.is_nan() {
        return None;
    }
    if data_type == DataType::Int64
        && (min.abs() > F64_EXACT_INT_MAX || max.abs() > F64_EXACT_INT_MAX)
    {
        return None;
    }
    Some((min, max))
}

/// What `[min, max]` proves about `value op c` for every value in it.
fn compare_verdict(op: CompareOp, c: f64, min: f64, max: f64) -> Verdict {
    let (all_in, all_out) = match op {
        CompareOp::Less => (max < c, min >= c),
        CompareOp::LessEqual => (max <= c, min > c),
        CompareOp::Greater => (min > c, max <= c),
        CompareOp::GreaterEqual => (min >= c, max < c),
        CompareOp::Equal => (min == c && max == c, c < min || c > max),
        CompareOp::NotEqual => (c < min || c > max, min == c && max == c),
    };
    if all_in {
        Verdict::AllIn
    } else if all_out {
        Verdict::AllOut
    } else {
        Verdict::Unknown
    }
}

/// The ordering of point `index` against `operand`, `None` when the kinds do not meet (or
/// a NaN is involved).
fn order(values: &Values, index: usize, operand: &Operand) -> Option<std::cmp::Ordering> {
    match (values, operand) {
        (Values::Int32(v), Operand::Number(c)) => f64::from(v[index]).partial_cmp(c),
        (Values::Int64(v), Operand::Number(c)) => (v[index] as f64).partial_cmp(c),
        (Values::Float(v), Operand::Number(c)) => f64::from(v[index]).partial_cmp(c),
        (Values::Double(v), Operand::Number(c)) => v[index].partial_cmp(c),
        (Values::Text(v), Operand::Text(c)) => Some(v[index].as_ref().cmp(c.as_ref())),
        (Values::Boolean(v), Operand::Boolean(c)) => Some(v[index].cmp(c)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::Value;

    fn doubles(vs: &[f64]) -> PointColumn {
        PointColumn {
            timestamps: (0..vs.len() as i64).collect(),
            values: Values::Double(vs.to_vec()),
        }
    }

    fn stats_of(vs: &[f64]) -> Stats {
        Stats::of_all(&doubles(vs)).unwrap()
    }

    #[test]
    fn comparisons_filter_points() {
        let f = ValueFilter::Compare(CompareOp::Greater, Operand::Number(2.0));
        let out = f.apply(doubles(&[1.0, 2.0, 3.0, 4.0]));
        assert_eq!(out.timestamps, [2, 3]);
        let f = ValueFilter::In(vec![Operand::Number(1.0), Operand::Number(4.0)]);
        assert_eq!(f.apply(doubles(&[1.0, 2.0, 3.0, 4.0])).timestamps, [0, 3]);
        let f = ValueFilter::Not(Box::new(f));
        assert_eq!(f.apply(doubles(&[1.0, 2.0, 3.0, 4.0])).timestamps, [1, 2]);
    }

    #[test]
    fn statistics_prove_all_in_and_all_out() {
        let stats = stats_of(&[10.0, 20.0]);
        let t = DataType::Double;
        let gt = |c| ValueFilter::Compare(CompareOp::Greater, Operand::Number(c));
        assert_eq!(gt(5.0).verdict(&stats, t), Verdict::AllIn);
        assert_eq!(gt(20.0).verdict(&stats, t), Verdict::AllOut);
        assert_eq!(gt(15.0).verdict(&stats, t), Verdict::Unknown);
        let between = ValueFilter::And(vec![
            ValueFilter::Compare(CompareOp::GreaterEqual, Operand::Number(0.0)),
            ValueFilter::Compare(CompareOp::LessEqual, Operand::Number(9.0)),
        ]);
        assert_eq!(between.verdict(&stats, t), Verdict::AllOut);
        assert_eq!(
            ValueFilter::Not(Box::new(between)).verdict(&stats, t),
            Verdict::AllIn
        );
        let nan = stats_of(&[1.0, f64::NAN]);
        assert_eq!(gt(0.0).verdict(&nan, t), Verdict::Unknown);
        let text = Stats::of_all(&PointColumn {
            timestamps: vec![1],
            values: Values::Text(vec![Bytes::from_static(b"a")]),
        })
        .unwrap();
        let eq = ValueFilter::Compare(CompareOp::Equal, Operand::Text(Bytes::from_static(b"a")));
        assert_eq!(eq.verdict(&text, DataType::Text), Verdict::Unknown);
    }

    #[test]
    fn text_and_boolean_and_mismatched_kinds() {
        let text = PointColumn {
            timestamps: vec![1, 2],
            values: Values::Text(vec![Bytes::from_static(b"abc"), Bytes::from_static(b"xbz")]),
        };
        let re = ValueFilter::regexp("^a").unwrap();
        assert_eq!(re.apply(text.clone()).timestamps, [1]);
        let like = ValueFilter::like("_b%").unwrap();
        assert_eq!(like.apply(text.clone()).timestamps, [1, 2]);
        let like = ValueFilter::like("x_z").unwrap();
        assert_eq!(like.apply(text.clone()).timestamps, [2]);
        assert!(
            ValueFilter::like("a.c")
                .unwrap()
                .apply(text.clone())
                .is_empty()
        );
        assert!(ValueFilter::regexp("(").is_err());
        let wrong = ValueFilter::Compare(CompareOp::Equal, Operand::Number(1.0));
        assert!(wrong.apply(text).is_empty());
        let bools = PointColumn {
            timestamps: vec![1, 2],
            values: Values::Boolean(vec![true, false]),
        };
        let f = ValueFilter::Compare(CompareOp::Equal, Operand::Boolean(false));
        let out = f.apply(bools);
        assert_eq!(out.values.get(0), Value::Boolean(false));
    }
}
