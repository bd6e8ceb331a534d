//! `cargo xtask gpu-check`: the GPU figures docs/gpu.md quotes, from one `mnist-lstm bench` run on
//! the wgpu backend: the adapter, which LSTM path it took, the default configuration's epoch
//! (burn-train's learner, and the whole process), training images/s at the configuration's batch
//! (64), inference images/s at batch 1000 and the test accuracy after the epoch. Writes
//! `target/bench/gpu-check.json` and prints a table. Then the LSTM layer alone on the
//! pixel-by-pixel MNIST shape (784 steps of one pixel, hidden 128, batch 64: the classifier's
//! computation, `fused-rnn`'s example `layer_speed --shape pixels --last`), whose lines go into
//! the JSON as `layer_pixels`.
//!
//! A GPU machine without cargo runs binaries built elsewhere: `--binary PATH` and
//! `--layer-speed PATH` skip the builds.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::Args;
use serde_json::{Value, json};

use crate::common::{
    absolute, build_executables, cargo_cli, run_for_json, target_dir, workspace_root,
};

#[derive(Args, Debug)]
pub struct GpuCheckArgs {
    /// The configuration to train for the epoch.
    #[arg(long, default_value = "configs/default.toml")]
    config: PathBuf,
    /// Directory holding the MNIST files [default: data.dir, $MNIST_DIR, the user cache].
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// A release `mnist-lstm` built with `--features wgpu` to run instead of building one (for a
    /// GPU machine without cargo).
    #[arg(long, value_name = "PATH")]
    binary: Option<PathBuf>,
    /// `fused-rnn`'s example `layer_speed` built with `--features flex,wgpu`, to run instead of
    /// building one.
    #[arg(long, value_name = "PATH")]
    layer_speed: Option<PathBuf>,
    /// Leave out the layer's measurement on the pixel-by-pixel shape.
    #[arg(long)]
    no_layer: bool,
    /// Timed training steps.
    #[arg(long, default_value_t = 200)]
    steps: usize,
    /// Where to write the JSON [default: target/bench/gpu-check.json].
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
}

/// The rows of the table: (field of the report, label, scale, decimals).
const ROWS: &[(&str, &str, f64, usize)] = &[
    ("epoch_seconds", "default epoch, learner, s", 1.0, 2),
    (
        "process_seconds",
        "whole run (start-up, epoch, evaluation), s",
        1.0,
        2,
    ),
    (
        "train_images_per_second",
        "training images/s, batch 64",
        1.0,
        0,
    ),
    (
        "infer_images_per_second",
        "inference images/s, batch 1000",
        1.0,
        0,
    ),
    (
        "test_accuracy",
        "test accuracy after the epoch, %",
        100.0,
        2,
    ),
];

pub fn gpu_check(args: GpuCheckArgs) -> Result<()> {
    let root = workspace_root();
    let binary = match &args.binary {
        Some(binary) => PathBuf::from(absolute(binary)?),
        None => build(&root)?,
    };
    let out = match &args.json {
        Some(path) => PathBuf::from(absolute(path)?),
        None => target_dir(&root).join("bench/gpu-check.json"),
    };
    if let Some(parent) = out.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    let mut command = Command::new(&binary);
    command.current_dir(&root).args([
        "bench",
        "--device",
        "wgpu",
        "--config",
        &absolute(&args.config)?,
        "--steps",
        &args.steps.to_string(),
        "--infer-batch-size",
        "1000",
        "--json",
        &out.to_string_lossy(),
    ]);
    if let Some(dir) = &args.data_dir {
        command.args(["--data-dir", &absolute(dir)?]);
    }
    println!("measuring wgpu with {} ...", binary.display());
    let started = Instant::now();
    let mut report = run_for_json(&mut command, &out, "the wgpu measurement")?;
    let process_seconds = started.elapsed().as_secs_f64();
    if let Value::Object(fields) = &mut report {
        fields.insert("process_seconds".into(), json!(process_seconds));
        if !args.no_layer {
            fields.insert("layer_pixels".into(), json!(layer_pixels(&root, &args)?));
        }
    }
    std::fs::write(&out, serde_json::to_string_pretty(&report)? + "\n")
        .with_context(|| format!("cannot write {}", out.display()))?;
    print_table(&report);
    println!("\nwritten: {}", out.display());
    Ok(())
}

/// The lines `layer_speed` prints for the pixel-by-pixel shape on wgpu.
fn layer_pixels(root: &Path, args: &GpuCheckArgs) -> Result<Vec<String>> {
    let binary = match &args.layer_speed {
        Some(binary) => PathBuf::from(absolute(binary)?),
        None => {
            let built = build_executables(
                &[
                    "-p",
                    "fused-rnn",
                    "--features",
                    "flex,wgpu",
                    "--example",
                    "layer_speed",
                ],
                &["layer_speed"],
            )?;
            built.into_iter().next().context("no layer_speed built")?
        }
    };
    println!("measuring the LSTM layer on the pixel-by-pixel shape ...");
    let output = Command::new(&binary)
        .current_dir(root)
        .args([
            "--device",
            "wgpu",
            "--shape",
            "pixels",
            "--last",
            "--no-burn",
        ])
        .output()
        .with_context(|| format!("cannot run {}", binary.display()))?;
    if !output.status.success() {
        bail!(
            "{} failed: {}",
            binary.display(),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let lines: Vec<String> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    for line in &lines {
        println!("{line}");
    }
    Ok(lines)
}

/// Builds the release cli with wgpu; returns the binary.
fn build(root: &Path) -> Result<PathBuf> {
    println!("building the cli with --features wgpu ...");
    let built = cargo_cli("build", Some("wgpu"))
        .status()
        .context("cannot run cargo build")?;
    if !built.success() {
        bail!("cargo build --release -p cli --features wgpu failed");
    }
    Ok(target_dir(root).join("release/mnist-lstm"))
}

fn print_table(report: &Value) {
    let text = |name: &str| report.get(name).and_then(Value::as_str).unwrap_or("-");
    println!("\n== gpu-check: {}", text("device"));
    println!("LSTM path: {}", text("lstm_path"));
    println!("| measure | wgpu |\n|---|---:|");
    for &(name, label, scale, decimals) in ROWS {
        let value = match report.get(name).and_then(Value::as_f64) {
            Some(value) => format!("{:.*}", decimals, value * scale),
            None => "-".to_string(),
        };
        println!("| {label} | {value} |");
    }
    if text("device").contains("(Cpu)") {
        println!(
            "warning: the adapter is a software rasteriser (lavapipe), not a GPU: install the \
             GPU's Vulkan driver (for NVIDIA, the driver's Vulkan ICD) for GPU figures"
        );
    }
    if text("lstm_path") != "kernel" {
        println!("warning: the LSTM did not take the GPU kernel on this adapter");
    }
}
