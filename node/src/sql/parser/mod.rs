//! Recursive-descent parser from tokens to [`Statement`]s.
//!
//! One method per grammar rule, named after the rule. Every method either
//! consumes the tokens of its rule or returns a [`ParseError`] that names
//! what was expected and the token found, positioned at that token. The only
//! recursion is through parenthesised time filters, bounded by
//! [`NESTING_DEPTH_MAX`], so no input can exhaust the stack.

mod expr;

use super::ast::{
    Aggregate, AggregateFunction, CalendarWindows, Comparison, Compressor, DataType,
    DatabaseAttributes, Encoding, Fill, GroupByRange, GroupByTime, Insert, InsertRow, LastOrder,
    LastSortKey, Literal, MeasurementSpec, Projection, RegionKind, Select, Statement, TimeExpr,
    TimeFilter, TimeOrder, Ttl,
};
use super::error::{ParseError, ParseErrorKind};
use super::expr::{Expr, ScalarFunction, split_time_filter};
use super::lexer::{Token, TokenKind, tokenize};
use super::path::{Path, PathNode, PathPattern, ROOT};
use super::time::{parse_datetime_millis, parse_duration_millis, parse_months};

/// Deepest nesting of parentheses in a time filter; real filters nest one or
/// two levels, and the bound keeps hostile input from overflowing the stack.
pub const NESTING_DEPTH_MAX: usize = 32;

/// Keywords that may start a statement, for error messages.
const STATEMENT_KEYWORDS: &[&str] = &[
    "CREATE", "ALTER", "SET", "UNSET", "SHOW", "COUNT", "DELETE", "DROP", "INSERT", "SELECT",
    "FLUSH", "MIGRATE", "REMOVE",
];

/// Parses exactly one statement, with an optional trailing `;`.
pub fn parse(source: &str) -> Result<Statement, ParseError> {
    let mut parser = Parser::new(source)?;
    let statement = parser.statement()?;
    parser.eat(&TokenKind::Semicolon);
    parser.expect_end()?;
    Ok(statement)
}

/// Parses zero or more statements separated by `;` (empty statements are
/// skipped), as a shell reads a script.
pub fn parse_script(source: &str) -> Result<Vec<Statement>, ParseError> {
    let mut parser = Parser::new(source)?;
    let mut statements = Vec::new();
    loop {
        while parser.eat(&TokenKind::Semicolon) {}
        if parser.peek().kind == TokenKind::Eof {
            return Ok(statements);
        }
        statements.push(parser.statement()?);
        if !parser.eat(&TokenKind::Semicolon) {
            parser.expect_end()?;
        }
    }
}

/// Formats an expectation set as ANTLR does: `FROM` or `{FROM, ','}`.
/// How many paths `expr` names outside aggregate calls (`count(s1) + s2`: one).
fn paths_outside_aggregates(expr: &Expr) -> usize {
    match expr {
        Expr::Path(_) => 1,
        Expr::Function { name, .. } if AggregateFunction::from_name(name).is_some() => 0,
        Expr::Time | Expr::Constant(_) | Expr::Now { .. } => 0,
        Expr::Negate(e)
        | Expr::Not(e)
        | Expr::Cast { expr: e, .. }
        | Expr::In { expr: e, .. }
        | Expr::Like { expr: e, .. }
        | Expr::Regexp { expr: e, .. }
        | Expr::IsNull { expr: e, .. } => paths_outside_aggregates(e),
        Expr::Arithmetic(_, a, b) | Expr::Compare(_, a, b) | Expr::And(a, b) | Expr::Or(a, b) => {
            paths_outside_aggregates(a) + paths_outside_aggregates(b)
        }
        Expr::Between {
            expr, low, high, ..
        } => [expr, low, high]
            .into_iter()
            .map(|e| paths_outside_aggregates(e))
            .sum(),
        Expr::Function { args, .. } => args.iter().map(paths_outside_aggregates).sum(),
    }
}

fn one_of(items: &[&str]) -> String {
    match items {
        [single] => (*single).to_string(),
        _ => format!("{{{}}}", items.join(", ")),
    }
}

struct Parser<'a> {
    source: &'a str,
    tokens: Vec<Token>,
    position: usize,
    /// The `AS` aliases of the select list being parsed.
    aliases: Vec<Option<String>>,
}

