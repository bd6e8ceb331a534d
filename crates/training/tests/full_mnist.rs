//! One epoch of the default configuration on the real MNIST files: at least 96.5 % of the
//! 10,000 test images right. Needs `MNIST_DIR`; skips with a message without it, except in CI.

use std::path::{Path, PathBuf};

use training::{ExperimentConfig, RunOptions, train};

#[test]
fn default_config_reaches_96_5_percent_in_one_epoch() {
    let Some(data_dir) = std::env::var_os("MNIST_DIR").map(PathBuf::from) else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must provide the MNIST files through MNIST_DIR"
        );
        eprintln!("SKIPPED default_config_reaches_96_5_percent_in_one_epoch: set MNIST_DIR");
        return;
    };
    let config = ExperimentConfig::load(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/default.toml"),
    )
    .unwrap();
    let artifacts = tempfile::tempdir().unwrap();
    let outcome = train(
        &config,
        &RunOptions {
            data_dir: Some(data_dir),
            artifacts: Some(artifacts.path().join("default")),
            verbose: true,
            ..RunOptions::default()
        },
    )
    .unwrap();
    assert_eq!(outcome.train_images, 60_000);
    assert_eq!(outcome.test.count(), 10_000);
    assert!(
        outcome.test.accuracy() >= 0.965,
        "test accuracy {:.2}% is below 96.5%",
        100.0 * outcome.test.accuracy()
    );
}
