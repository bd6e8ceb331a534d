//! An LSTM classifier for images read as sequences: a 28x28 MNIST digit becomes 28 time steps of
//! 28 pixels, the LSTM reads the rows top to bottom, and a linear head turns the output of the
//! last time step into class logits.
//!
//! The classifier is a composition: the recurrent layer of the `fused-rnn` crate (PyTorch's
//! `nn.LSTM`, each layer and direction one fused operation) read at its last step, and a linear
//! head. The crate enables no backend by default: the application that uses it picks one (flex,
//! ndarray, wgpu, ...) and passes the matching [`Device`]. Its features `flex`, `ndarray` and
//! `wgpu` add that backend's LSTM kernel (`fused-rnn`'s features of the same names); without
//! them the same maths runs in Burn tensor operations. [`LstmClassifier::lstm_path`] says which
//! runs.
//!
//! ```
//! use burn::tensor::{Device, Tensor};
//! use model::LstmClassifierConfig;
//!
//! // Any backend compiled into the application; the default one here.
//! let device = Device::default();
//! let classifier = LstmClassifierConfig::new().init(&device);
//! let images = Tensor::<3>::zeros([2, 28, 28], &device);
//! let logits = classifier.forward(images);
//! assert_eq!(logits.dims(), [2, 10]);
//! ```
//!
//! A model trained by `mnist-lstm train` is rebuilt from two files of its run directory:
//! `model.json` (the [`LstmClassifierConfig`]) and `model.bpk` (the weights). The crate's
//! example `classify` does it end to end (`cargo run -p model --example classify -- RUN_DIR`).
//!
//! ```no_run
//! use burn::tensor::{Device, Tensor};
//! use model::LstmClassifierConfig;
//!
//! let device = Device::default();
//! let config = LstmClassifierConfig::from_file("artifacts/default/model.json")?;
//! let classifier = config.load("artifacts/default/model.bpk", &device)?;
//! let images = Tensor::<3>::zeros([1, 28, 28], &device); // 28 rows of 28 pixels in [0, 1]
//! let probabilities = classifier.probabilities(images); // [1, 10]
//! # Ok::<(), model::ModelError>(())
//! ```
#![warn(missing_docs)]

mod legacy;

use std::path::Path;

use burn::config::{Config, ConfigError};
use burn::module::{Module, ModuleMapper, Param};
use burn::nn::{Linear, LinearConfig};
use burn::store::RecordError;
use burn::tensor::{Device, Tensor};
pub use fused_rnn::{self, Cell, Fallback, Lstm, LstmConfig, LstmPath, cross_entropy};

/// How a classifier's answer formed over one sequence ([`LstmClassifier::reading_trace`]).
#[derive(Debug, Clone, PartialEq)]
pub struct ReadingTrace {
    /// `[steps][classes]`: after each step, the class probabilities were the sequence to stop
    /// there.
    pub probabilities: Vec<Vec<f32>>,
    /// The top layer's left-to-right gates and cell state.
    pub gates: GateTrace,
}

/// One LSTM direction's gates and cell state at every step, `[steps][hidden]` each.
#[derive(Debug, Clone, PartialEq)]
pub struct GateTrace {
    /// The layer, from 0 at the input.
    pub layer: usize,
    /// The input gate `i_t`, in (0, 1).
    pub input_gate: Vec<Vec<f32>>,
    /// The forget gate `f_t`, in (0, 1).
    pub forget_gate: Vec<Vec<f32>>,
    /// The output gate `o_t`, in (0, 1).
    pub output_gate: Vec<Vec<f32>>,
    /// The cell state `c_t`.
    pub cell: Vec<Vec<f32>>,
}

/// A `[rows, columns]` tensor's rows.
fn rows(tensor: Tensor<2>) -> Vec<Vec<f32>> {
    let [_, columns] = tensor.dims();
    let values: Vec<f32> = tensor.into_data().iter::<f32>().collect();
    values.chunks(columns.max(1)).map(<[f32]>::to_vec).collect()
}

