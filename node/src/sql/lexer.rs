//! Splits statement text into tokens.
//!
//! Keywords are not distinguished from identifiers here: every
//! `[A-Za-z_][A-Za-z0-9_]*` run is a [`TokenKind::Word`] and the parser
//! compares words case-insensitively where it expects a keyword. That keeps
//! keywords usable as path node names (`root.sg.time` is legal in IoTDB with
//! backquotes; here a word after `.` is always a name).
//!
//! Runs that start with a digit become [`TokenKind::Number`] with their raw
//! text (`42`, `1.5`, `2e-3`, `1h30m`, `1d`): the parser decides from context
//! whether that is an integer, a float, a duration or a path node name. A
//! digit run shaped like `YYYY-MM-DD...` becomes [`TokenKind::DateTime`].

use super::error::{ParseError, ParseErrorKind};
use super::time::datetime_literal_len;

/// Longest statement accepted, in bytes. A guard against unbounded token
/// vectors from hostile input; IoTDB's own limit is the RPC frame size, and
/// inserts that large belong in the binary tablet path.
pub const STATEMENT_LEN_MAX: usize = 16 * 1024 * 1024;

/// The kinds of token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenKind {
    /// An identifier or keyword.
    Word,
    /// A digit-led run: integer, float, duration or numeric node name.
    Number,
    /// A datetime literal such as `2023-11-14T22:13:20+08:00`.
    DateTime,
    /// A quoted string; `text` holds the unquoted, unescaped contents.
    String,
    /// A backquoted name; `text` holds the contents without backquotes.
    Backquoted,
    /// `.`
    Dot,
    /// `,`
    Comma,
    /// `;`
    Semicolon,
    /// `(`
    LeftParen,
    /// `)`
    RightParen,
    /// `[`
    LeftBracket,
    /// `]`
    RightBracket,
    /// `*`
    Star,
    /// `**`
    DoubleStar,
    /// `=` or `==`
    Equal,
    /// `!=` or `<>`
    NotEqual,
    /// `<`
    Less,
    /// `<=`
    LessEqual,
    /// `>`
    Greater,
    /// `>=`
    GreaterEqual,
    /// `+`
    Plus,
    /// `-`
    Minus,
    /// `/`
    Slash,
    /// `%`
    Percent,
    /// End of input.
    Eof,
}

/// One token with its position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    /// What kind of token this is.
    pub kind: TokenKind,
    /// Its text: raw for words, numbers, datetimes and punctuation; the
    /// unescaped contents for strings and backquoted names.
    pub text: String,
    /// Byte offset of its first character in the statement.
    pub offset: usize,
}

impl Token {
    /// Whether this is the word `keyword`, ignoring ASCII case.
    pub fn is_keyword(&self, keyword: &str) -> bool {
        self.kind == TokenKind::Word && self.text.eq_ignore_ascii_case(keyword)
    }

    /// The token as an error message quotes it.
    pub fn display_text(&self) -> String {
        match self.kind {
            TokenKind::Eof => "<EOF>".to_string(),
            TokenKind::String => format!("'{}'", self.text.replace('\'', "''")),
            TokenKind::Backquoted => format!("`{}`", self.text.replace('`', "``")),
            _ => self.text.clone(),
        }
    }
}

fn is_word_start(byte: u8) -> bool {
    byte.is_ascii_alphabetic() || byte == b'_'
}

fn is_word_continue(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || byte == b'_'
}

