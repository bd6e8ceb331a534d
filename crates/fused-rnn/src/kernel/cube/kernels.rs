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
//! Layouts, all contiguous and row-major, indexed in vectors (so the vector size divides both the
//! input and the hidden size): `inputs` `[batch, steps, input]`, `gates` and `dz`
//! `[batch, steps, 4 hidden]` (gate columns `[input | forget | output | cell]`, the cell gate's
//! pre-activation doubled as in `tensor_ops.rs`), `weights` the fused `[input + 1 + hidden, 4 hidden]`
//! (the bias in row `input`, the recurrent rows after it), `w_h_t` the recurrent rows' transpose
//! `[4 hidden, hidden]`, `outputs`, `previous` (the hidden state a step read) and `cells`
//! `[batch, steps, hidden]` at each step's own time index.

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

/// The time index of step `step` of `steps`, read left to right or (`reverse == 1`) right to left.
#[cube]
fn time_of(step: usize, steps: usize, reverse: u32) -> usize {
    if reverse == 1 { steps - 1 - step } else { step }
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
    /// The vector index of the first recurrent row of the fused weights.
    recurrent_at: usize,
    /// The bias of the unit's gates, `[m * 4 + gate]`.
    bias: Array<Vector<F, N>>,
}

/// The unit's place and its gates' bias, read once before the time loop.
#[cube]
fn walker<F: Float, N: Size>(
    weights: &Tensor<Vector<F, N>>,
    batch: u32,
    steps: u32,
    input: u32,
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
    Walker::<F, N> {
        unit,
        first_row: CUBE_POS_X as usize * rows,
        batch: batch as usize,
        steps: steps as usize,
        input: input as usize,
        recurrent_at: bias_at + 4 * groups,
        bias,
    }
}

/// One forward step for the cube's rows at time `t`: the four gates of the unit's hidden units
/// from the bias, the step's inputs and the previous hidden state (half `current` of the double
/// buffer `hidden_now`), their new cell states (in `cell`, `[row * spread + m]`) and hidden states
/// (into the other half). Leaves the activated gates in `gates` (`[(row * spread + m) * 4 + gate]`).
#[cube]
fn forward_step<F: Float, N: Size>(
    inputs: &Tensor<Vector<F, N>>,
    weights: &Tensor<Vector<F, N>>,
    at: &Walker<F, N>,
    hidden_now: &mut Shared<[Vector<F, N>]>,
    cell: &mut Array<Vector<F, N>>,
    gates: &mut Array<Vector<F, N>>,
    current: usize,
    t: usize,
    #[comptime] rows: usize,
    #[comptime] hidden: usize,
    #[comptime] vector: usize,
    #[comptime] spread: usize,
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
    add_inputs::<F, N>(inputs, weights, at, gates, t, rows, hidden, vector, spread);
    let groups = hidden / vector;
    let read = current * rows * groups;
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
        (1 - current) * rows * groups,
        rows,
        hidden,
        vector,
        spread,
    );
}

