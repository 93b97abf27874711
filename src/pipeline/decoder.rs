//! The decoder worker: answers queued prompts against the embedding each one asks for.

use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::{Receiver, RecvTimeoutError};
use log::{debug, error};

use super::request::{Answer, FrameSelector, Job, Rejection, Reply};
use super::stats::Counters;
use super::{Shared, TICK};

/// Runs until every sender of `queue` is gone and the queue is empty, so
/// that prompts accepted before a shutdown are still answered.
pub(crate) fn run(shared: &Shared, queue: &Receiver<Job>) {
    loop {
        Counters::mark_alive(&shared.counters.decoder_alive_ms, shared.started);
        match queue.recv_timeout(TICK) {
            Ok(job) => {
                let result = answer(shared, &job);
                if let Ok(answer) = &result {
                    shared.answers.put(answer.clone());
                }
                // A caller that went away no longer wants its reply.
                let _ = job.reply.send(Reply { tag: job.tag, result });
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}

fn answer(shared: &Shared, job: &Job) -> Result<Arc<Answer>, Rejection> {
    let embedded = match job.frame {
        FrameSelector::Latest => shared.cache.latest().ok_or_else(|| {
            let state = shared.status(0).camera;
            Rejection::NoFrame(format!("no frame embedded yet (camera {state:?})"))
        })?,
        FrameSelector::Id(id) => shared.cache.get(id).ok_or_else(|| {
            Rejection::NoFrame(format!("frame {id} is not kept; kept: {:?}", shared.cache.ids()))
        })?,
    };
    let frame = &embedded.frame;
    job.prompt
        .validate(embedded.embedding.geometry.original)
        .map_err(|e| Rejection::InvalidPrompt(e.to_string()))?;
    let start = Instant::now();
    let frame_age = start.saturating_duration_since(frame.captured);
    let low_res = shared
        .sam
        .decoder
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
