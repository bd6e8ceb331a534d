//! The CubeCL LSTM kernel on wgpu against the same maths in Burn tensor operations (the layer with
//! `kernel = false`) on the same device and weights: logits, and the gradients of a cross-entropy loss (summed over the batch,
//! so that gradients keep their size) with respect to every parameter and to the input, within
//! 1e-4, over 1, 2 and 3 layers, one and two directions,
//! batches of 1, 33, 64 and 1000 and hidden sizes 64, 128 and 256.
//!
//! Runs with `cargo test -p training --release --features wgpu --test gpu_kernel`; needs a wgpu
//! adapter (Mesa's lavapipe Vulkan driver is enough) and fails, naming what is missing, without
//! one.
#![cfg(feature = "wgpu")]

#[path = "../../model/tests/support/mod.rs"]
mod support;

use burn::module::Module;
use burn::tensor::{Device, Distribution, Int, Tensor, TensorData};
use model::{Fallback, LstmClassifier, LstmClassifierConfig, LstmPath};
use support::{compare, logits_and_gradients, max_diff, values};
use training::{BackendKind, select_device};

/// The GPU kernel sums in other orders than the tensor operations, and over up to 1000 rows.
const TOLERANCE: f32 = 1e-4;

/// The wgpu device: `select_device` opens it once per process (CubeCL registers a runtime once)
/// and hands the same device back after that.
fn wgpu_device() -> Device {
    let selected = select_device(Some("wgpu")).unwrap_or_else(|error| panic!("{error}"));
    assert_eq!(selected.kind, BackendKind::Wgpu);
    selected.device
}

#[test]
fn selecting_wgpu_twice_gives_the_open_device_again() {
    // `mnist-lstm bench` selects the device, then its epoch run selects it again.
    let first = select_device(Some("wgpu")).unwrap_or_else(|error| panic!("{error}"));
    let second = select_device(Some("wgpu")).unwrap_or_else(|error| panic!("{error}"));
    println!("wgpu adapter: {}", first.description);
    assert_eq!(first.description, second.description);
    assert!(first.device == second.device, "the same device both times");
    let sum = |device: &Device| Tensor::<1>::ones([4], device).sum().into_scalar::<f32>();
    assert_eq!((sum(&first.device), sum(&second.device)), (4.0, 4.0));
}

/// `model` with its LSTM in tensor operations.
fn in_tensor_ops(model: &LstmClassifier) -> LstmClassifier {
    let mut reference = model.clone();
    reference.lstm.kernel = false;
    reference
}

/// One model shape and batch, checked through the kernel against tensor operations.
fn kernel_matches_reference(layers: usize, bidirectional: bool, batch: usize, hidden: usize) {
    let device = wgpu_device().autodiff();
    let config = LstmClassifierConfig::new()
        .with_num_layers(layers)
        .with_bidirectional(bidirectional)
        .with_hidden_size(hidden);
    let model = config.init(&device);
    assert_eq!(
        model.lstm_path(&device),
        LstmPath::Kernel,
        "{config:?} does not take the GPU kernel"
    );
    let images = Tensor::<3>::random([batch, 28, 28], Distribution::Uniform(0.0, 1.0), &device)
        .require_grad();
    let labels: Vec<i64> = (0..batch as i64).map(|i| (i * 7) % 10).collect();
    let targets = Tensor::<1, Int>::from_data(TensorData::new(labels, [batch]), &device);
    let (expected_logits, expected) =
        logits_and_gradients(&model, &images, &targets, batch as f32, |m, x| {
            in_tensor_ops(m).forward(x)
        });
    let (actual_logits, actual) =
        logits_and_gradients(&model, &images, &targets, batch as f32, |m, x| m.forward(x));
    let label = format!("kernel, batch {batch}");
    compare(
        &config,
        &label,
        TOLERANCE,
        &expected_logits,
        &expected,
        &actual_logits,
        &actual,
    );
    // Inference (no autodiff) takes the kernel's own forward pass, which keeps nothing.
    let plain = model.valid();
    let images = images.inner();
    let (diff, scale) = max_diff(
        &values(in_tensor_ops(&plain).forward(images.clone())),
        &values(plain.forward(images)),
    );
    assert!(
        diff <= TOLERANCE,
        "{label}, inference: logits differ by {diff} (largest {scale})"
    );
}

#[test]
fn the_default_model_takes_the_kernel_on_wgpu() {
    let device = wgpu_device();
    let model = LstmClassifierConfig::new().init(&device);
    assert_eq!(model.lstm_path(&device), LstmPath::Kernel);
    assert_eq!(
        model.lstm_path(&device.clone().autodiff()),
        LstmPath::Kernel
    );
    let tensor_ops = LstmClassifierConfig::new().with_kernel(false).init(&device);
    assert_eq!(
        tensor_ops.lstm_path(&device),
        LstmPath::TensorOps(Fallback::Disabled)
    );
}

