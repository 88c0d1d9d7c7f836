"""Client faults against a real data plane: slow headers and bodies (slowloris), a thousand idle
connections, and a client that hangs up mid-stream. Timeouts are configured short for the test
(``keep_alive_s``, ``body_timeout_s``); the defaults are 75 s and 60 s."""

from __future__ import annotations

import asyncio
import contextlib
import resource
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import orjson
import pytest

from tests.dataplane.conftest import SECRET, usage_events
from tests.e2e.faults_support import (
    HEADERS,
    MODEL,
    SMALL_USAGE,
    WatchedAnthropic,
    body,
    faulty_snapshot,
    open_fds,
    rss_bytes,
    settled,
    sse_names,
    start_faulty,
)
from tests.fakes.anthropic import Scripted, stream_frames
from tests.waiting import eventually

pytestmark = pytest.mark.e2e


@pytest.fixture
async def upstream() -> AsyncIterator[WatchedAnthropic]:
    async with WatchedAnthropic() as fake:
        yield fake


async def closed_by_server(reader: asyncio.StreamReader, within: float) -> bytes:
    """Everything the server sent until it closed the connection (fails if it never does).

    A reset is a close too: a server closing a socket with client bytes still unread (a client
    that keeps trickling) makes the kernel send RST instead of FIN."""
    data = b""
    async with asyncio.timeout(within):
        try:
            while chunk := await reader.read(65536):
                data += chunk
        except ConnectionResetError:
            pass
    return data


async def served(port: int) -> float:
    start = time.monotonic()
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
        r = await client.post("/v1/messages", content=body(), headers=HEADERS)
    assert r.status_code == 200 and sse_names(r.content)[-1] == "message_stop"
    return time.monotonic() - start


async def test_slow_headers_are_cut_off_by_the_keep_alive_timeout(
    tmp_path: Path, upstream: WatchedAnthropic
) -> None:
    dp = await start_faulty(tmp_path / "dp", faulty_snapshot(upstream.base_url), keep_alive_s=1.0)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", dp.port)
        writer.write(b"POST /v1/messages HTTP/1.1\r\nhost: gw\r\n")
        started = time.monotonic()

        async def trickle() -> None:  # one header byte every 0.2 s, never finishing
            for _ in range(50):
                writer.write(b"x")
                await writer.drain()
                await asyncio.sleep(0.2)

        trickler = asyncio.create_task(trickle())
        try:
            await closed_by_server(reader, within=4)
        finally:
            trickler.cancel()
            writer.close()
        assert time.monotonic() - started < 3, "the slow client held the connection"
        assert upstream.requests == []
        await served(dp.port)
    finally:
        await dp.stop()


async def test_slow_body_gets_408_and_the_connection_is_freed(
    tmp_path: Path, upstream: WatchedAnthropic
) -> None:
    dp = await start_faulty(tmp_path / "dp", faulty_snapshot(upstream.base_url), body_timeout_s=1.0)
    try:
        payload = body()
        reader, writer = await asyncio.open_connection("127.0.0.1", dp.port)
        head = "".join(f"{k}: {v}\r\n" for k, v in HEADERS.items())
        writer.write(
            f"POST /v1/messages HTTP/1.1\r\nhost: gw\r\ncontent-length: {len(payload)}\r\n"
            f"{head}\r\n".encode()
        )

        async def trickle() -> None:
            for i in range(len(payload) - 1):  # never the last byte
                writer.write(payload[i : i + 1])
                await writer.drain()
                await asyncio.sleep(0.1)

        trickler = asyncio.create_task(trickle())
        try:
            answer = await closed_by_server(reader, within=5)
        finally:
            trickler.cancel()
            writer.close()
        status_line, _, rest = answer.partition(b"\r\n")
        assert status_line == b"HTTP/1.1 408 ", answer[:200]
        error = orjson.loads(rest.split(b"\r\n\r\n", 1)[1])["error"]
        assert error["type"] == "timeout_error" and "did not arrive within 1 s" in error["message"]
        (event,) = await usage_events(dp, 1)
        assert event.status == 408 and event.usage.cost_micros == 0
        assert upstream.requests == []
        await served(dp.port)
    finally:
        await dp.stop()


