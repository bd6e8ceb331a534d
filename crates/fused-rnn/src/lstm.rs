//! The LSTM layer: PyTorch's `nn.LSTM` (`batch_first=True`) as a Burn module.

use std::sync::{Arc, Mutex};

use burn::config::Config;
use burn::module::{Module, Param, ParamId};
use burn::nn::{Dropout, DropoutConfig};
use burn::tensor::{Device, Distribution, Int, Shape, Tensor, TensorData};

use crate::cells::{self, Cell, CellDirection};
use crate::tensor_ops::{self, Direction};

/// Hyper-parameters of an [`Lstm`], PyTorch's `nn.LSTM` arguments (with `batch_first=True` and
/// biases) plus the forget-gate bias offset and the choice of path; with [`cell`](Self::cell),
/// those of `nn.GRU` or `nn.RNN`.
#[derive(Config, Debug, PartialEq)]
pub struct LstmConfig {
    /// Features per time step.
    pub input_size: usize,
    /// Units in each layer and direction.
    pub hidden_size: usize,
    /// Stacked layers; each reads the whole output sequence of the one below.
    #[config(default = 1)]
    pub num_layers: usize,
    /// Whether each layer also reads the sequence backwards, its output the two directions'
    /// concatenated.
    #[config(default = false)]
    pub bidirectional: bool,
    /// Dropout on the output of every layer except the last (in training), as PyTorch's.
    #[config(default = 0.0)]
    pub dropout: f64,
    /// Added to every forget gate's `bias_ih` after PyTorch's initialisation. A forget bias of
    /// 1 keeps the cell state through the early steps of training (Gers et al., 2000; Jozefowicz
    /// et al., 2015); 0, the default, leaves the initialisation exactly as PyTorch's.
    #[config(default = 0.0)]
    pub forget_bias: f64,
    /// Chrono initialisation (Tallec & Ollivier, 2018) for dependencies up to this many steps
    /// (0: off, PyTorch's initialisation). Unit `k` of `H` gets the forget bias
    /// `ln(1 + (T - 2)(k + 1/2) / H)` (timescales spread from 1 to `T` steps, evenly in `k`)
    /// and the input bias its negative, in `bias_ih`, with `bias_hh`'s two blocks zero: a
    /// sequence of hundreds of steps starts with memory that long, where PyTorch's drawn biases
    /// (forget gates about 0.5) forget within a few steps.
    #[config(default = 0)]
    pub chrono_steps: usize,
    /// Run each layer and direction as the whole-sequence kernel where the device has one
    /// ([`Lstm::path`]); `false` keeps the same maths in Burn tensor operations everywhere.
    #[config(default = true)]
    pub kernel: bool,
    /// The cell: the LSTM, or PyTorch's `nn.GRU` or `nn.RNN` (tanh) with the same layers,
    /// directions, dropout, states and lengths (as PyTorch's `RNNBase` and its `mode`). A GRU
    /// or RNN has no cell state: the `cell` of the states it is given is not read, and that of
    /// its final state is zero. [`chrono_steps`](Self::chrono_steps) sets the GRU's update gate;
    /// the plain RNN has no gate and ignores it.
    #[config(default = "Cell::Lstm")]
    pub cell: Cell,
}

/// What is wrong with an [`LstmConfig`].
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("invalid LSTM configuration: {0}")]
pub struct LstmConfigError(String);

impl LstmConfig {
    /// Checks that every size is positive, the dropout is a probability and the forget bias is
    /// finite.
    pub fn validate(&self) -> Result<(), LstmConfigError> {
        for (name, value) in [
            ("input_size", self.input_size),
            ("hidden_size", self.hidden_size),
            ("num_layers", self.num_layers),
        ] {
            if value == 0 {
                return Err(LstmConfigError(format!("{name} must be at least 1")));
            }
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(LstmConfigError(format!(
                "dropout must be in [0, 1), got {}",
                self.dropout
            )));
        }
        if !self.forget_bias.is_finite() {
            return Err(LstmConfigError(format!(
                "forget_bias must be a finite number, got {}",
                self.forget_bias
            )));
        }
        if self.forget_bias != 0.0 && self.cell != Cell::Lstm {
            return Err(LstmConfigError(format!(
                "forget_bias is the LSTM's forget gate; a {} has none (give it with cell = lstm)",
                self.cell
            )));
        }
        if self.chrono_steps == 1 || self.chrono_steps > 0 && self.forget_bias != 0.0 {
            return Err(LstmConfigError(format!(
                "chrono_steps must be 0 (off) or at least 2, and not given with forget_bias \
                 (both set the forget gates' bias), got chrono_steps = {} and forget_bias = {}",
                self.chrono_steps, self.forget_bias
            )));
        }
        Ok(())
    }

