//! What `maskd run` starts: the configuration file and the command line
//! resolved once into checked, typed values (durations, devices, the
//! pipeline's sizes), so that [`super::run`] only starts what they describe.
//! Every error names the key.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use log::LevelFilter;

use super::config::{
    CaptureConfig, Config, DisplayConfig, EncoderConfig, EncoderMode, EverythingConfig, ModelConfig, MqttConfig,
    PipelineConfig, SerialConfig, SnapshotsConfig, SourceConfig,
};
use crate::display::LiveSettings;
use crate::everything;
use crate::model::{Compute, Precision};
use crate::mqtt::{self, Broker, Credentials, MqttSettings, Qos, StreamQos, TlsSettings, Topics};
use crate::offload::{self, Endpoint, RemoteSettings};
use crate::pipeline::{CaptureSettings, PipelineSettings};
use crate::serial::ServerSettings;
use crate::touch::TouchSettings;

/// The daemon as configured.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// The configuration file, checked again on SIGHUP.
    pub path: PathBuf,
    pub model: ModelSettings,
    pub source: SourceConfig,
    pub pipeline: PipelineSettings,
    /// `None`: no controller line.
    pub line: Option<LineSettings>,
    /// `None`: no display.
    pub display: Option<DisplaySettings>,
    /// `None`: no touchscreen (it needs a display).
    pub touch: Option<TouchSettings>,
    /// How everything jobs run, from the line and on the timer.
    pub everything: everything::Settings,
    /// `None`: no periodic everything snapshots.
    pub snapshots: Option<SnapshotSettings>,
    /// maskd's own log level (`RUST_LOG` overrides it).
    pub log_level: LevelFilter,
    /// Prompts are also read from stdin (`maskd run --stdin`).
    pub stdin_prompts: bool,
    /// `None`: no MQTT broker.
    pub mqtt: Option<MqttSettings>,
}

/// Which model runs, on how many threads, and where its encoder runs.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelSettings {
    pub dir: PathBuf,
    pub precision: Precision,
    pub compute: Compute,
    pub threads: usize,
    /// `None`: the encoder runs on this machine.
    pub remote: Option<RemoteSettings>,
}

/// The controller line.
#[derive(Debug, Clone, PartialEq)]
pub struct LineSettings {
    pub device: SerialDevice,
    pub server: ServerSettings,
}

/// Where the controller line is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SerialDevice {
    /// A serial device such as /dev/ttyAMA0.
    Port { path: String, baud: u32 },
    /// A pseudo-terminal, for trials without hardware; `link` points at the client's end.
    Pty { link: Option<PathBuf> },
}

/// The live picture.
#[derive(Debug, Clone, PartialEq)]
pub struct DisplaySettings {
    pub screen: DisplayConfig,
    pub live: LiveSettings,
}

/// Everything in the latest frame, written to files on a timer.
#[derive(Debug, Clone, PartialEq)]
pub struct SnapshotSettings {
    /// From the start of one snapshot to the start of the next.
    pub every: Duration,
    /// Folder for `everything-<unix ms>-frame<id>.json` (SAM's records) and `.png` (overlay).
    pub dir: PathBuf,
    /// Snapshots kept; older ones are deleted.
    pub keep: usize,
}

/// The device name that asks for a pseudo-terminal instead of a serial port.
const PTY_DEVICE: &str = "pty";

impl Settings {
    /// Reads and resolves the configuration file `path`; `stdin_prompts`
    /// from the command line.
    ///
    /// # Errors
    /// The file is unreadable, not TOML, has an unknown key or a bad value;
    /// the message names the file and the key.
    pub fn load(path: &Path, stdin_prompts: bool) -> Result<Settings> {
        let config = Config::load(path)?;
        Settings::resolve(config, path, stdin_prompts).with_context(|| format!("config {}", path.display()))
    }

