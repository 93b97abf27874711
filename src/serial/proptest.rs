//! Property tests of the serial layer: random messages through encode, random
//! chunk splits and the decoder; random masks through chunking and reassembly.

use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;

use super::chunk::{answer_messages, MaskAssembler};
use super::codec::{encode, Decoder, Frame, MAX_BODY};
use super::geometry::WireMask;
use super::message::*;
use super::samples::{sample_messages, SAMPLE_RESULT};

fn finite() -> impl Strategy<Value = f32> {
    -1.0e6f32..1.0e6
}

fn rect() -> impl Strategy<Value = Rect> {
    (any::<u16>(), any::<u16>(), any::<u16>(), any::<u16>()).prop_map(|(x0, y0, x1, y1)| Rect {
        x0,
        y0,
        x1,
        y1,
    })
}

fn label() -> impl Strategy<Value = Label> {
    prop_oneof![Just(Label::Background), Just(Label::Foreground)]
}

fn frame_selector() -> impl Strategy<Value = FrameSelector> {
    prop_oneof![
        Just(FrameSelector::Latest),
        any::<u32>().prop_map(FrameSelector::Id)
    ]
}

fn output() -> impl Strategy<Value = Output> {
    let mask = prop_oneof![Just(MaskEncoding::None), Just(MaskEncoding::Rle)];
    (mask, any::<u8>()).prop_map(|(mask, downscale)| Output { mask, downscale })
}

fn segment_request() -> impl Strategy<Value = SegmentRequest> {
    let point =
        (any::<u16>(), any::<u16>(), label()).prop_map(|(x, y, label)| Point { x, y, label });
    (
        vec(point, 0..20),
        option::of(rect()),
        frame_selector(),
        output(),
    )
        .prop_map(
            |(points, box_prompt, frame, output)| SegmentRequest {
                points,
                box_prompt,
                frame,
                output,
            },
        )
}

fn segment_result() -> impl Strategy<Value = SegmentResult> {
    let header = (
        any::<u16>(),
        any::<u16>(),
        any::<u8>(),
        any::<u16>(),
        any::<u16>(),
        any::<u32>(),
        any::<u16>(),
    )
        .prop_map(
            |(x0, y0, downscale, width, height, runs, chunks)| MaskHeader {
                x0,
                y0,
                downscale,
                width,
                height,
                runs,
                chunks,
            },
        );
    let status = prop_oneof![Just(ResultStatus::Ok), Just(ResultStatus::Empty)];
    (
        (
            status,
            any::<u32>(),
            any::<u32>(),
            any::<u32>(),
            finite(),
            finite(),
            any::<u32>(),
        ),
        (
            rect(),
            finite(),
            finite(),
            finite(),
            any::<u16>(),
            any::<u16>(),
            finite(),
            option::of(header),
        ),
    )
        .prop_map(
            |(
                (status, frame_id, frame_age_ms, decode_ms, predicted_iou, stability_score, area),
                (bbox, cx, cy, angle, gx, gy, clearance, mask),
            )| SegmentResult {
                status,
                frame_id,
                frame_age_ms,
                decode_ms,
                predicted_iou,
                stability_score,
                area,
                bbox,
                centroid: PointF { x: cx, y: cy },
                angle,
                grasp: Pixel { x: gx, y: gy },
                clearance,
                mask,
            },
        )
}

fn status() -> impl Strategy<Value = Status> {
    let camera = prop_oneof![
        Just(CameraState::Starting),
        Just(CameraState::Streaming),
        Just(CameraState::Stalled),
        Just(CameraState::Disconnected),
    ];
    let encoder = prop_oneof![
        Just(EncoderState::Local),
        Just(EncoderState::Remote),
        Just(EncoderState::Fallback),
        Just(EncoderState::Down),
    ];
    (
        (
            any::<u32>(),
            finite(),
            finite(),
            camera,
            any::<u8>(),
            any::<u32>(),
            any::<u32>(),
            any::<u32>(),
        ),
        any::<[u32; 9]>(),
        encoder,
    )
        .prop_map(
            |(
                (
                    uptime_ms,
                    fps,
                    encoder_ms,
                    camera,
                    queue_depth,
                    frames_superseded,
                    capture_errors,
                    busy_rejections,
                ),
                d,
                encoder,
            )| Status {
                uptime_ms,
                fps,
                encoder_ms,
                camera,
                queue_depth,
                frames_superseded,
                capture_errors,
                busy_rejections,
                link_drops: LinkDrops {
                    cobs: d[0],
                    truncated: d[1],
                    crc: d[2],
                    unknown_version: d[3],
                    unknown_kind: d[4],
                    oversize: d[5],
                    body: d[6],
                },
                unsent: Unsent { answers: d[7], heartbeats: d[8] },
                encoder,
            },
        )
}

fn error_code() -> impl Strategy<Value = ErrorCode> {
    prop::sample::select(vec![
        ErrorCode::BadCrc,
        ErrorCode::UnknownVersion,
        ErrorCode::UnknownKind,
        ErrorCode::Oversize,
        ErrorCode::MalformedBody,
        ErrorCode::Busy,
        ErrorCode::InvalidPrompt,
        ErrorCode::NoFrame,
        ErrorCode::Internal,
    ])
}

