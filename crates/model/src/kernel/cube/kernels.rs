//! The recurrence of one LSTM direction as CubeCL kernels: one launch walks every time step.
//!
//! A cube owns `rows` batch rows; each of its `hidden / spread` units owns `spread` hidden units
//! (`u`, `u + hidden / spread`, ...) and computes their four gates (columns `u`, `u + hidden`,
//! `u + 2 hidden`, `u + 3 hidden` of the fused weights) for all the cube's rows, so that
//!
//! - each previous hidden value it reads from shared memory serves `4 spread` products, and each
//!   recurrent weight it reads serves `rows`: loads, not arithmetic, bound this loop (on a CPU
//!   rasteriser every load is a gather; on a GPU fewer loads leave more room for latency);
//! - the cell update of its hidden units needs no other unit's results: their cell states stay in
//!   the unit's registers, and a step ends with one barrier, after the new hidden state is
//!   written to the other half of a double buffer.
//!
//! The backward kernel mirrors it in reverse time: a unit turns the gradient reaching its hidden
//! units' hidden and cell states into their gates' gradients, then, after a barrier, sums the
//! gradient reaching their previous hidden states over every gate column. Cubes never wait on
//! each other (there is no grid-wide barrier on wgpu): batch rows are independent.
//!
//! Layouts, all contiguous and row-major: `proj`, `gates` and `dz` `[batch, steps, 4 hidden]`
//! (gate columns `[input | forget | output | cell]`, the cell gate's pre-activation doubled as in
//! `fused.rs`), `w_h` `[hidden, 4 hidden]`, `w_h_t` its transpose, `hiddens` and `cells`
//! `[batch, steps, hidden]` at each step's own time index.

use cubecl::prelude::*;

/// `1 / (1 + e^-x)`.
#[cube]
fn sigmoid<F: Float>(x: F) -> F {
    F::new(1.0) / (F::new(1.0) + (F::new(0.0) - x).exp())
}

/// `tanh(x)` as `2 sigmoid(2 x) - 1`, as the CPU kernel and the tensor-op path compute it.
#[cube]
fn tanh_of<F: Float>(x: F) -> F {
    F::new(2.0) * sigmoid::<F>(F::new(2.0) * x) - F::new(1.0)
}

/// The time index of step `step` of `steps`, read left to right or (`reverse == 1`) right to left.
#[cube]
fn time_of(step: usize, steps: usize, reverse: u32) -> usize {
    if reverse == 1 { steps - 1 - step } else { step }
}

/// Zeroes a shared buffer of `len` values, spread over the cube's units.
#[cube]
fn zero_shared<F: Float>(buffer: &mut Shared<[F]>, #[comptime] len: usize) {
    let mut index = UNIT_POS_X as usize;
    while index < len {
        buffer[index] = F::new(0.0);
        index += CUBE_DIM_X as usize;
    }
}

/// Where unit `unit`'s `m`-th hidden unit is: `unit + m * hidden / spread`, so that neighbouring
/// units read neighbouring weights.
#[cube]
fn owned(unit: usize, m: usize, #[comptime] hidden: usize, #[comptime] spread: usize) -> usize {
    unit + m * (hidden / spread)
}

