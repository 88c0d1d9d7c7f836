"""The admin client's connection: one lazy ``grpc.aio`` channel to one control plane, the bearer
token every call carries, and the two ways a call is made (unary, server stream).

Contract:

* ``Channel(target, token)`` opens a lazy channel to ``HOST:PORT``. Every call carries
  ``authorization: Bearer <token>`` (nothing when the token is empty, so the server's own
  "missing token" refusal reaches the user).
* ``tls_ca`` (a PEM CA file) or ``credentials`` switch the channel to TLS; a failed handshake or
  a plaintext client talking to a TLS server gets a message saying so (:mod:`gwcommon.tls`).
* Every RPC failure is raised as :class:`~gwclient.errors.ClientError`; the token never appears
  in an error message or a ``repr``.

The calls themselves live in one module per concept (:mod:`gwclient.catalog`,
:mod:`gwclient.identities`, :mod:`gwclient.observability`), assembled in :mod:`gwclient.client`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from types import TracebackType
from typing import Any, Self, TypeVar

import grpc
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc

from gwapi.v1 import admin_pb2_grpc, discovery_pb2_grpc, telemetry_pb2_grpc
from gwclient.errors import translate_error
from gwcommon.tls import read_ca

__all__ = ["DEFAULT_TARGET", "Channel"]

DEFAULT_TARGET = "127.0.0.1:50051"
_T = TypeVar("_T")


class Channel:
    """One channel to one control plane; use as ``async with GatewayClient(...) as client``."""

    def __init__(
        self,
        target: str = DEFAULT_TARGET,
        token: str = "",
        *,
        timeout: float = 10.0,
        credentials: grpc.ChannelCredentials | None = None,
        tls_ca: str = "",
    ) -> None:
        """``credentials`` or ``tls_ca`` (PEM CA file; ``ValueError`` if unreadable) switch to
        TLS; ``timeout`` bounds each unary call (seconds)."""
        ca = read_ca(tls_ca) if credentials is None else None
        if ca is not None:
            credentials = grpc.ssl_channel_credentials(root_certificates=ca)
        self.target = target
        self.timeout = timeout
        self._metadata: tuple[tuple[str, str], ...] = (
            (("authorization", f"Bearer {token}"),) if token else ()
        )
        # No client keepalive: servers reject pings more frequent than their (5 min) minimum.
        self._tls = credentials is not None
        if credentials is None:
            self._channel = aio.insecure_channel(target)
        else:
            self._channel = aio.secure_channel(target, credentials)
        self._admin = admin_pb2_grpc.AdminStub(self._channel)
        self._discovery = discovery_pb2_grpc.DiscoveryStub(self._channel)
        self._telemetry = telemetry_pb2_grpc.TelemetryStub(self._channel)
        self._health = health_pb2_grpc.HealthStub(self._channel)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.target!r})"

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        await self._channel.close()

    async def _unary(self, name: str, method: Callable[..., Awaitable[_T]], request: Any) -> _T:
        try:
            return await method(request, metadata=self._metadata, timeout=self.timeout)
        except aio.AioRpcError as exc:
            raise translate_error(exc, self.target, name, tls=self._tls) from None

    async def _stream(
        self, name: str, method: Callable[..., Any], request: Any, *, bounded: bool
    ) -> AsyncIterator[Any]:
        """The server stream ``method(request)``, opened at the first iteration and cancelled
        when the iteration ends. ``bounded``: the whole stream is bounded by the client timeout
        (else only the connection is: a follower may wait for hours)."""
        call = method(request, metadata=self._metadata, timeout=self.timeout if bounded else None)
        try:
            async for item in call:
                yield item
        except aio.AioRpcError as exc:
            raise translate_error(exc, self.target, name, tls=self._tls) from None
        finally:
            call.cancel()

    async def health(self, service: str = "", wait_s: float = 2.0) -> str:
        """The standard gRPC health status name (``SERVING``…); ``UNIMPLEMENTED`` when the server
        has no health service but answered (which still proves it is up)."""
        request = health_pb2.HealthCheckRequest(service=service)
        try:
            response = await self._health.Check(request, timeout=wait_s)
        except aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.UNIMPLEMENTED:
                return "UNIMPLEMENTED"
            raise translate_error(exc, self.target, "Health.Check", tls=self._tls) from None
        return str(health_pb2.HealthCheckResponse.ServingStatus.Name(response.status))
