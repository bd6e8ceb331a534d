//! The classifier as burn-train sees it: one training and one inference step, plus the tutorial's
//! habit of logging the loss and the accuracy on a fixed subset every few steps (the first images
//! of the validation split: the test split unless `data.validation = "holdout"`).

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use burn::module::Module;
use burn::tensor::{Int, Tensor};
use burn::train::{ClassificationOutput, InferenceStep, TrainOutput, TrainStep};
use data::MnistBatch;
use model::LstmClassifier;

use crate::metrics_log::{MetricSplit, MetricsLog};

/// The classifier wrapped for burn-train's `Learner`.
#[derive(Module, Debug)]
pub struct Trainee {
    /// The model being trained.
    pub classifier: LstmClassifier,
    /// Step logging; shared by every copy of the module the learner makes.
    #[module(skip)]
    probe: Option<Arc<StepProbe>>,
}

impl Trainee {
    /// Wraps `classifier`; `probe` logs every few training steps.
    pub fn new(classifier: LstmClassifier, probe: Option<Arc<StepProbe>>) -> Self {
        Self { classifier, probe }
    }
}

/// Logits, cross-entropy loss and targets of a batch.
pub fn classify(classifier: &LstmClassifier, batch: MnistBatch) -> ClassificationOutput {
    let logits = classifier.forward(batch.images);
    let loss = inference::cross_entropy(logits.clone(), batch.targets.clone());
    ClassificationOutput::new(loss, logits, batch.targets)
}

impl TrainStep for Trainee {
    type Input = MnistBatch;
    type Output = ClassificationOutput;

    fn step(&self, batch: MnistBatch) -> TrainOutput<ClassificationOutput> {
        let output = classify(&self.classifier, batch);
        let grads = output.loss.backward();
        if let Some(probe) = &self.probe {
            probe.after_step(&self.classifier, &output.loss);
        }
        TrainOutput::new(self, grads, output)
    }
}

impl InferenceStep for Trainee {
    type Input = MnistBatch;
    type Output = ClassificationOutput;

    fn step(&self, batch: MnistBatch) -> ClassificationOutput {
        classify(&self.classifier, batch)
    }
}

/// One step line: what the tutorial printed every 50 steps.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StepRecord {
    /// Epoch, from 1.
    pub epoch: usize,
    /// Step within the epoch, from 1.
    pub step: usize,
    /// Steps since the start of the run, from 1.
    pub global_step: usize,
    /// Loss of this step's training batch.
    pub train_loss: f64,
    /// Accuracy on the fixed evaluation subset, in [0, 1].
    pub eval_accuracy: f64,
    /// Mean cross-entropy on the fixed evaluation subset.
    pub eval_loss: f64,
    /// Training images per second since the previous line.
    pub images_per_second: f64,
}

impl fmt::Display for StepRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "epoch {} step {:>4}  loss {:.4}  eval accuracy {:>6.2}%  {:>6.0} img/s",
            self.epoch,
            self.step,
            self.train_loss,
            100.0 * self.eval_accuracy,
            self.images_per_second
        )
    }
}

/// Counts training steps and, every `log_every`, measures the model on a fixed batch of
/// validation images, prints a [`StepRecord`] and keeps it.
pub struct StepProbe {
    log_every: usize,
    steps_per_epoch: usize,
    batch_size: usize,
    eval_images: Tensor<3>,
    eval_targets: Tensor<1, Int>,
    steps: AtomicUsize,
    window_start: Mutex<Instant>,
    records: Mutex<Vec<StepRecord>>,
    print: bool,
    log: Option<Arc<MetricsLog>>,
    /// Stops the learner when a loss is not finite; set once the learner exists.
    interrupter: std::sync::OnceLock<burn::train::Interrupter>,
    /// The first non-finite loss: (epoch, step of the epoch, global step, value).
    non_finite: Mutex<Option<NonFiniteLoss>>,
}

/// Where training met a loss that is NaN or infinite.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NonFiniteLoss {
    /// Epoch, from 1.
    pub epoch: usize,
    /// Step within the epoch, from 1.
    pub step: usize,
    /// Step since the start, from 1.
    pub global_step: usize,
    /// The loss.
    pub value: f32,
}

