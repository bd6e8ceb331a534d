//! The mean cross-entropy on the CubeCL backend: one launch of one cube computes every row's
//! softmax and loss and their mean; under autodiff it keeps the softmax, and the backward pass is
//! one element-wise launch. Burn's `CrossEntropyLoss` is about two dozen launches for the same
//! (log-softmax's reductions, a gather and, backward, a scatter and their element-wise steps).

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::cubecl::dtype_to_storage_type;
use burn::backend::tensor::{FloatTensor, IntTensor};
use burn::backend::{Autodiff, Backend};
use burn_cubecl::CubeBackend;
use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::tensor::CubeTensor;
use cubecl::prelude::*;
use cubecl::{CubeCount, CubeDim};

use super::empty_like;
use crate::kernel::{CrossEntropyCubeOps, CrossEntropyOps};

/// Units of the loss's one cube: each takes every `UNITS`-th row.
const UNITS: usize = 64;
/// Units per cube of the gradient's element-wise launch.
const GRADIENT_UNITS: u32 = 256;

/// Every row's softmax into `softmax`, and the mean over rows of `log(sum(exp(row))) -
/// row[target]` into `loss[0]` (NaN where a target is not a class, as `zero / zero`, hence the
/// allowed `eq_op`).
#[allow(clippy::eq_op)]
#[cube(launch_unchecked)]
fn cross_entropy_rows<F: Float, I: Int>(
    logits: &Tensor<F>,
    targets: &Tensor<I>,
    loss: &mut Tensor<F>,
    softmax: &mut Tensor<F>,
    batch: u32,
    zero: u32,
    #[comptime] classes: usize,
    #[define(F, I)] _dtypes: [ElemType; 2],
) {
    let unit = UNIT_POS_X as usize;
    let batch = batch as usize;
    let mut partial = F::new(0.0);
    let mut row = unit;
    while row < batch {
        let at = row * classes;
        let mut largest = logits[at];
        for class in 1..classes {
            largest = largest.max(logits[at + class]);
        }
        let mut total = F::new(0.0);
        for class in 0..classes {
            total += (logits[at + class] - largest).exp();
        }
        for class in 0..classes {
            softmax[at + class] = (logits[at + class] - largest).exp() / total;
        }
        let target = usize::cast_from(targets[row]);
        if target < classes {
            partial += total.ln() + largest - logits[at + target];
        } else {
            // WGSL has no NaN literal, and CubeCL folds a constant 0 / 0 into one: the zero
            // is an argument, so the division happens at run time.
            let zero = F::cast_from(zero);
            partial += zero / zero;
        }
        row += UNITS;
    }
    let mut sums = Shared::<[F]>::new_slice(UNITS);
    sums[unit] = partial;
    sync_cube();
    if unit == 0 {
        let mut sum = F::new(0.0);
        for other in 0..UNITS {
            sum += sums[other];
        }
        loss[0] = sum / F::cast_from(batch);
    }
}

/// `(softmax - one_hot(target)) * loss_grad[0] / batch`, a unit per element.
#[cube(launch_unchecked)]
fn cross_entropy_gradient<F: Float, I: Int>(
    loss_grad: &Tensor<F>,
    softmax: &Tensor<F>,
    targets: &Tensor<I>,
    logits_grad: &mut Tensor<F>,
    batch: u32,
    #[comptime] classes: usize,
    #[define(F, I)] _dtypes: [ElemType; 2],
) {
    let at = ABSOLUTE_POS;
    let batch = batch as usize;
    if at < batch * classes {
        let row = at / classes;
        let mut value = softmax[at];
        if usize::cast_from(targets[row]) == at % classes {
            value -= F::new(1.0);
        }
        logits_grad[at] = value * loss_grad[0] / F::cast_from(batch);
    }
}

