//! The model manifest: which files make a SAM-family model and how to feed them.
//!
//! `models/export.sh` writes `manifest.json` beside the ONNX files. Everything
//! model-specific the runtime needs (input size, pixel statistics, file names)
//! comes from here, so another export with the same interface drops in.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use anyhow::{bail, ensure, Context, Result};
use serde::Deserialize;

/// Name of the manifest file inside a model directory.
pub const MANIFEST_FILE: &str = "manifest.json";

/// Which weights of a model to load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(try_from = "String")]
pub enum Precision {
    /// The float32 export, the default: PyTorch's masks to every digit of
    /// the evaluation, and as fast as int8 once loaded (docs/EVAL.md).
    #[default]
    F32,
    /// int8 weights, dequantized at load: half the encoder's file size,
    /// 0.9 points of mIoU@1 below float32 on Berkeley (docs/EVAL.md).
    Int8,
}

impl Precision {
    /// Every precision, by its key.
    pub const KEYS: [&'static str; 2] = ["int8", "f32"];

    /// The key of this precision in the manifest's `variants`, and its text form.
    pub fn key(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::Int8 => "int8",
        }
    }
}

impl FromStr for Precision {
    type Err = String;

    fn from_str(s: &str) -> Result<Precision, String> {
        match s.trim() {
            "f32" => Ok(Precision::F32),
            "int8" => Ok(Precision::Int8),
            other => Err(format!("unknown precision {other:?}, expected \"int8\" or \"f32\"")),
        }
    }
}

impl TryFrom<String> for Precision {
    type Error = String;

    fn try_from(s: String) -> Result<Precision, String> {
        s.parse()
    }
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.key())
    }
}

/// One ONNX file of a variant.
#[derive(Debug, Clone, Deserialize)]
pub struct ModelFile {
    pub file: String,
    pub sha256: String,
    pub bytes: u64,
}

/// The encoder and decoder files of one precision.
#[derive(Debug, Clone, Deserialize)]
pub struct Variant {
    pub encoder: ModelFile,
    /// The whole prompt encoder + mask decoder in one file (for other runtimes).
    pub decoder: ModelFile,
    /// The decoder's per-frame part (see `models/split_decoder.py`).
    pub decoder_frame: ModelFile,
    /// The decoder's per-prompt part.
    pub decoder_points: ModelFile,
    #[serde(default)]
    pub description: String,
}

/// A parsed `manifest.json`, remembering the directory it came from.
#[derive(Debug, Clone, Deserialize)]
pub struct Manifest {
    pub format: u32,
    pub model: String,
    /// Side of the square encoder input (1024 for SAM).
    pub image_size: usize,
    /// Side of the square low-resolution masks (256 for SAM).
    pub mask_input_size: usize,
    /// Channels, height, width of the image embedding.
    pub embedding_shape: [usize; 3],
    pub pixel_mean: [f32; 3],
    pub pixel_std: [f32; 3],
    pub variants: BTreeMap<String, Variant>,
    #[serde(skip)]
    dir: PathBuf,
}

/// The manifest format this runtime reads.
const SUPPORTED_FORMAT: u32 = 2;

impl Manifest {
    /// Reads `dir/manifest.json`.
    ///
    /// # Errors
    /// The directory or manifest is missing (the message names the command
    /// that creates it), unreadable, or malformed.
    pub fn load(dir: impl AsRef<Path>) -> Result<Manifest> {
        let dir = dir.as_ref();
        let path = dir.join(MANIFEST_FILE);
        if !path.is_file() {
            bail!(
                "no model at {}: {} is missing; create it with `models/export.sh {}` \
                 (from the maskd source tree) or point --model at a model directory",
                dir.display(),
                path.display(),
                dir.display()
            );
        }
        let text =
            std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        let mut manifest: Manifest = serde_json::from_str(&text)
            .with_context(|| format!("parsing model manifest {}", path.display()))?;
        ensure!(
            manifest.format == SUPPORTED_FORMAT,
            "model manifest {} has format {}, this maskd reads format {SUPPORTED_FORMAT}: \
             re-export it with `models/export.sh {}`",
            path.display(),
            manifest.format,
            dir.display()
        );
        ensure!(
            manifest.image_size > 0 && manifest.mask_input_size > 0,
            "model manifest {}: image_size and mask_input_size must be positive",
            path.display()
        );
        ensure!(
            manifest.pixel_std.iter().all(|s| *s > 0.0),
            "model manifest {}: pixel_std must be positive",
            path.display()
        );
        manifest.dir = dir.to_path_buf();
        Ok(manifest)
    }

