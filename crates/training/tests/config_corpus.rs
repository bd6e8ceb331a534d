//! Replays the corpus that `cargo xtask fuzz config` grew (fuzz/corpus/config), plus the shipped
//! configurations and the bad-config corpus, through the same body as the fuzz target: every
//! input parses or is rejected without a panic, and what parses survives a round trip.

use std::path::{Path, PathBuf};

fn files_in(relative: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(relative);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|error| panic!("cannot list {}: {error}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    files
}

#[test]
fn every_input_of_the_config_corpus_parses_or_is_rejected_without_panic() {
    let fuzzed = files_in("fuzz/corpus/config");
    assert!(
        fuzzed.len() >= 10,
        "the corpus is missing: {} files",
        fuzzed.len()
    );
    let shipped = files_in("configs");
    let bad = files_in("crates/cli/tests/bad_configs");
    for path in fuzzed.iter().chain(&shipped).chain(&bad) {
        let bytes = std::fs::read(path).unwrap();
        training::check_untrusted_config(&bytes);
    }
    println!(
        "replayed {} fuzzed, {} shipped and {} bad configurations",
        fuzzed.len(),
        shipped.len(),
        bad.len()
    );
}