/// Tokenizes `source`; the last token is always [`TokenKind::Eof`].
pub fn tokenize(source: &str) -> Result<Vec<Token>, ParseError> {
    if source.len() > STATEMENT_LEN_MAX {
        return Err(ParseError::at(
            source,
            0,
            ParseErrorKind::Invalid {
                message: format!(
                    "statement of {} bytes exceeds the limit of {STATEMENT_LEN_MAX} bytes",
                    source.len()
                ),
            },
        ));
    }
    let bytes = source.as_bytes();
    let mut tokens = Vec::new();
    let mut position = 0;
    while position < bytes.len() {
        let byte = bytes[position];
        if byte.is_ascii_whitespace() {
            position += 1;
            continue;
        }
        // Comments: `-- to end of line` and `/* ... */`.
        if source[position..].starts_with("--") {
            position = source[position..]
                .find('\n')
                .map_or(bytes.len(), |newline| position + newline + 1);
            continue;
        }
        if source[position..].starts_with("/*") {
            let Some(close) = source[position + 2..].find("*/") else {
                return Err(ParseError::at(
                    source,
                    position,
                    ParseErrorKind::Invalid {
                        message: "unterminated comment".to_string(),
                    },
                ));
            };
            position += 2 + close + 2;
            continue;
        }
        let start = position;
        let (kind, text, end) = if is_word_start(byte) {
            let end = scan_while(bytes, position, is_word_continue);
            (TokenKind::Word, source[start..end].to_string(), end)
        } else if byte.is_ascii_digit() {
            if let Some(length) = datetime_literal_len(&source[start..]) {
                let end = start + length;
                (TokenKind::DateTime, source[start..end].to_string(), end)
            } else {
                let end = scan_number(bytes, start);
                (TokenKind::Number, source[start..end].to_string(), end)
            }
        } else if byte == b'\'' || byte == b'"' || byte == b'`' {
            let (contents, end) = scan_quoted(source, start)?;
            let kind = if byte == b'`' {
                TokenKind::Backquoted
            } else {
                TokenKind::String
            };
            (kind, contents, end)
        } else {
            let two = bytes.get(position..position + 2).unwrap_or(&[]);
            let (kind, length) = match two {
                b"**" => (TokenKind::DoubleStar, 2),
                b"<=" => (TokenKind::LessEqual, 2),
                b">=" => (TokenKind::GreaterEqual, 2),
                b"!=" | b"<>" => (TokenKind::NotEqual, 2),
                b"==" => (TokenKind::Equal, 2),
                _ => match byte {
                    b'.' => (TokenKind::Dot, 1),
                    b',' => (TokenKind::Comma, 1),
                    b';' => (TokenKind::Semicolon, 1),
                    b'(' => (TokenKind::LeftParen, 1),
                    b')' => (TokenKind::RightParen, 1),
                    b'[' => (TokenKind::LeftBracket, 1),
                    b']' => (TokenKind::RightBracket, 1),
                    b'*' => (TokenKind::Star, 1),
                    b'=' => (TokenKind::Equal, 1),
                    b'<' => (TokenKind::Less, 1),
                    b'>' => (TokenKind::Greater, 1),
                    b'+' => (TokenKind::Plus, 1),
                    b'-' => (TokenKind::Minus, 1),
                    b'/' => (TokenKind::Slash, 1),
                    b'%' => (TokenKind::Percent, 1),
                    _ => {
                        let character = source[position..].chars().next().unwrap_or('?');
                        return Err(ParseError::at(
                            source,
                            position,
                            ParseErrorKind::TokenRecognition {
                                text: character.to_string(),
                            },
                        ));
                    }
                },
            };
            let end = position + length;
            (kind, source[start..end].to_string(), end)
        };
        tokens.push(Token {
            kind,
            text,
            offset: start,
        });
        position = end;
    }
    tokens.push(Token {
        kind: TokenKind::Eof,
        text: String::new(),
        offset: bytes.len(),
    });
    Ok(tokens)
}

fn scan_while(bytes: &[u8], mut position: usize, accept: impl Fn(u8) -> bool) -> usize {
    while bytes.get(position).is_some_and(|&byte| accept(byte)) {
        position += 1;
    }
    position
}

/// Scans a digit-led run: `[0-9][A-Za-z0-9_]*`, extended by a fraction
/// (`.digits`) when the run so far is all digits, and by a signed exponent
/// (`e-3`) when it ends in `e`/`E` after a mantissa.
fn scan_number(bytes: &[u8], start: usize) -> usize {
    let mut end = scan_while(bytes, start, is_word_continue);
    let all_digits = |from: usize, to: usize| bytes[from..to].iter().all(u8::is_ascii_digit);
    if all_digits(start, end)
        && bytes.get(end) == Some(&b'.')
        && bytes.get(end + 1).is_some_and(u8::is_ascii_digit)
    {
        end = scan_while(bytes, end + 1, is_word_continue);
    }
    // `1e-3` / `1.5E+7`: the word scan stopped at the sign after the `e`.
    let ends_in_exponent = end > start + 1 && matches!(bytes[end - 1], b'e' | b'E');
    if ends_in_exponent
        && bytes[start..end - 1]
            .iter()
            .all(|byte| byte.is_ascii_digit() || *byte == b'.')
        && matches!(bytes.get(end), Some(b'+' | b'-'))
        && bytes.get(end + 1).is_some_and(u8::is_ascii_digit)
    {
        end = scan_while(bytes, end + 1, |byte| byte.is_ascii_digit());
    }
    end
}

