//! burn-train's single-device training loop, as our own `SupervisedLearningStrategy`, so that a
//! run can stop at any step and start again where it stood:
//! - a checkpoint every `checkpoint_every` steps and after every epoch's validation;
//! - a stop request (Ctrl-C) honoured after the step under way, with a checkpoint first;
//! - the backend's random state re-seeded from (seed, step) before every step, so dropout draws
//!   the same masks in a resumed run as in an uninterrupted one;
//! - a resumed run draws each epoch's shuffle from burn's data loader exactly as the first run
//!   did, and skips the batches already trained on.
//!
//! The rest is burn-train's: the Learner's step, optimizer and scheduler, the event processor
//! and its metrics, the early-stopping hook.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use burn::lr_scheduler::LrSchedulerRecord;
use burn::module::Module as _;
use burn::optim::OptimizerRecord;
use burn::store::ModuleRecord;
use burn::tensor::Device;
use burn::train::checkpoint::{
    AsyncCheckpointer, Checkpoint, Checkpointer, CheckpointerError, CheckpointingAction,
    CheckpointingStrategy,
};
use burn::train::metric::store::EventStoreClient;
use burn::train::{
    CloneEarlyStoppingStrategy, EventProcessorTraining as _, InferenceStep, Interrupter, Learner,
    LearnerEvent, LearningCheckpointer, SupervisedLearningStrategy,
    SupervisedTrainingEventProcessor, TrainLoader, TrainingComponents, TrainingItem, ValidLoader,
};

use crate::TrainingError;
use crate::checkpoint::{CheckpointContents, CheckpointStore, RunPosition};
use crate::metrics_log::MetricsLog;
use crate::schedule::BestSoFar;
use crate::trainee::{StepProbe, Trainee};

/// Asks a run to stop after the step under way, with a checkpoint; what the CLI's Ctrl-C
/// handler sets. Clones share one state.
#[derive(Debug, Clone, Default)]
pub struct StopRequest {
    requested: Arc<AtomicBool>,
    /// Set while the training loop runs: only then is there a step to finish and a checkpoint
    /// to write; before and after it, a signal handler may simply exit.
    training: Arc<AtomicBool>,
}

impl StopRequest {
    /// A request not yet made.
    pub fn new() -> Self {
        Self::default()
    }

    /// Asks the run to stop.
    pub fn request(&self) {
        self.requested.store(true, Ordering::SeqCst);
    }

    /// Whether a stop was asked for.
    pub fn is_requested(&self) -> bool {
        self.requested.load(Ordering::SeqCst)
    }

    /// Whether the training loop is running, so that a stop is honoured with a checkpoint.
    pub fn is_training(&self) -> bool {
        self.training.load(Ordering::SeqCst)
    }

    fn set_training(&self, training: bool) {
        self.training.store(training, Ordering::SeqCst);
    }
}

/// How the loop ended, beyond what burn-train's result says.
#[derive(Debug, Default)]
pub struct LoopReport {
    /// The newest checkpoint written, if any.
    pub last_checkpoint: Option<std::path::PathBuf>,
    /// Set when a stop request ended the run: the steps done.
    pub stopped_at_step: Option<usize>,
    /// A checkpoint that could not be written; training stopped there.
    pub checkpoint_error: Option<TrainingError>,
    /// Set when early stopping ended the run: the epoch after which it stopped.
    pub stopped_early_after: Option<usize>,
}

/// The loop and what it needs besides burn-train's components.
pub struct ResumableTraining {
    /// The device to train on, with autodiff.
    pub device: Device,
    /// The same device, for re-seeding.
    pub base_device: Device,
    /// The run's seed.
    pub seed: u64,
    /// Optimiser steps in an epoch.
    pub steps_per_epoch: usize,
    /// A checkpoint every this many steps (0: only at the end of epochs).
    pub checkpoint_every: usize,
    /// Where checkpoints go.
    pub store: CheckpointStore,
    /// Where a resumed run starts (`None`: from the beginning).
    pub start: Option<RunPosition>,
    /// The Ctrl-C flag.
    pub stop: StopRequest,
    /// The rows of `metrics.csv`, saved in every checkpoint.
    pub log: Arc<MetricsLog>,
    /// The step lines, saved in every checkpoint.
    pub probe: Arc<StepProbe>,
    /// Early stopping's best value so far, shared with the strategy burn-train holds.
    pub early_stopping_best: Option<BestSoFar>,
    /// Filled as the loop ends.
    pub report: Arc<Mutex<LoopReport>>,
}

