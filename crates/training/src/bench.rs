//! Measuring speed, memory and accuracy of one backend, for `mnist-lstm bench` and
//! `cargo xtask bench cpu` (which compares the backends and the PyTorch tutorial,
//! `bench/pytorch/tutorial.py`; the two print the same JSON fields).
//!
//! Three phases, in this order, in one process:
//!
//! 1. **train**: a fresh model takes `warmup_steps` Adam steps, then `steps` timed ones, on
//!    batches of `training.batch_size` training images in file order (wrapping around). A step is
//!    what the learner does for one batch, without burn-train around it: build the batch, forward,
//!    cross-entropy, backward, Adam. The clock stops after the last loss is read back.
//! 2. **infer**: a fresh model classifies the first `infer_images` test images in batches of
//!    `infer_batch_size`, prepared as tensors beforehand; one warm-up batch, then the timed
//!    forward passes, each argmax read back.
//! 3. **epoch** (unless disabled): [`train`](crate::train) with the configuration, as
//!    `mnist-lstm train` runs it, into a scratch run directory; the time is burn-train's
//!    learner (the training epochs with the step lines every `log_every` steps, and the
//!    validation pass), not data loading, saving or the final test evaluation, whose accuracy is
//!    reported.
//!
//! Peak memory is the process's peak resident set (VmHWM) at the end, so it covers all three.

use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::data::dataloader::batcher::Batcher;
use burn::optim::GradientsParams;
use burn::tensor::Tensor;
use data::{MnistDataset, MnistSplits};
use serde::Serialize;

use crate::TrainingError;
use crate::config::ExperimentConfig;
use crate::error::io_error;
use crate::memory::check_memory;
use crate::run::{RunOptions, data_dir_of, find_files, train};
use crate::trainee::classify;
use inference::select_device;

/// What to measure, besides the configuration.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// Untimed Adam steps before the timed ones (first-use allocations, caches).
    pub warmup_steps: usize,
    /// Timed Adam steps.
    pub steps: usize,
    /// Images per inference batch.
    pub infer_batch_size: usize,
    /// Test images classified in the timed inference (at most the test split).
    pub infer_images: usize,
    /// Also time a full run of the configuration (an epoch for the default one).
    pub epoch: bool,
    /// Run directory for the epoch; default a scratch directory removed afterwards.
    pub artifacts: Option<PathBuf>,
}

impl Default for BenchOptions {
    fn default() -> Self {
        Self {
            warmup_steps: 20,
            steps: 200,
            infer_batch_size: 1_000,
            infer_images: 10_000,
            epoch: true,
            artifacts: None,
        }
    }
}

/// The figures of one process; field names shared with `bench/pytorch/tutorial.py`.
#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    /// `burn` here (`pytorch` for the reference script).
    pub implementation: String,
    /// The backend measured: `flex`, `ndarray` or `wgpu`.
    pub backend: String,
    /// The device: the CPU backend, or the GPU adapter and its driver.
    pub device: String,
    /// The LSTM's computation on it: `kernel` or `tensor-ops` (`model::LstmPath`),
    /// so that a GPU run that fell back to tensor operations says so.
    pub lstm_path: String,
    /// This program's name and version.
    pub version: String,
    /// Worker threads: `RAYON_NUM_THREADS` when set, else the cores available.
    pub threads: usize,
    /// The configuration's `training.seed`.
    pub seed: u64,
    /// Images per training step.
    pub batch_size: usize,
    /// Untimed steps.
    pub train_warmup_steps: usize,
    /// Timed steps.
    pub train_steps: usize,
    /// Seconds of the timed steps.
    pub train_seconds: f64,
    /// `train_steps * batch_size / train_seconds`.
    pub train_images_per_second: f64,
    /// Images per inference batch.
    pub infer_batch_size: usize,
    /// Images classified in the timed inference.
    pub infer_images: usize,
    /// Seconds of the timed inference.
    pub infer_seconds: f64,
    /// `infer_images / infer_seconds`.
    pub infer_images_per_second: f64,
    /// Training images per epoch, when the epoch ran.
    pub epoch_train_images: Option<usize>,
    /// Seconds in the learner (all epochs of the configuration and their validation).
    pub epoch_seconds: Option<f64>,
    /// `epoch_train_images * epochs / epoch_seconds`.
    pub epoch_images_per_second: Option<f64>,
    /// Test images of the final evaluation.
    pub test_images: Option<usize>,
    /// Accuracy of the trained model on them, in [0, 1].
    pub test_accuracy: Option<f64>,
    /// Peak resident set of this process, in bytes (Linux only).
    pub peak_rss_bytes: Option<u64>,
    /// The directory the MNIST files were read from.
    pub data_dir: String,
}

