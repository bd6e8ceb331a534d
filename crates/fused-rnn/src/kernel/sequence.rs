//! One LSTM direction over a whole batch of sequences, forward and backward, on host memory.
//!
//! The weights are the fused matrix of `tensor_ops.rs`: `[input + 1 + hidden, 4 hidden]`, rows
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

use std::sync::Arc;

use rayon::prelude::*;

pub(crate) use super::Dims;
use super::simd::{self, Matrix};
use crate::tensor_ops::reading_order;

/// How one call reads its sequences: the direction, whether the outputs keep every step, and
/// each batch row's length.
#[derive(Debug, Clone, Default)]
pub(crate) struct Reading {
    /// Right to left: each row from its last valid step back to its first.
    pub reverse: bool,
    /// Keep no step's output, only the final state (all a classifier's top layer reads).
    pub last_only: bool,
    /// The valid steps of each batch row, `1..=steps` (`None`: every row has all of them).
    /// Past its length a row's state stays as it was and its outputs are zero, so the final
    /// state is that of its last valid step and the reverse direction starts there: PyTorch's
    /// packed sequences.
    pub lengths: Option<Arc<[usize]>>,
}

impl Reading {
    /// The valid steps of batch row `row`.
    fn length(&self, row: usize, steps: usize) -> usize {
        self.lengths.as_ref().map_or(steps, |lengths| lengths[row])
    }
}

/// The steps whose outputs a call keeps: every step, or none (`last_only`).
pub(crate) fn kept(steps: usize, last_only: bool) -> usize {
    if last_only { 0 } else { steps }
}

/// Where a call's results lie in its output, `[batch * kept + 2 * batch, hidden]`: every kept
/// step's hidden state batch-major (`[batch, kept, hidden]`, so that the layer's output is a view
/// of it, with no copy), then every row's final hidden state, then every row's final cell state.
#[derive(Debug, Clone, Copy)]
pub(crate) struct OutputLayout {
    batch: usize,
    kept: usize,
    hidden: usize,
}

impl OutputLayout {
    /// The layout of a call of `dims` that keeps every step's output, or (`last_only`) none.
    pub(crate) fn new(dims: Dims, last_only: bool) -> Self {
        Self {
            batch: dims.batch,
            kept: kept(dims.steps, last_only),
            hidden: dims.hidden,
        }
    }

    /// Rows of the output, `hidden` values each.
    pub(crate) fn rows(&self) -> usize {
        self.batch * (self.kept + 2)
    }

    /// Where batch row `row`'s output at kept step `t` starts.
    fn step(&self, row: usize, t: usize) -> usize {
        (row * self.kept + t) * self.hidden
    }

    /// Where batch row `row`'s final hidden state starts.
    fn final_hidden(&self, row: usize) -> usize {
        (self.batch * self.kept + row) * self.hidden
    }

    /// Where batch row `row`'s final cell state starts.
    fn final_cell(&self, row: usize) -> usize {
        (self.batch * (self.kept + 1) + row) * self.hidden
    }
}

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
    /// `[steps, rows, hidden]` each: the cell, its tanh and the hidden state after each step
    /// (past a row's length, the state it keeps).
    cells: Vec<f32>,
    tanh_cells: Vec<f32>,
    states: Vec<f32>,
    /// The initial hidden and cell states `[rows, hidden]`, when given.
    initial: Option<(Vec<f32>, Vec<f32>)>,
}

/// The forward pass of one direction, kept for its backward pass.
#[derive(Debug)]
pub(crate) struct Forward {
    dims: Dims,
    reading: Reading,
    weights: Vec<f32>,
    slices: Vec<Slice>,
}

/// The most rows of a training slice: two slices for the tutorial's batch of 64, one per core of a
/// laptop CPU's pair, and enough rows for the matrix products to run near full speed.
const TRAINING_SLICE_ROWS: usize = 32;

/// The fewest rows of a training slice when a batch of at most [`TRAINING_SLICE_ROWS`] is cut in
/// two, so that a small batch (long sequences, wide layers) still runs on two cores.
const TRAINING_HALF_ROWS: usize = 8;

/// Batch slices `(start, rows)` for inference: one per thread of rayon's pool (fewer for small
/// batches).
fn slices(batch: usize) -> Vec<(usize, usize)> {
    split(batch, rayon::current_num_threads())
}

