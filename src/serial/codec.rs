//! Sans-IO framing: messages to COBS-delimited, CRC-checked frames and back
//! (docs/PROTOCOL.md, sections 1 and 5).

use crc::{Crc, CRC_32_ISO_HDLC};
use thiserror::Error;

use super::message::{
    BodyError, ErrorCode, ErrorReply, Kind, LinkDrops, Message, PROTOCOL_VERSION,
};

/// CRC-32/ISO-HDLC, as zlib computes it.
pub(crate) const CRC32: Crc<u32> = Crc::<u32>::new(&CRC_32_ISO_HDLC);

/// Ends every frame on the line; COBS keeps it out of the frames themselves.
pub const DELIMITER: u8 = 0x00;
pub const HEADER_LEN: usize = 9;
pub const CRC_LEN: usize = 4;
/// Largest decoded frame: header, body and CRC.
pub const MAX_FRAME: usize = 4096;
pub const MAX_BODY: usize = MAX_FRAME - HEADER_LEN - CRC_LEN;
/// Largest COBS-encoded frame, delimiter excluded: the decoder's buffer bound.
pub const MAX_ENCODED: usize = cobs::max_encoding_length(MAX_FRAME);
const FLAG_MORE: u8 = 0x01;

/// One decoded frame: header fields and message.
#[derive(Debug, Clone, PartialEq)]
pub struct Frame {
    pub seq: u16,
    pub request_id: u32,
    /// Further frames of the same answer follow.
    pub more: bool,
    pub message: Message,
}

/// Why a frame was dropped (or, for [`encode`], could not be built).
#[derive(Debug, Error)]
pub enum FrameError {
    #[error("invalid COBS encoding")]
    Cobs(#[source] cobs::DecodeError),
    #[error("frame shorter than a header and CRC")]
    Truncated,
    #[error("CRC mismatch (unverified request id {request_id})")]
    Crc { request_id: u32 },
    #[error("unknown protocol version {0}")]
    UnknownVersion(u8),
    #[error("unknown message kind {kind:#04x} (request id {request_id})")]
    UnknownKind { kind: u8, request_id: u32 },
    #[error("frame of {0} bytes exceeds the limit")]
    Oversize(usize),
    #[error("malformed {kind:?} body (request id {request_id})")]
    Body {
        kind: Kind,
        request_id: u32,
        #[source]
        source: BodyError,
    },
}

impl FrameError {
    /// The Error message the daemon answers with and the request id it carries
    /// (docs/PROTOCOL.md, section 5); `None` when there is nothing to answer.
    pub fn reply(&self) -> Option<(u32, ErrorReply)> {
        let (request_id, code) = match *self {
            FrameError::Cobs(_) | FrameError::Truncated => return None,
            FrameError::Crc { request_id } => (request_id, ErrorCode::BadCrc),
            FrameError::UnknownVersion(_) => (0, ErrorCode::UnknownVersion),
            FrameError::UnknownKind { request_id, .. } => (request_id, ErrorCode::UnknownKind),
            FrameError::Oversize(_) => (0, ErrorCode::Oversize),
            FrameError::Body { request_id, .. } => (request_id, ErrorCode::MalformedBody),
        };
        Some((
            request_id,
            ErrorReply {
                code,
                message: self.to_string(),
            },
        ))
    }
}

/// Encodes a frame for the line, delimiter included.
///
/// # Errors
/// [`FrameError::Oversize`] when the frame would exceed [`MAX_FRAME`],
/// [`FrameError::Body`] when the message does not serialize.
pub fn encode(frame: &Frame) -> Result<Vec<u8>, FrameError> {
    let kind = frame.message.kind();
    let body = frame.message.to_body().map_err(|source| FrameError::Body {
        kind,
        request_id: frame.request_id,
        source,
    })?;
    let len = HEADER_LEN + body.len() + CRC_LEN;
    if len > MAX_FRAME {
        return Err(FrameError::Oversize(len));
    }
    let mut raw = Vec::with_capacity(len);
    raw.extend([
        PROTOCOL_VERSION,
        kind as u8,
        if frame.more { FLAG_MORE } else { 0 },
    ]);
    raw.extend(frame.seq.to_le_bytes());
    raw.extend(frame.request_id.to_le_bytes());
    raw.extend(body);
    raw.extend(CRC32.checksum(&raw).to_le_bytes());
    let mut wire = cobs::encode_vec(&raw);
    wire.push(DELIMITER);
    Ok(wire)
}

/// Splits a byte stream into frames: fed bytes in chunks of any size, it yields
/// one result per delimited frame, buffering at most [`MAX_ENCODED`] bytes.
#[derive(Debug, Default)]
pub struct Decoder {
    buf: Vec<u8>,
    /// Bytes of the current frame seen after it overflowed the buffer (0: none).
    discarded: usize,
    drops: LinkDrops,
}

impl Decoder {
    pub fn new() -> Decoder {
        Decoder::default()
    }

