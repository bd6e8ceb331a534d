//! The IDX reader on good and broken synthetic files.

use std::io::Write;
use std::path::{Path, PathBuf};

use data::idx::{read_idx, read_images, read_labels, read_pair, write_idx};
use data::{Candidate, DataError, DatasetKind, IdxError, MnistDataset, MnistFiles, locate};

fn header(rank: u8, dims: &[u32]) -> Vec<u8> {
    let mut bytes = vec![0, 0, 8, rank];
    for d in dims {
        bytes.extend_from_slice(&d.to_be_bytes());
    }
    bytes
}

fn write_raw(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

fn images_bytes(count: u32, rows: u32, cols: u32) -> Vec<u8> {
    let mut bytes = header(3, &[count, rows, cols]);
    bytes.extend((0..count * rows * cols).map(|i| (i % 251) as u8));
    bytes
}

#[test]
fn reads_raw_and_gzipped_files_alike() {
    let dir = tempfile::tempdir().unwrap();
    let pixels: Vec<u8> = (0..3 * 28 * 28).map(|i| (i % 256) as u8).collect();
    let raw = dir.path().join("raw-idx3-ubyte");
    let gz = dir.path().join("gz-idx3-ubyte.gz");
    write_idx(&raw, &[3, 28, 28], &pixels, false).unwrap();
    write_idx(&gz, &[3, 28, 28], &pixels, true).unwrap();
    let from_raw = read_images(&raw, 28, 28).unwrap();
    let from_gz = read_images(&gz, 28, 28).unwrap();
    assert_eq!(from_raw, from_gz);
    assert_eq!(from_raw.count, 3);
    assert_eq!(from_raw.pixels, pixels);

    // Gzip is recognised by content, not by name.
    let renamed = dir.path().join("renamed-idx3-ubyte");
    std::fs::copy(&gz, &renamed).unwrap();
    assert_eq!(read_images(&renamed, 28, 28).unwrap(), from_raw);
}

#[test]
fn reads_labels_and_pairs() {
    let dir = tempfile::tempdir().unwrap();
    let images = dir.path().join("i");
    let labels = dir.path().join("l");
    write_idx(&images, &[4, 28, 28], &vec![7; 4 * 784], false).unwrap();
    write_idx(&labels, &[4], &[0, 9, 3, 3], true).unwrap();
    assert_eq!(read_labels(&labels, 10).unwrap(), vec![0, 9, 3, 3]);
    let (read_images, read_labels) = read_pair(&images, &labels, 28, 28, 10).unwrap();
    assert_eq!(read_images.count, 4);
    assert_eq!(read_labels.len(), 4);
}

#[test]
fn truncated_data_is_reported_with_sizes() {
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = images_bytes(2, 28, 28);
    bytes.truncate(bytes.len() - 10);
    let path = write_raw(dir.path(), "short-idx3-ubyte", &bytes);
    match read_images(&path, 28, 28) {
        Err(IdxError::TruncatedData {
            expected,
            found,
            path: p,
        }) => {
            assert_eq!(expected, 2 * 784);
            assert_eq!(found, 2 * 784 - 10);
            assert_eq!(p, path);
        }
        other => panic!("expected TruncatedData, got {other:?}"),
    }
}

#[test]
fn truncated_gzip_stream_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let full = dir.path().join("full.gz");
    write_idx(&full, &[2, 28, 28], &vec![1; 2 * 784], true).unwrap();
    let bytes = std::fs::read(&full).unwrap();
    let path = write_raw(dir.path(), "cut.gz", &bytes[..bytes.len() / 2]);
    let error = read_images(&path, 28, 28).unwrap_err();
    assert!(
        matches!(error, IdxError::Io { .. } | IdxError::TruncatedData { .. }),
        "{error:?}"
    );
    assert!(error.to_string().contains("cut.gz"), "{error}");
}

