//! The encoder worker: embeds the newest frame, skipping any that were
//! replaced while it was busy.

use std::sync::atomic::Ordering;
use std::time::Instant;

use log::error;

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
        let start = Instant::now();
        match shared.sam.embed(&frame.image) {
            Ok(embedding) => {
                let encode = start.elapsed();
                counters.record_encode(encode);
                if !shared.cache.push(EmbeddedFrame { frame, embedding, encode }) {
                    counters.frames_superseded.fetch_add(1, Ordering::Relaxed);
                }
            }
            Err(e) => {
                counters.encoder_errors.fetch_add(1, Ordering::Relaxed);
                error!("encoding frame {}: {e:#}", frame.id);
            }
        }
    }
}
