//! The daemon's side of the protocol: reads requests from the line, queues
//! prompts on the pipeline, and writes answers, errors and heartbeats.
//!
//! A reader thread owns the receiving half of the port and a writer thread
//! the sending half, so that a long answer never delays reading and a
//! heartbeat never waits for a request.
//!
//! A line nobody reads fills up: a write that times out (the port's
//! [`READ_TIMEOUT`](super::port::READ_TIMEOUT) applies to writes too) drops
//! what it was writing, the writer goes on, and the line recovers by itself
//! once a reader drains it. Answers stay kept for duplicates, so a client
//! that resends a request gets the answer it missed.

use std::collections::{HashMap, VecDeque};
use std::io::{self, Read, Write};
use std::num::NonZeroU8;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use crossbeam_channel::{never, select, tick, unbounded, Receiver, Sender};
use log::{debug, info, warn};

use super::chunk::answer_messages;
use super::codec::MAX_FRAME;
use super::geometry::{shape, WireMask};
use super::link::{Link, LinkError};
use super::message::*;
use crate::everything;
use crate::model::{self, BoxPrompt, Mask, Point as PromptPoint, Prompt};
use crate::pipeline::{self, EverythingJob, EverythingReply, Job, Objects as FoundObjects, Pipeline, Rejection, Reply};

/// Answers remembered for duplicate requests (docs/PROTOCOL.md, section 6).
pub const ANSWERS_KEPT: usize = 16;
/// How long the reader goes on reading requests that arrived before a stop.
pub const DRAIN_READ: Duration = Duration::from_secs(1);
/// Largest mask downscale factor a request may ask for.
const MAX_DOWNSCALE: u8 = 64;
/// Largest grid an EverythingRequest may ask for: 4096 prompts.
const MAX_POINTS_PER_SIDE: u8 = 64;
/// Longest client name a Hello may carry, in bytes.
const MAX_CLIENT_NAME: usize = 64;

/// What the daemon announces and enforces on the line.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerSettings {
    pub max_points: u8,
    pub heartbeat: Duration,
    /// How EverythingRequests run; their `points_per_side` 0 means this one's.
    pub everything: everything::Settings,
}

/// Serves one open line until `stop` is set or the line fails.
///
/// `reader` and `writer` are two handles on the same port (see
/// `SerialPort::try_clone`); reads must time out regularly so that `stop`
/// is noticed. After `stop`, requests that already arrived are still read
/// and queued (for at most [`DRAIN_READ`]), then `reading_done` is set: the
/// caller may then shut the pipeline down, whose drain answers them; this
/// returns once those answers are written.
///
/// # Errors
/// The line failed (device unplugged, closed): reopen it and serve again.
pub fn serve<R, W>(
    reader: R,
    writer: W,
    pipeline: &Arc<Pipeline>,
    settings: &ServerSettings,
    stop: &AtomicBool,
    reading_done: &AtomicBool,
) -> Result<()>
where
    R: Read + Write + Send,
    W: Read + Write + Send,
{
    reading_done.store(false, Ordering::SeqCst);
    let writer_failed = AtomicBool::new(false);
    let state = Mutex::new(State::default());
    let (outgoing, to_write) = unbounded::<(u32, Vec<Message>)>();
    let (replies, answered) = unbounded::<Reply>();
    let (objects_replies, objects_answered) = unbounded::<EverythingReply>();
    let answered = Answered { segments: answered, objects: objects_answered };
    std::thread::scope(|scope| {
        let writer = scope.spawn(|| {
            let written = write_loop(Link::new(writer), &to_write, &answered, pipeline, settings, &state);
            // The reader stops too, so that the line is reopened.
            writer_failed.store(written.is_err(), Ordering::SeqCst);
            written
        });
        let to_pipeline = ToPipeline { segments: replies, objects: objects_replies };
        let read = read_loop(Link::new(reader), &outgoing, &to_pipeline, pipeline, settings, &state, stop, &writer_failed);
        reading_done.store(true, Ordering::SeqCst);
        drop(outgoing);
        drop(to_pipeline);
        let write = writer.join().unwrap_or_else(|_| Err(anyhow::anyhow!("the serial writer panicked")));
        read.and(write)
    })
}

