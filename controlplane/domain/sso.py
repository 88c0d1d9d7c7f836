"""Sign-in with Claude Code: the rules for the SSO (OIDC) configuration and for the sign-in
fields of a workspace (``sso_groups``, ``sso_priority``). Pure; the catalog stores the result.

Contract:

* The issuer is an ``https`` URL (``http`` only for a loopback host: 127.0.0.0/8, ::1,
  ``localhost``), without credentials, query or fragment. It is kept exactly as given (minus
  surrounding blanks): an ID token's ``iss`` must equal it character for character.
* Time-to-live values are whole seconds; 0 means the default. :func:`effective_ttls` applies the
  defaults and checks that they fit together (a refresh token must outlive an access token).
* A workspace's ``sso_groups`` are group names as the identity provider sends them (compared
  exactly, case included) or ``"*"`` (any signed-in user).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from controlplane.domain.destinations import split_url
from controlplane.domain.errors import InvalidArgument, shown
from controlplane.domain.names import is_invisible_control, unique_list
from gwcommon.hosts import is_loopback_host

DEFAULT_SCOPES = ("openid", "profile", "email", "offline_access")
DEFAULT_GROUPS_CLAIM = "groups"
DEFAULT_ACCESS_TOKEN_TTL_S = 3600
DEFAULT_REFRESH_IDLE_TTL_S = 7 * 86_400
DEFAULT_SESSION_MAX_TTL_S = 30 * 86_400
ACCESS_TOKEN_TTL_RANGE = (60, 86_400)  # 1 minute .. 1 day
REFRESH_IDLE_TTL_RANGE = (300, 90 * 86_400)  # 5 minutes .. 90 days
SESSION_MAX_TTL_RANGE = (3600, 365 * 86_400)  # 1 hour .. 1 year
DEFAULT_SSO_PRIORITY = 100
ANY_GROUP = "*"
MAX_URL_CHARS = 2048
MAX_CLIENT_ID_CHARS = 255
MAX_CLIENT_SECRET_CHARS = 4096
MAX_SCOPES = 20
MAX_DOMAINS = 100
MAX_GROUP_CHARS = 256
MAX_SSO_GROUPS = 100
MAX_PRIORITY = 1_000_000
# RFC 6749 §3.3 scope-token: %x21 / %x23-5B / %x5D-7E
_SCOPE_RE = re.compile(r"^[\x21\x23-\x5b\x5d-\x7e]{1,128}$")
_CLAIM_RE = re.compile(r"^[A-Za-z0-9_:./-]{1,128}$")
_DOMAIN_RE = re.compile(
    r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)+$"
)


def validate_issuer(value: str) -> str:
    """The issuer URL as stored; :class:`InvalidArgument` saying what is wrong."""
    url = value.strip()
    if not url:
        raise InvalidArgument(
            "issuer is required: the OIDC issuer URL, e.g. https://login.example.com"
        )
    parts, port = split_url(url, "issuer", MAX_URL_CHARS)
    host = parts.hostname or ""
    if parts.scheme not in ("https", "http") or not host or port == 0:
        raise InvalidArgument(
            f"invalid issuer {shown(url)}: use an https:// URL such as https://login.example.com"
        )
    if parts.scheme == "http" and not is_loopback_host(host):
        raise InvalidArgument(
            f"invalid issuer {shown(url)}: the identity provider must use https (http is accepted "
            "only for a loopback address, for development)"
        )
    if parts.query or parts.fragment:
        raise InvalidArgument(f"invalid issuer {shown(url)}: no query or fragment allowed")
    return url


def _opaque(value: str, what: str, max_chars: int) -> str:
    """A printable-ASCII token without blanks (client ids and secrets are sent in HTTP forms)."""
    if not value:
        raise InvalidArgument(f"{what} is required")
    if len(value) > max_chars:
        raise InvalidArgument(f"{what} is longer than {max_chars} characters")
    if any(not 0x21 <= ord(ch) <= 0x7E for ch in value):
        raise InvalidArgument(
            f"{what} contains spaces, control characters or non-ASCII characters; paste exactly "
            "the value your identity provider shows"
        )
    return value


def validate_client_id(value: str) -> str:
    return _opaque(value.strip(), "client_id", MAX_CLIENT_ID_CHARS)


def validate_client_secret(value: str) -> str:
    """Never echoes the value."""
    return _opaque(value.strip(), "client_secret", MAX_CLIENT_SECRET_CHARS)


def validate_scopes(scopes: Iterable[str]) -> tuple[str, ...]:
    """Extra scopes (the defaults ``openid profile email offline_access`` are always asked for
    and dropped here); duplicates dropped, order kept."""
    return unique_list(scopes, _extra_scope, MAX_SCOPES, "scopes")


def _extra_scope(raw: str) -> str | None:
    scope = raw.strip()
    if not _SCOPE_RE.fullmatch(scope):
        raise InvalidArgument(
            f"invalid scope {shown(raw)}: a scope is 1-128 printable ASCII characters without "
            "spaces, quotes or backslashes (give several scopes as separate values)"
        )
    return None if scope in DEFAULT_SCOPES else scope


def validate_groups_claim(value: str) -> str:
    """``""`` → ``"groups"``; otherwise a claim name (letters, digits, ``_:./-``)."""
    claim = value.strip() or DEFAULT_GROUPS_CLAIM
    if not _CLAIM_RE.fullmatch(claim):
        raise InvalidArgument(
            f"invalid groups_claim {shown(value)}: the name of the ID-token claim holding the "
            "groups, e.g. 'groups' or 'roles'"
        )
    return claim


def validate_email_domains(domains: Iterable[str]) -> tuple[str, ...]:
    """Lower-case domain names (a leading ``@`` is dropped); duplicates dropped, order kept."""
    return unique_list(domains, _email_domain, MAX_DOMAINS, "email domains")


def _email_domain(raw: str) -> str:
    domain = raw.strip().lower().removeprefix("@")
    if not _DOMAIN_RE.fullmatch(domain):
        raise InvalidArgument(
            f"invalid email domain {shown(raw)}: use a domain name such as example.com"
        )
    return domain


@dataclass(frozen=True, slots=True)
class Ttls:
    """Effective lifetimes in seconds (defaults applied)."""

    access_token_s: int
    refresh_idle_s: int
    session_max_s: int


def _ttl(value: int, default: int, bounds: tuple[int, int], what: str) -> int:
    if value == 0:
        return default
    low, high = bounds
    if not low <= value <= high:
        raise InvalidArgument(
            f"{what} must be between {low} and {high} seconds (0 = the default, {default})"
        )
    return value


def effective_ttls(access_token_s: int, refresh_idle_s: int, session_max_s: int) -> Ttls:
    """The lifetimes with defaults applied; :class:`InvalidArgument` when out of range or when a
    refresh token would expire before the access token it renews."""
    ttls = Ttls(
        access_token_s=_ttl(
            access_token_s,
            DEFAULT_ACCESS_TOKEN_TTL_S,
            ACCESS_TOKEN_TTL_RANGE,
            "access_token_ttl_s",
        ),
        refresh_idle_s=_ttl(
            refresh_idle_s, DEFAULT_REFRESH_IDLE_TTL_S, REFRESH_IDLE_TTL_RANGE, "refresh_idle_ttl_s"
        ),
        session_max_s=_ttl(
            session_max_s, DEFAULT_SESSION_MAX_TTL_S, SESSION_MAX_TTL_RANGE, "session_max_ttl_s"
        ),
    )
    if ttls.refresh_idle_s <= ttls.access_token_s:
        raise InvalidArgument(
            f"refresh_idle_ttl_s ({ttls.refresh_idle_s} s) must be longer than "
            f"access_token_ttl_s ({ttls.access_token_s} s): Claude Code refreshes shortly before "
            "its access token expires"
        )
    if ttls.session_max_s < ttls.access_token_s:
        raise InvalidArgument(
            f"session_max_ttl_s ({ttls.session_max_s} s) must not be shorter than "
            f"access_token_ttl_s ({ttls.access_token_s} s)"
        )
    return ttls


def validate_group_name(value: str, what: str = "sso group") -> str:
    if value == ANY_GROUP:
        return value
    if not value or value != value.strip():
        raise InvalidArgument(
            f"invalid {what} {shown(value)}: a group name as your identity provider sends it "
            "(no leading or trailing blanks), or '*' for anyone who signs in"
        )
    if len(value) > MAX_GROUP_CHARS:
        raise InvalidArgument(
            f"{what} is too long ({len(value)} characters, at most {MAX_GROUP_CHARS})"
        )
    if not value.isprintable() or any(is_invisible_control(ch) for ch in value):
        raise InvalidArgument(f"{what} {shown(value)} contains control or invisible characters")
    return value


def validate_sso_groups(groups: Iterable[str]) -> tuple[str, ...]:
    """A workspace's ``sso_groups``: valid names or ``"*"``; duplicates dropped, order kept."""
    return unique_list(groups, validate_group_name, MAX_SSO_GROUPS, "sso_groups")


def validate_sso_priority(value: int) -> int:
    """``0`` (the default, 100) or 1 … 1,000,000; lower wins when several workspaces match."""
    if not 0 <= value <= MAX_PRIORITY:
        raise InvalidArgument(
            f"sso_priority must be between 0 and {MAX_PRIORITY} (lower wins; 0 = the default, "
            f"{DEFAULT_SSO_PRIORITY})"
        )
    return value


def effective_priority(value: int) -> int:
    return value or DEFAULT_SSO_PRIORITY
