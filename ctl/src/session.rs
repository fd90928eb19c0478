//! One connection to a server and the printing of statement results as IoTDB's CLI does.
//!
//! Cells print as the CLI prints them: the `Time` column as an ISO-8601 instant in UTC with
//! milliseconds (`1970-01-01T00:00:00.001Z`; IoTDB uses the client's zone), doubles and
//! floats as Java prints them (`1.0`, `1.0E7`), booleans `true`/`false`. A statement that
//! returns no columns prints `Msg: The statement is executed successfully.`; a failed one
//! prints `Msg: <code>: <message>` (on stderr in the binary).

use std::io::Write;
use std::time::{Duration, Instant};

use iotdb_net::{
    BlockingClient, ClientConfig, ClientError, DataType, FailoverClient, FailoverPolicy, ResultSet,
    Value,
};

use crate::format::{self, OutputFormat};

/// The default server address (IoTDB's client RPC port).
pub const DEFAULT_ADDRESS: &str = "127.0.0.1:6667";

/// What the CLI prints after a statement that returns no table.
pub const SUCCESS_MESSAGE: &str = "Msg: The statement is executed successfully.";

/// An iotdb-ctl failure.
#[derive(Debug, thiserror::Error)]
pub enum CtlError {
    /// The server answered with an error status.
    #[error("Msg: {code}: {message}")]
    Server { code: i32, message: String },
    /// Connecting or talking to the server failed.
    #[error("Msg: cannot reach the server at {address}: {source}")]
    Connection {
        address: String,
        source: ClientError,
    },
    /// Reading input or writing output failed.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
}

impl CtlError {
    /// The server's status code, when the server answered.
    pub fn status_code(&self) -> Option<i32> {
        match self {
            CtlError::Server { code, .. } => Some(*code),
            _ => None,
        }
    }
}

/// A logged-in connection: to one server, or to one of several DataNodes of a cluster
/// (`-h a:6667,b:6667`), moving to another when one fails.
pub struct Session {
    client: Client,
    address: String,
    config: ClientConfig,
}

enum Client {
    One(BlockingClient),
    Any(FailoverClient),
}

/// The socket addresses of a comma-separated `host:port` list.
fn endpoints(list: &str) -> Result<Vec<std::net::SocketAddr>, CtlError> {
    use std::net::ToSocketAddrs;
    list.split(',')
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
        .map(|entry| {
            let unresolved = |error: std::io::Error| CtlError::Connection {
                address: entry.to_string(),
                source: ClientError::Unavailable(format!("resolving {entry}: {error}")),
            };
            entry
                .to_socket_addrs()
                .map_err(unresolved)?
                .next()
                .ok_or_else(|| unresolved(std::io::Error::other("no address")))
        })
        .collect()
}

impl Session {
    /// Connects to `address` (`host:port`, or several separated by commas: the first
    /// that answers, moving to the next when one fails) and logs in.
    pub fn connect(address: &str, user: &str, password: &str) -> Result<Session, CtlError> {
        let config = ClientConfig {
            user: user.to_string(),
            password: password.to_string(),
            client_name: "iotdb-ctl".to_string(),
            ..ClientConfig::default()
        };
        let failed = |source| CtlError::Connection {
            address: address.to_string(),
            source,
        };
        let client = if address.contains(',') {
            let endpoints = endpoints(address)?;
            Client::Any(
                FailoverClient::connect(&endpoints, &config, FailoverPolicy::default())
                    .map_err(failed)?,
            )
        } else {
            Client::One(BlockingClient::connect(address, &config).map_err(failed)?)
        };
        Ok(Session {
            client,
            address: address.to_string(),
            config,
        })
    }

    /// Whether `address` (`host:port`) is one of the servers this session talks to, by
    /// socket address (a host name and the IP it resolves to are the same server).
    pub fn talks_to(&self, address: &str) -> bool {
        let (Ok(mine), Ok(theirs)) = (endpoints(&self.address), endpoints(address)) else {
            return false;
        };
        mine.iter().any(|endpoint| theirs.contains(endpoint))
    }

