//! Project chores: `cargo xtask <command>`.
//!
//! xtask does not link Burn: it runs the `cli` package through cargo (same target directory,
//! same release build as `cargo run -p cli --release`), forwarding backend features.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};

mod bench;
mod gpu_check;
mod serve_bench;
mod time_to;

#[derive(Parser, Debug)]
#[command(name = "xtask", about = "Project chores for the MNIST LSTM workspace")]
struct Cli {
    #[command(subcommand)]
    command: Chore,
}

#[derive(Subcommand, Debug)]
enum Chore {
    /// Evaluate the last trained model (or --artifacts DIR) on the full 10,000-image test set.
    Eval {
        /// Run directory [default: the newest run under artifacts/].
        #[arg(long, value_name = "DIR")]
        artifacts: Option<PathBuf>,
        /// Directory holding the MNIST files [default: the one the run trained on].
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
        /// Backend to evaluate on (flex, ndarray, wgpu) when several are compiled in.
        #[arg(long, value_name = "NAME")]
        device: Option<String>,
        /// Cargo features of the cli build, e.g. `wgpu` or `ndarray` (default: flex).
        #[arg(long, value_name = "FEATURES")]
        features: Option<String>,
    },
    /// On a GPU machine: `mnist-lstm bench` on wgpu (the adapter, the LSTM path, the default
    /// epoch, training and inference images/s, test accuracy); writes
    /// target/bench/gpu-check.json and a table. `--binary` runs a prebuilt cli.
    GpuCheck(gpu_check::GpuCheckArgs),
    /// Measure the CPU backends (training and inference images/s, one epoch, peak memory,
    /// accuracy), optionally against the PyTorch tutorial; writes target/bench/latest.json. With
    /// --time-to-97: the time to 97 % test accuracy of configs/fast.toml against the PyTorch tutorial
    /// recipe; writes target/bench/time-to-97.json. With --serve RUN: `mnist-lstm serve` under
    /// 64 concurrent clients, batching against --max-batch 1; writes target/bench/serve.json.
    Bench(bench::BenchArgs),
    /// Fuzz the IDX reader (`idx`) or the configuration loader (`config`) with cargo-fuzz,
    /// growing fuzz/corpus/<target>, which the tests replay on stable.
    Fuzz {
        /// Which target: idx or config.
        #[arg(value_parser = ["idx", "config"])]
        target: String,
        /// How long to fuzz.
        #[arg(long, default_value_t = 10)]
        minutes: u64,
    },
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
        Chore::Eval {
            artifacts,
            data_dir,
            device,
            features,
        } => {
            let mut args: Vec<String> = vec!["eval".into()];
            if let Some(dir) = artifacts {
                args.extend(["--artifacts".into(), absolute(&dir)?]);
            }
            if let Some(dir) = data_dir {
                args.extend(["--data-dir".into(), absolute(&dir)?]);
            }
            if let Some(name) = device {
                args.extend(["--device".into(), name]);
            }
            run_cli(features.as_deref(), &args)
        }
        Chore::GpuCheck(args) => gpu_check::gpu_check(args).map(|()| ExitCode::SUCCESS),
        Chore::Fuzz { target, minutes } => fuzz(&target, minutes),
        Chore::Bench(args) => bench::bench(args).map(|()| ExitCode::SUCCESS),
    }
}

/// Seed inputs beside the target's own corpus: read, never written to.
fn fuzz_seed_dirs(target: &str) -> &'static [&'static str] {
    match target {
        "config" => &["configs", "crates/cli/tests/bad_configs"],
        _ => &[],
    }
}

/// Runs libFuzzer on `target` for `minutes`, adding what it finds to fuzz/corpus/<target>.
///
/// cargo-fuzz passes nightly-only flags to rustc; RUSTC_BOOTSTRAP=1 lets the pinned stable
/// toolchain accept them, so no second toolchain is needed.
fn fuzz(target: &str, minutes: u64) -> Result<ExitCode> {
    let root = workspace_root();
    let installed = Command::new("cargo")
        .args(["fuzz", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    if !installed {
        bail!("cargo-fuzz is not installed: cargo install cargo-fuzz --locked");
    }
    let corpus = format!("fuzz/corpus/{target}");
    std::fs::create_dir_all(root.join(&corpus))
        .with_context(|| format!("cannot create {corpus}"))?;
    let mut command = Command::new("cargo");
    command
        .current_dir(&root)
        .env("RUSTC_BOOTSTRAP", "1")
        .args(["fuzz", "run", "--release", target, &corpus])
        .args(fuzz_seed_dirs(target))
        .arg("--")
        .arg(format!("-max_total_time={}", minutes * 60))
        // An input that takes a second or allocates 256 MB is a bug of its own.
        .args(["-timeout=1", "-malloc_limit_mb=256", "-rss_limit_mb=1024"])
        .arg("-print_final_stats=1");
    println!("fuzzing {target} for {minutes} min; corpus: {corpus}");
    let status = command.status().context("cannot run cargo fuzz")?;
    if !status.success() {
        bail!(
            "the fuzzer stopped on a failure: the input that caused it is under \
             fuzz/artifacts/{target}/ (replay: cargo fuzz run {target} <file>)"
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// The workspace root: xtask lives one level below it.
fn workspace_root() -> PathBuf {
    let built_in = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    // A binary carried to another machine (a GPU machine without cargo: bench/gpu-device.sh)
    // runs in a checkout somewhere else.
    if built_in.join("Cargo.toml").is_file() {
        built_in
    } else {
        PathBuf::from(".")
    }
}

/// Paths given by the user are relative to where they ran the command, not to the root the
/// cli runs in.
fn absolute(path: &Path) -> Result<String> {
    let absolute =
        std::path::absolute(path).with_context(|| format!("cannot resolve {}", path.display()))?;
    Ok(absolute.to_string_lossy().into_owned())
}

/// `cargo SUBCOMMAND --release -p cli [--features F]` in the workspace root.
fn cargo_cli(subcommand: &str, features: Option<&str>) -> Command {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .current_dir(workspace_root())
        .args([subcommand, "--release", "--package", "cli"]);
    if let Some(features) = features {
        command.args(["--features", features]);
    }
    command
}

/// `cargo run --release -p cli [--features F] -- ARGS` in the workspace root.
fn run_cli(features: Option<&str>, args: &[String]) -> Result<ExitCode> {
    let mut command = cargo_cli("run", features);
    command.arg("--").args(args);
    let status = command
        .status()
        .context("cannot run cargo to build and start the cli")?;
    match status.code() {
        Some(0) => Ok(ExitCode::SUCCESS),
        Some(code) => Ok(ExitCode::from(u8::try_from(code).unwrap_or(1))),
        None => bail!("the cli was killed by a signal"),
    }
}
