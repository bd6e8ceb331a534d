//! A finished run read back: its configuration and model loaded, evaluated on the test split.

use std::path::{Path, PathBuf};

use burn::tensor::Device;
use data::{MnistSplits, SplitOptions};

use super::setup::{data_dir_of, find_files, open_device};
use super::{CONFIG_FILE, MODEL_FILE, RunOptions};
use crate::TrainingError;
use crate::config::ExperimentConfig;
use crate::curves::write_confusion_matrix;
use crate::evaluate::{EvaluationReport, evaluate};

/// What a finished run left: its resolved configuration, and its model on the device asked for.
pub(crate) struct FinishedRun {
    pub(crate) config: ExperimentConfig,
    pub(crate) device: Device,
    pub(crate) classifier: model::LstmClassifier,
    pub(crate) model_path: PathBuf,
}

/// Loads the run in `run_dir` (its `config.toml` and `model.bpk`) on the device `options` ask
/// for; a missing file is an error saying what the directory should be.
pub(crate) fn load_run(run_dir: &Path, options: &RunOptions) -> Result<FinishedRun, TrainingError> {
    let config_path = run_dir.join(CONFIG_FILE);
    let model_path = run_dir.join(MODEL_FILE);
    for path in [&config_path, &model_path] {
        if !path.is_file() {
            return Err(TrainingError::MissingArtifact(format!(
                "{} not found: is {} the directory of a finished `train` run?",
                path.display(),
                run_dir.display()
            )));
        }
    }
    let config = ExperimentConfig::load(&config_path)?;
    let device = open_device(options)?;
    let classifier = config.model.to_model_config().load(&model_path, &device)?;
    Ok(FinishedRun {
        config,
        device,
        classifier,
        model_path,
    })
}

/// Evaluates the model of a finished run on the whole test split (its `test_limit` ignored).
pub fn evaluate_run(
    run_dir: &Path,
    options: &RunOptions,
) -> Result<EvaluationReport, TrainingError> {
    let FinishedRun {
        config,
        device,
        classifier,
        model_path,
    } = load_run(run_dir, options)?;
    let dataset = config.data.dataset.kind();
    let files = find_files(&config, options)?;
    let test = MnistSplits::load(&files, &SplitOptions::default())?.test;
    say!(
        options,
        "model: {}\ndata: {dataset} in {}",
        model_path.display(),
        data_dir_of(&files).display()
    );
    let report = evaluate(
        &classifier,
        &test,
        &config.data.batcher(),
        &device,
        config.training.eval_batch_size,
        &dataset.class_names(),
    );
    let images = write_confusion_matrix(&report, run_dir)?;
    say!(
        options,
        "confusion matrix: {}",
        images
            .iter()
            .map(|path| path.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(report)
}

/// The run under `root` whose model was written last, if any.
pub fn latest_run(root: &Path) -> Option<PathBuf> {
    std::fs::read_dir(root)
        .ok()?
        .filter_map(|entry| entry.ok())
        .filter_map(|entry| {
            let modified = entry
                .path()
                .join(MODEL_FILE)
                .metadata()
                .ok()?
                .modified()
                .ok()?;
            Some((modified, entry.path()))
        })
        .max_by_key(|(modified, _)| *modified)
        .map(|(_, path)| path)
}
