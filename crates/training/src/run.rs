//! A training run from configuration to evaluated model, and the evaluation of a finished run.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use burn::data::dataloader::DataLoaderBuilder;
use burn::data::dataloader::batcher::Batcher;
use burn::lr_scheduler::LrSchedulerRecord;
use burn::module::Module;
use burn::optim::OptimizerRecord;
use burn::store::ModuleRecord;
use burn::tensor::Device;
use burn::train::metric::{AccuracyMetric, LearningRateMetric, LossMetric};
use burn::train::{Learner, SupervisedTraining, TrainingStrategy};
use data::{
    Fetch, MnistFiles, MnistSplits, SplitOptions, locate_or_download, standard_candidates,
    verify_files,
};
use model::LstmPath;

use crate::TrainingError;
use crate::atomic::write_atomically;
use crate::checkpoint::{CHECKPOINT_DIR, CheckpointStore, FoundCheckpoint, RunPosition};
use crate::config::ExperimentConfig;
use crate::curves::{write_confusion_matrix, write_curves};
use crate::device::{SelectedDevice, select_device};
use crate::error::io_error;
use crate::evaluate::{EvaluationReport, evaluate};
use crate::metrics_log::{MetricRow, MetricSplit, MetricsLog, write_metrics_csv};
use crate::renderer::LineRenderer;
use crate::schedule::{EarlyStopping, lr_scheduler};
use crate::trainee::{StepProbe, StepRecord, Trainee};
use crate::training_loop::{LoopReport, ResumableTraining, StopRequest};

/// Where runs go when neither `--artifacts` nor `training.artifacts` says otherwise.
pub const ARTIFACTS_ROOT: &str = "artifacts";
/// The resolved configuration of a run, in its directory.
pub const CONFIG_FILE: &str = "config.toml";
/// The trained weights of a run, in its directory.
pub const MODEL_FILE: &str = "model.bpk";
/// The final test evaluation of a run, in its directory.
pub const EVALUATION_FILE: &str = "evaluation.txt";
/// The model's hyper-parameters as JSON (`LstmClassifierConfig::from_file` reads it), in the
/// run directory: with `model.bpk`, all another program needs to rebuild the classifier.
pub const MODEL_CONFIG_FILE: &str = "model.json";
/// Every step's and epoch's metrics as CSV, in the run directory.
pub const METRICS_FILE: &str = "metrics.csv";

/// Files and directories a run writes (and `eval` adds); removed before a new run in the same
/// directory so nothing from an older run is mistaken for this one's.
const RUN_OUTPUTS: [&str; 15] = [
    CONFIG_FILE,
    MODEL_FILE,
    MODEL_CONFIG_FILE,
    EVALUATION_FILE,
    METRICS_FILE,
    "loss.svg",
    "loss.png",
    "accuracy.svg",
    "accuracy.png",
    "confusion.svg",
    "confusion.png",
    "experiment.log",
    CHECKPOINT_DIR,
    "train",
    "valid",
];

/// Command-line choices that sit beside the configuration.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Name of the configuration (its file stem), for the default run directory.
    pub config_name: Option<String>,
    /// `--data-dir`: the only place to look for data when given.
    pub data_dir: Option<PathBuf>,
    /// `--artifacts`: the run directory.
    pub artifacts: Option<PathBuf>,
    /// `--device`: the backend, when several are compiled in.
    pub device: Option<String>,
    /// `--offline`: never download missing data (also `MNIST_LSTM_OFFLINE=1`).
    pub offline: bool,
    /// Print progress lines (the CLI does; tests may not).
    pub verbose: bool,
    /// `--resume`: go on from a checkpoint of the run directory instead of starting afresh.
    pub resume: Option<Resume>,
    /// Set (by a Ctrl-C handler) to stop after the step under way, with a checkpoint.
    pub stop: StopRequest,
}

