//! Parquet segments: immutable files of one project's partition, sorted by
//! (customer, timestamp, key, seq), where the customer is each row's placement
//! (`placement.rs`) and the key its write-time key. The schema is documented in docs/storage.md; the
//! well-known properties are typed columns so DuckDB, Spark or pandas read them directly.

use crate::durability::Durability;
use crate::log::LogRecord;
use crate::manifest::SegmentCounts;
use crate::StoreError;
use arrow_array::builder::{
    Float64Builder, StringBuilder, StringDictionaryBuilder, TimestampMicrosecondBuilder,
    UInt64Builder,
};
use arrow_array::cast::AsArray;
use arrow_array::types::{Int32Type, TimestampMicrosecondType, UInt64Type};
use arrow_array::BooleanArray;
use arrow_array::{Array, ArrayRef, DictionaryArray, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use omnitrail_model::value::{
    well_known_index, well_known_type, WellKnownType, WELL_KNOWN_PROPERTIES,
};
use omnitrail_model::{
    Channel, CustomerId, Event, Identifier, IdentifierKind, ProjectId, Properties, Text, Timestamp,
    Value,
};
use parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReaderBuilder, RowSelection,
    RowSelector,
};
use parquet::arrow::{ArrowWriter, ProjectionMask};
use parquet::basic::Compression;
use parquet::file::page_index::column_index::ColumnIndexMetaData;
use parquet::file::properties::WriterProperties;
use parquet::file::statistics::Statistics;
use parquet::schema::types::ColumnPath;
use std::collections::BTreeMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub const COL_CUSTOMER: &str = "customer_id";
/// The write-time key; segments written before placements lack it (the key is then the
/// customer id).
pub const COL_KEY: &str = "key";
pub const COL_TIMESTAMP: &str = "timestamp";
pub const COL_SEQ: &str = "seq";
pub const COL_CHANNEL: &str = "channel";
pub const COL_ACTIVITY: &str = "activity";
pub const COL_EVENT_ID: &str = "event_id";
pub const COL_IDENTIFIERS: &str = "identifiers";
pub const COL_PROPERTIES: &str = "properties";
pub const COL_TRAITS: &str = "traits";

fn is_text(ty: WellKnownType) -> bool {
    matches!(
        ty,
        WellKnownType::Text | WellKnownType::Id | WellKnownType::Outcome
    )
}

pub fn schema() -> SchemaRef {
    let dict = DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8));
    let mut fields = vec![
        Field::new(COL_CUSTOMER, DataType::UInt64, false),
        Field::new(COL_KEY, DataType::UInt64, false),
        Field::new(
            COL_TIMESTAMP,
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            false,
        ),
        Field::new(COL_SEQ, DataType::UInt64, false),
        Field::new(COL_CHANNEL, dict.clone(), false),
        Field::new(COL_ACTIVITY, dict, false),
        Field::new(COL_EVENT_ID, DataType::Utf8, true),
        Field::new(COL_IDENTIFIERS, DataType::Utf8, false),
    ];
    for (name, ty) in WELL_KNOWN_PROPERTIES {
        let dt = if is_text(ty) {
            DataType::Utf8
        } else {
            DataType::Float64
        };
        fields.push(Field::new(name, dt, true));
    }
    fields.push(Field::new(COL_PROPERTIES, DataType::Utf8, true));
    fields.push(Field::new(COL_TRAITS, DataType::Utf8, true));
    Arc::new(Schema::new(fields))
}

/// Writes the identifiers as a JSON array of `[kind, value]` pairs into `buf`.
fn identifiers_json<'b>(ids: &[Identifier], buf: &'b mut Vec<u8>) -> &'b str {
    buf.clear();
    let pairs: Vec<(std::borrow::Cow<'_, str>, &str)> = ids
        .iter()
        .map(|i| (i.kind.as_str(), i.value.as_str()))
        .collect();
    serde_json::to_writer(&mut *buf, &pairs).expect("writing to memory cannot fail");
    std::str::from_utf8(buf).expect("serde_json writes UTF-8")
}

/// A property or trait map written as a plain JSON object (values untagged), straight
/// from the map without building a `serde_json::Value` tree first.
struct JsonValues<'a> {
    values: &'a Properties,
    skip_well_known: bool,
}

