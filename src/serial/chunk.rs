//! A segmentation answer as frames that fit: the result, then its mask runs in
//! MaskChunks (docs/PROTOCOL.md, section 4), and the reassembly on the other side.

use thiserror::Error;

use super::codec::MAX_BODY;
use super::geometry::WireMask;
use super::message::{MaskChunk, MaskHeader, Message, SegmentResult};

/// Bytes a MaskChunk spends besides its runs: index, count and run count, as varints of at most 3 bytes.
const CHUNK_OVERHEAD: usize = 9;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ChunkError {
    #[error("{0} chunks exceed the protocol's 65535")]
    TooManyChunks(usize),
    #[error("expected chunk {expected} of {count}, got chunk {index} of {got_count}")]
    OutOfOrder {
        expected: u16,
        count: u16,
        index: u16,
        got_count: u16,
    },
    #[error("chunks carried {got} runs, the header announced {expected}")]
    RunCount { expected: u32, got: usize },
    #[error("runs cover {got} cells, the grid has {expected}")]
    Coverage { expected: u64, got: u64 },
}

/// The messages answering a request: `result` (its `mask` field set from
/// `mask`), then the mask's runs in chunks whose bodies fit in [`MAX_BODY`].
///
/// # Errors
/// [`ChunkError::TooManyChunks`] when the runs need more than 65535 chunks.
pub fn answer_messages(
    mut result: SegmentResult,
    mask: Option<&WireMask>,
) -> Result<Vec<Message>, ChunkError> {
    let Some(mask) = mask else {
        result.mask = None;
        return Ok(vec![Message::SegmentResult(result)]);
    };
    let pieces = split_runs(&mask.runs);
    let count = u16::try_from(pieces.len()).map_err(|_| ChunkError::TooManyChunks(pieces.len()))?;
    result.mask = Some(mask.header(count));
    let chunks = pieces.into_iter().zip(0..).map(|(runs, index)| {
        Message::MaskChunk(MaskChunk {
            index,
            count,
            runs: runs.to_vec(),
        })
    });
    Ok(std::iter::once(Message::SegmentResult(result))
        .chain(chunks)
        .collect())
}

/// Greedy packing by each run's varint size; at least one (possibly empty) piece.
fn split_runs(runs: &[u32]) -> Vec<&[u32]> {
    let mut pieces = Vec::new();
    let (mut start, mut size) = (0, CHUNK_OVERHEAD);
    for (i, &run) in runs.iter().enumerate() {
        let len = varint_len(run);
        if size + len > MAX_BODY {
            pieces.push(&runs[start..i]);
            (start, size) = (i, CHUNK_OVERHEAD);
        }
        size += len;
    }
    pieces.push(&runs[start..]);
    pieces
}

fn varint_len(value: u32) -> usize {
    (32 - value.leading_zeros()).max(1).div_ceil(7) as usize
}

/// Collects the MaskChunks following a SegmentResult, in order, into the mask.
#[derive(Debug)]
pub struct MaskAssembler {
    header: MaskHeader,
    next: u16,
    runs: Vec<u32>,
}

impl MaskAssembler {
    pub fn new(header: MaskHeader) -> MaskAssembler {
        MaskAssembler {
            header,
            next: 0,
            runs: Vec::new(),
        }
    }

    /// Adds the next chunk; returns the mask once the last one is in.
    ///
    /// # Errors
    /// A chunk out of order or of another count, or runs that do not match the header.
    pub fn push(&mut self, chunk: &MaskChunk) -> Result<Option<WireMask>, ChunkError> {
        let header = self.header;
        if chunk.index != self.next || chunk.count != header.chunks {
            return Err(ChunkError::OutOfOrder {
                expected: self.next,
                count: header.chunks,
                index: chunk.index,
                got_count: chunk.count,
            });
        }
        self.runs.extend(&chunk.runs);
        self.next += 1;
        if self.next < header.chunks {
            return Ok(None);
        }
        if self.runs.len() != header.runs as usize {
            return Err(ChunkError::RunCount {
                expected: header.runs,
                got: self.runs.len(),
            });
        }
        let expected = u64::from(header.width) * u64::from(header.height);
        let got = self.runs.iter().map(|&r| u64::from(r)).sum();
        if got != expected {
            return Err(ChunkError::Coverage { expected, got });
        }
        Ok(Some(WireMask {
            x0: header.x0,
            y0: header.y0,
            downscale: header.downscale,
            width: header.width,
            height: header.height,
            runs: std::mem::take(&mut self.runs),
        }))
    }
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroU8;

