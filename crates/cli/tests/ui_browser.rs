//! The web UI in a real browser: `omnitrail serve` on a small demo dataset, and
//! `ui/e2e/run.mjs` (playwright-core driving Debian's chromium) opening every page — each
//! must show its main element with real data and log no console error — and the agent flow
//! (a phone number as typed → the timeline → a note that is still there after a reload),
//! and journey triggers: the Rules page (the seed rule, its replay), the rule editor (a test,
//! YAML errors with their field and line, a draft's replay) and the task queue (a task with
//! its chain and customer label, counts per state, claimed and done by an agent).
//! Screenshots of every page go to `<target dir>/ui-screenshots/`.
//!
//! `./scripts/test` installs chromium and `ui/node_modules` (playwright-core). Without them
//! the test is skipped with the reason, except in CI (`CI=true`), where it fails.

mod common;
mod serving;

use common::ok_stdout;
use serving::{create_key, start};
use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `$CARGO_TARGET_DIR`, else the target dir this test binary was built in
/// (`<target>/<profile>/deps/<test>`).
fn target_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(dir);
    }
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.ancestors().nth(3).map(Path::to_path_buf))
        .unwrap_or_else(|| repo().join("target"))
}

/// What the browser test needs, or why it cannot run.
fn prerequisites() -> Result<PathBuf, String> {
    let chromium = std::env::var_os("CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    if !chromium.is_file() {
        return Err(format!(
            "no browser at {} (apt-get install chromium, or set CHROMIUM)",
            chromium.display()
        ));
    }
    if !repo().join("ui/node_modules/playwright-core").is_dir() {
        return Err("ui/node_modules has no playwright-core (run `npm ci` in ui/)".into());
    }
    match Command::new("node").arg("--version").output() {
        Ok(out) if out.status.success() => Ok(chromium),
        _ => Err("node is not on PATH (the UI needs Node.js 20 or newer)".into()),
    }
}

#[test]
fn every_page_and_the_agent_flow_work_in_chromium() {
    let chromium = match prerequisites() {
        Ok(path) => path,
        Err(reason) if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("the browser test must run in CI: {reason}")
        }
        Err(reason) => {
            eprintln!("skipping the browser test: {reason}");
            return;
        }
    };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    ok_stdout(
        &data,
        &["demo", "--no-serve", "--customers", "2000", "--seed", "42"],
    );
    let secret = create_key(&data, "secret");
    let server = start(&data, &["serve"]);
    let shots = target_dir().join("ui-screenshots");

    let out = Command::new("node")
        .arg(repo().join("ui/e2e/run.mjs"))
        .arg(&server.url)
        .arg(&secret)
        .arg(&shots)
        .env("CHROMIUM", &chromium)
        .current_dir(repo().join("ui"))
        .output()
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // The per-page summary lines, shown with --nocapture and in a failure's message.
    println!("{stdout}");
    assert!(
        out.status.success(),
        "the browser test failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    for page in ["friction", "customer-view", "rules", "rule-editor", "tasks"] {
        assert!(
            stdout.contains(&format!("ok   {page:<14}")),
            "no ok line for {page}:\n{stdout}"
        );
    }
    let (status, _, err) = server.stop();
    assert!(status.success(), "{err}");
}
