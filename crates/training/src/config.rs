//! The run configuration: TOML files in `configs/`, fields left out take their defaults, unknown
//! fields are errors, and `--set key=value` overrides any field.
//!
//! Plain serde structs rather than `#[derive(Config)]`, whose deserialisation ignores the
//! declared defaults.

use std::path::{Path, PathBuf};

pub use data::{DataSection, DatasetName, ValidationSource};
use model::LstmClassifierConfig;
use serde::{Deserialize, Serialize};

use crate::TrainingError;

/// Everything a run needs to know.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct ExperimentConfig {
    /// `[model]`: the classifier's own configuration; the fields a section leaves out keep
    /// their defaults.
    #[serde(deserialize_with = "model_section")]
    pub model: LstmClassifierConfig,
    /// Where the data is and how it is split.
    pub data: DataSection,
    /// The training loop.
    pub training: TrainingSection,
    /// Adam.
    pub optimizer: OptimizerSection,
    /// How the learning rate changes over the steps.
    pub schedule: ScheduleSection,
    /// When to stop before the last epoch.
    pub early_stopping: EarlyStoppingSection,
}

/// `[model]` as the classifier's configuration ([`LstmClassifierConfig::from_fields`]); a value
/// that is not a finite number where one is expected is named here, since JSON (the model
/// crate's format) has no NaN.
fn model_section<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<LstmClassifierConfig, D::Error> {
    use serde::de::Error;

    let table = toml::Table::deserialize(deserializer)?;
    if let Some((key, _)) = table
        .iter()
        .find(|(_, value)| value.as_float().is_some_and(|v| !v.is_finite()))
    {
        return Err(D::Error::custom(format!("{key} must be a finite number")));
    }
    let fields = serde_json::to_value(table).map_err(D::Error::custom)?;
    let serde_json::Value::Object(fields) = fields else {
        return Err(D::Error::custom("[model] must be a table"));
    };
    LstmClassifierConfig::from_fields(fields).map_err(D::Error::custom)
}

/// `[training]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainingSection {
    /// Passes over the training images.
    pub epochs: usize,
    /// Images per optimiser step.
    pub batch_size: usize,
    /// Images per batch when validating and testing (no gradients, so larger is fine).
    pub eval_batch_size: usize,
    /// Reshuffle the training images every epoch.
    pub shuffle: bool,
    /// Seeds weight initialisation, dropout and shuffling (default 42, as `configs/default.toml`).
    pub seed: u64,
    /// Print a step line every this many steps (0: never).
    pub log_every: usize,
    /// The step lines report accuracy on the first this many validation images.
    pub log_eval_size: usize,
    /// Checkpoints kept, newest first (at least 1).
    pub keep_checkpoints: usize,
    /// A checkpoint every this many optimiser steps, besides one after every epoch (0: only
    /// after epochs); a killed run loses at most this many steps.
    pub checkpoint_every: usize,
    /// Run directory; default `artifacts/<config file name>`.
    pub artifacts: Option<PathBuf>,
}

impl Default for TrainingSection {
    fn default() -> Self {
        Self {
            epochs: 1,
            batch_size: 64,
            eval_batch_size: 1_000,
            shuffle: true,
            seed: 42,
            log_every: 50,
            log_eval_size: 2_000,
            keep_checkpoints: 2,
            checkpoint_every: 100,
            artifacts: None,
        }
    }
}

/// `[optimizer]`: Adam.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OptimizerSection {
    /// Learning rate.
    pub learning_rate: f64,
    /// First-moment decay.
    pub beta1: f32,
    /// Second-moment decay.
    pub beta2: f32,
    /// Denominator guard; PyTorch's default, 1e-8, rather than Burn's 1e-5.
    pub epsilon: f32,
    /// L2 penalty added to the gradients (0: none).
    pub weight_decay: f32,
    /// Rescale each parameter's gradient to at most this L2 norm (absent: no clipping).
    pub grad_clip_norm: Option<f32>,
    /// Clamp every gradient element to [-value, value] (absent: no clipping).
    pub grad_clip_value: Option<f32>,
}

impl Default for OptimizerSection {
    fn default() -> Self {
        Self {
            learning_rate: 0.01,
            beta1: 0.9,
            beta2: 0.999,
            epsilon: 1e-8,
            weight_decay: 0.0,
            grad_clip_norm: None,
            grad_clip_value: None,
        }
    }
}

