//! Prompt input on the device itself: a touchscreen for kiosks, each tap a
//! point prompt on the picture shown.

mod evdev;
mod taps;

pub use self::evdev::{AxisRange, Calibration, EvdevTouch, Protocol, TapTracker, TouchSettings};
pub use taps::{run_taps, tap_prompt};

use thiserror::Error;

/// A tap, in display pixels (x right, y down, origin top-left).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Touch {
    pub x: f32,
    pub y: f32,
}

/// Something that reports taps, blocking.
pub trait TouchSource: Send {
    /// Blocks until the next completed tap.
    ///
    /// # Errors
    /// The device went away or failed.
    fn next_touch(&mut self) -> Result<Touch, TouchError>;
}

#[derive(Debug, Error)]
pub enum TouchError {
    #[error("touch device: {0:#}")]
    Device(anyhow::Error),
}