    /// Checks every value of `config` (read from `path`) and converts it.
    ///
    /// # Errors
    /// As [`Settings::load`].
    pub fn resolve(config: Config, path: &Path, stdin_prompts: bool) -> Result<Settings> {
        let everything = everything_settings(&config.everything)?;
        ensure!(
            config.touch.is_none() || config.display.is_some(),
            "[touch] needs a [display]: taps are mapped onto the picture shown"
        );
        Ok(Settings {
            path: path.to_path_buf(),
            model: model(config.model, config.encoder)?,
            source: source(config.source)?,
            pipeline: pipeline(&config.pipeline, &config.capture)?,
            line: config.serial.map(|serial| line(serial, &everything)).transpose()?,
            display: config
                .display
                .map(|screen| display(screen, config.overlay.hold_ms))
                .transpose()?,
            touch: config.touch,
            snapshots: config.everything.snapshots.map(snapshots).transpose()?,
            everything,
            log_level: config.log.level.parse().map_err(|_| {
                anyhow::anyhow!(
                    "log.level must be error, warn, info, debug or trace, got {:?}",
                    config.log.level
                )
            })?,
            stdin_prompts,
            mqtt: config.mqtt.map(mqtt_settings).transpose()?,
        })
    }
}

fn model(model: ModelConfig, encoder: EncoderConfig) -> Result<ModelSettings> {
    ensure!((1..=64).contains(&model.threads), "model.threads must be 1-64, got {}", model.threads);
    Ok(ModelSettings {
        dir: model.dir,
        precision: model.precision,
        compute: model.compute,
        threads: model.threads,
        remote: remote(encoder)?,
    })
}

fn remote(encoder: EncoderConfig) -> Result<Option<RemoteSettings>> {
    if encoder.mode == EncoderMode::Local {
        return Ok(None);
    }
    let url = encoder
        .url
        .context("encoder.mode = \"remote\" needs encoder.url, such as grpc://192.168.1.20:8001/mobile_sam_encoder")?;
    let endpoint: Endpoint = url.parse().context("encoder.url")?;
    ensure!(
        (100..=600_000).contains(&encoder.deadline_ms),
        "encoder.deadline_ms must be 100-600000, got {}",
        encoder.deadline_ms
    );
    ensure!((1..=8).contains(&encoder.in_flight), "encoder.in_flight must be 1-8, got {}", encoder.in_flight);
    ensure!(encoder.ca_file.is_none() || endpoint.tls, "encoder.ca_file needs a grpcs:// url");
    let credentials =
        offload::Credentials::read(encoder.ca_file.as_deref(), encoder.token_file.as_deref()).context("[encoder]")?;
    Ok(Some(RemoteSettings {
        deadline: Duration::from_millis(encoder.deadline_ms),
        fallback: encoder.fallback,
        in_flight: encoder.in_flight,
        credentials,
        ..RemoteSettings::new(endpoint)
    }))
}

fn source(source: SourceConfig) -> Result<SourceConfig> {
    match &source {
        SourceConfig::Camera(camera) => camera.validate()?,
        SourceConfig::Files(files) => files.validate()?,
        SourceConfig::Pattern(pattern) => pattern.validate()?,
    }
    Ok(source)
}

fn pipeline(pipeline: &PipelineConfig, capture: &CaptureConfig) -> Result<PipelineSettings> {
    let p = pipeline;
    ensure!((1..=64).contains(&p.embeddings_kept), "pipeline.embeddings_kept must be 1-64, got {}", p.embeddings_kept);
    ensure!((1..=255).contains(&p.queue_capacity), "pipeline.queue_capacity must be 1-255, got {}", p.queue_capacity);
    let c = capture;
    ensure!(
        (10..=60_000).contains(&c.backoff_min_ms),
        "capture.backoff_min_ms must be 10-60000, got {}",
        c.backoff_min_ms
    );
    ensure!(
        (c.backoff_min_ms..=600_000).contains(&c.backoff_max_ms),
        "capture.backoff_max_ms must be capture.backoff_min_ms ({}) to 600000, got {}",
        c.backoff_min_ms,
        c.backoff_max_ms
    );
    ensure!(
        (100..=600_000).contains(&c.stall_after_ms),
        "capture.stall_after_ms must be 100-600000, got {}",
        c.stall_after_ms
    );
    ensure!(c.max_lost_frames >= 1, "capture.max_lost_frames must be at least 1");
    Ok(PipelineSettings {
        embeddings_kept: p.embeddings_kept,
        queue_capacity: p.queue_capacity,
        capture: CaptureSettings {
            backoff_min: millis(c.backoff_min_ms),
            backoff_max: millis(c.backoff_max_ms),
            stall_after: millis(c.stall_after_ms),
            max_lost_frames: c.max_lost_frames,
        },
    })
}

