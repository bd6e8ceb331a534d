//! A whole LSTM sequence as one Burn operation with its own backward pass.
//!
//! Written in tensor operations (`fused.rs`), a time step is still a dozen nodes of the autodiff
//! graph, each a small kernel call (on a GPU, a launch) and an allocation. Here one direction of
//! one layer over all its time steps is a single operation, added to Burn through its backend
//! extension mechanism ([`LstmSequenceOps`]):
//!
//! - on the CPU backends compiled in (flex, ndarray: this crate's features of the same names),
//!   `host.rs` runs `sequence.rs`, plain Rust over host memory: one matrix product for every
//!   step's input projection, one per step for the recurrence, vectorised activations, the batch
//!   split across rayon's threads;
//! - on Burn's CubeCL backend (wgpu: feature `wgpu`, feature `cube` for any runtime), `cube/` runs
//!   the recurrence, input projection included, as one CubeCL kernel launch that walks every
//!   time step, with a second kernel for the backward pass ([`LstmCubeOps`]);
//! - under autodiff ([`AutodiffLstm`]), each keeps what its backward pass needs and gives the
//!   gradients of the fused weights and, where the inputs are tracked (upper layers), of the
//!   inputs; Burn carries them on through the concatenation of the weights to each gate's own
//!   parameters, as for the tensor-op path.
//!
//! Other backends, and shapes the GPU kernel does not take (a hidden state too large for the
//! device's shared memory), keep the tensor-op path: [`runs_on`] says which path a device takes.

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

/// The LSTM sequence operation, implemented for the CPU backends, for the CubeCL backend (with
/// and without Burn's fusion) and for autodiff over each.
#[backend_extension(
    Flex: cfg(feature = "flex"),
    NdArray: cfg(feature = "ndarray"),
    Cube: cfg(feature = "cube"),
    Fusion: cfg(feature = "fusion"),
    Autodiff
)]
pub(crate) trait LstmSequenceOps: Backend {
    /// The hidden state of every step, `[batch, steps, hidden]`, of one LSTM direction over
    /// `inputs` `[batch, steps, input]` from a zero state, with the fused `weights`
    /// `[input + 1 + hidden, 4 hidden]` of `fused.rs`; right to left when `reverse`. With
    /// `last_only`, the last index's alone, `[batch, 1, hidden]` (all a classifier's top layer
    /// reads).
    #[fusion(meta = |inputs, weights, _reverse, last_only| fusion_specs::sequence(inputs, weights, *last_only))]
    fn lstm_sequence(
        inputs: FloatTensor<Self>,
        weights: FloatTensor<Self>,
        reverse: bool,
        last_only: bool,
    ) -> FloatTensor<Self>;
}

/// The two halves of the GPU kernel's training pass, which keep their state in device tensors.
#[cfg(feature = "cube")]
#[backend_extension(Cube, Fusion: cfg(feature = "fusion"))]
pub(crate) trait LstmCubeOps: Backend {
    /// [`LstmSequenceOps::lstm_sequence`]'s forward pass: its output, then what the backward
    /// pass reads: the hidden state each step read (the previous step's, zero for the first) and
    /// every step's cell, `[batch, steps, hidden]`, and activated gates, `[batch, steps,
    /// 4 hidden]`, each at its step's own index.
    #[fusion(meta = |inputs, weights, _reverse, last_only| fusion_specs::saved(inputs, weights, *last_only))]
    fn lstm_cube_forward(
        inputs: FloatTensor<Self>,
        weights: FloatTensor<Self>,
        reverse: bool,
        last_only: bool,
    ) -> (
        FloatTensor<Self>,
        FloatTensor<Self>,
        FloatTensor<Self>,
        FloatTensor<Self>,
    );

