//! The classifier's training loss.

use burn::nn::loss::CrossEntropyLossConfig;
use burn::tensor::{Int, Tensor};

/// The mean cross-entropy of `logits` `[batch, classes]` against the classes `targets` `[batch]`:
/// the mean of `-log softmax(row)[target]`, as Burn's `CrossEntropyLoss` (which computes it on
/// every backend but CubeCL's). On a CubeCL device (wgpu) it is one kernel launch, and its
/// gradient another, instead of about two dozen, with the same value within float rounding;
/// there a target that is not a class makes the loss NaN.
pub fn cross_entropy(logits: Tensor<2>, targets: Tensor<1, Int>) -> Tensor<1> {
    #[cfg(feature = "cube")]
    if crate::kernel::is_cube(&logits.device()) {
        return crate::kernel::cube_cross_entropy(logits, targets);
    }
    CrossEntropyLossConfig::new()
        .init(&logits.device())
        .forward(logits, targets)
}
