//! Project chores: `cargo xtask <command>`.
//!
//! xtask does not link Burn: it runs the `cli` package through cargo (same target directory,
//! same release build as `cargo run -p cli --release`), forwarding backend features.

use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};

mod bench;
mod common;
mod eval;
mod fuzz;
mod gpu_check;

#[derive(Parser, Debug)]
#[command(name = "xtask", about = "Project chores for the MNIST LSTM workspace")]
struct Cli {
    #[command(subcommand)]
    command: Chore,
}

#[derive(Subcommand, Debug)]
enum Chore {
    /// Evaluate the last trained model (or --artifacts DIR) on the full 10,000-image test set.
    Eval(eval::EvalArgs),
    /// Measurements against PyTorch and under load: `cpu`, `serve`, `time-to-97`.
    Bench {
        #[command(subcommand)]
        command: bench::BenchCommand,
    },
    /// On a GPU machine: `mnist-lstm bench` on wgpu (the adapter, the LSTM path, the default
    /// epoch, training and inference images/s, test accuracy); writes
    /// target/bench/gpu-check.json and a table. `--binary` runs a prebuilt cli.
    GpuCheck(gpu_check::GpuCheckArgs),
    /// Fuzz the IDX reader (`idx`) or the configuration loader (`config`) with cargo-fuzz,
    /// growing fuzz/corpus/<target>, which the tests replay on stable.
    Fuzz(fuzz::FuzzArgs),
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("xtask: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Chore::Eval(args) => eval::eval(args),
        Chore::Bench { command } => bench::run(command).map(|()| ExitCode::SUCCESS),
        Chore::GpuCheck(args) => gpu_check::gpu_check(args).map(|()| ExitCode::SUCCESS),
        Chore::Fuzz(args) => fuzz::fuzz(args),
    }
}
