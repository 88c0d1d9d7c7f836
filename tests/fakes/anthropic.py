"""A strict fake of the Anthropic Messages API, served by Hypercorn on 127.0.0.1.

Strict like the real service where the gateway could go wrong: it refuses a request without the
provider key it was given (and flags any virtual key that leaked upstream), without
``anthropic-version``, or with a body that is not a Messages request. It records every request
byte for byte so tests can assert fidelity, and answers with scripted responses (or a default
streamed answer with realistic usage, including prompt-cache writes and reads).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from gwapi.v1 import common_pb2
from tests.fakes.server import HeaderLookup, LoopbackServer, read_body
from tests.fakes.strict import Strict

UPSTREAM_KEY = "sk-ant-fake-upstream-0123456789"

DEFAULT_USAGE: dict[str, Any] = {
    "input_tokens": 12,
    "cache_creation_input_tokens": 2500,
    "cache_read_input_tokens": 18000,
    "cache_creation": {"ephemeral_5m_input_tokens": 2000, "ephemeral_1h_input_tokens": 500},
    "output_tokens": 1,
}


def anthropic_at(upstream_url: str) -> common_pb2.Provider:
    """Provider ``anthropic`` at a fake upstream, its key (:data:`UPSTREAM_KEY`) from the data
    plane's environment variable ``UPSTREAM_KEY``."""
    return common_pb2.Provider(
        name="anthropic", kind="anthropic", base_url=upstream_url, api_key_env="UPSTREAM_KEY"
    )


def sse(event: str, data: dict[str, Any]) -> bytes:
    return b"event: " + event.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