impl fmt::Debug for StepProbe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StepProbe")
            .field("log_every", &self.log_every)
            .field("steps", &self.steps.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl StepProbe {
    /// A probe over `eval` (already on the device without autodiff), logging every `log_every`
    /// steps of `batch_size` images, `steps_per_epoch` steps an epoch; `print` echoes the lines.
    pub fn new(
        eval: MnistBatch,
        log_every: usize,
        steps_per_epoch: usize,
        batch_size: usize,
        print: bool,
    ) -> Self {
        Self {
            log_every,
            steps_per_epoch: steps_per_epoch.max(1),
            batch_size,
            eval_images: eval.images,
            eval_targets: eval.targets,
            steps: AtomicUsize::new(0),
            window_start: Mutex::new(Instant::now()),
            records: Mutex::new(Vec::new()),
            print,
            log: None,
            interrupter: std::sync::OnceLock::new(),
            non_finite: Mutex::new(None),
        }
    }

    /// Stop training through `interrupter` at the first loss that is not finite.
    pub fn stop_on_non_finite(&self, interrupter: burn::train::Interrupter) {
        let _ = self.interrupter.set(interrupter);
    }

    /// The first non-finite loss met, if any.
    pub fn non_finite(&self) -> Option<NonFiniteLoss> {
        self.non_finite.lock().ok().and_then(|found| *found)
    }

    /// Also records each measurement into `log` (split `eval`).
    pub fn with_log(mut self, log: Arc<MetricsLog>) -> Self {
        self.log = Some(log);
        self
    }

    /// Takes up a resumed run: `global_step` steps done, and the lines printed before.
    pub fn resume(&self, global_step: usize, records: Vec<StepRecord>) {
        self.steps.store(global_step, Ordering::Relaxed);
        if let Ok(mut kept) = self.records.lock() {
            *kept = records;
        }
    }

    /// Images in the evaluation subset.
    pub fn eval_size(&self) -> usize {
        self.eval_targets.dims()[0]
    }

    /// The lines logged so far.
    pub fn records(&self) -> Vec<StepRecord> {
        self.records.lock().map(|r| r.clone()).unwrap_or_default()
    }

    fn after_step(&self, classifier: &LstmClassifier, loss: &Tensor<1>) {
        let global_step = self.steps.fetch_add(1, Ordering::Relaxed) + 1;
        // Read every step (burn-train's loss metric reads it anyway): a NaN must stop the run
        // at the step it appears, before the next checkpoint could keep it.
        let loss_value = loss.clone().into_scalar::<f32>();
        if !loss_value.is_finite() {
            let (epoch, step) = self.position(global_step);
            let found = NonFiniteLoss {
                epoch,
                step,
                global_step,
                value: loss_value,
            };
            if let Ok(mut first) = self.non_finite.lock() {
                first.get_or_insert(found);
            }
            if let Some(interrupter) = self.interrupter.get() {
                interrupter.stop(Some("the loss is not finite"));
            }
            return;
        }
        if self.log_every == 0 || !global_step.is_multiple_of(self.log_every) {
            return;
        }
        let train_loss = f64::from(loss_value);
        let (eval_loss, eval_accuracy) = self.measure(classifier);
        let images_per_second = match self.window_start.lock() {
            Ok(mut start) => {
                let seconds = start.elapsed().as_secs_f64();
                *start = Instant::now();
                (self.log_every * self.batch_size) as f64 / seconds.max(1e-9)
            }
            Err(_) => f64::NAN,
        };
        let (epoch, step) = self.position(global_step);
        let record = StepRecord {
            epoch,
            step,
            global_step,
            train_loss,
            eval_accuracy,
            eval_loss,
            images_per_second,
        };
        if self.print {
            println!("{record}");
        }
        if let Some(log) = &self.log {
            log.push(
                record.global_step,
                record.epoch,
                MetricSplit::Eval,
                Some(eval_loss),
                Some(eval_accuracy),
                None,
            );
        }
        if let Ok(mut records) = self.records.lock() {
            records.push(record);
        }
    }

    /// The epoch and the step within it (both from 1) of step `global_step` of the run.
    fn position(&self, global_step: usize) -> (usize, usize) {
        (
            (global_step - 1) / self.steps_per_epoch + 1,
            (global_step - 1) % self.steps_per_epoch + 1,
        )
    }

    /// Loss and accuracy on the evaluation subset.
    fn measure(&self, classifier: &LstmClassifier) -> (f64, f64) {
        let model = classifier.valid();
        let output = classify(
            &model,
            MnistBatch {
                images: self.eval_images.clone(),
                targets: self.eval_targets.clone(),
            },
        );
        let loss = f64::from(output.loss.into_scalar::<f32>());
        let predictions = output.output.argmax(1).flatten::<1>(0, 1);
        let correct = predictions
            .equal(self.eval_targets.clone())
            .int()
            .sum()
            .into_scalar::<i64>();
        (
            loss,
            correct as f64 / self.eval_targets.dims()[0].max(1) as f64,
        )
    }
}
