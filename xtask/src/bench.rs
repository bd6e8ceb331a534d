//! `cargo xtask bench`: builds the cli with both CPU backends, runs `mnist-lstm bench` once per
//! backend per repetition (one process each, so peak memory is per backend), optionally
//! the PyTorch tutorial (`bench/pytorch/tutorial.py`) in between, and writes `target/bench/latest.json`
//! and a table of medians and ratios.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use clap::Args;
use serde_json::{Map, Value, json};

use crate::{absolute, cargo_cli, time_to, workspace_root};

/// Options of `cargo xtask bench`.
#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Also run the PyTorch tutorial (installs torch into bench/pytorch/.venv from PyPI if absent),
    /// alternating with ours, and print each figure's ratio.
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
    /// Threads for every implementation (RAYON_NUM_THREADS for ours, torch.set_num_threads for
    /// PyTorch) [default: the cores available].
    #[arg(long)]
    threads: Option<usize>,
    /// Backends to measure, comma-separated.
    #[arg(long, default_value = "flex,ndarray", value_delimiter = ',')]
    backends: Vec<String>,
    /// Skip the full epoch (no epoch time, no accuracy): a quick check.
    #[arg(long)]
    no_epoch: bool,
    /// Directory holding the MNIST files [default: $MNIST_DIR, else where the cli finds them].
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Python interpreter that has torch, instead of bench/pytorch/.venv.
    #[arg(long, value_name = "PATH")]
    python: Option<PathBuf>,
    /// Where the combined JSON goes [default: <target dir>/bench/latest.json, with
    /// --time-to-97 <target dir>/bench/time-to-97.json].
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// Instead of the figures above: the wall time from the start of training to 97 % test
    /// accuracy, `mnist-lstm train <--config>` on the first of --backends against the PyTorch tutorial
    /// recipe epoch after epoch (installs torch like --vs-pytorch), alternating per seed.
    #[arg(long)]
    time_to_97: bool,
    /// With --time-to-97: our configuration (its validation must be the test split).
    #[arg(long, value_name = "FILE", default_value = "configs/fast.toml")]
    config: PathBuf,
    /// With --time-to-97: PyTorch's most epochs before it counts as not reaching 97 %.
    #[arg(long, default_value_t = 10)]
    max_epochs: usize,
    /// Instead of the figures above: `mnist-lstm serve` of this run directory under load
    /// (--clients for --seconds, PNG test digits on loopback), with batching and with
    /// --max-batch 1; writes <target dir>/bench/serve.json.
    #[arg(long, value_name = "RUN")]
    serve: Option<PathBuf>,
    /// With --serve: concurrent clients.
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// With --serve: seconds of load per variant.
    #[arg(long, default_value_t = 20.0)]
    seconds: f64,
}

/// The seed of the first repetition: the default configuration's, so that figures measured
/// across changes compare seed for seed.
const FIRST_SEED: u64 = 42;

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

