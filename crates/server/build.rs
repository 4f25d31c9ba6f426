//! Builds the web UI (`ui/`: TypeScript + Vite) into `$OUT_DIR/ui`, which `src/ui.rs`
//! embeds, so `cargo build` of a fresh clone needs no manual step (docs/ui.md).
//!
//! `npm ci` runs only when `ui/node_modules` is missing or was installed from another
//! `package-lock.json`; `npm run build` type-checks and bundles. Nothing is written into
//! the source tree except `ui/node_modules`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Copy of the lock file the installed `node_modules` came from.
const STAMP: &str = ".omnitrail-package-lock.json";

fn main() {
    let manifest = PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"),
    );
    let ui = manifest.join("../../ui");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR")).join("ui");
    for input in [
        "src",
        "index.html",
        "package.json",
        "package-lock.json",
        "vite.config.ts",
        "tsconfig.json",
    ] {
        println!("cargo:rerun-if-changed={}", ui.join(input).display());
    }
    if let Err(message) = build(&ui, &out) {
        // A build script's panic buries the message in a backtrace; print it plainly.
        eprintln!(
            "error: cannot build the web UI in {}: {message}",
            ui.display()
        );
        std::process::exit(1);
    }
}

fn build(ui: &Path, out: &Path) -> Result<(), String> {
    let lock = std::fs::read(ui.join("package-lock.json"))
        .map_err(|e| format!("cannot read ui/package-lock.json: {e}"))?;
    let stamp = ui.join("node_modules").join(STAMP);
    let installed = std::fs::read(&stamp).ok();
    if installed.as_deref() != Some(lock.as_slice()) {
        run(ui, &["ci", "--no-audit", "--no-fund"], out)?;
        std::fs::write(&stamp, &lock)
            .map_err(|e| format!("cannot write {}: {e}", stamp.display()))?;
    }
    run(ui, &["run", "build"], out)?;
    if !out.join("index.html").is_file() {
        return Err(format!(
            "npm run build finished without writing {}",
            out.join("index.html").display()
        ));
    }
    Ok(())
}

fn run(ui: &Path, args: &[&str], out: &Path) -> Result<(), String> {
    let npm = if cfg!(windows) { "npm.cmd" } else { "npm" };
    let result: std::io::Result<Output> = Command::new(npm)
        .args(args)
        .current_dir(ui)
        .env("OMNITRAIL_UI_OUT", out)
        .output();
    let output = result.map_err(|e| {
        format!(
            "cannot run `{npm} {}` ({e}); the UI needs Node.js 20 or newer with npm \
             (Debian/Ubuntu: `apt-get install nodejs npm`, or https://nodejs.org)",
            args.join(" ")
        )
    })?;
    if output.status.success() {
        return Ok(());
    }
    let tail = |bytes: &[u8]| {
        let text = String::from_utf8_lossy(bytes);
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    };
    Err(format!(
        "`{npm} {}` failed ({}):\n{}\n{}",
        args.join(" "),
        output.status,
        tail(&output.stdout),
        tail(&output.stderr)
    ))
}