impl JsonValues<'_> {
    fn entries(&self) -> impl Iterator<Item = (&Text, &Value)> {
        let skip = self.skip_well_known;
        self.values
            .iter()
            .filter(move |(k, _)| !(skip && well_known_type(k).is_some()))
    }
}

impl serde::Serialize for JsonValues<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(None)?;
        for (k, v) in self.entries() {
            match v {
                Value::Str(text) => map.serialize_entry(k, text)?,
                Value::Num(n) => map.serialize_entry(k, n)?,
                Value::Bool(b) => map.serialize_entry(k, b)?,
            }
        }
        map.end()
    }
}

/// Writes the map as a JSON object into `buf`; `None` when nothing is left to write.
fn values_json<'b>(
    values: &Properties,
    skip_well_known: bool,
    buf: &'b mut Vec<u8>,
) -> Option<&'b str> {
    let json = JsonValues {
        values,
        skip_well_known,
    };
    json.entries().next()?;
    buf.clear();
    serde_json::to_writer(&mut *buf, &json).expect("writing to memory cannot fail");
    Some(std::str::from_utf8(buf).expect("serde_json writes UTF-8"))
}

/// Writes records, each filed under the customer beside it (its placement) and sorted by
/// (customer, timestamp, key, seq), to a new Parquet file and fsyncs it. Returns the file
/// size.
pub fn write_segment(
    path: &Path,
    records: &[(u64, &LogRecord)],
    d: &dyn Durability,
) -> Result<u64, StoreError> {
    let schema = schema();
    let n = records.len();
    let mut customer = UInt64Builder::with_capacity(n);
    let mut key = UInt64Builder::with_capacity(n);
    let mut ts = TimestampMicrosecondBuilder::with_capacity(n).with_timezone("UTC");
    let mut seq = UInt64Builder::with_capacity(n);
    let mut channel = StringDictionaryBuilder::<Int32Type>::new();
    let mut activity = StringDictionaryBuilder::<Int32Type>::new();
    let mut event_id = StringBuilder::new();
    let mut identifiers = StringBuilder::new();
    // One builder per well-known property, in WELL_KNOWN_PROPERTIES order.
    let mut text_cols: Vec<Option<StringBuilder>> = Vec::new();
    let mut num_cols: Vec<Option<Float64Builder>> = Vec::new();
    for (_, ty) in WELL_KNOWN_PROPERTIES {
        if is_text(ty) {
            text_cols.push(Some(StringBuilder::new()));
            num_cols.push(None);
        } else {
            text_cols.push(None);
            num_cols.push(Some(Float64Builder::with_capacity(n)));
        }
    }
    let mut properties = StringBuilder::new();
    let mut traits = StringBuilder::new();
    // One scratch buffer for every JSON cell, so rows allocate nothing of their own.
    let mut buf = Vec::with_capacity(1024);
    for &(filed, r) in records {
        let e = &r.event;
        customer.append_value(filed);
        key.append_value(r.customer.0);
        ts.append_value(e.timestamp.as_micros());
        seq.append_value(r.seq);
        channel.append_value(e.channel.as_str());
        activity.append_value(&e.activity);
        event_id.append_option(e.event_id.as_deref());
        identifiers.append_value(identifiers_json(&e.identifiers, &mut buf));
        // One pass over the event's properties fills its row of the well-known columns.
        let mut row: [Option<&Value>; WELL_KNOWN_PROPERTIES.len()] = Default::default();
        for (name, v) in &e.properties {
            if let Some(i) = well_known_index(name) {
                row[i] = Some(v);
            }
        }
        for (i, v) in row.iter().enumerate() {
            if let Some(b) = &mut text_cols[i] {
                b.append_option(v.and_then(|v| v.as_str()));
            } else if let Some(b) = &mut num_cols[i] {
                b.append_option(v.and_then(|v| v.as_f64()));
            }
        }
        properties.append_option(values_json(&e.properties, true, &mut buf));
        traits.append_option(values_json(&e.traits, false, &mut buf));
    }
    let mut columns: Vec<ArrayRef> = vec![
        Arc::new(customer.finish()),
        Arc::new(key.finish()),
        Arc::new(ts.finish()),
        Arc::new(seq.finish()),
        Arc::new(channel.finish()),
        Arc::new(activity.finish()),
        Arc::new(event_id.finish()),
        Arc::new(identifiers.finish()),
    ];
    for (text, num) in text_cols.iter_mut().zip(num_cols.iter_mut()) {
        match (text, num) {
            (Some(b), _) => columns.push(Arc::new(b.finish())),
            (None, Some(b)) => columns.push(Arc::new(b.finish())),
            (None, None) => unreachable!("every well-known property has a builder"),
        }
    }
    columns.push(Arc::new(properties.finish()));
    columns.push(Arc::new(traits.finish()));
    let batch = RecordBatch::try_new(schema, columns)
        .map_err(|e| StoreError::Encode(format!("segment batch: {e}")))?;
    write_batch(path, &batch, d)
}

