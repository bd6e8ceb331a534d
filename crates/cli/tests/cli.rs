//! The command line as a user meets it: a smoke run, eval, and clear errors without panics.

use std::path::Path;
use std::process::Output;

mod common;
use common::{cli, command, text};

fn smoke_config() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../configs/smoke.toml")
        .display()
        .to_string()
}

#[test]
fn train_then_eval_on_synthetic_files() {
    let work = tempfile::tempdir().unwrap();
    let data_dir = work.path().join("data");
    data::write_synthetic_mnist(&data_dir, 640, 200, 11, true).unwrap();
    let data_arg = data_dir.display().to_string();

    let trained = cli(
        &[
            "train",
            &smoke_config(),
            "--data-dir",
            &data_arg,
            "--set",
            "training.seed=5",
        ],
        work.path(),
    );
    let stdout = text(&trained.stdout);
    assert!(
        trained.status.success(),
        "{stdout}\n{}",
        text(&trained.stderr)
    );
    assert!(stdout.contains("epoch 1 step   10"), "{stdout}");
    assert!(stdout.contains("valid done"), "{stdout}");
    let final_line = stdout
        .lines()
        .find(|line| line.starts_with("final test accuracy"))
        .expect("a final accuracy line");
    let run_dir = work.path().join("artifacts/smoke");
    assert!(run_dir.join("model.bpk").is_file());
    assert!(run_dir.join("config.toml").is_file());

    // Without --artifacts, eval takes the newest run under ./artifacts, and finds its data
    // through the resolved configuration.
    let evaluated = cli(&["eval"], work.path());
    let report = text(&evaluated.stdout);
    assert!(
        evaluated.status.success(),
        "{report}\n{}",
        text(&evaluated.stderr)
    );
    let accuracy = final_line.split_whitespace().nth(3).unwrap();
    assert!(
        report.contains(&format!("accuracy {accuracy}")),
        "train said {final_line}, eval said:\n{report}"
    );
    assert!(report.contains("confusion matrix"), "{report}");
    assert!(report.contains("first 10 predictions"), "{report}");
}

fn assert_clean_failure(output: &Output, expected: &str) {
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.starts_with("error: "), "{stderr}");
    assert!(
        stderr.contains(expected),
        "expected {expected:?} in:\n{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn user_mistakes_are_one_clear_error() {
    let work = tempfile::tempdir().unwrap();
    let missing = cli(&["train", "no-such.toml"], work.path());
    assert_clean_failure(&missing, "no-such.toml");

    let bad = work.path().join("bad.toml");
    std::fs::write(&bad, "[model]\nhidden = 3\n").unwrap();
    let unknown = cli(&["train", bad.to_str().unwrap()], work.path());
    assert_clean_failure(&unknown, "unknown field `hidden`");

    let override_error = cli(
        &["train", &smoke_config(), "--set", "training.epochs=lots"],
        work.path(),
    );
    assert_clean_failure(&override_error, "training.epochs=lots");

    let no_data = cli(
        &["train", &smoke_config(), "--data-dir", "/nonexistent/mnist"],
        work.path(),
    );
    assert_clean_failure(
        &no_data,
        "/nonexistent/mnist (--data-dir): no such directory",
    );

    let device = cli(&["train", &smoke_config(), "--device", "tpu"], work.path());
    assert_clean_failure(&device, "unknown backend");

    let no_run = cli(&["eval"], work.path());
    assert_clean_failure(&no_run, "no finished run");
}

