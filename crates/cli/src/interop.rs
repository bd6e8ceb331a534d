//! `mnist-lstm export` and `mnist-lstm import`: a run's weights to PyTorch's layout as
//! safetensors, and a PyTorch state_dict into a run directory.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Args;
use inference::{SelectedDevice, TrainedRun, select_device};
use model::LstmClassifierConfig;
use serde_json::json;
use training::{ExperimentConfig, write_model_run};

use crate::run_dir_or_latest;

/// `export`'s options.
#[derive(Args, Debug)]
pub(crate) struct ExportArgs {
    /// Run directory of a finished `train` (or `import`) [default: the newest run under
    /// artifacts/].
    #[arg(long, value_name = "DIR")]
    model: Option<PathBuf>,
    /// The safetensors file to write [default: <run>/model.safetensors]; its configuration goes
    /// beside it as <name>.config.json.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
}

/// `import`'s options.
#[derive(Args, Debug)]
pub(crate) struct ImportArgs {
    /// A PyTorch state_dict of the tutorial's module: .pt or .pth (torch.save(model.state_dict(),
    /// ...)) or .safetensors.
    #[arg(value_name = "FILE")]
    file: PathBuf,
    /// The configuration the weights were trained with (its [model] must match them).
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
    /// Override a configuration field; repeatable (e.g. --set model.hidden_size=128).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    overrides: Vec<String>,
    /// The run directory to write (config.toml, model.json, model.bpk).
    #[arg(long, value_name = "DIR")]
    artifacts: PathBuf,
}

/// The PyTorch module the exported weights load into, as code.
fn pytorch_module(config: &LstmClassifierConfig) -> String {
    format!(
        "rnn = {}({}, {}, num_layers={}, batch_first=True, bidirectional={}); \
         out = nn.Linear({}, {}); logits = out(rnn(x)[0][:, -1, :])",
        config.cell.pytorch_module(),
        config.input_size,
        config.hidden_size,
        config.num_layers,
        if config.bidirectional {
            "True"
        } else {
            "False"
        },
        config.hidden_size * if config.bidirectional { 2 } else { 1 },
        config.num_classes
    )
}

/// Where weights are moved between formats: flex when this build has it (no GPU needed for a
/// copy), else the build's default device.
fn weights_device() -> Result<SelectedDevice> {
    Ok(select_device(Some("flex")).or_else(|_| select_device(None))?)
}

/// `<dir>/<stem>.config.json` beside `weights`.
fn config_path(weights: &Path) -> PathBuf {
    let stem = weights
        .file_stem()
        .map(|stem| stem.to_string_lossy().into_owned())
        .unwrap_or_else(|| "model".into());
    weights.with_file_name(format!("{stem}.config.json"))
}

/// Writes the run's weights as safetensors with PyTorch's names, and its configuration beside.
pub(crate) fn export(args: ExportArgs) -> Result<()> {
    let run_dir = run_dir_or_latest(args.model)?;
    let device = weights_device()?.device;
    let run = TrainedRun::load(&run_dir, &device)
        .with_context(|| format!("cannot load the model of {}", run_dir.display()))?;
    let out = args
        .out
        .unwrap_or_else(|| run_dir.join("model.safetensors"));
    let module = pytorch_module(&run.model_config);
    let model_json = serde_json::to_value(&run.model_config)?;
    let description = json!({
        "pytorch_module": module,
        "model": model_json,
        "dataset": run.dataset().to_string(),
        "class_names": run.dataset().class_names(),
        "input": format!("{}, light digit on dark", run.data.reading().describe()),
        "sequence": run.data.sequence.name(),
        "pixel_permutation": run.data.reading().permutation(),
        "pixel_scaling": if run.data.normalize {
            format!("(pixel / 255 - {}) / {}", run.data.mean, run.data.std)
        } else {
            "pixel / 255".to_string()
        },
    });
    interop::export(
        &run.classifier,
        &[
            ("format", "pt".to_string()),
            ("mnist_lstm", description.to_string()),
        ],
        &out,
    )?;
    let config_out = config_path(&out);
    std::fs::write(
        &config_out,
        serde_json::to_string_pretty(&description)? + "\n",
    )
    .with_context(|| format!("cannot write {}", config_out.display()))?;
    println!(
        "weights: {} (PyTorch's names, shapes and gate order)",
        out.display()
    );
    println!("configuration: {}", config_out.display());
    println!("PyTorch module: {module}");
    Ok(())
}

/// Reads a PyTorch state_dict into a new run directory.
pub(crate) fn import(args: ImportArgs) -> Result<()> {
    let config = ExperimentConfig::load(&args.config)?.with_overrides(&args.overrides)?;
    let device = weights_device()?.device;
    let model_config = config.model.clone();
    let classifier = interop::import(&args.file, &model_config, &device)?;
    let model_path = write_model_run(&config, classifier, &args.artifacts)?;
    println!(
        "imported {} as {} ({})",
        args.file.display(),
        model_path.display(),
        pytorch_module(&model_config)
    );
    println!("run directory: {}", args.artifacts.display());
    Ok(())
}
