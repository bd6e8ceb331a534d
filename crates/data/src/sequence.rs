//! How an image becomes a sequence for the recurrent classifier: 28 steps of one row of 28 pixels
//! (the tutorial's reading), 784 steps of one pixel (sequential MNIST), or 784 steps of one pixel
//! in a fixed random order (permuted MNIST), the order drawn from a seed.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::{IMAGE_COLS, IMAGE_PIXELS, IMAGE_ROWS};

/// `[data] sequence`: the order in which the classifier reads an image's pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SequenceOrder {
    /// 28 steps, each a row of 28 pixels, top to bottom.
    #[default]
    Rows,
    /// 784 steps of one pixel, row by row (sequential MNIST).
    Pixels,
    /// 784 steps of one pixel in a fixed random order ([`pixel_permutation`]).
    Permuted,
}

impl SequenceOrder {
    /// Every value, in the order the configuration documents them.
    pub const ALL: [SequenceOrder; 3] = [Self::Rows, Self::Pixels, Self::Permuted];

    /// The name in a configuration file.
    pub fn name(self) -> &'static str {
        match self {
            Self::Rows => "rows",
            Self::Pixels => "pixels",
            Self::Permuted => "permuted",
        }
    }

    /// Time steps per image.
    pub fn steps(self) -> usize {
        match self {
            Self::Rows => IMAGE_ROWS,
            Self::Pixels | Self::Permuted => IMAGE_PIXELS,
        }
    }

    /// Values per time step: the classifier's `input_size`.
    pub fn features(self) -> usize {
        IMAGE_PIXELS / self.steps()
    }
}

impl std::fmt::Display for SequenceOrder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A [`SequenceOrder`] made concrete: for `permuted`, the order of the pixels.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Reading {
    order: SequenceOrder,
    /// `permutation[step]` is the pixel index (row-major) read at `step`.
    permutation: Option<Arc<[u16]>>,
}

impl Reading {
    /// The reading of `order`; `permutation_seed` draws the order of `permuted` (and is unused
    /// by the others).
    pub fn new(order: SequenceOrder, permutation_seed: u64) -> Self {
        let permutation = (order == SequenceOrder::Permuted)
            .then(|| Arc::from(pixel_permutation(permutation_seed)));
        Self { order, permutation }
    }

    /// The order.
    pub fn order(&self) -> SequenceOrder {
        self.order
    }

    /// The pixel index read at each step, where the order is a permutation.
    pub fn permutation(&self) -> Option<&[u16]> {
        self.permutation.as_deref()
    }

    /// `[steps, features]` of one image's sequence.
    pub fn shape(&self) -> [usize; 2] {
        [self.order.steps(), self.order.features()]
    }

    /// Appends one image's model inputs (`pixels`: 784 grey levels, row-major), each grey level
    /// mapped through `value`, in reading order.
    pub fn extend(&self, pixels: &[u8], value: impl Fn(u8) -> f32, out: &mut Vec<f32>) {
        match &self.permutation {
            None => out.extend(pixels.iter().map(|&grey| value(grey))),
            Some(order) => out.extend(order.iter().map(|&index| value(pixels[usize::from(index)]))),
        }
    }

    /// In a few words, for people and for other programs reading an export: what one step is.
    pub fn describe(&self) -> String {
        match self.order {
            SequenceOrder::Rows => format!(
                "images [batch, {IMAGE_ROWS}, {IMAGE_COLS}] as {IMAGE_ROWS} steps of \
                 {IMAGE_COLS} pixels, top to bottom"
            ),
            SequenceOrder::Pixels => format!(
                "images as [batch, {IMAGE_PIXELS}, 1]: {IMAGE_PIXELS} steps of one pixel, \
                 row by row"
            ),
            SequenceOrder::Permuted => format!(
                "images as [batch, {IMAGE_PIXELS}, 1]: {IMAGE_PIXELS} steps of one pixel, step \
                 t reading the row-major pixel permutation[t]"
            ),
        }
    }
}

/// A fixed random order of the 784 pixel indices drawn from `seed`: Fisher-Yates driven by
/// SplitMix64, both written out here so that a seed names the same order on every platform and
/// in every version of this crate (a library generator may change its stream between releases,
/// which would silently change what old runs read).
pub fn pixel_permutation(seed: u64) -> Vec<u16> {
    let mut state = seed;
    let mut next = move || {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    let mut order: Vec<u16> = (0..IMAGE_PIXELS as u16).collect();
    for i in (1..order.len()).rev() {
        // Lemire's multiply-shift maps 64 random bits onto 0..=i without a division; its bias
        // (at most i / 2^64) is far below anything a pixel order could show.
        let j = ((u128::from(next()) * (i as u128 + 1)) >> 64) as usize;
        order.swap(i, j);
    }
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_order_has_its_shape() {
        assert_eq!(Reading::new(SequenceOrder::Rows, 0).shape(), [28, 28]);
        assert_eq!(Reading::new(SequenceOrder::Pixels, 0).shape(), [784, 1]);
        assert_eq!(Reading::new(SequenceOrder::Permuted, 0).shape(), [784, 1]);
    }

    #[test]
    fn a_seed_gives_one_permutation_of_every_pixel() {
        let order = pixel_permutation(7);
        assert_eq!(order, pixel_permutation(7), "the same seed, the same order");
        let mut sorted = order.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..784).collect::<Vec<u16>>(), "every pixel once");
        assert_ne!(order, pixel_permutation(8), "another seed, another order");
        let in_place = order.iter().enumerate().filter(|(i, p)| *i == **p as usize);
        assert!(in_place.count() < 10, "a shuffle, not the identity");
        // Pinned: a change here changes what every permuted run reads.
        assert_eq!(&pixel_permutation(0)[..6], &[55, 536, 435, 491, 452, 534]);
    }

    #[test]
    fn values_come_in_reading_order() {
        let pixels: Vec<u8> = (0..784).map(|i| (i % 251) as u8).collect();
        let mut rows = Vec::new();
        Reading::new(SequenceOrder::Rows, 0).extend(&pixels, f32::from, &mut rows);
        let mut by_pixel = Vec::new();
        Reading::new(SequenceOrder::Pixels, 0).extend(&pixels, f32::from, &mut by_pixel);
        assert_eq!(
            rows, by_pixel,
            "row by row either way; only the shape differs"
        );
        let permuted = Reading::new(SequenceOrder::Permuted, 3);
        let mut values = Vec::new();
        permuted.extend(&pixels, f32::from, &mut values);
        let order = permuted.permutation().expect("a permutation");
        for (step, &index) in order.iter().enumerate() {
            assert_eq!(values[step], f32::from(pixels[usize::from(index)]));
        }
    }
}
