//! Splits, items and batches.

use burn::data::dataloader::batcher::Batcher;
use burn::data::dataset::Dataset;
use burn::tensor::Device;
use data::{
    MnistBatcher, MnistDataset, MnistFiles, MnistSplits, SplitOptions, Validation,
    write_synthetic_mnist,
};

fn synthetic(train: usize, test: usize) -> (tempfile::TempDir, MnistFiles) {
    let dir = tempfile::tempdir().unwrap();
    write_synthetic_mnist(dir.path(), train, test, 7, false).unwrap();
    let files = MnistFiles::in_dir(dir.path()).unwrap();
    (dir, files)
}

#[test]
fn test_split_validation_and_limits() {
    let (_dir, files) = synthetic(100, 40);
    let splits = MnistSplits::load(
        &files,
        &SplitOptions {
            train_limit: Some(30),
            test_limit: Some(25),
            ..SplitOptions::default()
        },
    )
    .unwrap();
    assert_eq!(splits.train.len(), 30);
    assert_eq!(splits.test.len(), 25);
    assert_eq!(splits.valid.len(), 25);
    assert_eq!(splits.valid.labels(), splits.test.labels());
}

#[test]
fn holdout_validation_takes_the_last_training_images() {
    let (_dir, files) = synthetic(100, 40);
    let all = MnistDataset::from_files(&files.train_images, &files.train_labels).unwrap();
    let splits = MnistSplits::load(
        &files,
        &SplitOptions {
            validation: Validation::HoldOut(20),
            ..SplitOptions::default()
        },
    )
    .unwrap();
    assert_eq!(splits.train.len(), 80);
    assert_eq!(splits.valid.len(), 20);
    assert_eq!(splits.valid.get(0).unwrap(), all.get(80).unwrap());
    assert_eq!(splits.train.get(79).unwrap(), all.get(79).unwrap());

    let too_many = MnistSplits::load(
        &files,
        &SplitOptions {
            validation: Validation::HoldOut(100),
            ..SplitOptions::default()
        },
    );
    assert!(too_many.unwrap_err().to_string().contains("hold out 100"));
}

#[test]
fn items_carry_pixels_and_labels() {
    let (_dir, files) = synthetic(30, 10);
    let train = MnistDataset::from_files(&files.train_images, &files.train_labels).unwrap();
    let item = train.get(13).unwrap();
    assert_eq!(item.pixels.len(), 784);
    assert_eq!(item.label, 3);
    assert!(train.item(30).is_none());
}

#[test]
fn batcher_shapes_and_scaling() {
    let device = Device::default();
    let (_dir, files) = synthetic(10, 10);
    let train = MnistDataset::from_files(&files.train_images, &files.train_labels).unwrap();
    let items: Vec<_> = (0..4).map(|i| train.get(i).unwrap()).collect();

    let batch = MnistBatcher::new().batch(items.clone(), &device);
    assert_eq!(batch.images.dims(), [4, 28, 28]);
    assert_eq!(batch.targets.dims(), [4]);
    let targets: Vec<i64> = batch.targets.into_data().iter::<i64>().collect();
    assert_eq!(targets, vec![0, 1, 2, 3]);
    let pixels: Vec<f32> = batch.images.into_data().iter::<f32>().collect();
    let expected: Vec<f32> = items
        .iter()
        .flat_map(|item| item.pixels.iter().map(|&p| f32::from(p) / 255.0))
        .collect();
    assert_eq!(pixels, expected);
    assert!(pixels.iter().all(|p| (0.0..=1.0).contains(p)));
    assert!(pixels.iter().any(|&p| p > 0.6));

    let normalized = MnistBatcher::normalized(0.5, 0.25).batch(items.clone(), &device);
    let values: Vec<f32> = normalized.images.into_data().iter::<f32>().collect();
    for (value, scaled) in values.iter().zip(&expected) {
        assert!((value - (scaled - 0.5) / 0.25).abs() < 1e-6);
    }
}
