//! CSV/TSV reading: delimiter and encoding detection, then one reused `ByteRecord` per row
//! decoded field by field, so a row costs its event and little more.

use super::mapping::{Cell, Plan, Row};
use super::{
    count_newlines, open_input, truncate_raw, Batch, EventReader, ImportError, ImportOptions,
    Progress, Reject, TextEncoding,
};
use ::csv::{ByteRecord, ReaderBuilder};
use encoding_rs::WINDOWS_1252;
use std::borrow::Cow;
use std::collections::VecDeque;
use std::io::{BufRead, Cursor, Read};
use std::path::Path;

/// How much of the file is looked at to choose the encoding and the delimiter.
const SAMPLE_BYTES: usize = 64 * 1024;
const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";
/// The delimiters tried on the header line, the first one winning ties.
const DELIMITERS: [u8; 4] = [b',', b';', b'\t', b'|'];

type Input = LineIndex<std::io::Chain<Cursor<Vec<u8>>, Box<dyn BufRead + Send>>>;

pub(crate) struct CsvReader {
    file: String,
    reader: ::csv::Reader<Input>,
    plan: Plan,
    encoding: TextEncoding,
    delimiter: u8,
    columns: usize,
    record: ByteRecord,
    progress: Progress,
    done: bool,
}

impl CsvReader {
    pub(crate) fn open(
        path: &Path,
        file: String,
        opts: &ImportOptions,
    ) -> Result<Self, ImportError> {
        let (mut input, progress) = open_input(path, &file)?;
        let mut sample = Vec::with_capacity(SAMPLE_BYTES);
        (&mut input)
            .take(SAMPLE_BYTES as u64)
            .read_to_end(&mut sample)
            .map_err(|source| ImportError::Io {
                file: file.clone(),
                source,
            })?;
        if sample.starts_with(UTF8_BOM) {
            sample.drain(..UTF8_BOM.len());
        }
        let encoding = opts.encoding.unwrap_or_else(|| detect_encoding(&sample));
        let delimiter = opts.delimiter.unwrap_or_else(|| sniff_delimiter(&sample));
        let mut reader = ReaderBuilder::new()
            .delimiter(delimiter)
            .has_headers(true)
            // Rows with the wrong number of fields are checked here, as rejects with their
            // line number, rather than as an error that would end the import.
            .flexible(true)
            .from_reader(LineIndex::new(Cursor::new(sample).chain(input)));
        let headers = reader.byte_headers().map_err(|e| csv_error(&file, &e))?;
        let headers: Vec<String> = headers
            .iter()
            .map(|h| decode(h, encoding).map(Cow::into_owned))
            .collect::<Result<_, _>>()
            .map_err(|reason| ImportError::Malformed {
                file: file.clone(),
                line: 1,
                reason: format!("header: {reason}"),
            })?;
        if headers.iter().all(|h| h.trim().is_empty()) {
            return Err(ImportError::Invalid {
                file,
                reason: "no header line (the first line must name the columns)".to_string(),
            });
        }
        let plan = Plan::new(&file, &headers, &opts.mapping)?;
        Ok(CsvReader {
            file,
            reader,
            columns: headers.len(),
            plan,
            encoding,
            delimiter,
            record: ByteRecord::new(),
            progress,
            done: false,
        })
    }

    /// The physical line where the record just read starts. `csv::Position::line` cannot be
    /// used: it does not count skipped blank lines and is one short after a CRLF. The record
    /// ends just before the reader's position; its first line is its last line minus the
    /// newlines inside its (quoted) fields.
    fn physical_line(&mut self) -> u64 {
        let end = self.reader.position().byte();
        let inside = count_newlines(self.record.as_slice());
        // The byte before `end` is the record's terminator ('\n', or '\r' of a CRLF), or its
        // last byte at the end of the file: newlines before it are the lines before the last.
        let before_last = self.reader.get_mut().newlines_before(end.saturating_sub(1));
        (before_last + 1).saturating_sub(inside)
    }

