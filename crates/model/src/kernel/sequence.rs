//! One LSTM direction over a whole batch of sequences, forward and backward, on host memory.
//!
//! The weights are the fused matrix of `fused.rs`: `[input + 1 + hidden, 4 hidden]`, rows
//! `[W_x ; bias ; W_h]`, columns `[input | forget | output | cell]`, the cell gate's columns
//! doubled so that one sigmoid serves all four gates.
//!
//! The batch is cut into slices that rayon's threads run in parallel, each the whole sequence on
//! its own: the rows of a batch are independent, so the threads meet once per call instead of
//! once per time step. For training the batch is cut into `ceil(batch / 32)` slices of nearly
//! equal size ([`TRAINING_SLICE_ROWS`]) whatever the thread count, because the weight gradient is
//! summed slice by slice: a run then gives the same weights, bit for bit, on any number of
//! threads. Inference has no such sum and cuts the batch
//! into one slice per thread. Within a slice, the buffers are time-major (`[steps, rows, ...]`), so that the
//! input projection of all steps, and in the backward pass the weight gradients of all steps, are
//! each one matrix product.

use rayon::prelude::*;

pub(crate) use super::Dims;
use super::simd::{self, Matrix};

/// What the forward pass of one slice of the batch keeps for the backward pass, time-major.
#[derive(Debug)]
struct Slice {
    /// First batch row of the slice, and its number of rows.
    start: usize,
    rows: usize,
    /// `[steps, rows, input]`.
    inputs: Vec<f32>,
    /// Gate activations `[steps, rows, 4 hidden]`: `i, f, o` and the candidate `g`.
    gates: Vec<f32>,
    /// `[steps, rows, hidden]` each.
    cells: Vec<f32>,
    tanh_cells: Vec<f32>,
    outputs: Vec<f32>,
}

/// The forward pass of one direction, kept for its backward pass.
#[derive(Debug)]
pub(crate) struct Forward {
    dims: Dims,
    reverse: bool,
    last_only: bool,
    weights: Vec<f32>,
    slices: Vec<Slice>,
}

/// The steps whose hidden states an output holds, `[batch, kept, hidden]`: every step, or (for a
/// classifier's top layer, which reads only the last) the last index alone.
pub(crate) fn kept(steps: usize, last_only: bool) -> std::ops::Range<usize> {
    if last_only {
        steps.saturating_sub(1)..steps
    } else {
        0..steps
    }
}

/// Offsets `(batch_major, time_major)` of each `features`-long row that batch rows
/// `start..start + rows` have at the steps `kept`: in a batch-major `[batch, kept.len(),
/// features]` buffer, and in the slice's own time-major `[steps, rows, features]` one.
fn row_offsets(
    start: usize,
    rows: usize,
    kept: std::ops::Range<usize>,
    features: usize,
) -> impl Iterator<Item = (usize, usize)> {
    let (first, width) = (kept.start, kept.len());
    kept.flat_map(move |t| {
        (0..rows).map(move |r| {
            (
                ((start + r) * width + t - first) * features,
                (t * rows + r) * features,
            )
        })
    })
}

/// The time steps in the order a direction reads them.
fn order(steps: usize, reverse: bool) -> impl Iterator<Item = usize> {
    (0..steps).map(move |p| if reverse { steps - 1 - p } else { p })
}

/// The most rows of a training slice: two slices for the tutorial's batch of 64, one per core of a
/// laptop CPU's pair, and enough rows for the matrix products to run near full speed.
const TRAINING_SLICE_ROWS: usize = 32;

/// Batch slices `(start, rows)` for inference: one per thread of rayon's pool (fewer for small
/// batches).
fn slices(batch: usize) -> Vec<(usize, usize)> {
    split(batch, rayon::current_num_threads())
}

/// Batch slices `(start, rows)` for training: `ceil(batch / TRAINING_SLICE_ROWS)` of them, sizes
/// differing by at most one, whatever the number of threads, so that the sums over slices do
/// not depend on it.
fn training_slices(batch: usize) -> Vec<(usize, usize)> {
    split(batch, batch.div_ceil(TRAINING_SLICE_ROWS))
}

