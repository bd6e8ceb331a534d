//! The recurrence of one LSTM direction as CubeCL kernels: one launch walks every time step.
//!
//! Values move as vectors of `N` consecutive columns (`Vector<F, N>`, 4 where the input and
//! hidden sizes allow): a load or store moves `N` values, and on a GPU a vector load from global
//! memory is one wide transaction. A cube owns `rows` batch rows; each of its units owns `spread` vector groups
//! of hidden units (group `g` is hidden units `g N .. g N + N`; a unit's groups are `unit`,
//! `unit + groups / spread`, ...) and computes their four gates (the same groups in the column
//! blocks `[input | forget | output | cell]` of the fused weights) for all the cube's rows, so that
//!
//! - each weight vector it reads serves `rows` rows, and each previous hidden vector it reads from
//!   shared memory serves `N` columns of weights: loads, not arithmetic, bound this loop (on a
//!   CPU rasteriser every load is a gather; on a GPU fewer loads leave more room for latency);
//! - the cell update of its hidden units needs no other unit's results: their cell states stay in
//!   the unit's registers, and a step ends with one barrier, after the new hidden state is
//!   written to the other half of a double buffer.
//!
//! The backward kernel mirrors it in reverse time: a unit turns the gradient reaching its hidden
//! units' hidden and cell states into their gates' gradients, then, after a barrier, sums the
//! gradient reaching their previous hidden states over every gate column. Cubes never wait on
//! each other (there is no grid-wide barrier on wgpu): batch rows are independent.
//!
//! Each row has its own length (PyTorch's packed sequences): at step `s` a row of length `L`
//! reads time index `s` (right to left, `L - 1 - s`) while `s < L`; after that it keeps its state,
//! writes zero outputs at index `s` and, in the backward pass, zero gate gradients there, so that
//! its final state is that of its last valid step and nothing of its padding reaches a gradient.
//!
//! Layouts, all contiguous and row-major, indexed in vectors (so the vector size divides both the
//! input and the hidden size): `inputs` `[batch, steps, input]`, `gates` and `dz`
//! `[batch, steps, 4 hidden]` (gate columns `[input | forget | output | cell]`, the cell gate's
//! pre-activation doubled as in `tensor_ops.rs`), `weights` the fused `[input + 1 + hidden, 4 hidden]`
//! (the bias in row `input`, the recurrent rows after it), `w_h_t` the recurrent rows' transpose
//! `[4 hidden, hidden]`, `initial` and its gradient `[batch, 2, hidden]` (each row's hidden then
//! cell state), `lengths` `[batch]` (u32, one value per index), `previous` (the hidden state a
//! step read) and `cells` `[batch, steps, hidden]` at each step's own time index, and `outputs`
//! `[batch * kept + 2 batch, hidden]`: every step's hidden state (`kept = steps`, or none), then
//! the final hidden and cell states, as the CPU kernel lays them out.

use cubecl::prelude::*;

/// `1 / (1 + e^-x)`, lane by lane.
#[cube]
fn sigmoid<F: Float, N: Size>(x: Vector<F, N>) -> Vector<F, N> {
    let one = Vector::<F, N>::broadcast(F::new(1.0));
    one / (one + (Vector::<F, N>::broadcast(F::new(0.0)) - x).exp())
}

/// `tanh(x)` as `2 sigmoid(2 x) - 1`, as the CPU kernel and the tensor-op path compute it.
#[cube]
fn tanh_of<F: Float, N: Size>(x: Vector<F, N>) -> Vector<F, N> {
    let two = Vector::<F, N>::broadcast(F::new(2.0));
    two * sigmoid::<F, N>(two * x) - Vector::<F, N>::broadcast(F::new(1.0))
}

/// A vector of zeros.
#[cube]
fn zeros<F: Float, N: Size>() -> Vector<F, N> {
    Vector::<F, N>::broadcast(F::new(0.0))
}

/// The time index a row of `length` valid steps reads at step `step`: left to right or
/// (`reverse == 1`) from its own last valid step back. A step past the row's length (the row
/// has finished) stands for time index `step` itself, one of the padded indices
/// `length..steps`, where the row's outputs are zero.
#[cube]
fn time_of(step: usize, length: usize, reverse: u32) -> usize {
    if step < length && reverse == 1 {
        length - 1 - step
    } else {
        step
    }
}

/// Whether a row of `length` valid steps reads step `step`: always when the call has no lengths
/// (`has_lengths` is known when the kernel compiles, so the test then compiles away).
#[cube]
fn within(step: usize, length: u32, #[comptime] has_lengths: bool) -> bool {
    let mut valid = true;
    if has_lengths {
        valid = step < length as usize;
    }
    valid
}

