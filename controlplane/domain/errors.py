"""Domain exceptions: what went wrong, in words an operator can act on.

Every rule in :mod:`controlplane.domain` and every store operation raises one of these. The
gRPC layer maps each class to exactly one status code in :mod:`controlplane.errors`; nothing
below the servicers knows about gRPC. The message is sent to the client verbatim, so it must
never contain a secret.
"""

from __future__ import annotations

MAX_MESSAGE_CHARS = 1000
_SHOWN_CHARS = 60


def shown(value: object, limit: int = _SHOWN_CHARS) -> str:
    """``repr`` of a caller's value for an error message, cut to ``limit`` characters.

    repr() escapes control characters and NUL; the cut keeps a 10,000-character name from
    turning into a 10,000-character message (gRPC carries details in a trailer of at most 8 KiB:
    a longer one reaches the client as RESOURCE_EXHAUSTED instead of our message).
    """
    text = value if isinstance(value, str) else str(value)
    if len(text) <= limit:
        return repr(text)
    return f"{text[:limit]!r}… ({len(text)} characters)"


class DomainError(Exception):
    """Base class; ``message`` is safe to show to the caller.

    A message longer than :data:`MAX_MESSAGE_CHARS` keeps its start and its end (which says
    what is expected) around an elision — the last line of defence for the trailer limit."""

    def __init__(self, message: str) -> None:
        if len(message) > MAX_MESSAGE_CHARS:
            half = MAX_MESSAGE_CHARS // 2 - 3
            message = f"{message[:half]} … {message[-half:]}"
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class InvalidArgument(DomainError):
    """The request itself is malformed (bad name, bad budget, unknown field mask path…)."""


class NotFound(DomainError):
    """The named object (or an object the request refers to) does not exist."""


class AlreadyExists(DomainError):
    """An object with that identity exists already."""


class FailedPrecondition(DomainError):
    """The request is well-formed but the current state forbids it (e.g. dependants exist)."""


class PermissionDenied(DomainError):
    """The caller is known but not allowed to do this."""


class Unauthenticated(DomainError):
    """The caller did not prove who it is."""


class Unavailable(DomainError):
    """Something the control plane depends on (an identity provider) cannot be used right now."""
