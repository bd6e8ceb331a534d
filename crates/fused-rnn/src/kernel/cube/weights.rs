//! The fused weight matrix of `tensor_ops.rs` from each gate's own parameters, and its gradient back
//! into theirs: a launch a gate each way, a unit per element.
//!
//! Gate `gate` (`[input | forget | output | cell]`) owns columns `gate * hidden ..` of the
//! matrix `[input + 1 + hidden, 4 hidden]`: its input weight's rows, then its two biases' sum, then
//! its hidden weight's rows; the cell gate's values are doubled (`doubled`), so its gradient is
//! doubled on the way back.

use burn::backend::cubecl::dtype_to_storage_type;
use burn::tensor::Shape;
use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::tensor::CubeTensor;
use cubecl::prelude::*;
use cubecl::{CubeCount, CubeDim};

use super::empty_like as empty;
use crate::kernel::GateParams;

/// Units per cube of these element-wise launches.
const UNITS: u32 = 256;

/// Writes one gate's columns of the fused matrix `packed`.
#[cube(launch_unchecked)]
fn pack_gate<F: Float>(
    input_weight: &Tensor<F>,
    input_bias: &Tensor<F>,
    hidden_bias: &Tensor<F>,
    hidden_weight: &Tensor<F>,
    packed: &mut Tensor<F>,
    input: u32,
    #[comptime] hidden: usize,
    #[comptime] gate: usize,
    #[define(F)] _dtype: ElemType,
) {
    let input = input as usize;
    let at = ABSOLUTE_POS;
    if at < (input + 1 + hidden) * hidden {
        let row = at / hidden;
        let column = at % hidden;
        let mut value = if row < input {
            input_weight[row * hidden + column]
        } else if row == input {
            input_bias[column] + hidden_bias[column]
        } else {
            hidden_weight[(row - input - 1) * hidden + column]
        };
        if comptime!(gate == 3) {
            value *= F::new(2.0);
        }
        packed[row * 4 * hidden + gate * hidden + column] = value;
    }
}

/// Reads one gate's columns of the fused matrix's gradient `packed` into its parameters'.
#[cube(launch_unchecked)]
fn unpack_gate<F: Float>(
    packed: &Tensor<F>,
    input_weight: &mut Tensor<F>,
    bias: &mut Tensor<F>,
    hidden_weight: &mut Tensor<F>,
    input: u32,
    #[comptime] hidden: usize,
    #[comptime] gate: usize,
    #[define(F)] _dtype: ElemType,
) {
    let input = input as usize;
    let at = ABSOLUTE_POS;
    if at < (input + 1 + hidden) * hidden {
        let row = at / hidden;
        let column = at % hidden;
        let mut value = packed[row * 4 * hidden + gate * hidden + column];
        if comptime!(gate == 3) {
            value *= F::new(2.0);
        }
        if row < input {
            input_weight[row * hidden + column] = value;
        } else if row == input {
            bias[column] = value;
        } else {
            hidden_weight[(row - input - 1) * hidden + column] = value;
        }
    }
}

/// Cubes and units for one unit per element of a gate's `(input + 1 + hidden) x hidden` block.
fn grid(input: usize, hidden: usize) -> (CubeCount, CubeDim) {
    let elements = (input + 1 + hidden) * hidden;
    let cubes = elements.div_ceil(UNITS as usize);
    let cubes = u32::try_from(cubes).expect("a gate's parameters fit a launch");
    (CubeCount::Static(cubes, 1, 1), CubeDim::new_1d(UNITS))
}

/// The fused weights from the four gates' parameters.
pub(super) fn pack(gates: [GateParams<burn_cubecl::CubeBackend>; 4]) -> CubeTensor {
    let [input, hidden] = gates[0].input_weight.meta.shape().dims::<2>();
    let packed = empty(
        &gates[0].input_weight,
        Shape::new([input + 1 + hidden, 4 * hidden]),
    );
    let dtype = packed.dtype;
    let (cubes, units) = grid(input, hidden);
    for (gate, params) in gates.into_iter().enumerate() {
        // SAFETY: every index is below `(input + 1 + hidden) * hidden`, checked in the kernel, and
        // maps into the contiguous tensors of the shapes `LstmParams` documents.
        unsafe {
            pack_gate::launch_unchecked(
                &packed.client,
                cubes.clone(),
                units,
                into_contiguous(params.input_weight).into_tensor_arg(),
                into_contiguous(params.input_bias).into_tensor_arg(),
                into_contiguous(params.hidden_bias).into_tensor_arg(),
                into_contiguous(params.hidden_weight).into_tensor_arg(),
                packed.clone().into_tensor_arg(),
                input as u32,
                hidden,
                gate,
                dtype_to_storage_type(dtype),
            )
        };
    }
    packed
}

/// Gate `gate`'s input weight, bias and hidden weight gradients from the fused weights' `grad`.
pub(super) fn unpack(
    grad: CubeTensor,
    input: usize,
    gate: usize,
) -> (CubeTensor, CubeTensor, CubeTensor) {
    let hidden = grad.meta.shape()[1] / 4;
    let grad = into_contiguous(grad);
    let input_weight = empty(&grad, Shape::new([input, hidden]));
    let bias = empty(&grad, Shape::new([hidden]));
    let hidden_weight = empty(&grad, Shape::new([hidden, hidden]));
    let (cubes, units) = grid(input, hidden);
    // SAFETY: as in `pack`.
    unsafe {
        unpack_gate::launch_unchecked(
            &grad.client,
            cubes,
            units,
            grad.clone().into_tensor_arg(),
            input_weight.clone().into_tensor_arg(),
            bias.clone().into_tensor_arg(),
            hidden_weight.clone().into_tensor_arg(),
            input as u32,
            hidden,
            gate,
            dtype_to_storage_type(grad.dtype),
        )
    };
    (input_weight, bias, hidden_weight)
}