    /// 2 when bidirectional, else 1.
    pub fn directions(&self) -> usize {
        if self.bidirectional { 2 } else { 1 }
    }

    /// Which computation the layer this configuration builds runs on `device`, and why (as
    /// [`Lstm::path`], without building the layer).
    pub fn path(&self, device: &Device) -> LstmPath {
        choose_path(self.kernel, self.hidden_size, self.cell, device)
    }

    /// Builds the layer on `device` with fresh weights drawn as PyTorch draws `nn.LSTM`'s: every
    /// weight and bias from U(-1/sqrt(hidden), 1/sqrt(hidden)); then
    /// [`forget_bias`](Self::forget_bias) is added to each forget gate's `bias_ih`.
    ///
    /// # Panics
    /// If the configuration is invalid; call [`validate`](Self::validate) first on values that
    /// come from a user.
    pub fn init(&self, device: &Device) -> Lstm {
        if let Err(error) = self.validate() {
            panic!("{error}");
        }
        let hidden = self.hidden_size;
        let directions = (0..self.num_layers * self.directions())
            .map(|index| {
                let layer = index / self.directions();
                let input = if layer == 0 {
                    self.input_size
                } else {
                    hidden * self.directions()
                };
                let direction = LstmDirection::drawn(input, hidden, self.cell, device);
                match (self.chrono_steps, self.cell) {
                    (0, _) | (_, Cell::Rnn) => LstmDirection {
                        bias_ih: with_forget_bias(direction.bias_ih, self.forget_bias),
                        ..direction
                    },
                    (steps, cell) => LstmDirection {
                        bias_ih: chrono(direction.bias_ih, cell, Some(steps)),
                        bias_hh: chrono(direction.bias_hh, cell, None),
                        ..direction
                    },
                }
            })
            .collect();
        Lstm {
            directions,
            dropout: DropoutConfig::new(self.dropout).init(),
            num_layers: self.num_layers,
            bidirectional: self.bidirectional,
            kernel: self.kernel,
            cell: self.cell,
        }
    }
}

/// `bias` with the blocks of the gates that keep and write the state replaced: by the chrono
/// biases for dependencies up to `steps` steps (see [`LstmConfig::chrono_steps`]), or by zeros
/// (`None`, for `bias_hh`, so that the two biases' sum is the chrono one). An LSTM's (`[4
/// hidden]`, gates `i, f, g, o`) input and forget blocks; a GRU's (`[3 hidden]`, gates `r, z,
/// n`) update block, which keeps the state as the forget gate does.
fn chrono(bias: Param<Tensor<1>>, cell: Cell, steps: Option<usize>) -> Param<Tensor<1>> {
    bias.map(|bias| {
        let hidden = bias.dims()[0] / cell.gates();
        let device = bias.device();
        let forget: Vec<f32> = (0..hidden)
            .map(|k| match steps {
                Some(steps) => {
                    (1.0 + (steps as f64 - 2.0) * (k as f64 + 0.5) / hidden as f64).ln() as f32
                }
                None => 0.0,
            })
            .collect();
        let input: Vec<f32> = forget.iter().map(|b| -b).collect();
        let block =
            |values: Vec<f32>| Tensor::<1>::from_data(TensorData::new(values, [hidden]), &device);
        let require_grad = bias.is_require_grad();
        let blocks = match cell {
            Cell::Gru => vec![
                bias.clone().narrow(0, 0, hidden),
                block(forget),
                bias.narrow(0, 2 * hidden, hidden),
            ],
            _ => vec![
                block(input),
                block(forget),
                bias.narrow(0, 2 * hidden, 2 * hidden),
            ],
        };
        Tensor::cat(blocks, 0)
            .detach()
            .set_require_grad(require_grad)
    })
}

/// `bias` (`[4 hidden]`, gates `i, f, g, o`) with `forget_bias` added to its forget block;
/// unchanged (its lazily drawn values untouched) when `forget_bias` is 0.
fn with_forget_bias(bias: Param<Tensor<1>>, forget_bias: f64) -> Param<Tensor<1>> {
    if forget_bias == 0.0 {
        return bias;
    }
    bias.map(|bias| {
        let hidden = bias.dims()[0] / 4;
        let device = bias.device();
        let offset = Tensor::cat(
            vec![
                Tensor::zeros([hidden], &device),
                Tensor::full([hidden], forget_bias, &device),
                Tensor::zeros([2 * hidden], &device),
            ],
            0,
        );
        // The sum is a node of the autodiff graph; `detach` makes it a leaf again, which then
        // requires a gradient as the drawn bias did.
        let require_grad = bias.is_require_grad();
        (bias + offset).detach().set_require_grad(require_grad)
    })
}

