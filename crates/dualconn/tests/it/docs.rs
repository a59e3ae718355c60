//! The repository's documents stand alone: every link points inside the repository at a file
//! that exists, and every test docs/protocol.md cites as holding a rule exists.

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Markdown link targets: `](target)`.
fn links(text: &str) -> Vec<String> {
    text.split("](")
        .skip(1)
        .filter_map(|rest| rest.split(')').next())
        .map(|t| t.split_whitespace().next().unwrap_or("").to_owned())
        .collect()
}

#[test]
fn documents_link_only_to_files_inside_the_repository() {
    let root = root();
    for doc in [
        "README.md",
        "ARCHITECTURE.md",
        "BENCHMARKS.md",
        "docs/protocol.md",
    ] {
        let path = root.join(doc);
        let text = read(&path);
        assert!(
            !text.contains("../shared"),
            "{doc} points outside the repository"
        );
        assert!(
            !text.contains("SPEC.md"),
            "{doc} names a document the repository lacks"
        );
        for target in links(&text) {
            if target.starts_with("http://") || target.starts_with("https://") {
                continue;
            }
            let file = target.split('#').next().unwrap();
            if file.is_empty() {
                continue;
            }
            let resolved = path.parent().unwrap().join(file);
            assert!(
                resolved.exists(),
                "{doc} links to {target}, which does not exist"
            );
            assert!(
                resolved
                    .canonicalize()
                    .unwrap()
                    .starts_with(root.canonicalize().unwrap()),
                "{doc} links outside the repository: {target}"
            );
        }
    }
    let readme = read(&root.join("README.md"));
    assert!(
        readme.contains("](docs/protocol.md)"),
        "README links the protocol reference"
    );
}

/// Backquoted `a::b` names in the text.
fn cited_tests(text: &str) -> Vec<String> {
    text.split('`')
        .skip(1)
        .step_by(2)
        .filter(|s| {
            s.contains("::")
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
        })
        .map(str::to_owned)
        .collect()
}

#[test]
fn every_test_the_protocol_reference_cites_exists() {
    let root = root();
    let crate_dir = root.join("crates/dualconn");
    let cited = cited_tests(&read(&root.join("docs/protocol.md")));
    assert!(cited.len() > 50, "found only {} citations", cited.len());
    for name in &cited {
        let parts: Vec<&str> = name.split("::").collect();
        let (module, test) = (&parts[..parts.len() - 1], parts[parts.len() - 1]);
        // An integration test: `sessions::name` is module `sessions` of the one binary tests/it.
        let integration = crate_dir.join("tests/it").join(format!("{}.rs", module[0]));
        let candidates: Vec<PathBuf> = if module.len() == 1 && integration.exists() {
            vec![integration]
        } else {
            // A unit test: `a::b::tests::name` lives in src/a/b.rs, src/a/b/mod.rs or
            // src/a/b/tests.rs.
            let dir = module
                .iter()
                .filter(|m| **m != "tests")
                .fold(crate_dir.join("src"), |p, m| p.join(m));
            vec![
                dir.with_extension("rs"),
                dir.join("mod.rs"),
                dir.join("tests.rs"),
            ]
        };
        let found = candidates
            .iter()
            .any(|file| file.exists() && read(file).contains(&format!("fn {test}(")));
        assert!(
            found,
            "docs/protocol.md cites `{name}`, which is not a test in {candidates:?}"
        );
    }
}
