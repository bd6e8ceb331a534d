//! The LSTM in Burn tensor operations, with its four gates fused: the path of every backend
//! without a kernel, and the one the kernels are checked against.
//!
//! A direction's parameters, in PyTorch's layout (`weight_ih` `[4 hidden, input]`, `weight_hh`
//! `[4 hidden, hidden]`, `bias_ih` and `bias_hh` `[4 hidden]`, gates in the order `i, f, g, o`),
//! are concatenated once per forward pass into one matrix,
//!
//! ```text
//! rows:     [ W_ih^T (input rows) ; b_ih + b_hh (1 row) ; W_hh^T (hidden rows) ]
//! columns:  [ input gate | forget gate | output gate | cell gate ]   (hidden each)
//! ```
//!
//! and a time step is one concatenation `[x_t, 1, h_{t-1}]`, one matmul with that matrix, one
//! sigmoid over all four gates, and the cell and hidden updates. The cell gate's columns are
//! scaled by 2 so that the shared sigmoid yields `sigmoid(2 z)`, and `tanh(z) = 2 sigmoid(2 z) - 1`
//! recovers the `tanh` candidate (within float rounding, about 1e-7). The kernels take the same
//! matrix; gradients flow back through the concatenation into each parameter.
//!
//! Rows past their length (a mask per step) keep their state and give zero outputs, as PyTorch's
//! packed sequences do.

use burn::tensor::activation::sigmoid;
use burn::tensor::{Device, Tensor};

/// The fused matrix `[input + 1 + hidden, 4 hidden]` of one direction's parameters.
pub(crate) fn fused_weights(
    weight_ih: Tensor<2>,
    weight_hh: Tensor<2>,
    bias_ih: Tensor<1>,
    bias_hh: Tensor<1>,
) -> Tensor<2> {
    let hidden = weight_hh.dims()[1];
    // PyTorch's gate blocks `i, f, g, o` (rows) into the kernel's `i, f, o, 2 g`.
    let reorder = |rows: Tensor<2>| {
        Tensor::cat(
            vec![
                rows.clone().narrow(0, 0, 2 * hidden),
                rows.clone().narrow(0, 3 * hidden, hidden),
                rows.narrow(0, 2 * hidden, hidden).mul_scalar(2.0),
            ],
            0,
        )
    };
    let bias = (bias_ih + bias_hh).reshape([4 * hidden, 1]);
    Tensor::cat(
        vec![reorder(weight_ih), reorder(bias), reorder(weight_hh)],
        1,
    )
    .transpose()
}

/// The time steps of a sequence of `steps` in the order a direction reads them.
pub(crate) fn reading_order(steps: usize, reverse: bool) -> impl Iterator<Item = usize> {
    (0..steps).map(move |p| if reverse { steps - 1 - p } else { p })
}

/// A state after a step where rows past their length keep their `previous` one: `new` where
/// `mask` is 1, `previous` where `keep` (`1 - mask`) is 1. Also gives `new * mask`, the step's
/// output (zero past a row's length).
pub(crate) fn hold_finished(
    new: Tensor<2>,
    previous: Tensor<2>,
    mask: &Tensor<2>,
    keep: &Tensor<2>,
) -> (Tensor<2>, Tensor<2>) {
    let output = new * mask.clone();
    (output.clone() + previous * keep.clone(), output)
}

/// One direction of one layer in tensor operations.
pub(crate) struct Direction {
    /// The fused matrix (see [`fused_weights`]).
    pub weights: Tensor<2>,
    pub hidden: usize,
}

/// What one step of one direction computed, `[batch, hidden]` each.
pub(crate) struct StepValues {
    pub hidden: Tensor<2>,
    pub cell: Tensor<2>,
    pub input_gate: Tensor<2>,
    pub forget_gate: Tensor<2>,
    pub output_gate: Tensor<2>,
}

/// What a direction's run gives: every step's output (when kept), and the final states.
pub(crate) struct DirectionRun {
    pub outputs: Vec<Tensor<2>>,
    pub hidden: Tensor<2>,
    pub cell: Tensor<2>,
}

impl Direction {
    /// One time step: the new `(hidden, cell)` from the input `[batch, input]` and the previous
    /// `(hidden, cell)` (`None`: zeros; the forget gate's product with the zero cell is left out).
    fn step(
        &self,
        input: Tensor<2>,
        ones: &Tensor<2>,
        state: Option<(Tensor<2>, Tensor<2>)>,
    ) -> (Tensor<2>, Tensor<2>) {
        let step = self.step_values(input, ones, state);
        (step.hidden, step.cell)
    }

