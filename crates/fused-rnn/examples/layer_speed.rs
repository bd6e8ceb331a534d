//! Speed of the layer against Burn's `nn::Lstm` and, with `--pytorch`, PyTorch's `nn.LSTM`, on
//! three shapes, alternated round by round in one run so that all see the same machine load:
//!
//! | shape | batch | steps | input | hidden | layers |
//! |---|---|---|---|---|---|
//! | `rows` (the tutorial's MNIST, a row a step) | 64 | 28 | 28 | 64 | 1 |
//! | `pixels` (pixel-by-pixel MNIST) | 64 | 784 | 1 | 128 | 1 |
//! | `wide` | 16 | 200 | 64 | 256 | 2, bidirectional |
//!
//! A training step is the forward pass of every step's output and the backward pass of its mean;
//! inference is the forward pass alone. Figures are sequences per second, and per shape the
//! median over rounds of the per-round ratios of the layer to each other.
//!
//! Each shape also gets its arithmetic: the matrix products' floating-point operations of a
//! sequence (a training step counted as three forward passes: forward, the inputs' gradients,
//! the weights'), the rate the layer reaches, and, with `--pytorch`, the rate that twice
//! PyTorch's speed would take, beside the fastest matrix product measured on the same threads
//! (2048 x 2048, PyTorch's and Burn's). Element-wise work is not counted, so these rates are
//! lower bounds of what each speed takes.
//!
//! ```sh
//! RAYON_NUM_THREADS=2 cargo run -p fused-rnn --release --features flex --example layer_speed -- \
//!     --rounds 3 --pytorch bench/pytorch/.venv/bin/python
//! ```

use std::process::Command;
use std::time::Instant;

use burn::nn::{BiLstm, BiLstmConfig, Lstm as BurnLstm, LstmConfig as BurnLstmConfig};
use burn::tensor::{Device, Distribution, Tensor};
use clap::Parser;
use fused_rnn::{Lstm, LstmConfig};

// mimalloc, as the cli: with glibc's allocator the buffers of each call are handed back to the
// OS and faulted in again at the next (a third of a training step's time on the `rows` shape with
// every step's output). An application picks its allocator; this is the one to pick.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(about = "The layer against Burn's nn::Lstm and PyTorch's nn.LSTM, alternated")]
struct Args {
    /// Rounds of every measurement.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Only this shape (rows, pixels, wide).
    #[arg(long)]
    shape: Option<String>,
    /// A Python with torch, to time PyTorch's nn.LSTM too (`bench/pytorch/layer_speed.py`).
    #[arg(long)]
    pytorch: Option<String>,
    /// Leave Burn's nn::Lstm out (it is slow on long sequences).
    #[arg(long)]
    no_burn: bool,
    /// Time what a classifier computes, the top layer's output at the last step
    /// (`Lstm::forward_last`; the others compute every step and keep the last), instead of every
    /// step's output.
    #[arg(long)]
    last: bool,
    /// The device: flex, or wgpu (built with `--features wgpu`).
    #[arg(long, default_value = "flex")]
    device: String,
}

#[derive(Clone, Copy)]
struct Shape {
    name: &'static str,
    batch: usize,
    steps: usize,
    input: usize,
    hidden: usize,
    layers: usize,
    bidirectional: bool,
    /// Timed steps per round: the layer and PyTorch, Burn's `nn::Lstm`.
    repeats: usize,
    burn_repeats: usize,
}

const SHAPES: [Shape; 3] = [
    Shape {
        name: "rows",
        batch: 64,
        steps: 28,
        input: 28,
        hidden: 64,
        layers: 1,
        bidirectional: false,
        repeats: 20,
        burn_repeats: 5,
    },
    Shape {
        name: "pixels",
        batch: 64,
        steps: 784,
        input: 1,
        hidden: 128,
        layers: 1,
        bidirectional: false,
        repeats: 3,
        burn_repeats: 1,
    },
    Shape {
        name: "wide",
        batch: 16,
        steps: 200,
        input: 64,
        hidden: 256,
        layers: 2,
        bidirectional: true,
        repeats: 3,
        burn_repeats: 1,
    },
];