    /// Moves the session to the one server at `address`, logged in as before; on failure
    /// the session stays where it was.
    pub fn reconnect(&mut self, address: &str) -> Result<(), CtlError> {
        let client = BlockingClient::connect(address, &self.config).map_err(|source| {
            CtlError::Connection {
                address: address.to_string(),
                source,
            }
        })?;
        self.client = Client::One(client);
        self.address = address.to_string();
        Ok(())
    }

    /// Executes one statement.
    pub fn execute(&mut self, statement: &str) -> Result<ResultSet, CtlError> {
        let result = match &mut self.client {
            Client::One(client) => client.execute_sql(statement),
            Client::Any(client) => client.execute_sql(statement),
        };
        result.map_err(|error| self.error_of(error))
    }

    fn error_of(&self, error: ClientError) -> CtlError {
        match error {
            ClientError::Status(status) => CtlError::Server {
                code: status.code.0,
                message: status.message,
            },
            source => CtlError::Connection {
                address: self.address.clone(),
                source,
            },
        }
    }

    /// Executes `statement` and writes its result to `out` with the CLI's footer (the
    /// timing line only when `timing`). A large raw result is written a page at a time as
    /// the server streams it: each page a table of its own (CSV: the header once), so the
    /// CLI never holds more than a page; JSON and a multi-endpoint session take the
    /// result whole.
    pub fn run(
        &mut self,
        statement: &str,
        output: OutputFormat,
        timing: bool,
        out: &mut dyn Write,
    ) -> Result<(), CtlError> {
        let started = Instant::now();
        let client = match &mut self.client {
            Client::One(client) if output != OutputFormat::Json => client,
            _ => {
                let result = self.execute(statement)?;
                let text = render_result(&result, output, timing.then(|| started.elapsed()));
                return Ok(out.write_all(text.as_bytes())?);
            }
        };
        let mut rows_written = 0usize;
        let mut first = true;
        let mut columns = 0usize;
        let mut write_failed: Option<std::io::Error> = None;
        let streamed = client.execute_sql_pages(statement, |page| {
            if page.column_names.is_empty() {
                return Ok(());
            }
            columns = page.column_names.len();
            let rows = text_rows(&page);
            let text = match output {
                OutputFormat::Csv if !first => format::render_csv_records(columns, &rows),
                _ if !first && rows.is_empty() => String::new(),
                _ => format::render(output, &page.column_names, &rows),
            };
            first = false;
            rows_written += rows.len();
            out.write_all(text.as_bytes()).map_err(|error| {
                let closed = ClientError::Protocol(format!("writing the result: {error}"));
                write_failed = Some(error);
                closed
            })
        });
        if let Some(error) = write_failed {
            return Err(CtlError::Io(error));
        }
        streamed.map_err(|error| self.error_of(error))?;
        if columns == 0 {
            return Ok(out.write_all(format!("{SUCCESS_MESSAGE}\n").as_bytes())?);
        }
        if output == OutputFormat::Table {
            let footer = footer(rows_written, timing.then(|| started.elapsed()));
            out.write_all(footer.as_bytes())?;
        }
        Ok(())
    }
}

/// A result's rows as the CLI prints their cells.
fn text_rows(result: &ResultSet) -> Vec<Vec<Option<String>>> {
    result
        .rows
        .iter()
        .map(|row| {
            row.iter()
                .zip(&result.column_names)
                .zip(&result.column_types)
                .map(|((cell, name), data_type)| {
                    cell.as_ref()
                        .map(|value| cell_text(name, *data_type, value))
                })
                .collect()
        })
        .collect()
}

/// A result as the CLI prints it: the table (or CSV/JSON), then for tables the
/// `Total line number = N` line and, given `elapsed`, `It costs X.XXXs`.
pub fn render_result(
    result: &ResultSet,
    output: OutputFormat,
    elapsed: Option<Duration>,
) -> String {
    if result.column_names.is_empty() {
        return format!("{SUCCESS_MESSAGE}\n");
    }
    let rows = text_rows(result);
    let mut text = format::render(output, &result.column_names, &rows);
    if output == OutputFormat::Table {
        text.push_str(&footer(rows.len(), elapsed));
    }
    text
}

