//! `mnist-lstm serve`: the options, the run loaded once, and the serve crate's server.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use inference::{Predictor, TrainedRun, select_device};
use serve::{ModelInfo, ServeOptions, Stopped};

use crate::run_dir_or_latest;

/// `serve`'s options.
#[derive(Args, Debug)]
pub(crate) struct ServeArgs {
    /// Run directory of a finished `train` [default: the newest run under artifacts/].
    #[arg(long, value_name = "DIR")]
    model: Option<PathBuf>,
    /// Address to listen on; loopback unless told otherwise (0.0.0.0:8080 for every interface,
    /// port 0 for any free port).
    #[arg(long, default_value = "127.0.0.1:8080", value_name = "HOST:PORT")]
    addr: SocketAddr,
    /// Most images in one forward pass; 1 turns batching off.
    #[arg(long, default_value_t = ServeOptions::default().max_batch, value_name = "N")]
    max_batch: usize,
    /// How long the inference thread waits for more requests once one is in, in milliseconds.
    #[arg(long, default_value_t = 2, value_name = "MS")]
    max_wait_ms: u64,
    /// Longest a request may take, body upload and decoding included, in milliseconds; then 408.
    /// A client gets the shorter of this and 5 s to send its headers, and this long to read
    /// each part of an answer, else its connection is closed.
    #[arg(long, default_value_t = 10_000, value_name = "MS")]
    timeout_ms: u64,
    /// Backend to run on when several are compiled in: flex, ndarray or wgpu
    /// [env: BURN_DEVICE].
    #[arg(long, value_name = "NAME")]
    device: Option<String>,
}

/// Loads the run and serves it until SIGINT or SIGTERM.
pub(crate) fn serve(args: ServeArgs) -> Result<()> {
    let run_dir = run_dir_or_latest(args.model)?;
    let selected = select_device(args.device.as_deref())?;
    let run = TrainedRun::load(&run_dir, &selected.device)
        .with_context(|| format!("cannot load the model of {}", run_dir.display()))?;
    let info = ModelInfo::new(&run, &selected.description);
    let options = ServeOptions {
        addr: args.addr,
        max_batch: args.max_batch,
        max_wait: Duration::from_millis(args.max_wait_ms),
        request_timeout: Duration::from_millis(args.timeout_ms),
        header_timeout: ServeOptions::default()
            .header_timeout
            .min(Duration::from_millis(args.timeout_ms)),
        write_timeout: Duration::from_millis(args.timeout_ms),
        ..ServeOptions::default()
    };
    println!("model: {} ({})", run_dir.display(), run.dataset());
    println!("backend: {}", selected.description);
    if !args.addr.ip().is_loopback() {
        eprintln!(
            "warning: {} is reachable beyond this machine and the API has no authentication: \
             anyone who can connect can use it",
            args.addr
        );
    }
    let predictor = Predictor::new(run);
    let stopped = serve::serve(predictor, info, options.clone(), |addr| {
        // The line tests and scripts wait for: the port is bound and connections are accepted.
        println!(
            "listening on http://{addr} (batches of up to {} images, {} ms wait); Ctrl-C stops",
            options.max_batch,
            options.max_wait.as_millis()
        );
    })?;
    match stopped {
        Stopped::Answered => println!("stopped: the requests in flight were answered"),
        Stopped::Dropped(after) => println!(
            "stopped: requests still open after {} s of draining were dropped",
            after.as_secs()
        ),
    }
    Ok(())
}