/// The random state of step `global_step` of a run seeded with `seed`.
fn step_seed(seed: u64, global_step: usize) -> u64 {
    seed ^ (global_step as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// A checkpointer that hands the record over in memory: burn-train's `LearningCheckpointer` is
/// the public way to read the learner's optimizer and scheduler state.
struct Handover<R> {
    slot: Arc<(Mutex<Option<R>>, Condvar)>,
}

impl<R: Checkpoint> Checkpointer<R> for Handover<R> {
    fn save(&self, _step: usize, record: R) -> Result<(), CheckpointerError> {
        let (slot, ready) = &*self.slot;
        if let Ok(mut slot) = slot.lock() {
            *slot = Some(record);
        }
        ready.notify_all();
        Ok(())
    }

    fn delete(&self, _step: usize) -> Result<(), CheckpointerError> {
        Ok(())
    }

    fn restore(&self, _step: usize) -> Result<R, CheckpointerError> {
        Err(CheckpointerError::Unknown(
            "checkpoints are read by the run's CheckpointStore".to_string(),
        ))
    }
}

struct SaveEveryTime;

impl CheckpointingStrategy for SaveEveryTime {
    fn checkpointing(&mut self, _step: usize, _: &EventStoreClient) -> Vec<CheckpointingAction> {
        vec![CheckpointingAction::Save]
    }
}

type Slot<R> = Arc<(Mutex<Option<R>>, Condvar)>;

fn wait_for<R>(slot: &Slot<R>) -> Option<R> {
    let (slot, ready) = &**slot;
    let mut guard = slot.lock().ok()?;
    loop {
        if let Some(record) = guard.take() {
            return Some(record);
        }
        guard = ready.wait(guard).ok()?;
    }
}

/// The learner's three records, taken through burn-train's checkpointer.
struct RecordTap {
    checkpointer: LearningCheckpointer<Trainee>,
    model: Slot<ModuleRecord>,
    optimizer: Slot<OptimizerRecord>,
    scheduler: Slot<LrSchedulerRecord>,
}

impl RecordTap {
    fn new() -> Self {
        let model = Slot::default();
        let optimizer = Slot::default();
        let scheduler = Slot::default();
        let checkpointer = LearningCheckpointer::new(
            AsyncCheckpointer::new(Handover {
                slot: model.clone(),
            }),
            AsyncCheckpointer::new(Handover {
                slot: optimizer.clone(),
            }),
            AsyncCheckpointer::new(Handover {
                slot: scheduler.clone(),
            }),
            Box::new(SaveEveryTime),
        );
        Self {
            checkpointer,
            model,
            optimizer,
            scheduler,
        }
    }

    fn take(
        &mut self,
        learner: &Learner<Trainee>,
        step: usize,
        store: &EventStoreClient,
    ) -> Result<(ModuleRecord, OptimizerRecord, LrSchedulerRecord), TrainingError> {
        self.checkpointer.checkpoint(learner, step, store);
        let lost =
            || TrainingError::Checkpoint("the learner's records were not handed over".into());
        Ok((
            wait_for(&self.model).ok_or_else(lost)?,
            wait_for(&self.optimizer).ok_or_else(lost)?,
            wait_for(&self.scheduler).ok_or_else(lost)?,
        ))
    }
}

impl ResumableTraining {
    fn report(&self, update: impl FnOnce(&mut LoopReport)) {
        if let Ok(mut report) = self.report.lock() {
            update(&mut report);
        }
    }

    /// Writes the checkpoint of step `global_step`; false (and the run told to stop) on failure.
    fn checkpoint(
        &self,
        state: &mut LoopState<'_>,
        global_step: usize,
        stopped_early_after: Option<usize>,
    ) -> bool {
        // Every metric of the steps so far must be in the log the checkpoint keeps.
        state.interrupter.fail_on_error(state.processor.flush());
        let written = state
            .tap
            .take(state.learner, global_step, state.event_store)
            .and_then(|(model, optimizer, scheduler)| {
                let encode = |result: Result<burn::tensor::Bytes, burn::store::RecordError>| {
                    result.map_err(|error| TrainingError::Checkpoint(error.to_string()))
                };
                let contents = CheckpointContents {
                    model: encode(model.into_bytes())?,
                    optimizer: encode(optimizer.into_bytes())?,
                    scheduler: encode(scheduler.into_bytes())?,
                    metrics: self.log.rows(),
                    position: RunPosition {
                        global_step,
                        steps_per_epoch: self.steps_per_epoch,
                        stopped_early_after,
                        early_stopping_best: self
                            .early_stopping_best
                            .as_ref()
                            .and_then(|best| best.lock().ok().and_then(|best| *best)),
                        elapsed_seconds: self.log.elapsed_seconds(),
                        step_records: self.probe.records(),
                    },
                };
                self.store.write(&contents)
            });
        match written {
            Ok(path) => {
                self.report(|report| report.last_checkpoint = Some(path));
                true
            }
            Err(error) => {
                self.report(|report| report.checkpoint_error = Some(error));
                state
                    .interrupter
                    .stop(Some("a checkpoint could not be written"));
                false
            }
        }
    }

    fn stop_here(&self, global_step: usize, interrupter: &Interrupter) {
        self.report(|report| report.stopped_at_step = Some(global_step));
        interrupter.stop(Some("stop requested"));
    }
}

impl SupervisedLearningStrategy<Trainee> for ResumableTraining {
    fn fit(
        &self,
        components: TrainingComponents<Trainee>,
        mut learner: Learner<Trainee>,
        dataloader_train: TrainLoader<Trainee>,
        dataloader_valid: ValidLoader<Trainee>,
        _starting_epoch: usize,
    ) -> (Trainee, SupervisedTrainingEventProcessor<Trainee>) {
        // As burn-train's single-device strategy does, so the shuffles are the same as its.
        let train = dataloader_train.to_device(&self.device);
        let valid = dataloader_valid.to_device(&self.device.clone().inner());
        learner.fork(&self.device);
        let num_epochs = components.num_epochs;
        let mut processor = components.event_processor;
        let interrupter = components.interrupter;
        let event_store = components.event_store;
        let mut early_stopping = components.early_stopping;

        self.stop.set_training(true);
        let mut state = LoopState {
            learner: &mut learner,
            processor: &mut processor,
            interrupter: &interrupter,
            event_store: &event_store,
            tap: RecordTap::new(),
        };
        self.train_epochs(
            &mut state,
            (&train, &valid),
            &mut early_stopping,
            num_epochs,
        );
        drop(state);
        self.stop.set_training(false);
        (learner.model(), processor)
    }
}

/// What the loop works with, borrowed from burn-train for the run.
struct LoopState<'a> {
    learner: &'a mut Learner<Trainee>,
    processor: &'a mut SupervisedTrainingEventProcessor<Trainee>,
    interrupter: &'a Interrupter,
    event_store: &'a EventStoreClient,
    tap: RecordTap,
}

impl ResumableTraining {
    /// The epochs, from where the run stands: each trained (from a resumed step on), validated,
    /// then checkpointed; any step may end the run (a failure, a stop request, early stopping).
    fn train_epochs(
        &self,
        state: &mut LoopState<'_>,
        loaders: (&TrainLoader<Trainee>, &ValidLoader<Trainee>),
        early_stopping: &mut Option<Box<dyn CloneEarlyStoppingStrategy>>,
        num_epochs: usize,
    ) {
        let (train, valid) = loaders;
        let start = self.start.as_ref();
        if let Some(epoch) = start.and_then(|start| start.stopped_early_after) {
            self.report(|report| report.stopped_early_after = Some(epoch));
            return;
        }
        let steps_per_epoch = self.steps_per_epoch.max(1);
        let done = start.map_or(0, |start| start.global_step);
        let first_epoch = done / steps_per_epoch + 1;
        for epoch in 1..=num_epochs {
            if epoch < first_epoch {
                // Made and dropped: each epoch's iterator draws the next shuffle, so a resumed
                // run sees the shuffles an uninterrupted one saw.
                drop(train.iter());
                continue;
            }
            let trained_before = if epoch == first_epoch {
                done % steps_per_epoch
            } else {
                0
            };
            let went_on = self.train_epoch(state, train, epoch, trained_before)
                && self.validate_epoch(state, valid, epoch)
                && self.end_epoch(state, early_stopping, epoch, num_epochs);
            if !went_on {
                break;
            }
        }
    }

    /// One epoch's training steps, the first `trained_before` batches skipped: each step
    /// seeded from (seed, step), a checkpoint when one is due or a stop was asked for. False
    /// when the run must end here.
    fn train_epoch(
        &self,
        state: &mut LoopState<'_>,
        train: &TrainLoader<Trainee>,
        epoch: usize,
        trained_before: usize,
    ) -> bool {
        let interrupter = state.interrupter;
        let steps_per_epoch = self.steps_per_epoch.max(1);
        let mut batches = train.iter();
        let mut iteration = 0;
        while iteration < trained_before && batches.next().is_some() {
            iteration += 1;
        }
        interrupter.fail_on_error(state.processor.process_train(LearnerEvent::StartSplit {
            epoch_number: epoch,
            total_items: train.num_items(),
        }));
        while let Some(item) = batches.next() {
            let item = match item {
                Ok(item) => item,
                Err(error) => {
                    interrupter.fail(error);
                    break;
                }
            };
            iteration += 1;
            let global_step = (epoch - 1) * steps_per_epoch + iteration;
            self.base_device.seed(step_seed(self.seed, global_step));
            let progress = batches.progress();
            let learner = &mut *state.learner;
            let output = learner.train_step(item);
            learner.lr_step();
            learner.optimizer_step(output.grads);
            let item = TrainingItem::new(
                output.item,
                progress,
                Some(iteration),
                Some(learner.lr_current()),
            );
            interrupter.fail_on_error(
                state
                    .processor
                    .process_train(LearnerEvent::ProcessedItem(item)),
            );
            // A non-finite loss or a failure: stop, and keep the last good checkpoint.
            if interrupter.should_stop() {
                break;
            }
            // The epoch's last step is checkpointed after its validation, in `end_epoch`.
            let stop_requested = self.stop.is_requested();
            let due =
                self.checkpoint_every > 0 && global_step.is_multiple_of(self.checkpoint_every);
            if iteration < steps_per_epoch && (stop_requested || due) {
                if !self.checkpoint(state, global_step, None) {
                    break;
                }
                if stop_requested {
                    self.stop_here(global_step, interrupter);
                    break;
                }
            }
        }
        interrupter.fail_on_error(state.processor.process_train(LearnerEvent::EndSplit(epoch)));
        !interrupter.should_stop()
    }

    /// The epoch's validation pass, as burn-train's own loop runs it. False when the run must
    /// end here.
    fn validate_epoch(
        &self,
        state: &mut LoopState<'_>,
        valid: &ValidLoader<Trainee>,
        epoch: usize,
    ) -> bool {
        let interrupter = state.interrupter;
        let processor = &mut *state.processor;
        interrupter.fail_on_error(processor.process_valid(LearnerEvent::StartSplit {
            epoch_number: epoch,
            total_items: valid.num_items(),
        }));
        let model = state.learner.model().valid();
        let mut batches = valid.iter();
        let mut iteration = 0;
        while let Some(item) = batches.next() {
            let item = match item {
                Ok(item) => item,
                Err(error) => {
                    interrupter.fail(error);
                    break;
                }
            };
            iteration += 1;
            let progress = batches.progress();
            let output = InferenceStep::step(&model, item);
            let item = TrainingItem::new(output, progress, Some(iteration), None);
            interrupter.fail_on_error(processor.process_valid(LearnerEvent::ProcessedItem(item)));
            if interrupter.should_stop() {
                break;
            }
        }
        interrupter.fail_on_error(processor.process_valid(LearnerEvent::EndSplit(epoch)));
        interrupter.fail_on_error(processor.process_train(LearnerEvent::EndEpoch(epoch)));
        interrupter.fail_on_error(processor.flush());
        !interrupter.should_stop()
    }

    /// After validation: early stopping asked, the epoch's checkpoint written, a stop request
    /// honoured. False when the run ends here.
    fn end_epoch(
        &self,
        state: &mut LoopState<'_>,
        early_stopping: &mut Option<Box<dyn CloneEarlyStoppingStrategy>>,
        epoch: usize,
        num_epochs: usize,
    ) -> bool {
        let stop_early = early_stopping
            .as_mut()
            .is_some_and(|strategy| strategy.should_stop(epoch, state.event_store));
        let global_step = epoch * self.steps_per_epoch.max(1);
        if !self.checkpoint(state, global_step, stop_early.then_some(epoch)) {
            return false;
        }
        if stop_early {
            self.report(|report| report.stopped_early_after = Some(epoch));
            return false;
        }
        if self.stop.is_requested() && epoch < num_epochs {
            self.stop_here(global_step, state.interrupter);
            return false;
        }
        true
    }
}
