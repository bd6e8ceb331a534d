//! `cargo xtask bench`: three measurements, each a subcommand with its own options.
//!
//! - `cpu`: training and inference images/s, an epoch, peak memory and accuracy of the CPU
//!   backends, optionally against the PyTorch tutorial (`cpu.rs`);
//! - `serve`: `mnist-lstm serve` under concurrent clients, batching against `--max-batch 1`
//!   (`serve.rs`);
//! - `time-to-97`: the wall time to 97 % test accuracy against the tutorial's recipe
//!   (`time_to_97.rs`).
//!
//! Their shared helpers live in `crate::common`.

use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, Subcommand};

mod cpu;
mod serve;
mod time_to_97;

/// The seed of the first repetition of `cpu` and `time-to-97`: the default configuration's, so
/// that figures measured across changes compare seed for seed.
const FIRST_SEED: u64 = 42;

/// Options `cpu` and `time-to-97` share.
#[derive(Args, Debug)]
pub struct CommonArgs {
    /// Threads for every implementation (RAYON_NUM_THREADS for ours, torch.set_num_threads for
    /// PyTorch) [default: the cores available].
    #[arg(long)]
    threads: Option<usize>,
    /// Directory holding the MNIST files [default: $MNIST_DIR; `cpu` then lets the cli find
    /// them].
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Python interpreter that has torch, instead of bench/pytorch/.venv.
    #[arg(long, value_name = "PATH")]
    python: Option<PathBuf>,
}

/// The measurements of `cargo xtask bench`.
#[derive(Subcommand, Debug)]
pub enum BenchCommand {
    /// The CPU backends (training and inference images/s, one epoch, peak memory, accuracy),
    /// optionally against the PyTorch tutorial; writes target/bench/latest.json.
    Cpu(cpu::CpuArgs),
    /// `mnist-lstm serve` of a run directory under concurrent clients, with batching and with
    /// --max-batch 1; writes target/bench/serve.json.
    Serve(serve::ServeArgs),
    /// The time to 97 % test accuracy of a configuration (configs/fast.toml) against the PyTorch
    /// tutorial's recipe; writes target/bench/time-to-97.json.
    #[command(name = "time-to-97")]
    TimeTo97(time_to_97::TimeTo97Args),
}

/// Runs one measurement.
pub fn run(command: BenchCommand) -> Result<()> {
    match command {
        BenchCommand::Cpu(args) => cpu::bench_cpu(args),
        BenchCommand::Serve(args) => serve::bench_serve(args),
        BenchCommand::TimeTo97(args) => time_to_97::time_to_97(args),
    }
}