/// One forward step of unit `unit` for the cube's rows: the four gates of its hidden units from
/// the input projection and the previous hidden state (half `current` of the double buffer
/// `hidden_now`), their new cell states (in `cell`, `[rows * spread]`) and hidden states (into the
/// other half). Leaves the activated gates in `gates` (`[(row * spread + m) * 4 + gate]`).
#[cube]
fn forward_step<F: Float>(
    proj: &Tensor<F>,
    w_h: &Tensor<F>,
    hidden_now: &mut Shared<[F]>,
    cell: &mut Array<F>,
    gates: &mut Array<F>,
    current: usize,
    unit: usize,
    first_row: usize,
    batch: usize,
    steps: usize,
    t: usize,
    #[comptime] rows: usize,
    #[comptime] hidden: usize,
    #[comptime] spread: usize,
) {
    let width = 4 * hidden;
    let read = current * rows * hidden;
    #[unroll]
    for row in 0..rows {
        let b = first_row + row;
        #[unroll]
        for m in 0..spread {
            #[unroll]
            for gate in 0..4 {
                gates[(row * spread + m) * 4 + gate] = F::new(0.0);
            }
            if b < batch {
                let at = (b * steps + t) * width + owned(unit, m, hidden, spread);
                #[unroll]
                for gate in 0..4 {
                    gates[(row * spread + m) * 4 + gate] = proj[at + gate * hidden];
                }
            }
        }
    }
    let mut weights = Array::<F>::new(4 * spread);
    for k in 0..hidden {
        #[unroll]
        for m in 0..spread {
            let at = k * width + owned(unit, m, hidden, spread);
            #[unroll]
            for gate in 0..4 {
                weights[m * 4 + gate] = w_h[at + gate * hidden];
            }
        }
        #[unroll]
        for row in 0..rows {
            let h = hidden_now[read + row * hidden + k];
            #[unroll]
            for i in 0..4 * spread {
                gates[row * 4 * spread + i] += h * weights[i];
            }
        }
    }
    let write = (1 - current) * rows * hidden;
    #[unroll]
    for row in 0..rows {
        #[unroll]
        for m in 0..spread {
            let g = (row * spread + m) * 4;
            let input_gate = sigmoid::<F>(gates[g]);
            let forget_gate = sigmoid::<F>(gates[g + 1]);
            let output_gate = sigmoid::<F>(gates[g + 2]);
            // The cell gate's doubled pre-activation: 2 sigmoid(2 z) - 1 = tanh(z).
            let candidate = F::new(2.0) * sigmoid::<F>(gates[g + 3]) - F::new(1.0);
            let c = forget_gate * cell[row * spread + m] + input_gate * candidate;
            cell[row * spread + m] = c;
            hidden_now[write + row * hidden + owned(unit, m, hidden, spread)] =
                output_gate * tanh_of::<F>(c);
            gates[g] = input_gate;
            gates[g + 1] = forget_gate;
            gates[g + 2] = output_gate;
            gates[g + 3] = candidate;
        }
    }
}

/// A unit's registers for `rows * spread` cell states and their gates, zeroed.
#[cube]
fn forward_state<F: Float>(#[comptime] rows: usize, #[comptime] spread: usize) -> Array<F> {
    let mut cell = Array::<F>::new(rows * spread);
    #[unroll]
    for i in 0..rows * spread {
        cell[i] = F::new(0.0);
    }
    cell
}

/// The forward pass of training: every step's hidden state, cell and activated gates.
#[cube(launch_unchecked)]
pub fn lstm_forward_train<F: Float>(
    proj: &Tensor<F>,
    w_h: &Tensor<F>,
    hiddens: &mut Tensor<F>,
    cells: &mut Tensor<F>,
    saved_gates: &mut Tensor<F>,
    batch: u32,
    steps: u32,
    reverse: u32,
    #[comptime] rows: usize,
    #[comptime] hidden: usize,
    #[comptime] spread: usize,
    #[define(F)] _dtype: ElemType,
) {
    let batch = batch as usize;
    let steps = steps as usize;
    let unit = UNIT_POS_X as usize;
    let first_row = CUBE_POS_X as usize * rows;
    let width = 4 * hidden;
    let mut hidden_now = Shared::<[F]>::new_slice(2 * rows * hidden);
    zero_shared::<F>(&mut hidden_now, 2 * rows * hidden);
    let mut cell = forward_state::<F>(rows, spread);
    let mut gates = Array::<F>::new(4 * rows * spread);
    sync_cube();
    for step in 0..steps {
        let t = time_of(step, steps, reverse);
        let current = step % 2;
        forward_step::<F>(
            proj,
            w_h,
            &mut hidden_now,
            &mut cell,
            &mut gates,
            current,
            unit,
            first_row,
            batch,
            steps,
            t,
            rows,
            hidden,
            spread,
        );
        let written = (1 - current) * rows * hidden;
        #[unroll]
        for row in 0..rows {
            let b = first_row + row;
            if b < batch {
                let at = b * steps + t;
                #[unroll]
                for m in 0..spread {
                    let u = owned(unit, m, hidden, spread);
                    hiddens[at * hidden + u] = hidden_now[written + row * hidden + u];
                    cells[at * hidden + u] = cell[row * spread + m];
                    #[unroll]
                    for gate in 0..4 {
                        saved_gates[at * width + gate * hidden + u] =
                            gates[(row * spread + m) * 4 + gate];
                    }
                }
            }
        }
        sync_cube();
    }
}

