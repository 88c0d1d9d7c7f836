"""Virtual keys: secret generation, hashing and the allow-list of models.

The secret (``"gw-" + token_urlsafe(32)``) is returned exactly once, by CreateKey. The database
and every snapshot hold only its SHA-256 hex digest; the ``prefix`` (first 10 characters) lets an
operator recognise a key in a list without revealing it.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterable

from controlplane.domain.credentials import Minted, mint
from controlplane.domain.errors import InvalidArgument, shown
from controlplane.domain.names import unique_list

SECRET_PREFIX = "gw-"
PREFIX_LEN = 10
KEY_ID_RE = re.compile(r"^key_[0-9a-f]{16}$")
_MODEL_PATTERN_RE = re.compile(r"^[A-Za-z0-9._:@/*?\[\]-]{1,200}$")
MAX_MODELS = 100
MAX_TTL_SECONDS = 100 * 365 * 86_400


class NewKey(Minted):
    """A freshly minted virtual key (see :class:`~controlplane.domain.credentials.Minted`)."""

    __slots__ = ()


def new_key_id() -> str:
    """``"key_"`` + 16 hex characters; public, safe to log."""
    return "key_" + secrets.token_hex(8)


def generate_key() -> NewKey:
    return mint(NewKey, new_key_id(), SECRET_PREFIX, PREFIX_LEN)


def validate_key_id(key_id: str) -> str:
    if not key_id:
        raise InvalidArgument("key id is required")
    if not KEY_ID_RE.fullmatch(key_id):
        raise InvalidArgument(f"invalid key id {shown(key_id)}: expected 'key_' and 16 hex digits")
    return key_id


def validate_models(patterns: Iterable[str]) -> tuple[str, ...]:
    """Normalise the model allow-list: glob patterns, no blanks, duplicates dropped, order kept."""
    return unique_list(patterns, _model_pattern, MAX_MODELS, "model patterns")


def _model_pattern(raw: str) -> str:
    pattern = raw.strip()
    if not _MODEL_PATTERN_RE.fullmatch(pattern):
        raise InvalidArgument(
            f"invalid model pattern {shown(raw)}: use a model id or a glob such as 'claude-sonnet-*'"
        )
    return pattern


def validate_target(provider: str, route: str) -> None:
    """A key sends its traffic to exactly one provider or one route."""
    if bool(provider) == bool(route):
        raise InvalidArgument(
            "a key needs exactly one of provider or route"
            + (" (both were given)" if provider else "")
        )


def expires_at_ms(now_ms: int, ttl_seconds: int) -> int:
    """0 TTL means never (returns 0); negative TTLs and TTLs over 100 years are rejected (the
    expiry is int64 milliseconds: a larger TTL would overflow it, or the database column)."""
    if ttl_seconds < 0:
        raise InvalidArgument("ttl_seconds must not be negative (0 means the key never expires)")
    if ttl_seconds > MAX_TTL_SECONDS:
        raise InvalidArgument(
            f"ttl_seconds must be at most {MAX_TTL_SECONDS} (100 years); use 0 for a key that "
            "never expires"
        )
    return 0 if ttl_seconds == 0 else now_ms + ttl_seconds * 1000
