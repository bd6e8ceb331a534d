//! A small, learnable stand-in for MNIST, written as real IDX files: for tests, demos and trying
//! the pipeline without downloading anything.
//!
//! Class `c` is a vertical bar at a column of its own (`3 + 2c`), from a random row down to the
//! bottom, of random brightness, over faint noise: an LSTM reading rows learns it in a few
//! dozen steps.

use std::path::Path;

use crate::idx::write_idx;
use crate::{IMAGE_COLS, IMAGE_PIXELS, IMAGE_ROWS, NUM_CLASSES};

/// Writes `train-*` files with `train` images and `t10k-*` files with `test` images into `dir`
/// (gzipped when `gzip`), deterministically from `seed`.
pub fn write_synthetic_mnist(
    dir: &Path,
    train: usize,
    test: usize,
    seed: u64,
    gzip: bool,
) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let suffix = if gzip { ".gz" } else { "" };
    let mut rng = SplitMix(seed);
    for (prefix, count) in [("train", train), ("t10k", test)] {
        let (pixels, labels) = synthetic_images(count, &mut rng);
        write_idx(
            &dir.join(format!("{prefix}-images-idx3-ubyte{suffix}")),
            &[count, IMAGE_ROWS, IMAGE_COLS],
            &pixels,
            gzip,
        )?;
        write_idx(
            &dir.join(format!("{prefix}-labels-idx1-ubyte{suffix}")),
            &[count],
            &labels,
            gzip,
        )?;
    }
    Ok(())
}

fn synthetic_images(count: usize, rng: &mut SplitMix) -> (Vec<u8>, Vec<u8>) {
    let mut pixels = vec![0u8; count * IMAGE_PIXELS];
    let mut labels = Vec::with_capacity(count);
    for (index, image) in pixels.chunks_exact_mut(IMAGE_PIXELS).enumerate() {
        let label = (index % NUM_CLASSES) as u8;
        labels.push(label);
        for pixel in image.iter_mut() {
            *pixel = (rng.next() % 40) as u8;
        }
        let column = 3 + 2 * usize::from(label);
        let top = 2 + (rng.next() % 6) as usize;
        let brightness = 160 + (rng.next() % 96) as u8;
        for row in top..IMAGE_ROWS {
            image[row * IMAGE_COLS + column] = brightness;
        }
    }
    (pixels, labels)
}

/// SplitMix64: a tiny deterministic generator, so the data needs no RNG dependency.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}
