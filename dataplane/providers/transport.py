"""The data plane's upstream HTTP: one pooled aiohttp session shared by every provider adapter.

Why aiohttp and not httpx: on the hot path httpx + httpcore + anyio cost several times more CPU
per request (httpcore scans its whole pool with a readability syscall per idle connection on every
request), which was most of the data plane's CPU under load (``make bench``).

Contract (what adapters and the relay rely on):

* The request goes out as given: the URL is not re-quoted (Bedrock ids carry ``%2F`` and ``:``,
  and SigV4 signed that exact path), the body bytes are sent unchanged, header names and values
  are those passed. aiohttp adds only ``Host`` and ``Content-Length``: no ``User-Agent``,
  ``Accept``, ``Accept-Encoding`` or ``Content-Type`` of its own, no cookies (no jar), nothing
  from the environment (no proxies, no netrc), no redirects followed, no decompression.
  Header values are written as UTF-8 by aiohttp, so a value that is valid UTF-8 (ASCII above all)
  goes out byte for byte; a value that is not is sent as its Latin-1 reading, re-encoded.
* Every failure is an :class:`~dataplane.errors.UpstreamError`: :func:`failure` maps aiohttp's
  and asyncio's exceptions into the gateway's tree (drawn in :mod:`dataplane.errors`), here and
  nowhere else. Before the response headers the client is told 502 when the provider cannot be
  reached (refused, DNS, TLS, connect or pool timeout, connection dropped) and 504 when it
  accepted the request but sent no headers within the read timeout.
* :class:`TransportResponse` is an ``UpstreamResponse``: ``aiter_raw`` yields body chunks as they
  arrive (de-chunked, never decompressed); a failure while reading the body is an
  ``UpstreamTimeout`` (silent past the idle timeout) or an ``UpstreamProtocolError`` (cut
  short), which the relay turns into an error event. ``aclose`` returns a fully read connection
  to the pool and closes any other.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import ssl
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import cast

import aiohttp
import certifi
from aiohttp.client_proto import ResponseHandler
from yarl import URL

from dataplane.asgi import Header
from dataplane.errors import (
    UpstreamConnectError,
    UpstreamError,
    UpstreamProtocolError,
    UpstreamTimeout,
    timeout_message,
    unreachable_message,
)

OutHeader = tuple[bytes | str, bytes | str]

log = logging.getLogger(__name__)

MAX_CONNECTIONS = 1024
KEEPALIVE_S = 60.0
# Per header line/field of a response (aiohttp's default, 8190, is tighter than h11's 16 KiB).
MAX_HEADER_FIELD = 16 * 1024
# What aiohttp would otherwise add on its own.
_SKIP_AUTO_HEADERS = ("User-Agent", "Accept", "Accept-Encoding", "Content-Type")
# Everything a failed request or body read can raise, short of a bug.
TRANSPORT_ERRORS: tuple[type[BaseException], ...] = (aiohttp.ClientError, TimeoutError, OSError)


@dataclass(frozen=True, slots=True)
class Timeouts:
    """``connect``: waiting for a pooled connection plus TCP/TLS connect; ``read``: waiting for the
    response headers and every silence between body chunks. No overall limit: streams are long.

    ``first_byte`` (a route's setting), when set, bounds the wait for the response headers from
    the start of the request instead of ``read``, which then only bounds the silences between
    body chunks (the idle timeout)."""

    connect: float
    read: float
    first_byte: float | None = None
    client_timeout: aiohttp.ClientTimeout = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # With a first-byte limit, the socket may stay silent up to that long before the headers;
        # the idle limit (``read``) is put back on the connection once they arrived.
        sock_read = self.read if self.first_byte is None else max(self.read, self.first_byte)
        timeout = aiohttp.ClientTimeout(
            total=None, connect=self.connect, sock_connect=self.connect, sock_read=sock_read
        )
        object.__setattr__(self, "client_timeout", timeout)


def failure(exc: BaseException, provider: str, *, mid_answer: bool = False) -> UpstreamError:
    """aiohttp's and asyncio's exceptions as the gateway's: the one place they are mapped.

    * ``aiohttp.ConnectionTimeoutError`` (connect or pool wait) and ``ClientConnectorError``
      (refused, DNS, TLS) -> :class:`UpstreamConnectError`: the provider was never reached;
    * any other ``TimeoutError`` (asyncio's, aiohttp's ``ServerTimeoutError`` and
      ``SocketTimeoutError``) -> :class:`UpstreamTimeout`;
    * anything else (``ServerDisconnectedError``, ``ClientPayloadError``, a reset) ->
      :class:`UpstreamProtocolError`.

    The message is the client's answer when the request fails before any answer (502 "could not
    reach", 504 "did not answer in time"); ``mid_answer`` words it for a body that broke off,
    which the attempt chain and the relay report in their own words.
    """
    if isinstance(exc, aiohttp.ConnectionTimeoutError | aiohttp.ClientConnectorError):
        return UpstreamConnectError(502, unreachable_message(provider))
    if isinstance(exc, TimeoutError):
        silent = f"Provider '{provider}' went silent mid-answer."
        return UpstreamTimeout(504, silent if mid_answer else timeout_message(provider))
    broke = f"The answer from provider '{provider}' broke off ({type(exc).__name__})."
    return UpstreamProtocolError(502, broke if mid_answer else unreachable_message(provider))


class _Chunks:
    """Body chunks as they arrive, aiohttp's failures mapped (``iter_any``, plus :func:`failure`)."""

    __slots__ = ("_content", "_provider")

    def __init__(self, content: aiohttp.StreamReader, provider: str) -> None:
        self._content = content
        self._provider = provider

    def __aiter__(self) -> _Chunks:
        return self

    async def __anext__(self) -> bytes:
        try:
            chunk = await self._content.readany()
        except TRANSPORT_ERRORS as exc:
            raise failure(exc, self._provider, mid_answer=True) from exc
        if not chunk:
            raise StopAsyncIteration
        return chunk


def _text(value: bytes | str) -> str:
    if isinstance(value, str):
        return value
    try:
        return value.decode()
    except UnicodeDecodeError:
        return value.decode("latin-1")


class TransportResponse:
    """An upstream response whose headers have arrived; the body is read on demand."""

    __slots__ = ("_response", "headers", "provider", "status")

    def __init__(self, response: aiohttp.ClientResponse, provider: str) -> None:
        self._response = response
        self.provider = provider
        self.status: int = response.status
        self.headers: list[Header] = [(k.lower(), v) for k, v in response.raw_headers]

    def header(self, name: bytes) -> bytes | None:
        """The first value of header ``name`` (lower-case) as received, or None."""
        for k, v in self.headers:
            if k == name:
                return v
        return None

    def aiter_raw(self) -> AsyncIterator[bytes]:
        """Body chunks as they arrive (whatever the socket delivered since the last one)."""
        return _Chunks(self._response.content, self.provider)

    async def read(self) -> bytes:
        """The whole body; a failure is an ``UpstreamError`` worded for a broken-off answer."""
        try:
            return await self._response.read()
        except TRANSPORT_ERRORS as exc:
            raise failure(exc, self.provider, mid_answer=True) from exc

    async def drain(self) -> bytes:
        """The whole body, then the connection released: for adapters reading an error body or a
        small answer inside their ``send``, whose failure the client then gets as the request's
        (worded as a failure before the answer)."""
        try:
            return await self._response.read()
        except TRANSPORT_ERRORS as exc:
            raise failure(exc, self.provider) from exc
        finally:
            await self.aclose()

    async def aclose(self) -> None:
        response = self._response
        if response.content.is_eof():
            response.release()  # every byte arrived: the connection can serve another request
        else:
            response.close()  # a half-read body must never reach the next request


class _ResponseHandler(ResponseHandler):
    """aiohttp's connection protocol, minus a per-chunk cost of a streamed answer.

    aiohttp's ``StreamReader`` calls ``resume_reading()`` after every chunk it hands out while its
    buffer is below the low-water mark, whether reading was paused or not; unpaused, that is an
    empty parse and a transport call per relayed token, for nothing. Paused (the buffer filled
    while the client was slow), it resumes exactly as aiohttp would."""

    def resume_reading(self, resume_parser: bool = True) -> None:
        if self._reading_paused or self._buffer_paused:
            super().resume_reading(resume_parser)


def _use_quiet_resume(connector: aiohttp.TCPConnector) -> None:
    """Make ``connector`` build :class:`_ResponseHandler` s (its private ``_factory``; left as is,
    with a warning, if a future aiohttp renamed it)."""
    factory = getattr(connector, "_factory", None)
    if not isinstance(factory, functools.partial) or factory.func is not ResponseHandler:
        log.warning("aiohttp's connector has no ResponseHandler factory: per-chunk resume kept")
        return
    quiet = functools.partial(_ResponseHandler, *factory.args, **factory.keywords)
    connector._factory = cast("functools.partial[ResponseHandler]", quiet)


class Transport:
    """One ``aiohttp.ClientSession`` (created on first use, inside the event loop)."""

    def __init__(self, max_connections: int = MAX_CONNECTIONS) -> None:
        self._max_connections = max_connections
        # Trust the same CA bundle httpx used (certifi), whatever the host's store: built once,
        # here, because loading it is blocking file I/O.
        self._ssl = ssl.create_default_context(cafile=certifi.where())
        self._session: aiohttp.ClientSession | None = None
        self._closed = False

    def _open(self) -> aiohttp.ClientSession:
        if self._closed:
            raise RuntimeError("the upstream transport is closed")
        connector = aiohttp.TCPConnector(
            limit=self._max_connections,
            limit_per_host=0,
            keepalive_timeout=KEEPALIVE_S,
            ssl=self._ssl,
        )
        _use_quiet_resume(connector)
        self._session = aiohttp.ClientSession(
            connector=connector,
            cookie_jar=aiohttp.DummyCookieJar(),
            skip_auto_headers=_SKIP_AUTO_HEADERS,
            auto_decompress=False,
            trust_env=False,
            requote_redirect_url=False,
            max_line_size=MAX_HEADER_FIELD,
            max_field_size=MAX_HEADER_FIELD,
        )
        return self._session

    async def request(
        self,
        method: str,
        url: str,
        headers: Sequence[OutHeader],
        body: bytes,
        timeout: Timeouts,
        provider: str,
    ) -> TransportResponse:
        """Send the request and wait for the response headers (see the module docstring)."""
        session = self._session or self._open()
        try:
            async with asyncio.timeout(timeout.first_byte):  # None: no limit of its own
                response = await session.request(
                    method,
                    URL(url, encoded=True),
                    headers=[(_text(k), _text(v)) for k, v in headers],
                    data=body,
                    timeout=timeout.client_timeout,
                    allow_redirects=False,
                )
        except TRANSPORT_ERRORS as exc:
            raise failure(exc, provider) from exc
        if timeout.first_byte is not None and timeout.first_byte > timeout.read:
            connection = response.connection
            if connection is not None and connection.protocol is not None:
                connection.protocol.read_timeout = timeout.read  # from now on: the idle limit
        return TransportResponse(response, provider)

    async def aclose(self) -> None:
        self._closed = True
        if self._session is not None:
            await self._session.close()