#[test]
fn truncated_header_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_raw(dir.path(), "tiny", &[0, 0, 8]);
    assert!(matches!(
        read_idx(&path, 3),
        Err(IdxError::TruncatedHeader {
            expected: 4,
            found: 3,
            ..
        })
    ));
    let path = write_raw(dir.path(), "half", &[0, 0, 8, 3, 0, 0, 0, 1, 0, 0]);
    assert!(matches!(
        read_idx(&path, 3),
        Err(IdxError::TruncatedHeader {
            expected: 16,
            found: 10,
            ..
        })
    ));
}

#[test]
fn bad_magic_is_reported_with_the_bytes_found() {
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = images_bytes(1, 28, 28);
    bytes[2] = 0x0d; // float type code
    let path = write_raw(dir.path(), "float-idx3-ubyte", &bytes);
    let error = read_images(&path, 28, 28).unwrap_err();
    assert!(
        matches!(
            error,
            IdxError::BadMagic {
                found: [0, 0, 0x0d, 3],
                ..
            }
        ),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(
        message.contains("float-idx3-ubyte") && message.contains("magic"),
        "{message}"
    );

    let path = write_raw(dir.path(), "text", b"hello, world, this is not IDX");
    assert!(matches!(
        read_images(&path, 28, 28),
        Err(IdxError::BadMagic { .. })
    ));
}

#[test]
fn wrong_dimensions_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    // A label file given where images are expected.
    let mut labels = header(1, &[3]);
    labels.extend([1, 2, 3]);
    let path = write_raw(dir.path(), "labels", &labels);
    assert!(matches!(
        read_images(&path, 28, 28),
        Err(IdxError::WrongRank {
            expected: 3,
            found: 1,
            ..
        })
    ));
    // Images of another size.
    let path = write_raw(dir.path(), "small", &images_bytes(2, 20, 28));
    let error = read_images(&path, 28, 28).unwrap_err();
    assert!(
        matches!(
            error,
            IdxError::WrongImageSize {
                rows: 20,
                cols: 28,
                ..
            }
        ),
        "{error:?}"
    );
    assert!(error.to_string().contains("20x28"), "{error}");
}

#[test]
fn image_and_label_counts_must_match() {
    let dir = tempfile::tempdir().unwrap();
    let images = dir.path().join("images");
    let labels = dir.path().join("labels");
    write_idx(&images, &[3, 28, 28], &vec![0; 3 * 784], false).unwrap();
    write_idx(&labels, &[2], &[1, 2], false).unwrap();
    let error = read_pair(&images, &labels, 28, 28, 10).unwrap_err();
    assert!(
        matches!(
            error,
            IdxError::CountMismatch {
                image_count: 3,
                label_count: 2,
                ..
            }
        ),
        "{error:?}"
    );
    assert!(error.to_string().contains("3 images") && error.to_string().contains("2 labels"));
}

#[test]
fn trailing_bytes_and_bad_labels_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = images_bytes(1, 28, 28);
    bytes.extend([1, 2, 3]);
    let path = write_raw(dir.path(), "long", &bytes);
    assert!(matches!(
        read_images(&path, 28, 28),
        Err(IdxError::TrailingData { extra: 3, .. })
    ));

    let mut labels = header(1, &[3]);
    labels.extend([1, 12, 3]);
    let path = write_raw(dir.path(), "labels", &labels);
    assert!(matches!(
        read_labels(&path, 10),
        Err(IdxError::LabelOutOfRange {
            index: 1,
            value: 12,
            ..
        })
    ));
}

#[test]
fn a_header_claiming_billions_of_images_fails_without_allocating_them() {
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = header(3, &[u32::MAX, u32::MAX, u32::MAX]);
    bytes.extend([0; 1000]);
    let path = write_raw(dir.path(), "huge", &bytes);
    assert!(matches!(
        read_idx(&path, 3),
        Err(IdxError::TruncatedData { found: 1000, .. })
    ));
}

