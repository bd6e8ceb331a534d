//! The published SHA-256 of each data file (`crates/data/src/published.rs`) against the real
//! files of this machine. Here rather than in the data crate, whose dependants would all be
//! rebuilt whenever the build script that finds the files reran.

use std::path::PathBuf;

use data::{DatasetKind, MnistFiles};

fn assert_verified(kind: DatasetKind, dir: PathBuf) {
    let files = MnistFiles::in_dir(&dir).unwrap();
    for check in data::verify_files(kind, &files).unwrap() {
        assert!(check.is_verified(), "{check}");
    }
}

#[test]
#[cfg_attr(not(real_mnist), ignore = "needs the MNIST files: set MNIST_DIR")]
fn published_hashes_match_the_real_mnist_files() {
    assert_verified(
        DatasetKind::Mnist,
        std::env::var_os("MNIST_DIR").expect("MNIST_DIR").into(),
    );
}

#[test]
#[cfg_attr(
    not(real_fashion_mnist),
    ignore = "needs Fashion-MNIST: apt-get install dataset-fashion-mnist or set FASHION_MNIST_DIR"
)]
fn published_hashes_match_the_real_fashion_mnist_files() {
    let dir = std::env::var_os("FASHION_MNIST_DIR")
        .filter(|dir| !dir.is_empty())
        .map_or_else(|| "/usr/share/datasets/fashion-mnist".into(), PathBuf::from);
    assert_verified(DatasetKind::FashionMnist, dir);
}
