//! Designed journeys in the data dir and conformance through the app.
//!
//! Designs live in `DATA/journeys/`, one per file: `NAME.yaml`, `NAME.yml` or `NAME.json`
//! (the format is in `docs/designed-journeys.md`). The demo writes its designed onboarding
//! journey there as `onboarding.yaml`.

use crate::analysis::{AnalysisError, AnalysisInput, QueryOptions};
use crate::{App, AppError};
use omnitrail_engine::conformance::{
    conformance, conformance_scan, Conformance, ConformanceOptions, Design, DesignedJourney,
};
use omnitrail_engine::EngineError;
use omnitrail_model::ProjectId;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// The folder of the data dir that holds designed journeys.
pub const JOURNEYS_DIR: &str = "journeys";

/// A design file found in the data dir.
#[derive(Clone, Debug, PartialEq)]
pub struct DesignFile {
    /// The design's `name` field.
    pub name: String,
    pub path: PathBuf,
    pub steps: usize,
}

/// Which design to run: a file anywhere, or a design in the data dir by name.
#[derive(Clone, Debug, PartialEq)]
pub enum DesignChoice {
    File(PathBuf),
    Name(String),
    /// A design given as text (YAML, or JSON, which YAML reads too), e.g. from an editor.
    Inline(String),
    /// The only design in the data dir.
    Only,
}

fn config_error(path: &Path, reason: impl Into<String>) -> AppError {
    AppError::Config {
        path: path.display().to_string(),
        reason: reason.into(),
    }
}

/// Parses a design: JSON for `.json` files, YAML otherwise.
pub fn parse_design(path: &Path, text: &str) -> Result<DesignedJourney, AppError> {
    let is_json = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("json"));
    if is_json {
        serde_json::from_str(text).map_err(|e| config_error(path, e.to_string()))
    } else {
        serde_yaml_ng::from_str(text).map_err(|e| config_error(path, e.to_string()))
    }
}

/// Reads and checks a design file.
pub fn read_design(path: &Path) -> Result<Design, AppError> {
    let text = std::fs::read_to_string(path).map_err(|e| AppError::Io {
        path: path.display().to_string(),
        source: e,
    })?;
    let written = parse_design(path, &text)?;
    Design::new(&written).map_err(|e| config_error(path, e.to_string()))
}

fn is_design_file(path: &Path) -> bool {
    path.is_file()
        && path.extension().is_some_and(|e| {
            let e = e.to_string_lossy().to_ascii_lowercase();
            e == "yaml" || e == "yml" || e == "json"
        })
}

/// Each step of the demo's designed onboarding journey: (activity, channels, within). The
/// channels are where the generator puts each step: the account and profile on the web,
/// verification by email, first login and tutorial on the web or in the app; the limits are
/// generous against the generator's timing, so only the planted skips deviate.
fn demo_step(activity: &str) -> (&'static [&'static str], Option<&'static str>) {
    match activity {
        "account_created" => (&["web"], None),
        "email_verified" => (&["email"], Some("1d")),
        "profile_completed" => (&["web", "mobile_app"], Some("2d")),
        "first_login" => (&["web", "mobile_app"], Some("3d")),
        "tutorial_completed" => (&["web", "mobile_app"], Some("1h")),
        _ => (&[], None),
    }
}

/// The demo's designed onboarding journey as YAML, built from the generator's step list.
pub fn demo_onboarding_yaml() -> String {
    let steps = omnitrail_synth::designed_onboarding_journey();
    let mut out = String::from(
        "# The onboarding journey every new customer should follow (Omnitrail demo data).\n\
         # Run `omnitrail conformance --name onboarding`; the format is in docs/designed-journeys.md.\n\
         name: onboarding\n\
         description: From account creation to the finished tutorial, right after the purchase.\n",
    );
    if let Some(goal) = steps.last() {
        let _ = writeln!(out, "goal: {goal}");
    }
    out.push_str("steps:\n");
    for activity in steps {
        let (channels, within) = demo_step(activity);
        let _ = writeln!(out, "  - activity: {activity}");
        if !channels.is_empty() {
            let _ = writeln!(out, "    channels: [{}]", channels.join(", "));
        }
        if let Some(w) = within {
            let _ = writeln!(out, "    within: {w}");
        }
    }
    out
}

