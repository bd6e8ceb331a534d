//! The adding problem (Hochreiter & Schmidhuber, 1997), the classic test of an LSTM's memory:
//! each step of a sequence is a pair (a value drawn from U(0, 1), a marker), exactly two steps
//! are marked (one in each half of the row), and the target is the sum of the two marked values.
//! Always answering 1.0 scores a mean squared error of about 0.167; a model that remembers the
//! marked values gets close to 0.
//!
//! Each row has its own length, drawn between 50 and 200, so a batch is padded to its longest
//! row and the layer reads each row for its own length (`lengths`): the model reads its answer
//! at each row's last valid step with [`Lstm::forward_last`].
//!
//! ```sh
//! cargo run -p fused-rnn --release --features flex --example adding_problem
//! ```
//!
//! It prints the held-out error every 100 steps and stops once it is under 0.01 (exit code 0), or
//! after 5,000 steps (exit code 1).

use std::time::Instant;

use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::optim::{AdamConfig, GradientsParams};
use burn::tensor::{Device, Tensor, TensorData};
use fused_rnn::{Lstm, LstmConfig};

/// Shortest and longest rows.
const LENGTHS: (usize, usize) = (50, 200);
const BATCH: usize = 64;
const HIDDEN: usize = 64;
const LEARNING_RATE: f64 = 5e-3;
const MAX_STEPS: usize = 5_000;
const EVAL_EVERY: usize = 100;
const HELD_OUT: usize = 1_000;
/// The mean squared error to reach.
const GOAL: f32 = 0.01;
const SEED: u64 = 2026;

/// The LSTM read at each row's last valid step, and a linear head giving the sum.
#[derive(Module, Debug)]
struct Adder {
    lstm: Lstm,
    head: Linear,
}

impl Adder {
    fn new(device: &Device) -> Self {
        Self {
            lstm: LstmConfig::new(2, HIDDEN)
                .with_forget_bias(1.0)
                .init(device),
            head: LinearConfig::new(HIDDEN, 1).init(device),
        }
    }

    /// The predicted sums `[batch]`.
    fn forward(&self, input: Tensor<3>, lengths: &[usize]) -> Tensor<1> {
        let last = self.lstm.forward_last(input, None, Some(lengths));
        self.head.forward(last).squeeze_dim::<1>(1)
    }
}

/// SplitMix64: a small, seedable source of random numbers for the data.
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 24) as f32
    }

    /// Uniform in `low..=high`.
    fn between(&mut self, low: usize, high: usize) -> usize {
        low + (self.next() % (high - low + 1) as u64) as usize
    }
}

/// A batch: inputs `[rows, longest, 2]` (zero past each row's length), lengths, targets.
struct Batch {
    input: Tensor<3>,
    lengths: Vec<usize>,
    targets: Tensor<1>,
}

fn batch(rows: usize, random: &mut Random, device: &Device) -> Batch {
    let lengths: Vec<usize> = (0..rows)
        .map(|_| random.between(LENGTHS.0, LENGTHS.1))
        .collect();
    let longest = lengths.iter().copied().max().unwrap_or(1);
    let mut input = vec![0.0f32; rows * longest * 2];
    let mut targets = Vec::with_capacity(rows);
    for (row, &length) in lengths.iter().enumerate() {
        let first = random.between(0, length / 2 - 1);
        let second = random.between(length / 2, length - 1);
        let mut sum = 0.0;
        for step in 0..length {
            let at = (row * longest + step) * 2;
            input[at] = random.unit();
            if step == first || step == second {
                input[at + 1] = 1.0;
                sum += input[at];
            }
        }
        targets.push(sum);
    }
    Batch {
        input: Tensor::from_data(TensorData::new(input, [rows, longest, 2]), device),
        lengths,
        targets: Tensor::from_data(TensorData::new(targets, [rows]), device),
    }
}

fn mean_squared_error(predicted: Tensor<1>, targets: Tensor<1>) -> Tensor<1> {
    (predicted - targets).powi_scalar(2).mean()
}

fn main() {
    let device = Device::default().autodiff();
    // The weights' draws and the data's, both seeded: the same run every time.
    device.seed(SEED);
    let mut random = Random(SEED);
    let held_out = batch(HELD_OUT, &mut random, &device.clone().inner());
    let baseline = mean_squared_error(
        Tensor::ones([HELD_OUT], &held_out.targets.device()),
        held_out.targets.clone(),
    )
    .into_scalar::<f32>();
    let mut model = Adder::new(&device);
    println!(
        "adding problem: rows of {} to {} steps, batch {BATCH}, LSTM of {HIDDEN} units on {}",
        LENGTHS.0,
        LENGTHS.1,
        model.lstm.path(&device)
    );
    println!("always answering 1.0: held-out mean squared error {baseline:.4}");
    let mut optimizer = AdamConfig::new().init();
    let start = Instant::now();
    for step in 1..=MAX_STEPS {
        let train = batch(BATCH, &mut random, &device);
        let loss = mean_squared_error(model.forward(train.input, &train.lengths), train.targets);
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optimizer.step(LEARNING_RATE, model, grads);
        if step % EVAL_EVERY == 0 {
            let predicted = model
                .valid()
                .forward(held_out.input.clone(), &held_out.lengths);
            let error =
                mean_squared_error(predicted, held_out.targets.clone()).into_scalar::<f32>();
            println!(
                "step {step:5}  held-out mean squared error {error:.4}  ({:.0} s)",
                start.elapsed().as_secs_f64()
            );
            if error < GOAL {
                println!(
                    "under {GOAL} after {step} steps, {:.0} s",
                    start.elapsed().as_secs_f64()
                );
                return;
            }
        }
    }
    println!("not under {GOAL} after {MAX_STEPS} steps");
    std::process::exit(1);
}
