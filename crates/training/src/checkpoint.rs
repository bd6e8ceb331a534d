//! Step checkpoints a run can be resumed from exactly: the model, the optimizer and the
//! learning-rate scheduler as burnpack records, plus where the run stood (`state.json`).
//!
//! Each checkpoint is a directory `<run>/checkpoint/step-<N>` written whole or not at all: its
//! files are written and synced inside a hidden `.partial-step-<N>-<pid>` directory, which is then
//! renamed. `state.json` lists the size and SHA-256 of every other file, so a torn or altered
//! checkpoint is noticed when resuming, and skipped with a warning for the one before it.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use burn::tensor::Bytes;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::TrainingError;
use crate::atomic::sync_dir;
use crate::error::io_error;
use crate::metrics_log::{MetricRow, metrics_csv, parse_metrics_csv};
use crate::trainee::StepRecord;

/// The run directory's folder of checkpoints.
pub const CHECKPOINT_DIR: &str = "checkpoint";
/// What `state.json` says it is; a different value is a foreign file.
const FORMAT: &str = "mnist-lstm checkpoint 1";
const STATE_FILE: &str = "state.json";
const MODEL: &str = "model.bpk";
const OPTIMIZER: &str = "optimizer.bpk";
const SCHEDULER: &str = "scheduler.bpk";
const METRICS: &str = "metrics.csv";
const STEP_PREFIX: &str = "step-";
const PARTIAL_PREFIX: &str = ".partial-";

/// Set to `abort-before-rename:<step>` to abort the process once checkpoint `<step>` is written
/// but before it is renamed into place: how the tests kill a run in the middle of a write.
pub const FAULT_ENV: &str = "MNIST_LSTM_FAULT";

/// Where a run stood when a checkpoint was written, and what it had measured so far.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunPosition {
    /// Optimiser steps done since the start of the run.
    pub global_step: usize,
    /// Steps in an epoch; a checkpoint at a multiple of it was written after that epoch's
    /// validation.
    pub steps_per_epoch: usize,
    /// Set once early stopping ended the run: the epoch it stopped after.
    pub stopped_early_after: Option<usize>,
    /// Early stopping's best validation value so far: (epoch, value).
    pub early_stopping_best: Option<(usize, f64)>,
    /// Seconds of training before this checkpoint (for `elapsed_s` in `metrics.csv`).
    pub elapsed_seconds: f64,
    /// The step lines printed so far.
    pub step_records: Vec<StepRecord>,
}

impl RunPosition {
    /// Epochs whose training and validation are complete.
    pub fn epochs_done(&self) -> usize {
        self.global_step / self.steps_per_epoch.max(1)
    }

    /// Steps done in the epoch under way.
    pub fn steps_into_epoch(&self) -> usize {
        self.global_step % self.steps_per_epoch.max(1)
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct StateFile {
    format: String,
    /// The resolved configuration, less the fields that do not change the computation; a
    /// checkpoint of another configuration is foreign to this run.
    config: String,
    position: RunPosition,
    files: Vec<FileDigest>,
}

#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct FileDigest {
    name: String,
    bytes: u64,
    sha256: String,
}

/// The records and state a checkpoint holds, in memory.
pub struct CheckpointContents {
    /// The learner's model (burnpack bytes of a `ModuleRecord`).
    pub model: Bytes,
    /// The optimizer's state (an `OptimizerRecord`).
    pub optimizer: Bytes,
    /// The scheduler's state (an `LrSchedulerRecord`).
    pub scheduler: Bytes,
    /// Every `metrics.csv` row so far.
    pub metrics: Vec<MetricRow>,
    /// Where the run stood.
    pub position: RunPosition,
}

/// A checkpoint found and checked, ready to resume from.
pub struct FoundCheckpoint {
    /// Its directory.
    pub path: PathBuf,
    /// What it holds.
    pub contents: CheckpointContents,
}

/// Writes and finds the checkpoints of one run.
#[derive(Debug, Clone)]
pub struct CheckpointStore {
    dir: PathBuf,
    config: String,
    keep: usize,
}

fn sha256_hex(bytes: &[u8]) -> String {
    let mut hex = String::with_capacity(64);
    for byte in Sha256::digest(bytes) {
        let _ = write!(hex, "{byte:02x}");
    }
    hex
}

impl CheckpointStore {
    /// The checkpoints of the run in `run_dir`, for a run of configuration `config` (as
    /// `ExperimentConfig::checkpoint_identity` gives it), keeping the newest `keep`.
    pub fn new(run_dir: &Path, config: String, keep: usize) -> Self {
        Self {
            dir: run_dir.join(CHECKPOINT_DIR),
            config,
            keep: keep.max(1),
        }
    }

