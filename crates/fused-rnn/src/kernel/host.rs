//! The LSTM sequence operation on the CPU backends (flex, ndarray): Burn glue around the host
//! code of `sequence.rs`. Operands are read into host memory, the forward pass keeps its gate
//! activations in a [`Forward`], and the handwritten backward pass (`Forward::backward`) gives the
//! gradients of the fused weights and, where the inputs are tracked (upper layers), of the inputs.

use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, TensorMetadata};
use burn::tensor::{DType, TensorData};

use burn::backend::autodiff::NodeId;

use super::sequence::{self, Forward, Reading};
use super::{AutodiffLstm, Dims, Lengths, LstmSequenceOps, dims};

/// The value of a future that a CPU backend has already resolved (its reads never wait); polls
/// again, yielding the thread, should one not be.
fn resolved<F: Future>(future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    let mut context = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(value) = future.as_mut().poll(&mut context) {
            return value;
        }
        std::thread::yield_now();
    }
}

/// A host copy of a float tensor as `f32`, with its dtype (to give results back in it).
fn to_host<B: Backend>(tensor: FloatTensor<B>) -> (Vec<f32>, DType) {
    let data = match resolved(B::float_into_data(tensor)) {
        Ok(data) => data,
        // A CPU backend's read does not fail; there is no error path to report it through.
        Err(error) => panic!("reading a tensor of the CPU backend failed: {error:?}"),
    };
    let dtype = data.dtype();
    let values = match data.convert::<f32>().try_into_vec::<f32>() {
        Ok(values) => values,
        Err(error) => panic!("a tensor converted to f32 does not read as f32: {error:?}"),
    };
    (values, dtype)
}

fn from_host<B: Backend>(
    values: Vec<f32>,
    shape: Vec<usize>,
    dtype: DType,
    device: &B::Device,
) -> FloatTensor<B> {
    B::float_from_data(TensorData::new(values, shape).convert_dtype(dtype), device)
}

/// The dtypes a call's results go back in: the outputs and the inputs' gradient in the inputs',
/// the weights' gradient in the weights', the initial state's in its own. The kernel itself
/// computes in `f32`.
#[derive(Debug, Clone, Copy)]
struct DTypes {
    inputs: DType,
    weights: DType,
    initial: Option<DType>,
}

/// A call's operands read into host memory, with what the results need to go back.
struct HostCall<D> {
    dims: Dims,
    inputs: Vec<f32>,
    weights: Vec<f32>,
    initial: Option<Vec<f32>>,
    reading: Reading,
    dtypes: DTypes,
    device: D,
}

impl<D> HostCall<D> {
    /// The outputs `[rows, hidden]` (see `sequence::OutputLayout`) as a tensor of the inputs'
    /// dtype on the call's device.
    fn outputs<B: Backend<Device = D>>(&self, outputs: Vec<f32>) -> FloatTensor<B> {
        let rows = sequence::OutputLayout::new(self.dims, self.reading.last_only).rows();
        let shape = vec![rows, self.dims.hidden];
        from_host::<B>(outputs, shape, self.dtypes.inputs, &self.device)
    }
}

/// The operands of one call, as the op receives them.
struct Operands<B: Backend> {
    inputs: FloatTensor<B>,
    weights: FloatTensor<B>,
    initial: Option<FloatTensor<B>>,
    reading: Reading,
}

/// Reads a call's operands, checking their shapes and lengths.
fn read_call<B: Backend>(operands: Operands<B>) -> HostCall<B::Device> {
    let Operands {
        inputs,
        weights,
        initial,
        reading,
    } = operands;
    let dims = dims(&inputs, &weights);
    if let Some(initial) = &initial {
        let shape = initial.shape();
        assert!(
            shape.dims::<3>() == [dims.batch, 2, dims.hidden],
            "lstm_sequence: the initial state must be [batch, 2, hidden] = [{}, 2, {}], got \
             {shape:?}",
            dims.batch,
            dims.hidden
        );
    }
    if let Some(lengths) = &reading.lengths {
        assert!(
            lengths.len() == dims.batch && lengths.iter().all(|l| (1..=dims.steps).contains(l)),
            "lstm_sequence: {} lengths in 1..={} expected, got {lengths:?}",
            dims.batch,
            dims.steps
        );
    }
    let device = inputs.device();
    let (inputs, inputs_dtype) = to_host::<B>(inputs);
    let (weights, weights_dtype) = to_host::<B>(weights);
    let (initial, initial_dtype) = match initial.map(to_host::<B>) {
        Some((values, dtype)) => (Some(values), Some(dtype)),
        None => (None, None),
    };
    HostCall {
        dims,
        inputs,
        weights,
        initial,
        reading,
        dtypes: DTypes {
            inputs: inputs_dtype,
            weights: weights_dtype,
            initial: initial_dtype,
        },
        device,
    }
}

