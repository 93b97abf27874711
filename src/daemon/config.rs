//! The daemon's TOML configuration. Unknown keys are errors, and every error
//! names the key, so that a typo never silently falls back to a default.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use serde::Deserialize;

use crate::camera::{CameraSettings, FileSettings, PatternSettings};
use crate::display::{FramebufferSettings, SnapshotSettings};
use crate::everything;
use crate::touch::TouchSettings;
use crate::model::{Compute, Precision};

/// Everything `maskd run` reads from its configuration file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub model: ModelConfig,
    pub source: SourceConfig,
    #[serde(default)]
    pub pipeline: PipelineConfig,
    /// Absent: no controller link.
    pub serial: Option<SerialConfig>,
    /// Absent: no display.
    pub display: Option<DisplayConfig>,
    #[serde(default)]
    pub overlay: OverlayConfig,
    /// Absent: no touchscreen. Needs a display to map taps onto the picture.
    pub touch: Option<TouchSettings>,
    #[serde(default)]
    pub everything: EverythingConfig,
    #[serde(default)]
    pub log: LogConfig,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// Folder holding `manifest.json` and the ONNX files.
    pub dir: PathBuf,
    #[serde(default = "default_precision", deserialize_with = "precision")]
    pub precision: Precision,
    /// Threads for the encoder and decoder (1 = single-threaded).
    #[serde(default = "default_threads")]
    pub threads: usize,
    /// What the encoder computes in: "f32", or "f16" on aarch64 cores with
    /// FP16 arithmetic.
    #[serde(default, deserialize_with = "compute")]
    pub compute: Compute,
}

fn default_precision() -> Precision {
    Precision::Int8
}

fn default_threads() -> usize {
    1
}

fn precision<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Precision, D::Error> {
    match String::deserialize(d)?.as_str() {
        "f32" => Ok(Precision::F32),
        "int8" => Ok(Precision::Int8),
        other => Err(serde::de::Error::custom(format!("unknown precision {other:?}, expected \"f32\" or \"int8\""))),
    }
}

fn compute<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Compute, D::Error> {
    match String::deserialize(d)?.as_str() {
        "f32" => Ok(Compute::F32),
        "f16" => Ok(Compute::F16),
        other => Err(serde::de::Error::custom(format!("unknown compute {other:?}, expected \"f32\" or \"f16\""))),
    }
}

/// Where frames come from, chosen by `kind`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum SourceConfig {
    /// A V4L2 camera.
    Camera(CameraSettings),
    Files(FileSettings),
    Pattern(PatternSettings),
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineConfig {
    /// Recent frames whose embeddings are kept for prompts by frame id.
    #[serde(default = "default_embeddings_kept")]
    pub embeddings_kept: usize,
    /// Prompts waiting for the decoder before new ones are answered Busy.
    #[serde(default = "default_queue_capacity")]
    pub queue_capacity: usize,
}

fn default_embeddings_kept() -> usize {
    4
}

fn default_queue_capacity() -> usize {
    4
}

impl Default for PipelineConfig {
    fn default() -> Self {
        PipelineConfig { embeddings_kept: default_embeddings_kept(), queue_capacity: default_queue_capacity() }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SerialConfig {
    /// A serial device such as `/dev/ttyAMA0`, or `"pty"` for a pseudo-terminal
    /// whose other end is linked at `pty_link` (for trials without hardware).
    pub device: String,
    #[serde(default = "default_baud")]
    pub baud: u32,
    /// With `device = "pty"`: where to put a symlink to the client's end.
    pub pty_link: Option<PathBuf>,
    #[serde(default = "default_max_points")]
    pub max_points: u8,
    #[serde(default = "default_heartbeat_ms")]
    pub heartbeat_ms: u32,
}

fn default_baud() -> u32 {
    115_200
}

fn default_max_points() -> u8 {
    16
}

fn default_heartbeat_ms() -> u32 {
    1000
}

/// Where the live picture goes, chosen by `kind`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum DisplayConfig {
    /// A Linux framebuffer, /dev/fbN (RGB565 or XRGB8888).
    Framebuffer(FramebufferSettings),
    /// A PNG file rewritten at every change, for headless boards and tests.
    Png(SnapshotSettings),
}

/// How answers are shown on the display.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OverlayConfig {
    /// How long an answer's mask stays on screen before live frames resume.
    #[serde(default = "default_hold_ms")]
    pub hold_ms: u32,
}

