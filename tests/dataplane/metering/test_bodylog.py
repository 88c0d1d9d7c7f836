"""Request logging per workspace policy: nothing with none; redacted headers and sizes with
metadata; bodies (capped, credentials scrubbed) with full."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import orjson
import pytest

from dataplane.metering.bodylog import BodyLog, redact_headers
from dataplane.process.server import DataPlane
from tests.dataplane.conftest import SECRET, build_snapshot, start_dataplane, usage_events
from tests.fakes.anthropic import FakeAnthropic, Scripted, stream_frames

MARKER = "zebra-marker-8c1f"
HEADERS = {
    "authorization": f"Bearer {SECRET}",
    "anthropic-version": "2023-06-01",
    "x-my-token": "t0ps3cret-value",
    "x-client-secret": "s3cret-value",
    "cookie": "session=abc",
    "x-app": "cli",
    "content-type": "application/json",
}


def _body(text: str = MARKER, stream: bool = True) -> bytes:
    return orjson.dumps(
        {
            "model": "claude-opus-4-8",
            "max_tokens": 100,
            "stream": stream,
            "messages": [{"role": "user", "content": text}],
        }
    )


async def _dataplane(
    tmp_path: Path, upstream: FakeAnthropic, policy: str, cap: int = 0
) -> DataPlane:
    snap = build_snapshot(upstream.base_url)
    snap.workspaces[0].log_bodies = policy
    snap.workspaces[0].log_body_max_bytes = cap
    return await start_dataplane(tmp_path / "dp", snap, max_body=1024 * 1024)


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=10) as c:
        yield c


async def _post(http: httpx.AsyncClient, dp: DataPlane, body: bytes) -> bytes:
    url = f"http://127.0.0.1:{dp.port}/v1/messages"
    r = await http.post(url, content=body, headers=HEADERS)
    assert r.status_code == 200, r.text
    return r.content


def _stream(upstream: FakeAnthropic, texts: list[str]) -> list[bytes]:
    frames = stream_frames("claude-opus-4-8", texts)
    upstream.script.append(
        Scripted(headers=[(b"content-type", b"text/event-stream")], frames=frames)
    )
    return frames


async def test_policy_none_sends_no_log_fields(tmp_path, upstream, http) -> None:
    dp = await _dataplane(tmp_path, upstream, "none")
    try:
        _stream(upstream, ["Hi"])
        await _post(http, dp, _body())
        (event,) = await usage_events(dp, 1)
    finally:
        await dp.stop()
    for name in ("request_headers", "request_body", "response_body", "request_body_size"):
        assert not getattr(event, name), name
    assert not event.bodies_truncated
    assert MARKER.encode() not in event.SerializeToString()


async def test_policy_metadata_headers_redacted_sizes_no_bodies(tmp_path, upstream, http) -> None:
    dp = await _dataplane(tmp_path, upstream, "metadata")
    body = _body()
    try:
        frames = _stream(upstream, ["Hi"])
        await _post(http, dp, body)
        (event,) = await usage_events(dp, 1)
    finally:
        await dp.stop()
    h = dict(event.request_headers)
    for name in ("authorization", "x-my-token", "x-client-secret", "cookie"):
        assert h[name] == "[redacted]", name
    assert h["x-app"] == "cli"
    assert h["anthropic-version"] == "2023-06-01"
    assert event.request_body_size == len(body)
    assert event.response_body_size == len(b"".join(frames))
    assert event.request_body == b"" and event.response_body == b""
    assert SECRET.encode() not in event.SerializeToString()


async def test_policy_full_bodies_as_the_client_saw_them(tmp_path, upstream, http) -> None:
    dp = await _dataplane(tmp_path, upstream, "full")
    body = _body(f"{MARKER} and my key {SECRET}")
    try:
        frames = _stream(upstream, ["Hello", " world"])
        received = await _post(http, dp, body)
        (event,) = await usage_events(dp, 1)
    finally:
        await dp.stop()
    assert received == b"".join(frames)
    assert event.response_body == received
    assert MARKER.encode() in event.request_body
    assert SECRET.encode() not in event.SerializeToString()  # scrubbed out of the body too
    assert b"[redacted]" in event.request_body
    assert not event.bodies_truncated
    assert dict(event.request_headers)["authorization"] == "[redacted]"


async def test_policy_full_truncates_at_the_cap(tmp_path, upstream, http) -> None:
    dp = await _dataplane(tmp_path, upstream, "full", cap=64)
    body = _body("x" * 500)
    try:
        frames = _stream(upstream, ["y" * 300])
        await _post(http, dp, body)
        (event,) = await usage_events(dp, 1)
    finally:
        await dp.stop()
    assert event.request_body == body[:64]
    assert event.response_body == b"".join(frames)[:64]
    assert event.bodies_truncated
    assert event.request_body_size == len(body)
    assert event.response_body_size == len(b"".join(frames))


async def test_policy_full_captures_error_bodies(tmp_path, upstream, http) -> None:
    dp = await _dataplane(tmp_path, upstream, "full")
    url = f"http://127.0.0.1:{dp.port}/v1/messages"
    try:
        r = await http.post(url, content=b"{not json", headers=HEADERS)
        assert r.status_code == 400
        (event,) = await usage_events(dp, 1)
    finally:
        await dp.stop()
    assert event.request_body == b"{not json"
    assert event.response_body == r.content


def test_capture_unit() -> None:
    log = BodyLog("full", 10, [(b"X-Api-Key", b"sk-abcdefghijkl")])
    log.add_request(b"0123456789abc")
    for chunk in (b"abcd", b"efgh", b"ijkl"):
        log.add_response(chunk)
    assert log.request == b"0123456789"
    assert bytes(log.response) == b"abcdefghij"
    assert log.truncated and log.response_size == 12
    assert redact_headers([(b"X-Tollgate-Key", b"v"), (b"Accept", b"a"), (b"accept", b"b")]) == {
        "x-tollgate-key": "[redacted]",
        "accept": "a, b",
    }
    assert log.scrubbed(b"use sk-abcdefghijkl now") == b"use [redacted] now"
