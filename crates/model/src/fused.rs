//! The classifier's LSTM layers run with their four gates fused.
//!
//! Burn's [`Lstm`] keeps one `GateController` per gate (input, forget, output, cell), each with
//! an input and a hidden `Linear`, and runs eight small matmuls, eight bias additions and many
//! element-wise operations per time step, each a node of the autodiff graph. Here the same
//! parameters are concatenated once per forward pass into one matrix per layer and direction,
//!
//! ```text
//! rows:     [ W_x (input, d_input rows) ; b_x + b_h (1 row) ; W_h (hidden, d_hidden rows) ]
//! columns:  [ input gate | forget gate | output gate | cell gate ]   (d_hidden each)
//! ```
//!
//! and a time step is one concatenation `[x_t, 1, h_{t-1}]`, one matmul with that matrix, one
//! sigmoid over all four gates, and the cell and hidden updates. The cell gate's columns are
//! scaled by 2 so that the shared sigmoid yields `sigmoid(2 z)`, and `tanh(z) = 2 sigmoid(2 z) - 1`
//! recovers Burn's `tanh` candidate (within float rounding, about 1e-7).
//!
//! The parameters stay where they are (the `Vec<Lstm>` fields), so records, initialisation and
//! optimiser state are unchanged; gradients flow back through the concatenation into each gate's
//! own weights. On a CubeCL device the kernel path builds the same matrix with a packing kernel
//! instead (`kernel::packed_weights`), a launch a gate each way.
//!
//! Dropout between layers (when training) keeps each value with the same probability and scales
//! it the same way as the reference path's Burn `Dropout` over the whole sequence, but with other
//! random draws: the tensor-op path applies it to each time step's output on its own, the kernel
//! path to the whole sequence at once.
//!
//! The classifier reads only the last time step, so the top layer keeps only what that step
//! needs: the left-to-right direction's final state and, when bidirectional, the first step of
//! the right-to-left direction (which has read only the last row). The other steps of that
//! direction would not change the logits or any gradient.

use burn::nn::activation::Activation;
use burn::nn::{Dropout, Lstm};
use burn::tensor::activation::sigmoid;
use burn::tensor::{Device, Tensor};

/// Whether `lstm` is the standard LSTM the fused path reproduces, and PyTorch's `nn.LSTM`
/// computes: four gates, sigmoid gates and tanh activations, no cell clipping.
/// [`crate::LstmClassifierConfig::init`] builds only such layers; anything else is run through
/// Burn's own forward, and has no PyTorch equivalent.
pub fn is_standard(lstm: &Lstm) -> bool {
    !lstm.input_forget
        && lstm.forget_gate.is_some()
        && lstm.clip.is_none()
        && matches!(lstm.gate_activation, Activation::Sigmoid(_))
        && matches!(lstm.cell_activation, Activation::Tanh(_))
        && matches!(lstm.hidden_activation, Activation::Tanh(_))
}

/// One direction of one layer, its gates concatenated.
struct FusedDirection {
    /// `[d_input + 1 + d_hidden, 4 d_hidden]`, rows and columns as in the module documentation.
    weights: Tensor<2>,
    d_hidden: usize,
}

impl FusedDirection {
    fn new(lstm: &Lstm) -> Self {
        // `is_standard` was checked by the caller, so the forget gate is there.
        let gates = [
            Some(&lstm.input_gate),
            lstm.forget_gate.as_ref(),
            Some(&lstm.output_gate),
            Some(&lstm.cell_gate),
        ];
        let d_hidden = lstm.d_hidden;
        let mut input_parts = Vec::with_capacity(4);
        let mut bias_parts = Vec::with_capacity(4);
        let mut hidden_parts = Vec::with_capacity(4);
        for (index, gate) in gates.into_iter().flatten().enumerate() {
            let input_weight = gate.input_transform.weight.val();
            let hidden_weight = gate.hidden_transform.weight.val();
            let device = input_weight.device();
            let bias = |linear: &burn::nn::Linear| match &linear.bias {
                Some(bias) => bias.val(),
                None => Tensor::zeros([d_hidden], &device),
            };
            let bias = bias(&gate.input_transform) + bias(&gate.hidden_transform);
            let bias = bias.reshape([1, d_hidden]);
            // The cell gate (last) is read as 2 sigmoid(2 z) - 1 = tanh(z).
            let scale = |t: Tensor<2>| if index == 3 { t.mul_scalar(2.0) } else { t };
            input_parts.push(scale(input_weight));
            bias_parts.push(scale(bias));
            hidden_parts.push(scale(hidden_weight));
        }
        let input = Tensor::cat(input_parts, 1);
        let bias = Tensor::cat(bias_parts, 1);
        let hidden = Tensor::cat(hidden_parts, 1);
        Self {
            weights: Tensor::cat(vec![input, bias, hidden], 0),
            d_hidden,
        }
    }