/// `batch` rows cut into `count` contiguous slices of sizes differing by at most one (at least
/// one slice, at most one per row).
fn split(batch: usize, count: usize) -> Vec<(usize, usize)> {
    let count = count.clamp(1, batch.max(1));
    let base = batch / count;
    let extra = batch % count;
    let mut start = 0;
    (0..count)
        .map(|index| {
            let rows = base + usize::from(index < extra);
            let slice = (start, rows);
            start += rows;
            slice
        })
        .collect()
}

impl Forward {
    /// Runs one direction over `inputs` (`[batch, steps, input]`, row-major) with the fused
    /// `weights`, from a zero state, left to right or (`reverse`) right to left; its outputs
    /// are every step's hidden state, or the last index's alone when `last_only`.
    ///
    /// # Panics
    /// If the slices' lengths disagree with `dims`.
    pub fn run(
        dims: Dims,
        inputs: &[f32],
        weights: Vec<f32>,
        reverse: bool,
        last_only: bool,
    ) -> Self {
        assert_eq!(inputs.len(), dims.batch * dims.steps * dims.input);
        assert_eq!(weights.len(), dims.weight_rows() * dims.gates());
        let slices = training_slices(dims.batch)
            .into_par_iter()
            .map(|(start, rows)| forward_slice(dims, inputs, &weights, reverse, start, rows))
            .collect();
        Self {
            dims,
            reverse,
            last_only,
            weights,
            slices,
        }
    }

    /// The sizes of the call.
    pub fn dims(&self) -> Dims {
        self.dims
    }

    /// The steps the outputs hold (see [`kept`]).
    pub fn kept_steps(&self) -> usize {
        kept(self.dims.steps, self.last_only).len()
    }

    /// The hidden state of every step, `[batch, steps, hidden]`, each at its step's own index
    /// (as Burn's `reverse` LSTM stores them), or of the last index, `[batch, 1, hidden]`.
    pub fn outputs(&self) -> Vec<f32> {
        let Dims { batch, hidden, .. } = self.dims;
        let kept = kept(self.dims.steps, self.last_only);
        let width = kept.len();
        let mut outputs = vec![0.0; batch * width * hidden];
        for slice in &self.slices {
            for (to, from) in row_offsets(slice.start, slice.rows, kept.clone(), hidden) {
                outputs[to..to + hidden].copy_from_slice(&slice.outputs[from..from + hidden]);
            }
        }
        outputs
    }

    /// The gradients of the weights (`[input + 1 + hidden, 4 hidden]`) and, when `input_grad`,
    /// of the inputs (`[batch, steps, input]`), given that of the outputs (the shape of
    /// [`outputs`](Self::outputs)).
    ///
    /// # Panics
    /// If `output_grad` does not have the outputs' length.
    pub fn backward(&self, output_grad: &[f32], input_grad: bool) -> (Vec<f32>, Option<Vec<f32>>) {
        let dims = self.dims;
        assert_eq!(
            output_grad.len(),
            dims.batch * self.kept_steps() * dims.hidden
        );
        let parts: Vec<(Vec<f32>, Option<Vec<f32>>)> = self
            .slices
            .par_iter()
            .map(|slice| backward_slice(self, slice, output_grad, input_grad))
            .collect();
        let mut weight_grad = vec![0.0; dims.weight_rows() * dims.gates()];
        let mut inputs_grad = input_grad.then(|| vec![0.0; dims.batch * dims.steps * dims.input]);
        for (slice, (weights, inputs)) in self.slices.iter().zip(parts) {
            for (sum, value) in weight_grad.iter_mut().zip(&weights) {
                *sum += value;
            }
            if let (Some(all), Some(part)) = (inputs_grad.as_mut(), inputs) {
                let input = dims.input;
                for (to, from) in row_offsets(slice.start, slice.rows, 0..dims.steps, input) {
                    all[to..to + input].copy_from_slice(&part[from..from + input]);
                }
            }
        }
        (weight_grad, inputs_grad)
    }
}