    /// The gradient of every step's gate pre-activations, `[batch, steps, 4 hidden]`, from the
    /// outputs' gradient and what [`LstmCubeOps::lstm_cube_forward`] kept.
    #[fusion(dtype = gates, shape = gates)]
    fn lstm_cube_backward(
        output_grad: FloatTensor<Self>,
        gates: FloatTensor<Self>,
        cells: FloatTensor<Self>,
        weights: FloatTensor<Self>,
        reverse: bool,
        last_only: bool,
    ) -> FloatTensor<Self>;

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

/// The fused weight matrix of `fused.rs` built from each gate's own parameters on the device, a
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
        let kept = if last_only { 1 } else { steps };
        TensorSpec::new(Shape::new([batch, kept, hidden]), inputs.dtype)
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

/// How a backend runs [`LstmSequenceOps::lstm_sequence`] under autodiff: what its forward pass
/// keeps and how its backward pass runs differ between host memory and device tensors.
pub(crate) trait AutodiffLstm: LstmSequenceOps {
    /// [`LstmSequenceOps::lstm_sequence`] on `Autodiff<Self, C>`, registering its backward pass.
    fn autodiff_lstm_sequence<C: CheckpointStrategy>(
        inputs: FloatTensor<Autodiff<Self, C>>,
        weights: FloatTensor<Autodiff<Self, C>>,
        reverse: bool,
        last_only: bool,
    ) -> FloatTensor<Autodiff<Self, C>>;
}

impl<B: AutodiffLstm, C: CheckpointStrategy> LstmSequenceOps for Autodiff<B, C> {
    fn lstm_sequence(
        inputs: FloatTensor<Self>,
        weights: FloatTensor<Self>,
        reverse: bool,
        last_only: bool,
    ) -> FloatTensor<Self> {
        B::autodiff_lstm_sequence::<C>(inputs, weights, reverse, last_only)
    }
}

/// Whether [`lstm_sequence`] runs on `device` for layers of `hidden` units: a CPU backend whose
/// feature this crate was built with, or a CubeCL device (wgpu) whose shared memory holds
/// one batch row's state, with or without autodiff.
pub(crate) fn runs_on(device: &Device, hidden: usize) -> bool {
    #[allow(unused_imports)]
    use burn::backend::DispatchDevice;
    let _ = hidden;
    match device.clone().inner().as_dispatch() {
        #[cfg(feature = "flex")]
        DispatchDevice::Flex(_) => true,
        #[cfg(feature = "ndarray")]
        DispatchDevice::NdArray(_) => true,
        #[cfg(feature = "cube")]
        DispatchDevice::Cube(device) => {
            cube::fits(cube::Target::of(device.client().properties()), hidden)
        }
        #[allow(unreachable_patterns)]
        _ => false,
    }
}

/// [`LstmSequenceOps::lstm_sequence`] on tensors.
///
/// # Panics
/// If the device is not one [`runs_on`] accepts, or the shapes disagree.
pub(crate) fn lstm_sequence(
    inputs: Tensor<3>,
    weights: Tensor<2>,
    reverse: bool,
    last_only: bool,
) -> Tensor<3> {
    let output = <Dispatch as LstmSequenceOps>::lstm_sequence(
        inputs.into_dispatch(),
        weights.into_dispatch(),
        reverse,
        last_only,
    );
    Tensor::from_dispatch(output)
}

/// The fused weight matrix of `lstm` (see `fused.rs`) built on the device by
/// [`LstmWeightOps::lstm_pack_weights`], where `lstm` is on a CubeCL device and every gate has
/// both biases; `None` otherwise (the caller builds it in tensor operations).
#[cfg(feature = "cube")]
pub(crate) fn packed_weights(lstm: &burn::nn::Lstm) -> Option<Tensor<2>> {
    if !is_cube(&lstm.input_gate.input_transform.weight.device()) {
        return None;
    }
    let gate = |gate: &burn::nn::GateController| {
        let (input, hidden) = (&gate.input_transform, &gate.hidden_transform);
        Some(GateParams {
            input_weight: input.weight.val().into_dispatch(),
            input_bias: input.bias.as_ref()?.val().into_dispatch(),
            hidden_bias: hidden.bias.as_ref()?.val().into_dispatch(),
            hidden_weight: hidden.weight.val().into_dispatch(),
        })
    };
    let params = LstmParams {
        input: gate(&lstm.input_gate)?,
        forget: gate(lstm.forget_gate.as_ref()?)?,
        output: gate(&lstm.output_gate)?,
        cell: gate(&lstm.cell_gate)?,
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