/// Scans a quoted string or backquoted name starting at `start`; a doubled
/// quote character inside stands for one (`'it''s'`). Returns the contents
/// and the offset just past the closing quote.
fn scan_quoted(source: &str, start: usize) -> Result<(String, usize), ParseError> {
    let bytes = source.as_bytes();
    let quote = bytes[start];
    let mut contents = String::new();
    let mut position = start + 1;
    loop {
        let Some(relative) = source[position..].find(quote as char) else {
            let what = if quote == b'`' { "name" } else { "string" };
            return Err(ParseError::at(
                source,
                start,
                ParseErrorKind::Invalid {
                    message: format!("unterminated quoted {what}"),
                },
            ));
        };
        contents.push_str(&source[position..position + relative]);
        position += relative + 1;
        if bytes.get(position) == Some(&quote) {
            contents.push(quote as char);
            position += 1;
        } else {
            return Ok((contents, position));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(source: &str) -> Vec<(TokenKind, String)> {
        tokenize(source)
            .unwrap()
            .into_iter()
            .map(|token| (token.kind, token.text))
            .collect()
    }

    #[test]
    fn words_numbers_and_punctuation() {
        use TokenKind::*;
        assert_eq!(
            kinds("select s1,** from root.sg.`a b`;"),
            vec![
                (Word, "select".into()),
                (Word, "s1".into()),
                (Comma, ",".into()),
                (DoubleStar, "**".into()),
                (Word, "from".into()),
                (Word, "root".into()),
                (Dot, ".".into()),
                (Word, "sg".into()),
                (Dot, ".".into()),
                (Backquoted, "a b".into()),
                (Semicolon, ";".into()),
                (Eof, "".into()),
            ]
        );
    }

    #[test]
    fn number_shapes() {
        let numbers = |source: &str| -> Vec<String> {
            tokenize(source)
                .unwrap()
                .into_iter()
                .filter(|token| token.kind == TokenKind::Number)
                .map(|token| token.text)
                .collect()
        };
        assert_eq!(
            numbers("42 1.5 2e-3 1.5E+7 1h30m 7d"),
            vec!["42", "1.5", "2e-3", "1.5E+7", "1h30m", "7d"]
        );
        // A minus after a non-exponent word is its own token.
        assert_eq!(kinds("1h-2")[1].0, TokenKind::Minus);
    }

    #[test]
    fn datetimes_and_comparisons() {
        use TokenKind::*;
        assert_eq!(
            kinds("time>=2023-11-14T22:13:20.5+08:00 and time<>1"),
            vec![
                (Word, "time".into()),
                (GreaterEqual, ">=".into()),
                (DateTime, "2023-11-14T22:13:20.5+08:00".into()),
                (Word, "and".into()),
                (Word, "time".into()),
                (NotEqual, "<>".into()),
                (Number, "1".into()),
                (Eof, "".into()),
            ]
        );
    }

    #[test]
    fn strings_unescape_doubled_quotes() {
        assert_eq!(kinds("'it''s'")[0], (TokenKind::String, "it's".into()));
        assert_eq!(kinds("\"a\"\"b\"")[0], (TokenKind::String, "a\"b".into()));
        assert_eq!(kinds("`a``b`")[0], (TokenKind::Backquoted, "a`b".into()));
    }

    #[test]
    fn comments_are_skipped() {
        assert_eq!(kinds("a -- c\nb /* x */ c").len(), 4);
    }

    #[test]
    fn errors_point_at_the_bad_character() {
        let error = tokenize("select #").unwrap_err();
        assert_eq!(
            error.to_string(),
            "line 1:7 token recognition error at: '#'"
        );
        let error = tokenize("x 'abc").unwrap_err();
        assert_eq!(error.offset, 2);
        assert!(tokenize("/* never closed").is_err());
        assert!(tokenize("é").is_err());
    }
}
