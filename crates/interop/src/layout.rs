//! Our classifier's parameters in PyTorch's layout and back: the recurrent layer's (`nn.LSTM`,
//! `nn.GRU` or `nn.RNN`, by the model's `cell`) are already PyTorch's
//! (`fused_rnn::Lstm::pytorch_parameters`) and take the tutorial module's prefix `rnn.`; the
//! head's `Linear` weight is transposed (Burn stores `[in, out]`, PyTorch `[out, in]`).

use std::collections::HashMap;

use burn::module::Param;
use burn::nn::Linear;
use burn::tensor::{Device, Tensor, TensorData};
use model::fused_rnn::PytorchParameter;
use model::{LstmClassifier, LstmClassifierConfig};

/// A tensor by its PyTorch name, as `f32` values in row-major order.
#[derive(Debug, Clone, PartialEq)]
pub struct NamedTensor {
    /// `rnn.weight_ih_l0`, `out.bias`, ...
    pub name: String,
    /// PyTorch's shape.
    pub shape: Vec<usize>,
    /// The values, row-major.
    pub values: Vec<f32>,
}

/// Name prefix of the recurrent layer in the tutorial's module.
const RNN: &str = "rnn";
/// Name prefix of the linear head in the tutorial's module.
const OUT: &str = "out";

/// PyTorch's suffix for a direction.
fn suffix(reverse: bool) -> &'static str {
    if reverse { "_reverse" } else { "" }
}

/// Every key of the tutorial module's `state_dict` for `config`, with its shape, in PyTorch's
/// order.
pub fn expected_shapes(config: &LstmClassifierConfig) -> Vec<(String, Vec<usize>)> {
    let hidden = config.hidden_size;
    let directions = if config.bidirectional { 2 } else { 1 };
    // Gates stacked along PyTorch's first axis: 4 (LSTM), 3 (GRU) or 1 (RNN).
    let gates = config.cell.gates();
    let mut shapes = Vec::new();
    for layer in 0..config.num_layers {
        let input = if layer == 0 {
            config.input_size
        } else {
            hidden * directions
        };
        for reverse in [false, true].into_iter().take(directions) {
            let end = format!("l{layer}{}", suffix(reverse));
            shapes.push((
                format!("{RNN}.weight_ih_{end}"),
                vec![gates * hidden, input],
            ));
            shapes.push((
                format!("{RNN}.weight_hh_{end}"),
                vec![gates * hidden, hidden],
            ));
            shapes.push((format!("{RNN}.bias_ih_{end}"), vec![gates * hidden]));
            shapes.push((format!("{RNN}.bias_hh_{end}"), vec![gates * hidden]));
        }
    }
    shapes.push((
        format!("{OUT}.weight"),
        vec![config.num_classes, hidden * directions],
    ));
    shapes.push((format!("{OUT}.bias"), vec![config.num_classes]));
    shapes
}

/// `[rows, cols]` values transposed to `[cols, rows]`.
fn transpose(values: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0.0; values.len()];
    for r in 0..rows {
        for c in 0..cols {
            out[c * rows + r] = values[r * cols + c];
        }
    }
    out
}

fn values<const D: usize>(tensor: Tensor<D>) -> Vec<f32> {
    tensor.into_data().iter::<f32>().collect()
}

/// A Burn `Linear`'s weight as PyTorch's `[out, in]` values, and its bias (zeros without one).
fn linear_in_pytorch_layout(linear: &Linear) -> (Vec<f32>, Vec<f32>) {
    let [input, output] = linear.weight.dims();
    let weight = transpose(&values(linear.weight.val()), input, output);
    let bias = linear
        .bias
        .as_ref()
        .map_or_else(|| vec![0.0; output], |bias| values(bias.val()));
    (weight, bias)
}

/// The weights of `classifier` under the tutorial module's names, shapes and gate order.
pub fn to_pytorch(classifier: &LstmClassifier) -> Vec<NamedTensor> {
    let mut tensors: Vec<NamedTensor> = classifier
        .lstm
        .pytorch_parameters()
        .into_iter()
        .map(|parameter| {
            let (shape, values) = match &parameter {
                PytorchParameter::Matrix(_, param) => (param.dims().to_vec(), values(param.val())),
                PytorchParameter::Vector(_, param) => (param.dims().to_vec(), values(param.val())),
            };
            NamedTensor {
                name: format!("{RNN}.{}", parameter.key()),
                shape,
                values,
            }
        })
        .collect();
    let [features, classes] = classifier.head.weight.dims();
    let (weight, bias) = linear_in_pytorch_layout(&classifier.head);
    tensors.push(NamedTensor {
        name: format!("{OUT}.weight"),
        shape: vec![classes, features],
        values: weight,
    });
    tensors.push(NamedTensor {
        name: format!("{OUT}.bias"),
        shape: vec![classes],
        values: bias,
    });
    tensors
}

