//! burn-train's side of a run: the model, the loaders, the step probe and the learner put
//! together (a checkpoint's records loaded into them), then the loop, and why it stopped.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use burn::data::dataloader::DataLoaderBuilder;
use burn::data::dataloader::batcher::Batcher;
use burn::lr_scheduler::LrSchedulerRecord;
use burn::module::Module;
use burn::optim::OptimizerRecord;
use burn::store::ModuleRecord;
use burn::tensor::Device;
use burn::train::metric::{AccuracyMetric, LearningRateMetric, LossMetric};
use burn::train::{Learner, LearningResult, SupervisedTraining, TrainingStrategy};

use super::RunOptions;
use super::directory::RunDirectory;
use super::setup::TrainingData;
use crate::TrainingError;
use crate::checkpoint::{FoundCheckpoint, RunPosition};
use crate::config::ExperimentConfig;
use crate::metrics_log::{MetricRow, MetricsLog};
use crate::renderer::LineRenderer;
use crate::schedule::{BestSoFar, EarlyStopping, lr_scheduler};
use crate::trainee::{StepProbe, Trainee};
use crate::training_loop::{LoopReport, ResumableTraining};

/// Everything burn-train's loop needs, ready to launch.
pub(super) struct Assembled {
    supervised: SupervisedTraining<Trainee>,
    learner: Learner<Trainee>,
    probe: Arc<StepProbe>,
    log: Arc<MetricsLog>,
    report: Arc<Mutex<LoopReport>>,
    /// A resumed run's `metrics.csv` rows and the seconds it had trained, taken up once the
    /// clock restarts.
    resumed_metrics: Option<(Vec<MetricRow>, f64)>,
}

/// What the loop produced.
pub(super) struct Trained {
    /// The trained model.
    pub(super) trainee: Trainee,
    /// The step lines and the probe's watch on the loss.
    pub(super) probe: Arc<StepProbe>,
    /// Every row of `metrics.csv` so far.
    pub(super) log: Arc<MetricsLog>,
    /// Seconds in burn-train's loop in this process (a resumed run counts from its resume).
    pub(super) seconds: f64,
}

/// A checkpoint's state, decoded.
struct Restored {
    trainee: Trainee,
    position: RunPosition,
    optimizer: OptimizerRecord,
    scheduler: LrSchedulerRecord,
    metrics: Vec<MetricRow>,
}

/// Learner: the seeded model, the step probe, the loaders and the resumable strategy, put
/// into burn-train's `SupervisedTraining` and `Learner`; `resumed`'s records are loaded into
/// them.
pub(super) fn assemble(
    config: &ExperimentConfig,
    options: &RunOptions,
    device: &Device,
    data: &TrainingData,
    run: &RunDirectory,
    resumed: Option<FoundCheckpoint>,
) -> Result<Assembled, TrainingError> {
    let training = &config.training;
    let classifier = config
        .model
        .init_seeded(training.seed, &device.clone().autodiff());
    let log = Arc::new(MetricsLog::new());
    let probe = step_probe(config, options, device, data, &log);
    let early_stopping = EarlyStopping::from_config(&config.early_stopping);
    let early_stopping_best = early_stopping.as_ref().map(EarlyStopping::best);
    let mut trainee = Trainee::new(classifier, Some(probe.clone()));
    let mut start = None;
    let mut records = None;
    let mut resumed_metrics = None;
    if let Some(found) = resumed {
        let restored = restore(found, trainee, &probe, early_stopping_best.as_ref())?;
        trainee = restored.trainee;
        records = Some((restored.optimizer, restored.scheduler));
        resumed_metrics = Some((restored.metrics, restored.position.elapsed_seconds));
        start = Some(restored.position);
    }
    let report = Arc::new(Mutex::new(LoopReport::default()));
    let steps_done = start.as_ref().map_or(0, |position| position.global_step);
    let epochs_done = start.as_ref().map_or(0, RunPosition::epochs_done);
    let strategy = ResumableTraining {
        device: device.clone().autodiff(),
        base_device: device.clone(),
        seed: training.seed,
        steps_per_epoch: data.steps_per_epoch,
        checkpoint_every: training.checkpoint_every,
        store: run.store.clone(),
        start,
        stop: options.stop.clone(),
        log: log.clone(),
        probe: probe.clone(),
        early_stopping_best,
        report: report.clone(),
    };
    let renderer = LineRenderer::new()
        .with_log(log.clone())
        .starting_after(steps_done);
    let mut supervised = supervised_training(config, data, run, strategy, renderer, epochs_done);
    if let Some(strategy) = early_stopping {
        supervised = supervised.early_stopping(strategy);
    }
    probe.stop_on_non_finite(supervised.interrupter());
    let total_steps = training.epochs * data.steps_per_epoch;
    let mut learner = Learner::new(
        trainee,
        config.optimizer.adam().init(),
        lr_scheduler(config, total_steps)?,
    );
    if let Some((optimizer, scheduler)) = records {
        learner.load_optim(optimizer);
        learner.load_scheduler(scheduler);
    }
    Ok(Assembled {
        supervised,
        learner,
        probe,
        log,
        report,
        resumed_metrics,
    })
}