/// The hidden state of every step, `[batch, steps, hidden]` (or of the last index alone,
/// `[batch, 1, hidden]`, when `last_only`), of one direction over `inputs`
/// (`[batch, steps, input]`), as [`Forward::run`] followed by [`Forward::outputs`] gives it, but
/// keeping nothing for a backward pass: for inference.
///
/// Each step is one product of `[x_t, 1, h_{t-1}]` with the whole fused matrix, so the buffers
/// are one step's and stay in cache however large the batch.
///
/// # Panics
/// If the slices' lengths disagree with `dims`.
pub(crate) fn infer(
    dims: Dims,
    inputs: &[f32],
    weights: &[f32],
    reverse: bool,
    last_only: bool,
) -> Vec<f32> {
    let Dims {
        batch,
        steps,
        input,
        hidden,
    } = dims;
    assert_eq!(inputs.len(), batch * steps * input);
    assert_eq!(weights.len(), dims.weight_rows() * dims.gates());
    let kept = kept(steps, last_only);
    let mut outputs = vec![0.0; batch * kept.len() * hidden];
    let mut parts = Vec::new();
    let mut rest = &mut outputs[..];
    for (start, rows) in slices(batch) {
        let (part, after) = rest.split_at_mut(rows * kept.len() * hidden);
        parts.push((start, rows, part));
        rest = after;
    }
    parts.into_par_iter().for_each(|(start, rows, part)| {
        let slice = InferSlice {
            start,
            rows,
            kept: kept.clone(),
        };
        infer_slice(dims, inputs, weights, reverse, slice, part)
    });
    outputs
}

/// Batch rows `start..start + rows`, and the steps whose outputs are kept.
struct InferSlice {
    start: usize,
    rows: usize,
    kept: std::ops::Range<usize>,
}

/// [`infer`] for one slice of the batch, into its part of the outputs.
fn infer_slice(
    dims: Dims,
    inputs: &[f32],
    weights: &[f32],
    reverse: bool,
    slice: InferSlice,
    outputs: &mut [f32],
) {
    let InferSlice { start, rows, kept } = slice;
    let Dims {
        steps,
        input,
        hidden,
        ..
    } = dims;
    let width = dims.weight_rows();
    let gates_width = dims.gates();
    // `[x_t, 1, h_{t-1}]` per row.
    let mut operand = vec![0.0; rows * width];
    for row in operand.chunks_exact_mut(width) {
        row[input] = 1.0;
    }
    let mut gates = vec![0.0; rows * gates_width];
    let mut previous_cell = vec![0.0; rows * hidden];
    let mut cell = vec![0.0; rows * hidden];
    let mut tanh_cell = vec![0.0; rows * hidden];
    let mut state = vec![0.0; rows * hidden];
    for (position, t) in order(steps, reverse).enumerate() {
        for (r, row) in operand.chunks_exact_mut(width).enumerate() {
            let from = ((start + r) * steps + t) * input;
            row[..input].copy_from_slice(&inputs[from..from + input]);
        }
        // The first step's hidden state is zero: its rows of the matrix are left out.
        let used = if position == 0 { input + 1 } else { width };
        simd::matmul(
            &mut gates,
            gates_width,
            false,
            Matrix::strided(&operand, rows, used, width),
            Matrix::row_major(&weights[..used * gates_width], used, gates_width),
        );
        simd::forward_step(
            hidden,
            &mut gates,
            (position > 0).then_some(&previous_cell[..]),
            &mut cell,
            &mut tanh_cell,
            &mut state,
        );
        std::mem::swap(&mut cell, &mut previous_cell);
        let keep = kept.contains(&t);
        for (r, (row, h)) in operand
            .chunks_exact_mut(width)
            .zip(state.chunks_exact(hidden))
            .enumerate()
        {
            row[input + 1..].copy_from_slice(h);
            if keep {
                let to = (r * kept.len() + t - kept.start) * hidden;
                outputs[to..to + hidden].copy_from_slice(h);
            }
        }
    }
}

