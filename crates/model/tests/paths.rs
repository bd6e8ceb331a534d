//! The classifier's logits and every gradient of a cross-entropy loss, through the LSTM kernel
//! (where this build has one for the device) and through the same maths in tensor operations,
//! on the same weights: within 1e-5, for 1-3 layers and one or two directions.

mod support;

use burn::tensor::{Device, Distribution, Int, Tensor, TensorData};
use model::{LstmClassifier, LstmClassifierConfig};
use support::{compare, logits_and_gradients};

const TOLERANCE: f32 = 1e-5;
/// Three slices of the CPU kernel's training batch (32 rows at most each).
const BATCH: usize = 70;

fn in_tensor_ops(model: &LstmClassifier) -> LstmClassifier {
    let mut reference = model.clone();
    reference.lstm.kernel = false;
    reference
}

fn kernel_matches_tensor_ops(config: LstmClassifierConfig) {
    let device = Device::default().autodiff();
    let model = config.init(&device);
    let images = Tensor::<3>::random([BATCH, 28, 28], Distribution::Uniform(0.0, 1.0), &device)
        .require_grad();
    let classes = config.num_classes as i64;
    let labels: Vec<i64> = (0..BATCH as i64).map(|i| (i * 7) % classes).collect();
    let targets = Tensor::<1, Int>::from_data(TensorData::new(labels, [BATCH]), &device);
    let (expected_logits, expected) =
        logits_and_gradients(&model, &images, &targets, 1.0, |m, x| {
            in_tensor_ops(m).forward(x)
        });
    let (actual_logits, actual) =
        logits_and_gradients(&model, &images, &targets, 1.0, |m, x| m.forward(x));
    let path = format!("{}", model.lstm_path(&device));
    compare(
        &config,
        &path,
        TOLERANCE,
        &expected_logits,
        &expected,
        &actual_logits,
        &actual,
    );
}

#[test]
fn one_layer() {
    kernel_matches_tensor_ops(LstmClassifierConfig::new());
}

#[test]
fn two_bidirectional_layers() {
    kernel_matches_tensor_ops(
        LstmClassifierConfig::new()
            .with_num_layers(2)
            .with_bidirectional(true),
    );
}

#[test]
fn three_layers_of_other_sizes() {
    kernel_matches_tensor_ops(
        LstmClassifierConfig::new()
            .with_num_layers(3)
            .with_hidden_size(20)
            .with_num_classes(7)
            .with_forget_bias(1.0),
    );
}
