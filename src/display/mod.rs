//! Rendering masks for people: overlays drawn through embedded-graphics.

mod canvas;
mod caption;
mod letterbox;
mod live;
mod overlay;
mod screen;
mod snapshot;

pub use canvas::Canvas;
pub use caption::Caption;
pub use letterbox::Letterbox;
pub use live::{compose, run_live, LiveSettings, Shown};
pub use overlay::{Overlay, MASK_ALPHA, MASK_COLOR};
pub use screen::Screen;
pub use snapshot::{PngSnapshot, SnapshotSettings};
