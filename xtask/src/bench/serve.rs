//! `cargo xtask bench serve RUN`: `mnist-lstm serve` under a closed-loop load on loopback
//! (the serve crate's `load` example: N clients, keep-alive, MNIST test digits as PNG), once
//! with batching as configured by default and once with `--max-batch 1`; predictions/s and
//! latency percentiles of each, their ratio, written to <target dir>/bench/serve.json.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use anyhow::{Context, Result, bail};
use clap::Args;
use serde_json::{Value, json};

use crate::common::{
    absolute, build_executables, cpu_model, mnist_dir, target_dir, workspace_root,
};

/// Options of `cargo xtask bench serve`.
#[derive(Args, Debug)]
pub struct ServeArgs {
    /// The run directory to serve.
    #[arg(value_name = "RUN")]
    run: PathBuf,
    /// Concurrent clients.
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// Seconds of load per variant.
    #[arg(long, default_value_t = 20.0)]
    seconds: f64,
    /// Directory holding the MNIST files, whose test images are sent [default: $MNIST_DIR].
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Where the JSON goes [default: <target dir>/bench/serve.json].
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
}

/// The variants: a name and `serve`'s extra flags.
const VARIANTS: [(&str, &[&str]); 2] = [("batching", &[]), ("max_batch_1", &["--max-batch", "1"])];

/// Runs both variants, prints a table and writes the JSON.
pub fn bench_serve(args: ServeArgs) -> Result<()> {
    if args.clients == 0 || !args.seconds.is_finite() || args.seconds <= 0.0 {
        bail!("--clients and --seconds must be positive");
    }
    let Some(data_dir) = mnist_dir(args.data_dir.as_deref())? else {
        bail!("the load sends MNIST test digits: give --data-dir or set MNIST_DIR");
    };
    let bench = ServeArgs {
        run: PathBuf::from(absolute(&args.run)?),
        out: args
            .out
            .as_deref()
            .map(absolute)
            .transpose()?
            .map(PathBuf::from),
        ..args
    };
    let root = workspace_root();
    let images = test_images(Path::new(&data_dir))?;
    // One build of the workspace's feature set for both: the one `cargo test --workspace
    // --release` builds, so neither rebuilds what the tests built.
    let built = build_executables(
        &["--workspace", "--bin", "mnist-lstm", "--example", "load"],
        &["mnist-lstm", "load"],
    )?;
    let (server, load) = (&built[0], &built[1]);
    let mut results = serde_json::Map::new();
    for (name, flags) in VARIANTS {
        println!("serving {} ({name}) ...", bench.run.display());
        let mut child = start(server, &bench.run, flags)?;
        let measured = measure(load, &child.addr, &images, &bench);
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
        Some(path) => path,
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

fn measure(load: &Path, addr: &str, images: &Path, bench: &ServeArgs) -> Result<Value> {
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
