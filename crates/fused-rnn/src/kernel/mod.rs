//! A whole LSTM sequence as one Burn operation with its own backward pass.
//!
//! Written in tensor operations (`tensor_ops.rs`), a time step is still a dozen nodes of the
//! autodiff graph, each a small kernel call (on a GPU, a launch) and an allocation. Here one
//! direction of one layer over all its time steps is a single operation, added to Burn through
//! its backend extension mechanism:
//!
//! - on the CPU backends compiled in (flex, ndarray: this crate's features of the same names),
//!   [`LstmSequenceOps`]: `host.rs` runs `sequence.rs`, plain Rust over host memory: one matrix
//!   product for every step's input projection, one per step for the recurrence, vectorised
//!   activations, the batch split across rayon's threads. It takes an initial state and each
//!   row's length, gives the final hidden and cell states, and its backward pass the gradients
//!   of the fused weights, of the inputs and of the initial state ([`AutodiffLstm`]);
//! - on Burn's CubeCL backend (wgpu: feature `wgpu`, feature `cube` for any runtime),
//!   [`LstmCubeSequenceOps`]: `cube/` runs the recurrence, input projection included, as one
//!   CubeCL kernel launch that walks every time step, with a second kernel for the backward
//!   pass ([`LstmCubeOps`]). It takes the same options and gives the same outputs.
//!
//! Other backends, and shapes the GPU kernel does not take (a hidden state too large for the
//! device's shared memory), keep the tensor-op path: [`kernel_on`] says which kernel a device has.

#[cfg(feature = "cube")]
mod cube;
#[cfg(feature = "cpu-kernel")]
mod host;
#[cfg(feature = "cpu-kernel")]
mod sequence;
#[cfg(feature = "cpu-kernel")]
mod simd;

use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, Dispatch, TensorMetadata, backend_extension};
use burn::tensor::{Device, Tensor};

/// Each batch row's number of valid steps, on the host (as PyTorch keeps `lengths` on the CPU).
pub(crate) type Lengths = std::sync::Arc<[usize]>;

/// The LSTM sequence operation on the CPU backends, and under autodiff over each.
#[cfg(feature = "cpu-kernel")]
#[backend_extension(
    Flex: cfg(feature = "flex"),
    NdArray: cfg(feature = "ndarray"),
    Autodiff
)]
pub(crate) trait LstmSequenceOps: Backend {
    /// One LSTM direction over `inputs` `[batch, steps, input]` with the fused `weights`
    /// `[input + 1 + hidden, 4 hidden]` of `tensor_ops.rs`, from a zero state, right to left
    /// when `reverse`, each row cut at its `lengths` (see `sequence::Reading`). Gives `[batch *
    /// kept + 2 * batch, hidden]` (`sequence::OutputLayout`): the hidden state of every step at
    /// its own index, batch-major (none with `last_only`), then every row's final hidden state,
    /// then every row's final cell state.
    fn lstm_sequence(
        inputs: FloatTensor<Self>,
        weights: FloatTensor<Self>,
        lengths: Option<Lengths>,
        reverse: bool,
        last_only: bool,
    ) -> FloatTensor<Self>;

    /// [`lstm_sequence`](Self::lstm_sequence) from the state `initial` `[batch, 2, hidden]`:
    /// each row's hidden then cell state.
    fn lstm_sequence_from(
        inputs: FloatTensor<Self>,
        weights: FloatTensor<Self>,
        initial: FloatTensor<Self>,
        lengths: Option<Lengths>,
        reverse: bool,
        last_only: bool,
    ) -> FloatTensor<Self>;
}

