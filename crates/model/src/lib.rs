//! An LSTM classifier for images read as sequences: a 28x28 MNIST digit becomes 28 time steps of
//! 28 pixels, the LSTM reads the rows top to bottom, and a linear head turns the output of the
//! last time step into class logits.
//!
//! The crate enables no backend by default: the application that uses it picks one (flex,
//! ndarray, wgpu, ...) and passes the matching [`Device`]. Its features `flex`, `ndarray` and
//! `wgpu` add, for that backend, the LSTM kernel that [`LstmClassifier::forward_fused`] runs
//! there (one operation per layer with its own backward pass, several times faster than Burn's
//! `nn::Lstm`; on wgpu a CubeCL kernel, one launch over all time steps); without them the same
//! maths runs in Burn tensor operations. [`LstmClassifier::lstm_path`] says which runs.
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

mod fused;
pub use fused::is_standard as is_standard_lstm;
#[cfg(any(feature = "cpu-kernel", feature = "cube"))]
mod kernel;
mod loss;
pub use loss::cross_entropy;

use std::path::Path;

use burn::config::{Config, ConfigError};
use burn::module::Module;
use burn::nn::{Dropout, DropoutConfig, Initializer, Linear, LinearConfig, Lstm, LstmConfig};
use burn::store::RecordError;
use burn::tensor::{Device, Tensor};

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
    /// Run the LSTM layers through the fused path ([`LstmClassifier::forward_fused`]: the same
    /// maths and parameters; on the CPU backends one operation per layer with its own backward
    /// pass, about 6x faster to train than Burn's `nn::Lstm`) rather than `nn::Lstm::forward`.
    /// The two paths differ by float rounding only, which over an epoch of Adam makes a
    /// different run of the same accuracy over seeds (see docs/performance.md).
    #[config(default = true)]
    pub fused: bool,
    /// On the fused path, run each layer and direction as the whole-sequence kernel where the
    /// device has one (flex, ndarray, wgpu; see [`LstmClassifier::lstm_path`]); `false`
    /// keeps the fused maths in Burn tensor operations everywhere, to compare the two.
    #[config(default = true)]
    pub kernel: bool,
    /// Added to the forget gate's bias of every LSTM layer and direction after the usual
    /// initialisation (the input transform's bias, so the gate's total bias is its two drawn
    /// biases plus this). A forget bias of 1 keeps the cell state through the early steps of
    /// training (Gers et al., 2000; Jozefowicz et al., 2015). 0, the default, leaves the
    /// initialisation exactly as PyTorch's.
    #[config(default = 0.0)]
    pub forget_bias: f64,
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
    /// Checks that every size is positive, the dropout is a probability and the forget bias is
    /// finite.
    pub fn validate(&self) -> Result<(), ModelError> {
        let positive = [
            ("input_size", self.input_size),
            ("hidden_size", self.hidden_size),
            ("num_layers", self.num_layers),
            ("num_classes", self.num_classes),
        ];
        for (name, value) in positive {
            if value == 0 {
                return Err(ModelError::InvalidConfig(format!(
                    "{name} must be at least 1"
                )));
            }
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(ModelError::InvalidConfig(format!(
                "dropout must be in [0, 1), got {}",
                self.dropout
            )));
        }
        if !self.forget_bias.is_finite() {
            return Err(ModelError::InvalidConfig(format!(
                "forget_bias must be a finite number, got {}",
                self.forget_bias
            )));
        }
        Ok(())
    }

    /// Which computation the classifier this configuration builds runs on `device` (as
    /// [`LstmClassifier::lstm_path`] of a model from [`init`](Self::init)), without building it.
    pub fn lstm_path(&self, device: &Device) -> LstmPath {
        if !self.fused {
            LstmPath::Reference
        } else if self.kernel && fused::kernel_runs(device, self.hidden_size) {
            LstmPath::Kernel
        } else {
            LstmPath::TensorOps
        }
    }

    /// Builds a classifier with fresh weights on `device`.
    ///
    /// LSTM weights and biases are drawn from U(-1/sqrt(hidden), 1/sqrt(hidden)) and the head
    /// uses Kaiming-uniform, the same schemes as PyTorch's `nn.LSTM` and `nn.Linear`, so the
    /// tutorial's recipe (Adam 0.01, batch 64) behaves here as it does there. A non-zero
    /// [`forget_bias`](Self::forget_bias) is then added to each forget gate's input-transform
    /// bias (drawing that bias first; with 0 nothing is touched, so the weights are the same as
    /// before the field existed).
    ///
    /// # Panics
    /// If the configuration is invalid; call [`validate`](Self::validate) first on values that
    /// come from a user.
    pub fn init(&self, device: &Device) -> LstmClassifier {
        if let Err(error) = self.validate() {
            panic!("{error}");
        }
        let bound = 1.0 / (self.hidden_size as f64).sqrt();
        let lstm_layer = |d_input: usize, reverse: bool| {
            let lstm = LstmConfig::new(d_input, self.hidden_size, true)
                .with_initializer(Initializer::Uniform {
                    min: -bound,
                    max: bound,
                })
                .with_reverse(reverse)
                .init(device);
            with_forget_bias(lstm, self.forget_bias)
        };
        let directions = if self.bidirectional { 2 } else { 1 };
        let layer_input = |layer: usize| {
            if layer == 0 {
                self.input_size
            } else {
                self.hidden_size * directions
            }
        };
        let forward_layers = (0..self.num_layers)
            .map(|layer| lstm_layer(layer_input(layer), false))
            .collect();
        let backward_layers = if self.bidirectional {
            (0..self.num_layers)
                .map(|layer| lstm_layer(layer_input(layer), true))
                .collect()
        } else {
            Vec::new()
        };
        LstmClassifier {
            forward_layers,
            backward_layers,
            dropout: DropoutConfig::new(self.dropout).init(),
            head: LinearConfig::new(self.hidden_size * directions, self.num_classes).init(device),
            fused: self.fused,
            kernel: self.kernel,
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
    pub fn load(
        &self,
        path: impl AsRef<Path>,
        device: &Device,
    ) -> Result<LstmClassifier, ModelError> {
        self.validate()?;
        let path = path.as_ref();
        self.init(device)
            .try_load_file(path)
            .map_err(|source| ModelError::Load {
                path: path.display().to_string(),
                source,
            })
    }
}

/// The JSON object `text` with every field it lacks taken from [`LstmClassifierConfig::new`], so
/// that a `model.json` written before a field existed (`fused`, `kernel`, `forget_bias`) still loads, as the
/// model it describes: Burn's `Config` deserialisation requires every field.
fn with_defaults(text: &str) -> Result<String, String> {
    use serde_json::Value;

    let given: Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let Value::Object(given) = given else {
        return Err("expected a JSON object".to_string());
    };
    let defaults = burn::config::config_to_json(&LstmClassifierConfig::new());
    let Ok(Value::Object(mut merged)) = serde_json::from_str::<Value>(&defaults) else {
        return Err("the default configuration is not a JSON object".to_string());
    };
    merged.extend(given);
    Ok(Value::Object(merged).to_string())
}

/// `lstm` with `forget_bias` added to its forget gate's input-transform bias; unchanged (its
/// lazily drawn parameters untouched) when `forget_bias` is 0.
fn with_forget_bias(mut lstm: Lstm, forget_bias: f64) -> Lstm {
    if forget_bias == 0.0 {
        return lstm;
    }
    if let Some(gate) = lstm.forget_gate.as_mut() {
        gate.input_transform.bias = gate.input_transform.bias.take().map(|bias| {
            // The sum is a node of the autodiff graph; `detach` makes it a leaf again, which
            // then requires a gradient as the drawn bias did.
            bias.map(|bias| {
                let require_grad = bias.is_require_grad();
                bias.add_scalar(forget_bias)
                    .detach()
                    .set_require_grad(require_grad)
            })
        });
    }
    lstm
}

/// The computation a classifier's LSTM layers run on a device ([`LstmClassifier::lstm_path`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LstmPath {
    /// One whole-sequence operation per layer and direction with its own backward pass: the CPU
    /// kernel on flex and ndarray, the CubeCL kernel on wgpu.
    Kernel,
    /// The fused maths in Burn tensor operations, a dozen per time step.
    TensorOps,
    /// Burn's `nn::Lstm`, unfused.
    Reference,
}