/// Zeroes a shared buffer of `len` vectors, spread over the cube's units.
#[cube]
fn zero_shared<F: Float, N: Size>(buffer: &mut Shared<[Vector<F, N>]>, #[comptime] len: usize) {
    let mut index = UNIT_POS_X as usize;
    while index < len {
        buffer[index] = zeros::<F, N>();
        index += CUBE_DIM_X as usize;
    }
}

/// `len` zeroed vectors in a unit's registers.
#[cube]
fn zeroed<F: Float, N: Size>(#[comptime] len: usize) -> Array<Vector<F, N>> {
    let mut values = Array::<Vector<F, N>>::new(len);
    #[unroll]
    for i in 0..len {
        values[i] = zeros::<F, N>();
    }
    values
}

/// Which vector group is unit `unit`'s `m`-th: `unit + m * groups / spread`, so that neighbouring
/// units read neighbouring weights.
#[cube]
fn owned(unit: usize, m: usize, #[comptime] groups: usize, #[comptime] spread: usize) -> usize {
    unit + m * (groups / spread)
}

/// Where a forward kernel's unit is: its cube's rows, the fused weights' rows, its bias.
#[derive(CubeType)]
struct Walker<F: Float, N: Size> {
    unit: usize,
    first_row: usize,
    batch: usize,
    steps: usize,
    /// Input values per step.
    input: usize,
    reverse: u32,
    /// The vector index of the first recurrent row of the fused weights.
    recurrent_at: usize,
    /// The bias of the unit's gates, `[m * 4 + gate]`.
    bias: Array<Vector<F, N>>,
    /// The valid steps of each of the cube's rows (a row past the batch has the last row's).
    lengths: Array<u32>,
}

/// The unit's place, its gates' bias and its rows' lengths, read once before the time loop.
#[cube]
fn walker<F: Float, N: Size>(
    weights: &Tensor<Vector<F, N>>,
    lengths: &Tensor<u32>,
    batch: u32,
    steps: u32,
    input: u32,
    reverse: u32,
    #[comptime] rows: usize,
    #[comptime] hidden: usize,
    #[comptime] vector: usize,
    #[comptime] spread: usize,
) -> Walker<F, N> {
    let groups = hidden / vector;
    let unit = UNIT_POS_X as usize;
    let bias_at = input as usize * 4 * groups;
    let mut bias = Array::<Vector<F, N>>::new(4 * spread);
    #[unroll]
    for m in 0..spread {
        #[unroll]
        for gate in 0..4 {
            bias[m * 4 + gate] = weights[bias_at + gate * groups + owned(unit, m, groups, spread)];
        }
    }
    let first_row = CUBE_POS_X as usize * rows;
    let lengths = row_lengths(lengths, first_row, batch as usize, rows);
    Walker::<F, N> {
        unit,
        first_row,
        batch: batch as usize,
        steps: steps as usize,
        input: input as usize,
        reverse,
        recurrent_at: bias_at + 4 * groups,
        bias,
        lengths,
    }
}

/// The valid steps of rows `first_row..first_row + rows`.
#[cube]
fn row_lengths(
    lengths: &Tensor<u32>,
    first_row: usize,
    batch: usize,
    #[comptime] rows: usize,
) -> Array<u32> {
    let mut values = Array::<u32>::new(rows);
    #[unroll]
    for row in 0..rows {
        values[row] = lengths[clamped_row(first_row + row, batch)];
    }
    values
}

/// The state before the first step: the unit's hidden units' hidden states into the first half
/// of `hidden_now`, their cell states into `cell`, from `initial` `[batch, 2, hidden]` (each
/// row's hidden then cell state) when `has_initial`, else zero.
// `has_initial` is known when the kernel compiles, `b < batch` only when it runs: two `if`s.
#[allow(clippy::collapsible_if)]
#[cube]
fn start_state<F: Float, N: Size>(
    initial: &Tensor<Vector<F, N>>,
    at: &Walker<F, N>,
    hidden_now: &mut Shared<[Vector<F, N>]>,
    cell: &mut Array<Vector<F, N>>,
    #[comptime] rows: usize,
    #[comptime] hidden: usize,
    #[comptime] vector: usize,
    #[comptime] spread: usize,
    #[comptime] has_initial: bool,
) {
    let groups = hidden / vector;
    #[unroll]
    for row in 0..rows {
        let b = at.first_row + row;
        #[unroll]
        for m in 0..spread {
            let g = owned(at.unit, m, groups, spread);
            let mut h = zeros::<F, N>();
            let mut c = zeros::<F, N>();
            if has_initial {
                if b < at.batch {
                    h = initial[b * 2 * groups + g];
                    c = initial[(b * 2 + 1) * groups + g];
                }
            }
            hidden_now[row * groups + g] = h;
            cell[row * spread + m] = c;
        }
    }
}

