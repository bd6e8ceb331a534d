//! A finished run evaluated on the test split, and the newest run of a directory.

use std::path::{Path, PathBuf};

use data::{MnistSplits, SplitOptions};
use inference::{CONFIG_FILE, EvaluationReport, MODEL_FILE, TrainedRun, evaluate};

use super::RunOptions;
use super::setup::{data_dir_of, find_files, open_device};
use crate::TrainingError;
use crate::config::ExperimentConfig;
use crate::curves::write_confusion_matrix;

/// Evaluates the model of a finished run on the whole test split (its `test_limit` ignored),
/// and draws its confusion matrix into the run directory.
pub fn evaluate_run(
    run_dir: &Path,
    options: &RunOptions,
) -> Result<EvaluationReport, TrainingError> {
    let device = open_device(options)?;
    let run = TrainedRun::load(run_dir, &device)?;
    // The whole configuration, for where the data is and the batch size: training's business.
    let config = ExperimentConfig::load(&run_dir.join(CONFIG_FILE))?;
    let dataset = run.dataset();
    let files = find_files(&config, options)?;
    let test = MnistSplits::load(&files, &SplitOptions::default())?.test;
    say!(
        options,
        "model: {}\ndata: {dataset} in {}",
        run.model_path().display(),
        data_dir_of(&files).display()
    );
    let report = evaluate(
        &run.classifier,
        &test,
        &run.batcher(),
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
