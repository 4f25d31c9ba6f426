//! Fixtures shared by the app's integration tests: the project, a fixed clock, identifiers,
//! the demo.
#![allow(dead_code)] // each test file uses its own part

use omnitrail_app::{App, AppOptions};
use omnitrail_model::{FixedClock, Identifier, IdentifierKind, ProjectId, Timestamp};
use omnitrail_synth::SynthConfig;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub const P: ProjectId = ProjectId::DEFAULT;

pub fn at(text: &str) -> Timestamp {
    Timestamp::parse(text).expect("fixture time")
}

pub fn id(kind: IdentifierKind, value: &str) -> Identifier {
    Identifier::new(kind, value).expect("fixture identifier")
}

/// Default options on a clock fixed just after the fixtures' events.
pub fn options() -> AppOptions {
    AppOptions {
        clock: Arc::new(FixedClock::new(at("2026-11-21T09:00:00Z"))),
        ..AppOptions::default()
    }
}

pub fn open(dir: &Path) -> App {
    App::open(dir, options()).expect("open app")
}

/// The demo of `customers` people generated into `dir` (compacted, identity snapshot
/// written), and the app that wrote it.
pub fn demo(dir: &Path, customers: u64) -> App {
    let mut app = open(dir);
    let cfg = SynthConfig {
        customers,
        ..SynthConfig::default()
    };
    app.generate_demo(&cfg, &|_, _| {}).expect("demo");
    app
}

pub fn snapshot_file(dir: &Path) -> PathBuf {
    dir.join("identity").join(format!("{}.snapshot", P.0))
}
