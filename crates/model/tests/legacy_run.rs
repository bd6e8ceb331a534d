//! A run directory written before the classifier kept its LSTM in PyTorch's layout (each gate a
//! Burn `nn::Lstm` gate controller): `tests/fixtures/run-2026-12-05/`, trained by `mnist-lstm
//! train configs/smoke.toml` with two bidirectional layers of 6 units and a forget bias of 1.
//! Its `model.json` and `model.bpk` load through today's code and give the logits that code gave
//! (`logits.txt`, as `f32` bits, on four fixed images) bit for bit where the CPU kernel runs, as
//! it did then, and within float rounding in tensor operations.

use std::path::{Path, PathBuf};

use burn::tensor::{Device, Tensor, TensorData};
use model::{LstmClassifierConfig, LstmPath};

fn run_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/run-2026-12-05")
}

/// Four 28x28 images of a fixed pattern in [0, 1].
fn images(device: &Device) -> Tensor<3> {
    let (batch, rows, cols) = (4, 28, 28);
    let pixels: Vec<f32> = (0..batch * rows * cols)
        .map(|i| {
            let (b, r, c) = (i / (rows * cols), (i / cols) % rows, i % cols);
            ((b * 7 + r * 3 + c * 5) % 17) as f32 / 16.0
        })
        .collect();
    Tensor::from_data(TensorData::new(pixels, [batch, rows, cols]), device)
}

fn expected_logits() -> Vec<f32> {
    let text = std::fs::read_to_string(run_dir().join("logits.txt")).unwrap();
    text.trim()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .split(',')
        .map(|bits| f32::from_bits(bits.trim().parse().unwrap()))
        .collect()
}

#[test]
fn a_run_from_before_gives_the_same_logits() {
    let device = Device::default();
    let config = LstmClassifierConfig::from_file(run_dir().join("model.json")).unwrap();
    assert_eq!(
        (config.num_layers, config.bidirectional, config.hidden_size),
        (2, true, 6)
    );
    let classifier = config.load(run_dir().join("model.bpk"), &device).unwrap();
    let logits: Vec<f32> = classifier
        .forward(images(&device))
        .into_data()
        .iter::<f32>()
        .collect();
    let expected = expected_logits();
    assert_eq!(logits.len(), expected.len());
    if classifier.lstm_path(&device) == LstmPath::Kernel {
        let bits = |values: &[f32]| values.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&logits), bits(&expected), "{logits:?} vs {expected:?}");
    } else {
        for (got, want) in logits.iter().zip(&expected) {
            assert!((got - want).abs() < 1e-5, "{logits:?} vs {expected:?}");
        }
    }
}

#[test]
fn a_run_from_before_saves_in_todays_layout_and_loads_back() {
    let device = Device::default();
    let config = LstmClassifierConfig::from_file(run_dir().join("model.json")).unwrap();
    let classifier = config.load(run_dir().join("model.bpk"), &device).unwrap();
    let before: Vec<f32> = classifier
        .forward(images(&device))
        .into_data()
        .iter::<f32>()
        .collect();
    let dir = tempfile::tempdir().unwrap();
    classifier.save(dir.path().join("model.bpk")).unwrap();
    let reloaded = config.load(dir.path().join("model.bpk"), &device).unwrap();
    let after: Vec<f32> = reloaded
        .forward(images(&device))
        .into_data()
        .iter::<f32>()
        .collect();
    assert_eq!(before, after);
}