/// Batch slices `(start, rows)` for training: `ceil(batch / TRAINING_SLICE_ROWS)` of them, and
/// at least two from `2 * TRAINING_HALF_ROWS` rows on, sizes differing by at most one, whatever
/// the number of threads, so that the sums over slices do not depend on it.
fn training_slices(batch: usize) -> Vec<(usize, usize)> {
    let least = if batch >= 2 * TRAINING_HALF_ROWS {
        2
    } else {
        1
    };
    split(batch, batch.div_ceil(TRAINING_SLICE_ROWS).max(least))
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

/// The initial hidden and cell states of batch rows `start..start + rows`, `[rows, hidden]`
/// each, from the call's `[batch, 2, hidden]` initial state.
fn initial_rows(initial: &[f32], start: usize, rows: usize, hidden: usize) -> (Vec<f32>, Vec<f32>) {
    let mut h = Vec::with_capacity(rows * hidden);
    let mut c = Vec::with_capacity(rows * hidden);
    for row in start..start + rows {
        let at = row * 2 * hidden;
        h.extend_from_slice(&initial[at..at + hidden]);
        c.extend_from_slice(&initial[at + hidden..at + 2 * hidden]);
    }
    (h, c)
}

/// The slice's rows (indices within it) that are past their length at step `t`; empty when
/// every row reads it.
fn finished_rows(
    reading: &Reading,
    start: usize,
    rows: usize,
    steps: usize,
    t: usize,
) -> Vec<usize> {
    if reading.lengths.is_none() {
        return Vec::new();
    }
    (0..rows)
        .filter(|&r| t >= reading.length(start + r, steps))
        .collect()
}

/// Copies rows `which` of `from` (`[rows, width]`, or zeros when `None`) into `to`.
fn copy_rows(which: &[usize], width: usize, from: Option<&[f32]>, to: &mut [f32]) {
    for &r in which {
        let span = r * width..(r + 1) * width;
        match from {
            Some(from) => to[span.clone()].copy_from_slice(&from[span]),
            None => to[span].fill(0.0),
        }
    }
}

/// Step `t`'s part of a time-major buffer of `step_len` values a step, to write, and step
/// `previous`'s (another step), to read.
fn step_pair(
    buffer: &mut [f32],
    step_len: usize,
    t: usize,
    previous: Option<usize>,
) -> (&mut [f32], Option<&[f32]>) {
    let (before, from) = buffer.split_at_mut(t * step_len);
    let (current, after) = from.split_at_mut(step_len);
    let (before, after): (&[f32], &[f32]) = (before, after);
    let previous = previous.map(|p| {
        if p < t {
            &before[p * step_len..(p + 1) * step_len]
        } else {
            &after[(p - t - 1) * step_len..(p - t) * step_len]
        }
    });
    (current, previous)
}

impl Forward {
    /// Runs one direction over `inputs` (`[batch, steps, input]`, row-major) with the fused
    /// `weights`, from `initial` (`[batch, 2, hidden]`: each row's hidden then cell state; zero
    /// when `None`), as `reading` says.
    ///
    /// # Panics
    /// If the slices' lengths disagree with `dims`.
    pub fn run(
        dims: Dims,
        inputs: &[f32],
        weights: Vec<f32>,
        initial: Option<&[f32]>,
        reading: Reading,
    ) -> Self {
        assert_eq!(inputs.len(), dims.batch * dims.steps * dims.input);
        assert_eq!(weights.len(), dims.weight_rows() * dims.gates());
        if let Some(initial) = initial {
            assert_eq!(initial.len(), dims.batch * 2 * dims.hidden);
        }
        let slices = training_slices(dims.batch)
            .into_par_iter()
            .map(|(start, rows)| {
                let initial = initial.map(|all| initial_rows(all, start, rows, dims.hidden));
                forward_slice(dims, inputs, &weights, initial, &reading, (start, rows))
            })
            .collect();
        Self {
            dims,
            reading,
            weights,
            slices,
        }
    }

    /// The sizes of the call.
    pub fn dims(&self) -> Dims {
        self.dims
    }

    /// Where the results lie in the output.
    pub fn layout(&self) -> OutputLayout {
        OutputLayout::new(self.dims, self.reading.last_only)
    }

    /// The output ([`OutputLayout`]): the hidden state of every kept step at its own index (zero
    /// past a row's length), then the final hidden and cell states.
    pub fn outputs(&self) -> Vec<f32> {
        let Dims { steps, hidden, .. } = self.dims;
        let layout = self.layout();
        let kept = kept(steps, self.reading.last_only);
        let last = reading_order(steps, self.reading.reverse)
            .last()
            .unwrap_or(0);
        let mut outputs = vec![0.0; layout.rows() * hidden];
        for slice in &self.slices {
            for r in 0..slice.rows {
                let row = slice.start + r;
                let length = self.reading.length(row, steps);
                let from = |t: usize| (t * slice.rows + r) * hidden;
                for t in 0..kept.min(length) {
                    let to = layout.step(row, t);
                    outputs[to..to + hidden]
                        .copy_from_slice(&slice.states[from(t)..from(t) + hidden]);
                }
                let to = layout.final_hidden(row);
                outputs[to..to + hidden]
                    .copy_from_slice(&slice.states[from(last)..from(last) + hidden]);
                let to = layout.final_cell(row);
                outputs[to..to + hidden]
                    .copy_from_slice(&slice.cells[from(last)..from(last) + hidden]);
            }
        }
        outputs
    }

    /// The gradients of the weights (`[input + 1 + hidden, 4 hidden]`), of the inputs
    /// (`[batch, steps, input]`, when `input_grad`) and of the initial state (`[batch, 2,
    /// hidden]`, when the call had one), given that of the outputs (the shape of
    /// [`outputs`](Self::outputs)).
    ///
    /// # Panics
    /// If `output_grad` does not have the outputs' length.
    pub fn backward(&self, output_grad: &[f32], input_grad: bool) -> Gradients {
        let dims = self.dims;
        assert_eq!(output_grad.len(), self.layout().rows() * dims.hidden);
        // `W_hᵀ` laid out row-major once for every slice: each step's product reads it whole,
        // and gemm would otherwise repack the transposed view at every step (most of the
        // backward pass's time for hidden sizes of a few hundred).
        let hidden_weights_t = transposed(
            &self.weights[(dims.input + 1) * dims.gates()..],
            dims.hidden,
            dims.gates(),
        );
        let parts: Vec<SliceGradients> = self
            .slices
            .par_iter()
            .map(|slice| backward_slice(self, slice, &hidden_weights_t, output_grad, input_grad))
            .collect();
        let mut weights = vec![0.0; dims.weight_rows() * dims.gates()];
        let mut inputs = input_grad.then(|| vec![0.0; dims.batch * dims.steps * dims.input]);
        let has_initial = self.slices.iter().any(|slice| slice.initial.is_some());
        let mut initial = has_initial.then(|| vec![0.0; dims.batch * 2 * dims.hidden]);
        for (slice, part) in self.slices.iter().zip(parts) {
            for (sum, value) in weights.iter_mut().zip(&part.weights) {
                *sum += value;
            }
            if let (Some(all), Some(part)) = (inputs.as_mut(), part.inputs) {
                let input = dims.input;
                for r in 0..slice.rows {
                    for t in 0..dims.steps {
                        let to = ((slice.start + r) * dims.steps + t) * input;
                        let from = (t * slice.rows + r) * input;
                        all[to..to + input].copy_from_slice(&part[from..from + input]);
                    }
                }
            }
            if let (Some(all), Some((h, c))) = (initial.as_mut(), part.initial) {
                let hidden = dims.hidden;
                for r in 0..slice.rows {
                    let to = (slice.start + r) * 2 * hidden;
                    all[to..to + hidden].copy_from_slice(&h[r * hidden..(r + 1) * hidden]);
                    all[to + hidden..to + 2 * hidden]
                        .copy_from_slice(&c[r * hidden..(r + 1) * hidden]);
                }
            }
        }
        Gradients {
            weights,
            inputs,
            initial,
        }
    }
}

/// What [`Forward::backward`] gives.
#[derive(Debug, PartialEq)]
pub(crate) struct Gradients {
    /// `[input + 1 + hidden, 4 hidden]`.
    pub weights: Vec<f32>,
    /// `[batch, steps, input]`, when asked for.
    pub inputs: Option<Vec<f32>>,
    /// `[batch, 2, hidden]`, when the call had an initial state.
    pub initial: Option<Vec<f32>>,
}

/// One slice's share of [`Gradients`], time-major, and its initial state's `(h, c)`.
struct SliceGradients {
    weights: Vec<f32>,
    inputs: Option<Vec<f32>>,
    initial: Option<(Vec<f32>, Vec<f32>)>,
}

/// The outputs of [`Forward::run`] followed by [`Forward::outputs`], but keeping nothing for a
/// backward pass: for inference.
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
    initial: Option<&[f32]>,
    reading: &Reading,
) -> Vec<f32> {
    let Dims {
        batch,
        steps,
        input,
        hidden,
    } = dims;
    assert_eq!(inputs.len(), batch * steps * input);
    assert_eq!(weights.len(), dims.weight_rows() * dims.gates());
    let layout = OutputLayout::new(dims, reading.last_only);
    let kept = kept(steps, reading.last_only);
    let mut outputs = vec![0.0; layout.rows() * hidden];
    // Each slice's rows in the three blocks of the output.
    let (mut step_block, finals) = outputs.split_at_mut(batch * kept * hidden);
    let (mut hidden_block, mut cell_block) = finals.split_at_mut(batch * hidden);
    let mut parts = Vec::new();
    for (start, rows) in slices(batch) {
        let part = SliceOutputs {
            steps: take_front(&mut step_block, rows * kept * hidden),
            hidden: take_front(&mut hidden_block, rows * hidden),
            cell: take_front(&mut cell_block, rows * hidden),
        };
        parts.push((start, rows, part));
    }
    parts.into_par_iter().for_each(|(start, rows, part)| {
        let initial = initial.map(|all| initial_rows(all, start, rows, hidden));
        infer_slice(dims, inputs, weights, initial, reading, (start, rows), part)
    });
    outputs
}

