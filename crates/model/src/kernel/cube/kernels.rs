//! The recurrence of one LSTM direction as CubeCL kernels: one launch walks every time step.
//!
//! Each cube owns `rows` batch rows. It keeps their hidden and cell states (and the gradients
//! flowing back through them) in shared memory, reads the recurrent weights from global memory
//! (the same few kilobytes at every step, so they stay in cache) and separates the two halves of
//! a step with barriers: first every gate column from the previous hidden state, then every unit's
//! cell and hidden update from the gates. Cubes never wait on each other (there is no grid-wide
//! barrier on wgpu), since batch rows are independent.
//!
//! Layouts, all contiguous and row-major: `proj` and `gates` `[batch, steps, 4 hidden]` (gate
//! columns `[input | forget | output | cell]`, the cell gate's pre-activations doubled as in
//! `fused.rs`), `w_h` `[hidden, 4 hidden]`, `w_h_t` its transpose, `hiddens` and `cells`
//! `[batch, steps, hidden]` at each step's own index.

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

/// First half of a forward step: the activated gates of the cube's rows at time `t` into
/// `gates_now` (`[rows, 4 hidden]`), from the input projection and the previous hidden state.
#[cube]
fn forward_gates<F: Float>(
    proj: &Tensor<F>,
    w_h: &Tensor<F>,
    hidden_now: &Shared<[F]>,
    gates_now: &mut Shared<[F]>,
    first_row: usize,
    batch: usize,
    steps: usize,
    t: usize,
    #[comptime] rows: usize,
    #[comptime] hidden: usize,
) {
    let width = 4 * hidden;
    let mut index = UNIT_POS_X as usize;
    while index < rows * width {
        let row = index / width;
        let column = index % width;
        let b = first_row + row;
        if b < batch {
            let mut acc = proj[(b * steps + t) * width + column];
            for k in 0..hidden {
                acc += hidden_now[row * hidden + k] * w_h[k * width + column];
            }
            let activated = sigmoid::<F>(acc);
            // The cell gate's doubled pre-activation: 2 sigmoid(2 z) - 1 = tanh(z).
            if column >= 3 * hidden {
                gates_now[index] = F::new(2.0) * activated - F::new(1.0);
            } else {
                gates_now[index] = activated;
            }
        }
        index += CUBE_DIM_X as usize;
    }
}

/// Second half of a forward step, for one unit of one of the cube's rows (`index` into the
/// `[rows, hidden]` state): its new cell and hidden state from this step's gates.
#[cube]
fn forward_cell<F: Float>(
    gates_now: &Shared<[F]>,
    hidden_now: &mut Shared<[F]>,
    cell_now: &mut Shared<[F]>,
    index: usize,
    #[comptime] hidden: usize,
) {
    let base = (index / hidden) * 4 * hidden + index % hidden;
    let cell =
        gates_now[base + hidden] * cell_now[index] + gates_now[base] * gates_now[base + 3 * hidden];
    cell_now[index] = cell;
    hidden_now[index] = gates_now[base + 2 * hidden] * tanh_of::<F>(cell);
}

/// What the backward pass reads of one unit at time index `at = b * steps + t`: its gates, cell
/// and hidden state, from the shared buffers `forward_cell` has just written.
#[cube]
fn save_cell<F: Float>(
    gates_now: &Shared<[F]>,
    hidden_now: &Shared<[F]>,
    cell_now: &Shared<[F]>,
    hiddens: &mut Tensor<F>,
    cells: &mut Tensor<F>,
    gates: &mut Tensor<F>,
    index: usize,
    at: usize,
    #[comptime] hidden: usize,
) {
    let unit = index % hidden;
    let base = (index / hidden) * 4 * hidden + unit;
    hiddens[at * hidden + unit] = hidden_now[index];
    cells[at * hidden + unit] = cell_now[index];
    let gate_at = at * 4 * hidden + unit;
    gates[gate_at] = gates_now[base];
    gates[gate_at + hidden] = gates_now[base + hidden];
    gates[gate_at + 2 * hidden] = gates_now[base + 2 * hidden];
    gates[gate_at + 3 * hidden] = gates_now[base + 3 * hidden];
}