fn message() -> impl Strategy<Value = Message> {
    prop_oneof![
        ".{0,40}".prop_map(|client| Message::Hello(Hello { client })),
        (
            any::<u32>(),
            any::<u16>(),
            any::<u16>(),
            "[a-z_]{0,20}",
            any::<u8>(),
            any::<u32>()
        )
            .prop_map(
                |(schema_hash, image_width, image_height, model, max_points, heartbeat_ms)| {
                    Message::Capabilities(Capabilities {
                        protocol: PROTOCOL_VERSION,
                        schema_hash,
                        max_frame: 4096,
                        image_width,
                        image_height,
                        model,
                        max_points,
                        queue_capacity: max_points,
                        heartbeat_ms,
                    })
                }
            ),
        segment_request().prop_map(Message::SegmentRequest),
        segment_result().prop_map(Message::SegmentResult),
        (any::<u16>(), any::<u16>(), vec(any::<u32>(), 0..200))
            .prop_map(|(index, count, runs)| Message::MaskChunk(MaskChunk { index, count, runs })),
        Just(Message::GetStatus),
        status().prop_map(Message::Status),
        (frame_selector(), any::<u8>(), any::<u16>(), output()).prop_map(|(frame, points_per_side, max_objects, output)| {
            Message::EverythingRequest(EverythingRequest { frame, points_per_side, max_objects, output })
        }),
        (any::<u32>(), any::<u32>(), any::<u32>(), any::<u16>(), any::<u16>(), any::<u16>()).prop_map(
            |(frame_id, frame_age_ms, elapsed_ms, prompts, found, objects)| {
                Message::Objects(Objects { frame_id, frame_age_ms, elapsed_ms, prompts, found, objects })
            }
        ),
        (error_code(), ".{0,60}")
            .prop_map(|(code, message)| Message::Error(ErrorReply { code, message })),
    ]
}

fn frame() -> impl Strategy<Value = Frame> {
    (any::<u16>(), any::<u32>(), any::<bool>(), message()).prop_map(
        |(seq, request_id, more, message)| Frame {
            seq,
            request_id,
            more,
            message,
        },
    )
}

/// Cuts `bytes` at the given fractions of its length.
fn split(bytes: &[u8], cuts: &[f64]) -> Vec<Vec<u8>> {
    let mut at: Vec<usize> = cuts
        .iter()
        .map(|c| (c * bytes.len() as f64) as usize)
        .collect();
    at.sort_unstable();
    let mut pieces = Vec::new();
    let mut start = 0;
    for end in at.into_iter().chain([bytes.len()]) {
        pieces.push(bytes[start..end].to_vec());
        start = end;
    }
    pieces
}

proptest! {
    #[test]
    fn frames_survive_encoding_and_any_chunk_split(
        frames in vec(frame(), 1..6),
        cuts in vec(0.0f64..1.0, 0..12),
    ) {
        let stream: Vec<u8> = frames.iter().flat_map(|f| encode(f).expect("encodes")).collect();
        let mut decoder = Decoder::new();
        let mut received = Vec::new();
        for piece in split(&stream, &cuts) {
            for result in decoder.feed(&piece) {
                received.push(result.expect("decodes"));
            }
        }
        prop_assert_eq!(received, frames);
    }

    #[test]
    fn decoder_recovers_after_garbage(
        garbage in vec(any::<u8>(), 0..600),
        sent in frame(),
        cuts in vec(0.0f64..1.0, 0..6),
    ) {
        // A leading delimiter cuts the garbage off, as a client does after opening the port.
        let mut stream = garbage;
        stream.push(0);
        stream.extend(encode(&sent).expect("encodes"));
        let mut decoder = Decoder::new();
        let results: Vec<_> = split(&stream, &cuts).iter().flat_map(|p| decoder.feed(p)).collect();
        let last = results.last().expect("the frame ends the stream");
        prop_assert_eq!(last.as_ref().expect("decodes"), &sent);
        let drops = decoder.drops();
        let dropped = drops.cobs + drops.truncated + drops.crc + drops.unknown_version
            + drops.unknown_kind + drops.oversize + drops.body;
        prop_assert_eq!(dropped as usize, results.len() - 1);
    }

    #[test]
    fn chunked_masks_fit_frames_and_reassemble(
        width in 1u32..90,
        height in 1u32..90,
        seed in any::<u64>(),
        density in 0u64..100,
        downscale in 1u8..6,
    ) {
        let mut state = seed | 1;
        let mask = crate::model::Mask::from_fn(width, height, |_, _| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % 100 < density
        });
        let downscale = std::num::NonZeroU8::new(downscale).expect("non-zero");
        let Some(wire) = WireMask::from_mask(&mask, downscale).expect("fits u16") else {
            prop_assert_eq!(mask.area(), 0);
            return Ok(());
        };
        let messages = answer_messages(sample_result(), Some(&wire)).expect("chunks");
        let Message::SegmentResult(result) = &messages[0] else { panic!("result first") };
        let header = result.mask.expect("mask header");
        let mut assembler = MaskAssembler::new(header);
        let mut rebuilt = None;
        for message in &messages[1..] {
            let Message::MaskChunk(chunk) = message else { panic!("chunks follow") };
            prop_assert!(message.to_body().expect("encodes").len() <= MAX_BODY);
            rebuilt = assembler.push(chunk).expect("in order");
        }
        prop_assert_eq!(rebuilt.expect("complete"), wire);
    }
}

fn sample_result() -> SegmentResult {
    match sample_messages().swap_remove(SAMPLE_RESULT) {
        Message::SegmentResult(result) => result,
        other => unreachable!("sample {SAMPLE_RESULT} is {other:?}"),
    }
}
