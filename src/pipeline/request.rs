//! Prompts going into the decoder and answers coming out.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use thiserror::Error;

use super::frame::Frame;
use crate::everything::{ProposedMask, Settings};
use crate::model::{Candidate, Prompt};

/// Which embedded frame a prompt is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameSelector {
    /// The newest embedded frame when the decoder starts on the prompt.
    Latest,
    /// A frame reported in an earlier answer, so that several prompts see the same picture.
    Id(u32),
}

/// A prompt waiting for the decoder.
#[derive(Debug)]
pub struct Job {
    pub prompt: Prompt,
    pub frame: FrameSelector,
    /// The caller's own reference (a serial request id), echoed in the reply.
    pub tag: u32,
    /// Where the reply goes.
    pub reply: Sender<Reply>,
}

/// The outcome of one job.
#[derive(Debug, Clone)]
pub struct Reply {
    pub tag: u32,
    pub result: Result<Arc<Answer>, Rejection>,
}

/// A decoded prompt.
#[derive(Debug, Clone)]
pub struct Answer {
    pub frame: Frame,
    pub prompt: Prompt,
    /// The mask SAM's rule picks for this prompt (see `Masks::chosen`).
    pub mask: Candidate,
    /// Age of the frame when the decoder started on the prompt.
    pub frame_age: Duration,
    /// Time the decoder took, upscaling included.
    pub decode: Duration,
    pub decoded_at: Instant,
}

/// A request for every object in a frame (automatic mask generation). It
/// runs on the decoder thread at lower priority than prompts: queued prompts
/// are answered between its decoder runs.
#[derive(Debug)]
pub struct EverythingJob {
    pub settings: Settings,
    pub frame: FrameSelector,
    /// The caller's own reference, echoed in the reply.
    pub tag: u32,
    pub reply: Sender<EverythingReply>,
}

/// The outcome of one everything job.
#[derive(Debug, Clone)]
pub struct EverythingReply {
    pub tag: u32,
    pub result: Result<Arc<Objects>, Rejection>,
}

/// The masks proposed for a frame.
#[derive(Debug, Clone)]
pub struct Objects {
    pub frame: Frame,
    /// By descending predicted IoU.
    pub masks: Vec<ProposedMask>,
    /// Grid prompts decoded.
    pub prompts: usize,
    /// Age of the frame when the job started.
    pub frame_age: Duration,
    /// Start to finish, prompts answered in between included.
    pub elapsed: Duration,
    /// Time in the decoder for this job's own prompts.
    pub decoding: Duration,
}

/// Why a prompt got no mask.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Rejection {
    #[error("the prompt queue is full")]
    Busy,
    /// The daemon is stopping: a long job was cut short, or never started.
    #[error("the daemon is stopping")]
    Stopping,
    #[error("invalid prompt: {0}")]
    InvalidPrompt(String),
    #[error("{0}")]
    NoFrame(String),
    #[error("internal error: {0}")]
    Internal(String),
}
