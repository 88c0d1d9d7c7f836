"""The built-in simulator provider: Anthropic-shaped answers with no network and no credentials.

For ``make up`` on a machine without an API key, demos, the TUI and benchmarks. Answers are
labelled as simulated in their text and by the ``x-tollgate-simulated: true`` header. Options:
``latency_ms`` (before the first byte) and ``chunk_delay_ms`` (between SSE frames).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import orjson

from dataplane.asgi import Header
from dataplane.config.snapshot import ProviderConfig
from dataplane.providers.base import Diagnosis, UpstreamRequest
from dataplane.simulator import count_tokens, simulate


class SimulatedResponse:
    def __init__(self, status: int, headers: list[Header], frames: list[bytes], delay: float):
        self.status = status
        self.headers = headers
        self._frames = frames
        self._delay = delay

    async def aiter_raw(self) -> AsyncIterator[bytes]:
        for frame in self._frames:
            if self._delay:
                await asyncio.sleep(self._delay)
            yield frame

    async def read(self) -> bytes:
        return b"".join(self._frames)

    async def aclose(self) -> None:
        return None


class SimulatorProvider:
    kind = "simulator"

    def __init__(self, config: ProviderConfig) -> None:
        self.name = config.name
        self._latency = int(config.option("latency_ms", "0")) / 1000
        self._chunk_delay = int(config.option("chunk_delay_ms", "0")) / 1000

    async def send(self, request: UpstreamRequest) -> SimulatedResponse:
        if self._latency:
            await asyncio.sleep(self._latency)
        parsed = orjson.loads(request.body)
        headers: list[Header] = [(b"x-tollgate-simulated", b"true")]
        if request.path.endswith("/count_tokens"):
            body = orjson.dumps({"input_tokens": count_tokens(len(request.body))})
            return SimulatedResponse(
                200, [(b"content-type", b"application/json"), *headers], [body], 0
            )
        reply = simulate(parsed, request_bytes=len(request.body), model=request.model)
        if request.stream:
            headers.append((b"content-type", b"text/event-stream; charset=utf-8"))
            return SimulatedResponse(200, headers, reply.sse_frames(), self._chunk_delay)
        headers.append((b"content-type", b"application/json"))
        return SimulatedResponse(200, headers, [orjson.dumps(reply.message)], 0)

    def diagnose(self, model: str) -> Diagnosis:
        """Answers any model, as given."""
        return Diagnosis(upstream_model=model)

    async def aclose(self) -> None:
        return None
