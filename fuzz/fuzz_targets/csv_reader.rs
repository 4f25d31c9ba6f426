//! The CSV/TSV import reader over arbitrary file contents: rows become events or rejects
//! with a line and a reason; the reader never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use omnitrail_app::import::{self, Format, ImportOptions};

fuzz_target!(|data: &[u8]| {
    let path = std::env::temp_dir().join(format!("omnitrail-fuzz-{}.csv", std::process::id()));
    std::fs::write(&path, data).expect("temp file");
    let opts = ImportOptions {
        format: Some(Format::Csv),
        ..ImportOptions::default()
    };
    if let Ok(mut reader) = import::open(&path, &opts) {
        while let Ok(Some(_)) = reader.next_batch(1024) {}
    }
});
