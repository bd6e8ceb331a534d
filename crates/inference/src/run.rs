//! A finished training run read back for inference: its model (`model.json`, `model.bpk`) and
//! the part of its configuration inference needs (`config.toml`'s `[data]`: the data set, so
//! the class names, and the pixel scaling).

use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::tensor::Device;
use data::{DataSection, DatasetKind, MnistBatcher};
use model::{LstmClassifier, LstmClassifierConfig};
use serde::Deserialize;

use crate::InferenceError;

/// The resolved configuration of a run, in its directory.
pub const CONFIG_FILE: &str = "config.toml";
/// The trained weights of a run, in its directory.
pub const MODEL_FILE: &str = "model.bpk";
/// The model's hyper-parameters as JSON (`LstmClassifierConfig::from_file` reads it), in the
/// run directory: with `model.bpk`, all another program needs to rebuild the classifier.
pub const MODEL_CONFIG_FILE: &str = "model.json";
/// The final test evaluation of a run, in its directory.
pub const EVALUATION_FILE: &str = "evaluation.txt";

/// `config.toml` as inference reads it: only `[data]`; the training sections are not its
/// business and are left unread.
#[derive(Deserialize)]
struct RunConfigFile {
    #[serde(default)]
    data: DataSection,
}

/// A finished run's classifier on a device, with what framing and naming its answers need.
#[derive(Debug)]
pub struct TrainedRun {
    /// The run directory.
    pub dir: PathBuf,
    /// The classifier's hyper-parameters (`model.json`).
    pub model_config: LstmClassifierConfig,
    /// The run's `[data]` section.
    pub data: DataSection,
    /// The trained classifier (`model.bpk`), in inference mode.
    pub classifier: LstmClassifier,
    /// The device it is on.
    pub device: Device,
}

impl TrainedRun {
    /// Loads the run in `dir` on `device`; a missing file is an error saying what the
    /// directory should be.
    pub fn load(dir: &Path, device: &Device) -> Result<Self, InferenceError> {
        let config_path = dir.join(CONFIG_FILE);
        let model_config_path = dir.join(MODEL_CONFIG_FILE);
        let model_path = dir.join(MODEL_FILE);
        for path in [&config_path, &model_config_path, &model_path] {
            if !path.is_file() {
                return Err(InferenceError::MissingArtifact(format!(
                    "{} not found: is {} the directory of a finished `train` run?",
                    path.display(),
                    dir.display()
                )));
            }
        }
        let data = read_data_section(&config_path)?;
        let model_config = LstmClassifierConfig::from_file(&model_config_path)?;
        let sequence = data.sequence;
        if model_config.input_size != sequence.features() {
            return Err(InferenceError::Config {
                origin: model_config_path.display().to_string(),
                message: format!(
                    "input_size = {} does not fit data.sequence = \"{sequence}\" of {}, which \
                     gives {} values per step",
                    model_config.input_size,
                    config_path.display(),
                    sequence.features()
                ),
            });
        }
        let classifier = model_config.load(&model_path, device)?.valid();
        Ok(Self {
            dir: dir.to_path_buf(),
            model_config,
            data,
            classifier,
            device: device.clone(),
        })
    }

    /// The data set the run was trained on.
    pub fn dataset(&self) -> DatasetKind {
        self.data.dataset.kind()
    }

    /// The batcher that scales pixels as the run's training did.
    pub fn batcher(&self) -> MnistBatcher {
        self.data.batcher()
    }

    /// The path of the run's weights.
    pub fn model_path(&self) -> PathBuf {
        self.dir.join(MODEL_FILE)
    }
}

fn read_data_section(path: &Path) -> Result<DataSection, InferenceError> {
    let text = std::fs::read_to_string(path).map_err(|source| InferenceError::Io {
        what: format!("cannot read {}", path.display()),
        source,
    })?;
    let file: RunConfigFile = toml::from_str(&text).map_err(|error| InferenceError::Config {
        origin: path.display().to_string(),
        message: error.message().replace('\n', " "),
    })?;
    Ok(file.data)
}
