//! Weights files written before the classifier kept its LSTM in PyTorch's layout: each layer and
//! direction was a Burn `nn::Lstm`, a gate controller (an input and a hidden `Linear`, weights
//! `[in, out]`) per gate. They load as the same model, value for value: each gate's weights
//! transposed and stacked in PyTorch's gate order.

use std::path::Path;

use burn::module::{Module, Param};
use burn::nn::{
    Dropout, DropoutConfig, GateController, Linear, LinearConfig, Lstm as BurnLstm,
    LstmConfig as BurnLstmConfig,
};
use burn::store::RecordError;
use burn::tensor::{Device, Tensor};

use crate::{LstmClassifier, LstmClassifierConfig};

/// The classifier as it was: its record's names are those of old weights files.
#[derive(Module, Debug)]
struct LegacyClassifier {
    forward_layers: Vec<BurnLstm>,
    backward_layers: Vec<BurnLstm>,
    dropout: Dropout,
    head: Linear,
}

/// The old classifier's shape for `config` (weights to be loaded over it).
fn skeleton(config: &LstmClassifierConfig, device: &Device) -> LegacyClassifier {
    let directions = config.lstm().directions();
    let layer = |index: usize, reverse: bool| {
        let input = if index == 0 {
            config.input_size
        } else {
            config.hidden_size * directions
        };
        BurnLstmConfig::new(input, config.hidden_size, true)
            .with_reverse(reverse)
            .init(device)
    };
    let layers = |reverse: bool| {
        (0..config.num_layers)
            .map(|index| layer(index, reverse))
            .collect()
    };
    LegacyClassifier {
        forward_layers: layers(false),
        backward_layers: if config.bidirectional {
            layers(true)
        } else {
            Vec::new()
        },
        dropout: DropoutConfig::new(config.dropout).init(),
        head: LinearConfig::new(config.hidden_size * directions, config.num_classes).init(device),
    }
}

/// A weights file of the old layout, as a classifier of `config`.
pub(crate) fn load(
    config: &LstmClassifierConfig,
    path: &Path,
    device: &Device,
) -> Result<LstmClassifier, RecordError> {
    let legacy = skeleton(config, device).try_load_file(path)?;
    let mut classifier = config.init(device);
    let mut old = Vec::new();
    for (index, forward) in legacy.forward_layers.iter().enumerate() {
        old.push(forward);
        if let Some(backward) = legacy.backward_layers.get(index) {
            old.push(backward);
        }
    }
    for (direction, lstm) in classifier.lstm.directions.iter_mut().zip(old) {
        let gates: Vec<&GateController> = [
            Some(&lstm.input_gate),
            lstm.forget_gate.as_ref(),
            Some(&lstm.cell_gate),
            Some(&lstm.output_gate),
        ]
        .into_iter()
        .flatten()
        .collect();
        let stack_weights = |linear: fn(&GateController) -> &Linear| {
            let blocks = gates
                .iter()
                .map(|gate| linear(gate).weight.val().transpose())
                .collect();
            Param::from_tensor(Tensor::cat(blocks, 0))
        };
        let stack_biases = |linear: fn(&GateController) -> &Linear| {
            let blocks = gates
                .iter()
                .map(|gate| match &linear(gate).bias {
                    Some(bias) => bias.val(),
                    None => Tensor::zeros([lstm.d_hidden], device),
                })
                .collect();
            Param::from_tensor(Tensor::cat(blocks, 0))
        };
        direction.weight_ih = stack_weights(|gate| &gate.input_transform);
        direction.weight_hh = stack_weights(|gate| &gate.hidden_transform);
        direction.bias_ih = stack_biases(|gate| &gate.input_transform);
        direction.bias_hh = stack_biases(|gate| &gate.hidden_transform);
    }
    classifier.head = legacy.head;
    Ok(classifier)
}
