//! The rule format and its parser. A rule is YAML or JSON (JSON is YAML, so one parser
//! reads both); every field is checked by hand so an error names the field path, and
//! syntax errors the line and column.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as Json};
use std::collections::BTreeMap;
use std::fmt;

/// Most steps a rule may have; the evaluator keeps one bit per step and unless clause.
pub const MAX_STEPS: usize = 16;
pub const MAX_UNLESS: usize = 16;
/// Longest rule name; names are used in URLs and CLI arguments.
pub const MAX_NAME_LEN: usize = 64;

/// A parse or validation failure: where (a field path like `steps[1].within`, and the
/// line when the text itself is malformed) and what.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}{message}", location(.path, .line))]
pub struct RuleError {
    /// The field path, empty for the document itself.
    pub path: String,
    /// 1-based line of a syntax error.
    pub line: Option<usize>,
    pub message: String,
}

fn location(path: &str, line: &Option<usize>) -> String {
    match (line, path.is_empty()) {
        (Some(l), _) => format!("line {l}: "),
        (None, false) => format!("{path}: "),
        (None, true) => String::new(),
    }
}

fn err(path: &str, message: impl Into<String>) -> RuleError {
    RuleError {
        path: path.to_string(),
        line: None,
        message: message.into(),
    }
}

/// A length of time, in microseconds; written as `30s`, `15m`, `2h`, `1d`, `500ms` or a
/// combination like `1h30m`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Span(pub i64);

impl Span {
    pub const ZERO: Span = Span(0);

    pub fn from_secs(s: i64) -> Span {
        Span(s * 1_000_000)
    }

    pub fn micros(self) -> i64 {
        self.0
    }

    pub fn parse(text: &str) -> Result<Span, String> {
        let t = text.trim();
        if t.is_empty() {
            return Err("empty duration; write e.g. 30s, 15m, 2h or 1d".into());
        }
        if t == "0" {
            return Ok(Span::ZERO);
        }
        let mut total: i64 = 0;
        let mut rest = t;
        while !rest.is_empty() {
            let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
            if digits == 0 {
                return Err(format!(
                    "'{text}' is not a duration; write e.g. 30s, 15m, 2h, 1d or 1h30m"
                ));
            }
            let n: i64 = rest[..digits]
                .parse()
                .map_err(|_| format!("'{text}' is too long a duration"))?;
            rest = &rest[digits..];
            let unit_len = rest.bytes().take_while(|b| b.is_ascii_alphabetic()).count();
            let unit: i64 = match &rest[..unit_len] {
                "us" => 1,
                "ms" => 1_000,
                "s" => 1_000_000,
                "m" | "min" => 60_000_000,
                "h" => 3_600_000_000,
                "d" => 86_400_000_000,
                "" => {
                    return Err(format!(
                        "'{text}' has a number without a unit (ms, s, m, h, d)"
                    ))
                }
                u => {
                    return Err(format!(
                        "'{text}': unknown unit '{u}' (use ms, s, m, h or d)"
                    ))
                }
            };
            rest = &rest[unit_len..];
            total = n
                .checked_mul(unit)
                .and_then(|v| total.checked_add(v))
                .filter(|v| *v <= 3650 * 86_400_000_000)
                .ok_or_else(|| format!("'{text}' is longer than ten years"))?;
        }
        Ok(Span(total))
    }
}

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut v = self.0;
        if v == 0 {
            return f.write_str("0s");
        }
        for (unit, size) in [
            ("d", 86_400_000_000),
            ("h", 3_600_000_000),
            ("m", 60_000_000),
            ("s", 1_000_000),
            ("ms", 1_000),
        ] {
            if v >= size {
                write!(f, "{}{unit}", v / size)?;
                v %= size;
            }
        }
        if v > 0 {
            write!(f, "{v}us")?;
        }
        Ok(())
    }
}