impl LstmPath {
    /// A short name: `kernel`, `tensor-ops` or `reference`.
    pub fn name(self) -> &'static str {
        match self {
            LstmPath::Kernel => "kernel",
            LstmPath::TensorOps => "tensor-ops",
            LstmPath::Reference => "reference",
        }
    }
}

impl std::fmt::Display for LstmPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A stack of (optionally bidirectional) LSTM layers followed by a linear head.
///
/// Build it with [`LstmClassifierConfig::init`] or [`LstmClassifierConfig::load`].
#[derive(Module, Debug)]
pub struct LstmClassifier {
    /// Left-to-right LSTM of each layer, bottom first.
    pub forward_layers: Vec<Lstm>,
    /// Right-to-left LSTM of each layer (empty unless bidirectional).
    pub backward_layers: Vec<Lstm>,
    /// Dropout between stacked layers.
    pub dropout: Dropout,
    /// Linear map from the last time step's output to class logits.
    pub head: Linear,
    /// Whether [`forward`](Self::forward) takes the fused path (the configuration's `fused`).
    #[module(skip)]
    pub fused: bool,
    /// Whether the fused path takes the whole-sequence kernel where the device has one (the
    /// configuration's `kernel`).
    #[module(skip)]
    pub kernel: bool,
}

impl LstmClassifier {
    /// Class logits `[batch, classes]` for sequences `[batch, steps, features]` (for MNIST,
    /// images `[batch, 28, 28]`, one row per step), read from the output of the last time step
    /// as PyTorch's `out[:, -1, :]` does.
    ///
    /// It is [`forward_fused`](Self::forward_fused) when the configuration's `fused` is set,
    /// else [`forward_reference`](Self::forward_reference); both give the same logits and
    /// gradients within float rounding (with dropout between layers, in training, each draws
    /// its own masks).
    ///
    /// # Panics
    /// If `sequences` has no time step, or its feature count is not the configured `input_size`.
    pub fn forward(&self, sequences: Tensor<3>) -> Tensor<2> {
        if self.fused {
            self.fused_forward(sequences, self.kernel)
        } else {
            self.forward_reference(sequences)
        }
    }

