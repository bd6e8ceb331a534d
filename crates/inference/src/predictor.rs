//! The classifier of a finished run asked about digits: a batched forward pass over MNIST-framed
//! images, answered as probabilities per class.

use std::path::Path;

use burn::data::dataloader::batcher::Batcher;
use burn::tensor::{Device, Tensor};
use data::{IMAGE_PIXELS, MnistBatcher, MnistItem};
use model::{Cell, LstmClassifier, ReadingTrace};

use crate::InferenceError;
use crate::run::TrainedRun;

/// What the classifier says about one image.
#[derive(Debug, Clone, PartialEq)]
pub struct Prediction {
    /// Probability of each class.
    pub probabilities: Vec<f32>,
    /// When asked for ([`Predictor::predict_steps`]): after each time step, the probabilities
    /// the classifier would give were the sequence to stop there (the last row is
    /// `probabilities`).
    pub steps: Option<Vec<Vec<f32>>>,
}

impl Prediction {
    /// The most likely class.
    pub fn class(&self) -> usize {
        self.top(1).first().map_or(0, |(class, _)| *class)
    }

    /// The `k` most likely classes with their probabilities, most likely first.
    pub fn top(&self, k: usize) -> Vec<(usize, f32)> {
        let mut ranked: Vec<(usize, f32)> =
            self.probabilities.iter().copied().enumerate().collect();
        ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        ranked.truncate(k);
        ranked
    }
}

/// The classifier of a finished run, ready to classify MNIST-like digits.
#[derive(Debug)]
pub struct Predictor {
    classifier: LstmClassifier,
    device: Device,
    batcher: MnistBatcher,
    class_names: Vec<String>,
}

impl Predictor {
    /// Loads the model of the run in `run_dir` (see [`TrainedRun::load`]) on `device`.
    pub fn from_run(run_dir: &Path, device: &Device) -> Result<Self, InferenceError> {
        Ok(Self::new(TrainedRun::load(run_dir, device)?))
    }

    /// The predictor of a loaded run.
    pub fn new(run: TrainedRun) -> Self {
        Self {
            batcher: run.batcher(),
            class_names: run
                .dataset()
                .class_names()
                .iter()
                .map(|name| name.to_string())
                .collect(),
            classifier: run.classifier,
            device: run.device,
        }
    }

    /// The name of each class, by label (`"0"` to `"9"` for MNIST).
    pub fn class_names(&self) -> &[String] {
        &self.class_names
    }

    /// `7`, or `7 Sneaker` where the class has a name of its own.
    pub fn label(&self, class: usize) -> String {
        crate::evaluate::class_label(&self.class_names, class)
    }

    /// Classifies MNIST digits (`28 * 28` grey levels each, as [`prepare_grey`] makes them),
    /// with the same pixel scaling as the run's training.
    pub fn predict(&self, digits: &[Vec<u8>]) -> Result<Vec<Prediction>, InferenceError> {
        if digits.is_empty() {
            return Ok(Vec::new());
        }
        check_sizes(digits)?;
        let items = digits
            .iter()
            .map(|pixels| MnistItem {
                pixels: pixels.clone(),
                label: 0,
            })
            .collect();
        let batch = self.batcher.batch(items, &self.device);
        let probabilities = self.classifier.probabilities(batch.images);
        Ok(rows(probabilities)
            .into_iter()
            .map(|probabilities| Prediction {
                probabilities,
                steps: None,
            })
            .collect())
    }

    /// Classifies one digit as [`predict`](Self::predict) does, with the probabilities after
    /// every time step ([`Prediction::steps`]): the model run on each prefix of the sequence.
    pub fn predict_steps(&self, digit: &[u8]) -> Result<Prediction, InferenceError> {
        let rows = rows(self.classifier.prefix_probabilities(self.sequence(digit)?));
        Ok(Prediction {
            probabilities: rows.last().cloned().unwrap_or_default(),
            steps: Some(rows),
        })
    }

    /// How the classifier read one digit (as [`predict`](Self::predict) takes it): the class
    /// probabilities after each step and its top layer's gates ([`LstmClassifier::reading_trace`]).
    /// A GRU or RNN run is refused: the gates drawn are an LSTM's.
    pub fn reading_trace(&self, digit: &[u8]) -> Result<ReadingTrace, InferenceError> {
        let cell = self.classifier.lstm.cell;
        if cell != Cell::Lstm {
            return Err(InferenceError::InvalidInput(format!(
                "the gates drawn are an LSTM's (input, forget, output): this run has model.cell = \"{cell}\", \
                 and this command takes model.cell = \"lstm\" only"
            )));
        }
        Ok(self.classifier.reading_trace(self.sequence(digit)?))
    }

    /// One digit as the run's batcher reads it, `[1, steps, features]`.
    fn sequence(&self, digit: &[u8]) -> Result<Tensor<3>, InferenceError> {
        check_sizes(std::slice::from_ref(&digit))?;
        let item = MnistItem {
            pixels: digit.to_vec(),
            label: 0,
        };
        Ok(self.batcher.batch(vec![item], &self.device).images)
    }
}

/// A `[rows, classes]` tensor's rows.
fn rows(tensor: Tensor<2>) -> Vec<Vec<f32>> {
    let [_, classes] = tensor.dims();
    let values: Vec<f32> = tensor.into_data().iter::<f32>().collect();
    values.chunks(classes.max(1)).map(<[f32]>::to_vec).collect()
}

/// Refuses a digit that is not 28x28 grey levels.
fn check_sizes(digits: &[impl AsRef<[u8]>]) -> Result<(), InferenceError> {
    match digits
        .iter()
        .enumerate()
        .find(|(_, digit)| digit.as_ref().len() != IMAGE_PIXELS)
    {
        Some((index, digit)) => Err(InferenceError::InvalidInput(format!(
            "digit {index} has {} pixels, not {IMAGE_PIXELS} (28x28)",
            digit.as_ref().len()
        ))),
        None => Ok(()),
    }
}
