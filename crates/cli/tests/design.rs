//! End-to-end tests of `conformance`, `personas`, `compare` and `--persona` on a generated
//! demo, as a user would run them.

mod common;

use common::{failure, ok_json, ok_stdout, omnitrail};
use serde_json::Value;

fn demo(customers: u32) -> tempfile::TempDir {
    let data = tempfile::tempdir().unwrap();
    let out = omnitrail(
        data.path(),
        &["demo", "--customers", &customers.to_string(), "--no-serve"],
    );
    assert!(
        out.status.success(),
        "demo failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    data
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("{v} is not a number"))
}

fn u(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("{v} is not a count"))
}

/// Acceptance: the demo's designed onboarding journey shows the planted skips (20% of
/// customers miss a step: 12% the profile, 8% the email verification) within ±3 points.
#[test]
fn conformance_reports_the_planted_skips() {
    let data = demo(2000);
    let c = ok_json(
        data.path(),
        &["conformance", "--name", "onboarding", "--format", "json"],
    );
    assert_eq!(c["design"], "onboarding");
    assert_eq!(c["goal"], "tutorial_completed");
    assert!(u(&c["totals"]["cases"]) >= 1950, "{}", c["totals"]);
    let missing = &c["deviations"][0];
    assert_eq!(missing["class"], "missing");
    assert!((f(&missing["share"]) - 0.20).abs() <= 0.03, "{missing}");
    let step = |name: &str| {
        c["steps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["step"] == name)
            .unwrap_or_else(|| panic!("no step {name}"))
            .clone()
    };
    assert!((f(&step("profile_completed")["deviations"][0]["share"]) - 0.12).abs() <= 0.03);
    assert!((f(&step("email_verified")["deviations"][0]["share"]) - 0.08).abs() <= 0.03);
    assert!((f(&c["totals"]["conformance_rate"]) - 0.80).abs() <= 0.03);

    // The only design is the default; the table names it.
    let table = ok_stdout(data.path(), &["conformance"]);
    assert!(table.contains("conformance to 'onboarding'"), "{table}");
    assert!(table.contains("missing"), "{table}");
    let err = failure(data.path(), &["conformance", "--name", "checkout"]);
    assert!(err.contains("known designs: onboarding"), "{err}");

    // A design file given on the command line.
    let file = data.path().join("mine.json");
    std::fs::write(
        &file,
        r#"{"name": "login", "steps": [{"activity": "account_created"}, {"activity": "first_login", "within": "4d"}]}"#,
    )
    .unwrap();
    let c = ok_json(
        data.path(),
        &[
            "conformance",
            "--design",
            file.to_str().unwrap(),
            "--format",
            "json",
        ],
    );
    assert_eq!(c["design"], "login");
    assert_eq!(c["totals"]["conformance_rate"], 1.0);
}

/// `--persona` narrows every analysis to one persona: each persona's map counts are at most
/// the whole map's, and all personas together make the whole.
#[test]
fn personas_and_persona_filters_on_the_map() {
    let data = demo(800);
    let p = ok_json(data.path(), &["personas", "--k", "4", "--format", "json"]);
    assert_eq!(p["k"], 4);
    assert_eq!(p["k_choice"], "given");
    let personas = p["personas"].as_array().unwrap();
    assert_eq!(personas.len(), 4);
    let total: u64 = personas.iter().map(|x| u(&x["customers"])).sum();
    assert_eq!(total, u(&p["customers"]));

    // `--persona` uses the default personas (k by silhouette).
    let default = ok_json(data.path(), &["personas", "--format", "json"]);
    assert_eq!(default["k_choice"], "silhouette");
    let whole = ok_json(data.path(), &["map", "--format", "json"]);
    let (mut events, mut customers) = (0, 0);
    for x in default["personas"].as_array().unwrap() {
        let key = x["key"].as_str().unwrap();
        let m = ok_json(data.path(), &["map", "--persona", key, "--format", "json"]);
        assert!(u(&m["totals"]["events"]) <= u(&whole["totals"]["events"]));
        assert_eq!(m["totals"]["customers"], x["customers"]);
        events += u(&m["totals"]["events"]);
        customers += u(&m["totals"]["customers"]);
    }
    assert_eq!(events, u(&whole["totals"]["events"]));
    assert_eq!(customers, u(&whole["totals"]["customers"]));
    // By index too, and a clear error naming the known personas.
    let m = ok_json(data.path(), &["map", "--persona", "p1", "--format", "json"]);
    assert_eq!(
        m["totals"]["customers"],
        default["personas"][0]["customers"]
    );
    let err = failure(data.path(), &["map", "--persona", "nobody"]);
    assert!(err.contains("unknown persona 'nobody'"), "{err}");
    assert!(
        err.contains(default["personas"][0]["key"].as_str().unwrap()),
        "{err}"
    );
    let table = ok_stdout(data.path(), &["personas", "--k", "3"]);
    assert!(table.contains("3 personas of"), "{table}");
}

#[test]
fn compare_two_halves_of_the_year() {
    let data = demo(400);
    let args = [
        "compare",
        "--a-from",
        "2025-01-01",
        "--a-to",
        "2025-07-01",
        "--b-from",
        "2025-07-01",
        "--a-label",
        "H1",
        "--b-label",
        "H2",
        "--funnel",
        "landing_page_viewed > purchase",
        "--format",
        "json",
    ];
    let c = ok_json(data.path(), &args);
    assert_eq!(c["a"]["label"], "H1");
    assert!(u(&c["a"]["events"]) > 0 && u(&c["b"]["events"]) > 0);
    let edges = c["map"]["edges"].as_array().unwrap();
    assert!(!edges.is_empty());
    assert!(edges.iter().all(|e| e["verdict"].is_string()));
    assert_eq!(c["funnel"].as_array().unwrap().len(), 2);
    assert!(c["friction"].is_array());
    // Deterministic.
    assert_eq!(ok_json(data.path(), &args), c);
    let table = ok_stdout(
        data.path(),
        &["compare", "--a-to", "2025-07-01", "--b-from", "2025-07-01"],
    );
    assert!(table.contains("process map by activity"), "{table}");
    let err = failure(data.path(), &["compare"]);
    assert!(
        err.contains("give the sides something to differ in"),
        "{err}"
    );
}
