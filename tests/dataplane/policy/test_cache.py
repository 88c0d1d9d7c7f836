"""The response cache without I/O: key, policy, recorder, replay, frame and the in-process LRU.

This module is long because it covers every piece of the cache's I/O-free core (key, policy,
recorder, replay, frame, LRU) against one set of recorded answers; the cache on a live data plane
is tested apart."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest

from dataplane.metering.meter import TokenUsage
from dataplane.policy.cache import (
    BYPASS,
    MISS,
    REFRESH,
    CacheDecision,
    CachedResponse,
    CacheRecorder,
    cache_key,
    cacheable,
    decide,
    is_sampled,
    replay,
    replay_headers,
    storable_headers,
)
from dataplane.policy.cache_store import MemoryCache, decode_entry, encode_entry
from dataplane.providers.betas import header_betas
from tests.dataplane.anthropic_streams import text_stream

MODEL = "claude-sonnet-4-5-20250929"
HEADERS = [(b"anthropic-version", b"2023-06-01"), (b"anthropic-beta", b"a-1,b-2")]


def body(**over: Any) -> dict[str, Any]:
    b: dict[str, Any] = {
        "model": MODEL,
        "max_tokens": 1024,
        "system": [{"type": "text", "text": "You are terse."}],
        "messages": [{"role": "user", "content": "Hi"}],
        "tools": [{"name": "ls", "input_schema": {"type": "object", "properties": {}}}],
        "temperature": 0,
        "metadata": {"user_id": "alice"},
    }
    b.update(over)
    return b


def key(b: dict[str, Any] | None = None, **kw: Any) -> str:
    ws = kw.pop("workspace", "team-a")
    model = kw.pop("model", MODEL)
    headers = kw.pop("headers", HEADERS)
    return cache_key(ws, model, body() if b is None else b, headers, header_betas(headers), **kw)


# --------------------------------------------------------------------------------------- key


def test_key_is_hex_sha256_and_stable() -> None:
    k = key()
    assert len(k) == 64 and int(k, 16) >= 0
    assert key() == k


def test_key_ignores_key_order_and_pretty_printing() -> None:
    b = body()
    raw_pretty = json.dumps(b, indent=4, sort_keys=False)
    raw_reversed = json.dumps(dict(reversed(list(b.items()))), separators=(",", ":"))
    nested = body(tools=[{"input_schema": {"properties": {}, "type": "object"}, "name": "ls"}])
    assert key(orjson.loads(raw_pretty)) == key(orjson.loads(raw_reversed)) == key(nested) == key()


def test_key_ignores_beta_order_spacing_duplicates_and_header_case() -> None:
    variants = [
        [(b"anthropic-version", b"2023-06-01"), (b"anthropic-beta", b"b-2, a-1")],
        [(b"Anthropic-Beta", b" a-1 ,b-2,,"), (b"anthropic-version", b" 2023-06-01 ")],
        [
            (b"anthropic-beta", b"b-2"),
            (b"anthropic-version", b"2023-06-01"),
            (b"anthropic-beta", b"a-1, b-2"),
        ],
        [*HEADERS, (b"x-claude-code-session-id", b"s1"), (b"user-agent", b"claude-cli/2")],
    ]
    assert {key(headers=h) for h in variants} == {key()}


def test_key_ignores_metadata() -> None:
    assert key(body(metadata={"user_id": "bob"})) == key()
    no_meta = body()
    del no_meta["metadata"]
    assert key(no_meta) == key()


def test_stream_is_in_the_key_absent_means_false() -> None:
    assert key(body(stream=False)) == key()
    assert key(body(stream=True)) != key()
    assert key(stream=True) == key(body(stream=True))
    assert key(body(stream=True), stream=False) == key()


@pytest.mark.parametrize(
    "change",
    [
        {"model": "claude-opus-4-8"},
        {"messages": [{"role": "user", "content": "Hi!"}]},
        {"system": "You are verbose."},
        {"max_tokens": 1025},
        {"tools": []},
        {"temperature": 0.5},
        {"thinking": {"type": "enabled", "budget_tokens": 2048}},
        {"some_future_field": 1},
    ],
)
def test_key_changes_with_the_answer_fields(change: dict[str, Any]) -> None:
    assert key(body(**change)) != key()


def test_key_changes_with_model_argument_workspace_door_and_headers() -> None:
    base = key()
    assert key(model="claude-opus-4-8") != base
    assert key(workspace="team-b") != base
    assert key(door="bedrock") != base
    assert key(headers=[(b"anthropic-version", b"2023-06-01")]) != base
    assert key(headers=[(b"anthropic-version", b"2024-01-01"), HEADERS[1]]) != base
    assert key(headers=[HEADERS[0], (b"anthropic-beta", b"a-1,b-2,c-3")]) != base


def test_no_ambiguity_between_workspace_and_model() -> None:
    assert cache_key("a", "bc", {}, [], []) != cache_key("ab", "c", {}, [], [])


# ------------------------------------------------------------------------------------ policy


def test_is_sampled() -> None:
    assert not is_sampled({"temperature": 0})
    assert not is_sampled({"temperature": 0.0})
    assert is_sampled({})  # the API's default is 1.0
    assert is_sampled({"temperature": 0.7})
    assert is_sampled({"temperature": 1})
    assert is_sampled({"temperature": None})
    assert is_sampled({"temperature": "0"})
    assert is_sampled({"temperature": False})


NO, READ_WRITE = CacheDecision(False, False, ""), CacheDecision(True, True, MISS)
BYP, REF = CacheDecision(False, False, BYPASS), CacheDecision(False, True, REFRESH)


@pytest.mark.parametrize(
    ("temperature", "ttl", "sampled", "control", "expected"),
    [
        # ttl 0: no cache at all, whatever the rest says
        (0, 0, False, None, NO),
        (0, 0, True, "refresh", NO),
        (None, 0, True, None, NO),
        (0, -5, False, None, NO),
        # temperature 0: cached
        (0, 60, False, None, READ_WRITE),
        (0.0, 60, False, "", READ_WRITE),
        (0, 60, False, "no-store", BYP),
        (0, 60, False, "refresh", REF),
        (0, 60, False, b" Refresh ", REF),
        (0, 60, False, "NO-STORE", BYP),
        (0, 60, False, "whatever", READ_WRITE),  # unknown control: ignored
        # temperature > 0: only with cache_sampled
        (0.7, 60, False, None, BYP),
        (0.7, 60, False, "refresh", BYP),
        (0.7, 60, True, None, READ_WRITE),
        (0.7, 60, True, "refresh", REF),
        (0.7, 60, True, "no-store", BYP),
        # temperature absent = 1.0 = sampled
        (None, 60, False, None, BYP),
        (None, 60, True, None, READ_WRITE),
        (None, 60, True, "refresh", REF),
    ],
)
def test_policy_matrix(
    temperature: float | None, ttl: int, sampled: bool, control: Any, expected: CacheDecision
) -> None:
    b = body() if temperature is None else body(temperature=temperature)
    if temperature is None:
        del b["temperature"]
    assert decide(b, ttl, sampled, control) == expected
    assert cacheable(b, ttl, sampled, control) is expected.write


# -------------------------------------------------------------------------- entry / recorder

STREAM_HEADERS = [
    (b"Content-Type", b"text/event-stream; charset=utf-8"),
    (b"request-id", b"req_upstream"),
    (b"x-tollgate-request-id", b"tg_1"),
    (b"x-tollgate-provider", b"anthropic"),
    (b"anthropic-ratelimit-tokens-remaining", b"1000"),
    (b"retry-after", b"3"),
    (b"date", b"Sat, 28 Nov 2026 18:00:00 GMT"),
    (b"cache-control", b"no-cache"),
]
USAGE = TokenUsage(input_tokens=12, output_tokens=9)


def entry(chunks: list[bytes], **kw: Any) -> CachedResponse:
    return CachedResponse(
        kw.get("status", 200),
        kw.get("headers", [(b"content-type", b"application/json")]),
        chunks,
        MODEL,
        USAGE,
        kw.get("cost", 123),
    )


def test_storable_headers_drop_per_request_ones() -> None:
    assert storable_headers(STREAM_HEADERS) == [
        (b"content-type", b"text/event-stream; charset=utf-8"),
        (b"cache-control", b"no-cache"),
    ]


def test_recorder_keeps_chunks_in_order() -> None:
    stream = text_stream()
    chunks = [stream[i : i + 7] for i in range(0, len(stream), 7)]
    rec = CacheRecorder(1 << 20)
    for c in chunks:
        rec.add(c)
    rec.add(b"")
    e = rec.entry(200, STREAM_HEADERS, MODEL, USAGE, 42)
    assert e is not None
    assert e.chunks == chunks and b"".join(e.chunks) == stream
    assert e.stream and e.body_size == len(stream) == rec.size
    assert e.headers == storable_headers(STREAM_HEADERS)
    assert (e.model, e.usage, e.cost_micros, e.status) == (MODEL, USAGE, 42, 200)


def test_recorder_over_limit_gives_nothing_and_frees_memory() -> None:
    rec = CacheRecorder(10)
    rec.add(b"12345")
    rec.add(b"67890")
    assert rec.entry(200, [], MODEL, USAGE, 0) is not None  # exactly at the limit
    rec.add(b"x")
    assert rec.over_limit
    assert rec.entry(200, [], MODEL, USAGE, 0) is None
    rec.add(b"y")
    assert rec.entry(200, [], MODEL, USAGE, 0) is None


def test_recorder_only_successes() -> None:
    rec = CacheRecorder(100)
    assert rec.entry(200, [], MODEL, USAGE, 0) is None  # nothing recorded
    rec.add(b"{}")
    assert rec.entry(529, [], MODEL, USAGE, 0) is None
    assert rec.entry(400, [], MODEL, USAGE, 0) is None


def test_replay_headers() -> None:
    whole = entry([b'{"id":', b'"msg_1"}'], headers=[(b"content-type", b"application/json")])
    assert replay_headers(whole, "tg_2", [(b"x-tollgate-provider", b"anthropic")]) == [
        (b"content-type", b"application/json"),
        (b"request-id", b"tg_2"),
        (b"x-tollgate-request-id", b"tg_2"),
        (b"x-tollgate-cache", b"hit"),
        (b"x-tollgate-provider", b"anthropic"),
        (b"content-length", b"14"),
    ]
    streamed = entry([b"data"], headers=storable_headers(STREAM_HEADERS))
    assert not any(k == b"content-length" for k, _ in replay_headers(streamed, "tg_3"))


async def test_replay_sends_identical_bytes() -> None:
    stream = text_stream() * 2000  # > 64 KiB: several body messages
    chunks = [stream[i : i + 100] for i in range(0, len(stream), 100)]
    e = entry(chunks, headers=storable_headers(STREAM_HEADERS))
    sent: list[dict[str, Any]] = []

    async def send(message: Any) -> None:
        sent.append(dict(message))

    hdrs = replay_headers(e, "tg_4")
    await replay(send, e, hdrs)
    assert sent[0] == {"type": "http.response.start", "status": 200, "headers": hdrs}
    bodies = sent[1:]
    assert all(m["type"] == "http.response.body" for m in bodies)
    assert all(m.get("more_body") for m in bodies[:-1]) and not bodies[-1].get("more_body")
    assert len(bodies) > 2
    assert b"".join(m["body"] for m in bodies) == stream


def test_frame_round_trip_is_byte_identical() -> None:
    stream = text_stream()
    e = entry(
        [stream[:10], b"", stream[10:], bytes(range(256))],
        headers=[(b"content-type", b"text/event-stream"), (b"x-odd", bytes(range(128, 256)))],
    )
    e2 = decode_entry(encode_entry(e))
    assert e2 == e
    assert b"".join(e2.chunks) == b"".join(e.chunks)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"TGC1",
        b"XXXX\x00\x00\x00\x02[]",
        b"TGC1\x00\x00\x00\x02[]",
        b"TGC1\x00\x00\x00\x03[1,",
    ],
)
def test_frame_rejects_garbage(data: bytes) -> None:
    with pytest.raises(ValueError):
        decode_entry(data)


def test_frame_rejects_truncation_and_trailing_bytes() -> None:
    data = encode_entry(entry([b"hello", b"world"]))
    with pytest.raises(ValueError):
        decode_entry(data[:-1])
    with pytest.raises(ValueError):
        decode_entry(data + b"!")


# ----------------------------------------------------------------------------- memory (LRU)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def sized(n: int) -> CachedResponse:
    """An entry whose accounted size is exactly ``n`` bytes."""
    e = entry([b""], headers=[])
    return entry([b"x" * (n - e.size)], headers=[])


async def test_memory_round_trip_and_miss() -> None:
    cache = MemoryCache()
    e = entry([b"a", b"b"])
    assert await cache.get("k") is None
    await cache.put("k", e, 60)
    assert await cache.get("k") is e
    assert cache.bytes_used == e.size


async def test_memory_lru_eviction_by_bytes() -> None:
    cache = MemoryCache(max_bytes=3000)
    await cache.put("a", sized(1000), 60)
    await cache.put("b", sized(1000), 60)
    await cache.put("c", sized(1000), 60)
    assert cache.bytes_used == 3000 and len(cache) == 3
    assert await cache.get("a") is not None  # a is now the most recently used
    await cache.put("d", sized(1000), 60)  # evicts b, the least recently used
    assert [k for k in "abcd" if k in cache] == ["a", "c", "d"]
    await cache.put("e", sized(2000), 60)  # evicts c and a
    assert [k for k in "abcde" if k in cache] == ["d", "e"]
    assert cache.bytes_used == 3000


async def test_memory_entry_caps() -> None:
    cache = MemoryCache(max_bytes=10_000, max_entry_bytes=2000)
    await cache.put("big", sized(2001), 60)
    assert "big" not in cache and cache.bytes_used == 0
    await cache.put("k", sized(1000), 60)
    await cache.put("k", sized(3000), 60)  # the replacement is too big: the key is gone
    assert "k" not in cache and cache.bytes_used == 0
    small = MemoryCache(max_bytes=500)
    await small.put("k", sized(600), 60)  # bigger than the whole cache
    assert len(small) == 0


async def test_memory_replace_accounts_bytes() -> None:
    cache = MemoryCache(max_bytes=10_000)
    await cache.put("k", sized(1000), 60)
    new = sized(2000)
    await cache.put("k", new, 60)
    assert cache.bytes_used == 2000 and await cache.get("k") is new


async def test_memory_ttl_expiry_with_injected_clock() -> None:
    clock = Clock()
    cache = MemoryCache(clock=clock)
    await cache.put("k", sized(1000), 30)
    await cache.put("zero", sized(1000), 0)  # ttl 0: not stored
    assert "zero" not in cache
    clock.now += 29.9
    assert await cache.get("k") is not None
    clock.now += 0.1
    assert await cache.get("k") is None
    assert len(cache) == 0 and cache.bytes_used == 0
    await cache.put("k", sized(1000), 30)  # a refresh re-arms the TTL
    clock.now += 20
    await cache.put("k", sized(1000), 30)
    clock.now += 20
    assert await cache.get("k") is not None


async def test_workspaces_never_share_an_entry() -> None:
    cache = MemoryCache()
    b = body()
    await cache.put(cache_key("team-a", MODEL, b, HEADERS, ["a-1", "b-2"]), entry([b"answer"]), 60)
    assert await cache.get(cache_key("team-a", MODEL, b, HEADERS, ["a-1", "b-2"])) is not None
    assert await cache.get(cache_key("team-b", MODEL, b, HEADERS, ["a-1", "b-2"])) is None
