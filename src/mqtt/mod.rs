//! MQTT for fleets of boards (docs/MQTT.md): each daemon publishes its
//! retained status (with a Last Will, so a board that dies shows offline),
//! every prompt answer, the objects everything jobs find and an optional
//! JPEG snapshot, and takes remote prompts through the same queue and rules
//! as the serial line. An adapter like the others: it reads the pipeline's
//! answer and object feeds and submits jobs; the pipeline knows nothing of it.
//!
//! ```text
//! pipeline feeds ──▶ [adapter thread] ──▶ Outbox (bounded) ──▶ [mqtt-net] ──▶ broker
//! pipeline.submit ◀── remote prompts ◀────────────────────────── (rumqttc, MQTT 5)
//! ```
//!
//! MQTT 5 (rumqttc's `v5` client): its response topic and correlation data
//! route replies to whoever asked, reason codes say why a broker refused
//! the connection, and a maximum packet size keeps oversized prompts away.

mod discovery;
mod link;
mod outbox;
mod payload;
mod requests;
mod settings;
mod snapshot;
mod status;
mod tls;
mod topics;

pub use outbox::Drops;
pub use payload::{AnswerRecord, ErrorCode, Malformed, MaskRecord, Outcome, PromptRequest, MAX_POINTS, SCHEMA};
pub use settings::{host_name, Broker, Credentials, MqttSettings, Publish, Qos, StreamQos, TlsSettings};
pub use tls::client_config;
pub use topics::Topics;

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use crossbeam_channel::{bounded, never, select, tick, unbounded, Receiver, Sender};
use log::{debug, info, warn};
use rumqttc::v5::mqttbytes::v5::Publish as IncomingPublish;

use crate::pipeline::{Answer, Job, Objects, Pipeline, Rejection, Reply};
use link::{Link, LinkEvent};
use outbox::{Message, Stream};
use payload::{AnswerPayload, ObjectsPayload, ReplyPayload};
use requests::{RecentRequests, Seen};
use status::Identity;

/// The content type of every JSON payload.
pub const JSON: &str = "application/json";
const JPEG: &str = "image/jpeg";

/// Answers and object sets buffered between the pipeline and this adapter.
const ANSWERS_BUFFERED: usize = 64;
const OBJECTS_BUFFERED: usize = 4;
/// Remote prompts buffered between the network thread and this adapter.
const PROMPTS_BUFFERED: usize = 64;
/// How often the status, the snapshot and a stop are looked at.
const TICK: Duration = Duration::from_millis(250);
/// How long a stop waits for remote prompts in flight, then for the queue to drain.
const DRAIN_PROMPTS: Duration = Duration::from_secs(5);
const DRAIN_QUEUE: Duration = Duration::from_secs(2);

/// The adapter, connected (or connecting) to the broker.
pub struct Mqtt {
    settings: MqttSettings,
    identity: Identity,
    link: Arc<Link>,
    events: Receiver<LinkEvent>,
}

impl Mqtt {
    /// Starts connecting to the broker; publishing and prompts start with [`Mqtt::run`].
    ///
    /// # Errors
    /// The TLS files cannot be used, or a thread cannot start.
    pub fn start(settings: &MqttSettings, pipeline: &Pipeline) -> Result<Mqtt> {
        let sam = pipeline.sam();
        let identity = Identity {
            device_id: settings.device_id.clone(),
            model: sam.manifest().model.clone(),
            precision: sam.precision().to_string(),
        };
        let (events_in, events) = bounded(PROMPTS_BUFFERED);
        let link = Link::start(settings, status::last_will(&identity), events_in)?;
        info!("mqtt: {} as {} ({})", settings.broker.url, settings.device_id, settings.topics.status);
        Ok(Mqtt { settings: settings.clone(), identity, link, events })
    }