    use super::*;
    use crate::model::Mask;
    use crate::serial::codec::{encode, Frame, MAX_FRAME};
    use crate::serial::message::{Pixel, PointF, Rect, ResultStatus};

    fn result() -> SegmentResult {
        SegmentResult {
            status: ResultStatus::Ok,
            frame_id: 1,
            frame_age_ms: 2,
            decode_ms: 3,
            predicted_iou: 0.9,
            stability_score: 0.95,
            area: 4,
            bbox: Rect::default(),
            centroid: PointF::default(),
            angle: 0.0,
            grasp: Pixel::default(),
            clearance: 1.0,
            mask: None,
        }
    }

    fn checkerboard(side: u32) -> WireMask {
        let mask = Mask::from_fn(side, side, |x, y| (x + y) % 2 == 0);
        WireMask::from_mask(&mask, NonZeroU8::MIN)
            .expect("fits")
            .expect("set")
    }

    #[test]
    fn varint_lengths_follow_leb128() {
        let cases = [
            (0, 1),
            (127, 1),
            (128, 2),
            (16_383, 2),
            (16_384, 3),
            (u32::MAX, 5),
        ];
        for (value, len) in cases {
            assert_eq!(varint_len(value), len, "{value}");
            assert_eq!(postcard::to_stdvec(&value).expect("encodes").len(), len);
        }
    }

    #[test]
    fn a_long_mask_is_split_into_full_frames_and_reassembled() {
        let mask = checkerboard(200);
        let messages = answer_messages(result(), Some(&mask)).expect("chunks");
        assert!(messages.len() > 5, "{} frames", messages.len());
        let Message::SegmentResult(sent) = &messages[0] else {
            panic!("result first")
        };
        let header = sent.mask.expect("header");
        assert_eq!(usize::from(header.chunks), messages.len() - 1);
        let mut assembler = MaskAssembler::new(header);
        let mut rebuilt = None;
        let last = messages.len() - 1;
        for (i, message) in messages.iter().enumerate().skip(1) {
            let frame = Frame {
                seq: 0,
                request_id: u32::MAX,
                more: true,
                message: message.clone(),
            };
            let encoded = encode(&frame).expect("fits a frame");
            assert!(
                i == last || encoded.len() > MAX_FRAME - 200,
                "chunk {i} is not filled: {}",
                encoded.len()
            );
            let Message::MaskChunk(chunk) = message else {
                panic!("chunk")
            };
            rebuilt = assembler.push(chunk).expect("in order");
        }
        assert_eq!(rebuilt, Some(mask));
    }

    #[test]
    fn without_a_mask_the_answer_is_the_result_alone() {
        let messages = answer_messages(result(), None).expect("no chunks");
        assert_eq!(messages, [Message::SegmentResult(result())]);
    }

    #[test]
    fn out_of_order_and_inconsistent_chunks_are_refused() {
        let mask = checkerboard(4);
        let header = mask.header(2);
        let chunk = |index, runs: &[u32]| MaskChunk {
            index,
            count: 2,
            runs: runs.to_vec(),
        };
        let mut assembler = MaskAssembler::new(header);
        assert!(matches!(
            assembler.push(&chunk(1, &[])),
            Err(ChunkError::OutOfOrder { expected: 0, .. })
        ));
        assert_eq!(assembler.push(&chunk(0, &mask.runs[..3])), Ok(None));
        assert!(matches!(
            assembler.push(&chunk(1, &mask.runs[4..])),
            Err(ChunkError::RunCount { .. })
        ));

        let mut short = mask.runs.clone();
        *short.last_mut().expect("runs") += 1;
        let mut assembler = MaskAssembler::new(mask.header(1));
        let one = MaskChunk {
            index: 0,
            count: 1,
            runs: short,
        };
        assert!(matches!(
            assembler.push(&one),
            Err(ChunkError::Coverage {
                expected: 16,
                got: 17
            })
        ));
    }
}
