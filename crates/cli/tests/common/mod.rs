//! Running the `mnist-lstm` binary as a test user would, shared by the cli test files.

#![allow(dead_code)] // Each test file uses its own part of this module.

use std::path::Path;
use std::process::{Command, Output};

/// The binary in `cwd` with the environment a test expects: no data directory or device from
/// the caller's shell, and never the internet (a test that serves a loopback mirror removes
/// `MNIST_LSTM_OFFLINE` again).
pub fn command(cwd: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_mnist-lstm"));
    command
        .current_dir(cwd)
        .env_remove("MNIST_DIR")
        .env_remove("BURN_DEVICE")
        .env("MNIST_LSTM_OFFLINE", "1");
    command
}

/// Runs the binary with `args` in `cwd` and collects its output.
pub fn cli(args: &[&str], cwd: &Path) -> Output {
    command(cwd).args(args).output().expect("the binary runs")
}

/// Output bytes as text.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}
