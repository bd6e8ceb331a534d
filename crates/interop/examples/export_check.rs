//! Writes what `crates/interop/check/numpy_forward.py` checks our export against: for a 1-layer,
//! a 2-layer and a 2-layer bidirectional classifier (seeded, untrained), the safetensors file
//! `interop::export` writes (as `mnist-lstm export` does), and a JSON file with 16 input
//! images and our logits for them.
//!
//! cargo run -p interop --release --example export_check -- OUT_DIR

use std::path::PathBuf;

use anyhow::{Context, Result};
use burn::module::Module;
use burn::tensor::{Device, Tensor, TensorData};
use model::{Cell, LstmClassifierConfig};
use serde_json::json;

fn main() -> Result<()> {
    let out = PathBuf::from(
        std::env::args()
            .nth(1)
            .context("usage: export_check OUT_DIR")?,
    );
    std::fs::create_dir_all(&out)?;
    let device = Device::flex();
    device.seed(7);
    let configs = [
        ("one-layer", LstmClassifierConfig::new()),
        (
            "two-layers",
            LstmClassifierConfig::new()
                .with_num_layers(2)
                .with_hidden_size(48),
        ),
        (
            "bidirectional",
            LstmClassifierConfig::new()
                .with_num_layers(2)
                .with_bidirectional(true)
                .with_hidden_size(32),
        ),
        (
            "gru-bidirectional",
            LstmClassifierConfig::new()
                .with_cell(Cell::Gru)
                .with_num_layers(2)
                .with_bidirectional(true)
                .with_hidden_size(24),
        ),
        (
            "rnn",
            LstmClassifierConfig::new()
                .with_cell(Cell::Rnn)
                .with_hidden_size(40),
        ),
    ];
    let pixels: Vec<u8> = (0..16 * 784)
        .map(|i| ((i * 37 + i / 784 * 11) % 256) as u8)
        .collect();
    let scaled: Vec<f32> = pixels.iter().map(|&p| f32::from(p) / 255.0).collect();
    for (name, config) in configs {
        let model = config.init(&device).valid();
        let input = Tensor::<3>::from_data(TensorData::new(scaled.clone(), [16, 28, 28]), &device);
        let logits: Vec<f32> = model.forward(input).into_data().iter::<f32>().collect();
        let weights = out.join(format!("{name}.safetensors"));
        interop::export(&model, &[], &weights)?;
        let expected = json!({
            "cell": config.cell,
            "num_layers": config.num_layers,
            "bidirectional": config.bidirectional,
            "hidden_size": config.hidden_size,
            "pixels": pixels,
            "logits": logits,
        });
        std::fs::write(out.join(format!("{name}.json")), expected.to_string())?;
        println!("{}", weights.display());
    }
    Ok(())
}
