//! The syntax trees of filters and segments, how they print back as expressions, and the
//! comparison rules every evaluator shares.

use std::cmp::Ordering;
use std::fmt;

/// An event field a filter can test.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Field {
    Channel,
    Activity,
    /// The stage the event's activity maps to; missing when it maps to none.
    Stage,
    /// `channel:activity`.
    Touchpoint,
    /// Hour of the day in UTC, 0–23.
    Hour,
    /// ISO day of the week in UTC: 1 is Monday, 7 is Sunday.
    Weekday,
    Property(String),
}

/// A literal value. Numbers keep the text they were written with, which is what they
/// compare as when the other side is not a number.
#[derive(Clone, Debug, PartialEq)]
pub enum Literal {
    Text(String),
    Number { value: f64, text: String },
    Bool(bool),
}

impl Literal {
    pub fn number(value: f64) -> Literal {
        Literal::Number {
            value,
            text: format!("{value}"),
        }
    }

    /// The value as a number, when it is one or is text that reads as one.
    pub fn as_number(&self) -> Option<f64> {
        match self {
            Literal::Number { value, .. } => Some(*value),
            Literal::Text(s) => text_as_number(s),
            Literal::Bool(_) => None,
        }
    }

    pub fn as_text(&self) -> &str {
        match self {
            Literal::Text(s) => s,
            Literal::Number { text, .. } => text,
            Literal::Bool(true) => "true",
            Literal::Bool(false) => "false",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl CmpOp {
    pub fn symbol(self) -> &'static str {
        match self {
            CmpOp::Eq => "=",
            CmpOp::Ne => "!=",
            CmpOp::Lt => "<",
            CmpOp::Le => "<=",
            CmpOp::Gt => ">",
            CmpOp::Ge => ">=",
        }
    }

    pub fn holds(self, ord: Ordering) -> bool {
        match self {
            CmpOp::Eq => ord == Ordering::Equal,
            CmpOp::Ne => ord != Ordering::Equal,
            CmpOp::Lt => ord == Ordering::Less,
            CmpOp::Le => ord != Ordering::Greater,
            CmpOp::Gt => ord == Ordering::Greater,
            CmpOp::Ge => ord != Ordering::Less,
        }
    }
}

/// What a field is tested for.
#[derive(Clone, Debug, PartialEq)]
pub enum Test {
    Compare(CmpOp, Literal),
    In(Vec<Literal>),
    NotIn(Vec<Literal>),
    /// Substring, case-sensitive.
    Contains(String),
    IsNull,
    IsNotNull,
}

/// An event filter's tree. `and`/`or` are binary and left-associative as written.
#[derive(Clone, Debug, PartialEq)]
pub enum FilterExpr {
    Test { field: Field, test: Test },
    Not(Box<FilterExpr>),
    And(Box<FilterExpr>, Box<FilterExpr>),
    Or(Box<FilterExpr>, Box<FilterExpr>),
}

/// `first_seen` (the customer's first event) or `last_seen` (their last).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Seen {
    First,
    Last,
}

/// What `first_seen`/`last_seen` is tested for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SeenTest {
    /// Against a timestamp (µs UTC).
    Compare(CmpOp, i64),
    /// Between `now − duration` and `now`, both included.
    Within(i64),
}

/// A segment's tree.
#[derive(Clone, Debug, PartialEq)]
pub enum SegmentExpr {
    /// The customer's current trait value: the last one present in their journey.
    Trait {
        name: String,
        test: Test,
    },
    /// At least one event matches, optionally only among events in `[now − within, now]`.
    Did {
        filter: FilterExpr,
        within: Option<i64>,
    },
    /// The number of matching events (optionally in the window) compared with a number.
    Count {
        filter: FilterExpr,
        within: Option<i64>,
        op: CmpOp,
        value: f64,
    },
    Seen {
        seen: Seen,
        test: SeenTest,
    },
    Not(Box<SegmentExpr>),
    And(Box<SegmentExpr>, Box<SegmentExpr>),
    Or(Box<SegmentExpr>, Box<SegmentExpr>),
}

/// A value an expression looks at: missing, text, or a number from a numeric column.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Val<'a> {
    Missing,
    Text(&'a str),
    Num(f64),
}

/// Text reads as a number when Rust parses it as a finite `f64` and it starts like one,
/// so `inf` and `NaN` stay text.
pub fn text_as_number(s: &str) -> Option<f64> {
    let first = s.bytes().next()?;
    if !(first.is_ascii_digit() || matches!(first, b'-' | b'+' | b'.')) {
        return None;
    }
    s.parse::<f64>().ok().filter(|v| v.is_finite())
}

