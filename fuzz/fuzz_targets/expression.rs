//! The filter and segment expression language: any text parses or gives an error.
#![no_main]

use libfuzzer_sys::fuzz_target;
use omnitrail_engine::expr::{EventFilter, Segment};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = EventFilter::parse(text);
    let _ = Segment::parse(text);
});