/// The LSTM sequence operation on Burn's CubeCL backend (with and without Burn's fusion) and
/// under autodiff over it, with [`LstmSequenceOps`]'s options and output layout.
#[cfg(feature = "cube")]
#[backend_extension(
    Cube: cfg(feature = "cube"),
    Fusion: cfg(feature = "fusion"),
    Autodiff
)]
pub(crate) trait LstmCubeSequenceOps: Backend {
    /// One LSTM direction over `inputs` `[batch, steps, input]` with the fused `weights`
    /// `[input + 1 + hidden, 4 hidden]`, from `initial` `[batch, 2, hidden]` (each row's hidden
    /// then cell state) when `has_initial`, else from zeros (`initial` is then any tensor of
    /// the call's, unread: Burn's fusion records no optional tensors), each row cut at its
    /// `lengths`, right to left when `reverse`. Gives `[batch * kept + 2 * batch, hidden]` as
    /// [`LstmSequenceOps::lstm_sequence`] does: every step's hidden state (none with
    /// `last_only`), then the final hidden and cell states.
    #[fusion(meta = |inputs, weights, _initial, _has_initial, _lengths, _reverse, last_only| fusion_specs::sequence(inputs, weights, *last_only))]
    fn lstm_cube_sequence(
        inputs: FloatTensor<Self>,
        weights: FloatTensor<Self>,
        initial: FloatTensor<Self>,
        has_initial: bool,
        lengths: Option<Lengths>,
        reverse: bool,
        last_only: bool,
    ) -> FloatTensor<Self>;
}

/// The two halves of the GPU kernel's training pass, which keep their state in device tensors.
#[cfg(feature = "cube")]
#[backend_extension(Cube, Fusion: cfg(feature = "fusion"))]
pub(crate) trait LstmCubeOps: Backend {
    /// [`LstmCubeSequenceOps::lstm_cube_sequence`]'s forward pass: its output, then what the
    /// backward pass reads: the hidden state each step read and every step's cell,
    /// `[batch, steps, hidden]`, and activated gates, `[batch, steps, 4 hidden]`, each at its
    /// step's own time index (zeros at a row's padded indices).
    #[fusion(meta = |inputs, weights, _initial, _has_initial, _lengths, _reverse, last_only| fusion_specs::saved(inputs, weights, *last_only))]
    fn lstm_cube_forward(
        inputs: FloatTensor<Self>,
        weights: FloatTensor<Self>,
        initial: FloatTensor<Self>,
        has_initial: bool,
        lengths: Option<Lengths>,
        reverse: bool,
        last_only: bool,
    ) -> (
        FloatTensor<Self>,
        FloatTensor<Self>,
        FloatTensor<Self>,
        FloatTensor<Self>,
    );

    /// The gradient of every step's gate pre-activations, `[batch, steps, 4 hidden]`, and that
    /// of the initial state, `[batch, 2, hidden]` (of a zero one when `has_initial` is off),
    /// from the output's gradient and what [`LstmCubeOps::lstm_cube_forward`] kept.
    #[fusion(meta = |_output_grad, gates, _cells, _weights, _initial, _has_initial, _lengths, _reverse, _last_only| fusion_specs::backward(gates))]
    #[allow(clippy::too_many_arguments)]
    fn lstm_cube_backward(
        output_grad: FloatTensor<Self>,
        gates: FloatTensor<Self>,
        cells: FloatTensor<Self>,
        weights: FloatTensor<Self>,
        initial: FloatTensor<Self>,
        has_initial: bool,
        lengths: Option<Lengths>,
        reverse: bool,
        last_only: bool,
    ) -> (FloatTensor<Self>, FloatTensor<Self>);

    /// The gradients of gate `gate`'s input weight, bias (each of its two biases gets the same)
    /// and hidden weight from that of the fused weights, `grad` `[input + 1 + hidden, 4 hidden]`
    /// ([`LstmWeightOps::lstm_pack_weights`]'s backward pass).
    #[fusion(meta = |grad, input, _gate| fusion_specs::unpacked(grad, *input))]
    fn lstm_unpack_gate(
        grad: FloatTensor<Self>,
        input: usize,
        gate: usize,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);
}

/// One gate's parameters as Burn's `Lstm` keeps them: the input and hidden transforms' weights
/// (`[input, hidden]`, `[hidden, hidden]`) and biases (`[hidden]` each).
#[cfg(feature = "cube")]
#[derive(burn::backend::ExtensionType)]
#[extension_type(fusion: cfg(feature = "fusion"))]
pub(crate) struct GateParams<B: Backend> {
    pub input_weight: FloatTensor<B>,
    pub input_bias: FloatTensor<B>,
    pub hidden_bias: FloatTensor<B>,
    pub hidden_weight: FloatTensor<B>,
}

