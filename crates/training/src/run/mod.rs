//! A training run from configuration to evaluated model, and the evaluation of a finished run.

use std::path::PathBuf;

use inference::{CONFIG_FILE, EVALUATION_FILE, MODEL_CONFIG_FILE, MODEL_FILE};

use crate::TrainingError;
use crate::checkpoint::CHECKPOINT_DIR;
use crate::config::ExperimentConfig;
use crate::metrics_log::MetricRow;
use crate::trainee::StepRecord;
use crate::training_loop::StopRequest;
use inference::EvaluationReport;

/// Where runs go when neither `--artifacts` nor `training.artifacts` says otherwise.
pub const ARTIFACTS_ROOT: &str = "artifacts";
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

mod directory;
mod finished;
mod learner;
mod report;
mod setup;

pub use directory::write_model_run;
pub use finished::{evaluate_run, latest_run};
pub(crate) use setup::{data_dir_of, find_files};

/// Trains the model `config` describes, saves it with its configuration and checkpoints, and
/// evaluates it on the test split. Each step is a function of its own, in this order:
/// - [`setup::set_up`]: the configuration checked (ranges, memory), the device opened;
/// - [`setup::load_data`]: the data set found, verified and split;
/// - [`directory::prepare`]: the run directory made ready, and the checkpoint to resume from;
/// - [`learner::assemble`]: the model, loaders, step probe and burn-train's learner, with a
///   checkpoint's records loaded;
/// - [`learner::launch`]: burn-train's loop launched, and why it stopped;
/// - [`report::write_results`]: the model saved, evaluated on the test split, metrics and curves.
pub fn train(
    config: &ExperimentConfig,
    options: &RunOptions,
) -> Result<TrainOutcome, TrainingError> {
    let device = setup::set_up(config, options)?;
    let data = setup::load_data(config, options)?;
    let (run, resumed) = directory::prepare(config, options, &data)?;
    let assembled = learner::assemble(config, options, &device, &data, &run, resumed)?;
    let trained = learner::launch(config, options, assembled, &run)?;
    report::write_results(config, options, &device, &data, &run, trained)
}