/// Hyper-parameters of an [`LstmClassifier`]; the defaults are the tutorial's model (one LSTM layer of
/// 64 units over 28 steps of 28 pixels, ten classes).
#[derive(Config, Debug, PartialEq)]
pub struct LstmClassifierConfig {
    /// Features per time step (pixels per image row).
    #[config(default = 28)]
    pub input_size: usize,
    /// Units in each LSTM layer and direction.
    #[config(default = 64)]
    pub hidden_size: usize,
    /// Stacked LSTM layers; each layer reads the whole output sequence of the one below.
    #[config(default = 1)]
    pub num_layers: usize,
    /// Whether each layer also reads the sequence backwards and concatenates both directions.
    #[config(default = false)]
    pub bidirectional: bool,
    /// Dropout applied to the output of every layer except the last (as PyTorch's `nn.LSTM`).
    #[config(default = 0.0)]
    pub dropout: f64,
    /// Number of output classes.
    #[config(default = 10)]
    pub num_classes: usize,
    /// Run each layer and direction as the whole-sequence kernel where the device has one
    /// (flex, ndarray, wgpu; see [`LstmClassifier::lstm_path`]); `false` keeps the same maths in
    /// Burn tensor operations everywhere, to compare the two.
    #[config(default = true)]
    pub kernel: bool,
    /// Added to the forget gate's bias of every LSTM layer and direction after the usual
    /// initialisation (`bias_ih`, so the gate's total bias is its two drawn biases plus this). A
    /// forget bias of 1 keeps the cell state through the early steps of training (Gers et al.,
    /// 2000; Jozefowicz et al., 2015). 0, the default, leaves the initialisation exactly as
    /// PyTorch's.
    #[config(default = 0.0)]
    pub forget_bias: f64,
    /// Chrono initialisation of the forget and input biases for dependencies up to this many
    /// steps (see [`LstmConfig::chrono_steps`]); 0, the default, is PyTorch's initialisation.
    #[config(default = 0)]
    pub chrono_steps: usize,
    /// The recurrent cell: `lstm` (the default), `gru` or `rnn` (PyTorch's `nn.GRU`, `nn.RNN`
    /// with tanh; see [`LstmConfig::cell`]), with the same layers, directions and dropout.
    #[config(default = "Cell::Lstm")]
    pub cell: Cell,
}

/// What is wrong with an [`LstmClassifierConfig`] or a weights file.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// A hyper-parameter is out of its range.
    #[error("invalid model configuration: {0}")]
    InvalidConfig(String),
    /// The weights file could not be read, or does not fit the configured model.
    #[error("cannot load model weights from {path}: {source}")]
    Load {
        /// The file that was read.
        path: String,
        /// What Burn reported.
        source: RecordError,
    },
    /// A configuration file (JSON, as [`LstmClassifierConfig::to_file`] writes) could not be
    /// read, parsed or written.
    #[error("model configuration {path}: {message}")]
    ConfigFile {
        /// The file that was read or written.
        path: String,
        /// What went wrong.
        message: String,
    },
    /// The weights could not be written.
    #[error("cannot save model weights to {path}: {source}")]
    Save {
        /// The file that was written.
        path: String,
        /// What Burn reported.
        source: RecordError,
    },
}

impl LstmClassifierConfig {
    /// The recurrent layer's configuration.
    pub fn lstm(&self) -> LstmConfig {
        LstmConfig::new(self.input_size, self.hidden_size)
            .with_num_layers(self.num_layers)
            .with_bidirectional(self.bidirectional)
            .with_dropout(self.dropout)
            .with_forget_bias(self.forget_bias)
            .with_chrono_steps(self.chrono_steps)
            .with_kernel(self.kernel)
            .with_cell(self.cell)
    }

