//! Erasure end to end: one person with four kinds of identifiers, events both compacted
//! into segments and still in the log, notes, de-duplication ids, dead letters and import
//! rejects. After the erase nothing of them is found — through the app, through every
//! file's own format, or as raw bytes anywhere in the data dir — and suppression refuses
//! them until it is lifted. Erasures interrupted at every fsync finish on the next open.

use omnitrail_app::erase::SUPPRESSED;
use omnitrail_app::import::ImportOptions;
use omnitrail_app::{App, AppError, AppOptions, Incoming, NewNote, Rejected};
use omnitrail_model::{
    Channel, Event, FixedClock, Identifier, IdentifierKind, ProjectId, Timestamp, Value,
};
use omnitrail_store::{log, segment, Durability, LogRecord};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

const P: ProjectId = ProjectId::DEFAULT;

const EMAIL: &str = "Ana.Quintero@Example.com";
const PHONE: &str = "+1 (415) 555-0199";
const HANDLE: &str = "@ana_quintero_x";
const ANON: &str = "anon-7f3a9c51e2";

/// Every form of Ana's identifiers a file could hold: as typed, normalized, folded.
const NEEDLES: &[&str] = &[
    "ana.quintero@example.com",
    "anaquinteroexamplecom",
    "+14155550199",
    "14155550199",
    "4155550199",
    "(415) 555-0199",
    "415-555-0199",
    "415 555 0199",
    "ana_quintero_x",
    "anaquinterox",
    "anon-7f3a9c51e2",
    "7f3a9c51e2",
];

fn at(text: &str) -> Timestamp {
    Timestamp::parse(text).expect("fixture time")
}

fn id(kind: IdentifierKind, value: &str) -> Identifier {
    Identifier::new(kind, value).expect("fixture identifier")
}

fn email() -> Identifier {
    id(IdentifierKind::Email, EMAIL)
}
fn phone() -> Identifier {
    id(IdentifierKind::Phone, PHONE)
}
fn handle() -> Identifier {
    id(IdentifierKind::Social("twitter".into()), HANDLE)
}
fn anon() -> Identifier {
    id(IdentifierKind::AnonymousId, ANON)
}

fn ev(event_id: &str, when: &str, ids: &[Identifier], activity: &str) -> Event {
    let mut e = Event::new(at(when), ids[0].clone(), Channel::Web, activity);
    for i in &ids[1..] {
        e = e.with_identifier(i.clone());
    }
    e.event_id = Some(event_id.into());
    e
}

/// Ana's events before compaction: she browses anonymously, logs in, is given a phone and
/// a handle by the CRM.
fn ana_early() -> Vec<Event> {
    vec![
        ev("ana-1", "2026-11-01T09:00:00Z", &[anon()], "product_viewed"),
        ev("ana-2", "2026-11-01T09:05:00Z", &[anon(), email()], "login")
            .with_trait("email", Value::Str(EMAIL.into()))
            .with_trait("plan", Value::Str("premium".into())),
        ev(
            "ana-3",
            "2026-11-02T10:00:00Z",
            &[email(), phone()],
            "call_started",
        ),
        ev(
            "ana-4",
            "2026-11-03T11:00:00Z",
            &[email(), handle()],
            "complaint_posted",
        )
        .with_property("text", Value::Str("my order 5512 never came".into())),
    ]
}

/// Ana's events after compaction, still in the log when she is erased.
fn ana_late() -> Vec<Event> {
    vec![
        ev("ana-5", "2026-11-10T12:00:00Z", &[phone()], "call_started"),
        ev("ana-6", "2026-11-10T12:30:00Z", &[handle()], "dm_sent"),
        ev("ana-7", "2026-11-11T08:00:00Z", &[anon()], "page_viewed"),
    ]
}