    /// One time step: the new `(hidden, cell)` from the input `[batch, d_input]` and the previous
    /// `(hidden, cell)` (`None`: zeros, Burn's initial state; the forget gate's product with the zero cell is
    /// left out).
    fn step(
        &self,
        input: Tensor<2>,
        ones: &Tensor<2>,
        state: Option<(Tensor<2>, Tensor<2>)>,
    ) -> (Tensor<2>, Tensor<2>) {
        let h = self.d_hidden;
        let (hidden, cell) = match state {
            // The zero hidden state still goes through the matmul, so that the hidden weights
            // get a (zero) gradient, as through Burn's Lstm, even where this is the only step
            // (the top layer's right-to-left direction).
            None => {
                let [batch, _] = input.dims();
                (Tensor::zeros([batch, h], &input.device()), None)
            }
            Some((hidden, cell)) => (hidden, Some(cell)),
        };
        let gates = Tensor::cat(vec![input, ones.clone(), hidden], 1).matmul(self.weights.clone());
        // One sigmoid for all four gates; the cell gate's pre-activation was doubled, so
        // 2 sigmoid(2 z) - 1 = tanh(z) is Burn's candidate cell value.
        let gates = sigmoid(gates);
        let input_gate = gates.clone().narrow(1, 0, h);
        let output_gate = gates.clone().narrow(1, 2 * h, h);
        let candidate = gates
            .clone()
            .narrow(1, 3 * h, h)
            .mul_scalar(2.0)
            .add_scalar(-1.0);
        let cell = match cell {
            None => input_gate * candidate,
            Some(cell) => gates.narrow(1, h, h) * cell + input_gate * candidate,
        };
        // tanh(c) as 2 sigmoid(2 c) - 1 too: flex's tanh and its backward cost more than the
        // three extra element-wise operations (measured, `examples/lstm_speed.rs`).
        let squashed = sigmoid(cell.clone().mul_scalar(2.0))
            .mul_scalar(2.0)
            .add_scalar(-1.0);
        (output_gate * squashed, cell)
    }

    /// The hidden state of every time step of `inputs` (one `[batch, d_input]` tensor per step),
    /// read left to right or right to left, each at its step's own index (as Burn's `reverse`
    /// LSTM stores them).
    fn run(&self, inputs: &[Tensor<2>], ones: &Tensor<2>, reverse: bool) -> Vec<Tensor<2>> {
        let mut outputs = Vec::with_capacity(inputs.len());
        let mut state = None;
        let ordered: Box<dyn Iterator<Item = &Tensor<2>>> = if reverse {
            Box::new(inputs.iter().rev())
        } else {
            Box::new(inputs.iter())
        };
        for input in ordered {
            let (hidden, cell) = self.step(input.clone(), ones, state);
            outputs.push(hidden.clone());
            state = Some((hidden, cell));
        }
        if reverse {
            outputs.reverse();
        }
        outputs
    }

    /// The hidden state after reading all of `inputs` left to right.
    ///
    /// # Panics
    /// If `inputs` is empty.
    fn last_hidden(&self, inputs: &[Tensor<2>], ones: &Tensor<2>) -> Tensor<2> {
        let mut state = None;
        for input in inputs {
            state = Some(self.step(input.clone(), ones, state));
        }
        match state {
            Some((hidden, _)) => hidden,
            None => panic!("a sequence of no time steps has no last step"),
        }
    }
}

/// The output of the top layer at the last time step, `[batch, directions * hidden]`, of the
/// classifier's stacked LSTM layers (standard ones, see [`is_standard`]) over `sequences`
/// `[batch, steps, features]`, `steps >= 1`: through the whole-sequence operation of
/// [`crate::kernel`] where the device has it and `kernel` is set, else in tensor operations.
pub(crate) fn last_step_output(
    forward_layers: &[Lstm],
    backward_layers: &[Lstm],
    dropout: &Dropout,
    sequences: Tensor<3>,
    kernel: bool,
) -> Tensor<2> {
    #[cfg(any(feature = "cpu-kernel", feature = "cube"))]
    if kernel
        && forward_layers
            .iter()
            .all(|lstm| kernel_runs(&sequences.device(), lstm.d_hidden))
    {
        return kernel_last_step_output(forward_layers, backward_layers, dropout, sequences);
    }
    let _ = kernel;
    tensor_ops_last_step_output(forward_layers, backward_layers, dropout, sequences)
}

