//! From camera frames to answered prompts: a capture thread feeds an encoder
//! worker (latest frame wins), whose embeddings are kept for the last few
//! frames; a decoder worker answers prompts from a bounded queue against them,
//! and, when no prompt waits, proposes every object in a frame on request.
//! Adapters read every answer and every set of objects through their own
//! bounded [`Subscription`]s, whatever asked for them.
//!
//! ```text
//! FrameSource -> capture -> [Latest] -> encoder -> EmbeddingCache -> decoder <- [queue] <- submit()
//!                                                                           <- [queue] <- submit_everything()
//! ```

mod broadcast;
mod cache;
mod capture;
mod decoder;
mod encoder;
mod frame;
mod latest;
mod request;
mod source;
mod stats;

pub use broadcast::{Broadcast, Subscription};
pub use cache::{EmbeddedFrame, EmbeddingCache};
pub use capture::{CameraState, CaptureSettings};
pub use frame::Frame;
pub use latest::Latest;
pub use request::{Answer, EverythingJob, EverythingReply, FrameSelector, Job, Objects, Rejection, Reply};
pub use source::{CaptureError, FrameSource};
pub use stats::PipelineStatus;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use crossbeam_channel::{bounded, Receiver, Sender, TrySendError};

use crate::model::Sam;
use stats::Counters;

/// How the pipeline is sized.
#[derive(Debug, Clone, PartialEq)]
pub struct PipelineSettings {
    /// Embeddings kept, so that prompts can target a recent frame by id.
    pub embeddings_kept: usize,
    /// Prompts waiting for the decoder before new ones are refused as busy.
    pub queue_capacity: usize,
    pub capture: CaptureSettings,
}

/// Everything jobs waiting behind the one running before new ones are
/// refused as busy: each takes hundreds of decoder runs.
pub const EVERYTHING_QUEUE: usize = 2;

/// The running threads and their shared state.
pub struct Pipeline {
    /// `None` once shutting down.
    queues: Mutex<Option<Queues>>,
    shared: Arc<Shared>,
    /// The encoder and decoder threads.
    threads: Mutex<Vec<JoinHandle<()>>>,
    /// Closed when the capture thread has dropped the frame source.
    capture_done: Receiver<()>,
}

/// The decoder's two inputs.
struct Queues {
    prompts: Sender<Job>,
    everything: Sender<EverythingJob>,
}

/// What the threads share.
pub(crate) struct Shared {
    pub sam: Arc<Sam>,
    pub frames: Latest<Frame>,
    pub cache: EmbeddingCache,
    pub counters: Counters,
    pub stop: AtomicBool,
    pub started: Instant,
    /// The newest answer, for the display.
    pub answers: Latest<Arc<Answer>>,
    /// Every answer, for adapters that publish them all.
    pub answer_feed: Broadcast<Arc<Answer>>,
    /// Every set of objects found, for adapters that publish them.
    pub objects_feed: Broadcast<Arc<Objects>>,
    pub queue_capacity: usize,
    pub stall_after: Duration,
}

/// How long a shutdown waits for the frame source to close.
pub const CAPTURE_RELEASE: Duration = Duration::from_secs(2);

/// How often idle workers wake up to check for shutdown and report liveness.
pub(crate) const TICK: Duration = Duration::from_millis(200);

impl Pipeline {
    /// Starts the capture, encoder and decoder threads.
    ///
    /// # Errors
    /// A thread could not be spawned.
    pub fn start(sam: Arc<Sam>, source: Box<dyn FrameSource>, settings: &PipelineSettings) -> Result<Pipeline> {
        let shared = Arc::new(Shared {
            sam,
            frames: Latest::new(),
            cache: EmbeddingCache::new(settings.embeddings_kept.max(1)),
            counters: Counters::default(),
            stop: AtomicBool::new(false),
            started: Instant::now(),
            answers: Latest::new(),
            answer_feed: Broadcast::default(),
            objects_feed: Broadcast::default(),
            queue_capacity: settings.queue_capacity.max(1),
            stall_after: settings.capture.stall_after,
        });
        let (prompts, prompt_queue) = bounded(shared.queue_capacity);
        let (everything, everything_queue) = bounded(EVERYTHING_QUEUE);
        let spawn = |name: &str, body: Box<dyn FnOnce() + Send>| {
            std::thread::Builder::new().name(name.into()).spawn(body).with_context(|| format!("starting the {name} thread"))
        };
        let (capture_alive, capture_done) = bounded::<()>(0);
        spawn("capture", {
            let (shared, capture) = (shared.clone(), settings.capture.clone());
            Box::new(move || {
                capture::run(source, &shared, &capture);
                drop(capture_alive);
            })
        })?;
        // One encoder worker per frame the encoder takes at once: more than
        // one only for a server, whose network time then overlaps.
        let mut threads = (0..shared.sam.parallel_frames())
            .map(|_| {
                let shared = shared.clone();
                spawn("encoder", Box::new(move || encoder::run(&shared)))
            })
            .collect::<Result<Vec<_>>>()?;
        threads.push(spawn("decoder", {
            let shared = shared.clone();
            Box::new(move || decoder::run(&shared, &prompt_queue, &everything_queue))
        })?);
        let queues = Queues { prompts, everything };
        Ok(Pipeline { queues: Mutex::new(Some(queues)), shared, threads: Mutex::new(threads), capture_done })
    }

