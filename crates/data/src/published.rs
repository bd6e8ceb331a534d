//! What the publishers of each data set provide: where to download it and the SHA-256 of each
//! file's decompressed content.
//!
//! The hashes are of the IDX content, not of the `.gz` file, so the canonical downloads, a local
//! recompressed copy and an uncompressed copy all verify the same way.

use crate::DatasetKind;
use crate::dataset::{TEST_IMAGES, TEST_LABELS, TRAIN_IMAGES, TRAIN_LABELS};

/// One published file of a data set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PublishedFile {
    /// The file name without `.gz` (mirrors serve `<name>.gz`).
    pub name: &'static str,
    /// SHA-256 of the decompressed content, lowercase hex.
    pub sha256: &'static str,
    /// Bytes of the decompressed content.
    pub size: u64,
}

const IMAGES_SIZE: [u64; 2] = [47_040_016, 7_840_016];
const LABELS_SIZE: [u64; 2] = [60_008, 10_008];

const MNIST_FILES: [PublishedFile; 4] = [
    PublishedFile {
        name: TRAIN_IMAGES,
        sha256: "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
        size: IMAGES_SIZE[0],
    },
    PublishedFile {
        name: TRAIN_LABELS,
        sha256: "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
        size: LABELS_SIZE[0],
    },
    PublishedFile {
        name: TEST_IMAGES,
        sha256: "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
        size: IMAGES_SIZE[1],
    },
    PublishedFile {
        name: TEST_LABELS,
        sha256: "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
        size: LABELS_SIZE[1],
    },
];

const FASHION_MNIST_FILES: [PublishedFile; 4] = [
    PublishedFile {
        name: TRAIN_IMAGES,
        sha256: "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
        size: IMAGES_SIZE[0],
    },
    PublishedFile {
        name: TRAIN_LABELS,
        sha256: "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
        size: LABELS_SIZE[0],
    },
    PublishedFile {
        name: TEST_IMAGES,
        sha256: "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
        size: IMAGES_SIZE[1],
    },
    PublishedFile {
        name: TEST_LABELS,
        sha256: "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
        size: LABELS_SIZE[1],
    },
];

impl DatasetKind {
    /// The four published files, in the order train images, train labels, test images, test
    /// labels.
    pub fn published_files(self) -> &'static [PublishedFile; 4] {
        match self {
            Self::Mnist => &MNIST_FILES,
            Self::FashionMnist => &FASHION_MNIST_FILES,
        }
    }

    /// Base URLs that serve `<name>.gz` for each published file, tried in this order.
    ///
    /// The original MNIST host (yann.lecun.com) answers 403 to downloads and is left out. A
    /// plain-HTTP mirror is safe to use: the content is checked against its SHA-256.
    pub fn mirrors(self) -> &'static [&'static str] {
        match self {
            Self::Mnist => &[
                "https://storage.googleapis.com/cvdf-datasets/mnist/",
                "https://ossci-datasets.s3.amazonaws.com/mnist/",
            ],
            Self::FashionMnist => &[
                "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
                "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
            ],
        }
    }

    /// Environment variable that replaces the built-in mirrors: base URLs separated by commas.
    pub fn mirrors_env_var(self) -> &'static str {
        match self {
            Self::Mnist => "MNIST_MIRRORS",
            Self::FashionMnist => "FASHION_MNIST_MIRRORS",
        }
    }
}