/// One direction of one layer, its parameters as PyTorch's `nn.LSTM` (`nn.GRU`, `nn.RNN`)
/// keeps them: `gates` is 4 for the LSTM (`i, f, g, o`), 3 for the GRU (`r, z, n`), 1 for the
/// RNN ([`Cell::gates`]).
#[derive(Module, Debug)]
pub struct LstmDirection {
    /// `[gates * hidden, input]`, the gates stacked.
    pub weight_ih: Param<Tensor<2>>,
    /// `[gates * hidden, hidden]`.
    pub weight_hh: Param<Tensor<2>>,
    /// `[gates * hidden]`.
    pub bias_ih: Param<Tensor<1>>,
    /// `[gates * hidden]`.
    pub bias_hh: Param<Tensor<1>>,
}

/// A direction's four parameters, drawn together at the first use of any of them; each param
/// takes its own out.
#[derive(Default)]
struct Drawn {
    weight_ih: Option<Tensor<2>>,
    weight_hh: Option<Tensor<2>>,
    bias_ih: Option<Tensor<1>>,
    bias_hh: Option<Tensor<1>>,
}

impl Drawn {
    /// A `cell` direction's parameters drawn on `device`: the LSTM's as [`new`](Self::new)
    /// draws them, the others' in PyTorch's layout and order (`weight_ih`, `weight_hh`,
    /// `bias_ih`, `bias_hh`), each from U(-1/sqrt(hidden), 1/sqrt(hidden)).
    fn for_cell(cell: Cell, input: usize, hidden: usize, device: &Device) -> Self {
        if cell == Cell::Lstm {
            return Self::new(input, hidden, device);
        }
        let bound = 1.0 / (hidden as f64).sqrt();
        let rows = cell.gates() * hidden;
        let uniform = Distribution::Uniform(-bound, bound);
        Self {
            weight_ih: Some(Tensor::random([rows, input], uniform, device)),
            weight_hh: Some(Tensor::random([rows, hidden], uniform, device)),
            bias_ih: Some(Tensor::random([rows], uniform, device)),
            bias_hh: Some(Tensor::random([rows], uniform, device)),
        }
    }

    /// Draws every value from U(-1/sqrt(hidden), 1/sqrt(hidden)) on `device` and stacks them in
    /// PyTorch's layout. The order of the draws is the one the `model` crate's classifier had
    /// when it kept each gate in a Burn `nn::Lstm` gate controller (per gate `i, f, o, g`: the
    /// input weight `[input, hidden]`, its bias, the hidden weight `[hidden, hidden]`, its
    /// bias), so that a seed gives the training run it gave then (for stacks with one direction).
    fn new(input: usize, hidden: usize, device: &Device) -> Self {
        let bound = 1.0 / (hidden as f64).sqrt();
        let draw = |shape: Vec<usize>| {
            Tensor::<2>::random(
                Shape::from(shape),
                Distribution::Uniform(-bound, bound),
                device,
            )
        };
        // Gates in the order they were drawn: input, forget, output, cell (g).
        let gates: Vec<[Tensor<2>; 4]> = (0..4)
            .map(|_| {
                let input_weight = draw(vec![input, hidden]);
                let input_bias = draw(vec![1, hidden]);
                let hidden_weight = draw(vec![hidden, hidden]);
                let hidden_bias = draw(vec![1, hidden]);
                [input_weight, hidden_weight, input_bias, hidden_bias]
            })
            .collect();
        // PyTorch's order `i, f, g, o` is drawn order 0, 1, 3, 2.
        let stacked = |part: usize, transpose: bool| {
            let blocks = [0, 1, 3, 2]
                .map(|gate| {
                    let block = gates[gate][part].clone();
                    if transpose { block.transpose() } else { block }
                })
                .to_vec();
            Tensor::cat(blocks, if transpose { 0 } else { 1 })
        };
        Self {
            weight_ih: Some(stacked(0, true)),
            weight_hh: Some(stacked(1, true)),
            bias_ih: Some(stacked(2, false).reshape([4 * hidden])),
            bias_hh: Some(stacked(3, false).reshape([4 * hidden])),
        }
    }
}

