//! `mnist-lstm`: train and evaluate the LSTM MNIST classifier, and classify images with it.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, anyhow};
use clap::{Args, Parser, Subcommand};
use inference::{Predictor, idx_digit, load_digit, select_device};
use training::{
    ARTIFACTS_ROOT, BenchOptions, ExperimentConfig, Resume, RunOptions, StopRequest, TrainingError,
    bench, evaluate_run, latest_run, train,
};

mod gates;
mod interop;
mod serve;

// mimalloc instead of glibc's allocator: the LSTM kernel and Burn allocate and free buffers of
// hundreds of KiB every training step, and glibc returns them to the kernel and faults them back
// in (page clearing was several percent of a step's profile); mimalloc keeps them.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The exit status of a run stopped by Ctrl-C or SIGTERM (128 + SIGINT), as shells report it.
const EXIT_INTERRUPTED: u8 = 130;

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
    Train(TrainArgs),
    /// Evaluate a trained model on the full test split.
    Eval(EvalArgs),
    /// Classify images of digits: prints the digit and the three most likely classes of each.
    ///
    /// PNG or JPEG, any size and colour: made grey, inverted when the background is light, and,
    /// unless already 28x28, cropped to the digit, scaled into 20x20 and centred by mass in
    /// 28x28, as MNIST's digits were.
    Predict(PredictArgs),
    /// Draw how a trained run read one image: after each time step, the class probabilities it
    /// would give were the sequence to stop there, and its top layer's forget, input and output
    /// gates and cell state over the steps (SVG and PNG, and the numbers as JSON).
    Gates(gates::GatesArgs),
    /// Serve a trained run over HTTP: a draw-a-digit page at /, POST /v1/predict (a PNG or JPEG
    /// body, or JSON {"pixels": [784 grey levels]}), POST /v1/predict/batch, GET /v1/model,
    /// GET /healthz and GET /metrics. Concurrent requests share forward passes. SIGINT or
    /// SIGTERM: stop accepting, finish the requests in flight, exit 0.
    Serve(serve::ServeArgs),
    /// Write a run's weights as safetensors with PyTorch's names, shapes and gate order for the
    /// tutorial's module (nn.LSTM, or the nn.GRU or nn.RNN of model.cell, named `rnn`, and
    /// nn.Linear `out`), and its configuration as JSON beside them.
    Export(interop::ExportArgs),
    /// Turn a PyTorch state_dict of the tutorial's module (.pt, .pth or .safetensors) into a run
    /// directory that eval, predict and serve use as they are.
    Import(interop::ImportArgs),
    /// Measure one backend: training images/s, inference images/s, a full run of the
    /// configuration (an epoch by default) with its test accuracy, and peak memory; prints JSON.
    /// `cargo xtask bench cpu` runs it per backend and beside PyTorch.
    Bench(BenchArgs),
}

/// Options of `mnist-lstm train`.
#[derive(Args, Debug)]
struct TrainArgs {
    /// The configuration file (e.g. configs/default.toml).
    config: PathBuf,
    /// Run directory for checkpoints, the model and its configuration
    /// [default: training.artifacts, else artifacts/<config name>].
    #[arg(long, value_name = "DIR")]
    artifacts: Option<PathBuf>,
    /// Override a configuration field; repeatable (e.g. --set training.epochs=3).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    overrides: Vec<String>,
    /// Go on from a checkpoint of the run directory, exactly where it stood: the newest
    /// complete one of this configuration, or the checkpoint directory given
    /// (<run>/checkpoint/step-N). Give the same configuration and --set options.
    #[arg(long, value_name = "CHECKPOINT")]
    resume: Option<Option<PathBuf>>,
    #[command(flatten)]
    common: Common,
}

/// Options of `mnist-lstm eval`.
#[derive(Args, Debug)]
struct EvalArgs {
    /// Run directory of a finished `train` [default: the newest run under artifacts/].
    #[arg(long, value_name = "DIR")]
    artifacts: Option<PathBuf>,
    #[command(flatten)]
    common: Common,
}

/// Options of `mnist-lstm predict`.
#[derive(Args, Debug)]
struct PredictArgs {
    /// Run directory of a finished `train` [default: the newest run under artifacts/].
    #[arg(long, value_name = "DIR")]
    model: Option<PathBuf>,
    /// PNG or JPEG files, each holding one digit.
    #[arg(value_name = "IMAGE", required_unless_present = "idx")]
    images: Vec<PathBuf>,
    /// Classify images of an IDX file (e.g. t10k-images-idx3-ubyte.gz), chosen by --index.
    #[arg(long, value_name = "FILE", requires = "index")]
    idx: Option<PathBuf>,
    /// Index, from 0, of an image of the --idx file; repeatable.
    #[arg(long, value_name = "N", requires = "idx")]
    index: Vec<usize>,
    /// Backend to run on when several are compiled in: flex, ndarray or wgpu
    /// [env: BURN_DEVICE].
    #[arg(long, value_name = "NAME")]
    device: Option<String>,
}

