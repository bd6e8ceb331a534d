//! `cargo xtask bench cpu`: builds the cli with the CPU backends asked for, runs `mnist-lstm
//! bench` once per backend per repetition (one process each, so peak memory is per backend),
//! optionally the PyTorch tutorial (`bench/pytorch/tutorial.py`) in between, and writes
//! `target/bench/latest.json` and a table of medians and ratios.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use clap::Args;
use serde_json::{Map, Value, json};

use super::FIRST_SEED;
use crate::common::{
    absolute, build_cli_copy, cpu_model, median, mnist_dir, pin_ours, pytorch_python, run_for_json,
    target_dir, thread_count, tutorial_command, workspace_root,
};

/// Options of `cargo xtask bench cpu`.
#[derive(Args, Debug)]
pub struct CpuArgs {
    /// Also run the PyTorch tutorial (installs torch into bench/pytorch/.venv from PyPI if
    /// absent), alternating with ours, and print each figure's ratio.
    #[arg(long)]
    vs_pytorch: bool,
    /// Repetitions, with seeds 42, 43, ...; the table shows medians.
    #[arg(long, default_value_t = 1)]
    seeds: u64,
    /// Timed training steps (batch 64) per process.
    #[arg(long, default_value_t = 200)]
    steps: usize,
    /// Untimed training steps before them.
    #[arg(long, default_value_t = 20)]
    warmup: usize,
    #[command(flatten)]
    common: super::CommonArgs,
    /// Backends to measure, comma-separated.
    #[arg(long, default_value = "flex,ndarray", value_delimiter = ',')]
    backends: Vec<String>,
    /// Skip the full epoch (no epoch time, no accuracy): a quick check.
    #[arg(long)]
    no_epoch: bool,
    /// Where the combined JSON goes [default: <target dir>/bench/latest.json].
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// What is measured: the tutorial (`rows`: configs/default.toml, 28 steps of 28 pixels) or
    /// sequential MNIST (`pixels`: configs/pixels.toml, 784 steps of one pixel, an LSTM of 128
    /// units; PyTorch runs the same model and optimiser). `pixels` measures steps and inference
    /// only (an epoch is minutes): give `--no-epoch` with it.
    #[arg(long, default_value = "rows", value_parser = ["rows", "pixels"])]
    sequence: String,
}

impl CpuArgs {
    /// Whether the pixel-by-pixel recipe is measured.
    fn pixels(&self) -> bool {
        self.sequence == "pixels"
    }
}

/// (JSON field, table label, higher is better, scale for the table, decimals).
const FIGURES: [(&str, &str, bool, f64, usize); 5] = [
    (
        "train_images_per_second",
        "training images/s (batch 64)",
        true,
        1.0,
        0,
    ),
    (
        "infer_images_per_second",
        "inference images/s (batch 1000)",
        true,
        1.0,
        0,
    ),
    (
        "epoch_seconds",
        "one epoch, s (default config)",
        false,
        1.0,
        1,
    ),
    (
        "peak_rss_bytes",
        "peak memory (RSS), MiB",
        false,
        1.0 / 1_048_576.0,
        0,
    ),
    (
        "test_accuracy",
        "test accuracy after 1 epoch, %",
        true,
        100.0,
        2,
    ),
];

/// Measures every backend (and PyTorch) for every seed, writes the JSON and prints the table.
pub fn bench_cpu(args: CpuArgs) -> Result<()> {
    check(&args)?;
    let root = workspace_root();
    let threads = thread_count(args.common.threads);
    // Prepare PyTorch first: the install is the slow part and should fail before any timing.
    let python = match args.vs_pytorch {
        true => Some(pytorch_python(&root, args.common.python.as_deref())?),
        false => None,
    };
    let binary = build_cli_copy(&root, &args.backends.join(","))?;
    let runs_dir = target_dir(&root).join("bench").join("runs");
    std::fs::create_dir_all(&runs_dir)
        .with_context(|| format!("cannot create {}", runs_dir.display()))?;
    let programs = Programs {
        binary,
        python,
        root: root.clone(),
        runs_dir,
        threads,
    };
    let runs = measure_all(&args, &programs)?;

    let mut names: Vec<String> = args.backends.clone();
    if programs.python.is_some() {
        names.push("pytorch".to_string());
    }
    let summary: Map<String, Value> = names
        .iter()
        .map(|name| (name.clone(), Value::Object(medians(&runs, name))))
        .collect();
    let ratios: Map<String, Value> = if programs.python.is_some() {
        args.backends
            .iter()
            .map(|backend| (backend.clone(), Value::Object(ratios(&summary, backend))))
            .collect()
    } else {
        Map::new()
    };
    let combined = json!({
        "date_unix": SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0),
        "machine": {
            "cpu": cpu_model(),
            "cores_available": std::thread::available_parallelism().map(usize::from).unwrap_or(1),
        },
        "settings": {
            "threads": threads,
            "repetitions": args.seeds,
            "seeds": (0..args.seeds).map(|r| FIRST_SEED + r).collect::<Vec<_>>(),
            "train_steps": args.steps,
            "train_warmup_steps": args.warmup,
            "epoch": !args.no_epoch,
            "sequence": args.sequence,
        },
        "summary": summary,
        "ratios_vs_pytorch": ratios,
        "ratio_meaning": "train/infer/epoch: speed of ours over PyTorch's (above 1: ours faster); \
            peak_rss: ours over PyTorch's (above 1: ours uses more); test_accuracy_points: ours \
            minus PyTorch's, in percentage points",
        "runs": runs,
    });
    let out = match &args.out {
        Some(path) => PathBuf::from(absolute(path)?),
        None => target_dir(&root).join("bench").join("latest.json"),
    };
    let text = serde_json::to_string_pretty(&combined)?;
    std::fs::write(&out, text + "\n").with_context(|| format!("cannot write {}", out.display()))?;

    println!();
    if args.pixels() {
        println!(
            "sequential MNIST: configs/pixels.toml (784 steps of one pixel, LSTM 128); PyTorch \
             the same model and optimiser (bench/pytorch/tutorial.py --recipe pixels)"
        );
    }
    print_table(&names, &summary, &ratios, args.seeds, threads);
    println!("\nwritten: {}", out.display());
    Ok(())
}