    fn reject(&self, line: u64, field: impl Into<String>, reason: impl Into<String>) -> Reject {
        let delimiter = char::from(self.delimiter).to_string();
        let raw: Vec<String> = self
            .record
            .iter()
            .map(|f| decode_lossy(f, self.encoding).into_owned())
            .collect();
        Reject {
            file: self.file.clone(),
            line,
            field: field.into(),
            reason: reason.into(),
            raw: truncate_raw(raw.join(&delimiter)),
        }
    }
}

impl EventReader for CsvReader {
    fn next_batch(&mut self, max_events: usize) -> Result<Option<Batch>, ImportError> {
        let mut batch = Batch::default();
        while !self.done && batch.len() < max_events.max(1) {
            let more = self
                .reader
                .read_byte_record(&mut self.record)
                .map_err(|e| csv_error(&self.file, &e))?;
            if !more {
                self.done = true;
                break;
            }
            let line = self.physical_line();
            if self.record.len() != self.columns {
                let reason = format!(
                    "expected {} fields, found {}",
                    self.columns,
                    self.record.len()
                );
                batch.rejects.push(self.reject(line, "row", reason));
                continue;
            }
            let row = CsvRow {
                record: &self.record,
                encoding: self.encoding,
            };
            match self.plan.build(&row) {
                Ok(event) => batch.events.push(event),
                Err(e) => batch.rejects.push(self.reject(line, e.field, e.reason)),
            }
        }
        Ok((batch.len() > 0).then_some(batch))
    }

    fn bytes_read(&self) -> u64 {
        self.progress.read()
    }

    fn total_bytes(&self) -> u64 {
        self.progress.total
    }
}

/// Records where the newlines are in the bytes the CSV parser reads, so that a record's byte
/// offset can be turned into a physical line. Only newlines not yet asked about are kept,
/// which bounds the memory to the parser's read-ahead.
struct LineIndex<R> {
    inner: R,
    offset: u64,
    pending: VecDeque<u64>,
    counted: u64,
}

impl<R> LineIndex<R> {
    fn new(inner: R) -> Self {
        LineIndex {
            inner,
            offset: 0,
            pending: VecDeque::new(),
            counted: 0,
        }
    }

    /// The number of newlines at offsets before `byte`; `byte` never decreases between calls.
    fn newlines_before(&mut self, byte: u64) -> u64 {
        while self.pending.front().is_some_and(|&at| at < byte) {
            self.pending.pop_front();
            self.counted += 1;
        }
        self.counted
    }
}

impl<R: Read> Read for LineIndex<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        let start = self.offset;
        self.pending.extend(
            buf[..n]
                .iter()
                .enumerate()
                .filter(|(_, &b)| b == b'\n')
                .map(|(i, _)| start + i as u64),
        );
        self.offset += n as u64;
        Ok(n)
    }
}

struct CsvRow<'a> {
    record: &'a ByteRecord,
    encoding: TextEncoding,
}

impl Row for CsvRow<'_> {
    fn cell(&self, column: usize) -> Result<Cell<'_>, String> {
        match self.record.get(column) {
            Some(bytes) => decode(bytes, self.encoding).map(Cell::Text),
            None => Ok(Cell::Null),
        }
    }
}

fn decode(bytes: &[u8], encoding: TextEncoding) -> Result<Cow<'_, str>, String> {
    match encoding {
        TextEncoding::Utf8 => std::str::from_utf8(bytes).map(Cow::Borrowed).map_err(|_| {
            "not valid UTF-8 (the start of the file was; if it is Latin-1, pass the encoding)"
                .to_string()
        }),
        TextEncoding::Latin1 => Ok(WINDOWS_1252.decode_without_bom_handling(bytes).0),
    }
}

