//! `mnist-lstm serve`: a trained run behind HTTP.
//!
//! - [`api`]: the routes (`/`, `/v1/predict`, `/v1/predict/batch`, `/v1/model`, `/healthz`,
//!   `/metrics`), the body limit, the request timeout and the JSON errors;
//! - [`batching`]: the inference thread that gathers concurrent requests into one forward pass;
//! - [`decode`]: request bodies (PNG, JPEG, JSON pixels) made into MNIST digits;
//! - [`pool`]: the threads that decode them, a few at a time, off the async runtime;
//! - [`connection`]: the write timeout of a connection;
//! - [`metrics`]: the Prometheus counters and histograms;
//! - [`model_info`]: what `/v1/model` says about the run.
//!
//! The model is the inference crate's [`Predictor`]: nothing of burn-train is linked.

use std::future::Future;
use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use inference::Predictor;
use tokio::net::TcpListener;

pub mod api;
pub mod batching;
pub mod connection;
pub mod decode;
pub mod metrics;
pub mod model_info;
pub mod pool;

pub use model_info::ModelInfo;

/// How the server listens, batches and limits requests.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Address to bind; loopback unless told otherwise.
    pub addr: SocketAddr,
    /// Most images in one forward pass.
    pub max_batch: usize,
    /// How long the inference thread waits for more requests after the first of a batch.
    pub max_wait: Duration,
    /// Longest a request may take, from its headers read to its answer (slow bodies and
    /// decoding included); past it the answer is 408 and its decoding stops.
    pub request_timeout: Duration,
    /// Longest a client may take to send a request's headers; past it the connection is closed.
    pub header_timeout: Duration,
    /// Longest a write to a client may wait for it to read; past it the connection is closed.
    pub write_timeout: Duration,
    /// Pictures decoded at once, at most: the threads of the decode pool.
    pub decode_threads: usize,
    /// Largest request body; past it the answer is 413.
    pub body_limit: usize,
    /// Images per batch request, at most.
    pub max_batch_request: usize,
    /// Requests waiting for the inference thread, at most; past it the answer is 503.
    pub queue_capacity: usize,
    /// How long, after SIGINT or SIGTERM, requests in flight are given to finish.
    pub drain_timeout: Duration,
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            max_batch: 256,
            max_wait: Duration::from_millis(2),
            request_timeout: Duration::from_secs(10),
            header_timeout: Duration::from_secs(5),
            write_timeout: Duration::from_secs(10),
            decode_threads: default_decode_threads(),
            body_limit: 4 * 1024 * 1024,
            max_batch_request: 1_000,
            queue_capacity: 4_096,
            drain_timeout: Duration::from_secs(10),
        }
    }
}

/// Decode threads at most, whatever the core count: a decode may take up to about 160 MB (a
/// progressive JPEG at the pixel budget; docs/serving.md), and all of them together must leave
/// the server under 1 GB.
pub const MAX_DECODE_THREADS: usize = 4;

/// The async runtime's threads: one for two cores. They only read requests and write answers;
/// the decode pool and the inference thread do the rest, and a runtime thread a core made the
/// load bench 2-4 % slower on two cores (more threads to wake between the stages;
/// docs/serving.md).
fn http_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |cores| (cores.get() / 2).max(1))
}

/// One decode thread a core, at most [`MAX_DECODE_THREADS`].
pub fn default_decode_threads() -> usize {
    std::thread::available_parallelism()
        .map_or(1, NonZeroUsize::get)
        .min(MAX_DECODE_THREADS)
}

impl ServeOptions {
    /// Range checks: every count and duration must be positive (`max_wait` may be 0).
    pub fn validate(&self) -> Result<(), ServeError> {
        let checks = [
            ("--max-batch", self.max_batch == 0),
            ("--timeout-ms", self.request_timeout.is_zero()),
            ("header timeout", self.header_timeout.is_zero()),
            ("write timeout", self.write_timeout.is_zero()),
            ("decode threads", self.decode_threads == 0),
            ("body limit", self.body_limit == 0),
            ("images per batch request", self.max_batch_request == 0),
            ("queue capacity", self.queue_capacity == 0),
        ];
        match checks.iter().find(|(_, zero)| *zero) {
            Some((name, _)) => Err(ServeError::InvalidOption(format!(
                "{name} must be greater than 0"
            ))),
            None => Ok(()),
        }
    }
}