    /// Publishes and takes remote prompts until `stop`; then answers the
    /// prompts in flight, publishes the offline status and says goodbye.
    /// `report` is told the connection's state in words whenever it changes
    /// (the service manager's status line).
    pub fn run(self, pipeline: &Pipeline, stop: &AtomicBool, report: &(dyn Fn(&str) + Sync)) {
        let publish = &self.settings.publish;
        let answers = (publish.answers || publish.snapshot_every.is_some()).then(|| pipeline.subscribe_answers(ANSWERS_BUFFERED));
        let objects = publish.objects.then(|| pipeline.subscribe_objects(OBJECTS_BUFFERED));
        let (no_answers, no_objects, no_events) = (never(), never(), never());
        let answers_in = answers.as_ref().map_or(&no_answers, |s| s.receiver());
        let objects_in = objects.as_ref().map_or(&no_objects, |s| s.receiver());
        let mut events_in = &self.events;
        let (replies, replied) = unbounded();
        let ticks = tick(TICK);
        let mut adapter = Adapter::new(&self, pipeline, replies);
        let mut stopping_since = None;
        loop {
            select! {
                recv(answers_in) -> answer => if let Ok(answer) = answer {
                    // A waiting requester first: its reply is built before the broadcast copy.
                    while let Ok(reply) = replied.try_recv() {
                        adapter.reply(reply);
                    }
                    adapter.answer(answer);
                },
                recv(objects_in) -> found => if let Ok(found) = found { adapter.objects(&found) },
                recv(events_in) -> event => match event {
                    Ok(LinkEvent::Connected) => adapter.connected(),
                    Ok(LinkEvent::Prompt(publish)) => adapter.prompt(*publish, stopping_since.is_some()),
                    Err(_) => events_in = &no_events,
                },
                recv(replied) -> reply => if let Ok(reply) = reply { adapter.reply(reply) },
                recv(ticks) -> _ => {
                    adapter.tick(report);
                    if stop.load(Ordering::Relaxed) {
                        let since = *stopping_since.get_or_insert_with(Instant::now);
                        if adapter.pending.is_empty() || since.elapsed() > DRAIN_PROMPTS {
                            break;
                        }
                    }
                }
            }
        }
        let dropped = answers.as_ref().map_or(0, |s| s.dropped()) + objects.as_ref().map_or(0, |s| s.dropped());
        if dropped > 0 {
            warn!("mqtt: {dropped} answers or object sets came faster than they could be queued, and were not published");
        }
        adapter
            .publish(adapter.message(Stream::Status, &self.settings.topics.status, status::stopped(&self.identity), JSON), false);
        if !self.link.flush(DRAIN_QUEUE) {
            warn!("mqtt: {} messages were not delivered before stopping", self.link.health().1.queued);
        }
        self.link.close();
    }
}

/// A remote prompt waiting for its answer.
#[derive(Debug)]
struct Pending {
    id: Option<String>,
    target: ReplyTarget,
    /// Where duplicates that arrived meanwhile want the reply too.
    duplicates: Vec<ReplyTarget>,
    with_rle: bool,
}

/// Where a reply goes.
#[derive(Debug, Clone)]
struct ReplyTarget {
    topic: String,
    correlation: Option<Vec<u8>>,
}

/// The adapter thread's state.
struct Adapter<'a> {
    mqtt: &'a Mqtt,
    pipeline: &'a Pipeline,
    replies: Sender<Reply>,
    recent: RecentRequests,
    pending: HashMap<u32, Pending>,
    next_tag: u32,
    /// The pipeline state last published, and when the next periodic status is due.
    status_key: Option<(crate::pipeline::CameraState, &'static str)>,
    next_status: Instant,
    /// The newest answer and what the last snapshot showed.
    latest_answer: Option<Arc<Answer>>,
    snapshot_answer: Option<Instant>,
    snapshot_frame: Option<u32>,
    next_snapshot: Instant,
    reported: String,
    /// Records of the last answers (with their RLE), built once for the reply and the answers topic.
    records: VecDeque<(Arc<Answer>, AnswerRecord)>,
}

/// Answer records kept for reuse: a reply and its broadcast copy come close together.
const RECORDS_KEPT: usize = 8;