/// The first `len` values of `rest`, which keeps the others.
fn take_front<'a>(rest: &mut &'a mut [f32], len: usize) -> &'a mut [f32] {
    let (front, after) = std::mem::take(rest).split_at_mut(len);
    *rest = after;
    front
}

/// One slice's rows of the output: `[rows, kept, hidden]` kept steps, and `[rows, hidden]` final
/// hidden and cell states.
struct SliceOutputs<'a> {
    steps: &'a mut [f32],
    hidden: &'a mut [f32],
    cell: &'a mut [f32],
}

/// [`infer`] for batch rows `start..start + rows`, into their part of the outputs.
fn infer_slice(
    dims: Dims,
    inputs: &[f32],
    weights: &[f32],
    initial: Option<(Vec<f32>, Vec<f32>)>,
    reading: &Reading,
    (start, rows): (usize, usize),
    outputs: SliceOutputs<'_>,
) {
    let Dims {
        steps,
        input,
        hidden,
        ..
    } = dims;
    let width = dims.weight_rows();
    let gates_width = dims.gates();
    let kept = kept(steps, reading.last_only);
    let has_initial = initial.is_some();
    let (mut operand, mut previous_cell) = infer_start(dims, rows, initial);
    let mut gates = vec![0.0; rows * gates_width];
    let mut cell = vec![0.0; rows * hidden];
    let mut tanh_cell = vec![0.0; rows * hidden];
    let mut state = vec![0.0; rows * hidden];
    for (position, t) in reading_order(steps, reading.reverse).enumerate() {
        for (r, row) in operand.chunks_exact_mut(width).enumerate() {
            let from = ((start + r) * steps + t) * input;
            row[..input].copy_from_slice(&inputs[from..from + input]);
        }
        // From a zero state the first step's hidden rows of the matrix are left out.
        let has_previous = position > 0 || has_initial;
        let used = if has_previous { width } else { input + 1 };
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
            has_previous.then_some(&previous_cell[..]),
            &mut cell,
            &mut tanh_cell,
            &mut state,
        );
        // Rows past their length keep their state.
        let finished = finished_rows(reading, start, rows, steps, t);
        copy_rows(
            &finished,
            hidden,
            has_previous.then_some(&previous_cell[..]),
            &mut cell,
        );
        for &r in &finished {
            let h = &mut state[r * hidden..(r + 1) * hidden];
            if has_previous {
                h.copy_from_slice(&operand[r * width + input + 1..(r + 1) * width]);
            } else {
                h.fill(0.0);
            }
        }
        std::mem::swap(&mut cell, &mut previous_cell);
        for (r, (row, h)) in operand
            .chunks_exact_mut(width)
            .zip(state.chunks_exact(hidden))
            .enumerate()
        {
            row[input + 1..].copy_from_slice(h);
            if t < kept && t < reading.length(start + r, steps) {
                let to = (r * kept + t) * hidden;
                outputs.steps[to..to + hidden].copy_from_slice(h);
            }
        }
    }
    outputs.hidden.copy_from_slice(&state);
    outputs.cell.copy_from_slice(&previous_cell);
}