    /// The directory holding the manifest and its model files.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The files of one precision.
    ///
    /// # Errors
    /// The manifest lists no such variant.
    pub fn variant(&self, precision: Precision) -> Result<&Variant> {
        self.variants.get(precision.key()).with_context(|| {
            format!(
                "model {} in {} has no {precision} variant (it has: {})",
                self.model,
                self.dir.display(),
                self.variants.keys().cloned().collect::<Vec<_>>().join(", ")
            )
        })
    }

    /// Path of a model file, checked to exist with the size the manifest records.
    ///
    /// # Errors
    /// The file is missing or its size differs (a truncated or stale export).
    pub fn file_path(&self, file: &ModelFile) -> Result<PathBuf> {
        let path = self.dir.join(&file.file);
        let meta = std::fs::metadata(&path).with_context(|| {
            format!(
                "model file {} listed in {} is missing; re-run `models/export.sh {}`",
                path.display(),
                MANIFEST_FILE,
                self.dir.display()
            )
        })?;
        ensure!(
            meta.len() == file.bytes,
            "model file {} has {} bytes, the manifest says {}; re-run `models/export.sh {}`",
            path.display(),
            meta.len(),
            file.bytes,
            self.dir.display()
        );
        Ok(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_manifest(dir: &Path, text: &str) {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join(MANIFEST_FILE), text).unwrap();
    }

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("maskd-manifest-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    const MINIMAL: &str = r#"{"format": 2, "model": "tiny", "image_size": 1024,
        "mask_input_size": 256, "embedding_shape": [256, 64, 64],
        "pixel_mean": [1, 2, 3], "pixel_std": [4, 5, 6],
        "variants": {"f32": {"encoder": {"file": "e.onnx", "sha256": "x", "bytes": 3},
                             "decoder": {"file": "d.onnx", "sha256": "y", "bytes": 4},
                             "decoder_frame": {"file": "f.onnx", "sha256": "z", "bytes": 5},
                             "decoder_points": {"file": "p.onnx", "sha256": "w", "bytes": 6}}}}"#;

    #[test]
    fn missing_manifest_names_path_and_export_command() {
        let dir = temp_dir("missing");
        let err = format!("{:#}", Manifest::load(&dir).unwrap_err());
        assert!(err.contains(&dir.join(MANIFEST_FILE).display().to_string()), "{err}");
        assert!(err.contains("models/export.sh"), "{err}");
    }

    #[test]
    fn loads_minimal_manifest_and_reports_missing_variant() {
        let dir = temp_dir("minimal");
        write_manifest(&dir, MINIMAL);
        let manifest = Manifest::load(&dir).unwrap();
        assert_eq!(manifest.image_size, 1024);
        assert_eq!(manifest.variant(Precision::F32).unwrap().encoder.file, "e.onnx");
        let err = format!("{:#}", manifest.variant(Precision::Int8).unwrap_err());
        assert!(err.contains("no int8 variant") && err.contains("f32"), "{err}");
    }

    #[test]
    fn file_with_wrong_size_is_rejected() {
        let dir = temp_dir("size");
        write_manifest(&dir, MINIMAL);
        std::fs::write(dir.join("e.onnx"), b"12345").unwrap();
        let manifest = Manifest::load(&dir).unwrap();
        let variant = manifest.variant(Precision::F32).unwrap();
        let err = format!("{:#}", manifest.file_path(&variant.encoder).unwrap_err());
        assert!(err.contains("5 bytes") && err.contains("says 3"), "{err}");
        let err = format!("{:#}", manifest.file_path(&variant.decoder).unwrap_err());
        assert!(err.contains("missing"), "{err}");
    }

    #[test]
    fn precisions_read_back_their_keys() {
        for key in Precision::KEYS {
            assert_eq!(key.parse::<Precision>().unwrap().to_string(), key);
        }
        assert_eq!(" f32".parse::<Precision>(), Ok(Precision::F32));
        assert_eq!(Precision::default(), Precision::F32);
        assert_eq!("fp16".parse::<Precision>().unwrap_err(), "unknown precision \"fp16\", expected \"int8\" or \"f32\"");
    }

    #[test]
    fn unsupported_format_is_rejected() {
        let dir = temp_dir("format");
        write_manifest(&dir, &MINIMAL.replace("\"format\": 2", "\"format\": 7"));
        let err = format!("{:#}", Manifest::load(&dir).unwrap_err());
        assert!(err.contains("format 7"), "{err}");
    }
}
