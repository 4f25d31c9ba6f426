//! A recursive-descent parser for filters and segments. Precedence, loosest first:
//! `or`, `and`, `not`, then a single test or a parenthesized expression.

use super::ast::{
    CmpOp, Field, FilterExpr, Literal, Seen, SeenTest, SegmentExpr, Test, BUILTIN_FIELDS, KEYWORDS,
};
use super::lexer::{tokenize, Tok, Token};
use super::ExprError;
use omnitrail_model::Timestamp;
use std::collections::BTreeSet;

const SECOND: i64 = 1_000_000;

/// Names an expression reads, and where it tests stages, for checks against configuration.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Mentions {
    pub properties: BTreeSet<String>,
    pub traits: BTreeSet<String>,
    /// Where `stage` is first used as a field.
    pub stage_at: Option<usize>,
    /// Stage names compared for (in)equality, with where they are written.
    pub stage_values: Vec<(String, usize)>,
}

pub(crate) struct Parser<'s> {
    src: &'s str,
    toks: Vec<Token>,
    i: usize,
    /// Parentheses and `not`s open around the current token.
    depth: usize,
    pub mentions: Mentions,
}

/// Deeper nesting is refused: the parser (and every pass over the tree) recurses once per
/// level, and expressions come from HTTP callers; no real filter nests this deep.
pub const MAX_NESTING: usize = 64;

fn is_kw(tok: &Tok, kw: &str) -> bool {
    matches!(tok, Tok::Word(w) if w.eq_ignore_ascii_case(kw))
}

