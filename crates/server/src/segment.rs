//! The Segment spec mapped onto Omnitrail's event model (DESIGN.md §3). Every rule here is
//! listed in docs/http-api.md ("Segment mapping"); keep the two in step.
//!
//! A message becomes a canonical event in JSON, which [`Event::from_json`] then reads, so a
//! mapped event obeys exactly the rules of a native one (flattened nested objects, typed
//! well-known properties, normalized identifiers).

use omnitrail_model::{Channel, Event, Identifier, IdentifierKind, Timestamp, ValidationError};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// A Segment call type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Call {
    Track,
    Identify,
    Page,
    Screen,
    Group,
    Alias,
}

impl Call {
    pub fn parse(text: &str) -> Option<Call> {
        Some(match text {
            "track" => Call::Track,
            "identify" => Call::Identify,
            "page" => Call::Page,
            "screen" => Call::Screen,
            "group" => Call::Group,
            "alias" => Call::Alias,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Call::Track => "track",
            Call::Identify => "identify",
            Call::Page => "page",
            Call::Screen => "screen",
            Call::Group => "group",
            Call::Alias => "alias",
        }
    }
}

/// What one message becomes.
#[derive(Clone, Debug, PartialEq)]
pub enum Mapped {
    Event(Event),
    /// `alias(previousId, userId)`: an identity link, no event.
    Link {
        identifiers: Vec<Identifier>,
        at: Timestamp,
    },
    /// `integrations` turn Omnitrail off for this message: not stored, counted as skipped.
    Skipped,
}

/// Longest `messageId` used as is in an event id; longer ones are hashed.
const MAX_MESSAGE_ID: usize = 200;

/// Copies a batch's top-level `context`, `integrations` and `sentAt` into one of its
/// messages; what the message sets itself wins, key by key.
pub fn merge_batch_defaults(
    item: &mut Map<String, Value>,
    context: Option<&Map<String, Value>>,
    integrations: Option<&Map<String, Value>>,
    sent_at: Option<&Value>,
) {
    for (name, defaults) in [("context", context), ("integrations", integrations)] {
        let Some(defaults) = defaults.filter(|d| !d.is_empty()) else {
            continue;
        };
        match item.get_mut(name) {
            Some(Value::Object(own)) => {
                for (k, v) in defaults {
                    own.entry(k.clone()).or_insert_with(|| v.clone());
                }
            }
            Some(Value::Null) | None => {
                item.insert(name.to_string(), Value::Object(defaults.clone()));
            }
            // A non-object is the message's own mistake; mapping reports it.
            Some(_) => {}
        }
    }
    if let Some(sent_at) = sent_at {
        if !item.contains_key("sentAt") {
            item.insert("sentAt".to_string(), sent_at.clone());
        }
    }
}

/// Maps one message. `call` is the endpoint's (`/v1/track`…) or, for batches, `None`: the
/// message's own `type` decides. `received_at` is when the server got the request.
pub fn map_message(
    msg: &Map<String, Value>,
    call: Option<Call>,
    received_at: Timestamp,
) -> Result<Mapped, ValidationError> {
    let call = match call {
        Some(c) => c,
        None => match msg.get("type") {
            Some(Value::String(t)) => Call::parse(t).ok_or_else(|| {
                ValidationError::new(
                    "type",
                    format!("'{t}' is not a call type (expected track, identify, page, screen, group or alias)"),
                )
            })?,
            _ => {
                return Err(ValidationError::new(
                    "type",
                    "missing: expected track, identify, page, screen, group or alias",
                ))
            }
        },
    };
    if !for_omnitrail(msg.get("integrations")) {
        return Ok(Mapped::Skipped);
    }
    let context = object(msg, "context")?;
    let at = event_time(msg, received_at)?;
    let user_id = id_text(msg, "userId")?;
    let anonymous_id = id_text(msg, "anonymousId")?;

    if call == Call::Alias {
        let previous = id_text(msg, "previousId")?.ok_or_else(|| {
            ValidationError::new(
                "previousId",
                "missing: an alias needs previousId and userId",
            )
        })?;
        let user = user_id.ok_or_else(|| {
            ValidationError::new("userId", "missing: an alias needs previousId and userId")
        })?;
        // previousId is what client SDKs alias from: the anonymous id (or an email).
        let previous_kind = if Identifier::new(IdentifierKind::Email, &previous).is_ok() {
            IdentifierKind::Email
        } else {
            IdentifierKind::AnonymousId
        };
        let identifiers = vec![
            identifier(previous_kind, &previous, "previousId")?,
            identifier(IdentifierKind::UserId, &user, "userId")?,
        ];
        return Ok(Mapped::Link { identifiers, at });
    }

    if user_id.is_none() && anonymous_id.is_none() {
        return Err(ValidationError::new(
            "userId",
            "missing: every call needs userId or anonymousId",
        ));
    }

    // Traits: the user's from context.traits, overridden by an identify's own traits; a
    // group's own traits describe the group.
    let mut traits = context
        .and_then(|c| c.get("traits"))
        .map(|t| expect_object(t, "context.traits"))
        .transpose()?
        .cloned()
        .unwrap_or_default();
    match call {
        Call::Identify => {
            if let Some(own) = object(msg, "traits")? {
                traits.extend(own.iter().map(|(k, v)| (k.clone(), v.clone())));
            }
        }
        Call::Group => {
            match msg.get("groupId") {
                Some(Value::String(g)) if !g.trim().is_empty() => {
                    traits.insert("group_id".into(), Value::String(g.clone()));
                }
                Some(Value::Number(n)) => {
                    traits.insert("group_id".into(), Value::String(n.to_string()));
                }
                _ => {
                    return Err(ValidationError::new(
                        "groupId",
                        "missing: a group call needs groupId",
                    ))
                }
            }
            if let Some(own) = object(msg, "traits")? {
                for (k, v) in own {
                    traits.insert(format!("group.{k}"), v.clone());
                }
            }
        }
        _ => {}
    }

    let mut ids = Map::new();
    if let Some(u) = &user_id {
        identifier(IdentifierKind::UserId, u, "userId")?;
        ids.insert("user_id".into(), Value::String(u.clone()));
    }
    if let Some(a) = &anonymous_id {
        identifier(IdentifierKind::AnonymousId, a, "anonymousId")?;
        ids.insert("anonymous_id".into(), Value::String(a.clone()));
    }
    // Valid emails and phones among the user's traits identify them too; an invalid one
    // stays a trait only.
    for (kind, name) in [
        (IdentifierKind::Email, "email"),
        (IdentifierKind::Phone, "phone"),
    ] {
        if call == Call::Group {
            break;
        }
        if let Some(Value::String(v)) = traits.get(name) {
            if Identifier::new(kind, v).is_ok() {
                ids.insert(name.into(), Value::String(v.clone()));
            }
        }
    }
    if let Some(device_id) = context
        .and_then(|c| c.get("device"))
        .and_then(|d| d.get("id"))
        .and_then(Value::as_str)
    {
        if Identifier::new(IdentifierKind::DeviceId, device_id).is_ok() {
            ids.insert("device_id".into(), Value::String(device_id.to_string()));
        }
    }

    let mut properties = context.map(context_properties).unwrap_or_default();
    if matches!(call, Call::Page | Call::Screen) {
        if let Some(Value::String(c)) = msg.get("category") {
            properties.insert("category".into(), Value::String(c.clone()));
        }
    }
    if matches!(call, Call::Track | Call::Page | Call::Screen) {
        if let Some(own) = object(msg, "properties")? {
            properties.extend(own.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
    }
    let channel = infer_channel(msg, context, properties.remove("channel"))?;

    let name = |key: &str| match msg.get(key) {
        Some(Value::String(s)) if !s.trim().is_empty() => Some(s.clone()),
        _ => None,
    };
    let activity = match call {
        Call::Track => name("event").ok_or_else(|| {
            ValidationError::new("event", "missing: a track call needs an event name")
        })?,
        Call::Page => name("name").unwrap_or_else(|| "page_viewed".into()),
        Call::Screen => name("name").unwrap_or_else(|| "screen_viewed".into()),
        Call::Identify => "identify".into(),
        Call::Group => "group".into(),
        Call::Alias => unreachable!("aliases returned above"),
    };

    let mut event = Map::new();
    if let Some(id) = message_event_id(msg)? {
        event.insert("event_id".into(), Value::String(id));
    }
    event.insert("timestamp".into(), Value::String(at.to_rfc3339()));
    event.insert("identifiers".into(), Value::Object(ids));
    event.insert(
        "channel".into(),
        Value::String(channel.as_str().to_string()),
    );
    event.insert("activity".into(), Value::String(activity));
    if !properties.is_empty() {
        event.insert("properties".into(), Value::Object(properties));
    }
    if !traits.is_empty() {
        event.insert("traits".into(), Value::Object(traits));
    }
    Ok(Mapped::Event(Event::from_json(&Value::Object(event))?))
}

/// `integrations: {"Omnitrail": false}` or `{"All": false}` without `"Omnitrail": true`
/// send a message elsewhere only.
fn for_omnitrail(integrations: Option<&Value>) -> bool {
    let Some(Value::Object(map)) = integrations else {
        return true;
    };
    let ours = map
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("omnitrail"))
        .map(|(_, v)| v);
    match ours {
        Some(Value::Bool(b)) => *b,
        // A settings object means "on, with options".
        Some(_) => true,
        None => !matches!(map.get("All"), Some(Value::Bool(false))),
    }
}

fn object<'a>(
    msg: &'a Map<String, Value>,
    key: &str,
) -> Result<Option<&'a Map<String, Value>>, ValidationError> {
    match msg.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => expect_object(v, key).map(Some),
    }
}

