//! The release path's static checks: checkov over the rendered chart, actionlint over the GitHub
//! Actions workflows, ShellCheck over the scripts, and the release scripts that wire a tag to the
//! chart's `version`, `appVersion` and image digest.
//!
//! - checkov scans `helm template` of the chart with its default values (a source checkout: no
//!   image digest) and of the chart as the release workflow packages it (`scripts/package-chart.sh`:
//!   version from the tag, image pinned by digest) with `examples/helm/values-production.yaml`.
//!   No check may fail, and every skip must be one the chart declares in
//!   `templates/_helpers.tpl` (`carbonshift.checkovSkips`) with its reason.
//! - actionlint (with ShellCheck for the `run:` scripts) must find nothing in `.github/workflows/`.
//!
//! The tools are found through `CARBONSHIFT_CHECKOV`, `CARBONSHIFT_ACTIONLINT`,
//! `CARBONSHIFT_SHELLCHECK` and `CARBONSHIFT_HELM`, else in `.tools/bin` (installed by
//! `scripts/install-tools.sh`, that is `make tools`), else on `PATH`. Without them these tests
//! print why and pass, unless `CARBONSHIFT_REQUIRE_TOOLS=1` (set by `make test`), where they fail.

// Test code: a failed `expect` in a helper is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// The checkov findings the chart accepts, each skipped inline with its reason.
const ACCEPTED_SKIPS: &[&str] = &[
    // The operator and the hook call the API server: they need the ServiceAccount token.
    "CKV_K8S_38",
    // The image is pinned by version or digest; IfNotPresent is right for a pinned image.
    "CKV_K8S_15",
    // A source checkout has no digest (the released chart has one: not skipped there).
    "CKV_K8S_43",
];

/// A digest that stands for the one the release workflow pushes.
const TEST_DIGEST: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

#[test]
fn checkov_finds_nothing_in_the_chart_with_default_values() {
    let (Some(helm), Some(checkov)) = (
        tool_or_skip("helm", "checkov (default values)"),
        tool_or_skip("checkov", "checkov (default values)"),
    ) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let rendered = dir.path().join("default.yaml");
    helm_template(&helm, &repo().join("charts/carbonshift"), &[], &rendered);
    let report = checkov_scan(&checkov, &rendered);
    report.assert_clean("the chart with its default values");
    // Without a digest the digest check is skipped (with the chart's reason), not passed.
    assert!(
        report.skipped.iter().any(|(id, _, _)| id == "CKV_K8S_43"),
        "a source checkout has no digest: CKV_K8S_43 should be skipped, not passed"
    );
    // NetworkPolicy is on by default: no pod without one.
    assert!(
        !report.skipped.iter().any(|(id, _, _)| id == "CKV2_K8S_6"),
        "CKV2_K8S_6 (pods without a NetworkPolicy) must pass, not be skipped"
    );
}

#[test]
fn checkov_finds_nothing_in_the_released_chart_with_production_values() {
    let (Some(helm), Some(checkov)) = (
        tool_or_skip("helm", "checkov (production values)"),
        tool_or_skip("checkov", "checkov (production values)"),
    ) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let package = package_chart(&helm, "0.1.0", TEST_DIGEST, dir.path());
    let rendered = dir.path().join("production.yaml");
    let values = repo().join("examples/helm/values-production.yaml");
    helm_template(&helm, &package, &[values.as_path()], &rendered);
    let text = std::fs::read_to_string(&rendered).unwrap();
    assert!(
        text.contains(&format!("ghcr.io/carbonshift/carbonshift@{TEST_DIGEST}")),
        "the released chart runs the image by digest"
    );
    let report = checkov_scan(&checkov, &rendered);
    report.assert_clean("the released chart with examples/helm/values-production.yaml");
    assert!(
        !report.skipped.iter().any(|(id, _, _)| id == "CKV_K8S_43"),
        "with image.digest set, CKV_K8S_43 must pass, not be skipped"
    );
}

#[test]
fn actionlint_finds_nothing_in_the_workflows() {
    let (Some(actionlint), Some(shellcheck)) = (
        tool_or_skip("actionlint", "actionlint"),
        tool_or_skip("shellcheck", "actionlint"),
    ) else {
        return;
    };
    let workflows: Vec<PathBuf> = std::fs::read_dir(repo().join(".github/workflows"))
        .expect(".github/workflows")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yml" || e == "yaml"))
        .collect();
    assert!(!workflows.is_empty(), "no workflow in .github/workflows");
    let output = Command::new(&actionlint)
        .current_dir(repo())
        .arg("-no-color")
        .arg("-shellcheck")
        .arg(&shellcheck)
        .args(&workflows)
        .output()
        .expect("run actionlint");
    assert!(
        output.status.success(),
        "actionlint found problems:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn shellcheck_finds_nothing_in_the_scripts() {
    let Some(shellcheck) = tool_or_skip("shellcheck", "shellcheck") else {
        return;
    };
    let mut scripts: Vec<PathBuf> = std::fs::read_dir(repo().join("scripts"))
        .expect("scripts/")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "sh"))
        .collect();
    scripts.push(repo().join(".ci/run"));
    let output = Command::new(&shellcheck)
        .current_dir(repo())
        .args(["--severity=warning", "--external-sources"])
        .args(&scripts)
        .output()
        .expect("run shellcheck");
    assert!(
        output.status.success(),
        "shellcheck found problems:\n{}",
        String::from_utf8_lossy(&output.stdout)
    );
}