/// Other people, some sharing Ana's activities and dates; the first of each batch was
/// referred by her.
fn others(start: usize, n: usize) -> Vec<Event> {
    let mut out = Vec::new();
    for i in start..start + n {
        let user = id(IdentifierKind::Email, &format!("user{i}@example.org"));
        for (j, activity) in ["product_viewed", "login", "purchase"].iter().enumerate() {
            let mut e = ev(
                &format!("o-{i}-{j}"),
                &format!("2026-11-{:02}T10:00:00Z", 1 + (i + j) % 20),
                std::slice::from_ref(&user),
                activity,
            );
            if i == start && j == 0 {
                e = e.with_property("referred_by", Value::Str(EMAIL.into()));
            }
            out.push(e);
        }
    }
    out
}

/// Fails the `fail_at`-th sync (1-based) once armed; counts every sync.
#[derive(Default)]
struct FaultyDisk {
    syncs: AtomicU64,
    fail_at: AtomicU64,
}

impl FaultyDisk {
    fn arm(&self, nth: u64) {
        self.syncs.store(0, Ordering::SeqCst);
        self.fail_at.store(nth, Ordering::SeqCst);
    }
    fn tick(&self) -> std::io::Result<()> {
        let n = self.syncs.fetch_add(1, Ordering::SeqCst) + 1;
        if self.fail_at.load(Ordering::SeqCst) == n {
            return Err(std::io::Error::other("injected fsync failure"));
        }
        Ok(())
    }
}

impl Durability for FaultyDisk {
    fn sync_file(&self, file: &std::fs::File) -> std::io::Result<()> {
        self.tick()?;
        file.sync_data()
    }
    fn sync_dir(&self, dir: &Path) -> std::io::Result<()> {
        self.tick()?;
        std::fs::File::open(dir)?.sync_all()
    }
}

fn open_with(dir: &Path, disk: Option<Arc<FaultyDisk>>) -> App {
    let mut opts = AppOptions {
        clock: Arc::new(FixedClock::new(at("2026-11-20T00:00:00Z"))),
        ..AppOptions::default()
    };
    if let Some(disk) = disk {
        opts.store.durability = disk;
    }
    App::open(dir, opts).expect("open app")
}

fn ingest(app: &App, events: Vec<Event>) {
    let receipt = app
        .ingest(P, events.into_iter().map(Incoming::Event).collect())
        .expect("ingest");
    assert!(receipt.rejected.is_empty(), "{:?}", receipt.rejected);
}

/// A trigger her login and call fire: its state, firing (with her events) and task are
/// rows of the metadata database that must go with her.
const RULE: &str = "
name: call-after-login
steps:
  - activity: login
  - activity: call_started
    within: 2d
stale_after: 90d
actions:
  - task: {queue: callback, title: Call back after the login}
";

/// Firings and tasks; states are everyone's who logged in.
fn trigger_rows(dir: &Path) -> i64 {
    let db = rusqlite::Connection::open(dir.join("meta.sqlite")).expect("meta db");
    ["trigger_firings", "trigger_tasks"]
        .iter()
        .map(|t| {
            db.query_row(&format!("SELECT count(*) FROM {t}"), [], |r| {
                r.get::<_, i64>(0)
            })
            .unwrap()
        })
        .sum()
}