/// Writes one sorted batch as a segment file and fsyncs it. Returns the file size.
fn write_batch(path: &Path, batch: &RecordBatch, d: &dyn Durability) -> Result<u64, StoreError> {
    let perr = |e: &dyn std::fmt::Display| StoreError::Parquet {
        path: path.to_path_buf(),
        message: e.to_string(),
    };
    let file = File::create(path).map_err(|e| StoreError::io(path, e))?;
    let mut props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_max_row_group_size(256 * 1024)
        // Small pages: a customer's rows (adjacent, as segments are sorted by customer) are
        // found through the page index and cost a page or two a column. Smaller pages make
        // views cheaper and scans dearer; 2,048 rows is the measured middle
        // (docs/benchmarks.md, "Stats, customer views and readers").
        .set_data_page_row_count_limit(KEY_PAGE_ROWS)
        .set_write_batch_size(KEY_PAGE_ROWS);
    // Nearly every value of these is distinct: a dictionary would be built and thrown away.
    for col in [
        COL_CUSTOMER,
        COL_KEY,
        COL_TIMESTAMP,
        COL_SEQ,
        COL_EVENT_ID,
        COL_IDENTIFIERS,
        COL_PROPERTIES,
        COL_TRAITS,
    ] {
        props = props.set_column_dictionary_enabled(ColumnPath::from(col), false);
    }
    let props = props.build();
    let mut writer =
        ArrowWriter::try_new(file, batch.schema(), Some(props)).map_err(|e| perr(&e))?;
    writer.write(batch).map_err(|e| perr(&e))?;
    let file = writer.into_inner().map_err(|e| perr(&e))?;
    d.sync_file(&file).map_err(|e| StoreError::Fsync {
        path: path.to_path_buf(),
        source: e,
    })?;
    Ok(file.metadata().map_err(|e| StoreError::io(path, e))?.len())
}

/// What a merge wrote.
pub struct Merged {
    pub rows: u64,
    pub min_ts: i64,
    pub max_ts: i64,
    pub bytes: u64,
    pub counts: SegmentCounts,
}