impl OptimizerSection {
    /// Burn's Adam configuration for these values.
    pub fn adam(&self) -> burn::optim::AdamConfig {
        use burn::grad_clipping::GradientClippingConfig;

        let clipping = match (self.grad_clip_norm, self.grad_clip_value) {
            (Some(norm), _) => Some(GradientClippingConfig::Norm(norm)),
            (None, Some(value)) => Some(GradientClippingConfig::Value(value)),
            (None, None) => None,
        };
        let adam = burn::optim::AdamConfig::new()
            .with_beta_1(self.beta1)
            .with_beta_2(self.beta2)
            .with_epsilon(self.epsilon)
            .with_grad_clipping(clipping);
        if self.weight_decay > 0.0 {
            adam.with_weight_decay(Some(burn::optim::decay::WeightDecayConfig::new(
                self.weight_decay,
            )))
        } else {
            adam
        }
    }
}

/// The shape of the learning-rate schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ScheduleKind {
    /// `optimizer.learning_rate` throughout.
    #[default]
    Constant,
    /// Multiplied by `gamma` every `step_size` steps.
    Step,
    /// Half a cosine from `optimizer.learning_rate` down to `min_lr` over the run's steps.
    Cosine,
}

/// `[schedule]`: the learning rate per optimiser step (Burn's schedulers), after an optional
/// linear warm-up.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScheduleSection {
    /// `constant`, `step` or `cosine`.
    pub kind: ScheduleKind,
    /// Steps of linear warm-up before the schedule (0: none).
    pub warmup_steps: usize,
    /// The warm-up starts at this fraction of the learning rate.
    pub warmup_start: f64,
    /// `step`: steps between two decays.
    pub step_size: usize,
    /// `step`: the factor of each decay.
    pub gamma: f64,
    /// `cosine`: the learning rate at the last step.
    pub min_lr: f64,
}

impl Default for ScheduleSection {
    fn default() -> Self {
        Self {
            kind: ScheduleKind::Constant,
            warmup_steps: 0,
            warmup_start: 0.1,
            step_size: 1_000,
            gamma: 0.5,
            min_lr: 0.0,
        }
    }
}

/// The validation metric that early stopping watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoppingMetric {
    /// Validation loss, lower is better.
    #[default]
    Loss,
    /// Validation accuracy, higher is better.
    Accuracy,
}

/// `[early_stopping]`: stop when the validation metric has not improved by more than
/// `min_delta` for `patience` epochs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EarlyStoppingSection {
    /// Epochs without improvement before stopping (0: never stop early).
    pub patience: usize,
    /// `loss` or `accuracy`, on the validation split.
    pub metric: StoppingMetric,
    /// The least change that counts as an improvement (loss: absolute; accuracy: in percent
    /// points, as burn-train reports it).
    pub min_delta: f64,
}

impl Default for EarlyStoppingSection {
    fn default() -> Self {
        Self {
            patience: 0,
            metric: StoppingMetric::Loss,
            min_delta: 0.0,
        }
    }
}

impl ExperimentConfig {
    /// Reads a TOML file; errors name the file, the line and the field.
    pub fn load(path: &Path) -> Result<Self, TrainingError> {
        let text = std::fs::read_to_string(path).map_err(|source| TrainingError::Io {
            what: format!("cannot read config {}", path.display()),
            source,
        })?;
        Self::parse(&text, &path.display().to_string())
    }

