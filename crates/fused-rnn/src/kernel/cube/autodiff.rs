//! The LSTM sequence under autodiff on the CubeCL backend: the forward kernel keeps every step's
//! gates, cells and hidden states as device tensors, and the backward pass runs the backward
//! kernel for the gates' and the initial state's gradients, then the weights' (and inputs')
//! gradients as Burn matmuls over all steps at once.

use burn::backend::autodiff::NodeId;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, NodeGuard, Ops, OpsKind};
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, Cube, TensorMetadata};
use burn::tensor::Shape;

use super::narrow;
use crate::kernel::{
    AutodiffCubeLstm, Dims, GateParams, Lengths, LstmCubeOps, LstmCubeSequenceOps, LstmParams,
    LstmWeightOps, dims,
};

/// What the backward pass reads: the operands and the forward kernel's saved tensors.
#[derive(Debug, Clone)]
struct Saved<B: Backend> {
    dims: Dims,
    inputs: FloatTensor<B>,
    weights: FloatTensor<B>,
    /// The initial state `[batch, 2, hidden]`, where the call had one.
    initial: Option<FloatTensor<B>>,
    lengths: Option<Lengths>,
    /// The hidden state each step read, `[batch, steps, hidden]`.
    previous: FloatTensor<B>,
    cells: FloatTensor<B>,
    gates: FloatTensor<B>,
    reverse: bool,
    last_only: bool,
}

/// The backward pass of the cube LSTM sequence; parents `[inputs, weights]`, and the initial
/// state when the call has one (`N = 3`).
#[derive(Debug)]
struct CubeSequenceBackward<const N: usize>;

impl<B: Backend + LstmCubeOps, const N: usize> Backward<B, N> for CubeSequenceBackward<N> {
    type State = Saved<B>;

    fn backward(
        self,
        ops: Ops<Self::State, N>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        let mut parents = [None, None, None];
        for (slot, parent) in parents.iter_mut().zip(ops.parents) {
            *slot = parent.map(|node| node.id);
        }
        let output_grad = grads.consume::<B>(&ops.node);
        register::<B>(ops.state, output_grad, parents, grads);
    }
}

/// Runs the backward kernel and the weights' and inputs' gradients as matmuls over every step,
/// and registers the gradients of the parents that are tracked.
fn register<B: Backend + LstmCubeOps>(
    saved: Saved<B>,
    output_grad: FloatTensor<B>,
    [inputs_node, weights_node, initial_node]: [Option<NodeId>; 3],
    grads: &mut Gradients,
) {
    let Dims {
        batch,
        steps,
        input,
        hidden,
    } = saved.dims;
    let has_initial = saved.initial.is_some();
    let (dz, initial_grad) = B::lstm_cube_backward(
        output_grad,
        saved.gates,
        saved.cells,
        saved.weights.clone(),
        saved.initial.unwrap_or_else(|| saved.weights.clone()),
        has_initial,
        saved.lengths,
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
        grads.register::<B>(node, grad);
    }
    if let Some(node) = inputs_node {
        let input_weights = narrow::<B>(saved.weights, 0, 0, input);
        let grad = B::float_matmul(dz, B::float_transpose(input_weights));
        grads.register::<B>(
            node,
            B::float_reshape(grad, Shape::new([batch, steps, input])),
        );
    }
    if let Some(node) = initial_node {
        grads.register::<B>(node, initial_grad);
    }
}

/// The tracked forward pass: the output, and what the backward pass reads.
fn tracked_forward<B: LstmCubeOps>(
    inputs: FloatTensor<B>,
    weights: FloatTensor<B>,
    initial: Option<FloatTensor<B>>,
    lengths: Option<Lengths>,
    reverse: bool,
    last_only: bool,
) -> (Saved<B>, FloatTensor<B>) {
    let dims = dims(&inputs, &weights);
    let (output, previous, cells, gates) = B::lstm_cube_forward(
        inputs.clone(),
        weights.clone(),
        initial.clone().unwrap_or_else(|| weights.clone()),
        initial.is_some(),
        lengths.clone(),
        reverse,
        last_only,
    );
    let saved = Saved {
        dims,
        inputs,
        weights,
        initial,
        lengths,
        previous,
        cells,
        gates,
        reverse,
        last_only,
    };
    (saved, output)
}

impl AutodiffCubeLstm for Cube {
    fn autodiff_lstm_cube_sequence<C: CheckpointStrategy>(
        inputs: FloatTensor<Autodiff<Self, C>>,
        weights: FloatTensor<Autodiff<Self, C>>,
        initial: Option<FloatTensor<Autodiff<Self, C>>>,
        lengths: Option<Lengths>,
        reverse: bool,
        last_only: bool,
    ) -> FloatTensor<Autodiff<Self, C>> {
        let (inputs, inputs_node) = inputs.into_parts();
        let (weights, weights_node) = weights.into_parts();
        let untracked = |inputs, weights, initial: Option<FloatTensor<Self>>| {
            let has_initial = initial.is_some();
            let initial = initial.unwrap_or_else(|| Clone::clone(&weights));
            <Self as LstmCubeSequenceOps>::lstm_cube_sequence(
                inputs,
                weights,
                initial,
                has_initial,
                lengths.clone(),
                reverse,
                last_only,
            )
        };
        match initial.map(|initial| initial.into_parts()) {
            None => match CubeSequenceBackward::<2>
                .prepare::<C>([inputs_node, weights_node])
                .compute_bound()
                .stateful()
            {
                OpsKind::Tracked(prep) => {
                    let (saved, output) = tracked_forward::<Self>(
                        inputs,
                        weights,
                        None,
                        lengths.clone(),
                        reverse,
                        last_only,
                    );
                    prep.finish(saved, output)
                }
                OpsKind::UnTracked(prep) => prep.finish(untracked(inputs, weights, None)),
            },
            Some((initial, initial_node)) => match CubeSequenceBackward::<3>
                .prepare::<C>([inputs_node, weights_node, initial_node])
                .compute_bound()
                .stateful()
            {
                OpsKind::Tracked(prep) => {
                    let (saved, output) = tracked_forward::<Self>(
                        inputs,
                        weights,
                        Some(initial),
                        lengths.clone(),
                        reverse,
                        last_only,
                    );
                    prep.finish(saved, output)
                }
                OpsKind::UnTracked(prep) => prep.finish(untracked(inputs, weights, Some(initial))),
            },
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