impl<'a> Parser<'a> {
    fn new(source: &'a str) -> Result<Parser<'a>, ParseError> {
        let tokens = tokenize(source)?;
        assert!(
            tokens.last().map(|token| &token.kind) == Some(&TokenKind::Eof),
            "the lexer always ends with Eof"
        );
        Ok(Parser {
            source,
            tokens,
            position: 0,
            aliases: Vec::new(),
        })
    }

    // ----- token plumbing -------------------------------------------------

    fn peek(&self) -> &Token {
        self.peek_at(0)
    }

    /// The token `ahead` places on; the final Eof repeats past the end.
    fn peek_at(&self, ahead: usize) -> &Token {
        let last = self.tokens.len() - 1;
        &self.tokens[(self.position + ahead).min(last)]
    }

    fn advance(&mut self) -> Token {
        let token = self.peek().clone();
        if token.kind != TokenKind::Eof {
            self.position += 1;
        }
        token
    }

    fn eat(&mut self, kind: &TokenKind) -> bool {
        if &self.peek().kind == kind {
            self.advance();
            true
        } else {
            false
        }
    }

    fn eat_keyword(&mut self, keyword: &str) -> bool {
        if self.peek().is_keyword(keyword) {
            self.advance();
            true
        } else {
            false
        }
    }

    fn mismatched(&self, expected: &str) -> ParseError {
        let token = self.peek();
        ParseError::at(
            self.source,
            token.offset,
            ParseErrorKind::Mismatched {
                found: token.display_text(),
                expected: expected.to_string(),
            },
        )
    }

    fn invalid_at(&self, offset: usize, message: String) -> ParseError {
        ParseError::at(self.source, offset, ParseErrorKind::Invalid { message })
    }

    fn expect(&mut self, kind: &TokenKind, display: &str) -> Result<Token, ParseError> {
        if &self.peek().kind == kind {
            Ok(self.advance())
        } else {
            Err(self.mismatched(display))
        }
    }

    fn expect_keyword(&mut self, keyword: &str) -> Result<(), ParseError> {
        if self.eat_keyword(keyword) {
            Ok(())
        } else {
            Err(self.mismatched(keyword))
        }
    }

    /// Consumes whichever of `keywords` comes next and returns its index.
    fn expect_keyword_of(&mut self, keywords: &[&str]) -> Result<usize, ParseError> {
        let found = keywords
            .iter()
            .position(|keyword| self.peek().is_keyword(keyword));
        match found {
            Some(index) => {
                self.advance();
                Ok(index)
            }
            None => Err(self.mismatched(&one_of(keywords))),
        }
    }

    fn expect_end(&self) -> Result<(), ParseError> {
        let token = self.peek();
        if token.kind == TokenKind::Eof {
            return Ok(());
        }
        if token.is_keyword("OR") {
            return Err(self.invalid_at(
                token.offset,
                "OR in a time filter is not supported; use one range per statement".to_string(),
            ));
        }
        Err(ParseError::at(
            self.source,
            token.offset,
            ParseErrorKind::Extraneous {
                found: token.display_text(),
            },
        ))
    }

    // ----- statements -----------------------------------------------------

    fn statement(&mut self) -> Result<Statement, ParseError> {
        let token = self.peek().clone();
        if token.kind != TokenKind::Word {
            return Err(self.mismatched(&one_of(STATEMENT_KEYWORDS)));
        }
        match token.text.to_ascii_uppercase().as_str() {
            "CREATE" => self.create(),
            "ALTER" => self.alter(),
            "SET" => self.set(),
            "UNSET" => self.unset(),
            "SHOW" => self.show(),
            "COUNT" => self.count(),
            "DELETE" | "DROP" => self.delete(),
            "INSERT" => self.insert(),
            "SELECT" => self.select(),
            "FLUSH" => self.flush(),
            "MIGRATE" => self.migrate(),
            "REMOVE" => self.remove(),
            _ => Err(self.mismatched(&one_of(STATEMENT_KEYWORDS))),
        }
    }

    fn create(&mut self) -> Result<Statement, ParseError> {
        self.expect_keyword("CREATE")?;
        match self.expect_keyword_of(&["DATABASE", "STORAGE", "TIMESERIES", "ALIGNED"])? {
            0 => self.create_database_rest(),
            1 => {
                self.expect_keyword("GROUP")?;
                self.create_database_rest()
            }
            2 => {
                let start = self.peek().offset;
                let path = self.full_path()?;
                if path.nodes.len() < 3 {
                    return Err(self.invalid_at(
                        start,
                        format!("timeseries path '{path}' needs a database and a measurement"),
                    ));
                }
                let spec = self.measurement_spec(true)?;
                Ok(Statement::CreateTimeseries { path, spec })
            }
            _ => {
                self.expect_keyword("TIMESERIES")?;
                self.create_aligned_timeseries_rest()
            }
        }
    }

    /// After `CREATE DATABASE`, `CREATE STORAGE GROUP` or `SET STORAGE GROUP TO`.
    fn create_database_rest(&mut self) -> Result<Statement, ParseError> {
        let database = self.database_path()?;
        let attributes = if self.eat_keyword("WITH") {
            self.database_attributes()?
        } else {
            DatabaseAttributes::default()
        };
        Ok(Statement::CreateDatabase {
            database,
            attributes,
        })
    }

    fn alter(&mut self) -> Result<Statement, ParseError> {
        self.expect_keyword("ALTER")?;
        self.expect_keyword("DATABASE")?;
        let database = self.database_path()?;
        self.expect_keyword("WITH")?;
        let attributes = self.database_attributes()?;
        Ok(Statement::AlterDatabase {
            database,
            attributes,
        })
    }

    fn database_path(&mut self) -> Result<Path, ParseError> {
        let start = self.peek().offset;
        let database = self.full_path()?;
        if database.nodes.len() < 2 {
            return Err(self.invalid_at(
                start,
                "a database path needs at least one node after root".to_string(),
            ));
        }
        Ok(database)
    }

    fn database_attributes(&mut self) -> Result<DatabaseAttributes, ParseError> {
        const KEYS: &[&str] = &[
            "TTL",
            "TIME_PARTITION_INTERVAL",
            "SCHEMA_REGION_GROUP_NUM",
            "DATA_REGION_GROUP_NUM",
            "SCHEMA_REPLICATION_FACTOR",
            "DATA_REPLICATION_FACTOR",
        ];
        let mut attributes = DatabaseAttributes::default();
        loop {
            let key_offset = self.peek().offset;
            let key = self.expect_keyword_of(KEYS)?;
            self.expect(&TokenKind::Equal, "'='")?;
            let duplicate = match key {
                0 => attributes.ttl.replace(self.ttl_value()?).is_some(),
                1 => {
                    let interval = self.positive_integer()?;
                    attributes
                        .time_partition_interval_ms
                        .replace(interval)
                        .is_some()
                }
                _ => {
                    let count = self.positive_u32()?;
                    let slot = match key {
                        2 => &mut attributes.schema_region_group_num,
                        3 => &mut attributes.data_region_group_num,
                        4 => &mut attributes.schema_replication_factor,
                        _ => &mut attributes.data_replication_factor,
                    };
                    slot.replace(count).is_some()
                }
            };
            if duplicate {
                return Err(self.invalid_at(
                    key_offset,
                    format!("attribute {} is given twice", KEYS[key]),
                ));
            }
            if !self.eat(&TokenKind::Comma) {
                return Ok(attributes);
            }
        }
    }

    fn create_aligned_timeseries_rest(&mut self) -> Result<Statement, ParseError> {
        let start = self.peek().offset;
        let device = self.full_path()?;
        if device.nodes.len() < 2 {
            return Err(self.invalid_at(start, format!("device path '{device}' is too short")));
        }
        self.expect(&TokenKind::LeftParen, "'('")?;
        let mut measurements: Vec<(String, MeasurementSpec)> = Vec::new();
        loop {
            let name_offset = self.peek().offset;
            let name = self.node_name()?;
            if measurements.iter().any(|(existing, _)| existing == &name) {
                return Err(
                    self.invalid_at(name_offset, format!("measurement '{name}' is given twice"))
                );
            }
            let spec = self.measurement_spec(false)?;
            measurements.push((name, spec));
            if !self.eat(&TokenKind::Comma) {
                break;
            }
        }
        self.expect(&TokenKind::RightParen, "{',', ')'}")?;
        Ok(Statement::CreateAlignedTimeseries {
            device,
            measurements,
        })
    }

    /// `[WITH] (DATATYPE=T | T) [[,] ENCODING=E] [[,] COMPRESSOR=C]` in any
    /// order after the type. Commas between attributes are allowed only where
    /// they cannot be confused with a list separator (`comma_separated`).
    fn measurement_spec(&mut self, comma_separated: bool) -> Result<MeasurementSpec, ParseError> {
        const KEYS: &[&str] = &["DATATYPE", "ENCODING", "COMPRESSOR", "COMPRESSION"];
        self.eat_keyword("WITH");
        let mut data_type = None;
        if self.peek().kind == TokenKind::Word && self.peek_at(1).kind != TokenKind::Equal {
            data_type = Some(self.keyword_value::<DataType>("data type")?);
        }
        let (mut encoding, mut compressor) = (None, None);
        loop {
            let attribute_follows = |parser: &Parser<'_>, at: usize| {
                parser.peek_at(at).kind == TokenKind::Word
                    && parser.peek_at(at + 1).kind == TokenKind::Equal
            };
            if comma_separated && self.peek().kind == TokenKind::Comma && attribute_follows(self, 1)
            {
                self.advance();
            }
            if !attribute_follows(self, 0) {
                break;
            }
            let key_offset = self.peek().offset;
            let key = self.expect_keyword_of(KEYS)?;
            self.advance(); // '='
            let duplicate = match key {
                0 => data_type
                    .replace(self.keyword_value::<DataType>("data type")?)
                    .is_some(),
                1 => encoding
                    .replace(self.keyword_value::<Encoding>("encoding")?)
                    .is_some(),
                _ => compressor
                    .replace(self.keyword_value::<Compressor>("compressor")?)
                    .is_some(),
            };
            if duplicate {
                return Err(self.invalid_at(
                    key_offset,
                    format!("attribute {} is given twice", KEYS[key]),
                ));
            }
        }
        let Some(data_type) = data_type else {
            return Err(self.mismatched("{WITH, DATATYPE, a data type}"));
        };
        Ok(MeasurementSpec {
            data_type,
            encoding,
            compressor,
        })
    }