/// One forward step for the cube's rows at step `step`: the four gates of the unit's hidden
/// units from the bias, the step's inputs and the previous hidden state (at `read` in the
/// double buffer `hidden_now`), their new cell states (in `cell`, `[row * spread + m]`) and
/// hidden states (at `write`). Leaves the activated gates in `gates`
/// (`[(row * spread + m) * 4 + gate]`). A row past its length keeps its state.
#[cube]
fn forward_step<F: Float, N: Size>(
    inputs: &Tensor<Vector<F, N>>,
    weights: &Tensor<Vector<F, N>>,
    at: &Walker<F, N>,
    hidden_now: &mut Shared<[Vector<F, N>]>,
    cell: &mut Array<Vector<F, N>>,
    gates: &mut Array<Vector<F, N>>,
    read: usize,
    write: usize,
    step: usize,
    #[comptime] rows: usize,
    #[comptime] hidden: usize,
    #[comptime] vector: usize,
    #[comptime] spread: usize,
    #[comptime] has_lengths: bool,
) {
    #[unroll]
    for row in 0..rows {
        #[unroll]
        for m in 0..spread {
            #[unroll]
            for gate in 0..4 {
                gates[(row * spread + m) * 4 + gate] = at.bias[m * 4 + gate];
            }
        }
    }
    add_inputs::<F, N>(
        inputs, weights, at, gates, step, rows, hidden, vector, spread,
    );
    let groups = hidden / vector;
    let mut values = Array::<Vector<F, N>>::new(rows);
    for k_group in 0..groups {
        #[unroll]
        for row in 0..rows {
            values[row] = hidden_now[read + row * groups + k_group];
        }
        add_products::<F, N>(
            &values,
            weights,
            gates,
            at.recurrent_at + k_group * vector * 4 * groups,
            at.unit,
            rows,
            hidden,
            vector,
            spread,
        );
    }
    update_cells::<F, N>(
        at,
        hidden_now,
        cell,
        gates,
        read,
        write,
        step,
        rows,
        hidden,
        vector,
        spread,
        has_lengths,
    );
}

/// Adds `x_t W_x` to the unit's gates for the cube's rows, each at its own time index of step
/// `step`, in the kernel rather than as a matmul over all steps before it: one launch and one
/// `[batch, steps, 4 hidden]` round trip fewer. Rows past the batch read the last row; nothing
/// of theirs is written.
#[cube]
fn add_inputs<F: Float, N: Size>(
    inputs: &Tensor<Vector<F, N>>,
    weights: &Tensor<Vector<F, N>>,
    at: &Walker<F, N>,
    gates: &mut Array<Vector<F, N>>,
    step: usize,
    #[comptime] rows: usize,
    #[comptime] hidden: usize,
    #[comptime] vector: usize,
    #[comptime] spread: usize,
) {
    let width = 4 * (hidden / vector);
    let input_groups = at.input / vector;
    let mut first = Array::<usize>::new(rows);
    #[unroll]
    for row in 0..rows {
        let b = clamped_row(at.first_row + row, at.batch);
        let t = time_of(step, at.lengths[row] as usize, at.reverse);
        first[row] = (b * at.steps + t) * input_groups;
    }
    let mut values = Array::<Vector<F, N>>::new(rows);
    for k_group in 0..input_groups {
        #[unroll]
        for row in 0..rows {
            values[row] = inputs[first[row] + k_group];
        }
        add_products::<F, N>(
            &values,
            weights,
            gates,
            k_group * vector * width,
            at.unit,
            rows,
            hidden,
            vector,
            spread,
        );
    }
}

/// `row`, or the last row of the batch for a cube's rows past it.
#[cube]
fn clamped_row(row: usize, batch: usize) -> usize {
    if row < batch { row } else { batch - 1 }
}

/// Adds to the unit's gates (`[row * 4 spread + i]`) the products of `vector` consecutive rows of
/// the fused weights, from vector row `first`, with each row's values in `values` (a vector of
/// `vector` inputs or hidden states per batch row): each weight vector read serves every row.
#[cube]
fn add_products<F: Float, N: Size>(
    values: &Array<Vector<F, N>>,
    weights: &Tensor<Vector<F, N>>,
    gates: &mut Array<Vector<F, N>>,
    first: usize,
    unit: usize,
    #[comptime] rows: usize,
    #[comptime] hidden: usize,
    #[comptime] vector: usize,
    #[comptime] spread: usize,
) {
    let groups = hidden / vector;
    let width = 4 * groups;
    let mut column = Array::<Vector<F, N>>::new(4 * spread);
    #[unroll]
    for lane in 0..vector {
        let k_at = first + lane * width;
        #[unroll]
        for m in 0..spread {
            #[unroll]
            for gate in 0..4 {
                column[m * 4 + gate] =
                    weights[k_at + gate * groups + owned(unit, m, groups, spread)];
            }
        }
        #[unroll]
        for row in 0..rows {
            let value = Vector::<F, N>::broadcast(values[row].extract(lane));
            #[unroll]
            for i in 0..4 * spread {
                gates[row * 4 * spread + i] += value * column[i];
            }
        }
    }
}

