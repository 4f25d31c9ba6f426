//! Parquet reading through the Arrow reader: only the columns the plan uses are decoded, and
//! each column is downcast once per record batch, so a row costs one `match` per cell.

use super::mapping::{Cell, ColumnMapping, Plan, Row};
use super::{truncate_raw, Batch, EventReader, ImportError, Reject};
use arrow_array::cast::AsArray;
use arrow_array::types::{
    Date32Type, Date64Type, Int16Type, Int32Type, Int8Type, TimestampMicrosecondType,
    TimestampMillisecondType, TimestampNanosecondType, TimestampSecondType, UInt16Type, UInt32Type,
    UInt8Type,
};
use arrow_array::{
    Array, ArrayRef, ArrowPrimitiveType, BooleanArray, Float32Array, Float64Array, Int64Array,
    LargeStringArray, PrimitiveArray, RecordBatch, StringArray, StringViewArray, UInt64Array,
};
use arrow_schema::{DataType, TimeUnit};
use omnitrail_model::MICROS_PER_SECOND;
use parquet::arrow::arrow_reader::{ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder};
use parquet::arrow::ProjectionMask;
use std::borrow::Cow;
use std::fs::File;
use std::path::Path;

const RECORD_BATCH_ROWS: usize = 8192;
const MICROS_PER_DAY: i64 = 86_400 * MICROS_PER_SECOND;

pub(crate) struct ParquetReader {
    file: String,
    batches: ParquetRecordBatchReader,
    plan: Plan,
    /// For each column of the file, its position in the projected record batches.
    projected: Vec<Option<usize>>,
    current: Option<RecordBatch>,
    /// The next row of `current` to read.
    offset: usize,
    rows_read: u64,
    total_rows: u64,
    total_bytes: u64,
}

impl ParquetReader {
    pub(crate) fn open(
        path: &Path,
        file: String,
        mapping: &ColumnMapping,
    ) -> Result<Self, ImportError> {
        let io = |source| ImportError::Io {
            file: file.clone(),
            source,
        };
        let handle = File::open(path).map_err(io)?;
        let total_bytes = handle.metadata().map_err(io)?.len();
        let builder =
            ParquetRecordBatchReaderBuilder::try_new(handle).map_err(|e| ImportError::Invalid {
                file: file.clone(),
                reason: format!("not a readable Parquet file: {e}"),
            })?;
        let schema = builder.schema().clone();
        let headers: Vec<String> = schema.fields().iter().map(|f| f.name().clone()).collect();
        let plan = Plan::new(&file, &headers, mapping)?;
        for column in plan.required_columns() {
            let data_type = schema.field(column).data_type();
            let empty = arrow_array::new_empty_array(data_type);
            if matches!(Column::new(empty.as_ref()), Column::Unsupported) {
                return Err(ImportError::Invalid {
                    file,
                    reason: format!(
                        "column '{}' has the Arrow type {data_type}, which cannot hold an id, activity or timestamp",
                        headers[column]
                    ),
                });
            }
        }
        let used = plan.used_columns();
        let mut projected = vec![None; headers.len()];
        for (position, &column) in used.iter().enumerate() {
            projected[column] = Some(position);
        }
        let total_rows = u64::try_from(builder.metadata().file_metadata().num_rows()).unwrap_or(0);
        let mask = ProjectionMask::roots(builder.parquet_schema(), used);
        let batches = builder
            .with_projection(mask)
            .with_batch_size(RECORD_BATCH_ROWS)
            .build()
            .map_err(|e| ImportError::Invalid {
                file: file.clone(),
                reason: format!("cannot read Parquet: {e}"),
            })?;
        Ok(ParquetReader {
            file,
            batches,
            plan,
            projected,
            current: None,
            offset: 0,
            rows_read: 0,
            total_rows,
            total_bytes,
        })
    }

    /// The current record batch, pulling the next one when it is used up; `None` at the end.
    fn current(&mut self) -> Result<Option<RecordBatch>, ImportError> {
        loop {
            if let Some(batch) = &self.current {
                if self.offset < batch.num_rows() {
                    return Ok(Some(batch.clone()));
                }
            }
            match self.batches.next() {
                None => return Ok(None),
                Some(Ok(batch)) => {
                    self.current = Some(batch);
                    self.offset = 0;
                }
                Some(Err(e)) => {
                    return Err(ImportError::Invalid {
                        file: self.file.clone(),
                        reason: format!("cannot read Parquet after row {}: {e}", self.rows_read),
                    })
                }
            }
        }
    }
}

