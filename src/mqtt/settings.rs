//! What the MQTT adapter is told: the broker, the board's topics, what it
//! publishes and how, as checked, typed values (resolved from `[mqtt]` by
//! the daemon's settings).

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use url::Url;

use super::topics::Topics;

/// Where the broker is and how to reach it.
#[derive(Debug, Clone, PartialEq)]
pub struct Broker {
    /// As configured, for logs and the status payload.
    pub url: String,
    pub host: String,
    pub port: u16,
    /// `Some` for `mqtts://`.
    pub tls: Option<TlsSettings>,
}

/// Whom a `mqtts://` broker's certificate must be signed by, and the
/// board's own certificate when the broker asks for one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    /// PEM CA certificates; `None`: the system's.
    pub ca_file: Option<PathBuf>,
    /// PEM certificate chain and private key.
    pub client_identity: Option<(PathBuf, PathBuf)>,
}

/// A user name and password for the broker.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl fmt::Debug for Credentials {
    /// Never prints the password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials").field("username", &self.username).finish_non_exhaustive()
    }
}

/// MQTT's delivery guarantees the daemon offers. Exactly-once is left out:
/// every connection starts a clean session, so a message in flight when
/// the broker goes away is sent again, and could arrive twice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Qos {
    AtMostOnce,
    AtLeastOnce,
}

impl Qos {
    /// `key = 0` or `1`, as the configuration writes it.
    ///
    /// # Errors
    /// Any other level, naming `key`.
    pub fn from_level(key: &str, level: u8) -> Result<Qos> {
        match level {
            0 => Ok(Qos::AtMostOnce),
            1 => Ok(Qos::AtLeastOnce),
            2 => bail!("{key} must be 0 or 1, got 2: exactly-once cannot survive the clean session of a reconnect"),
            n => bail!("{key} must be 0 or 1, got {n}"),
        }
    }

    pub fn level(self) -> u8 {
        match self {
            Qos::AtMostOnce => 0,
            Qos::AtLeastOnce => 1,
        }
    }
}

/// The QoS of each stream the daemon publishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamQos {
    pub status: Qos,
    pub answers: Qos,
    pub objects: Qos,
    pub snapshot: Qos,
    pub replies: Qos,
}

/// Which optional streams are published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publish {
    /// Every prompt answer, from any source.
    pub answers: bool,
    /// Answers carry their mask as COCO RLE (bigger messages).
    pub answer_masks: bool,
    /// Everything results (snapshots and requests from the line).
    pub objects: bool,
    /// `Some(period)`: a JPEG of the newest answer or frame at most this often.
    pub snapshot_every: Option<Duration>,
    /// `Some(prefix)`: Home Assistant discovery configs under this topic prefix.
    pub home_assistant: Option<String>,
}

/// The adapter as configured.
#[derive(Debug, Clone, PartialEq)]
pub struct MqttSettings {
    pub broker: Broker,
    pub device_id: String,
    pub topics: Topics,
    pub credentials: Option<Credentials>,
    pub keep_alive: Duration,
    /// Remote prompts are taken on the prompt topic.
    pub prompts: bool,
    pub publish: Publish,
    pub qos: StreamQos,
    /// Messages kept for the broker while it is away (in flight included).
    pub queue_limit: usize,
    /// The status is published on a change and at least this often.
    pub status_every: Duration,
    /// Waits between reconnection attempts, doubling from min to max.
    pub backoff_min: Duration,
    pub backoff_max: Duration,
}

impl Broker {
    /// Parses `mqtt://host[:port]` (default port 1883) or
    /// `mqtts://host[:port]` (8883); `tls` is used for the latter.
    ///
    /// # Errors
    /// Another scheme, no host, or a path, query, or credentials in the URL.
    pub fn from_url(url: &str, tls: TlsSettings) -> Result<Broker> {
        let parsed = Url::parse(url).with_context(|| format!("{url:?} is not a URL such as mqtt://broker:1883"))?;
        let (port, tls) = match parsed.scheme() {
            "mqtt" => (1883, None),
            "mqtts" => (8883, Some(tls)),
            other => bail!("{url:?}: the scheme must be mqtt:// or mqtts://, got {other}://"),
        };
        ensure!(
            parsed.username().is_empty() && parsed.password().is_none(),
            "{url:?}: put the user name and password in mqtt.username and mqtt.password, not in the URL"
        );
        ensure!(
            matches!(parsed.path(), "" | "/") && parsed.query().is_none() && parsed.fragment().is_none(),
            "{url:?}: only a host and a port are expected"
        );
        let host = parsed.host_str().filter(|h| !h.is_empty()).with_context(|| format!("{url:?} has no host"))?;
        Ok(Broker { url: url.to_string(), host: host.to_string(), port: parsed.port().unwrap_or(port), tls })
    }
}

/// The machine's host name, the default device id.
///
/// # Errors
/// The system call failed or the name is not UTF-8.
pub fn host_name() -> Result<String> {
    let mut buffer = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates within it.
    let status = unsafe { libc::gethostname(buffer.as_mut_ptr().cast(), buffer.len()) };
    ensure!(status == 0, "reading the host name: {}", std::io::Error::last_os_error());
    let end = buffer.iter().position(|&b| b == 0).unwrap_or(buffer.len());
    Ok(std::str::from_utf8(&buffer[..end]).context("the host name is not UTF-8")?.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_tls() -> TlsSettings {
        TlsSettings { ca_file: None, client_identity: None }
    }

    #[test]
    fn urls_give_host_port_and_transport() {
        let broker = Broker::from_url("mqtt://127.0.0.1:1884", no_tls()).unwrap();
        assert_eq!((broker.host.as_str(), broker.port, broker.tls), ("127.0.0.1", 1884, None));
        let broker = Broker::from_url("mqtts://broker.local", no_tls()).unwrap();
        assert_eq!((broker.host.as_str(), broker.port, broker.tls.is_some()), ("broker.local", 8883, true));
        assert_eq!(Broker::from_url("mqtt://b/", no_tls()).unwrap().port, 1883);
    }

    #[test]
    fn bad_urls_say_what_is_wrong() {
        for (url, expected) in [
            ("http://b:80", "mqtt:// or mqtts://"),
            ("mqtt://user:pw@b", "mqtt.username"),
            ("mqtt://b/topic", "only a host"),
            ("broker:1883", "scheme"),
            ("mqtt://", "no host"),
            ("not a url", "not a URL"),
        ] {
            let err = format!("{:#}", Broker::from_url(url, no_tls()).unwrap_err());
            assert!(err.contains(expected), "{url}: {err}");
        }
    }

    #[test]
    fn qos_2_is_refused_with_the_reason() {
        assert_eq!(Qos::from_level("mqtt.qos.answers", 1).unwrap(), Qos::AtLeastOnce);
        let err = Qos::from_level("mqtt.qos.answers", 2).unwrap_err().to_string();
        assert!(err.contains("mqtt.qos.answers") && err.contains("clean session"), "{err}");
    }

    #[test]
    fn the_host_name_is_read() {
        assert!(!host_name().unwrap().is_empty());
    }

    #[test]
    fn credentials_never_print_the_password() {
        let credentials = Credentials { username: "board".into(), password: "hunter2".into() };
        assert!(!format!("{credentials:?}").contains("hunter2"));
    }
}
