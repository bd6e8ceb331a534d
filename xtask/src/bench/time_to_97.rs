//! `cargo xtask bench time-to-97`: the wall time from the start of training to a model that
//! classifies 97 % of the 10k test images right, ours (`mnist-lstm train configs/fast.toml`)
//! against the PyTorch tutorial's recipe (`bench/pytorch/tutorial.py --time-to-accuracy 0.97`), alternating
//! per seed, medians and their ratio, JSON under `<target dir>/bench/`.
//!
//! Ours: the `elapsed_s` of the first `valid` row of the run's `metrics.csv` at or above the
//! target (the clock starts when training starts, after the data is loaded and the model built;
//! the validation split must be the test split, `data.validation = "test"`, for that row to be the
//! test accuracy). PyTorch: the same clock over its epochs, each followed by a pass over the test
//! set. A run that never reaches the target counts as slower than any that does.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use clap::Args;
use serde_json::{Value, json};

use super::FIRST_SEED;
use crate::common::{
    absolute, build_cli_copy, cpu_model, mnist_dir, pin_ours, pytorch_python, run_for_json,
    target_dir, thread_count, tutorial_command, workspace_root,
};

/// Options of `cargo xtask bench time-to-97`.
#[derive(Args, Debug)]
pub struct TimeTo97Args {
    /// Our configuration (its validation split must be the test split).
    #[arg(long, value_name = "FILE", default_value = "configs/fast.toml")]
    config: PathBuf,
    /// Our backend.
    #[arg(long, default_value = "flex", value_parser = ["flex", "ndarray"])]
    backend: String,
    /// Repetitions, with seeds 42, 43, ...; the table shows medians.
    #[arg(long, default_value_t = 1)]
    seeds: u64,
    /// PyTorch's most epochs before it counts as not reaching 97 %.
    #[arg(long, default_value_t = 10)]
    max_epochs: usize,
    #[command(flatten)]
    common: super::CommonArgs,
    /// Where the combined JSON goes [default: <target dir>/bench/time-to-97.json].
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
}

/// Checks the options, builds ours, prepares PyTorch and races them.
pub fn time_to_97(args: TimeTo97Args) -> Result<()> {
    if args.max_epochs == 0 || args.seeds == 0 {
        bail!("--max-epochs and --seeds must be at least 1");
    }
    let Some(data_dir) = mnist_dir(args.common.data_dir.as_deref())? else {
        bail!("time-to-97 needs the data directory: give --data-dir or set MNIST_DIR");
    };
    let config = PathBuf::from(absolute(&args.config)?);
    if !config.is_file() {
        bail!("--config {}: no such file", config.display());
    }
    let root = workspace_root();
    // Prepare PyTorch first: the install is the slow part and should fail before any timing.
    let python = pytorch_python(&root, args.common.python.as_deref())?;
    let binary = build_cli_copy(&root, &args.backend)?;
    let bench_dir = target_dir(&root).join("bench");
    time_to_accuracy(TimeToArgs {
        binary: &binary,
        python: &python,
        root: &root,
        bench_dir: &bench_dir,
        config: &config,
        backend: &args.backend,
        data_dir: &data_dir,
        threads: thread_count(args.common.threads),
        seeds: (0..args.seeds).map(|r| FIRST_SEED + r).collect(),
        target: 0.97,
        max_epochs: args.max_epochs,
        out: match &args.out {
            Some(path) => PathBuf::from(absolute(path)?),
            None => bench_dir.join("time-to-97.json"),
        },
        cpu: cpu_model(),
    })
}

/// What one time-to-accuracy comparison needs to know.
struct TimeToArgs<'a> {
    /// The mnist-lstm binary (a copy of the release build).
    binary: &'a Path,
    /// The Python interpreter with torch.
    python: &'a Path,
    /// The workspace root.
    root: &'a Path,
    /// Where the runs and the JSON go.
    bench_dir: &'a Path,
    /// Our configuration.
    config: &'a Path,
    /// Our backend.
    backend: &'a str,
    /// The data directory (absolute).
    data_dir: &'a str,
    /// Threads for both.
    threads: usize,
    /// Seeds, one repetition each.
    seeds: Vec<u64>,
    /// The target test accuracy, a fraction.
    target: f64,
    /// PyTorch's cap on epochs.
    max_epochs: usize,
    /// The combined JSON.
    out: PathBuf,
    /// The CPU, for the record.
    cpu: String,
}

