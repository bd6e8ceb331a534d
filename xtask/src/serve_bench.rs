//! `cargo xtask bench --serve RUN`: `mnist-lstm serve` under a closed-loop load on loopback
//! (the serve crate's `load` example: N clients, keep-alive, MNIST test digits as PNG), once
//! with batching as configured by default and once with `--max-batch 1`; predictions/s and
//! latency percentiles of each, their ratio, written to <target dir>/bench/serve.json.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use crate::bench::{cpu_model, target_dir};
use crate::workspace_root;

/// What to measure.
pub struct ServeBench<'a> {
    /// The run directory served.
    pub run: &'a Path,
    /// Concurrent clients.
    pub clients: usize,
    /// Seconds of load per variant.
    pub seconds: f64,
    /// The MNIST directory (its test images are sent).
    pub data_dir: &'a Path,
    /// Where the JSON goes.
    pub out: Option<&'a Path>,
}

/// The variants: a name and `serve`'s extra flags.
const VARIANTS: [(&str, &[&str]); 2] = [("batching", &[]), ("max_batch_1", &["--max-batch", "1"])];

/// Runs both variants, prints a table and writes the JSON.
pub fn serve_bench(bench: &ServeBench<'_>) -> Result<()> {
    let root = workspace_root();
    let images = test_images(bench.data_dir)?;
    let server = build(&root, &["--package", "cli"], "mnist-lstm")?;
    let load = build(&root, &["--package", "serve", "--example", "load"], "load")?;
    let mut results = serde_json::Map::new();
    for (name, flags) in VARIANTS {
        println!("serving {} ({name}) ...", bench.run.display());
        let mut child = start(&server, bench.run, flags)?;
        let measured = measure(&load, &child.addr, &images, bench);
        stop(&mut child.process)?;
        results.insert(name.to_string(), measured?);
    }
    let ratio = |key: &str| {
        results["batching"][key].as_f64().unwrap_or(0.0)
            / results["max_batch_1"][key].as_f64().unwrap_or(f64::NAN)
    };
    let report = json!({
        "machine": { "cpu": cpu_model(), "cores": std::thread::available_parallelism().map(usize::from).unwrap_or(1) },
        "run": bench.run.display().to_string(),
        "clients": bench.clients,
        "seconds": bench.seconds,
        "results": results,
        "throughput_ratio_batching_over_max_batch_1": ratio("predictions_per_second"),
    });
    print_table(&report);
    let out = match bench.out {
        Some(path) => path.to_path_buf(),
        None => target_dir(&root).join("bench/serve.json"),
    };
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    std::fs::write(&out, serde_json::to_string_pretty(&report)? + "\n")
        .with_context(|| format!("cannot write {}", out.display()))?;
    println!("\nwritten: {}", out.display());
    Ok(())
}

fn test_images(data_dir: &Path) -> Result<PathBuf> {
    ["t10k-images-idx3-ubyte.gz", "t10k-images-idx3-ubyte"]
        .iter()
        .map(|name| data_dir.join(name))
        .find(|path| path.is_file())
        .with_context(|| format!("no t10k-images-idx3-ubyte[.gz] in {}", data_dir.display()))
}

/// `cargo build --release ARGS`; the path of the executable named `name` it produced.
fn build(root: &Path, args: &[&str], name: &str) -> Result<PathBuf> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let output = Command::new(cargo)
        .current_dir(root)
        .args([
            "build",
            "--release",
            "--message-format=json-render-diagnostics",
        ])
        .args(args)
        .stderr(Stdio::inherit())
        .output()
        .context("cannot run cargo build")?;
    if !output.status.success() {
        bail!("cargo build --release {} failed", args.join(" "));
    }
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter_map(|message| message["executable"].as_str().map(PathBuf::from))
        .find(|path| path.file_stem().is_some_and(|stem| stem == name))
        .with_context(|| {
            format!(
                "cargo build {} produced no {name} executable",
                args.join(" ")
            )
        })
}

struct Server {
    process: Child,
    addr: String,
}

/// Starts `serve` on an ephemeral loopback port and reads the address it bound.
fn start(binary: &Path, run: &Path, flags: &[&str]) -> Result<Server> {
    let mut process = Command::new(binary)
        .args(["serve", "--model"])
        .arg(run)
        .args(["--addr", "127.0.0.1:0"])
        .args(flags)
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start {}", binary.display()))?;
    let stdout = process.stdout.take().context("serve's standard output")?;
    let mut lines = BufReader::new(stdout).lines();
    let addr = loop {
        let Some(line) = lines.next() else {
            let status = process.wait()?;
            bail!("serve exited ({status}) before listening");
        };
        if let Some(rest) = line?.strip_prefix("listening on http://") {
            break rest
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .to_string();
        }
    };
    std::thread::spawn(move || lines.for_each(drop));
    Ok(Server { process, addr })
}

fn measure(load: &Path, addr: &str, images: &Path, bench: &ServeBench<'_>) -> Result<Value> {
    let output = Command::new(load)
        .args(["--addr", addr, "--clients", &bench.clients.to_string()])
        .args(["--seconds", &bench.seconds.to_string()])
        .arg("--images")
        .arg(images)
        .stderr(Stdio::inherit())
        .output()
        .context("cannot run the load generator")?;
    if !output.status.success() {
        bail!("the load generator failed ({})", output.status);
    }
    serde_json::from_slice(&output.stdout).context("the load generator's JSON")
}

/// SIGTERM, as a user stopping the server would; it must exit 0.
fn stop(process: &mut Child) -> Result<()> {
    Command::new("kill")
        .args(["-TERM", &process.id().to_string()])
        .status()
        .context("cannot run kill")?;
    let status = process.wait()?;
    if !status.success() {
        bail!("serve exited with {status} after SIGTERM");
    }
    Ok(())
}

fn print_table(report: &Value) {
    println!(
        "\n{} clients for {} s, {}",
        report["clients"], report["seconds"], report["machine"]["cpu"]
    );
    println!(
        "| variant | predictions/s | p50 ms | p99 ms | max ms | errors |\n|---|---|---|---|---|---|"
    );
    for (name, _) in VARIANTS {
        let result = &report["results"][name];
        let latency = &result["latency_ms"];
        println!(
            "| {name} | {:.0} | {:.2} | {:.2} | {:.2} | {} |",
            result["predictions_per_second"].as_f64().unwrap_or(0.0),
            latency["p50"].as_f64().unwrap_or(0.0),
            latency["p99"].as_f64().unwrap_or(0.0),
            latency["max"].as_f64().unwrap_or(0.0),
            result["errors"]
        );
    }
    println!(
        "batching / max-batch 1 throughput: {:.2}x",
        report["throughput_ratio_batching_over_max_batch_1"]
            .as_f64()
            .unwrap_or(0.0)
    );
}