fn expect_object<'a>(v: &'a Value, field: &str) -> Result<&'a Map<String, Value>, ValidationError> {
    v.as_object()
        .ok_or_else(|| ValidationError::new(field, "expected an object"))
}

/// A `userId`-like field as text; numbers are accepted, empty strings and null are absent.
fn id_text(msg: &Map<String, Value>, key: &str) -> Result<Option<String>, ValidationError> {
    match msg.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(_) => Err(ValidationError::new(key, "expected a string")),
    }
}

fn identifier(
    kind: IdentifierKind,
    value: &str,
    field: &str,
) -> Result<Identifier, ValidationError> {
    Identifier::new(kind, value).map_err(|e| ValidationError::new(field, e.to_string()))
}

fn time_field(msg: &Map<String, Value>, key: &str) -> Result<Option<Timestamp>, ValidationError> {
    match msg.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Timestamp::parse(s)
            .map(Some)
            .map_err(|e| ValidationError::new(key, e.to_string())),
        Some(Value::Number(n)) => Timestamp::from_epoch_number(n.as_f64().unwrap_or(f64::NAN))
            .map(Some)
            .map_err(|e| ValidationError::new(key, e.to_string())),
        Some(_) => Err(ValidationError::new(
            key,
            "expected an ISO 8601 string or epoch seconds/milliseconds",
        )),
    }
}

