//! The layer against PyTorch's `nn.LSTM`, `nn.GRU` and `nn.RNN` on the cases of
//! `bench/pytorch/rnn_fixtures.py` (`tests/fixtures/torch/`): outputs, final states and every
//! gradient within 1e-4, on each path this build has (flex with and without the kernel; ndarray's
//! kernel with `--features ndarray`; the CubeCL kernel with `--features wgpu`, on lavapipe in CI).
//! GRU and RNN cases run in tensor operations on every device (the kernels are the LSTM's).

mod support;

use std::path::{Path, PathBuf};

use burn::tensor::Device;
use fused_rnn::{Cell, LstmPath};
use support::parity::{Case, read};

const TOLERANCE: f32 = 1e-4;

fn fixtures() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/torch");
    let mut cases: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.to_string_lossy().ends_with(".case.safetensors"))
        .collect();
    cases.sort();
    assert!(
        cases.len() >= 16,
        "the fixtures are missing from {}",
        dir.display()
    );
    cases
}

/// Every case on `device`, the kernel on or off; panics naming the case and the tensor.
fn matches_pytorch(device: &Device, kernel: bool) {
    for case_path in fixtures() {
        let name = case_path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .replace(".case.safetensors", "");
        let case = Case::from_bytes(&std::fs::read(&case_path).unwrap()).unwrap();
        let expected_path = case_path.with_file_name(format!("{name}.expected.safetensors"));
        let expected = read(&std::fs::read(expected_path).unwrap())
            .unwrap()
            .tensors;
        let device = if case.tensors.contains_key("grad_output") {
            device.clone().autodiff()
        } else {
            device.clone()
        };
        let path = case
            .path(&device, kernel)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(
            path == LstmPath::Kernel,
            kernel && case.config.cell == Cell::Lstm,
            "{name}: the layer took {path} on {device:?}"
        );
        let results = case
            .run(&device, kernel)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(
            results.keys().collect::<std::collections::BTreeSet<_>>(),
            expected.keys().collect(),
            "{name}: the results' names"
        );
        for (key, expected) in &expected {
            let actual = &results[key];
            assert_eq!(actual.shape, expected.shape, "{name}: shape of {key}");
            let worst = actual
                .data
                .iter()
                .zip(&expected.data)
                .map(|(a, e)| (a - e).abs())
                .fold(0.0f32, f32::max);
            assert!(
                worst <= TOLERANCE,
                "{name} (kernel {kernel}): {key} differs from PyTorch's by {worst}"
            );
        }
    }
}

#[test]
fn the_kernel_on_flex_matches_pytorch() {
    matches_pytorch(&Device::flex(), true);
}

#[test]
fn tensor_operations_on_flex_match_pytorch() {
    matches_pytorch(&Device::flex(), false);
}

#[cfg(feature = "ndarray")]
#[allow(deprecated)] // Burn 0.22 deprecates ndarray; the layer serves it while Burn has it.
#[test]
fn the_kernel_on_ndarray_matches_pytorch() {
    matches_pytorch(&Device::ndarray(), true);
}

/// The CubeCL kernel on wgpu (lavapipe in CI): initial states, lengths, both directions, every
/// gradient.
#[cfg(feature = "wgpu")]
#[test]
fn wgpu_matches_pytorch() {
    matches_pytorch(&Device::wgpu(burn::tensor::DeviceKind::DefaultDevice), true);
}