/// Adds `x_t W_x` to the unit's gates for the cube's rows, in the kernel rather than as a matmul
/// over all steps before it: one launch and one `[batch, steps, 4 hidden]` round trip fewer.
/// Rows past the batch read the last row; nothing of theirs is written.
#[cube]
fn add_inputs<F: Float, N: Size>(
    inputs: &Tensor<Vector<F, N>>,
    weights: &Tensor<Vector<F, N>>,
    at: &Walker<F, N>,
    gates: &mut Array<Vector<F, N>>,
    t: usize,
    #[comptime] rows: usize,
    #[comptime] hidden: usize,
    #[comptime] vector: usize,
    #[comptime] spread: usize,
) {
    let width = 4 * (hidden / vector);
    let input_groups = at.input / vector;
    let mut values = Array::<Vector<F, N>>::new(rows);
    for k_group in 0..input_groups {
        #[unroll]
        for row in 0..rows {
            let b = clamped_row(at.first_row + row, at.batch);
            values[row] = inputs[(b * at.steps + t) * input_groups + k_group];
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
#[cube]
fn update_cells<F: Float, N: Size>(
    at: &Walker<F, N>,
    hidden_now: &mut Shared<[Vector<F, N>]>,
    cell: &mut Array<Vector<F, N>>,
    gates: &mut Array<Vector<F, N>>,
    write: usize,
    #[comptime] rows: usize,
    #[comptime] hidden: usize,
    #[comptime] vector: usize,
    #[comptime] spread: usize,
) {
    let groups = hidden / vector;
    let two = Vector::<F, N>::broadcast(F::new(2.0));
    let one = Vector::<F, N>::broadcast(F::new(1.0));
    #[unroll]
    for row in 0..rows {
        #[unroll]
        for m in 0..spread {
            let g = (row * spread + m) * 4;
            let input_gate = sigmoid::<F, N>(gates[g]);
            let forget_gate = sigmoid::<F, N>(gates[g + 1]);
            let output_gate = sigmoid::<F, N>(gates[g + 2]);
            // The cell gate's doubled pre-activation: 2 sigmoid(2 z) - 1 = tanh(z).
            let candidate = two * sigmoid::<F, N>(gates[g + 3]) - one;
            let c = forget_gate * cell[row * spread + m] + input_gate * candidate;
            cell[row * spread + m] = c;
            hidden_now[write + row * groups + owned(at.unit, m, groups, spread)] =
                output_gate * tanh_of::<F, N>(c);
            gates[g] = input_gate;
            gates[g + 1] = forget_gate;
            gates[g + 2] = output_gate;
            gates[g + 3] = candidate;
        }
    }
}

/// Writes the hidden states of the unit's hidden units just computed for time `t` (from index
/// `written` of `hidden_now`) into `outputs`: `[batch, steps, hidden]` when `all_steps`, else
/// `[batch, 1, hidden]`, the last time index's alone.
#[cube]
fn write_outputs<F: Float, N: Size>(
    outputs: &mut Tensor<Vector<F, N>>,
    hidden_now: &Shared<[Vector<F, N>]>,
    at: &Walker<F, N>,
    written: usize,
    t: usize,
    #[comptime] rows: usize,
    #[comptime] hidden: usize,
    #[comptime] vector: usize,
    #[comptime] spread: usize,
    #[comptime] all_steps: bool,
) {
    let groups = hidden / vector;
    #[unroll]
    for row in 0..rows {
        let b = at.first_row + row;
        if b < at.batch {
            #[unroll]
            for m in 0..spread {
                let g = owned(at.unit, m, groups, spread);
                let h = hidden_now[written + row * groups + g];
                if all_steps {
                    outputs[(b * at.steps + t) * groups + g] = h;
                } else if t == at.steps - 1 {
                    outputs[b * groups + g] = h;
                }
            }
        }
    }
}

/// Writes what the backward pass reads of time `t`: the hidden state the step read (from index
/// `read` of `hidden_now`), the cells and the activated gates of the unit's hidden units.
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
    t: usize,
    #[comptime] rows: usize,
    #[comptime] hidden: usize,
    #[comptime] vector: usize,
    #[comptime] spread: usize,
) {
    let groups = hidden / vector;
    let width = 4 * groups;
    #[unroll]
    for row in 0..rows {
        let b = at.first_row + row;
        if b < at.batch {
            let step_at = b * at.steps + t;
            #[unroll]
            for m in 0..spread {
                let g = owned(at.unit, m, groups, spread);
                previous[step_at * groups + g] = hidden_now[read + row * groups + g];
                cells[step_at * groups + g] = cell[row * spread + m];
                #[unroll]
                for gate in 0..4 {
                    saved_gates[step_at * width + gate * groups + g] =
                        gates[(row * spread + m) * 4 + gate];
                }
            }
        }
    }
}

/// The forward pass of training: the outputs as [`lstm_forward_infer`] writes them, and for
/// every step the hidden state it read (zero for the first), its cell and its activated gates.
#[cube(launch_unchecked)]
pub fn lstm_forward_train<F: Float, N: Size>(
    inputs: &Tensor<Vector<F, N>>,
    weights: &Tensor<Vector<F, N>>,
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
    #[define(F)] _dtype: ElemType,
) {
    let groups = hidden / vector;
    let at = walker::<F, N>(weights, batch, steps, input, rows, hidden, vector, spread);
    let mut hidden_now = Shared::<[Vector<F, N>]>::new_slice(2 * rows * groups);
    zero_shared::<F, N>(&mut hidden_now, 2 * rows * groups);
    let mut cell = zeroed::<F, N>(rows * spread);
    let mut gates = Array::<Vector<F, N>>::new(4 * rows * spread);
    sync_cube();
    for step in 0..at.steps {
        let t = time_of(step, at.steps, reverse);
        let current = step % 2;
        forward_step::<F, N>(
            inputs,
            weights,
            &at,
            &mut hidden_now,
            &mut cell,
            &mut gates,
            current,
            t,
            rows,
            hidden,
            vector,
            spread,
        );
        // The unit wrote and reads only its own hidden units here, so no barrier is needed
        // before these reads; the one after them guards the next step's.
        let read = current * rows * groups;
        write_saved::<F, N>(
            previous,
            cells,
            saved_gates,
            &hidden_now,
            &cell,
            &gates,
            &at,
            read,
            t,
            rows,
            hidden,
            vector,
            spread,
        );
        let written = (1 - current) * rows * groups;
        write_outputs::<F, N>(
            outputs,
            &hidden_now,
            &at,
            written,
            t,
            rows,
            hidden,
            vector,
            spread,
            all_steps,
        );
        sync_cube();
    }
}

/// The forward pass of inference: nothing saved; `outputs` is `[batch, steps, hidden]` when
/// `all_steps`, else `[batch, 1, hidden]`, the last time index's hidden state.
#[cube(launch_unchecked)]
pub fn lstm_forward_infer<F: Float, N: Size>(
    inputs: &Tensor<Vector<F, N>>,
    weights: &Tensor<Vector<F, N>>,
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
    #[define(F)] _dtype: ElemType,
) {
    let groups = hidden / vector;
    let at = walker::<F, N>(weights, batch, steps, input, rows, hidden, vector, spread);
    let mut hidden_now = Shared::<[Vector<F, N>]>::new_slice(2 * rows * groups);
    zero_shared::<F, N>(&mut hidden_now, 2 * rows * groups);
    let mut cell = zeroed::<F, N>(rows * spread);
    let mut gates = Array::<Vector<F, N>>::new(4 * rows * spread);
    sync_cube();
    for step in 0..at.steps {
        let t = time_of(step, at.steps, reverse);
        let current = step % 2;
        forward_step::<F, N>(
            inputs,
            weights,
            &at,
            &mut hidden_now,
            &mut cell,
            &mut gates,
            current,
            t,
            rows,
            hidden,
            vector,
            spread,
        );
        let written = (1 - current) * rows * groups;
        write_outputs::<F, N>(
            outputs,
            &hidden_now,
            &at,
            written,
            t,
            rows,
            hidden,
            vector,
            spread,
            all_steps,
        );
        sync_cube();
    }
}

/// The backward pass through time: the gradient of every step's gate pre-activations, `dz`
/// `[batch, steps, 4 hidden]`, from the outputs' gradient (`[batch, steps, hidden]`, or
/// `[batch, 1, hidden]` for the last time index alone when `last_only == 1`) and the saved forward
/// pass. A unit keeps what reaches its hidden units' cell and hidden states in registers; the gate
/// gradients the latter sums come from every unit through shared memory.
#[cube(launch_unchecked)]
pub fn lstm_backward<F: Float, N: Size>(
    output_grad: &Tensor<Vector<F, N>>,
    gates: &Tensor<Vector<F, N>>,
    cells: &Tensor<Vector<F, N>>,
    w_h_t: &Tensor<Vector<F, N>>,
    dz: &mut Tensor<Vector<F, N>>,
    batch: u32,
    steps: u32,
    reverse: u32,
    last_only: u32,
    #[comptime] rows: usize,
    #[comptime] hidden: usize,
    #[comptime] vector: usize,
    #[comptime] spread: usize,
    #[define(F)] _dtype: ElemType,
) {
    let groups = hidden / vector;
    let width = 4 * groups;
    let batch = batch as usize;
    let steps = steps as usize;
    let unit = UNIT_POS_X as usize;
    let first_row = CUBE_POS_X as usize * rows;
    // This step's gate gradients of every unit, `[rows, 4 hidden]`; rows past the batch stay zero.
    let mut dz_now = Shared::<[Vector<F, N>]>::new_slice(rows * width);
    zero_shared::<F, N>(&mut dz_now, rows * width);
    // What reaches each owned hidden unit's cell and hidden state from the step after.
    let mut dc = zeroed::<F, N>(rows * spread);
    let mut dh_next = zeroed::<F, N>(rows * spread);
    sync_cube();
    for step in 0..steps {
        // `step` counts forward steps from the last one back; `t` is its time index.
        let forward_step = steps - 1 - step;
        let cell_at = CellAt {
            steps,
            forward_step,
            t: time_of(forward_step, steps, reverse),
            reverse,
            last_only,
        };
        #[unroll]
        for row in 0..rows {
            let b = first_row + row;
            if b < batch {
                #[unroll]
                for m in 0..spread {
                    backward_cell::<F, N>(
                        output_grad,
                        gates,
                        cells,
                        dz,
                        &mut dz_now,
                        &mut dc,
                        &dh_next,
                        &cell_at,
                        row * spread + m,
                        row,
                        owned(unit, m, groups, spread),
                        b,
                        hidden,
                        vector,
                    );
                }
            }
        }
        sync_cube();
        recurrent_gradient::<F, N>(
            &dz_now,
            w_h_t,
            &mut dh_next,
            unit,
            rows,
            hidden,
            vector,
            spread,
        );
        // Every unit has read `dz_now` before the next step writes it.
        sync_cube();
    }
}

/// What reaches the unit's hidden units' previous hidden states from this step's gate gradients
/// of every unit: `dh_next = dz_now · W_hᵀ` for the cube's rows.
#[cube]
fn recurrent_gradient<F: Float, N: Size>(
    dz_now: &Shared<[Vector<F, N>]>,
    w_h_t: &Tensor<Vector<F, N>>,
    dh_next: &mut Array<Vector<F, N>>,
    unit: usize,
    #[comptime] rows: usize,
    #[comptime] hidden: usize,
    #[comptime] vector: usize,
    #[comptime] spread: usize,
) {
    let groups = hidden / vector;
    let width = 4 * groups;
    let mut gradients = Array::<Vector<F, N>>::new(rows);
    let mut column = Array::<Vector<F, N>>::new(spread);
    #[unroll]
    for i in 0..rows * spread {
        dh_next[i] = zeros::<F, N>();
    }
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
                column[m] = w_h_t[j * groups + owned(unit, m, groups, spread)];
            }
            #[unroll]
            for row in 0..rows {
                let gradient = Vector::<F, N>::broadcast(gradients[row].extract(lane));
                #[unroll]
                for m in 0..spread {
                    dh_next[row * spread + m] += gradient * column[m];
                }
            }
        }
    }
}

