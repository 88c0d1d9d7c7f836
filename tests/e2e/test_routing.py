"""Routes through a real data plane: fallback before the first byte, one clean stream for the
client, attempt headers and log, the response cache, and per-target model overrides."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from dataplane.policy.cache_store import MemoryCache
from dataplane.process.server import DataPlane
from gwapi.v1 import common_pb2, discovery_pb2
from tests.dataplane.conftest import build_snapshot, sha, start_dataplane, usage_events
from tests.fakes.anthropic import FakeAnthropic, Scripted, sse, stream_frames
from tests.waiting import eventually

pytestmark = pytest.mark.e2e

ROUTED = "gw-routed-0123456789abcdefghijklmnopqrstuvwxyzABCDEF"
OTHER_WS = "gw-otherws-0123456789abcdefghijklmnopqrstuvwxyzABCDE"
BODY = orjson.dumps(
    {
        "model": "claude-sonnet-4-5-20250929",
        "max_tokens": 100,
        "stream": True,
        "temperature": 0,
        "messages": [{"role": "user", "content": "hi"}],
    }
)


def headers(secret: str = ROUTED) -> dict[str, str]:
    return {
        "x-api-key": secret,
        "anthropic-version": "2023-06-01",
        "content-type": "application/json",
    }


def routed_snapshot(primary: str, secondary: FakeAnthropic, **route: Any) -> discovery_pb2.Snapshot:
    snap = build_snapshot(primary)  # provider "anthropic" = the primary
    snap.workspaces.append(common_pb2.Workspace(name="team-b"))
    snap.providers.append(
        common_pb2.Provider(
            name="backup", kind="anthropic", base_url=secondary.base_url, api_key_env="UPSTREAM_KEY"
        )
    )
    targets = [
        common_pb2.RouteTarget(provider="anthropic"),
        common_pb2.RouteTarget(provider="backup", model=str(route.pop("backup_model", ""))),
    ]
    snap.routes.append(
        common_pb2.Route(
            name="main", mode="fallback", targets=targets, timeout_first_byte_ms=500, **route
        )
    )
    for secret, key_id, ws in ((ROUTED, "key_routed", "team-a"), (OTHER_WS, "key_b", "team-b")):
        snap.keys.append(
            discovery_pb2.SnapshotKey(
                id=key_id, secret_sha256=sha(secret), name=key_id, workspace=ws, route="main"
            )
        )
    return snap


@pytest.fixture
async def upstream() -> AsyncIterator[FakeAnthropic]:
    async with FakeAnthropic(text="Served by the primary provider.") as fake:
        yield fake


async def routed(
    tmp_path: Path, primary_url: str, backup: FakeAnthropic, **route: object
) -> DataPlane:
    return await start_dataplane(tmp_path / "dp", routed_snapshot(primary_url, backup, **route))


def events_of(body: bytes) -> list[str]:
    return [line[7:].decode() for line in body.split(b"\n") if line.startswith(b"event: ")]


async def one_stream(
    dp: DataPlane, secret: str = ROUTED, extra: dict[str, str] | None = None
) -> httpx.Response:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{dp.port}", timeout=30) as client:
        r = await client.post(
            "/v1/messages", content=BODY, headers={**headers(secret), **(extra or {})}
        )
        await r.aread()
        return r


def assert_one_clean_stream(r: httpx.Response) -> None:
    assert r.status_code == 200, r.text
    names = events_of(r.content)
    assert names.count("message_start") == 1, names
    assert names[-1] == "message_stop" and "error" not in names, names


FAILURES = {
    "529": Scripted(
        status=529,
        headers=[(b"content-type", b"application/json")],
        frames=[b'{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}'],
    ),
    "500": Scripted(
        status=500,
        headers=[(b"content-type", b"application/json")],
        frames=[b'{"type":"error","error":{"type":"api_error","message":"boom"}}'],
    ),
    "drop": Scripted(
        headers=[(b"content-type", b"text/event-stream")], frames=[b"event: ping\n"], drop_after=0
    ),
    "hang": Scripted(hang=True),
    "error-event": Scripted(
        headers=[(b"content-type", b"text/event-stream")],
        frames=[
            sse(
                "error",
                {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
            )
        ],
    ),
}


@pytest.mark.parametrize("failure", sorted(FAILURES))
async def test_primary_failure_before_first_byte_falls_back_to_one_clean_stream(
    tmp_path: Path, upstream: FakeAnthropic, backup: FakeAnthropic, failure: str
) -> None:
    upstream.script.append(FAILURES[failure])
    dp = await routed(tmp_path, upstream.base_url, backup)
    try:
        r = await one_stream(dp)
        assert_one_clean_stream(r)
        assert r.headers["x-tollgate-provider"] == "backup"
        assert r.headers["x-tollgate-attempts"] == "2"
        assert len(backup.requests) == 1
        (event,) = await usage_events(dp, 1)
        assert [a.provider for a in event.attempt_log] == ["anthropic", "backup"]
        assert [a.outcome for a in event.attempt_log] == ["fell_back", "served"]
        assert event.provider == "backup" and event.status == 200 and event.usage.cost_micros > 0
    finally:
        await dp.stop()


async def test_unreachable_primary_falls_back_within_a_second(
    tmp_path: Path, backup: FakeAnthropic
) -> None:
    dp = await routed(tmp_path, "http://127.0.0.1:9", backup)
    try:
        t0 = time.monotonic()
        r = await one_stream(dp)
        elapsed = time.monotonic() - t0
        assert_one_clean_stream(r)
        assert elapsed < 1.0, f"fallback took {elapsed:.3f} s"
    finally:
        await dp.stop()


async def test_per_target_model_override_is_what_the_backup_receives(
    tmp_path: Path, upstream: FakeAnthropic, backup: FakeAnthropic
) -> None:
    upstream.script.append(FAILURES["529"])
    dp = await routed(tmp_path, upstream.base_url, backup, backup_model="claude-haiku-4-5-20251001")
    try:
        assert_one_clean_stream(await one_stream(dp))
        sent = orjson.loads(backup.requests[0].body)
        assert sent["model"] == "claude-haiku-4-5-20251001"
        assert {k: v for k, v in sent.items() if k != "model"} == {
            k: v for k, v in orjson.loads(BODY).items() if k != "model"
        }
        assert upstream.requests[0].body == BODY  # the primary got the client's bytes untouched
    finally:
        await dp.stop()


async def test_everything_failing_returns_the_last_provider_error(
    tmp_path: Path, upstream: FakeAnthropic, backup: FakeAnthropic
) -> None:
    upstream.script.append(FAILURES["529"])
    backup.script.append(FAILURES["500"])
    dp = await routed(tmp_path, upstream.base_url, backup)
    try:
        r = await one_stream(dp)
        assert r.status_code == 500 and r.json()["error"]["message"] == "boom"
        assert r.headers["x-tollgate-attempts"] == "2"
    finally:
        await dp.stop()


async def test_cache_hit_replays_identical_bytes_and_never_crosses_workspaces(
    tmp_path: Path, upstream: FakeAnthropic, backup: FakeAnthropic
) -> None:
    dp = await routed(tmp_path, upstream.base_url, backup, cache_ttl_s=60)
    try:
        first = await one_stream(dp)
        cache = dp.cache
        assert isinstance(cache, MemoryCache)
        await eventually(lambda: len(cache) == 1, "the entry stored, off the request's path")
        second = await one_stream(dp)
        assert len(upstream.requests) == 1
        assert second.content == first.content
        assert (
            first.headers["x-tollgate-cache"] == "miss"
            and second.headers["x-tollgate-cache"] == "hit"
        )
        other = await one_stream(dp, OTHER_WS)
        assert other.headers["x-tollgate-cache"] == "miss" and len(upstream.requests) == 2
        bypass = await one_stream(dp, extra={"x-tollgate-cache": "no-store"})
        assert bypass.headers["x-tollgate-cache"] == "bypass" and len(upstream.requests) == 3
        events = await usage_events(dp, 4)
        hit = next(e for e in events if e.cache_status == "hit")
        assert hit.usage.cost_micros == 0 and hit.cost_saved_micros > 0
    finally:
        await dp.stop()


async def test_error_event_after_bytes_were_sent_reaches_the_client(
    tmp_path: Path, upstream: FakeAnthropic, backup: FakeAnthropic
) -> None:
    frames = stream_frames("claude-sonnet-4-5-20250929", ["a", "b"])
    midway = sse(
        "error", {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    )
    upstream.script.append(
        Scripted(headers=[(b"content-type", b"text/event-stream")], frames=[*frames[:3], midway])
    )
    dp = await routed(tmp_path, upstream.base_url, backup)
    try:
        r = await one_stream(dp)
        names = events_of(r.content)
        assert names[0] == "message_start" and names[-1] == "error", names
        assert backup.requests == []  # committed to the primary once bytes were out
    finally:
        await dp.stop()