impl Serialize for Span {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Span {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Span, D::Error> {
        let text = String::deserialize(d)?;
        Span::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// A literal a property or trait is compared with.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Literal {
    Bool(bool),
    Num(f64),
    Str(String),
}

impl Literal {
    pub fn matches(&self, v: &omnitrail_model::Value) -> bool {
        use omnitrail_model::Value;
        match (self, v) {
            (Literal::Str(a), Value::Str(b)) => a.as_str() == b.as_str(),
            (Literal::Num(a), Value::Num(b)) => a == b,
            (Literal::Bool(a), Value::Bool(b)) => a == b,
            _ => false,
        }
    }
}

/// Which events a step or unless clause matches: every field given must hold.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Filter {
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub activity: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub channel: Option<String>,
    /// Property name → required value.
    #[serde(skip_serializing_if = "BTreeMap::is_empty", default)]
    pub properties: BTreeMap<String, Literal>,
}

impl Filter {
    pub fn matches(&self, e: &omnitrail_model::Event) -> bool {
        self.activity
            .as_deref()
            .is_none_or(|a| e.activity.as_str() == a)
            && self
                .channel
                .as_deref()
                .is_none_or(|c| e.channel.as_str() == c)
            && self
                .properties
                .iter()
                .all(|(k, lit)| e.property(k).is_some_and(|v| lit.matches(v)))
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Step {
    #[serde(flatten)]
    pub filter: Filter,
    /// Longest time from the previous step's event to this one's; required for every
    /// step but the first (it bounds what a customer's state must remember).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub within: Option<Span>,
}

/// The absence of matching events in a window that opens at a step's event.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Unless {
    #[serde(flatten)]
    pub filter: Filter,
    /// The step (1-based) whose event opens the window.
    pub after: usize,
    /// The window's length; without it the window closes at the last step's event.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub within: Option<Span>,
}

/// Conditions on the customer: each trait must have been seen with one of the values.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CustomerFilter {
    #[serde(skip_serializing_if = "BTreeMap::is_empty", default)]
    pub traits: BTreeMap<String, Vec<Literal>>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// A signed HTTP POST. `endpoint` names a `[triggers.webhooks.NAME]` table of
    /// omnitrail.toml; `url` (and optionally `secret`) give the target inline.
    Webhook {
        #[serde(skip_serializing_if = "Option::is_none", default)]
        url: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none", default)]
        endpoint: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none", default)]
        secret: Option<String>,
    },
    /// An agent task in a queue (`callback` by default).
    Task { queue: String, title: String },
    /// An event added to the customer's journey.
    Emit {
        activity: String,
        channel: String,
        #[serde(skip_serializing_if = "BTreeMap::is_empty", default)]
        properties: BTreeMap<String, Literal>,
    },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Rule {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub description: Option<String>,
    pub steps: Vec<Step>,
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub unless: Vec<Unless>,
    #[serde(default)]
    pub customer: CustomerFilter,
    /// After a firing, further completions for the same customer within this time do not
    /// fire.
    pub cooldown: Span,
    /// How long a decision waits for late events; each firing is delayed by it.
    pub tolerance: Span,
    /// A sequence learned of more than this after it could have fired is history: it is
    /// not acted on live (replay still reports it).
    pub stale_after: Span,
    pub actions: Vec<Action>,
}

pub const DEFAULT_STALE_AFTER: Span = Span(24 * 3_600_000_000);

impl Rule {
    /// The longest stretch of event time one firing spans: its steps' windows and its
    /// unless windows.
    pub fn span(&self) -> Span {
        let steps: i64 = self
            .steps
            .iter()
            .filter_map(|s| s.within.map(Span::micros))
            .sum();
        let unless = self
            .unless
            .iter()
            .map(|u| u.within.map_or(0, Span::micros))
            .max()
            .unwrap_or(0);
        Span(steps + unless)
    }

