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
        "docs/migrating.md",
        "examples/fastapi_game/README.md",
        "sdk/python/README.md",
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
    let cited = cited_tests(&read(&root.join("docs/protocol.md")));
    assert!(cited.len() > 50, "found only {} citations", cited.len());
    check_cited(&root, "docs/protocol.md", &cited);
    let cited = cited_tests(&read(&root.join("docs/migrating.md")));
    assert!(cited.len() >= 2, "found only {} citations", cited.len());
    check_cited(&root, "docs/migrating.md", &cited);
}

/// Files whose code a test runs: the example game and its end-to-end test, the SDK's tests, the
/// TypeScript client (unit and integration tests), the demo page (browser tests).
const TESTED_SOURCES: [&str; 6] = [
    "examples/fastapi_game/",
    "sdk/python/tests/",
    "client/src/",
    "client/test-integration/",
    "web/public/static/demo.js",
    "crates/dualconn/tests/",
];

/// The migration guide's code is never written for the guide alone: each block is preceded by
/// `<!-- from PATH -->` and is, word for word, part of that file, which a test runs.
#[test]
fn every_snippet_in_the_migration_guide_is_in_a_file_a_test_runs() {
    let root = root();
    let text = read(&root.join("docs/migrating.md"));
    let mut source: Option<String> = None;
    let mut block: Option<Vec<&str>> = None;
    let mut checked = 0;
    for line in text.lines() {
        if let Some(lines) = &mut block {
            if line.trim_start().starts_with("```") {
                let snippet = lines.join("\n");
                let from = source.take().unwrap_or_else(|| {
                    panic!("a code block with no <!-- from PATH -->:\n{snippet}")
                });
                assert!(
                    TESTED_SOURCES.iter().any(|s| from.starts_with(s)),
                    "{from} is not among the sources a test runs"
                );
                assert!(
                    read(&root.join(&from)).contains(&snippet),
                    "docs/migrating.md quotes {from}, which no longer holds:\n{snippet}"
                );
                checked += 1;
                block = None;
            } else {
                lines.push(line);
            }
        } else if line.trim_start().starts_with("```") {
            block = Some(Vec::new());
        } else if let Some(path) = line
            .trim()
            .strip_prefix("<!-- from ")
            .and_then(|rest| rest.strip_suffix(" -->"))
        {
            source = Some(path.to_owned());
        } else if !line.trim().is_empty() {
            source = None;
        }
    }
    assert!(checked >= 8, "only {checked} snippets found");
}

fn check_cited(root: &Path, doc: &str, cited: &[String]) {
    let crate_dir = root.join("crates/dualconn");
    for name in cited {
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
            "{doc} cites `{name}`, which is not a test in {candidates:?}"
        );
    }
}
