//! Home Assistant MQTT discovery: retained configs that make each board a
//! device with sensors read from its status topic (and a camera showing its
//! snapshots), available while the status says online.

use serde_json::{json, Value};

use super::settings::MqttSettings;
use super::status::Identity;

/// One retained discovery config: its topic and JSON.
#[derive(Debug, Clone, PartialEq)]
pub struct DiscoveryConfig {
    pub topic: String,
    pub payload: Value,
}

/// The configs for this board under `prefix` (Home Assistant's default is
/// `homeassistant`).
pub fn configs(prefix: &str, settings: &MqttSettings, identity: &Identity) -> Vec<DiscoveryConfig> {
    // Discovery ids allow only [a-zA-Z0-9_-].
    let node: String = format!("maskd_{}", settings.device_id)
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' })
        .collect();
    let device = json!({
        "identifiers": [node],
        "name": format!("maskd {}", settings.device_id),
        "manufacturer": "maskd",
        "model": identity.model,
        "sw_version": env!("CARGO_PKG_VERSION"),
    });
    let status = &settings.topics.status;
    let entity = |component: &str, object: &str, name: &str, extra: Value| {
        let mut payload = json!({
            "name": name,
            "unique_id": format!("{node}_{object}"),
            "object_id": format!("{node}_{object}"),
            "device": device,
            "availability_topic": status,
            "availability_template": "{{ value_json.state }}",
            "payload_available": "online",
            "payload_not_available": "offline",
        });
        if let (Value::Object(payload), Value::Object(extra)) = (&mut payload, extra) {
            payload.extend(extra);
        }
        DiscoveryConfig { topic: format!("{prefix}/{component}/{node}/{object}/config"), payload }
    };
    let sensor = |object: &str, name: &str, template: &str, extra: Value| {
        let mut fields = json!({ "state_topic": status, "value_template": template });
        if let (Value::Object(fields), Value::Object(extra)) = (&mut fields, extra) {
            fields.extend(extra);
        }
        entity("sensor", object, name, fields)
    };
    let mut configs = vec![
        sensor("camera", "Camera", "{{ value_json.camera }}", json!({ "icon": "mdi:cctv" })),
        sensor("fps", "Frames per second", "{{ value_json.fps }}", json!({ "unit_of_measurement": "fps", "state_class": "measurement" })),
        sensor(
            "encoder_ms",
            "Encoder time",
            "{{ value_json.encoder.ms }}",
            json!({ "unit_of_measurement": "ms", "device_class": "duration", "state_class": "measurement" }),
        ),
        sensor("encoder", "Encoder", "{{ value_json.encoder.state }}", json!({ "icon": "mdi:chip" })),
        sensor(
            "dropped",
            "MQTT messages dropped",
            "{{ value_json.mqtt.dropped.status + value_json.mqtt.dropped.snapshot + value_json.mqtt.dropped.objects + value_json.mqtt.dropped.answers + value_json.mqtt.dropped.replies }}",
            json!({ "state_class": "total_increasing", "entity_category": "diagnostic" }),
        ),
        sensor(
            "uptime",
            "Uptime",
            "{{ value_json.uptime_s }}",
            json!({ "unit_of_measurement": "s", "device_class": "duration", "entity_category": "diagnostic" }),
        ),
    ];
    if settings.publish.snapshot_every.is_some() {
        configs.push(entity("camera", "snapshot", "Snapshot", json!({ "topic": settings.topics.snapshot })));
    }
    configs
}
