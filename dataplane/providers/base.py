"""The one interface every provider adapter implements.

An adapter takes an Anthropic-format request (the client's body bytes, the headers to forward)
and returns an :class:`UpstreamResponse` whose body is Anthropic-format too: SSE for streams,
JSON otherwise. Adapters that speak another wire format (Bedrock's event stream) translate inside
their response object, so the relay in ``dataplane.edge.proxy`` never knows which provider it talks to.
Transport failures before a response exists are raised as ``GatewayError`` (502/504).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from dataplane.asgi import Header
from dataplane.config.snapshot import ProviderConfig
from dataplane.errors import GatewayError, Unavailable
from dataplane.providers.transport import Timeouts, Transport


def secret_not_received(provider: str) -> GatewayError:
    """The refusal of a provider whose credential is stored on the control plane but not (yet)
    held by this data plane: after a start from the disk cache, which never holds secrets."""
    return Unavailable(
        503,
        f"Provider '{provider}' has its key stored on the control plane, and this data plane "
        "has not received it yet (the control plane is unreachable, or cannot decrypt the key). "
        "Retry shortly; if this persists, ask your platform team to check the control plane's "
        "log and the data plane's connection to it.",
    )


@dataclass(frozen=True, slots=True)
class UpstreamRequest:
    path: str  # "/v1/messages" or "/v1/messages/count_tokens"
    query: bytes  # the client's raw query string, passed on as-is
    headers: tuple[Header, ...]  # client headers safe to forward (see asgi.forwardable_headers)
    body: bytes  # the client's body, byte for byte
    model: str
    stream: bool
    request_id: str
    # The body parsed once at the edge (from the Anthropic door, on first read: doors.body).
    # Adapters that must rewrite the body (Bedrock, Vertex) start from this instead of parsing
    # again; the Anthropic adapter never looks at it.
    json: Mapping[str, Any]
    # The ``anthropic-beta`` values of ``headers``, read once at the edge (doors.base.Prepared).
    betas: tuple[str, ...]
    # The client's own Authorization header, present only when the virtual key came separately in
    # x-tollgate-key: for providers that pass a Claude subscription's OAuth token through.
    client_authorization: bytes | None = None
    # The body's ``max_tokens`` when it is an integer, else 0 (read at the edge, with ``model``).
    max_tokens: int = 0
    # The route's timeouts for this attempt; None = the provider's own (options timeout_*_s).
    timeouts: Timeouts | None = None
    # This attempt's W3C ``traceparent`` (and ``tracestate``) when the gateway traces itself
    # (dataplane.edge.tracing); every adapter sends them. Empty with tracing off.
    trace_headers: tuple[Header, ...] = ()


@dataclass(frozen=True, slots=True)
class Diagnosis:
    """What an adapter knows, without calling upstream, about serving ``model`` (``gwctl
    doctor``, via ``GET /v1/tollgate/whoami``): the id it would send (``upstream_model``) or the
    refusal its model map gives (``model_error``), and a problem that refuses every request
    (``problem``: ``secret_not_received`` or ``misconfigured``, with the refusal's ``message``).
    Never a secret, a base URL or a cloud account id."""

    upstream_model: str = ""
    model_error: str = ""
    problem: str = ""
    message: str = ""


def problem_of(err: GatewayError) -> Diagnosis:
    """The Diagnosis of a refusal every request would get: a secret not received yet
    (:class:`Unavailable`), or the provider's setup."""
    kind = "secret_not_received" if isinstance(err, Unavailable) else "misconfigured"
    return Diagnosis(problem=kind, message=err.message)


class UpstreamResponse(Protocol):
    status: int
    headers: list[Header]

    def aiter_raw(self) -> AsyncIterator[bytes]:
        """The body as it arrives, chunk by chunk, unbuffered."""
        ...

    async def read(self) -> bytes:
        """The whole body (for non-streamed answers and error bodies)."""
        ...

    async def aclose(self) -> None: ...


class Provider(Protocol):
    name: str
    kind: str

    async def send(self, request: UpstreamRequest) -> UpstreamResponse: ...

    def diagnose(self, model: str) -> Diagnosis:
        """See :class:`Diagnosis`: pure, no I/O (no credential chain is run)."""
        ...

    async def aclose(self) -> None: ...


def timeouts(config: ProviderConfig) -> Timeouts:
    """Per-provider timeouts (options ``timeout_connect_s``, ``timeout_read_s``).

    ``read`` bounds both the wait for the response headers and each silence between chunks:
    Anthropic pings at least every few seconds while a stream is alive, so a long read timeout
    only matters for a dead upstream.
    """
    connect = float(config.option("timeout_connect_s", "10"))
    read = float(config.option("timeout_read_s", "600"))
    return Timeouts(connect=connect, read=read)


class HttpAdapter:
    """What every adapter that calls upstream over :class:`Transport` holds: its config, the
    shared transport, its own timeouts (:func:`timeouts`) and the environment its credentials are
    read from (the process's unless one is given, as tests do). A subclass sets up what is its
    own in :meth:`_configure`, which the constructor calls last."""

    def __init__(
        self,
        config: ProviderConfig,
        transport: Transport,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.name = config.name
        self.config = config
        self._transport = transport
        self._timeout = timeouts(config)
        self._env: Mapping[str, str] = os.environ if env is None else env
        self._configure(config)

    def _configure(self, config: ProviderConfig) -> None:
        """The subclass's own set-up from ``config`` (nothing here)."""


class BufferedResponse:
    """An UpstreamResponse whose (small) body is already in memory: translated errors,
    count_tokens answers, and a failed attempt kept for the client in case nothing better comes."""

    def __init__(self, status: int, headers: list[Header], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    async def aiter_raw(self) -> AsyncIterator[bytes]:
        yield self.body

    async def read(self) -> bytes:
        return self.body

    async def aclose(self) -> None:
        return None
