"""Who a request is attributed to: a :class:`Member` of a workspace, and signed-in developers.

A member is either a virtual key (:class:`dataplane.config.snapshot.VirtualKey`) or a developer who
signed in with Claude Code's ``/login`` (:class:`Developer`). Both carry what the request path
needs — effective limits, target, own model list, labels for refusals and headers, the fields of
the usage event — so the router, the limiter, the access checks and the listings treat them alike
and never ask which kind they hold. The few differences the protocol asks for are data here: a
denied model is ``403`` for a key but ``400 invalid_request_error`` for a developer; only
developers are served ``/managed/settings``.

Also here: the sign-in pieces of a snapshot (:class:`SsoInfo`, :class:`SigningKey`,
:class:`ManagedSettings`), all immutable and built once per snapshot.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import orjson

from dataplane.errors import GatewayError, Misconfigured

if TYPE_CHECKING:  # resources.py imports this module: annotations only
    from dataplane.config.resources import Limits


class Member(Protocol):
    """What the request path reads from the caller, whatever kind of member it is."""

    @property
    def id(self) -> str: ...
    @property
    def workspace(self) -> str: ...
    @property
    def limits(self) -> Limits: ...
    @property
    def provider(self) -> str: ...
    @property
    def route(self) -> str: ...
    @property
    def models(self) -> tuple[str, ...]: ...

    # "key" | "developer": the spend-seed scope and the kind in x-tollgate-budget-scope.
    @property
    def kind(self) -> str: ...
    @property
    def counter(self) -> str: ...  # the limit counters' scope: "k:<id>" | "d:<id>"
    @property
    def label(self) -> str: ...  # "key 'alice-laptop'" | "developer 'alice@example.com'"
    @property
    def title(self) -> str: ...  # the same, opening a sentence
    @property
    def model_denied_status(self) -> int: ...  # 403 for keys, 400 for developers (protocol)
    @property
    def sees_managed_settings(self) -> bool: ...

    # The usage event's attribution: exactly one of the two pairs is set.
    @property
    def key_id(self) -> str: ...
    @property
    def key_name(self) -> str: ...
    @property
    def developer_id(self) -> str: ...
    @property
    def developer_email(self) -> str: ...

    def no_target_error(self) -> GatewayError:
        """The refusal when the member has neither a provider nor a route."""
        ...


@dataclass(frozen=True, slots=True)
class Developer:
    """A signed-in developer as the snapshot publishes them: effective limits and target."""

    id: str  # "dev_…", the access token's `sub`
    workspace: str
    email: str
    name: str
    limits: Limits  # the developer's own, else the workspace's member limits
    provider: str  # effective target: at most one of provider / route ("" both: none set)
    route: str
    disabled: bool = False
    tokens_not_before_ms: int = 0  # access tokens with iat * 1000 below this are refused

    models: tuple[str, ...] = ()  # developers have no own model list: the workspace's applies
    kind = "developer"
    model_denied_status = 400
    sees_managed_settings = True
    key_id = ""
    key_name = ""

    @property
    def counter(self) -> str:
        return "d:" + self.id

    @property
    def label(self) -> str:
        return f"developer '{self.email or self.id}'"

    @property
    def title(self) -> str:
        return f"Developer '{self.email or self.id}'"

    @property
    def developer_id(self) -> str:
        return self.id

    @property
    def developer_email(self) -> str:
        return self.email

    def no_target_error(self) -> GatewayError:
        ws = self.workspace
        return Misconfigured(
            503,
            f"No provider is set for signed-in developers of workspace '{ws}'; ask your platform "
            f"team (gwctl workspaces update {ws} --member-provider …).",
            headers=((b"x-should-retry", b"false"),),
            type_name="api_error",
        )


@dataclass(frozen=True, slots=True)
class SsoInfo:
    enabled: bool = False
    issuer: str = ""  # the identity provider's issuer URL, shown on the sign-in pages


@dataclass(frozen=True, slots=True)
class SigningKey:
    """A key that verifies access tokens (HS256). Secret: never in a repr, never on disk."""

    kid: str
    key: bytes = field(repr=False)
    current: bool = False


MIN_SIGNING_KEY_BYTES = 32

_CHECKSUM = re.compile(r"^[A-Za-z0-9._:+/=-]{1,128}$")
_SETTINGS_NAMESPACE = uuid.UUID("5b0f4a1e-6c3d-4f55-9a3e-7d1c2b8e9f10")


@dataclass(frozen=True, slots=True)
class ManagedSettings:
    """A workspace's Claude Code managed settings, rendered once per snapshot: the request path
    only compares ``If-None-Match`` with ``checksum`` and sends ``body``."""

    checksum: str
    uuid: str
    body: bytes  # {"uuid", "checksum", "settings"}
    etag: bytes  # b'"<checksum>"'

    @classmethod
    def build(cls, workspace: str, settings_json: str, checksum: str) -> ManagedSettings:
        """Validate and render; ValueError when the settings are not a JSON object or the
        checksum cannot be an ETag. No checksum: the SHA-256 of the text stands in."""
        try:
            settings = orjson.loads(settings_json)
        except orjson.JSONDecodeError as exc:
            raise ValueError(f"managed settings are not valid JSON ({exc})") from None
        if not isinstance(settings, dict):
            raise ValueError("managed settings are not a JSON object")
        if not checksum:
            checksum = hashlib.sha256(settings_json.encode()).hexdigest()
        if not _CHECKSUM.match(checksum):
            raise ValueError("managed settings checksum is not a plain token")
        ident = str(uuid.uuid5(_SETTINGS_NAMESPACE, f"{workspace}\0{checksum}"))
        body = orjson.dumps({"uuid": ident, "checksum": checksum, "settings": settings})
        return cls(checksum, ident, body, b'"' + checksum.encode() + b'"')

    def matches(self, if_none_match: bytes | None) -> bool:
        """Whether an ``If-None-Match`` value names this version (quoted, weak or bare; a list;
        ``*``)."""
        if not if_none_match:
            return False
        for part in if_none_match.decode("latin-1").split(","):
            tag = part.strip()
            if tag.startswith("W/"):
                tag = tag[2:]
            tag = tag.strip('"')
            if tag == "*" or tag == self.checksum:
                return True
        return False