/// A parameter of `shape` taken out of the direction's `shared` draw, which the first of the
/// four to be used makes.
fn drawn_param<const D: usize>(
    shared: &Arc<Mutex<Option<Drawn>>>,
    shape: [usize; D],
    (cell, input): (Cell, usize),
    device: &Device,
    take: fn(&mut Drawn) -> Option<Tensor<D>>,
) -> Param<Tensor<D>> {
    let shared = Arc::clone(shared);
    let hidden = shape[0] / cell.gates();
    Param::uninitialized(
        ParamId::new(),
        move |device, require_grad| {
            let mut guard = shared
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            let drawn = guard.get_or_insert_with(|| Drawn::for_cell(cell, input, hidden, device));
            // A parameter asked again (a copy made before the draw) gets a draw of its own.
            let tensor = match take(drawn) {
                Some(tensor) => tensor,
                None => take(&mut Drawn::for_cell(cell, input, hidden, device))
                    .expect("a fresh draw holds every parameter"),
            }
            .detach();
            if require_grad {
                tensor.require_grad()
            } else {
                tensor
            }
        },
        device.clone(),
        true,
        Shape::from(shape.to_vec()),
    )
}

impl LstmDirection {
    /// A `cell` direction of `hidden` units reading `input` features, initialised as PyTorch
    /// initialises `nn.LSTM`, `nn.GRU` or `nn.RNN` (see [`Drawn::for_cell`]); drawn lazily, at
    /// its first use.
    fn drawn(input: usize, hidden: usize, cell: Cell, device: &Device) -> Self {
        let shared = Arc::new(Mutex::new(None));
        let rows = cell.gates() * hidden;
        let of = (cell, input);
        Self {
            weight_ih: drawn_param(&shared, [rows, input], of, device, |d| d.weight_ih.take()),
            weight_hh: drawn_param(&shared, [rows, hidden], of, device, |d| d.weight_hh.take()),
            bias_ih: drawn_param(&shared, [rows], of, device, |d| d.bias_ih.take()),
            bias_hh: drawn_param(&shared, [rows], of, device, |d| d.bias_hh.take()),
        }
    }

    /// Units of the direction.
    pub fn hidden_size(&self) -> usize {
        self.weight_hh.dims()[1]
    }

    /// A GRU or RNN direction's fused matrix (see `cells.rs`).
    fn cell_weights(&self, cell: Cell) -> Tensor<2> {
        cells::fused_weights(
            cell,
            self.weight_ih.val(),
            self.weight_hh.val(),
            self.bias_ih.val(),
            self.bias_hh.val(),
        )
    }

    /// The fused matrix the kernels and the tensor-op path take (see `tensor_ops.rs`): built on
    /// a CubeCL device by the pack kernel, elsewhere in tensor operations.
    fn fused_weights(&self) -> Tensor<2> {
        let parts = (
            self.weight_ih.val(),
            self.weight_hh.val(),
            self.bias_ih.val(),
            self.bias_hh.val(),
        );
        #[cfg(feature = "cube")]
        if let Some(packed) = crate::kernel::packed_weights(
            parts.0.clone(),
            parts.1.clone(),
            parts.2.clone(),
            parts.3.clone(),
        ) {
            return packed;
        }
        tensor_ops::fused_weights(parts.0, parts.1, parts.2, parts.3)
    }
}

/// The hidden and cell states of every layer and direction, `[layers * directions, batch,
/// hidden]` each, layer-major and direction-minor: PyTorch's `(h_n, c_n)` and `(h_0, c_0)`.
#[derive(Debug, Clone)]
pub struct LstmState {
    /// `h`.
    pub hidden: Tensor<3>,
    /// `c` (a GRU's or RNN's: zero in its final state, not read in its initial one).
    pub cell: Tensor<3>,
}

/// What one direction of one layer computed at every step of a call ([`Lstm::trace`]): each
/// `[batch, steps, hidden]`, at each step's own time index.
#[derive(Debug, Clone)]
pub struct DirectionTrace {
    /// The layer, from 0 at the input.
    pub layer: usize,
    /// Whether the direction reads right to left.
    pub reverse: bool,
    /// The input gate `i_t`.
    pub input_gate: Tensor<3>,
    /// The forget gate `f_t`.
    pub forget_gate: Tensor<3>,
    /// The output gate `o_t`.
    pub output_gate: Tensor<3>,
    /// The cell state `c_t`.
    pub cell: Tensor<3>,
    /// The hidden state `h_t`, the direction's output.
    pub hidden: Tensor<3>,
}

/// A stack of (optionally bidirectional) LSTM layers with PyTorch's `nn.LSTM` contract
/// (`batch_first=True`). Build it with [`LstmConfig::init`].
///
/// On a backend whose kernel this crate was built with, each layer and direction is one
/// operation with its own backward pass; elsewhere the same maths runs in Burn tensor operations
/// ([`path`](Self::path) says which, and why).
#[derive(Module, Debug)]
pub struct Lstm {
    /// Every layer's directions in PyTorch's order: layer 0 left to right, layer 0 right to left
    /// (when bidirectional), layer 1, ...
    pub directions: Vec<LstmDirection>,
    /// Dropout between layers.
    pub dropout: Dropout,
    /// Stacked layers.
    #[module(skip)]
    pub num_layers: usize,
    /// Whether each layer has a right-to-left direction.
    #[module(skip)]
    pub bidirectional: bool,
    /// Whether the kernel runs where the device has one.
    #[module(skip)]
    pub kernel: bool,
    /// The cell: LSTM, GRU or RNN ([`LstmConfig::cell`]).
    #[module(skip)]
    pub cell: Cell,
}