/// The end of a forward step: the gates' activations (left in `gates`), the new cell states (in
/// `cell`) and hidden states (into `hidden_now` from index `write`) of the unit's hidden units.
/// A row past its length copies its hidden state from `read` to `write` and keeps its cell.
#[cube]
fn update_cells<F: Float, N: Size>(
    at: &Walker<F, N>,
    hidden_now: &mut Shared<[Vector<F, N>]>,
    cell: &mut Array<Vector<F, N>>,
    gates: &mut Array<Vector<F, N>>,
    read: usize,
    write: usize,
    step: usize,
    #[comptime] rows: usize,
    #[comptime] hidden: usize,
    #[comptime] vector: usize,
    #[comptime] spread: usize,
    #[comptime] has_lengths: bool,
) {
    let groups = hidden / vector;
    let two = Vector::<F, N>::broadcast(F::new(2.0));
    let one = Vector::<F, N>::broadcast(F::new(1.0));
    #[unroll]
    for row in 0..rows {
        let valid = within(step, at.lengths[row], has_lengths);
        #[unroll]
        for m in 0..spread {
            let at_row = row * groups + owned(at.unit, m, groups, spread);
            if valid {
                let g = (row * spread + m) * 4;
                let input_gate = sigmoid::<F, N>(gates[g]);
                let forget_gate = sigmoid::<F, N>(gates[g + 1]);
                let output_gate = sigmoid::<F, N>(gates[g + 2]);
                // The cell gate's doubled pre-activation: 2 sigmoid(2 z) - 1 = tanh(z).
                let candidate = two * sigmoid::<F, N>(gates[g + 3]) - one;
                let c = forget_gate * cell[row * spread + m] + input_gate * candidate;
                cell[row * spread + m] = c;
                hidden_now[write + at_row] = output_gate * tanh_of::<F, N>(c);
                gates[g] = input_gate;
                gates[g + 1] = forget_gate;
                gates[g + 2] = output_gate;
                gates[g + 3] = candidate;
            } else {
                hidden_now[write + at_row] = hidden_now[read + at_row];
            }
        }
    }
}

/// Writes the hidden states of the unit's hidden units just computed at step `step` (from index
/// `written` of `hidden_now`) into `outputs`' first block, `[batch, steps, hidden]`, each at its
/// time index; a row past its length writes zeros at index `step`. Nothing when `all_steps` is
/// off (the outputs then hold the final states alone).
#[cube]
fn write_outputs<F: Float, N: Size>(
    outputs: &mut Tensor<Vector<F, N>>,
    hidden_now: &Shared<[Vector<F, N>]>,
    at: &Walker<F, N>,
    written: usize,
    step: usize,
    #[comptime] rows: usize,
    #[comptime] hidden: usize,
    #[comptime] vector: usize,
    #[comptime] spread: usize,
    #[comptime] all_steps: bool,
    #[comptime] has_lengths: bool,
) {
    if all_steps {
        let groups = hidden / vector;
        #[unroll]
        for row in 0..rows {
            let b = at.first_row + row;
            if b < at.batch {
                let length = at.lengths[row] as usize;
                let step_at = (b * at.steps + time_of(step, length, at.reverse)) * groups;
                #[unroll]
                for m in 0..spread {
                    let g = owned(at.unit, m, groups, spread);
                    let mut h = zeros::<F, N>();
                    if within(step, at.lengths[row], has_lengths) {
                        h = hidden_now[written + row * groups + g];
                    }
                    outputs[step_at + g] = h;
                }
            }
        }
    }
}

/// Writes the final hidden states (from index `last` of `hidden_now`) and cell states of the
/// unit's hidden units into `outputs`' last two blocks, `[batch, hidden]` each, after the
/// `[batch, steps, hidden]` of every step when `all_steps`.
#[cube]
fn write_final<F: Float, N: Size>(
    outputs: &mut Tensor<Vector<F, N>>,
    hidden_now: &Shared<[Vector<F, N>]>,
    cell: &Array<Vector<F, N>>,
    at: &Walker<F, N>,
    last: usize,
    #[comptime] rows: usize,
    #[comptime] hidden: usize,
    #[comptime] vector: usize,
    #[comptime] spread: usize,
    #[comptime] all_steps: bool,
) {
    let groups = hidden / vector;
    let mut first = 0usize;
    if all_steps {
        first = at.batch * at.steps * groups;
    }
    #[unroll]
    for row in 0..rows {
        let b = at.first_row + row;
        if b < at.batch {
            #[unroll]
            for m in 0..spread {
                let g = owned(at.unit, m, groups, spread);
                outputs[first + b * groups + g] = hidden_now[last + row * groups + g];
                outputs[first + (at.batch + b) * groups + g] = cell[row * spread + m];
            }
        }
    }
}

