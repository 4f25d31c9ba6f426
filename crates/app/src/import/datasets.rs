//! The readers on the real event logs of `../shared/datasets` (see its README): counts must
//! match what pm4py reports for the same files, with no rejects.

use super::{open, Batch, ColumnMapping, ImportOptions};
use omnitrail_model::Channel;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The datasets folder, or `None` with a notice when this checkout does not have it.
pub(crate) fn datasets() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/datasets");
    if dir.is_dir() {
        Some(dir)
    } else {
        eprintln!("skipping: ../shared/datasets not found");
        None
    }
}

fn read_all(path: &Path, opts: &ImportOptions) -> Batch {
    let mut reader = open(path, opts).unwrap_or_else(|e| panic!("{e}"));
    let mut all = Batch::default();
    while let Some(batch) = reader.next_batch(4096).unwrap_or_else(|e| panic!("{e}")) {
        all.events.extend(batch.events);
        all.rejects.extend(batch.rejects);
    }
    all
}

/// (events, distinct customers), after checking that nothing was rejected.
fn counts(batch: &Batch) -> (usize, usize) {
    assert_eq!(batch.rejects, vec![], "no row of a real log is rejected");
    let customers: BTreeSet<String> = batch
        .events
        .iter()
        .map(|e| e.identifiers[0].to_string())
        .collect();
    (batch.events.len(), customers.len())
}

#[test]
fn real_logs_import_completely() {
    let Some(dir) = datasets() else { return };
    // bpic2012.xes.gz (262,200 events) reads the same way but takes seconds in a debug build.
    let cases = [
        ("pm4py-logs/running-example.xes", 42, 6),
        ("pm4py-logs/running-example.csv", 42, 6),
        ("pm4py-logs/receipt.csv", 8577, 1434),
        ("pm4py-logs/receipt.xes.gz", 8577, 1434),
        ("pm4py-logs/helpdesk.xes.gz", 21348, 4580),
        ("pm4py-logs/bpic2013_incidents.xes.gz", 65533, 7554),
        ("bpic2020/DomesticDeclarations.xes.gz", 55628, 10357),
    ];
    for (file, events, customers) in cases {
        let batch = read_all(&dir.join(file), &ImportOptions::default());
        assert_eq!(counts(&batch), (events, customers), "{file}");
    }
}

#[test]
fn bpic2016_complaints_with_an_explicit_mapping() {
    let Some(dir) = datasets() else { return };
    let opts = ImportOptions {
        mapping: ColumnMapping {
            customer: Some("CustomerID".into()),
            timestamp: Some("ContactDate".into()),
            activity_value: Some("complaint".into()),
            channel: Some("ContactChannelID".into()),
            ..ColumnMapping::default()
        },
        ..ImportOptions::default()
    };
    let batch = read_all(&dir.join("bpic2016/BPI2016_Complaints.csv"), &opts);
    assert_eq!(counts(&batch), (289, 226));
    let first = &batch.events[0];
    assert_eq!(first.activity, "complaint");
    assert_eq!(first.channel, Channel::Custom("8".into()));
    assert_eq!(first.timestamp.to_rfc3339(), "2016-01-12T00:00:00Z");
}

#[test]
fn receipt_csv_and_xes_give_the_same_journeys() {
    let Some(dir) = datasets() else { return };
    let key = |batch: &Batch| -> Vec<(String, String, i64)> {
        batch
            .events
            .iter()
            .map(|e| {
                (
                    e.identifiers[0].value.clone(),
                    e.activity.to_string(),
                    e.timestamp.as_micros(),
                )
            })
            .collect()
    };
    let csv = read_all(
        &dir.join("pm4py-logs/receipt.csv"),
        &ImportOptions::default(),
    );
    let xes = read_all(
        &dir.join("pm4py-logs/receipt.xes.gz"),
        &ImportOptions::default(),
    );
    assert_eq!(key(&csv), key(&xes));
    let channels = |batch: &Batch| {
        batch
            .events
            .iter()
            .map(|e| e.channel.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        channels(&csv),
        channels(&xes),
        "case:channel and the trace's channel agree"
    );
}
