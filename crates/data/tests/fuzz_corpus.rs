//! Replays the corpus that `cargo xtask fuzz idx` grew (fuzz/corpus/idx) through the same body
//! as the fuzz target: every input must be read or rejected without a panic.

use std::path::{Path, PathBuf};

fn corpus(name: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(name);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|error| panic!("cannot list {}: {error}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .collect();
    files.sort();
    files
}

#[test]
fn every_input_of_the_idx_corpus_is_read_or_rejected_without_panic() {
    let files = corpus("idx");
    assert!(
        files.len() >= 10,
        "the corpus is missing: {} files",
        files.len()
    );
    for path in &files {
        let bytes = std::fs::read(path).unwrap();
        data::idx::check_untrusted(&bytes);
    }
    println!("replayed {} inputs", files.len());
}
