//! Training and evaluation of the LSTM classifier with burn-train: configuration, device
//! selection, the learner, checkpoints and the run directory.
//!
//! Loading a finished run, framing images, predicting and evaluating live in the `inference`
//! crate (no burn-train); what of it training and the CLI use is re-exported here.

mod atomic;
mod bench;
mod checkpoint;
mod config;
mod curves;
mod error;
mod memory;
mod metrics_log;
mod reading;
mod renderer;
mod run;
mod schedule;
mod trainee;
mod training_loop;

pub use bench::{BenchOptions, BenchReport, bench, peak_rss_bytes};
pub use checkpoint::{CHECKPOINT_DIR, FAULT_ENV};
pub use config::{
    DataSection, DatasetName, EarlyStoppingSection, ExperimentConfig, OptimizerSection,
    ScheduleKind, ScheduleSection, StoppingMetric, TrainingSection, ValidationSource,
    check_untrusted_config,
};
pub use curves::{
    ACCURACY_CURVE, CONFUSION_IMAGE, CONFUSION_SIZE, CURVE_SIZE, LOSS_CURVE,
    write_confusion_matrix, write_curves,
};
pub use error::TrainingError;
pub use inference::{
    BURN_DEVICE_ENV, BackendKind, CONFIG_FILE, EVALUATION_FILE, EvaluationReport, InferenceError,
    MODEL_CONFIG_FILE, MODEL_FILE, Prediction, Predictor, SelectedDevice, TrainedRun, WGPU_API_ENV,
    digit_from_bytes, evaluate, idx_digit, load_digit, prepare_grey, prepare_image, select_device,
};
pub use memory::{MemoryEstimate, check_memory};
pub use metrics_log::{
    METRICS_CSV_HEADER, MetricRow, MetricSplit, MetricsLog, metrics_csv, parse_metrics_csv,
    write_metrics_csv,
};
pub use reading::{GATES_FIGURE, READING_SIZE, STEPS_FIGURE, write_reading_figures};
pub use renderer::LineRenderer;
pub use run::{
    ARTIFACTS_ROOT, METRICS_FILE, Resume, RunOptions, TrainOutcome, evaluate_run, latest_run,
    train, write_model_run,
};
pub use schedule::{EarlyStopping, lr_scheduler};
pub use trainee::{StepProbe, StepRecord, Trainee, classify};
pub use training_loop::StopRequest;