/// The forward pass of batch rows `start..start + rows`.
fn forward_slice(
    dims: Dims,
    inputs: &[f32],
    weights: &[f32],
    reverse: bool,
    start: usize,
    rows: usize,
) -> Slice {
    let Dims {
        steps,
        input,
        hidden,
        ..
    } = dims;
    let gates_width = dims.gates();
    // Time-major copy of this slice's inputs.
    let mut slice_inputs = vec![0.0; steps * rows * input];
    for (from, to) in row_offsets(start, rows, 0..steps, input) {
        slice_inputs[to..to + input].copy_from_slice(&inputs[from..from + input]);
    }
    let input_weights = Matrix::row_major(&weights[..input * gates_width], input, gates_width);
    let bias = &weights[input * gates_width..(input + 1) * gates_width];
    let hidden_weights =
        Matrix::row_major(&weights[(input + 1) * gates_width..], hidden, gates_width);

    // Every step's input projection plus bias in one product.
    let mut gates = vec![0.0; steps * rows * gates_width];
    for row in gates.chunks_exact_mut(gates_width) {
        row.copy_from_slice(bias);
    }
    simd::matmul(
        &mut gates,
        gates_width,
        true,
        Matrix::row_major(&slice_inputs, steps * rows, input),
        input_weights,
    );

    let step_len = rows * hidden;
    let mut cells = vec![0.0; steps * step_len];
    let mut tanh_cells = vec![0.0; steps * step_len];
    let mut outputs = vec![0.0; steps * step_len];
    let mut previous: Option<usize> = None;
    for t in order(steps, reverse) {
        let step_gates = &mut gates[t * rows * gates_width..(t + 1) * rows * gates_width];
        if let Some(p) = previous {
            simd::matmul(
                step_gates,
                gates_width,
                true,
                Matrix::row_major(&outputs[p * step_len..(p + 1) * step_len], rows, hidden),
                hidden_weights,
            );
        }
        let (cells_before, cells_from) = cells.split_at_mut(t * step_len);
        let (current_cell, cells_after) = cells_from.split_at_mut(step_len);
        let previous_cell = previous.map(|p| {
            if p < t {
                &cells_before[p * step_len..(p + 1) * step_len]
            } else {
                &cells_after[(p - t - 1) * step_len..(p - t) * step_len]
            }
        });
        simd::forward_step(
            hidden,
            step_gates,
            previous_cell,
            current_cell,
            &mut tanh_cells[t * step_len..(t + 1) * step_len],
            &mut outputs[t * step_len..(t + 1) * step_len],
        );
        previous = Some(t);
    }
    Slice {
        start,
        rows,
        inputs: slice_inputs,
        gates,
        cells,
        tanh_cells,
        outputs,
    }
}