/// Whether the whole-sequence operation runs layers of `hidden` units on `device` (see
/// [`crate::kernel::runs_on`]); never without a kernel compiled in.
pub(crate) fn kernel_runs(device: &Device, hidden: usize) -> bool {
    #[cfg(any(feature = "cpu-kernel", feature = "cube"))]
    return crate::kernel::runs_on(device, hidden);
    #[cfg(not(any(feature = "cpu-kernel", feature = "cube")))]
    {
        let _ = (device, hidden);
        false
    }
}

/// [`last_step_output`] with one kernel call per layer and direction.
#[cfg(any(feature = "cpu-kernel", feature = "cube"))]
fn kernel_last_step_output(
    forward_layers: &[Lstm],
    backward_layers: &[Lstm],
    dropout: &Dropout,
    sequences: Tensor<3>,
) -> Tensor<2> {
    use crate::kernel::lstm_sequence;
    let [batch, steps, _] = sequences.dims();
    let weights = |lstm: &Lstm| {
        #[cfg(feature = "cube")]
        if let Some(weights) = crate::kernel::packed_weights(lstm) {
            return weights;
        }
        FusedDirection::new(lstm).weights
    };
    let top = forward_layers.len() - 1;
    let mut x = sequences;
    for (forward, backward) in forward_layers[..top]
        .iter()
        .zip(layer_iter(backward_layers))
    {
        let forward_out = lstm_sequence(x.clone(), weights(forward), false, false);
        x = match backward {
            None => forward_out,
            Some(backward) => Tensor::cat(
                vec![
                    forward_out,
                    lstm_sequence(x, weights(backward), true, false),
                ],
                2,
            ),
        };
        x = dropout.forward(x);
    }
    let top_forward = &forward_layers[top];
    let last = lstm_sequence(x.clone(), weights(top_forward), false, true)
        .reshape([batch, top_forward.d_hidden]);
    match backward_layers.get(top) {
        Some(backward) => {
            // The right-to-left direction's output at the last step is its first step: one step
            // from the zero state over the last input.
            let first = lstm_sequence(x.narrow(1, steps - 1, 1), weights(backward), false, true)
                .reshape([batch, backward.d_hidden]);
            Tensor::cat(vec![last, first], 1)
        }
        None => last,
    }
}

/// [`last_step_output`] in Burn tensor operations, which every backend runs.
fn tensor_ops_last_step_output(
    forward_layers: &[Lstm],
    backward_layers: &[Lstm],
    dropout: &Dropout,
    sequences: Tensor<3>,
) -> Tensor<2> {
    let [batch, _, features] = sequences.dims();
    let device: Device = sequences.device();
    let ones = Tensor::ones([batch, 1], &device);
    let mut inputs: Vec<Tensor<2>> = sequences
        .iter_dim(1)
        .map(|step| step.reshape([batch, features]))
        .collect();
    let top = forward_layers.len() - 1;
    for (forward, backward) in forward_layers[..top]
        .iter()
        .zip(layer_iter(backward_layers))
    {
        let forward_out = FusedDirection::new(forward).run(&inputs, &ones, false);
        inputs = match backward {
            None => forward_out,
            Some(backward) => forward_out
                .into_iter()
                .zip(FusedDirection::new(backward).run(&inputs, &ones, true))
                .map(|(f, b)| Tensor::cat(vec![f, b], 1))
                .collect(),
        };
        inputs = inputs.into_iter().map(|x| dropout.forward(x)).collect();
    }
    let last = FusedDirection::new(&forward_layers[top]).last_hidden(&inputs, &ones);
    match (backward_layers.get(top), inputs.last()) {
        (Some(backward), Some(input)) => {
            // The right-to-left direction's output at the last step is its first step.
            let (first, _) = FusedDirection::new(backward).step(input.clone(), &ones, None);
            Tensor::cat(vec![last, first], 1)
        }
        _ => last,
    }
}

/// `Some(layer)` for each layer of a bidirectional stack, endless `None` otherwise.
fn layer_iter(backward_layers: &[Lstm]) -> Box<dyn Iterator<Item = Option<&Lstm>> + '_> {
    if backward_layers.is_empty() {
        Box::new(std::iter::repeat(None))
    } else {
        Box::new(backward_layers.iter().map(Some))
    }
}