/// Checks that `tensors` holds exactly the keys of [`expected_shapes`], each with its shape; the
/// message names the first key that does not, what was expected and what is there.
fn check_keys(
    tensors: &HashMap<String, NamedTensor>,
    config: &LstmClassifierConfig,
) -> Result<(), String> {
    let expected = expected_shapes(config);
    let described = || {
        format!(
            "(the model configured: cell {}, hidden_size {}, num_layers {}, bidirectional {}, \
             input_size {}, num_classes {})",
            config.cell,
            config.hidden_size,
            config.num_layers,
            config.bidirectional,
            config.input_size,
            config.num_classes
        )
    };
    for (name, shape) in &expected {
        match tensors.get(name) {
            None => {
                return Err(format!(
                    "missing key {name} (expected shape {shape:?}) {}; the file has: {}",
                    described(),
                    sorted_keys(tensors)
                ));
            }
            Some(tensor) if &tensor.shape != shape => {
                return Err(format!(
                    "{name} has shape {:?}, expected {shape:?} {}",
                    tensor.shape,
                    described()
                ));
            }
            Some(_) => {}
        }
    }
    let mut extra: Vec<&String> = tensors
        .keys()
        .filter(|key| !expected.iter().any(|(name, _)| name == *key))
        .collect();
    extra.sort();
    if let Some(first) = extra.first() {
        return Err(format!(
            "unexpected key {first}{} {}: the file is not a state_dict of this model ({} \
             named `rnn`, nn.Linear named `out`)",
            if extra.len() > 1 {
                format!(" (and {} more)", extra.len() - 1)
            } else {
                String::new()
            },
            described(),
            config.cell.pytorch_module()
        ));
    }
    Ok(())
}

fn sorted_keys(tensors: &HashMap<String, NamedTensor>) -> String {
    let mut keys: Vec<&str> = tensors.keys().map(String::as_str).collect();
    keys.sort_unstable();
    if keys.is_empty() {
        "no tensors".into()
    } else {
        keys.join(", ")
    }
}

/// A Burn `Linear` from PyTorch's `[out, in]` weight rows `rows` (a slice of a stacked tensor)
/// and bias `bias`.
fn linear_from_pytorch(weight: &[f32], bias: &[f32], input: usize, device: &Device) -> Linear {
    let output = bias.len();
    let weight = transpose(weight, output, input);
    Linear {
        weight: Param::from_tensor(Tensor::from_data(
            TensorData::new(weight, [input, output]),
            device,
        )),
        bias: Some(Param::from_tensor(Tensor::from_data(
            TensorData::new(bias.to_vec(), [output]),
            device,
        ))),
    }
}

/// The classifier `config` describes with the weights of a PyTorch `state_dict` of the
/// tutorial's module; an error names the first key missing, of the wrong shape, or extra.
pub fn from_pytorch(
    tensors: &HashMap<String, NamedTensor>,
    config: &LstmClassifierConfig,
    device: &Device,
) -> Result<LstmClassifier, String> {
    config.validate().map_err(|error| error.to_string())?;
    check_keys(tensors, config)?;
    let mut classifier = config.init(device);
    classifier.lstm = classifier.lstm.with_pytorch_parameters(|key, _| {
        // `check_keys` found every key with its shape.
        let tensor = &tensors[&format!("{RNN}.{key}")];
        Ok::<_, String>(Some(TensorData::new(
            tensor.values.clone(),
            tensor.shape.clone(),
        )))
    })?;
    let (weight, bias) = (&tensors["out.weight"], &tensors["out.bias"]);
    classifier.head = linear_from_pytorch(&weight.values, &bias.values, weight.shape[1], device);
    Ok(classifier)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transposing_twice_gives_the_values_back() {
        let values: Vec<f32> = (0..6).map(|v| v as f32).collect();
        let once = transpose(&values, 2, 3);
        assert_eq!(once, [0.0, 3.0, 1.0, 4.0, 2.0, 5.0]);
        assert_eq!(transpose(&once, 3, 2), values);
    }

    #[test]
    fn the_shapes_follow_pytorch() {
        let config = LstmClassifierConfig::new()
            .with_num_layers(2)
            .with_bidirectional(true);
        let shapes: HashMap<String, Vec<usize>> = expected_shapes(&config).into_iter().collect();
        assert_eq!(shapes.len(), 4 * 4 + 2);
        assert_eq!(shapes["rnn.weight_ih_l0"], [256, 28]);
        assert_eq!(shapes["rnn.weight_ih_l1_reverse"], [256, 128]);
        assert_eq!(shapes["rnn.weight_hh_l1"], [256, 64]);
        assert_eq!(shapes["out.weight"], [10, 128]);
    }
}
