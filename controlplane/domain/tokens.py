"""Admin tokens: roles, the rules a new token must follow, secret generation and hashing.

A token's secret (``"tga-" + token_urlsafe(32)``; virtual keys are ``"gw-…"``, so the two can
never be confused) is returned exactly once, by CreateToken. The database holds only its SHA-256
hex digest and a short ``prefix`` for recognising it in a list.

Role rules:

* ``admin`` — everything; takes no workspaces.
* ``workspace-admin`` — manages keys of one or more named workspaces (at least one).
* ``viewer`` — read-only; optionally limited to some workspaces (none = every workspace).
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass

from controlplane.domain.credentials import Minted, mint
from controlplane.domain.credentials import hash_secret as hash_secret  # auth looks tokens up by it
from controlplane.domain.errors import InvalidArgument, shown
from controlplane.domain.names import validate_label, validate_slug
from controlplane.identity import TokenRole

SECRET_PREFIX = "tga-"
PREFIX_LEN = 12
TOKEN_ID_RE = re.compile(r"^tok_[0-9a-f]{16}$")
MAX_WORKSPACES = 100
MAX_TTL_S = 10 * 365 * 86_400  # ten years: beyond that "never" says what is meant
# The roles a created token may have (DATAPLANE is the env data-plane token only).
CREATABLE_ROLES = (TokenRole.ADMIN, TokenRole.WORKSPACE_ADMIN, TokenRole.VIEWER)


class NewToken(Minted):
    """A freshly minted admin token (see :class:`~controlplane.domain.credentials.Minted`)."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class TokenSpec:
    """A validated CreateToken request."""

    name: str
    role: TokenRole
    workspaces: tuple[str, ...]
    ttl_s: int  # 0 = never expires


def looks_like_token(secret: str) -> bool:
    """Whether a bearer value has the shape of a created admin token (worth a lookup)."""
    return secret.startswith(SECRET_PREFIX) and len(secret) > len(SECRET_PREFIX)


def generate_token() -> NewToken:
    return mint(NewToken, "tok_" + secrets.token_hex(8), SECRET_PREFIX, PREFIX_LEN)


def parse_role(text: str) -> TokenRole:
    """``admin`` | ``workspace-admin`` | ``viewer`` (``workspace_admin`` accepted too)."""
    normalised = text.strip().lower().replace("_", "-")
    for role in CREATABLE_ROLES:
        if role.value == normalised:
            return role
    names = ", ".join(r.value for r in CREATABLE_ROLES)
    if not text:
        raise InvalidArgument(f"role is required: one of {names}")
    raise InvalidArgument(f"unknown role {shown(text)}: use one of {names}")


def validate_token_id(token_id: str) -> str:
    if not token_id:
        raise InvalidArgument("token id is required")
    if not TOKEN_ID_RE.fullmatch(token_id):
        raise InvalidArgument(
            f"invalid token id {shown(token_id)}: expected 'tok_' and 16 hex digits"
        )
    return token_id


def validate_workspaces(role: TokenRole, names: Iterable[str]) -> tuple[str, ...]:
    """The role's workspace list: sorted, duplicates dropped, each a valid slug."""
    out = sorted({validate_slug(n.strip(), "workspace name") for n in names})
    if len(out) > MAX_WORKSPACES:
        raise InvalidArgument(f"too many workspaces ({len(out)}, at most {MAX_WORKSPACES})")
    if role is TokenRole.ADMIN and out:
        raise InvalidArgument(
            "an admin token covers every workspace: give no workspaces, or use role "
            "workspace-admin or viewer to limit it"
        )
    if role is TokenRole.WORKSPACE_ADMIN and not out:
        raise InvalidArgument("a workspace-admin token needs at least one workspace")
    return tuple(out)


def validate_ttl(ttl_s: int) -> int:
    if ttl_s < 0:
        raise InvalidArgument("ttl_seconds must not be negative (0 means the token never expires)")
    if ttl_s > MAX_TTL_S:
        raise InvalidArgument(
            f"ttl_seconds {ttl_s} is too long (at most {MAX_TTL_S}, ten years); 0 means never"
        )
    return ttl_s


def validate_name(name: str) -> str:
    """Required free text (who or what holds the token), at most 100 characters."""
    name = validate_label(name.strip(), "token name")
    if not name:
        raise InvalidArgument("token name is required (who or what will use it, e.g. 'ci-deploy')")
    return name


def parse_spec(name: str, role: str, workspaces: Iterable[str], ttl_s: int) -> TokenSpec:
    parsed = parse_role(role)
    return TokenSpec(
        name=validate_name(name),
        role=parsed,
        workspaces=validate_workspaces(parsed, workspaces),
        ttl_s=validate_ttl(ttl_s),
    )


def expires_at_ms(now_ms: int, ttl_s: int) -> int:
    return 0 if ttl_s == 0 else now_ms + ttl_s * 1000