/// The forward pass of inference: nothing saved; `outputs` is `[batch, steps, hidden]` when
/// `all_steps`, else `[batch, 1, hidden]`, the last time index's hidden state.
#[cube(launch_unchecked)]
pub fn lstm_forward_infer<F: Float>(
    proj: &Tensor<F>,
    w_h: &Tensor<F>,
    outputs: &mut Tensor<F>,
    batch: u32,
    steps: u32,
    reverse: u32,
    #[comptime] rows: usize,
    #[comptime] hidden: usize,
    #[comptime] spread: usize,
    #[comptime] all_steps: bool,
    #[define(F)] _dtype: ElemType,
) {
    let batch = batch as usize;
    let steps = steps as usize;
    let unit = UNIT_POS_X as usize;
    let first_row = CUBE_POS_X as usize * rows;
    let mut hidden_now = Shared::<[F]>::new_slice(2 * rows * hidden);
    zero_shared::<F>(&mut hidden_now, 2 * rows * hidden);
    let mut cell = forward_state::<F>(rows, spread);
    let mut gates = Array::<F>::new(4 * rows * spread);
    sync_cube();
    for step in 0..steps {
        let t = time_of(step, steps, reverse);
        let current = step % 2;
        forward_step::<F>(
            proj,
            w_h,
            &mut hidden_now,
            &mut cell,
            &mut gates,
            current,
            unit,
            first_row,
            batch,
            steps,
            t,
            rows,
            hidden,
            spread,
        );
        let written = (1 - current) * rows * hidden;
        #[unroll]
        for row in 0..rows {
            let b = first_row + row;
            if b < batch {
                #[unroll]
                for m in 0..spread {
                    let u = owned(unit, m, hidden, spread);
                    let h = hidden_now[written + row * hidden + u];
                    if all_steps {
                        outputs[(b * steps + t) * hidden + u] = h;
                    } else if t == steps - 1 {
                        outputs[b * hidden + u] = h;
                    }
                }
            }
        }
        sync_cube();
    }
}

/// The backward pass through time: the gradient of every step's gate pre-activations, `dz`
/// `[batch, steps, 4 hidden]`, from the outputs' gradient (`[batch, steps, hidden]`, or
/// `[batch, 1, hidden]` for the last time index alone when `last_only == 1`) and the saved forward
/// pass. A unit keeps what reaches its hidden units' cell and hidden states in registers; the gate
/// gradients the latter sums come from every unit through shared memory.
#[cube(launch_unchecked)]
pub fn lstm_backward<F: Float>(
    output_grad: &Tensor<F>,
    gates: &Tensor<F>,
    cells: &Tensor<F>,
    w_h_t: &Tensor<F>,
    dz: &mut Tensor<F>,
    batch: u32,
    steps: u32,
    reverse: u32,
    last_only: u32,
    #[comptime] rows: usize,
    #[comptime] hidden: usize,
    #[comptime] spread: usize,
    #[define(F)] _dtype: ElemType,
) {
    let batch = batch as usize;
    let steps = steps as usize;
    let unit = UNIT_POS_X as usize;
    let first_row = CUBE_POS_X as usize * rows;
    let width = 4 * hidden;
    // This step's gate gradients of every unit, `[rows, 4 hidden]`; rows past the batch stay zero.
    let mut dz_now = Shared::<[F]>::new_slice(rows * width);
    zero_shared::<F>(&mut dz_now, rows * width);
    // What reaches each owned hidden unit's cell and hidden state from the step after.
    let mut dc = forward_state::<F>(rows, spread);
    let mut dh_next = forward_state::<F>(rows, spread);
    sync_cube();
    for step in 0..steps {
        // `step` counts forward steps from the last one back; `t` is its time index.
        let forward_step = steps - 1 - step;
        let t = time_of(forward_step, steps, reverse);
        #[unroll]
        for row in 0..rows {
            let b = first_row + row;
            if b < batch {
                #[unroll]
                for m in 0..spread {
                    backward_cell::<F>(
                        output_grad,
                        gates,
                        cells,
                        dz,
                        &mut dz_now,
                        &mut dc,
                        &dh_next,
                        row * spread + m,
                        row,
                        owned(unit, m, hidden, spread),
                        b,
                        steps,
                        forward_step,
                        t,
                        reverse,
                        last_only,
                        hidden,
                    );
                }
            }
        }
        sync_cube();
        // dh_next = dz_now · W_hᵀ for the owned hidden units of every row.
        #[unroll]
        for i in 0..rows * spread {
            dh_next[i] = F::new(0.0);
        }
        let mut weights = Array::<F>::new(spread);
        for j in 0..width {
            #[unroll]
            for m in 0..spread {
                weights[m] = w_h_t[j * hidden + owned(unit, m, hidden, spread)];
            }
            #[unroll]
            for row in 0..rows {
                let gradient = dz_now[row * width + j];
                #[unroll]
                for m in 0..spread {
                    dh_next[row * spread + m] += gradient * weights[m];
                }
            }
        }
        // Every unit has read `dz_now` before the next step writes it.
        sync_cube();
    }
}

