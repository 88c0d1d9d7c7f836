"""Audit events as text: who and from where, and what changed (before/after JSON compared
field by field).

Pure functions shared by ``gwctl audit`` and the console's Audit view (no Textual here). Nested
objects are flattened to dotted paths (``limits.rpm``); lists compare as whole values. The
timestamps every change bumps (``updated_at_ms``) are left out of the summary, not the diff.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from gwapi.v1 import admin_pb2

# Bumped by every update: listing them as "what changed" would say nothing.
_BOOKKEEPING = frozenset({"updated_at_ms"})


def peer_text(peer: str) -> str:
    """``ipv4:127.0.0.1:5123`` → ``127.0.0.1:5123``; ``ipv6:%5B::1%5D:5123`` → ``[::1]:5123``."""
    for scheme in ("ipv4:", "ipv6:"):
        if peer.startswith(scheme):
            return unquote(peer[len(scheme) :])
    return unquote(peer) or "-"


def actor_text(event: admin_pb2.AuditEvent) -> str:
    """``name (role)``; the token id when the event has no name."""
    name = event.actor_name or event.actor or "-"
    return f"{name} ({event.actor_role})" if event.actor_role else name


@dataclass(frozen=True)
class FieldChange:
    path: str
    before: Any  # None: absent (unset, or the object did not exist)
    after: Any


def parse(text: str) -> dict[str, Any]:
    """The stored JSON as a dict ({} for "" or anything unreadable)."""
    if not text:
        return {}
    try:
        doc = json.loads(text)
    except ValueError:
        return {}
    return doc if isinstance(doc, dict) else {}


def flatten(doc: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in doc.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict):  # an empty object adds no field: nothing set in it
            out.update(flatten(value, path + "."))
        else:
            out[path] = value
    return out


def changes(event: admin_pb2.AuditEvent) -> list[FieldChange]:
    """Every field whose value differs between before and after, in path order."""
    before = flatten(parse(event.before_json))
    after = flatten(parse(event.after_json))
    return [
        FieldChange(path, before.get(path), after.get(path))
        for path in sorted(before.keys() | after.keys())
        if before.get(path) != after.get(path)
    ]


def summary(event: admin_pb2.AuditEvent) -> str:
    """Short text for a list: the changed fields of an update ("" for a create or delete,
    whose action says it all)."""
    if not event.before_json or not event.after_json:
        return ""
    paths = [c.path for c in changes(event) if c.path not in _BOOKKEEPING]
    return ", ".join(paths) if paths else "(no field changed)"


def show(value: Any) -> str:
    return "-" if value is None else json.dumps(value, sort_keys=True)


def diff_lines(event: admin_pb2.AuditEvent) -> list[tuple[str, str]]:
    """(marker, text) lines: ``-`` a value before, ``+`` after, for each changed field."""
    lines: list[tuple[str, str]] = []
    for change in changes(event):
        if change.before is not None:
            lines.append(("-", f"{change.path}: {show(change.before)}"))
        if change.after is not None:
            lines.append(("+", f"{change.path}: {show(change.after)}"))
    return lines
