//! The interactive shell: an `IoTDB> ` prompt, statements that may span lines and end with
//! `;`, `quit` / `exit`, and a history kept in memory and appended to `~/.iotdb_ctl_history`
//! when that file is writable.
//!
//! The prompt is written only when the input is a terminal, so piped input
//! (`echo 'show databases;' | iotdb-ctl cli`) yields the results alone. Each statement's
//! result (or its `Msg: <code>: ...` error) is printed as `iotdb-ctl sql` prints it; an
//! error does not end the shell.

use std::fs::OpenOptions;
use std::io::{BufRead, Write};
use std::path::PathBuf;

use crate::format::OutputFormat;
use crate::session::{CtlError, Session};

/// The prompt for a new statement, as IoTDB's CLI writes it.
pub const PROMPT: &str = "IoTDB> ";
/// The prompt for a continuation line of a statement.
pub const CONTINUATION_PROMPT: &str = "    -> ";
/// History entries kept in memory: older ones are dropped.
pub const HISTORY_ENTRIES_MAX: usize = 1000;
/// The history file, under `$HOME`.
pub const HISTORY_FILE_NAME: &str = ".iotdb_ctl_history";

/// Shell settings.
#[derive(Debug, Clone, Copy)]
pub struct ShellOptions {
    pub format: OutputFormat,
    /// Write prompts (interactive terminals only).
    pub prompt: bool,
    /// Print `It costs X.XXXs` after tables.
    pub timing: bool,
}

/// Statements entered so far, newest last.
#[derive(Debug, Default)]
pub struct History {
    entries: Vec<String>,
    file: Option<PathBuf>,
}

impl History {
    /// A history that also appends to `~/.iotdb_ctl_history` when `$HOME` is set.
    pub fn with_home_file() -> History {
        History {
            entries: Vec::new(),
            file: std::env::var_os("HOME").map(|home| PathBuf::from(home).join(HISTORY_FILE_NAME)),
        }
    }

    /// Records a statement; a file that cannot be written is ignored (the history then
    /// lives in memory only, which is all a read-only home allows).
    pub fn push(&mut self, statement: &str) {
        if self.entries.len() >= HISTORY_ENTRIES_MAX {
            self.entries.remove(0);
        }
        self.entries.push(statement.to_string());
        if let Some(path) = &self.file {
            let appended = OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .and_then(|mut file| writeln!(file, "{}", statement.replace('\n', " ")));
            if appended.is_err() {
                self.file = None;
            }
        }
    }

    pub fn entries(&self) -> &[String] {
        &self.entries
    }
}

/// Splits complete statements off `buffer`: every `;` outside quotes ends one. Returns the
/// statements (trimmed, without `;`, empty ones dropped) and leaves the unfinished rest.
pub fn take_statements(buffer: &mut String) -> Vec<String> {
    let mut statements = Vec::new();
    let mut quote: Option<char> = None;
    let mut start = 0;
    for (at, c) in buffer.char_indices() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '\'' | '"' | '`') => quote = Some(c),
            (None, ';') => {
                let statement = buffer[start..at].trim();
                if !statement.is_empty() {
                    statements.push(statement.to_string());
                }
                start = at + 1;
            }
            (None, _) => {}
        }
    }
    *buffer = buffer[start..].to_string();
    statements
}

fn is_exit(text: &str) -> bool {
    let word = text.trim().trim_end_matches(';').trim();
    word.eq_ignore_ascii_case("quit") || word.eq_ignore_ascii_case("exit")
}

/// Runs the shell until `quit`, `exit` or the end of `input`. Returns how many statements
/// failed (the binary exits non-zero when piped input had failures).
pub fn run(
    session: &mut Session,
    input: impl BufRead,
    output: &mut impl Write,
    errors: &mut impl Write,
    options: ShellOptions,
    history: &mut History,
) -> Result<usize, CtlError> {
    let mut failures = 0;
    let mut buffer = String::new();
    let mut lines = input.lines();
    loop {
        if options.prompt {
            let prompt = if buffer.trim().is_empty() {
                PROMPT
            } else {
                CONTINUATION_PROMPT
            };
            write!(output, "{prompt}")?;
            output.flush()?;
        }
        let Some(line) = lines.next().transpose()? else {
            break;
        };
        if buffer.trim().is_empty() && is_exit(&line) {
            break;
        }
        buffer.push_str(&line);
        buffer.push('\n');
        for statement in take_statements(&mut buffer) {
            if is_exit(&statement) {
                return Ok(failures);
            }
            history.push(&statement);
            match session.run(&statement, options.format, options.timing, output) {
                Ok(()) => {}
                Err(error @ CtlError::Server { .. }) => {
                    failures += 1;
                    output.flush()?;
                    writeln!(errors, "{error}")?;
                }
                Err(error) => return Err(error),
            }
            output.flush()?;
        }
    }
    let rest = buffer.trim();
    if !rest.is_empty() {
        // Input ended inside a statement: run it, as IoTDB's CLI does with `-e`.
        history.push(rest);
        match session.run(rest, options.format, options.timing, output) {
            Ok(()) => {}
            Err(error @ CtlError::Server { .. }) => {
                failures += 1;
                writeln!(errors, "{error}")?;
            }
            Err(error) => return Err(error),
        }
    }
    output.flush()?;
    Ok(failures)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_end_at_semicolons_outside_quotes() {
        let mut buffer =
            "select * from root.a;\ninsert into root.a.d(time, s) values (1, 'x;y');\nshow"
                .to_string();
        let statements = take_statements(&mut buffer);
        assert_eq!(
            statements,
            [
                "select * from root.a",
                "insert into root.a.d(time, s) values (1, 'x;y')"
            ]
        );
        assert_eq!(buffer, "\nshow");
        buffer.push_str(" databases\n;");
        assert_eq!(take_statements(&mut buffer), ["show databases"]);
        assert!(buffer.is_empty());
    }

    #[test]
    fn exit_words_are_case_insensitive() {
        assert!(is_exit("quit"));
        assert!(is_exit(" EXIT; "));
        assert!(!is_exit("quitter"));
    }

    #[test]
    fn history_is_bounded_and_survives_an_unwritable_file() {
        let mut history = History {
            entries: Vec::new(),
            file: Some(PathBuf::from("/nonexistent-dir/history")),
        };
        for i in 0..HISTORY_ENTRIES_MAX + 5 {
            history.push(&format!("s{i}"));
        }
        assert_eq!(history.entries().len(), HISTORY_ENTRIES_MAX);
        assert_eq!(history.entries()[0], "s5");
        assert!(history.file.is_none());
    }
}
