//! The GRU and the plain RNN, PyTorch's `nn.GRU` and `nn.RNN` (tanh), in Burn tensor operations.
//!
//! A direction's parameters keep PyTorch's layout (`weight_ih` `[gates * hidden, input]`, ...,
//! the GRU's gates in the order `r, z, n`). As for the LSTM (`tensor_ops.rs`) they are
//! concatenated once per forward pass into one matrix that a step multiplies with `[x_t, 1,
//! h_{t-1}]`:
//!
//! ```text
//! GRU rows:    [ W_ih^T ; bias ; W_hh^T ]    columns: [ r | z | n from x | n from h ]
//! RNN rows:    [ W_ih^T ; b_ih + b_hh ; W_hh^T ]    columns: [ h ]
//! ```
//!
//! The GRU's candidate is `n = tanh(W_in x + b_in + r * (W_hn h + b_hn))`: the reset gate
//! multiplies the hidden half only, so `n` takes two column blocks, one fed by the input rows
//! (the hidden rows zero there) and one by the hidden rows (the input rows zero), each with its
//! own bias. Then `h_t = n + z * (h_{t-1} - n)`, PyTorch's `(1 - z) * n + z * h_{t-1}`. The plain
//! RNN is `h_t = tanh(W_ih x + b_ih + W_hh h + b_hh)`.
//!
//! Rows past their length keep their state and give zero outputs, as in `tensor_ops.rs`.

use std::fmt;
use std::str::FromStr;

use burn::tensor::activation::{sigmoid, tanh};
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::tensor_ops::{DirectionRun, hold_finished, reading_order};

/// The recurrent cell of a layer: which of PyTorch's `nn.LSTM`, `nn.GRU` and `nn.RNN` it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Cell {
    /// Long short-term memory: input, forget and output gates and a cell state.
    #[default]
    Lstm,
    /// Gated recurrent unit: reset and update gates, no cell state.
    Gru,
    /// The plain (Elman) RNN with tanh: no gate.
    Rnn,
}

impl Cell {
    /// Every cell, in the order the documentation lists them.
    pub const ALL: [Cell; 3] = [Cell::Lstm, Cell::Gru, Cell::Rnn];

    /// Blocks of `hidden` rows in `weight_ih`, `weight_hh` and the biases: 4, 3 or 1.
    pub fn gates(self) -> usize {
        match self {
            Cell::Lstm => 4,
            Cell::Gru => 3,
            Cell::Rnn => 1,
        }
    }

    /// The name configurations use: `lstm`, `gru` or `rnn`.
    pub fn name(self) -> &'static str {
        match self {
            Cell::Lstm => "lstm",
            Cell::Gru => "gru",
            Cell::Rnn => "rnn",
        }
    }

    /// The PyTorch module whose parameters and maths the layer has.
    pub fn pytorch_module(self) -> &'static str {
        match self {
            Cell::Lstm => "nn.LSTM",
            Cell::Gru => "nn.GRU",
            Cell::Rnn => "nn.RNN",
        }
    }

    /// `lstm, gru, rnn`: the names allowed, for error messages.
    pub fn allowed() -> String {
        Self::ALL.map(Cell::name).join(", ")
    }
}

impl fmt::Display for Cell {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Cell {
    type Err = String;

    fn from_str(name: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|cell| cell.name() == name)
            .ok_or_else(|| format!("unknown cell `{name}`, expected one of {}", Cell::allowed()))
    }
}