#[test]
fn missing_file_is_an_io_error_naming_it() {
    let error = read_idx(Path::new("/nonexistent/train-images-idx3-ubyte"), 3).unwrap_err();
    assert!(matches!(error, IdxError::Io { .. }));
    assert!(
        error
            .to_string()
            .contains("/nonexistent/train-images-idx3-ubyte")
    );
}

#[test]
fn no_prefix_or_corruption_of_a_valid_file_panics() {
    let dir = tempfile::tempdir().unwrap();
    let good = images_bytes(2, 28, 28);
    let path = dir.path().join("mutated");
    // Every truncation of the header and some of the data.
    for len in (0..40).chain([good.len() - 1, good.len()]) {
        std::fs::write(&path, &good[..len]).unwrap();
        let result = read_images(&path, 28, 28);
        assert_eq!(result.is_ok(), len == good.len(), "length {len}");
    }
    // Single-byte corruptions of every header byte, through a gzip stream as well.
    for position in 0..16 {
        for value in [0u8, 1, 3, 8, 0x1f, 0x8b, 0xff] {
            let mut bytes = good.clone();
            bytes[position] = value;
            std::fs::write(&path, &bytes).unwrap();
            let _ = read_images(&path, 28, 28);
            let mut encoder =
                flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            encoder.write_all(&bytes).unwrap();
            std::fs::write(&path, encoder.finish().unwrap()).unwrap();
            let _ = read_images(&path, 28, 28);
        }
    }
}

#[test]
fn locate_lists_every_place_it_looked() {
    let empty = tempfile::tempdir().unwrap();
    let candidates = vec![
        Candidate::new("--data-dir", empty.path()),
        Candidate::new("MNIST_DIR", "/nonexistent/mnist"),
    ];
    let error = locate(DatasetKind::Mnist, &candidates).unwrap_err();
    assert!(matches!(error, DataError::NotFound { ref looked, .. } if looked.len() == 2));
    let message = error.to_string();
    assert!(
        message.contains(&empty.path().display().to_string()),
        "{message}"
    );
    assert!(
        message.contains("--data-dir") && message.contains("MNIST_DIR"),
        "{message}"
    );
    assert!(
        message.contains("missing train-images-idx3-ubyte[.gz]"),
        "{message}"
    );
    assert!(message.contains("no such directory"), "{message}");
}

#[test]
fn locate_takes_the_first_complete_directory() {
    let partial = tempfile::tempdir().unwrap();
    let complete = tempfile::tempdir().unwrap();
    data::write_synthetic_mnist(complete.path(), 20, 10, 1, true).unwrap();
    write_idx(
        &partial.path().join("train-images-idx3-ubyte"),
        &[0, 28, 28],
        &[],
        false,
    )
    .unwrap();
    let files = locate(
        DatasetKind::Mnist,
        &[
            Candidate::new("a", partial.path()),
            Candidate::new("b", complete.path()),
        ],
    )
    .unwrap();
    assert_eq!(files, MnistFiles::in_dir(complete.path()).unwrap());
    let train = MnistDataset::from_files(&files.train_images, &files.train_labels).unwrap();
    assert_eq!(train.len(), 20);
}

#[test]
fn fashion_mnist_is_also_looked_for_where_debian_installs_it() {
    let candidates = data::standard_candidates(DatasetKind::FashionMnist, None, None);
    assert!(
        candidates
            .iter()
            .any(|c| c.dir == Path::new("/usr/share/datasets/fashion-mnist")),
        "{candidates:?}"
    );
    let error = locate(
        DatasetKind::FashionMnist,
        &[Candidate::new("--data-dir", "/nonexistent/fashion")],
    )
    .unwrap_err();
    let message = error.to_string();
    assert!(
        message.starts_with("the fashion-mnist files were not found"),
        "{message}"
    );
    assert!(
        message.contains("apt-get install dataset-fashion-mnist"),
        "{message}"
    );
    assert_eq!(DatasetKind::FashionMnist.class_names()[9], "Ankle boot");
}
