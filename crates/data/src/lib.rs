//! MNIST for Burn: a validating IDX reader, the train/validation/test splits as Burn datasets,
//! and a batcher that turns them into `[batch, 28, 28]` image tensors and `[batch]` targets.
//!
//! Enables no Burn backend: the application chooses one.

mod batcher;
mod dataset;
pub mod idx;
mod locate;
pub mod synthetic;

pub use batcher::{MNIST_MEAN_STD, MnistBatch, MnistBatcher};
pub use dataset::{
    IMAGE_COLS, IMAGE_PIXELS, IMAGE_ROWS, MnistDataset, MnistFiles, MnistItem, MnistSplits,
    NUM_CLASSES, SplitOptions, Validation,
};
pub use idx::IdxError;
pub use locate::{
    Candidate, DatasetKind, FASHION_MNIST_DIR_ENV, MNIST_DIR_ENV, locate, standard_candidates,
};
pub use synthetic::write_synthetic_mnist;

/// Why the data could not be provided.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// No candidate directory holds the four files.
    #[error("{}", not_found_message(*.dataset, .looked))]
    NotFound {
        /// The data set looked for.
        dataset: DatasetKind,
        /// Each directory looked at, with its origin, and what was missing there.
        looked: Vec<(Candidate, String)>,
    },
    /// A file was found but is not valid MNIST.
    #[error(transparent)]
    Idx(#[from] IdxError),
    /// The split options cannot be met by the data.
    #[error("invalid data split: {0}")]
    InvalidSplit(String),
}

fn not_found_message(dataset: DatasetKind, looked: &[(Candidate, String)]) -> String {
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
    message.push_str(&format!(
        "Put train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte and \
         t10k-labels-idx1-ubyte (each raw or .gz) in one directory, then pass it with \
         --data-dir, set data.dir in the config, or set {env_var}."
    ));
    if dataset == DatasetKind::FashionMnist {
        message.push_str(" On Debian: apt-get install dataset-fashion-mnist.");
    }
    message
}