    /// The logits of [`forward`](Self::forward) with the LSTM layers' four gates fused into one
    /// matmul per time step, over the same parameters. Only the steps the last time step's output
    /// depends on are computed.
    ///
    /// On a backend this crate was built for (its `flex`, `ndarray` and `wgpu` features),
    /// each layer and direction is one operation with a handwritten backward pass over the whole
    /// sequence; elsewhere, or where the GPU kernel does not take the layers' size, it is
    /// [`forward_fused_tensor_ops`](Self::forward_fused_tensor_ops) ([`lstm_path`](Self::lstm_path)
    /// says which).
    ///
    /// # Panics
    /// If `sequences` has no time step, or its feature count is not the configured `input_size`.
    pub fn forward_fused(&self, sequences: Tensor<3>) -> Tensor<2> {
        self.fused_forward(sequences, true)
    }

    /// [`forward_fused`](Self::forward_fused) written in Burn tensor operations on every backend:
    /// the path GPU backends take, and the one the CPU kernel is checked against.
    ///
    /// # Panics
    /// If `sequences` has no time step, or its feature count is not the configured `input_size`.
    pub fn forward_fused_tensor_ops(&self, sequences: Tensor<3>) -> Tensor<2> {
        self.fused_forward(sequences, false)
    }

    /// Which computation [`forward`](Self::forward) runs on `device`: the whole-sequence kernel,
    /// the fused maths in tensor operations (a backend without the kernel, or layers too large
    /// for the GPU kernel's shared memory), or Burn's `nn::Lstm` (`fused = false`, or a stack
    /// built by hand that the fused path does not reproduce).
    pub fn lstm_path(&self, device: &Device) -> LstmPath {
        if !self.fused || !self.is_fusable() {
            return LstmPath::Reference;
        }
        if self.kernel
            && self
                .forward_layers
                .iter()
                .all(|lstm| fused::kernel_runs(device, lstm.d_hidden))
        {
            LstmPath::Kernel
        } else {
            LstmPath::TensorOps
        }
    }

