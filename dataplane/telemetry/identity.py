"""Who sent a telemetry export, as the resource attributes added to it.

The principal comes from the auth middleware: a virtual key today, a signed-in developer once
bearer tokens are verified (P1). :func:`identity_of` is the one place that reads it, so the
attributes and the activity figures follow whatever the principal carries.

Attributes (only those that apply; any client-sent value of these keys is removed first):

* ``enduser.id`` — the developer's email, or the virtual key's name;
* ``tollgate.developer.id`` / ``tollgate.developer.email`` — a signed-in developer;
* ``tollgate.key.id`` — a virtual key;
* ``tollgate.workspace`` — always.
"""

from __future__ import annotations

from dataclasses import dataclass

from dataplane.policy.auth import Principal


@dataclass(frozen=True, slots=True)
class Identity:
    workspace: str
    key_id: str = ""
    key_name: str = ""
    developer_id: str = ""
    developer_email: str = ""

    @property
    def is_developer(self) -> bool:
        return bool(self.developer_id)

    def attributes(self) -> tuple[tuple[str, str], ...]:
        attrs: list[tuple[str, str]] = []
        enduser = self.developer_email or (self.key_name if not self.is_developer else "")
        if self.is_developer and not enduser:
            enduser = self.developer_id
        if enduser:
            attrs.append(("enduser.id", enduser))
        if self.developer_id:
            attrs.append(("tollgate.developer.id", self.developer_id))
        if self.developer_email:
            attrs.append(("tollgate.developer.email", self.developer_email))
        if self.key_id:
            attrs.append(("tollgate.key.id", self.key_id))
        if self.workspace:
            attrs.append(("tollgate.workspace", self.workspace))
        return tuple(attrs)


def identity_of(principal: Principal) -> Identity:
    """The identity of an authenticated caller.

    MERGE (P1 developer principal): the principal carries either a virtual key
    (``principal.key``, today) or, once bearer tokens land, a member (``principal.member``)
    exposing ``key_id``/``key_name``/``developer_id``/``developer_email``. Both shapes are
    read here through ``getattr``, so this function is the only spot to adjust if the merged
    Principal names these fields differently.
    """
    member: object = getattr(principal, "member", None) or getattr(principal, "key", None)
    developer_id = _text(member, "developer_id")
    if developer_id:
        return Identity(
            workspace=principal.workspace.name,
            developer_id=developer_id,
            developer_email=_text(member, "developer_email"),
        )
    key_id = _text(member, "key_id") or _text(member, "id")
    key_name = _text(member, "key_name") or _text(member, "name")
    return Identity(workspace=principal.workspace.name, key_id=key_id, key_name=key_name)


def _text(obj: object, name: str) -> str:
    value = getattr(obj, name, "")
    return value if isinstance(value, str) else ""
