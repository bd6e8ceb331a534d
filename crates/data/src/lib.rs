//! MNIST for Burn: a validating IDX reader, the train/validation/test splits as Burn datasets,
//! and a batcher that turns them into sequence tensors (`[batch, 28, 28]`: 28 rows of 28 pixels;
//! or 784 steps of one pixel, in order or permuted) and `[batch]` targets.
//!
//! Enables no Burn backend: the application chooses one.

mod batcher;
mod dataset;
mod download;
pub mod idx;
mod locate;
mod published;
mod section;
mod sequence;
pub mod synthetic;
mod verify;

pub use batcher::{MNIST_MEAN_STD, MnistBatch, MnistBatcher};
pub use dataset::{
    IMAGE_COLS, IMAGE_PIXELS, IMAGE_ROWS, MnistDataset, MnistFiles, MnistItem, MnistSplits,
    NUM_CLASSES, SplitOptions, Validation,
};
pub use download::{
    DownloadError, DownloadOptions, FailedAttempt, Progress, download, download_files,
};
pub use idx::IdxError;
pub use locate::{
    Candidate, DatasetKind, DownloadAttempt, FASHION_MNIST_DIR_ENV, Fetch, MNIST_DIR_ENV,
    OFFLINE_ENV, locate, locate_or_download, offline_from_env, standard_candidates,
};
pub use published::PublishedFile;
pub use section::{DataSection, DatasetName, ValidationSource};
pub use sequence::{Reading, SequenceOrder, pixel_permutation};
pub use synthetic::write_synthetic_mnist;
pub use verify::{
    ContentDigest, FileVerification, Verification, content_digest, verify_file, verify_files,
};

/// Why the data could not be provided.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// No candidate directory holds the four files.
    #[error("{}", not_found_message(*.dataset, .looked, .download))]
    NotFound {
        /// The data set looked for.
        dataset: DatasetKind,
        /// Each directory looked at, with its origin, and what was missing there.
        looked: Vec<(Candidate, String)>,
        /// Whether a download was tried, and how it failed.
        download: DownloadAttempt,
    },
    /// The directory the user named does not hold the files; nowhere else was looked at.
    #[error(
        "{} ({}): {problem}; a directory named with --data-dir or data.dir is the only place \
         looked at: put the four {dataset} files there (train-images-idx3-ubyte, \
         train-labels-idx1-ubyte, t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte, each raw or \
         .gz) or name the directory that holds them",
        .candidate.dir.display(),
        .candidate.origin
    )]
    NamedDirUnusable {
        /// The data set looked for.
        dataset: DatasetKind,
        /// The directory, and how it was named.
        candidate: Candidate,
        /// What is wrong with it (`no such directory`, `missing ...`).
        problem: String,
    },
    /// A file was found but is not valid MNIST.
    #[error(transparent)]
    Idx(#[from] IdxError),
    /// The split options cannot be met by the data.
    #[error("invalid data split: {0}")]
    InvalidSplit(String),
}

fn not_found_message(
    dataset: DatasetKind,
    looked: &[(Candidate, String)],
    download: &DownloadAttempt,
) -> String {
    let mut message = format!("the {dataset} files were not found. Looked in:\n");
    if looked.is_empty() {
        message
            .push_str("  (nowhere: no directory was configured and no cache directory exists)\n");
    }
    for (candidate, problem) in looked {
        message.push_str(&format!(
            "  - {} ({}): {}\n",
            candidate.dir.display(),
            candidate.origin,
            problem
        ));
    }
    let searched = |origin: &str| looked.iter().any(|(c, _)| c.origin == origin);
    let env_var = dataset.env_var();
    if !searched("--data-dir") && !searched(env_var) {
        message.push_str(&format!("  - ${env_var}: not set\n"));
    }
    match download {
        DownloadAttempt::NotTried => {}
        DownloadAttempt::Offline => message.push_str(&format!(
            "Offline (--offline or {OFFLINE_ENV}): no download was tried.\n"
        )),
        DownloadAttempt::Failed { dir, error } => message.push_str(&format!(
            "Downloading into {} failed: {error}\n",
            dir.display()
        )),
    }
    let cache = dataset
        .cache_dir()
        .map(|dir| format!(", or copy them into {}", dir.display()))
        .unwrap_or_default();
    message.push_str(&format!(
        "Put train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte and \
         t10k-labels-idx1-ubyte (each raw or .gz) in one directory, then pass it with \
         --data-dir, set data.dir in the config, or set {env_var}{cache}."
    ));
    if dataset == DatasetKind::FashionMnist {
        message.push_str(" On Debian: apt-get install dataset-fashion-mnist.");
    }
    message
}