/// The four gates' parameters of one LSTM direction, in the fused column order.
#[cfg(feature = "cube")]
#[derive(burn::backend::ExtensionType)]
#[extension_type(fusion: cfg(feature = "fusion"))]
pub(crate) struct LstmParams<B: Backend> {
    #[extension_type]
    pub input: GateParams<B>,
    #[extension_type]
    pub forget: GateParams<B>,
    #[extension_type]
    pub output: GateParams<B>,
    #[extension_type]
    pub cell: GateParams<B>,
}

/// The fused weight matrix of `tensor_ops.rs` built from each gate's own parameters on the device, a
/// small launch a gate (in tensor operations the same matrix is about twenty launches and as many
/// autodiff nodes); under autodiff its backward pass cuts the matrix's gradient back into each
/// parameter's, again a launch a gate ([`LstmCubeOps::lstm_unpack_gate`]).
#[cfg(feature = "cube")]
#[backend_extension(Cube, Fusion: cfg(feature = "fusion"), Autodiff)]
pub(crate) trait LstmWeightOps: Backend {
    /// `[input + 1 + hidden, 4 hidden]`: the input weights, the two biases' sum and the hidden
    /// weights of the gates `[input | forget | output | cell]`, the cell gate's doubled.
    #[fusion(meta = |params| fusion_specs::packed(params))]
    fn lstm_pack_weights(#[extension_type] params: LstmParams<Self>) -> FloatTensor<Self>;
}

/// The mean cross-entropy of a batch's logits as one GPU launch, and its gradient as another, in
/// place of Burn's `CrossEntropyLoss` (about two dozen launches forward and backward, the larger
/// part of a kernel-path training step's launches).
#[cfg(feature = "cube")]
#[backend_extension(Cube, Fusion: cfg(feature = "fusion"), Autodiff)]
pub(crate) trait CrossEntropyOps: Backend {
    /// `[1]`: the mean over the rows of `logits` `[batch, classes]` of `-log softmax(row)` at the
    /// row's class in `targets` `[batch]`; NaN where a target is not a class.
    #[fusion(dtype = logits, shape = burn::tensor::Shape::new([1]))]
    fn cross_entropy(
        logits: FloatTensor<Self>,
        targets: burn::backend::tensor::IntTensor<Self>,
    ) -> FloatTensor<Self>;
}

/// The two halves of [`CrossEntropyOps::cross_entropy`] under autodiff.
#[cfg(feature = "cube")]
#[backend_extension(Cube, Fusion: cfg(feature = "fusion"))]
pub(crate) trait CrossEntropyCubeOps: Backend {
    /// The loss, and the softmax of every row, `[batch, classes]`, that the backward pass reads.
    #[fusion(meta = |logits, _targets| fusion_specs::cross_entropy(logits))]
    fn cross_entropy_forward(
        logits: FloatTensor<Self>,
        targets: burn::backend::tensor::IntTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>);

    /// The logits' gradient, `(softmax - one_hot(target)) * loss_grad / batch`.
    #[fusion(dtype = softmax, shape = softmax)]
    fn cross_entropy_backward(
        loss_grad: FloatTensor<Self>,
        softmax: FloatTensor<Self>,
        targets: burn::backend::tensor::IntTensor<Self>,
    ) -> FloatTensor<Self>;
}

/// Whether `device` is a CubeCL one (wgpu), with or without autodiff.
#[cfg(feature = "cube")]
pub(crate) fn is_cube(device: &Device) -> bool {
    use burn::backend::DispatchDevice;
    matches!(
        device.clone().inner().as_dispatch(),
        DispatchDevice::Cube(_)
    )
}

/// [`CrossEntropyOps::cross_entropy`] on tensors.
///
/// # Panics
/// If the device is not a CubeCL one ([`is_cube`]).
#[cfg(feature = "cube")]
pub(crate) fn cube_cross_entropy(
    logits: Tensor<2>,
    targets: Tensor<1, burn::tensor::Int>,
) -> Tensor<1> {
    Tensor::from_dispatch(<Dispatch as CrossEntropyOps>::cross_entropy(
        logits.into_dispatch(),
        targets.into_dispatch(),
    ))
}

/// The output shapes that Burn's fusion records for each operation before running it.
#[cfg(feature = "fusion")]
mod fusion_specs {
    use burn::backend::fusion::custom::TensorSpec;
    use burn::tensor::Shape;

