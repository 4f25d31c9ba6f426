//! Builds columnar journeys ([`Journeys`], defined in the model) from segments and the log
//! tail.

use crate::log::LogRecord;
use crate::placement::Resolution;
use crate::segment::{self, column, dictionary};
use crate::StoreError;
use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, TimestampMicrosecondType, UInt64Type};
use arrow_array::Array;
use omnitrail_model::journeys::{Codes, Dictionary, Journeys, Nums, PropertyColumn, ScanSpec};
use omnitrail_model::value::{well_known_type, WellKnownType};
use omnitrail_model::{CustomerId, ProjectId, Value};

enum Builder {
    Num(Nums),
    Text(Codes, Dictionary),
}

/// Each row's customer, and the batch without the rows of other partitions (`None` when
/// every row stays).
type Routed = (Vec<u64>, Option<arrow_array::RecordBatch>);

/// Which customer a segment row is read under.
#[derive(Clone, Copy)]
pub(crate) enum Route<'a> {
    /// Its write-time key: the store's own view, which the app regroups.
    Key,
    /// Its placement (the row's customer id), or for a key the resolution moves, the
    /// key's customer now. Rows that then belong to another partition are left out;
    /// `own` says the segment is of this partition, so an unmoved row belongs here.
    Placed {
        resolution: Option<&'a Resolution>,
        own: bool,
    },
}

/// Gathers rows from segments and the log tail in any order, then sorts them once.
pub(crate) struct JourneysBuilder {
    project: ProjectId,
    partition: u32,
    customer: Vec<u64>,
    /// Write-time keys: they order equal times of one customer (then seq).
    key: Vec<u64>,
    ts: Vec<i64>,
    seq: Vec<u64>,
    activity: Codes,
    activities: Dictionary,
    channel: Vec<u16>,
    channels: Dictionary,
    props: Vec<(String, Builder)>,
    traits: Vec<(String, Codes, Dictionary)>,
}

impl JourneysBuilder {
    pub fn new(project: ProjectId, partition: u32, spec: &ScanSpec) -> Self {
        let props = spec
            .properties
            .iter()
            .map(|name| {
                let b = match well_known_type(name) {
                    Some(
                        WellKnownType::Sentiment | WellKnownType::Seconds | WellKnownType::Amount,
                    ) => Builder::Num(Nums::default()),
                    _ => Builder::Text(Codes::default(), Dictionary::default()),
                };
                (name.clone(), b)
            })
            .collect();
        JourneysBuilder {
            project,
            partition,
            customer: Vec::new(),
            key: Vec::new(),
            ts: Vec::new(),
            seq: Vec::new(),
            activity: Codes::default(),
            activities: Dictionary::default(),
            channel: Vec::new(),
            channels: Dictionary::default(),
            props,
            traits: spec
                .traits
                .iter()
                .map(|name| (name.clone(), Codes::default(), Dictionary::default()))
                .collect(),
        }
    }

    fn channel_code(&mut self, name: &str) -> u16 {
        // More than 65k distinct channels is not a journey dataset; fold into the last code.
        self.channels.code(name).min(u32::from(u16::MAX)) as u16
    }

    /// A log record, under `customer`.
    pub fn add_record(&mut self, r: &LogRecord, customer: u64) {
        self.customer.push(customer);
        self.key.push(r.customer.0);
        self.ts.push(r.event.timestamp.as_micros());
        self.seq.push(r.seq);
        let a = self.activities.code(&r.event.activity);
        self.activity.push(a);
        let c = self.channel_code(r.event.channel.as_str());
        self.channel.push(c);
        for (name, b) in &mut self.props {
            let v = r.event.properties.get(name.as_str());
            match b {
                Builder::Num(col) => col.push(v.and_then(Value::as_f64).unwrap_or(f64::NAN)),
                Builder::Text(codes, dict) => codes.push(match v {
                    None => 0,
                    Some(Value::Str(s)) => dict.code(s) + 1,
                    Some(other) => dict.code(&other.to_string()) + 1,
                }),
            }
        }
        for (name, codes, dict) in &mut self.traits {
            codes.push(match r.event.traits.get(name.as_str()) {
                None => 0,
                Some(Value::Str(s)) => dict.code(s) + 1,
                Some(other) => dict.code(&other.to_string()) + 1,
            });
        }
    }