/// The forward pass of training: every step's hidden state, cell and gates.
#[cube(launch)]
pub fn lstm_forward_train<F: Float>(
    proj: &Tensor<F>,
    w_h: &Tensor<F>,
    hiddens: &mut Tensor<F>,
    cells: &mut Tensor<F>,
    gates: &mut Tensor<F>,
    batch: u32,
    steps: u32,
    reverse: u32,
    #[comptime] rows: usize,
    #[comptime] hidden: usize,
    #[define(F)] _dtype: ElemType,
) {
    let batch = batch as usize;
    let steps = steps as usize;
    let first_row = CUBE_POS_X as usize * rows;
    let mut hidden_now = Shared::<[F]>::new_slice(rows * hidden);
    let mut cell_now = Shared::<[F]>::new_slice(rows * hidden);
    let mut gates_now = Shared::<[F]>::new_slice(rows * 4 * hidden);
    zero_shared::<F>(&mut hidden_now, rows * hidden);
    zero_shared::<F>(&mut cell_now, rows * hidden);
    sync_cube();
    for step in 0..steps {
        let t = time_of(step, steps, reverse);
        forward_gates::<F>(
            proj,
            w_h,
            &hidden_now,
            &mut gates_now,
            first_row,
            batch,
            steps,
            t,
            rows,
            hidden,
        );
        sync_cube();
        let mut index = UNIT_POS_X as usize;
        while index < rows * hidden {
            let b = first_row + index / hidden;
            if b < batch {
                forward_cell::<F>(&gates_now, &mut hidden_now, &mut cell_now, index, hidden);
                save_cell::<F>(
                    &gates_now,
                    &hidden_now,
                    &cell_now,
                    hiddens,
                    cells,
                    gates,
                    index,
                    b * steps + t,
                    hidden,
                );
            }
            index += CUBE_DIM_X as usize;
        }
        sync_cube();
    }
}

/// The forward pass of inference: nothing saved; `outputs` is `[batch, steps, hidden]` when
/// `all_steps`, else `[batch, 1, hidden]`, the last time index's hidden state.
#[cube(launch)]
pub fn lstm_forward_infer<F: Float>(
    proj: &Tensor<F>,
    w_h: &Tensor<F>,
    outputs: &mut Tensor<F>,
    batch: u32,
    steps: u32,
    reverse: u32,
    #[comptime] rows: usize,
    #[comptime] hidden: usize,
    #[comptime] all_steps: bool,
    #[define(F)] _dtype: ElemType,
) {
    let batch = batch as usize;
    let steps = steps as usize;
    let first_row = CUBE_POS_X as usize * rows;
    let mut hidden_now = Shared::<[F]>::new_slice(rows * hidden);
    let mut cell_now = Shared::<[F]>::new_slice(rows * hidden);
    let mut gates_now = Shared::<[F]>::new_slice(rows * 4 * hidden);
    zero_shared::<F>(&mut hidden_now, rows * hidden);
    zero_shared::<F>(&mut cell_now, rows * hidden);
    sync_cube();
    for step in 0..steps {
        let t = time_of(step, steps, reverse);
        forward_gates::<F>(
            proj,
            w_h,
            &hidden_now,
            &mut gates_now,
            first_row,
            batch,
            steps,
            t,
            rows,
            hidden,
        );
        sync_cube();
        let mut index = UNIT_POS_X as usize;
        while index < rows * hidden {
            let b = first_row + index / hidden;
            if b < batch {
                forward_cell::<F>(&gates_now, &mut hidden_now, &mut cell_now, index, hidden);
                if all_steps {
                    outputs[(b * steps + t) * hidden + index % hidden] = hidden_now[index];
                } else if t == steps - 1 {
                    outputs[b * hidden + index % hidden] = hidden_now[index];
                }
            }
            index += CUBE_DIM_X as usize;
        }
        sync_cube();
    }
}

