//! The decoder worker: answers queued prompts against the embedding each one
//! asks for, and runs "everything" jobs at a lower priority: between any two
//! of a job's decoder runs, every queued prompt is answered first, so a
//! prompt waits for at most one decoder run however long the job is.

use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::{never, select, Receiver, TryRecvError};
use log::{debug, error, info};

use super::cache::EmbeddedFrame;
use super::request::{Answer, EverythingJob, EverythingReply, FrameSelector, Job, Objects, Rejection, Reply};
use super::stats::Counters;
use super::{Shared, TICK};
use crate::everything::{self, Cancelled, Settings};

/// Runs until every sender of both queues is gone and the prompt queue is
/// empty, so that prompts accepted before a shutdown are still answered.
/// Everything jobs still queued then are answered [`Rejection::Stopping`].
pub(crate) fn run(shared: &Shared, prompts: &Receiver<Job>, jobs: &Receiver<EverythingJob>) {
    let (no_prompts, no_jobs) = (never(), never());
    let (mut prompts_open, mut jobs_open) = (true, true);
    while prompts_open || jobs_open {
        Counters::mark_alive(&shared.counters.decoder_alive_ms, shared.started);
        // Prompts first: a job only starts on an empty prompt queue.
        match prompts.try_recv() {
            Ok(job) => {
                serve(shared, job);
                continue;
            }
            Err(TryRecvError::Disconnected) => prompts_open = false,
            Err(TryRecvError::Empty) => {}
        }
        let prompts_in = if prompts_open { prompts } else { &no_prompts };
        let jobs_in = if jobs_open { jobs } else { &no_jobs };
        select! {
            recv(prompts_in) -> job => match job {
                Ok(job) => serve(shared, job),
                Err(_) => prompts_open = false,
            },
            recv(jobs_in) -> job => match job {
                // The prompt queue closes only at shutdown: no new long job then.
                Ok(job) if !prompts_open => stopping(job),
                Ok(job) => run_everything(shared, prompts, job),
                Err(_) => jobs_open = false,
            },
            default(TICK) => {}
        }
    }
}

fn serve(shared: &Shared, job: Job) {
    let result = answer(shared, &job);
    if let Ok(answer) = &result {
        shared.answers.put(answer.clone());
        shared.answer_feed.send(answer);
    }
    // A caller that went away no longer wants its reply.
    let _ = job.reply.send(Reply { tag: job.tag, result });
}

fn stopping(job: EverythingJob) {
    let _ = job.reply.send(EverythingReply { tag: job.tag, result: Err(Rejection::Stopping) });
}

fn embedded(shared: &Shared, frame: FrameSelector) -> Result<Arc<EmbeddedFrame>, Rejection> {
    match frame {
        FrameSelector::Latest => shared.cache.latest().ok_or_else(|| {
            let state = shared.status(0).camera;
            Rejection::NoFrame(format!("no frame embedded yet (camera {state:?})"))
        }),
        FrameSelector::Id(id) => shared.cache.get(id).ok_or_else(|| {
            Rejection::NoFrame(format!("frame {id} is not kept; kept: {:?}", shared.cache.ids()))
        }),
    }
}

fn answer(shared: &Shared, job: &Job) -> Result<Arc<Answer>, Rejection> {
    let embedded = embedded(shared, job.frame)?;
    let frame = &embedded.frame;
    job.prompt
        .validate(embedded.embedding.geometry.original)
        .map_err(|e| Rejection::InvalidPrompt(e.to_string()))?;
    let start = Instant::now();
    let frame_age = start.saturating_duration_since(frame.captured);
    let low_res = shared
        .sam
        .low_res_batch(&embedded.embedding, std::slice::from_ref(&job.prompt))
        .map_err(|e| {
            error!("decoding a prompt on frame {}: {e:#}", frame.id);
            Rejection::Internal(format!("{e:#}"))
        })?;
    // Only the mask SAM's rule picks is upscaled: the others are never sent.
    let low_res = &low_res[0];
    let mask = low_res.candidate(low_res.chosen_token(), &embedded.embedding.geometry);
    let decode = start.elapsed();
    debug!("frame {}: decoded in {decode:?}, frame age {frame_age:?}", frame.id);
    Ok(Arc::new(Answer {
        frame: frame.clone(),
        prompt: job.prompt.clone(),
        mask,
        frame_age,
        decode,
        decoded_at: Instant::now(),
    }))
}

fn run_everything(shared: &Shared, prompts: &Receiver<Job>, job: EverythingJob) {
    let result = objects(shared, prompts, &job);
    if let Ok(objects) = &result {
        shared.objects_feed.send(objects);
    }
    let _ = job.reply.send(EverythingReply { tag: job.tag, result });
}

fn objects(shared: &Shared, prompts: &Receiver<Job>, job: &EverythingJob) -> Result<Arc<Objects>, Rejection> {
    let embedded = embedded(shared, job.frame)?;
    let frame = &embedded.frame;
    let start = Instant::now();
    // One prompt per batch: queued prompts are answered after every decoder run.
    let settings = Settings { points_per_batch: 1, ..job.settings.clone() };
    let mut last = everything::Progress::default();
    let between_batches = |progress: &everything::Progress| {
        last = progress.clone();
        Counters::mark_alive(&shared.counters.decoder_alive_ms, shared.started);
        loop {
            match prompts.try_recv() {
                Ok(prompt) => serve(shared, prompt),
                Err(TryRecvError::Empty) => return ControlFlow::Continue(()),
                Err(TryRecvError::Disconnected) => return ControlFlow::Break(()),
            }
        }
    };
    let masks = everything::generate(&shared.sam, &embedded.embedding, &settings, between_batches).map_err(|e| {
        if e.is::<Cancelled>() {
            return Rejection::Stopping;
        }
        error!("proposing masks on frame {}: {e:#}", frame.id);
        Rejection::Internal(format!("{e:#}"))
    })?;
    let objects = Objects {
        frame: frame.clone(),
        masks,
        prompts: last.prompts,
        frame_age: start.saturating_duration_since(frame.captured),
        elapsed: start.elapsed(),
        decoding: last.decoding,
    };
    info!(
        "frame {}: {} objects from {} prompts in {:.1} s ({:.1} s decoding)",
        frame.id,
        objects.masks.len(),
        objects.prompts,
        objects.elapsed.as_secs_f64(),
        objects.decoding.as_secs_f64()
    );
    Ok(Arc::new(objects))
}
