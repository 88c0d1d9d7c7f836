"""Errors of the admin client: every failed call becomes a :class:`ClientError` whose message a
person can read as is (the server's own explanation, or a sentence about the connection when no
server answered). ``grpc.aio.AioRpcError`` never escapes the client; :func:`translate_error` is
the one place that turns one into the other.
"""

from __future__ import annotations

import grpc
from grpc import aio

from gwcommon.tls import describe_failure

__all__ = ["ClientError", "translate_error"]

# Substrings gRPC core puts in UNAVAILABLE details when no server answered at all. A server may also
# answer UNAVAILABLE on purpose (e.g. "database is down"); then its own words are kept.
_TRANSPORT_MARKERS = (
    "failed to connect",
    "connection refused",
    "connect failed",
    "dns resolution failed",
    "socket closed",
    "connection reset",
    "no route to host",
    "name resolution",
    "empty address list",
    "ssl handshake",
)


class ClientError(Exception):
    """A refused or failed call: ``code`` is the gRPC status, ``message`` is for humans."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def __repr__(self) -> str:
        return f"ClientError({self.code.name}, {self.message!r})"


def translate_error(
    exc: aio.AioRpcError, target: str, method: str = "", *, tls: bool | None = None
) -> ClientError:
    """Turn an ``AioRpcError`` into a :class:`ClientError` with a readable message. ``tls``
    (whether the channel uses TLS; ``None``: unknown) adds advice to connection failures."""
    code = exc.code()
    details = (exc.details() or "").strip()
    lowered = details.lower()
    if code == grpc.StatusCode.UNAVAILABLE and (
        not details or any(m in lowered for m in (*_TRANSPORT_MARKERS, "tls handshake"))
    ):
        advice = describe_failure(details, tls) if tls is not None else ""
        if tls and advice:
            message = f"cannot connect to the control plane at {target}: {advice}"
        else:
            message = (
                f"cannot reach the control plane at {target}: is it running? "
                "(gwctl controlplane serve)"
            )
            if advice:
                message += f"; {advice}"
    elif code == grpc.StatusCode.DEADLINE_EXCEEDED:
        message = f"the control plane at {target} did not answer in time"
        if details and details.lower() != "deadline exceeded":
            message += f" ({details})"
    elif code == grpc.StatusCode.UNIMPLEMENTED and (
        not details or "method not found" in lowered or "method not implemented" in lowered
    ):
        what = f" {method}" if method else " this call"
        message = f"the control plane at {target} does not implement{what}: is it an older version?"
    elif code == grpc.StatusCode.UNAUTHENTICATED and not details:
        message = "the control plane refused the request: missing or wrong admin token"
    elif details:
        message = details
    else:
        message = f"the control plane answered {code.name}"
    return ClientError(code, message)
