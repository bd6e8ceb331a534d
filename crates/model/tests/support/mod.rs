//! What the equivalence tests of the LSTM's paths share: every parameter of a classifier, and
//! its logits and gradients through one path. Included by the training crate's GPU test
//! (`crates/training/tests/gpu_kernel.rs`) with `#[path]`.
#![allow(dead_code)]

use burn::nn::Linear;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::tensor::{Gradients, Int, Tensor};
use model::fused_rnn::PytorchParameter;
use model::{LstmClassifier, LstmClassifierConfig};

pub fn values<const D: usize>(tensor: Tensor<D>) -> Vec<f32> {
    tensor.into_data().iter::<f32>().collect()
}

/// The largest absolute difference between two tensors of the same shape, and the largest
/// absolute value of `expected`.
pub fn max_diff(expected: &[f32], actual: &[f32]) -> (f32, f32) {
    assert_eq!(expected.len(), actual.len());
    let diff = expected
        .iter()
        .zip(actual)
        .map(|(e, a)| (e - a).abs())
        .fold(0.0, f32::max);
    let scale = expected.iter().map(|e| e.abs()).fold(0.0, f32::max);
    (diff, scale)
}

/// A parameter of the classifier: a weight matrix or a bias vector.
pub enum Parameter {
    Weight(Tensor<2>),
    Bias(Tensor<1>),
}

impl Parameter {
    /// The parameter's gradient in `grads`, flattened.
    pub fn gradient(&self, grads: &Gradients) -> Option<Vec<f32>> {
        match self {
            Parameter::Weight(weight) => weight.grad(grads).map(values),
            Parameter::Bias(bias) => bias.grad(grads).map(values),
        }
    }
}

/// Every parameter of the classifier, named (the LSTM's by their PyTorch keys).
pub fn parameters(model: &LstmClassifier) -> Vec<(String, Parameter)> {
    let mut out = Vec::new();
    for parameter in model.lstm.pytorch_parameters() {
        let name = format!("lstm.{}", parameter.key());
        out.push(match parameter {
            PytorchParameter::Matrix(_, param) => (name, Parameter::Weight(param.val())),
            PytorchParameter::Vector(_, param) => (name, Parameter::Bias(param.val())),
        });
    }
    let head: &Linear = &model.head;
    out.push(("head.weight".into(), Parameter::Weight(head.weight.val())));
    if let Some(bias) = &head.bias {
        out.push(("head.bias".into(), Parameter::Bias(bias.val())));
    }
    out
}

/// Logits, and the gradients of the mean cross-entropy times `loss_scale` with respect to the
/// input and to every parameter, through one of the paths. A `loss_scale` of the batch size sums
/// the items' losses, so that gradients keep their size whatever the batch.
pub fn logits_and_gradients(
    model: &LstmClassifier,
    images: &Tensor<3>,
    targets: &Tensor<1, Int>,
    loss_scale: f32,
    forward: impl Fn(&LstmClassifier, Tensor<3>) -> Tensor<2>,
) -> (Vec<f32>, Vec<(String, Vec<f32>)>) {
    let device = images.device();
    let logits = forward(model, images.clone());
    let loss = CrossEntropyLossConfig::new()
        .init(&device)
        .forward(logits.clone(), targets.clone())
        .mul_scalar(loss_scale);
    let grads = loss.backward();
    let mut gradients = vec![(
        "input".to_string(),
        values(images.grad(&grads).expect("the input has a gradient")),
    )];
    for (name, parameter) in parameters(model) {
        let gradient = parameter
            .gradient(&grads)
            .unwrap_or_else(|| panic!("{name} has no gradient"));
        gradients.push((name, gradient));
    }
    (values(logits), gradients)
}

/// Asserts that `actual` logits and gradients are those `expected` within `tolerance`, and that
/// every gradient the model can have is non-zero (else any path would compare equal).
pub fn compare(
    config: &LstmClassifierConfig,
    path: &str,
    tolerance: f32,
    expected_logits: &[f32],
    expected: &[(String, Vec<f32>)],
    actual_logits: &[f32],
    actual: &[(String, Vec<f32>)],
) {
    let (diff, scale) = max_diff(expected_logits, actual_logits);
    assert!(
        diff <= tolerance,
        "{path}: logits differ by {diff} (largest {scale})"
    );
    assert!(scale > 1e-2, "logits too small to compare: {scale}");
    assert_eq!(expected.len(), actual.len());
    let largest = expected
        .iter()
        .zip(actual)
        .map(|((_, e), (_, a))| max_diff(e, a).0)
        .fold(0.0, f32::max);
    eprintln!("{path}, {config:?}: logits differ by {diff} at most, gradients by {largest}");
    for ((name, expected), (_, actual)) in expected.iter().zip(actual) {
        let (diff, scale) = max_diff(expected, actual);
        assert!(
            diff <= tolerance,
            "{path}: gradient of {name} differs by {diff} (largest {scale})"
        );
        // A gradient that is zero everywhere would compare equal for any path. Only the top
        // right-to-left direction has some: its output at the last step is its first step, whose
        // hidden and cell states are zero, so its hidden weights do not matter (nor its forget
        // gate, a quarter of its biases' values).
        let top_reverse = format!("lstm.weight_hh_l{}_reverse", config.num_layers - 1);
        if name == &top_reverse {
            assert_eq!(scale, 0.0, "{path}: gradient of {name}");
        } else {
            assert!(scale > 1e-6, "{path}: gradient of {name} is zero: {scale}");
        }
    }
}
