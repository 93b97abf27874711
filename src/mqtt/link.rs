//! The connection to the broker: a network thread drives rumqttc's MQTT 5
//! event loop, reconnects with backoff (a fresh client and a clean session
//! each time), and feeds the [`Outbox`] with what the broker acknowledged;
//! any thread queues messages through [`Link::push`].

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use bytes::Bytes;
use crossbeam_channel::{Sender, TrySendError};
use log::{debug, error, info, warn};
use rumqttc::v5::mqttbytes::v5::{ConnectReturnCode, LastWill, LastWillProperties, Packet, Publish, PublishProperties};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{Client, ConnectionError, Event, MqttOptions, StateError};
use rumqttc::{NetworkOptions, Outgoing, TlsConfiguration, Transport};

use super::outbox::{Drops, Message, Outbox, Stream};
use super::settings::{MqttSettings, Qos};
use super::status::{LinkHealth, QueueHealth};
use super::tls;

/// Messages in flight on one connection, before the broker's receive maximum.
const WINDOW: usize = 16;
/// Largest packet the broker may send (a prompt): it drops bigger ones.
pub const MAX_INCOMING: u32 = 64 * 1024;
/// How long a connection attempt (TCP, TLS, CONNECT) may take.
const CONNECT_TIMEOUT_S: u64 = 5;
/// How often a backoff wait checks for a stop.
const POLL: Duration = Duration::from_millis(100);

/// What the network thread tells the adapter.
#[derive(Debug)]
pub enum LinkEvent {
    /// A connection is up (again): time to refresh the retained messages.
    Connected,
    /// A message on the prompt topic.
    Prompt(Box<Publish>),
}

/// The queue towards the broker and the connection's state, shared by the
/// network thread and the threads that publish.
pub struct Link {
    state: Mutex<State>,
    /// Signalled whenever the outbox shrinks.
    progress: Condvar,
    stop: AtomicBool,
}

struct State {
    outbox: Outbox,
    /// The connected client; `None` while connecting or away.
    client: Option<Client>,
    health: LinkHealth,
    /// Drops already logged, so that each stream is logged once per outage.
    drops_logged: Drops,
}

impl Link {
    /// Starts the network thread; it connects, and reconnects, until [`Link::close`].
    ///
    /// # Errors
    /// The TLS files cannot be used, or the thread cannot start.
    pub fn start(settings: &MqttSettings, will: Vec<u8>, events: Sender<LinkEvent>) -> Result<Arc<Link>> {
        let options = options(settings, will)?;
        let link = Arc::new(Link {
            state: Mutex::new(State {
                outbox: Outbox::new(settings.queue_limit, WINDOW),
                client: None,
                health: LinkHealth { broker: settings.broker.url.clone(), ..LinkHealth::default() },
                drops_logged: Drops::default(),
            }),
            progress: Condvar::new(),
            stop: AtomicBool::new(false),
        });
        let network = Network {
            link: link.clone(),
            options,
            prompt_topic: settings.prompts.then(|| settings.topics.prompt.clone()),
            events,
            backoff: (settings.backoff_min, settings.backoff_max),
        };
        // Not scoped: a connection attempt in progress cannot be cut short,
        // and the process need not wait for it to exit.
        std::thread::Builder::new()
            .name("mqtt-net".into())
            .spawn(move || network.run())
            .context("starting the mqtt-net thread")?;
        Ok(link)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues `message` (sent at once when connected), first when `first`.
    pub fn push(&self, message: Message, first: bool) {
        let mut state = self.lock();
        let stream = message.stream;
        let dropped = if first { state.outbox.push_front(message) } else { state.outbox.push(message) };
        if let Some(dropped) = dropped {
            state.log_drop(dropped, stream);
        }
        state.pump();
    }

    /// Whether a connection is up.
    pub fn is_connected(&self) -> bool {
        self.lock().client.is_some()
    }

    /// The connection's and the queue's state, for the status payload.
    pub fn health(&self) -> (LinkHealth, QueueHealth) {
        let state = self.lock();
        let queue = QueueHealth {
            delivered: state.outbox.delivered(),
            queued: state.outbox.len(),
            queue_limit: state.outbox.limit(),
            dropped: state.outbox.drops(),
        };
        (state.health.clone(), queue)
    }

    /// Waits up to `within` for every queued message to reach the broker;
    /// returns whether they did.
    pub fn flush(&self, within: Duration) -> bool {
        let until = Instant::now() + within;
        let mut state = self.lock();
        while !state.outbox.is_empty() {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() || state.client.is_none() {
                return false;
            }
            state = self.progress.wait_timeout(state, left.min(POLL)).unwrap_or_else(PoisonError::into_inner).0;
        }
        true
    }

    /// Says goodbye to the broker (so it does not publish the Last Will)
    /// and stops reconnecting.
    pub fn close(&self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(client) = self.lock().client.take() {
            let _ = client.try_disconnect();
        }
    }
}

impl State {
    /// Hands waiting messages to the client while its window has room.
    fn pump(&mut self) {
        let Some(client) = &self.client else { return };
        while let Some(message) = self.outbox.hand_over() {
            let properties = PublishProperties {
                content_type: Some(message.content_type.to_string()),
                correlation_data: message.correlation.map(Bytes::from),
                ..PublishProperties::default()
            };
            let sent =
                client.try_publish_with_properties(message.topic, qos(message.qos), message.retain, message.payload, properties);
            if let Err(e) = sent {
                debug!("mqtt: the client took no more messages: {e}");
                self.outbox.take_back();
                break;
            }
        }
    }

