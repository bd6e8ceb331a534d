//! The CubeCL kernel on wgpu against the CPU kernel on flex (which `torch_fixtures.rs` checks
//! against PyTorch), from the same weights and inputs, on batches that span several cubes and rows past the batch in the last one:
//! every step's output, the final states and every gradient (of the input, of `h0` and `c0`, of
//! each parameter), with and without an initial state and lengths, both directions, and the
//! classifier's last-output call. The PyTorch fixtures (`torch_fixtures.rs`) check the same
//! contract on small shapes.
//!
//! Runs with `--features wgpu`; needs a wgpu adapter (Mesa's lavapipe is enough).
#![cfg(feature = "wgpu")]

use burn::module::Module;
use burn::tensor::{Device, DeviceKind, Tensor, TensorData};
use fused_rnn::{Lstm, LstmConfig, LstmPath, LstmState};

/// The kernels sum in other orders.
const TOLERANCE: f32 = 1e-4;

fn values<const D: usize>(tensor: Tensor<D>) -> Vec<f32> {
    tensor.into_data().iter::<f32>().collect()
}

/// Values in [-1, 1] that depend only on the shape.
fn fixed<const D: usize>(shape: [usize; D]) -> TensorData {
    let count = shape.iter().product::<usize>();
    let values: Vec<f32> = (0..count).map(|i| (i as f32 * 0.73).sin()).collect();
    TensorData::new(values, shape)
}

/// What a call gives and every gradient of `sum(output * weights) + sum(h_n) + sum(c_n)`, by
/// name.
fn results(
    lstm: &Lstm,
    input: &Tensor<3>,
    state: Option<&LstmState>,
    lengths: Option<&[usize]>,
    last_only: bool,
) -> Vec<(String, Vec<f32>)> {
    let input = input.clone().require_grad();
    let state = state.map(|state| LstmState {
        hidden: state.hidden.clone().require_grad(),
        cell: state.cell.clone().require_grad(),
    });
    let (loss, mut named) = if last_only {
        let last = lstm.forward_last(input.clone(), state.clone(), lengths);
        let weights = Tensor::<2>::from_data(fixed(last.dims()), &last.device());
        let loss = (last.clone() * weights).sum();
        (loss, vec![("last".to_string(), values(last))])
    } else {
        let (output, final_state) = lstm.forward(input.clone(), state.clone(), lengths);
        let weights = Tensor::<3>::from_data(fixed(output.dims()), &output.device());
        let loss = (output.clone() * weights).sum()
            + final_state.hidden.clone().sum()
            + final_state.cell.clone().sum();
        let named = vec![
            ("output".to_string(), values(output)),
            ("h_n".to_string(), values(final_state.hidden)),
            ("c_n".to_string(), values(final_state.cell)),
        ];
        (loss, named)
    };
    let grads = loss.backward();
    let grad = |name: &str, tensor: Option<Tensor<3>>| {
        (
            format!("grad.{name}"),
            values(tensor.unwrap_or_else(|| panic!("no gradient of {name}"))),
        )
    };
    named.push(grad("input", input.grad(&grads)));
    if let Some(state) = &state {
        named.push(grad("h0", state.hidden.grad(&grads)));
        named.push(grad("c0", state.cell.grad(&grads)));
    }
    for (index, direction) in lstm.directions.iter().enumerate() {
        let mut push = |name: &str, values: Option<Vec<f32>>| {
            let values = values.unwrap_or_else(|| panic!("no gradient of {name}{index}"));
            named.push((format!("grad.{name}{index}"), values));
        };
        push("weight_ih", direction.weight_ih.grad(&grads).map(values));
        push("weight_hh", direction.weight_hh.grad(&grads).map(values));
        push("bias_ih", direction.bias_ih.grad(&grads).map(values));
        push("bias_hh", direction.bias_hh.grad(&grads).map(values));
    }
    named
}

/// The relative error of `actual` against `expected`: sums over many rows and steps in other
/// orders differ in their last bits.
fn worst_error(actual: &[f32], expected: &[f32]) -> f32 {
    actual
        .iter()
        .zip(expected)
        .map(|(a, e)| (a - e).abs() / e.abs().max(1.0))
        .fold(0.0f32, f32::max)
}

/// One shape through the CubeCL kernel on wgpu and through the CPU kernel on flex (itself
/// checked against PyTorch), from the same weights and inputs, with every option.
fn kernel_matches_the_cpu(batch: usize, steps: usize, input: usize, hidden: usize) {
    let wgpu = Device::wgpu(DeviceKind::DefaultDevice).autodiff();
    let flex = Device::flex().autodiff();
    let lstm = LstmConfig::new(input, hidden)
        .with_num_layers(2)
        .with_bidirectional(true)
        .init(&flex);
    let on_gpu = lstm.clone().fork(&wgpu);
    assert_eq!(on_gpu.path(&wgpu), LstmPath::Kernel);
    let x = fixed([batch, steps, input]);
    let state = |device: &Device| LstmState {
        hidden: Tensor::from_data(fixed([4, batch, hidden]), device) * 0.5,
        cell: Tensor::from_data(fixed([4, batch, hidden]), device).flip([1]) * 0.5,
    };
    let (gpu_state, cpu_state) = (state(&wgpu), state(&flex));
    // Every length from 1 to `steps` in turn, the full length among them.
    let lengths: Vec<usize> = (0..batch).map(|row| 1 + (row * 7) % steps).collect();
    for (with_state, lengths) in [
        (false, None),
        (true, None),
        (false, Some(&lengths[..])),
        (true, Some(&lengths[..])),
    ] {
        for last_only in [false, true] {
            let case = format!(
                "batch {batch}, {steps} steps, input {input}, hidden {hidden}, state \
                 {with_state}, lengths {}, last only {last_only}",
                lengths.is_some()
            );
            let run = |layer: &Lstm, device: &Device, state: &LstmState| {
                let x = Tensor::<3>::from_data(x.clone(), device);
                results(layer, &x, with_state.then_some(state), lengths, last_only)
            };
            let gpu = run(&on_gpu, &wgpu, &gpu_state);
            let cpu = run(&lstm, &flex, &cpu_state);
            assert_eq!(gpu.len(), cpu.len(), "{case}");
            for ((name, actual), (_, expected)) in gpu.iter().zip(&cpu) {
                assert_eq!(actual.len(), expected.len(), "{case}: {name}");
                let worst = worst_error(actual, expected);
                assert!(
                    worst <= TOLERANCE,
                    "{case}: {name} differs from the CPU kernel's by {worst} (relative)"
                );
            }
        }
    }
}

/// 9 rows are two cubes of 8 on a two-core rasteriser (lavapipe), the second with 7 rows past
/// the batch; lengths 1 to 9 all occur; 8 inputs and 16 units read in vectors of four. (The
/// PyTorch fixtures take sizes that 4 and 8 do not divide, hence narrower vectors. Cubes of 32
/// rows would check the same code, unrolled four times wider: lavapipe compiles each variant
/// for minutes.)
#[test]
fn nine_rows_in_two_cubes_every_option() {
    kernel_matches_the_cpu(9, 9, 8, 16);
}