    /// Consumes `bytes` up to the first delimiter that ends a frame and returns
    /// how many bytes it consumed and that frame's result, if one ended.
    pub fn decode(&mut self, bytes: &[u8]) -> (usize, Option<Result<Frame, FrameError>>) {
        for (i, &byte) in bytes.iter().enumerate() {
            if byte == DELIMITER {
                if let Some(result) = self.finish() {
                    return (i + 1, Some(result));
                }
            } else if self.discarded > 0 {
                self.discarded += 1;
            } else if self.buf.len() == MAX_ENCODED {
                // Keep nothing of an oversize frame: it is reported once, at its delimiter.
                self.discarded = self.buf.len() + 1;
                self.buf.clear();
            } else {
                self.buf.push(byte);
            }
        }
        (bytes.len(), None)
    }

    /// Consumes all of `bytes` and returns the results of the frames they ended.
    pub fn feed(&mut self, mut bytes: &[u8]) -> Vec<Result<Frame, FrameError>> {
        let mut results = Vec::new();
        while !bytes.is_empty() {
            let (used, result) = self.decode(bytes);
            results.extend(result);
            bytes = &bytes[used..];
        }
        results
    }

    /// Frames dropped so far, by reason.
    pub fn drops(&self) -> LinkDrops {
        self.drops
    }

