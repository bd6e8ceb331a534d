//! `mnist-lstm bench` on synthetic files: a few steps, and JSON with every field
//! `cargo xtask bench cpu` reads. Timings are not checked: they mean nothing on a shared machine.

mod common;
use common::command;

use serde_json::Value;

#[test]
fn bench_writes_json_with_the_expected_fields() {
    let work = tempfile::tempdir().unwrap();
    let data_dir = work.path().join("data");
    data::write_synthetic_mnist(&data_dir, 640, 200, 3, true).unwrap();
    let json_path = work.path().join("out/bench.json");

    let output = command(work.path())
        .args(["bench", "--data-dir"])
        .arg(&data_dir)
        .arg("--json")
        .arg(&json_path)
        .args(["--warmup", "1", "--steps", "3"])
        .args(["--infer-images", "150", "--infer-batch-size", "100"])
        .args(["--set", "training.log_every=5"])
        .env("RAYON_NUM_THREADS", "2")
        .output()
        .expect("the binary runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );

    let text = std::fs::read_to_string(&json_path).expect("the JSON file is written");
    let report: Value = serde_json::from_str(&text).expect("valid JSON");
    let number = |field: &str| {
        report[field]
            .as_f64()
            .unwrap_or_else(|| panic!("{field} is not a number in {text}"))
    };
    for field in [
        "train_images_per_second",
        "infer_images_per_second",
        "epoch_seconds",
        "epoch_images_per_second",
        "peak_rss_bytes",
    ] {
        assert!(number(field) > 0.0, "{field} in {text}");
    }
    assert_eq!(report["implementation"], "burn");
    assert_eq!(report["backend"], "flex");
    assert_eq!(number("threads"), 2.0);
    assert_eq!(number("seed"), 42.0);
    assert_eq!(number("batch_size"), 64.0);
    assert_eq!(number("train_steps"), 3.0);
    assert_eq!(number("infer_images"), 150.0);
    assert_eq!(number("epoch_train_images"), 640.0);
    assert_eq!(number("test_images"), 200.0);
    assert!((0.0..=1.0).contains(&number("test_accuracy")), "{text}");
    // The same object ends standard output, after the epoch's lines.
    let start = stdout.find("\n{\n").map_or(0, |at| at + 1);
    let printed: Value = serde_json::from_str(stdout[start..].trim()).expect("JSON on stdout");
    assert_eq!(printed["train_steps"], report["train_steps"]);
}
