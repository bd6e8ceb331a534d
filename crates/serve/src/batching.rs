//! Dynamic batching: request handlers queue their digits; one inference thread takes the first
//! job waiting, takes every job queued behind it, and waits for more (until `max_batch` images,
//! at most `max_wait` after the first) only while some request is known to be on its way: its
//! body read and being decoded. Under load, requests pile up while a forward pass runs, so
//! batches form without waiting; a lone request is not held back for company that is not
//! coming (a fixed wait made 64 closed-loop clients 2x slower: docs/serving.md).
//!
//! One thread owns the model, so the backend sees one batch at a time (its own threads work
//! inside a forward pass), and under load a forward pass serves many requests at once.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TryRecvError, TrySendError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use inference::{Prediction, Predictor};
use tokio::sync::oneshot;

use crate::ServeOptions;
use crate::metrics::Metrics;

/// Where a request's predictions go, or why there are none.
pub type Reply = oneshot::Sender<Result<Vec<Prediction>, QueueError>>;

/// One request's digits and where its answer goes.
struct Job {
    digits: Vec<Vec<u8>>,
    reply: Reply,
    /// Whether the answer carries the probabilities after every step (one digit, run alone:
    /// it is a batch of its own prefixes).
    steps: bool,
}

/// Why a job got no predictions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueueError {
    /// The queue is full: the server is over capacity (503).
    Busy,
    /// The inference thread is gone (shutting down) or failed on this batch (500).
    Failed(String),
    /// The request's input was refused before it was queued (400, the message naming why).
    Refused(String),
}

/// The handlers' end of the queue.
#[derive(Clone)]
pub struct InferenceQueue {
    sender: SyncSender<Job>,
    arriving: Arc<AtomicUsize>,
}

/// A request on its way to the queue (announced with [`InferenceQueue::arriving`]); the count
/// goes down when it is queued or given up.
pub struct Arriving {
    arriving: Arc<AtomicUsize>,
}

impl Drop for Arriving {
    fn drop(&mut self) {
        self.arriving.fetch_sub(1, Ordering::AcqRel);
    }
}

impl InferenceQueue {
    /// Says a request will be queued shortly (its body is read, it is being decoded), so that
    /// the batch being gathered waits for it.
    pub fn arriving(&self) -> Arriving {
        self.arriving.fetch_add(1, Ordering::AcqRel);
        Arriving {
            arriving: self.arriving.clone(),
        }
    }

    /// Queues `digits` (MNIST-framed, 784 grey levels each) and waits for their predictions;
    /// `announced` is the request's [`Arriving`], ended once it is queued.
    pub async fn predict(
        &self,
        digits: Vec<Vec<u8>>,
        announced: Arriving,
    ) -> Result<Vec<Prediction>, QueueError> {
        let (reply, answer) = oneshot::channel();
        self.send(digits, reply, false);
        drop(announced);
        Self::answer(answer).await
    }

    /// Queues `digits` from any thread, without waiting: their predictions go to `reply`, and
    /// so does a full queue ([`QueueError::Busy`]). A decode thread queues what it decoded this
    /// way, so that the request's task is woken once, by its answer. With `steps`, `digits` is
    /// one digit whose answer carries the probabilities after every step.
    pub fn send(&self, digits: Vec<Vec<u8>>, reply: Reply, steps: bool) {
        let job = Job {
            digits,
            reply,
            steps,
        };
        if let Err(error) = self.sender.try_send(job) {
            let (failure, job) = match error {
                TrySendError::Full(job) => (QueueError::Busy, job),
                TrySendError::Disconnected(job) => (
                    QueueError::Failed("the inference thread has stopped".into()),
                    job,
                ),
            };
            let _ = job.reply.send(Err(failure));
        }
    }

