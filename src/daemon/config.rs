//! The daemon's TOML configuration as written: the file's shape, with its
//! defaults. Unknown keys are errors that name the key, so that a typo never
//! silently falls back to a default; [`super::Settings`] checks the values.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Deserialize;

use crate::camera::{CameraSettings, FileSettings, PatternSettings};
use crate::display::{FramebufferSettings, SnapshotSettings};
use crate::model::{Compute, Precision};
use crate::offload::{Fallback, RemoteSettings};
use crate::touch::TouchSettings;

/// Everything `maskd run` reads from its configuration file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub model: ModelConfig,
    pub source: SourceConfig,
    #[serde(default)]
    pub pipeline: PipelineConfig,
    #[serde(default)]
    pub capture: CaptureConfig,
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
    /// Absent: no MQTT broker.
    pub mqtt: Option<MqttConfig>,
    /// Where frames are embedded: this machine (the default) or a server.
    #[serde(default)]
    pub encoder: EncoderConfig,
}

/// The image encoder: on this machine, or on an inference server (docs/OFFLOAD.md).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EncoderConfig {
    #[serde(default)]
    pub mode: EncoderMode,
    /// With `mode = "remote"`: `grpc://host:port/model` or `grpcs://...` (TLS).
    pub url: Option<String>,
    /// Longest wait for one frame's embedding before the fallback encodes it.
    #[serde(default = "default_encoder_deadline_ms")]
    pub deadline_ms: u64,
    #[serde(default)]
    pub fallback: Fallback,
    /// Frames sent to the server before the first one's embedding is back.
    #[serde(default = "default_in_flight")]
    pub in_flight: usize,
    /// A file holding a token sent as `authorization: Bearer <token>`.
    pub token_file: Option<PathBuf>,
    /// With grpcs://: PEM CA certificates to trust; absent: the system's.
    pub ca_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EncoderMode {
    #[default]
    Local,
    Remote,
}

impl Default for EncoderConfig {
    fn default() -> EncoderConfig {
        EncoderConfig {
            mode: EncoderMode::Local,
            url: None,
            deadline_ms: default_encoder_deadline_ms(),
            fallback: Fallback::default(),
            in_flight: default_in_flight(),
            token_file: None,
            ca_file: None,
        }
    }
}

fn default_encoder_deadline_ms() -> u64 {
    RemoteSettings::DEFAULT_DEADLINE.as_millis() as u64
}

fn default_in_flight() -> usize {
    1
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// Folder holding `manifest.json` and the ONNX files.
    pub dir: PathBuf,
    #[serde(default)]
    pub precision: Precision,
    /// Threads for the encoder and decoder (1 = single-threaded).
    #[serde(default = "default_threads")]
    pub threads: usize,
    /// What the encoder computes in: "f32", or "f16" on aarch64 cores with
    /// FP16 arithmetic.
    #[serde(default)]
    pub compute: Compute,
}

fn default_threads() -> usize {
    1
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

/// How the frame source is watched and reopened.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaptureConfig {
    /// First wait before reopening a failed source; doubles up to `backoff_max_ms`.
    #[serde(default = "default_backoff_min_ms")]
    pub backoff_min_ms: u32,
    #[serde(default = "default_backoff_max_ms")]
    pub backoff_max_ms: u32,
    /// A streaming source with no frame for this long (or three of its frame
    /// intervals, if longer) is reported stalled.
    #[serde(default = "default_stall_after_ms")]
    pub stall_after_ms: u32,
    /// Frames lost in a row (corrupt, short reads) after which the source is reopened.
    #[serde(default = "default_max_lost_frames")]
    pub max_lost_frames: u32,
}

fn default_backoff_min_ms() -> u32 {
    500
}

fn default_backoff_max_ms() -> u32 {
    8000
}

fn default_stall_after_ms() -> u32 {
    3000
}

fn default_max_lost_frames() -> u32 {
    30
}