/// Requests in flight and answers kept, shared by the reader and the writer.
#[derive(Debug, Default)]
struct State {
    /// Pipeline job tag -> the request it serves.
    pending: HashMap<u32, Pending>,
    /// Request id -> its answer (`None` while in flight), oldest first.
    answers: VecDeque<(u32, Option<Vec<Message>>)>,
    next_tag: u32,
    drops: LinkDrops,
    unsent: Unsent,
}

#[derive(Debug)]
struct Pending {
    request_id: u32,
    output: Output,
    /// For an EverythingRequest: most objects sent, 0 for all.
    max_objects: u16,
}

/// Where the pipeline's replies go, by request kind.
struct ToPipeline {
    segments: Sender<Reply>,
    objects: Sender<EverythingReply>,
}

/// The writer's ends of [`ToPipeline`].
struct Answered {
    segments: Receiver<Reply>,
    objects: Receiver<EverythingReply>,
}

/// What to do with a request's id.
enum Seen {
    New,
    InFlight,
    Answered(Vec<Message>),
}

impl State {
    fn seen(&mut self, request_id: u32) -> Seen {
        if request_id == 0 {
            return Seen::New;
        }
        match self.answers.iter().find(|(id, _)| *id == request_id) {
            Some((_, Some(messages))) => Seen::Answered(messages.clone()),
            Some((_, None)) => Seen::InFlight,
            None => {
                if self.answers.len() == ANSWERS_KEPT {
                    // Evict the oldest finished answer; requests in flight stay.
                    if let Some(i) = self.answers.iter().position(|(_, a)| a.is_some()) {
                        self.answers.remove(i);
                    }
                }
                self.answers.push_back((request_id, None));
                Seen::New
            }
        }
    }

    fn finish(&mut self, request_id: u32, messages: &[Message]) {
        if let Some(slot) = self.answers.iter_mut().find(|(id, _)| *id == request_id) {
            slot.1 = Some(messages.to_vec());
        }
    }

    /// Forgets a request that was not run (busy), so that a retry runs it.
    fn forget(&mut self, request_id: u32) {
        self.answers.retain(|(id, _)| *id != request_id);
    }
}

fn error(code: ErrorCode, message: impl Into<String>) -> Vec<Message> {
    let mut message: String = message.into();
    // The protocol caps the text at 200 bytes; cut on a character boundary.
    while message.len() > 200 {
        message.pop();
    }
    vec![Message::Error(ErrorReply { code, message })]
}

