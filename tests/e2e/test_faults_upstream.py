"""Upstream faults through a real data plane, with a budget on the key: what the client sees, and
that usage and the budget's reservation always end up settled.

Falling back on these faults is tested in ``test_routing.py``; here the key's route has one
target, so each fault reaches the client — and the budget must neither leak nor lose spend.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from gwapi.v1 import common_pb2
from tests.dataplane.providers import test_bedrock as bedrock_t
from tests.e2e.faults_support import (
    HEADERS,
    MODEL,
    SMALL_USAGE,
    WatchedAnthropic,
    body,
    error_events,
    faulty_snapshot,
    settled,
    sse_names,
    start_faulty,
)
from tests.fakes import bedrock as fake_bedrock
from tests.fakes.anthropic import Scripted, stream_frames
from tests.waiting import eventually

pytestmark = pytest.mark.e2e

SSE = [(b"content-type", b"text/event-stream")]


@pytest.fixture
async def upstream() -> AsyncIterator[WatchedAnthropic]:
    async with WatchedAnthropic() as fake:
        yield fake


async def post(port: int) -> httpx.Response:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
        r = await client.post("/v1/messages", content=body(), headers=HEADERS)
        await r.aread()
        return r


def frames(text: list[str] | None = None) -> list[bytes]:
    return stream_frames(MODEL, text or ["one", " two"], usage=SMALL_USAGE, output_tokens=7)


async def test_hang_before_the_first_byte_is_a_504_and_releases_the_reservation(
    tmp_path: Path, upstream: WatchedAnthropic
) -> None:
    upstream.script.append(Scripted(hang=True))
    dp = await start_faulty(tmp_path / "dp", faulty_snapshot(upstream.base_url, first_byte_ms=300))
    try:
        r = await post(dp.port)
        assert r.status_code == 504, r.text
        err = r.json()["error"]
        assert err["type"] == "timeout_error" and "anthropic" in err["message"], err
        (event,) = await settled(dp, 1)
        assert event.status == 504 and event.error_type == "timeout_error"
        assert event.usage.cost_micros == 0  # nothing was served: the reservation is released
        await eventually(lambda: len(upstream.hung_up) >= 1, "the upstream call given up")
        assert len(upstream.hung_up) == 1  # the gateway gave up on the upstream call
        # The key works at once: nothing is held for the failed request.
        upstream.script.clear()
        ok = await post(dp.port)
        assert ok.status_code == 200 and sse_names(ok.content)[-1] == "message_stop"
        await settled(dp, 2)
    finally:
        await dp.stop()


async def test_stall_mid_stream_ends_with_an_error_event_and_bills_what_was_seen(
    tmp_path: Path, upstream: WatchedAnthropic
) -> None:
    # message_start at once, then 3 s of silence: the route's idle limit is 0.4 s.
    upstream.script.append(Scripted(headers=SSE, frames=frames(), delay=3.0))
    dp = await start_faulty(tmp_path / "dp", faulty_snapshot(upstream.base_url, idle_ms=400))
    try:
        r = await post(dp.port)
        assert r.status_code == 200  # committed with the first event
        names = sse_names(r.content)
        assert names[0] == "message_start" and names[-1] == "error", names
        (err,) = error_events(r.content)
        assert err["error"]["type"] == "timeout_error"
        (event,) = await settled(dp, 1)
        assert event.error_type == "timeout_error"
        assert event.usage.input_tokens == SMALL_USAGE["input_tokens"]
        assert event.usage.cost_micros > 0  # the input the upstream reported is billed
    finally:
        await dp.stop()


async def test_connection_dropped_mid_stream(tmp_path: Path, upstream: WatchedAnthropic) -> None:
    upstream.script.append(Scripted(headers=SSE, frames=frames(), drop_after=4))
    dp = await start_faulty(tmp_path / "dp", faulty_snapshot(upstream.base_url))
    try:
        r = await post(dp.port)
        names = sse_names(r.content)
        assert names[:4] == ["message_start", "content_block_start", "ping", "content_block_delta"]
        assert names[-1] == "error" and "message_stop" not in names, names
        (err,) = error_events(r.content)
        assert err["error"]["type"] == "api_error" and "retry" in err["error"]["message"]
        (event,) = await settled(dp, 1)
        assert event.status == 200 and event.error_type == "api_error"
        assert event.usage.input_tokens == SMALL_USAGE["input_tokens"]
    finally:
        await dp.stop()


async def test_upstream_ending_early_without_message_stop(
    tmp_path: Path, upstream: WatchedAnthropic
) -> None:
    upstream.script.append(Scripted(headers=SSE, frames=frames()[:4]))  # clean close, too soon
    dp = await start_faulty(tmp_path / "dp", faulty_snapshot(upstream.base_url))
    try:
        r = await post(dp.port)
        assert sse_names(r.content)[-1] == "error"
        (err,) = error_events(r.content)
        assert "ended before message_stop" in err["error"]["message"]
        (event,) = await settled(dp, 1)
        assert event.error_type == "api_error" and event.usage.cost_micros > 0
    finally:
        await dp.stop()


MALFORMED = [
    b"this is not SSE at all\n\n",  # a line without a field name
    b"event: content_block_delta\ndata: {not json\n\n",  # invalid JSON in data
    b'data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"x"}}\n\n',
    b": a comment line\n\n",
]


async def test_malformed_sse_is_relayed_and_the_answer_still_metered(
    tmp_path: Path, upstream: WatchedAnthropic
) -> None:
    good = frames()
    scripted = [*good[:3], *MALFORMED, *good[3:]]
    upstream.script.append(Scripted(headers=SSE, frames=scripted))
    dp = await start_faulty(tmp_path / "dp", faulty_snapshot(upstream.base_url))
    try:
        r = await post(dp.port)
        assert r.status_code == 200
        # Pass-through: the client gets the upstream's bytes as they were, garbage included
        # (Claude Code's own parser decides what to skip); the gateway neither crashes nor
        # invents an error.
        assert r.content == b"".join(scripted)
        (event,) = await settled(dp, 1)
        assert event.status == 200 and event.error_type == ""
        assert event.usage.output_tokens == 7 and event.usage.cost_micros > 0
    finally:
        await dp.stop()


async def test_corrupt_bedrock_event_stream_frame_ends_the_stream_with_an_error(
    tmp_path: Path, upstream: WatchedAnthropic
) -> None:
    bedrock = fake_bedrock.FakeBedrock()
    await bedrock.start()
    provider = common_pb2.Provider(
        name="bdrk",
        kind="bedrock",
        base_url=bedrock.base_url,
        options={"region": "us-east-1", "access_key_env": "FAKE_AK", "secret_key_env": "FAKE_SK"},
    )
    good = fake_bedrock.stream_frames(MODEL, ["one", " two"], usage=SMALL_USAGE)
    bad = bytearray(good[3])
    bad[-1] ^= 0xFF  # the message CRC no longer matches
    bedrock.script.append(
        fake_bedrock.Scripted(
            headers=[(b"content-type", b"application/vnd.amazon.eventstream")],
            frames=[*good[:3], bytes(bad), *good[4:]],
        )
    )
    snap = faulty_snapshot(upstream.base_url, target="bdrk", extra_providers=[provider])
    dp = await start_faulty(tmp_path / "dp", snap, env=bedrock_t.ENV)
    try:
        r = await post(dp.port)
        assert r.status_code == 200
        names = sse_names(r.content)
        assert names[0] == "message_start" and names[-1] == "error", names
        assert "message_stop" not in names
        (err,) = error_events(r.content)
        assert err["error"]["type"] == "api_error"
        (event,) = await settled(dp, 1)
        assert event.provider == "bdrk" and event.error_type == "api_error"
        assert event.usage.input_tokens == SMALL_USAGE["input_tokens"]
    finally:
        await dp.stop()
        await bedrock.stop()
