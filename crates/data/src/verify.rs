//! Checking files against the published SHA-256 of their decompressed content.

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::idx::{IdxError, open_content};
use crate::published::PublishedFile;
use crate::{DatasetKind, MnistFiles};

/// SHA-256 and length of a file's content (decompressed when gzipped).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContentDigest {
    /// Lowercase hex.
    pub sha256: String,
    /// Bytes of content read.
    pub size: u64,
}

/// Hashes the content of `path`, reading at most `limit + 1` bytes so that a gzip bomb or a
/// wrong file costs no more than the expected size.
pub fn content_digest(path: &Path, limit: u64) -> Result<ContentDigest, IdxError> {
    let mut reader = open_content(path)?.take(limit.saturating_add(1));
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 16];
    let mut size = 0u64;
    loop {
        match reader.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => {
                hasher.update(&buffer[..n]);
                size += n as u64;
            }
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
            Err(source) => {
                return Err(IdxError::Io {
                    path: path.to_path_buf(),
                    source,
                });
            }
        }
    }
    let sha256 = hasher
        .finalize()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    Ok(ContentDigest { sha256, size })
}

/// How a file compares with the published one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verification {
    /// Same SHA-256 as published.
    Verified,
    /// Another content: a modified copy, a subset, or another data set.
    Differs(ContentDigest),
}

/// One file checked against its published hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileVerification {
    /// The file checked.
    pub path: PathBuf,
    /// What was expected of it.
    pub published: PublishedFile,
    /// The outcome.
    pub outcome: Verification,
}

impl FileVerification {
    /// Whether the file is the published one.
    pub fn is_verified(&self) -> bool {
        self.outcome == Verification::Verified
    }
}

impl fmt::Display for FileVerification {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.outcome {
            Verification::Verified => write!(
                f,
                "{}: SHA-256 matches the published {}",
                self.path.display(),
                self.published.name
            ),
            Verification::Differs(found) => write!(
                f,
                "{}: content differs from the published {} (SHA-256 {}, {} bytes; expected {}, \
                 {} bytes)",
                self.path.display(),
                self.published.name,
                found.sha256,
                found.size,
                self.published.sha256,
                self.published.size
            ),
        }
    }
}

/// Checks `path` against `published`.
pub fn verify_file(path: &Path, published: &PublishedFile) -> Result<FileVerification, IdxError> {
    let digest = content_digest(path, published.size)?;
    let outcome = if digest.sha256 == published.sha256 && digest.size == published.size {
        Verification::Verified
    } else {
        Verification::Differs(digest)
    };
    Ok(FileVerification {
        path: path.to_path_buf(),
        published: *published,
        outcome,
    })
}

/// Checks the four files of `files` against the published files of `kind`.
pub fn verify_files(
    kind: DatasetKind,
    files: &MnistFiles,
) -> Result<Vec<FileVerification>, IdxError> {
    let paths = [
        &files.train_images,
        &files.train_labels,
        &files.test_images,
        &files.test_labels,
    ];
    paths
        .into_iter()
        .zip(kind.published_files())
        .map(|(path, published)| verify_file(path, published))
        .collect()
}
