//! A closed-loop load generator for `mnist-lstm serve`, loopback only: `--clients` connections
//! (HTTP/1.1 keep-alive), each posting MNIST test digits as PNG to `/v1/predict` one after
//! another for `--seconds` (or `--max-requests` in all). Prints JSON: predictions/s, latency
//! p50/p90/p99/max in ms, errors. `cargo xtask bench serve` runs it against batching on and off.
//!
//! cargo run -p serve --release --example load -- --addr 127.0.0.1:8080 --images \
//!     ../shared/data/mnist/t10k-images-idx3-ubyte.gz

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::net::TcpStream;

#[derive(Parser, Debug)]
struct Args {
    /// The server; only loopback addresses are accepted.
    #[arg(long)]
    addr: SocketAddr,
    /// Concurrent clients, one connection each.
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// How long to send for.
    #[arg(long, default_value_t = 20.0)]
    seconds: f64,
    /// Stop after this many requests in all, whatever the time.
    #[arg(long, default_value_t = 2_000_000)]
    max_requests: u64,
    /// An IDX image file (raw or gzipped) whose first 1000 digits are sent.
    #[arg(long)]
    images: PathBuf,
    /// Threads of the generator's runtime (the server needs the rest of the machine).
    #[arg(long, default_value_t = 1)]
    threads: usize,
}

/// What one client saw.
#[derive(Default)]
struct ClientLog {
    latencies_us: Vec<u32>,
    errors: u64,
}

fn main() -> Result<()> {
    let args = Args::parse();
    if !args.addr.ip().is_loopback() {
        bail!(
            "{}: the load generator only talks to loopback addresses",
            args.addr
        );
    }
    let bodies = Arc::new(png_digits(&args.images)?);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.max(1))
        .enable_all()
        .build()?;
    let report = runtime.block_on(run(&args, bodies))?;
    println!("{report}");
    Ok(())
}

/// The first 1000 digits of the IDX file, each encoded as a 28x28 grey PNG.
fn png_digits(path: &Path) -> Result<Vec<Bytes>> {
    let images = data::idx::read_images(path, 28, 28)
        .with_context(|| format!("cannot read {}", path.display()))?;
    images
        .pixels
        .chunks(784)
        .take(1000)
        .map(|pixels| {
            let image = image::GrayImage::from_raw(28, 28, pixels.to_vec())
                .context("a digit of 784 pixels")?;
            let mut png = Vec::new();
            image.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)?;
            Ok(Bytes::from(png))
        })
        .collect()
}

async fn run(args: &Args, bodies: Arc<Vec<Bytes>>) -> Result<serde_json::Value> {
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(args.seconds);
    let mut tasks = Vec::new();
    for client in 0..args.clients {
        let (bodies, stop, sent) = (bodies.clone(), stop.clone(), sent.clone());
        let (addr, max) = (args.addr, args.max_requests);
        tasks.push(tokio::spawn(async move {
            client_loop(addr, client, &bodies, deadline, max, &stop, &sent).await
        }));
    }
    let mut logs = Vec::new();
    for task in tasks {
        logs.push(task.await?);
    }
    let elapsed = started.elapsed().as_secs_f64();
    let mut latencies: Vec<u32> = logs
        .iter()
        .flat_map(|log| log.latencies_us.clone())
        .collect();
    latencies.sort_unstable();
    let errors: u64 = logs.iter().map(|log| log.errors).sum();
    let quantile = |q: f64| -> f64 {
        if latencies.is_empty() {
            return 0.0;
        }
        let index = ((latencies.len() - 1) as f64 * q).round() as usize;
        f64::from(latencies[index]) / 1000.0
    };
    Ok(json!({
        "clients": args.clients,
        "seconds": elapsed,
        "predictions": latencies.len(),
        "predictions_per_second": latencies.len() as f64 / elapsed,
        "latency_ms": {
            "p50": quantile(0.5),
            "p90": quantile(0.9),
            "p99": quantile(0.99),
            "max": quantile(1.0),
        },
        "errors": errors,
    }))
}

/// One connection, one request at a time until the deadline; a broken connection is an error
/// and is reopened.
async fn client_loop(
    addr: SocketAddr,
    client: usize,
    bodies: &[Bytes],
    deadline: Instant,
    max_requests: u64,
    stop: &AtomicBool,
    sent: &AtomicU64,
) -> ClientLog {
    let mut log = ClientLog::default();
    let mut next = client * 7;
    while Instant::now() < deadline && !stop.load(Ordering::Relaxed) {
        let mut sender = match connect(addr).await {
            Ok(sender) => sender,
            Err(_) => {
                log.errors += 1;
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        while Instant::now() < deadline {
            if sent.fetch_add(1, Ordering::Relaxed) >= max_requests {
                stop.store(true, Ordering::Relaxed);
                return log;
            }
            let body = bodies[next % bodies.len()].clone();
            next += 1;
            let begun = Instant::now();
            match post(&mut sender, body).await {
                Ok(true) => log
                    .latencies_us
                    .push(begun.elapsed().as_micros().min(u128::from(u32::MAX)) as u32),
                Ok(false) => log.errors += 1,
                Err(_) => {
                    log.errors += 1;
                    break;
                }
            }
        }
    }
    log
}

type Sender = http1::SendRequest<Full<Bytes>>;

async fn connect(addr: SocketAddr) -> Result<Sender> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (sender, connection) = http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    Ok(sender)
}

/// One prediction; `Ok(false)` for an answer other than 200.
async fn post(sender: &mut Sender, body: Bytes) -> Result<bool> {
    sender.ready().await?;
    let request = hyper::Request::post("/v1/predict")
        .header("host", "localhost")
        .header("content-type", "image/png")
        .body(Full::new(body))?;
    let response = sender.send_request(request).await?;
    let ok = response.status() == hyper::StatusCode::OK;
    response.into_body().collect().await?;
    Ok(ok)
}
