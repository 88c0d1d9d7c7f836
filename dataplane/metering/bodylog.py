"""Request logging per workspace policy ``log_bodies``: none | metadata | full.

``none`` (the default) costs the request path one attribute check and records nothing.
``metadata`` records the request headers, credentials redacted, and the sizes of both bodies.
``full`` also keeps the request body as the client sent it and the response bytes as the client
received them (SSE frames for a stream, error bodies included), each in a buffer that stops
growing at the workspace's ``log_body_max_bytes`` (``bodies_truncated`` then says so). Nothing
here does I/O: the capture rides on the request's record into the usage event, and so through
the reporter's bounded queue and spool, in batches.

Secrets: header values of ``authorization``, ``x-api-key``, ``x-tollgate-key``, ``cookie``,
``proxy-authorization`` and any header whose name contains ``token``, ``secret`` or ``key`` become
``[redacted]``. Credentials travel in headers, never in bodies: provider keys are added by the
data plane to the upstream request's headers only and never appear in what the client sent or
received. As a belt-and-braces step, the credential the client presented (its virtual key or
OAuth token) is replaced by ``[redacted]`` if it appears inside a captured body (say, pasted into
a prompt); other secrets a user types into a prompt are logged as typed.
"""

from __future__ import annotations

from collections.abc import Iterable

from dataplane.asgi import Header, Message, Send

REDACTED = "[redacted]"
_REDACTED_B = REDACTED.encode()
SECRET_HEADERS = frozenset(
    {b"authorization", b"x-api-key", b"x-tollgate-key", b"cookie", b"proxy-authorization"}
)
_SECRET_WORDS = (b"token", b"secret", b"key")
_MIN_SCRUB = 8  # never "redact" a credential shorter than this out of a body


def is_secret_header(name: bytes) -> bool:
    name = name.lower()
    return name in SECRET_HEADERS or any(word in name for word in _SECRET_WORDS)


def redact_headers(headers: Iterable[Header]) -> dict[str, str]:
    """Lower-cased names → values (repeats joined with ", "), credentials ``[redacted]``."""
    out: dict[str, str] = {}
    for raw_name, raw_value in headers:
        name = raw_name.lower().decode("latin-1")
        value = REDACTED if is_secret_header(raw_name) else raw_value.decode("latin-1")
        out[name] = f"{out[name]}, {value}" if name in out else value
    return out


def _credentials(headers: Iterable[Header]) -> list[bytes]:
    """The secret values the client presented (a Bearer token without its scheme too)."""
    out = []
    for name, value in headers:
        if name.lower() in SECRET_HEADERS:
            v = value.strip()
            if v[:7].lower() == b"bearer ":
                v = v[7:].strip()
            if len(v) >= _MIN_SCRUB:
                out.append(v)
    return out


class BodyLog:
    """One request's capture. ``full`` keeps bytes up to ``cap`` per body; ``metadata`` counts."""

    __slots__ = (
        "cap",
        "full",
        "headers",
        "request",
        "request_size",
        "response",
        "response_size",
        "secrets",
        "truncated",
    )

    def __init__(self, policy: str, cap: int, headers: list[Header]) -> None:
        self.full = policy == "full"
        self.cap = max(cap, 0)
        self.headers = redact_headers(headers)
        self.secrets = _credentials(headers) if self.full else []
        self.request = b""
        self.request_size = 0
        self.response = bytearray()
        self.response_size = 0
        self.truncated = False

    def add_request(self, body: bytes) -> None:
        self.request_size = len(body)
        if self.full:
            if len(body) > self.cap:
                self.truncated = True
                self.request = bytes(memoryview(body)[: self.cap])
            else:
                self.request = body  # bytes are immutable: no copy

    def add_response(self, chunk: bytes) -> None:
        self.response_size += len(chunk)
        if not self.full:
            return
        room = self.cap - len(self.response)
        if len(chunk) > room:
            self.truncated = True
            if room > 0:
                self.response += memoryview(chunk)[:room]
        else:
            self.response += chunk

    def wrap(self, send: Send) -> Send:
        """``send`` that also captures each response body message after it went out."""

        async def capture(message: Message) -> None:
            await send(message)
            if message["type"] == "http.response.body":
                body = message.get("body", b"")
                if body:
                    self.add_response(body)

        return capture

    def scrubbed(self, data: bytes | bytearray) -> bytes:
        out = bytes(data)
        for secret in self.secrets:
            if secret in out:
                out = out.replace(secret, _REDACTED_B)
        return out
