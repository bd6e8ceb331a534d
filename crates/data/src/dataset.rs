//! MNIST splits as Burn [`Dataset`]s.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use burn::data::dataset::{Dataset, DatasetError};

use crate::DataError;
use crate::idx::{IdxImages, read_pair};

/// Rows of an MNIST image (the LSTM's time steps).
pub const IMAGE_ROWS: usize = 28;
/// Columns of an MNIST image (the features of one time step).
pub const IMAGE_COLS: usize = 28;
/// Pixels of one image.
pub const IMAGE_PIXELS: usize = IMAGE_ROWS * IMAGE_COLS;
/// Digits 0 to 9.
pub const NUM_CLASSES: usize = 10;

/// The standard MNIST file names, without the optional `.gz` (Fashion-MNIST uses the same).
pub const TRAIN_IMAGES: &str = "train-images-idx3-ubyte";
/// Labels of the training images.
pub const TRAIN_LABELS: &str = "train-labels-idx1-ubyte";
/// The test images.
pub const TEST_IMAGES: &str = "t10k-images-idx3-ubyte";
/// Labels of the test images.
pub const TEST_LABELS: &str = "t10k-labels-idx1-ubyte";

/// One image and its label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MnistItem {
    /// `IMAGE_ROWS * IMAGE_COLS` grey levels, row-major, 0 = background.
    pub pixels: Vec<u8>,
    /// The digit.
    pub label: u8,
}

/// The four MNIST files of a directory, each found raw or gzipped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MnistFiles {
    /// `train-images-idx3-ubyte[.gz]`
    pub train_images: PathBuf,
    /// `train-labels-idx1-ubyte[.gz]`
    pub train_labels: PathBuf,
    /// `t10k-images-idx3-ubyte[.gz]`
    pub test_images: PathBuf,
    /// `t10k-labels-idx1-ubyte[.gz]`
    pub test_labels: PathBuf,
}

impl MnistFiles {
    /// Finds the four files in `dir`; on failure, says which are missing.
    pub fn in_dir(dir: &Path) -> Result<Self, String> {
        if !dir.is_dir() {
            return Err("no such directory".to_string());
        }
        let mut missing = Vec::new();
        let mut find = |name: &str| {
            let raw = dir.join(name);
            let gz = dir.join(format!("{name}.gz"));
            if raw.is_file() {
                raw
            } else if gz.is_file() {
                gz
            } else {
                missing.push(format!("{name}[.gz]"));
                raw
            }
        };
        let files = Self {
            train_images: find(TRAIN_IMAGES),
            train_labels: find(TRAIN_LABELS),
            test_images: find(TEST_IMAGES),
            test_labels: find(TEST_LABELS),
        };
        if missing.is_empty() {
            Ok(files)
        } else {
            Err(format!("missing {}", missing.join(", ")))
        }
    }
}

/// Images and labels of one file pair, shared by every dataset view over them.
#[derive(Debug)]
struct Split {
    images: IdxImages,
    labels: Vec<u8>,
}

impl Split {
    fn load(images: &Path, labels: &Path) -> Result<Arc<Self>, DataError> {
        let (images, labels) = read_pair(images, labels, IMAGE_ROWS, IMAGE_COLS, NUM_CLASSES)?;
        Ok(Arc::new(Self { images, labels }))
    }
}

/// A contiguous range of the items of one MNIST file pair.
#[derive(Debug, Clone)]
pub struct MnistDataset {
    split: Arc<Split>,
    range: Range<usize>,
}

impl MnistDataset {
    fn new(split: Arc<Split>, range: Range<usize>) -> Self {
        Self { split, range }
    }

    /// Loads an image file and its label file as one dataset.
    pub fn from_files(images: &Path, labels: &Path) -> Result<Self, DataError> {
        let split = Split::load(images, labels)?;
        let len = split.labels.len();
        Ok(Self::new(split, 0..len))
    }

    /// The first `limit` items (all of them when `limit` is larger).
    pub fn take(&self, limit: usize) -> Self {
        let end = self.range.start + limit.min(self.len());
        Self::new(self.split.clone(), self.range.start..end)
    }