/// [`infer_slice`]'s buffers before the first step: the operand `[x_t, 1, h_{t-1}]` of each of
/// `rows` rows (the bias column 1, the hidden part the initial state or zero) and the previous
/// cell state `[rows, hidden]`.
fn infer_start(
    dims: Dims,
    rows: usize,
    initial: Option<(Vec<f32>, Vec<f32>)>,
) -> (Vec<f32>, Vec<f32>) {
    let Dims { input, hidden, .. } = dims;
    let width = dims.weight_rows();
    let mut operand = vec![0.0; rows * width];
    for row in operand.chunks_exact_mut(width) {
        row[input] = 1.0;
    }
    let Some((h, c)) = initial else {
        return (operand, vec![0.0; rows * hidden]);
    };
    for (row, h) in operand.chunks_exact_mut(width).zip(h.chunks_exact(hidden)) {
        row[input + 1..].copy_from_slice(h);
    }
    (operand, c)
}

/// The forward pass of batch rows `start..start + rows`.
fn forward_slice(
    dims: Dims,
    inputs: &[f32],
    weights: &[f32],
    initial: Option<(Vec<f32>, Vec<f32>)>,
    reading: &Reading,
    (start, rows): (usize, usize),
) -> Slice {
    let slice_inputs = time_major_inputs(dims, inputs, (start, rows));
    let mut gates = input_projection(dims, &slice_inputs, weights, rows);
    let step_len = rows * dims.hidden;
    let mut slice = Slice {
        start,
        rows,
        inputs: slice_inputs,
        gates: Vec::new(),
        cells: vec![0.0; dims.steps * step_len],
        tanh_cells: vec![0.0; dims.steps * step_len],
        states: vec![0.0; dims.steps * step_len],
        initial,
    };
    recurrence(dims, weights, reading, &mut slice, &mut gates);
    slice.gates = gates;
    slice
}