    fn sizes(inputs: &TensorSpec, weights: &TensorSpec) -> (usize, usize, usize) {
        (inputs.shape[0], inputs.shape[1], weights.shape[1] / 4)
    }

    pub(super) fn sequence(
        inputs: &TensorSpec,
        weights: &TensorSpec,
        last_only: bool,
    ) -> TensorSpec {
        let (batch, steps, hidden) = sizes(inputs, weights);
        let kept = if last_only { 0 } else { steps };
        TensorSpec::new(Shape::new([batch * kept + 2 * batch, hidden]), inputs.dtype)
    }

    #[cfg(feature = "cube")]
    pub(super) fn saved(
        inputs: &TensorSpec,
        weights: &TensorSpec,
        last_only: bool,
    ) -> (TensorSpec, TensorSpec, TensorSpec, TensorSpec) {
        let (batch, steps, hidden) = sizes(inputs, weights);
        let state = TensorSpec::new(Shape::new([batch, steps, hidden]), inputs.dtype);
        let gates = TensorSpec::new(Shape::new([batch, steps, 4 * hidden]), inputs.dtype);
        (
            sequence(inputs, weights, last_only),
            state.clone(),
            state,
            gates,
        )
    }

    #[cfg(feature = "cube")]
    pub(super) fn backward(gates: &TensorSpec) -> (TensorSpec, TensorSpec) {
        let [batch, _, width] = [gates.shape[0], gates.shape[1], gates.shape[2]];
        (
            gates.clone(),
            TensorSpec::new(Shape::new([batch, 2, width / 4]), gates.dtype),
        )
    }

    #[cfg(feature = "cube")]
    pub(super) fn cross_entropy(logits: &TensorSpec) -> (TensorSpec, TensorSpec) {
        (
            TensorSpec::new(Shape::new([1]), logits.dtype),
            logits.clone(),
        )
    }

    #[cfg(feature = "cube")]
    pub(super) fn packed(params: &super::LstmParamsMetadata) -> TensorSpec {
        let gate = &params.input;
        let [input, hidden] = [gate.input_weight.shape[0], gate.input_weight.shape[1]];
        TensorSpec::new(
            Shape::new([input + 1 + hidden, 4 * hidden]),
            gate.input_weight.dtype,
        )
    }

    #[cfg(feature = "cube")]
    pub(super) fn unpacked(
        grad: &TensorSpec,
        input: usize,
    ) -> (TensorSpec, TensorSpec, TensorSpec) {
        let hidden = grad.shape[1] / 4;
        let spec = |shape: Shape| TensorSpec::new(shape, grad.dtype);
        (
            spec(Shape::new([input, hidden])),
            spec(Shape::new([hidden])),
            spec(Shape::new([hidden, hidden])),
        )
    }
}

/// How a CPU backend runs [`LstmSequenceOps::lstm_sequence`] under autodiff, registering its
/// backward pass.
#[cfg(feature = "cpu-kernel")]
pub(crate) trait AutodiffLstm: LstmSequenceOps {
    /// [`LstmSequenceOps::lstm_sequence`] on `Autodiff<Self, C>`.
    fn autodiff_lstm_sequence<C: CheckpointStrategy>(
        inputs: FloatTensor<Autodiff<Self, C>>,
        weights: FloatTensor<Autodiff<Self, C>>,
        initial: Option<FloatTensor<Autodiff<Self, C>>>,
        lengths: Option<Lengths>,
        reverse: bool,
        last_only: bool,
    ) -> FloatTensor<Autodiff<Self, C>>;
}

#[cfg(feature = "cpu-kernel")]
impl<B: AutodiffLstm, C: CheckpointStrategy> LstmSequenceOps for Autodiff<B, C> {
    fn lstm_sequence(
        inputs: FloatTensor<Self>,
        weights: FloatTensor<Self>,
        lengths: Option<Lengths>,
        reverse: bool,
        last_only: bool,
    ) -> FloatTensor<Self> {
        B::autodiff_lstm_sequence::<C>(inputs, weights, None, lengths, reverse, last_only)
    }