impl<'s> Parser<'s> {
    pub fn new(src: &'s str) -> Result<Parser<'s>, ExprError> {
        Ok(Parser {
            src,
            toks: tokenize(src)?,
            i: 0,
            depth: 0,
            mentions: Mentions::default(),
        })
    }

    fn peek(&self) -> &Tok {
        &self.toks[self.i].tok
    }

    fn peek_at(&self, ahead: usize) -> &Tok {
        let k = (self.i + ahead).min(self.toks.len() - 1);
        &self.toks[k].tok
    }

    fn at(&self) -> usize {
        self.toks[self.i].at
    }

    fn bump(&mut self) -> Token {
        let t = self.toks[self.i].clone();
        if self.i + 1 < self.toks.len() {
            self.i += 1;
        }
        t
    }

    fn eat_kw(&mut self, kw: &str) -> bool {
        if is_kw(self.peek(), kw) {
            self.bump();
            true
        } else {
            false
        }
    }

    /// Enters one level of nesting, or refuses when [`MAX_NESTING`] are open.
    fn nest(&mut self) -> Result<(), ExprError> {
        if self.depth == MAX_NESTING {
            return Err(self.error(
                self.at(),
                format!("nested more than {MAX_NESTING} levels deep (parentheses and not)"),
            ));
        }
        self.depth += 1;
        Ok(())
    }

    fn error(&self, at: usize, message: impl Into<String>) -> ExprError {
        ExprError::new(self.src, at, message)
    }

    /// "expected WHAT after PREVIOUS, found CURRENT", at the current token.
    fn expected(&self, what: &str) -> ExprError {
        let found = self.peek().describe();
        let message = if self.i == 0 {
            format!("expected {what}, found {found}")
        } else {
            let prev = self.toks[self.i - 1].tok.describe();
            format!("expected {what} after {prev}, found {found}")
        };
        self.error(self.at(), message)
    }

    fn expect_close(&mut self, open_at: usize) -> Result<(), ExprError> {
        if *self.peek() == Tok::RParen {
            self.bump();
            return Ok(());
        }
        let column = ExprError::new(self.src, open_at, "").column;
        let prev = self.toks[self.i - 1].tok.describe();
        Err(self.error(
            self.at(),
            format!(
                "expected ')' after {prev} to close the '(' at column {column}, found {}",
                self.peek().describe()
            ),
        ))
    }

    fn end(&self) -> Result<(), ExprError> {
        match self.peek() {
            Tok::End => Ok(()),
            Tok::RParen => Err(self.error(self.at(), "unmatched ')'")),
            _ => Err(self.expected("'and', 'or' or end of input")),
        }
    }

    // ---- event filters ----

    pub fn filter(mut self) -> Result<(FilterExpr, Mentions), ExprError> {
        if *self.peek() == Tok::End {
            return Err(self.error(0, "empty filter: expected a test such as channel = 'web'"));
        }
        let e = self.filter_or()?;
        self.end()?;
        Ok((e, self.mentions))
    }

    fn filter_or(&mut self) -> Result<FilterExpr, ExprError> {
        let mut left = self.filter_and()?;
        while self.eat_kw("or") {
            let right = self.filter_and()?;
            left = FilterExpr::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn filter_and(&mut self) -> Result<FilterExpr, ExprError> {
        let mut left = self.filter_unary()?;
        while self.eat_kw("and") {
            let right = self.filter_unary()?;
            left = FilterExpr::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn filter_unary(&mut self) -> Result<FilterExpr, ExprError> {
        self.nest()?;
        let e = self.filter_unary_nested();
        self.depth -= 1;
        e
    }

    fn filter_unary_nested(&mut self) -> Result<FilterExpr, ExprError> {
        if self.eat_kw("not") {
            return Ok(FilterExpr::Not(Box::new(self.filter_unary()?)));
        }
        if *self.peek() == Tok::LParen {
            let open = self.bump().at;
            let e = self.filter_or()?;
            self.expect_close(open)?;
            return Ok(e);
        }
        let field = self.field()?;
        self.filter_test(field)
    }

    fn field(&mut self) -> Result<Field, ExprError> {
        let what = "a field such as channel, activity, stage, touchpoint, hour, weekday or a property name";
        let Tok::Word(word) = self.peek().clone() else {
            return Err(self.expected(what));
        };
        let at = self.at();
        let lower = word.to_ascii_lowercase();
        if KEYWORDS.contains(&lower.as_str()) {
            return Err(self.expected(what));
        }
        let dotted = *self.peek_at(1) == Tok::Dot;
        if dotted && matches!(word.as_str(), "trait" | "traits") {
            return Err(self.error(
                at,
                "traits describe customers, not events: test trait.NAME in a segment (--segment), outside did(...) and count(...)",
            ));
        }
        if matches!(word.as_str(), "did" | "count") && *self.peek_at(1) == Tok::LParen {
            return Err(self.error(
                at,
                format!("{word}(...) tests customers, not events: use it in a segment (--segment)"),
            ));
        }
        self.bump();
        if dotted && matches!(word.as_str(), "property" | "properties") {
            self.bump();
            let name = self.name_after_dot("a property name")?;
            self.mentions.properties.insert(name.clone());
            return Ok(Field::Property(name));
        }
        Ok(match word.as_str() {
            "channel" => Field::Channel,
            "activity" => Field::Activity,
            "stage" => {
                self.mentions.stage_at.get_or_insert(at);
                Field::Stage
            }
            "touchpoint" => Field::Touchpoint,
            "hour" => Field::Hour,
            "weekday" => Field::Weekday,
            _ => {
                debug_assert!(!BUILTIN_FIELDS.contains(&word.as_str()));
                self.mentions.properties.insert(word.clone());
                Field::Property(word)
            }
        })
    }

    /// A name after `property.` or `trait.`: a bare word or a quoted string.
    fn name_after_dot(&mut self, what: &str) -> Result<String, ExprError> {
        match self.peek().clone() {
            Tok::Word(w) => {
                self.bump();
                Ok(w)
            }
            Tok::Str(s) if !s.is_empty() => {
                self.bump();
                Ok(s)
            }
            _ => Err(self.expected(what)),
        }
    }

    fn filter_test(&mut self, field: Field) -> Result<FilterExpr, ExprError> {
        let first = self.i;
        let mut test = self.test()?;
        if field == Field::Stage && !matches!(test.0, Test::Contains(_)) {
            // Only equality-style tests name a stage; `<` or `contains` may use any text.
            let equality = matches!(
                test.0,
                Test::Compare(CmpOp::Eq | CmpOp::Ne, _) | Test::In(_) | Test::NotIn(_)
            );
            for t in &self.toks[first..self.i] {
                if let (true, Tok::Str(s)) = (equality, &t.tok) {
                    self.mentions.stage_values.push((s.clone(), t.at));
                }
            }
        }
        let negate = matches!(test, (_, true));
        if field == Field::Weekday {
            day_names_to_numbers(&mut test.0);
        }
        let leaf = FilterExpr::Test {
            field,
            test: test.0,
        };
        Ok(if negate {
            FilterExpr::Not(Box::new(leaf))
        } else {
            leaf
        })
    }

    /// The test after a field name; `true` in the result means it was `not contains`.
    fn test(&mut self) -> Result<(Test, bool), ExprError> {
        if let Tok::Op(op) = *self.peek() {
            self.bump();
            return Ok((Test::Compare(op, self.literal()?), false));
        }
        if self.eat_kw("in") {
            return Ok((Test::In(self.literal_list()?), false));
        }
        if self.eat_kw("not") {
            if self.eat_kw("in") {
                return Ok((Test::NotIn(self.literal_list()?), false));
            }
            if self.eat_kw("contains") {
                return Ok((Test::Contains(self.contains_arg()?), true));
            }
            return Err(self.expected("'in' or 'contains'"));
        }
        if self.eat_kw("contains") {
            return Ok((Test::Contains(self.contains_arg()?), false));
        }
        if self.eat_kw("is") {
            let not = self.eat_kw("not");
            if !self.eat_kw("null") {
                return Err(self.expected("'null'"));
            }
            return Ok((if not { Test::IsNotNull } else { Test::IsNull }, false));
        }
        Err(self.expected(
            "an operator (=, !=, <, <=, >, >=, in, not in, contains, is null, is not null)",
        ))
    }

    fn contains_arg(&mut self) -> Result<String, ExprError> {
        match self.peek().clone() {
            Tok::Str(s) => {
                self.bump();
                Ok(s)
            }
            _ => Err(self.expected("a quoted string")),
        }
    }

    fn literal(&mut self) -> Result<Literal, ExprError> {
        let lit = match self.peek().clone() {
            Tok::Str(s) => Literal::Text(s),
            Tok::Num(value, text) => Literal::Number { value, text },
            Tok::Word(w) if w.eq_ignore_ascii_case("true") => Literal::Bool(true),
            Tok::Word(w) if w.eq_ignore_ascii_case("false") => Literal::Bool(false),
            Tok::Word(w) if w.eq_ignore_ascii_case("null") => {
                return Err(self.error(
                    self.at(),
                    "null is not a value: write 'is null' or 'is not null'",
                ))
            }
            Tok::Word(w) => {
                return Err(self.error(
                    self.at(),
                    format!("expected a value, found '{w}': quote text values, e.g. '{w}'"),
                ))
            }
            _ => return Err(self.expected("a value")),
        };
        self.bump();
        Ok(lit)
    }

    fn literal_list(&mut self) -> Result<Vec<Literal>, ExprError> {
        if *self.peek() != Tok::LParen {
            return Err(self.expected("'(' starting a list of values"));
        }
        let open = self.bump().at;
        let mut items = vec![self.literal()?];
        while *self.peek() == Tok::Comma {
            self.bump();
            items.push(self.literal()?);
        }
        self.expect_close(open)?;
        Ok(items)
    }

    // ---- segments ----

    pub fn segment(mut self) -> Result<(SegmentExpr, Mentions), ExprError> {
        if *self.peek() == Tok::End {
            return Err(self.error(
                0,
                "empty segment: expected a condition such as trait.plan = 'premium' or did('purchase')",
            ));
        }
        let e = self.segment_or()?;
        self.end()?;
        Ok((e, self.mentions))
    }

    fn segment_or(&mut self) -> Result<SegmentExpr, ExprError> {
        let mut left = self.segment_and()?;
        while self.eat_kw("or") {
            let right = self.segment_and()?;
            left = SegmentExpr::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn segment_and(&mut self) -> Result<SegmentExpr, ExprError> {
        let mut left = self.segment_unary()?;
        while self.eat_kw("and") {
            let right = self.segment_unary()?;
            left = SegmentExpr::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn segment_unary(&mut self) -> Result<SegmentExpr, ExprError> {
        self.nest()?;
        let e = self.segment_unary_nested();
        self.depth -= 1;
        e
    }

    fn segment_unary_nested(&mut self) -> Result<SegmentExpr, ExprError> {
        if self.eat_kw("not") {
            return Ok(SegmentExpr::Not(Box::new(self.segment_unary()?)));
        }
        if *self.peek() == Tok::LParen {
            let open = self.bump().at;
            let e = self.segment_or()?;
            self.expect_close(open)?;
            return Ok(e);
        }
        self.segment_condition()
    }

    fn segment_condition(&mut self) -> Result<SegmentExpr, ExprError> {
        let what =
            "a segment condition (trait.NAME, did(...), count(...), first_seen or last_seen)";
        let Tok::Word(word) = self.peek().clone() else {
            return Err(self.expected(what));
        };
        let at = self.at();
        match word.as_str() {
            "trait" | "traits" if *self.peek_at(1) == Tok::Dot => {
                self.bump();
                self.bump();
                let name = self.name_after_dot("a trait name")?;
                self.mentions.traits.insert(name.clone());
                let (test, negate) = self.test()?;
                let leaf = SegmentExpr::Trait { name, test };
                Ok(if negate {
                    SegmentExpr::Not(Box::new(leaf))
                } else {
                    leaf
                })
            }
            "did" if *self.peek_at(1) == Tok::LParen => {
                self.bump();
                let filter = self.behaviour_filter("did")?;
                let within = self.within()?;
                Ok(SegmentExpr::Did { filter, within })
            }
            "count" if *self.peek_at(1) == Tok::LParen => {
                self.bump();
                let filter = self.behaviour_filter("count")?;
                let mut within = self.within()?;
                let Tok::Op(op) = *self.peek() else {
                    return Err(self.expected("a comparison such as >= 3"));
                };
                self.bump();
                let Tok::Num(value, _) = *self.peek() else {
                    return Err(self.expected("a number"));
                };
                self.bump();
                if within.is_none() {
                    within = self.within()?;
                } else if is_kw(self.peek(), "within") {
                    return Err(self.error(self.at(), "'within' is given twice for this count"));
                }
                Ok(SegmentExpr::Count {
                    filter,
                    within,
                    op,
                    value,
                })
            }
            "first_seen" | "last_seen" => {
                self.bump();
                let seen = if word == "first_seen" {
                    Seen::First
                } else {
                    Seen::Last
                };
                let test = if let Some(d) = self.within()? {
                    SeenTest::Within(d)
                } else {
                    let Tok::Op(op) = *self.peek() else {
                        return Err(self.expected("a comparison with a timestamp, or 'within'"));
                    };
                    self.bump();
                    let Tok::Str(text) = self.peek().clone() else {
                        return Err(self.expected("a quoted timestamp such as '2026-03-01'"));
                    };
                    let ts = Timestamp::parse(&text)
                        .map_err(|e| self.error(self.at(), e.to_string()))?;
                    self.bump();
                    SeenTest::Compare(op, ts.as_micros())
                };
                Ok(SegmentExpr::Seen { seen, test })
            }
            w if KEYWORDS.contains(&w.to_ascii_lowercase().as_str()) => Err(self.expected(what)),
            w if BUILTIN_FIELDS.contains(&w)
                || matches!(self.peek_at(1), Tok::Op(_))
                || ["in", "not", "contains", "is"]
                    .iter()
                    .any(|kw| is_kw(self.peek_at(1), kw)) =>
            {
                let hint = if BUILTIN_FIELDS.contains(&w) {
                    format!(
                        "'{w}' is an event field: test events inside did(...), e.g. did({w} = 'x')"
                    )
                } else {
                    format!("'{w}' is not a segment condition: write trait.{w} for a trait, or did({w} = ...) for an event property")
                };
                Err(self.error(at, hint))
            }
            _ => Err(self.expected(what)),
        }
    }

    /// `( 'activity' )` or `( event filter )` after `did`/`count`.
    fn behaviour_filter(&mut self, func: &str) -> Result<FilterExpr, ExprError> {
        let open = self.bump().at;
        if matches!(self.peek(), Tok::RParen | Tok::End) {
            return Err(self.error(
                self.at(),
                format!("expected an activity name or an event filter inside {func}(...)"),
            ));
        }
        let filter = match (self.peek().clone(), self.peek_at(1)) {
            (Tok::Str(activity), Tok::RParen) => {
                self.bump();
                FilterExpr::Test {
                    field: Field::Activity,
                    test: Test::Compare(CmpOp::Eq, Literal::Text(activity)),
                }
            }
            _ => self.filter_or()?,
        };
        self.expect_close(open)?;
        Ok(filter)
    }

    /// An optional `within DURATION`.
    fn within(&mut self) -> Result<Option<i64>, ExprError> {
        if !self.eat_kw("within") {
            return Ok(None);
        }
        let at = self.at();
        match self.peek().clone() {
            Tok::NumUnit(n, unit) => {
                self.bump();
                Ok(Some(duration(self.src, at, &n, &unit)?))
            }
            Tok::Num(_, n) => Err(self.error(
                at,
                format!("duration {n} needs a unit: s, m, h, d or w (e.g. {n}d)"),
            )),
            _ => Err(self.expected("a duration such as 7d")),
        }
    }
}

/// `7` + `d` as microseconds.
fn duration(src: &str, at: usize, n: &str, unit: &str) -> Result<i64, ExprError> {
    let per = match unit {
        "s" => SECOND,
        "m" => 60 * SECOND,
        "h" => 3600 * SECOND,
        "d" => 86_400 * SECOND,
        "w" => 7 * 86_400 * SECOND,
        _ => {
            return Err(ExprError::new(
                src,
                at,
                format!("unknown duration unit '{unit}' in '{n}{unit}' (use s, m, h, d or w)"),
            ))
        }
    };
    if !n.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ExprError::new(
            src,
            at,
            format!("a duration is a whole number and a unit, found '{n}{unit}'"),
        ));
    }
    let count: i64 = n
        .parse()
        .map_err(|_| ExprError::new(src, at, format!("duration '{n}{unit}' is too large")))?;
    if count == 0 {
        return Err(ExprError::new(
            src,
            at,
            "a duration must be longer than zero",
        ));
    }
    count
        .checked_mul(per)
        .ok_or_else(|| ExprError::new(src, at, format!("duration '{n}{unit}' is too large")))
}

/// Lets `weekday = 'saturday'` (or `'sat'`) mean `weekday = 6`.
fn day_names_to_numbers(test: &mut Test) {
    const DAYS: [&str; 7] = [
        "monday",
        "tuesday",
        "wednesday",
        "thursday",
        "friday",
        "saturday",
        "sunday",
    ];
    let fix = |l: &mut Literal| {
        if let Literal::Text(s) = l {
            let lower = s.to_ascii_lowercase();
            if let Some(i) = DAYS
                .iter()
                .position(|d| *d == lower || (lower.len() == 3 && d.starts_with(&lower)))
            {
                *l = Literal::number((i + 1) as f64);
            }
        }
    };
    match test {
        Test::Compare(_, l) => fix(l),
        Test::In(items) | Test::NotIn(items) => items.iter_mut().for_each(fix),
        Test::Contains(_) | Test::IsNull | Test::IsNotNull => {}
    }
}