    /// Every filter of the rule, steps first.
    pub fn filters(&self) -> impl Iterator<Item = &Filter> {
        self.steps
            .iter()
            .map(|s| &s.filter)
            .chain(self.unless.iter().map(|u| &u.filter))
    }
}

/// Reads a rule from YAML or JSON, checking every field.
pub fn parse_rule(text: &str) -> Result<Rule, RuleError> {
    let doc: Json = serde_yaml_ng::from_str(text).map_err(|e| RuleError {
        path: String::new(),
        line: e.location().map(|l| l.line()),
        message: format!("not valid YAML or JSON: {e}"),
    })?;
    rule_from_json(&doc)
}

/// Checks a rule already parsed into JSON (the HTTP API's body).
pub fn rule_from_json(doc: &Json) -> Result<Rule, RuleError> {
    let obj = object(doc, "")?;
    known(
        obj,
        "",
        &[
            "name",
            "description",
            "steps",
            "unless",
            "customer",
            "cooldown",
            "tolerance",
            "stale_after",
            "actions",
        ],
    )?;
    let name = string(required(obj, "", "name")?, "name")?;
    if name.is_empty()
        || name.len() > MAX_NAME_LEN
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
    {
        return Err(err(
            "name",
            format!("'{name}' is not a rule name: use 1 to {MAX_NAME_LEN} letters, digits, '-', '_' or '.'"),
        ));
    }
    let description = match obj.get("description") {
        None | Some(Json::Null) => None,
        Some(v) => Some(string(v, "description")?),
    };
    let steps_json = array(required(obj, "", "steps")?, "steps")?;
    if steps_json.is_empty() {
        return Err(err("steps", "a rule needs at least one step"));
    }
    if steps_json.len() > MAX_STEPS {
        return Err(err(
            "steps",
            format!("{} steps; at most {MAX_STEPS}", steps_json.len()),
        ));
    }
    let mut steps = Vec::new();
    for (i, s) in steps_json.iter().enumerate() {
        let path = format!("steps[{i}]");
        let (filter, extra) = filter(s, &path, &["within"])?;
        let within = extra
            .get("within")
            .map(|v| span(v, &format!("{path}.within")))
            .transpose()?;
        if i > 0 && within.is_none() {
            return Err(err(
                &format!("{path}.within"),
                "every step after the first needs `within` (the longest time since the previous step)",
            ));
        }
        if i == 0 && within.is_some() {
            return Err(err(
                &format!("{path}.within"),
                "the first step has no previous step to be within",
            ));
        }
        steps.push(Step { filter, within });
    }
    let mut unless = Vec::new();
    if let Some(u) = obj.get("unless") {
        let list = array(u, "unless")?;
        if list.len() > MAX_UNLESS {
            return Err(err(
                "unless",
                format!("{} clauses; at most {MAX_UNLESS}", list.len()),
            ));
        }
        for (i, c) in list.iter().enumerate() {
            let path = format!("unless[{i}]");
            let (filter, extra) = filter(c, &path, &["within", "after"])?;
            let within = extra
                .get("within")
                .map(|v| span(v, &format!("{path}.within")))
                .transpose()?;
            let after = match extra.get("after") {
                None => 1,
                Some(v) => step_ref(v, &format!("{path}.after"), &steps)?,
            };
            if within.is_none() && after == steps.len() {
                return Err(err(
                    &format!("{path}.within"),
                    "a window after the last step needs `within` (without it the window ends at the last step)",
                ));
            }
            unless.push(Unless {
                filter,
                after,
                within,
            });
        }
    }
    let customer = match obj.get("customer") {
        None | Some(Json::Null) => CustomerFilter::default(),
        Some(v) => {
            let o = object(v, "customer")?;
            known(o, "customer", &["traits"])?;
            let mut traits = BTreeMap::new();
            if let Some(t) = o.get("traits") {
                for (k, v) in object(t, "customer.traits")? {
                    let path = format!("customer.traits.{k}");
                    let values = match v {
                        Json::Array(a) if !a.is_empty() => a
                            .iter()
                            .enumerate()
                            .map(|(i, x)| literal(x, &format!("{path}[{i}]")))
                            .collect::<Result<Vec<_>, _>>()?,
                        Json::Array(_) => return Err(err(&path, "an empty list matches nobody")),
                        x => vec![literal(x, &path)?],
                    };
                    traits.insert(k.clone(), values);
                }
            }
            CustomerFilter { traits }
        }
    };
    let duration = |key: &str, default: Span| -> Result<Span, RuleError> {
        obj.get(key).map_or(Ok(default), |v| span(v, key))
    };
    let cooldown = duration("cooldown", Span::ZERO)?;
    let tolerance = duration("tolerance", Span::ZERO)?;
    let stale_after = duration("stale_after", DEFAULT_STALE_AFTER)?;
    let actions_json = array(required(obj, "", "actions")?, "actions")?;
    if actions_json.is_empty() {
        return Err(err(
            "actions",
            "a rule needs at least one action (webhook, task or emit)",
        ));
    }
    let actions = actions_json
        .iter()
        .enumerate()
        .map(|(i, a)| action(a, &format!("actions[{i}]")))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Rule {
        name,
        description,
        steps,
        unless,
        customer,
        cooldown,
        tolerance,
        stale_after,
        actions,
    })
}

fn object<'a>(v: &'a Json, path: &str) -> Result<&'a Map<String, Json>, RuleError> {
    v.as_object().ok_or_else(|| {
        err(
            path,
            format!("expected a mapping of fields, found {}", kind(v)),
        )
    })
}

