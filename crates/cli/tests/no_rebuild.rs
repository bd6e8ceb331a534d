//! The README's two commands alternate without rebuilding each other: `cargo xtask eval` after
//! `cargo build -p cli --release` compiles nothing.
//!
//! xtask runs under `cargo run`, which gives it variables such as `CARGO_MANIFEST_DIR` and
//! `CARGO_PKG_NAME`; a nested cargo that inherited them would rerun the build scripts that
//! watch them (ring's) and rebuild everything above, and the user's next `cargo run -p cli`
//! would rebuild it back. Both cargo commands here run with the environment of a user's shell:
//! this test's own, less the variables `cargo test` set for it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

mod common;
use common::{cli, text};

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Whether `cargo test` set `name` for this test binary (a shell would not have it).
fn set_by_cargo(name: &str) -> bool {
    [
        "CARGO",
        "CARGO_MANIFEST_DIR",
        "CARGO_MANIFEST_PATH",
        "CARGO_MANIFEST_LINKS",
        "CARGO_CRATE_NAME",
        "CARGO_PRIMARY_PACKAGE",
        "CARGO_TARGET_TMPDIR",
        "CARGO_RUSTC_CURRENT_DIR",
        "OUT_DIR",
    ]
    .contains(&name)
        || name.starts_with("CARGO_PKG_")
        || name.starts_with("CARGO_BIN_EXE_")
}

/// `cargo ARGS` in the workspace root, as typed in a shell there.
fn cargo_from_shell(args: &[&str]) -> Output {
    let program = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(program);
    command.current_dir(workspace_root()).args(args);
    for (name, _) in std::env::vars() {
        if set_by_cargo(&name) {
            command.env_remove(name);
        }
    }
    command.output().expect("cargo runs")
}

/// The lines in which cargo says it compiles a crate.
fn compiled(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter(|line| line.trim_start().starts_with("Compiling "))
        .collect()
}

#[test]
fn xtask_eval_after_the_release_build_compiles_nothing() {
    let work = tempfile::tempdir().unwrap();
    let data_dir = work.path().join("data");
    data::write_synthetic_mnist(&data_dir, 640, 200, 7, true).unwrap();
    let data_arg = data_dir.display().to_string();
    let run_dir = work.path().join("run");
    let config = workspace_root().join("configs/smoke.toml");
    let trained = cli(
        &[
            "train",
            &config.display().to_string(),
            "--data-dir",
            &data_arg,
            "--artifacts",
            &run_dir.display().to_string(),
        ],
        work.path(),
    );
    assert!(trained.status.success(), "{}", text(&trained.stderr));

    let built = cargo_from_shell(&["build", "-p", "cli", "--release"]);
    assert!(built.status.success(), "{}", text(&built.stderr));

    let evaluated = cargo_from_shell(&[
        "xtask",
        "eval",
        "--artifacts",
        &run_dir.display().to_string(),
        "--data-dir",
        &data_arg,
    ]);
    let stderr = text(&evaluated.stderr);
    assert!(
        evaluated.status.success(),
        "{}\n{stderr}",
        text(&evaluated.stdout)
    );
    assert!(
        text(&evaluated.stdout).contains("accuracy"),
        "{}",
        text(&evaluated.stdout)
    );
    let rebuilt = compiled(&stderr);
    assert!(
        rebuilt.is_empty(),
        "cargo xtask eval rebuilt what cargo build -p cli --release had built:\n{}",
        rebuilt.join("\n")
    );
}