fn read_loop<R: Read + Write>(
    mut link: Link<R>,
    outgoing: &Sender<(u32, Vec<Message>)>,
    replies: &ToPipeline,
    pipeline: &Arc<Pipeline>,
    settings: &ServerSettings,
    state: &Mutex<State>,
    stop: &AtomicBool,
    writer_failed: &AtomicBool,
) -> Result<()> {
    let lock = || state.lock().unwrap_or_else(PoisonError::into_inner);
    let mut stopping_since = None;
    loop {
        if writer_failed.load(Ordering::Relaxed) {
            break;
        }
        if stop.load(Ordering::Relaxed) {
            let since = *stopping_since.get_or_insert_with(Instant::now);
            if since.elapsed() > DRAIN_READ {
                break;
            }
        }
        let received = link.recv();
        lock().drops = link.drops();
        let frame = match received {
            Ok(frame) => frame,
            Err(LinkError::Frame(e)) => {
                debug!("serial: dropped a frame: {e}");
                if let Some((request_id, reply)) = e.reply() {
                    let _ = outgoing.send((request_id, vec![Message::Error(reply)]));
                }
                continue;
            }
            Err(LinkError::Io(e)) if matches!(e.kind(), io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock) => {
                // Quiet line: after a stop, everything that arrived has been read.
                if stopping_since.is_some() {
                    break;
                }
                continue;
            }
            Err(e) => return Err(e).context("reading the serial line"),
        };
        let id = frame.request_id;
        let answer = match frame.message {
            Message::Hello(hello) if hello.client.len() > MAX_CLIENT_NAME => error(
                ErrorCode::MalformedBody,
                format!("the Hello's client name is {} bytes, at most {MAX_CLIENT_NAME}", hello.client.len()),
            ),
            Message::Hello(hello) => {
                info!("serial: hello from {:?}", hello.client);
                vec![Message::Capabilities(capabilities(pipeline, settings))]
            }
            Message::GetStatus => vec![Message::Status(status(pipeline, &lock()))],
            Message::SegmentRequest(request) => {
                match queue(state, id, || submit(request, id, &replies.segments, pipeline, settings, state)) {
                    Some(messages) => messages,
                    None => continue,
                }
            }
            Message::EverythingRequest(request) => {
                match queue(state, id, || submit_everything(request, id, &replies.objects, pipeline, settings, state)) {
                    Some(messages) => messages,
                    None => continue,
                }
            }
            other => error(
                ErrorCode::MalformedBody,
                format!("{:?} is sent by the daemon, not to it", other.kind()),
            ),
        };
        if outgoing.send((id, answer)).is_err() {
            break;
        }
    }
    Ok(())
}

/// Runs `submit` for a request id not seen before. Returns the messages to
/// send now: a duplicate's stored answer, or the error of a request not
/// queued; `None` when the pipeline will answer (or already is).
fn queue(state: &Mutex<State>, id: u32, submit: impl FnOnce() -> Result<(), Vec<Message>>) -> Option<Vec<Message>> {
    // The lock is released before `submit`, which takes it again.
    let seen = state.lock().unwrap_or_else(PoisonError::into_inner).seen(id);
    match seen {
        Seen::Answered(messages) => {
            debug!("serial: request {id} is a duplicate, resending its answer");
            Some(messages)
        }
        Seen::InFlight => {
            debug!("serial: request {id} is a duplicate of one in flight");
            None
        }
        Seen::New => submit().err(),
    }
}

/// Records a request handed to the pipeline; returns the job's tag.
fn pend(state: &Mutex<State>, pending: Pending) -> u32 {
    let mut state = state.lock().unwrap_or_else(PoisonError::into_inner);
    state.next_tag = state.next_tag.wrapping_add(1);
    let tag = state.next_tag;
    state.pending.insert(tag, pending);
    tag
}

/// Queues a request on the pipeline, or returns the error answer.
fn submit(
    request: SegmentRequest,
    request_id: u32,
    replies: &Sender<Reply>,
    pipeline: &Pipeline,
    settings: &ServerSettings,
    state: &Mutex<State>,
) -> Result<(), Vec<Message>> {
    let prompt = to_prompt(&request, settings).map_err(|why| invalid(state, request_id, why))?;
    let tag = pend(state, Pending { request_id, output: request.output, max_objects: 0 });
    let job = Job { prompt, frame: frame_selector(request.frame), tag, reply: replies.clone() };
    pipeline.submit(job).map_err(|(rejection, _)| not_queued(state, tag, request_id, &rejection))
}

/// Queues an EverythingRequest on the pipeline, or returns the error answer.
fn submit_everything(
    request: EverythingRequest,
    request_id: u32,
    replies: &Sender<EverythingReply>,
    pipeline: &Pipeline,
    settings: &ServerSettings,
    state: &Mutex<State>,
) -> Result<(), Vec<Message>> {
    let why = match (request.points_per_side, request.output.downscale) {
        (n, _) if n > MAX_POINTS_PER_SIDE => Some(format!("points_per_side {n} is outside 0-{MAX_POINTS_PER_SIDE}")),
        (_, d) if !(1..=MAX_DOWNSCALE).contains(&d) => Some(format!("downscale {d} is outside 1-{MAX_DOWNSCALE}")),
        _ => None,
    };
    if let Some(why) = why {
        return Err(invalid(state, request_id, why));
    }
    let mut everything = settings.everything.clone();
    if request.points_per_side != 0 {
        everything.points_per_side = usize::from(request.points_per_side);
    }
    let tag = pend(state, Pending { request_id, output: request.output, max_objects: request.max_objects });
    let job = EverythingJob { settings: everything, frame: frame_selector(request.frame), tag, reply: replies.clone() };
    pipeline.submit_everything(job).map_err(|(rejection, _)| not_queued(state, tag, request_id, &rejection))
}