fn compare(v: Val<'_>, op: CmpOp, lit: &Literal) -> bool {
    match v {
        Val::Missing => op == CmpOp::Ne,
        Val::Num(x) => match lit.as_number() {
            Some(y) => x.partial_cmp(&y).is_some_and(|o| op.holds(o)),
            None => op.holds(format!("{x}").as_str().cmp(lit.as_text())),
        },
        Val::Text(s) => match (text_as_number(s), lit.as_number()) {
            (Some(x), Some(y)) => x.partial_cmp(&y).is_some_and(|o| op.holds(o)),
            _ => op.holds(s.cmp(lit.as_text())),
        },
    }
}

impl Test {
    /// The rules every evaluator follows: numbers compare as numbers when both sides are
    /// numbers, else as text (byte order); a missing value fails every test except `!=`,
    /// `not in` and `is null`, so `a != x` is exactly `not (a = x)`.
    pub fn eval(&self, v: Val<'_>) -> bool {
        match self {
            Test::Compare(op, lit) => compare(v, *op, lit),
            Test::In(list) => list.iter().any(|l| compare(v, CmpOp::Eq, l)),
            Test::NotIn(list) => !list.iter().any(|l| compare(v, CmpOp::Eq, l)),
            Test::Contains(needle) => match v {
                Val::Missing => false,
                Val::Text(s) => s.contains(needle.as_str()),
                Val::Num(x) => format!("{x}").contains(needle.as_str()),
            },
            Test::IsNull => v == Val::Missing,
            Test::IsNotNull => v != Val::Missing,
        }
    }
}

/// Words the parser reserves; a property with such a name is written `property.NAME`.
pub(crate) const KEYWORDS: &[&str] = &[
    "and", "or", "not", "in", "contains", "is", "null", "true", "false", "within",
];

/// Field names with a fixed meaning in filters.
pub(crate) const BUILTIN_FIELDS: &[&str] = &[
    "channel",
    "activity",
    "stage",
    "touchpoint",
    "hour",
    "weekday",
];

fn is_plain_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

pub(crate) fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// `name` as written after `property.` or `trait.`.
fn name_part(name: &str) -> String {
    if is_plain_name(name) {
        name.to_string()
    } else {
        quote(name)
    }
}

/// The largest unit that divides the duration, so it reads back unchanged.
pub(crate) fn format_duration(micros: i64) -> String {
    const S: i64 = 1_000_000;
    for (unit, per) in [
        ("w", 7 * 86_400 * S),
        ("d", 86_400 * S),
        ("h", 3600 * S),
        ("m", 60 * S),
    ] {
        if micros % per == 0 {
            return format!("{}{unit}", micros / per);
        }
    }
    format!("{}s", micros / S)
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Field::Channel => f.write_str("channel"),
            Field::Activity => f.write_str("activity"),
            Field::Stage => f.write_str("stage"),
            Field::Touchpoint => f.write_str("touchpoint"),
            Field::Hour => f.write_str("hour"),
            Field::Weekday => f.write_str("weekday"),
            Field::Property(p) => {
                let lower = p.to_ascii_lowercase();
                let bare = is_plain_name(p)
                    && !KEYWORDS.contains(&lower.as_str())
                    && !BUILTIN_FIELDS.contains(&p.as_str())
                    && !matches!(p.as_str(), "property" | "properties" | "trait" | "traits");
                if bare {
                    f.write_str(p)
                } else {
                    write!(f, "property.{}", name_part(p))
                }
            }
        }
    }
}

impl fmt::Display for Literal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Literal::Text(s) => f.write_str(&quote(s)),
            Literal::Number { text, .. } => f.write_str(text),
            Literal::Bool(b) => write!(f, "{b}"),
        }
    }
}

fn list(f: &mut fmt::Formatter<'_>, items: &[Literal]) -> fmt::Result {
    f.write_str("(")?;
    for (i, l) in items.iter().enumerate() {
        if i > 0 {
            f.write_str(", ")?;
        }
        write!(f, "{l}")?;
    }
    f.write_str(")")
}

impl fmt::Display for Test {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Test::Compare(op, l) => write!(f, "{} {l}", op.symbol()),
            Test::In(items) => {
                f.write_str("in ")?;
                list(f, items)
            }
            Test::NotIn(items) => {
                f.write_str("not in ")?;
                list(f, items)
            }
            Test::Contains(s) => write!(f, "contains {}", quote(s)),
            Test::IsNull => f.write_str("is null"),
            Test::IsNotNull => f.write_str("is not null"),
        }
    }
}

/// Binding strength when printing: `or` < `and` < `not` < a test.
trait Precedence {
    fn precedence(&self) -> u8;
}

impl Precedence for FilterExpr {
    fn precedence(&self) -> u8 {
        match self {
            FilterExpr::Or(..) => 1,
            FilterExpr::And(..) => 2,
            FilterExpr::Not(_) => 3,
            FilterExpr::Test { .. } => 4,
        }
    }
}

