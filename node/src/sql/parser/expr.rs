//! Expressions (`WHERE`, `HAVING`): precedence from loosest to tightest is `OR`, `AND`,
//! `NOT`, a predicate (`=`/`!=`/`<`…, `[NOT] IN`, `[NOT] BETWEEN`, `[NOT] LIKE`,
//! `[NOT] REGEXP`, `IS [NOT] NULL`), `+`/`-`, `*`, unary `-`, then a primary: a parenthesised
//! expression, a constant, `time`, `now()`, a datetime, `cast(e AS type)`, a function call
//! or a suffix path.
//! Nesting is bounded by [`NESTING_DEPTH_MAX`], so no input can exhaust the stack.

use super::super::ast::{Literal, TimeExpr};
use super::super::error::ParseError;
use super::super::expr::{ArithmeticOp, CompareOp, Expr};
use super::super::lexer::TokenKind;
use super::super::path::{PathPattern, ROOT};
use super::super::time::parse_datetime_millis;
use super::{NESTING_DEPTH_MAX, Parser};

impl Parser<'_> {
    /// One expression.
    pub(super) fn expression(&mut self) -> Result<Expr, ParseError> {
        self.or_expression(0)
    }

    fn deeper(&self, depth: usize) -> Result<usize, ParseError> {
        if depth >= NESTING_DEPTH_MAX {
            return Err(self.invalid_at(
                self.peek().offset,
                format!("the expression nests deeper than {NESTING_DEPTH_MAX} levels"),
            ));
        }
        Ok(depth + 1)
    }

    fn or_expression(&mut self, depth: usize) -> Result<Expr, ParseError> {
        let depth = self.deeper(depth)?;
        let mut left = self.and_expression(depth)?;
        while self.eat_keyword("OR") {
            let right = self.and_expression(depth)?;
            left = Expr::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn and_expression(&mut self, depth: usize) -> Result<Expr, ParseError> {
        let mut left = self.not_expression(depth)?;
        while self.eat_keyword("AND") {
            let right = self.not_expression(depth)?;
            left = Expr::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn not_expression(&mut self, depth: usize) -> Result<Expr, ParseError> {
        if self.eat_keyword("NOT") {
            let depth = self.deeper(depth)?;
            return Ok(Expr::Not(Box::new(self.not_expression(depth)?)));
        }
        self.predicate(depth)
    }

    fn predicate(&mut self, depth: usize) -> Result<Expr, ParseError> {
        let left = self.additive(depth)?;
        let operator = match self.peek().kind {
            TokenKind::Less => Some(CompareOp::Less),
            TokenKind::LessEqual => Some(CompareOp::LessEqual),
            TokenKind::Greater => Some(CompareOp::Greater),
            TokenKind::GreaterEqual => Some(CompareOp::GreaterEqual),
            TokenKind::Equal => Some(CompareOp::Equal),
            TokenKind::NotEqual => Some(CompareOp::NotEqual),
            _ => None,
        };
        if let Some(op) = operator {
            self.advance();
            let right = self.additive(depth)?;
            return Ok(Expr::Compare(op, Box::new(left), Box::new(right)));
        }
        if self.eat_keyword("IS") {
            let negated = self.eat_keyword("NOT");
            self.expect_keyword("NULL")?;
            return Ok(Expr::IsNull {
                expr: Box::new(left),
                negated,
            });
        }
        let negated = self.peek().is_keyword("NOT")
            && ["IN", "BETWEEN", "LIKE", "REGEXP"]
                .iter()
                .any(|k| self.peek_at(1).is_keyword(k));
        if negated {
            self.advance();
        }
        let expr = Box::new(left);
        if self.eat_keyword("IN") {
            self.expect(&TokenKind::LeftParen, "'('")?;
            let mut list = vec![self.literal()?];
            while self.eat(&TokenKind::Comma) {
                list.push(self.literal()?);
            }
            self.expect(&TokenKind::RightParen, "{',', ')'}")?;
            return Ok(Expr::In {
                expr,
                list,
                negated,
            });
        }
        if self.eat_keyword("BETWEEN") {
            let low = Box::new(self.additive(depth)?);
            self.expect_keyword("AND")?;
            let high = Box::new(self.additive(depth)?);
            return Ok(Expr::Between {
                expr,
                low,
                high,
                negated,
            });
        }
        if self.eat_keyword("LIKE") {
            let pattern = self.string_literal()?;
            return Ok(Expr::Like {
                expr,
                pattern,
                negated,
            });
        }
        if self.eat_keyword("REGEXP") {
            let pattern = self.string_literal()?;
            return Ok(Expr::Regexp {
                expr,
                pattern,
                negated,
            });
        }
        if negated {
            return Err(self.mismatched("{IN, BETWEEN, LIKE, REGEXP}"));
        }
        Ok(*expr)
    }

    fn string_literal(&mut self) -> Result<String, ParseError> {
        if self.peek().kind != TokenKind::String {
            return Err(self.mismatched("a string"));
        }
        Ok(self.advance().text)
    }

    fn additive(&mut self, depth: usize) -> Result<Expr, ParseError> {
        let mut left = self.multiplicative(depth)?;
        loop {
            let op = match self.peek().kind {
                TokenKind::Plus => ArithmeticOp::Add,
                TokenKind::Minus => ArithmeticOp::Subtract,
                _ => return Ok(left),
            };
            self.advance();
            let right = self.multiplicative(depth)?;
            left = Expr::Arithmetic(op, Box::new(left), Box::new(right));
        }
    }

    fn multiplicative(&mut self, depth: usize) -> Result<Expr, ParseError> {
        let mut left = self.unary(depth)?;
        loop {
            let op = match self.peek().kind {
                TokenKind::Star => ArithmeticOp::Multiply,
                TokenKind::Slash => ArithmeticOp::Divide,
                TokenKind::Percent => ArithmeticOp::Modulo,
                _ => return Ok(left),
            };
            self.advance();
            let right = self.unary(depth)?;
            left = Expr::Arithmetic(op, Box::new(left), Box::new(right));
        }
    }

    fn unary(&mut self, depth: usize) -> Result<Expr, ParseError> {
        if self.peek().kind == TokenKind::Minus && self.peek_at(1).kind != TokenKind::Number {
            self.advance();
            let depth = self.deeper(depth)?;
            return Ok(Expr::Negate(Box::new(self.unary(depth)?)));
        }
        self.primary(depth)
    }

    fn primary(&mut self, depth: usize) -> Result<Expr, ParseError> {
        let token = self.peek().clone();
        match token.kind {
            TokenKind::LeftParen => {
                self.advance();
                let inner = self.or_expression(depth)?;
                self.expect(&TokenKind::RightParen, "')'")?;
                Ok(inner)
            }
            TokenKind::Number | TokenKind::Minus | TokenKind::Plus => {
                Ok(Expr::Constant(self.number_literal()?))
            }
            TokenKind::String => {
                self.advance();
                Ok(Expr::Constant(Literal::Text(token.text)))
            }
            TokenKind::DateTime => {
                self.advance();
                let millis = parse_datetime_millis(&token.text)
                    .map_err(|message| self.invalid_at(token.offset, message))?;
                Ok(Expr::Constant(Literal::Integer(millis)))
            }
            TokenKind::Word if token.is_keyword("time") || token.is_keyword("timestamp") => {
                self.advance();
                Ok(Expr::Time)
            }
            TokenKind::Word if token.is_keyword("true") || token.is_keyword("false") => {
                Ok(Expr::Constant(self.literal()?))
            }
            TokenKind::Word if token.is_keyword("null") => {
                Err(self.invalid_at(token.offset, "use IS NULL to test for null".into()))
            }
            TokenKind::Word if token.is_keyword("now") => match self.time_expr()? {
                TimeExpr::Absolute(ms) => Ok(Expr::Constant(Literal::Integer(ms))),
                TimeExpr::Now { offset_ms } => Ok(Expr::Now { offset_ms }),
            },
            TokenKind::Word
                if token.is_keyword("cast") && self.peek_at(1).kind == TokenKind::LeftParen =>
            {
                self.advance();
                self.advance();
                let expr = self.or_expression(self.deeper(depth)?)?;
                self.expect_keyword("AS")?;
                let data_type = self.keyword_value("data type")?;
                self.expect(&TokenKind::RightParen, "')'")?;
                Ok(Expr::Cast {
                    expr: Box::new(expr),
                    data_type,
                })
            }
            TokenKind::Word if self.peek_at(1).kind == TokenKind::LeftParen => {
                self.advance();
                self.advance();
                let mut args = Vec::new();
                if !self.eat(&TokenKind::RightParen) {
                    loop {
                        let arg = if self.peek().kind == TokenKind::Star
                            && matches!(
                                self.peek_at(1).kind,
                                TokenKind::RightParen | TokenKind::Comma
                            ) {
                            self.advance();
                            Expr::Path(PathPattern::new(vec![super::PathNode::OneLevel]))
                        } else {
                            self.or_expression(self.deeper(depth)?)?
                        };
                        args.push(arg);
                        if !self.eat(&TokenKind::Comma) {
                            break;
                        }
                    }
                    self.expect(&TokenKind::RightParen, "{',', ')'}")?;
                }
                Ok(Expr::Function {
                    name: token.text.to_ascii_lowercase(),
                    args,
                })
            }
            TokenKind::Word if token.is_keyword(ROOT) => Err(self.invalid_at(
                token.offset,
                "paths in an expression are suffixes of the FROM paths and must not start with root"
                    .to_string(),
            )),
            TokenKind::Word | TokenKind::Backquoted | TokenKind::Star | TokenKind::DoubleStar => {
                Ok(Expr::Path(self.suffix_pattern()?))
            }
            _ => Err(self.mismatched("an expression")),
        }
    }
}