/// Merges segments into one, sorted by (customer, timestamp, key, seq), at the Arrow level:
/// columns are concatenated and reordered by one sort permutation, rows never decoded. A
/// segment written before keys were a column gets one (its customer ids).
pub fn merge_segments(
    inputs: &[std::path::PathBuf],
    out: &Path,
    d: &dyn Durability,
) -> Result<Merged, StoreError> {
    let schema = schema();
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    let mut batches = Vec::new();
    for p in inputs {
        read_columns(p, &names, |b| {
            batches.push(with_key(b, p)?);
            Ok(())
        })?;
    }
    let aerr = |e: &dyn std::fmt::Display| StoreError::Parquet {
        path: out.to_path_buf(),
        message: format!("merge: {e}"),
    };
    let Some(first) = batches.first() else {
        return Err(aerr(&"no rows to merge"));
    };
    let all =
        arrow_select::concat::concat_batches(&first.schema(), &batches).map_err(|e| aerr(&e))?;
    drop(batches);
    let sort_by = [COL_CUSTOMER, COL_TIMESTAMP, COL_KEY, COL_SEQ]
        .iter()
        .map(|c| {
            Ok(arrow_ord::sort::SortColumn {
                values: column(&all, c, out)?.clone(),
                options: None,
            })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    let order = arrow_ord::sort::lexsort_to_indices(&sort_by, None).map_err(|e| aerr(&e))?;
    let sorted = arrow_select::take::take_record_batch(&all, &order).map_err(|e| aerr(&e))?;
    drop(all);
    let ts = column(&sorted, COL_TIMESTAMP, out)?.as_primitive::<TimestampMicrosecondType>();
    let (min_ts, max_ts) = ts
        .values()
        .iter()
        .fold((i64::MAX, i64::MIN), |(lo, hi), &t| (lo.min(t), hi.max(t)));
    let mut counts = SegmentCounts::default();
    count_values(&sorted, COL_CHANNEL, out, &mut counts.channels)?;
    count_values(&sorted, COL_ACTIVITY, out, &mut counts.activities)?;
    let bytes = write_batch(out, &sorted, d)?;
    Ok(Merged {
        counts,
        rows: sorted.num_rows() as u64,
        min_ts,
        max_ts,
        bytes,
    })
}

/// Rows a data page holds at most.
pub const KEY_PAGE_ROWS: usize = 2048;

/// A segment's footer and page index, parsed once and shared by every keyed read of it.
#[derive(Clone)]
pub struct SegmentIndex {
    file: SegmentFile,
    metadata: ArrowReaderMetadata,
    customer_column: usize,
}

impl SegmentIndex {
    pub fn load(file: SegmentFile) -> Result<SegmentIndex, StoreError> {
        let path = file.path().to_path_buf();
        let metadata = journey_metadata(&file, true)?;
        let customer_column = metadata
            .parquet_schema()
            .columns()
            .iter()
            .position(|c| c.name() == COL_CUSTOMER)
            .ok_or_else(|| bad(&path, format!("segment has no column '{COL_CUSTOMER}'")))?;
        Ok(SegmentIndex {
            file,
            metadata,
            customer_column,
        })
    }

    pub fn file(&self) -> &SegmentFile {
        &self.file
    }

    /// Whether any row may be filed under one of `customers` (sorted), by the statistics.
    pub fn admits(&self, customers: &[u64]) -> bool {
        self.select(customers).is_some()
    }

    /// The row groups, and the rows within them, whose customer statistics admit one of
    /// `keys` (sorted): row-group statistics first, then the page index where the file has
    /// one. `None` when no row can hold one of them.
    fn select(&self, keys: &[u64]) -> Option<(Vec<usize>, RowSelection)> {
        let admits = |lo: u64, hi: u64| {
            let i = keys.partition_point(|&k| k < lo);
            i < keys.len() && keys[i] <= hi
        };
        let meta = self.metadata.metadata();
        let col = self.customer_column;
        let mut groups = Vec::new();
        let mut selectors = Vec::new();
        for (g, group) in meta.row_groups().iter().enumerate() {
            let rows = group.num_rows() as usize;
            // Customer keys are below 2^63, so the signed statistics order them correctly.
            let range = match group.column(col).statistics() {
                Some(Statistics::Int64(s)) => s.min_opt().zip(s.max_opt()),
                _ => None,
            };
            if range.is_some_and(|(&lo, &hi)| !admits(lo as u64, hi as u64)) {
                continue;
            }
            groups.push(g);
            let pages = meta
                .offset_index()
                .and_then(|o| o.get(g))
                .map(|o| o[col].page_locations());
            let index = meta.column_index().and_then(|c| c.get(g)).map(|c| &c[col]);
            match (pages, index) {
                (Some(pages), Some(ColumnIndexMetaData::INT64(index)))
                    if pages.len() as u64 == index.num_pages() =>
                {
                    for (p, page) in pages.iter().enumerate() {
                        let start = page.first_row_index as usize;
                        let end = pages
                            .get(p + 1)
                            .map_or(rows, |n| n.first_row_index as usize);
                        let keep = match (index.min_value(p), index.max_value(p)) {
                            (Some(&lo), Some(&hi)) => admits(lo as u64, hi as u64),
                            _ => !index.is_null_page(p),
                        };
                        selectors.push(if keep {
                            RowSelector::select(end - start)
                        } else {
                            RowSelector::skip(end - start)
                        });
                    }
                }
                _ => selectors.push(RowSelector::select(rows)),
            }
        }
        let selection = RowSelection::from(selectors);
        (!groups.is_empty() && selection.selects_any()).then_some((groups, selection))
    }
}

/// Reads the named columns of the rows of `keys` (sorted) in a segment, batch by batch:
/// only the pages that may hold them are read, and each batch holds their rows alone.
/// Returns how many rows were decoded to find them.
pub fn read_key_columns(
    index: &SegmentIndex,
    columns: &[&str],
    keys: &[u64],
    mut each: impl FnMut(&RecordBatch) -> Result<(), StoreError>,
) -> Result<u64, StoreError> {
    let path = index.file.path();
    let perr = |e: &dyn std::fmt::Display| StoreError::Parquet {
        path: path.to_path_buf(),
        message: e.to_string(),
    };
    let Some((groups, selection)) = index.select(keys) else {
        return Ok(0);
    };
    let builder = ParquetRecordBatchReaderBuilder::new_with_metadata(
        index.file.clone(),
        index.metadata.clone(),
    );
    let mask = projection(builder.parquet_schema(), columns, path)?;
    let reader = builder
        .with_projection(mask)
        .with_row_groups(groups)
        .with_row_selection(selection)
        .with_batch_size(64 * 1024)
        .build()
        .map_err(|e| perr(&e))?;
    let mut decoded = 0;
    for batch in reader {
        let batch = batch.map_err(|e| perr(&e))?;
        decoded += batch.num_rows() as u64;
        let customer = column(&batch, COL_CUSTOMER, path)?.as_primitive::<UInt64Type>();
        let wanted: BooleanArray = customer
            .values()
            .iter()
            .map(|c| Some(keys.binary_search(c).is_ok()))
            .collect();
        if wanted.true_count() == 0 {
            continue;
        }
        let rows =
            arrow_select::filter::filter_record_batch(&batch, &wanted).map_err(|e| perr(&e))?;
        each(&rows)?;
    }
    Ok(decoded)
}

/// The projection of `columns`, each of which the segment must have, except the key
/// column, which segments written before it lack ([`keys`] stands in).
fn projection(
    parquet_schema: &parquet::schema::types::SchemaDescriptor,
    columns: &[&str],
    path: &Path,
) -> Result<ProjectionMask, StoreError> {
    let mut indices = Vec::with_capacity(columns.len());
    for c in columns {
        match parquet_schema
            .columns()
            .iter()
            .position(|col| col.name() == *c)
        {
            Some(i) => indices.push(i),
            None if *c == COL_KEY => {}
            None => return Err(bad(path, format!("segment has no column '{c}'"))),
        }
    }
    Ok(ProjectionMask::leaves(parquet_schema, indices))
}

/// The write-time keys of a batch's rows: its key column, or for a segment written before
/// there was one, its customer ids (each row was then filed under its key).
pub fn keys<'a>(batch: &'a RecordBatch, path: &Path) -> Result<&'a [u64], StoreError> {
    let col = match batch.column_by_name(COL_KEY) {
        Some(col) => col,
        None => column(batch, COL_CUSTOMER, path)?,
    };
    Ok(col.as_primitive::<UInt64Type>().values())
}

