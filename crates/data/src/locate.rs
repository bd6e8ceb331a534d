//! Which data set, and finding its files: an ordered list of candidate directories, each with
//! where it came from, so that a failure can say every place it looked.

use std::fmt;
use std::path::PathBuf;

use crate::download::{DownloadError, DownloadOptions, download};
use crate::{DataError, MnistFiles};

/// Environment variable naming a directory that holds the MNIST files.
pub const MNIST_DIR_ENV: &str = "MNIST_DIR";
/// Environment variable naming a directory that holds the Fashion-MNIST files.
pub const FASHION_MNIST_DIR_ENV: &str = "FASHION_MNIST_DIR";

/// The data sets this crate reads: same IDX format, image size and class count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DatasetKind {
    /// Handwritten digits.
    #[default]
    Mnist,
    /// Zalando's clothing images (Fashion-MNIST).
    FashionMnist,
}

impl DatasetKind {
    /// The name used in configurations and directories: `mnist`, `fashion-mnist`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Mnist => "mnist",
            Self::FashionMnist => "fashion-mnist",
        }
    }

    /// The name of each class, by label.
    pub fn class_names(self) -> [&'static str; 10] {
        match self {
            Self::Mnist => ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"],
            Self::FashionMnist => [
                "T-shirt/top",
                "Trouser",
                "Pullover",
                "Dress",
                "Coat",
                "Sandal",
                "Shirt",
                "Sneaker",
                "Bag",
                "Ankle boot",
            ],
        }
    }

    /// The environment variable that may name the directory of the files.
    pub fn env_var(self) -> &'static str {
        match self {
            Self::Mnist => MNIST_DIR_ENV,
            Self::FashionMnist => FASHION_MNIST_DIR_ENV,
        }
    }

    /// Where system packages install the files (Debian's `dataset-fashion-mnist`).
    pub fn system_dirs(self) -> &'static [&'static str] {
        match self {
            Self::Mnist => &[],
            Self::FashionMnist => &["/usr/share/datasets/fashion-mnist"],
        }
    }

    /// The per-user cache directory for the files (`~/.cache/mnist-lstm/<name>` on Linux), if
    /// the platform has one.
    pub fn cache_dir(self) -> Option<PathBuf> {
        dirs::cache_dir().map(|dir| dir.join("mnist-lstm").join(self.name()))
    }
}

impl fmt::Display for DatasetKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A directory that may hold the files, and why it is looked at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// Where the directory came from (`--data-dir`, `MNIST_DIR`, ...), for messages.
    pub origin: String,
    /// The directory.
    pub dir: PathBuf,
    /// Named by the user (`--data-dir`, `data.dir`): then it is the only place looked at, and
    /// its absence is an error of its own rather than a reason to look elsewhere.
    pub named_by_user: bool,
}

impl Candidate {
    /// A candidate directory with its origin, one place among others in a search.
    pub fn new(origin: impl Into<String>, dir: impl Into<PathBuf>) -> Self {
        Self {
            origin: origin.into(),
            dir: dir.into(),
            named_by_user: false,
        }
    }

    /// A directory the user named: it must hold the files.
    pub fn named(origin: impl Into<String>, dir: impl Into<PathBuf>) -> Self {
        Self {
            named_by_user: true,
            ..Self::new(origin, dir)
        }
    }
}

/// The usual search order for `kind`: a directory the user named (a `--data-dir` flag, else
/// `data.dir` in the configuration) is the only place looked at when given; otherwise the data
/// set's environment variable, then where system packages put it, then the user cache.
pub fn standard_candidates(
    kind: DatasetKind,
    explicit: Option<PathBuf>,
    configured: Option<PathBuf>,
) -> Vec<Candidate> {
    if let Some(dir) = explicit {
        return vec![Candidate::named("--data-dir", dir)];
    }
    if let Some(dir) = configured {
        return vec![Candidate::named("data.dir in the configuration", dir)];
    }
    let mut candidates = Vec::new();
    if let Some(dir) = std::env::var_os(kind.env_var()).filter(|v| !v.is_empty()) {
        candidates.push(Candidate::new(kind.env_var(), dir));
    }
    for dir in kind.system_dirs() {
        candidates.push(Candidate::new("system package", *dir));
    }
    if let Some(dir) = kind.cache_dir() {
        candidates.push(Candidate::new("user cache", dir));
    }
    candidates
}

