"""Helpers shared by the catalog modules: the clock, the lookup of a row by its name, update
masks, dependant lists, the audit row of a named object's change and the master-key rotation of
an encrypted column."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from google.protobuf.field_mask_pb2 import FieldMask
from google.protobuf.message import Message
from sqlalchemy import update as sql_update
from sqlmodel import Session, col, select

from controlplane import audit_log
from controlplane.domain.errors import FailedPrecondition, InvalidArgument, NotFound, shown
from controlplane.domain.limits import LIMIT_FIELDS, Limits, apply_limits_mask
from controlplane.domain.names import validate_slug
from controlplane.secrets import MasterKey
from gwapi.vocab import TEXT_FIELDS

LIMITS_PATHS = ("limits", *(f"limits.{f}" for f in LIMIT_FIELDS))
MEMBER_LIMITS_PATHS = ("member_limits", *(f"member_limits.{f}" for f in LIMIT_FIELDS))
R = TypeVar("R")


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def get_named(s: Session, model: type[R], kind: str, name: str) -> R:
    """The ``model`` row whose primary key is ``name``; ``name`` is checked as a slug (its
    messages say ``"{kind} name"``) and a missing row is NotFound ("{kind} 'name' not found")."""
    validate_slug(name, f"{kind} name")
    row = s.get(model, name)
    if row is None:
        raise NotFound(f"{kind} {name!r} not found")
    return row


def resolve_mask(mask: FieldMask, msg: Message, allowed: Sequence[str], what: str) -> list[str]:
    """The update paths to apply, validated against ``allowed``.

    An empty mask means "every allowed top-level field that is set in ``msg``" (non-default
    scalars, present sub-messages), as in Google's AIP-134. Unknown paths are an
    :class:`InvalidArgument` naming the allowed ones.
    """
    # A typed field (route_mode, a provider's settings…) stands for the text field it replaces.
    paths = list(dict.fromkeys(TEXT_FIELDS.get(p, p) for p in mask.paths))
    if not paths:
        set_fields = {TEXT_FIELDS.get(fd.name, fd.name) for fd, _ in msg.ListFields()}
        paths = [p for p in allowed if "." not in p and p in set_fields]
        if not paths:
            raise InvalidArgument(
                f"nothing to update: set update_mask to one of {describe_paths(allowed)}"
            )
    unknown = [p for p in paths if p not in allowed]
    if unknown:
        raise InvalidArgument(
            f"unknown update_mask path {_short(unknown[0])} for {what}: use "
            f"{describe_paths(allowed)}"
        )
    return paths


def _short(value: str, limit: int = 48) -> str:
    """``shown`` with the *escaped* text bounded too (one odd character can take 10)."""
    text = shown(value, 24)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def describe_paths(allowed: Sequence[str]) -> str:
    """The allowed paths, sub-fields folded so the list stays short enough for a terminal (and
    a gRPC trailer): ``description, limits[.*]`` for ``limits``, ``limits.rpm``…"""
    tops = list(dict.fromkeys(p.partition(".")[0] for p in allowed))
    return ", ".join(
        t + ("[.*]" if any(p.startswith(t + ".") for p in allowed) else "") for t in tops
    )


def masked_limits(
    current: Limits, incoming: Limits, paths: Sequence[str], field: str = "limits"
) -> Limits | None:
    """New limits if the mask touches them (``limits`` = whole, ``limits.x`` = one field;
    ``field`` names another limits field, e.g. ``member_limits``)."""
    if field in paths:
        return incoming
    subfields = [p.split(".", 1)[1] for p in paths if p.startswith(f"{field}.")]
    if not subfields:
        return None
    return apply_limits_mask(current, incoming, subfields)


def describe(items: Sequence[str], limit: int = 5) -> str:
    """``["a", "b", …]`` → ``"a, b and 3 more"`` for error messages."""
    shown = ", ".join(items[:limit])
    return shown if len(items) <= limit else f"{shown} and {len(items) - limit} more"


def audit_change(s: Session, now: int, action: str, kind: str, before: Any, after: Any) -> None:
    """One audit row for a change of a global object found by its name (a provider, route or
    telemetry destination), filed under the name ``after`` carries (``before``'s for a delete)."""
    name = (after if after is not None else before).name
    audit_log.record(
        s, now, action=action, resource_kind=kind, resource=name, before=before, after=after
    )


def reencrypt_column(
    s: Session,
    master: MasterKey,
    now: int,
    column: Any,
    *,
    bound: Callable[[str], str],
    shown: Callable[[Any], Message],
    action: str,
    kind: str,
) -> list[str]:
    """Master-key rotation of one encrypted column (``ProviderRow.secret_ciphertext``…): every
    value still under one of ``master``'s previous keys is re-encrypted under its current one
    (``bound(name)`` is the associated data it was sealed with); returns the rewritten rows'
    names.

    One audit row each (``action``; what ``shown`` shows does not change, since the secret
    did not). Values under an unknown key, or damaged, are left alone (the snapshot leaves them
    out and says why). Each row is rewritten only if it still holds the value that was read
    (compare-and-set), so a secret another replica rotated meanwhile is never overwritten with
    the old one; running it again finds nothing to do.
    """
    done: list[str] = []
    if not master.previous_ids:
        return done
    model, attr = column.class_, column.key
    rows = s.exec(select(model).where(column != "").order_by(col(model.name))).all()
    for row in rows:
        old = getattr(row, attr)
        if not master.is_previous(old):
            continue
        try:
            new = master.reencrypt(bound(row.name), old)
        except FailedPrecondition:
            continue  # damaged: left as is
        changed: Any = s.exec(
            sql_update(model)
            .where(col(model.name) == row.name, column == old)
            .values({attr: new})
            .execution_options(synchronize_session=False)
        )
        if changed.rowcount != 1:
            continue
        message = shown(row)
        audit_change(s, now, action, kind, message, message)
        done.append(row.name)
    return done


def in_workspaces(stmt: Any, column: Any, workspace: str, scope: frozenset[str]) -> Any:
    """``stmt`` narrowed to rows whose ``column`` is ``workspace`` ("" = any) and, when ``scope``
    is non-empty (a caller scoped to some workspaces), one of ``scope``."""
    if scope:
        stmt = stmt.where(col(column).in_(sorted(scope)))
    if workspace:
        stmt = stmt.where(col(column) == workspace)
    return stmt


def updated_target(
    paths: Sequence[str], prefix: str, given: tuple[str, str], current: tuple[str, str]
) -> tuple[str, str] | None:
    """The ``(provider, route)`` left by an update of ``{prefix}provider`` / ``{prefix}route``
    (``given`` the request's values, ``current`` the stored ones); None when ``paths`` names
    neither. Naming one without the other switches the target to it."""
    provider_path, route_path = f"{prefix}provider", f"{prefix}route"
    if provider_path not in paths and route_path not in paths:
        return None
    provider = given[0] if provider_path in paths else current[0]
    route = given[1] if route_path in paths else current[1]
    if provider_path in paths and given[0] and route_path not in paths:
        route = ""
    if route_path in paths and given[1] and provider_path not in paths:
        provider = ""
    return provider, route
