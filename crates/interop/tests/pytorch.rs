//! Weights to and from PyTorch: our export read back gives the same logits bit for bit; a
//! state_dict trained by real PyTorch (`tests/fixtures/pytorch-tutorial.*`, made by
//! `bench/pytorch/make_import_fixture.py`) gives PyTorch's logits and test accuracy; files that
//! do not fit are refused, each with one clear message.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::tensor::{Device, Tensor, TensorData};
use interop::{NamedTensor, export, import, read_state_dict, to_pytorch, write_safetensors};
use model::{LstmClassifier, LstmClassifierConfig};
use serde_json::Value;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn fixture_json() -> Value {
    serde_json::from_str(&std::fs::read_to_string(fixture("pytorch-tutorial.json")).unwrap())
        .unwrap()
}

/// The fixture's state_dict, trained by PyTorch, imported as the default model.
fn pytorch_seed(device: &Device) -> LstmClassifier {
    import(
        &fixture("pytorch-tutorial.pt"),
        &LstmClassifierConfig::new(),
        device,
    )
    .unwrap()
    .valid()
}

/// Images `[n, 28, 28]` scaled as training scales them (pixels / 255).
fn images(pixels: &[Vec<u8>], device: &Device) -> Tensor<3> {
    let values: Vec<f32> = pixels
        .iter()
        .flatten()
        .map(|&p| f32::from(p) / 255.0)
        .collect();
    Tensor::from_data(TensorData::new(values, [pixels.len(), 28, 28]), device)
}

fn logits(model: &LstmClassifier, input: Tensor<3>) -> Vec<f32> {
    model.forward(input).into_data().iter::<f32>().collect()
}

/// Deterministic pseudo-random digits.
fn noise_digits(count: usize) -> Vec<Vec<u8>> {
    let mut state = 0x2545_f491_u32;
    (0..count)
        .map(|_| {
            (0..784)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 17;
                    state ^= state << 5;
                    (state >> 24) as u8
                })
                .collect()
        })
        .collect()
}

fn configs() -> Vec<LstmClassifierConfig> {
    vec![
        LstmClassifierConfig::new(),
        LstmClassifierConfig::new()
            .with_num_layers(2)
            .with_hidden_size(32),
        LstmClassifierConfig::new()
            .with_num_layers(2)
            .with_bidirectional(true)
            .with_hidden_size(16)
            .with_forget_bias(1.0),
    ]
}

#[test]
fn an_export_imported_back_gives_the_same_logits_bit_for_bit() {
    let device = Device::flex();
    let dir = tempfile::tempdir().unwrap();
    let input = images(&noise_digits(7), &device);
    for (index, config) in configs().into_iter().enumerate() {
        let model = config.init(&device).valid();
        let path = dir.path().join(format!("model-{index}.safetensors"));
        export(&model, &[("config", "test".into())], &path).unwrap();
        let back = import(&path, &config, &device).unwrap().valid();
        assert_eq!(
            logits(&model, input.clone()),
            logits(&back, input.clone()),
            "{config:?}"
        );
        assert_eq!(to_pytorch(&model), to_pytorch(&back));
    }
}

#[test]
fn pytorchs_trained_state_dict_gives_pytorchs_logits() {
    let device = Device::flex();
    let expected = fixture_json();
    let model = pytorch_seed(&device);
    let first: Vec<Vec<u8>> = expected["first_images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|image| {
            image
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p.as_u64().unwrap() as u8)
                .collect()
        })
        .collect();
    let ours = logits(&model, images(&first, &device));
    let theirs: Vec<f64> = expected["first_logits"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|row| row.as_array().unwrap().iter().map(|v| v.as_f64().unwrap()))
        .collect();
    assert_eq!(ours.len(), theirs.len());
    let worst = ours
        .iter()
        .zip(&theirs)
        .map(|(&a, &b)| (f64::from(a) - b).abs())
        .fold(0.0, f64::max);
    println!("largest logit difference from PyTorch: {worst:e}");
    assert!(worst <= 1e-5, "logits differ from PyTorch's by {worst:e}");
}

#[test]
#[cfg_attr(not(real_mnist), ignore = "needs $MNIST_DIR with the four MNIST files")]
fn pytorchs_trained_state_dict_gives_pytorchs_test_accuracy_exactly() {
    let device = Device::flex();
    let expected = fixture_json();
    let model = pytorch_seed(&device);
    let dir = PathBuf::from(std::env::var("MNIST_DIR").unwrap());
    let files = data::MnistFiles::in_dir(&dir).unwrap();
    let test = data::MnistSplits::load(&files, &data::SplitOptions::default())
        .unwrap()
        .test;
    let names: Vec<&str> = (0..10).map(|_| "").collect();
    let report = inference::evaluate(
        &model,
        &test,
        &data::MnistBatcher::new(),
        &device,
        1000,
        &names,
    );
    assert_eq!(
        report.count() as u64,
        expected["test_images"].as_u64().unwrap()
    );
    assert_eq!(
        report.correct() as u64,
        expected["test_correct"].as_u64().unwrap(),
        "PyTorch classified {} of the test images right",
        expected["test_correct"]
    );
}

fn import_error(path: &Path, config: &LstmClassifierConfig) -> String {
    import(path, config, &Device::flex())
        .unwrap_err()
        .to_string()
}

#[test]
fn files_that_do_not_fit_are_refused_naming_the_key_and_what_was_expected() {
    let default = LstmClassifierConfig::new();
    let module = import_error(&fixture("pytorch-tutorial-module.pt"), &default);
    assert!(module.contains("whole pickled nn.Module"), "{module}");
    assert!(module.contains("torch.save(model.state_dict()"), "{module}");

    let narrow = import_error(
        &fixture("pytorch-tutorial.pt"),
        &default.clone().with_hidden_size(32),
    );
    assert!(
        narrow.contains("rnn.weight_ih_l0 has shape [256, 28], expected [128, 28]"),
        "{narrow}"
    );
    let deeper = import_error(
        &fixture("pytorch-tutorial.pt"),
        &default.clone().with_num_layers(2),
    );
    assert!(
        deeper.contains("missing key rnn.weight_ih_l1 (expected shape [256, 64])"),
        "{deeper}"
    );

    let dir = tempfile::tempdir().unwrap();
    let mut tensors: Vec<NamedTensor> = read_state_dict(&fixture("pytorch-tutorial.pt"))
        .unwrap()
        .into_values()
        .collect();
    tensors.push(NamedTensor {
        name: "rnn.weight_ih_l9".into(),
        shape: vec![1],
        values: vec![0.0],
    });
    let extra = dir.path().join("extra.safetensors");
    write_safetensors(&tensors, &[], &extra).unwrap();
    let error = import_error(&extra, &default);
    assert!(error.contains("unexpected key rnn.weight_ih_l9"), "{error}");

    let garbage = dir.path().join("garbage.pt");
    std::fs::write(&garbage, b"not a checkpoint at all").unwrap();
    let error = import_error(&garbage, &default);
    assert!(error.contains("not a PyTorch state_dict file"), "{error}");
}

#[test]
fn the_tutorial_state_dict_has_its_keys() {
    let tensors: HashMap<String, NamedTensor> =
        read_state_dict(&fixture("pytorch-tutorial.pt")).unwrap();
    let mut keys: Vec<&String> = tensors.keys().collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "out.bias",
            "out.weight",
            "rnn.bias_hh_l0",
            "rnn.bias_ih_l0",
            "rnn.weight_hh_l0",
            "rnn.weight_ih_l0"
        ]
    );
}
