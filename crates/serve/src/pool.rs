//! The decode pool: a few threads of its own on which every request body is parsed and its
//! pictures decoded, never on the async runtime's threads (a decode of a second holds up no
//! connection, no timer, no `/healthz`), and never more at once than it has threads, which bounds
//! the memory decodes take together (docs/serving.md).
//!
//! Each job carries a [`Cancel`] flag that is raised when the request waiting for it goes away
//! (answered with its 408, or its client gone): a job not started by then is skipped, a running
//! decode stops at its next row or read.

use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};

use inference::Cancel;
use tokio::sync::oneshot;

/// Work for a pool thread.
struct Job {
    cancel: Cancel,
    work: Box<dyn FnOnce(&Cancel) + Send>,
}

/// Why a job gave no result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolError {
    /// Too many jobs are waiting: the server is over capacity (503).
    Busy,
    /// The job panicked, or the pool has stopped (500).
    Failed,
}

/// The jobs waiting and the threads idle. A thread is woken only when one is idle: under load
/// the threads take the next job as they finish one, with no wake-up at all.
struct Queue {
    jobs: VecDeque<Job>,
    capacity: usize,
    idle: usize,
    closed: bool,
}

/// What the handlers and the threads share.
struct Shared {
    queue: Mutex<Queue>,
    job_waiting: Condvar,
}

impl Shared {
    /// The queue; no job runs under the lock, so a poisoned lock still holds a sound queue.
    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Closes the queue when the last [`DecodePool`] clone is dropped, which ends the threads.
struct Open(Arc<Shared>);

impl Drop for Open {
    fn drop(&mut self) {
        self.0.lock().closed = true;
        self.0.job_waiting.notify_all();
    }
}

/// The handlers' end of the pool; its threads end once every clone is dropped.
#[derive(Clone)]
pub struct DecodePool {
    shared: Arc<Shared>,
    _open: Arc<Open>,
}

/// Raises the job's flag when dropped: held by the request's future, so that a job whose result
/// nobody awaits any more (the request answered with its 408, or gone) is not worth its time.
pub struct CancelOnDrop(Cancel);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

impl DecodePool {
    /// Starts `threads` decode threads with room for `capacity` jobs waiting.
    pub fn start(threads: usize, capacity: usize) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue {
                jobs: VecDeque::new(),
                capacity,
                idle: 0,
                closed: false,
            }),
            job_waiting: Condvar::new(),
        });
        for index in 0..threads.max(1) {
            let shared = shared.clone();
            // Detached: each ends when the pool is closed, and holds nothing to flush.
            std::thread::Builder::new()
                .name(format!("serve-decode-{index}"))
                .spawn(move || work(&shared))?;
        }
        Ok(Self {
            _open: Arc::new(Open(shared.clone())),
            shared,
        })
    }

    /// Runs `work` on a pool thread and waits for its result. Dropping the returned future
    /// raises the job's [`Cancel`] flag.
    pub async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Cancel) -> T + Send + 'static,
    ) -> Result<T, PoolError> {
        let (reply, answer) = oneshot::channel();
        let _guard = self.spawn(move |cancel| {
            let _ = reply.send(work(cancel));
        })?;
        answer.await.map_err(|_| PoolError::Failed)
    }

    /// Queues `work` for a pool thread without waiting for it; the caller holds the returned
    /// guard while the result matters, and dropping it raises the job's [`Cancel`] flag.
    pub fn spawn(
        &self,
        work: impl FnOnce(&Cancel) + Send + 'static,
    ) -> Result<CancelOnDrop, PoolError> {
        let cancel = Cancel::new();
        let guard = CancelOnDrop(cancel.clone());
        let mut queue = self.shared.lock();
        if queue.closed {
            return Err(PoolError::Failed);
        }
        if queue.jobs.len() >= queue.capacity {
            return Err(PoolError::Busy);
        }
        queue.jobs.push_back(Job {
            cancel,
            work: Box::new(work),
        });
        let wake = queue.idle > 0;
        drop(queue);
        if wake {
            self.shared.job_waiting.notify_one();
        }
        Ok(guard)
    }
}

/// A pool thread: takes jobs until the pool is closed, skipping those given up while waiting.
fn work(shared: &Shared) {
    loop {
        let job = {
            let mut queue = shared.lock();
            loop {
                if let Some(job) = queue.jobs.pop_front() {
                    break job;
                }
                if queue.closed {
                    return;
                }
                queue.idle += 1;
                queue = shared
                    .job_waiting
                    .wait(queue)
                    .unwrap_or_else(PoisonError::into_inner);
                queue.idle -= 1;
            }
        };
        if job.cancel.is_cancelled() {
            continue;
        }
        // A decoder that panics on some file must not take a decode thread with it; the
        // request's reply is dropped, which it answers with a 500.
        let Job { cancel, work } = job;
        let _ = catch_unwind(AssertUnwindSafe(move || work(&cancel)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    #[tokio::test(flavor = "current_thread")]
    async fn jobs_run_off_the_caller_and_given_up_ones_are_skipped() {
        let pool = DecodePool::start(1, 8).unwrap();
        let caller = std::thread::current().id();
        let ran_on = pool.run(|_| std::thread::current().id()).await.unwrap();
        assert_ne!(ran_on, caller);

        // One thread, held busy; a job queued behind it and given up is never started.
        let (release, held) = std::sync::mpsc::channel::<()>();
        let busy = tokio::spawn({
            let pool = pool.clone();
            async move {
                pool.run(move |_| held.recv_timeout(Duration::from_secs(5)))
                    .await
            }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        let started = Arc::new(AtomicUsize::new(0));
        let counter = started.clone();
        let skipped = pool.run(move |_| counter.fetch_add(1, Ordering::SeqCst));
        let given_up = tokio::time::timeout(Duration::from_millis(20), skipped).await;
        assert!(given_up.is_err());
        release.send(()).unwrap();
        busy.await.unwrap().unwrap().unwrap();
        assert_eq!(pool.run(|_| 7).await, Ok(7));
        assert_eq!(started.load(Ordering::SeqCst), 0, "a given-up job ran");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_panicking_job_is_a_failure_and_the_thread_lives_on() {
        let pool = DecodePool::start(1, 8).unwrap();
        let failed = pool.run(|_| -> usize { panic!("a decoder bug") }).await;
        assert_eq!(failed, Err(PoolError::Failed));
        assert_eq!(pool.run(|_| 3).await, Ok(3));
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_full_queue_is_busy() {
        let pool = DecodePool::start(1, 1).unwrap();
        let (release, held) = std::sync::mpsc::channel::<()>();
        let busy = tokio::spawn({
            let pool = pool.clone();
            async move {
                pool.run(move |_| held.recv_timeout(Duration::from_secs(5)))
                    .await
            }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        let queued = tokio::spawn({
            let pool = pool.clone();
            async move { pool.run(|_| 1).await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(pool.run(|_| 2).await, Err(PoolError::Busy));
        release.send(()).unwrap();
        busy.await.unwrap().unwrap().unwrap();
        assert_eq!(queued.await.unwrap(), Ok(1));
    }
}