/// A table's footer: the count line, then the timing line given `elapsed` (golden files
/// leave the timing out).
fn footer(rows: usize, elapsed: Option<Duration>) -> String {
    let footer = format::render_footer(rows, elapsed.unwrap_or_default());
    match elapsed {
        Some(_) => footer,
        None => format!("{}\n", footer.lines().next().unwrap_or_default()),
    }
}

/// One cell as the CLI prints it.
pub fn cell_text(column: &str, data_type: DataType, value: &Value) -> String {
    match value {
        Value::Int64(millis) if column == "Time" && data_type == DataType::Int64 => {
            iso8601_utc(*millis)
        }
        Value::Boolean(b) => b.to_string(),
        Value::Int32(v) => v.to_string(),
        Value::Int64(v) => v.to_string(),
        Value::Float(v) => java_double(f64::from(*v), v.to_string()),
        Value::Double(v) => java_double(*v, v.to_string()),
        Value::Text(bytes) => String::from_utf8_lossy(bytes).into_owned(),
    }
}

/// A float as Java's `Double.toString` shapes it: at least one fraction digit, scientific
/// notation (`1.0E7`) outside `[1e-3, 1e7)`. `shortest` is Rust's shortest round-trip text
/// of the value in its own width.
fn java_double(value: f64, shortest: String) -> String {
    if !value.is_finite() {
        return if value.is_nan() {
            "NaN".to_string()
        } else if value > 0.0 {
            "Infinity".to_string()
        } else {
            "-Infinity".to_string()
        };
    }
    let magnitude = value.abs();
    if value == 0.0 || (1e-3..1e7).contains(&magnitude) {
        if shortest.contains('.') {
            shortest
        } else {
            format!("{shortest}.0")
        }
    } else {
        let scientific = format!("{value:E}");
        match scientific.split_once('E') {
            Some((mantissa, exponent)) if !mantissa.contains('.') => {
                format!("{mantissa}.0E{exponent}")
            }
            _ => scientific,
        }
    }
}

/// Milliseconds since the epoch as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub fn iso8601_utc(millis: i64) -> String {
    let days = millis.div_euclid(86_400_000);
    let of_day = millis.rem_euclid(86_400_000);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        of_day / 3_600_000,
        of_day / 60_000 % 60,
        of_day / 1000 % 60,
        of_day % 1000
    )
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (Howard Hinnant's
/// `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * month_index + 2) / 5 + 1) as u32;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_print_as_iso8601_utc() {
        assert_eq!(iso8601_utc(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso8601_utc(1), "1970-01-01T00:00:00.001Z");
        assert_eq!(iso8601_utc(-1), "1969-12-31T23:59:59.999Z");
        assert_eq!(iso8601_utc(1_704_067_200_000), "2024-01-01T00:00:00.000Z");
        assert_eq!(iso8601_utc(951_782_400_000), "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn doubles_print_as_java_does() {
        let text = |v: f64| java_double(v, v.to_string());
        assert_eq!(text(1.0), "1.0");
        assert_eq!(text(25.5), "25.5");
        assert_eq!(text(0.0), "0.0");
        assert_eq!(text(1e7), "1.0E7");
        assert_eq!(text(1.5e-5), "1.5E-5");
        assert_eq!(text(-3.0), "-3.0");
        assert_eq!(text(f64::NAN), "NaN");
    }

    #[test]
    fn statements_without_columns_print_the_success_message() {
        let result = ResultSet {
            column_names: Vec::new(),
            column_types: Vec::new(),
            rows: Vec::new(),
        };
        assert_eq!(
            render_result(&result, OutputFormat::Table, None),
            format!("{SUCCESS_MESSAGE}\n")
        );
    }

    #[test]
    fn tables_end_with_the_count_line() {
        let result = ResultSet {
            column_names: vec!["Time".into(), "root.a.d.s".into()],
            column_types: vec![DataType::Int64, DataType::Double],
            rows: vec![vec![Some(Value::Int64(1)), None]],
        };
        let text = render_result(&result, OutputFormat::Table, None);
        assert!(text.ends_with("|1970-01-01T00:00:00.001Z|      null|\n+------------------------+----------+\nTotal line number = 1\n"), "{text}");
        let timed = render_result(
            &result,
            OutputFormat::Table,
            Some(Duration::from_millis(12)),
        );
        assert!(timed.ends_with("It costs 0.012s\n"));
    }
}
