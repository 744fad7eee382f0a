//! Replays every kept fuzz input through the same entry points the fuzz targets call
//! (`huddle::fuzzing`): crashers once found and fixed (`tests/fuzz_cases/<target>/`, see
//! its README) and the committed seed corpora (`fuzz/seeds/<target>/`).

use std::path::{Path, PathBuf};

use huddle::fuzzing::{TARGETS, seeds};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs every file of `dir/<target>/` through its target; returns how many ran.
fn replay(dir: &Path) -> usize {
    let mut ran = 0;
    for (target, run) in TARGETS {
        let Ok(entries) = std::fs::read_dir(dir.join(target)) else {
            continue;
        };
        let mut files: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
        files.sort();
        for file in files.iter().filter(|f| f.is_file()) {
            let bytes = std::fs::read(file).expect("read a kept input");
            let outcome = std::panic::catch_unwind(|| run(&bytes));
            assert!(outcome.is_ok(), "{target}: {} panics", file.display());
            ran += 1;
        }
    }
    ran
}

#[test]
fn fixed_crashers_stay_fixed() {
    let dir = root().join("tests/fuzz_cases");
    assert!(dir.is_dir(), "tests/fuzz_cases is missing");
    replay(&dir);
}

#[test]
fn committed_seeds_replay() {
    let ran = replay(&root().join("fuzz/seeds"));
    assert!(ran >= TARGETS.len(), "only {ran} seeds replayed");
}

/// Every target has seeds, and the seeds the builder makes now pass (rewrite the
/// committed ones with `cargo test --test fuzz_regressions -- --ignored write_fuzz_seeds`
/// when a format changes).
#[test]
fn every_target_has_seeds() {
    let seeds = seeds::all();
    for (target, _) in TARGETS {
        assert!(
            seeds.iter().any(|(t, _, _)| t == target),
            "no seed for {target}"
        );
    }
    for (target, name, bytes) in &seeds {
        let run = TARGETS
            .iter()
            .find(|(t, _)| t == target)
            .expect("known target")
            .1;
        run(bytes);
        let _ = name;
    }
}

#[test]
#[ignore = "writes fuzz/seeds/; run by hand when a decoder's format changes"]
fn write_fuzz_seeds() {
    for (target, name, bytes) in seeds::all() {
        let dir = root().join("fuzz/seeds").join(target);
        std::fs::create_dir_all(&dir).expect("create the seed directory");
        std::fs::write(dir.join(name), bytes).expect("write a seed");
    }
}

/// The `thread_change` harness reaches the document: a real post sealed by the founder is
/// accepted by the reader and shows as a third message, a task as well.
#[test]
fn thread_change_delivers_real_changes() {
    let seeds = seeds::all();
    let change = |name: &str| {
        let (_, _, bytes) = seeds
            .iter()
            .find(|(t, n, _)| *t == "thread_change" && n == name)
            .expect("a seed of that name");
        bytes.clone()
    };
    assert_eq!(huddle::fuzzing::deliver_change(b"not a change"), 2);
    assert_eq!(huddle::fuzzing::deliver_change(&change("post")), 3);
    assert_eq!(huddle::fuzzing::deliver_change(&change("task")), 3);
}