/// The final `InvalidPrompt` answer to a request, kept for its duplicates.
fn invalid(state: &Mutex<State>, request_id: u32, why: String) -> Vec<Message> {
    let answer = error(ErrorCode::InvalidPrompt, why);
    state.lock().unwrap_or_else(PoisonError::into_inner).finish(request_id, &answer);
    answer
}

fn frame_selector(frame: FrameSelector) -> pipeline::FrameSelector {
    match frame {
        FrameSelector::Latest => pipeline::FrameSelector::Latest,
        FrameSelector::Id(id) => pipeline::FrameSelector::Id(id),
    }
}

/// The answer to a request the pipeline refused. A busy one is forgotten,
/// so that a retry with the same id runs; any other refusal is final.
fn not_queued(state: &Mutex<State>, tag: u32, request_id: u32, rejection: &Rejection) -> Vec<Message> {
    let mut state = state.lock().unwrap_or_else(PoisonError::into_inner);
    state.pending.remove(&tag);
    let answer = rejection_messages(rejection);
    if matches!(rejection, Rejection::Busy | Rejection::Stopping) {
        state.forget(request_id);
    } else {
        state.finish(request_id, &answer);
    }
    answer
}

/// A SegmentRequest as a model prompt; checks what does not need the frame.
fn to_prompt(request: &SegmentRequest, settings: &ServerSettings) -> Result<Prompt, String> {
    if request.points.is_empty() && request.box_prompt.is_none() {
        return Err("the request has neither a point nor a box".into());
    }
    if request.points.len() > usize::from(settings.max_points) {
        return Err(format!("{} points, at most {} allowed", request.points.len(), settings.max_points));
    }
    if !(1..=MAX_DOWNSCALE).contains(&request.output.downscale) {
        return Err(format!("downscale {} is outside 1-{MAX_DOWNSCALE}", request.output.downscale));
    }
    let points = request
        .points
        .iter()
        .map(|p| {
            let (x, y) = (f32::from(p.x), f32::from(p.y));
            match p.label {
                Label::Foreground => PromptPoint::foreground(x, y),
                Label::Background => PromptPoint::background(x, y),
            }
        })
        .collect();
    let bbox = match request.box_prompt {
        Some(b) if b.x0 >= b.x1 || b.y0 >= b.y1 => {
            return Err(format!("box ({}, {})-({}, {}) is empty or inverted", b.x0, b.y0, b.x1, b.y1))
        }
        Some(b) => Some(BoxPrompt {
            x0: f32::from(b.x0),
            y0: f32::from(b.y0),
            x1: f32::from(b.x1),
            y1: f32::from(b.y1),
        }),
        None => None,
    };
    Ok(Prompt { points, bbox, mask_input: None })
}

