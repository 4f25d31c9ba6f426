//! The JSON of every analysis and of customer views on the 20k-customer demo, byte for byte
//! as checked in under `tests/golden/demo-20k/`: a change to storage, identity resolution
//! or the engine must not change an answer. `OMNITRAIL_UPDATE_GOLDEN=1` rewrites the files;
//! their diff is then a change of answers, to be reviewed as one.

mod common;

use common::{ok_stdout, omnitrail};
use std::path::Path;

/// (golden file, arguments before `--format json`).
const ANSWERS: &[(&str, &[&str])] = &[
    ("01-map.json", &["map"]),
    ("02-map-by-channel.json", &["map", "--by", "channel"]),
    (
        "03-map-by-stage-case-gap-30m.json",
        &["map", "--by", "stage", "--case", "gap:30m"],
    ),
    ("04-variants.json", &["variants"]),
    (
        "05-variants-by-stage-top-20.json",
        &["variants", "--by", "stage", "--top", "20"],
    ),
    ("06-channels.json", &["channels"]),
    (
        "07-channels-performance.json",
        &["channels", "--performance"],
    ),
    (
        "08-paths-anchor-product-viewed.json",
        &["paths", "--anchor", "product_viewed"],
    ),
    (
        "09-paths-anchor-purchase-backward-steps-3.json",
        &[
            "paths",
            "--anchor",
            "purchase",
            "--backward",
            "--steps",
            "3",
        ],
    ),
    (
        "10-funnel-step-ad-clicked-step-landing-page-viewed-step-product.json",
        &[
            "funnel",
            "--step",
            "ad_clicked",
            "--step",
            "landing_page_viewed",
            "--step",
            "product_viewed",
            "--step",
            "purchase",
            "--window",
            "7d",
        ],
    ),
    (
        "11-funnel-step-product-viewed-step-purchase-mode-any-order-brea.json",
        &[
            "funnel",
            "--step",
            "product_viewed",
            "--step",
            "purchase",
            "--mode",
            "any-order",
            "--breakdown",
            "trait:plan",
        ],
    ),
    ("12-friction.json", &["friction"]),
    ("13-journey-map.json", &["journey-map"]),
    ("14-emotion.json", &["emotion"]),
    ("15-lifecycle.json", &["lifecycle"]),
    ("16-handoffs.json", &["handoffs"]),
    ("17-overview.json", &["overview"]),
    ("18-personas.json", &["personas"]),
    (
        "19-compare-by-stage-a-to-2025-06-01-b-from-2025-06-01.json",
        &[
            "compare",
            "--by",
            "stage",
            "--a-to",
            "2025-06-01",
            "--b-from",
            "2025-06-01",
        ],
    ),
    (
        "20-conformance-name-onboarding.json",
        &["conformance", "--name", "onboarding"],
    ),
    (
        "21-step-customers-step-purchase-next-call-ended-limit-20.json",
        &[
            "step-customers",
            "--step",
            "purchase",
            "--next",
            "call_ended",
            "--limit",
            "20",
        ],
    ),
    (
        "22-map-where-channel-phone.json",
        &["map", "--where", "channel = 'phone'"],
    ),
    (
        "23-friction-segment-did-payment-failed.json",
        &["friction", "--segment", "did('payment_failed')"],
    ),
    ("24-customer-c42.json", &["customer", "c42"]),
    ("25-customer-c7.json", &["customer", "c7"]),
];

/// The first line where `got` and `want` differ, for the failure message.
fn first_difference(got: &str, want: &str) -> String {
    let (mut got_lines, mut want_lines) = (got.lines(), want.lines());
    for line in 1.. {
        match (got_lines.next(), want_lines.next()) {
            (Some(g), Some(w)) if g == w => continue,
            (None, None) => break,
            (g, w) => {
                let cut =
                    |s: Option<&str>| s.unwrap_or("<end>").chars().take(200).collect::<String>();
                return format!("line {line}: got {} / want {}", cut(g), cut(w));
            }
        }
    }
    "same lines, different bytes".into()
}

#[test]
fn every_answer_on_the_20k_demo_is_unchanged() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let out = omnitrail(&data, &["demo", "--no-serve"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let golden = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/demo-20k");
    let update = std::env::var_os("OMNITRAIL_UPDATE_GOLDEN").is_some();
    let mut changed = Vec::new();
    for (file, args) in ANSWERS {
        let mut args = args.to_vec();
        args.extend(["--format", "json"]);
        let got = ok_stdout(&data, &args);
        let path = golden.join(file);
        if update {
            std::fs::write(&path, &got).expect("write golden");
            continue;
        }
        let want = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!(
                "{}: {e} (OMNITRAIL_UPDATE_GOLDEN=1 writes it)",
                path.display()
            )
        });
        if got != want {
            changed.push(format!(
                "omnitrail {}: {}",
                args.join(" "),
                first_difference(&got, &want)
            ));
        }
    }
    assert!(
        changed.is_empty(),
        "answers changed:\n{}",
        changed.join("\n")
    );
}
