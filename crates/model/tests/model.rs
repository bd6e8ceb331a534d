//! Output shapes and weight files of the classifier.

use burn::module::Module;
use burn::tensor::{Device, Distribution, Tensor};
use model::{LstmClassifierConfig, ModelError};

fn images(batch: usize, device: &Device) -> Tensor<3> {
    Tensor::random([batch, 28, 28], Distribution::Uniform(0.0, 1.0), device)
}

#[test]
fn one_layer_gives_one_logit_per_class() {
    let device = Device::default();
    let model = LstmClassifierConfig::new().init(&device);
    assert_eq!(model.lstm.directions.len(), 1);
    assert_eq!(model.forward(images(3, &device)).dims(), [3, 10]);
}

#[test]
fn stacked_layers_and_other_sizes() {
    let device = Device::default();
    let config = LstmClassifierConfig::new()
        .with_num_layers(2)
        .with_hidden_size(16)
        .with_num_classes(5)
        .with_dropout(0.2);
    let model = config.init(&device);
    assert_eq!(model.lstm.directions.len(), 2);
    assert_eq!(model.forward(images(4, &device)).dims(), [4, 5]);
    // Parameters: per layer 4 gates x (input + hidden weights, two biases), plus the head.
    let layer = |d_in: usize| 4 * (d_in * 16 + 16 * 16 + 2 * 16);
    assert_eq!(model.num_params(), layer(28) + layer(16) + 16 * 5 + 5);
}

#[test]
fn bidirectional_layers_read_both_ways() {
    let device = Device::default();
    let config = LstmClassifierConfig::new()
        .with_bidirectional(true)
        .with_num_layers(2)
        .with_hidden_size(8);
    let model = config.init(&device);
    assert_eq!(model.lstm.directions.len(), 4);
    assert_eq!(model.head.weight.dims(), [16, 10]);
    assert_eq!(model.forward(images(2, &device)).dims(), [2, 10]);
}

#[test]
fn bidirectional_output_is_both_directions_at_the_last_step() {
    // As PyTorch's `out[:, -1, :]` of the layer's every-step output: the forward direction after
    // all 28 rows, and the backward direction after its first step, which has read only the
    // last row.
    let device = Device::default();
    for kernel in [true, false] {
        let model = LstmClassifierConfig::new()
            .with_bidirectional(true)
            .with_num_layers(2)
            .with_hidden_size(8)
            .with_kernel(kernel)
            .init(&device);
        let x = images(3, &device);
        let (every_step, _) = model.lstm.forward(x.clone(), None, None);
        let last = every_step.narrow(1, 27, 1).squeeze_dim::<2>(1);
        let expected: Vec<f32> = model.head.forward(last).into_data().iter::<f32>().collect();
        let actual: Vec<f32> = model.forward(x).into_data().iter::<f32>().collect();
        assert_eq!(expected.len(), actual.len());
        for (e, a) in expected.iter().zip(&actual) {
            assert!(
                (e - a).abs() < 1e-5,
                "kernel {kernel}: {expected:?} vs {actual:?}"
            );
        }
    }
}

#[test]
fn probabilities_sum_to_one() {
    let device = Device::default();
    let model = LstmClassifierConfig::new().init(&device);
    let sums: Vec<f32> = model
        .probabilities(images(3, &device))
        .sum_dim(1)
        .into_data()
        .iter::<f32>()
        .collect();
    assert!(sums.iter().all(|s| (s - 1.0).abs() < 1e-5), "{sums:?}");
}

