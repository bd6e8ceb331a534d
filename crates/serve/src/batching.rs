//! Dynamic batching: request handlers queue their digits; one inference thread takes the first
//! job waiting, gathers more until `max_batch` images or `max_wait` after the first, runs them
//! as one forward pass and answers each job with its own predictions.
//!
//! One thread owns the model, so the backend sees one batch at a time (its own threads work
//! inside a forward pass), and under load a forward pass serves many requests at once.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TryRecvError, TrySendError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use inference::{Prediction, Predictor};
use tokio::sync::oneshot;

use crate::ServeOptions;
use crate::metrics::Metrics;

/// One request's digits and where its answer goes.
struct Job {
    digits: Vec<Vec<u8>>,
    reply: oneshot::Sender<Result<Vec<Prediction>, String>>,
}

/// Why a job got no predictions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueueError {
    /// The queue is full: the server is over capacity (503).
    Busy,
    /// The inference thread is gone (shutting down) or failed on this batch (500).
    Failed(String),
}

/// The handlers' end of the queue.
#[derive(Clone)]
pub struct InferenceQueue {
    sender: SyncSender<Job>,
}

impl InferenceQueue {
    /// Queues `digits` (MNIST-framed, 784 grey levels each) and waits for their predictions.
    pub async fn predict(&self, digits: Vec<Vec<u8>>) -> Result<Vec<Prediction>, QueueError> {
        let (reply, answer) = oneshot::channel();
        self.sender
            .try_send(Job { digits, reply })
            .map_err(|error| match error {
                TrySendError::Full(_) => QueueError::Busy,
                TrySendError::Disconnected(_) => {
                    QueueError::Failed("the inference thread has stopped".into())
                }
            })?;
        match answer.await {
            Ok(result) => result.map_err(QueueError::Failed),
            Err(_) => Err(QueueError::Failed(
                "the inference thread dropped the request".into(),
            )),
        }
    }
}

/// Starts the inference thread; it ends once every [`InferenceQueue`] clone is dropped.
pub fn start(
    predictor: Predictor,
    options: &ServeOptions,
    metrics: Arc<Metrics>,
) -> std::io::Result<(InferenceQueue, JoinHandle<()>)> {
    let (sender, receiver) = std::sync::mpsc::sync_channel(options.queue_capacity);
    let gather = Gather {
        max_batch: options.max_batch,
        max_wait: options.max_wait,
    };
    let thread = std::thread::Builder::new()
        .name("serve-inference".into())
        .spawn(move || run(&predictor, &receiver, gather, &metrics))?;
    Ok((InferenceQueue { sender }, thread))
}

/// When a batch is complete.
#[derive(Debug, Clone, Copy)]
struct Gather {
    max_batch: usize,
    max_wait: Duration,
}

fn run(predictor: &Predictor, receiver: &Receiver<Job>, gather: Gather, metrics: &Metrics) {
    let mut carried = None;
    while let Some(first) = carried.take().or_else(|| receiver.recv().ok()) {
        let (jobs, next) = gather_batch(first, receiver, gather);
        carried = next;
        answer(predictor, jobs, metrics);
    }
}

/// The jobs of one batch, starting with `first`; a job that would take the batch past
/// `max_batch` is handed back for the next one (a single job larger than `max_batch` runs
/// alone).
fn gather_batch(first: Job, receiver: &Receiver<Job>, gather: Gather) -> (Vec<Job>, Option<Job>) {
    let deadline = Instant::now() + gather.max_wait;
    let mut images = first.digits.len();
    let mut jobs = vec![first];
    while images < gather.max_batch {
        let job = match receiver.try_recv() {
            Ok(job) => job,
            Err(TryRecvError::Disconnected) => break,
            Err(TryRecvError::Empty) => {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                match receiver.recv_timeout(left) {
                    Ok(job) => job,
                    Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => break,
                }
            }
        };
        if images + job.digits.len() > gather.max_batch {
            return (jobs, Some(job));
        }
        images += job.digits.len();
        jobs.push(job);
    }
    (jobs, None)
}

/// One forward pass over all the jobs' digits; each job gets its share of the predictions.
fn answer(predictor: &Predictor, jobs: Vec<Job>, metrics: &Metrics) {
    let mut digits = Vec::with_capacity(jobs.iter().map(|job| job.digits.len()).sum());
    let mut replies = Vec::with_capacity(jobs.len());
    for job in jobs {
        replies.push((job.digits.len(), job.reply));
        digits.extend(job.digits);
    }
    metrics.observe_batch(digits.len());
    // A panic inside the backend must not take the server's only model down with it.
    let outcome = catch_unwind(AssertUnwindSafe(|| predictor.predict(&digits)))
        .unwrap_or_else(|_| {
            Err(inference::InferenceError::InvalidInput(
                "inference panicked".into(),
            ))
        })
        .map_err(|error| format!("inference failed: {error}"));
    match outcome {
        Ok(predictions) => {
            let mut predictions = predictions.into_iter();
            for (count, reply) in replies {
                let _ = reply.send(Ok(predictions.by_ref().take(count).collect()));
            }
        }
        Err(message) => {
            for (_, reply) in replies {
                let _ = reply.send(Err(message.clone()));
            }
        }
    }
}