    /// Logs the first drop of each stream while the broker is away.
    fn log_drop(&mut self, dropped: Stream, incoming: Stream) {
        let drops = self.outbox.drops();
        let count = |d: &Drops| match dropped {
            Stream::Status => d.status,
            Stream::Snapshot => d.snapshot,
            Stream::Objects => d.objects,
            Stream::Answers => d.answers,
            Stream::Replies => d.replies,
            Stream::Discovery => d.discovery,
        };
        // A status replacing a waiting one is routine while away: not worth a line.
        let routine = dropped == incoming && matches!(dropped, Stream::Status | Stream::Snapshot);
        if count(&self.drops_logged) == 0 && !routine {
            warn!(
                "mqtt: {} messages wait for the broker ({}): dropping {dropped:?} messages, counted in the status' mqtt.dropped",
                self.outbox.len(),
                if self.client.is_some() { "it is slow" } else { "it is away" },
            );
            self.drops_logged = drops;
        }
    }
}

/// The network thread's own state.
struct Network {
    link: Arc<Link>,
    options: MqttOptions,
    prompt_topic: Option<String>,
    events: Sender<LinkEvent>,
    backoff: (Duration, Duration),
}

/// How one connection ended.
enum Ended {
    /// The daemon said goodbye.
    Closed,
    /// It broke or never came up; `up` when it had been connected.
    Failed { error: ConnectionError, up: bool },
}

impl Network {
    fn run(self) {
        let (min, max) = self.backoff;
        let mut backoff = min;
        let mut connected_before = false;
        let mut last_error = String::new();
        while !self.link.stop.load(Ordering::SeqCst) {
            let (error, up) = match self.connect_once(&mut connected_before) {
                Ended::Closed => break,
                Ended::Failed { error, up } => (error, up),
            };
            if self.link.stop.load(Ordering::SeqCst) {
                break;
            }
            if up {
                backoff = min;
            }
            let text = describe(&error, &self.options);
            {
                let mut state = self.link.lock();
                state.client = None;
                state.outbox.requeue();
                state.health.last_error = Some(text.clone());
            }
            let retry = format!("retrying in {:.1} s", backoff.as_secs_f64());
            if up || text != last_error {
                if matches!(error, ConnectionError::ConnectionRefused(_)) {
                    error!("mqtt: {text}; {retry}");
                } else {
                    warn!("mqtt: {text}; {retry}");
                }
            } else {
                debug!("mqtt: {text}; {retry}");
            }
            last_error = text;
            let until = Instant::now() + backoff;
            while Instant::now() < until && !self.link.stop.load(Ordering::SeqCst) {
                std::thread::sleep(POLL.min(until.saturating_duration_since(Instant::now())));
            }
            backoff = (backoff * 2).min(max);
        }
        debug!("mqtt: the network thread ends");
    }

    /// Connects with a fresh client and serves the connection until it ends.
    fn connect_once(&self, connected_before: &mut bool) -> Ended {
        let (client, mut connection) = Client::new(self.options.clone(), WINDOW + 8);
        let mut up = false;
        for event in connection.iter() {
            let event = match event {
                Ok(event) => event,
                Err(error) => return Ended::Failed { error, up },
            };
            match event {
                Event::Incoming(Packet::ConnAck(connack)) => {
                    up = true;
                    if let Some(topic) = &self.prompt_topic {
                        if let Err(e) = client.try_subscribe(topic.as_str(), QoS::AtLeastOnce) {
                            warn!("mqtt: subscribing to {topic}: {e}");
                        }
                    }
                    let receive_max = connack.properties.as_ref().and_then(|p| p.receive_max).map_or(WINDOW, usize::from);
                    self.connected(&client, receive_max.min(WINDOW), connected_before);
                }
                Event::Incoming(Packet::PubAck(ack)) => self.progress(|outbox| outbox.acked(ack.pkid)),
                Event::Incoming(Packet::Publish(publish)) => {
                    if let Err(TrySendError::Full(_)) = self.events.try_send(LinkEvent::Prompt(Box::new(publish))) {
                        warn!("mqtt: remote prompts arrive faster than they are queued; one was dropped");
                    }
                }
                Event::Outgoing(Outgoing::Publish(packet_id) | Outgoing::AwaitAck(packet_id)) => {
                    self.progress(|outbox| outbox.written(packet_id));
                }
                Event::Outgoing(Outgoing::Disconnect) => return Ended::Closed,
                _ => {}
            }
        }
        // Every client handle is gone: the link was closed.
        Ended::Closed
    }