/// Writes what the backward pass reads of step `step`: the hidden state the step read (from
/// index `read` of `hidden_now`), the cells and the activated gates of the unit's hidden units,
/// at the step's time index; a row past its length writes zeros at index `step`.
#[cube]
fn write_saved<F: Float, N: Size>(
    previous: &mut Tensor<Vector<F, N>>,
    cells: &mut Tensor<Vector<F, N>>,
    saved_gates: &mut Tensor<Vector<F, N>>,
    hidden_now: &Shared<[Vector<F, N>]>,
    cell: &Array<Vector<F, N>>,
    gates: &Array<Vector<F, N>>,
    at: &Walker<F, N>,
    read: usize,
    step: usize,
    #[comptime] rows: usize,
    #[comptime] hidden: usize,
    #[comptime] vector: usize,
    #[comptime] spread: usize,
    #[comptime] has_lengths: bool,
) {
    let groups = hidden / vector;
    let width = 4 * groups;
    #[unroll]
    for row in 0..rows {
        let b = at.first_row + row;
        if b < at.batch {
            let length = at.lengths[row] as usize;
            let step_at = b * at.steps + time_of(step, length, at.reverse);
            let valid = within(step, at.lengths[row], has_lengths);
            #[unroll]
            for m in 0..spread {
                let g = owned(at.unit, m, groups, spread);
                // A finished row's zeros keep the weights' gradient, a sum over every index,
                // free of whatever its padded steps computed.
                let mut h = zeros::<F, N>();
                let mut c = zeros::<F, N>();
                if valid {
                    h = hidden_now[read + row * groups + g];
                    c = cell[row * spread + m];
                }
                previous[step_at * groups + g] = h;
                cells[step_at * groups + g] = c;
                #[unroll]
                for gate in 0..4 {
                    let mut value = zeros::<F, N>();
                    if valid {
                        value = gates[(row * spread + m) * 4 + gate];
                    }
                    saved_gates[step_at * width + gate * groups + g] = value;
                }
            }
        }
    }
}

/// The forward pass of training: the outputs as [`lstm_forward_infer`] writes them, and for
/// every step the hidden state it read, its cell and its activated gates (zeros at a row's
/// padded indices).
#[cube(launch_unchecked)]
pub fn lstm_forward_train<F: Float, N: Size>(
    inputs: &Tensor<Vector<F, N>>,
    weights: &Tensor<Vector<F, N>>,
    initial: &Tensor<Vector<F, N>>,
    lengths: &Tensor<u32>,
    outputs: &mut Tensor<Vector<F, N>>,
    previous: &mut Tensor<Vector<F, N>>,
    cells: &mut Tensor<Vector<F, N>>,
    saved_gates: &mut Tensor<Vector<F, N>>,
    batch: u32,
    steps: u32,
    input: u32,
    reverse: u32,
    #[comptime] rows: usize,
    #[comptime] hidden: usize,
    #[comptime] vector: usize,
    #[comptime] spread: usize,
    #[comptime] all_steps: bool,
    #[comptime] has_initial: bool,
    #[comptime] has_lengths: bool,
    #[define(F)] _dtype: ElemType,
) {
    let groups = hidden / vector;
    let at = walker::<F, N>(
        weights, lengths, batch, steps, input, reverse, rows, hidden, vector, spread,
    );
    let mut hidden_now = Shared::<[Vector<F, N>]>::new_slice(2 * rows * groups);
    let mut cell = Array::<Vector<F, N>>::new(rows * spread);
    start_state::<F, N>(
        initial,
        &at,
        &mut hidden_now,
        &mut cell,
        rows,
        hidden,
        vector,
        spread,
        has_initial,
    );
    let mut gates = Array::<Vector<F, N>>::new(4 * rows * spread);
    sync_cube();
    for step in 0..at.steps {
        let read = (step % 2) * rows * groups;
        let written = rows * groups - read;
        forward_step::<F, N>(
            inputs,
            weights,
            &at,
            &mut hidden_now,
            &mut cell,
            &mut gates,
            read,
            written,
            step,
            rows,
            hidden,
            vector,
            spread,
            has_lengths,
        );
        // The unit wrote and reads only its own hidden units here, so no barrier is needed
        // before these reads; the one after them guards the next step's.
        write_saved::<F, N>(
            previous,
            cells,
            saved_gates,
            &hidden_now,
            &cell,
            &gates,
            &at,
            read,
            step,
            rows,
            hidden,
            vector,
            spread,
            has_lengths,
        );
        write_outputs::<F, N>(
            outputs,
            &hidden_now,
            &at,
            written,
            step,
            rows,
            hidden,
            vector,
            spread,
            all_steps,
            has_lengths,
        );
        sync_cube();
    }
    let last = (at.steps % 2) * rows * groups;
    write_final::<F, N>(
        outputs,
        &hidden_now,
        &cell,
        &at,
        last,
        rows,
        hidden,
        vector,
        spread,
        all_steps,
    );
}