@pytest.mark.slow
async def test_a_thousand_idle_connections_neither_block_service_nor_leak(
    tmp_path: Path, upstream: WatchedAnthropic
) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 4096:  # both ends of every connection live in this process
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(4096, hard), hard))
    dp = await start_faulty(tmp_path / "dp", faulty_snapshot(upstream.base_url), keep_alive_s=3.0)
    try:
        await served(dp.port)  # warm up: the first request pays one-off costs
        fds, rss = open_fds(), rss_bytes()
        gate = asyncio.Semaphore(100)

        async def idle() -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
            async with gate:
                return await asyncio.open_connection("127.0.0.1", dp.port)

        conns = await asyncio.gather(*(idle() for _ in range(1000)))
        opened = time.monotonic()
        assert await served(dp.port) < 2.0  # served promptly, not after the idle ones
        assert open_fds() - fds <= 2 * 1000 + 50  # one fd per end, nothing per request
        assert rss_bytes() - rss < 64 * 1024 * 1024, "idle connections cost too much memory"
        # The keep-alive timeout closes every one of them: nothing waits for the client.
        await asyncio.gather(*(closed_by_server(r, within=8) for r, _ in conns))
        assert time.monotonic() - opened < 8
        for _, w in conns:
            w.close()
        await eventually(lambda: open_fds() - fds < 20, "the client ends closed")
    finally:
        await dp.stop()


async def test_client_disconnect_mid_stream_cancels_upstream_and_settles(
    tmp_path: Path, upstream: WatchedAnthropic
) -> None:
    slow = stream_frames(MODEL, [f" w{i}" for i in range(20)], usage=SMALL_USAGE)
    upstream.script.append(
        Scripted(headers=[(b"content-type", b"text/event-stream")], frames=slow, delay=0.2)
    )
    # Idle limit well above the fake's pace: only the client's departure can end the stream.
    dp = await start_faulty(tmp_path / "dp", faulty_snapshot(upstream.base_url, idle_ms=5000))
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{dp.port}", timeout=10) as c:
            async with c.stream("POST", "/v1/messages", content=body(), headers=HEADERS) as r:
                got = b""
                async for chunk in r.aiter_raw():
                    got += chunk
                    if b"content_block_delta" in got:
                        break
            left = time.monotonic()
        deadline = time.monotonic() + 3
        while not upstream.hung_up and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        assert upstream.hung_up, "the upstream call went on after the client left"
        assert upstream.hung_up[0] - left < 1.0
        (event,) = await settled(dp, 1)
        assert event.client_disconnected and event.key_id == "key_alice"
        assert event.usage.input_tokens == SMALL_USAGE["input_tokens"]
        assert event.usage.cost_micros > 0  # what was consumed until the hang-up is billed
        assert SECRET not in str(event)
    finally:
        await dp.stop()


async def test_oversized_headers_are_refused_without_buffering_them(
    tmp_path: Path, upstream: WatchedAnthropic
) -> None:
    dp = await start_faulty(tmp_path / "dp", faulty_snapshot(upstream.base_url))
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", dp.port)
        filler = b"x-filler: " + b"a" * 1000 + b"\r\n"
        writer.write(b"POST /v1/messages HTTP/1.1\r\nhost: gw\r\n" + filler * 100)  # 100 KiB
        with contextlib.suppress(ConnectionResetError):
            await writer.drain()
        answer = await closed_by_server(reader, within=3)
        writer.close()
        assert answer.startswith(b"HTTP/1.1 431 "), answer[:100]
        assert upstream.requests == []
        await served(dp.port)
    finally:
        await dp.stop()
