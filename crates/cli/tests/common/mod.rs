//! Running the `omnitrail` binary from the end-to-end tests.
#![allow(dead_code)] // each test file uses its own part

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn omnitrail(data: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_omnitrail"))
        .arg("--data")
        .arg(data)
        .args(args)
        .env_remove("OMNITRAIL_DATA")
        .output()
        .expect("the binary runs")
}

/// Standard output of a run that must succeed.
pub fn ok_stdout(data: &Path, args: &[&str]) -> String {
    let out = omnitrail(data, args);
    assert!(
        out.status.success(),
        "omnitrail {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

pub fn ok_json(data: &Path, args: &[&str]) -> Value {
    let text = ok_stdout(data, args);
    serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("omnitrail {args:?} printed no JSON ({e}): {text}"))
}

/// Standard error of a run that must fail.
pub fn failure(data: &Path, args: &[&str]) -> String {
    let out = omnitrail(data, args);
    assert!(!out.status.success(), "omnitrail {args:?} should fail");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `../shared/datasets` next to the repository, if this checkout has it.
pub fn datasets() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/datasets");
    if dir.is_dir() {
        Some(dir)
    } else {
        eprintln!("skipping: ../shared/datasets not found");
        None
    }
}