/// `batch` in today's schema: with a key column (its customer ids) if it has none.
fn with_key(batch: &RecordBatch, path: &Path) -> Result<RecordBatch, StoreError> {
    if batch.column_by_name(COL_KEY).is_some() {
        return Ok(batch.clone());
    }
    let at = batch
        .schema()
        .index_of(COL_CUSTOMER)
        .map_err(|_| bad(path, format!("segment has no column '{COL_CUSTOMER}'")))?;
    let mut fields: Vec<_> = batch.schema().fields().iter().cloned().collect();
    let mut columns = batch.columns().to_vec();
    fields.insert(
        at + 1,
        Arc::new(Field::new(COL_KEY, DataType::UInt64, false)),
    );
    columns.insert(at + 1, batch.column(at).clone());
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
        .map_err(|e| bad(path, format!("adding the key column: {e}")))
}

/// Adds the events of `batch` per value of its dictionary-encoded text column `name`.
fn count_values(
    batch: &RecordBatch,
    name: &str,
    path: &Path,
    into: &mut BTreeMap<String, u64>,
) -> Result<(), StoreError> {
    let (keys, values) = dictionary(batch, name, path)?;
    let mut per_value = vec![0u64; values.len()];
    for &k in keys.keys().values() {
        let slot = per_value
            .get_mut(k as usize)
            .ok_or_else(|| bad(path, format!("column '{name}' has a code out of range")))?;
        *slot += 1;
    }
    for (i, n) in per_value.into_iter().enumerate() {
        if n > 0 {
            *into.entry(values.value(i).to_string()).or_default() += n;
        }
    }
    Ok(())
}

