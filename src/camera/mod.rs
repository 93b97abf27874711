//! Frame sources: a V4L2 camera, image files, a synthetic pattern, each a
//! [`crate::pipeline::FrameSource`], so that the pipeline and the tests see one shape.

mod files;
mod pace;
mod pattern;
mod v4l;

pub use files::{FileSettings, FileSource};
pub use pattern::{pattern, PatternSettings, PatternSource};
pub use v4l::{Camera, CameraDevice, CameraSettings, PixelFormat, MAX_FAILED_FRAMES};