fn decode_lossy(bytes: &[u8], encoding: TextEncoding) -> Cow<'_, str> {
    match encoding {
        TextEncoding::Utf8 => String::from_utf8_lossy(bytes),
        TextEncoding::Latin1 => WINDOWS_1252.decode_without_bom_handling(bytes).0,
    }
}

/// UTF-8 when the sample is valid UTF-8, allowing a character cut at the sample's end.
fn detect_encoding(sample: &[u8]) -> TextEncoding {
    match std::str::from_utf8(sample) {
        Ok(_) => TextEncoding::Utf8,
        Err(e) if e.error_len().is_none() => TextEncoding::Utf8,
        Err(_) => TextEncoding::Latin1,
    }
}

/// The candidate delimiter that occurs most often on the header line, outside quotes;
/// `,` when none occurs (a one-column file).
fn sniff_delimiter(sample: &[u8]) -> u8 {
    let mut counts = [0usize; DELIMITERS.len()];
    let mut quoted = false;
    for &b in sample {
        match b {
            b'"' => quoted = !quoted,
            b'\n' | b'\r' if !quoted => break,
            _ if !quoted => {
                if let Some(i) = DELIMITERS.iter().position(|&d| d == b) {
                    counts[i] += 1;
                }
            }
            _ => {}
        }
    }
    let mut best = 0;
    for i in 1..DELIMITERS.len() {
        if counts[i] > counts[best] {
            best = i;
        }
    }
    DELIMITERS[best]
}

