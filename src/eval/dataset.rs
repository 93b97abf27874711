//! A benchmark folder in the RITM layout: `images/` and `masks/`, paired by
//! file stem.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Context, Result};

use super::format::{palette_indices, Format};

/// File extensions read as images or masks (any case).
pub const IMAGE_EXTENSIONS: [&str; 4] = ["jpg", "jpeg", "png", "bmp"];

/// One image and its ground-truth mask.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    /// The shared file stem.
    pub name: String,
    pub image: PathBuf,
    pub mask: PathBuf,
}

/// A benchmark: its samples, sorted by name, and their mask encoding.
#[derive(Debug, Clone)]
pub struct Dataset {
    pub root: PathBuf,
    /// The folder name, used to name reports.
    pub name: String,
    pub format: Format,
    pub samples: Vec<Sample>,
}

impl Dataset {
    /// Lists `root/images` and `root/masks`; `format` `None` picks it with
    /// [`detect_format`]. Files without an image extension (checksums,
    /// READMEs) and hidden files are skipped.
    ///
    /// # Errors
    /// A folder is missing or unreadable, a stem appears twice in one folder,
    /// an image has no mask or a mask no image, or the format cannot be told.
    pub fn open(root: &Path, format: Option<Format>) -> Result<Dataset> {
        let images = files_by_stem(&root.join("images"))?;
        let masks = files_by_stem(&root.join("masks"))?;
        if let Some((stem, path)) = images.iter().find(|(stem, _)| !masks.contains_key(*stem)) {
            bail!("image {} has no mask {stem}.* in {}", path.display(), root.join("masks").display());
        }
        if let Some((stem, path)) = masks.iter().find(|(stem, _)| !images.contains_key(*stem)) {
            bail!("mask {} has no image {stem}.* in {}", path.display(), root.join("images").display());
        }
        ensure!(!images.is_empty(), "no images in {}", root.join("images").display());
        let samples: Vec<Sample> = images
            .into_iter()
            .map(|(name, image)| {
                let mask = masks[&name].clone();
                Sample { name, image, mask }
            })
            .collect();
        let format = match format {
            Some(format) => format,
            None => detect_format(root, &samples[0].mask)?,
        };
        let name = root.file_name().unwrap_or(root.as_os_str()).to_string_lossy().into_owned();
        Ok(Dataset { root: root.to_path_buf(), name, format, samples })
    }
}

/// `--format auto`: the folder name first (see [`Format::from_folder_name`]),
/// else a palette PNG mask means DAVIS; anything else needs `--format`, since
/// grey masks read the same way in several formats.
///
/// # Errors
/// Neither rule decides, or the first mask is unreadable.
pub fn detect_format(root: &Path, first_mask: &Path) -> Result<Format> {
    let name = root.file_name().map(OsStr::to_string_lossy).unwrap_or_default();
    if let Some(format) = Format::from_folder_name(&name) {
        return Ok(format);
    }
    let bytes = std::fs::read(first_mask).with_context(|| format!("reading mask {}", first_mask.display()))?;
    if palette_indices(&bytes).with_context(|| format!("mask {}", first_mask.display()))?.is_some() {
        return Ok(Format::Davis);
    }
    bail!(
        "cannot tell the format of {}: its name names none of GrabCut, Berkeley, DAVIS, COCO_MVal and its \
         masks are not palette PNGs; pass --format",
        root.display()
    )
}

fn files_by_stem(dir: &Path) -> Result<BTreeMap<String, PathBuf>> {
    let entries = std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))?;
    let mut files = BTreeMap::new();
    for entry in entries {
        let path = entry.with_context(|| format!("listing {}", dir.display()))?.path();
        let is_image = path
            .extension()
            .and_then(OsStr::to_str)
            .is_some_and(|ext| IMAGE_EXTENSIONS.iter().any(|known| known.eq_ignore_ascii_case(ext)));
        let Some(stem) = path.file_stem().map(|s| s.to_string_lossy().into_owned()) else { continue };
        if !is_image || stem.starts_with('.') || !path.is_file() {
            continue;
        }
        if let Some(other) = files.insert(stem.clone(), path.clone()) {
            bail!("{} and {} share the name {stem:?}", other.display(), path.display());
        }
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A scratch dataset folder with empty files at the given relative paths.
    fn folder(name: &str, files: &[&str]) -> PathBuf {
        let root = std::env::temp_dir().join(format!("maskd-dataset-{}-{name}", std::process::id())).join(name);
        let _ = std::fs::remove_dir_all(&root);
        for dir in ["images", "masks"] {
            std::fs::create_dir_all(root.join(dir)).unwrap();
        }
        for file in files {
            std::fs::write(root.join(file), b"").unwrap();
        }
        root
    }

    #[test]
    fn pairs_by_stem_with_spaces_and_any_extension_case() {
        let root = folder(
            "COCO_MVal",
            &[
                "images/a cat.JPG",
                "masks/a cat.png",
                "images/b.bmp",
                "masks/b.BMP",
                "masks/SHA256SUMS",
                "images/.hidden.png",
            ],
        );
        let d = Dataset::open(&root, None).unwrap();
        assert_eq!(d.format, Format::CocoMval);
        assert_eq!(d.name, "COCO_MVal");
        let names: Vec<&str> = d.samples.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["a cat", "b"]);
        assert_eq!(d.samples[0].image, root.join("images/a cat.JPG"));
        assert_eq!(d.samples[0].mask, root.join("masks/a cat.png"));
    }

    #[test]
    fn unpaired_files_are_named() {
        let root = folder("GrabCut", &["images/x.jpg", "masks/x.bmp", "images/lonely one.jpg"]);
        let err = format!("{:#}", Dataset::open(&root, None).unwrap_err());
        assert!(err.contains("lonely one.jpg") && err.contains("has no mask"), "{err}");
        let root = folder("Berkeley", &["images/x.jpg", "masks/x.png", "masks/y.png"]);
        let err = format!("{:#}", Dataset::open(&root, None).unwrap_err());
        assert!(err.contains("y.png") && err.contains("has no image"), "{err}");
        let root = folder("davis", &["images/x.jpg", "images/x.png", "masks/x.png"]);
        let err = format!("{:#}", Dataset::open(&root, None).unwrap_err());
        assert!(err.contains("share the name \"x\""), "{err}");
    }

    #[test]
    fn missing_folders_and_unknown_formats_are_errors() {
        let err = format!("{:#}", Dataset::open(Path::new("/nonexistent/maskd"), None).unwrap_err());
        assert!(err.contains("listing /nonexistent/maskd/images"), "{err}");
        let root = folder("mystery", &["images/x.jpg", "masks/x.png"]);
        let grey = image::GrayImage::from_raw(2, 1, vec![0, 255]).unwrap();
        grey.save(root.join("masks/x.png")).unwrap();
        let err = format!("{:#}", Dataset::open(&root, None).unwrap_err());
        assert!(err.contains("cannot tell the format") && err.contains("--format"), "{err}");
        assert_eq!(Dataset::open(&root, Some(Format::Berkeley)).unwrap().format, Format::Berkeley);
    }
}
