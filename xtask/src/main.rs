//! Project chores: `cargo xtask <command>`.
//!
//! xtask does not link Burn: it runs the `cli` package through cargo (same target directory,
//! same release build as `cargo run -p cli --release`), forwarding backend features.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};

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
    }
}

/// The workspace root: xtask lives one level below it.
fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// Paths given by the user are relative to where they ran the command, not to the root the
/// cli runs in.
fn absolute(path: &Path) -> Result<String> {
    let absolute =
        std::path::absolute(path).with_context(|| format!("cannot resolve {}", path.display()))?;
    Ok(absolute.to_string_lossy().into_owned())
}

/// `cargo run --release -p cli [--features F] -- ARGS` in the workspace root.
fn run_cli(features: Option<&str>, args: &[String]) -> Result<ExitCode> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .current_dir(workspace_root())
        .args(["run", "--release", "--package", "cli"]);
    if let Some(features) = features {
        command.args(["--features", features]);
    }
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
