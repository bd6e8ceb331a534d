//! The fused LSTM forward (`LstmClassifier::forward`) against Burn's own `nn::Lstm`
//! (`LstmClassifier::forward_reference`) on the same weights: logits, and the gradients of a
//! cross-entropy loss with respect to every parameter and to the input, within 1e-5.

mod support;

use burn::module::{Module, Param};
use burn::tensor::{Device, Distribution, Int, Tensor, TensorData};
use model::{LstmClassifier, LstmClassifierConfig};
use support::{compare, logits_and_gradients, max_diff, values};

const TOLERANCE: f32 = 1e-5;
const BATCH: usize = 16;

/// The ways the classifier computes its logits.
#[derive(Clone, Copy, Debug)]
enum Path {
    /// Burn's `nn::Lstm`.
    Reference,
    /// `forward_fused`: on flex (these tests' device), the whole-sequence kernel with its own
    /// backward pass.
    Fused,
    /// `forward_fused_tensor_ops`: the fused gates in Burn tensor operations (the GPU path).
    FusedTensorOps,
}

const FUSED_PATHS: [Path; 2] = [Path::Fused, Path::FusedTensorOps];

fn logits(model: &LstmClassifier, images: Tensor<3>, path: Path) -> Tensor<2> {
    match path {
        Path::Reference => model.forward_reference(images),
        Path::Fused => model.forward_fused(images),
        Path::FusedTensorOps => model.forward_fused_tensor_ops(images),
    }
}

fn fused_matches_reference(config: LstmClassifierConfig) {
    let device = Device::default().autodiff();
    let model = config.init(&device);
    let images = Tensor::<3>::random([BATCH, 28, 28], Distribution::Uniform(0.0, 1.0), &device)
        .require_grad();
    let classes = config.num_classes as i64;
    let labels: Vec<i64> = (0..BATCH as i64).map(|i| (i * 7) % classes).collect();
    let targets = Tensor::<1, Int>::from_data(TensorData::new(labels, [BATCH]), &device);

    let (expected_logits, expected) =
        logits_and_gradients(&model, &images, &targets, 1.0, |m, x| {
            logits(m, x, Path::Reference)
        });
    for path in FUSED_PATHS {
        let (actual_logits, actual) =
            logits_and_gradients(&model, &images, &targets, 1.0, |m, x| logits(m, x, path));
        compare(
            &config,
            &format!("{path:?}"),
            TOLERANCE,
            &expected_logits,
            &expected,
            &actual_logits,
            &actual,
        );
    }
}

#[test]
fn one_layer_matches_burns_lstm() {
    fused_matches_reference(LstmClassifierConfig::new());
}

#[test]
fn two_layers_match_burns_lstm() {
    fused_matches_reference(LstmClassifierConfig::new().with_num_layers(2));
}

#[test]
fn bidirectional_matches_burns_lstm() {
    fused_matches_reference(LstmClassifierConfig::new().with_bidirectional(true));
}

#[test]
fn two_bidirectional_layers_match_burns_lstm() {
    fused_matches_reference(
        LstmClassifierConfig::new()
            .with_num_layers(2)
            .with_bidirectional(true),
    );
}

#[test]
fn three_layers_of_other_sizes_match_burns_lstm() {
    fused_matches_reference(
        LstmClassifierConfig::new()
            .with_num_layers(3)
            .with_hidden_size(20)
            .with_num_classes(7),
    );
}