fn array<'a>(v: &'a Json, path: &str) -> Result<&'a Vec<Json>, RuleError> {
    v.as_array()
        .ok_or_else(|| err(path, format!("expected a list, found {}", kind(v))))
}

fn string(v: &Json, path: &str) -> Result<String, RuleError> {
    v.as_str()
        .map(str::to_string)
        .ok_or_else(|| err(path, format!("expected text, found {}", kind(v))))
}

fn kind(v: &Json) -> &'static str {
    match v {
        Json::Null => "nothing",
        Json::Bool(_) => "a boolean",
        Json::Number(_) => "a number",
        Json::String(_) => "text",
        Json::Array(_) => "a list",
        Json::Object(_) => "a mapping",
    }
}

fn required<'a>(o: &'a Map<String, Json>, path: &str, key: &str) -> Result<&'a Json, RuleError> {
    o.get(key)
        .ok_or_else(|| err(&join(path, key), "missing required field"))
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn known(o: &Map<String, Json>, path: &str, fields: &[&str]) -> Result<(), RuleError> {
    for k in o.keys() {
        if !fields.contains(&k.as_str()) {
            return Err(err(
                &join(path, k),
                format!("unknown field; expected one of: {}", fields.join(", ")),
            ));
        }
    }
    Ok(())
}

fn span(v: &Json, path: &str) -> Result<Span, RuleError> {
    match v {
        Json::String(s) => Span::parse(s).map_err(|m| err(path, m)),
        Json::Number(n) if n.as_u64() == Some(0) => Ok(Span::ZERO),
        _ => Err(err(
            path,
            format!(
                "expected a duration such as 30s, 15m or 2h, found {}",
                kind(v)
            ),
        )),
    }
}

fn literal(v: &Json, path: &str) -> Result<Literal, RuleError> {
    match v {
        Json::String(s) => Ok(Literal::Str(s.clone())),
        Json::Bool(b) => Ok(Literal::Bool(*b)),
        Json::Number(n) => n
            .as_f64()
            .map(Literal::Num)
            .ok_or_else(|| err(path, "number out of range")),
        _ => Err(err(
            path,
            format!("expected text, a number or a boolean, found {}", kind(v)),
        )),
    }
}

/// A step written as a bare activity (`payment_failed`) or as a filter mapping.
fn filter<'a>(
    v: &'a Json,
    path: &str,
    extra: &[&str],
) -> Result<(Filter, BTreeMap<&'a str, &'a Json>), RuleError> {
    if let Json::String(a) = v {
        if a.trim().is_empty() {
            return Err(err(path, "empty activity"));
        }
        return Ok((
            Filter {
                activity: Some(a.clone()),
                ..Filter::default()
            },
            BTreeMap::new(),
        ));
    }
    let o = object(v, path)?;
    let mut fields = vec!["activity", "channel", "properties"];
    fields.extend_from_slice(extra);
    known(o, path, &fields)?;
    let activity = o
        .get("activity")
        .map(|a| string(a, &join(path, "activity")))
        .transpose()?;
    let channel = match o.get("channel") {
        None => None,
        Some(c) => {
            let text = string(c, &join(path, "channel"))?;
            let parsed = omnitrail_model::Channel::parse(&text)
                .map_err(|e| err(&join(path, "channel"), e.to_string()))?;
            Some(parsed.as_str().to_string())
        }
    };
    let mut properties = BTreeMap::new();
    if let Some(p) = o.get("properties") {
        let ppath = join(path, "properties");
        for (k, v) in object(p, &ppath)? {
            properties.insert(k.clone(), literal(v, &join(&ppath, k))?);
        }
    }
    if activity.is_none() && channel.is_none() && properties.is_empty() {
        return Err(err(
            path,
            "a filter needs an activity, a channel or properties (it would match every event)",
        ));
    }
    let extras = o
        .iter()
        .filter(|(k, _)| extra.contains(&k.as_str()))
        .map(|(k, v)| (k.as_str(), v))
        .collect();
    Ok((
        Filter {
            activity,
            channel,
            properties,
        },
        extras,
    ))
}