/// The computation a call of the layer runs on a device ([`Lstm::path`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LstmPath {
    /// One whole-sequence operation per layer and direction with its own backward pass: the CPU
    /// kernel on flex and ndarray, the CubeCL kernel on wgpu.
    Kernel,
    /// The fused maths in Burn tensor operations, a dozen per time step, for the reason given.
    TensorOps(Fallback),
}

/// Why a call runs in tensor operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fallback {
    /// The configuration's `kernel` is off.
    Disabled,
    /// This crate was built without a kernel for the device's backend.
    NoKernel,
    /// A row's state does not fit the GPU's shared memory.
    TooLarge,
    /// The kernels are the LSTM's; a GRU or RNN has none yet.
    CellWithoutKernel,
}

impl LstmPath {
    /// A short name: `kernel` or `tensor-ops`.
    pub fn name(self) -> &'static str {
        match self {
            LstmPath::Kernel => "kernel",
            LstmPath::TensorOps(_) => "tensor-ops",
        }
    }

    /// Why the path was taken, in a few words.
    pub fn reason(self) -> &'static str {
        match self {
            LstmPath::Kernel => "one whole-sequence operation per layer and direction",
            LstmPath::TensorOps(Fallback::Disabled) => "the kernel is turned off (kernel = false)",
            LstmPath::TensorOps(Fallback::NoKernel) => {
                "no kernel for this backend in this build (features flex, ndarray, wgpu)"
            }
            LstmPath::TensorOps(Fallback::TooLarge) => {
                "the hidden state does not fit the GPU's shared memory"
            }
            LstmPath::TensorOps(Fallback::CellWithoutKernel) => {
                "the kernels are the LSTM's; GRU and RNN cells run in tensor operations"
            }
        }
    }
}

impl std::fmt::Display for LstmPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.name(), self.reason())
    }
}

/// The top of a stack's run: every step and the final states, or the last valid output alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Top {
    EveryStep,
    LastOutput,
}

/// One direction's run: its outputs (unless only its final state was asked for) and its final
/// states.
struct Run {
    outputs: Option<Tensor<3>>,
    hidden: Tensor<2>,
    cell: Tensor<2>,
}

/// What every direction of a call shares.
struct CallInputs<'a> {
    lengths: Option<&'a Arc<[usize]>>,
    masks: Option<Vec<Tensor<2>>>,
    path: LstmPath,
}

impl Lstm {
    /// Units of each layer and direction.
    pub fn hidden_size(&self) -> usize {
        self.directions[0].hidden_size()
    }

    /// Features per time step the first layer reads.
    pub fn input_size(&self) -> usize {
        self.directions[0].weight_ih.dims()[1]
    }

    /// 2 when bidirectional, else 1.
    pub fn num_directions(&self) -> usize {
        if self.bidirectional { 2 } else { 1 }
    }

    /// Which computation the layer runs on `device`, and why: every call, with or without a
    /// state and lengths, every step or the last, takes the same path.
    pub fn path(&self, device: &Device) -> LstmPath {
        choose_path(self.kernel, self.hidden_size(), self.cell, device)
    }

    /// The output of every step, `[batch, steps, directions * hidden]`, and the final state, of
    /// the layers over `input` `[batch, steps, input]` from `state` (zeros when `None`), each row
    /// `b` read for its first `lengths[b]` steps when given: PyTorch's `nn.LSTM` with
    /// `batch_first=True` (with lengths, over a packed sequence: outputs past a row's length are
    /// zero, its final state is that of its last valid step, and the right-to-left direction
    /// starts there).
    ///
    /// # Panics
    /// If `input` has no step or not `input_size` features, the state's shape is not
    /// `[layers * directions, batch, hidden]`, or `lengths` is not one length in `1..=steps` per
    /// row (check user input with [`check_lengths`](Self::check_lengths)).
    pub fn forward(
        &self,
        input: Tensor<3>,
        state: Option<LstmState>,
        lengths: Option<&[usize]>,
    ) -> (Tensor<3>, LstmState) {
        let (output, hiddens, cells) = self.stack(input, state, lengths, Top::EveryStep);
        let final_state = LstmState {
            hidden: Tensor::stack(hiddens, 0),
            cell: Tensor::stack(cells, 0),
        };
        (output, final_state)
    }

