//! Counters and recent averages shared by the pipeline's threads.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::capture::CameraState;
use crate::model::EncoderState;
use super::Shared;

/// Encoder runs averaged for fps and latency.
const WINDOW: usize = 8;

/// Written by the workers, read by [`Shared::status`].
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub frames_superseded: AtomicU32,
    pub capture_errors: AtomicU32,
    pub busy_rejections: AtomicU32,
    pub encoder_errors: AtomicU32,
    pub camera: AtomicU8,
    /// Milliseconds since start of the newest captured frame, 0 before the first.
    pub last_frame_ms: AtomicU64,
    /// Milliseconds between the last two captured frames: a slow source
    /// (one image every few seconds) is not stalled just because it is slow.
    pub frame_interval_ms: AtomicU64,
    /// Milliseconds since start when the encoder and the decoder last showed life.
    pub encoder_alive_ms: AtomicU64,
    pub decoder_alive_ms: AtomicU64,
    encodes: Mutex<VecDeque<(Instant, Duration)>>,
}

impl Counters {
    pub fn record_encode(&self, took: Duration) {
        let mut encodes = self.encodes.lock().unwrap_or_else(PoisonError::into_inner);
        if encodes.len() == WINDOW {
            encodes.pop_front();
        }
        encodes.push_back((Instant::now(), took));
    }

    /// Frames embedded per second and mean encoder time over the last runs.
    fn encoder_rates(&self) -> (f32, f32) {
        let encodes = self.encodes.lock().unwrap_or_else(PoisonError::into_inner);
        let mean_ms = if encodes.is_empty() {
            0.0
        } else {
            encodes.iter().map(|(_, d)| d.as_secs_f32() * 1e3).sum::<f32>() / encodes.len() as f32
        };
        let fps = match (encodes.front(), encodes.back()) {
            (Some(first), Some(last)) if encodes.len() >= 2 => {
                let span = last.0.duration_since(first.0).as_secs_f32();
                if span > 0.0 { (encodes.len() - 1) as f32 / span } else { 0.0 }
            }
            _ => 0.0,
        };
        (fps, mean_ms)
    }

    pub fn mark_alive(which: &AtomicU64, started: Instant) {
        which.store(millis_since(started), Ordering::Relaxed);
    }

    pub fn alive_within(&self, started: Instant, within: Duration) -> bool {
        let now = millis_since(started);
        let within = within.as_millis() as u64;
        [&self.encoder_alive_ms, &self.decoder_alive_ms]
            .iter()
            .all(|alive| now.saturating_sub(alive.load(Ordering::Relaxed)) <= within)
    }
}

pub(crate) fn millis_since(started: Instant) -> u64 {
    started.elapsed().as_millis() as u64
}

/// A snapshot of the pipeline's health.
#[derive(Debug, Clone, PartialEq)]
pub struct PipelineStatus {
    pub uptime: Duration,
    /// Frames embedded per second, recent average.
    pub fps: f32,
    /// Image encoder time, recent average, ms.
    pub encoder_ms: f32,
    pub camera: CameraState,
    /// Where the frames' embeddings come from.
    pub encoder: EncoderState,
    pub queue_depth: usize,
    pub queue_capacity: usize,
    pub frames_superseded: u32,
    pub capture_errors: u32,
    pub busy_rejections: u32,
    pub encoder_errors: u32,
}

impl Shared {
    pub(crate) fn status(&self, queue_depth: usize) -> PipelineStatus {
        let c = &self.counters;
        let (fps, encoder_ms) = c.encoder_rates();
        let mut camera = CameraState::from_u8(c.camera.load(Ordering::Relaxed));
        let since_frame = millis_since(self.started).saturating_sub(c.last_frame_ms.load(Ordering::Relaxed));
        let stall_after = (self.stall_after.as_millis() as u64).max(3 * c.frame_interval_ms.load(Ordering::Relaxed));
        if camera == CameraState::Streaming && since_frame > stall_after {
            camera = CameraState::Stalled;
        }
        PipelineStatus {
            uptime: self.started.elapsed(),
            fps,
            encoder_ms,
            camera,
            encoder: self.sam.encoder_state(),
            queue_depth,
            queue_capacity: self.queue_capacity,
            frames_superseded: c.frames_superseded.load(Ordering::Relaxed),
            capture_errors: c.capture_errors.load(Ordering::Relaxed),
            busy_rejections: c.busy_rejections.load(Ordering::Relaxed),
            encoder_errors: c.encoder_errors.load(Ordering::Relaxed),
        }
    }
}
