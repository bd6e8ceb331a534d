//! `cargo xtask eval`: `cargo run --release -p cli -- eval` with the user's paths made absolute.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::Args;

use crate::common::{absolute, run_cli};

/// Options of `cargo xtask eval`.
#[derive(Args, Debug)]
pub struct EvalArgs {
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
}

/// Evaluates the run on the full test set through the cli; its exit code is the cli's.
pub fn eval(args: EvalArgs) -> Result<ExitCode> {
    let mut cli_args: Vec<String> = vec!["eval".into()];
    if let Some(dir) = &args.artifacts {
        cli_args.extend(["--artifacts".into(), absolute(dir)?]);
    }
    if let Some(dir) = &args.data_dir {
        cli_args.extend(["--data-dir".into(), absolute(dir)?]);
    }
    if let Some(name) = args.device {
        cli_args.extend(["--device".into(), name]);
    }
    run_cli(args.features.as_deref(), &cli_args)
}