#[test]
fn saved_weights_load_back_identically() {
    let device = Device::default();
    let dir = tempfile::tempdir().unwrap();
    let config = LstmClassifierConfig::new().with_hidden_size(12);
    let model = config.init(&device);
    let input = images(5, &device);
    let before: Vec<f32> = model
        .forward(input.clone())
        .into_data()
        .iter::<f32>()
        .collect();
    model.save(dir.path().join("weights")).unwrap();
    assert!(dir.path().join("weights.bpk").is_file());

    let loaded = config
        .load(dir.path().join("weights.bpk"), &device)
        .unwrap();
    let after: Vec<f32> = loaded.forward(input).into_data().iter::<f32>().collect();
    assert_eq!(before, after);

    // Weights of another shape are refused with the path in the message.
    let other = LstmClassifierConfig::new().with_hidden_size(13);
    let error = other
        .load(dir.path().join("weights.bpk"), &device)
        .unwrap_err();
    assert!(matches!(error, ModelError::Load { .. }));
    assert!(error.to_string().contains("weights.bpk"), "{error}");
    let missing = config
        .load(dir.path().join("absent.bpk"), &device)
        .unwrap_err();
    assert!(missing.to_string().contains("absent.bpk"), "{missing}");
}

#[test]
fn invalid_configurations_are_errors() {
    assert!(LstmClassifierConfig::new().validate().is_ok());
    assert!(
        LstmClassifierConfig::new()
            .with_num_layers(0)
            .validate()
            .is_err()
    );
    assert!(
        LstmClassifierConfig::new()
            .with_hidden_size(0)
            .validate()
            .is_err()
    );
    let error = LstmClassifierConfig::new()
        .with_dropout(1.5)
        .validate()
        .unwrap_err();
    assert!(error.to_string().contains("dropout"), "{error}");
}

#[test]
fn forget_bias_shifts_only_the_forget_gates_input_bias() {
    let device = Device::default();
    let bound = 1.0 / 64f32.sqrt();
    let values = |tensor: Tensor<1>| tensor.into_data().try_to_vec::<f32>().unwrap();
    let within = |values: &[f32], centre: f32| {
        values
            .iter()
            .all(|value| (value - centre).abs() <= bound + 1e-6)
    };
    let model = LstmClassifierConfig::new()
        .with_num_layers(2)
        .with_bidirectional(true)
        .with_forget_bias(1.0)
        .init(&device);
    for direction in &model.lstm.directions {
        // Gates i, f, g, o of 64 units each, as PyTorch stacks them.
        let bias_ih = values(direction.bias_ih.val());
        let bias_hh = values(direction.bias_hh.val());
        for (gate, centre) in [(0, 0.0), (1, 1.0), (2, 0.0), (3, 0.0)] {
            let block = &bias_ih[gate * 64..(gate + 1) * 64];
            assert!(within(block, centre), "gate {gate}: {block:?}");
        }
        assert!(within(&bias_hh, 0.0), "{bias_hh:?}");
    }
    let default = LstmClassifierConfig::new().init(&device);
    assert!(within(
        &values(default.lstm.directions[0].bias_ih.val()),
        0.0
    ));
    let error = LstmClassifierConfig::new()
        .with_forget_bias(f64::NAN)
        .validate()
        .unwrap_err();
    assert!(error.to_string().contains("forget_bias"), "{error}");
}

#[test]
fn a_model_json_without_the_newer_fields_loads_with_their_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.json");
    std::fs::write(
        &path,
        r#"{"input_size": 28, "hidden_size": 64, "num_layers": 1, "bidirectional": false,
            "dropout": 0.0, "num_classes": 10, "fused": false}"#,
    )
    .unwrap();
    let config = LstmClassifierConfig::from_file(&path).unwrap();
    assert_eq!(config, LstmClassifierConfig::new());
    assert_eq!(config.forget_bias, 0.0);
    assert!(config.kernel);
}

#[test]
fn the_shifted_forget_bias_is_trained() {
    let device = Device::default().autodiff();
    for kernel in [false, true] {
        let model = LstmClassifierConfig::new()
            .with_forget_bias(1.0)
            .with_kernel(kernel)
            .init(&device);
        let grads = model.forward(images(4, &device)).sum().backward();
        let bias = model.lstm.directions[0].bias_ih.val();
        assert!(bias.is_require_grad());
        assert!(bias.grad(&grads).is_some(), "kernel: {kernel}");
    }
}
