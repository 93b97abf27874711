//! The pipeline's input seam: whatever delivers frames (a camera, files, a
//! pattern) implements [`FrameSource`].

use image::RgbImage;
use thiserror::Error;

/// Something that produces camera frames, one at a time, blocking.
pub trait FrameSource: Send {
    /// Opens the source, or reopens it after [`CaptureError::Disconnected`].
    /// The capture loop retries with backoff while this fails.
    ///
    /// # Errors
    /// The device is absent or busy, or the files are unreadable.
    fn open(&mut self) -> Result<(), CaptureError>;

    /// Blocks until the next frame and returns it as RGB.
    ///
    /// # Errors
    /// [`CaptureError::Frame`] loses this frame only; [`CaptureError::Disconnected`]
    /// needs [`FrameSource::open`] again; [`CaptureError::Ended`] means no frame will ever come.
    fn next_frame(&mut self) -> Result<RgbImage, CaptureError>;

    /// What the source is, for logs: a device path, a folder.
    fn describe(&self) -> String;
}

/// Why a source gave no frame.
#[derive(Debug, Error)]
pub enum CaptureError {
    /// One frame was lost (a corrupt JPEG, a short read); the next may be fine.
    #[error("frame lost: {0:#}")]
    Frame(anyhow::Error),
    /// The device went away or failed; reopen it.
    #[error("source down: {0:#}")]
    Disconnected(anyhow::Error),
    /// A finite source has no frames left.
    #[error("no frames left")]
    Ended,
}