    /// The top layer's output at each row's last valid step, `[batch, directions * hidden]`: what
    /// a classifier reads (PyTorch's `output[b, lengths[b] - 1]`, or `output[:, -1]` without
    /// lengths), computing only what it depends on.
    ///
    /// # Panics
    /// As [`forward`](Self::forward).
    pub fn forward_last(
        &self,
        input: Tensor<3>,
        state: Option<LstmState>,
        lengths: Option<&[usize]>,
    ) -> Tensor<2> {
        self.stack(input, state, lengths, Top::LastOutput)
            .0
            .squeeze_dim::<2>(1)
    }

    /// Every layer's and direction's gates and states at every step over whole sequences `input`
    /// `[batch, steps, input]` from a zero state, in PyTorch's order of directions (to look at
    /// what the layer does, not to train: it runs in tensor operations on any backend, without
    /// dropout).
    ///
    /// # Panics
    /// As [`forward`](Self::forward), and if the cell is not an LSTM (the trace holds an LSTM's
    /// gates).
    pub fn trace(&self, input: Tensor<3>) -> Vec<DirectionTrace> {
        assert_eq!(
            self.cell,
            Cell::Lstm,
            "the trace holds an LSTM's gates; this layer is a {}",
            self.cell
        );
        let [batch, steps, features] = input.dims();
        self.check_call(features, steps, batch, None, None);
        let mut traces = Vec::with_capacity(self.directions.len());
        let mut x = input;
        for layer in 0..self.num_layers {
            let mut outputs = Vec::with_capacity(self.num_directions());
            for d in 0..self.num_directions() {
                let direction = &self.directions[layer * self.num_directions() + d];
                let inputs = step_inputs(x.clone());
                let values = Direction {
                    weights: direction.fused_weights(),
                    hidden: direction.hidden_size(),
                }
                .trace(&inputs, d == 1);
                let stacked = |pick: fn(&crate::tensor_ops::StepValues) -> &Tensor<2>| {
                    Tensor::stack::<3>(values.iter().map(|v| pick(v).clone()).collect(), 1)
                };
                let trace = DirectionTrace {
                    layer,
                    reverse: d == 1,
                    input_gate: stacked(|v| &v.input_gate),
                    forget_gate: stacked(|v| &v.forget_gate),
                    output_gate: stacked(|v| &v.output_gate),
                    cell: stacked(|v| &v.cell),
                    hidden: stacked(|v| &v.hidden),
                };
                outputs.push(trace.hidden.clone());
                traces.push(trace);
            }
            x = Tensor::cat(outputs, 2);
        }
        traces
    }

    /// Checks `lengths` against a batch of `batch` sequences of `steps` steps: one length per row,
    /// each in `1..=steps`.
    pub fn check_lengths(lengths: &[usize], batch: usize, steps: usize) -> Result<(), String> {
        if lengths.len() != batch {
            return Err(format!(
                "{} lengths for a batch of {batch} sequences",
                lengths.len()
            ));
        }
        match lengths.iter().position(|l| !(1..=steps).contains(l)) {
            Some(row) => Err(format!(
                "row {row} has length {}, outside 1..={steps} (the input's steps)",
                lengths[row]
            )),
            None => Ok(()),
        }
    }

    /// The one layer stack: every layer's directions, dropout between layers, and the top layer
    /// as `top` asks. Gives the top's output (`[batch, steps, D * hidden]`, or `[batch, 1, D *
    /// hidden]` for the last output), and every direction's final hidden and cell states.
    fn stack(
        &self,
        input: Tensor<3>,
        state: Option<LstmState>,
        lengths: Option<&[usize]>,
        top: Top,
    ) -> (Tensor<3>, Vec<Tensor<2>>, Vec<Tensor<2>>) {
        let [batch, steps, features] = input.dims();
        let device: Device = input.device();
        self.check_call(features, steps, batch, state.as_ref(), lengths);
        let lengths: Option<Arc<[usize]>> = lengths.map(Arc::from);
        let path = self.path(&device);
        let masks = match (&lengths, path) {
            (Some(lengths), LstmPath::TensorOps(_)) => Some(step_masks(lengths, steps, &device)),
            _ => None,
        };
        let shared = CallInputs {
            lengths: lengths.as_ref(),
            masks,
            path,
        };
        let initial = |index: usize| {
            state.as_ref().map(|state| {
                let pick = |all: &Tensor<3>| all.clone().narrow(0, index, 1).squeeze_dim::<2>(0);
                (pick(&state.hidden), pick(&state.cell))
            })
        };
        let (mut hiddens, mut cells) = (Vec::new(), Vec::new());
        let mut x = input;
        for layer in 0..self.num_layers {
            let is_top = layer + 1 == self.num_layers;
            let mut outputs = Vec::new();
            for d in 0..self.num_directions() {
                let index = layer * self.num_directions() + d;
                let direction = &self.directions[index];
                let run = if is_top && top == Top::LastOutput {
                    self.last_output(direction, &x, initial(index), &shared, d == 1)
                } else {
                    run_direction(
                        direction,
                        x.clone(),
                        initial(index),
                        &shared,
                        (self.cell, d == 1, false),
                    )
                };
                outputs.push(match run.outputs {
                    Some(outputs) => outputs,
                    None => run.hidden.clone().unsqueeze_dim::<3>(1),
                });
                hiddens.push(run.hidden);
                cells.push(run.cell);
            }
            x = if outputs.len() == 1 {
                outputs.remove(0)
            } else {
                Tensor::cat(outputs, 2)
            };
            if !is_top {
                x = self.dropout.forward(x);
            }
        }
        (x, hiddens, cells)
    }

