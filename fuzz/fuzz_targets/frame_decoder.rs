//! The serial frame decoder against arbitrary byte streams, fed in arbitrary pieces.
//!
//! Input layout: byte 0 picks the mode and the number of split points, the next
//! bytes are the split points (u16 LE each), the rest is the stream. In "framed"
//! mode the stream is read as `[len][len bytes]` records, each given a valid CRC
//! and COBS-encoded, so that the fuzzer reaches the body parsers behind the CRC.
//!
//! Checked for every input:
//! - the decoder never panics;
//! - the results do not depend on how the stream was split;
//! - each delimited frame gives exactly one result, an over-long one `Oversize(its length)`;
//! - every decoded frame re-encodes to the bytes it came from, but for the two
//!   freedoms docs/PROTOCOL.md gives senders: reserved flag bits and varints
//!   longer than needed (then the re-encoded frame must decode to the same frame);
//! - the drop counters only grow, by one per error;
//! - the decoder holds at most a buffer of `MAX_ENCODED` bytes between calls.

#![no_main]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use crc::{Crc, CRC_32_ISO_HDLC};
use libfuzzer_sys::fuzz_target;

// maskd's codec and messages, compiled here on their own: depending on the
// maskd crate would build (and instrument) tract for a target that never runs it.
// The target uses only the decoding side.
#[allow(dead_code)]
#[path = "../../src/serial/codec.rs"]
mod codec;
#[allow(dead_code)]
#[path = "../../src/serial/message.rs"]
mod message;

use codec::{encode, Decoder, Frame, FrameError, CRC_LEN, DELIMITER, HEADER_LEN, MAX_ENCODED};
use message::LinkDrops;

/// Counts the bytes the Rust side holds, so that the decoder's memory can be bounded.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        System.dealloc(ptr, layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(new_size, Ordering::Relaxed);
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// What a decoder may hold between calls: its buffer, grown by doubling to fit
/// `MAX_ENCODED` bytes.
const MAX_HELD: usize = MAX_ENCODED.next_power_of_two();

const CRC32: Crc<u32> = Crc::<u32>::new(&CRC_32_ISO_HDLC);
const FLAGS_OFFSET: usize = 2;
const FLAG_MORE: u8 = 0x01;

fuzz_target!(|data: &[u8]| {
    let Some((&control, rest)) = data.split_first() else {
        return;
    };
    let framed = control & 0x80 != 0;
    let split_count = usize::from(control & 0x0f);
    let (split_bytes, stream) = rest.split_at((2 * split_count).min(rest.len()));
    let stream = if framed {
        framed_stream(stream)
    } else {
        stream.to_vec()
    };
    let mut splits: Vec<usize> = split_bytes
        .chunks_exact(2)
        .map(|b| usize::from(u16::from_le_bytes([b[0], b[1]])) % (stream.len() + 1))
        .collect();
    splits.sort_unstable();

    let whole = results_in_one_piece(&stream);
    check_pieces(&stream, &splits, &whole);
    check_against_the_stream(&stream, &Decoder::new().feed(&stream));
});

/// Records `[len][len bytes]` as CRC-checked, COBS-encoded, delimited frames.
fn framed_stream(mut records: &[u8]) -> Vec<u8> {
    let mut stream = Vec::new();
    while let Some((&len, rest)) = records.split_first() {
        let (raw, rest) = rest.split_at(usize::from(len).min(rest.len()));
        let mut raw = raw.to_vec();
        raw.extend(CRC32.checksum(&raw).to_le_bytes());
        stream.extend(cobs::encode_vec(&raw));
        stream.push(DELIMITER);
        records = rest;
    }
    stream
}

fn results_in_one_piece(stream: &[u8]) -> Vec<String> {
    Decoder::new()
        .feed(stream)
        .iter()
        .map(|r| format!("{r:?}"))
        .collect()
}