    fn finish(&mut self) -> Option<Result<Frame, FrameError>> {
        let result = if self.discarded > 0 {
            Err(FrameError::Oversize(std::mem::take(&mut self.discarded)))
        } else if self.buf.is_empty() {
            return None;
        } else {
            parse(&self.buf)
        };
        self.buf.clear();
        if let Err(error) = &result {
            let counter = match error {
                FrameError::Cobs(_) => &mut self.drops.cobs,
                FrameError::Truncated => &mut self.drops.truncated,
                FrameError::Crc { .. } => &mut self.drops.crc,
                FrameError::UnknownVersion(_) => &mut self.drops.unknown_version,
                FrameError::UnknownKind { .. } => &mut self.drops.unknown_kind,
                FrameError::Oversize(_) => &mut self.drops.oversize,
                FrameError::Body { .. } => &mut self.drops.body,
            };
            *counter = counter.wrapping_add(1);
        }
        Some(result)
    }
}

/// Checks one encoded frame (delimiter excluded) in the order of docs/PROTOCOL.md, section 5.
fn parse(encoded: &[u8]) -> Result<Frame, FrameError> {
    let raw = cobs::decode_vec(encoded).map_err(FrameError::Cobs)?;
    if raw.len() > MAX_FRAME {
        return Err(FrameError::Oversize(raw.len()));
    }
    if raw.len() < HEADER_LEN + CRC_LEN {
        return Err(FrameError::Truncated);
    }
    let (content, crc) = raw.split_at(raw.len() - CRC_LEN);
    let (header, body) = content.split_at(HEADER_LEN);
    let request_id = u32::from_le_bytes([header[5], header[6], header[7], header[8]]);
    if CRC32.checksum(content) != u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]) {
        return Err(FrameError::Crc { request_id });
    }
    if header[0] != PROTOCOL_VERSION {
        return Err(FrameError::UnknownVersion(header[0]));
    }
    let kind =
        Kind::try_from(header[1]).map_err(|kind| FrameError::UnknownKind { kind, request_id })?;
    let message = Message::from_body(kind, body).map_err(|source| FrameError::Body {
        kind,
        request_id,
        source,
    })?;
    Ok(Frame {
        seq: u16::from_le_bytes([header[3], header[4]]),
        request_id,
        more: header[2] & FLAG_MORE != 0,
        message,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serial::message::Hello;
    use crate::serial::samples::sample_messages;

    fn frame(request_id: u32, message: Message) -> Frame {
        Frame {
            seq: 7,
            request_id,
            more: false,
            message,
        }
    }

    /// A decoded frame with a valid CRC, from its parts.
    fn raw(version: u8, kind: u8, request_id: u32, body: &[u8]) -> Vec<u8> {
        let mut raw = vec![version, kind, 0, 7, 0];
        raw.extend(request_id.to_le_bytes());
        raw.extend(body);
        raw.extend(CRC32.checksum(&raw).to_le_bytes());
        raw
    }

    fn wire(raw: &[u8]) -> Vec<u8> {
        let mut wire = cobs::encode_vec(raw);
        wire.push(DELIMITER);
        wire
    }

    fn good() -> Vec<u8> {
        encode(&frame(99, Message::GetStatus)).expect("encodes")
    }

    /// Feeds `bad` then a good frame: the first must fail as `expected`, the second decode.
    fn assert_rejected_then_recovers(bad: &[u8], expected: fn(&FrameError) -> bool) -> Decoder {
        let mut decoder = Decoder::new();
        let mut bytes = bad.to_vec();
        bytes.extend(good());
        let results = decoder.feed(&bytes);
        assert_eq!(results.len(), 2, "{results:?}");
        let error = results[0].as_ref().expect_err("bad frame rejected");
        assert!(expected(error), "unexpected {error:?}");
        assert_eq!(
            results[1].as_ref().expect("good frame decodes").request_id,
            99
        );
        decoder
    }

    #[test]
    fn crc_is_the_zlib_crc32() {
        assert_eq!(CRC32.checksum(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn every_message_kind_round_trips() {
        for (i, message) in sample_messages().into_iter().enumerate() {
            let sent = Frame {
                seq: i as u16,
                request_id: 1000 + i as u32,
                more: i % 2 == 0,
                message,
            };
            let results = Decoder::new().feed(&encode(&sent).expect("encodes"));
            assert_eq!(results.len(), 1);
            assert_eq!(results[0].as_ref().expect("decodes"), &sent);
        }
    }

    #[test]
    fn header_fields_sit_at_the_documented_offsets() {
        let sent = Frame {
            seq: 0x0102,
            request_id: 0x0A0B_0C0D,
            more: true,
            message: Message::GetStatus,
        };
        let encoded = encode(&sent).expect("encodes");
        assert_eq!(encoded.last(), Some(&DELIMITER));
        assert!(!encoded[..encoded.len() - 1].contains(&DELIMITER));
        let raw = cobs::decode_vec(&encoded[..encoded.len() - 1]).expect("valid COBS");
        assert_eq!(raw[..9], [1, 0x20, 1, 0x02, 0x01, 0x0D, 0x0C, 0x0B, 0x0A]);
        assert_eq!(raw[9..], CRC32.checksum(&raw[..9]).to_le_bytes());
    }

    #[test]
    fn empty_frames_between_delimiters_are_ignored() {
        let mut bytes = vec![0, 0, 0];
        bytes.extend(good());
        bytes.extend([0, 0]);
        let mut decoder = Decoder::new();
        assert_eq!(decoder.feed(&bytes).len(), 1);
        assert_eq!(decoder.drops(), LinkDrops::default());
    }

    #[test]
    fn bad_crc_is_reported_with_the_unverified_request_id() {
        let mut bad = raw(1, Kind::GetStatus as u8, 42, &[]);
        bad[10] ^= 0x40;
        let decoder = assert_rejected_then_recovers(&wire(&bad), |e| {
            matches!(e, FrameError::Crc { request_id: 42 })
        });
        assert_eq!(decoder.drops().crc, 1);
    }

    #[test]
    fn unknown_version_and_kind_are_reported_and_counted() {
        let decoder = assert_rejected_then_recovers(&wire(&raw(2, 0x20, 5, &[])), |e| {
            matches!(e, FrameError::UnknownVersion(2))
        });
        assert_eq!(decoder.drops().unknown_version, 1);
        let decoder = assert_rejected_then_recovers(&wire(&raw(1, 0x42, 5, &[])), |e| {
            matches!(
                e,
                FrameError::UnknownKind {
                    kind: 0x42,
                    request_id: 5
                }
            )
        });
        assert_eq!(decoder.drops().unknown_kind, 1);
    }

    #[test]
    fn malformed_body_names_kind_and_request() {
        let decoder =
            assert_rejected_then_recovers(&wire(&raw(1, Kind::Hello as u8, 6, &[9, b'x'])), |e| {
                matches!(
                    e,
                    FrameError::Body {
                        kind: Kind::Hello,
                        request_id: 6,
                        ..
                    }
                )
            });
        assert_eq!(decoder.drops().body, 1);
    }

    #[test]
    fn short_frames_are_truncated_and_not_answered() {
        let decoder = assert_rejected_then_recovers(&wire(&[1, 0x20, 0, 0]), |e| {
            e.reply().is_none() && matches!(e, FrameError::Truncated)
        });
        assert_eq!(decoder.drops().truncated, 1);
    }

    #[test]
    fn invalid_cobs_is_dropped() {
        // The code byte promises 9 bytes, 2 follow.
        let decoder =
            assert_rejected_then_recovers(&[0x0a, 1, 2, 0], |e| matches!(e, FrameError::Cobs(_)));
        assert_eq!(decoder.drops().cobs, 1);
    }

    #[test]
    fn oversize_input_is_discarded_up_to_the_delimiter_and_reported_once() {
        let mut bad = vec![0x55; 3 * MAX_ENCODED];
        bad.push(DELIMITER);
        let mut decoder = Decoder::new();
        for chunk in bad.chunks(1000) {
            for result in decoder.feed(chunk) {
                assert!(matches!(result, Err(FrameError::Oversize(n)) if n == 3 * MAX_ENCODED));
            }
            assert!(decoder.buf.len() <= MAX_ENCODED);
        }
        assert_eq!(decoder.drops().oversize, 1);
        assert!(decoder.feed(&good())[0].is_ok());
    }

    #[test]
    fn decoded_frames_over_the_limit_are_oversize() {
        // Zeros keep the COBS overhead low, so only the decoded size is over.
        let bad = wire(&raw(1, Kind::GetStatus as u8, 1, &[0; MAX_BODY + 1]));
        assert!(bad.len() - 1 <= MAX_ENCODED);
        assert_rejected_then_recovers(
            &bad,
            |e| matches!(e, FrameError::Oversize(n) if *n == MAX_FRAME + 1),
        );
    }

    #[test]
    fn encode_refuses_frames_over_the_limit() {
        let fits = Message::Hello(Hello {
            client: "x".repeat(MAX_BODY - 2),
        });
        assert!(encode(&frame(1, fits)).expect("fits").len() <= MAX_ENCODED + 1);
        let long = Message::Hello(Hello {
            client: "x".repeat(MAX_BODY),
        });
        assert!(matches!(encode(&frame(1, long)), Err(FrameError::Oversize(n)) if n > MAX_FRAME));
    }

    #[test]
    fn replies_carry_the_documented_codes_and_ids() {
        let (id, reply) = FrameError::Crc { request_id: 3 }.reply().expect("answered");
        assert_eq!((id, reply.code), (3, ErrorCode::BadCrc));
        let (id, reply) = FrameError::UnknownVersion(9).reply().expect("answered");
        assert_eq!((id, reply.code), (0, ErrorCode::UnknownVersion));
        let (id, reply) = FrameError::Oversize(5000).reply().expect("answered");
        assert_eq!((id, reply.code), (0, ErrorCode::Oversize));
    }
}