#[test]
fn the_release_workflow_builds_both_architectures_and_pushes_image_and_chart() {
    let text = std::fs::read_to_string(repo().join(".github/workflows/release.yml")).unwrap();
    let workflow: Value = serde_saphyr::from_str(&text).expect("release.yml parses");
    // On a version tag only.
    assert_eq!(
        workflow["on"]["push"]["tags"],
        serde_json::json!(["v*.*.*"])
    );
    assert!(workflow["on"].get("pull_request").is_none());
    // Least privilege by default; packages: write only where something is pushed.
    assert_eq!(
        workflow["permissions"],
        serde_json::json!({"contents": "read"})
    );
    let jobs = workflow["jobs"].as_object().expect("jobs");
    for (name, job) in jobs {
        let pushes = ["image", "index", "chart"].contains(&name.as_str());
        assert_eq!(
            job["permissions"]["packages"] == "write",
            pushes,
            "job {name}: packages: write exactly where images or charts are pushed"
        );
    }
    // The tag is checked against Cargo.toml and Chart.yaml first.
    assert!(text.contains("scripts/release-version.sh \"$GITHUB_REF_NAME\""));
    // Both architectures, each natively.
    let platforms: BTreeSet<&str> = jobs["image"]["strategy"]["matrix"]["include"]
        .as_array()
        .expect("matrix")
        .iter()
        .map(|entry| entry["platform"].as_str().unwrap())
        .collect();
    assert_eq!(
        platforms,
        BTreeSet::from(["linux/amd64", "linux/arm64"]),
        "the image is built for amd64 and arm64"
    );
    // Pushed to ghcr.io, joined into one tag, chart packaged with the index digest and pushed as OCI.
    assert_eq!(workflow["env"]["REGISTRY"], "ghcr.io");
    assert!(text.contains("docker buildx imagetools create --tag \"${IMAGE}:${VERSION}\""));
    assert!(text.contains("scripts/package-chart.sh \"$VERSION\" \"$DIGEST\" dist"));
    assert_eq!(
        jobs["chart"]["steps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"].as_str().is_some_and(|n| n.starts_with("Package")))
            .expect("the package step")["env"]["DIGEST"],
        "${{ needs.index.outputs.digest }}"
    );
    assert!(text.contains("helm push \"dist/carbonshift-${VERSION}.tgz\" \"oci://${REGISTRY}/"));
}

#[test]
fn release_version_accepts_the_crate_version_and_refuses_any_other_tag() {
    let script = repo().join("scripts/release-version.sh");
    let crate_version = env!("CARGO_PKG_VERSION");
    let ok = Command::new(&script)
        .arg(format!("v{crate_version}"))
        .output()
        .unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&ok.stdout).trim(),
        format!("version={crate_version}")
    );
    for bad in ["v99.0.0", crate_version, "latest"] {
        let out = Command::new(&script).arg(bad).output().unwrap();
        assert!(!out.status.success(), "tag {bad} was accepted");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("release-version: "),
            "tag {bad}: no reason given"
        );
    }
}

