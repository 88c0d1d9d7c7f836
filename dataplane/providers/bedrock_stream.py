"""Bedrock responses as Anthropic-format answers: the event stream translated to SSE as it
arrives (with synthetic pings during silences), and already-known bodies (translated errors,
count_tokens)."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator

import orjson

from dataplane.asgi import Header
from dataplane.codecs.eventstream import EventStreamDecoder, EventStreamMessage
from dataplane.errors import error_event
from dataplane.providers import cloud_errors
from dataplane.providers.transport import TransportResponse

# In-stream :exception-type -> Anthropic error type.
STREAM_EXCEPTIONS = {
    "throttlingException": "rate_limit_error",
    "validationException": "invalid_request_error",
    "modelStreamErrorException": "api_error",
    "modelTimeoutException": "timeout_error",
    "internalServerException": "api_error",
    "serviceUnavailableException": "overloaded_error",
}
PING = b'event: ping\ndata: {"type": "ping"}\n\n'


class BedrockStream:
    """A streamed 200: the AWS event stream, translated to Anthropic SSE as it arrives."""

    def __init__(
        self,
        response: TransportResponse,
        headers: list[Header],
        provider: str,
        ping_s: float,
        request_id: str = "",
    ) -> None:
        self.status = 200
        self.headers = headers
        self._response = response
        self._provider = provider
        self._ping_s = ping_s
        self._request_id = request_id  # the gateway's: the operator finds the original under it

    async def aiter_raw(self) -> AsyncIterator[bytes]:
        decoder = EventStreamDecoder()
        source = self._response.aiter_raw()
        pending: asyncio.Future[bytes] | None = None
        try:
            while True:
                if pending is None:
                    pending = asyncio.ensure_future(anext(source))
                # Wait on the same read across pings: cancelling it would break the stream.
                done, _ = await asyncio.wait((pending,), timeout=self._ping_s or None)
                if not done:
                    yield PING
                    continue
                read, pending = pending, None
                try:
                    chunk = read.result()
                except StopAsyncIteration:
                    break
                # Frames decoded before a corrupt one in the same read are still relayed.
                messages, corrupt = decoder.decode(chunk)
                for message in messages:
                    out, last = self._translate(message)
                    if out:
                        yield out
                    if last:
                        return
                if corrupt is not None:
                    yield self._failure(f"its event stream was corrupt ({corrupt})")
                    return
            if decoder.pending:
                yield self._failure("its event stream ended in the middle of a frame")
        finally:
            if pending is not None:
                pending.cancel()

    def _failure(self, what: str) -> bytes:
        return error_event(
            "api_error", f"Bedrock: the answer from provider '{self._provider}' failed: {what}."
        )

    def _translate(self, message: EventStreamMessage) -> tuple[bytes, bool]:
        """(SSE bytes to send, whether the stream ends here) for one event-stream message."""
        kind = message.message_type
        if kind == "event":
            if message.event_type != "chunk":
                return b"", False  # unknown events are ignored, as in Anthropic streams
            try:
                data = base64.b64decode(orjson.loads(message.payload)["bytes"], validate=True)
                event = orjson.loads(data)["type"]
            except (ValueError, KeyError, TypeError):
                return self._failure("a stream chunk could not be decoded"), True
            if not isinstance(event, str) or not event or "\n" in event or "\r" in event:
                return self._failure("a stream chunk has no event type"), True
            if b"\n" in data or b"\r" in data:  # keep SSE framing: one data line
                data = orjson.dumps(orjson.loads(data))
            return b"event: " + event.encode() + b"\ndata: " + data + b"\n\n", False
        if kind == "exception":
            code = message.exception_type
            etype = STREAM_EXCEPTIONS.get(code, "api_error")
            return error_event(etype, self._told(code, message_of(message.payload))), True
        if kind == "error":
            code, text = message.header(":error-code"), message.header(":error-message")
            return error_event("api_error", self._told(code, text)), True
        return b"", False

    def _told(self, code: str, original: str) -> str:
        """An in-stream exception as the client may see it (no account in it), logged whole."""
        rid, name = self._request_id or "-", self._provider
        cloud_errors.log_original("bedrock", name, rid, 0, code, original)
        return cloud_errors.client_message("bedrock", name, rid, 0, code, original, mid_stream=True)

    async def read(self) -> bytes:
        return b"".join([chunk async for chunk in self.aiter_raw()])

    async def aclose(self) -> None:
        await self._response.aclose()


def message_of(body: bytes) -> str:
    try:
        obj = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body[:500].decode("utf-8", "replace").strip()
    if isinstance(obj, dict):
        text = obj.get("message") or obj.get("Message")
        if isinstance(text, str):
            return text
    return ""