fn line(serial: SerialConfig, everything: &everything::Settings) -> Result<LineSettings> {
    ensure!(serial.max_points >= 1, "serial.max_points must be at least 1");
    ensure!(
        (100..=60_000).contains(&serial.heartbeat_ms),
        "serial.heartbeat_ms must be 100-60000, got {}",
        serial.heartbeat_ms
    );
    let device = match serial.device.as_str() {
        "" => bail!("serial.device must not be empty"),
        PTY_DEVICE => SerialDevice::Pty { link: serial.pty_link },
        path => {
            ensure!(serial.pty_link.is_none(), "serial.pty_link is only for serial.device = \"pty\"");
            ensure!((1200..=4_000_000).contains(&serial.baud), "serial.baud must be 1200-4000000, got {}", serial.baud);
            SerialDevice::Port { path: path.to_string(), baud: serial.baud }
        }
    };
    let server = ServerSettings {
        max_points: serial.max_points,
        heartbeat: millis(serial.heartbeat_ms),
        everything: everything.clone(),
    };
    Ok(LineSettings { device, server })
}

fn display(screen: DisplayConfig, hold_ms: u32) -> Result<DisplaySettings> {
    match &screen {
        DisplayConfig::Png(png) => png.validate()?,
        DisplayConfig::Framebuffer(_) => {}
    }
    Ok(DisplaySettings { screen, live: LiveSettings { hold: millis(hold_ms) } })
}

fn everything_settings(config: &EverythingConfig) -> Result<everything::Settings> {
    ensure!(
        (1..=64).contains(&config.points_per_side),
        "everything.points_per_side must be 1-64, got {}",
        config.points_per_side
    );
    let settings = everything::Settings {
        points_per_side: config.points_per_side,
        pred_iou_thresh: config.pred_iou_thresh,
        stability_thresh: config.stability_thresh,
        box_nms_iou: config.nms_iou,
        min_area: config.min_area,
        ..everything::Settings::default()
    };
    settings.validate().context("[everything]")?;
    Ok(settings)
}

fn snapshots(snapshots: SnapshotsConfig) -> Result<SnapshotSettings> {
    ensure!(
        (1.0..=86_400.0).contains(&snapshots.every_s),
        "everything.snapshots.every_s must be 1-86400, got {}",
        snapshots.every_s
    );
    ensure!(snapshots.keep >= 1, "everything.snapshots.keep must be at least 1");
    Ok(SnapshotSettings { every: Duration::from_secs_f64(snapshots.every_s), dir: snapshots.dir, keep: snapshots.keep })
}

