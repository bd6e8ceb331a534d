//! `cargo xtask fuzz`: libFuzzer through cargo-fuzz on the IDX reader or the configuration
//! loader, growing `fuzz/corpus/<target>`, which the tests replay on stable.

use std::process::{ExitCode, Stdio};

use anyhow::{Context, Result, bail};
use clap::Args;

use crate::common::{cargo, workspace_root};

/// Options of `cargo xtask fuzz`.
#[derive(Args, Debug)]
pub struct FuzzArgs {
    /// Which target: idx or config.
    #[arg(value_parser = ["idx", "config"])]
    target: String,
    /// How long to fuzz.
    #[arg(long, default_value_t = 10)]
    minutes: u64,
}

/// Seed inputs beside the target's own corpus: read, never written to.
fn seed_input_dirs(target: &str) -> &'static [&'static str] {
    match target {
        "config" => &["configs", "crates/cli/tests/bad_configs"],
        _ => &[],
    }
}

/// Runs libFuzzer on the target for the given minutes, adding what it finds to
/// fuzz/corpus/<target>.
///
/// cargo-fuzz passes nightly-only flags to rustc; RUSTC_BOOTSTRAP=1 lets the pinned stable
/// toolchain accept them, so no second toolchain is needed.
pub fn fuzz(args: FuzzArgs) -> Result<ExitCode> {
    let FuzzArgs { target, minutes } = args;
    let root = workspace_root();
    let installed = cargo()
        .args(["fuzz", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    if !installed {
        bail!("cargo-fuzz is not installed: cargo install cargo-fuzz --locked");
    }
    let corpus = format!("fuzz/corpus/{target}");
    std::fs::create_dir_all(root.join(&corpus))
        .with_context(|| format!("cannot create {corpus}"))?;
    let mut command = cargo();
    command
        .env("RUSTC_BOOTSTRAP", "1")
        .args(["fuzz", "run", "--release", &target, &corpus])
        .args(seed_input_dirs(&target))
        .arg("--")
        .arg(format!("-max_total_time={}", minutes * 60))
        // An input that takes a second or allocates 256 MB is a bug of its own.
        .args(["-timeout=1", "-malloc_limit_mb=256", "-rss_limit_mb=1024"])
        .arg("-print_final_stats=1");
    println!("fuzzing {target} for {minutes} min; corpus: {corpus}");
    let status = command.status().context("cannot run cargo fuzz")?;
    if !status.success() {
        bail!(
            "the fuzzer stopped on a failure: the input that caused it is under \
             fuzz/artifacts/{target}/ (replay: cargo fuzz run {target} <file>)"
        );
    }
    Ok(ExitCode::SUCCESS)
}