/// Batch rows `start..start + rows` of `inputs` (`[batch, steps, input]`), time-major:
/// `[steps, rows, input]`.
fn time_major_inputs(dims: Dims, inputs: &[f32], (start, rows): (usize, usize)) -> Vec<f32> {
    let Dims { steps, input, .. } = dims;
    let mut slice_inputs = vec![0.0; steps * rows * input];
    for r in 0..rows {
        for t in 0..steps {
            let from = ((start + r) * steps + t) * input;
            let to = (t * rows + r) * input;
            slice_inputs[to..to + input].copy_from_slice(&inputs[from..from + input]);
        }
    }
    slice_inputs
}

/// Every step's input product plus the bias, `[steps, rows, 4 hidden]`, in one matrix product.
fn input_projection(dims: Dims, slice_inputs: &[f32], weights: &[f32], rows: usize) -> Vec<f32> {
    let Dims { steps, input, .. } = dims;
    let gates_width = dims.gates();
    let bias = &weights[input * gates_width..(input + 1) * gates_width];
    let mut gates = vec![0.0; steps * rows * gates_width];
    for row in gates.chunks_exact_mut(gates_width) {
        row.copy_from_slice(bias);
    }
    simd::matmul(
        &mut gates,
        gates_width,
        true,
        Matrix::row_major(slice_inputs, steps * rows, input),
        Matrix::row_major(&weights[..input * gates_width], input, gates_width),
    );
    gates
}

/// The steps in reading order: each adds the recurrent product to its gates' pre-activations
/// (`gates`, left activated), then updates the slice's cells, their tanh and hidden states; rows
/// past their length keep their state.
fn recurrence(
    dims: Dims,
    weights: &[f32],
    reading: &Reading,
    slice: &mut Slice,
    gates: &mut [f32],
) {
    let Dims {
        steps,
        input,
        hidden,
        ..
    } = dims;
    let gates_width = dims.gates();
    let rows = slice.rows;
    let hidden_weights =
        Matrix::row_major(&weights[(input + 1) * gates_width..], hidden, gates_width);
    let step_len = rows * hidden;
    let initial = slice.initial.as_ref();
    let mut previous: Option<usize> = None;
    for t in reading_order(steps, reading.reverse) {
        let step_gates = &mut gates[t * rows * gates_width..(t + 1) * rows * gates_width];
        let (current_state, previous_state) = step_pair(&mut slice.states, step_len, t, previous);
        let previous_state = previous_state.or(initial.map(|(h, _)| &h[..]));
        if let Some(previous_state) = previous_state {
            simd::matmul(
                step_gates,
                gates_width,
                true,
                Matrix::row_major(previous_state, rows, hidden),
                hidden_weights,
            );
        }
        let (current_cell, previous_cell) = step_pair(&mut slice.cells, step_len, t, previous);
        let previous_cell = previous_cell.or(initial.map(|(_, c)| &c[..]));
        simd::forward_step(
            hidden,
            step_gates,
            previous_cell,
            current_cell,
            &mut slice.tanh_cells[t * step_len..(t + 1) * step_len],
            current_state,
        );
        let finished = finished_rows(reading, slice.start, rows, steps, t);
        copy_rows(&finished, hidden, previous_cell, current_cell);
        copy_rows(&finished, hidden, previous_state, current_state);
        previous = Some(t);
    }
}

/// The gradients of a slice's hidden and cell states, `[rows, hidden]` each, as the recurrence
/// carries them back from step to step.
struct StateGradients {
    hidden: Vec<f32>,
    cell: Vec<f32>,
}

/// The backward pass of one slice: its share of the weight gradient and, when `input_grad`, the
/// gradient of its inputs (time-major), and that of its initial state.
fn backward_slice(
    forward: &Forward,
    slice: &Slice,
    hidden_weights_t: &[f32],
    output_grad: &[f32],
    input_grad: bool,
) -> SliceGradients {
    let Dims { input, .. } = forward.dims;
    let gates_width = forward.dims.gates();
    let (steps_grad, mut carried) = slice_output_gradients(forward, slice, output_grad);
    let gate_grads = gate_gradients(forward, slice, hidden_weights_t, &steps_grad, &mut carried);
    let weights = weight_gradient(forward, slice, &gate_grads);
    let inputs = input_grad.then(|| {
        let all_rows = forward.dims.steps * slice.rows;
        let mut grad = vec![0.0; all_rows * input];
        simd::matmul(
            &mut grad,
            input,
            false,
            Matrix::row_major(&gate_grads, all_rows, gates_width),
            Matrix::row_major(&forward.weights[..input * gates_width], input, gates_width)
                .transpose(),
        );
        grad
    });
    SliceGradients {
        weights,
        inputs,
        initial: slice
            .initial
            .is_some()
            .then_some((carried.hidden, carried.cell)),
    }
}