    /// The folder the checkpoints are in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Writes checkpoint `position.global_step` and removes older ones beyond `keep`. On an
    /// error (a full disk, say) nothing is renamed into place, so the previous checkpoint stays
    /// the newest complete one.
    pub fn write(&self, contents: &CheckpointContents) -> Result<PathBuf, TrainingError> {
        let step = contents.position.global_step;
        let name = format!("{STEP_PREFIX}{step:08}");
        let target = self.dir.join(&name);
        let partial = self
            .dir
            .join(format!("{PARTIAL_PREFIX}{name}-{}", std::process::id()));
        let result = self.write_partial(&partial, contents).and_then(|()| {
            fault_point(step);
            if target.exists() {
                // The same step written again, after a resume from an older checkpoint.
                std::fs::remove_dir_all(&target).map_err(io_error(format!(
                    "cannot replace checkpoint {}",
                    target.display()
                )))?;
            }
            std::fs::rename(&partial, &target).map_err(io_error(format!(
                "cannot move checkpoint {} into place",
                target.display()
            )))
        });
        if let Err(error) = result {
            let _ = std::fs::remove_dir_all(&partial);
            return Err(error);
        }
        sync_dir(&self.dir);
        self.prune();
        Ok(target)
    }

    fn write_partial(
        &self,
        partial: &Path,
        contents: &CheckpointContents,
    ) -> Result<(), TrainingError> {
        std::fs::create_dir_all(partial).map_err(io_error(format!(
            "cannot create checkpoint directory {}",
            partial.display()
        )))?;
        let metrics = metrics_csv(&contents.metrics);
        let files: [(&str, &[u8]); 4] = [
            (MODEL, &contents.model),
            (OPTIMIZER, &contents.optimizer),
            (SCHEDULER, &contents.scheduler),
            (METRICS, metrics.as_bytes()),
        ];
        let mut digests = Vec::with_capacity(files.len() + 1);
        for (name, bytes) in files {
            write_synced(&partial.join(name), bytes)?;
            digests.push(FileDigest {
                name: name.to_string(),
                bytes: bytes.len() as u64,
                sha256: sha256_hex(bytes),
            });
        }
        let state = StateFile {
            format: FORMAT.to_string(),
            config: self.config.clone(),
            position: contents.position.clone(),
            files: digests,
        };
        let json = serde_json::to_string_pretty(&state).map_err(|error| TrainingError::Io {
            what: format!("cannot encode {STATE_FILE}"),
            source: std::io::Error::other(error),
        })?;
        // Last: a directory whose state.json is complete has every other file complete.
        write_synced(&partial.join(STATE_FILE), json.as_bytes())?;
        sync_dir(partial);
        Ok(())
    }

    /// Step numbers of the complete-looking checkpoints, newest first.
    fn steps(&self) -> Vec<(usize, PathBuf)> {
        let mut steps: Vec<(usize, PathBuf)> = std::fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .filter_map(Result::ok)
            .filter_map(|entry| {
                let name = entry.file_name().to_string_lossy().into_owned();
                let step = name.strip_prefix(STEP_PREFIX)?.parse().ok()?;
                Some((step, entry.path()))
            })
            .collect();
        steps.sort_by_key(|(step, _)| std::cmp::Reverse(*step));
        steps
    }

    fn prune(&self) {
        for (_, path) in self.steps().into_iter().skip(self.keep) {
            let _ = std::fs::remove_dir_all(path);
        }
    }

