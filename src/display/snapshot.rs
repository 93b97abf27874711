//! A PNG file as a [`Screen`], for boards without a display: every picture
//! replaces the file atomically, so a reader (a web server, `feh --reload`)
//! never sees half of one.

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Context, Result};
use image::codecs::png::PngEncoder;
use image::{ExtendedColorType, ImageEncoder, RgbImage};
use serde::Deserialize;

use super::Screen;
use crate::model::Size;

const MAX_SIDE: u32 = 8192;

/// The `[display]` settings of a PNG snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotSettings {
    pub path: PathBuf,
    #[serde(default = "default_width")]
    pub width: u32,
    #[serde(default = "default_height")]
    pub height: u32,
}

fn default_width() -> u32 {
    640
}

fn default_height() -> u32 {
    480
}

impl SnapshotSettings {
    /// Checks the ranges serde cannot.
    ///
    /// # Errors
    /// Names the first bad key and its value.
    pub fn validate(&self) -> Result<()> {
        for (key, value) in [("width", self.width), ("height", self.height)] {
            if !(1..=MAX_SIDE).contains(&value) {
                bail!("display.{key} must be 1..={MAX_SIDE}, got {value}");
            }
        }
        if self.path.file_name().is_none() {
            bail!("display.path must name a file, got {:?}", self.path);
        }
        Ok(())
    }
}

/// Writes each picture to a PNG file.
pub struct PngSnapshot {
    path: PathBuf,
    size: Size,
}

impl PngSnapshot {
    /// A snapshot screen for `settings` (already validated); nothing is written yet.
    ///
    /// # Errors
    /// The file's folder does not exist.
    pub fn new(settings: &SnapshotSettings) -> Result<PngSnapshot> {
        let path = settings.path.clone();
        path.file_name().context("display.path must name a file")?;
        let folder = folder_of(&path);
        ensure!(
            folder.is_dir(),
            "display.path {}: folder {} does not exist",
            path.display(),
            folder.display()
        );
        Ok(PngSnapshot {
            path,
            size: Size::new(settings.width, settings.height),
        })
    }
}

impl Screen for PngSnapshot {
    fn size(&self) -> Size {
        self.size
    }

    fn show(&mut self, picture: &RgbImage) -> Result<()> {
        ensure!(
            picture.dimensions() == (self.size.width, self.size.height),
            "a {}x{} picture for the {}x{} snapshot {}",
            picture.width(),
            picture.height(),
            self.size.width,
            self.size.height,
            self.path.display()
        );
        replace_file(&self.path, |temporary| write_png(temporary, picture))
    }
}

fn folder_of(path: &Path) -> &Path {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    }
}

/// Writes `path` through a hidden temporary file beside it, renamed over
/// it, so that a reader never sees half a file.
///
/// # Errors
/// `path` names no file, or writing or renaming fails; the message names the file.
pub fn replace_file(path: &Path, write: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let name = path.file_name().with_context(|| format!("{} names no file", path.display()))?;
    // Same folder, so that the rename stays on one file system and is atomic.
    let mut temporary_name = std::ffi::OsString::from(".");
    temporary_name.push(name);
    temporary_name.push(".tmp");
    let temporary = folder_of(path).join(temporary_name);
    write(&temporary).with_context(|| format!("writing {}", temporary.display()))?;
    std::fs::rename(&temporary, path)
        .with_context(|| format!("renaming {} to {}", temporary.display(), path.display()))
}

/// Writes `picture` as an RGB PNG file.
///
/// # Errors
/// The file cannot be created or written.
pub fn write_png(path: &Path, picture: &RgbImage) -> Result<()> {
    let mut writer = BufWriter::new(File::create(path)?);
    PngEncoder::new(&mut writer).write_image(
        picture.as_raw(),
        picture.width(),
        picture.height(),
        ExtendedColorType::Rgb8,
    )?;
    writer.into_inner().map_err(|e| e.into_error())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use image::Rgb;

    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let folder =
            std::env::temp_dir().join(format!("maskd-snapshot-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&folder).expect("temp folder");
        folder
    }

    fn settings(path: PathBuf) -> SnapshotSettings {
        SnapshotSettings {
            path,
            width: 3,
            height: 2,
        }
    }

    #[test]
    fn pictures_replace_the_file_and_read_back() {
        let folder = scratch("replace");
        let path = folder.join("screen.png");
        let mut screen = PngSnapshot::new(&settings(path.clone())).expect("folder exists");
        assert_eq!(screen.size(), Size::new(3, 2));
        for shade in [10, 200] {
            let mut picture = RgbImage::from_pixel(3, 2, Rgb([shade, 0, 0]));
            picture.put_pixel(2, 1, Rgb([1, 2, 3]));
            screen.show(&picture).expect("written");
            let read = image::open(&path).expect("a PNG").to_rgb8();
            assert_eq!(read, picture);
        }
        let left: Vec<_> = std::fs::read_dir(&folder).expect("listed").collect();
        assert_eq!(left.len(), 1, "only the picture remains: {left:?}");
        std::fs::remove_dir_all(folder).expect("cleaned");
    }

    #[test]
    fn a_picture_of_the_wrong_size_is_refused() {
        let folder = scratch("size");
        let mut screen = PngSnapshot::new(&settings(folder.join("s.png"))).expect("folder exists");
        let error = screen.show(&RgbImage::new(4, 2)).expect_err("wrong size");
        assert!(
            error.to_string().contains("4x2 picture for the 3x2"),
            "{error}"
        );
        std::fs::remove_dir_all(folder).expect("cleaned");
    }

    #[test]
    fn a_missing_folder_is_named() {
        let error = PngSnapshot::new(&settings("/nonexistent-maskd/s.png".into()))
            .err()
            .expect("no folder")
            .to_string();
        assert!(
            error.contains("folder /nonexistent-maskd does not exist"),
            "{error}"
        );
    }

    #[test]
    fn settings_parse_and_validate() {
        let parsed: SnapshotSettings =
            toml::from_str("path = \"/run/maskd/screen.png\"").expect("parses");
        assert_eq!((parsed.width, parsed.height), (640, 480));
        assert!(toml::from_str::<SnapshotSettings>("path = \"a.png\"\ndepth = 3").is_err());
        let zero = SnapshotSettings { width: 0, ..parsed };
        assert_eq!(
            zero.validate().expect_err("zero").to_string(),
            "display.width must be 1..=8192, got 0"
        );
    }
}
