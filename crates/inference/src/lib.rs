//! Inference with a trained run of the LSTM classifier, without burn-train: the device among the
//! backends compiled in, the run's model loaded once, pictures framed as MNIST digits, a batched
//! forward pass, and evaluation over a dataset. `eval`, `predict` and `serve` all go through it;
//! training uses its device choice and evaluation too.

mod decode;
mod device;
mod error;
mod evaluate;
mod frame;
mod predictor;
mod run;

pub use decode::{Cancel, MAX_IMAGE_PIXELS, MAX_IMAGE_SIDE, STOPPED};
pub use device::{BURN_DEVICE_ENV, BackendKind, SelectedDevice, WGPU_API_ENV, select_device};
pub use error::InferenceError;
pub use evaluate::{EvaluationReport, evaluate};
pub use frame::{
    decode_digit, digit_from_bytes, idx_digit, load_digit, prepare_grey, prepare_image,
};
/// The loss training minimises (the model crate's).
pub use model::cross_entropy;
pub use predictor::{Prediction, Predictor};
pub use run::{CONFIG_FILE, EVALUATION_FILE, MODEL_CONFIG_FILE, MODEL_FILE, TrainedRun};
