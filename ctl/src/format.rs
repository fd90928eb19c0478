//! Rendering of result sets (column names + rows of optional strings) for the
//! SQL shell: IoTDB's boxed table, CSV and JSON.
//!
//! **Table** ([`render_table`]) — as IoTDB's CLI prints it:
//!
//! ```text
//! +------+----------+
//! |NodeID|  NodeType|
//! +------+----------+
//! |     0|ConfigNode|
//! +------+----------+
//! ```
//!
//! Each column is as wide as its widest cell or header (counted in
//! characters), and every cell *and* header is right-aligned, padded on the
//! left; the CLI prints each cell with `%<width>s`. (The seed article's `show
//! cluster` sample has a few hand-redacted cells that are not right-aligned;
//! its `show regions` sample, untouched, is right-aligned throughout and is
//! reproduced byte for byte in the tests.) A missing cell prints as `null`.
//! With no rows the header block is followed directly by the closing border.
//! The footer ([`render_footer`]) is separate because the caller times the
//! statement: `Total line number = N` (or `Empty set.` for zero rows, as the
//! CLI does) and `It costs X.XXXs`.
//!
//! **CSV** ([`render_csv`]) — a header record then one record per row.
//! Fields are quoted as RFC 4180 requires (when they contain `,`, `"`, CR or
//! LF; inner quotes doubled). Records end with LF rather than RFC 4180's
//! CRLF, for Unix pipelines. A missing cell is an empty unquoted field; an
//! empty string is written `""`, so the two stay distinguishable.
//!
//! **JSON** ([`render_json`]) — one object `{"columns": [...], "rows":
//! [[...], ...]}` rather than an array of objects, because it keeps column
//! order and survives duplicate column names (`select s1, s1 ...`). Cells
//! are JSON strings, a missing cell is `null`.
//!
//! Rows shorter than the header are padded with missing cells; cells past
//! the header's width are ignored (a ragged row is a caller bug, but the
//! shell should still print something rather than fail).

use std::fmt::Write as _;
use std::str::FromStr;
use std::time::Duration;

/// How the CLI prints a missing value.
pub const NULL_CELL: &str = "null";

/// The output formats of the shell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    /// IoTDB's boxed table.
    Table,
    /// Comma-separated values.
    Csv,
    /// `{"columns": [...], "rows": [...]}`.
    Json,
}

/// An output format name that is not `table`, `csv` or `json`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown output format '{0}' (expected table, csv or json)")]
pub struct UnknownOutputFormat(pub String);

impl FromStr for OutputFormat {
    type Err = UnknownOutputFormat;

    fn from_str(name: &str) -> Result<OutputFormat, UnknownOutputFormat> {
        match name.to_ascii_lowercase().as_str() {
            "table" => Ok(OutputFormat::Table),
            "csv" => Ok(OutputFormat::Csv),
            "json" => Ok(OutputFormat::Json),
            _ => Err(UnknownOutputFormat(name.to_string())),
        }
    }
}

/// Renders a result set in `format` (without the table footer).
pub fn render<C: AsRef<str>>(
    format: OutputFormat,
    columns: &[C],
    rows: &[Vec<Option<String>>],
) -> String {
    match format {
        OutputFormat::Table => render_table(columns, rows),
        OutputFormat::Csv => render_csv(columns, rows),
        OutputFormat::Json => render_json(columns, rows),
    }
}

/// The cell of `row` under column `index`, `None` when missing.
fn cell(row: &[Option<String>], index: usize) -> Option<&str> {
    row.get(index).and_then(|value| value.as_deref())
}