impl BenchReport {
    /// Pretty-printed JSON.
    pub fn to_json(&self) -> String {
        // A struct of numbers and strings always serialises; the fallback is never reached.
        serde_json::to_string_pretty(self)
            .unwrap_or_else(|error| format!("{{\"error\": \"{error}\"}}"))
    }

    /// Writes [`to_json`](Self::to_json) to `path`, creating its directory.
    pub fn write_json(&self, path: &Path) -> Result<(), TrainingError> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .map_err(io_error(format!("cannot create {}", parent.display())))?;
        }
        std::fs::write(path, self.to_json() + "\n")
            .map_err(io_error(format!("cannot write {}", path.display())))
    }
}

/// Measures the backend `options.device` selects; see the module documentation for what is
/// timed.
pub fn bench(
    config: &ExperimentConfig,
    options: &RunOptions,
    bench: &BenchOptions,
) -> Result<BenchReport, TrainingError> {
    config.validate()?;
    if bench.steps == 0 || bench.infer_batch_size == 0 || bench.infer_images == 0 {
        return Err(TrainingError::InvalidInput(
            "bench: steps, infer batch size and infer images must each be at least 1".to_string(),
        ));
    }
    let selected = select_device(options.device.as_deref())?;
    check_memory(config, selected.kind)?;
    let device = selected.device;
    let lstm_path = config.model.lstm_path(&device);

    let files = find_files(config, options)?;
    let data_dir = data_dir_of(&files);
    let splits = MnistSplits::load(&files, &config.data.split_options())?;
    let batch_size = config.training.batch_size;
    if batch_size > splits.train.len() || splits.test.is_empty() {
        return Err(TrainingError::InvalidInput(format!(
            "bench: {} training images for batches of {batch_size}, {} test images",
            splits.train.len(),
            splits.test.len()
        )));
    }

    let train_seconds = time_training(config, bench, &device, &splits.train);
    let (infer_images, infer_seconds) = time_inference(config, bench, &device, &splits.test);

    let mut report = BenchReport {
        implementation: "burn".to_string(),
        backend: selected.kind.name().to_string(),
        device: selected.description.clone(),
        lstm_path: lstm_path.name().to_string(),
        version: concat!("mnist-lstm ", env!("CARGO_PKG_VERSION")).to_string(),
        threads: threads(),
        seed: config.training.seed,
        batch_size,
        train_warmup_steps: bench.warmup_steps,
        train_steps: bench.steps,
        train_seconds,
        train_images_per_second: (bench.steps * batch_size) as f64 / train_seconds.max(1e-9),
        infer_batch_size: bench.infer_batch_size,
        infer_images,
        infer_seconds,
        infer_images_per_second: infer_images as f64 / infer_seconds.max(1e-9),
        epoch_train_images: None,
        epoch_seconds: None,
        epoch_images_per_second: None,
        test_images: None,
        test_accuracy: None,
        peak_rss_bytes: None,
        data_dir: data_dir.display().to_string(),
    };

    if bench.epoch {
        let scratch = bench.artifacts.is_none();
        let run_dir = bench.artifacts.clone().unwrap_or_else(|| {
            std::env::temp_dir().join(format!("mnist-lstm-bench-{}", std::process::id()))
        });
        let run_options = RunOptions {
            config_name: Some("bench".to_string()),
            // The files just found, so both phases read the same data.
            data_dir: Some(data_dir.clone()),
            artifacts: Some(run_dir.clone()),
            device: Some(selected.kind.name().to_string()),
            offline: options.offline,
            verbose: false,
            ..RunOptions::default()
        };
        let outcome = train(config, &run_options);
        if scratch {
            // Best effort: a leftover scratch directory in the temp dir harms nothing.
            let _ = std::fs::remove_dir_all(&run_dir);
        }
        let outcome = outcome?;
        let images = outcome.train_images * config.training.epochs;
        report.epoch_train_images = Some(outcome.train_images);
        report.epoch_seconds = Some(outcome.training_seconds);
        report.epoch_images_per_second = Some(images as f64 / outcome.training_seconds.max(1e-9));
        report.test_images = Some(outcome.test.count());
        report.test_accuracy = Some(outcome.test.accuracy());
    }
    report.peak_rss_bytes = peak_rss_bytes();
    Ok(report)
}

