//! The column → role plan shared by the tabular readers (CSV and Parquet), and the
//! conversions of single values (identifiers, timestamps, properties, traits) that XES uses too.
//!
//! A plan is computed once from the header and then applied to every row, so the per-row work is
//! a walk over a few precomputed column indexes, never a string comparison on column names.

use super::ImportError;
use omnitrail_model::value::{well_known_type, WellKnownType};
use omnitrail_model::{
    check_property, property_from_text, Channel, Event, Identifier, IdentifierKind, Properties,
    Timestamp, Value,
};
use std::borrow::Cow;

/// How columns (or XES attributes) become parts of an event. Everything left unset is
/// auto-detected from the header; the fields mirror the `omnitrail import` flags.
#[derive(Clone, Debug, Default)]
pub struct ColumnMapping {
    /// The column whose value identifies the customer.
    pub customer: Option<String>,
    /// The identifier kind of the customer column; `user_id` when unset.
    pub customer_kind: Option<IdentifierKind>,
    pub activity: Option<String>,
    /// One activity for every row, for files that have no activity column.
    pub activity_value: Option<String>,
    pub timestamp: Option<String>,
    pub channel: Option<String>,
    /// One channel for every row (and for rows whose channel cell is empty).
    pub channel_value: Option<Channel>,
    pub event_id: Option<String>,
    /// Extra identifier columns: (kind, column).
    pub identifiers: Vec<(IdentifierKind, String)>,
    /// Explicit properties: (property name, column).
    pub properties: Vec<(String, String)>,
    /// Columns read as customer traits.
    pub traits: Vec<String>,
    /// Columns not imported at all.
    pub ignore: Vec<String>,
}

/// Header names tried, in order, when a role is not mapped explicitly.
pub(crate) const CUSTOMER_NAMES: &[&str] = &[
    "case:concept:name",
    "case_id",
    "case",
    "caseid",
    "case id",
    "customer_id",
    "customerid",
    "customer",
    "user_id",
    "userid",
];
pub(crate) const ACTIVITY_NAMES: &[&str] = &[
    "concept:name",
    "activity",
    "event",
    "event_name",
    "action",
    "activity_name",
];
/// `start_timestamp` is last: interval logs also carry the completion time, which is the one
/// process-mining tools order by.
pub(crate) const TIMESTAMP_NAMES: &[&str] = &[
    "time:timestamp",
    "timestamp",
    "time",
    "datetime",
    "date",
    "event_time",
    "created_at",
    "start_timestamp",
];
pub(crate) const CHANNEL_NAMES: &[&str] = &["channel", "case:channel"];
pub(crate) const EVENT_ID_NAMES: &[&str] = &["event_id", "eventid", "message_id", "messageid"];

/// Columns (and XES attributes) that are identifiers by their name alone.
pub(crate) fn identifier_kind_for_name(name: &str) -> Option<IdentifierKind> {
    Some(match name.trim().to_lowercase().as_str() {
        "email" => IdentifierKind::Email,
        "phone" => IdentifierKind::Phone,
        "anonymous_id" => IdentifierKind::AnonymousId,
        "device_id" => IdentifierKind::DeviceId,
        "crm_id" => IdentifierKind::CrmId,
        "user_id" => IdentifierKind::UserId,
        _ => return None,
    })
}

/// The property name of a column or XES attribute: lowercase, spaces as `_`, and the XES
/// standard extensions mapped onto the design's well-known properties.
pub(crate) fn property_name(header: &str) -> String {
    let name = normalize_name(header);
    match name.as_str() {
        "org:resource" => "agent".to_string(),
        "org:group" => "department".to_string(),
        "lifecycle:transition" => "lifecycle".to_string(),
        _ => name,
    }
}

/// The trait name of a column: `case:plan` and `plan` both give `plan`.
pub(crate) fn trait_name(header: &str) -> String {
    let name = normalize_name(header);
    match name.strip_prefix("case:") {
        Some(rest) if !rest.is_empty() => rest.to_string(),
        _ => name,
    }
}

fn normalize_name(header: &str) -> String {
    header.trim().to_lowercase().replace(' ', "_")
}