    /// The columns this builder reads from segments, and whether custom properties are
    /// among them (they are parsed from the properties JSON).
    fn segment_columns(&self) -> (Vec<&'static str>, Vec<String>, bool) {
        let fixed = vec![
            segment::COL_CUSTOMER,
            segment::COL_KEY,
            segment::COL_TIMESTAMP,
            segment::COL_SEQ,
            segment::COL_ACTIVITY,
            segment::COL_CHANNEL,
        ];
        let custom = self
            .props
            .iter()
            .any(|(name, _)| well_known_type(name).is_none());
        let mut named: Vec<String> = self
            .props
            .iter()
            .filter(|(name, _)| well_known_type(name).is_some())
            .map(|(name, _)| name.clone())
            .collect();
        if custom {
            named.push(segment::COL_PROPERTIES.to_string());
        }
        if !self.traits.is_empty() {
            named.push(segment::COL_TRAITS.to_string());
        }
        (fixed, named, custom)
    }

    pub fn add_segment(
        &mut self,
        segment: &segment::SegmentFile,
        route: Route<'_>,
    ) -> Result<(), StoreError> {
        let (fixed, named, custom) = self.segment_columns();
        let mut names: Vec<&str> = fixed;
        names.extend(named.iter().map(String::as_str));
        segment::read_journey_columns(segment, &names, |batch| {
            self.add_batch(batch, segment.path(), custom, route)
        })
    }

    /// The rows filed under `customers` (sorted) in a segment, found through its page
    /// index; returns how many rows were decoded to find them.
    pub fn add_segment_keys(
        &mut self,
        index: &segment::SegmentIndex,
        customers: &[u64],
        route: Route<'_>,
    ) -> Result<u64, StoreError> {
        let (fixed, named, custom) = self.segment_columns();
        let mut names: Vec<&str> = fixed;
        names.extend(named.iter().map(String::as_str));
        segment::read_key_columns(index, &names, customers, |batch| {
            self.add_batch(batch, index.file().path(), custom, route)
        })
    }

    /// Each row's customer under `route`, and the batch without the rows of other
    /// partitions (`None` when every row stays).
    fn route_batch(
        &self,
        batch: &arrow_array::RecordBatch,
        path: &std::path::Path,
        route: Route<'_>,
    ) -> Result<Option<Routed>, StoreError> {
        let Route::Placed {
            resolution: Some(resolution),
            own,
        } = route
        else {
            return Ok(None);
        };
        let filed = column(batch, segment::COL_CUSTOMER, path)?.as_primitive::<UInt64Type>();
        let keys = segment::keys(batch, path)?;
        let mut customers = Vec::with_capacity(keys.len());
        let mut keep = Vec::with_capacity(keys.len());
        // Rows are sorted by placement: whether one is affected is asked once per run.
        let mut last: Option<(u64, bool)> = None;
        for (&filed, &key) in filed.values().iter().zip(keys) {
            let affected = match last {
                Some((f, a)) if f == filed => a,
                _ => {
                    let a = resolution.affected.contains(&filed);
                    last = Some((filed, a));
                    a
                }
            };
            let customer = if affected {
                resolution.moved.get(&key).copied().unwrap_or(filed)
            } else {
                filed
            };
            keep.push(
                (own && customer == filed) || resolution.partition_of(customer) == self.partition,
            );
            customers.push(customer);
        }
        if keep.iter().all(|&k| k) {
            return Ok(Some((customers, None)));
        }
        let mask = arrow_array::BooleanArray::from(keep.clone());
        let kept = arrow_select::filter::filter_record_batch(batch, &mask).map_err(|e| {
            StoreError::Parquet {
                path: path.to_path_buf(),
                message: format!("filtering moved rows: {e}"),
            }
        })?;
        let customers = customers
            .into_iter()
            .zip(keep)
            .filter_map(|(c, k)| k.then_some(c))
            .collect();
        Ok(Some((customers, Some(kept))))
    }

