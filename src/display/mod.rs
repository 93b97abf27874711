//! Rendering masks for people: overlays drawn through embedded-graphics.

mod canvas;
mod overlay;
mod screen;

pub use canvas::Canvas;
pub use overlay::{Overlay, MASK_ALPHA, MASK_COLOR};
pub use screen::Screen;