/// Events of a segment by channel and by activity, from those two columns alone: for
/// segments of manifests written before the manifest kept counts.
pub fn count_segment(segment: &SegmentFile) -> Result<SegmentCounts, StoreError> {
    let mut counts = SegmentCounts::default();
    read_columns_of(segment, &[COL_CHANNEL, COL_ACTIVITY], |batch| {
        count_values(batch, COL_CHANNEL, segment.path(), &mut counts.channels)?;
        count_values(batch, COL_ACTIVITY, segment.path(), &mut counts.activities)
    })?;
    Ok(counts)
}

/// An open segment file. Reads are positional (`pread`), so one handle serves any number
/// of threads at once; a read-only store keeps one per segment of its manifest, which
/// keeps the file readable after a writer's compaction deletes it.
#[derive(Clone, Debug)]
pub struct SegmentFile {
    path: PathBuf,
    file: Arc<File>,
    len: u64,
}

impl SegmentFile {
    pub fn open(path: &Path) -> Result<SegmentFile, StoreError> {
        let file = File::open(path).map_err(|e| StoreError::io(path, e))?;
        let len = file.metadata().map_err(|e| StoreError::io(path, e))?.len();
        Ok(SegmentFile {
            path: path.to_path_buf(),
            file: Arc::new(file),
            len,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The whole file (for small files such as placement runs).
    pub fn read_all(&self) -> Result<Vec<u8>, StoreError> {
        let mut buf = vec![0u8; self.len as usize];
        self.file
            .read_exact_at(&mut buf, 0)
            .map_err(|e| StoreError::io(&self.path, e))?;
        Ok(buf)
    }
}

impl parquet::file::reader::Length for SegmentFile {
    fn len(&self) -> u64 {
        self.len
    }
}

/// A reader of a [`SegmentFile`] from one offset on.
pub struct SegmentRead {
    file: Arc<File>,
    pos: u64,
}

impl std::io::Read for SegmentRead {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.file.read_at(buf, self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl parquet::file::reader::ChunkReader for SegmentFile {
    type T = SegmentRead;

    fn get_read(&self, start: u64) -> parquet::errors::Result<SegmentRead> {
        Ok(SegmentRead {
            file: self.file.clone(),
            pos: start,
        })
    }

    fn get_bytes(&self, start: u64, length: usize) -> parquet::errors::Result<bytes::Bytes> {
        let mut buf = vec![0u8; length];
        self.file
            .read_exact_at(&mut buf, start)
            .map_err(|e| parquet::errors::ParquetError::External(Box::new(e)))?;
        Ok(buf.into())
    }
}

/// Reads the named columns of a segment, batch by batch.
pub fn read_columns(
    path: &Path,
    columns: &[&str],
    each: impl FnMut(&RecordBatch) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    read_columns_of(&SegmentFile::open(path)?, columns, each)
}

/// [`read_columns`] of an open segment file.
pub fn read_columns_of(
    segment: &SegmentFile,
    columns: &[&str],
    mut each: impl FnMut(&RecordBatch) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    let path = segment.path();
    let perr = |e: &dyn std::fmt::Display| StoreError::Parquet {
        path: path.to_path_buf(),
        message: e.to_string(),
    };
    let builder =
        ParquetRecordBatchReaderBuilder::try_new(segment.clone()).map_err(|e| perr(&e))?;
    let mask = projection(builder.parquet_schema(), columns, path)?;
    let reader = builder
        .with_projection(mask)
        .with_batch_size(64 * 1024)
        .build()
        .map_err(|e| perr(&e))?;
    for batch in reader {
        let batch = batch.map_err(|e| perr(&e))?;
        each(&batch)?;
    }
    Ok(())
}

/// A segment's reader metadata for building journeys: low-cardinality well-known text
/// columns (`device`, `outcome`, …) are read as dictionary arrays, so the reader hands over
/// each page's dictionary and its keys instead of one string per event, and the builder
/// codes a value once per batch instead of hashing it on every event. Identifier-like
/// columns stay plain: their dictionaries would be as long as the column.
pub fn journey_metadata(
    file: &SegmentFile,
    page_index: bool,
) -> Result<ArrowReaderMetadata, StoreError> {
    let path = file.path();
    let perr = |e: &dyn std::fmt::Display| StoreError::Parquet {
        path: path.to_path_buf(),
        message: e.to_string(),
    };
    let options = ArrowReaderOptions::new().with_page_index(page_index);
    let plain = ArrowReaderMetadata::load(file, options.clone()).map_err(|e| perr(&e))?;
    let dict = DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8));
    let fields: Vec<Field> = plain
        .schema()
        .fields()
        .iter()
        .map(|f| {
            let low_cardinality = matches!(
                well_known_type(f.name()),
                Some(WellKnownType::Text | WellKnownType::Outcome)
            );
            if low_cardinality && f.data_type() == &DataType::Utf8 {
                f.as_ref().clone().with_data_type(dict.clone())
            } else {
                f.as_ref().clone()
            }
        })
        .collect();
    let hint = Arc::new(Schema::new_with_metadata(
        fields,
        plain.schema().metadata().clone(),
    ));
    ArrowReaderMetadata::try_new(plain.metadata().clone(), options.with_schema(hint))
        .map_err(|e| perr(&e))
}

/// Like [`read_columns_of`], through [`journey_metadata`]: well-known text columns come as
/// dictionary arrays.
pub fn read_journey_columns(
    segment: &SegmentFile,
    columns: &[&str],
    mut each: impl FnMut(&RecordBatch) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    let path = segment.path();
    let metadata = journey_metadata(segment, false)?;
    let builder = ParquetRecordBatchReaderBuilder::new_with_metadata(segment.clone(), metadata);
    let mask = projection(builder.parquet_schema(), columns, path)?;
    let reader = builder
        .with_projection(mask)
        .with_batch_size(64 * 1024)
        .build()
        .map_err(|e| StoreError::Parquet {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
    for batch in reader {
        let batch = batch.map_err(|e| StoreError::Parquet {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        each(&batch)?;
    }
    Ok(())
}

pub fn column<'a>(
    batch: &'a RecordBatch,
    name: &str,
    path: &Path,
) -> Result<&'a ArrayRef, StoreError> {
    batch
        .column_by_name(name)
        .ok_or_else(|| StoreError::Corrupt {
            path: path.to_path_buf(),
            reason: format!("segment has no column '{name}'"),
        })
}

pub fn dictionary<'a>(
    batch: &'a RecordBatch,
    name: &str,
    path: &Path,
) -> Result<(&'a DictionaryArray<Int32Type>, &'a StringArray), StoreError> {
    dictionary_column(column(batch, name, path)?, name, path)
}

/// A column as dictionary-encoded text, or an error naming it.
pub fn dictionary_column<'a>(
    col: &'a ArrayRef,
    name: &str,
    path: &Path,
) -> Result<(&'a DictionaryArray<Int32Type>, &'a StringArray), StoreError> {
    let dict = col
        .as_dictionary_opt::<Int32Type>()
        .ok_or_else(|| StoreError::Corrupt {
            path: path.to_path_buf(),
            reason: format!("column '{name}' is not dictionary-encoded text"),
        })?;
    let values = dict
        .values()
        .as_string_opt::<i32>()
        .ok_or_else(|| StoreError::Corrupt {
            path: path.to_path_buf(),
            reason: format!("column '{name}' has non-text values"),
        })?;
    Ok((dict, values))
}

fn bad(path: &Path, what: String) -> StoreError {
    StoreError::Corrupt {
        path: path.to_path_buf(),
        reason: what,
    }
}

fn json_values(text: &str, path: &Path) -> Result<Properties, StoreError> {
    let v: serde_json::Value =
        serde_json::from_str(text).map_err(|e| bad(path, format!("bad values json: {e}")))?;
    let obj = v
        .as_object()
        .ok_or_else(|| bad(path, "values json is not an object".into()))?;
    obj.iter()
        .map(|(k, v)| {
            let value = match v {
                serde_json::Value::String(s) => Value::Str(s.as_str().into()),
                serde_json::Value::Bool(b) => Value::Bool(*b),
                serde_json::Value::Number(n) => Value::Num(n.as_f64().unwrap_or(f64::NAN)),
                other => return Err(bad(path, format!("unexpected value {other}"))),
            };
            Ok((k.as_str().into(), value))
        })
        .collect()
}

/// Reads whole records back (for erasure, exports and tests), each under its write-time key.
pub fn read_records(path: &Path, project: ProjectId) -> Result<Vec<LogRecord>, StoreError> {
    read_records_of(&SegmentFile::open(path)?, project)
}

/// [`read_records`] of an open segment file.
pub fn read_records_of(
    segment: &SegmentFile,
    project: ProjectId,
) -> Result<Vec<LogRecord>, StoreError> {
    let path = segment.path();
    let schema = schema();
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    let mut out = Vec::new();
    read_columns_of(segment, &names, |batch| {
        let keys = keys(batch, path)?;
        let ts = column(batch, COL_TIMESTAMP, path)?.as_primitive::<TimestampMicrosecondType>();
        let seq = column(batch, COL_SEQ, path)?.as_primitive::<UInt64Type>();
        let (ch_keys, ch_values) = dictionary(batch, COL_CHANNEL, path)?;
        let (act_keys, act_values) = dictionary(batch, COL_ACTIVITY, path)?;
        let event_id = column(batch, COL_EVENT_ID, path)?.as_string::<i32>();
        let identifiers = column(batch, COL_IDENTIFIERS, path)?.as_string::<i32>();
        let properties = column(batch, COL_PROPERTIES, path)?.as_string::<i32>();
        let traits = column(batch, COL_TRAITS, path)?.as_string::<i32>();
        for (row, &key) in keys.iter().enumerate() {
            let channel_text = ch_values.value(ch_keys.keys().value(row) as usize);
            let channel =
                Channel::parse(channel_text).map_err(|e| bad(path, format!("row {row}: {e}")))?;
            let ids_json: serde_json::Value = serde_json::from_str(identifiers.value(row))
                .map_err(|e| bad(path, format!("row {row}: identifiers: {e}")))?;
            let mut ids = Vec::new();
            for pair in ids_json.as_array().into_iter().flatten() {
                let (Some(kind), Some(value)) = (pair[0].as_str(), pair[1].as_str()) else {
                    return Err(bad(path, format!("row {row}: bad identifier pair")));
                };
                let kind = IdentifierKind::parse(kind)
                    .map_err(|e| bad(path, format!("row {row}: {e}")))?;
                ids.push(Identifier {
                    kind,
                    value: value.to_string(),
                });
            }
            let mut props = if properties.is_null(row) {
                Properties::new()
            } else {
                json_values(properties.value(row), path)?
            };
            for (name, ty) in WELL_KNOWN_PROPERTIES {
                let col = column(batch, name, path)?;
                if col.is_null(row) {
                    continue;
                }
                let v = if is_text(ty) {
                    Value::Str(col.as_string::<i32>().value(row).into())
                } else {
                    Value::Num(
                        col.as_primitive::<arrow_array::types::Float64Type>()
                            .value(row),
                    )
                };
                props.insert(name.into(), v);
            }
            out.push(LogRecord {
                seq: seq.value(row),
                project,
                customer: CustomerId(key),
                event: Event {
                    event_id: (!event_id.is_null(row)).then(|| event_id.value(row).into()),
                    timestamp: Timestamp::from_micros(ts.value(row)),
                    identifiers: ids,
                    channel,
                    activity: act_values.value(act_keys.keys().value(row) as usize).into(),
                    properties: props,
                    traits: if traits.is_null(row) {
                        Properties::new()
                    } else {
                        json_values(traits.value(row), path)?
                    },
                },
            });
        }
        Ok(())
    })?;
    Ok(out)
}