/// Refuses options that would measure nothing.
fn check(args: &CpuArgs) -> Result<()> {
    for backend in &args.backends {
        if !["flex", "ndarray"].contains(&backend.as_str()) {
            bail!("--backends: {backend} is not a CPU backend (flex, ndarray)");
        }
    }
    if args.backends.is_empty() || args.seeds == 0 || args.steps == 0 {
        bail!("--backends, --seeds and --steps must name at least one");
    }
    if args.pixels() && !args.no_epoch {
        bail!("--sequence pixels measures steps and inference only: add --no-epoch");
    }
    Ok(())
}

/// What the measuring processes run.
struct Programs {
    /// Our cli, a copy of the release build.
    binary: PathBuf,
    /// The Python with torch, when comparing against PyTorch.
    python: Option<PathBuf>,
    /// The workspace root (bench/pytorch/tutorial.py is under it).
    root: PathBuf,
    /// Where each process writes its JSON.
    runs_dir: PathBuf,
    /// Threads for every implementation.
    threads: usize,
}

/// Every process of every repetition: ours and theirs take turns (flex, ndarray, PyTorch, flex,
/// ...), so a slow patch on a shared machine hits all of them rather than one.
fn measure_all(args: &CpuArgs, programs: &Programs) -> Result<Vec<Value>> {
    let mut runs: Vec<Value> = Vec::new();
    let mut data_dir = mnist_dir(args.common.data_dir.as_deref())?;
    for repetition in 0..args.seeds {
        let seed = FIRST_SEED + repetition;
        for backend in &args.backends {
            let report = measure_ours(args, programs, backend, seed, data_dir.as_deref())?;
            if data_dir.is_none() {
                // PyTorch reads the files the cli found.
                data_dir = report
                    .get("data_dir")
                    .and_then(Value::as_str)
                    .map(str::to_string);
            }
            runs.push(report);
        }
        if let Some(python) = &programs.python {
            let Some(dir) = &data_dir else {
                bail!("no data directory for PyTorch: give --data-dir or set MNIST_DIR");
            };
            runs.push(measure_pytorch(args, programs, python, seed, dir)?);
        }
    }
    Ok(runs)
}

/// One `mnist-lstm bench` process on `backend`.
fn measure_ours(
    args: &CpuArgs,
    programs: &Programs,
    backend: &str,
    seed: u64,
    data_dir: Option<&str>,
) -> Result<Value> {
    let json = programs.runs_dir.join(format!("{seed}-{backend}.json"));
    let mut command = Command::new(&programs.binary);
    command
        .args(["bench", "--device", backend, "--json"])
        .arg(&json)
        .args(["--steps", &args.steps.to_string()])
        .args(["--warmup", &args.warmup.to_string()])
        .args(["--set", &format!("training.seed={seed}")]);
    if args.pixels() {
        command
            .arg("--config")
            .arg(programs.root.join("configs/pixels.toml"));
    }
    pin_ours(&mut command, programs.threads);
    if args.no_epoch {
        command.arg("--no-epoch");
    }
    if let Some(dir) = data_dir {
        command.args(["--data-dir", dir]);
    }
    run_child(&mut command, &json, &format!("{backend} (seed {seed})"))
}

/// One process of the PyTorch tutorial.
fn measure_pytorch(
    args: &CpuArgs,
    programs: &Programs,
    python: &Path,
    seed: u64,
    data_dir: &str,
) -> Result<Value> {
    let json = programs.runs_dir.join(format!("{seed}-pytorch.json"));
    let mut command = tutorial_command(
        python,
        &programs.root,
        data_dir,
        &json,
        programs.threads,
        seed,
    );
    command
        .args(["--steps", &args.steps.to_string()])
        .args(["--warmup", &args.warmup.to_string()]);
    if args.no_epoch {
        command.arg("--no-epoch");
    }
    if args.pixels() {
        command.args(["--recipe", "pixels"]);
    }
    run_child(&mut command, &json, &format!("pytorch (seed {seed})"))
}