/// When the event happened: the client's `timestamp` (or `originalTimestamp`) corrected for
/// the client's clock skew by `receivedAt − sentAt` when the message says when it was sent;
/// the receive time when it says nothing.
fn event_time(
    msg: &Map<String, Value>,
    received_at: Timestamp,
) -> Result<Timestamp, ValidationError> {
    let client = match time_field(msg, "timestamp")? {
        Some(t) => Some(t),
        None => time_field(msg, "originalTimestamp")?,
    };
    let Some(client) = client else {
        return Ok(received_at);
    };
    Ok(match time_field(msg, "sentAt")? {
        Some(sent) => client.plus_micros(received_at.as_micros().saturating_sub(sent.as_micros())),
        None => client,
    })
}

/// `seg-<messageId>`, so that retries of a message de-duplicate and native event ids never
/// collide with Segment ones; hashed when too long for an event id.
fn message_event_id(msg: &Map<String, Value>) -> Result<Option<String>, ValidationError> {
    let Some(id) = id_text(msg, "messageId")? else {
        return Ok(None);
    };
    if id.len() <= MAX_MESSAGE_ID {
        return Ok(Some(format!("seg-{id}")));
    }
    let digest = Sha256::digest(id.as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    Ok(Some(format!("seg-sha256-{hex}")))
}

/// Properties taken from a message's `context` (the message's own properties win).
fn context_properties(context: &Map<String, Value>) -> Map<String, Value> {
    let mut out = Map::new();
    let mut put = |name: &str, v: Option<&Value>| {
        if let Some(v) = v.filter(|v| v.is_string() || v.is_number() || v.is_boolean()) {
            out.insert(name.to_string(), v.clone());
        }
    };
    let sub = |key: &str, field: &str| context.get(key).and_then(|o| o.get(field));
    put("os", sub("os", "name"));
    put("os.version", sub("os", "version"));
    put("device", sub("device", "type"));
    put("device.model", sub("device", "model"));
    put("device.manufacturer", sub("device", "manufacturer"));
    for field in ["name", "version", "build"] {
        put(&format!("app.{field}"), sub("app", field));
    }
    for field in ["url", "path", "title", "referrer", "search"] {
        put(&format!("page.{field}"), sub("page", field));
    }
    for field in ["name", "source", "medium", "term", "content"] {
        put(&format!("campaign.{field}"), sub("campaign", field));
    }
    put("ip", context.get("ip"));
    put("locale", context.get("locale"));
    put("timezone", context.get("timezone"));
    if let Some(Value::String(ua)) = context.get("userAgent") {
        out.insert("user_agent".into(), Value::String(ua.clone()));
        if let Some(b) = browser_of(ua) {
            out.insert("browser".into(), Value::String(b.into()));
        }
        if !out.contains_key("os") {
            if let Some(os) = os_of(ua) {
                out.insert("os".into(), Value::String(os.into()));
            }
        }
    }
    out
}

fn browser_of(ua: &str) -> Option<&'static str> {
    let has = |s: &str| ua.contains(s);
    Some(if has("Edg/") || has("EdgA/") || has("EdgiOS/") {
        "Edge"
    } else if has("OPR/") || has("Opera") {
        "Opera"
    } else if has("SamsungBrowser/") {
        "Samsung Internet"
    } else if has("Firefox/") || has("FxiOS/") {
        "Firefox"
    } else if has("Chrome/") || has("CriOS/") {
        "Chrome"
    } else if has("Safari/") {
        "Safari"
    } else {
        return None;
    })
}