impl Shape {
    /// Floating-point operations of one sequence's forward pass in matrix products: per layer,
    /// direction and step, `[1, input + hidden] x [input + hidden, 4 hidden]`. With `last`, the
    /// top layer's reverse direction takes one step: its output at the last step is its first.
    fn forward_flops(&self, last: bool) -> f64 {
        let directions = if self.bidirectional { 2 } else { 1 };
        (0..self.layers)
            .map(|layer| {
                let input = if layer == 0 {
                    self.input
                } else {
                    self.hidden * directions
                };
                let reverse_steps = if directions == 1 {
                    0
                } else if last && layer + 1 == self.layers {
                    1
                } else {
                    self.steps
                };
                let step = 2 * (input + self.hidden) * 4 * self.hidden;
                ((self.steps + reverse_steps) * step) as f64
            })
            .sum()
    }
}

/// Side of the square matrix product timed for the machine's arithmetic rate.
const PEAK_SIDE: usize = 2048;

/// Billions of floating-point operations a second of Burn's `PEAK_SIDE`-square matrix product on
/// `device`, the best of five.
fn burn_matmul_gflops(device: &Device) -> f64 {
    let matrix = || {
        Tensor::<2>::random(
            [PEAK_SIDE, PEAK_SIDE],
            Distribution::Uniform(-1.0, 1.0),
            device,
        )
    };
    let (a, b) = (matrix(), matrix());
    let flops = 2.0 * (PEAK_SIDE as f64).powi(3);
    (0..6)
        .map(|_| {
            let start = Instant::now();
            a.clone().matmul(b.clone()).sum().into_scalar::<f32>();
            flops / start.elapsed().as_secs_f64() / 1e9
        })
        .skip(1)
        .fold(0.0, f64::max)
}

/// Sequences per second of training steps and of inference.
#[derive(Clone, Copy, Debug)]
struct Rates {
    train: f64,
    infer: f64,
}

/// A forward pass to time.
type Forward<'a> = &'a dyn Fn(Tensor<3>) -> Tensor<3>;

/// Times `repeats` training steps of `train` (on the autodiff device) and `repeats` inference
/// passes of `infer` (on `device`), after one of each to warm up.
fn time(
    shape: &Shape,
    repeats: usize,
    device: &Device,
    train: Forward<'_>,
    infer: Forward<'_>,
) -> Rates {
    let autodiff = device.clone().autodiff();
    let x = |device: &Device| {
        Tensor::<3>::random(
            [shape.batch, shape.steps, shape.input],
            Distribution::Uniform(0.0, 1.0),
            device,
        )
    };
    let (train_x, infer_x) = (x(&autodiff), x(device));
    let train_step = || {
        let _ = train(train_x.clone()).mean().backward();
    };
    train_step();
    let start = Instant::now();
    for _ in 0..repeats {
        train_step();
    }
    let train = (shape.batch * repeats) as f64 / start.elapsed().as_secs_f64();
    let infer_step = || infer(infer_x.clone()).sum().into_scalar::<f32>();
    infer_step();
    let start = Instant::now();
    for _ in 0..repeats {
        infer_step();
    }
    let infer = (shape.batch * repeats) as f64 / start.elapsed().as_secs_f64();
    Rates { train, infer }
}

/// Burn's `nn::Lstm` stacked as the layer is (each layer reading the one below; both directions
/// concatenated).
enum BurnStack {
    One(Vec<BurnLstm>),
    Both(Vec<BiLstm>),
}

impl BurnStack {
    fn new(shape: &Shape, device: &Device) -> Self {
        let input = |layer: usize, directions: usize| {
            if layer == 0 {
                shape.input
            } else {
                shape.hidden * directions
            }
        };
        if shape.bidirectional {
            BurnStack::Both(
                (0..shape.layers)
                    .map(|l| BiLstmConfig::new(input(l, 2), shape.hidden, true).init(device))
                    .collect(),
            )
        } else {
            BurnStack::One(
                (0..shape.layers)
                    .map(|l| BurnLstmConfig::new(input(l, 1), shape.hidden, true).init(device))
                    .collect(),
            )
        }
    }

    fn forward(&self, mut x: Tensor<3>) -> Tensor<3> {
        match self {
            BurnStack::One(layers) => layers
                .iter()
                .for_each(|lstm| x = lstm.forward(x.clone(), None).0),
            BurnStack::Both(layers) => layers
                .iter()
                .for_each(|lstm| x = lstm.forward(x.clone(), None).0),
        }
        x
    }
}