/// One hidden unit `u` of one row (`slot` in the unit's registers) at time `t` of the backward
/// pass: the gradients of its four gates' pre-activations into `dz` and `dz_now`, and the one
/// reaching its previous cell state into `dc`.
#[cube]
fn backward_cell<F: Float>(
    output_grad: &Tensor<F>,
    gates: &Tensor<F>,
    cells: &Tensor<F>,
    dz: &mut Tensor<F>,
    dz_now: &mut Shared<[F]>,
    dc: &mut Array<F>,
    dh_next: &Array<F>,
    slot: usize,
    row: usize,
    u: usize,
    b: usize,
    steps: usize,
    forward_step: usize,
    t: usize,
    reverse: u32,
    last_only: u32,
    #[comptime] hidden: usize,
) {
    let width = 4 * hidden;
    let one = F::new(1.0);
    let at = b * steps + t;
    let mut dh = dh_next[slot];
    if last_only == 1 {
        if t == steps - 1 {
            dh += output_grad[b * hidden + u];
        }
    } else {
        dh += output_grad[at * hidden + u];
    }
    let gate_at = at * width + u;
    let input_gate = gates[gate_at];
    let forget_gate = gates[gate_at + hidden];
    let output_gate = gates[gate_at + 2 * hidden];
    let candidate = gates[gate_at + 3 * hidden];
    let squashed = tanh_of::<F>(cells[at * hidden + u]);
    let mut previous_cell = F::new(0.0);
    if forward_step > 0 {
        let previous_t = time_of(forward_step - 1, steps, reverse);
        previous_cell = cells[(b * steps + previous_t) * hidden + u];
    }
    let d_cell_state = dc[slot] + dh * output_grad_scale::<F>(output_gate, squashed);
    dc[slot] = d_cell_state * forget_gate;
    let d_input = d_cell_state * candidate * input_gate * (one - input_gate);
    let d_forget = d_cell_state * previous_cell * forget_gate * (one - forget_gate);
    let d_output = dh * squashed * output_gate * (one - output_gate);
    // d candidate / d (doubled pre-activation) = 2 s (1 - s) = (1 - candidate^2) / 2.
    let d_candidate = d_cell_state * input_gate * (one - candidate * candidate) * F::new(0.5);
    let base = row * width + u;
    dz_now[base] = d_input;
    dz_now[base + hidden] = d_forget;
    dz_now[base + 2 * hidden] = d_output;
    dz_now[base + 3 * hidden] = d_candidate;
    dz[gate_at] = d_input;
    dz[gate_at + hidden] = d_forget;
    dz[gate_at + 2 * hidden] = d_output;
    dz[gate_at + 3 * hidden] = d_candidate;
}

/// How the gradient reaching a hidden state `o tanh(c)` reaches its cell: `o (1 - tanh(c)^2)`.
#[cube]
fn output_grad_scale<F: Float>(output_gate: F, squashed: F) -> F {
    output_gate * (F::new(1.0) - squashed * squashed)
}