fn os_of(ua: &str) -> Option<&'static str> {
    let has = |s: &str| ua.contains(s);
    Some(if has("iPhone") || has("iPad") || has("iPod") {
        "iOS"
    } else if has("Android") {
        "Android"
    } else if has("Windows") {
        "Windows"
    } else if has("CrOS") {
        "ChromeOS"
    } else if has("Mac OS X") || has("Macintosh") {
        "macOS"
    } else if has("Linux") {
        "Linux"
    } else {
        return None;
    })
}

/// The channel: a `channel` property, else `context.channel` or a top-level `channel`
/// (RudderStack), else the sending library (browser → web, mobile SDKs → mobile_app), else
/// web when a user agent came along, else `other` (server-side libraries: the backend
/// reports what happened, not where the customer was).
fn infer_channel(
    msg: &Map<String, Value>,
    context: Option<&Map<String, Value>>,
    property: Option<Value>,
) -> Result<Channel, ValidationError> {
    if let Some(p) = property {
        let Value::String(text) = &p else {
            return Err(ValidationError::new(
                "properties.channel",
                "expected a string",
            ));
        };
        return Channel::parse(text)
            .map_err(|e| ValidationError::new("properties.channel", e.to_string()));
    }
    let declared = [
        ("context.channel", context.and_then(|c| c.get("channel"))),
        ("channel", msg.get("channel")),
    ];
    for (field, value) in declared {
        if let Some(Value::String(text)) = value {
            return source_channel(text).map_err(|reason| ValidationError::new(field, reason));
        }
    }
    if let Some(Value::String(name)) = context
        .and_then(|c| c.get("library"))
        .and_then(|l| l.get("name"))
    {
        return Ok(library_channel(name));
    }
    if context.is_some_and(|c| c.contains_key("userAgent")) {
        return Ok(Channel::Web);
    }
    Ok(Channel::Other)
}