pub fn bench(args: BenchArgs) -> Result<()> {
    let root = workspace_root();
    let target = target_dir(&root);
    let threads = args
        .threads
        .or_else(|| std::thread::available_parallelism().ok().map(usize::from))
        .unwrap_or(1)
        .max(1);
    let data_dir = match &args.data_dir {
        Some(dir) => Some(absolute(dir)?),
        None => std::env::var("MNIST_DIR")
            .ok()
            .filter(|dir| !dir.is_empty()),
    };
    for backend in &args.backends {
        if !["flex", "ndarray"].contains(&backend.as_str()) {
            bail!("--backends: {backend} is not a CPU backend (flex, ndarray)");
        }
    }
    if args.seeds == 0 || args.steps == 0 {
        bail!("--seeds and --steps must be at least 1");
    }

    if let Some(run) = &args.serve {
        let Some(data_dir) = &data_dir else {
            bail!("--serve sends MNIST test digits: give --data-dir or set MNIST_DIR");
        };
        if args.clients == 0 || !args.seconds.is_finite() || args.seconds <= 0.0 {
            bail!("--clients and --seconds must be positive");
        }
        return crate::serve_bench::serve_bench(&crate::serve_bench::ServeBench {
            run,
            clients: args.clients,
            seconds: args.seconds,
            data_dir: Path::new(data_dir),
            out: args.out.as_deref(),
        });
    }

    // Prepare PyTorch first: the install is the slow part and should fail before any timing.
    let python = if args.vs_pytorch || args.time_to_97 {
        Some(match &args.python {
            Some(python) => python.clone(),
            None => ensure_venv(&root)?,
        })
    } else {
        None
    };

    let features = args.backends.join(",");
    println!("building the cli with --features {features} ...");
    let built = cargo_cli("build", Some(&features))
        .status()
        .context("cannot run cargo build")?;
    if !built.success() {
        bail!("cargo build --release -p cli --features {features} failed");
    }
    let runs_dir = target.join("bench").join("runs");
    std::fs::create_dir_all(&runs_dir)
        .with_context(|| format!("cannot create {}", runs_dir.display()))?;
    // A copy of its own: any other `cargo build -p cli` in the same target directory during
    // the minutes of measuring would replace target/release/mnist-lstm with a build that may
    // lack a backend.
    let built = target.join("release").join("mnist-lstm");
    let binary = target.join("bench").join("mnist-lstm");
    std::fs::copy(&built, &binary)
        .with_context(|| format!("cannot copy {} to {}", built.display(), binary.display()))?;

    if args.time_to_97 {
        let (Some(python), Some(data_dir)) = (&python, &data_dir) else {
            bail!("--time-to-97 needs the data directory: give --data-dir or set MNIST_DIR");
        };
        if args.max_epochs == 0 {
            bail!("--max-epochs must be at least 1");
        }
        let Some(backend) = args.backends.first() else {
            bail!("--backends: name one backend");
        };
        let config = PathBuf::from(absolute(&args.config)?);
        if !config.is_file() {
            bail!("--config {}: no such file", config.display());
        }
        return time_to::time_to_accuracy(time_to::TimeToArgs {
            binary: &binary,
            python,
            root: &root,
            bench_dir: &target.join("bench"),
            config: &config,
            backend,
            data_dir,
            threads,
            seeds: (0..args.seeds).map(|r| FIRST_SEED + r).collect(),
            target: 0.97,
            max_epochs: args.max_epochs,
            out: match &args.out {
                Some(path) => PathBuf::from(absolute(path)?),
                None => target.join("bench").join("time-to-97.json"),
            },
            cpu: cpu_model(),
        });
    }

    let mut runs: Vec<Value> = Vec::new();
    let mut data_dir = data_dir;
    for repetition in 0..args.seeds {
        let seed = FIRST_SEED + repetition;
        // Ours and theirs take turns (flex, ndarray, PyTorch, flex, ...), so a slow patch on
        // a shared machine hits all of them rather than one.
        for backend in &args.backends {
            let json = runs_dir.join(format!("{seed}-{backend}.json"));
            let mut command = Command::new(&binary);
            command
                .args(["bench", "--device", backend, "--json"])
                .arg(&json)
                .args(["--steps", &args.steps.to_string()])
                .args(["--warmup", &args.warmup.to_string()])
                .args(["--set", &format!("training.seed={seed}")]);
            pin_ours(&mut command, threads);
            if args.no_epoch {
                command.arg("--no-epoch");
            }
            if let Some(dir) = &data_dir {
                command.args(["--data-dir", dir]);
            }
            let report = run_child(&mut command, &json, &format!("{backend} (seed {seed})"))?;
            if data_dir.is_none() {
                // PyTorch reads the files the cli found.
                data_dir = report
                    .get("data_dir")
                    .and_then(Value::as_str)
                    .map(str::to_string);
            }
            runs.push(report);
        }
        if let Some(python) = &python {
            let Some(dir) = &data_dir else {
                bail!("no data directory for PyTorch: give --data-dir or set MNIST_DIR");
            };
            let json = runs_dir.join(format!("{seed}-pytorch.json"));
            let mut command = Command::new(python);
            command
                .arg(root.join("bench/pytorch/tutorial.py"))
                .args(["--data-dir", dir, "--json"])
                .arg(&json)
                .args(["--threads", &threads.to_string()])
                .args(["--seed", &seed.to_string()])
                .args(["--steps", &args.steps.to_string()])
                .args(["--warmup", &args.warmup.to_string()]);
            pin_torch(&mut command, threads);
            if args.no_epoch {
                command.arg("--no-epoch");
            }
            runs.push(run_child(
                &mut command,
                &json,
                &format!("pytorch (seed {seed})"),
            )?);
        }
    }

    let mut names: Vec<String> = args.backends.clone();
    if python.is_some() {
        names.push("pytorch".to_string());
    }
    let summary: Map<String, Value> = names
        .iter()
        .map(|name| (name.clone(), Value::Object(medians(&runs, name))))
        .collect();
    let ratios: Map<String, Value> = if python.is_some() {
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
        None => target.join("bench").join("latest.json"),
    };
    let text = serde_json::to_string_pretty(&combined)?;
    std::fs::write(&out, text + "\n").with_context(|| format!("cannot write {}", out.display()))?;

    println!();
    print_table(&names, &summary, &ratios, args.seeds, threads);
    println!("\nwritten: {}", out.display());
    Ok(())
}