/// The loss `[1]` and the softmax of every row of `logits` `[batch, classes]`.
fn forward(logits: CubeTensor, targets: CubeTensor) -> (CubeTensor, CubeTensor) {
    let [batch, classes] = logits.meta.shape().dims::<2>();
    let logits = into_contiguous(logits);
    let targets = into_contiguous(targets);
    let loss = empty_like(&logits, [1]);
    let softmax = empty_like(&logits, [batch, classes]);
    let dtypes = [
        dtype_to_storage_type(logits.dtype),
        dtype_to_storage_type(targets.dtype),
    ];
    // SAFETY: rows stay below `batch` and classes below `classes`, the shapes of the contiguous
    // tensors built here; targets are checked against `classes` before they index.
    unsafe {
        cross_entropy_rows::launch_unchecked(
            &loss.client,
            CubeCount::Static(1, 1, 1),
            CubeDim::new_1d(UNITS as u32),
            logits.into_tensor_arg(),
            targets.into_tensor_arg(),
            loss.clone().into_tensor_arg(),
            softmax.clone().into_tensor_arg(),
            batch as u32,
            0,
            classes,
            dtypes,
        )
    };
    (loss, softmax)
}

impl CrossEntropyOps for CubeBackend {
    fn cross_entropy(logits: FloatTensor<Self>, targets: IntTensor<Self>) -> FloatTensor<Self> {
        forward(logits, targets).0
    }
}

impl CrossEntropyCubeOps for CubeBackend {
    fn cross_entropy_forward(
        logits: FloatTensor<Self>,
        targets: IntTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        forward(logits, targets)
    }

    fn cross_entropy_backward(
        loss_grad: FloatTensor<Self>,
        softmax: FloatTensor<Self>,
        targets: IntTensor<Self>,
    ) -> FloatTensor<Self> {
        let [batch, classes] = softmax.meta.shape().dims::<2>();
        let loss_grad = into_contiguous(loss_grad);
        let targets = into_contiguous(targets);
        let logits_grad = empty_like(&softmax, [batch, classes]);
        let dtypes = [
            dtype_to_storage_type(softmax.dtype),
            dtype_to_storage_type(targets.dtype),
        ];
        let cubes = u32::try_from((batch * classes).div_ceil(GRADIENT_UNITS as usize))
            .expect("a batch's logits fit a launch");
        // SAFETY: every index is below `batch * classes`, checked in the kernel.
        unsafe {
            cross_entropy_gradient::launch_unchecked(
                &logits_grad.client,
                CubeCount::Static(cubes, 1, 1),
                CubeDim::new_1d(GRADIENT_UNITS),
                loss_grad.into_tensor_arg(),
                softmax.into_tensor_arg(),
                targets.into_tensor_arg(),
                logits_grad.clone().into_tensor_arg(),
                batch as u32,
                classes,
                dtypes,
            )
        };
        logits_grad
    }
}

/// The loss's backward pass; parent: the logits; state: the softmax and the targets.
#[derive(Debug)]
struct CrossEntropyBackward;

impl<B: Backend + CrossEntropyCubeOps> Backward<B, 1> for CrossEntropyBackward {
    type State = (FloatTensor<B>, IntTensor<B>);

    fn backward(
        self,
        ops: Ops<Self::State, 1>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        let [logits_node] = ops.parents;
        let loss_grad = grads.consume::<B>(&ops.node);
        let (softmax, targets) = ops.state;
        if let Some(node) = logits_node {
            grads.register::<B>(
                node.id,
                B::cross_entropy_backward(loss_grad, softmax, targets),
            );
        }
    }
}

impl<B: CrossEntropyOps + CrossEntropyCubeOps, C: CheckpointStrategy> CrossEntropyOps
    for Autodiff<B, C>
{
    fn cross_entropy(logits: FloatTensor<Self>, targets: IntTensor<Self>) -> FloatTensor<Self> {
        let (logits, logits_node) = logits.into_parts();
        match CrossEntropyBackward
            .prepare::<C>([logits_node])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let (loss, softmax) = B::cross_entropy_forward(logits, targets.clone());
                prep.finish((softmax, targets), loss)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::cross_entropy(logits, targets)),
        }
    }
}
