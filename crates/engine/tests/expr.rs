//! The expression language: parsing (precedence, canonical printing, errors with positions)
//! and compiled evaluation against a brute-force evaluator that walks the syntax tree over
//! decoded strings and numbers.

use omnitrail_engine::expr::{
    CmpOp, EventFilter, Field, FilterExpr, Literal, Seen, SeenTest, Segment, SegmentExpr, Test,
};
use omnitrail_engine::testing::{Fixture, FixtureCustomer, FixtureEvent, FixtureValue, BASE};
use omnitrail_engine::Stages;
use omnitrail_model::journeys::Journeys;
use omnitrail_model::{CustomerId, Timestamp};
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::sync::Arc;

const MINUTE: i64 = 60_000_000;
const HOUR: i64 = 60 * MINUTE;
const DAY: i64 = 24 * HOUR;

fn stages() -> Stages {
    let mut s = Stages::new(vec![
        "awareness".into(),
        "purchase".into(),
        "support".into(),
    ]);
    for (a, st) in [
        ("view", "awareness"),
        ("cart", "purchase"),
        ("buy", "purchase"),
        ("call", "support"),
        ("complaint", "support"),
    ] {
        s.assign(a, st).unwrap();
    }
    s
}

// ---- parsing ----

/// The tree fully parenthesized, to see precedence.
fn shape(e: &FilterExpr) -> String {
    match e {
        FilterExpr::Test { field, test } => format!("{field} {test}"),
        FilterExpr::Not(a) => format!("(not {})", shape(a)),
        FilterExpr::And(a, b) => format!("({} and {})", shape(a), shape(b)),
        FilterExpr::Or(a, b) => format!("({} or {})", shape(a), shape(b)),
    }
}

fn segment_shape(e: &SegmentExpr) -> String {
    match e {
        SegmentExpr::Not(a) => format!("(not {})", segment_shape(a)),
        SegmentExpr::And(a, b) => format!("({} and {})", segment_shape(a), segment_shape(b)),
        SegmentExpr::Or(a, b) => format!("({} or {})", segment_shape(a), segment_shape(b)),
        leaf => format!("[{leaf}]"),
    }
}

fn filter_shape(text: &str) -> String {
    shape(EventFilter::parse(text).unwrap().expr())
}

/// Regression (found by fuzzing): thousands of nested parentheses overflowed the stack and
/// killed the process; nesting is now capped with an error at the level that breaks it.
#[test]
fn deep_nesting_is_an_error_not_a_stack_overflow() {
    let deep = |open: &str, n: usize, inner: &str, close: &str| {
        format!("{}{inner}{}", open.repeat(n), close.repeat(n))
    };
    // The error points at the 65th level.
    for (text, column) in [
        (deep("(", 6000, "channel = 'web'", ")"), 65),
        (deep("not ", 6000, "channel = 'web'", ""), 64 * 4 + 1),
        (deep("(", 65, "channel = 'web'", ")"), 65),
    ] {
        let err = EventFilter::parse(&text).unwrap_err();
        assert!(
            err.message.contains("nested more than 64 levels"),
            "{}",
            err.message
        );
        assert_eq!(err.column, column);
    }
    let segment = deep("(", 6000, "did('x')", ")");
    let err = Segment::parse(&segment).unwrap_err();
    assert!(
        err.message.contains("nested more than 64 levels"),
        "{}",
        err.message
    );
    let inside_did = format!("did({})", deep("(", 100, "channel = 'web'", ")"));
    assert!(Segment::parse(&inside_did).is_err());
    // 64 levels are fine.
    let ok = deep("(", 63, "channel = 'web'", ")");
    assert_eq!(filter_shape(&ok), filter_shape("channel = 'web'"));
}

#[test]
fn and_binds_tighter_than_or_and_not_tighter_than_and() {
    assert_eq!(
        filter_shape("a = 1 or b = 2 and c = 3"),
        "(a = 1 or (b = 2 and c = 3))"
    );
    assert_eq!(
        filter_shape("not a = 1 and b = 2"),
        "((not a = 1) and b = 2)"
    );
    assert_eq!(
        filter_shape("(a = 1 or b = 2) and not (c = 3 or d = 4)"),
        "((a = 1 or b = 2) and (not (c = 3 or d = 4)))"
    );
    assert_eq!(
        filter_shape("a = 1 and b = 2 and c = 3 or d = 4 or e = 5"),
        "((((a = 1 and b = 2) and c = 3) or d = 4) or e = 5)"
    );
    assert_eq!(filter_shape("not not a = 1"), "(not (not a = 1))");
}

#[test]
fn keywords_ignore_case_and_fields_do_not() {
    assert_eq!(
        filter_shape("channel = 'web' AND os NOT IN ('x') Or Hour >= 9"),
        "((channel = 'web' and os not in ('x')) or Hour >= 9)"
    );
    // `Hour` is a property: only lower-case `hour` is the field.
    let f = EventFilter::parse("Hour >= 9").unwrap();
    assert_eq!(f.referenced_properties(), ["Hour"]);
}