/// Every file of `tests/bad_configs` is a configuration with one mistake. Its first lines say
/// what the error must contain (`# expect: ...`), any extra arguments (`# args: ...`) and
/// whether to leave out `--data-dir` (`# data-dir: none`, for mistakes in `data.dir`); `train`
/// must fail with exit code 1 and exactly that one line, without panicking.
#[test]
fn every_bad_config_in_the_corpus_is_one_clear_line() {
    let work = tempfile::tempdir().unwrap();
    let data_dir = work.path().join("data");
    data::write_synthetic_mnist(&data_dir, 200, 50, 3, false).unwrap();
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/bad_configs");
    let mut files: Vec<_> = std::fs::read_dir(&corpus)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 15,
        "the corpus has only {} cases",
        files.len()
    );
    for file in &files {
        let contents = std::fs::read_to_string(file).unwrap();
        let header = |key: &str| {
            contents
                .lines()
                .find_map(|line| line.strip_prefix(&format!("# {key}: ")))
                .map(str::to_string)
        };
        let expected = header("expect").unwrap_or_else(|| panic!("{file:?} lacks # expect:"));
        let mut args = vec![
            "train".to_string(),
            file.display().to_string(),
            "--artifacts".to_string(),
            work.path().join("run").display().to_string(),
        ];
        if header("data-dir").as_deref() != Some("none") {
            args.extend(["--data-dir".to_string(), data_dir.display().to_string()]);
        }
        if let Some(extra) = header("args") {
            args.extend(extra.split_whitespace().map(str::to_string));
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let output = cli(&args, work.path());
        let stderr = text(&output.stderr);
        let name = file.file_name().unwrap().to_string_lossy();
        assert_eq!(output.status.code(), Some(1), "{name}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{name}: not one line:\n{stderr}");
        assert!(stderr.starts_with("error: "), "{name}: {stderr}");
        assert!(
            stderr.contains(&expected),
            "{name}: expected {expected:?} in:\n{stderr}"
        );
    }
}

/// Answers every request with 404 on 127.0.0.1 and counts them: a mirror that has nothing.
fn empty_mirror() -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::io::{BufRead, BufReader, Write};
    use std::sync::atomic::{AtomicUsize, Ordering};

    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/mnist/", listener.local_addr().unwrap());
    let requests = std::sync::Arc::new(AtomicUsize::new(0));
    let counter = requests.clone();
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 0) && line != "\r\n" {
                line.clear();
            }
            counter.fetch_add(1, Ordering::SeqCst);
            let _ = stream.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
        }
    });
    (url, requests)
}

/// With no files anywhere and an empty cache, `train` tries the mirrors (here one on the
/// loopback that has nothing), fails with one message that lists them and says where to put the
/// files; with `--offline` it makes no request at all.
#[test]
fn missing_data_is_downloaded_or_explained_and_offline_means_no_request() {
    use std::sync::atomic::Ordering;

    let work = tempfile::tempdir().unwrap();
    let cache = work.path().join("cache");
    let (mirror, requests) = empty_mirror();
    let train = |extra: &[&str]| {
        command(work.path())
            .args(["train", &smoke_config()])
            .args(extra)
            .env_remove("MNIST_LSTM_OFFLINE")
            .env("XDG_CACHE_HOME", &cache)
            .env("MNIST_MIRRORS", &mirror)
            .output()
            .expect("the binary runs")
    };

    let offline = train(&["--offline"]);
    let stderr = text(&offline.stderr);
    assert_eq!(offline.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("no download was tried"), "{stderr}");
    assert!(stderr.contains("Put train-images-idx3-ubyte"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(
        requests.load(Ordering::SeqCst),
        0,
        "--offline made a request"
    );

    let online = train(&[]);
    let stderr = text(&online.stderr);
    assert_eq!(online.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("{mirror}train-images-idx3-ubyte.gz"))
            && stderr.contains("HTTP status 404"),
        "{stderr}"
    );
    assert!(stderr.contains("Put train-images-idx3-ubyte"), "{stderr}");
    assert!(stderr.contains(&cache.join("mnist-lstm/mnist").display().to_string()));
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(requests.load(Ordering::SeqCst), 1, "a 404 is not retried");
    let left: Vec<_> = std::fs::read_dir(cache.join("mnist-lstm/mnist"))
        .unwrap()
        .flatten()
        .map(|entry| entry.file_name())
        .collect();
    assert!(left.is_empty(), "the cache holds {left:?}");
}
