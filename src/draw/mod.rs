//! Drawing shared by the display, touch input and everything mode: the RGB
//! canvas embedded-graphics renders into, and how a picture is fitted onto a
//! screen and where it sits there.

mod canvas;
mod letterbox;
mod placement;

pub use canvas::Canvas;
pub use letterbox::Letterbox;
pub use placement::Placement;