/// The slice's share of the output gradient: time-major, every step's (zero at the steps the
/// outputs leave out and past each row's length), and the final states', which start the
/// recurrence.
fn slice_output_gradients(
    forward: &Forward,
    slice: &Slice,
    output_grad: &[f32],
) -> (Vec<f32>, StateGradients) {
    let Dims { steps, hidden, .. } = forward.dims;
    let reading = &forward.reading;
    let rows = slice.rows;
    let step_len = rows * hidden;
    let kept = kept(steps, reading.last_only);
    let layout = forward.layout();
    let mut steps_grad = vec![0.0; steps * step_len];
    let mut carried = StateGradients {
        hidden: vec![0.0; step_len],
        cell: vec![0.0; step_len],
    };
    for r in 0..rows {
        let row = slice.start + r;
        for t in 0..kept.min(reading.length(row, steps)) {
            let (to, from) = ((t * rows + r) * hidden, layout.step(row, t));
            steps_grad[to..to + hidden].copy_from_slice(&output_grad[from..from + hidden]);
        }
        let span = r * hidden..(r + 1) * hidden;
        let from = layout.final_hidden(row);
        carried.hidden[span.clone()].copy_from_slice(&output_grad[from..from + hidden]);
        let from = layout.final_cell(row);
        carried.cell[span].copy_from_slice(&output_grad[from..from + hidden]);
    }
    (steps_grad, carried)
}

/// The transpose of the row-major `[rows, columns]` matrix `values`, row-major `[columns, rows]`.
fn transposed(values: &[f32], rows: usize, columns: usize) -> Vec<f32> {
    let mut out = vec![0.0; rows * columns];
    for (r, row) in values.chunks_exact(columns).take(rows).enumerate() {
        for (c, &value) in row.iter().enumerate() {
            out[c * rows + r] = value;
        }
    }
    out
}

/// The gradient of every step's gate pre-activations, `[steps, rows, 4 hidden]`, walking the
/// steps back from the last read; `carried` ends as the initial state's gradients.
/// `hidden_weights_t` is `W_hᵀ`, row-major `[4 hidden, hidden]`.
fn gate_gradients(
    forward: &Forward,
    slice: &Slice,
    hidden_weights_t: &[f32],
    steps_grad: &[f32],
    carried: &mut StateGradients,
) -> Vec<f32> {
    let Dims { steps, hidden, .. } = forward.dims;
    let reading = &forward.reading;
    let gates_width = forward.dims.gates();
    let rows = slice.rows;
    let step_len = rows * hidden;
    let hidden_weights_t = Matrix::row_major(hidden_weights_t, gates_width, hidden);
    let mut gate_grads = vec![0.0; steps * rows * gates_width];
    let read_order: Vec<usize> = reading_order(steps, reading.reverse).collect();
    for (position, &t) in read_order.iter().enumerate().rev() {
        let previous = position.checked_sub(1).map(|p| read_order[p]);
        let finished = finished_rows(reading, slice.start, rows, steps, t);
        // A finished row passes its state's gradients through the step untouched.
        let passed = (!finished.is_empty()).then(|| (carried.hidden.clone(), carried.cell.clone()));
        let step_gate_grads = &mut gate_grads[t * rows * gates_width..(t + 1) * rows * gates_width];
        let previous_cell = match previous {
            Some(p) => Some(&slice.cells[p * step_len..(p + 1) * step_len]),
            None => slice.initial.as_ref().map(|(_, c)| &c[..]),
        };
        simd::backward_step(
            hidden,
            &slice.gates[t * rows * gates_width..(t + 1) * rows * gates_width],
            previous_cell,
            &slice.tanh_cells[t * step_len..(t + 1) * step_len],
            &steps_grad[t * step_len..(t + 1) * step_len],
            Some(&carried.hidden[..]),
            &mut carried.cell,
            step_gate_grads,
        );
        copy_rows(&finished, gates_width, None, step_gate_grads);
        if let Some((_, passed_cell)) = &passed {
            copy_rows(&finished, hidden, Some(passed_cell), &mut carried.cell);
        }
        if previous.is_some() || slice.initial.is_some() {
            // What reaches the previous (or initial) hidden state through this step's gates.
            simd::matmul(
                &mut carried.hidden,
                hidden,
                false,
                Matrix::row_major(step_gate_grads, rows, gates_width),
                hidden_weights_t,
            );
            if let Some((passed_hidden, _)) = &passed {
                copy_rows(&finished, hidden, Some(passed_hidden), &mut carried.hidden);
            }
        }
    }
    gate_grads
}