    /// The newest checkpoint that is complete, intact and of this configuration. What is
    /// skipped on the way (a write cut short, a torn or altered file, another run's checkpoint,
    /// something that is no checkpoint) is described in `warnings`; partial directories are
    /// removed.
    pub fn latest(&self, warnings: &mut Vec<String>) -> Result<FoundCheckpoint, TrainingError> {
        let entries = std::fs::read_dir(&self.dir).map_err(|error| {
            TrainingError::Resume(format!(
                "no checkpoint in {} ({error}): is this the run directory of an interrupted \
                 run? Start without --resume for a new run",
                self.dir.display()
            ))
        })?;
        for entry in entries.filter_map(Result::ok) {
            let name = entry.file_name().to_string_lossy().into_owned();
            let path = entry.path();
            if name.starts_with(PARTIAL_PREFIX) {
                warnings.push(format!(
                    "{}: a checkpoint whose write did not finish; removed",
                    path.display()
                ));
                let _ = std::fs::remove_dir_all(&path);
            } else if !(name.starts_with(STEP_PREFIX)
                && name[STEP_PREFIX.len()..].parse::<usize>().is_ok())
            {
                warnings.push(format!("{}: not a checkpoint; skipped", path.display()));
            }
        }
        for (_, path) in self.steps() {
            match self.read(&path) {
                Ok(contents) => return Ok(FoundCheckpoint { path, contents }),
                Err(why) => warnings.push(format!("{}: {why}; skipped", path.display())),
            }
        }
        Err(TrainingError::Resume(format!(
            "no usable checkpoint in {}{}",
            self.dir.display(),
            if warnings.is_empty() {
                String::new()
            } else {
                format!(" ({})", warnings.join("; "))
            }
        )))
    }

    /// The checkpoint in `path`, checked; an error says what is wrong with it.
    pub fn open(&self, path: &Path) -> Result<FoundCheckpoint, TrainingError> {
        self.read(path)
            .map(|contents| FoundCheckpoint {
                path: path.to_path_buf(),
                contents,
            })
            .map_err(|why| TrainingError::Resume(format!("{}: {why}", path.display())))
    }

