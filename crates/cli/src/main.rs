//! `mnist-lstm`: train and evaluate the LSTM MNIST classifier.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, anyhow};
use clap::{Args, Parser, Subcommand};
use training::{ARTIFACTS_ROOT, ExperimentConfig, RunOptions, evaluate_run, latest_run, train};

/// Train and evaluate an LSTM that reads MNIST digits row by row.
#[derive(Parser, Debug)]
#[command(name = "mnist-lstm", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Train a model from a TOML configuration, then evaluate it on the test split.
    Train {
        /// The configuration file (e.g. configs/default.toml).
        config: PathBuf,
        /// Run directory for checkpoints, the model and its configuration
        /// [default: training.artifacts, else artifacts/<config name>].
        #[arg(long, value_name = "DIR")]
        artifacts: Option<PathBuf>,
        /// Override a configuration field; repeatable (e.g. --set training.epochs=3).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        overrides: Vec<String>,
        #[command(flatten)]
        common: Common,
    },
    /// Evaluate a trained model on the full test split.
    Eval {
        /// Run directory of a finished `train` [default: the newest run under artifacts/].
        #[arg(long, value_name = "DIR")]
        artifacts: Option<PathBuf>,
        #[command(flatten)]
        common: Common,
    },
}

#[derive(Args, Debug)]
struct Common {
    /// Directory holding the four MNIST files; the only place looked at when given
    /// [otherwise: data.dir, then $MNIST_DIR, then the user cache].
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Backend to run on when several are compiled in: flex, ndarray or wgpu [env: BURN_DEVICE].
    #[arg(long, value_name = "NAME")]
    device: Option<String>,
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Train {
            config,
            artifacts,
            overrides,
            common,
        } => {
            let experiment = ExperimentConfig::load(&config)?.with_overrides(&overrides)?;
            let options = RunOptions {
                config_name: config
                    .file_stem()
                    .map(|stem| stem.to_string_lossy().into_owned()),
                data_dir: common.data_dir,
                artifacts,
                device: common.device,
                verbose: true,
            };
            let outcome = train(&experiment, &options)?;
            println!("run directory: {}", outcome.run_dir.display());
            Ok(())
        }
        Command::Eval { artifacts, common } => {
            let run_dir = match artifacts {
                Some(dir) => dir,
                None => latest_run(Path::new(ARTIFACTS_ROOT)).ok_or_else(|| {
                    anyhow!(
                        "no finished run under {ARTIFACTS_ROOT}/: train one first \
                         (mnist-lstm train configs/default.toml) or pass --artifacts DIR"
                    )
                })?,
            };
            let options = RunOptions {
                data_dir: common.data_dir,
                device: common.device,
                verbose: true,
                ..RunOptions::default()
            };
            println!("evaluating {}", run_dir.display());
            let report = evaluate_run(&run_dir, &options)
                .with_context(|| format!("cannot evaluate {}", run_dir.display()))?;
            println!("{report}");
            Ok(())
        }
    }
}
