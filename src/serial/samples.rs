//! Sample messages shared by the serial layer's unit tests and the Python
//! client's byte-for-byte test (tests/protocol_python.rs): one place to
//! extend when a message kind is added.

use super::message::*;

/// Index of the SegmentResult in [`sample_messages`].
pub const SAMPLE_RESULT: usize = 4;

/// One message of every kind, with non-trivial fields and edge values (the
/// largest coordinate and frame id, a name outside ASCII, an empty request);
/// its SegmentResult sits at [`SAMPLE_RESULT`].
pub fn sample_messages() -> Vec<Message> {
    vec![
        Message::Hello(Hello {
            client: "arm-controller 2.1 ✓".into(),
        }),
        Message::Capabilities(Capabilities {
            protocol: PROTOCOL_VERSION,
            schema_hash: SCHEMA_HASH,
            max_frame: 4096,
            image_width: 640,
            image_height: 480,
            model: "mobile_sam".into(),
            max_points: 16,
            queue_capacity: 4,
            heartbeat_ms: 1000,
        }),
        Message::SegmentRequest(SegmentRequest {
            points: vec![
                Point {
                    x: 120,
                    y: 80,
                    label: Label::Foreground,
                },
                Point {
                    x: 65_535,
                    y: 0,
                    label: Label::Background,
                },
            ],
            box_prompt: Some(Rect {
                x0: 10,
                y0: 20,
                x1: 400,
                y1: 300,
            }),
            frame: FrameSelector::Id(u32::MAX),
            output: Output {
                mask: MaskEncoding::Rle,
                downscale: 4,
            },
        }),
        Message::SegmentRequest(SegmentRequest {
            points: vec![],
            box_prompt: None,
            frame: FrameSelector::Latest,
            output: Output {
                mask: MaskEncoding::None,
                downscale: 1,
            },
        }),
        Message::SegmentResult(SegmentResult {
            status: ResultStatus::Ok,
            frame_id: 77_000,
            frame_age_ms: 85,
            decode_ms: 31,
            predicted_iou: 0.93,
            stability_score: 0.97,
            area: 12_345,
            bbox: Rect {
                x0: 100,
                y0: 60,
                x1: 220,
                y1: 190,
            },
            centroid: PointF {
                x: 160.25,
                y: 125.5,
            },
            angle: -0.75,
            grasp: Pixel { x: 158, y: 130 },
            clearance: 41.2,
            mask: Some(MaskHeader {
                x0: 100,
                y0: 60,
                downscale: 2,
                width: 61,
                height: 66,
                runs: 300,
                chunks: 1,
            }),
        }),
        Message::MaskChunk(MaskChunk {
            index: 0,
            count: 1,
            runs: vec![0, 3, 200, 70_000, 1],
        }),
        Message::GetStatus,
        Message::Status(Status {
            uptime_ms: 3_600_000,
            fps: 4.5,
            encoder_ms: 210.0,
            camera: CameraState::Streaming,
            queue_depth: 2,
            frames_superseded: 17,
            capture_errors: 1,
            busy_rejections: 3,
            link_drops: LinkDrops {
                cobs: 1,
                truncated: 2,
                crc: 3,
                unknown_version: 4,
                unknown_kind: 5,
                oversize: 6,
                body: 7,
            },
            unsent: Unsent { answers: 8, heartbeats: 9 },
            encoder: EncoderState::Fallback,
        }),
        Message::EverythingRequest(EverythingRequest {
            frame: FrameSelector::Id(77_000),
            points_per_side: 64,
            max_objects: 65_535,
            output: Output {
                mask: MaskEncoding::Rle,
                downscale: 8,
            },
        }),
        Message::Objects(Objects {
            frame_id: 77_000,
            frame_age_ms: 1_200,
            elapsed_ms: 31_000,
            prompts: 256,
            found: 400,
            objects: 300,
        }),
        Message::Error(ErrorReply {
            code: ErrorCode::NoFrame,
            message: "frame 12 is gone".into(),
        }),
    ]
}