/// The backward pass of one slice: its share of the weight gradient and, when `input_grad`, the
/// gradient of its inputs (time-major).
fn backward_slice(
    forward: &Forward,
    slice: &Slice,
    output_grad: &[f32],
    input_grad: bool,
) -> (Vec<f32>, Option<Vec<f32>>) {
    let Dims {
        steps,
        input,
        hidden,
        ..
    } = forward.dims;
    let gates_width = 4 * hidden;
    let rows = slice.rows;
    let step_len = rows * hidden;
    let weights = &forward.weights;
    let input_weights = Matrix::row_major(&weights[..input * gates_width], input, gates_width);
    let hidden_weights =
        Matrix::row_major(&weights[(input + 1) * gates_width..], hidden, gates_width);

    // Time-major copy of this slice's output gradient (zero at the steps the outputs leave out).
    let mut slice_output_grad = vec![0.0; steps * step_len];
    let kept = kept(steps, forward.last_only);
    for (from, to) in row_offsets(slice.start, rows, kept, hidden) {
        slice_output_grad[to..to + hidden].copy_from_slice(&output_grad[from..from + hidden]);
    }

    let mut gate_grads = vec![0.0; steps * rows * gates_width];
    let mut cell_grad = vec![0.0; step_len];
    let mut recurrent_grad = vec![0.0; step_len];
    let read_order: Vec<usize> = order(steps, forward.reverse).collect();
    for (position, &t) in read_order.iter().enumerate().rev() {
        let previous = position.checked_sub(1).map(|p| read_order[p]);
        let has_next = position + 1 < steps;
        let step_gate_grads = &mut gate_grads[t * rows * gates_width..(t + 1) * rows * gates_width];
        simd::backward_step(
            hidden,
            &slice.gates[t * rows * gates_width..(t + 1) * rows * gates_width],
            previous.map(|p| &slice.cells[p * step_len..(p + 1) * step_len]),
            &slice.tanh_cells[t * step_len..(t + 1) * step_len],
            &slice_output_grad[t * step_len..(t + 1) * step_len],
            has_next.then_some(&recurrent_grad[..]),
            &mut cell_grad,
            step_gate_grads,
        );
        if previous.is_some() {
            // What reaches the previous step's hidden state through this step's gates.
            simd::matmul(
                &mut recurrent_grad,
                hidden,
                false,
                Matrix::row_major(step_gate_grads, rows, gates_width),
                hidden_weights.transpose(),
            );
        }
    }

    let all_rows = steps * rows;
    let gate_grads_matrix = Matrix::row_major(&gate_grads, all_rows, gates_width);
    let mut weight_grad = vec![0.0; forward.dims.weight_rows() * gates_width];
    let (input_part, rest) = weight_grad.split_at_mut(input * gates_width);
    let (bias_part, hidden_part) = rest.split_at_mut(gates_width);
    simd::matmul(
        input_part,
        gates_width,
        false,
        Matrix::row_major(&slice.inputs, all_rows, input).transpose(),
        gate_grads_matrix,
    );
    simd::add_column_sums(&gate_grads, gates_width, bias_part);
    if steps > 1 {
        // Each step but the first read the hidden state of the step before it, and the steps
        // are stored in time order, so the pairs (previous output, gate gradient) are two
        // contiguous ranges, shifted by one step.
        let pairs = (steps - 1) * rows;
        let (outputs, grads) = if forward.reverse {
            (
                &slice.outputs[step_len..],
                &gate_grads[..pairs * gates_width],
            )
        } else {
            (
                &slice.outputs[..pairs * hidden],
                &gate_grads[rows * gates_width..],
            )
        };
        simd::matmul(
            hidden_part,
            gates_width,
            false,
            Matrix::row_major(outputs, pairs, hidden).transpose(),
            Matrix::row_major(grads, pairs, gates_width),
        );
    }
    let inputs_grad = input_grad.then(|| {
        let mut grad = vec![0.0; all_rows * input];
        simd::matmul(
            &mut grad,
            input,
            false,
            gate_grads_matrix,
            input_weights.transpose(),
        );
        grad
    });
    (weight_grad, inputs_grad)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small deterministic pseudo-random sequence in [-scale, scale].
    fn values(count: usize, seed: u64, scale: f32) -> Vec<f32> {
        let mut state = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        (0..count)
            .map(|_| {
                state = state
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                ((state >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale
            })
            .collect()
    }

    /// The loss `sum(outputs * probe)`, whose gradient with respect to the outputs is `probe`.
    fn loss(dims: Dims, inputs: &[f32], weights: &[f32], reverse: bool, probe: &[f32]) -> f64 {
        Forward::run(dims, inputs, weights.to_vec(), reverse, false)
            .outputs()
            .iter()
            .zip(probe)
            .map(|(o, p)| f64::from(*o) * f64::from(*p))
            .sum()
    }

    /// The analytic gradients against central differences of the loss, for both directions.
    #[test]
    fn backward_matches_finite_differences() {
        let dims = Dims {
            batch: 3,
            steps: 4,
            input: 2,
            hidden: 3,
        };
        let inputs = values(dims.batch * dims.steps * dims.input, 1, 1.0);
        let weights = values(dims.weight_rows() * 4 * dims.hidden, 2, 0.8);
        let probe = values(dims.batch * dims.steps * dims.hidden, 3, 1.0);
        for reverse in [false, true] {
            let forward = Forward::run(dims, &inputs, weights.clone(), reverse, false);
            let (weight_grad, inputs_grad) = forward.backward(&probe, true);
            let inputs_grad = inputs_grad.expect("asked for the inputs' gradient");
            // Central differences of the loss in each value of `at`, whose analytic gradient is
            // `analytic`; `loss_at` is the loss with `at` replaced.
            let check =
                |what: &str, at: &[f32], analytic: &[f32], loss_at: &dyn Fn(&[f32]) -> f64| {
                    let epsilon = 1e-2;
                    for k in 0..at.len() {
                        let mut plus = at.to_vec();
                        plus[k] += epsilon;
                        let mut minus = at.to_vec();
                        minus[k] -= epsilon;
                        let numeric =
                            (loss_at(&plus) - loss_at(&minus)) / (2.0 * f64::from(epsilon));
                        assert!(
                            (f64::from(analytic[k]) - numeric).abs() < 2e-3,
                            "{what} {k} (reverse {reverse}): analytic {}, numeric {numeric}",
                            analytic[k]
                        );
                    }
                };
            check("weight", &weights, &weight_grad, &|w| {
                loss(dims, &inputs, w, reverse, &probe)
            });
            check("input", &inputs, &inputs_grad, &|x| {
                loss(dims, x, &weights, reverse, &probe)
            });
        }
    }

    #[test]
    fn inference_gives_the_training_forward_outputs() {
        let dims = Dims {
            batch: 5,
            steps: 6,
            input: 3,
            hidden: 4,
        };
        let inputs = values(dims.batch * dims.steps * dims.input, 4, 1.0);
        let weights = values(dims.weight_rows() * 4 * dims.hidden, 5, 0.8);
        let last = |all: &[f32]| -> Vec<f32> {
            all.chunks_exact(dims.steps * dims.hidden)
                .flat_map(|sequence| sequence[(dims.steps - 1) * dims.hidden..].to_vec())
                .collect()
        };
        for reverse in [false, true] {
            let expected = Forward::run(dims, &inputs, weights.clone(), reverse, false).outputs();
            let close = |actual: &[f32], expected: &[f32]| {
                assert_eq!(actual.len(), expected.len());
                for (e, a) in expected.iter().zip(actual) {
                    assert!((e - a).abs() < 1e-6, "reverse {reverse}: {e} vs {a}");
                }
            };
            close(&infer(dims, &inputs, &weights, reverse, false), &expected);
            close(
                &infer(dims, &inputs, &weights, reverse, true),
                &last(&expected),
            );
            let last_only = Forward::run(dims, &inputs, weights.clone(), reverse, true);
            assert_eq!(last_only.outputs(), last(&expected));
            // The gradient through the last step alone equals the full one with zeros elsewhere.
            let probe = values(dims.batch * dims.hidden, 6, 1.0);
            let mut full_probe = vec![0.0; expected.len()];
            for (b, grad) in probe.chunks_exact(dims.hidden).enumerate() {
                let at = (b * dims.steps + dims.steps - 1) * dims.hidden;
                full_probe[at..at + dims.hidden].copy_from_slice(grad);
            }
            let full = Forward::run(dims, &inputs, weights.clone(), reverse, false);
            assert_eq!(
                last_only.backward(&probe, true),
                full.backward(&full_probe, true)
            );
        }
    }

    #[test]
    fn slices_cover_the_batch_once() {
        for batch in [0, 1, 2, 3, 64, 100, 1000] {
            for count in [1, 2, 3, 7, 2000] {
                let parts = split(batch, count);
                assert!(!parts.is_empty());
                let mut next = 0;
                for &(start, rows) in &parts {
                    assert_eq!(start, next, "batch {batch}, {count} slices: {parts:?}");
                    assert!(rows > 0 || batch == 0, "batch {batch}: an empty slice");
                    next += rows;
                }
                assert_eq!(next, batch);
            }
        }
        assert_eq!(training_slices(64), vec![(0, 32), (32, 32)]);
        assert_eq!(
            training_slices(100),
            vec![(0, 25), (25, 25), (50, 25), (75, 25)]
        );
    }
}
