//! PyTorch's `nn.LSTM` for Burn, with each layer and direction one fused operation.
//!
//! [`Lstm`] behaves as `torch.nn.LSTM(input_size, hidden_size, num_layers, bidirectional=...,
//! dropout=..., batch_first=True)`: the same parameters under the same names and shapes
//! ([`Lstm::pytorch_parameters`]), the same initialisation, an optional initial state `(h_0,
//! c_0)`, the final state `(h_n, c_n)`, and variable-length rows with the meaning of PyTorch's
//! packed sequences. [`Lstm::forward_last`] keeps only what a classifier reads. With
//! [`LstmConfig::cell`] set to [`Cell::Gru`] or [`Cell::Rnn`] the same stack is `nn.GRU` or
//! `nn.RNN` (tanh), as PyTorch's `RNNBase` is with its mode; those run in tensor operations.
//!
//! Burn's own `nn::Lstm` runs eight small matrix products and dozens of element-wise operations
//! per time step. Here, on the backends this crate is built for, a layer's direction is one
//! operation over the whole sequence with a handwritten backward pass (gradients of the input,
//! of the initial state and of every parameter):
//!
//! | feature   | backend      | kernel |
//! |-----------|--------------|--------|
//! | `flex`    | Burn's flex (CPU) | Rust, vectorised, rows split across threads |
//! | `ndarray` | Burn's ndarray (CPU) | the same |
//! | `wgpu`    | Burn's wgpu  | CubeCL, one launch per sequence |
//!
//! Elsewhere (and on a GPU whose shared memory cannot hold a row's state) the same maths runs in
//! Burn tensor operations; [`Lstm::path`] says which and why. [`Lstm::trace`] gives every
//! step's gates and states, to look at what the layer does.
//!
//! ```
//! use burn::tensor::{Device, Tensor};
//! use fused_rnn::LstmConfig;
//!
//! let device = Device::default();
//! let lstm = LstmConfig::new(3, 8).with_num_layers(2).with_bidirectional(true).init(&device);
//! let input = Tensor::<3>::zeros([4, 10, 3], &device); // [batch, steps, features]
//! let (output, state) = lstm.forward(input, None, Some(&[10, 7, 3, 1]));
//! assert_eq!(output.dims(), [4, 10, 16]); // [batch, steps, directions * hidden]
//! assert_eq!(state.hidden.dims(), [4, 4, 8]); // [layers * directions, batch, hidden]
//! ```
#![warn(missing_docs)]

mod cells;
// Burn 0.22 deprecates ndarray in favour of flex; the kernel serves it while Burn has it.
#[cfg(any(feature = "cpu-kernel", feature = "cube"))]
#[cfg_attr(feature = "ndarray", allow(deprecated))]
mod kernel;
mod lstm;
mod pytorch;
mod tensor_ops;

pub use cells::Cell;
pub use lstm::{
    DirectionTrace, Fallback, Lstm, LstmConfig, LstmConfigError, LstmDirection, LstmPath, LstmState,
};
pub use pytorch::PytorchParameter;

/// The mean cross-entropy of `logits` `[batch, classes]` against the classes `targets` `[batch]`:
/// the mean of `-log softmax(row)[target]`, as Burn's `CrossEntropyLoss` (which computes it on
/// every backend but CubeCL's). On a CubeCL device (wgpu) it is one kernel launch, and its
/// gradient another, instead of about two dozen, with the same value within float rounding;
/// there a target that is not a class makes the loss NaN.
pub fn cross_entropy(
    logits: burn::tensor::Tensor<2>,
    targets: burn::tensor::Tensor<1, burn::tensor::Int>,
) -> burn::tensor::Tensor<1> {
    #[cfg(feature = "cube")]
    if kernel::is_cube(&logits.device()) {
        return kernel::cube_cross_entropy(logits, targets);
    }
    burn::nn::loss::CrossEntropyLossConfig::new()
        .init(&logits.device())
        .forward(logits, targets)
}
