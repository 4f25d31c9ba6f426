//! Replays the rule fuzz target's corpus (`fuzz/corpus/rule`) as an ordinary test, through
//! the function the target calls: inputs a fuzz run found stay fixed without a nightly
//! toolchain. The other targets' corpora are replayed by the server's tests.

use std::path::Path;

#[test]
fn rule_corpus_parses_or_errors_without_panicking() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/rule");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "{} is empty", dir.display());
    let mut parsed = 0;
    for path in &files {
        let Ok(text) = std::fs::read_to_string(path) else {
            continue;
        };
        parsed += usize::from(omnitrail_triggers::parse_rule(&text).is_ok());
    }
    assert!(parsed > 0, "the seed rules in the corpus parse");
}