#[test]
fn larger_weights_match_burns_lstm() {
    // Weights four times the initial scale, so that gates saturate as in a trained model.
    let device = Device::default().autodiff();
    let config = LstmClassifierConfig::new()
        .with_num_layers(2)
        .with_bidirectional(true);
    let mut model = config.init(&device);
    let scale = |param: &mut Param<Tensor<2>>| {
        *param = Param::from_tensor(Tensor::from_inner(param.val().inner().mul_scalar(4.0)));
    };
    for lstm in model
        .forward_layers
        .iter_mut()
        .chain(model.backward_layers.iter_mut())
    {
        for gate in [
            &mut lstm.input_gate,
            &mut lstm.output_gate,
            &mut lstm.cell_gate,
        ] {
            scale(&mut gate.input_transform.weight);
            scale(&mut gate.hidden_transform.weight);
        }
        if let Some(gate) = lstm.forget_gate.as_mut() {
            scale(&mut gate.input_transform.weight);
            scale(&mut gate.hidden_transform.weight);
        }
    }
    let images = Tensor::<3>::random([BATCH, 28, 28], Distribution::Uniform(0.0, 1.0), &device)
        .require_grad();
    let labels: Vec<i64> = (0..BATCH as i64).map(|i| i % 10).collect();
    let targets = Tensor::<1, Int>::from_data(TensorData::new(labels, [BATCH]), &device);
    let (expected_logits, expected) =
        logits_and_gradients(&model, &images, &targets, 1.0, |m, x| {
            logits(m, x, Path::Reference)
        });
    for path in FUSED_PATHS {
        let (actual_logits, actual) =
            logits_and_gradients(&model, &images, &targets, 1.0, |m, x| logits(m, x, path));
        let (diff, scale) = max_diff(&expected_logits, &actual_logits);
        assert!(
            diff <= TOLERANCE,
            "{path:?}: logits differ by {diff} (largest {scale})"
        );
        for ((name, expected), (_, actual)) in expected.iter().zip(&actual) {
            let (diff, scale) = max_diff(expected, actual);
            assert!(
                diff <= TOLERANCE,
                "{path:?}: gradient of {name} differs by {diff} (largest {scale})"
            );
        }
    }
}

#[test]
fn inference_without_autodiff_matches_and_dropout_is_off() {
    // Dropout acts only when training (an autodiff device), so both paths agree here too.
    let device = Device::default();
    let model = LstmClassifierConfig::new()
        .with_num_layers(2)
        .with_bidirectional(true)
        .with_dropout(0.3)
        .init(&device);
    for (batch, steps) in [(1, 28), (5, 1), (3, 7)] {
        let images =
            Tensor::<3>::random([batch, steps, 28], Distribution::Uniform(0.0, 1.0), &device);
        let expected = values(model.forward_reference(images.clone()));
        for path in FUSED_PATHS {
            let actual = values(logits(&model, images.clone(), path));
            let (diff, scale) = max_diff(&expected, &actual);
            assert!(
                diff <= TOLERANCE,
                "{path:?}, batch {batch}, {steps} steps: logits differ by {diff} (largest {scale})"
            );
        }
    }
}

#[test]
fn dropout_between_layers_when_training() {
    // With dropout the two paths draw different masks; the fused one must still drop: its
    // logits differ from the dropout-free ones, and it trains (finite gradients).
    let device = Device::default().autodiff();
    let model = LstmClassifierConfig::new()
        .with_num_layers(2)
        .with_dropout(0.5)
        .init(&device);
    let images = Tensor::<3>::random([4, 28, 28], Distribution::Uniform(0.0, 1.0), &device);
    for path in FUSED_PATHS {
        let with_dropout = logits(&model, images.clone(), path);
        let without = logits(&model.valid(), images.clone().inner(), path);
        let (diff, _) = max_diff(&values(without), &values(with_dropout.clone()));
        assert!(diff > 1e-4, "{path:?}: dropout changed nothing");
        let grads = with_dropout.sum().backward();
        let gradient = model.forward_layers[0]
            .input_gate
            .input_transform
            .weight
            .grad(&grads)
            .expect("a gradient");
        assert!(values(gradient).iter().all(|g| g.is_finite()), "{path:?}");
    }
}

#[test]
fn forward_takes_the_path_the_configuration_names() {
    let device = Device::default();
    let images = Tensor::<3>::random([3, 28, 28], Distribution::Uniform(0.0, 1.0), &device);
    for fused in [false, true] {
        let model = LstmClassifierConfig::new().with_fused(fused).init(&device);
        assert_eq!(model.fused, fused);
        let expected = if fused {
            model.forward_fused(images.clone())
        } else {
            model.forward_reference(images.clone())
        };
        // Bit for bit: the same path, not merely the same maths.
        assert_eq!(
            values(model.forward(images.clone())),
            values(expected),
            "fused = {fused}"
        );
        // The flag survives what training does to a module.
        assert_eq!(model.valid().fused, fused);
    }
}
