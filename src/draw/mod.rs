//! Drawing shared by the display, touch input, everything mode, `maskd
//! segment` and the MQTT snapshots: the RGB canvas embedded-graphics renders
//! into, the mask overlay and its caption, and how a picture is fitted onto
//! a screen and where it sits there.

mod canvas;
mod caption;
mod letterbox;
mod overlay;
mod placement;

pub use canvas::Canvas;
pub use caption::Caption;
pub use letterbox::Letterbox;
pub use overlay::{Overlay, MASK_ALPHA, MASK_COLOR};
pub use placement::Placement;
