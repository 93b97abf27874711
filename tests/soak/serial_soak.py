#!/usr/bin/env python3
"""A soak of the daemon's serial line (docs/PROTOCOL.md), as a controller
that comes and goes would drive it: prompts at a steady rate, everything
jobs, then the line left unread while long answers fill the
pseudo-terminal's buffer, then closed and opened again by a new reader. Repeats until --seconds have passed.

Checks, and exits 1 on the first that fails:
- every request sent while the reader was present is answered exactly once
  (a SegmentResult, Objects, or Busy: nothing else, nothing twice; or, where
  the frames differ in size, an InvalidPrompt naming a newer frame's smaller
  size: then the points keep inside every size seen);
- heartbeats (Status, request id 0) come at most 1.5 periods apart while the
  reader is present (from 1 s after it came back, once the backlog is read);
- the daemon's Status counts what it could not write while nobody read the
  line (`unsent`), and those counters never go down;
- the daemon's resident memory grows by at most --rss-growth-mib from the
  end of the first cycle to the end of the run. glibc keeps freed blocks, so
  the resident size moves within a band rather than staying put: over 30
  minutes on board/demo.toml (47 cycles) it stayed between 416 and 465 MiB
  after the first cycle and ended at 429. The default bound, 128 MiB,
  catches a leak of a frame's tensors per frame (several MiB a second); the
  figures per cycle of a long run by hand show a slow one.

Prints one JSON line of figures at the end. Used by tests/daemon.rs for a
short run in CI; run it by hand for longer (docs/PROTOCOL.md, "A line
nobody reads"):

    maskd run --config board/demo.toml &
    python3 tests/soak/serial_soak.py --port /tmp/maskd-tty --daemon-pid $! --seconds 1800
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "board"))
import maskd_client as mc  # noqa: E402


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def fail(why: str) -> None:
    print(f"FAIL {why}", flush=True)
    sys.exit(1)


class Reader:
    """One stay of a controller on the line: sends requests and reads every frame."""

    def __init__(self, port: str, heartbeat_s: float) -> None:
        self.client = mc.Client.open(port, timeout=30.0, retries=0)
        self.heartbeat_s = heartbeat_s
        self.opened = time.monotonic()
        self.beats: list[float] = []
        self.status: mc.Status | None = None  # the newest heartbeat's
        self.partial: dict[int, list[mc.Frame]] = {}
        self.answers: dict[int, list[list[mc.Frame]]] = {}
        self.frame_errors = 0

    def send(self, message, request_id: int) -> None:
        self.client.send(message, request_id)

    def read_for(self, seconds: float) -> None:
        port = self.client.port
        until = time.monotonic() + seconds
        while time.monotonic() < until:
            for item in self.client.decoder.feed(port.read(max(1, port.in_waiting)) or b""):
                if isinstance(item, mc.FrameError):
                    self.frame_errors += 1
                    continue
                if item.request_id == 0:
                    if isinstance(item.message, mc.Status):
                        self.beats.append(time.monotonic())
                        self.status = item.message
                    continue
                self.partial.setdefault(item.request_id, []).append(item)
                if not item.more:
                    self.answers.setdefault(item.request_id, []).append(self.partial.pop(item.request_id))

    def gaps(self) -> list[float]:
        """Heartbeat gaps once the backlog left by the idle time is read."""
        settled = [t for t in self.beats if t > self.opened + 1.0]
        return [b - a for a, b in zip(settled, settled[1:])]

    def close(self) -> None:
        self.client.port.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", required=True)
    parser.add_argument("--daemon-pid", type=int, required=True)
    parser.add_argument("--seconds", type=float, default=120)
    parser.add_argument("--heartbeat-ms", type=int, required=True, help="the daemon's serial.heartbeat_ms")
    parser.add_argument("--present", type=float, default=20, help="seconds a reader stays each cycle")
    parser.add_argument("--idle", type=float, default=10, help="seconds the line is left unread each cycle")
    parser.add_argument("--prompt-every", type=float, default=0.25, help="seconds between prompts")
    parser.add_argument("--rss-growth-mib", type=float, default=128)
    args = parser.parse_args()
    heartbeat_s = args.heartbeat_ms / 1000
    rng = random.Random(7)
    next_id = rng.randrange(1, 1 << 30)
    started = time.monotonic()
    figures = {"cycles": 0, "requests": 0, "answered": 0, "busy": 0, "everything": 0,
               "outside_a_smaller_frame": 0, "left_unread": 0, "frame_errors": 0}
    all_gaps: list[float] = []
    cycle_rss: list[float] = []  # at the end of each cycle
    width, height = 0, 0
    unsent = {name: 0 for name in mc.UNSENT}
    link_drops = {name: 0 for name in mc.LINK_DROPS}

    # Until the first frame is embedded, Capabilities says 0x0.
    first = Reader(args.port, heartbeat_s)
    deadline = time.monotonic() + 180
    while first.client.hello("serial_soak.py").image_width == 0:
        if time.monotonic() > deadline:
            fail("no frame embedded within 180 s")
        time.sleep(0.5)
    first.close()
    started = time.monotonic()

    while time.monotonic() - started < args.seconds:
        reader = Reader(args.port, heartbeat_s)
        reader.read_for(1.0)  # the backlog of the idle time, read and dropped
        reader.beats.clear()
        reader.answers.clear()
        reader.partial.clear()
        hello_id, next_id = next_id, next_id + 1
        reader.send(mc.Hello("serial_soak.py"), hello_id)
        reader.read_for(2.0)
        caps = reader.answers.get(hello_id)
        if not caps or not isinstance(caps[0][0].message, mc.Capabilities):
            fail(f"cycle {figures['cycles']}: no Capabilities after the reader came back ({caps})")
        # Points stay inside every frame size seen: frames may change size.
        announced = caps[0][0].message
        width = min(width, announced.image_width) if width else announced.image_width
        height = min(height, announced.image_height) if height else announced.image_height
        sent: dict[int, str] = {}
        points: dict[int, mc.Point] = {}
        until = time.monotonic() + args.present
        last_everything = time.monotonic()
        while time.monotonic() < until:
            request_id, next_id = next_id, next_id + 1
            if time.monotonic() - last_everything > 5 and width:
                reader.send(mc.EverythingRequest(None, 4, 0, mc.MaskEncoding.NONE, 1), request_id)
                sent[request_id] = "everything"
                last_everything = time.monotonic()
            else:
                point = mc.Point(rng.randrange(max(1, width)), rng.randrange(max(1, height)), mc.Label.FOREGROUND)
                reader.send(mc.SegmentRequest([point], None, None, mc.MaskEncoding.RLE, 4), request_id)
                sent[request_id] = "segment"
                points[request_id] = point
            reader.read_for(args.prompt_every)
        # Everything jobs yield to prompts: on a loaded machine they finish last.
        deadline = time.monotonic() + 180
        while not set(sent).issubset(reader.answers) and time.monotonic() < deadline:
            reader.read_for(0.5)
        reader.read_for(0.5)  # a second answer to any of them would come now
        for request_id, kind in sent.items():
            answers = reader.answers.get(request_id, [])
            if len(answers) != 1:
                fail(f"request {request_id} ({kind}) answered {len(answers)} times")
            head = answers[0][0].message
            smaller = isinstance(head, mc.ErrorReply) and head.code == mc.ErrorCode.INVALID_PROMPT and \
                re.search(r"outside the (\d+)x(\d+) image", head.message)
            if isinstance(head, mc.ErrorReply) and head.code == mc.ErrorCode.BUSY:
                figures["busy"] += 1
            elif kind == "segment" and smaller and \
                    (points[request_id].x >= int(smaller[1]) or points[request_id].y >= int(smaller[2])):
                figures["outside_a_smaller_frame"] += 1
                width, height = min(width, int(smaller[1])), min(height, int(smaller[2]))
            elif kind == "segment" and not isinstance(head, mc.SegmentResult):
                fail(f"request {request_id}: {head}")
            elif kind == "everything" and not isinstance(head, mc.Objects):
                fail(f"request {request_id}: {head}")
            figures["everything"] += kind == "everything"
        gaps = reader.gaps()
        if not gaps or max(gaps) > 1.5 * heartbeat_s:
            fail(f"cycle {figures['cycles']}: heartbeat gaps up to {max(gaps, default=0):.3f} s "
                 f"(period {heartbeat_s} s, {len(gaps)} gaps)")
        all_gaps += gaps
        if reader.status is None:
            fail(f"cycle {figures['cycles']}: no heartbeat")
        if any(reader.status.unsent[name] < unsent[name] for name in mc.UNSENT):
            fail(f"cycle {figures['cycles']}: Status's unsent went down: {unsent} -> {reader.status.unsent}")
        unsent, link_drops = reader.status.unsent, reader.status.link_drops
        figures["requests"] += len(sent)
        figures["answered"] += len(sent)
        figures["frame_errors"] += reader.frame_errors

        # Long answers nobody reads (full-size masks, ten prompts a second)
        # until the pty's buffer is full, then the line is closed.
        idle_until = time.monotonic() + args.idle
        centre = mc.Point(width // 2, height // 2, mc.Label.FOREGROUND)
        while time.monotonic() < idle_until:
            request_id, next_id = next_id, next_id + 1
            reader.send(mc.SegmentRequest([centre], None, None, mc.MaskEncoding.RLE, 1), request_id)
            figures["left_unread"] += 1
            time.sleep(0.1)
        reader.close()
        figures["cycles"] += 1
        cycle_rss.append(round(rss_mib(args.daemon_pid), 1))

    rss_start, rss_end = cycle_rss[0], rss_mib(args.daemon_pid)
    all_gaps.sort()
    pick = lambda q: round(all_gaps[min(len(all_gaps) - 1, int(q * len(all_gaps)))] * 1e3, 1)  # noqa: E731
    figures.update({
        "seconds": round(time.monotonic() - started),
        "heartbeat_gap_ms": {"p50": pick(0.5), "p99": pick(0.99), "max": round(all_gaps[-1] * 1e3, 1),
                             "mean": round(statistics.fmean(all_gaps) * 1e3, 1)},
        "unsent": unsent,
        "link_drops": link_drops,
        "rss_mib": {"start": rss_start, "end": round(rss_end, 1), "cycles": cycle_rss},
    })
    print(json.dumps(figures), flush=True)
    if rss_end - rss_start > args.rss_growth_mib:
        fail(f"RSS grew from {rss_start:.1f} to {rss_end:.1f} MiB, bound {args.rss_growth_mib} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