#[test]
fn a_hidden_state_larger_than_shared_memory_takes_the_tensor_op_path() {
    let device = wgpu_device();
    // 6 values of 4 bytes per unit and batch row: a million units need 24 MB of shared memory,
    // far beyond any GPU's. Asked of the configuration, since such weights would not fit either.
    let config = LstmClassifierConfig::new().with_hidden_size(1 << 20);
    let too_large = LstmPath::TensorOps(Fallback::TooLarge);
    assert_eq!(config.lstm_path(&device), too_large);
    assert_eq!(config.lstm_path(&device.clone().autodiff()), too_large);
    assert_eq!(
        LstmClassifierConfig::new().lstm_path(&device),
        LstmPath::Kernel
    );
}

#[test]
fn one_layer_batch_64_hidden_64() {
    kernel_matches_reference(1, false, 64, 64);
}

#[test]
fn one_layer_bidirectional_batch_1000_hidden_64() {
    kernel_matches_reference(1, true, 1000, 64);
}

#[test]
fn one_layer_batch_1_hidden_256() {
    kernel_matches_reference(1, false, 1, 256);
}

#[test]
fn two_layers_batch_33_hidden_128() {
    kernel_matches_reference(2, false, 33, 128);
}

#[test]
fn two_layers_bidirectional_batch_64_hidden_256() {
    kernel_matches_reference(2, true, 64, 256);
}

#[test]
fn two_layers_bidirectional_batch_1_hidden_128() {
    kernel_matches_reference(2, true, 1, 128);
}

#[test]
fn three_layers_batch_1000_hidden_128() {
    kernel_matches_reference(3, false, 1000, 128);
}

#[test]
fn three_layers_bidirectional_batch_33_hidden_64() {
    kernel_matches_reference(3, true, 33, 64);
}

#[test]
fn three_layers_batch_64_hidden_256() {
    kernel_matches_reference(3, false, 64, 256);
}

/// Hidden sizes 4 does not divide: the kernel's columns then move in vectors of 2 (30) or 1 (7).
#[test]
fn narrow_vectors_two_layers_bidirectional_batch_33_hidden_30_and_7() {
    kernel_matches_reference(2, true, 33, 30);
    kernel_matches_reference(2, true, 33, 7);
}

/// `model::cross_entropy` (one GPU launch forward, one backward) against Burn's
/// `CrossEntropyLoss` on the same wgpu logits: the loss and the logits' gradient.
fn loss_matches_burn(batch: usize) {
    let device = wgpu_device().autodiff();
    let logits =
        Tensor::<2>::random([batch, 10], Distribution::Normal(0.0, 4.0), &device).require_grad();
    let labels: Vec<i64> = (0..batch as i64).map(|i| (i * 3) % 10).collect();
    let targets = Tensor::<1, Int>::from_data(TensorData::new(labels, [batch]), &device);
    let run = |loss: Tensor<1>| {
        let grads = loss.clone().backward();
        let gradient = logits.grad(&grads).expect("the logits have a gradient");
        (values(loss.inner()), values(gradient))
    };
    let burn_loss = burn::nn::loss::CrossEntropyLossConfig::new()
        .init(&device)
        .forward(logits.clone(), targets.clone());
    let (expected_loss, expected_grad) = run(burn_loss);
    let (actual_loss, actual_grad) = run(model::cross_entropy(logits.clone(), targets.clone()));
    let (loss_diff, _) = max_diff(&expected_loss, &actual_loss);
    let (grad_diff, scale) = max_diff(&expected_grad, &actual_grad);
    assert!(
        loss_diff <= 1e-5 && grad_diff <= 1e-6,
        "batch {batch}: loss {actual_loss:?} against Burn's {expected_loss:?}, gradients differ \
         by {grad_diff} (largest {scale})"
    );
    assert!(scale > 0.0, "batch {batch}: the gradient is all zeros");
    // Without autodiff the same single launch gives the same value.
    let plain = values(model::cross_entropy(logits.inner(), targets.inner()));
    assert_eq!(plain, actual_loss, "batch {batch}: inference loss");
}

#[test]
fn the_loss_matches_burns_cross_entropy_for_batches_1_64_and_1000() {
    for batch in [1, 64, 1000] {
        loss_matches_burn(batch);
    }
}

#[test]
fn a_target_that_is_not_a_class_makes_the_loss_nan() {
    let device = wgpu_device();
    let logits = Tensor::<2>::zeros([2, 10], &device);
    let targets = Tensor::<1, Int>::from_data(TensorData::new(vec![3i64, 10], [2]), &device);
    let loss = values(model::cross_entropy(logits, targets));
    assert!(loss[0].is_nan(), "loss {loss:?}");
}
