//! Image files as a camera: for demos, tests and boards without a camera.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context};
use image::RgbImage;
use serde::Deserialize;

use super::pace::{check_fps, Pace};
use crate::picture;
use crate::pipeline::{CaptureError, FrameSource};

/// `[source]` settings of `kind = "files"`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSettings {
    /// Image files and folders of them (PNG, JPEG, BMP; a folder's files in name order).
    pub paths: Vec<PathBuf>,
    /// Start again after the last file (true), or keep the last frame (false).
    #[serde(default = "default_repeat", rename = "loop")]
    pub repeat: bool,
    /// Frames delivered per second.
    #[serde(default = "default_fps")]
    pub fps: f32,
}

fn default_repeat() -> bool {
    true
}

fn default_fps() -> f32 {
    1.0
}

impl FileSettings {
    /// # Errors
    /// A key holds an unusable value; the message names it.
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(!self.paths.is_empty(), "source.paths must list at least one file or folder");
        check_fps(self.fps)
    }
}

/// Delivers the configured files in order at a fixed rate.
#[derive(Debug)]
pub struct FileSource {
    settings: FileSettings,
    files: Vec<PathBuf>,
    next: usize,
    pace: Pace,
}

impl FileSource {
    pub fn new(settings: FileSettings) -> FileSource {
        let pace = Pace::new(settings.fps);
        FileSource { settings, files: Vec::new(), next: 0, pace }
    }

    /// The image files of all configured paths; none is a source that is down.
    fn list(&self) -> Result<Vec<PathBuf>, CaptureError> {
        let mut files = Vec::new();
        for path in &self.settings.paths {
            files.extend(image_files(path).map_err(CaptureError::Disconnected)?);
        }
        if files.is_empty() {
            return Err(CaptureError::Disconnected(anyhow!("no image files in {:?}", self.settings.paths)));
        }
        Ok(files)
    }

}

impl FrameSource for FileSource {
    /// Lists the files; an absent folder, or one with no image yet, is a
    /// source that is down (it may appear later).
    fn open(&mut self) -> Result<(), CaptureError> {
        self.files = self.list()?;
        self.next = 0;
        self.pace.restart();
        Ok(())
    }

    fn next_frame(&mut self) -> Result<RgbImage, CaptureError> {
        if self.next == self.files.len() {
            if !self.settings.repeat {
                return Err(CaptureError::Ended);
            }
            // List again, so that files added to a folder join the next pass.
            self.files = self.list()?;
            self.next = 0;
        }
        self.pace.wait();
        let path = &self.files[self.next];
        self.next += 1;
        if !path.exists() {
            return Err(CaptureError::Disconnected(anyhow!("{} was removed", path.display())));
        }
        picture::read_rgb(path).map_err(CaptureError::Frame)
    }

    fn describe(&self) -> String {
        let paths: Vec<_> = self.settings.paths.iter().map(|p| p.display().to_string()).collect();
        format!("files {}", paths.join(", "))
    }
}

/// The image files at `path`: itself, or a folder's, sorted by name.
fn image_files(path: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let meta = std::fs::metadata(path).with_context(|| format!("{}", path.display()))?;
    if !meta.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut files = Vec::new();
    for entry in std::fs::read_dir(path).with_context(|| format!("listing {}", path.display()))? {
        let file = entry?.path();
        let is_image = file
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| matches!(e.to_ascii_lowercase().as_str(), "png" | "jpg" | "jpeg" | "bmp"));
        if is_image && file.is_file() {
            files.push(file);
        }
    }
    files.sort();
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(paths: Vec<PathBuf>, repeat: bool) -> FileSettings {
        FileSettings { paths, repeat, fps: 100.0 }
    }

    fn folder(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("maskd-files-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn write_image(path: &Path, shade: u8) {
        RgbImage::from_pixel(4, 3, image::Rgb([shade; 3])).save(path).unwrap();
    }

    #[test]
    fn a_folder_plays_in_name_order_then_loops() {
        let dir = folder("order");
        write_image(&dir.join("b.png"), 2);
        write_image(&dir.join("a.png"), 1);
        std::fs::write(dir.join("notes.txt"), "not an image").unwrap();
        let mut source = FileSource::new(settings(vec![dir.clone()], true));
        source.open().unwrap();
        let shades: Vec<u8> = (0..3).map(|_| source.next_frame().unwrap().get_pixel(0, 0)[0]).collect();
        assert_eq!(shades, [1, 2, 1]);
        write_image(&dir.join("c.png"), 3);
        let shades: Vec<u8> = (0..4).map(|_| source.next_frame().unwrap().get_pixel(0, 0)[0]).collect();
        assert_eq!(shades, [2, 1, 2, 3], "a file added joins the next pass");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn without_loop_the_source_ends() {
        let dir = folder("once");
        write_image(&dir.join("a.png"), 7);
        let mut source = FileSource::new(settings(vec![dir.join("a.png")], false));
        source.open().unwrap();
        assert!(source.next_frame().is_ok());
        assert!(matches!(source.next_frame(), Err(CaptureError::Ended)));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn an_empty_or_missing_folder_is_a_source_that_is_down() {
        let dir = folder("empty");
        let mut source = FileSource::new(settings(vec![dir.clone()], true));
        assert!(matches!(source.open(), Err(CaptureError::Disconnected(_))));
        let mut missing = FileSource::new(settings(vec![dir.join("nope")], true));
        let err = missing.open().unwrap_err().to_string();
        assert!(err.contains("nope"), "{err}");
        write_image(&dir.join("late.png"), 3);
        assert!(source.open().is_ok());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_corrupt_file_loses_one_frame() {
        let dir = folder("corrupt");
        std::fs::write(dir.join("a.png"), b"not a png").unwrap();
        write_image(&dir.join("b.png"), 9);
        let mut source = FileSource::new(settings(vec![dir.clone()], false));
        source.open().unwrap();
        assert!(matches!(source.next_frame(), Err(CaptureError::Frame(_))));
        assert_eq!(source.next_frame().unwrap().get_pixel(0, 0)[0], 9);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn jpeg_frames_are_decoded_as_the_reference_decodes_them() {
        let dir = folder("jpeg");
        let golden = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/jpeg");
        std::fs::copy(golden.join("coffee_422.jpg"), dir.join("a.JPG")).unwrap();
        let mut source = FileSource::new(settings(vec![dir.clone()], false));
        source.open().unwrap();
        let pillow = image::open(golden.join("coffee_422.png")).unwrap().to_rgb8();
        assert_eq!(source.next_frame().unwrap(), pillow);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn bad_settings_name_the_key() {
        let err = FileSettings { paths: vec![], repeat: true, fps: 1.0 }.validate().unwrap_err();
        assert!(err.to_string().contains("source.paths"));
        let err = FileSettings { paths: vec!["x".into()], repeat: true, fps: 0.0 }.validate().unwrap_err();
        assert!(err.to_string().contains("source.fps"));
    }
}