/// Builds the whole scenario; returns the events of everyone else, as stored.
fn build(app: &App, dir: &Path) -> Vec<LogRecord> {
    app.add_rule(P, RULE).expect("rule");
    ingest(app, others(0, 30));
    ingest(app, ana_early());
    // A dead letter naming her (a broken event) and one only mentioning her phone,
    // formatted differently.
    let receipt = app
        .ingest(
            P,
            vec![
                Incoming::Rejected(Rejected {
                    source: "collector".into(),
                    line: 1,
                    field: "timestamp".into(),
                    reason: "not a time".into(),
                    payload: format!(
                        r#"{{"timestamp":"yesterday","identifiers":{{"email":"{EMAIL}"}}}}"#
                    ),
                }),
                Incoming::Rejected(Rejected {
                    source: "crm.csv".into(),
                    line: 7,
                    field: "channel".into(),
                    reason: "unknown".into(),
                    payload: "7;+1 415 555 0199;fax;2026-11-02".into(),
                }),
                Incoming::Rejected(Rejected {
                    source: "crm.csv".into(),
                    line: 8,
                    field: "channel".into(),
                    reason: "unknown".into(),
                    payload: "8;+1 212 555 0100;fax;2026-11-02".into(),
                }),
            ],
        )
        .expect("dead letters");
    assert_eq!(receipt.rejected.len(), 3);
    // An import whose rejects file holds one of her rows and one of someone else's.
    let file = dir.join("../import.ndjson");
    std::fs::write(
        &file,
        format!(
            "{}\n{{\"timestamp\":\"bad\",\"identifiers\":{{\"email\":\"{EMAIL}\"}},\"channel\":\"web\",\"activity\":\"x\"}}\n{{\"timestamp\":\"bad\",\"identifiers\":{{\"email\":\"zed@example.org\"}},\"channel\":\"web\",\"activity\":\"x\"}}\n",
            ev("imp-1", "2026-11-05T10:00:00Z", &[email()], "newsletter_opened").to_json()
        ),
    )
    .expect("write import");
    let summary = app
        .import_file(P, &file, &ImportOptions::default(), &|_| {})
        .expect("import");
    assert_eq!((summary.imported, summary.rejected), (1, 2));
    app.add_note(
        P,
        &format!("email:{EMAIL}"),
        NewNote {
            author: "agent-7".into(),
            text: "Ana called about order 5512, promised a refund".into(),
            topic: Some("refund".into()),
            event: Some("ana-3".into()),
        },
    )
    .expect("note");
    app.compact().expect("compact");
    ingest(app, ana_late());
    ingest(app, others(30, 5));
    let view = app
        .customer(P, &format!("email:{EMAIL}"), &Default::default())
        .expect("ana before the erase");
    assert_eq!(view.events, 8, "her events, compacted and in the log");
    everyone_else(app)
}

