//! IoTDB SQL (tree model) front end: text in, typed [`Statement`] out.
//!
//! ```text
//! statement text ──lexer──▶ tokens ──parser──▶ Statement (ast)
//! ```
//!
//! The parser is hand-written (a small lexer and recursive descent) and is
//! pure: it touches no clock, schema or I/O, so `now()` stays symbolic
//! ([`TimeExpr::Now`]) and the node resolves it. Keywords are
//! case-insensitive, names are case-sensitive, a trailing `;` is optional.
//! Errors carry IoTDB's ANTLR-style message and status code 700
//! ([`ParseError`]). Any input, however malformed, yields a value or an
//! error, never a panic.
//!
//! Supported statements (IOTDB_FACTS.md §3 and §5): databases (create,
//! alter, show, count, delete/drop, legacy `STORAGE GROUP` forms), timeseries
//! (create, create aligned, show, count, delete), devices (show, count),
//! `INSERT`, `SELECT` (raw, aggregates with `GROUP BY` windows and `HAVING`,
//! `LAST`, `WHERE` expressions ([`Expr`]; the time-only conjuncts split off
//! as a [`TimeFilter`]), `AS` aliases, `ORDER BY TIME`, `LIMIT`/`OFFSET`,
//! `SLIMIT`/`SOFFSET`, `ALIGN BY DEVICE`), `DELETE FROM`, TTL
//! (set, unset, show), cluster introspection (`SHOW CLUSTER`, `REGIONS`,
//! `DATANODES`, `CONFIGNODES`, `VARIABLES`, `VERSION`) and `FLUSH`.
//!
//! Time literals are milliseconds; ISO-8601 datetimes without an offset are
//! read as UTC (see [`time`]).

mod ast;
mod error;
mod expr;
mod lexer;
mod parser;
mod path;
pub mod time;

#[cfg(test)]
mod tests;

pub use ast::{
    Aggregate, AggregateFunction, CalendarWindows, Comparison, Compressor, DataType,
    DatabaseAttributes, Encoding, Fill, GroupByRange, GroupByTime, Insert, InsertRow, LastOrder,
    LastSortKey, Literal, MeasurementSpec, Projection, RegionKind, Select, Statement, TimeExpr,
    TimeFilter, TimeOrder, TimeRange, Ttl,
};
pub use error::{ParseError, ParseErrorKind};
pub use expr::{ArithmeticOp, CompareOp, Expr, ScalarFunction, split_time_filter};
pub use lexer::STATEMENT_LEN_MAX;
pub use parser::{NESTING_DEPTH_MAX, parse, parse_script};
pub use path::{Path, PathNode, PathPattern, ROOT};
