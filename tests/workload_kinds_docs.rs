//! docs/workload-kinds.md carries every manifest of `examples/kinds/` verbatim, so that what a
//! user copies from the docs is what the e2e suite creates on a real control plane.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

#[test]
fn the_docs_show_every_example_manifest_as_it_is() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let docs = std::fs::read_to_string(repo.join("docs/workload-kinds.md")).expect("the docs");
    let mut files: Vec<_> = std::fs::read_dir(repo.join("examples/kinds"))
        .expect("examples/kinds")
        .map(|e| e.expect("entry").path())
        .collect();
    files.sort();
    assert_eq!(files.len(), 6, "{files:?}");
    for file in files {
        let text = std::fs::read_to_string(&file).expect("an example");
        let block = format!("```yaml\n{}\n```", text.trim_end());
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            docs.contains(&block),
            "docs/workload-kinds.md does not show examples/kinds/{name} as it is"
        );
        assert!(
            docs.contains(&format!("(`examples/kinds/{name}`)")),
            "no heading for {name}"
        );
    }
}