fn pytorch(python: &str, shape: &Shape, last: bool) -> Result<Rates, String> {
    let mut args: Vec<String> = [
        ("--batch", shape.batch),
        ("--steps", shape.steps),
        ("--input", shape.input),
        ("--hidden", shape.hidden),
        ("--layers", shape.layers),
        ("--train-steps", shape.repeats),
        ("--infer-steps", shape.repeats),
    ]
    .into_iter()
    .flat_map(|(flag, value)| [flag.to_string(), value.to_string()])
    .collect();
    if shape.bidirectional {
        args.push("--bidirectional".into());
    }
    if last {
        args.push("--last".into());
    }
    let line = run_pytorch(python, &args)?;
    Ok(Rates {
        train: json_number(&line, "train_per_s")?,
        infer: json_number(&line, "infer_per_s")?,
    })
}

/// PyTorch's rate on the `PEAK_SIDE`-square matrix product (`layer_speed.py --matmul-peak`).
fn pytorch_matmul_gflops(python: &str) -> Result<f64, String> {
    let line = run_pytorch(python, &["--matmul-peak".into(), PEAK_SIDE.to_string()])?;
    json_number(&line, "matmul_gflops")
}

/// `bench/pytorch/layer_speed.py` with `args`, on the kernel's threads: its JSON line.
fn run_pytorch(python: &str, args: &[String]) -> Result<serde_json::Value, String> {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../bench/pytorch/layer_speed.py"
    );
    let output = Command::new(python)
        .arg(script)
        .args(args)
        .args(["--threads", &rayon_threads().to_string()])
        .output()
        .map_err(|e| format!("{python}: {e}"))?;
    if !output.status.success() {
        return Err(String::from_utf8_lossy(&output.stderr).into_owned());
    }
    serde_json::from_slice(&output.stdout).map_err(|e| e.to_string())
}

/// The number under `key` of PyTorch's JSON line.
fn json_number(line: &serde_json::Value, key: &str) -> Result<f64, String> {
    line[key].as_f64().ok_or(format!("no {key} in {line}"))
}

/// The threads the CPU kernel runs on (RAYON_NUM_THREADS, else the machine's cores), given to
/// PyTorch too.
fn rayon_threads() -> usize {
    std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, usize::from))
}

/// The layer's every-step output, or (`last`) its classifier output as one step.
fn layer_run(layer: &Lstm, x: Tensor<3>, last: bool) -> Tensor<3> {
    if last {
        layer.forward_last(x, None, None).unsqueeze_dim(1)
    } else {
        layer.forward(x, None, None).0
    }
}

