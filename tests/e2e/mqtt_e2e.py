#!/usr/bin/env python3
"""The other side of tests/mqtt.rs: a serial controller (board/maskd_client.py)
and, for the load test, MQTT clients written with paho-mqtt (not maskd's client).

    mqtt_e2e.py serial --port TTY X,Y [X,Y ...]
        one SegmentRequest per point, in order; one JSON line per answer
        (the SegmentResult, the point, the round trip in ms)

    mqtt_e2e.py load --port TTY --broker HOST:PORT --user U --password P --device ID
                     [--prompts 100] [--boards 7] [--answer FILE]
        100 prompts over the serial line, then 100 over MQTT (MQTT 5 response
        topic and correlation data), one at a time, while publishers stand in
        for 7 more boards at the daemon's own rates; an independent subscriber
        counts every message. Prints the figures and, last, a JSON summary.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import sys
import threading
import time
import uuid

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "board"))
from maskd_client import Client, Label, MaskdError, Point  # noqa: E402


def parse_point(text: str) -> Point:
    x, y = (int(v) for v in text.split(","))
    return Point(x, y, Label.FOREGROUND)


def open_client(port: str) -> Client:
    """A serial client that waits up to 30 s for an answer."""
    return Client.open(port, timeout=30.0)


def segment_when_embedded(client, point: Point, within: float = 120.0):
    """The answer to one click, retried while no frame is embedded yet (a daemon just started)."""
    until = time.monotonic() + within
    while True:
        try:
            return client.segment([point])
        except MaskdError as e:
            if e.reply.code.name != "NO_FRAME" or time.monotonic() > until:
                raise
            time.sleep(0.2)


def serial(args) -> int:
    with open_client(args.port) as client:
        for text in args.points:
            start = time.perf_counter()
            result, _ = segment_when_embedded(client, parse_point(text))
            ms = (time.perf_counter() - start) * 1e3
            print(json.dumps({"point": text, "frame_id": result.frame_id, "area": result.area, "ms": round(ms, 2)}), flush=True)
    return 0


def percentile(values, p):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def load(args) -> int:
    import paho.mqtt.client as mqtt
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    host, port = args.broker.rsplit(":", 1)
    port = int(port)

    def connect(name):
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"{name}-{os.getpid()}", protocol=mqtt.MQTTv5)
        client.username_pw_set(args.user, args.password)
        client.connect(host, port)
        # Without it, Nagle's algorithm and the broker's delayed ACK add ~40 ms to each round trip.
        client.socket().setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        client.loop_start()
        return client

    # The independent counter: every answer, status and snapshot of every board.
    counts: dict[str, int] = {}
    daemon_points: list[tuple[float, float]] = []
    counts_lock = threading.Lock()
    daemon_answers_topic = f"maskd/{args.device}/answers"

    def on_count(_client, _userdata, message):
        with counts_lock:
            counts[message.topic] = counts.get(message.topic, 0) + 1
            if message.topic == daemon_answers_topic:
                x, y, _label = json.loads(message.payload)["prompt"]["points"][0]
                daemon_points.append((x, y))

    counter = connect("counter")
    counter.on_message = on_count
    subscribed = threading.Event()
    counter.on_subscribe = lambda *a: subscribed.set()
    counter.subscribe([("maskd/+/answers", 1), ("maskd/+/status", 1), ("maskd/+/snapshot", 1)])
    subscribed.wait(10)

    # Stand-ins for the other boards: a status every second, a snapshot every
    # second, and an answer per prompt answered, as the daemon publishes them.
    with open(args.answer, "rb") as f:
        answer_payload = f.read()
    snapshot_payload = os.urandom(args.snapshot_bytes)
    sent: dict[str, int] = {}
    stop = threading.Event()
    boards = [f"load-{i}" for i in range(args.boards)]
    publisher = connect("boards")
    answer_period = 1.0 / args.answer_rate

    def publish(topic, payload, qos, retain=False):
        info = publisher.publish(topic, payload, qos=qos, retain=retain)
        info.wait_for_publish(10)
        sent[topic] = sent.get(topic, 0) + 1

    def boards_loop():
        next_status = next_answer = time.monotonic()
        while not stop.is_set():
            now = time.monotonic()
            if now >= next_status:
                next_status += 1.0
                for board in boards:
                    publish(f"maskd/{board}/status", json.dumps({"schema": 1, "state": "online", "device_id": board}), 1, True)
                    publish(f"maskd/{board}/snapshot", snapshot_payload, 0, True)
            if now >= next_answer:
                next_answer += answer_period
                for board in boards:
                    publish(f"maskd/{board}/answers", answer_payload, 1)
            time.sleep(max(0.0, min(next_status, next_answer) - time.monotonic()))

    boards_thread = threading.Thread(target=boards_loop, daemon=True)
    boards_thread.start()

    # Serial prompts, one at a time.
    serial_ms = []
    with open_client(args.port) as client:
        for i in range(args.prompts):
            start = time.perf_counter()
            segment_when_embedded(client, Point(100 + i % 200, 150, Label.FOREGROUND))
            serial_ms.append((time.perf_counter() - start) * 1e3)

    # MQTT prompts, one at a time, each waiting for its reply.
    prompter = connect("prompter")
    reply_topic = f"load/replies/{uuid.uuid4().hex}"
    replies: dict[bytes, tuple[float, dict]] = {}
    reply_ready = threading.Condition()

    def on_reply(_client, _userdata, message):
        with reply_ready:
            correlation = message.properties.CorrelationData if hasattr(message.properties, "CorrelationData") else b""
            replies[correlation] = (time.perf_counter(), json.loads(message.payload))
            reply_ready.notify_all()

    prompter.on_message = on_reply
    reply_subscribed = threading.Event()
    prompter.on_subscribe = lambda *a: reply_subscribed.set()
    prompter.subscribe(reply_topic, 1)
    reply_subscribed.wait(10)
    mqtt_ms = []
    errors = []
    for i in range(args.prompts):
        correlation = f"c{i}".encode()
        properties = Properties(PacketTypes.PUBLISH)
        properties.ResponseTopic = reply_topic
        properties.CorrelationData = correlation
        payload = json.dumps({"schema": 1, "id": f"load-{i}", "points": [[100 + i % 200, 160]], "mask": "none"})
        start = time.perf_counter()
        prompter.publish(f"maskd/{args.device}/prompt", payload, qos=1, properties=properties)
        with reply_ready:
            if not reply_ready.wait_for(lambda: correlation in replies, timeout=30):
                errors.append(f"prompt {i}: no reply within 30 s")
                continue
        at, reply = replies[correlation]
        if reply.get("status") != "ok":
            errors.append(f"prompt {i}: {reply}")
        mqtt_ms.append((at - start) * 1e3)

    stop.set()
    boards_thread.join()
    time.sleep(args.settle)
    with counts_lock:
        received = dict(counts)
        asked = [(100.0 + i % 200, 150.0) for i in range(args.prompts)] + [(100.0 + i % 200, 160.0) for i in range(args.prompts)]
        missing = [p for p in asked if p not in daemon_points]
    daemon_answers = received.get(daemon_answers_topic, 0)
    lost_boards = sum(max(0, n - received.get(topic, 0)) for topic, n in sent.items() if topic.endswith("/answers") or topic.endswith("/status"))
    board_messages = sum(sent.values())
    for client in (counter, publisher, prompter):
        client.loop_stop()
        client.disconnect()

    print(f"load: 1 daemon + {args.boards} stand-in boards ({board_messages} messages from them, answers at {args.answer_rate}/s per board, status and a {args.snapshot_bytes}-byte snapshot every second per board)")
    for name, values in (("serial", serial_ms), ("mqtt", mqtt_ms)):
        if values:
            print(f"  {name:6} round trip over {len(values)} prompts: p50 {percentile(values, 50):.1f} ms, p95 {percentile(values, 95):.1f} ms, max {max(values):.1f} ms, mean {statistics.mean(values):.1f} ms")
    print(f"  daemon answers received: {daemon_answers} of {2 * args.prompts} (lost {2 * args.prompts - daemon_answers})")
    if missing:
        print(f"  daemon answers missing, by prompt point: {missing}")
    print(f"  stand-in answers and statuses lost: {lost_boards}")
    summary = {
        "serial_ms": serial_ms,
        "mqtt_ms": mqtt_ms,
        "daemon_answers": daemon_answers,
        "expected_answers": 2 * args.prompts,
        "boards_lost": lost_boards,
        "errors": errors,
        "missing_answers": missing,
    }
    print(json.dumps(summary))
    return 0 if not errors else 1


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("serial")
    s.add_argument("--port", required=True)
    s.add_argument("points", nargs="+")
    l = sub.add_parser("load")
    l.add_argument("--port", required=True)
    l.add_argument("--broker", required=True)
    l.add_argument("--user", required=True)
    l.add_argument("--password", required=True)
    l.add_argument("--device", required=True)
    l.add_argument("--answer", required=True, help="a real answer payload, as the stand-ins' answers")
    l.add_argument("--prompts", type=int, default=100)
    l.add_argument("--boards", type=int, default=7)
    l.add_argument("--answer-rate", type=float, default=10.0, help="answers per second per stand-in board")
    l.add_argument("--snapshot-bytes", type=int, default=30000)
    l.add_argument("--settle", type=float, default=3.0, help="seconds to wait for the last messages")
    args = parser.parse_args(argv)
    return serial(args) if args.command == "serial" else load(args)


if __name__ == "__main__":
    sys.exit(main())