/// Seconds of `bench.steps` Adam steps after `bench.warmup_steps` untimed ones.
fn time_training(
    config: &ExperimentConfig,
    bench: &BenchOptions,
    device: &burn::tensor::Device,
    train: &MnistDataset,
) -> f64 {
    let autodiff = device.clone().autodiff();
    let mut model = config.model.init_seeded(config.training.seed, &autodiff);
    let mut optimizer = config.optimizer.adam().init();
    let batcher = config.data.batcher();
    let batch_size = config.training.batch_size;
    // Start offsets wrap so every batch is full.
    let starts = train.len() - batch_size + 1;
    let mut started = Instant::now();
    let mut last_loss: Option<Tensor<1>> = None;
    for step in 0..bench.warmup_steps + bench.steps {
        if step == bench.warmup_steps {
            // Reading a value waits for the warm-up's work, whatever the backend defers.
            if let Some(loss) = last_loss.take() {
                let _ = loss.into_scalar::<f32>();
            }
            started = Instant::now();
        }
        let start = (step * batch_size) % starts;
        let items = (start..start + batch_size)
            .filter_map(|i| train.item(i))
            .collect();
        let output = classify(&model, batcher.batch(items, &autodiff));
        let grads = GradientsParams::from_grads(output.loss.backward(), &model);
        model = optimizer.step(config.optimizer.learning_rate, model, grads);
        last_loss = Some(output.loss);
    }
    if let Some(loss) = last_loss {
        let _ = loss.into_scalar::<f32>();
    }
    started.elapsed().as_secs_f64()
}

/// (images, seconds) of classifying the first `bench.infer_images` test images.
fn time_inference(
    config: &ExperimentConfig,
    bench: &BenchOptions,
    device: &burn::tensor::Device,
    test: &MnistDataset,
) -> (usize, f64) {
    let model = config.model.init(device);
    let batcher = config.data.batcher();
    let count = bench.infer_images.min(test.len());
    let batches: Vec<Tensor<3>> = (0..count)
        .step_by(bench.infer_batch_size)
        .map(|start| {
            let end = (start + bench.infer_batch_size).min(count);
            let items = (start..end).filter_map(|i| test.item(i)).collect();
            batcher.batch(items, device).images
        })
        .collect();
    // `into_data` may hand back storage still on the device (Burn's lazy `TensorData` on wgpu):
    // only reading the predictions waits for the forward pass.
    let classify = |images: &Tensor<3>| {
        model
            .forward(images.clone())
            .argmax(1)
            .into_data()
            .iter::<i64>()
            .count()
    };
    if let Some(first) = batches.first() {
        let _ = classify(first);
    }
    let started = Instant::now();
    for images in &batches {
        let _ = classify(images);
    }
    (count, started.elapsed().as_secs_f64())
}

/// Threads the CPU backends use: rayon's pool size, from `RAYON_NUM_THREADS` when set.
fn threads() -> usize {
    std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|value| value.trim().parse().ok())
        .filter(|&n: &usize| n > 0)
        .or_else(|| std::thread::available_parallelism().ok().map(usize::from))
        .unwrap_or(1)
}

/// The peak resident set of this process (`VmHWM` of `/proc/self/status`), where Linux has it.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}
