//! The writer's intake: a bounded channel that never drops a message.
//!
//! The routing hooks that archive are synchronous, so they cannot wait for room in the
//! channel. Instead, once the channel is three-quarters full the module raises its
//! ingress pressure (streams stop reading their sockets, see `starling_api::ingress`),
//! and a message that still finds the channel full — one already read before the
//! pause took effect — goes to a spill list the writer drains after the channel. So
//! memory stays bounded by what the streams had read, and no message goes unarchived
//! because the database was slower than the network. Order is kept: while anything
//! is spilled, new jobs are spilled behind it.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use starling_api::ingress::PressureSource;
use starling_api::tracing;
use tokio::sync::Notify;
use tokio::sync::mpsc::{self, error::TrySendError};

use crate::writer::Job;

struct Spill {
    jobs: Mutex<VecDeque<Job>>,
    spilled: AtomicBool,
    ready: Notify,
    pressure: PressureSource,
    capacity: usize,
}

impl Spill {
    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Job>> {
        self.jobs.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The producers' end (the routing hooks, queries asking for a flush).
pub struct JobQueue {
    sender: mpsc::Sender<Job>,
    spill: Arc<Spill>,
}

/// The writer's end.
pub struct JobIntake {
    receiver: mpsc::Receiver<Job>,
    spill: Arc<Spill>,
}

/// A queue holding `capacity` jobs in its channel before it pushes back on the streams.
pub fn job_queue(capacity: usize, pressure: PressureSource) -> (JobQueue, JobIntake) {
    let (sender, receiver) = mpsc::channel(capacity);
    let spill = Arc::new(Spill {
        jobs: Mutex::new(VecDeque::new()),
        spilled: AtomicBool::new(false),
        ready: Notify::new(),
        pressure,
        capacity,
    });
    (JobQueue { sender, spill: spill.clone() }, JobIntake { receiver, spill })
}

impl JobQueue {
    /// Queues `job` without waiting. `false` only when the writer has stopped.
    pub fn push(&self, job: Job) -> bool {
        if !self.spill.spilled.load(Ordering::Acquire) {
            match self.sender.try_send(job) {
                Ok(()) => {
                    if self.sender.capacity() < self.spill.capacity / 4 {
                        self.spill.pressure.raise();
                        // The writer may have drained the channel and looked at the
                        // pressure before it was raised: wake it to look again, or
                        // the streams would stay paused with nothing left to write.
                        self.spill.ready.notify_one();
                    }
                    return true;
                }
                Err(TrySendError::Full(job)) => return self.spill_one(job),
                Err(TrySendError::Closed(_)) => return false,
            }
        }
        self.spill_one(job)
    }

    fn spill_one(&self, job: Job) -> bool {
        if self.sender.is_closed() {
            return false;
        }
        let mut jobs = self.spill.lock();
        if jobs.is_empty() {
            tracing::warn!("the archive writer is behind; pausing client and server streams until it catches up");
        }
        jobs.push_back(job);
        self.spill.spilled.store(true, Ordering::Release);
        self.spill.pressure.raise();
        drop(jobs);
        self.spill.ready.notify_one();
        true
    }
}

impl JobIntake {
    /// The next job, oldest first: the channel's, then the spilled ones. `None` once
    /// every producer is gone and nothing is left.
    pub async fn recv(&mut self) -> Option<Job> {
        loop {
            if let Some(job) = self.try_recv() {
                return Some(job);
            }
            // Nothing is waiting: whatever raised the pressure has been written.
            self.relieve();
            tokio::select! {
                job = self.receiver.recv() => match job {
                    Some(job) => return Some(job),
                    None => return self.take_spilled(),
                },
                _ = self.spill.ready.notified() => {}
            }
        }
    }

    /// The next job if one is waiting.
    pub fn try_recv(&mut self) -> Option<Job> {
        self.receiver.try_recv().ok().or_else(|| self.take_spilled())
    }

    fn take_spilled(&self) -> Option<Job> {
        if !self.spill.spilled.load(Ordering::Acquire) {
            return None;
        }
        let mut jobs = self.spill.lock();
        let job = jobs.pop_front();
        if jobs.is_empty() {
            self.spill.spilled.store(false, Ordering::Release);
        }
        job
    }

    /// Lets the streams read again once the backlog is down to an eighth.
    pub fn relieve(&self) {
        if self.spill.pressure.is_raised()
            && !self.spill.spilled.load(Ordering::Acquire)
            && self.receiver.len() <= self.spill.capacity / 8
        {
            self.spill.pressure.release();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use starling_api::ingress::Ingress;
    use tokio::sync::oneshot;

    fn flush_job() -> (Job, oneshot::Receiver<()>) {
        let (done, stored) = oneshot::channel();
        (Job::Flush { done, indexed: false }, stored)
    }

    #[tokio::test]
    async fn a_full_channel_spills_in_order_and_presses_the_streams() {
        let ingress = Ingress::default();
        let (queue, mut intake) = job_queue(8, ingress.source());
        let mut answers = Vec::new();
        for _ in 0..20 {
            let (job, stored) = flush_job();
            assert!(queue.push(job));
            answers.push(stored);
        }
        assert!(ingress.is_pressed(), "pressure is on while the writer is behind");
        let mut received = 0;
        while let Some(job) = intake.try_recv() {
            let Job::Flush { done, .. } = job else { panic!("only flushes were queued") };
            done.send(()).expect("waiting");
            received += 1;
            // Answered in the order they were queued: the channel's first, then the spill.
            assert!(answers[received - 1].try_recv().is_ok(), "job {received} out of order");
        }
        assert_eq!(received, 20, "nothing is dropped");
        intake.relieve();
        assert!(!ingress.is_pressed(), "pressure is off once the backlog is gone");
    }

    #[tokio::test]
    async fn a_waiting_writer_never_leaves_the_streams_paused() {
        let ingress = Ingress::default();
        let (queue, mut intake) = job_queue(8, ingress.source());
        let mut answers = Vec::new();
        for _ in 0..7 {
            let (job, stored) = flush_job();
            assert!(queue.push(job));
            answers.push(stored);
        }
        while intake.try_recv().is_some() {}
        assert!(ingress.is_pressed(), "raised while the channel was nearly full");
        let writer = tokio::spawn(async move { intake.recv().await.is_none() });
        tokio::time::timeout(std::time::Duration::from_secs(10), ingress.until_clear())
            .await
            .expect("the writer, finding nothing to do, releases the pressure");
        drop(queue);
        assert!(writer.await.expect("writer task"), "the intake ends with its producers");
    }

    #[tokio::test]
    async fn the_writer_wakes_for_a_spilled_job() {
        let ingress = Ingress::default();
        let (queue, mut intake) = job_queue(1, ingress.source());
        let (first, _a) = flush_job();
        let (second, _b) = flush_job();
        assert!(queue.push(first));
        assert!(queue.push(second));
        assert!(intake.recv().await.is_some());
        assert!(intake.recv().await.is_some(), "the spilled job is received, not left waiting");
        drop(queue);
        assert!(intake.recv().await.is_none());
    }
}