/// A step named by its 1-based number or its activity (which must be unique).
fn step_ref(v: &Json, path: &str, steps: &[Step]) -> Result<usize, RuleError> {
    match v {
        Json::Number(n) => match n.as_u64() {
            Some(i) if i >= 1 && (i as usize) <= steps.len() => Ok(i as usize),
            _ => Err(err(
                path,
                format!(
                    "step {n} does not exist; steps are numbered 1 to {}",
                    steps.len()
                ),
            )),
        },
        Json::String(a) => {
            let found: Vec<usize> = steps
                .iter()
                .enumerate()
                .filter(|(_, s)| s.filter.activity.as_deref() == Some(a))
                .map(|(i, _)| i + 1)
                .collect();
            match found.as_slice() {
                [i] => Ok(*i),
                [] => Err(err(path, format!("no step has the activity '{a}'"))),
                _ => Err(err(
                    path,
                    format!("several steps have the activity '{a}'; give the step number"),
                )),
            }
        }
        _ => Err(err(
            path,
            format!("expected a step number or activity, found {}", kind(v)),
        )),
    }
}

fn action(v: &Json, path: &str) -> Result<Action, RuleError> {
    let o = object(v, path)?;
    if o.len() != 1 {
        return Err(err(
            path,
            "an action is a mapping with exactly one of: webhook, task, emit",
        ));
    }
    let (k, body) = o.iter().next().expect("one entry");
    let path = join(path, k);
    match k.as_str() {
        "webhook" => {
            // `webhook: https://…` is short for `webhook: {url: https://…}`.
            if let Json::String(url) = body {
                check_url(url, &path)?;
                return Ok(Action::Webhook {
                    url: Some(url.clone()),
                    endpoint: None,
                    secret: None,
                });
            }
            let b = object(body, &path)?;
            known(b, &path, &["url", "endpoint", "secret"])?;
            let url = b
                .get("url")
                .map(|u| string(u, &join(&path, "url")))
                .transpose()?;
            let endpoint = b
                .get("endpoint")
                .map(|u| string(u, &join(&path, "endpoint")))
                .transpose()?;
            let secret = b
                .get("secret")
                .map(|u| string(u, &join(&path, "secret")))
                .transpose()?;
            match (&url, &endpoint) {
                (Some(u), None) => check_url(u, &join(&path, "url"))?,
                (None, Some(e)) if !e.trim().is_empty() => {}
                (None, Some(_)) => return Err(err(&join(&path, "endpoint"), "empty endpoint name")),
                _ => {
                    return Err(err(
                        &path,
                        "give exactly one of `url` or `endpoint` (a [triggers.webhooks.NAME] table of omnitrail.toml)",
                    ))
                }
            }
            if let Some(s) = &secret {
                crate::sign::Secret::parse(s)
                    .map_err(|e| err(&join(&path, "secret"), e.to_string()))?;
            }
            Ok(Action::Webhook {
                url,
                endpoint,
                secret,
            })
        }
        "task" => {
            let b = match body {
                Json::Null => Map::new(),
                other => object(other, &path)?.clone(),
            };
            known(&b, &path, &["queue", "title"])?;
            let queue = b
                .get("queue")
                .map(|q| string(q, &join(&path, "queue")))
                .transpose()?
                .unwrap_or_else(|| "callback".to_string());
            let title = b
                .get("title")
                .map(|q| string(q, &join(&path, "title")))
                .transpose()?
                .unwrap_or_default();
            if queue.trim().is_empty() {
                return Err(err(&join(&path, "queue"), "empty queue name"));
            }
            Ok(Action::Task { queue, title })
        }
        "emit" => {
            let b = object(body, &path)?;
            known(b, &path, &["activity", "channel", "properties"])?;
            let activity = string(required(b, &path, "activity")?, &join(&path, "activity"))?;
            if activity.trim().is_empty() {
                return Err(err(&join(&path, "activity"), "empty activity"));
            }
            let ctext = string(required(b, &path, "channel")?, &join(&path, "channel"))?;
            let channel = omnitrail_model::Channel::parse(&ctext)
                .map_err(|e| err(&join(&path, "channel"), e.to_string()))?
                .as_str()
                .to_string();
            let mut properties = BTreeMap::new();
            if let Some(p) = b.get("properties") {
                let ppath = join(&path, "properties");
                for (k, v) in object(p, &ppath)? {
                    properties.insert(k.clone(), literal(v, &join(&ppath, k))?);
                }
            }
            Ok(Action::Emit {
                activity,
                channel,
                properties,
            })
        }
        other => Err(err(
            &path,
            format!("unknown action '{other}'; expected webhook, task or emit"),
        )),
    }
}

