//! Configuration files: defaults, the shipped configs, overrides and mistakes.

use std::path::{Path, PathBuf};

use training::{ExperimentConfig, TrainingError, ValidationSource};

fn config_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../configs")
        .join(name)
}

#[test]
fn defaults_are_the_tutorials() {
    let config = ExperimentConfig::default();
    assert_eq!(config.model.hidden_size, 64);
    assert_eq!(config.model.num_layers, 1);
    assert!(!config.model.bidirectional);
    assert_eq!(config.training.batch_size, 64);
    assert_eq!(config.training.epochs, 1);
    assert_eq!(config.training.log_every, 50);
    assert_eq!(config.training.log_eval_size, 2000);
    assert_eq!(config.optimizer.learning_rate, 0.01);
    assert_eq!(config.data.validation, ValidationSource::Test);
    assert!(config.validate().is_ok());
}

#[test]
fn an_empty_file_takes_every_default() {
    assert_eq!(
        ExperimentConfig::parse("", "empty").unwrap(),
        ExperimentConfig::default()
    );
    let partial = ExperimentConfig::parse("[training]\nepochs = 3\n", "partial").unwrap();
    assert_eq!(partial.training.epochs, 3);
    assert_eq!(partial.training.batch_size, 64);
    assert_eq!(partial.model, ExperimentConfig::default().model);
}

#[test]
fn default_toml_reproduces_the_tutorial() {
    let config = ExperimentConfig::load(&config_path("default.toml")).unwrap();
    assert_eq!(config, ExperimentConfig::default());
}

#[test]
fn smoke_toml_is_small() {
    let config = ExperimentConfig::load(&config_path("smoke.toml")).unwrap();
    assert!(config.data.train_limit.unwrap() <= 1000);
    assert!(config.data.test_limit.unwrap() <= 1000);
}

#[test]
fn unknown_fields_are_errors_naming_field_and_line() {
    let text = "[training]\nepochs = 2\nepochz = 3\n";
    let error = ExperimentConfig::parse(text, "bad.toml").unwrap_err();
    let message = error.to_string();
    assert!(message.contains("bad.toml"), "{message}");
    assert!(message.contains("epochz"), "{message}");
    assert!(message.contains("bad.toml:3:1"), "{message}");

    let error = ExperimentConfig::parse("[trainer]\nepochs = 2\n", "bad.toml").unwrap_err();
    assert!(error.to_string().contains("trainer"), "{error}");
}

#[test]
fn wrong_types_and_ranges_are_errors() {
    let error = ExperimentConfig::parse("[training]\nepochs = \"two\"\n", "t.toml").unwrap_err();
    assert!(error.to_string().contains("epochs"), "{error}");
    let error = ExperimentConfig::parse("[training]\nbatch_size = 0\n", "t.toml").unwrap_err();
    assert!(error.to_string().contains("batch_size"), "{error}");
    let error = ExperimentConfig::parse("[model]\ndropout = 1.0\n", "t.toml").unwrap_err();
    assert!(error.to_string().contains("dropout"), "{error}");
    let error = ExperimentConfig::parse("[model]\ninput_size = 20\n", "t.toml").unwrap_err();
    assert!(error.to_string().contains("input_size"), "{error}");
    let error =
        ExperimentConfig::parse("[optimizer]\nlearning_rate = -1.0\n", "t.toml").unwrap_err();
    assert!(error.to_string().contains("learning_rate"), "{error}");
}

#[test]
fn early_stopping_by_the_test_set_is_refused_with_the_fix_named() {
    let stopping = "[early_stopping]\npatience = 2\n";
    let error = ExperimentConfig::parse(stopping, "t.toml").unwrap_err();
    let message = error.to_string();
    assert!(message.contains("early_stopping.patience"), "{message}");
    assert!(
        message.contains("data.validation = \"holdout\""),
        "{message}"
    );
    assert_eq!(message.lines().count(), 1, "{message}");

    let on_holdout = format!("{stopping}[data]\nvalidation = \"holdout\"\n");
    let config = ExperimentConfig::parse(&on_holdout, "t.toml").unwrap();
    assert_eq!(config.early_stopping.patience, 2);
    // Without early stopping, validating on the test split stays the default.
    assert!(ExperimentConfig::parse("[early_stopping]\npatience = 0\n", "t.toml").is_ok());
}