    /// Parses TOML text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Self, TrainingError> {
        let config: Self = toml::from_str(text).map_err(|error| TrainingError::Config {
            origin: match error.span() {
                Some(span) => {
                    let (line, column) = line_and_column(text, span.start);
                    match key_at(text, span.start) {
                        Some(key) => format!("{origin}:{line}:{column}: {key}"),
                        None => format!("{origin}:{line}:{column}"),
                    }
                }
                None => origin.to_string(),
            },
            message: one_line(error.message()),
        })?;
        config.validate().map_err(|error| match error {
            TrainingError::Config { message, .. } => TrainingError::Config {
                origin: origin.to_string(),
                message,
            },
            other => other,
        })?;
        Ok(config)
    }

    /// Applies `key=value` overrides (`training.epochs=3`, `data.dir="/data"`). The value is
    /// read as TOML and, failing that, as a bare string.
    pub fn with_overrides(self, overrides: &[String]) -> Result<Self, TrainingError> {
        if overrides.is_empty() {
            return Ok(self);
        }
        let mut document = toml::Table::try_from(&self).map_err(|error| TrainingError::Config {
            origin: "configuration".to_string(),
            message: error.to_string(),
        })?;
        for assignment in overrides {
            apply_override(&mut document, assignment)?;
        }
        let config: Self =
            document
                .try_into()
                .map_err(|error: toml::de::Error| TrainingError::Config {
                    origin: format!("--set {}", overrides.join(" --set ")),
                    message: one_line(&error.to_string()),
                })?;
        config.validate()?;
        Ok(config)
    }

    /// The configuration as TOML, every field written out.
    pub fn to_toml(&self) -> String {
        // Serialising plain structs of numbers, strings and paths cannot fail.
        toml::to_string_pretty(self).unwrap_or_else(|error| format!("# unserialisable: {error}\n"))
    }

    /// The configuration as a checkpoint records it: every field that changes what training
    /// computes, without where files are or how often to log and checkpoint. A checkpoint whose
    /// identity differs belongs to another run.
    pub fn checkpoint_identity(&self) -> String {
        let mut identity = self.clone();
        let defaults = TrainingSection::default();
        identity.data.dir = None;
        identity.training.artifacts = None;
        identity.training.log_every = defaults.log_every;
        identity.training.log_eval_size = defaults.log_eval_size;
        identity.training.keep_checkpoints = defaults.keep_checkpoints;
        identity.training.checkpoint_every = defaults.checkpoint_every;
        identity.to_toml()
    }

    /// Range checks that serde cannot express, section by section; the first mistake is the
    /// error.
    pub fn validate(&self) -> Result<(), TrainingError> {
        self.validate_model()
            .and_then(|()| self.validate_training())
            .and_then(|()| self.validate_optimizer())
            .and_then(|()| self.validate_schedule())
            .and_then(|()| self.validate_early_stopping())
            .and_then(|()| self.validate_data())
            .map_err(|message| TrainingError::Config {
                origin: "configuration".to_string(),
                message,
            })
    }

    /// `[model]`: the model crate's own checks, and the shapes MNIST and the reading order fix.
    fn validate_model(&self) -> Result<(), String> {
        self.model
            .validate()
            .map_err(|error| format!("[model] {error}"))?;
        let sequence = self.data.sequence;
        if self.model.input_size != sequence.features() {
            return Err(format!(
                "model.input_size must be {} for data.sequence = \"{sequence}\" ({} steps, {} \
                 values each), got {}",
                sequence.features(),
                sequence.steps(),
                sequence.features(),
                self.model.input_size
            ));
        }
        if self.model.num_classes != data::NUM_CLASSES {
            return Err(format!(
                "model.num_classes must be {} for MNIST, got {}",
                data::NUM_CLASSES,
                self.model.num_classes
            ));
        }
        Ok(())
    }

    /// `[training]`: counts that must be at least one.
    fn validate_training(&self) -> Result<(), String> {
        for (name, value) in [
            ("training.epochs", self.training.epochs),
            ("training.batch_size", self.training.batch_size),
            ("training.eval_batch_size", self.training.eval_batch_size),
        ] {
            if value == 0 {
                return Err(format!("{name} must be at least 1"));
            }
        }
        Ok(())
    }

    /// `[optimizer]`: Adam's ranges and one gradient clipping at most.
    fn validate_optimizer(&self) -> Result<(), String> {
        let optimizer = &self.optimizer;
        if !positive(optimizer.learning_rate) {
            return Err(format!(
                "optimizer.learning_rate must be a positive number, got {}",
                optimizer.learning_rate
            ));
        }
        for (name, value) in [
            ("optimizer.beta1", optimizer.beta1),
            ("optimizer.beta2", optimizer.beta2),
        ] {
            if !(0.0..1.0).contains(&value) {
                return Err(format!("{name} must be in [0, 1), got {value}"));
            }
        }
        if !positive(f64::from(optimizer.epsilon)) {
            return Err(format!(
                "optimizer.epsilon must be positive, got {}",
                optimizer.epsilon
            ));
        }
        if optimizer.weight_decay < 0.0 {
            return Err(format!(
                "optimizer.weight_decay must not be negative, got {}",
                optimizer.weight_decay
            ));
        }
        for (name, value) in [
            ("optimizer.grad_clip_norm", optimizer.grad_clip_norm),
            ("optimizer.grad_clip_value", optimizer.grad_clip_value),
        ] {
            if let Some(value) = value
                && !positive(f64::from(value))
            {
                return Err(format!("{name} must be positive, got {value}"));
            }
        }
        if optimizer.grad_clip_norm.is_some() && optimizer.grad_clip_value.is_some() {
            return Err(
                "set one of optimizer.grad_clip_norm and optimizer.grad_clip_value, not both"
                    .to_string(),
            );
        }
        Ok(())
    }

    /// `[schedule]`: its ranges, against the optimizer's learning rate.
    fn validate_schedule(&self) -> Result<(), String> {
        let schedule = &self.schedule;
        let learning_rate = self.optimizer.learning_rate;
        if schedule.kind != ScheduleKind::Constant && learning_rate > 1.0 {
            return Err(format!(
                "optimizer.learning_rate must be at most 1 with schedule.kind = {:?}, got {}",
                schedule.kind, learning_rate
            ));
        }
        if !(schedule.warmup_start > 0.0 && schedule.warmup_start <= 1.0) {
            return Err(format!(
                "schedule.warmup_start must be in (0, 1], got {}",
                schedule.warmup_start
            ));
        }
        if schedule.kind == ScheduleKind::Step {
            if schedule.step_size == 0 {
                return Err("schedule.step_size must be at least 1".to_string());
            }
            if !positive(schedule.gamma) {
                return Err(format!(
                    "schedule.gamma must be positive, got {}",
                    schedule.gamma
                ));
            }
        }
        if !(schedule.min_lr >= 0.0 && schedule.min_lr <= learning_rate) {
            return Err(format!(
                "schedule.min_lr must be in [0, optimizer.learning_rate], got {}",
                schedule.min_lr
            ));
        }
        Ok(())
    }

    /// `[early_stopping]`: its delta, and a validation split that is not the test set.
    ///
    /// Stopping is model selection: deciding it by the test images would make the test accuracy
    /// the run reports an optimistic one.
    fn validate_early_stopping(&self) -> Result<(), String> {
        let stopping = &self.early_stopping;
        if !(stopping.min_delta.is_finite() && stopping.min_delta >= 0.0) {
            return Err(format!(
                "early_stopping.min_delta must not be negative, got {}",
                stopping.min_delta
            ));
        }
        if stopping.patience > 0 && self.data.validation == ValidationSource::Test {
            return Err(
                "early_stopping.patience > 0 would choose when to stop by the test set: set \
                 data.validation = \"holdout\" (training images held out) or patience = 0"
                    .to_string(),
            );
        }
        Ok(())
    }

    /// `[data]`: normalisation that can be applied.
    fn validate_data(&self) -> Result<(), String> {
        if self.data.normalize && !positive(f64::from(self.data.std)) {
            return Err(format!("data.std must be positive, got {}", self.data.std));
        }
        Ok(())
    }
}