fn write_loop<W: Read + Write>(
    mut link: Link<W>,
    to_write: &Receiver<(u32, Vec<Message>)>,
    answered: &Answered,
    pipeline: &Pipeline,
    settings: &ServerSettings,
    state: &Mutex<State>,
) -> Result<()> {
    let lock = || state.lock().unwrap_or_else(PoisonError::into_inner);
    // A tick channel holds one tick: a heartbeat due while an answer is being
    // written goes out right after it, and missed ones are not queued up.
    let heartbeats = tick(settings.heartbeat);
    let mut stall = Stall::default();
    let (no_messages, no_replies, no_objects) = (never(), never(), never());
    let (mut reader_gone, mut segments_done, mut objects_done) = (false, false, false);
    // `to_write` closes when the reader stops; the reply channels once every
    // queued job has replied. Heartbeats go on until all have happened.
    while !(reader_gone && segments_done && objects_done) {
        let messages_in = if reader_gone { &no_messages } else { to_write };
        let replies_in = if segments_done { &no_replies } else { &answered.segments };
        let objects_in = if objects_done { &no_objects } else { &answered.objects };
        let (outgoing, messages) = select! {
            recv(messages_in) -> next => match next {
                Ok((request_id, messages)) => (Outgoing::Answer(request_id), messages),
                Err(_) => { reader_gone = true; continue }
            },
            recv(replies_in) -> reply => match reply {
                Ok(reply) => match answered_by(state, reply.tag, |pending| match &reply.result {
                    Ok(answer) => segment_result(answer, pending.output),
                    Err(rejection) => rejection_messages(rejection),
                }) {
                    Some((request_id, messages)) => (Outgoing::Answer(request_id), messages),
                    None => continue,
                },
                Err(_) => { segments_done = true; continue }
            },
            recv(objects_in) -> reply => match reply {
                Ok(reply) => match answered_by(state, reply.tag, |pending| match &reply.result {
                    Ok(found) => objects_answer(found, pending),
                    Err(rejection) => rejection_messages(rejection),
                }) {
                    Some((request_id, messages)) => (Outgoing::Answer(request_id), messages),
                    None => continue,
                },
                Err(_) => { objects_done = true; continue }
            },
            recv(heartbeats) -> _ => (Outgoing::Heartbeat, vec![Message::Status(status(pipeline, &lock()))]),
        };
        match link.send_answer(outgoing.request_id(), messages) {
            Ok(()) => stall.written(),
            Err(e) => {
                stall.dropped(e, outgoing)?;
                lock().unsent = stall.total;
            }
        }
    }
    Ok(())
}

/// What the writer sends: a heartbeat, or the answer to a request.
#[derive(Debug, Clone, Copy)]
enum Outgoing {
    Heartbeat,
    Answer(u32),
}

impl Outgoing {
    fn request_id(self) -> u32 {
        match self {
            Outgoing::Heartbeat => 0,
            Outgoing::Answer(request_id) => request_id,
        }
    }
}

/// A line that takes no bytes: since when, what was dropped meanwhile, and
/// in all since the line was opened (reported in Status).
#[derive(Debug, Default)]
struct Stall {
    since: Option<Instant>,
    meanwhile: Unsent,
    total: Unsent,
}

impl Stall {
    /// A write timed out: drops what it was writing. Any other error is
    /// the line's failure, returned.
    fn dropped(&mut self, error: LinkError, what: Outgoing) -> Result<()> {
        match &error {
            LinkError::Io(e) if matches!(e.kind(), io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock) => {}
            _ => return Err(error).context("writing to the serial line"),
        }
        if self.since.is_none() {
            warn!("serial: the line takes no bytes (is anybody reading it?): dropping what cannot be written until it drains");
            self.since = Some(Instant::now());
        }
        for count in [&mut self.meanwhile, &mut self.total] {
            match what {
                Outgoing::Heartbeat => count.heartbeats = count.heartbeats.wrapping_add(1),
                Outgoing::Answer(_) => count.answers = count.answers.wrapping_add(1),
            }
        }
        if let Outgoing::Answer(request_id) = what {
            debug!("serial: dropped the answer to request {request_id}; a resent request gets it");
        }
        Ok(())
    }

    fn written(&mut self) {
        if let Some(since) = self.since.take() {
            info!(
                "serial: the line drains again after {:.1} s; {} answers and {} heartbeats were dropped meanwhile",
                since.elapsed().as_secs_f32(),
                self.meanwhile.answers,
                self.meanwhile.heartbeats
            );
            self.meanwhile = Unsent::default();
        }
    }
}