#[test]
fn every_test_form_parses() {
    let cases = [
        ("channel = 'phone'", "channel = 'phone'"),
        ("channel == \"phone\"", "channel = 'phone'"),
        ("activity <> 'x'", "activity != 'x'"),
        ("amount < 3", "amount < 3"),
        ("amount <= -1.5", "amount <= -1.5"),
        ("amount > 1e3", "amount > 1e3"),
        ("amount >= .5", "amount >= .5"),
        ("os in ('iOS', 'iPadOS')", "os in ('iOS', 'iPadOS')"),
        ("os not in ('iOS')", "os not in ('iOS')"),
        ("os contains 'OS'", "os contains 'OS'"),
        ("os not contains 'OS'", "not os contains 'OS'"),
        ("os is null", "os is null"),
        ("os is not null", "os is not null"),
        (
            "flag = true and other != FALSE",
            "flag = true and other != false",
        ),
        ("property.channel = 'x'", "property.channel = 'x'"),
        ("properties.os = 'x'", "os = 'x'"),
        ("property.'order id' = 'A-1'", "property.'order id' = 'A-1'"),
        ("property.in = 1", "property.in = 1"),
        ("touchpoint = 'phone:call'", "touchpoint = 'phone:call'"),
        ("stage = 'support'", "stage = 'support'"),
        ("weekday in ('Saturday', 'sun')", "weekday in (6, 7)"),
        ("hour >= 9 and hour < 17", "hour >= 9 and hour < 17"),
        ("note = 'it\\'s'", "note = 'it\\'s'"),
        ("(a = 1 or b = 2) and c = 3", "(a = 1 or b = 2) and c = 3"),
        ("a = 1 or (b = 2 or c = 3)", "a = 1 or (b = 2 or c = 3)"),
        ("not (a = 1 and b = 2)", "not (a = 1 and b = 2)"),
    ];
    for (input, canonical) in cases {
        let f = EventFilter::parse(input).unwrap_or_else(|e| panic!("{input}: {}", e.render()));
        assert_eq!(f.to_string(), canonical, "{input}");
        // The canonical form reads back to the same tree.
        assert_eq!(
            EventFilter::parse(canonical).unwrap().expr(),
            f.expr(),
            "{input}"
        );
    }
}

#[test]
fn referenced_names_are_sorted_and_unique() {
    let f =
        EventFilter::parse("os = 'a' and (browser = 'b' or property.os = 'c') and channel = 'x'")
            .unwrap();
    assert_eq!(f.referenced_properties(), ["browser", "os"]);
    assert!(f.referenced_traits().is_empty());
    let s = Segment::parse(
        "trait.region = 'EU' and (trait.plan = 'premium' or did(device = 'mobile')) and count(os = 'iOS') > 1",
    )
    .unwrap();
    assert_eq!(s.referenced_traits(), ["plan", "region"]);
    assert_eq!(s.referenced_properties(), ["device", "os"]);
}

#[test]
fn the_segment_from_the_issue_parses_with_within_bound_to_did() {
    let s = Segment::parse(
        "trait.plan = 'premium' and did('payment_failed') and not did('purchase') within 7d",
    )
    .unwrap();
    assert_eq!(
        segment_shape(s.expr()),
        "(([trait.plan = 'premium'] and [did(activity = 'payment_failed')]) and (not [did(activity = 'purchase') within 1w]))"
    );
    match s.expr() {
        SegmentExpr::And(_, b) => match b.as_ref() {
            SegmentExpr::Not(d) => assert_eq!(
                **d,
                SegmentExpr::Did {
                    filter: FilterExpr::Test {
                        field: Field::Activity,
                        test: Test::Compare(CmpOp::Eq, Literal::Text("purchase".into())),
                    },
                    within: Some(7 * DAY),
                }
            ),
            other => panic!("{other:?}"),
        },
        other => panic!("{other:?}"),
    }
}

#[test]
fn segment_forms_parse() {
    let cases = [
        (
            "did(channel = 'social' and activity = 'complaint')",
            "did(channel = 'social' and activity = 'complaint')",
        ),
        (
            "count('login_failed') >= 3",
            "count(activity = 'login_failed') >= 3",
        ),
        (
            "count('login_failed') >= 3 within 15m",
            "count(activity = 'login_failed') within 15m >= 3",
        ),
        (
            "count('login_failed') within 2h < 1",
            "count(activity = 'login_failed') within 2h < 1",
        ),
        (
            "did('x') within 30s or did('y') within 4w",
            "did(activity = 'x') within 30s or did(activity = 'y') within 4w",
        ),
        (
            "first_seen >= '2024-01-02'",
            "first_seen >= '2024-01-02T00:00:00Z'",
        ),
        ("last_seen within 30d", "last_seen within 30d"),
        (
            "not (trait.plan is null or trait.'age band' in ('18-24'))",
            "not (trait.plan is null or trait.'age band' in ('18-24'))",
        ),
        (
            "traits.plan not contains 'pre'",
            "not trait.plan contains 'pre'",
        ),
    ];
    for (input, canonical) in cases {
        let s = Segment::parse(input).unwrap_or_else(|e| panic!("{input}: {}", e.render()));
        assert_eq!(s.to_string(), canonical, "{input}");
        assert_eq!(
            Segment::parse(canonical).unwrap().expr(),
            s.expr(),
            "{input}"
        );
    }
}