/// Writes the demo's designed journeys into `dir/journeys/`.
pub fn write_demo_designs(dir: &Path) -> Result<(), AppError> {
    let folder = dir.join(JOURNEYS_DIR);
    std::fs::create_dir_all(&folder).map_err(|e| AppError::Io {
        path: folder.display().to_string(),
        source: e,
    })?;
    let path = folder.join("onboarding.yaml");
    std::fs::write(&path, demo_onboarding_yaml()).map_err(|e| AppError::Io {
        path: path.display().to_string(),
        source: e,
    })
}

impl AnalysisInput {
    /// Load with [`conformance_scan`] so the impact has sentiment.
    pub fn conformance(&self, options: &ConformanceOptions) -> Result<Conformance, EngineError> {
        conformance(&self.partitions, &self.stages, &self.query, options)
    }
}

impl App {
    /// The designs in the data dir's `journeys/` folder, by name. A file that does not parse
    /// is an error naming it, so a typo never hides a design.
    pub fn designed_journeys(&self) -> Result<Vec<DesignFile>, AppError> {
        let folder = self.dir().join(JOURNEYS_DIR);
        let entries = match std::fs::read_dir(&folder) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => {
                return Err(AppError::Io {
                    path: folder.display().to_string(),
                    source: e,
                })
            }
        };
        let mut paths = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| AppError::Io {
                path: folder.display().to_string(),
                source: e,
            })?;
            if is_design_file(&entry.path()) {
                paths.push(entry.path());
            }
        }
        paths.sort();
        let mut out: Vec<DesignFile> = Vec::new();
        for path in paths {
            let design = read_design(&path)?;
            if let Some(other) = out.iter().find(|d| d.name == design.name) {
                return Err(config_error(
                    &path,
                    format!(
                        "the design name '{}' is also used by {}",
                        design.name,
                        other.path.display()
                    ),
                ));
            }
            out.push(DesignFile {
                name: design.name.clone(),
                path,
                steps: design.steps.len(),
            });
        }
        Ok(out)
    }

    /// The chosen design, checked.
    pub fn design(&self, choice: &DesignChoice) -> Result<Design, AppError> {
        match choice {
            DesignChoice::File(path) => read_design(path),
            DesignChoice::Inline(text) => {
                // Errors name the `design` parameter, as if it were a file of that name.
                let at = Path::new("design");
                let written: DesignedJourney =
                    serde_yaml_ng::from_str(text).map_err(|e| config_error(at, e.to_string()))?;
                Design::new(&written).map_err(|e| config_error(at, e.to_string()))
            }
            DesignChoice::Name(name) => {
                let all = self.designed_journeys()?;
                match all.iter().find(|d| &d.name == name) {
                    Some(d) => read_design(&d.path),
                    None => Err(config_error(
                        &self.dir().join(JOURNEYS_DIR),
                        format!(
                            "no designed journey named '{name}'; {}",
                            known_designs(&all)
                        ),
                    )),
                }
            }
            DesignChoice::Only => {
                let all = self.designed_journeys()?;
                match all.as_slice() {
                    [one] => read_design(&one.path),
                    _ => Err(config_error(
                        &self.dir().join(JOURNEYS_DIR),
                        format!(
                            "choose a design with --name or --design FILE; {}",
                            known_designs(&all)
                        ),
                    )),
                }
            }
        }
    }

    /// Conformance of the query's cases to `design`.
    pub fn conformance(
        &self,
        project: ProjectId,
        options: &QueryOptions,
        design: &Design,
    ) -> Result<Conformance, AnalysisError> {
        let query = self.parse_query_in(project, options)?;
        let extra = conformance_scan(&query);
        let input = self.analysis_input(project, query, &extra)?;
        Ok(input.conformance(&ConformanceOptions::new(design.clone()))?)
    }
}

