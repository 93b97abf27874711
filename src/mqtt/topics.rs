//! The board's topics, `<prefix>/<device id>/...` (docs/MQTT.md).

use anyhow::{ensure, Result};

/// Every topic one board uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topics {
    /// Retained online/offline and health; the Last Will goes here.
    pub status: String,
    pub answers: String,
    pub objects: String,
    /// Subscribed: remote prompts.
    pub prompt: String,
    /// Replies to prompts that name no MQTT 5 response topic.
    pub reply: String,
    pub snapshot: String,
}

/// Longest device id: a topic level, a client id, a Home Assistant id.
const MAX_DEVICE_ID: usize = 64;

impl Topics {
    /// The topics under `prefix` (one or more levels) for `device_id` (one level).
    ///
    /// # Errors
    /// A wildcard, an empty level, or a `/` in the device id; the message
    /// names `mqtt.topic_prefix` or `mqtt.device_id`.
    pub fn new(prefix: &str, device_id: &str) -> Result<Topics> {
        ensure!(
            !prefix.is_empty() && prefix.split('/').all(valid_level),
            "mqtt.topic_prefix must be topic levels without wildcards (+, #) or empty levels, got {prefix:?}"
        );
        ensure!(
            valid_level(device_id) && !device_id.contains('/') && device_id.len() <= MAX_DEVICE_ID,
            "mqtt.device_id must be one topic level of 1-{MAX_DEVICE_ID} characters without /, + or #, got {device_id:?}"
        );
        let base = format!("{prefix}/{device_id}");
        Ok(Topics {
            status: format!("{base}/status"),
            answers: format!("{base}/answers"),
            objects: format!("{base}/objects"),
            prompt: format!("{base}/prompt"),
            reply: format!("{base}/prompt/reply"),
            snapshot: format!("{base}/snapshot"),
        })
    }
}

fn valid_level(level: &str) -> bool {
    !level.is_empty() && !level.contains(['+', '#', '\0']) && level.chars().all(|c| !c.is_control())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_sit_under_the_prefix_and_the_device() {
        let topics = Topics::new("factory/line1", "cam-7").unwrap();
        assert_eq!(topics.status, "factory/line1/cam-7/status");
        assert_eq!(topics.reply, "factory/line1/cam-7/prompt/reply");
    }

    #[test]
    fn wildcards_and_empty_levels_are_refused() {
        for (prefix, device) in
            [("maskd/#", "a"), ("maskd", "a+b"), ("", "a"), ("maskd//x", "a"), ("maskd", "a/b"), ("maskd", "")]
        {
            assert!(Topics::new(prefix, device).is_err(), "{prefix:?} {device:?}");
        }
        let err = Topics::new("maskd", "a/b").unwrap_err().to_string();
        assert!(err.contains("mqtt.device_id"), "{err}");
    }
}