/// Every stored event except Ana's, with Bob's referral scrubbed, as (event id, event).
fn everyone_else(app: &App) -> Vec<LogRecord> {
    let mut out: Vec<LogRecord> = app
        .store()
        .records(P)
        .expect("records")
        .into_iter()
        .filter(|r| {
            !r.event
                .event_id
                .as_deref()
                .is_some_and(|id| id.starts_with("ana-") || id == "imp-1")
        })
        .map(|mut r| {
            r.event.properties.remove("referred_by");
            r
        })
        .collect();
    out.sort_by(|a, b| a.event.event_id.cmp(&b.event.event_id));
    out
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read dir").flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

fn assert_no_needle(what: &str, text: &str) {
    let lower = text.to_lowercase();
    for n in NEEDLES {
        assert!(
            !lower.contains(&n.to_lowercase()),
            "{what} still holds '{n}': {text}"
        );
    }
}

/// (b): every file through its own format.
fn assert_decoded_files_clean(dir: &Path) {
    for path in files(dir) {
        let name = path.display().to_string();
        match path.extension().and_then(|x| x.to_str()) {
            Some("log") => {
                let read = log::read_log_file(&path).expect("log file");
                for r in read.records {
                    assert_no_needle(&name, &r.event.to_json().to_string());
                }
            }
            Some("parquet") => {
                for r in segment::read_records(&path, P).expect("segment") {
                    assert_no_needle(&name, &r.event.to_json().to_string());
                }
            }
            Some("sqlite") => {
                let db = rusqlite::Connection::open(&path).expect("meta db");
                let tables: Vec<String> = db
                    .prepare("SELECT name FROM sqlite_master WHERE type = 'table'")
                    .unwrap()
                    .query_map([], |r| r.get(0))
                    .unwrap()
                    .collect::<Result<_, _>>()
                    .unwrap();
                assert!(tables.contains(&"audit_log".to_string()));
                for t in tables {
                    let mut stmt = db.prepare(&format!("SELECT * FROM \"{t}\"")).unwrap();
                    let n = stmt.column_count();
                    let rows = stmt
                        .query_map([], |r| {
                            let mut cells = Vec::new();
                            for i in 0..n {
                                let cell = match r.get_ref(i)? {
                                    rusqlite::types::ValueRef::Text(t) => {
                                        String::from_utf8_lossy(t).into_owned()
                                    }
                                    rusqlite::types::ValueRef::Blob(b) => {
                                        String::from_utf8_lossy(b).into_owned()
                                    }
                                    other => format!("{other:?}"),
                                };
                                cells.push(cell);
                            }
                            Ok(cells.join("|"))
                        })
                        .unwrap();
                    for row in rows {
                        assert_no_needle(&format!("{name} table {t}"), &row.unwrap());
                    }
                }
            }
            Some("ndjson" | "json" | "toml") => {
                assert_no_needle(&name, &std::fs::read_to_string(&path).unwrap());
            }
            _ => {}
        }
    }
}

/// Which files hold which needle's bytes, compared case-insensitively.
fn raw_hits(dir: &Path) -> Vec<String> {
    let mut hits = Vec::new();
    for path in files(dir) {
        let bytes = std::fs::read(&path).expect("read file");
        let lower: Vec<u8> = bytes.iter().map(u8::to_ascii_lowercase).collect();
        for n in NEEDLES {
            let n = n.to_lowercase();
            if lower.windows(n.len()).any(|w| w == n.as_bytes()) {
                hits.push(format!("{} holds the bytes of '{n}'", path.display()));
            }
        }
    }
    hits
}

/// (c): every byte of every file, whatever it is (WAL, free pages, compressed pages).
fn assert_raw_bytes_clean(dir: &Path) {
    let hits = raw_hits(dir);
    assert!(hits.is_empty(), "{hits:#?}");
}

fn assert_not_found(app: &App) {
    for text in [
        format!("email:{EMAIL}"),
        EMAIL.to_string(),
        format!("phone:{PHONE}"),
        PHONE.to_string(),
        format!("social:twitter:{HANDLE}"),
        HANDLE.to_string(),
        format!("anonymous_id:{ANON}"),
        ANON.to_string(),
    ] {
        match app.customer(P, &text, &Default::default()) {
            Err(AppError::CustomerNotFound(_)) => {}
            other => panic!("'{text}' still finds something: {other:?}"),
        }
    }
}

#[test]
fn erase_removes_the_whole_cluster_from_every_file_and_suppression_holds_until_lifted() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("data");
    std::fs::create_dir_all(&dir).unwrap();
    let app = open_with(&dir, None);
    let kept = build(&app, &dir);
    // Her bytes are there before: the checks below can see them.
    assert!(
        !raw_hits(&dir).is_empty(),
        "the fixture must put her identifiers on disk"
    );

    let firing_rows = trigger_rows(&dir);
    assert!(firing_rows > 0, "her login and call fire the rule");

    let receipt = app.erase(P, EMAIL, "admin@test").expect("erase");
    assert_eq!(trigger_rows(&dir), 0, "only her events fired the rule");
    assert!(receipt.counts.other_rows > 0);
    assert_eq!(receipt.identifier_hashes.len(), 4);
    assert_eq!(receipt.keys, 4, "one write-time key per primary identifier");
    let c = &receipt.counts;
    assert_eq!(c.segment_events + c.log_events, 8);
    assert_eq!(c.log_events, 3);
    assert_eq!(
        c.scrubbed_events, 2,
        "two referrals by her, one compacted, one in the log"
    );
    assert_eq!(c.notes, 1);
    assert_eq!(c.dead_letters, 3, "the three naming her, not the other two");
    assert_eq!(c.suppressions_added, 4);
    assert_eq!(receipt.rejects_lines, 1);
    assert!(c.identity_keys >= 4 && c.identity_evidence >= 2, "{c:?}");

    // (a) nothing finds her; everyone else is exactly as before.
    assert_not_found(&app);
    assert_eq!(everyone_else(&app), kept);
    assert_eq!(app.store().meta().dead_letter_count(P).unwrap(), 2);
    // (b) and (c), while the app is open and after it closed.
    assert_decoded_files_clean(&dir);
    assert_raw_bytes_clean(&dir);

    // Suppression: her events come back as dead letters holding no personal data.
    let receipt2 = app
        .ingest(P, ana_late().into_iter().map(Incoming::Event).collect())
        .unwrap();
    assert_eq!(receipt2.stored, 0);
    assert_eq!(receipt2.rejected.len(), 3);
    assert!(receipt2.rejected.iter().all(|r| r.reason == SUPPRESSED));
    app.link(
        P,
        omnitrail_identity::Source::Alias,
        vec![anon(), id(IdentifierKind::UserId, "u-new")],
        at("2026-11-12T00:00:00Z"),
    )
    .unwrap();
    assert_not_found(&app);
    assert_decoded_files_clean(&dir);
    assert_raw_bytes_clean(&dir);
    let audit = app.audit_log(P).unwrap();
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0].actor, "admin@test");
    assert_eq!(audit[0].action, "erase");
    assert_eq!(audit[0].identifier_hashes, receipt.identifier_hashes);
    drop(app);

    // Reopened: still suppressed, still clean (SQLite's close may move pages again).
    let app = open_with(&dir, None);
    let receipt3 = app
        .ingest(P, ana_late().into_iter().map(Incoming::Event).collect())
        .unwrap();
    assert_eq!(receipt3.stored, 0);
    assert_not_found(&app);
    assert_eq!(everyone_else(&app), kept);
    assert_raw_bytes_clean(&dir);

    // Lifted: lifting one identifier leaves events with the others refused.
    assert_eq!(
        app.lift_suppression(P, &format!("email:{EMAIL}"), "admin@test")
            .unwrap(),
        1
    );
    let r = app
        .ingest(P, vec![Incoming::Event(ana_early().remove(2))])
        .unwrap();
    assert_eq!(
        (r.stored, r.rejected.len()),
        (0, 1),
        "the phone is still suppressed"
    );
    for h in &receipt.identifier_hashes {
        app.lift_suppression(P, h, "admin@test").unwrap();
    }
    assert!(app
        .suppressions(P)
        .unwrap()
        .iter()
        .all(|s| s.lifted_at.is_some()));
    // The same event ids are new again: their de-duplication entries went with her.
    let r = app
        .ingest(P, ana_early().into_iter().map(Incoming::Event).collect())
        .unwrap();
    assert_eq!((r.stored, r.duplicates, r.rejected.len()), (4, 0, 0));
    let view = app
        .customer(P, &format!("phone:{PHONE}"), &Default::default())
        .expect("she is back after the lift");
    assert_eq!(view.events, 4);
    assert_eq!(app.audit_log(P).unwrap().len(), 5, "one erase, four lifts");
}