fn csv_error(file: &str, e: &::csv::Error) -> ImportError {
    match e.kind() {
        ::csv::ErrorKind::Io(io) => ImportError::Io {
            file: file.to_string(),
            source: std::io::Error::new(io.kind(), io.to_string()),
        },
        _ => ImportError::Malformed {
            file: file.to_string(),
            line: e.position().map_or(0, |p| p.line()),
            reason: e.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::super::{open, ColumnMapping};
    use super::*;
    use omnitrail_model::{Channel, IdentifierKind, Value};
    use std::io::Write;

    fn write(name: &str, bytes: &[u8]) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).expect("write fixture");
        (dir, path)
    }

    fn read_all(path: &Path, opts: &ImportOptions) -> Batch {
        let mut reader = open(path, opts).expect("open");
        let mut all = Batch::default();
        while let Some(batch) = reader.next_batch(7).expect("batch") {
            all.events.extend(batch.events);
            all.rejects.extend(batch.rejects);
        }
        assert_eq!(reader.bytes_read(), reader.total_bytes());
        all
    }

    #[test]
    fn sniffs_the_delimiter_from_the_header() {
        for (delimiter, name) in [
            (",", "a.csv"),
            (";", "a.csv"),
            ("\t", "a.tsv"),
            ("|", "a.txt"),
        ] {
            let text = format!(
                "case{d}activity{d}timestamp{d}note\nc1{d}pay{d}2026-01-01T10:00:00Z{d}\"a, b; c\"\n",
                d = delimiter
            );
            let (_dir, path) = write(name, text.as_bytes());
            let batch = read_all(&path, &ImportOptions::default());
            assert_eq!(batch.rejects, vec![], "{delimiter:?}");
            assert_eq!(
                batch.events[0].properties["note"],
                Value::Str("a, b; c".into())
            );
        }
        assert_eq!(sniff_delimiter(b"\"a;b\",c\n"), b',');
        assert_eq!(sniff_delimiter(b"single\n"), b',');
    }

    #[test]
    fn latin1_is_detected_and_a_bom_is_stripped() {
        let (_dir, path) = write(
            "l.csv",
            b"case;activity;timestamp;city\r\nc1;caf\xE9;2026-01-01;Orl\xE9ans\r\n",
        );
        let batch = read_all(&path, &ImportOptions::default());
        assert_eq!(batch.events[0].activity, "café");
        assert_eq!(
            batch.events[0].properties["city"],
            Value::Str("Orléans".into())
        );

        let (_dir, path) = write(
            "b.csv",
            b"\xEF\xBB\xBFcase,activity,timestamp\nc1,\xC3\xA9t\xC3\xA9,2026-01-01\n",
        );
        let batch = read_all(&path, &ImportOptions::default());
        assert_eq!(batch.events[0].activity, "été");

        let opts = ImportOptions {
            encoding: Some(TextEncoding::Latin1),
            ..ImportOptions::default()
        };
        let batch = read_all(&path, &opts);
        assert_eq!(batch.events[0].activity, "Ã©tÃ©", "the override wins");
    }

    #[test]
    fn quoted_multiline_fields_keep_physical_line_numbers() {
        let text = "case,activity,timestamp,note\n\
                    c1,a,2026-01-01,\"two\nlines, and a comma\"\n\
                    c2,b,not a time,x\n\
                    c3,c,2026-01-03,\"quote \"\"inside\"\"\"\n";
        let (_dir, path) = write("q.csv", text.as_bytes());
        let batch = read_all(&path, &ImportOptions::default());
        assert_eq!(batch.events.len(), 2);
        assert_eq!(
            batch.events[0].properties["note"],
            Value::Str("two\nlines, and a comma".into())
        );
        assert_eq!(
            batch.events[1].properties["note"],
            Value::Str("quote \"inside\"".into())
        );
        assert_eq!(batch.rejects.len(), 1);
        assert_eq!(
            (batch.rejects[0].line, batch.rejects[0].field.as_str()),
            (4, "timestamp")
        );
        assert_eq!(batch.rejects[0].raw, "c2,b,not a time,x");
    }

    #[test]
    fn line_numbers_are_physical_across_blank_lines_and_crlf() {
        for newline in ["\n", "\r\n"] {
            let text = [
                "case,activity,timestamp",
                "c1,a,bad",
                "",
                "",
                "c2,\"b",
                "b\",bad",
                "c3,c,bad",
            ]
            .join(newline);
            let (_dir, path) = write("l.csv", text.as_bytes());
            let batch = read_all(&path, &ImportOptions::default());
            let lines: Vec<u64> = batch.rejects.iter().map(|r| r.line).collect();
            assert_eq!(lines, [2, 5, 7], "{newline:?}");
        }
    }

    #[test]
    fn three_bad_rows_among_a_thousand_are_rejected_with_their_lines() {
        let mut text = String::from("customer_id,activity,timestamp,channel,sentiment\r\n");
        let mut expected = Vec::new();
        for i in 0..1000u64 {
            let line = i + 2;
            let row = match i {
                100 => {
                    expected.push((line, "timestamp"));
                    format!("c{i},view,2026-02-30T10:00:00Z,web,0.5")
                }
                500 => {
                    expected.push((line, "row"));
                    format!("c{i},view,2026-01-01T10:00:00Z,web")
                }
                900 => {
                    expected.push((line, "sentiment"));
                    format!("c{i},view,2026-01-01T10:00:00Z,web,7")
                }
                _ => format!("c{},view,2026-01-01T10:{:02}:00Z,Web,", i % 37, i % 60),
            };
            text.push_str(&row);
            text.push_str("\r\n");
        }
        let (_dir, path) = write("m.csv", text.as_bytes());
        let batch = read_all(&path, &ImportOptions::default());
        assert_eq!(batch.events.len(), 997);
        let got: Vec<(u64, &str)> = batch
            .rejects
            .iter()
            .map(|r| (r.line, r.field.as_str()))
            .collect();
        assert_eq!(got, expected);
        assert!(batch
            .rejects
            .iter()
            .all(|r| r.file == path.display().to_string()));
        assert!(batch.events.iter().all(|e| e.channel == Channel::Web));
    }

    #[test]
    fn mapping_flags_override_detection() {
        let text = "id,who,what,when,at,channel,mail,tier,skip\n\
                    e1,u1,pay,x,2026-01-01,web,A@b.co,gold,zzz\n";
        let (_dir, path) = write("f.csv", text.as_bytes());
        let opts = ImportOptions {
            mapping: ColumnMapping {
                customer: Some("who".into()),
                customer_kind: Some(IdentifierKind::CrmId),
                activity: Some("What".into()),
                timestamp: Some("at".into()),
                channel_value: Some(Channel::Store),
                event_id: Some("id".into()),
                identifiers: vec![(IdentifierKind::Email, "mail".into())],
                properties: vec![("when_text".into(), "when".into())],
                traits: vec!["tier".into()],
                ignore: vec!["skip".into()],
                ..ColumnMapping::default()
            },
            ..ImportOptions::default()
        };
        let batch = read_all(&path, &opts);
        assert_eq!(batch.rejects, vec![]);
        let e = &batch.events[0];
        assert_eq!(e.event_id.as_deref(), Some("e1"));
        assert_eq!(e.identifiers[0].kind, IdentifierKind::Email);
        assert_eq!(e.identifiers[1].kind, IdentifierKind::CrmId);
        assert_eq!(e.activity, "pay");
        assert_eq!(
            e.channel,
            Channel::Store,
            "a constant channel beats a detected column"
        );
        assert_eq!(e.properties["when_text"], Value::Str("x".into()));
        assert_eq!(e.properties["channel"], Value::Str("web".into()));
        assert_eq!(e.traits["tier"], Value::Str("gold".into()));
        assert!(!e.properties.contains_key("skip"));
    }

    #[test]
    fn gzipped_csv_is_read() {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(b"case,activity,timestamp\nc1,a,2026-01-01\nc1,b,1767225600\n")
            .expect("gzip");
        let (_dir, path) = write("g.csv.gz", &gz.finish().expect("gzip"));
        let batch = read_all(&path, &ImportOptions::default());
        assert_eq!(batch.events.len(), 2);
    }

    #[test]
    fn a_file_without_an_activity_column_needs_a_constant() {
        let (_dir, path) = write("n.csv", b"case,timestamp\nc1,2026-01-01\n");
        let err = open(&path, &ImportOptions::default())
            .err()
            .map(|e| e.to_string());
        assert!(err
            .is_some_and(|e| e.contains("no activity column found") && e.ends_with("--activity")));
        let opts = ImportOptions {
            mapping: ColumnMapping {
                activity_value: Some("complaint".into()),
                ..ColumnMapping::default()
            },
            ..ImportOptions::default()
        };
        assert_eq!(read_all(&path, &opts).events[0].activity, "complaint");
    }

    /// Rows per second for a simple five-column file; run in release:
    /// `cargo test --release -p omnitrail-app csv_throughput -- --ignored --nocapture`.
    #[test]
    #[ignore = "a measurement, not a check; run it in release"]
    fn csv_throughput() {
        const ROWS: usize = 1_000_000;
        let mut text = String::from("customer_id,activity,timestamp,channel,agent\n");
        let activities = [
            "login",
            "view_bill",
            "payment_failed",
            "call_started",
            "complaint",
        ];
        let channels = ["web", "mobile_app", "phone", "chat", "email"];
        for i in 0..ROWS {
            text.push_str(&format!(
                "c{},{},2026-03-01T10:{:02}:{:02}Z,{},a-{}\n",
                i % 50_000,
                activities[i % 5],
                (i / 60) % 60,
                i % 60,
                channels[i % 3],
                i % 17
            ));
        }
        let (_dir, path) = write("bench.csv", text.as_bytes());
        let start = std::time::Instant::now();
        let mut reader = open(&path, &ImportOptions::default()).expect("open");
        let mut events = 0;
        while let Some(batch) = reader.next_batch(4096).expect("batch") {
            events += batch.events.len();
        }
        let secs = start.elapsed().as_secs_f64();
        assert_eq!(events, ROWS);
        eprintln!(
            "{ROWS} rows in {secs:.3} s: {:.0} rows/s",
            ROWS as f64 / secs
        );
    }
}
