//! The `[data]` section of a run's configuration: which data set, where its files are, how it is
//! split, how pixels are scaled and in which order the classifier reads them. Training reads all
//! of it; inference the data set, the scaling and the order.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::{DatasetKind, MNIST_MEAN_STD, Reading, SequenceOrder, SplitOptions, Validation};

/// Where validation images come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ValidationSource {
    /// The test split, as the tutorial does.
    Test,
    /// The last `data.holdout` training images, not trained on.
    Holdout,
}

impl ValidationSource {
    /// The validation images in words, for progress lines and chart labels.
    pub fn images(self) -> &'static str {
        match self {
            Self::Test => "test images",
            Self::Holdout => "held-out training images",
        }
    }
}

/// Which data set a run uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DatasetName {
    /// Handwritten digits.
    #[default]
    Mnist,
    /// Zalando's clothing images, same format and class count.
    FashionMnist,
}

impl DatasetName {
    /// The data crate's kind for this name.
    pub fn kind(self) -> DatasetKind {
        match self {
            Self::Mnist => DatasetKind::Mnist,
            Self::FashionMnist => DatasetKind::FashionMnist,
        }
    }
}

/// `[data]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DataSection {
    /// `"mnist"` or `"fashion-mnist"`.
    pub dataset: DatasetName,
    /// Directory holding the four files; `--data-dir` overrides it. Once named it must hold
    /// them: `MNIST_DIR` (or `FASHION_MNIST_DIR`), system package directories and the user
    /// cache are only looked at when neither is given.
    pub dir: Option<PathBuf>,
    /// `"test"` or `"holdout"`.
    pub validation: ValidationSource,
    /// Training images held out for validation when `validation = "holdout"`.
    pub holdout: usize,
    /// Train on at most this many images.
    pub train_limit: Option<usize>,
    /// Validate on at most this many images.
    pub valid_limit: Option<usize>,
    /// Test on at most this many images.
    pub test_limit: Option<usize>,
    /// Subtract `mean` and divide by `std` after scaling pixels to [0, 1].
    pub normalize: bool,
    /// Mean used when `normalize`.
    pub mean: f32,
    /// Standard deviation used when `normalize`.
    pub std: f32,
    /// How the classifier reads an image: `"rows"` (28 steps of 28 pixels), `"pixels"` (784
    /// steps of one) or `"permuted"` (784 steps of one, in the order `permutation_seed` draws).
    pub sequence: SequenceOrder,
    /// Draws the pixel order of `sequence = "permuted"` ([`crate::pixel_permutation`]).
    pub permutation_seed: u64,
    /// Batching threads; 0 batches on the training thread and keeps the batch order, and so the
    /// loss curve, reproducible.
    pub num_workers: usize,
}

impl Default for DataSection {
    fn default() -> Self {
        Self {
            dataset: DatasetName::Mnist,
            dir: None,
            validation: ValidationSource::Test,
            holdout: 5_000,
            train_limit: None,
            valid_limit: None,
            test_limit: None,
            normalize: false,
            mean: MNIST_MEAN_STD.0,
            std: MNIST_MEAN_STD.1,
            sequence: SequenceOrder::Rows,
            permutation_seed: 0,
            num_workers: 0,
        }
    }
}

impl DataSection {
    /// How the data crate should cut the files.
    pub fn split_options(&self) -> SplitOptions {
        SplitOptions {
            validation: match self.validation {
                ValidationSource::Test => Validation::TestSplit,
                ValidationSource::Holdout => Validation::HoldOut(self.holdout),
            },
            train_limit: self.train_limit,
            valid_limit: self.valid_limit,
            test_limit: self.test_limit,
        }
    }

    /// How images become sequences.
    pub fn reading(&self) -> Reading {
        Reading::new(self.sequence, self.permutation_seed)
    }

    /// The batcher these settings describe.
    pub fn batcher(&self) -> crate::MnistBatcher {
        let batcher = if self.normalize {
            crate::MnistBatcher::normalized(self.mean, self.std)
        } else {
            crate::MnistBatcher::new()
        };
        batcher.with_reading(self.reading())
    }
}