fn known_designs(all: &[DesignFile]) -> String {
    if all.is_empty() {
        format!("the data dir has none (put NAME.yaml files in its {JOURNEYS_DIR}/ folder)")
    } else {
        format!(
            "known designs: {}",
            all.iter()
                .map(|d| d.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::AppOptions;
    use omnitrail_engine::conformance::Deviation;
    use omnitrail_synth::SynthConfig;

    #[test]
    fn the_demo_design_follows_the_generator() {
        let written = parse_design(Path::new("onboarding.yaml"), &demo_onboarding_yaml()).unwrap();
        let d = Design::new(&written).unwrap();
        let activities: Vec<&str> = d.steps.iter().map(|s| s.activities[0].as_str()).collect();
        assert_eq!(activities, omnitrail_synth::designed_onboarding_journey());
        assert_eq!(d.goal, d.steps.len() - 1);
        assert!(d.steps.iter().all(|s| !s.channels.is_empty()));
        // The same design as JSON.
        let json = serde_json::to_string(&written).unwrap();
        assert_eq!(parse_design(Path::new("x.json"), &json).unwrap(), written);
    }

    #[test]
    fn bad_design_files_name_the_file_and_the_problem() {
        let dir = tempfile::tempdir().unwrap();
        let folder = dir.path().join(JOURNEYS_DIR);
        std::fs::create_dir_all(&folder).unwrap();
        std::fs::write(
            folder.join("a.yaml"),
            "name: a\nsteps:\n  - activity: x\n    chanels: [web]\n",
        )
        .unwrap();
        let app = App::open(dir.path(), AppOptions::default()).unwrap();
        let err = app.designed_journeys().unwrap_err().to_string();
        assert!(err.contains("a.yaml") && err.contains("chanels"), "{err}");
        std::fs::write(
            folder.join("a.yaml"),
            "name: a\nsteps:\n  - activity: x\n    within: soon\n",
        )
        .unwrap();
        let err = app.designed_journeys().unwrap_err().to_string();
        assert!(err.contains("a.yaml") && err.contains("within"), "{err}");
        std::fs::write(folder.join("a.yaml"), "name: a\nsteps:\n  - activity: x\n").unwrap();
        std::fs::write(
            folder.join("b.json"),
            r#"{"name": "b", "steps": [{"activity": ["y", "z"], "optional": true}, {"activity": "w"}]}"#,
        )
        .unwrap();
        let names: Vec<String> = app
            .designed_journeys()
            .unwrap()
            .into_iter()
            .map(|d| d.name)
            .collect();
        assert_eq!(names, ["a", "b"]);
        let err = app
            .design(&DesignChoice::Name("c".into()))
            .unwrap_err()
            .to_string();
        assert!(err.contains("known designs: a, b"), "{err}");
        assert!(app.design(&DesignChoice::Only).is_err());
        let b = app.design(&DesignChoice::Name("b".into())).unwrap();
        assert_eq!(b.steps[0].name, "y|z");
    }

    /// Acceptance: on a generated demo, the planted skips (12% profile, 8% email, 20% in all)
    /// show as missing steps within ±3 points, and nothing else deviates.
    #[test]
    fn demo_conformance_finds_the_planted_skips() {
        let dir = tempfile::tempdir().unwrap();
        let mut app = App::open(dir.path(), AppOptions::default()).unwrap();
        let cfg = SynthConfig {
            customers: 3000,
            ..SynthConfig::default()
        };
        app.generate_demo(&cfg, &|_, _| {}).unwrap();
        let design = app
            .design(&DesignChoice::Name("onboarding".into()))
            .unwrap();
        let c = app
            .conformance(ProjectId::DEFAULT, &QueryOptions::default(), &design)
            .unwrap();
        assert!(c.totals.cases >= 2900, "{:?}", c.totals);
        let missing = &c.deviations[0];
        assert_eq!(missing.class, Deviation::Missing);
        assert!(
            (missing.share - 0.20).abs() <= 0.03,
            "missing share {}",
            missing.share
        );
        let deviating = 1.0 - c.totals.conformance_rate;
        assert!((deviating - 0.20).abs() <= 0.03, "deviating {deviating}");
        let step_missing = |name: &str| {
            let s = c.steps.iter().find(|s| s.step == name).unwrap();
            s.deviations[0].share
        };
        assert!((step_missing("profile_completed") - 0.12).abs() <= 0.03);
        assert!((step_missing("email_verified") - 0.08).abs() <= 0.03);
        for d in &c.deviations[1..] {
            assert_eq!(d.cases, 0, "{d:?}");
        }
        assert_eq!(c.totals.goal_reached, c.totals.cases);
        assert_eq!(c.impact.deviating.cases, c.totals.deviating);
        assert!(c.impact.conforming.median_duration_s.is_some());
    }
}
