//! The serial protocol between the daemon and a controller (docs/PROTOCOL.md):
//! messages, a sans-IO codec, chunked answers, mask geometry and a blocking link.

mod chunk;
mod codec;
mod geometry;
mod link;
mod message;
mod port;
mod samples;
mod server;
#[cfg(test)]
mod proptest;

pub use chunk::{answer_messages, ChunkError, MaskAssembler};
pub use codec::{encode, Decoder, Frame, FrameError, DELIMITER, MAX_BODY, MAX_ENCODED, MAX_FRAME};
pub use geometry::{shape, Shape, TooLarge, WireMask};
pub use link::{Link, LinkError};
pub use message::*;
pub use port::{open_port, READ_TIMEOUT};
pub use samples::{sample_messages, SAMPLE_RESULT};
pub use server::{serve, ServerSettings, ANSWERS_KEPT, DRAIN_READ};
