//! The last step of a run: the model saved beside its configuration, evaluated on the test
//! split, and the metrics and curves written.

use std::time::Instant;

use burn::tensor::Device;

use super::directory::{RunDirectory, save_model, write_file};
use super::learner::Trained;
use super::setup::TrainingData;
use super::{EVALUATION_FILE, METRICS_FILE, RunOptions};
use super::{TrainOutcome, TrainingError};
use crate::config::ExperimentConfig;
use crate::curves::write_curves;
use crate::metrics_log::{MetricSplit, write_metrics_csv};
use inference::evaluate;

/// Report: `model.bpk` and `model.json` written, the test split evaluated into
/// `evaluation.txt` and a last `metrics.csv` row, then `metrics.csv` and the curves.
pub(super) fn write_results(
    config: &ExperimentConfig,
    options: &RunOptions,
    device: &Device,
    data: &TrainingData,
    run: &RunDirectory,
    trained: Trained,
) -> Result<TrainOutcome, TrainingError> {
    let training = &config.training;
    let classifier = trained.trainee.classifier;
    let model_path = save_model(config, classifier.clone(), &run.dir)?;
    let images = data.splits.train.len() * training.epochs;
    say!(
        options,
        "trained {} epoch(s) in {:.1} s ({:.0} images/s including validation); model saved to {}",
        training.epochs,
        trained.seconds,
        images as f64 / trained.seconds.max(1e-9),
        model_path.display()
    );

    let test = evaluate(
        &classifier,
        &data.splits.test,
        &config.data.batcher(),
        device,
        training.eval_batch_size,
        &data.dataset.class_names(),
    );
    write_file(&run.dir.join(EVALUATION_FILE), &format!("{test}\n"))?;
    say!(
        options,
        "final test accuracy: {:.2}% on {} images (loss {:.4})",
        100.0 * test.accuracy(),
        test.count(),
        test.loss
    );

    let log = &trained.log;
    log.push(
        training.epochs * data.steps_per_epoch,
        training.epochs,
        MetricSplit::Test,
        Some(test.loss),
        Some(test.accuracy()),
        None,
    );
    let plotting = Instant::now();
    let metrics = log.rows();
    write_metrics_csv(&run.dir.join(METRICS_FILE), &metrics)?;
    let curves = write_curves(&metrics, config.data.validation.images(), &run.dir)?;
    let plotting_seconds = plotting.elapsed().as_secs_f64();
    say!(
        options,
        "metrics: {} ({} rows); curves: {} ({:.2} s)",
        run.dir.join(METRICS_FILE).display(),
        metrics.len(),
        curves
            .iter()
            .filter_map(|path| path.file_name())
            .map(|name| name.to_string_lossy())
            .collect::<Vec<_>>()
            .join(", "),
        plotting_seconds
    );

    Ok(TrainOutcome {
        run_dir: run.dir.clone(),
        steps: trained.probe.records(),
        test,
        training_seconds: trained.seconds,
        train_images: data.splits.train.len(),
        metrics,
        plotting_seconds,
    })
}