impl<'a> Adapter<'a> {
    fn new(mqtt: &'a Mqtt, pipeline: &'a Pipeline, replies: Sender<Reply>) -> Adapter<'a> {
        Adapter {
            mqtt,
            pipeline,
            replies,
            recent: RecentRequests::default(),
            pending: HashMap::new(),
            next_tag: 0,
            status_key: None,
            next_status: Instant::now(),
            latest_answer: None,
            snapshot_answer: None,
            snapshot_frame: None,
            next_snapshot: Instant::now(),
            reported: String::new(),
            records: VecDeque::new(),
        }
    }

    fn settings(&self) -> &MqttSettings {
        &self.mqtt.settings
    }

    fn message(&self, stream: Stream, topic: &str, payload: Vec<u8>, content_type: &'static str) -> Message {
        let qos = &self.settings().qos;
        let (qos, retain) = match stream {
            Stream::Status => (qos.status, true),
            Stream::Snapshot => (qos.snapshot, true),
            Stream::Objects => (qos.objects, false),
            Stream::Answers => (qos.answers, false),
            Stream::Replies => (qos.replies, false),
            Stream::Discovery => (Qos::AtLeastOnce, true),
        };
        Message { stream, topic: topic.to_string(), payload, qos, retain, content_type, correlation: None }
    }

    fn publish(&self, message: Message, first: bool) {
        self.mqtt.link.push(message, first);
    }

    fn status_message(&self) -> Message {
        let (link, queue) = self.mqtt.link.health();
        let payload = status::online(&self.mqtt.identity, &self.pipeline.status(), &link, queue);
        self.message(Stream::Status, &self.settings().topics.status, payload, JSON)
    }

    /// A new connection: the retained messages are published afresh (a
    /// restarted broker may have lost them), the status before the backlog.
    fn connected(&mut self) {
        if let Some(prefix) = &self.settings().publish.home_assistant {
            for config in discovery::configs(prefix, self.settings(), &self.mqtt.identity) {
                let payload = serde_json::to_vec(&config.payload).unwrap_or_default();
                self.publish(self.message(Stream::Discovery, &config.topic, payload, JSON), true);
            }
        }
        self.publish(self.status_message(), true);
        self.next_status = Instant::now() + self.settings().status_every;
    }

    /// `answer` as a record, its mask's RLE included when `with_rle`. The
    /// geometry (a distance transform) takes tens of milliseconds on a big
    /// mask: it is measured once per answer.
    fn record(&mut self, answer: &Arc<Answer>, with_rle: bool) -> AnswerRecord {
        let mut record = match self.records.iter().find(|(known, _)| Arc::ptr_eq(known, answer)) {
            Some((_, record)) => record.clone(),
            None => {
                let record = AnswerRecord::new(answer, true);
                if self.records.len() == RECORDS_KEPT {
                    self.records.pop_front();
                }
                self.records.push_back((answer.clone(), record.clone()));
                record
            }
        };
        if !with_rle {
            record.mask.segmentation = None;
        }
        record
    }

    fn answer(&mut self, answer: Arc<Answer>) {
        if self.settings().publish.answers {
            let record = self.record(&answer, self.settings().publish.answer_masks);
            let payload = serde_json::to_vec(&AnswerPayload { schema: SCHEMA, answer: &record }).unwrap_or_default();
            self.publish(self.message(Stream::Answers, &self.settings().topics.answers, payload, JSON), false);
        }
        self.latest_answer = Some(answer);
    }

    fn objects(&mut self, found: &Objects) {
        let payload = serde_json::to_vec(&ObjectsPayload::new(found)).unwrap_or_default();
        self.publish(self.message(Stream::Objects, &self.settings().topics.objects, payload, JSON), false);
    }

    /// Publishes the status on a change of state or when due, the snapshot
    /// when due, and reports the connection's state.
    fn tick(&mut self, report: &(dyn Fn(&str) + Sync)) {
        let now = Instant::now();
        let key = status::change_key(&self.pipeline.status());
        if self.status_key != Some(key) || now >= self.next_status {
            self.status_key = Some(key);
            self.next_status = now + self.settings().status_every;
            self.publish(self.status_message(), false);
        }
        if let Some(every) = self.settings().publish.snapshot_every {
            if now >= self.next_snapshot {
                self.next_snapshot = now + every;
                self.snapshot();
            }
        }
        let (link, _) = self.mqtt.link.health();
        let text = match (&link.last_error, self.mqtt.link.is_connected()) {
            (_, true) => format!("mqtt: connected to {}", link.broker),
            (Some(error), false) => format!("mqtt: {error}"),
            (None, false) => format!("mqtt: connecting to {}", link.broker),
        };
        if text != self.reported {
            report(&text);
            self.reported = text;
        }
    }

    /// The newest answer's frame with its mask, or the newest frame when
    /// nothing was answered since the last snapshot; nothing when neither is new.
    fn snapshot(&mut self) {
        let answer = self.latest_answer.clone().filter(|a| Some(a.decoded_at) != self.snapshot_answer);
        let jpeg = match answer {
            Some(answer) => {
                self.snapshot_answer = Some(answer.decoded_at);
                snapshot::answer_jpeg(&answer)
            }
            None => {
                let Some(embedded) = self.pipeline.cache().latest() else { return };
                if Some(embedded.frame.id) == self.snapshot_frame {
                    return;
                }
                self.snapshot_frame = Some(embedded.frame.id);
                snapshot::jpeg(&embedded.frame.image)
            }
        };
        match jpeg {
            Ok(jpeg) => self.publish(self.message(Stream::Snapshot, &self.settings().topics.snapshot, jpeg, JPEG), false),
            Err(e) => warn!("mqtt: snapshot: {e:#}"),
        }
    }

    /// A message on the prompt topic: checked, deduplicated by request id,
    /// queued on the pipeline like a serial prompt, or answered at once
    /// with what is wrong.
    fn prompt(&mut self, publish: IncomingPublish, stopping: bool) {
        let properties = publish.properties.unwrap_or_default();
        let correlation = properties.correlation_data.map(|b| b.to_vec());
        let default = ReplyTarget { topic: self.settings().topics.reply.clone(), correlation };
        let target = match properties.response_topic {
            None => default,
            Some(topic) if valid_topic(&topic) => ReplyTarget { topic, ..default },
            Some(topic) => {
                let outcome = Outcome::error(
                    ErrorCode::Malformed,
                    format!("the response topic {topic:?} is not a topic one can publish to"),
                );
                return self.send_reply(&default, None, &outcome);
            }
        };
        let request = match PromptRequest::parse(&publish.payload) {
            Ok(request) => request,
            Err(malformed) => {
                debug!("mqtt: malformed prompt: {}", malformed.message);
                let outcome = Outcome::error(ErrorCode::Malformed, malformed.message);
                return self.send_reply(&target, malformed.id.as_deref(), &outcome);
            }
        };
        if let Some(id) = &request.id {
            match self.recent.seen(id) {
                Seen::New => {}
                Seen::InFlight => {
                    debug!("mqtt: prompt {id:?} is a duplicate of one in flight: it gets the same reply");
                    if let Some(first) = self.pending.values_mut().find(|p| p.id.as_ref() == Some(id)) {
                        first.duplicates.push(target);
                    }
                    return;
                }
                Seen::Answered(outcome) => {
                    debug!("mqtt: prompt {id:?} is a duplicate, sending its reply again");
                    return self.send_reply(&target, Some(id), &outcome);
                }
            }
        }
        let pending = Pending { id: request.id, target, duplicates: Vec::new(), with_rle: request.with_rle };
        if stopping {
            return self.settle(pending, Outcome::rejected(&Rejection::Stopping), true);
        }
        self.next_tag = self.next_tag.wrapping_add(1);
        let tag = self.next_tag;
        let job = Job { prompt: request.prompt, frame: request.frame, tag, reply: self.replies.clone() };
        match self.pipeline.submit(job) {
            Ok(()) => {
                self.pending.insert(tag, pending);
            }
            Err((rejection, _)) => {
                let retry = matches!(rejection, Rejection::Busy | Rejection::Stopping);
                self.settle(pending, Outcome::rejected(&rejection), retry);
            }
        }
    }

    fn reply(&mut self, reply: Reply) {
        let Some(pending) = self.pending.remove(&reply.tag) else { return };
        match reply.result {
            Ok(answer) => {
                let outcome = Outcome::Ok(self.record(&answer, pending.with_rle));
                self.settle(pending, outcome, false);
            }
            Err(rejection) => {
                let retry = matches!(rejection, Rejection::Busy | Rejection::Stopping);
                self.settle(pending, Outcome::rejected(&rejection), retry);
            }
        }
    }

    /// Sends a prompt's final reply and remembers it for duplicates; one
    /// that may succeed on a retry (busy) is forgotten instead.
    fn settle(&mut self, pending: Pending, outcome: Outcome, retry: bool) {
        if let Some(id) = &pending.id {
            if retry {
                self.recent.forget(id);
            } else {
                self.recent.finish(id, &outcome);
            }
        }
        for target in std::iter::once(&pending.target).chain(&pending.duplicates) {
            self.send_reply(target, pending.id.as_deref(), &outcome);
        }
    }

    fn send_reply(&self, target: &ReplyTarget, id: Option<&str>, outcome: &Outcome) {
        let payload = serde_json::to_vec(&ReplyPayload { schema: SCHEMA, id, outcome }).unwrap_or_default();
        let mut message = self.message(Stream::Replies, &target.topic, payload, JSON);
        message.correlation = target.correlation.clone();
        self.publish(message, false);
    }
}

/// A topic a message can be published to: not empty, no wildcards.
fn valid_topic(topic: &str) -> bool {
    !topic.is_empty() && topic.len() < usize::from(u16::MAX) && !topic.contains(['+', '#', '\0'])
}
