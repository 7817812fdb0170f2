//! What a new user reads first must be right: the licence the manifests name is there, the
//! changelog lists the version, the CRD upgrade command is one command everywhere, and the
//! README's install path says what it needs before its first `helm install`.

// Test code: a failed `expect` is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo().join(path)).unwrap_or_else(|e| panic!("cannot read {path}: {e}"))
}

/// The one command that upgrades the CRDs (Helm never does).
const CRD_UPGRADE: &str = "kubectl apply --server-side --force-conflicts -f";

#[test]
fn the_licence_the_manifests_name_is_there() {
    let licence = read("LICENSE");
    assert!(licence.contains("Apache License") && licence.contains("Version 2.0, January 2004"));
    assert!(licence.contains("TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION"));
    assert_eq!(env!("CARGO_PKG_LICENSE"), "Apache-2.0");
    assert!(read("charts/carbonshift/Chart.yaml").contains("artifacthub.io/license: Apache-2.0"));
    assert!(read("Dockerfile").contains("org.opencontainers.image.licenses=\"Apache-2.0\""));
}

#[test]
fn the_changelog_lists_this_version() {
    let changelog = read("CHANGELOG.md");
    let heading = format!("## [{}]", env!("CARGO_PKG_VERSION"));
    assert!(
        changelog.lines().any(|l| l.starts_with(&heading)),
        "CHANGELOG.md has no section {heading}"
    );
}

#[test]
fn the_crd_upgrade_command_is_the_same_everywhere() {
    let files = [
        "README.md",
        "docs/install.md",
        "charts/carbonshift/README.md",
        "charts/carbonshift/templates/NOTES.txt",
    ];
    let mut seen = 0;
    for file in files {
        // Commands wrap across lines in prose: compare with whitespace collapsed.
        let text = read(file).split_whitespace().collect::<Vec<_>>().join(" ");
        for (at, _) in text.match_indices("kubectl apply") {
            let command: String = text[at..]
                .chars()
                .take_while(|c| *c != '`' && *c != '"')
                .collect();
            let before = &text[at.saturating_sub(60)..at];
            if command.contains("crds") || before.contains("helm show crds") {
                assert!(
                    command.starts_with(CRD_UPGRADE),
                    "{file}: the CRD upgrade command is `{command}`, not `{CRD_UPGRADE} ...`"
                );
                seen += 1;
            }
        }
        assert!(
            text.contains(CRD_UPGRADE),
            "{file} does not say how to upgrade the CRDs"
        );
    }
    assert!(seen >= files.len());
}

#[test]
fn the_readme_says_what_an_install_needs_before_its_first_helm_install() {
    let readme = read("README.md");
    let install = readme
        .find("## Install on a cluster")
        .expect("an install section");
    let section = &readme[install..];
    let first_install = section.find("helm install").expect("a helm install");
    let before = &section[..first_install];
    assert!(
        before.contains("operator image"),
        "the README must say before its first helm install that the cluster needs the operator image"
    );
    let checkout = section
        .find("helm install carbonshift charts/carbonshift")
        .expect("an install from a checkout");
    assert!(
        section[..checkout].contains("make image"),
        "an install from a checkout must come after building the image (make image)"
    );
    assert!(
        section.contains("--no-hooks"),
        "the README must say how to uninstall when the release hook cannot run"
    );
    // The example Job asks for resources, so that its power estimate is not 0 W.
    let job = &section[section.find("kind: Job").expect("an example Job")..];
    let job = &job[..job.find("EOF").expect("the end of the example")];
    assert!(job.contains("requests:") && job.contains("nvidia.com/gpu"));
}

#[test]
fn the_troubleshooting_page_answers_the_first_questions() {
    let page = read("docs/troubleshooting.md");
    for heading in [
        "## My Job ran at once. Why?",
        "## My Job was never released. Why?",
        "## The webhook is down",
        "## Which workload kinds does carbonshift hold?",
        "## Kueue",
    ] {
        assert!(
            page.contains(heading),
            "docs/troubleshooting.md lacks {heading:?}"
        );
    }
    assert!(page.contains("kueue.x-k8s.io/queue-name") && page.contains("`batch/v1` Job"));
    // Where users look: the README and the examples link it.
    for file in ["README.md", "examples/README.md"] {
        assert!(
            read(file).contains("troubleshooting.md"),
            "{file} does not link the troubleshooting page"
        );
    }
}
