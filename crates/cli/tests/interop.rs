//! `export` and `import` through the binary: a trained run exported to safetensors and imported
//! back is a run directory that `eval` and `predict` use as they are, with the same answers;
//! PyTorch's own files go in (a state_dict) or are refused with the fix (a whole module).

use std::path::Path;

mod common;
use common::{cli, text};

fn fixture(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../interop/tests/fixtures")
        .join(name)
        .display()
        .to_string()
}

fn config(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(format!("../../configs/{name}.toml"))
        .display()
        .to_string()
}

/// `eval`'s report without the lines that name the run's paths.
fn report(stdout: &str) -> String {
    stdout
        .lines()
        .filter(|line| !line.starts_with("evaluating") && !line.starts_with("model:"))
        .filter(|line| !line.starts_with("confusion matrix:") && !line.starts_with("data:"))
        .filter(|line| !line.starts_with("backend:"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn an_exported_run_imported_back_evaluates_and_predicts_the_same() {
    let work = tempfile::tempdir().unwrap();
    let data_dir = work.path().join("data");
    data::write_synthetic_mnist(&data_dir, 640, 200, 9, false).unwrap();
    let data_arg = data_dir.display().to_string();
    let run = work.path().join("run").display().to_string();
    let trained = cli(
        &[
            "train",
            &config("smoke"),
            "--data-dir",
            &data_arg,
            "--artifacts",
            &run,
        ],
        work.path(),
    );
    assert!(trained.status.success(), "{}", text(&trained.stderr));

    let weights = work.path().join("out/seed.safetensors");
    std::fs::create_dir_all(weights.parent().unwrap()).unwrap();
    let weights_arg = weights.display().to_string();
    let exported = cli(
        &["export", "--model", &run, "--out", &weights_arg],
        work.path(),
    );
    assert!(exported.status.success(), "{}", text(&exported.stderr));
    assert!(text(&exported.stdout).contains("nn.LSTM(28, 64, num_layers=1"));
    let described = std::fs::read_to_string(work.path().join("out/seed.config.json")).unwrap();
    assert!(described.contains("\"hidden_size\": 64"), "{described}");

    let imported = work.path().join("imported").display().to_string();
    let output = cli(
        &[
            "import",
            &weights_arg,
            "--config",
            &config("smoke"),
            "--artifacts",
            &imported,
        ],
        work.path(),
    );
    assert!(output.status.success(), "{}", text(&output.stderr));
    for file in ["config.toml", "model.json", "model.bpk"] {
        assert!(Path::new(&imported).join(file).is_file(), "{file}");
    }

    let eval = |dir: &str| {
        let output = cli(
            &["eval", "--artifacts", dir, "--data-dir", &data_arg],
            work.path(),
        );
        assert!(output.status.success(), "{}", text(&output.stderr));
        report(&text(&output.stdout))
    };
    assert_eq!(eval(&run), eval(&imported));
    let idx = data_dir
        .join("t10k-images-idx3-ubyte")
        .display()
        .to_string();
    let predict = |dir: &str| {
        let output = cli(
            &[
                "predict", "--model", dir, "--idx", &idx, "--index", "0", "--index", "5",
            ],
            work.path(),
        );
        assert!(output.status.success(), "{}", text(&output.stderr));
        text(&output.stdout)
    };
    assert_eq!(predict(&run), predict(&imported));
}

#[test]
fn pytorchs_files_go_in_or_are_refused_with_the_fix() {
    let work = tempfile::tempdir().unwrap();
    let run = work.path().join("from-pytorch").display().to_string();
    let output = cli(
        &[
            "import",
            &fixture("pytorch-tutorial.pt"),
            "--config",
            &config("default"),
            "--artifacts",
            &run,
        ],
        work.path(),
    );
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(Path::new(&run).join("model.bpk").is_file());

    let module = cli(
        &[
            "import",
            &fixture("pytorch-tutorial-module.pt"),
            "--config",
            &config("default"),
            "--artifacts",
            &run,
        ],
        work.path(),
    );
    assert_eq!(module.status.code(), Some(1));
    let error = text(&module.stderr);
    assert!(error.contains("whole pickled nn.Module"), "{error}");
    assert!(error.contains("torch.save(model.state_dict()"), "{error}");

    let narrow = cli(
        &[
            "import",
            &fixture("pytorch-tutorial.pt"),
            "--config",
            &config("default"),
            "--set",
            "model.hidden_size=32",
            "--artifacts",
            &run,
        ],
        work.path(),
    );
    assert_eq!(narrow.status.code(), Some(1));
    let error = text(&narrow.stderr);
    assert!(
        error.contains("rnn.weight_ih_l0 has shape [256, 28], expected [128, 28]"),
        "{error}"
    );
    assert_eq!(error.lines().count(), 1, "one error line: {error}");
}
