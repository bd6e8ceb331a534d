//! Evaluation of a trained classifier on a whole dataset: loss, accuracy, per-class accuracy,
//! confusion matrix and the first predictions.

use std::fmt;

use burn::data::dataloader::batcher::Batcher;
use burn::module::Module;
use burn::tensor::Device;
use data::{MnistBatcher, MnistDataset};
use model::LstmClassifier;
use model::cross_entropy;

/// What `eval` prints.
#[derive(Debug, Clone, PartialEq)]
pub struct EvaluationReport {
    /// Mean cross-entropy.
    pub loss: f64,
    /// Predicted class of every image, in dataset order.
    pub predictions: Vec<u8>,
    /// True class of every image.
    pub labels: Vec<u8>,
    /// `confusion[truth][predicted]` counts.
    pub confusion: Vec<Vec<usize>>,
    /// The name of each class, by label.
    pub class_names: Vec<String>,
}

impl EvaluationReport {
    /// Images evaluated.
    pub fn count(&self) -> usize {
        self.labels.len()
    }

    /// Images classified correctly.
    pub fn correct(&self) -> usize {
        (0..self.confusion.len())
            .map(|c| self.confusion[c][c])
            .sum()
    }

    /// Fraction classified correctly, in [0, 1].
    pub fn accuracy(&self) -> f64 {
        self.correct() as f64 / self.count().max(1) as f64
    }

    /// `7`, or `7 Sneaker` where the class has a name of its own.
    pub fn label(&self, class: usize) -> String {
        class_label(&self.class_names, class)
    }

    /// Accuracy of each true class (`None` for a class absent from the data).
    pub fn per_class_accuracy(&self) -> Vec<Option<f64>> {
        self.confusion
            .iter()
            .enumerate()
            .map(|(class, row)| {
                let total: usize = row.iter().sum();
                (total > 0).then(|| row[class] as f64 / total as f64)
            })
            .collect()
    }
}

impl fmt::Display for EvaluationReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "test images {}: loss {:.4}, accuracy {:.2}% ({} / {})",
            self.count(),
            self.loss,
            100.0 * self.accuracy(),
            self.correct(),
            self.count()
        )?;
        writeln!(f, "per-class accuracy:")?;
        for (class, accuracy) in self.per_class_accuracy().iter().enumerate() {
            write!(f, "  {}:", self.label(class))?;
            match accuracy {
                Some(a) => writeln!(f, " {:6.2}%", 100.0 * a)?,
                None => writeln!(f, "      - (no images)")?,
            }
        }
        writeln!(f, "confusion matrix (rows: truth, columns: predicted):")?;
        write!(f, "     ")?;
        for class in 0..self.confusion.len() {
            write!(f, "{class:>6}")?;
        }
        writeln!(f)?;
        for (class, row) in self.confusion.iter().enumerate() {
            write!(f, "  {class:>2} ")?;
            for count in row {
                write!(f, "{count:>6}")?;
            }
            writeln!(f)?;
        }
        let shown = self.count().min(10);
        writeln!(f, "first {shown} predictions:")?;
        let list = |values: &[u8]| {
            values
                .iter()
                .map(|&v| self.label(usize::from(v)))
                .collect::<Vec<_>>()
                .join(", ")
        };
        writeln!(f, "  predicted: {}", list(&self.predictions[..shown]))?;
        write!(f, "  truth:     {}", list(&self.labels[..shown]))
    }
}

/// `7`, or `7 Sneaker` where class `class` has a name of its own in `class_names`.
pub(crate) fn class_label(class_names: &[String], class: usize) -> String {
    match class_names.get(class) {
        Some(name) if *name != class.to_string() => format!("{class} {name}"),
        _ => class.to_string(),
    }
}

/// Runs `classifier` over all of `dataset` in batches of `batch_size` on `device`;
/// `class_names` names each class, by label.
pub fn evaluate(
    classifier: &LstmClassifier,
    dataset: &MnistDataset,
    batcher: &MnistBatcher,
    device: &Device,
    batch_size: usize,
    class_names: &[&str],
) -> EvaluationReport {
    let num_classes = class_names.len();
    let classifier = classifier.valid();
    let batch_size = batch_size.max(1);
    let mut loss_sum = 0.0;
    let mut predictions = Vec::with_capacity(dataset.len());
    for start in (0..dataset.len()).step_by(batch_size) {
        let end = (start + batch_size).min(dataset.len());
        let items = (start..end).filter_map(|i| dataset.item(i)).collect();
        let batch = batcher.batch(items, device);
        let logits = classifier.forward(batch.images);
        let loss = cross_entropy(logits.clone(), batch.targets);
        loss_sum += f64::from(loss.into_scalar::<f32>()) * (end - start) as f64;
        let batch_predictions = logits.argmax(1).into_data();
        predictions.extend(batch_predictions.iter::<i64>().map(|p| p as u8));
    }
    let labels = dataset.labels().to_vec();
    let mut confusion = vec![vec![0usize; num_classes]; num_classes];
    for (&truth, &predicted) in labels.iter().zip(&predictions) {
        if let Some(cell) = confusion
            .get_mut(usize::from(truth))
            .and_then(|row| row.get_mut(usize::from(predicted)))
        {
            *cell += 1;
        }
    }
    EvaluationReport {
        loss: loss_sum / dataset.len().max(1) as f64,
        predictions,
        labels,
        confusion,
        class_names: class_names.iter().map(|name| name.to_string()).collect(),
    }
}
