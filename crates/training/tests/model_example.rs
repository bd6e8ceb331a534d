//! The model crate's example (`crates/model/examples/classify.rs`), run as a user of the
//! library would: on the `model.json` and `model.bpk` of a run of the smoke configuration.
//! The example's own file is compiled into this test, so what is tested is what docs/library.md shows.

use std::path::Path;

use data::write_synthetic_mnist;
use training::{ExperimentConfig, MODEL_CONFIG_FILE, MODEL_FILE, RunOptions, train};

#[allow(dead_code)]
#[path = "../../model/examples/classify.rs"]
mod example;

#[test]
fn the_example_classifies_with_a_model_trained_by_the_smoke_config() {
    let work = tempfile::tempdir().unwrap();
    let data_dir = work.path().join("data");
    write_synthetic_mnist(&data_dir, 640, 200, 7, true).unwrap();
    let config = ExperimentConfig::load(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/smoke.toml"),
    )
    .unwrap();
    let run_dir = work.path().join("smoke");
    let outcome = train(
        &config,
        &RunOptions {
            data_dir: Some(data_dir),
            artifacts: Some(run_dir.clone()),
            ..RunOptions::default()
        },
    )
    .unwrap();
    assert!(run_dir.join(MODEL_CONFIG_FILE).is_file());
    assert!(run_dir.join(MODEL_FILE).is_file());

    let probabilities = example::classify(&run_dir, &example::seven()).unwrap();
    assert_eq!(probabilities.len(), 10);
    let total: f32 = probabilities.iter().sum();
    assert!((total - 1.0).abs() < 1e-4, "probabilities sum to {total}");

    // The example's classifier is the trained one: on the test images it predicts what the
    // run's own evaluation did.
    let test = data::MnistDataset::from_files(
        &work.path().join("data/t10k-images-idx3-ubyte.gz"),
        &work.path().join("data/t10k-labels-idx1-ubyte.gz"),
    )
    .unwrap();
    for index in 0..5 {
        let item = test.item(index).unwrap();
        let pixels: Vec<f32> = item.pixels.iter().map(|&p| f32::from(p) / 255.0).collect();
        let probabilities = example::classify(&run_dir, &pixels).unwrap();
        assert_eq!(
            example::most_likely(&probabilities),
            usize::from(outcome.test.predictions[index]),
            "test image {index}"
        );
    }

    // A missing run is an error, not a panic.
    assert!(example::classify(&work.path().join("nowhere"), &example::seven()).is_err());
}
