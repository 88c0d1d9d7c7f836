"""What virtual keys and admin tokens have in common: a minted secret, of which only the SHA-256
hex digest and a short recognisable ``prefix`` are ever stored.

Contract: :func:`mint` returns a secret of ``secret_prefix`` + ``token_urlsafe(32)``, its digest
(:func:`hash_secret`) and its first ``prefix_len`` characters; the ``repr`` of a :class:`Minted`
never contains the secret or its digest.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from typing import TypeVar


@dataclass(frozen=True, slots=True)
class Minted:
    """A freshly minted credential. ``secret`` must only ever travel back to the creator."""

    id: str
    secret: str
    secret_sha256: str
    prefix: str

    def __repr__(self) -> str:  # keep the secret out of tracebacks and debug logs
        return f"{type(self).__name__}(id={self.id!r}, prefix={self.prefix!r})"


M = TypeVar("M", bound=Minted)


def hash_secret(secret: str) -> str:
    """Hex SHA-256 of the secret: the only form that is stored or distributed."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def mint(kind: type[M], id_: str, secret_prefix: str, prefix_len: int) -> M:
    secret = secret_prefix + secrets.token_urlsafe(32)
    return kind(
        id=id_, secret=secret, secret_sha256=hash_secret(secret), prefix=secret[:prefix_len]
    )
