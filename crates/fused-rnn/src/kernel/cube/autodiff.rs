//! The LSTM sequence under autodiff on the CubeCL backend: the forward kernel keeps every step's
//! gates, cells and hidden states as device tensors, and the backward pass runs the backward
//! kernel for the gates' gradients, then the weights' (and inputs') gradients as Burn matmuls over
//! all steps at once.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, NodeGuard, Ops, OpsKind};
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, Cube, TensorMetadata};
use burn::tensor::Shape;

use super::narrow;
use crate::kernel::{
    AutodiffCubeLstm, Dims, GateParams, LstmCubeOps, LstmParams, LstmWeightOps, dims,
};

/// What the backward pass reads: the operands and the forward kernel's saved tensors.
#[derive(Debug, Clone)]
struct Saved<B: Backend> {
    dims: Dims,
    inputs: FloatTensor<B>,
    weights: FloatTensor<B>,
    /// The hidden state each step read, `[batch, steps, hidden]`.
    previous: FloatTensor<B>,
    cells: FloatTensor<B>,
    gates: FloatTensor<B>,
    reverse: bool,
    last_only: bool,
}

/// The backward pass of the cube LSTM sequence; parents `[inputs, weights]`.
#[derive(Debug)]
struct CubeSequenceBackward;

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
            let previous = B::float_reshape(saved.previous, Shape::new([batch * steps, hidden]));
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

impl AutodiffCubeLstm for Cube {
    fn autodiff_lstm_cube_sequence<C: CheckpointStrategy>(
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
                let (output, previous, cells, gates) =
                    Self::lstm_cube_forward(inputs.clone(), weights.clone(), reverse, last_only);
                let saved = Saved {
                    dims,
                    inputs,
                    weights,
                    previous,
                    cells,
                    gates,
                    reverse,
                    last_only,
                };
                prep.finish(saved, output)
            }
            OpsKind::UnTracked(prep) => prep.finish(
                <Self as crate::kernel::LstmCubeSequenceOps>::lstm_cube_sequence(
                    inputs, weights, reverse, last_only,
                ),
            ),
        }
    }
}

/// The backward pass of [`LstmWeightOps::lstm_pack_weights`]; parents: each gate's input
/// weight, input bias, hidden bias and hidden weight, gate by gate; its state is the input size.
#[derive(Debug)]
struct PackBackward;

impl<B: Backend + LstmCubeOps> Backward<B, 16> for PackBackward {
    type State = usize;

    fn backward(
        self,
        ops: Ops<Self::State, 16>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        let grad = grads.consume::<B>(&ops.node);
        for (gate, nodes) in ops.parents.chunks(4).enumerate() {
            if nodes.iter().all(Option::is_none) {
                continue;
            }
            let (input_weight, bias, hidden_weight) =
                B::lstm_unpack_gate(grad.clone(), ops.state, gate);
            // Both biases enter the fused matrix as their sum, so each gets its whole gradient.
            let parts = [input_weight, bias.clone(), bias, hidden_weight];
            for (node, part) in nodes.iter().zip(parts) {
                if let Some(node) = node {
                    grads.register::<B>(node.id, part);
                }
            }
        }
    }
}

/// A gate's parameters on the inner backend, and their autodiff nodes in [`PackBackward`]'s order.
fn split_gate<B: Backend, C: CheckpointStrategy>(
    gate: GateParams<Autodiff<B, C>>,
) -> (GateParams<B>, [NodeGuard; 4]) {
    let (input_weight, input_weight_node) = gate.input_weight.into_parts();
    let (input_bias, input_bias_node) = gate.input_bias.into_parts();
    let (hidden_bias, hidden_bias_node) = gate.hidden_bias.into_parts();
    let (hidden_weight, hidden_weight_node) = gate.hidden_weight.into_parts();
    (
        GateParams {
            input_weight,
            input_bias,
            hidden_bias,
            hidden_weight,
        },
        [
            input_weight_node,
            input_bias_node,
            hidden_bias_node,
            hidden_weight_node,
        ],
    )
}

impl<B: LstmWeightOps + LstmCubeOps, C: CheckpointStrategy> LstmWeightOps for Autodiff<B, C> {
    fn lstm_pack_weights(params: LstmParams<Self>) -> FloatTensor<Self> {
        let (input, input_nodes) = split_gate(params.input);
        let (forget, forget_nodes) = split_gate(params.forget);
        let (output, output_nodes) = split_gate(params.output);
        let (cell, cell_nodes) = split_gate(params.cell);
        let input_size = input.input_weight.shape()[0];
        let inner = LstmParams {
            input,
            forget,
            output,
            cell,
        };
        let nodes: Vec<NodeGuard> = [input_nodes, forget_nodes, output_nodes, cell_nodes]
            .into_iter()
            .flatten()
            .collect();
        let Ok(nodes) = <[NodeGuard; 16]>::try_from(nodes) else {
            unreachable!("four gates of four parameters each")
        };
        match PackBackward.prepare::<C>(nodes).compute_bound().stateful() {
            OpsKind::Tracked(prep) => prep.finish(input_size, B::lstm_pack_weights(inner)),
            OpsKind::UnTracked(prep) => prep.finish(B::lstm_pack_weights(inner)),
        }
    }
}