/// The request a pipeline reply with `tag` answers, and its messages
/// (stored for duplicates); `None` for a tag no longer pending.
fn answered_by(state: &Mutex<State>, tag: u32, messages: impl FnOnce(&Pending) -> Vec<Message>) -> Option<(u32, Vec<Message>)> {
    let pending = state.lock().unwrap_or_else(PoisonError::into_inner).pending.remove(&tag)?;
    // Built without the lock: a long answer must not hold up the reader.
    let messages = messages(&pending);
    state.lock().unwrap_or_else(PoisonError::into_inner).finish(pending.request_id, &messages);
    Some((pending.request_id, messages))
}

fn rejection_messages(rejection: &Rejection) -> Vec<Message> {
    let code = match rejection {
        // Stopping: retry later, as for a full queue (the daemon restarts or another takes over).
        Rejection::Busy | Rejection::Stopping => ErrorCode::Busy,
        Rejection::InvalidPrompt(_) => ErrorCode::InvalidPrompt,
        Rejection::NoFrame(_) => ErrorCode::NoFrame,
        Rejection::Internal(_) => ErrorCode::Internal,
    };
    error(code, rejection.to_string())
}

fn millis(d: Duration) -> u32 {
    u32::try_from(d.as_millis()).unwrap_or(u32::MAX)
}

/// The SegmentResult (and mask chunks) for a decoded prompt.
fn segment_result(answer: &pipeline::Answer, output: Output) -> Vec<Message> {
    let timing = Timing { frame_id: answer.frame.id, frame_age_ms: millis(answer.frame_age), decode_ms: millis(answer.decode) };
    let scores = (answer.mask.predicted_iou, answer.mask.stability);
    mask_result(&answer.mask.mask, scores, timing, output).unwrap_or_else(|e| error(ErrorCode::Internal, format!("{e:#}")))
}

/// The Objects head, then a SegmentResult (and mask chunks) per object.
fn objects_answer(found: &FoundObjects, pending: &Pending) -> Vec<Message> {
    let sent = match pending.max_objects {
        0 => found.masks.len(),
        most => found.masks.len().min(usize::from(most)),
    };
    let count = |n: usize| u16::try_from(n).unwrap_or(u16::MAX);
    let elapsed_ms = millis(found.elapsed);
    let timing = Timing { frame_id: found.frame.id, frame_age_ms: millis(found.frame_age), decode_ms: elapsed_ms };
    let mut messages = vec![Message::Objects(Objects {
        frame_id: found.frame.id,
        frame_age_ms: timing.frame_age_ms,
        elapsed_ms,
        prompts: count(found.prompts),
        found: count(found.masks.len()),
        objects: count(sent),
    })];
    for proposed in &found.masks[..sent] {
        let result = proposed
            .mask()
            .and_then(|mask| mask_result(&mask, (proposed.predicted_iou, proposed.stability), timing, pending.output));
        match result {
            Ok(result) => messages.extend(result),
            Err(e) => return error(ErrorCode::Internal, format!("{e:#}")),
        }
    }
    messages
}

/// The frame and timing fields of a SegmentResult.
#[derive(Debug, Clone, Copy)]
struct Timing {
    frame_id: u32,
    frame_age_ms: u32,
    decode_ms: u32,
}

fn mask_result(mask: &Mask, (predicted_iou, stability): (f32, f32), timing: Timing, output: Output) -> Result<Vec<Message>> {
    let mut result = SegmentResult {
        status: ResultStatus::Empty,
        frame_id: timing.frame_id,
        frame_age_ms: timing.frame_age_ms,
        decode_ms: timing.decode_ms,
        predicted_iou: 0.0,
        stability_score: 0.0,
        area: 0,
        bbox: Rect::default(),
        centroid: PointF::default(),
        angle: 0.0,
        grasp: Pixel::default(),
        clearance: 0.0,
        mask: None,
    };
    let Some(geometry) = shape(mask)? else {
        return Ok(vec![Message::SegmentResult(result)]);
    };
    result.status = ResultStatus::Ok;
    // The model's estimate can exceed 1 slightly; the protocol says 0-1.
    result.predicted_iou = predicted_iou.clamp(0.0, 1.0);
    result.stability_score = stability;
    result.area = geometry.area;
    result.bbox = geometry.bbox;
    result.centroid = geometry.centroid;
    result.angle = geometry.angle;
    result.grasp = geometry.grasp;
    result.clearance = geometry.clearance;
    let wire = match output.mask {
        MaskEncoding::None => None,
        MaskEncoding::Rle => {
            let downscale = NonZeroU8::new(output.downscale).context("downscale 0")?;
            WireMask::from_mask(mask, downscale)?
        }
    };
    Ok(answer_messages(result, wire.as_ref())?)
}