/// Which checkpoint `--resume` goes on from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resume {
    /// The newest complete checkpoint of this configuration in the run directory; what cannot
    /// be used is skipped with a warning.
    Latest,
    /// This checkpoint directory (`<run>/checkpoint/step-N`).
    From(PathBuf),
}

/// What a finished run produced.
#[derive(Debug, Clone)]
pub struct TrainOutcome {
    /// The run directory.
    pub run_dir: PathBuf,
    /// The step lines logged during training.
    pub steps: Vec<StepRecord>,
    /// The final evaluation on the test split.
    pub test: EvaluationReport,
    /// Seconds spent in burn-train's learner (training and validation).
    pub training_seconds: f64,
    /// Training images per epoch.
    pub train_images: usize,
    /// Every row written to `metrics.csv`.
    pub metrics: Vec<MetricRow>,
    /// Seconds spent writing `metrics.csv` and drawing the curves.
    pub plotting_seconds: f64,
}

macro_rules! say {
    ($options:expr, $($arg:tt)*) => {
        if $options.verbose {
            println!($($arg)*);
        }
    };
}

/// Trains the model `config` describes, saves it with its configuration and checkpoints, and
/// evaluates it on the test split.
pub fn train(
    config: &ExperimentConfig,
    options: &RunOptions,
) -> Result<TrainOutcome, TrainingError> {
    config.validate()?;
    let device = open_device(options)?;
    say!(options, "lstm: {}", lstm_path_line(config, &device));

    let dataset = config.data.dataset.kind();
    let files = find_files(config, options)?;
    let splits = MnistSplits::load(&files, &config.data.split_options())?;
    if config.training.batch_size > splits.train.len() {
        return Err(TrainingError::Config {
            origin: "configuration".to_string(),
            message: format!(
                "training.batch_size ({}) is larger than the {} training images: lower it, or \
                 raise or remove data.train_limit",
                config.training.batch_size,
                splits.train.len()
            ),
        });
    }
    let data_dir = data_dir_of(&files);
    say!(
        options,
        "data: {dataset} in {} (train {}, validation {}, test {})",
        data_dir.display(),
        splits.train.len(),
        splits.valid.len(),
        splits.test.len()
    );

    let run_dir = run_dir(config, options);
    let training = &config.training;
    let steps_per_epoch = splits.train.len().div_ceil(training.batch_size);
    let store = CheckpointStore::new(
        &run_dir,
        config.checkpoint_identity(),
        training.keep_checkpoints,
    );
    let resumed = match &options.resume {
        Some(resume) => Some(find_checkpoint(&store, resume, steps_per_epoch, options)?),
        None => {
            prepare_run_dir(&run_dir)?;
            None
        }
    };
    let mut resolved = config.clone();
    resolved.data.dir = Some(data_dir);
    resolved.training.artifacts = Some(run_dir.clone());
    write_file(&run_dir.join(CONFIG_FILE), &resolved.to_toml())?;
    say!(options, "run directory: {}", run_dir.display());

    let batcher = config.data.batcher();
    device.seed(training.seed);
    let classifier = config
        .model
        .to_model_config()
        .init(&device.clone().autodiff());

    let log = Arc::new(MetricsLog::new());
    // Always present: besides the step lines, it watches every loss for NaN.
    let probe = {
        let eval_size = if training.log_every > 0 {
            training.log_eval_size.max(1)
        } else {
            1
        };
        let subset = splits.test.take(eval_size);
        let items = (0..subset.len()).filter_map(|i| subset.item(i)).collect();
        Arc::new(
            StepProbe::new(
                batcher.batch(items, &device),
                training.log_every,
                steps_per_epoch,
                training.batch_size,
                options.verbose,
            )
            .with_log(log.clone()),
        )
    };
    if training.log_every > 0 {
        say!(
            options,
            "{} steps per epoch; every {} steps: batch loss and accuracy on the first {} test images",
            steps_per_epoch,
            training.log_every,
            probe.eval_size()
        );
    }

    let mut train_loader = DataLoaderBuilder::new(batcher)
        .batch_size(training.batch_size)
        .num_workers(config.data.num_workers);
    if training.shuffle {
        train_loader = train_loader.shuffle(training.seed);
    }
    let train_loader = train_loader.build(splits.train.clone());
    let valid_loader = DataLoaderBuilder::new(batcher)
        .batch_size(training.eval_batch_size)
        .num_workers(config.data.num_workers)
        .build(splits.valid.clone());

    let total_steps = training.epochs * steps_per_epoch;
    let early_stopping = EarlyStopping::from_config(&config.early_stopping);
    let early_stopping_best = early_stopping.as_ref().map(EarlyStopping::best);
    let report = Arc::new(std::sync::Mutex::new(LoopReport::default()));
    let mut trainee = Trainee::new(classifier, Some(probe.clone()));
    // Where a resumed run stands, and the learner's records and the metrics to take up.
    let (start, records) = match resumed {
        Some(FoundCheckpoint { path, contents }) => {
            let unusable = |what: &str, error: burn::store::RecordError| {
                TrainingError::Resume(format!("{}: {what}: {error}", path.display()))
            };
            let model = ModuleRecord::from_bytes(contents.model)
                .and_then(|record| trainee.try_load_record(record))
                .map_err(|error| unusable("model.bpk does not fit this model", error))?;
            trainee = model;
            let optimizer = OptimizerRecord::from_bytes(contents.optimizer)
                .map_err(|error| unusable("optimizer.bpk", error))?;
            let scheduler = LrSchedulerRecord::from_bytes(contents.scheduler)
                .map_err(|error| unusable("scheduler.bpk", error))?;
            let position = contents.position;
            probe.resume(position.global_step, position.step_records.clone());
            if let (Some(best), Some(saved)) = (&early_stopping_best, position.early_stopping_best)
                && let Ok(mut best) = best.lock()
            {
                *best = Some(saved);
            }
            (
                Some(position),
                Some((optimizer, scheduler, contents.metrics)),
            )
        }
        None => (None, None),
    };
    let steps_done = start.as_ref().map_or(0, |position| position.global_step);
    let epochs_done = start.as_ref().map_or(0, RunPosition::epochs_done);
    let elapsed_before = start
        .as_ref()
        .map_or(0.0, |position| position.elapsed_seconds);
    let strategy = ResumableTraining {
        device: device.clone().autodiff(),
        base_device: device.clone(),
        seed: training.seed,
        steps_per_epoch,
        checkpoint_every: training.checkpoint_every,
        store: store.clone(),
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
    let supervised = SupervisedTraining::new(&run_dir, train_loader, valid_loader)
        .metrics((AccuracyMetric::new(), LossMetric::new()))
        .metric_train_numeric(LearningRateMetric::new())
        .renderer(Box::new(renderer))
        .with_training_strategy(TrainingStrategy::Custom(Arc::new(strategy)))
        .num_epochs(training.epochs);
    // The epoch burn-train announces (and the renderer numbers from). No checkpointer is
    // registered, so it loads nothing: the records were loaded above.
    let supervised = match epochs_done {
        0 => supervised,
        epochs_done => supervised.checkpoint(epochs_done),
    };
    let supervised = match early_stopping {
        Some(strategy) => supervised.early_stopping(strategy),
        None => supervised,
    };
    probe.stop_on_non_finite(supervised.interrupter());
    let mut learner = Learner::new(
        trainee,
        config.optimizer.adam().init(),
        lr_scheduler(config, total_steps)?,
    );

    log.restart_clock();
    if let Some((optimizer, scheduler, metrics)) = records {
        learner.load_optim(optimizer);
        learner.load_scheduler(scheduler);
        log.resume(metrics, elapsed_before);
    }
    let started = Instant::now();
    let result = supervised.launch(learner);
    let training_seconds = started.elapsed().as_secs_f64();
    let report = std::mem::take(
        &mut *report
            .lock()
            .map_err(|_| TrainingError::Learner("the training loop panicked".to_string()))?,
    );
    if let Some(error) = report.checkpoint_error {
        return Err(TrainingError::Checkpoint(format!(
            "{error}; training stopped there{}",
            match &report.last_checkpoint {
                Some(path) => format!("; the newest complete checkpoint is {}", path.display()),
                None => String::new(),
            }
        )));
    }
    if let Some(error) = result.error {
        return Err(TrainingError::Learner(error.to_string()));
    }
    if let Some(found) = probe.non_finite() {
        return Err(TrainingError::NonFiniteLoss {
            epoch: found.epoch,
            step: found.step,
            global_step: found.global_step,
            value: found.value,
            checkpoints: store.dir().to_path_buf(),
        });
    }
    if let Some(step) = report.stopped_at_step {
        return Err(TrainingError::Interrupted {
            step,
            checkpoint: report
                .last_checkpoint
                .unwrap_or_else(|| store.dir().to_path_buf()),
        });
    }
    if let Some(epoch) = report.stopped_early_after {
        say!(
            options,
            "early stopping after epoch {epoch}: validation {:?} did not improve by more than {} \
             for {} epoch(s)",
            config.early_stopping.metric,
            config.early_stopping.min_delta,
            config.early_stopping.patience
        );
    }
    if let Some(interruption) = result.interrupted {
        return Err(TrainingError::Learner(format!(
            "interrupted before the last epoch: {interruption:?}"
        )));
    }
    let classifier = result.model.classifier;
    classifier.clone().save(run_dir.join(MODEL_FILE))?;
    write_file(
        &run_dir.join(MODEL_CONFIG_FILE),
        &burn::config::config_to_json(&config.model.to_model_config()),
    )?;
    let images = splits.train.len() * training.epochs;
    say!(
        options,
        "trained {} epoch(s) in {:.1} s ({:.0} images/s including validation); model saved to {}",
        training.epochs,
        training_seconds,
        images as f64 / training_seconds.max(1e-9),
        run_dir.join(MODEL_FILE).display()
    );

    let test = evaluate(
        &classifier,
        &splits.test,
        &batcher,
        &device,
        training.eval_batch_size,
        &dataset.class_names(),
    );
    write_file(&run_dir.join(EVALUATION_FILE), &format!("{test}\n"))?;
    say!(
        options,
        "final test accuracy: {:.2}% on {} images (loss {:.4})",
        100.0 * test.accuracy(),
        test.count(),
        test.loss
    );

    log.push(
        total_steps,
        training.epochs,
        MetricSplit::Test,
        Some(test.loss),
        Some(test.accuracy()),
        None,
    );
    let plotting = Instant::now();
    let metrics = log.rows();
    write_metrics_csv(&run_dir.join(METRICS_FILE), &metrics)?;
    let curves = write_curves(&metrics, &run_dir)?;
    let plotting_seconds = plotting.elapsed().as_secs_f64();
    say!(
        options,
        "metrics: {} ({} rows); curves: {} ({:.2} s)",
        run_dir.join(METRICS_FILE).display(),
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
        run_dir,
        steps: probe.records(),
        test,
        training_seconds,
        train_images: splits.train.len(),
        metrics,
        plotting_seconds,
    })
}

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