fn check_url(url: &str, path: &str) -> Result<(), RuleError> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"));
    match rest {
        Some(r) if !r.is_empty() && !r.starts_with('/') && !url.contains(char::is_whitespace) => {
            Ok(())
        }
        _ => Err(err(
            path,
            format!("'{url}' is not an http:// or https:// URL"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEED: &str = "
name: payment-failed-then-complaint
steps:
  - activity: payment_failed
    channel: web
  - activity: complaint
    channel: social
    within: 2h
unless:
  - activity: callback_completed
    after: payment_failed
    within: 1h
cooldown: 1d
actions:
  - webhook: {url: 'http://127.0.0.1:9/hook', secret: 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw'}
  - task: {queue: callback, title: Call back about the failed payment}
  - emit: {activity: callback_scheduled, channel: phone}
";

    #[test]
    fn the_seed_rule_parses_and_round_trips_through_json() {
        let rule = parse_rule(SEED).unwrap();
        assert_eq!(rule.steps.len(), 2);
        assert_eq!(rule.steps[1].within, Some(Span::from_secs(7200)));
        assert_eq!(rule.unless[0].after, 1);
        assert_eq!(rule.cooldown, Span::from_secs(86_400));
        assert_eq!(rule.stale_after, DEFAULT_STALE_AFTER);
        let json = serde_json::to_value(&rule).unwrap();
        assert_eq!(rule_from_json(&json).unwrap(), rule);
        assert_eq!(rule.span(), Span::from_secs(3 * 3600));
    }

    #[test]
    fn errors_name_the_field_or_line() {
        let cases = [
            (
                "name: x\nsteps: [a, {activity: b}]\nactions: [{task: {}}]",
                "steps[1].within: every step after the first needs `within`",
            ),
            (
                "name: x\nsteps: [a]\nactions: []",
                "actions: a rule needs at least one action",
            ),
            (
                "name: x\nsteps: [a, {activity: b, within: 2 hours}]\nactions: [{task: {}}]",
                "steps[1].within: '2 hours'",
            ),
            (
                "name: x\nsteps: [a]\nactions: [{page: {}}]",
                "actions[0].page: unknown action 'page'",
            ),
            (
                "name: x\nsteps: [a]\nunless: [{activity: c, after: 3}]\nactions: [{task: {}}]",
                "unless[0].after: step 3 does not exist",
            ),
            (
                "name: x\nsteps: [{activty: a}]\nactions: [{task: {}}]",
                "steps[0].activty: unknown field",
            ),
            (
                "name: 'a b'\nsteps: [a]\nactions: [{task: {}}]",
                "name: 'a b' is not a rule name",
            ),
            (
                "name: x\nsteps: [a]\nactions: [{webhook: 'ftp://x'}]",
                "actions[0].webhook: 'ftp://x' is not an http",
            ),
            (
                "name: x\nsteps: [a]\nactions: [{webhook: {url: 'http://h', secret: 'nope'}}]",
                "actions[0].webhook.secret: ",
            ),
            (
                "name: x\nsteps:\n  - a\n - b\n",
                "line 4: not valid YAML or JSON",
            ),
            (
                "steps: [a]\nactions: [{task: {}}]",
                "name: missing required field",
            ),
        ];
        for (text, want) in cases {
            let e = parse_rule(text).unwrap_err().to_string();
            assert!(e.starts_with(want), "{text:?}: got {e:?}, want {want:?}");
        }
    }

    #[test]
    fn json_rules_parse_like_yaml() {
        let json = r#"{"name": "one", "steps": ["login_failed"], "actions": [{"task": {"queue": "q", "title": "t"}}]}"#;
        let rule = parse_rule(json).unwrap();
        assert_eq!(
            rule.steps[0].filter.activity.as_deref(),
            Some("login_failed")
        );
        assert_eq!(
            rule.actions,
            vec![Action::Task {
                queue: "q".into(),
                title: "t".into()
            }]
        );
    }

    #[test]
    fn spans_parse_and_print() {
        for (text, micros) in [
            ("30s", 30_000_000),
            ("1h30m", 5_400_000_000),
            ("500ms", 500_000),
            ("1d", 86_400_000_000),
            ("0", 0),
        ] {
            let s = Span::parse(text).unwrap();
            assert_eq!(s.0, micros, "{text}");
            assert_eq!(Span::parse(&s.to_string()).unwrap(), s);
        }
        for bad in ["", "h", "5", "5 years", "99999999999d"] {
            assert!(Span::parse(bad).is_err(), "{bad}");
        }
    }
}
