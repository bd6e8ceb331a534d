//! The learning-rate schedule and early stopping of `[schedule]` and `[early_stopping]`, built
//! from Burn's own schedulers and burn-train's early-stopping hook.

use burn::lr_scheduler::LrSchedulerConfig;
use burn::lr_scheduler::cosine::CosineAnnealingLrSchedulerConfig;
use burn::lr_scheduler::linear::LinearLrSchedulerConfig;
use burn::lr_scheduler::module_lr_scheduler::{ModuleLrScheduler, ModuleLrSchedulerConfig};
use burn::lr_scheduler::sequential::SequentialLrSchedulerConfig;
use burn::lr_scheduler::step::StepLrSchedulerConfig;
use burn::train::EarlyStoppingStrategy;
use burn::train::metric::store::{Aggregate, EventStoreClient, Split};

use crate::TrainingError;
use crate::config::{EarlyStoppingSection, ExperimentConfig, ScheduleKind, StoppingMetric};

/// Burn's scheduler for the configuration, over `total_steps` optimiser steps.
pub fn lr_scheduler(
    config: &ExperimentConfig,
    total_steps: usize,
) -> Result<ModuleLrScheduler, TrainingError> {
    let lr = config.optimizer.learning_rate;
    let schedule = &config.schedule;
    let warmup = schedule.warmup_steps.min(total_steps.saturating_sub(1));
    let main = match schedule.kind {
        ScheduleKind::Constant => LrSchedulerConfig::Constant(lr),
        ScheduleKind::Step => LrSchedulerConfig::Step(
            StepLrSchedulerConfig::new(lr, schedule.step_size).with_gamma(schedule.gamma),
        ),
        ScheduleKind::Cosine => LrSchedulerConfig::Cosine(
            CosineAnnealingLrSchedulerConfig::new(lr, (total_steps - warmup).max(1))
                .with_min_lr(schedule.min_lr),
        ),
    };
    let with_warmup = if warmup == 0 {
        main
    } else {
        let ramp = LinearLrSchedulerConfig::new(lr * schedule.warmup_start, lr, warmup);
        LrSchedulerConfig::Sequential(SequentialLrSchedulerConfig::new(
            vec![LrSchedulerConfig::Linear(ramp), main],
            vec![warmup],
        ))
    };
    ModuleLrSchedulerConfig::new(with_warmup)
        .init()
        .map_err(|message| TrainingError::Config {
            origin: "[schedule]".to_string(),
            message,
        })
}

/// Early stopping's best validation value so far, as (epoch, value), shared by every clone of
/// the strategy and by the checkpoints that save it.
pub type BestSoFar = std::sync::Arc<std::sync::Mutex<Option<(usize, f64)>>>;

/// burn-train's early-stopping hook with a minimum improvement, which Burn's own
/// `MetricEarlyStoppingStrategy` lacks: stops once the validation metric has gone `patience`
/// epochs without beating its best by more than `min_delta`.
#[derive(Debug, Clone)]
pub struct EarlyStopping {
    metric: StoppingMetric,
    patience: usize,
    min_delta: f64,
    /// Shared by every clone (burn-train holds one, the training loop's checkpoints read it).
    best: BestSoFar,
}

impl EarlyStopping {
    /// The strategy of `[early_stopping]`, or `None` when `patience` is 0.
    pub fn from_config(section: &EarlyStoppingSection) -> Option<Self> {
        (section.patience > 0).then(|| Self {
            metric: section.metric,
            patience: section.patience,
            min_delta: section.min_delta,
            best: Default::default(),
        })
    }

    /// The best validation value so far, as (epoch, value); shared with every clone, so a
    /// checkpoint can save it and a resumed run restore it.
    pub fn best(&self) -> BestSoFar {
        self.best.clone()
    }

    fn metric_name(&self) -> &'static str {
        // The names burn-train's LossMetric and AccuracyMetric report under.
        match self.metric {
            StoppingMetric::Loss => "Loss",
            StoppingMetric::Accuracy => "Accuracy",
        }
    }

    fn improves(&self, value: f64, best: f64) -> bool {
        match self.metric {
            StoppingMetric::Loss => value < best - self.min_delta,
            StoppingMetric::Accuracy => value > best + self.min_delta,
        }
    }
}

impl EarlyStoppingStrategy for EarlyStopping {
    fn should_stop(&mut self, epoch: usize, store: &EventStoreClient) -> bool {
        let Some(value) =
            store.find_metric(self.metric_name(), epoch, Aggregate::Mean, &Split::Valid)
        else {
            return false;
        };
        let Ok(mut best) = self.best.lock() else {
            return false;
        };
        match *best {
            Some((_, best_value)) if !self.improves(value, best_value) => {}
            _ => {
                *best = Some((epoch, value));
                return false;
            }
        }
        let best_epoch = best.map_or(epoch, |(best_epoch, _)| best_epoch);
        epoch - best_epoch >= self.patience
    }
}
