//! File readers of `omnitrail import`: CSV/TSV, NDJSON, Parquet and XES files become batches
//! of validated events, in file order, plus a reject for every row that cannot be one.
//!
//! Only problems with the file as a whole (it cannot be opened, its format is unknown, a
//! required column is missing, its XML structure is broken) are errors; a bad row never stops
//! an import, it becomes a [`Reject`] that names its line, field and reason.

mod csv;
#[cfg(test)]
pub(crate) mod datasets;
mod mapping;
mod ndjson;
mod parquet;
mod xes;

pub use mapping::ColumnMapping;

use omnitrail_model::Event;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// The file formats `omnitrail import` reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Csv,
    Ndjson,
    Parquet,
    Xes,
}

impl Format {
    /// The format named by the file's extension; a trailing `.gz` is looked through (the
    /// readers recognise gzip by its magic bytes, not by the name).
    pub fn detect(path: &Path) -> Option<Format> {
        let name = path.file_name()?.to_string_lossy().to_lowercase();
        let name = name.strip_suffix(".gz").unwrap_or(&name);
        let (_, extension) = name.rsplit_once('.')?;
        match extension {
            "csv" | "tsv" | "txt" => Some(Format::Csv),
            "ndjson" | "jsonl" | "json" => Some(Format::Ndjson),
            "parquet" => Some(Format::Parquet),
            "xes" => Some(Format::Xes),
            _ => None,
        }
    }
}

/// The text encoding of a CSV file. Auto-detected when not given: a leading sample that is
/// valid UTF-8 means UTF-8, anything else is read as Latin-1 (windows-1252), the usual
/// encoding of spreadsheets exported on Western European Windows machines.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TextEncoding {
    Utf8,
    Latin1,
}

/// How to read one file; everything left unset is detected.
#[derive(Clone, Debug, Default)]
pub struct ImportOptions {
    pub format: Option<Format>,
    /// The CSV field delimiter; sniffed from the header line when unset.
    pub delimiter: Option<u8>,
    /// The CSV text encoding; NDJSON and XES are UTF-8 by their standards.
    pub encoding: Option<TextEncoding>,
    pub mapping: ColumnMapping,
}

/// A row that could not become an event, with enough context for a user to find and fix it.
#[derive(Clone, Debug, PartialEq)]
pub struct Reject {
    pub file: String,
    /// 1-based physical line for CSV and NDJSON (where a quoted multi-line record starts),
    /// the line of the `<event>` tag for XES, the 1-based row number for Parquet.
    pub line: u64,
    /// The column, attribute or event field at fault.
    pub field: String,
    pub reason: String,
    /// The row as text, cut to [`MAX_RAW_BYTES`].
    pub raw: String,
}

/// How much of a rejected row is kept: enough to recognise it, bounded for huge rows.
pub const MAX_RAW_BYTES: usize = 2048;

/// What one call to [`EventReader::next_batch`] produced; events are in file order.
#[derive(Clone, Debug, Default)]
pub struct Batch {
    pub events: Vec<Event>,
    pub rejects: Vec<Reject>,
}

impl Batch {
    fn len(&self) -> usize {
        self.events.len() + self.rejects.len()
    }
}

/// A reader of one file, pulled batch by batch so that imports run in bounded memory.
pub trait EventReader: Send {
    /// Up to `max_events` rows (events and rejects together); `None` once the file is done.
    fn next_batch(&mut self, max_events: usize) -> Result<Option<Batch>, ImportError>;
    /// Bytes of the file consumed so far (compressed bytes for gzip files; an estimate from
    /// the rows read for Parquet), for progress bars.
    fn bytes_read(&self) -> u64;
    /// The size of the file.
    fn total_bytes(&self) -> u64;
}

/// File-level failures: the import of this file cannot go on. Row-level problems are
/// [`Reject`]s instead.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("{file}: cannot read the file: {source}")]
    Io {
        file: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{file}: unknown file format (expected .csv, .tsv, .txt, .ndjson, .jsonl, .json, .parquet or .xes, optionally gzipped as .gz); name one with --format")]
    UnknownFormat { file: String },
    #[error("{file}: no {role} column found (looked for {candidates}); name one with --{flag}")]
    MissingColumn {
        file: String,
        role: &'static str,
        candidates: String,
        flag: &'static str,
    },
    #[error(
        "{file}: column '{column}' named with --{flag} is not in the header (columns: {columns})"
    )]
    UnknownColumn {
        file: String,
        column: String,
        flag: &'static str,
        columns: String,
    },
    #[error("{file}: line {line}: {reason}")]
    Malformed {
        file: String,
        line: u64,
        reason: String,
    },
    #[error("{file}: {reason}")]
    Invalid { file: String, reason: String },
}