    /// A word (or quoted string) naming one value of a keyword enum.
    fn keyword_value<T: std::str::FromStr>(&mut self, what: &str) -> Result<T, ParseError> {
        let token = self.peek().clone();
        if !matches!(token.kind, TokenKind::Word | TokenKind::String) {
            return Err(self.mismatched(&format!("a {what}")));
        }
        let value = token.text.parse().map_err(|_| {
            self.invalid_at(token.offset, format!("unknown {what} '{}'", token.text))
        })?;
        self.advance();
        Ok(value)
    }

    fn set(&mut self) -> Result<Statement, ParseError> {
        self.expect_keyword("SET")?;
        match self.expect_keyword_of(&["STORAGE", "TTL"])? {
            0 => {
                self.expect_keyword("GROUP")?;
                self.expect_keyword("TO")?;
                self.create_database_rest()
            }
            _ => {
                self.expect_keyword("TO")?;
                let path = self.full_pattern()?;
                let ttl = self.ttl_value()?;
                Ok(Statement::SetTtl { path, ttl })
            }
        }
    }

    fn unset(&mut self) -> Result<Statement, ParseError> {
        self.expect_keyword("UNSET")?;
        self.expect_keyword("TTL")?;
        self.expect_keyword_of(&["FROM", "TO"])?;
        let path = self.full_pattern()?;
        Ok(Statement::UnsetTtl { path })
    }

    fn ttl_value(&mut self) -> Result<Ttl, ParseError> {
        if self.eat_keyword("INF") {
            return Ok(Ttl::Infinite);
        }
        if self.peek().kind != TokenKind::Number {
            return Err(self.mismatched("{an integer, INF}"));
        }
        let token = self.advance();
        token
            .text
            .parse::<u64>()
            .map(Ttl::Millis)
            .map_err(|_| self.invalid_at(token.offset, format!("invalid TTL '{}'", token.text)))
    }

    fn show(&mut self) -> Result<Statement, ParseError> {
        const WHAT: &[&str] = &[
            "DATABASES",
            "STORAGE",
            "TIMESERIES",
            "DEVICES",
            "ALL",
            "TTL",
            "CLUSTER",
            "REGIONS",
            "DATA",
            "SCHEMA",
            "DATANODES",
            "CONFIGNODES",
            "VARIABLES",
            "VERSION",
        ];
        self.expect_keyword("SHOW")?;
        let statement = match self.expect_keyword_of(WHAT)? {
            0 => {
                let details = self.eat_keyword("DETAILS");
                Statement::ShowDatabases {
                    details,
                    pattern: self.optional_full_pattern()?,
                }
            }
            1 => {
                self.expect_keyword("GROUP")?;
                Statement::ShowDatabases {
                    details: false,
                    pattern: self.optional_full_pattern()?,
                }
            }
            2 => Statement::ShowTimeseries {
                pattern: self.optional_full_pattern()?,
            },
            3 => Statement::ShowDevices {
                pattern: self.optional_full_pattern()?,
            },
            4 => {
                self.expect_keyword("TTL")?;
                Statement::ShowAllTtl
            }
            5 => {
                self.expect_keyword("ON")?;
                Statement::ShowTtlOn {
                    patterns: self.full_pattern_list()?,
                }
            }
            6 => Statement::ShowCluster {
                details: self.eat_keyword("DETAILS"),
            },
            7 => self.show_regions_rest(RegionKind::All)?,
            8 => {
                self.expect_keyword("REGIONS")?;
                self.show_regions_rest(RegionKind::Data)?
            }
            9 => {
                self.expect_keyword("REGIONS")?;
                self.show_regions_rest(RegionKind::Schema)?
            }
            10 => Statement::ShowDataNodes,
            11 => Statement::ShowConfigNodes,
            12 => Statement::ShowVariables,
            _ => Statement::ShowVersion,
        };
        Ok(statement)
    }

    fn show_regions_rest(&mut self, kind: RegionKind) -> Result<Statement, ParseError> {
        let mut databases = Vec::new();
        if self.eat_keyword("OF") {
            if self.expect_keyword_of(&["DATABASE", "STORAGE"])? == 1 {
                self.expect_keyword("GROUP")?;
            }
            databases = self.full_pattern_list()?;
        }
        let mut node_ids = Vec::new();
        if self.eat_keyword("ON") {
            self.expect_keyword("NODEID")?;
            loop {
                node_ids.push(self.unsigned::<u32>("a node id")?);
                if !self.eat(&TokenKind::Comma) {
                    break;
                }
            }
        }
        Ok(Statement::ShowRegions {
            kind,
            databases,
            node_ids,
        })
    }