impl EventReader for ParquetReader {
    fn next_batch(&mut self, max_events: usize) -> Result<Option<Batch>, ImportError> {
        let mut out = Batch::default();
        let max = max_events.max(1);
        while out.len() < max {
            let Some(record_batch) = self.current()? else {
                break;
            };
            let take = (record_batch.num_rows() - self.offset).min(max - out.len());
            let slices: Vec<Option<ArrayRef>> = self
                .projected
                .iter()
                .map(|p| p.map(|i| record_batch.column(i).slice(self.offset, take)))
                .collect();
            let columns: Vec<Column> = slices
                .iter()
                .map(|s| s.as_deref().map_or(Column::Unsupported, Column::new))
                .collect();
            for index in 0..take {
                let row = ParquetRow {
                    columns: &columns,
                    index,
                };
                let line = self.rows_read + index as u64 + 1;
                match self.plan.build(&row) {
                    Ok(event) => out.events.push(event),
                    Err(e) => out.rejects.push(Reject {
                        file: self.file.clone(),
                        line,
                        field: e.field,
                        reason: e.reason,
                        raw: row.raw(self.plan.headers()),
                    }),
                }
            }
            self.offset += take;
            self.rows_read += take as u64;
        }
        Ok((out.len() > 0).then_some(out))
    }

    /// Parquet is compressed column by column, so rows read are the honest measure of
    /// progress; they are scaled to the file size.
    fn bytes_read(&self) -> u64 {
        if self.total_rows == 0 {
            return self.total_bytes;
        }
        let fraction = self.rows_read as f64 / self.total_rows as f64;
        (self.total_bytes as f64 * fraction.min(1.0)) as u64
    }

    fn total_bytes(&self) -> u64 {
        self.total_bytes
    }
}