/// Runs ours and PyTorch's alternately for every seed and writes the combined JSON.
fn time_to_accuracy(args: TimeToArgs<'_>) -> Result<()> {
    let runs_dir = args.bench_dir.join("runs").join("time-to-accuracy");
    std::fs::create_dir_all(&runs_dir)
        .with_context(|| format!("cannot create {}", runs_dir.display()))?;
    let percent = 100.0 * args.target;
    let mut ours_runs = Vec::new();
    let mut theirs_runs = Vec::new();
    for &seed in &args.seeds {
        ours_runs.push(run_ours(&args, &runs_dir, seed)?);
        theirs_runs.push(run_pytorch(&args, &runs_dir, seed)?);
    }
    let seconds = |runs: &[Value]| -> Vec<Option<f64>> {
        runs.iter()
            .map(|run| run.get("seconds_to_accuracy").and_then(Value::as_f64))
            .collect()
    };
    let ours = median(&seconds(&ours_runs));
    let theirs = median(&seconds(&theirs_runs));
    // Above 1: ours gets there sooner.
    let ratio = match (ours, theirs) {
        (Some(ours), Some(theirs)) if ours > 0.0 => Some(theirs / ours),
        _ => None,
    };
    let combined = json!({
        "date_unix": SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0),
        "machine": {
            "cpu": args.cpu,
            "cores_available": std::thread::available_parallelism().map(usize::from).unwrap_or(1),
        },
        "settings": {
            "threads": args.threads,
            "seeds": args.seeds,
            "target_accuracy": args.target,
            "config": args.config.display().to_string(),
            "backend": args.backend,
            "pytorch_max_epochs": args.max_epochs,
        },
        "summary": {
            "ours_seconds_median": ours,
            "pytorch_seconds_median": theirs,
            "speed_ratio": ratio,
        },
        "ratio_meaning": "PyTorch's median seconds to the target over ours (above 1: ours gets \
            there sooner); a run that never reached the target counts as slower than any that \
            did, and a median that is such a run is null",
        "ours": ours_runs,
        "pytorch": theirs_runs,
    });
    let text = serde_json::to_string_pretty(&combined)?;
    std::fs::write(&args.out, text + "\n")
        .with_context(|| format!("cannot write {}", args.out.display()))?;

    println!();
    let shown = |value: Option<f64>| value.map_or("not reached".to_string(), |s| format!("{s:.1}"));
    let all = |runs: &[Value]| {
        runs.iter()
            .map(|run| {
                let seconds = run.get("seconds_to_accuracy").and_then(Value::as_f64);
                let epochs = run.get("epochs_to_accuracy").and_then(Value::as_u64);
                match (seconds, epochs) {
                    (Some(seconds), Some(epochs)) => format!("{seconds:.1} s/{epochs} ep"),
                    _ => "not reached".to_string(),
                }
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    println!(
        "time to {percent}% test accuracy, median of {} (seeds {:?}), {} threads",
        args.seeds.len(),
        args.seeds,
        args.threads
    );
    println!(
        "  ours ({}, {}): {} s  [{}]",
        args.config.display(),
        args.backend,
        shown(ours),
        all(&ours_runs)
    );
    println!(
        "  PyTorch tutorial recipe:  {} s  [{}]",
        shown(theirs),
        all(&theirs_runs)
    );
    match ratio {
        Some(ratio) => println!("  PyTorch / ours: {ratio:.2}x (above 1x: ours is faster)"),
        None => println!("  PyTorch / ours: - (a median run did not reach the target)"),
    }
    println!("\nwritten: {}", args.out.display());
    Ok(())
}

/// `mnist-lstm train CONFIG` with this seed, timed from its metrics.csv.
fn run_ours(args: &TimeToArgs<'_>, runs_dir: &Path, seed: u64) -> Result<Value> {
    let run_dir = runs_dir.join(format!("{seed}-{}", args.backend));
    // A stale run must not pass for this one, nor its checkpoints be taken up.
    if run_dir.exists() {
        std::fs::remove_dir_all(&run_dir)
            .with_context(|| format!("cannot remove {}", run_dir.display()))?;
    }
    let log = runs_dir.join(format!("{seed}-{}.log", args.backend));
    let log_file =
        std::fs::File::create(&log).with_context(|| format!("cannot create {}", log.display()))?;
    println!("training ours ({}, seed {seed}) ...", args.config.display());
    let started = Instant::now();
    let mut command = Command::new(args.binary);
    command
        .arg("train")
        .arg(args.config)
        .args(["--device", args.backend, "--data-dir", args.data_dir])
        .arg("--artifacts")
        .arg(&run_dir)
        .args(["--set", &format!("training.seed={seed}")]);
    pin_ours(&mut command, args.threads);
    let status = command
        .stdout(log_file)
        .stderr(Stdio::inherit())
        .status()
        .context("cannot start mnist-lstm train")?;
    let process_seconds = started.elapsed().as_secs_f64();
    if !status.success() {
        bail!(
            "mnist-lstm train {} (seed {seed}) failed ({status}); its output: {}",
            args.config.display(),
            log.display()
        );
    }
    let csv = run_dir.join("metrics.csv");
    let text =
        std::fs::read_to_string(&csv).with_context(|| format!("cannot read {}", csv.display()))?;
    let epochs = valid_rows(&text).with_context(|| format!("{}", csv.display()))?;
    let reached = epochs.iter().find(|row| row.accuracy >= args.target);
    for row in &epochs {
        println!(
            "  epoch {}: test accuracy {:.2}% at {:.1} s",
            row.epoch,
            100.0 * row.accuracy,
            row.elapsed_s
        );
    }
    Ok(json!({
        "implementation": "burn",
        "backend": args.backend,
        "config": args.config.display().to_string(),
        "seed": seed,
        "threads": args.threads,
        "target_accuracy": args.target,
        "epochs": epochs.iter().map(|row| json!({
            "epoch": row.epoch,
            "test_accuracy": row.accuracy,
            "elapsed_s": row.elapsed_s,
        })).collect::<Vec<_>>(),
        "epochs_to_accuracy": reached.map(|row| row.epoch),
        "seconds_to_accuracy": reached.map(|row| row.elapsed_s),
        "process_seconds": process_seconds,
        "run_dir": run_dir.display().to_string(),
    }))
}

/// `tutorial.py --time-to-accuracy TARGET` with this seed.
fn run_pytorch(args: &TimeToArgs<'_>, runs_dir: &Path, seed: u64) -> Result<Value> {
    let json_path = runs_dir.join(format!("{seed}-pytorch.json"));
    println!("training the PyTorch tutorial's recipe (seed {seed}) ...");
    let mut command = tutorial_command(
        args.python,
        args.root,
        args.data_dir,
        &json_path,
        args.threads,
        seed,
    );
    command
        .args(["--time-to-accuracy", &args.target.to_string()])
        .args(["--max-epochs", &args.max_epochs.to_string()]);
    let started = Instant::now();
    let mut report = run_for_json(
        &mut command,
        &json_path,
        &format!("tutorial.py --time-to-accuracy (seed {seed})"),
    )?;
    let process_seconds = started.elapsed().as_secs_f64();
    if let Some(object) = report.as_object_mut() {
        object.insert("process_seconds".to_string(), json!(process_seconds));
    }
    Ok(report)
}

/// One epoch's validation row of `metrics.csv`.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidRow {
    /// The epoch, from 1.
    epoch: u64,
    /// Fraction right.
    accuracy: f64,
    /// Seconds since training started.
    elapsed_s: f64,
}

/// The `valid` rows of a `metrics.csv` (header `step,epoch,split,loss,accuracy,lr,elapsed_s`),
/// in file order.
pub fn valid_rows(csv: &str) -> Result<Vec<ValidRow>> {
    let mut lines = csv.lines();
    let header = lines.next().unwrap_or_default();
    let columns: Vec<&str> = header.split(',').collect();
    let column = |name: &str| {
        columns
            .iter()
            .position(|column| *column == name)
            .with_context(|| format!("no `{name}` column in the header `{header}`"))
    };
    let (epoch, split, accuracy, elapsed) = (
        column("epoch")?,
        column("split")?,
        column("accuracy")?,
        column("elapsed_s")?,
    );
    let mut rows = Vec::new();
    for (index, line) in lines.enumerate() {
        let fields: Vec<&str> = line.split(',').collect();
        if fields.get(split) != Some(&"valid") {
            continue;
        }
        let number = |at: usize, name: &str| -> Result<f64> {
            fields
                .get(at)
                .and_then(|field| field.parse::<f64>().ok())
                .with_context(|| format!("line {}: no number in `{name}`", index + 2))
        };
        rows.push(ValidRow {
            epoch: number(epoch, "epoch")? as u64,
            accuracy: number(accuracy, "accuracy")?,
            elapsed_s: number(elapsed, "elapsed_s")?,
        });
    }
    Ok(rows)
}

/// The median, with `None` (the target not reached) above every number; `None` when the median
/// is such a run or there is none.
pub fn median(values: &[Option<f64>]) -> Option<f64> {
    let mut seconds: Vec<f64> = values
        .iter()
        .map(|value| value.unwrap_or(f64::INFINITY))
        .collect();
    crate::common::median(&mut seconds).filter(|median| median.is_finite())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_rows_are_read_in_order() {
        let csv = "step,epoch,split,loss,accuracy,lr,elapsed_s\n\
                   1,1,train,2.3,0.1,0.01,0.05\n\
                   100,1,eval,0.5,0.9,,3.0\n\
                   469,1,valid,0.13,0.9619,,14.196\n\
                   469,1,train_epoch,0.4,0.86,,14.2\n\
                   938,2,valid,0.07,0.9783,,28.237\n\
                   938,2,test,0.07,0.9783,,29.0\n";
        let rows = valid_rows(csv).expect("a well-formed metrics.csv");
        assert_eq!(
            rows,
            vec![
                ValidRow {
                    epoch: 1,
                    accuracy: 0.9619,
                    elapsed_s: 14.196
                },
                ValidRow {
                    epoch: 2,
                    accuracy: 0.9783,
                    elapsed_s: 28.237
                },
            ]
        );
        assert!(valid_rows("step,epoch\n").is_err());
        assert!(
            valid_rows("step,epoch,split,loss,accuracy,lr,elapsed_s\n1,1,valid,x,,,\n").is_err()
        );
    }

    #[test]
    fn a_run_that_never_reaches_the_target_is_the_slowest() {
        assert_eq!(median(&[Some(3.0), Some(1.0), Some(2.0)]), Some(2.0));
        assert_eq!(median(&[Some(3.0), None, Some(2.0)]), Some(3.0));
        assert_eq!(median(&[None, None, Some(2.0)]), None);
        assert_eq!(median(&[Some(1.0), Some(2.0)]), Some(1.5));
        assert_eq!(median(&[]), None);
    }
}