/// A declared source channel: Segment's and RudderStack's names first, then ours.
fn source_channel(text: &str) -> Result<Channel, String> {
    match text.trim().to_ascii_lowercase().as_str() {
        "browser" | "client" | "web" => Ok(Channel::Web),
        "mobile" | "ios" | "android" => Ok(Channel::MobileApp),
        "server" | "backend" | "sources" | "cloud" => Ok(Channel::Other),
        _ => Channel::parse(text).map_err(|e| e.to_string()),
    }
}

fn library_channel(name: &str) -> Channel {
    let n = name.to_ascii_lowercase();
    const WEB: [&str; 5] = [
        "analytics.js",
        "analytics-next",
        "analytics-browser",
        "javascript",
        "rudder-analytics.js",
    ];
    const MOBILE: [&str; 11] = [
        "ios",
        "android",
        "react-native",
        "react_native",
        "flutter",
        "swift",
        "kotlin",
        "xamarin",
        "unity",
        "cordova",
        "capacitor",
    ];
    if WEB.iter().any(|w| n.contains(w)) {
        Channel::Web
    } else if MOBILE.iter().any(|m| n.contains(m)) {
        Channel::MobileApp
    } else {
        Channel::Other
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use omnitrail_model::Value as V;
    use serde_json::json;

    fn at(s: &str) -> Timestamp {
        Timestamp::parse(s).unwrap()
    }

    fn map(msg: Value, call: Option<Call>) -> Result<Mapped, ValidationError> {
        map_message(msg.as_object().unwrap(), call, at("2026-03-01T10:00:10Z"))
    }

    fn event(msg: Value, call: Option<Call>) -> Event {
        match map(msg, call) {
            Ok(Mapped::Event(e)) => e,
            other => panic!("expected an event, got {other:?}"),
        }
    }

    #[test]
    fn track_maps_ids_properties_context_and_skew() {
        let e = event(
            json!({
                "type": "track", "event": "Payment Failed", "messageId": "m-1",
                "userId": "u-1", "anonymousId": "a-1",
                "timestamp": "2026-03-01T10:00:00Z", "sentAt": "2026-03-01T10:00:05Z",
                "properties": {"value": 12.5, "plan": {"name": "premium"}},
                "context": {
                    "traits": {"email": "Ana@Example.com", "phone": "not a phone"},
                    "os": {"name": "iOS", "version": "17.2"},
                    "device": {"id": "dev-9", "type": "ios", "model": "iPhone15,2"},
                    "library": {"name": "analytics-ios", "version": "4.1"},
                    "ip": "203.0.113.9"
                }
            }),
            None,
        );
        assert_eq!(e.event_id.as_deref(), Some("seg-m-1"));
        assert_eq!(e.activity, "Payment Failed");
        assert_eq!(e.channel, Channel::MobileApp);
        // The client's clock is 5 s behind the server's: received 10:00:10, sent 10:00:05.
        assert_eq!(e.timestamp, at("2026-03-01T10:00:05Z"));
        let ids: std::collections::BTreeSet<String> =
            e.identifiers.iter().map(|i| i.to_string()).collect();
        let expected: std::collections::BTreeSet<String> = [
            "user_id:u-1",
            "anonymous_id:a-1",
            "email:ana@example.com",
            "device_id:dev-9",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(ids, expected);
        assert_eq!(e.properties["os"], V::Str("iOS".into()));
        assert_eq!(e.properties["os.version"], V::Str("17.2".into()));
        assert_eq!(e.properties["device"], V::Str("ios".into()));
        assert_eq!(e.properties["plan.name"], V::Str("premium".into()));
        assert_eq!(e.properties["ip"], V::Str("203.0.113.9".into()));
        assert_eq!(e.traits["phone"], V::Str("not a phone".into()));
    }

    #[test]
    fn channel_rules() {
        let ch = |ctx: Value, props: Value| {
            event(
                json!({"event": "x", "userId": "u", "context": ctx, "properties": props}),
                Some(Call::Track),
            )
            .channel
        };
        assert_eq!(
            ch(json!({"library": {"name": "analytics.js"}}), json!({})),
            Channel::Web
        );
        assert_eq!(
            ch(
                json!({"library": {"name": "@segment/analytics-react-native"}}),
                json!({})
            ),
            Channel::MobileApp
        );
        assert_eq!(
            ch(json!({"library": {"name": "analytics-python"}}), json!({})),
            Channel::Other
        );
        assert_eq!(
            ch(json!({"userAgent": "Mozilla/5.0"}), json!({})),
            Channel::Web
        );
        assert_eq!(ch(json!({"channel": "server"}), json!({})), Channel::Other);
        assert_eq!(ch(json!({"channel": "browser"}), json!({})), Channel::Web);
        assert_eq!(
            ch(
                json!({"library": {"name": "analytics-python"}}),
                json!({"channel": "phone"})
            ),
            Channel::Phone
        );
        let e = event(
            json!({"event": "x", "userId": "u", "properties": {"channel": "ivr"}}),
            Some(Call::Track),
        );
        assert!(!e.properties.contains_key("channel"));
        let err = map(
            json!({"event": "x", "userId": "u", "properties": {"channel": 3}}),
            Some(Call::Track),
        )
        .unwrap_err();
        assert_eq!(err.field, "properties.channel");
    }

    #[test]
    fn user_agent_gives_browser_and_os() {
        let e = event(
            json!({"name": "Pricing", "anonymousId": "a", "context": {"userAgent":
                "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1",
                "page": {"url": "https://x.test/pricing", "path": "/pricing"}}}),
            Some(Call::Page),
        );
        assert_eq!(e.activity, "Pricing");
        assert_eq!(e.channel, Channel::Web);
        assert_eq!(e.properties["browser"], V::Str("Safari".into()));
        assert_eq!(e.properties["os"], V::Str("iOS".into()));
        assert_eq!(e.properties["page.path"], V::Str("/pricing".into()));
        let e = event(json!({"anonymousId": "a"}), Some(Call::Screen));
        assert_eq!(e.activity, "screen_viewed");
    }

    #[test]
    fn identify_group_and_alias() {
        let e = event(
            json!({"type": "identify", "userId": "u-1", "anonymousId": "a-1",
                   "traits": {"email": "ana@example.com", "phone": "+1 555 123 4567", "plan": "premium"},
                   "context": {"traits": {"plan": "basic", "region": "EU"}}}),
            None,
        );
        assert_eq!(e.activity, "identify");
        assert_eq!(e.identifiers.len(), 4);
        assert_eq!(e.traits["plan"], V::Str("premium".into()));
        assert_eq!(e.traits["region"], V::Str("EU".into()));

        let e = event(
            json!({"type": "group", "userId": "u-1", "groupId": 42, "traits": {"name": "Acme", "email": "x@acme.test"}}),
            None,
        );
        assert_eq!(e.activity, "group");
        assert_eq!(e.traits["group_id"], V::Str("42".into()));
        assert_eq!(e.traits["group.name"], V::Str("Acme".into()));
        assert_eq!(e.identifiers.len(), 1, "a group's email is not the user's");

        match map(
            json!({"type": "alias", "previousId": "a-9", "userId": "u-1"}),
            None,
        )
        .unwrap()
        {
            Mapped::Link { identifiers, at: t } => {
                assert_eq!(identifiers[0].to_string(), "anonymous_id:a-9");
                assert_eq!(identifiers[1].to_string(), "user_id:u-1");
                assert_eq!(t, at("2026-03-01T10:00:10Z"));
            }
            other => panic!("{other:?}"),
        }
        let err = map(json!({"type": "alias", "userId": "u-1"}), None).unwrap_err();
        assert_eq!(err.field, "previousId");
    }

    #[test]
    fn errors_name_their_field() {
        let cases = [
            (json!({"type": "track", "userId": "u"}), "event"),
            (json!({"type": "track", "event": "x"}), "userId"),
            (json!({"type": "fly", "userId": "u"}), "type"),
            (json!({"event": "x", "userId": "u"}), "type"),
            (
                json!({"type": "track", "event": "x", "userId": "u", "timestamp": "soon"}),
                "timestamp",
            ),
            (
                json!({"type": "track", "event": "x", "userId": ["u"]}),
                "userId",
            ),
            (
                json!({"type": "track", "event": "x", "userId": "u", "properties": [1]}),
                "properties",
            ),
            (
                json!({"type": "track", "event": "x", "userId": "u", "properties": {"sentiment": 7}}),
                "properties.sentiment",
            ),
            (json!({"type": "group", "userId": "u"}), "groupId"),
        ];
        for (msg, field) in cases {
            let err = map(msg.clone(), None).unwrap_err();
            assert_eq!(err.field, field, "{msg}: {err}");
        }
    }

    #[test]
    fn integrations_and_batch_defaults() {
        let skip = map(
            json!({"type": "track", "event": "x", "userId": "u", "integrations": {"All": false}}),
            None,
        );
        assert_eq!(skip.unwrap(), Mapped::Skipped);
        let keep = map(
            json!({"type": "track", "event": "x", "userId": "u", "integrations": {"All": false, "Omnitrail": true}}),
            None,
        );
        assert!(matches!(keep.unwrap(), Mapped::Event(_)));

        let mut item =
            json!({"type": "track", "event": "x", "userId": "u", "context": {"ip": "1.2.3.4"}})
                .as_object()
                .unwrap()
                .clone();
        let ctx = json!({"ip": "9.9.9.9", "library": {"name": "analytics.js"}});
        merge_batch_defaults(
            &mut item,
            ctx.as_object(),
            json!({"Omnitrail": false}).as_object(),
            Some(&json!("2026-03-01T10:00:00Z")),
        );
        assert_eq!(item["context"]["ip"], "1.2.3.4");
        assert_eq!(item["context"]["library"]["name"], "analytics.js");
        assert_eq!(item["sentAt"], "2026-03-01T10:00:00Z");
        assert_eq!(
            map_message(&item, None, at("2026-03-01T10:00:10Z")).unwrap(),
            Mapped::Skipped
        );
    }

    #[test]
    fn long_message_ids_are_hashed() {
        let long = "m".repeat(300);
        let e = event(
            json!({"event": "x", "userId": "u", "messageId": long}),
            Some(Call::Track),
        );
        let id = e.event_id.unwrap();
        assert!(id.starts_with("seg-sha256-") && id.len() == 11 + 64, "{id}");
    }
}