/// 1-based line and column of byte `offset` in `text`.
fn line_and_column(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

/// The `section.key` whose value sits at byte `offset` of `text`, if the offset is in a value.
fn key_at(text: &str, offset: usize) -> Option<String> {
    let before = text.get(..offset)?;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let (key, _) = before[line_start..].split_once('=')?;
    let key = key.trim();
    let section = before[..line_start]
        .lines()
        .rev()
        .map(str::trim)
        .find(|line| line.starts_with('['))
        .map(|line| line.trim_matches(|c| c == '[' || c == ']').trim());
    Some(match section {
        Some(section) => format!("{section}.{key}"),
        None => key.to_string(),
    })
}

/// The lines of a message joined into one, so every error is a single line.
fn one_line(message: &str) -> String {
    message
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect::<Vec<_>>()
        .join(": ")
}

/// A finite number above zero (false for NaN).
fn positive(value: f64) -> bool {
    value.is_finite() && value > 0.0
}

fn apply_override(document: &mut toml::Table, assignment: &str) -> Result<(), TrainingError> {
    let error = |message: String| TrainingError::Config {
        origin: format!("--set {assignment}"),
        message,
    };
    let (key, raw_value) = assignment
        .split_once('=')
        .ok_or_else(|| error("expected key=value, e.g. training.epochs=3".to_string()))?;
    let key = key.trim();
    let raw_value = raw_value.trim();
    let value = parse_value(raw_value);
    let path: Vec<&str> = key.split('.').collect();
    let (field, sections) = path
        .split_last()
        .ok_or_else(|| error("empty key".to_string()))?;
    let mut table = document;
    for section in sections {
        let entry = table
            .entry(section.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        table = entry
            .as_table_mut()
            .ok_or_else(|| error(format!("`{section}` is a value, not a section")))?;
    }
    table.insert(field.to_string(), value);
    Ok(())
}

/// A TOML value, or the text itself as a string (so `data.dir=/tmp/mnist` needs no quotes).
fn parse_value(raw: &str) -> toml::Value {
    toml::from_str::<toml::Table>(&format!("value = {raw}"))
        .ok()
        .and_then(|mut table| table.remove("value"))
        .unwrap_or_else(|| toml::Value::String(raw.to_string()))
}

/// Parses `bytes` as a configuration file; when it parses, writes it back with
/// [`ExperimentConfig::to_toml`] and checks that reads as the same configuration.
///
/// The one body of the `config` fuzz target and of the test that replays its corpus: any input
/// must give a configuration or an error, never a panic; the round trip failing is a bug, and
/// panics so that the fuzzer reports it.
pub fn check_untrusted_config(bytes: &[u8]) {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return;
    };
    if let Ok(config) = ExperimentConfig::parse(text, "untrusted.toml") {
        let written = config.to_toml();
        match ExperimentConfig::parse(&written, "rewritten.toml") {
            Ok(reread) => assert_eq!(reread, config, "round trip changed the configuration"),
            Err(error) => panic!("a valid configuration does not read back: {error}\n{written}"),
        }
    }
}