    fn add_batch(
        &mut self,
        batch: &arrow_array::RecordBatch,
        path: &std::path::Path,
        custom: bool,
        route: Route<'_>,
    ) -> Result<(), StoreError> {
        let routed = self.route_batch(batch, path, route)?;
        let batch = match &routed {
            Some((_, Some(kept))) => kept,
            _ => batch,
        };
        let keys = segment::keys(batch, path)?;
        match (&routed, route) {
            (Some((customers, _)), _) => self.customer.extend_from_slice(customers),
            (None, Route::Key) => self.customer.extend_from_slice(keys),
            (None, Route::Placed { .. }) => self.customer.extend(
                column(batch, segment::COL_CUSTOMER, path)?
                    .as_primitive::<UInt64Type>()
                    .values()
                    .iter(),
            ),
        }
        self.key.extend_from_slice(keys);
        let ts =
            column(batch, segment::COL_TIMESTAMP, path)?.as_primitive::<TimestampMicrosecondType>();
        let seq = column(batch, segment::COL_SEQ, path)?.as_primitive::<UInt64Type>();
        self.ts.extend(ts.values().iter());
        self.seq.extend(seq.values().iter());
        let (keys, values) = dictionary(batch, segment::COL_ACTIVITY, path)?;
        let remap: Vec<u32> = (0..values.len())
            .map(|i| self.activities.code(values.value(i)))
            .collect();
        self.activity
            .extend(keys.keys().values().iter().map(|&k| remap[k as usize]));
        let (keys, values) = dictionary(batch, segment::COL_CHANNEL, path)?;
        let remap: Vec<u16> = (0..values.len())
            .map(|i| self.channel_code(values.value(i)))
            .collect();
        self.channel
            .extend(keys.keys().values().iter().map(|&k| remap[k as usize]));
        let custom_json = if custom {
            Some(column(batch, segment::COL_PROPERTIES, path)?.as_string::<i32>())
        } else {
            None
        };
        for (name, b) in &mut self.props {
            if well_known_type(name).is_some() {
                let col = column(batch, name, path)?;
                match b {
                    Builder::Num(out) => {
                        let c = col.as_primitive::<Float64Type>();
                        for i in 0..c.len() {
                            out.push(if c.is_null(i) { f64::NAN } else { c.value(i) });
                        }
                    }
                    Builder::Text(codes, dict) => push_text(col, name, path, codes, dict)?,
                }
            } else if let (Some(json), Builder::Text(codes, dict)) = (custom_json, b) {
                push_json_field(json, name, codes, dict);
            }
        }
        if !self.traits.is_empty() {
            // Each row's object is parsed once for every trait asked for.
            let json = column(batch, segment::COL_TRAITS, path)?.as_string::<i32>();
            for i in 0..json.len() {
                let object = (!json.is_null(i))
                    .then(|| serde_json::from_str::<serde_json::Value>(json.value(i)).ok())
                    .flatten();
                for (name, codes, dict) in &mut self.traits {
                    codes.push(json_code(
                        object.as_ref().and_then(|o| o.get(name.as_str())),
                        dict,
                    ));
                }
            }
        }
        Ok(())
    }