    /// A top-layer direction's output at each row's last valid step, as [`Run::hidden`] (with no
    /// outputs): left to right, the final state; right to left, one step from the initial
    /// state over that step's input, all that direction has read there.
    fn last_output(
        &self,
        direction: &LstmDirection,
        x: &Tensor<3>,
        initial: Option<(Tensor<2>, Tensor<2>)>,
        shared: &CallInputs<'_>,
        reverse: bool,
    ) -> Run {
        if !reverse {
            return run_direction(
                direction,
                x.clone(),
                initial,
                shared,
                (self.cell, false, true),
            );
        }
        let [batch, steps, features] = x.dims();
        let last_input = match shared.lengths {
            None => x.clone().narrow(1, steps - 1, 1),
            Some(lengths) => {
                let indices: Vec<i64> = lengths
                    .iter()
                    .flat_map(|&length| std::iter::repeat_n(length as i64 - 1, features))
                    .collect();
                let indices = Tensor::<3, Int>::from_data(
                    TensorData::new(indices, [batch, 1, features]),
                    &x.device(),
                );
                x.clone().gather(1, indices)
            }
        };
        let one_step = CallInputs {
            lengths: None,
            masks: None,
            path: shared.path,
        };
        run_direction(
            direction,
            last_input,
            initial,
            &one_step,
            (self.cell, false, true),
        )
    }

    /// Panics with a clear message where a call's shapes disagree with the layer.
    fn check_call(
        &self,
        features: usize,
        steps: usize,
        batch: usize,
        state: Option<&LstmState>,
        lengths: Option<&[usize]>,
    ) {
        assert!(steps > 0, "the LSTM needs sequences of at least one step");
        assert_eq!(
            features,
            self.input_size(),
            "the LSTM reads {} features per step, got {features}",
            self.input_size()
        );
        if let Some(state) = state {
            let expected = [self.directions.len(), batch, self.hidden_size()];
            for (name, tensor) in [("hidden", &state.hidden), ("cell", &state.cell)] {
                assert_eq!(
                    tensor.dims(),
                    expected,
                    "the initial {name} state must be [layers * directions, batch, hidden]"
                );
            }
        }
        if let Some(lengths) = lengths
            && let Err(message) = Self::check_lengths(lengths, batch, steps)
        {
            panic!("LSTM lengths: {message}");
        }
    }
}

/// The path on `device` for layers of `hidden` units of `cell`, the kernel allowed or not.
fn choose_path(kernel: bool, hidden: usize, cell: Cell, device: &Device) -> LstmPath {
    if !kernel {
        return LstmPath::TensorOps(Fallback::Disabled);
    }
    if cell != Cell::Lstm {
        return LstmPath::TensorOps(Fallback::CellWithoutKernel);
    }
    #[cfg(any(feature = "cpu-kernel", feature = "cube"))]
    {
        use crate::kernel::{Kernel, kernel_on};
        match kernel_on(device, hidden) {
            Some(Kernel::Host | Kernel::Cube) => LstmPath::Kernel,
            None if is_gpu(device) => LstmPath::TensorOps(Fallback::TooLarge),
            None => LstmPath::TensorOps(Fallback::NoKernel),
        }
    }
    #[cfg(not(any(feature = "cpu-kernel", feature = "cube")))]
    {
        let _ = (hidden, device);
        LstmPath::TensorOps(Fallback::NoKernel)
    }
}

/// Whether `device` is a GPU one (where a missing kernel means the layer is too large for it).
#[cfg(any(feature = "cpu-kernel", feature = "cube"))]
fn is_gpu(device: &Device) -> bool {
    #[cfg(feature = "cube")]
    return crate::kernel::is_cube(device);
    #[cfg(not(feature = "cube"))]
    {
        let _ = device;
        false
    }
}