/// The device `options` ask for, announced.
pub(crate) fn open_device(options: &RunOptions) -> Result<Device, TrainingError> {
    let SelectedDevice {
        device,
        description,
        ..
    } = select_device(options.device.as_deref())?;
    say!(options, "backend: {description}");
    Ok(device)
}

/// Which computation the model's LSTM runs on `device`, and why where it is not the kernel.
pub(crate) fn lstm_path_line(config: &ExperimentConfig, device: &Device) -> String {
    let model = &config.model;
    match model.to_model_config().lstm_path(device) {
        LstmPath::Kernel => "kernel (one whole-sequence operation per layer and direction)".into(),
        LstmPath::Reference => "reference (Burn's nn::Lstm, model.fused = false)".into(),
        LstmPath::TensorOps if !model.kernel => {
            "tensor-ops (the fused maths in tensor operations, model.kernel = false)".into()
        }
        LstmPath::TensorOps => format!(
            "tensor-ops (no LSTM kernel for hidden_size = {} on this backend: on a GPU, one \
             batch row's state must fit a cube's shared memory)",
            model.hidden_size
        ),
    }
}

/// The files of the configured data set, where `options` and the configuration say to look.
pub(crate) fn find_files(
    config: &ExperimentConfig,
    options: &RunOptions,
) -> Result<MnistFiles, TrainingError> {
    let dataset = config.data.dataset.kind();
    let candidates =
        standard_candidates(dataset, options.data_dir.clone(), config.data.dir.clone());
    let fetch = Fetch::standard(dataset, options.data_dir.is_some(), options.offline);
    let files = locate_or_download(dataset, &candidates, &fetch)?;
    // Not an error: a subset or a modified copy is a legitimate choice; it is said, though,
    // since results on it are not comparable with published ones.
    let checks = verify_files(dataset, &files).map_err(data::DataError::from)?;
    let differing: Vec<_> = checks.iter().filter(|check| !check.is_verified()).collect();
    if differing.is_empty() {
        say!(
            options,
            "data: {dataset} in {}, SHA-256 of all four files verified",
            data_dir_of(&files).display()
        );
    } else {
        // On standard output with the rest of the run's log: standard error is kept for the
        // one line that says why a command failed.
        for check in differing {
            say!(options, "data: warning: {check}");
        }
    }
    Ok(files)
}

