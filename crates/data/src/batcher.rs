//! Turning items into tensors.

use burn::data::dataloader::batcher::Batcher;
use burn::tensor::{Device, Int, Tensor, TensorData};

use crate::{IMAGE_PIXELS, MnistItem, Reading};

/// Mean and standard deviation of the MNIST training pixels scaled to [0, 1] (the values
/// PyTorch's examples use).
pub const MNIST_MEAN_STD: (f32, f32) = (0.1307, 0.3081);

/// A batch ready for the model.
#[derive(Debug, Clone)]
pub struct MnistBatch {
    /// `[batch, steps, features]` in the batcher's [`Reading`] (`[batch, 28, 28]`, 28 rows of
    /// 28 pixels, by default): pixels scaled to [0, 1], then normalised if the batcher says so.
    pub images: Tensor<3>,
    /// `[batch]`: the digits.
    pub targets: Tensor<1, Int>,
}

/// Collates [`MnistItem`]s into an [`MnistBatch`]: one buffer per batch, one tensor upload.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MnistBatcher {
    normalization: Option<(f32, f32)>,
    reading: Reading,
}

impl MnistBatcher {
    /// Pixels scaled to [0, 1] and nothing more, as the tutorial does.
    pub fn new() -> Self {
        Self::default()
    }

    /// Also subtract `mean` and divide by `std` after scaling.
    pub fn normalized(mean: f32, std: f32) -> Self {
        Self {
            normalization: Some((mean, std)),
            reading: Reading::default(),
        }
    }

    /// The same batcher, its images read as `reading` says (rows by default).
    pub fn with_reading(self, reading: Reading) -> Self {
        Self { reading, ..self }
    }

    /// How images become sequences.
    pub fn reading(&self) -> &Reading {
        &self.reading
    }

    /// The (mean, std) applied after scaling, if any.
    pub fn normalization(&self) -> Option<(f32, f32)> {
        self.normalization
    }

    /// The float value the model sees for a grey level.
    pub fn pixel_value(&self, grey: u8) -> f32 {
        let scaled = f32::from(grey) / 255.0;
        match self.normalization {
            Some((mean, std)) => (scaled - mean) / std,
            None => scaled,
        }
    }
}

impl Batcher<MnistItem, MnistBatch> for MnistBatcher {
    fn batch(&self, items: Vec<MnistItem>, device: &Device) -> MnistBatch {
        // A lookup table: 256 values instead of a division per pixel.
        let table: Vec<f32> = (0..=255u8).map(|grey| self.pixel_value(grey)).collect();
        let mut pixels = Vec::with_capacity(items.len() * IMAGE_PIXELS);
        let mut targets = Vec::with_capacity(items.len());
        for item in &items {
            let value = |grey: u8| table[usize::from(grey)];
            self.reading.extend(&item.pixels, value, &mut pixels);
            targets.push(i64::from(item.label));
        }
        let batch = items.len();
        let [steps, features] = self.reading.shape();
        MnistBatch {
            images: Tensor::from_data(TensorData::new(pixels, [batch, steps, features]), device),
            targets: Tensor::from_data(TensorData::new(targets, [batch]), device),
        }
    }
}