    /// Checks that every size is positive, the dropout is a probability and the forget bias is
    /// finite.
    pub fn validate(&self) -> Result<(), ModelError> {
        if self.num_classes == 0 {
            return Err(ModelError::InvalidConfig(
                "num_classes must be at least 1".into(),
            ));
        }
        self.lstm()
            .validate()
            .map_err(|error| ModelError::InvalidConfig(error.to_string()))
    }

    /// Which computation the classifier this configuration builds runs on `device` (as
    /// [`LstmClassifier::lstm_path`] of a model from [`init`](Self::init)), without building it.
    pub fn lstm_path(&self, device: &Device) -> LstmPath {
        self.lstm().path(device)
    }

    /// Builds a classifier with fresh weights on `device`: the LSTM drawn as PyTorch draws
    /// `nn.LSTM`'s (see [`LstmConfig::init`]), the head Kaiming-uniform as `nn.Linear`, so the
    /// tutorial's recipe (Adam 0.01, batch 64) behaves here as it does there.
    ///
    /// # Panics
    /// If the configuration is invalid; call [`validate`](Self::validate) first on values that
    /// come from a user.
    pub fn init(&self, device: &Device) -> LstmClassifier {
        if let Err(error) = self.validate() {
            panic!("{error}");
        }
        let directions = self.lstm().directions();
        LstmClassifier {
            lstm: self.lstm().init(device),
            head: LinearConfig::new(self.hidden_size * directions, self.num_classes).init(device),
        }
    }

    /// Builds a classifier as [`init`](Self::init) does, its weights drawn from `seed`, and seeds
    /// `device` with it (for what the run draws later: dropout). With the `flex` feature the
    /// weights are drawn on Burn's flex CPU backend whatever `device` is, and moved there, so a
    /// seed starts every backend from the same weights: wgpu's generator is another algorithm,
    /// and a draw on it would give a seed weights of its own. The result is on `device`, with
    /// its autodiff context.
    ///
    /// # Panics
    /// As [`init`](Self::init).
    pub fn init_seeded(&self, seed: u64, device: &Device) -> LstmClassifier {
        device.seed(seed);
        match host_device(device) {
            Some(host) => {
                host.seed(seed);
                let host = host.with_autodiff_context_from(device);
                self.init(&host).map(&mut Drawn).fork(device)
            }
            None => self.init(device),
        }
    }