    fn count(&mut self) -> Result<Statement, ParseError> {
        self.expect_keyword("COUNT")?;
        let what = self.expect_keyword_of(&["DATABASES", "STORAGE", "TIMESERIES", "DEVICES"])?;
        if what == 1 {
            self.expect_keyword("GROUP")?;
        }
        let pattern = self.optional_full_pattern()?;
        Ok(match what {
            0 | 1 => Statement::CountDatabases { pattern },
            2 => Statement::CountTimeseries { pattern },
            _ => Statement::CountDevices { pattern },
        })
    }

    /// `DELETE`/`DROP` followed by `DATABASE`, `STORAGE GROUP`, `TIMESERIES`
    /// or (DELETE only) `FROM`.
    fn delete(&mut self) -> Result<Statement, ParseError> {
        let is_drop = self.peek().is_keyword("DROP");
        self.advance();
        let options: &[&str] = if is_drop {
            &["DATABASE", "STORAGE", "TIMESERIES"]
        } else {
            &["DATABASE", "STORAGE", "TIMESERIES", "FROM"]
        };
        match self.expect_keyword_of(options)? {
            0 => Ok(Statement::DeleteDatabases {
                patterns: self.full_pattern_list()?,
            }),
            1 => {
                self.expect_keyword("GROUP")?;
                Ok(Statement::DeleteDatabases {
                    patterns: self.full_pattern_list()?,
                })
            }
            2 => Ok(Statement::DeleteTimeseries {
                patterns: self.full_pattern_list()?,
            }),
            _ => {
                let patterns = self.full_pattern_list()?;
                let time_filter = if self.eat_keyword("WHERE") {
                    Some(self.time_filter(0)?)
                } else {
                    None
                };
                Ok(Statement::DeleteData {
                    patterns,
                    time_filter,
                })
            }
        }
    }

    fn flush(&mut self) -> Result<Statement, ParseError> {
        self.expect_keyword("FLUSH")?;
        let mut databases = Vec::new();
        if self.peek().is_keyword(ROOT) {
            loop {
                databases.push(self.database_path()?);
                if !self.eat(&TokenKind::Comma) {
                    break;
                }
            }
        }
        Ok(Statement::Flush { databases })
    }

    /// `MIGRATE REGION r FROM a TO b` (IoTDB 1.3).
    fn migrate(&mut self) -> Result<Statement, ParseError> {
        self.expect_keyword("MIGRATE")?;
        self.expect_keyword("REGION")?;
        let region = self.unsigned::<u32>("a region id")?;
        self.expect_keyword("FROM")?;
        let from = self.unsigned::<u32>("a DataNode id")?;
        self.expect_keyword("TO")?;
        let to = self.unsigned::<u32>("a DataNode id")?;
        Ok(Statement::MigrateRegion { region, from, to })
    }

    /// `REMOVE DATANODE n[, n]`, `REMOVE CONFIGNODE n` (IoTDB 1.3).
    fn remove(&mut self) -> Result<Statement, ParseError> {
        self.expect_keyword("REMOVE")?;
        if self.expect_keyword_of(&["DATANODE", "CONFIGNODE"])? == 1 {
            let node_id = self.unsigned::<u32>("a ConfigNode id")?;
            return Ok(Statement::RemoveConfigNode { node_id });
        }
        let mut node_ids = Vec::new();
        loop {
            node_ids.push(self.unsigned::<u32>("a DataNode id")?);
            if !self.eat(&TokenKind::Comma) {
                break;
            }
        }
        Ok(Statement::RemoveDataNode { node_ids })
    }

    // ----- INSERT ---------------------------------------------------------

    fn insert(&mut self) -> Result<Statement, ParseError> {
        self.expect_keyword("INSERT")?;
        self.expect_keyword("INTO")?;
        let start = self.peek().offset;
        let device = self.full_path()?;
        if device.nodes.len() < 2 {
            return Err(self.invalid_at(start, format!("device path '{device}' is too short")));
        }
        self.expect(&TokenKind::LeftParen, "'('")?;
        let mut has_time_column = false;
        let mut measurements: Vec<String> = Vec::new();
        loop {
            let token = self.peek().clone();
            let is_time_column = token.is_keyword("time") || token.is_keyword("timestamp");
            if is_time_column {
                if has_time_column || !measurements.is_empty() {
                    return Err(
                        self.invalid_at(token.offset, "the time column must come first".into())
                    );
                }
                self.advance();
                has_time_column = true;
            } else {
                let name = self.node_name()?;
                if measurements.contains(&name) {
                    return Err(self
                        .invalid_at(token.offset, format!("measurement '{name}' is given twice")));
                }
                measurements.push(name);
            }
            if !self.eat(&TokenKind::Comma) {
                break;
            }
        }
        self.expect(&TokenKind::RightParen, "{',', ')'}")?;
        if measurements.is_empty() {
            return Err(self.invalid_at(start, "an insert needs at least one measurement".into()));
        }
        let aligned = self.eat_keyword("ALIGNED");
        self.expect_keyword("VALUES")?;
        let mut rows = Vec::new();
        loop {
            rows.push(self.insert_row(has_time_column, measurements.len())?);
            if !self.eat(&TokenKind::Comma) {
                break;
            }
        }
        Ok(Statement::Insert(Insert {
            device,
            aligned,
            measurements,
            rows,
        }))
    }

    fn insert_row(
        &mut self,
        has_time_column: bool,
        measurement_count: usize,
    ) -> Result<InsertRow, ParseError> {
        let row_offset = self.expect(&TokenKind::LeftParen, "'('")?.offset;
        let time = if has_time_column {
            let time = self.time_expr()?;
            self.expect(&TokenKind::Comma, "','")?;
            time
        } else {
            TimeExpr::Now { offset_ms: 0 }
        };
        let mut values = Vec::with_capacity(measurement_count);
        loop {
            values.push(self.literal()?);
            if !self.eat(&TokenKind::Comma) {
                break;
            }
        }
        self.expect(&TokenKind::RightParen, "{',', ')'}")?;
        if values.len() != measurement_count {
            return Err(self.invalid_at(
                row_offset,
                format!(
                    "the row has {} values but {} measurements were named",
                    values.len(),
                    measurement_count
                ),
            ));
        }
        Ok(InsertRow { time, values })
    }

