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

use anyhow::Result;
use clap::Subcommand;

mod cpu;
mod serve;
mod time_to_97;

/// The seed of the first repetition of `cpu` and `time-to-97`: the default configuration's, so
/// that figures measured across changes compare seed for seed.
const FIRST_SEED: u64 = 42;

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