/// The slice's share of the fused weights' gradient, `[input + 1 + hidden, 4 hidden]`, from its
/// gate gradients: all steps at once, a matrix product for each block of rows.
fn weight_gradient(forward: &Forward, slice: &Slice, gate_grads: &[f32]) -> Vec<f32> {
    let Dims {
        steps,
        input,
        hidden,
        ..
    } = forward.dims;
    let gates_width = forward.dims.gates();
    let rows = slice.rows;
    let step_len = rows * hidden;
    let all_rows = steps * rows;
    let mut weight_grad = vec![0.0; forward.dims.weight_rows() * gates_width];
    let (input_part, rest) = weight_grad.split_at_mut(input * gates_width);
    let (bias_part, hidden_part) = rest.split_at_mut(gates_width);
    simd::matmul(
        input_part,
        gates_width,
        false,
        Matrix::row_major(&slice.inputs, all_rows, input).transpose(),
        Matrix::row_major(gate_grads, all_rows, gates_width),
    );
    simd::add_column_sums(gate_grads, gates_width, bias_part);
    if steps > 1 {
        // Each step but the first read the hidden state of the step before it, and the steps
        // are stored in time order, so the pairs (previous state, gate gradient) are two
        // contiguous ranges, shifted by one step.
        let pairs = (steps - 1) * rows;
        let (states, grads) = if forward.reading.reverse {
            (
                &slice.states[step_len..],
                &gate_grads[..pairs * gates_width],
            )
        } else {
            (
                &slice.states[..pairs * hidden],
                &gate_grads[rows * gates_width..],
            )
        };
        simd::matmul(
            hidden_part,
            gates_width,
            false,
            Matrix::row_major(states, pairs, hidden).transpose(),
            Matrix::row_major(grads, pairs, gates_width),
        );
    }
    if let Some((h, _)) = &slice.initial {
        // The first step read the initial state.
        let first = reading_order(steps, forward.reading.reverse)
            .next()
            .unwrap_or(0);
        simd::matmul(
            hidden_part,
            gates_width,
            steps > 1,
            Matrix::row_major(h, rows, hidden).transpose(),
            Matrix::row_major(
                &gate_grads[first * rows * gates_width..(first + 1) * rows * gates_width],
                rows,
                gates_width,
            ),
        );
    }
    weight_grad
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small deterministic pseudo-random sequence in [-scale, scale].
    /// Batch row `row`'s results in an output of `kept` steps a row: its kept steps, then its
    /// final hidden and cell states.
    fn row_results(all: &[f32], dims: Dims, kept: usize, row: usize) -> Vec<f32> {
        let hidden = dims.hidden;
        let steps = &all[row * kept * hidden..(row + 1) * kept * hidden];
        let finals = dims.batch * kept * hidden;
        let h = &all[finals + row * hidden..][..hidden];
        let c = &all[finals + (dims.batch + row) * hidden..][..hidden];
        [steps, h, c].concat()
    }

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
    fn loss(
        dims: Dims,
        inputs: &[f32],
        weights: &[f32],
        initial: Option<&[f32]>,
        reading: &Reading,
        probe: &[f32],
    ) -> f64 {
        Forward::run(dims, inputs, weights.to_vec(), initial, reading.clone())
            .outputs()
            .iter()
            .zip(probe)
            .map(|(o, p)| f64::from(*o) * f64::from(*p))
            .sum()
    }

    /// Central differences of a loss in each value of `at`, against its analytic gradient.
    fn check(what: &str, at: &[f32], analytic: &[f32], loss_at: &dyn Fn(&[f32]) -> f64) {
        let epsilon = 1e-2;
        for k in 0..at.len() {
            let mut plus = at.to_vec();
            plus[k] += epsilon;
            let mut minus = at.to_vec();
            minus[k] -= epsilon;
            let numeric = (loss_at(&plus) - loss_at(&minus)) / (2.0 * f64::from(epsilon));
            assert!(
                (f64::from(analytic[k]) - numeric).abs() < 2e-3,
                "{what} {k}: analytic {}, numeric {numeric}",
                analytic[k]
            );
        }
    }

    /// The analytic gradients (weights, inputs, initial state; through every output and the
    /// final states) against central differences of the loss, in both directions, with and
    /// without an initial state and lengths.
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
        let initial_values = values(dims.batch * 2 * dims.hidden, 7, 0.9);
        for (reverse, with_initial, lengths) in [
            (false, false, None),
            (true, false, None),
            (false, true, Some(vec![4, 1, 3])),
            (true, true, Some(vec![2, 4, 1])),
            (true, false, Some(vec![3, 3, 4])),
        ] {
            let reading = Reading {
                reverse,
                last_only: false,
                lengths: lengths.map(Arc::from),
            };
            let initial = with_initial.then_some(&initial_values[..]);
            let probe = values(dims.batch * (dims.steps + 2) * dims.hidden, 3, 1.0);
            let forward = Forward::run(dims, &inputs, weights.clone(), initial, reading.clone());
            let grads = forward.backward(&probe, true);
            let case = format!(
                "reverse {reverse}, initial {with_initial}, {:?}",
                reading.lengths
            );
            check(
                &format!("weight ({case})"),
                &weights,
                &grads.weights,
                &|w| loss(dims, &inputs, w, initial, &reading, &probe),
            );
            let input_grad = grads.inputs.expect("asked for the inputs' gradient");
            check(&format!("input ({case})"), &inputs, &input_grad, &|x| {
                loss(dims, x, &weights, initial, &reading, &probe)
            });
            assert_eq!(grads.initial.is_some(), with_initial);
            if let Some(initial_grad) = grads.initial {
                check(
                    &format!("initial ({case})"),
                    &initial_values,
                    &initial_grad,
                    &|h| loss(dims, &inputs, &weights, Some(h), &reading, &probe),
                );
            }
        }
    }

    /// Past a row's length its outputs are zero and its final state is its last valid step's:
    /// the same as running that row alone, cut to its length.
    #[test]
    fn lengths_cut_each_row_as_a_sequence_of_its_own() {
        let dims = Dims {
            batch: 3,
            steps: 5,
            input: 2,
            hidden: 4,
        };
        let inputs = values(dims.batch * dims.steps * dims.input, 8, 1.0);
        let weights = values(dims.weight_rows() * 4 * dims.hidden, 9, 0.8);
        let lengths = [5, 2, 3];
        for reverse in [false, true] {
            let reading = Reading {
                reverse,
                last_only: false,
                lengths: Some(Arc::from(&lengths[..])),
            };
            let all = Forward::run(dims, &inputs, weights.clone(), None, reading).outputs();
            for (row, &length) in lengths.iter().enumerate() {
                let alone = Dims {
                    batch: 1,
                    steps: length,
                    ..dims
                };
                let row_inputs = &inputs[row * dims.steps * dims.input..][..length * dims.input];
                let expected = Forward::run(
                    alone,
                    row_inputs,
                    weights.clone(),
                    None,
                    Reading {
                        reverse,
                        ..Reading::default()
                    },
                )
                .outputs();
                let got = &row_results(&all, dims, dims.steps, row);
                let h = dims.hidden;
                // Within rounding: the matrix products of a batch of one sum in another order.
                let close = |got: &[f32], expected: &[f32]| {
                    assert_eq!(got.len(), expected.len());
                    for (g, e) in got.iter().zip(expected) {
                        assert!(
                            (g - e).abs() < 1e-6,
                            "row {row}, reverse {reverse}: {g} vs {e}"
                        );
                    }
                };
                close(&got[..length * h], &expected[..length * h]);
                assert!(got[length * h..dims.steps * h].iter().all(|v| *v == 0.0));
                close(&got[dims.steps * h..], &expected[length * h..]);
            }
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
        let initial = values(dims.batch * 2 * dims.hidden, 10, 0.5);
        // The final states alone: the output of a call that keeps no step.
        let finals = |all: &[f32], steps: usize| -> Vec<f32> {
            all[dims.batch * steps * dims.hidden..].to_vec()
        };
        for reverse in [false, true] {
            for initial in [None, Some(&initial[..])] {
                for lengths in [None, Some(Arc::from(&[6, 1, 3, 6, 2][..]))] {
                    let reading = Reading {
                        reverse,
                        last_only: false,
                        lengths,
                    };
                    let expected =
                        Forward::run(dims, &inputs, weights.clone(), initial, reading.clone())
                            .outputs();
                    let close = |actual: &[f32], expected: &[f32]| {
                        assert_eq!(actual.len(), expected.len());
                        for (e, a) in expected.iter().zip(actual) {
                            assert!((e - a).abs() < 1e-6, "{reading:?}: {e} vs {a}");
                        }
                    };
                    close(
                        &infer(dims, &inputs, &weights, initial, &reading),
                        &expected,
                    );
                    let last_only = Reading {
                        last_only: true,
                        ..reading.clone()
                    };
                    close(
                        &infer(dims, &inputs, &weights, initial, &last_only),
                        &finals(&expected, dims.steps),
                    );
                    let kept_none =
                        Forward::run(dims, &inputs, weights.clone(), initial, last_only);
                    assert_eq!(kept_none.outputs(), finals(&expected, dims.steps));
                }
            }
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
        // A small batch is still cut in two, down to slices of 8 rows.
        assert_eq!(training_slices(16), vec![(0, 8), (8, 8)]);
        assert_eq!(training_slices(33), vec![(0, 17), (17, 16)]);
        assert_eq!(training_slices(15), vec![(0, 15)]);
        assert_eq!(
            training_slices(100),
            vec![(0, 25), (25, 25), (50, 25), (75, 25)]
        );
    }
}