    /// Items `range` of this dataset, clamped to its length.
    pub fn slice(&self, range: Range<usize>) -> Self {
        let start = self.range.start + range.start.min(self.len());
        let end = self.range.start + range.end.min(self.len());
        Self::new(self.split.clone(), start..end.max(start))
    }

    /// Number of items.
    pub fn len(&self) -> usize {
        self.range.len()
    }

    /// Whether there are no items.
    pub fn is_empty(&self) -> bool {
        self.range.is_empty()
    }

    /// The label of every item, in order.
    pub fn labels(&self) -> &[u8] {
        &self.split.labels[self.range.clone()]
    }

    /// The item at `index`, or `None` past the end.
    pub fn item(&self, index: usize) -> Option<MnistItem> {
        if index >= self.len() {
            return None;
        }
        let absolute = self.range.start + index;
        let start = absolute * IMAGE_PIXELS;
        Some(MnistItem {
            pixels: self.split.images.pixels[start..start + IMAGE_PIXELS].to_vec(),
            label: self.split.labels[absolute],
        })
    }
}

impl Dataset<MnistItem> for MnistDataset {
    fn get(&self, index: usize) -> Result<MnistItem, DatasetError> {
        // Burn's contract: an index past the end is the caller's bug and panics.
        let len = self.len();
        Ok(self
            .item(index)
            .unwrap_or_else(|| panic!("index {index} out of range for a dataset of {len} items")))
    }

    fn len(&self) -> usize {
        self.range.len()
    }
}

/// Where the validation split of a run comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Validation {
    /// Validate on the test split, as the tutorial does.
    TestSplit,
    /// Hold out the last `n` training images (they are then not trained on).
    HoldOut(usize),
}

/// How to cut the files into the splits of a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitOptions {
    /// Where validation data comes from.
    pub validation: Validation,
    /// Train on at most this many images (quick runs).
    pub train_limit: Option<usize>,
    /// Validate on at most this many images.
    pub valid_limit: Option<usize>,
    /// Test on at most this many images.
    pub test_limit: Option<usize>,
}

impl Default for SplitOptions {
    fn default() -> Self {
        Self {
            validation: Validation::TestSplit,
            train_limit: None,
            valid_limit: None,
            test_limit: None,
        }
    }
}

/// The train, validation and test datasets of a run.
#[derive(Debug, Clone)]
pub struct MnistSplits {
    /// Images to train on.
    pub train: MnistDataset,
    /// Images to validate on after each epoch.
    pub valid: MnistDataset,
    /// The full (or limited) test split.
    pub test: MnistDataset,
}

impl MnistSplits {
    /// Reads the four files and cuts them as `options` says.
    pub fn load(files: &MnistFiles, options: &SplitOptions) -> Result<Self, DataError> {
        let train_all = MnistDataset::from_files(&files.train_images, &files.train_labels)?;
        let test_all = MnistDataset::from_files(&files.test_images, &files.test_labels)?;
        Self::cut(train_all, test_all, options)
    }

    /// Cuts loaded train and test datasets as `options` says.
    pub fn cut(
        train_all: MnistDataset,
        test_all: MnistDataset,
        options: &SplitOptions,
    ) -> Result<Self, DataError> {
        let limit = |dataset: MnistDataset, limit: Option<usize>| match limit {
            Some(limit) => dataset.take(limit),
            None => dataset,
        };
        let test = limit(test_all, options.test_limit);
        let (train, valid) = match options.validation {
            Validation::TestSplit => (train_all, test.clone()),
            Validation::HoldOut(n) => {
                if n == 0 || n >= train_all.len() {
                    return Err(DataError::InvalidSplit(format!(
                        "cannot hold out {n} of {} training images for validation: \
                         need at least 1 and fewer than all",
                        train_all.len()
                    )));
                }
                let cut = train_all.len() - n;
                (
                    train_all.slice(0..cut),
                    train_all.slice(cut..train_all.len()),
                )
            }
        };
        let splits = Self {
            train: limit(train, options.train_limit),
            valid: limit(valid, options.valid_limit),
            test,
        };
        for (name, dataset) in [
            ("train", &splits.train),
            ("validation", &splits.valid),
            ("test", &splits.test),
        ] {
            if dataset.is_empty() {
                return Err(DataError::InvalidSplit(format!(
                    "the {name} split is empty"
                )));
            }
        }
        Ok(splits)
    }
}
