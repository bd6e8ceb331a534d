//! Runs that are killed, aborted mid-checkpoint, interrupted with Ctrl-C or diverge, as real
//! child processes: a resumed run must end with the very weights of a run never interrupted.
//!
//! The runs use two stacked layers with dropout between them and a cosine schedule with warm-up,
//! so equal weights also show that dropout's random state and the schedule's place came back.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};

use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::{Device, Tensor};
use model::LstmClassifierConfig;

mod common;
use common::{command, text};

/// 640 training images in batches of 64 for 3 epochs: 30 steps, a checkpoint every 2.
const TOTAL_STEPS: usize = 30;
/// The step of the first checkpoint (`training.checkpoint_every` below).
const FIRST_CHECKPOINT: usize = 2;

struct Setup {
    work: tempfile::TempDir,
    data_dir: PathBuf,
}

impl Setup {
    fn new() -> Self {
        let work = tempfile::tempdir().unwrap();
        let data_dir = work.path().join("data");
        data::write_synthetic_mnist(&data_dir, 640, 200, 7, true).unwrap();
        Self { work, data_dir }
    }

    fn run_dir(&self, name: &str) -> PathBuf {
        self.work.path().join(name)
    }

    /// `mnist-lstm train configs/smoke.toml` into run directory `name`, plus `extra` arguments.
    fn train(&self, name: &str, extra: &[&str]) -> Command {
        let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/smoke.toml");
        let mut train = command(self.work.path());
        train
            .arg("train")
            .arg(config)
            .arg("--artifacts")
            .arg(self.run_dir(name))
            .arg("--data-dir")
            .arg(&self.data_dir);
        for setting in [
            "training.epochs=3",
            "training.checkpoint_every=2", // FIRST_CHECKPOINT
            "training.keep_checkpoints=3",
            "training.log_every=1",
            "model.num_layers=2",
            "model.dropout=0.3",
            "schedule.kind=\"cosine\"",
            "schedule.warmup_steps=5",
        ] {
            train.args(["--set", setting]);
        }
        train.args(extra);
        train
    }

    /// Runs to the end and returns stdout; panics with the output if it fails.
    fn train_to_end(&self, name: &str, extra: &[&str]) -> String {
        let output = self.train(name, extra).output().expect("the binary runs");
        let stdout = text(&output.stdout);
        assert!(
            output.status.success(),
            "{stdout}\n{}",
            text(&output.stderr)
        );
        stdout
    }

    /// Starts a run and, once it has printed `lines` step lines, calls `stop` with its process;
    /// returns how it ended and what it printed.
    fn stop_after(
        &self,
        name: &str,
        lines: usize,
        stop: impl FnOnce(&mut std::process::Child),
    ) -> (ExitStatus, String) {
        let mut child = self
            .train(name, &[])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the binary starts");
        let stdout = child.stdout.take().unwrap();
        let mut printed = String::new();
        let mut seen = 0;
        let mut stop = Some(stop);
        for line in BufReader::new(stdout).lines() {
            let line = line.unwrap();
            printed.push_str(&line);
            printed.push('\n');
            if is_step_line(&line) {
                seen += 1;
                if seen == lines
                    && let Some(stop) = stop.take()
                {
                    stop(&mut child);
                }
            }
        }
        let status = child.wait().unwrap();
        let mut stderr = String::new();
        if let Some(mut pipe) = child.stderr.take() {
            let _ = std::io::Read::read_to_string(&mut pipe, &mut stderr);
        }
        (status, format!("{printed}\nstderr:\n{stderr}"))
    }
}

fn is_step_line(line: &str) -> bool {
    line.starts_with("epoch ") && line.contains(" step ") && line.contains("loss")
}

