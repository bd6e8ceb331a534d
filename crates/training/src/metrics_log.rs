//! Every metric of a run as rows of data: `metrics.csv` in the run directory, and the input of
//! the curves.

use std::fmt::{self, Write as _};
use std::path::Path;
use std::sync::Mutex;
use std::time::Instant;

use crate::TrainingError;

/// Which measurement a [`MetricRow`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MetricSplit {
    /// One training step: the loss and accuracy of its batch, and the learning rate.
    Train,
    /// The step probe: accuracy (and loss) on the first images of the validation split, every
    /// `log_every` steps.
    Eval,
    /// The mean over a whole training epoch.
    TrainEpoch,
    /// The validation split at the end of an epoch.
    Valid,
    /// The final evaluation on the test split.
    Test,
}

impl MetricSplit {
    /// The name in `metrics.csv`.
    pub fn name(self) -> &'static str {
        match self {
            MetricSplit::Train => "train",
            MetricSplit::Eval => "eval",
            MetricSplit::TrainEpoch => "train_epoch",
            MetricSplit::Valid => "valid",
            MetricSplit::Test => "test",
        }
    }

    /// The split named `name` in `metrics.csv`.
    pub fn from_name(name: &str) -> Option<Self> {
        [
            MetricSplit::Train,
            MetricSplit::Eval,
            MetricSplit::TrainEpoch,
            MetricSplit::Valid,
            MetricSplit::Test,
        ]
        .into_iter()
        .find(|split| split.name() == name)
    }
}

impl fmt::Display for MetricSplit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One line of `metrics.csv`.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricRow {
    /// Training steps done when it was measured (from 1; per-epoch rows: the epoch's last step).
    pub step: usize,
    /// Epoch, from 1.
    pub epoch: usize,
    /// What was measured.
    pub split: MetricSplit,
    /// Mean cross-entropy, when measured.
    pub loss: Option<f64>,
    /// Fraction right, in [0, 1], when measured.
    pub accuracy: Option<f64>,
    /// Learning rate of the step (training steps only).
    pub lr: Option<f64>,
    /// Seconds since training started.
    pub elapsed_seconds: f64,
}

/// The header of `metrics.csv`.
pub const METRICS_CSV_HEADER: &str = "step,epoch,split,loss,accuracy,lr,elapsed_s";

/// Rows gathered while a run goes on, from the learner's renderer and the step probe (two
/// threads), with one clock for both.
#[derive(Debug)]
pub struct MetricsLog {
    started: Mutex<Instant>,
    rows: Mutex<Vec<MetricRow>>,
}

impl Default for MetricsLog {
    fn default() -> Self {
        Self::new()
    }
}

impl MetricsLog {
    /// An empty log whose clock starts now.
    pub fn new() -> Self {
        Self {
            started: Mutex::new(Instant::now()),
            rows: Mutex::new(Vec::new()),
        }
    }

    /// Restarts the clock (when training proper begins).
    pub fn restart_clock(&self) {
        if let Ok(mut started) = self.started.lock() {
            *started = Instant::now();
        }
    }

    /// Takes up a resumed run's rows; the clock goes on from `elapsed_seconds`, the training
    /// time before the checkpoint.
    pub fn resume(&self, rows: Vec<MetricRow>, elapsed_seconds: f64) {
        if let Ok(mut kept) = self.rows.lock() {
            *kept = rows;
        }
        if let Ok(mut started) = self.started.lock() {
            let before = std::time::Duration::from_secs_f64(elapsed_seconds.max(0.0));
            *started = Instant::now()
                .checked_sub(before)
                .unwrap_or_else(Instant::now);
        }
    }

    /// Seconds since the clock started.
    pub fn elapsed_seconds(&self) -> f64 {
        self.started
            .lock()
            .map(|started| started.elapsed().as_secs_f64())
            .unwrap_or(0.0)
    }

    /// Adds a row measured now.
    pub fn push(
        &self,
        step: usize,
        epoch: usize,
        split: MetricSplit,
        loss: Option<f64>,
        accuracy: Option<f64>,
        lr: Option<f64>,
    ) {
        let row = MetricRow {
            step,
            epoch,
            split,
            loss,
            accuracy,
            lr,
            elapsed_seconds: self.elapsed_seconds(),
        };
        if let Ok(mut rows) = self.rows.lock() {
            rows.push(row);
        }
    }

    /// The rows so far, ordered by step, then split (train, eval, train_epoch, valid, test).
    pub fn rows(&self) -> Vec<MetricRow> {
        let mut rows = self.rows.lock().map(|r| r.clone()).unwrap_or_default();
        rows.sort_by_key(|row| (row.step, row.split));
        rows
    }
}

/// The rows as CSV text: [`METRICS_CSV_HEADER`], then one line per row; a value not measured is
/// an empty field.
pub fn metrics_csv(rows: &[MetricRow]) -> String {
    let mut csv = format!("{METRICS_CSV_HEADER}\n");
    let optional = |value: Option<f64>| value.map(|v| format!("{v}")).unwrap_or_default();
    for row in rows {
        let _ = writeln!(
            csv,
            "{},{},{},{},{},{},{:.3}",
            row.step,
            row.epoch,
            row.split,
            optional(row.loss),
            optional(row.accuracy),
            optional(row.lr),
            row.elapsed_seconds
        );
    }
    csv
}

/// Reads `metrics.csv` text back into rows.
pub fn parse_metrics_csv(text: &str) -> Result<Vec<MetricRow>, String> {
    let mut lines = text.lines().enumerate();
    match lines.next() {
        Some((_, header)) if header.trim() == METRICS_CSV_HEADER => {}
        _ => return Err(format!("the first line must be `{METRICS_CSV_HEADER}`")),
    }
    let mut rows = Vec::new();
    for (index, line) in lines {
        let line_no = index + 1;
        let fields: Vec<&str> = line.trim().split(',').collect();
        let [step, epoch, split, loss, accuracy, lr, elapsed] = fields[..] else {
            return Err(format!(
                "line {line_no}: expected 7 fields, found {}",
                fields.len()
            ));
        };
        let number = |name: &str, text: &str| {
            text.parse::<f64>()
                .map_err(|_| format!("line {line_no}: {name} `{text}` is not a number"))
        };
        let optional = |name: &str, text: &str| {
            if text.is_empty() {
                Ok(None)
            } else {
                number(name, text).map(Some)
            }
        };
        let count = |name: &str, text: &str| {
            text.parse::<usize>()
                .map_err(|_| format!("line {line_no}: {name} `{text}` is not a count"))
        };
        rows.push(MetricRow {
            step: count("step", step)?,
            epoch: count("epoch", epoch)?,
            split: MetricSplit::from_name(split)
                .ok_or_else(|| format!("line {line_no}: unknown split `{split}`"))?,
            loss: optional("loss", loss)?,
            accuracy: optional("accuracy", accuracy)?,
            lr: optional("lr", lr)?,
            elapsed_seconds: number("elapsed_s", elapsed)?,
        });
    }
    Ok(rows)
}

/// Writes `rows` as CSV to `path`.
pub fn write_metrics_csv(path: &Path, rows: &[MetricRow]) -> Result<(), TrainingError> {
    crate::atomic::write_atomically(path, metrics_csv(rows).as_bytes())
}
