"""Who may sign in, and into which workspace: the rules applied to a verified ID token.

Contract:

* :func:`identity_of` reads the identity from verified claims: ``sub``, ``email`` (required,
  stored in lower case), a display name (``name``, else given + family name, else
  ``preferred_username``), and the groups from the configured claim (a JSON list of strings, or
  one space-separated string; other values mean "no groups"; at most :data:`MAX_GROUPS`, each at
  most 256 characters).
* :func:`admit` refuses an email the provider marks unverified (``email_verified`` false, or
  the string ``"false"``; absent is accepted), and an email outside the allowed domains (exact
  domain match, case-insensitive; none configured = any domain).
* :func:`choose_workspace`: among the workspaces whose ``sso_groups`` contain one of the
  developer's groups, or ``"*"``, the lowest effective ``sso_priority`` (0 counts as 100) wins,
  then the workspace name (alphabetical). Group names are compared exactly (case included).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from controlplane.domain.sso import ANY_GROUP, effective_priority
from controlplane.signin import refusals

MAX_GROUPS = 1000
MAX_GROUP_CHARS = 256
MAX_NAME_CHARS = 200
MAX_EMAIL_CHARS = 320


@dataclass(frozen=True, slots=True)
class Identity:
    issuer: str
    subject: str
    email: str
    name: str
    groups: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class WorkspaceGroups:
    name: str
    sso_groups: tuple[str, ...]
    sso_priority: int


def groups_of(claims: Mapping[str, Any], claim: str) -> tuple[str, ...]:
    value = claims.get(claim)
    if isinstance(value, str):
        items: Iterable[Any] = value.split()
    elif isinstance(value, list):
        items = value
    else:
        return ()
    out: dict[str, None] = {}
    for item in items:
        if isinstance(item, str) and item and len(item) <= MAX_GROUP_CHARS:
            out.setdefault(item, None)
            if len(out) >= MAX_GROUPS:
                break
    return tuple(out)


def _name(claims: Mapping[str, Any]) -> str:
    name = claims.get("name")
    if not isinstance(name, str) or not name.strip():
        parts = [claims.get("given_name"), claims.get("family_name")]
        name = " ".join(p for p in parts if isinstance(p, str) and p.strip())
    if not name:
        username = claims.get("preferred_username")
        name = username if isinstance(username, str) else ""
    return refusals.quoted(name, MAX_NAME_CHARS)


def identity_of(claims: Mapping[str, Any], issuer: str, groups_claim: str) -> Identity:
    email = claims.get("email")
    if not isinstance(email, str) or "@" not in email or len(email) > MAX_EMAIL_CHARS:
        raise refusals.invalid_id_token(
            "the identity provider sent no email address (the gateway asks for the email scope; "
            "check that the provider releases the email claim to this client)"
        )
    return Identity(
        issuer=issuer,
        subject=str(claims["sub"]),
        email=refusals.quoted(email.strip().lower(), MAX_EMAIL_CHARS),
        name=_name(claims),
        groups=groups_of(claims, groups_claim),
    )


def admit(identity: Identity, claims: Mapping[str, Any], allowed_domains: Iterable[str]) -> None:
    """Raise :class:`~controlplane.signin.refusals.SignInRefused` unless the identity may sign in."""
    verified = claims.get("email_verified")
    if verified is False or (isinstance(verified, str) and verified.strip().lower() == "false"):
        raise refusals.email_not_verified(identity.email)
    allowed = tuple(allowed_domains)
    domain = identity.email.rpartition("@")[2]
    if allowed and domain not in allowed:
        raise refusals.domain_not_allowed(identity.email, allowed)


def choose_workspace(groups: Iterable[str], workspaces: Iterable[WorkspaceGroups]) -> str | None:
    """The workspace a developer with ``groups`` lands in, or ``None``."""
    have = set(groups)
    matching = [
        ws for ws in workspaces if ANY_GROUP in ws.sso_groups or have.intersection(ws.sso_groups)
    ]
    if not matching:
        return None
    best = min(matching, key=lambda ws: (effective_priority(ws.sso_priority), ws.name))
    return best.name
