//! A captured camera frame.

use std::sync::Arc;
use std::time::Instant;

use image::RgbImage;

/// One picture from the frame source, numbered in capture order from 1.
#[derive(Debug, Clone)]
pub struct Frame {
    pub id: u32,
    pub captured: Instant,
    pub image: Arc<RgbImage>,
}
