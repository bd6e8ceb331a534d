//! Runs one case of `bench/pytorch/rnn_fixtures.py` through the layer and writes its results,
//! for checks against PyTorch (`rnn_fixtures.py check --runner ...`):
//!
//! ```sh
//! cargo run -p fused-rnn --release --features flex --example torch_parity -- \
//!     CASE.safetensors OUT.safetensors [--device flex|ndarray|wgpu]
//! ```
//!
//! CASE holds an `nn.LSTM` state dict, `input` and optionally `h0`, `c0`, `lengths` and
//! `grad_output` (see `tests/support/parity.rs`); OUT gets `output`, `h_n`, `c_n` and, with
//! `grad_output`, every gradient of `sum(output * grad_output)`. With `"cell": "gru"` or `"rnn"`
//! in the case's config, an `nn.GRU` or `nn.RNN` state dict and `h0` alone (no `c0`, no `c_n`).

#[path = "../tests/support/parity.rs"]
mod parity;

use std::path::PathBuf;
use std::process::ExitCode;

use burn::tensor::Device;
use clap::Parser;

#[derive(Parser)]
#[command(about = "One nn.LSTM case through fused-rnn's layer, for checks against PyTorch")]
struct Args {
    /// The case (safetensors).
    case: PathBuf,
    /// Where to write the results (safetensors).
    out: PathBuf,
    /// The backend to run on (compiled in with the crate feature of the same name).
    #[arg(long, default_value = "flex")]
    device: String,
    /// Run the layers in tensor operations instead of the kernel.
    #[arg(long)]
    no_kernel: bool,
}

fn device(name: &str) -> Result<Device, String> {
    match name {
        "flex" => Ok(Device::flex()),
        // Burn 0.22 deprecates ndarray in favour of flex; the layer serves it while Burn has it.
        #[cfg(feature = "ndarray")]
        #[allow(deprecated)]
        "ndarray" => Ok(Device::ndarray()),
        #[cfg(feature = "wgpu")]
        "wgpu" => Ok(Device::wgpu(burn::tensor::DeviceKind::DefaultDevice)),
        other => Err(format!(
            "device {other}: not compiled in (flex always; ndarray and wgpu with the crate \
             features of the same names)"
        )),
    }
}

fn run(args: &Args) -> Result<(), String> {
    let read = |path: &PathBuf| std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()));
    let case = parity::Case::from_bytes(&read(&args.case)?)
        .map_err(|e| format!("{}: {e}", args.case.display()))?;
    let device = device(&args.device)?;
    let device = if case.tensors.contains_key("grad_output") {
        device.autodiff()
    } else {
        device
    };
    let results = case.run(&device, !args.no_kernel)?;
    let bytes = parity::write(&results)?;
    std::fs::write(&args.out, bytes).map_err(|e| format!("{}: {e}", args.out.display()))
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("torch_parity: {message}");
            ExitCode::FAILURE
        }
    }
}