fn default_hold_ms() -> u32 {
    5000
}

impl Default for OverlayConfig {
    fn default() -> Self {
        OverlayConfig { hold_ms: default_hold_ms() }
    }
}

/// Automatic mask generation ("everything") on request over the serial
/// line, and optionally on a timer.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EverythingConfig {
    /// Grid points per image side, for snapshots and for requests that leave it to the daemon.
    #[serde(default = "default_points_per_side")]
    pub points_per_side: usize,
    /// Keep masks whose predicted IoU is above this.
    #[serde(default = "default_pred_iou_thresh")]
    pub pred_iou_thresh: f32,
    /// Keep masks whose stability score is at least this.
    #[serde(default = "default_stability_thresh")]
    pub stability_thresh: f32,
    /// Box IoU above which a lower-scored mask is a duplicate.
    #[serde(default = "default_nms_iou")]
    pub nms_iou: f32,
    /// Fill holes and drop islands smaller than this many pixels (0: off).
    #[serde(default)]
    pub min_area: u64,
    /// Absent: no periodic snapshots.
    pub snapshots: Option<SnapshotsConfig>,
}

/// Every object in the latest frame, written to files on a timer.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotsConfig {
    /// Seconds from the start of one snapshot to the start of the next.
    pub every_s: f64,
    /// Folder for `everything-<unix ms>-frame<id>.json` (SAM's records) and `.png` (overlay).
    pub dir: PathBuf,
    /// Snapshots kept; older ones are deleted.
    #[serde(default = "default_snapshots_kept")]
    pub keep: usize,
}

fn default_points_per_side() -> usize {
    16
}

fn default_pred_iou_thresh() -> f32 {
    0.88
}

fn default_stability_thresh() -> f32 {
    0.95
}

fn default_nms_iou() -> f32 {
    0.7
}

fn default_snapshots_kept() -> usize {
    10
}

impl Default for EverythingConfig {
    fn default() -> Self {
        EverythingConfig {
            points_per_side: default_points_per_side(),
            pred_iou_thresh: default_pred_iou_thresh(),
            stability_thresh: default_stability_thresh(),
            nms_iou: default_nms_iou(),
            min_area: 0,
            snapshots: None,
        }
    }
}

impl EverythingConfig {
    /// The generator's settings (SAM's defaults for everything not configured).
    pub fn settings(&self) -> everything::Settings {
        everything::Settings {
            points_per_side: self.points_per_side,
            pred_iou_thresh: self.pred_iou_thresh,
            stability_thresh: self.stability_thresh,
            box_nms_iou: self.nms_iou,
            min_area: self.min_area,
            ..everything::Settings::default()
        }
    }

    fn validate(&self) -> Result<()> {
        ensure!(
            (1..=64).contains(&self.points_per_side),
            "everything.points_per_side must be 1-64, got {}",
            self.points_per_side
        );
        self.settings().validate().context("[everything]")?;
        if let Some(snapshots) = &self.snapshots {
            ensure!(
                (1.0..=86_400.0).contains(&snapshots.every_s),
                "everything.snapshots.every_s must be 1-86400, got {}",
                snapshots.every_s
            );
            ensure!(snapshots.keep >= 1, "everything.snapshots.keep must be at least 1");
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// `error`, `warn`, `info`, `debug` or `trace`; `RUST_LOG` overrides it.
    #[serde(default = "default_level")]
    pub level: String,
}

fn default_level() -> String {
    "info".into()
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig { level: default_level() }
    }
}

impl Config {
    /// Reads and checks `path`. Relative paths inside it are taken from the
    /// file's own folder, so the daemon does not depend on its working directory.
    ///
    /// # Errors
    /// The file is unreadable, not TOML, has an unknown key or a bad value;
    /// the message names the file and the key.
    pub fn load(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading config {}", path.display()))?;
        let mut config = Config::parse(&text).with_context(|| format!("config {}", path.display()))?;
        config.resolve_paths(path.parent().unwrap_or(Path::new(".")));
        Ok(config)
    }

