"""Domain exceptions: what went wrong, in words an operator can act on.

Every rule in :mod:`controlplane.domain` and every store operation raises one of these. The
gRPC layer maps each class to exactly one status code in :mod:`controlplane.errors`; nothing
below the servicers knows about gRPC. The message is sent to the client verbatim, so it must
never contain a secret.
"""

from __future__ import annotations


class DomainError(Exception):
    """Base class; ``message`` is safe to show to the caller."""

    def __init__(self, message: str) -> None:
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
