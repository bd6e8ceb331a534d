//! `mnist-lstm gates`: how a run's classifier read one image, drawn. Per time step, the class
//! probabilities it would give were the sequence to stop there, and its top layer's forget,
//! input and output gates and cell state over the units (`steps.svg`/`.png`,
//! `gates.svg`/`.png`), with the same numbers as JSON (`reading.json`).

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Args;
use inference::{Predictor, idx_digit, load_digit, select_device};
use serde_json::json;

/// Options of `mnist-lstm gates`.
#[derive(Args, Debug)]
pub(crate) struct GatesArgs {
    /// Run directory of a finished `train` [default: the newest run under artifacts/].
    #[arg(long, value_name = "DIR")]
    model: Option<PathBuf>,
    /// A PNG or JPEG file holding one digit (framed like MNIST, as `predict` does).
    #[arg(
        value_name = "IMAGE",
        required_unless_present = "idx",
        conflicts_with = "idx"
    )]
    image: Option<PathBuf>,
    /// Read the image from an IDX file (e.g. t10k-images-idx3-ubyte.gz), chosen by --index.
    #[arg(long, value_name = "FILE", requires = "index")]
    idx: Option<PathBuf>,
    /// Index, from 0, of the image in the --idx file.
    #[arg(long, value_name = "N", requires = "idx")]
    index: Option<usize>,
    /// Where the pictures go [default: <run>/reading].
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Backend to run on when several are compiled in: flex, ndarray or wgpu
    /// [env: BURN_DEVICE].
    #[arg(long, value_name = "NAME")]
    device: Option<String>,
}

/// Draws how the run's classifier read the image and prints where the files are.
pub(crate) fn gates(args: GatesArgs) -> Result<()> {
    let run_dir = crate::run_dir_or_latest(args.model)?;
    let device = select_device(args.device.as_deref())?.device;
    let predictor = Predictor::from_run(&run_dir, &device)
        .with_context(|| format!("cannot load the model of {}", run_dir.display()))?;
    let (name, digit) = match (&args.image, &args.idx, args.index) {
        (Some(path), _, _) => (path.display().to_string(), load_digit(path)?),
        (None, Some(idx), Some(index)) => (
            format!("{}[{index}]", idx.display()),
            idx_digit(idx, index)?.0,
        ),
        _ => bail!("give an IMAGE, or --idx FILE --index N"),
    };
    let trace = predictor.reading_trace(&digit)?;
    let out = args.out.unwrap_or_else(|| run_dir.join("reading"));
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
    let names: Vec<&str> = predictor.class_names().iter().map(String::as_str).collect();
    let mut written = training::write_reading_figures(&trace, &names, &out)?;
    let json_path = out.join("reading.json");
    let document = json!({
        "image": name,
        "probabilities_per_step": trace.probabilities,
        "gates": {
            "layer": trace.gates.layer,
            "input_gate": trace.gates.input_gate,
            "forget_gate": trace.gates.forget_gate,
            "output_gate": trace.gates.output_gate,
            "cell": trace.gates.cell,
        },
    });
    std::fs::write(&json_path, serde_json::to_string(&document)? + "\n")
        .with_context(|| format!("cannot write {}", json_path.display()))?;
    written.push(json_path);
    let steps = trace.probabilities.len();
    let answer = trace.probabilities.last().map_or(0, |row| {
        row.iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map_or(0, |(class, _)| class)
    });
    println!("{name}: {} after {steps} steps", predictor.label(answer));
    for path in written {
        println!("written: {}", path.display());
    }
    Ok(())
}