def stream_events(
    model: str,
    text_chunks: list[str],
    usage: dict[str, Any] | None = None,
    output_tokens: int = 42,
    msg_id: str = "msg_fake_01",
) -> list[dict[str, Any]]:
    """The events of an Anthropic stream, in order: ``usage`` as sent in ``message_start``, the
    final ``message_delta`` usage the same without ``cache_creation``, with ``output_tokens``."""
    start_usage = dict(usage or DEFAULT_USAGE)
    final_usage = {k: v for k, v in start_usage.items() if k != "cache_creation"}
    final_usage["output_tokens"] = output_tokens
    return [
        {"type": "message_start", "message": _message(msg_id, model, [], None, start_usage)},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {"type": "ping"},
        *(
            {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": t}}
            for t in text_chunks
        ),
        {"type": "content_block_stop", "index": 0},
        {
            "type": "message_delta",
            "delta": {"stop_reason": "end_turn", "stop_sequence": None},
            "usage": final_usage,
        },
        {"type": "message_stop"},
    ]


def stream_frames(
    model: str,
    text_chunks: list[str],
    usage: dict[str, Any] | None = None,
    output_tokens: int = 42,
    msg_id: str = "msg_fake_01",
) -> list[bytes]:
    """An Anthropic stream exactly as the API sends it (one frame per event)."""
    events = stream_events(model, text_chunks, usage, output_tokens, msg_id)
    return [sse(event["type"], event) for event in events]


def message_body(
    model: str, text: str, usage: dict[str, Any] | None = None, output_tokens: int = 42
) -> bytes:
    u = dict(usage or DEFAULT_USAGE)
    u["output_tokens"] = output_tokens
    content = [{"type": "text", "text": text}]
    return orjson.dumps(_message("msg_fake_01", model, content, "end_turn", u))


def _message(
    msg_id: str, model: str, content: list[Any], stop_reason: str | None, usage: dict[str, Any]
) -> dict[str, Any]:
    """A Messages API ``message`` object (whole, or as ``message_start`` opens a stream)."""
    return {
        "id": msg_id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": usage,
    }


@dataclass
class Received(HeaderLookup):
    method: str
    path: str
    query: bytes
    headers: list[tuple[bytes, bytes]]
    body: bytes


@dataclass
class Scripted:
    """One scripted answer. ``frames`` are sent as separate chunks, ``delay`` seconds apart."""

    status: int = 200
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    frames: list[bytes] = field(default_factory=list)
    delay: float = 0.0
    drop_after: int | None = None  # close the connection abruptly after this many frames
    hang: bool = False  # never answer (for timeout tests)
    wait: float = 0.0  # seconds before the status line (a non-streamed answer being generated)
    pauses: dict[int, float] = field(default_factory=dict)  # frame index -> seconds before it


class FakeAnthropic(LoopbackServer, Strict):
    def __init__(
        self,
        api_key: str = UPSTREAM_KEY,
        text: str = "Hello from the fake upstream.",
        oauth_tokens: tuple[str, ...] = (),
    ) -> None:
        self.api_key = api_key
        self.oauth_tokens = oauth_tokens  # Claude subscription tokens accepted as Bearer
        self.text = text
        self.requests: list[Received] = []
        self.violations: list[str] = []
        self.script: deque[Scripted] = deque()
        self.on_request: Callable[[Received], Scripted | None] | None = None

    # -- the ASGI app ------------------------------------------------------------------------

    async def app(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        body = await read_body(receive)
        req = Received(
            scope["method"], scope["path"], scope["query_string"], list(scope["headers"]), body
        )
        self.requests.append(req)
        problem = self._check(req)
        if problem is not None:
            status, etype, message = problem
            self.violations.append(message)
            await self._send_whole(
                send,
                status,
                orjson.dumps(
                    {
                        "type": "error",
                        "error": {"type": etype, "message": message},
                        "request_id": "req_fake_err",
                    }
                ),
            )
            return
        await self._answer(send, req)

    async def _answer(self, send: Any, req: Received) -> None:
        """Play the answer to an accepted request: what ``on_request`` returns for it, else the
        next scripted answer, else :meth:`default_answer`."""
        scripted = self.on_request(req) if self.on_request else None
        if scripted is None and self.script:
            scripted = self.script.popleft()
        if scripted is None:
            scripted = self.default_answer(req)
        await self._play(send, scripted)

    def _check(self, req: Received) -> tuple[int, str, str] | None:
        auth = req.header("authorization") or ""
        if "gw-" in auth or (req.header("x-api-key") or "").startswith("gw-"):
            return 401, "authentication_error", "a virtual key reached the upstream"
        bearer = auth.removeprefix("Bearer ") if auth.startswith("Bearer ") else None
        if bearer is not None and bearer in self.oauth_tokens:
            if req.header("x-api-key") is not None:
                return 400, "invalid_request_error", "both an OAuth token and an API key were sent"
        elif req.header("x-api-key") != self.api_key:
            return 401, "authentication_error", "invalid x-api-key"
        if not req.header("anthropic-version"):
            return 400, "invalid_request_error", "anthropic-version: header is required"
        if req.method != "POST" or not req.path.startswith("/v1/messages"):
            return 404, "not_found_error", f"unexpected {req.method} {req.path}"
        if (req.header("content-type") or "").split(";")[0] != "application/json":
            return 400, "invalid_request_error", "content-type must be application/json"
        try:
            obj = orjson.loads(req.body)
        except orjson.JSONDecodeError:
            return 400, "invalid_request_error", "body is not JSON"
        if (
            not isinstance(obj, dict)
            or not isinstance(obj.get("model"), str)
            or "messages" not in obj
        ):
            return 400, "invalid_request_error", "body is not a Messages request"
        if req.path == "/v1/messages" and not isinstance(obj.get("max_tokens"), int):
            return 400, "invalid_request_error", "max_tokens: Field required"
        return None

    def default_answer(self, req: Received) -> Scripted:
        obj = orjson.loads(req.body)
        model = obj["model"]
        if req.path == "/v1/messages/count_tokens":
            return Scripted(
                frames=[orjson.dumps({"input_tokens": len(req.body) // 4})],
                headers=[(b"content-type", b"application/json")],
            )
        headers = [
            (b"request-id", b"req_fake_0001"),
            (b"anthropic-ratelimit-requests-remaining", b"99"),
        ]
        if obj.get("stream"):
            words = [w + " " for w in self.text.split()]
            return Scripted(
                headers=[(b"content-type", b"text/event-stream; charset=utf-8"), *headers],
                frames=stream_frames(model, words),
            )
        return Scripted(
            headers=[(b"content-type", b"application/json"), *headers],
            frames=[message_body(model, self.text)],
        )

    async def _play(self, send: Any, s: Scripted) -> None:
        if s.hang:
            await asyncio.sleep(3600)
        if s.wait:
            await asyncio.sleep(s.wait)
        await send({"type": "http.response.start", "status": s.status, "headers": s.headers})
        for i, frame in enumerate(s.frames):
            if s.drop_after is not None and i >= s.drop_after:
                raise ConnectionAbortedError(
                    "fake upstream drops the connection"
                )  # hypercorn aborts
            if s.delay and i:
                await asyncio.sleep(s.delay)
            if i in s.pauses:
                await asyncio.sleep(s.pauses[i])
            await send({"type": "http.response.body", "body": frame, "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    async def _send_whole(self, send: Any, status: int, body: bytes) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"request-id", b"req_fake_err"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