fn capabilities(pipeline: &Pipeline, settings: &ServerSettings) -> Capabilities {
    let (width, height) = pipeline
        .cache()
        .latest()
        .map_or((0, 0), |e| e.frame.image.dimensions());
    let status = pipeline.status();
    Capabilities {
        protocol: PROTOCOL_VERSION,
        schema_hash: SCHEMA_HASH,
        max_frame: MAX_FRAME as u16,
        image_width: u16::try_from(width).unwrap_or(u16::MAX),
        image_height: u16::try_from(height).unwrap_or(u16::MAX),
        model: pipeline.sam().manifest().model.clone(),
        max_points: settings.max_points,
        queue_capacity: u8::try_from(status.queue_capacity).unwrap_or(u8::MAX),
        heartbeat_ms: u32::try_from(settings.heartbeat.as_millis()).unwrap_or(u32::MAX),
    }
}

/// The Status message: the pipeline's figures and the line's counters.
fn status(pipeline: &Pipeline, line: &State) -> Status {
    let s = pipeline.status();
    Status {
        uptime_ms: s.uptime.as_millis() as u32,
        fps: s.fps,
        encoder_ms: s.encoder_ms,
        camera: match s.camera {
            pipeline::CameraState::Starting => CameraState::Starting,
            pipeline::CameraState::Streaming => CameraState::Streaming,
            pipeline::CameraState::Stalled | pipeline::CameraState::Ended => CameraState::Stalled,
            pipeline::CameraState::Disconnected => CameraState::Disconnected,
        },
        queue_depth: u8::try_from(s.queue_depth).unwrap_or(u8::MAX),
        frames_superseded: s.frames_superseded,
        capture_errors: s.capture_errors,
        busy_rejections: s.busy_rejections,
        link_drops: line.drops,
        unsent: line.unsent,
        encoder: match s.encoder {
            model::EncoderState::Local => EncoderState::Local,
            model::EncoderState::Remote => EncoderState::Remote,
            model::EncoderState::Fallback => EncoderState::Fallback,
            model::EncoderState::Down => EncoderState::Down,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> ServerSettings {
        ServerSettings { max_points: 4, heartbeat: Duration::from_secs(1), everything: everything::Settings::default() }
    }

    fn request(points: &[(u16, u16)], box_prompt: Option<Rect>, downscale: u8) -> SegmentRequest {
        SegmentRequest {
            points: points.iter().map(|&(x, y)| Point { x, y, label: Label::Foreground }).collect(),
            box_prompt,
            frame: FrameSelector::Latest,
            output: Output { mask: MaskEncoding::Rle, downscale },
        }
    }

    fn answered(text: &str) -> Vec<Message> {
        error(ErrorCode::Internal, text)
    }

    #[test]
    fn a_request_id_runs_once_and_its_duplicates_get_the_kept_answer() {
        let mut state = State::default();
        assert!(matches!(state.seen(7), Seen::New));
        assert!(matches!(state.seen(7), Seen::InFlight));
        state.finish(7, &answered("seven"));
        assert!(matches!(state.seen(7), Seen::Answered(m) if m == answered("seven")));
        // Id 0 is never deduplicated.
        assert!(matches!(state.seen(0), Seen::New) && matches!(state.seen(0), Seen::New));
    }

    #[test]
    fn the_oldest_finished_answer_is_forgotten_first_and_requests_in_flight_stay() {
        let mut state = State::default();
        state.seen(1); // in flight throughout
        for id in 2..=u32::try_from(ANSWERS_KEPT).unwrap() {
            state.seen(id);
            state.finish(id, &answered("kept"));
        }
        state.seen(100);
        assert!(matches!(state.seen(1), Seen::InFlight), "a request in flight was forgotten");
        assert!(matches!(state.seen(3), Seen::Answered(_)));
        assert!(matches!(state.seen(2), Seen::New), "the oldest finished answer was kept");
    }

    #[test]
    fn a_busy_request_is_forgotten_so_that_its_retry_runs() {
        let mut state = State::default();
        state.seen(9);
        state.forget(9);
        assert!(matches!(state.seen(9), Seen::New));
    }

    #[test]
    fn prompts_are_checked_before_they_reach_the_pipeline() {
        let s = settings();
        let prompt = to_prompt(&request(&[(639, 479)], Some(Rect { x0: 1, y0: 2, x1: 3, y1: 4 }), 1), &s).unwrap();
        assert_eq!((prompt.points[0].x, prompt.points[0].y), (639.0, 479.0));
        assert_eq!(prompt.bbox, Some(BoxPrompt { x0: 1.0, y0: 2.0, x1: 3.0, y1: 4.0 }));
        for (bad, why) in [
            (request(&[], None, 1), "neither a point nor a box"),
            (request(&[(1, 1); 5], None, 1), "5 points, at most 4"),
            (request(&[(1, 1)], None, 0), "downscale 0 is outside 1-64"),
            (request(&[(1, 1)], None, 65), "downscale 65"),
            (request(&[], Some(Rect { x0: 5, y0: 0, x1: 5, y1: 9 }), 1), "box (5, 0)-(5, 9) is empty or inverted"),
        ] {
            let err = to_prompt(&bad, &s).unwrap_err();
            assert!(err.contains(why), "{err:?} does not say {why:?}");
        }
    }

    #[test]
    fn error_text_is_cut_to_200_bytes_on_a_character_boundary() {
        let [Message::Error(reply)] = &error(ErrorCode::Internal, "é".repeat(150))[..] else { panic!() };
        assert_eq!((reply.message.len(), reply.message.chars().count()), (200, 100));
    }

    #[test]
    fn predicted_iou_above_one_is_sent_as_one() {
        let mask = Mask::from_fn(8, 8, |x, y| x < 4 && y < 4);
        let timing = Timing { frame_id: 3, frame_age_ms: 1, decode_ms: 2 };
        let output = Output { mask: MaskEncoding::None, downscale: 1 };
        let [Message::SegmentResult(result)] = &mask_result(&mask, (1.004, 0.98), timing, output).unwrap()[..] else {
            panic!()
        };
        assert_eq!((result.predicted_iou, result.area, result.frame_id), (1.0, 16, 3));
    }

    #[test]
    fn a_write_that_times_out_is_counted_and_any_other_failure_ends_the_line() {
        let mut stall = Stall::default();
        for what in [Outgoing::Heartbeat, Outgoing::Answer(4), Outgoing::Answer(5)] {
            stall.dropped(LinkError::Io(io::ErrorKind::TimedOut.into()), what).unwrap();
        }
        assert_eq!(stall.meanwhile, Unsent { answers: 2, heartbeats: 1 });
        assert!(stall.since.is_some());
        stall.written();
        assert_eq!((stall.since, stall.meanwhile), (None, Unsent::default()));
        stall.dropped(LinkError::Io(io::ErrorKind::WouldBlock.into()), Outgoing::Answer(6)).unwrap();
        assert_eq!(stall.total, Unsent { answers: 3, heartbeats: 1 }, "the total counts every stall");
        let gone = stall.dropped(LinkError::Io(io::ErrorKind::BrokenPipe.into()), Outgoing::Heartbeat).unwrap_err();
        assert!(format!("{gone:#}").contains("writing to the serial line"), "{gone:#}");
    }
}
