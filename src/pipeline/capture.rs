//! The capture thread: pulls frames from the source into the encoder's slot,
//! reopening a failed source with backoff so that a lost camera never stops
//! the daemon nor spins a core.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use log::{info, warn};

use super::frame::Frame;
use super::stats::millis_since;
use super::{Shared, TICK};
use super::source::{CaptureError, FrameSource};

/// Where the frame source stands, as reported in Status messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum CameraState {
    /// Not opened yet.
    Starting = 0,
    /// Frames are arriving.
    Streaming = 1,
    /// Open, but no frame for longer than `CaptureSettings::stall_after`.
    Stalled = 2,
    /// Down; reopening with backoff.
    Disconnected = 3,
    /// A finite source delivered its last frame; the last embedding stays in use.
    Ended = 4,
}

impl CameraState {
    pub(crate) fn from_u8(value: u8) -> CameraState {
        match value {
            1 => CameraState::Streaming,
            2 => CameraState::Stalled,
            3 => CameraState::Disconnected,
            4 => CameraState::Ended,
            _ => CameraState::Starting,
        }
    }
}

/// Retry and health timing of the capture thread.
#[derive(Debug, Clone, PartialEq)]
pub struct CaptureSettings {
    /// First wait before reopening a failed source; doubles up to `backoff_max`.
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    /// A streaming source with no frame for this long (or three of its
    /// frame intervals, if longer) is reported stalled.
    pub stall_after: Duration,
    /// Consecutive lost frames after which the source is reopened.
    pub max_lost_frames: u32,
}

impl Default for CaptureSettings {
    fn default() -> Self {
        CaptureSettings {
            backoff_min: Duration::from_millis(500),
            backoff_max: Duration::from_secs(8),
            stall_after: Duration::from_secs(3),
            max_lost_frames: 30,
        }
    }
}

pub(crate) fn run(mut source: Box<dyn FrameSource>, shared: &Arc<Shared>, settings: &CaptureSettings) {
    let counters = &shared.counters;
    let set_state = |state: CameraState| counters.camera.store(state as u8, Ordering::Relaxed);
    let mut backoff = settings.backoff_min;
    let mut next_id = 1u32;
    let mut reported_down = false;
    while !shared.stop.load(Ordering::Relaxed) {
        if let Err(e) = source.open() {
            set_state(CameraState::Disconnected);
            // Log the first failure of an outage, not every retry.
            if !reported_down {
                warn!("frame source {}: {e}; retrying with backoff up to {:?}", source.describe(), settings.backoff_max);
                reported_down = true;
            }
            sleep_unless_stopped(shared, backoff);
            backoff = (backoff * 2).min(settings.backoff_max);
            continue;
        }
        info!("frame source {} open", source.describe());
        reported_down = false;
        let mut lost_in_a_row = 0;
        loop {
            if shared.stop.load(Ordering::Relaxed) {
                return;
            }
            match source.next_frame() {
                Ok(image) => {
                    backoff = settings.backoff_min;
                    lost_in_a_row = 0;
                    let frame = Frame { id: next_id, captured: Instant::now(), image: Arc::new(image) };
                    next_id = next_id.wrapping_add(1).max(1);
                    let now = millis_since(shared.started).max(1);
                    let previous = counters.last_frame_ms.swap(now, Ordering::Relaxed);
                    if previous > 0 {
                        counters.frame_interval_ms.store(now - previous, Ordering::Relaxed);
                    }
                    set_state(CameraState::Streaming);
                    if shared.frames.put(frame) {
                        counters.frames_superseded.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Err(CaptureError::Frame(e)) => {
                    counters.capture_errors.fetch_add(1, Ordering::Relaxed);
                    lost_in_a_row += 1;
                    warn!("frame source {}: frame lost: {e:#}", source.describe());
                    if lost_in_a_row >= settings.max_lost_frames {
                        warn!("frame source {}: {lost_in_a_row} frames lost in a row, reopening", source.describe());
                        set_state(CameraState::Disconnected);
                        break;
                    }
                }
                Err(CaptureError::Disconnected(e)) => {
                    counters.capture_errors.fetch_add(1, Ordering::Relaxed);
                    set_state(CameraState::Disconnected);
                    warn!("frame source {}: {e:#}; reopening", source.describe());
                    reported_down = true;
                    sleep_unless_stopped(shared, backoff);
                    backoff = (backoff * 2).min(settings.backoff_max);
                    break;
                }
                Err(CaptureError::Ended) => {
                    info!("frame source {}: no frames left; prompts use the last frame", source.describe());
                    set_state(CameraState::Ended);
                    return;
                }
            }
        }
    }
}

/// Sleeps `duration` in ticks, returning early on shutdown.
fn sleep_unless_stopped(shared: &Shared, duration: Duration) {
    let until = Instant::now() + duration;
    while !shared.stop.load(Ordering::Relaxed) {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        std::thread::sleep(left.min(TICK));
    }
}