/// Renders the boxed table; every line ends with `\n`.
pub fn render_table<C: AsRef<str>>(columns: &[C], rows: &[Vec<Option<String>>]) -> String {
    let widths: Vec<usize> = columns
        .iter()
        .enumerate()
        .map(|(index, column)| {
            rows.iter()
                .map(|row| cell(row, index).unwrap_or(NULL_CELL).chars().count())
                .chain(std::iter::once(column.as_ref().chars().count()))
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut border = String::from("+");
    for width in &widths {
        border.push_str(&"-".repeat(*width));
        border.push('+');
    }
    border.push('\n');

    let mut output = String::new();
    output.push_str(&border);
    push_table_line(
        &mut output,
        &widths,
        columns.iter().map(|column| column.as_ref()),
    );
    output.push_str(&border);
    for row in rows {
        push_table_line(
            &mut output,
            &widths,
            (0..widths.len()).map(|index| cell(row, index).unwrap_or(NULL_CELL)),
        );
    }
    output.push_str(&border);
    output
}

/// Appends `|cell|cell|\n` with every cell right-aligned to its width.
fn push_table_line<'a>(
    output: &mut String,
    widths: &[usize],
    cells: impl Iterator<Item = &'a str>,
) {
    output.push('|');
    for (text, width) in cells.zip(widths) {
        // `{:>width$}` pads by characters, matching how widths were measured.
        let _ = write!(output, "{text:>width$}|");
    }
    output.push('\n');
}

/// The lines the CLI prints after a result: `Total line number = N` (or
/// `Empty set.`) and `It costs X.XXXs`, each ending with `\n`.
pub fn render_footer(row_count: usize, elapsed: Duration) -> String {
    let count_line = if row_count == 0 {
        "Empty set.".to_string()
    } else {
        format!("Total line number = {row_count}")
    };
    format!("{count_line}\nIt costs {:.3}s\n", elapsed.as_secs_f64())
}

/// Renders CSV: a header record, then one record per row, each ending `\n`.
pub fn render_csv<C: AsRef<str>>(columns: &[C], rows: &[Vec<Option<String>>]) -> String {
    let mut output = String::new();
    push_csv_record(
        &mut output,
        columns.iter().map(|column| Some(column.as_ref())),
    );
    output.push_str(&render_csv_records(columns.len(), rows));
    output
}

/// Renders CSV records without the header: the rows of a later page.
pub fn render_csv_records(columns: usize, rows: &[Vec<Option<String>>]) -> String {
    let mut output = String::new();
    for row in rows {
        push_csv_record(&mut output, (0..columns).map(|index| cell(row, index)));
    }
    output
}

fn push_csv_record<'a>(output: &mut String, fields: impl Iterator<Item = Option<&'a str>>) {
    for (index, field) in fields.enumerate() {
        if index > 0 {
            output.push(',');
        }
        match field {
            None => {}
            Some(text) if text.is_empty() || text.contains([',', '"', '\r', '\n']) => {
                output.push('"');
                output.push_str(&text.replace('"', "\"\""));
                output.push('"');
            }
            Some(text) => output.push_str(text),
        }
    }
    output.push('\n');
}

/// Renders `{"columns": [...], "rows": [[...], ...]}` on one line, without
/// a trailing newline.
pub fn render_json<C: AsRef<str>>(columns: &[C], rows: &[Vec<Option<String>>]) -> String {
    let mut output = String::from("{\"columns\":[");
    for (index, column) in columns.iter().enumerate() {
        if index > 0 {
            output.push(',');
        }
        push_json_string(&mut output, column.as_ref());
    }
    output.push_str("],\"rows\":[");
    for (row_index, row) in rows.iter().enumerate() {
        if row_index > 0 {
            output.push(',');
        }
        output.push('[');
        for index in 0..columns.len() {
            if index > 0 {
                output.push(',');
            }
            match cell(row, index) {
                Some(text) => push_json_string(&mut output, text),
                None => output.push_str("null"),
            }
        }
        output.push(']');
    }
    output.push_str("]}");
    output
}

