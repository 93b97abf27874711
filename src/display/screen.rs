//! Where finished pictures go: a framebuffer, a PNG file.

use anyhow::Result;
use image::RgbImage;

use crate::model::Size;

/// A display that shows whole RGB pictures of its own size.
pub trait Screen: Send {
    /// The picture size [`Screen::show`] expects.
    fn size(&self) -> Size;

    /// Shows `picture`, which has [`Screen::size`].
    ///
    /// # Errors
    /// The device or file could not be written.
    fn show(&mut self, picture: &RgbImage) -> Result<()>;
}
