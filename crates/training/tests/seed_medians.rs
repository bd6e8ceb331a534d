//! These tests judge a recipe, not a seed: each configuration is trained for its epoch on the
//! real files with five seeds fixed before any was measured (the default, 42, and the next four),
//! and the median test accuracy must reach:
//! - `configs/default.toml` (the tutorial's recipe) on MNIST: median at least 96.2 % (PyTorch's own
//!   recipe measured 96.2-96.6 % medians on this machine class);
//! - the same on Fashion-MNIST: median at least 82.5 %;
//! - `configs/fast.toml`: median at least 97.2 %, and every seed at least 97.0 %.
//!
//! Without the data set a test is ignored, with its reason (see `build-support/real_data.rs`);
//! in CI the data must be there.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use training::{ExperimentConfig, RunOptions, train};

/// The seeds every median is taken over: chosen before measuring, never tuned on the test set.
const SEEDS: [u64; 5] = [42, 43, 44, 45, 46];

/// One training at a time: the backend's random state is the process's, so two runs seeding it
/// from parallel test threads would draw each other's numbers and neither would be the run its
/// seed names (measured: Fashion-MNIST seed 42 gave 81.50 % beside another run, 83.79 % alone,
/// as `mnist-lstm train` gives).
static ONE_RUN_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Test accuracy (in %) of one epoch of `config_name` with each of [`SEEDS`], printed as it
/// goes.
fn accuracies(config_name: &str, overrides: &[&str], data_dir: Option<PathBuf>) -> Vec<f64> {
    let _alone = ONE_RUN_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../../configs/{config_name}.toml"));
    let base = ExperimentConfig::load(&path).unwrap();
    let artifacts = tempfile::tempdir().unwrap();
    SEEDS
        .iter()
        .map(|seed| {
            let mut assignments: Vec<String> = overrides.iter().map(|o| o.to_string()).collect();
            assignments.push(format!("training.seed={seed}"));
            let config = base.clone().with_overrides(&assignments).unwrap();
            let outcome = train(
                &config,
                &RunOptions {
                    data_dir: data_dir.clone(),
                    artifacts: Some(artifacts.path().join(format!("seed-{seed}"))),
                    ..RunOptions::default()
                },
            )
            .unwrap();
            assert_eq!(outcome.test.count(), 10_000);
            let accuracy = 100.0 * outcome.test.accuracy();
            println!("{config_name} {overrides:?} seed {seed}: {accuracy:.2} % test accuracy");
            accuracy
        })
        .collect()
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted[sorted.len() / 2]
}

fn mnist_dir() -> Option<PathBuf> {
    std::env::var_os("MNIST_DIR").map(PathBuf::from)
}

#[test]
#[cfg_attr(not(real_mnist), ignore = "needs the MNIST files: set MNIST_DIR")]
fn default_recipe_median_over_five_seeds_is_at_least_96_2_percent_on_mnist() {
    let accuracies = accuracies("default", &[], mnist_dir());
    let median = median(&accuracies);
    println!("default on MNIST: median {median:.2} % over seeds {SEEDS:?}");
    assert!(
        median >= 96.2,
        "median {median:.2} % < 96.2 %: {accuracies:?}"
    );
}

#[test]
#[cfg_attr(
    not(real_fashion_mnist),
    ignore = "needs Fashion-MNIST: apt-get install dataset-fashion-mnist or set FASHION_MNIST_DIR"
)]
fn default_recipe_median_over_five_seeds_is_at_least_82_5_percent_on_fashion_mnist() {
    let accuracies = accuracies("default", &["data.dataset=fashion-mnist"], None);
    let median = median(&accuracies);
    println!("default on Fashion-MNIST: median {median:.2} % over seeds {SEEDS:?}");
    assert!(
        median >= 82.5,
        "median {median:.2} % < 82.5 %: {accuracies:?}"
    );
}

#[test]
#[cfg_attr(not(real_mnist), ignore = "needs the MNIST files: set MNIST_DIR")]
fn fast_recipe_median_is_at_least_97_2_percent_and_every_seed_97_0() {
    let accuracies = accuracies("fast", &[], mnist_dir());
    let median = median(&accuracies);
    println!("fast on MNIST: median {median:.2} % over seeds {SEEDS:?}");
    assert!(
        median >= 97.2,
        "median {median:.2} % < 97.2 %: {accuracies:?}"
    );
    let worst = accuracies.iter().copied().fold(f64::INFINITY, f64::min);
    assert!(
        worst >= 97.0,
        "a seed reached only {worst:.2} % < 97.0 %: {accuracies:?}"
    );
}

/// CI must run the tests above, not ignore them.
#[test]
// The constants are what the build script found, which is the point of the check.
#[allow(clippy::assertions_on_constants)]
fn ci_provides_the_real_data_sets() {
    if std::env::var_os("CI").is_some() {
        assert!(
            cfg!(real_mnist),
            "CI must provide the MNIST files through MNIST_DIR"
        );
        assert!(
            cfg!(real_fashion_mnist),
            "CI must install dataset-fashion-mnist"
        );
    }
}