/// One `[batch, 1]` mask per step: 1 where the row is within its length, else 0.
fn step_masks(lengths: &[usize], steps: usize, device: &Device) -> Vec<Tensor<2>> {
    (0..steps)
        .map(|t| {
            let mask: Vec<f32> = lengths
                .iter()
                .map(|&length| if t < length { 1.0 } else { 0.0 })
                .collect();
            Tensor::from_data(TensorData::new(mask, [lengths.len(), 1]), device)
        })
        .collect()
}

/// One direction over `x` `[batch, steps, features]` on the call's path; with `last_only`, only
/// its final state. The kernel path is an LSTM's only ([`choose_path`]).
fn run_direction(
    direction: &LstmDirection,
    x: Tensor<3>,
    initial: Option<(Tensor<2>, Tensor<2>)>,
    shared: &CallInputs<'_>,
    (cell, reverse, last_only): (Cell, bool, bool),
) -> Run {
    #[cfg(any(feature = "cpu-kernel", feature = "cube"))]
    if shared.path == LstmPath::Kernel {
        return kernel_run(
            direction.fused_weights(),
            x,
            initial,
            shared,
            reverse,
            last_only,
        );
    }
    let [batch, steps, _] = x.dims();
    let hidden = direction.hidden_size();
    let inputs = step_inputs(x);
    let masks = shared.masks.as_deref();
    let run = match cell {
        Cell::Lstm => Direction {
            weights: direction.fused_weights(),
            hidden,
        }
        .run(&inputs, initial, masks, reverse, !last_only),
        cell => CellDirection {
            cell,
            weights: direction.cell_weights(cell),
            hidden,
        }
        .run(&inputs, initial.map(|(h, _)| h), masks, reverse, !last_only),
    };
    let outputs =
        (!last_only).then(|| Tensor::stack::<3>(run.outputs, 1).reshape([batch, steps, hidden]));
    Run {
        outputs,
        hidden: run.hidden,
        cell: run.cell,
    }
}

/// `x` `[batch, steps, features]` as one `[batch, features]` tensor per step.
fn step_inputs(x: Tensor<3>) -> Vec<Tensor<2>> {
    let [batch, _, features] = x.dims();
    x.iter_dim(1)
        .map(|step| step.reshape([batch, features]))
        .collect()
}

/// [`run_direction`] through the device's kernel.
#[cfg(any(feature = "cpu-kernel", feature = "cube"))]
fn kernel_run(
    weights: Tensor<2>,
    x: Tensor<3>,
    initial: Option<(Tensor<2>, Tensor<2>)>,
    shared: &CallInputs<'_>,
    reverse: bool,
    last_only: bool,
) -> Run {
    let [batch, steps, _] = x.dims();
    let hidden = weights.dims()[1] / 4;
    let initial = initial
        .map(|(h, c)| Tensor::cat(vec![h.unsqueeze_dim::<3>(1), c.unsqueeze_dim::<3>(1)], 1));
    let lengths = shared.lengths.cloned();
    #[cfg(feature = "cube")]
    let all = if crate::kernel::is_cube(&x.device()) {
        crate::kernel::cube_sequence(x, weights, initial, lengths, reverse, last_only)
    } else {
        host_run(x, weights, initial, lengths, reverse, last_only)
    };
    #[cfg(not(feature = "cube"))]
    let all = host_run(x, weights, initial, lengths, reverse, last_only);
    // `[batch * kept + 2 * batch, hidden]`: every block a view, contiguous.
    let kept = if last_only { 0 } else { steps };
    let block = |first: usize, rows: usize| all.clone().narrow(0, first, rows);
    Run {
        outputs: (!last_only).then(|| block(0, batch * kept).reshape([batch, steps, hidden])),
        hidden: block(batch * kept, batch),
        cell: block(batch * (kept + 1), batch),
    }
}

/// The CPU kernel's run of [`kernel_run`].
#[cfg(any(feature = "cpu-kernel", feature = "cube"))]
fn host_run(
    x: Tensor<3>,
    weights: Tensor<2>,
    initial: Option<Tensor<3>>,
    lengths: Option<Arc<[usize]>>,
    reverse: bool,
    last_only: bool,
) -> Tensor<2> {
    #[cfg(feature = "cpu-kernel")]
    return crate::kernel::host_sequence(x, weights, initial, lengths, reverse, last_only);
    #[cfg(not(feature = "cpu-kernel"))]
    {
        let _ = (x, weights, initial, lengths, reverse, last_only);
        unreachable!("the kernel path on a device without a CPU kernel")
    }
}