/// Appends `text` as a JSON string literal (RFC 8259 escaping).
fn push_json_string(output: &mut String, text: &str) {
    output.push('"');
    for character in text.chars() {
        match character {
            '"' => output.push_str("\\\""),
            '\\' => output.push_str("\\\\"),
            '\n' => output.push_str("\\n"),
            '\r' => output.push_str("\\r"),
            '\t' => output.push_str("\\t"),
            '\u{8}' => output.push_str("\\b"),
            '\u{c}' => output.push_str("\\f"),
            control if u32::from(control) < 0x20 => {
                let _ = write!(output, "\\u{:04x}", u32::from(control));
            }
            other => output.push(other),
        }
    }
    output.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(cells: &[&[Option<&str>]]) -> Vec<Vec<Option<String>>> {
        cells
            .iter()
            .map(|row| row.iter().map(|cell| cell.map(str::to_string)).collect())
            .collect()
    }

    /// `show regions` exactly as printed in seed 002.
    #[test]
    fn table_matches_the_seed_show_regions_output() {
        let columns = [
            "RegionId",
            "Type",
            "Status",
            "Database",
            "SeriesSlotNum",
            "TimeSlotNum",
            "DataNodeId",
            "RpcAddress",
            "RpcPort",
            "InternalAddress",
            "Role",
            "CreateTime",
        ];
        let table = render_table(
            &columns,
            &rows(&[
                &[
                    Some("0"),
                    Some("SchemaRegion"),
                    Some("Running"),
                    Some("root.db"),
                    Some("1"),
                    Some("0"),
                    Some("1"),
                    Some("xxxxxxx"),
                    Some("6667"),
                    Some("xxxxxxx"),
                    Some("Leader"),
                    Some("2024-05-27T14:38:16.654"),
                ],
                &[
                    Some("1"),
                    Some("DataRegion"),
                    Some("Running"),
                    Some("root.db"),
                    Some("1"),
                    Some("1"),
                    Some("1"),
                    Some("xxxxxxx"),
                    Some("6667"),
                    Some("xxxxxxx"),
                    Some("Leader"),
                    Some("2024-05-27T16:33:30.359"),
                ],
            ]),
        );
        let expected = "\
+--------+------------+-------+--------+-------------+-----------+----------+----------+-------+---------------+------+-----------------------+
|RegionId|        Type| Status|Database|SeriesSlotNum|TimeSlotNum|DataNodeId|RpcAddress|RpcPort|InternalAddress|  Role|             CreateTime|
+--------+------------+-------+--------+-------------+-----------+----------+----------+-------+---------------+------+-----------------------+
|       0|SchemaRegion|Running| root.db|            1|          0|         1|   xxxxxxx|   6667|        xxxxxxx|Leader|2024-05-27T14:38:16.654|
|       1|  DataRegion|Running| root.db|            1|          1|         1|   xxxxxxx|   6667|        xxxxxxx|Leader|2024-05-27T16:33:30.359|
+--------+------------+-------+--------+-------------+-----------+----------+----------+-------+---------------+------+-----------------------+
";
        assert_eq!(table, expected);
    }

    /// `show cluster` from seed 000, with the redacted cells right-aligned
    /// as the CLI would print them.
    #[test]
    fn table_show_cluster_right_aligns_every_cell() {
        let columns = [
            "NodeID",
            "NodeType",
            "Status",
            "InternalAddress",
            "InternalPort",
            "Version",
            "BuildInfo",
        ];
        let table = render_table(
            &columns,
            &rows(&[
                &[
                    Some("0"),
                    Some("ConfigNode"),
                    Some("Running"),
                    Some("iotdb-1"),
                    Some("10710"),
                    Some("1.x.x"),
                    Some("xxxxxxx"),
                ],
                &[
                    Some("3"),
                    Some("DataNode"),
                    Some("Running"),
                    Some("iotdb-1"),
                    Some("10730"),
                    Some("1.x.x"),
                    Some("xxxxxxx"),
                ],
            ]),
        );
        let expected = "\
+------+----------+-------+---------------+------------+-------+---------+
|NodeID|  NodeType| Status|InternalAddress|InternalPort|Version|BuildInfo|
+------+----------+-------+---------------+------------+-------+---------+
|     0|ConfigNode|Running|        iotdb-1|       10710|  1.x.x|  xxxxxxx|
|     3|  DataNode|Running|        iotdb-1|       10730|  1.x.x|  xxxxxxx|
+------+----------+-------+---------------+------------+-------+---------+
";
        assert_eq!(table, expected);
    }

    #[test]
    fn table_nulls_ragged_rows_and_wide_characters() {
        let table = render_table(
            &["Time", "root.sg.d1.s1"],
            &rows(&[
                &[Some("1"), None],
                &[Some("2")],
                &[Some("3"), Some("温度"), Some("x")],
            ]),
        );
        let expected = "\
+----+-------------+
|Time|root.sg.d1.s1|
+----+-------------+
|   1|         null|
|   2|         null|
|   3|           温度|
+----+-------------+
";
        assert_eq!(table, expected);
    }

    #[test]
    fn table_without_rows_closes_after_the_header() {
        let table = render_table(&["Database"], &[]);
        assert_eq!(table, "+--------+\n|Database|\n+--------+\n+--------+\n");
        // A null wider than its header widens the column.
        assert_eq!(
            render_table(&["a"], &rows(&[&[None]])),
            "+----+\n|   a|\n+----+\n|null|\n+----+\n"
        );
    }

    #[test]
    fn footer_lines() {
        assert_eq!(
            render_footer(6, Duration::from_millis(12)),
            "Total line number = 6\nIt costs 0.012s\n"
        );
        assert_eq!(
            render_footer(0, Duration::from_micros(1_234_567)),
            "Empty set.\nIt costs 1.235s\n"
        );
    }

    #[test]
    fn csv_quotes_per_rfc_4180() {
        let csv = render_csv(
            &["Time", "a,b", "q"],
            &rows(&[
                &[Some("1"), Some("plain"), Some("say \"hi\"")],
                &[Some("2"), None, Some("")],
                &[Some("3"), Some("line\nbreak"), Some("cr\r")],
            ]),
        );
        assert_eq!(
            csv,
            "Time,\"a,b\",q\n1,plain,\"say \"\"hi\"\"\"\n2,,\"\"\n3,\"line\nbreak\",\"cr\r\"\n"
        );
    }

    #[test]
    fn json_is_columns_and_rows() {
        let json = render_json(
            &["Time", "s\"1"],
            &rows(&[&[Some("1"), None], &[Some("2"), Some("a\\b\n\u{1}")]]),
        );
        assert_eq!(
            json,
            r#"{"columns":["Time","s\"1"],"rows":[["1",null],["2","a\\b\n\u0001"]]}"#
        );
        assert_eq!(render_json::<&str>(&[], &[]), r#"{"columns":[],"rows":[]}"#);
    }

    #[test]
    fn output_format_names() {
        assert_eq!("TABLE".parse(), Ok(OutputFormat::Table));
        assert_eq!("csv".parse(), Ok(OutputFormat::Csv));
        assert_eq!("Json".parse(), Ok(OutputFormat::Json));
        assert_eq!(
            "xml".parse::<OutputFormat>().unwrap_err().to_string(),
            "unknown output format 'xml' (expected table, csv or json)"
        );
        let columns = ["a"];
        let data = rows(&[&[Some("1")]]);
        assert_eq!(render(OutputFormat::Csv, &columns, &data), "a\n1\n");
        assert!(render(OutputFormat::Table, &columns, &data).starts_with("+-+"));
        assert!(render(OutputFormat::Json, &columns, &data).starts_with('{'));
    }
}