    fn lstm_sequence_from(
        inputs: FloatTensor<Self>,
        weights: FloatTensor<Self>,
        initial: FloatTensor<Self>,
        lengths: Option<Lengths>,
        reverse: bool,
        last_only: bool,
    ) -> FloatTensor<Self> {
        B::autodiff_lstm_sequence::<C>(inputs, weights, Some(initial), lengths, reverse, last_only)
    }
}

/// How the CubeCL backend runs [`LstmCubeSequenceOps::lstm_cube_sequence`] under autodiff: its
/// forward pass keeps what its backward pass reads in device tensors.
#[cfg(feature = "cube")]
pub(crate) trait AutodiffCubeLstm: LstmCubeSequenceOps {
    /// [`LstmCubeSequenceOps::lstm_cube_sequence`] on `Autodiff<Self, C>`.
    fn autodiff_lstm_cube_sequence<C: CheckpointStrategy>(
        inputs: FloatTensor<Autodiff<Self, C>>,
        weights: FloatTensor<Autodiff<Self, C>>,
        initial: Option<FloatTensor<Autodiff<Self, C>>>,
        lengths: Option<Lengths>,
        reverse: bool,
        last_only: bool,
    ) -> FloatTensor<Autodiff<Self, C>>;
}

#[cfg(feature = "cube")]
impl<B: AutodiffCubeLstm, C: CheckpointStrategy> LstmCubeSequenceOps for Autodiff<B, C> {
    fn lstm_cube_sequence(
        inputs: FloatTensor<Self>,
        weights: FloatTensor<Self>,
        initial: FloatTensor<Self>,
        has_initial: bool,
        lengths: Option<Lengths>,
        reverse: bool,
        last_only: bool,
    ) -> FloatTensor<Self> {
        let initial = has_initial.then_some(initial);
        B::autodiff_lstm_cube_sequence::<C>(inputs, weights, initial, lengths, reverse, last_only)
    }
}

/// The whole-sequence kernels a device can have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kernel {
    /// The CPU kernel (flex, ndarray): every option of the layer (initial state, lengths, both
    /// directions, every step or the final state alone).
    Host,
    /// The CubeCL kernel (wgpu): every option of the layer too.
    #[cfg_attr(not(feature = "cube"), allow(dead_code))]
    Cube,
}

/// The kernel that runs layers of `hidden` units on `device`, with or without autodiff: a CPU
/// backend whose feature this crate was built with, or a CubeCL device (wgpu) whose shared
/// memory holds one batch row's state; `None` elsewhere.
pub(crate) fn kernel_on(device: &Device, hidden: usize) -> Option<Kernel> {
    #[allow(unused_imports)]
    use burn::backend::DispatchDevice;
    let _ = hidden;
    match device.clone().inner().as_dispatch() {
        #[cfg(feature = "flex")]
        DispatchDevice::Flex(_) => Some(Kernel::Host),
        #[cfg(feature = "ndarray")]
        DispatchDevice::NdArray(_) => Some(Kernel::Host),
        #[cfg(feature = "cube")]
        DispatchDevice::Cube(device) => {
            cube::fits(cube::Target::of(device.client().properties()), hidden)
                .then_some(Kernel::Cube)
        }
        #[allow(unreachable_patterns)]
        _ => None,
    }
}

/// [`LstmSequenceOps::lstm_sequence`] on tensors.
///
/// # Panics
/// If the device is not a CPU one ([`kernel_on`]), or the shapes disagree.
#[cfg(feature = "cpu-kernel")]
pub(crate) fn host_sequence(
    inputs: Tensor<3>,
    weights: Tensor<2>,
    initial: Option<Tensor<3>>,
    lengths: Option<Lengths>,
    reverse: bool,
    last_only: bool,
) -> Tensor<2> {
    let (inputs, weights) = (inputs.into_dispatch(), weights.into_dispatch());
    let output = match initial {
        None => <Dispatch as LstmSequenceOps>::lstm_sequence(
            inputs, weights, lengths, reverse, last_only,
        ),
        Some(initial) => <Dispatch as LstmSequenceOps>::lstm_sequence_from(
            inputs,
            weights,
            initial.into_dispatch(),
            lengths,
            reverse,
            last_only,
        ),
    };
    Tensor::from_dispatch(output)
}

