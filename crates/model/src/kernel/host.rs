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

use super::sequence::{self, Forward};
use super::{AutodiffLstm, Dims, LstmSequenceOps, dims};

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
/// the weights' gradient in the weights'. The kernel itself computes in `f32`.
#[derive(Debug, Clone, Copy)]
struct DTypes {
    inputs: DType,
    weights: DType,
}

/// A call's operands read into host memory, with what the results need to go back.
struct HostCall<D> {
    dims: Dims,
    inputs: Vec<f32>,
    weights: Vec<f32>,
    dtypes: DTypes,
    device: D,
}

impl<D> HostCall<D> {
    /// The outputs `[batch, kept, hidden]` (see `sequence::kept`) as a tensor of the inputs'
    /// dtype on the call's device.
    fn outputs<B: Backend<Device = D>>(&self, outputs: Vec<f32>, kept: usize) -> FloatTensor<B> {
        let shape = vec![self.dims.batch, kept, self.dims.hidden];
        from_host::<B>(outputs, shape, self.dtypes.inputs, &self.device)
    }
}

/// Reads a call's operands, checking their shapes.
fn read_call<B: Backend>(inputs: FloatTensor<B>, weights: FloatTensor<B>) -> HostCall<B::Device> {
    let dims = dims(&inputs, &weights);
    let device = inputs.device();
    let (inputs, inputs_dtype) = to_host::<B>(inputs);
    let (weights, weights_dtype) = to_host::<B>(weights);
    HostCall {
        dims,
        inputs,
        weights,
        dtypes: DTypes {
            inputs: inputs_dtype,
            weights: weights_dtype,
        },
        device,
    }
}

/// The outputs alone, nothing kept for a backward pass.
fn sequence_on<B: Backend>(
    inputs: FloatTensor<B>,
    weights: FloatTensor<B>,
    reverse: bool,
    last_only: bool,
) -> FloatTensor<B> {
    let call = read_call::<B>(inputs, weights);
    let outputs = sequence::infer(call.dims, &call.inputs, &call.weights, reverse, last_only);
    call.outputs::<B>(outputs, sequence::kept(call.dims.steps, last_only).len())
}

#[cfg(feature = "flex")]
impl LstmSequenceOps for burn::backend::Flex {
    fn lstm_sequence(
        inputs: FloatTensor<Self>,
        weights: FloatTensor<Self>,
        reverse: bool,
        last_only: bool,
    ) -> FloatTensor<Self> {
        sequence_on::<Self>(inputs, weights, reverse, last_only)
    }
}

#[cfg(feature = "ndarray")]
impl LstmSequenceOps for burn::backend::NdArray {
    fn lstm_sequence(
        inputs: FloatTensor<Self>,
        weights: FloatTensor<Self>,
        reverse: bool,
        last_only: bool,
    ) -> FloatTensor<Self> {
        sequence_on::<Self>(inputs, weights, reverse, last_only)
    }
}

/// The backward pass of [`LstmSequenceOps::lstm_sequence`]; parents `[inputs, weights]`.
#[derive(Debug)]
struct LstmSequenceBackward;

/// What the backward pass needs: the forward pass's activations, and how to hand results back.
#[derive(Debug, Clone)]
struct Saved<D> {
    forward: Arc<Forward>,
    dtypes: DTypes,
    device: D,
}

impl<B: Backend> Backward<B, 2> for LstmSequenceBackward {
    type State = Saved<B::Device>;

    fn backward(
        self,
        ops: Ops<Self::State, 2>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        let [inputs_node, weights_node] = ops.parents;
        let output_grad = grads.consume::<B>(&ops.node);
        let Saved {
            forward,
            dtypes,
            device,
        } = ops.state;
        let dims = forward.dims();
        let (output_grad, _) = to_host::<B>(output_grad);
        let (weights_grad, inputs_grad) = forward.backward(&output_grad, inputs_node.is_some());
        if let Some(node) = weights_node {
            let shape = vec![dims.weight_rows(), 4 * dims.hidden];
            let grad = from_host::<B>(weights_grad, shape, dtypes.weights, &device);
            grads.register::<B>(node.id, grad);
        }
        if let (Some(node), Some(inputs_grad)) = (inputs_node, inputs_grad) {
            let shape = vec![dims.batch, dims.steps, dims.input];
            let grad = from_host::<B>(inputs_grad, shape, dtypes.inputs, &device);
            grads.register::<B>(node.id, grad);
        }
    }
}

