//! A synthetic camera: shapes moving over a gradient, for boards and demos
//! without a camera or images.

use image::{Rgb, RgbImage};
use serde::Deserialize;

use super::pace::{check_fps, Pace};
use crate::pipeline::{CaptureError, FrameSource};

/// `[source]` settings of `kind = "pattern"`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatternSettings {
    #[serde(default = "default_width")]
    pub width: u32,
    #[serde(default = "default_height")]
    pub height: u32,
    #[serde(default = "default_fps")]
    pub fps: f32,
}

fn default_width() -> u32 {
    640
}

fn default_height() -> u32 {
    480
}

fn default_fps() -> f32 {
    1.0
}

impl PatternSettings {
    /// # Errors
    /// A key holds an unusable value; the message names it.
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            (16..=4096).contains(&self.width) && (16..=4096).contains(&self.height),
            "source.width and source.height must be 16-4096, got {}x{}",
            self.width,
            self.height
        );
        check_fps(self.fps)
    }
}

/// Frame `n` shows a disc and a square at positions that depend only on `n`.
#[derive(Debug)]
pub struct PatternSource {
    settings: PatternSettings,
    n: u32,
    pace: Pace,
}

impl PatternSource {
    pub fn new(settings: PatternSettings) -> PatternSource {
        let pace = Pace::new(settings.fps);
        PatternSource { settings, n: 0, pace }
    }
}

impl FrameSource for PatternSource {
    fn open(&mut self) -> Result<(), CaptureError> {
        self.pace.restart();
        Ok(())
    }

    fn next_frame(&mut self) -> Result<RgbImage, CaptureError> {
        self.pace.wait();
        let frame = pattern(self.settings.width, self.settings.height, self.n);
        self.n = self.n.wrapping_add(1);
        Ok(frame)
    }

    fn describe(&self) -> String {
        format!("pattern {}x{}", self.settings.width, self.settings.height)
    }
}

/// The picture of frame `n`.
pub fn pattern(width: u32, height: u32, n: u32) -> RgbImage {
    let (w, h) = (width as f32, height as f32);
    let phase = n as f32 * 0.2;
    let disc = (w * (0.3 + 0.15 * phase.sin()), h * 0.5, h.min(w) * 0.18);
    let square = (w * 0.7, h * (0.5 + 0.15 * phase.cos()), h.min(w) * 0.15);
    RgbImage::from_fn(width, height, |x, y| {
        let (fx, fy) = (x as f32, y as f32);
        if (fx - disc.0).powi(2) + (fy - disc.1).powi(2) <= disc.2 * disc.2 {
            Rgb([220, 60, 40])
        } else if (fx - square.0).abs() <= square.2 && (fy - square.1).abs() <= square.2 {
            Rgb([40, 90, 220])
        } else {
            let g = (60.0 + 120.0 * fy / h) as u8;
            Rgb([g, g, (40.0 + 60.0 * fx / w) as u8])
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_deterministic_and_move() {
        assert_eq!(pattern(64, 48, 3), pattern(64, 48, 3));
        assert_ne!(pattern(64, 48, 3), pattern(64, 48, 4));
    }

    #[test]
    fn the_source_delivers_the_configured_size() {
        let mut source = PatternSource::new(PatternSettings { width: 32, height: 24, fps: 100.0 });
        source.open().unwrap();
        assert_eq!(source.next_frame().unwrap().dimensions(), (32, 24));
    }

    #[test]
    fn bad_sizes_name_the_keys() {
        let err = PatternSettings { width: 0, height: 24, fps: 1.0 }.validate().unwrap_err();
        assert!(err.to_string().contains("source.width"));
    }
}
