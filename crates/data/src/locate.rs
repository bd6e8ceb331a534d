//! Finding the MNIST files: an ordered list of candidate directories, each with where it came
//! from, so that a failure can say every place it looked.

use std::path::PathBuf;

use crate::{DataError, MnistFiles};

/// Environment variable naming a directory that holds the MNIST files.
pub const MNIST_DIR_ENV: &str = "MNIST_DIR";

/// A directory that may hold the MNIST files, and why it is looked at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// Where the directory came from (`--data-dir`, `MNIST_DIR`, ...), for messages.
    pub origin: String,
    /// The directory.
    pub dir: PathBuf,
}

impl Candidate {
    /// A candidate directory with its origin.
    pub fn new(origin: impl Into<String>, dir: impl Into<PathBuf>) -> Self {
        Self {
            origin: origin.into(),
            dir: dir.into(),
        }
    }
}

/// The per-user cache directory for the MNIST files (`$XDG_CACHE_HOME/mnist-lstm/mnist`,
/// `~/.cache/mnist-lstm/mnist` on Linux), if the platform has one.
pub fn cache_dir() -> Option<PathBuf> {
    dirs::cache_dir().map(|dir| dir.join("mnist-lstm").join("mnist"))
}

/// The usual search order: an explicit directory (a `--data-dir` flag) is the only place looked
/// at when given; otherwise the configured directory, then `$MNIST_DIR`, then the cache.
pub fn standard_candidates(
    explicit: Option<PathBuf>,
    configured: Option<PathBuf>,
) -> Vec<Candidate> {
    if let Some(dir) = explicit {
        return vec![Candidate::new("--data-dir", dir)];
    }
    let mut candidates = Vec::new();
    if let Some(dir) = configured {
        candidates.push(Candidate::new("config data.dir", dir));
    }
    if let Some(dir) = std::env::var_os(MNIST_DIR_ENV).filter(|v| !v.is_empty()) {
        candidates.push(Candidate::new(MNIST_DIR_ENV, dir));
    }
    if let Some(dir) = cache_dir() {
        candidates.push(Candidate::new("user cache", dir));
    }
    candidates
}

/// The files of the first candidate that holds all four, or an error listing every candidate
/// and what was missing there.
pub fn locate(candidates: &[Candidate]) -> Result<MnistFiles, DataError> {
    let mut looked = Vec::with_capacity(candidates.len());
    for candidate in candidates {
        match MnistFiles::in_dir(&candidate.dir) {
            Ok(files) => return Ok(files),
            Err(problem) => looked.push((candidate.clone(), problem)),
        }
    }
    Err(DataError::NotFound { looked })
}