/// Feeds the pieces between `splits` through `decode`, checking each result
/// against `whole` and the counters and memory after every call. Nothing is
/// kept between calls, so that all the memory held is the decoder's.
fn check_pieces(stream: &[u8], splits: &[usize], whole: &[String]) {
    let mut seen = 0;
    let mut decoder = Decoder::new();
    let mut drops = decoder.drops();
    let held_before = LIVE.load(Ordering::Relaxed);
    let mut start = 0;
    for end in splits.iter().copied().chain([stream.len()]) {
        let mut piece = &stream[start..end];
        start = end;
        while !piece.is_empty() {
            let (used, result) = decoder.decode(piece);
            assert!(
                used <= piece.len(),
                "consumed {used} of {} bytes",
                piece.len()
            );
            assert!(used > 0, "decode made no progress");
            if result.is_some() {
                assert_eq!(
                    piece[used - 1],
                    DELIMITER,
                    "a frame ended without a delimiter"
                );
            } else {
                assert_eq!(used, piece.len(), "stopped early without a frame");
            }
            let now = decoder.drops();
            let error = matches!(result, Some(Err(_)));
            assert_eq!(
                total(now),
                total(drops) + u64::from(error),
                "{drops:?} -> {now:?}"
            );
            assert!(
                grew(drops, now),
                "a drop counter went down: {drops:?} -> {now:?}"
            );
            drops = now;
            if let Some(result) = result {
                let expected = whole.get(seen).map(String::as_str);
                assert_eq!(
                    Some(format!("{result:?}").as_str()),
                    expected,
                    "split at {splits:?}"
                );
                seen += 1;
            }
            piece = &piece[used..];
            let held = LIVE.load(Ordering::Relaxed).saturating_sub(held_before);
            assert!(held <= MAX_HELD, "decoder holds {held} bytes");
        }
    }
    assert_eq!(
        seen,
        whole.len(),
        "results depend on the split points {splits:?}"
    );
}

fn counters(drops: LinkDrops) -> [u32; 7] {
    [
        drops.cobs,
        drops.truncated,
        drops.crc,
        drops.unknown_version,
        drops.unknown_kind,
        drops.oversize,
        drops.body,
    ]
}

fn total(drops: LinkDrops) -> u64 {
    counters(drops).iter().map(|&c| u64::from(c)).sum()
}

fn grew(before: LinkDrops, after: LinkDrops) -> bool {
    counters(before)
        .iter()
        .zip(counters(after))
        .all(|(b, a)| *b <= a)
}

/// One result per non-empty delimited frame, in order; each one as the frame's bytes require.
fn check_against_the_stream(stream: &[u8], results: &[Result<Frame, FrameError>]) {
    let mut frames: Vec<&[u8]> = stream.split(|&b| b == DELIMITER).collect();
    frames.pop(); // Bytes after the last delimiter end no frame yet.
    frames.retain(|frame| !frame.is_empty());
    assert_eq!(frames.len(), results.len(), "one result per frame");
    for (encoded, result) in frames.into_iter().zip(results) {
        match result {
            Ok(frame) => assert_reencodes(encoded, frame),
            Err(FrameError::Oversize(n)) if encoded.len() > MAX_ENCODED => {
                assert_eq!(*n, encoded.len(), "an over-long frame reports its length")
            }
            Err(error) => assert!(
                encoded.len() <= MAX_ENCODED,
                "over-long frame of {} bytes rejected as {error:?}",
                encoded.len()
            ),
        }
    }
}

fn assert_reencodes(encoded: &[u8], frame: &Frame) {
    let reencoded = encode(frame).expect("a decoded frame encodes");
    let (delimiter, reencoded) = reencoded.split_last().expect("never empty");
    assert_eq!(*delimiter, DELIMITER);
    if encoded == reencoded {
        return;
    }
    let received = cobs::decode_vec(encoded).expect("the frame decoded");
    assert_eq!(
        cobs::encode_vec(&received),
        encoded,
        "non-canonical COBS accepted"
    );
    let sent = cobs::decode_vec(reencoded).expect("encode emits valid COBS");
    // The two freedoms docs/PROTOCOL.md leaves a sender, and nothing else:
    // reserved flag bits, which receivers ignore (section 1.1), and varints
    // longer than needed, which its LEB128 rules accept up to the type's
    // byte limit (section 2).
    let mut header = received[..HEADER_LEN].to_vec();
    header[FLAGS_OFFSET] &= FLAG_MORE;
    assert_eq!(
        header,
        sent[..HEADER_LEN],
        "{frame:?} re-encodes another header"
    );
    let body = |raw: &[u8]| raw[HEADER_LEN..raw.len() - CRC_LEN].to_vec();
    let (received_body, sent_body) = (body(&received), body(&sent));
    if received_body.len() == sent_body.len() {
        // Each varint is at least as long as its minimal form: same length, same bytes.
        assert_eq!(
            received_body, sent_body,
            "{frame:?} re-encodes another body"
        );
    } else {
        assert!(
            received_body.len() > sent_body.len(),
            "{frame:?} re-encodes to a longer body"
        );
        let again = Decoder::new().feed(&[reencoded, &[DELIMITER]].concat());
        assert_eq!(
            format!("{again:?}"),
            format!("{:?}", [Ok::<&Frame, ()>(frame)]),
            "the re-encoded frame decodes to another frame"
        );
    }
}
