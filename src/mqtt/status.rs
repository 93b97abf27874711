//! The retained `status` payloads: online with the board's health, and
//! offline (the Last Will the broker publishes for a board that vanished,
//! or the daemon's own word when it stops).

use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

use super::outbox::Drops;
use super::payload::{rounded, SCHEMA};
use crate::pipeline::{CameraState, PipelineStatus};

/// What the board is, for every status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub device_id: String,
    pub model: String,
    pub precision: String,
}

/// The connection as the adapter saw it, for the status and the log.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct LinkHealth {
    pub broker: String,
    /// Connections made after the first.
    pub reconnects: u32,
    /// Why the last connection attempt failed or the last connection broke.
    pub last_error: Option<String>,
}

/// The queue towards the broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct QueueHealth {
    /// Messages the broker has (acknowledged, or written at QoS 0) since start.
    pub delivered: u64,
    pub queued: usize,
    pub queue_limit: usize,
    pub dropped: Drops,
}

#[derive(Debug, Serialize)]
struct Online<'a> {
    schema: u32,
    state: &'static str,
    device_id: &'a str,
    version: &'static str,
    model: &'a str,
    precision: &'a str,
    uptime_s: u64,
    camera: &'static str,
    /// Frames embedded per second, recent average.
    fps: f64,
    encoder: Encoder,
    prompts: Prompts,
    frames_superseded: u32,
    capture_errors: u32,
    encoder_errors: u32,
    mqtt: Mqtt<'a>,
    /// Unix time of this status, milliseconds.
    time_ms: u64,
}

#[derive(Debug, Serialize)]
struct Encoder {
    /// local, remote, fallback or down.
    state: &'static str,
    /// Encoder time, recent average.
    ms: f64,
}

#[derive(Debug, Serialize)]
struct Prompts {
    queue_depth: usize,
    queue_capacity: usize,
    busy_rejections: u32,
}

#[derive(Debug, Serialize)]
struct Mqtt<'a> {
    #[serde(flatten)]
    link: &'a LinkHealth,
    #[serde(flatten)]
    queue: QueueHealth,
}

#[derive(Debug, Serialize)]
struct Offline<'a> {
    schema: u32,
    state: &'static str,
    device_id: &'a str,
    /// `connection lost` (the Last Will) or `stopped`.
    reason: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    time_ms: Option<u64>,
}

/// The online status.
pub fn online(identity: &Identity, pipeline: &PipelineStatus, link: &LinkHealth, queue: QueueHealth) -> Vec<u8> {
    let status = Online {
        schema: SCHEMA,
        state: "online",
        device_id: &identity.device_id,
        version: env!("CARGO_PKG_VERSION"),
        model: &identity.model,
        precision: &identity.precision,
        uptime_s: pipeline.uptime.as_secs(),
        camera: camera_key(pipeline.camera),
        fps: rounded(f64::from(pipeline.fps), 2),
        encoder: Encoder { state: pipeline.encoder.key(), ms: rounded(f64::from(pipeline.encoder_ms), 1) },
        prompts: Prompts {
            queue_depth: pipeline.queue_depth,
            queue_capacity: pipeline.queue_capacity,
            busy_rejections: pipeline.busy_rejections,
        },
        frames_superseded: pipeline.frames_superseded,
        capture_errors: pipeline.capture_errors,
        encoder_errors: pipeline.encoder_errors,
        mqtt: Mqtt { link, queue },
        time_ms: unix_ms(),
    };
    serde_json::to_vec(&status).unwrap_or_default()
}

/// The Last Will, set when connecting: the broker publishes it when the
/// connection dies without a goodbye.
pub fn last_will(identity: &Identity) -> Vec<u8> {
    offline(identity, "connection lost", None)
}

/// What the daemon says itself when it stops.
pub fn stopped(identity: &Identity) -> Vec<u8> {
    offline(identity, "stopped", Some(unix_ms()))
}

fn offline(identity: &Identity, reason: &str, time_ms: Option<u64>) -> Vec<u8> {
    let status = Offline { schema: SCHEMA, state: "offline", device_id: &identity.device_id, reason, time_ms };
    serde_json::to_vec(&status).unwrap_or_default()
}

/// What changes of the pipeline's state are published at once, rather
/// than at the next period.
pub fn change_key(pipeline: &PipelineStatus) -> (CameraState, &'static str) {
    (pipeline.camera, pipeline.encoder.key())
}

pub fn camera_key(camera: CameraState) -> &'static str {
    match camera {
        CameraState::Starting => "starting",
        CameraState::Streaming => "streaming",
        CameraState::Stalled => "stalled",
        CameraState::Disconnected => "disconnected",
        CameraState::Ended => "ended",
    }
}

fn unix_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::EncoderState;
    use std::time::Duration;

    #[test]
    fn the_online_status_reports_health_and_the_queue() {
        let identity = Identity { device_id: "cam-7".into(), model: "mobile_sam".into(), precision: "int8".into() };
        let pipeline = PipelineStatus {
            uptime: Duration::from_secs(61),
            fps: 0.2,
            encoder_ms: 2570.04,
            camera: CameraState::Streaming,
            encoder: EncoderState::Local,
            queue_depth: 0,
            queue_capacity: 4,
            frames_superseded: 3,
            capture_errors: 0,
            busy_rejections: 1,
            encoder_errors: 0,
        };
        let link = LinkHealth { broker: "mqtt://b:1883".into(), reconnects: 2, last_error: Some("I/O".into()) };
        let queue = QueueHealth { delivered: 9, queued: 1, queue_limit: 64, dropped: Drops { answers: 5, ..Drops::default() } };
        let status: serde_json::Value = serde_json::from_slice(&online(&identity, &pipeline, &link, queue)).unwrap();
        assert_eq!(status["state"], "online");
        assert_eq!((status["camera"].as_str(), status["encoder"]["state"].as_str()), (Some("streaming"), Some("local")));
        assert_eq!(status["encoder"]["ms"], 2570.0);
        assert_eq!(status["mqtt"]["dropped"]["answers"], 5);
        assert_eq!((status["mqtt"]["reconnects"].as_u64(), status["mqtt"]["queued"].as_u64()), (Some(2), Some(1)));
        let will: serde_json::Value = serde_json::from_slice(&last_will(&identity)).unwrap();
        assert_eq!(will, serde_json::json!({"schema": 1, "state": "offline", "device_id": "cam-7", "reason": "connection lost"}));
    }
}