/// The forward pass of inference, nothing saved: into `outputs`, when `all_steps`, the hidden
/// state of every step `[batch, steps, hidden]` at its time index (zeros past a row's length),
/// then the final hidden states and cell states, `[batch, hidden]` each. From `initial`
/// `[batch, 2, hidden]` when `has_initial`, else zero; each row `b` read for its first
/// `lengths[b]` steps, right to left from its last valid step when `reverse == 1`.
#[cube(launch_unchecked)]
pub fn lstm_forward_infer<F: Float, N: Size>(
    inputs: &Tensor<Vector<F, N>>,
    weights: &Tensor<Vector<F, N>>,
    initial: &Tensor<Vector<F, N>>,
    lengths: &Tensor<u32>,
    outputs: &mut Tensor<Vector<F, N>>,
    batch: u32,
    steps: u32,
    input: u32,
    reverse: u32,
    #[comptime] rows: usize,
    #[comptime] hidden: usize,
    #[comptime] vector: usize,
    #[comptime] spread: usize,
    #[comptime] all_steps: bool,
    #[comptime] has_initial: bool,
    #[comptime] has_lengths: bool,
    #[define(F)] _dtype: ElemType,
) {
    let groups = hidden / vector;
    let at = walker::<F, N>(
        weights, lengths, batch, steps, input, reverse, rows, hidden, vector, spread,
    );
    let mut hidden_now = Shared::<[Vector<F, N>]>::new_slice(2 * rows * groups);
    let mut cell = Array::<Vector<F, N>>::new(rows * spread);
    start_state::<F, N>(
        initial,
        &at,
        &mut hidden_now,
        &mut cell,
        rows,
        hidden,
        vector,
        spread,
        has_initial,
    );
    let mut gates = Array::<Vector<F, N>>::new(4 * rows * spread);
    sync_cube();
    for step in 0..at.steps {
        let read = (step % 2) * rows * groups;
        let written = rows * groups - read;
        forward_step::<F, N>(
            inputs,
            weights,
            &at,
            &mut hidden_now,
            &mut cell,
            &mut gates,
            read,
            written,
            step,
            rows,
            hidden,
            vector,
            spread,
            has_lengths,
        );
        write_outputs::<F, N>(
            outputs,
            &hidden_now,
            &at,
            written,
            step,
            rows,
            hidden,
            vector,
            spread,
            all_steps,
            has_lengths,
        );
        sync_cube();
    }
    let last = (at.steps % 2) * rows * groups;
    write_final::<F, N>(
        outputs,
        &hidden_now,
        &cell,
        &at,
        last,
        rows,
        hidden,
        vector,
        spread,
        all_steps,
    );
}

/// Where the backward kernel's unit is, and what it reads besides the saved forward pass.
#[derive(CubeType)]
struct Backtracker {
    unit: usize,
    first_row: usize,
    batch: usize,
    steps: usize,
    reverse: u32,
    /// The valid steps of each of the cube's rows.
    lengths: Array<u32>,
}

