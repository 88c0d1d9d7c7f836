"""Identity names (workspaces, providers, routes), free-text labels, and the no-duplicates rules
for lists and JSON object keys."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterable
from typing import Any

from controlplane.domain.errors import InvalidArgument, shown
from gwcommon.periods import zone

SLUG_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")
_LABEL_MAX = 100
# Characters that change how a line reads in a terminal or a table without being visible:
# C0/C1 controls (category Cc, NUL included), line / paragraph separators (Zl, Zp) and the bidi
# embeddings, overrides and isolates ("Trojan Source").
_BIDI = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def is_invisible_control(ch: str) -> bool:
    return unicodedata.category(ch) in ("Cc", "Zl", "Zp") or ch in _BIDI


def validate_slug(value: str, what: str) -> str:
    """Return ``value`` if it is a valid slug, else raise :class:`InvalidArgument`.

    A slug is 1–63 characters: lowercase letters, digits, ``.``, ``_`` and ``-``, starting with a
    letter or digit. ``what`` names the field in the message (e.g. ``"workspace name"``).
    """
    if not value:
        raise InvalidArgument(f"{what} is required")
    if not SLUG_RE.fullmatch(value):
        raise InvalidArgument(
            f"invalid {what} {shown(value)}: use 1-63 lowercase letters, digits, '.', '_' or '-', "
            "starting with a letter or digit (e.g. 'team-a')"
        )
    return value


def validate_label(value: str, what: str, max_len: int = _LABEL_MAX) -> str:
    """Free text shown to humans (key names, descriptions): bounded, no control characters."""
    if len(value) > max_len:
        raise InvalidArgument(f"{what} is too long ({len(value)} characters, at most {max_len})")
    if any(is_invisible_control(ch) for ch in value):
        raise InvalidArgument(
            f"{what} must not contain control characters, line separators or bidi overrides"
        )
    return value


def validate_timezone(name: str) -> str:
    """``""`` (UTC) or an IANA zone name known to this machine's tz database.

    Checked with :func:`gwcommon.periods.zone`, the function both planes compute periods with, so
    a zone accepted here is one the data plane can use.
    """
    if name == "":
        return name
    try:
        zone(name)
    except ValueError:
        raise InvalidArgument(
            f"unknown time zone {shown(name)}: use an IANA name such as 'Europe/Berlin' or "
            "'America/New_York', or leave it empty for UTC"
        ) from None
    return name


def unique_list(
    raws: Iterable[str], one: Callable[[str], str | None], most: int, what: str
) -> tuple[str, ...]:
    """Each of ``raws`` validated and normalised by ``one`` (None drops it), duplicates dropped,
    order kept; more than ``most`` left is an :class:`InvalidArgument` naming ``what``."""
    out: list[str] = []
    for raw in raws:
        item = one(raw)
        if item is not None and item not in out:
            out.append(item)
    if len(out) > most:
        raise InvalidArgument(f"too many {what} ({len(out)}, at most {most})")
    return tuple(out)


def unique_keys(
    message: Callable[[str], str],
) -> Callable[[list[tuple[str, Any]]], dict[str, Any]]:
    """A ``json.loads`` ``object_pairs_hook`` that builds each object as usual but raises
    :class:`InvalidArgument` with ``message(shown(key))`` for a key that appears twice (plain
    ``json.loads`` would silently keep the last value)."""

    def hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in pairs:
            if key in out:
                raise InvalidArgument(message(shown(key)))
            out[key] = value
        return out

    return hook