    /// Reads a configuration saved by [`to_file`](Self::to_file) (the `model.json` of a training
    /// run) and checks it.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let path = dir.path().join("model.json");
    /// use model::LstmClassifierConfig;
    ///
    /// let config = LstmClassifierConfig::new().with_hidden_size(32);
    /// config.to_file(&path)?;
    /// assert_eq!(LstmClassifierConfig::from_file(&path)?, config);
    /// # Ok::<(), model::ModelError>(())
    /// ```
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, ModelError> {
        let path = path.as_ref();
        let config_error = |message: String| ModelError::ConfigFile {
            path: path.display().to_string(),
            message,
        };
        let text = std::fs::read_to_string(path).map_err(|e| config_error(e.to_string()))?;
        let text = with_defaults(&text)
            .map_err(|message| config_error(format!("not a model configuration: {message}")))?;
        let config = Self::load_binary(text.as_bytes()).map_err(|e| match e {
            ConfigError::InvalidFormat(message) | ConfigError::FileNotFound(message) => {
                config_error(format!("not a model configuration: {message}"))
            }
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Writes the configuration as JSON (Burn's [`Config`] format), for
    /// [`from_file`](Self::from_file).
    pub fn to_file(&self, path: impl AsRef<Path>) -> Result<(), ModelError> {
        let path = path.as_ref();
        Config::save(self, path).map_err(|e| ModelError::ConfigFile {
            path: path.display().to_string(),
            message: e.to_string(),
        })
    }

    /// Builds a classifier on `device` and loads the weights of a burnpack (`.bpk`) file saved by
    /// [`LstmClassifier::save`] (or by the training crate) for a model of this configuration.
    /// Files written before the classifier kept its LSTM in PyTorch's layout (each gate a Burn
    /// `nn::Lstm` gate controller) load too, as the same model.
    pub fn load(
        &self,
        path: impl AsRef<Path>,
        device: &Device,
    ) -> Result<LstmClassifier, ModelError> {
        self.validate()?;
        let path = path.as_ref();
        let error = match self.init(device).try_load_file(path) {
            Ok(classifier) => return Ok(classifier),
            Err(error) => error,
        };
        legacy::load(self, path, device).map_err(|_| ModelError::Load {
            path: path.display().to_string(),
            source: error,
        })
    }
}

/// The JSON object `text` as a configuration (see [`LstmClassifierConfig::from_fields`]).
fn with_defaults(text: &str) -> Result<String, String> {
    let given: serde_json::Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let serde_json::Value::Object(given) = given else {
        return Err("expected a JSON object".to_string());
    };
    LstmClassifierConfig::merged_fields(given)
}

/// The CPU device the weights of a run on `device` are drawn on: flex's, where it is compiled in
/// and `device` is another.
fn host_device(device: &Device) -> Option<Device> {
    #[cfg(feature = "flex")]
    {
        let host = Device::flex();
        (*device != host).then_some(host)
    }
    #[cfg(not(feature = "flex"))]
    {
        let _ = device;
        None
    }
}

/// Draws every parameter still to be drawn, where it is: moving a module whose parameters are
/// not drawn yet moves only the promise, and they would be drawn on the destination.
struct Drawn;

impl ModuleMapper for Drawn {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        param.map(|tensor| tensor)
    }
}

impl LstmClassifierConfig {
    /// A configuration from the fields `given`, every field it lacks taken from
    /// [`new`](Self::new): a `model.json` written before a field existed (`kernel`,
    /// `forget_bias`) loads as the model it describes, and a `[model]` section names only what
    /// it changes (Burn's `Config` deserialisation requires every field). The field `fused` of
    /// earlier files (a choice between two computations of the same LSTM) is accepted and
    /// ignored. Not checked: call [`validate`](Self::validate).
    ///
    /// # Errors
    /// A field the configuration does not have, or a value of the wrong type.
    pub fn from_fields(given: serde_json::Map<String, serde_json::Value>) -> Result<Self, String> {
        let merged = Self::merged_fields(given)?;
        Self::load_binary(merged.as_bytes()).map_err(|e| match e {
            ConfigError::InvalidFormat(message) | ConfigError::FileNotFound(message) => message,
        })
    }

    /// The JSON text of `given` over the defaults; an error names a field that does not exist.
    fn merged_fields(
        mut given: serde_json::Map<String, serde_json::Value>,
    ) -> Result<String, String> {
        use serde_json::Value;

        given.remove("fused");
        let defaults = burn::config::config_to_json(&Self::new());
        let Ok(Value::Object(mut merged)) = serde_json::from_str::<Value>(&defaults) else {
            return Err("the default configuration is not a JSON object".to_string());
        };
        if let Some(unknown) = given.keys().find(|key| !merged.contains_key(*key)) {
            let mut known: Vec<&str> = merged.keys().map(String::as_str).collect();
            known.sort_unstable();
            return Err(format!(
                "unknown field `{unknown}`, expected one of {}",
                known.join(", ")
            ));
        }
        merged.extend(given);
        Ok(Value::Object(merged).to_string())
    }
}

impl Default for LstmClassifierConfig {
    /// The tutorial's model ([`new`](Self::new)).
    fn default() -> Self {
        Self::new()
    }
}

/// The recurrent layer read at its last step, and a linear head: an image read row by row
/// becomes class logits.
///
/// Build it with [`LstmClassifierConfig::init`] or [`LstmClassifierConfig::load`].
#[derive(Module, Debug)]
pub struct LstmClassifier {
    /// The stacked (optionally bidirectional) recurrent layers: an LSTM, or the GRU or RNN of
    /// [`LstmClassifierConfig::cell`] (the field keeps its name, which saved weights carry).
    pub lstm: Lstm,
    /// Linear map from the last time step's output to class logits.
    pub head: Linear,
}

impl LstmClassifier {
    /// Class logits `[batch, classes]` for sequences `[batch, steps, features]` (for MNIST,
    /// images `[batch, 28, 28]`, one row per step), read from the output of the last time step
    /// as PyTorch's `out[:, -1, :]` does.
    ///
    /// # Panics
    /// If `sequences` has no time step, or its feature count is not the configured `input_size`.
    pub fn forward(&self, sequences: Tensor<3>) -> Tensor<2> {
        self.head
            .forward(self.lstm.forward_last(sequences, None, None))
    }

    /// Which computation [`forward`](Self::forward) runs on `device`, and why.
    pub fn lstm_path(&self, device: &Device) -> LstmPath {
        self.lstm.path(device)
    }

    /// Class probabilities `[batch, classes]` (softmax of [`forward`](Self::forward)).
    pub fn probabilities(&self, sequences: Tensor<3>) -> Tensor<2> {
        burn::tensor::activation::softmax(self.forward(sequences), 1)
    }

    /// How the answer formed as the classifier read `sequence` `[1, steps, features]`: after each
    /// step, the class probabilities it would give were the sequence to stop there (the model run
    /// on every prefix at once, as one batch with lengths 1 to `steps`, so a right-to-left
    /// direction starts at each prefix's own end), and the gates and cell state of the top
    /// layer's left-to-right direction.
    ///
    /// # Panics
    /// If `sequence` is not one sequence of `input_size` features per step, or the cell is not
    /// an LSTM (the gates are an LSTM's).
    pub fn reading_trace(&self, sequence: Tensor<3>) -> ReadingTrace {
        let [batch, steps, _] = sequence.dims();
        assert_eq!(batch, 1, "reading_trace reads one sequence");
        ReadingTrace {
            probabilities: rows(self.prefix_probabilities(sequence.clone())),
            gates: self.top_gates(sequence, steps),
        }
    }

    /// `[steps, classes]`: the probabilities after each prefix of `sequence` `[1, steps, F]`.
    pub fn prefix_probabilities(&self, sequence: Tensor<3>) -> Tensor<2> {
        let [_, steps, _] = sequence.dims();
        let lengths: Vec<usize> = (1..=steps).collect();
        let prefixes = sequence.repeat_dim(0, steps);
        let last = self.lstm.forward_last(prefixes, None, Some(&lengths));
        burn::tensor::activation::softmax(self.head.forward(last), 1)
    }

    /// The top layer's left-to-right gates and cell state over `sequence`.
    fn top_gates(&self, sequence: Tensor<3>, steps: usize) -> GateTrace {
        let top = self.lstm.num_layers - 1;
        let trace = self
            .lstm
            .trace(sequence)
            .into_iter()
            .find(|direction| direction.layer == top && !direction.reverse)
            .expect("every layer has a left-to-right direction");
        let per_step = |tensor: Tensor<3>| {
            let hidden = tensor.dims()[2];
            rows(tensor.reshape([steps, hidden]))
        };
        GateTrace {
            layer: top,
            input_gate: per_step(trace.input_gate),
            forget_gate: per_step(trace.forget_gate),
            output_gate: per_step(trace.output_gate),
            cell: per_step(trace.cell),
        }
    }

    /// Writes the weights to a burnpack file (`.bpk` is added when `path` has no extension).
    pub fn save(self, path: impl AsRef<Path>) -> Result<(), ModelError> {
        let path = path.as_ref();
        self.save_file(path).map_err(|source| ModelError::Save {
            path: path.display().to_string(),
            source,
        })
    }
}