    fn literal(&mut self) -> Result<Literal, ParseError> {
        let token = self.peek().clone();
        match token.kind {
            TokenKind::String => {
                self.advance();
                Ok(Literal::Text(token.text))
            }
            TokenKind::Word if token.is_keyword("true") => {
                self.advance();
                Ok(Literal::Boolean(true))
            }
            TokenKind::Word if token.is_keyword("false") => {
                self.advance();
                Ok(Literal::Boolean(false))
            }
            TokenKind::Word if token.is_keyword("null") => {
                self.advance();
                Ok(Literal::Null)
            }
            // A datetime stored into a TIMESTAMP column: its milliseconds.
            TokenKind::DateTime => {
                self.advance();
                parse_datetime_millis(&token.text)
                    .map(Literal::Integer)
                    .map_err(|message| self.invalid_at(token.offset, message))
            }
            TokenKind::Number | TokenKind::Plus | TokenKind::Minus => self.number_literal(),
            _ => Err(self.mismatched("a value")),
        }
    }

    /// `[+|-] number` as an integer when it fits `i64`, otherwise as a float.
    fn number_literal(&mut self) -> Result<Literal, ParseError> {
        let start = self.peek().offset;
        let negative = if self.eat(&TokenKind::Minus) {
            true
        } else {
            self.eat(&TokenKind::Plus);
            false
        };
        if self.peek().kind != TokenKind::Number {
            return Err(self.mismatched("a number"));
        }
        let token = self.advance();
        let text = if negative {
            format!("-{}", token.text)
        } else {
            token.text.clone()
        };
        let is_integer = token.text.bytes().all(|byte| byte.is_ascii_digit());
        if is_integer {
            return text.parse::<i64>().map(Literal::Integer).map_err(|_| {
                self.invalid_at(start, format!("integer {text} is out of the INT64 range"))
            });
        }
        match text.parse::<f64>() {
            Ok(value) if value.is_finite() => Ok(Literal::Float(value)),
            Ok(_) => Err(self.invalid_at(start, format!("number {text} is out of range"))),
            Err(_) => Err(self.invalid_at(start, format!("'{}' is not a number", token.text))),
        }
    }

    // ----- SELECT ---------------------------------------------------------

    fn select(&mut self) -> Result<Statement, ParseError> {
        self.expect_keyword("SELECT")?;
        let is_last =
            self.peek().is_keyword("LAST") && self.peek_at(1).kind != TokenKind::LeftParen;
        let projection = if is_last {
            self.advance();
            Projection::Last(self.suffix_pattern_list()?)
        } else {
            self.select_items()?
        };
        let aliases = std::mem::take(&mut self.aliases);
        self.expect_keyword("FROM")?;
        let from = self.full_pattern_list()?;
        let (time_filter, value_filter) = if self.eat_keyword("WHERE") {
            split_time_filter(self.expression()?)
        } else {
            (None, None)
        };
        let group_by_offset = self.peek().offset;
        let (mut group_by, mut group_by_level) = (None, None);
        if self.eat_keyword("GROUP") {
            self.expect_keyword("BY")?;
            // `(time windows)`, `LEVEL = l[, l]`, or both, in this order.
            if self.peek().kind == TokenKind::LeftParen {
                group_by = Some(self.group_by_time()?);
                if self.eat(&TokenKind::Comma) {
                    group_by_level = Some(self.group_by_level()?);
                }
            } else {
                group_by_level = Some(self.group_by_level()?);
            }
        }
        if (group_by.is_some() || group_by_level.is_some()) && !projection.is_aggregate() {
            return Err(self.invalid_at(
                group_by_offset,
                "GROUP BY needs aggregate functions in the select list".to_string(),
            ));
        }
        let having_offset = self.peek().offset;
        let having = if self.eat_keyword("HAVING") {
            if !projection.is_aggregate() {
                return Err(self.invalid_at(
                    having_offset,
                    "HAVING needs aggregate functions in the select list".to_string(),
                ));
            }
            Some(self.expression()?)
        } else {
            None
        };
        let fill = if self.eat_keyword("FILL") {
            if matches!(projection, Projection::Last(_)) {
                return Err(self.invalid_at(
                    having_offset,
                    "SELECT LAST does not support FILL".to_string(),
                ));
            }
            self.expect(&TokenKind::LeftParen, "'('")?;
            let fill = if self.eat_keyword("PREVIOUS") {
                let within_ms = if self.eat(&TokenKind::Comma) {
                    Some(self.positive_duration()?)
                } else {
                    None
                };
                Fill::Previous(within_ms)
            } else if self.eat_keyword("LINEAR") {
                Fill::Linear
            } else {
                Fill::Constant(self.literal()?)
            };
            if !matches!(fill, Fill::Previous(_)) && self.peek().kind == TokenKind::Comma {
                // IoTDB refuses a second argument but to PREVIOUS too.
                return Err(self.invalid_at(
                    self.peek().offset,
                    "only FILL(PREVIOUS, duration) takes a time bound".to_string(),
                ));
            }
            self.expect(&TokenKind::RightParen, "')'")?;
            Some(fill)
        } else {
            None
        };
        let is_last = matches!(projection, Projection::Last(_));
        let mut order = TimeOrder::Ascending;
        let mut last_order = None;
        if self.eat_keyword("ORDER") {
            self.expect_keyword("BY")?;
            let key_offset = self.peek().offset;
            let key = [
                LastSortKey::Time,
                LastSortKey::Timeseries,
                LastSortKey::Value,
                LastSortKey::DataType,
            ][self.expect_keyword_of(&["TIME", "TIMESERIES", "VALUE", "DATATYPE"])?];
            let descending = self.eat_keyword("DESC");
            if !descending {
                self.eat_keyword("ASC");
            }
            if is_last {
                last_order = Some(LastOrder { key, descending });
            } else if key != LastSortKey::Time {
                return Err(self.invalid_at(
                    key_offset,
                    "ORDER BY TIMESERIES, VALUE or DATATYPE sorts only a SELECT LAST result"
                        .to_string(),
                ));
            } else if descending {
                order = TimeOrder::Descending;
            }
        }
        let (mut limit, mut offset) = (None, None);
        let (mut slimit, mut soffset) = (None, None);
        let mut align_by_device = false;
        loop {
            if limit.is_none() && self.eat_keyword("LIMIT") {
                limit = Some(self.unsigned::<u64>("a row count")?);
            } else if offset.is_none() && self.eat_keyword("OFFSET") {
                offset = Some(self.unsigned::<u64>("a row count")?);
            } else if slimit.is_none() && self.eat_keyword("SLIMIT") {
                slimit = Some(self.unsigned::<u64>("a series count")?);
            } else if soffset.is_none() && self.eat_keyword("SOFFSET") {
                soffset = Some(self.unsigned::<u64>("a series count")?);
            } else if !align_by_device && self.eat_keyword("ALIGN") {
                self.expect_keyword("BY")?;
                align_by_device = self.expect_keyword_of(&["DEVICE", "TIME"])? == 0;
            } else {
                break;
            }
        }
        if align_by_device && matches!(projection, Projection::Last(_)) {
            return Err(self.invalid_at(
                self.peek().offset,
                "SELECT LAST does not support ALIGN BY DEVICE".to_string(),
            ));
        }
        if is_last && (slimit.is_some() || soffset.is_some()) {
            // IoTDB's words: its LAST result has one row per series, paged by LIMIT/OFFSET.
            return Err(self.invalid_at(
                self.peek().offset,
                "SLIMIT and SOFFSET can not be used in LastQuery".to_string(),
            ));
        }
        Ok(Statement::Select(Select {
            projection,
            aliases,
            from,
            time_filter,
            value_filter,
            having,
            fill,
            align_by_device,
            slimit,
            soffset,
            group_by,
            group_by_level,
            order,
            last_order,
            limit,
            offset,
        }))
    }