/// The backward pass through time: the gradient of every step's gate pre-activations, `dz`
/// `[batch, steps, 4 hidden]` (zeros at a row's padded indices), and that of the initial
/// state, `initial_grad` `[batch, 2, hidden]`, from the outputs' gradient (laid out as the
/// forward kernels write the outputs: every step's when `all_steps`, then the final hidden and
/// cell states') and the saved forward pass. A unit keeps what reaches its hidden units' cell
/// and hidden states in registers; the gate gradients the latter sums come from every unit
/// through shared memory.
#[cube(launch_unchecked)]
pub fn lstm_backward<F: Float, N: Size>(
    output_grad: &Tensor<Vector<F, N>>,
    gates: &Tensor<Vector<F, N>>,
    cells: &Tensor<Vector<F, N>>,
    w_h_t: &Tensor<Vector<F, N>>,
    initial: &Tensor<Vector<F, N>>,
    lengths: &Tensor<u32>,
    dz: &mut Tensor<Vector<F, N>>,
    initial_grad: &mut Tensor<Vector<F, N>>,
    batch: u32,
    steps: u32,
    reverse: u32,
    #[comptime] rows: usize,
    #[comptime] hidden: usize,
    #[comptime] vector: usize,
    #[comptime] spread: usize,
    #[comptime] all_steps: bool,
    #[comptime] has_initial: bool,
    #[comptime] has_lengths: bool,
    #[define(F)] _dtype: ElemType,
) {
    let groups = hidden / vector;
    let width = 4 * groups;
    let first_row = CUBE_POS_X as usize * rows;
    let lengths = row_lengths(lengths, first_row, batch as usize, rows);
    let at = Backtracker {
        unit: UNIT_POS_X as usize,
        first_row,
        batch: batch as usize,
        steps: steps as usize,
        reverse,
        lengths,
    };
    // This step's gate gradients of every unit, `[rows, 4 hidden]`.
    let mut dz_now = Shared::<[Vector<F, N>]>::new_slice(rows * width);
    zero_shared::<F, N>(&mut dz_now, rows * width);
    // What reaches each owned hidden unit's cell and hidden state from the step after: at
    // first, the final states' gradients.
    let mut dc = zeroed::<F, N>(rows * spread);
    let mut dh_next = zeroed::<F, N>(rows * spread);
    read_final_gradients::<F, N>(
        output_grad,
        &at,
        &mut dh_next,
        &mut dc,
        rows,
        hidden,
        vector,
        spread,
        all_steps,
    );
    sync_cube();
    for step in 0..at.steps {
        // `forward_step` counts forward steps from the last one back.
        let forward_step = at.steps - 1 - step;
        #[unroll]
        for row in 0..rows {
            let b = first_row + row;
            if b < at.batch {
                #[unroll]
                for m in 0..spread {
                    let g = owned(at.unit, m, groups, spread);
                    if within(forward_step, at.lengths[row], has_lengths) {
                        backward_cell::<F, N>(
                            output_grad,
                            gates,
                            cells,
                            initial,
                            dz,
                            &mut dz_now,
                            &mut dc,
                            &dh_next,
                            &at,
                            forward_step,
                            row * spread + m,
                            row,
                            g,
                            b,
                            hidden,
                            vector,
                            all_steps,
                            has_initial,
                        );
                    } else {
                        // A padded index: its gates read nothing that reached the outputs.
                        let gate_at = (b * at.steps + forward_step) * width + g;
                        #[unroll]
                        for gate in 0..4 {
                            dz[gate_at + gate * groups] = zeros::<F, N>();
                        }
                    }
                }
            }
        }
        sync_cube();
        recurrent_gradient::<F, N>(
            &dz_now,
            w_h_t,
            &mut dh_next,
            &at,
            forward_step,
            rows,
            hidden,
            vector,
            spread,
            has_lengths,
        );
        // Every unit has read `dz_now` before the next step writes it.
        sync_cube();
    }
    write_initial_gradients::<F, N>(
        initial_grad,
        &at,
        &dh_next,
        &dc,
        rows,
        hidden,
        vector,
        spread,
    );
}

/// The gradients of the final hidden and cell states of the unit's hidden units (the last two
/// blocks of `output_grad`, after every step's when `all_steps`) into `dh_next` and `dc`: where
/// the backward pass starts.
#[cube]
fn read_final_gradients<F: Float, N: Size>(
    output_grad: &Tensor<Vector<F, N>>,
    at: &Backtracker,
    dh_next: &mut Array<Vector<F, N>>,
    dc: &mut Array<Vector<F, N>>,
    #[comptime] rows: usize,
    #[comptime] hidden: usize,
    #[comptime] vector: usize,
    #[comptime] spread: usize,
    #[comptime] all_steps: bool,
) {
    let groups = hidden / vector;
    let mut finals = 0usize;
    if all_steps {
        finals = at.batch * at.steps * groups;
    }
    #[unroll]
    for row in 0..rows {
        let b = at.first_row + row;
        if b < at.batch {
            #[unroll]
            for m in 0..spread {
                let g = owned(at.unit, m, groups, spread);
                dh_next[row * spread + m] = output_grad[finals + b * groups + g];
                dc[row * spread + m] = output_grad[finals + (at.batch + b) * groups + g];
            }
        }
    }
}

/// What reached the state before the first step, `dh_next` and `dc`, into `initial_grad`
/// `[batch, 2, hidden]`: where the backward pass ends.
#[cube]
fn write_initial_gradients<F: Float, N: Size>(
    initial_grad: &mut Tensor<Vector<F, N>>,
    at: &Backtracker,
    dh_next: &Array<Vector<F, N>>,
    dc: &Array<Vector<F, N>>,
    #[comptime] rows: usize,
    #[comptime] hidden: usize,
    #[comptime] vector: usize,
    #[comptime] spread: usize,
) {
    let groups = hidden / vector;
    #[unroll]
    for row in 0..rows {
        let b = at.first_row + row;
        if b < at.batch {
            #[unroll]
            for m in 0..spread {
                let g = owned(at.unit, m, groups, spread);
                initial_grad[b * 2 * groups + g] = dh_next[row * spread + m];
                initial_grad[(b * 2 + 1) * groups + g] = dc[row * spread + m];
            }
        }
    }
}

