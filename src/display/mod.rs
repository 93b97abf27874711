//! Rendering masks for people: overlays drawn through embedded-graphics, shown
//! on a Linux framebuffer or written to a PNG file.

mod canvas;
mod framebuffer;
mod overlay;
mod screen;
mod snapshot;

pub use canvas::Canvas;
pub use framebuffer::{pack, Channel, Framebuffer, FramebufferSettings, PixelLayout};
pub use overlay::{Overlay, MASK_ALPHA, MASK_COLOR};
pub use screen::Screen;
pub use snapshot::{PngSnapshot, SnapshotSettings};