/// The target directory cargo builds into from the workspace root.
pub(crate) fn target_dir(root: &Path) -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => root.join(dir),
        _ => root.join("target"),
    }
}

/// Our process's thread pools: rayon serves flex (and gemm) and ndarray's element-wise work;
/// matrixmultiply, ndarray's matmul, has a pool of its own.
pub(crate) fn pin_ours(command: &mut Command, threads: usize) {
    command
        .env("RAYON_NUM_THREADS", threads.to_string())
        .env("MATMUL_NUM_THREADS", threads.to_string());
}

/// PyTorch's: the BLAS and OpenMP pools under torch follow the same count as
/// `torch.set_num_threads` (which tutorial.py's `--threads` sets).
pub(crate) fn pin_torch(command: &mut Command, threads: usize) {
    command
        .env("OMP_NUM_THREADS", threads.to_string())
        .env("MKL_NUM_THREADS", threads.to_string());
}

/// Runs `command` (its stdout not echoed), which writes a JSON report to `json`, and reads it;
/// `what` names it in errors.
pub(crate) fn run_for_json(command: &mut Command, json: &Path, what: &str) -> Result<Value> {
    // A stale file from an earlier run must not pass for this one's.
    let _ = std::fs::remove_file(json);
    let status = command
        .stdout(Stdio::null())
        .status()
        .with_context(|| format!("cannot start {what}"))?;
    if !status.success() {
        bail!("{what} failed ({status})");
    }
    let text =
        std::fs::read_to_string(json).with_context(|| format!("cannot read {}", json.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not JSON", json.display()))
}

/// The median of `values` (sorted in place); `None` when there are none.
pub(crate) fn median(values: &mut [f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let middle = values.len() / 2;
    Some(if values.len() % 2 == 1 {
        values[middle]
    } else {
        (values[middle - 1] + values[middle]) / 2.0
    })
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

/// The Python of bench/pytorch/.venv, created and given torch from PyPI when it lacks it.
fn ensure_venv(root: &Path) -> Result<PathBuf> {
    let venv = root.join("bench/pytorch/.venv");
    let python = venv.join("bin/python");
    let has_torch = |python: &Path| {
        Command::new(python)
            .args(["-c", "import torch"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success())
    };
    if python.is_file() && has_torch(&python) {
        return Ok(python);
    }
    if !python.is_file() {
        println!("creating {} ...", venv.display());
        let created = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .context("cannot run python3 -m venv (is python3 with venv installed?)")?;
        if !created.success() {
            bail!("python3 -m venv {} failed", venv.display());
        }
    }
    println!(
        "installing torch from PyPI into {} (several GB on Linux, where PyPI's build carries \
         CUDA; it runs on the CPU; this takes minutes) ...",
        venv.display()
    );
    let installed = Command::new(&python)
        .args(["-m", "pip", "install", "torch"])
        .status()
        .context("cannot run pip")?;
    if !installed.success() || !has_torch(&python) {
        bail!(
            "pip install torch into {} failed; install it by hand or pass --python",
            venv.display()
        );
    }
    Ok(python)
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

/// The CPU's model name, for the record.
pub(crate) fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|line| line.starts_with("model name"))
                .and_then(|line| line.split(':').nth(1))
                .map(|name| name.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".to_string())
}