#[test]
fn error_messages_point_at_the_column() {
    let e = EventFilter::parse("channel = 'web' and os =").unwrap_err();
    assert_eq!(
        e.to_string(),
        "error at column 25: expected a value after '=', found end of input"
    );
    assert_eq!((e.position, e.column), (24, 25));
    assert_eq!(e.source_text(), "channel = 'web' and os =");
}

#[test]
fn error_messages_snapshot() {
    let filters = [
        "channel = 'web' and os =",
        "channel = web",
        "channel == 'web' && os = 'iOS'",
        "os in ('iOS', 'iPadOS'",
        "os in 'iOS'",
        "(channel = 'web'",
        "channel = 'web')",
        "os is 'iOS'",
        "os 'iOS'",
        "channel = 'web' os = 'iOS'",
        "and = 1",
        "trait.plan = 'premium'",
        "did('buy')",
        "os = 'iOS",
        "",
        "os = null",
        "os not like 'x'",
        "os contains 5",
        "amount > 1.2.3",
        "amount > -x",
        "os = 'a' ; drop",
    ];
    let segments = [
        "trait.plan = 'premium' and did('purchase') within 7",
        "did('purchase') within 7x",
        "did('purchase') within 1.5d",
        "did('purchase') within 0d",
        "channel = 'web'",
        "plan = 'premium'",
        "count('login_failed') >= ",
        "count('login_failed')",
        "count('login_failed') within 7d >= 3 within 1d",
        "did()",
        "did(channel = 'web'",
        "first_seen < 'yesterday'",
        "first_seen < 3",
        "",
        "trait.plan = 'premium'\nand did(",
        "trait. = 'x'",
    ];
    let mut out = String::new();
    for f in filters {
        let e = EventFilter::parse(f).expect_err(f);
        out += &format!("filter {f:?}\n{}\n\n", e.render());
    }
    for s in segments {
        let e = Segment::parse(s).expect_err(s);
        out += &format!("segment {s:?}\n{}\n\n", e.render());
    }
    insta::assert_snapshot!(out);
}

#[test]
fn stage_tests_are_checked_against_the_configuration() {
    let parts = Fixture::parse("ana: view > call").partitions(1);
    let j = &parts[0];
    let f = EventFilter::parse("channel = 'web' and stage in ('support', 'suport')").unwrap();
    let e = f.compile(j, &stages()).unwrap_err();
    assert_eq!(
        e.render(),
        format!(
            "error at column 42: unknown stage 'suport' (configured stages: awareness, purchase, support)\n  channel = 'web' and stage in ('support', 'suport')\n  {}^",
            " ".repeat(41)
        )
    );
    let e = f.compile(j, &Stages::default()).unwrap_err();
    assert_eq!(
        e.to_string(),
        "error at column 21: 'stage' needs configured stages: add a [stages] table to omnitrail.toml"
    );
    // Any text is fine where it is not a stage name by intent.
    let ok = EventFilter::parse("stage contains 'port' or stage > 'b'").unwrap();
    assert!(ok.compile(j, &stages()).is_ok());
    let s = Segment::parse("did(stage = 'supprt')").unwrap();
    assert!(s
        .compile(j, &stages(), BASE)
        .unwrap_err()
        .message
        .contains("'supprt'"));
}

// ---- evaluation on named fixtures ----

/// For each fixture customer (by name), the 0/1 pattern of matching events, e.g. "ana 101".
fn filter_pattern(fixture: &str, filter: &str) -> Vec<String> {
    let fx = Fixture::parse(fixture);
    let f = EventFilter::parse(filter).unwrap();
    let mut out = Vec::new();
    for j in fx.partitions(2) {
        let c = f.compile(&j, &stages()).unwrap();
        for (ci, id) in j.customers.iter().enumerate() {
            let name = &fx.customers.iter().find(|c| c.id == *id).unwrap().name;
            let bits: String = j
                .customer_range(ci)
                .map(|e| if c.matches(e) { '1' } else { '0' })
                .collect();
            out.push(format!("{name} {bits}"));
        }
    }
    out.sort();
    out
}

fn segment_members(fixture: &str, segment: &str, now: i64) -> Vec<String> {
    let fx = Fixture::parse(fixture);
    let s = Segment::parse(segment).unwrap();
    let mut out = Vec::new();
    for j in fx.partitions(3) {
        let c = s.compile(&j, &stages(), now).unwrap();
        for (ci, id) in j.customers.iter().enumerate() {
            if c.matches(ci) {
                out.push(
                    fx.customers
                        .iter()
                        .find(|c| c.id == *id)
                        .unwrap()
                        .name
                        .clone(),
                );
            }
        }
    }
    out.sort();
    out
}