/// The files of `kind` in the first candidate that holds all four, or an error listing every
/// candidate and what was missing there.
pub fn locate(kind: DatasetKind, candidates: &[Candidate]) -> Result<MnistFiles, DataError> {
    let mut looked = Vec::with_capacity(candidates.len());
    for candidate in candidates {
        match MnistFiles::in_dir(&candidate.dir) {
            Ok(files) => return Ok(files),
            Err(problem) if candidate.named_by_user => {
                return Err(DataError::NamedDirUnusable {
                    dataset: kind,
                    candidate: candidate.clone(),
                    problem,
                });
            }
            Err(problem) => looked.push((candidate.clone(), problem)),
        }
    }
    Err(DataError::NotFound {
        dataset: kind,
        looked,
        download: DownloadAttempt::NotTried,
    })
}

/// Environment variable that, set to anything but `0`, `false` or empty, forbids downloads.
pub const OFFLINE_ENV: &str = "MNIST_LSTM_OFFLINE";

/// Whether [`OFFLINE_ENV`] forbids the network.
pub fn offline_from_env() -> bool {
    std::env::var(OFFLINE_ENV)
        .map(|value| !matches!(value.trim(), "" | "0" | "false"))
        .unwrap_or(false)
}

/// What to do when no candidate directory holds the files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fetch {
    /// Report them missing: the user named the one place to look.
    Never,
    /// Report them missing and say the network was forbidden.
    Offline,
    /// Download them into `dir`.
    Download {
        /// Where the files go (the user cache).
        dir: PathBuf,
        /// Mirrors, retries, progress.
        options: DownloadOptions,
    },
}

impl Fetch {
    /// The usual policy: no download when a directory was named (`--data-dir`, `data.dir`),
    /// none when `offline` or [`OFFLINE_ENV`] says so, otherwise download into the user cache.
    pub fn standard(kind: DatasetKind, explicit_dir: bool, offline: bool) -> Self {
        if explicit_dir {
            return Self::Never;
        }
        if offline || offline_from_env() {
            return Self::Offline;
        }
        match kind.cache_dir() {
            Some(dir) => Self::Download {
                dir,
                options: DownloadOptions::for_dataset(kind),
            },
            None => Self::Never,
        }
    }
}

/// Whether and how a download was tried after the local search failed.
#[derive(Debug)]
pub enum DownloadAttempt {
    /// No download: a directory was named explicitly, or there is no cache directory.
    NotTried,
    /// No download: offline.
    Offline,
    /// The download into `dir` failed.
    Failed {
        /// Where the files were to go.
        dir: PathBuf,
        /// Why it failed.
        error: DownloadError,
    },
}

/// [`locate`], then, when the files are nowhere, what `fetch` says: the downloaded files, or an
/// error listing every place looked at and every mirror tried.
pub fn locate_or_download(
    kind: DatasetKind,
    candidates: &[Candidate],
    fetch: &Fetch,
) -> Result<MnistFiles, DataError> {
    let looked = match locate(kind, candidates) {
        Err(DataError::NotFound { looked, .. }) => looked,
        found => return found,
    };
    let attempt = match fetch {
        Fetch::Never => DownloadAttempt::NotTried,
        Fetch::Offline => DownloadAttempt::Offline,
        Fetch::Download { dir, options } => match download(kind, dir, options) {
            Ok(files) => return Ok(files),
            Err(error) => DownloadAttempt::Failed {
                dir: dir.clone(),
                error,
            },
        },
    };
    Err(DataError::NotFound {
        dataset: kind,
        looked,
        download: attempt,
    })
}
