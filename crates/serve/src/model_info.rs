//! What `GET /v1/model` says about the run being served: its configuration (without local
//! paths), data set and class names, the model's hyper-parameters, its test accuracy as `train`
//! measured it, and where it runs.

use std::path::Path;

use inference::{CONFIG_FILE, EVALUATION_FILE, TrainedRun};
use serde_json::{Value, json};

/// The `/v1/model` document, built once at start-up.
#[derive(Debug, Clone)]
pub struct ModelInfo {
    document: Value,
}

impl ModelInfo {
    /// Describes `run` (loaded from its directory) running on `backend`.
    pub fn new(run: &TrainedRun, backend: &str) -> Self {
        let dataset = run.dataset();
        let evaluation = std::fs::read_to_string(run.dir.join(EVALUATION_FILE))
            .ok()
            .and_then(|text| test_result(&text));
        let document = json!({
            "run": run.dir.file_name().map(|name| name.to_string_lossy().into_owned()),
            "dataset": dataset.to_string(),
            "class_names": dataset.class_names(),
            "model": serde_json::to_value(&run.model_config).unwrap_or(Value::Null),
            "lstm_path": run.model_config.lstm_path(&run.device).name(),
            "backend": backend,
            "test_accuracy": evaluation.map(|(correct, total)| correct as f64 / total as f64),
            "test_images": evaluation.map(|(_, total)| total),
            "config": configuration(&run.dir),
        });
        Self { document }
    }

    /// The JSON document.
    pub fn document(&self) -> &Value {
        &self.document
    }
}

/// `config.toml` as JSON, without the paths of the machine it was trained on (`data.dir`,
/// `training.artifacts`): the server has no business telling clients about its file system.
fn configuration(run_dir: &Path) -> Value {
    let Ok(text) = std::fs::read_to_string(run_dir.join(CONFIG_FILE)) else {
        return Value::Null;
    };
    let Ok(mut table) = text.parse::<toml::Table>() else {
        return Value::Null;
    };
    for (section, key) in [("data", "dir"), ("training", "artifacts")] {
        if let Some(toml::Value::Table(section)) = table.get_mut(section) {
            section.remove(key);
        }
    }
    serde_json::to_value(table).unwrap_or(Value::Null)
}

/// `(correct, total)` from `evaluation.txt`'s first line, `test images 10000: loss 0.1234,
/// accuracy 96.32% (9632 / 10000)`.
fn test_result(text: &str) -> Option<(u64, u64)> {
    let line = text.lines().next()?;
    let inside = line.rsplit_once('(')?.1.strip_suffix(')')?;
    let (correct, total) = inside.split_once('/')?;
    let (correct, total) = (correct.trim().parse().ok()?, total.trim().parse().ok()?);
    (total > 0).then_some((correct, total))
}

#[cfg(test)]
mod tests {
    use super::test_result;

    #[test]
    fn the_evaluation_line_gives_the_accuracy() {
        let text = "test images 10000: loss 0.1234, accuracy 96.32% (9632 / 10000)\nper-class";
        assert_eq!(test_result(text), Some((9632, 10000)));
        assert_eq!(test_result("garbage"), None);
        assert_eq!(test_result("x (1 / 0)"), None);
    }
}