/// The fused matrix `[input + 1 + hidden, columns]` of a GRU or RNN direction (see the module's
/// documentation): `4 hidden` columns for the GRU, `hidden` for the RNN.
pub(crate) fn fused_weights(
    cell: Cell,
    weight_ih: Tensor<2>,
    weight_hh: Tensor<2>,
    bias_ih: Tensor<1>,
    bias_hh: Tensor<1>,
) -> Tensor<2> {
    let hidden = weight_hh.dims()[1];
    let input = weight_ih.dims()[1];
    let column = |t: Tensor<1>| t.reshape([1, -1]);
    match cell {
        Cell::Rnn => Tensor::cat(
            vec![
                weight_ih.transpose(),
                column(bias_ih + bias_hh),
                weight_hh.transpose(),
            ],
            0,
        ),
        Cell::Gru => {
            let device = weight_ih.device();
            let rz = 2 * hidden;
            let block = |w: &Tensor<2>, first, rows| w.clone().narrow(0, first, rows).transpose();
            let bias = |b: &Tensor<1>, first, rows| column(b.clone().narrow(0, first, rows));
            // Columns r and z: both halves and both biases.
            let gates = Tensor::cat(
                vec![
                    block(&weight_ih, 0, rz),
                    bias(&bias_ih, 0, rz) + bias(&bias_hh, 0, rz),
                    block(&weight_hh, 0, rz),
                ],
                0,
            );
            let from_input = Tensor::cat(
                vec![
                    block(&weight_ih, rz, hidden),
                    bias(&bias_ih, rz, hidden),
                    Tensor::zeros([hidden, hidden], &device),
                ],
                0,
            );
            let from_hidden = Tensor::cat(
                vec![
                    Tensor::zeros([input, hidden], &device),
                    bias(&bias_hh, rz, hidden),
                    block(&weight_hh, rz, hidden),
                ],
                0,
            );
            Tensor::cat(vec![gates, from_input, from_hidden], 1)
        }
        Cell::Lstm => unreachable!("the LSTM's fused matrix is tensor_ops::fused_weights"),
    }
}

/// One GRU or RNN direction of one layer in tensor operations.
pub(crate) struct CellDirection {
    pub cell: Cell,
    /// The fused matrix (see [`fused_weights`]).
    pub weights: Tensor<2>,
    pub hidden: usize,
}

impl CellDirection {
    /// One time step: the new hidden state from the input `[batch, input]` and the previous one.
    fn step(&self, input: Tensor<2>, ones: &Tensor<2>, hidden: Tensor<2>) -> Tensor<2> {
        let h = self.hidden;
        let z =
            Tensor::cat(vec![input, ones.clone(), hidden.clone()], 1).matmul(self.weights.clone());
        match self.cell {
            Cell::Rnn => tanh(z),
            _ => {
                let gates = sigmoid(z.clone().narrow(1, 0, 2 * h));
                let reset = gates.clone().narrow(1, 0, h);
                let update = gates.narrow(1, h, h);
                let candidate = tanh(z.clone().narrow(1, 2 * h, h) + reset * z.narrow(1, 3 * h, h));
                candidate.clone() + update * (hidden - candidate)
            }
        }
    }

    /// Reads `inputs` (one `[batch, input]` tensor per step) left to right or right to left from
    /// `initial` (zeros when `None`); `masks` (one `[batch, 1]` tensor of 1 or 0 per step) stops
    /// each row at its length. The outputs, each at its step's own index, are kept when
    /// `keep_outputs`; the run's cell state, which these cells do not have, is zero.
    pub fn run(
        &self,
        inputs: &[Tensor<2>],
        initial: Option<Tensor<2>>,
        masks: Option<&[Tensor<2>]>,
        reverse: bool,
        keep_outputs: bool,
    ) -> DirectionRun {
        let [batch, _] = inputs[0].dims();
        let device: Device = inputs[0].device();
        let ones = Tensor::ones([batch, 1], &device);
        let mut state =
            initial.unwrap_or_else(|| Tensor::<2>::zeros([batch, self.hidden], &device));
        let mut outputs = Vec::with_capacity(if keep_outputs { inputs.len() } else { 0 });
        for t in reading_order(inputs.len(), reverse) {
            let hidden = self.step(inputs[t].clone(), &ones, state.clone());
            let (hidden, output) = match masks {
                Some(masks) => {
                    let keep = masks[t].clone().neg().add_scalar(1.0);
                    hold_finished(hidden, state, &masks[t], &keep)
                }
                None => (hidden.clone(), hidden),
            };
            if keep_outputs {
                outputs.push(output);
            }
            state = hidden;
        }
        if reverse {
            outputs.reverse();
        }
        DirectionRun {
            outputs,
            hidden: state,
            cell: Tensor::zeros([batch, self.hidden], &device),
        }
    }
}