/// The outputs alone, nothing kept for a backward pass.
fn sequence_on<B: Backend>(operands: Operands<B>) -> FloatTensor<B> {
    let call = read_call::<B>(operands);
    let outputs = sequence::infer(
        call.dims,
        &call.inputs,
        &call.weights,
        call.initial.as_deref(),
        &call.reading,
    );
    call.outputs::<B>(outputs)
}

/// The operands of a call from its arguments.
fn operands<B: Backend>(
    inputs: FloatTensor<B>,
    weights: FloatTensor<B>,
    initial: Option<FloatTensor<B>>,
    lengths: Option<Lengths>,
    reverse: bool,
    last_only: bool,
) -> Operands<B> {
    Operands {
        inputs,
        weights,
        initial,
        reading: Reading {
            reverse,
            last_only,
            lengths,
        },
    }
}

macro_rules! host_backend {
    ($backend:ty, $feature:literal) => {
        #[cfg(feature = $feature)]
        impl LstmSequenceOps for $backend {
            fn lstm_sequence(
                inputs: FloatTensor<Self>,
                weights: FloatTensor<Self>,
                lengths: Option<Lengths>,
                reverse: bool,
                last_only: bool,
            ) -> FloatTensor<Self> {
                sequence_on::<Self>(operands(inputs, weights, None, lengths, reverse, last_only))
            }

            fn lstm_sequence_from(
                inputs: FloatTensor<Self>,
                weights: FloatTensor<Self>,
                initial: FloatTensor<Self>,
                lengths: Option<Lengths>,
                reverse: bool,
                last_only: bool,
            ) -> FloatTensor<Self> {
                sequence_on::<Self>(operands(
                    inputs,
                    weights,
                    Some(initial),
                    lengths,
                    reverse,
                    last_only,
                ))
            }
        }

        #[cfg(feature = $feature)]
        impl AutodiffLstm for $backend {
            fn autodiff_lstm_sequence<C: CheckpointStrategy>(
                inputs: FloatTensor<Autodiff<Self, C>>,
                weights: FloatTensor<Autodiff<Self, C>>,
                initial: Option<FloatTensor<Autodiff<Self, C>>>,
                lengths: Option<Lengths>,
                reverse: bool,
                last_only: bool,
            ) -> FloatTensor<Autodiff<Self, C>> {
                autodiff_sequence_on::<Self, C>(operands(
                    inputs, weights, initial, lengths, reverse, last_only,
                ))
            }
        }
    };
}

host_backend!(burn::backend::Flex, "flex");
host_backend!(burn::backend::NdArray, "ndarray");

/// The backward pass of [`LstmSequenceOps::lstm_sequence`]; parents `[inputs, weights]`, and
/// the initial state when the call has one (`N = 3`).
#[derive(Debug)]
struct LstmSequenceBackward<const N: usize>;

/// What the backward pass needs: the forward pass's activations, and how to hand results back.
#[derive(Debug, Clone)]
struct Saved<D> {
    forward: Arc<Forward>,
    dtypes: DTypes,
    device: D,
}

/// Runs the backward pass and registers the gradients of the parents that are tracked.
fn register<B: Backend>(
    saved: Saved<B::Device>,
    output_grad: FloatTensor<B>,
    [inputs_node, weights_node, initial_node]: [Option<NodeId>; 3],
    grads: &mut Gradients,
) {
    let Saved {
        forward,
        dtypes,
        device,
    } = saved;
    let dims = forward.dims();
    let (output_grad, _) = to_host::<B>(output_grad);
    let computed = forward.backward(&output_grad, inputs_node.is_some());
    if let Some(node) = weights_node {
        let shape = vec![dims.weight_rows(), 4 * dims.hidden];
        let grad = from_host::<B>(computed.weights, shape, dtypes.weights, &device);
        grads.register::<B>(node, grad);
    }
    if let (Some(node), Some(inputs_grad)) = (inputs_node, computed.inputs) {
        let shape = vec![dims.batch, dims.steps, dims.input];
        let grad = from_host::<B>(inputs_grad, shape, dtypes.inputs, &device);
        grads.register::<B>(node, grad);
    }
    if let (Some(node), Some(initial_grad), Some(dtype)) =
        (initial_node, computed.initial, dtypes.initial)
    {
        let shape = vec![dims.batch, 2, dims.hidden];
        let grad = from_host::<B>(initial_grad, shape, dtype, &device);
        grads.register::<B>(node, grad);
    }
}

impl<B: Backend, const N: usize> Backward<B, N> for LstmSequenceBackward<N> {
    type State = Saved<B::Device>;

    fn backward(
        self,
        ops: Ops<Self::State, N>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        let output_grad = grads.consume::<B>(&ops.node);
        // `[inputs, weights]`, then the initial state when the call had one.
        let mut parents = [None; 3];
        for (slot, parent) in parents.iter_mut().zip(ops.parents) {
            *slot = parent.map(|node| node.id);
        }
        register::<B>(ops.state, output_grad, parents, grads);
    }
}