/// The probe behind the step lines, which also watches every loss for NaN: its images are
/// the first `log_eval_size` of the validation split (one when step lines are off), so that
/// with a held-out split nothing but the final evaluation reads the test images.
fn step_probe(
    config: &ExperimentConfig,
    options: &RunOptions,
    device: &Device,
    data: &TrainingData,
    log: &Arc<MetricsLog>,
) -> Arc<StepProbe> {
    let training = &config.training;
    let eval_size = if training.log_every > 0 {
        training.log_eval_size.max(1)
    } else {
        1
    };
    let subset = data.splits.valid.take(eval_size);
    let items = (0..subset.len()).filter_map(|i| subset.item(i)).collect();
    let probe = Arc::new(
        StepProbe::new(
            config.data.batcher().batch(items, device),
            training.log_every,
            data.steps_per_epoch,
            training.batch_size,
            options.verbose,
        )
        .with_log(log.clone()),
    );
    if training.log_every > 0 {
        say!(
            options,
            "{} steps per epoch; every {} steps: batch loss and accuracy on the first {} {}",
            data.steps_per_epoch,
            training.log_every,
            probe.eval_size(),
            config.data.validation.images()
        );
    }
    probe
}

/// A checkpoint's model, optimizer and scheduler records decoded, and the probe and early
/// stopping taken back to where it stood.
fn restore(
    found: FoundCheckpoint,
    trainee: Trainee,
    probe: &StepProbe,
    early_stopping_best: Option<&BestSoFar>,
) -> Result<Restored, TrainingError> {
    let FoundCheckpoint { path, contents } = found;
    let unusable = |what: &str, error: burn::store::RecordError| {
        TrainingError::Resume(format!("{}: {what}: {error}", path.display()))
    };
    let trainee = ModuleRecord::from_bytes(contents.model)
        .and_then(|record| trainee.try_load_record(record))
        .map_err(|error| unusable("model.bpk does not fit this model", error))?;
    let optimizer = OptimizerRecord::from_bytes(contents.optimizer)
        .map_err(|error| unusable("optimizer.bpk", error))?;
    let scheduler = LrSchedulerRecord::from_bytes(contents.scheduler)
        .map_err(|error| unusable("scheduler.bpk", error))?;
    let position = contents.position;
    probe.resume(position.global_step, position.step_records.clone());
    if let (Some(best), Some(saved)) = (early_stopping_best, position.early_stopping_best)
        && let Ok(mut best) = best.lock()
    {
        *best = Some(saved);
    }
    Ok(Restored {
        trainee,
        position,
        optimizer,
        scheduler,
        metrics: contents.metrics,
    })
}

/// burn-train's supervised paradigm over the run's loaders, metrics and renderer, with the
/// resumable strategy; `epochs_done` is the epoch burn-train announces first (no checkpointer
/// is registered, so it loads nothing: the records are loaded by [`assemble`]).
fn supervised_training(
    config: &ExperimentConfig,
    data: &TrainingData,
    run: &RunDirectory,
    strategy: ResumableTraining,
    renderer: LineRenderer,
    epochs_done: usize,
) -> SupervisedTraining<Trainee> {
    let training = &config.training;
    let batcher = config.data.batcher();
    let mut train_loader = DataLoaderBuilder::new(batcher.clone())
        .batch_size(training.batch_size)
        .num_workers(config.data.num_workers);
    if training.shuffle {
        train_loader = train_loader.shuffle(training.seed);
    }
    let train_loader = train_loader.build(data.splits.train.clone());
    let valid_loader = DataLoaderBuilder::new(batcher)
        .batch_size(training.eval_batch_size)
        .num_workers(config.data.num_workers)
        .build(data.splits.valid.clone());
    let supervised = SupervisedTraining::new(&run.dir, train_loader, valid_loader)
        .metrics((AccuracyMetric::new(), LossMetric::new()))
        .metric_train_numeric(LearningRateMetric::new())
        .renderer(Box::new(renderer))
        .with_training_strategy(TrainingStrategy::Custom(Arc::new(strategy)))
        .num_epochs(training.epochs);
    match epochs_done {
        0 => supervised,
        epochs_done => supervised.checkpoint(epochs_done),
    }
}

