//! Prometheus text exposition format 0.0.4: `# HELP`, `# TYPE`, then `name{labels} value`
//! lines, a family's samples together after its HELP and TYPE.

use std::fmt::Write;

/// The `Content-Type` of a scrape's answer.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A metric family's type, as the `# TYPE` line names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// Builds one scrape's text. A family is opened with [`Exposition::family`] and its
/// samples follow; names are static (checked by a debug assert), label values are escaped.
#[derive(Default)]
pub struct Exposition {
    text: String,
}

impl Exposition {
    /// Starts family `name`: its HELP and TYPE lines.
    pub fn family(&mut self, name: &str, kind: Kind, help: &str) -> &mut Self {
        debug_assert!(valid_name(name), "metric name {name:?}");
        let _ = writeln!(self.text, "# HELP {name} {}", escape(help, false));
        let _ = writeln!(self.text, "# TYPE {name} {}", kind.name());
        self
    }

    /// One sample of the current family (`name` may carry a histogram's `_bucket`, `_sum`
    /// or `_count` suffix).
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) -> &mut Self {
        debug_assert!(valid_name(name), "metric name {name:?}");
        self.text.push_str(name);
        if !labels.is_empty() {
            self.text.push('{');
            for (i, (label, value)) in labels.iter().enumerate() {
                debug_assert!(valid_name(label), "label name {label:?}");
                if i > 0 {
                    self.text.push(',');
                }
                let _ = write!(self.text, "{label}=\"{}\"", escape(value, true));
            }
            self.text.push('}');
        }
        self.text.push(' ');
        push_value(&mut self.text, value);
        self.text.push('\n');
        self
    }

    /// The finished text.
    pub fn finish(self) -> String {
        self.text
    }
}

/// A value as Prometheus reads it: integers without a fraction, `+Inf`, `-Inf`, `NaN`.
fn push_value(text: &mut String, value: f64) {
    if value.is_nan() {
        text.push_str("NaN");
    } else if value.is_infinite() {
        text.push_str(if value > 0.0 { "+Inf" } else { "-Inf" });
    } else if value.fract() == 0.0 && value.abs() < 1e15 {
        let _ = write!(text, "{}", value as i64);
    } else {
        let _ = write!(text, "{value}");
    }
}

/// Escapes `\` and newlines (HELP text), and `"` too in a label value.
fn escape(text: &str, quote: bool) -> std::borrow::Cow<'_, str> {
    if !text.contains(['\\', '\n', '"']) {
        return text.into();
    }
    let mut out = String::with_capacity(text.len() + 4);
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '"' if quote => out.push_str("\\\""),
            c => out.push(c),
        }
    }
    out.into()
}

/// `[a-zA-Z_:][a-zA-Z0-9_:]*`.
fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_help_type_labels_and_values() {
        let mut out = Exposition::default();
        out.family(
            "iotdb_points_written_total",
            Kind::Counter,
            "Points \\ written\nby clients.",
        )
        .sample("iotdb_points_written_total", &[], 42.0);
        out.family("iotdb_errors_total", Kind::Counter, "Errors.")
            .sample("iotdb_errors_total", &[("status", "a\"b\\c\nd")], 3.0);
        out.family("iotdb_wal_fsync_seconds", Kind::Histogram, "Latency.")
            .sample("iotdb_wal_fsync_seconds_bucket", &[("le", "0.001")], 1.0)
            .sample("iotdb_wal_fsync_seconds_bucket", &[("le", "+Inf")], 2.0)
            .sample("iotdb_wal_fsync_seconds_sum", &[], 0.0125)
            .sample("iotdb_wal_fsync_seconds_count", &[], 2.0);
        out.family("iotdb_odd", Kind::Gauge, "Odd values.")
            .sample("iotdb_odd", &[("a", "1"), ("b", "2")], f64::INFINITY)
            .sample("iotdb_odd", &[], f64::NAN)
            .sample("iotdb_odd", &[], -0.5);
        assert_eq!(
            out.finish(),
            "# HELP iotdb_points_written_total Points \\\\ written\\nby clients.\n\
             # TYPE iotdb_points_written_total counter\n\
             iotdb_points_written_total 42\n\
             # HELP iotdb_errors_total Errors.\n\
             # TYPE iotdb_errors_total counter\n\
             iotdb_errors_total{status=\"a\\\"b\\\\c\\nd\"} 3\n\
             # HELP iotdb_wal_fsync_seconds Latency.\n\
             # TYPE iotdb_wal_fsync_seconds histogram\n\
             iotdb_wal_fsync_seconds_bucket{le=\"0.001\"} 1\n\
             iotdb_wal_fsync_seconds_bucket{le=\"+Inf\"} 2\n\
             iotdb_wal_fsync_seconds_sum 0.0125\n\
             iotdb_wal_fsync_seconds_count 2\n\
             # HELP iotdb_odd Odd values.\n\
             # TYPE iotdb_odd gauge\n\
             iotdb_odd{a=\"1\",b=\"2\"} +Inf\n\
             iotdb_odd NaN\n\
             iotdb_odd -0.5\n"
        );
    }

    #[test]
    fn names_are_checked() {
        assert!(valid_name("iotdb_a:b_1"));
        assert!(!valid_name("1abc"));
        assert!(!valid_name("a-b"));
        assert!(!valid_name(""));
    }
}