/// The forward pass of a tracked call, kept for its backward pass, and its output.
fn tracked_forward<B: Backend>(operands: Operands<B>) -> (Saved<B::Device>, FloatTensor<B>) {
    let mut call = read_call::<B>(operands);
    // The forward pass keeps the weights for its backward pass.
    let weights = std::mem::take(&mut call.weights);
    let forward = Forward::run(
        call.dims,
        &call.inputs,
        weights,
        call.initial.as_deref(),
        call.reading.clone(),
    );
    let output = call.outputs::<B>(forward.outputs());
    let saved = Saved {
        forward: Arc::new(forward),
        dtypes: call.dtypes,
        device: call.device,
    };
    (saved, output)
}

/// [`LstmSequenceOps::lstm_sequence`] under autodiff on a CPU backend `B`.
fn autodiff_sequence_on<B: Backend, C: CheckpointStrategy>(
    operands: Operands<Autodiff<B, C>>,
) -> FloatTensor<Autodiff<B, C>> {
    let Operands {
        inputs,
        weights,
        initial,
        reading,
    } = operands;
    let (inputs, inputs_node) = inputs.into_parts();
    let (weights, weights_node) = weights.into_parts();
    let inner = |initial| Operands {
        inputs,
        weights,
        initial,
        reading,
    };
    match initial.map(|initial| initial.into_parts()) {
        None => match LstmSequenceBackward::<2>
            .prepare::<C>([inputs_node, weights_node])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let (saved, output) = tracked_forward::<B>(inner(None));
                prep.finish(saved, output)
            }
            OpsKind::UnTracked(prep) => prep.finish(sequence_on::<B>(inner(None))),
        },
        Some((initial, initial_node)) => match LstmSequenceBackward::<3>
            .prepare::<C>([inputs_node, weights_node, initial_node])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let (saved, output) = tracked_forward::<B>(inner(Some(initial)));
                prep.finish(saved, output)
            }
            OpsKind::UnTracked(prep) => prep.finish(sequence_on::<B>(inner(Some(initial)))),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::{Kernel, host_sequence, kernel_on};
    use burn::tensor::{Device, Tensor};

    #[cfg(feature = "flex")]
    #[test]
    fn flex_devices_take_the_kernel() {
        assert_eq!(kernel_on(&Device::flex(), 64), Some(Kernel::Host));
        assert_eq!(
            kernel_on(&Device::flex().autodiff(), 64),
            Some(Kernel::Host)
        );
    }

    /// Through Burn's autodiff: the kernel's outputs, and the gradients it registers for its
    /// three parents, against the host functions it wraps.
    #[cfg(feature = "flex")]
    #[test]
    fn autodiff_registers_every_gradient() {
        let device = Device::flex().autodiff();
        let (batch, steps, input, hidden) = (2, 3, 4, 5);
        let inputs: Vec<f32> = (0..batch * steps * input)
            .map(|i| (i as f32 * 0.37).sin())
            .collect();
        let weights: Vec<f32> = (0..(input + 1 + hidden) * 4 * hidden)
            .map(|i| (i as f32 * 0.11).cos() * 0.5)
            .collect();
        let initial: Vec<f32> = (0..batch * 2 * hidden)
            .map(|i| (i as f32 * 0.23).sin() * 0.5)
            .collect();
        let lengths: Lengths = Arc::from(&[3, 2][..]);
        let tracked = |values: Vec<f32>, shape: Vec<usize>| {
            Tensor::<3>::from_data(TensorData::new(values, shape), &device).require_grad()
        };
        let x = tracked(inputs.clone(), vec![batch, steps, input]);
        let h = tracked(initial.clone(), vec![batch, 2, hidden]);
        let w = Tensor::<2>::from_data(
            TensorData::new(weights.clone(), [input + 1 + hidden, 4 * hidden]),
            &device,
        )
        .require_grad();
        let out = host_sequence(
            x.clone(),
            w.clone(),
            Some(h.clone()),
            Some(lengths.clone()),
            true,
            false,
        );
        let grads = out.clone().sum().backward();

        let dims = Dims {
            batch,
            steps,
            input,
            hidden,
        };
        let reading = Reading {
            reverse: true,
            last_only: false,
            lengths: Some(lengths),
        };
        let forward = Forward::run(dims, &inputs, weights, Some(&initial), reading);
        let read = |t: Tensor<3>| t.into_data().iter::<f32>().collect::<Vec<_>>();
        let outputs: Vec<f32> = out.inner().into_data().iter::<f32>().collect();
        assert_eq!(outputs, forward.outputs());
        let expected = forward.backward(&vec![1.0; batch * (steps + 2) * hidden], true);
        let w_grad: Vec<f32> = w
            .grad(&grads)
            .expect("weights gradient")
            .into_data()
            .iter::<f32>()
            .collect();
        assert_eq!(w_grad, expected.weights);
        assert_eq!(
            Some(read(x.grad(&grads).expect("inputs gradient"))),
            expected.inputs
        );
        assert_eq!(
            Some(read(h.grad(&grads).expect("initial state gradient"))),
            expected.initial
        );
    }
}