/// First half of a backward step: the gradient of every gate pre-activation of the cube's rows
/// at time `t`, into `dz_now` (`[rows, 4 hidden]`) and `dz`, from the gradient reaching this
/// step's hidden state (the output's, `grad_now`, plus the recurrent one, `dh_now`) and the one
/// reaching its cell (`dc_now`, updated to the previous cell's).
#[cube]
fn backward_gates<F: Float>(
    output_grad: &Tensor<F>,
    gates: &Tensor<F>,
    cells: &Tensor<F>,
    dz: &mut Tensor<F>,
    dh_now: &Shared<[F]>,
    dc_now: &mut Shared<[F]>,
    dz_now: &mut Shared<[F]>,
    first_row: usize,
    batch: usize,
    steps: usize,
    step: usize,
    reverse: u32,
    last_only: u32,
    #[comptime] rows: usize,
    #[comptime] hidden: usize,
) {
    let width = 4 * hidden;
    // `step` counts forward steps from the last one back; `t` is its time index.
    let forward_step = steps - 1 - step;
    let t = time_of(forward_step, steps, reverse);
    let mut index = UNIT_POS_X as usize;
    while index < rows * hidden {
        let row = index / hidden;
        let unit = index % hidden;
        let b = first_row + row;
        if b < batch {
            let at = b * steps + t;
            let mut dh = dh_now[index];
            if last_only == 1 {
                if t == steps - 1 {
                    dh += output_grad[b * hidden + unit];
                }
            } else {
                dh += output_grad[at * hidden + unit];
            }
            let gate_at = at * width + unit;
            let input_gate = gates[gate_at];
            let forget_gate = gates[gate_at + hidden];
            let output_gate = gates[gate_at + 2 * hidden];
            let candidate = gates[gate_at + 3 * hidden];
            let squashed = tanh_of::<F>(cells[at * hidden + unit]);
            let mut previous_cell = F::new(0.0);
            if forward_step > 0 {
                let previous_t = time_of(forward_step - 1, steps, reverse);
                previous_cell = cells[(b * steps + previous_t) * hidden + unit];
            }
            let one = F::new(1.0);
            let dc = dc_now[index] + dh * output_gate * (one - squashed * squashed);
            dc_now[index] = dc * forget_gate;
            let d_input = dc * candidate * input_gate * (one - input_gate);
            let d_forget = dc * previous_cell * forget_gate * (one - forget_gate);
            let d_output = dh * squashed * output_gate * (one - output_gate);
            // d candidate / d (doubled pre-activation) = 2 s (1 - s) = (1 - candidate^2) / 2.
            let d_cell = dc * input_gate * (one - candidate * candidate) * F::new(0.5);
            let base = row * width + unit;
            dz_now[base] = d_input;
            dz_now[base + hidden] = d_forget;
            dz_now[base + 2 * hidden] = d_output;
            dz_now[base + 3 * hidden] = d_cell;
            dz[gate_at] = d_input;
            dz[gate_at + hidden] = d_forget;
            dz[gate_at + 2 * hidden] = d_output;
            dz[gate_at + 3 * hidden] = d_cell;
        }
        index += CUBE_DIM_X as usize;
    }
}

/// Second half of a backward step: the gradient reaching the previous hidden state through the
/// recurrent weights, `dz_now · W_hᵀ`, into `dh_now`.
#[cube]
fn backward_recurrent<F: Float>(
    w_h_t: &Tensor<F>,
    dz_now: &Shared<[F]>,
    dh_now: &mut Shared<[F]>,
    first_row: usize,
    batch: usize,
    #[comptime] rows: usize,
    #[comptime] hidden: usize,
) {
    let width = 4 * hidden;
    let mut index = UNIT_POS_X as usize;
    while index < rows * hidden {
        let row = index / hidden;
        let unit = index % hidden;
        if first_row + row < batch {
            let mut acc = F::new(0.0);
            for j in 0..width {
                acc += dz_now[row * width + j] * w_h_t[j * hidden + unit];
            }
            dh_now[index] = acc;
        }
        index += CUBE_DIM_X as usize;
    }
}

/// The backward pass through time: the gradient of every step's gate pre-activations, `dz`
/// `[batch, steps, 4 hidden]`, from the outputs' gradient (`[batch, steps, hidden]`, or
/// `[batch, 1, hidden]` for the last time index alone when `last_only == 1`) and the saved forward pass.
#[cube(launch)]
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
    #[define(F)] _dtype: ElemType,
) {
    let batch = batch as usize;
    let steps = steps as usize;
    let first_row = CUBE_POS_X as usize * rows;
    let mut dh_now = Shared::<[F]>::new_slice(rows * hidden);
    let mut dc_now = Shared::<[F]>::new_slice(rows * hidden);
    let mut dz_now = Shared::<[F]>::new_slice(rows * 4 * hidden);
    zero_shared::<F>(&mut dh_now, rows * hidden);
    zero_shared::<F>(&mut dc_now, rows * hidden);
    sync_cube();
    for step in 0..steps {
        backward_gates::<F>(
            output_grad,
            gates,
            cells,
            dz,
            &dh_now,
            &mut dc_now,
            &mut dz_now,
            first_row,
            batch,
            steps,
            step,
            reverse,
            last_only,
            rows,
            hidden,
        );
        sync_cube();
        backward_recurrent::<F>(w_h_t, &dz_now, &mut dh_now, first_row, batch, rows, hidden);
        sync_cube();
    }
}
