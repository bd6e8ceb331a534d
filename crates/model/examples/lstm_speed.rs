//! Speed of the classifier's fused LSTM forward (`LstmClassifier::forward_fused`: on flex the
//! whole-sequence kernel) and of the same fused maths in Burn tensor operations
//! (`forward_fused_tensor_ops`, the GPU backends' path) against Burn's own `nn::Lstm`
//! (`LstmClassifier::forward_reference`), alternated in one process so that all see the same
//! machine load: rounds of reference, fused, fused in tensor ops, reference, ...
//!
//! - training: forward, cross-entropy and backward (no optimiser) of batches of 64 random
//!   `[28, 28]` images on the autodiff device;
//! - inference: forward of batches of 1000 images, the logits read back.
//!
//! ```sh
//! RAYON_NUM_THREADS=2 cargo run -p model --release --features flex --example lstm_speed -- \
//!     [ROUNDS] [LAYERS] [bi]
//! ```
//!
//! It prints each round's images/s and, per measurement, the median of the per-round ratios
//! path / reference (above 1: that path is faster). Without `--features flex` (or `ndarray`) the
//! kernel is not compiled and both fused paths are the tensor-op one. Timings on a shared machine vary; only
//! the ratios of one run mean much.

use std::time::Instant;

use burn::nn::loss::CrossEntropyLossConfig;
use burn::tensor::{Device, Distribution, Int, Tensor, TensorData};
use model::{LstmClassifier, LstmClassifierConfig};

const TRAIN_BATCH: usize = 64;
const TRAIN_STEPS: usize = 20;
const INFER_BATCH: usize = 1000;
const INFER_BATCHES: usize = 3;

/// Which forward a measurement runs.
#[derive(Clone, Copy, Debug)]
enum Path {
    Reference,
    Fused,
    FusedTensorOps,
}

fn logits(model: &LstmClassifier, path: Path, images: Tensor<3>) -> Tensor<2> {
    match path {
        Path::Reference => model.forward_reference(images),
        Path::Fused => model.forward_fused(images),
        Path::FusedTensorOps => model.forward_fused_tensor_ops(images),
    }
}

fn images(batch: usize, device: &Device) -> Tensor<3> {
    Tensor::random([batch, 28, 28], Distribution::Uniform(0.0, 1.0), device)
}

/// Images per second of `TRAIN_STEPS` training steps.
fn train_rate(model: &LstmClassifier, path: Path, device: &Device) -> f64 {
    let x = images(TRAIN_BATCH, device);
    let targets: Vec<i64> = (0..TRAIN_BATCH as i64).map(|i| i % 10).collect();
    let targets = Tensor::<1, Int>::from_data(TensorData::new(targets, [TRAIN_BATCH]), device);
    let loss_fn = CrossEntropyLossConfig::new().init(device);
    let start = Instant::now();
    for _ in 0..TRAIN_STEPS {
        let loss = loss_fn.forward(logits(model, path, x.clone()), targets.clone());
        let grads = loss.backward();
        drop(grads);
        std::hint::black_box(loss.into_scalar::<f32>());
    }
    (TRAIN_STEPS * TRAIN_BATCH) as f64 / start.elapsed().as_secs_f64()
}

/// Images per second of `INFER_BATCHES` inference batches.
fn infer_rate(model: &LstmClassifier, path: Path, device: &Device) -> f64 {
    let x = images(INFER_BATCH, device);
    let start = Instant::now();
    for _ in 0..INFER_BATCHES {
        let out = logits(model, path, x.clone()).argmax(1).into_data();
        std::hint::black_box(out);
    }
    (INFER_BATCHES * INFER_BATCH) as f64 / start.elapsed().as_secs_f64()
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn parse_args() -> Result<(usize, LstmClassifierConfig), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let number = |index: usize, default: usize| match args.get(index) {
        None => Ok(default),
        Some(text) => text
            .parse::<usize>()
            .map_err(|e| format!("argument {}: {text:?}: {e}", index + 1)),
    };
    let rounds = number(0, 5)?.max(1);
    let layers = number(1, 1)?;
    let bidirectional = match args.get(2).map(String::as_str) {
        None | Some("uni") => false,
        Some("bi") => true,
        Some(other) => return Err(format!("argument 3: {other:?}: expected `uni` or `bi`")),
    };
    if args.len() > 3 {
        return Err(format!("{} arguments, expected at most 3", args.len()));
    }
    let config = LstmClassifierConfig::new()
        .with_num_layers(layers)
        .with_bidirectional(bidirectional);
    config.validate().map_err(|e| e.to_string())?;
    Ok((rounds, config))
}

fn main() {
    let (rounds, config) = match parse_args() {
        Ok(parsed) => parsed,
        Err(message) => {
            eprintln!("error: {message}");
            eprintln!("usage: lstm_speed [ROUNDS] [LAYERS] [uni|bi]");
            std::process::exit(2);
        }
    };
    println!(
        "{} layer(s), {}, hidden {}; training batch {TRAIN_BATCH} x {TRAIN_STEPS} steps, \
         inference batch {INFER_BATCH} x {INFER_BATCHES}; {rounds} rounds",
        config.num_layers,
        if config.bidirectional {
            "bidirectional"
        } else {
            "unidirectional"
        },
        config.hidden_size,
    );
    let paths = [Path::Reference, Path::Fused, Path::FusedTensorOps];
    let device = Device::default();
    let train_device = device.clone().autodiff();
    let train_model = config.init(&train_device);
    let infer_model = config.init(&device);
    // Warm-up: first-use allocations and caches, both paths.
    for &path in &paths {
        train_rate(&train_model, path, &train_device);
        infer_rate(&infer_model, path, &device);
    }
    let mut train = vec![Vec::new(); paths.len()];
    let mut infer = vec![Vec::new(); paths.len()];
    for round in 1..=rounds {
        let mut line = format!("round {round}:");
        for (index, &path) in paths.iter().enumerate() {
            let t = train_rate(&train_model, path, &train_device);
            let i = infer_rate(&infer_model, path, &device);
            train[index].push(t);
            infer[index].push(i);
            line += &format!("  {path:?} train {t:7.0} img/s, infer {i:7.0} img/s;");
        }
        println!("{line}");
    }
    for (index, path) in paths.iter().enumerate().skip(1) {
        let ratio = |rates: &[Vec<f64>]| {
            median(
                rates[index]
                    .iter()
                    .zip(&rates[0])
                    .map(|(new, old)| new / old)
                    .collect(),
            )
        };
        println!(
            "{path:?} / Reference, median of {rounds} per-round ratios: training {:.2}x \
             (medians {:.0} vs {:.0} img/s), inference {:.2}x (medians {:.0} vs {:.0} img/s)",
            ratio(&train),
            median(train[index].clone()),
            median(train[0].clone()),
            ratio(&infer),
            median(infer[index].clone()),
            median(infer[0].clone()),
        );
    }
}
