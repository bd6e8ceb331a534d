//! Errors of the inference crate.

use std::path::PathBuf;

/// What can go wrong between a run directory and a prediction.
#[derive(Debug, thiserror::Error)]
pub enum InferenceError {
    /// The requested device or backend is not available.
    #[error("device: {0}")]
    Device(String),
    /// A run directory lacks a file inference needs, or holds one it cannot read.
    #[error("{0}")]
    MissingArtifact(String),
    /// The run's `config.toml` cannot be read as a run configuration.
    #[error("{origin}: {message}")]
    Config {
        /// The file.
        origin: String,
        /// What is wrong.
        message: String,
    },
    /// A file could not be read.
    #[error("{what}: {source}")]
    Io {
        /// What was being done, with the path.
        what: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The data could not be read.
    #[error(transparent)]
    Data(#[from] data::DataError),
    /// The model could not be built or loaded.
    #[error(transparent)]
    Model(#[from] model::ModelError),
    /// An image to classify cannot be read, or holds no digit.
    #[error("{}: {message}", path.display())]
    Image {
        /// The image file (or the request part it came from).
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// Input given to a function is not of the expected shape.
    #[error("{0}")]
    InvalidInput(String),
}
