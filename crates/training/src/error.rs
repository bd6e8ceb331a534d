//! Errors of the training crate.

/// What can go wrong between a config file and a trained, evaluated model.
#[derive(Debug, thiserror::Error)]
pub enum TrainingError {
    /// The configuration file or an override is invalid.
    #[error("{origin}: {message}")]
    Config {
        /// The file or `--set` option the problem is in.
        origin: String,
        /// What is wrong, with line and column where known.
        message: String,
    },
    /// The device, a finished run or an image could not be opened (see the inference crate).
    #[error(transparent)]
    Inference(#[from] inference::InferenceError),
    /// The data could not be found or read.
    #[error(transparent)]
    Data(#[from] data::DataError),
    /// The model could not be built, saved or loaded.
    #[error(transparent)]
    Model(#[from] model::ModelError),
    /// A training loss was NaN or infinite; the run stopped there.
    #[error(
        "the training loss became {value} at epoch {epoch}, step {step} (step {global_step} of \
         the run): training stopped, no model was saved; the checkpoints of earlier steps, if \
         any, are in {}. Lower optimizer.learning_rate or set optimizer.grad_clip_norm",
        .checkpoints.display()
    )]
    NonFiniteLoss {
        /// Epoch, from 1.
        epoch: usize,
        /// Step within the epoch, from 1.
        step: usize,
        /// Step since the start, from 1.
        global_step: usize,
        /// The loss.
        value: f32,
        /// The run's checkpoint directory.
        checkpoints: std::path::PathBuf,
    },
    /// A run cannot be resumed: no usable checkpoint, or the one named is unusable.
    #[error("cannot resume: {0}")]
    Resume(String),
    /// A checkpoint could not be written; training stopped there.
    #[error("checkpoint: {0}")]
    Checkpoint(String),
    /// A stop was asked for (Ctrl-C, SIGTERM): the run stopped after a step, checkpointed.
    #[error(
        "training stopped after step {step} as asked; checkpoint {}",
        .checkpoint.display()
    )]
    Interrupted {
        /// Steps done.
        step: usize,
        /// The checkpoint written at that step, to resume from.
        checkpoint: std::path::PathBuf,
    },
    /// Burn's learner stopped with an error.
    #[error("training failed: {0}")]
    Learner(String),
    /// A file of the run directory could not be read or written.
    #[error("{what}: {source}")]
    Io {
        /// What was being done, with the path.
        what: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A curve or the confusion matrix could not be drawn or written.
    #[error("cannot draw {path}: {message}")]
    Plot {
        /// The image file.
        path: String,
        /// What plotters or the PNG encoder reported.
        message: String,
    },
    /// Input given to a function is not of the expected shape.
    #[error("{0}")]
    InvalidInput(String),
}

/// Turns an I/O error into [`TrainingError::Io`] saying `what` was being done:
/// `.map_err(io_error(format!("cannot write {}", path.display())))`.
pub(crate) fn io_error(what: String) -> impl FnOnce(std::io::Error) -> TrainingError {
    move |source| TrainingError::Io { what, source }
}