    /// The select list of a raw or aggregate query; the two may not mix. A raw item is a
    /// suffix path, or an expression of paths (`s1 + 1`, `sin(s1)`, `cast(s1 AS INT32)`);
    /// an aggregate item is an aggregate (`count(s1)`) or an expression of aggregates and
    /// constants (`sum(s1) / count(s1)`).
    fn select_items(&mut self) -> Result<Projection, ParseError> {
        self.aliases.clear();
        // Every item as an expression (a plain aggregate as its call), and whether the
        // list is of aggregates; `None` until the first item says.
        let mut items: Vec<Expr> = Vec::new();
        let mut of_aggregates: Option<bool> = None;
        loop {
            let token = self.peek().clone();
            if token.kind == TokenKind::Word
                && self.peek_at(1).kind == TokenKind::LeftParen
                && AggregateFunction::from_name(&token.text).is_none()
                && !token.is_keyword("cast")
                && ScalarFunction::from_name(&token.text).is_none()
            {
                return Err(self.invalid_at(
                    token.offset,
                    format!(
                        "unknown function '{}': not an aggregate, a math function or cast",
                        token.text
                    ),
                ));
            }
            let start = self.position;
            let plain = match token.kind {
                TokenKind::Word
                | TokenKind::Backquoted
                | TokenKind::Star
                | TokenKind::DoubleStar
                    if self.peek_at(1).kind != TokenKind::LeftParen =>
                {
                    let path = self.suffix_pattern()?;
                    self.item_ends().then_some(path)
                }
                _ => None,
            };
            let item = match plain {
                Some(path) => Expr::Path(path),
                None => {
                    self.position = start;
                    self.expression()?
                }
            };
            let aggregated = self.check_aggregates(&item, token.offset)?;
            if *of_aggregates.get_or_insert(aggregated) != aggregated {
                return Err(self.hybrid_query_error(token.offset));
            }
            items.push(item);
            let alias = if self.eat_keyword("AS") {
                Some(self.node_name()?)
            } else {
                None
            };
            self.aliases.push(alias);
            if !self.eat(&TokenKind::Comma) {
                break;
            }
        }
        if of_aggregates == Some(true) {
            let plain: Option<Vec<Aggregate>> = items.iter().map(Aggregate::of_call).collect();
            return Ok(match plain {
                Some(aggregates) => Projection::Aggregates(aggregates),
                None => Projection::AggregateExpressions(items),
            });
        }
        if items.iter().all(|item| matches!(item, Expr::Path(_))) {
            let paths = items
                .into_iter()
                .map(|item| match item {
                    Expr::Path(path) => path,
                    _ => unreachable!("checked above"),
                })
                .collect();
            return Ok(Projection::Raw(paths));
        }
        Ok(Projection::Computed(items))
    }

    /// Whether select item `item` is of aggregates: every path in it inside an aggregate
    /// call whose argument is one path (`count(s1) + 1`), or none (`s1 + 1`). Paths both
    /// inside and outside aggregates are IoTDB's hybrid query, refused.
    fn check_aggregates(&self, item: &Expr, offset: usize) -> Result<bool, ParseError> {
        let mut calls = 0usize;
        let mut nested = false;
        item.visit(&mut |e| {
            if let Expr::Function { name, args } = e
                && AggregateFunction::from_name(name).is_some()
            {
                calls += 1;
                nested |= !matches!(args.as_slice(), [Expr::Path(_)]);
            }
        });
        if nested {
            return Err(self.invalid_at(
                offset,
                "an aggregate function takes one series path (expressions inside aggregates \
                 are not supported)"
                    .to_string(),
            ));
        }
        match calls {
            0 => Ok(false),
            _ if paths_outside_aggregates(item) == 0 => Ok(true),
            _ => Err(self.hybrid_query_error(offset)),
        }
    }

    /// Whether a select item ends here (`,`, `AS`, `FROM`).
    fn item_ends(&self) -> bool {
        let next = self.peek();
        next.kind == TokenKind::Comma || next.is_keyword("AS") || next.is_keyword("FROM")
    }

    fn hybrid_query_error(&self, offset: usize) -> ParseError {
        // IoTDB's wording for the same rejection.
        self.invalid_at(
            offset,
            "Raw data and aggregation hybrid query is not supported".to_string(),
        )
    }