/// Every parameter of the run's model, as the bits of its values, in visiting order.
fn weights(run_dir: &Path) -> Vec<Vec<u32>> {
    struct Collect(Vec<Vec<u32>>);
    impl ModuleVisitor for Collect {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let values = param.val().into_data().try_to_vec::<f32>().unwrap();
            self.0
                .push(values.iter().map(|value| value.to_bits()).collect());
        }
    }
    let config = LstmClassifierConfig::from_file(run_dir.join("model.json")).unwrap();
    let classifier = config
        .load(run_dir.join("model.bpk"), &Device::default())
        .unwrap();
    let mut collect = Collect(Vec::new());
    classifier.visit(&mut collect);
    collect.0
}

fn assert_same_weights(reference: &Path, resumed: &Path) {
    let (expected, found) = (weights(reference), weights(resumed));
    assert_eq!(expected.len(), found.len());
    for (index, (a, b)) in expected.iter().zip(&found).enumerate() {
        let differing = a.iter().zip(b).filter(|(x, y)| x != y).count();
        assert_eq!(
            differing,
            0,
            "parameter {index}: {differing} of {} values differ from the uninterrupted run",
            a.len()
        );
    }
    assert_eq!(
        std::fs::read_to_string(reference.join("evaluation.txt")).unwrap(),
        std::fs::read_to_string(resumed.join("evaluation.txt")).unwrap()
    );
    // metrics.csv covers the whole run with the same values and step numbers, except the time
    // and the mean over the resumed epoch's training steps (only those it ran).
    let rows = |run: &Path| -> Vec<String> {
        std::fs::read_to_string(run.join("metrics.csv"))
            .unwrap()
            .lines()
            .filter(|line| !line.contains(",train_epoch,"))
            .map(|line| line.rsplit_once(',').unwrap().0.to_string())
            .collect()
    };
    let (expected, found) = (rows(reference), rows(resumed));
    assert!(expected.len() > TOTAL_STEPS, "{expected:?}");
    assert_eq!(expected, found, "metrics.csv of the resumed run");
}

/// A step between `low` and `high` that changes from run to run (printed, so a failure can be
/// replayed with RESUME_TEST_STEP).
fn random_step(low: usize, high: usize) -> usize {
    let step = std::env::var("RESUME_TEST_STEP")
        .ok()
        .and_then(|step| step.parse().ok())
        .unwrap_or_else(|| {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|time| time.subsec_nanos() as usize)
                .unwrap_or(0);
            low + nanos % (high - low + 1)
        });
    println!("stopping after step line {step} (replay with RESUME_TEST_STEP={step})");
    step
}

fn checkpoints(run_dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(run_dir.join("checkpoint"))
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|entry| entry.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[test]
fn killed_at_a_random_step_then_resumed_ends_with_the_same_weights() {
    let setup = Setup::new();
    setup.train_to_end("reference", &[]);

    // From the step line after the first checkpoint's step: checkpoints are written before the
    // next step runs, so one exists by then (killed earlier, `--resume` rightly finds none).
    let step = random_step(FIRST_CHECKPOINT + 1, TOTAL_STEPS - 3);
    let (status, printed) = setup.stop_after("killed", step, |child| {
        child.kill().unwrap(); // SIGKILL
    });
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(9), "{printed}");
    let killed = setup.run_dir("killed");
    assert!(!killed.join("model.bpk").exists(), "the run did not finish");

    let resumed = setup.train_to_end("killed", &["--resume"]);
    assert!(resumed.contains("resuming from"), "{resumed}");
    assert!(
        resumed.contains("final test accuracy"),
        "the resumed run finishes: {resumed}"
    );
    assert_same_weights(&setup.run_dir("reference"), &killed);
}

