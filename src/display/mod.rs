//! Rendering masks for people: overlays drawn through embedded-graphics, shown
//! on a Linux framebuffer or written to a PNG file.

mod framebuffer;
mod live;
mod screen;
mod snapshot;

pub use framebuffer::{pack, Channel, Framebuffer, FramebufferSettings, PixelLayout};
pub use live::{compose, run_live, LiveSettings, Shown};
pub use screen::Screen;
pub use snapshot::{replace_file, write_png, PngSnapshot, SnapshotSettings};