    /// `([start, end), interval[, step])`; the range may be omitted.
    fn group_by_time(&mut self) -> Result<GroupByTime, ParseError> {
        self.expect(&TokenKind::LeftParen, "'('")?;
        let range = match self.peek().kind {
            TokenKind::LeftBracket | TokenKind::LeftParen => {
                let left_closed = self.advance().kind == TokenKind::LeftBracket;
                let start = self.time_expr()?;
                self.expect(&TokenKind::Comma, "','")?;
                let end = self.time_expr()?;
                if left_closed {
                    self.expect(&TokenKind::RightParen, "')'")?;
                } else {
                    self.expect(&TokenKind::RightBracket, "']'")?;
                }
                self.expect(&TokenKind::Comma, "','")?;
                Some(GroupByRange {
                    start,
                    end,
                    left_closed,
                })
            }
            _ => None,
        };
        if let Some(interval) = self.months()? {
            let step = if self.eat(&TokenKind::Comma) {
                match self.months()? {
                    Some(step) => step,
                    None => {
                        return Err(self.invalid_at(
                            self.peek().offset,
                            "a window in months slides by months too (`1mo, 2mo`)".to_string(),
                        ));
                    }
                }
            } else {
                interval
            };
            self.expect(&TokenKind::RightParen, "')'")?;
            if range.is_none() {
                return Err(self.invalid_at(
                    self.peek().offset,
                    "GROUP BY in months needs its range: ([start, end), 1mo)".to_string(),
                ));
            }
            return Ok(GroupByTime {
                range,
                interval_ms: 0,
                sliding_step_ms: None,
                months: Some(CalendarWindows { interval, step }),
            });
        }
        let interval_ms = self.positive_duration()?;
        let sliding_step_ms = if self.eat(&TokenKind::Comma) {
            if self.months()?.is_some() {
                return Err(self.invalid_at(
                    self.peek().offset,
                    "a window of fixed length slides by a fixed length, not months".to_string(),
                ));
            }
            Some(self.positive_duration()?)
        } else {
            None
        };
        self.expect(&TokenKind::RightParen, "')'")?;
        Ok(GroupByTime {
            range,
            interval_ms,
            sliding_step_ms,
            months: None,
        })
    }

    /// A month count (`3mo`), consumed; `None` (nothing consumed) for anything else.
    fn months(&mut self) -> Result<Option<u32>, ParseError> {
        let token = self.peek().clone();
        if token.kind != TokenKind::Number {
            return Ok(None);
        }
        match parse_months(&token.text) {
            None => Ok(None),
            Some(Ok(months)) => {
                self.advance();
                Ok(Some(months))
            }
            Some(Err(message)) => Err(self.invalid_at(token.offset, message)),
        }
    }

    /// `LEVEL = l[, l]*`: levels in increasing order, each once (root is level 0, which
    /// every path shares: `LEVEL = 0` groups the series by measurement alone, as IoTDB).
    fn group_by_level(&mut self) -> Result<Vec<usize>, ParseError> {
        self.expect_keyword("LEVEL")?;
        self.expect(&TokenKind::Equal, "'='")?;
        let mut levels = Vec::new();
        loop {
            let level = self.unsigned::<usize>("a path level")?;
            levels.push(level);
            // `LEVEL = 1, 3`: a comma followed by a number continues the list.
            if self.peek().kind == TokenKind::Comma && self.peek_at(1).kind == TokenKind::Number {
                self.advance();
            } else {
                break;
            }
        }
        levels.sort_unstable();
        levels.dedup();
        Ok(levels)
    }

    fn positive_duration(&mut self) -> Result<i64, ParseError> {
        if self.peek().kind != TokenKind::Number {
            return Err(self.mismatched("a duration"));
        }
        let token = self.advance();
        match parse_duration_millis(&token.text) {
            Ok(millis) if millis > 0 => Ok(millis),
            Ok(_) => Err(self.invalid_at(token.offset, "a duration must be positive".into())),
            Err(message) => Err(self.invalid_at(token.offset, message)),
        }
    }

    // ----- time filters and time expressions -------------------------------

    /// `term (AND term)*`, where a term is a comparison, a BETWEEN, or a
    /// parenthesised filter.
    fn time_filter(&mut self, depth: usize) -> Result<TimeFilter, ParseError> {
        if depth >= NESTING_DEPTH_MAX {
            return Err(self.invalid_at(
                self.peek().offset,
                format!("time filter nests deeper than {NESTING_DEPTH_MAX} levels"),
            ));
        }
        let mut comparisons = Vec::new();
        loop {
            if self.eat(&TokenKind::LeftParen) {
                comparisons.extend(self.time_filter(depth + 1)?.comparisons);
                self.expect(&TokenKind::RightParen, "')'")?;
            } else {
                self.time_comparison(&mut comparisons)?;
            }
            if !self.eat_keyword("AND") {
                return Ok(TimeFilter { comparisons });
            }
        }
    }

    fn time_comparison(
        &mut self,
        comparisons: &mut Vec<(Comparison, TimeExpr)>,
    ) -> Result<(), ParseError> {
        if !(self.peek().is_keyword("time") || self.peek().is_keyword("timestamp")) {
            return Err(self.mismatched("{TIME, TIMESTAMP, '('}"));
        }
        self.advance();
        if self.eat_keyword("BETWEEN") {
            let low = self.time_expr()?;
            self.expect_keyword("AND")?;
            let high = self.time_expr()?;
            comparisons.push((Comparison::GreaterEqual, low));
            comparisons.push((Comparison::LessEqual, high));
            return Ok(());
        }
        let operator = self.peek().clone();
        let comparison = match operator.kind {
            TokenKind::Less => Comparison::Less,
            TokenKind::LessEqual => Comparison::LessEqual,
            TokenKind::Greater => Comparison::Greater,
            TokenKind::GreaterEqual => Comparison::GreaterEqual,
            TokenKind::Equal => Comparison::Equal,
            TokenKind::NotEqual => {
                return Err(self.invalid_at(
                    operator.offset,
                    "'!=' on time is not supported; use two ranges".to_string(),
                ));
            }
            _ => return Err(self.mismatched("{'>', '>=', '<', '<=', '=', BETWEEN}")),
        };
        self.advance();
        comparisons.push((comparison, self.time_expr()?));
        Ok(())
    }