#[test]
fn aborted_while_writing_a_checkpoint_resumes_from_the_one_before() {
    let setup = Setup::new();
    setup.train_to_end("reference", &[]);

    // The process aborts after writing checkpoint 6 but before renaming it into place.
    let output = setup
        .train("aborted", &[])
        .env(training::FAULT_ENV, "abort-before-rename:6")
        .output()
        .unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(
        output.status.signal(),
        Some(6),
        "SIGABRT expected\n{}\n{}",
        text(&output.stdout),
        text(&output.stderr)
    );
    let aborted = setup.run_dir("aborted");
    let left = checkpoints(&aborted);
    assert!(
        left.iter()
            .any(|name| name.starts_with(".partial-step-00000006")),
        "{left:?}"
    );
    assert!(left.contains(&"step-00000004".to_string()), "{left:?}");

    let resumed = setup.train_to_end("aborted", &["--resume"]);
    assert!(
        resumed.contains("a checkpoint whose write did not finish; removed"),
        "{resumed}"
    );
    assert!(
        resumed.contains("step-00000004: 4 step(s) done"),
        "{resumed}"
    );
    assert_same_weights(&setup.run_dir("reference"), &aborted);
}

#[test]
fn ctrl_c_checkpoints_exits_130_and_resume_goes_on() {
    let setup = Setup::new();
    setup.train_to_end("reference", &[]);

    let step = random_step(2, TOTAL_STEPS - 3);
    let (status, printed) = setup.stop_after("interrupted", step, |child| {
        let sent = Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success());
    });
    assert_eq!(status.code(), Some(130), "{printed}");
    assert!(printed.contains("stopped after step"), "{printed}");
    assert!(
        printed.contains("resume with: mnist-lstm train"),
        "{printed}"
    );
    assert!(printed.contains("--resume"), "{printed}");
    let interrupted = setup.run_dir("interrupted");
    assert!(!interrupted.join("model.bpk").exists());
    // The checkpoint of the step it stopped at is there.
    let stopped_at: usize = printed
        .lines()
        .find_map(|line| line.strip_prefix("training stopped after step "))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|step| step.parse().ok())
        .expect("the step it stopped at");
    assert!(
        checkpoints(&interrupted).contains(&format!("step-{stopped_at:08}")),
        "{:?}",
        checkpoints(&interrupted)
    );

    // Resumed from the checkpoint named on the command line.
    let checkpoint = interrupted
        .join("checkpoint")
        .join(format!("step-{stopped_at:08}"));
    let checkpoint = checkpoint.display().to_string();
    let resumed = setup.train_to_end("interrupted", &["--resume", &checkpoint]);
    assert!(
        resumed.contains(&format!("{stopped_at} step(s) done")),
        "{resumed}"
    );
    assert_same_weights(&setup.run_dir("reference"), &interrupted);
}

#[test]
fn a_diverging_run_stops_with_the_step_and_keeps_the_good_checkpoints() {
    let setup = Setup::new();
    let output = setup
        .train(
            "diverged",
            &[
                "--set",
                "optimizer.learning_rate=1e38",
                "--set",
                "schedule.kind=\"constant\"",
                "--set",
                "schedule.warmup_steps=0",
                "--set",
                "training.checkpoint_every=1",
            ],
        )
        .output()
        .unwrap();
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("the training loss became"), "{stderr}");
    assert!(stderr.contains("no model was saved"), "{stderr}");
    let diverged = setup.run_dir("diverged");
    assert!(!diverged.join("model.bpk").exists());
    let global_step: usize = stderr
        .split("(step ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|step| step.parse().ok())
        .expect("the message names the step");
    // No checkpoint of the step that diverged, nor after it.
    for name in checkpoints(&diverged) {
        if let Some(step) = name.strip_prefix("step-") {
            let step: usize = step.parse().unwrap();
            assert!(step < global_step, "checkpoint {name} after divergence");
        }
    }
}

#[test]
fn resuming_without_a_checkpoint_says_so() {
    let setup = Setup::new();
    let output = setup.train("never", &["--resume"]).output().unwrap();
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("cannot resume"), "{stderr}");
    assert!(stderr.contains("checkpoint"), "{stderr}");
}
