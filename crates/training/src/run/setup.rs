//! The first steps of a run: the configuration checked against the machine, the device opened,
//! the data found, verified and split.

use std::path::{Path, PathBuf};

use burn::tensor::Device;
use data::{
    DatasetKind, Fetch, MnistFiles, MnistSplits, locate_or_download, standard_candidates,
    verify_files,
};
use model::{Fallback, LstmPath};

use super::RunOptions;
use crate::TrainingError;
use crate::config::ExperimentConfig;
use crate::memory::check_memory;
use inference::{SelectedDevice, select_device};

/// Set-up: the configuration's ranges, then the device, then whether the model fits in the
/// device's memory; says which LSTM path the run takes.
pub(super) fn set_up(
    config: &ExperimentConfig,
    options: &RunOptions,
) -> Result<Device, TrainingError> {
    config.validate()?;
    let selected = select_device(options.device.as_deref())?;
    check_memory(config, selected.kind)?;
    say!(options, "backend: {}", selected.description);
    say!(
        options,
        "lstm: {}",
        lstm_path_line(config, &selected.device)
    );
    Ok(selected.device)
}

/// The data a run trains, validates and tests on.
pub(super) struct TrainingData {
    /// MNIST or Fashion-MNIST.
    pub(super) dataset: DatasetKind,
    /// Where the files were found (canonical).
    pub(super) data_dir: PathBuf,
    /// The train, validation and test splits.
    pub(super) splits: MnistSplits,
    /// Batches of `training.batch_size` in one pass over the training split.
    pub(super) steps_per_epoch: usize,
}

/// Data: the configured data set found where the options and configuration say, its checksums
/// verified (a difference is a warning), split; a batch larger than the training split is
/// refused.
pub(super) fn load_data(
    config: &ExperimentConfig,
    options: &RunOptions,
) -> Result<TrainingData, TrainingError> {
    let dataset = config.data.dataset.kind();
    let files = find_files(config, options)?;
    let splits = MnistSplits::load(&files, &config.data.split_options())?;
    let batch_size = config.training.batch_size;
    if batch_size > splits.train.len() {
        return Err(TrainingError::Config {
            origin: "configuration".to_string(),
            message: format!(
                "training.batch_size ({batch_size}) is larger than the {} training images: lower \
                 it, or raise or remove data.train_limit",
                splits.train.len()
            ),
        });
    }
    let data_dir = data_dir_of(&files);
    say!(
        options,
        "data: {dataset} in {} (train {}, validation {}, test {})",
        data_dir.display(),
        splits.train.len(),
        splits.valid.len(),
        splits.test.len()
    );
    Ok(TrainingData {
        dataset,
        data_dir,
        steps_per_epoch: splits.train.len().div_ceil(batch_size),
        splits,
    })
}

/// The device `options` ask for, announced.
pub(super) fn open_device(options: &RunOptions) -> Result<Device, TrainingError> {
    let SelectedDevice {
        device,
        description,
        ..
    } = select_device(options.device.as_deref())?;
    say!(options, "backend: {description}");
    Ok(device)
}

/// Which computation the model's LSTM runs on `device`, and why.
fn lstm_path_line(config: &ExperimentConfig, device: &Device) -> String {
    match config.model.lstm_path(device) {
        LstmPath::TensorOps(Fallback::TooLarge) => format!(
            "tensor-ops (no LSTM kernel for hidden_size = {} on this device: on a GPU, one batch \
             row's state must fit a cube's shared memory)",
            config.model.hidden_size
        ),
        path => path.to_string(),
    }
}

/// The files of the configured data set, where `options` and the configuration say to look: a
/// directory named by `--data-dir` or `data.dir` is the only place looked at, and then nothing
/// is downloaded.
pub(crate) fn find_files(
    config: &ExperimentConfig,
    options: &RunOptions,
) -> Result<MnistFiles, TrainingError> {
    let dataset = config.data.dataset.kind();
    let candidates =
        standard_candidates(dataset, options.data_dir.clone(), config.data.dir.clone());
    let named_dir = options.data_dir.is_some() || config.data.dir.is_some();
    let fetch = Fetch::standard(dataset, named_dir, options.offline);
    let files = locate_or_download(dataset, &candidates, &fetch)?;
    // Not an error: a subset or a modified copy is a legitimate choice; it is said, though,
    // since results on it are not comparable with published ones.
    let checks = verify_files(dataset, &files).map_err(data::DataError::from)?;
    let differing: Vec<_> = checks.iter().filter(|check| !check.is_verified()).collect();
    if differing.is_empty() {
        say!(
            options,
            "data: {dataset} in {}, SHA-256 of all four files verified",
            data_dir_of(&files).display()
        );
    } else {
        // On standard output with the rest of the run's log: standard error is kept for the
        // one line that says why a command failed.
        for check in differing {
            say!(options, "data: warning: {check}");
        }
    }
    Ok(files)
}

/// The directory the files were found in, canonical where it can be.
pub(crate) fn data_dir_of(files: &MnistFiles) -> PathBuf {
    let dir = files
        .train_images
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    std::fs::canonicalize(&dir).unwrap_or(dir)
}