/// Which step of the backward pass a cell is at.
#[derive(CubeType)]
struct CellAt {
    steps: usize,
    /// The step's place in the forward pass's order.
    forward_step: usize,
    /// Its time index.
    t: usize,
    reverse: u32,
    last_only: u32,
}

/// One vector group `g` of one row (`slot` in the unit's registers) at one step of the backward
/// pass: the gradients of its four gates' pre-activations into `dz` and `dz_now`, and the one
/// reaching its previous cell state into `dc`.
#[cube]
fn backward_cell<F: Float, N: Size>(
    output_grad: &Tensor<Vector<F, N>>,
    gates: &Tensor<Vector<F, N>>,
    cells: &Tensor<Vector<F, N>>,
    dz: &mut Tensor<Vector<F, N>>,
    dz_now: &mut Shared<[Vector<F, N>]>,
    dc: &mut Array<Vector<F, N>>,
    dh_next: &Array<Vector<F, N>>,
    at: &CellAt,
    slot: usize,
    row: usize,
    g: usize,
    b: usize,
    #[comptime] hidden: usize,
    #[comptime] vector: usize,
) {
    let groups = hidden / vector;
    let width = 4 * groups;
    let one = Vector::<F, N>::broadcast(F::new(1.0));
    let step_at = b * at.steps + at.t;
    let mut dh = dh_next[slot];
    if at.last_only == 1 {
        if at.t == at.steps - 1 {
            dh += output_grad[b * groups + g];
        }
    } else {
        dh += output_grad[step_at * groups + g];
    }
    let gate_at = step_at * width + g;
    let input_gate = gates[gate_at];
    let forget_gate = gates[gate_at + groups];
    let output_gate = gates[gate_at + 2 * groups];
    let candidate = gates[gate_at + 3 * groups];
    let squashed = tanh_of::<F, N>(cells[step_at * groups + g]);
    let mut previous_cell = zeros::<F, N>();
    if at.forward_step > 0 {
        let previous_t = time_of(at.forward_step - 1, at.steps, at.reverse);
        previous_cell = cells[(b * at.steps + previous_t) * groups + g];
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