/// One value read from a row, before it is given a meaning. Text is kept borrowed from the
/// reader's buffer so that cells that are never used cost nothing.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Cell<'a> {
    Null,
    Text(Cow<'a, str>),
    Int(i64),
    Num(f64),
    Bool(bool),
    /// An instant already typed by the file (Arrow timestamps and dates), in UTC microseconds.
    Micros(i64),
}

impl Cell<'_> {
    /// Empty and blank text is an absent value, like a null.
    fn is_absent(&self) -> bool {
        match self {
            Cell::Null => true,
            Cell::Text(t) => t.trim().is_empty(),
            _ => false,
        }
    }

    /// The cell as text, for messages and raw row dumps.
    pub(crate) fn to_text(&self) -> Cow<'_, str> {
        match self {
            Cell::Null => Cow::Borrowed(""),
            Cell::Text(t) => Cow::Borrowed(t.as_ref()),
            Cell::Int(i) => Cow::Owned(i.to_string()),
            Cell::Num(n) => Cow::Owned(n.to_string()),
            Cell::Bool(b) => Cow::Owned(b.to_string()),
            Cell::Micros(m) => Cow::Owned(Timestamp::from_micros(*m).to_rfc3339()),
        }
    }
}

/// A row of a tabular file, as the plan reads it.
pub(crate) trait Row {
    /// The cell of one column; an error when its bytes cannot be decoded.
    fn cell(&self, column: usize) -> Result<Cell<'_>, String>;
}

/// Why a row could not become an event: the column (or event field) and the reason.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RowError {
    pub field: String,
    pub reason: String,
}