/// [`LstmCubeSequenceOps::lstm_cube_sequence`] on tensors, laid out as [`host_sequence`]'s.
///
/// # Panics
/// If the device is not a CubeCL one that [`kernel_on`] accepts, or the shapes disagree.
#[cfg(feature = "cube")]
pub(crate) fn cube_sequence(
    inputs: Tensor<3>,
    weights: Tensor<2>,
    initial: Option<Tensor<3>>,
    lengths: Option<Lengths>,
    reverse: bool,
    last_only: bool,
) -> Tensor<2> {
    let has_initial = initial.is_some();
    // Without a state the kernels read none; the weights stand in for the argument.
    let initial = initial.map_or_else(|| weights.clone().into_dispatch(), Tensor::into_dispatch);
    let output = <Dispatch as LstmCubeSequenceOps>::lstm_cube_sequence(
        inputs.into_dispatch(),
        weights.into_dispatch(),
        initial,
        has_initial,
        lengths,
        reverse,
        last_only,
    );
    Tensor::from_dispatch(output)
}

/// The fused weight matrix of one direction (see `tensor_ops.rs`) from its parameters in
/// PyTorch's layout (`weight_ih` `[4 hidden, input]`, `weight_hh` `[4 hidden, hidden]`, biases
/// `[4 hidden]`, gates `i, f, g, o`), built on the device by
/// [`LstmWeightOps::lstm_pack_weights`], where they are on a CubeCL device; `None` otherwise
/// (the caller builds it in tensor operations).
#[cfg(feature = "cube")]
pub(crate) fn packed_weights(
    weight_ih: Tensor<2>,
    weight_hh: Tensor<2>,
    bias_ih: Tensor<1>,
    bias_hh: Tensor<1>,
) -> Option<Tensor<2>> {
    if !is_cube(&weight_ih.device()) {
        return None;
    }
    let hidden = weight_hh.dims()[1];
    // Gate `k` of PyTorch's order as the pack kernel takes it: `[input, hidden]` weights.
    let gate = |k: usize| GateParams {
        input_weight: weight_ih
            .clone()
            .narrow(0, k * hidden, hidden)
            .transpose()
            .into_dispatch(),
        input_bias: bias_ih
            .clone()
            .narrow(0, k * hidden, hidden)
            .into_dispatch(),
        hidden_bias: bias_hh
            .clone()
            .narrow(0, k * hidden, hidden)
            .into_dispatch(),
        hidden_weight: weight_hh
            .clone()
            .narrow(0, k * hidden, hidden)
            .transpose()
            .into_dispatch(),
    };
    let params = LstmParams {
        input: gate(0),
        forget: gate(1),
        cell: gate(2),
        output: gate(3),
    };
    Some(Tensor::from_dispatch(
        <Dispatch as LstmWeightOps>::lstm_pack_weights(params),
    ))
}

/// Sizes of a call: `batch` sequences of `steps` steps of `input` features, `hidden` units.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Dims {
    pub batch: usize,
    pub steps: usize,
    pub input: usize,
    pub hidden: usize,
}

impl Dims {
    /// Rows of the fused weight matrix.
    pub fn weight_rows(&self) -> usize {
        self.input + 1 + self.hidden
    }

    /// Columns of the fused weight matrix: the four gates.
    pub fn gates(&self) -> usize {
        4 * self.hidden
    }
}

/// The sizes of a call, checked.
fn dims(inputs: &impl TensorMetadata, weights: &impl TensorMetadata) -> Dims {
    let (inputs, weights) = (inputs.shape(), weights.shape());
    assert!(
        inputs.num_dims() == 3 && weights.num_dims() == 2,
        "lstm_sequence: inputs [batch, steps, input] and weights [input + 1 + hidden, 4 hidden], \
         got {inputs:?} and {weights:?}"
    );
    let (batch, steps, input) = (inputs[0], inputs[1], inputs[2]);
    let hidden = weights[1] / 4;
    assert!(
        weights[1] == 4 * hidden && weights[0] == input + 1 + hidden,
        "lstm_sequence: weights {weights:?} do not fit inputs {inputs:?}"
    );
    assert!(
        steps > 0 && hidden > 0,
        "lstm_sequence: needs at least one step and one hidden unit, got inputs {inputs:?} and \
         weights {weights:?}"
    );
    Dims {
        batch,
        steps,
        input,
        hidden,
    }
}
