//! The one error type of the SQL front end.
//!
//! Messages imitate the ANTLR-generated parser IoTDB uses, because users and
//! scripts recognise them: `line 1:14 mismatched input 'FORM' expecting FROM`.
//! As in ANTLR, the line is 1-based and the column is the 0-based character
//! (not byte) index within that line; the byte offset into the statement is
//! kept as well for programmatic use. IoTDB answers such errors with status
//! code 700 ([`StatusCode::SQL_PARSE_ERROR`]).

use std::fmt;

use iotdb_model::StatusCode;

/// What went wrong while lexing or parsing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseErrorKind {
    /// A character that starts no token (ANTLR: "token recognition error").
    TokenRecognition {
        /// The offending text, usually one character.
        text: String,
    },
    /// A token other than the ones the grammar allows here.
    Mismatched {
        /// The token found, as written (or `<EOF>`).
        found: String,
        /// What the grammar accepts here: one item, or `{A, B}`.
        expected: String,
    },
    /// Input left over after a complete statement.
    Extraneous {
        /// The first token of the left-over input.
        found: String,
    },
    /// A token of the right shape with an unusable value (a datetime with
    /// month 13, an integer that overflows, an unknown data type, ...).
    Invalid {
        /// A sentence describing the problem.
        message: String,
    },
}

impl fmt::Display for ParseErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseErrorKind::TokenRecognition { text } => {
                write!(f, "token recognition error at: '{text}'")
            }
            ParseErrorKind::Mismatched { found, expected } => {
                write!(f, "mismatched input '{found}' expecting {expected}")
            }
            ParseErrorKind::Extraneous { found } => {
                write!(f, "extraneous input '{found}' expecting <EOF>")
            }
            ParseErrorKind::Invalid { message } => f.write_str(message),
        }
    }
}

/// A statement that failed to lex or parse, with the position of the
/// offending token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}:{column} {kind}")]
pub struct ParseError {
    /// Byte offset of the offending token in the statement text.
    pub offset: usize,
    /// 1-based line number.
    pub line: usize,
    /// 0-based character index within the line (ANTLR's convention).
    pub column: usize,
    /// What went wrong.
    pub kind: ParseErrorKind,
}

impl ParseError {
    /// Builds an error at `offset` in `source`, computing line and column.
    pub(crate) fn at(source: &str, offset: usize, kind: ParseErrorKind) -> ParseError {
        // Clamp so a bad offset can never panic the slicing below.
        let mut offset = offset.min(source.len());
        while !source.is_char_boundary(offset) {
            offset -= 1;
        }
        let before = &source[..offset];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |newline| newline + 1);
        let column = before[line_start..].chars().count();
        ParseError {
            offset,
            line,
            column,
            kind,
        }
    }

    /// IoTDB's status code for this error (always 700).
    pub fn status_code(&self) -> StatusCode {
        StatusCode::SQL_PARSE_ERROR
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_reads_like_antlr() {
        let source = "SELECT s1, s2 FORM root.sg.d1";
        let error = ParseError::at(
            source,
            14,
            ParseErrorKind::Mismatched {
                found: "FORM".to_string(),
                expected: "FROM".to_string(),
            },
        );
        assert_eq!(
            error.to_string(),
            "line 1:14 mismatched input 'FORM' expecting FROM"
        );
        assert_eq!(error.status_code().code(), 700);
    }

    #[test]
    fn line_and_column_count_characters_after_the_last_newline() {
        let source = "SELECT\n  é, x";
        // 'x' is at byte 13: "SELECT\n" (7) + "  é, " (1 + 1 + 2 + 1 + 1).
        let error = ParseError::at(
            source,
            13,
            ParseErrorKind::Invalid {
                message: "m".to_string(),
            },
        );
        assert_eq!((error.line, error.column), (2, 5));
    }

    #[test]
    fn offsets_past_the_end_or_inside_a_character_are_clamped() {
        let error = ParseError::at(
            "é",
            1,
            ParseErrorKind::Invalid {
                message: "m".to_string(),
            },
        );
        assert_eq!(error.offset, 0);
        let error = ParseError::at(
            "ab",
            99,
            ParseErrorKind::Invalid {
                message: "m".to_string(),
            },
        );
        assert_eq!((error.offset, error.column), (2, 2));
    }
}
