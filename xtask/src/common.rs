//! What the chores share: the workspace's paths, cargo called as a user's shell would call it,
//! child processes that report JSON, the thread pools of the measured programs, PyTorch's venv and
//! a median.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};

use anyhow::{Context, Result, bail};
use serde_json::Value;

/// The workspace root: xtask lives one level below it.
pub fn workspace_root() -> PathBuf {
    let built_in = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    // A binary carried to another machine (a GPU machine without cargo: bench/gpu-device.sh)
    // runs in a checkout somewhere else.
    if built_in.join("Cargo.toml").is_file() {
        built_in
    } else {
        PathBuf::from(".")
    }
}

/// Paths given by the user are relative to where they ran the command, not to the root the
/// cli runs in.
pub fn absolute(path: &Path) -> Result<String> {
    let absolute =
        std::path::absolute(path).with_context(|| format!("cannot resolve {}", path.display()))?;
    Ok(absolute.to_string_lossy().into_owned())
}

/// The target directory cargo builds into from the workspace root.
pub fn target_dir(root: &Path) -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => root.join(dir),
        _ => root.join("target"),
    }
}

/// Whether `name` is one of the variables cargo sets for a binary it runs (`cargo run` of xtask
/// sets them for xtask): the package's manifest and metadata, the crate and binary names, the
/// build script's output directory.
pub fn set_by_cargo_run(name: &OsStr) -> bool {
    const NAMES: [&str; 9] = [
        "CARGO",
        "CARGO_MANIFEST_DIR",
        "CARGO_MANIFEST_PATH",
        "CARGO_MANIFEST_LINKS",
        "CARGO_CRATE_NAME",
        "CARGO_BIN_NAME",
        "CARGO_PRIMARY_PACKAGE",
        "CARGO_RUSTC_CURRENT_DIR",
        "OUT_DIR",
    ];
    const PREFIXES: [&str; 2] = ["CARGO_PKG_", "CARGO_BIN_EXE_"];
    let Some(name) = name.to_str() else {
        return false;
    };
    NAMES.contains(&name) || PREFIXES.iter().any(|prefix| name.starts_with(prefix))
}

/// `cargo` in the workspace root, with the environment the user's shell gave xtask.
///
/// Without clearing the variables of [`set_by_cargo_run`], a nested cargo hands xtask's
/// `CARGO_MANIFEST_DIR` and `CARGO_PKG_*` to the build scripts it checks; ring's reruns when they
/// change, which rebuilds rustls and everything above it (data, inference, training, serve,
/// cli), and the user's next `cargo run -p cli` rebuilds it back.
pub fn cargo() -> Command {
    let program = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(program);
    command.current_dir(workspace_root());
    for (name, _) in std::env::vars_os() {
        if set_by_cargo_run(&name) {
            command.env_remove(name);
        }
    }
    command
}

/// `cargo SUBCOMMAND --release -p cli [--features F]` in the workspace root.
pub fn cargo_cli(subcommand: &str, features: Option<&str>) -> Command {
    let mut command = cargo();
    command.args([subcommand, "--release", "--package", "cli"]);
    if let Some(features) = features {
        command.args(["--features", features]);
    }
    command
}

