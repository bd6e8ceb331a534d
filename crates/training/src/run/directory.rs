//! The run directory: chosen, cleared of an older run's outputs (or searched for the checkpoint
//! to resume from), and given the resolved configuration.

use std::path::{Path, PathBuf};

use super::setup::TrainingData;
use super::{
    ARTIFACTS_ROOT, CONFIG_FILE, MODEL_CONFIG_FILE, MODEL_FILE, RUN_OUTPUTS, Resume, RunOptions,
};
use crate::TrainingError;
use crate::atomic::write_atomically;
use crate::checkpoint::{CheckpointStore, FoundCheckpoint};
use crate::config::ExperimentConfig;
use crate::error::io_error;

/// Where a run writes, and its checkpoints.
pub(super) struct RunDirectory {
    /// The run directory.
    pub(super) dir: PathBuf,
    /// The checkpoints under it, for this configuration.
    pub(super) store: CheckpointStore,
}

/// Run directory: found or made; a fresh run clears what an older one left, a resumed run
/// finds its checkpoint (returned beside the directory); `config.toml` gets the configuration
/// as resolved (the data directory and run directory filled in).
pub(super) fn prepare(
    config: &ExperimentConfig,
    options: &RunOptions,
    data: &TrainingData,
) -> Result<(RunDirectory, Option<FoundCheckpoint>), TrainingError> {
    let dir = run_dir(config, options);
    let training = &config.training;
    let store = CheckpointStore::new(
        &dir,
        config.checkpoint_identity(),
        training.keep_checkpoints,
    );
    let resumed = match &options.resume {
        Some(resume) => Some(find_checkpoint(
            &store,
            resume,
            data.steps_per_epoch,
            options,
        )?),
        None => {
            clear_run_dir(&dir)?;
            None
        }
    };
    let mut resolved = config.clone();
    resolved.data.dir = Some(data.data_dir.clone());
    resolved.training.artifacts = Some(dir.clone());
    write_file(&dir.join(CONFIG_FILE), &resolved.to_toml())?;
    say!(options, "run directory: {}", dir.display());
    Ok((RunDirectory { dir, store }, resumed))
}

/// `--artifacts`, else `training.artifacts`, else `artifacts/<config name>`.
fn run_dir(config: &ExperimentConfig, options: &RunOptions) -> PathBuf {
    options
        .artifacts
        .clone()
        .or_else(|| config.training.artifacts.clone())
        .unwrap_or_else(|| {
            Path::new(ARTIFACTS_ROOT).join(options.config_name.as_deref().unwrap_or("run"))
        })
}

/// The checkpoint `resume` names, checked against this run; warnings are printed.
fn find_checkpoint(
    store: &CheckpointStore,
    resume: &Resume,
    steps_per_epoch: usize,
    options: &RunOptions,
) -> Result<FoundCheckpoint, TrainingError> {
    let mut warnings = Vec::new();
    let found = match resume {
        Resume::Latest => store.latest(&mut warnings),
        Resume::From(path) => store.open(path),
    };
    for warning in &warnings {
        say!(options, "resume: warning: {warning}");
    }
    let found = found?;
    let position = &found.contents.position;
    if position.steps_per_epoch != steps_per_epoch {
        return Err(TrainingError::Resume(format!(
            "{}: written with {} steps per epoch, this run has {steps_per_epoch}",
            found.path.display(),
            position.steps_per_epoch
        )));
    }
    say!(
        options,
        "resuming from {}: {} step(s) done (epoch {}, step {} of {steps_per_epoch})",
        found.path.display(),
        position.global_step,
        position.epochs_done() + 1,
        position.steps_into_epoch()
    );
    Ok(found)
}

/// Creates `run_dir` and removes every output an earlier run left in it.
fn clear_run_dir(run_dir: &Path) -> Result<(), TrainingError> {
    std::fs::create_dir_all(run_dir).map_err(io_error(format!(
        "cannot create run directory {}",
        run_dir.display()
    )))?;
    for name in RUN_OUTPUTS {
        let path = run_dir.join(name);
        let removed = if path.is_dir() {
            std::fs::remove_dir_all(&path)
        } else if path.exists() {
            std::fs::remove_file(&path)
        } else {
            Ok(())
        };
        removed.map_err(io_error(format!(
            "cannot remove {} left by an earlier run",
            path.display()
        )))?;
    }
    Ok(())
}

/// Writes the classifier's weights (`model.bpk`) and hyper-parameters (`model.json`) into the
/// run directory `dir`.
pub(super) fn save_model(
    config: &ExperimentConfig,
    classifier: model::LstmClassifier,
    dir: &Path,
) -> Result<PathBuf, TrainingError> {
    let model_path = dir.join(MODEL_FILE);
    classifier.save(&model_path)?;
    write_file(
        &dir.join(MODEL_CONFIG_FILE),
        &burn::config::config_to_json(&config.model),
    )?;
    Ok(model_path)
}

/// Makes `dir` the run directory of a model trained elsewhere (`mnist-lstm import`): cleared as
/// for a new run, then `config.toml`, `model.json` and `model.bpk` written, which is all `eval`,
/// `predict` and `serve` read. Returns the path of `model.bpk`.
pub fn write_model_run(
    config: &ExperimentConfig,
    classifier: model::LstmClassifier,
    dir: &Path,
) -> Result<PathBuf, TrainingError> {
    config.validate()?;
    clear_run_dir(dir)?;
    write_file(&dir.join(CONFIG_FILE), &config.to_toml())?;
    save_model(config, classifier, dir)
}

/// Writes a file of the run directory whole or not at all.
pub(super) fn write_file(path: &Path, contents: &str) -> Result<(), TrainingError> {
    write_atomically(path, contents.as_bytes())
}
