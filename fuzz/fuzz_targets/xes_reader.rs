//! The XES import reader over arbitrary file contents: traces become events or rejects;
//! the reader never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use omnitrail_app::import::{self, Format, ImportOptions};

fuzz_target!(|data: &[u8]| {
    let path = std::env::temp_dir().join(format!("omnitrail-fuzz-{}.xes", std::process::id()));
    std::fs::write(&path, data).expect("temp file");
    let opts = ImportOptions {
        format: Some(Format::Xes),
        ..ImportOptions::default()
    };
    if let Ok(mut reader) = import::open(&path, &opts) {
        while let Ok(Some(_)) = reader.next_batch(1024) {}
    }
});