    /// Parses and checks a configuration; paths are left as written.
    ///
    /// # Errors
    /// As [`Config::load`].
    pub fn parse(text: &str) -> Result<Config> {
        let config: Config = toml::from_str(text)?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<()> {
        ensure!((1..=64).contains(&self.model.threads), "model.threads must be 1-64, got {}", self.model.threads);
        match &self.source {
            SourceConfig::Camera(camera) => camera.validate()?,
            SourceConfig::Files(files) => files.validate()?,
            SourceConfig::Pattern(pattern) => pattern.validate()?,
        }
        let p = &self.pipeline;
        ensure!((1..=64).contains(&p.embeddings_kept), "pipeline.embeddings_kept must be 1-64, got {}", p.embeddings_kept);
        ensure!((1..=255).contains(&p.queue_capacity), "pipeline.queue_capacity must be 1-255, got {}", p.queue_capacity);
        if let Some(serial) = &self.serial {
            ensure!(!serial.device.is_empty(), "serial.device must not be empty");
            ensure!((1200..=4_000_000).contains(&serial.baud), "serial.baud must be 1200-4000000, got {}", serial.baud);
            ensure!(serial.max_points >= 1, "serial.max_points must be at least 1");
            ensure!(
                (100..=60_000).contains(&serial.heartbeat_ms),
                "serial.heartbeat_ms must be 100-60000, got {}",
                serial.heartbeat_ms
            );
            ensure!(
                serial.pty_link.is_none() || serial.device == "pty",
                "serial.pty_link is only for serial.device = \"pty\""
            );
        }
        match &self.display {
            Some(DisplayConfig::Png(png)) => png.validate()?,
            Some(DisplayConfig::Framebuffer(_)) | None => {}
        }
        ensure!(
            self.touch.is_none() || self.display.is_some(),
            "[touch] needs a [display]: taps are mapped onto the picture shown"
        );
        self.everything.validate()?;
        ensure!(
            matches!(self.log.level.as_str(), "error" | "warn" | "info" | "debug" | "trace"),
            "log.level must be error, warn, info, debug or trace, got {:?}",
            self.log.level
        );
        Ok(())
    }

    fn resolve_paths(&mut self, base: &Path) {
        let resolve = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        resolve(&mut self.model.dir);
        if let SourceConfig::Files(files) = &mut self.source {
            files.paths.iter_mut().for_each(resolve);
        }
        if let Some(link) = self.serial.as_mut().and_then(|s| s.pty_link.as_mut()) {
            resolve(link);
        }
        if let Some(DisplayConfig::Png(png)) = &mut self.display {
            resolve(&mut png.path);
        }
        if let Some(snapshots) = &mut self.everything.snapshots {
            resolve(&mut snapshots.dir);
        }
    }

    /// `serial.heartbeat_ms` as a duration.
    pub fn heartbeat(&self) -> Option<Duration> {
        self.serial.as_ref().map(|s| Duration::from_millis(u64::from(s.heartbeat_ms)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
[model]
dir = "models/mobile_sam"

[source]
kind = "files"
paths = ["images"]
"#;

    fn error_of(text: &str) -> String {
        format!("{:#}", Config::parse(text).unwrap_err())
    }

    #[test]
    fn a_minimal_config_gets_defaults() {
        let config = Config::parse(MINIMAL).unwrap();
        assert_eq!(config.model.precision, Precision::Int8);
        assert_eq!(config.model.threads, 1);
        assert_eq!(config.model.compute, Compute::F32);
        assert_eq!(config.pipeline, PipelineConfig { embeddings_kept: 4, queue_capacity: 4 });
        assert_eq!(config.serial, None);
        let SourceConfig::Files(files) = &config.source else { panic!("not files") };
        assert!(files.repeat);
    }

    #[test]
    fn unknown_keys_are_named() {
        let err = error_of(&format!("{MINIMAL}fsp = 3\n"));
        assert!(err.contains("fsp"), "{err}");
        let err = error_of(&MINIMAL.replace("[model]", "[model]\nthread = 2"));
        assert!(err.contains("thread"), "{err}");
        let err = error_of(&format!("{MINIMAL}[serial]\ndevice = \"pty\"\nbaudrate = 9600\n"));
        assert!(err.contains("baudrate"), "{err}");
        let err = error_of(&format!("{MINIMAL}[sreial]\ndevice = \"pty\"\n"));
        assert!(err.contains("sreial"), "{err}");
    }

    #[test]
    fn bad_values_are_named() {
        let err = error_of(&MINIMAL.replace("[model]", "[model]\nprecision = \"fp16\""));
        assert!(err.contains("precision") && err.contains("fp16"), "{err}");
        let err = error_of(&MINIMAL.replace("[model]", "[model]\ncompute = \"half\""));
        assert!(err.contains("compute") && err.contains("half"), "{err}");
        let config = Config::parse(&MINIMAL.replace("[model]", "[model]\ncompute = \"f16\"")).unwrap();
        assert_eq!(config.model.compute, Compute::F16);
        let err = error_of(&MINIMAL.replace("kind = \"files\"", "kind = \"webcam\""));
        assert!(err.contains("webcam"), "{err}");
        let err = error_of(&format!("{MINIMAL}[pipeline]\nqueue_capacity = 0\n"));
        assert!(err.contains("pipeline.queue_capacity"), "{err}");
        let err = error_of(&format!("{MINIMAL}[serial]\ndevice = \"/dev/ttyS0\"\nbaud = 7\n"));
        assert!(err.contains("serial.baud"), "{err}");
        let err = error_of(&MINIMAL.replace("[model]", "[model]\nthreads = \"two\""));
        assert!(err.contains("threads"), "{err}");
        let err = error_of(&format!("{MINIMAL}[everything]\npoints_per_side = 100\n"));
        assert!(err.contains("everything.points_per_side"), "{err}");
        let err = error_of(&format!("{MINIMAL}[everything]\nnms_iou = 1.5\n"));
        assert!(err.contains("[everything]") && err.contains("box NMS IoU"), "{err}");
        let err = error_of(&format!("{MINIMAL}[everything.snapshots]\nevery_s = 0.5\ndir = \"s\"\n"));
        assert!(err.contains("everything.snapshots.every_s"), "{err}");
        let err = error_of(&format!("{MINIMAL}[everything.snapshots]\nevery_s = 60\n"));
        assert!(err.contains("dir"), "{err}");
    }

    #[test]
    fn everything_settings_come_from_the_config() {
        let config = Config::parse(MINIMAL).unwrap();
        assert_eq!(config.everything.settings(), everything::Settings { points_per_side: 16, ..everything::Settings::default() });
        assert_eq!(config.everything.snapshots, None);
        let text = format!("{MINIMAL}[everything]\npoints_per_side = 8\nmin_area = 50\n[everything.snapshots]\nevery_s = 30\ndir = \"/var/lib/maskd\"\n");
        let config = Config::parse(&text).unwrap();
        let settings = config.everything.settings();
        assert_eq!((settings.points_per_side, settings.min_area, settings.pred_iou_thresh), (8, 50, 0.88));
        let snapshots = config.everything.snapshots.unwrap();
        assert_eq!((snapshots.every_s, snapshots.keep), (30.0, 10));
    }

    #[test]
    fn missing_sections_are_named() {
        let err = error_of("[model]\ndir = \"m\"\n");
        assert!(err.contains("source"), "{err}");
    }

    #[test]
    fn relative_paths_are_taken_from_the_config_folder() {
        let dir = std::env::temp_dir().join(format!("maskd-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("maskd.toml");
        std::fs::write(&path, MINIMAL).unwrap();
        let config = Config::load(&path).unwrap();
        assert_eq!(config.model.dir, dir.join("models/mobile_sam"));
        let SourceConfig::Files(files) = &config.source else { panic!("not files") };
        assert_eq!(files.paths, [dir.join("images")]);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn the_example_configs_parse() {
        let board = Path::new(env!("CARGO_MANIFEST_DIR")).join("board");
        let mut seen = 0;
        for entry in std::fs::read_dir(&board).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "toml") {
                Config::load(&path).unwrap_or_else(|e| panic!("{}: {e:#}", path.display()));
                seen += 1;
            }
        }
        assert!(seen >= 3, "expected the board configs in {}", board.display());
    }
}