/// Opens a file for import, with the format from the options or the file name.
pub fn open(path: &Path, opts: &ImportOptions) -> Result<Box<dyn EventReader>, ImportError> {
    let file = path.display().to_string();
    let format = match opts.format.or_else(|| Format::detect(path)) {
        Some(format) => format,
        None => return Err(ImportError::UnknownFormat { file }),
    };
    Ok(match format {
        Format::Csv => Box::new(csv::CsvReader::open(path, file, opts)?),
        Format::Ndjson => Box::new(ndjson::NdjsonReader::open(path, file)?),
        Format::Parquet => Box::new(parquet::ParquetReader::open(path, file, &opts.mapping)?),
        Format::Xes => Box::new(xes::XesReader::open(path, file, &opts.mapping)?),
    })
}

/// Counts the bytes pulled from the file, shared with the reader that reports progress
/// (the counting happens below the decompressor and the parsers' own buffers).
#[derive(Clone, Debug)]
struct Progress {
    read: Arc<AtomicU64>,
    total: u64,
}

impl Progress {
    fn read(&self) -> u64 {
        self.read.load(Ordering::Relaxed)
    }
}

struct CountingRead<R> {
    inner: R,
    read: Arc<AtomicU64>,
}

impl<R: Read> Read for CountingRead<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
const READ_BUFFER: usize = 256 * 1024;

/// Opens a text-like file as a byte stream, gunzipping it when it starts with the gzip magic
/// bytes (whatever its name says).
fn open_input(path: &Path, file: &str) -> Result<(Box<dyn BufRead + Send>, Progress), ImportError> {
    let io = |source| ImportError::Io {
        file: file.to_string(),
        source,
    };
    let handle = File::open(path).map_err(io)?;
    let total = handle.metadata().map_err(io)?.len();
    let read = Arc::new(AtomicU64::new(0));
    let mut raw = BufReader::with_capacity(
        READ_BUFFER,
        CountingRead {
            inner: handle,
            read: Arc::clone(&read),
        },
    );
    let gzipped = raw.fill_buf().map_err(io)?.starts_with(&GZIP_MAGIC);
    let reader: Box<dyn BufRead + Send> = if gzipped {
        Box::new(BufReader::with_capacity(
            READ_BUFFER,
            flate2::bufread::MultiGzDecoder::new(raw),
        ))
    } else {
        Box::new(raw)
    };
    Ok((reader, Progress { read, total }))
}

fn count_newlines(bytes: &[u8]) -> u64 {
    bytes.iter().filter(|&&b| b == b'\n').count() as u64
}

/// Cuts a raw row to [`MAX_RAW_BYTES`] on a character boundary.
fn truncate_raw(mut raw: String) -> String {
    if raw.len() > MAX_RAW_BYTES {
        let mut end = MAX_RAW_BYTES;
        while !raw.is_char_boundary(end) {
            end -= 1;
        }
        raw.truncate(end);
    }
    raw
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_follow_the_extension() {
        let cases = [
            ("a.csv", Some(Format::Csv)),
            ("a.TSV", Some(Format::Csv)),
            ("a.txt.gz", Some(Format::Csv)),
            ("a.jsonl", Some(Format::Ndjson)),
            ("dir.x/a.ndjson.gz", Some(Format::Ndjson)),
            ("a.json", Some(Format::Ndjson)),
            ("a.parquet", Some(Format::Parquet)),
            ("a.xes", Some(Format::Xes)),
            ("a.xes.gz", Some(Format::Xes)),
            ("a.gz", None),
            ("a.xlsx", None),
            ("README", None),
        ];
        for (name, format) in cases {
            assert_eq!(Format::detect(Path::new(name)), format, "{name}");
        }
    }

    #[test]
    fn unknown_formats_name_the_file() {
        let err = open(Path::new("data.xlsx"), &ImportOptions::default())
            .err()
            .map(|e| e.to_string());
        assert!(err.is_some_and(|e| e.starts_with("data.xlsx: unknown file format")));
    }

    #[test]
    fn raw_rows_are_cut_on_a_character_boundary() {
        let raw = truncate_raw("é".repeat(MAX_RAW_BYTES));
        assert!(raw.len() <= MAX_RAW_BYTES && raw.len() >= MAX_RAW_BYTES - 1);
        assert_eq!(truncate_raw("short".into()), "short");
    }
}