/// Runs one measuring process and reads the JSON it wrote, printing its figures.
fn run_child(command: &mut Command, json: &Path, what: &str) -> Result<Value> {
    println!("measuring {what} ...");
    let report = run_for_json(command, json, &format!("the {what} measurement"))?;
    let field =
        |name: &str, scale: f64, decimals: usize| match report.get(name).and_then(Value::as_f64) {
            Some(value) => format!("{:.*}", decimals, value * scale),
            None => "-".to_string(),
        };
    println!(
        "  training {} img/s, inference {} img/s, epoch {} s, accuracy {}%, peak {} MiB",
        field("train_images_per_second", 1.0, 0),
        field("infer_images_per_second", 1.0, 0),
        field("epoch_seconds", 1.0, 1),
        field("test_accuracy", 100.0, 2),
        field("peak_rss_bytes", 1.0 / 1_048_576.0, 0)
    );
    Ok(report)
}

/// Median of each figure over the runs of `name` (a backend, or `pytorch`).
fn medians(runs: &[Value], name: &str) -> Map<String, Value> {
    let mut medians = Map::new();
    for (field, ..) in FIGURES
        .iter()
        .chain([("epoch_images_per_second", "", true, 1.0, 0)].iter())
    {
        let mut values: Vec<f64> = runs
            .iter()
            .filter(|run| run.get("backend").and_then(Value::as_str) == Some(name))
            .filter_map(|run| run.get(*field).and_then(Value::as_f64))
            .collect();
        let Some(median) = median(&mut values) else {
            continue;
        };
        medians.insert(field.to_string(), json!(median));
        medians.insert(format!("{field}_all"), json!(values));
    }
    medians
}

/// Ours against PyTorch for each figure; see `ratio_meaning` in the JSON.
fn ratios(summary: &Map<String, Value>, backend: &str) -> Map<String, Value> {
    let get = |name: &str, field: &str| {
        summary
            .get(name)
            .and_then(|figures| figures.get(field))
            .and_then(Value::as_f64)
    };
    let mut ratios = Map::new();
    for (field, key, ours_over_theirs) in [
        ("train_images_per_second", "train_speed", true),
        ("infer_images_per_second", "infer_speed", true),
        ("epoch_seconds", "epoch_speed", false),
        ("peak_rss_bytes", "peak_rss", true),
    ] {
        if let (Some(ours), Some(theirs)) = (get(backend, field), get("pytorch", field)) {
            let ratio = if ours_over_theirs {
                ours / theirs
            } else {
                theirs / ours
            };
            ratios.insert(key.to_string(), json!(ratio));
        }
    }
    if let (Some(ours), Some(theirs)) = (
        get(backend, "test_accuracy"),
        get("pytorch", "test_accuracy"),
    ) {
        ratios.insert(
            "test_accuracy_points".to_string(),
            json!(100.0 * (ours - theirs)),
        );
    }
    ratios
}

fn print_table(
    names: &[String],
    summary: &Map<String, Value>,
    ratios: &Map<String, Value>,
    repetitions: u64,
    threads: usize,
) {
    let ratio_columns: Vec<&String> = ratios.keys().collect();
    let mut header = format!(
        "{:<34}",
        format!("median of {repetitions}, {threads} threads")
    );
    for name in names {
        header += &format!("{name:>10}");
    }
    for backend in &ratio_columns {
        header += &format!("{:>17}", format!("{backend}/pytorch"));
    }
    println!("{header}");
    for (field, label, _, scale, decimals) in FIGURES {
        let mut line = format!("{label:<34}");
        for name in names {
            let value = summary
                .get(name)
                .and_then(|figures| figures.get(field))
                .and_then(Value::as_f64);
            line += &match value {
                Some(value) => format!("{:>10.*}", decimals, value * scale),
                None => format!("{:>10}", "-"),
            };
        }
        let key = match field {
            "train_images_per_second" => "train_speed",
            "infer_images_per_second" => "infer_speed",
            "epoch_seconds" => "epoch_speed",
            "peak_rss_bytes" => "peak_rss",
            _ => "test_accuracy_points",
        };
        for backend in &ratio_columns {
            let value = ratios
                .get(*backend)
                .and_then(|figures| figures.get(key))
                .and_then(Value::as_f64);
            line += &match (value, key) {
                (Some(points), "test_accuracy_points") => {
                    format!("{:>17}", format!("{points:+.2} pt"))
                }
                (Some(ratio), _) => format!("{:>17}", format!("{ratio:.2}x")),
                (None, _) => format!("{:>17}", "-"),
            };
        }
        println!("{line}");
    }
    if !ratio_columns.is_empty() {
        println!(
            "(speed ratios: above 1x means ours is faster; memory: above 1x means ours uses more)"
        );
    }
}
