"""What turning Kiro's answer into Claude costs (the ``claude-kiro-oauth`` adapter).

One answer: 400 ``assistantResponseEvent`` frames of ~12 characters, a tool call in 20
fragments, a metering and a context-usage event (~40 KB of AWS event stream), delivered in
chunks cut at random (seeded) byte boundaries of 1–1500 bytes.

* ``crc+json`` (baseline): the least any decoder must do with these bytes: the CRC-32 of
  every message and ``json.loads`` of every payload (frames located by known offsets).
* ``decode``: :class:`~cfgstore_gateway.adapters.kiro_events.EventStreamDecoder` over the
  cut chunks (CRCs checked, headers parsed) and ``json.loads`` of every payload.
* ``decode+claude sse``: the adapter's whole path for a stream: decoding, the Claude
  events (:class:`~cfgstore_gateway.adapters.kiro_reply.ClaudeAssembler`) and their SSE
  bytes.
"""

from __future__ import annotations

import json
import random
import time
import zlib

from bench.harness import BenchFailure, Row, scaled
from cfgstore_gateway.adapters.kiro_events import EventStreamDecoder, json_event
from cfgstore_gateway.adapters.kiro_reply import ClaudeAssembler, sse

NAME = "kiro-stream"
ANSWERS = 200


def _answer() -> list[bytes]:
    frames = [
        json_event("assistantResponseEvent", json.dumps({"content": f"word {i:04d} ☀ "}).encode())
        for i in range(400)
    ]
    for i in range(20):
        payload = {"name": "get_weather", "toolUseId": "t1", "input": f'"k{i}": {i}, '}
        frames.append(json_event("toolUseEvent", json.dumps(payload).encode()))
    frames.append(
        json_event("toolUseEvent", b'{"name":"get_weather","toolUseId":"t1","stop":true}')
    )
    frames.append(json_event("meteringEvent", b'{"unit":"credit","usage":0.01}'))
    frames.append(json_event("contextUsageEvent", b'{"contextUsagePercentage":1.5}'))
    return frames


def _cut(data: bytes, rng: random.Random) -> list[bytes]:
    chunks, at = [], 0
    while at < len(data):
        step = rng.randint(1, 1500)
        chunks.append(data[at : at + step])
        at += step
    return chunks


def run(scale: float) -> list[Row]:
    frames = _answer()
    data = b"".join(frames)
    chunks = _cut(data, random.Random(7))
    answers = scaled(ANSWERS, scale)
    expected = len(frames)

    start = time.perf_counter()
    for _ in range(answers):
        at = 0
        for frame in frames:
            total = len(frame)
            zlib.crc32(data[at : at + 8])
            zlib.crc32(data[at : at + total - 4])
            json.loads(frame[frame.index(b"{") : -4])
            at += total
    baseline = time.perf_counter() - start

    start = time.perf_counter()
    for _ in range(answers):
        decoder = EventStreamDecoder()
        count = 0
        for chunk in chunks:
            for event in decoder.feed(chunk):
                json.loads(event.payload)
                count += 1
        if count != expected:
            raise BenchFailure(f"decoded {count} messages, expected {expected}")
    decoding = time.perf_counter() - start

    start = time.perf_counter()
    size = 0
    for _ in range(answers):
        decoder = EventStreamDecoder()
        assembler = ClaudeAssembler("claude-sonnet-4-5")
        out = [sse(assembler.start())]
        for chunk in chunks:
            events = []
            for event in decoder.feed(chunk):
                events += assembler.feed(json.loads(event.payload))
            if events:
                out.append(sse(events))
        out.append(sse(assembler.finish()))
        size = sum(map(len, out))
    converting = time.perf_counter() - start
    if b"message_stop" not in out[-1]:
        raise BenchFailure("the Claude stream has no message_stop")

    note = f"{len(data) // 1024} KB, {expected} frames, {len(chunks)} chunks per answer"
    return [
        Row(NAME, "crc+json", answers, baseline, "crc+json", note),
        Row(NAME, "decode", answers, decoding, "crc+json", note),
        Row(
            NAME, "decode+claude sse", answers, converting, "crc+json", f"{size // 1024} KB SSE out"
        ),
    ]