/// `output`, or its last step alone.
fn last_or_all(output: Tensor<3>, last: bool) -> Tensor<3> {
    let steps = output.dims()[1];
    if last {
        output.narrow(1, steps - 1, 1)
    } else {
        output
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() -> Result<(), String> {
    let args = Args::parse();
    let device = match args.device.as_str() {
        "flex" => Device::flex(),
        #[cfg(feature = "wgpu")]
        "wgpu" => Device::wgpu(burn::tensor::DeviceKind::DefaultDevice),
        other => {
            return Err(format!(
                "device {other}: flex, or wgpu with --features wgpu"
            ));
        }
    };
    println!(
        "{} on {} threads; sequences per second (training step / inference){}",
        args.device,
        rayon_threads(),
        if args.last {
            ", the last step's output"
        } else {
            ", every step's output"
        }
    );
    let burn_peak = burn_matmul_gflops(&device);
    let mut peak =
        format!("fastest matrix product ({PEAK_SIDE} x {PEAK_SIDE}): Burn {burn_peak:.0} GFLOP/s");
    let mut best_peak = burn_peak;
    if let Some(python) = &args.pytorch {
        let pytorch_peak = pytorch_matmul_gflops(python)?;
        peak += &format!(", PyTorch {pytorch_peak:.0} GFLOP/s");
        best_peak = best_peak.max(pytorch_peak);
    }
    println!("{peak}");
    for shape in SHAPES
        .iter()
        .filter(|s| args.shape.as_deref().is_none_or(|name| name == s.name))
    {
        println!(
            "\n{}: batch {}, {} steps of {}, hidden {}, {} layer(s){}",
            shape.name,
            shape.batch,
            shape.steps,
            shape.input,
            shape.hidden,
            shape.layers,
            if shape.bidirectional {
                ", bidirectional"
            } else {
                ""
            }
        );
        measure(shape, &args, &device, best_peak)?;
    }
    Ok(())
}

/// The rounds on one shape, a line each, then the medians of the layer's ratios to the others
/// and the arithmetic rates (see the module's documentation) against `peak` GFLOP/s.
fn measure(shape: &Shape, args: &Args, device: &Device, peak: f64) -> Result<(), String> {
    let layer = |device: &Device| -> Lstm {
        LstmConfig::new(shape.input, shape.hidden)
            .with_num_layers(shape.layers)
            .with_bidirectional(shape.bidirectional)
            .init(device)
    };
    let (layer_train, layer_infer) = (layer(&device.clone().autodiff()), layer(device));
    let burn_train = BurnStack::new(shape, &device.clone().autodiff());
    let burn_infer = BurnStack::new(shape, device);
    let mut ratios: Vec<(&str, Vec<f64>, Vec<f64>)> = vec![
        ("PyTorch", Vec::new(), Vec::new()),
        ("Burn nn::Lstm", Vec::new(), Vec::new()),
    ];
    let mut rates: Vec<(Rates, Option<Rates>)> = Vec::new();
    for round in 1..=args.rounds {
        let ours = time(
            shape,
            shape.repeats,
            device,
            &|x| layer_run(&layer_train, x, args.last),
            &|x| layer_run(&layer_infer, x, args.last),
        );
        let mut line = format!("round {round}: layer {:.0} / {:.0}", ours.train, ours.infer);
        let mut others = Vec::new();
        let torch = args
            .pytorch
            .as_deref()
            .map(|python| pytorch(python, shape, args.last))
            .transpose()?;
        rates.push((ours, torch));
        if let Some(torch) = torch {
            others.push((0, torch));
        }
        if !args.no_burn {
            others.push((
                1,
                time(
                    shape,
                    shape.burn_repeats,
                    device,
                    &|x| last_or_all(burn_train.forward(x), args.last),
                    &|x| last_or_all(burn_infer.forward(x), args.last),
                ),
            ));
        }
        for (index, rates) in others {
            let (name, train, infer) = &mut ratios[index];
            line += &format!(", {name} {:.0} / {:.0}", rates.train, rates.infer);
            train.push(ours.train / rates.train);
            infer.push(ours.infer / rates.infer);
        }
        println!("{line}");
    }
    for (name, train, infer) in ratios.into_iter().filter(|(_, train, _)| !train.is_empty()) {
        println!(
            "layer / {name}: training {:.2}x, inference {:.2}x (medians of {} rounds)",
            median(train),
            median(infer),
            args.rounds
        );
    }
    println!("{}", arithmetic(shape, args.last, &rates, peak));
    Ok(())
}

/// The shape's arithmetic line: GFLOP a sequence (the layer's work: with `last`, see
/// [`Shape::forward_flops`]), the layer's median rates, and those that twice PyTorch's medians
/// would take, against the `peak` GFLOP/s of the fastest matrix product.
fn arithmetic(shape: &Shape, last: bool, rates: &[(Rates, Option<Rates>)], peak: f64) -> String {
    let forward = shape.forward_flops(last);
    let (train_flops, infer_flops) = (3.0 * forward, forward);
    let gflops = |per_second: f64, flops: f64| per_second * flops / 1e9;
    let ours = |pick: fn(&Rates) -> f64| median(rates.iter().map(|(r, _)| pick(r)).collect());
    let mut line = format!(
        "arithmetic: {:.2} / {:.2} MFLOP a sequence (training step / inference, matrix \
         products); the layer reaches {:.0} / {:.0} GFLOP/s",
        train_flops / 1e6,
        infer_flops / 1e6,
        gflops(ours(|r| r.train), train_flops),
        gflops(ours(|r| r.infer), infer_flops)
    );
    let torch: Vec<Rates> = rates.iter().filter_map(|(_, t)| *t).collect();
    if !torch.is_empty() {
        let pytorch = |pick: fn(&Rates) -> f64| median(torch.iter().map(pick).collect());
        line += &format!(
            "; twice PyTorch would take {:.0} / {:.0} GFLOP/s; the fastest matrix product: {:.0}",
            gflops(2.0 * pytorch(|r| r.train), train_flops),
            gflops(2.0 * pytorch(|r| r.infer), infer_flops),
            peak
        );
    }
    line
}
