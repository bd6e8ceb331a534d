//! `export` and `import` through the binary: a trained run exported to safetensors and imported
//! back is a run directory that `eval` and `predict` use as they are, with the same answers (a
//! permuted pixel-by-pixel run too);
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
    round_trip(&[], "nn.LSTM(28, 64, num_layers=1");
}

/// A run that reads its images pixel by pixel in a permuted order: `eval`, `predict` and an
/// `export`/`import` round trip read them as training did (the order is in the run's
/// `config.toml` and in the export's description).
#[test]
fn a_permuted_run_reads_its_images_as_training_did_through_every_tool() {
    let permuted = [
        "--set",
        "data.sequence=permuted",
        "--set",
        "data.permutation_seed=5",
        "--set",
        "model.input_size=1",
    ];
    let (work, run) = round_trip(&permuted, "nn.LSTM(1, 64, num_layers=1");
    let described = std::fs::read_to_string(work.path().join("out/seed.config.json")).unwrap();
    let description: serde_json::Value = serde_json::from_str(&described).unwrap();
    assert_eq!(description["sequence"], "permuted");
    let order: Vec<u16> = serde_json::from_value(description["pixel_permutation"].clone()).unwrap();
    assert_eq!(order, data::pixel_permutation(5));
    // `train`'s own test evaluation and `eval`'s agree, so both read the permuted order.
    let trained = std::fs::read_to_string(Path::new(&run).join("evaluation.txt")).unwrap();
    let data_arg = work.path().join("data").display().to_string();
    let eval = cli(
        &["eval", "--artifacts", &run, "--data-dir", &data_arg],
        work.path(),
    );
    assert!(eval.status.success(), "{}", text(&eval.stderr));
    let first = trained.lines().next().unwrap();
    assert!(
        text(&eval.stdout).contains(first),
        "{first}\n{}",
        text(&eval.stdout)
    );
}

/// A GRU and a plain RNN go out under `nn.GRU`'s and `nn.RNN`'s names and come back with the
/// same answers.
#[test]
fn gru_and_rnn_runs_go_to_pytorch_and_back() {
    round_trip(&["--set", "model.cell=gru"], "nn.GRU(28, 64, num_layers=1");
    round_trip(&["--set", "model.cell=rnn"], "nn.RNN(28, 64, num_layers=1");
}

/// Trains the smoke configuration with `extra` arguments, exports it, imports the export with
/// the same arguments, and checks that `eval` and `predict` answer the same for both runs;
/// gives the work directory and the trained run's.
fn round_trip(extra: &[&str], module: &str) -> (tempfile::TempDir, String) {
    let work = tempfile::tempdir().unwrap();
    let data_dir = work.path().join("data");
    data::write_synthetic_mnist(&data_dir, 640, 200, 9, false).unwrap();
    let data_arg = data_dir.display().to_string();
    let run = work.path().join("run").display().to_string();
    let mut train = vec![
        "train".to_string(),
        config("smoke"),
        "--data-dir".to_string(),
        data_arg.clone(),
        "--artifacts".to_string(),
        run.clone(),
    ];
    train.extend(extra.iter().map(|arg| arg.to_string()));
    let train: Vec<&str> = train.iter().map(String::as_str).collect();
    let trained = cli(&train, work.path());
    assert!(trained.status.success(), "{}", text(&trained.stderr));

    let weights = work.path().join("out/seed.safetensors");
    std::fs::create_dir_all(weights.parent().unwrap()).unwrap();
    let weights_arg = weights.display().to_string();
    let exported = cli(
        &["export", "--model", &run, "--out", &weights_arg],
        work.path(),
    );
    assert!(exported.status.success(), "{}", text(&exported.stderr));
    assert!(
        text(&exported.stdout).contains(module),
        "{}",
        text(&exported.stdout)
    );
    let described = std::fs::read_to_string(work.path().join("out/seed.config.json")).unwrap();
    assert!(described.contains("\"hidden_size\": 64"), "{described}");

    let imported = work.path().join("imported").display().to_string();
    let mut import = vec![
        "import".to_string(),
        weights_arg.clone(),
        "--config".to_string(),
        config("smoke"),
        "--artifacts".to_string(),
        imported.clone(),
    ];
    import.extend(extra.iter().map(|arg| arg.to_string()));
    let import: Vec<&str> = import.iter().map(String::as_str).collect();
    let output = cli(&import, work.path());
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
    (work, run)
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
