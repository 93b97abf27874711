#!/usr/bin/env python3
"""End-to-end checks of a running `maskd run` through board/maskd_client.py.

Run by tests/daemon.rs, which starts the daemon on a pseudo-terminal with a
folder of frames, and passes the mask `maskd segment` made for the same
image and prompt. Prints one line per check; exits non-zero on the first failure.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import sys
import time
import zlib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "board"))
import maskd_client as mc  # noqa: E402


def check(condition: bool, what: str) -> None:
    if not condition:
        raise AssertionError(what)


def raw_frame(version: int, kind: int, request_id: int, body: bytes, crc_ok: bool = True) -> bytes:
    raw = mc.HEADER.pack(version, kind, 0, 0, request_id) + body
    crc = zlib.crc32(raw) ^ (0 if crc_ok else 0xFFFF)
    return mc.cobs_encode(raw + crc.to_bytes(4, "little")) + b"\x00"


def segment_request(point=(255, 180), rle=False, downscale=1, frame_id=None) -> mc.SegmentRequest:
    mask = mc.MaskEncoding.RLE if rle else mc.MaskEncoding.NONE
    return mc.SegmentRequest([mc.Point(point[0], point[1], mc.Label.FOREGROUND)], None, frame_id, mask, downscale)


class Session:
    """A client that can also send raw bytes and collect answers by id."""

    def __init__(self, port_path: str) -> None:
        self.client = mc.Client.open(port_path, timeout=30.0, retries=0)
        self.next_id = 1000
        self.heartbeats: list[mc.Status] = []
        self.finished: list[int] = []  # request ids, in the order their answers completed
        self.finished_at: dict[int, float] = {}  # request id -> perf_counter() when its answer completed

    def new_id(self) -> int:
        self.next_id += 1
        return self.next_id

    def send(self, message, request_id: int) -> None:
        self.client.send(message, request_id)

    def collect(self, ids: set[int], seconds: float) -> dict[int, list[mc.Frame]]:
        """Every complete answer for `ids` within `seconds`, frames in order; extra answers are kept too."""
        answers: dict[int, list[list[mc.Frame]]] = {}
        partial: dict[int, list[mc.Frame]] = {}
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            port = self.client.port
            # Take what is there rather than block for a full buffer.
            for item in self.client.decoder.feed(port.read(max(1, port.in_waiting)) or b""):
                if isinstance(item, mc.FrameError):
                    continue
                if item.request_id == 0:
                    if isinstance(item.message, mc.Status):
                        self.heartbeats.append(item.message)
                    continue
                partial.setdefault(item.request_id, []).append(item)
                if not item.more:
                    answers.setdefault(item.request_id, []).append(partial.pop(item.request_id))
                    self.finished.append(item.request_id)
                    self.finished_at[item.request_id] = time.perf_counter()
            if ids and ids.issubset(answers) and not partial:
                break
        return answers

    def ask(self, message, request_id: int | None = None, seconds: float = 60.0) -> list[mc.Frame]:
        request_id = request_id or self.new_id()
        self.send(message, request_id)
        answers = self.collect({request_id}, seconds)
        check(request_id in answers, f"no answer to request {request_id} within {seconds} s")
        check(len(answers[request_id]) == 1, f"request {request_id} answered {len(answers[request_id])} times")
        return answers[request_id][0]


def error_code(frames: list[mc.Frame]):
    message = frames[0].message
    return message.code if isinstance(message, mc.ErrorReply) else None


def wait_for_frame(s: Session) -> list[mc.Frame]:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        frames = s.ask(segment_request())
        if error_code(frames) != mc.ErrorCode.NO_FRAME:
            return frames
        time.sleep(0.5)
    raise AssertionError("no frame was embedded within 120 s")


def cells_of(frames: list[mc.Frame]) -> tuple[mc.SegmentResult, list[list[bool]]]:
    result = frames[0].message
    check(isinstance(result, mc.SegmentResult), f"expected a SegmentResult, got {result}")
    runs = [r for f in frames[1:] for r in f.message.runs]
    return result, mc.mask_cells(result.mask, runs)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", required=True)
    parser.add_argument("--expected", required=True, help="JSON: width, height, bits of maskd segment's mask")
    parser.add_argument("--daemon-pid", type=int, required=True)
    parser.add_argument("--queue-capacity", type=int, required=True)
    parser.add_argument("--expected-everything", required=True,
                        help="SAM JSON records of maskd everything --points-per-side 4 on the same image")
    args = parser.parse_args()
    expected = json.loads(Path(args.expected).read_text())
    s = Session(args.port)
    report: dict[str, object] = {}

    first = wait_for_frame(s)
    check(isinstance(first[0].message, mc.SegmentResult), f"first answer: {first[0].message}")
    print("ok   first frame embedded")

    caps = s.ask(mc.Hello("daemon_e2e.py"))[0].message
    check(isinstance(caps, mc.Capabilities), f"Hello answered with {caps}")
    check(caps.schema_hash == mc.SCHEMA_HASH and caps.protocol == 1, f"capabilities {caps}")
    check((caps.image_width, caps.image_height) == (expected["width"], expected["height"]), f"image size {caps}")
    check(caps.queue_capacity == args.queue_capacity, f"queue capacity {caps.queue_capacity}")
    print(f"ok   capabilities {caps.image_width}x{caps.image_height}, model {caps.model}")

    # The mask, cell for cell, equals maskd segment's on the same image and prompt.
    result, cells = cells_of(s.ask(segment_request(rle=True)))
    h = result.mask
    bits = expected["bits"]
    got = [[False] * expected["width"] for _ in range(expected["height"])]
    for j, row in enumerate(cells):
        for i, cell in enumerate(row):
            got[h.y0 + j][h.x0 + i] = cell
    diff = sum(got[y][x] != (bits[y * expected["width"] + x] == "1")
               for y in range(expected["height"]) for x in range(expected["width"]))
    check(diff == 0, f"{diff} pixels differ from maskd segment's mask")
    check(result.area == bits.count("1"), f"area {result.area} vs {bits.count('1')}")
    check(result.status == mc.ResultStatus.OK and 0.5 < result.predicted_iou <= 1.0, f"result {result}")
    print(f"ok   mask identical to maskd segment's ({result.area} px, {h.chunks} chunks, frame {result.frame_id})")
    frame_id = result.frame_id

    # Several prompts on one frame by id; a frame not kept is NoFrame.
    by_id = s.ask(segment_request(point=(100, 100), frame_id=frame_id))[0].message
    check(isinstance(by_id, mc.SegmentResult) and by_id.frame_id == frame_id, f"by id: {by_id}")
    check(error_code(s.ask(segment_request(frame_id=999_999))) == mc.ErrorCode.NO_FRAME, "frame 999999")
    print("ok   frame selector: by id, and NoFrame for a frame not kept")

    # Everything: the objects equal maskd everything's on the same image and grid, best first.
    reference = json.loads(Path(args.expected_everything).read_text())
    frames = s.ask(mc.EverythingRequest(frame_id, 4, 3, mc.MaskEncoding.RLE, 4), seconds=300)
    head = frames[0].message
    check(isinstance(head, mc.Objects), f"EverythingRequest answered with {head}")
    objects = mc.split_results(frames[1:])
    check(head.frame_id == frame_id and head.prompts == 16, f"objects head {head}")
    check(head.found == len(reference) and head.objects == len(objects) == min(3, len(reference)),
          f"{head}, {len(objects)} objects sent, maskd everything found {len(reference)}")
    for (result, cells), record in zip(objects, reference):
        x, y, w, h = record["bbox"]
        bbox = (result.bbox.x0, result.bbox.y0, result.bbox.x1, result.bbox.y1)
        check(bbox == (x, y, x + w, y + h) and result.area == record["area"], f"{result} vs {record['bbox']}")
        check(abs(result.predicted_iou - record["predicted_iou"]) < 1e-5, f"{result} vs {record}")
        check(result.frame_id == frame_id and result.mask.downscale == 4 and cells is not None, f"{result}")
        check(sum(map(sum, cells)) > 0, "an object's mask is empty")
    print(f"ok   everything: {head.found} objects from {head.prompts} prompts in {head.elapsed_ms} ms, "
          f"the same as maskd everything's; {head.objects} sent with their masks")

    # A prompt sent while a long everything job runs is answered before the job ends.
    job, prompt = s.new_id(), s.new_id()
    s.send(mc.EverythingRequest(frame_id, 8, 0, mc.MaskEncoding.NONE, 1), job)
    time.sleep(0.5)
    sent = time.perf_counter()
    s.send(segment_request(point=(200, 150)), prompt)
    answers = s.collect({job, prompt}, 300)
    check(job in answers and prompt in answers, f"answers: {sorted(answers)}")
    check(s.finished.index(prompt) < s.finished.index(job), "the prompt waited for the everything job")
    prompt_ms = (s.finished_at[prompt] - sent) * 1e3
    job_head = answers[job][0][0].message
    check(isinstance(job_head, mc.Objects) and job_head.prompts == 64, f"8x8 job: {job_head}")
    report["everything_8x8"] = {"elapsed_ms": job_head.elapsed_ms, "prompt_during_job_ms": round(prompt_ms, 1)}
    print(f"ok   priority: a prompt during an 8x8 everything job ({job_head.elapsed_ms} ms) "
          f"was answered in {prompt_ms:.0f} ms, before the job ended")

    wide = s.ask(mc.EverythingRequest(None, 65, 0, mc.MaskEncoding.NONE, 1))
    check(error_code(wide) == mc.ErrorCode.INVALID_PROMPT, f"points_per_side 65: {wide[0].message}")
    flat = s.ask(mc.EverythingRequest(None, 4, 0, mc.MaskEncoding.RLE, 0))
    check(error_code(flat) == mc.ErrorCode.INVALID_PROMPT, f"downscale 0: {flat[0].message}")
    print("ok   invalid everything requests: 65 points per side, downscale 0")

    # Invalid prompts are answered, not dropped.
    outside = s.ask(segment_request(point=(expected["width"] + 5, 10)))
    check(error_code(outside) == mc.ErrorCode.INVALID_PROMPT, f"outside point: {outside[0].message}")
    # A point names a pixel: the last column is inside, x = width is not.
    last = s.ask(segment_request(point=(expected["width"] - 1, expected["height"] - 1)))[0].message
    check(isinstance(last, mc.SegmentResult), f"the last pixel: {last}")
    edge = s.ask(segment_request(point=(expected["width"], 10)))
    check(error_code(edge) == mc.ErrorCode.INVALID_PROMPT and f"{expected['width']}x{expected['height']}" in getattr(edge[0].message, "message", ""),
          f"x = width: {edge[0].message}")
    long_name = s.ask(mc.Hello("x" * 65))
    check(error_code(long_name) == mc.ErrorCode.MALFORMED_BODY and "65 bytes" in getattr(long_name[0].message, "message", ""),
          f"a 65-byte Hello: {long_name[0].message}")
    empty = s.ask(mc.SegmentRequest([], None, None, mc.MaskEncoding.NONE, 1))
    check(error_code(empty) == mc.ErrorCode.INVALID_PROMPT, "no point, no box")
    zero = s.ask(segment_request(downscale=0))
    check(error_code(zero) == mc.ErrorCode.INVALID_PROMPT, "downscale 0")
    print("ok   invalid prompts: outside the image, x = width (x = width - 1 answered), empty, downscale 0, a 65-byte Hello")

    # Duplicates: an answered id is resent, not rerun; an id in flight is answered once.
    dup_id = s.new_id()
    once = s.ask(segment_request(point=(200, 150), rle=True, downscale=4), dup_id)
    again = s.ask(segment_request(point=(200, 150), rle=True, downscale=4), dup_id)
    check([f.message for f in once] == [f.message for f in again], "a duplicate got a different answer")
    twin = s.new_id()
    s.send(segment_request(point=(300, 120)), twin)
    s.send(segment_request(point=(300, 120)), twin)
    answers = s.collect({twin}, 30)
    time.sleep(1.0)
    answers_late = s.collect(set(), 1.0)
    check(len(answers.get(twin, [])) + len(answers_late.get(twin, [])) == 1, "a duplicate in flight was answered twice")
    print("ok   duplicates: answered once, resent from the cache")

    # Overload: more requests at once than the queue holds. Each gets one answer; some are Busy.
    burst = [s.new_id() for _ in range(args.queue_capacity + 6)]
    for i, request_id in enumerate(burst):
        s.send(segment_request(point=(150 + i, 150)), request_id)
    answers = s.collect(set(burst), 120)
    check(all(len(answers.get(i, [])) == 1 for i in burst), f"answers per id: {[len(answers.get(i, [])) for i in burst]}")
    codes = [error_code(answers[i][0]) for i in burst]
    busy = codes.count(mc.ErrorCode.BUSY)
    check(busy >= 1, f"no Busy among {codes}")
    check(codes.count(None) >= args.queue_capacity, f"fewer than {args.queue_capacity} answered: {codes}")
    report["burst"] = {"sent": len(burst), "busy": busy, "answered": codes.count(None)}
    print(f"ok   overload: {len(burst)} sent at once, {busy} Busy, {codes.count(None)} answered, none lost")

    # Garbage on the line: every bad frame is answered or counted, and the daemon carries on.
    before = s.ask(mc.GetStatus())[0].message.link_drops
    port = s.client.port
    bad_crc_id = s.new_id()
    port.write(b"\x01\x02\x03 line noise \xff\xfe" + b"\x00")       # invalid COBS or truncated
    port.write(mc.cobs_encode(b"\x01\x20\x00") + b"\x00")             # truncated: 3 bytes
    port.write(raw_frame(1, 0x20, bad_crc_id, b"", crc_ok=False))     # bad CRC
    port.write(raw_frame(9, 0x20, 77, b""))                           # unknown version
    port.write(raw_frame(1, 0x55, 78, b""))                           # unknown kind
    port.write(raw_frame(1, 0x10, 79, b"\x05"))                       # malformed SegmentRequest body
    caps_body = mc.Writer()
    mc.Capabilities(1, 0, 4096, 1, 1, "x", 1, 1, 1000).write(caps_body)
    port.write(raw_frame(1, 0x02, 80, bytes(caps_body.buf)))          # a daemon-to-client kind
    port.write(bytes([0x41]) * 5000 + b"\x00")                        # oversize
    answers = s.collect({bad_crc_id, 78, 79, 80}, 10)
    codes = {i: error_code(a[0]) for i, a in answers.items()}
    check(codes.get(bad_crc_id) == mc.ErrorCode.BAD_CRC, f"bad CRC answered {codes.get(bad_crc_id)}")
    check(codes.get(78) == mc.ErrorCode.UNKNOWN_KIND, f"unknown kind answered {codes.get(78)}")
    check(codes.get(79) == mc.ErrorCode.MALFORMED_BODY, f"malformed body answered {codes.get(79)}")
    check(codes.get(80) == mc.ErrorCode.MALFORMED_BODY, f"wrong direction answered {codes.get(80)}")
    after = s.ask(mc.GetStatus())[0].message.link_drops
    grew = {k: after[k] - before[k] for k in mc.LINK_DROPS}
    for key in ("truncated", "crc", "unknown_version", "unknown_kind", "body", "oversize"):
        check(grew[key] >= 1, f"link_drops.{key} did not grow: {grew}")
    check(grew["cobs"] + grew["truncated"] >= 2, f"line noise not counted: {grew}")
    still = s.ask(segment_request())[0].message
    check(isinstance(still, mc.SegmentResult), f"after garbage: {still}")
    report["drops"] = grew
    print(f"ok   corrupt, truncated, bad CRC, unknown version/kind, malformed, oversize: counted {grew}; still answering")

    # Prompt-to-reply latency, one request at a time.
    for name, rle, downscale in (("geometry", False, 1), ("rle_x4", True, 4)):
        times = []
        for i in range(20):
            start = time.perf_counter()
            frames = s.ask(segment_request(point=(120 + 10 * i, 160), rle=rle, downscale=downscale))
            times.append((time.perf_counter() - start) * 1e3)
            check(isinstance(frames[0].message, mc.SegmentResult), f"latency run: {frames[0].message}")
        times.sort()
        report[f"latency_{name}_ms"] = {"p50": round(statistics.median(times), 1),
                                        "p95": round(times[int(0.95 * (len(times) - 1))], 1)}
    print(f"ok   latency {report['latency_geometry_ms']} (geometry), {report['latency_rle_x4_ms']} (mask, downscale 4)")

    # Heartbeats arrive without asking.
    s.heartbeats.clear()
    s.collect(set(), 2.5)
    check(len(s.heartbeats) >= 1, "no heartbeat within 2.5 s")
    status = s.heartbeats[-1]
    print(f"ok   heartbeat: camera {status.camera.name}, encoder {status.encoder_ms:.0f} ms")

    # SIGTERM drains: a request sent just before is still answered; a long
    # everything job is cut short and answered Busy, so the client retries elsewhere.
    last, cut = s.new_id(), s.new_id()
    s.send(segment_request(point=(260, 170)), last)
    s.send(mc.EverythingRequest(None, 32, 0, mc.MaskEncoding.NONE, 1), cut)
    time.sleep(0.05)
    os.kill(args.daemon_pid, signal.SIGTERM)
    answers = s.collect({last, cut}, 60)
    check(len(answers.get(last, [])) == 1 and error_code(answers[last][0]) is None, f"in-flight answer: {answers.get(last)}")
    check(len(answers.get(cut, [])) == 1 and error_code(answers[cut][0]) == mc.ErrorCode.BUSY,
          f"everything job at shutdown: {answers.get(cut)}")
    print("ok   SIGTERM: the prompt in flight was answered, the everything job answered Busy")

    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