#[test]
fn a_missing_file_is_an_error_naming_it() {
    let error = ExperimentConfig::load(Path::new("/nonexistent/run.toml")).unwrap_err();
    assert!(matches!(error, TrainingError::Io { .. }));
    assert!(error.to_string().contains("/nonexistent/run.toml"));
}

#[test]
fn overrides_set_any_field() {
    let config = ExperimentConfig::default()
        .with_overrides(&[
            "training.epochs=3".to_string(),
            "model.bidirectional=true".to_string(),
            "optimizer.learning_rate = 0.002".to_string(),
            "data.dir=/tmp/mnist data".to_string(),
            "data.validation=holdout".to_string(),
            "data.train_limit=100".to_string(),
        ])
        .unwrap();
    assert_eq!(config.training.epochs, 3);
    assert!(config.model.bidirectional);
    assert_eq!(config.optimizer.learning_rate, 0.002);
    assert_eq!(config.data.dir, Some(PathBuf::from("/tmp/mnist data")));
    assert_eq!(config.data.validation, ValidationSource::Holdout);
    assert_eq!(config.data.train_limit, Some(100));
}

#[test]
fn bad_overrides_are_errors_naming_them() {
    let unknown = ExperimentConfig::default()
        .with_overrides(&["training.epochz=3".to_string()])
        .unwrap_err();
    assert!(unknown.to_string().contains("epochz"), "{unknown}");
    let wrong_type = ExperimentConfig::default()
        .with_overrides(&["training.epochs=many".to_string()])
        .unwrap_err();
    assert!(
        wrong_type.to_string().contains("training.epochs=many"),
        "{wrong_type}"
    );
    let no_equals = ExperimentConfig::default()
        .with_overrides(&["training.epochs".to_string()])
        .unwrap_err();
    assert!(no_equals.to_string().contains("key=value"), "{no_equals}");
    let out_of_range = ExperimentConfig::default()
        .with_overrides(&["training.batch_size=0".to_string()])
        .unwrap_err();
    assert!(
        out_of_range.to_string().contains("batch_size"),
        "{out_of_range}"
    );
}

#[test]
fn a_written_config_reads_back_equal() {
    let config = ExperimentConfig::default()
        .with_overrides(&["data.dir=/data".to_string(), "training.seed=7".to_string()])
        .unwrap();
    assert_eq!(
        ExperimentConfig::parse(&config.to_toml(), "written").unwrap(),
        config
    );
}

#[test]
fn the_dataset_is_chosen_by_name() {
    use training::DatasetName;
    assert_eq!(ExperimentConfig::default().data.dataset, DatasetName::Mnist);
    let fashion =
        ExperimentConfig::parse("[data]\ndataset = \"fashion-mnist\"\n", "f.toml").unwrap();
    assert_eq!(fashion.data.dataset, DatasetName::FashionMnist);
    let error = ExperimentConfig::parse("[data]\ndataset = \"cifar\"\n", "f.toml").unwrap_err();
    let message = error.to_string();
    assert!(
        message.contains("cifar") && message.contains("fashion-mnist"),
        "{message}"
    );
}

#[test]
fn forget_bias_reaches_the_model_and_must_be_finite() {
    let config = ExperimentConfig::parse("[model]\nforget_bias = 1.0\n", "f.toml").unwrap();
    assert_eq!(config.model.forget_bias, 1.0);
    assert_eq!(config.model.forget_bias, 1.0);
    assert_eq!(ExperimentConfig::default().model.forget_bias, 0.0);
    let error = ExperimentConfig::parse("[model]\nforget_bias = nan\n", "f.toml").unwrap_err();
    assert!(error.to_string().contains("forget_bias"), "{error}");
}

#[test]
fn fast_toml_validates_on_the_test_split_with_the_fast_recipe() {
    // `cargo xtask bench time-to-97` reads the test accuracy from the `valid` rows.
    let config = ExperimentConfig::load(&config_path("fast.toml")).unwrap();
    assert_eq!(config.data.validation, ValidationSource::Test);
    assert!(config.data.valid_limit.is_none() && config.data.test_limit.is_none());
    assert_eq!(config.model.forget_bias, 1.0);
    assert!(config.data.normalize);
    assert!(config.training.epochs <= 2);
}