    /// Queues a prompt; the answer goes to `job.reply`.
    ///
    /// # Errors
    /// With the job back, which was not queued: [`Rejection::Busy`] when the
    /// queue is full, [`Rejection::Stopping`] during shutdown.
    pub fn submit(&self, job: Job) -> Result<(), (Rejection, Job)> {
        self.enqueue(|queues| &queues.prompts, job)
    }

    /// Queues a request for every object in a frame; the answer goes to
    /// `job.reply`. It runs when no prompt waits, one decoder run at a time
    /// (`job.settings.points_per_batch` is ignored).
    ///
    /// # Errors
    /// With the job back: [`Rejection::InvalidPrompt`] for invalid settings
    /// or crop layers (each crop would hold up prompts for an encoder run);
    /// [`Rejection::Busy`] when [`EVERYTHING_QUEUE`] jobs already wait;
    /// [`Rejection::Stopping`] during shutdown.
    pub fn submit_everything(&self, job: EverythingJob) -> Result<(), (Rejection, EverythingJob)> {
        if let Err(e) = job.settings.validate() {
            return Err((Rejection::InvalidPrompt(format!("{e:#}")), job));
        }
        if job.settings.crop_layers != 0 {
            return Err((Rejection::InvalidPrompt("the daemon runs no crop layers".into()), job));
        }
        self.enqueue(|queues| &queues.everything, job)
    }

    /// Puts `job` on the queue `pick` chooses without waiting; a full queue
    /// counts a busy rejection.
    fn enqueue<T>(&self, pick: impl FnOnce(&Queues) -> &Sender<T>, job: T) -> Result<(), (Rejection, T)> {
        let queues = self.queues.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(queues) = queues.as_ref() else {
            return Err((Rejection::Stopping, job));
        };
        match pick(queues).try_send(job) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(job) | TrySendError::Disconnected(job)) => {
                self.shared.counters.busy_rejections.fetch_add(1, Ordering::Relaxed);
                Err((Rejection::Busy, job))
            }
        }
    }

    /// Counters and recent averages, for Status messages and logs.
    pub fn status(&self) -> PipelineStatus {
        let queues = self.queues.lock().unwrap_or_else(PoisonError::into_inner);
        let depth = queues.as_ref().map_or(0, |q| q.prompts.len());
        drop(queues);
        self.shared.status(depth)
    }

    /// The newest answer (from any prompt source), for the display.
    pub fn answers(&self) -> &Latest<Arc<Answer>> {
        &self.shared.answers
    }

    /// Every answer from now on, from any prompt source; at most `capacity`
    /// wait unread (older ones are dropped and counted).
    pub fn subscribe_answers(&self, capacity: usize) -> Subscription<Arc<Answer>> {
        self.shared.answer_feed.subscribe(capacity)
    }

    /// Every set of objects found from now on (everything requests from the
    /// line and snapshots alike); at most `capacity` wait unread.
    pub fn subscribe_objects(&self, capacity: usize) -> Subscription<Arc<Objects>> {
        self.shared.objects_feed.subscribe(capacity)
    }

    /// The embedded frames kept.
    pub fn cache(&self) -> &EmbeddingCache {
        &self.shared.cache
    }

    /// Whether every worker has been seen alive within `within`: a hung
    /// model run stops this, which is what the service watchdog reports.
    pub fn is_alive(&self, within: Duration) -> bool {
        self.shared.counters.alive_within(self.shared.started, within)
    }

    /// The loaded model.
    pub fn sam(&self) -> &Sam {
        &self.shared.sam
    }

    /// Stops taking prompts, answers those already queued, cuts a running
    /// everything job short (answered [`Rejection::Stopping`], as are those
    /// queued), and tells the other threads to stop. It waits for the
    /// capture thread to release its device (at most [`CAPTURE_RELEASE`]),
    /// not for an encoder run in progress: that can take seconds on a
    /// board, and the process is about to exit or re-execute.
    pub fn shutdown(&self) {
        // Dropping the senders lets the decoder drain the queues and then see them closed.
        self.queues.lock().unwrap_or_else(PoisonError::into_inner).take();
        let mut threads = std::mem::take(&mut *self.threads.lock().unwrap_or_else(PoisonError::into_inner));
        if let Some(decoder) = threads.pop() {
            let _ = decoder.join();
        }
        self.shared.stop.store(true, Ordering::SeqCst);
        self.shared.frames.close();
        self.shared.answers.close();
        self.shared.cache.newest().close();
        let _ = self.capture_done.recv_timeout(CAPTURE_RELEASE);
    }
}