impl Default for CaptureConfig {
    fn default() -> Self {
        CaptureConfig {
            backoff_min_ms: default_backoff_min_ms(),
            backoff_max_ms: default_backoff_max_ms(),
            stall_after_ms: default_stall_after_ms(),
            max_lost_frames: default_max_lost_frames(),
        }
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

/// A broker to publish to and take remote prompts from (docs/MQTT.md).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttConfig {
    /// `mqtt://host[:port]` or `mqtts://host[:port]` (TLS).
    pub url: String,
    /// The board's topic level and client id; absent: the host name.
    pub device_id: Option<String>,
    #[serde(default = "default_topic_prefix")]
    pub topic_prefix: String,
    pub username: Option<String>,
    pub password: Option<String>,
    /// A file holding the password (its first line), instead of `password`.
    pub password_file: Option<PathBuf>,
    /// With mqtts://: PEM CA certificates to trust; absent: the system's.
    pub ca_file: Option<PathBuf>,
    /// With mqtts://: the board's PEM certificate and key, for brokers that ask.
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
    #[serde(default = "default_keep_alive_s")]
    pub keep_alive_s: u32,
    /// Take prompts on `<prefix>/<device_id>/prompt`.
    #[serde(default = "default_true")]
    pub prompts: bool,
    /// Messages kept for the broker while it is away.
    #[serde(default = "default_queue_limit")]
    pub queue_limit: usize,
    /// The status is published on every change and at least this often.
    #[serde(default = "default_status_every_s")]
    pub status_every_s: f64,
    #[serde(default = "default_mqtt_backoff_min_ms")]
    pub backoff_min_ms: u32,
    #[serde(default = "default_mqtt_backoff_max_ms")]
    pub backoff_max_ms: u32,
    #[serde(default)]
    pub publish: MqttPublishConfig,
    #[serde(default)]
    pub qos: MqttQosConfig,
}

/// Which optional streams are published.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttPublishConfig {
    #[serde(default = "default_true")]
    pub answers: bool,
    /// Answers carry their mask as COCO RLE.
    #[serde(default)]
    pub answer_masks: bool,
    #[serde(default = "default_true")]
    pub objects: bool,
    /// Absent: no snapshot topic.
    pub snapshot_every_s: Option<f64>,
    /// Home Assistant MQTT discovery configs.
    #[serde(default)]
    pub home_assistant: bool,
    #[serde(default = "default_home_assistant_prefix")]
    pub home_assistant_prefix: String,
}

/// QoS per stream, 0 or 1.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttQosConfig {
    #[serde(default = "default_qos_1")]
    pub status: u8,
    #[serde(default = "default_qos_1")]
    pub answers: u8,
    #[serde(default = "default_qos_1")]
    pub objects: u8,
    #[serde(default)]
    pub snapshot: u8,
    #[serde(default = "default_qos_1")]
    pub replies: u8,
}

fn default_topic_prefix() -> String {
    "maskd".into()
}

fn default_keep_alive_s() -> u32 {
    30
}

fn default_true() -> bool {
    true
}

fn default_queue_limit() -> usize {
    256
}

fn default_status_every_s() -> f64 {
    30.0
}

fn default_mqtt_backoff_min_ms() -> u32 {
    500
}

fn default_mqtt_backoff_max_ms() -> u32 {
    30_000
}

fn default_home_assistant_prefix() -> String {
    "homeassistant".into()
}

fn default_qos_1() -> u8 {
    1
}

impl Default for MqttPublishConfig {
    fn default() -> Self {
        MqttPublishConfig {
            answers: true,
            answer_masks: false,
            objects: true,
            snapshot_every_s: None,
            home_assistant: false,
            home_assistant_prefix: default_home_assistant_prefix(),
        }
    }
}

impl Default for MqttQosConfig {
    fn default() -> Self {
        MqttQosConfig { status: 1, answers: 1, objects: 1, snapshot: 0, replies: 1 }
    }
}

impl Config {
    /// Reads `path`. Relative paths inside it are taken from the file's own
    /// folder, so the daemon does not depend on its working directory.
    ///
    /// # Errors
    /// The file is unreadable, not TOML, or has an unknown key or a value
    /// of the wrong type; the message names the file and the key.
    pub fn load(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading config {}", path.display()))?;
        let mut config = Config::parse(&text).with_context(|| format!("config {}", path.display()))?;
        config.resolve_paths(path.parent().unwrap_or(Path::new(".")));
        Ok(config)
    }

    /// Parses a configuration; paths are left as written.
    ///
    /// # Errors
    /// As [`Config::load`].
    pub fn parse(text: &str) -> Result<Config> {
        Ok(toml::from_str(text)?)
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
        [&mut self.encoder.token_file, &mut self.encoder.ca_file].into_iter().flatten().for_each(resolve);
        if let Some(mqtt) = &mut self.mqtt {
            [&mut mqtt.password_file, &mut mqtt.ca_file, &mut mqtt.client_cert, &mut mqtt.client_key]
                .into_iter()
                .flatten()
                .for_each(resolve);
        }
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
        assert_eq!(config.model.precision, Precision::F32);
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
}