const SHOP: &str = "
ana: web:view{os=iOS} > phone:call{os=Android} > web:buy{os=iPadOS,amount=#12.5}
bob: email:view > web:cart{amount=#3} > web:buy{amount=#30}
cy: phone:complaint{os=10} > phone:call{os=9} > chat:view{os=iOS 17}
";

#[test]
fn the_filter_from_the_issue() {
    assert_eq!(
        filter_pattern(SHOP, "channel = 'phone' and os in ('iOS', 'iPadOS')"),
        ["ana 000", "bob 000", "cy 000"]
    );
    assert_eq!(
        filter_pattern(SHOP, "channel = 'web' and os in ('iOS', 'iPadOS')"),
        ["ana 101", "bob 000", "cy 000"]
    );
}

#[test]
fn missing_values_match_only_negative_tests() {
    assert_eq!(
        filter_pattern(SHOP, "os != 'iOS'"),
        ["ana 011", "bob 111", "cy 111"]
    );
    assert_eq!(
        filter_pattern(SHOP, "os is null"),
        ["ana 000", "bob 111", "cy 000"]
    );
    assert_eq!(
        filter_pattern(SHOP, "os < 'z'"),
        ["ana 111", "bob 000", "cy 111"]
    );
    // A property no partition has: missing everywhere.
    assert_eq!(
        filter_pattern(SHOP, "nothing = 'x'"),
        ["ana 000", "bob 000", "cy 000"]
    );
    assert_eq!(
        filter_pattern(SHOP, "nothing not in ('x')"),
        ["ana 111", "bob 111", "cy 111"]
    );
}

#[test]
fn numbers_compare_numerically_text_compares_as_text() {
    assert_eq!(
        filter_pattern(SHOP, "amount > 10"),
        ["ana 001", "bob 001", "cy 000"]
    );
    assert_eq!(
        filter_pattern(SHOP, "amount = '12.5'"),
        ["ana 001", "bob 000", "cy 000"]
    );
    // "10" and "9" are numbers on a text column: 9 < 10 numerically ("9" > "10" as text).
    assert_eq!(
        filter_pattern(SHOP, "os < 10"),
        ["ana 000", "bob 000", "cy 010"]
    );
    assert_eq!(
        filter_pattern(SHOP, "os >= '9'"),
        ["ana 111", "bob 000", "cy 111"]
    );
    assert_eq!(
        filter_pattern(SHOP, "os contains 'OS'"),
        ["ana 101", "bob 000", "cy 001"]
    );
    assert_eq!(
        filter_pattern(SHOP, "amount contains '.'"),
        ["ana 001", "bob 000", "cy 000"]
    );
}

#[test]
fn derived_fields_stage_touchpoint_hour_weekday() {
    assert_eq!(
        filter_pattern(SHOP, "stage = 'support'"),
        ["ana 010", "bob 000", "cy 110"]
    );
    assert_eq!(
        filter_pattern(SHOP, "stage is null"),
        ["ana 000", "bob 000", "cy 000"]
    );
    assert_eq!(
        filter_pattern(SHOP, "touchpoint in ('phone:call', 'email:view')"),
        ["ana 010", "bob 100", "cy 010"]
    );
    // BASE is Monday 2024-01-01 00:00 UTC: then Tuesday 10:00 and Saturday 23:00.
    let days = "ana: view@0 > view@34h > view@143h\n";
    assert_eq!(filter_pattern(days, "hour = 10"), ["ana 010"]);
    assert_eq!(filter_pattern(days, "weekday = 'tuesday'"), ["ana 010"]);
    assert_eq!(
        filter_pattern(days, "weekday in ('sat', 'sun') or hour = 0"),
        ["ana 101"]
    );
}

#[test]
fn values_absent_from_a_dictionary_never_match() {
    assert_eq!(
        filter_pattern(SHOP, "channel = 'sms'"),
        ["ana 000", "bob 000", "cy 000"]
    );
    assert_eq!(
        filter_pattern(SHOP, "activity != 'teleport'"),
        ["ana 111", "bob 111", "cy 111"]
    );
}

const CRM: &str = "
ana[plan=premium]: web:login_failed@0 > web:payment_failed@1d > web:purchase@2d
bob[plan=premium]: web:payment_failed@1d > social:complaint@3d
cy[plan=free]: web:payment_failed@1d > web:login_failed@2d > web:login_failed@49h > web:login_failed@9d
dee[plan=premium]: web:purchase@1d > web:view@2d
";

#[test]
fn the_segment_from_the_issue() {
    let now = BASE + 10 * DAY;
    let seg = "trait.plan = 'premium' and did('payment_failed') and not did('purchase') within 7d";
    // ana bought 8 days before now: outside the window.
    assert_eq!(segment_members(CRM, seg, now), ["ana", "bob"]);
    assert_eq!(segment_members(CRM, seg, BASE + 5 * DAY), ["bob"]);
}

#[test]
fn behaviour_counts_traits_and_seen() {
    let now = BASE + 10 * DAY;
    let m = |s: &str| segment_members(CRM, s, now);
    assert_eq!(
        m("did(channel = 'social' and activity = 'complaint')"),
        ["bob"]
    );
    assert_eq!(m("count('login_failed') >= 3"), ["cy"]);
    assert_eq!(m("count('login_failed') >= 2 within 8d"), ["cy"]);
    assert_eq!(
        m("count('login_failed') >= 2 within 7d"),
        Vec::<String>::new()
    );
    assert_eq!(m("count('login_failed') = 0"), ["bob", "dee"]);
    assert_eq!(m("trait.plan != 'premium'"), ["cy"]);
    assert_eq!(m("trait.region is null"), ["ana", "bob", "cy", "dee"]);
    assert_eq!(m("first_seen < '2024-01-01T12:00:00Z'"), ["ana"]);
    assert_eq!(m("last_seen within 2d"), ["cy"]);
    assert_eq!(m("first_seen within 9d"), ["bob", "cy", "dee"]);
    assert_eq!(m("not (did('purchase') or trait.plan = 'free')"), ["bob"]);
}

#[test]
fn the_current_trait_is_the_last_one_sent() {
    let mut fx = Fixture::parse("ana[plan=free]: view > cart > buy\nbob[plan=free]: view > buy");
    fx.customers[0].events[1]
        .traits
        .insert("plan".into(), "premium".into());
    fx.customers[1].events[1]
        .traits
        .insert("region".into(), "EU".into());
    let s = Segment::parse("trait.plan = 'premium'").unwrap();
    let parts = fx.partitions(1);
    let c = s.compile(&parts[0], &stages(), BASE).unwrap();
    assert!(c.matches(0));
    assert!(!c.matches(1));
}

// ---- brute-force reference ----

#[derive(Clone, Debug, PartialEq)]
enum RefVal {
    Missing,
    Text(String),
    Num(f64),
}

fn ref_number(s: &str) -> Option<f64> {
    let c = s.chars().next()?;
    if !(c.is_ascii_digit() || c == '-' || c == '+' || c == '.') {
        return None;
    }
    s.parse::<f64>().ok().filter(|x| x.is_finite())
}

fn lit_text(l: &Literal) -> String {
    match l {
        Literal::Text(s) => s.clone(),
        Literal::Number { text, .. } => text.clone(),
        Literal::Bool(b) => b.to_string(),
    }
}

fn lit_number(l: &Literal) -> Option<f64> {
    match l {
        Literal::Text(s) => ref_number(s),
        Literal::Number { value, .. } => Some(*value),
        Literal::Bool(_) => None,
    }
}

/// -1, 0, 1 comparing the value with the literal; None when the value is missing.
fn ref_order(v: &RefVal, l: &Literal) -> Option<std::cmp::Ordering> {
    let (num, text) = match v {
        RefVal::Missing => return None,
        RefVal::Num(x) => (Some(*x), format!("{x}")),
        RefVal::Text(s) => (ref_number(s), s.clone()),
    };
    match (num, lit_number(l)) {
        (Some(a), Some(b)) => a.partial_cmp(&b),
        _ => Some(text.as_str().cmp(lit_text(l).as_str())),
    }
}

fn ref_test(v: &RefVal, t: &Test) -> bool {
    use std::cmp::Ordering::*;
    let eq = |l: &Literal| ref_order(v, l) == Some(Equal);
    match t {
        Test::Compare(CmpOp::Eq, l) => eq(l),
        Test::Compare(CmpOp::Ne, l) => !eq(l),
        Test::Compare(CmpOp::Lt, l) => ref_order(v, l) == Some(Less),
        Test::Compare(CmpOp::Le, l) => matches!(ref_order(v, l), Some(Less | Equal)),
        Test::Compare(CmpOp::Gt, l) => ref_order(v, l) == Some(Greater),
        Test::Compare(CmpOp::Ge, l) => matches!(ref_order(v, l), Some(Greater | Equal)),
        Test::In(ls) => ls.iter().any(eq),
        Test::NotIn(ls) => !ls.iter().any(eq),
        Test::Contains(n) => match v {
            RefVal::Missing => false,
            RefVal::Text(s) => s.contains(n.as_str()),
            RefVal::Num(x) => format!("{x}").contains(n.as_str()),
        },
        Test::IsNull => *v == RefVal::Missing,
        Test::IsNotNull => *v != RefVal::Missing,
    }
}

/// ISO weekday from the civil date (Sakamoto), independent of the engine's day arithmetic.
fn ref_weekday(ts: i64) -> f64 {
    let (y, m, d, ..) = Timestamp::from_micros(ts).civil();
    let t = [0, 3, 2, 5, 0, 3, 5, 1, 4, 6, 2, 4];
    let y = if m < 3 { y - 1 } else { y };
    let sunday0 = (y + y / 4 - y / 100 + y / 400 + t[m as usize - 1] + d as i64) % 7;
    if sunday0 == 0 {
        7.0
    } else {
        sunday0 as f64
    }
}

fn ref_field(ev: &FixtureEvent, field: &Field, stages: &Stages) -> RefVal {
    match field {
        Field::Channel => RefVal::Text(ev.channel.clone()),
        Field::Activity => RefVal::Text(ev.activity.clone()),
        Field::Stage => stages
            .stage_of(&ev.activity)
            .map_or(RefVal::Missing, |s| RefVal::Text(s.to_string())),
        Field::Touchpoint => RefVal::Text(format!("{}:{}", ev.channel, ev.activity)),
        Field::Hour => RefVal::Num(Timestamp::from_micros(ev.ts).civil().3 as f64),
        Field::Weekday => RefVal::Num(ref_weekday(ev.ts)),
        Field::Property(p) => match ev.properties.get(p) {
            None => RefVal::Missing,
            Some(FixtureValue::Text(t)) => RefVal::Text(t.clone()),
            Some(FixtureValue::Num(x)) => RefVal::Num(*x),
        },
    }
}

fn ref_filter(ev: &FixtureEvent, e: &FilterExpr, stages: &Stages) -> bool {
    match e {
        FilterExpr::Test { field, test } => ref_test(&ref_field(ev, field, stages), test),
        FilterExpr::Not(a) => !ref_filter(ev, a, stages),
        FilterExpr::And(a, b) => ref_filter(ev, a, stages) && ref_filter(ev, b, stages),
        FilterExpr::Or(a, b) => ref_filter(ev, a, stages) || ref_filter(ev, b, stages),
    }
}

fn in_window(ts: i64, within: Option<i64>, now: i64) -> bool {
    within.is_none_or(|d| now - d <= ts && ts <= now)
}

fn ref_segment(c: &FixtureCustomer, e: &SegmentExpr, stages: &Stages, now: i64) -> bool {
    match e {
        SegmentExpr::Trait { name, test } => {
            let current = c
                .events
                .iter()
                .filter_map(|ev| ev.traits.get(name))
                .next_back()
                .map_or(RefVal::Missing, |v| RefVal::Text(v.clone()));
            ref_test(&current, test)
        }
        SegmentExpr::Did { filter, within } => c
            .events
            .iter()
            .any(|ev| in_window(ev.ts, *within, now) && ref_filter(ev, filter, stages)),
        SegmentExpr::Count {
            filter,
            within,
            op,
            value,
        } => {
            let n = c
                .events
                .iter()
                .filter(|ev| in_window(ev.ts, *within, now) && ref_filter(ev, filter, stages))
                .count() as f64;
            match op {
                CmpOp::Eq => n == *value,
                CmpOp::Ne => n != *value,
                CmpOp::Lt => n < *value,
                CmpOp::Le => n <= *value,
                CmpOp::Gt => n > *value,
                CmpOp::Ge => n >= *value,
            }
        }
        SegmentExpr::Seen { seen, test } => {
            let t = match seen {
                Seen::First => c.events.first(),
                Seen::Last => c.events.last(),
            };
            let Some(t) = t.map(|ev| ev.ts) else {
                return false;
            };
            match *test {
                SeenTest::Within(d) => now - d <= t && t <= now,
                SeenTest::Compare(op, at) => match op {
                    CmpOp::Eq => t == at,
                    CmpOp::Ne => t != at,
                    CmpOp::Lt => t < at,
                    CmpOp::Le => t <= at,
                    CmpOp::Gt => t > at,
                    CmpOp::Ge => t >= at,
                },
            }
        }
        SegmentExpr::Not(a) => !ref_segment(c, a, stages, now),
        SegmentExpr::And(a, b) => ref_segment(c, a, stages, now) && ref_segment(c, b, stages, now),
        SegmentExpr::Or(a, b) => ref_segment(c, a, stages, now) || ref_segment(c, b, stages, now),
    }
}

// ---- random journeys and expressions ----

const CHANNELS: &[&str] = &["web", "phone", "email", "chat"];
const ACTIVITIES: &[&str] = &["view", "cart", "buy", "call", "complaint", "login_failed"];
const OS: &[&str] = &[
    "iOS", "iPadOS", "Android", "10", "9", "007", "iOS 17", "it's",
];
const AMOUNTS: &[f64] = &[-1.5, 0.0, 2.0, 10.0, 12.5];
const PLANS: &[&str] = &["premium", "free", "10", "9"];

fn event_strategy() -> impl Strategy<Value = (i64, FixtureEvent)> {
    (
        prop_oneof![Just(0i64), 0..3 * DAY],
        0..CHANNELS.len(),
        0..ACTIVITIES.len(),
        proptest::option::of(0..OS.len()),
        proptest::option::of(0..AMOUNTS.len()),
        proptest::option::of(0..PLANS.len()),
    )
        .prop_map(|(gap, c, a, os, amount, plan)| {
            let mut properties = BTreeMap::new();
            if let Some(o) = os {
                properties.insert("os".to_string(), FixtureValue::Text(OS[o].to_string()));
            }
            if let Some(x) = amount {
                properties.insert("amount".to_string(), FixtureValue::Num(AMOUNTS[x]));
            }
            let mut traits = BTreeMap::new();
            if let Some(p) = plan {
                traits.insert("plan".to_string(), PLANS[p].to_string());
            }
            (
                gap,
                FixtureEvent {
                    ts: 0,
                    channel: CHANNELS[c].to_string(),
                    activity: ACTIVITIES[a].to_string(),
                    properties,
                    traits,
                },
            )
        })
}

fn customer_strategy() -> impl Strategy<Value = (i64, Vec<(i64, FixtureEvent)>)> {
    (
        0..10 * DAY,
        proptest::collection::vec(event_strategy(), 1..8),
    )
}

/// Customers with time-ordered events, and which of `parts` partitions each goes to.
fn journeys_strategy() -> impl Strategy<Value = (Fixture, usize, Vec<usize>)> {
    (
        proptest::collection::vec(customer_strategy(), 1..12),
        1usize..4,
    )
        .prop_flat_map(|(raw, parts)| {
            let n = raw.len();
            (
                Just(raw),
                Just(parts),
                proptest::collection::vec(0..parts, n),
            )
        })
        .prop_map(|(raw, parts, assign)| {
            let customers = raw
                .into_iter()
                .enumerate()
                .map(|(i, (start, events))| {
                    let mut ts = BASE + start;
                    let events = events
                        .into_iter()
                        .map(|(gap, mut ev)| {
                            ts += gap;
                            ev.ts = ts;
                            ev
                        })
                        .collect();
                    FixtureCustomer {
                        name: format!("c{i}"),
                        id: CustomerId(i as u64 + 1),
                        events,
                    }
                })
                .collect();
            (Fixture { customers }, parts, assign)
        })
}

fn text_literal(pool: &'static [&'static str]) -> impl Strategy<Value = Literal> {
    proptest::sample::select(pool).prop_map(|s| Literal::Text(s.to_string()))
}

fn any_literal() -> impl Strategy<Value = Literal> {
    prop_oneof![
        text_literal(&[
            "web",
            "phone",
            "view",
            "buy",
            "iOS",
            "10",
            "9",
            "007",
            "web:view",
            "phone:call",
            "it's",
            "premium",
            "x",
            "12.5",
        ]),
        proptest::sample::select(&[0.0, 2.0, 9.0, 10.0, 12.5, -1.5, 3.0, 14.0, 7.0][..])
            .prop_map(Literal::number),
        any::<bool>().prop_map(Literal::Bool),
    ]
}

fn test_strategy(lit: BoxedStrategy<Literal>) -> impl Strategy<Value = Test> {
    let ops = proptest::sample::select(
        &[
            CmpOp::Eq,
            CmpOp::Ne,
            CmpOp::Lt,
            CmpOp::Le,
            CmpOp::Gt,
            CmpOp::Ge,
        ][..],
    );
    prop_oneof![
        3 => (ops, lit.clone()).prop_map(|(op, l)| Test::Compare(op, l)),
        1 => proptest::collection::vec(lit.clone(), 1..4).prop_map(Test::In),
        1 => proptest::collection::vec(lit, 1..4).prop_map(Test::NotIn),
        1 => proptest::sample::select(&["o", "web", "1", ":", "OS"][..])
            .prop_map(|s| Test::Contains(s.to_string())),
        1 => Just(Test::IsNull),
        1 => Just(Test::IsNotNull),
    ]
}

fn leaf_strategy() -> impl Strategy<Value = FilterExpr> {
    let field = prop_oneof![
        Just(Field::Channel),
        Just(Field::Activity),
        Just(Field::Stage),
        Just(Field::Touchpoint),
        Just(Field::Hour),
        Just(Field::Weekday),
        Just(Field::Property("os".into())),
        Just(Field::Property("amount".into())),
        Just(Field::Property("absent".into())),
    ];
    field.prop_flat_map(|field| {
        // Equality tests on stages must name configured stages (else compile refuses them).
        let lit = if field == Field::Stage {
            prop_oneof![
                text_literal(&["awareness", "purchase", "support"]),
                Just(Literal::number(3.0)),
            ]
            .boxed()
        } else {
            any_literal().boxed()
        };
        test_strategy(lit).prop_map(move |test| FilterExpr::Test {
            field: field.clone(),
            test,
        })
    })
}

fn filter_strategy() -> impl Strategy<Value = FilterExpr> {
    leaf_strategy().prop_recursive(3, 12, 2, |inner| {
        prop_oneof![
            inner.clone().prop_map(|a| FilterExpr::Not(Box::new(a))),
            (inner.clone(), inner.clone())
                .prop_map(|(a, b)| FilterExpr::And(Box::new(a), Box::new(b))),
            (inner.clone(), inner).prop_map(|(a, b)| FilterExpr::Or(Box::new(a), Box::new(b))),
        ]
    })
}

fn segment_strategy() -> impl Strategy<Value = SegmentExpr> {
    let within = proptest::option::of(proptest::sample::select(
        &[HOUR, DAY, 7 * DAY, 14 * DAY, 90 * 60_000_000][..],
    ));
    let ops = proptest::sample::select(
        &[
            CmpOp::Eq,
            CmpOp::Ne,
            CmpOp::Lt,
            CmpOp::Le,
            CmpOp::Gt,
            CmpOp::Ge,
        ][..],
    );
    let trait_lit = prop_oneof![
        text_literal(&["premium", "free", "10", "x"]),
        proptest::sample::select(&[9.0, 10.0][..]).prop_map(Literal::number),
    ]
    .boxed();
    let leaf = prop_oneof![
        (
            proptest::sample::select(&["plan", "absent"][..]),
            test_strategy(trait_lit)
        )
            .prop_map(|(name, test)| SegmentExpr::Trait {
                name: name.to_string(),
                test
            }),
        (filter_strategy(), within.clone())
            .prop_map(|(filter, within)| SegmentExpr::Did { filter, within }),
        (
            filter_strategy(),
            within.clone(),
            ops.clone(),
            proptest::sample::select(&[0.0, 1.0, 2.0, 3.0][..])
        )
            .prop_map(|(filter, within, op, value)| SegmentExpr::Count {
                filter,
                within,
                op,
                value
            }),
        (
            any::<bool>(),
            prop_oneof![
                (ops, 0..12i64).prop_map(|(op, d)| SeenTest::Compare(op, BASE + d * DAY)),
                proptest::sample::select(&[DAY, 7 * DAY, 4 * 7 * DAY][..])
                    .prop_map(SeenTest::Within),
            ]
        )
            .prop_map(|(first, test)| SegmentExpr::Seen {
                seen: if first { Seen::First } else { Seen::Last },
                test
            }),
    ];
    leaf.prop_recursive(2, 8, 2, |inner| {
        prop_oneof![
            inner.clone().prop_map(|a| SegmentExpr::Not(Box::new(a))),
            (inner.clone(), inner.clone())
                .prop_map(|(a, b)| SegmentExpr::And(Box::new(a), Box::new(b))),
            (inner.clone(), inner).prop_map(|(a, b)| SegmentExpr::Or(Box::new(a), Box::new(b))),
        ]
    })
}

fn fixture_customer(fx: &Fixture, id: CustomerId) -> &FixtureCustomer {
    fx.customers.iter().find(|c| c.id == id).expect("customer")
}

fn partitions(fx: &Fixture, parts: usize, assign: &[usize]) -> Vec<Arc<Journeys>> {
    fx.partitions_by(parts, |i| assign[i])
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn printed_filters_parse_back_to_the_same_tree(e in filter_strategy()) {
        let text = e.to_string();
        let parsed = EventFilter::parse(&text).map_err(|err| TestCaseError::fail(err.render()))?;
        prop_assert_eq!(parsed.expr(), &e, "{}", text);
    }

    #[test]
    fn printed_segments_parse_back_to_the_same_tree(e in segment_strategy()) {
        let text = e.to_string();
        let parsed = Segment::parse(&text).map_err(|err| TestCaseError::fail(err.render()))?;
        prop_assert_eq!(parsed.expr(), &e, "{}", text);
    }

    #[test]
    fn compiled_filters_agree_with_the_reference(
        (fx, parts, assign) in journeys_strategy(),
        e in filter_strategy(),
    ) {
        let stages = stages();
        let filter = EventFilter::parse(&e.to_string()).unwrap();
        for j in partitions(&fx, parts, &assign) {
            let compiled = filter.compile(&j, &stages).unwrap();
            for (ci, id) in j.customers.iter().enumerate() {
                let c = fixture_customer(&fx, *id);
                for (k, ev) in j.customer_range(ci).zip(&c.events) {
                    prop_assert_eq!(
                        compiled.matches(k),
                        ref_filter(ev, &e, &stages),
                        "filter {} on {:?}", filter, ev
                    );
                }
            }
        }
    }

    #[test]
    fn compiled_segments_agree_with_the_reference(
        (fx, parts, assign) in journeys_strategy(),
        e in segment_strategy(),
        now_days in 0i64..14,
        now_jitter in 0..DAY,
    ) {
        let stages = stages();
        let now = BASE + now_days * DAY + now_jitter;
        let segment = Segment::parse(&e.to_string()).unwrap();
        for j in partitions(&fx, parts, &assign) {
            let compiled = segment.compile(&j, &stages, now).unwrap();
            for (ci, id) in j.customers.iter().enumerate() {
                let c = fixture_customer(&fx, *id);
                prop_assert_eq!(
                    compiled.matches(ci),
                    ref_segment(c, &e, &stages, now),
                    "segment {} on {:?}", segment, c
                );
            }
        }
    }
}
