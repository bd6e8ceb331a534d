//! A renderer for burn-train that prints one plain line per split per epoch.
//!
//! Burn 0.22's `CliMetricsRenderer` prints a debug dump of its progress on every batch and no
//! metric values; its TUI waits for a key press at the end. This one prints what a log needs.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Instant;

use burn::train::LearnerSummary;
use burn::train::logger::{EvaluationProgressLogger, TrainingProgressLogger};
use burn::train::metric::{MetricDefinition, MetricId, NumericEntry};
use burn::train::renderer::{
    EvaluationName, MetricState, MetricsRenderer, MetricsRendererEvaluation,
    MetricsRendererTraining,
};

use crate::metrics_log::{MetricSplit, MetricsLog};

/// Loss, accuracy (a fraction) and learning rate gathered for one row of the metrics log.
#[derive(Debug, Default, Clone, Copy)]
struct PendingRow {
    loss: Option<f64>,
    accuracy: Option<f64>,
    lr: Option<f64>,
}

impl PendingRow {
    fn set(&mut self, name: &str, unit: &str, value: f64) {
        match name {
            "Loss" => self.loss = Some(value),
            "Accuracy" => self.accuracy = Some(if unit == "%" { value / 100.0 } else { value }),
            "Learning Rate" => self.lr = Some(value),
            _ => {}
        }
    }
}

/// Prints `epoch 1/1 train: Accuracy 93.12%, Loss 0.2210 (31.0 s)` lines, and feeds a
/// [`MetricsLog`] when given one: a row per training step and per epoch of each split.
pub struct LineRenderer {
    names: HashMap<MetricId, (String, String)>,
    values: BTreeMap<String, (f64, String)>,
    split: String,
    epoch: usize,
    total_epochs: usize,
    split_started: Instant,
    log: Option<Arc<MetricsLog>>,
    global_step: usize,
    step_row: PendingRow,
    epoch_row: PendingRow,
}

impl LineRenderer {
    /// A renderer that prints to standard output.
    pub fn new() -> Self {
        Self {
            names: HashMap::new(),
            values: BTreeMap::new(),
            split: String::new(),
            epoch: 1,
            total_epochs: 0,
            split_started: Instant::now(),
            log: None,
            global_step: 0,
            step_row: PendingRow::default(),
            epoch_row: PendingRow::default(),
        }
    }

    /// Numbers the steps of a resumed run on from the `steps_done` before it.
    pub fn starting_after(mut self, steps_done: usize) -> Self {
        self.global_step = steps_done;
        self
    }

    /// Also records every step and epoch into `log`.
    pub fn with_log(mut self, log: Arc<MetricsLog>) -> Self {
        self.log = Some(log);
        self
    }

    fn record(&mut self, state: MetricState) {
        if let MetricState::Numeric(entry, Some(value)) = state
            && let Some((name, unit)) = self.names.get(&entry.metric_id)
        {
            self.values
                .insert(name.clone(), (value.current(), unit.clone()));
            // Per batch, burn-train sends the batch's value; at the end of a split, the epoch's.
            let row = match value {
                NumericEntry::Final(_) => &mut self.epoch_row,
                _ => &mut self.step_row,
            };
            row.set(name, unit, value.current());
        }
    }

    fn log_row(&mut self, split: MetricSplit, row: PendingRow) {
        if let Some(log) = &self.log {
            log.push(
                self.global_step,
                self.epoch,
                split,
                row.loss,
                row.accuracy,
                row.lr,
            );
        }
    }
}

impl Default for LineRenderer {
    fn default() -> Self {
        Self::new()
    }
}

impl MetricsRendererTraining for LineRenderer {
    fn update_train(&mut self, state: MetricState) {
        self.record(state);
    }

    fn update_valid(&mut self, state: MetricState) {
        self.record(state);
    }

    fn on_train_end(
        &mut self,
        _summary: Option<LearnerSummary>,
    ) -> Result<(), Box<dyn core::error::Error>> {
        Ok(())
    }
}

impl MetricsRendererEvaluation for LineRenderer {
    fn update_test(&mut self, _name: EvaluationName, state: MetricState) {
        self.record(state);
    }

    fn on_test_end(
        &mut self,
        _summary: Option<LearnerSummary>,
    ) -> Result<(), Box<dyn core::error::Error>> {
        Ok(())
    }
}

impl TrainingProgressLogger for LineRenderer {
    fn start(
        &mut self,
        total_epochs: usize,
        starting_epoch: usize,
        _total_items: Option<usize>,
        _label: Option<&str>,
    ) {
        self.total_epochs = total_epochs;
        self.epoch = starting_epoch.max(1);
    }

    fn update_epoch(&mut self, epoch: usize) {
        // burn-train calls this when epoch `epoch` has ended: the next lines are the next one's.
        self.epoch = epoch + 1;
    }

    fn start_split(&mut self, split: &str, total_items: usize) {
        self.split = split.to_string();
        self.values.clear();
        self.step_row = PendingRow::default();
        self.epoch_row = PendingRow::default();
        self.split_started = Instant::now();
        println!(
            "epoch {}/{} {}: {} images",
            self.epoch, self.total_epochs, self.split, total_items
        );
    }

    fn update_split(&mut self, _items_processed: usize) {
        // Called after each batch's metrics: a training batch is a step.
        if self.split == "train" {
            self.global_step += 1;
            let row = std::mem::take(&mut self.step_row);
            self.log_row(MetricSplit::Train, row);
        }
    }

    fn end_split(&mut self) {
        let split = match self.split.as_str() {
            "train" => Some(MetricSplit::TrainEpoch),
            "valid" => Some(MetricSplit::Valid),
            _ => None,
        };
        if let Some(split) = split {
            let row = std::mem::take(&mut self.epoch_row);
            self.log_row(split, row);
        }
        let metrics: Vec<String> = self
            .values
            .iter()
            .map(|(name, (value, unit))| match unit.as_str() {
                "%" => format!("{name} {value:.2}%"),
                _ => format!("{name} {value:.4}"),
            })
            .collect();
        println!(
            "epoch {}/{} {} done: {} ({:.1} s)",
            self.epoch,
            self.total_epochs,
            self.split,
            metrics.join(", "),
            self.split_started.elapsed().as_secs_f64()
        );
    }

    fn end(&mut self) {}

    fn log_event_training(&mut self, _event: String) {}
}

impl EvaluationProgressLogger for LineRenderer {
    fn start_global_progress(&mut self, _total_tests: usize) {}

    fn start_test(&mut self, name: &str, total_items: usize) {
        self.start_split(name, total_items);
    }

    fn update_test_progress(&mut self, _items_processed: usize) {}

    fn end_test(&mut self) {
        self.end_split();
    }

    fn end_global_progress(&mut self) {}

    fn log_event_evaluation(&mut self, _event: String) {}
}

impl MetricsRenderer for LineRenderer {
    fn manual_close(&mut self) {}

    fn register_metric(&mut self, definition: MetricDefinition) {
        let unit = match &definition.attributes {
            burn::train::metric::MetricAttributes::Numeric(attributes) => {
                attributes.unit.clone().unwrap_or_default()
            }
            _ => String::new(),
        };
        self.names
            .insert(definition.metric_id, (definition.name.to_string(), unit));
    }
}