    fn connected(&self, client: &Client, window: usize, connected_before: &mut bool) {
        let mut state = self.link.lock();
        if self.link.stop.load(Ordering::SeqCst) {
            let _ = client.try_disconnect();
            return;
        }
        state.outbox.set_window(window);
        if *connected_before {
            state.health.reconnects += 1;
        }
        let dropped = state.outbox.drops();
        info!(
            "mqtt: connected to {}{}; {} messages waited, {} dropped so far",
            state.health.broker,
            if *connected_before { " again" } else { "" },
            state.outbox.len(),
            dropped.total()
        );
        *connected_before = true;
        state.health.last_error = None;
        state.drops_logged = Drops::default();
        state.client = Some(client.clone());
        state.pump();
        drop(state);
        let _ = self.events.try_send(LinkEvent::Connected);
    }

    /// Applies a delivery to the outbox and sends what now fits the window.
    fn progress(&self, update: impl FnOnce(&mut Outbox)) {
        let mut state = self.link.lock();
        update(&mut state.outbox);
        state.pump();
        self.link.progress.notify_all();
    }
}

/// rumqttc's options for `settings`, with `will` as the Last Will.
fn options(settings: &MqttSettings, will: Vec<u8>) -> Result<MqttOptions> {
    let broker = &settings.broker;
    let mut options = MqttOptions::new(format!("maskd-{}", settings.device_id), broker.host.clone(), broker.port);
    options
        .set_keep_alive(settings.keep_alive)
        // The daemon keeps its own queue: each connection starts afresh.
        .set_clean_start(true)
        .set_connection_timeout(CONNECT_TIMEOUT_S)
        .set_outgoing_inflight_upper_limit(WINDOW as u16)
        .set_max_packet_size(Some(MAX_INCOMING))
        .set_last_will(LastWill::new(
            settings.topics.status.clone(),
            will,
            qos(settings.qos.status),
            true,
            Some(LastWillProperties {
                delay_interval: None,
                payload_format_indicator: None,
                message_expiry_interval: None,
                content_type: Some(super::JSON.to_string()),
                response_topic: None,
                correlation_data: None,
                user_properties: Vec::new(),
            }),
        ));
    // Replies and acknowledgements are small packets: without this, Nagle's
    // algorithm and the peer's delayed ACK add about 40 ms to each.
    let mut network = NetworkOptions::new();
    network.set_tcp_nodelay(true);
    options.set_network_options(network);
    if let Some(credentials) = &settings.credentials {
        options.set_credentials(credentials.username.clone(), credentials.password.clone());
    }
    if let Some(tls) = &broker.tls {
        options.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(tls::client_config(tls)?)));
    }
    Ok(options)
}

fn qos(qos: Qos) -> QoS {
    match qos {
        Qos::AtMostOnce => QoS::AtMostOnce,
        Qos::AtLeastOnce => QoS::AtLeastOnce,
    }
}

/// A connection failure in words an operator can act on.
fn describe(error: &ConnectionError, options: &MqttOptions) -> String {
    let (host, port) = options.broker_address();
    match error {
        ConnectionError::ConnectionRefused(code) | ConnectionError::MqttState(StateError::ConnFail { reason: code }) => {
            let why = match code {
                ConnectReturnCode::BadUserNamePassword => "bad user name or password (mqtt.username, mqtt.password)",
                ConnectReturnCode::NotAuthorized => {
                    "not authorized: a wrong user name or password, or the broker's access rules (mqtt.username, mqtt.password)"
                }
                ConnectReturnCode::ClientIdentifierNotValid => "the client id is not valid (mqtt.device_id)",
                ConnectReturnCode::Banned => "this client is banned",
                _ => "",
            };
            if why.is_empty() {
                format!("the broker {host}:{port} refused the connection: {code:?}")
            } else {
                format!("the broker {host}:{port} refused the connection: {why}")
            }
        }
        ConnectionError::Io(e) => format!("cannot reach the broker {host}:{port}: {e}"),
        ConnectionError::Tls(e) => format!("TLS with {host}:{port} failed: {e} (mqtt.ca_file, mqtt.client_cert)"),
        ConnectionError::Timeout(_) => format!("the broker {host}:{port} did not answer within {CONNECT_TIMEOUT_S} s"),
        ConnectionError::MqttState(StateError::ServerDisconnect { reason_code, reason_string }) => {
            format!("the broker {host}:{port} closed the connection: {reason_code:?} {}", reason_string.as_deref().unwrap_or(""))
                .trim_end()
                .to_string()
        }
        ConnectionError::MqttState(e) => format!("the connection to {host}:{port} broke: {e}"),
        other => format!("the connection to {host}:{port} broke: {other}"),
    }
}
