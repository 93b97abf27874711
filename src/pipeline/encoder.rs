//! The encoder worker: embeds the newest frame, skipping any that were
//! replaced while it was busy.

use std::sync::atomic::Ordering;
use std::time::Instant;

use log::error;

use crate::model::release_freed_memory;

use super::cache::EmbeddedFrame;
use super::stats::Counters;
use super::{Shared, TICK};

pub(crate) fn run(shared: &Shared) {
    let counters = &shared.counters;
    while !shared.stop.load(Ordering::Relaxed) {
        Counters::mark_alive(&counters.encoder_alive_ms, shared.started);
        let Some(frame) = shared.frames.take(TICK) else {
            continue;
        };
        // What the last frame's work freed goes back to the system before
        // this one's: freed blocks of the heap stay resident otherwise, and
        // the frame's new tensors come on top of them.
        release_freed_memory();
        let start = Instant::now();
        let id = frame.id;
        let embedding = match shared.sam.encode(&frame.image) {
            Ok(embedding) => embedding,
            Err(e) => {
                counters.encoder_errors.fetch_add(1, Ordering::Relaxed);
                error!("encoding frame {id}: {e:#}");
                continue;
            }
        };
        let encode = start.elapsed();
        counters.record_encode(encode);
        // Published first, so that the older frames the cache lets go of
        // (and the previous frame's per-frame tensors) are freed before the
        // new frame's tensors are made.
        let embedded = EmbeddedFrame { frame, embedding: embedding.clone(), encode };
        match shared.sam.publish_then_prepare(&embedding, || shared.cache.push(embedded)) {
            Ok(true) => {}
            Ok(false) => {
                counters.frames_superseded.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                counters.encoder_errors.fetch_add(1, Ordering::Relaxed);
                error!("the mask decoder's per-frame part of frame {id} (its prompts compute it themselves): {e:#}");
            }
        }
    }
}
