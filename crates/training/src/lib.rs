//! Training and evaluation of the LSTM classifier with burn-train: configuration, device
//! selection, the learner, checkpoints and the run directory.

mod config;
mod device;
mod error;
mod evaluate;
mod renderer;
mod run;
mod trainee;

pub use config::{
    DataSection, DatasetName, ExperimentConfig, ModelSection, OptimizerSection, TrainingSection,
    ValidationSource,
};
pub use device::{BURN_DEVICE_ENV, BackendKind, SelectedDevice, WGPU_API_ENV, select_device};
pub use error::TrainingError;
pub use evaluate::{EvaluationReport, evaluate};
pub use renderer::LineRenderer;
pub use run::{
    ARTIFACTS_ROOT, CONFIG_FILE, EVALUATION_FILE, MODEL_FILE, RunOptions, TrainOutcome,
    evaluate_run, latest_run, train,
};
pub use trainee::{StepProbe, StepRecord, Trainee, classify};
