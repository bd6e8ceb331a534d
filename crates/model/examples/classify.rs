//! Reuse a classifier trained by `mnist-lstm train` from your own code: build it from the run's
//! `model.json` (hyper-parameters) and `model.bpk` (weights), then classify a tensor.
//!
//! ```sh
//! cargo run -p model --release --example classify -- artifacts/default
//! ```
//!
//! The image here is a "7" drawn in code; in an application it comes from anywhere, as long as
//! it is MNIST-like: 28x28, a light digit on a dark background, pixels scaled to [0, 1] (and
//! normalised when the run's configuration had `data.normalize = true`).

use std::error::Error;
use std::path::Path;

use burn::tensor::{Device, Tensor, TensorData};
use model::LstmClassifierConfig;

fn main() -> Result<(), Box<dyn Error>> {
    let run_dir = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "artifacts/default".to_string());
    let probabilities = classify(Path::new(&run_dir), &seven())?;
    let digit = most_likely(&probabilities);
    println!("a drawn 7 is classified as {digit}");
    for (class, probability) in probabilities.iter().enumerate() {
        println!("  {class}: {:6.2}%", 100.0 * probability);
    }
    Ok(())
}

/// The classifier of the run in `run_dir`, applied to one 28x28 image given row by row:
/// returns the probability of each class.
pub fn classify(run_dir: &Path, pixels: &[f32]) -> Result<Vec<f32>, Box<dyn Error>> {
    let device = Device::default();
    let config = LstmClassifierConfig::from_file(run_dir.join("model.json"))?;
    let classifier = config.load(run_dir.join("model.bpk"), &device)?;
    let image = Tensor::<3>::from_data(TensorData::new(pixels.to_vec(), [1, 28, 28]), &device);
    let probabilities = classifier.probabilities(image);
    Ok(probabilities.into_data().try_to_vec::<f32>()?)
}

/// The index of the largest probability.
pub fn most_likely(probabilities: &[f32]) -> usize {
    probabilities
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map_or(0, |(class, _)| class)
}

/// A "7": a bar across the top and a stroke down to the bottom left, three pixels thick.
pub fn seven() -> Vec<f32> {
    let mut pixels = vec![0.0f32; 28 * 28];
    let mut ink = |row: usize, col: usize| {
        for r in row..(row + 3).min(28) {
            for c in col..(col + 3).min(28) {
                pixels[r * 28 + c] = 1.0;
            }
        }
    };
    for col in 7..20 {
        ink(5, col);
    }
    for row in 5..23 {
        ink(row, 19 - (row - 5) * 8 / 18);
    }
    pixels
}