fn mqtt_settings(config: MqttConfig) -> Result<MqttSettings> {
    let tls = TlsSettings {
        ca_file: config.ca_file,
        client_identity: match (config.client_cert, config.client_key) {
            (None, None) => None,
            (Some(cert), Some(key)) => Some((cert, key)),
            _ => bail!("mqtt.client_cert and mqtt.client_key go together"),
        },
    };
    let tls_keys = tls.ca_file.is_some() || tls.client_identity.is_some();
    let broker = Broker::from_url(&config.url, tls).context("mqtt.url")?;
    match &broker.tls {
        // Read now, so that a bad file is named when the configuration is checked.
        Some(tls) => drop(mqtt::client_config(tls)?),
        None => ensure!(!tls_keys, "mqtt.ca_file, mqtt.client_cert and mqtt.client_key need an mqtts:// url"),
    }
    let device_id = match config.device_id {
        Some(id) => id,
        None => mqtt::host_name().context("mqtt.device_id is not set and the host name cannot be read")?,
    };
    let password = match (config.password, config.password_file) {
        (Some(_), Some(_)) => bail!("mqtt.password and mqtt.password_file: set one of them"),
        (password, None) => password,
        (None, Some(path)) => {
            let text = std::fs::read_to_string(&path).with_context(|| format!("mqtt.password_file {}", path.display()))?;
            Some(text.lines().next().unwrap_or_default().to_string())
        }
    };
    let credentials = match (config.username, password) {
        (Some(username), password) => Some(Credentials { username, password: password.unwrap_or_default() }),
        (None, None) => None,
        (None, Some(_)) => bail!("mqtt.password needs mqtt.username"),
    };
    ensure!((5..=3600).contains(&config.keep_alive_s), "mqtt.keep_alive_s must be 5-3600, got {}", config.keep_alive_s);
    ensure!((1..=100_000).contains(&config.queue_limit), "mqtt.queue_limit must be 1-100000, got {}", config.queue_limit);
    ensure!(
        (1.0..=86_400.0).contains(&config.status_every_s),
        "mqtt.status_every_s must be 1-86400, got {}",
        config.status_every_s
    );
    ensure!(
        (10..=60_000).contains(&config.backoff_min_ms),
        "mqtt.backoff_min_ms must be 10-60000, got {}",
        config.backoff_min_ms
    );
    ensure!(
        (config.backoff_min_ms..=600_000).contains(&config.backoff_max_ms),
        "mqtt.backoff_max_ms must be mqtt.backoff_min_ms ({}) to 600000, got {}",
        config.backoff_min_ms,
        config.backoff_max_ms
    );
    let publish = &config.publish;
    if let Some(every) = publish.snapshot_every_s {
        ensure!((0.1..=86_400.0).contains(&every), "mqtt.publish.snapshot_every_s must be 0.1-86400, got {every}");
    }
    ensure!(
        !publish.home_assistant || Topics::new(&publish.home_assistant_prefix, "x").is_ok(),
        "mqtt.publish.home_assistant_prefix must be topic levels without wildcards, got {:?}",
        publish.home_assistant_prefix
    );
    let q = &config.qos;
    let qos = StreamQos {
        status: Qos::from_level("mqtt.qos.status", q.status)?,
        answers: Qos::from_level("mqtt.qos.answers", q.answers)?,
        objects: Qos::from_level("mqtt.qos.objects", q.objects)?,
        snapshot: Qos::from_level("mqtt.qos.snapshot", q.snapshot)?,
        replies: Qos::from_level("mqtt.qos.replies", q.replies)?,
    };
    Ok(MqttSettings {
        topics: Topics::new(&config.topic_prefix, &device_id)?,
        device_id,
        broker,
        credentials,
        keep_alive: Duration::from_secs(u64::from(config.keep_alive_s)),
        prompts: config.prompts,
        publish: mqtt::Publish {
            answers: publish.answers,
            answer_masks: publish.answer_masks,
            objects: publish.objects,
            snapshot_every: publish.snapshot_every_s.map(Duration::from_secs_f64),
            home_assistant: publish.home_assistant.then(|| publish.home_assistant_prefix.clone()),
        },
        qos,
        queue_limit: config.queue_limit,
        status_every: Duration::from_secs_f64(config.status_every_s),
        backoff_min: millis(config.backoff_min_ms),
        backoff_max: millis(config.backoff_max_ms),
    })
}