    fn read(&self, path: &Path) -> Result<CheckpointContents, String> {
        let state_path = path.join(STATE_FILE);
        let text = std::fs::read_to_string(&state_path)
            .map_err(|error| format!("cannot read {STATE_FILE}: {error}"))?;
        let state: StateFile = serde_json::from_str(&text)
            .map_err(|error| format!("{STATE_FILE} is torn or not a checkpoint's ({error})"))?;
        if state.format != FORMAT {
            return Err(format!(
                "written by something else ({STATE_FILE} says `{}`, expected `{FORMAT}`)",
                state.format
            ));
        }
        if state.config != self.config {
            return Err(format!(
                "written by a run of another configuration ({})",
                first_difference(&state.config, &self.config)
            ));
        }
        let read_checked = |name: &str| -> Result<Vec<u8>, String> {
            let digest = state
                .files
                .iter()
                .find(|file| file.name == name)
                .ok_or_else(|| format!("{STATE_FILE} does not list {name}"))?;
            let bytes = std::fs::read(path.join(name))
                .map_err(|error| format!("cannot read {name}: {error}"))?;
            if bytes.len() as u64 != digest.bytes || sha256_hex(&bytes) != digest.sha256 {
                return Err(format!(
                    "{name} is torn or altered ({} bytes, {} expected, or a different SHA-256)",
                    bytes.len(),
                    digest.bytes
                ));
            }
            Ok(bytes)
        };
        let model = read_checked(MODEL)?;
        let optimizer = read_checked(OPTIMIZER)?;
        let scheduler = read_checked(SCHEDULER)?;
        let metrics = read_checked(METRICS)?;
        let metrics = String::from_utf8(metrics)
            .map_err(|_| format!("{METRICS} is not text"))
            .and_then(|text| {
                parse_metrics_csv(&text).map_err(|error| format!("{METRICS}: {error}"))
            })?;
        Ok(CheckpointContents {
            model: Bytes::from_bytes_vec(model),
            optimizer: Bytes::from_bytes_vec(optimizer),
            scheduler: Bytes::from_bytes_vec(scheduler),
            metrics,
            position: state.position,
        })
    }
}

/// The first line where two configurations differ, for a message.
fn first_difference(checkpoint: &str, current: &str) -> String {
    let mut theirs = checkpoint.lines();
    let mut ours = current.lines();
    loop {
        match (theirs.next(), ours.next()) {
            (Some(a), Some(b)) if a == b => continue,
            (a, b) => {
                return format!(
                    "checkpoint: `{}`, this run: `{}`",
                    a.unwrap_or("(end)").trim(),
                    b.unwrap_or("(end)").trim()
                );
            }
        }
    }
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), TrainingError> {
    let what = || format!("cannot write checkpoint file {}", path.display());
    let mut file = std::fs::File::create(path).map_err(io_error(what()))?;
    file.write_all(bytes).map_err(io_error(what()))?;
    file.sync_all().map_err(io_error(what()))
}

/// The test hook of [`FAULT_ENV`].
fn fault_point(step: usize) {
    if let Ok(fault) = std::env::var(FAULT_ENV)
        && fault
            .strip_prefix("abort-before-rename:")
            .and_then(|at| at.parse::<usize>().ok())
            == Some(step)
    {
        eprintln!("{FAULT_ENV}: aborting before checkpoint {step} is renamed into place");
        std::process::abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::atomic::tests::listing as names;

    fn contents(step: usize) -> CheckpointContents {
        CheckpointContents {
            model: Bytes::from_bytes_vec(vec![1, 2, 3, step as u8]),
            optimizer: Bytes::from_bytes_vec(vec![4, 5]),
            scheduler: Bytes::from_bytes_vec(vec![6]),
            metrics: Vec::new(),
            position: RunPosition {
                global_step: step,
                steps_per_epoch: 10,
                stopped_early_after: None,
                early_stopping_best: None,
                elapsed_seconds: 1.5,
                step_records: Vec::new(),
            },
        }
    }

    #[test]
    fn keeps_the_newest_and_finds_the_latest() {
        let run = tempfile::tempdir().unwrap();
        let store = CheckpointStore::new(run.path(), "a = 1".into(), 2);
        for step in [5, 10, 15] {
            store.write(&contents(step)).unwrap();
        }
        assert_eq!(names(store.dir()), ["step-00000010", "step-00000015"]);
        let mut warnings = Vec::new();
        let found = store.latest(&mut warnings).unwrap();
        assert_eq!(found.contents.position.global_step, 15);
        assert_eq!(&found.contents.model[..], &[1, 2, 3, 15]);
        assert!(warnings.is_empty(), "{warnings:?}");
    }

    #[test]
    fn skips_torn_foreign_and_partial_checkpoints_with_warnings() {
        let run = tempfile::tempdir().unwrap();
        let store = CheckpointStore::new(run.path(), "a = 1".into(), 5);
        for step in [5, 10, 15, 20] {
            store.write(&contents(step)).unwrap();
        }
        // 20: a torn model file; 15: another configuration's; a partial write; a stray file.
        std::fs::write(store.dir().join("step-00000020").join(MODEL), [1, 2]).unwrap();
        CheckpointStore::new(run.path(), "a = 2".into(), 5)
            .write(&contents(15))
            .unwrap();
        std::fs::create_dir(store.dir().join(".partial-step-00000025-1")).unwrap();
        std::fs::write(store.dir().join("notes.txt"), "hello").unwrap();

        let mut warnings = Vec::new();
        let found = store.latest(&mut warnings).unwrap();
        assert_eq!(found.contents.position.global_step, 10);
        let all = warnings.join("\n");
        assert!(all.contains("did not finish; removed"), "{all}");
        assert!(all.contains("notes.txt: not a checkpoint"), "{all}");
        assert!(all.contains("model.bpk is torn or altered"), "{all}");
        assert!(
            all.contains("another configuration (checkpoint: `a = 2`, this run: `a = 1`)"),
            "{all}"
        );
        assert!(!store.dir().join(".partial-step-00000025-1").exists());
    }

    #[test]
    fn a_failed_write_leaves_the_previous_checkpoint_newest() {
        let run = tempfile::tempdir().unwrap();
        let store = CheckpointStore::new(run.path(), "a = 1".into(), 5);
        store.write(&contents(5)).unwrap();
        // A file where the partial directory must go makes the write fail, as a full disk would.
        let blocker = store
            .dir()
            .join(format!(".partial-step-00000010-{}", std::process::id()));
        std::fs::write(&blocker, "in the way").unwrap();
        let error = store.write(&contents(10)).err().unwrap();
        assert!(error.to_string().contains("cannot"), "{error}");
        assert!(!store.dir().join("step-00000010").exists());
        let mut warnings = Vec::new();
        assert_eq!(
            store
                .latest(&mut warnings)
                .unwrap()
                .contents
                .position
                .global_step,
            5
        );
    }
}