impl RowError {
    pub(crate) fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        RowError {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

#[derive(Clone, Debug)]
enum ActivitySource {
    Column(usize),
    Constant(String),
}

/// The role of every column, resolved once from the header.
#[derive(Debug)]
pub(crate) struct Plan {
    /// The header as written (trimmed), used to name columns in rejects.
    headers: Vec<String>,
    customer: Option<(usize, IdentifierKind)>,
    activity: ActivitySource,
    timestamp: usize,
    channel: Option<usize>,
    channel_value: Channel,
    event_id: Option<usize>,
    identifiers: Vec<(usize, IdentifierKind)>,
    properties: Vec<(usize, String)>,
    traits: Vec<(usize, String)>,
    channels: ChannelCache,
}

/// Channel columns hold a handful of distinct values; remembering how each was parsed saves
/// `Channel::parse`'s allocations on every row.
#[derive(Debug, Default)]
struct ChannelCache {
    seen: Vec<(String, Result<Channel, String>)>,
}

/// Enough for any real channel column; beyond it values are parsed each time.
const CHANNEL_CACHE_SIZE: usize = 64;

impl ChannelCache {
    fn parse(&mut self, raw: &str) -> Result<Channel, String> {
        if let Some((_, parsed)) = self.seen.iter().find(|(r, _)| r == raw) {
            return parsed.clone();
        }
        let parsed = Channel::parse(raw).map_err(|e| e.to_string());
        if self.seen.len() < CHANNEL_CACHE_SIZE {
            self.seen.push((raw.to_string(), parsed.clone()));
        }
        parsed
    }
}

impl Plan {
    /// Resolves every column's role: explicit mapping first, then the auto-detection names,
    /// then `case:` columns as traits and everything else as properties.
    pub(crate) fn new(
        file: &str,
        headers: &[String],
        mapping: &ColumnMapping,
    ) -> Result<Plan, ImportError> {
        let headers: Vec<String> = headers.iter().map(|h| h.trim().to_string()).collect();
        let keys: Vec<String> = headers.iter().map(|h| h.to_lowercase()).collect();
        // Columns already given a role (or ignored) are not auto-detected again.
        let mut taken = vec![false; headers.len()];
        // pandas writes its row index as a first column without a name.
        if keys.first().is_some_and(|k| k.is_empty()) {
            taken[0] = true;
        }
        let find = |name: &str, flag: &'static str| -> Result<usize, ImportError> {
            let key = name.trim().to_lowercase();
            keys.iter()
                .position(|k| *k == key)
                .ok_or_else(|| ImportError::UnknownColumn {
                    file: file.to_string(),
                    column: name.to_string(),
                    flag,
                    columns: headers.join(", "),
                })
        };
        let claim = |column: usize, taken: &mut Vec<bool>| {
            taken[column] = true;
            column
        };

        for name in &mapping.ignore {
            claim(find(name, "ignore")?, &mut taken);
        }
        let explicit =
            |name: &Option<String>, flag| name.as_deref().map(|n| find(n, flag)).transpose();
        let customer_col = explicit(&mapping.customer, "customer")?.map(|c| claim(c, &mut taken));
        let activity_col = explicit(&mapping.activity, "activity")?.map(|c| claim(c, &mut taken));
        let timestamp_col =
            explicit(&mapping.timestamp, "timestamp")?.map(|c| claim(c, &mut taken));
        let channel_col = explicit(&mapping.channel, "channel")?.map(|c| claim(c, &mut taken));
        let event_id_col = explicit(&mapping.event_id, "event-id")?.map(|c| claim(c, &mut taken));
        let mut identifiers = Vec::new();
        for (kind, name) in &mapping.identifiers {
            identifiers.push((claim(find(name, "identifier")?, &mut taken), kind.clone()));
        }
        let mut properties = Vec::new();
        for (property, name) in &mapping.properties {
            properties.push((claim(find(name, "property")?, &mut taken), property.clone()));
        }
        let mut traits = Vec::new();
        for name in &mapping.traits {
            let column = claim(find(name, "trait")?, &mut taken);
            traits.push((column, trait_name(&headers[column])));
        }

        let detect = |names: &[&str], taken: &mut Vec<bool>| -> Option<usize> {
            let column = names.iter().find_map(|name| {
                keys.iter()
                    .zip(taken.iter())
                    .position(|(k, t)| !*t && k == name)
            })?;
            taken[column] = true;
            Some(column)
        };
        let customer_col = customer_col.or_else(|| detect(CUSTOMER_NAMES, &mut taken));
        let activity = match (activity_col, &mapping.activity_value) {
            (Some(column), _) => Some(ActivitySource::Column(column)),
            (None, Some(value)) => Some(ActivitySource::Constant(value.clone())),
            (None, None) => detect(ACTIVITY_NAMES, &mut taken).map(ActivitySource::Column),
        };
        let timestamp_col = timestamp_col.or_else(|| detect(TIMESTAMP_NAMES, &mut taken));
        // An explicit constant channel is the user's choice over any column that merely looks
        // like a channel; an explicit channel column wins over both.
        let channel_col = match (channel_col, &mapping.channel_value) {
            (Some(column), _) => Some(column),
            (None, Some(_)) => None,
            (None, None) => detect(CHANNEL_NAMES, &mut taken),
        };
        let event_id_col = event_id_col.or_else(|| detect(EVENT_ID_NAMES, &mut taken));

        for (column, key) in keys.iter().enumerate() {
            if taken[column] {
                continue;
            }
            if let Some(kind) = identifier_kind_for_name(key) {
                identifiers.push((column, kind));
            } else if key.starts_with("case:") {
                traits.push((column, trait_name(&headers[column])));
            } else if key.is_empty() {
                // A column without a name still carries data; give it one the user can find.
                properties.push((column, format!("column_{}", column + 1)));
            } else {
                properties.push((column, property_name(&headers[column])));
            }
        }

        let missing =
            |role: &'static str, names: &[&str], flag: &'static str| ImportError::MissingColumn {
                file: file.to_string(),
                role,
                candidates: names.join(", "),
                flag,
            };
        if customer_col.is_none() && identifiers.is_empty() {
            return Err(missing("customer", CUSTOMER_NAMES, "customer"));
        }
        let activity = activity.ok_or_else(|| missing("activity", ACTIVITY_NAMES, "activity"))?;
        let timestamp =
            timestamp_col.ok_or_else(|| missing("timestamp", TIMESTAMP_NAMES, "timestamp"))?;
        let customer_kind = mapping
            .customer_kind
            .clone()
            .unwrap_or(IdentifierKind::UserId);
        Ok(Plan {
            headers,
            customer: customer_col.map(|c| (c, customer_kind)),
            activity,
            timestamp,
            channel: channel_col,
            channel_value: mapping.channel_value.clone().unwrap_or(Channel::Other),
            event_id: event_id_col,
            identifiers,
            properties,
            traits,
            channels: ChannelCache::default(),
        })
    }

    pub(crate) fn headers(&self) -> &[String] {
        &self.headers
    }

    /// The columns whose values the plan reads, each once: readers of columnar files use it to
    /// decode only what is needed.
    pub(crate) fn used_columns(&self) -> Vec<usize> {
        let mut used: Vec<usize> = self
            .customer
            .iter()
            .map(|(c, _)| *c)
            .chain(match self.activity {
                ActivitySource::Column(c) => Some(c),
                ActivitySource::Constant(_) => None,
            })
            .chain([self.timestamp])
            .chain(self.channel)
            .chain(self.event_id)
            .chain(self.identifiers.iter().map(|(c, _)| *c))
            .chain(self.properties.iter().map(|(c, _)| *c))
            .chain(self.traits.iter().map(|(c, _)| *c))
            .collect();
        used.sort_unstable();
        used.dedup();
        used
    }

    /// The columns that must have a value in every row.
    pub(crate) fn required_columns(&self) -> Vec<usize> {
        let mut required: Vec<usize> = self.customer.iter().map(|(c, _)| *c).collect();
        if let ActivitySource::Column(c) = self.activity {
            required.push(c);
        }
        required.push(self.timestamp);
        required
    }

    /// Builds and validates the event of one row.
    pub(crate) fn build(&mut self, row: &impl Row) -> Result<Event, RowError> {
        let cell = |column: usize| {
            row.cell(column)
                .map_err(|reason| RowError::new(&self.headers[column], reason))
        };
        let field = |column: usize| self.headers[column].as_str();

        let timestamp = timestamp_from_cell(&cell(self.timestamp)?)
            .map_err(|reason| RowError::new(field(self.timestamp), reason))?;
        let activity = match &self.activity {
            ActivitySource::Constant(value) => value.clone(),
            ActivitySource::Column(column) => {
                let value = cell(*column)?;
                if value.is_absent() {
                    return Err(RowError::new(field(*column), "empty activity"));
                }
                value.to_text().into_owned()
            }
        };
        let channel = match self.channel {
            Some(column) => {
                let value = cell(column)?;
                if value.is_absent() {
                    self.channel_value.clone()
                } else {
                    self.channels
                        .parse(&value.to_text())
                        .map_err(|reason| RowError::new(field(column), reason))?
                }
            }
            None => self.channel_value.clone(),
        };

        let mut event = Event {
            event_id: None,
            timestamp,
            identifiers: Vec::with_capacity(1),
            channel,
            activity: activity.into(),
            properties: Properties::new(),
            traits: Properties::new(),
        };
        if let Some((column, kind)) = &self.customer {
            let value = cell(*column)?;
            if value.is_absent() {
                return Err(RowError::new(field(*column), "empty customer"));
            }
            event.add_identifier(
                identifier_from_cell(kind, &value)
                    .map_err(|reason| RowError::new(field(*column), reason))?,
            );
        }
        for (column, kind) in &self.identifiers {
            let value = cell(*column)?;
            if !value.is_absent() {
                event.add_identifier(
                    identifier_from_cell(kind, &value)
                        .map_err(|reason| RowError::new(field(*column), reason))?,
                );
            }
        }
        if event.identifiers.is_empty() {
            let columns: Vec<&str> = self.identifiers.iter().map(|(c, _)| field(*c)).collect();
            return Err(RowError::new(
                "identifiers",
                format!("no identifier: {} all empty", columns.join(", ")),
            ));
        }

        if let Some(column) = self.event_id {
            let value = cell(column)?;
            if !value.is_absent() {
                event.event_id = Some(value.to_text().trim().into());
            }
        }
        for (column, name) in &self.properties {
            if let Some(value) = property_from_cell(name, &cell(*column)?)
                .map_err(|reason| RowError::new(field(*column), reason))?
            {
                event.properties.insert(name.as_str().into(), value);
            }
        }
        for (column, name) in &self.traits {
            if let Some(value) = trait_from_cell(&cell(*column)?) {
                event.traits.insert(name.as_str().into(), value);
            }
        }
        event
            .validate()
            .map_err(|e| RowError::new(e.field, e.reason))
    }
}

/// Integers are ids written as numbers (pandas and Parquet store case ids that way).
pub(crate) fn identifier_from_cell(
    kind: &IdentifierKind,
    cell: &Cell,
) -> Result<Identifier, String> {
    let text = match cell {
        Cell::Num(n) if n.fract() == 0.0 && n.abs() < 9e15 => Cow::Owned((*n as i64).to_string()),
        Cell::Bool(_) | Cell::Micros(_) => {
            return Err(format!("'{}' is not an identifier", cell.to_text()))
        }
        other => other.to_text(),
    };
    Identifier::new(kind.clone(), &text).map_err(|e| e.to_string())
}

/// Text is parsed with the model's grammar, numbers are epoch seconds or milliseconds.
pub(crate) fn timestamp_from_cell(cell: &Cell) -> Result<Timestamp, String> {
    match cell {
        Cell::Null => Err("missing timestamp".to_string()),
        Cell::Text(t) => Timestamp::parse(t).map_err(|e| e.to_string()),
        Cell::Int(i) => Timestamp::from_epoch_number(*i as f64).map_err(|e| e.to_string()),
        Cell::Num(n) => Timestamp::from_epoch_number(*n).map_err(|e| e.to_string()),
        Cell::Micros(m) => micros_in_range(*m),
        Cell::Bool(b) => Err(format!("'{b}' is not a timestamp")),
    }
}

/// The model accepts years 1900 to 2199 from every other source; typed instants from a
/// file must respect the same window.
fn micros_in_range(micros: i64) -> Result<Timestamp, String> {
    let ts = Timestamp::from_micros(micros);
    let (year, ..) = ts.civil();
    if (1900..=2199).contains(&year) {
        Ok(ts)
    } else {
        Err(format!(
            "'{ts}' is out of range (years 1900 to 2199 are accepted)"
        ))
    }
}

/// A property value typed as the property name requires; `None` for an absent value.
/// Numbers stay numbers, except for well-known text properties (`agent` 17 is the text "17").
pub(crate) fn property_from_cell(name: &str, cell: &Cell) -> Result<Option<Value>, String> {
    if cell.is_absent() {
        return Ok(None);
    }
    let textual = matches!(
        well_known_type(name),
        Some(WellKnownType::Text | WellKnownType::Id | WellKnownType::Outcome)
    );
    let value = match cell {
        Cell::Text(t) => return property_from_text(name, t).map(Some),
        Cell::Int(_) | Cell::Num(_) if textual => Value::Str(cell.to_text().as_ref().into()),
        Cell::Int(i) => Value::Num(*i as f64),
        Cell::Num(n) => Value::Num(*n),
        Cell::Bool(b) => Value::Bool(*b),
        Cell::Micros(m) => Value::Str(Timestamp::from_micros(*m).to_rfc3339().into()),
        Cell::Null => return Ok(None),
    };
    check_property(name, value).map(Some)
}

/// Traits have no fixed types: text is typed by its look, like any unknown property.
pub(crate) fn trait_from_cell(cell: &Cell) -> Option<Value> {
    match cell {
        _ if cell.is_absent() => None,
        Cell::Text(t) => Some(Value::infer(t)),
        Cell::Int(i) => Some(Value::Num(*i as f64)),
        Cell::Num(n) => Some(Value::Num(*n)),
        Cell::Bool(b) => Some(Value::Bool(*b)),
        Cell::Micros(m) => Some(Value::Str(Timestamp::from_micros(*m).to_rfc3339().into())),
        Cell::Null => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct TextRow(Vec<&'static str>);

    impl Row for TextRow {
        fn cell(&self, column: usize) -> Result<Cell<'_>, String> {
            Ok(Cell::Text(Cow::Borrowed(self.0[column])))
        }
    }

    fn headers(names: &[&str]) -> Vec<String> {
        names.iter().map(|n| n.to_string()).collect()
    }

    #[test]
    fn detects_roles_traits_properties_and_identifiers() {
        let mut plan = Plan::new(
            "f.csv",
            &headers(&[
                "",
                "Case ID",
                "Activity",
                "Timestamp",
                "case:Plan",
                "Email",
                "org:resource",
                "Cost",
            ]),
            &ColumnMapping::default(),
        )
        .unwrap();
        let event = plan
            .build(&TextRow(vec![
                "0",
                "c1",
                "pay",
                "2026-01-01",
                "gold",
                "A@B.com",
                "r7",
                "12.5",
            ]))
            .unwrap();
        assert_eq!(event.activity, "pay");
        assert_eq!(event.channel, Channel::Other);
        assert_eq!(event.identifiers.len(), 2);
        assert!(event
            .identifiers
            .contains(&Identifier::new(IdentifierKind::UserId, "c1").unwrap()));
        assert!(event
            .identifiers
            .contains(&Identifier::new(IdentifierKind::Email, "a@b.com").unwrap()));
        assert_eq!(event.traits["plan"], Value::Str("gold".into()));
        assert_eq!(event.properties["agent"], Value::Str("r7".into()));
        assert_eq!(event.properties["cost"], Value::Num(12.5));
        assert_eq!(
            event.properties.len(),
            2,
            "the pandas index column is not a property"
        );
    }

    #[test]
    fn missing_roles_are_file_errors_that_name_the_flag() {
        let err = Plan::new(
            "r.csv",
            &headers(&["case", "activity"]),
            &ColumnMapping::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.starts_with(
                "r.csv: no timestamp column found (looked for time:timestamp, timestamp"
            ),
            "{err}"
        );
        assert!(err.ends_with("name one with --timestamp"), "{err}");
        let mapping = ColumnMapping {
            customer: Some("nope".into()),
            ..ColumnMapping::default()
        };
        let err = Plan::new("r.csv", &headers(&["case", "activity", "time"]), &mapping)
            .unwrap_err()
            .to_string();
        assert_eq!(err, "r.csv: column 'nope' named with --customer is not in the header (columns: case, activity, time)");
    }

    #[test]
    fn row_errors_name_the_column() {
        let mut plan = Plan::new(
            "f.csv",
            &headers(&["customer", "event", "time", "sentiment", "channel"]),
            &ColumnMapping::default(),
        )
        .unwrap();
        let cases = [
            (vec!["", "a", "2026-01-01", "", "web"], "customer"),
            (vec!["c", " ", "2026-01-01", "", "web"], "event"),
            (vec!["c", "a", "soon", "", "web"], "time"),
            (vec!["c", "a", "2026-01-01", "3", "web"], "sentiment"),
            (vec!["c", "a", "2026-01-01", "", "web<>"], "channel"),
        ];
        for (cells, field) in cases {
            let err = plan.build(&TextRow(cells)).unwrap_err();
            assert_eq!(err.field, field, "{err:?}");
        }
    }

    #[test]
    fn typed_cells_convert() {
        assert_eq!(
            identifier_from_cell(&IdentifierKind::UserId, &Cell::Num(3.0))
                .unwrap()
                .value,
            "3"
        );
        assert_eq!(
            property_from_cell("agent", &Cell::Int(17)).unwrap(),
            Some(Value::Str("17".into()))
        );
        assert_eq!(
            property_from_cell("cost", &Cell::Int(17)).unwrap(),
            Some(Value::Num(17.0))
        );
        assert!(property_from_cell("sentiment", &Cell::Num(2.0)).is_err());
        assert!(timestamp_from_cell(&Cell::Micros(i64::MIN / 2)).is_err());
        assert_eq!(
            timestamp_from_cell(&Cell::Int(1_767_225_600)).unwrap(),
            Timestamp::from_secs(1_767_225_600)
        );
    }
}