fn millis(ms: u32) -> Duration {
    Duration::from_millis(u64::from(ms))
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

    fn parse(text: &str) -> Result<Settings> {
        Settings::resolve(Config::parse(text)?, Path::new("maskd.toml"), false)
    }

    fn error_of(text: &str) -> String {
        format!("{:#}", parse(text).unwrap_err())
    }

    #[test]
    fn bad_values_are_named() {
        let err = error_of(&MINIMAL.replace("[model]", "[model]\nprecision = \"fp16\""));
        assert!(err.contains("precision") && err.contains("fp16"), "{err}");
        let err = error_of(&MINIMAL.replace("[model]", "[model]\ncompute = \"half\""));
        assert!(err.contains("compute") && err.contains("half"), "{err}");
        let settings = parse(&MINIMAL.replace("[model]", "[model]\ncompute = \"f16\"")).unwrap();
        assert_eq!(settings.model.compute, Compute::F16);
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
        let err = error_of(&format!("{MINIMAL}[capture]\nbackoff_min_ms = 900\nbackoff_max_ms = 800\n"));
        assert!(err.contains("capture.backoff_max_ms"), "{err}");
        let err = error_of(&format!("{MINIMAL}[log]\nlevel = \"loud\"\n"));
        assert!(err.contains("log.level") && err.contains("loud"), "{err}");
        let err = error_of(&format!("{MINIMAL}[serial]\ndevice = \"/dev/ttyS0\"\npty_link = \"/tmp/x\"\n"));
        assert!(err.contains("serial.pty_link"), "{err}");
    }

    #[test]
    fn values_become_typed_settings() {
        let settings = parse(MINIMAL).unwrap();
        assert_eq!(
            settings.model,
            ModelSettings {
                dir: "models/mobile_sam".into(),
                precision: Precision::F32,
                compute: Compute::F32,
                threads: 1,
                remote: None
            }
        );
        assert_eq!(settings.pipeline.capture.backoff_max, Duration::from_secs(8));
        assert_eq!((settings.line, settings.display, settings.log_level), (None, None, LevelFilter::Info));
        let text = format!(
            "{MINIMAL}[serial]\ndevice = \"pty\"\npty_link = \"/tmp/t\"\nheartbeat_ms = 250\n\
             [capture]\nstall_after_ms = 1500\n[display]\nkind = \"png\"\npath = \"/tmp/d.png\"\n[overlay]\nhold_ms = 40\n"
        );
        let settings = parse(&text).unwrap();
        let line = settings.line.unwrap();
        assert_eq!(line.device, SerialDevice::Pty { link: Some("/tmp/t".into()) });
        assert_eq!(line.server.heartbeat, Duration::from_millis(250));
        assert_eq!(settings.pipeline.capture.stall_after, Duration::from_millis(1500));
        assert_eq!(settings.display.unwrap().live.hold, Duration::from_millis(40));
        let port = parse(&format!("{MINIMAL}[serial]\ndevice = \"/dev/ttyAMA0\"\nbaud = 9600\n")).unwrap();
        assert_eq!(port.line.unwrap().device, SerialDevice::Port { path: "/dev/ttyAMA0".into(), baud: 9600 });
    }

    #[test]
    fn an_encoder_block_becomes_remote_settings() {
        assert_eq!(parse(&format!("{MINIMAL}[encoder]\nurl = \"grpc://h:1/m\"\n")).unwrap().model.remote, None, "mode local");
        let text = format!(
            "{MINIMAL}[encoder]\nmode = \"remote\"\nurl = \"grpc://10.0.0.2:18001/mobile_sam_encoder\"\n\
             deadline_ms = 1500\nfallback = \"none\"\nin_flight = 2\n"
        );
        let remote = parse(&text).unwrap().model.remote.unwrap();
        assert_eq!(remote.endpoint, "grpc://10.0.0.2:18001/mobile_sam_encoder".parse().unwrap());
        assert_eq!((remote.deadline, remote.fallback, remote.in_flight), (Duration::from_millis(1500), offload::Fallback::None, 2));
        let defaults = parse(&format!("{MINIMAL}[encoder]\nmode = \"remote\"\nurl = \"grpc://h/m\"\n")).unwrap();
        let defaults = defaults.model.remote.unwrap();
        assert_eq!((defaults.deadline, defaults.fallback, defaults.in_flight), (RemoteSettings::DEFAULT_DEADLINE, offload::Fallback::Local, 1));
        for (block, expected) in [
            ("mode = \"remote\"\n", "needs encoder.url"),
            ("mode = \"far\"\n", "mode"),
            ("mode = \"remote\"\nurl = \"http://h/m\"\n", "encoder.url"),
            ("mode = \"remote\"\nurl = \"grpc://h/m\"\nfallback = \"gpu\"\n", "not a fallback"),
            ("mode = \"remote\"\nurl = \"grpc://h/m\"\ndeadline_ms = 5\n", "encoder.deadline_ms"),
            ("mode = \"remote\"\nurl = \"grpc://h/m\"\nin_flight = 0\n", "encoder.in_flight"),
            ("mode = \"remote\"\nurl = \"grpc://h/m\"\nca_file = \"/etc/ca.pem\"\n", "needs a grpcs:// url"),
            ("mode = \"remote\"\nurl = \"grpcs://h/m\"\ntoken_file = \"/nonexistent/token\"\n", "token file"),
            ("url = \"grpc://h/m\"\ntoken = \"x\"\n", "token"),
        ] {
            let err = error_of(&format!("{MINIMAL}[encoder]\n{block}"));
            assert!(err.contains(expected), "{block}: {err}");
        }
    }

    #[test]
    fn everything_settings_come_from_the_config() {
        let settings = parse(MINIMAL).unwrap();
        assert_eq!(settings.everything, everything::Settings { points_per_side: 16, ..everything::Settings::default() });
        assert_eq!(settings.snapshots, None);
        let text = format!("{MINIMAL}[everything]\npoints_per_side = 8\nmin_area = 50\n[everything.snapshots]\nevery_s = 30\ndir = \"/var/lib/maskd\"\n");
        let settings = parse(&text).unwrap();
        let everything = &settings.everything;
        assert_eq!((everything.points_per_side, everything.min_area, everything.pred_iou_thresh), (8, 50, 0.88));
        let snapshots = settings.snapshots.unwrap();
        assert_eq!((snapshots.every, snapshots.keep), (Duration::from_secs(30), 10));
    }

    #[test]
    fn an_mqtt_block_becomes_typed_settings() {
        assert_eq!(parse(MINIMAL).unwrap().mqtt, None);
        let text = format!(
            "{MINIMAL}[mqtt]\nurl = \"mqtt://127.0.0.1:1884\"\ndevice_id = \"cam-7\"\nusername = \"board\"\npassword = \"pw\"\n\
             queue_limit = 32\n[mqtt.publish]\nsnapshot_every_s = 5\nhome_assistant = true\n[mqtt.qos]\nanswers = 0\n"
        );
        let mqtt = parse(&text).unwrap().mqtt.unwrap();
        assert_eq!((mqtt.broker.host.as_str(), mqtt.broker.port, mqtt.broker.tls.is_none()), ("127.0.0.1", 1884, true));
        assert_eq!(mqtt.topics.status, "maskd/cam-7/status");
        assert_eq!(mqtt.credentials.unwrap().password, "pw");
        assert_eq!((mqtt.queue_limit, mqtt.keep_alive, mqtt.status_every), (32, Duration::from_secs(30), Duration::from_secs(30)));
        assert_eq!((mqtt.qos.answers, mqtt.qos.status), (Qos::AtMostOnce, Qos::AtLeastOnce));
        assert_eq!(mqtt.publish.snapshot_every, Some(Duration::from_secs(5)));
        assert_eq!(mqtt.publish.home_assistant.as_deref(), Some("homeassistant"));
        let defaults = parse(&format!("{MINIMAL}[mqtt]\nurl = \"mqtt://b\"\n")).unwrap().mqtt.unwrap();
        assert_eq!(defaults.device_id, mqtt::host_name().unwrap());
        assert!(defaults.prompts && defaults.publish.answers && defaults.credentials.is_none());
    }

    #[test]
    fn bad_mqtt_values_are_named() {
        let block = |extra: &str| format!("{MINIMAL}[mqtt]\nurl = \"mqtt://b\"\n{extra}");
        for (extra, expected) in [
            ("keep_alive_s = 1\n", "mqtt.keep_alive_s"),
            ("queue_limit = 0\n", "mqtt.queue_limit"),
            ("device_id = \"a/b\"\n", "mqtt.device_id"),
            ("topic_prefix = \"x/#\"\n", "mqtt.topic_prefix"),
            ("ca_file = \"ca.pem\"\n", "need an mqtts://"),
            ("password = \"pw\"\n", "mqtt.username"),
            ("client_cert = \"c.pem\"\n", "go together"),
            ("[mqtt.qos]\nstatus = 2\n", "mqtt.qos.status"),
            ("[mqtt.publish]\nsnapshots = 1\n", "snapshots"),
            ("backoff_min_ms = 900\nbackoff_max_ms = 800\n", "mqtt.backoff_max_ms"),
        ] {
            let err = error_of(&block(extra));
            assert!(err.contains(expected), "{extra}: {err}");
        }
        let err = error_of(&format!("{MINIMAL}[mqtt]\nurl = \"http://b\"\n"));
        assert!(err.contains("mqtt.url") && err.contains("mqtt://"), "{err}");
        let err = error_of(&format!("{MINIMAL}[mqtt]\nurl = \"mqtts://b\"\nca_file = \"/nonexistent/ca.pem\"\n"));
        assert!(err.contains("mqtt.ca_file") && err.contains("/nonexistent/ca.pem"), "{err}");
    }

    #[test]
    fn the_example_configs_parse() {
        let board = Path::new(env!("CARGO_MANIFEST_DIR")).join("board");
        let mut seen = 0;
        for entry in std::fs::read_dir(&board).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "toml") {
                Settings::load(&path, false).unwrap_or_else(|e| panic!("{}: {e:#}", path.display()));
                seen += 1;
            }
        }
        assert!(seen >= 3, "expected the board configs in {}", board.display());
    }
}