/// Launches burn-train's loop (the epochs run in [`ResumableTraining`]) and, once it returns,
/// turns how it ended into the trained model or the error that says why it did not finish.
pub(super) fn launch(
    config: &ExperimentConfig,
    options: &RunOptions,
    assembled: Assembled,
    run: &RunDirectory,
) -> Result<Trained, TrainingError> {
    let Assembled {
        supervised,
        learner,
        probe,
        log,
        report,
        resumed_metrics,
    } = assembled;
    log.restart_clock();
    if let Some((metrics, elapsed_seconds)) = resumed_metrics {
        log.resume(metrics, elapsed_seconds);
    }
    let started = Instant::now();
    let result = supervised.launch(learner);
    let seconds = started.elapsed().as_secs_f64();
    let report = std::mem::take(
        &mut *report
            .lock()
            .map_err(|_| TrainingError::Learner("the training loop panicked".to_string()))?,
    );
    check_ending(config, options, &result, report, &probe, run)?;
    Ok(Trained {
        trainee: result.model,
        probe,
        log,
        seconds,
    })
}

/// Why the loop ended, in order of precedence: a checkpoint that could not be written, the
/// learner's error, a NaN loss, a stop asked for, an interruption; early stopping is said and
/// is not an error.
fn check_ending(
    config: &ExperimentConfig,
    options: &RunOptions,
    result: &LearningResult<Trainee>,
    report: LoopReport,
    probe: &StepProbe,
    run: &RunDirectory,
) -> Result<(), TrainingError> {
    let store_dir = run.store.dir().to_path_buf();
    if let Some(error) = report.checkpoint_error {
        return Err(TrainingError::Checkpoint(format!(
            "{error}; training stopped there{}",
            match &report.last_checkpoint {
                Some(path) => format!("; the newest complete checkpoint is {}", path.display()),
                None => String::new(),
            }
        )));
    }
    if let Some(error) = &result.error {
        return Err(TrainingError::Learner(error.to_string()));
    }
    if let Some(found) = probe.non_finite() {
        return Err(TrainingError::NonFiniteLoss {
            epoch: found.epoch,
            step: found.step,
            global_step: found.global_step,
            value: found.value,
            checkpoints: store_dir,
        });
    }
    if let Some(step) = report.stopped_at_step {
        return Err(TrainingError::Interrupted {
            step,
            checkpoint: report.last_checkpoint.unwrap_or(store_dir),
        });
    }
    if let Some(epoch) = report.stopped_early_after {
        let stopping = &config.early_stopping;
        say!(
            options,
            "early stopping after epoch {epoch}: validation {:?} did not improve by more than {} \
             for {} epoch(s)",
            stopping.metric,
            stopping.min_delta,
            stopping.patience
        );
    }
    if let Some(interruption) = &result.interrupted {
        return Err(TrainingError::Learner(format!(
            "interrupted before the last epoch: {interruption:?}"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::setup::load_data;

    /// With a held-out split the probe classifies held-out images, never test images: 30 are
    /// held out, and the test split has 100.
    #[test]
    fn the_probe_reads_the_validation_split() {
        let dir = tempfile::tempdir().unwrap();
        data::write_synthetic_mnist(dir.path(), 200, 100, 7, false).unwrap();
        let probe_size = |validation: &str| {
            let config = ExperimentConfig::default()
                .with_overrides(&[
                    format!("data.dir={}", dir.path().display()),
                    format!("data.validation={validation}"),
                    "data.holdout=30".into(),
                    "training.log_every=5".into(),
                    "training.log_eval_size=100".into(),
                ])
                .unwrap();
            let options = RunOptions::default();
            let data = load_data(&config, &options).unwrap();
            let log = Arc::new(MetricsLog::default());
            step_probe(&config, &options, &Device::default(), &data, &log).eval_size()
        };
        assert_eq!(probe_size("holdout"), 30);
        assert_eq!(probe_size("test"), 100);
    }
}
