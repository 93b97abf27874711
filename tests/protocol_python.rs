//! The Python client (board/maskd_client.py, written from docs/PROTOCOL.md)
//! against the Rust codec: every message kind crosses both ways, byte for byte.
//!
//! Needs a Python with pyserial: `$MASKD_CLIENT_PYTHON`, else a venv in
//! `${MASKD_CACHE:-~/.cache/maskd}/venv-client`, created here when missing.
//! Fails (never skips) when neither can be had.

use std::path::{Path, PathBuf};
use std::process::Command;

use maskd::serial::*;

mod common;
use common::client_python as python;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn run(command: &mut Command) -> String {
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("running {command:?}: {e}"));
    assert!(
        out.status.success(),
        "{command:?} failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("maskd-protocol-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir.join(name)
}

/// One message of every kind, and a mask long enough to need several chunks.
fn messages() -> Vec<Message> {
    let mask = maskd::model::Mask::from_fn(200, 150, |x, y| (x / 2 + y) % 2 == 0);
    let wire = WireMask::from_mask(&mask, std::num::NonZeroU8::MIN)
        .expect("fits")
        .expect("set");
    let shape = shape(&mask).expect("fits").expect("set");
    let Message::SegmentResult(sample) = sample_messages().swap_remove(SAMPLE_RESULT) else {
        unreachable!("sample {SAMPLE_RESULT} is a SegmentResult")
    };
    // The sample's timings and scores, this mask's geometry.
    let result = SegmentResult {
        area: shape.area,
        bbox: shape.bbox,
        centroid: shape.centroid,
        angle: shape.angle,
        grasp: shape.grasp,
        clearance: shape.clearance,
        mask: None,
        ..sample
    };
    let answer = answer_messages(result, Some(&wire)).expect("chunks");
    assert!(answer.len() > 2, "the mask spans several chunks");
    let mut messages = sample_messages();
    messages.extend(answer);
    messages
}

fn frames() -> Vec<Frame> {
    let messages = messages();
    let last = messages.len() - 1;
    messages
        .into_iter()
        .enumerate()
        .map(|(i, message)| Frame {
            seq: 65_530u16.wrapping_add(i as u16),
            request_id: 1 + i as u32 * 999_983,
            more: i < last,
            message,
        })
        .collect()
}

#[test]
fn python_client_decodes_and_reencodes_every_message_kind_byte_for_byte() {
    let sent = frames();
    let stream: Vec<u8> = sent
        .iter()
        .flat_map(|f| encode(f).expect("encodes"))
        .collect();
    // Garbage first: the client must drop it and resynchronise.
    let mut input = vec![0x12, 0x34, 0x00];
    input.extend(&stream);
    let (src, dst) = (scratch("rust.bin"), scratch("python.bin"));
    std::fs::write(&src, &input).expect("written");

    let stdout = run(Command::new(python())
        .arg(repo().join("board/maskd_client.py"))
        .arg("transcode")
        .arg(&src)
        .arg(&dst));
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    assert_eq!(lines.len(), sent.len() + 1, "{stdout}");
    assert!(
        lines[0]["error"].is_string(),
        "garbage reported: {}",
        lines[0]
    );
    let kinds: Vec<&str> = lines[1..]
        .iter()
        .map(|l| l["message"]["type"].as_str().expect("type"))
        .collect();
    for kind in [
        "Hello",
        "Capabilities",
        "SegmentRequest",
        "SegmentResult",
        "MaskChunk",
        "GetStatus",
        "Status",
        "ErrorReply",
    ] {
        assert!(kinds.contains(&kind), "{kind} missing from {kinds:?}");
    }
    assert_eq!(lines[2]["message"]["schema_hash"], u64::from(SCHEMA_HASH));

    let reencoded = std::fs::read(&dst).expect("python output");
    assert!(
        reencoded == stream,
        "the Python encoding differs from the Rust one"
    );
    let received: Vec<Frame> = Decoder::new()
        .feed(&reencoded)
        .into_iter()
        .map(|r| r.expect("decodes"))
        .collect();
    assert_eq!(received, sent);
}

#[test]
fn python_module_builds_requests_the_rust_codec_reads() {
    let out = scratch("request.bin");
    let script = r#"
import sys
sys.path.insert(0, sys.argv[1])
import maskd_client as m
points = [m.parse_point("120,80"), m.parse_point("40,41", m.Label.BACKGROUND)]
request = m.SegmentRequest(points, m.Box(1, 2, 300, 200), 42, m.MaskEncoding.RLE, 3)
with open(sys.argv[2], "wb") as f:
    f.write(b"\x00" + m.encode_frame(m.Frame(7, 1234, False, request)))
print(m.SCHEMA_HASH)
"#;
    let stdout = run(Command::new(python())
        .arg("-c")
        .arg(script)
        .arg(repo().join("board"))
        .arg(&out));
    assert_eq!(
        stdout.trim(),
        SCHEMA_HASH.to_string(),
        "the client's schema copy matches"
    );
    let results = Decoder::new().feed(&std::fs::read(&out).expect("written"));
    let frame = results
        .into_iter()
        .next()
        .expect("one frame")
        .expect("decodes");
    assert_eq!((frame.seq, frame.request_id, frame.more), (7, 1234, false));
    assert_eq!(
        frame.message,
        Message::SegmentRequest(SegmentRequest {
            points: vec![
                Point {
                    x: 120,
                    y: 80,
                    label: Label::Foreground
                },
                Point {
                    x: 40,
                    y: 41,
                    label: Label::Background
                },
            ],
            box_prompt: Some(Rect {
                x0: 1,
                y0: 2,
                x1: 300,
                y1: 200
            }),
            frame: FrameSelector::Id(42),
            output: Output {
                mask: MaskEncoding::Rle,
                downscale: 3
            },
        })
    );
}