    /// Whether the layers are a stack `init` makes of standard LSTMs, which the fused path
    /// reproduces. A stack built by hand (the fields are public) may have a right-to-left layer
    /// for some layers only, or none at all.
    fn is_fusable(&self) -> bool {
        let stacked = !self.forward_layers.is_empty()
            && (self.backward_layers.is_empty()
                || self.backward_layers.len() == self.forward_layers.len());
        stacked
            && self
                .forward_layers
                .iter()
                .chain(&self.backward_layers)
                .all(fused::is_standard)
    }

    fn fused_forward(&self, sequences: Tensor<3>, kernel: bool) -> Tensor<2> {
        let [_, steps, features] = sequences.dims();
        assert!(
            steps > 0,
            "the classifier needs sequences of at least one step"
        );
        if !self.is_fusable() {
            return self.forward_reference(sequences);
        }
        let input_size = self.forward_layers[0]
            .input_gate
            .input_transform
            .weight
            .dims()[0];
        assert_eq!(
            features, input_size,
            "the classifier reads {input_size} features per step, got {features}"
        );
        let last_step = fused::last_step_output(
            &self.forward_layers,
            &self.backward_layers,
            &self.dropout,
            sequences,
            kernel,
        );
        self.head.forward(last_step)
    }

    /// The logits of [`forward`](Self::forward) computed the unfused way: each layer and
    /// direction through Burn's `nn::Lstm::forward` (four gate controllers, eight matmuls per
    /// time step, every step of every direction). The default path, and the reference the fused
    /// one is tested and measured against.
    ///
    /// # Panics
    /// If `sequences` has no time step, or its feature count is not the configured `input_size`.
    pub fn forward_reference(&self, sequences: Tensor<3>) -> Tensor<2> {
        let [_, steps, _] = sequences.dims();
        assert!(
            steps > 0,
            "the classifier needs sequences of at least one step"
        );
        let last_layer = self.forward_layers.len() - 1;
        let mut x = sequences;
        for (layer, forward) in self.forward_layers.iter().enumerate() {
            let (forward_out, _) = forward.forward(x.clone(), None);
            x = match self.backward_layers.get(layer) {
                // `reverse` LSTMs store each step's state at its own index, so the two outputs
                // line up in time and concatenate feature-wise.
                Some(backward) => Tensor::cat(vec![forward_out, backward.forward(x, None).0], 2),
                None => forward_out,
            };
            if layer < last_layer {
                x = self.dropout.forward(x);
            }
        }
        let last_step = x.narrow(1, steps - 1, 1).squeeze_dim::<2>(1);
        self.head.forward(last_step)
    }

    /// Class probabilities `[batch, classes]` (softmax of [`forward`](Self::forward)).
    pub fn probabilities(&self, sequences: Tensor<3>) -> Tensor<2> {
        burn::tensor::activation::softmax(self.forward(sequences), 1)
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
