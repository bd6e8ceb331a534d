//! What `[schedule]`, `[early_stopping]` and gradient clipping do to a run, and a NaN loss
//! stopping one; short runs on synthetic IDX files.

use std::path::Path;
use std::sync::Mutex;

use data::write_synthetic_mnist;
use training::{
    ExperimentConfig, MODEL_FILE, MetricSplit, RunOptions, TrainOutcome, TrainingError, train,
};

/// Training seeds Burn's global RNG: runs in parallel would draw from each other's stream.
static SERIAL: Mutex<()> = Mutex::new(());

/// 320 training images in batches of 32: 10 steps an epoch.
fn config(data_dir: &Path, extra: &[&str]) -> ExperimentConfig {
    let mut overrides = vec![
        format!("data.dir={}", data_dir.display()),
        "model.hidden_size=32".into(),
        "training.batch_size=32".into(),
        "training.log_every=0".into(),
        "training.eval_batch_size=100".into(),
        "training.keep_checkpoints=1".into(),
    ];
    overrides.extend(extra.iter().map(|s| s.to_string()));
    ExperimentConfig::default()
        .with_overrides(&overrides)
        .unwrap()
}

fn try_run(config: &ExperimentConfig, run_dir: &Path) -> Result<TrainOutcome, TrainingError> {
    train(
        config,
        &RunOptions {
            artifacts: Some(run_dir.to_path_buf()),
            ..RunOptions::default()
        },
    )
}

fn synthetic() -> tempfile::TempDir {
    let data = tempfile::tempdir().unwrap();
    write_synthetic_mnist(data.path(), 320, 100, 3, true).unwrap();
    data
}

fn train_lrs(outcome: &TrainOutcome) -> Vec<f64> {
    outcome
        .metrics
        .iter()
        .filter(|row| row.split == MetricSplit::Train)
        .map(|row| row.lr.expect("train rows carry the learning rate"))
        .collect()
}

#[test]
fn the_learning_rate_follows_warm_up_then_cosine_and_step_decay() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let data = synthetic();
    let artifacts = tempfile::tempdir().unwrap();

    let cosine = config(
        data.path(),
        &[
            "training.epochs=2",
            "schedule.kind=\"cosine\"",
            "schedule.warmup_steps=4",
            "schedule.warmup_start=0.25",
            "schedule.min_lr=0.001",
        ],
    );
    let lrs = train_lrs(&try_run(&cosine, &artifacts.path().join("cosine")).unwrap());
    assert_eq!(lrs.len(), 20, "{lrs:?}");
    // Warm-up: from a quarter of 0.01 up towards 0.01, rising.
    assert!((lrs[0] - 0.0025).abs() < 1e-9, "{lrs:?}");
    assert!(lrs[..5].windows(2).all(|w| w[1] > w[0]), "{lrs:?}");
    // Then half a cosine down to min_lr at the last step, never rising.
    assert!(lrs[4..].windows(2).all(|w| w[1] <= w[0] + 1e-12), "{lrs:?}");
    assert!(lrs.iter().all(|&lr| lr <= 0.01 + 1e-12), "{lrs:?}");
    assert!((lrs[19] - 0.001).abs() < 2e-4, "{lrs:?}");

    let step = config(
        data.path(),
        &[
            "training.epochs=1",
            "schedule.kind=\"step\"",
            "schedule.step_size=4",
            "schedule.gamma=0.5",
        ],
    );
    let lrs = train_lrs(&try_run(&step, &artifacts.path().join("step")).unwrap());
    let expected = [
        0.01, 0.01, 0.01, 0.01, 0.005, 0.005, 0.005, 0.005, 0.0025, 0.0025,
    ];
    for (lr, want) in lrs.iter().zip(expected) {
        assert!((lr - want).abs() < 1e-9, "{lrs:?}");
    }
}

#[test]
fn early_stopping_stops_after_patience_epochs_without_improvement() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let data = synthetic();
    let artifacts = tempfile::tempdir().unwrap();
    let epochs_run = |extra: &[&str], name: &str| {
        // Stopping is decided on training images held out, never on the test set.
        let mut args = vec![
            "training.epochs=6",
            "data.validation=\"holdout\"",
            "data.holdout=64",
        ];
        args.extend_from_slice(extra);
        let outcome = try_run(&config(data.path(), &args), &artifacts.path().join(name)).unwrap();
        outcome
            .metrics
            .iter()
            .filter(|row| row.split == MetricSplit::Valid)
            .count()
    };
    // No improvement can beat a delta of 1e9: epoch 1 is the best, and after 2 more the run
    // stops, at epoch 3.
    assert_eq!(
        epochs_run(
            &["early_stopping.patience=2", "early_stopping.min_delta=1e9"],
            "stops"
        ),
        3
    );
    // Accuracy in percent cannot improve by 1000 points either: patience 1 stops at epoch 2.
    assert_eq!(
        epochs_run(
            &[
                "early_stopping.patience=1",
                "early_stopping.metric=\"accuracy\"",
                "early_stopping.min_delta=1000",
            ],
            "accuracy"
        ),
        2
    );
    // Without it, all six epochs run.
    assert_eq!(epochs_run(&[], "all"), 6);
}

#[test]
fn clipping_gradients_to_almost_nothing_stops_learning() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let data = synthetic();
    let artifacts = tempfile::tempdir().unwrap();
    let accuracy = |extra: &[&str], name: &str| {
        let mut args = vec!["training.epochs=3"];
        args.extend_from_slice(extra);
        let outcome = try_run(&config(data.path(), &args), &artifacts.path().join(name)).unwrap();
        outcome.test.accuracy()
    };
    let free = accuracy(&[], "free");
    // Gradients of 1e-12 against Adam's epsilon of 1e-8 move each weight by about 1e-6 a step.
    let by_value = accuracy(&["optimizer.grad_clip_value=1e-12"], "value");
    let by_norm = accuracy(&["optimizer.grad_clip_norm=1e-12"], "norm");
    assert!(free > 0.9, "unclipped accuracy {free}");
    assert!(by_value < 0.5, "clipped by value: {by_value}");
    assert!(by_norm < 0.5, "clipped by norm: {by_norm}");
    // A moderate norm bound still learns.
    let moderate = accuracy(&["optimizer.grad_clip_norm=1.0"], "moderate");
    assert!(moderate > 0.9, "clipped to norm 1: {moderate}");
}

#[test]
fn a_non_finite_loss_stops_the_run_naming_the_step() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let data = synthetic();
    let artifacts = tempfile::tempdir().unwrap();
    let run_dir = artifacts.path().join("nan");
    let config = config(
        data.path(),
        &["training.epochs=3", "optimizer.learning_rate=1e38"],
    );
    let error = try_run(&config, &run_dir).unwrap_err();
    let message = error.to_string();
    let TrainingError::NonFiniteLoss {
        epoch, global_step, ..
    } = error
    else {
        panic!("expected a non-finite loss, got: {message}");
    };
    assert!(epoch <= 3 && global_step <= 30, "{message}");
    assert!(
        message.contains(&format!("step {global_step} of the run")),
        "{message}"
    );
    assert!(message.contains("learning_rate"), "{message}");
    assert!(
        !run_dir.join(MODEL_FILE).exists(),
        "no model may be saved from a run that diverged"
    );
}