/// Options of `mnist-lstm bench`.
#[derive(Args, Debug)]
struct BenchArgs {
    /// The configuration [default: the built-in defaults, the same as configs/default.toml].
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Override a configuration field; repeatable (e.g. --set training.seed=43).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    overrides: Vec<String>,
    /// Untimed training steps before the timed ones.
    #[arg(long, default_value_t = 20)]
    warmup: usize,
    /// Timed training steps.
    #[arg(long, default_value_t = 200)]
    steps: usize,
    /// Images per inference batch.
    #[arg(long, default_value_t = 1000)]
    infer_batch_size: usize,
    /// Test images classified in the timed inference.
    #[arg(long, default_value_t = 10_000)]
    infer_images: usize,
    /// Skip the full run (no epoch time, no test accuracy).
    #[arg(long)]
    no_epoch: bool,
    /// Also write the JSON to this file.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    #[command(flatten)]
    common: Common,
}

#[derive(Args, Debug)]
struct Common {
    /// Directory holding the four MNIST files; the only place looked at when given
    /// [otherwise data.dir, likewise the only place when set; else $MNIST_DIR, the system
    /// package directory, the user cache, then a download into it].
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Backend to run on when several are compiled in: flex, ndarray or wgpu [env: BURN_DEVICE].
    #[arg(long, value_name = "NAME")]
    device: Option<String>,
    /// Never download missing data; say where to put the files instead
    /// [env: MNIST_LSTM_OFFLINE=1]. Without it, missing files are downloaded into the user cache.
    #[arg(long)]
    offline: bool,
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// The run directory given, or the newest under `artifacts/`.
pub(crate) fn run_dir_or_latest(given: Option<PathBuf>) -> Result<PathBuf> {
    match given {
        Some(dir) => Ok(dir),
        None => latest_run(Path::new(ARTIFACTS_ROOT)).ok_or_else(|| {
            anyhow!(
                "no finished run under {ARTIFACTS_ROOT}/: train one first \
                 (mnist-lstm train configs/default.toml) or pass the run directory"
            )
        }),
    }
}

/// Classifies each image and prints a line per image; an image that cannot be read is an
/// error line on stderr, and makes the command fail once the others are done.
fn predict(
    run_dir: &Path,
    images: &[PathBuf],
    idx: Option<&Path>,
    indices: &[usize],
    device: Option<String>,
) -> Result<()> {
    let device = select_device(device.as_deref())?.device;
    let predictor = Predictor::from_run(run_dir, &device)
        .with_context(|| format!("cannot load the model of {}", run_dir.display()))?;
    // (name, digit, truth) of each image that could be read.
    let mut digits = Vec::new();
    let mut failed = 0;
    for path in images {
        match load_digit(path) {
            Ok(digit) => digits.push((path.display().to_string(), digit, None)),
            Err(error) => {
                eprintln!("error: {error}");
                failed += 1;
            }
        }
    }
    if let Some(idx) = idx {
        for &index in indices {
            match idx_digit(idx, index) {
                Ok((digit, label)) => {
                    digits.push((format!("{}[{index}]", idx.display()), digit, label))
                }
                Err(error) => {
                    eprintln!("error: {error}");
                    failed += 1;
                }
            }
        }
    }
    let pixels: Vec<Vec<u8>> = digits.iter().map(|(_, digit, _)| digit.clone()).collect();
    let predictions = predictor.predict(&pixels)?;
    for ((name, _, truth), prediction) in digits.iter().zip(&predictions) {
        let top: Vec<String> = prediction
            .top(3)
            .iter()
            .map(|&(class, p)| format!("{} {:.2}%", predictor.label(class), 100.0 * p))
            .collect();
        let truth = truth
            .map(|label| format!("  (truth: {})", predictor.label(usize::from(label))))
            .unwrap_or_default();
        println!(
            "{name}: {}  top 3: {}{truth}",
            predictor.label(prediction.class()),
            top.join(", ")
        );
    }
    if failed > 0 {
        return Err(anyhow!(
            "{failed} of {} images could not be classified (see above)",
            failed + digits.len()
        ));
    }
    Ok(())
}

/// Makes the first Ctrl-C (or SIGTERM, SIGHUP) during training ask `stop` to end the run after
/// the step under way, with a checkpoint; the second, or one before or after the training loop
/// (loading data, the final evaluation), exits at once.
fn stop_on_signals(stop: &StopRequest) -> Result<()> {
    let stop = stop.clone();
    ctrlc::set_handler(move || {
        if stop.is_requested() || !stop.is_training() {
            eprintln!("\nstopping at once");
            std::process::exit(i32::from(EXIT_INTERRUPTED));
        }
        stop.request();
        eprintln!(
            "\nstopping after this step and writing a checkpoint (Ctrl-C again to quit at once)"
        );
    })
    .context("cannot install the Ctrl-C handler")
}

/// `text` as one shell word.
fn shell_word(text: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c);
    if !text.is_empty() && text.chars().all(plain) {
        text.to_string()
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

/// The command that resumes an interrupted `train`.
fn resume_command(
    config: &Path,
    artifacts: Option<&Path>,
    overrides: &[String],
    data_dir: Option<&Path>,
) -> String {
    let mut words = vec![
        "mnist-lstm".to_string(),
        "train".to_string(),
        shell_word(&config.display().to_string()),
    ];
    if let Some(dir) = artifacts {
        words.push(format!(
            "--artifacts {}",
            shell_word(&dir.display().to_string())
        ));
    }
    for assignment in overrides {
        words.push(format!("--set {}", shell_word(assignment)));
    }
    if let Some(dir) = data_dir {
        words.push(format!(
            "--data-dir {}",
            shell_word(&dir.display().to_string())
        ));
    }
    words.push("--resume".to_string());
    words.join(" ")
}

fn run(cli: Cli) -> Result<ExitCode> {
    let done = |()| ExitCode::SUCCESS;
    match cli.command {
        Command::Train(args) => train_command(args),
        Command::Eval(args) => eval_command(args).map(done),
        Command::Predict(args) => predict_command(args).map(done),
        Command::Gates(args) => gates::gates(args).map(done),
        Command::Serve(args) => serve::serve(args).map(done),
        Command::Export(args) => interop::export(args).map(done),
        Command::Import(args) => interop::import(args).map(done),
        Command::Bench(args) => bench_command(args).map(done),
    }
}

/// `train`: the run, stopped cleanly on Ctrl-C or SIGTERM with the command that resumes it.
fn train_command(args: TrainArgs) -> Result<ExitCode> {
    let TrainArgs {
        config,
        artifacts,
        overrides,
        resume,
        common,
    } = args;
    let experiment = ExperimentConfig::load(&config)?.with_overrides(&overrides)?;
    let stop = StopRequest::new();
    stop_on_signals(&stop)?;
    let resume_again = resume_command(
        &config,
        artifacts.as_deref(),
        &overrides,
        common.data_dir.as_deref(),
    );
    let options = RunOptions {
        config_name: config
            .file_stem()
            .map(|stem| stem.to_string_lossy().into_owned()),
        data_dir: common.data_dir,
        artifacts,
        device: common.device,
        offline: common.offline,
        verbose: true,
        resume: resume.map(|checkpoint| checkpoint.map_or(Resume::Latest, Resume::From)),
        stop,
    };
    match train(&experiment, &options) {
        Ok(outcome) => {
            println!("run directory: {}", outcome.run_dir.display());
            Ok(ExitCode::SUCCESS)
        }
        Err(stopped @ TrainingError::Interrupted { .. }) => {
            println!("{stopped}\nresume with: {resume_again}");
            Ok(ExitCode::from(EXIT_INTERRUPTED))
        }
        Err(error) => Err(error.into()),
    }
}

/// `eval`: a finished run on the full test split.
fn eval_command(args: EvalArgs) -> Result<()> {
    let EvalArgs { artifacts, common } = args;
    let run_dir = run_dir_or_latest(artifacts)?;
    let options = RunOptions {
        data_dir: common.data_dir,
        device: common.device,
        offline: common.offline,
        verbose: true,
        ..RunOptions::default()
    };
    println!("evaluating {}", run_dir.display());
    let report = evaluate_run(&run_dir, &options)
        .with_context(|| format!("cannot evaluate {}", run_dir.display()))?;
    println!("{report}");
    Ok(())
}

/// `predict`: image files and IDX images through a run's model.
fn predict_command(args: PredictArgs) -> Result<()> {
    let PredictArgs {
        model,
        images,
        idx,
        index,
        device,
    } = args;
    predict(
        &run_dir_or_latest(model)?,
        &images,
        idx.as_deref(),
        &index,
        device,
    )
}

/// `bench`: one backend measured, its JSON printed (and written with `--json`).
fn bench_command(args: BenchArgs) -> Result<()> {
    let experiment = match &args.config {
        Some(path) => ExperimentConfig::load(path)?,
        None => ExperimentConfig::default(),
    }
    .with_overrides(&args.overrides)?;
    let options = RunOptions {
        data_dir: args.common.data_dir,
        device: args.common.device,
        offline: args.common.offline,
        ..RunOptions::default()
    };
    let measured = bench(
        &experiment,
        &options,
        &BenchOptions {
            warmup_steps: args.warmup,
            steps: args.steps,
            infer_batch_size: args.infer_batch_size,
            infer_images: args.infer_images,
            epoch: !args.no_epoch,
            artifacts: None,
        },
    )?;
    if let Some(path) = &args.json {
        measured.write_json(path)?;
    }
    println!("{}", measured.to_json());
    Ok(())
}