    /// [`step`](Self::step) with the activated gates it computed on the way.
    fn step_values(
        &self,
        input: Tensor<2>,
        ones: &Tensor<2>,
        state: Option<(Tensor<2>, Tensor<2>)>,
    ) -> StepValues {
        let h = self.hidden;
        let (hidden, cell) = match state {
            // The zero hidden state still goes through the matmul, so that the hidden weights
            // get a (zero) gradient even where this is the only step.
            None => {
                let [batch, _] = input.dims();
                (Tensor::zeros([batch, h], &input.device()), None)
            }
            Some((hidden, cell)) => (hidden, Some(cell)),
        };
        let gates = Tensor::cat(vec![input, ones.clone(), hidden], 1).matmul(self.weights.clone());
        // One sigmoid for all four gates; the cell gate's pre-activation was doubled, so
        // 2 sigmoid(2 z) - 1 = tanh(z) is the candidate cell value.
        let gates = sigmoid(gates);
        let input_gate = gates.clone().narrow(1, 0, h);
        let forget_gate = gates.clone().narrow(1, h, h);
        let output_gate = gates.clone().narrow(1, 2 * h, h);
        let candidate = gates.narrow(1, 3 * h, h).mul_scalar(2.0).add_scalar(-1.0);
        let cell = match cell {
            None => input_gate.clone() * candidate,
            Some(cell) => forget_gate.clone() * cell + input_gate.clone() * candidate,
        };
        // tanh(c) as 2 sigmoid(2 c) - 1 too: flex's tanh and its backward cost more than the
        // three extra element-wise operations (measured, `examples/lstm_speed.rs`).
        let squashed = sigmoid(cell.clone().mul_scalar(2.0))
            .mul_scalar(2.0)
            .add_scalar(-1.0);
        StepValues {
            hidden: output_gate.clone() * squashed,
            cell,
            input_gate,
            forget_gate,
            output_gate,
        }
    }

    /// Every step's values over whole sequences `inputs` from a zero state, in time order (the
    /// trace of [`crate::Lstm::trace`]).
    pub fn trace(&self, inputs: &[Tensor<2>], reverse: bool) -> Vec<StepValues> {
        let [batch, _] = inputs[0].dims();
        let ones = Tensor::ones([batch, 1], &inputs[0].device());
        let mut state = None;
        let mut steps = Vec::with_capacity(inputs.len());
        for t in reading_order(inputs.len(), reverse) {
            let step = self.step_values(inputs[t].clone(), &ones, state);
            state = Some((step.hidden.clone(), step.cell.clone()));
            steps.push(step);
        }
        if reverse {
            steps.reverse();
        }
        steps
    }

    /// Reads `inputs` (one `[batch, input]` tensor per step, at least one) left to right or right
    /// to left from `initial` (zeros when `None`); `masks` (one `[batch, 1]` tensor of 1 or 0 per
    /// step) stops each row at its length. The outputs, each at its step's own index, are kept
    /// when `keep_outputs`.
    pub fn run(
        &self,
        inputs: &[Tensor<2>],
        initial: Option<(Tensor<2>, Tensor<2>)>,
        masks: Option<&[Tensor<2>]>,
        reverse: bool,
        keep_outputs: bool,
    ) -> DirectionRun {
        let [batch, _] = inputs[0].dims();
        let device: Device = inputs[0].device();
        let ones = Tensor::ones([batch, 1], &device);
        let zeros = || Tensor::<2>::zeros([batch, self.hidden], &device);
        // A masked row keeps its state, so the state must exist from the start.
        let mut state = match (initial, masks) {
            (None, Some(_)) => Some((zeros(), zeros())),
            (initial, _) => initial,
        };
        let mut outputs = Vec::with_capacity(if keep_outputs { inputs.len() } else { 0 });
        for t in reading_order(inputs.len(), reverse) {
            let (hidden, cell) = self.step(inputs[t].clone(), &ones, state.clone());
            let (hidden, cell, output) = match (masks, state) {
                (Some(masks), Some((previous_hidden, previous_cell))) => {
                    let mask = &masks[t];
                    let keep = mask.clone().neg().add_scalar(1.0);
                    let (hidden, output) = hold_finished(hidden, previous_hidden, mask, &keep);
                    let (cell, _) = hold_finished(cell, previous_cell, mask, &keep);
                    (hidden, cell, output)
                }
                _ => (hidden.clone(), cell, hidden),
            };
            if keep_outputs {
                outputs.push(output);
            }
            state = Some((hidden, cell));
        }
        if reverse {
            outputs.reverse();
        }
        let (hidden, cell) = state.unwrap_or_else(|| (zeros(), zeros()));
        DirectionRun {
            outputs,
            hidden,
            cell,
        }
    }
}
