//! NDJSON reading: one canonical event JSON (DESIGN.md §3) per line, read with the model's
//! own `Event::from_json` so the file format and the HTTP API accept exactly the same events.

use super::{open_input, truncate_raw, Batch, EventReader, ImportError, Progress, Reject};
use omnitrail_model::Event;
use std::io::BufRead;
use std::path::Path;

pub(crate) struct NdjsonReader {
    file: String,
    input: Box<dyn BufRead + Send>,
    line: Vec<u8>,
    line_number: u64,
    progress: Progress,
    done: bool,
}

impl NdjsonReader {
    pub(crate) fn open(path: &Path, file: String) -> Result<Self, ImportError> {
        let (mut input, progress) = open_input(path, &file)?;
        let start = input.fill_buf().map_err(|source| ImportError::Io {
            file: file.clone(),
            source,
        })?;
        // A JSON array would turn into one reject per line; say what the file should be instead.
        if start.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[') {
            return Err(ImportError::Invalid {
                file,
                reason: "is a JSON array; write one event object per line (NDJSON)".to_string(),
            });
        }
        Ok(NdjsonReader {
            file,
            input,
            line: Vec::new(),
            line_number: 0,
            progress,
            done: false,
        })
    }

    fn reject(&self, text: &str, field: String, reason: String) -> Reject {
        Reject {
            file: self.file.clone(),
            line: self.line_number,
            field,
            reason,
            raw: truncate_raw(text.to_string()),
        }
    }

    /// The event of the current line, `None` for a blank line.
    fn parse_line(&self) -> Option<Result<Event, Reject>> {
        let mut bytes = self.line.as_slice();
        if self.line_number == 1 {
            bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
        }
        let text = match std::str::from_utf8(bytes) {
            Ok(text) => text.trim(),
            Err(_) => {
                let lossy = String::from_utf8_lossy(bytes);
                let reason = "not valid UTF-8 (JSON must be UTF-8)".to_string();
                return Some(Err(self.reject(lossy.trim(), "event".into(), reason)));
            }
        };
        if text.is_empty() {
            return None;
        }
        let json = match serde_json::from_str::<serde_json::Value>(text) {
            Ok(json) => json,
            Err(e) => {
                return Some(Err(self.reject(
                    text,
                    "event".into(),
                    format!("invalid json: {e}"),
                )))
            }
        };
        Some(Event::from_json(&json).map_err(|e| self.reject(text, e.field, e.reason)))
    }
}

impl EventReader for NdjsonReader {
    fn next_batch(&mut self, max_events: usize) -> Result<Option<Batch>, ImportError> {
        let mut batch = Batch::default();
        while !self.done && batch.len() < max_events.max(1) {
            self.line.clear();
            let n = self
                .input
                .read_until(b'\n', &mut self.line)
                .map_err(|source| ImportError::Io {
                    file: self.file.clone(),
                    source,
                })?;
            if n == 0 {
                self.done = true;
                break;
            }
            self.line_number += 1;
            match self.parse_line() {
                Some(Ok(event)) => batch.events.push(event),
                Some(Err(reject)) => batch.rejects.push(reject),
                None => {}
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

#[cfg(test)]
mod tests {
    use super::super::{open, ImportOptions};

    #[test]
    fn bad_lines_are_rejects_with_their_line_and_field() {
        let text = concat!(
            "{\"timestamp\":\"2026-03-01T10:15:00Z\",\"identifiers\":{\"email\":\"a@b.co\"},\"channel\":\"web\",\"activity\":\"login\"}\n",
            "\n",
            "{\"timestamp\":\"2026-03-01T10:16:00Z\",\"identifiers\":{\"email\":\"a@b.co\"},\"channel\":\"web\"\n",
            "{\"timestamp\":\"2026-03-01T10:17:00Z\",\"identifiers\":{\"email\":\"nope\"},\"channel\":\"web\",\"activity\":\"x\"}\r\n",
            "{\"timestamp\":1772360280,\"identifiers\":{\"user_id\":7},\"channel\":\"phone\",\"activity\":\"call\",\"properties\":{\"sentiment\":-0.5}}",
        );
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("e.ndjson");
        std::fs::write(&path, text).expect("write fixture");
        let mut reader = open(&path, &ImportOptions::default()).expect("open");
        let batch = reader.next_batch(100).expect("read").expect("a batch");
        assert!(reader.next_batch(100).expect("read").is_none());
        assert_eq!(batch.events.len(), 2);
        assert_eq!(batch.events[1].activity, "call");
        let got: Vec<(u64, &str)> = batch
            .rejects
            .iter()
            .map(|r| (r.line, r.field.as_str()))
            .collect();
        assert_eq!(got, vec![(3, "event"), (4, "identifiers.email")]);
        assert!(batch.rejects[0].reason.starts_with("invalid json: "));
        assert!(batch.rejects[1].raw.ends_with("\"activity\":\"x\"}"));
    }

    #[test]
    fn a_json_array_is_a_clear_file_error() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("a.json");
        std::fs::write(&path, " [ {} ]").expect("write fixture");
        let err = open(&path, &ImportOptions::default())
            .err()
            .map(|e| e.to_string());
        assert!(err.is_some_and(
            |e| e.ends_with("is a JSON array; write one event object per line (NDJSON)")
        ));
    }
}