/// `cargo run --release -p cli [--features F] -- ARGS` in the workspace root, with the cli's
/// exit code.
pub fn run_cli(features: Option<&str>, args: &[String]) -> Result<ExitCode> {
    let mut command = cargo_cli("run", features);
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

/// Builds the release cli with `features` and copies its binary to `<target>/bench/`: any other
/// `cargo build -p cli` in the same target directory during the minutes of measuring would
/// replace `target/release/mnist-lstm` with a build that may lack a backend.
pub fn build_cli_copy(root: &Path, features: &str) -> Result<PathBuf> {
    println!("building the cli with --features {features} ...");
    let built = cargo_cli("build", Some(features))
        .status()
        .context("cannot run cargo build")?;
    if !built.success() {
        bail!("cargo build --release -p cli --features {features} failed");
    }
    let target = target_dir(root);
    let bench_dir = target.join("bench");
    std::fs::create_dir_all(&bench_dir)
        .with_context(|| format!("cannot create {}", bench_dir.display()))?;
    let built = target.join("release").join("mnist-lstm");
    let binary = bench_dir.join("mnist-lstm");
    std::fs::copy(&built, &binary)
        .with_context(|| format!("cannot copy {} to {}", built.display(), binary.display()))?;
    Ok(binary)
}

/// `cargo build --release ARGS`; the paths of the executables named `names` it produced, in
/// that order.
pub fn build_executables(args: &[&str], names: &[&str]) -> Result<Vec<PathBuf>> {
    let output = cargo()
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
    let executables: Vec<PathBuf> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter_map(|message| message["executable"].as_str().map(PathBuf::from))
        .collect();
    names
        .iter()
        .map(|name| {
            executables
                .iter()
                .find(|path| path.file_stem().is_some_and(|stem| stem == *name))
                .cloned()
                .with_context(|| {
                    format!(
                        "cargo build {} produced no {name} executable",
                        args.join(" ")
                    )
                })
        })
        .collect()
}

/// The MNIST directory: `--data-dir` (made absolute), else `$MNIST_DIR`, else none.
pub fn mnist_dir(given: Option<&Path>) -> Result<Option<String>> {
    match given {
        Some(dir) => absolute(dir).map(Some),
        None => Ok(std::env::var("MNIST_DIR")
            .ok()
            .filter(|dir| !dir.is_empty())),
    }
}

/// `--threads`, else the cores available to this process.
pub fn thread_count(given: Option<usize>) -> usize {
    given
        .or_else(|| std::thread::available_parallelism().ok().map(usize::from))
        .unwrap_or(1)
        .max(1)
}

/// Our process's thread pools: rayon serves flex (and gemm) and ndarray's element-wise work;
/// matrixmultiply, ndarray's matmul, has a pool of its own.
pub fn pin_ours(command: &mut Command, threads: usize) {
    command
        .env("RAYON_NUM_THREADS", threads.to_string())
        .env("MATMUL_NUM_THREADS", threads.to_string());
}

/// PyTorch's: the BLAS and OpenMP pools under torch follow the same count as
/// `torch.set_num_threads` (which tutorial.py's `--threads` sets).
pub fn pin_torch(command: &mut Command, threads: usize) {
    command
        .env("OMP_NUM_THREADS", threads.to_string())
        .env("MKL_NUM_THREADS", threads.to_string());
}

/// `PYTHON ROOT/bench/pytorch/tutorial.py` for one seed, reading `data_dir`, writing its JSON
/// report to `json`, on `threads` threads (its own flag and the pools under torch).
pub fn tutorial_command(
    python: &Path,
    root: &Path,
    data_dir: &str,
    json: &Path,
    threads: usize,
    seed: u64,
) -> Command {
    let mut command = Command::new(python);
    command
        .arg(root.join("bench/pytorch/tutorial.py"))
        .args(["--data-dir", data_dir, "--json"])
        .arg(json)
        .args(["--threads", &threads.to_string()])
        .args(["--seed", &seed.to_string()]);
    pin_torch(&mut command, threads);
    command
}

/// Runs `command` (its stdout not echoed), which writes a JSON report to `json`, and reads it;
/// `what` names it in errors.
pub fn run_for_json(command: &mut Command, json: &Path, what: &str) -> Result<Value> {
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
pub fn median(values: &mut [f64]) -> Option<f64> {
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

/// The CPU's model name, for the record.
pub fn cpu_model() -> String {
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

/// The Python with torch: `--python`, else bench/pytorch/.venv's, created and given torch from
/// PyPI when it lacks it.
pub fn pytorch_python(root: &Path, given: Option<&Path>) -> Result<PathBuf> {
    if let Some(python) = given {
        return Ok(python.to_path_buf());
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_variables_of_a_running_binary_are_recognised_and_the_users_are_not() {
        for name in [
            "CARGO",
            "CARGO_MANIFEST_DIR",
            "CARGO_PKG_NAME",
            "CARGO_PKG_VERSION_MAJOR",
            "CARGO_CRATE_NAME",
            "CARGO_BIN_EXE_mnist-lstm",
            "OUT_DIR",
        ] {
            assert!(set_by_cargo_run(OsStr::new(name)), "{name}");
        }
        for name in ["CARGO_TARGET_DIR", "CARGO_HOME", "CARGO_TERM_COLOR", "PATH"] {
            assert!(!set_by_cargo_run(OsStr::new(name)), "{name}");
        }
    }

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&mut []), None);
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&mut [4.0, 1.0, 2.0, 3.0]), Some(2.5));
    }
}