/// What reaches the unit's hidden units' previous hidden states from this step's gate gradients
/// of every unit: `dh_next = dz_now · W_hᵀ` for the cube's rows that are within their length at
/// `forward_step` (a finished row's gradient passes its padded steps unchanged).
#[cube]
fn recurrent_gradient<F: Float, N: Size>(
    dz_now: &Shared<[Vector<F, N>]>,
    w_h_t: &Tensor<Vector<F, N>>,
    dh_next: &mut Array<Vector<F, N>>,
    at: &Backtracker,
    forward_step: usize,
    #[comptime] rows: usize,
    #[comptime] hidden: usize,
    #[comptime] vector: usize,
    #[comptime] spread: usize,
    #[comptime] has_lengths: bool,
) {
    let groups = hidden / vector;
    let width = 4 * groups;
    let mut gradients = Array::<Vector<F, N>>::new(rows);
    let mut column = Array::<Vector<F, N>>::new(spread);
    let mut sums = zeroed::<F, N>(rows * spread);
    for j_group in 0..width {
        #[unroll]
        for row in 0..rows {
            gradients[row] = dz_now[row * width + j_group];
        }
        #[unroll]
        for lane in 0..vector {
            let j = j_group * vector + lane;
            #[unroll]
            for m in 0..spread {
                column[m] = w_h_t[j * groups + owned(at.unit, m, groups, spread)];
            }
            #[unroll]
            for row in 0..rows {
                let gradient = Vector::<F, N>::broadcast(gradients[row].extract(lane));
                #[unroll]
                for m in 0..spread {
                    sums[row * spread + m] += gradient * column[m];
                }
            }
        }
    }
    #[unroll]
    for row in 0..rows {
        if within(forward_step, at.lengths[row], has_lengths) {
            #[unroll]
            for m in 0..spread {
                dh_next[row * spread + m] = sums[row * spread + m];
            }
        }
    }
}

/// One vector group `g` of one row (`slot` in the unit's registers) at a valid step of the
/// backward pass: the gradients of its four gates' pre-activations into `dz` and `dz_now`, and
/// the one reaching its previous cell state into `dc`.
#[allow(clippy::collapsible_if)] // as in `start_state`
#[cube]
fn backward_cell<F: Float, N: Size>(
    output_grad: &Tensor<Vector<F, N>>,
    gates: &Tensor<Vector<F, N>>,
    cells: &Tensor<Vector<F, N>>,
    initial: &Tensor<Vector<F, N>>,
    dz: &mut Tensor<Vector<F, N>>,
    dz_now: &mut Shared<[Vector<F, N>]>,
    dc: &mut Array<Vector<F, N>>,
    dh_next: &Array<Vector<F, N>>,
    at: &Backtracker,
    forward_step: usize,
    slot: usize,
    row: usize,
    g: usize,
    b: usize,
    #[comptime] hidden: usize,
    #[comptime] vector: usize,
    #[comptime] all_steps: bool,
    #[comptime] has_initial: bool,
) {
    let groups = hidden / vector;
    let width = 4 * groups;
    let one = Vector::<F, N>::broadcast(F::new(1.0));
    let length = at.lengths[row] as usize;
    let step_at = b * at.steps + time_of(forward_step, length, at.reverse);
    let mut dh = dh_next[slot];
    if all_steps {
        dh += output_grad[step_at * groups + g];
    }
    let gate_at = step_at * width + g;
    let input_gate = gates[gate_at];
    let forget_gate = gates[gate_at + groups];
    let output_gate = gates[gate_at + 2 * groups];
    let candidate = gates[gate_at + 3 * groups];
    let squashed = tanh_of::<F, N>(cells[step_at * groups + g]);
    let mut previous_cell = zeros::<F, N>();
    if forward_step > 0 {
        let previous_t = time_of(forward_step - 1, length, at.reverse);
        previous_cell = cells[(b * at.steps + previous_t) * groups + g];
    }
    if has_initial {
        if forward_step == 0 {
            previous_cell = initial[(b * 2 + 1) * groups + g];
        }
    }
    // How the gradient reaching `o tanh(c)` reaches its cell: `o (1 - tanh(c)^2)`.
    let d_cell_state = dc[slot] + dh * output_gate * (one - squashed * squashed);
    dc[slot] = d_cell_state * forget_gate;
    let d_input = d_cell_state * candidate * input_gate * (one - input_gate);
    let d_forget = d_cell_state * previous_cell * forget_gate * (one - forget_gate);
    let d_output = dh * squashed * output_gate * (one - output_gate);
    // d candidate / d (doubled pre-activation) = 2 s (1 - s) = (1 - candidate^2) / 2.
    let d_candidate = d_cell_state
        * input_gate
        * (one - candidate * candidate)
        * Vector::<F, N>::broadcast(F::new(0.5));
    let base = row * width + g;
    dz_now[base] = d_input;
    dz_now[base + groups] = d_forget;
    dz_now[base + 2 * groups] = d_output;
    dz_now[base + 3 * groups] = d_candidate;
    dz[gate_at] = d_input;
    dz[gate_at + groups] = d_forget;
    dz[gate_at + 2 * groups] = d_output;
    dz[gate_at + 3 * groups] = d_candidate;
}