#[test]
fn an_erase_interrupted_at_any_fsync_finishes_on_the_next_open() {
    let mut nth = 1;
    loop {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("data");
        std::fs::create_dir_all(&dir).unwrap();
        let disk = Arc::new(FaultyDisk::default());
        let app = open_with(&dir, Some(disk.clone()));
        let kept = build(&app, &dir);
        disk.arm(nth);
        let result = app.erase(P, EMAIL, "admin@test");
        let failed = result.is_err();
        drop(app);
        let app = open_with(&dir, None);
        assert_not_found(&app);
        assert_eq!(everyone_else(&app), kept, "failing sync {nth}");
        let audit = app.audit_log(P).unwrap();
        assert_eq!(audit.len(), 1, "failing sync {nth}: one audit entry");
        // A resumed erase counts what was left to remove when it resumed.
        assert!(
            audit[0].counts.segment_events + audit[0].counts.log_events <= 8,
            "failing sync {nth}"
        );
        let r = app
            .ingest(P, ana_late().into_iter().map(Incoming::Event).collect())
            .unwrap();
        assert_eq!(
            r.stored, 0,
            "failing sync {nth}: suppressed after the resume"
        );
        drop(app);
        assert_raw_bytes_clean(&dir);
        if !failed {
            // The fault came after the last sync of the erase: every point was covered.
            break;
        }
        nth += 1;
        assert!(nth < 200, "an erase does not sync this often");
    }
}