/// The checkpoint `resume` names, checked against this run; warnings are printed.
fn find_checkpoint(
    store: &CheckpointStore,
    resume: &Resume,
    steps_per_epoch: usize,
    options: &RunOptions,
) -> Result<FoundCheckpoint, TrainingError> {
    let mut warnings = Vec::new();
    let found = match resume {
        Resume::Latest => store.latest(&mut warnings),
        Resume::From(path) => store.open(path),
    };
    for warning in &warnings {
        say!(options, "resume: warning: {warning}");
    }
    let found = found?;
    let position = &found.contents.position;
    if position.steps_per_epoch != steps_per_epoch {
        return Err(TrainingError::Resume(format!(
            "{}: written with {} steps per epoch, this run has {steps_per_epoch}",
            found.path.display(),
            position.steps_per_epoch
        )));
    }
    say!(
        options,
        "resuming from {}: {} step(s) done (epoch {}, step {} of {steps_per_epoch})",
        found.path.display(),
        position.global_step,
        position.epochs_done() + 1,
        position.steps_into_epoch()
    );
    Ok(found)
}

fn run_dir(config: &ExperimentConfig, options: &RunOptions) -> PathBuf {
    options
        .artifacts
        .clone()
        .or_else(|| config.training.artifacts.clone())
        .unwrap_or_else(|| {
            Path::new(ARTIFACTS_ROOT).join(options.config_name.as_deref().unwrap_or("run"))
        })
}

pub(crate) fn data_dir_of(files: &MnistFiles) -> PathBuf {
    let dir = files
        .train_images
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    std::fs::canonicalize(&dir).unwrap_or(dir)
}

fn prepare_run_dir(run_dir: &Path) -> Result<(), TrainingError> {
    std::fs::create_dir_all(run_dir).map_err(io_error(format!(
        "cannot create run directory {}",
        run_dir.display()
    )))?;
    for name in RUN_OUTPUTS {
        let path = run_dir.join(name);
        let removed = if path.is_dir() {
            std::fs::remove_dir_all(&path)
        } else if path.exists() {
            std::fs::remove_file(&path)
        } else {
            Ok(())
        };
        removed.map_err(io_error(format!(
            "cannot remove {} left by an earlier run",
            path.display()
        )))?;
    }
    Ok(())
}

fn write_file(path: &Path, contents: &str) -> Result<(), TrainingError> {
    write_atomically(path, contents.as_bytes())
}