#[test]
fn the_packaged_chart_carries_the_tag_version_and_the_image_digest() {
    let Some(helm) = tool_or_skip("helm", "package-chart") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let package = package_chart(&helm, "1.2.3", TEST_DIGEST, dir.path());
    assert_eq!(
        package.file_name().unwrap().to_string_lossy(),
        "carbonshift-1.2.3.tgz"
    );
    let show = |what: &str| {
        let out = Command::new(&helm)
            .args(["show", what])
            .arg(&package)
            .output()
            .unwrap();
        assert!(out.status.success());
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let chart: Value = serde_saphyr::from_str(&show("chart")).unwrap();
    assert_eq!(chart["version"], "1.2.3");
    assert_eq!(chart["appVersion"], "1.2.3");
    let values: Value = serde_saphyr::from_str(&show("values")).unwrap();
    assert_eq!(values["image"]["digest"], TEST_DIGEST);
    // The working tree is left alone.
    let source = std::fs::read_to_string(repo().join("charts/carbonshift/values.yaml")).unwrap();
    assert!(source.contains("  digest: \"\"\n"));
    // A malformed digest is refused.
    let out = Command::new(repo().join("scripts/package-chart.sh"))
        .env("HELM", &helm)
        .args(["1.2.3", "latest"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not of the form sha256:"));
}

// ---------------------------------------------------------------------------------------------
// Helpers.

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// A tool's path, or `None` after printing why the test is skipped. Panics when it is missing and
/// `CARBONSHIFT_REQUIRE_TOOLS=1`.
fn tool_or_skip(tool: &str, test: &str) -> Option<PathBuf> {
    let var = format!("CARBONSHIFT_{}", tool.to_uppercase());
    if let Some(path) = std::env::var_os(&var) {
        let path = PathBuf::from(path);
        assert!(path.is_file(), "{var}={} is not a file", path.display());
        return Some(path);
    }
    let local = repo().join(".tools/bin").join(tool);
    if local.is_file() {
        return Some(local);
    }
    if let Some(path) = std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join(tool))
        .find(|p| p.is_file())
    {
        return Some(path);
    }
    let required = std::env::var("CARBONSHIFT_REQUIRE_TOOLS").is_ok_and(|v| v == "1");
    assert!(
        !required,
        "{tool} not found ({var}, .tools/bin/{tool}, PATH) and CARBONSHIFT_REQUIRE_TOOLS=1: run scripts/install-tools.sh"
    );
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED {test}: {tool} not found (set {var}, or run scripts/install-tools.sh to install it into .tools/bin)"
    );
    None
}

fn helm_template(helm: &Path, chart: &Path, values: &[&Path], out: &Path) {
    let mut command = Command::new(helm);
    command
        .args(["template", "carbonshift"])
        .arg(chart)
        .args(["--namespace", "carbonshift"]);
    for file in values {
        command.arg("--values").arg(file);
    }
    let output = command.output().expect("run helm template");
    assert!(
        output.status.success(),
        "helm template failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    std::fs::write(out, &output.stdout).unwrap();
}

/// `scripts/package-chart.sh VERSION DIGEST DIR`; the package's path.
fn package_chart(helm: &Path, version: &str, digest: &str, dir: &Path) -> PathBuf {
    let output = Command::new(repo().join("scripts/package-chart.sh"))
        .env("HELM", helm)
        .args([version, digest])
        .arg(dir)
        .output()
        .expect("run scripts/package-chart.sh");
    assert!(
        output.status.success(),
        "package-chart.sh failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    PathBuf::from(String::from_utf8_lossy(&output.stdout).trim())
}

/// What checkov found in one file.
struct Report {
    passed: u64,
    /// (check id, resource, file lines) of every failed check.
    failed: Vec<(String, String, String)>,
    /// (check id, resource, reason) of every skipped check.
    skipped: Vec<(String, String, String)>,
    parsing_errors: Vec<String>,
}

impl Report {
    fn assert_clean(&self, what: &str) {
        assert!(
            self.parsing_errors.is_empty(),
            "checkov could not parse {what}: {:?}",
            self.parsing_errors
        );
        assert!(
            self.passed > 100,
            "checkov passed only {} checks on {what}: did it scan the chart?",
            self.passed
        );
        assert!(
            self.failed.is_empty(),
            "checkov findings in {what} (fix them, or skip them in templates/_helpers.tpl with a reason):\n{}",
            self.failed
                .iter()
                .map(|(id, resource, lines)| format!("  {id} {resource} {lines}"))
                .collect::<Vec<_>>()
                .join("\n")
        );
        let mut reasons: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
        for (id, resource, reason) in &self.skipped {
            assert!(
                ACCEPTED_SKIPS.contains(&id.as_str()),
                "{what}: {id} on {resource} is skipped, but the chart does not accept it"
            );
            assert!(
                reason.len() > 20,
                "{what}: {id} on {resource} is skipped without a reason ({reason:?})"
            );
            reasons.entry(id).or_default().insert(reason);
        }
        for (id, texts) in reasons {
            assert_eq!(texts.len(), 1, "{id} is skipped with different reasons");
        }
    }
}

fn checkov_scan(checkov: &Path, file: &Path) -> Report {
    let output = Command::new(checkov)
        .arg("--file")
        .arg(file)
        .args([
            "--framework",
            "kubernetes",
            "--output",
            "json",
            "--skip-download",
            "--soft-fail",
        ])
        .env("BC_SKIP_MAPPING", "TRUE")
        .output()
        .expect("run checkov");
    assert!(
        output.status.success(),
        "checkov failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let json: Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "checkov printed no JSON ({e}):\n{}",
            String::from_utf8_lossy(&output.stdout)
        )
    });
    // One framework gives one object; several would give a list.
    let report = match &json {
        Value::Array(items) => items
            .iter()
            .find(|r| r["check_type"] == "kubernetes")
            .expect("a kubernetes report")
            .clone(),
        other => other.clone(),
    };
    let entries = |key: &str| -> Vec<Value> {
        report["results"][key]
            .as_array()
            .cloned()
            .unwrap_or_default()
    };
    let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    Report {
        passed: report["summary"]["passed"]
            .as_u64()
            .expect("summary.passed"),
        failed: entries("failed_checks")
            .iter()
            .map(|c| {
                (
                    text(&c["check_id"]),
                    text(&c["resource"]),
                    c["file_line_range"].to_string(),
                )
            })
            .collect(),
        skipped: entries("skipped_checks")
            .iter()
            .map(|c| {
                (
                    text(&c["check_id"]),
                    text(&c["resource"]),
                    text(&c["check_result"]["suppress_comment"]),
                )
            })
            .collect(),
        parsing_errors: entries("parsing_errors")
            .iter()
            .map(|e| e.to_string())
            .collect(),
    }
}
