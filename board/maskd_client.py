#!/usr/bin/env python3
"""Client for the maskd serial protocol, written from docs/PROTOCOL.md.

As a CLI:
    python board/maskd_client.py --port /dev/ttyUSB0 hello
    python board/maskd_client.py --port /dev/ttyUSB0 segment 120,80 --bg 40,40 --rle --downscale 4 --ascii
    python board/maskd_client.py --port /dev/ttyUSB0 status
    python board/maskd_client.py --port /dev/ttyUSB0 --timeout 120 everything --points-per-side 16 --max-objects 20
    python board/maskd_client.py transcode frames.bin out.bin   # decode a byte stream, re-encode it

As a module:
    from maskd_client import Client, Point, Label
    with Client.open("/dev/ttyUSB0") as client:
        result, mask = client.segment([Point(120, 80, Label.FOREGROUND)], rle=True)
        head, objects = client.everything(points_per_side=16, timeout=120)

Needs Python 3.11; pyserial only for talking to a port.
"""

from __future__ import annotations

import argparse
import dataclasses
import enum
import json
import random
import struct
import sys
import time
import zlib
from dataclasses import dataclass, field
from typing import Iterable

VERSION = 1
HEADER = struct.Struct("<BBBHI")  # version, kind, flags, seq, request_id (section 1.1)
CRC_LEN = 4
MAX_FRAME = 4096
MAX_BODY = MAX_FRAME - HEADER.size - CRC_LEN
MAX_ENCODED = MAX_FRAME + -(-MAX_FRAME // 254)
FLAG_MORE = 0x01

SCHEMA = "\n".join([
    "maskd 1",
    "Hello=0x01{client:str}",
    "Capabilities=0x02{protocol:u8,schema_hash:u32,max_frame:u16,image_width:u16,image_height:u16,model:str,max_points:u8,queue_capacity:u8,heartbeat_ms:u32}",
    "SegmentRequest=0x10{points:seq<Point>,box:option<Box>,frame:FrameSelector,output:Output}",
    "SegmentResult=0x11{status:ResultStatus,frame_id:u32,frame_age_ms:u32,decode_ms:u32,predicted_iou:f32,stability_score:f32,area:u32,bbox:Box,centroid:PointF,angle:f32,grasp:Pixel,clearance:f32,mask:option<MaskHeader>}",
    "MaskChunk=0x12{index:u16,count:u16,runs:seq<u32>}",
    "GetStatus=0x20{}",
    "Status=0x21{uptime_ms:u32,fps:f32,encoder_ms:f32,camera:CameraState,queue_depth:u8,frames_superseded:u32,capture_errors:u32,busy_rejections:u32,link_drops:LinkDrops,unsent:Unsent,encoder:EncoderState}",
    "EverythingRequest=0x30{frame:FrameSelector,points_per_side:u8,max_objects:u16,output:Output}",
    "Objects=0x31{frame_id:u32,frame_age_ms:u32,elapsed_ms:u32,prompts:u16,found:u16,objects:u16}",
    "Error=0x7f{code:ErrorCode,message:str}",
    "Point{x:u16,y:u16,label:Label}",
    "Label[Background,Foreground]",
    "Box{x0:u16,y0:u16,x1:u16,y1:u16}",
    "Pixel{x:u16,y:u16}",
    "PointF{x:f32,y:f32}",
    "FrameSelector[Latest,Id(u32)]",
    "Output{mask:MaskEncoding,downscale:u8}",
    "MaskEncoding[None,Rle]",
    "ResultStatus[Ok,Empty]",
    "MaskHeader{x0:u16,y0:u16,downscale:u8,width:u16,height:u16,runs:u32,chunks:u16}",
    "CameraState[Starting,Streaming,Stalled,Disconnected]",
    "EncoderState[Local,Remote,Fallback,Down]",
    "LinkDrops{cobs:u32,truncated:u32,crc:u32,unknown_version:u32,unknown_kind:u32,oversize:u32,body:u32}",
    "Unsent{answers:u32,heartbeats:u32}",
    "ErrorCode[BadCrc,UnknownVersion,UnknownKind,Oversize,MalformedBody,Busy,InvalidPrompt,NoFrame,Internal]",
])
SCHEMA_HASH = zlib.crc32(SCHEMA.encode("ascii"))


class FrameError(Exception):
    """A received frame was dropped; `reason` names the drop counter of section 5."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


class MaskdError(Exception):
    """The daemon answered with an Error message."""

    def __init__(self, reply: "ErrorReply"):
        super().__init__(f"{reply.code.name}: {reply.message}")
        self.reply = reply


# --- COBS (section 1) ---------------------------------------------------------

def cobs_encode(data: bytes) -> bytes:
    out = bytearray([0])
    code_at, code = 0, 1
    for i, byte in enumerate(data):
        if byte == 0:
            out[code_at] = code
            code_at, code = len(out), 1
            out.append(0)
            continue
        out.append(byte)
        code += 1
        # A full block ends without an implied zero; open the next only if data follows.
        if code == 0xFF and i + 1 < len(data):
            out[code_at] = code
            code_at, code = len(out), 1
            out.append(0)
    out[code_at] = code
    return bytes(out)


def cobs_decode(data: bytes) -> bytes:
    out = bytearray()
    i = 0
    while i < len(data):
        code = data[i]
        if code == 0 or i + code > len(data):
            raise FrameError("cobs", f"bad code byte {code} at {i}")
        out += data[i + 1:i + code]
        i += code
        if code < 0xFF and i < len(data):
            out.append(0)
    return bytes(out)


# --- postcard (section 2) -----------------------------------------------------

class Writer:
    def __init__(self) -> None:
        self.buf = bytearray()

    def u8(self, v: int) -> None:
        self.buf.append(v)

    def varint(self, v: int) -> None:
        while v >= 0x80:
            self.buf.append((v & 0x7F) | 0x80)
            v >>= 7
        self.buf.append(v)

    u16 = u32 = varint

    def f32(self, v: float) -> None:
        self.buf += struct.pack("<f", v)

    def str(self, v: str) -> None:
        data = v.encode("utf-8")
        self.varint(len(data))
        self.buf += data


class Reader:
    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise FrameError("body", "body ends early")
        chunk = self.data[self.pos:self.pos + n]
        self.pos += n
        return chunk

    def u8(self) -> int:
        return self.take(1)[0]

    def varint(self, bits: int = 32) -> int:
        value = 0
        for i in range(-(-bits // 7)):
            byte = self.u8()
            value |= (byte & 0x7F) << (7 * i)
            if not byte & 0x80:
                if value >= 1 << bits:
                    raise FrameError("body", f"varint {value} exceeds u{bits}")
                return value
        raise FrameError("body", f"varint longer than u{bits} allows")

    def u16(self) -> int:
        return self.varint(16)

    def u32(self) -> int:
        return self.varint(32)

    def f32(self) -> float:
        return struct.unpack("<f", self.take(4))[0]

    def str(self) -> str:
        try:
            return self.take(self.u32()).decode("utf-8")
        except UnicodeDecodeError as e:
            raise FrameError("body", "invalid UTF-8") from e

    def option(self) -> bool:
        tag = self.u8()
        if tag > 1:
            raise FrameError("body", f"option tag {tag}")
        return tag == 1

    def enum(self, cls: type[enum.IntEnum]) -> enum.IntEnum:
        index = self.u32()
        try:
            return cls(index)
        except ValueError as e:
            raise FrameError("body", f"{cls.__name__} index {index}") from e

    def end(self) -> None:
        if self.pos != len(self.data):
            raise FrameError("body", f"{len(self.data) - self.pos} bytes left after the message")


# --- messages (section 3) -----------------------------------------------------

class Label(enum.IntEnum):
    BACKGROUND = 0
    FOREGROUND = 1


class MaskEncoding(enum.IntEnum):
    NONE = 0
    RLE = 1


class ResultStatus(enum.IntEnum):
    OK = 0
    EMPTY = 1


class CameraState(enum.IntEnum):
    STARTING = 0
    STREAMING = 1
    STALLED = 2
    DISCONNECTED = 3


class EncoderState(enum.IntEnum):
    LOCAL = 0
    REMOTE = 1
    FALLBACK = 2
    DOWN = 3


class ErrorCode(enum.IntEnum):
    BAD_CRC = 0
    UNKNOWN_VERSION = 1
    UNKNOWN_KIND = 2
    OVERSIZE = 3
    MALFORMED_BODY = 4
    BUSY = 5
    INVALID_PROMPT = 6
    NO_FRAME = 7
    INTERNAL = 8


@dataclass
class Point:
    x: int
    y: int
    label: Label = Label.FOREGROUND


@dataclass
class Box:
    x0: int
    y0: int
    x1: int
    y1: int

    def write(self, w: Writer) -> None:
        for v in (self.x0, self.y0, self.x1, self.y1):
            w.u16(v)

    @classmethod
    def read(cls, r: Reader) -> "Box":
        return cls(r.u16(), r.u16(), r.u16(), r.u16())


@dataclass
class Hello:
    KIND = 0x01
    client: str

    def write(self, w: Writer) -> None:
        w.str(self.client)

    @classmethod
    def read(cls, r: Reader) -> "Hello":
        return cls(r.str())


@dataclass
class Capabilities:
    KIND = 0x02
    protocol: int
    schema_hash: int
    max_frame: int
    image_width: int
    image_height: int
    model: str
    max_points: int
    queue_capacity: int
    heartbeat_ms: int

    def write(self, w: Writer) -> None:
        w.u8(self.protocol), w.u32(self.schema_hash), w.u16(self.max_frame)
        w.u16(self.image_width), w.u16(self.image_height), w.str(self.model)
        w.u8(self.max_points), w.u8(self.queue_capacity), w.u32(self.heartbeat_ms)

    @classmethod
    def read(cls, r: Reader) -> "Capabilities":
        return cls(r.u8(), r.u32(), r.u16(), r.u16(), r.u16(), r.str(), r.u8(), r.u8(), r.u32())


@dataclass
class SegmentRequest:
    KIND = 0x10
    points: list[Point]
    box: Box | None = None
    frame_id: int | None = None  # None: FrameSelector::Latest
    mask: MaskEncoding = MaskEncoding.NONE
    downscale: int = 1

    def write(self, w: Writer) -> None:
        w.varint(len(self.points))
        for p in self.points:
            w.u16(p.x), w.u16(p.y), w.varint(int(p.label))
        if self.box is None:
            w.u8(0)
        else:
            w.u8(1)
            self.box.write(w)
        write_frame_selector(w, self.frame_id)
        w.varint(int(self.mask)), w.u8(self.downscale)

    @classmethod
    def read(cls, r: Reader) -> "SegmentRequest":
        points = [Point(r.u16(), r.u16(), r.enum(Label)) for _ in range(r.u32())]
        box = Box.read(r) if r.option() else None
        frame_id = read_frame_selector(r)
        return cls(points, box, frame_id, r.enum(MaskEncoding), r.u8())


def write_frame_selector(w: Writer, frame_id: int | None) -> None:
    if frame_id is None:
        w.varint(0)
    else:
        w.varint(1), w.u32(frame_id)


def read_frame_selector(r: Reader) -> int | None:
    selector = r.u32()
    if selector > 1:
        raise FrameError("body", f"FrameSelector index {selector}")
    return r.u32() if selector == 1 else None


@dataclass
class MaskHeader:
    x0: int
    y0: int
    downscale: int
    width: int
    height: int
    runs: int
    chunks: int


@dataclass
class SegmentResult:
    KIND = 0x11
    status: ResultStatus
    frame_id: int
    frame_age_ms: int
    decode_ms: int
    predicted_iou: float
    stability_score: float
    area: int
    bbox: Box
    centroid: tuple[float, float]
    angle: float
    grasp: tuple[int, int]
    clearance: float
    mask: MaskHeader | None

    def write(self, w: Writer) -> None:
        w.varint(int(self.status)), w.u32(self.frame_id), w.u32(self.frame_age_ms), w.u32(self.decode_ms)
        w.f32(self.predicted_iou), w.f32(self.stability_score), w.u32(self.area)
        self.bbox.write(w)
        w.f32(self.centroid[0]), w.f32(self.centroid[1]), w.f32(self.angle)
        w.u16(self.grasp[0]), w.u16(self.grasp[1]), w.f32(self.clearance)
        if self.mask is None:
            w.u8(0)
        else:
            m = self.mask
            w.u8(1), w.u16(m.x0), w.u16(m.y0), w.u8(m.downscale), w.u16(m.width), w.u16(m.height)
            w.u32(m.runs), w.u16(m.chunks)

    @classmethod
    def read(cls, r: Reader) -> "SegmentResult":
        head = (r.enum(ResultStatus), r.u32(), r.u32(), r.u32(), r.f32(), r.f32(), r.u32(), Box.read(r))
        geometry = ((r.f32(), r.f32()), r.f32(), (r.u16(), r.u16()), r.f32())
        mask = MaskHeader(r.u16(), r.u16(), r.u8(), r.u16(), r.u16(), r.u32(), r.u16()) if r.option() else None
        return cls(*head, *geometry, mask)


@dataclass
class MaskChunk:
    KIND = 0x12
    index: int
    count: int
    runs: list[int]

    def write(self, w: Writer) -> None:
        w.u16(self.index), w.u16(self.count), w.varint(len(self.runs))
        for run in self.runs:
            w.u32(run)

    @classmethod
    def read(cls, r: Reader) -> "MaskChunk":
        return cls(r.u16(), r.u16(), [r.u32() for _ in range(r.u32())])


@dataclass
class GetStatus:
    KIND = 0x20

    def write(self, w: Writer) -> None:
        pass

    @classmethod
    def read(cls, r: Reader) -> "GetStatus":
        return cls()


LINK_DROPS = ("cobs", "truncated", "crc", "unknown_version", "unknown_kind", "oversize", "body")
UNSENT = ("answers", "heartbeats")


@dataclass
class Status:
    KIND = 0x21
    uptime_ms: int
    fps: float
    encoder_ms: float
    camera: CameraState
    queue_depth: int
    frames_superseded: int
    capture_errors: int
    busy_rejections: int
    link_drops: dict[str, int] = field(default_factory=dict)
    unsent: dict[str, int] = field(default_factory=dict)
    encoder: EncoderState = EncoderState.LOCAL

    def write(self, w: Writer) -> None:
        w.u32(self.uptime_ms), w.f32(self.fps), w.f32(self.encoder_ms), w.varint(int(self.camera))
        w.u8(self.queue_depth), w.u32(self.frames_superseded), w.u32(self.capture_errors)
        w.u32(self.busy_rejections)
        for name in LINK_DROPS:
            w.u32(self.link_drops.get(name, 0))
        for name in UNSENT:
            w.u32(self.unsent.get(name, 0))
        w.varint(int(self.encoder))

    @classmethod
    def read(cls, r: Reader) -> "Status":
        head = (r.u32(), r.f32(), r.f32(), r.enum(CameraState), r.u8(), r.u32(), r.u32(), r.u32())
        link_drops = {name: r.u32() for name in LINK_DROPS}
        unsent = {name: r.u32() for name in UNSENT}
        return cls(*head, link_drops, unsent, r.enum(EncoderState))


@dataclass
class EverythingRequest:
    KIND = 0x30
    frame_id: int | None = None  # None: FrameSelector::Latest
    points_per_side: int = 0  # 0: the daemon's default
    max_objects: int = 0  # 0: all
    mask: MaskEncoding = MaskEncoding.NONE
    downscale: int = 1

    def write(self, w: Writer) -> None:
        write_frame_selector(w, self.frame_id)
        w.u8(self.points_per_side), w.u16(self.max_objects), w.varint(int(self.mask)), w.u8(self.downscale)

    @classmethod
    def read(cls, r: Reader) -> "EverythingRequest":
        return cls(read_frame_selector(r), r.u8(), r.u16(), r.enum(MaskEncoding), r.u8())


@dataclass
class Objects:
    KIND = 0x31
    frame_id: int
    frame_age_ms: int
    elapsed_ms: int
    prompts: int
    found: int
    objects: int

    def write(self, w: Writer) -> None:
        w.u32(self.frame_id), w.u32(self.frame_age_ms), w.u32(self.elapsed_ms)
        w.u16(self.prompts), w.u16(self.found), w.u16(self.objects)

    @classmethod
    def read(cls, r: Reader) -> "Objects":
        return cls(r.u32(), r.u32(), r.u32(), r.u16(), r.u16(), r.u16())


@dataclass
class ErrorReply:
    KIND = 0x7F
    code: ErrorCode
    message: str

    def write(self, w: Writer) -> None:
        w.varint(int(self.code)), w.str(self.message)

    @classmethod
    def read(cls, r: Reader) -> "ErrorReply":
        return cls(r.enum(ErrorCode), r.str())


MESSAGES = {cls.KIND: cls for cls in (Hello, Capabilities, SegmentRequest, SegmentResult, MaskChunk,
                                      GetStatus, Status, EverythingRequest, Objects, ErrorReply)}


# --- frames (sections 1 and 5) ------------------------------------------------

@dataclass
class Frame:
    seq: int
    request_id: int
    more: bool
    message: object


def encode_frame(frame: Frame) -> bytes:
    """The frame as sent on the line, COBS-encoded and delimited."""
    w = Writer()
    frame.message.write(w)
    raw = HEADER.pack(VERSION, frame.message.KIND, FLAG_MORE if frame.more else 0, frame.seq,
                      frame.request_id) + bytes(w.buf)
    if len(raw) + CRC_LEN > MAX_FRAME:
        raise ValueError(f"frame of {len(raw) + CRC_LEN} bytes exceeds {MAX_FRAME}")
    raw += struct.pack("<I", zlib.crc32(raw))
    return cobs_encode(raw) + b"\x00"


def decode_frame(encoded: bytes) -> Frame:
    """One encoded frame, delimiter excluded; raises FrameError in the order of section 5."""
    raw = cobs_decode(encoded)
    if len(raw) > MAX_FRAME:
        raise FrameError("oversize", f"{len(raw)} bytes")
    if len(raw) < HEADER.size + CRC_LEN:
        raise FrameError("truncated", f"{len(raw)} bytes")
    content, (crc,) = raw[:-CRC_LEN], struct.unpack("<I", raw[-CRC_LEN:])
    version, kind, flags, seq, request_id = HEADER.unpack(content[:HEADER.size])
    if zlib.crc32(content) != crc:
        raise FrameError("crc", f"request id {request_id} (unverified)")
    if version != VERSION:
        raise FrameError("unknown_version", str(version))
    if kind not in MESSAGES:
        raise FrameError("unknown_kind", f"{kind:#04x}")
    r = Reader(content[HEADER.size:])
    message = MESSAGES[kind].read(r)
    r.end()
    return Frame(seq, request_id, bool(flags & FLAG_MORE), message)


class Decoder:
    """Splits a byte stream into frames; fed any chunks, buffers at most MAX_ENCODED bytes."""

    def __init__(self) -> None:
        self.buf = bytearray()
        self.discarding = False
        self.drops = dict.fromkeys(LINK_DROPS, 0)

    def feed(self, data: bytes) -> list[Frame | FrameError]:
        results: list[Frame | FrameError] = []
        for byte in data:
            if byte != 0:
                if self.discarding:
                    continue
                if len(self.buf) == MAX_ENCODED:
                    self.discarding = True
                    self.buf.clear()
                else:
                    self.buf.append(byte)
                continue
            if self.discarding:
                self.discarding = False
                results.append(FrameError("oversize", "no delimiter within the limit"))
            elif self.buf:
                try:
                    results.append(decode_frame(bytes(self.buf)))
                except FrameError as e:
                    results.append(e)
                self.buf.clear()
            else:
                continue
            if isinstance(results[-1], FrameError):
                self.drops[results[-1].reason] += 1
        return results


# --- masks (section 4) --------------------------------------------------------

def mask_cells(header: MaskHeader, runs: Iterable[int]) -> list[list[bool]]:
    """The RLE grid as rows of cells (True = set); checks it covers the grid exactly."""
    flat: list[bool] = []
    for i, run in enumerate(runs):
        flat.extend([i % 2 == 1] * run)
    if len(flat) != header.width * header.height:
        raise ValueError(f"runs cover {len(flat)} cells, grid has {header.width * header.height}")
    return [flat[y * header.width:(y + 1) * header.width] for y in range(header.height)]


# --- the client (section 6) ---------------------------------------------------

class Client:
    """Blocking request/answer over a pyserial port (or any object with read/write)."""

    def __init__(self, port, timeout: float = 5.0, retries: int = 2) -> None:
        self.port, self.timeout, self.retries = port, timeout, retries
        self.decoder = Decoder()
        self.seq = 0
        # Random, so that a new client's ids do not repeat a previous one's
        # that the daemon still keeps for duplicates (section 6).
        self.next_id = random.randrange(1, 1 << 31)
        self.last_status: Status | None = None
        port.write(b"\x00")  # cut off whatever the daemon holds (section 1)

    @classmethod
    def open(cls, path: str, baud: int = 115200, **kwargs) -> "Client":
        try:
            import serial  # pyserial: only needed for a real port
        except ImportError as e:
            raise OSError("opening a port needs pyserial: pip install -r board/requirements-client.txt") from e

        return cls(serial.Serial(path, baud, timeout=0.1), **kwargs)

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc) -> None:
        self.port.close()

    def send(self, message, request_id: int) -> None:
        self.port.write(encode_frame(Frame(self.seq, request_id, False, message)))
        self.seq = (self.seq + 1) & 0xFFFF

    def request(self, message, timeout: float | None = None) -> list[Frame]:
        """Sends `message` and returns the frames of its answer; retries with the same id.

        `timeout` (default: the client's) is how long to wait for the first frame."""
        request_id = self.next_id
        self.next_id = self.next_id % 0xFFFFFFFF + 1
        for _ in range(self.retries + 1):
            self.send(message, request_id)
            answer = self._collect(request_id, time.monotonic() + (timeout or self.timeout))
            if answer is not None:
                if isinstance(answer[0].message, ErrorReply):
                    raise MaskdError(answer[0].message)
                return answer
        raise TimeoutError(f"no answer to request {request_id} after {self.retries + 1} tries")

    def _collect(self, request_id: int, deadline: float) -> list[Frame] | None:
        frames: list[Frame] = []
        while time.monotonic() < deadline:
            for item in self.decoder.feed(self._read()):
                if isinstance(item, FrameError):
                    continue
                if isinstance(item.message, Status) and item.request_id == 0:
                    self.last_status = item.message
                if item.request_id != request_id:
                    continue
                frames.append(item)
                if not item.more:
                    return frames
                deadline = time.monotonic() + self.timeout
        return None

    def _read(self) -> bytes:
        # What has arrived, else wait for one byte: a read of a fixed size
        # would wait out the port's timeout after a short answer.
        waiting = getattr(self.port, "in_waiting", None)
        return self.port.read(max(1, waiting) if waiting is not None else 256) or b""

    def hello(self, name: str = "maskd_client.py") -> Capabilities:
        caps = self.request(Hello(name))[0].message
        if caps.schema_hash != SCHEMA_HASH:
            print(f"warning: daemon schema hash {caps.schema_hash:#010x}, ours {SCHEMA_HASH:#010x}",
                  file=sys.stderr)
        return caps

    def status(self) -> Status:
        return self.request(GetStatus())[0].message

    def segment(self, points: list[Point], box: Box | None = None, frame_id: int | None = None,
                rle: bool = False, downscale: int = 1) -> tuple[SegmentResult, list[list[bool]] | None]:
        mask = MaskEncoding.RLE if rle else MaskEncoding.NONE
        frames = self.request(SegmentRequest(points, box, frame_id, mask, downscale))
        return split_results(frames)[0]

    def everything(self, frame_id: int | None = None, points_per_side: int = 0, max_objects: int = 0,
                   rle: bool = False, downscale: int = 1, timeout: float | None = None
                   ) -> tuple[Objects, list[tuple[SegmentResult, list[list[bool]] | None]]]:
        """Every object in a frame; allow `timeout` for the whole job (section 3, 0x30)."""
        mask = MaskEncoding.RLE if rle else MaskEncoding.NONE
        frames = self.request(EverythingRequest(frame_id, points_per_side, max_objects, mask, downscale), timeout)
        head = frames[0].message
        if not isinstance(head, Objects):
            raise ValueError(f"expected Objects, got {type(head).__name__}")
        objects = split_results(frames[1:])
        if len(objects) != head.objects:
            raise ValueError(f"Objects announced {head.objects} objects, {len(objects)} came")
        return head, objects


def split_results(frames: list[Frame]) -> list[tuple[SegmentResult, list[list[bool]] | None]]:
    """SegmentResults, each with the cells of the MaskChunks after it (section 4)."""
    results: list[tuple[SegmentResult, list[list[bool]] | None]] = []
    i = 0
    while i < len(frames):
        result = frames[i].message
        if not isinstance(result, SegmentResult):
            raise ValueError(f"expected a SegmentResult, got {type(result).__name__}")
        i += 1
        if result.mask is None:
            results.append((result, None))
            continue
        chunks = [f.message for f in frames[i:i + result.mask.chunks]]
        i += result.mask.chunks
        if [getattr(c, "index", None) for c in chunks] != list(range(result.mask.chunks)):
            raise ValueError(f"expected {result.mask.chunks} chunks in order")
        results.append((result, mask_cells(result.mask, (run for c in chunks for run in c.runs))))
    return results


# --- CLI ------------------------------------------------------------------------

def to_json(value) -> object:
    if dataclasses.is_dataclass(value):
        out = {"type": type(value).__name__}
        out.update({f.name: to_json(getattr(value, f.name)) for f in dataclasses.fields(value)})
        return out
    if isinstance(value, enum.Enum):
        return value.name
    if isinstance(value, (list, tuple)):
        return [to_json(v) for v in value]
    if isinstance(value, dict):
        return {k: to_json(v) for k, v in value.items()}
    return value


def parse_ints(text: str, n: tuple[int, ...]) -> list[int]:
    values = [int(v) for v in text.split(",")]
    if len(values) not in n:
        raise argparse.ArgumentTypeError(f"{text!r}: expected {' or '.join(map(str, n))} integers")
    return values


def parse_point(text: str, label: Label = Label.FOREGROUND) -> Point:
    values = parse_ints(text, (2, 3))
    return Point(values[0], values[1], Label(values[2]) if len(values) == 3 else label)


def transcode(src: str, dst: str) -> int:
    """Decodes every frame in `src`, prints each as JSON, writes our own encoding of them to `dst`."""
    with open(src, "rb") as f:
        results = Decoder().feed(f.read())
    out = bytearray()
    for item in results:
        if isinstance(item, FrameError):
            print(json.dumps({"error": item.reason, "detail": str(item)}))
            continue
        print(json.dumps({"seq": item.seq, "request_id": item.request_id, "more": item.more,
                          "message": to_json(item.message)}))
        out += encode_frame(item)
    with open(dst, "wb") as f:
        f.write(out)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", help="serial device, e.g. /dev/ttyUSB0")
    parser.add_argument("--baud", type=int, default=115200)
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for an answer")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("hello", help="print the daemon's capabilities")
    sub.add_parser("status", help="print the daemon's status")
    seg = sub.add_parser("segment", help="segment at the given points")
    seg.add_argument("points", nargs="*", metavar="X,Y[,LABEL]", help="object clicks (LABEL 1) or background (0)")
    seg.add_argument("--bg", action="append", default=[], metavar="X,Y", help="a background click")
    seg.add_argument("--box", metavar="X0,Y0,X1,Y1", help="a box around the object")
    seg.add_argument("--frame", type=int, help="segment this frame id instead of the latest frame")
    seg.add_argument("--rle", action="store_true", help="also fetch the mask")
    seg.add_argument("--downscale", type=int, default=1, help="mask downscale factor, 1-64")
    seg.add_argument("--ascii", action="store_true", help="print the mask as ASCII art (with --rle)")
    every = sub.add_parser("everything", help="every object in a frame (allow a long --timeout)")
    every.add_argument("--points-per-side", type=int, default=0, help="grid points per side, 1-64 (0: the daemon's)")
    every.add_argument("--max-objects", type=int, default=0, help="most objects sent (0: all)")
    every.add_argument("--frame", type=int, help="this frame id instead of the latest frame")
    every.add_argument("--rle", action="store_true", help="also fetch every mask")
    every.add_argument("--downscale", type=int, default=1, help="mask downscale factor, 1-64")
    tc = sub.add_parser("transcode", help="decode a file of frames, re-encode them into another")
    tc.add_argument("src")
    tc.add_argument("dst")
    args = parser.parse_args(argv)

    if args.command == "transcode":
        return transcode(args.src, args.dst)
    if not args.port:
        parser.error("--port is required for this command")
    try:
        with Client.open(args.port, args.baud, timeout=args.timeout) as client:
            if args.command == "hello":
                print(json.dumps(to_json(client.hello())))
            elif args.command == "status":
                print(json.dumps(to_json(client.status())))
            elif args.command == "everything":
                head, objects = client.everything(args.frame, args.points_per_side, args.max_objects, args.rle,
                                                  args.downscale)
                print(json.dumps(to_json(head)))
                for result, _ in objects:
                    print(json.dumps(to_json(result)))
            else:
                points = [parse_point(p) for p in args.points]
                points += [parse_point(p, Label.BACKGROUND) for p in args.bg]
                box = Box(*parse_ints(args.box, (4,))) if args.box else None
                result, cells = client.segment(points, box, args.frame, args.rle, args.downscale)
                print(json.dumps(to_json(result)))
                if cells is not None and args.ascii:
                    print("\n".join("".join("#" if c else "." for c in row) for row in cells))
    except (MaskdError, TimeoutError, OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