impl Precedence for SegmentExpr {
    fn precedence(&self) -> u8 {
        match self {
            SegmentExpr::Or(..) => 1,
            SegmentExpr::And(..) => 2,
            SegmentExpr::Not(_) => 3,
            _ => 4,
        }
    }
}

/// Writes `e`, in parentheses when it binds less tightly than `min`.
fn child<E: Precedence + fmt::Display>(f: &mut fmt::Formatter<'_>, e: &E, min: u8) -> fmt::Result {
    if e.precedence() < min {
        write!(f, "({e})")
    } else {
        write!(f, "{e}")
    }
}

impl fmt::Display for FilterExpr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FilterExpr::Test { field, test } => write!(f, "{field} {test}"),
            FilterExpr::Not(e) => {
                f.write_str("not ")?;
                child(f, e.as_ref(), 3)
            }
            // Left-associative: the right operand of the same operator needs parentheses.
            FilterExpr::And(a, b) => {
                child(f, a.as_ref(), 2)?;
                f.write_str(" and ")?;
                child(f, b.as_ref(), 3)
            }
            FilterExpr::Or(a, b) => {
                child(f, a.as_ref(), 1)?;
                f.write_str(" or ")?;
                child(f, b.as_ref(), 2)
            }
        }
    }
}

impl fmt::Display for SegmentExpr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let within = |f: &mut fmt::Formatter<'_>, w: &Option<i64>| match w {
            Some(d) => write!(f, " within {}", format_duration(*d)),
            None => Ok(()),
        };
        match self {
            SegmentExpr::Trait { name, test } => write!(f, "trait.{} {test}", name_part(name)),
            SegmentExpr::Did { filter, within: w } => {
                write!(f, "did({filter})")?;
                within(f, w)
            }
            SegmentExpr::Count {
                filter,
                within: w,
                op,
                value,
            } => {
                write!(f, "count({filter})")?;
                within(f, w)?;
                write!(f, " {} {value}", op.symbol())
            }
            SegmentExpr::Seen { seen, test } => {
                f.write_str(match seen {
                    Seen::First => "first_seen",
                    Seen::Last => "last_seen",
                })?;
                match test {
                    SeenTest::Compare(op, ts) => write!(
                        f,
                        " {} {}",
                        op.symbol(),
                        quote(&omnitrail_model::Timestamp::from_micros(*ts).to_rfc3339())
                    ),
                    SeenTest::Within(d) => write!(f, " within {}", format_duration(*d)),
                }
            }
            SegmentExpr::Not(e) => {
                f.write_str("not ")?;
                child(f, e.as_ref(), 3)
            }
            SegmentExpr::And(a, b) => {
                child(f, a.as_ref(), 2)?;
                f.write_str(" and ")?;
                child(f, b.as_ref(), 3)
            }
            SegmentExpr::Or(a, b) => {
                child(f, a.as_ref(), 1)?;
                f.write_str(" or ")?;
                child(f, b.as_ref(), 2)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_compare_as_numbers_only_when_both_sides_are() {
        let t = |op, lit: Literal, v| Test::Compare(op, lit).eval(v);
        assert!(t(CmpOp::Eq, Literal::number(7.0), Val::Text("007")));
        assert!(t(CmpOp::Lt, Literal::number(10.0), Val::Text("9")));
        // As text, "9" > "10".
        assert!(t(CmpOp::Gt, Literal::Text("10".into()), Val::Text("9x")));
        assert!(t(CmpOp::Eq, Literal::Text("2.5".into()), Val::Num(2.5)));
        assert!(t(CmpOp::Eq, Literal::Text("3".into()), Val::Num(3.0)));
        assert!(t(CmpOp::Eq, Literal::Bool(true), Val::Text("true")));
        assert_eq!(text_as_number("NaN"), None);
        assert_eq!(text_as_number("inf"), None);
        assert_eq!(text_as_number("-1e3"), Some(-1000.0));
    }

    #[test]
    fn missing_values_fail_every_test_but_the_negative_ones() {
        let lit = Literal::Text("x".into());
        for (test, expect) in [
            (Test::Compare(CmpOp::Eq, lit.clone()), false),
            (Test::Compare(CmpOp::Ne, lit.clone()), true),
            (Test::Compare(CmpOp::Lt, lit.clone()), false),
            (Test::In(vec![lit.clone()]), false),
            (Test::NotIn(vec![lit.clone()]), true),
            (Test::Contains("x".into()), false),
            (Test::IsNull, true),
            (Test::IsNotNull, false),
        ] {
            assert_eq!(test.eval(Val::Missing), expect, "{test}");
        }
    }

    #[test]
    fn durations_print_in_their_largest_unit() {
        assert_eq!(format_duration(7 * 86_400_000_000), "1w");
        assert_eq!(format_duration(90_000_000), "90s");
        assert_eq!(format_duration(7_200_000_000), "2h");
    }
}