/// One column of a record batch, downcast to its concrete array type.
enum Column<'a> {
    Str(&'a StringArray),
    LargeStr(&'a LargeStringArray),
    StrView(&'a StringViewArray),
    Dict {
        array: &'a dyn Array,
        keys: Vec<usize>,
        values: Box<Column<'a>>,
    },
    I64(&'a Int64Array),
    U64(&'a UInt64Array),
    /// Narrower integers, widened once per batch.
    Ints(Vec<Option<i64>>),
    F64(&'a Float64Array),
    F32(&'a Float32Array),
    Bool(&'a BooleanArray),
    /// Timestamps and dates of any unit, in UTC microseconds. A timestamp without a time zone
    /// is taken as UTC, as text timestamps without an offset are.
    Micros(Vec<Option<i64>>),
    /// Types that hold no single value (lists, structs, binary), and columns not read.
    Unsupported,
}

fn widen<T: ArrowPrimitiveType>(
    array: &PrimitiveArray<T>,
    f: impl Fn(T::Native) -> i64,
) -> Vec<Option<i64>> {
    array.iter().map(|v| v.map(&f)).collect()
}

impl<'a> Column<'a> {
    fn new(array: &'a dyn Array) -> Column<'a> {
        match array.data_type() {
            DataType::Utf8 => Column::Str(array.as_string::<i32>()),
            DataType::LargeUtf8 => Column::LargeStr(array.as_string::<i64>()),
            DataType::Utf8View => Column::StrView(array.as_string_view()),
            DataType::Dictionary(_, _) => {
                let dict = array.as_any_dictionary();
                // Without values every key is null (and `normalized_keys` would panic).
                let keys = if dict.values().is_empty() {
                    Vec::new()
                } else {
                    dict.normalized_keys()
                };
                Column::Dict {
                    array,
                    keys,
                    values: Box::new(Column::new(dict.values().as_ref())),
                }
            }
            DataType::Int64 => Column::I64(array.as_primitive()),
            DataType::UInt64 => Column::U64(array.as_primitive()),
            DataType::Int32 => Column::Ints(widen(array.as_primitive::<Int32Type>(), i64::from)),
            DataType::Int16 => Column::Ints(widen(array.as_primitive::<Int16Type>(), i64::from)),
            DataType::Int8 => Column::Ints(widen(array.as_primitive::<Int8Type>(), i64::from)),
            DataType::UInt32 => Column::Ints(widen(array.as_primitive::<UInt32Type>(), i64::from)),
            DataType::UInt16 => Column::Ints(widen(array.as_primitive::<UInt16Type>(), i64::from)),
            DataType::UInt8 => Column::Ints(widen(array.as_primitive::<UInt8Type>(), i64::from)),
            DataType::Float64 => Column::F64(array.as_primitive()),
            DataType::Float32 => Column::F32(array.as_primitive()),
            DataType::Boolean => Column::Bool(array.as_boolean()),
            DataType::Timestamp(TimeUnit::Second, _) => {
                Column::Micros(widen(array.as_primitive::<TimestampSecondType>(), |s| {
                    s.saturating_mul(MICROS_PER_SECOND)
                }))
            }
            DataType::Timestamp(TimeUnit::Millisecond, _) => Column::Micros(widen(
                array.as_primitive::<TimestampMillisecondType>(),
                |ms| ms.saturating_mul(1000),
            )),
            DataType::Timestamp(TimeUnit::Microsecond, _) => Column::Micros(widen(
                array.as_primitive::<TimestampMicrosecondType>(),
                |us| us,
            )),
            DataType::Timestamp(TimeUnit::Nanosecond, _) => Column::Micros(widen(
                array.as_primitive::<TimestampNanosecondType>(),
                |ns| ns.div_euclid(1000),
            )),
            DataType::Date32 => Column::Micros(widen(array.as_primitive::<Date32Type>(), |d| {
                i64::from(d) * MICROS_PER_DAY
            })),
            DataType::Date64 => Column::Micros(widen(array.as_primitive::<Date64Type>(), |ms| {
                ms.saturating_mul(1000)
            })),
            _ => Column::Unsupported,
        }
    }

    fn cell(&self, i: usize) -> Cell<'a> {
        let text = |s: &'a str| Cell::Text(Cow::Borrowed(s));
        match self {
            Column::Str(a) if a.is_valid(i) => text(a.value(i)),
            Column::LargeStr(a) if a.is_valid(i) => text(a.value(i)),
            Column::StrView(a) if a.is_valid(i) => text(a.value(i)),
            Column::Dict {
                array,
                keys,
                values,
            } if array.is_valid(i) => keys.get(i).map_or(Cell::Null, |&k| values.cell(k)),
            Column::I64(a) if a.is_valid(i) => Cell::Int(a.value(i)),
            // Beyond i64 the digits are kept exactly, as text.
            Column::U64(a) if a.is_valid(i) => i64::try_from(a.value(i)).map_or_else(
                |_| Cell::Text(Cow::Owned(a.value(i).to_string())),
                Cell::Int,
            ),
            Column::Ints(v) => v[i].map_or(Cell::Null, Cell::Int),
            Column::F64(a) if a.is_valid(i) => Cell::Num(a.value(i)),
            Column::F32(a) if a.is_valid(i) => Cell::Num(f64::from(a.value(i))),
            Column::Bool(a) if a.is_valid(i) => Cell::Bool(a.value(i)),
            Column::Micros(v) => v[i].map_or(Cell::Null, Cell::Micros),
            _ => Cell::Null,
        }
    }
}

struct ParquetRow<'c, 'a> {
    columns: &'c [Column<'a>],
    index: usize,
}

impl Row for ParquetRow<'_, '_> {
    fn cell(&self, column: usize) -> Result<Cell<'_>, String> {
        Ok(self.columns[column].cell(self.index))
    }
}

impl ParquetRow<'_, '_> {
    /// The row's read columns as `name=value` pairs, for rejects.
    fn raw(&self, headers: &[String]) -> String {
        let pairs: Vec<String> = self
            .columns
            .iter()
            .zip(headers)
            .filter(|(c, _)| !matches!(c, Column::Unsupported))
            .map(|(c, h)| format!("{h}={}", c.cell(self.index).to_text()))
            .collect();
        truncate_raw(pairs.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::super::{open, ImportOptions};
    use super::*;
    use arrow_array::builder::StringDictionaryBuilder;
    use arrow_array::types::Int32Type;
    use arrow_array::{Int32Array, TimestampMillisecondArray};
    use arrow_schema::{Field, Schema};
    use omnitrail_model::{Channel, Timestamp, Value};
    use parquet::arrow::ArrowWriter;
    use std::sync::Arc;

    fn write(batch: &RecordBatch) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("events.parquet");
        let file = File::create(&path).expect("create");
        let mut writer = ArrowWriter::try_new(file, batch.schema(), None).expect("writer");
        writer.write(batch).expect("write");
        writer.close().expect("close");
        (dir, path)
    }

    #[test]
    fn reads_typed_columns_with_rejects_by_row_number() {
        let schema = Schema::new(vec![
            Field::new("customer_id", DataType::UInt64, false),
            Field::new(
                "timestamp",
                DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
                true,
            ),
            Field::new("channel", DataType::Utf8, true),
            Field::new(
                "activity",
                DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8)),
                true,
            ),
            Field::new("agent", DataType::Int32, true),
            Field::new("sentiment", DataType::Float64, true),
            Field::new("vip", DataType::Boolean, true),
        ]);
        let mut activity = StringDictionaryBuilder::<Int32Type>::new();
        for a in [Some("login"), Some("pay"), None, Some("call")] {
            activity.append_option(a);
        }
        let t0 = 1_767_225_600_000i64;
        let batch = RecordBatch::try_new(
            Arc::new(schema),
            vec![
                Arc::new(UInt64Array::from(vec![7, 7, 8, u64::MAX])),
                Arc::new(
                    TimestampMillisecondArray::from(vec![Some(t0), Some(t0), Some(t0), None])
                        .with_timezone("UTC"),
                ),
                Arc::new(StringArray::from(vec![
                    Some("web"),
                    None,
                    Some("phone"),
                    Some("phone"),
                ])),
                Arc::new(activity.finish()),
                Arc::new(Int32Array::from(vec![Some(17), None, None, None])),
                Arc::new(Float64Array::from(vec![Some(-0.5), None, None, None])),
                Arc::new(BooleanArray::from(vec![Some(true), None, None, None])),
            ],
        )
        .expect("batch");
        let (_dir, path) = write(&batch);
        let mut reader = open(&path, &ImportOptions::default()).expect("open");
        let mut all = Batch::default();
        while let Some(b) = reader.next_batch(3).expect("read") {
            all.events.extend(b.events);
            all.rejects.extend(b.rejects);
        }
        assert_eq!(reader.bytes_read(), reader.total_bytes());
        assert_eq!(all.events.len(), 2);
        let e = &all.events[0];
        assert_eq!(e.identifiers[0].to_string(), "user_id:7");
        assert_eq!(e.timestamp, Timestamp::from_secs(1_767_225_600));
        assert_eq!(
            (e.channel.clone(), e.activity.as_str()),
            (Channel::Web, "login")
        );
        assert_eq!(e.properties["agent"], Value::Str("17".into()));
        assert_eq!(e.properties["sentiment"], Value::Num(-0.5));
        assert_eq!(e.properties["vip"], Value::Bool(true));
        assert_eq!(all.events[1].channel, Channel::Other);
        let got: Vec<(u64, &str)> = all
            .rejects
            .iter()
            .map(|r| (r.line, r.field.as_str()))
            .collect();
        assert_eq!(got, [(3, "activity"), (4, "timestamp")]);
        assert!(all.rejects[1]
            .raw
            .starts_with("customer_id=18446744073709551615, timestamp="));
    }

    #[test]
    fn text_and_epoch_timestamps_and_missing_columns() {
        let schema = Schema::new(vec![
            Field::new("case", DataType::Utf8, false),
            Field::new("event", DataType::LargeUtf8, false),
            Field::new("time", DataType::Int64, false),
        ]);
        let batch = RecordBatch::try_new(
            Arc::new(schema),
            vec![
                Arc::new(StringArray::from(vec!["c1"])),
                Arc::new(LargeStringArray::from(vec!["open"])),
                Arc::new(Int64Array::from(vec![1_767_225_600_000])),
            ],
        )
        .expect("batch");
        let (_dir, path) = write(&batch);
        let mut reader = open(&path, &ImportOptions::default()).expect("open");
        let b = reader.next_batch(10).expect("read").expect("a batch");
        assert_eq!(b.events[0].timestamp, Timestamp::from_secs(1_767_225_600));
        let mut opts = ImportOptions::default();
        opts.mapping.timestamp = Some("when".into());
        let err = open(&path, &opts).err().map(|e| e.to_string());
        assert!(err.is_some_and(|e| e.contains("column 'when' named with --timestamp")));
    }
}
