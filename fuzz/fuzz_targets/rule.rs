//! The trigger rule format: any text parses into a rule or gives an error.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = omnitrail_triggers::parse_rule(text);
});