/// Why the server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// An option is out of range.
    #[error("{0}")]
    InvalidOption(String),
    /// The address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// What the system said.
        source: std::io::Error,
    },
    /// The async runtime or the inference thread could not be started.
    #[error("cannot start the server: {0}")]
    Start(std::io::Error),
}

/// How the server stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// Every request in flight was answered.
    Answered,
    /// Requests were still open after the drain timeout (this long) and were dropped.
    Dropped(Duration),
}

/// Serves `predictor` until SIGINT or SIGTERM: then stops accepting, lets the requests in
/// flight finish (for at most `drain_timeout`) and returns whether they did. `on_ready` is called
/// with the bound address once connections are accepted (port 0 binds an ephemeral port).
pub fn serve(
    predictor: Predictor,
    info: ModelInfo,
    options: ServeOptions,
    on_ready: impl FnOnce(SocketAddr),
) -> Result<Stopped, ServeError> {
    serve_until(predictor, info, options, on_ready, shutdown_signal())
}

/// As [`serve`], stopping when `stop` completes instead of on a signal.
pub fn serve_until(
    predictor: Predictor,
    info: ModelInfo,
    options: ServeOptions,
    on_ready: impl FnOnce(SocketAddr),
    stop: impl Future<Output = ()>,
) -> Result<Stopped, ServeError> {
    options.validate()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(http_threads())
        .enable_all()
        .thread_name("serve-http")
        .build()
        .map_err(ServeError::Start)?;
    let metrics = Arc::new(metrics::Metrics::new());
    let class_names = predictor.class_names().to_vec();
    let (queue, inference_thread) =
        batching::start(predictor, &options, metrics.clone()).map_err(ServeError::Start)?;
    let decoders = pool::DecodePool::start(options.decode_threads, options.queue_capacity)
        .map_err(ServeError::Start)?;
    let outcome = runtime.block_on(async {
        let listener =
            TcpListener::bind(options.addr)
                .await
                .map_err(|source| ServeError::Bind {
                    addr: options.addr,
                    source,
                })?;
        let addr = listener.local_addr().map_err(ServeError::Start)?;
        let app = api::router(api::AppState::new(
            queue,
            decoders,
            info,
            class_names,
            metrics,
            &options,
        ));
        on_ready(addr);
        Ok(accept_until(listener, app, &options, stop).await)
    });
    // Tasks still running past the drain timeout are dropped with the runtime, and with them
    // the last handles on the queue and the pool, which ends the inference and decode threads
    // (a decode in progress stops at its next row: its request's flag is raised).
    runtime.shutdown_timeout(Duration::from_secs(1));
    let _ = inference_thread.join();
    outcome
}

/// Accepts connections until `stop`, then waits for the open ones to finish their requests.
async fn accept_until(
    listener: TcpListener,
    app: axum::Router,
    options: &ServeOptions,
    stop: impl Future<Output = ()>,
) -> Stopped {
    let graceful = GracefulShutdown::new();
    let mut stop = std::pin::pin!(stop);
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    // Small answers should not wait for Nagle's algorithm.
                    let _ = stream.set_nodelay(true);
                    let mut http = hyper::server::conn::http1::Builder::new();
                    http.timer(TokioTimer::new())
                        .header_read_timeout(options.header_timeout);
                    let stream = connection::WriteTimeout::new(stream, options.write_timeout);
                    let connection = http.serve_connection(
                        TokioIo::new(stream),
                        TowerToHyperService::new(app.clone()),
                    );
                    let connection = graceful.watch(connection);
                    tokio::spawn(async move {
                        // A client that hangs up or times out is its own business.
                        let _ = connection.await;
                    });
                }
                // Out of file descriptors, say: wait a little rather than spin.
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            },
            () = &mut stop => break,
        }
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => Stopped::Answered,
        () = tokio::time::sleep(options.drain_timeout) => Stopped::Dropped(options.drain_timeout),
    }
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
    let interrupt = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {}
        () = terminate => {}
    }
}