    /// An integer (ms), a datetime literal (bare or quoted) or `now()`,
    /// optionally followed by `+ duration` / `- duration` terms.
    fn time_expr(&mut self) -> Result<TimeExpr, ParseError> {
        let token = self.peek().clone();
        let mut time = match token.kind {
            TokenKind::Number | TokenKind::Minus | TokenKind::Plus => {
                match self.number_literal()? {
                    Literal::Integer(millis) => TimeExpr::Absolute(millis),
                    _ => {
                        return Err(self.invalid_at(
                            token.offset,
                            "a timestamp must be an integer number of milliseconds".into(),
                        ));
                    }
                }
            }
            TokenKind::DateTime | TokenKind::String => {
                self.advance();
                let millis = parse_datetime_millis(&token.text)
                    .map_err(|message| self.invalid_at(token.offset, message))?;
                TimeExpr::Absolute(millis)
            }
            TokenKind::Word if token.is_keyword("now") => {
                self.advance();
                self.expect(&TokenKind::LeftParen, "'('")?;
                self.expect(&TokenKind::RightParen, "')'")?;
                TimeExpr::Now { offset_ms: 0 }
            }
            _ => return Err(self.mismatched("a time (integer, datetime or now())")),
        };
        // `now() - 1h + 30m`: a sign followed by a duration-shaped number.
        // Plain integers are not durations, so `5 - 3` stays an error.
        while matches!(self.peek().kind, TokenKind::Plus | TokenKind::Minus)
            && self.peek_at(1).kind == TokenKind::Number
        {
            let sign_offset = self.peek().offset;
            let negative = self.advance().kind == TokenKind::Minus;
            let duration_ms = self.positive_duration()?;
            let delta_ms = if negative { -duration_ms } else { duration_ms };
            let overflow = || self.invalid_at(sign_offset, "time arithmetic overflows".into());
            time = match time {
                TimeExpr::Absolute(millis) => {
                    TimeExpr::Absolute(millis.checked_add(delta_ms).ok_or_else(overflow)?)
                }
                TimeExpr::Now { offset_ms } => TimeExpr::Now {
                    offset_ms: offset_ms.checked_add(delta_ms).ok_or_else(overflow)?,
                },
            };
        }
        Ok(time)
    }

    // ----- numbers ----------------------------------------------------------

    fn unsigned<T: TryFrom<u64>>(&mut self, what: &str) -> Result<T, ParseError> {
        if self.peek().kind != TokenKind::Number {
            return Err(self.mismatched(what));
        }
        let token = self.advance();
        token
            .text
            .parse::<u64>()
            .ok()
            .and_then(|value| T::try_from(value).ok())
            .ok_or_else(|| {
                self.invalid_at(
                    token.offset,
                    format!("'{}' is not a valid {what}", token.text),
                )
            })
    }

    fn positive_integer(&mut self) -> Result<i64, ParseError> {
        let offset = self.peek().offset;
        let value = self.unsigned::<i64>("an integer")?;
        if value == 0 {
            return Err(self.invalid_at(offset, "the value must be positive".into()));
        }
        Ok(value)
    }

    fn positive_u32(&mut self) -> Result<u32, ParseError> {
        let offset = self.peek().offset;
        let value = self.unsigned::<u32>("an integer")?;
        if value == 0 {
            return Err(self.invalid_at(offset, "the value must be positive".into()));
        }
        Ok(value)
    }

    // ----- paths ------------------------------------------------------------

    /// A node name without wildcards: identifier, backquoted name, or a
    /// digit-led word such as `1d` (a number with a fraction or sign is not a
    /// name; backquote it).
    fn node_name(&mut self) -> Result<String, ParseError> {
        let token = self.peek().clone();
        let is_name = match token.kind {
            TokenKind::Word => true,
            TokenKind::Backquoted => !token.text.is_empty(),
            TokenKind::Number => token
                .text
                .bytes()
                .all(|byte| byte.is_ascii_alphanumeric() || byte == b'_'),
            _ => false,
        };
        if !is_name {
            return Err(self.mismatched("a node name"));
        }
        self.advance();
        Ok(token.text)
    }

    fn pattern_node(&mut self) -> Result<PathNode, ParseError> {
        if self.eat(&TokenKind::Star) {
            return Ok(PathNode::OneLevel);
        }
        if self.eat(&TokenKind::DoubleStar) {
            return Ok(PathNode::MultiLevel);
        }
        self.node_name()
            .map_err(|_| self.mismatched("{a node name, '*', '**'}"))
            .map(PathNode::Name)
    }

    /// `root(.node)*`, wildcards allowed.
    fn full_pattern(&mut self) -> Result<PathPattern, ParseError> {
        if !self.eat_keyword(ROOT) {
            return Err(self.mismatched("ROOT"));
        }
        let mut nodes = vec![PathNode::Name(ROOT.to_string())];
        while self.eat(&TokenKind::Dot) {
            nodes.push(self.pattern_node()?);
        }
        Ok(PathPattern::new(nodes))
    }

    fn optional_full_pattern(&mut self) -> Result<Option<PathPattern>, ParseError> {
        if self.peek().is_keyword(ROOT) {
            self.full_pattern().map(Some)
        } else {
            Ok(None)
        }
    }

    fn full_pattern_list(&mut self) -> Result<Vec<PathPattern>, ParseError> {
        let mut patterns = vec![self.full_pattern()?];
        while self.eat(&TokenKind::Comma) {
            patterns.push(self.full_pattern()?);
        }
        Ok(patterns)
    }

    /// A full path without wildcards.
    fn full_path(&mut self) -> Result<Path, ParseError> {
        let start = self.peek().offset;
        let pattern = self.full_pattern()?;
        pattern.to_path().ok_or_else(|| {
            self.invalid_at(
                start,
                format!("wildcards are not allowed in path '{pattern}'"),
            )
        })
    }

    /// A select-list path relative to the FROM prefixes: `s1`, `d1.s1`, `*`.
    fn suffix_pattern(&mut self) -> Result<PathPattern, ParseError> {
        let token = self.peek().clone();
        if token.is_keyword(ROOT) {
            return Err(self.invalid_at(
                token.offset,
                "select-list paths are suffixes of the FROM paths and must not start with root"
                    .to_string(),
            ));
        }
        let mut nodes = vec![self.pattern_node()?];
        while self.eat(&TokenKind::Dot) {
            nodes.push(self.pattern_node()?);
        }
        Ok(PathPattern::new(nodes))
    }

    fn suffix_pattern_list(&mut self) -> Result<Vec<PathPattern>, ParseError> {
        let mut patterns = vec![self.suffix_pattern()?];
        while self.eat(&TokenKind::Comma) {
            patterns.push(self.suffix_pattern()?);
        }
        Ok(patterns)
    }
}