    /// What came back on a [`Reply`]'s receiver; a dropped reply is a failure.
    pub async fn answer(
        answer: oneshot::Receiver<Result<Vec<Prediction>, QueueError>>,
    ) -> Result<Vec<Prediction>, QueueError> {
        answer.await.unwrap_or_else(|_| {
            Err(QueueError::Failed(
                "the request was dropped before it was answered".into(),
            ))
        })
    }
}

/// Starts the inference thread; it ends once every [`InferenceQueue`] clone is dropped.
pub fn start(
    predictor: Predictor,
    options: &ServeOptions,
    metrics: Arc<Metrics>,
) -> std::io::Result<(InferenceQueue, JoinHandle<()>)> {
    let (sender, receiver) = std::sync::mpsc::sync_channel(options.queue_capacity);
    let arriving = Arc::new(AtomicUsize::new(0));
    let gather = Gather {
        max_batch: options.max_batch,
        max_wait: options.max_wait,
        arriving: arriving.clone(),
    };
    let thread = std::thread::Builder::new()
        .name("serve-inference".into())
        .spawn(move || run(&predictor, &receiver, gather, &metrics))?;
    Ok((InferenceQueue { sender, arriving }, thread))
}

/// When a batch is complete.
struct Gather {
    max_batch: usize,
    max_wait: Duration,
    /// Requests announced and not yet queued.
    arriving: Arc<AtomicUsize>,
}

/// How long the gatherer sleeps before looking again whether announced requests are still on
/// their way.
const RECHECK: Duration = Duration::from_micros(200);

fn run(predictor: &Predictor, receiver: &Receiver<Job>, gather: Gather, metrics: &Metrics) {
    let mut carried = None;
    while let Some(first) = carried.take().or_else(|| receiver.recv().ok()) {
        let (jobs, next) = gather_batch(first, receiver, &gather);
        carried = next;
        answer(predictor, jobs, metrics);
    }
}

/// The jobs of one batch, starting with `first`; a job that would take the batch past
/// `max_batch` is handed back for the next one (a single job larger than `max_batch` runs
/// alone).
fn gather_batch(first: Job, receiver: &Receiver<Job>, gather: &Gather) -> (Vec<Job>, Option<Job>) {
    let deadline = Instant::now() + gather.max_wait;
    let mut images = first.digits.len();
    let mut jobs = vec![first];
    while images < gather.max_batch {
        let job = match receiver.try_recv() {
            Ok(job) => job,
            Err(TryRecvError::Disconnected) => break,
            Err(TryRecvError::Empty) => {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() || gather.arriving.load(Ordering::Acquire) == 0 {
                    break;
                }
                match receiver.recv_timeout(left.min(RECHECK)) {
                    Ok(job) => job,
                    Err(RecvTimeoutError::Timeout) => continue,
                    Err(RecvTimeoutError::Disconnected) => break,
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
    let (with_steps, jobs): (Vec<Job>, Vec<Job>) = jobs.into_iter().partition(|job| job.steps);
    for job in with_steps {
        answer_steps(predictor, job, metrics);
    }
    if jobs.is_empty() {
        return;
    }
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
        .map_err(|error| QueueError::Failed(format!("inference failed: {error}")));
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

/// A job asking for the probabilities after every step: its digit's prefixes are a batch of
/// their own.
fn answer_steps(predictor: &Predictor, job: Job, metrics: &Metrics) {
    metrics.observe_batch(1);
    let outcome = match job.digits.as_slice() {
        [digit] => catch_unwind(AssertUnwindSafe(|| predictor.predict_steps(digit)))
            .unwrap_or_else(|_| {
                Err(inference::InferenceError::InvalidInput(
                    "inference panicked".into(),
                ))
            })
            .map(|prediction| vec![prediction])
            .map_err(|error| QueueError::Failed(format!("inference failed: {error}"))),
        _ => Err(QueueError::Failed(
            "the probabilities after every step are given for one digit at a time".into(),
        )),
    };
    let _ = job.reply.send(outcome);
}
