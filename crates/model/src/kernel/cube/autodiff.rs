//! The LSTM sequence under autodiff on the CubeCL backend: the forward kernel keeps every step's
//! gates, cells and hidden states as device tensors, and the backward pass runs the backward
//! kernel for the gates' gradients, then the weights' (and inputs') gradients as Burn matmuls over
//! all steps at once.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, Cube, TensorMetadata};
use burn::tensor::Shape;

use super::narrow;
use crate::kernel::{AutodiffLstm, Dims, LstmCubeOps, dims};

/// What the backward pass reads: the operands and the forward kernel's saved tensors.
#[derive(Debug, Clone)]
struct Saved<B: Backend> {
    dims: Dims,
    inputs: FloatTensor<B>,
    weights: FloatTensor<B>,
    hiddens: FloatTensor<B>,
    cells: FloatTensor<B>,
    gates: FloatTensor<B>,
    reverse: bool,
    last_only: bool,
}

/// The backward pass of the cube LSTM sequence; parents `[inputs, weights]`.
#[derive(Debug)]
struct CubeSequenceBackward;

/// The hidden state each step read, `[batch * steps, hidden]`: the previous step's (the next
/// index's when `reverse`), zero for the first step.
fn previous_hiddens<B: Backend>(
    hiddens: FloatTensor<B>,
    dims: Dims,
    reverse: bool,
) -> FloatTensor<B> {
    let Dims {
        batch,
        steps,
        hidden,
        ..
    } = dims;
    let device = hiddens.device();
    let zeros = B::float_zeros(
        Shape::new([batch, 1, hidden]),
        &device,
        hiddens.dtype().into(),
    );
    let shifted = if steps == 1 {
        zeros
    } else if reverse {
        B::float_cat(vec![narrow::<B>(hiddens, 1, 1, steps), zeros], 1)
    } else {
        B::float_cat(vec![zeros, narrow::<B>(hiddens, 1, 0, steps - 1)], 1)
    };
    B::float_reshape(shifted, Shape::new([batch * steps, hidden]))
}

impl<B: Backend + LstmCubeOps> Backward<B, 2> for CubeSequenceBackward {
    type State = Saved<B>;

    fn backward(
        self,
        ops: Ops<Self::State, 2>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        let [inputs_node, weights_node] = ops.parents;
        let output_grad = grads.consume::<B>(&ops.node);
        let saved = ops.state;
        let Dims {
            batch,
            steps,
            input,
            hidden,
        } = saved.dims;
        let dz = B::lstm_cube_backward(
            output_grad,
            saved.gates,
            saved.cells,
            saved.weights.clone(),
            saved.reverse,
            saved.last_only,
        );
        let dz = B::float_reshape(dz, Shape::new([batch * steps, 4 * hidden]));
        let flat_inputs = B::float_reshape(saved.inputs, Shape::new([batch * steps, input]));
        if let Some(node) = weights_node {
            let input_grad = B::float_matmul(B::float_transpose(flat_inputs), dz.clone());
            let bias_grad = B::float_sum_dim(dz.clone(), 0);
            let previous = previous_hiddens::<B>(saved.hiddens, saved.dims, saved.reverse);
            let hidden_grad = B::float_matmul(B::float_transpose(previous), dz.clone());
            let grad = B::float_cat(vec![input_grad, bias_grad, hidden_grad], 0);
            grads.register::<B>(node.id, grad);
        }
        if let Some(node) = inputs_node {
            let input_weights = narrow::<B>(saved.weights, 0, 0, input);
            let grad = B::float_matmul(dz, B::float_transpose(input_weights));
            grads.register::<B>(
                node.id,
                B::float_reshape(grad, Shape::new([batch, steps, input])),
            );
        }
    }
}

impl AutodiffLstm for Cube {
    fn autodiff_lstm_sequence<C: CheckpointStrategy>(
        inputs: FloatTensor<Autodiff<Self, C>>,
        weights: FloatTensor<Autodiff<Self, C>>,
        reverse: bool,
        last_only: bool,
    ) -> FloatTensor<Autodiff<Self, C>> {
        let (inputs, inputs_node) = inputs.into_parts();
        let (weights, weights_node) = weights.into_parts();
        match CubeSequenceBackward
            .prepare::<C>([inputs_node, weights_node])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let dims = dims(&inputs, &weights);
                let (hiddens, cells, gates) =
                    Self::lstm_cube_forward(inputs.clone(), weights.clone(), reverse);
                let output = if last_only {
                    narrow::<Self>(hiddens.clone(), 1, dims.steps - 1, dims.steps)
                } else {
                    hiddens.clone()
                };
                let saved = Saved {
                    dims,
                    inputs,
                    weights,
                    hiddens,
                    cells,
                    gates,
                    reverse,
                    last_only,
                };
                prep.finish(saved, output)
            }
            OpsKind::UnTracked(prep) => {
                prep.finish(<Self as crate::kernel::LstmSequenceOps>::lstm_sequence(
                    inputs, weights, reverse, last_only,
                ))
            }
        }
    }
}
