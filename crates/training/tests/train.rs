//! Short training runs on synthetic IDX files: the loss falls, runs are reproducible, and the
//! saved model and checkpoints reload to the same predictions.

use std::path::Path;
use std::sync::Mutex;

use burn::module::Module;
use burn::tensor::Device;
use data::{MnistDataset, write_synthetic_mnist};
use training::{
    CONFIG_FILE, EVALUATION_FILE, ExperimentConfig, MODEL_FILE, RunOptions, TrainOutcome, Trainee,
    evaluate, evaluate_run, latest_run, train,
};

/// Training seeds Burn's global RNG: runs in parallel would draw from each other's stream.
static SERIAL: Mutex<()> = Mutex::new(());

fn small_config(data_dir: &Path) -> ExperimentConfig {
    ExperimentConfig::default()
        .with_overrides(&[
            format!("data.dir={}", data_dir.display()),
            "model.hidden_size=32".into(),
            "training.epochs=2".into(),
            "training.batch_size=32".into(),
            "training.log_every=2".into(),
            "training.log_eval_size=100".into(),
            "training.eval_batch_size=100".into(),
            "training.keep_checkpoints=1".into(),
        ])
        .unwrap()
}

fn run(config: &ExperimentConfig, run_dir: &Path) -> TrainOutcome {
    train(
        config,
        &RunOptions {
            artifacts: Some(run_dir.to_path_buf()),
            ..RunOptions::default()
        },
    )
    .unwrap()
}

fn mean(values: impl Iterator<Item = f64>) -> f64 {
    let values: Vec<f64> = values.collect();
    values.iter().sum::<f64>() / values.len() as f64
}

#[test]
fn a_short_run_learns_saves_and_reloads() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let data = tempfile::tempdir().unwrap();
    write_synthetic_mnist(data.path(), 320, 100, 3, true).unwrap();
    let artifacts = tempfile::tempdir().unwrap();
    let run_dir = artifacts.path().join("run");
    let config = small_config(data.path());
    let outcome = run(&config, &run_dir);

    // 320 images in batches of 32 for 2 epochs, a line every 2 steps.
    assert_eq!(outcome.steps.len(), 10);
    assert_eq!(outcome.steps.last().unwrap().epoch, 2);
    assert_eq!(outcome.steps.last().unwrap().step, 10);
    let first = mean(outcome.steps[..3].iter().map(|s| s.train_loss));
    let last = mean(outcome.steps[7..].iter().map(|s| s.train_loss));
    assert!(last < 0.7 * first, "loss did not fall: {first} -> {last}");
    assert!(outcome.test.accuracy() > 0.5, "{}", outcome.test);
    assert_eq!(outcome.test.count(), 100);

    // The run directory holds what docs/resume.md promises.
    for file in [CONFIG_FILE, MODEL_FILE, EVALUATION_FILE] {
        assert!(run_dir.join(file).is_file(), "{file} missing");
    }
    let resolved = ExperimentConfig::load(&run_dir.join(CONFIG_FILE)).unwrap();
    assert_eq!(resolved.model, config.model);
    assert_eq!(
        resolved.training.artifacts.as_deref(),
        Some(run_dir.as_path())
    );
    // One checkpoint kept: the one after the last epoch (2 epochs of 10 steps).
    let checkpoint_dir = run_dir.join("checkpoint").join("step-00000020");
    for file in ["model.bpk", "optimizer.bpk", "scheduler.bpk", "state.json"] {
        assert!(checkpoint_dir.join(file).is_file(), "{file} missing");
    }
    assert_eq!(
        std::fs::read_dir(run_dir.join("checkpoint"))
            .unwrap()
            .count(),
        1
    );

    // The saved model predicts what the trained one did.
    let device = Device::default();
    let test = MnistDataset::from_files(
        &data.path().join("t10k-images-idx3-ubyte.gz"),
        &data.path().join("t10k-labels-idx1-ubyte.gz"),
    )
    .unwrap();
    let model_config = config.model.clone();
    let reloaded = model_config
        .load(run_dir.join(MODEL_FILE), &device)
        .unwrap();
    let batcher = config.data.batcher();
    let class_names = data::DatasetKind::Mnist.class_names();
    let predictions = |classifier: &model::LstmClassifier| {
        evaluate(classifier, &test, &batcher, &device, 64, &class_names).predictions
    };
    assert_eq!(predictions(&reloaded), outcome.test.predictions);

    // So does the last epoch's checkpoint, which holds the same weights.
    let checkpoint = Trainee::new(model_config.init(&device), None)
        .try_load_file(checkpoint_dir.join("model.bpk"))
        .unwrap();
    assert_eq!(
        predictions(&checkpoint.classifier),
        outcome.test.predictions
    );

    // `eval` on the run directory finds the same accuracy on the whole test split.
    let evaluated = evaluate_run(&run_dir, &RunOptions::default()).unwrap();
    assert_eq!(evaluated, outcome.test);
    assert_eq!(latest_run(artifacts.path()), Some(run_dir));
}

#[test]
fn the_same_seed_gives_the_same_loss_curve() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let data = tempfile::tempdir().unwrap();
    write_synthetic_mnist(data.path(), 192, 50, 5, false).unwrap();
    let artifacts = tempfile::tempdir().unwrap();
    let config = small_config(data.path());
    let losses = |name: &str, config: &ExperimentConfig| -> Vec<f64> {
        run(config, &artifacts.path().join(name))
            .steps
            .iter()
            .map(|s| s.train_loss)
            .collect()
    };
    let a = losses("a", &config);
    let b = losses("b", &config);
    assert_eq!(a, b);
    let other_seed = config
        .clone()
        .with_overrides(&["training.seed=43".to_string()])
        .unwrap();
    assert_ne!(a, losses("c", &other_seed));
}

#[test]
fn stacked_and_bidirectional_models_train() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let data = tempfile::tempdir().unwrap();
    write_synthetic_mnist(data.path(), 64, 20, 9, false).unwrap();
    let artifacts = tempfile::tempdir().unwrap();
    let config = small_config(data.path())
        .with_overrides(&[
            "model.num_layers=2".to_string(),
            "model.bidirectional=true".to_string(),
            "model.dropout=0.1".to_string(),
            "training.epochs=1".to_string(),
        ])
        .unwrap();
    let outcome = run(&config, &artifacts.path().join("bi"));
    assert_eq!(outcome.test.count(), 20);
    let reloaded = config
        .model
        .load(outcome.run_dir.join(MODEL_FILE), &Device::default())
        .unwrap();
    assert_eq!(reloaded.lstm.directions.len(), 4);
}

#[test]
fn missing_data_is_an_error_listing_where_it_looked() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let empty = tempfile::tempdir().unwrap();
    let artifacts = tempfile::tempdir().unwrap();
    let error = train(
        &ExperimentConfig::default(),
        &RunOptions {
            data_dir: Some(empty.path().to_path_buf()),
            artifacts: Some(artifacts.path().join("run")),
            ..RunOptions::default()
        },
    )
    .unwrap_err();
    let message = error.to_string();
    assert!(
        message.contains(&empty.path().display().to_string()),
        "{message}"
    );
    assert!(message.contains("--data-dir"), "{message}");
}
