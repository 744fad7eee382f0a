//! The architecture's one-way imports, checked on the source: the command line lives in
//! the binary (`src/main.rs`, `src/cli/`), and nothing in the library names it in any
//! form — not `cli::`, not `mod cli`, not `crate::cli` nor `huddle::cli`. Layers below
//! talk to each other in typed operations (`node::Op`), never in argv.

use std::path::{Path, PathBuf};

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src") {
        let path = entry.expect("an entry").path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Whether `line` (code, comments stripped) names the `cli` module.
fn names_cli(line: &str) -> bool {
    let code = line.split("//").next().unwrap_or("");
    let words: Vec<&str> = code
        .split(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
        .collect();
    words.iter().any(|w| {
        w.split("::").any(|part| part == "cli") && (w.contains("::") || code.contains("mod cli"))
    })
}

#[test]
fn nothing_outside_the_binary_names_the_cli_module() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let src = root.join("src");
    let cli = src.join("cli");
    let mut files = Vec::new();
    sources(&src, &mut files);
    for dir in ["tests", "benches", "fuzz/fuzz_targets"] {
        sources(&root.join(dir), &mut files);
    }
    let mut offenders = Vec::new();
    for file in &files {
        // This file spells the forms out as examples.
        let this = root.join("tests/layers.rs");
        if file.starts_with(&cli) || *file == src.join("main.rs") || *file == this {
            continue;
        }
        let text = std::fs::read_to_string(file).expect("read a source file");
        for (n, line) in text.lines().enumerate() {
            if names_cli(line) {
                offenders.push(format!("{}:{}: {}", file.display(), n + 1, line.trim()));
            }
        }
    }
    assert!(offenders.is_empty(), "{}", offenders.join("\n"));
}

#[test]
fn the_check_recognises_each_form() {
    for line in [
        "use crate::cli::NetArgs;",
        "use huddle::cli::claim::Claim;",
        "    let made = crate::cli::restrict(dir)",
        "pub mod cli;",
        "mod cli;",
        "use super::cli::output;",
    ] {
        assert!(names_cli(line), "{line}");
    }
    for line in [
        "// the cli module used to be here: cli::execute",
        "let client = control::client::forward(dir);",
        "/// the CLI renders results on its own side",
        "use crate::host::control;",
    ] {
        assert!(!names_cli(line), "{line}");
    }
}