    pub fn finish(self) -> Journeys {
        let JourneysBuilder {
            project,
            partition,
            customer,
            key: keys,
            ts,
            seq,
            activity,
            activities,
            channel,
            channels,
            props,
            traits,
        } = self;
        let n = ts.len();
        // Equal times of one customer in key order, then arrival order within a key: the
        // order a cluster's journeys merged by time have (resolve.rs in the app).
        let key = |i: usize| (customer[i], ts[i], keys[i], seq[i]);
        // Segments are sorted runs and a partition is often one of them: then nothing moves.
        let order: Option<Vec<u32>> = if (1..n).all(|i| key(i - 1) <= key(i)) {
            None
        } else {
            let mut order: Vec<u32> = (0..n as u32).collect();
            // A stable sort finds the segments' sorted runs and merges them.
            order.sort_by_key(|&i| key(i as usize));
            Some(order)
        };
        drop(seq);
        drop(keys);
        let customer = permute(customer, &order);
        let mut customers = Vec::new();
        let mut offsets = Vec::new();
        for (i, &c) in customer.iter().enumerate() {
            if customers.last() != Some(&CustomerId(c)) {
                customers.push(CustomerId(c));
                offsets.push(i as u32);
            }
        }
        offsets.push(n as u32);
        drop(customer);
        let permute_codes = |codes: Codes| match &order {
            None => codes,
            Some(order) => order.iter().map(|&i| codes.get(i as usize)).collect(),
        };
        let properties = props
            .into_iter()
            .map(|(name, b)| {
                let col = match b {
                    Builder::Num(v) => PropertyColumn::Num(match &order {
                        None => v,
                        Some(order) => order.iter().map(|&i| v.get(i as usize)).collect(),
                    }),
                    Builder::Text(codes, dict) => PropertyColumn::Text {
                        codes: permute_codes(codes),
                        dict,
                    },
                };
                (name, col)
            })
            .collect();
        let traits = traits
            .into_iter()
            .map(|(name, codes, dict)| {
                let codes = permute_codes(codes);
                (name, PropertyColumn::Text { codes, dict })
            })
            .collect();
        Journeys {
            project,
            partition,
            customers,
            offsets,
            ts: permute(ts, &order),
            activity: permute_codes(activity),
            activities,
            channel: permute(channel, &order),
            channels,
            properties,
            traits,
        }
    }
}

/// `values` in `order` (as they are when there is none).
fn permute<T: Copy>(values: Vec<T>, order: &Option<Vec<u32>>) -> Vec<T> {
    match order {
        None => values,
        Some(order) => order.iter().map(|&i| values[i as usize]).collect(),
    }
}

/// Appends a text column's codes (0 where null): a dictionary array's values are coded
/// once per batch, plain strings once per run of equal values.
fn push_text(
    col: &arrow_array::ArrayRef,
    name: &str,
    path: &std::path::Path,
    codes: &mut Codes,
    dict: &mut Dictionary,
) -> Result<(), StoreError> {
    if let Some(c) = col.as_string_opt::<i32>() {
        let mut last: Option<(&str, u32)> = None;
        codes.extend((0..c.len()).map(|i| {
            if c.is_null(i) {
                return 0;
            }
            let value = c.value(i);
            match last {
                Some((v, code)) if v == value => code,
                _ => {
                    let code = dict.code(value) + 1;
                    last = Some((value, code));
                    code
                }
            }
        }));
        return Ok(());
    }
    let (keys, values) = segment::dictionary_column(col, name, path)?;
    // Coded on first use, as plain strings are: the dictionary holds only values the rows
    // use, in the order they first appear.
    const UNSET: u32 = u32::MAX;
    let mut remap = vec![UNSET; values.len()];
    let keys = keys.keys();
    codes.extend((0..keys.len()).map(|i| {
        if keys.is_null(i) {
            return 0;
        }
        let k = keys.value(i) as usize;
        if remap[k] == UNSET {
            remap[k] = dict.code(values.value(k)) + 1;
        }
        remap[k]
    }));
    Ok(())
}

/// Appends one field of each row's JSON object as a text code (0 when absent).
fn push_json_field(
    json: &arrow_array::StringArray,
    name: &str,
    codes: &mut Codes,
    dict: &mut Dictionary,
) {
    for i in 0..json.len() {
        let object = (!json.is_null(i))
            .then(|| serde_json::from_str::<serde_json::Value>(json.value(i)).ok())
            .flatten();
        codes.push(json_code(object.as_ref().and_then(|o| o.get(name)), dict));
    }
}

/// A JSON value as a text code: 0 when absent or null.
fn json_code(v: Option<&serde_json::Value>, dict: &mut Dictionary) -> u32 {
    match v {
        None | Some(serde_json::Value::Null) => 0,
        Some(serde_json::Value::String(s)) => dict.code(s) + 1,
        // Spell numbers as the log tail does (`Value`'s Display: 3, not JSON's 3.0), so
        // compaction does not change what a journey shows.
        Some(serde_json::Value::Number(n)) => {
            let v = Value::Num(n.as_f64().unwrap_or(f64::NAN));
            dict.code(&v.to_string()) + 1
        }
        Some(other) => dict.code(&other.to_string()) + 1,
    }
}