/// [`LstmSequenceOps::lstm_sequence`] under autodiff on a CPU backend `B`.
fn autodiff_sequence_on<B: Backend, C: CheckpointStrategy>(
    inputs: FloatTensor<Autodiff<B, C>>,
    weights: FloatTensor<Autodiff<B, C>>,
    reverse: bool,
    last_only: bool,
) -> FloatTensor<Autodiff<B, C>> {
    let (inputs, inputs_node) = inputs.into_parts();
    let (weights, weights_node) = weights.into_parts();
    match LstmSequenceBackward
        .prepare::<C>([inputs_node, weights_node])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => {
            let mut call = read_call::<B>(inputs, weights);
            // The forward pass keeps the weights for its backward pass.
            let weights = std::mem::take(&mut call.weights);
            let forward = Forward::run(call.dims, &call.inputs, weights, reverse, last_only);
            let output = call.outputs::<B>(forward.outputs(), forward.kept_steps());
            let saved = Saved {
                forward: Arc::new(forward),
                dtypes: call.dtypes,
                device: call.device,
            };
            prep.finish(saved, output)
        }
        OpsKind::UnTracked(prep) => {
            prep.finish(sequence_on::<B>(inputs, weights, reverse, last_only))
        }
    }
}

#[cfg(feature = "flex")]
impl AutodiffLstm for burn::backend::Flex {
    fn autodiff_lstm_sequence<C: CheckpointStrategy>(
        inputs: FloatTensor<Autodiff<Self, C>>,
        weights: FloatTensor<Autodiff<Self, C>>,
        reverse: bool,
        last_only: bool,
    ) -> FloatTensor<Autodiff<Self, C>> {
        autodiff_sequence_on::<Self, C>(inputs, weights, reverse, last_only)
    }
}

#[cfg(feature = "ndarray")]
impl AutodiffLstm for burn::backend::NdArray {
    fn autodiff_lstm_sequence<C: CheckpointStrategy>(
        inputs: FloatTensor<Autodiff<Self, C>>,
        weights: FloatTensor<Autodiff<Self, C>>,
        reverse: bool,
        last_only: bool,
    ) -> FloatTensor<Autodiff<Self, C>> {
        autodiff_sequence_on::<Self, C>(inputs, weights, reverse, last_only)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::{lstm_sequence, runs_on};
    use burn::tensor::{Device, Tensor};

    #[cfg(feature = "flex")]
    #[test]
    fn flex_devices_take_the_kernel() {
        assert!(runs_on(&Device::flex(), 64));
        assert!(runs_on(&Device::flex().autodiff(), 64));
    }

    /// Through Burn's autodiff: the kernel's outputs, and the gradients it registers for both
    /// parents, against the host functions it wraps.
    #[cfg(feature = "flex")]
    #[test]
    fn autodiff_registers_both_gradients() {
        let device = Device::flex().autodiff();
        let (batch, steps, input, hidden) = (2, 3, 4, 5);
        let inputs: Vec<f32> = (0..batch * steps * input)
            .map(|i| (i as f32 * 0.37).sin())
            .collect();
        let weights: Vec<f32> = (0..(input + 1 + hidden) * 4 * hidden)
            .map(|i| (i as f32 * 0.11).cos() * 0.5)
            .collect();
        let x = Tensor::<3>::from_data(
            TensorData::new(inputs.clone(), [batch, steps, input]),
            &device,
        )
        .require_grad();
        let w = Tensor::<2>::from_data(
            TensorData::new(weights.clone(), [input + 1 + hidden, 4 * hidden]),
            &device,
        )
        .require_grad();
        let out = lstm_sequence(x.clone(), w.clone(), true, false);
        let grads = out.clone().sum().backward();

        let dims = Dims {
            batch,
            steps,
            input,
            hidden,
        };
        let forward = Forward::run(dims, &inputs, weights, true, false);
        let read = |t: Tensor<3>| t.into_data().iter::<f32>().collect::<Vec<_>>();
        assert_eq!(read(out.inner()), forward.outputs());
        let (weights_grad, inputs_grad) =
            forward.backward(&vec![1.0; batch * steps * hidden], true);
        let w_grad: Vec<f32> = w
            .grad(&grads)
            .expect("weights gradient")
            .into_data()
            .iter::<f32>()
            .collect();
        assert_eq!(w_grad, weights_grad);
        let x_grad = read(x.grad(&grads).expect("inputs gradient"));
        assert_eq!(Some(x_grad), inputs_grad);
    }
}
