//! Where a training step's time goes: the batch upload, the forward pass with the loss, the
//! backward pass and Adam, each timed to the device's completion (`Device::sync`), for the LSTM
//! kernel and for the fused maths in tensor operations (`model.kernel = false`), alternated in
//! one process: rounds of kernel, tensor-ops, kernel, ...
//!
//! ```sh
//! cargo run -p training --release --features wgpu --example step_profile -- [DEVICE] [ROUNDS] [PATH]
//! ```
//!
//! `DEVICE` is a `--device` name (default: the preferred backend compiled in); `PATH`, `kernel`
//! or `tensor-ops`, profiles that path alone (both otherwise); `MNIST_DIR` points
//! at the MNIST files (synthetic images otherwise). Syncing between phases adds a wait per phase,
//! so the phases sum to a little more than an unsynchronised step (`mnist-lstm bench`).

use std::time::{Duration, Instant};

use burn::data::dataloader::batcher::Batcher;
use burn::optim::GradientsParams;
use burn::tensor::{Device, Tensor};
use data::{MnistDataset, MnistFiles, write_synthetic_mnist};
use training::{ExperimentConfig, classify, select_device};

const STEPS: usize = 10;
const WARMUP: usize = 3;

/// Seconds per step of each phase, in the order of [`PHASES`].
type Phases = [f64; 4];
const PHASES: [&str; 4] = ["batch", "forward+loss", "backward", "adam"];

fn profile(config: &ExperimentConfig, device: &Device, train: &MnistDataset) -> Phases {
    let autodiff = device.clone().autodiff();
    let mut model = config.model.init(&autodiff);
    let mut optimizer = config.optimizer.adam().init();
    let batcher = config.data.batcher();
    let batch_size = config.training.batch_size;
    let mut totals = [Duration::ZERO; 4];
    let sync = || device.sync().expect("the device runs the step");
    for step in 0..WARMUP + STEPS {
        let start = (step * batch_size) % (train.len() - batch_size);
        let items = (start..start + batch_size)
            .filter_map(|i| train.item(i))
            .collect();
        let mut marks = [Instant::now(); 5];
        let batch = batcher.batch(items, &autodiff);
        sync();
        marks[1] = Instant::now();
        let output = classify(&model, batch);
        sync();
        marks[2] = Instant::now();
        let grads = GradientsParams::from_grads(output.loss.backward(), &model);
        sync();
        marks[3] = Instant::now();
        model = optimizer.step(config.optimizer.learning_rate, model, grads);
        sync();
        marks[4] = Instant::now();
        if step >= WARMUP {
            for (phase, total) in totals.iter_mut().enumerate() {
                *total += marks[phase + 1] - marks[phase];
            }
        }
    }
    totals.map(|total| total.as_secs_f64() / STEPS as f64)
}

/// Milliseconds per inference batch of `batch` images (no autodiff), synced after each.
fn inference_ms(
    config: &ExperimentConfig,
    device: &Device,
    train: &MnistDataset,
    batch: usize,
) -> f64 {
    let model = config.model.init(device);
    let batcher = config.data.batcher();
    let items: Vec<_> = (0..batch).filter_map(|i| train.item(i)).collect();
    let images = batcher.batch(items, device).images;
    // Reading the logits waits for them: `into_data` alone may leave them on the device.
    let read = |images: Tensor<3>| model.forward(images).into_data().iter::<f32>().count();
    read(images.clone());
    let started = Instant::now();
    for _ in 0..STEPS {
        read(images.clone());
    }
    started.elapsed().as_secs_f64() * 1e3 / STEPS as f64
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let selected = select_device(args.first().map(String::as_str))?;
    let rounds: usize = args.get(1).map(|r| r.parse()).transpose()?.unwrap_or(3);
    println!("device: {}", selected.description);
    let (dir, _synthetic) = match std::env::var_os("MNIST_DIR") {
        Some(dir) => (dir.into(), None),
        None => {
            let dir = tempfile::tempdir()?;
            write_synthetic_mnist(dir.path(), 2000, 100, 7, false)?;
            (dir.path().to_path_buf(), Some(dir))
        }
    };
    let files = MnistFiles::in_dir(&dir)?;
    let train = MnistDataset::from_files(&files.train_images, &files.train_labels)?.take(5000);
    let mut configs = Vec::new();
    let only = args.get(2).map(String::as_str);
    for kernel in [true, false] {
        let mut config = ExperimentConfig::default();
        config.model.kernel = kernel;
        let path = config.model.lstm_path(&selected.device);
        if only.is_none_or(|only| only == path.name()) {
            configs.push((path.name(), config));
        }
    }
    if configs.is_empty() {
        return Err(format!("no LSTM path is called {only:?}: kernel or tensor-ops").into());
    }
    for batch in [1, 8, 64, 1000] {
        let line: Vec<String> = configs
            .iter()
            .map(|(name, config)| {
                let ms = inference_ms(config, &selected.device, &train, batch);
                format!("{name} {ms:.1} ms")
            })
            .collect();
        println!("inference, batch {batch:>4}: {}", line.join(", "));
    }
    let mut results = vec![Vec::new(); configs.len()];
    for round in 1..=rounds {
        for ((name, config), result) in configs.iter().zip(&mut results) {
            let phases = profile(config, &selected.device, &train);
            let line: Vec<String> = PHASES
                .iter()
                .zip(phases)
                .map(|(phase, seconds)| format!("{phase} {:.1} ms", seconds * 1e3))
                .collect();
            let step: f64 = phases.iter().sum();
            println!(
                "round {round}, {name:>10}: step {:.1} ms = {}",
                step * 1e3,
                line.join(", ")
            );
            result.push(phases);
        }
    }
    Ok(())
}
